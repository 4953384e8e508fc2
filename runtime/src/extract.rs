//! The on-disk life of an extract: staged in a private directory, published by one atomic
//! rename.
//!
//! ```text
//! <extracts>/<source>                       -> .versions/<source>/<version>   (symlink)
//! <extracts>/.versions/<source>/.lock       held for the whole run (one run per source)
//! <extracts>/.versions/<source>/<version>.tmp/   while the run writes parquet files
//! <extracts>/.versions/<source>/<version>/       data/*.parquet, extract.duckdb, state.json
//! ```
//!
//! A reader resolves `<extracts>/<source>` once and sees one complete version. Views in
//! `extract.duckdb` name parquet files by their versioned path, so an attached extract never
//! mixes versions. A failed or killed run leaves only a `.tmp` directory (removed by the next
//! run) and never touches the published version. The previous version is kept until the
//! next run, for readers that resolved it just before the swap.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::Error;
use crate::names::validate_name;

const VERSIONS: &str = ".versions";

/// A run's private staging area. Dropping it without [`Staging::publish`] removes it.
#[derive(Debug)]
pub struct Staging {
    extracts: PathBuf,
    source: String,
    version: String,
    versions_dir: PathBuf,
    _lock: File,
    published: bool,
}

impl Staging {
    /// Locks `<extracts>/<source>` for this run and creates its staging directory.
    pub fn begin(extracts: &Path, source: &str) -> Result<Staging, Error> {
        Self::begin_with(extracts, source, new_version())
    }

    /// [`Staging::begin`] for a version made elsewhere (a copy of another server's
    /// published version, under its name). The name is checked like a source name.
    pub fn begin_as(extracts: &Path, source: &str, version: &str) -> Result<Staging, Error> {
        if version.is_empty()
            || version.len() > 64
            || !version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || version.starts_with('.')
            || version.ends_with(".tmp")
        {
            return Err(Error::NotAnExtract {
                path: extracts.join(source),
                reason: format!("`{version}` is not a version name"),
            });
        }
        Self::begin_with(extracts, source, version.to_string())
    }

    fn begin_with(extracts: &Path, source: &str, version: String) -> Result<Staging, Error> {
        validate_name("source", source)?;
        let link = extracts.join(source);
        if let Ok(meta) = fs::symlink_metadata(&link)
            && !meta.file_type().is_symlink()
        {
            return Err(Error::NotAnExtract {
                path: link,
                reason: "it is not a symlink to a published version".into(),
            });
        }
        let versions_dir = extracts.join(VERSIONS).join(source);
        fs::create_dir_all(&versions_dir).map_err(Error::io("creating", &versions_dir))?;
        let lock = lock(&versions_dir, source)?;
        let staging = Staging {
            extracts: extracts.to_path_buf(),
            source: source.to_string(),
            version,
            versions_dir,
            _lock: lock,
            published: false,
        };
        staging.remove_stale()?;
        let data = staging.data_dir();
        fs::create_dir_all(&data).map_err(Error::io("creating", &data))?;
        Ok(staging)
    }

    /// The staging directory (`<version>.tmp`).
    pub fn dir(&self) -> PathBuf {
        self.versions_dir.join(format!("{}.tmp", self.version))
    }

    /// Where parquet files are written while staging.
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// The version id of this run.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Moves the staged files to their final, versioned directory (not yet visible to
    /// readers) and returns it, so that `finish` can write files that name final paths.
    pub fn seal(&self) -> Result<PathBuf, Error> {
        let sealed = self.versions_dir.join(&self.version);
        let staged = self.dir();
        fs::rename(&staged, &sealed).map_err(Error::io("renaming", &staged))?;
        Ok(sealed)
    }

    /// Atomically points `<extracts>/<source>` at the sealed version, then removes versions
    /// older than the one it replaced. Returns the published directory.
    pub fn publish(mut self) -> Result<PathBuf, Error> {
        let sealed = self.versions_dir.join(&self.version);
        let link = self.extracts.join(&self.source);
        let previous = fs::read_link(&link).ok();
        let target = Path::new(VERSIONS).join(&self.source).join(&self.version);
        let tmp_link = self
            .extracts
            .join(format!(".{}.{}.link", self.source, self.version));
        let _ = fs::remove_file(&tmp_link);
        std::os::unix::fs::symlink(&target, &tmp_link)
            .map_err(Error::io("creating symlink", &tmp_link))?;
        fs::rename(&tmp_link, &link).map_err(Error::io("publishing", &link))?;
        if let Ok(dir) = File::open(&self.extracts) {
            let _ = dir.sync_all();
        }
        self.published = true;
        let keep: Vec<PathBuf> = [Some(target), previous].into_iter().flatten().collect();
        self.prune(&keep);
        Ok(sealed)
    }

