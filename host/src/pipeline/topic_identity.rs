//! Whether the topic being read is the one the table's offsets came from: its id, checked at the start and before every commit.
//!
//! Offsets compared against the log's bounds catch a recreated topic only while its new log
//! is shorter than the table's offset. One that grew past it would be read from the old
//! offset on, its earlier records skipped; librdkafka does not act on the changed id either.
//! The id recorded in the table's summary tells them apart.

use crate::error::{Error, Result};
use crate::kafka::topic_id::TopicId;

/// The topic's id as last seen from the broker, and the rule judging each new sighting.
#[derive(Debug, Default)]
pub struct TopicIdentity {
    seen: Option<TopicId>,
}

impl TopicIdentity {
    /// The id commits record: the one seen from the broker, `None` until one was.
    pub fn current(&self) -> Option<&TopicId> {
        self.seen.as_ref()
    }

    /// Judges `seen` (the broker's answer; `None` when it gave none or did not answer)
    /// against the id the table stores and the one seen before in this run. A different id
    /// means the topic was deleted and created again: nothing of it may be committed on the
    /// old offsets.
    pub fn observe(&mut self, topic: &str, table: &str, stored: Option<&str>, seen: Option<TopicId>) -> Result<()> {
        let Some(seen) = seen else { return Ok(()) };
        let before = self.seen.as_ref().map(|t| t.0.as_str()).or(stored);
        if let Some(before) = before.filter(|b| *b != seen.0) {
            return Err(Error::Topic {
                topic: topic.into(),
                message: format!(
                    "was deleted and created again: its id is {seen}, but the offsets in table {table} were read from \
                     the topic with id {before}. Nothing was committed from the new topic. To ingest it from its start, \
                     `k2-ingest truncate --topic {topic} --restart-from earliest` empties the table (its old snapshots \
                     stay until expired); to keep the old rows, point the topic at a new `table` in the config"
                ),
            });
        }
        self.seen = Some(seen);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Option<TopicId> {
        Some(TopicId(s.into()))
    }

    #[test]
    fn the_same_topic_passes_and_is_recorded() {
        let mut identity = TopicIdentity::default();
        identity.observe("t", "db.t", Some("A"), id("A")).unwrap();
        assert_eq!(identity.current(), id("A").as_ref());
    }

    #[test]
    fn a_table_with_no_id_takes_the_brokers() {
        let mut identity = TopicIdentity::default();
        identity.observe("t", "db.t", None, id("A")).unwrap();
        assert_eq!(identity.current(), id("A").as_ref());
    }

    #[test]
    fn a_different_id_than_the_tables_stops_and_says_how_to_go_on() {
        let mut identity = TopicIdentity::default();
        let err = identity.observe("t", "db.t", Some("A"), id("B")).unwrap_err().to_string();
        assert!(err.contains("deleted and created again"), "{err}");
        assert!(err.contains("id is B") && err.contains("table db.t") && err.contains("id A"), "{err}");
        assert!(err.contains("k2-ingest truncate --topic t --restart-from earliest"), "{err}");
        assert_eq!(identity.current(), None, "the new id is never recorded");
    }

    #[test]
    fn a_change_during_the_run_stops_even_before_the_first_commit() {
        let mut identity = TopicIdentity::default();
        identity.observe("t", "db.t", None, id("A")).unwrap();
        assert!(identity.observe("t", "db.t", None, id("B")).is_err());
        assert_eq!(identity.current(), id("A").as_ref());
    }

    #[test]
    fn no_answer_changes_nothing() {
        let mut identity = TopicIdentity::default();
        identity.observe("t", "db.t", Some("A"), None).unwrap();
        assert_eq!(identity.current(), None);
        identity.observe("t", "db.t", Some("A"), id("A")).unwrap();
        identity.observe("t", "db.t", Some("A"), None).unwrap();
        assert_eq!(identity.current(), id("A").as_ref());
    }
}
