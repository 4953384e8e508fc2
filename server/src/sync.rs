//! Sync: a run syncs one source — its connector reads the source's tables, the runtime
//! publishes the extract, the history records the run with one outcome per table, and the
//! catalog is rebuilt. One run per source at a time (a second trigger of a busy source gets
//! 409); different sources may sync side by side. The scheduler triggers enabled sources
//! whose schedule is due.

use std::time::Duration;

use agnes_runtime::RunRequest;
use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{Source, TableOutcome, parse_schedule};

/// A source whose sync is queued or in progress.
#[derive(Debug, Clone, Serialize)]
pub struct Running {
    pub run_id: i64,
    pub source: String,
    pub trigger: String,
    pub full_refresh: bool,
    pub started_at: String,
    /// `queued` or `running` (runs shared through PostgreSQL; absent on one machine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl Running {
    /// Every run queued or in progress: this process's, or (shared state) every process's.
    pub async fn all(state: &AppState) -> ApiResult<Vec<Running>> {
        if state.shared().is_none() {
            return Ok(state
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect());
        }
        Ok(state
            .store
            .active_runs()
            .await?
            .into_iter()
            .map(|r| Running {
                run_id: r.id,
                source: r.source,
                trigger: r.trigger,
                full_refresh: r.full_refresh,
                started_at: r.started_at,
                status: Some(r.status),
            })
            .collect())
    }
}

/// On a shared state: keeps this process's runs alive and puts the runs of workers that
/// stopped beating (killed, cut off) back in the queue — retried with backoff up to
/// `[worker] max_attempts` times. Runs until the process ends.
pub async fn keep_alive(state: AppState) {
    let lease = Duration::from_secs(state.config.worker.lease_secs);
    let mut tick = tokio::time::interval((lease / 4).max(Duration::from_millis(500)));
    let lease = chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::zero());
    loop {
        tick.tick().await;
        if let Err(e) = state.store.heartbeat(&state.instance).await {
            tracing::warn!(error = %e.detail(), "recording this process's heartbeat failed");
        }
        let stale = crate::db::stamp(-lease);
        // the next try waits a lease (a worker that starts dies again: not at once)
        let retry = crate::db::stamp(lease);
        let max = state.config.worker.max_attempts;
        match state.store.requeue_stale(&stale, &retry, max).await {
            Ok((0, 0)) => {}
            Ok((requeued, failed)) => {
                tracing::warn!(
                    requeued,
                    failed,
                    "runs of a worker that stopped were put back in the queue"
                );
                state.announce_jobs().await;
            }
            Err(e) => tracing::warn!(error = %e.detail(), "requeueing stale runs failed"),
        }
    }
}

