//! The jira connector end to end, against a local stand-in for Jira Cloud's REST API on
//! loopback (`/rest/api/3/search/jql` with `nextPageToken`, issue comment and changelog
//! pages, Basic auth, 429/5xx), reached as `acme.atlassian.net` through a pinned address —
//! and the server's `POST /api/webhooks/jira`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use agnes_runtime::{Grant, HttpGrant, RunRequest, Runtime};
use agnes_tests::{
    JIRA_COMPONENT, Loopback, TestServer, bearer, connector_request, grant_with_secret, http,
    query_i64, read_json, repo_root, runtime, snapshot_without_locks,
};
use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use serde_json::{Value, json};

const SITE: &str = "acme.atlassian.net";
const CREDENTIAL: &str = "me@example.com:jira-tok";

#[derive(Clone)]
struct Issue {
    id: i64,
    key: String,
    summary: String,
    updated: String,
    comments: usize,
}

#[derive(Default)]
struct Fake {
    issues: Vec<Issue>,
    /// search page (1-based) → statuses to answer first
    faults: HashMap<usize, Vec<u16>>,
    broken_search_page: Option<usize>,
    /// issues returned per search request
    served: Vec<usize>,
    jqls: Vec<String>,
}

type Shared = Arc<Mutex<Fake>>;

fn stamp(minute: i64) -> String {
    format!(
        "2024-05-01T{:02}:{:02}:00.000+0000",
        minute / 60,
        minute % 60
    )
}

fn authorized(headers: &HeaderMap) -> bool {
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(CREDENTIAL)
    );
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str())
}

fn comment(issue: &Issue, n: usize) -> Value {
    json!({"id": (issue.id * 100 + n as i64).to_string(), "author": {"displayName": format!("user {n}")},
           "body": {"type": "doc", "content": [{"type": "paragraph", "content": [{"type": "text", "text": format!("comment {n} on {}", issue.key)}]}]},
           "created": issue.updated, "updated": issue.updated})
}

fn issue_json(i: &Issue) -> Value {
    // like Jira: the search result holds at most 2 comments, `total` says how many exist
    let shown: Vec<Value> = (0..i.comments.min(2)).map(|n| comment(i, n)).collect();
    json!({
        "id": i.id.to_string(), "key": i.key,
        "fields": {
            "summary": i.summary, "status": {"name": "Open"}, "issuetype": {"name": "Task"},
            "project": {"key": "ABC"}, "labels": ["x"], "created": stamp(0), "updated": i.updated,
            "assignee": {"displayName": "Ada", "accountId": "acc-1"},
            "comment": {"comments": shown, "total": i.comments}
        },
        "changelog": {"total": 1, "histories": [{"id": (i.id * 10).to_string(), "author": {"displayName": "Bob"}, "created": i.updated,
            "items": [{"field": "status", "fromString": "To Do", "toString": "Open"}]}]}
    })
}

/// `updated >= "yyyy-MM-dd HH:mm"` of the JQL, as a prefix to compare stamps with.
fn since(jql: &str) -> Option<String> {
    let rest = jql.split("updated >= \"").nth(1)?;
    let minute = &rest[..16];
    Some(format!("{}T{}:00.000+0000", &minute[..10], &minute[11..]))
}

async fn search(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "Client must be authenticated").into_response();
    }
    let jql = q.get("jql").cloned().unwrap_or_default();
    let max: usize = q
        .get("maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(50);
    let offset: usize = q
        .get("nextPageToken")
        .and_then(|t| t.strip_prefix("off-"))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let page = offset / max + 1;
    let mut f = fake.lock().unwrap();
    if f.broken_search_page == Some(page) {
        return (StatusCode::BAD_GATEWAY, "upstream unavailable").into_response();
    }
    if let Some(s) = f
        .faults
        .get_mut(&page)
        .and_then(|v| (!v.is_empty()).then(|| v.remove(0)))
    {
        let mut r = (StatusCode::from_u16(s).unwrap(), "rate limited").into_response();
        if s == 429 {
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
        }
        return r;
    }
    let bound = since(&jql);
    let mut matching: Vec<Issue> = f
        .issues
        .iter()
        .filter(|i| bound.as_ref().is_none_or(|b| &i.updated >= b))
        .cloned()
        .collect();
    matching.sort_by(|a, b| a.updated.cmp(&b.updated).then(a.id.cmp(&b.id)));
    let end = (offset + max).min(matching.len());
    let issues: Vec<Value> = matching[offset.min(end)..end]
        .iter()
        .map(issue_json)
        .collect();
    f.served.push(issues.len());
    f.jqls.push(jql);
    let last = end >= matching.len();
    let mut body = json!({"issues": issues, "isLast": last});
    if !last {
        body["nextPageToken"] = json!(format!("off-{end}"));
    }
    Json(body).into_response()
}

