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
        "/healthz",
        "get",
        "Liveness: the process answers (no token needed)",
        false,
    ),
    (
        "/readyz",
        "get",
        "Readiness: the state store answers; 503 with the reason otherwise (no token needed)",
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
        "{tables: {name: {hash, updated, size_bytes, rows, query_mode[, signed_url, signed_url_expires_at]}}, server_time}, only readable tables; signed_url: a presigned GET on the object store (verify the md5; fall back to /api/data/{name}/download)",
        false,
    ),
    (
        "/api/data/{name}/download",
        "get",
        "Parquet bytes; ETag = manifest hash, If-None-Match, Range; a remote table → 400 remote_table",
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
        "Columns of a readable table (a remote table's from its connector, with where_syntax)",
        false,
    ),
    (
        "/api/v2/sample/{name}",
        "get",
        "First n rows (?n=, default 5, max 1000); a remote table's with the limit pushed to the source",
        false,
    ),
    (
        "/api/v2/scan/estimate",
        "post",
        "{table, select?, where?, order_by?, limit?} → rows and bytes; for a remote table the connector's estimate, the scan cap, the daily budget and would_refuse",
        false,
    ),
    (
        "/api/v2/scan",
        "post",
        "{table, select?, where?, order_by?, limit?} → Arrow IPC stream; on a remote table pushed to the source (400 invalid_request, remote_scan_too_large, remote_budget_exceeded)",
        false,
    ),
    (
        "/api/query",
        "post",
        "{sql, limit} → {columns, rows, row_count, truncated}; one read-only query over readable tables (remote ones fetched with the SQL's columns and conditions on them pushed)",
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
        "Sync sources {sources?, full_refresh?} (all enabled sources with tables when absent); 202 {sync_id, runs: [{run_id, source}]}; 409 for a source already syncing",
        true,
    ),
    (
        "/api/sync/status",
        "get",
        "Runs in progress, the last run, broken extracts",
        true,
    ),
    (
        "/api/sync/history",
        "get",
        "Runs (one source each) with per-table outcome and error (?limit=, ?source=)",
        true,
    ),
    (
        "/api/sync/runs/{id}",
        "get",
        "One run with its per-table outcomes",
        true,
    ),
    (
        "/api/admin/sources",
        "get",
        "Sources with their tables, running and last run",
        true,
    ),
    (
        "/api/admin/sources",
        "post",
        "Create a source {name, connector: name@version|path, config, grant, limits, schedule?, enabled?, description?}; the connector is verified and the config checked against its schema; 201",
        true,
    ),
    (
        "/api/admin/sources/{source}",
        "get",
        "A source with its tables and latest runs",
        true,
    ),
    (
        "/api/admin/sources/{source}",
        "patch",
        "Change some fields of a source (null clears schedule/description); checked like create",
        true,
    ),
    (
        "/api/admin/sources/{source}",
        "delete",
        "Delete a source, its tables and its extract; lists the grants left dangling",
        true,
    ),
    (
        "/api/admin/sources/{source}/discover",
        "post",
        "Run the connector's discover in the sandbox: tables with columns, keys, cursor, registered",
        true,
    ),
    (
        "/api/admin/sources/{source}/sync",
        "post",
        "Sync one source {full_refresh?}; 202 {run_id}",
        true,
    ),
    (
        "/api/admin/sources/{source}/tables",
        "get",
        "The tables of a source",
        true,
    ),
    (
        "/api/admin/sources/{source}/tables",
        "post",
        "Add tables {tables: [{name, query_mode?, description?, options?}]} or {all: true} (every discovered table); 409 names the source owning a taken name",
        true,
    ),
    (
        "/api/admin/sources/{source}/tables/{table}",
        "patch",
        "Change a table {query_mode?, description?, options?}",
        true,
    ),
    (
        "/api/admin/sources/{source}/tables/{table}",
        "delete",
        "Remove a table (it stops being served at once)",
        true,
    ),
    (
        "/api/admin/tables",
        "get",
        "Tables of every source (?source=)",
        true,
    ),
    (
        "/api/admin/register-table",
        "post",
        "Compatibility (original Agnes): register a table with its source's connector, config, grant, limits, schedule; creates the source on first use",
        true,
    ),
    (
        "/api/admin/registry",
        "get",
        "Compatibility: every table flattened with its source's fields",
        true,
    ),
    (
        "/api/admin/registry/{name}",
        "put",
        "Compatibility: update a table and its source",
        true,
    ),
    (
        "/api/admin/registry/{name}",
        "delete",
        "Compatibility: remove a table",
        true,
    ),
    (
        "/marketplace.zip",
        "get",
        "Your plugin marketplace as a deterministic zip (.claude-plugin/marketplace.json + plugins/<marketplace>-<plugin>/); ETag, If-None-Match → 304",
        false,
    ),
    (
        "/marketplace/info",
        "get",
        "Your marketplace: plugins (version, bundle digest, reviews, update held), etag, zip and git URLs",
        false,
    ),
    (
        "/marketplace.git/{*rest}",
        "get",
        "Git smart HTTP (info/refs?service=git-upload-pack), read-only; HTTP Basic with the token as the password",
        false,
    ),
    (
        "/marketplace.git/{*rest}",
        "post",
        "Git smart HTTP upload-pack (clone, fetch, --depth 1); receive-pack → 404",
        false,
    ),
    (
        "/api/admin/marketplaces",
        "get",
        "Registered plugin marketplaces with their last sync and plugin counts",
        true,
    ),
    (
        "/api/admin/marketplaces",
        "post",
        "Register a git marketplace {name, url, ref?, token?: {env|file}, allow_private?, schedule?, sync?} and sync it",
        true,
    ),
    (
        "/api/admin/marketplaces/{name}",
        "get",
        "One marketplace and its plugins",
        true,
    ),
    (
        "/api/admin/marketplaces/{name}",
        "put",
        "Update a marketplace's registration",
        true,
    ),
    (
        "/api/admin/marketplaces/{name}",
        "delete",
        "Unregister a marketplace: its plugins stop being served",
        true,
    ),
    (
        "/api/admin/marketplaces/{name}/sync",
        "post",
        "Fetch it now: 200 with per-plugin outcomes, 422 with the reason (what is served stays)",
        true,
    ),
    (
        "/api/admin/marketplace/plugins",
        "get",
        "The review queue: every plugin (?status=, ?marketplace=), held ones first, with the reviews of its newest bundle",
        true,
    ),
    (
        "/api/admin/marketplace/plugins/{marketplace}/{plugin}",
        "get",
        "One plugin: record, reviews with findings, files changed since the approved version",
        true,
    ),
    (
        "/api/admin/marketplace/plugins/{marketplace}/{plugin}/{decision}",
        "post",
        "approve | reject | disable | enable (audited)",
        true,
    ),
    (
        "/api/admin/reviewers",
        "get",
        "Uploaded reviewer components (agnes:hook@0.1.0)",
        true,
    ),
    (
        "/api/admin/reviewers",
        "post",
        "Upload a signed reviewer {component_base64, manifest, signature}; refused if it imports sockets or HTTP; it reviews every plugin",
        true,
    ),
    (
        "/api/admin/connectors",
        "get",
        "Uploaded connector versions with digest, signer, requests, imports",
        true,
    ),
    (
        "/api/admin/connectors",
        "post",
        "Upload a signed connector {component_base64, manifest, signature}",
        true,
    ),
    (
        "/api/admin/connectors/{name}",
        "get",
        "Every uploaded version of one connector, with its connector.toml",
        true,
    ),
    (
        "/api/admin/connectors/{name}/{version}/diff",
        "get",
        "What a version changes against the newest approved version before it: requests and imports as +/- lines",
        true,
    ),
    (
        "/api/admin/connectors/{name}/{version}/{decision}",
        "post",
        "A security reviewer's decision, `approve` or `revoke` (audited); only approved versions can be used by a source",
        true,
    ),
    (
        "/api/admin/users",
        "get",
        "Users with their groups and disabled state",
        true,
    ),
    (
        "/api/admin/users",
        "post",
        "Create a user {name, groups?, expires_in_days?, password?} with a first token (returned once)",
        true,
    ),
    (
        "/api/admin/users/{name}/password",
        "put",
        "Set a user's password for the web UI {password} (argon2id; 12+ characters); their browser sessions end",
        true,
    ),
    (
        "/api/admin/web-sessions",
        "get",
        "Live browser sessions of the admin UI (never their secret)",
        true,
    ),
    (
        "/api/admin/web-sessions/{id}",
        "delete",
        "End a browser session (the id from the listing)",
        true,
    ),
    (
        "/api/admin/users/{name}/disable",
        "post",
        "Disable a user: their tokens stop working at once",
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
        "/api/admin/groups/{group}",
        "delete",
        "Delete a group with its memberships and grants (not Admin or Everyone)",
        true,
    ),
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
        "get",
        "Every grant; dangling = names no registered source or table",
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
        "/api/admin/tokens",
        "get",
        "Every user's tokens (metadata only)",
        true,
    ),
    (
        "/api/admin/audit",
        "get",
        "Audit log, newest first (?limit=, ?since=YYYY-MM-DD[ HH:MM:SS], ?action=name or prefix)",
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
            || *path == "/healthz"
            || *path == "/readyz"
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
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "detail": {"type": "string", "description": "the same as message (the original Agnes client prints detail)"}}}}
        }
    })
}
