//! Where a partition's starting offset stands against its log: inside it, before its start (records lost), or past its end (the topic recreated).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::config::OffsetLostPolicy;

/// A partition's starting offset against the log's first offset (`low`) and its end (`high`,
/// the offset the next record will get).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogPosition {
    /// `low <= start <= high`: every record from `start` on can be read.
    Inside,
    /// `start < low`: records `from..to` were deleted (retention, delete-records) unread.
    BeforeStart { from: i64, to: i64 },
    /// `start > high`: the log is shorter than the table says it was. The topic was deleted
    /// and created again, or its log cut back (unclean leader election).
    PastEnd { start: i64, high: i64 },
}

impl LogPosition {
    pub fn of(start: i64, low: i64, high: i64) -> Self {
        if start < low {
            Self::BeforeStart { from: start, to: low }
        } else if start > high {
            Self::PastEnd { start, high }
        } else {
            Self::Inside
        }
    }
}

/// Records of one partition never read: offsets `from..to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostRange {
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

impl LostRange {
    pub fn records(&self) -> u64 {
        (self.to - self.from).max(0) as u64
    }

    /// What is still lost once the table stores `stored` for this partition: another writer
    /// that committed records of the range held them, so they were not lost after all.
    pub fn after(self, stored: Option<i64>) -> Option<LostRange> {
        match stored {
            Some(o) if o >= self.to => None,
            Some(o) => Some(LostRange { from: self.from.max(o), ..self }),
            None => Some(self),
        }
    }
}

/// The checks of one assignment of `topic`: where each partition starts, and what stops it.
#[derive(Debug, Default)]
pub struct StartCheck {
    /// Partition → the offset it starts at.
    pub starts: BTreeMap<i32, i64>,
    /// Losses accepted under `on_offset_lost = "skip"`.
    pub skipped: Vec<LostRange>,
    lost: Vec<LostRange>,
    past_end: Vec<(i32, i64, i64)>,
    unknown: Vec<String>,
}

impl StartCheck {
    /// Judges partition `p`, stored at `start`, against its log `low..high` under `policy`.
    pub fn partition(&mut self, p: i32, start: i64, low: i64, high: i64, policy: OffsetLostPolicy) {
        match LogPosition::of(start, low, high) {
            LogPosition::Inside => {
                self.starts.insert(p, start);
            }
            LogPosition::BeforeStart { from, to } => {
                let range = LostRange { partition: p, from, to };
                match policy {
                    OffsetLostPolicy::Skip => {
                        self.skipped.push(range);
                        self.starts.insert(p, to);
                    }
                    OffsetLostPolicy::Fail => self.lost.push(range),
                }
            }
            LogPosition::PastEnd { start, high } => self.past_end.push((p, start, high)),
        }
    }

    /// True if partition `p` was judged (started, or stopped by a loss or a past-end offset).
    pub fn judged(&self, p: i32) -> bool {
        self.starts.contains_key(&p)
            || self.lost.iter().chain(&self.skipped).any(|r| r.partition == p)
            || self.past_end.iter().any(|&(q, _, _)| q == p)
    }

    /// A partition's log bounds could not be read (`why` names it): it must not start, since
    /// its stored offset might be out of range.
    pub fn unknown(&mut self, why: String) {
        self.unknown.push(why);
    }

