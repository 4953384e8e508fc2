//! Reviews: every enabled reviewer component reviews every new bundle once (verdicts are
//! stored per bundle digest and reviewer digest, so a new reviewer version reviews again);
//! the combined verdict is the worst one; `allow` approves the bundle, anything else holds
//! it for an admin while the previously approved bundle keeps being served.
//!
//! "No reviewer configured" is its own state (`unreviewed`), not a failed review: such a
//! bundle is held for an admin like a flagged one, and says why.

use std::path::PathBuf;
use std::sync::Arc;

use agnes_runtime::LoadedComponent;
use agnes_runtime::hook::{PluginInfo, Verdict};

use super::{Plugin, PluginReview, ReviewerInfo, bundle, status};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Where an uploaded reviewer's files live.
pub fn reviewer_dir(state: &AppState, name: &str, version: &str) -> PathBuf {
    state
        .config
        .data_dir
        .join("reviewers")
        .join(name)
        .join(version)
}

/// The enabled reviewers, compiled, and every stored review: read once per sync (or
/// re-review), extended as reviews run.
pub struct Reviewers {
    pub components: Vec<(ReviewerInfo, LoadedComponent)>,
    stored: Vec<PluginReview>,
}

/// The enabled reviewers (verified against the trusted keys and compiled) and the stored
/// reviews.
pub async fn reviewers(state: &AppState) -> ApiResult<Reviewers> {
    Ok(Reviewers {
        components: components(state).await?,
        stored: state.store.list_reviews().await?,
    })
}

/// The enabled reviewers, verified against the trusted keys and compiled.
async fn components(state: &AppState) -> ApiResult<Vec<(ReviewerInfo, LoadedComponent)>> {
    let enabled: Vec<ReviewerInfo> = state
        .store
        .list_reviewers()
        .await?
        .into_iter()
        .filter(|r| r.enabled)
        .collect();
    if enabled.is_empty() {
        return Ok(Vec::new());
    }
    let trusted_dir = state.config.trusted_keys.clone().ok_or_else(|| {
        ApiError::BadRequest("reviewers are configured but the server has no `trusted_keys`".into())
    })?;
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let trusted = agnes_runtime::signature::TrustedKeys::from_dir(&trusted_dir)
            .map_err(ApiError::internal)?;
        let mut out = Vec::new();
        for r in enabled {
            let dir = reviewer_dir(&st, &r.name, &r.version);
            let component = dir.join("component.wasm");
            let (loaded, _, _) = st
                .runtime
                .load_verified(
                    &component,
                    &dir.join("reviewer.toml"),
                    &agnes_runtime::signature::default_path(&component),
                    &trusted,
                )
                .map_err(|e| {
                    ApiError::Internal(format!("reviewer {}@{}: {e}", r.name, r.version))
                })?;
            st.runtime
                .check_reviewer(&loaded)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            out.push((r, loaded));
        }
        Ok(out)
    })
    .await
    .map_err(ApiError::internal)?
}

/// The reviews of `bundle` by the given reviewers, running the ones missing.
pub async fn reviews_of(
    state: &AppState,
    plugin: &Plugin,
    digest: &str,
    reviewers: &mut Reviewers,
) -> ApiResult<Vec<PluginReview>> {
    let mut out = Vec::new();
    let mut current: Option<Arc<agnes_runtime::hook::Bundle>> = None;
    for (info, component) in &reviewers.components {
        if let Some(r) = reviewers
            .stored
            .iter()
            .find(|r| r.bundle == digest && r.reviewer_digest == info.digest)
        {
            out.push(r.clone());
            continue;
        }
        let current = match &current {
            Some(b) => b.clone(),
            None => {
                let b = Arc::new(
                    bundle::open(&state.config.data_dir, digest).map_err(ApiError::internal)?,
                );
                current = Some(b.clone());
                b
            }
        };
        let previous = match plugin.approved.as_deref() {
            Some(a) if a != digest => bundle::open(&state.config.data_dir, a).ok().map(Arc::new),
            _ => None,
        };
        let review = state
            .runtime
            .review(
                component,
                PluginInfo {
                    marketplace: plugin.marketplace.clone(),
                    name: plugin.name.clone(),
                    version: plugin.version.clone(),
                },
                current,
                previous,
                &state.config.marketplace.review_limits,
            )
            .await;
        if let Some(failure) = &review.failure {
            tracing::warn!(plugin = %plugin.id(), reviewer = %info.name, %failure, "a review failed: the plugin is flagged");
        }
        let record = PluginReview {
            bundle: digest.to_string(),
            reviewer: format!("{}@{}", info.name, info.version),
            reviewer_digest: info.digest.clone(),
            verdict: review.verdict.as_str().into(),
            findings: review.findings,
            failure: review.failure,
            millis: review.millis,
            reviewed_at: crate::db::now(),
        };
        state.store.put_review(&record).await?;
        reviewers.stored.push(record.clone());
        out.push(record);
    }
    Ok(out)
}

