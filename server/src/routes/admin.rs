//! `/api/admin/...`: users, groups, members, grants, every token, the audit log. Admins
//! only: the [`AdminUser`] extractor answers 403 before any body is parsed.
//! Sources and tables are in [`super::sources`], the original Agnes registry shape in
//! [`super::registry`], connector uploads in [`super::connectors`].

use axum::extract::{Path, State};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::AdminUser;
use crate::error::{ApiJson, ApiQuery, ApiResult};
use crate::state::AppState;
use crate::store::AuditFilter;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/users", get(list_users).post(create_user))
        .route("/api/admin/users/{name}/disable", post(disable_user))
        .route("/api/admin/users/{name}/password", put(set_password))
        .route("/api/admin/web-sessions", get(list_sessions))
        .route("/api/admin/web-sessions/{id}", delete(revoke_session))
        .route("/api/admin/groups", get(list_groups).post(create_group))
        .route("/api/admin/groups/{group}", delete(delete_group))
        .route("/api/admin/groups/{group}/members", post(add_member))
        .route(
            "/api/admin/groups/{group}/members/{user}",
            delete(remove_member),
        )
        .route(
            "/api/admin/grants",
            get(list_grants).post(grant).delete(revoke),
        )
        .route("/api/admin/tokens", get(list_tokens))
        .route("/api/admin/audit", get(audit_log))
}

/// Ends an admin change: forgets cached principals (when access changed), records the
/// audit entry, answers `body`.
pub(crate) async fn changed(
    state: &AppState,
    admin: &AdminUser,
    access_changed: bool,
    action: &'static str,
    resource: impl Into<String>,
    detail: Option<String>,
    body: Value,
) -> Json<Value> {
    if access_changed {
        state.access_changed().await;
    }
    super::audit(state, &admin.0, action, Some(resource.into()), detail).await;
    Json(body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    #[serde(default)]
    groups: Vec<String>,
    expires_in_days: Option<u32>,
    /// For browser sign-in (argon2id-hashed; never returned).
    password: Option<String>,
}

/// Creates a user with a first token (returned once).
async fn create_user(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiJson(req): ApiJson<NewUser>,
) -> ApiResult<Json<Value>> {
    let hash = match &req.password {
        Some(p) => Some(hash_password(p.clone()).await?),
        None => None,
    };
    let (id, info, token) = state
        .store
        .create_user(&req.name, &req.groups, req.expires_in_days)
        .await?;
    if let Some(hash) = hash {
        state.store.set_password(&req.name, &hash).await?;
    }
    let body = json!({"id": id, "name": req.name, "groups": req.groups, "token": token, "token_info": info});
    Ok(changed(&state, &admin, true, "user.create", req.name, None, body).await)
}

async fn list_users(State(state): State<AppState>, _admin: AdminUser) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"users": state.store.list_users().await?})))
}

async fn disable_user(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    if name == admin.0.name {
        return Err(crate::error::ApiError::BadRequest(
            "you cannot disable yourself; ask another admin".into(),
        ));
    }
    state.store.disable_user(&name).await?;
    let body = json!({"disabled": name});
    Ok(changed(&state, &admin, true, "user.disable", name, None, body).await)
}

/// argon2id on a blocking thread (tens of milliseconds of CPU by design).
async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || crate::password::hash(&password))
        .await
        .map_err(crate::error::ApiError::internal)?
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

/// Sets a user's password for browser sign-in; their existing browser sessions end.
async fn set_password(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<NewPassword>,
) -> ApiResult<Json<Value>> {
    let hash = hash_password(req.password).await?;
    state.store.set_password(&name, &hash).await?;
    let body = json!({"user": name, "password_set": true});
    Ok(changed(&state, &admin, true, "user.password", name, None, body).await)
}

async fn list_sessions(State(state): State<AppState>, _admin: AdminUser) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({"sessions": state.store.list_sessions().await?}),
    ))
}

