//! The `quotes` validator: top-of-book checks and per-(exchange, symbol) sequence tracking.
//!
//! Input: a batch of `market.quotes.raw` records (columns `symbol`, `exchange`, `bid_price`,
//! `bid_size`, `ask_price`, `ask_size`, `sequence`).
//! Output: rejections (`crossed-book` when bid > ask, `size-negative`) and sequence events per
//! `EXCHANGE:SYMBOL`. Settings: `session_start` (default 1).

use k2_validator_sdk::{Batch, Reads, SequenceTracker, Settings, Validate, Verdict, export_validator};

pub struct Quotes {
    sequences: SequenceTracker,
}

impl Validate for Quotes {
    const NAME: &'static str = "quotes";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn new(settings: &Settings) -> Result<Self, String> {
        settings.only(&["session_start"])?;
        Ok(Self { sequences: SequenceTracker::new(settings.parse_or("session_start", 1)?) })
    }

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
                verdict.reject(i, "size-negative", "a bid or ask size is below 0".to_string());
            } else if let Some(event) = self.sequences.observe_listing(i, exchange.get(i), symbol.get(i), sequence[i]) {
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

export_validator!(Quotes);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_setting() {
        let err = Quotes::new(&Settings::new(vec![("tolerance".into(), "1".into())])).err().unwrap();
        assert!(err.contains("unknown setting `tolerance`"), "{err}");
    }
}
