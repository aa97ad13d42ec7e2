//! Writer schemas compiled once per schema id: a record's Avro bytes are read straight into
//! its index action, the row written as the document's JSON while it is read. No value tree
//! is built in between (neither apache-avro's nor serde_json's), and what depends on the
//! table (index and alias names, the columns `mapping.booleans`, `mapping.json` and
//! `json_columns` convert) is resolved once per table, not per record.

use std::io::Write as _;
use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::schema::{
    InnerDecimalSchema, Name, RecordField, RecordSchema, ResolvedSchema, UuidSchema,
};
use base64::Engine;
use num_bigint::BigInt;
use serde_json::Value as Json;

use super::document::{Conversion, META_FIELD, Options, ShapeError, converted, fill, shape};
use crate::model::{TableId, time};
use crate::wire::envelope::{field, is_bits, mysql_type, source_field};

/// Types (records, unions, arrays, references) nest at most this deep; deeper means a
/// recursive schema, which Sluice never writes.
const MAX_DEPTH: usize = 32;

/// How one value of a writer schema is read, and written as JSON.
#[derive(Debug, Clone)]
enum Val {
    Null,
    Boolean,
    Int,
    Long,
    /// FLOAT: the shortest decimal that reads back as the same single-precision number.
    Float,
    Double,
    String,
    /// Base64, Elasticsearch's `binary`.
    Bytes,
    /// BIT(n), n > 1: bytes spelling an unsigned number (base64 beyond 8 bytes).
    Bits,
    /// Integers as numbers when the scale is 0, else exact strings. `fixed` is the size
    /// of a fixed-size representation (Sluice writes bytes).
    Decimal {
        scale: usize,
        fixed: Option<usize>,
    },
    /// ISO-8601 date.
    Date,
    /// ISO-8601 date and time with microseconds, no zone.
    LocalMicros,
    /// The same with `Z`: an instant.
    Micros,
    Array(Box<Val>),
    Record(Vec<(Box<str>, Val)>),
    Union(Vec<Val>),
    /// Read past, never written: Sluice writes no value of this type.
    Other(&'static str, Box<Val>),
    Fixed(usize),
    Map(Box<Val>),
}

/// Reads Avro's binary encoding.
struct Input<'a>(&'a [u8]);

fn truncated() -> ShapeError {
    shape("the record ends early: not the Avro its schema id names")
}

impl<'a> Input<'a> {
    #[inline]
    fn long(&mut self) -> Result<i64, ShapeError> {
        let zigzag = |n: u64| ((n >> 1) as i64) ^ -((n & 1) as i64);
        // Most varints here (lengths, branches, small numbers) are one byte.
        if let Some((&b, rest)) = self.0.split_first()
            && b < 0x80
        {
            self.0 = rest;
            return Ok(zigzag(u64::from(b)));
        }
        let mut n: u64 = 0;
        for (i, &b) in self.0.iter().enumerate().take(10) {
            n |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.0 = &self.0[i + 1..];
                return Ok(zigzag(n));
            }
        }
        Err(truncated())
    }

    fn int(&mut self) -> Result<i32, ShapeError> {
        let n = self.long()?;
        i32::try_from(n).map_err(|_| shape(format!("{n} is not an Avro int")))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], ShapeError> {
        if self.0.len() < n {
            return Err(truncated());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], ShapeError> {
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| shape(format!("negative length {n}")))?;
        self.take(n)
    }

    #[inline]
    fn str(&mut self) -> Result<&'a str, ShapeError> {
        let bytes = self.bytes()?;
        crate::model::utf8(bytes).ok_or_else(|| match std::str::from_utf8(bytes) {
            Err(e) => shape(format!("a string is not UTF-8: {e}")),
            Ok(_) => shape("a string is not UTF-8"),
        })
    }

    fn branch<'v>(&mut self, variants: &'v [Val]) -> Result<&'v Val, ShapeError> {
        let i = self.long()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| variants.get(i))
            .ok_or_else(|| shape(format!("union branch {i} does not exist")))
    }

    /// The items of an array or the entries of a map, block by block, to `each`.
    fn blocks(
        &mut self,
        mut each: impl FnMut(&mut Self) -> Result<(), ShapeError>,
    ) -> Result<(), ShapeError> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.long()?; // the block's size in bytes
            }
            // Every item Sluice writes takes at least a byte; a count beyond what is left is
            // not a record of the schema (and would spin on empty items).
            if count.unsigned_abs() > self.0.len() as u64 {
                return Err(truncated());
            }
            for _ in 0..count.unsigned_abs() {
                each(self)?;
            }
        }
    }
}

