//! # agnes-connector-sdk
//!
//! Write an Agnes connector in plain Rust. A connector is a type that implements
//! [`Connector`]: it describes itself ([`Connector::spec`]), lists its tables with their
//! Arrow schemas ([`Connector::discover`]) and reads them, handing Arrow
//! [`RecordBatch`]es to [`ReadContext::emit`]. [`export_connector!`] turns the type into a
//! WebAssembly component of the `agnes:connector@0.2.0` world; the raw bindings stay hidden.
//!
//! A connector that can answer queries at its source also implements
//! [`Connector::query`] (and [`Connector::estimate`]) and says so in its [`Spec`]; the
//! host hands it a validated, structured [`query::Request`] (or admin SQL), never analyst
//! text. Databases are opened by the host, which logs in for the connector:
//! [`database::connect`] returns the authenticated stream and [`postgres`] speaks
//! PostgreSQL over it.
//!
//! ```ignore
//! use agnes_connector_sdk::{export_connector, Connector, Error, ReadContext, Spec, Table};
//! use agnes_connector_sdk::arrow_array::{Int64Array, RecordBatch};
//! use agnes_connector_sdk::arrow_schema::{DataType, Field, Schema};
//! use std::sync::Arc;
//!
//! struct Numbers;
//!
//! #[derive(serde::Deserialize)]
//! struct Config { count: i64 }
//!
//! impl Connector for Numbers {
//!     type Config = Config;
//!     fn spec() -> Spec { Spec::new("numbers", env!("CARGO_PKG_VERSION")) }
//!     fn discover(_: &Config) -> Result<Vec<Table>, Error> {
//!         let schema = Schema::new(vec![Field::new("n", DataType::Int64, false)]);
//!         Ok(vec![Table::new("numbers", Arc::new(schema))])
//!     }
//!     fn read(config: &Config, ctx: &mut ReadContext) -> Result<(), Error> {
//!         let schema = Self::discover(config)?.remove(0).schema;
//!         let column = Int64Array::from_iter_values(0..config.count);
//!         let batch = RecordBatch::try_new(schema, vec![Arc::new(column)])?;
//!         ctx.emit("numbers", &batch)
//!     }
//! }
//!
//! export_connector!(Numbers);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm` is the
//! component. See `docs/connector-authoring.md`.

// The generated bindings name this crate by its external path, also from inside it.
extern crate self as agnes_connector_sdk;

use std::collections::HashMap;

use arrow_array::RecordBatch;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{ArrowError, SchemaRef};

pub mod database;
pub mod http;
pub mod json;
pub mod postgres;

/// The structured request of `query` and `estimate`: the filter expression and its
/// renderers (re-exported `agnes-query`).
pub use agnes_query as query;
pub use arrow_array;
pub use arrow_schema;
pub use serde_json;

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

/// The generated bindings. Connector authors do not need them; [`export_connector!`]
/// uses them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "connector",
        path: "../../wit/connector-0.2",
        pub_export_macro: true,
        export_macro_name: "__agnes_export_world",
        default_bindings_module: "agnes_connector_sdk::bindings",
        runtime_path: "agnes_connector_sdk::__private::wit_bindgen::rt",
        generate_all,
    });
}

use bindings::agnes::connector::host;
use bindings::agnes::connector::types as wit;

/// Severity of a log line sent to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Why a connector call failed. The variant tells the host (and the operator reading the
/// sync history) whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The config is invalid: say which key and why.
    Config(String),
    /// The source answered with an error or with data the connector cannot read.
    Source(String),
    /// Reading a file or the network failed.
    Io(String),
    /// The host denied a call: the connector lacks a capability.
    AccessDenied(String),
    /// The host refused a call because a run limit was reached.
    LimitExceeded(String),
    /// A bug in the connector.
    Internal(String),
    /// The connector does not implement this call.
    Unsupported(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, msg) = match self {
            Error::Config(m) => ("config", m),
            Error::Source(m) => ("source", m),
            Error::Io(m) => ("io", m),
            Error::AccessDenied(m) => ("access denied", m),
            Error::LimitExceeded(m) => ("limit exceeded", m),
            Error::Internal(m) => ("internal", m),
            Error::Unsupported(m) => ("unsupported", m),
        };
        write!(f, "{kind}: {msg}")
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            Error::AccessDenied(e.to_string())
        } else {
            Error::Io(e.to_string())
        }
    }
}

