//! The connector worlds the host serves side by side. A component is linked as the world
//! whose `source` interface it exports; [`Instance`] gives the run one way to call either,
//! converting 0.2.0's types to the host's and answering 0.1.0's missing calls with
//! [`Error::Unsupported`](crate::Error::Unsupported)-worthy errors instead of traps.

use wasmtime::Store;
use wasmtime::component::Component;

use crate::bindings::{v1, v2};
use crate::host::RunState;

/// A connector world version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    /// `agnes:connector@0.1.0`: spec, check, discover, read.
    V0_1,
    /// `agnes:connector@0.2.0`: plus estimate, query, capabilities, databases.
    V0_2,
}

impl World {
    /// The world a component exports, from its type; `None` when it exports neither
    /// `source` interface.
    pub(crate) fn of(engine: &wasmtime::Engine, component: &Component) -> Option<World> {
        let ty = component.component_type();
        let mut found = None;
        for (name, _) in ty.exports(engine) {
            if name == crate::bindings::V2_SOURCE {
                return Some(World::V0_2);
            }
            if name == crate::bindings::V1_SOURCE {
                found = Some(World::V0_1);
            }
        }
        found
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            World::V0_1 => "agnes:connector@0.1.0",
            World::V0_2 => "agnes:connector@0.2.0",
        })
    }
}

/// Which calls a connector answers (0.1.0 components: `read` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Capabilities {
    pub read: bool,
    pub query: bool,
    pub estimate: bool,
}

impl Capabilities {
    /// `read, query, estimate` (the supported ones).
    pub fn names(&self) -> Vec<&'static str> {
        [
            ("read", self.read),
            ("query", self.query),
            ("estimate", self.estimate),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| n)
        .collect()
    }
}

/// A linked component, ready to instantiate.
pub(crate) enum Pre {
    V1(v1::ConnectorPre<RunState>),
    V2(v2::ConnectorPre<RunState>),
}

/// An instantiated connector of either world.
pub(crate) enum Instance {
    V1(v1::Connector),
    V2(v2::Connector),
}

/// A connector's error, whichever world it came from: its kind and message.
pub(crate) struct GuestError {
    pub kind: &'static str,
    pub message: String,
}

type Call<T> = wasmtime::Result<Result<T, GuestError>>;

fn e1(e: v1::agnes::connector::types::ConnectorError) -> GuestError {
    use v1::agnes::connector::types::ConnectorError as E;
    let (kind, message) = match e {
        E::Config(m) => ("config", m),
        E::Source(m) => ("source", m),
        E::Io(m) => ("io", m),
        E::AccessDenied(m) => ("access denied", m),
        E::LimitExceeded(m) => ("limit exceeded", m),
        E::Internal(m) => ("internal", m),
    };
    GuestError { kind, message }
}

fn e2(e: v2::agnes::connector::types::ConnectorError) -> GuestError {
    use v2::agnes::connector::types::ConnectorError as E;
    let (kind, message) = match e {
        E::Config(m) => ("config", m),
        E::Source(m) => ("source", m),
        E::Io(m) => ("io", m),
        E::AccessDenied(m) => ("access denied", m),
        E::LimitExceeded(m) => ("limit exceeded", m),
        E::Internal(m) => ("internal", m),
        E::Unsupported(m) => ("unsupported", m),
    };
    GuestError { kind, message }
}

/// `spec`'s answer, world-independent.
pub(crate) struct RawSpec {
    pub name: String,
    pub version: String,
    pub config_schema: String,
    pub streams: Vec<(String, Option<String>)>,
    pub capabilities: Capabilities,
}

/// A `discover`ed table, world-independent.
pub(crate) type TableInfo = v1::agnes::connector::types::TableInfo;

/// `estimate`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Estimate {
    pub rows: Option<u64>,
    pub scan_bytes: Option<u64>,
    pub result_bytes: Option<u64>,
    pub exact: bool,
}

/// A request as the 0.2.0 world carries it.
pub(crate) fn wire_request(
    table: &str,
    request: &crate::query::QueryRequest,
) -> v2::agnes::connector::types::QueryRequest {
    use v2::agnes::connector::types::{OrderKey, QueryRequest};
    match request {
        crate::query::QueryRequest::Structured(r) => QueryRequest {
            table: table.to_string(),
            columns: r.columns.clone(),
            filter: r.filter.as_ref().map(agnes_query::Expr::to_json),
            order_by: r
                .order_by
                .iter()
                .map(|k| OrderKey {
                    column: k.column.clone(),
                    descending: k.descending,
                })
                .collect(),
            limit: r.limit,
            sql: None,
        },
        crate::query::QueryRequest::Sql(sql) => QueryRequest {
            table: table.to_string(),
            columns: Vec::new(),
            filter: None,
            order_by: Vec::new(),
            limit: None,
            sql: Some(sql.clone()),
        },
    }
}

