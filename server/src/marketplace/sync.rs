//! Fetching a marketplace: `git fetch --depth 1` of the registered ref into a scratch bare
//! repository (the clone URL checked like a connector's egress first: allowed schemes only,
//! its host resolved and non-public addresses refused unless the marketplace allows them,
//! the answer pinned so git cannot resolve it differently, no redirects, no prompts, the
//! token sent only as a header from the environment). Nothing is checked out: the plugin
//! files are read from git's object database by path, so a symlink or a submodule cannot
//! point outside the repository — a plugin containing one is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use agnes_runtime::hook::BundleFile;
use base64::Engine as _;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::bundle::{self, MAX_BYTES, MAX_FILES, safe_path};
use super::{Marketplace, Plugin, status, validate_plugin_name};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Plugins one marketplace may list.
pub const MAX_PLUGINS: usize = 2000;
/// Wall time of one git command.
const GIT_TIMEOUT: Duration = Duration::from_secs(300);

/// What one sync did, per plugin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncReport {
    pub marketplace: String,
    pub commit: String,
    pub plugins: Vec<PluginOutcome>,
    /// Plugins no longer listed: removed, no longer served.
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginOutcome {
    pub name: String,
    pub status: String,
    pub verdict: Option<String>,
    /// A new bundle (new files) since the previous sync.
    pub changed: bool,
    pub reason: Option<String>,
}

/// A git command run in `dir` with a cleared environment: no system or global config, no
/// prompts, stdout and stderr captured, killed when dropped. Every git the server runs
/// (fetching, building served repositories, `git http-backend`) starts here.
pub(super) fn git(dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("git");
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir)
        .env("LANG", "C")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("SSH_ASKPASS", "/bin/false")
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run(mut cmd: tokio::process::Command, what: &str) -> ApiResult<Vec<u8>> {
    let out = tokio::time::timeout(GIT_TIMEOUT, cmd.output())
        .await
        .map_err(|_| ApiError::BadRequest(format!("{what}: git ran past {GIT_TIMEOUT:?}")))?
        .map_err(|e| ApiError::Internal(format!("{what}: running git: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(ApiError::BadRequest(format!(
            "{what}: {}",
            agnes_runtime::names::sanitized(stderr.trim(), 2000)
        )));
    }
    Ok(out.stdout)
}

/// Checks the URL against the egress rules; returns the `-c` settings that confine git to
/// it (protocol allow-list, pinned resolution, no redirects).
async fn egress(state: &AppState, m: &Marketplace) -> ApiResult<Vec<(String, String)>> {
    let url = &m.spec.url;
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    if authority.contains('@') {
        return Err(ApiError::BadRequest(format!(
            "marketplace url `{}`: put credentials in `token` (a secret), not in the URL",
            agnes_runtime::names::sanitized(url.split_once("://").map_or("", |(s, _)| s), 10)
                + "://…"
        )));
    }
    let scheme = url
        .split_once("://")
        .map_or("", |(s, _)| s)
        .to_ascii_lowercase();
    let mut config = vec![
        ("protocol.allow".to_string(), "never".to_string()),
        ("http.followRedirects".into(), "false".into()),
        ("core.hooksPath".into(), "/dev/null".into()),
        ("transfer.fsckObjects".into(), "true".into()),
    ];
    match scheme.as_str() {
        "https" | "http" => {}
        "file" => {
            if !state.config.marketplace.allow_file_urls {
                return Err(ApiError::BadRequest(format!(
                    "marketplace url `{url}`: file:// URLs need `[marketplace] allow_file_urls = true` in the server config"
                )));
            }
            config.push(("protocol.file.allow".into(), "always".into()));
            return Ok(config);
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "marketplace url `{url}`: scheme `{other}` is not allowed; use https://"
            )));
        }
    }
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("marketplace url `{url}` is not a URL")))?;
    config.push((format!("protocol.{scheme}.allow"), "always".into()));
    let host = uri
        .host()
        .ok_or_else(|| ApiError::BadRequest(format!("marketplace url `{url}` has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let allowed = &state.config.marketplace.allowed_hosts;
    if !allowed.is_empty()
        && !allowed
            .iter()
            .any(|p| agnes_runtime::host_matches(&p.to_ascii_lowercase(), &host))
    {
        return Err(ApiError::BadRequest(format!(
            "marketplace url `{url}`: host {host} is not in the server's `[marketplace] allowed_hosts`"
        )));
    }
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let addrs: Vec<std::net::IpAddr> = match state.config.resolve.get(&host) {
        Some(pinned) => pinned.clone(),
        None => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| {
                ApiError::BadRequest(format!("marketplace url `{url}`: resolving {host}: {e}"))
            })?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "marketplace url `{url}`: {host} has no address"
        )));
    }
    if !m.spec.allow_private
        && let Some(ip) = addrs.iter().find(|ip| !agnes_runtime::is_public(**ip))
    {
        return Err(ApiError::BadRequest(format!(
            "marketplace url `{url}`: {host} resolves to the non-public address {ip}; \
             set `allow_private` on the marketplace to fetch from a private network"
        )));
    }
    let list: Vec<String> = addrs
        .iter()
        .map(|ip| match ip {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        })
        .collect();
    config.push((
        "http.curloptResolve".into(),
        format!("{host}:{port}:{}", list.join(",")),
    ));
    Ok(config)
}

