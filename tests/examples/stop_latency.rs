//! Benchmark: how long after its deadline a runaway guest is stopped, for a guest spinning
//! in wasm, one blocked in a host call (a WASI clock wait), and one waiting on an HTTP
//! response that never comes (a loopback server that accepts and stays silent). Not a test.
//!
//!     cargo run -p agnes-tests --example stop_latency -- [RUNS]

use std::time::{Duration, Instant};

use agnes_runtime::{Error, Limits};
use agnes_tests::{hostile, request, runtime};
use axum::Router;
use axum::routing::get;

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let silent = agnes_tests::Loopback::start(Router::new().route(
        "/hang",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            "late"
        }),
    ));
    for mode in ["spin", "sleep", "http"] {
        let mut late: Vec<Duration> = Vec::with_capacity(runs);
        for _ in 0..runs {
            let tmp = tempfile::tempdir().unwrap();
            let config = serde_json::json!({"mode": mode, "url": silent.url("/hang")});
            let mut req = request(tmp.path(), "src", config, &[]);
            req.grant.http = vec![silent.grant()];
            req.limits = Limits {
                timeout_secs: 1,
                ..Limits::default()
            };
            let started = Instant::now();
            let err = rt
                .block_on(runtime().run(hostile(), req, None))
                .unwrap_err();
            let elapsed = started.elapsed();
            assert!(matches!(err, Error::Timeout { .. }), "{err}");
            // the deadline covers the whole run, from before instantiation
            late.push(elapsed.saturating_sub(Duration::from_secs(1)));
        }
        late.sort();
        let pct = |p: f64| late[((late.len() as f64 * p).ceil() as usize).clamp(1, late.len()) - 1];
        println!(
            "{mode:>5}: {runs} runs, stopped after the deadline by p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            late.last().unwrap().as_secs_f64() * 1e3
        );
    }
}
