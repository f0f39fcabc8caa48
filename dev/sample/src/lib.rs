//! Seeded generator of market data with injected anomalies, for the demo, the tests and the benchmark.

use std::collections::BTreeMap;

use apache_avro::Schema as AvroSchema;
use apache_avro::types::Value;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;

/// Exchanges the generated symbols trade on (each symbol on one, so the key is the symbol).
const EXCHANGES: [&str; 3] = ["XNAS", "XNYS", "ARCX"];
/// Decimal scale of prices and sizes in the market-data schemas.
const SCALE: i64 = 100_000_000;

/// What kind of records to generate; follows the Avro record name of the topic's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    Trades,
    Quotes,
}

impl SampleKind {
    pub fn of_schema(schema: &AvroSchema) -> Option<Self> {
        match schema {
            AvroSchema::Record(r) if r.name.name == "Trade" => Some(SampleKind::Trades),
            AvroSchema::Record(r) if r.name.name == "Quote" => Some(SampleKind::Quotes),
            _ => None,
        }
    }
}

/// How much to generate and what to inject.
#[derive(Debug, Clone)]
pub struct SamplePlan {
    pub count: usize,
    pub symbols: usize,
    pub seed: u64,
    pub gaps: usize,
    pub duplicates: usize,
    pub malformed: usize,
    pub invalid: usize,
    pub out_of_order: usize,
    pub resets: usize,
    /// Exchange timestamp of the first record, microseconds since the epoch.
    pub start_micros: i64,
}

/// What a message is, for the manifest and the injected positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleMark {
    /// An ordinary record.
    Ok,
    /// A record whose sequence skips one number (one gap, missing 1).
    Gap,
    /// A copy of the symbol's previous record (same sequence, same trade id).
    Duplicate,
    /// A body cut short: it does not decode.
    Malformed,
    /// A record the validator must reject (price not positive, or bid above ask); it takes
    /// no sequence number, so it causes no sequence event.
    Invalid,
    /// A late record: the sequence number before the symbol's latest (which stays latest).
    OutOfOrder,
    /// The symbol's sequence starting again at 1, as in a new session.
    Reset,
}

/// One generated message.
pub struct SampleMessage {
    pub key: String,
    /// The Avro datum (not framed).
    pub body: Vec<u8>,
    pub mark: SampleMark,
    /// The record as JSON for the manifest (`null` for a malformed body).
    pub record: serde_json::Value,
}

/// Injected positions (message indices, 0-based in production order).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Injected {
    pub gaps: Vec<usize>,
    pub duplicates: Vec<usize>,
    pub malformed: Vec<usize>,
    pub invalid: Vec<usize>,
    pub out_of_order: Vec<usize>,
    pub resets: Vec<usize>,
}

struct SymbolState {
    symbol: String,
    exchange: &'static str,
    seq: i64,
    price: i64,
    last: Option<(Vec<u8>, serde_json::Value)>,
}

/// A deterministic stream of messages for a plan: the same plan and seed give the same
/// messages (timestamps included, since they derive from `start_micros`).
pub struct SampleGenerator<'a> {
    plan: SamplePlan,
    kind: SampleKind,
    schema: &'a AvroSchema,
    rng: ChaCha8Rng,
    symbols: Vec<SymbolState>,
    marks: BTreeMap<usize, SampleMark>,
    next: usize,
}

