//! The connector kit: `agnes connector new` scaffolds a crate outside the project tree that
//! builds with plain cargo for wasm32-wasip2, runs, signs and verifies.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The wasm32-wasip2 toolchain scripts/setup.sh records (`WASM_CARGO`, `WASM_RUSTC`).
fn toolchain() -> (String, String) {
    let env =
        std::fs::read_to_string("/etc/agnes/wasm-toolchain.env").expect("run scripts/setup.sh");
    let get = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in /etc/agnes/wasm-toolchain.env"))
            .to_string()
    };
    (get("WASM_CARGO"), get("WASM_RUSTC"))
}

/// The cargo-component binary scripts/setup.sh installed, when it could.
fn cargo_component() -> Option<PathBuf> {
    let env = std::fs::read_to_string("/etc/agnes/cargo-component.env").ok()?;
    let path = env
        .lines()
        .find_map(|l| l.strip_prefix("CARGO_COMPONENT="))?;
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// `cargo build --release --target wasm32-wasip2` in `dir`, sharing one target dir across
/// runs: the component's path.
fn build(dir: &Path, artifact: &str) -> PathBuf {
    let (cargo, rustc) = toolchain();
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("connector-kit");
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--offline",
    ])
    .current_dir(dir)
    .env("CARGO_TARGET_DIR", &target)
    .env("RUSTC", rustc);
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO",
        "CARGO_MANIFEST_DIR",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "building {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = target.join(format!("wasm32-wasip2/release/{artifact}.wasm"));
    assert!(wasm.exists(), "{} was not produced", wasm.display());
    wasm
}

