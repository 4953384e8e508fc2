//! `agnes extract show`: what an extract on disk holds.

use std::path::PathBuf;

use agnes_runtime::extract;
use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::output::{Output, bytes, count};

#[derive(Debug, Subcommand)]
pub enum ExtractCmd {
    /// Print the tables of an extract (its _meta) and a few rows of each.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The extract directory, e.g. ./agnes-data/extracts/demo.
    dir: PathBuf,
    /// Rows to print per table.
    #[arg(long, short = 'n', default_value_t = 3)]
    sample: usize,
}

pub fn run(cmd: ExtractCmd, out: &Output) -> Result<()> {
    let ExtractCmd::Show(args) = cmd;
    let meta = extract::read_meta(&args.dir)?;
    let mut samples = Vec::new();
    for m in &meta {
        samples.push(extract::sample(&args.dir, &m.table_name, args.sample)?);
    }
    out.print(
        || {
            let mut s = format!("{}\n", args.dir.display());
            for (m, (columns, rows)) in meta.iter().zip(&samples) {
                s.push_str(&format!(
                    "\n{} — {} rows, {}, md5 {}, extracted {} ({})\n",
                    m.table_name,
                    count(m.rows.max(0) as u64),
                    bytes(m.size_bytes.max(0) as u64),
                    m.md5.as_deref().unwrap_or("-"),
                    m.extracted_at,
                    m.query_mode
                ));
                s.push_str(&format!("  {}\n", columns.join(" | ")));
                for r in rows {
                    s.push_str(&format!("  {}\n", r.join(" | ")));
                }
            }
            s.trim_end().to_string()
        },
        || {
            json!(meta.iter().zip(&samples).map(|(m, (columns, rows))| json!({
                "table_name": m.table_name, "description": m.description, "rows": m.rows,
                "size_bytes": m.size_bytes, "extracted_at": m.extracted_at, "query_mode": m.query_mode,
                "md5": m.md5, "path": m.path, "columns": columns, "sample": rows,
            })).collect::<Vec<_>>())
        },
    );
    Ok(())
}
