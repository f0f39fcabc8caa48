//! The topic's policies applied to a verdict: what stops the topic, what stays out of the table.

use arrow_array::{BooleanArray, RecordBatch};

use crate::config::{DuplicatePolicy, GapPolicy, InvalidPolicy, TopicConfig};
use crate::error::{Error, Result};
use crate::guest::{EventKind, Verdict};

/// Reason code of a duplicate set aside by `on_duplicate`.
pub(super) const DUPLICATE_CODE: &str = "sequence-duplicate";

/// Stops the topic, before anything of the batch is written, when a policy says so.
pub(super) fn check_fatal_verdict(
    topic: &TopicConfig,
    partition: i32,
    offsets: &[i64],
    verdict: &Verdict,
) -> Result<()> {
    let stop = |what: String, policy: &str| {
        Err(Error::Topic {
            topic: topic.name.clone(),
            message: format!("partition {partition} {what}; stopping without committing ({policy})"),
        })
    };
    if topic.on_invalid == InvalidPolicy::Fail
        && let Some(r) = verdict.rejected.first()
    {
        return stop(
            format!("offset {}: rejected, {}: {}", offsets[r.index], r.code, r.message),
            "on_invalid = \"fail\"",
        );
    }
    if topic.on_gap == GapPolicy::Fail
        && let Some(e) = verdict.events.iter().find(|e| e.kind == EventKind::Gap)
    {
        return stop(
            format!(
                "offset {}: sequence gap in {}: expected {}, received {} ({} missing)",
                offsets[e.index], e.key, e.expected, e.received, e.missing
            ),
            "on_gap = \"fail\"",
        );
    }
    Ok(())
}

/// The records of a batch that stay out of the table, in index order, each with the code and
/// message its dead letter carries: the rejected ones, and duplicates unless they are kept.
pub(super) fn set_aside(topic: &TopicConfig, verdict: &Verdict) -> Vec<(usize, String, String)> {
    let mut out: Vec<(usize, String, String)> =
        verdict.rejected.iter().map(|r| (r.index, r.code.clone(), r.message.clone())).collect();
    if topic.on_duplicate != DuplicatePolicy::Keep {
        for e in verdict.events.iter().filter(|e| e.kind == EventKind::Duplicate) {
            if !verdict.rejected.iter().any(|r| r.index == e.index) {
                let message = format!("sequence {} of {} repeats the previous record's", e.received, e.key);
                out.push((e.index, DUPLICATE_CODE.to_string(), message));
            }
        }
        out.sort_by_key(|s| s.0);
        out.dedup_by_key(|s| s.0);
    }
    out
}

/// The batch without the records at `drop` (indices).
pub(super) fn keep_only(records: RecordBatch, drop: impl Iterator<Item = usize>) -> Result<RecordBatch> {
    let mut keep = vec![true; records.num_rows()];
    let mut any = false;
    for i in drop {
        keep[i] = false;
        any = true;
    }
    if !any {
        return Ok(records);
    }
    arrow_select::filter::filter_record_batch(&records, &BooleanArray::from(keep))
        .map_err(|source| Error::Arrow { context: "dropping records set aside".into(), source })
}
