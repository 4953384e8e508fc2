//! Sync: runs the registered connectors through the runtime, records per-table outcomes,
//! and rebuilds the catalog. One sync at a time (a second trigger gets 409). The scheduler
//! triggers sources whose tables are due.

use std::collections::BTreeMap;
use std::time::Duration;

use agnes_runtime::RunRequest;
use serde::Serialize;

use crate::db::history::{self, TableOutcome};
use crate::db::registry::{self, RegistryEntry, parse_schedule};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The sync in progress.
#[derive(Debug, Clone, Serialize)]
pub struct Running {
    pub id: i64,
    pub trigger: String,
    pub started_at: String,
    pub sources: Vec<String>,
}

/// Starts a sync of `sources` (all registered ones when `None`) in the background and
/// returns its id. 409 while another sync runs.
/// With `full_refresh`, connectors start without their committed state: incremental
/// tables are read in full and replace their files (rows deleted at the source go).
pub async fn trigger(
    state: &AppState,
    trigger: String,
    sources: Option<Vec<String>>,
    full_refresh: bool,
) -> ApiResult<i64> {
    let entries = state.db.call(registry::list).await?;
    let mut plan: BTreeMap<String, Vec<RegistryEntry>> = BTreeMap::new();
    for e in entries {
        plan.entry(e.table.source.clone()).or_default().push(e);
    }
    if let Some(only) = &sources {
        for s in only {
            if !plan.contains_key(s) {
                return Err(ApiError::NotFound(format!(
                    "no registered table has source `{s}`"
                )));
            }
        }
        plan.retain(|s, _| only.contains(s));
    }
    if plan.is_empty() {
        return Err(ApiError::BadRequest(
            "nothing to sync: register a table first (POST /api/admin/register-table)".into(),
        ));
    }
    let id = {
        let mut running = state.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = running.as_ref() {
            return Err(ApiError::Conflict(format!(
                "sync {} is running (started {}); wait for it",
                r.id, r.started_at
            )));
        }
        let t = trigger.clone();
        let id = state.db.blocking(move |c| history::start(c, &t))?;
        *running = Some(Running {
            id,
            trigger,
            started_at: crate::db::now(),
            sources: plan.keys().cloned().collect(),
        });
        id
    };
    let state = state.clone();
    tokio::spawn(async move {
        let status = run(&state, id, plan, full_refresh).await;
        let _ = state.db.call(move |c| history::finish(c, id, status)).await;
        *state.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
    });
    Ok(id)
}

async fn run(
    state: &AppState,
    id: i64,
    plan: BTreeMap<String, Vec<RegistryEntry>>,
    full_refresh: bool,
) -> &'static str {
    let (mut ok, mut failed) = (0, 0);
    for (source, entries) in plan {
        let outcomes = run_source(state, &source, &entries, full_refresh).await;
        for o in outcomes {
            if o.status == "ok" {
                ok += 1
            } else {
                failed += 1
            }
            let _ = state.db.call(move |c| history::record(c, id, &o)).await;
        }
    }
    let rebuilt = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || state.rebuild_catalog())
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
    };
    if let Err(e) = rebuilt {
        tracing::error!("error.type" = "catalog", error = %e, "rebuilding the catalog failed");
        return "failed";
    }
    match (ok, failed) {
        (_, 0) => "ok",
        (0, _) => "failed",
        _ => "partial",
    }
}