fn agnes(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_agnes"))
        .args(args)
        .current_dir(cwd)
        .env("AGNES_CACHE_DIR", cwd.join(".cache"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// `agnes connector test WASM --fixtures fixtures` of a scaffold in `dir` (extra args after).
fn test_fixtures(wasm: &str, extra: &[&str], dir: &Path) -> std::process::Output {
    let mut args = vec!["connector", "test", wasm, "--fixtures", "fixtures"];
    args.extend_from_slice(extra);
    args.extend(["--allow-unsigned", "--manifest", "connector.toml"]);
    agnes(&args, dir)
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_scaffolded_connector_builds_runs_signs_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let o = agnes(
        &["connector", "new", "lines", "--kind", "file", "--json"],
        tmp.path(),
    );
    let v: Value = serde_json::from_str(&ok(&o)).unwrap();
    let files: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in [
        "Cargo.toml",
        "src/lib.rs",
        "connector.toml",
        "README.md",
        ".gitignore",
        "fixtures/run.toml",
        "Cargo.lock",
        "vendor/wit/connector-0.2/connector.wit",
    ] {
        assert!(files.contains(&f), "{f}: {files:?}");
    }
    let dir = tmp.path().join("lines");
    // refuses to write over a directory in use, and bad names
    let o = agnes(&["connector", "new", "lines"], tmp.path());
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not empty"));
    let o = agnes(&["connector", "new", "Bad_Name"], tmp.path());
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("[a-z0-9-]"));

    let wasm = build(&dir, "agnes_connector_lines");
    // reproducible: the same scaffold in another directory gives the same bytes
    let digest = |p: &Path| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
    };
    let first = digest(&wasm);
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    ok(&agnes(
        &["connector", "new", "lines", "--kind", "file"],
        &elsewhere,
    ));
    let again = build(&elsewhere.join("lines"), "agnes_connector_lines");
    assert_eq!(
        digest(&again),
        first,
        "same source, same toolchain: the same component"
    );
    let wasm = build(&dir, "agnes_connector_lines");
    let wasm_s = wasm.to_str().unwrap();
    // it runs against its fixture, within what connector.toml requests
    let out = tmp.path().join("extracts/lines");
    ok(&agnes(
        &[
            "connector",
            "run",
            wasm_s,
            "--config",
            "fixtures/run.toml",
            "--out",
            out.to_str().unwrap(),
            "--allow-unsigned",
            "--manifest",
            "connector.toml",
        ],
        &dir,
    ));
    let shown = ok(&agnes(
        &["extract", "show", out.to_str().unwrap(), "-n", "5"],
        &dir,
    ));
    assert!(
        shown.contains("3 rows") && shown.contains("hello.txt | 2 | world"),
        "{shown}"
    );
    // the same crate with `cargo component build` (wasm32-wasip1 + the WASI adapter): it
    // runs and passes its fixtures too
    let mut cc_built: Option<PathBuf> = None;
    match cargo_component() {
        Some(cc) => {
            let (cargo, rustc) = toolchain();
            let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("connector-kit");
            let path = format!(
                "{}:{}",
                cc.parent().unwrap().display(),
                std::env::var("PATH").unwrap_or_default()
            );
            let out = Command::new(cargo)
                .args(["component", "build", "--release", "--offline"])
                .current_dir(&dir)
                .env("PATH", path)
                .env("CARGO_TARGET_DIR", &target)
                .env("RUSTC", rustc)
                .env_remove("RUSTUP_TOOLCHAIN")
                .env_remove("CARGO_BUILD_TARGET")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "cargo component build: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let cc_wasm = target.join("wasm32-wasip1/release/agnes_connector_lines.wasm");
            let report = ok(&test_fixtures(cc_wasm.to_str().unwrap(), &[], &dir));
            assert!(
                report.contains("3 rows") && !report.contains("FAIL"),
                "{report}"
            );
            cc_built = Some(cc_wasm);
        }
        None => eprintln!(
            "NOTE: cargo component is unavailable on this machine (/etc/agnes/cargo-component.env): only the plain cargo build was tested"
        ),
    }
    // tested against its fixtures: the extract contract and a stable schema
    let report = ok(&test_fixtures(wasm_s, &[], &dir));
    assert!(
        report.contains("_meta lists 1 table(s): lines") && !report.contains("FAIL"),
        "{report}"
    );
    // signed with connector.toml; verified against the key; a flipped byte is refused
    ok(&agnes(
        &[
            "connector",
            "keygen",
            tmp.path().join("keys/ops").to_str().unwrap(),
        ],
        &dir,
    ));
    std::fs::create_dir_all(tmp.path().join("trusted")).unwrap();
    std::fs::copy(
        tmp.path().join("keys/ops.pub"),
        tmp.path().join("trusted/ops.pub"),
    )
    .unwrap();
    let component = tmp.path().join("lines.wasm");
    std::fs::copy(&wasm, &component).unwrap();
    let c = component.to_str().unwrap();
    ok(&agnes(
        &[
            "connector",
            "sign",
            c,
            "--manifest",
            "connector.toml",
            "--key",
            tmp.path().join("keys/ops.key").to_str().unwrap(),
        ],
        &dir,
    ));
    let trusted = tmp.path().join("trusted");
    let verified = ok(&agnes(
        &[
            "connector",
            "verify",
            c,
            "--manifest",
            "connector.toml",
            "--trusted-keys",
            trusted.to_str().unwrap(),
        ],
        &dir,
    ));
    assert!(verified.contains("dir /data"), "{verified}");
    // the cargo-component build signs and verifies the same way
    if let Some(cc_wasm) = &cc_built {
        let copy = tmp.path().join("lines-cc.wasm");
        std::fs::copy(cc_wasm, &copy).unwrap();
        let copy_s = copy.to_str().unwrap();
        ok(&agnes(
            &[
                "connector",
                "sign",
                copy_s,
                "--manifest",
                "connector.toml",
                "--key",
                tmp.path().join("keys/ops.key").to_str().unwrap(),
            ],
            &dir,
        ));
        let verified = ok(&agnes(
            &[
                "connector",
                "verify",
                copy_s,
                "--manifest",
                "connector.toml",
                "--trusted-keys",
                trusted.to_str().unwrap(),
            ],
            &dir,
        ));
        assert!(verified.contains("OK: lines 0.1.0"), "{verified}");
    }
    // one artifact: the component with its connector.toml and signature embedded
    let package = tmp.path().join("lines.agnes.wasm");
    ok(&agnes(
        &[
            "connector",
            "package",
            c,
            "--manifest",
            "connector.toml",
            "-o",
            package.to_str().unwrap(),
        ],
        &dir,
    ));
    let p = package.to_str().unwrap();
    let verified = ok(&agnes(
        &[
            "connector",
            "verify",
            p,
            "--trusted-keys",
            trusted.to_str().unwrap(),
        ],
        &dir,
    ));
    assert!(verified.contains("OK: lines 0.1.0"), "{verified}");
    let inspected = ok(&agnes(
        &[
            "connector",
            "inspect",
            p,
            "--trusted-keys",
            trusted.to_str().unwrap(),
        ],
        &dir,
    ));
    assert!(
        inspected.contains("(verified)") && inspected.contains("dir /data"),
        "{inspected}"
    );
    let mut tampered = std::fs::read(&package).unwrap();
    tampered[100] ^= 1;
    let bad = tmp.path().join("tampered.agnes.wasm");
    std::fs::write(&bad, tampered).unwrap();
    let o = agnes(
        &[
            "connector",
            "verify",
            bad.to_str().unwrap(),
            "--trusted-keys",
            trusted.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(
        !o.status.success(),
        "a flipped byte in a package must not verify"
    );

    // upload the package to a real server, approve it, sync a source with it
    let server = agnes_tests::TestServer::start_with(|cfg| {
        cfg.trusted_keys = Some(trusted.clone());
        cfg.allow_unsigned_connectors = false;
    });
    let admin = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_agnes"))
            .arg("admin")
            .args(args)
            .current_dir(&dir)
            .env("AGNES_SERVER", &server.base)
            .env("AGNES_TOKEN", &server.admin)
            .env("AGNES_CONFIG_DIR", tmp.path().join("config"))
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        ok(&o)
    };
    let up = admin(&["connector", "upload", p]);
    assert!(up.contains("uploaded lines@0.1.0"), "{up}");
    admin(&["connector", "approve", "lines@0.1.0"]);
    let data = dir.join("fixtures/data").canonicalize().unwrap();
    let grant = format!(
        r#"{{"dirs": [{{"host": "{}", "guest": "/data"}}]}}"#,
        data.display()
    );
    admin(&[
        "source",
        "add",
        "notes",
        "--connector",
        "lines@0.1.0",
        "--config",
        r#"{"dir": "/data"}"#,
        "--grant",
        &grant,
        "--table",
        "lines",
    ]);
    let synced = admin(&["source", "sync", "notes", "--wait"]);
    assert!(synced.contains("lines ok (3 rows)"), "{synced}");

    let mut bytes = std::fs::read(&component).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&component, bytes).unwrap();
    let o = agnes(
        &[
            "connector",
            "verify",
            c,
            "--manifest",
            "connector.toml",
            "--trusted-keys",
            trusted.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(!o.status.success(), "a flipped byte must not verify");
}

#[test]
fn the_http_and_database_scaffolds_build() {
    let tmp = tempfile::tempdir().unwrap();
    for (kind, name) in [("http", "items-api"), ("database", "pg-tables")] {
        ok(&agnes(
            &["connector", "new", name, "--kind", kind],
            tmp.path(),
        ));
        let dir = tmp.path().join(name);
        let manifest = std::fs::read_to_string(dir.join("connector.toml")).unwrap();
        assert!(
            manifest.contains(if kind == "http" {
                "[[requests.http]]"
            } else {
                "[[requests.databases]]"
            }),
            "{manifest}"
        );
        let wasm = build(&dir, &format!("agnes_connector_{}", name.replace('-', "_")));
        let inspected = ok(&agnes(
            &[
                "connector",
                "inspect",
                wasm.to_str().unwrap(),
                "--manifest",
                "connector.toml",
            ],
            &dir,
        ));
        assert!(inspected.contains("agnes:connector@0.2.0"), "{inspected}");
        if kind != "http" {
            continue;
        }
        // the recorded API answers the connector in the sandbox: no network, grants still apply
        let test = |dir: &Path| test_fixtures(wasm.to_str().unwrap(), &[], dir);
        let report = ok(&test(&dir));
        assert!(
            report.contains("1 tables, 2 rows, 1 HTTP exchanges")
                && report.contains("the same schema on a second run"),
            "{report}"
        );
        assert!(!report.contains("FAIL"), "{report}");
        // a request the recording does not have fails the test, naming it
        let http = dir.join("fixtures/http.json");
        let recorded = std::fs::read_to_string(&http).unwrap();
        std::fs::write(&http, recorded.replace("/v1/items", "/v1/other")).unwrap();
        let o = test(&dir);
        let text =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{text}");
        assert!(
            text.contains("unexpected request GET https://api.example.com/v1/items"),
            "{text}"
        );
        // a request outside the grant is refused before any fixture is consulted
        std::fs::write(&http, recorded).unwrap();
        let run = dir.join("fixtures/run.toml");
        let config = std::fs::read_to_string(&run).unwrap();
        std::fs::write(
            &run,
            config.replace(
                "base_url = \"https://api.example.com/v1\"",
                "base_url = \"https://evil.example.net/v1\"",
            ),
        )
        .unwrap();
        let o = test(&dir);
        let text =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && text.contains("evil.example.net"),
            "{text}"
        );
        assert!(
            !text.contains("not-a-real-token"),
            "the secret never appears: {text}"
        );

        // --record against a live API (a local server), once; then the recording replays
        // with the server gone, and the token never lands in the recording
        let api = agnes_tests::Loopback::start(axum::Router::new().route(
            "/v1/items",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!({"items": [{"id": 7, "name": "live"}, {"id": 8, "name": "also"}, {"id": 9, "name": "three"}]}))
            }),
        ));
        let port = api.grant().ports[0];
        std::fs::write(
            &run,
            format!(
                "[config]\nbase_url = \"{}\"\n\n[[grant.http]]\nhost = \"127.0.0.1\"\nports = [{port}]\nallow_http = true\nallow_private = true\n\n[grant.secrets.api_token]\nfile = \"token.txt\"\nhosts = [\"127.0.0.1\"]\n",
                api.url("/v1")
            ),
        )
        .unwrap();
        std::fs::remove_file(&http).unwrap();
        let recorded = ok(&test_fixtures(wasm.to_str().unwrap(), &["--record"], &dir));
        assert!(
            recorded.contains("recorded 1 exchanges") && recorded.contains("3 rows"),
            "{recorded}"
        );
        let saved = std::fs::read_to_string(&http).unwrap();
        assert!(
            saved.contains("live") && !saved.contains("not-a-real-token"),
            "{saved}"
        );
        let got = api.received();
        assert_eq!(got.len(), 1, "recorded once, replayed for the second run");
        assert_eq!(
            got[0].header("authorization"),
            Some("Bearer not-a-real-token"),
            "the host injected the secret"
        );
        drop(api);
        let replayed = ok(&test(&dir));
        assert!(
            replayed.contains("3 rows") && !replayed.contains("FAIL"),
            "{replayed}"
        );
    }
}

