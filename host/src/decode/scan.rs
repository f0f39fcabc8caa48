//! Walks an Avro datum against its writer schema, allocating nothing, before apache-avro reads it.
//!
//! Why: apache-avro 0.21 trusts the body. It sizes a string's buffer, a `Vec` or a `HashMap`
//! from the length or block count it reads, before reading what follows (a 6-byte map record
//! claiming 2^29 entries reserved over a gigabyte), and where the input ends inside a string, a
//! boolean or a union index it returns `null` instead of an error (a truncated record stored a
//! null in an optional column). Its only guard, `max_allocation_bytes`, is one process-wide
//! number, so it cannot follow the size of each record.
//!
//! This scan reads the same bytes in the same order as apache-avro's `decode`, with the same
//! [`Wire`] the direct reader uses, and checks every length and block count against the bytes
//! left. A datum that passes leaves apache-avro nothing to trust: every length it will allocate
//! from is at most the body's size, every value ends inside the body, every index is in range.

use std::collections::HashMap;

use apache_avro::Schema as AvroSchema;
use apache_avro::schema::{Name, Namespace, ResolvedSchema};

use crate::decode::wire::{DatumError, Wire};
use crate::error::DecodeError;

/// Deepest nesting of records, arrays, maps and unions a datum may have. Deep enough for any
/// schema written by hand (only a recursive type gets past a dozen levels); shallow enough that
/// apache-avro's recursive decode, resolution and drop of the value stay far inside a 2 MiB
/// thread stack. Without it, a recursive schema and a body of repeated union indices would
/// overflow the stack, which aborts the process.
pub const MAX_DEPTH: usize = 128;

/// Most zero-byte items (`null`s, empty records, `fixed` of size 0) one record may hold. Their
/// count has no bytes behind it to check against, yet apache-avro builds a value for each one
/// (tens of bytes apiece): a 3-byte `array<null>` could otherwise ask for 2^62 of them.
pub const MAX_EMPTY_ITEMS: usize = 4096;

/// Most bytes apache-avro may allocate for one length, set once for the whole process. It is
/// only a belt: the scan already holds every length to the record's size, which this cannot do
/// (apache-avro keeps one number for the process, and the first decode fixes it). 128 MiB is
/// above librdkafka's default `receive.message.max.bytes` (100 MB), so no body we can receive
/// has a legitimate length past it.
pub const APACHE_AVRO_MAX_ALLOCATION: usize = 128 << 20;

/// Sets [`APACHE_AVRO_MAX_ALLOCATION`] in apache-avro, if nothing decoded before it did.
pub fn set_apache_avro_allocation_belt() {
    apache_avro::util::max_allocation_bytes(APACHE_AVRO_MAX_ALLOCATION);
}

/// How one schema node is laid out in the binary encoding; named types are resolved to indices.
#[derive(Debug, Clone)]
enum Node {
    Null,
    Boolean,
    /// Int, date, time-millis: a varint in 32-bit range.
    Int,
    /// Long and the timestamps, time-micros: any 64-bit varint.
    Long,
    /// Float, double, duration and fixed: this many bytes.
    Fixed(usize),
    /// Bytes, decimal on bytes, big-decimal, uuid: a length and that many bytes.
    Bytes,
    String,
    Enum(usize),
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    Record(Vec<(String, usize)>),
    /// A name the schema uses but does not define: apache-avro cannot decode it either.
    Unknown(String),
}

/// A writer schema compiled for [`DatumShape::check`].
#[derive(Debug, Clone)]
pub struct DatumShape {
    nodes: Vec<Node>,
    /// Fewest bytes a value of each node takes; `usize::MAX` for a type that has no finite
    /// value (a record that contains itself with no union in between).
    min_size: Vec<usize>,
}

impl DatumShape {
    /// Compiles `schema`; never fails, a name it cannot resolve refuses every datum using it.
    pub fn compile(schema: &AvroSchema) -> Self {
        let resolved = ResolvedSchema::try_from(schema).ok();
        let empty = HashMap::new();
        let names = resolved.as_ref().map_or(&empty, |r| r.get_names());
        let mut compiler = Compiler { names, nodes: Vec::new(), named: HashMap::new() };
        compiler.node(schema, &None);
        let min_size = min_sizes(&compiler.nodes);
        Self { nodes: compiler.nodes, min_size }
    }

