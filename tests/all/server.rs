//! The server over real HTTP on loopback: an admin registers the csv source, syncs it and
//! grants a table; members and non-members see exactly what they may; bad input is refused
//! with `{code, message}`; downloads during a sync are never torn.

use std::path::Path;
use std::sync::Arc;

use agnes_tests::{
    CSV_COMPONENT, HOSTILE_COMPONENT, TestServer, bearer, http, read_bytes, read_json, repo_root,
};
use md5::{Digest, Md5};
use serde_json::{Value, json};

fn post(s: &TestServer, token: &str, path: &str, body: Value) -> (u16, Value) {
    s.call("POST", Some(token), path, Some(body))
}

fn get(s: &TestServer, token: Option<&str>, path: &str) -> (u16, Value) {
    s.call("GET", token, path, None)
}

fn register_csv(s: &TestServer, name: &str, data: &Path) {
    let (status, body) = post(
        s,
        &s.admin,
        "/api/admin/register-table",
        json!({"name": name, "source": "demo", "connector": CSV_COMPONENT, "config": {"dir": "/data"},
               "grant": {"dirs": [{"host": data, "guest": "/data"}]}, "description": format!("demo {name}")}),
    );
    assert_eq!(status, 200, "{body}");
}

fn sync(s: &TestServer) {
    let (status, body) = post(s, &s.admin, "/api/sync/trigger", json!({}));
    assert_eq!(status, 202, "{body}");
    s.wait_for_sync();
}

/// Creates a user and returns its token.
fn user(s: &TestServer, name: &str, groups: &[&str]) -> String {
    let (status, body) = post(
        s,
        &s.admin,
        "/api/admin/users",
        json!({"name": name, "groups": groups}),
    );
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_string()
}

fn demo_server() -> (TestServer, String, String) {
    let s = TestServer::start();
    let data = repo_root()
        .join("examples/demo/data")
        .canonicalize()
        .unwrap();
    register_csv(&s, "orders", &data);
    register_csv(&s, "customers", &data);
    sync(&s);
    assert_eq!(
        post(
            &s,
            &s.admin,
            "/api/admin/groups",
            json!({"name": "finance"})
        )
        .0,
        200
    );
    let (st, b) = post(
        &s,
        &s.admin,
        "/api/admin/grants",
        json!({"group": "finance", "resource_type": "table", "resource_id": "orders"}),
    );
    assert_eq!(st, 200, "{b}");
    let ana = user(&s, "ana", &["finance"]);
    let bob = user(&s, "bob", &[]);
    (s, ana, bob)
}

