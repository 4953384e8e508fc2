//! Shared helpers of the end-to-end tests: the paths of the guest components that
//! `build.rs` compiled, and small readers for extracts.

include!(concat!(env!("OUT_DIR"), "/components.rs"));

pub mod garage;
pub mod pg;
pub mod upstream;
pub mod web_client;

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Opens `<extract>/extract.duckdb` read-only.
pub fn open_extract(extract_dir: &Path) -> duckdb::Connection {
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .unwrap();
    duckdb::Connection::open_with_flags(extract_dir.join("extract.duckdb"), config).unwrap()
}

/// md5 of a file, hex.
pub fn md5_file(path: &Path) -> String {
    agnes_runtime::extract::md5_file(path).unwrap()
}

use std::sync::OnceLock;

use agnes_runtime::{Grant, Limits, LoadedComponent, RunReport, RunRequest, Runtime};

/// One runtime per test process (the engine and its epoch thread are shared), with a
/// compile cache under the system temp dir.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let cache = std::env::temp_dir().join("agnes-test-component-cache");
        Runtime::new(Some(&cache)).expect("runtime")
    })
}

/// The compiled csv component.
pub fn csv() -> &'static LoadedComponent {
    static C: OnceLock<LoadedComponent> = OnceLock::new();
    C.get_or_init(|| {
        runtime()
            .load_file(Path::new(CSV_COMPONENT))
            .expect("csv component")
    })
}

/// The compiled http-json component.
pub fn http_json() -> &'static LoadedComponent {
    static C: OnceLock<LoadedComponent> = OnceLock::new();
    C.get_or_init(|| {
        runtime()
            .load_file(Path::new(HTTP_JSON_COMPONENT))
            .expect("http-json component")
    })
}

/// The compiled hostile fixture.
pub fn hostile() -> &'static LoadedComponent {
    static C: OnceLock<LoadedComponent> = OnceLock::new();
    C.get_or_init(|| {
        runtime()
            .load_file(Path::new(HOSTILE_COMPONENT))
            .expect("hostile component")
    })
}

/// A run request for `source` under `extracts` with `config` (JSON) and read-only dirs.
pub fn request(
    extracts: &Path,
    source: &str,
    config: serde_json::Value,
    dirs: &[(&Path, &str)],
) -> RunRequest {
    RunRequest {
        source: source.into(),
        extracts_dir: extracts.to_path_buf(),
        config: config.to_string(),
        grant: Grant {
            dirs: dirs
                .iter()
                .map(|(h, g)| agnes_runtime::DirGrant {
                    host: h.to_path_buf(),
                    guest: g.to_string(),
                })
                .collect(),
            ..Grant::default()
        },
        limits: Limits::default(),
        streams: None,
        state: None,
    }
}

/// Runs the hostile fixture in `mode` (plus extra config keys).
pub async fn run_hostile(
    extracts: &Path,
    mode: &str,
    extra: serde_json::Value,
) -> Result<RunReport, agnes_runtime::Error> {
    run_hostile_with(extracts, mode, extra, Limits::default()).await
}

/// [`run_hostile`] under `limits`.
pub async fn run_hostile_with(
    extracts: &Path,
    mode: &str,
    extra: serde_json::Value,
    limits: Limits,
) -> Result<RunReport, agnes_runtime::Error> {
    let mut config = serde_json::json!({ "mode": mode });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let mut req = request(extracts, "src", config, &[]);
    req.limits = limits;
    runtime().run(hostile(), req, None).await
}

/// Publishes a good extract of source `src`, runs `bad`, and checks that it failed and
/// that every file under `extracts` is unchanged. Returns the error.
pub async fn fails_cleanly<F, Fut>(extracts: &Path, bad: F) -> agnes_runtime::Error
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<agnes_runtime::RunReport, agnes_runtime::Error>>,
{
    let good = run_hostile(extracts, "good", serde_json::json!({"rows": 2500}))
        .await
        .expect("good run");
    assert_eq!(good.rows, 2500);
    let before = snapshot(extracts);
    let err = bad().await.expect_err("the bad run must fail");
    assert_eq!(
        snapshot(extracts),
        before,
        "a failed run must not change anything on disk ({err})"
    );
    let conn = open_extract(&extracts.join("src"));
    let n: i64 = conn
        .query_row("SELECT count(*) FROM numbers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2500, "the previous extract still serves");
    err
}

/// [`snapshot`] without lock files (a refused run may leave its source's lock): what a
/// failed run must leave exactly as it was.
pub fn snapshot_without_locks(dir: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    snapshot(dir)
        .into_iter()
        .filter(|(p, _)| !p.to_string_lossy().ends_with(".lock"))
        .collect()
}

/// The `connector.toml` of `connectors-wasm/<name>`.
pub fn connector_manifest(name: &str) -> agnes_runtime::manifest::ConnectorManifest {
    let path = repo_root()
        .join("connectors-wasm")
        .join(name)
        .join("connector.toml");
    agnes_runtime::manifest::ConnectorManifest::parse(&std::fs::read_to_string(path).unwrap())
        .unwrap()
}

/// A snapshot of every file under a directory (path → md5), to prove nothing changed.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            let ft = entry.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                out.insert(p.clone(), md5_file(&p));
            } else if ft.is_symlink() {
                out.insert(
                    p.clone(),
                    std::fs::read_link(&p).unwrap().display().to_string(),
                );
            }
        }
    }
    out
}

