//! The dead-letter topic: bad records with their original key, value and headers, plus why and where from.
//! A letter too large for the size limit is cut: body, then the record's headers, then its key.

use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use sha2::{Digest, Sha256};

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::kafka::letter_size::{
    BodyFit, HEADER_BODY_ORIGINAL_BYTES, HEADER_BODY_SHA256, HEADER_BODY_TRUNCATED, HEADER_HEADERS_DROPPED,
    HEADER_HEADERS_SHA256, HEADER_KEY_ORIGINAL_BYTES, HEADER_KEY_SHA256, LetterParts, below_refused, fit_letter,
    headers_sha256, headers_size, message_max_bytes,
};
use crate::kafka::producer::{ensure_topic, producer};
use crate::sandbox::ModuleInfo;

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
    /// Each with the record's headers as read, measured: a letter the broker refuses may have
    /// to drop them when sent again, and then it holds them only renamed.
    in_flight: Vec<(DeliveryFuture, Fingerprint)>,
    /// The largest letter sent whole: the producer's `message.max.bytes`, lowered when the
    /// broker refuses a letter under it. A bigger letter goes with its body cut.
    max_bytes: usize,
}

/// What something cut from a letter was: its size (bytes, or a count of headers) and its
/// SHA-256 (hex).
#[derive(Clone)]
struct Fingerprint {
    size: u64,
    sha256: String,
}

