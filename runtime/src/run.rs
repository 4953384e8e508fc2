//! One connector run: instantiate with the grant, discover, read, validate every batch,
//! write parquet + `extract.duckdb`, publish atomically.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_schema::SchemaRef;
use wasmtime::{Store, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::engine::{LoadedComponent, Runtime};
use crate::error::{Phase, describe};
use crate::extract::Staging;
use crate::host::output::GuestOutput;
use crate::host::{RunState, SelectedTable};
use crate::names::validate_name;
use crate::sink::duckdb::{ExtractTable, write_extract};
use crate::sink::parquet::{TableWriter, WrittenFile};
use crate::sink::pipeline::Sink;

use crate::split::{PARTITION_ENV, PEER_FAILED, Split};
use crate::world::{Capabilities, GuestError, Instance, Pre, TableInfo, World};
use crate::{Error, Grant, Limits};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The source name: the extract's directory name under `extracts_dir`.
    pub source: String,
    /// `<data_dir>/extracts`.
    pub extracts_dir: PathBuf,
    /// The connector's config, as JSON text.
    pub config: String,
    /// Capabilities granted to this run (deny by default).
    pub grant: Grant,
    pub limits: Limits,
    /// Tables to read; `None` reads every table `discover` returns.
    pub streams: Option<Vec<String>>,
    /// The last committed cursor state.
    pub state: Option<String>,
}

/// A materialized table: admin-authored SQL in the source's dialect, run by the
/// connector's `query` (`agnes:connector@0.2.0`) in the same run as the read, its result
/// published in the same extract version with `_meta.query_mode = 'materialized'`.
#[derive(Debug, Clone, PartialEq)]
pub struct Materialize {
    pub table: String,
    pub sql: String,
    /// Refuse to run it when the connector estimates more bytes scanned at the source
    /// (`max_bytes_per_materialize`); 0: no check.
    pub max_scan_bytes: u64,
}

/// The largest config schema a connector may declare.
const MAX_CONFIG_SCHEMA: usize = 1 << 20;

/// What `spec` returned: name, version, the JSON Schema of its config, known streams.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorSpec {
    pub name: String,
    pub version: String,
    pub config_schema: serde_json::Value,
    /// `(name, description)` of the streams known without looking at the source.
    pub streams: Vec<(String, Option<String>)>,
    /// The world the component implements.
    pub world: World,
    /// Which calls it answers.
    pub capabilities: Capabilities,
}

/// A table as `discover` described it, after validation.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: String,
    pub description: Option<String>,
    pub schema: SchemaRef,
    pub primary_key: Vec<String>,
    pub cursor_field: Option<String>,
}

impl TableSpec {
    /// Synced incrementally (merged by primary key when the run starts from a committed
    /// state): it declares a primary key and a cursor field. Otherwise: full refresh.
    pub fn incremental(&self) -> bool {
        !self.primary_key.is_empty() && self.cursor_field.is_some()
    }
}

/// Progress of a read, reported after every accepted emit.
#[derive(Debug, Clone)]
pub struct Progress {
    pub table: String,
    pub table_rows: u64,
    /// Rows accepted over all tables.
    pub rows: u64,
    /// Arrow IPC bytes accepted over all tables.
    pub bytes: u64,
}

/// One table of a published extract.
#[derive(Debug, Clone)]
pub struct TableReport {
    pub name: String,
    pub description: Option<String>,
    pub rows: u64,
    pub size_bytes: u64,
    pub md5: String,
    /// The parquet file (versioned path).
    pub path: PathBuf,
    /// This run's rows were merged into the previous extract by primary key (an
    /// incremental sync); otherwise the table was replaced (a full refresh).
    pub merged: bool,
    /// `local`, or `materialized`.
    pub query_mode: &'static str,
    /// A materialized table whose SQL failed (or was refused by its guardrail) this run:
    /// why. Its previous version is published again, if there was one.
    pub error: Option<String>,
}

/// The outcome of a successful run.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub source: String,
    pub version: String,
    /// The published (versioned) extract directory.
    pub dir: PathBuf,
    /// `sha256:` digest of the component that ran.
    pub component_digest: String,
    pub tables: Vec<TableReport>,
    pub rows: u64,
    /// Arrow IPC bytes the guest emitted.
    pub bytes_emitted: u64,
    pub elapsed: Duration,
    /// The committed cursor state.
    pub state: Option<String>,
    /// Log lines (`log` calls, stdout and stderr lines) dropped over `max_log_lines`.
    pub logs_dropped: u64,
    /// Of `elapsed`, the time the connector waited on the host accepting its batches (IPC
    /// decode, validation, queueing for the parquet encoder, which runs on its own thread).
    pub host_busy: Duration,
}

