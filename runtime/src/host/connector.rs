//! `agnes:connector/host`: what the guest may ask of the host. Every call is checked
//! against the run's state first: `emit` only during `read`, only to selected tables,
//! only valid Arrow IPC with the table's declared schema, only within the run's limits.

use arrow_buffer::Buffer;
use tracing::instrument;

use super::RunState;
use crate::bindings::agnes::connector::host::{Host, HostError};
use crate::bindings::agnes::connector::types::{self, LogLevel};
use crate::{Error, Progress};

const MAX_LOG_MESSAGE: usize = 4096;
const MAX_STATE_BYTES: usize = 1 << 20;

impl types::Host for RunState {}

impl Host for RunState {
    #[instrument(skip_all, fields(table = %stream, bytes = arrow_ipc.len()))]
    fn emit(
        &mut self,
        stream: String,
        arrow_ipc: Vec<u8>,
    ) -> wasmtime::Result<Result<(), HostError>> {
        if self.failure.is_some() {
            wasmtime::bail!("emit after the run already failed");
        }
        if self.sink.is_none() {
            let msg = "emit is only allowed during read".to_string();
            tracing::warn!("error.type" = "access_denied", "{msg}");
            return Ok(Err(HostError::AccessDenied(msg)));
        }
        self.batches += 1;
        if self.batches > self.limits.max_batches {
            self.fail(Error::LimitExceeded {
                limit: "max_batches",
                detail: format!(
                    "the run made more than {} emit calls",
                    self.limits.max_batches
                ),
            });
            wasmtime::bail!("batch count limit exceeded");
        }
        if !self.selected.contains_key(&stream) {
            let mut selected: Vec<_> = self.selected.keys().cloned().collect();
            selected.sort();
            let err = Error::UnknownStream {
                table: crate::names::shown(&stream),
                selected: selected.join(", "),
            };
            let msg = err.to_string();
            self.fail(err);
            return Ok(Err(HostError::UnknownStream(msg)));
        }
        if arrow_ipc.len() > self.limits.max_batch_bytes() {
            self.fail(Error::LimitExceeded {
                limit: "max_batch_mb",
                detail: format!(
                    "one batch of `{stream}` is {} bytes, the limit is {} MiB",
                    arrow_ipc.len(),
                    self.limits.max_batch_mb
                ),
            });
            wasmtime::bail!("batch size limit exceeded");
        }
        let new_bytes = self.bytes + arrow_ipc.len() as u64;
        if new_bytes > self.limits.max_output_bytes() {
            self.fail(Error::LimitExceeded {
                limit: "max_output_mb",
                detail: format!(
                    "the run emitted {new_bytes} bytes, the limit is {} MiB",
                    self.limits.max_output_mb
                ),
            });
            wasmtime::bail!("output size limit exceeded");
        }
        self.bytes = new_bytes;
        let started = std::time::Instant::now();
        // arrow-ipc can panic on some malformed messages (found by fuzzing: a dictionary
        // field without an index type): a guest's bytes must never take the host down
        let accepted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.accept(&stream, arrow_ipc)
        }))
        .unwrap_or_else(|_| Err(malformed(&stream)));
        let spent = started.elapsed();
        self.host_busy += spent;
        self.host_cpu.fetch_add(
            spent.as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if accepted.is_ok() && self.over_cpu_budget() {
            wasmtime::bail!("cpu budget exceeded");
        }
        match accepted {
            Ok(()) => Ok(Ok(())),
            Err(err @ Error::LimitExceeded { .. }) => {
                self.fail(err);
                wasmtime::bail!("an output limit was exceeded");
            }
            Err(err) => {
                let msg = err.to_string();
                self.fail(err);
                Ok(Err(HostError::InvalidBatch(msg)))
            }
        }
    }

    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        if self.log_lines >= self.limits.max_log_lines {
            self.logs_dropped += 1;
            return Ok(());
        }
        self.log_lines += 1;
        let message = crate::names::sanitized(&message, MAX_LOG_MESSAGE);
        match level {
            LogLevel::Trace => tracing::trace!(target: "connector", "{message}"),
            LogLevel::Debug => tracing::debug!(target: "connector", "{message}"),
            LogLevel::Info => tracing::info!(target: "connector", "{message}"),
            LogLevel::Warn => tracing::warn!(target: "connector", "{message}"),
            LogLevel::Error => tracing::error!(target: "connector", "{message}"),
        }
        Ok(())
    }

    fn progress(&mut self, _rows: u64, _bytes: u64) -> wasmtime::Result<()> {
        // The host counts what it accepted itself (see `accept`); the guest's own numbers
        // are not trusted for anything.
        Ok(())
    }

    fn state_checkpoint(&mut self, state: String) -> wasmtime::Result<Result<(), HostError>> {
        if self.sink.is_none() {
            return Ok(Err(HostError::AccessDenied(
                "state-checkpoint is only allowed during read".into(),
            )));
        }
        // a refused checkpoint fails the run (as documented): publishing without the state
        // the connector meant to commit would re-read or skip data on the next run
        if state.len() > MAX_STATE_BYTES {
            let detail = format!(
                "a state checkpoint is {} bytes; the limit is {MAX_STATE_BYTES}",
                state.len()
            );
            self.fail(Error::LimitExceeded {
                limit: "state size",
                detail: detail.clone(),
            });
            return Ok(Err(HostError::LimitExceeded(detail)));
        }
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&state) {
            let reason = format!("a state checkpoint is not valid JSON: {e}");
            self.fail(Error::InvalidState {
                reason: reason.clone(),
            });
            return Ok(Err(HostError::InvalidBatch(reason)));
        }
        self.checkpoint = Some(state);
        Ok(Ok(()))
    }
}

