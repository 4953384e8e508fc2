//! # postgres connector (`agnes:connector@0.2.0`)
//!
//! Tables and views of the configured schemas of one PostgreSQL database, which the host
//! opens and logs in to (`[[requests.databases]] name = "main"`): the connector never sees
//! a password, and every session it gets is read-only.
//!
//! - `discover`: relations (tables, views, materialized views, partitioned and foreign
//!   tables) the role may select, with Arrow types from the catalog (see
//!   [`agnes_connector_sdk::postgres::arrow`]) and primary keys;
//! - `read`: `COPY (SELECT ...) TO STDOUT (FORMAT binary)` per table, all tables in one
//!   `REPEATABLE READ` snapshot; a table with a configured cursor column and a primary key
//!   syncs incrementally (rows whose cursor is greater than the committed one);
//! - `query`: the host's structured request rendered into SQL with projection, filter,
//!   order and limit pushed down and literals bound as parameters; or admin SQL run as
//!   given (read-only);
//! - `estimate`: `EXPLAIN (FORMAT JSON)` of the same statement.
//!
//! Config:
//!
//! ```json
//! {"schemas": ["public"], "tables": ["orders", "customers"],
//!  "cursors": {"orders": "updated_at"}, "batch_rows": 65536}
//! ```
//!
//! Table names: a relation's name when one schema is configured, `<schema>_<name>`
//! otherwise, lowercased with other characters as `_`.

use std::collections::BTreeMap;

use agnes_connector_sdk::postgres::Client;
use agnes_connector_sdk::postgres::arrow::{BatchBuilder, Column, array_element};
use agnes_connector_sdk::query::postgres::{Literals, quote_ident, quote_literal, render};
use agnes_connector_sdk::{
    Connector, Error, Estimate, Level, QueryRequest, ReadContext, Spec, Table, log,
};
use serde::Deserialize;

/// The database this connector requests in `connector.toml`.
pub const DATABASE: &str = "main";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Schemas to offer.
    #[serde(default = "default_schemas")]
    pub schemas: Vec<String>,
    /// Only these relations (by PostgreSQL name); all when absent.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// Cursor column per table (Agnes name): with a primary key, the table syncs
    /// incrementally. The column should be NOT NULL and only grow as rows change.
    #[serde(default)]
    pub cursors: BTreeMap<String, String>,
    /// Rows per emitted batch.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
}

fn default_schemas() -> Vec<String> {
    vec!["public".into()]
}

fn default_batch_rows() -> usize {
    65_536
}

/// One column as the catalog describes it.
#[derive(Debug, Clone)]
pub struct PgColumn {
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
    pub elem_oid: u32,
    pub not_null: bool,
}

impl PgColumn {
    fn column(&self) -> Column {
        Column::new(
            &self.name,
            self.type_oid,
            self.typmod,
            self.elem_oid,
            !self.not_null,
        )
    }
}

/// One relation the connector offers.
#[derive(Debug, Clone)]
pub struct Relation {
    pub schema: String,
    pub name: String,
    /// Its Agnes table name.
    pub table: String,
    pub description: Option<String>,
    pub columns: Vec<PgColumn>,
    pub primary_key: Vec<String>,
}

