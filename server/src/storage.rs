//! Object storage for the scale-out mode (`[storage] backend = "s3"`): an S3-compatible
//! bucket through the Apache Arrow `object_store` crate.
//!
//! A sync publishes its extract on the local disk of the process that ran it, as always;
//! then every file of the published version is uploaded under an immutable, versioned key
//! (`<source>/<version>/data/<table>.parquet`, `.../extract.duckdb`, `.../state.json`) and the
//! version is recorded in the shared state. Every other process, told that the catalog
//! changed, installs the newer versions from the bucket into its own `extracts/` (md5 of
//! every parquet file checked against the extract's `_files`), then rebuilds its catalog.
//!
//! The manifest hands analysts a presigned GET of each readable table's parquet file,
//! signed for the public endpoint, valid for `presign_ttl_secs`; a version stays in the
//! bucket for `grace_secs` (longer than any presigned URL lives) after it was replaced.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use crate::config::StorageConfig;

/// The bucket, as this process reaches it (and as analysts do, for presigned URLs).
#[derive(Clone)]
pub struct Bucket {
    store: Arc<AmazonS3>,
    /// The same bucket through the public endpoint: it only signs.
    public: Arc<AmazonS3>,
    ttl: Duration,
    pub grace: Duration,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("ttl", &self.ttl).finish()
    }
}

fn s3(c: &StorageConfig, endpoint: &str, secret: &str) -> Result<AmazonS3, String> {
    AmazonS3Builder::new()
        .with_endpoint(endpoint.trim_end_matches('/'))
        .with_allow_http(endpoint.starts_with("http://"))
        .with_bucket_name(c.bucket.clone().unwrap_or_default())
        .with_region(c.region.clone())
        .with_access_key_id(c.access_key_id.clone().unwrap_or_default())
        .with_secret_access_key(secret)
        // path-style: `<endpoint>/<bucket>/<key>`, what S3-compatible servers answer
        .with_virtual_hosted_style_request(false)
        .build()
        .map_err(|e| format!("[storage]: {e}"))
}

impl Bucket {
    /// The configured bucket, or `None` for local storage. Reads the secret key file.
    pub fn from_config(c: &StorageConfig) -> Result<Option<Bucket>, String> {
        if c.backend != "s3" {
            return Ok(None);
        }
        // HTTPS endpoints: rustls with the ring provider, as the rest of the server
        let _ = rustls::crypto::ring::default_provider().install_default();
        let file = c
            .secret_access_key_file
            .as_ref()
            .ok_or("[storage] backend = \"s3\" needs secret_access_key_file")?;
        let secret = std::fs::read_to_string(file)
            .map_err(|e| format!("[storage] secret_access_key_file {}: {e}", file.display()))?;
        let secret = secret.trim_end_matches(['\r', '\n']);
        let endpoint = c.endpoint.as_deref().unwrap_or_default();
        let public = c.public_endpoint.as_deref().unwrap_or(endpoint);
        Ok(Some(Bucket {
            store: Arc::new(s3(c, endpoint, secret)?),
            public: Arc::new(s3(c, public, secret)?),
            ttl: Duration::from_secs(c.presign_ttl_secs),
            grace: Duration::from_secs(c.grace_secs),
        }))
    }

    /// Uploads every file of `source`'s published version; returns the version. Files
    /// already in the bucket under that version are uploaded again (a retry is harmless:
    /// the keys are immutable in meaning).
    pub async fn upload(&self, extracts: &Path, source: &str) -> Result<String, String> {
        let dir = agnes_runtime::extract::published(extracts, source)
            .ok_or_else(|| format!("source `{source}` has no published extract to upload"))?;
        let version = version_of(&dir)?;
        for (rel, path) in files(&dir)? {
            let key = Key::from(format!("{source}/{version}/{rel}"));
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let mut upload =
                object_store::buffered::BufWriter::with_capacity(self.store.clone(), key, 8 << 20);
            tokio::io::copy(&mut file, &mut upload)
                .await
                .map_err(|e| format!("uploading {rel} of {source}: {e}"))?;
            upload
                .shutdown()
                .await
                .map_err(|e| format!("uploading {rel} of {source}: {e}"))?;
        }
        Ok(version)
    }

