//! The plugin marketplace.
//!
//! Analysts (any authenticated caller; HTTP Basic with the token as the password works too,
//! for git): `GET /marketplace.zip`, `GET /marketplace/info`, and the read-only git
//! repository `/marketplace.git/` (smart HTTP, upload-pack only) — each the approved,
//! enabled plugins granted to one of the caller's groups.
//!
//! Admins: `/api/admin/marketplaces` (register, update, remove, sync),
//! `/api/admin/marketplace/plugins` (the review queue; approve, reject, disable, enable) and
//! `/api/admin/reviewers` (signed reviewer components).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{AdminUser, AuthUser};
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult};
use crate::marketplace::{
    Marketplace, MarketplaceSpec, Plugin, ReviewerInfo, review, serve, status, sync,
    validate_marketplace_name,
};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/marketplace.zip", get(zip))
        .route("/marketplace/info", get(info))
        .route(
            "/marketplace.git/{*rest}",
            get(git)
                .post(git)
                .layer(DefaultBodyLimit::max(serve::MAX_GIT_BODY)),
        )
        .route("/api/admin/marketplaces", get(list).post(create))
        .route(
            "/api/admin/marketplaces/{name}",
            get(show).put(update).delete(remove),
        )
        .route("/api/admin/marketplaces/{name}/sync", post(sync_now))
        .route("/api/admin/marketplace/plugins", get(queue))
        .route(
            "/api/admin/marketplace/plugins/{marketplace}/{plugin}",
            get(plugin_detail),
        )
        .route(
            "/api/admin/marketplace/plugins/{marketplace}/{plugin}/{decision}",
            post(decide),
        )
        .route(
            "/api/admin/reviewers",
            get(list_reviewers)
                .post(upload_reviewer)
                .layer(DefaultBodyLimit::max(128 << 20)),
        )
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|t| {
                t.trim().trim_start_matches("W/").trim_matches('"') == etag || t.trim() == "*"
            })
        })
}

/// The caller's marketplace as a zip: `.claude-plugin/marketplace.json` and
/// `plugins/<marketplace>-<plugin>/...`; ETag = the view's hash, `If-None-Match` → 304.
async fn zip(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let view = serve::view(&state, &user.0).await?;
    let etag = view.etag.clone();
    if etag_matches(&headers, &etag) {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, format!("\"{etag}\""))],
        )
            .into_response());
    }
    let path = serve::zip(&state, view).await?;
    let bytes = tokio::fs::read(&path).await.map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (header::ETAG, format!("\"{etag}\"")),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}-marketplace.zip\"",
                    state.config.marketplace.name
                ),
            ),
            (header::CACHE_CONTROL, "private, no-cache".into()),
        ],
        bytes,
    )
        .into_response())
}

/// What the caller is served: plugins (name, version, description, bundle digest, the
/// reviewers' verdict) and the ETag, plus the URLs to register.
async fn info(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let view = serve::view(&state, &user.0).await?;
    let reviews = state.store.list_reviews().await?;
    let plugins: Vec<Value> = view
        .plugins
        .iter()
        .map(|s| {
            let verdicts: Vec<Value> = reviews
                .iter()
                .filter(|r| r.bundle == s.digest)
                .map(|r| json!({"reviewer": r.reviewer, "verdict": r.verdict, "findings": r.findings.len()}))
                .collect();
            json!({
                "name": s.entry,
                "marketplace": s.plugin.marketplace,
                "plugin": s.plugin.name,
                "directory": format!("plugins/{}", s.dir),
                "version": s.plugin.approved_version,
                "description": s.plugin.description,
                "bundle": s.digest,
                "approved_by": s.plugin.decided_by,
                "reviews": verdicts,
                "update_held": s.plugin.bundle != s.plugin.approved,
            })
        })
        .collect();
    let base = public_base(&state, &headers);
    Ok(Json(json!({
        "name": state.config.marketplace.name,
        "etag": view.etag,
        "plugins": plugins,
        "zip_url": format!("{base}/marketplace.zip"),
        "git_url": format!("{base}/marketplace.git"),
    })))
}

/// `scheme://host` the client reached this server at.
pub(crate) fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:-[]".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| state.config.listen.to_string());
    let scheme = if state.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