/// A letter before anything is cut to fit.
struct Outgoing<'a> {
    /// The record's own headers, renamed where they could pass for the host's.
    record_headers: OwnedHeaders,
    /// The host's `k2.*` headers, sent whatever else is cut.
    host_headers: OwnedHeaders,
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
    timestamp_ms: Option<i64>,
    /// The whole body, when `payload` is already a cut one sent again.
    whole_body: Option<Fingerprint>,
    /// The record's headers as read, for `k2.headers.*` if they are dropped.
    headers_as_read: Fingerprint,
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
        let LetterHeaders { record, host } = letter_headers(&letter, &self.source, self.validator.as_ref());
        let as_read = letter.headers.map(|h| (h.count(), headers_sha256(h.iter().map(|h| (h.key, h.value)))));
        let (count, sha256) = as_read.unwrap_or_else(|| (0, headers_sha256(std::iter::empty())));
        self.produce(Outgoing {
            record_headers: record,
            host_headers: host,
            key: letter.key,
            payload: letter.payload,
            timestamp_ms: letter.timestamp_ms,
            whole_body: None,
            headers_as_read: Fingerprint { size: count as u64, sha256 },
        })
        .await
    }

    /// Queues one letter, cut to fit the size limit if need be: see [`fit_letter`].
    async fn produce(&mut self, letter: Outgoing<'_>) -> Result<()> {
        let Outgoing { record_headers, host_headers, key, payload, timestamp_ms, mut whole_body, headers_as_read } =
            letter;
        let topic = self.topic.clone();
        let body = payload.unwrap_or_default();
        let key_len = key.map_or(0, <[u8]>::len);
        let record_len = headers_size(record_headers.iter().map(|h| (h.key, h.value)));
        let host_len = headers_size(host_headers.iter().map(|h| (h.key, h.value)))
            // A body cut before is said so whatever the fit now: room for its k2.body.* headers.
            + whole_body.as_ref().map_or(0, body_headers_size);
        loop {
            let parts =
                LetterParts { key: key_len, record_headers: record_len, host_headers: host_len, body: body.len() };
            let fit = fit_letter(self.max_bytes, parts)
                .map_err(|e| Error::Topic { topic: self.topic.clone(), message: e.to_string() })?;
            let mut sent_headers = if fit.headers_dropped { OwnedHeaders::new() } else { record_headers.clone() };
            for h in host_headers.iter() {
                sent_headers = sent_headers.insert(Header { key: h.key, value: h.value });
            }
            let sent_body = match fit.body {
                BodyFit::Whole => payload,
                BodyFit::Truncated { keep } => Some(&body[..keep]),
            };
            if fit.body != BodyFit::Whole || whole_body.is_some() {
                let whole = whole_body.get_or_insert_with(|| fingerprint(body.len(), body));
                let bytes = whole.size.to_string();
                for (name, value) in [
                    (HEADER_BODY_TRUNCATED, "true"),
                    (HEADER_BODY_ORIGINAL_BYTES, bytes.as_str()),
                    (HEADER_BODY_SHA256, whole.sha256.as_str()),
                ] {
                    sent_headers = sent_headers.insert(Header { key: name, value: Some(value) });
                }
            }
            if fit.headers_dropped {
                let count = headers_as_read.size.to_string();
                sent_headers = sent_headers
                    .insert(Header { key: HEADER_HEADERS_DROPPED, value: Some(&count) })
                    .insert(Header { key: HEADER_HEADERS_SHA256, value: Some(&headers_as_read.sha256) });
            }
            let mut sent_key = key;
            if fit.key_dropped {
                let whole = fingerprint(key_len, key.unwrap_or_default());
                let bytes = whole.size.to_string();
                sent_headers = sent_headers
                    .insert(Header { key: HEADER_KEY_ORIGINAL_BYTES, value: Some(&bytes) })
                    .insert(Header { key: HEADER_KEY_SHA256, value: Some(&whole.sha256) });
                sent_key = Some(&[]);
            }
            // Something is left to cut if the producer counts the letter bigger than estimated.
            let cuttable = sent_body.is_some_and(|b| !b.is_empty())
                || (record_len > 0 && !fit.headers_dropped)
                || (key_len > 0 && !fit.key_dropped);
            let sent_len = sent_key.map_or(0, <[u8]>::len)
                + headers_size(sent_headers.iter().map(|h| (h.key, h.value)))
                + sent_body.map_or(0, <[u8]>::len);
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(sent_headers);
            if let Some(k) = sent_key {
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
                    self.in_flight.push((delivery, headers_as_read));
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // The local queue is full: wait for what is in flight, then retry.
                    Box::pin(self.flush()).await?;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) if cuttable => {
                    self.max_bytes = below_refused(self.max_bytes, sent_len);
                }
                Err((source, _)) => {
                    return Err(Error::Kafka {
                        context: format!(
                            "sending a dead letter of {sent_len} bytes (key {key_len}, record headers {record_len}, \
                             host headers {host_len}) to {}",
                            self.topic
                        ),
                        source,
                    });
                }
            }
        }
    }

    /// Sends again, cut further, a letter the broker refused as too large: the dead-letter
    /// topic's limit is below the producer's.
    async fn resend_smaller(&mut self, refused: OwnedMessage, headers_as_read: Fingerprint) -> Result<()> {
        let (mut record_headers, mut host_headers) = (OwnedHeaders::new(), OwnedHeaders::new());
        let (mut whole_bytes, mut whole_sha256) = (None, None);
        if let Some(sent) = refused.headers() {
            for h in sent.iter() {
                let value = h.value.map(String::from_utf8_lossy);
                match h.key {
                    HEADER_BODY_ORIGINAL_BYTES => whole_bytes = value.and_then(|v| v.parse().ok()),
                    HEADER_BODY_SHA256 => whole_sha256 = value.map(|v| v.into_owned()),
                    HEADER_BODY_TRUNCATED => {}
                    // Only the host's headers start with `k2.` in a letter (the record's are
                    // renamed), and those of a cut made before stay true: keep them all.
                    _ if is_host_header(h.key) => {
                        host_headers = host_headers.insert(Header { key: h.key, value: h.value })
                    }
                    _ => record_headers = record_headers.insert(Header { key: h.key, value: h.value }),
                }
            }
        }
        let whole_body = match (whole_bytes, whole_sha256) {
            (Some(size), Some(sha256)) => Some(Fingerprint { size, sha256 }),
            _ => None,
        };
        let sent = refused.key().map_or(0, <[u8]>::len)
            + refused.payload().map_or(0, <[u8]>::len)
            + refused.headers().map_or(0, |h| headers_size(h.iter().map(|h| (h.key, h.value))));
        self.max_bytes = below_refused(self.max_bytes, sent);
        self.produce(Outgoing {
            record_headers,
            host_headers,
            key: refused.key(),
            payload: refused.payload(),
            timestamp_ms: refused.timestamp().to_millis(),
            whole_body,
            headers_as_read,
        })
        .await
    }

    /// Waits until every queued dead letter is acknowledged by the broker; an error means
    /// some may not be, and the source offsets must not be committed past them.
    pub async fn flush(&mut self) -> Result<u64> {
        let n = self.in_flight.len() as u64;
        // Letters sent again smaller join `in_flight` and are waited for in the next round.
        while !self.in_flight.is_empty() {
            for (delivery, headers_as_read) in std::mem::take(&mut self.in_flight) {
                self.delivered(delivery, headers_as_read).await?;
            }
        }
        Ok(n)
    }

    /// Waits for one letter's acknowledgement; one the broker refuses as too large goes again
    /// cut further, if anything is left to cut.
    async fn delivered(&mut self, delivery: DeliveryFuture, headers_as_read: Fingerprint) -> Result<()> {
        match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), refused)))
                if can_be_cut(&refused) =>
            {
                tracing::warn!(topic = %self.topic, bytes = refused.payload().map_or(0, <[u8]>::len),
                    "the broker refused a dead letter as too large; sending it again cut further");
                self.resend_smaller(refused, headers_as_read).await
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

/// The size and SHA-256 of `bytes`, which are `size` long.
fn fingerprint(size: usize, bytes: &[u8]) -> Fingerprint {
    Fingerprint { size: size as u64, sha256: hex::encode(Sha256::digest(bytes)) }
}

/// The size of the `k2.body.*` headers that say a body was cut from `whole`.
fn body_headers_size(whole: &Fingerprint) -> usize {
    let bytes = whole.size.to_string();
    headers_size(
        [
            (HEADER_BODY_TRUNCATED, Some("true".as_bytes())),
            (HEADER_BODY_ORIGINAL_BYTES, Some(bytes.as_bytes())),
            (HEADER_BODY_SHA256, Some(whole.sha256.as_bytes())),
        ]
        .into_iter(),
    )
}

/// Whether a header's name is the host's: `k2.` in any case, which a record's own header is
/// renamed away from (see [`ORIGINAL_PREFIX`]).
fn is_host_header(name: &str) -> bool {
    // Case-blind: a reader that folds header names must not be fooled either.
    name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("k2."))
}

