//! The scale-out mode end to end with the real `agnes` binary: servers sharing one
//! PostgreSQL state and one Garage bucket (a private cluster and a private Garage, separate
//! processes started by the test), real HTTP over loopback everywhere.

use agnes_tests::free_port;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use agnes_server::config::StorageConfig;
use agnes_tests::garage::{BUCKET, Garage, KEY_ID, REGION};
use agnes_tests::pg::PgCluster;
use agnes_tests::{TestServer, http};
use serde_json::{Value, json};

use super::text;

fn storage(g: &Garage, secret: &Path, ttl: u64) -> StorageConfig {
    StorageConfig {
        backend: "s3".into(),
        endpoint: Some(g.endpoint.clone()),
        public_endpoint: None,
        bucket: Some(BUCKET.into()),
        region: REGION.into(),
        access_key_id: Some(KEY_ID.into()),
        secret_access_key_file: Some(secret.to_path_buf()),
        presign_ttl_secs: ttl,
        grace_secs: 3600,
    }
}

fn manifest(server: &TestServer, token: &str) -> Value {
    let (st, m) = server.call("GET", Some(token), "/api/sync/manifest", None);
    assert_eq!(st, 200, "{m}");
    m
}

fn get(url: &str) -> (u16, Vec<u8>) {
    let r = http().get(url).call().unwrap();
    let status = r.status().as_u16();
    (status, agnes_tests::read_bytes(r))
}

fn md5(bytes: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(bytes))
}

fn downloads(server: &TestServer) -> usize {
    server.admin_call(
        "GET",
        "/api/admin/audit?action=data.download&limit=100",
        None,
    )["entries"]
        .as_array()
        .map_or(0, Vec::len)
}

