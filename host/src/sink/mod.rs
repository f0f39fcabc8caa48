//! The Iceberg side: catalog and tables, Parquet data files, commits carrying source offsets and validator state.

pub mod catalog;
pub mod commit;
pub mod events;
pub mod lineage;
pub mod lost;
pub mod manifest_merge;
pub mod metadata_files;
pub mod offsets;
pub mod overlay;
pub mod partition;
pub mod retry;
pub mod rollback;
pub mod state;
pub mod writer;
