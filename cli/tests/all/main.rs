//! Tests of the real `agnes` binary: arguments, output formats, exit codes.
//! The runtime's behaviour itself is tested in `tests/all`; here only what the CLI adds.

mod admin;
mod analyst;
mod chaos;
mod kit;
mod scale_out;

use std::path::Path;
use std::process::{Command, Output};

use agnes_tests::{CSV_COMPONENT, HOSTILE_COMPONENT, POSTGRES_COMPONENT, repo_root};

fn agnes(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agnes"))
        .args(args)
        .env("AGNES_CACHE_DIR", cache)
        .env_remove("RUST_LOG")
        .output()
        .expect("running agnes")
}

/// `agnes connector run <component> --config <config> --out <out> <extra...>`
fn run_connector(
    component: &str,
    config: &Path,
    out: &Path,
    extra: &[&str],
    cache: &Path,
) -> Output {
    let mut args = vec![
        "connector",
        "run",
        component,
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if !extra.contains(&"--trusted-keys") {
        args.push("--allow-unsigned");
    }
    args.extend_from_slice(extra);
    agnes(&args, cache)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn run_the_demo_then_show_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("extracts/demo");
    let config = repo_root().join("examples/demo/source.toml");
    let o = run_connector(CSV_COMPONENT, &config, &out, &["--json"], tmp.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["source"], "demo");
    assert_eq!(report["rows"], 200 + 2500 + 40);
    assert_eq!(report["tables"].as_array().unwrap().len(), 3);
    assert!(
        report["component_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    let o = agnes(
        &[
            "extract",
            "show",
            out.to_str().unwrap(),
            "--json",
            "-n",
            "2",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let tables: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let orders = tables
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table_name"] == "orders")
        .unwrap();
    assert_eq!(orders["rows"], 2500);
    assert_eq!(orders["sample"].as_array().unwrap().len(), 2);
    assert_eq!(orders["columns"][0], "order_id");

    // human output: one summary line
    let o = run_connector(CSV_COMPONENT, &config, &out, &[], tmp.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.starts_with("demo: 3 tables, 2,740 rows,"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1);

    let o = run_connector(CSV_COMPONENT, &config, &out, &["-q"], tmp.path());
    assert!(o.status.success());
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "--quiet prints nothing"
    );
}

#[test]
fn discover_lists_tables_and_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let config = repo_root().join("examples/demo/source.toml");
    let o = agnes(
        &[
            "connector",
            "discover",
            CSV_COMPONENT,
            "--allow-unsigned",
            "--config",
            config.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("orders  -- CSV file orders.csv"),
        "{stdout}"
    );
    assert!(stdout.contains("  amount Float64"), "{stdout}");
}

#[test]
fn a_bad_run_config_exits_2_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    std::fs::write(&config, "[grant]\nnetwork = true\n").unwrap();
    let out = tmp.path().join("extracts/x");
    let o = run_connector(CSV_COMPONENT, &config, &out, &[], tmp.path());
    assert_eq!(o.status.code(), Some(2));
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("unknown field `network`"),
        "{stderr}"
    );
}

/// Issue 20: `memory_mb` bounds only the guest; the host's own memory for a run's output is
/// bounded by `host_memory_mb` (row groups flushed by bytes). Measured in a process of its
/// own: its peak RSS, as `agnes connector run --json` reports it. Without the bound this run
/// peaked at 436 MB (600,000 rows of 1 KiB, two tables).
#[test]
fn issue20_host_memory_stays_under_its_budget_while_two_tables_flood_it() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("run.toml");
    std::fs::write(
        &config,
        "source = \"src\"\n[config]\nmode = \"two_tables\"\nrows = 300000\nbatch = 2000\n\
         [limits]\nmemory_mb = 256\nhost_memory_mb = 128\ntimeout_secs = 600\n",
    )
    .unwrap();
    let out = tmp.path().join("out/src");
    let o = run_connector(HOSTILE_COMPONENT, &config, &out, &["--json"], tmp.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["rows"], 600_000);
    let peak = report["peak_rss_bytes"]
        .as_u64()
        .expect("Linux reports VmHWM");
    // the budget, plus the process itself (runtime, compiled component, DuckDB)
    assert!(
        peak < (128 + 128) << 20,
        "peak RSS {} MB over a 128 MiB host budget",
        peak >> 20
    );
}

#[test]
fn a_failed_run_exits_1_and_says_nothing_was_published() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("src.toml");
    std::fs::write(&config, "[config]\nmode = \"garbage\"\n").unwrap();
    let out = tmp.path().join("extracts/src");
    let o = run_connector(HOSTILE_COMPONENT, &config, &out, &[], tmp.path());
    assert_eq!(o.status.code(), Some(1));
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("nothing was published") && stderr.contains("not valid Arrow IPC"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn an_unverified_component_is_refused_unless_explicitly_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let config = repo_root().join("examples/demo/source.toml");
    let out = tmp.path().join("extracts/demo");
    let o = agnes(
        &[
            "connector",
            "run",
            CSV_COMPONENT,
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("refusing to run") && text(&o.stderr).contains("--trusted-keys"),
        "{}",
        text(&o.stderr)
    );
    assert!(!out.exists(), "nothing ran, nothing was written");
    let o = run_connector(CSV_COMPONENT, &config, &out, &[], tmp.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("warning: running")
            && text(&o.stderr).contains("--allow-unsigned"),
        "the escape hatch says what it does: {}",
        text(&o.stderr)
    );
}

#[test]
fn source_name_must_agree_with_out() {
    let tmp = tempfile::tempdir().unwrap();
    let config = repo_root().join("examples/demo/source.toml");
    let out = tmp.path().join("extracts/other");
    let o = run_connector(CSV_COMPONENT, &config, &out, &[], tmp.path());
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("declares source `demo` but --out names `other`"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn signed_components_are_verified_before_they_run() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    let s = |path: &Path| path.to_str().unwrap().to_string();
    let manifest = repo_root().join("connectors-wasm/csv/connector.toml");
    let config = repo_root().join("examples/demo/source.toml");
    std::fs::copy(CSV_COMPONENT, p("csv.wasm")).unwrap();
    std::fs::create_dir(p("trusted")).unwrap();

    let o = agnes(&["connector", "keygen", &s(&p("trusted/ops"))], tmp.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mode = std::fs::metadata(p("trusted/ops.key"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    std::fs::rename(p("trusted/ops.key"), p("ops.key")).unwrap();
    let o = agnes(
        &[
            "connector",
            "sign",
            &s(&p("csv.wasm")),
            "--manifest",
            &s(&manifest),
            "--key",
            &s(&p("ops.key")),
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(p("csv.wasm.sig").exists());

    let verify = |component: &str, manifest: &Path| {
        agnes(
            &[
                "connector",
                "verify",
                component,
                "--manifest",
                &s(manifest),
                "--trusted-keys",
                &s(&p("trusted")),
            ],
            tmp.path(),
        )
    };
    let o = verify(&s(&p("csv.wasm")), &manifest);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("OK: csv 0.1.0 signed by key")
            && text(&o.stdout).contains("/data"),
        "{}",
        text(&o.stdout)
    );

    let run = |component: &str, manifest: &Path, out: &str| {
        let out = s(&p(out));
        agnes(
            &[
                "connector",
                "run",
                component,
                "--config",
                &s(&config),
                "--out",
                &out,
                "--manifest",
                &s(manifest),
                "--trusted-keys",
                &s(&p("trusted")),
                "-q",
            ],
            tmp.path(),
        )
    };
    let o = run(&s(&p("csv.wasm")), &manifest, "extracts/demo");
    assert!(
        o.status.success(),
        "a signed component runs: {}",
        text(&o.stderr)
    );

    // tampered component: refused before it is compiled, nothing published
    let mut bytes = std::fs::read(p("csv.wasm")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(p("tampered.wasm"), &bytes).unwrap();
    std::fs::copy(p("csv.wasm.sig"), p("tampered.wasm.sig")).unwrap();
    let o = run(&s(&p("tampered.wasm")), &manifest, "extracts2/demo");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("component was modified after signing"),
        "{}",
        text(&o.stderr)
    );
    assert!(!p("extracts2/demo").exists());

    // a connector.toml that asks for more than was signed
    std::fs::write(
        p("greedy.toml"),
        std::fs::read_to_string(&manifest)
            .unwrap()
            .replace("[\"/data\"]", "[\"/data\", \"/etc\"]"),
    )
    .unwrap();
    let o = verify(&s(&p("csv.wasm")), &p("greedy.toml"));
    assert!(
        text(&o.stderr).contains("connector.toml was modified after signing"),
        "{}",
        text(&o.stderr)
    );

    // unsigned, and signed by a key nobody trusts
    std::fs::copy(p("csv.wasm"), p("unsigned.wasm")).unwrap();
    let o = verify(&s(&p("unsigned.wasm")), &manifest);
    assert!(
        text(&o.stderr).contains("no signature at"),
        "{}",
        text(&o.stderr)
    );
    let o = agnes(&["connector", "keygen", &s(&p("rogue"))], tmp.path());
    assert!(o.status.success());
    let o = agnes(
        &[
            "connector",
            "sign",
            &s(&p("unsigned.wasm")),
            "--manifest",
            &s(&manifest),
            "--key",
            &s(&p("rogue.key")),
        ],
        tmp.path(),
    );
    assert!(o.status.success());
    let o = verify(&s(&p("unsigned.wasm")), &manifest);
    assert!(
        text(&o.stderr).contains("not trusted"),
        "{}",
        text(&o.stderr)
    );

    // a request the run config does not grant fails with the capability and the fix
    let needs_more = p("needs.toml");
    std::fs::write(
        &needs_more,
        "name = \"csv\"\nversion = \"0.1.0\"\n[requests]\ndirs = [\"/data\", \"/archive\"]\n",
    )
    .unwrap();
    let o = agnes(
        &[
            "connector",
            "sign",
            &s(&p("csv.wasm")),
            "--manifest",
            &s(&needs_more),
            "--key",
            &s(&p("ops.key")),
            "--out",
            &s(&p("needs.sig")),
        ],
        tmp.path(),
    );
    assert!(o.status.success());
    let o = agnes(
        &[
            "connector",
            "run",
            &s(&p("csv.wasm")),
            "--config",
            &s(&config),
            "--out",
            &s(&p("extracts3/demo")),
            "--manifest",
            &s(&needs_more),
            "--signature",
            &s(&p("needs.sig")),
            "--trusted-keys",
            &s(&p("trusted")),
        ],
        tmp.path(),
    );
    let stderr = text(&o.stderr);
    assert!(
        !o.status.success()
            && stderr.contains("requests directory /archive, which is not granted")
            && stderr.contains("[[grant.dirs]]"),
        "{stderr}"
    );
}

#[test]
fn inspect_shows_the_capability_surface_and_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = repo_root().join("connectors-wasm/csv/connector.toml");
    let o = agnes(
        &[
            "connector",
            "inspect",
            CSV_COMPONENT,
            "--manifest",
            manifest.to_str().unwrap(),
            "--json",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let imports: Vec<&str> = v["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert!(
        imports.contains(&"agnes:connector/host@0.2.0#emit"),
        "{imports:?}"
    );
    assert_eq!(v["world"], "agnes:connector@0.2.0");
    assert!(
        !imports
            .iter()
            .any(|i| i.starts_with("agnes:connector/database")),
        "the csv connector opens no database: {imports:?}"
    );
    assert!(
        imports.iter().any(|i| i.starts_with("wasi:filesystem/")),
        "the csv connector reads files"
    );
    assert!(
        !imports.iter().any(|i| i.starts_with("wasi:sockets/")),
        "and has no sockets"
    );
    assert!(
        !imports.iter().any(|i| i.starts_with("wasi:http/")),
        "nor outbound HTTP"
    );
    assert_eq!(v["exports"].as_array().unwrap().len(), 6);
    assert_eq!(v["requests"]["dirs"], serde_json::json!(["/data"]));
    assert!(v["digest"].as_str().unwrap().starts_with("sha256:"));

    // a database connector: the database import and its request, for the reviewer
    let manifest = repo_root().join("connectors-wasm/postgres/connector.toml");
    let o = agnes(
        &[
            "connector",
            "inspect",
            POSTGRES_COMPONENT,
            "--manifest",
            manifest.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for line in [
        "world   agnes:connector@0.2.0",
        "  database main (postgres)",
        "  agnes:connector/database@0.2.0#connect",
        "  agnes:connector/source@0.2.0#query",
    ] {
        assert!(out.contains(line), "{line} in:\n{out}");
    }
    assert!(!out.contains("wasi:sockets/"), "no raw sockets: {out}");
    // a component built against 0.1.0 says so
    let old = repo_root().join("tests/fixtures/synth-0.1.0.wasm");
    let o = agnes(&["connector", "inspect", old.to_str().unwrap()], tmp.path());
    assert!(
        text(&o.stdout).contains("world   agnes:connector@0.1.0"),
        "{}",
        text(&o.stdout)
    );

    let o = agnes(
        &[
            "connector",
            "inspect",
            CSV_COMPONENT,
            "--diff",
            HOSTILE_COMPONENT,
            "--json",
        ],
        tmp.path(),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let changes: Vec<&str> = v["diff"]["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("- wasi:clocks/monotonic-clock@")
                && c.ends_with("#subscribe-duration")),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("+ wasi:filesystem/types@")
                && c.ends_with("#[method]descriptor.read-directory")),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("- wasi:http/outgoing-handler@") && c.ends_with("#handle")),
        "the older component could send HTTP, the newer cannot: {changes:?}"
    );
    let o = agnes(
        &[
            "connector",
            "inspect",
            CSV_COMPONENT,
            "--diff",
            CSV_COMPONENT,
        ],
        tmp.path(),
    );
    assert!(
        text(&o.stdout).contains("none in imports, exports or requests"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn a_run_config_grants_a_host_and_a_secret() {
    use axum::routing::get;
    let tmp = tempfile::tempdir().unwrap();
    let server = agnes_tests::Loopback::start(axum::Router::new().route(
        "/items",
        get(|| async {
            axum::Json(serde_json::json!([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]))
        }),
    ));
    std::fs::write(tmp.path().join("token"), "cli-secret-1\n").unwrap();
    let config = tmp.path().join("api.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[config]
base_url = "{base}"
auth = {{ type = "bearer" }}
[[config.tables]]
name = "items"
path = "/items"

[[grant.http]]
host = "127.0.0.1"
ports = [{port}]
allow_http = true
allow_private = true

[grant.secrets.api_token]
file = "token"
"#,
            base = server.url(""),
            port = server.port
        ),
    )
    .unwrap();
    let manifest = repo_root().join("connectors-wasm/http-json/connector.toml");
    let out = tmp.path().join("extracts/api");
    let o = run_connector(
        agnes_tests::HTTP_JSON_COMPONENT,
        &config,
        &out,
        &["--manifest", manifest.to_str().unwrap(), "--json"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["rows"], 2);
    let got = server.received();
    assert_eq!(got[0].header("authorization"), Some("Bearer cli-secret-1"));
    assert!(!text(&o.stdout).contains("cli-secret-1") && !text(&o.stderr).contains("cli-secret-1"));

    // the same run config without the http grant: refused, naming what to add
    let bare = std::fs::read_to_string(&config).unwrap();
    let cut = bare.find("[[grant.http]]").unwrap();
    let end = bare.find("[grant.secrets").unwrap();
    std::fs::write(&config, format!("{}{}", &bare[..cut], &bare[end..])).unwrap();
    let o = run_connector(
        agnes_tests::HTTP_JSON_COMPONENT,
        &config,
        &tmp.path().join("extracts/api2"),
        &["--manifest", manifest.to_str().unwrap()],
        tmp.path(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("outbound HTTP to *")
            && text(&o.stderr).contains("[[grant.http]]"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_reader_closing_stdout_early_is_not_an_error() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let manifest = repo_root().join("connectors-wasm/postgres/connector.toml");
    // `agnes connector inspect ... | head -n 1`: the reader goes away after one line
    let mut child = Command::new(env!("CARGO_BIN_EXE_agnes"))
        .args(["connector", "inspect", POSTGRES_COMPONENT, "--manifest"])
        .arg(&manifest)
        .env("AGNES_CACHE_DIR", tmp.path())
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // closed before the command writes anything
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status}: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}