/// Git smart HTTP over the caller's view, read-only.
async fn git(
    State(state): State<AppState>,
    user: Result<AuthUser, ApiError>,
    method: Method,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = match user {
        Ok(u) => u,
        Err(e @ ApiError::Unauthorized(_)) => {
            let mut r = e.into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"agnes marketplace\""),
            );
            return r;
        }
        Err(e) => return e.into_response(),
    };
    let rest = rest.trim_start_matches('/');
    let query = query.unwrap_or_default();
    let allowed = match (method.as_str(), rest) {
        ("GET", "info/refs") => query.split('&').any(|kv| kv == "service=git-upload-pack"),
        ("POST", "git-upload-pack") => true,
        _ => false,
    };
    if !allowed {
        return ApiError::NotFound(
            "this repository is read-only and speaks smart HTTP only: clone or fetch it".into(),
        )
        .into_response();
    }
    let result = async {
        let view = serve::view(&state, &user.0).await?;
        let repo = serve::repository(&state, view).await?;
        serve::http_backend(
            &state,
            &repo,
            method.as_str(),
            rest,
            &query,
            &headers,
            body.to_vec(),
        )
        .await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn list(State(state): State<AppState>, _admin: AdminUser) -> ApiResult<Json<Value>> {
    let plugins = state.store.list_plugins().await?;
    let marketplaces: Vec<Value> = state
        .store
        .list_marketplaces()
        .await?
        .into_iter()
        .map(|m| {
            let mine: Vec<&Plugin> = plugins
                .iter()
                .filter(|p| p.marketplace == m.spec.name)
                .collect();
            let mut v = serde_json::to_value(&m).unwrap_or_default();
            v["plugins"] = json!(mine.len());
            v["served"] = json!(
                mine.iter()
                    .filter(|p| p.approved.is_some() && !p.disabled)
                    .count()
            );
            v["held"] = json!(
                mine.iter()
                    .filter(|p| [status::PENDING, status::DENIED].contains(&p.status.as_str()))
                    .count()
            );
            v
        })
        .collect();
    Ok(Json(json!({ "marketplaces": marketplaces })))
}

async fn find(state: &AppState, name: &str) -> ApiResult<Marketplace> {
    state
        .store
        .list_marketplaces()
        .await?
        .into_iter()
        .find(|m| m.spec.name == name)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no marketplace `{name}`; see `agnes admin marketplace list`"
            ))
        })
}

fn check_spec(spec: &MarketplaceSpec) -> ApiResult<()> {
    validate_marketplace_name(&spec.name)?;
    if spec.url.is_empty() || spec.url.len() > 2048 || spec.url.chars().any(char::is_control) {
        return Err(ApiError::BadRequest("url must be a URL".into()));
    }
    let scheme = spec
        .url
        .split_once("://")
        .map_or("", |(s, _)| s)
        .to_ascii_lowercase();
    if !["https", "http", "file"].contains(&scheme.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "url: scheme `{}` is not allowed; use https:// (or file:// where the server allows it)",
            agnes_runtime::names::shown(&scheme)
        )));
    }
    let authority = spec
        .url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    if authority.contains('@') {
        // refused before it is stored: a password in a URL would end up in the state and the audit log
        return Err(ApiError::BadRequest(
            "url: put credentials in `token` (a secret reference), not in the URL".into(),
        ));
    }
    if let Some(s) = &spec.schedule {
        crate::store::parse_schedule(s).map_err(ApiError::BadRequest)?;
    }
    if let Some(t) = &spec.token
        && t.env.is_some() == t.file.is_some()
    {
        return Err(ApiError::BadRequest(
            "token: give exactly one of `env` or `file`".into(),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    #[serde(flatten)]
    spec: MarketplaceSpec,
    /// Fetch it now (default true).
    #[serde(default)]
    sync: Option<bool>,
}

async fn create(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiJson(body): ApiJson<Create>,
) -> ApiResult<Response> {
    check_spec(&body.spec)?;
    if find(&state, &body.spec.name).await.is_ok() {
        return Err(ApiError::Conflict(format!(
            "marketplace `{}` exists",
            body.spec.name
        )));
    }
    let m = Marketplace {
        spec: body.spec.clone(),
        created_at: crate::db::now(),
        created_by: admin.0.name.clone(),
        synced_at: None,
        commit: None,
        error: None,
        last_attempt_at: None,
    };
    state.store.put_marketplace(&m).await?;
    super::audit(
        &state,
        &admin.0,
        "marketplace.create",
        Some(m.spec.name.clone()),
        Some(m.spec.url.clone()),
    )
    .await;
    let report = if body.sync.unwrap_or(true) {
        Some(sync_report(&state, &admin, &m.spec.name).await)
    } else {
        None
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({"marketplace": m.spec, "sync": report})),
    )
        .into_response())
}

async fn sync_report(state: &AppState, admin: &AdminUser, name: &str) -> Value {
    let outcome = sync::sync(state, name).await;
    let detail = match &outcome {
        Ok(r) => format!(
            "commit {}; {} plugins, {} removed",
            r.commit,
            r.plugins.len(),
            r.removed.len()
        ),
        Err(e) => format!("failed: {}", e.detail()),
    };
    super::audit(
        state,
        &admin.0,
        "marketplace.sync",
        Some(name.to_string()),
        Some(detail),
    )
    .await;
    match outcome {
        Ok(r) => json!({"ok": true, "report": r}),
        Err(e) => json!({"ok": false, "error": e.detail()}),
    }
}

