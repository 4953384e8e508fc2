//! JSON text → Arrow column builders in one pass, without `serde_json::Value` trees: a
//! serde visitor walks the response to the records array and appends each record's fields
//! straight into the builders (keys and strings borrowed from the input, no allocation per
//! value). The rest of the response is kept as a `Value` for the pagination pointers.
//!
//! It takes only the common path. Anything else — a type that does not fit its column, a
//! key twice in one record, a record that is not an object, a pointer through an array,
//! invalid JSON — makes [`decode_records`] answer `None`, and the caller runs the general
//! `Value` path ([`super::to_batch`]), which gives the same table or the same error.

use std::fmt;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::parse_timestamp;

/// One page decoded by [`decode_records`].
#[derive(Debug)]
pub struct Records {
    /// The records, in the schema given.
    pub batch: RecordBatch,
    /// The response with the records array emptied (for `next` pointers and the like).
    pub rest: Value,
    /// The values of the watched field, one per record that has it (null included).
    pub watched: Vec<Value>,
}

/// Decodes the records at JSON pointer `pointer` (`""`: the response is the array) of
/// `body` into a batch of `schema` (built by [`super::schema`]), collecting the values of
/// field `watch` (an incremental cursor) on the way. `None`: use the `Value` path.
pub fn decode_records(
    schema: &SchemaRef,
    body: &[u8],
    pointer: &str,
    watch: Option<&str>,
) -> Option<Records> {
    let path = pointer_segments(pointer)?;
    let mut builders: Vec<Column> = schema
        .fields()
        .iter()
        .map(|f| {
            Column::new(
                f.data_type(),
                f.metadata().get("agnes.kind").is_some_and(|k| k == "json"),
            )
        })
        .collect::<Option<_>>()?;
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let watch_column = watch.and_then(|w| names.iter().position(|n| *n == w));
    let mut st = State {
        names: &names,
        builders: &mut builders,
        set: vec![0; names.len()],
        rows: 0,
        hint: 0,
        watch,
        watch_column,
        watched: Vec::new(),
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let rest = (AtPath {
        path: &path,
        st: &mut st,
    })
    .deserialize(&mut de)
    .ok()?;
    de.end().ok()?;
    let watched = std::mem::take(&mut st.watched);
    let columns: Vec<ArrayRef> = builders.into_iter().map(Column::finish).collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).ok()?;
    Some(Records {
        batch,
        rest,
        watched,
    })
}

/// `/a/b~1c` → `["a", "b/c"]`; `None` for a malformed pointer.
fn pointer_segments(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

enum Column {
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Time(TimestampMicrosecondBuilder),
    Text(StringBuilder),
    /// Any value, as JSON text.
    Json(StringBuilder),
}

impl Column {
    fn new(ty: &DataType, json: bool) -> Option<Column> {
        Some(match ty {
            DataType::Int64 => Column::Int(Int64Builder::new()),
            DataType::Float64 => Column::Float(Float64Builder::new()),
            DataType::Boolean => Column::Bool(BooleanBuilder::new()),
            DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, tz) => {
                Column::Time(TimestampMicrosecondBuilder::new().with_timezone_opt(tz.clone()))
            }
            DataType::Utf8 if json => Column::Json(StringBuilder::new()),
            DataType::Utf8 => Column::Text(StringBuilder::new()),
            _ => return None,
        })
    }

    fn append_null(&mut self) {
        match self {
            Column::Int(b) => b.append_null(),
            Column::Float(b) => b.append_null(),
            Column::Bool(b) => b.append_null(),
            Column::Time(b) => b.append_null(),
            Column::Text(b) | Column::Json(b) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Column::Int(mut b) => Arc::new(b.finish()),
            Column::Float(mut b) => Arc::new(b.finish()),
            Column::Bool(mut b) => Arc::new(b.finish()),
            Column::Time(mut b) => Arc::new(b.finish()),
            Column::Text(mut b) | Column::Json(mut b) => Arc::new(b.finish()),
        }
    }
}

struct State<'a> {
    names: &'a [&'a str],
    builders: &'a mut [Column],
    /// Per column: the row number + 1 it was last set in (a key twice in one record).
    set: Vec<usize>,
    rows: usize,
    /// The column after the last one seen: records usually repeat their key order.
    hint: usize,
    watch: Option<&'a str>,
    watch_column: Option<usize>,
    watched: Vec<Value>,
}

/// The fast path does not take this input (the caller falls back).
fn refuse<E: de::Error>() -> E {
    E::custom("not on the fast path")
}

/// Walks objects along the pointer; returns the document with the records array emptied.
struct AtPath<'p, 's, 'a> {
    path: &'p [String],
    st: &'s mut State<'a>,
}

