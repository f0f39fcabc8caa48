//! The router: the topic's policies send each undecodable record and each verdict to the table, the dead letters, the events table, or stop the topic.

use arrow_array::{BooleanArray, RecordBatch};

use crate::config::{DuplicatePolicy, GapPolicy, InvalidPolicy, TopicConfig};
use crate::error::{Error, Result};
use crate::sandbox::{EventKind, Verdict};
use crate::sink::events::EventRow;

/// Where a record that did not decode goes (`on_invalid`); `fail` is an error that stops the topic.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Undecodable {
    DeadLetter,
    Skip,
}

pub(super) fn route_undecodable(topic: &TopicConfig, partition: i32, offset: i64, error: &str) -> Result<Undecodable> {
    match topic.on_invalid {
        InvalidPolicy::Fail => Err(Error::Topic {
            topic: topic.name.clone(),
            message: format!(
                "partition {partition} offset {offset}: undecodable ({error}); stopping without committing \
                 (on_invalid = \"fail\")"
            ),
        }),
        InvalidPolicy::Dlq => Ok(Undecodable::DeadLetter),
        InvalidPolicy::Skip => Ok(Undecodable::Skip),
    }
}

/// Where a validated batch's records go.
#[derive(Debug, Default)]
pub(super) struct Routing {
    /// Records that stay out of the table, in index order.
    pub set_aside: Vec<SetAside>,
    /// Indices into `set_aside` of those sent to the dead-letter topic.
    pub letters: Vec<usize>,
    /// Rows for the sequence-events table.
    pub events: Vec<EventRow>,
    /// Duplicates left out of the table.
    pub duplicates: u64,
}

/// Routes a verdict on the batch of `partition` whose records have `offsets`: an error when a
/// policy stops the topic (before anything of the batch is written).
pub(super) fn route_verdict(
    topic: &TopicConfig,
    partition: i32,
    offsets: &[i64],
    verdict: &Verdict,
    detected_at_us: i64,
) -> Result<Routing> {
    check_fatal_verdict(topic, partition, offsets, verdict)?;
    let set_aside = set_aside(topic, verdict);
    let letters = (0..set_aside.len()).filter(|&i| goes_to_dead_letters(topic, &set_aside[i])).collect();
    let duplicates = set_aside.iter().filter(|s| s.cause == Cause::Duplicate).count() as u64;
    let events = verdict
        .events
        .iter()
        .map(|e| EventRow {
            partition,
            offset: offsets[e.index],
            key: e.key.clone(),
            kind: e.kind,
            expected: e.expected,
            received: e.received,
            missing: e.missing,
            detected_at_us,
        })
        .collect();
    Ok(Routing { set_aside, letters, events, duplicates })
}

/// Reason code of a duplicate set aside by `on_duplicate`.
pub(crate) const DUPLICATE_CODE: &str = "sequence-duplicate";

/// Stops the topic, before anything of the batch is written, when a policy says so.
fn check_fatal_verdict(topic: &TopicConfig, partition: i32, offsets: &[i64], verdict: &Verdict) -> Result<()> {
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
fn set_aside(topic: &TopicConfig, verdict: &Verdict) -> Vec<SetAside> {
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
fn goes_to_dead_letters(topic: &TopicConfig, set_aside: &SetAside) -> bool {
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
    use crate::sandbox::{Rejection, SequenceEvent};

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

    #[test]
    fn undecodable_records_follow_on_invalid() {
        let err = route_undecodable(&topic("on_invalid = \"fail\""), 2, 17, "truncated").unwrap_err();
        assert!(err.to_string().contains("partition 2 offset 17: undecodable (truncated)"), "{err}");
        assert_eq!(route_undecodable(&topic(""), 0, 0, "x").unwrap(), Undecodable::DeadLetter);
        assert_eq!(route_undecodable(&topic("on_invalid = \"skip\""), 0, 0, "x").unwrap(), Undecodable::Skip);
    }

    #[test]
    fn a_verdict_routes_rejections_duplicates_and_events_by_offset() {
        let verdict = Verdict {
            rejected: vec![Rejection { index: 0, code: "price".into(), message: "not positive".into() }],
            events: vec![duplicate_at(2)],
        };
        let offsets = [100, 101, 102];
        let r = route_verdict(&topic("on_duplicate = \"dlq\""), 4, &offsets, &verdict, 9).unwrap();
        assert_eq!(r.set_aside.iter().map(|s| s.index).collect::<Vec<_>>(), [0, 2]);
        assert_eq!((r.letters.clone(), r.duplicates), (vec![0, 1], 1));
        assert_eq!((r.events[0].partition, r.events[0].offset, r.events[0].detected_at_us), (4, 102, 9));
        let gap =
            Verdict { events: vec![SequenceEvent { kind: EventKind::Gap, ..duplicate_at(1) }], ..Default::default() };
        let err = route_verdict(&topic("on_gap = \"fail\""), 4, &offsets, &gap, 0).unwrap_err();
        assert!(err.to_string().contains("partition 4 offset 101: sequence gap in XNAS:AAPL"), "{err}");
    }
}
