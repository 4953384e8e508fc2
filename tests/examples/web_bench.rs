//! The admin UI's render time at scale (`just bench`): a server with N sources of M tables
//! each (`agnes:sql` sources: registering them needs no component), one recorded run per
//! source with a failing table, G groups; then a signed-in admin requests the overview,
//! the sources page and the access page (the grants matrix) R times each, sequentially
//! over loopback. Prints p50 / p95 / max per page.
//!
//!     cargo run --release -p agnes-tests --example web_bench -- [sources] [tables per source] [requests]

use std::time::Instant;

use agnes_server::store::TableOutcome;
use agnes_tests::TestServer;
use agnes_tests::web_client::Client;
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sources: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let per_source: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let requests: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(200);
    let s = TestServer::start();
    let password = "a long enough password";
    s.admin_call(
        "PUT",
        "/api/admin/users/admin/password",
        Some(json!({"password": password})),
    );
    for g in 0..5 {
        s.admin_call(
            "POST",
            "/api/admin/groups",
            Some(json!({"name": format!("g{g}")})),
        );
    }
    for i in 0..sources {
        let name = format!("s{i:03}");
        s.admin_call(
            "POST",
            "/api/admin/sources",
            Some(json!({"name": name, "connector": "agnes:sql", "description": format!("source {i}")})),
        );
        let tables: Vec<_> = (0..per_source)
            .map(|t| {
                json!({"name": format!("{name}_t{t:02}"), "query_mode": "materialized",
                            "options": {"sql": "SELECT 1 AS x"}})
            })
            .collect();
        s.admin_call(
            "POST",
            &format!("/api/admin/sources/{name}/tables"),
            Some(json!({"tables": tables})),
        );
        s.admin_call(
            "POST",
            "/api/admin/grants",
            Some(json!({"group": format!("g{}", i % 5), "resource_type": "table", "resource_id": format!("{name}_t00")})),
        );
        // a recorded run with one failing table
        let store = &s.state.store;
        s.block_on(async {
            let run = store
                .start_run(&name, "schedule", false, "bench")
                .await
                .unwrap();
            for t in 0..per_source {
                let failed = t == 0;
                let outcome = TableOutcome {
                    table: format!("{name}_t{t:02}"),
                    status: if failed { "failed" } else { "ok" }.into(),
                    rows: (!failed).then_some(1000),
                    size_bytes: (!failed).then_some(4096),
                    error: failed
                        .then(|| "Catalog Error: Table with name nowhere does not exist!".into()),
                    finished_at: chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string(),
                };
                store.record_outcome(run, &outcome).await.unwrap();
            }
            store.finish_run(run, "partial", None).await.unwrap();
        });
    }
    let mut admin = Client::new(&s.base);
    assert_eq!(admin.sign_in("admin", password).status, 303);
    println!("### 11. Admin UI: page render time");
    println!();
    println!(
        "{sources} sources × {per_source} tables ({} tables), 5 groups, one recorded run per source; \
         a signed-in admin, {requests} sequential requests per page over loopback (release build):",
        sources * per_source
    );
    println!();
    println!("| page | p50 | p95 | max | size |");
    println!("|---|---:|---:|---:|---:|");
    for page in ["/admin", "/admin/sources", "/admin/access"] {
        let mut times = Vec::with_capacity(requests);
        let mut size = 0;
        for _ in 0..requests {
            let started = Instant::now();
            let p = admin.get(page);
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(p.status, 200, "{page}");
            size = p.body.len();
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!(
            "| `{page}` | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} kB |",
            at(0.5),
            at(0.95),
            times[times.len() - 1],
            size as f64 / 1e3
        );
    }
    println!();
}