/// One `ls-tree -r -l` entry.
struct TreeEntry {
    mode: String,
    oid: String,
    size: u64,
}

/// Fetches, parses, stores and reviews one marketplace. The previous plugins keep being
/// served when it fails.
pub async fn sync(state: &AppState, name: &str) -> ApiResult<SyncReport> {
    let _one_at_a_time = state.marketplace.sync_lock.lock().await;
    let mut m = state
        .store
        .list_marketplaces()
        .await?
        .into_iter()
        .find(|m| m.spec.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no marketplace `{name}`")))?;
    m.last_attempt_at = Some(crate::db::now());
    let outcome = fetch_and_store(state, &m).await;
    match &outcome {
        Ok(report) => {
            m.commit = Some(report.commit.clone());
            m.synced_at = m.last_attempt_at.clone();
            m.error = None;
        }
        Err(e) => m.error = Some(e.detail()),
    }
    state.store.put_marketplace(&m).await?;
    let data_dir = state.config.data_dir.clone();
    let pruned = tokio::task::spawn_blocking(move || super::serve::prune_served(&data_dir))
        .await
        .unwrap_or(0);
    if pruned > 0 {
        tracing::info!(
            pruned,
            "removed served marketplace artifacts unused for a week"
        );
    }
    outcome
}

/// Syncs every marketplace whose schedule is due (one interval after its last attempt,
/// successful or not), one after another. The scheduler calls it in the background.
pub async fn sync_due(state: &AppState) -> ApiResult<Vec<String>> {
    use std::sync::atomic::Ordering;
    if state.marketplace.scheduled.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    struct Done<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let _done = Done(&state.marketplace.scheduled);
    let now = chrono::Utc::now().naive_utc();
    let mut synced = Vec::new();
    for m in state.store.list_marketplaces().await? {
        let Some(Ok(every)) = m.spec.schedule.as_deref().map(crate::store::parse_schedule) else {
            continue;
        };
        let last = m
            .last_attempt_at
            .as_deref()
            .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").ok());
        if last.is_some_and(|at| (now - at).num_seconds() < every.as_secs() as i64) {
            continue;
        }
        if let Err(e) = sync(state, &m.spec.name).await {
            tracing::warn!(marketplace = %m.spec.name, error = %e.detail(), "scheduled marketplace sync failed");
        }
        synced.push(m.spec.name);
    }
    Ok(synced)
}

async fn fetch_and_store(state: &AppState, m: &Marketplace) -> ApiResult<SyncReport> {
    let config = egress(state, m).await?;
    let scratch = tempfile::Builder::new()
        .prefix("marketplace-")
        .tempdir_in(state.config.data_dir.join("marketplace"))
        .or_else(|_| {
            std::fs::create_dir_all(state.config.data_dir.join("marketplace"))?;
            tempfile::Builder::new()
                .prefix("marketplace-")
                .tempdir_in(state.config.data_dir.join("marketplace"))
        })
        .map_err(ApiError::internal)?;
    let dir = scratch.path();
    let mut init = git(dir);
    init.args(["init", "--bare", "-q", "repo"]);
    run(init, "git init").await?;
    let repo = dir.join("repo");

    let mut fetch = git(&repo);
    let mut n = 0;
    for (k, v) in &config {
        fetch
            .env(format!("GIT_CONFIG_KEY_{n}"), k)
            .env(format!("GIT_CONFIG_VALUE_{n}"), v);
        n += 1;
    }
    if let Some(token) = &m.spec.token {
        let value = token
            .reveal(&format!("token of marketplace {}", m.spec.name))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{value}"));
        fetch
            .env(format!("GIT_CONFIG_KEY_{n}"), "http.extraHeader")
            .env(
                format!("GIT_CONFIG_VALUE_{n}"),
                format!("Authorization: Basic {basic}"),
            );
        n += 1;
    }
    fetch.env("GIT_CONFIG_COUNT", n.to_string());
    let wanted = m.spec.git_ref.clone().unwrap_or_else(|| "HEAD".into());
    if wanted.starts_with('-') || wanted.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::BadRequest(format!("ref `{wanted}` is not a ref")));
    }
    fetch.args([
        "fetch",
        "-q",
        "--depth",
        "1",
        "--no-tags",
        "--",
        &m.spec.url,
        &wanted,
    ]);
    run(fetch, &format!("fetching {}", m.spec.url)).await?;
    let mut rev = git(&repo);
    rev.args(["rev-parse", "--verify", "FETCH_HEAD^{commit}"]);
    let commit = String::from_utf8_lossy(&run(rev, "git rev-parse").await?)
        .trim()
        .to_string();

    let mut ls = git(&repo);
    ls.args(["ls-tree", "-r", "-l", "-z", "--full-tree", &commit]);
    let listing = run(ls, "git ls-tree").await?;
    let mut tree: BTreeMap<String, TreeEntry> = BTreeMap::new();
    for record in listing.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let text = String::from_utf8_lossy(record);
        let Some((meta, path)) = text.split_once('\t') else {
            continue;
        };
        let mut parts = meta.split_whitespace();
        let (Some(mode), Some(_kind), Some(oid), Some(size)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        tree.insert(
            path.to_string(),
            TreeEntry {
                mode: mode.to_string(),
                oid: oid.to_string(),
                size: size.parse().unwrap_or(0),
            },
        );
    }

    let manifest_entry = tree.get(".claude-plugin/marketplace.json").ok_or_else(|| {
        ApiError::BadRequest(format!(
            "{} at {commit} has no .claude-plugin/marketplace.json",
            m.spec.url
        ))
    })?;
    if manifest_entry.mode != "100644" || manifest_entry.size > (4 << 20) {
        return Err(ApiError::BadRequest(
            ".claude-plugin/marketplace.json must be a regular file under 4 MiB".into(),
        ));
    }
    let blobs = cat_files(&repo, std::slice::from_ref(&manifest_entry.oid)).await?;
    let manifest: Value = serde_json::from_slice(&blobs[&manifest_entry.oid]).map_err(|e| {
        ApiError::BadRequest(format!(
            ".claude-plugin/marketplace.json is not valid JSON: {e}"
        ))
    })?;
    let entries = manifest
        .get("plugins")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ApiError::BadRequest(".claude-plugin/marketplace.json has no `plugins` list".into())
        })?;
    if entries.len() > MAX_PLUGINS {
        return Err(ApiError::BadRequest(format!(
            "marketplace.json lists {} plugins; at most {MAX_PLUGINS}",
            entries.len()
        )));
    }
    let plugin_root = manifest
        .pointer("/metadata/pluginRoot")
        .and_then(Value::as_str)
        .map(|r| r.trim_start_matches("./").trim_end_matches('/').to_string());

    // every plugin: its directory's entries, or why it is refused
    struct Found {
        name: String,
        path: String,
        version: Option<String>,
        description: Option<String>,
        files: Result<Vec<(String, bool, TreeEntry)>, String>,
    }
    let mut found: Vec<Found> = Vec::new();
    let mut seen = BTreeSet::new();
    for entry in entries {
        let Some(name) = entry.get("name").and_then(Value::as_str) else {
            tracing::warn!(marketplace = %m.spec.name, "a marketplace.json plugin entry has no name");
            continue;
        };
        if validate_plugin_name(name).is_err() || !seen.insert(name.to_string()) {
            tracing::warn!(marketplace = %m.spec.name, plugin = %agnes_runtime::names::shown(name), "skipping a plugin with an invalid or duplicate name");
            continue;
        }
        let text = |k: &str| {
            entry
                .get(k)
                .and_then(Value::as_str)
                .map(|s| s.chars().take(1000).collect::<String>())
        };
        let (path, files) = match entry.get("source") {
            Some(Value::String(source)) => {
                let rel = source.trim_start_matches("./").trim_end_matches('/');
                let rel = match (&plugin_root, source.starts_with("./")) {
                    (Some(root), false) if !root.is_empty() => format!("{root}/{rel}"),
                    _ => rel.to_string(),
                };
                let files = plugin_files(&tree, &rel);
                (rel, files)
            }
            Some(other) => {
                let kind = other
                    .get("source")
                    .and_then(Value::as_str)
                    .unwrap_or("object");
                (
                    String::new(),
                    Err(format!(
                        "source `{kind}` is not supported: Agnes serves only plugins inside the marketplace repository, so what is reviewed is what is served"
                    )),
                )
            }
            None => (String::new(), Err("the entry has no `source`".into())),
        };
        found.push(Found {
            name: name.to_string(),
            path,
            version: text("version"),
            description: text("description"),
            files,
        });
    }

    // read every wanted blob once
    let wanted: Vec<String> = found
        .iter()
        .filter_map(|f| f.files.as_ref().ok())
        .flatten()
        .map(|(_, _, e)| e.oid.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let blobs = cat_files(&repo, &wanted).await?;

    let existing: BTreeMap<String, Plugin> = state
        .store
        .list_plugins()
        .await?
        .into_iter()
        .filter(|p| p.marketplace == m.spec.name)
        .map(|p| (p.name.clone(), p))
        .collect();
    let mut reviewers = super::review::reviewers(state).await?;
    let now = crate::db::now();
    let mut report = SyncReport {
        marketplace: m.spec.name.clone(),
        commit: commit.clone(),
        plugins: Vec::new(),
        removed: Vec::new(),
    };
    for f in found {
        let mut p = existing.get(&f.name).cloned().unwrap_or(Plugin {
            marketplace: m.spec.name.clone(),
            name: f.name.clone(),
            version: None,
            description: None,
            path: f.path.clone(),
            bundle: None,
            status: status::PENDING.into(),
            reason: None,
            verdict: None,
            approved: None,
            approved_version: None,
            decided_at: None,
            decided_by: None,
            disabled: false,
            synced_at: now.clone(),
        });
        p.path = f.path.clone();
        p.synced_at = now.clone();
        p.description = f.description.clone();
        let before = p.bundle.clone();
        match f.files {
            Err(reason) => {
                p.bundle = None;
                p.status = status::REFUSED.into();
                p.reason = Some(reason);
                p.verdict = None;
            }
            Ok(files) => {
                let contents: Vec<(BundleFile, Vec<u8>)> = files
                    .into_iter()
                    .map(|(path, executable, e)| {
                        let bytes = blobs.get(&e.oid).cloned().unwrap_or_default();
                        (
                            BundleFile {
                                path,
                                executable,
                                size: bytes.len() as u64,
                                sha256: agnes_runtime::hook::file_digest(&bytes),
                            },
                            bytes,
                        )
                    })
                    .collect();
                p.version = plugin_version(&contents).or(f.version.clone());
                let data_dir = state.config.data_dir.clone();
                let digest =
                    tokio::task::spawn_blocking(move || bundle::write(&data_dir, &contents))
                        .await
                        .map_err(ApiError::internal)?
                        .map_err(ApiError::internal)?;
                if p.bundle.as_deref() != Some(&digest) || p.status == status::REFUSED {
                    p.bundle = Some(digest);
                    p.status = status::PENDING.into();
                    p.reason = None;
                }
                super::review::settle(state, &mut p, &mut reviewers).await?;
            }
        }
        state.store.put_plugin(&p).await?;
        report.plugins.push(PluginOutcome {
            name: p.name.clone(),
            status: p.status.clone(),
            verdict: p.verdict.clone(),
            changed: before != p.bundle,
            reason: p.reason.clone(),
        });
    }
    for name in existing.keys() {
        if !report.plugins.iter().any(|p| &p.name == name) {
            state.store.delete_plugin(&m.spec.name, name).await?;
            report.removed.push(name.clone());
        }
    }
    Ok(report)
}

