//! # keboola connector
//!
//! Keboola Storage tables through the Storage API: `discover` lists the tables
//! (`GET /v2/storage/tables?include=columns`); `read` starts an asynchronous export per
//! table (`POST /v2/storage/tables/{id}/export-async`, with `changedSince` when
//! incremental), polls the job (`GET /v2/storage/jobs/{id}`), resolves the exported file
//! (`GET /v2/storage/files/{id}?federationToken=1`), follows a sliced file's manifest and
//! streams each CSV slice into Arrow. See README.md.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use agnes_connector_sdk::arrow_array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};
use agnes_connector_sdk::arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use agnes_connector_sdk::http::{Client, Request, Retry, encode, secret};
use agnes_connector_sdk::json::{parse_timestamp, snippet};
use agnes_connector_sdk::{Connector, Error, Level, ReadContext, Spec, Table};
use serde::Deserialize;
use serde_json::{Value, json};

/// The connector's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The stack's Storage API, e.g. `https://connection.keboola.com`.
    pub url: String,
    /// Table ids to read (`in.c-main.orders`); absent: every table of `bucket`, or all.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// Only tables of this bucket (`in.c-main`).
    #[serde(default)]
    pub bucket: Option<String>,
    /// Between two polls of an export job.
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
    /// An export job that has not finished by then fails the run.
    #[serde(default = "default_job_timeout")]
    pub job_timeout_secs: u64,
    /// Rows per emitted batch.
    #[serde(default = "default_batch")]
    pub batch_rows: usize,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
}

fn default_poll() -> u64 {
    1000
}
fn default_job_timeout() -> u64 {
    1800
}
fn default_batch() -> usize {
    65_536
}
fn default_retries() -> u32 {
    5
}
fn default_backoff() -> u64 {
    500
}

/// The column every table gets: when the export job that delivered the row was created
/// (the incremental cursor).
pub const EXPORTED_AT: &str = "_exported_at";

/// `in.c-main.orders` → `in_c_main_orders` (safe table name).
pub fn table_name(id: &str) -> String {
    let mut out: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
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

/// One Storage table from the listing.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageTable {
    pub id: String,
    pub columns: Vec<String>,
    pub primary_key: Vec<String>,
    pub last_change: Option<String>,
}

