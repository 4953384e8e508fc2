//! Sources as records over real HTTP (issue 11): a source with three tables registers once
//! and syncs once; its config is checked against the connector's schema; discover lists
//! what can be picked; deleting a source removes its tables and extract and lists the
//! grants left dangling; disabled sources never sync; admin routes answer 403 before
//! parsing a body; unknown routes answer JSON.

use agnes_tests::{CSV_COMPONENT, TestServer, repo_root};
use serde_json::{Value, json};

fn demo_data() -> std::path::PathBuf {
    repo_root()
        .join("examples/demo/data")
        .canonicalize()
        .unwrap()
}

fn csv_source(name: &str, config: Value) -> Value {
    json!({"name": name, "connector": CSV_COMPONENT, "config": config,
           "grant": {"dirs": [{"host": demo_data(), "guest": "/data"}]}, "description": "the demo CSVs"})
}

/// A server with source `demo` (csv) holding customers, orders and products, synced once.
fn demo() -> TestServer {
    let s = TestServer::start();
    s.with_demo_source(json!({"tables": [{"name": "customers"}, {"name": "orders", "description": "all orders"}, {"name": "products"}]}));
    s
}

fn user(s: &TestServer, name: &str, groups: &[&str]) -> String {
    let body = s.admin_call(
        "POST",
        "/api/admin/users",
        Some(json!({"name": name, "groups": groups})),
    );
    body["token"].as_str().unwrap().to_string()
}

#[test]
fn a_source_with_three_tables_registers_once_and_syncs_once() {
    let s = demo();
    // one run of one source, one outcome per table
    let runs = s.admin_call("GET", "/api/sync/history", None)["runs"].clone();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    let run = &runs[0];
    assert_eq!(
        (run["source"].as_str(), run["status"].as_str()),
        (Some("demo"), Some("ok")),
        "{run}"
    );
    let outcomes = agnes_tests::pick(&run["tables"], &["table", "status"]);
    assert_eq!(
        outcomes,
        json!([["customers", "ok"], ["orders", "ok"], ["products", "ok"]])
    );
    assert_eq!(run["tables"][1]["rows"], 2500);
    // served, with the table's mode
    let manifest = s.admin_call("GET", "/api/sync/manifest", None);
    let names: Vec<&String> = manifest["tables"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["customers", "orders", "products"]);
    // the source shows its tables and its run
    let shown = s.admin_call("GET", "/api/admin/sources/demo", None);
    assert_eq!(shown["tables"].as_array().unwrap().len(), 3);
    assert_eq!(shown["tables"][1]["description"], "all orders");
    assert_eq!(shown["runs"][0]["id"], run["id"]);
    let listed = s.admin_call("GET", "/api/admin/sources", None);
    assert_eq!(
        listed["sources"][0]["tables"],
        json!(["customers", "orders", "products"])
    );
    assert_eq!(listed["sources"][0]["last_run"]["status"], "ok");
    // GET /api/sync/runs/{id} is the same run
    let one = s.admin_call("GET", &format!("/api/sync/runs/{}", run["id"]), None);
    assert_eq!(one["run"], *run);
    // the compatibility registry shows the same three tables with the source's fields
    let registry = s.admin_call("GET", "/api/admin/registry", None);
    let rows = registry["tables"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r["source"] == "demo" && r["config"] == json!({"dir": "/data"})),
        "{registry}"
    );
    // an audit trail of what the admin did
    let audit = s.admin_call("GET", "/api/admin/audit?action=source", None);
    let actions = agnes_tests::pick(&audit["entries"], &["action"]);
    assert_eq!(actions, json!(["source.create"]));
    let audit = s.admin_call(
        "GET",
        "/api/admin/audit?since=2000-01-01&action=table.add",
        None,
    );
    assert_eq!(audit["entries"][0]["detail"], "customers,orders,products");
    let (st, body) = s.call(
        "GET",
        Some(&s.admin),
        "/api/admin/audit?since=yesterday",
        None,
    );
    assert_eq!(st, 400, "{body}");
}

