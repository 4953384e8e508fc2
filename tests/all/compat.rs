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
