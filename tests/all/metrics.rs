//! Business metrics over real HTTP: an import checks each definition against the served
//! data and reports per metric; a caller sees a metric only when every table it reads is
//! readable by them.

use agnes_tests::{TestServer, pick};
use serde_json::{Value, json};

fn metric(category: &str, name: &str, sql: &str) -> Value {
    json!({"category": category, "name": name, "display_name": name.replace('_', " "), "sql": sql})
}

fn demo() -> TestServer {
    let s = TestServer::start();
    s.with_demo_source(json!({"all": true}));
    s
}

#[test]
fn an_import_checks_every_metric_against_the_data_and_reports_each() {
    let s = demo();
    let metrics = json!([
        metric(
            "revenue",
            "total_revenue",
            "SELECT round(sum(amount), 2) AS revenue FROM orders"
        ),
        metric(
            "customers",
            "by_region",
            "WITH o AS (SELECT * FROM orders) SELECT c.region, sum(o.amount) FROM o JOIN customers c USING (customer_id) GROUP BY 1"
        ),
        metric("broken", "parse", "SELECT amount FROM orders WHERE"),
        metric("broken", "unknown_table", "SELECT * FROM invoices"),
        metric(
            "broken",
            "fails_at_run",
            "SELECT CAST(note AS INTEGER) FROM orders WHERE note IS NOT NULL"
        ),
        metric("broken", "introspection", "SELECT * FROM duckdb_settings()"),
        metric("Bad Category", "x", "SELECT 1"),
    ]);
    let dry = s.admin_call(
        "POST",
        "/api/admin/metrics/import",
        Some(json!({"metrics": metrics, "dry_run": true})),
    );
    assert_eq!(
        (dry["imported"].as_u64(), dry["refused"].as_u64()),
        (Some(0), Some(5)),
        "{dry}"
    );
    assert_eq!(
        s.admin_call("GET", "/api/metrics", None)["count"],
        0,
        "a dry run stores nothing"
    );

    let r = s.admin_call(
        "POST",
        "/api/admin/metrics/import",
        Some(json!({"metrics": metrics})),
    );
    assert_eq!(
        pick(&r["metrics"], &["id", "status"]),
        json!([
            ["revenue/total_revenue", "imported"],
            ["customers/by_region", "imported"],
            ["broken/parse", "refused"],
            ["broken/unknown_table", "refused"],
            ["broken/fails_at_run", "refused"],
            ["broken/introspection", "refused"],
            ["Bad Category/x", "refused"]
        ])
    );
    let errors: Vec<&str> = r["metrics"].as_array().unwrap()[2..]
        .iter()
        .map(|o| o["error"].as_str().unwrap())
        .collect();
    assert!(errors[0].contains("syntax error"), "{}", errors[0]);
    assert!(
        errors[1].contains("`invoices`, which is not a served table"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].contains("does not run on the current data"),
        "{}",
        errors[2]
    );
    assert!(errors[3].contains("duckdb_settings"), "{}", errors[3]);
    assert!(errors[4].contains("[a-z][a-z0-9_]*"), "{}", errors[4]);
    assert_eq!(
        r["metrics"][1]["tables"],
        json!(["customers", "orders"]),
        "CTE names are not tables"
    );

    let shown = s.admin_call("GET", "/api/metrics/revenue/total_revenue", None);
    assert_eq!(shown["id"], "revenue/total_revenue");
    assert_eq!(shown["tables"], json!(["orders"]));
    assert_eq!(shown["source"], "yaml_import");
    // re-importing replaces; deleting removes
    s.admin_call("POST", "/api/admin/metrics/import", Some(json!({"metrics": [metric("revenue", "total_revenue", "SELECT sum(amount) AS r FROM orders")]})));
    assert_eq!(
        s.admin_call("GET", "/api/metrics/revenue/total_revenue", None)["sql"],
        "SELECT sum(amount) AS r FROM orders"
    );
    s.admin_call("DELETE", "/api/admin/metrics/revenue/total_revenue", None);
    assert_eq!(
        s.call(
            "GET",
            Some(&s.admin),
            "/api/metrics/revenue/total_revenue",
            None
        )
        .0,
        404
    );
}