impl<'de> DeserializeSeed<'de> for AtPath<'_, '_, '_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.path.is_empty() {
            d.deserialize_seq(RecordsVisitor(self.st))?;
            Ok(Value::Array(Vec::new()))
        } else {
            d.deserialize_map(self)
        }
    }
}

impl<'de> Visitor<'de> for AtPath<'_, '_, '_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            let value = if !found && key == self.path[0] {
                found = true;
                map.next_value_seed(AtPath {
                    path: &self.path[1..],
                    st: &mut *self.st,
                })?
            } else {
                map.next_value::<Value>()?
            };
            if out.insert(key, value).is_some() {
                return Err(refuse());
            }
        }
        if found {
            Ok(Value::Object(out))
        } else {
            Err(refuse())
        }
    }
}

struct RecordsVisitor<'s, 'a>(&'s mut State<'a>);

impl<'de> Visitor<'de> for RecordsVisitor<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Record(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

struct Record<'s, 'a>(&'s mut State<'a>);

impl<'de> DeserializeSeed<'de> for Record<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Record<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let st = self.0;
        let row = st.rows + 1;
        while let Some(key) = map.next_key_seed(Key {
            names: st.names,
            hint: st.hint,
            watch: st.watch,
        })? {
            match key {
                KeyIs::Column(i) => {
                    if st.set[i] == row {
                        return Err(refuse());
                    }
                    st.set[i] = row;
                    st.hint = i + 1;
                    if st.watch_column == Some(i) {
                        // kept for the cursor, and appended by the same visitor
                        let v: Value = map.next_value()?;
                        Cell(&mut st.builders[i])
                            .deserialize(&v)
                            .map_err(|_| refuse::<A::Error>())?;
                        st.watched.push(v);
                    } else {
                        map.next_value_seed(Cell(&mut st.builders[i]))?;
                    }
                }
                KeyIs::Watched => st.watched.push(map.next_value()?),
                KeyIs::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        for (i, b) in st.builders.iter_mut().enumerate() {
            if st.set[i] != row {
                b.append_null();
            }
        }
        st.rows = row;
        Ok(())
    }
}

enum KeyIs {
    Column(usize),
    /// The watched field when it is not a column.
    Watched,
    Other,
}

struct Key<'a> {
    names: &'a [&'a str],
    hint: usize,
    watch: Option<&'a str>,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = KeyIs;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KeyIs, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = KeyIs;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<KeyIs, E> {
        if self.names.get(self.hint) == Some(&key) {
            return Ok(KeyIs::Column(self.hint));
        }
        Ok(match self.names.iter().position(|n| *n == key) {
            Some(i) => KeyIs::Column(i),
            None if self.watch == Some(key) => KeyIs::Watched,
            None => KeyIs::Other,
        })
    }
}

/// Appends one field's value to its column.
struct Cell<'b>(&'b mut Column);

