//! Crash injection for crash-safety tests: `K2_FAILPOINT=<name>` aborts the process at that point.
//!
//! The points sit where a crash is most dangerous for exactly-once results:
//! `after-batch` (records in an open data file, nothing committed), `after-files-closed`
//! (data files complete but not in the table), `after-table-commit` (the table holds the
//! data and offsets, the consumer group does not). Unset in production; checked at batch and
//! commit boundaries only, never per record.

use std::sync::OnceLock;

/// The environment variable naming the point to abort at.
pub const ENV_FAILPOINT: &str = "K2_FAILPOINT";

/// Aborts the process, like a kill -9 would stop it, when `point` is the configured failpoint.
pub fn hit(point: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var(ENV_FAILPOINT).ok().filter(|v| !v.is_empty()));
    if armed.as_deref() == Some(point) {
        eprintln!("failpoint {point}: aborting the process");
        std::process::abort();
    }
}
