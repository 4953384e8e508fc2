//! `agnes snapshot create|list|drop`: server-side filtered extracts saved as parquet in
//! `user/snapshots/`, each with a view of its name in the local database.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::ServerArgs;
use crate::output::{Output, bytes, count};
use crate::workspace::Workspace;

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Save a filtered slice of a table locally (the filter runs on the server).
    Create(CreateArgs),
    /// List saved snapshots.
    List(WsArgs),
    /// Delete a snapshot and its view.
    Drop {
        name: String,
        #[command(flatten)]
        ws: WsArgs,
    },
}

#[derive(Debug, Args)]
pub struct WsArgs {
    #[arg(long)]
    workspace: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The table to slice.
    table: String,
    /// Columns to keep, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    select: Vec<String>,
    /// A SQL predicate, e.g. "region = 'EMEA' AND amount > 100".
    #[arg(long = "where")]
    predicate: Option<String>,
    /// At most this many rows.
    #[arg(long)]
    limit: Option<u64>,
    /// Name of the snapshot (and its view). Default: <table>_snapshot.
    #[arg(long = "as")]
    name: Option<String>,
    /// Only print how many rows and bytes it would be.
    #[arg(long)]
    estimate: bool,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    ws: WsArgs,
}

pub fn run(cmd: SnapshotCmd, out: &Output) -> Result<()> {
    match cmd {
        SnapshotCmd::Create(a) => create(a, out),
        SnapshotCmd::List(a) => list(a, out),
        SnapshotCmd::Drop { name, ws } => drop_snapshot(&name, ws, out),
    }
}

fn create(args: CreateArgs, out: &Output) -> Result<()> {
    let ws = Workspace::find(args.ws.workspace.as_deref())?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}_snapshot", args.table));
    agnes_runtime::names::validate_name("table", &name)
        .map_err(|e| anyhow::anyhow!("--as: {e}"))?;
    if ws.local_manifest()?.tables.contains_key(&name) {
        bail!("`{name}` is a pulled table; choose another name with --as");
    }
    let client = args.server.client()?;
    let body = json!({"table": args.table, "select": args.select, "where": args.predicate, "limit": args.limit});
    let estimate: Value = client.post("/api/v2/scan/estimate", &body)?;
    let (rows, size) = (
        estimate["rows"].as_u64().unwrap_or(0),
        estimate["bytes"].as_u64().unwrap_or(0),
    );
    if args.estimate {
        out.print(
            || format!("{name}: about {} rows, {}", count(rows), bytes(size)),
            || estimate.clone(),
        );
        return Ok(());
    }
    let ipc = client.post_bytes("/api/v2/scan", &body)?;
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
        .context("the server's scan is not an Arrow IPC stream")?;
    let path = ws.snapshots_dir().join(format!("{name}.parquet"));
    let tmp = ws.snapshots_dir().join(format!(".{name}.parquet.tmp"));
    let mut written = 0u64;
    {
        let file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, reader.schema(), None)?;
        for batch in reader {
            let batch = batch?;
            written += batch.num_rows() as u64;
            writer.write(&batch)?;
        }
        writer.close()?;
    }
    std::fs::rename(&tmp, &path)?;
    let conn = duckdb::Connection::open(ws.duckdb_path())?;
    conn.execute_batch(&format!(
        "CREATE OR REPLACE VIEW \"{name}\" AS SELECT * FROM read_parquet({}); COMMENT ON VIEW \"{name}\" IS 'agnes-snapshot';",
        agnes_runtime::sink::duckdb::sql_string(&path.to_string_lossy())
    ))?;
    let size = std::fs::metadata(&path)?.len();
    out.print(
        || {
            format!(
                "{name}: {} rows, {} -> {} (query it as `{name}`)",
                count(written),
                bytes(size),
                path.display()
            )
        },
        || json!({"name": name, "rows": written, "size_bytes": size, "path": path}),
    );
    Ok(())
}

fn snapshots(ws: &Workspace) -> Result<Vec<(String, u64, i64)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(ws.snapshots_dir())?.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        let Some(name) = f.strip_suffix(".parquet").filter(|n| !n.starts_with('.')) else {
            continue;
        };
        let size = e.metadata()?.len();
        let rows = parquet::file::reader::FileReader::metadata(
            &parquet::file::reader::SerializedFileReader::new(std::fs::File::open(e.path())?)?,
        )
        .file_metadata()
        .num_rows();
        out.push((name.to_string(), size, rows));
    }
    out.sort();
    Ok(out)
}

fn list(args: WsArgs, out: &Output) -> Result<()> {
    let ws = Workspace::find(args.workspace.as_deref())?;
    let snaps = snapshots(&ws)?;
    out.print(
        || {
            if snaps.is_empty() {
                return "no snapshots; create one with `agnes snapshot create <table> --where ...`"
                    .into();
            }
            snaps
                .iter()
                .map(|(n, s, r)| format!("{n:<30} {:>12} rows {:>10}", count(*r as u64), bytes(*s)))
                .collect::<Vec<_>>()
                .join("\n")
        },
        || {
            json!(
                snaps
                    .iter()
                    .map(|(n, s, r)| json!({"name": n, "size_bytes": s, "rows": r}))
                    .collect::<Vec<_>>()
            )
        },
    );
    Ok(())
}

fn drop_snapshot(name: &str, args: WsArgs, out: &Output) -> Result<()> {
    let ws = Workspace::find(args.workspace.as_deref())?;
    agnes_runtime::names::validate_name("table", name)?;
    let path = ws.snapshots_dir().join(format!("{name}.parquet"));
    if !path.exists() {
        bail!("no snapshot `{name}`; see `agnes snapshot list`");
    }
    let conn = duckdb::Connection::open(ws.duckdb_path())?;
    conn.execute_batch(&format!("DROP VIEW IF EXISTS \"{name}\""))?;
    std::fs::remove_file(&path)?;
    out.print(
        || format!("dropped snapshot {name}"),
        || json!({"dropped": name}),
    );
    Ok(())
}
