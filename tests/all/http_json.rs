//! The http-json connector end to end: the real component in the real runtime against a
//! local API on loopback that pages, rate-limits (429 + Retry-After), fails (5xx) and
//! filters by an `updated_since` cursor — standing in for a SaaS API we cannot reach here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use agnes_runtime::{Error, RunReport, RunRequest};
use agnes_tests::{
    Loopback, connector_request, grant_with_secret, http_json, open_extract, query_i64, runtime,
    snapshot_without_locks,
};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

const TOKEN: &str = "tok-9d2e";

#[derive(Clone, Debug)]
struct Item {
    id: i64,
    name: String,
    price: f64,
    updated_at: String,
}

/// The fake API's state: the items, faults to inject by page, and what it served.
#[derive(Default)]
struct Api {
    items: Vec<Item>,
    /// page → statuses to answer before serving it (429 carries Retry-After: 1).
    faults: HashMap<u64, Vec<u16>>,
    /// page → always fail with 500.
    broken_page: Option<u64>,
    /// records served per request (after filtering), in order
    served: Vec<usize>,
}

type Shared = Arc<Mutex<Api>>;

fn ts(minute: u32) -> String {
    format!("2024-05-01T{:02}:{:02}:00Z", minute / 60, minute % 60)
}

async fn items(
    State(api): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad token"})),
        )
            .into_response();
    }
    let page: u64 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let per_page: usize = q
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(100);
    let mut api = api.lock().unwrap();
    if api.broken_page == Some(page) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "database on fire").into_response();
    }
    if let Some(status) = api
        .faults
        .get_mut(&page)
        .and_then(|f| (!f.is_empty()).then(|| f.remove(0)))
    {
        let mut r = (StatusCode::from_u16(status).unwrap(), "slow down").into_response();
        if status == 429 {
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
        }
        return r;
    }
    let since = q.get("updated_since").cloned();
    let selected: Vec<&Item> = api
        .items
        .iter()
        .filter(|i| since.as_ref().is_none_or(|s| &i.updated_at >= s))
        .collect();
    let start = ((page - 1) as usize * per_page).min(selected.len());
    let end = (start + per_page).min(selected.len());
    let data: Vec<Value> = selected[start..end]
        .iter()
        .map(|i| json!({"id": i.id, "name": i.name, "price": i.price, "updated_at": i.updated_at, "tags": ["a", i.id % 3]}))
        .collect();
    api.served.push(data.len());
    Json(json!({"data": data, "page": page})).into_response()
}

/// Cursor-paginated events: `?after=<token>` → `{"events": [...], "next": token|null}`.
async fn events(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let after: i64 = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let events: Vec<Value> = (after..(after + 40).min(100))
        .map(|i| json!({"seq": i, "kind": if i % 2 == 0 { "open" } else { "close" }}))
        .collect();
    let next = if after + 40 < 100 {
        json!((after + 40).to_string())
    } else {
        Value::Null
    };
    Json(json!({"events": events, "next": next}))
}

fn start(api: &Shared) -> Loopback {
    Loopback::start(
        axum::Router::new()
            .route("/api/items", get(items))
            .route("/api/events", get(events))
            .with_state(api.clone()),
    )
}

fn seed(n: i64) -> Shared {
    let items = (1..=n)
        .map(|id| Item {
            id,
            name: format!("item {id}"),
            price: id as f64 * 1.5,
            updated_at: ts((id % 600) as u32),
        })
        .collect();
    Arc::new(Mutex::new(Api {
        items,
        ..Api::default()
    }))
}

fn config(server: &Loopback, per_page: usize) -> Value {
    json!({
        "base_url": server.url(""),
        "auth": {"type": "bearer"},
        "backoff_ms": 10,
        "max_retries": 3,
        "tables": [
            {
                "name": "items",
                "path": "/api/items",
                "records": "/data",
                "pagination": {"type": "page", "size_param": "per_page", "size": per_page},
                "primary_key": ["id"],
                "cursor_field": "updated_at",
                "cursor_param": "updated_since",
                "columns": [
                    {"name": "id", "type": "int64"},
                    {"name": "name", "type": "string"},
                    {"name": "price", "type": "float64"},
                    {"name": "updated_at", "type": "timestamp"},
                    {"name": "tags", "type": "json"}
                ]
            },
            {
                "name": "events",
                "path": "/api/events",
                "records": "/events",
                "pagination": {"type": "cursor", "param": "after", "next": "/next"}
            }
        ]
    })
}

