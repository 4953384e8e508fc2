//! Incremental sync: merge the rows a run emitted for a table (the *delta*) into the
//! table's previous published parquet file, by primary key.
//!
//! The result holds every delta row (for a key emitted twice, the last one) followed by
//! every previous row whose key the delta does not contain. Both inputs are streamed
//! batch by batch; only the delta's keys are held in memory. Rows deleted at the source
//! are not detected (a cursor only sees changes); a full refresh rebuilds the table.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_row::{RowConverter, SortField};
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::Error;
use crate::sink::parquet::{TableWriter, WrittenFile, storable};

/// Reads a parquet file written by [`TableWriter`] as Arrow batches.
fn open(
    table: &str,
    path: &Path,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, Error> {
    let fail = |reason: String| Error::Merge {
        table: table.to_string(),
        reason,
    };
    let file = File::open(path).map_err(|e| fail(format!("opening {}: {e}", path.display())))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(64 * 1024).build())
        .map_err(|e| fail(format!("reading {}: {e}", path.display())))
}

/// Merges `delta` (this run's file for `table`, in `dir`) with `previous` by `primary_key`
/// into `<dir>/<table>.parquet`, replacing the delta file.
pub(crate) fn merge_by_key(
    dir: &Path,
    table: &str,
    schema: &SchemaRef,
    primary_key: &[String],
    delta: WrittenFile,
    previous: &Path,
) -> Result<WrittenFile, Error> {
    let fail = |reason: String| Error::Merge {
        table: table.to_string(),
        reason,
    };
    let stored = storable(schema).unwrap_or_else(|| schema.clone());
    let prev_schema = ParquetRecordBatchReaderBuilder::try_new(
        File::open(previous).map_err(|e| fail(format!("opening {}: {e}", previous.display())))?,
    )
    .map_err(|e| fail(e.to_string()))?
    .schema()
    .clone();
    let same = prev_schema.fields().len() == stored.fields().len()
        && prev_schema
            .fields()
            .iter()
            .zip(stored.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if !same {
        return Err(fail(format!(
            "the table's schema changed since the previous extract (was {}, now {})",
            describe(&prev_schema),
            describe(&stored)
        )));
    }
    let key_columns: Vec<usize> = primary_key
        .iter()
        .map(|k| stored.index_of(k).map_err(|e| fail(e.to_string())))
        .collect::<Result<_, _>>()?;
    let converter = RowConverter::new(
        key_columns
            .iter()
            .map(|&i| SortField::new(stored.field(i).data_type().clone()))
            .collect(),
    )
    .map_err(|e| fail(e.to_string()))?;
    let keys_of = |batch: &RecordBatch| {
        let columns: Vec<_> = key_columns
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        converter
            .convert_columns(&columns)
            .map_err(|e| fail(e.to_string()))
    };

    let delta_path = dir.join(format!("{table}.delta.parquet"));
    std::fs::rename(&delta.path, &delta_path).map_err(Error::io("renaming", &delta.path))?;

    // Pass 1: where each key of the delta last occurs.
    let mut last: HashMap<Box<[u8]>, (usize, usize)> = HashMap::new();
    for (b, batch) in open(table, &delta_path)?.enumerate() {
        let batch = batch.map_err(|e| fail(e.to_string()))?;
        let rows = keys_of(&batch)?;
        for (r, row) in rows.iter().enumerate() {
            last.insert(row.as_ref().into(), (b, r));
        }
    }

    // Pass 2: the delta's last occurrences, then the previous rows it does not replace.
    let mut writer = TableWriter::create(dir, table, schema.clone())?;
    let mut write = |batch: &RecordBatch, keep: Vec<bool>| -> Result<(), Error> {
        let keep = BooleanArray::from(keep);
        let kept = arrow_select::filter::filter_record_batch(batch, &keep)
            .map_err(|e| fail(e.to_string()))?;
        if kept.num_rows() == 0 {
            return Ok(());
        }
        let kept = RecordBatch::try_new(stored.clone(), kept.columns().to_vec())
            .map_err(|e| fail(e.to_string()))?;
        writer.write(&kept)
    };
    for (b, batch) in open(table, &delta_path)?.enumerate() {
        let batch = batch.map_err(|e| fail(e.to_string()))?;
        let rows = keys_of(&batch)?;
        let keep = rows
            .iter()
            .enumerate()
            .map(|(r, row)| last.get(row.as_ref()) == Some(&(b, r)))
            .collect();
        write(&batch, keep)?;
    }
    for batch in open(table, previous)? {
        let batch = batch.map_err(|e| fail(e.to_string()))?;
        let rows = keys_of(&batch)?;
        let keep = rows
            .iter()
            .map(|row| !last.contains_key(row.as_ref()))
            .collect();
        write(&batch, keep)?;
    }
    let merged = writer.finish()?;
    std::fs::remove_file(&delta_path).map_err(Error::io("removing", &delta_path))?;
    Ok(merged)
}

fn describe(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
        ]))
    }

    fn write(dir: &Path, table: &str, rows: &[(i64, &str)]) -> WrittenFile {
        let mut w = TableWriter::create(dir, table, schema()).unwrap();
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap()
    }

    fn read(path: &Path) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        for batch in open("t", path).unwrap() {
            let batch = batch.unwrap();
            let id = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            let v = batch
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            for i in 0..batch.num_rows() {
                out.push((id.value(i), v.value(i).to_string()));
            }
        }
        out
    }

    #[test]
    fn delta_rows_replace_previous_rows_by_key() {
        let old = tempfile::tempdir().unwrap();
        let new = tempfile::tempdir().unwrap();
        let previous = write(old.path(), "t", &[(1, "a"), (2, "b"), (3, "c")]);
        let delta = write(new.path(), "t", &[(2, "B"), (4, "d"), (2, "B2")]);
        let merged = merge_by_key(
            new.path(),
            "t",
            &schema(),
            &["id".into()],
            delta,
            &previous.path,
        )
        .unwrap();
        assert_eq!(
            read(&merged.path),
            [
                (4, "d".into()),
                (2, "B2".into()),
                (1, "a".into()),
                (3, "c".into())
            ],
            "the last delta row per key, then untouched previous rows"
        );
        assert_eq!(merged.rows, 4);
        assert!(!new.path().join("t.delta.parquet").exists());
        assert_eq!(
            merged.md5,
            hex::encode(<md5::Md5 as md5::Digest>::digest(
                std::fs::read(&merged.path).unwrap()
            ))
        );
    }

    #[test]
    fn a_changed_schema_is_refused() {
        let old = tempfile::tempdir().unwrap();
        let new = tempfile::tempdir().unwrap();
        let previous = write(old.path(), "t", &[(1, "a")]);
        let other = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let mut w = TableWriter::create(new.path(), "t", other.clone()).unwrap();
        w.write(
            &RecordBatch::try_new(other.clone(), vec![Arc::new(Int64Array::from(vec![1]))])
                .unwrap(),
        )
        .unwrap();
        let delta = w.finish().unwrap();
        let err = merge_by_key(
            new.path(),
            "t",
            &other,
            &["id".into()],
            delta,
            &previous.path,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("schema changed") && err.contains("--full-refresh"),
            "{err}"
        );
    }
}
