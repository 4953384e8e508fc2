//! `/api/tokens`: a user's own personal access tokens.

use axum::extract::{Path, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::AuthUser;
use crate::error::{ApiJson, ApiResult};
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
    let (info, token) = state
        .store
        .create_token(&user.0.id, &req.name, req.expires_in_days)
        .await?;
    super::audit(&state, &user.0, "token.create", Some(info.id.clone()), None).await;
    Ok(Json(json!({"token": token, "info": info})))
}

async fn list(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Value>> {
    let tokens = state.store.list_tokens(Some(&user.0.id)).await?;
    Ok(Json(json!({"tokens": tokens})))
}

/// Revokes a token: one's own, or (an admin) anyone's.
async fn revoke(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.store.revoke_token(&id, &user.0).await?;
    state.access_changed().await;
    super::audit(&state, &user.0, "token.revoke", Some(id), None).await;
    Ok(Json(json!({"revoked": true})))
}
