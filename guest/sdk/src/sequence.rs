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

use crate::{EventKind, SequenceEvent};

/// Snapshot format version; bump on any change to the encoding below.
const SNAPSHOT_V1: u8 = 1;

#[derive(Debug, Clone)]
pub struct SequenceTracker {
    last: HashMap<String, i64>,
    session_start: i64,
    /// Reused to build `EXCHANGE:SYMBOL` keys without an allocation per record.
    key: String,
}

impl SequenceTracker {
    /// A tracker whose sessions start at `session_start` (usually 1).
    pub fn new(session_start: i64) -> Self {
        Self { last: HashMap::new(), session_start, key: String::new() }
    }

    /// Number of keys seen.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// Records sequence `seq` of `key` (record `index` of the batch); returns the anomaly, if any.
    pub fn observe(&mut self, index: usize, key: &str, seq: i64) -> Option<SequenceEvent> {
        // Look up by &str first so the common case allocates nothing.
        let Some(last) = self.last.get_mut(key) else {
            self.last.insert(key.to_string(), seq);
            return None;
        };
        let prev = *last;
        let event = |kind, missing| SequenceEvent {
            index: index as u32,
            kind,
            key: key.to_string(),
            expected: prev.saturating_add(1),
            received: seq,
            missing,
        };
        if seq == prev.saturating_add(1) {
            *last = seq;
            None
        } else if seq > prev {
            *last = seq;
            Some(event(EventKind::Gap, seq - prev - 1))
        } else if seq == prev {
            Some(event(EventKind::Duplicate, 0))
        } else if seq <= self.session_start && prev > self.session_start {
            *last = seq;
            Some(event(EventKind::Reset, 0))
        } else {
            Some(event(EventKind::OutOfOrder, 0))
        }
    }

    /// Records sequence `seq` of the market-data key `EXCHANGE:SYMBOL` (record `index`).
    pub fn observe_listing(&mut self, index: usize, exchange: &str, symbol: &str, seq: i64) -> Option<SequenceEvent> {
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        key.push_str(exchange);
        key.push(':');
        key.push_str(symbol);
        let event = self.observe(index, &key, seq);
        self.key = key;
        event
    }

    /// The state as bytes: version, count, then (key length, key, last) sorted by key so
    /// equal states give equal bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut entries: Vec<_> = self.last.iter().collect();
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
        self.last.clear();
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
                .map_err(|_| "sequence state has a key that is not utf-8".to_string())?
                .to_string();
            let last = i64::from_le_bytes(r.take(8)?.try_into().unwrap());
            self.last.insert(key, last);
        }
        if r.pos != state.len() {
            return Err("sequence state has trailing bytes".to_string());
        }
        Ok(())
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
    fn restore_rejects_damaged_state() {
        let mut t = SequenceTracker::new(1);
        t.observe(0, "A", 1);
        let snap = t.snapshot();
        let mut r = SequenceTracker::new(1);
        assert!(r.restore(&snap[..snap.len() - 1]).unwrap_err().contains("truncated"));
        assert!(r.restore(&[9]).unwrap_err().contains("version 9"));
    }
}
