//! Claude Code session transcripts and `CLAUDE.local.md`, pushed by `agnes push` (and by
//! the original Agnes client) at the end of each session, kept per user for admins:
//!
//! - `POST /api/upload/sessions` — multipart, field `file`, filename `[A-Za-z0-9._-]{1,200}`
//!   (a `.gz` suffix means gzip: decompressed while streamed, the stored name drops it).
//!   At most 50 MiB, counted after decompression too (a gzip bomb stops at the cap); a bad
//!   name, bad gzip or a file over the cap stores nothing. The same content again answers
//!   `unchanged`.
//! - `POST /api/upload/local-md` `{content}` (at most 1 MiB).
//! - `GET /api/admin/sessions[?user=]`, `GET /api/admin/sessions/{user}/{file}` (download).
//!
//! Files live under `<data_dir>/user_sessions/<user id>/` and
//! `<data_dir>/user_local_md/<user id>.md`, written to a temporary file and renamed.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::{AdminUser, AuthUser};
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult};
use crate::state::AppState;

/// The largest transcript kept, after decompression.
pub const MAX_SESSION: u64 = 50 << 20;
const MAX_LOCAL_MD: usize = 1 << 20;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/upload/sessions",
            post(upload_session).layer(DefaultBodyLimit::max(MAX_SESSION as usize + (1 << 20))),
        )
        .route(
            "/api/upload/local-md",
            post(upload_local_md).layer(DefaultBodyLimit::max(MAX_LOCAL_MD * 2)),
        )
        .route("/api/admin/sessions", get(list))
        .route("/api/admin/sessions/{user}/{file}", get(download))
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn sessions_dir(state: &AppState, user_id: &str) -> PathBuf {
    state.config.data_dir.join("user_sessions").join(user_id)
}

/// Writes chunks into a temporary file in `dir`, gunzipping when `gzip`, stopping at
/// [`MAX_SESSION`] bytes of content; returns the file, its size and sha256.
struct Incoming {
    tmp: tempfile::NamedTempFile,
    size: u64,
    sha: Sha256,
    gunzip: Option<flate2::write::GzDecoder<Vec<u8>>>,
}

impl Incoming {
    fn new(dir: &Path, gzip: bool) -> ApiResult<Incoming> {
        std::fs::create_dir_all(dir).map_err(ApiError::internal)?;
        Ok(Incoming {
            tmp: tempfile::Builder::new()
                .prefix(".upload-")
                .tempfile_in(dir)
                .map_err(ApiError::internal)?,
            size: 0,
            sha: Sha256::new(),
            gunzip: gzip.then(|| flate2::write::GzDecoder::new(Vec::new())),
        })
    }

    fn plain(&mut self, bytes: &[u8]) -> ApiResult<()> {
        self.size += bytes.len() as u64;
        if self.size > MAX_SESSION {
            return Err(ApiError::PayloadTooLarge(format!(
                "the transcript is larger than {} MiB (after decompression); nothing was stored",
                MAX_SESSION >> 20
            )));
        }
        self.sha.update(bytes);
        self.tmp.write_all(bytes).map_err(ApiError::internal)
    }

    fn push(&mut self, chunk: &[u8]) -> ApiResult<()> {
        if self.gunzip.is_none() {
            return self.plain(chunk);
        }
        // feed in small pieces, so one compressed chunk cannot inflate without bound
        for piece in chunk.chunks(4096) {
            let gz = self.gunzip.as_mut().expect("checked above");
            gz.write_all(piece)
                .map_err(|e| ApiError::BadRequest(format!("invalid_gzip: {e}")))?;
            let out = std::mem::take(gz.get_mut());
            self.plain(&out)?;
        }
        Ok(())
    }

    fn finish(mut self) -> ApiResult<(tempfile::NamedTempFile, u64, String)> {
        if let Some(gz) = self.gunzip.take() {
            let rest = gz
                .finish()
                .map_err(|e| ApiError::BadRequest(format!("invalid_gzip: {e}")))?;
            self.plain(&rest)?;
        }
        Ok((self.tmp, self.size, hex::encode(self.sha.finalize())))
    }
}

fn file_sha256(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut sha = Sha256::new();
    std::io::copy(&mut f, &mut sha).ok()?;
    Some(hex::encode(sha.finalize()))
}