async fn comments(
    State(fake): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<i64>,
    Query(q): Query<HashMap<String, usize>>,
) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let f = fake.lock().unwrap();
    let Some(issue) = f.issues.iter().find(|i| i.id == id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let start = q.get("startAt").copied().unwrap_or(0);
    let all: Vec<Value> = (0..issue.comments).map(|n| comment(issue, n)).collect();
    let page: Vec<Value> = all.into_iter().skip(start).take(2).collect();
    Json(json!({"comments": page, "total": issue.comments, "startAt": start})).into_response()
}

fn fake(n: i64) -> Shared {
    let issues = (1..=n)
        .map(|i| Issue {
            id: 10_000 + i,
            key: format!("ABC-{i}"),
            summary: format!("issue {i}"),
            updated: stamp(i % 300),
            comments: if i == 7 { 5 } else { 1 },
        })
        .collect();
    Arc::new(Mutex::new(Fake {
        issues,
        ..Fake::default()
    }))
}

fn start(fake: &Shared) -> Loopback {
    Loopback::start(
        axum::Router::new()
            .route("/rest/api/3/search/jql", get(search))
            .route("/rest/api/3/issue/{id}/comment", get(comments))
            .with_state(fake.clone()),
    )
}

/// The operator's grant: the site by name (pinned to loopback), plain http and the
/// loopback address explicitly allowed for this test; the credential from a file.
fn operator_grant(dir: &Path, port: u16) -> Grant {
    let rule = HttpGrant {
        host: SITE.into(),
        ports: vec![port],
        allow_http: true,
        allow_private: true,
    };
    grant_with_secret(dir, vec![rule], "jira_token", CREDENTIAL)
}

fn pinned() -> Runtime {
    runtime().clone().with_resolve(HashMap::from([(
        SITE.to_string(),
        vec!["127.0.0.1".parse().unwrap()],
    )]))
}

fn jira_component(rt: &Runtime) -> agnes_runtime::LoadedComponent {
    rt.load_file(Path::new(JIRA_COMPONENT)).unwrap()
}

fn run_request(dir: &Path, port: u16, page_size: u32, state: Option<String>) -> RunRequest {
    let config = json!({"site": format!("http://{SITE}:{port}"), "jql": "project = ABC", "page_size": page_size,
                        "overlap_minutes": 0, "backoff_ms": 10});
    connector_request(
        dir,
        "jira",
        "jira",
        config,
        &operator_grant(dir, port),
        state,
    )
}

fn jira_i64(dir: &Path, sql: &str) -> i64 {
    query_i64(&dir.join("extracts/jira"), sql)
}

