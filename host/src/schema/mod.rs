//! A topic's schema and its table: where the reader schema comes from, how it maps to columns, how it merges and evolves.

pub mod evolve;
pub mod mapping;
pub mod merge;
mod origin;
mod table;

pub use origin::{Learned, SchemaOrigin, learn, starting_decoder};
pub use table::TopicTable;
