//! The k2-ingest validator SDK: implement [`Validate`] for a type and call [`export_validator!`].
//!
//! The smallest useful validator, a function that rejects records whose `price` is not positive:
//!
//! ```
//! use k2_validator_sdk::{Batch, Verdict, export_validator};
//!
//! fn positive_price(batch: &Batch, verdict: &mut Verdict) -> Result<(), String> {
//!     let price = batch.decimal("price")?;
//!     for i in (0..batch.len()).filter(|&i| price.unscaled[i] <= 0) {
//!         verdict.reject(i, "price-not-positive", "price is not > 0");
//!     }
//!     Ok(())
//! }
//!
//! export_validator!(fn positive_price);
//! ```
//!
//! A validator with state is a type. Its state goes in one field whose type implements
//! [`State`] (a [`SequenceTracker`] does), named in the macro: the host commits that field with
//! the data and restores it after a restart, a rebalance or a failure, so the events stay exact.
//!
//! ```
//! use k2_validator_sdk::{Batch, Reads, SequenceTracker, Validate, Verdict, export_validator};
//!
//! // input: a batch of records from one topic-partition, as columns
//! // output: rejections (index, code, message) and sequence events per symbol
//! #[derive(Default)]
//! pub struct Checks {
//!     sequences: SequenceTracker,
//! }
//!
//! impl Validate for Checks {
//!     fn reads(&self) -> Reads {
//!         Reads::fields(&["symbol", "sequence"])
//!     }
//!
//!     fn validate(&mut self, batch: &Batch, verdict: &mut Verdict) -> Result<(), String> {
//!         let (symbol, sequence) = (batch.utf8("symbol")?, batch.int64("sequence")?);
//!         for (i, &seq) in sequence.iter().enumerate() {
//!             if symbol.get(i).is_empty() {
//!                 verdict.reject(i, "symbol-empty", "symbol is empty");
//!             } else if let Some(event) = self.sequences.observe(i, symbol.get(i), seq) {
//!                 verdict.event(event);
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_validator!(Checks, state = sequences);
//! ```
//!
//! A validator with settings implements [`FromSettings`] instead of deriving `Default`. The
//! name and version `k2-ingest module check` shows are the crate's unless the macro is given
//! `name = ".."` or `version = ".."`. [`testing`] builds batches for native tests.

mod batch;
#[doc(hidden)]
pub mod component;
mod key;
pub mod listing;
mod reads;
mod sequence;
mod settings;
pub mod testing;
mod verdict;
mod words;

pub use batch::{Batch, Column, ColumnData, DecimalColumn, Decimals, NamedColumn, Packed, Strings};
pub use reads::{KafkaMetadata, Reads};
pub use sequence::SequenceTracker;
pub use settings::Settings;
pub use verdict::{EventKind, Rejection, SequenceEvent, Verdict};

/// The version of the WIT package this SDK is built against (the host's test keeps it equal to
/// the `package` line of `wit/k2-ingest.wit`).
pub const WIT_VERSION: &str = "0.2.0";

/// A validator: checks batches from one topic-partition and keeps state between them.
pub trait Validate: 'static {
    /// What the validator reads of each batch, asked once after it is built. The host copies
    /// only this into the guest; the default, everything, is always correct. A column left out
    /// is absent from the batch, so reading it fails with an error naming it.
    fn reads(&self) -> Reads {
        Reads::everything()
    }

    /// Checks one batch: reject records and report sequence events into `verdict`.
    /// An `Err` is a fault that stops the topic (e.g. a missing column), not a bad record.
    fn validate(&mut self, batch: &Batch, verdict: &mut Verdict) -> Result<(), String>;
}

/// Builds a validator from the settings in the host's config.
///
/// Every `Default` type has it, taking no settings; a validator with settings implements it
/// instead of deriving `Default` (both at once do not compile). A setting the validator never
/// asked for (through [`Settings::get`] or [`Settings::parse_or`]) is refused after this returns,
/// so a typo in the config stops the start instead of being silently ignored.
pub trait FromSettings: Sized {
    /// The validator for `settings`; an error names the bad setting.
    fn from_settings(settings: &Settings) -> Result<Self, String>;
}

