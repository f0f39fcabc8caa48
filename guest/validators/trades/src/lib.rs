//! The `trades` validator: record checks and per-(exchange, symbol) sequence tracking.
//!
//! Input: a batch of `market.trades.raw` records (columns `symbol`, `exchange`,
//! `exchange_ts`, `price`, `size`, `side`, `sequence`).
//! Output: rejections (`price-not-positive`, `size-not-positive`, `side-unknown`,
//! `symbol-format`, `timestamp-in-future`) and sequence events per `EXCHANGE:SYMBOL`.
//! Settings: `session_start` (default 1), `future_tolerance_ms` (default 5000).

use k2_validator_sdk::words::{le4, le8};
use k2_validator_sdk::{Batch, Reads, SequenceTracker, Settings, Validate, Verdict, export_validator};

pub struct Trades {
    sequences: SequenceTracker,
    future_tolerance_micros: i64,
}

/// Symbols are 1 to 16 characters of upper-case letters, digits, `.`, `/` and `-`.
///
/// Checked eight bytes at a time without a loop: in a WebAssembly guest every loop iteration
/// pays the host's deadline check, which cost more than the byte test itself.
pub fn symbol_is_well_formed(symbol: &str) -> bool {
    symbol_bytes_are_well_formed(symbol.as_bytes())
}

/// [`symbol_is_well_formed`] on the bytes, so a test can try every byte value.
#[inline(always)]
fn symbol_bytes_are_well_formed(b: &[u8]) -> bool {
    let n = b.len();
    // Overlapping loads cover every byte; a repeated byte changes nothing in an "every byte" test.
    let (lo, hi) = match n {
        1..=3 => {
            let (first, mid, last) = (b[0] as u64, b[n / 2] as u64, b[n - 1] as u64);
            ((first * 0x0101_0101_0100_0000) | (last << 16) | (mid << 8) | first, 0)
        }
        4..=8 => (le4(b, 0) | le4(b, n - 4) << 32, 0),
        9..=16 => (le8(b, 0), le8(b, n - 8)),
        _ => return false,
    };
    all_symbol_bytes(lo) && (n <= 8 || all_symbol_bytes(hi))
}

const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether every byte of `w` is in `-./0-9` (0x2d-0x39) or `A-Z` (0x41-0x5a).
#[inline(always)]
fn all_symbol_bytes(w: u64) -> bool {
    // For bytes below 0x80, byte + (0x80 - lo) has its high bit set exactly when byte >= lo, and
    // byte + (0x7f - hi) exactly when byte > hi; no sum carries into the next byte.
    let in_range = |lo: u8, hi: u8| {
        let at_least = w.wrapping_add(0x0101_0101_0101_0101 * (0x80 - lo) as u64);
        let above = w.wrapping_add(0x0101_0101_0101_0101 * (0x7f - hi) as u64);
        at_least & !above & HIGHS
    };
    w & HIGHS == 0 && in_range(0x2d, 0x39) | in_range(0x41, 0x5a) == HIGHS
}

impl Validate for Trades {
    const NAME: &'static str = "trades";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn new(settings: &Settings) -> Result<Self, String> {
        settings.only(&["session_start", "future_tolerance_ms"])?;
        let tolerance_ms: i64 = settings.parse_or("future_tolerance_ms", 5_000)?;
        if tolerance_ms < 0 {
            return Err(format!("setting `future_tolerance_ms`: must be >= 0, got {tolerance_ms}"));
        }
        Ok(Self {
            sequences: SequenceTracker::new(settings.parse_or("session_start", 1)?),
            future_tolerance_micros: tolerance_ms.saturating_mul(1_000),
        })
    }

    fn reads(&self) -> Reads {
        Reads::fields(&["symbol", "exchange", "exchange_ts", "price", "size", "side", "sequence"])
    }

    fn validate(&mut self, batch: &Batch, verdict: &mut Verdict) -> Result<(), String> {
        let symbol = batch.utf8("symbol")?;
        let exchange = batch.utf8("exchange")?;
        let ts = batch.int64("exchange_ts")?;
        let price = batch.decimal("price")?;
        let size = batch.decimal("size")?;
        let side = batch.utf8("side")?;
        let sequence = batch.int64("sequence")?;
        let latest_allowed = batch.now_micros.saturating_add(self.future_tolerance_micros);

        for i in 0..batch.len() {
            let sym = symbol.get(i);
            if price.unscaled[i] <= 0 {
                verdict.reject(
                    i,
                    "price-not-positive",
                    format!("price {} is not > 0", show(price.unscaled[i], price.scale)),
                );
            } else if size.unscaled[i] <= 0 {
                verdict.reject(
                    i,
                    "size-not-positive",
                    format!("size {} is not > 0", show(size.unscaled[i], size.scale)),
                );
            } else if !matches!(side.get(i), "BUY" | "SELL") {
                verdict.reject(i, "side-unknown", format!("side `{}` is neither BUY nor SELL", side.get(i)));
            } else if !symbol_is_well_formed(sym) {
                verdict.reject(i, "symbol-format", format!("symbol `{sym}` is not 1-16 of A-Z 0-9 . / -"));
            } else if ts[i] > latest_allowed {
                verdict.reject(i, "timestamp-in-future", format!("exchange_ts {} us is beyond now + tolerance", ts[i]));
            // Only accepted records advance the sequence: a rejected record is not data.
            } else if let Some(event) = self.sequences.observe_listing(i, exchange.get(i), sym, sequence[i]) {
                verdict.events.push(event);
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Vec<u8> {
        self.sequences.snapshot()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        self.sequences.restore(state)
    }
}

/// Renders an unscaled decimal for messages, e.g. (-150, 2) -> "-1.50".
fn show(unscaled: i64, scale: u8) -> String {
    let div = 10i128.pow(scale as u32);
    let v = unscaled as i128;
    let sign = if v < 0 { "-" } else { "" };
    if scale == 0 {
        return v.to_string();
    }
    format!("{sign}{}.{:0width$}", v.abs() / div, v.abs() % div, width = scale as usize)
}

export_validator!(Trades);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_format() {
        assert!(symbol_is_well_formed("AAPL"));
        assert!(symbol_is_well_formed("BRK.B"));
        assert!(symbol_is_well_formed("BTC/USD"));
        assert!(!symbol_is_well_formed(""));
        assert!(!symbol_is_well_formed("aapl"));
        assert!(!symbol_is_well_formed("TOOLONGSYMBOLNAME1"));
    }

    #[test]
    fn symbol_format_agrees_with_the_byte_by_byte_rule_for_every_byte_at_every_position() {
        let rule = |b: &[u8]| {
            (1..=16).contains(&b.len())
                && b.iter().all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || b"./-".contains(&c))
        };
        for len in 1..=17 {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut b = vec![b'Q'; len];
                    b[at] = c;
                    assert_eq!(symbol_bytes_are_well_formed(&b), rule(&b), "length {len}, byte {c:#x} at {at}");
                }
            }
        }
        let multi = "\u{e9}A";
        assert_eq!(symbol_is_well_formed(multi), rule(multi.as_bytes()));
        assert!(!symbol_is_well_formed(""));
    }

    #[test]
    fn shows_decimals() {
        assert_eq!(show(-150, 2), "-1.50");
        assert_eq!(show(12345678901, 8), "123.45678901");
        assert_eq!(show(7, 0), "7");
    }

    #[test]
    fn rejects_unknown_setting() {
        let err = Trades::new(&Settings::new(vec![("tolerance".into(), "1".into())])).err().unwrap();
        assert!(err.contains("unknown setting `tolerance`"), "{err}");
    }
}
