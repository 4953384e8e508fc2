//! The `csv` connector: every `*.csv` file in a directory the host preopens read-only
//! becomes one table. Schemas are inferred from the first `infer_rows` records (or declared
//! per column), and files are streamed in batches of `batch_rows`, never read whole.
//! See `README.md` beside this crate for the config.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agnes_connector_sdk::arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use agnes_connector_sdk::{
    Connector, Error, Level, ReadContext, Spec, Table, export_connector, log,
};
use arrow_csv::reader::{Format, ReaderBuilder};
use serde::Deserialize;

/// The connector's config (JSON).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory to read, as the guest sees it (the host preopens it). Default `/data`.
    #[serde(default = "default_dir")]
    pub dir: String,
    /// Field delimiter, one ASCII character. Default `,`.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Whether the first line is a header. Default true.
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// Records sampled to infer column types. Default 10 000.
    #[serde(default = "default_infer_rows")]
    pub infer_rows: usize,
    /// Rows per emitted batch. Default 65 536.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Explicit table → file mapping. When absent, every `*.csv` file is a table named
    /// after its lower-cased stem (`-`, `.` and spaces become `_`).
    #[serde(default)]
    pub tables: Option<BTreeMap<String, String>>,
    /// Declared column types per table, overriding inference:
    /// `{"orders": {"amount": "float64"}}`. Types: string, int64, float64, boolean, date,
    /// timestamp.
    #[serde(default)]
    pub columns: BTreeMap<String, BTreeMap<String, String>>,
    /// In a split read (`parallel_reads`), files at least this large are cut into one byte
    /// range per instance (at record boundaries); smaller ones are read whole, one file per
    /// instance in turn. Default 64 MiB.
    #[serde(default = "default_split_min_bytes")]
    pub split_min_bytes: u64,
}

fn default_dir() -> String {
    "/data".into()
}
fn default_delimiter() -> char {
    ','
}
fn default_true() -> bool {
    true
}
fn default_infer_rows() -> usize {
    10_000
}
fn default_batch_rows() -> usize {
    65_536
}
fn default_split_min_bytes() -> u64 {
    64 << 20
}

/// Maps a file stem to a table name: lower-case, with `-`, `.` and spaces as `_`.
/// Other characters are kept, so the host can refuse a name that is still unsafe.
pub fn table_name(stem: &str) -> String {
    stem.chars()
        .map(|c| match c {
            '-' | '.' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn parse_type(table: &str, column: &str, ty: &str) -> Result<DataType, Error> {
    Ok(match ty.to_ascii_lowercase().as_str() {
        "string" | "varchar" | "utf8" => DataType::Utf8,
        "int64" | "bigint" | "integer" => DataType::Int64,
        "float64" | "double" => DataType::Float64,
        "boolean" | "bool" => DataType::Boolean,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        other => {
            return Err(Error::Config(format!(
                "columns.{table}.{column}: unknown type `{other}`; use string, int64, float64, boolean, date or timestamp"
            )));
        }
    })
}

impl Config {
    fn validate(&self) -> Result<(), Error> {
        if !self.delimiter.is_ascii() {
            return Err(Error::Config(format!(
                "delimiter `{}` must be one ASCII character",
                self.delimiter
            )));
        }
        if self.batch_rows == 0 || self.batch_rows > 1_000_000 {
            return Err(Error::Config(format!(
                "batch_rows must be within 1..=1000000, got {}",
                self.batch_rows
            )));
        }
        if self.infer_rows == 0 {
            return Err(Error::Config("infer_rows must be at least 1".into()));
        }
        Ok(())
    }

    fn format(&self) -> Format {
        Format::default()
            .with_header(self.has_header)
            .with_delimiter(self.delimiter as u8)
    }

    /// (table name, file path), sorted by name.
    fn files(&self) -> Result<Vec<(String, PathBuf)>, Error> {
        let dir = Path::new(&self.dir);
        if let Some(tables) = &self.tables {
            return Ok(tables
                .iter()
                .map(|(t, f)| (t.clone(), dir.join(f)))
                .collect());
        }
        let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(dir, e))?;
            let path = entry.path();
            let is_csv = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            if !is_csv {
                continue;
            }
            let stem = path.file_stem().and_then(|s| s.to_str()).ok_or_else(|| {
                Error::Source(format!("file name {} is not valid UTF-8", path.display()))
            })?;
            files.push((table_name(stem), path));
        }
        files.sort();
        for pair in files.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(Error::Config(format!(
                    "files {} and {} both map to table `{}`; name them in `tables`",
                    pair[0].1.display(),
                    pair[1].1.display(),
                    pair[0].0
                )));
            }
        }
        Ok(files)
    }

    fn schema(&self, table: &str, path: &Path) -> Result<SchemaRef, Error> {
        let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
        if !meta.is_file() {
            return Err(Error::Io(format!("{}: not a regular file", path.display())));
        }
        let mut file = File::open(path).map_err(|e| io_error(path, e))?;
        let (inferred, _) = self
            .format()
            .infer_schema(BufReader::new(&mut file), Some(self.infer_rows))
            .map_err(|e| Error::Source(format!("{}: {e}", path.display())))?;
        if inferred.fields().is_empty() {
            return Err(Error::Source(format!(
                "{}: file is empty (no header, no columns)",
                path.display()
            )));
        }
        let declared = self.columns.get(table);
        let mut fields = Vec::with_capacity(inferred.fields().len());
        for f in inferred.fields() {
            let ty = match declared.and_then(|d| d.get(f.name())) {
                Some(ty) => parse_type(table, f.name(), ty)?,
                // a column with no value in the sample is inferred as Null: read it as text
                None if f.data_type() == &DataType::Null => DataType::Utf8,
                // DuckDB's TIMESTAMP is microseconds; inference picks the finest unit it saw
                None if matches!(f.data_type(), DataType::Timestamp(..)) => {
                    DataType::Timestamp(TimeUnit::Microsecond, None)
                }
                None => f.data_type().clone(),
            };
            fields.push(Field::new(f.name(), ty, true));
        }
        if let Some(declared) = declared {
            for column in declared.keys() {
                if inferred.field_with_name(column).is_err() {
                    return Err(Error::Config(format!(
                        "columns.{table}.{column}: {} has no column `{column}`",
                        path.display()
                    )));
                }
            }
        }
        Ok(Arc::new(Schema::new(fields)))
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    let msg = format!("{}: {e}", path.display());
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        Error::AccessDenied(msg)
    } else {
        Error::Io(msg)
    }
}

