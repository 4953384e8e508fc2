//! Reviewer components: the `agnes:hook@0.1.0` world. A reviewer sees one marketplace plugin
//! bundle read-only through the `bundle` interface (file list with digests, bounded reads,
//! the previously approved version for diff-aware review) and answers with a verdict and
//! findings. It gets no network, no filesystem (no preopens), no environment, and runs under
//! memory, CPU, wall-time, read and report limits.
//!
//! [`Runtime::review`] never returns an error: a reviewer that traps, spins, runs out of
//! memory or answers with a report over the caps yields [`Verdict::Flag`] with the reason in
//! [`Review::failure`] — a failed review never allows a plugin.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::error::describe;
use crate::{Error, LoadedComponent, Runtime};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        world: "reviewer",
        path: "../wit/hook",
        imports: { default: trappable },
        exports: { default: async },
    });
}

use bindings::agnes::hook::types as wit;

/// The interface a reviewer must export.
pub const REVIEW_EXPORT: &str = "agnes:hook/review@0.1.0";

/// Interfaces a reviewer may import: the hook's own and WASI's harmless ones (the host gives
/// no preopens, no environment, no arguments and captures stdio). Anything else — sockets,
/// HTTP, the connector host — is refused at upload and at load.
const ALLOWED_IMPORTS: &[&str] = &[
    "agnes:hook/",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
];

/// A reviewer's decision; ordered so that the worst is the greatest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Flag,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Flag => "flag",
            Verdict::Deny => "deny",
        }
    }
    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "allow" => Some(Verdict::Allow),
            "flag" => Some(Verdict::Flag),
            "deny" => Some(Verdict::Deny),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// Lines `start..=end` of one bundle file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub path: String,
    pub start: u32,
    pub end: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub severity: Severity,
    pub title: String,
    pub detail: String,
    pub spans: Vec<Span>,
}

/// The outcome of one review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    /// Why the review failed (a trap, a limit, a report over the caps); the verdict is then
    /// `flag`, whatever the reviewer said.
    pub failure: Option<String>,
    /// Wall time of the review, in milliseconds.
    pub millis: u64,
}

/// One file of a bundle, as the host stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFile {
    /// Relative, `/`-separated, no `.`/`..` components.
    pub path: String,
    pub executable: bool,
    pub size: u64,
    /// Lower-case hex sha256 of the contents.
    pub sha256: String,
}

/// One plugin bundle on disk: `root/<path>` for every file.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub root: PathBuf,
    /// Sorted by path.
    pub files: Vec<BundleFile>,
}

/// The plugin a review is about.
#[derive(Debug, Clone, Default)]
pub struct PluginInfo {
    pub marketplace: String,
    pub name: String,
    pub version: Option<String>,
}

/// Bounds on one review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewLimits {
    /// Linear memory of the reviewer, in MiB.
    pub memory_mb: u64,
    /// Guest CPU time, in seconds (epoch ticks while guest code runs).
    pub cpu_secs: u64,
    /// Wall-clock time of the whole review, in seconds.
    pub timeout_secs: u64,
    /// Bytes the reviewer may read from both bundles together, in MiB.
    pub max_read_mb: u64,
    /// Findings in one report.
    pub max_findings: usize,
    /// Characters of one finding's rule, title or detail, and of a span's path.
    pub max_text: usize,
    /// Spans of one finding.
    pub max_spans: usize,
}

impl Default for ReviewLimits {
    fn default() -> Self {
        ReviewLimits {
            memory_mb: 256,
            cpu_secs: 10,
            timeout_secs: 30,
            max_read_mb: 256,
            max_findings: 500,
            max_text: 4096,
            max_spans: 50,
        }
    }
}

/// The most one `read` call returns.
const MAX_READ_CALL: u32 = 1 << 20;

/// The store's data while a reviewer runs.
pub(crate) struct HookState {
    wasi: WasiCtx,
    resources: ResourceTable,
    store_limits: StoreLimits,
    info: PluginInfo,
    current: Arc<Bundle>,
    previous: Option<Arc<Bundle>>,
    read_left: u64,
    cpu_ticks: u64,
    cpu_budget: u64,
}

impl WasiView for HookState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.resources,
        }
    }
}

impl wit::Host for HookState {}

