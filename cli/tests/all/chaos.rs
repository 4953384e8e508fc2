//! Issue 20, crash safety: `agnes serve` killed with SIGKILL at arbitrary points of 50
//! syncs while an analyst downloads; after every restart each served table is whole (its
//! bytes hash to the manifest), no staging directory is left, and no run stays `running`.
//! And a disk that fills up mid-sync (a file-size limit): a clear error, the previous
//! extract still serving.

use agnes_tests::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agnes_tests::{CSV_COMPONENT, bearer, call, http, read_bytes};
use md5::{Digest, Md5};
use serde_json::json;

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agnes(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agnes"));
    c.env("AGNES_DATA_DIR", data)
        .env("AGNES_ALLOW_UNSIGNED", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Starts `agnes serve` on `data` and waits (bounded) until it answers.
fn serve(data: &Path) -> Server {
    let port = free_port();
    let child = agnes(data)
        .arg("serve")
        .env("AGNES_LISTEN", format!("127.0.0.1:{port}"))
        .spawn()
        .unwrap();
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http().get(&format!("{}/api/health", server.base)).call()
            && r.status() == 200
        {
            return server;
        }
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CSV files that change with `round`, big enough that a sync takes a while.
fn write_data(dir: &Path, round: u64) {
    let mut events = String::from("id,kind,payload\n");
    for i in 0..30_000u64 {
        let x = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15 ^ round);
        events.push_str(&format!("{i},k{},{x:016x}{round}\n", x % 7));
    }
    std::fs::write(dir.join("events.csv"), events).unwrap();
    std::fs::write(dir.join("small.csv"), format!("round\n{round}\n")).unwrap();
}

fn md5(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// Every table in the manifest downloads whole: its bytes hash to the manifest's hash.
fn check_served(base: &str, token: &str) -> usize {
    let (st, manifest) = call(base, "GET", Some(token), "/api/sync/manifest", None);
    assert_eq!(st, 200);
    let tables = manifest["tables"].as_object().unwrap();
    for (name, meta) in tables {
        let r = http()
            .get(&format!("{base}/api/data/{name}/download"))
            .header("Authorization", &bearer(token))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(
            md5(&read_bytes(r)),
            meta["hash"].as_str().unwrap(),
            "{name} is whole"
        );
    }
    tables.len()
}

fn staging_leftovers(data: &Path) -> Vec<PathBuf> {
    let versions = data.join("extracts/.versions");
    let mut found = Vec::new();
    for source in std::fs::read_dir(&versions).into_iter().flatten().flatten() {
        for v in std::fs::read_dir(source.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if v.file_name().to_string_lossy().ends_with(".tmp") {
                found.push(v.path());
            }
        }
    }
    found
}

#[test]
fn issue20_a_server_killed_during_syncs_always_restarts_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("agnes");
    let csv = tmp.path().join("csv");
    std::fs::create_dir_all(&csv).unwrap();
    write_data(&csv, 0);
    let out = agnes(&data)
        .args(["admin", "bootstrap", "--json"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();

    let mut server = serve(&data);
    let grant = json!({"dirs": [{"host": csv.canonicalize().unwrap(), "guest": "/data"}]});
    let (st, body) = call(
        &server.base,
        "POST",
        Some(&token),
        "/api/admin/sources",
        Some(
            json!({"name": "demo", "connector": CSV_COMPONENT, "config": {"dir": "/data"}, "grant": grant}),
        ),
    );
    assert_eq!(st, 201, "{body}");
    let (st, _) = call(
        &server.base,
        "POST",
        Some(&token),
        "/api/admin/sources/demo/tables",
        Some(json!({"all": true})),
    );
    assert_eq!(st, 201);

    let (mut killed_mid_sync, mut completed) = (0, 0);
    let downloads = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    for round in 1..=50u64 {
        write_data(&csv, round);
        let (st, body) = call(
            &server.base,
            "POST",
            Some(&token),
            "/api/admin/sources/demo/sync",
            None,
        );
        assert_eq!(st, 202, "round {round}: {body}");
        // an analyst downloads meanwhile: whatever answers is whole (bytes = ETag)
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (base, token, stop, downloads) = (
                server.base.clone(),
                token.clone(),
                stop.clone(),
                downloads.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(r) = http()
                        .get(&format!("{base}/api/data/events/download"))
                        .header("Authorization", &bearer(&token))
                        .call()
                    else {
                        continue;
                    };
                    if r.status() != 200 {
                        continue;
                    }
                    let etag = r.headers()["etag"]
                        .to_str()
                        .unwrap()
                        .trim_matches('"')
                        .to_string();
                    let Ok(bytes) = r.into_body().read_to_vec() else {
                        continue; // cut by the kill
                    };
                    assert_eq!(md5(&bytes), etag, "a download during a sync is never torn");
                    downloads.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        if round % 4 == 0 {
            // every fourth kill after the run finished (whatever this machine's speed)
            let run = body["run_id"].as_i64().unwrap();
            let deadline = Instant::now() + Duration::from_secs(120);
            while call(
                &server.base,
                "GET",
                Some(&token),
                &format!("/api/sync/runs/{run}"),
                None,
            )
            .1["run"]["status"]
                == "running"
            {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: the sync did not finish"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            // the others at a point that moves through the sync: 0 .. 600 ms
            std::thread::sleep(Duration::from_millis((round * 37 % 16) * 40));
        }
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();

        server = serve(&data);
        check_served(&server.base, &token);
        assert_eq!(
            staging_leftovers(&data),
            Vec::<PathBuf>::new(),
            "round {round}"
        );
        let (_, history) = call(
            &server.base,
            "GET",
            Some(&token),
            "/api/sync/history?limit=1000",
            None,
        );
        let runs = history["runs"].as_array().unwrap();
        assert!(
            runs.iter().all(|r| r["status"] != "running"),
            "round {round}: {history}"
        );
        let last = &runs[0];
        if last["status"] == "ok" {
            completed += 1;
        } else {
            assert_eq!(
                last["error"], "the server stopped while this run was in progress",
                "{last}"
            );
            killed_mid_sync += 1;
        }
    }
    println!(
        "chaos: 50 kills in {:.1} s: {killed_mid_sync} during a sync, {completed} after it finished; {} whole downloads meanwhile",
        started.elapsed().as_secs_f64(),
        downloads.load(Ordering::Relaxed)
    );
    assert!(
        killed_mid_sync >= 1 && completed >= 12,
        "the kills hit both phases: {killed_mid_sync} / {completed}"
    );
}

#[test]
fn issue20_a_disk_that_fills_up_mid_sync_is_a_clear_error_and_the_old_extract_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("csv");
    std::fs::create_dir_all(&csv).unwrap();
    write_data(&csv, 1);
    let config = tmp.path().join("run.toml");
    std::fs::write(
        &config,
        format!(
            "source = \"demo\"\n[config]\ndir = \"/data\"\n[[grant.dirs]]\nhost = \"{}\"\nguest = \"/data\"\n",
            csv.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("extracts/demo");
    let run = |limit_kb: Option<u64>| {
        let agnes = env!("CARGO_BIN_EXE_agnes");
        let cmd = format!(
            "{} exec '{agnes}' connector run '{CSV_COMPONENT}' --config '{}' --out '{}' --allow-unsigned",
            match limit_kb {
                // writes past the limit fail with EFBIG (SIGXFSZ ignored), as on a full disk
                Some(kb) => format!("trap '' XFSZ; ulimit -f {kb};"),
                None => String::new(),
            },
            config.display(),
            out.display()
        );
        Command::new("sh")
            .args(["-c", &cmd])
            .env("AGNES_CACHE_DIR", tmp.path().join("cache"))
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let good = run(None);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let before = agnes_tests::snapshot_without_locks(&tmp.path().join("extracts"));

    write_data(&csv, 2);
    // 200 KB: the events parquet (~900 KB) cannot be written
    let full = run(Some(200));
    let stderr = String::from_utf8_lossy(&full.stderr);
    assert_eq!(full.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("File too large") || stderr.contains("No space"),
        "{stderr}"
    );
    assert!(
        stderr.contains("nothing was published") || stderr.contains("previous"),
        "{stderr}"
    );
    assert_eq!(
        agnes_tests::snapshot_without_locks(&tmp.path().join("extracts")),
        before,
        "the previous extract is untouched"
    );
    let n = agnes_tests::query_i64(&out, "SELECT max(round) FROM small");
    assert_eq!(n, 1, "the old extract still serves");
}

/// `agnes admin bootstrap --generate-password`, then the real `agnes serve` binary: the
/// printed password signs in to the web UI (and a wrong one does not).
#[test]
fn bootstrap_gives_the_first_admin_a_web_password() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("agnes");
    let out = agnes(&data)
        .args(["admin", "bootstrap", "--generate-password", "--json"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let password = v["password"].as_str().unwrap().to_string();
    assert_eq!(password.len(), 24);
    let server = serve(&data);
    let mut browser = agnes_tests::web_client::Client::new(&server.base);
    let p = browser.sign_in("admin", "not the password, but long");
    assert!(p.location.contains("error="), "{}", p.location);
    let p = browser.sign_in("admin", &password);
    assert_eq!((p.status, p.location.as_str()), (303, "/admin"));
    let overview = browser.get("/admin");
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("Overview"), "{}", overview.body);
}

/// One embedded state, one process: a second `agnes serve` on the same data directory exits
/// with a clear error while the first keeps serving; `/healthz` and `/readyz` answer.
#[test]
fn a_second_server_on_one_data_dir_is_refused_and_the_first_stays_ready() {
    let data = tempfile::tempdir().unwrap();
    let first = serve(data.path());
    let port = free_port();
    let out = agnes(data.path())
        .arg("serve")
        .env("AGNES_LISTEN", format!("127.0.0.1:{port}"))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another process")
            && stderr.contains("one `agnes serve` at a time"),
        "{stderr}"
    );
    for path in ["/healthz", "/readyz"] {
        let r = http().get(&format!("{}{path}", first.base)).call().unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let ready = agnes_tests::read_json(
        http()
            .get(&format!("{}/readyz", first.base))
            .call()
            .unwrap(),
    );
    assert_eq!(ready["status"], "ready");
}
