//! Whether a dead letter fits the producer's message size limit, and what of the record is cut
//! so that it does: its body first, then its own headers, then its key.

use sha2::{Digest, Sha256};

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

/// Headers added to a letter whose record headers were dropped: how many there were, and the
/// SHA-256 (hex) of them as read, encoded by [`headers_sha256`].
pub const HEADER_HEADERS_DROPPED: &str = "k2.headers.dropped";
pub const HEADER_HEADERS_SHA256: &str = "k2.headers.sha256";

/// Headers added to a letter whose key was replaced by an empty one: the key's size and its
/// SHA-256 (hex).
pub const HEADER_KEY_ORIGINAL_BYTES: &str = "k2.key.original_bytes";
pub const HEADER_KEY_SHA256: &str = "k2.key.sha256";

/// The size the truncation headers take at most: "true", 20 digits of a u64, 64 hex digits.
const TRUNCATION_HEADERS: usize = HEADER_BODY_TRUNCATED.len()
    + 4
    + HEADER_BODY_ORIGINAL_BYTES.len()
    + 20
    + HEADER_BODY_SHA256.len()
    + 64
    + 3 * HEADER_OVERHEAD;

/// The size the dropped-headers headers take at most: 20 digits of a u64, 64 hex digits.
const HEADERS_DROPPED_HEADERS: usize =
    HEADER_HEADERS_DROPPED.len() + 20 + HEADER_HEADERS_SHA256.len() + 64 + 2 * HEADER_OVERHEAD;

/// The size the dropped-key headers take at most: 20 digits of a u64, 64 hex digits.
const KEY_DROPPED_HEADERS: usize =
    HEADER_KEY_ORIGINAL_BYTES.len() + 20 + HEADER_KEY_SHA256.len() + 64 + 2 * HEADER_OVERHEAD;

/// The producer's `message.max.bytes` as the config sets it (`kafka.options`), else librdkafka's
/// default. A value that is not a number is left for librdkafka to refuse when the client is made.
pub fn message_max_bytes(kafka: &KafkaConfig) -> usize {
    kafka.options.get("message.max.bytes").and_then(|v| v.trim().parse().ok()).unwrap_or(LIBRDKAFKA_MESSAGE_MAX_BYTES)
}

/// The serialized size of headers given as (name, value) pairs, as the broker counts them.
pub fn headers_size<'a>(headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>) -> usize {
    headers.map(|(name, value)| name.len() + value.map_or(0, <[u8]>::len) + HEADER_OVERHEAD).sum()
}

/// The SHA-256 (hex) of headers given as (name, value) pairs, in order, each encoded as the
/// name's length (4 bytes, big-endian), the name's bytes, then the value's length (4 bytes,
/// big-endian) and its bytes, or `ff ff ff ff` for a null value. Fixed-width lengths keep it
/// unambiguous (`a`+`bc` and `ab`+`c` differ) and easy to recompute in any language.
pub fn headers_sha256<'a>(headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>) -> String {
    let mut digest = Sha256::new();
    for (name, value) in headers {
        // Kafka bounds a whole record far below 4 GiB, so a length always fits in 4 bytes.
        digest.update((name.len() as u32).to_be_bytes());
        digest.update(name.as_bytes());
        match value {
            Some(v) => {
                digest.update((v.len() as u32).to_be_bytes());
                digest.update(v);
            }
            None => digest.update(u32::MAX.to_be_bytes()),
        }
    }
    hex::encode(digest.finalize())
}

/// How much of a letter's body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFit {
    /// The body is sent whole.
    Whole,
    /// Only the first `keep` bytes fit, next to the truncation headers (`keep` may be 0).
    Truncated { keep: usize },
}

/// The sizes of a letter's parts as the broker counts them (headers by [`headers_size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LetterParts {
    pub key: usize,
    /// The source record's own headers (renamed where they could pass for the host's).
    pub record_headers: usize,
    /// The host's `k2.*` headers: always sent, whatever else is cut.
    pub host_headers: usize,
    pub body: usize,
}

/// What of a letter is sent: its body whole or cut, and whether the record's headers and its
/// key were dropped (each then said by its own `k2.*` headers, which the fit leaves room for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LetterFit {
    pub body: BodyFit,
    pub headers_dropped: bool,
    pub key_dropped: bool,
}

/// Even the host's own headers, with an empty key and body, exceed the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the dead letter's own k2.* headers ({host_headers} bytes) leave no room under {max_bytes} bytes")]
pub struct LetterTooLarge {
    pub host_headers: usize,
    pub max_bytes: usize,
}

