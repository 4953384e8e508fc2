//! A source's connector on this server: where its component is, loading it (verified
//! before it is compiled, grant narrowed to request ∩ grant), checking a config against its
//! `spec().config-schema`, and running `discover` for an admin to pick tables from.

use std::path::{Path, PathBuf};

use agnes_runtime::{Grant, Limits, LoadedComponent};
use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::SourceSpec;

/// The connector reference of a source whose tables are SQL over other Agnes tables, run
/// by the server's `agnes-sqlbox` sandbox (no component, no config, no grant).
pub const SQL_ENGINE: &str = "agnes:sql";

/// Whether `spec` is an `agnes:sql` source.
pub fn is_sql(spec: &SourceSpec) -> bool {
    spec.connector == SQL_ENGINE
}

/// Refuses a source whose connector is an uploaded version a security reviewer has not
/// approved (pending, or revoked). Component paths (development, `allow_unsigned` or a
/// manifest and signature given with the source) and `agnes:sql` are not uploads.
pub async fn require_approved(state: &AppState, spec: &SourceSpec) -> ApiResult<()> {
    let reference = &spec.connector;
    if is_sql(spec) || Path::new(reference).is_absolute() {
        return Ok(());
    }
    let Some((name, version)) = reference.split_once('@') else {
        return Ok(()); // locate refuses it with its own message
    };
    let found = state
        .store
        .list_connectors()
        .await?
        .into_iter()
        .find(|c| c.name == name && c.version == version);
    match found {
        None => Ok(()), // locate: "no uploaded connector"
        Some(c) if c.status == "approved" => Ok(()),
        Some(c) => Err(ApiError::BadRequest(format!(
            "connector `{reference}` is {}: only approved versions can be used by a source; \
             a security reviewer approves it with `agnes admin connector approve {reference}` \
             (or on the connector's page of the admin UI) after reading its requests and its \
             diff against the previously approved version",
            if c.status == "revoked" {
                "revoked"
            } else {
                "pending review"
            }
        ))),
    }
}

/// What `name@version` changes against the newest approved version uploaded before it.
pub fn review_diff(
    all: &[crate::store::ConnectorInfo],
    name: &str,
    version: &str,
) -> ApiResult<serde_json::Value> {
    let versions: Vec<&crate::store::ConnectorInfo> =
        all.iter().filter(|c| c.name == name).collect();
    let at = versions
        .iter()
        .position(|c| c.version == version)
        .ok_or_else(|| ApiError::NotFound(format!("no uploaded connector `{name}@{version}`")))?;
    let this = versions[at];
    let before = versions[..at]
        .iter()
        .rev()
        .find(|c| c.status == "approved")
        .copied();
    let requests = |c: Option<&crate::store::ConnectorInfo>| -> Vec<String> {
        c.and_then(|c| {
            serde_json::from_value::<agnes_runtime::manifest::Requests>(c.requests.clone()).ok()
        })
        .map(|r| r.lines())
        .unwrap_or_default()
    };
    let imports = |c: Option<&crate::store::ConnectorInfo>| -> Vec<String> {
        c.and_then(|c| serde_json::from_value::<Vec<String>>(c.imports.clone()).ok())
            .unwrap_or_default()
    };
    Ok(serde_json::json!({
        "connector": format!("{name}@{version}"),
        "status": this.status,
        "from": before.map(|b| format!("{}@{}", b.name, b.version)),
        "requests": agnes_runtime::manifest::diff_lines(&requests(before), &requests(Some(this))),
        "imports": agnes_runtime::manifest::diff_lines(&imports(before), &imports(Some(this))),
    }))
}

/// The files of a source's connector.
#[derive(Debug, Clone)]
pub struct Located {
    pub component: PathBuf,
    pub manifest: Option<PathBuf>,
    pub signature: PathBuf,
}

/// Resolves `<name>@<version>` to the upload under `<data_dir>/connectors/`, or takes a
/// component path (development) with its manifest and signature.
pub fn locate(spec: &SourceSpec, data_dir: &Path) -> ApiResult<Located> {
    let path = Path::new(&spec.connector);
    if path.is_absolute() {
        return Ok(Located {
            component: path.to_path_buf(),
            manifest: spec.manifest.clone(),
            signature: spec
                .signature
                .clone()
                .unwrap_or_else(|| agnes_runtime::signature::default_path(path)),
        });
    }
    let reference = &spec.connector;
    let (name, version) = reference.split_once('@').ok_or_else(|| {
        ApiError::BadRequest(format!(
            "connector `{reference}`: use `<name>@<version>` of an upload or an absolute component path"
        ))
    })?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-+_".contains(c))
            && s != "."
            && s != ".."
    };
    let dir = data_dir.join("connectors").join(name).join(version);
    if !ok(name) || !ok(version) || !dir.join("component.wasm").is_file() {
        return Err(ApiError::BadRequest(format!(
            "no uploaded connector `{reference}`; see `agnes admin connector list`"
        )));
    }
    let component = dir.join("component.wasm");
    Ok(Located {
        signature: agnes_runtime::signature::default_path(&component),
        manifest: Some(dir.join("connector.toml")),
        component,
    })
}