async fn show(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let m = find(&state, &name).await?;
    let plugins: Vec<Plugin> = state
        .store
        .list_plugins()
        .await?
        .into_iter()
        .filter(|p| p.marketplace == name)
        .collect();
    Ok(Json(json!({"marketplace": m, "plugins": plugins})))
}

async fn update(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(name): Path<String>,
    ApiJson(spec): ApiJson<MarketplaceSpec>,
) -> ApiResult<Json<Value>> {
    if spec.name != name {
        return Err(ApiError::BadRequest(
            "a marketplace cannot be renamed".into(),
        ));
    }
    check_spec(&spec)?;
    let mut m = find(&state, &name).await?;
    m.spec = spec;
    state.store.put_marketplace(&m).await?;
    let body = json!({"marketplace": m.spec});
    Ok(super::admin::changed(
        &state,
        &admin,
        false,
        "marketplace.update",
        name,
        None,
        body,
    )
    .await)
}

async fn remove(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    find(&state, &name).await?;
    state.store.delete_marketplace(&name).await?;
    let body = json!({"removed": name});
    Ok(super::admin::changed(
        &state,
        &admin,
        false,
        "marketplace.delete",
        name,
        None,
        body,
    )
    .await)
}

/// Fetches it now; 200 with the report, or 422 with the reason (the previous plugins keep
/// being served).
async fn sync_now(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    find(&state, &name).await?;
    let report = sync_report(&state, &admin, &name).await;
    let code = if report["ok"] == true {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((code, Json(report)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueQuery {
    status: Option<String>,
    marketplace: Option<String>,
}

/// Every plugin (or those of one status / marketplace), held ones first, each with the
/// reviews of its newest bundle.
async fn queue(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiQuery(q): ApiQuery<QueueQuery>,
) -> ApiResult<Json<Value>> {
    let reviews = state.store.list_reviews().await?;
    let mut plugins: Vec<Plugin> = state
        .store
        .list_plugins()
        .await?
        .into_iter()
        .filter(|p| q.status.as_deref().is_none_or(|s| p.status == s))
        .filter(|p| q.marketplace.as_deref().is_none_or(|m| p.marketplace == m))
        .collect();
    let held = |p: &Plugin| ![status::PENDING, status::DENIED].contains(&p.status.as_str());
    plugins.sort_by_key(|p| (held(p), p.id()));
    let out: Vec<Value> = plugins
        .iter()
        .map(|p| {
            let mut v = serde_json::to_value(p).unwrap_or_default();
            v["served"] = json!(p.approved.is_some() && !p.disabled);
            v["reviews"] = json!(
                reviews
                    .iter()
                    .filter(|r| p.bundle.as_deref() == Some(&r.bundle))
                    .collect::<Vec<_>>()
            );
            v
        })
        .collect();
    Ok(Json(json!({"plugins": out})))
}

async fn find_plugin(state: &AppState, mp: &str, name: &str) -> ApiResult<Plugin> {
    state
        .store
        .list_plugins()
        .await?
        .into_iter()
        .find(|p| p.marketplace == mp && p.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no plugin `{name}` in marketplace `{mp}`")))
}

/// One plugin: its record, the reviews of its newest bundle, and which files changed
/// against the approved bundle.
async fn plugin_detail(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path((mp, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let p = find_plugin(&state, &mp, &name).await?;
    let reviews: Vec<_> = state
        .store
        .list_reviews()
        .await?
        .into_iter()
        .filter(|r| p.bundle.as_deref() == Some(&r.bundle))
        .collect();
    let data_dir = state.config.data_dir.clone();
    let files = |d: &Option<String>| {
        d.as_deref()
            .and_then(|d| crate::marketplace::bundle::open(&data_dir, d).ok())
            .map(|b| b.files)
            .unwrap_or_default()
    };
    let (now, before) = (files(&p.bundle), files(&p.approved));
    let mut changes = Vec::new();
    for f in &now {
        match before.iter().find(|b| b.path == f.path) {
            None => changes.push(format!("+ {}", f.path)),
            Some(b) if b != f => changes.push(format!("~ {}", f.path)),
            _ => {}
        }
    }
    for b in &before {
        if !now.iter().any(|f| f.path == b.path) {
            changes.push(format!("- {}", b.path));
        }
    }
    Ok(Json(
        json!({"plugin": p, "reviews": reviews, "files": now, "changes_since_approved": changes}),
    ))
}

/// `approve` (serve the newest bundle), `reject` (hold it; the approved one stays),
/// `disable` / `enable` (stop / resume serving the plugin at all). Audited with the
/// combined verdict and the number of findings the admin overrode.
async fn decide(
    State(state): State<AppState>,
    admin: AdminUser,
    Path((mp, name, decision)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let mut p = find_plugin(&state, &mp, &name).await?;
    let now = crate::db::now();
    let action = match decision.as_str() {
        "approve" => {
            let bundle = p.bundle.clone().ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "plugin `{}` was refused at sync ({}): there is nothing to approve",
                    p.id(),
                    p.reason.clone().unwrap_or_default()
                ))
            })?;
            if p.status == status::REFUSED {
                return Err(ApiError::BadRequest(format!(
                    "plugin `{}` was refused at sync: {}",
                    p.id(),
                    p.reason.clone().unwrap_or_default()
                )));
            }
            p.approved = Some(bundle);
            p.approved_version = p.version.clone();
            p.status = status::APPROVED.into();
            p.reason = None;
            "marketplace.plugin.approve"
        }
        "reject" => {
            if p.status == status::APPROVED && p.approved == p.bundle {
                // rejecting what is served stops serving it
                p.approved = None;
                p.approved_version = None;
            }
            p.status = status::REJECTED.into();
            p.reason = Some(format!("rejected by {}", admin.0.name));
            "marketplace.plugin.reject"
        }
        "disable" => {
            p.disabled = true;
            "marketplace.plugin.disable"
        }
        "enable" => {
            p.disabled = false;
            "marketplace.plugin.enable"
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "no action `{other}`: approve, reject, disable or enable"
            )));
        }
    };
    if matches!(decision.as_str(), "approve" | "reject") {
        p.decided_at = Some(now);
        p.decided_by = Some(admin.0.name.clone());
    }
    state.store.put_plugin(&p).await?;
    let detail = format!(
        "bundle {} verdict {}",
        p.bundle.as_deref().unwrap_or("-"),
        p.verdict.as_deref().unwrap_or("-")
    );
    let body = json!({"plugin": p});
    Ok(super::admin::changed(
        &state,
        &admin,
        false,
        action,
        format!("{mp}/{name}"),
        Some(detail),
        body,
    )
    .await)
}

async fn list_reviewers(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({"reviewers": state.store.list_reviewers().await?}),
    ))
}

