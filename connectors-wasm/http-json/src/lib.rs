//! # http-json connector
//!
//! One table per configured endpoint of a JSON HTTP API: pages through it (page number,
//! offset, cursor token or next link), turns records into Arrow with a declared or
//! inferred schema, retries 429/5xx/transport errors with backoff (honouring
//! `Retry-After`), paces requests, and syncs incrementally by a cursor field. Credentials
//! are host-injected secrets: the connector only writes a placeholder. See README.md.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agnes_connector_sdk::arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use agnes_connector_sdk::arrow_array::{ArrayRef, RecordBatch};
use agnes_connector_sdk::arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use agnes_connector_sdk::http::{HttpError, Request, Response, Url, secret, secret_base64};
use agnes_connector_sdk::{Connector, Error, Level, ReadContext, Spec, Table, log};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The connector's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `https://api.example.com` (no trailing path needed).
    pub base_url: String,
    /// How the credential is sent; absent: no credential.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Extra static headers for every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Retries of one request on 429, 5xx and transport errors.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First backoff; doubles per retry.
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// Cap of one wait (also of a `Retry-After`).
    #[serde(default = "default_max_backoff")]
    pub max_backoff_ms: u64,
    /// At least this long between two requests (rate limit).
    #[serde(default)]
    pub min_interval_ms: u64,
    pub tables: Vec<Endpoint>,
}

fn default_retries() -> u32 {
    5
}
fn default_backoff() -> u64 {
    500
}
fn default_max_backoff() -> u64 {
    60_000
}

/// Where the secret `api_token` goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: Basic base64(<token>)`; store the secret as `user:password`.
    Basic,
    /// `<header>: <prefix><token>`.
    Header {
        header: String,
        #[serde(default)]
        prefix: String,
    },
}

/// One table: an endpoint and how to page through it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Table name (`[a-z][a-z0-9_]*`).
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Path (and optional query) under `base_url`.
    pub path: String,
    /// Fixed query parameters.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// JSON pointer to the array of records in a response (`""`: the response is the array).
    #[serde(default)]
    pub records: String,
    #[serde(default)]
    pub pagination: Pagination,
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// A field that grows when a record changes (e.g. `updated_at`): the incremental cursor.
    #[serde(default)]
    pub cursor_field: Option<String>,
    /// The query parameter that asks for records with `cursor_field >= value`.
    #[serde(default)]
    pub cursor_param: Option<String>,
    /// Declared columns; absent: inferred from the first page.
    #[serde(default)]
    pub columns: Option<Vec<Column>>,
}

/// How to get the next page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub enum Pagination {
    /// One request.
    #[default]
    None,
    /// `?<param>=<n>&<size_param>=<size>`, n from `start`; ends on a short page.
    Page {
        #[serde(default = "page_param")]
        param: String,
        #[serde(default)]
        size_param: Option<String>,
        #[serde(default = "default_size")]
        size: usize,
        #[serde(default = "one")]
        start: u64,
    },
    /// `?<param>=<offset>&<limit_param>=<size>`; ends on a short page.
    Offset {
        #[serde(default = "offset_param")]
        param: String,
        #[serde(default = "limit_param")]
        limit_param: String,
        #[serde(default = "default_size")]
        size: usize,
    },
    /// `?<param>=<token>`, the token at JSON pointer `next` of the response; ends when it
    /// is absent, null or empty.
    Cursor { param: String, next: String },
    /// The next page's URL at JSON pointer `next`, or in the `Link: <…>; rel="next"`
    /// header when `next` is `"header:link"`; ends when there is none.
    NextLink { next: String },
}

fn page_param() -> String {
    "page".into()
}
fn offset_param() -> String {
    "offset".into()
}
fn limit_param() -> String {
    "limit".into()
}
fn default_size() -> usize {
    100
}
fn one() -> u64 {
    1
}

/// A declared column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    /// `int64`, `float64`, `boolean`, `string`, `timestamp` (RFC 3339 text → UTC
    /// microseconds) or `json` (any value, kept as JSON text).
    #[serde(rename = "type")]
    pub kind: Kind,
}

