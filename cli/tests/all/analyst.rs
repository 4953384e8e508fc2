//! The analyst rails against a real server on loopback: init → pull → query, incremental
//! pulls, revoked grants, corrupted downloads, server down.

use std::path::Path;
use std::process::{Command, Output};

use agnes_tests::{CSV_COMPONENT, TestServer, bearer, http, read_json, repo_root};
use serde_json::{Value, json};

struct Env {
    server: Option<TestServer>,
    ana: String,
    data: tempfile::TempDir,
    config: tempfile::TempDir,
    ws: tempfile::TempDir,
}

impl Env {
    fn server(&self) -> &TestServer {
        self.server.as_ref().unwrap()
    }

    fn agnes(&self, args: &[&str]) -> Output {
        self.agnes_with(args, &[])
    }

    fn agnes_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_agnes"))
            .args(args)
            .envs(vars.iter().copied())
            .current_dir(self.ws.path())
            .env("AGNES_CONFIG_DIR", self.config.path())
            .env_remove("AGNES_SERVER")
            .env_remove("AGNES_TOKEN")
            .env_remove("AGNES_WORKSPACE")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        self.json_with(args, &[])
    }

    fn json_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let o = self.agnes_with(&a, vars);
        assert!(
            o.status.success(),
            "agnes {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "agnes {args:?}: {e}: {}",
                String::from_utf8_lossy(&o.stdout)
            )
        })
    }

    fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let s = self.server();
        let req = match method {
            "POST" => http().post(&s.url(path)),
            "DELETE" => http().delete(&s.url(path)).force_send_body(),
            _ => unreachable!(),
        };
        let r = req
            .header("Authorization", &bearer(&s.admin))
            .send_json(&body)
            .unwrap();
        assert!(r.status().is_success(), "{method} {path}: {}", r.status());
        read_json(r)
    }

    fn sync(&self) {
        self.admin("POST", "/api/sync/trigger", json!({}));
        self.server().wait_for_sync();
    }
}

