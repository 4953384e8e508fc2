//! What a connector may declare and emit, so that every reader — the server catalog,
//! `/api/query`, an analyst's DuckDB — reads back exactly what was sent, quickly:
//!
//! - **types** from an explicit list that parquet and DuckDB read back faithfully
//!   ([`validate`]); `Date64` is stored as a millisecond `TIMESTAMP` and `Timestamp(Second)`
//!   as milliseconds ([`stored_type`]); `Duration`, intervals, unions, `Float16`, run-end
//!   and list-view encodings, `Null` and decimals wider than 38 digits are refused at
//!   `discover`, naming the column;
//! - **width and depth** bounded by [`Limits::max_columns`] and
//!   [`Limits::max_nesting_depth`] (DuckDB's nested readers turn exponential with depth);
//! - **names** non-empty, without control characters, at most 255 bytes and distinct
//!   case-insensitively among siblings, at every nesting level;
//! - **nulls**: a non-nullable field holds no null at any level, dictionary values
//!   included ([`check_nulls`]).

use arrow_array::{Array, ArrayRef, RecordBatch, cast::AsArray};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};

use crate::names::shown;
use crate::{Error, Limits};

/// The highest [`Limits::max_nesting_depth`] an operator may set: DuckDB's readers slow
/// down exponentially past it (measured: depth 22 → 0.7 s, 24 → 3.9 s, 26 → 17 s).
pub const MAX_NESTING_DEPTH: usize = 16;
/// The highest [`Limits::max_columns`] an operator may set (40,000 columns took 195 s to
/// read back).
pub const MAX_COLUMNS: usize = 10_000;

fn invalid(table: &str, column: &str, reason: impl Into<String>) -> Error {
    Error::InvalidSchema {
        table: table.to_string(),
        column: shown(column),
        reason: reason.into(),
    }
}

/// Checks a table's declared schema against the type list, the limits and the naming
/// rules; the error names the column (a dotted path for nested fields).
pub fn validate(table: &str, schema: &Schema, limits: &Limits) -> Result<(), Error> {
    if limits.max_nesting_depth > MAX_NESTING_DEPTH || limits.max_columns > MAX_COLUMNS {
        return Err(Error::LimitExceeded {
            limit: "max_nesting_depth/max_columns",
            detail: format!(
                "limits allow {} levels and {} columns; the ceilings are {MAX_NESTING_DEPTH} and {MAX_COLUMNS}, \
                 past which readers stall",
                limits.max_nesting_depth, limits.max_columns
            ),
        });
    }
    if schema.fields().is_empty() {
        return Err(Error::UnsafeName {
            kind: "table",
            name: shown(table),
            reason: "it has no columns".into(),
        });
    }
    if schema.fields().len() > limits.max_columns {
        return Err(Error::LimitExceeded {
            limit: "max_columns",
            detail: format!(
                "table `{}` declares {} columns, the limit is {}",
                shown(table),
                schema.fields().len(),
                limits.max_columns
            ),
        });
    }
    siblings(table, "", schema.fields(), 0, limits)
}

/// Checks fields that share a parent: names, case-insensitive uniqueness, then each type.
fn siblings(
    table: &str,
    parent: &str,
    fields: &Fields,
    depth: usize,
    limits: &Limits,
) -> Result<(), Error> {
    let mut seen = std::collections::HashSet::with_capacity(fields.len());
    for f in fields {
        let path = if parent.is_empty() {
            f.name().clone()
        } else {
            format!("{parent}.{}", f.name())
        };
        crate::names::validate_column(table, &path)?;
        if f.name().is_empty() {
            return Err(invalid(table, &path, "a nested field has an empty name"));
        }
        if !seen.insert(f.name().to_lowercase()) {
            return Err(Error::UnsafeName {
                kind: "column",
                name: shown(&format!("{table}.{path}")),
                reason: "it appears twice (names are case-insensitive, at every level)".into(),
            });
        }
        data_type(table, &path, f.data_type(), depth, limits)?;
    }
    Ok(())
}

