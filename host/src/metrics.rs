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

/// Serves the metrics at `http://ADDR/metrics` from the current tokio runtime.
pub fn serve(addr: SocketAddr) -> Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full("k2_commit_duration_seconds".into()), &COMMIT_BUCKETS)
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
    commit_duration: Histogram,
    last_commit: Gauge,
    validator_restarts: Counter,
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
            commit_duration: histogram!("k2_commit_duration_seconds", "table" => tb.clone()),
            last_commit: gauge!("k2_last_commit_timestamp_seconds", "table" => tb),
            validator_restarts: counter!("k2_validator_restarts_total", "topic" => t),
        }
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

    pub fn sequence_events(&self, kind: &'static str, n: u64) {
        counter!("k2_sequence_events_total", "topic" => self.topic.clone(), "kind" => kind).increment(n);
    }
}