    /// Makes `version` of `source` the published extract here, from the bucket, unless it
    /// already is. Returns whether it installed it.
    pub async fn install(
        &self,
        extracts: &Path,
        source: &str,
        version: &str,
    ) -> Result<bool, String> {
        agnes_runtime::names::validate_name("source", source).map_err(|e| e.to_string())?;
        if let Some(dir) = agnes_runtime::extract::published(extracts, source)
            && version_of(&dir)? == version
        {
            return Ok(false);
        }
        let staging = agnes_runtime::extract::Staging::begin_as(extracts, source, version)
            .map_err(|e| e.to_string())?;
        let root = staging.dir();
        let prefix = Key::from(format!("{source}/{version}"));
        let mut listing = self.store.list(Some(&prefix));
        let mut fetched = 0;
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| format!("listing {prefix}: {e}"))?;
            let rel = meta
                .location
                .prefix_match(&prefix)
                .map(|parts| parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>())
                .unwrap_or_default();
            // keys are ours, still: nothing but plain names below the version
            if rel.is_empty()
                || rel
                    .iter()
                    .any(|p| p.is_empty() || p == "." || p == ".." || p.starts_with('.'))
            {
                return Err(format!("unexpected object {} in the bucket", meta.location));
            }
            let path = rel.iter().fold(root.clone(), |p, part| p.join(part));
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            let mut out = tokio::fs::File::create(&path)
                .await
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            let mut body = self
                .store
                .get(&meta.location)
                .await
                .map_err(|e| format!("fetching {}: {e}", meta.location))?
                .into_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| format!("fetching {}: {e}", meta.location))?;
                out.write_all(&chunk)
                    .await
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
            }
            out.sync_all()
                .await
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            fetched += 1;
        }
        if fetched == 0 {
            return Err(format!(
                "version {version} of `{source}` is not in the bucket"
            ));
        }
        let source = source.to_string();
        tokio::task::spawn_blocking(move || {
            let sealed = staging.seal().map_err(|e| e.to_string())?;
            verify(&sealed)?;
            staging.publish().map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        tracing::info!(%source, version, files = fetched, "installed a version from the bucket");
        Ok(true)
    }

    /// A presigned GET of `key` on the public endpoint, and when it expires (UTC,
    /// `YYYY-MM-DDTHH:MM:SSZ`).
    pub async fn presign(&self, key: &str) -> Result<(String, String), String> {
        let url = self
            .public
            .signed_url(http::Method::GET, &Key::from(key), self.ttl)
            .await
            .map_err(|e| format!("presigning {key}: {e}"))?;
        let expires = chrono::Utc::now()
            + chrono::Duration::from_std(self.ttl).unwrap_or_else(|_| chrono::Duration::zero());
        Ok((
            url.to_string(),
            expires.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ))
    }

    /// [`Bucket::presign`] without waiting: signing with static credentials needs no I/O,
    /// so the future is ready at once (`None` if it ever is not).
    pub fn presign_now(&self, key: &str) -> Option<(String, String)> {
        use futures_util::FutureExt as _;
        self.presign(key).now_or_never()?.ok()
    }

    /// Which part of the clock a cached manifest's URLs belong to: they are signed again
    /// every third of their lifetime, so a URL handed out is valid for at least two thirds.
    pub fn signing_epoch(&self) -> u64 {
        let third = (self.ttl.as_secs() / 3).max(1);
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() / third)
            .unwrap_or(0)
    }

    /// Removes every object of `source`'s `version`.
    pub async fn remove(&self, source: &str, version: &str) -> Result<usize, String> {
        let prefix = Key::from(format!("{source}/{version}"));
        let keys: Vec<Key> = self
            .store
            .list(Some(&prefix))
            .map(|m| m.map(|m| m.location))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| format!("listing {prefix}: {e}"))?;
        for k in &keys {
            self.store
                .delete(k)
                .await
                .map_err(|e| format!("removing {k}: {e}"))?;
        }
        Ok(keys.len())
    }
}

/// Where published versions live, resolved (what catalog paths start with).
pub fn versions_root(extracts: &Path) -> Option<PathBuf> {
    Some(extracts.canonicalize().ok()?.join(".versions"))
}

/// The object key of a published file (`<versions root>/<source>/<version>/<rel>`).
pub fn key_of(versions: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(versions).ok()?;
    let parts: Vec<&str> = rel.iter().map(|p| p.to_str()).collect::<Option<_>>()?;
    (parts.len() >= 3).then(|| parts.join("/"))
}

/// The version directory's name.
fn version_of(dir: &Path) -> Result<String, String> {
    dir.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| format!("{} is not a version directory", dir.display()))
}

/// Every regular file below `dir`, as (`a/b` relative key, path).
fn files(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), dir.to_path_buf())];
    while let Some((rel, path)) = stack.pop() {
        let entries =
            std::fs::read_dir(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        for e in entries {
            let e = e.map_err(|e| format!("reading {}: {e}", path.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let kind = e.file_type().map_err(|e| e.to_string())?;
            if kind.is_dir() {
                stack.push((rel, e.path()));
            } else if kind.is_file() {
                out.push((rel, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Every parquet file an installed extract lists has the md5 its `_files` records.
fn verify(dir: &Path) -> Result<(), String> {
    let meta = agnes_runtime::extract::read_meta(dir).map_err(|e| e.to_string())?;
    for m in meta {
        let (Some(md5), Some(rel)) = (m.md5, m.path) else {
            continue;
        };
        let path = dir.join(&rel);
        let got = agnes_runtime::extract::md5_file(&path).map_err(|e| e.to_string())?;
        if got != md5 {
            return Err(format!(
                "{} from the bucket has md5 {got}, its extract records {md5}: not installed",
                path.display()
            ));
        }
    }
    Ok(())
}
