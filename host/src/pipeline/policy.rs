//! The topic's policies applied to a verdict: what stops the topic, what stays out of the table.

use arrow_array::{BooleanArray, RecordBatch};

use crate::config::{DuplicatePolicy, GapPolicy, InvalidPolicy, TopicConfig};
use crate::error::{Error, Result};
use crate::guest::{EventKind, Verdict};

/// Reason code of a duplicate set aside by `on_duplicate`.
pub(crate) const DUPLICATE_CODE: &str = "sequence-duplicate";

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

/// Why a record stays out of the table. The host decides it from where the record came from
/// in the verdict, never from a code string: a validator may return any code, the host's own
/// included, and must not be able to send its rejections down the duplicates' path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// The validator rejected the record.
    Rejected,
    /// The validator reported a sequence duplicate and `on_duplicate` leaves it out.
    Duplicate,
}

/// A record of a batch that stays out of the table, with the code and message its dead
/// letter carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SetAside {
    pub index: usize,
    pub cause: Cause,
    pub code: String,
    pub message: String,
}

/// The records of a batch that stay out of the table, in index order: the rejected ones, and
/// duplicates unless they are kept.
pub(super) fn set_aside(topic: &TopicConfig, verdict: &Verdict) -> Vec<SetAside> {
    let mut out: Vec<SetAside> = verdict
        .rejected
        .iter()
        .map(|r| SetAside { index: r.index, cause: Cause::Rejected, code: r.code.clone(), message: r.message.clone() })
        .collect();
    if topic.on_duplicate != DuplicatePolicy::Keep {
        for e in verdict.events.iter().filter(|e| e.kind == EventKind::Duplicate) {
            if !verdict.rejected.iter().any(|r| r.index == e.index) {
                let message = format!("sequence {} of {} repeats the previous record's", e.received, e.key);
                out.push(SetAside {
                    index: e.index,
                    cause: Cause::Duplicate,
                    code: DUPLICATE_CODE.to_string(),
                    message,
                });
            }
        }
        out.sort_by_key(|s| s.index);
        out.dedup_by_key(|s| s.index);
    }
    out
}

/// Whether a record set aside is sent to the dead-letter topic, by the policy for its cause.
pub(super) fn goes_to_dead_letters(topic: &TopicConfig, set_aside: &SetAside) -> bool {
    match set_aside.cause {
        Cause::Duplicate => topic.on_duplicate == DuplicatePolicy::Dlq,
        Cause::Rejected => topic.on_invalid == InvalidPolicy::Dlq,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::{Rejection, SequenceEvent};

    fn topic(extra: &str) -> TopicConfig {
        toml::from_str(&format!("name = \"market.trades.raw\"\n{extra}")).unwrap()
    }

    fn duplicate_at(index: usize) -> SequenceEvent {
        SequenceEvent {
            index,
            kind: EventKind::Duplicate,
            key: "XNAS:AAPL".into(),
            expected: 8,
            received: 7,
            missing: 0,
        }
    }

    #[test]
    fn a_validator_cannot_pass_a_rejection_off_as_a_host_duplicate() {
        let verdict = Verdict {
            rejected: vec![Rejection { index: 1, code: DUPLICATE_CODE.into(), message: "forged".into() }],
            events: vec![duplicate_at(3)],
        };
        // Defaults: rejections go to the dead letters, duplicates stay in the table.
        let defaults = topic("");
        let aside = set_aside(&defaults, &verdict);
        assert_eq!(aside.iter().map(|s| s.index).collect::<Vec<_>>(), [1], "only the rejection leaves the table");
        assert!(aside.iter().all(|s| goes_to_dead_letters(&defaults, s)), "nothing left out of the table vanishes");
        // Duplicates to the dead letters, rejections only counted: the forged one is a rejection.
        let dup_dlq = topic("on_duplicate = \"dlq\"\non_invalid = \"skip\"");
        let aside = set_aside(&dup_dlq, &verdict);
        let sent: Vec<_> = aside.iter().filter(|s| goes_to_dead_letters(&dup_dlq, s)).map(|s| s.index).collect();
        assert_eq!(sent, [3], "only the host's own duplicate is dead-lettered as one");
    }
}