impl From<ArrowError> for Error {
    fn from(e: ArrowError) -> Self {
        match e {
            ArrowError::IoError(msg, _) => Error::Io(msg),
            ArrowError::ParseError(msg) | ArrowError::CsvError(msg) => Error::Source(msg),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<host::HostError> for Error {
    fn from(e: host::HostError) -> Self {
        match e {
            host::HostError::AccessDenied(m) => Error::AccessDenied(m),
            host::HostError::LimitExceeded(m) => Error::LimitExceeded(m),
            host::HostError::InvalidBatch(m) => {
                Error::Internal(format!("host rejected batch: {m}"))
            }
            host::HostError::UnknownStream(m) => Error::Internal(format!("unknown stream: {m}")),
            host::HostError::Unavailable(m) => Error::Source(m),
        }
    }
}

impl From<Error> for wit::ConnectorError {
    fn from(e: Error) -> Self {
        match e {
            Error::Config(m) => wit::ConnectorError::Config(m),
            Error::Source(m) => wit::ConnectorError::Source(m),
            Error::Io(m) => wit::ConnectorError::Io(m),
            Error::AccessDenied(m) => wit::ConnectorError::AccessDenied(m),
            Error::LimitExceeded(m) => wit::ConnectorError::LimitExceeded(m),
            Error::Internal(m) => wit::ConnectorError::Internal(m),
            Error::Unsupported(m) => wit::ConnectorError::Unsupported(m),
        }
    }
}

/// What a connector is: returned by [`Connector::spec`].
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub version: String,
    /// JSON Schema of the config.
    pub config_schema: serde_json::Value,
    /// Streams known without looking at the source (may be empty).
    pub streams: Vec<(String, Option<String>)>,
    /// The connector answers [`Connector::query`].
    pub query: bool,
    /// The connector answers [`Connector::estimate`].
    pub estimate: bool,
}

impl Spec {
    /// A spec with an empty config schema and no static streams.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Spec {
            name: name.into(),
            version: version.into(),
            config_schema: serde_json::json!({"type": "object"}),
            streams: Vec::new(),
            query: false,
            estimate: false,
        }
    }

    /// Declares that the connector implements [`Connector::query`].
    pub fn supports_query(mut self) -> Self {
        self.query = true;
        self
    }

    /// Declares that the connector implements [`Connector::estimate`].
    pub fn supports_estimate(mut self) -> Self {
        self.estimate = true;
        self
    }

    /// Sets the JSON Schema of the config.
    pub fn config_schema(mut self, schema: serde_json::Value) -> Self {
        self.config_schema = schema;
        self
    }
}

/// A table a connector offers: returned by [`Connector::discover`].
#[derive(Debug, Clone)]
pub struct Table {
    /// Safe identifier: `[a-z][a-z0-9_]{0,62}`. The host refuses anything else.
    pub name: String,
    pub description: Option<String>,
    /// Every batch emitted for this table must have exactly this schema.
    pub schema: SchemaRef,
    pub primary_key: Vec<String>,
    pub cursor_field: Option<String>,
}

impl Table {
    pub fn new(name: impl Into<String>, schema: SchemaRef) -> Self {
        Table {
            name: name.into(),
            description: None,
            schema,
            primary_key: Vec::new(),
            cursor_field: None,
        }
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The primary key; with a [`Table::cursor_field`] the table syncs incrementally: when
    /// the read starts from a committed state, emit only records changed since, and the
    /// host merges them into the previous extract by this key.
    pub fn primary_key<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.primary_key = columns.into_iter().map(Into::into).collect();
        self
    }

    /// The column whose value only grows as records change (e.g. `updated_at`).
    pub fn cursor_field(mut self, column: impl Into<String>) -> Self {
        self.cursor_field = Some(column.into());
        self
    }
}

/// A connector. Implement it and pass the type to [`export_connector!`].
pub trait Connector {
    /// The config, deserialized from the JSON the host passes. Invalid JSON or a
    /// mismatching shape becomes [`Error::Config`] with serde's message.
    type Config: serde::de::DeserializeOwned;

    /// Describes the connector. Must not touch the source.
    fn spec() -> Spec;

