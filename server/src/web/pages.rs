//! The pages. Reads go to the store and the catalog; every change is the REST API call
//! it stands for, made through [`super::api`] on behalf of the signed-in user.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use serde_json::{Value, json};

use super::{Browser, BrowserAdmin, Fields, Posted, api, encode, html as page_response};
use crate::state::AppState;
use crate::store::{AuditFilter, ConnectorInfo, RunInfo};

/// Flash messages carried in the query string after a redirect.
#[derive(serde::Deserialize, Default)]
pub struct Flash {
    ok: Option<String>,
    error: Option<String>,
    action: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
    /// The access page's grants matrix: the source whose tables to list.
    source: Option<String>,
}

/// Past this many registered tables, the grants matrix lists each source's tables only
/// when asked (`/admin/access?source=NAME`).
const MATRIX_TABLES: usize = 200;

const NAV: [(&str, &str); 7] = [
    ("/admin", "Overview"),
    ("/admin/sources", "Sources"),
    ("/admin/connectors", "Connectors"),
    ("/admin/marketplace", "Marketplace"),
    ("/admin/access", "Access"),
    ("/admin/metrics", "Metrics"),
    ("/admin/audit", "Audit log"),
];

fn layout(who: Option<&Browser>, active: &str, title: &str, flash: &Flash, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Agnes" }
                link rel="stylesheet" href="/static/agnes.css";
            }
            body {
                header {
                    a.brand href="/" { "Agnes" }
                    @if let Some(b) = who {
                        nav {
                            @if b.user.is_admin() {
                                @for (href, label) in NAV {
                                    a.active[href == active] href=(href) { (label) }
                                }
                            }
                            a.active["/setup" == active] href="/setup" { "My workspace" }
                        }
                        form.signout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(b.csrf);
                            span.who { (b.user.name) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(ok) = &flash.ok { p.flash.ok { (ok) } }
                    @if let Some(e) = &flash.error { p.flash.error { (e) } }
                    (body)
                }
            }
        }
    }
}

fn csrf(b: &Browser) -> Markup {
    html! { input type="hidden" name="csrf" value=(b.csrf); }
}

/// `text` of a JSON value (strings unquoted, null empty).
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn badge(status: &str) -> Markup {
    let class = match status {
        "ok" | "approved" => "good",
        "partial" | "pending" | "running" => "warn",
        "failed" | "revoked" | "disabled" | "denied" | "rejected" | "refused" => "bad",
        _ => "none",
    };
    html! { span class={"badge " (class)} { (status) } }
}

fn bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    match n {
        x if x >= 1e9 => format!("{:.2} GB", x / 1e9),
        x if x >= 1e6 => format!("{:.1} MB", x / 1e6),
        x if x >= 1e3 => format!("{:.1} kB", x / 1e3),
        x => format!("{x} B"),
    }
}

/// Redirects to `to` with a flash message from an API answer: `ok` on success, its
/// `message` as `error` otherwise.
fn after(to: &str, (status, body): (StatusCode, Value), ok: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    if status.is_success() {
        Redirect::to(&format!("{to}{sep}ok={}", encode(ok))).into_response()
    } else {
        let msg = body["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the server answered {status}"));
        Redirect::to(&format!("{to}{sep}error={}", encode(&msg))).into_response()
    }
}

pub fn forbidden(b: &Browser) -> Response {
    (
        StatusCode::FORBIDDEN,
        page_response(layout(
            Some(b),
            "",
            "Not for you",
            &Flash::default(),
            html! { p { "These pages are for admins. " a href="/" { "Your tables" } " are on the home page." } },
        )),
    )
        .into_response()
}

pub fn csrf_refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        message(
            "Form refused",
            "This form was not sent by a page of this site (its CSRF token is missing or wrong). Reload the page and try again.",
        ),
    )
        .into_response()
}

pub fn message(title: &str, text: &str) -> Response {
    page_response(layout(
        None,
        "",
        title,
        &Flash::default(),
        html! { p { (text) } },
    ))
}