    /// Removes `.tmp` leftovers of killed runs and sealed versions that were never
    /// published. Runs under the lock.
    fn remove_stale(&self) -> Result<(), Error> {
        let current = fs::read_link(self.extracts.join(&self.source)).ok();
        for entry in fs::read_dir(&self.versions_dir)
            .map_err(Error::io("listing", &self.versions_dir))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let rel = Path::new(VERSIONS).join(&self.source).join(&name);
            let is_current = current.as_deref() == Some(rel.as_path());
            if name.ends_with(".tmp")
                || (!is_current && !published_before(current.as_deref(), &name))
            {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    fn prune(&self, keep: &[PathBuf]) {
        let Ok(entries) = fs::read_dir(&self.versions_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let rel = Path::new(VERSIONS).join(&self.source).join(&name);
            if !keep.contains(&rel) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_dir_all(self.dir());
            let _ = fs::remove_dir_all(self.versions_dir.join(&self.version));
        }
    }
}

/// A sealed version older than the current one (the symlink target) was published at some
/// point (versions sort by time); newer ones that are not current never were.
fn published_before(current: Option<&Path>, name: &str) -> bool {
    current
        .and_then(|p| p.file_name())
        .is_some_and(|c| name < c.to_string_lossy().as_ref())
}

/// A sortable, unique version id: UTC time to the microsecond plus the process id.
fn new_version() -> String {
    let now = chrono::Utc::now();
    format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%S%.6fZ"),
        std::process::id()
    )
}

/// Takes `<versions_dir>/.lock`, held while the file stays open: one run (or removal) per
/// source at a time; a second gets [`Error::Busy`].
fn lock(versions_dir: &Path, source: &str) -> Result<File, Error> {
    let lock_path = versions_dir.join(".lock");
    let lock = File::create(&lock_path).map_err(Error::io("creating", &lock_path))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Busy {
            source_name: source.to_string(),
            lock: lock_path,
        }),
        Err(fs::TryLockError::Error(e)) => Err(Error::io("locking", &lock_path)(e)),
    }
}

/// Removes what killed runs left behind — their `.tmp` staging directories and versions
/// that never became current — for every source whose run lock is free (a run in progress
/// elsewhere keeps its own). Call at start-up. Returns the sources cleaned.
pub fn clean_stale(extracts: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(extracts.join(VERSIONS)) else {
        return vec![];
    };
    let mut cleaned = Vec::new();
    for entry in entries.flatten() {
        let source = entry.file_name().to_string_lossy().into_owned();
        if validate_name("source", &source).is_err() {
            continue;
        }
        let versions_dir = entry.path();
        let Ok(_lock) = lock(&versions_dir, &source) else {
            continue;
        };
        let staging = Staging {
            extracts: extracts.to_path_buf(),
            source: source.clone(),
            version: String::new(),
            versions_dir,
            _lock,
            published: true, // nothing of its own to remove on drop
        };
        if staging.remove_stale().is_ok() {
            cleaned.push(source);
        }
    }
    cleaned
}

/// Removes every version of `<extracts>/<source>` (a deleted source): the published link
/// first (readers stop resolving it; files already open stay readable), then the versions.
/// Takes the source's run lock, so a run in progress makes it fail with [`Error::Busy`].
/// Returns whether there was anything to remove.
pub fn remove(extracts: &Path, source: &str) -> Result<bool, Error> {
    validate_name("source", source)?;
    let link = extracts.join(source);
    let versions_dir = extracts.join(VERSIONS).join(source);
    let linked = fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink());
    if !linked && !versions_dir.exists() {
        return Ok(false);
    }
    fs::create_dir_all(&versions_dir).map_err(Error::io("creating", &versions_dir))?;
    let lock = lock(&versions_dir, source)?;
    if linked {
        fs::remove_file(&link).map_err(Error::io("removing", &link))?;
    }
    fs::remove_dir_all(&versions_dir).map_err(Error::io("removing", &versions_dir))?;
    drop(lock);
    Ok(true)
}

