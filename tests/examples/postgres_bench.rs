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
    if v.is_empty() {
        return f64::NAN;
    }
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
    remote_section(&pg, &pw, rows, reps);
}

/// Section 9: the same table registered as a remote table of a server (release, in this
/// process, real HTTP over loopback): a 1% snapshot (`POST /api/v2/scan`) — bytes read from
/// PostgreSQL vs bytes of the answer — and a filtered `count(*)` through `/api/query`
/// (pushed down) vs the same SQL in `psql`.
fn remote_section(pg: &PgCluster, pw: &Path, rows: u64, reps: usize) {
    let s = agnes_tests::TestServer::start_with(|c| {
        c.remote.max_scan_bytes = 0;
        c.remote.daily_scan_bytes_per_user = 0;
        c.query.timeout_secs = 600;
    });
    let manifest = agnes_tests::repo_root().join("connectors-wasm/postgres/connector.toml");
    let grant = serde_json::json!({"databases": {"main": {"host": "127.0.0.1", "port": pg.port,
        "database": "app", "user": "reader", "password": {"file": pw}, "tls": "disable", "allow_private": true}}});
    s.admin_call("POST", "/api/admin/sources", Some(serde_json::json!({"name": "wh",
        "connector": agnes_tests::POSTGRES_COMPONENT, "manifest": manifest, "config": {}, "grant": grant})));
    s.admin_call(
        "POST",
        "/api/admin/sources/wh/tables",
        Some(serde_json::json!({"tables": [{"name": "big", "query_mode": "remote"}]})),
    );
    let last_detail = || {
        s.admin_call("GET", "/api/admin/audit?action=data.remote_scan", None)["entries"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let field = |detail: &str, key: &str| -> f64 {
        detail
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    // a 1% snapshot
    let (mut t_snap, mut moved, mut answer, mut got) = (Vec::new(), 0f64, 0f64, 0usize);
    for _ in 0..reps {
        let t = Instant::now();
        let r = agnes_tests::http()
            .post(&s.url("/api/v2/scan"))
            .header("Authorization", &agnes_tests::bearer(&s.admin))
            .send_json(serde_json::json!({"table": "big", "where": "id % 100 = 0"}))
            .unwrap();
        let bytes = agnes_tests::read_bytes(r);
        t_snap.push(t.elapsed().as_secs_f64());
        let detail = last_detail();
        moved = field(&detail, "source_read_bytes");
        got = field(&detail, "rows") as usize;
        answer = bytes.len() as f64;
    }
    // a filtered count, pushed down, vs psql
    let where_ = "label LIKE 'a%'";
    let (mut t_remote, mut t_psql) = (Vec::new(), Vec::new());
    let mut count = serde_json::Value::Null;
    for _ in 0..reps {
        let t = Instant::now();
        let v = s.admin_call(
            "POST",
            "/api/query",
            Some(serde_json::json!({"sql": format!("SELECT count(*) FROM big WHERE {where_}")})),
        );
        t_remote.push(t.elapsed().as_secs_f64());
        count = v["rows"][0][0].clone();
        let t = Instant::now();
        let n = pg.psql("app", &format!("SELECT count(*) FROM big WHERE {where_}"));
        t_psql.push(t.elapsed().as_secs_f64());
        assert_eq!(count.to_string(), n);
    }
    let (snap, remote, psql) = (
        median(&mut t_snap),
        median(&mut t_remote),
        median(&mut t_psql),
    );
    println!("### 9. Remote tables: a 1% snapshot and a pushed-down count (same {rows}-row table)");
    println!();
    println!("| measure | result |");
    println!("|---|---:|");
    println!("| `POST /api/v2/scan` `where id % 100 = 0`: {got} rows | {snap:.2} s |");
    println!(
        "| bytes read from PostgreSQL / bytes of the answer (Arrow IPC) | {:.1} MB / {:.1} MB = **{:.2}×** |",
        moved / 1e6,
        answer / 1e6,
        moved / answer
    );
    println!(
        "| `/api/query` `SELECT count(*) FROM big WHERE {where_}` (= {count}; the filter and one column pushed) | {remote:.2} s |"
    );
    println!("| the same SQL in `psql` | {psql:.2} s |");
    println!("| ratio | **{:.2}×** |", remote / psql);
    println!();
}
