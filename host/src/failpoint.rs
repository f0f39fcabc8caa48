//! Crash injection for crash-safety tests: `K2_FAILPOINT=<name>` aborts the process at that point.
//!
//! The points sit where a crash is most dangerous for exactly-once results:
//! `after-batch` (records in an open data file, nothing committed), `after-files-closed`
//! (data files complete but not in the table), `after-table-commit` (the table holds the
//! data and offsets, the consumer group does not), and in maintenance `after-expiry-commit`
//! (snapshots expired, their files not yet deleted), `after-first-unreferenced-delete` and
//! `after-first-orphan-delete` (a deletion cut short). Unset in production; checked at batch
//! and commit boundaries only, never per record.
//!
//! `K2_FAILPOINT=<name>@<n>` aborts at the point's n-th hit instead of its first (a crash at
//! a later commit, when the table already holds earlier ones).
//!
//! `K2_FAILPOINT=stall-<name>` instead stalls the process at that point for
//! `K2_FAILPOINT_STALL_MS` (default 20000) without polling Kafka, like a long GC pause or a
//! frozen VM: the group moves its partitions on, and the conflict rules must keep the table exact.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the point to abort at.
pub const ENV_FAILPOINT: &str = "K2_FAILPOINT";

/// How long a `stall-` failpoint stalls, in milliseconds.
pub const ENV_FAILPOINT_STALL_MS: &str = "K2_FAILPOINT_STALL_MS";

/// Aborts the process, like a kill -9 would stop it, when `point` is the configured failpoint
/// (or stalls it, for `stall-<point>`).
pub fn hit(point: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var(ENV_FAILPOINT).ok().filter(|v| !v.is_empty()));
    let Some(armed) = armed.as_deref() else { return };
    let (armed, nth) = match armed.split_once('@') {
        Some((name, n)) => (name, n.parse::<u64>().ok()),
        None => (armed, Some(1)),
    };
    let stall = armed.strip_prefix("stall-") == Some(point);
    if armed != point && !stall {
        return;
    }
    let Some(nth) = nth else {
        // A test that meant to crash here must not pass because it never did.
        eprintln!("failpoint {point}: {ENV_FAILPOINT}'s count after @ is not a number; aborting the process");
        std::process::abort();
    };
    // The n-th hit only (a stall too: later hits run on).
    static HITS: AtomicU64 = AtomicU64::new(0);
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 != nth && !(stall && nth == 1) {
        return;
    }
    if !stall {
        eprintln!("failpoint {point}: aborting the process");
        std::process::abort();
    }
    let ms = std::env::var(ENV_FAILPOINT_STALL_MS).ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    eprintln!("failpoint {point}: stalling for {ms} ms");
    // Blocking on purpose: nothing else of this process may run, as in a frozen VM.
    std::thread::sleep(std::time::Duration::from_millis(ms));
}
