//! The rows of the synthetic table. Plain Arrow, no SDK: the benchmark compiles this file
//! into the host too (`#[path]`), so WebAssembly and native run the same code.

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// 2024-01-01T00:00:00Z in microseconds.
const BASE_US: i64 = 1_704_067_200_000_000;

/// `synth (id BIGINT NOT NULL, value DOUBLE NOT NULL, label VARCHAR NOT NULL,
/// created_at TIMESTAMPTZ NOT NULL)`.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("value", DataType::Float64, false),
        Field::new("label", DataType::Utf8, false),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// Rows `start..start + len`: id = i, value = i / 4, label = `label-` + i in 14 digits
/// (20 bytes), created_at = 2024-01-01 + i seconds.
pub fn batch(schema: &SchemaRef, start: i64, len: usize) -> RecordBatch {
    let ids = Int64Array::from_iter_values(start..start + len as i64);
    let values =
        Float64Array::from_iter_values((start..start + len as i64).map(|i| i as f64 * 0.25));
    let mut labels = StringBuilder::with_capacity(len, len * 20);
    let mut buf = *b"label-00000000000000";
    for i in start..start + len as i64 {
        let mut n = i.unsigned_abs();
        for d in buf[6..].iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        labels.append_value(std::str::from_utf8(&buf).expect("ascii"));
    }
    let at = TimestampMicrosecondArray::from_iter_values(
        (start..start + len as i64).map(|i| BASE_US + i * 1_000_000),
    )
    .with_timezone("UTC");
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(ids),
            Arc::new(values),
            Arc::new(labels.finish()),
            Arc::new(at),
        ],
    )
    .expect("columns match the schema")
}
