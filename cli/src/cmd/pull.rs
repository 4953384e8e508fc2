//! `agnes pull`: make the workspace match the server's manifest.
//!
//! Downloads only tables whose md5 differs (4 at a time), resumes a partial download with
//! `Range`, retries transient failures with backoff, verifies size and md5 before an
//! atomic rename, skips `remote` tables, removes tables no longer granted, and rebuilds the
//! local views. Any failure exits non-zero and leaves the previous good copy of that table.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use md5::{Digest, Md5};
use serde_json::json;

use crate::client::{Client, ServerArgs, Transient};
use crate::output::{Output, bytes};
use crate::workspace::{Manifest, TableMeta, Workspace};

const PARALLEL: usize = 4;
const ATTEMPTS: u32 = 4;

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The workspace (else AGNES_WORKSPACE, else found from the current directory).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    /// Leave out materialized tables (the results of admins' SQL); ones pulled before
    /// are removed.
    #[arg(long)]
    pub skip_materialized: bool,
}

struct Outcome {
    table: String,
    result: Result<u64>,
}

pub fn run(args: PullArgs, out: &Output) -> Result<()> {
    let ws = Workspace::find(args.workspace.as_deref())?;
    let client = args.server.client()?;
    let started = Instant::now();
    let remote: Manifest = client
        .get("/api/sync/manifest")
        .context("fetching the manifest; local data is unchanged")?;
    let mut local = ws.local_manifest()?;

    // remote tables stay at the source; materialized ones come unless skipped
    let wanted = |m: &TableMeta| {
        m.query_mode != "remote" && !(args.skip_materialized && m.query_mode == "materialized")
    };
    let mut todo: Vec<(String, TableMeta)> = Vec::new();
    let mut unchanged = 0;
    for (name, meta) in &remote.tables {
        if agnes_runtime::names::validate_name("table", name).is_err() {
            bail!("the server sent an unsafe table name {name:?}; refusing to write it");
        }
        if !wanted(meta) {
            continue;
        }
        let have = local.tables.get(name);
        let file_ok = std::fs::metadata(ws.table_path(name))
            .map(|m| m.len() as i64 == meta.size_bytes)
            .unwrap_or(false);
        if have.is_some_and(|h| h.hash == meta.hash) && file_ok {
            unchanged += 1;
        } else {
            todo.push((name.clone(), meta.clone()));
        }
    }
    let removed: Vec<String> = local
        .tables
        .keys()
        .filter(|n| remote.tables.get(*n).is_none_or(|m| !wanted(m)))
        .cloned()
        .collect();

    let bars = out.progress().then(MultiProgress::new);
    let queue = Mutex::new(todo.clone());
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(todo.len()) {
            s.spawn(|| {
                loop {
                    let Some((name, meta)) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop()
                    else {
                        break;
                    };
                    let bar = bars.as_ref().map(|m| {
                        let b = m.add(ProgressBar::new(meta.size_bytes.max(0) as u64));
                        b.set_style(
                            ProgressStyle::with_template(
                                "{msg:20} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                            )
                            .expect("valid template"),
                        );
                        b.set_message(name.clone());
                        b
                    });
                    let result = fetch(&client, &ws, &name, &meta, bar.as_ref());
                    if let Some(b) = bar {
                        b.finish_and_clear();
                    }
                    outcomes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Outcome {
                            table: name,
                            result,
                        });
                }
            });
        }
    });

    let mut downloaded = Vec::new();
    let mut failed = Vec::new();
    let mut total = 0u64;
    for o in outcomes.into_inner().unwrap_or_else(|p| p.into_inner()) {
        match o.result {
            Ok(n) => {
                total += n;
                local
                    .tables
                    .insert(o.table.clone(), remote.tables[&o.table].clone());
                downloaded.push(o.table);
            }
            Err(e) => failed.push((o.table, format!("{e:#}"))),
        }
    }
    for name in &removed {
        let _ = std::fs::remove_file(ws.table_path(name));
        local.tables.remove(name);
    }
    local.server_time = remote.server_time.clone();
    ws.save_local_manifest(&local)?;
    ws.rebuild_views(&local)?;
    downloaded.sort();
    failed.sort();
    let seconds = started.elapsed().as_secs_f64();
    out.print(
        || {
            let mut s = format!(
                "pulled {} tables ({}), {unchanged} unchanged, {} removed in {seconds:.2}s",
                downloaded.len(),
                bytes(total),
                removed.len()
            );
            for (t, e) in &failed {
                s.push_str(&format!("\nfailed: {t}: {e}"));
            }
            s
        },
        || {
            json!({"downloaded": downloaded, "unchanged": unchanged, "removed": removed, "bytes": total,
                   "failed": failed.iter().map(|(t, e)| json!({"table": t, "error": e})).collect::<Vec<_>>(),
                   "seconds": seconds})
        },
    );
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|(t, _)| t.as_str()).collect();
        bail!(
            "{} table(s) failed to pull ({}); their previous local copies are kept",
            failed.len(),
            names.join(", ")
        );
    }
    Ok(())
}