    /// Validates the config and, where it can, reaches the source. Defaults to `discover`.
    fn check(config: &Self::Config) -> Result<(), Error> {
        Self::discover(config).map(|_| ())
    }

    /// Lists the tables available with this config.
    fn discover(config: &Self::Config) -> Result<Vec<Table>, Error>;

    /// Reads the selected streams ([`ReadContext::streams`]) and emits their batches.
    fn read(config: &Self::Config, ctx: &mut ReadContext) -> Result<(), Error>;

    /// Says what [`Connector::query`] of `request` would cost, without running it. Declare
    /// it with [`Spec::supports_estimate`].
    fn estimate(_config: &Self::Config, _request: &QueryRequest) -> Result<Estimate, Error> {
        Err(Error::Unsupported(
            "this connector does not estimate queries".into(),
        ))
    }

    /// Runs `request` at the source and emits the result to the stream
    /// [`QueryRequest::table`] through `ctx` (emit the schema even for no rows: an empty
    /// batch does). Returns the rows emitted. Declare it with [`Spec::supports_query`].
    fn query(
        _config: &Self::Config,
        _request: &QueryRequest,
        _ctx: &mut ReadContext,
    ) -> Result<u64, Error> {
        Err(Error::Unsupported(
            "this connector does not answer queries".into(),
        ))
    }
}

/// What [`Connector::query`] and [`Connector::estimate`] are asked: the host built and
/// validated it against the table's columns.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRequest {
    /// The table; also the stream to emit the result to.
    pub table: String,
    /// Columns, filter, order and limit (for a structured request).
    pub request: query::Request,
    /// Admin-authored SQL in the source's dialect (materialized tables): run it as given;
    /// `request` is then empty.
    pub sql: Option<String>,
}

/// What a query would cost, best effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Estimate {
    pub rows: Option<u64>,
    pub scan_bytes: Option<u64>,
    pub result_bytes: Option<u64>,
    /// The numbers are exact, not a planner's guess.
    pub exact: bool,
}

/// The read side of a run: which streams to read, the last committed state, and the
/// `"i/n"` → `(i, n)`; anything else (absent, malformed, `i >= n`) → `(0, 1)`.
fn partition_from(value: Option<&str>) -> (u32, u32) {
    value
        .and_then(|v| v.split_once('/'))
        .and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)))
        .filter(|&(i, n): &(u32, u32)| n >= 1 && i < n)
        .unwrap_or((0, 1))
}

/// channel to the host.
pub struct ReadContext {
    streams: Vec<String>,
    state: Option<String>,
    new_state: Option<String>,
    writers: HashMap<String, StreamWriter<Vec<u8>>>,
    rows: u64,
    bytes: u64,
}

impl ReadContext {
    /// The streams the host asked for, in order.
    /// This instance's share of a split read, `(index, count)`: `(0, 1)` unless the
    /// connector asked for `parallel_reads` in its connector.toml and the host split the
    /// read. Instance `index` of `count` must emit exactly its share of every selected
    /// table, the same on every run (the host joins the shares in index order), and must
    /// not rely on `discover` having run in the same instance.
    pub fn partition(&self) -> (u32, u32) {
        partition_from(std::env::var("AGNES_READ_PARTITION").ok().as_deref())
    }

    pub fn streams(&self) -> &[String] {
        &self.streams
    }

    /// Whether `stream` was selected for this run.
    pub fn is_selected(&self, stream: &str) -> bool {
        self.streams.iter().any(|s| s == stream)
    }

    /// The last committed cursor state (JSON), if any.
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// Sets the state returned at the end of the read; the host commits it together
    /// with the data.
    pub fn set_state(&mut self, state: impl Into<String>) {
        self.new_state = Some(state.into());
    }

    /// Checkpoints state now (for long reads).
    pub fn checkpoint(&mut self, state: impl Into<String>) -> Result<(), Error> {
        let state = state.into();
        host::state_checkpoint(&state)?;
        self.new_state = Some(state);
        Ok(())
    }

