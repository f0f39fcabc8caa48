//! A topic's id as the broker gives it (KIP-516): the one thing that tells a topic deleted and created again from the old one.
//!
//! The rdkafka crate exposes no topic ids, and librdkafka's consumer does not act on a
//! changed one (its metadata code leaves a recreated topic whose log grew past our position
//! to be read from there, records before it skipped). librdkafka's `DescribeTopics` admin
//! call does return it, so this module calls it through the C bindings the crate re-exports:
//! a few lines of FFI rather than a second Kafka client with its own config and security.

use std::ffi::{CStr, CString, c_char};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

/// A topic's id, in the form Kafka's own tools print (`kafka-topics --describe`): its 16
/// bytes in URL-safe base64 without padding. librdkafka's own rendering uses the standard
/// alphabet, so the text is made here from the bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicId(pub String);

impl TopicId {
    /// The id of these bits; `None` for the zero id brokers before Kafka 2.8 give.
    pub fn from_bits(most_significant: i64, least_significant: i64) -> Option<Self> {
        use base64::Engine;
        if most_significant == 0 && least_significant == 0 {
            return None;
        }
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&most_significant.to_be_bytes());
        bytes[8..].copy_from_slice(&least_significant.to_be_bytes());
        Some(Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
    }
}

impl std::fmt::Display for TopicId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of `topic`: `None` if the broker does not know the topic or gives no id (brokers
/// before Kafka 2.8 give a zero one). Blocks for up to `timeout`.
pub fn describe<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<TopicId>, KafkaError> {
    let name = CString::new(topic).map_err(|_| KafkaError::AdminOpCreation(format!("topic name {topic:?}")))?;
    let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let rk = client.native_ptr();
    // SAFETY: every object created here is destroyed by its guard before returning; the
    // strings read from the result event are copied out while the event is alive; `rk` is
    // valid for as long as `client` is borrowed.
    unsafe {
        let queue = Guard(rd::rd_kafka_queue_new(rk), rd::rd_kafka_queue_destroy);
        let op = rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS;
        let options = Guard(rd::rd_kafka_AdminOptions_new(rk, op), rd::rd_kafka_AdminOptions_destroy);
        let mut errstr = [0 as c_char; 256];
        let set =
            rd::rd_kafka_AdminOptions_set_request_timeout(options.0, timeout_ms, errstr.as_mut_ptr(), errstr.len());
        if set != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(KafkaError::AdminOpCreation(CStr::from_ptr(errstr.as_ptr()).to_string_lossy().into_owned()));
        }
        let names = [name.as_ptr()];
        let topics = Guard(
            rd::rd_kafka_TopicCollection_of_topic_names(names.as_ptr().cast_mut(), 1),
            rd::rd_kafka_TopicCollection_destroy,
        );
        rd::rd_kafka_DescribeTopics(rk, topics.0, options.0, queue.0);
        // The request times out on its own after `timeout`; the poll waits a little longer
        // so that answer, not a missing event, is what comes back.
        let event = rd::rd_kafka_queue_poll(queue.0, timeout_ms.saturating_add(1000));
        if event.is_null() {
            return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut));
        }
        let event = Guard(event, rd::rd_kafka_event_destroy);
        let err = rd::rd_kafka_event_error(event.0);
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(KafkaError::MetadataFetch(err.into()));
        }
        let result = rd::rd_kafka_event_DescribeTopics_result(event.0);
        if result.is_null() {
            return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::Fail));
        }
        let mut count = 0usize;
        let descriptions = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        for i in 0..count {
            let d = *descriptions.add(i);
            if CStr::from_ptr(rd::rd_kafka_TopicDescription_name(d)).to_bytes() != topic.as_bytes() {
                continue;
            }
            let error = rd::rd_kafka_TopicDescription_error(d);
            if !error.is_null() {
                return match rd::rd_kafka_error_code(error) {
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                    | RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_ID => Ok(None),
                    code => Err(KafkaError::MetadataFetch(code.into())),
                };
            }
            let id = rd::rd_kafka_TopicDescription_topic_id(d);
            let (high, low) =
                (rd::rd_kafka_Uuid_most_significant_bits(id), rd::rd_kafka_Uuid_least_significant_bits(id));
            return Ok(TopicId::from_bits(high, low));
        }
        Ok(None)
    }
}

/// Destroys a librdkafka object when dropped, so every early return above frees what it made.
struct Guard<T>(*mut T, unsafe extern "C" fn(*mut T));

impl<T> Drop for Guard<T> {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from the matching librdkafka constructor and is dropped once.
            unsafe { (self.1)(self.0) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_as_kafka_prints_them() {
        // Kafka's Uuid.toString of these bits (URL-safe: `-` and `_`, never `+` and `/`).
        let id = TopicId::from_bits(-0x0400_0000_0000_0001, 0x7bff_ffff_ffff_ffff).unwrap();
        assert_eq!(id.0, "-_________97_________w");
        assert_eq!(TopicId::from_bits(0, 0), None);
    }
}