fn data_type(
    table: &str,
    path: &str,
    dt: &DataType,
    depth: usize,
    limits: &Limits,
) -> Result<(), Error> {
    let nested = |child: &Field| -> Result<(), Error> {
        if depth + 1 > limits.max_nesting_depth {
            return Err(Error::LimitExceeded {
                limit: "max_nesting_depth",
                detail: format!(
                    "column `{}` of table `{}` nests deeper than {} levels",
                    shown(path),
                    shown(table),
                    limits.max_nesting_depth
                ),
            });
        }
        data_type(
            table,
            &format!("{path}[]"),
            child.data_type(),
            depth + 1,
            limits,
        )
    };
    use DataType::*;
    match dt {
        Boolean
        | Int8
        | Int16
        | Int32
        | Int64
        | UInt8
        | UInt16
        | UInt32
        | UInt64
        | Float32
        | Float64
        | Utf8
        | LargeUtf8
        | Utf8View
        | Binary
        | LargeBinary
        | BinaryView
        | FixedSizeBinary(_)
        | Date32
        | Date64
        | Time32(_)
        | Time64(_)
        | Timestamp(_, _) => Ok(()),
        Decimal128(p, _) | Decimal256(p, _) if *p <= 38 => Ok(()),
        Decimal128(..) | Decimal256(..) => Err(invalid(
            table,
            path,
            format!("{dt} has more than 38 digits, which DuckDB cannot hold; use a string"),
        )),
        List(child) | LargeList(child) | FixedSizeList(child, _) => nested(child),
        Map(entries, _) => {
            if depth + 1 > limits.max_nesting_depth {
                return nested(entries);
            }
            match entries.data_type() {
                Struct(kv) => siblings(table, path, kv, depth + 1, limits),
                other => Err(invalid(
                    table,
                    path,
                    format!("a map whose entries are {other}"),
                )),
            }
        }
        Struct(fields) => {
            if fields.is_empty() {
                return Err(invalid(table, path, "a struct without fields"));
            }
            if depth + 1 > limits.max_nesting_depth {
                return nested(&fields[0]);
            }
            siblings(table, path, fields, depth + 1, limits)
        }
        Dictionary(key, value) => {
            if !key.is_integer() {
                return Err(invalid(table, path, format!("a dictionary keyed by {key}")));
            }
            if value.is_nested() || matches!(**value, Dictionary(..)) {
                return Err(invalid(
                    table,
                    path,
                    format!("a dictionary of {value}; dictionary-encode only plain values"),
                ));
            }
            data_type(table, path, value, depth, limits)
        }
        Duration(_) => Err(invalid(
            table,
            path,
            format!(
                "{dt} is not stored faithfully (parquet keeps a bare number); declare Int64 and put the unit in the column name, e.g. `elapsed_ms`"
            ),
        )),
        Interval(_) => Err(invalid(
            table,
            path,
            format!(
                "{dt} cannot be written to parquet; declare Int64 with the unit in the column name"
            ),
        )),
        other => Err(invalid(
            table,
            path,
            format!(
                "type {other} is not supported; see the list of types in docs/connector-authoring.md"
            ),
        )),
    }
}

/// The type a column of `dt` is stored as, when it differs: `Timestamp(Second)` →
/// milliseconds (parquet has no seconds), `Date64` → `Timestamp(Millisecond)` (DuckDB
/// would read its bare INT64 as a number); nested types are mapped inside.
pub(crate) fn stored_type(dt: &DataType) -> Option<DataType> {
    use DataType::*;
    let field = |f: &arrow_schema::FieldRef| -> Option<arrow_schema::FieldRef> {
        stored_type(f.data_type())
            .map(|t| std::sync::Arc::new(f.as_ref().clone().with_data_type(t)))
    };
    match dt {
        Timestamp(TimeUnit::Second, tz) => Some(Timestamp(TimeUnit::Millisecond, tz.clone())),
        Date64 => Some(Timestamp(TimeUnit::Millisecond, None)),
        List(f) => field(f).map(List),
        LargeList(f) => field(f).map(LargeList),
        FixedSizeList(f, n) => field(f).map(|f| FixedSizeList(f, *n)),
        Map(f, sorted) => field(f).map(|f| Map(f, *sorted)),
        Dictionary(k, v) => stored_type(v).map(|v| Dictionary(k.clone(), Box::new(v))),
        Struct(fields) => {
            let mapped: Vec<Option<arrow_schema::FieldRef>> = fields.iter().map(field).collect();
            if mapped.iter().all(Option::is_none) {
                return None;
            }
            let fields: Vec<arrow_schema::FieldRef> = mapped
                .into_iter()
                .zip(fields.iter())
                .map(|(m, f)| m.unwrap_or_else(|| f.clone()))
                .collect();
            Some(Struct(fields.into()))
        }
        _ => None,
    }
}

/// Refuses a batch with a null in a non-nullable field at any level — a struct's child
/// where the struct is valid, a list's items, a map's keys and values, and the values a
/// dictionary column points to.
pub fn check_nulls(table: &str, batch: &RecordBatch) -> Result<(), Error> {
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        nulls(table, field.name(), field, column, None)?;
    }
    Ok(())
}