/// A worker: runs queued syncs, one at a time, until the process ends. Woken by an
/// announced trigger, else polls every second.
pub async fn work(state: AppState) {
    loop {
        match state.store.take_queued(&state.instance).await {
            Ok(Some(taken)) => {
                match state.store.get_source(&taken.source).await {
                    Ok(Some(source)) => {
                        tracing::info!(source = %taken.source, run = taken.run, "running a queued sync");
                        // continue from the newest version (its committed state), even if
                        // its announcement has not reached this process yet
                        if let Some(bucket) = state.bucket() {
                            state.install_published(bucket, Some(&taken.source)).await;
                        }
                        run_source(&state, taken.run, &source, taken.full_refresh).await;
                    }
                    Ok(None) => {
                        let _ = state
                            .store
                            .finish_run(taken.run, "failed", Some("the source was deleted"))
                            .await;
                    }
                    Err(e) => {
                        let _ = state
                            .store
                            .finish_run(
                                taken.run,
                                "failed",
                                Some(&format!("reading the source: {}", e.detail())),
                            )
                            .await;
                    }
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e.detail(), "taking a queued sync failed"),
        }
        tokio::select! {
            _ = state.jobs.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Removes from the bucket the versions replaced more than `grace_secs` ago (a presigned
/// URL handed out before the replacement has expired by then), and every version of a
/// source that no longer exists (its data is not anyone's to download any more). Returns
/// how many versions went.
pub async fn remove_replaced(state: &AppState) -> Result<usize, String> {
    let Some(bucket) = state.bucket() else {
        return Ok(0);
    };
    let versions = state
        .store
        .published_versions()
        .await
        .map_err(|e| e.detail())?;
    let sources: std::collections::HashSet<String> = state
        .store
        .list_sources()
        .await
        .map_err(|e| e.detail())?
        .into_iter()
        .map(|s| s.spec.name)
        .collect();
    let cutoff = crate::db::stamp(
        -chrono::Duration::from_std(bucket.grace).unwrap_or_else(|_| chrono::Duration::zero()),
    );
    let mut removed = 0;
    for (i, v) in versions.iter().enumerate() {
        let successor = versions.get(i + 1).filter(|n| n.source == v.source);
        let due = !sources.contains(&v.source)
            || successor.is_some_and(|n| n.published_at.as_str() < cutoff.as_str());
        if due {
            bucket.remove(&v.source, &v.version).await?;
            state
                .store
                .forget_published(&v.source, &v.version)
                .await
                .map_err(|e| e.detail())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// With a bucket: uploads the version of `source` this process just published, unless
/// it is there already, and records it as the one served.
pub(crate) async fn share(state: &AppState, source: &str) -> Result<(), String> {
    let Some(bucket) = state.bucket() else {
        return Ok(());
    };
    let extracts = state.config.extracts_dir();
    let Some(dir) = agnes_runtime::extract::published(&extracts, source) else {
        return Ok(());
    };
    let version = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let recorded = state
        .store
        .published_versions()
        .await
        .map_err(|e| e.detail())?
        .iter()
        .any(|v| v.source == source && v.version == version);
    if !recorded {
        bucket
            .upload(&extracts, source)
            .await
            .map_err(|e| format!("sharing the new version through the bucket: {e}"))?;
        state
            .store
            .record_published(source, &version)
            .await
            .map_err(|e| format!("recording the shared version: {}", e.detail()))?;
    }
    Ok(())
}

/// Which sources a trigger names.
#[derive(Debug, Clone)]
pub enum Target {
    /// Every enabled source with tables that is not syncing already.
    All,
    /// Exactly these (each must exist, be enabled, have tables and be idle).
    Only(Vec<String>),
}

/// Starts a run of each targeted source in the background (one after the other) and
/// returns them. With `full_refresh`, connectors start without their committed state:
/// incremental tables are read in full and replace their files (rows deleted at the
/// source go).
pub async fn trigger(
    state: &AppState,
    trigger: String,
    target: Target,
    full_refresh: bool,
) -> ApiResult<Vec<Running>> {
    let sources = state.store.list_sources().await?;
    let tables = state.store.list_tables(None).await?;
    let has_tables = |s: &str| tables.iter().any(|t| t.source == s);
    let chosen: Vec<Source> = match &target {
        Target::Only(names) => {
            let mut chosen = Vec::new();
            for name in names {
                let source = sources
                    .iter()
                    .find(|s| &s.spec.name == name)
                    .ok_or_else(|| ApiError::NotFound(format!("no source `{name}`")))?;
                if !source.spec.enabled {
                    return Err(ApiError::Conflict(format!(
                        "source `{name}` is disabled; enable it first (`agnes admin source update {name} --enable`)"
                    )));
                }
                if !has_tables(name) {
                    return Err(ApiError::BadRequest(format!(
                        "source `{name}` has no tables; add some first (`agnes admin table add {name} ...`)"
                    )));
                }
                if !chosen.iter().any(|c: &Source| &c.spec.name == name) {
                    chosen.push(source.clone());
                }
            }
            chosen
        }
        Target::All => sources
            .into_iter()
            .filter(|s| s.spec.enabled && has_tables(&s.spec.name))
            .collect(),
    };
    // reserve each source under the lock, so two triggers cannot both take one; a refusal
    // below drops what was reserved
    let mut reserved = Vec::new();
    for s in chosen {
        match reserve(state, &s.spec.name, &trigger, full_refresh) {
            Ok(r) => reserved.push((r, s)),
            Err(busy) if matches!(target, Target::Only(_)) => {
                return Err(ApiError::Conflict(format!(
                    "source `{}` is syncing (run {}, started {}); wait for it",
                    busy.source, busy.run_id, busy.started_at
                )));
            }
            Err(_) => {}
        }
    }
    if reserved.is_empty() {
        return Err(ApiError::Conflict(
            "nothing to sync: every enabled source with tables is syncing already, or there is none \
             (add one with `agnes admin source add`)"
                .into(),
        ));
    }
    // the store claims each source: with several processes sharing the state, the one
    // that claims it first runs it — a worker, through the queue
    let queued = state.shared().is_some();
    let mut runs = Vec::with_capacity(reserved.len());
    let mut started = Vec::with_capacity(reserved.len());
    for (r, s) in reserved {
        let claim = if queued {
            state
                .store
                .queue_run(&s.spec.name, &trigger, full_refresh)
                .await
        } else {
            state
                .store
                .start_run(&s.spec.name, &trigger, full_refresh, &state.instance)
                .await
        };
        match claim {
            Ok(id) => {
                runs.push(r.started(id));
                started.push((r, s));
            }
            Err(ApiError::Conflict(why)) if matches!(target, Target::All) => {
                tracing::debug!(source = %s.spec.name, %why, "syncing in another process");
            }
            Err(e) => {
                for (r, _) in &started {
                    let _ = state
                        .store
                        .finish_run(
                            r.run_id(),
                            "failed",
                            Some(&format!(
                                "not run: another source of this trigger could not start: {e}"
                            )),
                        )
                        .await;
                }
                return Err(e);
            }
        }
    }
    if started.is_empty() {
        return Err(ApiError::Conflict(
            "nothing to sync: every enabled source with tables is syncing already".into(),
        ));
    }
    if queued {
        // the reservations go; the queue holds the sources now
        drop(started);
        state.announce_jobs().await;
        return Ok(runs);
    }
    let state = state.clone();
    tokio::spawn(async move {
        for (r, source) in started {
            run_source(&state, r.run_id(), &source, full_refresh).await;
        }
    });
    Ok(runs)
}

/// A source taken in [`AppState::running`]: no other sync (or deletion) of it starts while
/// this lives; dropping it releases the source.
pub(crate) struct Reservation {
    state: AppState,
    source: String,
}

/// Takes `source`, or answers the run that holds it.
pub(crate) fn reserve(
    state: &AppState,
    source: &str,
    trigger: &str,
    full_refresh: bool,
) -> Result<Reservation, Running> {
    let mut running = state.running.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = running.get(source) {
        return Err(r.clone());
    }
    running.insert(
        source.to_string(),
        Running {
            run_id: 0,
            source: source.to_string(),
            trigger: trigger.to_string(),
            full_refresh,
            started_at: crate::db::now(),
            status: None,
        },
    );
    Ok(Reservation {
        state: state.clone(),
        source: source.to_string(),
    })
}

impl Reservation {
    fn with<T>(&self, f: impl FnOnce(&mut Running) -> T) -> T {
        let mut running = self.state.running.lock().unwrap_or_else(|p| p.into_inner());
        f(running
            .get_mut(&self.source)
            .expect("a reservation keeps its entry"))
    }

    /// Records the run's id; the entry as `/api/sync/status` shows it.
    fn started(&self, run_id: i64) -> Running {
        self.with(|r| {
            r.run_id = run_id;
            r.clone()
        })
    }

    fn run_id(&self) -> i64 {
        self.with(|r| r.run_id)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.state
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.source);
    }
}

/// Runs one source and records the run: one outcome per table, the run's status
/// (`ok`, `partial`, `failed`) and error, then rebuilds the catalog.
async fn run_source(state: &AppState, run: i64, source: &Source, full_refresh: bool) {
    // listed now, not at trigger: a table added while the source waited in the queue syncs too
    let tables = match state.store.list_tables(Some(&source.spec.name)).await {
        Ok(t) => t,
        Err(e) => {
            let _ = state
                .store
                .finish_run(run, "failed", Some(&format!("listing tables: {e}")))
                .await;
            return;
        }
    };
    // local tables are read; remote ones stay at the source; materialized ones are the
    // admin's SQL, run at the source in the same run
    let names: Vec<String> = tables
        .iter()
        .filter(|t| t.spec.query_mode == "local")
        .map(|t| t.spec.name.clone())
        .collect();
    let materialize: Vec<agnes_runtime::Materialize> = tables
        .iter()
        .filter(|t| t.spec.query_mode == "materialized")
        .map(|t| agnes_runtime::Materialize {
            table: t.spec.name.clone(),
            sql: t.spec.options["sql"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            max_scan_bytes: t.spec.options["max_bytes_per_materialize"]
                .as_u64()
                .unwrap_or(state.config.remote.max_bytes_per_materialize),
        })
        .collect();
    let result = if crate::connector::is_sql(&source.spec) {
        crate::derived::run(state, source, &materialize).await
    } else {
        run_connector(state, source, &names, &materialize, None, !full_refresh).await
    };
    // a worker silent past its lease lost the run to another: that one records it
    if state.shared().is_some()
        && !state
            .store
            .owns_run(run, &state.instance)
            .await
            .unwrap_or(true)
    {
        tracing::warn!(source = %source.spec.name, run, "this run went to another worker while this one was silent past its lease; its result is dropped");
        return;
    }
    // shared with the other processes before it counts: a version only this process had
    // would be served here and nowhere else
    let result = match result {
        Ok(report) => share(state, &source.spec.name).await.map(|()| report),
        Err(e) => Err(e.to_string()),
    };
    let finished_at = crate::db::now();
    let outcome = |table: &str, ok: bool, rows, size, error| TableOutcome {
        table: table.to_string(),
        status: if ok { "ok" } else { "failed" }.to_string(),
        rows,
        size_bytes: size,
        error,
        finished_at: finished_at.clone(),
    };
    let (outcomes, run_error) = match result {
        Ok(report) => (
            names
                .iter()
                .map(|n| match report.tables.iter().find(|t| &t.name == n) {
                    Some(t) => outcome(
                        n,
                        true,
                        Some(t.rows as i64),
                        Some(t.size_bytes as i64),
                        None,
                    ),
                    None => outcome(
                        n,
                        false,
                        None,
                        None,
                        Some("the connector did not produce this table".into()),
                    ),
                })
                .chain(materialize.iter().map(|m| {
                    match report.tables.iter().find(|t| t.name == m.table) {
                        Some(t) if t.error.is_none() => outcome(
                            &m.table,
                            true,
                            Some(t.rows as i64),
                            Some(t.size_bytes as i64),
                            None,
                        ),
                        Some(t) => outcome(
                            &m.table,
                            false,
                            None,
                            None,
                            Some(format!(
                                "{} ({})",
                                t.error.clone().unwrap_or_default(),
                                if t.md5.is_empty() {
                                    "no previous version to keep"
                                } else {
                                    "the previous version is kept"
                                }
                            )),
                        ),
                        None => outcome(&m.table, false, None, None, Some("not run".into())),
                    }
                }))
                .collect::<Vec<_>>(),
            None,
        ),
        Err(e) => {
            tracing::warn!("error.type" = "sync_failed", source = %source.spec.name, error = %e, "source sync failed");
            let e = e.to_string();
            (
                names
                    .iter()
                    .chain(materialize.iter().map(|m| &m.table))
                    .map(|n| outcome(n, false, None, None, Some(e.clone())))
                    .collect(),
                Some(e),
            )
        }
    };
    let ok = outcomes.iter().filter(|o| o.status == "ok").count();
    for o in &outcomes {
        let _ = state.store.record_outcome(run, o).await;
    }
    let mut status = match (ok, outcomes.len() - ok) {
        (_, 0) => "ok",
        (0, _) => "failed",
        _ => "partial",
    };
    let mut run_error = run_error;
    if let Err(e) = state.rebuild_catalog().await {
        tracing::error!("error.type" = "catalog", error = %e, "rebuilding the catalog failed");
        status = "failed";
        run_error = Some(format!("rebuilding the catalog failed: {e}"));
    }
    let _ = state
        .store
        .finish_run(run, status, run_error.as_deref())
        .await;
}

/// Runs `source`'s connector for `tables` on a blocking thread (verified, request ∩
/// grant), from the published state (unless `!from_state`: a full refresh), with `patch`
/// merged into its config (a webhook payload); publishes the new extract version.
pub(crate) async fn run_connector(
    state: &AppState,
    source: &Source,
    tables: &[String],
    materialize: &[agnes_runtime::Materialize],
    patch: Option<(&str, serde_json::Value)>,
    from_state: bool,
) -> Result<agnes_runtime::RunReport, agnes_runtime::Error> {
    let materialize = materialize.to_vec();
    let spec = source.spec.clone();
    let extracts = state.config.extracts_dir();
    let mut config = spec.config.clone();
    if let (Some((key, value)), Some(obj)) = (patch, config.as_object_mut()) {
        obj.insert(key.to_string(), value);
    }
    let unresolved = |e: ApiError| agnes_runtime::Error::Unresolved {
        reference: spec.connector.clone(),
        reason: e.to_string(),
    };
    let located = crate::connector::locate(&spec, &state.config.data_dir).map_err(unresolved)?;
    crate::connector::require_approved(state, &spec)
        .await
        .map_err(unresolved)?;
    let mut request = RunRequest {
        source: spec.name.clone(),
        extracts_dir: extracts.clone(),
        config: config.to_string(),
        grant: spec.grant.clone(),
        limits: spec.limits.clone(),
        streams: Some(tables.to_vec()),
        state: from_state
            .then(|| agnes_runtime::extract::published_state(&extracts, &spec.name))
            .flatten(),
    };
    on_blocking_thread(state, move |state| {
        let (component, grant, limits) = crate::connector::load(&state, &spec, located)?;
        request.grant = grant;
        request.limits = limits;
        run_with(&state, &component, request, &materialize)
    })
    .await
}

/// Runs `work` on a blocking thread, so a run's CPU-bound work and blocking writes stay off
/// the server's async workers; a task that panicked is a failed run.
pub(crate) async fn on_blocking_thread(
    state: &AppState,
    work: impl FnOnce(AppState) -> Result<agnes_runtime::RunReport, agnes_runtime::Error>
    + Send
    + 'static,
) -> Result<agnes_runtime::RunReport, agnes_runtime::Error> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || work(state))
        .await
        .unwrap_or_else(|e| {
            Err(agnes_runtime::Error::Trap {
                phase: agnes_runtime::Phase::Read,
                reason: format!("the sync task failed: {e}"),
            })
        })
}

/// `Runtime::run_with` of a loaded component, from a blocking thread (its own small async
/// runtime).
pub(crate) fn run_with(
    state: &AppState,
    component: &agnes_runtime::LoadedComponent,
    request: RunRequest,
    materialize: &[agnes_runtime::Materialize],
) -> Result<agnes_runtime::RunReport, agnes_runtime::Error> {
    crate::connector::block_on(
        state
            .runtime
            .run_with(component, request, materialize, None),
    )
    .map_err(|e| agnes_runtime::Error::Io {
        action: "starting",
        path: "sync runtime".into(),
        error: e,
    })?
}

/// Every `tick`, triggers the sources that are due (never run, or last run — successful
/// or not — longer ago than their schedule). Runs until the process ends.
pub async fn scheduler(state: AppState, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    // with a shared state one process schedules: whoever holds the advisory lock
    let mut leader = None;
    loop {
        interval.tick().await;
        if let Some(pg) = state.shared() {
            leader = pg.lead(leader, crate::db::pg::SCHEDULER_LOCK).await;
            if leader.is_none() {
                continue;
            }
        }
        // the bucket is cleaned by the one scheduling process
        if let Err(e) = remove_replaced(&state).await {
            tracing::warn!(error = %e, "removing replaced versions from the bucket failed");
        }
        if let Err(e) = schedule_once(&state).await {
            tracing::warn!("error.type" = "scheduler", error = %e, "scheduler check failed");
        }
        if !state.marketplace.scheduled_sync_running() {
            let st = state.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::marketplace::sync::sync_due(&st).await {
                    tracing::warn!("error.type" = "scheduler", error = %e, "marketplace schedule check failed");
                }
            });
        }
    }
}

/// One scheduler check: triggers the enabled, idle sources whose schedule is due. Returns
/// the runs started.
pub async fn schedule_once(state: &AppState) -> ApiResult<Vec<Running>> {
    let sources = state.store.list_sources().await?;
    let tables = state.store.list_tables(None).await?;
    let last = state.store.last_attempt().await?;
    let now = chrono::Utc::now().timestamp();
    let due: Vec<String> = {
        let running = state.running.lock().unwrap_or_else(|p| p.into_inner());
        sources
            .into_iter()
            .filter(|s| s.spec.enabled && !running.contains_key(&s.spec.name))
            .filter(|s| tables.iter().any(|t| t.source == s.spec.name))
            .filter(|s| {
                let Some(Ok(every)) = s.spec.schedule.as_deref().map(parse_schedule) else {
                    return false;
                };
                // one interval after the last attempt: a failing source is retried once
                // per interval, not at every tick
                let tried = last
                    .iter()
                    .find(|(n, _)| n == &s.spec.name)
                    .map(|(_, at)| *at);
                tried.is_none_or(|at| now - at >= every.as_secs() as i64)
            })
            .map(|s| s.spec.name)
            .collect()
    };
    if due.is_empty() {
        return Ok(vec![]);
    }
    match trigger(state, "schedule".into(), Target::Only(due), false).await {
        Ok(runs) => Ok(runs),
        // a manual trigger took one between the check and now; the next tick retries
        Err(ApiError::Conflict(_)) => Ok(vec![]),
        Err(e) => Err(e),
    }
}
