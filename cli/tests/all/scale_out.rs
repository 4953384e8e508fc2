//! The scale-out mode end to end with the real `agnes` binary: servers sharing one
//! PostgreSQL state and one Garage bucket (a private cluster and a private Garage, separate
//! processes started by the test), real HTTP over loopback everywhere.

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
    a.admin_call("POST", "/api/admin/groups", Some(json!({"name": "sales"})));
    a.admin_call(
        "POST",
        "/api/admin/grants",
        Some(json!({"group": "sales", "resource_type": "table", "resource_id": "orders"})),
    );
    let ana = a.admin_call(
        "POST",
        "/api/admin/users",
        Some(json!({"name": "ana", "groups": ["sales"]})),
    )["token"]
        .as_str()
        .unwrap()
        .to_string();

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
