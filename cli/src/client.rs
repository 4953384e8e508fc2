//! The analyst's HTTP client of the Agnes REST API: server URL and token resolved from
//! flags, then `AGNES_SERVER` / `AGNES_TOKEN`, then the config dir.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde::de::DeserializeOwned;

/// Where the CLI keeps the server URL (`config.toml`) and the token (`token`, mode 0600):
/// `AGNES_CONFIG_DIR`, else `$XDG_CONFIG_HOME/agnes`, else `~/.config/agnes`.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("AGNES_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .context("no AGNES_CONFIG_DIR, XDG_CONFIG_HOME or HOME to find the config dir")?;
    Ok(base.join("agnes"))
}

#[derive(serde::Deserialize, serde::Serialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: Option<String>,
}

/// Saves the server URL and token (token file mode 0600).
pub fn save_credentials(server: &str, token: &str) -> Result<PathBuf> {
    let dir = config_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = toml::to_string(&FileConfig {
        server: Some(server.to_string()),
    })?;
    std::fs::write(dir.join("config.toml"), config)
        .with_context(|| format!("writing {}", dir.join("config.toml").display()))?;
    let path = dir.join("token");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        f.write_all(token.as_bytes())?;
    }
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(dir)
}

/// Server URL and token flags shared by the analyst commands.
#[derive(Debug, Clone, clap::Args, Default)]
pub struct ServerArgs {
    /// Server URL (else AGNES_SERVER, else the config dir).
    #[arg(long, global = true)]
    pub server: Option<String>,
    /// Token (else AGNES_TOKEN, else the config dir's token file).
    #[arg(long, global = true)]
    pub token: Option<String>,
}

impl ServerArgs {
    pub fn client(&self) -> Result<Client> {
        let dir = config_dir()?;
        let server = match self
            .server
            .clone()
            .or_else(|| std::env::var("AGNES_SERVER").ok())
        {
            Some(s) => s,
            None => {
                let path = dir.join("config.toml");
                let text = std::fs::read_to_string(&path)
                    .map_err(|_| anyhow!("no server configured: run `agnes init --server URL --token TOKEN` (or set AGNES_SERVER)"))?;
                let c: FileConfig =
                    toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
                c.server
                    .with_context(|| format!("{} has no `server`", path.display()))?
            }
        };
        let token = match self
            .token
            .clone()
            .or_else(|| std::env::var("AGNES_TOKEN").ok())
        {
            Some(t) => t,
            None => std::fs::read_to_string(dir.join("token"))
                .map(|t| t.trim().to_string())
                .map_err(|_| {
                    anyhow!(
                        "no token: run `agnes init --server URL --token TOKEN` (or set AGNES_TOKEN)"
                    )
                })?,
        };
        Ok(Client::new(&server, &token))
    }
}

