//! A topic's schema and its table: where the reader schema comes from, how it maps to columns, how it merges and evolves.

mod origin;
mod table;

pub use origin::{Learned, SchemaOrigin, learn, starting_decoder};
pub use table::TopicTable;
