//! When a failed commit is tried again: transient failures only, backing off from 1 s doubling to 30 s, until `commit.retry_timeout_ms`.
//!
//! Hand-written rather than `backon` (in the tree through iceberg): the waits are driven by
//! the commit loop, which must record each one as a run event and decide between attempts
//! whether the last one landed; a retry combinator would hide both.

use std::time::Duration;

use iceberg::ErrorKind;

use crate::error::Error;

/// The wait after the first failure.
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// The retry budget of one commit.
#[derive(Debug)]
pub struct CommitRetry {
    timeout: Duration,
    next: Duration,
    failures: u32,
}

impl CommitRetry {
    /// A budget of `timeout` (zero: no retry at all).
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, next: FIRST_WAIT, failures: 0 }
    }

    /// No budget: waits grow to 30 s and go on, for a caller that keeps working between attempts.
    pub fn unbounded() -> Self {
        Self::new(Duration::MAX)
    }

    /// After a failed attempt `elapsed` since the first: how long to wait before the next,
    /// or `None` when `error` is not worth retrying or the budget is spent. A wait never
    /// runs past the budget, so the last attempt comes at its end.
    pub fn next_wait(&mut self, error: &Error, elapsed: Duration) -> Option<Duration> {
        if !is_transient(error) || elapsed >= self.timeout {
            return None;
        }
        self.failures += 1;
        let wait = self.next.min(self.timeout - elapsed);
        self.next = (self.next * 2).min(MAX_WAIT);
        Some(wait)
    }

    /// Failed attempts so far that were followed by another.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// True for failures a later attempt may not meet: an unreachable or failing catalog or
/// object store (iceberg reports them as `Unexpected`: I/O, HTTP 5xx, timeouts, a locked
/// SQLite database), or a broker that could not be reached for a commit's question (the
/// topic's id). A missing table, invalid data, an unsupported feature or a refused
/// authorization stays so.
pub fn is_transient(error: &Error) -> bool {
    match error {
        Error::Iceberg { source, .. } => source.kind() == ErrorKind::Unexpected,
        Error::Kafka { source, .. } => crate::kafka::outage::is_transient(source),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iceberg(kind: ErrorKind) -> Error {
        Error::Iceberg {
            table: "market.trades".into(),
            context: "committing".into(),
            source: iceberg::Error::new(kind, "x"),
        }
    }

    fn kafka(code: rdkafka::error::RDKafkaErrorCode) -> Error {
        Error::Kafka {
            context: "reading the id of topic t".into(),
            source: rdkafka::error::KafkaError::MetadataFetch(code),
        }
    }

    #[test]
    fn a_broker_out_of_reach_is_asked_again_a_refusal_is_not() {
        use rdkafka::error::RDKafkaErrorCode::*;
        assert!(is_transient(&kafka(OperationTimedOut)));
        assert!(is_transient(&kafka(AllBrokersDown)));
        assert!(!is_transient(&kafka(TopicAuthorizationFailed)));
        assert!(!is_transient(&kafka(UnsupportedVersion)));
    }

    #[test]
    fn an_unbounded_retry_keeps_waiting_at_most_30_s() {
        let mut retry = CommitRetry::unbounded();
        let waits: Vec<Duration> = (0..8)
            .map(|_| retry.next_wait(&kafka(rdkafka::error::RDKafkaErrorCode::AllBrokersDown), Duration::ZERO).unwrap())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30].map(secs));
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn waits_double_from_one_second_up_to_thirty() {
        let mut retry = CommitRetry::new(secs(3600));
        let waits: Vec<u64> =
            (0..8).map(|_| retry.next_wait(&iceberg(ErrorKind::Unexpected), secs(0)).unwrap().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(retry.failures(), 8);
    }

    #[test]
    fn the_last_wait_ends_at_the_budget_and_nothing_follows_it() {
        let mut retry = CommitRetry::new(secs(10));
        let e = iceberg(ErrorKind::Unexpected);
        assert_eq!(retry.next_wait(&e, secs(0)), Some(secs(1)));
        assert_eq!(retry.next_wait(&e, secs(1)), Some(secs(2)));
        assert_eq!(retry.next_wait(&e, secs(3)), Some(secs(4)));
        assert_eq!(retry.next_wait(&e, secs(7)), Some(secs(3)), "clipped to the budget");
        assert_eq!(retry.next_wait(&e, secs(10)), None);
    }

    #[test]
    fn a_zero_budget_never_retries() {
        assert_eq!(CommitRetry::new(Duration::ZERO).next_wait(&iceberg(ErrorKind::Unexpected), Duration::ZERO), None);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        for kind in [
            ErrorKind::DataInvalid,
            ErrorKind::TableNotFound,
            ErrorKind::NamespaceNotFound,
            ErrorKind::FeatureUnsupported,
            ErrorKind::CatalogCommitConflicts,
        ] {
            assert_eq!(CommitRetry::new(secs(60)).next_wait(&iceberg(kind), Duration::ZERO), None, "{kind:?}");
        }
        let topic = Error::Topic { topic: "trades".into(), message: "x".into() };
        assert!(!is_transient(&topic));
    }
}
