//! `/api/admin/connectors`: signed connector uploads, stored by name and version.
//!
//! `POST {component_base64, manifest, signature}` — the component bytes, its
//! `connector.toml` text and its signature JSON. Refused unless the server has
//! `trusted_keys` and the signature verifies (before the component is compiled), the
//! manifest parses, the component compiles, and `name@version` is new. Stored under
//! `<data_dir>/connectors/<name>/<version>/`; a registration then names it as
//! `"connector": "<name>@<version>"`. `GET` lists every version with its digest, signer,
//! requests and imported interfaces.

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/connectors", post(upload).get(list))
        .layer(DefaultBodyLimit::max(128 << 20))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Upload {
    component_base64: String,
    manifest: String,
    signature: agnes_runtime::signature::SignatureFile,
}

async fn upload(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(up): ApiJson<Upload>,
) -> ApiResult<Json<Value>> {
    user.0.require_admin()?;
    let trusted_dir = state.config.trusted_keys.clone().ok_or_else(|| {
        ApiError::BadRequest(
            "this server accepts no uploads: set `trusted_keys` in its config".into(),
        )
    })?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(up.component_base64.as_bytes())
        .map_err(|e| ApiError::BadRequest(format!("component_base64: {e}")))?;
    let (st, by) = (state.clone(), user.0.name.clone());
    let stored = tokio::task::spawn_blocking(move || -> ApiResult<Value> {
        let bad = |e: agnes_runtime::Error| ApiError::BadRequest(e.to_string());
        let trusted = agnes_runtime::signature::TrustedKeys::from_dir(&trusted_dir).map_err(ApiError::internal)?;
        let verified = agnes_runtime::signature::verify(&bytes, up.manifest.as_bytes(), &up.signature, &trusted).map_err(bad)?;
        let manifest = agnes_runtime::manifest::ConnectorManifest::parse(&up.manifest).map_err(bad)?;
        if manifest.version.is_empty() || !manifest.version.chars().all(|c| c.is_ascii_alphanumeric() || ".-+_".contains(c)) {
            return Err(ApiError::BadRequest(format!("version `{}` must be [A-Za-z0-9.+_-]", manifest.version)));
        }
        let component = st.runtime.load(&bytes).map_err(bad)?;
        let surface = st.runtime.surface(&component);
        let dir = st.config.data_dir.join("connectors").join(&manifest.name).join(&manifest.version);
        if dir.exists() {
            return Err(ApiError::Conflict(format!("{}@{} exists; bump the version", manifest.name, manifest.version)));
        }
        let tmp = dir.with_extension("uploading");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(ApiError::internal)?;
        std::fs::write(tmp.join("component.wasm"), &bytes).map_err(ApiError::internal)?;
        std::fs::write(tmp.join("connector.toml"), &up.manifest).map_err(ApiError::internal)?;
        std::fs::write(agnes_runtime::signature::default_path(&tmp.join("component.wasm")), serde_json::to_vec(&up.signature).map_err(ApiError::internal)?)
            .map_err(ApiError::internal)?;
        std::fs::rename(&tmp, &dir).map_err(ApiError::internal)?;
        let interfaces: std::collections::BTreeSet<String> =
            surface.imports.iter().map(|i| i.split('#').next().unwrap_or(i).to_string()).collect();
        let info = json!({"name": manifest.name, "version": manifest.version, "digest": component.digest,
                          "key_id": verified.key_id, "requests": {"dirs": manifest.requests.dirs}, "imports": interfaces});
        st.db.blocking(|c| {
            c.execute(
                "INSERT INTO connectors VALUES (?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP), ?)",
                duckdb::params![
                    manifest.name,
                    manifest.version,
                    component.digest,
                    verified.key_id,
                    info["requests"].to_string(),
                    info["imports"].to_string(),
                    crate::db::now(),
                    by
                ],
            )?;
            Ok(())
        })?;
        Ok(info)
    })
    .await
    .map_err(ApiError::internal)??;
    super::audit(
        &state,
        &user,
        "connector.upload",
        Some(format!("{}@{}", stored["name"], stored["version"])),
        stored["digest"].as_str().map(str::to_string),
    )
    .await;
    Ok(Json(stored))
}

async fn list(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Value>> {
    user.0.require_admin()?;
    let rows = state
        .db
        .call(|c| {
            let mut stmt = c.prepare(
                "SELECT name, version, digest, key_id, requests, imports, CAST(uploaded_at AS VARCHAR), uploaded_by \
                 FROM connectors ORDER BY name, uploaded_at",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(json!({"name": r.get::<_, String>(0)?, "version": r.get::<_, String>(1)?, "digest": r.get::<_, String>(2)?,
                          "key_id": r.get::<_, String>(3)?,
                          "requests": serde_json::from_str::<Value>(&r.get::<_, String>(4)?).unwrap_or_default(),
                          "imports": serde_json::from_str::<Value>(&r.get::<_, String>(5)?).unwrap_or_default(),
                          "uploaded_at": r.get::<_, String>(6)?, "uploaded_by": r.get::<_, String>(7)?}))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    Ok(Json(json!({"connectors": rows})))
}