/// Column types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Int64,
    Float64,
    Boolean,
    String,
    Timestamp,
    Json,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Int64 => DataType::Int64,
            Kind::Float64 => DataType::Float64,
            Kind::Boolean => DataType::Boolean,
            Kind::String | Kind::Json => DataType::Utf8,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    fn of(value: &Value) -> Option<Kind> {
        match value {
            Value::Null => None,
            Value::Bool(_) => Some(Kind::Boolean),
            Value::Number(n) if n.is_i64() => Some(Kind::Int64),
            Value::Number(_) => Some(Kind::Float64),
            Value::String(s) if parse_timestamp(s).is_some() => Some(Kind::Timestamp),
            Value::String(_) => Some(Kind::String),
            Value::Array(_) | Value::Object(_) => Some(Kind::Json),
        }
    }

    /// The narrowest kind holding both.
    fn unify(self, other: Kind) -> Kind {
        match (self, other) {
            (a, b) if a == b => a,
            (Kind::Int64, Kind::Float64) | (Kind::Float64, Kind::Int64) => Kind::Float64,
            (Kind::Timestamp, Kind::String) | (Kind::String, Kind::Timestamp) => Kind::String,
            _ => Kind::Json,
        }
    }
}

/// RFC 3339 / ISO 8601 text with a time → UTC microseconds. Plain numbers and dates
/// without a time are not timestamps.
fn parse_timestamp(s: &str) -> Option<i64> {
    if s.len() < 19 || !s.as_bytes()[..4].iter().all(u8::is_ascii_digit) || s.as_bytes()[4] != b'-'
    {
        return None;
    }
    arrow_cast::parse::string_to_timestamp_nanos(s)
        .ok()
        .map(|ns| ns.div_euclid(1000))
}

