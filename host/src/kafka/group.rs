//! The group seen from outside: committed offsets, watermarks and members, read (and reset) by a client that never joins.
//!
//! Reading through a client of its own means a status or rewind neither waits for nor
//! disturbs a rebalance of the consumers doing the work.

use std::collections::BTreeMap;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::kafka::base_client_config;
use crate::kafka::consumer::{BROKER_REQUEST_TIMEOUT, commit_offsets};
use crate::kafka::topic_id::{self, TopicId};

/// One partition as the broker and the group see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionPosition {
    /// The group's committed offset, if it has one.
    pub committed: Option<i64>,
    /// The earliest offset still in the log.
    pub low: i64,
    /// The offset the next message will get.
    pub high: i64,
}

impl PartitionPosition {
    /// Messages behind the high watermark, counting from `from` (or the log start).
    pub fn lag_from(&self, from: Option<i64>) -> i64 {
        (self.high - from.unwrap_or(self.low).max(self.low)).max(0)
    }
}

/// A client of the configured group that does not join it.
pub struct GroupView {
    consumer: BaseConsumer,
    group: String,
}

impl GroupView {
    pub fn open(kafka: &KafkaConfig) -> Result<Self> {
        let consumer = base_client_config(kafka)
            .set("group.id", &kafka.group_id)
            .set("enable.auto.commit", "false")
            // Nobody reads this client's statistics; a consume run keeps it for its whole
            // length, and unread events would pile up in its queue (see `drain`).
            .set("statistics.interval.ms", "0")
            .create()
            .map_err(|source| Error::Kafka {
                context: format!("creating a client for group {} at {}", kafka.group_id, kafka.bootstrap_servers),
                source,
            })?;
        Ok(Self { consumer, group: kafka.group_id.clone() })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The partitions of `topic`; empty if the topic does not exist.
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), BROKER_REQUEST_TIMEOUT)
            .map_err(|source| Error::Kafka { context: format!("reading metadata of {topic}"), source })?;
        let mut partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// Whether the broker says `topic` does not exist (unknown topic). Other metadata errors
    /// (no authorization, a leader election just after creation) are not read as missing.
    pub fn topic_missing(&self, topic: &str) -> Result<bool> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), BROKER_REQUEST_TIMEOUT)
            .map_err(|source| Error::Kafka { context: format!("reading metadata of {topic}"), source })?;
        Ok(match metadata.topics().iter().find(|t| t.name() == topic) {
            None => true,
            Some(t) => t.error().is_some_and(|e| e == RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART),
        })
    }

    /// The id of `topic` (see [`crate::kafka::topic_id`]); `None` if the broker gives none.
    pub fn topic_id(&self, topic: &str) -> Result<Option<TopicId>> {
        self.drain();
        topic_id::describe(self.consumer.client(), topic, BROKER_REQUEST_TIMEOUT)
            .map_err(|source| Error::Kafka { context: format!("describing topic {topic}"), source })
    }

    /// Serves what librdkafka queued for this client (its log lines, errors): a client that
    /// is never polled keeps them in memory, which over a months-long run adds up.
    fn drain(&self) {
        for _ in 0..10_000 {
            if self.consumer.poll(std::time::Duration::ZERO).is_none() {
                break;
            }
        }
    }

    /// The group's committed offset and the watermarks of every partition of `topic`.
    pub fn positions(&self, topic: &str) -> Result<BTreeMap<i32, PartitionPosition>> {
        let marks = self.watermarks_all(topic)?;
        let partitions: Vec<i32> = marks.keys().copied().collect();
        let committed = self.committed(topic, &partitions)?;
        Ok(marks
            .into_iter()
            .map(|(p, (low, high))| (p, PartitionPosition { committed: committed.get(&p).copied(), low, high }))
            .collect())
    }

    /// (low, high) watermarks of every partition of `topic`; empty if it does not exist.
    pub fn watermarks_all(&self, topic: &str) -> Result<BTreeMap<i32, (i64, i64)>> {
        self.partitions(topic)?.into_iter().map(|p| Ok((p, self.watermarks(topic, p)?))).collect()
    }

    /// (low, high) watermarks of `topic`/`partition`, asked of the broker.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64)> {
        self.consumer
            .fetch_watermarks(topic, partition, BROKER_REQUEST_TIMEOUT)
            .map_err(|source| Error::Kafka { context: format!("reading watermarks of {topic}/{partition}"), source })
    }

    /// The group's committed offsets of `partitions` (absent where it has none).
    pub fn committed(&self, topic: &str, partitions: &[i32]) -> Result<BTreeMap<i32, i64>> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(topic, p);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, BROKER_REQUEST_TIMEOUT)
            .map_err(|source| Error::Kafka { context: format!("reading committed offsets of {topic}"), source })?;
        Ok(committed
            .elements_for_topic(topic)
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect())
    }

    /// Per partition, the first offset whose timestamp is at or after `unix_ms`; the high
    /// watermark where no message is that recent.
    pub fn offsets_for_time(&self, topic: &str, partitions: &[i32], unix_ms: i64) -> Result<BTreeMap<i32, i64>> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition_offset(topic, p, Offset::Offset(unix_ms))
                .map_err(|source| Error::Kafka { context: format!("listing {topic}/{p}"), source })?;
        }
        let found = self.consumer.offsets_for_times(tpl, BROKER_REQUEST_TIMEOUT).map_err(|source| Error::Kafka {
            context: format!("finding offsets of {topic} at {unix_ms} ms"),
            source,
        })?;
        let mut out = BTreeMap::new();
        for &p in partitions {
            let offset = match found.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => self.watermarks(topic, p)?.1,
            };
            out.insert(p, offset);
        }
        Ok(out)
    }

    /// The group's state as the coordinator reports it (`Stable`, `PreparingRebalance`,
    /// `CompletingRebalance`, `Empty`, `Dead`) and its number of members, dead ones whose
    /// sessions have not expired included.
    pub fn state(&self) -> Result<(String, usize)> {
        let groups = self
            .consumer
            .fetch_group_list(Some(&self.group), BROKER_REQUEST_TIMEOUT)
            .map_err(|source| Error::Kafka { context: format!("describing group {}", self.group), source })?;
        let group = groups.groups().iter().find(|g| g.name() == self.group);
        Ok(group.map_or(("Empty".to_string(), 0), |g| (g.state().to_string(), g.members().len())))
    }

    /// Members of the group right now, by client id and host; empty when no consumer runs.
    pub fn members(&self) -> Result<Vec<String>> {
        let groups = self
            .consumer
            .fetch_group_list(Some(&self.group), BROKER_REQUEST_TIMEOUT)
            .map_err(|source| Error::Kafka { context: format!("describing group {}", self.group), source })?;
        Ok(groups
            .groups()
            .iter()
            .filter(|g| g.name() == self.group)
            .flat_map(|g| g.members().iter().map(|m| format!("{}@{}", m.client_id(), m.client_host())))
            .collect())
    }

    /// Sets the group's committed offsets of `topic`. The broker accepts this only while no
    /// member is in the group, which is also the only time it is safe.
    pub fn commit(&self, topic: &str, offsets: &BTreeMap<i32, i64>) -> Result<()> {
        commit_offsets(&self.consumer, topic, offsets)
    }
}
