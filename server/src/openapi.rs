//! The OpenAPI 3.1 document served at `/api/openapi.json`. Each path lists its method,
//! summary and whether it needs the Admin group; error bodies are `{code, message}`.

use serde_json::{Value, json};

const ROUTES: &[(&str, &str, &str, bool)] = &[
    (
        "/api/health",
        "get",
        "Liveness and table count (no token needed)",
        false,
    ),
    (
        "/api/openapi.json",
        "get",
        "This document (no token needed)",
        false,
    ),
    (
        "/api/tokens",
        "get",
        "List your tokens (never their secrets)",
        false,
    ),
    (
        "/api/tokens",
        "post",
        "Create a token {name, expires_in_days?}; the token is returned once",
        false,
    ),
    (
        "/api/tokens/{id}",
        "delete",
        "Revoke a token (yours, or any as admin)",
        false,
    ),
    (
        "/api/sync/manifest",
        "get",
        "{tables: {name: {hash, updated, size_bytes, rows, query_mode}}, server_time}, only readable tables",
        false,
    ),
    (
        "/api/data/{name}/download",
        "get",
        "Parquet bytes; ETag = manifest hash, If-None-Match, Range",
        false,
    ),
    (
        "/api/catalog/tables",
        "get",
        "Readable tables with source, rows, size, hash",
        false,
    ),
    (
        "/api/v2/catalog",
        "get",
        "Same as /api/catalog/tables",
        false,
    ),
    (
        "/api/v2/schema/{name}",
        "get",
        "Columns of a readable table",
        false,
    ),
    (
        "/api/v2/sample/{name}",
        "get",
        "First n rows (?n=, default 5, max 1000)",
        false,
    ),
    (
        "/api/query",
        "post",
        "{sql, limit} → {columns, rows, row_count, truncated}; one read-only query over readable tables",
        false,
    ),
    (
        "/api/webhooks/jira",
        "post",
        "Jira Cloud issue event, authenticated by X-Hub-Signature (HMAC-SHA256), applied to the configured source; 401 bad signature, 400 malformed, 403 not configured",
        false,
    ),
    (
        "/api/sync/trigger",
        "post",
        "Start a sync {sources?, full_refresh?}; 202 {sync_id}, 409 while one runs",
        true,
    ),
    (
        "/api/sync/status",
        "get",
        "Running sync, last run, name conflicts, broken extracts",
        true,
    ),
    (
        "/api/sync/history",
        "get",
        "Sync runs with per-table outcome and error (?limit=)",
        true,
    ),
    (
        "/api/admin/register-table",
        "post",
        "Register a table {name, source, connector, config, grant, limits, query_mode, schedule, description}",
        true,
    ),
    ("/api/admin/registry", "get", "List registered tables", true),
    (
        "/api/admin/registry/{name}",
        "put",
        "Update a registration",
        true,
    ),
    (
        "/api/admin/registry/{name}",
        "delete",
        "Remove a registration",
        true,
    ),
    (
        "/api/admin/users",
        "post",
        "Create a user {name, groups?, expires_in_days?} with a first token (returned once)",
        true,
    ),
    (
        "/api/admin/groups",
        "get",
        "Groups with members and grants",
        true,
    ),
    ("/api/admin/groups", "post", "Create a group {name}", true),
    (
        "/api/admin/groups/{group}/members",
        "post",
        "Add a member {user}",
        true,
    ),
    (
        "/api/admin/groups/{group}/members/{user}",
        "delete",
        "Remove a member",
        true,
    ),
    (
        "/api/admin/grants",
        "post",
        "Grant {group, resource_type: table|source, resource_id}",
        true,
    ),
    (
        "/api/admin/grants",
        "delete",
        "Revoke a grant (same body)",
        true,
    ),
    (
        "/api/admin/audit",
        "get",
        "Audit log, newest first (?limit=)",
        true,
    ),
];

/// Every route's `(path, method)`, for tests that check the document matches the router.
pub fn routes() -> impl Iterator<Item = (&'static str, &'static str)> {
    ROUTES.iter().map(|(p, m, _, _)| (*p, *m))
}

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (path, method, summary, admin) in ROUTES {
        // webhooks authenticate by their signature, not a bearer token
        let public = path.starts_with("/api/health")
            || path.starts_with("/api/openapi")
            || path.starts_with("/api/webhooks");
        let mut op = json!({
            "summary": summary,
            "responses": {
                "200": {"description": "OK"},
                "default": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if !public {
            op["security"] = json!([{"bearer": []}]);
        }
        if *admin {
            op["x-requires-group"] = json!("Admin");
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Agnes", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}
        }
    })
}
