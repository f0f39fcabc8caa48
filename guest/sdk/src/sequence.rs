//! Per-key sequence tracking with exact gap, duplicate, out-of-order and reset semantics.
//!
//! For each key the tracker keeps `last`, the highest sequence number seen. For a record
//! with sequence `s`: the first record of a key is its baseline (no event); `s = last + 1`
//! is in order; `s > last + 1` is a gap of `s - last - 1` and `last` moves to `s`;
//! `s = last` is a duplicate; `s <= session_start` while `last > session_start` is a reset
//! and `last` moves to `s`; any other `s < last` is out-of-order and `last` stays. The
//! result depends only on the record order, so any split into batches, with snapshot and
//! restore in between, yields the same events.

use std::collections::HashMap;

use crate::key::ShortKey;
use crate::{EventKind, SequenceEvent, State};

/// Snapshot format version; bump on any change to the encoding below.
const SNAPSHOT_V1: u8 = 1;

/// One key's text (for events and snapshots) and the highest sequence number seen.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    last: i64,
}

/// The last sequence number per key, and the events of the rules above. It is a [`State`]: name
/// it in `export_validator!(.., state = field)` and the host commits and restores it.
#[derive(Debug, Clone)]
pub struct SequenceTracker {
    entries: Vec<Entry>,
    /// Where each key's entry is, by its fixed form; foldhash because SipHash of five words per
    /// record was a large part of a guest's time (HashDoS resistance is not needed: keys are
    /// market listings, and a pathological set only slows this topic down to its deadline).
    /// A fixed seed: foldhash's random one reads the wall clock, which the host denies.
    short: HashMap<ShortKey, u32, foldhash::fast::FixedState>,
    /// Keys with a part longer than [`ShortKey`] holds, by text.
    long: HashMap<String, u32>,
    session_start: i64,
}

impl SequenceTracker {
    /// A tracker whose sessions start at `session_start` (usually 1).
    pub fn new(session_start: i64) -> Self {
        Self { entries: Vec::new(), short: HashMap::default(), long: HashMap::new(), session_start }
    }

    /// Number of keys seen.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records sequence `seq` of `key` (record `index` of the batch); returns the anomaly, if any.
    pub fn observe(&mut self, index: usize, key: &str, seq: i64) -> Option<SequenceEvent> {
        self.find_or_add(key, seq).and_then(|slot| self.step(slot, index, seq))
    }

    /// Records sequence `seq` of the market-data key `EXCHANGE:SYMBOL` (record `index`).
    #[inline]
    pub fn observe_listing(&mut self, index: usize, exchange: &str, symbol: &str, seq: i64) -> Option<SequenceEvent> {
        let Some(short) = ShortKey::of_parts(exchange.as_bytes(), symbol.as_bytes()) else {
            return self.observe(index, &format!("{exchange}:{symbol}"), seq);
        };
        match self.short.get(&short) {
            Some(&slot) => self.step(slot, index, seq),
            None => {
                self.short.insert(short, self.entries.len() as u32);
                self.entries.push(Entry { key: format!("{exchange}:{symbol}"), last: seq });
                None
            }
        }
    }

    /// The slot of the key text `key`, or `None` after adding it with `last`.
    fn find_or_add(&mut self, key: &str, last: i64) -> Option<u32> {
        let short = ShortKey::of_text(key);
        let found = match &short {
            Some(short) => self.short.get(short),
            None => self.long.get(key),
        };
        if found.is_some() {
            return found.copied();
        }
        let slot = self.entries.len() as u32;
        match short {
            Some(short) => self.short.insert(short, slot),
            None => self.long.insert(key.to_string(), slot),
        };
        self.entries.push(Entry { key: key.to_string(), last });
        None
    }

    /// The sequence rules for a known key; the in-order case, nearly every record, inline.
    #[inline(always)]
    fn step(&mut self, slot: u32, index: usize, seq: i64) -> Option<SequenceEvent> {
        let entry = &mut self.entries[slot as usize];
        if seq == entry.last.saturating_add(1) {
            entry.last = seq;
            return None;
        }
        self.anomaly(slot, index, seq)
    }

