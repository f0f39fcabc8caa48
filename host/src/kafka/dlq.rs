//! The dead-letter topic: bad records with their original key, value and headers, plus why and where from.

use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::guest::ModuleInfo;
use crate::kafka::producer::{ensure_topic, producer};

/// Header names k2-ingest adds to every dead letter (the original headers are kept too).
pub const HEADER_CODE: &str = "k2.reason.code";
pub const HEADER_MESSAGE: &str = "k2.reason.message";
pub const HEADER_TOPIC: &str = "k2.source.topic";
pub const HEADER_PARTITION: &str = "k2.source.partition";
pub const HEADER_OFFSET: &str = "k2.source.offset";
pub const HEADER_VALIDATOR: &str = "k2.validator.name";
pub const HEADER_VALIDATOR_VERSION: &str = "k2.validator.version";

/// Reason code of a record whose body did not decode.
pub const CODE_UNDECODABLE: &str = "undecodable";

/// One record set aside, as read from the source topic.
pub struct DeadLetter<'a> {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub headers: Option<&'a OwnedHeaders>,
    pub code: &'a str,
    pub message: &'a str,
}

/// Sends dead letters of one source topic and tracks their delivery: the pipeline waits for
/// every acknowledgement before it commits the source offsets past them.
pub struct DeadLetters {
    producer: FutureProducer,
    source: String,
    topic: String,
    validator: Option<ModuleInfo>,
    in_flight: Vec<DeliveryFuture>,
}

impl DeadLetters {
    /// Connects and creates `topic` (one partition) if it does not exist.
    pub async fn open(kafka: &KafkaConfig, source: &str, topic: &str, validator: Option<ModuleInfo>) -> Result<Self> {
        ensure_topic(kafka, topic, 1).await?;
        Ok(Self {
            producer: producer(kafka)?,
            source: source.to_string(),
            topic: topic.to_string(),
            validator,
            in_flight: Vec::new(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Queues one dead letter; [`DeadLetters::flush`] waits for it.
    pub async fn send(&mut self, letter: DeadLetter<'_>) -> Result<()> {
        let mut headers = OwnedHeaders::new_with_capacity(letter.headers.map_or(0, |h| h.count()) + 7);
        if let Some(original) = letter.headers {
            for h in original.iter() {
                headers = headers.insert(Header { key: h.key, value: h.value });
            }
        }
        let (partition, offset) = (letter.partition.to_string(), letter.offset.to_string());
        for (key, value) in [
            (HEADER_CODE, letter.code),
            (HEADER_MESSAGE, letter.message),
            (HEADER_TOPIC, self.source.as_str()),
            (HEADER_PARTITION, partition.as_str()),
            (HEADER_OFFSET, offset.as_str()),
        ] {
            headers = headers.insert(Header { key, value: Some(value) });
        }
        if let Some(v) = &self.validator {
            headers = headers.insert(Header { key: HEADER_VALIDATOR, value: Some(&v.name) });
            headers = headers.insert(Header { key: HEADER_VALIDATOR_VERSION, value: Some(&v.version) });
        }
        let topic = self.topic.clone();
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers);
        if let Some(k) = letter.key {
            record = record.key(k);
        }
        if let Some(p) = letter.payload {
            record = record.payload(p);
        }
        if let Some(ts) = letter.timestamp_ms {
            record = record.timestamp(ts);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.in_flight.push(delivery);
                    return Ok(());
                }
                Err((rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // The local queue is full: wait for what is in flight, then retry.
                    record = r;
                    self.flush().await?;
                }
                Err((source, _)) => {
                    return Err(Error::Kafka { context: format!("sending a dead letter to {}", self.topic), source });
                }
            }
        }
    }

    /// Waits until every queued dead letter is acknowledged by the broker; an error means
    /// some may not be, and the source offsets must not be committed past them.
    pub async fn flush(&mut self) -> Result<u64> {
        let n = self.in_flight.len() as u64;
        for delivery in self.in_flight.drain(..) {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => {
                    return Err(Error::Kafka {
                        context: format!("delivering a dead letter to {}", self.topic),
                        source,
                    });
                }
                Err(_cancelled) => {
                    return Err(Error::Topic {
                        topic: self.topic.clone(),
                        message: "the producer dropped a dead letter before delivering it".into(),
                    });
                }
            }
        }
        Ok(n)
    }
}
