//! JSON records → Arrow: column kinds, RFC 3339 timestamps, and record batches from
//! `serde_json` objects. Shared by the JSON-API connectors.
//!
//! ```ignore
//! use agnes_connector_sdk::json::{schema, to_batch, Kind};
//! let schema = schema(&[("id", Kind::Int64), ("name", Kind::String), ("updated", Kind::Timestamp)]);
//! let records: Vec<serde_json::Value> = page["items"].as_array().cloned().unwrap_or_default();
//! ctx.emit("items", &to_batch("items", &schema, &records)?)?;
//! ```

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::Error;

mod decode;
pub use decode::{Records, decode_records};

/// A declared column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    /// `int64`, `float64`, `boolean`, `string`, `timestamp` (RFC 3339 text → UTC
    /// microseconds) or `json` (any value, kept as JSON text).
    #[serde(rename = "type")]
    pub kind: Kind,
}

/// Column types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Int64,
    Float64,
    Boolean,
    String,
    Timestamp,
    Json,
}

impl Kind {
    pub fn data_type(self) -> DataType {
        match self {
            Kind::Int64 => DataType::Int64,
            Kind::Float64 => DataType::Float64,
            Kind::Boolean => DataType::Boolean,
            Kind::String | Kind::Json => DataType::Utf8,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    pub fn of(value: &Value) -> Option<Kind> {
        match value {
            Value::Null => None,
            Value::Bool(_) => Some(Kind::Boolean),
            Value::Number(n) if n.is_i64() => Some(Kind::Int64),
            Value::Number(_) => Some(Kind::Float64),
            Value::String(s) if parse_timestamp(s).is_some() => Some(Kind::Timestamp),
            Value::String(_) => Some(Kind::String),
            Value::Array(_) | Value::Object(_) => Some(Kind::Json),
        }
    }

    /// The narrowest kind holding both.
    pub fn unify(self, other: Kind) -> Kind {
        match (self, other) {
            (a, b) if a == b => a,
            (Kind::Int64, Kind::Float64) | (Kind::Float64, Kind::Int64) => Kind::Float64,
            (Kind::Timestamp, Kind::String) | (Kind::String, Kind::Timestamp) => Kind::String,
            _ => Kind::Json,
        }
    }
}

/// RFC 3339 / ISO 8601 text with a time → UTC microseconds. Plain numbers and dates
/// without a time are not timestamps.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    // Jira and others write offsets as +0000; RFC 3339 wants +00:00
    let fixed;
    let s = match s.as_bytes() {
        [.., sign @ (b'+' | b'-'), h1, h2, m1, m2]
            if s.len() > 24 && [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()) =>
        {
            let _ = sign;
            fixed = format!("{}:{}", &s[..s.len() - 2], &s[s.len() - 2..]);
            fixed.as_str()
        }
        _ => s,
    };
    if s.len() < 19 || !s.as_bytes()[..4].iter().all(u8::is_ascii_digit) || s.as_bytes()[4] != b'-'
    {
        return None;
    }
    arrow_cast::parse::string_to_timestamp_nanos(s)
        .ok()
        .map(|ns| ns.div_euclid(1000))
}

/// The field of a column: nullable; `json` columns carry `agnes.kind = json` metadata so
/// [`to_batch`] writes any value (strings too) as JSON text.
pub fn field(name: &str, kind: Kind) -> Field {
    let f = Field::new(name, kind.data_type(), true);
    if kind == Kind::Json {
        f.with_metadata([("agnes.kind".to_string(), "json".to_string())].into())
    } else {
        f
    }
}

/// A schema of `columns`, in order.
pub fn schema(columns: &[(&str, Kind)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, k)| field(n, *k))
            .collect::<Vec<_>>(),
    ))
}

/// A JSON value as plain text: a string without its quotes, anything else as JSON (for
/// cursors, ids and query parameters).
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON value, shortened for error messages.
pub fn snippet(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        format!("{}…", &s[..s.floor_char_boundary(120)])
    } else {
        s
    }
}

