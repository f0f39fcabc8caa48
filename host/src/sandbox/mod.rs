//! Validator components: the sandboxed engine, instances per topic-partition, host-side verdict types.

mod batch;
mod bindings;
mod cache;
mod engine;
mod imports;
mod instance;
mod lift;
mod supervisor;

pub use batch::BatchInput;
pub use cache::{CacheStatus, sha256_hex};
pub use engine::{GuestEngine, ValidatorModule};
pub use imports::DeniedImport;
pub use instance::{CallFailure, FailureKind, VERDICT_MAX_BYTES_PER_RECORD, ValidatorInstance};
pub use supervisor::{FAILED_CODE, RecoveryStats, SupervisedValidator};

use serde::Serialize;

/// Name and version a module reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleInfo {
    pub name: String,
    pub version: String,
    pub wit_version: String,
}

/// A record the validator rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index of the record in the batch.
    pub index: usize,
    pub code: String,
    pub message: String,
}

/// The kind of a sequence anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Gap,
    Duplicate,
    OutOfOrder,
    Reset,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Gap => "gap",
            EventKind::Duplicate => "duplicate",
            EventKind::OutOfOrder => "out_of_order",
            EventKind::Reset => "reset",
        }
    }
}

/// A sequence anomaly a validator reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceEvent {
    /// Index of the record in the batch.
    pub index: usize,
    pub kind: EventKind,
    pub key: String,
    pub expected: i64,
    pub received: i64,
    pub missing: i64,
}

/// A validator's verdict on one batch, checked by the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Rejected records, sorted by index, each index once.
    pub rejected: Vec<Rejection>,
    pub events: Vec<SequenceEvent>,
}
