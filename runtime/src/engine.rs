//! The shared wasmtime engine: one per process, with epoch interruption driven by a
//! ticker thread, and an on-disk cache of compiled components.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use crate::Error;
use crate::error::describe;
use crate::host::RunState;

/// How often the epoch advances; the granularity of deadlines and of async yields.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A loaded, compiled component and its digest.
#[derive(Clone)]
pub struct LoadedComponent {
    pub(crate) component: Component,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    /// The component linked against the host's imports (type-checked once, on the first
    /// instantiation; every later one reuses it).
    pub(crate) pre: Arc<std::sync::OnceLock<crate::world::Pre>>,
    /// The same, for a reviewer (the `agnes:hook` world).
    pub(crate) hook_pre:
        Arc<std::sync::OnceLock<crate::hook::bindings::ReviewerPre<crate::hook::HookState>>>,
}

impl LoadedComponent {
    fn new(component: Component, digest: String) -> LoadedComponent {
        LoadedComponent {
            component,
            digest,
            pre: Arc::default(),
            hook_pre: Arc::default(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct EngineInner {
    pub engine: Engine,
    pub linker: Linker<RunState>,
    /// The linker of reviewer components (`agnes:hook@0.1.0`).
    pub hook_linker: Linker<crate::hook::HookState>,
    cache_dir: Option<PathBuf>,
    /// Pinned addresses for outbound HTTP host names (see [`Runtime::with_resolve`]).
    pub resolve_overrides: Arc<crate::host::egress::ResolveOverrides>,
    pub tls: Arc<rustls::ClientConfig>,
    /// Recorded HTTP exchanges to answer from (or to record into); `None`: the network.
    pub http_fixtures: Option<Arc<crate::host::fixtures::HttpFixtures>>,
}

/// A component's capability surface: every imported and exported function, as
/// `interface#function` (or a bare name for world-level items), sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Surface {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Compiles and caches components; cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<EngineInner>,
}

impl Runtime {
    /// A runtime caching compiled components in `cache_dir` (created if missing), or not at
    /// all with `None`. The cache directory must be writable only by the operator: its
    /// files are loaded as native code.
    pub fn new(cache_dir: Option<&Path>) -> Result<Runtime, Error> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.max_wasm_stack(2 << 20);
        let engine = Engine::new(&config).map_err(|e| Error::Compile {
            digest: "-".into(),
            reason: describe(&e),
        })?;
        let mut linker = Linker::new(&engine);
        let link = |e: wasmtime::Error| Error::Compile {
            digest: "-".into(),
            reason: describe(&e),
        };
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link)?;
        crate::bindings::v1::Connector::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(link)?;
        crate::bindings::v2::Connector::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(link)?;
        let hook_linker = crate::hook::linker(&engine).map_err(link)?;
        if let Some(dir) = cache_dir {
            std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
        }
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("agnes-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(Error::io("spawning", "epoch thread"))?;
        Ok(Runtime {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                hook_linker,
                cache_dir: cache_dir.map(Path::to_path_buf),
                resolve_overrides: Arc::default(),
                tls: crate::host::egress::tls_config(),
                http_fixtures: None,
            }),
        })
    }

    /// Pins the addresses of outbound HTTP host names instead of asking DNS (like curl's
    /// `--resolve`), e.g. for split-horizon names. Pinned addresses pass the same checks
    /// as DNS answers: a non-public one still needs `allow_private`.
    pub fn with_resolve(mut self, overrides: crate::host::egress::ResolveOverrides) -> Runtime {
        Arc::make_mut(&mut self.inner).resolve_overrides = Arc::new(overrides);
        self
    }

    /// Answers connectors' HTTP requests from recorded exchanges, or records them
    /// ([`crate::HttpFixtures`]): for testing a connector without its source. Grants and
    /// secrets are still checked first.
    pub fn with_http_fixtures(
        mut self,
        fixtures: Arc<crate::host::fixtures::HttpFixtures>,
    ) -> Runtime {
        Arc::make_mut(&mut self.inner).http_fixtures = Some(fixtures);
        self
    }