/// The listing → tables, filtered by `config.tables` / `config.bucket`.
pub fn parse_listing(config: &Config, listing: &Value) -> Result<Vec<StorageTable>, Error> {
    let items = listing.as_array().ok_or_else(|| {
        Error::Source(format!(
            "the table listing is not an array: {}",
            snippet(listing)
        ))
    })?;
    let mut out = Vec::new();
    for t in items {
        let id = t
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Source(format!("a listed table has no id: {}", snippet(t))))?;
        let strings = |key: &str| -> Vec<String> {
            t.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let bucket = t
            .pointer("/bucket/id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let wanted = match (&config.tables, &config.bucket) {
            (Some(ids), _) => ids.iter().any(|w| w == id),
            (None, Some(b)) => b == bucket,
            (None, None) => true,
        };
        if !wanted {
            continue;
        }
        out.push(StorageTable {
            id: id.to_string(),
            columns: strings("columns"),
            primary_key: strings("primaryKey"),
            last_change: t
                .get("lastChangeDate")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
    }
    if let Some(ids) = &config.tables
        && let Some(missing) = ids.iter().find(|w| !out.iter().any(|t| &t.id == *w))
    {
        return Err(Error::Config(format!(
            "table `{missing}` is not in the project (or the token cannot read it)"
        )));
    }
    Ok(out)
}

/// Every column as text (Storage values are strings), then [`EXPORTED_AT`].
pub fn schema_of(t: &StorageTable) -> SchemaRef {
    let mut fields: Vec<Field> = t
        .columns
        .iter()
        .map(|c| Field::new(c, DataType::Utf8, true))
        .collect();
    fields.push(Field::new(
        EXPORTED_AT,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    ));
    Arc::new(Schema::new(fields))
}

fn csv_schema(t: &StorageTable) -> SchemaRef {
    Arc::new(Schema::new(
        t.columns
            .iter()
            .map(|c| Field::new(c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

/// Parses one CSV file (RFC 4180) of `t` into batches of `schema`, each row stamped with
/// `exported_at`.
pub fn csv_batches(
    t: &StorageTable,
    schema: &SchemaRef,
    bytes: &[u8],
    header: bool,
    exported_at: i64,
    batch_rows: usize,
) -> Result<Vec<RecordBatch>, Error> {
    let reader = arrow_csv::ReaderBuilder::new(csv_schema(t))
        .with_header(header)
        .with_batch_size(batch_rows)
        .build(Cursor::new(bytes))
        .map_err(|e| Error::Source(format!("{}: {e}", t.id)))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::Source(format!("{}: exported CSV: {e}", t.id)))?;
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        let stamp = TimestampMicrosecondArray::from(vec![exported_at; batch.num_rows()])
            .with_timezone("UTC");
        columns.push(Arc::new(stamp));
        out.push(
            RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| Error::Internal(e.to_string()))?,
        );
    }
    Ok(out)
}

struct Storage<'a> {
    config: &'a Config,
    client: Client,
}

impl Storage<'_> {
    fn api(&self, req: Request) -> Request {
        req.header("x-storageapi-token", secret("keboola_token"))
            .header("accept", "application/json")
    }

    fn get(&mut self, path: &str) -> Result<Value, Error> {
        let url = format!("{}{path}", self.config.url.trim_end_matches('/'));
        let req = self.api(Request::get(url));
        self.client.send(&req)?.json()
    }

    fn list(&mut self) -> Result<Vec<StorageTable>, Error> {
        let listing = self.get("/v2/storage/tables?include=columns")?;
        parse_listing(self.config, &listing)
    }

    /// Starts an export and waits for it: `(file id, job created time µs)`.
    fn export(
        &mut self,
        t: &StorageTable,
        changed_since: Option<&str>,
    ) -> Result<(i64, i64), Error> {
        let mut form = "format=rfc&gzip=0".to_string();
        if let Some(since) = changed_since {
            form.push_str("&changedSince=");
            form.push_str(&encode(since));
        }
        let url = format!(
            "{}/v2/storage/tables/{}/export-async",
            self.config.url.trim_end_matches('/'),
            t.id
        );
        let req = self
            .api(Request::post(url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form);
        let job = self.client.send(&req)?.json::<Value>()?;
        let id = job.get("id").and_then(Value::as_i64).ok_or_else(|| {
            Error::Source(format!(
                "{}: export answered without a job id: {}",
                t.id,
                snippet(&job)
            ))
        })?;
        let deadline =
            std::time::Instant::now() + Duration::from_secs(self.config.job_timeout_secs);
        loop {
            let job = self.get(&format!("/v2/storage/jobs/{id}"))?;
            match job.get("status").and_then(Value::as_str) {
                Some("success") => {
                    let file = job
                        .pointer("/results/file/id")
                        .and_then(Value::as_i64)
                        .ok_or_else(|| {
                            Error::Source(format!(
                                "{}: export job {id} has no result file: {}",
                                t.id,
                                snippet(&job)
                            ))
                        })?;
                    let created = job
                        .get("createdTime")
                        .and_then(Value::as_str)
                        .and_then(parse_timestamp)
                        .ok_or_else(|| {
                            Error::Source(format!("{}: export job {id} has no createdTime", t.id))
                        })?;
                    return Ok((file, created));
                }
                Some("error") => {
                    let message = job
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("no message");
                    return Err(Error::Source(format!(
                        "{}: export job {id} failed: {message}",
                        t.id
                    )));
                }
                Some(_) if std::time::Instant::now() < deadline => {
                    (self.client.sleep)(Duration::from_millis(self.config.poll_interval_ms));
                }
                Some(s) => {
                    return Err(Error::Source(format!(
                        "{}: export job {id} still `{s}` after {} s (job_timeout_secs)",
                        t.id, self.config.job_timeout_secs
                    )));
                }
                None => {
                    return Err(Error::Source(format!(
                        "{}: job {id}: {}",
                        t.id,
                        snippet(&job)
                    )));
                }
            }
        }
    }

    /// The exported file's parts: `(bytes, has header)` per slice. Slices are downloaded
    /// by their signed URLs, without the token.
    fn download(&mut self, t: &StorageTable, file: i64) -> Result<Vec<(Vec<u8>, bool)>, Error> {
        let info = self.get(&format!("/v2/storage/files/{file}?federationToken=1"))?;
        let url = info.get("url").and_then(Value::as_str).ok_or_else(|| {
            Error::Source(format!(
                "{}: file {file} has no url: {}",
                t.id,
                snippet(&info)
            ))
        })?;
        let sliced = info
            .get("isSliced")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !sliced {
            return Ok(vec![(self.client.send(&Request::get(url))?.body, true)]);
        }
        let manifest: Value = self.client.send(&Request::get(url))?.json()?;
        let entries = manifest
            .get("entries")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                Error::Source(format!(
                    "{}: the slice manifest has no entries: {}",
                    t.id,
                    snippet(&manifest)
                ))
            })?;
        let mut parts = Vec::with_capacity(entries.len());
        for e in entries {
            let slice = e
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::Source(format!("{}: a manifest entry has no url", t.id)))?;
            parts.push((self.client.send(&Request::get(slice))?.body, false));
        }
        Ok(parts)
    }
}