#[test]
fn a_member_gets_the_granted_table_and_a_non_member_gets_nothing() {
    let (s, ana, bob) = demo_server();

    // history: one ok run with both tables
    let (_, hist) = get(&s, Some(&s.admin), "/api/sync/history");
    let run = &hist["runs"][0];
    assert_eq!(run["status"], "ok", "{hist}");
    assert_eq!(run["tables"].as_array().unwrap().len(), 2);
    assert_eq!(run["tables"][1]["table"], "orders");
    assert_eq!(run["tables"][1]["rows"], 2500);

    // ana: manifest has orders only, download matches its hash, query answers
    let (st, manifest) = get(&s, Some(&ana), "/api/sync/manifest");
    assert_eq!(st, 200);
    let tables = manifest["tables"].as_object().unwrap();
    assert_eq!(tables.keys().collect::<Vec<_>>(), ["orders"]);
    let orders = &tables["orders"];
    assert_eq!(orders["rows"], 2500);
    assert_eq!(orders["query_mode"], "local");
    assert!(manifest["server_time"].is_string());

    let r = http()
        .get(&s.url("/api/data/orders/download"))
        .header("Authorization", &bearer(&ana))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let bytes = read_bytes(r);
    let md5 = hex::encode(Md5::digest(&bytes));
    assert_eq!(
        md5,
        orders["hash"].as_str().unwrap(),
        "downloaded bytes hash to the manifest hash"
    );
    assert_eq!(etag, format!("\"{md5}\""));
    assert_eq!(bytes.len() as i64, orders["size_bytes"].as_i64().unwrap());

    let r = http()
        .get(&s.url("/api/data/orders/download"))
        .header("Authorization", &bearer(&ana))
        .header("If-None-Match", &etag)
        .call()
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = http()
        .get(&s.url("/api/data/orders/download"))
        .header("Authorization", &bearer(&ana))
        .header("Range", "bytes=4-99")
        .call()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        format!("bytes 4-99/{}", bytes.len())
    );
    assert_eq!(read_bytes(r), bytes[4..100]);
    let r = http()
        .get(&s.url("/api/data/orders/download"))
        .header("Authorization", &bearer(&ana))
        .header("Range", "bytes=999999999-")
        .call()
        .unwrap();
    assert_eq!(r.status(), 416);

    let (st, q) = post(
        &s,
        &ana,
        "/api/query",
        json!({"sql": "SELECT count(*) AS n, round(sum(amount), 2) AS total FROM orders", "limit": 10}),
    );
    assert_eq!(st, 200, "{q}");
    assert_eq!(q["columns"], json!(["n", "total"]));
    assert_eq!(q["rows"][0][0], 2500);
    assert_eq!(q["truncated"], false);
    let (st, schema) = get(&s, Some(&ana), "/api/v2/schema/orders");
    assert_eq!(st, 200);
    assert_eq!(schema["columns"][0]["name"], "order_id");
    let (st, sample) = get(&s, Some(&ana), "/api/v2/sample/orders?n=3");
    assert_eq!(st, 200);
    assert_eq!(sample["row_count"], 3);
    let (_, catalog) = get(&s, Some(&ana), "/api/catalog/tables");
    assert_eq!(catalog["tables"].as_array().unwrap().len(), 1);

    // bob: nothing
    let (_, manifest) = get(&s, Some(&bob), "/api/sync/manifest");
    assert!(
        manifest["tables"].as_object().unwrap().is_empty(),
        "{manifest}"
    );
    for path in [
        "/api/data/orders/download",
        "/api/v2/schema/orders",
        "/api/v2/sample/orders",
    ] {
        let (st, body) = get(&s, Some(&bob), path);
        assert_eq!(st, 403, "{path}: {body}");
        assert_eq!(body["code"], "forbidden");
    }
    let (st, body) = post(
        &s,
        &bob,
        "/api/query",
        json!({"sql": "SELECT * FROM orders"}),
    );
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["code"], "query_rejected");
    let (_, catalog) = get(&s, Some(&bob), "/api/v2/catalog");
    assert!(catalog["tables"].as_array().unwrap().is_empty());
    // non-admins cannot administer
    let (st, _) = post(&s, &bob, "/api/sync/trigger", json!({}));
    assert_eq!(st, 403);
    let (st, _) = post(
        &s,
        &bob,
        "/api/admin/grants",
        json!({"group": "Everyone", "resource_type": "table", "resource_id": "*"}),
    );
    assert_eq!(st, 403);

    // the audit log saw the admin actions and the data access
    let (_, audit) = get(&s, Some(&s.admin), "/api/admin/audit?limit=1000");
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "admin.bootstrap",
        "registry.register",
        "sync.trigger",
        "grant.create",
        "user.create",
        "data.download",
        "query.run",
        "query.rejected",
    ] {
        assert!(actions.contains(&a), "audit has {a}: {actions:?}");
    }
}

#[test]
fn tokens_missing_revoked_or_expired_get_401() {
    let s = TestServer::start();
    let (st, body) = get(&s, None, "/api/sync/manifest");
    assert_eq!(st, 401);
    assert_eq!(body["code"], "unauthorized");
    let (st, _) = get(&s, Some("agnes_deadbeef_0000"), "/api/sync/manifest");
    assert_eq!(st, 401);
    let r = http()
        .get(&s.url("/api/sync/manifest"))
        .header("Authorization", "Basic abc")
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);

    let token = user(&s, "carl", &[]);
    assert_eq!(get(&s, Some(&token), "/api/sync/manifest").0, 200);
    let (_, tokens) = get(&s, Some(&token), "/api/tokens");
    let id = tokens["tokens"][0]["id"].as_str().unwrap().to_string();
    assert!(
        tokens["tokens"][0]["last_used_at"].is_string(),
        "last use is recorded: {tokens}"
    );
    assert!(
        !tokens.to_string().contains(&token),
        "listings never contain the secret"
    );
    let r = http()
        .delete(&s.url(&format!("/api/tokens/{id}")))
        .header("Authorization", &bearer(&token))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        get(&s, Some(&token), "/api/sync/manifest").0,
        401,
        "revoked"
    );

    let (st, body) = post(
        &s,
        &s.admin,
        "/api/tokens",
        json!({"name": "short", "expires_in_days": 0}),
    );
    assert_eq!(st, 200);
    let expired = body["token"].as_str().unwrap();
    assert_eq!(
        get(&s, Some(expired), "/api/sync/manifest").0,
        401,
        "expired"
    );
    assert_eq!(get(&s, None, "/api/health").0, 200, "health needs no token");
}

