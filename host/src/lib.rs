//! k2-ingest: Kafka to Apache Iceberg ingestion with sandboxed WebAssembly validators.

pub mod config;
pub mod decode;
pub mod error;
pub mod failpoint;
pub mod kafka;
pub mod maintenance;
pub mod metrics;
pub mod pipeline;
pub mod rewind;
pub mod sandbox;
pub mod schema;
pub mod sink;
pub mod status;

#[cfg(test)]
mod test_alloc;
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: test_alloc::Tracking = test_alloc::Tracking;