impl bindings::agnes::hook::bundle::Host for HookState {
    fn info(&mut self) -> wasmtime::Result<wit::PluginInfo> {
        Ok(wit::PluginInfo {
            marketplace: self.info.marketplace.clone(),
            name: self.info.name.clone(),
            version: self.info.version.clone(),
            has_previous: self.previous.is_some(),
        })
    }

    fn files(&mut self, which: wit::Version) -> wasmtime::Result<Vec<wit::FileEntry>> {
        let Some(bundle) = self.bundle(which) else {
            return Ok(Vec::new());
        };
        Ok(bundle
            .files
            .iter()
            .map(|f| wit::FileEntry {
                path: f.path.clone(),
                kind: if f.executable {
                    wit::FileKind::Executable
                } else {
                    wit::FileKind::File
                },
                size: f.size,
                sha256: f.sha256.clone(),
            })
            .collect())
    }

    fn read(
        &mut self,
        which: wit::Version,
        path: String,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let Some(bundle) = self.bundle(which) else {
            return Ok(Err("there is no previous version".into()));
        };
        let Some(file) = bundle.files.iter().find(|f| f.path == path) else {
            return Ok(Err(format!("`{path}` is not in the bundle")));
        };
        let want = u64::from(len.min(MAX_READ_CALL)).min(file.size.saturating_sub(offset));
        if want > self.read_left {
            return Ok(Err("the review's read budget (max_read_mb) is spent".into()));
        }
        self.read_left -= want;
        let full = bundle.root.join(&file.path);
        let read = (|| -> std::io::Result<Vec<u8>> {
            let mut f = std::fs::File::open(&full)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::with_capacity(want as usize);
            f.take(want).read_to_end(&mut buf)?;
            Ok(buf)
        })();
        Ok(read.map_err(|e| format!("reading `{path}`: {e}")))
    }
}

impl HookState {
    fn bundle(&self, which: wit::Version) -> Option<Arc<Bundle>> {
        match which {
            wit::Version::Current => Some(self.current.clone()),
            wit::Version::Previous => self.previous.clone(),
        }
    }
}

/// A linker for reviewers: WASI (with an empty context) and `agnes:hook/bundle`.
pub(crate) fn linker(
    engine: &wasmtime::Engine,
) -> wasmtime::Result<wasmtime::component::Linker<HookState>> {
    let mut linker = wasmtime::component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    bindings::Reviewer::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

impl Runtime {
    /// Checks that `component` is a reviewer this host will run: it exports
    /// `agnes:hook/review@0.1.0` and imports nothing outside the hook's own interface and
    /// WASI's cli, io, clocks, random and filesystem (which get an empty context). A
    /// reviewer importing sockets or HTTP is refused.
    pub fn check_reviewer(&self, component: &LoadedComponent) -> Result<(), Error> {
        let surface = self.surface(component);
        if !surface
            .exports
            .iter()
            .any(|e| e.starts_with(&format!("{REVIEW_EXPORT}#")))
        {
            return Err(Error::Policy {
                reason: format!(
                    "component {} is not a reviewer: it does not export `{REVIEW_EXPORT}`",
                    component.digest
                ),
            });
        }
        let mut refused: Vec<&str> = surface
            .imports
            .iter()
            .map(|i| i.split('#').next().unwrap_or(i))
            .filter(|i| !ALLOWED_IMPORTS.iter().any(|p| i.starts_with(p)))
            .collect();
        refused.dedup();
        if !refused.is_empty() {
            return Err(Error::Policy {
                reason: format!(
                    "a reviewer may not import {}: reviewers get no network and no host \
                     interfaces beyond agnes:hook/bundle and WASI cli, io, clocks, random",
                    refused.join(", ")
                ),
            });
        }
        Ok(())
    }

    /// Runs one review. Never fails: every failure is a `flag` verdict with the reason.
    pub async fn review(
        &self,
        component: &LoadedComponent,
        info: PluginInfo,
        current: Arc<Bundle>,
        previous: Option<Arc<Bundle>>,
        limits: &ReviewLimits,
    ) -> Review {
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_secs(limits.timeout_secs),
            self.review_inner(component, info, current, previous, limits),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the review ran past timeout_secs = {}",
                limits.timeout_secs
            ))
        })
        .and_then(|report| validate(report, limits));
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match outcome {
            Ok((verdict, findings)) => Review {
                verdict,
                findings,
                failure: None,
                millis,
            },
            Err(failure) => Review {
                verdict: Verdict::Flag,
                findings: Vec::new(),
                failure: Some(crate::names::sanitized(&failure, 4096)),
                millis,
            },
        }
    }

    async fn review_inner(
        &self,
        component: &LoadedComponent,
        info: PluginInfo,
        current: Arc<Bundle>,
        previous: Option<Arc<Bundle>>,
        limits: &ReviewLimits,
    ) -> Result<wit::Report, String> {
        self.check_reviewer(component).map_err(|e| e.to_string())?;
        let pre = match component.hook_pre.get() {
            Some(pre) => pre,
            None => {
                let pre = self
                    .inner
                    .hook_linker
                    .instantiate_pre(&component.component)
                    .and_then(bindings::ReviewerPre::new)
                    .map_err(|e| format!("linking the reviewer: {}", describe(&e)))?;
                let _ = component.hook_pre.set(pre);
                component.hook_pre.get().expect("set above")
            }
        };
        let memory =
            usize::try_from(limits.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        let state = HookState {
            wasi: WasiCtxBuilder::new()
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build(),
            resources: ResourceTable::new(),
            store_limits: StoreLimitsBuilder::new()
                .memory_size(memory)
                .instances(32)
                .tables(64)
                .table_elements(1 << 20)
                .memories(8)
                .trap_on_grow_failure(true)
                .build(),
            info,
            current,
            previous,
            read_left: limits.max_read_mb.saturating_mul(1 << 20),
            cpu_ticks: 0,
            cpu_budget: limits
                .cpu_secs
                .saturating_mul(1000)
                .div_ceil(crate::engine::EPOCH_TICK.as_millis() as u64),
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.store_limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.cpu_ticks += 1;
            if state.cpu_ticks > state.cpu_budget {
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            Ok(wasmtime::UpdateDeadline::Yield(1))
        });
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| format!("instantiating the reviewer: {}", trap_reason(&e)))?;
        let report = instance
            .agnes_hook_review()
            .call_review(&mut store)
            .await
            .map_err(|e| {
                if store.data().cpu_ticks > store.data().cpu_budget {
                    format!("the reviewer ran past cpu_secs = {}", limits.cpu_secs)
                } else {
                    format!("the reviewer trapped: {}", trap_reason(&e))
                }
            })?;
        Ok(report)
    }
}