/// The error for IPC bytes that made the Arrow decoder panic.
pub(crate) fn malformed(table: &str) -> Error {
    Error::InvalidBatch {
        table: crate::names::shown(table),
        reason: "not valid Arrow IPC: a malformed message made the decoder fail; emit what \
                 arrow-ipc's StreamWriter writes"
            .into(),
    }
}

/// An Arrow IPC end-of-stream marker.
const EOS: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

impl RunState {
    /// Decodes one emit's IPC messages, checks every batch against the table's declared
    /// schema, its nullability and the row limit, and writes it to the table's parquet
    /// file. An emit holds whole messages: a schema (once per stream), batches, and
    /// optionally an end-of-stream marker, after which the next emit starts a new stream
    /// with its schema.
    fn accept(&mut self, stream: &str, bytes: Vec<u8>) -> Result<(), Error> {
        let invalid = |reason: String| Error::InvalidBatch {
            table: stream.to_string(),
            reason,
        };
        let ends_stream = bytes.ends_with(&EOS);
        let emitted = bytes.len() as u64;
        let mut buffer = Buffer::from(bytes);
        let batches_before = self.batches_taken;
        let mut accepted = 0u64;
        loop {
            let table = self.selected.get_mut(stream).expect("checked by emit");
            let batch = match table.decoder.decode(&mut buffer) {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(e) => return Err(invalid(format!("not valid Arrow IPC: {e}"))),
            };
            self.take_batch(stream, batch, &mut accepted)?;
        }
        let table = self.selected.get_mut(stream).expect("checked by emit");
        if table.decoder.finish().is_err() {
            // A batch with an empty body (no rows) that ends the emit stays pending in the
            // decoder until more bytes arrive. Probe with an end-of-stream marker: a pending
            // empty body takes none of it; anything else is a message cut short.
            let mut probe = Buffer::from(EOS.to_vec());
            match table.decoder.decode(&mut probe) {
                Ok(Some(batch)) if probe.len() == EOS.len() => {
                    self.take_batch(stream, batch, &mut accepted)?
                }
                _ => {
                    return Err(invalid(
                        "the emitted bytes end inside a message; emit whole IPC messages".into(),
                    ));
                }
            }
        }
        let table = self.selected.get_mut(stream).expect("checked by emit");
        if let Some(schema) = table.decoder.schema()
            && !table.adopt
            && !same_fields(&schema, &table.schema)
        {
            return Err(invalid(format!(
                "schema changed: {}",
                crate::schema::difference(&table.schema, &schema)
            )));
        }
        if self.batches_taken == batches_before {
            // dictionary (or schema) messages only: the decoder keeps them, delta ones grow
            table.held += emitted;
            if table.held > (self.limits.host_memory_bytes() / 8) as u64 {
                return Err(Error::LimitExceeded {
                    limit: "host_memory_mb",
                    detail: format!(
                        "table `{stream}` was sent {} bytes of dictionary and schema messages without a batch; \
                         an eighth of host_memory_mb = {} MiB may be held",
                        table.held, self.limits.host_memory_mb
                    ),
                });
            }
        }
        if ends_stream {
            table.decoder = arrow_ipc::reader::StreamDecoder::new();
            table.held = 0;
        }
        self.rows += accepted;
        table.rows += accepted;
        let table_rows = table.rows;
        if let Some(cb) = &mut self.on_progress {
            cb(&Progress {
                table: stream.to_string(),
                table_rows,
                rows: self.rows,
                bytes: self.bytes,
            });
        }
        Ok(())
    }