#[test]
fn config_that_violates_the_connectors_schema_is_refused_naming_the_key() {
    let s = TestServer::start();
    for (config, needle) in [
        (
            json!({"dir": "/data", "delimiter": ";;"}),
            "`config.delimiter`: must be at most 1 characters",
        ),
        (
            json!({"dirr": "/data"}),
            "`config.dirr`: is not a known key",
        ),
        (
            json!({"dir": "/data", "batch_rows": 0}),
            "`config.batch_rows`: must be at least 1",
        ),
        (json!({"dir": 7}), "`config.dir`: must be string"),
    ] {
        let (st, body) = s.call(
            "POST",
            Some(&s.admin),
            "/api/admin/sources",
            Some(csv_source("bad", config.clone())),
        );
        assert_eq!(
            (st, body["code"].as_str()),
            (400, Some("bad_request")),
            "{config}: {body}"
        );
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(needle), "{config}: {message}");
        assert!(
            message.contains("connector csv@"),
            "names the connector: {message}"
        );
    }
    let (st, _) = s.call("GET", Some(&s.admin), "/api/admin/sources/bad", None);
    assert_eq!(st, 404, "nothing was stored");

    // an update is checked the same way and leaves the source as it was
    s.admin_call(
        "POST",
        "/api/admin/sources",
        Some(csv_source("good", json!({"dir": "/data"}))),
    );
    let (st, body) = s.call(
        "PATCH",
        Some(&s.admin),
        "/api/admin/sources/good",
        Some(json!({"config": {"dir": "/data", "has_header": "yes"}})),
    );
    assert_eq!(st, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("`config.has_header`: must be boolean"),
        "{body}"
    );
    let shown = s.admin_call("GET", "/api/admin/sources/good", None);
    assert_eq!(shown["source"]["config"], json!({"dir": "/data"}));
    // a valid patch changes only what it names; null clears the schedule
    let patched = s.admin_call(
        "PATCH",
        "/api/admin/sources/good",
        Some(json!({"schedule": "every 1h", "description": null})),
    );
    assert_eq!(patched["source"]["schedule"], "every 1h");
    assert_eq!(patched["source"]["description"], Value::Null);
    assert_eq!(patched["source"]["config"], json!({"dir": "/data"}));
    let patched = s.admin_call(
        "PATCH",
        "/api/admin/sources/good",
        Some(json!({"schedule": null})),
    );
    assert_eq!(patched["source"]["schedule"], Value::Null);
    // a second source of the same name is a conflict
    let (st, body) = s.call(
        "POST",
        Some(&s.admin),
        "/api/admin/sources",
        Some(csv_source("good", json!({}))),
    );
    assert_eq!(
        (st, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    // other field errors name the field
    for (body, needle) in [
        (
            json!({"name": "x", "connector": "csv"}),
            "`<name>@<version>`",
        ),
        (
            json!({"name": "x", "connector": "csv@9.9.9"}),
            "no uploaded connector `csv@9.9.9`",
        ),
        (
            json!({"name": "x", "connector": CSV_COMPONENT, "schedule": "hourly"}),
            "schedule `hourly`",
        ),
        (
            json!({"name": "x", "connector": CSV_COMPONENT, "config": []}),
            "config must be a JSON object",
        ),
        (
            json!({"name": "Bad", "connector": CSV_COMPONENT}),
            "source name `Bad`",
        ),
        (
            json!({"name": "x", "connector": CSV_COMPONENT, "tables": []}),
            "unknown field `tables`",
        ),
    ] {
        let (st, err) = s.call(
            "POST",
            Some(&s.admin),
            "/api/admin/sources",
            Some(body.clone()),
        );
        assert_eq!(st, 400, "{body}: {err}");
        assert!(
            err["message"].as_str().unwrap().contains(needle),
            "{body}: {err}"
        );
    }
}

#[test]
fn discover_lists_the_connectors_tables_and_all_adds_the_new_ones() {
    let s = TestServer::start();
    s.admin_call(
        "POST",
        "/api/admin/sources",
        Some(csv_source("demo", json!({"dir": "/data"}))),
    );
    s.admin_call(
        "POST",
        "/api/admin/sources/demo/tables",
        Some(json!({"tables": [{"name": "orders"}]})),
    );
    let found = s.admin_call("POST", "/api/admin/sources/demo/discover", None);
    let tables = found["tables"].as_array().unwrap();
    let names: Vec<(&str, bool)> = tables
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["registered"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("customers", false), ("orders", true), ("products", false)]
    );
    let orders = &tables[1];
    assert!(
        orders["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "order_id" && c["type"] == "Int64"),
        "{orders}"
    );
    let added = s.admin_call(
        "POST",
        "/api/admin/sources/demo/tables",
        Some(json!({"all": true})),
    );
    let added = agnes_tests::pick(&added["added"], &["name"]);
    assert_eq!(added, json!(["customers", "products"]));
    let again = s.admin_call(
        "POST",
        "/api/admin/sources/demo/tables",
        Some(json!({"all": true})),
    );
    assert_eq!(again["added"], json!([]), "nothing new the second time");
    for (body, code) in [
        (json!({}), 400),
        (json!({"all": true, "tables": [{"name": "x"}]}), 400),
        (json!({"tables": [{"name": "orders"}]}), 409),
        (json!({"tables": [{"name": "a"}, {"name": "a"}]}), 400),
        (
            json!({"tables": [{"name": "r", "query_mode": "remote"}]}),
            400,
        ),
    ] {
        let (st, err) = s.call(
            "POST",
            Some(&s.admin),
            "/api/admin/sources/demo/tables",
            Some(body.clone()),
        );
        assert_eq!(st, code, "{body}: {err}");
    }
    let tables = s.admin_call("GET", "/api/admin/tables?source=demo", None);
    assert_eq!(
        tables["tables"].as_array().unwrap().len(),
        3,
        "a refused batch adds nothing"
    );
    // a discover that fails (a directory the grant does not cover) is a clear 400
    s.admin_call(
        "POST",
        "/api/admin/sources",
        Some(csv_source("elsewhere", json!({"dir": "/nowhere"}))),
    );
    let (st, err) = s.call(
        "POST",
        Some(&s.admin),
        "/api/admin/sources/elsewhere/discover",
        None,
    );
    assert_eq!(st, 400, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with("discover failed"),
        "{err}"
    );
}

#[test]
fn deleting_a_source_removes_its_tables_and_extract_and_lists_dangling_grants() {
    let s = demo();
    s.admin_call("POST", "/api/admin/groups", Some(json!({"name": "sales"})));
    for (t, id) in [("source", "demo"), ("table", "orders"), ("table", "*")] {
        s.admin_call(
            "POST",
            "/api/admin/grants",
            Some(json!({"group": "sales", "resource_type": t, "resource_id": id})),
        );
    }
    let ana = user(&s, "ana", &["sales"]);
    let (st, _) = s.call("GET", Some(&ana), "/api/data/orders/download", None);
    assert_eq!(st, 200);
    let extract = s.data_dir.path().join("extracts/demo");
    assert!(extract.exists());

    let removal = s.admin_call("DELETE", "/api/admin/sources/demo", None);
    assert_eq!(
        removal["tables"],
        json!(["customers", "orders", "products"])
    );
    let dangling = agnes_tests::pick(
        &removal["dangling_grants"],
        &["resource_type", "resource_id"],
    );
    assert_eq!(
        dangling,
        json!([["source", "demo"], ["table", "orders"]]),
        "`*` never dangles"
    );
    // the grants are kept and listed as dangling, not silently dropped
    let grants = s.admin_call("GET", "/api/admin/grants", None);
    let flags: Vec<(String, bool)> = grants["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                format!(
                    "{}:{}",
                    g["resource_type"].as_str().unwrap(),
                    g["resource_id"].as_str().unwrap()
                ),
                g["dangling"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        [
            ("source:demo".to_string(), true),
            ("table:*".to_string(), false),
            ("table:orders".to_string(), true)
        ]
    );
    // nothing is served, the extract is gone, the source is gone
    let manifest = s.admin_call("GET", "/api/sync/manifest", None);
    assert_eq!(manifest["tables"], json!({}));
    let (st, _) = s.call("GET", Some(&ana), "/api/data/orders/download", None);
    assert_eq!(st, 404);
    assert!(!extract.exists() && !s.data_dir.path().join("extracts/.versions/demo").exists());
    let (st, _) = s.call("GET", Some(&s.admin), "/api/admin/sources/demo", None);
    assert_eq!(st, 404);
    let (st, _) = s.call("DELETE", Some(&s.admin), "/api/admin/sources/demo", None);
    assert_eq!(st, 404, "deleting twice");
    // the history of the deleted source stays
    let runs = s.admin_call("GET", "/api/sync/history?source=demo", None);
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
}

#[test]
fn a_removed_table_stops_being_served_at_once() {
    let s = demo();
    let removed = s.admin_call("DELETE", "/api/admin/sources/demo/tables/products", None);
    assert_eq!(removed["removed"], "products");
    let manifest = s.admin_call("GET", "/api/sync/manifest", None);
    assert!(manifest["tables"].get("products").is_none(), "{manifest}");
    let (st, _) = s.call("GET", Some(&s.admin), "/api/v2/schema/products", None);
    assert_eq!(st, 404);
    let (st, _) = s.call(
        "DELETE",
        Some(&s.admin),
        "/api/admin/sources/demo/tables/products",
        None,
    );
    assert_eq!(st, 404);
    // the next sync reads only the remaining tables
    s.admin_call(
        "POST",
        "/api/admin/sources/demo/sync",
        Some(json!({"full_refresh": true})),
    );
    s.wait_for_sync();
    let run = &s.admin_call("GET", "/api/sync/history?source=demo&limit=1", None)["runs"][0];
    assert_eq!(run["tables"].as_array().unwrap().len(), 2, "{run}");
    assert_eq!(run["full_refresh"], true);
    // a table's description changes without a sync
    let t = s.admin_call(
        "PATCH",
        "/api/admin/sources/demo/tables/orders",
        Some(json!({"description": "orders, all"})),
    );
    assert_eq!(t["table"]["description"], "orders, all");
    let manifest = s.admin_call("GET", "/api/sync/manifest", None);
    assert_eq!(
        manifest["tables"]["orders"]["description"], "orders, all",
        "the admin's description is served"
    );
    assert_eq!(
        manifest["tables"]["customers"]["description"], "CSV file customers.csv",
        "without one, the connector's"
    );
}

#[test]
fn disabled_sources_never_sync_and_disabled_users_lose_access() {
    let s = demo();
    s.admin_call(
        "PATCH",
        "/api/admin/sources/demo",
        Some(json!({"enabled": false, "schedule": "every 10s"})),
    );
    let (st, body) = s.call("POST", Some(&s.admin), "/api/admin/sources/demo/sync", None);
    assert_eq!(
        (st, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("disabled"),
        "{body}"
    );
    let (st, _) = s.call("POST", Some(&s.admin), "/api/sync/trigger", None);
    assert_eq!(st, 409, "nothing enabled to sync");
    let started = s
        .block_on(agnes_server::sync::schedule_once(&s.state))
        .unwrap();
    assert!(started.is_empty(), "the scheduler skips a disabled source");
    // it still serves what it published
    assert_eq!(
        s.admin_call("GET", "/api/sync/manifest", None)["tables"]
            .as_object()
            .unwrap()
            .len(),
        3
    );

    let bob = user(&s, "bob", &[]);
    assert_eq!(s.call("GET", Some(&bob), "/api/sync/manifest", None).0, 200);
    s.admin_call("POST", "/api/admin/users/bob/disable", None);
    assert_eq!(
        s.call("GET", Some(&bob), "/api/sync/manifest", None).0,
        401,
        "the next request"
    );
    let users = s.admin_call("GET", "/api/admin/users", None);
    let bob = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "bob")
        .unwrap()
        .clone();
    assert!(bob["disabled_at"].is_string(), "{bob}");
    assert_eq!(bob["groups"], json!(["Everyone"]));
    let (st, _) = s.call(
        "POST",
        Some(&s.admin),
        "/api/admin/users/admin/disable",
        None,
    );
    assert_eq!(st, 400, "an admin cannot lock themselves out");
    let tokens = s.admin_call("GET", "/api/admin/tokens", None);
    let owners = agnes_tests::pick(&tokens["tokens"], &["user"]);
    assert_eq!(owners, json!(["admin", "bob"]));
    assert!(
        tokens.to_string().find("agnes_").is_none(),
        "no token secret is listed"
    );
    // groups can be removed, the built-in ones cannot
    s.admin_call("POST", "/api/admin/groups", Some(json!({"name": "tmp"})));
    s.admin_call("DELETE", "/api/admin/groups/tmp", None);
    assert_eq!(
        s.call("DELETE", Some(&s.admin), "/api/admin/groups/Everyone", None)
            .0,
        400
    );
}

#[test]
fn a_non_admin_gets_403_before_any_body_is_parsed() {
    let s = TestServer::start();
    let ana = user(&s, "ana", &[]);
    for (method, path) in [
        ("POST", "/api/admin/sources"),
        ("PATCH", "/api/admin/sources/demo"),
        ("POST", "/api/admin/sources/demo/tables"),
        ("POST", "/api/admin/register-table"),
        ("PUT", "/api/admin/registry/orders"),
        ("POST", "/api/admin/users"),
        ("POST", "/api/admin/grants"),
        ("DELETE", "/api/admin/grants"),
        ("POST", "/api/admin/connectors"),
        ("POST", "/api/sync/trigger"),
        ("GET", "/api/admin/audit?limit=not-a-number"),
    ] {
        // a body that is not even JSON: an admin would get 400, an analyst 403
        let r = agnes_tests::http()
            .run(
                ureq::http::Request::builder()
                    .method(method)
                    .uri(s.url(path))
                    .header("Authorization", agnes_tests::bearer(&ana))
                    .header("Content-Type", "application/json")
                    .body(b"{not json".to_vec())
                    .unwrap(),
            )
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = agnes_tests::read_json(r);
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}: {body}"
        );
        let (st, _) = s.call(method, None, path, None);
        assert_eq!(st, 401, "{method} {path} without a token");
    }
}

#[test]
fn unknown_routes_answer_json() {
    let s = TestServer::start();
    for path in ["/api/nope", "/nope", "/api/admin/sources/x/y/z"] {
        let (st, body) = s.call("GET", Some(&s.admin), path, None);
        assert_eq!(
            (st, body["code"].as_str()),
            (404, Some("not_found")),
            "{path}: {body}"
        );
        assert!(body["message"].as_str().unwrap().contains(path), "{body}");
    }
    let (st, body) = s.call("PUT", Some(&s.admin), "/api/admin/sources", Some(json!({})));
    assert_eq!(
        (st, body["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{body}"
    );
    let (st, body) = s.call("GET", Some(&s.admin), "/api/sync/runs/abc", None);
    assert_eq!(
        (st, body["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
}
