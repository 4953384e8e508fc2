//! PostgreSQL types → Arrow: which Arrow type a column becomes ([`column_type`]), and
//! decoders that append PostgreSQL binary (or text) values straight into Arrow builders
//! ([`BatchBuilder`]).
//!
//! | PostgreSQL | Arrow |
//! |---|---|
//! | `bool` | Boolean |
//! | `int2`, `int4`, `int8`, `oid` | Int16, Int32, Int64, Int64 |
//! | `float4`, `float8` | Float32, Float64 |
//! | `numeric(p,s)`, p ≤ 38 | Decimal128(p, s) |
//! | `numeric` unconstrained or p > 38 | Utf8 (exact text) |
//! | `text`, `varchar`, `char`, `name`, `json`, `jsonb`, `uuid` | Utf8 |
//! | `bytea` | Binary |
//! | `date` | Date32 |
//! | `time` | Time64(µs) |
//! | `timestamp` | Timestamp(µs) |
//! | `timestamptz` | Timestamp(µs, "UTC") |
//! | one-dimensional arrays of the above | List |
//! | anything else | Utf8, read as text (`::text`) |
//!
//! Infinite dates and timestamps and numeric NaN/±Infinity have no Arrow value: reading
//! one fails with the column's name (cast it in SQL to keep it).

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch};
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};

use crate::Error;

/// Type OIDs this module knows.
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// Days from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// How a column is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// Binary values of this scalar type OID.
    Binary(u32),
    /// A one-dimensional array of this element OID, binary.
    Array(u32),
    /// Text (the column is cast to `text`, or requested in text format).
    Text,
}

/// The Arrow type of a column of type `type_oid` with modifier `typmod`; `elem_oid` is
/// the element type of an array type (0 otherwise). Returns the Arrow type and how to
/// read it.
pub fn column_type(type_oid: u32, typmod: i32, elem_oid: u32) -> (DataType, Read) {
    if let Some(t) = scalar(type_oid, typmod) {
        return (t, Read::Binary(type_oid));
    }
    if elem_oid != 0
        && let Some(t) = scalar(elem_oid, typmod)
    {
        return (
            DataType::List(Arc::new(Field::new("item", t, true))),
            Read::Array(elem_oid),
        );
    }
    (DataType::Utf8, Read::Text)
}

fn scalar(type_oid: u32, typmod: i32) -> Option<DataType> {
    Some(match type_oid {
        oid::BOOL => DataType::Boolean,
        oid::INT2 => DataType::Int16,
        oid::INT4 => DataType::Int32,
        oid::INT8 | oid::OID => DataType::Int64,
        oid::FLOAT4 => DataType::Float32,
        oid::FLOAT8 => DataType::Float64,
        oid::NUMERIC => match numeric_precision(typmod) {
            Some((p, s)) if p <= 38 => DataType::Decimal128(p as u8, s as i8),
            _ => return None, // exact text
        },
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::JSON | oid::JSONB | oid::UUID => {
            DataType::Utf8
        }
        oid::BYTEA => DataType::Binary,
        oid::DATE => DataType::Date32,
        oid::TIME => DataType::Time64(TimeUnit::Microsecond),
        oid::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        oid::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        _ => return None,
    })
}

/// The element type of a built-in one-dimensional array type (0 for other types): what a
/// RowDescription's type OID says without a catalog lookup.
pub fn array_element(type_oid: u32) -> u32 {
    match type_oid {
        1000 => oid::BOOL,
        1001 => oid::BYTEA,
        1005 => oid::INT2,
        1007 => oid::INT4,
        1016 => oid::INT8,
        1021 => oid::FLOAT4,
        1022 => oid::FLOAT8,
        1009 => oid::TEXT,
        1014 => oid::BPCHAR,
        1015 => oid::VARCHAR,
        1182 => oid::DATE,
        1183 => oid::TIME,
        1115 => oid::TIMESTAMP,
        1185 => oid::TIMESTAMPTZ,
        1231 => oid::NUMERIC,
        2951 => oid::UUID,
        199 => oid::JSON,
        3807 => oid::JSONB,
        _ => 0,
    }
}

