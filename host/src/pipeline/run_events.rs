//! Typed run events: each fact of a run is one call that updates the summary, the metrics, progress and the logs together.

use std::time::Duration;

use crate::kafka::log_bounds::LostRange;
use crate::metrics::TopicMetrics;
use crate::sandbox::{RecoveryStats, Verdict};
use crate::sink::events::EventRow;

use super::event_log::EventLog;
use super::progress::Progress;
use super::summary::RunSummary;

/// How many undecodable records are logged one by one per run; the rest are counted.
const UNDECODABLE_LOGGED: u64 = 3;

/// A fact of a consume run.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// A message was read from Kafka.
    Consumed,
    /// A message's body did not decode; it is set aside (dead letters or skip) unless
    /// `on_invalid = "fail"` stops the topic.
    Undecodable { partition: i32, offset: i64, error: &'a str, set_aside: bool },
    /// A batch of `rows` records was handed to the validator (or straight on without one).
    Batch { rows: usize },
    /// The validator was called on a batch; `recovery` is what its supervisor did since the last call.
    ValidatorCalled { took: Duration, recovery: RecoveryStats },
    /// The validator's verdict on a batch of `partition` starting at `first_offset`.
    Verdict { partition: i32, first_offset: i64, verdict: &'a Verdict },
    /// A sequence event bound for the events table.
    SequenceEvent(&'a EventRow),
    /// Records reported as duplicates and left out of the table.
    DuplicatesSetAside(u64),
    /// A record was sent to the dead-letter topic with this reason code.
    DeadLettered { code: &'a str },
    /// The dead-letter topic acknowledged `count` letters.
    DeadLettersAcknowledged { topic: &'a str, count: u64 },
    /// Records handed to the table writer.
    Written(u64),
    /// Writing or closing a data file failed.
    WriteFailed,
    /// A catalog commit failed with an error other than a conflict, for good.
    CommitFailed,
    /// A commit to `table` failed with a transient `error`; attempt number `attempt + 1` follows after `wait`.
    CommitRetried { table: &'a str, error: &'a crate::error::Error, wait: Duration, attempt: u32 },
    /// Writing a commit's files to `table` failed with a transient `error`: the `records`
    /// they held are dropped and read again after `wait` (attempt number `attempt`).
    WritesDropped { table: &'a str, error: &'a crate::error::Error, records: u64, wait: Duration, attempt: u32 },
    /// A commit found another writer's snapshot first.
    CommitConflict,
    /// Records in the writer dropped because another writer committed their offsets first.
    DroppedAlreadyCommitted(u64),
    /// Rows committed to the sequence-events table.
    EventsRecorded { table: &'a str, added: u64 },
    /// A table commit.
    Committed(&'a Commit),
    /// The group's offsets were moved to the table's without a table commit.
    GroupCaughtUp { offsets: &'a str },
    /// A partition's lag behind its high watermark.
    Lag { partition: i32, lag: i64 },
    /// Records deleted from the log before they were read, skipped under `on_offset_lost = "skip"`.
    RecordsLost(&'a LostRange),
    /// The consumer lost the broker (the first error of an outage); the run waits for it.
    BrokerUnreachable(&'a rdkafka::error::KafkaError),
    /// Messages flow again after an outage that lasted `lasted`, with `errors` errors.
    BrokerBack { lasted: Duration, errors: u64 },
    /// No partition is assigned yet past the idle timeout; the run waits for what this says.
    WaitingFor(&'a str),
    /// Maintenance ran on a table (see [`crate::maintenance`]).
    Maintained(&'a crate::maintenance::Report),
    /// Maintenance of `table` failed; ingest goes on and it is tried at the next run.
    MaintenanceFailed { table: &'a str, error: &'a crate::error::Error },
}

/// What one table commit did.
#[derive(Debug)]
pub struct Commit {
    pub table: String,
    pub snapshot_id: Option<i64>,
    pub records: u64,
    pub files: u64,
    pub bytes: u64,
    pub took: Duration,
    /// Offset ranges committed, for the log line.
    pub ranges: String,
    pub at_unix_secs: f64,
}

/// The run's record of what happened: the summary it prints, its metrics, its progress and its logs.
pub struct RunEvents {
    topic: String,
    summary: RunSummary,
    metrics: TopicMetrics,
    event_log: EventLog,
    progress: Option<tokio::sync::watch::Sender<Progress>>,
    waiting_for: Option<String>,
}

impl RunEvents {
    pub fn new(summary: RunSummary) -> Self {
        let metrics = TopicMetrics::new(&summary.topic, &summary.table);
        Self {
            topic: summary.topic.clone(),
            summary,
            metrics,
            event_log: EventLog::default(),
            progress: None,
            waiting_for: None,
        }
    }

    /// Publishes the run's [`Progress`] to `tx` whenever [`RunEvents::publish`] is called.
    pub fn report_progress(&mut self, tx: tokio::sync::watch::Sender<Progress>) {
        self.progress = Some(tx);
    }

    pub fn summary(&self) -> &RunSummary {
        &self.summary
    }

    pub fn record(&mut self, event: RunEvent<'_>) {
        let (s, m, topic) = (&mut self.summary, &mut self.metrics, self.topic.as_str());
        match event {
            RunEvent::Consumed => {
                s.consumed += 1;
                m.consumed();
            }
            RunEvent::Undecodable { partition, offset, error, set_aside } => {
                s.undecodable += 1;
                m.decode_error();
                // The first few are logged so an operator can see why; all are counted.
                if set_aside && s.undecodable <= UNDECODABLE_LOGGED {
                    tracing::warn!(topic = %topic, partition, offset, error = %error, "undecodable record set aside");
                }
            }
            RunEvent::Batch { rows } => m.batch(rows),
            RunEvent::ValidatorCalled { took, recovery } => {
                m.validator_call(took);
                m.validator_traps(recovery.traps);
                m.validator_restarts(recovery.restarts);
                s.validator_restarts += recovery.restarts;
                s.validator_isolated += recovery.isolated;
            }
            RunEvent::Verdict { partition, first_offset, verdict } => {
                for r in &verdict.rejected {
                    *s.rejected_by_code.entry(r.code.clone()).or_default() += 1;
                    m.rejected(&r.code, 1);
                }
                s.rejected += verdict.rejected.len() as u64;
                for e in &verdict.events {
                    *s.sequence_events.entry(e.kind).or_default() += 1;
                    m.sequence_events(e.kind.as_str(), 1);
                }
                // Once per batch, never per record.
                if let Some(r) = verdict.rejected.first() {
                    tracing::info!(topic = %topic, partition, batch_first_offset = first_offset,
                        rejected = verdict.rejected.len(), first_code = %r.code, first_reason = %r.message,
                        "batch had rejections");
                }
            }
            RunEvent::SequenceEvent(row) => self.event_log.warn(topic, row),
            RunEvent::DuplicatesSetAside(n) => s.duplicates_set_aside += n,
            RunEvent::DeadLettered { code } => {
                s.dead_lettered += 1;
                m.dead_lettered(code);
            }
            RunEvent::DeadLettersAcknowledged { topic: dlq, count } => {
                if count > 0 {
                    tracing::info!(dlq, acknowledged = count, "dead letters acknowledged");
                }
            }
            RunEvent::Written(n) => {
                s.written += n;
                m.written(n);
            }
            RunEvent::WriteFailed => m.write_error(),
            RunEvent::CommitFailed => m.commit_error(),
            RunEvent::WritesDropped { table, error, records, wait, attempt } => {
                s.commit_retries += 1;
                s.written -= records.min(s.written);
                tracing::warn!(%table, attempt, records, retry_in_ms = wait.as_millis() as u64, %error,
                    "writing data files failed; dropping the uncommitted records and reading them again from the table's offsets");
            }
            RunEvent::CommitRetried { table, error, wait, attempt } => {
                s.commit_retries += 1;
                m.commit_error();
                // WARN, not ERROR: the run rides it out; it stops (and says so) once `commit.retry_timeout_ms` has passed.
                tracing::warn!(%table, attempt, retry_in_ms = wait.as_millis() as u64, %error,
                    "commit failed; trying again");
            }
            RunEvent::CommitConflict => {
                s.commit_conflicts += 1;
                m.commit_conflict();
            }
            RunEvent::DroppedAlreadyCommitted(n) => {
                s.dropped_already_committed += n;
                s.written -= n.min(s.written);
            }
            RunEvent::EventsRecorded { table, added } => {
                s.events_recorded += added;
                tracing::info!(events_table = %table, added, "sequence events committed");
            }
            RunEvent::Committed(c) => {
                s.commits += 1;
                m.committed(c.took, c.at_unix_secs);
                m.files_written(c.files, c.bytes);
                tracing::info!(table = %c.table, snapshot_id = c.snapshot_id, records = c.records, files = c.files,
                    bytes = c.bytes, offsets = %c.ranges, duration_ms = c.took.as_millis() as u64, "committed");
            }
            RunEvent::GroupCaughtUp { offsets } => {
                tracing::info!(offsets = %offsets, "group offsets caught up with the table");
            }
            RunEvent::Lag { partition, lag } => m.consumer_lag(partition, lag),
            RunEvent::WaitingFor(what) => {
                if self.waiting_for.as_deref() != Some(what) {
                    tracing::info!(topic = %topic, waiting_for = %what, "no partition assigned yet; waiting");
                }
                self.waiting_for = Some(what.to_string());
            }
            RunEvent::BrokerUnreachable(error) => {
                s.broker_outages += 1;
                tracing::warn!(topic = %topic, %error, "the broker is unreachable; waiting for it (librdkafka reconnects)");
            }
            RunEvent::BrokerBack { lasted, errors } => {
                tracing::info!(topic = %topic, lasted_ms = lasted.as_millis() as u64, errors, "the broker is reachable again");
            }
            RunEvent::Maintained(r) => {
                s.maintenance_runs += 1;
                s.snapshots_expired += r.snapshots_expired.len() as u64;
                s.files_deleted += r.files_deleted();
                let orphans = r.orphans_deleted();
                s.orphans_deleted += orphans;
                m.maintained(&r.table, r.snapshots_expired.len() as u64, r.files_deleted(), r.bytes_reclaimed);
                m.orphans_deleted(&r.table, orphans);
                if let Some(error) = &r.orphans_failed {
                    m.maintenance_error(&r.table);
                    tracing::warn!(table = %r.table, %error, "the orphan sweep failed or refused; nothing was deleted by it; ingest goes on, tried again at the next sweep");
                }
                if let Some(o) = &r.orphans {
                    tracing::info!(table = %r.table, orphans_deleted = orphans, orphans_not_deleted = o.not_deleted,
                        bytes = o.bytes_deleted, recent_unreferenced = o.recent, "orphan files swept");
                } else if let Some(why) = &r.orphans_skipped {
                    tracing::info!(table = %r.table, reason = %why, "orphan files not swept");
                }
                match &r.skipped {
                    Some(why) => tracing::info!(table = %r.table, reason = %why, "maintenance expired nothing"),
                    None => tracing::info!(table = %r.table, snapshots_before = r.snapshots_before,
                        snapshots_expired = r.snapshots_expired.len(), files_deleted = r.files_deleted(),
                        files_not_deleted = r.files_not_deleted, bytes_reclaimed = r.bytes_reclaimed,
                        duration_ms = r.duration_ms, "maintained"),
                }
            }
            RunEvent::MaintenanceFailed { table, error } => {
                m.maintenance_error(table);
                // WARN: ingest is unaffected; maintenance is tried again at its next run.
                tracing::warn!(%table, %error, "maintenance failed; ingest goes on, tried again at the next run");
            }
            RunEvent::RecordsLost(r) => {
                s.records_lost += r.records();
                s.lost_ranges.entry(r.partition).or_default().push([r.from, r.to]);
                m.records_lost(r.records());
                tracing::warn!(topic = %topic, partition = r.partition, from = r.from, to = r.to, records = r.records(),
                    "records were deleted from the log before they were read; going on from the log start \
                     (on_offset_lost = \"skip\"), the loss is recorded in the table");
            }
        }
    }

    /// Publishes the counts so far and the backlog behind the high watermarks (`None` before
    /// the first assignment) to the progress display, if any.
    pub fn publish(&mut self, behind: Option<u64>) {
        if behind.is_some() {
            self.waiting_for = None;
        }
        if let Some(tx) = &self.progress {
            let s = &self.summary;
            tx.send_replace(Progress {
                consumed: s.consumed,
                written: s.written,
                rejected: s.rejected,
                undecodable: s.undecodable,
                commits: s.commits,
                behind,
                waiting_for: self.waiting_for.clone(),
            });
        }
    }

    /// Reports what the rate-limited logs left out of their last window.
    pub fn close_log_window(&mut self) {
        self.event_log.close_window(&self.topic);
    }

    /// Ends the run: the final counts are published and the summary handed out.
    pub fn finish(mut self) -> RunSummary {
        self.close_log_window();
        self.publish(Some(0));
        self.summary
    }

    /// The summary's fields only known at the end of the run.
    pub fn summary_mut(&mut self) -> &mut RunSummary {
        &mut self.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{EventKind, Rejection, SequenceEvent};

    fn events() -> RunEvents {
        RunEvents::new(RunSummary { topic: "t".into(), table: "db.t".into(), ..Default::default() })
    }

    #[test]
    fn each_fact_is_counted_once_and_progress_follows_the_summary() {
        let mut run = events();
        let (tx, rx) = tokio::sync::watch::channel(Progress::default());
        run.report_progress(tx);
        for _ in 0..5 {
            run.record(RunEvent::Consumed);
        }
        run.record(RunEvent::Undecodable { partition: 0, offset: 4, error: "bad", set_aside: true });
        let verdict = Verdict {
            rejected: vec![Rejection { index: 1, code: "price".into(), message: "not positive".into() }],
            events: vec![SequenceEvent {
                index: 2,
                kind: EventKind::Gap,
                key: "X:A".into(),
                expected: 3,
                received: 5,
                missing: 2,
            }],
        };
        run.record(RunEvent::Verdict { partition: 0, first_offset: 0, verdict: &verdict });
        run.record(RunEvent::DeadLettered { code: "price" });
        run.record(RunEvent::Written(3));
        run.record(RunEvent::ValidatorCalled {
            took: Duration::from_micros(5),
            recovery: RecoveryStats { restarts: 1, isolated: 2, traps: 1 },
        });
        run.publish(None);
        let p = rx.borrow().clone();
        assert_eq!((p.consumed, p.written, p.rejected, p.undecodable), (5, 3, 1, 1));
        let s = run.finish();
        assert_eq!(s.rejected_by_code["price"], 1);
        assert_eq!(s.sequence_events[&EventKind::Gap], 1);
        assert_eq!((s.dead_lettered, s.validator_restarts, s.validator_isolated), (1, 1, 2));
        assert_eq!(*rx.borrow(), Progress { behind: Some(0), ..p }, "the end publishes the final counts");
    }

    #[test]
    fn records_dropped_for_another_writer_are_no_longer_written() {
        let mut run = events();
        run.record(RunEvent::Written(10));
        run.record(RunEvent::CommitConflict);
        run.record(RunEvent::DroppedAlreadyCommitted(10));
        let s = run.finish();
        assert_eq!((s.written, s.dropped_already_committed, s.commit_conflicts), (0, 10, 1));
    }
}
