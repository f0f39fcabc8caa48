//! The dead-letter topic: bad records with their original key, value and headers, plus why and where from.

use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use sha2::{Digest, Sha256};

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::guest::ModuleInfo;
use crate::kafka::letter_size::{
    BodyFit, HEADER_BODY_ORIGINAL_BYTES, HEADER_BODY_SHA256, HEADER_BODY_TRUNCATED, below_refused, fit_body,
    headers_size, message_max_bytes,
};
use crate::kafka::producer::{ensure_topic, producer};

/// Header names k2-ingest adds to every dead letter (the original headers are kept too,
/// renamed if they could pass for these: see [`ORIGINAL_PREFIX`]).
pub const HEADER_CODE: &str = "k2.reason.code";
pub const HEADER_MESSAGE: &str = "k2.reason.message";
pub const HEADER_TOPIC: &str = "k2.source.topic";
pub const HEADER_PARTITION: &str = "k2.source.partition";
pub const HEADER_OFFSET: &str = "k2.source.offset";
pub const HEADER_VALIDATOR: &str = "k2.validator.name";
pub const HEADER_VALIDATOR_VERSION: &str = "k2.validator.version";

/// What a record's own header whose name starts with `k2.` (any case) is renamed with in its
/// dead letter, e.g. `original.k2.reason.code`: a producer could otherwise forge the reasons a
/// reader of the dead letters trusts, which are the host's alone.
pub const ORIGINAL_PREFIX: &str = "original.";

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
    /// The largest letter sent whole: the producer's `message.max.bytes`, lowered when the
    /// broker refuses a letter under it. A bigger letter goes with its body cut.
    max_bytes: usize,
}

/// The whole body of a letter whose body is cut: its size and SHA-256 (hex).
struct WholeBody {
    bytes: u64,
    sha256: String,
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
            max_bytes: message_max_bytes(kafka),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Queues one dead letter; [`DeadLetters::flush`] waits for it.
    pub async fn send(&mut self, letter: DeadLetter<'_>) -> Result<()> {
        let headers = letter_headers(&letter, &self.source, self.validator.as_ref());
        self.produce(headers, letter.key, letter.payload, letter.timestamp_ms, None).await
    }

    /// Queues one letter with its final headers, its body cut to fit the size limit if need be
    /// (`whole` says what it was cut from, when it is already a cut body sent again).
    async fn produce(
        &mut self,
        headers: OwnedHeaders,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        timestamp_ms: Option<i64>,
        mut whole: Option<WholeBody>,
    ) -> Result<()> {
        let topic = self.topic.clone();
        let body = payload.unwrap_or_default();
        let key_len = key.map_or(0, <[u8]>::len);
        let headers_len = headers_size(headers.iter().map(|h| (h.key, h.value)));
        loop {
            let (mut sent_headers, mut sent_body) = (headers.clone(), payload);
            let fit = fit_body(self.max_bytes, key_len, headers_len, body.len());
            if let BodyFit::Truncated { keep } = fit {
                sent_body = Some(&body[..keep]);
            }
            if fit != BodyFit::Whole || whole.is_some() {
                let whole = whole.get_or_insert_with(|| WholeBody {
                    bytes: body.len() as u64,
                    sha256: hex::encode(Sha256::digest(body)),
                });
                let bytes = whole.bytes.to_string();
                for (name, value) in [
                    (HEADER_BODY_TRUNCATED, "true"),
                    (HEADER_BODY_ORIGINAL_BYTES, bytes.as_str()),
                    (HEADER_BODY_SHA256, whole.sha256.as_str()),
                ] {
                    sent_headers = sent_headers.insert(Header { key: name, value: Some(value) });
                }
            }
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(sent_headers);
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(p) = sent_body {
                record = record.payload(p);
            }
            if let Some(ts) = timestamp_ms {
                record = record.timestamp(ts);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.in_flight.push(delivery);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // The local queue is full: wait for what is in flight, then retry.
                    Box::pin(self.flush()).await?;
                }
                // The producer counts the letter bigger than estimated: cut further.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _))
                    if sent_body.is_some_and(|b| !b.is_empty()) =>
                {
                    let sent = key_len + headers_len + sent_body.map_or(0, <[u8]>::len);
                    self.max_bytes = below_refused(self.max_bytes, sent);
                }
                Err((source, _)) => {
                    return Err(Error::Kafka {
                        context: format!(
                            "sending a dead letter of {} bytes (key {key_len}, headers {headers_len}) to {}",
                            key_len + headers_len + sent_body.map_or(0, <[u8]>::len),
                            self.topic
                        ),
                        source,
                    });
                }
            }
        }
    }

    /// Sends again, with a shorter body, a letter the broker refused as too large: the
    /// dead-letter topic's limit is below the producer's.
    async fn resend_smaller(&mut self, refused: OwnedMessage) -> Result<()> {
        let body = refused.payload().unwrap_or_default();
        let (mut headers, mut whole_bytes, mut whole_sha256) = (OwnedHeaders::new(), None, None);
        if let Some(sent) = refused.headers() {
            for h in sent.iter() {
                let value = h.value.map(String::from_utf8_lossy);
                match h.key {
                    HEADER_BODY_ORIGINAL_BYTES => whole_bytes = value.and_then(|v| v.parse().ok()),
                    HEADER_BODY_SHA256 => whole_sha256 = value.map(|v| v.into_owned()),
                    HEADER_BODY_TRUNCATED => {}
                    _ => headers = headers.insert(Header { key: h.key, value: h.value }),
                }
            }
        }
        let whole = match (whole_bytes, whole_sha256) {
            (Some(bytes), Some(sha256)) => Some(WholeBody { bytes, sha256 }),
            _ => None,
        };
        let sent =
            refused.key().map_or(0, <[u8]>::len) + body.len() + headers_size(headers.iter().map(|h| (h.key, h.value)));
        self.max_bytes = below_refused(self.max_bytes, sent);
        let timestamp = refused.timestamp().to_millis();
        self.produce(headers, refused.key(), refused.payload(), timestamp, whole).await
    }

    /// Waits until every queued dead letter is acknowledged by the broker; an error means
    /// some may not be, and the source offsets must not be committed past them.
    pub async fn flush(&mut self) -> Result<u64> {
        let n = self.in_flight.len() as u64;
        // Letters sent again smaller join `in_flight` and are waited for in the next round.
        while !self.in_flight.is_empty() {
            for delivery in std::mem::take(&mut self.in_flight) {
                self.delivered(delivery).await?;
            }
        }
        Ok(n)
    }

    /// Waits for one letter's acknowledgement; one the broker refuses as too large goes again
    /// with its body cut.
    async fn delivered(&mut self, delivery: DeliveryFuture) -> Result<()> {
        match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), refused)))
                if refused.payload().is_some_and(|b| !b.is_empty()) =>
            {
                tracing::warn!(topic = %self.topic, bytes = refused.payload().map_or(0, <[u8]>::len),
                    "the broker refused a dead letter as too large; sending it again with its body cut");
                self.resend_smaller(refused).await
            }
            Ok(Err((source, _))) => {
                Err(Error::Kafka { context: format!("delivering a dead letter to {}", self.topic), source })
            }
            Err(_cancelled) => Err(Error::Topic {
                topic: self.topic.clone(),
                message: "the producer dropped a dead letter before delivering it".into(),
            }),
        }
    }
}