/// `(precision, scale)` of a `numeric(p,s)` modifier; `None` when unconstrained.
pub fn numeric_precision(typmod: i32) -> Option<(u32, u32)> {
    if typmod < 4 {
        return None;
    }
    let t = (typmod - 4) as u32;
    let (p, s) = ((t >> 16) & 0xffff, t & 0xffff);
    (s <= p).then_some((p, s))
}

/// Appends the values of one column.
enum Decoder {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    Oid(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Decimal(Decimal128Builder, u32),
    Text(StringBuilder),
    Jsonb(StringBuilder),
    Uuid(StringBuilder),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Ts(TimestampMicrosecondBuilder),
    List {
        field: FieldRef,
        elem_oid: u32,
        offsets: Vec<i32>,
        nulls: Vec<bool>,
        child: Box<Decoder>,
    },
}

fn bad(column: &str, what: &str) -> Error {
    Error::Source(format!("column `{column}`: {what}"))
}

impl Decoder {
    fn new(data_type: &DataType, read: &Read) -> Decoder {
        match read {
            Read::Text => Decoder::Text(StringBuilder::new()),
            Read::Array(elem) => {
                let DataType::List(field) = data_type else {
                    unreachable!("arrays are lists")
                };
                Decoder::List {
                    field: field.clone(),
                    elem_oid: *elem,
                    offsets: vec![0],
                    nulls: Vec::new(),
                    child: Box::new(Decoder::new(field.data_type(), &Read::Binary(*elem))),
                }
            }
            Read::Binary(o) => match (*o, data_type) {
                (oid::BOOL, _) => Decoder::Bool(BooleanBuilder::new()),
                (oid::INT2, _) => Decoder::I16(Int16Builder::new()),
                (oid::INT4, _) => Decoder::I32(Int32Builder::new()),
                (oid::INT8, _) => Decoder::I64(Int64Builder::new()),
                (oid::OID, _) => Decoder::Oid(Int64Builder::new()),
                (oid::FLOAT4, _) => Decoder::F32(Float32Builder::new()),
                (oid::FLOAT8, _) => Decoder::F64(Float64Builder::new()),
                (oid::NUMERIC, DataType::Decimal128(p, s)) => Decoder::Decimal(
                    Decimal128Builder::new()
                        .with_precision_and_scale(*p, *s)
                        .expect("valid"),
                    *s as u32,
                ),
                (oid::JSONB, _) => Decoder::Jsonb(StringBuilder::new()),
                (oid::UUID, _) => Decoder::Uuid(StringBuilder::new()),
                (oid::BYTEA, _) => Decoder::Bytes(BinaryBuilder::new()),
                (oid::DATE, _) => Decoder::Date(Date32Builder::new()),
                (oid::TIME, _) => Decoder::Time(Time64MicrosecondBuilder::new()),
                (oid::TIMESTAMP, _) => Decoder::Ts(TimestampMicrosecondBuilder::new()),
                (oid::TIMESTAMPTZ, _) => {
                    Decoder::Ts(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
                }
                _ => Decoder::Text(StringBuilder::new()),
            },
        }
    }

    fn append(&mut self, v: Option<&[u8]>, column: &str) -> Result<(), Error> {
        use postgres_protocol::types as t;
        let conv = |e: Box<dyn std::error::Error + Sync + Send>| bad(column, &e.to_string());
        let Some(v) = v else {
            match self {
                Decoder::Bool(b) => b.append_null(),
                Decoder::I16(b) => b.append_null(),
                Decoder::I32(b) => b.append_null(),
                Decoder::I64(b) | Decoder::Oid(b) => b.append_null(),
                Decoder::F32(b) => b.append_null(),
                Decoder::F64(b) => b.append_null(),
                Decoder::Decimal(b, _) => b.append_null(),
                Decoder::Text(b) | Decoder::Jsonb(b) | Decoder::Uuid(b) => b.append_null(),
                Decoder::Bytes(b) => b.append_null(),
                Decoder::Date(b) => b.append_null(),
                Decoder::Time(b) => b.append_null(),
                Decoder::Ts(b) => b.append_null(),
                Decoder::List { offsets, nulls, .. } => {
                    offsets.push(*offsets.last().expect("starts with 0"));
                    nulls.push(false);
                }
            }
            return Ok(());
        };
        match self {
            Decoder::Bool(b) => b.append_value(t::bool_from_sql(v).map_err(conv)?),
            Decoder::I16(b) => b.append_value(t::int2_from_sql(v).map_err(conv)?),
            Decoder::I32(b) => b.append_value(t::int4_from_sql(v).map_err(conv)?),
            Decoder::I64(b) => b.append_value(t::int8_from_sql(v).map_err(conv)?),
            Decoder::Oid(b) => b.append_value(i64::from(t::oid_from_sql(v).map_err(conv)?)),
            Decoder::F32(b) => b.append_value(t::float4_from_sql(v).map_err(conv)?),
            Decoder::F64(b) => b.append_value(t::float8_from_sql(v).map_err(conv)?),
            Decoder::Decimal(b, scale) => b.append_value(numeric_to_i128(v, *scale, column)?),
            Decoder::Text(b) => b.append_value(
                std::str::from_utf8(v).map_err(|_| bad(column, "text is not UTF-8"))?,
            ),
            Decoder::Jsonb(b) => {
                let (version, text) = v.split_first().ok_or_else(|| bad(column, "empty jsonb"))?;
                if *version != 1 {
                    return Err(bad(
                        column,
                        &format!("jsonb version {version} is not supported"),
                    ));
                }
                b.append_value(
                    std::str::from_utf8(text).map_err(|_| bad(column, "jsonb is not UTF-8"))?,
                )
            }
            Decoder::Uuid(b) => {
                let u = t::uuid_from_sql(v).map_err(conv)?;
                b.append_value(format_uuid(&u));
            }
            Decoder::Bytes(b) => b.append_value(v),
            Decoder::Date(b) => {
                let d = t::date_from_sql(v).map_err(conv)?;
                if d == i32::MAX || d == i32::MIN {
                    return Err(bad(
                        column,
                        "an infinite date has no Arrow value; cast it in SQL",
                    ));
                }
                b.append_value(d + PG_EPOCH_DAYS)
            }
            Decoder::Time(b) => b.append_value(t::time_from_sql(v).map_err(conv)?),
            Decoder::Ts(b) => {
                let ts = t::timestamp_from_sql(v).map_err(conv)?;
                if ts == i64::MAX || ts == i64::MIN {
                    return Err(bad(
                        column,
                        "an infinite timestamp has no Arrow value; cast it in SQL",
                    ));
                }
                b.append_value(
                    ts.checked_add(PG_EPOCH_MICROS)
                        .ok_or_else(|| bad(column, "timestamp out of range"))?,
                )
            }
            Decoder::List {
                elem_oid,
                offsets,
                nulls,
                child,
                ..
            } => {
                use fallible_iterator::FallibleIterator;
                let array = t::array_from_sql(v).map_err(conv)?;
                if array.element_type() != *elem_oid {
                    return Err(bad(column, "array element type changed"));
                }
                if array.dimensions().count().map_err(conv)? > 1 {
                    return Err(bad(
                        column,
                        "a multi-dimensional array is not supported; cast it in SQL",
                    ));
                }
                let mut values = array.values();
                let mut n = 0i32;
                while let Some(e) = values.next().map_err(conv)? {
                    child.append(e, column)?;
                    n += 1;
                }
                offsets.push(*offsets.last().expect("starts with 0") + n);
                nulls.push(true);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Decoder::Bool(b) => Arc::new(b.finish()),
            Decoder::I16(b) => Arc::new(b.finish()),
            Decoder::I32(b) => Arc::new(b.finish()),
            Decoder::I64(b) | Decoder::Oid(b) => Arc::new(b.finish()),
            Decoder::F32(b) => Arc::new(b.finish()),
            Decoder::F64(b) => Arc::new(b.finish()),
            Decoder::Decimal(b, _) => Arc::new(b.finish()),
            Decoder::Text(b) | Decoder::Jsonb(b) | Decoder::Uuid(b) => Arc::new(b.finish()),
            Decoder::Bytes(b) => Arc::new(b.finish()),
            Decoder::Date(b) => Arc::new(b.finish()),
            Decoder::Time(b) => Arc::new(b.finish()),
            Decoder::Ts(b) => Arc::new(b.finish()),
            Decoder::List {
                field,
                offsets,
                nulls,
                child,
                ..
            } => {
                let values = child.finish();
                let offs =
                    arrow_buffer::OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                let validity = arrow_buffer::NullBuffer::from(std::mem::take(nulls));
                Arc::new(ListArray::new(field.clone(), offs, values, Some(validity)))
            }
        }
    }
}

fn format_uuid(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A binary `numeric` as the unscaled integer of a decimal with `scale` digits after
/// the point. Fails on NaN, infinities, overflow and on digits the scale would drop.
pub fn numeric_to_i128(v: &[u8], scale: u32, column: &str) -> Result<i128, Error> {
    if v.len() < 8 {
        return Err(bad(column, "a malformed numeric"));
    }
    let ndigits = i16::from_be_bytes([v[0], v[1]]).max(0) as usize;
    let weight = i16::from_be_bytes([v[2], v[3]]) as i32;
    let sign = u16::from_be_bytes([v[4], v[5]]);
    if v.len() < 8 + 2 * ndigits {
        return Err(bad(column, "a malformed numeric"));
    }
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err(bad(column, "NaN has no decimal value; cast it in SQL")),
        _ => {
            return Err(bad(
                column,
                "an infinite numeric has no decimal value; cast it in SQL",
            ));
        }
    }
    let overflow = || bad(column, "the value does not fit its declared precision");
    // value = sum(digit[i] * 10000^(weight - i)); unscaled = value * 10^scale
    let mut acc: i128 = 0;
    for i in 0..ndigits {
        let d = u16::from_be_bytes([v[8 + 2 * i], v[9 + 2 * i]]) as i128;
        acc = acc
            .checked_mul(10_000)
            .and_then(|a| a.checked_add(d))
            .ok_or_else(overflow)?;
    }
    // exponent (base 10) of the last digit group, plus the scale
    let exp = 4 * (weight - ndigits as i32 + 1) + scale as i32;
    if exp >= 0 {
        for _ in 0..exp {
            acc = acc.checked_mul(10).ok_or_else(overflow)?;
        }
    } else {
        for _ in 0..-exp {
            if acc % 10 != 0 {
                return Err(bad(column, "the value has more decimals than its scale"));
            }
            acc /= 10;
        }
    }
    Ok(if sign == 0x4000 { -acc } else { acc })
}

/// One column of a [`BatchBuilder`].
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
    pub read: Read,
}

impl Column {
    /// A column of type `type_oid`/`typmod` (array element `elem_oid`, or 0).
    pub fn new(
        name: impl Into<String>,
        type_oid: u32,
        typmod: i32,
        elem_oid: u32,
        nullable: bool,
    ) -> Column {
        let (data_type, read) = column_type(type_oid, typmod, elem_oid);
        Column {
            name: name.into(),
            data_type,
            nullable,
            read,
        }
    }

