//! # agnes-connector-sdk
//!
//! Write an Agnes connector in plain Rust. A connector is a type that implements
//! [`Connector`]: it describes itself ([`Connector::spec`]), lists its tables with their
//! Arrow schemas ([`Connector::discover`]) and reads them, handing Arrow
//! [`RecordBatch`]es to [`ReadContext::emit`]. [`export_connector!`] turns the type into a
//! WebAssembly component of the `agnes:connector@0.1.0` world; the raw bindings stay hidden.
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

pub mod http;
pub mod json;

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
        path: "../../wit/connector",
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
}

impl Spec {
    /// A spec with an empty config schema and no static streams.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Spec {
            name: name.into(),
            version: version.into(),
            config_schema: serde_json::json!({"type": "object"}),
            streams: Vec::new(),
        }
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
}

/// The read side of a run: which streams to read, the last committed state, and the
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
    /// schema; later ones only the data. Empty batches are skipped.
    pub fn emit(&mut self, stream: &str, batch: &RecordBatch) -> Result<(), Error> {
        if batch.num_rows() == 0 {
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
        }
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
            }
            $crate::bindings::__agnes_export_world!(__AgnesComponent);
        };
    };
}
