//! How far behind the run is: lag gauges and progress from the high watermarks, the positions at the end, and when a quiet topic ends a bounded run.

use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::Consumer;

use crate::config::KafkaConfig;
use crate::error::Result;
use crate::kafka::consumer::GroupConsumer;
use crate::kafka::group::GroupView;

use super::ledger::OffsetLedger;
use super::run_events::{RunEvent, RunEvents};

/// What a quiet poll means for a bounded run.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Quiet {
    Continue,
    End,
    /// No partition was ever assigned, and the idle timeout passed this long ago.
    Unassigned {
        past_timeout: Duration,
    },
}

/// When a bounded run has been quiet long enough to end. Joining the group takes a moment:
/// idleness counts only from the first assignment.
pub(super) struct Idleness {
    started: Instant,
    timeout: Option<Duration>,
    since: Option<Instant>,
}

impl Idleness {
    pub(super) fn new(started: Instant, timeout: Option<Duration>) -> Self {
        Self { started, timeout, since: None }
    }

    pub(super) fn message_at(&mut self, now: Instant) {
        self.since = Some(now);
    }

    /// A poll returned nothing: whether the run goes on, ends, or has waited past the idle
    /// timeout for its first assignment (the caller asks the group why, see `assignment`).
    pub(super) fn quiet(&mut self, assigned: bool) -> Quiet {
        let Some(timeout) = self.timeout else { return Quiet::Continue };
        match (self.since, assigned) {
            (None, true) => self.since = Some(Instant::now()),
            (None, false) if self.started.elapsed() >= timeout => {
                return Quiet::Unassigned { past_timeout: self.started.elapsed() - timeout };
            }
            (Some(since), _) if since.elapsed() >= timeout => {
                tracing::info!(idle_ms = since.elapsed().as_millis() as u64, "topic idle; ending the run");
                return Quiet::End;
            }
            _ => {}
        }
        Quiet::Continue
    }
}

/// Sets the lag gauges from the cached high watermarks (no broker request) and publishes the
/// run's progress.
pub(super) fn refresh(consumer: &GroupConsumer, topic: &str, ledger: &OffsetLedger, run: &mut RunEvents) {
    let (Ok(assigned), Ok(read_at)) = (consumer.assignment(), consumer.position()) else { return };
    let mut behind = None;
    for e in assigned.elements_for_topic(topic) {
        let p = e.partition();
        let Some(high) = consumer.context().high_watermark(topic, p) else { continue };
        let position = read_at.find_partition(topic, p).and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        });
        // Before the first commit of a partition the table's offset is not known here; its
        // read position is the closest figure.
        if let Some(base) = ledger.table_offset(p).or(position) {
            run.record(RunEvent::Lag { partition: p, lag: (high - base).max(0) });
        }
        if let Some(o) = position {
            *behind.get_or_insert(0) += (high - o).max(0) as u64;
        }
    }
    run.publish(behind);
}

/// After the run left the group: the group's offsets and lag per partition, into the summary
/// and (for partitions this instance held) the lag gauges.
pub(super) fn final_positions(
    kafka: &KafkaConfig,
    topic: &str,
    ledger: &OffsetLedger,
    run: &mut RunEvents,
) -> Result<()> {
    let held: Vec<i32> = ledger.tracked().collect();
    for (p, pos) in GroupView::open(kafka)?.positions(topic)? {
        let lag = pos.lag_from(pos.committed);
        let summary = run.summary_mut();
        if let Some(o) = pos.committed {
            summary.offsets.insert(p, o);
        }
        summary.lag.insert(p, lag);
        if held.contains(&p) {
            run.record(RunEvent::Lag { partition: p, lag });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idleness_counts_from_the_first_assignment_and_reports_a_wait_without_one() {
        let mut unbounded = Idleness::new(Instant::now(), None);
        assert_eq!(unbounded.quiet(true), Quiet::Continue);
        let mut idle = Idleness::new(Instant::now(), Some(Duration::ZERO));
        assert_eq!(idle.quiet(true), Quiet::Continue, "the first quiet poll after assignment starts the clock");
        assert_eq!(idle.quiet(true), Quiet::End);
        let long_ago = Instant::now() - Duration::from_secs(61);
        let Quiet::Unassigned { past_timeout } = Idleness::new(long_ago, Some(Duration::from_secs(1))).quiet(false)
        else {
            panic!("no assignment past the timeout is reported")
        };
        assert!(past_timeout >= Duration::from_secs(60));
    }
}