/// A signed reviewer component: `{component_base64, manifest, signature}` like a connector
/// upload (its manifest has a name and a version and requests nothing). Refused unless it
/// exports `agnes:hook/review@0.1.0` and imports nothing beyond the hook's bundle and
/// WASI's harmless interfaces (no sockets, no HTTP). It becomes the enabled version of its
/// name, and every plugin is reviewed by it.
async fn upload_reviewer(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiJson(up): ApiJson<super::connectors::Upload>,
) -> ApiResult<Json<Value>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(up.component_base64.as_bytes())
        .map_err(|e| ApiError::BadRequest(format!("component_base64: {e}")))?;
    let runtime = state.runtime.clone();
    let s = super::connectors::store_signed_upload(
        &state,
        "reviewers",
        "reviewer.toml",
        bytes,
        up.manifest,
        up.signature,
        move |component, manifest| {
            if manifest.requests != Default::default() {
                return Err(ApiError::BadRequest(
                    "a reviewer requests nothing: remove [requests] from its manifest".into(),
                ));
            }
            runtime
                .check_reviewer(component)
                .map_err(|e| ApiError::BadRequest(e.to_string()))
        },
    )
    .await?;
    let imports: std::collections::BTreeSet<String> = s
        .surface
        .imports
        .iter()
        .map(|i| i.split('#').next().unwrap_or(i).to_string())
        .collect();
    for mut older in state.store.list_reviewers().await? {
        if older.name == s.manifest.name && older.enabled {
            older.enabled = false;
            state.store.put_reviewer(&older).await?;
        }
    }
    let info = ReviewerInfo {
        name: s.manifest.name.clone(),
        version: s.manifest.version.clone(),
        digest: s.digest.clone(),
        key_id: s.key_id.clone(),
        imports: imports.into_iter().collect(),
        uploaded_at: crate::db::now(),
        uploaded_by: admin.0.name.clone(),
        enabled: true,
    };
    state.store.put_reviewer(&info).await?;
    let reviewed = review::settle_all(&state).await?;
    let body = json!({"reviewer": info, "plugins_reviewed": reviewed});
    Ok(super::admin::changed(
        &state,
        &admin,
        false,
        "reviewer.upload",
        format!("{}@{}", info.name, info.version),
        Some(info.digest.clone()),
        body,
    )
    .await)
}