/// The headers of a dead letter: the record's own, then the host's reasons and origin.
fn letter_headers(letter: &DeadLetter<'_>, source: &str, validator: Option<&ModuleInfo>) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(letter.headers.map_or(0, |h| h.count()) + 7);
    if let Some(original) = letter.headers {
        for h in original.iter() {
            // Case-blind: a reader that folds header names must not be fooled either.
            if h.key.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("k2.")) {
                let key = format!("{ORIGINAL_PREFIX}{}", h.key);
                headers = headers.insert(Header { key: &key, value: h.value });
            } else {
                headers = headers.insert(Header { key: h.key, value: h.value });
            }
        }
    }
    let (partition, offset) = (letter.partition.to_string(), letter.offset.to_string());
    for (key, value) in [
        (HEADER_CODE, letter.code),
        (HEADER_MESSAGE, letter.message),
        (HEADER_TOPIC, source),
        (HEADER_PARTITION, partition.as_str()),
        (HEADER_OFFSET, offset.as_str()),
    ] {
        headers = headers.insert(Header { key, value: Some(value) });
    }
    if let Some(v) = validator {
        headers = headers.insert(Header { key: HEADER_VALIDATOR, value: Some(&v.name) });
        headers = headers.insert(Header { key: HEADER_VALIDATOR_VERSION, value: Some(&v.version) });
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_and_values(headers: &OwnedHeaders) -> Vec<(String, String)> {
        let text = |v: Option<&[u8]>| String::from_utf8_lossy(v.unwrap_or_default()).into_owned();
        headers.iter().map(|h| (h.key.to_string(), text(h.value))).collect()
    }

    #[test]
    fn a_producer_cannot_forge_the_reason_headers() {
        let forged = OwnedHeaders::new()
            .insert(Header { key: "trace-id", value: Some("t1") })
            .insert(Header { key: HEADER_CODE, value: Some("all-fine") })
            .insert(Header { key: "K2.Source.Offset", value: Some("0") })
            .insert(Header { key: HEADER_VALIDATOR, value: None::<&[u8]> });
        let letter = DeadLetter {
            partition: 2,
            offset: 41,
            timestamp_ms: None,
            key: None,
            payload: None,
            headers: Some(&forged),
            code: "price-not-positive",
            message: "price -1 is not > 0",
        };
        let module = ModuleInfo { name: "trades".into(), version: "0.1.0".into(), wit_version: "0.2.0".into() };
        let headers = names_and_values(&letter_headers(&letter, "market.trades.raw", Some(&module)));

        let host: Vec<_> = headers.iter().filter(|(k, _)| k.to_ascii_lowercase().starts_with("k2.")).collect();
        let expected = [
            (HEADER_CODE, "price-not-positive"),
            (HEADER_MESSAGE, "price -1 is not > 0"),
            (HEADER_TOPIC, "market.trades.raw"),
            (HEADER_PARTITION, "2"),
            (HEADER_OFFSET, "41"),
            (HEADER_VALIDATOR, "trades"),
            (HEADER_VALIDATOR_VERSION, "0.1.0"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(host, expected.iter().collect::<Vec<_>>(), "every k2.* header is the host's, once");
        let kept: Vec<_> = headers.iter().filter(|(k, _)| !k.to_ascii_lowercase().starts_with("k2.")).collect();
        let renamed = [
            ("trace-id", "t1"),
            ("original.k2.reason.code", "all-fine"),
            ("original.K2.Source.Offset", "0"),
            ("original.k2.validator.name", ""),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(kept, renamed.iter().collect::<Vec<_>>(), "the producer's headers are kept, renamed");
    }
}
