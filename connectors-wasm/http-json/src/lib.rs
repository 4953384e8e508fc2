//! # http-json connector
//!
//! One table per configured endpoint of a JSON HTTP API: pages through it (page number,
//! offset, cursor token or next link), turns records into Arrow with a declared or
//! inferred schema, retries 429/5xx/transport errors with backoff (honouring
//! `Retry-After`), paces requests, and syncs incrementally by a cursor field. Credentials
//! are host-injected secrets: the connector only writes a placeholder. See README.md.

use std::collections::BTreeMap;
use std::sync::Arc;

use agnes_connector_sdk::arrow_schema::{Schema, SchemaRef};
use agnes_connector_sdk::http::{
    Client, Request, Response, Retry, Url, encode, secret, secret_base64,
};
pub use agnes_connector_sdk::json::{Column, Kind, snippet, to_batch};
use agnes_connector_sdk::json::{decode_records, text};
use agnes_connector_sdk::{Connector, Error, Level, ReadContext, Spec, Table};
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
    let fields: Vec<_> = columns
        .iter()
        .map(|(n, k)| agnes_connector_sdk::json::field(n, *k))
        .collect();
    for key in endpoint
        .primary_key
        .iter()
        .chain(endpoint.cursor_field.iter())
    {
        if !fields.iter().any(|f| f.name() == key) {
            return Err(Error::Config(format!(
                "{}: primary key or cursor field `{key}` is not a column",
                endpoint.name
            )));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// `base + path` with `params` appended to its query.
pub fn url_with(base: &str, path: &str, params: &[(String, String)]) -> String {
    let mut url = format!("{}{}", base.trim_end_matches('/'), path);
    for (i, (k, v)) in params.iter().enumerate() {
        let sep = if i == 0 && !url.contains('?') {
            '?'
        } else {
            '&'
        };
        url.push(sep);
        url.push_str(&encode(k));
        url.push('=');
        url.push_str(&encode(v));
    }
    url
}

/// Takes the records out of one response (no copy); the rest of `body` stays for the
/// pagination pointers.
pub fn take_records(endpoint: &Endpoint, body: &mut Value) -> Result<Vec<Value>, Error> {
    let at = if endpoint.records.is_empty() {
        Some(&mut *body)
    } else {
        body.pointer_mut(&endpoint.records)
    };
    let fail = |why: &str, body: &Value| {
        Error::Source(format!("{}: {why}: {}", endpoint.name, snippet(body)))
    };
    match at {
        Some(Value::Array(items)) => Ok(std::mem::take(items)),
        Some(Value::Null) | None if !endpoint.records.is_empty() => Err(fail(
            &format!("the response has no array at `{}`", endpoint.records),
            body,
        )),
        _ => Err(fail("the records are not an array", body)),
    }
}

/// The `rel="next"` target of a `Link` header.
pub fn link_next(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            matches!(
                p.trim().replace(' ', "").as_str(),
                "rel=\"next\"" | "rel=next"
            )
        });
        is_next.then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
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
        Pagination::Page { size, .. } | Pagination::Offset { size, .. } => {
            if count < *size || count == 0 {
                Next::Done
            } else {
                with(position_params(&endpoint.pagination, page_index + 1))
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
                body.pointer(next)
                    .and_then(Value::as_str)
                    .map(str::to_string)
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

/// The page-number or offset parameters of the `index`-th page (0-based); none for the
/// kinds that page by token or link.
fn position_params(pagination: &Pagination, index: u64) -> Vec<(String, String)> {
    match pagination {
        Pagination::Page {
            param,
            size_param,
            size,
            start,
        } => {
            let mut out = vec![(param.clone(), (start + index).to_string())];
            if let Some(sp) = size_param {
                out.push((sp.clone(), size.to_string()));
            }
            out
        }
        Pagination::Offset {
            param,
            limit_param,
            size,
        } => vec![
            (param.clone(), (index * *size as u64).to_string()),
            (limit_param.clone(), size.to_string()),
        ],
        _ => Vec::new(),
    }
}

/// The first page's URL.
pub fn first_page(
    config: &Config,
    endpoint: &Endpoint,
    base_params: &[(String, String)],
) -> String {
    let mut params = base_params.to_vec();
    params.extend(position_params(&endpoint.pagination, 0));
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
                _ => text(b) > text(&a),
            };
            if greater { b.clone() } else { a }
        }
    })
}

