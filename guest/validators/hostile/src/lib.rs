//! A hostile validator for the host's sandbox tests: setting `mode` picks the misbehaviour.
//!
//! Modes: `loop` (never returns), `memory` (allocates without end), `recurse` (unbounded
//! recursion), `panic-create`, `panic-reads`, `panic-validate`, `bad-index` (rejects a record outside the
//! batch), `oversized` (more rejections than records), `duplicate-index`, `read-file`,
//! `read-env`, `socket`, `log-flood`, `refuse` (returns an error for the batch). The escape modes reject record 0 with code `escaped`
//! if the attempt succeeded, so a test can tell containment from luck.
//!
//! Ambient-authority modes use what std (and the raw WASI bindings) give any guest: `sleep`,
//! `wall-clock`, `monotonic-clock`, `random-bytes`, `insecure-random`, `poll`, `stdin`, `exit`;
//! each rejects record 0 with code `escaped` if the call returned. Mode `hashmap` fills a std
//! `HashMap` (seeded through WASI) and rejects record 0 with code `order` and the map's iteration
//! order, so a test can see that two instances agree.
//!
//! Amplification modes return many strings that all point at one large buffer (size from the
//! setting `alias_mib`, default 8): `alias-messages`, `alias-codes`, `alias-keys` (one rejection
//! or event per record), `alias-reads` (10,000 field names), `alias-error` (the batch's error),
//! and `huge-create-error` (`create` refuses with one such string). Mode `host-code` rejects
//! record 0 with the code in the setting `code`, to try passing off the host's own codes.
//! Mode `stdout-flood` writes its `alias_mib` buffer to stdout and stderr many times in single
//! raw WASI writes, which the host must not copy. Mode `show-batch`
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
    Batch, EventKind, FromSettings, KafkaMetadata, Level, Reads, SequenceEvent, SequenceTracker, Settings, Validate,
    Verdict, export_validator, log,
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
    "sleep",
    "wall-clock",
    "monotonic-clock",
    "random-bytes",
    "insecure-random",
    "poll",
    "stdin",
    "exit",
    "hashmap",
    "alias-messages",
    "alias-codes",
    "alias-keys",
    "alias-reads",
    "alias-error",
    "huge-create-error",
    "host-code",
    "stdout-flood",
];

pub struct Hostile {
    mode: String,
    poison: String,
    sequences: SequenceTracker,
    reads: Reads,
    alias_bytes: usize,
    code: String,
}