/// Whether a refused letter still has a body, record headers or a key to cut.
fn can_be_cut(refused: &OwnedMessage) -> bool {
    refused.payload().is_some_and(|b| !b.is_empty())
        || refused.key().is_some_and(|k| !k.is_empty())
        || refused.headers().is_some_and(|h| h.iter().any(|h| !is_host_header(h.key)))
}

/// A letter's headers, kept apart because only the record's may be dropped.
struct LetterHeaders {
    /// The record's own, renamed where they could pass for the host's.
    record: OwnedHeaders,
    /// The host's reasons and origin.
    host: OwnedHeaders,
}

/// The headers of a dead letter: the record's own, and the host's reasons and origin.
fn letter_headers(letter: &DeadLetter<'_>, source: &str, validator: Option<&ModuleInfo>) -> LetterHeaders {
    let mut record = OwnedHeaders::new_with_capacity(letter.headers.map_or(0, |h| h.count()));
    if let Some(original) = letter.headers {
        for h in original.iter() {
            if is_host_header(h.key) {
                let key = format!("{ORIGINAL_PREFIX}{}", h.key);
                record = record.insert(Header { key: &key, value: h.value });
            } else {
                record = record.insert(Header { key: h.key, value: h.value });
            }
        }
    }
    let mut host = OwnedHeaders::new_with_capacity(7);
    let (partition, offset) = (letter.partition.to_string(), letter.offset.to_string());
    for (key, value) in [
        (HEADER_CODE, letter.code),
        (HEADER_MESSAGE, letter.message),
        (HEADER_TOPIC, source),
        (HEADER_PARTITION, partition.as_str()),
        (HEADER_OFFSET, offset.as_str()),
    ] {
        host = host.insert(Header { key, value: Some(value) });
    }
    if let Some(v) = validator {
        host = host.insert(Header { key: HEADER_VALIDATOR, value: Some(&v.name) });
        host = host.insert(Header { key: HEADER_VALIDATOR_VERSION, value: Some(&v.version) });
    }
    LetterHeaders { record, host }
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
        let LetterHeaders { record, host } = letter_headers(&letter, "market.trades.raw", Some(&module));
        let headers: Vec<_> = names_and_values(&record).into_iter().chain(names_and_values(&host)).collect();

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