/// The md5 of a file, hex (read in 1 MiB pieces).
pub fn md5_file(path: &Path) -> Result<String, Error> {
    use md5::Digest as _;
    use std::io::Read as _;
    let mut file = File::open(path).map_err(Error::io("reading", path))?;
    let mut md5 = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(Error::io("reading", path))?;
        if n == 0 {
            return Ok(hex::encode(md5.finalize()));
        }
        md5.update(&buf[..n]);
    }
}

/// The published directory of `<extracts>/<source>`, if any.
pub fn published(extracts: &Path, source: &str) -> Option<PathBuf> {
    let link = extracts.join(source);
    fs::symlink_metadata(&link)
        .ok()
        .filter(|m| m.file_type().is_symlink())?;
    link.canonicalize().ok()
}

/// The cursor state committed with the published extract of `source`, if any.
pub fn published_state(extracts: &Path, source: &str) -> Option<String> {
    std::fs::read_to_string(published(extracts, source)?.join("state.json")).ok()
}

/// One row of `_meta`, joined with its `_files` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRow {
    pub table_name: String,
    pub description: Option<String>,
    pub rows: i64,
    pub size_bytes: i64,
    /// `extracted_at` as `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC).
    pub extracted_at: String,
    pub query_mode: String,
    pub md5: Option<String>,
    /// File path relative to the extract directory.
    pub path: Option<String>,
}

fn open_read_only(extract_dir: &Path) -> Result<duckdb::Connection, Error> {
    let path = extract_dir.join("extract.duckdb");
    let fail = |e: duckdb::Error| Error::DuckDb {
        path: path.clone(),
        reason: e.to_string(),
    };
    if !path.exists() {
        return Err(Error::NotAnExtract {
            path: extract_dir.to_path_buf(),
            reason: "it has no extract.duckdb".into(),
        });
    }
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .map_err(fail)?;
    duckdb::Connection::open_with_flags(&path, config).map_err(fail)
}

/// Reads `_meta` (and `_files`) of the extract in `extract_dir`.
pub fn read_meta(extract_dir: &Path) -> Result<Vec<MetaRow>, Error> {
    let conn = open_read_only(extract_dir)?;
    let path = extract_dir.join("extract.duckdb");
    let fail = |e: duckdb::Error| Error::DuckDb {
        path: path.clone(),
        reason: e.to_string(),
    };
    let mut stmt = conn
        .prepare(
            "SELECT m.table_name, m.description, m.rows, m.size_bytes, CAST(m.extracted_at AS VARCHAR), \
             m.query_mode, f.md5, f.path FROM _meta m LEFT JOIN _files f USING (table_name) ORDER BY m.table_name",
        )
        .map_err(fail)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(MetaRow {
                table_name: r.get(0)?,
                description: r.get(1)?,
                rows: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                size_bytes: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                extracted_at: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                query_mode: r
                    .get::<_, Option<String>>(5)?
                    .unwrap_or_else(|| "local".into()),
                md5: r.get(6)?,
                path: r.get(7)?,
            })
        })
        .map_err(fail)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(fail)
}

