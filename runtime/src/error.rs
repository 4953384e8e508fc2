//! The runtime's one error type.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can make a connector run fail. Each variant names the offending input
/// and says what to do. A failed run never touches the extract that was serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `connector.toml` is invalid.
    #[error("connector.toml: {reason}")]
    Manifest { reason: String },

    /// The connector requests a capability the grant does not cover.
    #[error("connector `{connector}` requests {capability}, which is not granted; {how}")]
    NotGranted {
        connector: String,
        capability: String,
        how: String,
    },

    /// The component's signature is missing, wrong, or by an untrusted key.
    #[error("signature check failed: {reason}")]
    Signature { reason: String },

    /// A connector reference names no component this host has.
    #[error("connector `{reference}`: {reason}")]
    Unresolved { reference: String, reason: String },

    /// The component could not be read.
    #[error("reading component {path}: {error}")]
    ReadComponent {
        path: PathBuf,
        error: std::io::Error,
    },

    /// The bytes are not a valid component, or it could not be compiled.
    #[error("compiling component {digest}: {reason}")]
    Compile { digest: String, reason: String },

    /// The component imports something the host does not provide, or its exports do not
    /// match the `agnes:connector@0.1.0` or `@0.2.0` world.
    #[error(
        "instantiating component {digest}: {reason} (is it built against agnes:connector@0.1.0 or @0.2.0?)"
    )]
    Instantiate { digest: String, reason: String },

    /// The guest trapped (panicked, hit `unreachable`, ran out of memory, ...).
    #[error("connector trapped during {phase}: {reason}")]
    Trap { phase: Phase, reason: String },

    /// The guest returned an error.
    #[error("connector failed during {phase}: {kind}: {message}")]
    Connector {
        phase: Phase,
        kind: &'static str,
        message: String,
    },

    /// A table's declared schema uses a type, a width, a depth or a name the host refuses.
    #[error("table `{table}` column `{column}`: {reason}")]
    InvalidSchema {
        table: String,
        column: String,
        reason: String,
    },

    /// A state checkpoint the guest sent is not what the host can commit.
    #[error("invalid state checkpoint: {reason}")]
    InvalidState { reason: String },

    /// A batch the guest emitted is malformed or does not match its table's schema.
    #[error("invalid batch for table `{table}`: {reason}")]
    InvalidBatch { table: String, reason: String },

    /// A table, column or source name is not acceptable.
    #[error("{kind} name `{name}` is not allowed: {reason}")]
    UnsafeName {
        kind: &'static str,
        name: String,
        reason: String,
    },

    /// The guest emitted to a stream that was not selected for this run.
    #[error(
        "connector emitted to table `{table}`, which was not selected for this run (selected: {selected})"
    )]
    UnknownStream { table: String, selected: String },

    /// A run limit was reached.
    #[error("limit exceeded: {limit} ({detail}); raise it in [limits] if this is expected")]
    LimitExceeded { limit: &'static str, detail: String },

    /// The run took longer than its wall-clock limit.
    #[error(
        "connector run exceeded its time limit of {limit:?} and was stopped; raise limits.timeout_secs if this is expected"
    )]
    Timeout { limit: Duration },

    /// A run config file is invalid.
    #[error("run config {path}: {reason}")]
    Config { path: PathBuf, reason: String },

    /// A network or secret grant is malformed.
    #[error("grant: {reason}")]
    Policy { reason: String },

    /// A granted secret cannot be read (the value is never part of the message).
    #[error("secret `{name}`: {reason}")]
    Secret { name: String, reason: String },

    /// The guest tried to reach the network beyond its grant. The request was not sent.
    #[error("connector tried {attempt}, which is denied: {reason}")]
    EgressDenied { attempt: String, reason: String },

    /// A granted database could not be reached or refused the login. Names the grant,
    /// never the password.
    #[error("database `{name}` ({target}): {reason}")]
    Database {
        name: String,
        target: String,
        reason: String,
    },

    /// The guest sent a database message the host does not forward.
    #[error("database `{name}`: the connector sent {what}, which the host does not forward")]
    DatabaseDenied { name: String, what: String },

    /// The connector does not implement a call (0.1.0 components have no query or
    /// estimate; a 0.2.0 one says what it supports in its spec).
    #[error("connector `{connector}` does not support {call}: {reason}")]
    Unsupported {
        connector: String,
        call: &'static str,
        reason: String,
    },

    /// SQL over Agnes tables failed in its sandboxed process, or the sandbox stopped it.
    #[error("SQL of materialized table `{table}`: {reason}")]
    Sql { table: String, reason: String },

    /// A query request is not valid for the table: names the part refused.
    #[error("query of table `{table}`: {reason}")]
    InvalidRequest { table: String, reason: String },

    /// An incremental run cannot be merged into the previous extract of a table.
    #[error(
        "merging table `{table}` into its previous extract: {reason}; run a full refresh (--full-refresh) to rebuild it"
    )]
    Merge { table: String, reason: String },

    /// A directory grant cannot be honoured.
    #[error("grant of directory {host} as `{guest}`: {reason}")]
    InvalidGrant {
        host: PathBuf,
        guest: String,
        reason: String,
    },

    /// The selected streams do not exist.
    #[error(
        "table `{table}` was selected but the connector does not offer it (offered: {offered})"
    )]
    NoSuchTable { table: String, offered: String },

    /// The output location is not an extract this runtime manages.
    #[error(
        "output {path} exists and is not an Agnes extract ({reason}); move it away or choose another --out"
    )]
    NotAnExtract { path: PathBuf, reason: String },

    /// Another run of the same source holds its lock.
    #[error("another run of source `{source_name}` is in progress (lock {lock})")]
    Busy { source_name: String, lock: PathBuf },

    /// A filesystem operation failed.
    #[error("{action} {path}: {error}")]
    Io {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },

    /// Writing a parquet file failed.
    #[error("writing parquet for table `{table}`: {reason}")]
    Parquet { table: String, reason: String },

    /// Writing extract.duckdb failed.
    #[error("writing {path}: {reason}")]
    DuckDb { path: PathBuf, reason: String },
}

/// Which export of the connector was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Spec,
    Check,
    Discover,
    Read,
    Estimate,
    Query,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Spec => "spec",
            Phase::Check => "check",
            Phase::Discover => "discover",
            Phase::Read => "read",
            Phase::Estimate => "estimate",
            Phase::Query => "query",
        })
    }
}

impl Error {
    /// `map_err` adapter: an I/O error while `action`-ing `path`.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |error| Error::Io {
            action,
            path,
            error,
        }
    }
}

/// Renders a wasmtime error with its causes on one line.
pub(crate) fn describe(e: &wasmtime::Error) -> String {
    format!("{e:#}")
}
