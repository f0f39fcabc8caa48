//! When a consume run maintains its tables: after its first commit, then after the first commit at least `interval_ms` after the last run; orphans swept at the first run, then at least `orphan_sweep_interval_ms` apart.

use std::time::{Duration, Instant};

/// The maintenance clock of one consume run.
#[derive(Debug)]
pub struct Schedule {
    interval: Option<Duration>,
    last: Option<Instant>,
    sweep_interval: Option<Duration>,
    last_sweep: Option<Instant>,
}

/// A maintenance run that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Orphans are swept by this run too.
    pub sweep_orphans: bool,
}

impl Schedule {
    /// `interval` `None`: maintenance is off for the run; `sweep_interval` `None`: it never
    /// sweeps orphans.
    pub fn new(interval: Option<Duration>, sweep_interval: Option<Duration>) -> Self {
        Self { interval, last: None, sweep_interval, last_sweep: None }
    }

    /// The run due after a commit at `now`, if any, counted as started.
    pub fn due_after_commit(&mut self, now: Instant) -> Option<Due> {
        let interval = self.interval?;
        if self.last.is_some_and(|last| now.duration_since(last) < interval) {
            return None;
        }
        self.last = Some(now);
        let sweep_orphans = self
            .sweep_interval
            .is_some_and(|every| self.last_sweep.is_none_or(|last| now.duration_since(last) >= every));
        if sweep_orphans {
            self.last_sweep = Some(now);
        }
        Some(Due { sweep_orphans })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_commit_then_one_per_interval() {
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        let mut s = Schedule::new(Some(hour), Some(hour * 3));
        let sweep = Some(Due { sweep_orphans: true });
        let plain = Some(Due { sweep_orphans: false });
        assert_eq!(s.due_after_commit(t0), sweep, "a restarted run cleans up after its first commit");
        assert_eq!(s.due_after_commit(t0 + hour / 2), None);
        assert_eq!(s.due_after_commit(t0 + hour), plain);
        assert_eq!(s.due_after_commit(t0 + hour + hour / 2), None);
        assert_eq!(s.due_after_commit(t0 + hour * 2), plain);
        assert_eq!(s.due_after_commit(t0 + hour * 3), sweep, "a sweep waits for a run to be due");
    }

    #[test]
    fn off_is_never_due() {
        let mut s = Schedule::new(None, Some(Duration::from_secs(1)));
        assert_eq!(s.due_after_commit(Instant::now()), None);
        let mut s = Schedule::new(Some(Duration::from_secs(1)), None);
        assert_eq!(s.due_after_commit(Instant::now()), Some(Due { sweep_orphans: false }));
    }
}
