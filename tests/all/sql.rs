//! SQL over Agnes tables (materialized tables of an `agnes:sql` source): run by the real
//! `agnes-sqlbox` process the OS confines, joined across sources, hostile SQL stopped by the
//! sandbox with a clear error while the previous version keeps serving — and the
//! confinement itself (Landlock + seccomp) probed from a process that applies it.

use std::path::{Path, PathBuf};

use agnes_runtime::sqlbox::{SqlBox, SqlTable};
use agnes_runtime::{Limits, RunReport};
use agnes_tests::{csv, open_extract, repo_root, request, runtime};

/// The sandbox executable cargo built beside this test binary (`cargo test --workspace`
/// builds every binary of the workspace first).
pub fn sqlbox() -> SqlBox {
    SqlBox::beside_current_exe(1)
        .expect("agnes-sqlbox next to the test binary: run `cargo build -p agnes` first")
}

/// The demo CSVs (orders, customers, products) extracted by the csv component as source
/// `shop` under `extracts`; `(table, parquet file)` of each.
async fn shop(extracts: &Path) -> Vec<(String, PathBuf)> {
    let data = repo_root()
        .join("examples/demo/data")
        .canonicalize()
        .unwrap();
    let req = request(
        extracts,
        "shop",
        serde_json::json!({"dir": "/data"}),
        &[(&data, "/data")],
    );
    let report = runtime().run(csv(), req, None).await.unwrap();
    report
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.path.clone()))
        .collect()
}

fn inputs(all: &[(String, PathBuf)], names: &[&str]) -> Vec<(String, PathBuf)> {
    all.iter()
        .filter(|(n, _)| names.contains(&n.as_str()))
        .cloned()
        .collect()
}

fn run(
    extracts: &Path,
    tables: &[SqlTable],
    limits: Limits,
) -> Result<RunReport, agnes_runtime::Error> {
    let mut req = request(extracts, "derived", serde_json::json!({}), &[]);
    req.limits = limits;
    runtime().run_sql(req, tables, &sqlbox())
}

const REVENUE: &str = "SELECT c.region, count(*) AS orders, round(sum(o.amount), 2) AS revenue
  FROM orders o JOIN customers c USING (customer_id)
  GROUP BY c.region ORDER BY c.region";

