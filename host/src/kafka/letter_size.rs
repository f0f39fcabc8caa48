//! Whether a dead letter fits the producer's message size limit, and how much of its body does.

use crate::config::KafkaConfig;

/// librdkafka's default `message.max.bytes`: the producer refuses a record whose key, value and
/// headers together exceed it, before the broker sees it.
pub const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Bytes kept free for what the broker counts besides key, value and headers: a record batch
/// header is 61 bytes and one record's own varints and attributes at most about 30; rounded up
/// so a letter cut to fit is never refused for a few bytes of framing.
pub const RECORD_OVERHEAD: usize = 1024;

/// Per header, the name's and the value's lengths as varints (at most 5 bytes each).
const HEADER_OVERHEAD: usize = 10;

/// Headers added to a letter whose body was cut: that it was, the whole body's size, and the
/// SHA-256 (hex) of the whole body, so an operator can check the original at its source offset.
pub const HEADER_BODY_TRUNCATED: &str = "k2.body.truncated";
pub const HEADER_BODY_ORIGINAL_BYTES: &str = "k2.body.original_bytes";
pub const HEADER_BODY_SHA256: &str = "k2.body.sha256";

/// The size the truncation headers take at most: "true", 20 digits of a u64, 64 hex digits.
const TRUNCATION_HEADERS: usize = HEADER_BODY_TRUNCATED.len()
    + 4
    + HEADER_BODY_ORIGINAL_BYTES.len()
    + 20
    + HEADER_BODY_SHA256.len()
    + 64
    + 3 * HEADER_OVERHEAD;

/// The producer's `message.max.bytes` as the config sets it (`kafka.options`), else librdkafka's
/// default. A value that is not a number is left for librdkafka to refuse when the client is made.
pub fn message_max_bytes(kafka: &KafkaConfig) -> usize {
    kafka.options.get("message.max.bytes").and_then(|v| v.trim().parse().ok()).unwrap_or(LIBRDKAFKA_MESSAGE_MAX_BYTES)
}

/// The serialized size of headers given as (name, value) pairs, as the broker counts them.
pub fn headers_size<'a>(headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>) -> usize {
    headers.map(|(name, value)| name.len() + value.map_or(0, <[u8]>::len) + HEADER_OVERHEAD).sum()
}

/// How much of a letter's body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFit {
    /// The letter fits as it is.
    Whole,
    /// Only the first `keep` bytes fit, next to the truncation headers; `keep` may be 0 when the
    /// key and headers alone take the room (then the producer's refusal names the letter).
    Truncated { keep: usize },
}

/// Whether a letter of `key` + `headers` + `body` bytes fits under `max_bytes` with room for
/// [`RECORD_OVERHEAD`], and if not, how many body bytes do once the truncation headers are added.
pub fn fit_body(max_bytes: usize, key: usize, headers: usize, body: usize) -> BodyFit {
    let room = max_bytes.saturating_sub(RECORD_OVERHEAD + key + headers);
    if body <= room {
        return BodyFit::Whole;
    }
    BodyFit::Truncated { keep: room.saturating_sub(TRUNCATION_HEADERS).min(body) }
}

/// A limit below a letter of `refused` bytes that the broker turned down: its own limit (the
/// topic's `max.message.bytes`) is lower than the producer's, and not known here. Each refusal
/// takes an eighth off, so a few retries find room.
pub fn below_refused(max_bytes: usize, refused: usize) -> usize {
    max_bytes.min(refused - refused / 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_that_fits_is_sent_whole() {
        assert_eq!(fit_body(1_000_000, 10, 200, 500_000), BodyFit::Whole);
        let at_the_edge = 1_000_000 - RECORD_OVERHEAD - 10 - 200;
        assert_eq!(fit_body(1_000_000, 10, 200, at_the_edge), BodyFit::Whole);
        assert_ne!(fit_body(1_000_000, 10, 200, at_the_edge + 1), BodyFit::Whole);
    }

    #[test]
    fn a_body_at_the_brokers_limit_is_cut_to_what_fits_with_the_truncation_headers() {
        // The broker's default limit is 1,048,588 bytes; librdkafka's producer default is lower.
        let (key, headers, body) = (8, 300, 1_048_500);
        let BodyFit::Truncated { keep } = fit_body(LIBRDKAFKA_MESSAGE_MAX_BYTES, key, headers, body) else {
            panic!("a letter over the producer's limit must be cut")
        };
        let sent = key + headers + TRUNCATION_HEADERS + keep + RECORD_OVERHEAD;
        assert!(sent <= LIBRDKAFKA_MESSAGE_MAX_BYTES, "{sent}");
        assert!(keep > LIBRDKAFKA_MESSAGE_MAX_BYTES - 2 * RECORD_OVERHEAD - headers, "as much as fits is kept: {keep}");
    }

    #[test]
    fn key_and_headers_alone_over_the_limit_leave_no_body() {
        assert_eq!(fit_body(1_000, 900, 200, 50), BodyFit::Truncated { keep: 0 });
    }

    #[test]
    fn a_record_whose_key_and_headers_alone_fill_the_brokers_limit_still_fits_as_a_letter() {
        // A hostile producer: 1,040,000 bytes of headers, under the broker's 1,048,588, over
        // the producer's 1,000,000. The letter must fit, or the topic stops on every restart.
        let (key, headers, body) = (8, 1_040_000, 100);
        let BodyFit::Truncated { keep } = fit_body(LIBRDKAFKA_MESSAGE_MAX_BYTES, key, headers, body) else {
            panic!("a letter over the producer's limit must be cut")
        };
        let sent = key + headers + TRUNCATION_HEADERS + keep + RECORD_OVERHEAD;
        assert!(sent <= LIBRDKAFKA_MESSAGE_MAX_BYTES, "the letter is {sent} bytes");
    }

    #[test]
    fn the_truncation_headers_fit_their_reserve() {
        let digits = u64::MAX.to_string();
        let sha = "f".repeat(64);
        let worst = headers_size(
            [
                (HEADER_BODY_TRUNCATED, Some("true".as_bytes())),
                (HEADER_BODY_ORIGINAL_BYTES, Some(digits.as_bytes())),
                (HEADER_BODY_SHA256, Some(sha.as_bytes())),
            ]
            .into_iter(),
        );
        assert_eq!(worst, TRUNCATION_HEADERS);
    }

    #[test]
    fn the_limit_comes_from_kafka_options_else_librdkafkas_default() {
        let mut kafka: KafkaConfig = toml::from_str("bootstrap_servers = \"b\"").unwrap();
        assert_eq!(message_max_bytes(&kafka), 1_000_000);
        kafka.options.insert("message.max.bytes".into(), "2000000".into());
        assert_eq!(message_max_bytes(&kafka), 2_000_000);
    }

    #[test]
    fn a_broker_refusal_lowers_the_limit_below_the_refused_letter() {
        assert_eq!(below_refused(1_000_000, 800_000), 700_000);
        assert_eq!(below_refused(500_000, 800_000), 500_000);
        let mut limit = 1_000_000;
        for _ in 0..3 {
            limit = below_refused(limit, limit);
        }
        assert!(limit < 700_000, "{limit}");
    }
}
