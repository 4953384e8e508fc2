//! `/api/admin/connectors`: signed connector uploads, stored by name and version.
//!
//! `POST {component_base64, manifest, signature}` — the component bytes, its
//! `connector.toml` text and its signature JSON. Refused unless the server has
//! `trusted_keys` and the signature verifies (before the component is compiled), the
//! manifest parses, the component compiles, and `name@version` is new. Stored under
//! `<data_dir>/connectors/<name>/<version>/`; a registration then names it as
//! `"connector": "<name>@<version>"`. `GET` lists every version with its digest, signer,
//! requests and imported interfaces.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::AdminUser;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/connectors", post(upload).get(list))
        .route("/api/admin/connectors/{name}", get(show))
        .route("/api/admin/connectors/{name}/{version}/diff", get(diff))
        .route(
            "/api/admin/connectors/{name}/{version}/{decision}",
            post(review),
        )
        .layer(DefaultBodyLimit::max(128 << 20))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Upload {
    pub(crate) component_base64: String,
    pub(crate) manifest: String,
    pub(crate) signature: agnes_runtime::signature::SignatureFile,
}

async fn upload(
    State(state): State<AppState>,
    user: AdminUser,
    ApiJson(up): ApiJson<Upload>,
) -> ApiResult<Json<Value>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(up.component_base64.as_bytes())
        .map_err(|e| ApiError::BadRequest(format!("component_base64: {e}")))?;
    let by = user.0.name.clone();
    let up_signature = up.signature.clone();
    let s = store_signed_upload(
        &state,
        "connectors",
        "connector.toml",
        bytes,
        up.manifest,
        up_signature,
        |_, _| Ok(()),
    )
    .await?;
    let interfaces: std::collections::BTreeSet<String> = s
        .surface
        .imports
        .iter()
        .map(|i| i.split('#').next().unwrap_or(i).to_string())
        .collect();
    let info = json!({"name": s.manifest.name, "version": s.manifest.version, "digest": s.digest,
                      "key_id": s.key_id, "requests": s.manifest.requests, "imports": interfaces,
                      "status": "pending"});
    let record = crate::store::ConnectorInfo {
        name: s.manifest.name.clone(),
        version: s.manifest.version.clone(),
        digest: s.digest.clone(),
        key_id: s.key_id.clone(),
        requests: info["requests"].clone(),
        imports: info["imports"].clone(),
        uploaded_at: crate::db::now(),
        uploaded_by: by,
        status: "pending".into(),
        reviewed_at: None,
        reviewed_by: None,
    };
    let stored = info;
    state.store.record_connector(&record).await?;
    super::audit(
        &state,
        &user.0,
        "connector.upload",
        Some(format!("{}@{}", record.name, record.version)),
        Some(record.digest.clone()),
    )
    .await;
    Ok(Json(stored))
}

/// A verified, compiled and stored signed upload.
pub(crate) struct StoredUpload {
    pub manifest: agnes_runtime::manifest::ConnectorManifest,
    pub digest: String,
    pub key_id: String,
    pub surface: agnes_runtime::Surface,
}