/// The connector type.
pub struct Csv;

impl Connector for Csv {
    type Config = Config;

    fn spec() -> Spec {
        Spec::new("csv", env!("CARGO_PKG_VERSION")).config_schema(agnes_connector_sdk::serde_json::json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "dir": {"type": "string", "default": "/data"},
                "delimiter": {"type": "string", "minLength": 1, "maxLength": 1, "default": ","},
                "has_header": {"type": "boolean", "default": true},
                "infer_rows": {"type": "integer", "minimum": 1, "default": 10000},
                "batch_rows": {"type": "integer", "minimum": 1, "maximum": 1000000, "default": 65536},
                "split_min_bytes": {"type": "integer", "minimum": 1, "default": 67108864},
                "tables": {"type": "object", "additionalProperties": {"type": "string"}},
                "columns": {"type": "object", "additionalProperties": {
                    "type": "object", "additionalProperties": {
                        "enum": ["string", "int64", "float64", "boolean", "date", "timestamp"]}}}
            }
        }))
    }

    fn discover(config: &Config) -> Result<Vec<Table>, Error> {
        config.validate()?;
        let mut tables = Vec::new();
        for (name, path) in config.files()? {
            let schema = config.schema(&name, &path)?;
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            tables.push(Table::new(name, schema).description(format!("CSV file {file}")));
        }
        Ok(tables)
    }

    fn read(config: &Config, ctx: &mut ReadContext) -> Result<(), Error> {
        config.validate()?;
        let files = config.files()?;
        let streams = ctx.streams().to_vec();
        let (index, count) = ctx.partition();
        for (k, stream) in streams.iter().enumerate() {
            let (_, path) = files
                .iter()
                .find(|(name, _)| name == stream)
                .ok_or_else(|| Error::Config(format!("no file for table `{stream}`")))?;
            let size = std::fs::metadata(path)
                .map_err(|e| io_error(path, e))?
                .len();
            let share = if count == 1 {
                Some((0, size))
            } else if size < config.split_min_bytes {
                // small files: whole, one instance each in turn
                (k as u32 % count == index).then_some((0, size))
            } else {
                config.share(path, size, index, count)?
            };
            let Some((start, end)) = share else { continue };
            let schema = config.schema(stream, path)?;
            let mut file = File::open(path).map_err(|e| io_error(path, e))?;
            file.seek(SeekFrom::Start(start))
                .map_err(|e| io_error(path, e))?;
            // only the share that starts the file has the header
            let format = config.format().with_header(config.has_header && start == 0);
            let reader = ReaderBuilder::new(schema)
                .with_format(format)
                .with_batch_size(config.batch_rows)
                .build_buffered(BufReader::with_capacity(1 << 20, file.take(end - start)))
                .map_err(|e| Error::Source(format!("{}: {e}", path.display())))?;
            let mut rows = 0u64;
            for batch in reader {
                let batch = batch.map_err(|e| Error::Source(format!("{}: {e}", path.display())))?;
                rows += batch.num_rows() as u64;
                ctx.emit(stream, &batch)?;
            }
            let part = if count > 1 {
                format!(" (bytes {start}..{end}, instance {index} of {count})")
            } else {
                String::new()
            };
            log(
                Level::Info,
                &format!("{stream}: {rows} rows from {}{part}", path.display()),
            );
        }
        Ok(())
    }
}

