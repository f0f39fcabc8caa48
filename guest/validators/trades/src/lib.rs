//! The `trades` validator: record checks and per-(exchange, symbol) sequence tracking.
//!
//! Input: a batch of `market.trades.raw` records (columns `symbol`, `exchange`,
//! `exchange_ts`, `price`, `size`, `side`, `sequence`).
//! Output: rejections (`price-not-positive`, `size-not-positive`, `side-unknown`,
//! `symbol-format`, `timestamp-in-future`) and sequence events per `EXCHANGE:SYMBOL`.
//! Settings: `session_start` (default 1), `future_tolerance_ms` (default 5000).

use k2_validator_sdk::listing::symbol_is_well_formed;
use k2_validator_sdk::{Batch, FromSettings, Reads, SequenceTracker, Settings, Validate, Verdict, export_validator};

pub struct Trades {
    sequences: SequenceTracker,
    future_tolerance_micros: i64,
}

impl FromSettings for Trades {
    fn from_settings(settings: &Settings) -> Result<Self, String> {
        let tolerance_ms: i64 = settings.parse_or("future_tolerance_ms", 5_000)?;
        if tolerance_ms < 0 {
            return Err(format!("setting `future_tolerance_ms`: must be >= 0, got {tolerance_ms}"));
        }
        Ok(Self {
            sequences: SequenceTracker::new(settings.parse_or("session_start", 1)?),
            future_tolerance_micros: tolerance_ms.saturating_mul(1_000),
        })
    }
}

impl Validate for Trades {
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
                verdict.event(event);
            }
        }
        Ok(())
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

export_validator!(Trades, name = "trades", state = sequences);

#[cfg(test)]
mod tests {
    use k2_validator_sdk::EventKind;
    use k2_validator_sdk::testing::{BatchBuilder, Value, check, restart};

    use super::*;

    #[test]
    fn shows_decimals() {
        assert_eq!(show(-150, 2), "-1.50");
        assert_eq!(show(12345678901, 8), "123.45678901");
        assert_eq!(show(7, 0), "7");
    }

    #[test]
    fn rejects_a_bad_price_and_reports_a_gap_across_a_restart() {
        let columns = ["symbol", "exchange", "exchange_ts", "price", "size", "side", "sequence"];
        let trade = |price, seq| ("AAPL", "XNAS", 0, Value::decimal(price), Value::decimal("1.00"), "BUY", seq);
        let mut trades = Trades::from_settings(&Settings::default()).unwrap();
        let verdict =
            check(&mut trades, &BatchBuilder::new(columns).rows([trade("1.50", 1), trade("0.00", 2)]).build());
        assert_eq!(verdict.rejected()[0].message, "price 0.00 is not > 0");
        let verdict = check(&mut restart(&trades), &BatchBuilder::new(columns).row(trade("1.50", 3)).build());
        assert_eq!((verdict.events()[0].kind, verdict.events()[0].missing), (EventKind::Gap, 1));
    }

    #[test]
    fn refuses_a_negative_tolerance() {
        let settings = Settings::new(vec![("future_tolerance_ms".into(), "-1".into())]);
        let err = Trades::from_settings(&settings).err().unwrap();
        assert_eq!(err, "setting `future_tolerance_ms`: must be >= 0, got -1");
    }
}
