//! `agnes:sql` sources: materialized tables whose SQL reads other Agnes tables (joins
//! across sources), never run in this process: by the `agnes-sql` WebAssembly component
//! (Apache DataFusion) in the connector runtime (`[sql] engine = "datafusion"`, the
//! default), or by DuckDB in the OS-confined `agnes-sqlbox` process (`"process"`, see
//! `agnes_runtime::sqlbox`).
//!
//! Each table's SQL gets, read-only, the current parquet files of exactly the catalog
//! tables it names — found by parsing it (DuckDB dialect), or, when the parser does not
//! know a DuckDB construct, by every word of it that names a catalog table. Remote tables
//! have no file: naming one is refused when the table is registered. The result is a table
//! of its own, with its own grants: reading it never requires — or gives — a grant on the
//! tables it was computed from.

use std::collections::BTreeSet;

use sqlparser::dialect::DuckDbDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::catalog::Catalog;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::Source;

/// The names `sql` reads from: its relations when it parses, else every word of it.
fn named(sql: &str) -> BTreeSet<String> {
    let dialect = DuckDbDialect {};
    if let Ok(statements) = sqlparser::parser::Parser::parse_sql(&dialect, sql) {
        let mut names = BTreeSet::new();
        let _ = sqlparser::ast::visit_relations(&statements, |name| {
            if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                names.insert(last.value.to_ascii_lowercase());
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        return names;
    }
    Tokenizer::new(&dialect, sql)
        .tokenize()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.value.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The catalog tables `sql` reads, with their current files (remote tables have none and
/// are left out).
pub fn inputs(catalog: &Catalog, sql: &str) -> Vec<(String, std::path::PathBuf)> {
    named(sql)
        .into_iter()
        .filter_map(|n| catalog.tables.get(&n))
        .filter(|t| t.query_mode != "remote" && !t.path.as_os_str().is_empty())
        .map(|t| (t.name.clone(), t.path.clone()))
        .collect()
}

/// Refuses SQL that names a remote table: its data stays at the source.
pub fn check(catalog: &Catalog, table: &str, sql: &str) -> ApiResult<()> {
    let remote: Vec<String> = named(sql)
        .into_iter()
        .filter(|n| {
            catalog
                .tables
                .get(n)
                .is_some_and(|t| t.query_mode == "remote")
        })
        .collect();
    if !remote.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "table `{table}`: its SQL reads remote table(s) {}, whose data stays at the source; \
             SQL over Agnes tables reads local and materialized tables (materialize the part \
             you need at its source first)",
            remote.join(", ")
        )));
    }
    Ok(())
}

/// Runs the tables of `agnes:sql` source `source` with the configured engine, each over
/// the current files of the tables it names; publishes one extract version.
pub async fn run(
    state: &AppState,
    source: &Source,
    tables: &[agnes_runtime::Materialize],
) -> Result<agnes_runtime::RunReport, agnes_runtime::Error> {
    match state.config.sql.engine.as_str() {
        "process" => run_process(state, source, tables).await,
        _ => run_component(state, source, tables).await,
    }
}