fn trap_reason(e: &wasmtime::Error) -> String {
    crate::names::sanitized(&e.root_cause().to_string(), 1024)
}

/// Checks a report against the caps and converts it; anything over them fails the review.
fn validate(report: wit::Report, limits: &ReviewLimits) -> Result<(Verdict, Vec<Finding>), String> {
    if report.findings.len() > limits.max_findings {
        return Err(format!(
            "the report has {} findings; at most max_findings = {} are accepted",
            report.findings.len(),
            limits.max_findings
        ));
    }
    let text = |what: &str, s: String| -> Result<String, String> {
        if s.chars().count() > limits.max_text {
            return Err(format!(
                "a finding's {what} is longer than max_text = {} characters",
                limits.max_text
            ));
        }
        Ok(crate::names::sanitized(&s, limits.max_text))
    };
    let mut findings = Vec::with_capacity(report.findings.len());
    for f in report.findings {
        if f.spans.len() > limits.max_spans {
            return Err(format!(
                "a finding has {} spans; at most max_spans = {} are accepted",
                f.spans.len(),
                limits.max_spans
            ));
        }
        let rule = text("rule", f.rule)?;
        if rule.is_empty() {
            return Err("a finding has an empty rule id".into());
        }
        findings.push(Finding {
            rule,
            severity: match f.severity {
                wit::Severity::Info => Severity::Info,
                wit::Severity::Low => Severity::Low,
                wit::Severity::Medium => Severity::Medium,
                wit::Severity::High => Severity::High,
                wit::Severity::Critical => Severity::Critical,
            },
            title: text("title", f.title)?,
            detail: text("detail", f.detail)?,
            spans: f
                .spans
                .into_iter()
                .map(|s| {
                    Ok(Span {
                        path: text("span path", s.path)?,
                        start: s.start,
                        end: s.end,
                    })
                })
                .collect::<Result<_, String>>()?,
        });
    }
    let verdict = match report.verdict {
        wit::Verdict::Allow => Verdict::Allow,
        wit::Verdict::Flag => Verdict::Flag,
        wit::Verdict::Deny => Verdict::Deny,
    };
    Ok((verdict, findings))
}

/// The sha256 (lower-case hex) and size of `bytes`, as a bundle file records them.
pub fn file_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