impl RunReport {
    /// Total size of the parquet files.
    pub fn size_bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.size_bytes).sum()
    }
}

/// A callback told about every accepted batch.
pub type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

impl Runtime {
    /// The host side of one run, built from the grant only: WASI context (read-only
    /// preopens, no sockets, captured stdio), egress rules and secrets, limits.
    pub(crate) fn run_state(&self, grant: &Grant, limits: &Limits) -> Result<RunState, Error> {
        self.run_state_in(grant, limits, None)
    }

    /// [`Runtime::run_state`] for instance `i` of a read split `n` ways: the guest finds
    /// `AGNES_READ_PARTITION=i/n` in its environment (the SDK's `ReadContext::partition`).
    fn run_state_in(
        &self,
        grant: &Grant,
        limits: &Limits,
        partition: Option<(u32, u32)>,
    ) -> Result<RunState, Error> {
        let host_cpu = std::sync::Arc::<std::sync::atomic::AtomicU64>::default();
        let stderr = GuestOutput::new("stderr", limits.max_log_lines, host_cpu.clone());
        let stdout = GuestOutput::new("stdout", limits.max_log_lines, host_cpu.clone());
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some((i, n)) = partition {
            wasi.env(PARTITION_ENV, format!("{i}/{n}"));
        }
        for d in &grant.dirs {
            wasi.preopened_dir(&d.host, &d.guest, FsPerms::ReadOnly)
                .map_err(|e| Error::InvalidGrant {
                    host: d.host.clone(),
                    guest: d.guest.clone(),
                    reason: describe(&e),
                })?;
        }
        let egress = crate::host::egress::Egress::new(
            grant,
            self.inner.resolve_overrides.clone(),
            self.inner.tls.clone(),
            self.inner.http_fixtures.clone(),
        )?;
        let databases = crate::host::database::Databases::new(
            grant,
            self.inner.resolve_overrides.clone(),
            self.inner.tls.clone(),
        )?;
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes())
            .instances(32)
            .tables(64)
            .table_elements(1 << 20)
            .memories(8)
            .trap_on_grow_failure(true)
            .build();
        let mut state = RunState::new(
            wasi.build(),
            egress,
            databases,
            stderr,
            store_limits,
            limits.clone(),
        );
        state.stdout = Some(stdout);
        state.host_cpu = host_cpu;
        Ok(state)
    }

    pub(crate) fn store(&self, grant: &Grant, limits: &Limits) -> Result<Store<RunState>, Error> {
        self.store_in(grant, limits, None)
    }

    pub(crate) fn store_in(
        &self,
        grant: &Grant,
        limits: &Limits,
        partition: Option<(u32, u32)>,
    ) -> Result<Store<RunState>, Error> {
        let state = self.run_state_in(grant, limits, partition)?;
        let mut store = Store::new(&self.inner.engine, state);
        // what one host call may copy out of the guest: a whole batch under max_batch_mb,
        // never refused by wasmtime's own (128 MiB) default first
        store.set_hostcall_fuel(limits.max_batch_bytes().saturating_add(1 << 20));
        store.limiter(|s| &mut s.store_limits);
        // Every epoch tick while guest code runs: count it against the CPU budget, and
        // yield to the executor so the wall-clock timeout can fire even while it spins.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            state.cpu_ticks += 1;
            if state
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            {
                state.fail(Error::Trap {
                    phase: Phase::Read,
                    reason: PEER_FAILED.into(),
                });
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            if state.over_cpu_budget() {
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            Ok(wasmtime::UpdateDeadline::Yield(1))
        });
        Ok(store)
    }

    pub(crate) async fn instantiate(
        &self,
        component: &LoadedComponent,
        store: &mut Store<RunState>,
    ) -> Result<Instance, Error> {
        let memory_mb = store.data().limits.memory_mb;
        let fail = |e: wasmtime::Error| {
            let reason = describe(&e);
            let lower = reason.to_lowercase();
            if lower.contains("memory") && (lower.contains("grow") || lower.contains("limit")) {
                // its initial memory does not fit: that is the limit, not a world mismatch
                return Error::LimitExceeded {
                    limit: "memory_mb",
                    detail: format!(
                        "the component needs more than memory_mb = {memory_mb} MiB of linear memory to start ({})",
                        reason.lines().next().unwrap_or_default()
                    ),
                };
            }
            Error::Instantiate {
                digest: component.digest.clone(),
                reason,
            }
        };
        let pre = match component.pre.get() {
            Some(pre) => pre,
            None => {
                let pre = Pre::new(&self.inner.engine, &self.inner.linker, &component.component)
                    .map_err(fail)?;
                // a concurrent first instantiation may have set it; either is the same
                let _ = component.pre.set(pre);
                component.pre.get().expect("set above")
            }
        };
        pre.instantiate(store).await.map_err(fail)
    }

    /// Builds a store (WASI context, egress, limits) for an empty grant and instantiates
    /// the component, nothing else: the warm-instantiation benchmark.
    #[doc(hidden)]
    pub async fn instantiate_only(&self, component: &LoadedComponent) -> Result<(), Error> {
        let mut store = self.store(&Grant::default(), &Limits::default())?;
        self.instantiate(component, &mut store).await.map(|_| ())
    }

    /// Calls `spec`: what the connector says about itself, with its config schema parsed.
    /// Runs with nothing granted (`spec` must not touch the source).
    pub async fn spec(
        &self,
        component: &LoadedComponent,
        limits: &Limits,
    ) -> Result<ConnectorSpec, Error> {
        let work = async {
            let mut store = self.store(&Grant::default(), limits)?;
            let instance = self.instantiate(component, &mut store).await?;
            let world = instance.world();
            let result = instance.spec(&mut store).await.map(Ok);
            let spec = settle(&mut store, Phase::Spec, result)?;
            let bad = |message: String| Error::Connector {
                phase: Phase::Spec,
                kind: "internal",
                message,
            };
            if spec.config_schema.len() > MAX_CONFIG_SCHEMA {
                return Err(bad(format!(
                    "its config-schema is {} bytes, more than the {MAX_CONFIG_SCHEMA} allowed",
                    spec.config_schema.len()
                )));
            }
            let config_schema: serde_json::Value = serde_json::from_str(&spec.config_schema)
                .map_err(|e| bad(format!("its config-schema is not JSON: {e}")))?;
            if !config_schema.is_object() && !config_schema.is_boolean() {
                return Err(bad("its config-schema is not a JSON Schema object".into()));
            }
            Ok(ConnectorSpec {
                name: spec.name,
                version: spec.version,
                config_schema,
                streams: spec.streams,
                world,
                capabilities: spec.capabilities,
            })
        };
        within(limits, work).await
    }

    /// Calls `discover` and validates what it returns.
    pub async fn discover(
        &self,
        component: &LoadedComponent,
        config: &str,
        grant: &Grant,
        limits: &Limits,
    ) -> Result<Vec<TableSpec>, Error> {
        within(limits, async {
            let mut store = self.store(grant, limits)?;
            let instance = self.instantiate(component, &mut store).await?;
            discover_in(&instance, &mut store, config).await
        })
        .await
    }

    /// Runs the connector end to end and publishes its extract at
    /// `<extracts_dir>/<source>`. On any error nothing is published and the previous
    /// extract keeps serving.
    pub async fn run(
        &self,
        component: &LoadedComponent,
        request: RunRequest,
        on_progress: Option<ProgressFn>,
    ) -> Result<RunReport, Error> {
        self.run_with(component, request, &[], on_progress).await
    }

    /// [`Runtime::run`], plus materialized tables: after the read, each one's SQL runs
    /// through the connector's `query` (after its estimate is checked against
    /// `max_scan_bytes`) and its result joins the same extract version. A materialized
    /// table that fails does not fail the run: its previous version is kept and the
    /// report carries the error.
    pub async fn run_with(
        &self,
        component: &LoadedComponent,
        request: RunRequest,
        materialize: &[Materialize],
        on_progress: Option<ProgressFn>,
    ) -> Result<RunReport, Error> {
        let limits = request.limits.clone();
        within(
            &limits,
            self.run_inner(component, request, materialize, on_progress),
        )
        .await
    }

    async fn run_inner(
        &self,
        component: &LoadedComponent,
        request: RunRequest,
        materialize: &[Materialize],
        on_progress: Option<ProgressFn>,
    ) -> Result<RunReport, Error> {
        let started = Instant::now();
        let extracted_at = chrono::Utc::now().naive_utc();
        let staging = Staging::begin(&request.extracts_dir, &request.source)?;
        let partitions = request.limits.partitions();
        let mut store = self.store_in(
            &request.grant,
            &request.limits,
            (partitions > 1).then_some((0, partitions)),
        )?;
        store.data_mut().on_progress = on_progress;
        let instance = self.instantiate(component, &mut store).await?;

        let tables = discover_in(&instance, &mut store, &request.config).await?;
        let selected = select(&request, tables)?;

        let (new_state, files, mut counts) = if partitions > 1 {
            let read = Split {
                component,
                request: &request,
                selected: &selected,
                staging: &staging,
                partitions,
                started,
                extracted_at,
            };
            self.read_split(read, &mut store, &instance).await?
        } else {
            let dir = staging.data_dir();
            read_into(
                &instance,
                &mut store,
                &request,
                &selected,
                dir,
                started,
                extracted_at,
            )
            .await?
        };
        // what the read counted in this store (the rest of a split read counted elsewhere)
        let (read_rows, read_bytes) = (store.data().rows, store.data().bytes);
        let mut materialized = Vec::new();
        let mut instance = instance;
        for m in materialize {
            let outcome = materialize_one(&instance, &mut store, &request.config, &staging, m)
                .await
                .map_err(|e| e.to_string());
            if let Err(e) = &outcome {
                tracing::warn!("error.type" = "materialize_failed", table = %m.table, error = %e, "materialized table kept its previous version");
                // a trap (memory, CPU) leaves the instance unusable: the next table gets a
                // fresh one, with the run's counts carried over so its limits stay the run's
                let (rows, bytes) = (store.data().rows, store.data().bytes);
                let on_progress = store.data_mut().on_progress.take();
                store = self.store(&request.grant, &request.limits)?;
                let state = store.data_mut();
                (state.rows, state.bytes, state.on_progress) = (rows, bytes, on_progress);
                instance = self.instantiate(component, &mut store).await?;
            }
            materialized.push((m.table.clone(), outcome));
        }
        counts.rows += store.data().rows - read_rows;
        counts.bytes += store.data().bytes - read_bytes;
        drop(store);
        publish(
            staging,
            request,
            selected,
            files,
            new_state,
            counts,
            component.digest.clone(),
            materialized,
        )
    }

    /// Runs a connector compiled into the host process through the same host pipeline as
    /// a component's `read` (every batch through `host.emit`: limits, IPC decoding with
    /// validation, schema check, parquet, extract, atomic publish) — for benchmarks that
    /// compare the WebAssembly boundary with native code, and for trusted built-in sources.
    /// `read` gets an emitter and returns the new state.
    pub fn run_native(
        &self,
        request: RunRequest,
        tables: Vec<TableSpec>,
        read: impl FnOnce(&mut NativeEmitter<'_>) -> Result<Option<String>, Error>,
    ) -> Result<RunReport, Error> {
        let started = Instant::now();
        let extracted_at = chrono::Utc::now().naive_utc();
        let staging = Staging::begin(&request.extracts_dir, &request.source)?;
        // nothing to grant: native code is not sandboxed by WASI
        let mut state = self.run_state(&Grant::default(), &request.limits)?;
        for t in &tables {
            crate::schema::validate(&t.name, &t.schema, &request.limits)?;
        }
        let selected = select(&request, tables)?;
        prepare_read(&mut state, staging.data_dir(), &selected)?;
        let result = read(&mut NativeEmitter { state: &mut state });
        if let Some(failure) = state.take_failure() {
            return Err(failure);
        }
        let (new_state, sink, counts) = end_read(&mut state, result?, started, extracted_at)?;
        publish(
            staging,
            request,
            selected,
            sink.finish()?,
            new_state,
            counts,
            "native".into(),
            Vec::new(),
        )
    }
}