fn setup() -> Env {
    let server = TestServer::start();
    let data = tempfile::tempdir().unwrap();
    for t in ["orders", "customers"] {
        std::fs::copy(
            repo_root().join(format!("examples/demo/data/{t}.csv")),
            data.path().join(format!("{t}.csv")),
        )
        .unwrap();
    }
    let mut env = Env {
        server: Some(server),
        ana: String::new(),
        data,
        config: tempfile::tempdir().unwrap(),
        ws: tempfile::tempdir().unwrap(),
    };
    let host = env.data.path().canonicalize().unwrap();
    for t in ["orders", "customers"] {
        env.admin(
            "POST",
            "/api/admin/register-table",
            json!({"name": t, "source": "demo", "connector": CSV_COMPONENT, "grant": {"dirs": [{"host": host, "guest": "/data"}]}}),
        );
    }
    env.sync();
    env.admin("POST", "/api/admin/groups", json!({"name": "sales"}));
    for t in ["orders", "customers"] {
        env.admin(
            "POST",
            "/api/admin/grants",
            json!({"group": "sales", "resource_type": "table", "resource_id": t}),
        );
    }
    env.ana = env.admin(
        "POST",
        "/api/admin/users",
        json!({"name": "ana", "groups": ["sales"]}),
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let base = env.server().base.clone();
    let o = env.agnes(&["init", "--server", &base, "--token", &env.ana]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    env
}

fn md5(path: &Path) -> String {
    agnes_tests::md5_file(path)
}

#[test]
fn init_pull_query_and_incremental_pulls() {
    let env = setup();
    // init saved the token privately and installed the agent hook
    let mode = std::fs::metadata(env.config.path().join("token"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let claude_md = std::fs::read_to_string(env.ws.path().join("CLAUDE.md")).unwrap();
    assert!(claude_md.starts_with("<!-- agnes:welcome"), "{claude_md}");
    assert!(
        claude_md.contains("`orders`") && claude_md.contains(&env.server().base),
        "{claude_md}"
    );
    let hook = std::fs::read_to_string(env.ws.path().join(".claude/settings.json")).unwrap();
    assert!(
        hook.contains("agnes pull --quiet || true") && hook.contains("SessionStart"),
        "{hook}"
    );
    // init merges into a settings.json with the user's own hooks and settings, once
    let settings = env.ws.path().join(".claude/settings.json");
    std::fs::write(
        &settings,
        r#"{"model": "opus", "hooks": {"SessionStart": [{"hooks": [{"type": "command", "command": "echo mine"}]}], "Stop": []}}"#,
    )
    .unwrap();
    let base = env.server().base.clone();
    for _ in 0..2 {
        let o = env.agnes(&["init", "--server", &base, "--token", &env.ana]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let merged: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(merged["model"], "opus");
    assert_eq!(merged["hooks"]["Stop"], json!([]));
    let start = merged["hooks"]["SessionStart"].to_string();
    assert!(
        start.contains("echo mine") && start.contains("agnes pull --quiet"),
        "{start}"
    );
    assert_eq!(
        merged["hooks"]["SessionStart"].as_array().unwrap().len(),
        2,
        "added once: {merged}"
    );
    assert!(
        merged["hooks"]["SessionEnd"]
            .to_string()
            .contains("agnes push --quiet"),
        "{merged}"
    );
    // a CLAUDE.md of the user's own is never clobbered by another init
    std::fs::write(env.ws.path().join("CLAUDE.md"), "# my notes\n").unwrap();
    let o = env.agnes(&["init", "--server", &base, "--token", &env.ana]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("CLAUDE.md kept (yours)"));
    assert_eq!(
        std::fs::read_to_string(env.ws.path().join("CLAUDE.md")).unwrap(),
        "# my notes\n"
    );

    let first = env.json(&["pull"]);
    assert_eq!(
        first["downloaded"],
        json!(["customers", "orders"]),
        "{first}"
    );
    let orders = env.ws.path().join("server/parquet/orders.parquet");
    let manifest = env.json(&["catalog"]);
    assert!(manifest["server_time"].is_string(), "{manifest}");
    let entry = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .unwrap();
    assert_eq!(
        md5(&orders),
        entry["md5"].as_str().unwrap(),
        "the local file is the served file"
    );
    assert_eq!(entry["local"], "local");

    let rows = env.json(&["query", "SELECT count(*) AS n FROM orders"]);
    assert_eq!(rows, json!([{"n": 2500}]));
    let joined = env.json(&["query", "SELECT count(DISTINCT c.region) AS regions FROM orders o JOIN customers c USING (customer_id)"]);
    assert_eq!(joined, json!([{"regions": 3}]));
    let o = env.agnes(&[
        "query",
        "SELECT order_id, amount FROM orders ORDER BY order_id LIMIT 2",
        "--format",
        "csv",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "order_id,amount\n1,861.56\n2,2484.95\n"
    );
    // a TIMESTAMPTZ result (DuckDB names the zone `Etc/UTC`) prints in every format
    let sql = "SELECT TIMESTAMPTZ '2024-01-02 03:04:05+00' AS t";
    for format in ["table", "csv", "json"] {
        let o = env.agnes(&["query", sql, "--format", format]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && stdout.contains("2024-01-02"),
            "{format}: {stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    let second = env.json(&["pull"]);
    assert_eq!(
        (
            second["downloaded"].clone(),
            second["unchanged"].clone(),
            second["bytes"].clone()
        ),
        (json!([]), json!(2), json!(0)),
        "a second pull downloads nothing"
    );

    // orders changes on the source: only orders is downloaded again
    let customers_before = md5(&env.ws.path().join("server/parquet/customers.parquet"));
    let mut csv = std::fs::read_to_string(env.data.path().join("orders.csv")).unwrap();
    csv.push_str("2501,1,1,1,9.99,2025-01-01T00:00:00,new\n");
    std::fs::write(env.data.path().join("orders.csv"), csv).unwrap();
    env.sync();
    let third = env.json(&["pull"]);
    assert_eq!(third["downloaded"], json!(["orders"]), "{third}");
    assert_eq!(
        env.json(&["query", "SELECT count(*) AS n FROM orders"]),
        json!([{"n": 2501}])
    );
    assert_eq!(
        md5(&env.ws.path().join("server/parquet/customers.parquet")),
        customers_before
    );

    // discovery rails
    let schema = env.json(&["schema", "orders"]);
    assert_eq!(
        schema["columns"][0],
        json!({"name": "order_id", "type": "BIGINT", "nullable": true, "description": ""})
    );
    assert_eq!(
        (
            schema["table_id"].as_str(),
            schema["sql_flavor"].as_str(),
            schema["source_type"].as_str()
        ),
        (Some("orders"), Some("duckdb"), Some("csv")),
        "the original client's fields: {schema}"
    );
    let d = env.json(&["describe", "orders", "-n", "2"]);
    assert_eq!(d["sample"]["row_count"], 2);
    assert_eq!(d["catalog"]["rows"], 2501);
    let remote = env.json(&["query", "--remote", "SELECT max(order_id) AS m FROM orders"]);
    assert_eq!(remote, json!([{"m": 2501}]));
    let disk = env.json(&["disk-info"]);
    assert!(
        disk["bytes"]["server/parquet"].as_u64().unwrap() > 40_000,
        "{disk}"
    );
    assert_eq!(disk["tables"], 2);
}

#[test]
fn a_revoked_grant_removes_the_local_table() {
    let env = setup();
    env.json(&["pull"]);
    env.admin(
        "DELETE",
        "/api/admin/grants",
        json!({"group": "sales", "resource_type": "table", "resource_id": "customers"}),
    );
    let r = env.json(&["pull"]);
    assert_eq!(r["removed"], json!(["customers"]), "{r}");
    assert!(
        !env.ws
            .path()
            .join("server/parquet/customers.parquet")
            .exists()
    );
    let o = env.agnes(&["query", "SELECT count(*) FROM customers"]);
    assert!(!o.status.success(), "the view is gone too");
    assert_eq!(
        env.json(&["query", "SELECT count(*) AS n FROM orders"]),
        json!([{"n": 2500}])
    );
}

#[test]
fn a_corrupted_download_is_rejected_and_the_old_file_kept() {
    let env = setup();
    env.json(&["pull"]);
    let orders = env.ws.path().join("server/parquet/orders.parquet");
    let good = md5(&orders);
    // a new version on the server whose served bytes do not match its manifest hash
    let mut csv = std::fs::read_to_string(env.data.path().join("orders.csv")).unwrap();
    csv.push_str("2501,1,1,1,9.99,2025-01-01T00:00:00,new\n");
    std::fs::write(env.data.path().join("orders.csv"), csv).unwrap();
    env.sync();
    let served = env.server().state.catalog().tables["orders"].path.clone();
    let mut bytes = std::fs::read(&served).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&served, bytes).unwrap();

    let o = env.agnes_with(&["pull"], &[("AGNES_PULL_CHUNKED_ABOVE", "1000")]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("orders") && stderr.contains("previous local copies are kept"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("md5 mismatch"), "{stdout}");
    assert_eq!(md5(&orders), good, "the previous good copy is untouched");
    assert_eq!(
        env.json(&["query", "SELECT count(*) AS n FROM orders"]),
        json!([{"n": 2500}])
    );
    let leftovers: Vec<_> = std::fs::read_dir(env.ws.path().join("server/parquet"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".part"))
        .collect();
    assert!(leftovers.is_empty(), "no partial file is left behind");
}

/// Chunked downloads (forced for a small file with `AGNES_PULL_CHUNKED_ABOVE`): the file
/// is byte-identical, an interrupted chunked download resumes each chunk where its record
/// says, a plain partial file resumes as a prefix, and a record that lies costs one clean
/// restart, never a wrong file.
#[test]
fn large_files_come_in_parallel_chunks_and_resume() {
    const CHUNKED: (&str, &str) = ("AGNES_PULL_CHUNKED_ABOVE", "1000");
    let env = setup();
    let first = env.json_with(&["pull"], &[CHUNKED]);
    assert_eq!(first["failed"], json!([]), "{first}");
    let dir = env.ws.path().join("server/parquet");
    let orders = dir.join("orders.parquet");
    let served = env.server().state.catalog().tables["orders"].path.clone();
    let good = std::fs::read(&served).unwrap();
    assert!(good.len() > 4000, "the chunked path is taken");
    assert_eq!(md5(&orders), md5(&served));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(env.ws.path().join("server/manifest.json")).unwrap())
            .unwrap();
    let hash = manifest["tables"]["orders"]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(hash, md5(&served));
    let part = dir.join(format!(".orders.{hash}.part"));
    let record = dir.join(format!(".orders.{hash}.part.progress"));
    let size = good.len();
    let bounds: Vec<(usize, usize)> = (0..4).map(|i| (size * i / 4, size * (i + 1) / 4)).collect();

    // chunk 0 complete, chunk 2 half done, the rest missing (holes of zeros)
    let mut partial = vec![0u8; size];
    let c2 = bounds[2].0 + (bounds[2].1 - bounds[2].0) / 2;
    partial[..bounds[0].1].copy_from_slice(&good[..bounds[0].1]);
    partial[bounds[2].0..c2].copy_from_slice(&good[bounds[2].0..c2]);
    let done = [bounds[0].1, bounds[1].0, c2, bounds[3].0];
    let lines: String = bounds
        .iter()
        .zip(done)
        .map(|(&(s, e), d)| format!("{s} {e} {d}\n"))
        .collect();
    std::fs::remove_file(&orders).unwrap();
    std::fs::write(&part, &partial).unwrap();
    std::fs::write(&record, &lines).unwrap();
    let resumed = env.json_with(&["pull"], &[CHUNKED]);
    assert_eq!(resumed["downloaded"], json!(["orders"]), "{resumed}");
    let skipped = bounds[0].1 + (c2 - bounds[2].0);
    assert_eq!(
        resumed["bytes"],
        json!(size - skipped),
        "only what was missing came"
    );
    assert_eq!(std::fs::read(&orders).unwrap(), good);
    assert!(!part.exists() && !record.exists(), "nothing left behind");

    // a plain partial file (no record) is a prefix
    std::fs::remove_file(&orders).unwrap();
    std::fs::write(&part, &good[..1500]).unwrap();
    let prefix = env.json_with(&["pull"], &[CHUNKED]);
    assert_eq!(prefix["bytes"], json!(size - 1500), "{prefix}");
    assert_eq!(std::fs::read(&orders).unwrap(), good);

    // a record claiming bytes the file does not hold: md5 catches it, one clean restart
    std::fs::remove_file(&orders).unwrap();
    std::fs::write(&part, vec![0xAA; size]).unwrap();
    std::fs::write(&record, &lines).unwrap();
    let lied = env.json_with(&["pull"], &[CHUNKED]);
    assert_eq!(lied["failed"], json!([]), "{lied}");
    assert_eq!(std::fs::read(&orders).unwrap(), good);
    assert!(!part.exists() && !record.exists());

    // the same pull without chunking (the default threshold) gives the same file
    std::fs::remove_file(&orders).unwrap();
    env.json(&["pull"]);
    assert_eq!(std::fs::read(&orders).unwrap(), good);
}

#[test]
fn server_down_is_a_clear_error_and_local_data_is_untouched() {
    let mut env = setup();
    env.json(&["pull"]);
    let before = agnes_tests::snapshot(&env.ws.path().join("server"));
    drop(env.server.take());
    let o = env.agnes(&["pull"]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("cannot reach") && stderr.contains("local data is unchanged"),
        "{stderr}"
    );
    assert_eq!(agnes_tests::snapshot(&env.ws.path().join("server")), before);
    assert_eq!(
        env.json(&["query", "SELECT count(*) AS n FROM orders"]),
        json!([{"n": 2500}]),
        "local queries still work"
    );
}

#[test]
fn errors_say_what_to_do_next() {
    let env = setup();
    let o = env.agnes(&["pull", "--token", "agnes_00000000_bad"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("agnes init --token"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_agnes"))
        .args(["query", "SELECT 1"])
        .current_dir(elsewhere.path())
        .env_remove("AGNES_WORKSPACE")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("run `agnes init`"));
    let o = env.agnes(&["completions", "bash"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("agnes"));
}

#[test]
fn snapshots_are_cut_on_the_server_and_queried_locally() {
    let env = setup();
    env.json(&["pull"]);
    let expected = env.json(&[
        "query",
        "SELECT count(*) AS n FROM orders WHERE amount > 1000",
    ])[0]["n"]
        .as_u64()
        .unwrap();
    assert!(expected > 0);
    let est = env.json(&[
        "snapshot",
        "create",
        "orders",
        "--where",
        "amount > 1000",
        "--select",
        "order_id,amount",
        "--estimate",
    ]);
    assert_eq!(est["rows"], expected);
    assert_eq!(est["columns"], 2);
    assert!(
        !env.ws
            .path()
            .join("user/snapshots/orders_snapshot.parquet")
            .exists(),
        "--estimate writes nothing"
    );

    let made = env.json(&[
        "snapshot",
        "create",
        "orders",
        "--where",
        "amount > 1000",
        "--select",
        "order_id,amount",
        "--as",
        "big_orders",
    ]);
    assert_eq!(made["rows"], expected);
    let q = env.json(&[
        "query",
        "SELECT count(*) AS n, min(amount) > 1000 AS ok FROM big_orders",
    ]);
    assert_eq!(q, json!([{"n": expected, "ok": true}]));
    let cols = env.json(&["query", "SELECT count(*) AS c FROM (DESCRIBE big_orders)"]);
    assert_eq!(cols, json!([{"c": 2}]));
    let limited = env.json(&["snapshot", "create", "customers", "--limit", "7"]);
    assert_eq!(
        (limited["name"].as_str(), limited["rows"].as_u64()),
        (Some("customers_snapshot"), Some(7))
    );
    // ordered, limited, expiring; refreshed with its saved request; pruned when expired
    let top = env.json(&[
        "snapshot",
        "create",
        "orders",
        "--order-by",
        "amount DESC,order_id",
        "--limit",
        "3",
        "--ttl",
        "1s",
        "--as",
        "top3",
    ]);
    assert_eq!(top["rows"], 3);
    assert!(top["expires_at"].is_i64(), "{top}");
    let ordered = env.json(&["query", "SELECT bool_and(amount >= (SELECT max(amount) FROM top3) - 0) AS first_is_max, max(amount) AS m FROM (SELECT * FROM top3 LIMIT 1)"]);
    let max_all = env.json(&["query", "SELECT max(amount) AS m FROM orders"]);
    assert_eq!(
        ordered[0]["m"], max_all[0]["m"],
        "the first row is the largest"
    );
    let again = env.json(&["snapshot", "refresh", "top3"]);
    assert_eq!(again["rows"], 3);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let pruned = env.json(&["snapshot", "prune"]);
    assert_eq!(pruned["dropped"], json!(["top3"]));
    assert!(!env.ws.path().join("user/snapshots/top3.parquet").exists());
    assert!(!env.ws.path().join("user/snapshots/top3.json").exists());

    let list = env.json(&["snapshot", "list"]);
    assert_eq!(
        list.as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["big_orders", "customers_snapshot"]
    );
    // a pull leaves snapshots alone
    env.json(&["pull"]);
    assert_eq!(
        env.json(&["query", "SELECT count(*) AS n FROM big_orders"]),
        json!([{"n": expected}])
    );
    env.json(&["snapshot", "drop", "big_orders"]);
    assert!(
        !env.ws
            .path()
            .join("user/snapshots/big_orders.parquet")
            .exists()
    );
    assert!(
        !env.agnes(&["query", "SELECT 1 FROM big_orders"])
            .status
            .success(),
        "its view is gone"
    );

    for (args, needle) in [
        (
            vec!["snapshot", "create", "orders", "--select", "nope"],
            "has no column `nope`",
        ),
        (
            vec![
                "snapshot",
                "create",
                "orders",
                "--where",
                "1=1; DROP TABLE orders",
            ],
            "one expression",
        ),
        (
            vec![
                "snapshot",
                "create",
                "orders",
                "--where",
                "order_id IN (SELECT 1 FROM read_csv('/etc/passwd'))",
            ],
            "Permission Error",
        ),
        (
            vec!["snapshot", "create", "orders", "--as", "orders"],
            "is a pulled table",
        ),
        (
            vec!["snapshot", "create", "products"],
            "no table `products`",
        ),
        (vec!["snapshot", "drop", "never_made"], "no snapshot"),
    ] {
        let o = env.agnes(&args);
        assert!(!o.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn push_uploads_new_or_grown_transcripts_once_with_tokens_redacted() {
    let env = setup();
    // init installed both hooks, next to whatever the user had
    let hooks = std::fs::read_to_string(env.ws.path().join(".claude/settings.json")).unwrap();
    assert!(
        hooks.contains("SessionEnd") && hooks.contains("agnes push --quiet || true"),
        "{hooks}"
    );

    let claude = tempfile::tempdir().unwrap();
    let root = env.ws.path().canonicalize().unwrap();
    let encoded: String = root
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let sessions = claude.path().join("projects").join(encoded);
    std::fs::create_dir_all(&sessions).unwrap();
    let line = format!("{{\"cmd\": \"agnes init --token {}\"}}\n", env.ana);
    std::fs::write(sessions.join("s1.jsonl"), &line).unwrap();
    std::fs::write(sessions.join("notes.txt"), "not a transcript").unwrap();
    std::fs::create_dir_all(env.ws.path().join(".claude")).unwrap();
    std::fs::write(env.ws.path().join(".claude/CLAUDE.local.md"), "# my rules").unwrap();
    let push = |extra: &[&str]| {
        let mut args = vec!["push", "--json"];
        args.extend_from_slice(extra);
        let o = Command::new(env!("CARGO_BIN_EXE_agnes"))
            .args(&args)
            .current_dir(env.ws.path())
            .env("AGNES_CONFIG_DIR", env.config.path())
            .env("CLAUDE_CONFIG_DIR", claude.path())
            .env_remove("AGNES_SERVER")
            .env_remove("AGNES_TOKEN")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let dry = push(&["--dry-run"]);
    assert_eq!(
        (dry["sessions"].as_array().unwrap().len(), &dry["local_md"]),
        (1, &json!(true)),
        "{dry}"
    );
    let first = push(&[]);
    assert_eq!(first["uploaded"], json!(["s1.jsonl"]), "{first}");
    assert_eq!(first["local_md"], true);
    let again = push(&[]);
    assert_eq!(
        (again["uploaded"].clone(), again["unchanged"].clone()),
        (json!([]), json!(1)),
        "nothing new"
    );
    std::fs::write(
        sessions.join("s1.jsonl"),
        format!("{line}{{\"more\": 1}}\n"),
    )
    .unwrap();
    assert_eq!(
        push(&[])["uploaded"],
        json!(["s1.jsonl"]),
        "a grown transcript goes again"
    );

    // what the server keeps has the token redacted
    let r = http()
        .get(&env.server().url("/api/admin/sessions/ana/s1.jsonl"))
        .header("Authorization", &bearer(&env.server().admin))
        .call()
        .unwrap();
    let kept = String::from_utf8(agnes_tests::read_bytes(r)).unwrap();
    assert!(
        kept.contains("agnes_[REDACTED]") && !kept.contains(&env.ana),
        "{kept}"
    );
}

#[test]
fn remote_and_materialized_tables_on_the_analyst_rails() {
    use agnes_tests::pg::{PgCluster, READER_PASSWORD};
    let env = setup();
    let pg = PgCluster::start();
    pg.psql(
        "app",
        "CREATE TABLE events (id int8 PRIMARY KEY, country text NOT NULL, amount numeric(10,2));
         INSERT INTO events SELECT g, (ARRAY['CZ','DE','US'])[g % 3 + 1], g * 0.5
           FROM generate_series(1, 9000) g;
         ANALYZE events;",
    );
    pg.grant_select();
    let pw = env.data.path().join("pg-password");
    std::fs::write(&pw, READER_PASSWORD).unwrap();
    let manifest = repo_root().join("connectors-wasm/postgres/connector.toml");
    env.admin("POST", "/api/admin/sources", json!({"name": "wh", "connector": agnes_tests::POSTGRES_COMPONENT,
        "manifest": manifest, "config": {}, "grant": {"databases": {"main": {"host": "127.0.0.1", "port": pg.port,
        "database": "app", "user": "reader", "password": {"file": pw}, "tls": "disable", "allow_private": true}}}}));
    env.admin(
        "POST",
        "/api/admin/sources/wh/tables",
        json!({"tables": [
        {"name": "events", "query_mode": "remote"},
        {"name": "by_country", "query_mode": "materialized",
         "options": {"sql": "SELECT country, count(*) AS n FROM events GROUP BY 1"}}]}),
    );
    env.admin("POST", "/api/admin/sources/wh/sync", json!({}));
    env.server().wait_for_sync();
    for t in ["events", "by_country"] {
        env.admin(
            "POST",
            "/api/admin/grants",
            json!({"group": "sales", "resource_type": "table", "resource_id": t}),
        );
    }

    // pull: the materialized table comes, the remote one stays at the source
    let pulled = env.json(&["pull"]);
    let downloaded = pulled["downloaded"].to_string();
    assert!(
        downloaded.contains("by_country") && !downloaded.contains("events"),
        "{pulled}"
    );
    assert_eq!(
        env.json(&["query", "SELECT sum(n) AS n FROM by_country"]),
        json!([{"n": 9000}])
    );
    let catalog = env.json(&["catalog"]).to_string();
    assert!(
        catalog.contains("remote") && catalog.contains("materialized"),
        "{catalog}"
    );
    // the human table shows each table's mode
    let o = env.agnes(&["catalog"]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let line = |t: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{t} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        text.lines().next().unwrap_or_default().contains("mode"),
        "{text}"
    );
    assert!(line("by_country").contains("materialized"), "{text}");
    assert!(line("events").contains("remote"), "{text}");
    // schema and describe answer from the source
    let schema = env.json(&["schema", "events"]).to_string();
    assert!(
        schema.contains("country") && schema.contains("amount"),
        "{schema}"
    );
    let o = env.agnes(&["describe", "events", "-n", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // --remote: pushed to the source
    assert_eq!(
        env.json(&[
            "query",
            "--remote",
            "SELECT count(*) AS n FROM events WHERE country = 'CZ'"
        ]),
        json!([{"n": 3000}])
    );
    // a snapshot of a slice, then local
    let o = env.agnes(&[
        "snapshot",
        "create",
        "events",
        "--where",
        "country = 'DE' AND amount > 1000",
        "--select",
        "id,amount",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected: i64 = pg
        .psql(
            "app",
            "SELECT count(*) FROM events WHERE country = 'DE' AND amount > 1000",
        )
        .parse()
        .unwrap();
    assert_eq!(
        env.json(&["query", "SELECT count(*) AS n FROM events"]),
        json!([{"n": expected}])
    );
    // a where the server cannot push is refused with what to change
    let o = env.agnes(&[
        "snapshot",
        "create",
        "events",
        "--where",
        "lower(country) = 'de'",
        "--as",
        "x",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("function `lower`"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // --skip-materialized leaves it out, and removes the copy pulled before
    let skipped = env.json(&["pull", "--skip-materialized"]);
    assert!(
        skipped["removed"].to_string().contains("by_country"),
        "{skipped}"
    );
    assert!(
        !env.ws
            .path()
            .join("server/parquet/by_country.parquet")
            .exists()
    );
    assert!(env.ws.path().join("server/parquet/orders.parquet").exists());
}
