//! The workspace CLAUDE.md (the original Agnes `/api/welcome`): an admin-editable template
//! rendered per analyst with their readable tables and metrics.
//!
//! - `GET /api/welcome?server_url=` → `{content}` (any signed-in user)
//! - `GET /api/admin/welcome` → `{content, default, updated_at, updated_by}`;
//!   `PUT /api/admin/welcome` `{content}`; `DELETE /api/admin/welcome` back to the default.
//!
//! Placeholders: `{{ instance.name }}`, `{{ server.url }}`, `{{ user.name }}`,
//! `{{ tables }}`, `{{ metrics }}`; anything else in `{{ }}` is refused when saved.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::changed;
use crate::auth::{AdminUser, AuthUser};
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/welcome", get(welcome)).route(
        "/api/admin/welcome",
        get(admin_get).put(admin_put).delete(admin_reset),
    )
}

/// The template shipped with this release: the agent rails.
pub const DEFAULT: &str = include_str!("../welcome.md");
const KEY: &str = "welcome_template";
const PLACEHOLDERS: [&str; 5] = [
    "instance.name",
    "server.url",
    "user.name",
    "tables",
    "metrics",
];
const MAX_TEMPLATE: usize = 200_000;

/// `template` split at its placeholders: `(text before, Some((name, raw "{{ … }}")))`, the
/// last piece with `None`. An unclosed `{{` is text.
fn pieces(template: &str) -> Vec<(&str, Option<(&str, &str)>)> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let raw = &rest[start..start + len + 2];
        out.push((&rest[..start], Some((raw[2..raw.len() - 2].trim(), raw))));
        rest = &rest[start + len + 2..];
    }
    out.push((rest, None));
    out
}

/// Every `{{ name }}` in `template`, in order.
fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    pieces(template)
        .into_iter()
        .filter_map(|(_, p)| p.map(|(name, _)| name))
}

fn check(template: &str) -> ApiResult<()> {
    if template.trim().is_empty() || template.len() > MAX_TEMPLATE {
        return Err(ApiError::BadRequest(format!(
            "the template must be 1 to {MAX_TEMPLATE} bytes"
        )));
    }
    if let Some(unknown) = placeholders(template).find(|p| !PLACEHOLDERS.contains(p)) {
        return Err(ApiError::BadRequest(format!(
            "unknown placeholder `{{{{ {} }}}}`; use {}",
            agnes_runtime::names::shown(unknown),
            PLACEHOLDERS.map(|p| format!("{{{{ {p} }}}}")).join(", ")
        )));
    }
    Ok(())
}

fn render(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len());
    for (text, placeholder) in pieces(template) {
        out.push_str(text);
        if let Some((name, raw)) = placeholder {
            match values.iter().find(|(k, _)| *k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(raw),
            }
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WelcomeQuery {
    server_url: Option<String>,
}

async fn welcome(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<WelcomeQuery>,
) -> ApiResult<Json<Value>> {
    let template = state.store.get_setting(KEY).await?.map(|s| s.value);
    let catalog = state.catalog();
    let tables: Vec<&str> = catalog
        .tables
        .values()
        .filter(|t| user.0.can_read(&t.name, &t.source))
        .map(|t| t.name.as_str())
        .collect();
    let metrics: Vec<String> = state
        .store
        .list_metrics()
        .await?
        .into_iter()
        .filter(|m| super::metrics::unreadable(&state, &user, m).is_none())
        .map(|m| m.id)
        .collect();
    let server_url = q.server_url.unwrap_or_else(|| {
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    });
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "none yet".to_string()
        } else {
            items.join(", ")
        }
    };
    let values = [
        ("instance.name", state.config.instance_name.clone()),
        (
            "server.url",
            agnes_runtime::names::shown(server_url.trim_end_matches('/')),
        ),
        ("user.name", user.0.name.clone()),
        (
            "tables",
            list(tables.iter().map(|t| format!("`{t}`")).collect()),
        ),
        (
            "metrics",
            list(metrics.iter().map(|m| format!("`{m}`")).collect()),
        ),
    ];
    let content = render(template.as_deref().unwrap_or(DEFAULT), &values);
    Ok(Json(json!({ "content": content })))
}

async fn admin_get(State(state): State<AppState>, _admin: AdminUser) -> ApiResult<Json<Value>> {
    let set = state.store.get_setting(KEY).await?;
    Ok(Json(json!({
        "content": set.as_ref().map(|s| &s.value),
        "default": DEFAULT,
        "updated_at": set.as_ref().map(|s| &s.updated_at),
        "updated_by": set.as_ref().map(|s| &s.updated_by),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplatePut {
    content: String,
}

async fn admin_put(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiJson(req): ApiJson<TemplatePut>,
) -> ApiResult<Json<Value>> {
    check(&req.content)?;
    state
        .store
        .put_setting(KEY, Some(&req.content), &admin.0.name)
        .await?;
    let body = json!({"saved": true});
    Ok(changed(&state, &admin, false, "welcome.update", KEY, None, body).await)
}

async fn admin_reset(State(state): State<AppState>, admin: AdminUser) -> ApiResult<Json<Value>> {
    state.store.put_setting(KEY, None, &admin.0.name).await?;
    let body = json!({"reset": true});
    Ok(changed(&state, &admin, false, "welcome.reset", KEY, None, body).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_and_unknown_placeholders_are_refused() {
        check(DEFAULT).unwrap();
        let out = render(
            "# {{ instance.name }} at {{server.url}} {{ x }}",
            &[
                ("instance.name", "Acme".into()),
                ("server.url", "https://a".into()),
            ],
        );
        assert_eq!(out, "# Acme at https://a {{ x }}");
        let err = check("hi {{ user.password }}").unwrap_err().to_string();
        assert!(
            err.contains("unknown placeholder `{{ user.password }}`"),
            "{err}"
        );
        assert!(check("").is_err());
    }
}
