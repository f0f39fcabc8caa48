//! The k2-ingest validator SDK: implement [`Validate`] for a type and call [`export_validator!`].
//!
//! ```
//! use k2_validator_sdk::{export_validator, Batch, Settings, Validate, Verdict};
//!
//! pub struct NonEmptySymbol;
//!
//! impl Validate for NonEmptySymbol {
//!     const NAME: &'static str = "non-empty-symbol";
//!     const VERSION: &'static str = "0.1.0";
//!     fn new(_settings: &Settings) -> Result<Self, String> { Ok(Self) }
//!     // input: a batch of records from one topic-partition, as columns
//!     // output: the indices it rejects, with a code and a message
//!     fn validate(&mut self, batch: &Batch, verdict: &mut Verdict) -> Result<(), String> {
//!         let symbols = batch.utf8("symbol")?;
//!         for i in 0..batch.len() {
//!             if symbols.get(i).is_empty() {
//!                 verdict.reject(i, "symbol-empty", "symbol is empty".into());
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_validator!(NonEmptySymbol);
//! ```
//!
//! State that must survive restarts (sequence numbers) goes in [`Validate::snapshot`] and
//! [`Validate::restore`]; the host commits it with the data. Naming the fields a validator
//! reads in [`Validate::reads`] spares the host copying the others into the guest.

mod batch;
mod key;
mod sequence;
pub mod words;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "validator",
        pub_export_macro: true,
        export_macro_name: "__export_k2_bindings",
        default_bindings_module: "k2_validator_sdk::bindings",
    });
}

use std::cell::RefCell;

pub use batch::{Column, DecimalColumn, Strings};
pub use bindings::k2::ingest::host::Level;
pub use bindings::k2::ingest::types::{
    Batch, ColumnData, EventKind, KafkaMetadata, ModuleInfo, Packed, Reads, Rejection, SequenceEvent, Verdict,
};
pub use sequence::SequenceTracker;

use bindings::exports::k2::ingest::validation::{GuestValidator, Validator};

/// The version of the WIT package this SDK is built against.
pub const WIT_VERSION: &str = "0.2.0";

/// A validator's settings: string keys and values from the host's config.
#[derive(Debug, Clone, Default)]
pub struct Settings(Vec<(String, String)>);

impl Settings {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// The raw value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `key` parsed as `T`, or `default` when unset; the error names the key and value.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|_| format!("setting `{key}`: cannot parse `{raw}`")),
        }
    }

    /// Fails on a key outside `known`, so a typo in the config is not silently ignored.
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some((k, _)) => Err(format!("unknown setting `{k}` (known: {})", known.join(", "))),
        }
    }
}

/// A validator: checks batches from one topic-partition and keeps state between them.
pub trait Validate: Sized + 'static {
    /// The validator's name, as `k2-ingest module check` shows it.
    const NAME: &'static str;
    /// The validator's own version.
    const VERSION: &'static str;

    /// Builds the validator from its settings; an error names the bad setting.
    fn new(settings: &Settings) -> Result<Self, String>;

    /// What the validator reads of each batch, asked once after [`Validate::new`]. The host
    /// copies only this into the guest; the default, everything, is always correct. A column
    /// left out is absent from the batch, so reading it fails with an error naming it.
    fn reads(&self) -> Reads {
        Reads::everything()
    }

    /// Checks one batch: reject records and report sequence events into `verdict`.
    /// An `Err` is a fault that stops the topic, not a bad record.
    fn validate(&mut self, batch: &Batch, verdict: &mut Verdict) -> Result<(), String>;

    /// The state to commit with the data (empty for a stateless validator).
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Restores state from [`Validate::snapshot`].
    fn restore(&mut self, _state: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// Logs through the host (bounded by the host; use for rare events, not per record).
pub fn log(level: Level, message: &str) {
    bindings::k2::ingest::host::log(level, message);
}

impl Reads {
    /// Every field and all Kafka metadata.
    pub fn everything() -> Self {
        Reads { fields: None, kafka: KafkaMetadata::all() }
    }

    /// Only the fields `names`, and no Kafka metadata (add it with [`Reads::with_kafka`]).
    pub fn fields(names: &[&str]) -> Self {
        Reads { fields: Some(names.iter().map(|n| n.to_string()).collect()), kafka: KafkaMetadata::empty() }
    }

    /// These reads plus the Kafka metadata `kafka` (e.g. `KafkaMetadata::KEYS`).
    pub fn with_kafka(mut self, kafka: KafkaMetadata) -> Self {
        self.kafka |= kafka;
        self
    }
}

impl Verdict {
    /// An empty verdict: every record accepted, no event.
    pub fn empty() -> Self {
        Verdict { rejected: Vec::new(), events: Vec::new() }
    }

    /// Rejects record `index` with a stable `code` and a message naming the bad value.
    pub fn reject(&mut self, index: usize, code: &str, message: String) {
        self.rejected.push(Rejection { index: index as u32, code: code.to_string(), message });
    }
}

/// Bridges a [`Validate`] type to the generated resource interface. Public only for the macro.
#[doc(hidden)]
pub struct Adapter<T>(RefCell<T>);

impl<T: Validate> GuestValidator for Adapter<T> {
    fn create(config: Vec<(String, String)>) -> Result<Validator, String> {
        let inner = T::new(&Settings::new(config))?;
        Ok(Validator::new(Adapter(RefCell::new(inner))))
    }

    fn reads(&self) -> Reads {
        self.0.borrow().reads()
    }

    fn validate(&self, batch: Batch) -> Result<Verdict, String> {
        let mut verdict = Verdict::empty();
        self.0.borrow_mut().validate(&batch, &mut verdict)?;
        Ok(verdict)
    }

    fn snapshot(&self) -> Vec<u8> {
        self.0.borrow().snapshot()
    }

    fn restore(&self, state: Vec<u8>) -> Result<(), String> {
        self.0.borrow_mut().restore(&state)
    }
}

/// The [`ModuleInfo`] of a [`Validate`] type. Public only for the macro.
#[doc(hidden)]
pub fn info_of<T: Validate>() -> ModuleInfo {
    ModuleInfo { name: T::NAME.to_string(), version: T::VERSION.to_string(), wit_version: WIT_VERSION.to_string() }
}

/// Exports a [`Validate`] type as this component's validator.
#[macro_export]
macro_rules! export_validator {
    ($ty:ty) => {
        #[doc(hidden)]
        pub struct __K2Component;

        impl $crate::bindings::exports::k2::ingest::validation::Guest for __K2Component {
            type Validator = $crate::Adapter<$ty>;

            fn info() -> $crate::ModuleInfo {
                $crate::info_of::<$ty>()
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_k2_bindings!(__K2Component with_types_in $crate::bindings);
    };
}