impl Val {
    /// The reading of `schema`, references resolved through `names`.
    fn of(schema: &Schema, names: &ResolvedSchema<'_>, depth: usize) -> Result<Val, ShapeError> {
        if depth > MAX_DEPTH {
            return Err(shape(
                "the schema nests too deep (recursive?); Sluice writes no such schema",
            ));
        }
        let of = |s: &Schema| Val::of(s, names, depth + 1);
        Ok(match schema {
            Schema::Null => Val::Null,
            Schema::Boolean => Val::Boolean,
            Schema::Int => Val::Int,
            Schema::Long => Val::Long,
            Schema::Float => Val::Float,
            Schema::Double => Val::Double,
            Schema::Bytes => Val::Bytes,
            Schema::String => Val::String,
            Schema::Array(a) => Val::Array(Box::new(of(&a.items)?)),
            Schema::Map(m) => Val::Map(Box::new(of(&m.types)?)),
            Schema::Union(u) => Val::Union(u.variants().iter().map(of).collect::<Result<_, _>>()?),
            Schema::Record(r) => Val::Record(
                r.fields
                    .iter()
                    .map(|f| Ok((f.name.as_str().into(), of(&f.schema)?)))
                    .collect::<Result<_, ShapeError>>()?,
            ),
            Schema::Enum(_) => Val::Other("enum", Box::new(Val::Int)),
            Schema::Fixed(f) => Val::Fixed(f.size),
            Schema::Decimal(d) => Val::Decimal {
                scale: d.scale,
                fixed: match &d.inner {
                    InnerDecimalSchema::Bytes => None,
                    InnerDecimalSchema::Fixed(f) => Some(f.size),
                },
            },
            Schema::BigDecimal => Val::Other("big-decimal", Box::new(Val::Bytes)),
            Schema::Uuid(UuidSchema::String) => Val::Other("uuid", Box::new(Val::String)),
            Schema::Uuid(UuidSchema::Bytes) => Val::Other("uuid", Box::new(Val::Bytes)),
            Schema::Uuid(UuidSchema::Fixed(f)) => Val::Other("uuid", Box::new(Val::Fixed(f.size))),
            Schema::Date => Val::Date,
            Schema::TimeMillis => Val::Other("time-millis", Box::new(Val::Int)),
            Schema::TimeMicros => Val::Other("time-micros", Box::new(Val::Long)),
            Schema::TimestampMillis => Val::Other("timestamp-millis", Box::new(Val::Long)),
            Schema::TimestampMicros => Val::Micros,
            Schema::TimestampNanos => Val::Other("timestamp-nanos", Box::new(Val::Long)),
            Schema::LocalTimestampMillis => {
                Val::Other("local-timestamp-millis", Box::new(Val::Long))
            }
            Schema::LocalTimestampMicros => Val::LocalMicros,
            Schema::LocalTimestampNanos => Val::Other("local-timestamp-nanos", Box::new(Val::Long)),
            Schema::Duration(_) => Val::Other("duration", Box::new(Val::Fixed(12))),
            Schema::Ref { name } => of(lookup(names, name)?)?,
        })
    }

    /// The same reading with bytes taken as BIT(n)'s number, for a column of that type.
    fn into_bits(self) -> Val {
        match self {
            Val::Bytes => Val::Bits,
            Val::Union(variants) => Val::Union(variants.into_iter().map(Val::into_bits).collect()),
            other => other,
        }
    }

    /// Whether a value of this reading can be a record.
    fn holds_record(&self) -> bool {
        match self {
            Val::Record(_) => true,
            Val::Union(variants) => variants.iter().any(Val::holds_record),
            Val::Array(item) => item.holds_record(),
            _ => false,
        }
    }

    /// Reads past one value.
    fn skip(&self, input: &mut Input<'_>) -> Result<(), ShapeError> {
        match self {
            Val::Null => {}
            Val::Boolean => {
                input.take(1)?;
            }
            Val::Int | Val::Long | Val::Date | Val::LocalMicros | Val::Micros => {
                input.long()?;
            }
            Val::Float => {
                input.take(4)?;
            }
            Val::Double => {
                input.take(8)?;
            }
            Val::String | Val::Bytes | Val::Bits | Val::Decimal { fixed: None, .. } => {
                input.bytes()?;
            }
            Val::Decimal { fixed: Some(n), .. } | Val::Fixed(n) => {
                input.take(*n)?;
            }
            Val::Array(item) => input.blocks(|i| item.skip(i))?,
            Val::Map(value) => input.blocks(|i| {
                i.bytes()?;
                value.skip(i)
            })?,
            Val::Record(fields) => {
                for (_, f) in fields {
                    f.skip(input)?;
                }
            }
            Val::Union(variants) => input.branch(variants)?.skip(input)?,
            Val::Other(_, raw) => raw.skip(input)?,
        }
        Ok(())
    }