/// The run request: request ∩ grant from the connector's own connector.toml, the token
/// in a secret file, plain http to this loopback server explicitly allowed.
fn run_request(dir: &Path, server: &Loopback, config: Value, state: Option<String>) -> RunRequest {
    let grant = grant_with_secret(dir, vec![server.grant()], "api_token", TOKEN);
    connector_request(dir, "http-json", "api", config, &grant, state)
}

async fn run(
    dir: &Path,
    server: &Loopback,
    config: Value,
    state: Option<String>,
) -> Result<RunReport, Error> {
    runtime()
        .run(http_json(), run_request(dir, server, config, state), None)
        .await
}

fn count(dir: &Path, sql: &str) -> i64 {
    query_i64(&dir.join("extracts/api"), sql)
}

#[tokio::test]
async fn pages_retries_and_incremental_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let api = seed(2500);
    api.lock().unwrap().faults = HashMap::from([(2, vec![429]), (3, vec![503, 502])]);
    let server = start(&api);

    // 1. full sync: three pages (the second rate-limited once, the third failing twice)
    let first = run(tmp.path(), &server, config(&server, 1000), None)
        .await
        .unwrap();
    let items = first.tables.iter().find(|t| t.name == "items").unwrap();
    assert_eq!((items.rows, items.merged), (2500, false));
    assert_eq!(
        first
            .tables
            .iter()
            .find(|t| t.name == "events")
            .unwrap()
            .rows,
        100
    );
    let got = server.received();
    let item_requests: Vec<&str> = got
        .iter()
        .filter(|r| r.uri.starts_with("/api/items"))
        .map(|r| r.uri.as_str())
        .collect();
    assert_eq!(
        item_requests,
        [
            "/api/items?page=1&per_page=1000",
            "/api/items?page=2&per_page=1000",
            "/api/items?page=2&per_page=1000",
            "/api/items?page=3&per_page=1000",
            "/api/items?page=3&per_page=1000",
            "/api/items?page=3&per_page=1000",
        ],
        "429 and 5xx were retried, nothing else re-fetched"
    );
    assert!(
        got.iter().all(|r| r.uri.starts_with("/api/events")
            || r.header("authorization") == Some(&*format!("Bearer {TOKEN}"))),
        "the host injected the token into every request"
    );
    assert_eq!(
        count(tmp.path(), "SELECT count(DISTINCT id) FROM items"),
        2500
    );
    assert_eq!(
        count(
            tmp.path(),
            "SELECT count(*) FROM items WHERE tags = '[\"a\",1]'"
        ),
        834
    );
    let state: Value = serde_json::from_str(first.state.as_deref().unwrap()).unwrap();
    assert_eq!(
        state["cursors"]["items"],
        ts(599),
        "the cursor is the newest updated_at"
    );

    // 2. three items change, two are added: the incremental run fetches only those (and
    //    the items at the cursor itself, since the filter is >=) and merges them by id
    {
        let mut a = api.lock().unwrap();
        for id in [5, 6, 7] {
            let item = a.items.iter_mut().find(|i| i.id == id).unwrap();
            item.name = format!("renamed {id}");
            item.updated_at = ts(700);
        }
        for id in [2501, 2502] {
            a.items.push(Item {
                id,
                name: format!("new {id}"),
                price: 1.0,
                updated_at: ts(701),
            });
        }
        a.served.clear();
    }
    let before_requests = server.received().len();
    let second = run(
        tmp.path(),
        &server,
        config(&server, 1000),
        first.state.clone(),
    )
    .await
    .unwrap();
    let items = second.tables.iter().find(|t| t.name == "items").unwrap();
    assert_eq!((items.rows, items.merged), (2502, true));
    let at_cursor = api
        .lock()
        .unwrap()
        .items
        .iter()
        .filter(|i| i.updated_at == ts(599))
        .count();
    assert_eq!(
        api.lock().unwrap().served,
        [5 + at_cursor],
        "only changed records were fetched"
    );
    let new_requests = &server.received()[before_requests..];
    assert!(
        new_requests
            .iter()
            .filter(|r| r.uri.starts_with("/api/items"))
            .all(|r| r.uri.contains("updated_since=2024-05-01T09%3A59%3A00Z")),
        "{new_requests:?}"
    );
    assert_eq!(count(tmp.path(), "SELECT count(*) FROM items"), 2502);
    assert_eq!(
        count(
            tmp.path(),
            "SELECT count(*) FROM items WHERE name LIKE 'renamed %'"
        ),
        3
    );
    assert_eq!(
        count(
            tmp.path(),
            "SELECT count(*) FROM items WHERE id IN (5, 6, 7) AND name LIKE 'item %'"
        ),
        0,
        "no stale duplicates"
    );
    let state: Value = serde_json::from_str(second.state.as_deref().unwrap()).unwrap();
    assert_eq!(state["cursors"]["items"], ts(701));

    // 3. a run that fails midway (page 2 keeps answering 500) changes nothing
    {
        let mut a = api.lock().unwrap();
        for id in 1..=30 {
            a.items.iter_mut().find(|i| i.id == id).unwrap().updated_at = ts(800);
        }
        a.broken_page = Some(2);
    }
    let extracts = tmp.path().join("extracts");
    let before = snapshot_without_locks(&extracts);
    let err = run(
        tmp.path(),
        &server,
        config(&server, 10),
        second.state.clone(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("failed after 4 attempts") && msg.contains("500"),
        "{msg}"
    );
    assert_eq!(
        before,
        snapshot_without_locks(&extracts),
        "the previous data and state are untouched"
    );
    assert_eq!(
        agnes_runtime::extract::published_state(&extracts, "api").as_deref(),
        second.state.as_deref()
    );
}