#[test]
fn the_ci_pipeline_builds_tests_signs_packages_and_uploads_a_scaffold() {
    let tmp = tempfile::tempdir().unwrap();
    ok(&agnes(&["connector", "new", "ci-lines"], tmp.path()));
    let dir = tmp.path().join("ci-lines");
    ok(&agnes(
        &[
            "connector",
            "keygen",
            tmp.path().join("keys/ops").to_str().unwrap(),
        ],
        tmp.path(),
    ));
    let trusted = tmp.path().join("trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(tmp.path().join("keys/ops.pub"), trusted.join("ops.pub")).unwrap();
    let server = agnes_tests::TestServer::start_with(|cfg| {
        cfg.trusted_keys = Some(trusted.clone());
        cfg.allow_unsigned_connectors = false;
    });
    let (cargo, rustc) = toolchain();
    let script = agnes_tests::repo_root().join("scripts/connector-ci.sh");
    let o = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .env("AGNES", env!("CARGO_BIN_EXE_agnes"))
        .env("AGNES_SIGNING_KEY", tmp.path().join("keys/ops.key"))
        .env("AGNES_SERVER", &server.base)
        .env("AGNES_TOKEN", &server.admin)
        .env("AGNES_CONFIG_DIR", tmp.path().join("config"))
        .env("AGNES_CACHE_DIR", tmp.path().join("cache"))
        .env("CARGO", cargo)
        .env("RUSTC", rustc)
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("connector-kit"),
        )
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("_meta lists 1 table(s)") && text.contains("uploaded ci-lines@0.1.0"),
        "{text}"
    );
    assert!(dir.join("agnes-connector-ci-lines.agnes.wasm").exists());
    let listed = server.admin_call("GET", "/api/admin/connectors", None);
    assert_eq!(
        listed["connectors"][0]["status"], "pending",
        "uploads wait for a security reviewer: {listed}"
    );

    // the GitHub Actions example runs the same agnes commands as the script
    let yml =
        std::fs::read_to_string(agnes_tests::repo_root().join("docs/examples/connector-ci.yml"))
            .unwrap();
    let script_text = std::fs::read_to_string(&script).unwrap();
    // `[admin] connector <verb>` on every line that is not a comment
    let commands = |text: &str| -> Vec<String> {
        let mut c = Vec::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let words: Vec<&str> = line.split_whitespace().collect();
            for (k, w) in words.iter().enumerate() {
                if *w == "connector"
                    && k + 1 < words.len()
                    && (k > 0
                        && (words[k - 1].ends_with("agnes")
                            || words[k - 1].ends_with("AGNES\"")
                            || words[k - 1] == "admin"))
                {
                    let admin = if words[k - 1] == "admin" {
                        "admin "
                    } else {
                        ""
                    };
                    c.push(format!("{admin}connector {}", words[k + 1]));
                }
            }
        }
        c.sort();
        c.dedup();
        c
    };
    assert!(commands(&yml).len() >= 4, "{:?}", commands(&yml));
    assert_eq!(commands(&yml), commands(&script_text));
}