fn nulls(
    table: &str,
    path: &str,
    field: &Field,
    array: &ArrayRef,
    parent: Option<&NullBuffer>,
) -> Result<(), Error> {
    let own = array.logical_nulls();
    if !field.is_nullable() {
        let unmasked = match (&own, parent) {
            (None, _) => 0,
            (Some(own), None) => own.null_count(),
            (Some(own), Some(parent)) => (&!own.inner() & parent.inner()).count_set_bits(),
        };
        if unmasked > 0 {
            return Err(Error::InvalidBatch {
                table: shown(table),
                reason: format!(
                    "column `{}` is declared non-nullable but holds {unmasked} null value(s)",
                    shown(path)
                ),
            });
        }
    }
    // positions where this array and every parent are valid
    let valid = NullBuffer::union(own.as_ref(), parent);
    match (field.data_type(), array.data_type()) {
        (DataType::Struct(fields), _) => {
            let s = array.as_struct();
            for (f, child) in fields.iter().zip(s.columns()) {
                nulls(
                    table,
                    &format!("{path}.{}", f.name()),
                    f,
                    child,
                    valid.as_ref(),
                )?;
            }
        }
        // item positions do not line up with the list's; check the items on their own
        (DataType::List(f), _) => nulls(
            table,
            &format!("{path}[]"),
            f,
            array.as_list::<i32>().values(),
            None,
        )?,
        (DataType::LargeList(f), _) => nulls(
            table,
            &format!("{path}[]"),
            f,
            array.as_list::<i64>().values(),
            None,
        )?,
        (DataType::FixedSizeList(f, _), _) => nulls(
            table,
            &format!("{path}[]"),
            f,
            array.as_fixed_size_list().values(),
            None,
        )?,
        (DataType::Map(f, _), _) => {
            let entries: ArrayRef = std::sync::Arc::new(array.as_map().entries().clone());
            nulls(table, path, f, &entries, None)?
        }
        _ => {}
    }
    Ok(())
}

