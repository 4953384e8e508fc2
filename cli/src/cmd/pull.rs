//! `agnes pull`: make the workspace match the server's manifest.
//!
//! Downloads only tables whose md5 differs (4 at a time; a file above 50 MiB in 4 parallel
//! `Range` chunks), resumes a partial download, retries transient failures with backoff,
//! verifies size and md5 (hashed beside the download, not in its way) before one fsync and
//! an atomic rename, skips `remote` tables, removes tables no longer granted, and rebuilds the
//! local views. Any failure exits non-zero and leaves the previous good copy of that table.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
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

    remove_stale_parts(&ws.parquet_dir(), &todo);
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
    if !downloaded.is_empty() {
        // the renames themselves are durable once the directory is
        if let Ok(dir) = std::fs::File::open(ws.parquet_dir()) {
            let _ = dir.sync_all();
        }
    }
    for name in &removed {
        let _ = std::fs::remove_file(ws.table_path(name));
        local.tables.remove(name);
    }
    local.server_time = remote.server_time.clone();
    ws.save_local_manifest(&local)?;
    ws.update_views(&local, Some(&downloaded))?;
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

/// Downloads one table into its `.part` file (resuming it), verifies size and md5, renames
/// it into place. Files above [`chunked_above`] come in [`CHUNKS`] parallel `Range`
/// requests written in place; md5 is computed on this thread from the page cache as the
/// chunks advance, off the network path. One fsync per file. Returns the bytes transferred.
fn fetch(
    client: &Client,
    ws: &Workspace,
    name: &str,
    meta: &TableMeta,
    bar: Option<&ProgressBar>,
) -> Result<u64> {
    let part = ws.parquet_dir().join(format!(".{name}.{}.part", meta.hash));
    let transferred = AtomicU64::new(0);
    // the object store's presigned URL first, when the manifest has one; the server's
    // download when it fails (expired, refused, corrupted); md5 verified either way
    if let Some(signed) = &meta.signed_url {
        match fetch_from(client, signed, &part, meta, bar, &transferred) {
            Ok(()) => return place(ws, name, &part, transferred),
            Err(e) => {
                tracing::warn!(table = name, error = %e, "the presigned download failed; downloading from the server");
                remove_part(&part);
                if let Some(b) = bar {
                    b.set_position(0);
                }
            }
        }
    }
    fetch_from(
        client,
        &format!("/api/data/{name}/download"),
        &part,
        meta,
        bar,
        &transferred,
    )?;
    place(ws, name, &part, transferred)
}

/// Moves a verified `.part` into place; returns the bytes transferred.
fn place(ws: &Workspace, name: &str, part: &Path, transferred: AtomicU64) -> Result<u64> {
    let target = ws.table_path(name);
    std::fs::rename(part, &target)
        .with_context(|| format!("renaming into {}", target.display()))?;
    let _ = std::fs::remove_file(progress_path(part));
    Ok(transferred.into_inner())
}

/// Downloads `url` into `part` (resuming it) and verifies size and md5, starting over once
/// when the verification fails.
fn fetch_from(
    client: &Client,
    url: &str,
    part: &Path,
    meta: &TableMeta,
    bar: Option<&ProgressBar>,
    transferred: &AtomicU64,
) -> Result<()> {
    let size = u64::try_from(meta.size_bytes).unwrap_or(0);
    let mut restarted = false;
    loop {
        let md5 = download(client, url, part, size, bar, transferred)?;
        match verify(part, meta, md5) {
            Ok(()) => return Ok(()),
            Err(e) if !restarted => {
                // a corrupted transfer or a stale partial file: start over once
                tracing::warn!(error = %e, "verification failed; downloading again");
                remove_part(part);
                if let Some(b) = bar {
                    b.set_position(0);
                }
                restarted = true;
            }
            Err(e) => {
                remove_part(part);
                return Err(e);
            }
        }
    }
}