/// Hands batches of a native connector to the host ([`Runtime::run_native`]).
pub struct NativeEmitter<'a> {
    state: &'a mut RunState,
}

impl NativeEmitter<'_> {
    pub(crate) fn new(state: &mut RunState) -> NativeEmitter<'_> {
        NativeEmitter { state }
    }

    /// One batch of `stream` as Arrow IPC stream messages, exactly as a guest's `emit`.
    pub fn emit(&mut self, stream: &str, arrow_ipc: Vec<u8>) -> Result<(), Error> {
        use crate::bindings::agnes::connector::host::Host;
        let outcome = self.state.emit(stream.to_string(), arrow_ipc);
        if let Some(failure) = self.state.take_failure() {
            return Err(failure);
        }
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Connector {
                phase: Phase::Read,
                kind: "access denied",
                message: format!("{e:?}"),
            }),
            Err(trap) => Err(Error::Trap {
                phase: Phase::Read,
                reason: trap.to_string(),
            }),
        }
    }
}

/// What a read produced, for the report.
pub(crate) struct Counts {
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    logs_dropped: u64,
    host_busy: Duration,
    started: Instant,
    extracted_at: chrono::NaiveDateTime,
}

impl Counts {
    /// Adds another instance's counts (a split read).
    pub(crate) fn add(&mut self, other: &Counts) {
        self.rows += other.rows;
        self.bytes += other.bytes;
        self.logs_dropped += other.logs_dropped;
        self.host_busy += other.host_busy;
    }
}