/// A sync on server A reaches server B through the bucket (installed, md5-checked); the
/// manifest hands each analyst presigned URLs for the tables they may read, and nothing
/// else; the object store serves them without a token and refuses a tampered or expired
/// one; `agnes pull` downloads through them, and falls back to the server's own download
/// when the store refuses.
#[test]
fn a_sync_on_one_server_is_served_by_the_other_and_pulled_through_presigned_urls() {
    let pg = PgCluster::start();
    let garage = Garage::start();
    let secret = garage.secret_file();
    let state = pg.state_config();
    let s = storage(&garage, &secret, 900);
    let a = TestServer::start_with(|c| {
        c.state = state.clone();
        c.storage = s.clone();
    });
    // B's URLs live one second: the expired case
    let short = storage(&garage, &secret, 1);
    let b = TestServer::replica(&a, |c| {
        c.state = state.clone();
        c.storage = short.clone();
    });
    a.with_demo_source(json!({"all": true}));
    let ana = a.analyst("ana", "sales", "orders");

    // A's manifest: only what ana may read, each with a presigned URL
    let ma = manifest(&a, &ana);
    let tables = ma["tables"].as_object().unwrap();
    assert_eq!(tables.keys().collect::<Vec<_>>(), ["orders"], "{ma}");
    let orders = &ma["tables"]["orders"];
    let hash = orders["hash"].as_str().unwrap().to_string();
    let url = orders["signed_url"]
        .as_str()
        .expect("a presigned URL")
        .to_string();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(orders["signed_url_expires_at"].as_str().is_some());

    // B serves the same version, installed from the bucket
    let deadline = Instant::now() + Duration::from_secs(20);
    let mb = loop {
        let mb = manifest(&b, &ana);
        if mb["tables"]["orders"]["hash"] == hash.as_str() {
            break mb;
        }
        assert!(Instant::now() < deadline, "B never served A's sync: {mb}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (st, body) = {
        let r = http()
            .get(&b.url("/api/data/orders/download"))
            .header("Authorization", &agnes_tests::bearer(&ana))
            .call()
            .unwrap();
        (r.status().as_u16(), agnes_tests::read_bytes(r))
    };
    assert_eq!(
        (st, md5(&body)),
        (200, hash.clone()),
        "B's copy is A's file"
    );

    // the presigned URL needs no token and gives the same bytes
    let (st, bytes) = get(&url);
    assert_eq!((st, md5(&bytes)), (200, hash.clone()));
    // a tampered signature, or another key, is refused by the store
    let sig = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut tampered = url.clone();
    let flipped = if &url[sig..sig + 1] == "0" { "1" } else { "0" };
    tampered.replace_range(sig..sig + 1, flipped);
    assert_eq!(get(&tampered).0, 403, "tampered");
    let other = url.replace("orders.parquet", "customers.parquet");
    assert_eq!(get(&other).0, 403, "a URL for another file");
    // B's one-second URLs expire
    let expiring = mb["tables"]["orders"]["signed_url"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(2100));
    let (st, _) = get(&expiring);
    assert!(matches!(st, 400 | 403), "an expired URL: {st}");

    // agnes pull through A: the presigned URLs, not the server's download
    let agnes = |ws: &Path, config: &Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_agnes"))
            .args(args)
            .current_dir(ws)
            .env("AGNES_CONFIG_DIR", config)
            .env_remove("AGNES_SERVER")
            .env_remove("AGNES_TOKEN")
            .env_remove("AGNES_WORKSPACE")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let pull = |server: &TestServer| {
        let (ws, config) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let o = agnes(
            ws.path(),
            config.path(),
            &["init", "--server", &server.base, "--token", &ana],
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        let o = agnes(ws.path(), config.path(), &["pull", "--json"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let file = ws.path().join("server/parquet/orders.parquet");
        assert_eq!(agnes_tests::md5_file(&file), hash, "pulled and verified");
        (ws, config, text(&o.stderr))
    };
    let before = downloads(&a);
    pull(&a);
    assert_eq!(downloads(&a), before, "no download went through server A");

    // server C signs with a key the store does not know: refused, the CLI falls back
    let c_data = tempfile::tempdir().unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(b.data_dir.path().join("extracts"))
        .arg(c_data.path())
        .status()
        .unwrap();
    assert!(copied.success());
    let wrong = c_data.path().join("wrong-secret");
    std::fs::write(&wrong, "0".repeat(64)).unwrap();
    let bad = storage(&garage, &wrong, 900);
    let c_dir = c_data.path().to_path_buf();
    let c = TestServer::replica(&a, |c| {
        c.state = state.clone();
        c.storage = bad.clone();
        c.data_dir = c_dir.clone();
    });
    assert!(
        manifest(&c, &ana)["tables"]["orders"]["signed_url"].is_string(),
        "C hands out its (bad) URLs"
    );
    let before = downloads(&c);
    let (_ws, _config, stderr) = pull(&c);
    assert_eq!(
        downloads(&c),
        before + 1,
        "the fallback went through C: {stderr}"
    );
}

/// One `agnes serve` process of the lane, its log kept for the assertions.
struct Proc {
    child: std::process::Child,
    base: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `agnes serve --role <role>` on the shared state and bucket, its own data dir and port.
fn start(role: &str, state_url: &str, garage: &Garage, secret: &Path) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("agnes.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}\"\nlisten = \"127.0.0.1:{port}\"\nscheduler_tick_secs = 3600\n\
             allow_unsigned_connectors = true\n\
             [state]\nbackend = \"postgres\"\nurl = \"{state_url}\"\n\
             [storage]\nbackend = \"s3\"\nendpoint = \"{endpoint}\"\nbucket = \"{BUCKET}\"\n\
             region = \"{REGION}\"\naccess_key_id = \"{KEY_ID}\"\nsecret_access_key_file = \"{secret}\"\n\
             [worker]\nlease_secs = 5\n",
            data = dir.path().join("data").display(),
            endpoint = garage.endpoint,
            secret = secret.display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_agnes"))
        .args(["serve", "--role", role, "--config"])
        .arg(&config)
        .env("RUST_LOG", "agnes_server=info")
        .env("AGNES_SQL_COMPONENT", agnes_tests::SQL_COMPONENT)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Proc {
        child,
        base: format!("http://127.0.0.1:{port}"),
        log,
        _dir: dir,
    }
}

fn ready(p: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http().get(&format!("{}/readyz", p.base)).call()
            && r.status() == 200
        {
            return;
        }
        assert!(p.alive(), "agnes serve exited: {}", p.log());
        assert!(Instant::now() < deadline, "not ready: {}", p.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn call(base: &str, method: &str, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    agnes_tests::call(base, method, Some(token), path, body)
}

/// The run history of `source` as `api` shows it, newest first.
fn runs(api: &str, token: &str, source: &str) -> Vec<Value> {
    let (st, v) = call(
        api,
        "GET",
        token,
        &format!("/api/sync/history?source={source}&limit=50"),
        None,
    );
    assert_eq!(st, 200, "{v}");
    v["runs"].as_array().unwrap().clone()
}

/// Waits (bounded) until the newest run of `source` finished; returns it.
fn finished(api: &str, token: &str, source: &str) -> Value {
    // generous: the lane shares 2 cores with the rest of the suite
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let runs = runs(api, token, source);
        if let Some(r) = runs.first()
            && !matches!(r["status"].as_str(), Some("queued" | "running"))
        {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "no finished run: {runs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A CSV big enough that its sync takes a while in a debug build.
fn write_events(dir: &Path, round: u64) {
    let mut events = String::from("id,kind,payload\n");
    for i in 0..400_000u64 {
        let x = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15 ^ round);
        events.push_str(&format!("{i},k{},{x:016x}{round}\n", x % 7));
    }
    std::fs::write(dir.join("events.csv"), events).unwrap();
}

/// The distributed lane: two API processes and two workers (real `agnes serve` processes)
/// on one PostgreSQL state and one Garage bucket. A cold start of all four on an empty
/// database migrates once; a trigger on either API runs on one worker; two triggers at once
/// run one sync; a worker killed (SIGKILL) mid-sync loses the run to the other worker, which
/// finishes it while the previous version keeps serving; an API process killed leaves the
/// other serving.
#[test]
fn two_apis_and_two_workers_share_the_work() {
    let pg = PgCluster::start();
    let garage = Garage::start();
    let secret = garage.secret_file();
    let url = pg.state_config().url.unwrap();
    // all four at once on an empty database
    let mut procs: Vec<Proc> = ["api", "api", "worker", "worker"]
        .iter()
        .map(|role| start(role, &url, &garage, &secret))
        .collect();
    for p in &mut procs {
        ready(p);
    }
    let db = url.rsplit('/').next().unwrap();
    let latest = agnes_server::db::migrations::LATEST;
    assert_eq!(
        pg.psql(db, "SELECT count(*), max(version) FROM schema_version")
            .trim(),
        format!("{latest}|{latest}"),
        "migrated once"
    );
    // one of them made the admin and printed its token
    let token = procs
        .iter()
        .filter_map(|p| {
            let log = p.log();
            let at = log.find("Its token (shown once):\n")?;
            Some(log[at..].lines().nth(1)?.trim().to_string())
        })
        .collect::<Vec<_>>();
    assert_eq!(token.len(), 1, "one admin, one token");
    let token = token[0].clone();
    let (a, b) = (procs[0].base.clone(), procs[1].base.clone());
    // a worker serves only its probes
    let (st, _) = call(&procs[2].base, "GET", &token, "/api/sync/status", None);
    assert_eq!(st, 404, "a worker is no API");

    let data = tempfile::tempdir().unwrap();
    write_events(data.path(), 1);
    let host = data.path().canonicalize().unwrap();
    let (st, v) = call(
        &a,
        "POST",
        &token,
        "/api/admin/sources",
        Some(
            json!({"name": "events", "connector": agnes_tests::CSV_COMPONENT, "config": {"dir": "/data"},
                    "grant": {"dirs": [{"host": host, "guest": "/data"}]}}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    let (st, v) = call(
        &b,
        "POST",
        &token,
        "/api/admin/sources/events/tables",
        Some(json!({"all": true})),
    );
    assert_eq!(st, 201, "{v}");

    // two triggers at once, one per API: one run, on one worker
    let barrier = std::sync::Barrier::new(2);
    let trigger = |base: &str| {
        barrier.wait();
        call(base, "POST", &token, "/api/admin/sources/events/sync", None)
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ja = s.spawn(|| trigger(&a));
        let jb = s.spawn(|| trigger(&b));
        (ja.join().unwrap(), jb.join().unwrap())
    });
    let mut statuses = [ra.0, rb.0];
    statuses.sort();
    assert_eq!(statuses, [202, 409], "{ra:?} {rb:?}");
    let first = finished(&b, &token, "events");
    assert_eq!(first["status"], "ok", "{first}");
    assert_eq!(runs(&a, &token, "events").len(), 1);
    let ran: Vec<usize> = (2..4)
        .filter(|&i| procs[i].log().contains("running a queued sync"))
        .collect();
    assert_eq!(ran.len(), 1, "one worker ran it");
    // both APIs serve it, from the bucket
    let hash = |base: &str| {
        let (st, m) = call(base, "GET", &token, "/api/sync/manifest", None);
        assert_eq!(st, 200, "{m}");
        m["tables"]["events"]["hash"].as_str().map(str::to_string)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let v1 = loop {
        if let (Some(x), Some(y)) = (hash(&a), hash(&b))
            && x == y
        {
            break x;
        }
        assert!(Instant::now() < deadline, "the APIs never agreed");
        std::thread::sleep(Duration::from_millis(100));
    };

    // a new version; the worker that takes it is killed mid-sync
    write_events(data.path(), 2);
    let (st, v) = call(&a, "POST", &token, "/api/admin/sources/events/sync", None);
    assert_eq!(st, 202, "{v}");
    let run_id = v["run_id"].as_i64().unwrap_or_else(|| panic!("{v}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let victim = loop {
        let taken = pg.psql(
            db,
            &format!("SELECT status FROM source_runs WHERE id = {run_id}"),
        );
        if taken.trim() == "running" {
            let owners: Vec<usize> = (2..4)
                .filter(|&i| {
                    procs[i].log().matches("running a queued sync").count()
                        == if ran.contains(&i) { 2 } else { 1 }
                })
                .collect();
            if let [one] = owners[..] {
                break one;
            }
        }
        assert!(Instant::now() < deadline, "no worker took the run");
        std::thread::sleep(Duration::from_millis(10));
    };
    procs[victim].child.kill().unwrap(); // SIGKILL
    let _ = procs[victim].child.wait();
    // meanwhile the previous version serves
    assert_eq!(hash(&a).as_deref(), Some(v1.as_str()));
    let done = finished(&a, &token, "events");
    assert_eq!(
        done["id"], run_id,
        "the same run, finished elsewhere: {done}"
    );
    assert_eq!(done["status"], "ok", "{done}");
    assert_eq!(
        pg.psql(
            db,
            &format!("SELECT attempts FROM source_runs WHERE id = {run_id}")
        )
        .trim(),
        "1",
        "tried twice"
    );
    let survivor = if victim == 2 { 3 } else { 2 };
    assert!(procs[survivor].log().contains("running a queued sync"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while hash(&b).as_deref() == Some(v1.as_str()) {
        assert!(Instant::now() < deadline, "B never served the new version");
        std::thread::sleep(Duration::from_millis(100));
    }

    // an API process dies: the other serves on
    procs[0].child.kill().unwrap();
    let _ = procs[0].child.wait();
    let v2 = hash(&b).unwrap();
    assert_ne!(v2, v1);
    let r = http()
        .get(&format!("{b}/api/data/events/download"))
        .header("Authorization", &agnes_tests::bearer(&token))
        .call()
        .unwrap();
    assert_eq!(md5(&agnes_tests::read_bytes(r)), v2);
}