#[test]
fn a_metric_is_visible_only_when_every_table_it_reads_is_readable() {
    let s = demo();
    s.admin_call(
        "POST",
        "/api/admin/metrics/import",
        Some(json!({"metrics": [
            metric("revenue", "total_revenue", "SELECT sum(amount) FROM orders"),
            metric("sales", "by_category", "SELECT p.category, sum(o.amount) FROM orders o JOIN products p USING (product_id) GROUP BY 1"),
            metric("customers", "active", "SELECT count(*) FROM customers WHERE is_active"),
        ]})),
    );
    s.admin_call("POST", "/api/admin/groups", Some(json!({"name": "sales"})));
    for t in ["orders", "customers"] {
        s.admin_call(
            "POST",
            "/api/admin/grants",
            Some(json!({"group": "sales", "resource_type": "table", "resource_id": t})),
        );
    }
    let token = |name: &str, groups: Value| {
        s.admin_call(
            "POST",
            "/api/admin/users",
            Some(json!({"name": name, "groups": groups})),
        )["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let ana = token("ana", json!(["sales"]));
    let bob = token("bob", json!([]));
    let (_, listed) = s.call("GET", Some(&ana), "/api/metrics", None);
    assert_eq!(
        pick(&listed["metrics"], &["id"]),
        json!(["customers/active", "revenue/total_revenue"])
    );
    let (st, body) = s.call("GET", Some(&ana), "/api/metrics/sales/by_category", None);
    assert_eq!(
        (st, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("`products`"),
        "{body}"
    );
    let (_, listed) = s.call("GET", Some(&ana), "/api/metrics?category=revenue", None);
    assert_eq!(listed["count"], 1);
    let (_, listed) = s.call("GET", Some(&bob), "/api/metrics", None);
    assert_eq!(listed["count"], 0, "no grants, no metrics");
    assert_eq!(
        s.call(
            "GET",
            Some(&bob),
            "/api/metrics/revenue/total_revenue",
            None
        )
        .0,
        403
    );
    assert_eq!(
        s.call("GET", Some(&ana), "/api/metrics/no/such", None).0,
        404
    );
    // a table removed from the catalog hides its metrics (fail closed)
    s.admin_call("DELETE", "/api/admin/sources/demo/tables/customers", None);
    let (_, listed) = s.call("GET", Some(&ana), "/api/metrics", None);
    assert_eq!(
        pick(&listed["metrics"], &["id"]),
        json!(["revenue/total_revenue"])
    );
    // analysts cannot import
    let (st, _) = s.call(
        "POST",
        Some(&ana),
        "/api/admin/metrics/import",
        Some(json!({"metrics": []})),
    );
    assert_eq!(st, 403);
}

#[test]
fn the_workspace_claude_md_is_rendered_per_caller_from_an_editable_template() {
    let s = demo();
    s.admin_call(
        "POST",
        "/api/admin/metrics/import",
        Some(json!({"metrics": [
            metric("revenue", "total_revenue", "SELECT sum(amount) FROM orders"),
            metric("sales", "by_category", "SELECT p.category, sum(o.amount) FROM orders o JOIN products p USING (product_id) GROUP BY 1"),
        ]})),
    );
    let ana = s.analyst("ana", "sales", "orders");
    let (st, body) = s.call(
        "GET",
        Some(&ana),
        "/api/welcome?server_url=https://agnes.example.com",
        None,
    );
    assert_eq!(st, 200);
    let content = body["content"].as_str().unwrap();
    assert!(content.starts_with("<!-- agnes:welcome"), "{content}");
    assert!(
        content.contains("# Agnes — AI data analyst workspace"),
        "{content}"
    );
    assert!(
        content.contains("https://agnes.example.com") && content.contains("ana"),
        "{content}"
    );
    assert!(
        content.contains("Tables: `orders`"),
        "only what ana may read: {content}"
    );
    assert!(
        content.contains("Metrics: `revenue/total_revenue`"),
        "{content}"
    );
    assert!(
        !content.contains("by_category") && !content.contains("`customers`"),
        "{content}"
    );
    assert!(
        content.contains("Never invent metric SQL"),
        "the rails are in it"
    );

    // an admin's own template, checked; reset goes back to the shipped one
    let (st, err) = s.call(
        "PUT",
        Some(&s.admin),
        "/api/admin/welcome",
        Some(json!({"content": "hi {{ user.secret }}"})),
    );
    assert_eq!(st, 400, "{err}");
    s.admin_call(
        "PUT",
        "/api/admin/welcome",
        Some(json!({"content": "# {{ instance.name }} for {{ user.name }}: {{ tables }}"})),
    );
    let (_, body) = s.call("GET", Some(&ana), "/api/welcome", None);
    assert_eq!(body["content"], "# Agnes for ana: `orders`");
    let admin_view = s.admin_call("GET", "/api/admin/welcome", None);
    assert_eq!(admin_view["updated_by"], "admin");
    assert!(admin_view["default"].as_str().unwrap().contains("Rails"));
    s.admin_call("DELETE", "/api/admin/welcome", None);
    let (_, body) = s.call("GET", Some(&ana), "/api/welcome", None);
    assert!(
        body["content"]
            .as_str()
            .unwrap()
            .starts_with("<!-- agnes:welcome")
    );
    // analysts cannot change it
    assert_eq!(
        s.call(
            "PUT",
            Some(&ana),
            "/api/admin/welcome",
            Some(json!({"content": "x"}))
        )
        .0,
        403
    );
}
