//! A producer and topic creation, for the dead-letter topics and the `k2-sample` generator.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::kafka::base_client_config;
use crate::kafka::consumer::BROKER_REQUEST_TIMEOUT;

/// Asks the broker for its `default.replication.factor` (KIP-464, Kafka 2.4 and later).
const BROKER_DEFAULT_REPLICATION: i32 = -1;

/// An idempotent producer (no duplicates from retries), batching for throughput.
pub fn producer(kafka: &KafkaConfig) -> Result<FutureProducer> {
    let mut c = base_client_config(kafka);
    c.set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "60000");
    c.create().map_err(|source| Error::Kafka {
        context: format!("creating a producer for {}", kafka.bootstrap_servers),
        source,
    })
}

/// Creates `topic` with `partitions` partitions unless it exists; returns its partition count.
/// The replication factor is the cluster's `default.replication.factor`, as for topics Kafka
/// creates itself: a fixed 1 lost acknowledged letters with one broker, and clusters with a
/// minimum replication refused it.
pub async fn ensure_topic(kafka: &KafkaConfig, topic: &str, partitions: i32) -> Result<i32> {
    let admin: AdminClient<DefaultClientContext> = base_client_config(kafka)
        .create()
        .map_err(|source| Error::Kafka { context: "creating an admin client".into(), source })?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(BROKER_DEFAULT_REPLICATION));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .map_err(|source| Error::Kafka { context: format!("creating topic {topic}"), source })?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(Error::Topic { topic: topic.to_string(), message: format!("cannot create: {code}") });
            }
        }
    }
    // A freshly created topic's metadata can lag for a moment.
    for _ in 0..50 {
        let md = admin
            .inner()
            .fetch_metadata(Some(topic), BROKER_REQUEST_TIMEOUT)
            .map_err(|source| Error::Kafka { context: format!("reading metadata of {topic}"), source })?;
        let count = md.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len());
        if count > 0 {
            return Ok(count as i32);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::Topic { topic: topic.to_string(), message: "has no partitions after creation".into() })
}