    /// Reads one value and appends its JSON to `out`: integers as numbers, decimals with a
    /// fraction as exact strings, temporal values as ISO-8601 with microseconds (`Z` for
    /// instants), bytes as base64.
    fn write(&self, input: &mut Input<'_>, out: &mut Vec<u8>) -> Result<(), ShapeError> {
        match self {
            Val::Null => out.extend_from_slice(b"null"),
            Val::Boolean => match input.take(1)?[0] {
                0 => out.extend_from_slice(b"false"),
                1 => out.extend_from_slice(b"true"),
                b => return Err(shape(format!("{b} is not an Avro boolean"))),
            },
            Val::Int => push_int(out, input.int()?),
            Val::Long => push_int(out, input.long()?),
            Val::Float => {
                let f = f32::from_le_bytes(input.take(4)?.try_into().expect("4 bytes"));
                if !f.is_finite() {
                    return Err(shape(format!("{f} is not a finite number")));
                }
                // The shortest text of the f32 (std's, which picks the closest of equally
                // short ones), written as the f64 it reads back as.
                let mut text = [0u8; 64];
                let mut cursor = &mut text[..];
                write!(cursor, "{f}").expect("an f32's digits fit 64 bytes");
                let len = 64 - cursor.len();
                let parsed = std::str::from_utf8(&text[..len])
                    .ok()
                    .and_then(|t| t.parse().ok());
                push_double(out, parsed.unwrap_or(f64::from(f)))?;
            }
            Val::Double => push_double(
                out,
                f64::from_le_bytes(input.take(8)?.try_into().expect("8 bytes")),
            )?,
            Val::String => push_str(out, input.str()?),
            Val::Bytes => push_base64(out, input.bytes()?),
            Val::Bits => {
                let b = input.bytes()?;
                if b.len() <= 8 {
                    push_int(
                        out,
                        b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
                    );
                } else {
                    push_base64(out, b);
                }
            }
            Val::Decimal { scale, fixed } => {
                let b = match fixed {
                    None => input.bytes()?,
                    Some(n) => input.take(*n)?,
                };
                push_decimal(out, b, *scale);
            }
            Val::Date => {
                out.push(b'"');
                time::push_date(out, i64::from(input.int()?));
                out.push(b'"');
            }
            Val::LocalMicros => {
                out.push(b'"');
                time::push_datetime_micros(out, input.long()?);
                out.push(b'"');
            }
            Val::Micros => {
                out.push(b'"');
                time::push_datetime_micros(out, input.long()?);
                out.extend_from_slice(b"Z\"");
            }
            Val::Array(item) => {
                out.push(b'[');
                let mut first = true;
                input.blocks(|i| {
                    if !std::mem::take(&mut first) {
                        out.push(b',');
                    }
                    item.write(i, out)
                })?;
                out.push(b']');
            }
            Val::Record(fields) => {
                out.push(b'{');
                for (n, (name, f)) in fields.iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    push_str(out, name);
                    out.push(b':');
                    f.write(input, out)?;
                }
                out.push(b'}');
            }
            Val::Union(variants) => input.branch(variants)?.write(input, out)?,
            Val::Other(name, _) => {
                return Err(shape(format!("Avro type {name} is not one Sluice writes")));
            }
            Val::Fixed(_) => return Err(shape("Avro type fixed is not one Sluice writes")),
            Val::Map(_) => return Err(shape("Avro type map is not one Sluice writes")),
        }
        Ok(())
    }

    /// Reads a long, or a union's long (`None` for its null or another type).
    fn read_long(&self, input: &mut Input<'_>) -> Result<Option<i64>, ShapeError> {
        match self {
            Val::Long | Val::Int => input.long().map(Some),
            Val::Union(variants) => input.branch(variants)?.read_long(input),
            other => other.skip(input).map(|()| None),
        }
    }

    /// Reads a string, or a union's string (`None` for its null or another type).
    fn read_str<'a>(&self, input: &mut Input<'a>) -> Result<Option<&'a str>, ShapeError> {
        match self {
            Val::String => input.str().map(Some),
            Val::Union(variants) => input.branch(variants)?.read_str(input),
            other => other.skip(input).map(|()| None),
        }
    }
}

fn lookup<'s>(names: &ResolvedSchema<'s>, name: &Name) -> Result<&'s Schema, ShapeError> {
    names.get_names().get(name).copied().ok_or_else(|| {
        shape(format!(
            "the schema refers to {name}, which it does not define"
        ))
    })
}

fn push_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn push_double(out: &mut Vec<u8>, d: f64) -> Result<(), ShapeError> {
    if !d.is_finite() {
        return Err(shape(format!("{d} is not a finite number")));
    }
    out.extend_from_slice(zmij::Buffer::new().format_finite(d).as_bytes());
    Ok(())
}

fn push_base64(out: &mut Vec<u8>, b: &[u8]) {
    let engine = &base64::engine::general_purpose::STANDARD;
    let start = out.len() + 1;
    out.resize(
        start + base64::encoded_len(b.len(), true).expect("a record's bytes fit") + 1,
        b'"',
    );
    out[start - 1] = b'"';
    let end = out.len() - 1;
    engine
        .encode_slice(b, &mut out[start..end])
        .expect("the buffer has the encoded length");
}

