//! Queries answered at the source (`agnes:connector@0.2.0` `estimate` and `query`).
//!
//! The host never hands a connector analyst text: a [`QueryRequest`] is either a
//! structured request ([`agnes_query::Request`]: table, columns, filter, order, limit),
//! validated here against the columns `discover` declares before the connector runs, or
//! admin-authored SQL in the source's dialect (materialized tables; the server decides who
//! may set it). The result goes through the same emit path as `read` — IPC validation,
//! limits, the parquet encoder — into `<out_dir>/<table>.parquet`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_ipc::reader::StreamDecoder;
use arrow_schema::{DataType, Schema, SchemaRef};

use crate::engine::{LoadedComponent, Runtime};
use crate::error::Phase;
use crate::host::SelectedTable;
use crate::run::{TableSpec, discover_in, settle, within};
use crate::sink::parquet::{TableWriter, WrittenFile};
use crate::sink::pipeline::Sink;
use crate::world::{Estimate, Instance, World, wire_request};
use crate::{Error, Grant, Limits};

pub use agnes_query::{BinaryOp, Expr, Kind, Literal, OrderKey, Request};

/// What to ask a connector.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryRequest {
    /// Columns, filter, order and limit over one discovered table.
    Structured(Request),
    /// Admin-authored SQL in the source's dialect, run as given (read-only).
    Sql(String),
}

/// The largest admin SQL text accepted.
pub const MAX_SQL: usize = 1 << 20;

/// Checks admin SQL before it reaches a connector: non-empty, no NUL, at most [`MAX_SQL`].
pub(crate) fn check_sql(table: &str, sql: &str) -> Result<(), Error> {
    if sql.trim().is_empty() || sql.len() > MAX_SQL || sql.contains('\0') {
        return Err(Error::InvalidRequest {
            table: crate::names::shown(table),
            reason: format!(
                "the SQL must be non-empty, without NUL characters, at most {MAX_SQL} bytes"
            ),
        });
    }
    Ok(())
}

/// Runs `request` through the instance's `query` into a sink of its own under `dir` and
/// moves the finished file to `dest`. `schema` is the result's schema when known (a
/// structured request), `None` to adopt the first batch's (admin SQL). On any error
/// nothing reaches `dest`; the sink is dropped unfinished.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn query_to_file(
    instance: &Instance,
    store: &mut wasmtime::Store<crate::host::RunState>,
    config: &str,
    table: &str,
    request: &QueryRequest,
    schema: Option<SchemaRef>,
    dir: &std::path::Path,
    dest: &std::path::Path,
) -> Result<(SchemaRef, WrittenFile), Error> {
    begin_result(store.data_mut(), dir, table, schema)?;
    let result = instance
        .query(&mut *store, config, &wire_request(table, request))
        .await
        .expect("a 0.2.0 instance");
    let outcome = settle(store, Phase::Query, result).map(|_| ());
    end_result(store.data_mut(), table, outcome, dir, dest)
}

/// Points the run's sink at `dir` for one result table, `table`, whose rows arrive through
/// `emit`: with `schema`, or (`None`) the schema of the first emitted stream.
pub(crate) fn begin_result(
    state: &mut crate::host::RunState,
    dir: &std::path::Path,
    table: &str,
    schema: Option<SchemaRef>,
) -> Result<(), Error> {
    state.sink = Some(Sink::start(
        dir.to_path_buf(),
        state.limits.host_memory_bytes(),
    )?);
    state.selected = [(
        table.to_string(),
        SelectedTable {
            adopt: schema.is_none(),
            schema: schema.unwrap_or_else(|| Arc::new(Schema::empty())),
            decoder: StreamDecoder::new(),
            rows: 0,
            held: 0,
        },
    )]
    .into();
    Ok(())
}

/// Ends a result begun by [`begin_result`] once whatever emitted it finished with
/// `outcome`: on success the parquet file is finished and moved to `dest`; on error
/// nothing is moved.
pub(crate) fn end_result(
    state: &mut crate::host::RunState,
    table: &str,
    outcome: Result<(), Error>,
    dir: &std::path::Path,
    dest: &std::path::Path,
) -> Result<(SchemaRef, WrittenFile), Error> {
    let sink = state.sink.take().expect("begun");
    let selected = state.selected.remove(table).expect("begun");
    outcome?;
    if selected.adopt {
        return Err(Error::Connector {
            phase: Phase::Query,
            kind: "internal",
            message:
                "the query emitted no schema: emit the result's schema even when it has no rows"
                    .into(),
        });
    }
    let mut files = sink.finish()?;
    let file = match files.remove(table) {
        Some(f) => f,
        None => TableWriter::create(dir, table, selected.schema.clone())?.finish()?,
    };
    std::fs::rename(&file.path, dest).map_err(Error::io("moving into place", dest))?;
    Ok((
        selected.schema,
        WrittenFile {
            path: dest.to_path_buf(),
            ..file
        },
    ))
}

/// One `estimate` or `query` call.
#[derive(Debug, Clone)]
pub struct QueryCall {
    pub config: String,
    /// Capabilities granted (deny by default).
    pub grant: Grant,
    pub limits: Limits,
    /// The table: for a structured request one that `discover` returns; for SQL the name
    /// the result is emitted and written under.
    pub table: String,
    pub request: QueryRequest,
}

/// The result of a query: one parquet file.
#[derive(Debug, Clone)]
pub struct QueryReport {
    pub table: String,
    pub path: PathBuf,
    pub schema: SchemaRef,
    pub rows: u64,
    pub size_bytes: u64,
    pub md5: String,
    /// Arrow IPC bytes the connector emitted.
    pub bytes_emitted: u64,
    /// Bytes the connector read from its database connections.
    pub db_bytes_read: u64,
    pub elapsed: Duration,
}

