//! Authentication: `Authorization: Bearer <token>` resolved to a [`Principal`] by the
//! `AuthUser` extractor. No token, an unknown, revoked or expired one → 401.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::db::access::{self, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller.
pub struct AuthUser(pub Principal);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::Unauthorized("missing `Authorization: Bearer <token>`; create a token with `agnes admin bootstrap` or ask an admin".into()))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
            })?
            .trim()
            .to_string();
        let principal = state
            .db
            .call(move |c| access::authenticate(c, &token))
            .await?;
        principal.map(AuthUser).ok_or_else(|| {
            ApiError::Unauthorized("the token is unknown, revoked or expired".into())
        })
    }
}
