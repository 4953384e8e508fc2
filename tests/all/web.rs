//! The admin web UI over real HTTP on loopback: sign-in and sessions, CSRF, permissions of
//! every page, security headers, escaping — and in a real headless Chromium driven over
//! WebDriver (`browser` below).

use agnes_tests::TestServer;
use agnes_tests::web_client::{Client, hidden};
use serde_json::json;

pub(crate) mod browser;

pub(crate) const PASSWORD: &str = "a long enough password";

/// A server with an analyst `ana` (group `sales`, granted `orders`) and the admin's
/// password set; the demo source synced.
pub(crate) fn server() -> TestServer {
    let s = TestServer::start();
    s.with_demo_source(json!({"all": true}));
    s.admin_call(
        "PUT",
        "/api/admin/users/admin/password",
        Some(json!({"password": PASSWORD})),
    );
    s.admin_call("POST", "/api/admin/groups", Some(json!({"name": "sales"})));
    s.admin_call(
        "POST",
        "/api/admin/grants",
        Some(json!({"group": "sales", "resource_type": "table", "resource_id": "orders"})),
    );
    s.admin_call(
        "POST",
        "/api/admin/users",
        Some(json!({"name": "ana", "groups": ["sales"], "password": PASSWORD})),
    );
    s
}

const ADMIN_PAGES: [&str; 9] = [
    "/admin",
    "/admin/marketplace",
    "/admin/metrics",
    "/admin/sources",
    "/admin/sources/demo",
    "/admin/connectors",
    "/admin/access",
    "/admin/audit",
    "/admin/sources/demo?action=discover",
];

#[test]
fn every_page_needs_a_session_and_admin_pages_an_admin() {
    let s = server();
    // no session: to the sign-in page, remembering where to go back
    let mut anon = Client::new(&s.base);
    for path in ADMIN_PAGES.iter().chain(&["/", "/setup"]) {
        let p = anon.get(path);
        assert_eq!(p.status, 303, "{path}");
        assert!(
            p.location.starts_with("/login?next=/"),
            "{path}: {}",
            p.location
        );
    }
    // a wrong password: back to the form with the reason, no session
    let p = anon.sign_in("ana", "not the password at all");
    assert!(p.location.contains("error="), "{}", p.location);
    assert_eq!(anon.get("/").status, 303);

    // an analyst: their tables and the workspace page; every admin page 403
    let mut ana = Client::new(&s.base);
    let p = ana.sign_in("ana", PASSWORD);
    assert_eq!((p.status, p.location.as_str()), (303, "/admin"));
    for path in ADMIN_PAGES {
        let p = ana.get(path);
        assert_eq!(p.status, 403, "{path}");
        assert!(p.body.contains("These pages are for admins"), "{path}");
    }
    let home = ana.get("/");
    assert_eq!(home.status, 200);
    assert!(home.body.contains("<code>orders</code>"), "{}", home.body);
    assert!(!home.body.contains("<code>customers</code>"), "not granted");
    // "set up my workspace" mints a token that works against the API
    let token = ana.csrf("/setup");
    let p = ana.post("/setup", &[("csrf", &token), ("name", "laptop")]);
    let start = p.body.find("--token ").expect("the init command") + 8;
    let minted: String = p.body[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '<')
        .collect();
    assert!(
        p.body.contains("agnes init --server http://127.0.0.1:"),
        "{}",
        p.body
    );
    let (st, m) = s.call("GET", Some(&minted), "/api/sync/manifest", None);
    assert_eq!(st, 200);
    assert_eq!(m["tables"].as_object().unwrap().len(), 1);
    // an admin action attempted by the analyst through the UI's form URL: refused
    let p = ana.post(
        "/admin/access/group",
        &[("csrf", &token), ("name", "hackers")],
    );
    assert_eq!(p.status, 403);

    // the admin: every page renders
    let mut admin = Client::new(&s.base);
    assert_eq!(admin.sign_in("admin", PASSWORD).status, 303);
    for path in ADMIN_PAGES {
        let p = admin.get(path);
        assert_eq!(p.status, 200, "{path}: {}", p.body);
        assert!(p.body.contains("<h1>"), "{path}");
    }
    // sessions are listed, and revoking one signs that browser out
    let (_, sessions) = s.call("GET", Some(&s.admin), "/api/admin/web-sessions", None);
    let ana_session = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["user"] == "ana")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t = admin.csrf("/admin/access");
    let p = admin.post(
        "/admin/access/revoke-session",
        &[("csrf", &t), ("id", &ana_session)],
    );
    assert!(p.location.contains("ok="), "{}", p.location);
    assert_eq!(ana.get("/").status, 303, "signed out");
    // a new password ends the user's browser sessions
    let mut ana = Client::new(&s.base);
    assert_eq!(ana.sign_in("ana", PASSWORD).status, 303);
    assert_eq!(ana.get("/").status, 200);
    s.admin_call(
        "PUT",
        "/api/admin/users/ana/password",
        Some(json!({"password": "another long password"})),
    );
    assert_eq!(ana.get("/").status, 303);
    // signing out ends the session
    let p = admin.post("/logout", &[("csrf", &t)]);
    assert_eq!((p.status, p.location.as_str()), (303, "/login"));
    assert_eq!(admin.get("/admin").status, 303);
}