/// The filter kind of an Arrow column type.
pub fn kind_of(t: &DataType) -> Kind {
    use DataType::*;
    match t {
        Boolean => Kind::Bool,
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32
        | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => Kind::Number,
        Utf8 | LargeUtf8 | Utf8View => Kind::Text,
        Date32 | Date64 => Kind::Date,
        Timestamp(..) => Kind::Timestamp,
        Dictionary(_, v) => kind_of(v),
        _ => Kind::Other,
    }
}

/// `(name, kind)` of every column of `schema`.
pub fn columns_of(schema: &Schema) -> Vec<(String, Kind)> {
    schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), kind_of(f.data_type())))
        .collect()
}

impl Runtime {
    /// Asks the connector what `call` would cost, without running it.
    pub async fn estimate(
        &self,
        component: &LoadedComponent,
        call: &QueryCall,
    ) -> Result<Estimate, Error> {
        within(&call.limits, async {
            let mut store = self.store(&call.grant, &call.limits)?;
            let instance = self.instantiate(component, &mut store).await?;
            self.ensure_supports(&instance, &mut store, "estimate")
                .await?;
            let request = self.prepare(&instance, &mut store, call).await?.0;
            let result = instance
                .estimate(
                    &mut store,
                    &call.config,
                    &wire_request(&call.table, &request),
                )
                .await
                .expect("a 0.2.0 instance");
            settle(&mut store, Phase::Estimate, result)
        })
        .await
    }

    /// Runs `call` at the source; the result is written to `<out_dir>/<table>.parquet`
    /// (`out_dir` must exist). On any error the file is not written.
    pub async fn query(
        &self,
        component: &LoadedComponent,
        call: &QueryCall,
        out_dir: &std::path::Path,
    ) -> Result<QueryReport, Error> {
        within(&call.limits, async {
            let started = Instant::now();
            crate::names::validate_name("table", &call.table)?;
            let mut store = self.store(&call.grant, &call.limits)?;
            let instance = self.instantiate(component, &mut store).await?;
            self.ensure_supports(&instance, &mut store, "query").await?;
            let (request, schema) = self.prepare(&instance, &mut store, call).await?;
            // write next to the destination, move into place only when complete
            let staging = tempfile::Builder::new()
                .prefix(".query-")
                .tempdir_in(out_dir)
                .map_err(Error::io("creating a staging directory in", out_dir))?;
            let dest = out_dir.join(format!("{}.parquet", call.table));
            let (schema, file) = query_to_file(
                &instance,
                &mut store,
                &call.config,
                &call.table,
                &request,
                schema,
                staging.path(),
                &dest,
            )
            .await?;
            let state = store.data();
            Ok(QueryReport {
                table: call.table.clone(),
                path: dest,
                schema,
                rows: file.rows,
                size_bytes: file.size_bytes,
                md5: file.md5,
                bytes_emitted: state.bytes,
                db_bytes_read: state.databases.bytes_read,
                elapsed: started.elapsed(),
            })
        })
        .await
    }

    /// Fails with [`Error::Unsupported`] unless the connector implements `call`.
    async fn ensure_supports(
        &self,
        instance: &Instance,
        store: &mut wasmtime::Store<crate::host::RunState>,
        call: &'static str,
    ) -> Result<(), Error> {
        let result = instance.spec(store).await.map(Ok);
        let spec = settle(store, Phase::Spec, result)?;
        let supported = match call {
            "query" => spec.capabilities.query,
            _ => spec.capabilities.estimate,
        };
        if instance.world() == World::V0_1 || !supported {
            return Err(Error::Unsupported {
                connector: spec.name,
                call,
                reason: if instance.world() == World::V0_1 {
                    "it implements agnes:connector@0.1.0, which has no query or estimate; rebuild it against 0.2.0".into()
                } else {
                    format!(
                        "its spec lists only: {}",
                        spec.capabilities.names().join(", ")
                    )
                },
            });
        }
        Ok(())
    }

    /// Validates a structured request against the table `discover` declares; returns the
    /// request and the result's schema (`None` for SQL: the result says).
    async fn prepare(
        &self,
        instance: &Instance,
        store: &mut wasmtime::Store<crate::host::RunState>,
        call: &QueryCall,
    ) -> Result<(QueryRequest, Option<SchemaRef>), Error> {
        let refuse = |reason: String| Error::InvalidRequest {
            table: crate::names::shown(&call.table),
            reason,
        };
        let request = match &call.request {
            QueryRequest::Sql(sql) => {
                check_sql(&call.table, sql)?;
                return Ok((call.request.clone(), None));
            }
            QueryRequest::Structured(r) => r,
        };
        let tables = discover_in(instance, store, &call.config).await?;
        let table: &TableSpec = tables
            .iter()
            .find(|t| t.name == call.table)
            .ok_or_else(|| Error::NoSuchTable {
                table: crate::names::shown(&call.table),
                offered: tables
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let mut request = request.clone();
        request.table = call.table.clone();
        request
            .validate(&columns_of(&table.schema))
            .map_err(|e| refuse(e.0))?;
        let schema = if request.columns.is_empty() {
            table.schema.clone()
        } else {
            let fields: Vec<_> = request
                .columns
                .iter()
                .map(|c| table.schema.field_with_name(c).expect("validated").clone())
                .collect();
            Arc::new(Schema::new(fields))
        };
        Ok((QueryRequest::Structured(request), Some(schema)))
    }
}