async fn revoke_session(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let revoked = state.store.revoke_session(&id).await?;
    if revoked == 0 {
        return Err(crate::error::ApiError::NotFound(format!(
            "no live browser session `{id}`"
        )));
    }
    let body = json!({"revoked": revoked});
    Ok(changed(&state, &admin, false, "session.revoke", id, None, body).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    name: String,
}

async fn create_group(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiJson(req): ApiJson<NewGroup>,
) -> ApiResult<Json<Value>> {
    state.store.create_group(&req.name).await?;
    let body = json!({"created": req.name});
    Ok(changed(&state, &admin, false, "group.create", req.name, None, body).await)
}

async fn delete_group(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(group): Path<String>,
) -> ApiResult<Json<Value>> {
    state.store.delete_group(&group).await?;
    let body = json!({"deleted": group});
    Ok(changed(&state, &admin, true, "group.delete", group, None, body).await)
}

async fn list_groups(State(state): State<AppState>, _admin: AdminUser) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"groups": state.store.list_groups().await?})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Member {
    user: String,
}

async fn add_member(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(group): Path<String>,
    ApiJson(m): ApiJson<Member>,
) -> ApiResult<Json<Value>> {
    state.store.add_member(&group, &m.user).await?;
    let body = json!({"ok": true});
    Ok(changed(
        &state,
        &admin,
        true,
        "group.add_member",
        group,
        Some(m.user),
        body,
    )
    .await)
}

async fn remove_member(
    State(state): State<AppState>,
    admin: AdminUser,
    Path((group, member)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state.store.remove_member(&group, &member).await?;
    let body = json!({"ok": true});
    Ok(changed(
        &state,
        &admin,
        true,
        "group.remove_member",
        group,
        Some(member),
        body,
    )
    .await)
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct GrantReq {
    group: String,
    resource_type: String,
    resource_id: String,
}

async fn grant(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiJson(g): ApiJson<GrantReq>,
) -> ApiResult<Json<Value>> {
    state
        .store
        .grant(&g.group, &g.resource_type, &g.resource_id)
        .await?;
    let resource = format!("{}:{}", g.resource_type, g.resource_id);
    let body = json!({"granted": true});
    Ok(changed(
        &state,
        &admin,
        true,
        "grant.create",
        resource,
        Some(g.group),
        body,
    )
    .await)
}

async fn revoke(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiJson(g): ApiJson<GrantReq>,
) -> ApiResult<Json<Value>> {
    state
        .store
        .revoke_grant(&g.group, &g.resource_type, &g.resource_id)
        .await?;
    let resource = format!("{}:{}", g.resource_type, g.resource_id);
    let body = json!({"revoked": true});
    Ok(changed(
        &state,
        &admin,
        true,
        "grant.revoke",
        resource,
        Some(g.group),
        body,
    )
    .await)
}

/// Every grant; `dangling` marks those naming no registered source or table.
async fn list_grants(State(state): State<AppState>, _admin: AdminUser) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"grants": state.store.list_grants().await?})))
}

/// Every user's tokens (metadata only), with the owner's name.
async fn list_tokens(State(state): State<AppState>, _admin: AdminUser) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({"tokens": state.store.list_tokens(None).await?}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<usize>,
    /// `YYYY-MM-DD[ HH:MM:SS]` (UTC).
    since: Option<String>,
    /// An action (`source.create`) or a prefix of actions (`source`).
    action: Option<String>,
}

async fn audit_log(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Value>> {
    if let Some(since) = &q.since {
        let ok = chrono::NaiveDateTime::parse_from_str(since, "%Y-%m-%d %H:%M:%S").is_ok()
            || chrono::NaiveDateTime::parse_from_str(since, "%Y-%m-%dT%H:%M:%S").is_ok()
            || chrono::NaiveDate::parse_from_str(since, "%Y-%m-%d").is_ok();
        if !ok {
            return Err(crate::error::ApiError::BadRequest(format!(
                "since `{since}`: use YYYY-MM-DD or YYYY-MM-DD HH:MM:SS (UTC)"
            )));
        }
    }
    let filter = AuditFilter {
        since: q.since.map(|s| s.replace('T', " ")),
        action: q.action,
        limit: q.limit.unwrap_or(100).min(10_000),
    };
    let entries = state.store.list_audit(&filter).await?;
    Ok(Json(json!({"entries": entries})))
}