    /// Sends one batch of `stream` to the host. The first batch of a stream carries its
    /// schema; later ones only the data. An empty batch sends only the schema, when the
    /// stream has none yet (so an empty query result still has its columns).
    pub fn emit(&mut self, stream: &str, batch: &RecordBatch) -> Result<(), Error> {
        if batch.num_rows() == 0 {
            if !self.writers.contains_key(stream) {
                // the schema and an empty batch: whole messages the host can take
                let mut w = StreamWriter::try_new(Vec::new(), batch.schema_ref())?;
                w.write(batch)?;
                let bytes = std::mem::take(w.get_mut());
                host::emit(stream, &bytes)?;
                self.bytes += bytes.len() as u64;
                self.writers.insert(stream.to_string(), w);
            }
            return Ok(());
        }
        let writer = match self.writers.get_mut(stream) {
            Some(w) => w,
            None => {
                let w = StreamWriter::try_new(Vec::new(), batch.schema_ref())?;
                self.writers.entry(stream.to_string()).or_insert(w)
            }
        };
        writer.write(batch)?;
        let bytes = std::mem::take(writer.get_mut());
        host::emit(stream, &bytes)?;
        self.rows += batch.num_rows() as u64;
        self.bytes += bytes.len() as u64;
        host::progress(self.rows, self.bytes);
        Ok(())
    }

    /// Sends Arrow IPC stream messages of `stream` that the connector encoded itself
    /// (with another arrow-rs version, say): whole messages, the schema first, as
    /// [`ReadContext::emit`] would send them; `rows` is what they carry, for progress.
    pub fn emit_ipc(&mut self, stream: &str, ipc: &[u8], rows: u64) -> Result<(), Error> {
        host::emit(stream, ipc)?;
        self.rows += rows;
        self.bytes += ipc.len() as u64;
        host::progress(self.rows, self.bytes);
        Ok(())
    }

    /// Sends a log line to the host.
    pub fn log(&self, level: Level, message: &str) {
        log(level, message)
    }
}

/// Sends a log line to the host (usable outside a read, e.g. in `discover`).
pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => wit::LogLevel::Trace,
        Level::Debug => wit::LogLevel::Debug,
        Level::Info => wit::LogLevel::Info,
        Level::Warn => wit::LogLevel::Warn,
        Level::Error => wit::LogLevel::Error,
    };
    host::log(level, message);
}

/// Encodes a schema as an encapsulated Arrow IPC schema message.
pub fn encode_schema(schema: &SchemaRef) -> Result<Vec<u8>, Error> {
    let writer = StreamWriter::try_new(Vec::new(), schema)?;
    Ok(writer.into_inner()?)
}

/// Parses the config JSON the host passed.
pub fn parse_config<C: serde::de::DeserializeOwned>(config: &str) -> Result<C, Error> {
    serde_json::from_str(config).map_err(|e| Error::Config(format!("invalid config: {e}")))
}

#[doc(hidden)]
pub mod __export {
    use super::*;

    pub fn spec<C: Connector>() -> wit::ConnectorSpec {
        let spec = C::spec();
        wit::ConnectorSpec {
            name: spec.name,
            version: spec.version,
            config_schema: spec.config_schema.to_string(),
            streams: spec
                .streams
                .into_iter()
                .map(|(name, description)| wit::StreamSpec { name, description })
                .collect(),
            capabilities: {
                let mut c = wit::Capabilities::READ;
                if spec.query {
                    c = c | wit::Capabilities::QUERY;
                }
                if spec.estimate {
                    c = c | wit::Capabilities::ESTIMATE;
                }
                c
            },
        }
    }

    fn to_request(r: wit::QueryRequest) -> Result<QueryRequest, Error> {
        let filter = match &r.filter {
            Some(json) => Some(
                query::Expr::from_json(json)
                    .map_err(|e| Error::Internal(format!("the host sent {e}")))?,
            ),
            None => None,
        };
        Ok(QueryRequest {
            request: query::Request {
                table: r.table.clone(),
                columns: r.columns,
                filter,
                order_by: r
                    .order_by
                    .into_iter()
                    .map(|k| query::OrderKey {
                        column: k.column,
                        descending: k.descending,
                    })
                    .collect(),
                limit: r.limit,
            },
            table: r.table,
            sql: r.sql,
        })
    }

    pub fn estimate<C: Connector>(
        config: String,
        request: wit::QueryRequest,
    ) -> Result<wit::CostEstimate, wit::ConnectorError> {
        let config: C::Config = parse_config(&config)?;
        let e = C::estimate(&config, &to_request(request)?)?;
        Ok(wit::CostEstimate {
            rows: e.rows,
            scan_bytes: e.scan_bytes,
            result_bytes: e.result_bytes,
            exact: e.exact,
        })
    }

