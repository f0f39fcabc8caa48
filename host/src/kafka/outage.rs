//! The broker unreachable while consuming: which consumer errors librdkafka recovers from itself, and one log line per outage.
//!
//! librdkafka reconnects, re-finds the coordinator and rejoins the group on its own; while
//! it does, `recv` hands back errors such as `AllBrokersDown`. Stopping on them turned a
//! broker restart into a stopped ingester, so they are waited out; anything else still stops.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Tracks one outage from its first transient error to the next message.
#[derive(Debug, Default)]
pub struct BrokerOutage {
    since: Option<Instant>,
    errors: u64,
}

/// What the consume loop does with an error from `recv`.
#[derive(Debug, PartialEq, Eq)]
pub enum OnError {
    /// The first error of an outage: say so once, then wait.
    Began,
    /// More of the same outage: wait quietly.
    Continues,
    /// Not a connectivity error: stop.
    Fatal,
}

impl BrokerOutage {
    /// How long the loop pauses after a transient error, so a broker that is down does not
    /// turn the loop into a busy one (librdkafka answers at once while it has no connection).
    pub const PAUSE: Duration = Duration::from_millis(200);

    pub fn on_error(&mut self, error: &KafkaError, now: Instant) -> OnError {
        if !is_transient(error) {
            return OnError::Fatal;
        }
        self.errors += 1;
        if self.since.is_some() {
            return OnError::Continues;
        }
        self.since = Some(now);
        OnError::Began
    }

    /// A message arrived: returns how long the outage lasted and its errors, if one was under way.
    pub fn on_message(&mut self, now: Instant) -> Option<(Duration, u64)> {
        let since = self.since.take()?;
        let errors = std::mem::take(&mut self.errors);
        Some((now.saturating_duration_since(since), errors))
    }
}

/// True for the consumer errors that mean "the broker is not reachable right now".
pub fn is_transient(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    let Some(code) = error.rdkafka_error_code() else { return false };
    matches!(
        code,
        AllBrokersDown
            | BrokerTransportFailure
            | OperationTimedOut
            | RequestTimedOut
            | NetworkException
            | BrokerNotAvailable
            | LeaderNotAvailable
            | NotLeaderForPartition
            | CoordinatorNotAvailable
            | NotCoordinator
            | CoordinatorLoadInProgress
            | Resolve
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumption(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::MessageConsumption(code)
    }

    #[test]
    fn an_outage_is_reported_once_and_its_end_with_its_length() {
        let mut outage = BrokerOutage::default();
        let t0 = Instant::now();
        assert_eq!(outage.on_message(t0), None, "no outage, nothing to report");
        assert_eq!(outage.on_error(&consumption(RDKafkaErrorCode::AllBrokersDown), t0), OnError::Began);
        assert_eq!(outage.on_error(&consumption(RDKafkaErrorCode::BrokerTransportFailure), t0), OnError::Continues);
        let (lasted, errors) = outage.on_message(t0 + Duration::from_secs(12)).unwrap();
        assert_eq!((lasted, errors), (Duration::from_secs(12), 2));
        assert_eq!(outage.on_error(&consumption(RDKafkaErrorCode::AllBrokersDown), t0), OnError::Began, "a new outage");
    }

    #[test]
    fn other_errors_stop_the_run() {
        let mut outage = BrokerOutage::default();
        for code in [RDKafkaErrorCode::TopicAuthorizationFailed, RDKafkaErrorCode::UnknownTopicOrPartition] {
            assert_eq!(outage.on_error(&consumption(code), Instant::now()), OnError::Fatal, "{code:?}");
        }
        assert_eq!(outage.on_error(&KafkaError::Canceled, Instant::now()), OnError::Fatal);
    }
}
