//! `agnes connector run|discover`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agnes_runtime::manifest::ConnectorManifest;
use agnes_runtime::{RunConfig, RunRequest, Runtime, extract};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::output::{Output, bytes, count};

#[derive(Debug, Subcommand)]
pub enum ConnectorCmd {
    /// Scaffold a connector crate in a new directory: Cargo.toml, src/lib.rs using the SDK,
    /// connector.toml with the minimal requests, README, fixtures, .gitignore — the SDK and
    /// WIT of this release vendored, so it builds with `cargo build --release --target
    /// wasm32-wasip2` or `cargo component build --release`.
    New {
        /// The connector's name ([a-z0-9-]).
        name: String,
        /// What it reads.
        #[arg(long, value_enum, default_value = "file")]
        kind: super::scaffold::Kind,
        /// Where to write it (default: ./NAME); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// One artifact to ship: the component with its connector.toml and signature embedded as
    /// custom sections (`agnes-manifest`, `agnes-signature`); `verify`, `inspect`, `run`,
    /// `test` and `agnes admin connector upload` accept it without --manifest.
    Package {
        component: PathBuf,
        #[arg(long)]
        manifest: PathBuf,
        /// Default: <component>.sig.
        #[arg(long)]
        signature: Option<PathBuf>,
        /// Default: <component without .wasm>.agnes.wasm.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Run a connector component and publish its extract at --out.
    Run(RunArgs),
    /// Test a component without its source: discover and read in the sandbox with HTTP
    /// answered from recorded fixtures (`<fixtures>/http.json`; an unexpected request fails
    /// naming it) and the run config `<fixtures>/run.toml` (config, grant — e.g. a fixture
    /// directory —, limits); checks the extract contract (`_meta`, md5 of every file) and that
    /// a second run gives the same schemas. Exit 1 on any failure. `--record` sends the
    /// requests to the live source once and writes http.json.
    Test(TestArgs),
    /// List the tables a connector offers with a config, with their columns.
    Discover(DiscoverArgs),
    /// Create a signing key pair: NAME.key (secret, mode 0600) and NAME.pub.
    Keygen {
        /// Path prefix of the two files, e.g. keys/ops.
        name: PathBuf,
    },
    /// Sign a component together with its connector.toml.
    Sign {
        component: PathBuf,
        /// The connector.toml (default: next to the component's crate, see docs).
        #[arg(long)]
        manifest: PathBuf,
        /// The secret key file (from keygen).
        #[arg(long)]
        key: PathBuf,
        /// Where to write the signature (default: <component>.sig).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A reviewer's view: digest, signer, requested capabilities, and every function the
    /// component imports and exports; with --diff, what changed against an older version.
    Inspect(InspectArgs),
    /// Check a component's signature against trusted keys; print signer and requests.
    Verify {
        component: PathBuf,
        #[command(flatten)]
        signed: SignedArgs,
    },
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    component: PathBuf,
    #[command(flatten)]
    signed: SignedArgs,
    /// An older version of the component to compare with.
    #[arg(long)]
    diff: Option<PathBuf>,
    /// The older version's connector.toml.
    #[arg(long, requires = "diff")]
    diff_manifest: Option<PathBuf>,
}

/// Where a signed component's manifest and signature are, and whom to trust.
#[derive(Debug, Args, Clone)]
pub struct SignedArgs {
    /// The component's connector.toml.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// The signature (default: <component>.sig).
    #[arg(long)]
    signature: Option<PathBuf>,
    /// Directory of trusted public keys (*.pub). With it, the component must be signed by
    /// one of them and its connector.toml requests are intersected with the grant.
    #[arg(long, env = "AGNES_TRUSTED_KEYS")]
    trusted_keys: Option<PathBuf>,
    /// Run without verifying a signature (development only). Without it, a component is
    /// refused unless --trusted-keys verifies it.
    #[arg(long, env = "AGNES_ALLOW_UNSIGNED", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    allow_unsigned: bool,
}

impl SignedArgs {
    /// [`SignedArgs::load`], then the run's effective grant and limits: the config's,
    /// narrowed to what the manifest requests when there is one.
    fn load_effective(
        &self,
        runtime: &Runtime,
        component: &Path,
        config: &RunConfig,
        quiet: bool,
    ) -> Result<(
        agnes_runtime::LoadedComponent,
        agnes_runtime::Grant,
        agnes_runtime::Limits,
    )> {
        let (loaded, manifest, _) = self.load(runtime, component, quiet)?;
        let (grant, limits) = match &manifest {
            Some(m) => m.effective(&config.grant, &config.limits)?,
            None => (config.grant.clone(), config.limits.clone()),
        };
        Ok((loaded, grant, limits))
    }

    /// Verifies and loads; without --trusted-keys refuses, unless --allow-unsigned, which
    /// loads unverified with a warning (and still applies --manifest's requests).
    fn load(
        &self,
        runtime: &Runtime,
        component: &Path,
        quiet: bool,
    ) -> Result<(
        agnes_runtime::LoadedComponent,
        Option<agnes_runtime::manifest::ConnectorManifest>,
        Option<String>,
    )> {
        // a package (`agnes connector package`): its embedded connector.toml and signature,
        // unless given explicitly
        if self.manifest.is_none()
            && let Ok(bytes) = std::fs::read(component)
            && let Some((bare, manifest, sig)) = agnes_runtime::signature::unpack(&bytes)?
        {
            let scratch = Scratch::new()?;
            let (c, m, s) = (
                scratch.0.join("component.wasm"),
                scratch.0.join("connector.toml"),
                scratch.0.join("component.wasm.sig"),
            );
            std::fs::write(&c, bare)?;
            std::fs::write(&m, manifest)?;
            std::fs::write(&s, serde_json::to_vec(&sig)?)?;
            let unpacked = SignedArgs {
                manifest: Some(m),
                signature: Some(s),
                ..self.clone()
            };
            return unpacked.load(runtime, &c, quiet);
        }
        let Some(dir) = &self.trusted_keys else {
            if !self.allow_unsigned {
                bail!(
                    "refusing to run {} unverified: pass --trusted-keys <dir of *.pub> and --manifest <connector.toml> \
                     (or --allow-unsigned, for development only)",
                    component.display()
                );
            }
            if !quiet {
                eprintln!(
                    "warning: running {} unverified (--allow-unsigned); never do this with an untrusted component",
                    component.display()
                );
            }
            let manifest = self
                .manifest
                .as_deref()
                .map(ConnectorManifest::from_file)
                .transpose()?;
            return Ok((runtime.load_file(component)?, manifest, None));
        };
        let trusted = agnes_runtime::signature::TrustedKeys::from_dir(dir)?;
        let manifest = self
            .manifest
            .clone()
            .context("--trusted-keys needs --manifest <connector.toml>")?;
        let signature = self
            .signature
            .clone()
            .unwrap_or_else(|| agnes_runtime::signature::default_path(component));
        let (loaded, m, v) = runtime.load_verified(component, &manifest, &signature, &trusted)?;
        Ok((loaded, Some(m), Some(v.key_id)))
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The connector component (.wasm).
    component: PathBuf,
    /// Run config (TOML or JSON): the connector's [config], the [grant] and [limits].
    #[arg(long)]
    config: PathBuf,
    /// Where to publish the extract: <extracts-dir>/<source>.
    #[arg(long)]
    out: PathBuf,
    /// Read only these tables (repeatable). Default: every table the connector offers.
    #[arg(long = "table", value_name = "TABLE")]
    tables: Vec<String>,
    /// Ignore the committed cursor state and read everything.
    #[arg(long)]
    full_refresh: bool,
    #[command(flatten)]
    signed: SignedArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The connector component (.wasm).
    component: PathBuf,
    /// Directory with run.toml and (for HTTP connectors) http.json.
    #[arg(long)]
    fixtures: PathBuf,
    /// Record: send the requests to the live source and write <fixtures>/http.json.
    #[arg(long)]
    record: bool,
    #[command(flatten)]
    signed: SignedArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The connector component (.wasm).
    component: PathBuf,
    /// Run config (TOML or JSON).
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    signed: SignedArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Debug, Args)]
struct CacheArgs {
    /// Directory for compiled components. Default: $XDG_CACHE_HOME/agnes or ~/.cache/agnes.
    #[arg(long, env = "AGNES_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

impl CacheArgs {
    fn runtime(&self) -> Result<Runtime> {
        let dir = self.cache_dir.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(base.join("agnes/components"))
        });
        Ok(Runtime::new(dir.as_deref())?)
    }
}

fn tokio() -> Result<tokio::runtime::Runtime> {
    // io too: connectors may call out over wasi:http
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run(cmd: ConnectorCmd, out: &Output) -> Result<()> {
    match cmd {
        ConnectorCmd::New { name, kind, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let files = super::scaffold::write(&name, kind, &dir)?;
            out.print(
                || {
                    format!(
                        "wrote {} ({} files, SDK and WIT of agnes {} vendored)\nnext: cd {} && cargo build --release --target wasm32-wasip2",
                        dir.display(),
                        files.len(),
                        super::scaffold::sdk_version(),
                        dir.display()
                    )
                },
                || serde_json::json!({"dir": dir, "files": files, "sdk": super::scaffold::sdk_version()}),
            );
            Ok(())
        }
        ConnectorCmd::Package {
            component,
            manifest,
            signature,
            output,
        } => {
            let bytes = std::fs::read(&component)
                .with_context(|| format!("reading {}", component.display()))?;
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("reading {}", manifest.display()))?;
            let sig = agnes_runtime::signature::read_signature(
                &signature.unwrap_or_else(|| agnes_runtime::signature::default_path(&component)),
            )?;
            let packed = agnes_runtime::signature::pack(&bytes, &text, &sig)?;
            let output = output.unwrap_or_else(|| component.with_extension("agnes.wasm"));
            std::fs::write(&output, &packed)
                .with_context(|| format!("writing {}", output.display()))?;
            let digest = format!(
                "sha256:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&packed))
            );
            out.print(
                || format!("packaged {} ({} bytes, {digest}) with its connector.toml and signature (key {})", output.display(), packed.len(), sig.key_id),
                || json!({"package": output, "bytes": packed.len(), "digest": digest, "key_id": sig.key_id}),
            );
            Ok(())
        }
        ConnectorCmd::Run(args) => run_connector(args, out),
        ConnectorCmd::Test(args) => test_connector(args, out),
        ConnectorCmd::Discover(args) => discover(args, out),
        ConnectorCmd::Keygen { name } => keygen(&name, out),
        ConnectorCmd::Sign {
            component,
            manifest,
            key,
            out: sig,
        } => sign(&component, &manifest, &key, sig, out),
        ConnectorCmd::Verify { component, signed } => verify(&component, &signed, out),
        ConnectorCmd::Inspect(args) => inspect(args, out),
    }
}

fn keygen(name: &Path, out: &Output) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let (secret, public, id) = agnes_runtime::signature::keygen()?;
    let key = name.with_extension("key");
    let pubfile = name.with_extension("pub");
    if key.exists() {
        bail!("{} exists; refusing to overwrite a key", key.display());
    }
    if let Some(dir) = key.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)?;
    f.write_all(secret.as_bytes())?;
    std::fs::write(&pubfile, &public)?;
    out.print(
        || {
            format!(
                "key {id}: secret {} (keep it private), public {} (give it to operators)",
                key.display(),
                pubfile.display()
            )
        },
        || json!({"key_id": id, "secret": key, "public": pubfile}),
    );
    Ok(())
}