fn storage(config: &Config) -> Result<Storage<'_>, Error> {
    agnes_connector_sdk::http::Url::parse(&config.url)
        .map_err(|e| Error::Config(format!("url: {e}")))?;
    if config.batch_rows == 0 {
        return Err(Error::Config("batch_rows must be at least 1".into()));
    }
    Ok(Storage {
        config,
        client: Client::new(Retry {
            max_retries: config.max_retries,
            backoff_ms: config.backoff_ms,
            ..Retry::default()
        }),
    })
}

fn table_of(t: &StorageTable) -> Table {
    let mut table =
        Table::new(table_name(&t.id), schema_of(t)).description(format!("Keboola table {}", t.id));
    if !t.primary_key.is_empty() {
        table = table
            .primary_key(t.primary_key.clone())
            .cursor_field(EXPORTED_AT);
    }
    table
}

pub struct Keboola;

impl Connector for Keboola {
    type Config = Config;

    fn spec() -> Spec {
        Spec::new("keboola", env!("CARGO_PKG_VERSION")).config_schema(json!({
            "type": "object", "required": ["url"],
            "properties": {"url": {"type": "string"}, "tables": {"type": "array"}, "bucket": {"type": "string"},
                           "poll_interval_ms": {"type": "integer"}, "job_timeout_secs": {"type": "integer"},
                           "batch_rows": {"type": "integer"}, "max_retries": {"type": "integer"}, "backoff_ms": {"type": "integer"}}
        }))
    }

    fn discover(config: &Config) -> Result<Vec<Table>, Error> {
        let mut s = storage(config)?;
        Ok(s.list()?.iter().map(table_of).collect())
    }