    /// The event for a sequence number that is not the next one of its key.
    #[cold]
    #[inline(never)]
    fn anomaly(&mut self, slot: u32, index: usize, seq: i64) -> Option<SequenceEvent> {
        let entry = &mut self.entries[slot as usize];
        let prev = entry.last;
        let kind = if seq > prev {
            entry.last = seq;
            EventKind::Gap
        } else if seq == prev {
            EventKind::Duplicate
        } else if seq <= self.session_start && prev > self.session_start {
            entry.last = seq;
            EventKind::Reset
        } else {
            EventKind::OutOfOrder
        };
        let missing = if kind == EventKind::Gap { seq - prev - 1 } else { 0 };
        Some(SequenceEvent {
            index: index as u32,
            kind,
            key: entry.key.clone(),
            expected: prev.saturating_add(1),
            received: seq,
            missing,
        })
    }

    /// The state as bytes: version, count, then (key length, key, last) sorted by key so
    /// equal states give equal bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut entries: Vec<_> = self.entries.iter().map(|e| (e.key.as_str(), e.last)).collect();
        entries.sort();
        let mut out = Vec::with_capacity(5 + entries.len() * 24);
        out.push(SNAPSHOT_V1);
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (key, last) in entries {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&last.to_le_bytes());
        }
        out
    }

    /// Replaces the state with one from [`SequenceTracker::snapshot`]; empty bytes mean no state.
    pub fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        self.entries.clear();
        self.short.clear();
        self.long.clear();
        if state.is_empty() {
            return Ok(());
        }
        let mut r = Reader { buf: state, pos: 0 };
        let version = r.take(1)?[0];
        if version != SNAPSHOT_V1 {
            return Err(format!("sequence state has unknown format version {version}"));
        }
        let count = u32::from_le_bytes(r.take(4)?.try_into().unwrap());
        for _ in 0..count {
            let len = u32::from_le_bytes(r.take(4)?.try_into().unwrap()) as usize;
            let key = std::str::from_utf8(r.take(len)?)
                .map_err(|_| "sequence state has a key that is not utf-8".to_string())?;
            let last = i64::from_le_bytes(r.take(8)?.try_into().unwrap());
            // A key written twice keeps its later value, as the map the format came from did.
            if let Some(slot) = self.find_or_add(key, last) {
                self.entries[slot as usize].last = last;
            }
        }
        if r.pos != state.len() {
            return Err("sequence state has trailing bytes".to_string());
        }
        Ok(())
    }
}

/// Sessions start at 1.
impl Default for SequenceTracker {
    fn default() -> Self {
        Self::new(1)
    }
}

impl State for SequenceTracker {
    fn snapshot(&self) -> Vec<u8> {
        SequenceTracker::snapshot(self)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        SequenceTracker::restore(self, state)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| "sequence state is truncated".to_string())?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(t: &mut SequenceTracker, seqs: &[i64]) -> Vec<(EventKind, i64)> {
        seqs.iter()
            .enumerate()
            .filter_map(|(i, &s)| t.observe(i, "XNAS:AAPL", s))
            .map(|e| (e.kind, e.missing))
            .collect()
    }

    #[test]
    fn in_order_sequence_has_no_events() {
        let mut t = SequenceTracker::new(1);
        assert!(kinds(&mut t, &[5, 6, 7, 8]).is_empty());
    }

    #[test]
    fn gap_reports_missing_count() {
        let mut t = SequenceTracker::new(1);
        assert_eq!(kinds(&mut t, &[1, 2, 5, 6]), vec![(EventKind::Gap, 2)]);
    }

    #[test]
    fn swapped_records_give_one_gap_and_one_out_of_order() {
        let mut t = SequenceTracker::new(1);
        assert_eq!(kinds(&mut t, &[1, 2, 4, 3, 5]), vec![(EventKind::Gap, 1), (EventKind::OutOfOrder, 0)]);
    }