/// Downloads one table into its `.part` file (resuming it), verifies size and md5 (hashed
/// while streaming; an existing partial file is hashed first), renames it into place.
/// Returns the bytes transferred.
fn fetch(
    client: &Client,
    ws: &Workspace,
    name: &str,
    meta: &TableMeta,
    bar: Option<&ProgressBar>,
) -> Result<u64> {
    let dir = ws.parquet_dir();
    remove_stale_parts(&dir, name, &meta.hash);
    let part = dir.join(format!(".{name}.{}.part", meta.hash));
    let path = format!("/api/data/{name}/download");
    let mut md5 = hash_prefix(&part)?;
    let mut transferred = 0u64;
    let mut restarted = false;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let offset = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if let Some(b) = bar {
            b.set_position(offset);
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .with_context(|| format!("opening {}", part.display()))?;
        let result = if offset as i64 >= meta.size_bytes && meta.size_bytes > 0 {
            Ok((0, None))
        } else {
            let mut sink = Hashing {
                inner: &mut file,
                md5: &mut md5,
                bar,
            };
            client.download(&path, offset, &mut sink)
        };
        match result {
            Ok((n, _etag)) => {
                transferred += n;
                file.sync_all()?;
                match verify(&part, meta, std::mem::take(&mut md5)) {
                    Ok(()) => break,
                    Err(e) if !restarted => {
                        // a corrupted transfer or a stale partial file: start over once
                        tracing::warn!(table = name, error = %e, "verification failed; downloading again");
                        let _ = std::fs::remove_file(&part);
                        restarted = true;
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&part);
                        return Err(e);
                    }
                }
            }
            Err(Transient::Yes(e)) if attempt < ATTEMPTS => {
                tracing::warn!(table = name, attempt, error = %e, "transient failure; retrying");
                std::thread::sleep(Duration::from_millis(250 << attempt));
            }
            Err(e) => return Err(e.into_inner()),
        }
    }
    let target = ws.table_path(name);
    std::fs::rename(&part, &target)
        .with_context(|| format!("renaming into {}", target.display()))?;
    Ok(transferred)
}

/// The md5 state of an existing partial download (empty when there is none).
fn hash_prefix(part: &Path) -> Result<Md5> {
    let mut md5 = Md5::new();
    let Ok(mut f) = std::fs::File::open(part) else {
        return Ok(md5);
    };
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(md5);
        }
        md5.update(&buf[..n]);
    }
}

fn verify(part: &Path, meta: &TableMeta, md5: Md5) -> Result<()> {
    let size = std::fs::metadata(part)?.len();
    if size as i64 != meta.size_bytes {
        return Err(anyhow!(
            "size mismatch: expected {} bytes, got {size}",
            meta.size_bytes
        ));
    }
    let got = hex::encode(md5.finalize());
    if got != meta.hash {
        return Err(anyhow!(
            "md5 mismatch: the manifest says {}, the download hashes to {got}",
            meta.hash
        ));
    }
    Ok(())
}

fn remove_stale_parts(dir: &Path, name: &str, hash: &str) {
    let keep = format!(".{name}.{hash}.part");
    let prefix = format!(".{name}.");
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if f.starts_with(&prefix) && f.ends_with(".part") && f != keep {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Writes through to the file while hashing and advancing the progress bar.
struct Hashing<'a, W> {
    inner: &'a mut W,
    md5: &'a mut Md5,
    bar: Option<&'a ProgressBar>,
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.md5.update(&buf[..n]);
        if let Some(b) = self.bar {
            b.inc(n as u64);
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
