//! Business metrics: canonical definitions of what a number means (`revenue/total_revenue`:
//! its SQL, grain, unit, dimensions, synonyms, notes, constraints), so an analyst — or an
//! agent — never invents metric SQL. Imported by admins from YAML files
//! (`agnes admin metrics import <dir>`, see `docs/metrics/`), validated against the data
//! they describe, and served to a caller only when every table a metric reads is readable
//! by them (`GET /api/metrics`, `GET /api/metrics/{category}/{name}`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

/// One metric definition, in the shape the original Agnes API serves (`id` is
/// `<category>/<name>`; `tables` are the tables its SQL reads).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub category: String,
    pub sql: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `sum`, `count`, `ratio`, `average`, ...
    #[serde(default = "sum", rename = "type")]
    pub metric_type: String,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub grain: Option<String>,
    /// The one table a single-table metric reads (the original's `table_name`).
    #[serde(default)]
    pub table_name: Option<String>,
    /// Every table its SQL reads (computed from the SQL at import).
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub expression: Option<String>,
    #[serde(default)]
    pub time_column: Option<String>,
    #[serde(default)]
    pub dimensions: Vec<String>,
    #[serde(default)]
    pub filters: Vec<String>,
    #[serde(default)]
    pub synonyms: Vec<String>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// Named alternative queries (`sql_by_region: ...` in YAML → `by_region`).
    #[serde(default)]
    pub sql_variants: BTreeMap<String, String>,
    /// Rules that govern the metric (`{rules: [{name, rule, constraint_type, severity}]}`).
    #[serde(default)]
    pub validation: Option<serde_json::Value>,
    /// Where it came from (`yaml_import`, `api`).
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

fn sum() -> String {
    "sum".into()
}

fn slug_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.starts_with(|c: char| c.is_ascii_lowercase())
}

impl Metric {
    /// Checks what can be checked without data and sets `id`.
    pub fn validate(&mut self) -> ApiResult<()> {
        let bad = |m: String| Err(ApiError::BadRequest(m));
        if !slug_ok(&self.category) || !slug_ok(&self.name) {
            return bad(format!(
                "metric `{}/{}`: category and name must be [a-z][a-z0-9_]*",
                agnes_runtime::names::shown(&self.category),
                agnes_runtime::names::shown(&self.name)
            ));
        }
        self.id = format!("{}/{}", self.category, self.name);
        if self.display_name.trim().is_empty() {
            return bad(format!("metric `{}`: display_name is empty", self.id));
        }
        if self.sql.trim().is_empty() {
            return bad(format!("metric `{}`: sql is empty", self.id));
        }
        let text: usize = self.sql.len()
            + self.description.as_ref().map_or(0, String::len)
            + self
                .notes
                .iter()
                .chain(&self.synonyms)
                .map(String::len)
                .sum::<usize>()
            + self.sql_variants.values().map(String::len).sum::<usize>();
        if text > 256 << 10 {
            return bad(format!("metric `{}` is larger than 256 KiB", self.id));
        }
        for variant in self.sql_variants.keys() {
            if !slug_ok(variant) {
                return bad(format!(
                    "metric `{}`: variant `sql_{}` must be [a-z][a-z0-9_]*",
                    self.id,
                    agnes_runtime::names::shown(variant)
                ));
            }
        }
        Ok(())
    }

    /// The SQL texts to check: the main one and every variant.
    pub fn queries(&self) -> impl Iterator<Item = (&str, &str)> {
        std::iter::once(("sql", self.sql.as_str())).chain(
            self.sql_variants
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }
}

/// What an import did with one metric.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImportOutcome {
    pub id: String,
    /// `imported` or `refused`.
    pub status: String,
    pub error: Option<String>,
    pub tables: Vec<String>,
}