impl Config {
    fn retry(&self) -> Retry {
        Retry {
            max_retries: self.max_retries,
            backoff_ms: self.backoff_ms,
            max_backoff_ms: self.max_backoff_ms,
            min_interval_ms: self.min_interval_ms,
        }
    }

    /// A GET of `url` with the static headers and the auth placeholder.
    fn request(&self, url: &str) -> Request {
        let mut req = Request::get(url).header("accept", "application/json");
        for (k, v) in &self.headers {
            req = req.header(k.clone(), v.clone());
        }
        match &self.auth {
            None => req,
            Some(Auth::Bearer) => {
                req.header("authorization", format!("Bearer {}", secret("api_token")))
            }
            Some(Auth::Basic) => req.header(
                "authorization",
                format!("Basic {}", secret_base64("api_token")),
            ),
            Some(Auth::Header { header, prefix }) => {
                req.header(header.clone(), format!("{prefix}{}", secret("api_token")))
            }
        }
    }
}

/// The committed state: `{"cursors": {"<table>": <value>}}`.
fn cursors(state: Option<&str>) -> Result<Map<String, Value>, Error> {
    let Some(text) = state else {
        return Ok(Map::new());
    };
    let v: Value =
        serde_json::from_str(text).map_err(|e| Error::Internal(format!("state: {e}")))?;
    Ok(v.get("cursors")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default())
}

fn validate(config: &Config) -> Result<(), Error> {
    Url::parse(&config.base_url).map_err(|e| Error::Config(format!("base_url: {e}")))?;
    if config.tables.is_empty() {
        return Err(Error::Config(
            "tables: configure at least one endpoint".into(),
        ));
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
            return Err(Error::Config(format!(
                "{}: cursor_param needs cursor_field",
                t.name
            )));
        }
        if matches!(
            t.pagination,
            Pagination::Page { size: 0, .. } | Pagination::Offset { size: 0, .. }
        ) {
            return Err(Error::Config(format!(
                "{}: pagination size must be at least 1",
                t.name
            )));
        }
    }
    Ok(())
}

