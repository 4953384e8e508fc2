//! The SQL-over-Agnes-tables benchmark of `just bench`: a materialized join of a fact table
//! (N rows) with a dimension table (M rows), run by both engines — the `agnes-sql`
//! component (DataFusion in wasmtime) and `agnes-sqlbox` (DuckDB in a confined process) —
//! each result through the host's emit path into parquet + extract, side by side with the
//! same SQL in native DuckDB writing the same parquet with `COPY ... TO` (its own process,
//! same threads and memory). Medians of several runs, and each side's peak RSS.
//!
//!     cargo build --release -p agnes    # agnes-sqlbox, found beside target/release/examples
//!     cargo run --release -p agnes-tests --example sql_bench -- [fact rows] [dim rows] [reps]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use agnes_runtime::Limits;
use agnes_runtime::sqlbox::{SqlBox, SqlTable};
use agnes_tests::{request, runtime};

const THREADS: u64 = 2;
const MEMORY_MB: u64 = 2048;

fn join_sql(from: &str) -> String {
    format!(
        "SELECT f.id, f.v, f.note, d.name, d.category
           FROM {from}fact f JOIN {from}dim d ON f.k = d.k"
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// This process's peak resident memory, in MiB.
fn own_peak_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The largest peak resident memory of any waited-for child, in MiB.
#[allow(unsafe_code)]
fn children_peak_mb() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

fn native_conn(threads: u64) -> duckdb::Connection {
    let config = duckdb::Config::default()
        .threads(threads as i64)
        .unwrap()
        .max_memory(&format!("{MEMORY_MB}MB"))
        .unwrap();
    duckdb::Connection::open_in_memory_with_flags(config).unwrap()
}

/// `--native <dir> <out> <threads>`: the join in native DuckDB, in this (child) process;
/// prints `seconds peak_mb`.
fn native(dir: &Path, out: &Path, threads: u64) {
    let conn = native_conn(threads);
    let started = Instant::now();
    conn.execute_batch(&format!(
        "CREATE VIEW fact AS SELECT * FROM read_parquet('{d}/fact.parquet');
         CREATE VIEW dim AS SELECT * FROM read_parquet('{d}/dim.parquet');
         COPY ({sql}) TO '{out}' (FORMAT parquet, COMPRESSION zstd);",
        d = dir.display(),
        sql = join_sql(""),
        out = out.display()
    ))
    .unwrap();
    println!("{} {}", started.elapsed().as_secs_f64(), own_peak_mb());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--native") {
        native(
            Path::new(&args[2]),
            Path::new(&args[3]),
            args[4].parse().unwrap(),
        );
        return;
    }
    let facts: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dims: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let reps: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(3);
    let sqlbox = SqlBox::beside_current_exe(THREADS)
        .expect("agnes-sqlbox beside target/release: run `cargo build --release -p agnes`");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_path_buf();
    native_conn(THREADS)
        .execute_batch(&format!(
            "COPY (SELECT i AS id, hash(i) % {dims} AS k, i * 0.25 AS v,
                          substr(md5(i::VARCHAR), 1, 16) AS note
                     FROM range({facts}) t(i))
               TO '{d}/fact.parquet' (FORMAT parquet, COMPRESSION zstd);
             COPY (SELECT i AS k, 'customer ' || i AS name, 'category ' || (i % 50) AS category
                     FROM range({dims}) t(i))
               TO '{d}/dim.parquet' (FORMAT parquet, COMPRESSION zstd);",
            d = dir.display()
        ))
        .unwrap();
    let inputs: Vec<(String, PathBuf)> = ["fact", "dim"]
        .iter()
        .map(|n| (n.to_string(), dir.join(format!("{n}.parquet"))))
        .collect();
    let table = SqlTable {
        table: "joined".into(),
        sql: join_sql(""),
        inputs,
    };
    let extracts = dir.join("extracts");
    let limits = Limits {
        memory_mb: MEMORY_MB,
        ..Limits::default()
    };
    // the sandbox runs first: the largest child so far is a sandbox; the native runs (in
    // child processes too) then report their own peak
    let (mut sandboxed, mut native_secs, mut native_peak) = (Vec::new(), Vec::new(), 0f64);
    let mut rows = 0;
    let mut size = 0;
    for _ in 0..reps {
        let mut req = request(&extracts, "derived", serde_json::json!({}), &[]);
        req.limits = limits.clone();
        let started = Instant::now();
        let report = runtime()
            .run_sql(req, std::slice::from_ref(&table), &sqlbox)
            .unwrap();
        sandboxed.push(started.elapsed().as_secs_f64());
        let t = &report.tables[0];
        assert!(t.error.is_none(), "{:?}", t.error);
        (rows, size) = (t.rows, t.size_bytes);
    }
    let children_peak = children_peak_mb();
    let host_peak = own_peak_mb();
    // the DataFusion component, in this process (the runtime's sandbox), same inputs
    let component = runtime()
        .load_file(std::path::Path::new(agnes_tests::SQL_COMPONENT))
        .unwrap();
    let session = dir.join("session");
    std::fs::create_dir_all(&session).unwrap();
    for (name, file) in &table.inputs {
        let _ = std::fs::hard_link(file, session.join(format!("{name}.parquet")));
    }
    let mut datafusion = Vec::new();
    // the peak of the runs, not of compiling the component (once; cached afterwards)
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    for _ in 0..reps {
        let mut req = request(
            &dir.join("extracts-df"),
            "derived",
            serde_json::json!({}),
            &[],
        );
        req.limits = limits.clone();
        req.streams = Some(vec![]);
        req.grant.dirs = vec![agnes_runtime::DirGrant {
            host: session.clone(),
            guest: "/tables".into(),
        }];
        let m = agnes_runtime::Materialize {
            table: "joined".into(),
            sql: join_sql(""),
            max_scan_bytes: 0,
        };
        let started = Instant::now();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let report = rt
            .block_on(runtime().run_with(&component, req, &[m], None))
            .unwrap();
        datafusion.push(started.elapsed().as_secs_f64());
        let t = &report.tables[0];
        assert!(t.error.is_none(), "{:?}", t.error);
        assert_eq!(t.rows, rows, "the same join");
    }
    let df_peak = own_peak_mb();
    let native_run = |threads: u64| {
        let out = Command::new(std::env::current_exe().unwrap())
            .arg("--native")
            .arg(&dir)
            .arg(dir.join("native.parquet"))
            .arg(threads.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut parts = text.split_whitespace().map(|p| p.parse::<f64>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    };
    let mut native_one = Vec::new();
    for _ in 0..reps {
        let (secs, peak) = native_run(THREADS);
        native_secs.push(secs);
        native_peak = native_peak.max(peak);
        native_one.push(native_run(1).0);
    }
    let (s, n) = (median(&mut sandboxed), median(&mut native_secs));
    let d = median(&mut datafusion);
    let n1 = median(&mut native_one);
    let native_size = std::fs::metadata(dir.join("native.parquet")).unwrap().len();
    println!("### 10. SQL over Agnes tables: a materialized join in the sandbox vs native DuckDB");
    println!();
    println!(
        "`fact` ({facts} rows: int8, int8 key, float8, 16-char text) ⨝ `dim` ({dims} rows) on the key → {rows} rows, \
         {THREADS} DuckDB threads and {MEMORY_MB} MiB on both sides, median of {reps}:"
    );
    println!();
    println!("| runner | time | output | peak RSS | vs native |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| native DuckDB, `COPY (join) TO 'x.parquet'` (own process) | {n:.2} s | {:.1} MB | {native_peak:.0} MB | 1.00× |",
        native_size as f64 / 1e6
    );
    println!(
        "| native DuckDB, 1 thread (as the component) | {n1:.2} s | | | {:.2}× |",
        n1 / n
    );
    println!(
        "| `agnes-sqlbox` (confined process) → host emit path → parquet + extract | {s:.2} s | {:.1} MB | {:.0} MB sandbox, {host_peak:.0} MB host process | **{:.2}×** |",
        size as f64 / 1e6,
        children_peak,
        s / n
    );
    println!(
        "| `agnes-sql` component (DataFusion 55 in wasmtime, one thread) → host emit path → parquet + extract | {d:.2} s | {:.1} MB | {df_peak:.0} MB host process (guest memory included) | **{:.2}×** ({:.2}× of DuckDB on 1 thread) |",
        size as f64 / 1e6,
        d / n,
        d / n1
    );
    println!();
}