fn sign(
    component: &Path,
    manifest: &Path,
    key: &Path,
    sig: Option<PathBuf>,
    out: &Output,
) -> Result<()> {
    let bytes =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let m = std::fs::read(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    agnes_runtime::manifest::ConnectorManifest::parse(
        std::str::from_utf8(&m).context("connector.toml is not UTF-8")?,
    )?;
    let secret =
        std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    let signature = agnes_runtime::signature::sign(&bytes, &m, &secret)?;
    let path = sig.unwrap_or_else(|| agnes_runtime::signature::default_path(component));
    std::fs::write(&path, serde_json::to_string_pretty(&signature)?)?;
    out.print(
        || format!("signed {} with key {} -> {}", component.display(), signature.key_id, path.display()),
        || json!({"signature": path, "key_id": signature.key_id, "component_sha256": signature.component_sha256}),
    );
    Ok(())
}

fn verify(component: &Path, signed: &SignedArgs, out: &Output) -> Result<()> {
    if signed.trusted_keys.is_none() {
        bail!("verify needs --trusted-keys <dir of *.pub> (or AGNES_TRUSTED_KEYS)");
    }
    let runtime = Runtime::new(None)?;
    let (loaded, manifest, key) = signed.load(&runtime, component, true)?;
    let m = manifest.expect("verified");
    out.print(
        || {
            format!(
                "OK: {} {} signed by key {}, {}\nrequests: {}",
                m.name,
                m.version,
                key.as_deref().unwrap_or("-"),
                loaded.digest,
                m.requests.lines().join("; ")
            )
        },
        || json!({"name": m.name, "version": m.version, "key_id": key, "digest": loaded.digest, "requests": m.requests}),
    );
    Ok(())
}

/// Splits `--out <extracts>/<source>` into its parts.
fn split_out(out: &Path) -> Result<(PathBuf, String)> {
    let source = out.file_name().and_then(|s| s.to_str()).with_context(|| {
        format!(
            "--out {} must end in the source name, e.g. ./agnes-data/extracts/demo",
            out.display()
        )
    })?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((parent.to_path_buf(), source.to_string()))
}

fn run_connector(args: RunArgs, out: &Output) -> Result<()> {
    let config = RunConfig::from_file(&args.config)?;
    let (extracts_dir, source) = split_out(&args.out)?;
    if let Some(declared) = &config.source
        && declared != &source
    {
        bail!(
            "{} declares source `{declared}` but --out names `{source}`; make them agree",
            args.config.display()
        );
    }
    std::fs::create_dir_all(&extracts_dir)
        .with_context(|| format!("creating {}", extracts_dir.display()))?;
    let state = if args.full_refresh {
        None
    } else {
        extract::published_state(&extracts_dir, &source)
    };
    let runtime = args.cache.runtime()?;
    let (component, grant, limits) =
        args.signed
            .load_effective(&runtime, &args.component, &config, out.quiet || out.json)?;

    let bar = if out.progress() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        bar.set_message(format!("{source}: starting {}", args.component.display()));
        Some(bar)
    } else {
        None
    };
    let on_progress = bar.clone().map(|bar| {
        Box::new(move |p: &agnes_runtime::Progress| {
            bar.set_message(format!(
                "{}: {} rows ({} total, {})",
                p.table,
                count(p.table_rows),
                count(p.rows),
                bytes(p.bytes)
            ));
        }) as agnes_runtime::ProgressFn
    });
    let request = RunRequest {
        source: source.clone(),
        extracts_dir,
        config: config.config,
        grant,
        limits,
        streams: if args.tables.is_empty() {
            None
        } else {
            Some(args.tables)
        },
        state,
    };
    let result = tokio()?.block_on(runtime.run(&component, request, on_progress));
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = result.with_context(|| {
        format!(
            "source `{source}`: nothing was published; the previous extract (if any) is unchanged"
        )
    })?;
    out.print(
        || {
            format!(
                "{}: {} tables, {} rows, {} in {:.2}s -> {}",
                report.source,
                report.tables.len(),
                count(report.rows),
                bytes(report.size_bytes()),
                report.elapsed.as_secs_f64(),
                args.out.display()
            )
        },
        || {
            json!({
                "source": report.source,
                "version": report.version,
                "path": report.dir,
                "component_digest": report.component_digest,
                "rows": report.rows,
                "size_bytes": report.size_bytes(),
                "bytes_emitted": report.bytes_emitted,
                "host_busy_seconds": report.host_busy.as_secs_f64(),
                "logs_dropped": report.logs_dropped,
                "peak_rss_bytes": peak_rss_bytes(),
                "seconds": report.elapsed.as_secs_f64(),
                "tables": report.tables.iter().map(|t| json!({
                    "name": t.name, "rows": t.rows, "size_bytes": t.size_bytes, "md5": t.md5, "path": t.path, "merged": t.merged,
                })).collect::<Vec<_>>(),
            })
        },
    );
    Ok(())
}