/// Verifies a signed upload against the trusted keys (before compiling it), parses its
/// manifest, compiles it, runs `check` on it and stores it under
/// `<data_dir>/<root>/<name>/<version>/` (`component.wasm`, `manifest_file`, the signature)
/// with one rename. Shared by connector and reviewer uploads.
pub(crate) async fn store_signed_upload(
    state: &AppState,
    root: &'static str,
    manifest_file: &'static str,
    bytes: Vec<u8>,
    manifest: String,
    signature: agnes_runtime::signature::SignatureFile,
    check: impl FnOnce(
        &agnes_runtime::LoadedComponent,
        &agnes_runtime::manifest::ConnectorManifest,
    ) -> ApiResult<()>
    + Send
    + 'static,
) -> ApiResult<StoredUpload> {
    let trusted_dir = state.config.trusted_keys.clone().ok_or_else(|| {
        ApiError::BadRequest(
            "this server accepts no uploads: set `trusted_keys` in its config".into(),
        )
    })?;
    let st = state.clone();
    tokio::task::spawn_blocking(move || -> ApiResult<StoredUpload> {
        let bad = |e: agnes_runtime::Error| ApiError::BadRequest(e.to_string());
        let trusted = agnes_runtime::signature::TrustedKeys::from_dir(&trusted_dir)
            .map_err(ApiError::internal)?;
        let verified =
            agnes_runtime::signature::verify(&bytes, manifest.as_bytes(), &signature, &trusted)
                .map_err(bad)?;
        let parsed = agnes_runtime::manifest::ConnectorManifest::parse(&manifest).map_err(bad)?;
        if parsed.version.is_empty()
            || !parsed
                .version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-+_".contains(c))
        {
            return Err(ApiError::BadRequest(format!(
                "version `{}` must be [A-Za-z0-9.+_-]",
                parsed.version
            )));
        }
        let component = st.runtime.load(&bytes).map_err(bad)?;
        check(&component, &parsed)?;
        let surface = st.runtime.surface(&component);
        let dir = st
            .config
            .data_dir
            .join(root)
            .join(&parsed.name)
            .join(&parsed.version);
        if dir.exists() {
            return Err(ApiError::Conflict(format!(
                "{}@{} exists; bump the version",
                parsed.name, parsed.version
            )));
        }
        let tmp = dir.with_extension("uploading");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(ApiError::internal)?;
        std::fs::write(tmp.join("component.wasm"), &bytes).map_err(ApiError::internal)?;
        std::fs::write(tmp.join(manifest_file), &manifest).map_err(ApiError::internal)?;
        std::fs::write(
            agnes_runtime::signature::default_path(&tmp.join("component.wasm")),
            serde_json::to_vec(&signature).map_err(ApiError::internal)?,
        )
        .map_err(ApiError::internal)?;
        std::fs::rename(&tmp, &dir).map_err(ApiError::internal)?;
        Ok(StoredUpload {
            manifest: parsed,
            digest: component.digest.clone(),
            key_id: verified.key_id,
            surface,
        })
    })
    .await
    .map_err(ApiError::internal)?
}

async fn list(State(state): State<AppState>, _admin: AdminUser) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({"connectors": state.store.list_connectors().await?}),
    ))
}

/// Every uploaded version of one connector, oldest first, each with its `connector.toml`.
async fn show(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let versions: Vec<Value> = state
        .store
        .list_connectors()
        .await?
        .into_iter()
        .filter(|c| c.name == name)
        .map(|c| {
            let toml = state
                .config
                .data_dir
                .join("connectors")
                .join(&c.name)
                .join(&c.version)
                .join("connector.toml");
            let mut v = serde_json::to_value(&c).unwrap_or_default();
            v["manifest"] = json!(std::fs::read_to_string(toml).ok());
            v
        })
        .collect();
    if versions.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no uploaded connector `{name}`; see `agnes admin connector list`"
        )));
    }
    Ok(Json(json!({"name": name, "versions": versions})))
}

/// `approve` or `revoke` an uploaded version (a security reviewer's decision, audited).
/// Only approved versions can be used by a source: registering one, and every sync,
/// discover or query of a source, checks it.
async fn review(
    State(state): State<AppState>,
    admin: AdminUser,
    Path((name, version, decision)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let (status, action) = match decision.as_str() {
        "approve" => ("approved", "connector.approve"),
        "revoke" => ("revoked", "connector.revoke"),
        _ => {
            return Err(ApiError::NotFound(format!(
                "no action `{decision}`: approve or revoke"
            )));
        }
    };
    state
        .store
        .review_connector(&name, &version, status, &admin.0.name)
        .await?;
    let reference = format!("{name}@{version}");
    let used_by: Vec<String> = state
        .store
        .list_sources()
        .await?
        .into_iter()
        .filter(|s| s.spec.connector == reference)
        .map(|s| s.spec.name)
        .collect();
    let body = json!({"connector": reference, "status": status, "used_by": used_by});
    Ok(super::admin::changed(&state, &admin, false, action, reference, None, body).await)
}

/// What `name@version` changes against the newest approved version uploaded before it:
/// requests (`+`/`-` lines: hosts, secrets, dirs, databases, limits) and imported
/// interfaces. `from` is null when no earlier version was approved (everything is new).
async fn diff(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let all = state.store.list_connectors().await?;
    Ok(Json(crate::connector::review_diff(&all, &name, &version)?))
}
