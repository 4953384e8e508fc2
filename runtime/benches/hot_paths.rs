//! Micro-benchmarks of the host's hot paths (divan), per batch of the synthetic table
//! (65,536 rows: i64, f64, 20-byte text, timestamp):
//!
//! - `ipc_encode`: what the guest SDK does before `emit` (Arrow IPC stream writer);
//! - `ipc_decode`: the host's `StreamDecoder` with validation, as in every `emit`;
//! - `parquet_write`: the host's `TableWriter` (zstd 3, md5 while writing);
//! - `emit_native`: the whole host side of one `emit` (limits, decode, schema check,
//!   parquet) through `Runtime::run_native`, 16 batches per iteration.
//!
//!     cargo bench -p agnes-runtime --bench hot_paths

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamWriter;

const ROWS: usize = 65_536;

fn main() {
    divan::main();
}

/// The synthetic table's rows: the same source the `synth` component and the end-to-end
/// benchmark use.
#[path = "../../connectors-wasm/synth/src/rows.rs"]
mod rows;

fn batch() -> RecordBatch {
    rows::batch(&rows::schema(), 0, ROWS)
}

fn ipc(batch: &RecordBatch) -> Vec<u8> {
    let mut w = StreamWriter::try_new(Vec::new(), batch.schema_ref()).unwrap();
    w.write(batch).unwrap();
    w.into_inner().unwrap()
}

#[divan::bench]
fn ipc_encode(bencher: divan::Bencher<'_, '_>) {
    let b = batch();
    bencher
        .counter(divan::counter::ItemsCount::new(ROWS))
        .bench_local(|| ipc(divan::black_box(&b)));
}

#[divan::bench]
fn ipc_decode(bencher: divan::Bencher<'_, '_>) {
    let bytes = ipc(&batch());
    bencher
        .counter(divan::counter::BytesCount::new(bytes.len()))
        .bench_local(|| {
            let mut decoder = StreamDecoder::new();
            let mut buf = Buffer::from(bytes.clone());
            let mut rows = 0;
            while !buf.is_empty() {
                if let Some(b) = decoder.decode(&mut buf).unwrap() {
                    rows += b.num_rows();
                }
            }
            assert_eq!(rows, ROWS);
        });
}

#[divan::bench]
fn parquet_write(bencher: divan::Bencher<'_, '_>) {
    let b = batch();
    let dir = tempfile::tempdir().unwrap();
    bencher
        .counter(divan::counter::ItemsCount::new(ROWS))
        .bench_local(|| {
            let mut w =
                agnes_runtime::sink::parquet::TableWriter::create(dir.path(), "t", b.schema())
                    .unwrap();
            w.write(&b).unwrap();
            w.finish().unwrap()
        });
}

#[divan::bench(sample_count = 10)]
fn emit_native(bencher: divan::Bencher<'_, '_>) {
    let b = batch();
    // exactly what the SDK sends: schema + batch first, then batch messages only
    let mut w = StreamWriter::try_new(Vec::new(), b.schema_ref()).unwrap();
    w.write(&b).unwrap();
    let first = std::mem::take(w.get_mut());
    w.write(&b).unwrap();
    let later = std::mem::take(w.get_mut());
    let rt = agnes_runtime::Runtime::new(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    bencher
        .counter(divan::counter::ItemsCount::new(ROWS * 16))
        .bench_local(|| {
            n += 1;
            let table = agnes_runtime::TableSpec {
                name: "t".into(),
                description: None,
                schema: rows::schema(),
                primary_key: vec![],
                cursor_field: None,
            };
            let req = agnes_runtime::RunRequest {
                source: format!("s{n}"),
                extracts_dir: dir.path().to_path_buf(),
                config: "{}".into(),
                grant: Default::default(),
                limits: Default::default(),
                streams: None,
                state: None,
            };
            rt.run_native(req, vec![table], |out| {
                out.emit("t", first.clone())?;
                for _ in 1..16 {
                    out.emit("t", later.clone())?;
                }
                Ok(None)
            })
            .unwrap()
        });
}
