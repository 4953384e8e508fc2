//! Benchmark: the http-json component reading N records (default 1M) from a local API on
//! loopback, pages of 10k, declared columns (int64, string, float64, boolean, timestamp).
//! The API's pages are rendered before the clock starts, so the figure is the connector
//! and host: HTTP through wasi:http, JSON parsing, Arrow, IPC, validation, parquet.
//!
//!     cargo run --release -p agnes-tests --example http_json_1m -- [RECORDS] [RUNS]

use std::sync::Arc;
use std::time::Instant;

use agnes_runtime::{Grant, Limits};
use agnes_tests::{Loopback, http_json, request, runtime};
use axum::extract::{Query, State};
use axum::routing::get;
use serde_json::json;

const PAGE: usize = 10_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let records: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let pages: Vec<Arc<str>> = (0..records.div_ceil(PAGE))
        .map(|p| {
            let data: Vec<_> = (p * PAGE..((p + 1) * PAGE).min(records))
                .map(|i| json!({"id": i, "name": format!("item number {i}"), "price": i as f64 * 0.25 + 0.1,
                                "active": i % 2 == 0, "updated_at": format!("2024-05-{:02}T{:02}:{:02}:00Z", 1 + i % 28, i % 24, i % 60)}))
                .collect();
            Arc::from(json!({"data": data}).to_string())
        })
        .collect();
    let json_bytes: usize = pages.iter().map(|p| p.len()).sum();
    let pages = Arc::new(pages);
    let server = Loopback::start(
        axum::Router::new()
            .route(
                "/items",
                get(|State(pages): State<Arc<Vec<Arc<str>>>>, Query(q): Query<std::collections::HashMap<String, usize>>| async move {
                    let page = q.get("page").copied().unwrap_or(1);
                    let body = pages.get(page - 1).map(|p| p.to_string()).unwrap_or_else(|| "{\"data\": []}".into());
                    ([("content-type", "application/json")], body)
                }),
            )
            .with_state(pages.clone()),
    );
    let config = json!({
        "base_url": server.url(""),
        "tables": [{
            "name": "items", "path": "/items", "records": "/data",
            "pagination": {"type": "page", "size_param": "per_page", "size": PAGE},
            "columns": [
                {"name": "id", "type": "int64"}, {"name": "name", "type": "string"},
                {"name": "price", "type": "float64"}, {"name": "active", "type": "boolean"},
                {"name": "updated_at", "type": "timestamp"}
            ]
        }]
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _ = http_json(); // compile (or load from the cache) before timing
    let mut secs = Vec::new();
    for _ in 0..runs {
        let tmp = tempfile::tempdir().unwrap();
        let mut req = request(tmp.path(), "api", config.clone(), &[]);
        req.grant = Grant {
            http: vec![server.grant()],
            ..Grant::default()
        };
        req.limits = Limits::default();
        let started = Instant::now();
        let report = rt.block_on(runtime().run(http_json(), req, None)).unwrap();
        secs.push(started.elapsed().as_secs_f64());
        assert_eq!(report.rows as usize, records);
    }
    secs.sort_by(f64::total_cmp);
    let median = secs[secs.len() / 2];
    println!(
        "http-json: {records} records ({:.1} MB of JSON, {} pages) in {median:.2} s median of {runs}: {:.0} records/s, {:.1} MB/s of JSON",
        json_bytes as f64 / 1e6,
        records.div_ceil(PAGE),
        records as f64 / median,
        json_bytes as f64 / 1e6 / median
    );
}