/// Records → one batch of `schema`. A value that does not fit its column fails with the
/// field and the value.
pub fn to_batch(table: &str, schema: &SchemaRef, records: &[Value]) -> Result<RecordBatch, Error> {
    let bad = |field: &str, v: &Value, kind: &str| {
        Error::Source(format!(
            "{table}: field `{field}` = {} is not {kind}; declare it as `string` or `json`",
            snippet(v)
        ))
    };
    let empty = Map::new();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name();
        let values = records.iter().map(|r| {
            r.as_object()
                .unwrap_or(&empty)
                .get(name)
                .unwrap_or(&Value::Null)
        });
        let json_text = field
            .metadata()
            .get("agnes.kind")
            .is_some_and(|k| k == "json");
        let array: ArrayRef = match field.data_type() {
            DataType::Int64 => {
                let mut b = Int64Builder::with_capacity(records.len());
                for v in values {
                    match v {
                        Value::Null => b.append_null(),
                        Value::Number(n) => {
                            b.append_value(n.as_i64().ok_or_else(|| bad(name, v, "an integer"))?)
                        }
                        Value::String(s) => {
                            b.append_value(s.parse().map_err(|_| bad(name, v, "an integer"))?)
                        }
                        _ => return Err(bad(name, v, "an integer")),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Float64 => {
                let mut b = Float64Builder::with_capacity(records.len());
                for v in values {
                    match v {
                        Value::Null => b.append_null(),
                        Value::Number(n) => {
                            b.append_value(n.as_f64().ok_or_else(|| bad(name, v, "a number"))?)
                        }
                        Value::String(s) => {
                            b.append_value(s.parse().map_err(|_| bad(name, v, "a number"))?)
                        }
                        _ => return Err(bad(name, v, "a number")),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(records.len());
                for v in values {
                    match v {
                        Value::Null => b.append_null(),
                        Value::Bool(x) => b.append_value(*x),
                        _ => return Err(bad(name, v, "a boolean")),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Timestamp(_, tz) => {
                let mut b = TimestampMicrosecondBuilder::with_capacity(records.len())
                    .with_timezone_opt(tz.clone());
                for v in values {
                    match v {
                        Value::Null => b.append_null(),
                        Value::String(s) => b.append_value(
                            parse_timestamp(s)
                                .ok_or_else(|| bad(name, v, "an RFC 3339 timestamp"))?,
                        ),
                        _ => return Err(bad(name, v, "an RFC 3339 timestamp")),
                    }
                }
                Arc::new(b.finish())
            }
            _ => {
                let mut b = StringBuilder::with_capacity(records.len(), records.len() * 16);
                for v in values {
                    match v {
                        Value::Null => b.append_null(),
                        Value::String(s) if !json_text => b.append_value(s),
                        other => b.append_value(other.to_string()),
                    }
                }
                Arc::new(b.finish())
            }
        };
        columns.push(array);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let t = parse_timestamp("2024-01-02T03:04:05Z").unwrap();
        assert_eq!(t, 1_704_164_645_000_000);
        assert_eq!(
            parse_timestamp("2024-01-02T04:04:05.000+0100"),
            Some(t),
            "Jira's +hhmm offsets"
        );
        assert_eq!(parse_timestamp("2024-01-02T04:04:05+01:00"), Some(t));
        for not in ["2024-01-02", "12345678901234567890", "yesterday at noon!!"] {
            assert_eq!(parse_timestamp(not), None, "{not}");
        }
    }

    #[test]
    fn kinds_unify() {
        assert_eq!(Kind::Int64.unify(Kind::Float64), Kind::Float64);
        assert_eq!(Kind::Timestamp.unify(Kind::String), Kind::String);
        assert_eq!(Kind::Boolean.unify(Kind::Int64), Kind::Json);
    }
}