impl Relation {
    /// `"schema"."name"`.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// The SELECT list reading every column: types read as text are cast.
    fn select_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| {
                let col = c.column();
                if col.binary() {
                    quote_ident(&c.name)
                } else {
                    format!("{}::text AS {}", quote_ident(&c.name), quote_ident(&c.name))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The Agnes name of `schema.name`: `[a-z][a-z0-9_]{0,62}`.
pub fn table_name(schema: &str, name: &str, qualify: bool) -> String {
    let raw = if qualify {
        format!("{schema}_{name}")
    } else {
        name.to_string()
    };
    let mut out: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert_str(0, "t_");
    }
    out.truncate(63);
    out
}

fn in_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| quote_literal(s))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Config {
    fn validate(&self) -> Result<(), Error> {
        if self.schemas.is_empty() {
            return Err(Error::Config(
                "`schemas` must name at least one schema".into(),
            ));
        }
        if self.batch_rows == 0 || self.batch_rows > 1 << 20 {
            return Err(Error::Config("`batch_rows` must be 1 to 1048576".into()));
        }
        Ok(())
    }
}

/// The relations of the configured schemas the role may read.
pub fn catalog(
    pg: &mut Client<impl std::io::Read + std::io::Write>,
    config: &Config,
) -> Result<Vec<Relation>, Error> {
    let schemas = in_list(&config.schemas);
    let rows = pg.simple_query(&format!(
        "SELECT n.nspname, c.relname, COALESCE(obj_description(c.oid, 'pg_class'), ''), \
                a.attname, a.atttypid::int8, a.atttypmod, a.attnotnull::text, \
                CASE WHEN t.typcategory = 'A' THEN t.typelem::int8 ELSE 0 END \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND NOT c.relispartition \
           AND n.nspname IN ({schemas}) AND has_table_privilege(c.oid, 'SELECT') \
         ORDER BY n.nspname, c.relname, a.attnum"
    ))?;
    let keys = pg.simple_query(&format!(
        "SELECT n.nspname, c.relname, a.attname \
         FROM pg_catalog.pg_index i \
         JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) \
         WHERE i.indisprimary AND n.nspname IN ({schemas}) \
         ORDER BY 1, 2, array_position(i.indkey::int2[], a.attnum)"
    ))?;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let num = |v: &Option<String>| -> Result<i64, Error> {
        text(v)
            .parse()
            .map_err(|_| Error::Source("the catalog answered a non-number".into()))
    };
    let qualify = config.schemas.len() > 1;
    let mut out: Vec<Relation> = Vec::new();
    for r in &rows {
        let (schema, name) = (text(&r[0]), text(&r[1]));
        if let Some(only) = &config.tables
            && !only.contains(&name)
        {
            continue;
        }
        let same = out
            .last()
            .is_some_and(|l| l.schema == schema && l.name == name);
        if !same {
            let description = Some(text(&r[2])).filter(|d| !d.is_empty());
            out.push(Relation {
                table: table_name(&schema, &name, qualify),
                schema,
                name,
                description,
                columns: Vec::new(),
                primary_key: Vec::new(),
            });
        }
        out.last_mut().expect("pushed").columns.push(PgColumn {
            name: text(&r[3]),
            type_oid: num(&r[4])? as u32,
            typmod: num(&r[5])? as i32,
            not_null: text(&r[6]) == "true",
            elem_oid: num(&r[7])? as u32,
        });
    }
    for k in &keys {
        if let Some(rel) = out
            .iter_mut()
            .find(|r| Some(&r.schema) == k[0].as_ref() && Some(&r.name) == k[1].as_ref())
        {
            rel.primary_key.push(text(&k[2]));
        }
    }
    // two relations whose names fold to the same table name: keep the first
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|r| {
        let fresh = seen.insert(r.table.clone());
        if !fresh {
            log(
                Level::Warn,
                &format!(
                    "{}.{} is skipped: its table name `{}` is taken",
                    r.schema, r.name, r.table
                ),
            );
        }
        fresh
    });
    Ok(out)
}

fn table_of(config: &Config, rel: &Relation) -> Result<Table, Error> {
    let columns: Vec<Column> = rel.columns.iter().map(PgColumn::column).collect();
    let mut t = Table::new(
        &rel.table,
        agnes_connector_sdk::postgres::arrow::schema(&columns),
    )
    .primary_key(rel.primary_key.clone());
    t.description = rel
        .description
        .clone()
        .or_else(|| Some(format!("{}.{}", rel.schema, rel.name)));
    if let Some(cursor) = config.cursors.get(&rel.table) {
        if !rel.columns.iter().any(|c| &c.name == cursor) {
            return Err(Error::Config(format!(
                "`cursors.{}`: `{cursor}` is not a column of {}.{}",
                rel.table, rel.schema, rel.name
            )));
        }
        if rel.primary_key.is_empty() {
            return Err(Error::Config(format!(
                "`cursors.{}`: {}.{} has no primary key, so changed rows cannot be merged",
                rel.table, rel.schema, rel.name
            )));
        }
        t = t.cursor_field(cursor.clone());
    }
    Ok(t)
}

/// Emits every `batch_rows` rows of `rows` to `table`, then the rest (or the schema).
struct Emitter<'a> {
    ctx: &'a mut ReadContext,
    table: &'a str,
    builder: BatchBuilder,
    batch_rows: usize,
}

impl Emitter<'_> {
    fn row(&mut self, row: &agnes_connector_sdk::postgres::Row<'_>) -> Result<(), Error> {
        self.builder.append(row)?;
        if self.builder.len() >= self.batch_rows {
            let batch = self.builder.finish()?;
            self.ctx.emit(self.table, &batch)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(), Error> {
        let batch = self.builder.finish()?;
        self.ctx.emit(self.table, &batch)
    }
}

fn find<'a>(rels: &'a [Relation], table: &str) -> Result<&'a Relation, Error> {
    rels.iter()
        .find(|r| r.table == table)
        .ok_or_else(|| Error::Config(format!("no relation is offered as table `{table}`")))
}