fn base_params(endpoint: &Endpoint) -> Vec<(String, String)> {
    endpoint
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Schemas inferred by `discover`, reused by `read` in the same instance (the host calls
/// both in one instance), so a read neither re-fetches nor re-infers them: every batch has
/// exactly the discovered schema.
static INFERRED: std::sync::Mutex<BTreeMap<String, SchemaRef>> =
    std::sync::Mutex::new(BTreeMap::new());

/// The table of `endpoint` (fetching its first page when the columns are not declared).
fn table(config: &Config, client: &mut Client, endpoint: &Endpoint) -> Result<Table, Error> {
    let cached = INFERRED
        .lock()
        .map_err(|_| Error::Internal("schema cache poisoned".into()))?
        .get(&endpoint.name)
        .cloned();
    let schema = match (&endpoint.columns, cached) {
        (Some(_), _) => schema_for(endpoint, &[])?,
        (None, Some(schema)) => schema,
        (None, None) => {
            let first = first_page(config, endpoint, &base_params(endpoint));
            let mut body: Value = client.send(&config.request(&first))?.json()?;
            let schema = schema_for(endpoint, &take_records(endpoint, &mut body)?)?;
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
        let mut client = Client::new(config.retry());
        config
            .tables
            .iter()
            .map(|e| table(config, &mut client, e))
            .collect()
    }

    fn read(config: &Config, ctx: &mut ReadContext) -> Result<(), Error> {
        validate(config)?;
        let mut client = Client::new(config.retry());
        let mut cursors = cursors(ctx.state())?;
        for endpoint in &config.tables {
            if !ctx.is_selected(&endpoint.name) {
                continue;
            }
            let schema = table(config, &mut client, endpoint)?.schema;
            let mut params = base_params(endpoint);
            let previous = cursors.get(&endpoint.name).cloned();
            if let (Some(param), Some(cursor)) = (&endpoint.cursor_param, &previous) {
                params.push((param.clone(), text(cursor)));
            }
            let mut url = first_page(config, endpoint, &params);
            let mut newest = previous.clone();
            let mut page = 0u64;
            let mut total = 0usize;
            loop {
                let response = client.send(&config.request(&url))?;
                let watch = endpoint.cursor_field.as_deref();
                // straight into the column builders; the `Value` path for anything unusual
                let (batch, body) =
                    match decode_records(&schema, &response.body, &endpoint.records, watch) {
                        Some(page) => {
                            for v in &page.watched {
                                newest = max_cursor(newest, v);
                            }
                            (page.batch, page.rest)
                        }
                        None => {
                            let mut body = response.json::<Value>()?;
                            let records = take_records(endpoint, &mut body)?;
                            if let Some(field) = watch {
                                for r in &records {
                                    newest =
                                        max_cursor(newest, r.get(field).unwrap_or(&Value::Null));
                                }
                            }
                            (to_batch(&endpoint.name, &schema, &records)?, body)
                        }
                    };
                let count = batch.num_rows();
                ctx.emit(&endpoint.name, &batch)?;
                total += count;
                match next_page(config, endpoint, &params, page, count, &response, &body)? {
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
    use agnes_connector_sdk::arrow_schema::{DataType, TimeUnit};

    use super::*;

    fn endpoint(extra: Value) -> Endpoint {
        let mut v = json!({"name": "items", "path": "/items"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
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
        let types: Vec<(String, DataType)> = s
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        assert_eq!(
            types,
            [
                ("id".into(), DataType::Int64),
                ("price".into(), DataType::Float64),
                ("name".into(), DataType::Utf8),
                (
                    "at".into(),
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
                ),
                ("tags".into(), DataType::Utf8),
                ("ok".into(), DataType::Boolean),
                ("extra".into(), DataType::Utf8),
            ]
        );
        let b = to_batch("items", &s, &records).unwrap();
        assert_eq!(b.num_rows(), 2);
        let at = b
            .column(3)
            .as_any()
            .downcast_ref::<agnes_connector_sdk::arrow_array::TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(at.value(0), 1_704_164_645_000_000);
        assert_eq!(at.value(1), 1_704_236_400_000_000, "offsets become UTC");
        let tags = b
            .column(4)
            .as_any()
            .downcast_ref::<agnes_connector_sdk::arrow_array::StringArray>()
            .unwrap();
        assert_eq!(
            tags.value(0),
            "[\"x\"]",
            "nested values are kept as JSON text"
        );
        assert!(b.column(2).is_null(1));
    }

    #[test]
    fn declared_columns_and_bad_values() {
        let e = endpoint(
            json!({"columns": [{"name": "id", "type": "int64"}, {"name": "n", "type": "float64"}], "primary_key": ["id"]}),
        );
        let s = schema_for(&e, &[]).unwrap();
        let b = to_batch("items", &s, &[json!({"id": "7", "n": 1}), json!({"id": 8})]).unwrap();
        assert_eq!(b.num_rows(), 2);
        let err = to_batch("items", &s, &[json!({"id": "seven"})])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("field `id` = \"seven\" is not an integer"),
            "{err}"
        );
        let err = schema_for(
            &endpoint(json!({"columns": [], "primary_key": ["id"]})),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`id` is not a column"), "{err}");
        let err = schema_for(&endpoint(json!({})), &[json!([1])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a JSON object"), "{err}");
        let err = schema_for(&endpoint(json!({})), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("declare `columns`"), "{err}");
    }

    fn response(url: &str, headers: Vec<(String, String)>) -> Response {
        Response {
            status: 200,
            headers,
            body: vec![],
            url: url.into(),
        }
    }

    #[test]
    fn pagination() {
        let e =
            endpoint(json!({"pagination": {"type": "page", "size_param": "per_page", "size": 2}}));
        let c = config(vec![e.clone()]);
        let base = vec![("q".to_string(), "a b".to_string())];
        assert_eq!(
            first_page(&c, &e, &base),
            "http://api.test/items?q=a%20b&page=1&per_page=2"
        );
        let r = response("http://api.test/items", vec![]);
        assert_eq!(
            next_page(&c, &e, &base, 0, 2, &r, &json!([])).unwrap(),
            Next::Url("http://api.test/items?q=a%20b&page=2&per_page=2".into())
        );
        assert_eq!(
            next_page(&c, &e, &base, 0, 1, &r, &json!([])).unwrap(),
            Next::Done,
            "a short page ends it"
        );

        let e = endpoint(json!({"pagination": {"type": "offset", "size": 50}}));
        assert_eq!(
            next_page(&c, &e, &[], 1, 50, &r, &json!([])).unwrap(),
            Next::Url("http://api.test/items?offset=100&limit=50".into())
        );

        let e = endpoint(
            json!({"pagination": {"type": "cursor", "param": "after", "next": "/meta/next"}}),
        );
        assert_eq!(
            next_page(&c, &e, &[], 0, 10, &r, &json!({"meta": {"next": "tok=1"}})).unwrap(),
            Next::Url("http://api.test/items?after=tok%3D1".into())
        );
        assert_eq!(
            next_page(&c, &e, &[], 0, 10, &r, &json!({"meta": {"next": null}})).unwrap(),
            Next::Done
        );

        let e = endpoint(json!({"pagination": {"type": "next_link", "next": "header:link"}}));
        let r = response(
            "http://api.test/items?page=1",
            vec![(
                "link".into(),
                "<http://api.test/items?page=1>; rel=\"prev\", </items?page=3>; rel=\"next\""
                    .into(),
            )],
        );
        assert_eq!(
            next_page(&c, &e, &[], 0, 10, &r, &json!([])).unwrap(),
            Next::Url("http://api.test/items?page=3".into())
        );
        let e = endpoint(json!({"pagination": {"type": "next_link", "next": "/next"}}));
        assert_eq!(
            next_page(&c, &e, &[], 0, 10, &r, &json!({"next": null})).unwrap(),
            Next::Done
        );
    }

    #[test]
    fn records_and_cursors() {
        let e = endpoint(json!({"records": "/data/items"}));
        let mut body = json!({"data": {"items": [1, 2]}, "next": "n"});
        assert_eq!(take_records(&e, &mut body).unwrap().len(), 2);
        assert_eq!(body["next"], "n", "the rest of the response stays");
        let err = take_records(&e, &mut json!({"error": "x"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no array at `/data/items`"), "{err}");
        assert_eq!(
            take_records(&endpoint(json!({})), &mut json!([{}]))
                .unwrap()
                .len(),
            1
        );

        let m = max_cursor(None, &json!("2024-01-02T00:00:00Z"));
        let m = max_cursor(m, &json!("2024-01-01T00:00:00Z"));
        let m = max_cursor(m, &Value::Null);
        assert_eq!(m, Some(json!("2024-01-02T00:00:00Z")));
        assert_eq!(
            max_cursor(Some(json!(9)), &json!(10)),
            Some(json!(10)),
            "numbers compare numerically"
        );
        assert_eq!(
            cursors(Some(r#"{"cursors": {"items": 5}}"#)).unwrap()["items"],
            5
        );
    }

    #[test]
    fn config_is_strict_and_validated() {
        let err = serde_json::from_value::<Config>(
            json!({"base_url": "http://x", "tables": [], "retries": 3}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `retries`"), "{err}");
        for (c, needle) in [
            (
                json!({"base_url": "ftp://x", "tables": [{"name": "a", "path": "/a"}]}),
                "base_url",
            ),
            (
                json!({"base_url": "http://x", "tables": []}),
                "at least one endpoint",
            ),
            (
                json!({"base_url": "http://x", "tables": [{"name": "a", "path": "a"}]}),
                "path must start with /",
            ),
            (
                json!({"base_url": "http://x", "tables": [{"name": "a", "path": "/a", "records": "data"}]}),
                "JSON pointer",
            ),
            (
                json!({"base_url": "http://x", "tables": [{"name": "a", "path": "/a", "cursor_param": "since"}]}),
                "needs cursor_field",
            ),
            (
                json!({"base_url": "http://x", "tables": [{"name": "a", "path": "/a", "pagination": {"type": "page", "size": 0}}]}),
                "at least 1",
            ),
        ] {
            let config: Config = serde_json::from_value(c).unwrap();
            let err = validate(&config).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn encoding() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(
            url_with("http://h/", "/p?x=1", &[("y".into(), "2".into())]),
            "http://h/p?x=1&y=2"
        );
        assert_eq!(
            link_next("<https://h/p2>; rel=\"next\""),
            Some("https://h/p2".into())
        );
        assert_eq!(link_next("<https://h/p0>; rel=\"prev\""), None);
    }
}