/// Runs one source's connector on a blocking thread (verified, request ∩ grant), from the
/// published state (unless `!from_state`: a full refresh), with `patch` merged into its
/// config (a webhook payload); publishes the new extract version.
pub(crate) async fn run_connector(
    state: &AppState,
    source: &str,
    entries: &[RegistryEntry],
    patch: Option<(&str, serde_json::Value)>,
    from_state: bool,
) -> Result<Result<agnes_runtime::RunReport, agnes_runtime::Error>, tokio::task::JoinError> {
    let first = &entries[0].table;
    let names: Vec<String> = entries.iter().map(|e| e.table.name.clone()).collect();
    let extracts = state.config.extracts_dir();
    let mut config = first.config.clone();
    if let (Some((key, value)), Some(obj)) = (patch, config.as_object_mut()) {
        obj.insert(key.to_string(), value);
    }
    let mut request = RunRequest {
        source: source.to_string(),
        extracts_dir: extracts.clone(),
        config: config.to_string(),
        grant: first.grant.clone(),
        limits: first.limits.clone(),
        streams: Some(names),
        state: from_state
            .then(|| agnes_runtime::extract::published_state(&extracts, source))
            .flatten(),
    };
    let runtime = state.runtime.clone();
    let registration = first.clone();
    let trusted = state.config.trusted_keys.clone();
    let allow_unsigned = state.config.allow_unsigned_connectors;
    tokio::task::spawn_blocking(move || {
        let (component, grant, limits) =
            registration.load(&runtime, trusted.as_deref(), allow_unsigned)?;
        request.grant = grant;
        request.limits = limits;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| agnes_runtime::Error::Io {
                action: "starting",
                path: "sync runtime".into(),
                error: e,
            })?;
        rt.block_on(runtime.run(&component, request, None))
    })
    .await
}

/// Runs one source's connector; one outcome per registered table.
async fn run_source(
    state: &AppState,
    source: &str,
    entries: &[RegistryEntry],
    full_refresh: bool,
) -> Vec<TableOutcome> {
    let names: Vec<String> = entries.iter().map(|e| e.table.name.clone()).collect();
    let result = run_connector(state, source, entries, None, !full_refresh).await;
    let finished_at = crate::db::now();
    let outcome = |table: &str, status: &str, rows, size, error| TableOutcome {
        source: source.to_string(),
        table: table.to_string(),
        status: status.to_string(),
        rows,
        size_bytes: size,
        error,
        finished_at: finished_at.clone(),
    };
    match result {
        Ok(Ok(report)) => names
            .iter()
            .map(|n| match report.tables.iter().find(|t| &t.name == n) {
                Some(t) => outcome(
                    n,
                    "ok",
                    Some(t.rows as i64),
                    Some(t.size_bytes as i64),
                    None,
                ),
                None => outcome(
                    n,
                    "failed",
                    None,
                    None,
                    Some("the connector did not produce this table".into()),
                ),
            })
            .collect(),
        Ok(Err(e)) => {
            tracing::warn!("error.type" = "sync_failed", source = %source, error = %e, "source sync failed");
            names
                .iter()
                .map(|n| outcome(n, "failed", None, None, Some(e.to_string())))
                .collect()
        }
        Err(e) => names
            .iter()
            .map(|n| {
                outcome(
                    n,
                    "failed",
                    None,
                    None,
                    Some(format!("sync task failed: {e}")),
                )
            })
            .collect(),
    }
}

/// Every `tick`, triggers the sources that have a due table (never synced, or last synced
/// longer ago than its schedule). Runs until the process ends.
pub async fn scheduler(state: AppState, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    loop {
        interval.tick().await;
        if let Err(e) = schedule_once(&state).await {
            tracing::warn!("error.type" = "scheduler", error = %e, "scheduler check failed");
        }
    }
}

/// One scheduler check: triggers the sources with a due table. Returns the sync id, if any.
pub async fn schedule_once(state: &AppState) -> ApiResult<Option<i64>> {
    if state
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_some()
    {
        return Ok(None);
    }
    let (entries, last) = state
        .db
        .call(|c| Ok((registry::list(c)?, history::last_success(c)?)))
        .await?;
    let now = chrono::Utc::now().timestamp();
    let mut due: Vec<String> = Vec::new();
    for e in entries {
        let Some(schedule) = &e.table.schedule else {
            continue;
        };
        let Ok(every) = parse_schedule(schedule) else {
            continue;
        };
        let last_ok = last
            .iter()
            .find(|(t, _)| t == &e.table.name)
            .map(|(_, at)| *at);
        if last_ok.is_none_or(|at| now - at >= every.as_secs() as i64)
            && !due.contains(&e.table.source)
        {
            due.push(e.table.source.clone());
        }
    }
    if due.is_empty() {
        return Ok(None);
    }
    match trigger(state, "schedule".into(), Some(due), false).await {
        Ok(id) => Ok(Some(id)),
        Err(ApiError::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
