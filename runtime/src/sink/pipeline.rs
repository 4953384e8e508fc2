//! Parquet encoding on its own thread, so a run uses two cores: while the connector
//! produces and the host decodes and validates the next batch, the previous one is being
//! encoded. One thread per run, whatever the number of tables; a bounded queue (a few
//! batches) keeps memory flat and pushes back on a connector faster than the encoder.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::Error;
use crate::sink::parquet::{TableWriter, WrittenFile};

/// Batches waiting for the encoder, at most.
const QUEUE: usize = 4;

type Job = (String, SchemaRef, RecordBatch);
type Outcome = Result<HashMap<String, WrittenFile>, Error>;

/// The parquet writers of one run, on a background thread.
pub(crate) struct Sink {
    tx: Option<SyncSender<Job>>,
    handle: Option<JoinHandle<Outcome>>,
    abort: Arc<AtomicBool>,
}

impl Sink {
    /// Starts the encoder thread; files go to `<dir>/<table>.parquet`. Row groups waiting
    /// in memory stay under a quarter of `memory_budget` bytes: a table's is flushed at a
    /// sixteenth, and while all of them together exceed a quarter, the largest is flushed.
    pub(crate) fn start(dir: PathBuf, memory_budget: usize) -> Result<Sink, Error> {
        let table_cap = (memory_budget / 16).max(1 << 20);
        let total_cap = (memory_budget / 4).max(1 << 20);
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let abort = Arc::new(AtomicBool::new(false));
        let stop = abort.clone();
        let handle = std::thread::Builder::new()
            .name("agnes-parquet".into())
            .spawn(move || -> Outcome {
                let mut writers: HashMap<String, TableWriter> = HashMap::new();
                for (table, schema, batch) in rx {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(HashMap::new());
                    }
                    let writer = match writers.entry(table) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(e) => {
                            let w = TableWriter::create(&dir, e.key(), schema)?;
                            e.insert(w)
                        }
                    };
                    writer.write(&batch)?;
                    if writer.buffered() > table_cap {
                        writer.flush()?;
                    }
                    while writers.values().map(TableWriter::buffered).sum::<usize>() > total_cap {
                        let largest = writers
                            .values_mut()
                            .max_by_key(|w| w.buffered())
                            .expect("a writer holds the bytes");
                        largest.flush()?;
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    return Ok(HashMap::new());
                }
                writers
                    .into_iter()
                    .map(|(t, w)| w.finish().map(|f| (t, f)))
                    .collect()
            })
            .map_err(Error::io("spawning", "the parquet thread"))?;
        Ok(Sink {
            tx: Some(tx),
            handle: Some(handle),
            abort,
        })
    }

    /// Queues one batch of `table` (waits while the queue is full). Fails with the
    /// encoder's error if it stopped.
    pub(crate) fn write(
        &mut self,
        table: &str,
        schema: &SchemaRef,
        batch: RecordBatch,
    ) -> Result<(), Error> {
        let sent = match &self.tx {
            Some(tx) => tx.send((table.to_string(), schema.clone(), batch)).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // the encoder ended early: its error says why
        Err(match self.join() {
            Err(e) => e,
            Ok(_) => Error::Parquet {
                table: table.to_string(),
                reason: "the parquet writer already finished".into(),
            },
        })
    }

    /// Finishes every file (footer, fsync) and returns them by table.
    pub(crate) fn finish(mut self) -> Result<HashMap<String, WrittenFile>, Error> {
        self.join()
    }

    fn join(&mut self) -> Outcome {
        self.tx = None;
        match self.handle.take() {
            Some(h) => h.join().unwrap_or_else(|_| {
                Err(Error::Parquet {
                    table: "-".into(),
                    reason: "the parquet writer thread panicked".into(),
                })
            }),
            None => Err(Error::Parquet {
                table: "-".into(),
                reason: "the parquet writer already finished".into(),
            }),
        }
    }
}

impl Drop for Sink {
    /// A run that fails drops its sink unfinished: the thread stops before the next batch
    /// without finishing any file. Joined (at most the batch being encoded), so nothing
    /// writes into the staging directory while it is being removed.
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.abort.store(true, Ordering::Relaxed);
            self.tx = None;
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::Int64Array;
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn batch(schema: &SchemaRef, n: i64) -> RecordBatch {
        RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..n))],
        )
        .unwrap()
    }

    #[test]
    fn tables_are_written_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let mut sink = Sink::start(dir.path().to_path_buf(), 512 << 20).unwrap();
        for _ in 0..10 {
            sink.write("a", &schema, batch(&schema, 100)).unwrap();
            sink.write("b", &schema, batch(&schema, 7)).unwrap();
        }
        let files = sink.finish().unwrap();
        assert_eq!(files["a"].rows, 1000);
        assert_eq!(files["b"].rows, 70);
        assert!(dir.path().join("b.parquet").is_file());
    }

    #[test]
    fn row_groups_are_flushed_by_bytes_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        // a 16 MiB budget: a table's row group is flushed past 1 MiB
        let mut sink = Sink::start(dir.path().to_path_buf(), 16 << 20).unwrap();
        for _ in 0..40 {
            sink.write("a", &schema, batch(&schema, 65_536)).unwrap();
        }
        sink.finish().unwrap();
        let file = std::fs::File::open(dir.path().join("a.parquet")).unwrap();
        let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        let groups = parquet::file::reader::FileReader::metadata(&reader).num_row_groups();
        assert!(
            groups >= 2,
            "flushed by bytes, not at a million rows: {groups} row group(s)"
        );
    }

    #[test]
    fn an_encoder_error_reaches_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let mut sink = Sink::start(missing, 512 << 20).unwrap();
        let mut err = None;
        for _ in 0..(QUEUE + 3) {
            if let Err(e) = sink.write("a", &schema, batch(&schema, 1)) {
                err = Some(e);
                break;
            }
        }
        let err = err.expect("the failed encoder is noticed").to_string();
        assert!(err.contains("gone"), "{err}");
    }
}
