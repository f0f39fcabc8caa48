//! From Kafka message bodies to Arrow columns: Avro schemas, framing and column building.

pub mod avro;
pub mod columns;
pub mod direct;
#[cfg(test)]
mod fuzz;
pub mod registry;
pub mod scan;
pub mod wire;