/// Up to `n` rows of `table` from the extract, every value rendered as text.
/// Returns the column names and the rows.
pub fn sample(
    extract_dir: &Path,
    table: &str,
    n: usize,
) -> Result<(Vec<String>, Vec<Vec<String>>), Error> {
    validate_name("table", table)?;
    let conn = open_read_only(extract_dir)?;
    let path = extract_dir.join("extract.duckdb");
    let fail = |e: duckdb::Error| Error::DuckDb {
        path: path.clone(),
        reason: e.to_string(),
    };
    let mut columns = Vec::new();
    {
        let mut stmt = conn
            .prepare(&format!("DESCRIBE \"{table}\""))
            .map_err(fail)?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(fail)?;
        for name in names {
            columns.push(name.map_err(fail)?);
        }
    }
    let select: Vec<String> = columns
        .iter()
        .map(|c| format!("CAST(\"{}\" AS VARCHAR)", c.replace('"', "\"\"")))
        .collect();
    let sql = format!("SELECT {} FROM \"{table}\" LIMIT {n}", select.join(", "));
    let mut stmt = conn.prepare(&sql).map_err(fail)?;
    let width = columns.len();
    let rows = stmt
        .query_map([], |r| {
            (0..width)
                .map(|i| {
                    Ok(r.get::<_, Option<String>>(i)?
                        .unwrap_or_else(|| "NULL".into()))
                })
                .collect()
        })
        .map_err(fail)?;
    let rows = rows
        .collect::<Result<Vec<Vec<String>>, _>>()
        .map_err(fail)?;
    Ok((columns, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_staging_is_cleaned_unless_a_run_holds_the_source() {
        let tmp = tempfile::tempdir().unwrap();
        let busy = Staging::begin(tmp.path(), "b").unwrap();
        for source in ["a", "b"] {
            std::fs::create_dir_all(
                tmp.path()
                    .join(VERSIONS)
                    .join(source)
                    .join("20260101T000000.000000Z-1.tmp/data"),
            )
            .unwrap();
        }
        let cleaned = clean_stale(tmp.path());
        assert_eq!(cleaned, ["a"]);
        assert!(
            !tmp.path()
                .join(VERSIONS)
                .join("a/20260101T000000.000000Z-1.tmp")
                .exists()
        );
        assert!(
            tmp.path()
                .join(VERSIONS)
                .join("b/20260101T000000.000000Z-1.tmp")
                .exists(),
            "a source with a run in progress is left alone"
        );
        drop(busy);
    }

    fn publish_one(extracts: &Path, content: &str) -> PathBuf {
        let s = Staging::begin(extracts, "src").unwrap();
        fs::write(s.data_dir().join("t.parquet"), content).unwrap();
        s.seal().unwrap();
        s.publish().unwrap()
    }

    #[test]
    fn publish_swaps_the_symlink_and_keeps_one_previous_version() {
        let tmp = tempfile::tempdir().unwrap();
        let v1 = publish_one(tmp.path(), "one");
        assert_eq!(
            fs::read_to_string(tmp.path().join("src/data/t.parquet")).unwrap(),
            "one"
        );
        let v2 = publish_one(tmp.path(), "two");
        assert_eq!(
            fs::read_to_string(tmp.path().join("src/data/t.parquet")).unwrap(),
            "two"
        );
        assert!(
            v1.exists(),
            "previous version is kept for in-flight readers"
        );
        let v3 = publish_one(tmp.path(), "three");
        assert!(!v1.exists() && v2.exists() && v3.exists());
        assert_eq!(
            published(tmp.path(), "src").unwrap(),
            v3.canonicalize().unwrap()
        );
    }

    #[test]
    fn a_dropped_run_leaves_the_published_version_alone() {
        let tmp = tempfile::tempdir().unwrap();
        publish_one(tmp.path(), "good");
        {
            let s = Staging::begin(tmp.path(), "src").unwrap();
            fs::write(s.data_dir().join("t.parquet"), "half").unwrap();
            // dropped: the run failed
        }
        assert_eq!(
            fs::read_to_string(tmp.path().join("src/data/t.parquet")).unwrap(),
            "good"
        );
        let leftovers: Vec<_> = fs::read_dir(tmp.path().join(".versions/src"))
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert_eq!(leftovers.len(), 1, "only the published version remains");
    }

    #[test]
    fn stale_tmp_dirs_of_killed_runs_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        publish_one(tmp.path(), "good");
        let stale = tmp
            .path()
            .join(".versions/src/19700101T000000.000000Z-1.tmp");
        fs::create_dir_all(&stale).unwrap();
        let _s = Staging::begin(tmp.path(), "src").unwrap();
        assert!(!stale.exists());
    }

    #[test]
    fn one_run_per_source() {
        let tmp = tempfile::tempdir().unwrap();
        let _a = Staging::begin(tmp.path(), "src").unwrap();
        let err = Staging::begin(tmp.path(), "src").unwrap_err();
        assert!(matches!(err, Error::Busy { .. }), "{err}");
        Staging::begin(tmp.path(), "other").unwrap();
    }

    #[test]
    fn refuses_a_directory_it_does_not_manage() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("src")).unwrap();
        let err = Staging::begin(tmp.path(), "src").unwrap_err();
        assert!(matches!(err, Error::NotAnExtract { .. }), "{err}");
        let err = Staging::begin(tmp.path(), "../x").unwrap_err();
        assert!(matches!(err, Error::UnsafeName { .. }), "{err}");
    }
}