/// A table's schema: the declared columns, or inferred from `records` (fields in order of
/// first appearance; a field that is null everywhere is a string; mixed kinds widen to
/// float, string or JSON text). Every column is nullable.
pub fn schema_for(endpoint: &Endpoint, records: &[Value]) -> Result<SchemaRef, Error> {
    let columns: Vec<(String, Kind)> = match &endpoint.columns {
        Some(cols) => cols.iter().map(|c| (c.name.clone(), c.kind)).collect(),
        None => {
            let mut found: Vec<(String, Option<Kind>)> = Vec::new();
            for r in records {
                let Value::Object(map) = r else {
                    return Err(Error::Source(format!(
                        "{}: a record is not a JSON object: {}",
                        endpoint.name,
                        snippet(r)
                    )));
                };
                for (k, v) in map {
                    let kind = Kind::of(v);
                    match found.iter_mut().find(|(n, _)| n == k) {
                        Some((_, slot)) => {
                            *slot = match (*slot, kind) {
                                (Some(a), Some(b)) => Some(a.unify(b)),
                                (a, b) => a.or(b),
                            }
                        }
                        None => found.push((k.clone(), kind)),
                    }
                }
            }
            if found.is_empty() {
                return Err(Error::Config(format!(
                    "{}: the first page has no records to infer columns from; declare `columns`",
                    endpoint.name
                )));
            }
            found
                .into_iter()
                .map(|(n, k)| (n, k.unwrap_or(Kind::String)))
                .collect()
        }
    };
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, k)| {
            let mut f = Field::new(n, k.data_type(), true);
            if *k == Kind::Json {
                f = f.with_metadata([("agnes.kind".to_string(), "json".to_string())].into());
            }
            f
        })
        .collect();
    for key in endpoint.primary_key.iter().chain(endpoint.cursor_field.iter()) {
        if !fields.iter().any(|f| f.name() == key) {
            return Err(Error::Config(format!(
                "{}: primary key or cursor field `{key}` is not a column",
                endpoint.name
            )));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

fn snippet(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        format!("{}…", &s[..s.floor_char_boundary(120)])
    } else {
        s
    }
}

/// Records → one batch of `schema`. A value that does not fit its column fails with the
/// field and the value.
pub fn to_batch(table: &str, schema: &SchemaRef, records: &[Value]) -> Result<RecordBatch, Error> {
    let bad = |field: &str, v: &Value, kind: &str| {
        Error::Source(format!(
            "{table}: field `{field}` = {} is not {kind}; declare it as `string` or `json`",
            snippet(v)
        ))
    };
    let empty = Map::new();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name();
        let values = records
            .iter()
            .map(|r| r.as_object().unwrap_or(&empty).get(name).unwrap_or(&Value::Null));
        let json_text = field.metadata().get("agnes.kind").is_some_and(|k| k == "json");
        let array: ArrayRef = match field.data_type() {
            DataType::Int64 => {
                let mut b = Int64Builder::with_capacity(records.len());
                for v in values {
                    match v {
                        Value::Null => b.append_null(),
                        Value::Number(n) => b.append_value(n.as_i64().ok_or_else(|| bad(name, v, "an integer"))?),
                        Value::String(s) => b.append_value(s.parse().map_err(|_| bad(name, v, "an integer"))?),
                        _ => return Err(bad(name, v, "an integer")),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Float64 => {
                let mut b = Float64Builder::with_capacity(records.len());
                for v in values {
                    match v {
                        Value::Null => b.append_null(),
                        Value::Number(n) => b.append_value(n.as_f64().ok_or_else(|| bad(name, v, "a number"))?),
                        Value::String(s) => b.append_value(s.parse().map_err(|_| bad(name, v, "a number"))?),
                        _ => return Err(bad(name, v, "a number")),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(records.len());
                for v in values {
                    match v {
                        Value::Null => b.append_null(),
                        Value::Bool(x) => b.append_value(*x),
                        _ => return Err(bad(name, v, "a boolean")),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Timestamp(_, tz) => {
                let mut b = TimestampMicrosecondBuilder::with_capacity(records.len())
                    .with_timezone_opt(tz.clone());
                for v in values {
                    match v {
                        Value::Null => b.append_null(),
                        Value::String(s) => b.append_value(
                            parse_timestamp(s).ok_or_else(|| bad(name, v, "an RFC 3339 timestamp"))?,
                        ),
                        _ => return Err(bad(name, v, "an RFC 3339 timestamp")),
                    }
                }
                Arc::new(b.finish())
            }
            _ => {
                let mut b = StringBuilder::with_capacity(records.len(), records.len() * 16);
                for v in values {
                    match v {
                        Value::Null => b.append_null(),
                        Value::String(s) if !json_text => b.append_value(s),
                        other => b.append_value(other.to_string()),
                    }
                }
                Arc::new(b.finish())
            }
        };
        columns.push(array);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::Internal(e.to_string()))
}

/// Percent-encodes a query component (RFC 3986 unreserved characters stay).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `base + path` with `params` appended to its query.
pub fn url_with(base: &str, path: &str, params: &[(String, String)]) -> String {
    let mut url = format!("{}{}", base.trim_end_matches('/'), path);
    for (i, (k, v)) in params.iter().enumerate() {
        let sep = if i == 0 && !url.contains('?') { '?' } else { '&' };
        url.push(sep);
        url.push_str(&encode(k));
        url.push('=');
        url.push_str(&encode(v));
    }
    url
}

/// The records of one response.
pub fn records_of(endpoint: &Endpoint, body: &Value) -> Result<Vec<Value>, Error> {
    let at = if endpoint.records.is_empty() {
        Some(body)
    } else {
        body.pointer(&endpoint.records)
    };
    match at {
        Some(Value::Array(items)) => Ok(items.clone()),
        Some(Value::Null) | None if !endpoint.records.is_empty() => Err(Error::Source(format!(
            "{}: the response has no array at `{}`: {}",
            endpoint.name,
            endpoint.records,
            snippet(body)
        ))),
        _ => Err(Error::Source(format!(
            "{}: the records are not an array: {}",
            endpoint.name,
            snippet(body)
        ))),
    }
}

/// The `rel="next"` target of a `Link` header.
pub fn link_next(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim().replace(' ', "").as_str(), "rel=\"next\"" | "rel=next"));
        is_next.then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

/// Where the read of one endpoint goes next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Url(String),
    Done,
}

/// The URL of the page after the one that answered `response` with `count` records.
pub fn next_page(
    config: &Config,
    endpoint: &Endpoint,
    base_params: &[(String, String)],
    page_index: u64,
    count: usize,
    response: &Response,
    body: &Value,
) -> Result<Next, Error> {
    let with = |extra: Vec<(String, String)>| {
        let mut params = base_params.to_vec();
        params.extend(extra);
        Next::Url(url_with(&config.base_url, &endpoint.path, &params))
    };
    Ok(match &endpoint.pagination {
        Pagination::None => Next::Done,
        Pagination::Page { param, size_param, size, start } => {
            if count < *size || count == 0 {
                Next::Done
            } else {
                let mut extra = vec![(param.clone(), (start + page_index + 1).to_string())];
                if let Some(sp) = size_param {
                    extra.push((sp.clone(), size.to_string()));
                }
                with(extra)
            }
        }
        Pagination::Offset { param, limit_param, size } => {
            if count < *size || count == 0 {
                Next::Done
            } else {
                with(vec![
                    (param.clone(), ((page_index + 1) * *size as u64).to_string()),
                    (limit_param.clone(), size.to_string()),
                ])
            }
        }
        Pagination::Cursor { param, next } => match body.pointer(next) {
            Some(Value::String(s)) if !s.is_empty() => with(vec![(param.clone(), s.clone())]),
            Some(Value::Number(n)) => with(vec![(param.clone(), n.to_string())]),
            _ => Next::Done,
        },
        Pagination::NextLink { next } => {
            let link = if next == "header:link" {
                response.header("link").and_then(link_next)
            } else {
                body.pointer(next).and_then(Value::as_str).map(str::to_string)
            };
            match link.filter(|l| !l.is_empty()) {
                Some(l) => {
                    let here = Url::parse(&response.url).map_err(Error::from)?;
                    Next::Url(here.join(&l).map_err(Error::from)?.to_string())
                }
                None => Next::Done,
            }
        }
    })
}

/// The first page's URL.
pub fn first_page(config: &Config, endpoint: &Endpoint, base_params: &[(String, String)]) -> String {
    let mut params = base_params.to_vec();
    match &endpoint.pagination {
        Pagination::Page { param, size_param, size, start } => {
            params.push((param.clone(), start.to_string()));
            if let Some(sp) = size_param {
                params.push((sp.clone(), size.to_string()));
            }
        }
        Pagination::Offset { param, limit_param, size } => {
            params.push((param.clone(), "0".into()));
            params.push((limit_param.clone(), size.to_string()));
        }
        _ => {}
    }
    url_with(&config.base_url, &endpoint.path, &params)
}

/// The larger of two cursor values: numbers numerically, anything else as text (ISO 8601
/// timestamps in one format and zone compare correctly as text).
pub fn max_cursor(a: Option<Value>, b: &Value) -> Option<Value> {
    if b.is_null() {
        return a;
    }
    Some(match a {
        None => b.clone(),
        Some(a) => {
            let greater = match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => y > x,
                _ => cursor_text(b) > cursor_text(&a),
            };
            if greater { b.clone() } else { a }
        }
    })
}

/// A cursor value as query text.
pub fn cursor_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Sends requests with auth, pacing and retries.
pub struct Client<'a> {
    config: &'a Config,
    last: Option<std::time::Instant>,
    /// How long to sleep; replaced in native tests.
    pub sleep: fn(Duration),
}

impl<'a> Client<'a> {
    pub fn new(config: &'a Config) -> Client<'a> {
        Client {
            config,
            last: None,
            sleep: std::thread::sleep,
        }
    }

    fn request(&self, url: &str) -> Request {
        let mut req = Request::get(url).header("accept", "application/json");
        for (k, v) in &self.config.headers {
            req = req.header(k.clone(), v.clone());
        }
        match &self.config.auth {
            None => req,
            Some(Auth::Bearer) => req.header("authorization", format!("Bearer {}", secret("api_token"))),
            Some(Auth::Basic) => req.header("authorization", format!("Basic {}", secret_base64("api_token"))),
            Some(Auth::Header { header, prefix }) => {
                req.header(header.clone(), format!("{prefix}{}", secret("api_token")))
            }
        }
    }

    /// GETs `url` until it answers 2xx, retrying 429 (after `Retry-After`, else backoff),
    /// 5xx and transport errors up to `max_retries` times.
    pub fn get(&mut self, url: &str) -> Result<(Response, Value), Error> {
        let mut attempt: u32 = 0;
        loop {
            if let Some(last) = self.last {
                let gap = Duration::from_millis(self.config.min_interval_ms);
                let since = last.elapsed();
                if since < gap {
                    (self.sleep)(gap - since);
                }
            }
            self.last = Some(std::time::Instant::now());
            let outcome = self.request(url).send();
            let backoff = Duration::from_millis(
                self.config
                    .backoff_ms
                    .saturating_mul(1u64 << attempt.min(20))
                    .min(self.config.max_backoff_ms),
            );
            let (wait, why) = match outcome {
                Ok(resp) if resp.is_success() => {
                    let body: Value = resp.json()?;
                    return Ok((resp, body));
                }
                Ok(resp) if resp.status == 429 || resp.status >= 500 => {
                    let wait = resp
                        .retry_after()
                        .unwrap_or(backoff)
                        .min(Duration::from_millis(self.config.max_backoff_ms));
                    (wait, format!("{} {}", resp.status, resp.body_snippet()))
                }
                Ok(resp) => {
                    return Err(Error::Source(format!(
                        "GET {url} answered {}: {}",
                        resp.status,
                        resp.body_snippet()
                    )));
                }
                Err(HttpError::Transport(e)) => (backoff, e),
                Err(e) => return Err(e.into()),
            };
            if attempt >= self.config.max_retries {
                return Err(Error::Source(format!(
                    "GET {url} failed after {} attempts: {why}",
                    attempt + 1
                )));
            }
            log(
                Level::Warn,
                &format!("GET {url}: {why}; retry {} in {} ms", attempt + 1, wait.as_millis()),
            );
            (self.sleep)(wait);
            attempt += 1;
        }
    }
}

/// The committed state: `{"cursors": {"<table>": <value>}}`.
fn cursors(state: Option<&str>) -> Result<Map<String, Value>, Error> {
    let Some(text) = state else {
        return Ok(Map::new());
    };
    let v: Value = serde_json::from_str(text).map_err(|e| Error::Internal(format!("state: {e}")))?;
    Ok(v.get("cursors").and_then(Value::as_object).cloned().unwrap_or_default())
}

fn validate(config: &Config) -> Result<(), Error> {
    Url::parse(&config.base_url).map_err(|e| Error::Config(format!("base_url: {e}")))?;
    if config.tables.is_empty() {
        return Err(Error::Config("tables: configure at least one endpoint".into()));
    }
    for t in &config.tables {
        if !t.path.starts_with('/') {
            return Err(Error::Config(format!("{}: path must start with /", t.name)));
        }
        if !t.records.is_empty() && !t.records.starts_with('/') {
            return Err(Error::Config(format!(
                "{}: records is a JSON pointer like /data (or empty for a top-level array)",
                t.name
            )));
        }
        if t.cursor_param.is_some() && t.cursor_field.is_none() {
            return Err(Error::Config(format!("{}: cursor_param needs cursor_field", t.name)));
        }
        if matches!(t.pagination, Pagination::Page { size: 0, .. } | Pagination::Offset { size: 0, .. }) {
            return Err(Error::Config(format!("{}: pagination size must be at least 1", t.name)));
        }
    }
    Ok(())
}

fn base_params(endpoint: &Endpoint) -> Vec<(String, String)> {
    endpoint.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Schemas inferred by `discover`, reused by `read` in the same instance (the host calls
/// both in one instance), so a read neither re-fetches nor re-infers them: every batch has
/// exactly the discovered schema.
static INFERRED: std::sync::Mutex<BTreeMap<String, SchemaRef>> =
    std::sync::Mutex::new(BTreeMap::new());

/// The table of `endpoint` (fetching its first page when the columns are not declared).
fn table(config: &Config, client: &mut Client<'_>, endpoint: &Endpoint) -> Result<Table, Error> {
    let cached = INFERRED
        .lock()
        .map_err(|_| Error::Internal("schema cache poisoned".into()))?
        .get(&endpoint.name)
        .cloned();
    let schema = match (&endpoint.columns, cached) {
        (Some(_), _) => schema_for(endpoint, &[])?,
        (None, Some(schema)) => schema,
        (None, None) => {
            let (_, body) = client.get(&first_page(config, endpoint, &base_params(endpoint)))?;
            let schema = schema_for(endpoint, &records_of(endpoint, &body)?)?;
            INFERRED
                .lock()
                .map_err(|_| Error::Internal("schema cache poisoned".into()))?
                .insert(endpoint.name.clone(), schema.clone());
            schema
        }
    };
    let mut t = Table::new(endpoint.name.clone(), schema).primary_key(endpoint.primary_key.clone());
    if let Some(d) = &endpoint.description {
        t = t.description(d.clone());
    }
    if let Some(c) = &endpoint.cursor_field {
        t = t.cursor_field(c.clone());
    }
    Ok(t)
}

pub struct HttpJson;

impl Connector for HttpJson {
    type Config = Config;

    fn spec() -> Spec {
        Spec::new("http-json", env!("CARGO_PKG_VERSION")).config_schema(json!({
            "type": "object",
            "required": ["base_url", "tables"],
            "properties": {
                "base_url": {"type": "string"},
                "auth": {"type": "object"},
                "headers": {"type": "object"},
                "max_retries": {"type": "integer"},
                "backoff_ms": {"type": "integer"},
                "max_backoff_ms": {"type": "integer"},
                "min_interval_ms": {"type": "integer"},
                "tables": {"type": "array"}
            }
        }))
    }

    fn discover(config: &Config) -> Result<Vec<Table>, Error> {
        validate(config)?;
        let mut client = Client::new(config);
        config
            .tables
            .iter()
            .map(|e| table(config, &mut client, e))
            .collect()
    }

    fn read(config: &Config, ctx: &mut ReadContext) -> Result<(), Error> {
        validate(config)?;
        let mut client = Client::new(config);
        let mut cursors = cursors(ctx.state())?;
        for endpoint in &config.tables {
            if !ctx.is_selected(&endpoint.name) {
                continue;
            }
            let schema = table(config, &mut client, endpoint)?.schema;
            let mut params = base_params(endpoint);
            let previous = cursors.get(&endpoint.name).cloned();
            if let (Some(param), Some(cursor)) = (&endpoint.cursor_param, &previous) {
                params.push((param.clone(), cursor_text(cursor)));
            }
            let mut url = first_page(config, endpoint, &params);
            let mut newest = previous.clone();
            let mut page = 0u64;
            let mut total = 0usize;
            loop {
                let (response, body) = client.get(&url)?;
                let records = records_of(endpoint, &body)?;
                if let Some(field) = &endpoint.cursor_field {
                    for r in &records {
                        newest = max_cursor(newest, r.get(field).unwrap_or(&Value::Null));
                    }
                }
                ctx.emit(&endpoint.name, &to_batch(&endpoint.name, &schema, &records)?)?;
                total += records.len();
                match next_page(config, endpoint, &params, page, records.len(), &response, &body)? {
                    Next::Url(next) if next == url => {
                        return Err(Error::Source(format!(
                            "{}: the next page is the same URL ({next}); stopping",
                            endpoint.name
                        )));
                    }
                    Next::Url(next) => url = next,
                    Next::Done => break,
                }
                page += 1;
            }
            ctx.log(
                Level::Info,
                &format!("{}: {total} records in {} pages", endpoint.name, page + 1),
            );
            if let Some(c) = newest {
                cursors.insert(endpoint.name.clone(), c);
            }
        }
        ctx.set_state(json!({ "cursors": cursors }).to_string());
        Ok(())
    }
}

agnes_connector_sdk::export_connector!(HttpJson);

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(extra: Value) -> Endpoint {
        let mut v = json!({"name": "items", "path": "/items"});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    fn config(tables: Vec<Endpoint>) -> Config {
        Config {
            base_url: "http://api.test".into(),
            auth: None,
            headers: BTreeMap::new(),
            max_retries: 2,
            backoff_ms: 1,
            max_backoff_ms: 10,
            min_interval_ms: 0,
            tables,
        }
    }

    #[test]
    fn inference_widens_and_keeps_first_seen_order() {
        let records = vec![
            json!({"id": 1, "price": 2, "name": "a", "at": "2024-01-02T03:04:05Z", "tags": ["x"], "ok": true}),
            json!({"id": 2, "price": 2.5, "name": null, "at": "2024-01-03T00:00:00+01:00", "extra": null}),
        ];
        let s = schema_for(&endpoint(json!({})), &records).unwrap();
        let types: Vec<(String, DataType)> =
            s.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
        assert_eq!(
            types,
            [
                ("id".into(), DataType::Int64),
                ("price".into(), DataType::Float64),
                ("name".into(), DataType::Utf8),
                ("at".into(), DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))),
                ("tags".into(), DataType::Utf8),
                ("ok".into(), DataType::Boolean),
                ("extra".into(), DataType::Utf8),
            ]
        );
        let b = to_batch("items", &s, &records).unwrap();
        assert_eq!(b.num_rows(), 2);
        let at = b.column(3).as_any().downcast_ref::<agnes_connector_sdk::arrow_array::TimestampMicrosecondArray>().unwrap();
        assert_eq!(at.value(0), 1_704_164_645_000_000);
        assert_eq!(at.value(1), 1_704_236_400_000_000, "offsets become UTC");
        let tags = b.column(4).as_any().downcast_ref::<agnes_connector_sdk::arrow_array::StringArray>().unwrap();
        assert_eq!(tags.value(0), "[\"x\"]", "nested values are kept as JSON text");
        assert!(b.column(2).is_null(1));
    }

    #[test]
    fn declared_columns_and_bad_values() {
        let e = endpoint(json!({"columns": [{"name": "id", "type": "int64"}, {"name": "n", "type": "float64"}], "primary_key": ["id"]}));
        let s = schema_for(&e, &[]).unwrap();
        let b = to_batch("items", &s, &[json!({"id": "7", "n": 1}), json!({"id": 8})]).unwrap();
        assert_eq!(b.num_rows(), 2);
        let err = to_batch("items", &s, &[json!({"id": "seven"})]).unwrap_err().to_string();
        assert!(err.contains("field `id` = \"seven\" is not an integer"), "{err}");
        let err = schema_for(&endpoint(json!({"columns": [], "primary_key": ["id"]})), &[]).unwrap_err().to_string();
        assert!(err.contains("`id` is not a column"), "{err}");
        let err = schema_for(&endpoint(json!({})), &[json!([1])]).unwrap_err().to_string();
        assert!(err.contains("not a JSON object"), "{err}");
        let err = schema_for(&endpoint(json!({})), &[]).unwrap_err().to_string();
        assert!(err.contains("declare `columns`"), "{err}");
    }

    fn response(url: &str, headers: Vec<(String, String)>) -> Response {
        Response { status: 200, headers, body: vec![], url: url.into() }
    }

    #[test]
    fn pagination() {
        let e = endpoint(json!({"pagination": {"type": "page", "size_param": "per_page", "size": 2}}));
        let c = config(vec![e.clone()]);
        let base = vec![("q".to_string(), "a b".to_string())];
        assert_eq!(first_page(&c, &e, &base), "http://api.test/items?q=a%20b&page=1&per_page=2");
        let r = response("http://api.test/items", vec![]);
        assert_eq!(
            next_page(&c, &e, &base, 0, 2, &r, &json!([])).unwrap(),
            Next::Url("http://api.test/items?q=a%20b&page=2&per_page=2".into())
        );
        assert_eq!(next_page(&c, &e, &base, 0, 1, &r, &json!([])).unwrap(), Next::Done, "a short page ends it");

        let e = endpoint(json!({"pagination": {"type": "offset", "size": 50}}));
        assert_eq!(
            next_page(&c, &e, &[], 1, 50, &r, &json!([])).unwrap(),
            Next::Url("http://api.test/items?offset=100&limit=50".into())
        );

        let e = endpoint(json!({"pagination": {"type": "cursor", "param": "after", "next": "/meta/next"}}));
        assert_eq!(
            next_page(&c, &e, &[], 0, 10, &r, &json!({"meta": {"next": "tok=1"}})).unwrap(),
            Next::Url("http://api.test/items?after=tok%3D1".into())
        );
        assert_eq!(next_page(&c, &e, &[], 0, 10, &r, &json!({"meta": {"next": null}})).unwrap(), Next::Done);

        let e = endpoint(json!({"pagination": {"type": "next_link", "next": "header:link"}}));
        let r = response(
            "http://api.test/items?page=1",
            vec![("link".into(), "<http://api.test/items?page=1>; rel=\"prev\", </items?page=3>; rel=\"next\"".into())],
        );
        assert_eq!(
            next_page(&c, &e, &[], 0, 10, &r, &json!([])).unwrap(),
            Next::Url("http://api.test/items?page=3".into())
        );
        let e = endpoint(json!({"pagination": {"type": "next_link", "next": "/next"}}));
        assert_eq!(next_page(&c, &e, &[], 0, 10, &r, &json!({"next": null})).unwrap(), Next::Done);
    }

    #[test]
    fn records_and_cursors() {
        let e = endpoint(json!({"records": "/data/items"}));
        assert_eq!(records_of(&e, &json!({"data": {"items": [1, 2]}})).unwrap().len(), 2);
        let err = records_of(&e, &json!({"error": "x"})).unwrap_err().to_string();
        assert!(err.contains("no array at `/data/items`"), "{err}");
        assert_eq!(records_of(&endpoint(json!({})), &json!([{}])).unwrap().len(), 1);

        let m = max_cursor(None, &json!("2024-01-02T00:00:00Z"));
        let m = max_cursor(m, &json!("2024-01-01T00:00:00Z"));
        let m = max_cursor(m, &Value::Null);
        assert_eq!(m, Some(json!("2024-01-02T00:00:00Z")));
        assert_eq!(max_cursor(Some(json!(9)), &json!(10)), Some(json!(10)), "numbers compare numerically");
        assert_eq!(cursors(Some(r#"{"cursors": {"items": 5}}"#)).unwrap()["items"], 5);
    }

    #[test]
    fn config_is_strict_and_validated() {
        let err = serde_json::from_value::<Config>(json!({"base_url": "http://x", "tables": [], "retries": 3}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `retries`"), "{err}");
        for (c, needle) in [
            (json!({"base_url": "ftp://x", "tables": [{"name": "a", "path": "/a"}]}), "base_url"),
            (json!({"base_url": "http://x", "tables": []}), "at least one endpoint"),
            (json!({"base_url": "http://x", "tables": [{"name": "a", "path": "a"}]}), "path must start with /"),
            (json!({"base_url": "http://x", "tables": [{"name": "a", "path": "/a", "records": "data"}]}), "JSON pointer"),
            (json!({"base_url": "http://x", "tables": [{"name": "a", "path": "/a", "cursor_param": "since"}]}), "needs cursor_field"),
            (json!({"base_url": "http://x", "tables": [{"name": "a", "path": "/a", "pagination": {"type": "page", "size": 0}}]}), "at least 1"),
        ] {
            let config: Config = serde_json::from_value(c).unwrap();
            let err = validate(&config).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn encoding() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(url_with("http://h/", "/p?x=1", &[("y".into(), "2".into())]), "http://h/p?x=1&y=2");
        assert_eq!(link_next("<https://h/p2>; rel=\"next\""), Some("https://h/p2".into()));
        assert_eq!(link_next("<https://h/p0>; rel=\"prev\""), None);
    }
}
