//! # agnes-runtime
//!
//! Runs untrusted Agnes connectors — WebAssembly components of the
//! `agnes:connector@0.1.0` world — and turns what they emit into an *extract*: parquet
//! files plus `extract.duckdb`, published atomically.
//!
//! - [`Runtime`] owns the wasmtime engine and a cache of compiled components
//!   ([`Runtime::load_file`]).
//! - [`Runtime::run`] instantiates a component with a deny-by-default WASI context built
//!   from a [`Grant`] only, under [`Limits`], calls `discover` then `read`, validates
//!   every emitted Arrow IPC batch and writes `data/<table>.parquet` (zstd) and
//!   `extract.duckdb` (`_meta`, `_files`, one view per table) into a staging directory
//!   that [`extract::Staging`] publishes with one atomic rename.
//! - Outbound `wasi:http` goes through the egress hooks: granted hosts only, non-public
//!   addresses refused after resolution, secrets injected by the host.
//! - [`manifest::ConnectorManifest::effective`] computes request ∩ grant (and limits).
//! - [`Error`] is the one error type; every variant names the input at fault.
//!
//! ```no_run
//! # async fn demo() -> Result<(), agnes_runtime::Error> {
//! use agnes_runtime::{DirGrant, Grant, Limits, RunRequest, Runtime};
//!
//! let runtime = Runtime::new(Some("/var/cache/agnes".as_ref()))?;
//! let component = runtime.load_file("csv.wasm".as_ref())?;
//! let report = runtime
//!     .run(
//!         &component,
//!         RunRequest {
//!             source: "demo".into(),
//!             extracts_dir: "./agnes-data/extracts".into(),
//!             config: r#"{"dir": "/data"}"#.into(),
//!             grant: Grant { dirs: vec![DirGrant { host: "./csv".into(), guest: "/data".into() }], ..Grant::default() },
//!             limits: Limits::default(),
//!             streams: None,
//!             state: None,
//!         },
//!         None,
//!     )
//!     .await?;
//! println!("{} tables, {} rows", report.tables.len(), report.rows);
//! # Ok(()) }
//! ```

mod bindings;
mod config;
mod engine;
mod error;
pub mod extract;
#[doc(hidden)]
pub mod fuzz;
pub mod hook;
mod host;
pub mod jsonschema;
mod limits;
pub mod manifest;
pub mod names;
mod policy;
pub mod query;
mod run;
pub mod schema;
pub mod signature;
pub mod sink;
mod split;
pub mod sqlbox;
mod world;

pub use config::RunConfig;
pub use engine::{LoadedComponent, Runtime, Surface};
pub use error::{Error, Phase};
pub use host::egress::{ResolveOverrides, is_public};
pub use host::fixtures::{Exchange, HttpFixtures};
pub use limits::Limits;
pub use policy::{
    DatabaseGrant, DatabaseKind, DirGrant, Grant, HttpGrant, SecretGrant, TlsMode, host_matches,
};
pub use run::{
    ConnectorSpec, Materialize, NativeEmitter, Progress, ProgressFn, RunReport, RunRequest,
    TableReport, TableSpec,
};
pub use world::{Capabilities, Estimate, World};