#[tokio::test]
async fn issues_comments_changelog_incrementally() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fake(120);
    f.lock().unwrap().faults = HashMap::from([(2, vec![429, 503])]);
    let server = start(&f);
    let rt = pinned();
    let jira = jira_component(&rt);

    let first = rt
        .run(&jira, run_request(tmp.path(), server.port, 50, None), None)
        .await
        .unwrap();
    let rows: HashMap<&str, u64> = first
        .tables
        .iter()
        .map(|t| (t.name.as_str(), t.rows))
        .collect();
    assert_eq!(
        rows,
        HashMap::from([("issues", 120), ("comments", 124), ("changelog", 120)])
    );
    assert_eq!(
        f.lock().unwrap().served,
        [50, 50, 20],
        "three search pages; the retried page served once"
    );
    assert!(
        f.lock().unwrap().jqls[0]
            == "(project = ABC) AND updated >= \"1970-01-01 00:00\" ORDER BY updated ASC",
        "{:?}",
        f.lock().unwrap().jqls
    );
    assert_eq!(
        jira_i64(
            tmp.path(),
            "SELECT count(*) FROM comments WHERE issue_key = 'ABC-7'"
        ),
        5,
        "comments beyond the search result were paged in"
    );
    assert_eq!(
        jira_i64(
            tmp.path(),
            "SELECT count(*) FROM issues WHERE description IS NULL AND labels = '[\"x\"]'"
        ),
        120
    );
    let state: Value = serde_json::from_str(first.state.as_deref().unwrap()).unwrap();
    assert_eq!(state["updated"], stamp(120));

    // two issues change: the next run asks for updated >= the cursor and merges them
    {
        let mut fk = f.lock().unwrap();
        for id in [10_003, 10_004] {
            let i = fk.issues.iter_mut().find(|i| i.id == id).unwrap();
            i.summary = format!("changed {id}");
            i.updated = stamp(400);
        }
        fk.served.clear();
        fk.jqls.clear();
    }
    let second = rt
        .run(
            &jira,
            run_request(tmp.path(), server.port, 50, first.state.clone()),
            None,
        )
        .await
        .unwrap();
    let at_cursor = f
        .lock()
        .unwrap()
        .issues
        .iter()
        .filter(|i| i.updated == stamp(120))
        .count();
    assert_eq!(
        f.lock().unwrap().served,
        [2 + at_cursor],
        "only issues updated since the cursor were fetched"
    );
    assert_eq!(
        f.lock().unwrap().jqls[0],
        "(project = ABC) AND updated >= \"2024-05-01 02:00\" ORDER BY updated ASC"
    );
    assert!(second.tables.iter().all(|t| t.merged));
    assert_eq!(jira_i64(tmp.path(), "SELECT count(*) FROM issues"), 120);
    assert_eq!(
        jira_i64(
            tmp.path(),
            "SELECT count(*) FROM issues WHERE summary LIKE 'changed %'"
        ),
        2
    );
    assert_eq!(
        jira_i64(tmp.path(), "SELECT count(*) FROM comments"),
        124,
        "merged by comment id, no duplicates"
    );

    // a run failing midway leaves data and state
    {
        let mut fk = f.lock().unwrap();
        for i in fk.issues.iter_mut().take(60) {
            i.updated = stamp(500);
        }
        fk.broken_search_page = Some(2);
    }
    let extracts = tmp.path().join("extracts");
    let before = snapshot_without_locks(&extracts);
    let err = rt
        .run(
            &jira,
            run_request(tmp.path(), server.port, 20, second.state.clone()),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("502") && err.to_string().contains("after 6 attempts"),
        "{err}"
    );
    assert_eq!(before, snapshot_without_locks(&extracts));
    assert_eq!(
        agnes_runtime::extract::published_state(&extracts, "jira"),
        second.state
    );
}

#[tokio::test]
async fn a_wrong_credential_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fake(3);
    let server = start(&f);
    let rt = pinned();
    let req = run_request(tmp.path(), server.port, 50, None);
    std::fs::write(tmp.path().join("jira_token.secret"), "me@example.com:wrong").unwrap();
    let err = rt
        .run(&jira_component(&rt), req, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("answered 401") && err.contains("Client must be authenticated"),
        "{err}"
    );
    assert!(!err.contains("wrong"), "{err}");
}

/// A server with the jira webhook on source `jira`, its three tables registered against
/// the fake Jira, synced once.
fn webhook_server(f: &Shared, api: &Loopback, secret: &str) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("webhook.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let s = TestServer::start_with(|c| {
        c.webhooks.jira = Some(agnes_server::config::JiraWebhook {
            source: "jira".into(),
            secret_file: secret_file.clone(),
        });
        c.resolve = HashMap::from([(SITE.to_string(), vec!["127.0.0.1".parse().unwrap()])]);
    });
    let grant = operator_grant(dir.path(), api.port);
    for t in ["issues", "comments", "changelog"] {
        let body = json!({"name": t, "source": "jira", "connector": JIRA_COMPONENT,
            "manifest": repo_root().join("connectors-wasm/jira/connector.toml"),
            "config": {"site": format!("http://{SITE}:{}", api.port), "overlap_minutes": 0, "backoff_ms": 10},
            "grant": grant});
        let r = http()
            .post(&s.url("/api/admin/register-table"))
            .header("Authorization", &bearer(&s.admin))
            .send_json(&body)
            .unwrap();
        assert_eq!(r.status(), 200, "{}", read_json(r));
    }
    let r = http()
        .post(&s.url("/api/sync/trigger"))
        .header("Authorization", &bearer(&s.admin))
        .send_empty()
        .unwrap();
    assert_eq!(r.status(), 202);
    s.wait_for_sync();
    let r = http()
        .get(&s.url("/api/sync/history?limit=1"))
        .header("Authorization", &bearer(&s.admin))
        .call()
        .unwrap();
    let history = read_json(r);
    assert_eq!(history["runs"][0]["status"], "ok", "{history}");
    assert_eq!(summary(&s, "ABC-2"), "issue 2");
    let _ = f;
    (s, dir)
}