#[test]
fn forms_without_the_csrf_token_are_refused_and_change_nothing() {
    let s = server();
    let mut admin = Client::new(&s.base);
    admin.sign_in("admin", PASSWORD);
    for (path, form) in [
        ("/admin/access/group", vec![("name", "forged")]),
        (
            "/admin/access/group",
            vec![("name", "forged"), ("csrf", "0000")],
        ),
        ("/admin/sources/demo/sync", vec![]),
        ("/logout", vec![]),
    ] {
        let p = admin.post(path, &form);
        assert_eq!(p.status, 403, "{path} {form:?}");
        assert!(p.body.contains("CSRF"), "{}", p.body);
    }
    let (_, groups) = s.call("GET", Some(&s.admin), "/api/admin/groups", None);
    assert!(!groups.to_string().contains("forged"));
    assert_eq!(admin.get("/admin").status, 200, "still signed in");
    // the sign-in form: without the cookie it was served with, refused
    let mut other = Client::new(&s.base);
    let p = other.post(
        "/login",
        &[("user", "admin"), ("password", PASSWORD), ("csrf", "abcd")],
    );
    assert_eq!(p.status, 403);
}

#[test]
fn pages_send_security_headers_and_escape_every_value() {
    let s = server();
    let hostile = "<script>alert(1)</script>";
    s.admin_call(
        "PATCH",
        "/api/admin/sources/demo/tables/orders",
        Some(json!({"description": hostile})),
    );
    s.admin_call(
        "PATCH",
        "/api/admin/sources/demo",
        Some(json!({"description": hostile})),
    );
    let mut admin = Client::new(&s.base);
    admin.sign_in("admin", PASSWORD);
    for path in [
        "/admin",
        "/admin/sources",
        "/admin/sources/demo",
        "/admin/audit",
        "/",
    ] {
        let p = admin.get(path);
        assert!(!p.body.contains(hostile), "{path} renders markup from data");
        let h = |k: &str| {
            p.headers
                .get(k)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        assert!(
            h("content-security-policy").contains("default-src 'none'"),
            "{path}"
        );
        assert!(
            !h("content-security-policy").contains("script-src"),
            "no script allowed"
        );
        assert_eq!(h("x-frame-options"), "DENY");
        assert_eq!(h("referrer-policy"), "no-referrer");
    }
    let p = admin.get("/admin/sources");
    assert!(
        p.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "shown as text"
    );
    // the session cookie: HttpOnly, SameSite=Strict
    let mut fresh = Client::new(&s.base);
    let token = fresh.csrf("/login");
    let p = fresh.post(
        "/login",
        &[("user", "admin"), ("password", PASSWORD), ("csrf", &token)],
    );
    let cookie = p
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("agnes_session="))
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // a redirect target is a local path only
    let token = fresh.csrf("/login");
    let p = fresh.post(
        "/login",
        &[
            ("user", "admin"),
            ("password", PASSWORD),
            ("csrf", &token),
            ("next", "//evil.example/"),
        ],
    );
    assert_eq!(p.location, "/");
}