/// Ends a read that returned `returned`: the state to commit (the returned one, validated,
/// else the last checkpoint), the parquet sink to finish, and the counts for the report.
pub(crate) fn end_read(
    state: &mut RunState,
    returned: Option<String>,
    started: Instant,
    extracted_at: chrono::NaiveDateTime,
) -> Result<(Option<String>, Sink, Counts), Error> {
    let new_state = match returned {
        Some(s) => Some(check_state(s)?),
        None => state.checkpoint.take(),
    };
    let sink = state.sink.take().expect("a read was prepared");
    let logs_dropped = state.lines_dropped();
    if logs_dropped > 0 {
        tracing::warn!(
            "error.type" = "log_limit",
            dropped = logs_dropped,
            limit = state.limits.max_log_lines,
            "the connector logged more lines than max_log_lines; the rest were dropped"
        );
    }
    let counts = Counts {
        rows: state.rows,
        bytes: state.bytes,
        logs_dropped,
        host_busy: state.host_busy,
        started,
        extracted_at,
    };
    Ok((new_state, sink, counts))
}

/// What one instance's read produced: the state to commit, its files by table, its counts.
pub(crate) type ReadOutput = (Option<String>, HashMap<String, WrittenFile>, Counts);

/// One instance's `read` of `selected` into `dir`: prepared, settled, its files finished.
pub(crate) async fn read_into(
    instance: &Instance,
    store: &mut Store<RunState>,
    request: &RunRequest,
    selected: &[TableSpec],
    dir: PathBuf,
    started: Instant,
    extracted_at: chrono::NaiveDateTime,
) -> Result<ReadOutput, Error> {
    prepare_read(store.data_mut(), dir, selected)?;
    let names: Vec<String> = selected.iter().map(|t| t.name.clone()).collect();
    let result = instance
        .read(store, &request.config, &names, request.state.as_deref())
        .await;
    let returned = settle(store, Phase::Read, result)?;
    let (state, sink, counts) = end_read(store.data_mut(), returned, started, extracted_at)?;
    Ok((state, sink.finish()?, counts))
}