/// Files larger than this (bytes; `AGNES_PULL_CHUNKED_ABOVE` overrides) come in parallel
/// chunks, as the original Agnes client does.
fn chunked_above() -> u64 {
    std::env::var("AGNES_PULL_CHUNKED_ABOVE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50 << 20)
}

/// Parallel `Range` requests for one large file.
const CHUNKS: u64 = 4;

/// How far the chunks of one download have come, shared by the chunk threads (writers)
/// and the hashing thread (reader).
struct Progress {
    /// `(start, end)` of each chunk (end exclusive).
    bounds: Vec<(u64, u64)>,
    /// The end of what each chunk has written (absolute offset).
    done: Vec<AtomicU64>,
    /// Set when a chunk gave up: the hasher stops waiting.
    failed: Mutex<bool>,
    moved: Condvar,
    /// Where the progress is recorded for a resume (chunked downloads only).
    record: Option<(PathBuf, Mutex<()>)>,
}

impl Progress {
    /// Picks up where an earlier attempt stopped: a progress record when the download was
    /// chunked, else the partial file is a prefix.
    fn resume(part: &Path, size: u64, have: u64) -> Progress {
        let n = if size > chunked_above() { CHUNKS } else { 1 };
        let bounds: Vec<(u64, u64)> = (0..n).map(|i| (size * i / n, size * (i + 1) / n)).collect();
        let record = progress_path(part);
        let recorded = std::fs::read_to_string(&record).ok().map(|text| {
            let done: Vec<u64> = text
                .lines()
                .zip(&bounds)
                .filter_map(|(line, &(start, end))| {
                    let v: Vec<u64> = line.split(' ').filter_map(|x| x.parse().ok()).collect();
                    (v.len() == 3 && v[0] == start && v[1] == end && (start..=end).contains(&v[2]))
                        .then_some(v[2])
                })
                .collect();
            (done.len() == bounds.len() && text.lines().count() == bounds.len()).then_some(done)
        });
        let done = match recorded {
            Some(Some(done)) => done,
            // a record that does not match this layout: its bytes cannot be trusted
            Some(None) => bounds.iter().map(|&(start, _)| start).collect(),
            None => bounds.iter().map(|&(s, e)| have.clamp(s, e)).collect(),
        };
        Progress {
            done: done.into_iter().map(AtomicU64::new).collect(),
            bounds,
            failed: Mutex::new(false),
            moved: Condvar::new(),
            record: (n > 1).then(|| (record, Mutex::new(()))),
        }
    }

    fn advanced(&self, chunk: usize, to: u64) {
        self.done[chunk].store(to, Ordering::Release);
        let _guard = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        self.moved.notify_all();
    }

    fn fail(&self) {
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.moved.notify_all();
    }

    /// Blocks until `chunk` has bytes beyond `pos`; returns its end, or `None` when a chunk
    /// failed.
    fn wait_past(&self, chunk: usize, pos: u64) -> Option<u64> {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let done = self.done[chunk].load(Ordering::Acquire);
            if done > pos {
                return Some(done);
            }
            if *failed {
                return None;
            }
            failed = self.moved.wait(failed).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Writes the progress record (not synced: a crash that loses it costs a re-download,
    /// a record ahead of the data costs an md5 mismatch and one clean restart).
    fn save(&self) {
        if let Some((path, lock)) = &self.record {
            let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            let text: String = self
                .bounds
                .iter()
                .zip(&self.done)
                .map(|(&(s, e), d)| format!("{s} {e} {}\n", d.load(Ordering::Acquire)))
                .collect();
            let _ = std::fs::write(path, text);
        }
    }
}

/// One attempt at the whole file: the chunks still missing download in parallel while this
/// thread hashes the file in order as it fills. Returns the md5 of the file's bytes.
fn download(
    client: &Client,
    url: &str,
    part: &Path,
    size: u64,
    bar: Option<&ProgressBar>,
    transferred: &AtomicU64,
) -> Result<Md5> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)
        .with_context(|| format!("opening {}", part.display()))?;
    let have = file.metadata()?.len();
    let progress = Progress::resume(part, size, have);
    if have > size {
        file.set_len(size)?;
    }
    if let Some(b) = bar {
        let done: u64 = progress
            .bounds
            .iter()
            .zip(&progress.done)
            .map(|(&(s, _), d)| d.load(Ordering::Relaxed) - s)
            .sum();
        b.set_position(done);
    }
    progress.save();
    let chunked = progress.bounds.len() > 1;
    let (md5, results) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..progress.bounds.len())
            .map(|chunk| {
                let (file, progress) = (&file, &progress);
                s.spawn(move || {
                    let r = fetch_chunk(
                        client,
                        url,
                        file,
                        progress,
                        chunk,
                        chunked,
                        bar,
                        transferred,
                    );
                    if r.is_err() {
                        progress.fail();
                    }
                    r
                })
            })
            .collect();
        let md5 = hash_in_order(&file, &progress, size);
        let results: Vec<Result<()>> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow!("a download thread panicked")))
            })
            .collect();
        (md5, results)
    });
    progress.save();
    for r in results {
        r?;
    }
    let md5 = md5?;
    file.sync_all()
        .with_context(|| format!("syncing {}", part.display()))?;
    Ok(md5)
}