    /// Whether the value comes in PostgreSQL's binary format (otherwise as text).
    pub fn binary(&self) -> bool {
        self.read != Read::Text
    }
}

/// The Arrow schema of `columns`.
pub fn schema(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// Builds record batches from rows.
pub struct BatchBuilder {
    schema: SchemaRef,
    names: Vec<String>,
    decoders: Vec<Decoder>,
    rows: usize,
}

impl BatchBuilder {
    pub fn new(columns: &[Column]) -> BatchBuilder {
        BatchBuilder {
            schema: schema(columns),
            names: columns.iter().map(|c| c.name.clone()).collect(),
            decoders: columns
                .iter()
                .map(|c| Decoder::new(&c.data_type, &c.read))
                .collect(),
            rows: 0,
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows appended since the last [`BatchBuilder::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one row; its fields must be the columns, in order.
    pub fn append(&mut self, row: &super::Row<'_>) -> Result<(), Error> {
        if row.len() != self.decoders.len() {
            return Err(Error::Source(format!(
                "a row has {} fields, expected {}",
                row.len(),
                self.decoders.len()
            )));
        }
        for (i, d) in self.decoders.iter_mut().enumerate() {
            let v = row.get(i);
            if v.is_none() && !self.schema.field(i).is_nullable() {
                return Err(bad(&self.names[i], "NULL in a NOT NULL column"));
            }
            d.append(v, &self.names[i])?;
        }
        self.rows += 1;
        Ok(())
    }

    /// The rows appended so far as a batch; the builder starts over.
    pub fn finish(&mut self) -> Result<RecordBatch, Error> {
        let columns: Vec<ArrayRef> = self.decoders.iter_mut().map(Decoder::finish).collect();
        self.rows = 0;
        if columns.is_empty() {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(digits.len() as i16).to_be_bytes());
        v.extend_from_slice(&weight.to_be_bytes());
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_become_exact_decimals() {
        // 12345.6789 = [1, 2345, 6789] weight 1
        let v = numeric(1, 0, 4, &[1, 2345, 6789]);
        assert_eq!(numeric_to_i128(&v, 4, "c").unwrap(), 123_456_789);
        assert_eq!(numeric_to_i128(&v, 6, "c").unwrap(), 12_345_678_900);
        assert!(
            numeric_to_i128(&v, 2, "c").is_err(),
            "digits would be dropped"
        );
        // -0.05 = [500] weight -1
        let v = numeric(-1, 0x4000, 2, &[500]);
        assert_eq!(numeric_to_i128(&v, 2, "c").unwrap(), -5);
        // 0
        assert_eq!(numeric_to_i128(&numeric(0, 0, 0, &[]), 3, "c").unwrap(), 0);
        // 1e8 = [1] weight 2
        assert_eq!(
            numeric_to_i128(&numeric(2, 0, 0, &[1]), 0, "c").unwrap(),
            100_000_000
        );
        assert!(
            numeric_to_i128(&numeric(0, 0xC000, 0, &[]), 0, "c")
                .unwrap_err()
                .to_string()
                .contains("NaN")
        );
        assert_eq!(numeric_precision(((12 << 16) | 2) + 4), Some((12, 2)));
        assert_eq!(numeric_precision(-1), None);
    }

    #[test]
    fn types_map_as_documented() {
        assert_eq!(
            column_type(oid::NUMERIC, ((10 << 16) | 2) + 4, 0).0,
            DataType::Decimal128(10, 2)
        );
        assert_eq!(
            column_type(oid::NUMERIC, -1, 0),
            (DataType::Utf8, Read::Text)
        );
        assert_eq!(
            column_type(oid::NUMERIC, ((50 << 16) | 2) + 4, 0).1,
            Read::Text
        );
        assert_eq!(
            column_type(1007, -1, oid::INT4).0,
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true)))
        );
        assert_eq!(
            column_type(600, -1, 0),
            (DataType::Utf8, Read::Text),
            "point as text"
        );
        assert_eq!(
            format_uuid(&[0xab; 16]),
            "abababab-abab-abab-abab-abababababab"
        );
    }
}