impl<'a> SampleGenerator<'a> {
    /// Plans the injections; each symbol's first record is ordinary so every injected
    /// anomaly has a baseline to be measured against.
    pub fn new(plan: SamplePlan, kind: SampleKind, schema: &'a AvroSchema) -> Result<Self, String> {
        if plan.symbols == 0 || plan.symbols > 100_000 {
            return Err(format!("--symbols must be 1..=100000, got {}", plan.symbols));
        }
        let injected = plan.gaps + plan.duplicates + plan.malformed + plan.invalid + plan.out_of_order + plan.resets;
        let eligible = plan.count.saturating_sub(plan.symbols);
        if injected > eligible {
            return Err(format!(
                "cannot inject {injected} anomalies into {} messages over {} symbols: at most {eligible} (count minus symbols)",
                plan.count, plan.symbols
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
        let picks = sample(&mut rng, eligible, injected).into_vec();
        let mut marks = BTreeMap::new();
        // Out-of-order records and resets need a symbol a few numbers into its sequence:
        // they go to picks past three records per symbol.
        let late_from = 2 * plan.symbols;
        let (late, early): (Vec<usize>, Vec<usize>) = picks.into_iter().partition(|&p| p >= late_from);
        let needs_late = plan.out_of_order + plan.resets;
        if late.len() < needs_late {
            return Err(format!(
                "cannot place {needs_late} out-of-order records and resets: they need messages past the first {} \
                 (3 per symbol); produce more messages or fewer anomalies",
                late_from + plan.symbols
            ));
        }
        let mut late = late.into_iter();
        for (n, mark) in [(plan.out_of_order, SampleMark::OutOfOrder), (plan.resets, SampleMark::Reset)] {
            for pos in late.by_ref().take(n) {
                marks.insert(plan.symbols + pos, mark);
            }
        }
        let kinds = [
            (plan.gaps, SampleMark::Gap),
            (plan.duplicates, SampleMark::Duplicate),
            (plan.malformed, SampleMark::Malformed),
            (plan.invalid, SampleMark::Invalid),
        ];
        let mut it = early.into_iter().chain(late);
        for (n, mark) in kinds {
            for pos in it.by_ref().take(n) {
                marks.insert(plan.symbols + pos, mark);
            }
        }
        let symbols = (0..plan.symbols)
            .map(|i| SymbolState {
                symbol: symbol_name(i),
                exchange: EXCHANGES[i % EXCHANGES.len()],
                seq: 0,
                price: rng.random_range(10..500) * SCALE,
                last: None,
            })
            .collect();
        Ok(Self { plan, kind, schema, rng, symbols, marks, next: 0 })
    }

    /// The injected positions of the plan.
    pub fn injected(&self) -> Injected {
        let mut out = Injected::default();
        for (&pos, mark) in &self.marks {
            match mark {
                SampleMark::Gap => out.gaps.push(pos),
                SampleMark::Duplicate => out.duplicates.push(pos),
                SampleMark::Malformed => out.malformed.push(pos),
                SampleMark::Invalid => out.invalid.push(pos),
                SampleMark::OutOfOrder => out.out_of_order.push(pos),
                SampleMark::Reset => out.resets.push(pos),
                SampleMark::Ok => {}
            }
        }
        out
    }
}

impl Iterator for SampleGenerator<'_> {
    type Item = SampleMessage;

    fn next(&mut self) -> Option<SampleMessage> {
        let i = self.next;
        if i >= self.plan.count {
            return None;
        }
        self.next += 1;
        let mut mark = self.marks.get(&i).copied().unwrap_or(SampleMark::Ok);
        // Every symbol gets its baseline first, then symbols are drawn at random.
        let mut s = if i < self.symbols.len() { i } else { self.rng.random_range(0..self.symbols.len()) };
        if matches!(mark, SampleMark::OutOfOrder | SampleMark::Reset) {
            // The first symbol from the drawn one whose sequence is far enough along for the
            // anomaly to be told apart (a late record must not look like a reset to 1).
            let n = self.symbols.len();
            match (0..n).map(|k| (s + k) % n).find(|&c| self.symbols[c].seq >= 3) {
                Some(c) => s = c,
                // Placed past three records per symbol, this takes an unlikely pile of
                // non-advancing anomalies; the manifest then shows the record as ordinary.
                None => mark = SampleMark::Ok,
            }
        }
        let ts = self.plan.start_micros + i as i64 * 1_000;
        let kind = self.kind;

        if mark == SampleMark::Duplicate {
            let st = &self.symbols[s];
            let (body, record) = st.last.clone().expect("every symbol has a baseline before injections");
            return Some(SampleMessage { key: st.symbol.clone(), body, mark, record });
        }
        let step = self.rng.random_range(-5..=5) * SCALE / 100;
        let size = self.rng.random_range(1..=1000) * SCALE;
        let buy = self.rng.random_bool(0.5);
        let with_conditions = self.rng.random_bool(0.1);
        let st = &mut self.symbols[s];
        st.price = (st.price + step).max(SCALE / 100);
        let seq = match mark {
            SampleMark::Gap => st.seq + 2,
            SampleMark::OutOfOrder => st.seq - 1,
            SampleMark::Reset => 1,
            _ => st.seq + 1,
        };
        let price = if mark == SampleMark::Invalid { -st.price } else { st.price };
        let (value, record) = match kind {
            SampleKind::Trades => trade(st, ts, price, size, buy, seq, with_conditions),
            SampleKind::Quotes => quote(st, ts, price, size, seq, mark == SampleMark::Invalid),
        };
        let mut body = apache_avro::to_avro_datum(self.schema, value).expect("generated records match the schema");
        match mark {
            SampleMark::Malformed => {
                body.truncate(body.len() / 2);
                return Some(SampleMessage { key: st.symbol.clone(), body, mark, record: serde_json::Value::Null });
            }
            SampleMark::Invalid | SampleMark::OutOfOrder => {}
            SampleMark::Ok | SampleMark::Gap | SampleMark::Duplicate | SampleMark::Reset => {
                st.seq = seq;
                st.last = Some((body.clone(), record.clone()));
            }
        }
        Some(SampleMessage { key: st.symbol.clone(), body, mark, record })
    }
}

fn symbol_name(i: usize) -> String {
    const NAMED: [&str; 12] =
        ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "BRK.B", "JPM", "V", "XOM", "BTC/USD"];
    NAMED.get(i).map_or_else(|| format!("SYM{i:05}"), |s| s.to_string())
}

fn decimal_bytes(unscaled: i64) -> Value {
    // Minimal big-endian two's complement, as Avro decimals are written.
    let bytes = unscaled.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xFF && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    Value::Decimal(apache_avro::Decimal::from(&bytes[start..]))
}

fn show(unscaled: i64) -> String {
    let sign = if unscaled < 0 { "-" } else { "" };
    format!("{sign}{}.{:08}", unscaled.abs() / SCALE, unscaled.abs() % SCALE)
}

fn trade(
    st: &SymbolState,
    ts: i64,
    price: i64,
    size: i64,
    buy: bool,
    seq: i64,
    conditions: bool,
) -> (Value, serde_json::Value) {
    let side = if buy { "BUY" } else { "SELL" };
    let trade_id = format!("{}-{}-{seq}", st.exchange, st.symbol);
    let cond = conditions.then_some("@");
    let value = Value::Record(vec![
        ("symbol".into(), Value::String(st.symbol.clone())),
        ("exchange".into(), Value::String(st.exchange.into())),
        ("exchange_ts".into(), Value::TimestampMicros(ts)),
        ("price".into(), decimal_bytes(price)),
        ("size".into(), decimal_bytes(size)),
        ("side".into(), Value::Enum(if buy { 0 } else { 1 }, side.into())),
        ("trade_id".into(), Value::String(trade_id.clone())),
        ("sequence".into(), Value::Long(seq)),
        (
            "conditions".into(),
            match cond {
                Some(c) => Value::Union(1, Box::new(Value::String(c.into()))),
                None => Value::Union(0, Box::new(Value::Null)),
            },
        ),
    ]);
    let record = json!({
        "symbol": st.symbol, "exchange": st.exchange, "exchange_ts": ts, "price": show(price),
        "size": show(size), "side": side, "trade_id": trade_id, "sequence": seq, "conditions": cond,
    });
    (value, record)
}

fn quote(st: &SymbolState, ts: i64, mid: i64, size: i64, seq: i64, crossed: bool) -> (Value, serde_json::Value) {
    let half_spread = SCALE / 100;
    let (bid, ask) = if crossed {
        (mid.abs() + half_spread, mid.abs() - half_spread)
    } else {
        (mid - half_spread, mid + half_spread)
    };
    let value = Value::Record(vec![
        ("symbol".into(), Value::String(st.symbol.clone())),
        ("exchange".into(), Value::String(st.exchange.into())),
        ("exchange_ts".into(), Value::TimestampMicros(ts)),
        ("bid_price".into(), decimal_bytes(bid)),
        ("bid_size".into(), decimal_bytes(size)),
        ("ask_price".into(), decimal_bytes(ask)),
        ("ask_size".into(), decimal_bytes(size)),
        ("sequence".into(), Value::Long(seq)),
    ]);
    let record = json!({
        "symbol": st.symbol, "exchange": st.exchange, "exchange_ts": ts, "bid_price": show(bid),
        "bid_size": show(size), "ask_price": show(ask), "ask_size": show(size), "sequence": seq,
    });
    (value, record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::Path;

    /// Distinct positions, as a check of the plan.
    fn all_distinct(injected: &Injected) -> bool {
        let all: Vec<usize> = [
            &injected.gaps,
            &injected.duplicates,
            &injected.malformed,
            &injected.invalid,
            &injected.out_of_order,
            &injected.resets,
        ]
        .into_iter()
        .flatten()
        .copied()
        .collect();
        all.iter().collect::<HashSet<_>>().len() == all.len()
    }

    fn trade_schema() -> AvroSchema {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/trade.avsc");
        k2_ingest::schema::mapping::load_avsc(&path).unwrap()
    }

    fn plan(count: usize) -> SamplePlan {
        SamplePlan {
            count,
            symbols: 20,
            seed: 7,
            gaps: 5,
            duplicates: 4,
            malformed: 3,
            invalid: 2,
            out_of_order: 3,
            resets: 2,
            start_micros: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn same_seed_same_messages_and_exact_injections() {
        let schema = trade_schema();
        let a: Vec<_> = SampleGenerator::new(plan(500), SampleKind::Trades, &schema).unwrap().map(|m| m.body).collect();
        let b: Vec<_> = SampleGenerator::new(plan(500), SampleKind::Trades, &schema).unwrap().map(|m| m.body).collect();
        assert_eq!(a, b);
        let g = SampleGenerator::new(plan(500), SampleKind::Trades, &schema).unwrap();
        let inj = g.injected();
        assert_eq!((inj.gaps.len(), inj.duplicates.len(), inj.malformed.len(), inj.invalid.len()), (5, 4, 3, 2));
        assert!(all_distinct(&inj));
        assert!(inj.gaps.iter().all(|&p| p >= 20), "injections come after the baselines");
        let marks: Vec<_> = g.map(|m| m.mark).collect();
        for &p in &inj.malformed {
            assert_eq!(marks[p], SampleMark::Malformed);
        }
        for &p in inj.out_of_order.iter().chain(&inj.resets) {
            assert!(p >= 3 * 20, "late anomalies come after three records per symbol: {p}");
            assert!(matches!(marks[p], SampleMark::OutOfOrder | SampleMark::Reset));
        }
    }

    #[test]
    fn too_many_injections_is_an_error() {
        let schema = trade_schema();
        let err =
            SampleGenerator::new(SamplePlan { count: 25, ..plan(25) }, SampleKind::Trades, &schema).err().unwrap();
        assert!(err.contains("at most 5"), "{err}");
        let plan = SamplePlan { count: 60, gaps: 0, duplicates: 0, malformed: 0, invalid: 0, ..plan(60) };
        let err = SampleGenerator::new(plan, SampleKind::Trades, &schema).err().unwrap();
        assert!(err.contains("cannot place 5 out-of-order records and resets"), "{err}");
    }

    #[test]
    fn decimals_are_minimal_twos_complement() {
        let bytes = |v| match decimal_bytes(v) {
            Value::Decimal(d) => Vec::<u8>::try_from(&d).unwrap(),
            _ => unreachable!(),
        };
        assert_eq!(bytes(0), vec![0]);
        assert_eq!(bytes(127), vec![127]);
        assert_eq!(bytes(128), vec![0, 128]);
        assert_eq!(bytes(-1), vec![0xFF]);
        assert_eq!(bytes(-129), vec![0xFF, 0x7F]);
        assert_eq!(show(-150_000_000), "-1.50000000");
    }
}