#[test]
fn bad_input_is_refused_with_a_clear_json_error() {
    let (s, ana, _) = demo_server();
    let data = repo_root()
        .join("examples/demo/data")
        .canonicalize()
        .unwrap();
    for (body, needle) in [
        (
            json!({"name": "Bad Name", "source": "demo", "connector": CSV_COMPONENT}),
            "table name `Bad Name`",
        ),
        (
            json!({"name": "x", "source": "../etc", "connector": CSV_COMPONENT}),
            "source name `../etc`",
        ),
        (
            json!({"name": "x", "source": "demo", "connector": "relative.wasm"}),
            "absolute component path",
        ),
        (
            json!({"name": "x", "source": "other", "connector": CSV_COMPONENT, "grant": {"dirs": [{"host": "rel", "guest": "/data"}]}}),
            "must be absolute",
        ),
        (
            json!({"name": "x", "source": "other", "connector": CSV_COMPONENT, "schedule": "hourly"}),
            "schedule `hourly`",
        ),
        (
            json!({"name": "x", "source": "demo", "connector": CSV_COMPONENT, "unknown": 1}),
            "unknown",
        ),
    ] {
        let (status, err) = post(&s, &s.admin, "/api/admin/register-table", body.clone());
        assert_eq!(
            (status, err["code"].as_str()),
            (400, Some("bad_request")),
            "{body}: {err}"
        );
        assert!(
            err["message"].as_str().unwrap().contains(needle),
            "{body}: {err}"
        );
    }
    // another config for the same source conflicts
    let (st, body) = post(
        &s,
        &s.admin,
        "/api/admin/register-table",
        json!({"name": "products", "source": "demo", "connector": CSV_COMPONENT, "config": {"dir": "/other"},
               "grant": {"dirs": [{"host": data, "guest": "/data"}]}}),
    );
    assert_eq!(
        (st, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );

    for path in [
        "/api/data/..%2F..%2Fetc%2Fpasswd/download",
        "/api/data/ORDERS/download",
        "/api/v2/schema/a%20b",
    ] {
        let (st, body) = get(&s, Some(&ana), path);
        assert_eq!(st, 400, "{path}: {body}");
        assert_eq!(body["code"], "bad_request");
        assert!(
            body["message"].as_str().unwrap().contains("not allowed"),
            "{body}"
        );
    }
    let (st, _) = get(&s, Some(&ana), "/api/data/nope/download");
    assert_eq!(st, 404);
    let (st, body) = get(&s, Some(&ana), "/api/v2/sample/orders?n=many");
    assert_eq!(
        (st, body["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    let r = http()
        .post(&s.url("/api/query"))
        .header("Authorization", &bearer(&ana))
        .header("Content-Type", "application/json")
        .send("{not json")
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(read_json(r)["code"], "bad_request");

    for sql in [
        "SELECT * FROM read_csv('/etc/passwd')",
        "COPY orders TO '/tmp/stolen.csv'",
        "ATTACH '/tmp/x.duckdb' AS x",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "SELECT 1; SELECT 2",
        "SELECT * FROM customers",
        "",
    ] {
        let (st, body) = post(&s, &ana, "/api/query", json!({"sql": sql}));
        assert_eq!(st, 400, "{sql}: {body}");
        assert!(
            ["query_rejected", "bad_request"].contains(&body["code"].as_str().unwrap()),
            "{sql}: {body}"
        );
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    assert!(!Path::new("/tmp/stolen.csv").exists());
}

#[test]
fn a_second_trigger_while_syncing_gets_409_and_failures_are_recorded() {
    let s = TestServer::start();
    let (st, body) = post(
        &s,
        &s.admin,
        "/api/admin/register-table",
        json!({"name": "numbers", "source": "slow", "connector": HOSTILE_COMPONENT, "config": {"mode": "spin"},
               "limits": {"timeout_secs": 2}}),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(post(&s, &s.admin, "/api/sync/trigger", json!({})).0, 202);
    let (st, body) = post(&s, &s.admin, "/api/sync/trigger", json!({}));
    assert_eq!(
        (st, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    s.wait_for_sync();
    let (_, hist) = get(&s, Some(&s.admin), "/api/sync/history");
    let run = &hist["runs"][0];
    assert_eq!(run["status"], "failed");
    assert!(
        run["tables"][0]["error"]
            .as_str()
            .unwrap()
            .contains("time limit"),
        "{hist}"
    );
    let (st, body) = post(
        &s,
        &s.admin,
        "/api/sync/trigger",
        json!({"sources": ["nope"]}),
    );
    assert_eq!(st, 404, "{body}");
}

#[test]
fn downloads_during_syncs_are_never_torn() {
    let s = TestServer::start();
    let data = tempfile::tempdir().unwrap();
    let write = |n: usize| {
        let mut csv = String::from("id,payload\n");
        for i in 0..n {
            csv.push_str(&format!("{i},{}\n", "x".repeat(40)));
        }
        std::fs::write(data.path().join("big.csv"), csv).unwrap();
    };
    write(20_000);
    register_csv(&s, "big", &data.path().canonicalize().unwrap());
    sync(&s);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (url, token, stop) = (
            s.url("/api/data/big/download"),
            s.admin.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let mut checked = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || checked < 5 {
                let r = http()
                    .get(&url)
                    .header("Authorization", &bearer(&token))
                    .call()
                    .unwrap();
                assert_eq!(r.status(), 200);
                let etag = r.headers()["etag"]
                    .to_str()
                    .unwrap()
                    .trim_matches('"')
                    .to_string();
                let bytes = read_bytes(r);
                assert_eq!(
                    hex::encode(Md5::digest(&bytes)),
                    etag,
                    "a download's bytes always match its ETag"
                );
                assert_eq!(&bytes[..4], b"PAR1");
                checked += 1;
            }
            checked
        })
    };
    for round in 0..4 {
        write(20_000 + round * 1000 + 1);
        sync(&s);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let checked = reader.join().unwrap();
    assert!(checked >= 5);
    let (_, manifest) = get(&s, Some(&s.admin), "/api/sync/manifest");
    assert_eq!(manifest["tables"]["big"]["rows"], 23_001);
}

#[test]
fn the_openapi_document_lists_every_route() {
    let s = TestServer::start();
    let (st, doc) = get(&s, None, "/api/openapi.json");
    assert_eq!(st, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in agnes_server::openapi::routes() {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
        // and the router serves it: an unauthenticated call is never a 404/405
        let url = s.url(
            &path
                .replace("{name}", "orders")
                .replace("{version}", "0.1.0")
                .replace("{decision}", "approve")
                .replace("{id}", "t_x")
                .replace("{group}", "g")
                .replace("{user}", "u")
                .replace("{source}", "demo")
                .replace("{table}", "orders")
                .replace("{category}", "revenue")
                .replace("{marketplace}", "team")
                .replace("{plugin}", "p")
                .replace("{*rest}", "info/refs")
                .replace("{name}", "total"),
        );
        let agent = http();
        let r = match method {
            "get" => agent.get(&url).call(),
            "delete" => agent.delete(&url).call(),
            "post" => agent.post(&url).send_empty(),
            "put" => agent.put(&url).send_empty(),
            "patch" => agent.patch(&url).send_empty(),
            other => panic!("method {other}"),
        }
        .unwrap();
        assert!(
            ![404, 405].contains(&r.status().as_u16()),
            "{method} {path} is routed: {}",
            r.status()
        );
    }
}

#[test]
fn the_scheduler_syncs_due_tables_only() {
    let s = TestServer::start();
    let data = repo_root()
        .join("examples/demo/data")
        .canonicalize()
        .unwrap();
    let (st, body) = post(
        &s,
        &s.admin,
        "/api/admin/register-table",
        json!({"name": "products", "source": "demo", "connector": CSV_COMPONENT, "config": {"dir": "/data"},
               "grant": {"dirs": [{"host": data, "guest": "/data"}]}, "schedule": "every 1h"}),
    );
    assert_eq!(st, 200, "{body}");
    let first = s
        .block_on(agnes_server::sync::schedule_once(&s.state))
        .unwrap();
    assert_eq!(first.len(), 1, "never synced: due");
    s.wait_for_sync();
    let again = s
        .block_on(agnes_server::sync::schedule_once(&s.state))
        .unwrap();
    assert!(again.is_empty(), "synced just now: not due for an hour");
    let (_, hist) = get(&s, Some(&s.admin), "/api/sync/history");
    assert_eq!(hist["runs"][0]["trigger"], "schedule");
    assert_eq!(hist["runs"][0]["status"], "ok");

    // a source that fails is retried one interval later, not at every tick
    s.admin_call(
        "POST",
        "/api/admin/sources",
        Some(json!({"name": "flaky", "connector": HOSTILE_COMPONENT, "config": {"mode": "error"}, "schedule": "every 1h"})),
    );
    s.admin_call(
        "POST",
        "/api/admin/sources/flaky/tables",
        Some(json!({"tables": [{"name": "numbers"}]})),
    );
    let first = s
        .block_on(agnes_server::sync::schedule_once(&s.state))
        .unwrap();
    assert_eq!(
        first.iter().map(|r| r.source.as_str()).collect::<Vec<_>>(),
        ["flaky"]
    );
    s.wait_for_sync();
    let (_, hist) = get(&s, Some(&s.admin), "/api/sync/history?source=flaky");
    assert_eq!(hist["runs"][0]["status"], "failed", "{hist}");
    let again = s
        .block_on(agnes_server::sync::schedule_once(&s.state))
        .unwrap();
    assert!(
        again.is_empty(),
        "failed a moment ago: not due again for an hour"
    );
}

#[test]
fn a_table_name_is_owned_by_one_source_and_unregistered_extracts_are_not_served() {
    let s = TestServer::start();
    let extracts = s.data_dir.path().join("extracts");
    let (st, body) = post(
        &s,
        &s.admin,
        "/api/admin/sources",
        json!({"name": "aa", "connector": HOSTILE_COMPONENT, "config": {"mode": "good", "rows": 3}}),
    );
    assert_eq!(st, 201, "{body}");
    let (st, body) = post(
        &s,
        &s.admin,
        "/api/admin/sources/aa/tables",
        json!({"tables": [{"name": "numbers"}]}),
    );
    assert_eq!(st, 201, "{body}");
    // a second source may not take the name: the conflict names the owner
    let (st, body) = post(
        &s,
        &s.admin,
        "/api/admin/sources",
        json!({"name": "bb", "connector": HOSTILE_COMPONENT, "config": {"mode": "good", "rows": 7}}),
    );
    assert_eq!(st, 201, "{body}");
    let (st, body) = post(
        &s,
        &s.admin,
        "/api/admin/sources/bb/tables",
        json!({"tables": [{"name": "numbers"}]}),
    );
    assert_eq!(
        (st, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("belongs to source `aa`"),
        "{body}"
    );
    // the compatibility shape reports it the same way
    let (st, body) = post(
        &s,
        &s.admin,
        "/api/admin/register-table",
        json!({"name": "numbers", "source": "bb", "connector": HOSTILE_COMPONENT, "config": {"mode": "good", "rows": 7}}),
    );
    assert_eq!(st, 409, "{body}");

    // an extract published outside the registry (by hand, for `bb`) is never served
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let req = agnes_tests::request(&extracts, "bb", json!({"mode": "good", "rows": 7}), &[]);
    rt.block_on(agnes_tests::runtime().run(agnes_tests::hostile(), req, None))
        .unwrap();
    let (st, _) = post(&s, &s.admin, "/api/admin/sources/aa/sync", json!({}));
    assert_eq!(st, 202);
    s.wait_for_sync();
    let (_, manifest) = get(&s, Some(&s.admin), "/api/sync/manifest");
    assert_eq!(manifest["tables"]["numbers"]["source"], "aa", "{manifest}");
    assert_eq!(manifest["tables"]["numbers"]["rows"], 3);
    assert_eq!(manifest["tables"].as_object().unwrap().len(), 1);
    // the analytics database has one master view per served table
    let conn = duckdb::Connection::open(s.data_dir.path().join("analytics/server.duckdb")).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM numbers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
}

#[test]
fn a_removed_grant_or_membership_takes_effect_on_the_next_request() {
    let (s, ana, _) = demo_server();
    assert_eq!(
        get(&s, Some(&ana), "/api/v2/schema/orders").0,
        200,
        "cached as allowed"
    );
    let r = http()
        .delete(&s.url("/api/admin/grants"))
        .header("Authorization", &bearer(&s.admin))
        .force_send_body()
        .send_json(json!({"group": "finance", "resource_type": "table", "resource_id": "orders"}))
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        get(&s, Some(&ana), "/api/v2/schema/orders").0,
        403,
        "no stale grant from the auth cache"
    );
    let (_, manifest) = get(&s, Some(&ana), "/api/sync/manifest");
    assert!(manifest["tables"].as_object().unwrap().is_empty());
}

#[test]
fn with_trusted_keys_only_signed_connectors_register_and_sync() {
    let keys = tempfile::tempdir().unwrap();
    let (secret, public, _) = agnes_runtime::signature::keygen().unwrap();
    std::fs::write(keys.path().join("ops.pub"), &public).unwrap();
    let s = TestServer::start_with(|c| c.trusted_keys = Some(keys.path().to_path_buf()));
    let work = tempfile::tempdir().unwrap();
    let component = work.path().join("csv.wasm");
    std::fs::copy(CSV_COMPONENT, &component).unwrap();
    let manifest = repo_root().join("connectors-wasm/csv/connector.toml");
    let sig = agnes_runtime::signature::sign(
        &std::fs::read(&component).unwrap(),
        &std::fs::read(&manifest).unwrap(),
        &secret,
    )
    .unwrap();
    std::fs::write(
        work.path().join("csv.wasm.sig"),
        serde_json::to_string(&sig).unwrap(),
    )
    .unwrap();
    let data = repo_root()
        .join("examples/demo/data")
        .canonicalize()
        .unwrap();
    let body = |name: &str, manifest: Option<&Path>| {
        json!({"name": name, "source": "demo", "connector": component, "manifest": manifest,
               "grant": {"dirs": [{"host": data, "guest": "/data"}]}})
    };

    let (st, err) = post(
        &s,
        &s.admin,
        "/api/admin/register-table",
        body("orders", None),
    );
    assert_eq!(st, 400, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("only runs signed connectors"),
        "{err}"
    );
    let (st, err) = post(
        &s,
        &s.admin,
        "/api/admin/register-table",
        body("orders", Some(&manifest)),
    );
    assert_eq!(st, 200, "{err}");
    sync(&s);
    let (_, manifest_json) = get(&s, Some(&s.admin), "/api/sync/manifest");
    assert_eq!(manifest_json["tables"]["orders"]["rows"], 2500);

    // the component is swapped on disk after registration: the next sync refuses to run it
    let mut bytes = std::fs::read(&component).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&component, bytes).unwrap();
    sync(&s);
    let (_, hist) = get(&s, Some(&s.admin), "/api/sync/history");
    assert_eq!(hist["runs"][0]["status"], "failed");
    assert!(
        hist["runs"][0]["tables"][0]["error"]
            .as_str()
            .unwrap()
            .contains("modified after signing"),
        "{hist}"
    );
    let (_, after) = get(&s, Some(&s.admin), "/api/sync/manifest");
    assert_eq!(
        after["tables"]["orders"], manifest_json["tables"]["orders"],
        "the previous extract keeps serving"
    );
    let (st, err) = post(
        &s,
        &s.admin,
        "/api/admin/register-table",
        body("customers", Some(&manifest)),
    );
    assert_eq!(
        st, 400,
        "a tampered connector is refused at registration too: {err}"
    );
}

#[test]
fn signed_connectors_are_uploaded_listed_and_registered_by_version() {
    use base64::Engine as _;
    let keys = tempfile::tempdir().unwrap();
    let (secret, public, key_id) = agnes_runtime::signature::keygen().unwrap();
    std::fs::write(keys.path().join("ops.pub"), &public).unwrap();
    let s = TestServer::start_with(|c| c.trusted_keys = Some(keys.path().to_path_buf()));
    let component = std::fs::read(CSV_COMPONENT).unwrap();
    let manifest =
        std::fs::read_to_string(repo_root().join("connectors-wasm/csv/connector.toml")).unwrap();
    let sig = agnes_runtime::signature::sign(&component, manifest.as_bytes(), &secret).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&component);
    let upload =
        |component_b64: &str, manifest: &str, sig: &agnes_runtime::signature::SignatureFile| {
            post(
                &s,
                &s.admin,
                "/api/admin/connectors",
                json!({"component_base64": component_b64, "manifest": manifest, "signature": sig}),
            )
        };

    let (st, info) = upload(&b64, &manifest, &sig);
    assert_eq!(st, 200, "{info}");
    assert_eq!(
        (
            info["name"].as_str(),
            info["version"].as_str(),
            info["key_id"].as_str()
        ),
        (Some("csv"), Some("0.1.0"), Some(key_id.as_str()))
    );
    assert!(
        info["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i.as_str().unwrap().starts_with("wasi:filesystem/types")),
        "{info}"
    );
    let (st, again) = upload(&b64, &manifest, &sig);
    assert_eq!(
        (st, again["code"].as_str()),
        (409, Some("conflict")),
        "a version is immutable"
    );

    // refused: tampered bytes, a manifest asking for more, a foreign key, not base64
    let mut bad = component.clone();
    bad[100] ^= 1;
    let (st, e) = upload(
        &base64::engine::general_purpose::STANDARD.encode(&bad),
        &manifest,
        &sig,
    );
    assert!(
        st == 400
            && e["message"]
                .as_str()
                .unwrap()
                .contains("modified after signing"),
        "{e}"
    );
    let greedy = manifest
        .replace("0.1.0", "0.2.0")
        .replace("[\"/data\"]", "[\"/data\", \"/etc\"]");
    let (st, e) = upload(&b64, &greedy, &sig);
    assert!(
        st == 400
            && e["message"]
                .as_str()
                .unwrap()
                .contains("connector.toml was modified"),
        "{e}"
    );
    let (rogue, _, _) = agnes_runtime::signature::keygen().unwrap();
    let v2 = manifest.replace("0.1.0", "0.2.0");
    let (st, e) = upload(
        &b64,
        &v2,
        &agnes_runtime::signature::sign(&component, v2.as_bytes(), &rogue).unwrap(),
    );
    assert!(
        st == 400 && e["message"].as_str().unwrap().contains("not trusted"),
        "{e}"
    );
    let (st, _) = upload("%%%", &manifest, &sig);
    assert_eq!(st, 400);

    let (_, listed) = get(&s, Some(&s.admin), "/api/admin/connectors");
    assert_eq!(listed["connectors"].as_array().unwrap().len(), 1);
    assert_eq!(listed["connectors"][0]["digest"], info["digest"]);
    assert_eq!(listed["connectors"][0]["status"], "pending");

    // only a version a security reviewer approved can be used by a source
    let data = repo_root()
        .join("examples/demo/data")
        .canonicalize()
        .unwrap();
    let register = || {
        post(
            &s,
            &s.admin,
            "/api/admin/register-table",
            json!({"name": "orders", "source": "demo", "connector": "csv@0.1.0", "grant": {"dirs": [{"host": data, "guest": "/data"}]}}),
        )
    };
    let (st, e) = register();
    assert!(
        st == 400 && e["message"].as_str().unwrap().contains("pending review"),
        "{e}"
    );
    let (_, diff) = get(&s, Some(&s.admin), "/api/admin/connectors/csv/0.1.0/diff");
    assert_eq!(diff["from"], Value::Null, "nothing approved before: {diff}");
    assert!(
        diff["requests"]
            .as_array()
            .unwrap()
            .contains(&json!("+ dir /data")),
        "{diff}"
    );
    let (st, r) = post(
        &s,
        &s.admin,
        "/api/admin/connectors/csv/0.1.0/approve",
        json!({}),
    );
    assert_eq!((st, r["status"].as_str()), (200, Some("approved")), "{r}");
    let (st, e) = register();
    assert_eq!(st, 200, "{e}");
    let (st, e) = post(
        &s,
        &s.admin,
        "/api/admin/register-table",
        json!({"name": "other", "source": "x", "connector": "csv@9.9.9"}),
    );
    assert!(
        st == 400
            && e["message"]
                .as_str()
                .unwrap()
                .contains("no uploaded connector"),
        "{e}"
    );
    sync(&s);
    let (_, m) = get(&s, Some(&s.admin), "/api/sync/manifest");
    assert_eq!(m["tables"]["orders"]["rows"], 2500);
    // revoked: the next sync fails saying so, the last extract keeps serving
    let (st, r) = post(
        &s,
        &s.admin,
        "/api/admin/connectors/csv/0.1.0/revoke",
        json!({}),
    );
    assert_eq!((st, r["used_by"].clone()), (200, json!(["demo"])), "{r}");
    sync(&s);
    let (_, h) = get(&s, Some(&s.admin), "/api/sync/history?source=demo&limit=1");
    assert!(
        h["runs"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("revoked"),
        "{h}"
    );
    let (_, m) = get(&s, Some(&s.admin), "/api/sync/manifest");
    assert_eq!(m["tables"]["orders"]["rows"], 2500);
    let (_, audit) = get(&s, Some(&s.admin), "/api/admin/audit?action=connector");
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"connector.approve") && actions.contains(&"connector.revoke"),
        "{audit}"
    );

    // a server without trusted keys accepts no uploads
    let open = TestServer::start();
    let (st, e) = post(
        &open,
        &open.admin,
        "/api/admin/connectors",
        json!({"component_base64": b64, "manifest": manifest, "signature": sig}),
    );
    assert!(
        st == 400 && e["message"].as_str().unwrap().contains("trusted_keys"),
        "{e}"
    );
}

#[test]
fn without_trusted_keys_unsigned_connectors_are_refused_by_default() {
    let s = TestServer::start_with(|c| c.allow_unsigned_connectors = false);
    let data = repo_root()
        .join("examples/demo/data")
        .canonicalize()
        .unwrap();
    let (st, err) = post(
        &s,
        &s.admin,
        "/api/admin/register-table",
        json!({"name": "orders", "source": "demo", "connector": CSV_COMPONENT,
               "grant": {"dirs": [{"host": data, "guest": "/data"}]}}),
    );
    assert_eq!(st, 400, "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("runs only signed connectors") && message.contains("trusted_keys"),
        "{err}"
    );
    let (_, registry) = get(&s, Some(&s.admin), "/api/admin/registry");
    assert_eq!(
        registry["tables"].as_array().map(Vec::len),
        Some(0),
        "{registry}"
    );
}

#[test]
fn issue20_failed_authentication_is_rate_limited_per_client() {
    let s = TestServer::start_with(|c| c.auth.failures_per_minute = 5);
    // the admin's token, verified once, stays usable from this address
    assert_eq!(get(&s, Some(&s.admin), "/api/sync/manifest").0, 200);
    for i in 0..5 {
        let (st, body) = get(&s, Some("agnes_deadbeef_wrong"), "/api/sync/manifest");
        assert_eq!(
            (st, body["code"].as_str()),
            (401, Some("unauthorized")),
            "attempt {i}"
        );
    }
    let r = http()
        .get(&s.url("/api/sync/manifest"))
        .header("Authorization", &bearer("agnes_deadbeef_wrong"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body = read_json(r);
    assert_eq!(body["code"], "too_many_requests", "{body}");
    // a token verified within the last seconds still passes; an unknown one does not even
    // reach the database
    assert_eq!(get(&s, Some(&s.admin), "/api/sync/manifest").0, 200);
    let ana = user(&s, "ana", &[]);
    assert_eq!(get(&s, Some(&ana), "/api/sync/manifest").0, 429);
}

/// POSTs a `len`-byte body over a raw connection, writing it from another thread (a
/// server that refuses early may close before the body is sent: that write error is
/// ignored), and reads the answer: `(status, JSON body)`.
fn post_oversized(s: &TestServer, token: &str, path: &str, len: usize) -> (u16, Value) {
    use std::io::{Read, Write};
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    let mut writer = conn.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&vec![b' '; len]);
    });
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let _ = sending.join();
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn issue20_request_bodies_are_bounded_and_refused_as_json() {
    let s = TestServer::start();
    // JSON routes and a raw-body route alike
    for path in [
        "/api/query",
        "/api/admin/sources",
        "/api/tokens",
        "/api/sync/trigger",
    ] {
        let (st, body) = post_oversized(&s, &s.admin, path, 3 << 20);
        assert_eq!(
            (st, body["code"].as_str()),
            (413, Some("payload_too_large")),
            "{path}: {body}"
        );
    }
}

#[test]
fn issue20_the_server_speaks_tls_when_configured() {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = agnes_tests::self_signed(tmp.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = agnes_server::ServerConfig {
        data_dir: tmp.path().join("data"),
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        tls: Some(agnes_server::config::Tls {
            cert: cert.clone(),
            key: key.clone(),
        }),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.spawn(agnes_server::serve(config.clone()));
    let answer = rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap())
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let tcp = loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(t) => break t,
                Err(e) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the TLS server did not start: {e}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        };
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .expect("TLS handshake with the server's certificate");
        tls.write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await.ok();
        answer
    });
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // plain HTTP to the TLS port gets no HTTP answer
    let plain = http()
        .get(&format!("http://127.0.0.1:{port}/api/health"))
        .call();
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    // a missing key is a start-up error naming it
    let broken = agnes_server::ServerConfig {
        tls: Some(agnes_server::config::Tls {
            cert,
            key: tmp.path().join("missing.pem"),
        }),
        ..config
    };
    let err = rt.block_on(agnes_server::serve(broken)).unwrap_err();
    assert!(
        err.contains("[tls] key") && err.contains("missing.pem"),
        "{err}"
    );
    rt.shutdown_background();
}
