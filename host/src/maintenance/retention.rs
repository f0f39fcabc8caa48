//! Which snapshots expire: older than the age limit or past the count limit, except the ones k2-ingest and readers depend on.

use std::collections::{HashMap, HashSet};

use iceberg::spec::TableMetadata;

use crate::sink::lineage::carries_k2;

/// How much history a table keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Snapshots older than this many milliseconds expire.
    pub max_age_ms: i64,
    /// Past the newest this many, snapshots expire however young.
    pub max_snapshots: usize,
}

/// One snapshot as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: i64,
    pub parent: Option<i64>,
    pub timestamp_ms: i64,
    /// Its summary holds k2-ingest's offsets.
    pub k2: bool,
}

/// A table's snapshots and what must not expire, read from its metadata.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub snapshots: Vec<SnapshotInfo>,
    pub current: Option<i64>,
    /// Heads of branches and tags (`None`: they could not be read).
    pub ref_heads: Option<Vec<i64>>,
}

impl History {
    pub fn of(metadata: &TableMetadata) -> Self {
        let snapshots = metadata
            .snapshots()
            .map(|s| SnapshotInfo {
                id: s.snapshot_id(),
                parent: s.parent_snapshot_id(),
                timestamp_ms: s.timestamp_ms(),
                k2: carries_k2(s),
            })
            .collect();
        Self { snapshots, current: metadata.current_snapshot_id(), ref_heads: ref_heads(metadata) }
    }
}

/// The snapshots branches and tags point at. iceberg-rust 0.10 keeps `refs` private and looks
/// refs up only by name, so they are read from the metadata as the spec writes it (`None` if
/// that fails: then nothing expires, see [`Retention::select`]).
fn ref_heads(metadata: &TableMetadata) -> Option<Vec<i64>> {
    let json = serde_json::to_value(metadata).ok()?;
    let refs = json.get("refs")?.as_object()?;
    refs.values().map(|r| r.get("snapshot-id")?.as_i64()).collect()
}

/// Why nothing may expire, or what does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The snapshot ids to expire (possibly none), oldest first.
    Expire(Vec<i64>),
    /// Nothing may expire, for this reason.
    Refused(String),
}