/// Downloads what is missing of one chunk, retrying transient failures from where it
/// stopped.
#[allow(clippy::too_many_arguments)]
fn fetch_chunk(
    client: &Client,
    url: &str,
    file: &std::fs::File,
    progress: &Progress,
    chunk: usize,
    chunked: bool,
    bar: Option<&ProgressBar>,
    transferred: &AtomicU64,
) -> Result<()> {
    let end = progress.bounds[chunk].1;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let pos = progress.done[chunk].load(Ordering::Acquire);
        if pos >= end {
            return Ok(());
        }
        let mut sink = ChunkWriter {
            file,
            pos,
            end,
            chunk,
            progress,
            bar,
            transferred,
            unsaved: 0,
        };
        let result = client.download_range(url, pos, chunked.then_some(end), &mut sink);
        let result = match result {
            Ok(_) if sink.pos < end => Err(Transient::Yes(anyhow!(
                "GET {url}: the body ended at byte {} of {end}",
                sink.pos
            ))),
            other => other.map(|_| ()),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(Transient::Yes(e)) if attempt < ATTEMPTS => {
                tracing::warn!(url, chunk, attempt, error = %e, "transient failure; retrying");
                progress.save();
                std::thread::sleep(Duration::from_millis(250 << attempt));
            }
            Err(e) => return Err(e.into_inner()),
        }
    }
}

/// Hashes the file from the start, waiting for each chunk to pass the read position.
fn hash_in_order(file: &std::fs::File, progress: &Progress, size: u64) -> Result<Md5> {
    use std::os::unix::fs::FileExt;
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    let mut chunk = 0;
    while pos < size {
        while progress.bounds[chunk].1 <= pos {
            chunk += 1;
        }
        let Some(done) = progress.wait_past(chunk, pos) else {
            bail!("the download stopped");
        };
        let n = (done - pos).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], pos)?;
        md5.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(md5)
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

fn progress_path(part: &Path) -> PathBuf {
    let mut p = part.as_os_str().to_owned();
    p.push(".progress");
    PathBuf::from(p)
}

fn remove_part(part: &Path) {
    let _ = std::fs::remove_file(part);
    let _ = std::fs::remove_file(progress_path(part));
}

/// Removes partial downloads (and their progress records) that no table of this pull will
/// resume: another version of the table, or a table no longer pulled. One directory listing.
fn remove_stale_parts(dir: &Path, todo: &[(String, TableMeta)]) {
    let keep: std::collections::HashSet<String> = todo
        .iter()
        .map(|(name, meta)| format!(".{name}.{}.part", meta.hash))
        .collect();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            let part = f.strip_suffix(".progress").unwrap_or(&f);
            if part.starts_with('.') && part.ends_with(".part") && !keep.contains(part) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Starts writing `len` bytes at `offset` to disk without waiting, so the one fsync at
/// the end has little left to wait for (Linux; elsewhere the fsync does it all).
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; the call only schedules writeback
        #[allow(unsafe_code)]
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Writes one chunk's bytes in place, advancing its progress and the bar.
struct ChunkWriter<'a> {
    file: &'a std::fs::File,
    pos: u64,
    end: u64,
    chunk: usize,
    progress: &'a Progress,
    bar: Option<&'a ProgressBar>,
    transferred: &'a AtomicU64,
    unsaved: u64,
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if self.pos + buf.len() as u64 > self.end {
            return Err(std::io::Error::other(format!(
                "the server sent more than the {} bytes asked for",
                self.end
            )));
        }
        self.file.write_all_at(buf, self.pos)?;
        let n = buf.len() as u64;
        self.pos += n;
        self.progress.advanced(self.chunk, self.pos);
        self.transferred.fetch_add(n, Ordering::Relaxed);
        if let Some(b) = self.bar {
            b.inc(n);
        }
        self.unsaved += n;
        if self.unsaved >= 16 << 20 {
            start_writeback(self.file, self.pos - self.unsaved, self.unsaved);
            self.progress.save();
            self.unsaved = 0;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
