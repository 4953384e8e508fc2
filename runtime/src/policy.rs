//! What a run is granted. Deny by default: a [`Grant`] with nothing in it gives the guest
//! no files, no network, no environment, no secrets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// The capabilities granted to one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Host directories preopened read-only.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Hosts the guest may reach over `wasi:http`.
    #[serde(default)]
    pub http: Vec<HttpGrant>,
    /// Secrets the host injects into requests, by name: where the host reads the value.
    /// The guest never sees a value; see [`crate::host`]'s egress for how it is used.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretGrant>,
    /// Databases the host connects to and logs in to for the guest, by the name the
    /// connector requests (`[[requests.databases]]`). The password never enters the guest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub databases: BTreeMap<String, DatabaseGrant>,
}

/// Which wire protocol a database speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseKind {
    /// PostgreSQL (frontend/backend protocol 3.0).
    #[default]
    Postgres,
}

impl std::fmt::Display for DatabaseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DatabaseKind::Postgres => "postgres",
        })
    }
}

/// How the host secures a database connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS, without checking the server's certificate (protects against passive
    /// eavesdropping only).
    Require,
    /// TLS with the certificate checked against the roots (Mozilla's, or `ca_file`) and
    /// the host name. The default.
    #[default]
    VerifyFull,
}

/// One database the host opens for the guest: where, as whom, how.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseGrant {
    #[serde(default)]
    pub kind: DatabaseKind,
    /// Host name or IP literal.
    pub host: String,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// The database to connect to.
    pub database: String,
    /// The role to log in as. Grant a read-only role: the host also makes every session
    /// read-only (`default_transaction_read_only`), but only the role's privileges are a
    /// hard boundary.
    pub user: String,
    /// Where the host reads the password (`env` or `file`); absent for `trust` logins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretGrant>,
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file of the certificate authorities `verify-full` trusts instead of Mozilla's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The host may resolve to loopback, private or link-local addresses.
    #[serde(default)]
    pub allow_private: bool,
}

fn default_pg_port() -> u16 {
    5432
}

impl std::fmt::Debug for DatabaseGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.target())
    }
}

impl DatabaseGrant {
    /// `postgres://user@host:port/database (tls)`: what messages name; never the password.
    pub fn target(&self) -> String {
        let tls = match self.tls {
            TlsMode::Disable => "no tls",
            TlsMode::Require => "tls",
            TlsMode::VerifyFull => "tls verify-full",
        };
        format!(
            "{}://{}@{}:{}/{} ({tls})",
            self.kind, self.user, self.host, self.port, self.database
        )
    }
}

/// Outbound HTTP to one host (or a `*.suffix` pattern).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGrant {
    /// `api.example.com`, `*.example.com` (any subdomain, not the apex), an IP literal,
    /// or `*` (any host; only meaningful in a connector's request).
    pub host: String,
    /// Allowed ports; empty means the scheme's default (443 for https, 80 for http).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Plain `http://` is allowed too (otherwise https only).
    #[serde(default)]
    pub allow_http: bool,
    /// The host may resolve to loopback, private, link-local or otherwise non-public
    /// addresses (otherwise such addresses are refused after DNS resolution).
    #[serde(default)]
    pub allow_private: bool,
}

/// Where the host reads a secret's value: exactly one of `env` or `file`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretGrant {
    /// An environment variable of the host process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A file whose content (trailing newline trimmed) is the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Host patterns the secret may be sent to. The operator may narrow the connector's
    /// request with it (e.g. a connector that may send its token to `*`, any granted
    /// host); [`crate::manifest::ConnectorManifest::effective`] sets the result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

impl std::fmt::Debug for SecretGrant {
    // Only where the value lives; the value itself is never read here.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretGrant")
            .field("env", &self.env)
            .field("file", &self.file)
            .field("hosts", &self.hosts)
            .finish()
    }
}

