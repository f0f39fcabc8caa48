//! The offset ledger: per partition, what this instance has read, handed to the writer and committed, and the rules that keep it exactly once.
//!
//! The loop tells the ledger what happened (a record read, a partition's records handed to
//! the writer, a commit, a conflict, a rebalance); the ledger answers what to commit, where
//! to seek and what the rebalance callback may resume from. It never touches Kafka or the
//! table itself, so its rules are tested alone against a model (see the tests below).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::sink::offsets::PartitionOffsets;

/// What this instance holds uncommitted, shared with the rebalance callback: if a partition
/// comes back to us while its records are still in our writer, reading it again from the
/// table's offsets would put them in twice.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HeldOffsets {
    /// Per partition, the first offset read since the last commit.
    pub from: PartitionOffsets,
    /// Per partition, the next offset after the records in the writer.
    pub next: PartitionOffsets,
}

impl HeldOffsets {
    /// Where assigned partitions start, given the offsets `stored` in the table: our own
    /// uncommitted records continue where they stop, unless another writer has committed
    /// past their start (then the commit's conflict check drops ours and rewinds).
    pub fn start(&self, mut stored: PartitionOffsets) -> PartitionOffsets {
        for (&p, &next) in &self.next {
            let from = self.from.get(&p).copied().unwrap_or(next);
            if stored.get(&p).is_none_or(|&s| s <= from) {
                stored.insert(p, next);
            }
        }
        stored
    }
}

/// How a commit conflict with another writer is resolved.
#[derive(Debug, PartialEq)]
pub enum Conflict {
    /// The other writer committed nothing we hold: re-apply our files on the new version.
    /// Partitions it committed past where we would read next (their previous owner flushing
    /// late) are sought forward to the table's offset, so we do not read its records again;
    /// `seek` may name partitions not assigned to us, which the caller skips.
    Disjoint { seek: Vec<(i32, i64)> },
    /// The other writer committed offsets we hold records for: everything uncommitted is
    /// dropped, and each partition read since the last commit is sought back to the given
    /// offset to read again (with, as for `Disjoint`, those to seek forward).
    Overlap { overlapping: Vec<i32>, rewind: Vec<(i32, i64)> },
}

/// What a revoked partition leaves behind.
#[derive(Debug, PartialEq)]
pub struct Revoked {
    /// Records of the partition wait in the writer: they are committed with the next
    /// commit, and so must be the validator state that saw them.
    pub in_writer: bool,
    /// The partition had a known table offset (a lag gauge to reset).
    pub was_tracked: bool,
}

/// The offset books of one topic's consume run, and their rules.
#[derive(Debug, Default)]
pub struct OffsetLedger {
    /// Per partition with records in hand, the offset after the last message read (decoded or not).
    read_to: PartitionOffsets,
    /// Per partition, the first offset read since the last commit: if the table's stored
    /// offset moves past it, another writer committed records we hold.
    from: PartitionOffsets,
    /// Per partition, the offset below which every record read is in the writer or set aside
    /// but not yet committed.
    handed: PartitionOffsets,
    /// Table offsets partitions were assigned at that the group has not committed yet: after
    /// a crash between the table commit and the group commit, the group catches up.
    group_behind: PartitionOffsets,
    /// The table's next offset per partition held, as far as this instance knows
    /// (assignment and its own commits): the base of the lag gauges.
    table: PartitionOffsets,
    /// Partitions a conflict sought back since `take_rewound` was last called.
    rewound: BTreeSet<i32>,
    /// Validator state of revoked partitions whose validated records wait in the writer:
    /// committed with those records, or resumed from if the partition comes back.
    revoked_states: BTreeMap<i32, Vec<u8>>,
    /// `handed` and `from` as the rebalance callback sees them.
    shared: Arc<Mutex<HeldOffsets>>,
}