    /// One decoded batch: same fields as declared, no null where none may be, within the
    /// row limit; written with the declared schema (the guest's metadata dropped).
    fn take_batch(
        &mut self,
        stream: &str,
        batch: arrow_array::RecordBatch,
        accepted: &mut u64,
    ) -> Result<(), Error> {
        let invalid = |reason: String| Error::InvalidBatch {
            table: stream.to_string(),
            reason,
        };
        let table = self.selected.get_mut(stream).expect("checked by emit");
        if table.adopt {
            // the result of admin SQL: its first batch says what the table is
            let fields = batch.schema_ref().fields().clone();
            let schema = std::sync::Arc::new(arrow_schema::Schema::new(fields));
            crate::schema::validate(stream, &schema, &self.limits)?;
            table.schema = schema;
            table.adopt = false;
        }
        let table = self.selected.get(stream).expect("checked by emit");
        if !same_fields(batch.schema_ref(), &table.schema) {
            return Err(invalid(format!(
                "schema changed: {}",
                crate::schema::difference(&table.schema, batch.schema_ref())
            )));
        }
        crate::schema::check_nulls(stream, &batch)?;
        // the bytes the batch's arrays span (a decoded batch shares the emitted buffer, so
        // capacities would count it once per column)
        let in_memory: usize = batch
            .columns()
            .iter()
            .map(|c| {
                let data = c.to_data();
                data.get_slice_memory_size()
                    .unwrap_or_else(|_| c.get_array_memory_size())
            })
            .fold(0, usize::saturating_add);
        if in_memory > self.limits.host_memory_bytes() / 8 {
            return Err(Error::LimitExceeded {
                limit: "host_memory_mb",
                detail: format!(
                    "one batch of `{stream}` holds {in_memory} bytes in memory (dictionaries included); a batch may use \
                     an eighth of host_memory_mb = {} MiB: emit smaller batches",
                    self.limits.host_memory_mb
                ),
            });
        }
        let rows = batch.num_rows() as u64;
        if self.rows + *accepted + rows > self.limits.max_rows {
            return Err(Error::LimitExceeded {
                limit: "max_rows",
                detail: format!("the run emitted more than {} rows", self.limits.max_rows),
            });
        }
        let schema = table.schema.clone();
        let batch = batch
            .with_schema(schema.clone())
            .map_err(|e| invalid(e.to_string()))?;
        self.sink
            .as_mut()
            .expect("a read has a sink")
            .write(stream, &schema, batch)?;
        *accepted += rows;
        self.batches_taken += 1;
        Ok(())
    }
}

