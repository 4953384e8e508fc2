//! The runtime benchmarks of `just bench` / `just bench-quick`: prints one markdown table
//! per topic. Ratios are measured side by side in one run, the variants alternating, the
//! medians of several repetitions compared.
//!
//!     cargo run --release -p agnes-tests --example bench -- [--quick]
//!
//! 1. the synthetic table (i64, f64, 20-byte text, timestamp) into parquet + extract: the
//!    `synth` component vs the same code compiled natively (`Runtime::run_native`) vs
//!    DuckDB's own `COPY (SELECT … FROM range(N)) TO 'x.parquet'` (one thread, and every core);
//! 2. the csv component on a generated CSV vs DuckDB `read_csv` → `COPY` (one thread, and
//!    DuckDB's default of every core);
//! 3. component load: cold compile, cached compiled-module load, warm instantiation;
//! 4. how long after its deadline a runaway guest stops.

use std::path::Path;
use std::time::{Duration, Instant};

use agnes_runtime::{Error, Limits, LoadedComponent, Runtime};
use agnes_tests::{CSV_COMPONENT, SYNTH_COMPONENT, hostile, request, run_synth_native, runtime};
use serde_json::json;

struct Sizes {
    synth_rows: u64,
    csv_rows: u64,
    reps: usize,
    latency_runs: usize,
    stop_runs: usize,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

fn duckdb_with(threads: usize) -> duckdb::Connection {
    let c = duckdb::Connection::open_in_memory().unwrap();
    c.execute_batch(&format!(
        "SET threads = {threads}; SET preserve_insertion_order = true;"
    ))
    .unwrap();
    c
}

/// The machine's cores (DuckDB's default thread count).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn file_mb(path: &Path) -> f64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes = if quick {
        Sizes {
            synth_rows: 1_000_000,
            csv_rows: 1_000_000,
            reps: 3,
            latency_runs: 50,
            stop_runs: 5,
        }
    } else {
        Sizes {
            synth_rows: 10_000_000,
            csv_rows: 13_000_000,
            reps: 5,
            latency_runs: 200,
            stop_runs: 20,
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let work = tempfile::tempdir_in(
        std::env::var_os("AGNES_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()),
    )
    .unwrap();
    let synth = runtime().load_file(Path::new(SYNTH_COMPONENT)).unwrap();
    let csv = runtime().load_file(Path::new(CSV_COMPONENT)).unwrap();

    // `--only csv` (synth, csv, load, stop): one section, while working on it
    let only: Option<String> = std::env::args().skip_while(|a| a != "--only").nth(1);
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if run("synth") {
        synth_section(&rt, &synth, work.path(), &sizes);
    }
    if run("csv") {
        csv_section(&rt, &csv, work.path(), &sizes);
    }
    if run("load") {
        load_section(&rt, &sizes);
    }
    if run("stop") {
        stop_section(&rt, &sizes);
    }
}

fn synth_section(rt: &tokio::runtime::Runtime, synth: &LoadedComponent, work: &Path, s: &Sizes) {
    let n = s.synth_rows;
    let batch = 65_536;
    let (mut wasm, mut native, mut duck, mut duck_all) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut wasm_mb, mut native_mb, mut duck_mb) = (0.0, 0.0, 0.0);
    let (mut wasm_host, mut native_host) = (Vec::new(), Vec::new());
    for rep in 0..s.reps {
        let dir = work.join(format!("synth-{rep}"));
        let t = Instant::now();
        let req = request(&dir, "wasm", json!({"rows": n, "batch_rows": batch}), &[]);
        let r = rt.block_on(runtime().run(synth, req, None)).unwrap();
        wasm.push(t.elapsed().as_secs_f64());
        wasm_mb = r.size_bytes() as f64 / 1e6;
        wasm_host.push(r.host_busy.as_secs_f64());

        let t = Instant::now();
        let r = run_synth_native(runtime(), &dir, "native", n, batch).unwrap();
        native.push(t.elapsed().as_secs_f64());
        native_mb = r.size_bytes() as f64 / 1e6;
        native_host.push(r.host_busy.as_secs_f64());

        let out = dir.join("duckdb.parquet");
        let copy = format!(
            "COPY (SELECT i::BIGINT AS id, i * 0.25 AS value, 'label-' || lpad(i::VARCHAR, 14, '0') AS label, \
             to_timestamp(1704067200 + i) AS created_at FROM range({n}) t(i)) \
             TO '{}' (FORMAT parquet, COMPRESSION zstd)",
            out.display()
        );
        let t = Instant::now();
        duckdb_with(1).execute_batch(&copy).unwrap();
        duck.push(t.elapsed().as_secs_f64());
        duck_mb = file_mb(&out);
        let t = Instant::now();
        duckdb_with(cores()).execute_batch(&copy).unwrap();
        duck_all.push(t.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (w, nt, d, da) = (
        median(&mut wasm),
        median(&mut native),
        median(&mut duck),
        median(&mut duck_all),
    );
    println!(
        "### 1. Synthetic table, {n} rows (i64, f64, 20-byte text, timestamp) → parquet + extract\n"
    );
    println!("| variant | median s | rows/s | parquet MB | ratio |");
    println!("|---|---|---|---|---|");
    println!(
        "| WASM component (`synth`) | {w:.2} | {:.0} | {wasm_mb:.1} | {:.2}× native, {:.2}× DuckDB |",
        n as f64 / w,
        w / nt,
        w / d
    );
    println!(
        "| native, same code (`run_native`) | {nt:.2} | {:.0} | {native_mb:.1} | 1.00 |",
        n as f64 / nt
    );
    println!(
        "| DuckDB `COPY … FROM range(N)`, 1 thread | {d:.2} | {:.0} | {duck_mb:.1} | — |",
        n as f64 / d
    );
    println!(
        "| DuckDB, {} threads (its default) | {da:.2} | {:.0} | {duck_mb:.1} | WASM = {:.2}× this |",
        cores(),
        n as f64 / da,
        w / da
    );
    let (wh, nh) = (median(&mut wasm_host), median(&mut native_host));
    println!(
        "\nAgnes runs a connector on one core and encodes parquet on a second (`host_busy`: the time the connector waited on the host — \
         decode, validation, queueing for the encoder: WASM run {wh:.2} s, native run {nh:.2} s)."
    );
    println!(
        "\n{} repetitions, alternating; batches of {batch} rows; zstd everywhere.\n",
        s.reps
    );
}

fn csv_section(rt: &tokio::runtime::Runtime, csv: &LoadedComponent, work: &Path, s: &Sizes) {
    use std::io::Write;
    let data = work.join("csv-data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("events.csv");
    {
        let mut w =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&file).unwrap());
        writeln!(w, "id,user_id,amount,quantity,score,created_at,comment").unwrap();
        for i in 0..s.csv_rows {
            writeln!(
                w,
                "{i},{},{}.{:02},{},{:.3},2024-{:02}-{:02} {:02}:{:02}:{:02},comment number {i} about things",
                i % 100_000,
                i % 10_000,
                i % 100,
                i % 17,
                (i % 997) as f64 / 7.0,
                1 + i % 12,
                1 + i % 28,
                i % 24,
                i % 60,
                (i * 7) % 60
            )
            .unwrap();
        }
    }
    let mb = file_mb(&file);
    let (mut wasm, mut split, mut duck, mut duck_all) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut split_ways = 1;
    for rep in 0..s.reps {
        let dir = work.join(format!("csv-{rep}"));
        let mut req = request(&dir, "csv", json!({"dir": "/data"}), &[(&data, "/data")]);
        req.limits = Limits {
            max_batch_mb: 512,
            ..Limits::default()
        };
        let t = Instant::now();
        rt.block_on(runtime().run(csv, req.clone(), None)).unwrap();
        wasm.push(t.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&dir);

        // as a server runs it: the limits its connector.toml gets (parallel_reads)
        let (_, limits) = agnes_tests::connector_manifest("csv")
            .effective(&req.grant, &req.limits)
            .unwrap();
        split_ways = limits.read_partitions.min(cores() as u32);
        req.limits = limits;
        let t = Instant::now();
        rt.block_on(runtime().run(csv, req, None)).unwrap();
        split.push(t.elapsed().as_secs_f64());

        let out = dir.join("duckdb.parquet");
        let copy = format!(
            "COPY (SELECT * FROM read_csv('{}')) TO '{}' (FORMAT parquet, COMPRESSION zstd)",
            file.display(),
            out.display()
        );
        let t = Instant::now();
        duckdb_with(1).execute_batch(&copy).unwrap();
        duck.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        duckdb_with(cores()).execute_batch(&copy).unwrap();
        duck_all.push(t.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&data);
    let (w, sp, d, da) = (
        median(&mut wasm),
        median(&mut split),
        median(&mut duck),
        median(&mut duck_all),
    );
    let n = s.csv_rows as f64;
    println!(
        "### 2. CSV, {} rows × 7 columns ({mb:.0} MB) → parquet\n",
        s.csv_rows
    );
    println!("| variant | median s | rows/s | CSV MB/s | ratio |");
    println!("|---|---|---|---|---|");
    println!(
        "| csv component, one instance | {w:.2} | {:.0} | {:.1} | {:.2}× DuckDB 1 thread |",
        n / w,
        mb / w,
        w / d
    );
    println!(
        "| csv component, read split {split_ways} ways (`parallel_reads`, as a server runs it) | {sp:.2} | {:.0} | {:.1} | {:.2}× DuckDB {} threads |",
        n / sp,
        mb / sp,
        sp / da,
        cores()
    );
    println!(
        "| DuckDB `read_csv` → `COPY`, 1 thread | {d:.2} | {:.0} | {:.1} | — |",
        n / d,
        mb / d
    );
    println!(
        "| DuckDB, {} threads (its default) | {da:.2} | {:.0} | {:.1} | split csv = {:.2}× this |",
        cores(),
        n / da,
        mb / da,
        sp / da
    );
    println!("\n{} repetitions, alternating.\n", s.reps);
}

fn load_section(rt: &tokio::runtime::Runtime, s: &Sizes) {
    let bytes = std::fs::read(SYNTH_COMPONENT).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut cold = Vec::new();
    for _ in 0..3 {
        let fresh = Runtime::new(None).unwrap();
        let t = Instant::now();
        fresh.load(&bytes).unwrap();
        cold.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let cached_rt = Runtime::new(Some(cache.path())).unwrap();
    cached_rt.load(&bytes).unwrap(); // fills the cache
    let mut cached = Vec::new();
    for _ in 0..s.latency_runs.min(50) {
        let fresh = Runtime::new(Some(cache.path())).unwrap();
        let t = Instant::now();
        fresh.load(&bytes).unwrap();
        cached.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let component = cached_rt.load(&bytes).unwrap();
    let config = json!({"rows": 0}).to_string();
    let grant = agnes_runtime::Grant::default();
    let limits = Limits::default();
    // warm: the first instantiation links the component against the host once
    rt.block_on(cached_rt.instantiate_only(&component)).unwrap();
    let mut inst = Vec::new();
    for _ in 0..s.latency_runs {
        let t = Instant::now();
        rt.block_on(cached_rt.instantiate_only(&component)).unwrap();
        inst.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mut warm = Vec::new();
    for _ in 0..s.latency_runs {
        let t = Instant::now();
        rt.block_on(cached_rt.discover(&component, &config, &grant, &limits))
            .unwrap();
        warm.push(t.elapsed().as_secs_f64() * 1e6);
    }
    println!(
        "### 3. Component load (`synth`, {:.1} MB)\n",
        bytes.len() as f64 / 1e6
    );
    println!("| step | median | p99 | runs |");
    println!("|---|---|---|---|");
    println!(
        "| cold compile (Cranelift, no cache) | {:.0} ms | {:.0} ms | 3 |",
        median(&mut cold),
        pct(&mut cold, 0.99)
    );
    println!(
        "| cached compiled-module load (new engine, digest check, deserialize) | {:.2} ms | {:.2} ms | {} |",
        median(&mut cached),
        pct(&mut cached, 0.99),
        cached.len()
    );
    println!(
        "| warm instantiation (store, WASI ctx, egress, limits, instance) | {:.0} µs | {:.0} µs | {} |",
        median(&mut inst),
        pct(&mut inst, 0.99),
        inst.len()
    );
    println!(
        "| warm instantiation + `discover` (+ one call: schema encoded in the guest, decoded and validated in the host) | {:.0} µs | {:.0} µs | {} |",
        median(&mut warm),
        pct(&mut warm, 0.99),
        warm.len()
    );
    println!();
}

fn stop_section(rt: &tokio::runtime::Runtime, s: &Sizes) {
    println!("### 4. Runaway guest: stop after a 1 s deadline\n");
    println!("| guest | p50 | p99 | runs |");
    println!("|---|---|---|---|");
    for (mode, label) in [
        ("spin", "spinning in wasm"),
        ("sleep", "blocked in a host call (clock wait)"),
    ] {
        let mut late = Vec::new();
        for _ in 0..s.stop_runs {
            let tmp = tempfile::tempdir().unwrap();
            let mut req = request(tmp.path(), "src", json!({"mode": mode}), &[]);
            req.limits = Limits {
                timeout_secs: 1,
                ..Limits::default()
            };
            let t = Instant::now();
            let err = rt
                .block_on(runtime().run(hostile(), req, None))
                .unwrap_err();
            assert!(matches!(err, Error::Timeout { .. }), "{err}");
            late.push(
                t.elapsed()
                    .saturating_sub(Duration::from_secs(1))
                    .as_secs_f64()
                    * 1e3,
            );
        }
        println!(
            "| {label} | {:.1} ms | {:.1} ms | {} |",
            pct(&mut late, 0.5),
            pct(&mut late, 0.99),
            late.len()
        );
    }
    println!();
}
