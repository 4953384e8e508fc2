//! The PostgreSQL benchmark of `just bench`: N rows (int8, float8, ~20-byte text,
//! timestamptz) of a private local cluster, read by the postgres component into parquet +
//! extract, side by side with the source's own limit — `psql` running the same
//! `COPY (SELECT ...) TO STDOUT (FORMAT binary)` into /dev/null — alternating, medians of
//! several runs. Also the peak RSS of the process during a connector run.
//!
//!     cargo run --release -p agnes-tests --example postgres_bench -- [rows] [reps]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use agnes_runtime::{Grant, Limits, RunRequest};
use agnes_tests::pg::{PgCluster, READER_PASSWORD};
use agnes_tests::runtime;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The process's peak resident memory since the last reset, in MiB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Resets the peak (Linux: `echo 5 > /proc/self/clear_refs`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let reps: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let component = runtime()
        .load_file(Path::new(agnes_tests::POSTGRES_COMPONENT))
        .unwrap();

    let pg = PgCluster::start();
    let started = Instant::now();
    pg.psql(
        "app",
        &format!(
            "CREATE UNLOGGED TABLE big (id int8 NOT NULL, x float8, label text, at timestamptz);
             INSERT INTO big SELECT g, g * 0.5, substr(md5(g::text), 1, 20),
                    '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 second'
               FROM generate_series(1, {rows}) g;"
        ),
    );
    pg.psql("app", "VACUUM ANALYZE big");
    pg.grant_select();
    let size: u64 = pg
        .psql("app", "SELECT pg_table_size('big')")
        .parse()
        .unwrap();
    eprintln!(
        "loaded {rows} rows ({:.0} MB) in {:.1} s",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let tmp = tempfile::tempdir().unwrap();
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, READER_PASSWORD).unwrap();
    let grant = Grant {
        databases: [("main".to_string(), pg.grant("reader", Some(&pw)))].into(),
        ..Grant::default()
    };

    let (mut t_psql, mut t_wasm) = (Vec::new(), Vec::new());
    let mut peak = 0f64;
    let mut parquet_mb = 0f64;
    for i in 0..reps {
        // the source's own limit: psql reading the binary COPY stream into /dev/null
        let t = Instant::now();
        let status = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "app",
                "-X",
                "-q",
            ])
            .args([
                "-c",
                "COPY (SELECT id, x, label, at FROM big) TO STDOUT (FORMAT binary)",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        t_psql.push(t.elapsed().as_secs_f64());

        let extracts = tmp.path().join(format!("x{i}"));
        let request = RunRequest {
            source: "pg".into(),
            extracts_dir: extracts,
            config: serde_json::json!({"batch_rows": 65536}).to_string(),
            grant: grant.clone(),
            limits: Limits::default(),
            streams: Some(vec!["big".into()]),
            state: None,
        };
        reset_peak_rss();
        let t = Instant::now();
        let report = rt
            .block_on(runtime().run(&component, request, None))
            .unwrap();
        t_wasm.push(t.elapsed().as_secs_f64());
        peak = peak.max(peak_rss_mb());
        assert_eq!(report.rows, rows);
        parquet_mb = report.size_bytes() as f64 / 1e6;
    }
    let (p, w) = (median(&mut t_psql), median(&mut t_wasm));
    println!(
        "### 8. PostgreSQL: the postgres component vs `psql` COPY binary (the source's limit)"
    );
    println!();
    println!(
        "{rows} rows (int8, float8, 20-byte text, timestamptz; {:.0} MB in PostgreSQL), local cluster over loopback, SCRAM login by the host, median of {reps}:",
        size as f64 / 1e6
    );
    println!();
    println!("| reader | time | rows/s | vs psql |");
    println!("|---|---:|---:|---:|");
    println!(
        "| `psql -c \"COPY (SELECT ...) TO STDOUT (FORMAT binary)\" > /dev/null` | {p:.2} s | {:.2} M | 1.00× |",
        rows as f64 / p / 1e6
    );
    println!(
        "| postgres component → parquet + extract ({parquet_mb:.0} MB) | {w:.2} s | {:.2} M | {:.2}× of psql's rate |",
        rows as f64 / w / 1e6,
        p / w
    );
    println!();
    println!("Peak RSS of the process during a connector run: {peak:.0} MB.");
    println!();
}
