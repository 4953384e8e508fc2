//! The analyst's commands besides `pull`: `init`, `query`, `catalog`, `schema`,
//! `describe`, `disk-info`. Discovery first: catalog → schema → describe → query.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::client::{ServerArgs, save_credentials};
use crate::output::{Output, bytes, count};
use crate::workspace::{Manifest, Workspace};

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Directory of the new workspace (default: the current directory).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Register the server's plugin marketplace with Claude Code: git is told to send your
    /// token to the marketplace URL only (`http.<url>.extraHeader` in your global git
    /// config), then `claude plugin marketplace add <url>` runs if `claude` is installed.
    /// Without it, init prints the two commands.
    #[arg(long)]
    register_marketplace: bool,
}

/// Verifies the token, saves the credentials, creates the workspace.
pub fn init(args: InitArgs, out: &Output) -> Result<()> {
    let client = args.server.client()?;
    let manifest: Manifest = client
        .get("/api/sync/manifest")
        .context("verifying the token against the server")?;
    let (server, token) = (
        args.server
            .server
            .clone()
            .or_else(|| std::env::var("AGNES_SERVER").ok()),
        args.server
            .token
            .clone()
            .or_else(|| std::env::var("AGNES_TOKEN").ok()),
    );
    let config_dir = match (server, token) {
        (Some(s), Some(t)) => Some(save_credentials(&s, &t)?),
        _ => None,
    };
    let ws = Workspace::create(&args.dir)?;
    let claude_md = write_claude_md(&client, &ws.root)?;
    let marketplace = marketplace(&client, args.register_marketplace)?;
    out.print(
        || {
            format!(
                "workspace ready in {}; {} tables available{}; CLAUDE.md {claude_md}\nnext: agnes pull, then agnes catalog → agnes schema <t> → agnes describe <t> → agnes query \"...\"{}",
                ws.root.display(),
                manifest.tables.len(),
                config_dir.as_ref().map(|d| format!("; credentials saved in {}", d.display())).unwrap_or_default(),
                marketplace.as_ref().map(|m| format!("\n{}", m["text"].as_str().unwrap_or_default())).unwrap_or_default()
            )
        },
        || json!({"workspace": ws.root, "tables": manifest.tables.len(), "config_dir": config_dir, "claude_md": claude_md, "marketplace": marketplace}),
    );
    Ok(())
}

