//! A run config file: the connector's own config plus what the operator grants the run.
//!
//! ```toml
//! source = "demo"            # optional: defaults to the output directory's name
//!
//! [config]                   # handed to the connector as JSON
//! dir = "/data"
//!
//! [[grant.dirs]]             # preopened read-only; relative to this file
//! host = "data"
//! guest = "/data"
//!
//! [limits]                   # optional, see Limits
//! timeout_secs = 600
//! ```
//!
//! Unknown keys are errors. A `.json` file with the same shape is accepted too.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Grant, Limits};

/// A parsed, validated run config.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    pub source: Option<String>,
    /// The connector's config as JSON text.
    pub config: String,
    /// The grant, host paths resolved against the file's directory.
    pub grant: Grant,
    pub limits: Limits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    source: Option<String>,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(default)]
    grant: Grant,
    #[serde(default)]
    limits: Limits,
}

impl RunConfig {
    /// Reads and validates a run config file.
    pub fn from_file(path: &Path) -> Result<RunConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(Error::io("reading", path))?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let is_json = path.extension().is_some_and(|e| e == "json");
        Self::parse(&text, is_json, &base).map_err(|reason| Error::Config {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses config text; host paths are resolved against `base`.
    pub fn parse(text: &str, json: bool, base: &Path) -> Result<RunConfig, String> {
        let raw: RawConfig = if json {
            serde_json::from_str(text).map_err(|e| e.to_string())?
        } else {
            toml::from_str(text).map_err(|e| e.to_string())?
        };
        if let Some(source) = &raw.source {
            crate::names::validate_name("source", source).map_err(|e| e.to_string())?;
        }
        let config = raw.config.unwrap_or_else(|| serde_json::json!({}));
        if !config.is_object() {
            return Err("[config] must be a table (a JSON object)".into());
        }
        let grant = raw.grant.resolve(base).map_err(|e| e.to_string())?;
        if raw.limits.memory_mb == 0 || raw.limits.timeout_secs == 0 {
            return Err("limits.memory_mb and limits.timeout_secs must be at least 1".into());
        }
        Ok(RunConfig {
            source: raw.source,
            config: config.to_string(),
            grant,
            limits: raw.limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tests/ui/<case>.toml` must fail with exactly `tests/ui/<case>.err`
    /// (set `UPDATE_UI=1` to rewrite the .err files).
    #[test]
    fn ui_cases() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
        let mut cases = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            cases += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            let err = RunConfig::parse(&text, false, &dir)
                .expect_err(&format!("{} should fail", path.display()));
            // machine-independent: the checkout's location is not part of the message
            let err = err.replace(&dir.display().to_string(), "$DIR");
            let expected_path = path.with_extension("err");
            if std::env::var_os("UPDATE_UI").is_some() {
                std::fs::write(&expected_path, format!("{err}\n")).unwrap();
            }
            let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
            assert_eq!(err.trim_end(), expected.trim_end(), "{}", path.display());
        }
        assert!(cases >= 5, "expected the ui cases in {}", dir.display());
    }

    #[test]
    fn a_full_config_parses() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("data")).unwrap();
        let text = r#"
            source = "demo"
            [config]
            dir = "/data"
            infer_rows = 5
            [[grant.dirs]]
            host = "data"
            guest = "/data"
            [limits]
            timeout_secs = 5
        "#;
        let c = RunConfig::parse(text, false, tmp.path()).unwrap();
        assert_eq!(c.source.as_deref(), Some("demo"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&c.config).unwrap()["infer_rows"],
            5
        );
        assert_eq!(c.grant.dirs[0].guest, "/data");
        assert_eq!(c.limits.timeout_secs, 5);
        assert_eq!(c.limits.memory_mb, Limits::default().memory_mb);
    }

    #[test]
    fn network_and_secret_grants_parse() {
        let tmp = tempfile::tempdir().unwrap();
        let text = r#"
            [config]
            base_url = "https://api.example.com"
            [[grant.http]]
            host = "api.example.com"
            [[grant.http]]
            host = "*.internal.example"
            ports = [8443]
            allow_private = true
            [grant.secrets.api_token]
            file = "secrets/token"
            hosts = ["api.example.com"]
            [limits]
            cpu_secs = 60
        "#;
        let c = RunConfig::parse(text, false, tmp.path()).unwrap();
        assert_eq!(c.grant.http.len(), 2);
        assert_eq!(c.grant.http[1].ports, [8443]);
        assert!(c.grant.http[1].allow_private && !c.grant.http[0].allow_http);
        let s = &c.grant.secrets["api_token"];
        assert_eq!(
            s.file.as_deref(),
            Some(tmp.path().join("secrets/token").as_path()),
            "relative to the config"
        );
        assert_eq!(s.hosts, ["api.example.com"]);
        assert_eq!(c.limits.cpu_secs, 60);
    }

    #[test]
    fn an_empty_config_grants_nothing() {
        let c = RunConfig::parse("", false, Path::new(".")).unwrap();
        assert!(c.grant.dirs.is_empty());
        assert_eq!(c.config, "{}");
    }
}