/// A thin blocking client. Errors carry the server's `{code, message}`.
#[derive(Clone)]
pub struct Client {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

/// A non-2xx answer.
#[derive(Debug, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Client {
    pub fn new(server: &str, token: &str) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        Client {
            base: server.trim_end_matches('/').to_string(),
            auth: format!("Bearer {token}"),
            agent,
        }
    }

    /// The `Authorization` header value this client sends (`Bearer <token>`).
    pub fn authorization(&self) -> &str {
        &self.auth
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn check(
        &self,
        mut r: ureq::http::Response<ureq::Body>,
        what: &str,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let status = r.status().as_u16();
        if (200..300).contains(&status) || status == 304 {
            return Ok(r);
        }
        let body: serde_json::Value = r.body_mut().read_json().unwrap_or_default();
        let err = ApiError {
            status,
            code: body["code"].as_str().unwrap_or("http_error").to_string(),
            message: body["message"].as_str().unwrap_or("no message").to_string(),
        };
        let hint = match status {
            401 => "; your token is missing, revoked or expired: run `agnes init --token NEW`",
            403 => "; ask an admin to grant it to one of your groups",
            _ => "",
        };
        Err(anyhow::Error::new(err).context(format!("{what}{hint}")))
    }

    fn transport(&self, e: ureq::Error, what: &str) -> anyhow::Error {
        anyhow!(
            "{what}: cannot reach {} ({e}); is the server up? check --server / AGNES_SERVER",
            self.base
        )
    }

    /// Sends `method` with an optional JSON body (any method, DELETE with a body too);
    /// the checked response.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let what = format!("{method} {path}");
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path))
            .header("Authorization", &self.auth);
        let bytes = match body {
            Some(b) => {
                request = request.header("Content-Type", "application/json");
                serde_json::to_vec(b)?
            }
            None => Vec::new(),
        };
        let request = request
            .body(bytes)
            .with_context(|| format!("{what}: building the request"))?;
        let r = self
            .agent
            .run(request)
            .map_err(|e| self.transport(e, &what))?;
        self.check(r, &what)
    }

    /// `send`, and the answer read as JSON.
    fn send_json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T> {
        self.send(method, path, body)?
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_json()
            .with_context(|| format!("{method} {path}: invalid JSON"))
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send_json("GET", path, None)
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> Result<T> {
        self.send_json("POST", path, Some(body))
    }

    /// Any method, with an optional JSON body; the JSON answer.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        self.send_json(method, path, body)
    }

    /// POSTs one file as the multipart field `file` named `file_name`; the JSON answer.
    pub fn upload(&self, path: &str, file_name: &str, bytes: &[u8]) -> Result<serde_json::Value> {
        let what = format!("POST {path}");
        let boundary = format!("agnes-{:016x}", {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).map_err(|e| anyhow!("random: {e}"))?;
            u64::from_le_bytes(b)
        });
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let r = self
            .agent
            .post(&self.url(path))
            .header("Authorization", &self.auth)
            .header(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .send(&body[..])
            .map_err(|e| self.transport(e, &what))?;
        let mut r = self.check(r, &what)?;
        r.body_mut()
            .read_json()
            .with_context(|| format!("{what}: invalid JSON"))
    }

    /// POSTs JSON and returns the raw response body (e.g. an Arrow IPC stream).
    pub fn post_bytes(&self, path: &str, body: &serde_json::Value) -> Result<Vec<u8>> {
        let mut r = self.send("POST", path, Some(body))?;
        r.body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .with_context(|| format!("POST {path}: reading the body"))
    }

    /// Streams a download into `out`, from byte `offset` (Range) on. Returns the bytes written
    /// and the response's ETag. A transport failure or a 5xx is reported as transient.
    pub fn download(
        &self,
        path: &str,
        offset: u64,
        out: &mut impl std::io::Write,
    ) -> Result<(u64, Option<String>), Transient> {
        self.download_range(path, offset, None, out)
    }

    /// Like [`Client::download`], of the bytes `offset..end` (`end` exclusive; `None`: to
    /// the end of the file). A range must be answered with 206.
    pub fn download_range(
        &self,
        path: &str,
        offset: u64,
        end: Option<u64>,
        out: &mut impl std::io::Write,
    ) -> Result<(u64, Option<String>), Transient> {
        // an absolute URL is a presigned one (the object store): it carries its own
        // authorization, and never gets our token; its signature stays out of messages
        let presigned = path.starts_with("https://") || path.starts_with("http://");
        let what = format!("GET {}", path.split('?').next().unwrap_or_default());
        let mut req = if presigned {
            self.agent.get(path)
        } else {
            self.agent
                .get(&self.url(path))
                .header("Authorization", &self.auth)
        };
        let ranged = offset > 0 || end.is_some();
        match end {
            Some(end) => req = req.header("Range", &format!("bytes={offset}-{}", end - 1)),
            None if offset > 0 => req = req.header("Range", &format!("bytes={offset}-")),
            None => {}
        }
        let r = req
            .call()
            .map_err(|e| Transient::Yes(self.transport(e, &what)))?;
        let status = r.status().as_u16();
        if status >= 500 || status == 429 {
            return Err(Transient::Yes(anyhow!("{what}: server answered {status}")));
        }
        if ranged && status != 206 {
            bail_permanent(anyhow!(
                "{what}: the server did not honour the Range request ({status})"
            ))?;
        }
        let r = self.check(r, &what).map_err(Transient::No)?;
        let etag = r
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim_matches('"').to_string());
        let mut body = r.into_body();
        let mut reader = body.with_config().limit(u64::MAX).reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut written = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| Transient::Yes(anyhow!("{what}: reading the body: {e}")))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(|e| Transient::No(anyhow!("writing the download: {e}")))?;
            written += n as u64;
        }
        Ok((written, etag))
    }
}

fn bail_permanent(e: anyhow::Error) -> Result<(), Transient> {
    Err(Transient::No(e))
}

/// A download failure, and whether retrying may help.
#[derive(Debug)]
pub enum Transient {
    Yes(anyhow::Error),
    No(anyhow::Error),
}

impl Transient {
    pub fn into_inner(self) -> anyhow::Error {
        match self {
            Transient::Yes(e) | Transient::No(e) => e,
        }
    }
}