/// The server's plugin marketplace for this user: what to run to register it with Claude
/// Code, or (with `register`) run it. `None` when the server has no marketplace endpoint.
fn marketplace(client: &crate::client::Client, register: bool) -> Result<Option<Value>> {
    let Ok(info) = client.get::<Value>("/marketplace/info") else {
        return Ok(None);
    };
    let url = client.url("/marketplace.git");
    let plugins = info["plugins"].as_array().map_or(0, Vec::len);
    let name = info["name"].as_str().unwrap_or("agnes").to_string();
    let header_key = format!("http.{url}.extraHeader");
    let add = format!("claude plugin marketplace add {url}");
    if !register {
        let text = format!(
            "plugin marketplace `{name}`: {plugins} plugin(s) for you; register it with Claude Code once (or rerun init with --register-marketplace):\n  git config --global {header_key} \"Authorization: Bearer <your token>\"\n  {add}"
        );
        return Ok(Some(
            json!({"name": name, "url": url, "plugins": plugins, "registered": false, "text": text}),
        ));
    }
    let status = std::process::Command::new("git")
        .args([
            "config",
            "--global",
            "--replace-all",
            &header_key,
            &format!("Authorization: {}", client.authorization()),
        ])
        .status()
        .context("running git config")?;
    if !status.success() {
        bail!("git config --global {header_key} failed ({status})");
    }
    let claude = std::process::Command::new("claude")
        .args(["plugin", "marketplace", "add", &url])
        .output();
    let (added, text) = match claude {
        Ok(o) if o.status.success() => (
            true,
            format!(
                "plugin marketplace `{name}` ({plugins} plugin(s)) registered with Claude Code: install with `/plugin install <plugin>@{name}`"
            ),
        ),
        Ok(o) => (
            false,
            format!(
                "git now authenticates to {url}; `{add}` failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        ),
        Err(_) => (
            false,
            format!(
                "git now authenticates to {url}; Claude Code is not on PATH: run `{add}` once it is"
            ),
        ),
    };
    Ok(Some(
        json!({"name": name, "url": url, "plugins": plugins, "registered": added, "git_configured": true, "text": text}),
    ))
}

/// The first line of a CLAUDE.md that `agnes init` wrote (and may rewrite).
const WELCOME_MARKER: &str = "<!-- agnes:welcome";

/// Writes `<workspace>/CLAUDE.md` from the server's `/api/welcome` — unless the file exists
/// and is not one `agnes init` wrote (the user's own is never clobbered). Returns what it did.
fn write_claude_md(client: &crate::client::Client, root: &Path) -> Result<&'static str> {
    let path = root.join("CLAUDE.md");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && !existing.starts_with(WELCOME_MARKER)
    {
        return Ok("kept (yours)");
    }
    let server = client.url("");
    let r: Value = client
        .get(&format!("/api/welcome?server_url={}", encode(&server)))
        .context("fetching the workspace CLAUDE.md (GET /api/welcome)")?;
    let content = r["content"]
        .as_str()
        .context("/api/welcome answered no content")?;
    let tmp = root.join(".CLAUDE.md.tmp");
    std::fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok("written")
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL (DuckDB dialect).
    sql: String,
    /// Run it on the server over the tables you may read, instead of the local workspace.
    #[arg(long)]
    remote: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// At most this many rows (remote queries; the server caps it too).
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    workspace: Option<PathBuf>,
}

pub fn query(args: QueryArgs, out: &Output) -> Result<()> {
    let format = if out.json { Format::Json } else { args.format };
    if args.remote {
        let client = args.server.client()?;
        let r: Value = client.post("/api/query", &json!({"sql": args.sql, "limit": args.limit}))?;
        let columns: Vec<String> = r["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect();
        let rows: Vec<Vec<Value>> = r["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| row.as_array().cloned().unwrap_or_default())
            .collect();
        if !out.quiet {
            print!("{}", render(&columns, &rows, format)?);
            if r["truncated"] == true {
                eprintln!("(truncated at {} rows; raise --limit)", rows.len());
            }
        }
        return Ok(());
    }
    let ws = Workspace::find(args.workspace.as_deref())?;
    let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly)?;
    let conn = duckdb::Connection::open_with_flags(ws.duckdb_path(), config)
        .context("opening the local database; run `agnes pull` first")?;
    let mut stmt = conn
        .prepare(&args.sql)
        .map_err(|e| anyhow::anyhow!("{e}; list tables with `agnes catalog`"))?;
    let batches: Vec<duckdb::arrow::record_batch::RecordBatch> = stmt.query_arrow([])?.collect();
    if out.quiet {
        return Ok(());
    }
    match format {
        // the same table layout as every other command (and `--remote`)
        Format::Table => {
            let columns: Vec<String> = match batches.first() {
                Some(b) => b
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
                None => stmt.column_names(),
            };
            let mut json = Vec::new();
            {
                let mut w = arrow_json::ArrayWriter::new(&mut json);
                let refs: Vec<&_> = batches.iter().collect();
                w.write_batches(&refs)?;
                w.finish()?;
            }
            let objects: Vec<serde_json::Map<String, Value>> = if json.is_empty() {
                vec![]
            } else {
                serde_json::from_slice(&json)?
            };
            let rows: Vec<Vec<Value>> = objects
                .iter()
                .map(|o| {
                    columns
                        .iter()
                        .map(|c| o.get(c).cloned().unwrap_or(Value::Null))
                        .collect()
                })
                .collect();
            print!("{}", render(&columns, &rows, Format::Table)?);
        }
        Format::Csv => {
            let mut w = arrow_csv::Writer::new(std::io::stdout());
            for b in &batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = arrow_json::ArrayWriter::new(std::io::stdout());
            let refs: Vec<&_> = batches.iter().collect();
            w.write_batches(&refs)?;
            w.finish()?;
            println!();
        }
    }
    Ok(())
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders JSON rows as a table, CSV or JSON objects.
pub(crate) fn render(columns: &[String], rows: &[Vec<Value>], format: Format) -> Result<String> {
    Ok(match format {
        Format::Json => {
            let objects: Vec<Value> = rows
                .iter()
                .map(|r| Value::Object(columns.iter().cloned().zip(r.iter().cloned()).collect()))
                .collect();
            format!("{}\n", serde_json::to_string(&objects)?)
        }
        Format::Csv => {
            let quote = |s: String| {
                if s.contains([',', '"', '\n']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s
                }
            };
            let mut s = columns
                .iter()
                .cloned()
                .map(quote)
                .collect::<Vec<_>>()
                .join(",")
                + "\n";
            for r in rows {
                s.push_str(
                    &(r.iter()
                        .map(|v| quote(if v.is_null() { String::new() } else { cell(v) }))
                        .collect::<Vec<_>>()
                        .join(",")
                        + "\n"),
                );
            }
            s
        }
        Format::Table => {
            let cells: Vec<Vec<String>> =
                rows.iter().map(|r| r.iter().map(cell).collect()).collect();
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    cells
                        .iter()
                        .map(|r| r.get(i).map_or(0, |s| s.chars().count()))
                        .max()
                        .unwrap_or(0)
                        .max(c.chars().count())
                })
                .collect();
            let line = |vals: Vec<&str>| {
                vals.iter()
                    .zip(&widths)
                    .map(|(v, w)| format!("{v:<w$}"))
                    .collect::<Vec<_>>()
                    .join(" | ")
                    .trim_end()
                    .to_string()
                    + "\n"
            };
            let mut s = line(columns.iter().map(String::as_str).collect());
            s.push_str(
                &(widths
                    .iter()
                    .map(|w| "-".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("-+-")
                    + "\n"),
            );
            for r in &cells {
                s.push_str(&line(r.iter().map(String::as_str).collect()));
            }
            s
        }
    })
}

#[derive(Debug, Args)]
pub struct CatalogArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// List the business metric definitions you may read instead of tables.
    #[arg(long)]
    metrics: bool,
    /// Show one metric (`<category>/<name>`): its SQL, grain, notes, constraints.
    #[arg(long, value_name = "ID")]
    show: Option<String>,
    /// With --metrics: only this category.
    #[arg(long)]
    category: Option<String>,
}

/// Tables you may read, and whether the local copy is current; or metrics.
pub fn catalog(args: CatalogArgs, out: &Output) -> Result<()> {
    let client = args.server.client()?;
    if let Some(id) = &args.show {
        let m: Value = client.get(&format!("/api/metrics/{id}"))?;
        out.print(|| describe_metric(&m), || m.clone());
        return Ok(());
    }
    if args.metrics {
        let path = match &args.category {
            Some(c) => format!("/api/metrics?category={}", encode(c)),
            None => "/api/metrics".into(),
        };
        let r: Value = client.get(&path)?;
        let metrics = r["metrics"].as_array().cloned().unwrap_or_default();
        out.print(
            || {
                if metrics.is_empty() {
                    return "no metrics you may read".into();
                }
                let columns = ["id", "display name", "unit", "grain", "tables"].map(String::from);
                let rows: Vec<Vec<Value>> = metrics
                    .iter()
                    .map(|m| {
                        let tables: Vec<&str> = m["tables"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        vec![
                            m["id"].clone(),
                            m["display_name"].clone(),
                            m["unit"].clone(),
                            m["grain"].clone(),
                            json!(tables.join(", ")),
                        ]
                    })
                    .collect();
                render(&columns, &rows, Format::Table)
                    .unwrap_or_default()
                    .trim_end()
                    .to_string()
            },
            || json!({"metrics": metrics, "count": metrics.len()}),
        );
        return Ok(());
    }
    let r: Value = client.get("/api/catalog/tables")?;
    let local = Workspace::find(args.workspace.as_deref())
        .and_then(|ws| ws.local_manifest())
        .unwrap_or_default();
    let tables = r["tables"].as_array().cloned().unwrap_or_default();
    let status = |t: &Value| -> &'static str {
        let name = t["name"].as_str().unwrap_or_default();
        match local.tables.get(name) {
            _ if t["query_mode"] == "remote" => "remote",
            Some(l) if Some(l.hash.as_str()) == t["md5"].as_str() => "local",
            Some(_) => "outdated",
            None => "not pulled",
        }
    };
    out.print(
        || {
            let columns = [
                "table",
                "rows",
                "size",
                "updated",
                "source",
                "mode",
                "local",
                "description",
            ]
            .map(String::from);
            let rows: Vec<Vec<Value>> = tables
                .iter()
                .map(|t| {
                    vec![
                        t["name"].clone(),
                        json!(count(t["rows"].as_u64().unwrap_or(0))),
                        json!(bytes(t["size_bytes"].as_u64().unwrap_or(0))),
                        t["updated"].clone(),
                        t["source"].clone(),
                        t["query_mode"].clone(),
                        json!(status(t)),
                        t["description"].clone(),
                    ]
                })
                .collect();
            render(&columns, &rows, Format::Table)
                .unwrap_or_default()
                .trim_end()
                .to_string()
        },
        || {
            // `{tables, server_time}`, as the original client's `catalog --json` prints it
            let tables: Vec<Value> = tables
                .iter()
                .map(|t| {
                    let mut t = t.clone();
                    t["local"] = json!(status(&t));
                    t
                })
                .collect();
            json!({"tables": tables, "server_time": r["server_time"]})
        },
    );
    Ok(())
}

/// One metric, as `agnes catalog --show` prints it: the canonical definition, SQL first.
fn describe_metric(m: &Value) -> String {
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = format!("{} — {}\n", text(&m["id"]), text(&m["display_name"]));
    for (label, key) in [
        ("type", "type"),
        ("unit", "unit"),
        ("grain", "grain"),
        ("time column", "time_column"),
        ("expression", "expression"),
    ] {
        if !m[key].is_null() {
            out.push_str(&format!("{label:<12} {}\n", text(&m[key])));
        }
    }
    let list =
        |key: &str| -> Vec<String> { m[key].as_array().into_iter().flatten().map(text).collect() };
    for (label, key) in [
        ("tables", "tables"),
        ("dimensions", "dimensions"),
        ("synonyms", "synonyms"),
    ] {
        let items = list(key);
        if !items.is_empty() {
            out.push_str(&format!("{label:<12} {}\n", items.join(", ")));
        }
    }
    if !m["description"].is_null() {
        out.push_str(&format!("\n{}\n", text(&m["description"]).trim()));
    }
    out.push_str(&format!("\nSQL:\n{}\n", text(&m["sql"]).trim_end()));
    if let Some(variants) = m["sql_variants"].as_object() {
        for (name, sql) in variants {
            out.push_str(&format!("\nSQL ({name}):\n{}\n", text(sql).trim_end()));
        }
    }
    let notes = list("notes");
    if !notes.is_empty() {
        out.push_str("\nNotes:\n");
        for n in notes {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    if !m["validation"].is_null() {
        out.push_str(&format!("\nConstraints:\n  {}\n", m["validation"]));
    }
    out.trim_end().to_string()
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The table.
    table: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn schema(args: SchemaArgs, out: &Output) -> Result<()> {
    let client = args.server.client()?;
    let r: Value = client.get(&format!("/api/v2/schema/{}", encode(&args.table)))?;
    let columns = r["columns"].as_array().cloned().unwrap_or_default();
    out.print(
        || {
            let rows: Vec<Vec<Value>> = columns
                .iter()
                .map(|c| {
                    vec![
                        c["name"].clone(),
                        c["type"].clone(),
                        json!(if c["nullable"] == true { "yes" } else { "no" }),
                    ]
                })
                .collect();
            render(
                &["column".into(), "type".into(), "nullable".into()],
                &rows,
                Format::Table,
            )
            .unwrap_or_default()
            .trim_end()
            .to_string()
        },
        || r.clone(),
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The table.
    table: String,
    /// Sample rows to show.
    #[arg(short = 'n', long, default_value_t = 5)]
    n: usize,
    #[command(flatten)]
    server: ServerArgs,
}

/// Schema, size and sample rows of one table.
pub fn describe(args: DescribeArgs, out: &Output) -> Result<()> {
    let client = args.server.client()?;
    let name = encode(&args.table);
    let schema: Value = client.get(&format!("/api/v2/schema/{name}"))?;
    let sample: Value = client.get(&format!("/api/v2/sample/{name}?n={}&format=arrays", args.n))?;
    let catalog: Value = client.get("/api/catalog/tables")?;
    let entry = catalog["tables"]
        .as_array()
        .and_then(|ts| {
            ts.iter()
                .find(|t| t["name"] == args.table.as_str())
                .cloned()
        })
        .unwrap_or_default();
    out.print(
        || {
            let mut s = format!(
                "{} — {} rows, {}, source {}, updated {}\n{}\n\n",
                args.table,
                count(entry["rows"].as_u64().unwrap_or(0)),
                bytes(entry["size_bytes"].as_u64().unwrap_or(0)),
                entry["source"].as_str().unwrap_or("-"),
                entry["updated"].as_str().unwrap_or("-"),
                entry["description"].as_str().unwrap_or("")
            );
            let cols: Vec<Vec<Value>> = schema["columns"].as_array().into_iter().flatten().map(|c| vec![c["name"].clone(), c["type"].clone()]).collect();
            s.push_str(&render(&["column".into(), "type".into()], &cols, Format::Table).unwrap_or_default());
            s.push('\n');
            let columns: Vec<String> = sample["columns"].as_array().into_iter().flatten().filter_map(|c| c.as_str().map(str::to_string)).collect();
            let rows: Vec<Vec<Value>> = sample["rows"].as_array().into_iter().flatten().map(|r| r.as_array().cloned().unwrap_or_default()).collect();
            s.push_str(&render(&columns, &rows, Format::Table).unwrap_or_default());
            s.trim_end().to_string()
        },
        || json!({"table": args.table, "catalog": entry, "columns": schema["columns"], "sample": sample}),
    );
    Ok(())
}

pub(crate) fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Debug, Args)]
pub struct DiskArgs {
    #[arg(long)]
    workspace: Option<PathBuf>,
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => total += dir_size(&e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

/// Free bytes on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe_zeroed();
    #[allow(unsafe_code)]
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then_some(st.f_bavail * st.f_frsize)
}

fn unsafe_zeroed() -> libc::statvfs {
    #[allow(unsafe_code)]
    // SAFETY: statvfs is a plain C struct of integers; all-zero is a valid value.
    unsafe {
        std::mem::zeroed()
    }
}

/// Space used by the workspace and free on its disk.
pub fn disk_info(args: DiskArgs, out: &Output) -> Result<()> {
    let ws = Workspace::find(args.workspace.as_deref())?;
    let parts = [
        ("server/parquet", ws.parquet_dir()),
        (
            "user/duckdb",
            ws.duckdb_path().parent().unwrap().to_path_buf(),
        ),
        ("user/snapshots", ws.snapshots_dir()),
    ];
    let sizes: Vec<(&str, u64)> = parts.iter().map(|(n, p)| (*n, dir_size(p))).collect();
    let free = free_bytes(&ws.root);
    let tables = ws.local_manifest()?.tables.len();
    if sizes.is_empty() {
        bail!("empty workspace");
    }
    out.print(
        || {
            let mut s = format!("{}\n", ws.root.display());
            for (n, b) in &sizes {
                s.push_str(&format!("  {n:<16} {}\n", bytes(*b)));
            }
            s.push_str(&format!("  {tables} tables pulled; free on disk: {}", free.map(bytes).unwrap_or_else(|| "unknown".into())));
            s
        },
        || json!({"workspace": ws.root, "tables": tables, "free_bytes": free,
                  "bytes": sizes.iter().map(|(n, b)| (n.to_string(), json!(b))).collect::<serde_json::Map<_, _>>()}),
    );
    Ok(())
}
