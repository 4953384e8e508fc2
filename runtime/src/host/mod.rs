//! Host-side state of one run and the implementations of the interfaces the guest imports:
//! `agnes:connector/host` in [`connector`], WASI through `wasmtime-wasi` built from the
//! grant only, guest stdout/stderr in [`output`].

pub(crate) mod connector;
pub mod database;
pub(crate) mod egress;
pub mod fixtures;
pub(crate) mod output;
mod v2;

use std::collections::HashMap;

use arrow_ipc::reader::StreamDecoder;
use arrow_schema::SchemaRef;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::sink::pipeline::Sink;
use crate::{Error, Limits};

/// One table selected for the read.
pub(crate) struct SelectedTable {
    pub schema: SchemaRef,
    pub decoder: StreamDecoder,
    /// Rows accepted for this table.
    pub rows: u64,
    /// Bytes of emits that produced no batch (schema and dictionary messages): what the
    /// decoder may be holding, bounded by `host_memory_mb`.
    pub held: u64,
    /// The schema is not known in advance (the result of admin SQL): the first batch's
    /// schema, once validated, becomes the table's.
    pub adopt: bool,
}

/// Everything the host keeps for one run; the store's data.
pub(crate) struct RunState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    /// The `wasi:http` hooks: the grant's egress rules and secrets.
    pub egress: egress::Egress,
    /// The granted databases and the connections opened (world 0.2.0).
    pub databases: database::Databases,
    pub resources: ResourceTable,
    /// Epoch ticks (10 ms) observed while guest code ran: its CPU time.
    pub cpu_ticks: u64,
    pub store_limits: StoreLimits,
    pub limits: Limits,
    /// Tables the read may emit to (empty outside `read`: emit is denied).
    pub selected: HashMap<String, SelectedTable>,
    /// The parquet encoder of the read: set while `read` runs, so emit is denied outside it.
    pub sink: Option<Sink>,
    /// The first fatal error a host call raised; the run fails with it, whatever the
    /// guest does afterwards.
    pub failure: Option<Error>,
    pub rows: u64,
    pub bytes: u64,
    /// `emit` calls so far.
    pub batches: u64,
    /// Record batches decoded and accepted so far.
    pub batches_taken: u64,
    pub log_lines: u64,
    /// Time spent in the host accepting batches (decode, validation, parquet).
    pub host_busy: std::time::Duration,
    pub logs_dropped: u64,
    pub checkpoint: Option<String>,
    pub on_progress: Option<crate::run::ProgressFn>,
    /// The guest's stderr, for the panic message of a trap.
    pub stderr: output::GuestOutput,
    /// The guest's stdout (for its count of dropped lines).
    pub stdout: Option<output::GuestOutput>,
    /// Nanoseconds the host spent on the guest's behalf (accepting batches, its log lines
    /// and output), charged to `cpu_secs` with the guest's own time.
    pub host_cpu: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Set when another instance of a split read failed: this one stops at its next epoch
    /// tick.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl RunState {
    pub(crate) fn new(
        wasi: WasiCtx,
        egress: egress::Egress,
        databases: database::Databases,
        stderr: output::GuestOutput,
        store_limits: StoreLimits,
        limits: Limits,
    ) -> Self {
        RunState {
            wasi,
            http: WasiHttpCtx::new(),
            egress,
            databases,
            resources: ResourceTable::new(),
            cpu_ticks: 0,
            store_limits,
            limits,
            selected: HashMap::new(),
            sink: None,
            failure: None,
            rows: 0,
            bytes: 0,
            batches: 0,
            batches_taken: 0,
            log_lines: 0,
            host_busy: std::time::Duration::ZERO,
            logs_dropped: 0,
            checkpoint: None,
            on_progress: None,
            stderr,
            stdout: None,
            host_cpu: std::sync::Arc::default(),
            cancel: None,
        }
    }

    /// A state with no guest, no egress and no WASI, mid-`read` of one `table`: what the
    /// emit path's tests and fuzz target drive directly.
    pub(crate) fn reading(
        dir: &std::path::Path,
        limits: Limits,
        sink_budget: usize,
        table: &str,
        schema: SchemaRef,
    ) -> Result<Self, Error> {
        let egress = egress::Egress::new(
            &crate::Grant::default(),
            Default::default(),
            egress::tls_config(),
            None,
        )?;
        let databases = database::Databases::new(
            &crate::Grant::default(),
            Default::default(),
            egress::tls_config(),
        )?;
        let mut state = RunState::new(
            wasmtime_wasi::WasiCtxBuilder::new().build(),
            egress,
            databases,
            output::GuestOutput::new("stderr", 10, Default::default()),
            wasmtime::StoreLimitsBuilder::new().build(),
            limits,
        );
        state.sink = Some(Sink::start(dir.to_path_buf(), sink_budget)?);
        state.selected.insert(
            table.to_string(),
            SelectedTable {
                schema,
                decoder: StreamDecoder::new(),
                rows: 0,
                held: 0,
                adopt: false,
            },
        );
        Ok(state)
    }

    /// The first fatal error of the run: a host call's or a refused HTTP request's.
    pub(crate) fn take_failure(&mut self) -> Option<Error> {
        self.failure.take().or_else(|| self.egress.take_denial())
    }

    /// CPU charged to the run so far: the guest's epoch ticks plus the host's time on its
    /// behalf.
    pub(crate) fn cpu_used(&self) -> std::time::Duration {
        crate::engine::EPOCH_TICK * self.cpu_ticks.min(u32::MAX as u64) as u32
            + std::time::Duration::from_nanos(
                self.host_cpu.load(std::sync::atomic::Ordering::Relaxed),
            )
    }

    /// Fails the run when [`RunState::cpu_used`] passes `cpu_secs`; true if it did.
    pub(crate) fn over_cpu_budget(&mut self) -> bool {
        let used = self.cpu_used();
        if used.as_secs() < self.limits.cpu_secs {
            return false;
        }
        let host = std::time::Duration::from_nanos(
            self.host_cpu.load(std::sync::atomic::Ordering::Relaxed),
        );
        self.fail(Error::LimitExceeded {
            limit: "cpu_secs",
            detail: format!(
                "the run used more than {} s of CPU time ({:.1} s of it the host handling the connector's batches and output)",
                self.limits.cpu_secs,
                host.as_secs_f64()
            ),
        });
        true
    }

    /// Log lines dropped over the budget: `log` calls, stdout and stderr lines.
    pub(crate) fn lines_dropped(&self) -> u64 {
        self.logs_dropped
            + self.stderr.dropped()
            + self.stdout.as_ref().map_or(0, output::GuestOutput::dropped)
    }

    /// Records the first fatal error of the run.
    pub(crate) fn fail(&mut self, error: Error) {
        if self.failure.is_none() {
            tracing::warn!("error.type" = "run_failed", error = %error, "connector run failed");
            self.failure = Some(error);
        }
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.resources,
        }
    }
}

impl WasiHttpView for RunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.resources,
            hooks: &mut self.egress,
        }
    }
}
