//! A hostile validator for the host's sandbox tests: setting `mode` picks the misbehaviour.
//!
//! Modes: `loop` (never returns), `memory` (allocates without end), `recurse` (unbounded
//! recursion), `panic-create`, `panic-reads`, `panic-validate`, `bad-index` (rejects a record outside the
//! batch), `oversized` (more rejections than records), `duplicate-index`, `read-file`,
//! `read-env`, `socket`, `log-flood`, `refuse` (returns an error for the batch). The escape modes reject record 0 with code `escaped`
//! if the attempt succeeded, so a test can tell containment from luck. Mode `show-batch`
//! rejects record 0 with code `batch` and a message listing what the batch holds (its columns
//! and how many Kafka offsets, timestamps and keys); mode `none` (the default) does nothing,
//! which the benchmark uses as a floor.
//!
//! Settings `reads` (comma-separated fields) and `reads_kafka` (comma-separated of `offsets`,
//! `timestamps`, `keys`) set what the validator asks the host for; unset, it asks for
//! everything.
//!
//! Poison modes misbehave only on records whose symbol is the `poison` setting (default
//! `POISON`): `poison-panic`, `poison-loop`, `poison-memory`. Every other record is tracked
//! per (exchange, symbol) like a real validator, with snapshot and restore, so a test can see
//! that the host's recovery keeps the sequence state exact.

use k2_validator_sdk::{
    Batch, KafkaMetadata, Level, Reads, SequenceTracker, Settings, Validate, Verdict, export_validator, log,
};

const MODES: &[&str] = &[
    "none",
    "loop",
    "memory",
    "recurse",
    "panic-create",
    "panic-reads",
    "panic-validate",
    "bad-index",
    "oversized",
    "duplicate-index",
    "read-file",
    "read-env",
    "socket",
    "log-flood",
    "refuse",
    "show-batch",
    "poison-panic",
    "poison-loop",
    "poison-memory",
];

pub struct Hostile {
    mode: String,
    poison: String,
    sequences: SequenceTracker,
    reads: Reads,
}

impl Validate for Hostile {
    const NAME: &'static str = "hostile";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn new(settings: &Settings) -> Result<Self, String> {
        let mode = settings.get("mode").unwrap_or("none").to_string();
        // A misspelt mode must not pass for `none`, which the benchmark relies on as its floor.
        if !MODES.contains(&mode.as_str()) {
            return Err(format!("setting `mode`: unknown mode `{mode}` (known: {})", MODES.join(", ")));
        }
        if mode == "panic-create" {
            panic!("hostile: panic in create");
        }
        let poison = settings.get("poison").unwrap_or("POISON").to_string();
        let mut reads = Reads::everything();
        if let Some(fields) = settings.get("reads") {
            reads.fields = Some(fields.split(',').filter(|f| !f.is_empty()).map(str::to_string).collect());
        }
        if let Some(kafka) = settings.get("reads_kafka") {
            reads.kafka = KafkaMetadata::empty();
            for part in kafka.split(',').filter(|p| !p.is_empty()) {
                reads.kafka |= match part {
                    "offsets" => KafkaMetadata::OFFSETS,
                    "timestamps" => KafkaMetadata::TIMESTAMPS,
                    "keys" => KafkaMetadata::KEYS,
                    other => return Err(format!("setting `reads_kafka`: unknown metadata `{other}`")),
                };
            }
        }
        Ok(Self { mode, poison, sequences: SequenceTracker::new(1), reads })
    }

    fn reads(&self) -> Reads {
        if self.mode == "panic-reads" {
            panic!("hostile: panic in reads");
        }
        self.reads.clone()
    }

    fn snapshot(&self) -> Vec<u8> {
        self.sequences.snapshot()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        self.sequences.restore(state)
    }

    fn validate(&mut self, batch: &Batch, verdict: &mut Verdict) -> Result<(), String> {
        let n = batch.len();
        if self.mode.starts_with("poison-") {
            return self.poisoned(batch, verdict);
        }
        match self.mode.as_str() {
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = std::hint::black_box(i.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recurse" => {
                std::hint::black_box(depth(std::hint::black_box(u64::MAX)));
            }
            "panic-validate" => panic!("hostile: panic in validate"),
            "refuse" => return Err("hostile: refuses every batch".into()),
            "show-batch" => {
                let names: Vec<&str> = batch.columns.iter().map(|c| c.name.as_str()).collect();
                let keys = batch.keys().map(|k| k.len().to_string()).unwrap_or_else(|_| "none".into());
                let message = format!(
                    "records={n} columns={} offsets={} timestamps={} keys={keys}",
                    names.join(","),
                    batch.offsets.len(),
                    batch.timestamps.len()
                );
                verdict.reject(0, "batch", message);
            }
            "bad-index" => verdict.reject(n + 7, "bad", "outside".into()),
            "duplicate-index" => {
                verdict.reject(0, "twice", "first".into());
                verdict.reject(0, "twice", "second".into());
            }
            "oversized" => {
                for i in 0..=n {
                    verdict.reject(i % n.max(1), "many", "too many".into());
                }
            }
            "read-file" => {
                if std::fs::read("/etc/hostname").is_ok() || std::fs::read_dir("/").is_ok() {
                    verdict.reject(0, "escaped", "read a host file".into());
                }
            }
            "read-env" => {
                if std::env::vars().next().is_some() || std::env::args().next().is_some() {
                    verdict.reject(0, "escaped", "saw the host environment".into());
                }
            }
            "socket" => {
                if std::net::TcpStream::connect("127.0.0.1:19092").is_ok() {
                    verdict.reject(0, "escaped", "opened a socket".into());
                }
            }
            "log-flood" => {
                let line = "x".repeat(4096);
                for i in 0..10_000 {
                    log(Level::Error, &format!("flood {i} {line}"));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Hostile {
    /// Tracks sequences like a real validator and misbehaves on the poison symbol.
    fn poisoned(&mut self, batch: &Batch, verdict: &mut Verdict) -> Result<(), String> {
        let symbol = batch.utf8("symbol")?;
        let exchange = batch.utf8("exchange")?;
        let sequence = batch.int64("sequence")?;
        for i in 0..batch.len() {
            if symbol.get(i) == self.poison {
                match self.mode.as_str() {
                    "poison-panic" => panic!("hostile: poison record at index {i}"),
                    "poison-loop" => loop {
                        std::hint::black_box(i);
                    },
                    _ => {
                        let mut hoard: Vec<Vec<u8>> = Vec::new();
                        loop {
                            hoard.push(vec![1u8; 1 << 20]);
                            std::hint::black_box(&hoard);
                        }
                    }
                }
            }
            if let Some(event) = self.sequences.observe_listing(i, exchange.get(i), symbol.get(i), sequence[i]) {
                verdict.events.push(event);
            }
        }
        Ok(())
    }
}

/// Recursion the optimiser cannot turn into a loop.
fn depth(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let local = [n; 16];
    std::hint::black_box(&local);
    1 + depth(std::hint::black_box(n - 1)) + local[3] % 2
}

export_validator!(Hostile);
