//! What a run is granted. Deny by default: a [`Grant`] with nothing in it gives the guest
//! no files, no network, no environment, no secrets.

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
