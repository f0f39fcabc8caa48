//! Which snapshots expire: older than the age limit or past the count limit, except the ones k2-ingest and readers depend on.

use std::collections::{HashMap, HashSet};

use iceberg::spec::TableMetadata;

use crate::sink::lineage::carries_k2;

/// Snapshots one run expires at most, oldest first: a table fed for months before maintenance
/// catches up over several runs instead of holding the consume loop for minutes.
pub const MAX_EXPIRED_PER_RUN: usize = 1_000;

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
    /// Retention rules the table sets itself, which leave it to the engine that set them.
    pub own_rules: Option<String>,
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
        // iceberg-rust 0.10 keeps `refs` private and looks refs up only by name, so they are
        // read from the metadata as the spec writes it, once.
        let refs = serde_json::to_value(metadata).ok().and_then(|mut json| json.get_mut("refs").map(std::mem::take));
        let own_rules = own_rules(metadata, refs.as_ref());
        let ref_heads = if own_rules.is_some() { None } else { refs.as_ref().and_then(ref_heads) };
        Self { snapshots, current: metadata.current_snapshot_id(), ref_heads, own_rules }
    }
}

/// Retention rules of the table's own that iceberg-rust's expiry applies whatever ids it is
/// given (a branch's `max-snapshot-age-ms` or `min-snapshots-to-keep`, a ref's
/// `max-ref-age-ms`, the table's `history.expire.max-ref-age-ms`): they could expire the
/// history back to our offsets, or drop a tag. Such a table is left to the engine that set them.
fn own_rules(metadata: &TableMetadata, refs: Option<&serde_json::Value>) -> Option<String> {
    if metadata.properties().contains_key("history.expire.max-ref-age-ms") {
        return Some("the table sets history.expire.max-ref-age-ms".into());
    }
    for (name, r) in refs?.as_object()? {
        for key in ["max-snapshot-age-ms", "min-snapshots-to-keep", "max-ref-age-ms"] {
            if r.get(key).is_some_and(|v| !v.is_null()) {
                return Some(format!("ref {name} sets its own {key}"));
            }
        }
    }
    None
}

/// The snapshots branches and tags point at, from the metadata's `refs` (`None` if they cannot
/// be read: then nothing expires, see [`Retention::select`]).
fn ref_heads(refs: &serde_json::Value) -> Option<Vec<i64>> {
    refs.as_object()?.values().map(|r| r.get("snapshot-id")?.as_i64()).collect()
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
        if let Some(rules) = &history.own_rules {
            return Selection::Refused(format!("{rules}; its snapshots are left to the engine that set it"));
        }
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
        let mut expire: HashSet<i64> = newest_first
            .iter()
            .enumerate()
            .filter(|(rank, s)| (*rank >= self.max_snapshots || s.timestamp_ms < cutoff) && !protected.contains(&s.id))
            .map(|(_, s)| s.id)
            .collect();
        // The current history may be cut only right below a snapshot holding our offsets: an
        // oldest kept ancestor of another engine's would read as "before k2-ingest's first
        // commit" (no offsets), and a rewind to it would read its records again.
        let mut next = Some(current);
        let mut kept_above: Option<&SnapshotInfo> = None;
        while let Some(id) = next {
            let Some(s) = by_id.get(&id) else { break };
            if expire.contains(&id) && kept_above.is_some_and(|k| !k.k2) {
                expire.remove(&id);
            }
            if !expire.contains(&id) {
                kept_above = Some(s);
            }
            next = s.parent;
        }
        let mut expire: Vec<(i64, i64)> =
            history.snapshots.iter().filter(|s| expire.contains(&s.id)).map(|s| (s.timestamp_ms, s.id)).collect();
        expire.sort_unstable();
        // Bounded work between two polls of the broker; the rest goes at the next runs.
        expire.truncate(MAX_EXPIRED_PER_RUN);
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
        History { snapshots, current: Some(n), ref_heads: Some(vec![n]), own_rules: None }
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
    fn the_current_history_is_cut_only_below_a_snapshot_with_our_offsets() {
        // Ours at 1..=6, another engine's compaction at 7, ours again at 8..=10.
        let h = linear(10, DAY, |id| id != 7);
        // Keeping the newest 4 would cut below 7; 6 is kept too, so the oldest kept one is ours.
        let r = Retention { max_age_ms: DAY, max_snapshots: 4 };
        assert_eq!(expired(r, &h, DAY), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn one_run_expires_at_most_the_oldest_thousand() {
        let h = linear(2_500, 1_000 * DAY, |_| true);
        let r = Retention { max_age_ms: DAY, max_snapshots: 10 };
        let ids = expired(r, &h, 1_000 * DAY);
        assert_eq!(ids.len(), MAX_EXPIRED_PER_RUN);
        assert_eq!((ids[0], ids[999]), (1, 1_000));
    }

    #[test]
    fn a_table_with_retention_rules_of_its_own_is_left_alone() {
        let mut h = linear(5, DAY, |_| true);
        h.own_rules = Some("ref main sets its own max-snapshot-age-ms".into());
        let r = Retention { max_age_ms: 1, max_snapshots: 1 };
        assert!(matches!(r.select(&h, DAY), Selection::Refused(why) if why.contains("max-snapshot-age-ms")));
    }

    #[test]
    fn within_both_limits_nothing_expires() {
        let h = linear(10, DAY, |_| true);
        let r = Retention { max_age_ms: DAY, max_snapshots: 10 };
        assert_eq!(expired(r, &h, DAY), Vec::<i64>::new());
    }
}
