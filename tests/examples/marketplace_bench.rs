//! The plugin marketplace at scale (`just bench`): an upstream git repository with N plugins
//! (a manifest, a skill, two commands, a harmless hook and a script each), synced and reviewed
//! by the first-party reviewer; then C concurrent clients download the zip and
//! `git clone --depth 1` the served repository R times each, over loopback. Side by side: the
//! same clone straight from the upstream repository (git's own speed on these files).
//!
//!     cargo run --release -p agnes-tests --example marketplace_bench -- [plugins] [clients] [rounds]

use std::process::Command;
use std::time::{Duration, Instant};

use agnes_runtime::hook::ReviewLimits;
use agnes_tests::upstream::{Upstream, marketplace_server, upload_reviewer};
use agnes_tests::{PLUGIN_REVIEWER_COMPONENT, bearer, http, read_bytes};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "p50 {:>7.2} ms  p95 {:>7.2} ms  max {:>7.2} ms  (n = {})",
        percentile(&v, 0.5).as_secs_f64() * 1e3,
        percentile(&v, 0.95).as_secs_f64() * 1e3,
        v.last().unwrap().as_secs_f64() * 1e3,
        v.len()
    )
}

/// `clients` threads each running `work` `rounds` times; every duration.
fn concurrently(clients: usize, rounds: usize, work: impl Fn(usize) + Sync) -> Vec<Duration> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let work = &work;
                scope.spawn(move || {
                    (0..rounds)
                        .map(|r| {
                            let t = Instant::now();
                            work(c * rounds + r);
                            t.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn clone(url: &str, into: &std::path::Path) {
    clone_with(url, into, &[]);
}

fn clone_with(url: &str, into: &std::path::Path, extra: &[&str]) {
    let out = Command::new("git")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(["clone", "-q", "--depth", "1"])
        .args(extra)
        .arg(url)
        .arg(into)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let plugins: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let clients: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    let rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(3);

    let up = Upstream::new();
    let names: Vec<String> = (0..plugins).map(|i| format!("plugin-{i:03}")).collect();
    let filler = "Use the warehouse tables; prefer aggregates; explain each step.\n".repeat(30);
    for n in &names {
        up.plugin(
            n,
            "1.0.0",
            &[
                ("skills/analysis/SKILL.md", &format!("---\nname: analysis\ndescription: {n}\n---\n{filler}")),
                ("commands/summarize.md", &filler),
                ("commands/chart.md", &filler),
                ("hooks/hooks.json", r#"{"hooks":{"PostToolUse":[{"matcher":"Write","hooks":[{"type":"command","command":"${CLAUDE_PLUGIN_ROOT}/scripts/fmt.sh"}]}]}}"#),
                ("scripts/fmt.sh", "#!/bin/sh\necho formatted\n"),
            ],
        );
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    up.manifest(&refs, &[]);
    up.commit("plugins");

    let (s, secret, _keys) = marketplace_server(ReviewLimits::default());
    assert_eq!(
        upload_reviewer(
            &s,
            &secret,
            PLUGIN_REVIEWER_COMPONENT,
            "plugin-reviewer",
            "0.1.0"
        )
        .0,
        200
    );
    let t = Instant::now();
    let v = s.admin_call(
        "POST",
        "/api/admin/marketplaces",
        Some(json!({"name": "bench", "url": up.url()})),
    );
    let sync = t.elapsed();
    assert_eq!(v["sync"]["ok"], true, "{v}");
    let queue = s.admin_call("GET", "/api/admin/marketplace/plugins", None);
    let items = queue["plugins"].as_array().unwrap();
    assert!(
        items.iter().all(|p| p["status"] == "approved"),
        "every bench plugin is clean"
    );
    // the reviewer alone, per plugin: the stored bundles reviewed again in-process
    let runtime = &s.state.runtime;
    let reviewer = runtime
        .load_file(std::path::Path::new(PLUGIN_REVIEWER_COMPONENT))
        .unwrap();
    let review_times: Vec<Duration> = s.block_on(async {
        let mut out = Vec::new();
        for p in items {
            let bundle = agnes_server::marketplace::bundle::open(
                s.data_dir.path(),
                p["bundle"].as_str().unwrap(),
            )
            .unwrap();
            let t = Instant::now();
            let r = runtime
                .review(
                    &reviewer,
                    Default::default(),
                    std::sync::Arc::new(bundle),
                    None,
                    &ReviewLimits::default(),
                )
                .await;
            out.push(t.elapsed());
            assert_eq!(r.verdict, agnes_runtime::hook::Verdict::Allow);
        }
        out
    });
    s.admin_call(
        "POST",
        "/api/admin/groups",
        Some(json!({"name": "analysts"})),
    );
    s.admin_call(
        "POST",
        "/api/admin/grants",
        Some(json!({"group": "analysts", "resource_type": "marketplace_plugin", "resource_id": "bench/*"})),
    );
    let user = s.admin_call(
        "POST",
        "/api/admin/users",
        Some(json!({"name": "alice", "groups": ["analysts"]})),
    );
    let token = user["token"].as_str().unwrap().to_string();

    let zip = |_| {
        let r = http()
            .get(&s.url("/marketplace.zip"))
            .header("Authorization", &bearer(&token))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        std::hint::black_box(read_bytes(r));
    };
    let t = Instant::now();
    zip(0);
    let zip_cold = t.elapsed();
    let size = read_bytes(
        http()
            .get(&s.url("/marketplace.zip"))
            .header("Authorization", &bearer(&token))
            .call()
            .unwrap(),
    )
    .len();
    let zip_warm = concurrently(clients, rounds * 5, zip);

    let tmp = tempfile::tempdir().unwrap();
    let url = s.base.replace("http://", &format!("http://alice:{token}@")) + "/marketplace.git";
    let t = Instant::now();
    clone(&url, &tmp.path().join("cold"));
    let clone_cold = t.elapsed();
    let alone = concurrently(1, 5, |i| clone(&url, &tmp.path().join(format!("a{i}"))));
    let alone_direct = concurrently(1, 5, |i| {
        clone(&up.url(), &tmp.path().join(format!("b{i}")))
    });
    let served = concurrently(clients, rounds, |i| {
        clone(&url, &tmp.path().join(format!("c{i}")))
    });
    // without writing 1,400 files per clone: the server and the transfer, not the client's disk
    let no_checkout = concurrently(clients, rounds, |i| {
        clone_with(&url, &tmp.path().join(format!("n{i}")), &["--no-checkout"])
    });
    let direct = concurrently(clients, rounds, |i| {
        clone(&up.url(), &tmp.path().join(format!("d{i}")))
    });

    println!("### 12. Plugin marketplace: {plugins} plugins, {clients} concurrent clients");
    println!();
    println!("```");
    println!(
        "sync + review of {plugins} plugins (git fetch, bundles, reviews): {:.2} s",
        sync.as_secs_f64()
    );
    println!(
        "reviewer time per plugin (7 files, 6 kB):   {}",
        summary(review_times)
    );
    println!(
        "zip ({:.1} MB) first build:                  {:.1} ms",
        size as f64 / 1e6,
        zip_cold.as_secs_f64() * 1e3
    );
    println!(
        "zip, {clients} clients x {}:                   {}",
        rounds * 5,
        summary(zip_warm)
    );
    println!(
        "git clone --depth 1, first (builds repo):   {:.1} ms",
        clone_cold.as_secs_f64() * 1e3
    );
    println!(
        "git clone --depth 1 via Agnes, 1 client:    {}",
        summary(alone)
    );
    println!(
        "git clone --depth 1 of the upstream, 1 client: {}",
        summary(alone_direct)
    );
    println!(
        "git clone --depth 1 via Agnes, {clients} clients:  {}",
        summary(served.clone())
    );
    println!(
        "git clone --depth 1 of the upstream (file): {}",
        summary(direct.clone())
    );
    let p95 = |mut v: Vec<Duration>| {
        v.sort();
        percentile(&v, 0.95)
    };
    println!(
        "git clone --depth 1 --no-checkout via Agnes, {clients} clients: {}",
        summary(no_checkout)
    );
    println!(
        "served / upstream clone p95: {:.2}x; target: p95 < 5 s",
        p95(served).as_secs_f64() / p95(direct).as_secs_f64()
    );
    println!("```");
    println!();
}