fn discover(args: DiscoverArgs, out: &Output) -> Result<()> {
    let config = RunConfig::from_file(&args.config)?;
    let runtime = args.cache.runtime()?;
    let (component, grant, limits) =
        args.signed
            .load_effective(&runtime, &args.component, &config, out.quiet || out.json)?;
    let tables =
        tokio()?.block_on(runtime.discover(&component, &config.config, &grant, &limits))?;
    out.print(
        || {
            let mut s = String::new();
            for t in &tables {
                s.push_str(&format!("{}{}\n", t.name, t.description.as_ref().map(|d| format!("  -- {d}")).unwrap_or_default()));
                for f in t.schema.fields() {
                    s.push_str(&format!("  {} {}{}\n", f.name(), f.data_type(), if f.is_nullable() { "" } else { " NOT NULL" }));
                }
            }
            s.trim_end().to_string()
        },
        || {
            json!(tables.iter().map(|t| json!({
                "name": t.name,
                "description": t.description,
                "primary_key": t.primary_key,
                "cursor_field": t.cursor_field,
                "columns": t.schema.fields().iter().map(|f| json!({
                    "name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>())
        },
    );
    Ok(())
}

fn inspect(args: InspectArgs, out: &Output) -> Result<()> {
    let runtime = Runtime::new(None)?;
    let (loaded, verified_manifest, key) = if args.signed.trusted_keys.is_some() {
        args.signed.load(&runtime, &args.component, true)?
    } else {
        (runtime.load_file(&args.component)?, None, None)
    };
    let manifest = match (verified_manifest, &args.signed.manifest) {
        (Some(m), _) => Some(m),
        (None, Some(p)) => Some(ConnectorManifest::from_file(p)?),
        (None, None) => None,
    };
    let signer = match &key {
        Some(k) => format!("{k} (verified)"),
        None => {
            let sig = args
                .signed
                .signature
                .clone()
                .unwrap_or_else(|| agnes_runtime::signature::default_path(&args.component));
            match agnes_runtime::signature::read_signature(&sig) {
                Ok(s) => format!("{} (NOT verified: pass --trusted-keys)", s.key_id),
                Err(_) => "unsigned".into(),
            }
        }
    };
    let surface = runtime.surface(&loaded);
    let world = runtime.world(&loaded).map_or_else(
        || "none (exports no agnes:connector source)".to_string(),
        |w| w.to_string(),
    );
    let requested = manifest
        .as_ref()
        .map(|m| m.requests.lines())
        .unwrap_or_default();
    let diff = match &args.diff {
        None => None,
        Some(old) => {
            let old_loaded = runtime.load_file(old)?;
            let old_surface = runtime.surface(&old_loaded);
            let old_requested = match &args.diff_manifest {
                Some(p) => ConnectorManifest::from_file(p)?.requests.lines(),
                None => Vec::new(),
            };
            Some((
                old_loaded.digest.clone(),
                agnes_runtime::manifest::diff_lines(&old_surface.imports, &surface.imports),
                agnes_runtime::manifest::diff_lines(&old_surface.exports, &surface.exports),
                args.diff_manifest
                    .as_ref()
                    .map(|_| agnes_runtime::manifest::diff_lines(&old_requested, &requested)),
            ))
        }
    };
    out.print(
        || {
            let mut s = format!(
                "component {}\n  digest  {}\n  signer  {signer}\n  world   {world}\n",
                args.component.display(),
                loaded.digest
            );
            match &manifest {
                Some(m) => {
                    s.push_str(&format!("  connector {} {}\nrequests ({}):\n", m.name, m.version, requested.len()));
                    for r in &requested {
                        s.push_str(&format!("  {r}\n"));
                    }
                }
                None => s.push_str("  requests (no --manifest given)\n"),
            }
            s.push_str(&format!("imports ({}):\n", surface.imports.len()));
            for i in &surface.imports {
                s.push_str(&format!("  {i}\n"));
            }
            s.push_str(&format!("exports ({}):\n", surface.exports.len()));
            for e in &surface.exports {
                s.push_str(&format!("  {e}\n"));
            }
            if let Some((old_digest, imports, exports, requests)) = &diff {
                s.push_str(&format!("changes since {old_digest}:\n"));
                let none = imports.is_empty() && exports.is_empty() && requests.as_ref().is_none_or(|r| r.is_empty());
                for l in imports.iter().map(|l| format!("  import {l}")).chain(exports.iter().map(|l| format!("  export {l}"))) {
                    s.push_str(&format!("{l}\n"));
                }
                for l in requests.iter().flatten() {
                    s.push_str(&format!("  request {l}\n"));
                }
                if none {
                    s.push_str("  none in imports, exports or requests\n");
                }
            }
            s.trim_end().to_string()
        },
        || {
            json!({
                "digest": loaded.digest, "signer": signer, "key_id": key, "world": world,
                "connector": manifest.as_ref().map(|m| json!({"name": m.name, "version": m.version})),
                "requests": manifest.as_ref().map(|m| &m.requests), "imports": surface.imports, "exports": surface.exports,
                "diff": diff.as_ref().map(|(d, i, e, r)| json!({"from": d, "imports": i, "exports": e, "requests": r})),
            })
        },
    );
    Ok(())
}

/// The process's peak resident memory (`VmHWM`), where the OS reports it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// One run of `agnes connector test`: the report and the fixtures it used.
fn test_run(
    runtime: &Runtime,
    component: &agnes_runtime::LoadedComponent,
    config: &RunConfig,
    grant: &agnes_runtime::Grant,
    limits: &agnes_runtime::Limits,
    fixtures: std::sync::Arc<agnes_runtime::HttpFixtures>,
    extracts: &Path,
) -> Result<agnes_runtime::RunReport, agnes_runtime::Error> {
    let runtime = runtime.clone().with_http_fixtures(fixtures);
    let request = RunRequest {
        source: "test".into(),
        extracts_dir: extracts.to_path_buf(),
        config: config.config.clone(),
        grant: grant.clone(),
        limits: limits.clone(),
        streams: None,
        state: None,
    };
    tokio()
        .map_err(|e| agnes_runtime::Error::Policy {
            reason: e.to_string(),
        })?
        .block_on(runtime.run(component, request, None))
}

/// `(column, type)` of a parquet file, as DuckDB reads it.
fn parquet_columns(path: &Path) -> Result<Vec<(String, String)>> {
    let db = duckdb::Connection::open_in_memory()?;
    let mut stmt = db
        .prepare("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(?))")?;
    let rows = stmt.query_map([path.to_string_lossy().to_string()], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn test_connector(args: TestArgs, out: &Output) -> Result<()> {
    use agnes_runtime::HttpFixtures;
    use std::sync::Arc;
    let config = RunConfig::from_file(&args.fixtures.join("run.toml"))?;
    let http_path = args.fixtures.join("http.json");
    let recorded: Vec<agnes_runtime::Exchange> = if args.record || !http_path.exists() {
        Vec::new()
    } else {
        serde_json::from_slice(&std::fs::read(&http_path)?)
            .with_context(|| format!("{} is not a list of exchanges", http_path.display()))?
    };
    let runtime = args.cache.runtime()?;
    let (component, grant, limits) =
        args.signed
            .load_effective(&runtime, &args.component, &config, out.quiet || out.json)?;
    let scratch = Scratch::new()?;
    let mut checks: Vec<(bool, String)> = Vec::new();
    // spec: what it says about itself, and the config checked against its config schema
    let spec = match tokio()?.block_on(runtime.spec(&component, &limits)) {
        Ok(spec) => {
            let config: serde_json::Value =
                serde_json::from_str(&config.config).unwrap_or_default();
            match agnes_runtime::jsonschema::validate(&spec.config_schema, &config, "config") {
                Ok(()) => checks.push((
                    true,
                    format!(
                        "spec: {} {} ({}); the config fits its config schema",
                        spec.name, spec.version, spec.world
                    ),
                )),
                Err(e) => checks.push((
                    false,
                    format!("spec: the config does not fit the config schema: {e}"),
                )),
            }
            Some(spec)
        }
        Err(e) => {
            checks.push((false, format!("spec failed: {e}")));
            None
        }
    };
    let first = Arc::new(if args.record {
        HttpFixtures::record()
    } else {
        HttpFixtures::replay(recorded.clone())
    });
    let report = test_run(
        &runtime,
        &component,
        &config,
        &grant,
        &limits,
        first.clone(),
        &scratch.0.join("one"),
    );
    for request in first.unexpected() {
        checks.push((
            false,
            format!("unexpected request {request}: no fixture answers it"),
        ));
    }
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            checks.push((false, format!("discover + read failed: {e}")));
            return finish(&args, checks, out);
        }
    };
    checks.push((
        true,
        format!(
            "discover + read: {} tables, {} rows, {} HTTP exchanges",
            report.tables.len(),
            report.rows,
            first.exchanges().len()
        ),
    ));
    // query (connectors that answer it): the first table, at most 10 rows, the read's columns
    if let (Some(spec), Some(table)) = (&spec, report.tables.first())
        && spec.capabilities.query
    {
        let call = agnes_runtime::query::QueryCall {
            config: config.config.clone(),
            grant: grant.clone(),
            limits: limits.clone(),
            table: table.name.clone(),
            request: agnes_runtime::query::QueryRequest::Structured(
                agnes_runtime::query::Request {
                    table: table.name.clone(),
                    limit: Some(10),
                    ..Default::default()
                },
            ),
        };
        let dir = scratch.0.join("query");
        std::fs::create_dir_all(&dir)?;
        let queried = runtime.clone().with_http_fixtures(first.clone());
        match tokio()?.block_on(queried.query(&component, &call, &dir)) {
            Ok(q) => {
                let same = parquet_columns(&q.path).ok() == parquet_columns(&table.path).ok();
                checks.push((
                    q.rows <= 10 && same,
                    format!(
                        "query {} limit 10: {} rows, {} columns as read",
                        table.name,
                        q.rows,
                        if same { "the same" } else { "NOT the same" }
                    ),
                ));
            }
            Err(e) => checks.push((false, format!("query {} limit 10 failed: {e}", table.name))),
        }
        for request in first.unexpected() {
            if !checks.iter().any(|(_, l)| l.contains(&request)) {
                checks.push((
                    false,
                    format!("unexpected request {request}: no fixture answers it"),
                ));
            }
        }
    }
    if args.record {
        std::fs::write(&http_path, serde_json::to_vec_pretty(&first.exchanges())?)?;
        checks.push((
            true,
            format!(
                "recorded {} exchanges into {}",
                first.exchanges().len(),
                http_path.display()
            ),
        ));
    } else {
        for unused in first.unused() {
            checks.push((true, format!("note: fixture {unused} was not requested")));
        }
    }
    // the extract contract: _meta agrees with the files, every file's md5 is what is recorded
    match extract::read_meta(&report.dir) {
        Ok(meta) => {
            let names: Vec<&str> = meta.iter().map(|m| m.table_name.as_str()).collect();
            checks.push((
                names.len() == report.tables.len(),
                format!("_meta lists {} table(s): {}", names.len(), names.join(", ")),
            ));
        }
        Err(e) => checks.push((false, format!("_meta: {e}"))),
    }
    for t in &report.tables {
        let md5 = agnes_runtime::extract::md5_file(&t.path);
        checks.push(match md5 {
            Ok(m) if m == t.md5 => (true, format!("{}: {} rows, md5 {m}", t.name, t.rows)),
            Ok(m) => (
                false,
                format!(
                    "{}: the file's md5 {m} is not the recorded {}",
                    t.name, t.md5
                ),
            ),
            Err(e) => (false, format!("{}: {e}", t.name)),
        });
    }
    // schema stability: a second run over the same fixtures gives the same columns
    let second = Arc::new(HttpFixtures::replay(if args.record {
        first.exchanges()
    } else {
        recorded
    }));
    match test_run(
        &runtime,
        &component,
        &config,
        &grant,
        &limits,
        second,
        &scratch.0.join("two"),
    ) {
        Ok(again) => {
            for t in &report.tables {
                let other = again.tables.iter().find(|o| o.name == t.name);
                let same = match other {
                    Some(o) => parquet_columns(&t.path).ok() == parquet_columns(&o.path).ok(),
                    None => false,
                };
                checks.push((same, format!("{}: the same schema on a second run", t.name)));
            }
        }
        Err(e) => checks.push((false, format!("a second run failed: {e}"))),
    }
    finish(&args, checks, out)
}

fn finish(args: &TestArgs, checks: Vec<(bool, String)>, out: &Output) -> Result<()> {
    let failed = checks.iter().filter(|(ok, _)| !ok).count();
    out.print(
        || {
            let mut text = format!("{}:", args.component.display());
            for (ok, line) in &checks {
                text.push_str(&format!("\n  {} {line}", if *ok { "ok  " } else { "FAIL" }));
            }
            text
        },
        || json!({"component": args.component, "passed": failed == 0, "checks": checks.iter().map(|(ok, l)| json!({"ok": ok, "check": l})).collect::<Vec<_>>()}),
    );
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!(
            "agnes-connector-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