/// The `datafusion` engine: the `agnes-sql` component, run by the connector runtime with
/// one read-only preopen, `/tables`: hard links to the current files of the tables the
/// source's SQL names (the union over its tables), in a session directory removed after
/// the run. Each table is a materialized query of that run (`Runtime::run_with`): a
/// failing one keeps its previous version.
async fn run_component(
    state: &AppState,
    source: &Source,
    tables: &[agnes_runtime::Materialize],
) -> Result<agnes_runtime::RunReport, agnes_runtime::Error> {
    let unresolved = |reason: String| agnes_runtime::Error::Unresolved {
        reference: crate::connector::SQL_ENGINE.into(),
        reason,
    };
    let path = state.config.sql_component().map_err(unresolved)?;
    let extracts = state.config.extracts_dir();
    let catalog = state.catalog();
    let mut inputs: Vec<(String, std::path::PathBuf)> = Vec::new();
    for m in tables {
        for input in self::inputs(&catalog, &m.sql) {
            if !inputs.iter().any(|(n, _)| n == &input.0) {
                inputs.push(input);
            }
        }
    }
    std::fs::create_dir_all(&extracts).map_err(agnes_runtime::Error::io("creating", &extracts))?;
    let session = tempfile::Builder::new()
        .prefix(".sql-session-")
        .tempdir_in(&extracts)
        .map_err(agnes_runtime::Error::io(
            "creating a session directory in",
            &extracts,
        ))?;
    for (name, file) in &inputs {
        let link = session.path().join(format!("{name}.parquet"));
        // a hard link: the preopen must hold the file itself (symlinks out of it are
        // refused by WASI), and the published version is immutable
        std::fs::hard_link(file, &link)
            .or_else(|_| std::fs::copy(file, &link).map(|_| ()))
            .map_err(agnes_runtime::Error::io("linking", file))?;
    }
    let request = agnes_runtime::RunRequest {
        source: source.spec.name.clone(),
        extracts_dir: extracts,
        config: "{}".into(),
        grant: agnes_runtime::Grant {
            dirs: vec![agnes_runtime::DirGrant {
                host: session.path().to_path_buf(),
                guest: "/tables".into(),
            }],
            ..agnes_runtime::Grant::default()
        },
        limits: source.spec.limits.clone(),
        streams: Some(Vec::new()),
        state: None,
    };
    // no cost estimate for SQL over local files: the limits bound it
    let materialize: Vec<agnes_runtime::Materialize> = tables
        .iter()
        .map(|m| agnes_runtime::Materialize {
            max_scan_bytes: 0,
            ..m.clone()
        })
        .collect();
    let report = crate::sync::on_blocking_thread(state, move |state| {
        let component = state.runtime.load_file(&path)?;
        crate::sync::run_with(&state, &component, request, &materialize)
    })
    .await;
    drop(session);
    report
}

/// The `process` engine: DuckDB in `agnes-sqlbox`, one process per table.
async fn run_process(
    state: &AppState,
    source: &Source,
    tables: &[agnes_runtime::Materialize],
) -> Result<agnes_runtime::RunReport, agnes_runtime::Error> {
    let sqlbox = state
        .config
        .sqlbox()
        .map_err(|reason| agnes_runtime::Error::Unresolved {
            reference: crate::connector::SQL_ENGINE.into(),
            reason,
        })?;
    let catalog = state.catalog();
    let tables: Vec<agnes_runtime::sqlbox::SqlTable> = tables
        .iter()
        .map(|m| agnes_runtime::sqlbox::SqlTable {
            table: m.table.clone(),
            sql: m.sql.clone(),
            inputs: inputs(&catalog, &m.sql),
        })
        .collect();
    let request = agnes_runtime::RunRequest {
        source: source.spec.name.clone(),
        extracts_dir: state.config.extracts_dir(),
        config: "{}".into(),
        grant: agnes_runtime::Grant::default(),
        limits: source.spec.limits.clone(),
        streams: Some(Vec::new()),
        state: None,
    };
    crate::sync::on_blocking_thread(state, move |state| {
        state.runtime.run_sql(request, &tables, &sqlbox)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_are_found_through_joins_ctes_and_subqueries() {
        let got = named(
            "WITH recent AS (SELECT * FROM Orders WHERE ordered_at > DATE '2024-01-01')
             SELECT c.region, count(*) FROM recent r JOIN main.customers c USING (customer_id)
             WHERE r.product_id IN (SELECT product_id FROM products)",
        );
        assert_eq!(
            got,
            ["customers", "orders", "products", "recent"]
                .map(String::from)
                .into()
        );
    }

    #[test]
    fn sql_the_parser_does_not_know_falls_back_to_words() {
        // DuckDB's FROM-first syntax
        let got = named("FROM orders SELECT count(*) AS n");
        assert!(got.contains("orders"), "{got:?}");
    }
}