#[tokio::test]
async fn sql_over_agnes_tables_joins_across_tables_in_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let extracts = dir.path().join("extracts");
    let shop = shop(&extracts).await;
    let tables = [
        SqlTable {
            table: "revenue_by_region".into(),
            sql: REVENUE.into(),
            inputs: inputs(&shop, &["orders", "customers"]),
        },
        SqlTable {
            table: "nothing".into(),
            sql: "SELECT order_id FROM orders WHERE amount < 0".into(),
            inputs: inputs(&shop, &["orders"]),
        },
    ];
    let report = run(&extracts, &tables, Limits::default()).unwrap();
    let revenue = &report.tables[0];
    assert_eq!(
        (revenue.name.as_str(), revenue.query_mode, &revenue.error),
        ("revenue_by_region", "materialized", &None)
    );
    // the same SQL in DuckDB over the same parquet files answers the same
    let native = duckdb::Connection::open_in_memory().unwrap();
    for (name, path) in &shop {
        native
            .execute_batch(&format!(
                "CREATE VIEW {name} AS SELECT * FROM read_parquet('{}')",
                path.display()
            ))
            .unwrap();
    }
    let digest = |conn: &duckdb::Connection, from: &str| -> String {
        conn.query_row(
            &format!(
                "SELECT string_agg(region || ':' || orders || ':' || revenue, ',' ORDER BY region) FROM ({from})"
            ),
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let extract = open_extract(&report.dir);
    assert_eq!(
        digest(&extract, "SELECT * FROM revenue_by_region"),
        digest(&native, REVENUE)
    );
    assert_eq!(revenue.rows, 3, "three regions in the demo data");
    let mode: String = extract
        .query_row(
            "SELECT query_mode FROM _meta WHERE table_name = 'revenue_by_region'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mode, "materialized");
    // an empty result is a table with the result's columns and no rows
    let nothing = &report.tables[1];
    assert_eq!((nothing.rows, &nothing.error), (0, &None));
    let columns: i64 = extract
        .query_row(
            "SELECT count(*) FROM (DESCRIBE SELECT * FROM nothing)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(columns, 1);
}

/// Publishes `good`, then runs `sql` as the same table under `limits`: it must fail with
/// an error containing each of `expect`, keep the previous version (same md5, same file
/// contents served), and leave the host running.
fn refused(
    extracts: &Path,
    shop: &[(String, PathBuf)],
    sql: &str,
    limits: Limits,
    expect: &[&str],
) {
    let table = |sql: &str| SqlTable {
        table: "t".into(),
        sql: sql.into(),
        inputs: inputs(shop, &["orders"]),
    };
    let good = run(
        extracts,
        &[table("SELECT count(*) AS n FROM orders")],
        Limits::default(),
    )
    .unwrap();
    let before = good.tables[0].md5.clone();
    let report = run(extracts, &[table(sql)], limits).unwrap();
    let t = &report.tables[0];
    let error = t.error.clone().unwrap_or_default();
    for e in expect {
        assert!(
            error.to_lowercase().contains(&e.to_lowercase()),
            "`{sql}`: {error:?} should say {e:?}"
        );
    }
    assert_eq!(t.md5, before, "`{sql}`: the previous version is kept");
    let n: i64 = open_extract(&report.dir)
        .query_row("SELECT n FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2500, "`{sql}`: the previous rows still serve");
}

#[tokio::test]
async fn hostile_sql_is_stopped_by_the_sandbox_and_the_previous_version_serves() {
    let dir = tempfile::tempdir().unwrap();
    let extracts = dir.path().join("extracts");
    let shop = shop(&extracts).await;
    let customers = shop
        .iter()
        .find(|(n, _)| n == "customers")
        .unwrap()
        .1
        .clone();
    let small = Limits {
        memory_mb: 256,
        cpu_secs: 3,
        timeout_secs: 20,
        ..Limits::default()
    };
    // a file outside its inputs: a system file, and a table the SQL was not given
    refused(
        &extracts,
        &shop,
        "SELECT * FROM read_csv('/etc/passwd')",
        Limits::default(),
        &["t", "permission"],
    );
    refused(
        &extracts,
        &shop,
        &format!("SELECT * FROM read_parquet('{}')", customers.display()),
        Limits::default(),
        &["permission"],
    );
    // a table it was not given is not there at all
    refused(
        &extracts,
        &shop,
        "SELECT * FROM customers",
        Limits::default(),
        &["customers", "does not exist"],
    );
    // a cross join that explodes memory
    refused(
        &extracts,
        &shop,
        "SELECT a.*, b.*, c.range FROM orders a, orders b, range(1000) c ORDER BY random()",
        small.clone(),
        &["out of memory"],
    );
    // an endless recursive CTE
    refused(
        &extracts,
        &shop,
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        small.clone(),
        &["cpu limit"],
    );
    // a second statement, and statements that are not a query, cannot even parse
    for sql in [
        "SELECT 1; SELECT 2",
        "COPY (SELECT 1) TO '/tmp/agnes-escape.csv'",
        "ATTACH '/tmp/x.db'",
        "SET enable_external_access = true",
        "INSTALL httpfs",
    ] {
        refused(&extracts, &shop, sql, Limits::default(), &["parser error"]);
    }
    assert!(!Path::new("/tmp/agnes-escape.csv").exists());
    // the wall-clock limit stops one that sleeps in the kernel rather than computing
    refused(
        &extracts,
        &shop,
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        Limits {
            timeout_secs: 2,
            cpu_secs: 3600,
            ..Limits::default()
        },
        &["time limit"],
    );
}

/// The probe that runs in a child process (this test binary, re-executed): confines
/// itself, then tries what a hostile query engine would. Prints one JSON line.
#[test]
fn confinement_probe() {
    let Ok(allowed) = std::env::var("AGNES_CONFINE_PROBE") else {
        return; // only as the child of `the_os_confines_the_sandbox`
    };
    let port: u16 = std::env::var("AGNES_CONFINE_PORT")
        .unwrap()
        .parse()
        .unwrap();
    let allowed = PathBuf::from(allowed);
    agnes_runtime::sqlbox::confine(std::slice::from_ref(&allowed)).unwrap();
    let outcome = |r: std::io::Result<()>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{:?}", e.kind()),
    };
    let sibling = allowed.with_file_name("other.parquet");
    let report = serde_json::json!({
        "read_allowed": outcome(std::fs::read(&allowed).map(|_| ())),
        "read_sibling": outcome(std::fs::read(&sibling).map(|_| ())),
        "read_etc": outcome(std::fs::read("/etc/hostname").map(|_| ())),
        "list_dir": outcome(std::fs::read_dir(allowed.parent().unwrap()).map(|_| ())),
        "write": outcome(std::fs::write(allowed.with_file_name("new"), b"x")),
        "connect": outcome(std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| ())),
        "udp": outcome(std::net::UdpSocket::bind("127.0.0.1:0").map(|_| ())),
        "exec": outcome(std::process::Command::new("/bin/true").status().map(|_| ())),
        "thread": outcome(std::thread::spawn(|| ()).join().map_err(|_| std::io::Error::other("panicked"))),
    });
    println!("PROBE {report}");
}

#[test]
fn the_os_confines_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed.parquet");
    std::fs::write(&allowed, b"PAR1").unwrap();
    std::fs::write(dir.path().join("other.parquet"), b"PAR1").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sql::confinement_probe",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("AGNES_CONFINE_PROBE", &allowed)
        .env("AGNES_CONFINE_PORT", port.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("PROBE ").map(|(_, report)| report))
        .unwrap_or_else(|| {
            panic!(
                "no probe report: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let got: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        got,
        serde_json::json!({
            "read_allowed": "ok",
            "read_sibling": "PermissionDenied",
            "read_etc": "PermissionDenied",
            "list_dir": "PermissionDenied",
            "write": "PermissionDenied",
            "connect": "PermissionDenied",
            "udp": "PermissionDenied",
            "exec": "PermissionDenied",
            "thread": "ok",
        })
    );
    // nobody connected
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err());
}

/// An `agnes:sql` source on a real server: registered with nothing but its tables' SQL,
/// joined across the csv source's tables, distributed like any table; a failing SQL keeps
/// the previous version; reading the result needs a grant on the result only, and gives
/// none on its inputs.
#[test]
fn an_agnes_sql_source_derives_tables_served_with_their_own_grants_datafusion() {
    derived_source("datafusion");
}

#[test]
fn an_agnes_sql_source_derives_tables_served_with_their_own_grants_process() {
    derived_source("process");
}

/// The scenario on a server whose `[sql] engine` is `engine`.
fn derived_source(engine: &str) {
    use serde_json::json;
    let s = agnes_tests::TestServer::start_with(|c| {
        c.sql.engine = engine.into();
        c.sql.program = Some(sqlbox().program);
    });
    s.with_demo_source(json!({"all": true}));
    // nothing to grant it, configure or sign: a grant is refused
    let (st, err) = s.call(
        "POST",
        Some(&s.admin),
        "/api/admin/sources",
        Some(json!({"name": "derived", "connector": "agnes:sql",
            "grant": {"dirs": [{"host": "/", "guest": "/root"}]}})),
    );
    assert_eq!(st, 400, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("no config, grant"),
        "{err}"
    );
    s.admin_call(
        "POST",
        "/api/admin/sources",
        Some(json!({"name": "derived", "connector": "agnes:sql", "config": {}})),
    );
    // its tables are materialized
    let (st, err) = s.call(
        "POST",
        Some(&s.admin),
        "/api/admin/sources/derived/tables",
        Some(json!({"tables": [{"name": "orders_copy"}]})),
    );
    assert_eq!(st, 400, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("materialized"),
        "{err}"
    );
    s.admin_call(
        "POST",
        "/api/admin/sources/derived/tables",
        Some(
            json!({"tables": [{"name": "revenue_by_region", "query_mode": "materialized",
            "options": {"sql": REVENUE}}]}),
        ),
    );
    let sync = || s.sync_source("derived");
    let run = sync();
    assert_eq!(run["status"], "ok", "{run}");
    let m = s.admin_call("GET", "/api/sync/manifest", None);
    let t = &m["tables"]["revenue_by_region"];
    assert_eq!(
        (
            t["query_mode"].as_str(),
            t["rows"].as_i64(),
            t["source"].as_str()
        ),
        (Some("materialized"), Some(3), Some("derived")),
        "{m}"
    );
    let hash = t["hash"].clone();
    // an analyst granted the result, not its inputs
    s.admin_call(
        "POST",
        "/api/admin/groups",
        Some(json!({"name": "finance"})),
    );
    s.admin_call(
        "POST",
        "/api/admin/grants",
        Some(json!({"group": "finance", "resource_type": "table", "resource_id": "revenue_by_region"})),
    );
    let fin = s.admin_call(
        "POST",
        "/api/admin/users",
        Some(json!({"name": "fiona", "groups": ["finance"]})),
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, got) = s.call(
        "POST",
        Some(&fin),
        "/api/query",
        Some(json!({"sql": "SELECT sum(orders) AS n FROM revenue_by_region"})),
    );
    assert_eq!((st, got["rows"][0][0].as_i64()), (200, Some(2500)), "{got}");
    for sql in [
        "SELECT count(*) FROM orders",
        "SELECT count(*) FROM customers",
    ] {
        let (st, got) = s.call("POST", Some(&fin), "/api/query", Some(json!({"sql": sql})));
        assert_eq!(st, 400, "{sql}: {got}");
    }
    let (st, _) = s.call("GET", Some(&fin), "/api/data/orders/download", None);
    assert_eq!(st, 403);
    let mine = s.call("GET", Some(&fin), "/api/sync/manifest", None).1;
    assert_eq!(
        mine["tables"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["revenue_by_region"]
    );
    // a failing SQL keeps the previous version; the run says why
    s.admin_call(
        "PATCH",
        "/api/admin/sources/derived/tables/revenue_by_region",
        Some(json!({"options": {"sql": "SELECT * FROM nowhere"}})),
    );
    let run = sync();
    assert_eq!(run["status"], "failed", "{run}");
    let outcome = &run["tables"][0];
    let error = outcome["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("nowhere") && error.contains("previous version is kept"),
        "{run}"
    );
    let m = s.admin_call("GET", "/api/sync/manifest", None);
    assert_eq!(m["tables"]["revenue_by_region"]["hash"], hash);
}

/// Hostile SQL in the DataFusion component (`[sql] engine = "datafusion"`): each case is
/// stopped — by DataFusion's own refusals, or by the runtime's memory, CPU and time limits
/// — with a clear error in the run's outcome; the previous version keeps serving and the
/// server answers on.
#[test]
fn hostile_sql_in_the_datafusion_component_is_stopped_and_the_previous_version_serves() {
    use serde_json::json;
    let s = agnes_tests::TestServer::start();
    s.with_demo_source(json!({"all": true}));
    s.admin_call(
        "POST",
        "/api/admin/sources",
        Some(json!({"name": "derived", "connector": "agnes:sql",
            "limits": {"memory_mb": 256, "cpu_secs": 4, "timeout_secs": 60}})),
    );
    s.admin_call(
        "POST",
        "/api/admin/sources/derived/tables",
        Some(
            json!({"tables": [{"name": "t", "query_mode": "materialized",
            "options": {"sql": "SELECT count(*) AS n FROM orders"}}]}),
        ),
    );
    let sync = || s.sync_source("derived");
    let run = sync();
    assert_eq!(run["status"], "ok", "{run}");
    let m = s.admin_call("GET", "/api/sync/manifest", None);
    let hash = m["tables"]["t"]["hash"].clone();
    assert_eq!(m["tables"]["t"]["rows"], 1);
    for (sql, expect) in [
        // a file outside the preopen, named by path: not a table DataFusion knows
        ("SELECT * FROM '/etc/passwd'", "/etc/passwd"),
        // DDL that would open files: refused before it plans
        (
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "DDL not supported",
        ),
        // a table the SQL may not read: not in /tables at all
        (
            "SELECT * FROM users_of_another_system",
            "users_of_another_system",
        ),
        // a cross join that explodes memory: the component's linear memory limit
        (
            "SELECT a.note, b.note, c.note FROM orders a, orders b, orders c ORDER BY a.amount * b.amount + c.amount",
            "memory",
        ),
        // an endless recursive CTE: the CPU budget
        (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
            "cpu",
        ),
    ] {
        s.admin_call(
            "PATCH",
            "/api/admin/sources/derived/tables/t",
            Some(json!({"options": {"sql": sql}})),
        );
        let run = sync();
        let error = run["tables"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(
            error.contains(&expect.to_lowercase()) && error.contains("previous version is kept"),
            "`{sql}`: {run}"
        );
        let m = s.admin_call("GET", "/api/sync/manifest", None);
        assert_eq!(
            m["tables"]["t"]["hash"], hash,
            "`{sql}`: the last good version serves"
        );
        let (st, q) = s.call(
            "POST",
            Some(&s.admin),
            "/api/query",
            Some(json!({"sql": "SELECT n FROM t"})),
        );
        assert_eq!((st, q["rows"][0][0].as_i64()), (200, Some(2500)), "{q}");
    }
}

/// The component reads only the columns a query uses: a count over the narrow column of a
/// table whose wide column alone is over the component's memory limit succeeds; the same
/// query over the wide column is stopped by the limit.
#[test]
fn the_datafusion_component_reads_only_the_columns_a_query_uses() {
    use serde_json::json;
    let data = tempfile::tempdir().unwrap();
    {
        use std::io::Write as _;
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(data.path().join("wide.csv")).unwrap());
        writeln!(f, "id,payload").unwrap();
        // 200,000 rows × 512 bytes of incompressible text: ~100 MB decoded
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..200_000 {
            let mut payload = String::with_capacity(512);
            while payload.len() < 512 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                payload.push_str(&format!("{x:016x}"));
            }
            writeln!(f, "{i},{payload}").unwrap();
        }
    }
    let s = agnes_tests::TestServer::start();
    s.admin_call(
        "POST",
        "/api/admin/sources",
        Some(json!({"name": "files", "connector": agnes_tests::CSV_COMPONENT, "config": {"dir": "/data"},
            "grant": {"dirs": [{"host": data.path().canonicalize().unwrap(), "guest": "/data"}]}})),
    );
    s.admin_call(
        "POST",
        "/api/admin/sources/files/tables",
        Some(json!({"tables": [{"name": "wide"}]})),
    );
    let files = s.sync_source("files");
    assert_eq!(files["status"], "ok", "{files}");
    s.admin_call(
        "POST",
        "/api/admin/sources",
        Some(json!({"name": "derived", "connector": "agnes:sql", "limits": {"memory_mb": 64}})),
    );
    s.admin_call(
        "POST",
        "/api/admin/sources/derived/tables",
        Some(json!({"tables": [
            {"name": "narrow", "query_mode": "materialized", "options": {"sql": "SELECT count(id) AS n, max(id) AS top FROM wide"}},
            {"name": "everything", "query_mode": "materialized", "options": {"sql": "SELECT max(payload) AS p FROM wide"}}]})),
    );
    let run = s.sync_source("derived");
    let outcome = |t: &str| {
        run["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["table"] == t)
            .unwrap()
            .clone()
    };
    assert_eq!(outcome("narrow")["status"], "ok", "{run}");
    let (st, q) = s.call(
        "POST",
        Some(&s.admin),
        "/api/query",
        Some(json!({"sql": "SELECT n, top FROM narrow"})),
    );
    assert_eq!(
        (st, q["rows"][0].clone()),
        (200, json!([200000, 199999])),
        "{q}"
    );
    let everything = outcome("everything");
    assert_eq!(everything["status"], "failed", "{run}");
    assert!(
        everything["error"]
            .as_str()
            .unwrap_or_default()
            .contains("memory"),
        "{everything}"
    );
}