#[test]
fn connector_test_asks_a_query_capable_connector_a_query() {
    use agnes_tests::pg::{PgCluster, READER_PASSWORD};
    let pg = PgCluster::start();
    pg.psql("app", "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 50) g;");
    pg.grant_select();
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = tmp.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    std::fs::write(fixtures.join("password"), READER_PASSWORD).unwrap();
    let g = pg.grant("reader", None);
    std::fs::write(
        fixtures.join("run.toml"),
        format!(
            "[config]\n\n[grant.databases.main]\nhost = \"{}\"\nport = {}\ndatabase = \"app\"\nuser = \"reader\"\npassword = {{ file = \"password\" }}\ntls = \"disable\"\nallow_private = true\n",
            g.host, g.port
        ),
    )
    .unwrap();
    let manifest = agnes_tests::repo_root().join("connectors-wasm/postgres/connector.toml");
    let o = agnes(
        &[
            "connector",
            "test",
            agnes_tests::POSTGRES_COMPONENT,
            "--fixtures",
            fixtures.to_str().unwrap(),
            "--allow-unsigned",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let report = ok(&o);
    assert!(
        report.contains("agnes:connector@0.2.0")
            && report.contains("query items limit 10: 10 rows, the same columns as read"),
        "{report}"
    );
    assert!(
        report.contains("items: 50 rows") && !report.contains("FAIL"),
        "{report}"
    );
    assert!(!report.contains(READER_PASSWORD), "{report}");
}
