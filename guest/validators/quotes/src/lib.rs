//! The `quotes` validator: top-of-book checks and per-(exchange, symbol) sequence tracking.
//!
//! Input: a batch of `market.quotes.raw` records (columns `symbol`, `exchange`, `bid_price`,
//! `bid_size`, `ask_price`, `ask_size`, `sequence`).
//! Output: rejections (`crossed-book` when bid > ask, `size-negative`) and sequence events per
//! `EXCHANGE:SYMBOL`. Settings: `session_start` (default 1).

use k2_validator_sdk::{Batch, FromSettings, Reads, SequenceTracker, Settings, Validate, Verdict, export_validator};

pub struct Quotes {
    sequences: SequenceTracker,
}

impl FromSettings for Quotes {
    fn from_settings(settings: &Settings) -> Result<Self, String> {
        Ok(Self { sequences: SequenceTracker::new(settings.parse_or("session_start", 1)?) })
    }
}

impl Validate for Quotes {
    fn reads(&self) -> Reads {
        Reads::fields(&["symbol", "exchange", "bid_price", "ask_price", "bid_size", "ask_size", "sequence"])
    }

    fn validate(&mut self, batch: &Batch, verdict: &mut Verdict) -> Result<(), String> {
        let symbol = batch.utf8("symbol")?;
        let exchange = batch.utf8("exchange")?;
        let bid = batch.decimal("bid_price")?;
        let ask = batch.decimal("ask_price")?;
        let bid_size = batch.decimal("bid_size")?;
        let ask_size = batch.decimal("ask_size")?;
        let sequence = batch.int64("sequence")?;
        if bid.scale != ask.scale {
            return Err(format!("bid_price scale {} differs from ask_price scale {}", bid.scale, ask.scale));
        }
        for i in 0..batch.len() {
            if bid.unscaled[i] > ask.unscaled[i] {
                verdict.reject(
                    i,
                    "crossed-book",
                    format!("bid {} is above ask {} (unscaled, scale {})", bid.unscaled[i], ask.unscaled[i], bid.scale),
                );
            } else if bid_size.unscaled[i] < 0 || ask_size.unscaled[i] < 0 {
                verdict.reject(i, "size-negative", "a bid or ask size is below 0");
            } else if let Some(event) = self.sequences.observe_listing(i, exchange.get(i), symbol.get(i), sequence[i]) {
                verdict.event(event);
            }
        }
        Ok(())
    }
}

export_validator!(Quotes, name = "quotes", state = sequences);

#[cfg(test)]
mod tests {
    use k2_validator_sdk::testing::{BatchBuilder, Value, check};

    use super::*;

    #[test]
    fn rejects_a_crossed_book() {
        let columns = ["symbol", "exchange", "bid_price", "ask_price", "bid_size", "ask_size", "sequence"];
        let quote = |bid, ask| {
            ("AAPL", "XNAS", Value::decimal(bid), Value::decimal(ask), Value::decimal("5"), Value::decimal("5"), 1)
        };
        let batch = BatchBuilder::new(columns).row(quote("1.01", "1.00")).build();
        let verdict = check(&mut Quotes::from_settings(&Settings::default()).unwrap(), &batch);
        assert_eq!(verdict.rejected()[0].message, "bid 101 is above ask 100 (unscaled, scale 2)");
    }
}
