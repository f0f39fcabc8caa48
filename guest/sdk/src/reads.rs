//! What a validator asks the host to copy into it: fields by name, and which Kafka metadata.

use std::ops::{BitOr, BitOrAssign};

/// The fields (`None`: all of them) and the Kafka metadata a validator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reads {
    pub fields: Option<Vec<String>>,
    pub kafka: KafkaMetadata,
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

/// A set of the Kafka metadata a batch can carry per record: offsets, timestamps, keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KafkaMetadata(u8);

impl KafkaMetadata {
    pub const OFFSETS: Self = Self(1);
    pub const TIMESTAMPS: Self = Self(2);
    pub const KEYS: Self = Self(4);

    pub fn empty() -> Self {
        Self(0)
    }

    pub fn all() -> Self {
        Self::OFFSETS | Self::TIMESTAMPS | Self::KEYS
    }

    /// Whether every item of `other` is in this set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for KafkaMetadata {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl BitOrAssign for KafkaMetadata {
    fn bitor_assign(&mut self, other: Self) {
        self.0 |= other.0;
    }
}
