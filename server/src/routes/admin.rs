//! `/api/admin/...`: registry, users, groups, members, grants, audit log. Admins only.

use axum::extract::{Path, State};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::AuthUser;
use crate::db::registry::{self, TableRegistration};
use crate::db::{access, audit};
use crate::error::{ApiJson, ApiQuery, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/register-table", post(register))
        .route("/api/admin/registry", get(list_registry))
        .route("/api/admin/registry/{name}", put(update).delete(unregister))
        .route("/api/admin/users", post(create_user))
        .route("/api/admin/groups", get(list_groups).post(create_group))
        .route("/api/admin/groups/{group}/members", post(add_member))
        .route(
            "/api/admin/groups/{group}/members/{user}",
            delete(remove_member),
        )
        .route("/api/admin/grants", post(grant).delete(revoke))
        .route("/api/admin/audit", get(audit_log))
}

/// A registration is refused unless its connector verifies now (or the server allows
/// unsigned connectors, in which case it is only compiled).
async fn check_signed(state: &AppState, t: &TableRegistration) -> ApiResult<()> {
    let dir = state.config.trusted_keys.clone();
    let allow = state.config.allow_unsigned_connectors;
    if dir.is_none() && allow {
        return Ok(());
    }
    let (t, runtime) = (t.clone(), state.runtime.clone());
    tokio::task::spawn_blocking(move || t.load(&runtime, dir.as_deref(), allow).map(|_| ()))
        .await
        .map_err(crate::error::ApiError::internal)?
        .map_err(|e| crate::error::ApiError::BadRequest(e.to_string()))
}

async fn register(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(mut t): ApiJson<TableRegistration>,
) -> ApiResult<Json<Value>> {
    user.0.require_admin()?;
    t.resolve_uploaded(&state.config.data_dir)?;
    t.validate()?;
    check_signed(&state, &t).await?;
    let name = t.name.clone();
    state
        .db
        .call(move |c| registry::upsert(c, &t, false))
        .await?;
    super::audit(&state, &user, "registry.register", Some(name.clone()), None).await;
    Ok(Json(json!({"registered": name})))
}

async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
    ApiJson(mut t): ApiJson<TableRegistration>,
) -> ApiResult<Json<Value>> {
    user.0.require_admin()?;
    t.resolve_uploaded(&state.config.data_dir)?;
    t.validate()?;
    check_signed(&state, &t).await?;
    if t.name != name {
        return Err(crate::error::ApiError::BadRequest(format!(
            "body names `{}` but the path names `{name}`",
            t.name
        )));
    }
    state
        .db
        .call(move |c| registry::upsert(c, &t, true))
        .await?;
    super::audit(&state, &user, "registry.update", Some(name.clone()), None).await;
    Ok(Json(json!({"updated": name})))
}

async fn unregister(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    user.0.require_admin()?;
    let n = name.clone();
    state.db.call(move |c| registry::delete(c, &n)).await?;
    super::audit(&state, &user, "registry.delete", Some(name.clone()), None).await;
    Ok(Json(json!({"deleted": name})))
}

async fn list_registry(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Value>> {
    user.0.require_admin()?;
    let tables = state.db.call(registry::list).await?;
    Ok(Json(json!({"tables": tables})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    #[serde(default)]
    groups: Vec<String>,
    expires_in_days: Option<u32>,
}

/// Creates a user with a first token (returned once).
async fn create_user(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<NewUser>,
) -> ApiResult<Json<Value>> {
    user.0.require_admin()?;
    let name = req.name.clone();
    let (id, info, token) = state
        .db
        .call(move |c| {
            let id = access::create_user(c, &req.name)?;
            for g in &req.groups {
                access::add_member(c, g, &req.name)?;
            }
            let (info, token) = access::create_token(c, &id, "default", req.expires_in_days)?;
            Ok((id, info, token))
        })
        .await?;
    state.auth_cache.clear();
    super::audit(&state, &user, "user.create", Some(name.clone()), None).await;
    Ok(Json(
        json!({"id": id, "name": name, "token": token, "token_info": info}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    name: String,
}

async fn create_group(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<NewGroup>,
) -> ApiResult<Json<Value>> {
    user.0.require_admin()?;
    let name = req.name.clone();
    state
        .db
        .call(move |c| access::create_group(c, &req.name))
        .await?;
    super::audit(&state, &user, "group.create", Some(name.clone()), None).await;
    Ok(Json(json!({"created": name})))
}

async fn list_groups(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Value>> {
    user.0.require_admin()?;
    let groups = state.db.call(access::list_groups).await?;
    Ok(Json(json!({"groups": groups})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Member {
    user: String,
}

async fn add_member(
    State(state): State<AppState>,
    user: AuthUser,
    Path(group): Path<String>,
    ApiJson(m): ApiJson<Member>,
) -> ApiResult<Json<Value>> {
    user.0.require_admin()?;
    let (g, u) = (group.clone(), m.user.clone());
    state
        .db
        .call(move |c| access::add_member(c, &g, &u))
        .await?;
    state.auth_cache.clear();
    super::audit(&state, &user, "group.add_member", Some(group), Some(m.user)).await;
    Ok(Json(json!({"ok": true})))
}

async fn remove_member(
    State(state): State<AppState>,
    user: AuthUser,
    Path((group, member)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    user.0.require_admin()?;
    let (g, u) = (group.clone(), member.clone());
    state
        .db
        .call(move |c| access::remove_member(c, &g, &u))
        .await?;
    state.auth_cache.clear();
    super::audit(
        &state,
        &user,
        "group.remove_member",
        Some(group),
        Some(member),
    )
    .await;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct GrantReq {
    group: String,
    resource_type: String,
    resource_id: String,
}

type GrantFn = fn(&duckdb::Connection, &str, &str, &str) -> ApiResult<()>;

/// Applies a grant change, clears the auth cache, records it.
async fn change_grant(
    state: AppState,
    user: AuthUser,
    g: GrantReq,
    apply: GrantFn,
    action: &'static str,
) -> ApiResult<()> {
    user.0.require_admin()?;
    let r = g.clone();
    state
        .db
        .call(move |c| apply(c, &r.group, &r.resource_type, &r.resource_id))
        .await?;
    state.auth_cache.clear();
    super::audit(
        &state,
        &user,
        action,
        Some(format!("{}:{}", g.resource_type, g.resource_id)),
        Some(g.group),
    )
    .await;
    Ok(())
}

async fn grant(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(g): ApiJson<GrantReq>,
) -> ApiResult<Json<Value>> {
    change_grant(state, user, g, access::grant, "grant.create").await?;
    Ok(Json(json!({"granted": true})))
}

async fn revoke(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(g): ApiJson<GrantReq>,
) -> ApiResult<Json<Value>> {
    change_grant(state, user, g, access::revoke_grant, "grant.revoke").await?;
    Ok(Json(json!({"revoked": true})))
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn audit_log(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Value>> {
    user.0.require_admin()?;
    let limit = q.limit.unwrap_or(100).min(10_000);
    let entries = state.db.call(move |c| audit::list(c, limit)).await?;
    Ok(Json(json!({"entries": entries})))
}
