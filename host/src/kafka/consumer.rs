//! The group consumer: manual offsets only, rebalances logged, lag read from watermarks.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::kafka::base_client_config;

/// Time allowed for a metadata, watermark or offset request to the broker.
pub const BROKER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Logs partition assignment changes (a boundary worth a line each).
pub struct RebalanceLogger;

impl ClientContext for RebalanceLogger {}

impl ConsumerContext for RebalanceLogger {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => tracing::info!(partitions = %describe(tpl), "partitions assigned"),
            Rebalance::Revoke(tpl) => tracing::info!(partitions = %describe(tpl), "partitions revoked"),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect::<Vec<_>>().join(",")
}

pub type GroupConsumer = StreamConsumer<RebalanceLogger>;

/// A consumer in the configured group with auto-commit and auto offset store off: offsets
/// move only after the data is committed to Iceberg.
pub fn group_consumer(kafka: &KafkaConfig) -> Result<GroupConsumer> {
    let mut c = base_client_config(kafka);
    c.set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", kafka.auto_offset_reset.as_str())
        .set("enable.partition.eof", "false");
    c.create_with_context(RebalanceLogger).map_err(|source| Error::Kafka {
        context: format!("creating a consumer for group {} at {}", kafka.group_id, kafka.bootstrap_servers),
        source,
    })
}

/// Commits `offsets` (partition → next offset) of `topic` for the group, synchronously.
pub fn commit_offsets(consumer: &GroupConsumer, topic: &str, offsets: &BTreeMap<i32, i64>) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (&p, &o) in offsets {
        tpl.add_partition_offset(topic, p, Offset::Offset(o)).map_err(|source| Error::Kafka {
            context: format!("listing offset {o} of {topic}/{p}"),
            source,
        })?;
    }
    consumer.commit(&tpl, CommitMode::Sync).map_err(|source| Error::Kafka {
        context: format!("committing group offsets of {topic}"),
        source,
    })
}

/// Per partition of `topic`: the group's committed offset (if any) and the lag behind the high watermark.
pub struct PartitionPosition {
    pub committed: Option<i64>,
    pub lag: i64,
}

/// Reads committed offsets and watermarks of every partition of `topic`.
pub fn positions(consumer: &GroupConsumer, topic: &str) -> Result<BTreeMap<i32, PartitionPosition>> {
    let kafka = |context: String| move |source| Error::Kafka { context, source };
    let metadata = consumer
        .fetch_metadata(Some(topic), BROKER_REQUEST_TIMEOUT)
        .map_err(kafka(format!("reading metadata of {topic}")))?;
    let mut tpl = TopicPartitionList::new();
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    for &p in &partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, BROKER_REQUEST_TIMEOUT)
        .map_err(kafka(format!("reading committed offsets of {topic}")))?;
    let mut out = BTreeMap::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, BROKER_REQUEST_TIMEOUT)
            .map_err(kafka(format!("reading watermarks of {topic}/{p}")))?;
        let committed = committed.find_partition(topic, p).and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        });
        let lag = (high - committed.unwrap_or(low)).max(0);
        out.insert(p, PartitionPosition { committed, lag });
    }
    Ok(out)
}
