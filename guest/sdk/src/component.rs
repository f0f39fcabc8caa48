//! The edge to the generated WIT bindings: the only module that sees them, public only for
//! `export_validator!`. Everything crossing it is converted by moving buffers, never copying them.

use std::cell::RefCell;

use crate::{Batch, Decimals, FromSettings, KafkaMetadata, Level, NamedColumn, Packed, Reads, Settings, Validate};
use crate::{ColumnData, EventKind, Verdict, WIT_VERSION};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        // The SDK's own copy of the contract, so the SDK builds wherever it is copied.
        path: "wit",
        world: "validator",
        pub_export_macro: true,
        export_macro_name: "__export_k2_bindings",
        default_bindings_module: "k2_validator_sdk::component::bindings",
    });
}

use bindings::exports::k2::ingest::validation::{GuestValidator, Validator};
use bindings::k2::ingest::types as wit;

pub use bindings::exports::k2::ingest::validation::Guest;
pub use wit::ModuleInfo;

/// What `export_validator!` adds to a validator type: its name, version and committed state.
pub trait Exported: Validate + FromSettings {
    const NAME: &'static str;
    const VERSION: &'static str;

    fn snapshot(&self) -> Vec<u8>;

    fn restore(&mut self, state: &[u8]) -> Result<(), String>;
}

/// The [`ModuleInfo`] of an exported validator.
pub fn info<T: Exported>() -> ModuleInfo {
    ModuleInfo { name: T::NAME.to_string(), version: T::VERSION.to_string(), wit_version: WIT_VERSION.to_string() }
}

/// Bridges an exported validator to the generated resource interface.
pub struct Adapter<T>(RefCell<T>);

impl<T: Exported> GuestValidator for Adapter<T> {
    fn create(config: Vec<(String, String)>) -> Result<Validator, String> {
        let settings = Settings::new(config);
        let inner = T::from_settings(&settings)?;
        settings.refuse_unasked()?;
        Ok(Validator::new(Adapter(RefCell::new(inner))))
    }

    fn reads(&self) -> wit::Reads {
        self.0.borrow().reads().into()
    }

    fn validate(&self, batch: wit::Batch) -> Result<wit::Verdict, String> {
        let mut verdict = Verdict::new();
        self.0.borrow_mut().validate(&batch.into(), &mut verdict)?;
        Ok(verdict.into())
    }

    fn snapshot(&self) -> Vec<u8> {
        self.0.borrow().snapshot()
    }

    fn restore(&self, state: Vec<u8>) -> Result<(), String> {
        self.0.borrow_mut().restore(&state)
    }
}

/// Logs through the host's import.
pub(crate) fn log(level: Level, message: &str) {
    let level = match level {
        Level::Debug => bindings::k2::ingest::host::Level::Debug,
        Level::Info => bindings::k2::ingest::host::Level::Info,
        Level::Warn => bindings::k2::ingest::host::Level::Warn,
        Level::Error => bindings::k2::ingest::host::Level::Error,
    };
    bindings::k2::ingest::host::log(level, message);
}

impl From<wit::Batch> for Batch {
    fn from(b: wit::Batch) -> Self {
        Batch {
            topic: b.topic,
            partition: b.partition,
            records: b.records,
            offsets: b.offsets,
            timestamps: b.timestamps,
            keys: b.keys.into(),
            columns: b.columns.into_iter().map(NamedColumn::from).collect(),
            now_micros: b.now_micros,
        }
    }
}

impl From<wit::Packed> for Packed {
    fn from(p: wit::Packed) -> Self {
        Packed { data: p.data, offsets: p.offsets }
    }
}

impl From<wit::Column> for NamedColumn {
    fn from(c: wit::Column) -> Self {
        let data = match c.data {
            wit::ColumnData::Boolean(v) => ColumnData::Boolean(v),
            wit::ColumnData::Int64(v) => ColumnData::Int64(v),
            wit::ColumnData::Float64(v) => ColumnData::Float64(v),
            wit::ColumnData::Utf8(p) => ColumnData::Utf8(p.into()),
            wit::ColumnData::Binary(p) => ColumnData::Binary(p.into()),
            wit::ColumnData::Decimal(d) => ColumnData::Decimal(Decimals { scale: d.scale, unscaled: d.unscaled }),
        };
        NamedColumn { name: c.name, data, nulls: c.nulls }
    }
}

impl From<Reads> for wit::Reads {
    fn from(r: Reads) -> Self {
        let mut kafka = wit::KafkaMetadata::empty();
        for (ours, theirs) in [
            (KafkaMetadata::OFFSETS, wit::KafkaMetadata::OFFSETS),
            (KafkaMetadata::TIMESTAMPS, wit::KafkaMetadata::TIMESTAMPS),
            (KafkaMetadata::KEYS, wit::KafkaMetadata::KEYS),
        ] {
            if r.kafka.contains(ours) {
                kafka |= theirs;
            }
        }
        wit::Reads { fields: r.fields, kafka }
    }
}

impl From<Verdict> for wit::Verdict {
    fn from(v: Verdict) -> Self {
        let (rejected, events) = v.into_parts();
        wit::Verdict {
            // Moved, not copied: a string's buffer is handed to the host as the validator made it.
            rejected: rejected
                .into_iter()
                .map(|r| wit::Rejection { index: r.index, code: r.code, message: r.message })
                .collect(),
            events: events
                .into_iter()
                .map(|e| wit::SequenceEvent {
                    index: e.index,
                    kind: match e.kind {
                        EventKind::Gap => wit::EventKind::Gap,
                        EventKind::Duplicate => wit::EventKind::Duplicate,
                        EventKind::OutOfOrder => wit::EventKind::OutOfOrder,
                        EventKind::Reset => wit::EventKind::Reset,
                    },
                    key: e.key,
                    expected: e.expected,
                    received: e.received,
                    missing: e.missing,
                })
                .collect(),
        }
    }
}