/// Reviews the plugin's newest bundle (what is missing) and sets its status: kept when an
/// admin already decided on this bundle; otherwise `approved` on a combined `allow`,
/// `denied` on `deny`, `pending` on `flag` or when no reviewer is configured.
pub async fn settle(
    state: &AppState,
    plugin: &mut Plugin,
    reviewers: &mut Reviewers,
) -> ApiResult<()> {
    let Some(digest) = plugin.bundle.clone() else {
        return Ok(());
    };
    if plugin.status == status::REFUSED {
        return Ok(());
    }
    let reviews = reviews_of(state, plugin, &digest, reviewers).await?;
    let combined = reviews
        .iter()
        .filter_map(|r| Verdict::parse(&r.verdict))
        .max();
    plugin.verdict = Some(combined.map_or("unreviewed", Verdict::as_str).to_string());
    let decided_by_admin = plugin.decided_by.as_deref().is_some_and(|b| b != REVIEW);
    if plugin.approved.as_deref() == Some(&digest) {
        // this very bundle was approved before (by an admin or a review), e.g. upstream
        // went back to it after a held update
        plugin.status = status::APPROVED.into();
        plugin.reason = None;
        return Ok(());
    }
    if plugin.status == status::REJECTED && decided_by_admin {
        return Ok(()); // an admin refused this very bundle
    }
    let failed = reviews.iter().filter(|r| r.failure.is_some()).count();
    match combined {
        Some(Verdict::Allow) => {
            plugin.status = status::APPROVED.into();
            plugin.approved = Some(digest);
            plugin.approved_version = plugin.version.clone();
            plugin.decided_at = Some(crate::db::now());
            plugin.decided_by = Some(REVIEW.into());
            plugin.reason = None;
        }
        Some(Verdict::Deny) => {
            plugin.status = status::DENIED.into();
            plugin.reason = Some(
                "a reviewer denied it; an admin may approve it after reading the findings".into(),
            );
        }
        Some(Verdict::Flag) => {
            plugin.status = status::PENDING.into();
            plugin.reason = Some(if failed > 0 {
                format!("{failed} review(s) failed (a failed review is a flag); held for an admin")
            } else {
                "flagged by a reviewer; held for an admin".into()
            });
        }
        None => {
            plugin.status = status::PENDING.into();
            plugin.reason =
                Some("no reviewer is configured: every new version waits for an admin".into());
        }
    }
    Ok(())
}

/// Who `decided_by` names when the reviewers' `allow` approved a bundle.
pub const REVIEW: &str = "review";

/// Settles every plugin again (after a reviewer upload): new reviewers review what they
/// have not seen yet.
pub async fn settle_all(state: &AppState) -> ApiResult<usize> {
    let mut reviewers = reviewers(state).await?;
    let mut n = 0;
    for mut p in state.store.list_plugins().await? {
        if p.bundle.is_none() || p.status == status::REFUSED {
            continue;
        }
        let before = p.clone();
        settle(state, &mut p, &mut reviewers).await?;
        if p != before {
            state.store.put_plugin(&p).await?;
        }
        n += 1;
    }
    Ok(n)
}