impl<T: Default> FromSettings for T {
    fn from_settings(_settings: &Settings) -> Result<Self, String> {
        Ok(T::default())
    }
}

/// State that must outlive a batch: the host commits [`State::snapshot`] with the data and hands
/// it to [`State::restore`] of a fresh instance after a restart, a rebalance or a failure.
pub trait State {
    /// The state as bytes; equal states should give equal bytes.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the state with one from [`State::snapshot`]; empty bytes mean no state yet.
    fn restore(&mut self, state: &[u8]) -> Result<(), String>;
}

/// How much a [`log`] line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Logs through the host (bounded by the host; use for rare events, not per record).
pub fn log(level: Level, message: &str) {
    component::log(level, message);
}

/// Exports a validator as this component's.
///
/// - `export_validator!(MyType)`: a type implementing [`Validate`] and [`FromSettings`] (any
///   `Default` type does).
/// - `export_validator!(MyType, state = field)`: also commits and restores `field` (a [`State`]).
/// - `export_validator!(fn my_function)`: a stateless validator that is one function
///   `fn(&Batch, &mut Verdict) -> Result<(), String>`, reading every field.
///
/// Each form takes `name = ".."` and `version = ".."` before `state`; they default to the crate's
/// `CARGO_PKG_NAME` and `CARGO_PKG_VERSION`.
#[macro_export]
macro_rules! export_validator {
    (fn $function:path $(, name = $name:expr)? $(, version = $version:expr)? $(,)?) => {
        #[doc(hidden)]
        #[derive(Default)]
        pub struct __K2Function;

        impl $crate::Validate for __K2Function {
            fn validate(&mut self, batch: &$crate::Batch, verdict: &mut $crate::Verdict) -> Result<(), String> {
                $function(batch, verdict)
            }
        }

        $crate::export_validator!(__K2Function $(, name = $name)? $(, version = $version)?);
    };
    ($ty:ty $(, name = $name:expr)? $(, version = $version:expr)? $(, state = $state:ident)? $(,)?) => {
        impl $crate::component::Exported for $ty {
            // `env!` expands in the user's crate, so these are its name and version.
            const NAME: &'static str = $crate::__k2_first!($($name,)? ::core::env!("CARGO_PKG_NAME"));
            const VERSION: &'static str = $crate::__k2_first!($($version,)? ::core::env!("CARGO_PKG_VERSION"));

            fn snapshot(&self) -> ::std::vec::Vec<u8> {
                $crate::__k2_snapshot!(self $(, $state)?)
            }

            fn restore(&mut self, state: &[u8]) -> ::core::result::Result<(), ::std::string::String> {
                $crate::__k2_restore!(self, state $(, $state)?)
            }
        }

        #[doc(hidden)]
        pub struct __K2Component;

        impl $crate::component::Guest for __K2Component {
            type Validator = $crate::component::Adapter<$ty>;

            fn info() -> $crate::component::ModuleInfo {
                $crate::component::info::<$ty>()
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::component::bindings::__export_k2_bindings!(__K2Component with_types_in $crate::component::bindings);
    };
}

/// The first of its arguments: a name or version given to [`export_validator!`], else the default.
#[doc(hidden)]
#[macro_export]
macro_rules! __k2_first {
    ($first:expr $(, $rest:expr)*) => {
        $first
    };
}

/// The snapshot of the field named in [`export_validator!`]'s `state`, or none.
#[doc(hidden)]
#[macro_export]
macro_rules! __k2_snapshot {
    ($this:ident) => {
        ::std::vec::Vec::new()
    };
    ($this:ident, $field:ident) => {
        $crate::State::snapshot(&$this.$field)
    };
}

/// The restore of the field named in [`export_validator!`]'s `state`; without one, state is ignored.
#[doc(hidden)]
#[macro_export]
macro_rules! __k2_restore {
    ($this:ident, $bytes:ident) => {{
        let _ = $bytes;
        Ok(())
    }};
    ($this:ident, $bytes:ident, $field:ident) => {
        $crate::State::restore(&mut $this.$field, $bytes)
    };
}