/// A JSON string, escaped as serde_json escapes.
pub(super) fn push_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[usize::from(b)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            b'u' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let (hi, lo) = (HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]);
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
            }
            e => out.extend_from_slice(&[b'\\', e]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// For each byte, the letter after the backslash that escapes it (`u` for `\u00XX`), or 0.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// A decimal's two's-complement big-endian unscaled value at `scale`: a number when the scale
/// is 0 and it fits 64 bits, else an exact string.
fn push_decimal(out: &mut Vec<u8>, bytes: &[u8], scale: usize) {
    if bytes.len() > 16 {
        let unscaled = BigInt::from_signed_bytes_be(bytes);
        if scale == 0 {
            if let Ok(i) = i64::try_from(&unscaled) {
                return push_int(out, i);
            }
            if let Ok(u) = u64::try_from(&unscaled) {
                return push_int(out, u);
            }
        }
        let (sign, digits) = (
            unscaled.sign() == num_bigint::Sign::Minus,
            unscaled.magnitude().to_string(),
        );
        return push_scaled(out, sign, &digits, scale);
    }
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let init: i128 = if negative { -1 } else { 0 };
    let unscaled = bytes
        .iter()
        .fold(init, |acc, &b| (acc << 8) | i128::from(b));
    if scale == 0 {
        if let Ok(i) = i64::try_from(unscaled) {
            return push_int(out, i);
        }
        if let Ok(u) = u64::try_from(unscaled) {
            return push_int(out, u);
        }
    }
    let mut digits = itoa::Buffer::new();
    push_scaled(out, negative, digits.format(unscaled.unsigned_abs()), scale);
}

/// `-`, then `digits` with a point `scale` digits from the right, as a JSON string.
fn push_scaled(out: &mut Vec<u8>, negative: bool, digits: &str, scale: usize) {
    out.push(b'"');
    if negative {
        out.push(b'-');
    }
    let zeros = (scale + 1).saturating_sub(digits.len());
    if scale == 0 {
        out.extend_from_slice(digits.as_bytes());
    } else if zeros > 0 {
        // Padded to one integer digit: `0.` and the fraction's leading zeros.
        out.extend_from_slice(b"0.");
        out.resize(out.len() + zeros - 1, b'0');
        out.extend_from_slice(digits.as_bytes());
    } else {
        let (int, frac) = digits.as_bytes().split_at(digits.len() - scale);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    }
    out.push(b'"');
}

/// A column of the row record.
#[derive(Debug)]
struct Column {
    /// `"name":`, escaped once.
    key: Box<[u8]>,
    val: Val,
    /// Named like Sluice's metadata field, which takes its place in the document.
    shadowed: bool,
}

/// What the plan takes from the `source` block.
#[derive(Debug)]
enum SourceField {
    Version,
    Db,
    Table,
    TsMs,
    Skip,
}

/// One envelope field, in writer order.
#[derive(Debug)]
enum Step {
    /// `after`: the row it holds, and how to read every branch of its union.
    After(Result<AfterRow, String>, Val),
    Source(Vec<(SourceField, Val)>),
    Op(Val),
    TsMs(Val),
    Skip(Val),
}

/// A table's names and column conversions, resolved from the options once.
#[derive(Debug)]
pub struct Route {
    /// The source table.
    pub table: TableId,
    /// Its index.
    pub index: Arc<str>,
    /// The alias its index is to have.
    pub alias: Option<String>,
    conversions: Vec<Conversion>,
}

/// What a record asks of the index, its document (for writes) left in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Create or replace the document (`c`, `u`, `r`).
    Write,
    /// Delete the document (`d`).
    Delete,
    /// Delete every document older than the version (`t`).
    Truncate,
}

/// One record read by a [`ValuePlan`].
#[derive(Debug)]
pub struct Read<'p> {
    /// What it asks.
    pub effect: Effect,
    /// The change's version (external version in the index).
    pub version: u64,
    /// Its table's names.
    pub route: &'p Arc<Route>,
    /// When Sluice read the change (the envelope's `ts_ms`), for commit-to-indexed latency.
    pub read_ms: Option<i64>,
}

/// An envelope writer schema, compiled.
#[derive(Debug)]
pub struct ValuePlan {
    steps: Result<Vec<Step>, String>,
    /// How documents are shaped; the routes are resolved from it.
    options: Options,
    routes: Vec<Arc<Route>>,
    /// Where each column's value lies in the document being written.
    spans: Vec<(usize, usize)>,
    scratch: Vec<u8>,
}

/// Tables one schema id serves (one, unless a writer reuses schemas across tables) are
/// remembered up to this many.
const ROUTES: usize = 16;

