//! `connector.toml`: what a connector *requests*. Signed together with the component
//! (see [`crate::signature`]). The operator's [`Grant`] says what is *granted*; the run
//! gets the intersection ([`ConnectorManifest::effective_grant`]), and a request the grant
//! does not cover fails with the capability's name and how to grant it.
//!
//! ```toml
//! name = "csv"
//! version = "0.1.0"
//! description = "CSV files in a read-only directory"
//! [requests]
//! dirs = ["/data"]      # guest paths it needs preopened read-only
//! ```

use serde::Deserialize;

use crate::{Error, Grant};

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requests {
    /// Guest paths of read-only directories.
    #[serde(default)]
    pub dirs: Vec<String>,
}

impl ConnectorManifest {
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
        Ok(m)
    }

    /// request ∩ grant: the granted directories the connector asked for. Fails on the first
    /// requested directory the grant does not cover.
    pub fn effective_grant(&self, grant: &Grant) -> Result<Grant, Error> {
        for d in &self.requests.dirs {
            if !grant.dirs.iter().any(|g| &g.guest == d) {
                return Err(Error::NotGranted {
                    connector: self.name.clone(),
                    capability: format!("directory {d}"),
                    how: format!(
                        "add [[grant.dirs]] with guest = \"{d}\" and the host directory to read"
                    ),
                });
            }
        }
        let dirs = grant
            .dirs
            .iter()
            .filter(|g| self.requests.dirs.contains(&g.guest))
            .cloned()
            .collect();
        Ok(Grant { dirs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DirGrant;

    #[test]
    fn request_intersect_grant() {
        let m = ConnectorManifest::parse(
            "name = \"csv\"\nversion = \"1\"\n[requests]\ndirs = [\"/data\"]\n",
        )
        .unwrap();
        let dir = |g: &str| DirGrant {
            host: "/srv/x".into(),
            guest: g.into(),
        };
        let g = m
            .effective_grant(&Grant {
                dirs: vec![dir("/data"), dir("/secrets")],
            })
            .unwrap();
        assert_eq!(
            g.dirs,
            vec![dir("/data")],
            "an unrequested grant is not handed over"
        );
        let err = m
            .effective_grant(&Grant::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("directory /data") && err.contains("[[grant.dirs]]"),
            "{err}"
        );
        let none = ConnectorManifest::parse("name = \"x\"\nversion = \"1\"\n").unwrap();
        assert!(
            none.effective_grant(&Grant {
                dirs: vec![dir("/data")]
            })
            .unwrap()
            .dirs
            .is_empty()
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
            ("version = \"1\"\n", "missing field `name`"),
        ] {
            let err = ConnectorManifest::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