impl<'de> DeserializeSeed<'de> for Cell<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if let Column::Json(b) = self.0 {
            let v = Value::deserialize(d)?;
            match v {
                Value::Null => b.append_null(),
                v => b.append_value(v.to_string()),
            }
            return Ok(());
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Cell<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.append_null();
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.0.append_null();
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        match self.0 {
            Column::Bool(b) => b.append_value(v),
            Column::Text(b) => b.append_value(if v { "true" } else { "false" }),
            _ => return Err(refuse()),
        }
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        match self.0 {
            Column::Int(b) => b.append_value(v),
            Column::Float(b) => b.append_value(v as f64),
            Column::Text(b) => b.append_value(v.to_string()),
            _ => return Err(refuse()),
        }
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match self.0 {
            Column::Int(b) => b.append_value(i64::try_from(v).map_err(|_| refuse::<E>())?),
            Column::Float(b) => b.append_value(v as f64),
            Column::Text(b) => b.append_value(v.to_string()),
            _ => return Err(refuse()),
        }
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match self.0 {
            Column::Float(b) => b.append_value(v),
            Column::Text(b) => {
                let n = serde_json::Number::from_f64(v).ok_or_else(refuse::<E>)?;
                b.append_value(n.to_string())
            }
            _ => return Err(refuse()),
        }
        Ok(())
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        match self.0 {
            Column::Text(b) => b.append_value(s),
            Column::Int(b) => b.append_value(s.parse().map_err(|_| refuse::<E>())?),
            Column::Float(b) => b.append_value(s.parse().map_err(|_| refuse::<E>())?),
            Column::Time(b) => b.append_value(parse_timestamp(s).ok_or_else(refuse::<E>)?),
            _ => return Err(refuse()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, schema, to_batch};
    use super::*;

    fn all_kinds() -> SchemaRef {
        schema(&[
            ("id", Kind::Int64),
            ("price", Kind::Float64),
            ("ok", Kind::Boolean),
            ("name", Kind::String),
            ("at", Kind::Timestamp),
            ("extra", Kind::Json),
        ])
    }

    /// The `Value` path's batch for the same input.
    fn general(schema: &SchemaRef, body: &str, pointer: &str) -> RecordBatch {
        let mut v: Value = serde_json::from_str(body).unwrap();
        let records = if pointer.is_empty() {
            v.as_array().unwrap().clone()
        } else {
            std::mem::take(v.pointer_mut(pointer).unwrap().as_array_mut().unwrap())
        };
        to_batch("t", schema, &records).unwrap()
    }

    #[test]
    fn the_same_table_as_the_value_path() {
        let s = all_kinds();
        let body = r#"{"meta": {"next": "abc", "n": [1, 2]}, "data": [
            {"id": 1, "price": 2.5, "ok": true, "name": "a\"b\u00e9", "at": "2024-01-02T03:04:05Z", "extra": {"k": [1]}},
            {"name": 7, "id": "42", "price": "1.25", "unknown": {"deep": [1, {"x": null}]}, "extra": "s"},
            {"id": null, "price": 3, "ok": false, "name": 1.5, "at": "2024-01-02T04:04:05.000+0100", "extra": null},
            {"name": true, "price": 18446744073709551615},
            {}
        ], "total": 5}"#;
        let fast = decode_records(&s, body.as_bytes(), "/data", None).expect("fast path");
        assert_eq!(fast.batch, general(&s, body, "/data"));
        assert_eq!(fast.batch.num_rows(), 5);
        assert_eq!(
            fast.rest,
            serde_json::json!({"meta": {"next": "abc", "n": [1, 2]}, "data": [], "total": 5}),
            "the rest stays for the pagination pointers"
        );
    }

    #[test]
    fn top_level_arrays_nested_pointers_and_escaped_segments() {
        let s = schema(&[("id", Kind::Int64), ("name", Kind::String)]);
        let body = r#"[{"id": 1, "name": "x"}, {"name": "y", "id": 2}]"#;
        let fast = decode_records(&s, body.as_bytes(), "", None).unwrap();
        assert_eq!(fast.batch, general(&s, body, ""));
        let body = r#"{"a": {"b/c": {"items": [{"id": 3}]}}}"#;
        let fast = decode_records(&s, body.as_bytes(), "/a/b~1c/items", None).unwrap();
        assert_eq!(fast.batch, general(&s, body, "/a/b~1c/items"));
    }

    #[test]
    fn watched_values_are_collected_whether_or_not_a_column() {
        let s = schema(&[("id", Kind::Int64), ("updated", Kind::Timestamp)]);
        let body = r#"{"d": [{"id": 1, "updated": "2024-01-01T00:00:00Z", "v": 3},
                             {"id": 2, "v": "x"}, {"id": 3, "updated": null}]}"#;
        let r = decode_records(&s, body.as_bytes(), "/d", Some("updated")).unwrap();
        assert_eq!(
            r.watched,
            vec![Value::from("2024-01-01T00:00:00Z"), Value::Null]
        );
        assert_eq!(r.batch, general(&s, body, "/d"));
        let r = decode_records(&s, body.as_bytes(), "/d", Some("v")).unwrap();
        assert_eq!(r.watched, vec![Value::from(3), Value::from("x")]);
    }

    #[test]
    fn anything_unusual_takes_the_general_path() {
        let s = schema(&[
            ("id", Kind::Int64),
            ("ok", Kind::Boolean),
            ("name", Kind::String),
        ]);
        for (body, pointer) in [
            (r#"{"d": [{"id": 1.5}]}"#, "/d"),                 // not an integer
            (r#"{"d": [{"id": "x"}]}"#, "/d"),                 // not an integer either
            (r#"{"d": [{"ok": 1}]}"#, "/d"),                   // not a boolean
            (r#"{"d": [{"name": [1]}]}"#, "/d"),               // an array in a string column
            (r#"{"d": [{"id": 1, "id": 2}]}"#, "/d"),          // a key twice
            (r#"{"d": [1, 2]}"#, "/d"),                        // records that are not objects
            (r#"{"d": {"id": 1}}"#, "/d"),                     // not an array
            (r#"{"e": []}"#, "/d"),                            // no such field
            (r#"{"d": [{"id": 9223372036854775808}]}"#, "/d"), // beyond i64
            (r#"{"d": [{"id": 1}]"#, "/d"),                    // truncated
            (r#"{"d": [{"id": 1}]} trailing"#, "/d"),          // trailing text
            (r#"{"d": [], "d": []}"#, "/d"),                   // the array twice
            (r#"[{"id": 1}]"#, "/0"),                          // a pointer through an array
            (r#"{"d": []}"#, "d"),                             // not a pointer
        ] {
            assert!(
                decode_records(&s, body.as_bytes(), pointer, None).is_none(),
                "{body}"
            );
        }
    }
}
