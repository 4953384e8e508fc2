//! One module per REST resource, each with its handlers and `router()`.

pub mod admin;
pub mod catalog;
pub mod compat;
pub mod connectors;
pub mod data;
pub mod health;
pub mod marketplace;
pub mod metrics;
pub mod query;
pub mod registry;
pub mod scan;
pub mod sources;
pub mod sync;
pub mod tokens;
pub mod uploads;
pub mod webhooks;
pub mod welcome;

use crate::auth::AuthUser;
use crate::catalog::TableEntry;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Resolves `{name}` to a table the caller may read: 400 for an unsafe name (no path
/// tricks reach the filesystem), 404 when it is not served, 403 when not granted.
pub(crate) fn readable_table(
    state: &AppState,
    user: &AuthUser,
    name: &str,
) -> ApiResult<TableEntry> {
    agnes_runtime::names::validate_name("table", name)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let catalog = state.catalog();
    let table = catalog
        .tables
        .get(name)
        .ok_or_else(|| ApiError::NotFound(format!("no table `{name}`")))?;
    if !user.0.can_read(&table.name, &table.source) {
        return Err(ApiError::Forbidden(format!(
            "you may not read `{name}`; ask an admin to grant it to one of your groups"
        )));
    }
    Ok(table.clone())
}

/// Records an audit entry without failing the request if the log write fails.
pub(crate) async fn audit(
    state: &AppState,
    who: &crate::store::Principal,
    action: &'static str,
    resource: Option<String>,
    detail: Option<String>,
) {
    audit_entry(state, Some(&who.name), action, resource, detail).await
}

/// [`audit`] by user name (sign-ins, where there is no principal yet).
pub(crate) async fn audit_as(
    state: &AppState,
    user: Option<&str>,
    action: &'static str,
    detail: Option<String>,
) {
    audit_entry(state, user, action, user.map(str::to_string), detail).await
}

async fn audit_entry(
    state: &AppState,
    user: Option<&str>,
    action: &'static str,
    resource: Option<String>,
    detail: Option<String>,
) {
    let r = state
        .store
        .audit(user, action, resource.as_deref(), detail.as_deref())
        .await;
    if let Err(e) = r {
        tracing::warn!("error.type" = "audit", error = %e, "audit log write failed");
    }
}

/// `{"<key>": <rendered>, "server_time": "<now>"}` as a JSON response: a cached rendering
/// with the one field that changes per request.
pub(crate) fn json_with_server_time(key: &str, rendered: &str) -> axum::response::Response {
    let body = format!(
        "{{{}:{rendered},\"server_time\":{}}}",
        serde_json::Value::from(key),
        serde_json::Value::from(chrono::Utc::now().to_rfc3339())
    );
    use axum::response::IntoResponse;
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    (json, body).into_response()
}
