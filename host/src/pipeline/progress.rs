//! How far a run has got: counts and the backlog behind the high watermarks, published for a progress display.

use std::time::Duration;

/// How often the run refreshes its lag gauges and publishes its progress.
pub(super) const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// A run's counts so far; published about once a second, so a display never slows the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Messages read from Kafka.
    pub consumed: u64,
    /// Records written to the table (committed or about to be).
    pub written: u64,
    /// Records the validator rejected.
    pub rejected: u64,
    /// Messages whose body did not decode.
    pub undecodable: u64,
    /// Iceberg commits made.
    pub commits: u64,
    /// Messages between this instance's read positions and the high watermarks of the
    /// partitions it holds; `None` until the first assignment.
    pub behind: Option<u64>,
    /// What a run without partitions waits for, e.g. `group g to assign partitions
    /// (PreparingRebalance, 3 member(s))`; `None` once partitions are assigned.
    pub waiting_for: Option<String>,
}