/// The version in the bundle's `.claude-plugin/plugin.json`.
fn plugin_version(files: &[(BundleFile, Vec<u8>)]) -> Option<String> {
    let (_, bytes) = files
        .iter()
        .find(|(f, _)| f.path == ".claude-plugin/plugin.json")?;
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v.get("version")
        .and_then(Value::as_str)
        .map(|s| s.chars().take(100).collect())
}

/// The regular files under `dir` (relative paths, executable bit), or why the plugin is
/// refused: the directory escapes or does not exist, holds a symlink or a submodule, or is
/// over the limits.
fn plugin_files(
    tree: &BTreeMap<String, TreeEntry>,
    dir: &str,
) -> Result<Vec<(String, bool, TreeEntry)>, String> {
    if !dir.is_empty() && !safe_path(dir) {
        return Err(format!(
            "source `{dir}` is not a path inside the repository"
        ));
    }
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let mut out = Vec::new();
    let mut bytes = 0u64;
    for (path, e) in tree.range(prefix.clone()..) {
        let Some(rel) = path.strip_prefix(&prefix) else {
            break;
        };
        let executable = match e.mode.as_str() {
            "100644" => false,
            "100755" => true,
            "120000" => {
                return Err(format!(
                    "`{path}` is a symbolic link; plugins with symlinks are refused"
                ));
            }
            "160000" => {
                return Err(format!(
                    "`{path}` is a submodule; plugins with submodules are refused"
                ));
            }
            other => return Err(format!("`{path}` has mode {other}")),
        };
        if !safe_path(rel) {
            return Err(format!(
                "`{}` is not a safe path",
                agnes_runtime::names::shown(path)
            ));
        }
        bytes += e.size;
        out.push((
            rel.to_string(),
            executable,
            TreeEntry {
                mode: e.mode.clone(),
                oid: e.oid.clone(),
                size: e.size,
            },
        ));
        if out.len() > MAX_FILES || bytes > MAX_BYTES {
            return Err(format!(
                "the plugin is over the limits ({MAX_FILES} files, {} MiB)",
                MAX_BYTES >> 20
            ));
        }
    }
    if out.is_empty() {
        return Err(format!(
            "directory `{dir}` is not in the repository or is empty"
        ));
    }
    Ok(out)
}

