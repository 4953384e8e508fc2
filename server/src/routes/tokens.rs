//! `/api/tokens`: a user's own personal access tokens.

use axum::extract::{Path, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::AuthUser;
use crate::db::access;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tokens", get(list).post(create))
        .route("/api/tokens/{id}", delete(revoke))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    expires_in_days: Option<u32>,
}

async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<NewToken>,
) -> ApiResult<Json<Value>> {
    let id = user.0.id.clone();
    let (info, token) = state
        .db
        .call(move |c| access::create_token(c, &id, &req.name, req.expires_in_days))
        .await?;
    super::audit(&state, &user, "token.create", Some(info.id.clone()), None).await;
    Ok(Json(json!({"token": token, "info": info})))
}

async fn list(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Value>> {
    let id = user.0.id.clone();
    let tokens = state.db.call(move |c| access::list_tokens(c, &id)).await?;
    Ok(Json(json!({"tokens": tokens})))
}

async fn revoke(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (is_admin, me) = (user.0.is_admin(), user.0.id.clone());
    let token = id.clone();
    state
        .db
        .call(move |c| {
            let owner: Option<String> = c
                .query_row("SELECT user_id FROM tokens WHERE id = ?", [&token], |r| {
                    r.get(0)
                })
                .ok();
            match owner {
                None => Err(ApiError::NotFound(format!("no token `{token}`"))),
                Some(o) if o != me && !is_admin => Err(ApiError::Forbidden(
                    "you may only revoke your own tokens".into(),
                )),
                Some(_) => access::revoke_token(c, &token).map(|_| ()),
            }
        })
        .await?;
    state.auth_cache.clear();
    super::audit(&state, &user, "token.revoke", Some(id), None).await;
    Ok(Json(json!({"revoked": true})))
}