impl ValuePlan {
    /// Compiles an envelope schema for documents as `options` shape them. A schema that is
    /// not an envelope still compiles: its records are refused, each with the reason.
    pub fn new(schema: &Schema, options: &Options) -> ValuePlan {
        ValuePlan {
            steps: compile_envelope(schema).map_err(|e| e.to_string()),
            options: options.clone(),
            routes: Vec::new(),
            spans: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The row record, when the schema is an envelope.
    pub fn row(&self) -> Option<&RecordSchema> {
        row_record(self.steps.as_deref().ok()?)
    }

    /// Reads one record's Avro body (after the wire header); for writes, the document's JSON
    /// is appended to `doc`. On an error `doc` may end in a partial row: clear it before the
    /// next record.
    pub fn read(&mut self, body: &[u8], doc: &mut Vec<u8>) -> Result<Read<'_>, ShapeError> {
        let steps = self.steps.as_ref().map_err(|e| shape(e.clone()))?;
        let mut input = Input(body);
        let (mut version, mut db, mut table, mut source_ts) = (None, None, None, None);
        let (mut op, mut read_ms, mut after) = (None, None, After::Missing);
        let doc_start = doc.len();
        for step in steps {
            match step {
                Step::After(Ok(row), Val::Union(variants)) => {
                    let branch = usize::try_from(input.long()?).unwrap_or(usize::MAX);
                    if branch == row.branch {
                        // The table's conversions are known once `source` is read, after
                        // the row: write it as is and convert afterwards if any applies.
                        write_row(&row.columns, &mut input, doc, &mut self.spans)?;
                        after = After::Row(&row.columns);
                    } else {
                        let variant = variants.get(branch).ok_or_else(|| {
                            shape(format!("union branch {branch} does not exist"))
                        })?;
                        variant.skip(&mut input)?;
                        after = After::Null;
                    }
                }
                Step::After(row, val) => {
                    val.skip(&mut input)?;
                    after = After::Bad(row.as_ref().err().map_or("`after` is not a union", |e| e));
                }
                Step::Source(fields) => {
                    for (f, val) in fields {
                        match f {
                            SourceField::Version => version = val.read_long(&mut input)?,
                            SourceField::Db => db = val.read_str(&mut input)?,
                            SourceField::Table => {
                                table = Some(
                                    val.read_str(&mut input)?
                                        .ok_or_else(|| shape("`source.table` is null"))?,
                                )
                            }
                            SourceField::TsMs => source_ts = val.read_long(&mut input)?,
                            SourceField::Skip => val.skip(&mut input)?,
                        }
                    }
                }
                Step::Op(val) => op = val.read_str(&mut input)?,
                Step::TsMs(val) => read_ms = val.read_long(&mut input)?,
                Step::Skip(val) => val.skip(&mut input)?,
            }
        }
        let version = match version {
            Some(v) if v > 0 => v as u64,
            _ => {
                return Err(shape(
                    "`source.change_version` is missing or not a positive long",
                ));
            }
        };
        let db = db.ok_or_else(|| shape("`source.db` is missing"))?;
        let table = table.ok_or_else(|| shape("`source.table` is missing"))?;
        let op_text = op.ok_or_else(|| shape("`op` is not a string"))?;
        let effect = match op_text {
            "c" | "u" | "r" => Effect::Write,
            "d" => Effect::Delete,
            "t" => Effect::Truncate,
            other => return Err(shape(format!("unknown op {other:?}"))),
        };
        let options = &self.options;
        let route = route(&mut self.routes, row_record(steps), db, table, options);
        if effect == Effect::Write {
            let columns = match after {
                After::Row(columns) => columns,
                After::Null => {
                    return Err(shape(format!("op {op_text:?} without an `after` image")));
                }
                After::Bad(e) => return Err(shape(e)),
                After::Missing => return Err(shape("the envelope has no `after` field")),
            };
            let conversions = &self.routes[route].conversions;
            if conversions.iter().any(|c| *c != Conversion::AsIs) {
                convert_row(
                    doc,
                    doc_start,
                    columns,
                    &self.spans,
                    conversions,
                    &mut self.scratch,
                )?;
            }
            finish_doc(
                doc,
                version,
                options.metadata.then_some((source_ts, op_text)),
            );
        } else {
            doc.truncate(doc_start);
        }
        Ok(Read {
            effect,
            version,
            route: &self.routes[route],
            read_ms,
        })
    }
}

/// The route of `db`.`table` among `routes`, resolved on first sight.
fn route(
    routes: &mut Vec<Arc<Route>>,
    row: Option<&RecordSchema>,
    db: &str,
    table: &str,
    options: &Options,
) -> usize {
    if let Some(i) = routes
        .iter()
        .position(|r| r.table.db == db && r.table.table == table)
    {
        return i;
    }
    let id = TableId::new(db, table);
    let conversions = match row {
        Some(row) => row
            .fields
            .iter()
            .map(|f| options.conversion(&id, f))
            .collect(),
        None => Vec::new(),
    };
    let route = Arc::new(Route {
        index: fill(&options.index, db, table).into(),
        alias: options.alias.as_deref().map(|a| fill(a, db, table)),
        table: id,
        conversions,
    });
    if routes.len() == ROUTES {
        routes.remove(0);
    }
    routes.push(route);
    routes.len() - 1
}

/// Writes the row's columns as an object not yet closed (the metadata field comes last),
/// noting where each value's JSON lies in `doc`.
fn write_row(
    columns: &[Column],
    input: &mut Input<'_>,
    doc: &mut Vec<u8>,
    spans: &mut Vec<(usize, usize)>,
) -> Result<(), ShapeError> {
    spans.clear();
    doc.push(b'{');
    for c in columns {
        if c.shadowed {
            c.val.skip(input)?;
            spans.push((0, 0));
            continue;
        }
        if doc.last() != Some(&b'{') {
            doc.push(b',');
        }
        doc.extend_from_slice(&c.key);
        let start = doc.len();
        c.val
            .write(input, doc)
            .map_err(|e| shape(format!("field `{}`: {e}", c.name())))?;
        spans.push((start, doc.len()));
    }
    Ok(())
}

impl Column {
    fn name(&self) -> String {
        serde_json::from_slice(&self.key[..self.key.len() - 1]).unwrap_or_default()
    }
}

/// Applies the route's conversions to the row written at `doc[start..]`. Rare (only
/// `mapping.booleans` and JSON columns), so converted values go through serde_json.
fn convert_row(
    doc: &mut Vec<u8>,
    start: usize,
    columns: &[Column],
    spans: &[(usize, usize)],
    conversions: &[Conversion],
    scratch: &mut Vec<u8>,
) -> Result<(), ShapeError> {
    scratch.clear();
    scratch.extend_from_slice(&doc[start..]);
    doc.truncate(start);
    doc.push(b'{');
    for ((c, &(from, to)), &conversion) in columns.iter().zip(spans).zip(conversions) {
        if c.shadowed {
            continue;
        }
        if doc.last() != Some(&b'{') {
            doc.push(b',');
        }
        doc.extend_from_slice(&c.key);
        let value = &scratch[from - start..to - start];
        if conversion == Conversion::AsIs {
            doc.extend_from_slice(value);
            continue;
        }
        let value: Json = serde_json::from_slice(value).expect("the plan writes valid JSON");
        let value = converted(value, conversion)
            .map_err(|e| shape(format!("field `{}`: {e}", c.name())))?;
        serde_json::to_writer(&mut *doc, &value).expect("JSON to a Vec cannot fail");
    }
    Ok(())
}

/// Closes the row's object with Sluice's metadata field: the version, and with `metadata`
/// the change's time in the database and its op.
fn finish_doc(doc: &mut Vec<u8>, version: u64, metadata: Option<(Option<i64>, &str)>) {
    if doc.last() != Some(&b'{') {
        doc.push(b',');
    }
    push_str(doc, META_FIELD);
    doc.extend_from_slice(b":{\"version\":");
    push_int(doc, version);
    if let Some((ts_ms, op)) = metadata {
        doc.extend_from_slice(b",\"ts_ms\":");
        match ts_ms {
            Some(t) => push_int(doc, t),
            None => doc.extend_from_slice(b"null"),
        }
        doc.extend_from_slice(b",\"op\":");
        push_str(doc, op);
    }
    doc.extend_from_slice(b"}}");
}

/// The envelope's fields in writer order, each with what the loader takes from it.
fn compile_envelope(schema: &Schema) -> Result<Vec<Step>, ShapeError> {
    let Schema::Record(envelope) = schema else {
        return Err(shape("the value is not an envelope record"));
    };
    let names = ResolvedSchema::try_from(schema).map_err(|e| shape(e.to_string()))?;
    let val = |s: &Schema| Val::of(s, &names, 0);
    let mut steps = Vec::with_capacity(envelope.fields.len());
    for f in &envelope.fields {
        steps.push(match f.name.as_str() {
            field::AFTER => Step::After(compile_after(&f.schema, &names), val(&f.schema)?),
            field::SOURCE => {
                let source = match &f.schema {
                    Schema::Ref { name } => lookup(&names, name)?,
                    s => s,
                };
                let Schema::Record(source) = source else {
                    return Err(shape("`source` is not a record"));
                };
                let fields = source
                    .fields
                    .iter()
                    .map(|sf| {
                        let v = val(&sf.schema)?;
                        Ok(match sf.name.as_str() {
                            source_field::CHANGE_VERSION => (SourceField::Version, v),
                            source_field::DB => (SourceField::Db, v),
                            source_field::TABLE => (SourceField::Table, v),
                            source_field::TS_MS => (SourceField::TsMs, v),
                            _ => (SourceField::Skip, v),
                        })
                    })
                    .collect::<Result<_, ShapeError>>()?;
                Step::Source(fields)
            }
            field::OP => Step::Op(val(&f.schema)?),
            field::TS_MS => Step::TsMs(val(&f.schema)?),
            _ => Step::Skip(val(&f.schema)?),
        });
    }
    for (name, present) in [
        (
            field::SOURCE,
            steps.iter().any(|s| matches!(s, Step::Source(_))),
        ),
        (field::OP, steps.iter().any(|s| matches!(s, Step::Op(_)))),
    ] {
        if !present {
            return Err(shape(format!("the envelope has no `{name}` field")));
        }
    }
    Ok(steps)
}

/// The row record `after` holds, compiled.
#[derive(Debug)]
struct AfterRow {
    /// The branch of `after`'s union that holds the row.
    branch: usize,
    columns: Vec<Column>,
    /// The record itself: the index mapping and the columns' conversions follow its fields.
    record: RecordSchema,
}

/// What a record's `after` turned out to be, while reading it.
enum After<'p> {
    Missing,
    Null,
    Row(&'p [Column]),
    Bad(&'p str),
}

/// The row record of compiled envelope steps.
fn row_record(steps: &[Step]) -> Option<&RecordSchema> {
    steps.iter().find_map(|s| match s {
        Step::After(Ok(row), _) => Some(&row.record),
        _ => None,
    })
}

/// The branch of `after`'s union that holds the row, and its columns.
fn compile_after(schema: &Schema, names: &ResolvedSchema<'_>) -> Result<AfterRow, String> {
    let Schema::Union(u) = schema else {
        return Err("`after` is not a union".into());
    };
    let (branch, row) = u
        .variants()
        .iter()
        .enumerate()
        .find_map(|(i, s)| {
            let s = match s {
                Schema::Ref { name } => lookup(names, name).ok()?,
                s => s,
            };
            match s {
                Schema::Record(r) => Some((i, r)),
                _ => None,
            }
        })
        .ok_or("`after` is a union without a row record")?;
    let columns = row
        .fields
        .iter()
        .map(|f| column(f, names))
        .collect::<Result<_, ShapeError>>()
        .map_err(|e| e.to_string())?;
    Ok(AfterRow {
        branch,
        columns,
        record: row.clone(),
    })
}

fn column(f: &RecordField, names: &ResolvedSchema<'_>) -> Result<Column, ShapeError> {
    let mut val = Val::of(&f.schema, names, 0)?;
    if is_bits(mysql_type(f)) {
        val = val.into_bits();
    }
    let mut key = Vec::with_capacity(f.name.len() + 3);
    push_str(&mut key, &f.name);
    key.push(b':');
    Ok(Column {
        key: key.into(),
        val,
        shadowed: f.name == META_FIELD,
    })
}

/// A key writer schema, compiled: the document id of a record's key.
#[derive(Debug)]
pub struct KeyPlan {
    fields: Result<Vec<Val>, String>,
    /// A key column is a record (GEOMETRY), written as a JSON object inside the id.
    objects: bool,
}

impl KeyPlan {
    /// Compiles a key schema (a record of the primary-key columns).
    pub fn new(schema: &Schema) -> KeyPlan {
        let fields: Result<Vec<Val>, String> = match (schema, ResolvedSchema::try_from(schema)) {
            (Schema::Record(r), Ok(names)) => r
                .fields
                .iter()
                .map(|f| column(f, &names).map(|c| c.val))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string()),
            (Schema::Record(_), Err(e)) => Err(e.to_string()),
            _ => Err("the key is not a record".into()),
        };
        let objects = fields
            .as_ref()
            .is_ok_and(|f| f.iter().any(Val::holds_record));
        KeyPlan { fields, objects }
    }

    /// The document id of a key's Avro body: the single value as text, or a JSON array of
    /// a composite key's values, which cannot collide with a single value's text.
    pub fn id(&self, body: &[u8]) -> Result<String, ShapeError> {
        let fields = self.fields.as_ref().map_err(|e| shape(e.clone()))?;
        let mut input = Input(body);
        let mut out = Vec::with_capacity(24);
        if let [single] = fields.as_slice() {
            single.write(&mut input, &mut out)?;
            if out.first() == Some(&b'"') {
                if !out.contains(&b'\\') {
                    out.pop();
                    out.remove(0);
                } else {
                    let s: String =
                        serde_json::from_slice(&out).expect("the plan writes valid JSON");
                    return Ok(s);
                }
            }
        } else {
            out.push(b'[');
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                f.write(&mut input, &mut out)?;
            }
            out.push(b']');
        }
        if self.objects {
            // Ids once took their objects' keys in alphabetical order (serde_json's map);
            // an id must not change, or the documents indexed under it would be orphaned.
            let value: Json = serde_json::from_slice(&out).expect("the plan writes valid JSON");
            out = serde_json::to_vec(&value).expect("JSON to a Vec cannot fail");
        }
        Ok(String::from_utf8(out).expect("the plan writes UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> fastrand::Rng {
        fastrand::Rng::with_seed(20261130)
    }

    fn write(val: &Val, avro: &[u8]) -> String {
        let mut out = Vec::new();
        val.write(&mut Input(avro), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn bytes_field(b: &[u8]) -> Vec<u8> {
        let mut avro = Vec::new();
        crate::encode::avro::write_long(&mut avro, b.len() as i64);
        avro.extend_from_slice(b);
        avro
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut rng = rng();
        let alphabet: Vec<char> = ('\0'..='\u{7f}')
            .chain(['é', '✓', '\u{2028}', '😀'])
            .collect();
        for _ in 0..2000 {
            let s: String = (0..rng.usize(0..24))
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            let mut out = Vec::new();
            push_str(&mut out, &s);
            assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn decimals_keep_every_digit() {
        let d = |s: &str, scale| {
            let b = s.parse::<BigInt>().unwrap().to_signed_bytes_be();
            write(&Val::Decimal { scale, fixed: None }, &bytes_field(&b))
        };
        assert_eq!(d("-123450", 4), r#""-12.3450""#);
        assert_eq!(d("5", 2), r#""0.05""#);
        assert_eq!(d("-5", 3), r#""-0.005""#);
        assert_eq!(d("0", 2), r#""0.00""#);
        assert_eq!(d("18446744073709551615", 0), u64::MAX.to_string());
        assert_eq!(d("-7", 0), "-7");
        assert_eq!(d("99999999999999999999", 0), r#""99999999999999999999""#);
        let big = format!("-{}", "9".repeat(65));
        assert_eq!(
            d(&big, 30),
            format!(r#""-{}.{}""#, "9".repeat(35), "9".repeat(30))
        );
    }

    #[test]
    fn random_decimals_read_as_their_big_integer_says() {
        let mut rng = rng();
        for _ in 0..5000 {
            let bytes: Vec<u8> = (0..rng.usize(1..=24)).map(|_| rng.u8(..)).collect();
            let scale = rng.usize(0..=38);
            let unscaled = BigInt::from_signed_bytes_be(&bytes);
            let digits = unscaled.magnitude().to_string();
            let expected = match (scale, i64::try_from(&unscaled), u64::try_from(&unscaled)) {
                (0, Ok(i), _) => i.to_string(),
                (0, _, Ok(u)) => u.to_string(),
                (0, _, _) => format!("\"{unscaled}\""),
                _ => {
                    let digits = format!("{digits:0>width$}", width = scale + 1);
                    let (int, frac) = digits.split_at(digits.len() - scale);
                    let sign = if unscaled.sign() == num_bigint::Sign::Minus {
                        "-"
                    } else {
                        ""
                    };
                    format!("\"{sign}{int}.{frac}\"")
                }
            };
            let val = Val::Decimal { scale, fixed: None };
            assert_eq!(
                write(&val, &bytes_field(&bytes)),
                expected,
                "{bytes:?} scale {scale}"
            );
        }
    }

    #[test]
    fn floats_are_their_shortest_single_precision_text() {
        let mut rng = rng();
        for _ in 0..20000 {
            let f = f32::from_bits(rng.u32(..));
            if !f.is_finite() {
                continue;
            }
            // What a float column is: the shortest f32 text, read as a double.
            let expected = serde_json::Number::from_f64(f.to_string().parse().unwrap()).unwrap();
            let text = write(&Val::Float, &f.to_le_bytes());
            assert_eq!(text, serde_json::to_string(&expected).unwrap(), "{f}");
        }
        let nan = f32::NAN.to_le_bytes();
        assert!(Val::Float.write(&mut Input(&nan), &mut Vec::new()).is_err());
    }

    #[test]
    fn bits_are_numbers_and_vectors_arrays_of_floats() {
        assert_eq!(write(&Val::Bits, &bytes_field(&[1, 2])), "258");
        assert_eq!(
            write(&Val::Bits, &bytes_field(&[0xff; 9])),
            r#""////////////""#
        );
        let mut avro = Vec::new();
        crate::encode::avro::write_long(&mut avro, 2);
        avro.extend_from_slice(&1.1f32.to_le_bytes());
        avro.extend_from_slice(&(-0.5f32).to_le_bytes());
        avro.push(0);
        assert_eq!(
            write(&Val::Array(Box::new(Val::Float)), &avro),
            "[1.1,-0.5]"
        );
    }

    #[test]
    fn composite_ids_cannot_collide_with_single_ones() {
        let schema = |n: usize| {
            let fields: Vec<_> = (0..n)
                .map(|i| serde_json::json!({"name": format!("k{i}"), "type": "string"}))
                .collect();
            Schema::parse(&serde_json::json!({"type": "record", "name": "Key", "fields": fields}))
                .unwrap()
        };
        let key = |vals: &[&str]| {
            let mut avro = Vec::new();
            for v in vals {
                avro.extend(bytes_field(v.as_bytes()));
            }
            avro
        };
        assert_eq!(
            KeyPlan::new(&schema(1)).id(&key(&["a\"b"])).unwrap(),
            "a\"b"
        );
        assert_eq!(
            KeyPlan::new(&schema(2)).id(&key(&["a,b", "c"])).unwrap(),
            r#"["a,b","c"]"#
        );
        assert_eq!(
            KeyPlan::new(&schema(2)).id(&key(&["a", "b,c"])).unwrap(),
            r#"["a","b,c"]"#
        );
    }

    #[test]
    fn geometry_in_a_key_keeps_the_ids_it_always_had() {
        let schema = Schema::parse(
            &serde_json::json!({"type": "record", "name": "Key", "fields": [
                {"name": "g", "type": {"type": "record", "name": "Geometry", "fields": [
                    {"name": "wkb", "type": "bytes"},
                    {"name": "srid", "type": ["null", "int"], "default": null},
                ]}},
            ]}),
        )
        .unwrap();
        let mut avro = bytes_field(&[1, 2, 3]);
        avro.push(2); // union branch 1: int
        crate::encode::avro::write_long(&mut avro, 4326);
        assert_eq!(
            KeyPlan::new(&schema).id(&avro).unwrap(),
            r#"{"srid":4326,"wkb":"AQID"}"#
        );
    }

    #[test]
    fn wide_integral_decimals_are_still_numbers() {
        let mut wide = vec![0xff; 17];
        wide[16] = 0xfb; // -5 sign-extended over 17 bytes
        let val = Val::Decimal {
            scale: 0,
            fixed: None,
        };
        assert_eq!(write(&val, &bytes_field(&wide)), "-5");
    }

    #[test]
    fn a_record_that_is_not_the_schemas_is_refused() {
        let err = Val::Boolean
            .write(&mut Input(&[2]), &mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("not an Avro boolean"), "{err}");
        // An array claiming a billion items in three bytes.
        let mut avro = Vec::new();
        crate::encode::avro::write_long(&mut avro, 1_000_000_000);
        let array = Val::Array(Box::new(Val::Null));
        assert!(array.write(&mut Input(&avro), &mut Vec::new()).is_err());
        assert!(array.skip(&mut Input(&avro)).is_err());
    }

    #[test]
    fn a_record_cut_short_is_refused_not_misread() {
        let avro = bytes_field(b"abcdef");
        let err = Val::String
            .write(&mut Input(&avro[..4]), &mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("ends early"), "{err}");
        let err = Val::Long
            .write(&mut Input(&[0x80; 3]), &mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("ends early"), "{err}");
    }
}
