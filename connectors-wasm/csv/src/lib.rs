//! The `csv` connector: every `*.csv` file in a directory the host preopens read-only
//! becomes one table. Schemas are inferred from the first `infer_rows` records (or declared
//! per column), and files are streamed in batches of `batch_rows`, never read whole.
//! See `README.md` beside this crate for the config.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
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
        for stream in &streams {
            let (_, path) = files
                .iter()
                .find(|(name, _)| name == stream)
                .ok_or_else(|| Error::Config(format!("no file for table `{stream}`")))?;
            let schema = config.schema(stream, path)?;
            let mut file = File::open(path).map_err(|e| io_error(path, e))?;
            file.seek(SeekFrom::Start(0))
                .map_err(|e| io_error(path, e))?;
            let reader = ReaderBuilder::new(schema)
                .with_format(config.format())
                .with_batch_size(config.batch_rows)
                .build_buffered(BufReader::with_capacity(1 << 20, file))
                .map_err(|e| Error::Source(format!("{}: {e}", path.display())))?;
            let mut rows = 0u64;
            for batch in reader {
                let batch = batch.map_err(|e| Error::Source(format!("{}: {e}", path.display())))?;
                rows += batch.num_rows() as u64;
                ctx.emit(stream, &batch)?;
            }
            log(
                Level::Info,
                &format!("{stream}: {rows} rows from {}", path.display()),
            );
        }
        Ok(())
    }
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
