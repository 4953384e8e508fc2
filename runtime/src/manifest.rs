//! `connector.toml`: what a connector *requests*. Signed together with the component
//! (see [`crate::signature`]). The operator's [`Grant`] says what is *granted*; the run
//! gets the intersection ([`ConnectorManifest::effective`]), and a request the grant
//! does not cover fails with the capability's name and how to grant it.
//!
//! ```toml
//! name = "csv"
//! version = "0.1.0"
//! description = "CSV files in a read-only directory"
//! [requests]
//! dirs = ["/data"]      # guest paths it needs preopened read-only
//!
//! [[requests.http]]     # hosts it calls over wasi:http (`*.domain` and `*` allowed here)
//! host = "*.atlassian.net"
//!
//! [[requests.secrets]]  # secrets it references as `{{secret.NAME}}` in request headers
//! name = "jira_token"
//! hosts = ["*.atlassian.net"]   # the only hosts the host will send it to
//! description = "Jira API token as email:token"
//!
//! [[requests.databases]]  # databases the host opens and logs in to for it (0.2.0)
//! name = "warehouse"
//! kind = "postgres"
//! description = "the analytics replica, read-only"
//!
//! [requests.limits]     # what it needs at most; the operator's limits cap these
//! memory_mb = 256
//! timeout_secs = 900
//! cpu_secs = 600
//! max_output_mb = 4096
//! ```

use serde::{Deserialize, Serialize};

use crate::policy::{HttpGrant, host_matches};
use crate::{Error, Grant, Limits};

/// A parsed, validated `connector.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorManifest {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub requests: Requests,
}

/// Requested capabilities. Absent lists request nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Requests {
    /// Guest paths of read-only directories.
    #[serde(default)]
    pub dirs: Vec<String>,
    /// Outbound HTTP.
    #[serde(default)]
    pub http: Vec<HttpRequest>,
    /// Secrets the host injects.
    #[serde(default)]
    pub secrets: Vec<SecretRequest>,
    /// Databases the host connects to for it (`agnes:connector@0.2.0` `database`).
    #[serde(default)]
    pub databases: Vec<DatabaseRequest>,
    /// Resource limits the connector asks for.
    #[serde(default)]
    pub limits: LimitRequests,
}

/// One database a connector wants the host to open.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseRequest {
    /// The name the connector passes to `database.connect` and the operator grants as
    /// `[grant.databases.NAME]`.
    pub name: String,
    #[serde(default)]
    pub kind: crate::policy::DatabaseKind,
    #[serde(default)]
    pub description: Option<String>,
}

/// One host a connector wants to call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// Exact host, `*.domain` or `*` (any host the operator grants: for connectors whose
    /// endpoint comes from their config).
    pub host: String,
    /// Ports; empty means the scheme's default.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// One of several alternatives (e.g. the file storage of each cloud): the run may go
    /// without a grant for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// One secret a connector references.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    pub name: String,
    /// Host patterns the secret may be sent to (at least one).
    pub hosts: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Limits a connector declares it needs; absent ones take the operator's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRequests {
    pub memory_mb: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub cpu_secs: Option<u64>,
    pub max_output_mb: Option<u64>,
    /// The connector can split one read into this many instances (each reads its share,
    /// told by `ReadContext::partition` in the SDK); the operator's `parallel_reads` and
    /// the cores cap it.
    pub parallel_reads: Option<u32>,
}

impl Requests {
    /// One line per requested capability, for reviewers and diffs:
    /// `dir /data`, `http *.atlassian.net:443`, `secret jira_token -> *.atlassian.net`,
    /// `limit memory_mb = 256`.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.dirs.iter().map(|d| format!("dir {d}")).collect();
        for h in &self.http {
            let optional = if h.optional { " (optional)" } else { "" };
            if h.ports.is_empty() {
                out.push(format!("http {} (default ports){optional}", h.host));
            } else {
                for p in &h.ports {
                    out.push(format!("http {}:{p}{optional}", h.host));
                }
            }
        }
        for s in &self.secrets {
            out.push(format!("secret {} -> {}", s.name, s.hosts.join(", ")));
        }
        for d in &self.databases {
            out.push(format!("database {} ({})", d.name, d.kind));
        }
        let l = &self.limits;
        for (name, v) in [
            ("memory_mb", l.memory_mb),
            ("timeout_secs", l.timeout_secs),
            ("cpu_secs", l.cpu_secs),
            ("max_output_mb", l.max_output_mb),
            ("parallel_reads", l.parallel_reads.map(u64::from)),
        ] {
            if let Some(v) = v {
                out.push(format!("limit {name} = {v}"));
            }
        }
        out
    }
}