impl Config {
    /// The byte range instance `index` of `count` reads of a large file: cut where records
    /// start, after each `size * i / count`. `None`: nothing (an empty range, or a file
    /// whose quoting makes cutting unsafe, which instance 0 reads whole).
    fn share(
        &self,
        path: &Path,
        size: u64,
        index: u32,
        count: u32,
    ) -> Result<Option<(u64, u64)>, Error> {
        let targets: Vec<u64> = (1..count as u64).map(|i| size * i / count as u64).collect();
        let file = File::open(path).map_err(|e| io_error(path, e))?;
        let scanned =
            record_starts(file, &targets, self.delimiter as u8).map_err(|e| io_error(path, e))?;
        let Some(cuts) = scanned else {
            if index == 0 {
                log(
                    Level::Warn,
                    &format!(
                        "{}: a quote where RFC 4180 puts none; read whole by one instance",
                        path.display()
                    ),
                );
                return Ok(Some((0, size)));
            }
            return Ok(None);
        };
        let mut bounds = vec![0];
        bounds.extend(cuts);
        bounds.push(size);
        let (start, end) = (bounds[index as usize], bounds[index as usize + 1]);
        Ok((start < end).then_some((start, end)))
    }
}

/// Where records start at or after each of `targets` (ascending, each ≥ 1): the position
/// after the first newline outside quotes at or after `target - 1`, or the end of the file.
/// Quoting is tracked from the start of the file as RFC 4180 writes it (a quote opens a
/// field, `""` inside is a quote, a quote closes before a delimiter, a newline or the end),
/// finding quotes with `memchr`; any other quote (`5'10"`, `\"`) — where a CSV reader
/// takes it literally and counting would go wrong — or an unterminated one answers `None`:
/// the file is not cut.
pub fn record_starts(
    mut file: impl Read,
    targets: &[u64],
    delimiter: u8,
) -> std::io::Result<Option<Vec<u64>>> {
    let mut out = Vec::with_capacity(targets.len());
    let mut buf = vec![0u8; 1 << 20];
    let mut base = 0u64; // file offset of buf[0]
    let mut in_quotes = false;
    let mut pending = false; // the last buffer ended on a quote inside quotes
    let mut prev = b'\n'; // the byte before buf[0]
    let ends_field = |c: u8| c == delimiter || c == b'\n' || c == b'\r';
    loop {
        if out.len() == targets.len() {
            return Ok(Some(out));
        }
        let n = read_full(&mut file, &mut buf)?;
        if n == 0 {
            if in_quotes && !pending {
                return Ok(None);
            }
            out.resize(targets.len(), base);
            return Ok(Some(out));
        }
        let b = &buf[..n];
        let mut i = 0;
        if pending {
            pending = false;
            match b[0] {
                b'"' => i = 1,
                c if ends_field(c) => in_quotes = false,
                _ => return Ok(None),
            }
        }
        while i < n && out.len() < targets.len() {
            let target = targets[out.len()];
            // from here on a newline outside quotes may end the record before `target`
            let watch = (target - 1).saturating_sub(base);
            let found = if in_quotes {
                memchr::memchr(b'"', &b[i..])
            } else if (i as u64) >= watch {
                memchr::memchr2(b'"', b'\n', &b[i..])
            } else {
                let until = (watch.min(n as u64)) as usize;
                match memchr::memchr(b'"', &b[i..until]) {
                    Some(k) => Some(k),
                    None => {
                        i = until;
                        continue;
                    }
                }
            };
            let Some(k) = found else { break };
            let j = i + k;
            if b[j] == b'\n' {
                let start = base + j as u64 + 1;
                while out.len() < targets.len() && targets[out.len()] <= start {
                    out.push(start);
                }
                i = j + 1;
            } else if !in_quotes {
                let before = if j > 0 { b[j - 1] } else { prev };
                if !ends_field(before) {
                    return Ok(None);
                }
                in_quotes = true;
                i = j + 1;
            } else if j + 1 == n {
                pending = true;
                i = n;
            } else if b[j + 1] == b'"' {
                i = j + 2;
            } else if ends_field(b[j + 1]) {
                in_quotes = false;
                i = j + 1;
            } else {
                return Ok(None);
            }
        }
        prev = b[n - 1];
        base += n as u64;
    }
}