    /// Why the topic must stop, if it must: every partition named, with what to do.
    pub fn failure(&self, topic: &str) -> Option<String> {
        let mut parts = self.unknown.clone();
        if !self.past_end.is_empty() {
            let mut out = String::new();
            let _ = write!(out, "the table's offsets are past the end of topic {topic}'s log (");
            for (i, (p, start, high)) in self.past_end.iter().enumerate() {
                let sep = if i > 0 { ", " } else { "" };
                let _ = write!(out, "{sep}partition {p}: table at {start}, log ends at {high}");
            }
            let _ = write!(
                out,
                "): the topic was deleted and created again, or its log was cut back. Nothing was read. \
                 To ingest the topic as it is now from its start, `k2-ingest truncate --topic {topic} \
                 --restart-from earliest` empties the table (its old snapshots stay until expired); to keep \
                 the old rows, point the topic at a new `table` in the config"
            );
            parts.push(out);
        }
        if !self.lost.is_empty() {
            let mut out = String::new();
            let total: u64 = self.lost.iter().map(LostRange::records).sum();
            let _ =
                write!(out, "{total} records of topic {topic} were deleted from the log before they were ingested (");
            for (i, r) in self.lost.iter().enumerate() {
                let sep = if i > 0 { ", " } else { "" };
                let _ = write!(
                    out,
                    "{sep}partition {}: offsets {}..{}, {} records",
                    r.partition,
                    r.from,
                    r.to,
                    r.records()
                );
            }
            let _ = write!(
                out,
                "): retention or delete-records removed them while k2-ingest was behind. Nothing was read. \
                 To go on from the log's start, recording the loss in the table, set \
                 `on_offset_lost = \"skip\"` for this topic"
            );
            parts.push(out);
        }
        (!parts.is_empty()).then(|| parts.join("; and "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_is_inside_before_or_past_the_log() {
        assert_eq!(LogPosition::of(5, 0, 10), LogPosition::Inside);
        assert_eq!(LogPosition::of(10, 0, 10), LogPosition::Inside, "caught up: the next record gets offset 10");
        assert_eq!(LogPosition::of(0, 0, 0), LogPosition::Inside, "an empty log");
        assert_eq!(LogPosition::of(3, 7, 10), LogPosition::BeforeStart { from: 3, to: 7 });
        assert_eq!(LogPosition::of(3, 7, 7), LogPosition::BeforeStart { from: 3, to: 7 }, "all deleted");
        assert_eq!(LogPosition::of(11, 0, 10), LogPosition::PastEnd { start: 11, high: 10 });
    }

    #[test]
    fn a_loss_stops_the_topic_by_default_naming_each_partition_and_count() {
        let mut check = StartCheck::default();
        check.partition(0, 100, 2000, 3000, OffsetLostPolicy::Fail);
        check.partition(1, 50, 10, 60, OffsetLostPolicy::Fail);
        check.partition(2, 5, 8, 9, OffsetLostPolicy::Fail);
        let failure = check.failure("t").unwrap();
        assert!(failure.contains("1903 records of topic t"), "{failure}");
        assert!(failure.contains("partition 0: offsets 100..2000, 1900 records"), "{failure}");
        assert!(failure.contains("partition 2: offsets 5..8, 3 records"), "{failure}");
        assert!(!failure.contains("partition 1"), "{failure}");
        assert!(failure.contains("on_offset_lost = \"skip\""), "{failure}");
        assert_eq!(check.starts, BTreeMap::from([(1, 50)]));
    }

    #[test]
    fn under_skip_a_loss_starts_at_the_log_start_and_is_kept() {
        let mut check = StartCheck::default();
        check.partition(0, 100, 2000, 3000, OffsetLostPolicy::Skip);
        assert_eq!(check.failure("t"), None);
        assert_eq!(check.starts, BTreeMap::from([(0, 2000)]));
        assert_eq!(check.skipped, vec![LostRange { partition: 0, from: 100, to: 2000 }]);
        assert_eq!(check.skipped[0].records(), 1900);
    }

    #[test]
    fn a_range_another_writer_committed_is_not_lost() {
        let r = LostRange { partition: 0, from: 100, to: 2000 };
        assert_eq!(r.after(None), Some(r));
        assert_eq!(r.after(Some(50)), Some(r));
        assert_eq!(r.after(Some(500)), Some(LostRange { partition: 0, from: 500, to: 2000 }));
        assert_eq!(r.after(Some(2000)), None);
    }

    #[test]
    fn a_recreated_topic_stops_even_under_skip_and_says_how_to_go_on() {
        let mut check = StartCheck::default();
        check.partition(0, 5000, 0, 120, OffsetLostPolicy::Skip);
        let failure = check.failure("t").unwrap();
        assert!(failure.contains("partition 0: table at 5000, log ends at 120"), "{failure}");
        assert!(failure.contains("deleted and created again"), "{failure}");
        assert!(failure.contains("k2-ingest truncate --topic t --restart-from earliest"), "{failure}");
        assert!(check.starts.is_empty());
    }
}