/// What differs between the declared schema and the one a stream carries, field by field
/// (name, type, nullability), for an error message.
pub fn difference(declared: &Schema, got: &Schema) -> String {
    let describe = |f: &Field| {
        format!(
            "`{}` {}{}",
            shown(f.name()),
            f.data_type(),
            if f.is_nullable() { "" } else { " NOT NULL" }
        )
    };
    if declared.fields().len() != got.fields().len() {
        return format!(
            "the table was discovered with {} columns but the stream carries {}",
            declared.fields().len(),
            got.fields().len()
        );
    }
    for (i, (d, g)) in declared.fields().iter().zip(got.fields()).enumerate() {
        if d.name() != g.name()
            || d.data_type() != g.data_type()
            || d.is_nullable() != g.is_nullable()
        {
            return format!(
                "column {} was discovered as {} but the stream carries {}",
                i + 1,
                describe(d),
                describe(g)
            );
        }
    }
    "the schemas differ in metadata only".into()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{DictionaryArray, Int32Array, Int64Array, StringArray, StructArray};
    use arrow_schema::Fields;

    use super::*;

    fn one(name: &str, dt: DataType) -> Schema {
        Schema::new(vec![Field::new(name, dt, true)])
    }

    fn list_of(depth: usize) -> DataType {
        let mut dt = DataType::Int64;
        for _ in 0..depth {
            dt = DataType::List(Arc::new(Field::new("item", dt, true)));
        }
        dt
    }

    #[test]
    fn supported_types_pass_and_the_rest_name_the_column() {
        let l = Limits::default();
        for dt in [
            DataType::Utf8,
            DataType::Date64,
            DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
            DataType::Decimal128(38, 2),
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            list_of(8),
        ] {
            validate("t", &one("c", dt.clone()), &l).unwrap_or_else(|e| panic!("{dt}: {e}"));
        }
        for (dt, needle) in [
            (DataType::Duration(TimeUnit::Second), "elapsed_ms"),
            (
                DataType::Interval(arrow_schema::IntervalUnit::MonthDayNano),
                "cannot be written",
            ),
            (DataType::Float16, "not supported"),
            (DataType::Null, "not supported"),
            (DataType::Decimal256(50, 0), "38 digits"),
            (DataType::Struct(Fields::empty()), "without fields"),
        ] {
            let e = validate("t", &one("c", dt.clone()), &l)
                .unwrap_err()
                .to_string();
            assert!(e.contains("column `c`") && e.contains(needle), "{dt}: {e}");
        }
        let nested = DataType::Struct(
            vec![Field::new(
                "when",
                DataType::Duration(TimeUnit::Millisecond),
                true,
            )]
            .into(),
        );
        let e = validate("t", &one("s", nested), &l)
            .unwrap_err()
            .to_string();
        assert!(e.contains("column `s.when`"), "{e}");
    }

    #[test]
    fn depth_and_width_are_bounded() {
        let l = Limits::default();
        let e = validate("t", &one("c", list_of(9)), &l)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("max_nesting_depth") && e.contains("nests deeper than 8"),
            "{e}"
        );
        let mut deep_struct = DataType::Int64;
        for _ in 0..9 {
            deep_struct = DataType::Struct(vec![Field::new("a", deep_struct, true)].into());
        }
        assert!(validate("t", &one("c", deep_struct), &l).is_err());
        let wide = Schema::new(
            (0..1001)
                .map(|i| Field::new(format!("c{i}"), DataType::Int64, true))
                .collect::<Vec<_>>(),
        );
        let e = validate("t", &wide, &l).unwrap_err().to_string();
        assert!(
            e.contains("max_columns") && e.contains("1001 columns"),
            "{e}"
        );
        let too_high = Limits {
            max_nesting_depth: 30,
            ..Limits::default()
        };
        assert!(
            validate("t", &one("c", DataType::Int64), &too_high)
                .unwrap_err()
                .to_string()
                .contains("ceilings")
        );
    }

    #[test]
    fn nested_names_are_checked_at_every_level() {
        let l = Limits::default();
        let twins = DataType::Struct(
            vec![
                Field::new("A", DataType::Int64, true),
                Field::new("a", DataType::Int64, true),
            ]
            .into(),
        );
        let e = validate("t", &one("s", twins), &l).unwrap_err().to_string();
        assert!(e.contains("t.s.a") && e.contains("twice"), "{e}");
        let empty = DataType::Struct(vec![Field::new("", DataType::Int64, true)].into());
        assert!(validate("t", &one("s", empty), &l).is_err());
        let control =
            DataType::Struct(vec![Field::new("x\u{1b}[2K", DataType::Int64, true)].into());
        let e = validate("t", &one("s", control), &l)
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains('\u{1b}'),
            "escape codes are shown escaped: {e:?}"
        );
    }

    #[test]
    fn nulls_in_non_nullable_fields_are_found_at_every_level() {
        // a dictionary whose values hold a NULL, in a non-nullable column
        let values = StringArray::from(vec![Some("a"), None]);
        let dict = DictionaryArray::new(Int32Array::from(vec![0, 1, 0]), Arc::new(values));
        let schema = Arc::new(Schema::new(vec![Field::new(
            "d",
            dict.data_type().clone(),
            false,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(dict)]).unwrap();
        let e = check_nulls("t", &batch).unwrap_err().to_string();
        assert!(e.contains("column `d`") && e.contains("1 null"), "{e}");

        // a struct's non-nullable child: null under a null parent is fine, under a valid one not
        let child = Field::new("x", DataType::Int64, false);
        let make = |parent_valid: Vec<bool>| {
            let s = StructArray::new(
                vec![child.clone()].into(),
                vec![Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef],
                Some(NullBuffer::from(parent_valid)),
            );
            let schema = Arc::new(Schema::new(vec![Field::new(
                "s",
                s.data_type().clone(),
                true,
            )]));
            RecordBatch::try_new(schema, vec![Arc::new(s)]).unwrap()
        };
        check_nulls("t", &make(vec![true, false])).unwrap();

        // a dictionary child with a NULL value under a valid parent: arrow's constructor or
        // the host refuses it, never neither
        let values = StringArray::from(vec![None::<&str>]);
        let dict: ArrayRef = Arc::new(DictionaryArray::new(
            Int32Array::from(vec![0]),
            Arc::new(values),
        ));
        let child = Field::new("d", dict.data_type().clone(), false);
        let refused = match StructArray::try_new(vec![child].into(), vec![dict], None) {
            Err(_) => true,
            Ok(s) => {
                let schema = Arc::new(Schema::new(vec![Field::new(
                    "s",
                    s.data_type().clone(),
                    true,
                )]));
                let batch = RecordBatch::try_new(schema, vec![Arc::new(s)]).unwrap();
                check_nulls("t", &batch).is_err()
            }
        };
        assert!(refused);
    }

    #[test]
    fn differences_name_the_field() {
        let a = Schema::new(vec![Field::new("n", DataType::Int64, false)]);
        let b = Schema::new(vec![Field::new("n", DataType::Int64, true)]);
        assert_eq!(
            difference(&a, &b),
            "column 1 was discovered as `n` Int64 NOT NULL but the stream carries `n` Int64"
        );
    }

    #[test]
    fn stored_types_convert_inside_nested_types() {
        let s = DataType::Struct(
            vec![
                Field::new("d", DataType::Date64, true),
                Field::new("n", DataType::Int64, true),
            ]
            .into(),
        );
        let DataType::Struct(f) = stored_type(&s).unwrap() else {
            panic!()
        };
        assert_eq!(
            f[0].data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, None)
        );
        assert_eq!(f[1].data_type(), &DataType::Int64);
        assert_eq!(stored_type(&DataType::Int64), None);
    }
}
