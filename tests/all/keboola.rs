//! The keboola connector end to end, against a local stand-in for the Keboola Storage API
//! (table listing, async export jobs, file info, sliced exports on a "file storage" host)
//! on loopback, reached as `connection.keboola.com` and `kbc-files.s3.amazonaws.com`
//! through pinned addresses so the connector's real `connector.toml` grant applies.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use agnes_runtime::{HttpGrant, RunRequest, Runtime};
use agnes_tests::{
    KEBOOLA_COMPONENT, Loopback, connector_request, grant_with_secret, query_i64, runtime,
    snapshot_without_locks,
};
use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

const API: &str = "connection.keboola.com";
const FILES: &str = "kbc-files.s3.amazonaws.com";
const TOKEN: &str = "kbc-token-3f9";

#[derive(Clone)]
struct Row {
    id: i64,
    amount: String,
    changed: String,
}

struct Job {
    table: String,
    since: Option<String>,
    polls: u32,
}

#[derive(Default)]
struct Fake {
    port: u16,
    orders: Vec<Row>,
    notes: Vec<String>,
    jobs: Vec<Job>,
    /// answer the next export requests with these statuses first
    export_faults: Vec<u16>,
    /// export jobs end in `error`
    jobs_fail: bool,
    /// rows exported per job
    exported: Vec<usize>,
}

type Shared = Arc<Mutex<Fake>>;

fn at(minute: u32) -> String {
    format!("2024-05-01T{:02}:{:02}:00+0000", minute / 60, minute % 60)
}

fn token_ok(h: &HeaderMap) -> bool {
    h.get("x-storageapi-token").and_then(|v| v.to_str().ok()) == Some(TOKEN)
}

async fn tables(State(f): State<Shared>, h: HeaderMap) -> Response {
    if !token_ok(&h) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "Invalid access token"})),
        )
            .into_response();
    }
    let f = f.lock().unwrap();
    let last = f.orders.iter().map(|r| r.changed.clone()).max();
    Json(json!([
        {"id": "in.c-main.orders", "bucket": {"id": "in.c-main"}, "columns": ["id", "amount"], "primaryKey": ["id"], "lastChangeDate": last},
        {"id": "in.c-main.notes", "bucket": {"id": "in.c-main"}, "columns": ["text"], "primaryKey": [], "lastChangeDate": at(0)}
    ]))
    .into_response()
}

async fn export(
    State(f): State<Shared>,
    h: HeaderMap,
    UrlPath(table): UrlPath<String>,
    body: String,
) -> Response {
    if !token_ok(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut f = f.lock().unwrap();
    if !f.export_faults.is_empty() {
        let s = f.export_faults.remove(0);
        return (StatusCode::from_u16(s).unwrap(), "maintenance").into_response();
    }
    let since = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("changedSince="))
        .map(|v| v.replace("%3A", ":").replace("%2B", "+"));
    f.jobs.push(Job {
        table,
        since,
        polls: 0,
    });
    let id = f.jobs.len();
    (
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "waiting"})),
    )
        .into_response()
}

