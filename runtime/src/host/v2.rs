//! The imports of `agnes:connector@0.2.0`: its `host` interface is 0.1.0's (every call
//! goes through the same checks in [`super::connector`]), plus `database`
//! ([`super::database`]).

use wasmtime::component::Resource;

use super::RunState;
use super::database::{Connection, WriteError};
use crate::Error;
use crate::bindings::v1::agnes::connector::host as h1;
use crate::bindings::v1::agnes::connector::types as t1;
use crate::bindings::v2::agnes::connector::database;
use crate::bindings::v2::agnes::connector::host::{self as h2, HostError};
use crate::bindings::v2::agnes::connector::types as t2;

impl t2::Host for RunState {}

fn up(e: h1::HostError) -> HostError {
    match e {
        h1::HostError::AccessDenied(m) => HostError::AccessDenied(m),
        h1::HostError::LimitExceeded(m) => HostError::LimitExceeded(m),
        h1::HostError::InvalidBatch(m) => HostError::InvalidBatch(m),
        h1::HostError::UnknownStream(m) => HostError::UnknownStream(m),
    }
}

impl h2::Host for RunState {
    fn emit(
        &mut self,
        stream: String,
        arrow_ipc: Vec<u8>,
    ) -> wasmtime::Result<Result<(), HostError>> {
        Ok(h1::Host::emit(self, stream, arrow_ipc)?.map_err(up))
    }

    fn log(&mut self, level: t2::LogLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            t2::LogLevel::Trace => t1::LogLevel::Trace,
            t2::LogLevel::Debug => t1::LogLevel::Debug,
            t2::LogLevel::Info => t1::LogLevel::Info,
            t2::LogLevel::Warn => t1::LogLevel::Warn,
            t2::LogLevel::Error => t1::LogLevel::Error,
        };
        h1::Host::log(self, level, message)
    }

    fn progress(&mut self, rows: u64, bytes: u64) -> wasmtime::Result<()> {
        h1::Host::progress(self, rows, bytes)
    }

    fn state_checkpoint(&mut self, state: String) -> wasmtime::Result<Result<(), HostError>> {
        Ok(h1::Host::state_checkpoint(self, state)?.map_err(up))
    }
}

impl database::Host for RunState {
    async fn connect(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, HostError>> {
        if self.failure.is_some() {
            wasmtime::bail!("database connect after the run already failed");
        }
        if self.databases.granted(&name).is_none() {
            let err = Error::EgressDenied {
                attempt: format!("to open database `{}`", crate::names::shown(&name)),
                reason: "the connector did not request it, or the operator did not grant it ([grant.databases.NAME])".into(),
            };
            let msg = err.to_string();
            tracing::warn!("error.type" = "egress_denied", "{msg}");
            self.fail(err);
            return Ok(Err(HostError::AccessDenied(msg)));
        }
        if self.databases.opened >= self.limits.max_db_connections {
            let err = Error::LimitExceeded {
                limit: "max_db_connections",
                detail: format!(
                    "the connector opened more than {} database connections",
                    self.limits.max_db_connections
                ),
            };
            let msg = err.to_string();
            self.fail(err);
            return Ok(Err(HostError::LimitExceeded(msg)));
        }
        self.databases.opened += 1;
        match self.databases.connect(&name, &self.limits).await {
            Ok(conn) => Ok(Ok(self.resources.push(conn)?)),
            Err(err) => {
                let msg = err.to_string();
                self.fail(err);
                Ok(Err(HostError::Unavailable(msg)))
            }
        }
    }
}

impl database::HostConnection for RunState {
    async fn read(
        &mut self,
        conn: Resource<Connection>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, HostError>> {
        let c = self.resources.get_mut(&conn)?;
        let result = c.read(max as usize).await;
        let name = c.name.clone();
        match result {
            Ok(bytes) => {
                self.databases.bytes_read += bytes.len() as u64;
                if self.databases.bytes_read > self.limits.max_db_read_bytes() {
                    self.fail(Error::LimitExceeded {
                        limit: "max_db_read_mb",
                        detail: format!(
                            "the connector read more than {} MiB from its databases",
                            self.limits.max_db_read_mb
                        ),
                    });
                    wasmtime::bail!("database read limit exceeded");
                }
                Ok(Ok(bytes))
            }
            Err(e) => Ok(Err(HostError::Unavailable(format!(
                "database `{name}`: reading: {e}"
            )))),
        }
    }

    async fn write(
        &mut self,
        conn: Resource<Connection>,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), HostError>> {
        let c = self.resources.get_mut(&conn)?;
        let name = c.name.clone();
        match c.write(&bytes).await {
            Ok(()) => Ok(Ok(())),
            Err(WriteError::Denied(what)) => {
                let err = Error::DatabaseDenied { name, what };
                let msg = err.to_string();
                tracing::warn!("error.type" = "database_denied", "{msg}");
                self.fail(err);
                Ok(Err(HostError::AccessDenied(msg)))
            }
            Err(WriteError::Io(e)) => Ok(Err(HostError::Unavailable(format!(
                "database `{name}`: writing: {e}"
            )))),
        }
    }

    fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        self.resources.delete(conn)?;
        Ok(())
    }
}