fn summary(s: &TestServer, key: &str) -> String {
    let r = http()
        .post(&s.url("/api/query"))
        .header("Authorization", &bearer(&s.admin))
        .send_json(json!({"sql": format!("SELECT summary FROM issues WHERE key = '{key}'")}))
        .unwrap();
    let v = read_json(r);
    v["rows"][0][0]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn post_hook(s: &TestServer, body: &[u8], signature: Option<&str>) -> (u16, Value) {
    let mut req = http()
        .post(&s.url("/api/webhooks/jira"))
        .header("content-type", "application/json");
    if let Some(sig) = signature {
        req = req.header("x-hub-signature", sig);
    }
    let r = req.send(body).unwrap();
    let status = r.status().as_u16();
    (status, read_json(r))
}

#[test]
fn webhooks_apply_signed_issue_updates_and_refuse_the_rest() {
    let f = fake(5);
    let api = start(&f);
    let (s, _dir) = webhook_server(&f, &api, "hook-secret");
    let extracts = s.data_dir.path().join("extracts");
    let before = snapshot_without_locks(&extracts);

    let payload = json!({
        "webhookEvent": "jira:issue_updated", "timestamp": 1714557600000u64, "user": {"displayName": "Ada"},
        "issue": {"id": "10002", "key": "ABC-2", "fields": {"summary": "renamed by webhook", "status": {"name": "Done"}, "updated": stamp(900)}},
        "changelog": {"id": "555", "items": [{"field": "summary", "fromString": "issue 2", "toString": "renamed by webhook"}]}
    });
    let body = serde_json::to_vec(&payload).unwrap();

    // bad signature, no signature: 401 and nothing written
    for sig in [
        Some(sign("wrong-secret", &body)),
        None,
        Some("sha256=00".to_string()),
    ] {
        let (st, v) = post_hook(&s, &body, sig.as_deref());
        assert_eq!(st, 401, "{v}");
    }
    // malformed payloads, correctly signed: 400 and nothing written
    for bad in [
        &b"not json"[..],
        br#"{"issue": {"id": "1", "key": "A-1"}}"#,
        br#"{"webhookEvent": "jira:issue_updated", "issue": {"fields": {}}}"#,
    ] {
        let (st, v) = post_hook(&s, bad, Some(&sign("hook-secret", bad)));
        assert_eq!(st, 400, "{v}");
    }
    assert_eq!(
        snapshot_without_locks(&extracts),
        before,
        "refused webhooks wrote nothing"
    );
    assert_eq!(summary(&s, "ABC-2"), "issue 2");

    // a signed update is applied: merged by key, no call to Jira needed
    let searches = f.lock().unwrap().served.len();
    let (st, v) = post_hook(&s, &body, Some(&sign("hook-secret", &body)));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["applied"], "ABC-2");
    assert_eq!(summary(&s, "ABC-2"), "renamed by webhook");
    assert_eq!(summary(&s, "ABC-3"), "issue 3", "other issues untouched");
    assert_eq!(
        f.lock().unwrap().served.len(),
        searches,
        "the webhook did not search Jira"
    );
    let r = http()
        .post(&s.url("/api/query"))
        .header("Authorization", &bearer(&s.admin))
        .send_json(json!({"sql": "SELECT count(*) FROM issues"}))
        .unwrap();
    assert_eq!(read_json(r)["rows"][0][0], 5);

    // a deletion is acknowledged, not applied
    let del = serde_json::to_vec(
        &json!({"webhookEvent": "jira:issue_deleted", "issue": {"id": "10001", "key": "ABC-1"}}),
    )
    .unwrap();
    let (st, v) = post_hook(&s, &del, Some(&sign("hook-secret", &del)));
    assert_eq!((st, v["ignored"].as_str()), (202, Some("ABC-1")), "{v}");

    // the full refresh a deletion waits for: rebuilt from Jira, so the deleted issue goes
    // (and the webhook's edit, which the stand-in never saw, is replaced by Jira's state)
    f.lock().unwrap().issues.retain(|i| i.key != "ABC-1");
    let r = http()
        .post(&s.url("/api/sync/trigger"))
        .header("Authorization", &bearer(&s.admin))
        .send_json(json!({"full_refresh": true}))
        .unwrap();
    assert_eq!(r.status(), 202);
    s.wait_for_sync();
    let r = http()
        .post(&s.url("/api/query"))
        .header("Authorization", &bearer(&s.admin))
        .send_json(json!({"sql": "SELECT count(*) FROM issues"}))
        .unwrap();
    assert_eq!(read_json(r)["rows"][0][0], 4, "the deleted issue is gone");
    assert_eq!(summary(&s, "ABC-2"), "issue 2");
}

#[test]
fn without_configuration_webhooks_are_refused() {
    let s = TestServer::start();
    let body = br#"{"webhookEvent": "jira:issue_updated"}"#;
    let (st, v) = post_hook(&s, body, Some(&sign("anything", body)));
    assert_eq!(st, 403, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("[webhooks.jira]"),
        "{v}"
    );
}
