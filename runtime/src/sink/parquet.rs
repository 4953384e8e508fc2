//! Parquet output of one table, hashed (md5) while it is written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use md5::{Digest, Md5};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::Error;

/// A file writer that computes the md5 of every byte it writes, so the served file never
/// has to be read back to be hashed.
struct HashingFile {
    inner: BufWriter<File>,
    md5: Md5,
    len: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.md5.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes of one column's dictionary in a row group before it falls back to plain encoding.
/// parquet-rs's default (1 MiB) lets a column of unique values (ids, free text, most
/// timestamps) intern ~130k values into a dictionary per row group before it gives up —
/// measured at ~9% of a CSV sync's CPU; 256 KiB keeps a dictionary for columns of up to
/// ~32k distinct 8-byte values and gives up four times sooner on the rest.
const DICTIONARY_LIMIT: usize = 256 << 10;

/// A finished parquet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub rows: u64,
    pub size_bytes: u64,
    pub md5: String,
}

/// Writes the batches of one table to `<dir>/<table>.parquet` (zstd), hashing the bytes
/// as they are written. The host's parquet sink; public for the micro-benchmarks.
pub struct TableWriter {
    table: String,
    path: PathBuf,
    writer: ArrowWriter<HashingFile>,
    /// Set when some column must be converted before it is written (see [`storable`]).
    storable: Option<SchemaRef>,
    rows: u64,
}

/// The schema as stored, when some column is stored as another type
/// ([`crate::schema::stored_type`]: second timestamps as milliseconds, `Date64` as a
/// millisecond timestamp, inside nested types too). `None` when nothing needs converting.
pub(crate) fn storable(schema: &SchemaRef) -> Option<SchemaRef> {
    let stored: Vec<Option<DataType>> = schema
        .fields()
        .iter()
        .map(|f| crate::schema::stored_type(f.data_type()))
        .collect();
    if stored.iter().all(Option::is_none) {
        return None;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(stored)
        .map(|(f, t)| match t {
            Some(t) => f.as_ref().clone().with_data_type(t),
            None => f.as_ref().clone(),
        })
        .collect();
    Some(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

impl TableWriter {
    /// Creates `<dir>/<table>.parquet` for batches of `schema`.
    pub fn create(dir: &Path, table: &str, schema: SchemaRef) -> Result<Self, Error> {
        let path = dir.join(format!("{table}.parquet"));
        let file = File::create(&path).map_err(Error::io("creating", &path))?;
        let sink = HashingFile {
            inner: BufWriter::with_capacity(1 << 20, file),
            md5: Md5::new(),
            len: 0,
        };
        let level = ZstdLevel::try_new(3).expect("3 is a valid zstd level");
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_dictionary_page_size_limit(DICTIONARY_LIMIT)
            .build();
        let storable = storable(&schema);
        let writer = ArrowWriter::try_new(sink, storable.clone().unwrap_or(schema), Some(props))
            .map_err(|e| Error::Parquet {
                table: table.into(),
                reason: e.to_string(),
            })?;
        Ok(TableWriter {
            table: table.to_string(),
            path,
            writer,
            storable,
            rows: 0,
        })
    }

    /// Appends one batch (of the schema given to [`TableWriter::create`]).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        let fail = |e: &dyn std::fmt::Display| Error::Parquet {
            table: self.table.clone(),
            reason: e.to_string(),
        };
        let converted;
        let batch = match &self.storable {
            None => batch,
            Some(schema) => {
                let mut columns = Vec::with_capacity(batch.num_columns());
                for (column, field) in batch.columns().iter().zip(schema.fields()) {
                    columns
                        .push(arrow_cast::cast(column, field.data_type()).map_err(|e| fail(&e))?);
                }
                converted = RecordBatch::try_new(schema.clone(), columns).map_err(|e| fail(&e))?;
                &converted
            }
        };
        self.writer.write(batch).map_err(|e| Error::Parquet {
            table: self.table.clone(),
            reason: e.to_string(),
        })?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Bytes of the row group being built, in memory.
    pub(crate) fn buffered(&self) -> usize {
        self.writer.in_progress_size()
    }

    /// Writes the row group being built.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        self.writer.flush().map_err(|e| Error::Parquet {
            table: self.table.clone(),
            reason: e.to_string(),
        })
    }

    /// Closes the file (footer, flush, fsync) and returns its size and md5.
    pub fn finish(self) -> Result<WrittenFile, Error> {
        let table = self.table;
        let fail = |e: &dyn std::fmt::Display| Error::Parquet {
            table: table.clone(),
            reason: e.to_string(),
        };
        let mut sink = self.writer.into_inner().map_err(|e| fail(&e))?;
        sink.flush().map_err(|e| fail(&e))?;
        let file = sink.inner.into_inner().map_err(|e| fail(&e))?;
        file.sync_all().map_err(|e| fail(&e))?;
        Ok(WrittenFile {
            path: self.path,
            rows: self.rows,
            size_bytes: sink.len,
            md5: hex::encode(sink.md5.finalize()),
        })
    }
}