impl OffsetLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// The view of held offsets the rebalance callback reads (see [`HeldOffsets::start`]).
    pub fn shared(&self) -> Arc<Mutex<HeldOffsets>> {
        self.shared.clone()
    }

    /// A message of `partition` at `offset` was read (whether or not it decodes).
    pub fn read(&mut self, partition: i32, offset: i64) {
        self.from.entry(partition).or_insert(offset);
        self.read_to.insert(partition, offset + 1);
    }

    /// Everything read of `partition` is now in the writer or set aside.
    pub fn handed(&mut self, partition: i32) {
        if let Some(&next) = self.read_to.get(&partition) {
            self.handed.insert(partition, next);
            self.share();
        }
    }

    /// A batch turned out empty: only records that did not decode were read since the last
    /// one, or nothing. Their offsets move on, but an offset already handed or stored in the
    /// table does not move again: otherwise every quiet moment of a follow run would make an
    /// empty snapshot.
    pub fn handed_nothing(&mut self, partition: i32) {
        let Some(&next) = self.read_to.get(&partition) else { return };
        let done = self.handed.get(&partition).or(self.table.get(&partition));
        if done.is_none_or(|&d| next > d) {
            self.handed.insert(partition, next);
            self.share();
        }
    }

    /// Records of `partition` before `offset` are gone from the log and were skipped
    /// (`on_offset_lost = "skip"`): the next commit moves the table's offset there, carrying
    /// the loss with it, even if nothing more is ever read. Otherwise the table would keep
    /// pointing below the log start and every assignment would find the same loss again.
    pub fn skipped_to(&mut self, partition: i32, offset: i64) {
        self.from.entry(partition).or_insert(offset);
        let read_to = self.read_to.entry(partition).or_insert(offset);
        *read_to = (*read_to).max(offset);
        let handed = self.handed.entry(partition).or_insert(offset);
        *handed = (*handed).max(offset);
        self.share();
    }

    /// Offsets the next table commit carries: per partition, the next offset to read.
    pub fn to_commit(&self) -> &PartitionOffsets {
        &self.handed
    }

    /// The first offset read since the last commit per partition (for log lines).
    pub fn uncommitted_from(&self) -> &PartitionOffsets {
        &self.from
    }

    /// Whether an interval commit has anything to do: records to commit or a group to catch up.
    pub fn has_work(&self) -> bool {
        !self.handed.is_empty() || !self.group_behind.is_empty()
    }

    /// With nothing to commit to the table, the offsets the group is behind on (taken).
    pub fn take_group_catch_up(&mut self) -> Option<PartitionOffsets> {
        match self.handed.is_empty() && !self.group_behind.is_empty() {
            true => Some(std::mem::take(&mut self.group_behind)),
            false => None,
        }
    }

    /// The table commit of `to_commit()` succeeded: returns the offsets the group may now
    /// move to. Records read past the commit but still in a partition's buffer stay held,
    /// from where the commit ended: forgetting them would let another writer's commit of
    /// the same offsets go unnoticed.
    pub fn committed(&mut self) -> PartitionOffsets {
        let committed = std::mem::take(&mut self.handed);
        let mut group = std::mem::take(&mut self.group_behind);
        group.extend(committed.iter().map(|(&p, &o)| (p, o)));
        self.table.extend(committed.iter().map(|(&p, &o)| (p, o)));
        let read_to = &self.read_to;
        self.from.retain(|p, from| match committed.get(p) {
            None => true,
            Some(&done) => {
                *from = done;
                read_to.get(p).is_some_and(|&next| next > done)
            }
        });
        self.revoked_states.clear();
        self.share();
        group
    }

    /// A commit conflicted; `stored` are the offsets the table now stores. If another writer
    /// committed past the first offset we read of a partition, our uncommitted records
    /// overlap its: all are dropped and every partition read since the last commit is
    /// rewound to the table's offset.
    pub fn conflict(&mut self, stored: &PartitionOffsets) -> Conflict {
        let seek = self.learn_stored(stored);
        let overlapping: Vec<i32> =
            self.from.iter().filter(|&(p, from)| stored.get(p).is_some_and(|s| s > from)).map(|(&p, _)| p).collect();
        if overlapping.is_empty() {
            return Conflict::Disjoint { seek };
        }
        Conflict::Overlap { overlapping, rewind: self.drop_uncommitted(stored, seek) }
    }

    /// Writing what we hold failed (the object store is down) and it is gone: as after an
    /// overlap, everything uncommitted is dropped. Returns where each partition is read
    /// again from: `stored`, the table's offsets as reloaded now, or where it was first
    /// read since the last commit.
    pub fn abandon(&mut self, stored: &PartitionOffsets) -> Vec<(i32, i64)> {
        let seek = self.learn_stored(stored);
        self.drop_uncommitted(stored, seek)
    }

    /// Takes in the offsets the table stores now; returns the partitions to seek forward to them.
    fn learn_stored(&mut self, stored: &PartitionOffsets) -> Vec<(i32, i64)> {
        // With nothing read of a partition since the last commit, our read position is at most
        // the table offset we knew (or, for one we have never seen stored, where the group
        // started it): past it, the other writer's records would be read again.
        let mut seek = Vec::new();
        for (&p, &s) in stored {
            let known = self.table.get(&p).copied();
            if let Some(t) = self.table.get_mut(&p) {
                *t = s;
            }
            if !self.from.contains_key(&p) && known.is_none_or(|t| s > t) {
                seek.push((p, s));
            }
        }
        // A message in hand of a sought partition must not be accepted either.
        self.rewound.extend(seek.iter().map(|&(p, _)| p));
        seek
    }

    /// Drops everything uncommitted; returns the rewinds, `seek` included.
    fn drop_uncommitted(&mut self, stored: &PartitionOffsets, seek: Vec<(i32, i64)>) -> Vec<(i32, i64)> {
        let from = std::mem::take(&mut self.from);
        // Never below where we started reading: a table offset below it (records lost to
        // retention and skipped) lies before the log start, where a seek would be reset.
        let mut rewind: Vec<(i32, i64)> =
            from.iter().map(|(&p, &f)| (p, stored.get(&p).copied().map_or(f, |s| s.max(f)))).collect();
        for &(p, to) in &rewind {
            self.read_to.remove(&p);
            if let Some(t) = self.table.get_mut(&p) {
                *t = to;
            }
            // The group never runs ahead of the table: a partition assigned after our own
            // records catches up only to where the table now is.
            if let Some(g) = self.group_behind.get_mut(&p) {
                *g = to;
            }
        }
        self.rewound.extend(from.keys().copied());
        rewind.extend(seek);
        self.handed.clear();
        self.revoked_states.clear();
        self.share();
        rewind
    }

    /// Where reading `partition` goes on: after the last record read, or at the table's
    /// offset if none was read (`None` for a partition started where the group or the
    /// configured reset said, before its first record).
    pub fn next_read(&self, partition: i32) -> Option<i64> {
        self.read_to.get(&partition).or_else(|| self.table.get(&partition)).copied()
    }

    /// Partitions rewound by conflicts since the last call.
    pub fn take_rewound(&mut self) -> BTreeSet<i32> {
        std::mem::take(&mut self.rewound)
    }

    /// `partition` was assigned, starting at `offset` (the table's, or after our own records).
    pub fn assigned(&mut self, partition: i32, offset: i64) {
        self.group_behind.insert(partition, offset);
        self.table.insert(partition, offset);
    }

    /// `partition` was revoked: what was read of it but not handed to the writer is dropped
    /// (its next owner reads it from the table's offsets). Records already in the writer are
    /// committed, and the conflict check keeps either copy from landing twice.
    pub fn revoked(&mut self, partition: i32) -> Revoked {
        self.read_to.remove(&partition);
        self.group_behind.remove(&partition);
        let in_writer = self.handed.contains_key(&partition);
        if !in_writer {
            // Nothing of it is ours to commit: a later commit of it by its new owner is not
            // a conflict with anything we hold.
            self.from.remove(&partition);
            self.share();
        }
        Revoked { in_writer, was_tracked: self.table.remove(&partition).is_some() }
    }

    /// Keeps the validator state of a revoked partition whose records wait in the writer.
    pub fn keep_revoked_state(&mut self, partition: i32, state: Vec<u8>) {
        self.revoked_states.insert(partition, state);
    }

    /// The kept state of a revoked partition, to commit or to resume from.
    pub fn revoked_state(&self, partition: i32) -> Option<&Vec<u8>> {
        self.revoked_states.get(&partition)
    }

    /// The table's next offset for `partition`, as far as this instance knows.
    pub fn table_offset(&self, partition: i32) -> Option<i64> {
        self.table.get(&partition).copied()
    }

    /// Every partition whose table offset is known.
    pub fn tracked(&self) -> impl Iterator<Item = i32> + '_ {
        self.table.keys().copied()
    }

    fn share(&self) {
        let mut held = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        held.next.clone_from(&self.handed);
        held.from.clone_from(&self.from);
    }
}

#[cfg(test)]
mod tests;
