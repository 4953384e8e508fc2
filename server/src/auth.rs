//! Authentication: `Authorization: Bearer <token>` (or HTTP Basic with the token as the
//! password, for git) resolved to a [`Principal`] by the
//! `AuthUser` extractor. No token, an unknown, revoked or expired one → 401.
//!
//! Resolved tokens are cached in memory for [`AUTH_TTL`], keyed by the token's sha256, so
//! a busy analyst does not serialise every request on the system database. The server is
//! the only writer of tokens, members and grants, and every handler that changes them
//! clears the cache, so a revocation or a removed grant takes effect on the next request;
//! the TTL bounds the rest (an expiry passing, `last_used_at` precision).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::db::access;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Principal;

/// The authenticated caller.
pub struct AuthUser(pub Principal);

/// A request the web UI makes to the REST API in-process on behalf of the user signed in
/// to the browser (see `crate::web::api`). Only code in this process can attach it: it is
/// a request extension, never read from the wire.
#[derive(Clone)]
pub(crate) struct OnBehalf(pub Principal);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(OnBehalf(p)) = parts.extensions.get::<OnBehalf>() {
            return Ok(AuthUser(p.clone()));
        }
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::Unauthorized("missing `Authorization: Bearer <token>`; create a token with `agnes admin bootstrap` or ask an admin".into()))?;
        let token = bearer_or_basic(header).ok_or_else(|| {
            ApiError::Unauthorized(
                "the Authorization header must be `Bearer <token>` (or HTTP Basic with the token as the password)".into(),
            )
        })?;
        let key = access::hash(&token);
        if let Some(p) = state.auth_cache.get(&key) {
            return Ok(AuthUser(p));
        }
        let client = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let per_minute = state.config.auth.failures_per_minute;
        if let Some(wait) = state.auth_cache.locked_out(client, per_minute) {
            return Err(ApiError::TooManyRequests(
                format!("too many failed authentications from this address; retry in {wait} s"),
                wait,
            ));
        }
        // single flight: concurrent first requests with one token resolve it once
        let flight = state.auth_cache.flight(&key);
        let _resolving = flight.lock().await;
        if let Some(p) = state.auth_cache.get(&key) {
            return Ok(AuthUser(p));
        }
        let principal = state.store.authenticate(&token).await?;
        let Some(principal) = principal else {
            state.auth_cache.failed(client);
            tracing::warn!("error.type" = "auth_failed", client = ?client, "authentication failed");
            return Err(ApiError::Unauthorized(
                "the token is unknown, revoked or expired".into(),
            ));
        };
        state.auth_cache.insert(key, principal.clone());
        Ok(AuthUser(principal))
    }
}

/// The token of `Bearer <token>`, or the password of HTTP Basic credentials (git and
/// other clients that only speak Basic send a personal access token that way; the user
/// name is ignored).
fn bearer_or_basic(header: &str) -> Option<String> {
    if let Some(token) = header.strip_prefix("Bearer ") {
        return Some(token.trim().to_string());
    }
    use base64::Engine as _;
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let (_, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    (!password.is_empty()).then(|| password.to_string())
}

/// An authenticated member of the `Admin` group. Extracted from the request head, so a
/// non-admin gets 403 before the body is read or parsed.
pub struct AdminUser(pub Principal);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let AuthUser(p) = AuthUser::from_request_parts(parts, state).await?;
        p.require_admin()?;
        Ok(AdminUser(p))
    }
}

impl AdminUser {
    /// As an [`AuthUser`] (for helpers that take any caller).
    pub fn as_user(&self) -> AuthUser {
        AuthUser(self.0.clone())
    }
}

/// How long a resolved token is trusted without asking the database again.
pub const AUTH_TTL: Duration = Duration::from_secs(5);

/// Token hash → principal, for [`AUTH_TTL`]; and failed authentications per client
/// address, per minute.
#[derive(Default)]
pub struct AuthCache {
    entries: Mutex<HashMap<String, (Principal, Instant)>>,
    flights: Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    failures: Mutex<HashMap<Option<std::net::IpAddr>, (u32, Instant)>>,
}

const FAILURE_WINDOW: Duration = Duration::from_secs(60);

impl AuthCache {
    fn get(&self, key: &str) -> Option<Principal> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < AUTH_TTL)
            .map(|(p, _)| p.clone())
    }

    fn flight(&self, key: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if flights.len() > 10_000 {
            flights.retain(|_, f| std::sync::Arc::strong_count(f) > 1);
        }
        flights.entry(key.to_string()).or_default().clone()
    }

    fn insert(&self, key: String, principal: Principal) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() > 10_000 {
            entries.retain(|_, (_, at)| at.elapsed() < AUTH_TTL);
        }
        entries.insert(key, (principal, Instant::now()));
    }

    /// Seconds until `client` may try again, when it failed `per_minute` times in the
    /// current window.
    pub(crate) fn locked_out(
        &self,
        client: Option<std::net::IpAddr>,
        per_minute: u32,
    ) -> Option<u64> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, since) = failures.get(&client)?;
        let elapsed = since.elapsed();
        (*count >= per_minute && elapsed < FAILURE_WINDOW)
            .then(|| (FAILURE_WINDOW - elapsed).as_secs().max(1))
    }

    pub(crate) fn failed(&self, client: Option<std::net::IpAddr>) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() > 100_000 {
            failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        let entry = failures.entry(client).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    /// Forgets every cached token: call after any change to tokens, users, members or grants.
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