/// Fills `buf` as far as the file allows; the count read (0 at the end).
fn read_full(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

export_connector!(Csv);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_normalised_but_unsafe_chars_kept() {
        assert_eq!(table_name("Sales-Report 2024"), "sales_report_2024");
        assert_eq!(table_name("bad;name"), "bad;name");
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: Config = agnes_connector_sdk::parse_config("{}").unwrap();
        assert_eq!(
            (c.dir.as_str(), c.delimiter, c.has_header, c.batch_rows),
            ("/data", ',', true, 65_536)
        );
        c.validate().unwrap();
        let bad: Config = agnes_connector_sdk::parse_config(r#"{"batch_rows": 0}"#).unwrap();
        assert!(matches!(bad.validate(), Err(Error::Config(m)) if m.contains("batch_rows")));
        let bad: Config = agnes_connector_sdk::parse_config(r#"{"delimiter": "é"}"#).unwrap();
        assert!(bad.validate().is_err());
        assert!(
            matches!(agnes_connector_sdk::parse_config::<Config>(r#"{"dri": "/x"}"#), Err(Error::Config(m)) if m.contains("dri"))
        );
    }

    fn starts(text: &str, targets: &[u64]) -> Option<Vec<u64>> {
        record_starts(text.as_bytes(), targets, b',').unwrap()
    }

    #[test]
    fn cuts_land_where_records_start() {
        let text = "a,b\n1,x\n22,yy\n333,zzz\n";
        // record starts: 4, 8, 14, 22 (= end)
        assert_eq!(
            starts(text, &[1, 4, 5, 14, 21]),
            Some(vec![4, 4, 8, 14, 22])
        );
        // a cut past the last newline: the end of the file
        assert_eq!(starts("a\n1\n2", &[5]), Some(vec![5]));
    }

    #[test]
    fn quoted_newlines_crlf_and_escaped_quotes_are_not_record_ends() {
        let text = "h1,h2\r\n\"multi\nline\",\"say \"\"hi\"\"\n\"\r\nnext,1\r\n";
        let next = text.find("next").unwrap() as u64;
        // every cut inside the quoted record moves past it
        for t in 8..=next {
            assert_eq!(starts(text, &[t]), Some(vec![next]), "target {t}");
        }
        // a cut right after the header
        assert_eq!(starts(text, &[2]), Some(vec![7]));
    }

    #[test]
    fn quoting_a_reader_takes_literally_is_not_cut() {
        for text in [
            "a,b\n5'10\",x\nmore,rows\n", // a quote inside an unquoted field
            "a,b\n\"x\"y,1\nmore,rows\n", // text after a closing quote
            "a,b\n\"never closed\n1,2\n", // unterminated
        ] {
            assert_eq!(starts(text, &[text.len() as u64 - 3]), None, "{text:?}");
        }
        // a stray quote after the last cut does not matter
        assert_eq!(starts("a\n1\n2\"x\n", &[2]), Some(vec![2]));
    }

    #[test]
    fn a_quote_on_a_buffer_boundary_and_multibyte_text() {
        // the closing quote is the last byte of the first 1 MiB buffer
        let mut text = String::from("a\n\"");
        text.push_str(&"é".repeat(((1 << 20) - 4) / 2));
        while text.len() < (1 << 20) - 1 {
            text.push('x');
        }
        text.push('"');
        assert_eq!(text.len(), 1 << 20);
        text.push_str("\nlast,1\n");
        let last = (1 << 20) + 1;
        assert_eq!(starts(&text, &[10, 1 << 19]), Some(vec![last, last]));
        // and as an escaped quote
        let mut text = text.replace("\"\nlast", "\"\"\"\nlast");
        text.truncate(text.len());
        assert!(starts(&text, &[10]).is_some());
    }

    #[test]
    fn declared_types() {
        assert_eq!(parse_type("t", "c", "BIGINT").unwrap(), DataType::Int64);
        assert_eq!(
            parse_type("t", "c", "timestamp").unwrap(),
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert!(
            matches!(parse_type("t", "c", "money"), Err(Error::Config(m)) if m.contains("columns.t.c"))
        );
    }
}