impl Pre {
    pub(crate) fn new(
        engine: &wasmtime::Engine,
        linker: &wasmtime::component::Linker<RunState>,
        component: &Component,
    ) -> wasmtime::Result<Pre> {
        let pre = linker.instantiate_pre(component)?;
        match World::of(engine, component) {
            Some(World::V0_2) => Ok(Pre::V2(v2::ConnectorPre::new(pre)?)),
            // a component exporting neither fails here with the 0.1.0 world's message
            _ => Ok(Pre::V1(v1::ConnectorPre::new(pre)?)),
        }
    }

    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<RunState>,
    ) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V1(p) => Instance::V1(p.instantiate_async(store).await?),
            Pre::V2(p) => Instance::V2(p.instantiate_async(store).await?),
        })
    }
}

impl Instance {
    pub(crate) fn world(&self) -> World {
        match self {
            Instance::V1(_) => World::V0_1,
            Instance::V2(_) => World::V0_2,
        }
    }

    pub(crate) async fn spec(&self, store: &mut Store<RunState>) -> wasmtime::Result<RawSpec> {
        Ok(match self {
            Instance::V1(i) => {
                let s = i.agnes_connector_source().call_spec(store).await?;
                RawSpec {
                    name: s.name,
                    version: s.version,
                    config_schema: s.config_schema,
                    streams: s
                        .streams
                        .into_iter()
                        .map(|s| (s.name, s.description))
                        .collect(),
                    capabilities: Capabilities {
                        read: true,
                        query: false,
                        estimate: false,
                    },
                }
            }
            Instance::V2(i) => {
                use v2::agnes::connector::types::Capabilities as C;
                let s = i.agnes_connector_source().call_spec(store).await?;
                RawSpec {
                    name: s.name,
                    version: s.version,
                    config_schema: s.config_schema,
                    streams: s
                        .streams
                        .into_iter()
                        .map(|s| (s.name, s.description))
                        .collect(),
                    capabilities: Capabilities {
                        read: s.capabilities.contains(C::READ),
                        query: s.capabilities.contains(C::QUERY),
                        estimate: s.capabilities.contains(C::ESTIMATE),
                    },
                }
            }
        })
    }

    pub(crate) async fn discover(
        &self,
        store: &mut Store<RunState>,
        config: &str,
    ) -> Call<Vec<TableInfo>> {
        Ok(match self {
            Instance::V1(i) => i
                .agnes_connector_source()
                .call_discover(store, config)
                .await?
                .map_err(e1),
            Instance::V2(i) => i
                .agnes_connector_source()
                .call_discover(store, config)
                .await?
                .map(|tables| {
                    tables
                        .into_iter()
                        .map(|t| TableInfo {
                            name: t.name,
                            description: t.description,
                            arrow_schema: t.arrow_schema,
                            primary_key: t.primary_key,
                            cursor_field: t.cursor_field,
                        })
                        .collect()
                })
                .map_err(e2),
        })
    }

    pub(crate) async fn read(
        &self,
        store: &mut Store<RunState>,
        config: &str,
        streams: &[String],
        state: Option<&str>,
    ) -> Call<Option<String>> {
        Ok(match self {
            Instance::V1(i) => i
                .agnes_connector_source()
                .call_read(store, config, streams, state)
                .await?
                .map_err(e1),
            Instance::V2(i) => i
                .agnes_connector_source()
                .call_read(store, config, streams, state)
                .await?
                .map_err(e2),
        })
    }

    /// `None` for a 0.1.0 component (no such call).
    pub(crate) async fn estimate(
        &self,
        store: &mut Store<RunState>,
        config: &str,
        request: &v2::agnes::connector::types::QueryRequest,
    ) -> Option<Call<Estimate>> {
        let Instance::V2(i) = self else { return None };
        let r = i
            .agnes_connector_source()
            .call_estimate(store, config, request)
            .await;
        Some(r.map(|r| {
            r.map(|e| Estimate {
                rows: e.rows,
                scan_bytes: e.scan_bytes,
                result_bytes: e.result_bytes,
                exact: e.exact,
            })
            .map_err(e2)
        }))
    }

    /// `None` for a 0.1.0 component (no such call).
    pub(crate) async fn query(
        &self,
        store: &mut Store<RunState>,
        config: &str,
        request: &v2::agnes::connector::types::QueryRequest,
    ) -> Option<Call<u64>> {
        let Instance::V2(i) = self else { return None };
        let r = i
            .agnes_connector_source()
            .call_query(store, config, request)
            .await;
        Some(r.map(|r| r.map(|s| s.rows).map_err(e2)))
    }
}