    /// Checks that `datum` is exactly one value of the schema, trailing bytes refused as the
    /// direct reader does. The error names the path of the value that failed.
    pub fn check(&self, datum: &[u8]) -> Result<(), DecodeError> {
        let mut scan = Scan { shape: self, wire: Wire::new(datum), empty_items: 0 };
        scan.value(0, 0).map_err(|fault| fault.into_decode_error(&self.nodes))?;
        match scan.wire.left() {
            0 => Ok(()),
            trailing => Err(DecodeError::TrailingBytes { trailing }),
        }
    }
}

struct Compiler<'s> {
    names: &'s HashMap<Name, &'s AvroSchema>,
    nodes: Vec<Node>,
    /// Records compiled so far by full name, so a recursive reference points back to them.
    named: HashMap<Name, usize>,
}

impl Compiler<'_> {
    /// Compiles `schema` where names resolve against `namespace`, as apache-avro's decode does.
    fn node(&mut self, schema: &AvroSchema, namespace: &Namespace) -> usize {
        use AvroSchema as A;
        let node = match schema {
            A::Null => Node::Null,
            A::Boolean => Node::Boolean,
            A::Int | A::Date | A::TimeMillis => Node::Int,
            A::Long
            | A::TimeMicros
            | A::TimestampMillis
            | A::TimestampMicros
            | A::TimestampNanos
            | A::LocalTimestampMillis
            | A::LocalTimestampMicros
            | A::LocalTimestampNanos => Node::Long,
            A::Float => Node::Fixed(4),
            A::Double => Node::Fixed(8),
            A::Duration => Node::Fixed(12),
            A::Bytes | A::BigDecimal | A::Uuid => Node::Bytes,
            A::String => Node::String,
            A::Fixed(f) => Node::Fixed(f.size),
            A::Decimal(d) => match d.inner.as_ref() {
                A::Fixed(f) => Node::Fixed(f.size),
                A::Bytes => Node::Bytes,
                other => Node::Unknown(format!("decimal on {other:?}")),
            },
            A::Enum(e) => Node::Enum(e.symbols.len()),
            A::Array(a) => {
                let at = self.reserve();
                let items = self.node(&a.items, namespace);
                return self.set(at, Node::Array(items));
            }
            A::Map(m) => {
                let at = self.reserve();
                let values = self.node(&m.types, namespace);
                return self.set(at, Node::Map(values));
            }
            A::Union(u) => {
                let at = self.reserve();
                let branches = u.variants().iter().map(|v| self.node(v, namespace)).collect();
                return self.set(at, Node::Union(branches));
            }
            A::Record(r) => {
                let name = r.name.fully_qualified_name(namespace);
                let at = self.reserve();
                self.named.insert(name.clone(), at);
                let fields = r.fields.iter().map(|f| (f.name.clone(), self.node(&f.schema, &name.namespace))).collect();
                return self.set(at, Node::Record(fields));
            }
            A::Ref { name } => {
                let name = name.fully_qualified_name(namespace);
                if let Some(&at) = self.named.get(&name) {
                    return at;
                }
                match self.names.get(&name) {
                    Some(&schema) => return self.node(schema, &name.namespace),
                    None => Node::Unknown(name.fullname(None)),
                }
            }
        };
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn reserve(&mut self) -> usize {
        self.nodes.push(Node::Null);
        self.nodes.len() - 1
    }

    fn set(&mut self, at: usize, node: Node) -> usize {
        self.nodes[at] = node;
        at
    }
}