/// A secret's value. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub(crate) struct SecretValue(pub(crate) String);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl SecretGrant {
    /// The value, for the host's own use (a marketplace's git token): never hand it to a
    /// guest, never log it.
    pub fn reveal(&self, name: &str) -> Result<String, Error> {
        self.read(name).map(|v| v.0)
    }

    /// Reads the value from the environment or the file.
    pub(crate) fn read(&self, name: &str) -> Result<SecretValue, Error> {
        let fail = |reason: String| Error::Secret {
            name: name.to_string(),
            reason,
        };
        match (&self.env, &self.file) {
            (Some(var), None) => std::env::var(var)
                .map(SecretValue)
                .map_err(|_| fail(format!("environment variable {var} is not set"))),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|v| SecretValue(v.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| fail(format!("reading {}: {e}", path.display()))),
            _ => Err(fail("give exactly one of `env` or `file`".into())),
        }
    }
}

/// Does host `pattern` (`*`, `*.suffix` or an exact name) cover `host`? Both lowercase.
/// A `*.suffix` pattern also covers a narrower pattern `*.x.suffix`.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" || pattern == host {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
        None => false,
    }
}

impl HttpGrant {
    /// Whether this rule lets a request go to `scheme://host:port`.
    pub(crate) fn allows(&self, https: bool, host: &str, port: u16) -> bool {
        if !https && !self.allow_http {
            return false;
        }
        let port_ok = if self.ports.is_empty() {
            port == if https { 443 } else { 80 }
        } else {
            self.ports.contains(&port)
        };
        port_ok && host_matches(&self.host, host)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let h = &self.host;
        let body = h.strip_prefix("*.").unwrap_or(h);
        let ok = h == "*"
            || (!body.is_empty()
                && body.len() <= 253
                && !body.contains('*')
                && body
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-:[]".contains(c)));
        if !ok {
            return Err(format!(
                "http host `{h}` must be a lowercase host name, `*.domain`, an IP literal or `*`"
            ));
        }
        if self.ports.contains(&0) {
            return Err(format!("http host `{h}`: port 0 is not a port"));
        }
        Ok(())
    }
}

/// One host directory the guest may read, and where it sees it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// Directory on the host. Relative paths are resolved against the run config's
    /// directory by [`Grant::resolve`].
    pub host: PathBuf,
    /// Absolute path under which the guest sees it, e.g. `/data`.
    pub guest: String,
}

impl Grant {
    /// One line per capability, as a reviewer reads it (no secret values: secrets by name
    /// and where their value comes from).
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .dirs
            .iter()
            .map(|d| format!("dir {} <- {}", d.guest, d.host.display()))
            .collect();
        for h in &self.http {
            let ports = if h.ports.is_empty() {
                "default ports".to_string()
            } else {
                h.ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let mut flags = String::new();
            if h.allow_http {
                flags.push_str(", plain http");
            }
            if h.allow_private {
                flags.push_str(", private addresses");
            }
            out.push(format!("http {} ({ports}{flags})", h.host));
        }
        for name in self.secrets.keys() {
            out.push(format!("secret {name}"));
        }
        for (name, d) in &self.databases {
            out.push(format!(
                "database {name} ({}) {}:{}/{} as {}",
                d.kind, d.host, d.port, d.database, d.user
            ));
        }
        out
    }