/// The contents of `oids` (`git cat-file --batch`).
async fn cat_files(repo: &Path, oids: &[String]) -> ApiResult<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    if oids.is_empty() {
        return Ok(out);
    }
    let mut cmd = git(repo);
    cmd.args(["cat-file", "--batch"])
        .stdin(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| ApiError::Internal(format!("running git cat-file: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input: String = oids.iter().map(|o| format!("{o}\n")).collect();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    let output = tokio::time::timeout(GIT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| ApiError::BadRequest("git cat-file ran too long".into()))?
        .map_err(ApiError::internal)?;
    let _ = writer.await;
    let data = output.stdout;
    let mut at = 0;
    for oid in oids {
        let nl = data[at..]
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| ApiError::Internal("git cat-file: truncated output".into()))?;
        let header = String::from_utf8_lossy(&data[at..at + nl]).to_string();
        at += nl + 1;
        let mut parts = header.split_whitespace();
        let (Some(got), Some(_kind), Some(size)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ApiError::Internal(format!("git cat-file: `{header}`")));
        };
        let size: usize = size
            .parse()
            .map_err(|_| ApiError::Internal(format!("git cat-file: `{header}`")))?;
        if got != oid || at + size > data.len() {
            return Err(ApiError::Internal(format!(
                "git cat-file: unexpected `{header}`"
            )));
        }
        out.insert(oid.clone(), data[at..at + size].to_vec());
        at += size + 1;
    }
    Ok(out)
}
