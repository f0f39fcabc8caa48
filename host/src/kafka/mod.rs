//! Kafka clients built from the config: the ingesting consumer, the dead-letter and sample producers, group view.

pub mod consumer;
pub mod dlq;
pub mod group;
pub mod letter_size;
pub mod log_bounds;
pub mod outage;
pub mod producer;
pub mod topic_id;

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// Client settings shared by every client: brokers and the passthrough options.
pub fn base_client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.bootstrap_servers);
    for (k, v) in &kafka.options {
        c.set(k, v);
    }
    c
}
