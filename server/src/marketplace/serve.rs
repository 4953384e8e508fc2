//! Serving the marketplace to one caller: the approved, enabled plugins granted to one of
//! their groups, as a deterministic zip and as a read-only git repository served by
//! `git http-backend` (smart HTTP, upload-pack only).
//!
//! A *view* is the sorted set of (served name, approved bundle); its ETag is the sha256 of
//! that set, and both artifacts are built once per ETag under
//! `<data_dir>/marketplace/served/` — deterministically (sorted entries, fixed timestamps,
//! modes, author, committer and message), so every user with the same view gets the same
//! bytes and the same commit id.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Plugin, bundle, granted};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::Principal;

/// Shared serving state: one sync at a time, bounded `git http-backend` processes.
pub struct MarketplaceState {
    pub(crate) sync_lock: tokio::sync::Mutex<()>,
    pub(crate) git_slots: tokio::sync::Semaphore,
    /// A scheduled pass over the marketplaces is under way (the scheduler starts one at a
    /// time, in the background, so a slow fetch never delays source syncs).
    pub(crate) scheduled: std::sync::atomic::AtomicBool,
}

impl MarketplaceState {
    pub(crate) fn scheduled_sync_running(&self) -> bool {
        self.scheduled.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Default for MarketplaceState {
    fn default() -> Self {
        MarketplaceState {
            sync_lock: tokio::sync::Mutex::new(()),
            git_slots: tokio::sync::Semaphore::new(GIT_CONCURRENCY),
            scheduled: Default::default(),
        }
    }
}

/// `git http-backend` processes at once; more requests wait.
const GIT_CONCURRENCY: usize = 8;
/// Wall time of one `git http-backend` request.
const GIT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest request body `git-upload-pack` accepts (its negotiation).
pub const MAX_GIT_BODY: usize = 16 << 20;

/// One served plugin.
pub struct ServedPlugin {
    pub plugin: Plugin,
    /// `<marketplace>-<plugin>`: its directory under `plugins/`.
    pub dir: String,
    /// Its entry name in the served marketplace.json: the plugin's own name, or `dir` when
    /// two marketplaces in the view have a plugin of that name.
    pub entry: String,
    /// The approved bundle served.
    pub digest: String,
}

/// What one caller is served.
pub struct View {
    pub plugins: Vec<ServedPlugin>,
    /// Lower-case hex sha256 of the view.
    pub etag: String,
}

/// The caller's view: granted, approved, not disabled; sorted by directory name. Reads the
/// plugin records only: the bundles' files are read when an artifact of a new ETag is built.
pub async fn view(state: &AppState, principal: &Principal) -> ApiResult<View> {
    let mut plugins: Vec<Plugin> = state
        .store
        .list_plugins()
        .await?
        .into_iter()
        .filter(|p| !p.disabled && p.approved.is_some() && granted(principal, p))
        .collect();
    plugins.sort_by_key(Plugin::served_name);
    let mut names = std::collections::BTreeMap::<String, usize>::new();
    for p in &plugins {
        *names.entry(p.name.clone()).or_default() += 1;
    }
    let mut h = Sha256::new();
    h.update(format!(
        "agnes-marketplace-v1 {}\n",
        state.config.marketplace.name
    ));
    let mut out = Vec::new();
    for p in plugins {
        let digest = p.approved.clone().expect("filtered");
        let dir = p.served_name();
        let entry = if names[&p.name] > 1 {
            dir.clone()
        } else {
            p.name.clone()
        };
        h.update(format!(
            "{dir} {entry} {digest} {} {}\n",
            p.approved_version.as_deref().unwrap_or(""),
            p.description.as_deref().unwrap_or("").len()
        ));
        h.update(p.description.as_deref().unwrap_or(""));
        out.push(ServedPlugin {
            plugin: p,
            dir,
            entry,
            digest,
        });
    }
    Ok(View {
        plugins: out,
        etag: hex::encode(h.finalize()),
    })
}

/// The served `.claude-plugin/marketplace.json`.
pub fn marketplace_json(state: &AppState, view: &View) -> Vec<u8> {
    let plugins: Vec<serde_json::Value> = view
        .plugins
        .iter()
        .map(|s| {
            let mut entry = serde_json::json!({
                "name": s.entry,
                "source": format!("./plugins/{}", s.dir),
            });
            if let Some(d) = &s.plugin.description {
                entry["description"] = d.clone().into();
            }
            if let Some(v) = &s.plugin.approved_version {
                entry["version"] = v.clone().into();
            }
            entry
        })
        .collect();
    let doc = serde_json::json!({
        "name": state.config.marketplace.name,
        "owner": {"name": state.config.instance_name},
        "metadata": {
            "description": format!("Plugins {} serves to you: approved and granted to one of your groups", state.config.instance_name),
            "version": &view.etag[..12],
        },
        "plugins": plugins,
    });
    let mut bytes = serde_json::to_vec_pretty(&doc).expect("JSON");
    bytes.push(b'\n');
    bytes
}

fn served_dir(state: &AppState) -> PathBuf {
    state.config.data_dir.join("marketplace").join("served")
}

/// Every file of the view as (path in the served tree, executable, where to read it),
/// sorted by path; marketplace.json is given separately. Reads each bundle's file list.
fn files(data_dir: &Path, view: &View) -> ApiResult<Vec<(String, bool, PathBuf)>> {
    let mut out = Vec::new();
    for s in &view.plugins {
        let bundle = bundle::open(data_dir, &s.digest).map_err(ApiError::internal)?;
        out.extend(bundle.files.iter().map(|f| {
            (
                format!("plugins/{}/{}", s.dir, f.path),
                f.executable,
                bundle.root.join(&f.path),
            )
        }));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Served artifacts unused for this long are removed after a sync (they are rebuilt on
/// demand, byte for byte).
pub const SERVED_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Marks an artifact as used now (its modification time), so pruning keeps it.
fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// Removes served zips and repositories not used for [`SERVED_RETENTION`], and scratch
/// directories of builds that died. Returns how many were removed.
pub fn prune_served(data_dir: &Path) -> usize {
    let dir = data_dir.join("marketplace").join("served");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > SERVED_RETENTION);
        if !old {
            continue;
        }
        let path = e.path();
        let gone = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The zip of the view (built once per ETag).
pub async fn zip(state: &AppState, view: View) -> ApiResult<PathBuf> {
    let path = served_dir(state).join(format!("{}.zip", view.etag));
    if path.exists() {
        touch(&path);
        return Ok(path);
    }
    let manifest = marketplace_json(state, &view);
    let data_dir = state.config.data_dir.clone();
    tokio::task::spawn_blocking(move || -> ApiResult<PathBuf> {
        std::fs::create_dir_all(path.parent().expect("served dir")).map_err(ApiError::internal)?;
        let tmp = path.with_extension(format!("zip.tmp{}", std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(ApiError::internal)?;
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
        let options = |executable: bool| {
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .last_modified_time(zip::DateTime::default())
                .unix_permissions(if executable { 0o755 } else { 0o644 })
        };
        let fail = |e: zip::result::ZipError| ApiError::Internal(format!("writing the zip: {e}"));
        zip.start_file(".claude-plugin/marketplace.json", options(false))
            .map_err(fail)?;
        zip.write_all(&manifest).map_err(ApiError::internal)?;
        for (name, executable, from) in files(&data_dir, &view)? {
            zip.start_file(name, options(executable)).map_err(fail)?;
            let bytes = std::fs::read(&from).map_err(ApiError::internal)?;
            zip.write_all(&bytes).map_err(ApiError::internal)?;
        }
        let mut out = zip.finish().map_err(fail)?;
        out.flush().map_err(ApiError::internal)?;
        drop(out);
        std::fs::rename(&tmp, &path).map_err(ApiError::internal)?;
        Ok(path)
    })
    .await
    .map_err(ApiError::internal)?
}

/// The bare repository of the view (built once per ETag): one commit on `main` with a
/// fixed author, committer, date and message, made with `git fast-import`.
pub async fn repository(state: &AppState, view: View) -> ApiResult<PathBuf> {
    let path = served_dir(state).join(format!("{}.git", view.etag));
    if path.join("refs").exists() && path.join("agnes-complete").exists() {
        touch(&path);
        return Ok(path);
    }
    let manifest = marketplace_json(state, &view);
    std::fs::create_dir_all(served_dir(state)).map_err(ApiError::internal)?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{}.", view.etag))
        .tempdir_in(served_dir(state))
        .map_err(ApiError::internal)?;
    let repo = tmp.path().join("repo.git");
    let git = super::sync::git;
    let status = git(tmp.path())
        .args(["init", "--bare", "-q", "--initial-branch=main", "repo.git"])
        .status()
        .await
        .map_err(ApiError::internal)?;
    if !status.success() {
        return Err(ApiError::Internal("git init failed".into()));
    }
    // the fast-import stream: every blob, then one commit listing them (sorted)
    let mut child = git(&repo)
        .args(["fast-import", "--quiet", "--date-format=raw"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(ApiError::internal)?;
    let mut stdin = child.stdin.take().expect("piped");
    let data_dir = state.config.data_dir.clone();
    let (files, view) = tokio::task::spawn_blocking(move || (files(&data_dir, &view), view))
        .await
        .map_err(ApiError::internal)?;
    let mut entries = vec![(".claude-plugin/marketplace.json".to_string(), false, None)];
    entries.extend(files?.into_iter().map(|(p, x, from)| (p, x, Some(from))));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let writer = async {
        let mut commit = String::new();
        for (mark, (name, executable, from)) in entries.iter().enumerate() {
            let bytes = match from {
                Some(from) => tokio::fs::read(from).await?,
                None => manifest.clone(),
            };
            stdin
                .write_all(format!("blob\nmark :{}\ndata {}\n", mark + 1, bytes.len()).as_bytes())
                .await?;
            stdin.write_all(&bytes).await?;
            stdin.write_all(b"\n").await?;
            commit.push_str(&format!(
                "M {} :{} {}\n",
                if *executable { "100755" } else { "100644" },
                mark + 1,
                quote_path(name)
            ));
        }
        let message = format!("Agnes marketplace {}\n", &view.etag[..12]);
        stdin
            .write_all(
                format!(
                    "commit refs/heads/main\nauthor Agnes <agnes@localhost> 0 +0000\ncommitter Agnes <agnes@localhost> 0 +0000\ndata {}\n{message}{commit}\ndone\n",
                    message.len()
                )
                .as_bytes(),
            )
            .await?;
        stdin.shutdown().await?;
        drop(stdin);
        Ok::<(), std::io::Error>(())
    };
    // `done` ends the stream; fast-import needs `--done` to require it, plain is fine too
    let written = writer.await;
    let out = child.wait_with_output().await.map_err(ApiError::internal)?;
    if written.is_err() || !out.status.success() {
        return Err(ApiError::Internal(format!(
            "git fast-import failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    std::fs::write(repo.join("agnes-complete"), b"").map_err(ApiError::internal)?;
    match std::fs::rename(&repo, &path) {
        Ok(()) => {}
        Err(_) if path.join("agnes-complete").exists() => {} // built concurrently
        Err(e) => return Err(ApiError::internal(e)),
    }
    Ok(path)
}

/// A path as fast-import reads it: quoted C-style when it has a special character.
fn quote_path(path: &str) -> String {
    if path
        .bytes()
        .all(|b| b > b' ' && b != b'"' && b != b'\\' && b < 0x7f)
    {
        return path.to_string();
    }
    let mut out = String::from("\"");
    for b in path.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b' '..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out.push('"');
    out
}

/// One request to `git http-backend` for the repository at `repo`: `rest` is the path after
/// `/marketplace.git/` (`info/refs` or `git-upload-pack` only; the route refuses the rest).
pub async fn http_backend(
    state: &AppState,
    repo: &Path,
    method: &str,
    rest: &str,
    query: &str,
    headers: &axum::http::HeaderMap,
    body: Vec<u8>,
) -> ApiResult<axum::response::Response> {
    let _slot = tokio::time::timeout(GIT_REQUEST_TIMEOUT, state.marketplace.git_slots.acquire())
        .await
        .map_err(|_| ApiError::TooManyRequests("the git server is busy; retry".into(), 5))?
        .map_err(ApiError::internal)?;
    // absolute: git resolves GIT_PROJECT_ROOT after changing into the working directory
    let root =
        std::fs::canonicalize(repo.parent().expect("served dir")).map_err(ApiError::internal)?;
    let root = root.as_path();
    let name = repo.file_name().expect("a repository").to_string_lossy();
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("");
    let protocol = header("git-protocol");
    let encoding = header("content-encoding");
    let mut cmd = super::sync::git(root);
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_COUNT", "3")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "false")
        .env("GIT_CONFIG_KEY_1", "http.getanyfile")
        .env("GIT_CONFIG_VALUE_1", "false")
        .env("GIT_CONFIG_KEY_2", "http.uploadpack")
        .env("GIT_CONFIG_VALUE_2", "true")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", format!("/{name}/{rest}"))
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(std::process::Stdio::piped());
    if protocol
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"=:._-".contains(&b))
        && !protocol.is_empty()
    {
        cmd.env("GIT_PROTOCOL", protocol);
    }
    if encoding == "gzip" {
        cmd.env("HTTP_CONTENT_ENCODING", "gzip");
    }
    let mut child = cmd.spawn().map_err(ApiError::internal)?;
    let mut stdin = child.stdin.take().expect("piped");
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = tokio::time::timeout(GIT_REQUEST_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| ApiError::Internal("git http-backend ran too long".into()))?
        .map_err(ApiError::internal)?;
    let _ = feed.await;
    if !out.status.success() && out.stdout.is_empty() {
        return Err(ApiError::Internal(format!(
            "git http-backend: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    cgi_response(out.stdout)
}

/// Splits CGI output into a response: `Status:` and headers, then the body.
fn cgi_response(out: Vec<u8>) -> ApiResult<axum::response::Response> {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
        .ok_or_else(|| ApiError::Internal("git http-backend sent no headers".into()))?;
    let head = String::from_utf8_lossy(&out[..split.0]).to_string();
    let mut response = axum::response::Response::builder();
    let mut status = 200u16;
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("status") {
            status = v
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(500);
        } else {
            response = response.header(k, v);
        }
    }
    response
        .status(status)
        .body(axum::body::Body::from(out[split.0 + split.1..].to_vec()))
        .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_artifacts_are_pruned_and_used_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let served = tmp.path().join("marketplace/served");
        std::fs::create_dir_all(served.join("old.git/refs")).unwrap();
        std::fs::write(served.join("old.zip"), b"z").unwrap();
        std::fs::write(served.join("new.zip"), b"z").unwrap();
        let long_ago = std::time::SystemTime::now() - SERVED_RETENTION - Duration::from_secs(60);
        for p in ["old.git", "old.zip"] {
            std::fs::File::open(served.join(p))
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        // used just now: kept
        std::fs::File::open(served.join("old.zip"))
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        touch(&served.join("old.zip"));
        assert_eq!(prune_served(tmp.path()), 1);
        assert!(!served.join("old.git").exists());
        assert!(served.join("old.zip").exists() && served.join("new.zip").exists());
    }

    #[test]
    fn cgi_output_becomes_a_response() {
        let r =
            cgi_response(b"Status: 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nno".to_vec())
                .unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["content-type"], "text/plain");
        let r = cgi_response(
            b"Content-Type: application/x-git-upload-pack-advertisement\n\n001e#".to_vec(),
        )
        .unwrap();
        assert_eq!(r.status(), 200);
        assert!(cgi_response(b"garbage without headers".to_vec()).is_err());
    }

    #[test]
    fn fast_import_paths_are_quoted() {
        assert_eq!(quote_path("plugins/a/b.md"), "plugins/a/b.md");
        assert_eq!(quote_path("a b\"c"), "\"a b\\\"c\"");
        assert_eq!(quote_path("ü"), "\"\\303\\274\"");
    }
}
