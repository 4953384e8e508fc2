//! What the original Agnes client (the public `keboola/agnes-the-ai-analyst` `cli/`) reads
//! from a server, answered in its shapes: `detail` in error bodies, the version headers it
//! checks on every answer, an empty corporate-memory bundle, the pull summary it posts.

use agnes_tests::TestServer;
use serde_json::json;

#[test]
fn the_original_clients_side_routes_answer_in_its_shapes() {
    let s = TestServer::start();
    let (st, bundle) = s.call(
        "GET",
        Some(&s.admin),
        "/api/memory/bundle?domain=finance",
        None,
    );
    assert_eq!(
        (st, bundle),
        (200, json!({"mandatory": [], "approved": []}))
    );
    let summary = json!({"duration_ms": 812, "direct_tables": {"added": 2, "updated": 0, "removed": 0}, "errors": 0});
    let (st, body) = s.call(
        "POST",
        Some(&s.admin),
        "/api/sync/pull-confirm",
        Some(summary),
    );
    assert_eq!((st, body["recorded"].as_bool()), (200, Some(true)));
    let audit = s.admin_call("GET", "/api/admin/audit?action=sync.pull_confirm", None);
    assert!(
        audit["entries"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("\"duration_ms\":812"),
        "{audit}"
    );
    // both need a token, like every data route
    assert_eq!(s.call("GET", None, "/api/memory/bundle", None).0, 401);

    // every answer carries the version headers; a floor of 0.0.0 refuses no client
    let r = agnes_tests::http()
        .get(&s.url("/api/health"))
        .call()
        .unwrap();
    assert_eq!(r.headers()["x-agnes-min-version"], "0.0.0");
    assert_eq!(
        r.headers()["x-agnes-latest-version"],
        env!("CARGO_PKG_VERSION")
    );

    // errors carry `detail` (what the original client prints) beside `code` and `message`
    for (method, path) in [
        ("GET", "/api/v2/schema/nope"),
        ("GET", "/api/nowhere"),
        ("GET", "/api/sync/runs/x"),
    ] {
        let (_, err) = s.call(method, Some(&s.admin), path, None);
        assert!(err["code"].is_string(), "{path}: {err}");
        assert_eq!(err["detail"], err["message"], "{path}: {err}");
    }
}

#[test]
fn catalog_schema_and_sample_carry_the_original_clients_fields() {
    let s = TestServer::start();
    s.with_demo_source(json!({"tables": [{"name": "orders"}]}));

    // catalog: ours plus id, source_type, sql_flavor, server_only; server_time on top
    let catalog = s.admin_call("GET", "/api/v2/catalog", None);
    assert!(catalog["server_time"].is_string());
    let row = &catalog["tables"][0];
    for (key, value) in [
        ("id", json!("orders")),
        ("name", json!("orders")),
        ("source", json!("demo")),
        ("source_type", json!("csv")),
        ("query_mode", json!("local")),
        ("sql_flavor", json!("duckdb")),
        ("server_only", json!(false)),
        ("rows", json!(2500)),
    ] {
        assert_eq!(row[key], value, "{key}: {row}");
    }
    assert!(
        row["size_bytes"].as_i64().unwrap() > 0 && row["updated"].is_string(),
        "{row}"
    );

    // schema: table_id, source_type, sql_flavor, columns with description
    let schema = s.admin_call("GET", "/api/v2/schema/orders", None);
    assert_eq!(
        (schema["table_id"].as_str(), schema["sql_flavor"].as_str()),
        (Some("orders"), Some("duckdb"))
    );
    assert_eq!(
        schema["columns"][0],
        json!({"name": "order_id", "type": "BIGINT", "nullable": true, "description": ""})
    );

    // sample: rows as objects by default (what the original prints); arrays on request
    let sample = s.admin_call("GET", "/api/v2/sample/orders?n=2", None);
    assert_eq!(
        (sample["table_id"].as_str(), sample["source"].as_str()),
        (Some("orders"), Some("demo"))
    );
    assert_eq!(sample["rows"][0]["order_id"], 1, "{sample}");
    assert_eq!(sample["rows"].as_array().unwrap().len(), 2);
    let arrays = s.admin_call("GET", "/api/v2/sample/orders?n=2&format=arrays", None);
    assert_eq!(arrays["rows"][0][0], 1, "{arrays}");
    assert_eq!(
        s.call(
            "GET",
            Some(&s.admin),
            "/api/v2/sample/orders?format=xml",
            None
        )
        .0,
        400
    );

    // scan/estimate take the original's `table_id` and `order_by`, answer its estimate fields
    let est = s.admin_call(
        "POST",
        "/api/v2/scan/estimate",
        Some(json!({"table_id": "orders", "where": "amount > 1000", "order_by": ["amount DESC"]})),
    );
    assert_eq!(est["engine"], "duckdb");
    assert_eq!(est["estimated_scan_bytes"], 0);
    assert_eq!(est["estimated_result_rows"], est["rows"]);
    assert!(est["rows"].as_u64().unwrap() > 0);
    for (order_by, needle) in [
        (json!(["amount SIDEWAYS"]), "ASC or DESC"),
        (json!(["nope"]), "name a column"),
    ] {
        let (st, err) = s.call(
            "POST",
            Some(&s.admin),
            "/api/v2/scan",
            Some(json!({"table_id": "orders", "order_by": order_by})),
        );
        assert_eq!(st, 400, "{err}");
        assert!(err["message"].as_str().unwrap().contains(needle), "{err}");
    }
    // a predicate that tries to read the session's settings is refused like in /api/query
    let (st, err) = s.call(
        "POST",
        Some(&s.admin),
        "/api/v2/scan",
        Some(json!({"table": "orders", "select": ["note"], "where": "note IN (SELECT value FROM duckdb_settings())"})),
    );
    assert_eq!(st, 400, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("duckdb_settings"),
        "{err}"
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn stored(s: &TestServer) -> Vec<String> {
    let mut names = Vec::new();
    for dir in std::fs::read_dir(s.data_dir.path().join("user_sessions"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            names.push(f.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    names
}

#[test]
fn session_uploads_are_capped_deduplicated_and_kept_per_user() {
    let s = TestServer::start();
    let ana = s.admin_call("POST", "/api/admin/users", Some(json!({"name": "ana"})))["token"]
        .as_str()
        .unwrap()
        .to_string();
    let up = |name: &str, bytes: &[u8]| {
        agnes_tests::upload(&s.base, &ana, "/api/upload/sessions", name, bytes)
    };
    let transcript = b"{\"type\":\"user\",\"message\":\"hi\"}\n".repeat(100);
    let (st, r) = up("4f1c.jsonl", &transcript);
    assert_eq!((st, r["status"].as_str()), (200, Some("ok")), "{r}");
    let (st, r) = up("4f1c.jsonl", &transcript);
    assert_eq!(
        (st, r["status"].as_str()),
        (200, Some("unchanged")),
        "same content: {r}"
    );
    // gzip, as the original client sends it once the server says `session-gzip`
    let health = agnes_tests::http()
        .get(&s.url("/api/health"))
        .call()
        .unwrap();
    assert_eq!(health.headers()["x-agnes-accepts"], "session-gzip");
    let (st, r) = up("9a2e.jsonl.gz", &gzip(&transcript));
    assert_eq!(
        (st, r["filename"].as_str(), r["size"].as_u64()),
        (200, Some("9a2e.jsonl"), Some(transcript.len() as u64)),
        "{r}"
    );

    // refusals store nothing
    let before = stored(&s);
    let bomb = gzip(&vec![0u8; 60 << 20]);
    assert!(
        bomb.len() < 1 << 20,
        "a small upload that inflates past the cap"
    );
    let (st, r) = up("bomb.jsonl.gz", &bomb);
    assert_eq!(
        (st, r["code"].as_str()),
        (413, Some("payload_too_large")),
        "{r}"
    );
    let (st, r) = up("big.jsonl", &vec![b'x'; 51 << 20]);
    assert!(st == 413 || st == 0, "over 50 MiB: {st} {r}");
    let (st, _) = up("broken.jsonl.gz", b"\x1f\x8b not really gzip");
    assert_eq!(st, 400);
    for bad in ["../escape.jsonl", ".hidden", "a b.jsonl", ""] {
        let (st, r) = up(bad, b"{}");
        assert_eq!(st, 400, "{bad:?}: {r}");
    }
    assert_eq!(
        stored(&s),
        before,
        "nothing stored by a refused upload, no temporary left"
    );
    assert_eq!(before, ["4f1c.jsonl", "9a2e.jsonl"]);

    // CLAUDE.local.md, deduplicated too
    let (st, r) = s.call(
        "POST",
        Some(&ana),
        "/api/upload/local-md",
        Some(json!({"content": "# notes"})),
    );
    assert_eq!((st, r["status"].as_str()), (200, Some("ok")));
    let (_, r) = s.call(
        "POST",
        Some(&ana),
        "/api/upload/local-md",
        Some(json!({"content": "# notes"})),
    );
    assert_eq!(r["status"], "unchanged");

    // admins list and download; analysts cannot
    let listed = s.admin_call("GET", "/api/admin/sessions?user=ana", None);
    assert_eq!(
        agnes_tests::pick(&listed["sessions"], &["file"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let r = agnes_tests::http()
        .get(&s.url("/api/admin/sessions/ana/9a2e.jsonl"))
        .header("Authorization", &agnes_tests::bearer(&s.admin))
        .call()
        .unwrap();
    assert_eq!(
        agnes_tests::read_bytes(r),
        transcript,
        "stored decompressed"
    );
    assert_eq!(
        s.call("GET", Some(&ana), "/api/admin/sessions", None).0,
        403
    );
    assert_eq!(
        s.call(
            "GET",
            Some(&s.admin),
            "/api/admin/sessions/ana/..%2Fx",
            None
        )
        .0,
        400
    );
}