impl FromSettings for Hostile {
    fn from_settings(settings: &Settings) -> Result<Self, String> {
        let mode = settings.get("mode").unwrap_or("none").to_string();
        // A misspelt mode must not pass for `none`, which the benchmark relies on as its floor.
        if !MODES.contains(&mode.as_str()) {
            return Err(format!("setting `mode`: unknown mode `{mode}` (known: {})", MODES.join(", ")));
        }
        if mode == "panic-create" {
            panic!("hostile: panic in create");
        }
        let alias_bytes = settings.parse_or("alias_mib", 8usize)? << 20;
        if mode == "huge-create-error" {
            return Err("e".repeat(alias_bytes));
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
        let code = settings.get("code").unwrap_or("sequence-duplicate").to_string();
        Ok(Self { mode, poison, sequences: SequenceTracker::new(1), reads, alias_bytes, code })
    }
}

impl Validate for Hostile {
    fn reads(&self) -> Reads {
        if self.mode == "panic-reads" {
            panic!("hostile: panic in reads");
        }
        if self.mode == "alias-reads" {
            return Reads { fields: Some(aliases(10_000, self.alias_bytes)), kafka: KafkaMetadata::all() };
        }
        self.reads.clone()
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
            "bad-index" => verdict.reject(n + 7, "bad", "outside"),
            "duplicate-index" => {
                verdict.reject(0, "twice", "first");
                verdict.reject(0, "twice", "second");
            }
            "oversized" => {
                for i in 0..=n {
                    verdict.reject(i % n.max(1), "many", "too many");
                }
            }
            "read-file" => {
                if std::fs::read("/etc/hostname").is_ok() || std::fs::read_dir("/").is_ok() {
                    verdict.reject(0, "escaped", "read a host file");
                }
            }
            "read-env" => {
                if std::env::vars().next().is_some() || std::env::args().next().is_some() {
                    verdict.reject(0, "escaped", "saw the host environment");
                }
            }
            "socket" => {
                if std::net::TcpStream::connect("127.0.0.1:19092").is_ok() {
                    verdict.reject(0, "escaped", "opened a socket");
                }
            }
            "log-flood" => {
                let line = "x".repeat(4096);
                for i in 0..10_000 {
                    log(Level::Error, &format!("flood {i} {line}"));
                }
            }
            "alias-messages" | "alias-codes" => {
                let big = aliases(n, self.alias_bytes);
                // The strings are moved into the verdict, so every one still points at the buffer.
                for (i, text) in big.into_iter().enumerate() {
                    let (code, message) =
                        if self.mode == "alias-codes" { (text, String::new()) } else { ("alias".into(), text) };
                    verdict.reject(i, code, message);
                }
            }
            "alias-keys" => {
                for (i, key) in aliases(n, self.alias_bytes).into_iter().enumerate() {
                    verdict.event(SequenceEvent {
                        index: i as u32,
                        kind: EventKind::Gap,
                        key,
                        expected: 1,
                        received: 3,
                        missing: 1,
                    });
                }
            }
            "alias-error" => return Err(aliases(1, self.alias_bytes).remove(0)),
            "host-code" => verdict.reject(0, self.code.as_str(), "a validator's rejection"),
            #[cfg(target_arch = "wasm32")]
            "stdout-flood" => {
                let big = vec![b'o'; self.alias_bytes];
                let (out, err) = (wasip2::cli::stdout::get_stdout(), wasip2::cli::stderr::get_stderr());
                for _ in 0..n {
                    let _ = out.write(&big);
                    let _ = err.blocking_write_and_flush(&big);
                }
            }
            "hashmap" => {
                let map: std::collections::HashMap<u32, ()> = (0..16).map(|k| (k, ())).collect();
                let order: Vec<String> = map.keys().map(u32::to_string).collect();
                verdict.reject(0, "order", order.join(","));
            }
            other => {
                if ambient(other) {
                    verdict.reject(0, "escaped", format!("{other} returned"));
                }
            }
        }
        Ok(())
    }
}

/// Tries one ambient capability; true if the call came back (it should trap instead).
fn ambient(mode: &str) -> bool {
    use std::io::Read;
    match mode {
        "sleep" => std::thread::sleep(std::time::Duration::from_secs(600)),
        "wall-clock" => {
            std::hint::black_box(std::time::SystemTime::now());
        }
        "monotonic-clock" => {
            std::hint::black_box(std::time::Instant::now());
        }
        "stdin" => {
            let mut buf = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut buf);
        }
        "exit" => std::process::exit(3),
        #[cfg(target_arch = "wasm32")]
        "random-bytes" => {
            std::hint::black_box(wasip2::random::random::get_random_bytes(16));
        }
        #[cfg(target_arch = "wasm32")]
        "insecure-random" => {
            std::hint::black_box(wasip2::random::insecure::get_insecure_random_bytes(16));
        }
        #[cfg(target_arch = "wasm32")]
        "poll" => {
            let sleeper = wasip2::clocks::monotonic_clock::subscribe_duration(600_000_000_000);
            wasip2::io::poll::poll(&[&sleeper]);
        }
        _ => return false,
    }
    true
}

/// `n` strings that all point at one leaked buffer of `bytes`: a guest can hand the host the
/// same memory many times over, and the host must not copy it once per string.
fn aliases(n: usize, bytes: usize) -> Vec<String> {
    let big: &'static mut [u8] = Box::leak(vec![b'a'; bytes.max(1)].into_boxed_slice());
    (0..n)
        // SAFETY: deliberately unsound aliasing, for the host's tests only: every String shares
        // one leaked buffer. The host reads them once; the guest's post-return frees them, and
        // whatever that does to this instance is the host's to contain.
        .map(|_| unsafe { String::from_raw_parts(big.as_mut_ptr(), big.len(), big.len()) })
        .collect()
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
                verdict.event(event);
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

export_validator!(Hostile, name = "hostile", state = sequences);