/// `+ x` for each line of `new` not in `old`, then `- x` for each line of `old` not in
/// `new`: what a reviewer reads between two versions' requests or imports.
pub fn diff_lines(old: &[String], new: &[String]) -> Vec<String> {
    let mut out: Vec<String> = new
        .iter()
        .filter(|x| !old.contains(x))
        .map(|x| format!("+ {x}"))
        .collect();
    out.extend(
        old.iter()
            .filter(|x| !new.contains(x))
            .map(|x| format!("- {x}")),
    );
    out
}

impl ConnectorManifest {
    /// Reads and parses a `connector.toml`.
    pub fn from_file(path: &std::path::Path) -> Result<ConnectorManifest, Error> {
        let text = std::fs::read_to_string(path).map_err(Error::io("reading", path))?;
        ConnectorManifest::parse(&text)
    }

    pub fn parse(text: &str) -> Result<ConnectorManifest, Error> {
        let m: ConnectorManifest = toml::from_str(text).map_err(|e| Error::Manifest {
            reason: e.to_string(),
        })?;
        let ok_name = !m.name.is_empty()
            && m.name.len() <= 64
            && m.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok_name {
            return Err(Error::Manifest {
                reason: format!("name `{}` must be 1-64 characters of [a-z0-9_-]", m.name),
            });
        }
        for d in &m.requests.dirs {
            if !d.starts_with('/') || d.split('/').any(|c| c == "." || c == "..") {
                return Err(Error::Manifest {
                    reason: format!(
                        "requests.dirs: `{d}` must be an absolute guest path without . or .."
                    ),
                });
            }
        }
        for h in &m.requests.http {
            let rule = HttpGrant {
                host: h.host.clone(),
                ports: h.ports.clone(),
                allow_http: false,
                allow_private: false,
            };
            rule.validate().map_err(|reason| Error::Manifest {
                reason: format!("requests.http: {reason}"),
            })?;
        }
        let mut seen = Vec::new();
        for s in &m.requests.secrets {
            crate::names::validate_name("secret", &s.name).map_err(|e| Error::Manifest {
                reason: format!("requests.secrets: {e}"),
            })?;
            if seen.contains(&&s.name) {
                return Err(Error::Manifest {
                    reason: format!("requests.secrets: `{}` is declared twice", s.name),
                });
            }
            seen.push(&s.name);
            if s.hosts.is_empty() {
                return Err(Error::Manifest {
                    reason: format!(
                        "requests.secrets: `{}` must name the hosts it may be sent to \
                         (`*`: any host the operator grants)",
                        s.name
                    ),
                });
            }
            if let Some(h) = s
                .hosts
                .iter()
                .find(|h| !m.requests.http.iter().any(|r| host_matches(&r.host, h)))
            {
                return Err(Error::Manifest {
                    reason: format!(
                        "requests.secrets: `{}` goes to `{h}`, which no [[requests.http]] covers",
                        s.name
                    ),
                });
            }
        }
        let mut seen = Vec::new();
        for d in &m.requests.databases {
            crate::names::validate_name("database", &d.name).map_err(|e| Error::Manifest {
                reason: format!("requests.databases: {e}"),
            })?;
            if seen.contains(&&d.name) {
                return Err(Error::Manifest {
                    reason: format!("requests.databases: `{}` is declared twice", d.name),
                });
            }
            seen.push(&d.name);
        }
        let l = &m.requests.limits;
        if [l.memory_mb, l.timeout_secs, l.cpu_secs, l.max_output_mb].contains(&Some(0)) {
            return Err(Error::Manifest {
                reason: "requests.limits: a limit of 0 leaves nothing to run with".into(),
            });
        }
        Ok(m)
    }