/// Loads the connector for a run (blocking): verified against the server's trusted keys
/// before it is compiled, with the grant and limits narrowed to what its connector.toml
/// requests. Without trusted keys it is refused unless the server allows unsigned
/// connectors (development only; its connector.toml still narrows the grant).
pub fn load(
    state: &AppState,
    spec: &SourceSpec,
    located: Located,
) -> Result<(LoadedComponent, Grant, Limits), agnes_runtime::Error> {
    let runtime = &state.runtime;
    let Some(dir) = state.config.trusted_keys.as_deref() else {
        if !state.config.allow_unsigned_connectors {
            return Err(agnes_runtime::Error::Signature {
                reason:
                    "this server runs only signed connectors: set `trusted_keys` in its config \
                         (or `allow_unsigned_connectors = true`, for development only)"
                        .into(),
            });
        }
        let component = runtime.load_file(&located.component)?;
        let Some(path) = &located.manifest else {
            return Ok((component, spec.grant.clone(), spec.limits.clone()));
        };
        let m = agnes_runtime::manifest::ConnectorManifest::from_file(path)?;
        let (grant, limits) = m.effective(&spec.grant, &spec.limits)?;
        return Ok((component, grant, limits));
    };
    let keys = agnes_runtime::signature::TrustedKeys::from_dir(dir)?;
    let manifest = located.manifest.ok_or_else(|| agnes_runtime::Error::Signature {
        reason: format!(
            "this server only runs signed connectors; give source `{}` its `manifest` (connector.toml)",
            spec.name
        ),
    })?;
    let (component, m, _) =
        runtime.load_verified(&located.component, &manifest, &located.signature, &keys)?;
    let (grant, limits) = m.effective(&spec.grant, &spec.limits)?;
    Ok((component, grant, limits))
}

/// Runs `f` with the loaded connector on a blocking thread with its own small async
/// runtime (connector calls are async; the server's executor never blocks on them).
/// A refusal by the runtime (signature, grant, config, connector error) is a 400 that says
/// why.
async fn with_connector<T: Send + 'static>(
    state: &AppState,
    spec: &SourceSpec,
    f: impl AsyncFnOnce(&agnes_runtime::Runtime, LoadedComponent, Grant, Limits) -> ApiResult<T>
    + Send
    + 'static,
) -> ApiResult<T> {
    let located = locate(spec, &state.config.data_dir)?;
    require_approved(state, spec).await?;
    let (state, spec) = (state.clone(), spec.clone());
    tokio::task::spawn_blocking(move || {
        let (component, grant, limits) =
            load(&state, &spec, located).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        block_on(f(&state.runtime, component, grant, limits)).map_err(ApiError::internal)?
    })
    .await
    .map_err(ApiError::internal)?
}

/// Drives `fut` to completion on a fresh current-thread runtime, from a blocking task, so a
/// connector's CPU-bound work and blocking writes stay off the server's async workers.
pub(crate) fn block_on<T>(fut: impl std::future::Future<Output = T>) -> std::io::Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(fut))
}

/// Checks a source before it is stored: the connector loads (signature, request ∩ grant)
/// and the config satisfies the connector's declared schema (the error names the key).
pub async fn check(state: &AppState, spec: &SourceSpec) -> ApiResult<()> {
    if is_sql(spec) {
        return Ok(()); // nothing to load; SourceSpec::validate checked the rest
    }
    let config = spec.config.clone();
    with_connector(
        state,
        spec,
        async move |runtime, component, _grant, limits| {
            let declared = runtime
                .spec(&component, &limits)
                .await
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            agnes_runtime::jsonschema::validate(&declared.config_schema, &config, "config").map_err(
                |reason| {
                    ApiError::BadRequest(format!(
                        "the config does not fit connector {}@{}: {reason}",
                        declared.name, declared.version
                    ))
                },
            )
        },
    )
    .await
}

/// One column of a discovered table.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

/// A table the connector offers.
#[derive(Debug, Clone, Serialize)]
pub struct Discovered {
    pub name: String,
    pub description: Option<String>,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub cursor_field: Option<String>,
    /// Whether it syncs incrementally (primary key + cursor).
    pub incremental: bool,
}