/// A free loopback port (bound, then released: for a server a test starts next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real server on a loopback port, with its own data dir, running on its own runtime
/// until dropped. `admin` is the bootstrap admin's token.
pub struct TestServer {
    pub base: String,
    pub admin: String,
    pub data_dir: tempfile::TempDir,
    pub state: agnes_server::AppState,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(|_| {})
    }

    /// Starts with a config adjusted by `adjust` (data dir and listen address are set).
    pub fn start_with(adjust: impl FnOnce(&mut agnes_server::ServerConfig)) -> TestServer {
        Self::start_inner(adjust, None)
    }

    /// Another server (its own data dir and port) on the state `first` bootstrapped (which
    /// `adjust` points it at): a replica of the scale-out mode. Its `admin` is `first`'s.
    pub fn replica(
        first: &TestServer,
        adjust: impl FnOnce(&mut agnes_server::ServerConfig),
    ) -> TestServer {
        Self::start_inner(adjust, Some(first.admin.clone()))
    }

    /// A server on an existing (already bootstrapped) `state`, whose admin token is `admin`.
    pub fn start_on(state: &agnes_server::config::StateConfig, admin: String) -> TestServer {
        let state = state.clone();
        Self::start_inner(move |c| c.state = state, Some(admin))
    }

    fn start_inner(
        adjust: impl FnOnce(&mut agnes_server::ServerConfig),
        admin: Option<String>,
    ) -> TestServer {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = agnes_server::ServerConfig {
            data_dir: data_dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            query: agnes_server::config::QueryLimits {
                timeout_secs: 10,
                ..Default::default()
            },
            scheduler_tick_secs: 3600,
            trusted_keys: None,
            sql: agnes_server::config::SqlEngine {
                component: Some(SQL_COMPONENT.into()),
                ..Default::default()
            },
            // most tests register the built components by path; the signed path has its own tests
            allow_unsigned_connectors: true,
            ..Default::default()
        };
        adjust(&mut config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = runtime
            .block_on(agnes_server::AppState::open(config))
            .unwrap();
        let admin = match admin {
            Some(token) => token,
            None => runtime
                .block_on(agnes_server::bootstrap(&state, "admin"))
                .unwrap()
                .unwrap(),
        };
        // what `agnes serve` runs beside the router
        {
            let _rt = runtime.enter();
            agnes_server::run_background(
                &state,
                std::time::Duration::from_secs(state.config.scheduler_tick_secs),
            );
        }
        // Bind before serving: the port is known and accepting before the first request.
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = agnes_server::app(state.clone());
        runtime.spawn(async move { axum_serve(listener, app).await });
        TestServer {
            base,
            admin,
            data_dir,
            state,
            runtime: Some(runtime),
        }
    }

    /// Runs `f` on the server's own runtime (tasks it spawns keep running).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().expect("running").block_on(f)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// [`call`] on this server.
    pub fn call(
        &self,
        method: &str,
        token: Option<&str>,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        call(&self.base, method, token, path, body)
    }

    /// As the admin: `call` that must succeed; the JSON answer.
    pub fn admin_call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let (status, v) = self.call(method, Some(&self.admin), path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    /// As the admin: a new group `group` granted `table`, and a new user `user` in it;
    /// returns the user's token.
    pub fn analyst(&self, user: &str, group: &str, table: &str) -> String {
        self.admin_call(
            "POST",
            "/api/admin/groups",
            Some(serde_json::json!({"name": group})),
        );
        self.admin_call(
            "POST",
            "/api/admin/grants",
            Some(
                serde_json::json!({"group": group, "resource_type": "table", "resource_id": table}),
            ),
        );
        self.admin_call(
            "POST",
            "/api/admin/users",
            Some(serde_json::json!({"name": user, "groups": [group]})),
        )["token"]
            .as_str()
            .expect("a token")
            .to_string()
    }

    /// Registers source `demo` (the csv component over `examples/demo/data`) with `tables`
    /// (JSON table specs, or `{"all": true}`), syncs it and waits.
    pub fn with_demo_source(&self, tables: serde_json::Value) -> &Self {
        let data = repo_root()
            .join("examples/demo/data")
            .canonicalize()
            .unwrap();
        let (st, body) = self.call(
            "POST",
            Some(&self.admin),
            "/api/admin/sources",
            Some(serde_json::json!({"name": "demo", "connector": CSV_COMPONENT, "config": {"dir": "/data"},
                   "grant": {"dirs": [{"host": data, "guest": "/data"}]}, "description": "the demo CSVs"})),
        );
        assert_eq!(st, 201, "{body}");
        self.admin_call("POST", "/api/admin/sources/demo/tables", Some(tables));
        let (st, body) = self.call(
            "POST",
            Some(&self.admin),
            "/api/admin/sources/demo/sync",
            None,
        );
        assert_eq!(st, 202, "{body}");
        self.wait_for_sync();
        self
    }

    /// As the admin: syncs source `name`, waits, and returns its latest run (with its
    /// per-table outcomes).
    pub fn sync_source(&self, name: &str) -> serde_json::Value {
        self.admin_call("POST", &format!("/api/admin/sources/{name}/sync"), None);
        self.wait_for_sync();
        self.admin_call(
            "GET",
            &format!("/api/sync/history?source={name}&limit=1"),
            None,
        )["runs"][0]
            .clone()
    }

    /// Waits (bounded) until no sync is running.
    pub fn wait_for_sync(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let status = http()
                .get(&self.url("/api/sync/status"))
                .header("Authorization", &bearer(&self.admin))
                .call()
                .unwrap();
            let v: serde_json::Value = read_json(status);
            if v["running"].as_array().is_some_and(Vec::is_empty) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sync did not finish: {v}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn axum_serve(listener: tokio::net::TcpListener, app: axum::Router) {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
    .unwrap();
}

/// `method <base><path>` with `token` (if any) and a JSON body (if any): the status and
/// the JSON answer (`null` when the body is not JSON).
pub fn call(
    base: &str,
    method: &str,
    token: Option<&str>,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", bearer(t));
    }
    let bytes = match &body {
        Some(b) => {
            req = req.header("Content-Type", "application/json");
            serde_json::to_vec(b).unwrap()
        }
        None => Vec::new(),
    };
    let r = http().run(req.body(bytes).unwrap()).unwrap();
    let status = r.status().as_u16();
    let bytes = read_bytes(r);
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// An HTTP agent that returns every status as a response (not an error).
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn read_json(mut r: ureq::http::Response<ureq::Body>) -> serde_json::Value {
    r.body_mut().read_json().unwrap()
}

pub fn read_bytes(mut r: ureq::http::Response<ureq::Body>) -> Vec<u8> {
    r.body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .unwrap()
}

/// One request a [`Loopback`] server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A stand-in for an external API: an axum router on a loopback port, on its own thread,
/// recording every request it receives. Stops when dropped.
pub struct Loopback {
    pub port: u16,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Loopback {
    pub fn start(router: axum::Router) -> Loopback {
        let requests: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>> = Default::default();
        let log = requests.clone();
        let router = router.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let log = log.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let bytes = axum::body::to_bytes(body, usize::MAX)
                        .await
                        .unwrap_or_default();
                    log.lock().unwrap().push(Recorded {
                        method: parts.method.to_string(),
                        uri: parts.uri.to_string(),
                        headers: parts
                            .headers
                            .iter()
                            .map(|(k, v)| {
                                (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                            })
                            .collect(),
                        body: bytes.to_vec(),
                    });
                    let req =
                        axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
                    next.run(req).await
                }
            },
        ));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Loopback {
            port,
            requests,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What it received so far.
    pub fn received(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// A grant rule for this server: plain http to a loopback address, explicitly allowed.
    pub fn grant(&self) -> agnes_runtime::HttpGrant {
        agnes_runtime::HttpGrant {
            host: "127.0.0.1".into(),
            ports: vec![self.port],
            allow_http: true,
            allow_private: true,
        }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        // Not joined: graceful shutdown waits for open keep-alive connections, which
        // the client side may still hold; the thread ends when they close.
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        drop(self.thread.take());
    }
}

/// The synthetic connector's row generator, compiled natively: the same source file the
/// `synth` component is built from.
#[path = "../connectors-wasm/synth/src/rows.rs"]
pub mod synth_rows;

/// Runs the synthetic table natively through [`Runtime::run_native`]: the same rows, IPC
/// encoding and host pipeline as the `synth` component, without WebAssembly.
pub fn run_synth_native(
    rt: &Runtime,
    extracts: &Path,
    source: &str,
    rows: u64,
    batch_rows: usize,
) -> Result<RunReport, agnes_runtime::Error> {
    let schema = synth_rows::schema();
    let table = agnes_runtime::TableSpec {
        name: "synth".into(),
        description: Some("synthetic rows".into()),
        schema: schema.clone(),
        primary_key: vec![],
        cursor_field: None,
    };
    let req = request(extracts, source, serde_json::json!({}), &[]);
    rt.run_native(req, vec![table], |out| {
        let mut writer: Option<arrow_ipc::writer::StreamWriter<Vec<u8>>> = None;
        let mut start = 0u64;
        while start < rows {
            let len = (rows - start).min(batch_rows as u64) as usize;
            let batch = synth_rows::batch(&schema, start as i64, len);
            let w = match &mut writer {
                Some(w) => w,
                None => writer
                    .insert(arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &schema).unwrap()),
            };
            w.write(&batch).unwrap();
            out.emit("synth", std::mem::take(w.get_mut()))?;
            start += len as u64;
        }
        Ok(None)
    })
}

/// An operator's grant: `http` rules and one secret `name`, its `value` in a file under `dir`.
pub fn grant_with_secret(
    dir: &Path,
    http: Vec<agnes_runtime::HttpGrant>,
    name: &str,
    value: &str,
) -> Grant {
    let file = dir.join(format!("{name}.secret"));
    std::fs::write(&file, value).unwrap();
    let secret = agnes_runtime::SecretGrant {
        file: Some(file),
        ..agnes_runtime::SecretGrant::default()
    };
    Grant {
        http,
        secrets: [(name.to_string(), secret)].into(),
        ..Grant::default()
    }
}

/// A run of `connectors-wasm/<connector>` as `source` under `<dir>/extracts`, from
/// `state`, with the operator's `grant` narrowed by the connector's own `connector.toml`
/// (request ∩ grant, as a signed run gets it).
pub fn connector_request(
    dir: &Path,
    connector: &str,
    source: &str,
    config: serde_json::Value,
    grant: &Grant,
    state: Option<String>,
) -> RunRequest {
    let (grant, limits) = connector_manifest(connector)
        .effective(grant, &Limits::default())
        .unwrap();
    let mut req = request(&dir.join("extracts"), source, config, &[]);
    req.grant = grant;
    req.limits = limits;
    req.state = state;
    req
}

/// The integer `sql` returns, on the extract at `extract_dir`.
pub fn query_i64(extract_dir: &Path, sql: &str) -> i64 {
    open_extract(extract_dir)
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

/// The `keys` of every object in the JSON array `v`: one array per object
/// (`pick(&tables, &["name", "registered"])` → `[["orders", true], ...]`), or with one key
/// the values themselves (`pick(&tables, &["name"])` → `["orders", ...]`).
pub fn pick(v: &serde_json::Value, keys: &[&str]) -> serde_json::Value {
    let items = v.as_array().map(Vec::as_slice).unwrap_or(&[]);
    items
        .iter()
        .map(|item| match keys {
            [one] => item[*one].clone(),
            _ => keys.iter().map(|k| item[*k].clone()).collect(),
        })
        .collect()
}

/// POSTs `bytes` as the multipart field `file` named `file_name`: the status and JSON answer.
pub fn upload(
    base: &str,
    token: &str,
    path: &str,
    file_name: &str,
    bytes: &[u8],
) -> (u16, serde_json::Value) {
    let boundary = "agnes-test-boundary-7d1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = http()
        .post(&format!("{base}{path}"))
        .header("Authorization", &bearer(token))
        .header(
            "Content-Type",
            &format!("multipart/form-data; boundary={boundary}"),
        )
        .send(&body[..]);
    match r {
        Ok(r) => {
            let status = r.status().as_u16();
            let bytes = read_bytes(r);
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            )
        }
        // a server that refuses early may close before the whole body is sent
        Err(e) => (0, serde_json::json!({"transport_error": e.to_string()})),
    }
}

/// A self-signed certificate for `localhost` / 127.0.0.1, made with the openssl CLI.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let o = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .output()
        .expect("openssl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (cert, key)
}
