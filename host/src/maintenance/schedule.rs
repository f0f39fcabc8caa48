//! When a consume run maintains its tables: after its first commit, then after the first commit at least `interval_ms` after the last run.

use std::time::{Duration, Instant};

/// The maintenance clock of one consume run.
#[derive(Debug)]
pub struct Schedule {
    interval: Option<Duration>,
    last: Option<Instant>,
}

impl Schedule {
    /// `None`: maintenance is off for the run.
    pub fn new(interval: Option<Duration>) -> Self {
        Self { interval, last: None }
    }

    /// Whether a run is due after a commit at `now`; if so, counts it as started.
    pub fn due_after_commit(&mut self, now: Instant) -> bool {
        let Some(interval) = self.interval else { return false };
        let due = self.last.is_none_or(|last| now.duration_since(last) >= interval);
        if due {
            self.last = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_commit_then_one_per_interval() {
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        let mut s = Schedule::new(Some(hour));
        assert!(s.due_after_commit(t0), "a restarted run cleans up after its first commit");
        assert!(!s.due_after_commit(t0 + hour / 2));
        assert!(s.due_after_commit(t0 + hour));
        assert!(!s.due_after_commit(t0 + hour + hour / 2));
    }

    #[test]
    fn off_is_never_due() {
        let mut s = Schedule::new(None);
        assert!(!s.due_after_commit(Instant::now()));
    }
}