    /// Reads and compiles a component file (see [`Runtime::load`]).
    pub fn load_file(&self, path: &Path) -> Result<LoadedComponent, Error> {
        let bytes = std::fs::read(path).map_err(|error| Error::ReadComponent {
            path: path.to_path_buf(),
            error,
        })?;
        self.load(&bytes)
    }

    /// What the component imports (everything it could ask the host for) and exports.
    pub fn surface(&self, component: &LoadedComponent) -> Surface {
        use wasmtime::component::types::ComponentItem;
        let engine = &self.inner.engine;
        let ty = component.component.component_type();
        let flatten = |name: &str, item: ComponentItem, out: &mut Vec<String>| match item {
            ComponentItem::ComponentInstance(inst) => {
                for (f, e) in inst.exports(engine) {
                    if matches!(e.ty, ComponentItem::ComponentFunc(_)) {
                        out.push(format!("{name}#{f}"));
                    }
                }
            }
            ComponentItem::Type(_) => {}
            _ => out.push(name.to_string()),
        };
        let mut surface = Surface::default();
        for (name, e) in ty.imports(engine) {
            flatten(name, e.ty, &mut surface.imports);
        }
        for (name, e) in ty.exports(engine) {
            flatten(name, e.ty, &mut surface.exports);
        }
        surface.imports.sort();
        surface.exports.sort();
        surface
    }

    /// The connector world the component implements, from the interfaces it exports.
    pub fn world(&self, component: &LoadedComponent) -> Option<crate::World> {
        crate::world::World::of(&self.inner.engine, &component.component)
    }

    /// Verifies the component's signature over its bytes and `connector.toml` against the
    /// trusted keys, and only then compiles it. Returns the component, the parsed manifest
    /// and who signed it.
    pub fn load_verified(
        &self,
        component: &Path,
        manifest: &Path,
        signature: &Path,
        trusted: &crate::signature::TrustedKeys,
    ) -> Result<
        (
            LoadedComponent,
            crate::manifest::ConnectorManifest,
            crate::signature::Verified,
        ),
        Error,
    > {
        let bytes = std::fs::read(component).map_err(|error| Error::ReadComponent {
            path: component.to_path_buf(),
            error,
        })?;
        let manifest_bytes = std::fs::read(manifest).map_err(Error::io("reading", manifest))?;
        let sig = crate::signature::read_signature(signature)?;
        let verified = crate::signature::verify(&bytes, &manifest_bytes, &sig, trusted)?;
        let text = String::from_utf8(manifest_bytes).map_err(|_| Error::Manifest {
            reason: "not UTF-8".into(),
        })?;
        let parsed = crate::manifest::ConnectorManifest::parse(&text)?;
        Ok((self.load(&bytes)?, parsed, verified))
    }

    /// Compiles a component, or loads its compiled form from the cache, keyed by the
    /// sha256 of its bytes and the engine's compatibility hash.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedComponent, Error> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let engine = &self.inner.engine;
        let cached = self.inner.cache_dir.as_ref().map(|dir| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            dir.join(format!("{}-{:016x}.cwasm", &digest[7..], h.finish()))
        });
        if let Some(path) = &cached
            && path.exists()
        {
            // SAFETY: the cache directory is operator-owned and its files were written by
            // `Component::serialize` of this same engine configuration (the file name
            // carries the compatibility hash).
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(component) => return Ok(LoadedComponent::new(component, digest)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %describe(&e), "ignoring unusable compile cache entry")
                }
            }
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(Error::Compile {
                digest,
                reason: "not a WebAssembly binary (missing \\0asm header)".into(),
            });
        }
        let component = Component::new(engine, bytes).map_err(|e| Error::Compile {
            digest: digest.clone(),
            reason: describe(&e),
        })?;
        if let Some(path) = cached {
            match component.serialize() {
                Ok(compiled) => {
                    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                    if std::fs::write(&tmp, compiled)
                        .and_then(|_| std::fs::rename(&tmp, &path))
                        .is_err()
                    {
                        let _ = std::fs::remove_file(&tmp);
                        tracing::warn!(path = %path.display(), "could not write the compile cache");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %describe(&e), "could not serialize compiled component")
                }
            }
        }
        Ok(LoadedComponent::new(component, digest))
    }
}