/// `discover`'s tables → the ones to read (all, or `request.streams` in order).
fn select(request: &RunRequest, tables: Vec<TableSpec>) -> Result<Vec<TableSpec>, Error> {
    if tables.len() > request.limits.max_tables {
        return Err(Error::LimitExceeded {
            limit: "max_tables",
            detail: format!(
                "the connector offers {} tables, the limit is {}",
                tables.len(),
                request.limits.max_tables
            ),
        });
    }
    let Some(names) = &request.streams else {
        return Ok(tables);
    };
    let mut out = Vec::new();
    for name in names {
        let t = tables
            .iter()
            .find(|t| &t.name == name)
            .ok_or_else(|| Error::NoSuchTable {
                table: name.clone(),
                offered: tables
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        out.push(t.clone());
    }
    Ok(out)
}

/// Opens the read: emits go to `staging`'s data dir, for the selected tables only.
pub(crate) fn prepare_read(
    state: &mut RunState,
    dir: PathBuf,
    selected: &[TableSpec],
) -> Result<(), Error> {
    state.sink = Some(Sink::start(dir, state.limits.host_memory_bytes())?);
    state.selected = selected
        .iter()
        .map(|t| {
            let s = SelectedTable {
                schema: t.schema.clone(),
                decoder: StreamDecoder::new(),
                rows: 0,
                held: 0,
                adopt: false,
            };
            (t.name.clone(), s)
        })
        .collect();
    Ok(())
}

/// Runs one materialized table's SQL through the connector into its own sink (so a
/// failure leaves nothing behind), then moves the file into the staged data directory.
async fn materialize_one(
    instance: &Instance,
    store: &mut Store<RunState>,
    config: &str,
    staging: &Staging,
    m: &Materialize,
) -> Result<WrittenFile, Error> {
    validate_name("table", &m.table)?;
    if instance.world() == World::V0_1 {
        return Err(Error::Unsupported {
            connector: "the source's connector".into(),
            call: "query",
            reason: "it implements agnes:connector@0.1.0; materialized tables need 0.2.0".into(),
        });
    }
    crate::query::check_sql(&m.table, &m.sql)?;
    let sql = crate::query::QueryRequest::Sql(m.sql.clone());
    let request = crate::world::wire_request(&m.table, &sql);
    if m.max_scan_bytes > 0 {
        let result = instance
            .estimate(store, config, &request)
            .await
            .expect("a 0.2.0 instance");
        let estimate = settle(store, Phase::Estimate, result)?;
        let scan = estimate.scan_bytes.unwrap_or(0);
        if scan > m.max_scan_bytes {
            return Err(Error::LimitExceeded {
                limit: "max_bytes_per_materialize",
                detail: format!(
                    "the source estimates the SQL of `{}` scans {scan} bytes, over {} bytes",
                    m.table, m.max_scan_bytes
                ),
            });
        }
    }
    let dir = staging.dir().join(format!(".materialize-{}", m.table));
    std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
    let dest = staging.data_dir().join(format!("{}.parquet", m.table));
    let written =
        crate::query::query_to_file(instance, store, config, &m.table, &sql, None, &dir, &dest)
            .await;
    let _ = std::fs::remove_dir_all(&dir);
    written.map(|(_, file)| file)
}

/// Finishes every table (merging incremental ones), writes the state and
/// `extract.duckdb`, and publishes the staged version.
#[allow(clippy::too_many_arguments)]
pub(crate) fn publish(
    staging: Staging,
    request: RunRequest,
    selected: Vec<TableSpec>,
    mut files: HashMap<String, WrittenFile>,
    new_state: Option<String>,
    counts: Counts,
    component_digest: String,
    materialized: Vec<(String, Result<WrittenFile, String>)>,
) -> Result<RunReport, Error> {
    let data_dir = staging.data_dir();
    // Finish every selected table; one that received no batch gets an empty file with
    // its declared schema, so its view exists and says 0 rows.
    let mut written: HashMap<String, WrittenFile> = HashMap::new();
    // With a committed state, a table with a primary key and a cursor received only
    // what changed: merge it into the previous extract's file by key.
    let previous = request
        .state
        .as_ref()
        .and_then(|_| crate::extract::published(&request.extracts_dir, &request.source));
    let mut merged = Vec::new();
    for t in &selected {
        let mut file = match files.remove(&t.name) {
            Some(f) => f,
            None => TableWriter::create(&data_dir, &t.name, t.schema.clone())?.finish()?,
        };
        let prev_file = previous
            .as_ref()
            .filter(|_| t.incremental())
            .map(|dir| dir.join("data").join(format!("{}.parquet", t.name)))
            .filter(|p| p.is_file());
        if let Some(prev) = prev_file {
            file = crate::sink::merge::merge_by_key(
                &data_dir,
                &t.name,
                &t.schema,
                &t.primary_key,
                file,
                &prev,
            )?;
            merged.push(t.name.clone());
        }
        written.insert(t.name.clone(), file);
    }
    // materialized tables: this run's result, or the previous version when it failed
    let published_before = crate::extract::published(&request.extracts_dir, &request.source);
    let mut extra: Vec<(String, Option<String>, Option<String>)> = Vec::new(); // (name, description, error)
    for (name, outcome) in materialized {
        match outcome {
            Ok(file) => {
                written.insert(name.clone(), file);
                extra.push((name, None, None));
            }
            Err(error) => {
                let previous = published_before.as_ref().and_then(|dir| {
                    let meta = crate::extract::read_meta(dir).ok()?;
                    let row = meta.into_iter().find(|r| r.table_name == name)?;
                    Some((dir.join(row.path.clone()?), row))
                });
                if let Some((prev, row)) = previous {
                    let dest = data_dir.join(format!("{name}.parquet"));
                    std::fs::hard_link(&prev, &dest)
                        .or_else(|_| std::fs::copy(&prev, &dest).map(|_| ()))
                        .map_err(Error::io("keeping the previous version of", &prev))?;
                    written.insert(
                        name.clone(),
                        WrittenFile {
                            path: dest,
                            rows: row.rows.max(0) as u64,
                            size_bytes: row.size_bytes.max(0) as u64,
                            md5: row.md5.unwrap_or_default(),
                        },
                    );
                    extra.push((name, row.description, Some(error)));
                } else {
                    extra.push((name, None, Some(error)));
                }
            }
        }
    }
    if let Some(state) = &new_state {
        let path = staging.dir().join("state.json");
        std::fs::write(&path, state).map_err(Error::io("writing", &path))?;
    }
    let sealed = staging.seal()?;
    let mut reports = Vec::new();
    for t in &selected {
        let mut file = written.remove(&t.name).expect("written above");
        file.path = sealed.join("data").join(format!("{}.parquet", t.name));
        reports.push(TableReport {
            merged: merged.contains(&t.name),
            name: t.name.clone(),
            description: t.description.clone(),
            rows: file.rows,
            size_bytes: file.size_bytes,
            md5: file.md5.clone(),
            path: file.path.clone(),
            query_mode: "local",
            error: None,
        });
        written.insert(t.name.clone(), file);
    }
    for (name, description, error) in &extra {
        let Some(mut file) = written.remove(name) else {
            // failed, and no previous version to keep
            reports.push(TableReport {
                name: name.clone(),
                description: description.clone(),
                rows: 0,
                size_bytes: 0,
                md5: String::new(),
                path: PathBuf::new(),
                merged: false,
                query_mode: "materialized",
                error: error.clone(),
            });
            continue;
        };
        file.path = sealed.join("data").join(format!("{name}.parquet"));
        reports.push(TableReport {
            name: name.clone(),
            description: description.clone(),
            rows: file.rows,
            size_bytes: file.size_bytes,
            md5: file.md5.clone(),
            path: file.path.clone(),
            merged: false,
            query_mode: "materialized",
            error: error.clone(),
        });
        written.insert(name.clone(), file);
    }
    let mut extract_tables: Vec<ExtractTable<'_>> = selected
        .iter()
        .map(|t| ExtractTable {
            name: &t.name,
            description: t.description.as_deref(),
            file: &written[&t.name],
            query_mode: "local",
        })
        .collect();
    for (name, description, _) in &extra {
        if let Some(file) = written.get(name) {
            extract_tables.push(ExtractTable {
                name,
                description: description.as_deref(),
                file,
                query_mode: "materialized",
            });
        }
    }
    write_extract(&sealed, &extract_tables, counts.extracted_at)?;
    let version = staging.version().to_string();
    let dir = staging.publish()?;
    Ok(RunReport {
        source: request.source,
        version,
        dir,
        component_digest,
        tables: reports,
        rows: counts.rows,
        logs_dropped: counts.logs_dropped,
        bytes_emitted: counts.bytes,
        elapsed: counts.started.elapsed(),
        state: new_state,
        host_busy: counts.host_busy,
    })
}

pub(crate) async fn discover_in(
    instance: &Instance,
    store: &mut Store<RunState>,
    config: &str,
) -> Result<Vec<TableSpec>, Error> {
    let limits = store.data().limits.clone();
    let result = instance.discover(&mut *store, config).await;
    let infos = settle(store, Phase::Discover, result)?;
    let mut tables: Vec<TableSpec> = Vec::with_capacity(infos.len());
    for info in infos {
        let spec = table_spec(info, &limits)?;
        if tables.iter().any(|t| t.name == spec.name) {
            return Err(Error::UnsafeName {
                kind: "table",
                name: crate::names::shown(&spec.name),
                reason: "the connector offers it twice".into(),
            });
        }
        tables.push(spec);
    }
    Ok(tables)
}

/// The longest table description a connector may declare.
const MAX_DESCRIPTION: usize = 4096;

fn table_spec(info: TableInfo, limits: &Limits) -> Result<TableSpec, Error> {
    validate_name("table", &info.name)?;
    let invalid = |reason: String| Error::InvalidBatch {
        table: info.name.clone(),
        reason,
    };
    if let Some(d) = &info.description
        && d.len() > MAX_DESCRIPTION
    {
        return Err(invalid(format!(
            "its description is {} bytes; the limit is {MAX_DESCRIPTION}",
            d.len()
        )));
    }
    let mut decoder = StreamDecoder::new();
    let mut buffer = Buffer::from(info.arrow_schema.clone());
    let decoded =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoder.decode(&mut buffer)))
            .map_err(|_| crate::host::connector::malformed(&info.name))?;
    if let Some(_batch) =
        decoded.map_err(|e| invalid(format!("declared schema is not Arrow IPC: {e}")))?
    {
        return Err(invalid("declared schema carries a record batch".into()));
    }
    let schema = decoder
        .schema()
        .ok_or_else(|| invalid("declared schema is empty".into()))?;
    if !buffer.is_empty() {
        return Err(invalid("declared schema has trailing bytes".into()));
    }
    crate::schema::validate(&info.name, &schema, limits)?;
    for key in info.primary_key.iter().chain(info.cursor_field.iter()) {
        if schema.field_with_name(key).is_err() {
            return Err(invalid(format!(
                "primary key or cursor field `{}` is not a column",
                crate::names::shown(key)
            )));
        }
    }
    Ok(TableSpec {
        name: info.name,
        description: info.description,
        schema,
        primary_key: info.primary_key,
        cursor_field: info.cursor_field,
    })
}

