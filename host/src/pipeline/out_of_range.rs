//! An offset out of range while reading: retention overtook a lagging partition, or the topic was recreated under us.

use rdkafka::consumer::{Consumer, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Error, Result};
use crate::kafka::consumer::{BROKER_REQUEST_TIMEOUT, GroupConsumer};
use crate::kafka::log_bounds::StartCheck;

use super::Pipeline;
use super::run_events::RunEvent;

impl Pipeline<'_> {
    /// librdkafka found a fetch position out of range (`auto.offset.reset = error`) and
    /// stopped fetching that partition; which one it does not say. Every assigned partition's
    /// next offset is judged against its log as at assignment: the topic stops on a loss
    /// (with the numbers) or a past-end offset, or, under `on_offset_lost = "skip"`, goes on
    /// from the log start with the loss counted and recorded in the next commit.
    pub(super) fn out_of_range(&mut self, consumer: &GroupConsumer, error: KafkaError) -> Result<()> {
        let topic = self.topic.name.clone();
        let assigned = consumer.assignment().map_err(|source| Error::Kafka {
            context: format!("reading the assignment of {topic} after an offset out of range"),
            source,
        })?;
        let mut check = StartCheck::default();
        let mut restarts = Vec::new();
        for p in assigned.elements_for_topic(&topic).iter().map(|e| e.partition()) {
            let Some(next) = self.next_read(p) else { continue };
            let (low, high) = match consumer.fetch_watermarks(&topic, p, BROKER_REQUEST_TIMEOUT) {
                Ok(bounds) => bounds,
                Err(e) => {
                    check.unknown(format!("reading the log bounds of {topic}/{p}: {e}"));
                    continue;
                }
            };
            let from_reset = self.ledger.next_read(p).is_none() && self.unstored_starts.get(&p).is_some_and(|s| s.1);
            if from_reset && next < low {
                // Started at the log's start by `auto_offset_reset` and moved on by retention
                // before the first fetch: the start is simply later, nothing was ever ours.
                self.unstored_starts.insert(p, (low, true));
                restarts.push((p, low));
                continue;
            }
            check.partition(p, next, low, high, self.topic.on_offset_lost);
        }
        if let Some(failure) = check.failure(&topic) {
            return Err(Error::Topic { topic, message: format!("while reading: {failure}") });
        }
        if check.skipped.is_empty() && restarts.is_empty() {
            // librdkafka sends one error per partition, and those queued before an earlier
            // call re-assigned them arrive after it: every partition is inside its log now.
            tracing::info!(topic = %topic, %error, "an offset out of range was already dealt with");
            return Ok(());
        }
        for range in &check.skipped {
            self.run.record(RunEvent::RecordsLost(range));
            self.ledger.skipped_to(range.partition, range.to);
            self.lost.push(*range);
            restarts.push((range.partition, range.to));
        }
        self.restart_fetching(consumer, &restarts)
    }

    /// Where reading `partition` goes on: as the ledger says, or where it was assigned if the
    /// table stored no offset for it and nothing was read since.
    fn next_read(&self, partition: i32) -> Option<i64> {
        self.ledger.next_read(partition).or_else(|| self.unstored_starts.get(&partition).map(|s| s.0))
    }

    /// librdkafka stopped fetching the partitions whose offset was out of range and refuses to
    /// seek them (`Erroneous state`): they are assigned again, at the log start past the loss.
    /// Under the eager protocol that means the whole assignment, each partition at the offset
    /// the ledger says reading goes on from, so nothing is skipped or read twice.
    fn restart_fetching(&self, consumer: &GroupConsumer, restarts: &[(i32, i64)]) -> Result<()> {
        let topic = &self.topic.name;
        let err = |source| Error::Kafka { context: format!("assigning {topic} again past a loss"), source };
        if matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative) {
            let mut tpl = TopicPartitionList::new();
            for &(p, to) in restarts {
                tpl.add_partition_offset(topic, p, Offset::Offset(to)).map_err(err)?;
            }
            consumer.incremental_unassign(&tpl).map_err(err)?;
            return consumer.incremental_assign(&tpl).map_err(err);
        }
        let assigned = consumer.assignment().map_err(err)?;
        let mut tpl = TopicPartitionList::new();
        for e in assigned.elements() {
            let offset = if e.topic() == topic {
                self.next_read(e.partition()).map_or(Offset::Stored, Offset::Offset)
            } else {
                Offset::Stored
            };
            tpl.add_partition_offset(e.topic(), e.partition(), offset).map_err(err)?;
        }
        consumer.assign(&tpl).map_err(err)
    }
}