    fn read(config: &Config, ctx: &mut ReadContext) -> Result<(), Error> {
        let mut s = storage(config)?;
        let mut state: Value = match ctx.state() {
            Some(text) => {
                serde_json::from_str(text).map_err(|e| Error::Internal(format!("state: {e}")))?
            }
            None => json!({"changed_since": {}}),
        };
        for t in s.list()? {
            let name = table_name(&t.id);
            if !ctx.is_selected(&name) {
                continue;
            }
            let incremental = !t.primary_key.is_empty();
            let since = state
                .pointer(&format!(
                    "/changed_since/{}",
                    t.id.replace('~', "~0").replace('/', "~1")
                ))
                .and_then(Value::as_str)
                .filter(|_| incremental)
                .map(str::to_string);
            let (file, exported_at) = s.export(&t, since.as_deref())?;
            let schema = schema_of(&t);
            let mut rows = 0;
            for (bytes, header) in s.download(&t, file)? {
                for batch in
                    csv_batches(&t, &schema, &bytes, header, exported_at, config.batch_rows)?
                {
                    rows += batch.num_rows();
                    ctx.emit(&name, &batch)?;
                }
            }
            ctx.log(
                Level::Info,
                &format!(
                    "{}: {rows} rows{}",
                    t.id,
                    since
                        .as_ref()
                        .map(|s| format!(" changed since {s}"))
                        .unwrap_or_default()
                ),
            );
            // the next run asks for changes since this run's view of the table
            if incremental
                && let (Some(change), Some(map)) = (
                    &t.last_change,
                    state
                        .get_mut("changed_since")
                        .and_then(Value::as_object_mut),
                )
            {
                map.insert(t.id.clone(), Value::String(change.clone()));
            }
        }
        ctx.set_state(state.to_string());
        Ok(())
    }
}

agnes_connector_sdk::export_connector!(Keboola);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: Value) -> Config {
        let mut v = json!({"url": "https://connection.keboola.com"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    fn listing() -> Value {
        json!([
            {"id": "in.c-main.orders", "bucket": {"id": "in.c-main"}, "columns": ["id", "amount"], "primaryKey": ["id"], "lastChangeDate": "2024-05-01T10:00:00+0200"},
            {"id": "out.c-rep.notes", "bucket": {"id": "out.c-rep"}, "columns": ["text"], "primaryKey": []}
        ])
    }

    #[test]
    fn listing_and_filters() {
        let all = parse_listing(&config(json!({})), &listing()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].primary_key, ["id"]);
        let bucket = parse_listing(&config(json!({"bucket": "out.c-rep"})), &listing()).unwrap();
        assert_eq!(
            bucket.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["out.c-rep.notes"]
        );
        let err = parse_listing(
            &config(json!({"tables": ["in.c-main.missing"]})),
            &listing(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("in.c-main.missing"), "{err}");
        assert!(parse_listing(&config(json!({})), &json!({"error": 1})).is_err());
        let tables: Vec<Table> = all.iter().map(table_of).collect();
        assert_eq!(tables[0].name, "in_c_main_orders");
        assert_eq!(tables[0].cursor_field.as_deref(), Some(EXPORTED_AT));
        assert!(
            tables[1].primary_key.is_empty() && tables[1].cursor_field.is_none(),
            "no key: full refresh"
        );
    }

    #[test]
    fn names() {
        assert_eq!(table_name("in.c-main.orders"), "in_c_main_orders");
        assert_eq!(table_name("1x.c-A.B"), "t_1x_c_a_b");
    }

    #[test]
    fn csv_slices() {
        let t = &parse_listing(&config(json!({})), &listing()).unwrap()[0];
        let schema = schema_of(t);
        let batches = csv_batches(
            t,
            &schema,
            b"1,\"10,5\"\n2,\"say \"\"hi\"\"\"\n",
            false,
            7,
            1,
        )
        .unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1].num_rows(), 1);
        let amount = batches[1]
            .column(1)
            .as_any()
            .downcast_ref::<agnes_connector_sdk::arrow_array::StringArray>()
            .unwrap();
        assert_eq!(amount.value(0), "say \"hi\"");
        let with_header = csv_batches(t, &schema, b"id,amount\n3,4\n", true, 7, 10).unwrap();
        assert_eq!(with_header[0].num_rows(), 1);
        let err = csv_batches(t, &schema, b"1,2,3\n", false, 7, 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("in.c-main.orders"), "{err}");
    }
}
