//! `POST /api/webhooks/jira`: Jira Cloud pushes issue events; each is applied to the
//! configured source's extract at once (the jira connector turns the payload into rows,
//! the runtime merges them by primary key and publishes a new version).
//!
//! Fail closed: not configured → 403; a missing or wrong `X-Hub-Signature`
//! (`sha256=<hex HMAC-SHA256 of the body with the shared secret>`) → 401; a body that is
//! not an issue event → 400. Nothing is written in any of these cases.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/webhooks/jira", post(jira))
}

/// Checks `sha256=<hex>` against the HMAC of `body` in constant time.
pub(crate) fn signature_ok(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// A Jira issue event: `(webhookEvent, issue key, the whole payload)`; 400 for anything
/// else.
pub(crate) fn parse_event(body: &[u8]) -> ApiResult<(String, String, Value)> {
    let payload: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    let event = payload
        .get("webhookEvent")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("no `webhookEvent`".into()))?
        .to_string();
    let key = payload
        .get("issue")
        .filter(|i| i.get("id").is_some())
        .and_then(|i| i.get("key"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "`{}` carries no issue with an id and a key",
                agnes_runtime::names::shown(&event)
            ))
        })?
        .to_string();
    if key.is_empty() || key.len() > 255 || key.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "issue key `{}` is not a Jira key",
            agnes_runtime::names::shown(&key)
        )));
    }
    Ok((event, key, payload))
}

async fn jira(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let Some(hook) = state.config.webhooks.jira.clone() else {
        return Err(ApiError::Forbidden(
            "this server accepts no jira webhooks: [webhooks.jira] is not configured".into(),
        ));
    };
    let secret = std::fs::read(&hook.secret_file)
        .map_err(|e| ApiError::internal(format!("reading {}: {e}", hook.secret_file.display())))?;
    let secret = secret.trim_ascii();
    if secret.is_empty() {
        return Err(ApiError::internal("the jira webhook secret is empty"));
    }
    let header = headers.get("x-hub-signature").and_then(|v| v.to_str().ok());
    if !signature_ok(secret, &body, header) {
        tracing::warn!(
            "error.type" = "webhook_signature",
            "jira webhook with a missing or bad signature"
        );
        return Err(ApiError::Unauthorized(
            "missing or invalid X-Hub-Signature".into(),
        ));
    }
    let (event, key, payload) = parse_event(&body)?;
    if event == "jira:issue_deleted" {
        // a merge cannot delete; the next full refresh drops the issue
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"ignored": key, "event": event,
            "reason": "deletions apply at the next full refresh"})),
        )
            .into_response());
    }
    let source_name = hook.source.clone();
    let source = state.store.get_source(&source_name).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no source `{source_name}` (the one [webhooks.jira] names)"
        ))
    })?;
    let tables: Vec<String> = state
        .store
        .list_tables(Some(&source_name))
        .await?
        .into_iter()
        .map(|t| t.spec.name)
        .collect();
    if tables.is_empty() {
        return Err(ApiError::NotFound(format!(
            "source `{source_name}` has no tables"
        )));
    }
    let source_ref = &source;
    let source = source_name;
    if agnes_runtime::extract::published_state(&state.config.extracts_dir(), &source).is_none() {
        return Err(ApiError::Conflict(format!(
            "source `{source}` has not been synced yet; sync it once before webhooks apply"
        )));
    }
    let report = match crate::sync::run_connector(
        &state,
        source_ref,
        &tables,
        &[],
        Some(("webhook", payload)),
        true,
    )
    .await
    {
        Ok(report) => report,
        Err(agnes_runtime::Error::Busy { .. }) => {
            let mut r = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "busy",
                "message": format!("source `{source}` is syncing; retry")})),
            )
                .into_response();
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("5"));
            return Ok(r);
        }
        Err(e @ agnes_runtime::Error::Connector { .. }) => {
            return Err(ApiError::BadRequest(format!(
                "the payload could not be applied: {e}"
            )));
        }
        Err(e) => return Err(ApiError::internal(format!("applying a jira webhook: {e}"))),
    };
    // with a bucket, the other processes get the new version too (and this one keeps it)
    crate::sync::share(&state, &source)
        .await
        .map_err(ApiError::internal)?;
    state.rebuild_catalog().await.map_err(ApiError::internal)?;
    tracing::info!(issue = %key, event = %event, version = %report.version, "jira webhook applied");
    let _ = state
        .store
        .audit(None, "webhook.jira", Some(&key), Some(&event))
        .await;
    Ok(Json(json!({
        "applied": key,
        "version": report.version,
        "tables": report.tables.iter().map(|t| json!({"name": t.name, "rows": t.rows, "merged": t.merged})).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let body = br#"{"webhookEvent":"jira:issue_updated"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(signature_ok(b"s3cret", body, Some(&good)));
        assert!(!signature_ok(b"other", body, Some(&good)), "another secret");
        assert!(!signature_ok(b"s3cret", b"{}", Some(&good)), "another body");
        assert!(!signature_ok(b"s3cret", body, None), "no header");
        assert!(
            !signature_ok(b"s3cret", body, Some("sha1=abc")),
            "another scheme"
        );
        assert!(!signature_ok(b"s3cret", body, Some("sha256=zz")), "not hex");
    }
}
