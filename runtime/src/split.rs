//! A read split across several instances of one component (`parallel_reads`): instance
//! `i` of `n` finds `AGNES_READ_PARTITION=i/n` in its environment and reads its share
//! (the csv connector: a byte range of each large file, cut at record boundaries; whole
//! small files round-robin). Instance 0 runs on the caller's task in the store `discover`
//! ran in; the others run on threads of their own, each with its own store, limits and
//! parquet encoder. Their files are joined per table in partition order by copying row
//! groups (no re-encoding), so the table is one parquet file with a stable row order.
//! The first failure stops the others at their next epoch tick; the run fails with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use wasmtime::Store;

use crate::Error;
use crate::engine::{LoadedComponent, Runtime};
use crate::error::Phase;
use crate::extract::Staging;
use crate::host::RunState;
use crate::run::{Counts, ReadOutput, RunRequest, TableSpec, read_into, within};
use crate::sink::parquet::{WrittenFile, concat};
use crate::world::Instance;

/// The environment variable that tells an instance its share: `i/n`.
pub(crate) const PARTITION_ENV: &str = "AGNES_READ_PARTITION";

/// Why an instance stopped when another one failed (never the error a run reports).
pub(crate) const PEER_FAILED: &str = "stopped: another instance of the split read failed";

/// One split read.
pub(crate) struct Split<'a> {
    pub component: &'a LoadedComponent,
    pub request: &'a RunRequest,
    pub selected: &'a [TableSpec],
    pub staging: &'a Staging,
    pub partitions: u32,
    pub started: Instant,
    pub extracted_at: chrono::NaiveDateTime,
}

/// Stops and joins the other instances however the read ends (an error, the run's timeout
/// dropping the future).
struct Others {
    cancel: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Result<ReadOutput, Error>>>,
}

impl Others {
    fn join(mut self) -> Vec<Result<ReadOutput, Error>> {
        std::mem::take(&mut self.threads)
            .into_iter()
            .map(|t| {
                t.join().unwrap_or_else(|_| {
                    Err(Error::Trap {
                        phase: Phase::Read,
                        reason: "an instance of the split read panicked in the host".into(),
                    })
                })
            })
            .collect()
    }
}

impl Drop for Others {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.cancel.store(true, Ordering::Relaxed);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

fn is_peer_stop(e: &Error) -> bool {
    matches!(e, Error::Trap { reason, .. } if reason == PEER_FAILED)
}

impl Runtime {
    /// Runs the read `n` ways; returns instance 0's state, one file per table (joined in
    /// partition order) and the counts of all instances.
    pub(crate) async fn read_split(
        &self,
        split: Split<'_>,
        store: &mut Store<RunState>,
        instance: &Instance,
    ) -> Result<ReadOutput, Error> {
        let n = split.partitions;
        let dirs: Vec<PathBuf> = (0..n)
            .map(|i| split.staging.dir().join(format!(".partition-{i}")))
            .collect();
        for d in &dirs {
            std::fs::create_dir_all(d).map_err(Error::io("creating", d))?;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let mut others = Others {
            cancel: cancel.clone(),
            threads: Vec::new(),
        };
        for i in 1..n {
            let (rt, component) = (self.clone(), split.component.clone());
            let (request, selected) = (split.request.clone(), split.selected.to_vec());
            let (dir, cancel) = (dirs[i as usize].clone(), cancel.clone());
            let extracted_at = split.extracted_at;
            let thread = std::thread::Builder::new()
                .name(format!("agnes-read-{i}"))
                .spawn(move || {
                    let part = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .map_err(Error::io("starting", Path::new("a read thread")))
                        .and_then(|rt_| {
                            // its own deadline too: a share blocked in a host call (which
                            // the cancel flag cannot interrupt) still ends with the run's
                            rt_.block_on(within(
                                &request.limits,
                                rt.read_partition(
                                    &component,
                                    &request,
                                    &selected,
                                    &dir,
                                    (i, n),
                                    &cancel,
                                    extracted_at,
                                ),
                            ))
                        });
                    if part.is_err() {
                        cancel.store(true, Ordering::Relaxed);
                    }
                    part
                })
                .map_err(Error::io("starting", Path::new("a read thread")))?;
            others.threads.push(thread);
        }

        store.data_mut().cancel = Some(cancel.clone());
        let first = read_into(
            instance,
            store,
            split.request,
            split.selected,
            dirs[0].clone(),
            split.started,
            split.extracted_at,
        )
        .await;
        store.data_mut().cancel = None;
        if first.is_err() {
            cancel.store(true, Ordering::Relaxed);
        }
        let mut results = vec![first];
        results.extend(others.join());

        // the run fails with the first real failure, not with an instance it stopped
        if results.iter().any(Result::is_err) {
            let mut errors: Vec<Error> = results.into_iter().filter_map(Result::err).collect();
            let real = errors.iter().position(|e| !is_peer_stop(e)).unwrap_or(0);
            return Err(errors.swap_remove(real));
        }
        let mut parts: Vec<ReadOutput> =
            results.into_iter().map(|r| r.expect("no error")).collect();
        let (state, _, _) = &mut parts[0];
        let state = state.take();
        let mut counts: Option<Counts> = None;
        let mut per_table: HashMap<String, Vec<WrittenFile>> = HashMap::new();
        for (_, files, c) in parts {
            for (table, file) in files {
                per_table.entry(table).or_default().push(file);
            }
            match &mut counts {
                None => counts = Some(c),
                Some(total) => total.add(&c),
            }
        }
        let counts = counts.expect("at least one instance");
        let limits = &split.request.limits;
        if counts.rows > limits.max_rows {
            return Err(Error::LimitExceeded {
                limit: "max_rows",
                detail: format!("the run emitted more than {} rows", limits.max_rows),
            });
        }
        if counts.bytes > limits.max_output_bytes() {
            return Err(Error::LimitExceeded {
                limit: "max_output_mb",
                detail: format!(
                    "the run emitted {} bytes, the limit is {} MiB",
                    counts.bytes, limits.max_output_mb
                ),
            });
        }
        let data_dir = split.staging.data_dir();
        let mut files = HashMap::new();
        // each table's parts were collected in partition order (instance 0, 1, …)
        for (table, parts) in per_table {
            files.insert(table.clone(), concat(&data_dir, &table, parts)?);
        }
        for d in &dirs {
            let _ = std::fs::remove_dir_all(d);
        }
        Ok((state, files, counts))
    }

    /// Instance `i` of a split read (not instance 0), in a store of its own.
    #[allow(clippy::too_many_arguments)]
    async fn read_partition(
        &self,
        component: &LoadedComponent,
        request: &RunRequest,
        selected: &[TableSpec],
        dir: &Path,
        partition: (u32, u32),
        cancel: &Arc<AtomicBool>,
        extracted_at: chrono::NaiveDateTime,
    ) -> Result<ReadOutput, Error> {
        let started = Instant::now();
        let mut store = self.store_in(&request.grant, &request.limits, Some(partition))?;
        store.data_mut().cancel = Some(cancel.clone());
        let instance = self.instantiate(component, &mut store).await?;
        let dir = dir.to_path_buf();
        read_into(
            &instance,
            &mut store,
            request,
            selected,
            dir,
            started,
            extracted_at,
        )
        .await
    }
}