pub fn login(token: &str, next: &str, error: Option<&str>) -> Response {
    let flash = Flash {
        error: error.map(str::to_string),
        ..Flash::default()
    };
    page_response(layout(
        None,
        "",
        "Sign in",
        &flash,
        html! {
            form.card method="post" action="/login" {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="next" value=(next);
                label { "User" input #user type="text" name="user" autocomplete="username" required autofocus; }
                label { "Password" input #password type="password" name="password" autocomplete="current-password" required; }
                button #signin type="submit" { "Sign in" }
            }
            p.hint { "An admin sets your password (" code { "agnes admin user password NAME" } "). Analysts' tools use API tokens." }
        },
    ))
}

/// `/`: the signed-in user's tables, and the way to a workspace.
pub async fn home(State(state): State<AppState>, b: Browser) -> Response {
    let catalog = state.catalog();
    let mine: Vec<_> = catalog
        .tables
        .values()
        .filter(|t| b.user.can_read(&t.name, &t.source))
        .collect();
    page_response(layout(
        Some(&b),
        "/",
        "Your tables",
        &Flash::default(),
        html! {
            p { "You may read " (mine.len()) " table(s). " a href="/setup" { "Set up my workspace" } " to pull them with the " code { "agnes" } " CLI." }
            table #my-tables {
                thead { tr { th { "table" } th { "source" } th { "mode" } th.num { "rows" } th.num { "size" } th { "updated" } th { "description" } } }
                tbody {
                    @for t in &mine {
                        tr {
                            td { code { (t.name) } } td { (t.source) } td { (t.query_mode) }
                            td.num { (t.rows) } td.num { (bytes(t.size_bytes)) } td { (t.updated) }
                            td { (t.description.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
        },
    ))
}

pub async fn setup(b: Browser) -> Response {
    page_response(layout(
        Some(&b),
        "/setup",
        "My workspace",
        &Flash::default(),
        html! {
            p { "A workspace is a folder where the " code { "agnes" } " CLI keeps your tables as local DuckDB views, with a " code { "CLAUDE.md" } " for your AI agent." }
            form.card method="post" action="/setup" {
                (csrf(&b))
                label { "Token name" input type="text" name="name" value="workspace"; }
                button #mint type="submit" { "Create a token and show my agnes init command" }
            }
        },
    ))
}

pub async fn setup_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted { who: b, form }: Posted<Browser>,
) -> Response {
    let name = form
        .get("name")
        .cloned()
        .unwrap_or_else(|| "workspace".into());
    let (status, body) = api(
        &state,
        &b.user,
        Method::POST,
        "/api/tokens",
        Some(json!({"name": name})),
    )
    .await;
    if !status.is_success() {
        return after("/setup", (status, body), "");
    }
    let scheme = if state.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let server = format!("{scheme}://{host}");
    let token = text(&body["token"]);
    page_response(layout(
        Some(&b),
        "/setup",
        "My workspace",
        &Flash {
            ok: Some("Token created. It is shown once: copy the command now.".into()),
            ..Flash::default()
        },
        html! {
            p { "Install the " code { "agnes" } " CLI, then run in an empty folder:" }
            pre #init-command { "agnes init --server " (server) " --token " (token) "\nagnes pull" }
            p.hint { "Revoke it any time with " code { "agnes auth" } " or ask an admin; it never expires unless an admin set an expiry." }
        },
    ))
}

/// Health of a source from its latest run.
fn health(last: Option<&RunInfo>, running: bool) -> &'static str {
    if running {
        return "running";
    }
    match last.map(|r| r.status.as_str()) {
        Some("ok") => "ok",
        Some("partial") => "partial",
        Some("failed") => "failed",
        Some("running") => "running",
        _ => "never run",
    }
}

/// `/admin`: sources with health, last sync, failing tables with the reason, catalog
/// size, recent audit events.
pub async fn overview(
    State(state): State<AppState>,
    BrowserAdmin(b): BrowserAdmin,
    Query(flash): Query<Flash>,
) -> Response {
    let recent = AuditFilter {
        limit: 15,
        ..AuditFilter::default()
    };
    let (sources, latest, tables, audit) = match tokio::try_join!(
        state.store.list_sources(),
        state.store.latest_runs(),
        state.store.list_tables(None),
        state.store.list_audit(&recent),
    ) {
        Ok(all) => all,
        Err(e) => return e.into_response(),
    };
    let running: std::collections::BTreeMap<String, crate::sync::Running> =
        match crate::sync::Running::all(&state).await {
            Ok(all) => all.into_iter().map(|r| (r.source.clone(), r)).collect(),
            Err(e) => return e.into_response(),
        };
    let catalog = state.catalog();
    let (rows, size) = catalog.tables.values().fold((0i64, 0i64), |(r, s), t| {
        (r + t.rows.max(0), s + t.size_bytes.max(0))
    });
    let failing: Vec<(&str, &crate::store::TableOutcome)> = latest
        .iter()
        .flat_map(|r| {
            r.tables
                .iter()
                .filter(|t| t.status != "ok")
                .map(move |t| (r.source.as_str(), t))
        })
        .collect();
    page_response(layout(
        Some(&b),
        "/admin",
        "Overview",
        &flash,
        html! {
            section.stats {
                div { strong #stat-sources { (sources.len()) } " sources" }
                div { strong #stat-tables { (tables.len()) } " tables registered" }
                div { strong { (catalog.tables.len()) } " served" }
                div { strong { (rows) } " rows" }
                div { strong { (bytes(size)) } " of parquet" }
            }
            h2 { "Sources" }
            table #sources {
                thead { tr { th { "source" } th { "connector" } th { "health" } th { "last sync" } th { "schedule" } th.num { "tables" } } }
                tbody {
                    @for s in &sources {
                        @let last = latest.iter().find(|r| r.source == s.spec.name);
                        tr {
                            td { a href={"/admin/sources/" (s.spec.name)} { (s.spec.name) } }
                            td { code { (s.spec.connector) } }
                            td { (badge(health(last, running.contains_key(&s.spec.name)))) }
                            td { (last.map(|r| r.finished_at.clone().unwrap_or_else(|| r.started_at.clone())).unwrap_or_default()) }
                            td { (s.spec.schedule.clone().unwrap_or_else(|| "manual".into())) @if !s.spec.enabled { " (disabled)" } }
                            td.num { (tables.iter().filter(|t| t.source == s.spec.name).count()) }
                        }
                    }
                }
            }
            h2 { "Failing tables" }
            @if failing.is_empty() {
                p.hint { "None: every table's latest sync succeeded." }
            } @else {
                table #failing {
                    thead { tr { th { "table" } th { "source" } th { "when" } th { "reason" } } }
                    tbody {
                        @for (source, t) in &failing {
                            tr { td { code { (t.table) } } td { (source) } td { (t.finished_at) } td.error { (t.error.clone().unwrap_or_default()) } }
                        }
                    }
                }
            }
            h2 { "Recent audit events" }
            (audit_table(&audit))
        },
    ))
}

fn audit_table(entries: &[crate::store::AuditEntry]) -> Markup {
    html! {
        table #audit {
            thead { tr { th { "when" } th { "who" } th { "action" } th { "resource" } th { "detail" } } }
            tbody {
                @for e in entries {
                    tr { td { (e.at) } td { (e.user.clone().unwrap_or_default()) } td { code { (e.action) } } td { (e.resource.clone().unwrap_or_default()) } td { (e.detail.clone().unwrap_or_default()) } }
                }
            }
        }
    }
}

/// `/admin/sources`: every source, and the form to add one.
pub async fn sources(
    State(state): State<AppState>,
    BrowserAdmin(b): BrowserAdmin,
    Query(flash): Query<Flash>,
) -> Response {
    let (sources, latest, connectors) = match tokio::try_join!(
        state.store.list_sources(),
        state.store.latest_runs(),
        state.store.list_connectors(),
    ) {
        Ok(all) => all,
        Err(e) => return e.into_response(),
    };
    let approved: Vec<String> = connectors
        .iter()
        .filter(|c| c.status == "approved")
        .map(|c| format!("{}@{}", c.name, c.version))
        .collect();
    page_response(layout(
        Some(&b),
        "/admin/sources",
        "Sources",
        &flash,
        html! {
            table #sources {
                thead { tr { th { "source" } th { "connector" } th { "last run" } th { "description" } } }
                tbody {
                    @for s in &sources {
                        @let last = latest.iter().find(|r| r.source == s.spec.name);
                        tr {
                            td { a href={"/admin/sources/" (s.spec.name)} { (s.spec.name) } }
                            td { code { (s.spec.connector) } }
                            td { (badge(health(last, false))) }
                            td { (s.spec.description.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
            h2 { "Add a source" }
            form.card #new-source method="post" action="/admin/sources" {
                (csrf(&b))
                label { "Name" input #source-name type="text" name="name" required pattern="[A-Za-z_][A-Za-z0-9_]*"; }
                label { "Connector (an approved upload, or agnes:sql)"
                    select #source-connector name="connector" {
                        @for c in &approved { option value=(c) { (c) } }
                        option value="agnes:sql" { "agnes:sql (SQL over Agnes tables)" }
                    }
                }
                label { "Config (JSON)" textarea #source-config name="config" rows="3" { "{}" } }
                label { "Grant (JSON: dirs, http, secrets, databases)" textarea #source-grant name="grant" rows="4" { "{}" } }
                label { "Schedule (e.g. every 1h; empty: manual)" input type="text" name="schedule"; }
                label { "Description" input type="text" name="description"; }
                button #create-source type="submit" { "Add source" }
            }
        },
    ))
}

/// JSON from a form field (empty: `{}`).
fn json_field(form: &Fields, key: &str) -> Result<Value, String> {
    let t = form.get(key).map(|s| s.trim()).unwrap_or("");
    if t.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(t).map_err(|e| format!("{key} is not valid JSON: {e}"))
}

fn f_or(form: &Fields, key: &str) -> String {
    form.get(key).cloned().unwrap_or_default()
}

fn opt_field(form: &Fields, key: &str) -> Option<String> {
    form.get(key)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

pub async fn create_source(
    State(state): State<AppState>,
    Posted {
        who: BrowserAdmin(b),
        form,
    }: Posted<BrowserAdmin>,
) -> Response {
    let name = form.get("name").cloned().unwrap_or_default();
    let (config, grant) = match (json_field(&form, "config"), json_field(&form, "grant")) {
        (Ok(c), Ok(g)) => (c, g),
        (Err(e), _) | (_, Err(e)) => {
            return after(
                "/admin/sources",
                (StatusCode::BAD_REQUEST, json!({"message": e})),
                "",
            );
        }
    };
    let body = json!({
        "name": name, "connector": form.get("connector").cloned().unwrap_or_default(),
        "config": config, "grant": grant, "schedule": opt_field(&form, "schedule"),
        "description": opt_field(&form, "description"),
    });
    let answer = api(
        &state,
        &b.user,
        Method::POST,
        "/api/admin/sources",
        Some(body),
    )
    .await;
    if answer.0.is_success() {
        return after(
            &format!("/admin/sources/{}", encode(&name)),
            answer,
            &format!("Source {name} added."),
        );
    }
    after("/admin/sources", answer, "")
}

/// A source: configuration, what its connector requests beside what it is granted, its
/// tables, discover-and-pick, sync, and its history with per-table outcomes.
pub async fn source(
    State(state): State<AppState>,
    BrowserAdmin(b): BrowserAdmin,
    Path(name): Path<String>,
    Query(flash): Query<Flash>,
) -> Response {
    let source = match crate::routes::sources::require_source(&state, &name).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let (tables, runs) = match tokio::try_join!(
        state.store.list_tables(Some(&name)),
        state.store.list_runs(Some(&name), 20)
    ) {
        Ok(all) => all,
        Err(e) => return e.into_response(),
    };
    let discovered = flash.action.as_deref() == Some("discover");
    let offered = if discovered {
        crate::connector::discover(&state, &source.spec)
            .await
            .map_err(|e| e.to_string())
    } else {
        Ok(vec![])
    };
    let capabilities = capabilities(&state, &source.spec);
    let spec = &source.spec;
    page_response(layout(
        Some(&b),
        "/admin/sources",
        &format!("Source {name}"),
        &flash,
        html! {
            dl.spec {
                dt { "connector" } dd { code { (spec.connector) } }
                dt { "schedule" } dd { (spec.schedule.clone().unwrap_or_else(|| "manual".into())) }
                dt { "enabled" } dd { (spec.enabled) }
                dt { "description" } dd { (spec.description.clone().unwrap_or_default()) }
                dt { "config" } dd { pre { (serde_json::to_string_pretty(&spec.config).unwrap_or_default()) } }
            }
            h2 { "Capabilities" }
            @match &capabilities {
                Ok((requested, granted, effective)) => {
                    table.caps #capabilities {
                        thead { tr { th { "the connector requests" } th { "the operator grants" } th { "the run gets (request ∩ grant)" } } }
                        tbody { tr {
                            td { ul { @for l in requested { li { (l) } } } }
                            td { ul { @for l in granted { li { (l) } } } }
                            td { ul { @for l in effective { li { (l) } } } }
                        } }
                    }
                }
                Err(e) => { p.flash.error { (e) } }
            }
            h2 { "Sync" }
            form.inline method="post" action={"/admin/sources/" (name) "/sync"} {
                (csrf(&b))
                label.check { input type="checkbox" name="full_refresh" value="true"; " full refresh" }
                button #sync type="submit" { "Sync now" }
            }
            details #edit {
                summary { "Edit this source" }
                form.card method="post" action={"/admin/sources/" (name) "/edit"} {
                    (csrf(&b))
                    label { "Connector" input type="text" name="connector" value=(spec.connector); }
                    label { "Config (JSON)" textarea name="config" rows="4" { (serde_json::to_string_pretty(&spec.config).unwrap_or_default()) } }
                    label { "Grant (JSON)" textarea name="grant" rows="5" { (serde_json::to_string_pretty(&spec.grant).unwrap_or_default()) } }
                    label { "Limits (JSON)" textarea name="limits" rows="5" { (serde_json::to_string_pretty(&spec.limits).unwrap_or_default()) } }
                    label { "Schedule (empty: manual)" input type="text" name="schedule" value=(spec.schedule.clone().unwrap_or_default()); }
                    label { "Description" input type="text" name="description" value=(spec.description.clone().unwrap_or_default()); }
                    label.check { input type="checkbox" name="enabled" value="true" checked[spec.enabled]; " enabled" }
                    button type="submit" { "Save" }
                }
            }
            h2 { "Tables" }
            table #tables {
                thead { tr { th { "table" } th { "mode" } th { "description" } th {} } }
                tbody {
                    @for t in &tables {
                        tr {
                            td { code { (t.spec.name) } } td { (t.spec.query_mode) } td { (t.spec.description.clone().unwrap_or_default()) }
                            td { form.inline method="post" action={"/admin/sources/" (name) "/remove-table"} {
                                (csrf(&b)) input type="hidden" name="table" value=(t.spec.name);
                                button.danger type="submit" { "Remove" }
                            } }
                        }
                    }
                }
            }
            form.inline method="get" action={"/admin/sources/" (name)} {
                input type="hidden" name="action" value="discover";
                button #discover type="submit" { "Discover the connector's tables" }
            }
            @if discovered {
                @match &offered {
                    Ok(list) => {
                        table #discovered {
                            thead { tr { th { "offered" } th { "columns" } th { "incremental" } th {} } }
                            tbody {
                                @for t in list {
                                    tr {
                                        td { code { (t.name) } }
                                        td { (t.columns.iter().map(|c| format!("{} {}", c.name, c.data_type)).collect::<Vec<_>>().join(", ")) }
                                        td { (t.incremental) }
                                        td {
                                            @if tables.iter().any(|r| r.spec.name == t.name) { "registered" } @else {
                                                form.inline method="post" action={"/admin/sources/" (name) "/tables"} {
                                                    (csrf(&b)) input type="hidden" name="table" value=(t.name);
                                                    button type="submit" { "Add" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => { p.flash.error { (e) } }
                }
            }
            details {
                summary { "Add a table by name (remote, materialized, SQL)" }
                form.card method="post" action={"/admin/sources/" (name) "/tables"} {
                    (csrf(&b))
                    label { "Name" input type="text" name="table" required; }
                    label { "Mode" select name="query_mode" { option { "local" } option { "remote" } option { "materialized" } } }
                    label { "SQL (materialized)" textarea name="sql" rows="4" {} }
                    button type="submit" { "Add table" }
                }
            }
            h2 { "History" }
            table #history {
                thead { tr { th { "run" } th { "trigger" } th { "started" } th { "finished" } th { "status" } th { "tables" } } }
                tbody {
                    @for r in &runs {
                        tr {
                            td { (r.id) } td { (r.trigger) @if r.full_refresh { " (full)" } } td { (r.started_at) }
                            td { (r.finished_at.clone().unwrap_or_default()) } td { (badge(&r.status)) }
                            td {
                                @if let Some(e) = &r.error { p.error { (e) } }
                                ul.outcomes {
                                    @for t in &r.tables {
                                        li { code { (t.table) } " " (badge(&t.status))
                                            @if let Some(rows) = t.rows { " " (rows) " rows" }
                                            @if let Some(e) = &t.error { span.error { " " (e) } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// `(requested, granted, effective)` capability lines.
type Capabilities = (Vec<String>, Vec<String>, Vec<String>);

/// The capabilities of a source: what its connector requests, what the operator grants, what a run gets.
fn capabilities(state: &AppState, spec: &crate::store::SourceSpec) -> Result<Capabilities, String> {
    if crate::connector::is_sql(spec) {
        return Ok((vec!["nothing: SQL over Agnes tables runs in agnes-sqlbox, reading only the files of the tables it names".into()], vec![], vec![]));
    }
    let located =
        crate::connector::locate(spec, &state.config.data_dir).map_err(|e| e.to_string())?;
    let Some(path) = located.manifest.or(spec.manifest.clone()) else {
        return Ok((
            vec!["(no connector.toml: the grant applies as given)".into()],
            spec.grant.lines(),
            spec.grant.lines(),
        ));
    };
    let manifest =
        agnes_runtime::manifest::ConnectorManifest::from_file(&path).map_err(|e| e.to_string())?;
    let effective = match manifest.effective(&spec.grant, &spec.limits) {
        Ok((g, _)) => g.lines(),
        Err(e) => vec![format!("refused: {e}")],
    };
    Ok((manifest.requests.lines(), spec.grant.lines(), effective))
}

/// Form actions on a source: `sync`, `tables` (add), `remove-table`.
pub async fn source_action(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    Posted {
        who: BrowserAdmin(b),
        form,
    }: Posted<BrowserAdmin>,
) -> Response {
    let back = format!("/admin/sources/{}", encode(&name));
    let base = format!("/api/admin/sources/{}", encode(&name));
    match action.as_str() {
        "sync" => {
            let full = form.get("full_refresh").is_some_and(|v| v == "true");
            let answer = api(
                &state,
                &b.user,
                Method::POST,
                &format!("{base}/sync"),
                Some(json!({"full_refresh": full})),
            )
            .await;
            after(&back, answer, "Sync started; reload to see its outcome.")
        }
        "tables" => {
            let table = form.get("table").cloned().unwrap_or_default();
            let mode = opt_field(&form, "query_mode").unwrap_or_else(|| "local".into());
            let options = match opt_field(&form, "sql") {
                Some(sql) => json!({"sql": sql}),
                None => json!({}),
            };
            let body = json!({"tables": [{"name": table, "query_mode": mode, "options": options}]});
            let answer = api(
                &state,
                &b.user,
                Method::POST,
                &format!("{base}/tables"),
                Some(body),
            )
            .await;
            after(&back, answer, &format!("Table {table} added."))
        }
        "edit" => {
            let parsed = (
                json_field(&form, "config"),
                json_field(&form, "grant"),
                json_field(&form, "limits"),
            );
            let (config, grant, limits) = match parsed {
                (Ok(c), Ok(g), Ok(l)) => (c, g, l),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    return after(&back, (StatusCode::BAD_REQUEST, json!({"message": e})), "");
                }
            };
            let body = json!({
                "connector": f_or(&form, "connector"), "config": config, "grant": grant, "limits": limits,
                "schedule": opt_field(&form, "schedule"), "description": opt_field(&form, "description"),
                "enabled": form.get("enabled").is_some_and(|v| v == "true"),
            });
            let answer = api(&state, &b.user, Method::PATCH, &base, Some(body)).await;
            after(&back, answer, &format!("Source {name} saved."))
        }
        "remove-table" => {
            let table = form.get("table").cloned().unwrap_or_default();
            let answer = api(
                &state,
                &b.user,
                Method::DELETE,
                &format!("{base}/tables/{}", encode(&table)),
                None,
            )
            .await;
            after(&back, answer, &format!("Table {table} removed."))
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `/admin/connectors`: every uploaded version with its review state.
pub async fn connectors(
    State(state): State<AppState>,
    BrowserAdmin(b): BrowserAdmin,
    Query(flash): Query<Flash>,
) -> Response {
    let all = match state.store.list_connectors().await {
        Ok(all) => all,
        Err(e) => return e.into_response(),
    };
    page_response(layout(
        Some(&b),
        "/admin/connectors",
        "Connectors",
        &flash,
        html! {
            p.hint { "Upload with " code { "agnes admin connector upload COMPONENT --manifest connector.toml" } ". A version is usable by sources only once approved here (or with " code { "agnes admin connector approve" } ")." }
            table #connectors {
                thead { tr { th { "version" } th { "status" } th { "digest" } th { "signer" } th { "uploaded" } th { "reviewed" } } }
                tbody {
                    @for c in &all {
                        tr {
                            td { a href={"/admin/connectors/" (c.name) "/" (c.version)} { (c.name) "@" (c.version) } }
                            td { (badge(&c.status)) }
                            td { code { (c.digest.chars().take(19).collect::<String>()) "…" } }
                            td { (c.key_id) }
                            td { (c.uploaded_at) " by " (c.uploaded_by) }
                            td { (c.reviewed_by.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
        },
    ))
}

/// A connector version: what it requests and imports, its diff against the previously
/// approved version, and the reviewer's approve/revoke.
pub async fn connector(
    State(state): State<AppState>,
    BrowserAdmin(b): BrowserAdmin,
    Path((name, version)): Path<(String, String)>,
    Query(flash): Query<Flash>,
) -> Response {
    let all = match state.store.list_connectors().await {
        Ok(all) => all,
        Err(e) => return e.into_response(),
    };
    let Some(c): Option<&ConnectorInfo> =
        all.iter().find(|c| c.name == name && c.version == version)
    else {
        return crate::error::ApiError::NotFound(format!(
            "no uploaded connector `{name}@{version}`"
        ))
        .into_response();
    };
    let diff = match crate::connector::review_diff(&all, &name, &version) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let requests: Vec<String> =
        serde_json::from_value::<agnes_runtime::manifest::Requests>(c.requests.clone())
            .map(|r| r.lines())
            .unwrap_or_default();
    let imports: Vec<String> = serde_json::from_value(c.imports.clone()).unwrap_or_default();
    let manifest = std::fs::read_to_string(
        state
            .config
            .data_dir
            .join("connectors")
            .join(&c.name)
            .join(&c.version)
            .join("connector.toml"),
    )
    .unwrap_or_default();
    let lines = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default()
    };
    page_response(layout(
        Some(&b),
        "/admin/connectors",
        &format!("Connector {name}@{version}"),
        &flash,
        html! {
            dl.spec {
                dt { "status" } dd #status { (badge(&c.status)) @if let Some(by) = &c.reviewed_by { " by " (by) " at " (c.reviewed_at.clone().unwrap_or_default()) } }
                dt { "digest" } dd { code { (c.digest) } }
                dt { "signer" } dd { (c.key_id) }
                dt { "uploaded" } dd { (c.uploaded_at) " by " (c.uploaded_by) }
            }
            h2 { "Changes since " (diff["from"].as_str().unwrap_or("nothing approved before: everything is new")) }
            div.diff #diff {
                h3 { "requests" }
                @let req = lines(&diff["requests"]);
                @if req.is_empty() { p.hint { "no change" } }
                ul { @for l in &req { li class=(if l.starts_with('+') { "added" } else { "removed" }) { (l) } } }
                h3 { "imported interfaces" }
                @let imp = lines(&diff["imports"]);
                @if imp.is_empty() { p.hint { "no change" } }
                ul { @for l in &imp { li class=(if l.starts_with('+') { "added" } else { "removed" }) { (l) } } }
            }
            h2 { "Review" }
            form.inline method="post" action={"/admin/connectors/" (name) "/" (version)} {
                (csrf(&b))
                button #approve name="decision" value="approve" type="submit" { "Approve" }
                button.danger #revoke name="decision" value="revoke" type="submit" { "Revoke" }
            }
            h2 { "Requests" }
            ul { @for l in &requests { li { (l) } } }
            h2 { "Imports" }
            ul { @for i in &imports { li { code { (i) } } } }
            h2 { "connector.toml" }
            pre { (manifest) }
        },
    ))
}

pub async fn review_connector(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    Posted {
        who: BrowserAdmin(b),
        form,
    }: Posted<BrowserAdmin>,
) -> Response {
    let decision = form.get("decision").cloned().unwrap_or_default();
    let path = format!(
        "/api/admin/connectors/{}/{}/{}",
        encode(&name),
        encode(&version),
        encode(&decision)
    );
    let answer = api(&state, &b.user, Method::POST, &path, None).await;
    let done = if decision == "approve" {
        "approved"
    } else {
        "revoked"
    };
    after(
        &format!("/admin/connectors/{}/{}", encode(&name), encode(&version)),
        answer,
        &format!("{name}@{version} {done}."),
    )
}

/// `/admin/access`: users, groups and members, the grants matrix, tokens, sessions.
pub async fn access(
    State(state): State<AppState>,
    BrowserAdmin(b): BrowserAdmin,
    Query(flash): Query<Flash>,
) -> Response {
    let (users, groups, grants, tokens, sessions, sources, tables) = match tokio::try_join!(
        state.store.list_users(),
        state.store.list_groups(),
        state.store.list_grants(),
        state.store.list_tokens(None),
        state.store.list_sessions(),
        state.store.list_sources(),
        state.store.list_tables(None),
    ) {
        Ok(all) => all,
        Err(e) => return e.into_response(),
    };
    let granted = |group: &str, kind: &str, id: &str| {
        grants
            .iter()
            .any(|g| g.group == group && g.resource_type == kind && g.resource_id == id)
    };
    // one form for the whole matrix (its CSRF token once); each cell is a button of it
    let cell = |group: &str, kind: &str, id: &str| {
        let on = granted(group, kind, id);
        let action = if on { "revoke" } else { "grant" };
        html! {
            td.cell {
                button form="grants-form" name="cell" value={(action) "|" (kind) "|" (id) "|" (group)}
                    class=(if on { "on" } else { "off" }) type="submit"
                    title={(action) " " (kind) " " (id) " to " (group)} { (if on { "✓" } else { "·" }) }
            }
        }
    };
    page_response(layout(
        Some(&b),
        "/admin/access",
        "Access",
        &flash,
        html! {
            h2 { "Users" }
            table #users {
                thead { tr { th { "user" } th { "groups" } th { "created" } th { "status" } th { "password" } th {} } }
                tbody {
                    @for u in &users {
                        tr {
                            td { (u.name) } td { (u.groups.join(", ")) } td { (u.created_at) }
                            td { @if u.disabled_at.is_some() { (badge("disabled")) } @else { (badge("ok")) } }
                            td { form.inline method="post" action="/admin/access/password" {
                                (csrf(&b)) input type="hidden" name="user" value=(u.name);
                                input type="password" name="password" placeholder="new password (12+)" autocomplete="new-password";
                                button type="submit" { "Set" }
                            } }
                            td { @if u.disabled_at.is_none() { form.inline method="post" action="/admin/access/disable" {
                                (csrf(&b)) input type="hidden" name="user" value=(u.name);
                                button.danger type="submit" { "Disable" }
                            } } }
                        }
                    }
                }
            }
            form.card #new-user method="post" action="/admin/access/user" {
                (csrf(&b))
                label { "New user" input type="text" name="name" required; }
                label { "Groups (comma-separated)" input type="text" name="groups"; }
                label { "Password (optional, 12+ characters)" input type="password" name="password" autocomplete="new-password"; }
                button type="submit" { "Create user" }
            }
            h2 { "Groups" }
            table #groups {
                thead { tr { th { "group" } th { "members" } th {} } }
                tbody {
                    @for g in &groups {
                        tr {
                            td { (g.name) } td { (g.members.join(", ")) }
                            td { form.inline method="post" action="/admin/access/member" {
                                (csrf(&b)) input type="hidden" name="group" value=(g.name);
                                input type="text" name="user" placeholder="user";
                                button type="submit" { "Add member" }
                            } }
                        }
                    }
                }
            }
            form.inline method="post" action="/admin/access/group" {
                (csrf(&b)) input type="text" name="name" placeholder="new group" required;
                button type="submit" { "Create group" }
            }
            h2 #grants-matrix { "Grants" }
            p.hint { "A group granted a source reads all its tables; ✓ revokes, · grants." }
            @if tables.len() > MATRIX_TABLES {
                p.hint { (tables.len()) " tables: open a source to grant its tables one by one." }
            }
            form #grants-form method="post" action="/admin/access/cell" {
                (csrf(&b))
                @if let Some(source) = &flash.source { input type="hidden" name="source" value=(source); }
            }
            table.matrix #grants {
                thead { tr { th { "source / table" } @for g in &groups { th { (g.name) } } } }
                tbody {
                    @for s in &sources {
                        @let open = tables.len() <= MATRIX_TABLES || flash.source.as_deref() == Some(s.spec.name.as_str());
                        tr.source {
                            th { "source " (s.spec.name)
                                @if !open { " " a href={"/admin/access?source=" (encode(&s.spec.name)) "#grants-matrix"} { "tables…" } } }
                            @for g in &groups { (cell(&g.name, "source", &s.spec.name)) }
                        }
                        @if open {
                            @for t in tables.iter().filter(|t| t.source == s.spec.name) {
                                tr { th { code { (t.spec.name) } } @for g in &groups { (cell(&g.name, "table", &t.spec.name)) } }
                            }
                        }
                    }
                }
            }
            h2 { "Tokens" }
            table #tokens {
                thead { tr { th { "user" } th { "name" } th { "prefix" } th { "created" } th { "last used" } th { "state" } th {} } }
                tbody {
                    @for t in &tokens {
                        tr {
                            td { (t.user.clone().unwrap_or_default()) } td { (t.name) } td { code { (t.prefix) } } td { (t.created_at) }
                            td { (t.last_used_at.clone().unwrap_or_default()) }
                            td { @if t.revoked_at.is_some() { (badge("revoked")) } @else { (badge("ok")) } }
                            td { @if t.revoked_at.is_none() { form.inline method="post" action="/admin/access/revoke-token" {
                                (csrf(&b)) input type="hidden" name="id" value=(t.id);
                                button.danger type="submit" title={"revoke token " (t.prefix)} { "Revoke" }
                            } } }
                        }
                    }
                }
            }
            h2 { "Browser sessions" }
            table #sessions {
                thead { tr { th { "user" } th { "since" } th { "until" } th { "client" } th {} } }
                tbody {
                    @for s in &sessions {
                        tr {
                            td { (s.user) } td { (s.created_at) } td { (s.expires_at) } td { (s.client.clone().unwrap_or_default()) }
                            td { form.inline method="post" action="/admin/access/revoke-session" {
                                (csrf(&b)) input type="hidden" name="id" value=(s.id);
                                button.danger type="submit" { "End" }
                            } }
                        }
                    }
                }
            }
        },
    ))
}

pub async fn access_action(
    State(state): State<AppState>,
    Path(action): Path<String>,
    Posted {
        who: BrowserAdmin(b),
        form,
    }: Posted<BrowserAdmin>,
) -> Response {
    let f = |k: &str| form.get(k).cloned().unwrap_or_default();
    let back = match opt_field(&form, "source") {
        Some(source) => format!("/admin/access?source={}", encode(&source)),
        None => "/admin/access".to_string(),
    };
    let (method, path, body, ok) = match action.as_str() {
        "user" => {
            let groups: Vec<String> = f("groups")
                .split(',')
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty())
                .collect();
            let mut body = json!({"name": f("name"), "groups": groups});
            if let Some(p) = opt_field(&form, "password") {
                body["password"] = json!(p);
            }
            (
                Method::POST,
                "/api/admin/users".to_string(),
                Some(body),
                format!("User {} created.", f("name")),
            )
        }
        "disable" => (
            Method::POST,
            format!("/api/admin/users/{}/disable", encode(&f("user"))),
            None,
            format!("User {} disabled.", f("user")),
        ),
        "password" => (
            Method::PUT,
            format!("/api/admin/users/{}/password", encode(&f("user"))),
            Some(json!({"password": f("password")})),
            format!("Password of {} set.", f("user")),
        ),
        "group" => (
            Method::POST,
            "/api/admin/groups".to_string(),
            Some(json!({"name": f("name")})),
            format!("Group {} created.", f("name")),
        ),
        "member" => (
            Method::POST,
            format!("/api/admin/groups/{}/members", encode(&f("group"))),
            Some(json!({"user": f("user")})),
            format!("{} added to {}.", f("user"), f("group")),
        ),
        "cell" => {
            // `grant|table|orders|sales`: a button of the grants matrix
            let cell = f("cell");
            let parts: Vec<&str> = cell.splitn(4, '|').collect();
            let [decision, kind, id, group] = parts[..] else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            let body = json!({"group": group, "resource_type": kind, "resource_id": id});
            let (method, done) = match decision {
                "grant" => (Method::POST, "granted to"),
                "revoke" => (Method::DELETE, "revoked from"),
                _ => return StatusCode::BAD_REQUEST.into_response(),
            };
            (
                method,
                "/api/admin/grants".to_string(),
                Some(body),
                format!("{kind} {id} {done} {group}."),
            )
        }
        "revoke-token" => (
            Method::DELETE,
            format!("/api/tokens/{}", encode(&f("id"))),
            None,
            "Token revoked.".to_string(),
        ),
        "revoke-session" => (
            Method::DELETE,
            format!("/api/admin/web-sessions/{}", encode(&f("id"))),
            None,
            "Session ended.".to_string(),
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let answer = api(&state, &b.user, method, &path, body).await;
    after(&back, answer, &ok)
}

/// `/admin/audit`: the audit log, filtered by action and time.
pub async fn audit(
    State(state): State<AppState>,
    BrowserAdmin(b): BrowserAdmin,
    Query(flash): Query<Flash>,
) -> Response {
    let filter = AuditFilter {
        action: flash.action.clone().filter(|a| !a.is_empty()),
        since: flash.since.clone().filter(|s| !s.is_empty()),
        limit: flash.limit.unwrap_or(200).clamp(1, 5000),
    };
    let entries = match state.store.list_audit(&filter).await {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    page_response(layout(
        Some(&b),
        "/admin/audit",
        "Audit log",
        &Flash {
            ok: None,
            error: flash.error.clone(),
            ..Flash::default()
        },
        html! {
            form.inline method="get" action="/admin/audit" {
                input type="text" name="action" placeholder="action (e.g. source, connector.approve)" value=(flash.action.clone().unwrap_or_default());
                input type="text" name="since" placeholder="since YYYY-MM-DD" value=(flash.since.clone().unwrap_or_default());
                input type="number" name="limit" min="1" max="5000" value=(filter.limit);
                button type="submit" { "Filter" }
            }
            (audit_table(&entries))
        },
    ))
}

/// `/admin/metrics`: the business metrics analysts see with `agnes catalog --metrics`.
pub async fn metrics(
    State(state): State<AppState>,
    BrowserAdmin(b): BrowserAdmin,
    Query(flash): Query<Flash>,
) -> Response {
    let metrics = match state.store.list_metrics().await {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    page_response(layout(
        Some(&b),
        "/admin/metrics",
        "Metrics",
        &flash,
        html! {
            p.hint { "Import definitions with " code { "agnes admin metrics import DIR" } "; an analyst sees a metric when they may read its table." }
            table #metrics {
                thead { tr { th { "metric" } th { "category" } th { "type" } th { "table" } th { "SQL" } th {} } }
                tbody {
                    @for m in &metrics {
                        tr {
                            td { strong { (m.display_name) } br; code { (m.id) } @if let Some(d) = &m.description { p.hint { (d) } } }
                            td { (m.category) } td { (m.metric_type) @if let Some(u) = &m.unit { " (" (u) ")" } }
                            td { (m.table_name.clone().unwrap_or_default()) }
                            td { pre { (m.sql) } }
                            td { form.inline method="post" action="/admin/metrics" {
                                (csrf(&b)) input type="hidden" name="id" value=(m.id);
                                button.danger type="submit" { "Remove" }
                            } }
                        }
                    }
                }
            }
        },
    ))
}

pub async fn remove_metric(
    State(state): State<AppState>,
    Posted {
        who: BrowserAdmin(b),
        form,
    }: Posted<BrowserAdmin>,
) -> Response {
    let id = f_or(&form, "id");
    let path = format!("/api/admin/metrics/{}", encode(&id));
    let answer = api(&state, &b.user, Method::DELETE, &path, None).await;
    after("/admin/metrics", answer, &format!("Metric {id} removed."))
}

/// `/admin/marketplace`: the review queue (held plugins first), every plugin's state, the
/// registered marketplaces and the reviewers.
pub async fn marketplace(
    State(state): State<AppState>,
    BrowserAdmin(b): BrowserAdmin,
    Query(flash): Query<Flash>,
) -> Response {
    let (status, queue) = api(
        &state,
        &b.user,
        Method::GET,
        "/api/admin/marketplace/plugins",
        None,
    )
    .await;
    if !status.is_success() {
        return (status, axum::Json(queue)).into_response();
    }
    let marketplaces = match state.store.list_marketplaces().await {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let reviewers = match state.store.list_reviewers().await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let plugins = queue["plugins"].as_array().cloned().unwrap_or_default();
    let held = plugins
        .iter()
        .filter(|p| p["status"] == "pending" || p["status"] == "denied")
        .count();
    page_response(layout(
        Some(&b),
        "/admin/marketplace",
        "Plugin marketplace",
        &flash,
        html! {
            p.hint { "Register with " code { "agnes admin marketplace add NAME --url URL" } "; grant with " code { "agnes admin grant add GROUP --plugin NAME/PLUGIN" } ". A new plugin version is served once every reviewer allows it, or once approved here; until then the approved version stays served." }
            h2 { "Review queue (" (held) " held)" }
            table #plugins {
                thead { tr { th { "plugin" } th { "state" } th { "verdict" } th { "served" } th { "findings" } th { "why" } } }
                tbody {
                    @for p in &plugins {
                        @let findings: usize = p["reviews"].as_array().map(|r| r.iter().map(|r| r["findings"].as_array().map_or(0, Vec::len)).sum()).unwrap_or(0);
                        tr {
                            td { a href={"/admin/marketplace/" (encode(&text(&p["marketplace"]))) "/" (encode(&text(&p["name"])))} { (text(&p["marketplace"])) "/" (text(&p["name"])) } }
                            td { (badge(&text(&p["status"]))) @if p["disabled"] == true { " " (badge("disabled")) } }
                            td { (text(&p["verdict"])) }
                            td { @if p["served"] == true { (text(&p["approved_version"])) } @else { "—" } }
                            td { (findings) }
                            td { (text(&p["reason"])) }
                        }
                    }
                }
            }
            h2 { "Marketplaces" }
            table #marketplaces {
                thead { tr { th { "name" } th { "url" } th { "ref" } th { "commit" } th { "synced" } th { "last error" } } }
                tbody {
                    @for m in &marketplaces {
                        tr {
                            td { (m.spec.name) }
                            td { code { (m.spec.url) } }
                            td { (m.spec.git_ref.clone().unwrap_or_default()) }
                            td { code { (m.commit.as_deref().unwrap_or("").chars().take(12).collect::<String>()) } }
                            td { (m.synced_at.clone().unwrap_or_default()) }
                            td { (m.error.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
            h2 { "Reviewers" }
            @if reviewers.iter().all(|r| !r.enabled) { p.flash.error { "No reviewer is enabled: every new plugin version waits for an admin. Upload one with " code { "agnes admin reviewer upload" } "." } }
            table #reviewers {
                thead { tr { th { "reviewer" } th { "enabled" } th { "digest" } th { "signer" } th { "imports" } } }
                tbody {
                    @for r in &reviewers {
                        tr {
                            td { (r.name) "@" (r.version) }
                            td { @if r.enabled { (badge("approved")) } @else { (badge("disabled")) } }
                            td { code { (r.digest.chars().take(19).collect::<String>()) "…" } }
                            td { (r.key_id) }
                            td { (r.imports.join(", ")) }
                        }
                    }
                }
            }
        },
    ))
}

/// One plugin: the reviews of its newest bundle with every finding, the files changed since
/// the approved version, and the admin's decision.
pub async fn marketplace_plugin(
    State(state): State<AppState>,
    BrowserAdmin(b): BrowserAdmin,
    Path((mp, name)): Path<(String, String)>,
    Query(flash): Query<Flash>,
) -> Response {
    let path = format!(
        "/api/admin/marketplace/plugins/{}/{}",
        encode(&mp),
        encode(&name)
    );
    let (status, v) = api(&state, &b.user, Method::GET, &path, None).await;
    if !status.is_success() {
        return (status, axum::Json(v)).into_response();
    }
    let p = &v["plugin"];
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    page_response(layout(
        Some(&b),
        "/admin/marketplace",
        &format!("Plugin {mp}/{name}"),
        &flash,
        html! {
            dl.spec {
                dt { "state" } dd #status { (badge(&text(&p["status"]))) @if p["disabled"] == true { " " (badge("disabled")) } " " (text(&p["reason"])) }
                dt { "verdict" } dd { (text(&p["verdict"])) }
                dt { "newest version" } dd { (text(&p["version"])) " " code { (text(&p["bundle"])) } }
                dt { "served" } dd { @if p["approved"].is_null() { "nothing" } @else { (text(&p["approved_version"])) " " code { (text(&p["approved"])) } } }
                dt { "decided" } dd { (text(&p["decided_by"])) " " (text(&p["decided_at"])) }
            }
            h2 { "Decision" }
            form.inline method="post" action={"/admin/marketplace/" (encode(&mp)) "/" (encode(&name))} {
                (csrf(&b))
                button #approve name="decision" value="approve" type="submit" { "Approve and serve" }
                button.danger #reject name="decision" value="reject" type="submit" { "Reject" }
                @if p["disabled"] == true {
                    button #enable name="decision" value="enable" type="submit" { "Enable" }
                } @else {
                    button.danger #disable name="decision" value="disable" type="submit" { "Disable" }
                }
            }
            h2 { "Changes since the served version" }
            @let changes = list(&v["changes_since_approved"]);
            @if changes.is_empty() { p.hint { "none" } }
            ul.diff #changes { @for c in &changes { @let c = text(c); li class=(if c.starts_with('+') { "added" } else if c.starts_with('-') { "removed" } else { "" }) { (c) } } }
            h2 { "Reviews" }
            @for r in list(&v["reviews"]) {
                h3 { (text(&r["reviewer"])) ": " (badge(&text(&r["verdict"]))) @if r["millis"].as_u64().unwrap_or(0) == 0 { " in under 1 ms" } @else { " in " (text(&r["millis"])) " ms" } }
                @if !r["failure"].is_null() { p.flash.error { "The review failed (a failure is a flag): " (text(&r["failure"])) } }
                table.findings {
                    thead { tr { th { "severity" } th { "rule" } th { "finding" } th { "where" } } }
                    tbody {
                        @for f in list(&r["findings"]) {
                            tr {
                                td { (text(&f["severity"])) }
                                td { code { (text(&f["rule"])) } }
                                td { strong { (text(&f["title"])) } br; (text(&f["detail"])) }
                                td { @for s in list(&f["spans"]) { code { (text(&s["path"])) ":" (text(&s["start"])) } " " } }
                            }
                        }
                    }
                }
            }
            h2 { "Files" }
            table #files {
                thead { tr { th { "path" } th { "size" } th { "sha256" } } }
                tbody {
                    @for f in list(&v["files"]) {
                        tr {
                            td { code { (text(&f["path"])) } @if f["executable"] == true { " (executable)" } }
                            td { (bytes(f["size"].as_i64().unwrap_or(0))) }
                            td { code { (text(&f["sha256"]).chars().take(16).collect::<String>()) "…" } }
                        }
                    }
                }
            }
        },
    ))
}

pub async fn decide_plugin(
    State(state): State<AppState>,
    Path((mp, name)): Path<(String, String)>,
    Posted {
        who: BrowserAdmin(b),
        form,
    }: Posted<BrowserAdmin>,
) -> Response {
    let decision = form.get("decision").cloned().unwrap_or_default();
    let path = format!(
        "/api/admin/marketplace/plugins/{}/{}/{}",
        encode(&mp),
        encode(&name),
        encode(&decision)
    );
    let answer = api(&state, &b.user, Method::POST, &path, None).await;
    after(
        &format!("/admin/marketplace/{}/{}", encode(&mp), encode(&name)),
        answer,
        &format!("{mp}/{name}: {decision} done."),
    )
}