async fn upload_session(
    State(state): State<AppState>,
    user: AuthUser,
    mut form: Multipart,
) -> ApiResult<Json<Value>> {
    let bad = |m: String| ApiError::BadRequest(m);
    let mut field = loop {
        match form
            .next_field()
            .await
            .map_err(|e| bad(format!("invalid multipart body: {e}")))?
        {
            Some(f) if f.name() == Some("file") => break f,
            Some(_) => continue,
            None => {
                return Err(bad(
                    "send the transcript as the multipart field `file`".into()
                ));
            }
        }
    };
    let sent = field.file_name().unwrap_or_default().to_string();
    let (name, gzip) = match sent.strip_suffix(".gz") {
        Some(n) => (n.to_string(), true),
        None => (sent.clone(), false),
    };
    if !name_ok(&name) {
        return Err(bad(format!(
            "filename `{}` must match [A-Za-z0-9._-]{{1,200}} (before an optional .gz)",
            agnes_runtime::names::shown(&sent)
        )));
    }
    let dir = sessions_dir(&state, &user.0.id);
    let mut incoming = Incoming::new(&dir, gzip)?;
    while let Some(chunk) = field.chunk().await.map_err(|e| match e.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
            "the upload is larger than {} MiB; nothing was stored",
            MAX_SESSION >> 20
        )),
        _ => bad(format!("reading the upload: {e}")),
    })? {
        let data = chunk.to_vec();
        incoming = tokio::task::spawn_blocking(move || incoming.push(&data).map(|()| incoming))
            .await
            .map_err(ApiError::internal)??;
    }
    let target = dir.join(&name);
    let (size, sha, unchanged) =
        tokio::task::spawn_blocking(move || -> ApiResult<(u64, String, bool)> {
            let (tmp, size, sha) = incoming.finish()?;
            if file_sha256(&target).as_deref() == Some(sha.as_str()) {
                return Ok((size, sha, true));
            }
            tmp.persist(&target).map_err(ApiError::internal)?;
            Ok((size, sha, false))
        })
        .await
        .map_err(ApiError::internal)??;
    let status = if unchanged { "unchanged" } else { "ok" };
    if !unchanged {
        super::audit(
            &state,
            &user.0,
            "session.upload",
            Some(name.clone()),
            Some(format!("{size} bytes")),
        )
        .await;
    }
    Ok(Json(
        json!({"status": status, "filename": name, "size": size, "sha256": sha}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalMd {
    content: String,
}

async fn upload_local_md(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(md): ApiJson<LocalMd>,
) -> ApiResult<Json<Value>> {
    if md.content.len() > MAX_LOCAL_MD {
        return Err(ApiError::PayloadTooLarge(format!(
            "CLAUDE.local.md is larger than {} KiB",
            MAX_LOCAL_MD >> 10
        )));
    }
    let dir = state.config.data_dir.join("user_local_md");
    let target = dir.join(format!("{}.md", user.0.id));
    let sha = hex::encode(Sha256::digest(md.content.as_bytes()));
    let unchanged = tokio::task::spawn_blocking(move || -> ApiResult<bool> {
        if file_sha256(&target).as_deref() == Some(sha.as_str()) {
            return Ok(true);
        }
        std::fs::create_dir_all(&dir).map_err(ApiError::internal)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(ApiError::internal)?;
        tmp.write_all(md.content.as_bytes())
            .map_err(ApiError::internal)?;
        tmp.persist(&target).map_err(ApiError::internal)?;
        Ok(false)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(
        json!({"status": if unchanged { "unchanged" } else { "ok" }}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    user: Option<String>,
}

/// Every user's uploaded sessions (name, size, time), newest first.
async fn list(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let users = state.store.list_users().await?;
    let root = state.config.data_dir.join("user_sessions");
    let sessions = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for u in users
            .iter()
            .filter(|u| q.user.as_ref().is_none_or(|n| &u.name == n))
        {
            let Ok(entries) = std::fs::read_dir(root.join(&u.id)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Ok(meta) = e.metadata() else { continue };
                if name.starts_with('.') || !meta.is_file() {
                    continue;
                }
                let modified: chrono::DateTime<chrono::Utc> =
                    meta.modified().map(Into::into).unwrap_or_default();
                out.push(json!({"user": u.name, "file": name, "size": meta.len(),
                                "uploaded_at": modified.to_rfc3339()}));
            }
        }
        out.sort_by(|a, b| b["uploaded_at"].as_str().cmp(&a["uploaded_at"].as_str()));
        out
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(json!({"sessions": sessions})))
}

async fn download(
    State(state): State<AppState>,
    admin: AdminUser,
    UrlPath((user, file)): UrlPath<(String, String)>,
) -> ApiResult<Response> {
    if !name_ok(&file) {
        return Err(ApiError::BadRequest("not a session file name".into()));
    }
    let id = state
        .store
        .list_users()
        .await?
        .into_iter()
        .find(|u| u.name == user)
        .map(|u| u.id)
        .ok_or_else(|| {
            ApiError::NotFound(format!("no user `{}`", agnes_runtime::names::shown(&user)))
        })?;
    let path = sessions_dir(&state, &id).join(&file);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::NotFound(format!("`{user}` has no session `{file}`")))?;
    super::audit(
        &state,
        &admin.0,
        "session.download",
        Some(format!("{user}/{file}")),
        None,
    )
    .await;
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from(bytes),
    )
        .into_response())
}