/// The fewest bytes each node's value takes, by iterating down from "no finite value": the
/// greatest fixed point, so a self-containing record stays at `usize::MAX` (it has no value)
/// instead of 0 (which would make it look like a free zero-byte item).
fn min_sizes(nodes: &[Node]) -> Vec<usize> {
    let mut min = vec![usize::MAX; nodes.len()];
    // Each round settles at least one more node; more rounds than nodes never change anything.
    for _ in 0..=nodes.len() {
        let mut changed = false;
        for (i, node) in nodes.iter().enumerate() {
            let size = match node {
                Node::Null => 0,
                Node::Fixed(n) => *n,
                Node::Boolean | Node::Int | Node::Long | Node::Bytes | Node::String | Node::Enum(_) => 1,
                // An empty array or map is its terminating 0 count.
                Node::Array(_) | Node::Map(_) => 1,
                Node::Union(branches) => 1usize.saturating_add(branches.iter().map(|&b| min[b]).min().unwrap_or(0)),
                Node::Record(fields) => fields.iter().fold(0usize, |sum, &(_, f)| sum.saturating_add(min[f])),
                Node::Unknown(_) => usize::MAX,
            };
            if size != min[i] {
                min[i] = size;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    min
}

/// Where a datum failed: the error, and the path to it, innermost segment first (pushed as the
/// error travels up, so the scan itself builds no strings).
struct Fault {
    error: DatumError,
    path: Vec<Segment>,
}

enum Segment {
    /// A field of the record at this node.
    Field {
        record: usize,
        index: usize,
    },
    Item(u64),
    Key(u64),
    Value(u64),
}

impl Fault {
    fn within(mut self, segment: Segment) -> Self {
        self.path.push(segment);
        self
    }

    fn into_decode_error(self, nodes: &[Node]) -> DecodeError {
        let mut path = String::new();
        for segment in self.path.iter().rev() {
            match *segment {
                Segment::Field { record, index } => {
                    if let Node::Record(fields) = &nodes[record] {
                        if !path.is_empty() {
                            path.push('.');
                        }
                        path.push_str(&fields[index].0);
                    }
                }
                Segment::Item(i) => path.push_str(&format!("[{i}]")),
                Segment::Key(i) => path.push_str(&format!("[entry {i}].key")),
                Segment::Value(i) => path.push_str(&format!("[entry {i}].value")),
            }
        }
        if path.is_empty() {
            path.push_str("datum");
        }
        DecodeError::Datum { path, error: self.error }
    }
}

impl From<DatumError> for Fault {
    fn from(error: DatumError) -> Self {
        Self { error, path: Vec::new() }
    }
}

struct Scan<'s, 'b> {
    shape: &'s DatumShape,
    wire: Wire<'b>,
    /// Zero-byte items seen so far in this datum, against [`MAX_EMPTY_ITEMS`].
    empty_items: usize,
}

impl Scan<'_, '_> {
    fn value(&mut self, node: usize, depth: usize) -> Result<(), Fault> {
        match &self.shape.nodes[node] {
            Node::Null => {}
            Node::Boolean => {
                self.wire.boolean()?;
            }
            Node::Int => {
                self.wire.int("int")?;
            }
            Node::Long => {
                self.wire.long("long")?;
            }
            Node::Fixed(size) => {
                self.wire.take(*size as u64, "fixed")?;
            }
            Node::Bytes => {
                self.wire.length_prefixed("bytes")?;
            }
            Node::String => {
                self.wire.utf8("string")?;
            }
            Node::Enum(symbols) => {
                let at = self.wire.pos();
                let index = self.wire.int("enum index")?;
                if usize::try_from(index).map_or(true, |i| i >= *symbols) {
                    return Err(DatumError::EnumIndex { index: index.into(), symbols: *symbols, at }.into());
                }
            }
            Node::Unknown(name) => return Err(DatumError::UnknownType { name: name.clone() }.into()),
            nested => {
                if depth >= MAX_DEPTH {
                    return Err(DatumError::TooDeep { max: MAX_DEPTH, at: self.wire.pos() }.into());
                }
                match nested {
                    Node::Union(branches) => {
                        let at = self.wire.pos();
                        let index = self.wire.long("union branch")?;
                        match usize::try_from(index).ok().and_then(|i| branches.get(i)) {
                            Some(&branch) => self.value(branch, depth + 1)?,
                            None => {
                                return Err(DatumError::UnionBranch { index, branches: branches.len(), at }.into());
                            }
                        }
                    }
                    Node::Record(fields) => {
                        for (index, &(_, field)) in fields.iter().enumerate() {
                            self.value(field, depth + 1)
                                .map_err(|f| f.within(Segment::Field { record: node, index }))?;
                        }
                    }
                    Node::Array(items) => self.blocks("array", *items, depth, false)?,
                    Node::Map(values) => self.blocks("map", *values, depth, true)?,
                    _ => unreachable!("scalars are matched above"),
                }
            }
        }
        Ok(())
    }

    /// The blocks of an array or a map: each a count (negative: followed by the block's byte
    /// size), that many items, until a count of 0. A count is checked against the bytes left
    /// before any item is read, as apache-avro reserves room for it as soon as it reads it.
    fn blocks(&mut self, what: &'static str, item: usize, depth: usize, map: bool) -> Result<(), Fault> {
        // A map entry is a string key (at least its length byte) and a value.
        let min_item = if map { self.shape.min_size[item].saturating_add(1) } else { self.shape.min_size[item] };
        let mut index: u64 = 0;
        loop {
            let at = self.wire.pos();
            let count = self.wire.long("block count")?;
            if count == 0 {
                return Ok(());
            }
            let declared = count.unsigned_abs();
            let size = if count < 0 {
                let size_at = self.wire.pos();
                let size = self.wire.long("block size")?;
                let size = u64::try_from(size).map_err(|_| DatumError::Negative {
                    what: "block size",
                    declared: size,
                    at: size_at,
                })?;
                if size > self.wire.left() as u64 {
                    return Err(DatumError::Short {
                        what: "block",
                        len: size,
                        left: self.wire.left(),
                        at: self.wire.pos(),
                    }
                    .into());
                }
                Some(size)
            } else {
                None
            };
            let left = self.wire.left();
            // How many items the bytes left can hold; none when the items take no bytes.
            let room = left.checked_div(min_item);
            if room.is_none() {
                // Zero-byte items: nothing to read, nothing to check them against but a cap.
                let total = usize::try_from(declared).ok().and_then(|d| d.checked_add(self.empty_items));
                match total.filter(|&t| t <= MAX_EMPTY_ITEMS) {
                    Some(total) => self.empty_items = total,
                    None => return Err(DatumError::EmptyItems { what, declared, cap: MAX_EMPTY_ITEMS, at }.into()),
                }
                index += declared;
            } else {
                if declared > room.unwrap_or(0) as u64 {
                    return Err(DatumError::Block { what, declared, left, min_item, at }.into());
                }
                let start = self.wire.pos();
                for _ in 0..declared {
                    if map {
                        self.wire.utf8("string").map_err(|e| Fault::from(e).within(Segment::Key(index)))?;
                        self.value(item, depth + 1).map_err(|f| f.within(Segment::Value(index)))?;
                    } else {
                        self.value(item, depth + 1).map_err(|f| f.within(Segment::Item(index)))?;
                    }
                    index += 1;
                }
                if let Some(size) = size {
                    let used = self.wire.pos() - start;
                    if used as u64 != size {
                        return Err(DatumError::BlockSize { declared: size, used, at }.into());
                    }
                }
                continue;
            }
            if size.is_some_and(|s| s != 0) {
                return Err(DatumError::BlockSize { declared: size.unwrap_or(0), used: 0, at }.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(fields: &str) -> DatumShape {
        let schema = AvroSchema::parse_str(&format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#)).unwrap();
        DatumShape::compile(&schema)
    }

    fn reason(shape: &DatumShape, body: &[u8]) -> String {
        shape.check(body).unwrap_err().to_string()
    }

    #[test]
    fn a_map_block_claiming_2_pow_29_entries_names_the_count_and_the_bytes_left() {
        let s = shape(
            r#"{"name":"id","type":"long"},{"name":"m","type":{"type":"map","values":"string"}},{"name":"s","type":"string"}"#,
        );
        assert_eq!(
            reason(&s, &[0x02, 0xFE, 0xFF, 0xFF, 0xFF, 0x03]),
            "avro: m: map block of 536870911 items at byte 1, only 0 bytes left and an item takes at least 2"
        );
        assert_eq!(
            reason(&s, &[0x02, 0x02, 0x80, 0x80, 0x80, 0x80, 0x04]),
            "avro: m[entry 0].key: string of 536870912 bytes at byte 7, only 0 left"
        );
        // One entry {"k": "v"}, then "ab".
        assert_eq!(s.check(&[0x02, 0x02, 0x02, b'k', 0x02, b'v', 0x00, 0x04, b'a', b'b']), Ok(()));
    }

    #[test]
    fn blocks_with_byte_sizes_must_match_them() {
        let s = shape(r#"{"name":"a","type":{"type":"array","items":"int"}}"#);
        // Count -2 with size 2: items 1 and 2, then the end.
        assert_eq!(s.check(&[0x03, 0x04, 0x02, 0x04, 0x00]), Ok(()));
        assert!(reason(&s, &[0x03, 0x06, 0x02, 0x04, 0x00, 0x00]).contains("declares 3 bytes, its items took 2"));
        assert!(reason(&s, &[0x03, 0x03, 0x02, 0x04, 0x00]).contains("negative block size -2"));
        // i64::MIN as a count.
        let min = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00];
        assert!(reason(&s, &min).contains("9223372036854775808 items"), "{}", reason(&s, &min));
    }

    #[test]
    fn zero_byte_items_are_capped() {
        let s = shape(r#"{"name":"a","type":{"type":"array","items":"null"}}"#);
        assert_eq!(s.check(&[0x80, 0x40, 0x00]), Ok(()), "4096 nulls");
        assert!(reason(&s, &[0x82, 0x40, 0x00]).contains("block of 4097 zero-byte items"));
        // 2^62 nulls in three bytes... and in two blocks adding up past the cap.
        assert!(reason(&s, &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x00]).contains("zero-byte"));
        assert!(reason(&s, &[0x80, 0x40, 0x02, 0x00]).contains("more than 4096 in one record"));
    }

    #[test]
    fn recursion_is_bounded_and_self_containing_records_have_no_value() {
        let s = shape(r#"{"name":"next","type":["null","R"]}"#);
        let mut list = vec![0x02; 10];
        list.push(0x00);
        assert_eq!(s.check(&list), Ok(()));
        let deep = vec![0x02; 100_000];
        assert!(reason(&s, &deep).contains("nested deeper than 128 levels"));
        let s = shape(
            r#"{"name":"a","type":{"type":"array","items":{"type":"record","name":"S","fields":[{"name":"s","type":"S"}]}}}"#,
        );
        assert!(reason(&s, &[0x02, 0x00]).contains("item takes at least 18446744073709551615"));
    }

    #[test]
    fn indices_and_utf8_are_checked_with_their_path() {
        let s = shape(
            r#"{"name":"legs","type":{"type":"array","items":{"type":"record","name":"Leg","fields":[
                {"name":"venue","type":"string"},
                {"name":"side","type":{"type":"enum","name":"Side","symbols":["BUY","SELL"]}},
                {"name":"qty","type":["null","long"]}]}}}"#,
        );
        assert_eq!(s.check(&[0x02, 0x02, b'X', 0x02, 0x02, 0x04, 0x00]), Ok(()));
        assert_eq!(
            reason(&s, &[0x02, 0x02, 0xFF, 0x02, 0x02, 0x04, 0x00]),
            "avro: legs[0].venue: string at byte 2 is not utf-8: invalid utf-8 sequence of 1 bytes from index 0"
        );
        assert_eq!(
            reason(&s, &[0x02, 0x02, b'X', 0x04, 0x02, 0x04, 0x00]),
            "avro: legs[0].side: enum index 2 at byte 3, the enum has 2 symbols"
        );
        assert_eq!(
            reason(&s, &[0x02, 0x02, b'X', 0x02, 0x04, 0x00]),
            "avro: legs[0].qty: union branch 2 at byte 4, the union has 2"
        );
        assert_eq!(
            reason(&s, &[0x02, 0x02, b'X', 0x02]),
            "avro: legs[0].qty: input ends inside a union branch at byte 4"
        );
        assert_eq!(reason(&s, &[0x00, 0x00]), "avro: 1 bytes left after the record");
    }
}