/// The statement of a request, its parameters and (for a structured request) its columns.
fn statement(
    rels: &[Relation],
    request: &QueryRequest,
) -> Result<(String, Vec<String>, Option<Vec<Column>>), Error> {
    if let Some(sql) = &request.sql {
        return Ok((sql.clone(), Vec::new(), None));
    }
    let rel = find(rels, &request.table)?;
    let all: Vec<String> = rel.columns.iter().map(|c| c.name.clone()).collect();
    let names = if request.request.columns.is_empty() {
        all.clone()
    } else {
        request.request.columns.clone()
    };
    let columns = names
        .iter()
        .map(|n| {
            rel.columns
                .iter()
                .find(|c| &c.name == n)
                .map(PgColumn::column)
                .ok_or_else(|| Error::Config(format!("`{n}` is not a column of `{}`", rel.table)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let stmt = render(
        &request.request,
        &rel.quoted(),
        &all,
        &|c| quote_ident(c),
        Literals::Bind,
    );
    Ok((stmt.sql, stmt.params, Some(columns)))
}

pub struct Postgres;

impl Connector for Postgres {
    type Config = Config;

    fn spec() -> Spec {
        Spec::new("postgres", env!("CARGO_PKG_VERSION"))
            .supports_query()
            .supports_estimate()
            .config_schema(serde_json::json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "schemas": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                    "tables": {"type": "array", "items": {"type": "string", "minLength": 1}},
                    "cursors": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
                    "batch_rows": {"type": "integer", "minimum": 1, "maximum": 1048576}
                }
            }))
    }

    fn check(config: &Config) -> Result<(), Error> {
        config.validate()?;
        let mut pg = Client::connect(DATABASE)?;
        pg.simple_query("SELECT 1")?;
        Ok(())
    }

    fn discover(config: &Config) -> Result<Vec<Table>, Error> {
        config.validate()?;
        let mut pg = Client::connect(DATABASE)?;
        let rels = catalog(&mut pg, config)?;
        for t in config.cursors.keys() {
            if !rels.iter().any(|r| &r.table == t) {
                return Err(Error::Config(format!("`cursors.{t}`: no such table")));
            }
        }
        rels.iter().map(|r| table_of(config, r)).collect()
    }

    fn read(config: &Config, ctx: &mut ReadContext) -> Result<(), Error> {
        config.validate()?;
        let mut pg = Client::connect(DATABASE)?;
        let rels = catalog(&mut pg, config)?;
        let previous: BTreeMap<String, String> = match ctx.state() {
            Some(s) => serde_json::from_str(s)
                .map_err(|e| Error::Internal(format!("the committed state is not ours: {e}")))?,
            None => BTreeMap::new(),
        };
        let mut state = previous.clone();
        // one snapshot for every table: a consistent copy, and a cursor maximum that
        // matches exactly the rows copied
        pg.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        for stream in ctx.streams().to_vec() {
            let rel = find(&rels, &stream)?;
            let table = table_of(config, rel)?;
            let mut select = format!("SELECT {} FROM {}", rel.select_list(), rel.quoted());
            if let Some(cursor) = &table.cursor_field {
                let q = quote_ident(cursor);
                let max =
                    pg.simple_query(&format!("SELECT max({q})::text FROM {}", rel.quoted()))?;
                if let Some(prev) = previous.get(&stream) {
                    select.push_str(&format!(" WHERE {q} > {}", quote_literal(prev)));
                }
                if let Some(Some(max)) = max.first().and_then(|r| r.first()) {
                    state.insert(stream.clone(), max.clone());
                }
            }
            let columns: Vec<Column> = rel.columns.iter().map(PgColumn::column).collect();
            let mut emitter = Emitter {
                ctx: &mut *ctx,
                table: &stream,
                builder: BatchBuilder::new(&columns),
                batch_rows: config.batch_rows,
            };
            pg.copy_out_binary(&select, &mut |row| emitter.row(row))?;
            emitter.finish()?;
        }
        pg.execute("COMMIT")?;
        if !state.is_empty() {
            ctx.set_state(serde_json::to_string(&state).expect("a map of strings"));
        }
        Ok(())
    }

    fn query(config: &Config, request: &QueryRequest, ctx: &mut ReadContext) -> Result<u64, Error> {
        config.validate()?;
        let mut pg = Client::connect(DATABASE)?;
        let rels = if request.sql.is_some() {
            Vec::new()
        } else {
            catalog(&mut pg, config)?
        };
        let (sql, params, columns) = statement(&rels, request)?;
        let columns = match columns {
            Some(c) => c,
            None => pg
                .describe(&sql, 0)?
                .into_iter()
                .map(|c| {
                    Column::new(
                        c.name,
                        c.type_oid,
                        c.typmod,
                        array_element(c.type_oid),
                        true,
                    )
                })
                .collect(),
        };
        let binary: Vec<bool> = columns.iter().map(Column::binary).collect();
        let mut emitter = Emitter {
            ctx,
            table: &request.table,
            builder: BatchBuilder::new(&columns),
            batch_rows: config.batch_rows,
        };
        let params: Vec<Option<&str>> = params.iter().map(|p| Some(p.as_str())).collect();
        let rows = pg.query_rows(&sql, &params, &binary, &mut |row| emitter.row(row))?;
        emitter.finish()?;
        Ok(rows)
    }

    fn estimate(config: &Config, request: &QueryRequest) -> Result<Estimate, Error> {
        config.validate()?;
        let mut pg = Client::connect(DATABASE)?;
        let rels = if request.sql.is_some() {
            Vec::new()
        } else {
            catalog(&mut pg, config)?
        };
        let (sql, params, _) = statement(&rels, request)?;
        let params: Vec<Option<&str>> = params.iter().map(|p| Some(p.as_str())).collect();
        let mut plan = String::new();
        pg.query_rows(
            &format!("EXPLAIN (FORMAT JSON, VERBOSE) {sql}"),
            &params,
            &[false],
            &mut |row| {
                plan = String::from_utf8_lossy(row.get(0).unwrap_or_default()).into_owned();
                Ok(())
            },
        )?;
        let plan: serde_json::Value = serde_json::from_str(&plan).map_err(|e| {
            Error::Source(format!("EXPLAIN answered something other than JSON: {e}"))
        })?;
        let root = &plan[0]["Plan"];
        let rows = root["Plan Rows"].as_f64().map(|r| r.max(0.0) as u64);
        let width = root["Plan Width"].as_f64().map(|w| w.max(0.0) as u64);
        let result_bytes = rows.zip(width).map(|(r, w)| r.saturating_mul(w));
        let mut scanned = Vec::new();
        collect_seq_scans(root, &mut scanned);
        let mut scan_bytes = 0u64;
        for (schema, relation) in &scanned {
            let size = pg.simple_query(&format!(
                "SELECT pg_table_size({}::regclass)",
                quote_literal(&format!(
                    "{}.{}",
                    quote_ident(schema),
                    quote_ident(relation)
                ))
            ))?;
            scan_bytes += size
                .first()
                .and_then(|r| r.first().cloned().flatten())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(Estimate {
            rows,
            scan_bytes: Some(if scanned.is_empty() {
                result_bytes.unwrap_or(0)
            } else {
                scan_bytes
            }),
            result_bytes,
            exact: false,
        })
    }
}

/// `(schema, relation)` of every sequential scan in an EXPLAIN (FORMAT JSON, VERBOSE) plan.
fn collect_seq_scans(node: &serde_json::Value, out: &mut Vec<(String, String)>) {
    if node["Node Type"].as_str() == Some("Seq Scan")
        && let (Some(s), Some(r)) = (node["Schema"].as_str(), node["Relation Name"].as_str())
        && !out.iter().any(|(a, b)| a == s && b == r)
    {
        out.push((s.to_string(), r.to_string()));
    }
    if let Some(children) = node["Plans"].as_array() {
        for c in children {
            collect_seq_scans(c, out);
        }
    }
}

agnes_connector_sdk::export_connector!(Postgres);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_safe_identifiers() {
        assert_eq!(table_name("public", "Orders", false), "orders");
        assert_eq!(
            table_name("sales", "order items", true),
            "sales_order_items"
        );
        assert_eq!(table_name("public", "2024", false), "t_2024");
        assert_eq!(table_name("public", &"x".repeat(100), false).len(), 63);
    }

    #[test]
    fn seq_scans_are_found_in_a_plan() {
        let plan: serde_json::Value = serde_json::from_str(
            r#"[{"Plan": {"Node Type": "Hash Join", "Plans": [
                {"Node Type": "Seq Scan", "Schema": "public", "Relation Name": "a"},
                {"Node Type": "Index Scan", "Schema": "public", "Relation Name": "b"}]}}]"#,
        )
        .unwrap();
        let mut out = Vec::new();
        collect_seq_scans(&plan[0]["Plan"], &mut out);
        assert_eq!(out, vec![("public".to_string(), "a".to_string())]);
    }

    #[test]
    fn config_is_strict() {
        let c: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(c.schemas, vec!["public"]);
        assert!(serde_json::from_str::<Config>(r#"{"password": "x"}"#).is_err());
        let c: Config = serde_json::from_str(r#"{"schemas": []}"#).unwrap();
        assert!(c.validate().is_err());
    }
}