    /// request ∩ grant and request ∩ operator limits: what the run actually gets.
    ///
    /// - directories: every requested one must be granted; unrequested grants are dropped;
    /// - http: every request must overlap at least one grant; the run gets the granted
    ///   rules some request covers (ports narrowed to the requested ones);
    /// - secrets: every requested one must be granted; it may only go to the hosts the
    ///   request names that are also reachable;
    /// - limits: a request above the operator's limit fails; the run gets the lower value.
    pub fn effective(&self, grant: &Grant, limits: &Limits) -> Result<(Grant, Limits), Error> {
        let not_granted = |capability: String, how: String| Error::NotGranted {
            connector: self.name.clone(),
            capability,
            how,
        };
        for d in &self.requests.dirs {
            if !grant.dirs.iter().any(|g| &g.guest == d) {
                return Err(not_granted(
                    format!("directory {d}"),
                    format!(
                        "add [[grant.dirs]] with guest = \"{d}\" and the host directory to read"
                    ),
                ));
            }
        }
        let dirs = grant
            .dirs
            .iter()
            .filter(|g| self.requests.dirs.contains(&g.guest))
            .cloned()
            .collect();

        let mut http: Vec<HttpGrant> = Vec::new();
        for r in &self.requests.http {
            let mut covered = false;
            for g in &grant.http {
                if !host_matches(&r.host, &g.host) {
                    continue;
                }
                let mut rule = g.clone();
                if !r.ports.is_empty() {
                    // a grant without ports allows the schemes' default ports only
                    let granted = |p: &u16| {
                        if g.ports.is_empty() {
                            *p == 443 || (g.allow_http && *p == 80)
                        } else {
                            g.ports.contains(p)
                        }
                    };
                    rule.ports = r.ports.iter().copied().filter(granted).collect();
                    if rule.ports.is_empty() {
                        continue;
                    }
                }
                covered = true;
                if !http.contains(&rule) {
                    http.push(rule);
                }
            }
            if !covered && !r.optional {
                return Err(not_granted(
                    format!("outbound HTTP to {}", r.host),
                    format!(
                        "add [[grant.http]] with host = \"{}\"",
                        if r.host.starts_with('*') {
                            "<the host to allow>"
                        } else {
                            &r.host
                        }
                    ),
                ));
            }
        }

        let mut secrets = std::collections::BTreeMap::new();
        for s in &self.requests.secrets {
            let Some(g) = grant.secrets.get(&s.name) else {
                return Err(not_granted(
                    format!("secret {}", s.name),
                    format!(
                        "add [grant.secrets.{}] with env = \"VAR\" or file = \"path\"",
                        s.name
                    ),
                ));
            };
            let mut g = g.clone();
            g.hosts = if g.hosts.is_empty() {
                s.hosts.clone()
            } else {
                // the operator narrows: keep the hosts it names that the request covers
                let narrowed: Vec<String> = g
                    .hosts
                    .iter()
                    .filter(|h| s.hosts.iter().any(|r| host_matches(r, h)))
                    .cloned()
                    .collect();
                if narrowed.is_empty() {
                    return Err(not_granted(
                        format!("secret {} for {}", s.name, s.hosts.join(", ")),
                        format!(
                            "[grant.secrets.{}] hosts must include hosts the connector may send it to",
                            s.name
                        ),
                    ));
                }
                narrowed
            };
            secrets.insert(s.name.clone(), g);
        }

        let mut databases = std::collections::BTreeMap::new();
        for d in &self.requests.databases {
            let Some(g) = grant.databases.get(&d.name) else {
                return Err(not_granted(
                    format!("database {} ({})", d.name, d.kind),
                    format!(
                        "add [grant.databases.{}] with host, database, user and password",
                        d.name
                    ),
                ));
            };
            if g.kind != d.kind {
                return Err(not_granted(
                    format!("database {} ({})", d.name, d.kind),
                    format!(
                        "[grant.databases.{}] is kind = \"{}\", the connector speaks {}",
                        d.name, g.kind, d.kind
                    ),
                ));
            }
            databases.insert(d.name.clone(), g.clone());
        }

        let mut effective = limits.clone();
        let l = &self.requests.limits;
        for (name, requested, cap) in [
            ("memory_mb", l.memory_mb, &mut effective.memory_mb),
            ("timeout_secs", l.timeout_secs, &mut effective.timeout_secs),
            ("cpu_secs", l.cpu_secs, &mut effective.cpu_secs),
            (
                "max_output_mb",
                l.max_output_mb,
                &mut effective.max_output_mb,
            ),
        ] {
            if let Some(r) = requested {
                if r > *cap {
                    return Err(not_granted(
                        format!("{name} = {r} (the operator allows {})", *cap),
                        format!("raise [limits] {name} to at least {r}"),
                    ));
                }
                *cap = r;
            }
        }
        // asking for more than the operator allows is not an error: the read is split less
        effective.read_partitions = l
            .parallel_reads
            .map_or(1, |r| r.clamp(1, limits.parallel_reads.max(1)));
        Ok((
            Grant {
                dirs,
                http,
                secrets,
                databases,
            },
            effective,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DirGrant;
    use crate::policy::SecretGrant;

    fn pg_grant() -> crate::DatabaseGrant {
        toml::from_str("host = \"db.example.com\"\ndatabase = \"app\"\nuser = \"reader\"").unwrap()
    }

    #[test]
    fn databases_must_be_granted_with_the_requested_kind() {
        let m = ConnectorManifest::parse(
            "name = \"pg\"\nversion = \"1\"\n[[requests.databases]]\nname = \"warehouse\"\nkind = \"postgres\"\n",
        )
        .unwrap();
        assert_eq!(m.requests.lines(), vec!["database warehouse (postgres)"]);
        let err = effective_grant(&m, &Grant::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("database warehouse") && err.contains("[grant.databases.warehouse]"),
            "{err}"
        );
        let grant = Grant {
            databases: [
                ("warehouse".to_string(), pg_grant()),
                ("other".to_string(), pg_grant()),
            ]
            .into(),
            ..Grant::default()
        };
        let g = effective_grant(&m, &grant).unwrap();
        assert_eq!(g.databases.keys().collect::<Vec<_>>(), ["warehouse"]);
        let g = &g.databases["warehouse"];
        assert_eq!(
            (g.port, g.tls),
            (5432, crate::TlsMode::VerifyFull),
            "secure defaults"
        );
        assert_eq!(
            format!("{g:?}"),
            "postgres://reader@db.example.com:5432/app (tls verify-full)"
        );
        for bad in [
            "[[requests.databases]]\nname = \"Bad Name\"",
            "[[requests.databases]]\nname = \"a\"\n[[requests.databases]]\nname = \"a\"",
            "[[requests.databases]]\nname = \"a\"\nkind = \"mysql\"",
        ] {
            assert!(
                ConnectorManifest::parse(&format!("name = \"x\"\nversion = \"1\"\n{bad}")).is_err(),
                "{bad}"
            );
        }
    }

    fn dir(g: &str) -> DirGrant {
        DirGrant {
            host: "/srv/x".into(),
            guest: g.into(),
        }
    }

    fn effective_grant(m: &ConnectorManifest, g: &Grant) -> Result<Grant, Error> {
        m.effective(g, &Limits::default()).map(|(g, _)| g)
    }

    #[test]
    fn request_intersect_grant() {
        let m = ConnectorManifest::parse(
            "name = \"csv\"\nversion = \"1\"\n[requests]\ndirs = [\"/data\"]\n",
        )
        .unwrap();
        let g = effective_grant(
            &m,
            &Grant {
                dirs: vec![dir("/data"), dir("/secrets")],
                ..Grant::default()
            },
        )
        .unwrap();
        assert_eq!(
            g.dirs,
            vec![dir("/data")],
            "an unrequested grant is not handed over"
        );
        let err = effective_grant(&m, &Grant::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("directory /data") && err.contains("[[grant.dirs]]"),
            "{err}"
        );
        let none = ConnectorManifest::parse("name = \"x\"\nversion = \"1\"\n").unwrap();
        let g = effective_grant(
            &none,
            &Grant {
                dirs: vec![dir("/data")],
                http: vec![rule("api.example.com")],
                secrets: [("token".to_string(), SecretGrant::default())].into(),
                databases: [("db".to_string(), pg_grant())].into(),
            },
        )
        .unwrap();
        assert!(
            g.dirs.is_empty()
                && g.http.is_empty()
                && g.secrets.is_empty()
                && g.databases.is_empty(),
            "{g:?}"
        );
    }

    fn rule(host: &str) -> HttpGrant {
        HttpGrant {
            host: host.into(),
            ports: vec![],
            allow_http: false,
            allow_private: false,
        }
    }

    const JIRA: &str = r#"
        name = "jira"
        version = "1"
        [[requests.http]]
        host = "*.atlassian.net"
        [[requests.secrets]]
        name = "jira_token"
        hosts = ["*.atlassian.net"]
    "#;

    #[test]
    fn http_and_secrets_intersect() {
        let m = ConnectorManifest::parse(JIRA).unwrap();
        let secret = SecretGrant {
            env: Some("JIRA".into()),
            ..SecretGrant::default()
        };
        let grant = Grant {
            http: vec![rule("acme.atlassian.net"), rule("evil.example.com")],
            secrets: [
                ("jira_token".to_string(), secret.clone()),
                ("other".to_string(), secret.clone()),
            ]
            .into(),
            ..Grant::default()
        };
        let g = effective_grant(&m, &grant).unwrap();
        assert_eq!(
            g.http,
            vec![rule("acme.atlassian.net")],
            "only covered hosts"
        );
        assert_eq!(g.secrets.keys().collect::<Vec<_>>(), ["jira_token"]);
        assert_eq!(g.secrets["jira_token"].hosts, ["*.atlassian.net"]);

        // no grant for the requested host: the capability and how to grant it
        let err = effective_grant(
            &m,
            &Grant {
                http: vec![rule("evil.example.com")],
                ..grant.clone()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("outbound HTTP to *.atlassian.net") && err.contains("[[grant.http]]"),
            "{err}"
        );
        let err = effective_grant(
            &m,
            &Grant {
                secrets: Default::default(),
                ..grant
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("secret jira_token") && err.contains("[grant.secrets.jira_token]"),
            "{err}"
        );
    }

    #[test]
    fn the_operator_narrows_a_secret_requested_for_any_host() {
        let m = ConnectorManifest::parse(
            "name = \"x\"\nversion = \"1\"\n[[requests.http]]\nhost = \"*\"\n[[requests.secrets]]\nname = \"t\"\nhosts = [\"*\"]\n",
        )
        .unwrap();
        let grant = |hosts: Vec<String>| Grant {
            http: vec![rule("api.example.com"), rule("other.example.com")],
            secrets: [(
                "t".to_string(),
                SecretGrant {
                    env: Some("T".into()),
                    hosts,
                    ..SecretGrant::default()
                },
            )]
            .into(),
            ..Grant::default()
        };
        let g = effective_grant(&m, &grant(vec![])).unwrap();
        assert_eq!(g.secrets["t"].hosts, ["*"], "any granted host");
        let g = effective_grant(&m, &grant(vec!["api.example.com".into()])).unwrap();
        assert_eq!(
            g.secrets["t"].hosts,
            ["api.example.com"],
            "narrowed by the operator"
        );
        let m = ConnectorManifest::parse(JIRA).unwrap();
        let err = effective_grant(
            &m,
            &Grant {
                http: vec![rule("acme.atlassian.net")],
                secrets: [(
                    "jira_token".to_string(),
                    SecretGrant {
                        env: Some("T".into()),
                        hosts: vec!["evil.example.com".into()],
                        ..SecretGrant::default()
                    },
                )]
                .into(),
                ..Grant::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("secret jira_token"), "{err}");
    }

    #[test]
    fn an_optional_host_may_go_ungranted() {
        let m = ConnectorManifest::parse(
            "name = \"x\"\nversion = \"1\"\n[[requests.http]]\nhost = \"*.keboola.com\"\n[[requests.http]]\nhost = \"*.googleapis.com\"\noptional = true\n",
        )
        .unwrap();
        let g = effective_grant(
            &m,
            &Grant {
                http: vec![rule("connection.keboola.com")],
                ..Grant::default()
            },
        )
        .unwrap();
        assert_eq!(g.http, vec![rule("connection.keboola.com")]);
        assert!(
            m.requests
                .lines()
                .contains(&"http *.googleapis.com (default ports) (optional)".to_string())
        );
        let err = effective_grant(
            &m,
            &Grant {
                http: vec![rule("storage.googleapis.com")],
                ..Grant::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("*.keboola.com"),
            "the required one still is: {err}"
        );
    }

    #[test]
    fn requested_ports_narrow_the_grant() {
        let m = ConnectorManifest::parse(
            "name = \"x\"\nversion = \"1\"\n[[requests.http]]\nhost = \"*\"\nports = [8443]\n",
        )
        .unwrap();
        let mut wide = rule("api.example.com");
        wide.ports = vec![443, 8443];
        let g = effective_grant(
            &m,
            &Grant {
                http: vec![wide],
                ..Grant::default()
            },
        )
        .unwrap();
        assert_eq!(g.http[0].ports, [8443]);
        let err = effective_grant(
            &m,
            &Grant {
                http: vec![rule("api.example.com")],
                ..Grant::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("outbound HTTP to *"), "{err}");
    }

    #[test]
    fn limits_are_capped_by_the_operator() {
        let m = ConnectorManifest::parse(
            "name = \"x\"\nversion = \"1\"\n[requests.limits]\nmemory_mb = 64\ncpu_secs = 10\n",
        )
        .unwrap();
        let (_, l) = m.effective(&Grant::default(), &Limits::default()).unwrap();
        assert_eq!(
            (l.memory_mb, l.cpu_secs),
            (64, 10),
            "the run gets what it asked for"
        );
        assert_eq!(l.timeout_secs, Limits::default().timeout_secs);
        let tight = Limits {
            memory_mb: 32,
            ..Limits::default()
        };
        let err = m
            .effective(&Grant::default(), &tight)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("memory_mb = 64 (the operator allows 32)")
                && err.contains("raise [limits] memory_mb"),
            "{err}"
        );
    }

    #[test]
    fn strict_parsing() {
        for (text, needle) in [
            (
                "name = \"csv\"\nversion = \"1\"\nnetwork = true\n",
                "unknown field `network`",
            ),
            ("name = \"Bad Name\"\nversion = \"1\"\n", "must be 1-64"),
            (
                "name = \"x\"\nversion = \"1\"\n[requests]\ndirs = [\"data\"]\n",
                "absolute",
            ),
            (
                "name = \"x\"\nversion = \"1\"\n[requests]\nhosts = [\"a\"]\n",
                "unknown field `hosts`",
            ),
            (
                "name = \"x\"\nversion = \"1\"\n[[requests.http]]\nhost = \"API.example.com\"\n",
                "lowercase host name",
            ),
            (
                "name = \"x\"\nversion = \"1\"\n[[requests.secrets]]\nname = \"t\"\nhosts = [\"a.com\"]\n",
                "no [[requests.http]] covers",
            ),
            (
                "name = \"x\"\nversion = \"1\"\n[[requests.http]]\nhost = \"*\"\n[[requests.secrets]]\nname = \"t\"\nhosts = []\n",
                "must name the hosts",
            ),
            (
                "name = \"x\"\nversion = \"1\"\n[requests.limits]\nmemory_mb = 0\n",
                "a limit of 0",
            ),
            (
                "name = \"x\"\nversion = \"1\"\n[requests.limits]\ngpu = 1\n",
                "unknown field `gpu`",
            ),
            ("version = \"1\"\n", "missing field `name`"),
        ] {
            let err = ConnectorManifest::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