impl Retention {
    /// The snapshots of `history` to expire at `now_ms`. Never one of: the current snapshot
    /// and its ancestors back to the newest holding k2-ingest's offsets (where a restart
    /// resumes, and what tells a landed commit from a lost one: expiring one in between
    /// would cut the history leading to it), and the heads of branches and tags. A table
    /// without a current snapshot (empty, or truncated) is left alone, as is one whose
    /// current history holds no offsets of ours: resuming depends on what it holds, and
    /// nothing here can tell what to keep.
    pub fn select(&self, history: &History, now_ms: i64) -> Selection {
        let Some(current) = history.current else {
            return Selection::Refused("the table has no current snapshot".into());
        };
        let by_id: HashMap<i64, &SnapshotInfo> = history.snapshots.iter().map(|s| (s.id, s)).collect();
        let Some(ref_heads) = &history.ref_heads else {
            return Selection::Refused("the table's branches and tags could not be read".into());
        };
        let mut protected: HashSet<i64> = ref_heads.iter().copied().collect();
        let mut next = Some(current);
        let mut found_k2 = false;
        while let Some(id) = next {
            let Some(s) = by_id.get(&id) else { break };
            protected.insert(id);
            if s.k2 {
                found_k2 = true;
                break;
            }
            next = s.parent;
        }
        if !found_k2 {
            return Selection::Refused(format!(
                "no snapshot in the history of the current one ({current}) holds k2-ingest's offsets"
            ));
        }
        let mut newest_first: Vec<&SnapshotInfo> = history.snapshots.iter().collect();
        // Ties (same millisecond) by id, so the choice is the same on every run.
        newest_first.sort_by_key(|s| std::cmp::Reverse((s.timestamp_ms, s.id)));
        let cutoff = now_ms.saturating_sub(self.max_age_ms);
        let mut expire: Vec<(i64, i64)> = newest_first
            .iter()
            .enumerate()
            .filter(|(rank, s)| (*rank >= self.max_snapshots || s.timestamp_ms < cutoff) && !protected.contains(&s.id))
            .map(|(_, s)| (s.timestamp_ms, s.id))
            .collect();
        expire.sort_unstable();
        Selection::Expire(expire.into_iter().map(|(_, id)| id).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    /// A linear history of `n` snapshots, one a minute, ending at `now`; `k2` marks which carry offsets.
    fn linear(n: i64, now: i64, k2: impl Fn(i64) -> bool) -> History {
        let snapshots = (0..n)
            .map(|i| SnapshotInfo {
                id: i + 1,
                parent: (i > 0).then_some(i),
                timestamp_ms: now - (n - 1 - i) * 60_000,
                k2: k2(i + 1),
            })
            .collect();
        History { snapshots, current: Some(n), ref_heads: Some(vec![n]) }
    }

    fn expired(r: Retention, h: &History, now: i64) -> Vec<i64> {
        match r.select(h, now) {
            Selection::Expire(ids) => ids,
            Selection::Refused(why) => panic!("refused: {why}"),
        }
    }

    #[test]
    fn past_the_count_the_oldest_expire() {
        let h = linear(10, DAY, |_| true);
        let r = Retention { max_age_ms: DAY, max_snapshots: 3 };
        assert_eq!(expired(r, &h, DAY), [1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn past_the_age_the_oldest_expire_within_the_count() {
        let h = linear(10, DAY, |_| true);
        // Snapshots are a minute apart: 4.5 minutes keeps the newest five.
        let r = Retention { max_age_ms: 270_000, max_snapshots: 100 };
        assert_eq!(expired(r, &h, DAY), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn the_history_back_to_our_newest_offsets_never_expires() {
        // Another engine appended 5 snapshots on top of our last (5).
        let h = linear(10, DAY, |id| id <= 5);
        let r = Retention { max_age_ms: 1, max_snapshots: 1 };
        assert_eq!(expired(r, &h, DAY), [1, 2, 3, 4], "5..=10 lead from the current snapshot to our offsets");
    }

    #[test]
    fn heads_of_branches_and_tags_never_expire() {
        let mut h = linear(10, DAY, |_| true);
        h.ref_heads.as_mut().unwrap().push(2);
        let r = Retention { max_age_ms: DAY, max_snapshots: 1 };
        assert_eq!(expired(r, &h, DAY), [1, 3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn snapshots_off_the_current_history_count_by_age_and_rank_too() {
        // A rewind left 4 and 5 off the current history (6's parent is 3).
        let mut h = linear(6, DAY, |_| true);
        h.snapshots[5].parent = Some(3);
        let r = Retention { max_age_ms: DAY, max_snapshots: 2 };
        assert_eq!(expired(r, &h, DAY), [1, 2, 3, 4]);
    }

    #[test]
    fn a_table_without_a_current_snapshot_or_our_offsets_is_left_alone() {
        let r = Retention { max_age_ms: 1, max_snapshots: 1 };
        let mut truncated = linear(5, DAY, |_| true);
        truncated.current = None;
        assert!(matches!(r.select(&truncated, DAY), Selection::Refused(why) if why.contains("no current snapshot")));
        let foreign = linear(5, DAY, |_| false);
        assert!(matches!(r.select(&foreign, DAY), Selection::Refused(why) if why.contains("offsets")));
    }

    #[test]
    fn within_both_limits_nothing_expires() {
        let h = linear(10, DAY, |_| true);
        let r = Retention { max_age_ms: DAY, max_snapshots: 10 };
        assert_eq!(expired(r, &h, DAY), Vec::<i64>::new());
    }
}