/// Runs `work` under the wall-clock limit of `limits`: past it, the future is dropped (its
/// store, sockets and guest with it) and the call fails with [`Error::Timeout`].
pub(crate) async fn within<T>(
    limits: &Limits,
    work: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let limit = limits.timeout();
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| Error::Timeout { limit })?
}

/// Turns the outcome of a guest call into the run's result. A failure a host call
/// recorded wins over whatever the guest made of it.
pub(crate) fn settle<T>(
    store: &mut Store<RunState>,
    phase: Phase,
    result: wasmtime::Result<Result<T, GuestError>>,
) -> Result<T, Error> {
    if let Some(failure) = store.data_mut().take_failure() {
        return Err(failure);
    }
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(GuestError { kind, message })) => Err(Error::Connector {
            phase,
            kind,
            message: crate::names::sanitized(&message, MAX_GUEST_MESSAGE),
        }),
        Err(trap) => {
            tracing::debug!(error = %describe(&trap), "guest trap with backtrace");
            let root = trap.root_cause().to_string();
            if root.contains("fuel allocated for hostcalls") {
                // wasmtime refused to copy one host call's arguments out of the guest: the
                // only call that large is an emit over max_batch_mb
                let limits = &store.data().limits;
                return Err(Error::LimitExceeded {
                    limit: "max_batch_mb",
                    detail: format!(
                        "one emit was larger than max_batch_mb = {} MiB; emit smaller batches",
                        limits.max_batch_mb
                    ),
                });
            }
            let mut reason = crate::names::sanitized(&root, MAX_GUEST_MESSAGE);
            let tail = store.data().stderr.tail();
            if !tail.is_empty() {
                reason.push_str("; guest stderr: ");
                reason.push_str(&tail.join(" / "));
            }
            Err(Error::Trap { phase, reason })
        }
    }
}

/// The longest connector error message kept (it reaches logs, the history and terminals).
const MAX_GUEST_MESSAGE: usize = 4096;

fn check_state(state: String) -> Result<String, Error> {
    const MAX: usize = 1 << 20;
    let fail = |reason: String| Error::Connector {
        phase: Phase::Read,
        kind: "internal",
        message: reason,
    };
    if state.len() > MAX {
        return Err(fail(format!(
            "returned state is {} bytes; the limit is {MAX}",
            state.len()
        )));
    }
    serde_json::from_str::<serde_json::Value>(&state)
        .map_err(|e| fail(format!("returned state is not JSON: {e}")))?;
    Ok(state)
}
