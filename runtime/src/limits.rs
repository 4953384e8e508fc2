//! Hard limits of one connector run.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bounds on what one run may use and produce. Every field has a default; a config may
/// lower or raise them (`[limits]` in a run config).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory of the guest, in MiB.
    pub memory_mb: u64,
    /// Wall-clock time of the whole run (discover + read), in seconds. Also stops a guest
    /// blocked in a host call (a sleep, a slow HTTP response).
    pub timeout_secs: u64,
    /// Time the guest spends executing its own code, in seconds, counted in epoch ticks
    /// (10 ms) while guest code runs; time blocked in host calls does not count.
    pub cpu_secs: u64,
    /// Rows emitted over all tables.
    pub max_rows: u64,
    /// Arrow IPC bytes emitted over all tables, in MiB.
    pub max_output_mb: u64,
    /// Size of one `emit` call (one batch), in MiB.
    pub max_batch_mb: u64,
    /// Memory the host may hold for the run's output, in MiB: a batch in memory may use an
    /// eighth of it (dictionary values included), parquet row groups waiting to be
    /// written a quarter (they are flushed early past it), the queue to the encoder the
    /// rest. The guest's own memory is `memory_mb`.
    pub host_memory_mb: u64,
    /// Tables a connector may offer.
    pub max_tables: usize,
    /// Columns of one table (at most [`crate::schema::MAX_COLUMNS`]).
    pub max_columns: usize,
    /// Levels of nesting (lists, structs, maps) in a column (at most
    /// [`crate::schema::MAX_NESTING_DEPTH`]).
    pub max_nesting_depth: usize,
    /// `emit` calls over all tables.
    pub max_batches: u64,
    /// Log lines kept per run (guest `log` calls plus stdout/stderr lines); later ones are
    /// counted and dropped.
    pub max_log_lines: u64,
    /// Database connections a run may open (`database.connect` calls).
    pub max_db_connections: u32,
    /// Bytes a run may read from its database connections, in MiB.
    pub max_db_read_mb: u64,
    /// The most instances one read may be split into, for a connector that asks for it
    /// (`[requests.limits] parallel_reads` in its connector.toml); the machine's cores cap
    /// it too. Each instance has the per-run limits above while it runs; the run's totals
    /// (`max_rows`, `max_output_mb`) are checked over all of them before anything is
    /// published.
    pub parallel_reads: u32,
    /// What this run got: the connector's ask within `parallel_reads` (set by
    /// [`crate::manifest::ConnectorManifest::effective`]; 1 for a connector that did not
    /// ask, whose read is never split).
    #[serde(skip)]
    pub read_partitions: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 1024,
            timeout_secs: 3600,
            cpu_secs: 3600,
            max_rows: 10_000_000_000,
            max_output_mb: 256 * 1024,
            max_batch_mb: 64,
            host_memory_mb: 512,
            max_tables: 1000,
            max_columns: 1000,
            max_nesting_depth: 8,
            max_batches: 100_000,
            max_log_lines: 10_000,
            max_db_connections: 4,
            max_db_read_mb: 256 * 1024,
            parallel_reads: 4,
            read_partitions: 1,
        }
    }
}

impl Limits {
    /// The instances this run's read is split into: what it was granted, at most one per
    /// core.
    pub(crate) fn partitions(&self) -> u32 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        self.read_partitions
            .min(self.parallel_reads)
            .min(cores)
            .max(1)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
    pub(crate) fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
    pub(crate) fn max_output_bytes(&self) -> u64 {
        self.max_output_mb.saturating_mul(1 << 20)
    }
    pub(crate) fn host_memory_bytes(&self) -> usize {
        usize::try_from(self.host_memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
    pub(crate) fn max_db_read_bytes(&self) -> u64 {
        self.max_db_read_mb.saturating_mul(1 << 20)
    }
    pub(crate) fn max_batch_bytes(&self) -> usize {
        usize::try_from(self.max_batch_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}
