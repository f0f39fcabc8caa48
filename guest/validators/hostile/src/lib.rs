//! A hostile validator for the host's sandbox tests: setting `mode` picks the misbehaviour.
//!
//! Modes: `loop` (never returns), `memory` (allocates without end), `recurse` (unbounded
//! recursion), `panic-create`, `panic-validate`, `bad-index` (rejects a record outside the
//! batch), `oversized` (more rejections than records), `duplicate-index`, `read-file`,
//! `read-env`, `socket`, `log-flood`. The escape modes reject record 0 with code `escaped`
//! if the attempt succeeded, so a test can tell containment from luck.

use k2_validator_sdk::{Batch, Level, Settings, Validate, Verdict, export_validator, log};

pub struct Hostile {
    mode: String,
}

impl Validate for Hostile {
    const NAME: &'static str = "hostile";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn new(settings: &Settings) -> Result<Self, String> {
        let mode = settings.get("mode").unwrap_or("none").to_string();
        if mode == "panic-create" {
            panic!("hostile: panic in create");
        }
        Ok(Self { mode })
    }

    fn validate(&mut self, batch: &Batch, verdict: &mut Verdict) -> Result<(), String> {
        let n = batch.len();
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