/// Field names, types and nullability equal (metadata ignored).
pub(crate) fn same_fields(a: &arrow_schema::Schema, b: &arrow_schema::Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields().iter().zip(b.fields()).all(|(x, y)| {
            x.name() == y.name()
                && x.data_type() == y.data_type()
                && x.is_nullable() == y.is_nullable()
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch};
    use arrow_ipc::writer::StreamWriter;
    use arrow_schema::{DataType, Field, Schema};

    use super::*;
    use crate::Limits;

    fn state(dir: &std::path::Path, limits: Limits) -> RunState {
        RunState::reading(dir, limits, 512 << 20, "t", schema("n")).unwrap()
    }

    fn schema(col: &str) -> Arc<Schema> {
        Arc::new(Schema::new(vec![Field::new(col, DataType::Int64, false)]))
    }

    fn ipc(col: &str, values: &[i64]) -> Vec<u8> {
        let s = schema(col);
        let batch =
            RecordBatch::try_new(s.clone(), vec![Arc::new(Int64Array::from(values.to_vec()))])
                .unwrap();
        let mut w = StreamWriter::try_new(Vec::new(), &s).unwrap();
        w.write(&batch).unwrap();
        w.into_inner().unwrap()
    }

    #[test]
    fn emit_outside_read_is_denied() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(dir.path(), Limits::default());
        s.sink = None;
        let r = s.emit("t".into(), ipc("n", &[1])).unwrap();
        assert!(matches!(r, Err(HostError::AccessDenied(_))));
        assert!(
            s.failure.is_none(),
            "a denial the guest can handle does not fail the run by itself"
        );
    }

    #[test]
    fn emit_to_an_unselected_stream_fails_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(dir.path(), Limits::default());
        let r = s.emit("other".into(), ipc("n", &[1])).unwrap();
        assert!(matches!(r, Err(HostError::UnknownStream(_))));
        assert!(matches!(s.failure, Some(Error::UnknownStream { .. })));
    }

    #[test]
    fn garbage_bytes_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(dir.path(), Limits::default());
        let r = s
            .emit("t".into(), b"definitely not arrow".to_vec())
            .unwrap();
        assert!(matches!(r, Err(HostError::InvalidBatch(_))), "{r:?}");
        assert!(matches!(s.failure, Some(Error::InvalidBatch { .. })));
        assert!(
            s.emit("t".into(), ipc("n", &[1])).is_err(),
            "emits after a failure trap"
        );
    }

    #[test]
    fn a_schema_other_than_the_declared_one_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(dir.path(), Limits::default());
        let r = s.emit("t".into(), ipc("m", &[1])).unwrap();
        let Err(HostError::InvalidBatch(msg)) = r else {
            panic!("{r:?}")
        };
        assert!(msg.contains("schema changed"), "{msg}");
    }

    #[test]
    fn a_valid_empty_batch_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(dir.path(), Limits::default());
        // schema + an empty batch, the stream left open (as the SDK's writer does)
        let mut w = StreamWriter::try_new(Vec::new(), &schema("n")).unwrap();
        w.write(&RecordBatch::new_empty(schema("n"))).unwrap();
        let first = std::mem::take(w.get_mut());
        s.emit("t".into(), first).unwrap().unwrap();
        // more batches of the same stream, empty and not
        w.write(&RecordBatch::new_empty(schema("n"))).unwrap();
        s.emit("t".into(), std::mem::take(w.get_mut()))
            .unwrap()
            .unwrap();
        w.write(
            &RecordBatch::try_new(schema("n"), vec![Arc::new(Int64Array::from(vec![7]))]).unwrap(),
        )
        .unwrap();
        s.emit("t".into(), std::mem::take(w.get_mut()))
            .unwrap()
            .unwrap();
        assert_eq!(s.rows, 1);
        // the stream closed with its end-of-stream marker, then new streams with their schema
        w.finish().unwrap();
        s.emit("t".into(), std::mem::take(w.get_mut()))
            .unwrap()
            .unwrap();
        s.emit("t".into(), ipc("n", &[])).unwrap().unwrap();
        s.emit("t".into(), ipc("n", &[8, 9])).unwrap().unwrap();
        assert_eq!(s.rows, 3);
        // a second schema inside an open stream is refused
        let mut w = StreamWriter::try_new(Vec::new(), &schema("n")).unwrap();
        w.write(&RecordBatch::new_empty(schema("n"))).unwrap();
        s.emit("t".into(), std::mem::take(w.get_mut()))
            .unwrap()
            .unwrap();
        assert!(s.emit("t".into(), ipc("n", &[1])).unwrap().is_err());
    }

    /// The IPC messages in `bytes` (continuation, length, metadata, body).
    fn messages(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i + 8 <= bytes.len() {
            let len = i32::from_le_bytes(bytes[i + 4..i + 8].try_into().unwrap()) as usize;
            if len == 0 {
                break;
            }
            let meta = &bytes[i + 8..i + 8 + len];
            let body = arrow_ipc::root_as_message(meta).unwrap().bodyLength() as usize;
            out.push(bytes[i..i + 8 + len + body].to_vec());
            i += 8 + len + body;
        }
        out
    }

    #[test]
    fn dictionary_messages_without_batches_are_bounded() {
        use arrow_array::{DictionaryArray, Int32Array, StringArray};
        let dir = tempfile::tempdir().unwrap();
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let schema = Arc::new(Schema::new(vec![Field::new("d", dict, false)]));
        let mut s = state(
            dir.path(),
            Limits {
                host_memory_mb: 8, // an eighth: 1 MiB may be held
                ..Limits::default()
            },
        );
        s.selected.get_mut("t").unwrap().schema = schema.clone();
        let batch = |tag: usize| {
            let values =
                StringArray::from_iter_values((0..4000).map(|i| format!("{tag}-{i:0>90}")));
            let keys = Int32Array::from(vec![0]);
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(DictionaryArray::new(keys, Arc::new(values)))],
            )
            .unwrap()
        };
        let mut w = StreamWriter::try_new(Vec::new(), &schema).unwrap();
        w.write(&batch(0)).unwrap();
        s.emit("t".into(), std::mem::take(w.get_mut()))
            .unwrap()
            .unwrap();
        // then only the replacement dictionaries (~400 KB each), never the batches
        let mut refused = None;
        for tag in 1..10 {
            w.write(&batch(tag)).unwrap();
            let parts = messages(&std::mem::take(w.get_mut()));
            assert_eq!(parts.len(), 2, "a dictionary and a batch");
            match s.emit("t".into(), parts[0].clone()) {
                Ok(Ok(())) => {}
                _ => {
                    refused = Some(tag);
                    break;
                }
            }
        }
        assert_eq!(
            refused,
            Some(3),
            "the third 400 KB dictionary passes 1 MiB held"
        );
        assert!(
            matches!(&s.failure, Some(Error::LimitExceeded { limit: "host_memory_mb", detail }) if detail.contains("dictionary")),
            "{:?}",
            s.failure
        );
    }

    #[test]
    fn valid_batches_are_counted_and_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(dir.path(), Limits::default());
        let first = ipc("n", &[1, 2, 3]);
        s.emit("t".into(), first).unwrap().unwrap();
        assert_eq!((s.rows, s.selected["t"].rows), (3, 3));
        let files = s.sink.take().unwrap().finish().unwrap();
        assert_eq!(files["t"].rows, 3);
        assert!(dir.path().join("t.parquet").exists());
    }

    #[test]
    fn limits_trap() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(
            dir.path(),
            Limits {
                max_rows: 2,
                ..Limits::default()
            },
        );
        assert!(s.emit("t".into(), ipc("n", &[1, 2, 3])).is_err());
        assert!(matches!(
            s.failure,
            Some(Error::LimitExceeded {
                limit: "max_rows",
                ..
            })
        ));

        let mut s = state(
            dir.path(),
            Limits {
                max_batch_mb: 0,
                ..Limits::default()
            },
        );
        assert!(s.emit("t".into(), ipc("n", &[1])).is_err());
        assert!(matches!(
            s.failure,
            Some(Error::LimitExceeded {
                limit: "max_batch_mb",
                ..
            })
        ));
    }

    #[test]
    fn state_must_be_bounded_json() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(dir.path(), Limits::default());
        assert!(
            s.state_checkpoint("{\"cursor\": 1}".into())
                .unwrap()
                .is_ok()
        );
        assert!(s.failure.is_none());
        assert!(s.state_checkpoint("not json".into()).unwrap().is_err());
        assert!(
            matches!(s.failure.take(), Some(Error::InvalidState { .. })),
            "a refused checkpoint fails the run even if the guest ignores the error"
        );
        assert!(s.state_checkpoint("\"".repeat(2 << 20)).unwrap().is_err());
        assert!(matches!(
            s.failure,
            Some(Error::LimitExceeded {
                limit: "state size",
                ..
            })
        ));
    }
}
