//! Records deleted from the log before k2-ingest read them, as the table remembers them: summary key `k2.lost.<topic>`.
//!
//! Under `on_offset_lost = "skip"` a run goes on past such records; the ranges go into the
//! next commit's summary and are carried forward like the offsets, so the table itself says
//! which records it can never hold, for `status` and for anyone auditing it.

use std::collections::{BTreeMap, HashMap};

use crate::kafka::log_bounds::LostRange;

/// Summary key prefix; the full key is `k2.lost.<topic>`, the value a JSON object mapping
/// partition to its lost `[from, to)` offset ranges, oldest first.
pub const LOST_KEY_PREFIX: &str = "k2.lost.";

/// Partition → lost `[from, to)` ranges, oldest first, disjoint.
pub type LostRanges = BTreeMap<i32, Vec<[i64; 2]>>;

/// The ranges of `topic` recorded in a `k2.*` summary (empty if none, or unreadable).
pub fn recorded(summary: &HashMap<String, String>, topic: &str) -> LostRanges {
    let Some(json) = summary.get(&format!("{LOST_KEY_PREFIX}{topic}")) else { return LostRanges::new() };
    let map: BTreeMap<String, Vec<[i64; 2]>> = serde_json::from_str(json).unwrap_or_default();
    map.into_iter().filter_map(|(p, r)| Some((p.parse().ok()?, r))).collect()
}

/// Adds `new` to the ranges of `topic` in `summary`, merging ranges that touch.
pub fn record(summary: &mut HashMap<String, String>, topic: &str, new: &[LostRange]) {
    if new.is_empty() {
        return;
    }
    let mut ranges = recorded(summary, topic);
    for r in new {
        let list = ranges.entry(r.partition).or_default();
        list.push([r.from, r.to]);
        list.sort_unstable();
        let mut merged: Vec<[i64; 2]> = Vec::with_capacity(list.len());
        for &[from, to] in list.iter() {
            match merged.last_mut() {
                Some(last) if from <= last[1] => last[1] = last[1].max(to),
                _ => merged.push([from, to]),
            }
        }
        *list = merged;
    }
    let map: BTreeMap<String, &Vec<[i64; 2]>> = ranges.iter().map(|(p, r)| (p.to_string(), r)).collect();
    summary.insert(format!("{LOST_KEY_PREFIX}{topic}"), serde_json::to_string(&map).unwrap_or_default());
}

/// Records in `ranges`.
pub fn total(ranges: &LostRanges) -> u64 {
    ranges.values().flatten().map(|[from, to]| (to - from).max(0) as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(partition: i32, from: i64, to: i64) -> LostRange {
        LostRange { partition, from, to }
    }

    #[test]
    fn ranges_accumulate_per_partition_and_merge_where_they_touch() {
        let mut summary = HashMap::from([("k2.offsets.t".to_string(), "{\"0\":5}".to_string())]);
        record(&mut summary, "t", &[lost(0, 100, 200)]);
        record(&mut summary, "t", &[lost(0, 200, 250), lost(1, 7, 9), lost(0, 10, 20)]);
        assert_eq!(summary["k2.lost.t"], r#"{"0":[[10,20],[100,250]],"1":[[7,9]]}"#);
        let ranges = recorded(&summary, "t");
        assert_eq!(ranges[&0], vec![[10, 20], [100, 250]]);
        assert_eq!(total(&ranges), 10 + 150 + 2);
        assert!(recorded(&summary, "other").is_empty());
    }

    #[test]
    fn nothing_lost_adds_no_key() {
        let mut summary = HashMap::new();
        record(&mut summary, "t", &[]);
        assert!(summary.is_empty());
    }
}