#[tokio::test]
async fn a_rejected_credential_fails_with_the_status() {
    let tmp = tempfile::tempdir().unwrap();
    let api = seed(10);
    let server = start(&api);
    let req = run_request(tmp.path(), &server, config(&server, 100), None);
    std::fs::write(tmp.path().join("api_token.secret"), "wrong").unwrap();
    let err = runtime()
        .run(http_json(), req, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("answered 401") && err.contains("bad token"),
        "{err}"
    );
    assert!(!err.contains("wrong"), "the secret is not echoed: {err}");
    assert!(agnes_runtime::extract::published(&tmp.path().join("extracts"), "api").is_none());
}

#[tokio::test]
async fn an_inferred_schema_is_used_for_the_whole_read() {
    let tmp = tempfile::tempdir().unwrap();
    let api = seed(250);
    let server = start(&api);
    let mut c = config(&server, 100);
    c["tables"][0].as_object_mut().unwrap().remove("columns");
    let report = run(tmp.path(), &server, c, None).await.unwrap();
    assert_eq!(report.tables[0].rows, 250);
    let conn = open_extract(&tmp.path().join("extracts/api"));
    let types: Vec<(String, String)> = conn
        .prepare("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'items' ORDER BY ordinal_position")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        types,
        [
            ("id".into(), "BIGINT".into()),
            ("name".into(), "VARCHAR".into()),
            ("price".into(), "DOUBLE".into()),
            ("tags".into(), "VARCHAR".into()),
            ("updated_at".into(), "TIMESTAMP WITH TIME ZONE".into()),
        ],
        "the fields in the order the API sends them (serde_json here sorts them)"
    );
    let page1 = server
        .received()
        .iter()
        .filter(|r| r.uri == "/api/items?page=1&per_page=100")
        .count();
    assert_eq!(
        page1, 2,
        "page 1 once for discover's inference, once by read (not a third time for read's schema)"
    );
}