/// Runs `discover` in the sandbox with the source's config and grant.
pub async fn discover(state: &AppState, spec: &SourceSpec) -> ApiResult<Vec<Discovered>> {
    if is_sql(spec) {
        return Ok(Vec::new()); // its tables are whatever the admin's SQL makes
    }
    let config = spec.config.to_string();
    let tables = with_connector(
        state,
        spec,
        async move |runtime, component, grant, limits| {
            runtime
                .discover(&component, &config, &grant, &limits)
                .await
                .map_err(|e| ApiError::BadRequest(format!("discover failed: {e}")))
        },
    )
    .await?;
    Ok(tables
        .into_iter()
        .map(|t| Discovered {
            incremental: t.incremental(),
            columns: t
                .schema
                .fields()
                .iter()
                .map(|f| Column {
                    name: f.name().clone(),
                    data_type: f.data_type().to_string(),
                    nullable: f.is_nullable(),
                })
                .collect(),
            name: t.name,
            description: t.description,
            primary_key: t.primary_key,
            cursor_field: t.cursor_field,
        })
        .collect())
}

/// What the source's connector says about itself (run in the sandbox, nothing granted).
pub async fn spec(state: &AppState, spec: &SourceSpec) -> ApiResult<agnes_runtime::ConnectorSpec> {
    with_connector(
        state,
        spec,
        async move |runtime, component, _grant, limits| {
            runtime
                .spec(&component, &limits)
                .await
                .map_err(|e| ApiError::BadRequest(format!("spec failed: {e}")))
        },
    )
    .await
}

/// Why a remote call failed, as the analyst sees it: a request the host refused is 400
/// naming the part; anything else (the source, the connector) is 502-worthy detail in a
/// 400 too, since the analyst can often fix it by narrowing the request.
fn remote_error(e: agnes_runtime::Error) -> ApiError {
    match e {
        agnes_runtime::Error::InvalidRequest { .. } => {
            ApiError::Refused("invalid_request", e.to_string())
        }
        other => ApiError::BadRequest(format!("the source could not answer: {other}")),
    }
}

/// `estimate` of `request` on `table` of the source (in the sandbox, with its grant).
pub async fn estimate(
    state: &AppState,
    spec: &SourceSpec,
    table: &str,
    request: agnes_runtime::query::QueryRequest,
) -> ApiResult<agnes_runtime::Estimate> {
    with_query(
        state,
        spec,
        table,
        request,
        async move |runtime, component, call| runtime.estimate(&component, &call).await,
    )
    .await
}

/// `query` of `request` on `table`: the result's parquet file under `out_dir`.
pub async fn query(
    state: &AppState,
    spec: &SourceSpec,
    table: &str,
    request: agnes_runtime::query::QueryRequest,
    out_dir: PathBuf,
) -> ApiResult<agnes_runtime::query::QueryReport> {
    with_query(
        state,
        spec,
        table,
        request,
        async move |runtime, component, call| runtime.query(&component, &call, &out_dir).await,
    )
    .await
}

/// Runs `f` with the source's connector and the call of `request` on `table` (the
/// source's config, request ∩ grant, limits); a failure is a [`remote_error`].
async fn with_query<T: Send + 'static>(
    state: &AppState,
    spec: &SourceSpec,
    table: &str,
    request: agnes_runtime::query::QueryRequest,
    f: impl AsyncFnOnce(
        &agnes_runtime::Runtime,
        LoadedComponent,
        agnes_runtime::query::QueryCall,
    ) -> Result<T, agnes_runtime::Error>
    + Send
    + 'static,
) -> ApiResult<T> {
    let (config, table) = (spec.config.to_string(), table.to_string());
    with_connector(
        state,
        spec,
        async move |runtime, component, grant, limits| {
            let call = agnes_runtime::query::QueryCall {
                config,
                grant,
                limits,
                table,
                request,
            };
            f(runtime, component, call).await.map_err(remote_error)
        },
    )
    .await
}

/// The columns of table `table` as the source's connector declares them, with the kind
/// of value each holds (what a filter on it may do).
pub async fn table_columns(
    state: &AppState,
    spec: &SourceSpec,
    table: &str,
) -> ApiResult<Vec<(String, agnes_query::Kind)>> {
    let (config, table) = (spec.config.to_string(), table.to_string());
    with_connector(
        state,
        spec,
        async move |runtime, component, grant, limits| {
            let tables = runtime
                .discover(&component, &config, &grant, &limits)
                .await
                .map_err(|e| ApiError::BadRequest(format!("discover failed: {e}")))?;
            let t = tables
                .into_iter()
                .find(|t| t.name == table)
                .ok_or_else(|| {
                    ApiError::NotFound(format!("the source no longer offers `{table}`"))
                })?;
            Ok(agnes_runtime::query::columns_of(&t.schema))
        },
    )
    .await
}