/// Joins the files of one table written by the instances of a split read, in the order
/// given, into `<dir>/<table>.parquet` by copying their row groups (column chunks, page
/// indexes and the Arrow schema are kept; nothing is decoded or re-encoded), hashing the
/// output as it is written. One part is renamed. The parts are removed.
pub(crate) fn concat(
    dir: &Path,
    table: &str,
    parts: Vec<WrittenFile>,
) -> Result<WrittenFile, Error> {
    use parquet::column::writer::ColumnCloseResult;
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
    use parquet::file::writer::SerializedFileWriter;

    let path = dir.join(format!("{table}.parquet"));
    let fail = |e: &dyn std::fmt::Display| Error::Parquet {
        table: table.to_string(),
        reason: format!("joining the parts of a split read: {e}"),
    };
    if let [one] = parts.as_slice() {
        std::fs::rename(&one.path, &path).map_err(Error::io("renaming", &one.path))?;
        return Ok(WrittenFile {
            path,
            ..one.clone()
        });
    }
    let mut inputs = Vec::with_capacity(parts.len());
    for p in &parts {
        let file = File::open(&p.path).map_err(Error::io("opening", &p.path))?;
        let meta = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(&file)
            .map_err(|e| fail(&e))?;
        inputs.push((file, meta));
    }
    let first = inputs
        .first()
        .ok_or_else(|| fail(&"no parts"))?
        .1
        .file_metadata()
        .clone();
    for (_, meta) in &inputs[1..] {
        if meta.file_metadata().schema() != first.schema() {
            return Err(fail(&"the parts have different schemas"));
        }
    }
    let out = File::create(&path).map_err(Error::io("creating", &path))?;
    let sink = HashingFile {
        inner: BufWriter::with_capacity(1 << 20, out),
        md5: Md5::new(),
        len: 0,
    };
    let props = WriterProperties::builder()
        .set_key_value_metadata(first.key_value_metadata().cloned())
        .build();
    let mut writer = SerializedFileWriter::new(
        sink,
        first.schema_descr().root_schema_ptr(),
        Arc::new(props),
    )
    .map_err(|e| fail(&e))?;
    let mut rows = 0u64;
    for (input, meta) in &inputs {
        for (g, group) in meta.row_groups().iter().enumerate() {
            let mut out = writer.next_row_group().map_err(|e| fail(&e))?;
            for (c, column) in group.columns().iter().enumerate() {
                let close = ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: group.num_rows() as u64,
                    metadata: column.clone(),
                    bloom_filter: None,
                    column_index: meta.column_index().and_then(|i| i.get(g)?.get(c).cloned()),
                    offset_index: meta.offset_index().and_then(|i| i.get(g)?.get(c).cloned()),
                };
                out.append_column(input, close).map_err(|e| fail(&e))?;
            }
            out.close().map_err(|e| fail(&e))?;
            rows += group.num_rows() as u64;
        }
    }
    let mut sink = writer.into_inner().map_err(|e| fail(&e))?;
    sink.flush().map_err(|e| fail(&e))?;
    let file = sink.inner.into_inner().map_err(|e| fail(&e))?;
    file.sync_all().map_err(|e| fail(&e))?;
    for p in &parts {
        let _ = std::fs::remove_file(&p.path);
    }
    Ok(WrittenFile {
        path,
        rows,
        size_bytes: sink.len,
        md5: hex::encode(sink.md5.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use arrow_array::{Int64Array, StringArray, TimestampSecondArray};
    use arrow_schema::TimeUnit;

    use super::*;

    #[test]
    fn md5_and_size_match_the_file_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let mut w = TableWriter::create(dir.path(), "t", schema.clone()).unwrap();
        for i in 0..3 {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![i, i + 10])),
                    Arc::new(StringArray::from(vec![Some("a"), None])),
                ],
            )
            .unwrap();
            w.write(&batch).unwrap();
        }
        let out = w.finish().unwrap();
        let bytes = std::fs::read(dir.path().join("t.parquet")).unwrap();
        assert_eq!(out.rows, 6);
        assert_eq!(out.size_bytes, bytes.len() as u64);
        assert_eq!(out.md5, hex::encode(Md5::digest(&bytes)));
        assert_eq!(&bytes[..4], b"PAR1");
    }

    #[test]
    fn second_timestamps_are_stored_as_milliseconds() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Second, None),
            true,
        )]));
        let mut w = TableWriter::create(dir.path(), "t", schema.clone()).unwrap();
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(TimestampSecondArray::from(vec![1_733_555_100]))],
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        let file = File::open(dir.path().join("t.parquet")).unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        assert_eq!(
            reader.schema().field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, None)
        );
        let batch = reader.build().unwrap().next().unwrap().unwrap();
        let at = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(at.value(0), 1_733_555_100_000);
    }
}