#[test]
fn sign_in_attempts_are_rate_limited() {
    let s = TestServer::start_with(|c| c.auth.failures_per_minute = 3);
    s.admin_call(
        "PUT",
        "/api/admin/users/admin/password",
        Some(json!({"password": PASSWORD})),
    );
    // passwords are checked by the API too
    let (st, e) = s.call(
        "PUT",
        Some(&s.admin),
        "/api/admin/users/admin/password",
        Some(json!({"password": "short"})),
    );
    assert_eq!(st, 400, "{e}");
    let mut c = Client::new(&s.base);
    for _ in 0..3 {
        let p = c.sign_in("admin", "wrong password, long enough");
        assert_eq!(p.status, 303);
    }
    // locked out, even with the right password
    let p = c.sign_in("admin", PASSWORD);
    assert_eq!(p.status, 429, "{}", p.body);
    // (the API answers this address 429 too now: read the log from the store)
    let audit = s
        .block_on(s.state.store.list_audit(&agnes_server::store::AuditFilter {
            action: Some("session".into()),
            limit: 100,
            ..Default::default()
        }))
        .unwrap();
    let failed = audit
        .iter()
        .filter(|e| e.action == "session.failed")
        .count();
    assert_eq!(failed, 3);
}

#[test]
fn a_source_is_edited_from_its_page_with_the_apis_checks() {
    let s = server();
    let mut admin = Client::new(&s.base);
    admin.sign_in("admin", PASSWORD);
    let t = admin.csrf("/admin/sources/demo");
    let grant = s.admin_call("GET", "/api/admin/sources/demo", None)["source"]["grant"].to_string();
    let edit = |admin: &mut Client, schedule: &str, config: &str| {
        admin.post(
            "/admin/sources/demo/edit",
            &[
                ("csrf", &t),
                ("connector", agnes_tests::CSV_COMPONENT),
                ("config", config),
                ("grant", &grant),
                ("limits", "{}"),
                ("schedule", schedule),
                ("description", "edited in the browser"),
                ("enabled", "true"),
            ],
        )
    };
    let p = edit(&mut admin, "every 2h", r#"{"dir": "/data"}"#);
    assert!(p.location.contains("ok="), "{}", p.location);
    let src = s.admin_call("GET", "/api/admin/sources/demo", None)["source"].clone();
    assert_eq!(
        (src["schedule"].as_str(), src["description"].as_str()),
        (Some("every 2h"), Some("edited in the browser"))
    );
    // what the API refuses, the page refuses with its message; nothing changes
    let p = edit(
        &mut admin,
        "every 3h",
        r#"{"dir": "/data", "delimiter": ";;"}"#,
    );
    assert!(
        p.location.contains("error=") && p.location.contains("config.delimiter"),
        "{}",
        p.location
    );
    let p = edit(&mut admin, "every 3h", "{not json");
    assert!(p.location.contains("not%20valid%20JSON"), "{}", p.location);
    let src = s.admin_call("GET", "/api/admin/sources/demo", None)["source"].clone();
    assert_eq!(src["schedule"], "every 2h");
    // the audit log names the admin who used the page
    let (_, audit) = s.call(
        "GET",
        Some(&s.admin),
        "/api/admin/audit?action=source.update",
        None,
    );
    assert_eq!(audit["entries"][0]["user"], "admin", "{audit}");
}

#[test]
fn past_200_tables_the_grants_matrix_opens_one_source_at_a_time() {
    let s = server();
    let tables: Vec<_> = (0..201)
        .map(|i| json!({"name": format!("big_{i:03}"), "query_mode": "materialized", "options": {"sql": "SELECT 1 AS x"}}))
        .collect();
    s.admin_call(
        "POST",
        "/api/admin/sources",
        Some(json!({"name": "big", "connector": "agnes:sql"})),
    );
    s.admin_call(
        "POST",
        "/api/admin/sources/big/tables",
        Some(json!({"tables": tables})),
    );
    let mut admin = Client::new(&s.base);
    admin.sign_in("admin", PASSWORD);
    let page = admin.get("/admin/access");
    assert!(!page.body.contains("<code>big_150</code>"), "collapsed");
    assert!(page.body.contains("/admin/access?source=big"), "a way in");
    let page = admin.get("/admin/access?source=big");
    assert!(page.body.contains("<code>big_150</code>"));
    assert!(
        !page.body.contains("<code>orders</code>"),
        "other sources stay closed"
    );
    // a grant from the opened source comes back to it
    let t = hidden(&page.body, "csrf").unwrap();
    let p = admin.post(
        "/admin/access/cell",
        &[
            ("csrf", &t),
            ("source", "big"),
            ("cell", "grant|table|big_150|sales"),
        ],
    );
    assert!(
        p.location.starts_with("/admin/access?source=big&ok="),
        "{}",
        p.location
    );
    let (_, grants) = s.call("GET", Some(&s.admin), "/api/admin/grants", None);
    assert!(grants.to_string().contains("big_150"), "{grants}");
}