    /// Resolves relative host paths against `base` and checks every directory grant:
    /// the host path must be an existing directory, the guest path absolute, normalised
    /// (no `.`/`..`), and not granted twice.
    pub fn resolve(mut self, base: &Path) -> Result<Grant, Error> {
        let mut seen = Vec::new();
        for d in &mut self.dirs {
            if d.host.is_relative() {
                d.host = base.join(&d.host);
            }
            let fail = |reason: &str| Error::InvalidGrant {
                host: d.host.clone(),
                guest: d.guest.clone(),
                reason: reason.to_string(),
            };
            if !d.guest.starts_with('/') {
                return Err(fail("the guest path must be absolute, e.g. /data"));
            }
            if d.guest.split('/').any(|c| c == "." || c == "..") {
                return Err(fail("the guest path must not contain `.` or `..`"));
            }
            if seen.contains(&d.guest) {
                return Err(fail("the guest path is granted twice"));
            }
            seen.push(d.guest.clone());
            let meta = std::fs::metadata(&d.host).map_err(|e| fail(&e.to_string()))?;
            if !meta.is_dir() {
                return Err(fail("the host path is not a directory"));
            }
            d.host = d.host.canonicalize().map_err(|e| fail(&e.to_string()))?;
        }
        for h in &self.http {
            h.validate().map_err(|reason| Error::Policy { reason })?;
            if h.host == "*" {
                return Err(Error::Policy {
                    reason:
                        "[[grant.http]] host = \"*\" would grant the whole internet; name the hosts"
                            .into(),
                });
            }
        }
        for (name, d) in &mut self.databases {
            crate::names::validate_name("database", name)?;
            let fail = |reason: String| Error::Policy {
                reason: format!("[grant.databases.{name}]: {reason}"),
            };
            if d.host.is_empty() || d.host.len() > 253 || d.host.contains(['/', ' ', '@']) {
                return Err(fail(format!("host `{}` is not a host name", d.host)));
            }
            if d.port == 0 {
                return Err(fail("port 0 is not a port".into()));
            }
            if d.database.is_empty()
                || d.user.is_empty()
                || d.database.contains('\0')
                || d.user.contains('\0')
            {
                return Err(fail("give the database and user".into()));
            }
            if let Some(p) = &mut d.password {
                if p.env.is_some() == p.file.is_some() {
                    return Err(fail("password: give exactly one of `env` or `file`".into()));
                }
                if !p.hosts.is_empty() {
                    return Err(fail(
                        "password: `hosts` does not apply to a database".into(),
                    ));
                }
                if let Some(f) = &mut p.file
                    && f.is_relative()
                {
                    *f = base.join(&*f);
                }
            }
            if let Some(f) = &mut d.ca_file
                && f.is_relative()
            {
                *f = base.join(&*f);
            }
        }
        for (name, s) in &mut self.secrets {
            crate::names::validate_name("secret", name)?;
            if s.env.is_some() == s.file.is_some() {
                return Err(Error::Secret {
                    name: name.clone(),
                    reason: "give exactly one of `env` or `file`".into(),
                });
            }
            if let Some(f) = &mut s.file
                && f.is_relative()
            {
                *f = base.join(&*f);
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(host: &Path, guest: &str) -> Grant {
        Grant {
            dirs: vec![DirGrant {
                host: host.to_path_buf(),
                guest: guest.into(),
            }],
            ..Grant::default()
        }
    }

    #[test]
    fn resolves_relative_paths_and_checks_guest_paths() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("data")).unwrap();
        let g = grant(Path::new("data"), "/data")
            .resolve(tmp.path())
            .unwrap();
        assert_eq!(
            g.dirs[0].host,
            tmp.path().join("data").canonicalize().unwrap()
        );

        for (guest, why) in [("data", "absolute"), ("/data/../etc", "`..`")] {
            let err = grant(Path::new("data"), guest)
                .resolve(tmp.path())
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{guest}: {err}");
        }
        let err = grant(Path::new("missing"), "/data")
            .resolve(tmp.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
        std::fs::write(tmp.path().join("file"), "x").unwrap();
        let err = grant(Path::new("file"), "/data")
            .resolve(tmp.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn empty_grant_is_the_default() {
        assert_eq!(Grant::default().dirs.len(), 0);
        let g: Grant = toml::from_str("").unwrap();
        assert!(g.dirs.is_empty());
        assert!(toml::from_str::<Grant>("network = true").is_err());
    }
}
