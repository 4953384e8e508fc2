//! The analyst's local workspace:
//!
//! ```text
//! <root>/agnes-workspace.toml          marker (commands find the workspace by walking up)
//! <root>/server/parquet/<table>.parquet   pulled tables, verified by md5
//! <root>/server/manifest.json          what is local: {tables: {name: {hash, size_bytes, rows, updated, source}}}
//! <root>/user/duckdb/analytics.duckdb  one view per pulled table (agnes query runs here)
//! <root>/user/snapshots/               filtered extracts (agnes snapshot)
//! <root>/.claude/settings.json         hooks: SessionStart agnes pull, SessionEnd agnes push
//! <root>/.agnes/pushed.json            what `agnes push` uploaded (name → sha256)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

const MARKER: &str = "agnes-workspace.toml";

/// One table as the server's manifest (and the local manifest) describes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableMeta {
    pub hash: String,
    pub size_bytes: i64,
    pub rows: i64,
    pub updated: String,
    #[serde(default = "local")]
    pub query_mode: String,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// A presigned GET of the file on the object store (scale-out servers); tried before
    /// the server's download, never stored in the workspace.
    #[serde(default, skip_serializing)]
    pub signed_url: Option<String>,
}

fn local() -> String {
    "local".into()
}

/// `{tables: {name: TableMeta}}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub tables: BTreeMap<String, TableMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_time: Option<String>,
}

pub struct Workspace {
    pub root: PathBuf,
}

impl Workspace {
    /// Creates the layout in `root` (idempotent) and installs the Claude Code hook.
    pub fn create(root: &Path) -> Result<Workspace> {
        let ws = Workspace {
            root: root.to_path_buf(),
        };
        for dir in [
            ws.parquet_dir(),
            ws.duckdb_path().parent().unwrap().to_path_buf(),
            ws.snapshots_dir(),
        ] {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let marker = root.join(MARKER);
        if !marker.exists() {
            std::fs::write(
                &marker,
                "# an Agnes analyst workspace (see `agnes --help`)\nversion = 1\n",
            )?;
        }
        ws.install_claude_hook()?;
        ws.rebuild_views(&ws.local_manifest()?)?;
        Ok(ws)
    }

    /// `--workspace`, else `AGNES_WORKSPACE`, else the nearest directory above the current
    /// one that holds `agnes-workspace.toml`.
    pub fn find(explicit: Option<&Path>) -> Result<Workspace> {
        if let Some(p) = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("AGNES_WORKSPACE").map(PathBuf::from))
        {
            if !p.join(MARKER).exists() {
                bail!(
                    "{} is not an Agnes workspace (no {MARKER}); run `agnes init` there",
                    p.display()
                );
            }
            return Ok(Workspace { root: p });
        }
        let cwd = std::env::current_dir()?;
        for dir in cwd.ancestors() {
            if dir.join(MARKER).exists() {
                return Ok(Workspace {
                    root: dir.to_path_buf(),
                });
            }
        }
        bail!(
            "no Agnes workspace here or above {}; run `agnes init` (or pass --workspace)",
            cwd.display()
        )
    }

    pub fn parquet_dir(&self) -> PathBuf {
        self.root.join("server/parquet")
    }
    pub fn manifest_path(&self) -> PathBuf {
        self.root.join("server/manifest.json")
    }
    pub fn duckdb_path(&self) -> PathBuf {
        self.root.join("user/duckdb/analytics.duckdb")
    }
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("user/snapshots")
    }
    pub fn table_path(&self, name: &str) -> PathBuf {
        self.parquet_dir().join(format!("{name}.parquet"))
    }

    pub fn local_manifest(&self) -> Result<Manifest> {
        match std::fs::read_to_string(self.manifest_path()) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("reading {}", self.manifest_path().display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.manifest_path().display())),
        }
    }

    /// Writes the local manifest atomically.
    pub fn save_local_manifest(&self, m: &Manifest) -> Result<()> {
        let path = self.manifest_path();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(m)?)?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Makes `analytics.duckdb` hold exactly one view per local table (and the user's own
    /// tables, which it never touches).
    pub fn rebuild_views(&self, m: &Manifest) -> Result<()> {
        self.update_views(m, None)
    }

    /// Makes the views in `analytics.duckdb` match `m`: drops views of tables no longer
    /// there and (re)creates those in `changed` (their file was replaced: the schema may
    /// differ) or missing; `None` recreates every one. Views of unchanged tables stay, so a
    /// pull that changed nothing costs one query.
    pub fn update_views(&self, m: &Manifest, changed: Option<&[String]>) -> Result<()> {
        let conn = duckdb::Connection::open(self.duckdb_path())
            .with_context(|| format!("opening {}", self.duckdb_path().display()))?;
        let mut stmt = conn.prepare(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal AND comment = 'agnes'",
        )?;
        let existing: std::collections::HashSet<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let changed: Option<std::collections::HashSet<&String>> =
            changed.map(|c| c.iter().collect());
        let mut sql = String::new();
        for v in existing.iter().filter(|v| !m.tables.contains_key(*v)) {
            sql.push_str(&format!("DROP VIEW IF EXISTS \"{v}\";\n"));
        }
        for name in m.tables.keys() {
            let stale =
                changed.as_ref().is_none_or(|c| c.contains(name)) || !existing.contains(name);
            let path = self.table_path(name);
            if !stale || !path.exists() {
                continue;
            }
            sql.push_str(&format!(
                "CREATE OR REPLACE VIEW \"{name}\" AS SELECT * FROM read_parquet({});\nCOMMENT ON VIEW \"{name}\" IS 'agnes';\n",
                agnes_runtime::sink::duckdb::sql_string(&path.to_string_lossy())
            ));
        }
        if sql.is_empty() {
            return Ok(());
        }
        conn.execute_batch(&format!("BEGIN;\n{sql}COMMIT;\n"))
            .context("rebuilding the local views")?;
        Ok(())
    }

    /// Merges the agent hooks into `.claude/settings.json`, keeping the user's own:
    /// SessionStart `agnes pull --quiet || true`, SessionEnd `agnes push --quiet || true`.
    fn install_claude_hook(&self) -> Result<()> {
        const HOOKS: [(&str, &str); 2] = [
            ("SessionStart", "agnes pull --quiet || true"),
            ("SessionEnd", "agnes push --quiet || true"),
        ];
        let path = self.root.join(".claude/settings.json");
        std::fs::create_dir_all(path.parent().unwrap())?;
        let mut settings: serde_json::Value = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!("{} is not valid JSON; fix or remove it", path.display())
            })?,
            Err(_) => serde_json::json!({}),
        };
        let mut changed = false;
        for (event, command) in HOOKS {
            let hooks = settings
                .as_object_mut()
                .context(".claude/settings.json must be a JSON object")?
                .entry("hooks")
                .or_insert_with(|| serde_json::json!({}));
            let list = hooks
                .as_object_mut()
                .context("`hooks` in .claude/settings.json must be an object")?
                .entry(event)
                .or_insert_with(|| serde_json::json!([]));
            if list.to_string().contains(command) {
                continue;
            }
            list.as_array_mut()
                .with_context(|| format!("`hooks.{event}` must be an array"))?
                .push(serde_json::json!({"hooks": [{"type": "command", "command": command}]}));
            changed = true;
        }
        if changed {
            std::fs::write(&path, serde_json::to_vec_pretty(&settings)?)?;
        }
        Ok(())
    }
}
