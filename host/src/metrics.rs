//! Prometheus metrics: the `/metrics` endpoint and each topic's counters, labelled by topic, table, reason or kind.
//!
//! Labels are bounded: topic, table, partition, reason code, event kind — never a record key.
//! Without [`serve`] the macros record into nothing, so the pipeline counts unconditionally.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::error::{Error, Result};

/// Commit durations are seconds; most commits take tens of milliseconds.
const COMMIT_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Validator calls take microseconds (a record) to tens of milliseconds (a full batch).
const CALL_BUCKETS: [f64; 10] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0];
/// Records per validator batch: `pipeline.batch_records` caps it, quiet moments cut it short.
const BATCH_BUCKETS: [f64; 9] = [1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 50000.0];

/// Serves the metrics at `http://ADDR/metrics` from the current tokio runtime.
pub fn serve(addr: SocketAddr) -> Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full("k2_commit_duration_seconds".into()), &COMMIT_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full("k2_validator_call_duration_seconds".into()), &CALL_BUCKETS)
        })
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full("k2_batch_records".into()), &BATCH_BUCKETS))
        .and_then(|b| b.install())
        .map_err(|e| Error::Io {
            context: format!("serving metrics on {addr}"),
            source: std::io::Error::other(e.to_string()),
        })?;
    tracing::info!(%addr, "metrics at http://{addr}/metrics");
    Ok(())
}

/// Distinct reason codes given their own label per topic; past this, `other`. Codes come
/// from the validator, and a buggy one must not blow up the series count.
const MAX_REASONS: usize = 100;

/// The counters of one topic's run, with their labels bound once.
pub struct TopicMetrics {
    topic: String,
    reasons: std::collections::HashSet<String>,
    consumed: Counter,
    written: Counter,
    decode_errors: Counter,
    commits: Counter,
    commit_conflicts: Counter,
    commit_errors: Counter,
    write_errors: Counter,
    commit_duration: Histogram,
    last_commit: Gauge,
    files_written: Counter,
    bytes_written: Counter,
    batch_records: Histogram,
    validator_calls: Histogram,
    validator_restarts: Counter,
    validator_traps: Counter,
    records_lost: Counter,
}

impl TopicMetrics {
    pub fn new(topic: &str, table: &str) -> Self {
        let (t, tb) = (topic.to_string(), table.to_string());
        Self {
            topic: t.clone(),
            reasons: Default::default(),
            consumed: counter!("k2_messages_consumed_total", "topic" => t.clone()),
            written: counter!("k2_records_written_total", "topic" => t.clone(), "table" => tb.clone()),
            decode_errors: counter!("k2_decode_errors_total", "topic" => t.clone()),
            commits: counter!("k2_commits_total", "topic" => t.clone(), "table" => tb.clone()),
            commit_conflicts: counter!("k2_commit_conflicts_total", "table" => tb.clone()),
            commit_errors: counter!("k2_commit_errors_total", "table" => tb.clone()),
            write_errors: counter!("k2_write_errors_total", "table" => tb.clone()),
            commit_duration: histogram!("k2_commit_duration_seconds", "table" => tb.clone()),
            last_commit: gauge!("k2_last_commit_timestamp_seconds", "table" => tb.clone()),
            files_written: counter!("k2_data_files_written_total", "table" => tb.clone()),
            bytes_written: counter!("k2_data_bytes_written_total", "table" => tb),
            batch_records: histogram!("k2_batch_records", "topic" => t.clone()),
            validator_calls: histogram!("k2_validator_call_duration_seconds", "topic" => t.clone()),
            validator_restarts: counter!("k2_validator_restarts_total", "topic" => t.clone()),
            validator_traps: counter!("k2_validator_traps_total", "topic" => t.clone()),
            records_lost: counter!("k2_records_lost_total", "topic" => t),
        }
    }

    /// One batch handed to the validator (or straight to the writer without one).
    pub fn batch(&self, records: usize) {
        self.batch_records.record(records as f64);
    }

    pub fn validator_call(&self, took: Duration) {
        self.validator_calls.record(took.as_secs_f64());
    }

    pub fn validator_traps(&self, n: u64) {
        self.validator_traps.increment(n);
    }

    pub fn commit_conflict(&self) {
        self.commit_conflicts.increment(1);
    }

    /// A commit to the catalog failed with an error other than a conflict.
    pub fn commit_error(&self) {
        self.commit_errors.increment(1);
    }

    /// Writing or closing a data file failed.
    pub fn write_error(&self) {
        self.write_errors.increment(1);
    }

    /// Data files added to the table by a commit.
    pub fn files_written(&self, files: u64, bytes: u64) {
        self.files_written.increment(files);
        self.bytes_written.increment(bytes);
    }

    /// Messages behind the high watermark that the table does not hold yet, per partition.
    /// A partition given up is set to 0: its new owner reports it.
    pub fn consumer_lag(&self, partition: i32, lag: i64) {
        gauge!("k2_consumer_lag", "topic" => self.topic.clone(), "partition" => partition.to_string()).set(lag as f64);
    }

    /// Records deleted from the log before they were read, skipped under `on_offset_lost = "skip"`.
    pub fn records_lost(&self, n: u64) {
        self.records_lost.increment(n);
    }

    pub fn consumed(&self) {
        self.consumed.increment(1);
    }

    pub fn decode_error(&self) {
        self.decode_errors.increment(1);
    }

    pub fn written(&self, n: u64) {
        self.written.increment(n);
    }

    pub fn validator_restarts(&self, n: u64) {
        self.validator_restarts.increment(n);
    }

    pub fn committed(&self, took: Duration, at_unix_secs: f64) {
        self.commits.increment(1);
        self.commit_duration.record(took.as_secs_f64());
        self.last_commit.set(at_unix_secs);
    }

    pub fn rejected(&mut self, reason: &str, n: u64) {
        let reason = self.reason_label(reason);
        counter!("k2_records_rejected_total", "topic" => self.topic.clone(), "reason" => reason).increment(n);
    }

    pub fn dead_lettered(&mut self, reason: &str) {
        let reason = self.reason_label(reason);
        counter!("k2_records_dead_lettered_total", "topic" => self.topic.clone(), "reason" => reason).increment(1);
    }

    fn reason_label(&mut self, reason: &str) -> String {
        if self.reasons.contains(reason) || self.reasons.len() < MAX_REASONS && self.reasons.insert(reason.to_string())
        {
            reason.to_string()
        } else {
            "other".to_string()
        }
    }

    /// One maintenance run of `table` (the topic's or its events table).
    pub fn maintained(&self, table: &str, snapshots_expired: u64, files_deleted: u64, bytes: u64) {
        let t = table.to_string();
        counter!("k2_maintenance_runs_total", "table" => t.clone()).increment(1);
        counter!("k2_snapshots_expired_total", "table" => t.clone()).increment(snapshots_expired);
        counter!("k2_files_deleted_total", "table" => t.clone()).increment(files_deleted);
        counter!("k2_bytes_reclaimed_total", "table" => t).increment(bytes);
    }

    pub fn orphans_deleted(&self, table: &str, files: u64) {
        counter!("k2_orphan_files_deleted_total", "table" => table.to_string()).increment(files);
    }

    pub fn maintenance_error(&self, table: &str) {
        counter!("k2_maintenance_errors_total", "table" => table.to_string()).increment(1);
    }

    pub fn sequence_events(&self, kind: &'static str, n: u64) {
        counter!("k2_sequence_events_total", "topic" => self.topic.clone(), "kind" => kind).increment(n);
    }
}