    pub fn query<C: Connector>(
        config: String,
        request: wit::QueryRequest,
    ) -> Result<wit::QuerySummary, wit::ConnectorError> {
        let config: C::Config = parse_config(&config)?;
        let request = to_request(request)?;
        let mut ctx = ReadContext {
            streams: vec![request.table.clone()],
            state: None,
            new_state: None,
            writers: HashMap::new(),
            rows: 0,
            bytes: 0,
        };
        let rows = C::query(&config, &request, &mut ctx)?;
        Ok(wit::QuerySummary { rows })
    }

    pub fn check<C: Connector>(config: String) -> Result<(), wit::ConnectorError> {
        let config: C::Config = parse_config(&config)?;
        Ok(C::check(&config)?)
    }

    pub fn discover<C: Connector>(
        config: String,
    ) -> Result<Vec<wit::TableInfo>, wit::ConnectorError> {
        let config: C::Config = parse_config(&config)?;
        let tables = C::discover(&config)?;
        let mut out = Vec::with_capacity(tables.len());
        for t in tables {
            out.push(wit::TableInfo {
                arrow_schema: encode_schema(&t.schema)?,
                name: t.name,
                description: t.description,
                primary_key: t.primary_key,
                cursor_field: t.cursor_field,
            });
        }
        Ok(out)
    }

    pub fn read<C: Connector>(
        config: String,
        streams: Vec<String>,
        state: Option<String>,
    ) -> Result<Option<String>, wit::ConnectorError> {
        let config: C::Config = parse_config(&config)?;
        let mut ctx = ReadContext {
            streams,
            state,
            new_state: None,
            writers: HashMap::new(),
            rows: 0,
            bytes: 0,
        };
        C::read(&config, &mut ctx)?;
        Ok(ctx.new_state)
    }
}

/// Exports a [`Connector`] implementation as the component's `agnes:connector` world.
/// Expands to nothing outside wasm, so the same crate also builds natively (unit tests,
/// native benchmarks).
#[macro_export]
macro_rules! export_connector {
    ($connector:ident) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __AgnesComponent;
            impl $crate::bindings::exports::agnes::connector::source::Guest for __AgnesComponent {
                fn spec() -> $crate::bindings::agnes::connector::types::ConnectorSpec {
                    $crate::__export::spec::<$connector>()
                }
                fn check(config: String) -> Result<(), $crate::bindings::agnes::connector::types::ConnectorError> {
                    $crate::__export::check::<$connector>(config)
                }
                fn discover(
                    config: String,
                ) -> Result<
                    Vec<$crate::bindings::agnes::connector::types::TableInfo>,
                    $crate::bindings::agnes::connector::types::ConnectorError,
                > {
                    $crate::__export::discover::<$connector>(config)
                }
                fn read(
                    config: String,
                    streams: Vec<String>,
                    state: Option<String>,
                ) -> Result<Option<String>, $crate::bindings::agnes::connector::types::ConnectorError> {
                    $crate::__export::read::<$connector>(config, streams, state)
                }
                fn estimate(
                    config: String,
                    request: $crate::bindings::agnes::connector::types::QueryRequest,
                ) -> Result<$crate::bindings::agnes::connector::types::CostEstimate, $crate::bindings::agnes::connector::types::ConnectorError> {
                    $crate::__export::estimate::<$connector>(config, request)
                }
                fn query(
                    config: String,
                    request: $crate::bindings::agnes::connector::types::QueryRequest,
                ) -> Result<$crate::bindings::agnes::connector::types::QuerySummary, $crate::bindings::agnes::connector::types::ConnectorError> {
                    $crate::__export::query::<$connector>(config, request)
                }
            }
            $crate::bindings::__agnes_export_world!(__AgnesComponent);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::partition_from;

    #[test]
    fn partitions_are_read_strictly() {
        assert_eq!(partition_from(Some("1/4")), (1, 4));
        assert_eq!(partition_from(Some("0/1")), (0, 1));
        for bad in [
            None,
            Some(""),
            Some("4/4"),
            Some("1/0"),
            Some("a/2"),
            Some("1/2/3"),
            Some("-1/2"),
        ] {
            assert_eq!(partition_from(bad), (0, 1), "{bad:?}");
        }
    }
}
