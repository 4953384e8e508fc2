//! Business metric files: one metric per YAML file (the original Agnes starter-pack
//! format, e.g. `docs/metrics/revenue/total_revenue.yml`), read into the server's
//! `Metric` shape: `table:` becomes `table_name`, each `sql_<variant>:` a named variant.
//! An index file (one with `categories:`) is skipped.

use std::path::{Path, PathBuf};

use agnes_server::metrics::Metric;
use anyhow::{Context, Result};
use serde_json::Value;

/// Every `*.yml` / `*.yaml` under `dir`, sorted.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads one file: `Ok(None)` for an index file, `Err` with the reason for a bad one.
pub fn read(path: &Path) -> Result<Option<Metric>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading it: {e}"))?;
    let value: Value = serde_yaml::from_str(&text).map_err(|e| format!("not YAML: {e}"))?;
    let Value::Object(mut map) = value else {
        return Err("not a YAML mapping".into());
    };
    if map.contains_key("categories") && !map.contains_key("sql") {
        return Ok(None);
    }
    if let Some(table) = map.remove("table") {
        map.insert("table_name".into(), table);
    }
    let variants: Vec<String> = map
        .keys()
        .filter(|k| k.starts_with("sql_") && *k != "sql_variants")
        .cloned()
        .collect();
    let mut sql_variants = serde_json::Map::new();
    for key in variants {
        let value = map.remove(&key).unwrap_or_default();
        sql_variants.insert(key["sql_".len()..].to_string(), value);
    }
    if !sql_variants.is_empty() {
        map.insert("sql_variants".into(), Value::Object(sql_variants));
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_starter_pack_reads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics");
        let files = super::files(&dir).unwrap();
        assert!(files.len() >= 5, "{files:?}");
        let mut metrics = 0;
        for f in files {
            if let Some(m) = super::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())) {
                assert!(!m.sql.is_empty());
                metrics += 1;
            }
        }
        assert!(metrics >= 5);
    }

    #[test]
    fn bad_files_say_why() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.yml");
        std::fs::write(
            &p,
            "name: x\ncategory: c\ndisplay_name: X\nsql: SELECT 1\ncolour: red\n",
        )
        .unwrap();
        assert!(
            super::read(&p)
                .unwrap_err()
                .contains("unknown field `colour`")
        );
        std::fs::write(&p, "- a\n- b\n").unwrap();
        assert!(super::read(&p).unwrap_err().contains("mapping"));
        std::fs::write(&p, "name: [unclosed\n").unwrap();
        assert!(super::read(&p).unwrap_err().contains("not YAML"));
    }
}