async fn job(State(f): State<Shared>, h: HeaderMap, UrlPath(id): UrlPath<usize>) -> Response {
    if !token_ok(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut f = f.lock().unwrap();
    let fail = f.jobs_fail;
    let job = &mut f.jobs[id - 1];
    job.polls += 1;
    let created = format!("2024-06-01T00:00:{:02}+0000", id % 60);
    if job.polls < 2 {
        return Json(json!({"id": id, "status": "processing", "createdTime": created}))
            .into_response();
    }
    if fail {
        return Json(json!({"id": id, "status": "error", "error": {"message": "Snowflake warehouse suspended"}})).into_response();
    }
    Json(json!({"id": id, "status": "success", "createdTime": created, "results": {"file": {"id": id}}})).into_response()
}

async fn file(State(f): State<Shared>, h: HeaderMap, UrlPath(id): UrlPath<usize>) -> Response {
    if !token_ok(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let port = f.lock().unwrap().port;
    Json(json!({"id": id, "isSliced": true, "url": format!("http://{FILES}:{port}/manifests/{id}?X-Amz-Signature=abc")})).into_response()
}

async fn manifest(State(f): State<Shared>, UrlPath(id): UrlPath<usize>) -> Json<Value> {
    let port = f.lock().unwrap().port;
    Json(json!({"entries": [
        {"url": format!("http://{FILES}:{port}/slices/{id}/0?X-Amz-Signature=abc")},
        {"url": format!("http://{FILES}:{port}/slices/{id}/1?X-Amz-Signature=abc")}
    ]}))
}

/// Half of the job's rows per slice, RFC 4180, no header.
async fn slice(State(f): State<Shared>, UrlPath((id, n)): UrlPath<(usize, usize)>) -> String {
    let mut f = f.lock().unwrap();
    let job = &f.jobs[id - 1];
    let lines: Vec<String> = if job.table == "in.c-main.orders" {
        f.orders
            .iter()
            .filter(|r| job.since.as_ref().is_none_or(|s| &r.changed >= s))
            .map(|r| format!("{},\"{}\"", r.id, r.amount.replace('"', "\"\"")))
            .collect()
    } else {
        f.notes
            .iter()
            .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
            .collect()
    };
    let half = lines.len().div_ceil(2);
    let part: Vec<String> = if n == 0 {
        lines[..half].to_vec()
    } else {
        lines[half..].to_vec()
    };
    if n == 1 {
        f.exported.push(lines.len());
    }
    part.iter().map(|l| format!("{l}\n")).collect()
}

fn start(f: &Shared) -> Loopback {
    let server = Loopback::start(
        axum::Router::new()
            .route("/v2/storage/tables", get(tables))
            .route("/v2/storage/tables/{table}/export-async", post(export))
            .route("/v2/storage/jobs/{id}", get(job))
            .route("/v2/storage/files/{id}", get(file))
            .route("/manifests/{id}", get(manifest))
            .route("/slices/{id}/{n}", get(slice))
            .with_state(f.clone()),
    );
    f.lock().unwrap().port = server.port;
    server
}

fn fake() -> Shared {
    let orders = (1..=300)
        .map(|id| Row {
            id,
            amount: format!("{}.50", id * 2),
            changed: at((id % 100) as u32),
        })
        .collect();
    let notes = vec![
        "first, with a comma".to_string(),
        "second \"quoted\"".to_string(),
        "third".to_string(),
    ];
    Arc::new(Mutex::new(Fake {
        orders,
        notes,
        ..Fake::default()
    }))
}

fn pinned() -> Runtime {
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    runtime().clone().with_resolve(HashMap::from([
        (API.to_string(), vec![lo]),
        (FILES.to_string(), vec![lo]),
    ]))
}

fn run_request(dir: &Path, port: u16, state: Option<String>) -> RunRequest {
    let rule = |host: &str| HttpGrant {
        host: host.into(),
        ports: vec![port],
        allow_http: true,
        allow_private: true,
    };
    let grant = grant_with_secret(dir, vec![rule(API), rule(FILES)], "keboola_token", TOKEN);
    let config = json!({"url": format!("http://{API}:{port}"), "poll_interval_ms": 5, "backoff_ms": 10, "batch_rows": 64});
    connector_request(dir, "keboola", "kbc", config, &grant, state)
}

fn kbc_i64(dir: &Path, sql: &str) -> i64 {
    query_i64(&dir.join("extracts/kbc"), sql)
}

#[tokio::test]
async fn exports_slices_and_merges_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fake();
    f.lock().unwrap().export_faults = vec![503];
    let server = start(&f);
    let rt = pinned();
    let kbc = rt.load_file(Path::new(KEBOOLA_COMPONENT)).unwrap();

    let first = rt
        .run(&kbc, run_request(tmp.path(), server.port, None), None)
        .await
        .unwrap();
    let rows: HashMap<&str, (u64, bool)> = first
        .tables
        .iter()
        .map(|t| (t.name.as_str(), (t.rows, t.merged)))
        .collect();
    assert_eq!(
        rows,
        HashMap::from([
            ("in_c_main_orders", (300, false)),
            ("in_c_main_notes", (3, false))
        ])
    );
    assert_eq!(
        kbc_i64(
            tmp.path(),
            "SELECT count(*) FROM in_c_main_notes WHERE text = 'second \"quoted\"'"
        ),
        1
    );
    let got = server.received();
    let slices: Vec<_> = got
        .iter()
        .filter(|r| r.uri.starts_with("/slices/") || r.uri.starts_with("/manifests/"))
        .collect();
    assert_eq!(slices.len(), 6);
    assert!(
        slices
            .iter()
            .all(|r| r.header("x-storageapi-token").is_none()),
        "the token never goes to file storage"
    );
    assert!(
        got.iter()
            .filter(|r| r.uri.starts_with("/v2/"))
            .all(|r| r.header("x-storageapi-token") == Some(TOKEN))
    );
    assert_eq!(
        got.iter()
            .filter(|r| r.uri.ends_with("/export-async"))
            .count(),
        3,
        "the 503 was retried"
    );
    let state: Value = serde_json::from_str(first.state.as_deref().unwrap()).unwrap();
    assert_eq!(state["changed_since"]["in.c-main.orders"], at(99));
    assert!(
        state["changed_since"].get("in.c-main.notes").is_none(),
        "no primary key: always a full export"
    );

    // two orders change and one is added: only those (and the rows at the cursor) are exported
    {
        let mut fk = f.lock().unwrap();
        for id in [10, 20] {
            let r = fk.orders.iter_mut().find(|r| r.id == id).unwrap();
            r.amount = "changed".into();
            r.changed = at(150);
        }
        fk.orders.push(Row {
            id: 301,
            amount: "new".into(),
            changed: at(151),
        });
        fk.exported.clear();
    }
    let second = rt
        .run(
            &kbc,
            run_request(tmp.path(), server.port, first.state.clone()),
            None,
        )
        .await
        .unwrap();
    let at_cursor = f
        .lock()
        .unwrap()
        .orders
        .iter()
        .filter(|r| r.changed == at(99))
        .count();
    assert_eq!(
        f.lock().unwrap().exported,
        [3 + at_cursor, 3],
        "orders: changes only; notes: in full"
    );
    let orders = second
        .tables
        .iter()
        .find(|t| t.name == "in_c_main_orders")
        .unwrap();
    assert_eq!((orders.rows, orders.merged), (301, true));
    assert_eq!(
        kbc_i64(
            tmp.path(),
            "SELECT count(*) FROM in_c_main_orders WHERE amount = 'changed'"
        ),
        2
    );
    assert_eq!(
        kbc_i64(
            tmp.path(),
            "SELECT count(DISTINCT id) FROM in_c_main_orders"
        ),
        301
    );
    assert_eq!(
        kbc_i64(tmp.path(), "SELECT count(*) FROM in_c_main_notes"),
        3
    );
    let changed_since = f
        .lock()
        .unwrap()
        .jobs
        .iter()
        .rev()
        .find(|j| j.table == "in.c-main.orders")
        .and_then(|j| j.since.clone());
    assert_eq!(changed_since, Some(at(99)));

    // an export job that fails leaves data and state
    f.lock().unwrap().jobs_fail = true;
    let extracts = tmp.path().join("extracts");
    let before = snapshot_without_locks(&extracts);
    let err = rt
        .run(
            &kbc,
            run_request(tmp.path(), server.port, second.state.clone()),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Snowflake warehouse suspended"),
        "{err}"
    );
    assert_eq!(before, snapshot_without_locks(&extracts));
    assert_eq!(
        agnes_runtime::extract::published_state(&extracts, "kbc"),
        second.state
    );
}

#[tokio::test]
async fn file_storage_must_be_granted() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fake();
    let server = start(&f);
    let rt = pinned();
    let mut req = run_request(tmp.path(), server.port, None);
    req.grant.http.retain(|r| r.host == API);
    let err = rt
        .run(
            &rt.load_file(Path::new(KEBOOLA_COMPONENT)).unwrap(),
            req,
            None,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kbc-files.s3.amazonaws.com") && err.contains("denied"),
        "{err}"
    );
}
