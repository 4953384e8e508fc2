//! Host-side state of one run and the implementations of the interfaces the guest imports:
//! `agnes:connector/host` in [`connector`], WASI through `wasmtime-wasi` built from the
//! grant only, guest stdout/stderr in [`output`].

pub(crate) mod connector;
pub(crate) mod egress;
pub(crate) mod output;

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
}

/// Everything the host keeps for one run; the store's data.
pub(crate) struct RunState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    /// The `wasi:http` hooks: the grant's egress rules and secrets.
    pub egress: egress::Egress,
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
}

impl RunState {
    pub(crate) fn new(
        wasi: WasiCtx,
        egress: egress::Egress,
        stderr: output::GuestOutput,
        store_limits: StoreLimits,
        limits: Limits,
    ) -> Self {
        RunState {
            wasi,
            http: WasiHttpCtx::new(),
            egress,
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
            log_lines: 0,
            host_busy: std::time::Duration::ZERO,
            logs_dropped: 0,
            checkpoint: None,
            on_progress: None,
            stderr,
            stdout: None,
        }
    }

    /// The first fatal error of the run: a host call's or a refused HTTP request's.
    pub(crate) fn take_failure(&mut self) -> Option<Error> {
        self.failure.take().or_else(|| self.egress.take_denial())
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