/// What of a letter fits under `max_bytes` with room for [`RECORD_OVERHEAD`]. The body is cut
/// first (it is still at its source offset, and `k2.body.sha256` identifies it); only when the
/// key and the record's headers do not fit even with an empty body are the record's headers
/// dropped, and only if that is not enough the key too — a hostile record must not stop the
/// topic. Whatever is dropped frees room, and the body gets as much of it as fits. The host's
/// headers are never cut: they say why and where from, and are small.
pub fn fit_letter(max_bytes: usize, parts: LetterParts) -> Result<LetterFit, LetterTooLarge> {
    // Each step drops more; a step that would drop nothing (no headers, an empty key) is the
    // step before it, already tried.
    let steps = [(false, false), (parts.record_headers > 0, false), (parts.record_headers > 0, parts.key > 0)];
    let mut tried = None;
    for (headers_dropped, key_dropped) in steps {
        if tried == Some((headers_dropped, key_dropped)) {
            continue;
        }
        tried = Some((headers_dropped, key_dropped));
        let fixed = RECORD_OVERHEAD
            + parts.host_headers
            + if headers_dropped { HEADERS_DROPPED_HEADERS } else { parts.record_headers }
            + if key_dropped { KEY_DROPPED_HEADERS } else { parts.key };
        let Some(room) = max_bytes.checked_sub(fixed) else { continue };
        let body = if parts.body <= room {
            BodyFit::Whole
        } else if let Some(keep) = room.checked_sub(TRUNCATION_HEADERS) {
            BodyFit::Truncated { keep }
        } else {
            continue;
        };
        return Ok(LetterFit { body, headers_dropped, key_dropped });
    }
    Err(LetterTooLarge { host_headers: parts.host_headers, max_bytes })
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

    const MAX: usize = LIBRDKAFKA_MESSAGE_MAX_BYTES;
    /// About what the host's reason, source and validator headers take.
    const HOST: usize = 400;

    fn parts(key: usize, record_headers: usize, body: usize) -> LetterParts {
        LetterParts { key, record_headers, host_headers: HOST, body }
    }

    /// The bytes the broker counts for a letter sent as `fit` says, the added k2.* headers at
    /// their largest.
    fn sent(p: LetterParts, fit: LetterFit) -> usize {
        let body = match fit.body {
            BodyFit::Whole => p.body,
            BodyFit::Truncated { keep } => keep + TRUNCATION_HEADERS,
        };
        let headers = if fit.headers_dropped { HEADERS_DROPPED_HEADERS } else { p.record_headers };
        let key = if fit.key_dropped { KEY_DROPPED_HEADERS } else { p.key };
        RECORD_OVERHEAD + p.host_headers + headers + key + body
    }

    #[test]
    fn a_letter_that_fits_is_sent_whole() {
        let whole = LetterFit { body: BodyFit::Whole, headers_dropped: false, key_dropped: false };
        assert_eq!(fit_letter(MAX, parts(10, 200, 500_000)), Ok(whole));
        let at_the_edge = MAX - RECORD_OVERHEAD - HOST - 10 - 200;
        assert_eq!(fit_letter(MAX, parts(10, 200, at_the_edge)), Ok(whole));
        assert_ne!(fit_letter(MAX, parts(10, 200, at_the_edge + 1)), Ok(whole));
    }

    #[test]
    fn a_body_at_the_brokers_limit_is_cut_to_what_fits_with_the_truncation_headers() {
        // The broker's default limit is 1,048,588 bytes; librdkafka's producer default is lower.
        let p = parts(8, 300, 1_048_500);
        let fit = fit_letter(MAX, p).unwrap();
        let BodyFit::Truncated { keep } = fit.body else { panic!("a letter over the producer's limit must be cut") };
        assert!(!fit.headers_dropped && !fit.key_dropped, "{fit:?}");
        assert!(sent(p, fit) <= MAX, "{}", sent(p, fit));
        assert!(keep > MAX - 2 * RECORD_OVERHEAD - 300 - HOST, "as much as fits is kept: {keep}");
    }

    #[test]
    fn key_and_headers_that_fit_only_with_an_empty_body_keep_them_and_send_no_body() {
        let p = parts(8, MAX - RECORD_OVERHEAD - HOST - 8 - TRUNCATION_HEADERS, 500);
        let fit = fit_letter(MAX, p).unwrap();
        assert_eq!(fit, LetterFit { body: BodyFit::Truncated { keep: 0 }, headers_dropped: false, key_dropped: false });
        assert_eq!(sent(p, fit), MAX);
    }

    #[test]
    fn a_record_whose_key_and_headers_alone_fill_the_brokers_limit_still_fits_as_a_letter() {
        // A hostile producer: 1,040,000 bytes of headers, under the broker's 1,048,588, over
        // the producer's 1,000,000. The letter must fit, or the topic stops on every restart.
        let p = parts(8, 1_040_000, 100);
        let fit = fit_letter(MAX, p).unwrap();
        // Once the headers are gone the small body fits again, whole.
        assert_eq!(fit, LetterFit { body: BodyFit::Whole, headers_dropped: true, key_dropped: false });
        assert!(sent(p, fit) <= MAX, "the letter is {} bytes", sent(p, fit));
    }

    #[test]
    fn dropped_headers_free_room_for_as_much_body_as_fits() {
        // Headers that fit only with no body at all (999,000 bytes) leave no room for one.
        let p = parts(8, 999_000, 1_000_000);
        let fit = fit_letter(MAX, p).unwrap();
        let BodyFit::Truncated { keep } = fit.body else { panic!("{fit:?}") };
        assert!(fit.headers_dropped && !fit.key_dropped, "{fit:?}");
        assert_eq!(sent(p, fit), MAX, "the body takes all the room left: {keep}");
    }

    #[test]
    fn a_key_too_large_even_without_the_headers_is_dropped_too() {
        for p in [parts(1_040_000, 0, 100), parts(999_000, 340_000, 5_000), parts(1_040_000, 20, 0)] {
            let fit = fit_letter(MAX, p).unwrap();
            assert!(fit.key_dropped, "{p:?}: {fit:?}");
            assert_eq!(fit.headers_dropped, p.record_headers > 0, "headers are dropped only if there are any: {p:?}");
            assert_eq!(fit.body, BodyFit::Whole, "{p:?}");
            assert!(sent(p, fit) <= MAX, "{p:?}: {}", sent(p, fit));
        }
    }

    #[test]
    fn a_key_that_fits_once_the_headers_are_dropped_is_kept() {
        let fit = fit_letter(MAX, parts(500_000, 600_000, 0)).unwrap();
        assert!(fit.headers_dropped && !fit.key_dropped, "{fit:?}");
    }

    #[test]
    fn host_headers_alone_over_the_limit_are_an_error_naming_them() {
        let p = LetterParts { key: 10, record_headers: 10, host_headers: 2_000, body: 10 };
        let err = fit_letter(1_500, p).unwrap_err();
        assert_eq!(err, LetterTooLarge { host_headers: 2_000, max_bytes: 1_500 });
        assert_eq!(err.to_string(), "the dead letter's own k2.* headers (2000 bytes) leave no room under 1500 bytes");
    }

    #[test]
    fn the_headers_digest_is_over_names_and_values_with_fixed_width_lengths() {
        // Expected values from Python: hashlib.sha256 over struct.pack('>I', len) + bytes.
        let headers = [("trace-id", Some("t1".as_bytes())), ("k2.reason.code", None)];
        assert_eq!(
            headers_sha256(headers.into_iter()),
            "d05fdc931245f2176fd25dd91ed6b1ec9abb68ca75eac2725f2ba7533d5c4c13"
        );
        assert_eq!(headers_sha256(std::iter::empty()), hex::encode(Sha256::digest(b"")));
        let split = |a: &'static str, b: &'static str| headers_sha256([(a, Some(b.as_bytes()))].into_iter());
        assert_ne!(split("ab", "c"), split("a", "bc"), "where a name ends is part of the digest");
        assert_ne!(
            headers_sha256([("h", None)].into_iter()),
            headers_sha256([("h", Some(&b""[..]))].into_iter()),
            "a null value is not an empty one"
        );
    }

    #[test]
    fn the_added_headers_fit_their_reserves() {
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
        let count = usize::MAX.to_string();
        let worst = headers_size(
            [(HEADER_HEADERS_DROPPED, Some(count.as_bytes())), (HEADER_HEADERS_SHA256, Some(sha.as_bytes()))]
                .into_iter(),
        );
        assert_eq!(worst, HEADERS_DROPPED_HEADERS);
        let worst = headers_size(
            [(HEADER_KEY_ORIGINAL_BYTES, Some(digits.as_bytes())), (HEADER_KEY_SHA256, Some(sha.as_bytes()))]
                .into_iter(),
        );
        assert_eq!(worst, KEY_DROPPED_HEADERS);
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