    #[test]
    fn duplicate_and_reset() {
        let mut t = SequenceTracker::new(1);
        assert_eq!(kinds(&mut t, &[1, 2, 2, 3, 1, 2]), vec![(EventKind::Duplicate, 0), (EventKind::Reset, 0)]);
    }

    #[test]
    fn listing_keys_join_exchange_and_symbol() {
        let mut t = SequenceTracker::new(1);
        assert!(t.observe_listing(0, "XNAS", "AAPL", 1).is_none());
        let e = t.observe_listing(1, "XNAS", "AAPL", 3).unwrap();
        assert_eq!((e.key.as_str(), e.missing), ("XNAS:AAPL", 1));
        assert!(t.observe_listing(2, "XNYS", "AAPL", 9).is_none(), "another venue is another key");
    }

    #[test]
    fn keys_are_independent() {
        let mut t = SequenceTracker::new(1);
        assert!(t.observe(0, "A", 1).is_none());
        assert!(t.observe(1, "B", 10).is_none());
        assert!(t.observe(2, "A", 2).is_none());
        assert_eq!(t.observe(3, "B", 12).unwrap().missing, 1);
    }

    #[test]
    fn snapshot_restore_gives_same_events_as_one_run() {
        let seqs = [1, 2, 4, 3, 3, 9, 10, 1, 2, 5];
        let mut whole = SequenceTracker::new(1);
        let expected = kinds(&mut whole, &seqs);
        for split in 0..seqs.len() {
            let mut first = SequenceTracker::new(1);
            let mut got = kinds(&mut first, &seqs[..split]);
            let mut second = SequenceTracker::new(1);
            second.restore(&first.snapshot()).unwrap();
            got.extend(kinds(&mut second, &seqs[split..]));
            assert_eq!(got, expected, "split at {split}");
        }
        assert_eq!(whole.snapshot(), {
            let mut r = SequenceTracker::new(1);
            r.restore(&whole.snapshot()).unwrap();
            r.snapshot()
        });
    }

    #[test]
    fn a_key_is_one_key_whether_given_whole_or_as_a_listing_and_after_restore() {
        let long_symbol = "A_SYMBOL_LONGER_THAN_16";
        let mut t = SequenceTracker::new(1);
        assert!(t.observe_listing(0, "XNAS", "AAPL", 1).is_none());
        assert_eq!(t.observe(1, "XNAS:AAPL", 3).unwrap().missing, 1);
        assert!(t.observe_listing(2, "XN:AS", "X", 1).is_none(), "an exchange holding ':' takes the text path");
        assert!(t.observe(3, "XN:AS:X", 2).is_none());
        assert!(t.observe_listing(4, "XNAS", long_symbol, 7).is_none());
        assert!(t.observe(5, "AAPL", 1).is_none(), "no separator is another key");
        let mut r = SequenceTracker::new(1);
        r.restore(&t.snapshot()).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r.observe_listing(0, "XNAS", "AAPL", 5).unwrap().missing, 1);
        let e = r.observe_listing(1, "XNAS", long_symbol, 7).unwrap();
        assert_eq!((e.kind, e.key.as_str()), (EventKind::Duplicate, "XNAS:A_SYMBOL_LONGER_THAN_16"));
        assert!(r.observe_listing(2, "XN:AS", "X", 3).is_none());
        assert_eq!(r.observe(3, "AAPL", 1).unwrap().kind, EventKind::Duplicate);
    }

    #[test]
    fn restore_rejects_damaged_state() {
        let mut t = SequenceTracker::new(1);
        t.observe(0, "A", 1);
        let snap = t.snapshot();
        let mut r = SequenceTracker::new(1);
        assert!(r.restore(&snap[..snap.len() - 1]).unwrap_err().contains("truncated"));
        assert!(r.restore(&[9]).unwrap_err().contains("version 9"));
    }
}
