//! Connector world 0.2.0 and the postgres connector against a real PostgreSQL server (a
//! private cluster per test, see `agnes_tests::pg`): every listed type round-trips,
//! incremental reads merge, every filter form is pushed down and answers what PostgreSQL
//! answers, requests the host cannot validate never reach the connector, and every
//! hostile case fails cleanly with the previous extract still serving and the password
//! nowhere.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use agnes_runtime::query::{BinaryOp, Expr, Literal, OrderKey, QueryCall, QueryRequest, Request};
use agnes_runtime::{Error, Grant, Limits, LoadedComponent, RunRequest, World};
use agnes_tests::pg::{MD5_PASSWORD, PLAIN_PASSWORD, PgCluster, READER_PASSWORD};
use agnes_tests::{fails_cleanly, open_extract, runtime, snapshot};
use serde_json::json;

fn postgres() -> &'static LoadedComponent {
    static C: OnceLock<LoadedComponent> = OnceLock::new();
    C.get_or_init(|| {
        runtime()
            .load_file(Path::new(agnes_tests::POSTGRES_COMPONENT))
            .expect("postgres component")
    })
}

/// A file holding `password`, as an operator would keep it.
fn password_file(dir: &Path, password: &str) -> PathBuf {
    let path = dir.join("pg-password");
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path
}

fn grant_main(db: agnes_runtime::DatabaseGrant) -> Grant {
    Grant {
        databases: [("main".to_string(), db)].into(),
        ..Grant::default()
    }
}

fn pg_request(extracts: &Path, grant: Grant, config: serde_json::Value) -> RunRequest {
    RunRequest {
        source: "pg".into(),
        extracts_dir: extracts.to_path_buf(),
        config: config.to_string(),
        grant,
        limits: Limits::default(),
        streams: None,
        state: None,
    }
}

const EVERYTHING: &str = "
CREATE TABLE everything (
  id int8 PRIMARY KEY, i2 int2, i4 int4, f4 float4, f8 float8, num numeric(12,3),
  big numeric, t text NOT NULL, vc varchar(10), b bool, d date, tm time, ts timestamp,
  tstz timestamptz, u uuid, j json, jb jsonb, by bytea, arr int4[], tarr text[], pt point
);
COMMENT ON TABLE everything IS 'one column of every type';
INSERT INTO everything VALUES
 (1, -32768, 2147483647, 1.5, -2.25, 123456789.123,
  12345678901234567890123456789012345678901234.5678, 'héllo ✓', 'short', true,
  '2024-02-29', '13:45:06.789', '2024-01-02 03:04:05.678901', '2024-01-02 03:04:05+02',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": 1}', '{\"b\": [1, 2]}', '\\xdeadbeef',
  '{1,NULL,3}', '{\"x\",\"y\"}', '(1,2)'),
 (2, NULL, NULL, NULL, NULL, -0.005, NULL, '', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, '{}', NULL);
CREATE VIEW everything_v AS SELECT id, t FROM everything;
";

#[tokio::test]
async fn every_type_round_trips_and_incremental_reads_merge() {
    let pg = PgCluster::start();
    pg.psql("app", EVERYTHING);
    pg.psql(
        "app",
        "CREATE TABLE events (id int PRIMARY KEY, updated_at timestamptz NOT NULL, v text);
         INSERT INTO events SELECT g, '2024-01-01'::timestamptz + g * interval '1 minute', 'v' || g
           FROM generate_series(1, 1000) g;",
    );
    pg.grant_select();
    let tmp = tempfile::tempdir().unwrap();
    let grant = grant_main(pg.grant("reader", Some(&password_file(tmp.path(), READER_PASSWORD))));
    let extracts = tmp.path().join("extracts");
    let config = json!({"cursors": {"events": "updated_at"}, "batch_rows": 300});

    // discover: tables and views, types, keys, descriptions
    let tables = runtime()
        .discover(postgres(), &config.to_string(), &grant, &Limits::default())
        .await
        .unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["events", "everything", "everything_v"]);
    let everything = &tables[1];
    assert_eq!(everything.primary_key, ["id"]);
    assert_eq!(
        everything.description.as_deref(),
        Some("one column of every type")
    );
    assert!(
        !everything
            .schema
            .field_with_name("t")
            .unwrap()
            .is_nullable()
    );
    assert_eq!(tables[0].cursor_field.as_deref(), Some("updated_at"));

    let report = runtime()
        .run(
            postgres(),
            pg_request(&extracts, grant.clone(), config.clone()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        report.tables.iter().map(|t| t.rows).collect::<Vec<_>>(),
        [1000, 2, 2]
    );
    let conn = open_extract(&extracts.join("pg"));
    let types: Vec<String> = conn
        .prepare("SELECT data_type FROM information_schema.columns WHERE table_name = 'everything' ORDER BY ordinal_position")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        types,
        [
            "BIGINT",
            "SMALLINT",
            "INTEGER",
            "FLOAT",
            "DOUBLE",
            "DECIMAL(12,3)",
            "VARCHAR",
            "VARCHAR",
            "VARCHAR",
            "BOOLEAN",
            "DATE",
            "TIME",
            "TIMESTAMP",
            "TIMESTAMP WITH TIME ZONE",
            "VARCHAR",
            "VARCHAR",
            "VARCHAR",
            "BLOB",
            "INTEGER[]",
            "VARCHAR[]",
            "VARCHAR"
        ]
    );
    let row: Vec<String> = conn
        .query_row(
            "SELECT [i2::VARCHAR, i4::VARCHAR, f4::VARCHAR, f8::VARCHAR, num::VARCHAR, big, t, vc,
                     b::VARCHAR, d::VARCHAR, tm::VARCHAR, ts::VARCHAR, epoch_us(tstz)::VARCHAR, u, j,
                     jb, hex(\"by\"), arr::VARCHAR, tarr::VARCHAR, pt]
             FROM everything WHERE id = 1",
            [],
            |r| r.get::<_, duckdb::types::Value>(0),
        )
        .map(|v| match v {
            duckdb::types::Value::List(items) => items
                .into_iter()
                .map(|i| match i {
                    duckdb::types::Value::Text(s) => s,
                    other => format!("{other:?}"),
                })
                .collect(),
            other => panic!("{other:?}"),
        })
        .unwrap();
    assert_eq!(
        row,
        [
            "-32768",
            "2147483647",
            "1.5",
            "-2.25",
            "123456789.123",
            "12345678901234567890123456789012345678901234.5678",
            "héllo ✓",
            "short",
            "true",
            "2024-02-29",
            "13:45:06.789",
            "2024-01-02 03:04:05.678901",
            "1704157445000000",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "{\"a\": 1}",
            "{\"b\": [1, 2]}",
            "DEADBEEF",
            "[1, NULL, 3]",
            "[x, y]",
            "(1,2)"
        ]
    );
    let nulls: (i64, String, String) = conn
        .query_row(
            "SELECT count(*) FILTER (WHERE i2 IS NULL AND f8 IS NULL AND d IS NULL AND arr IS NULL),
                    any_value(num::VARCHAR), any_value(tarr::VARCHAR)
             FROM everything WHERE id = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(nulls, (1, "-0.005".into(), "[]".into()));
    drop(conn);

    // incremental: one row changes, one is added; the rest are not read again
    pg.psql(
        "app",
        "UPDATE events SET v = 'changed', updated_at = '2030-01-01' WHERE id = 7;
         INSERT INTO events VALUES (1001, '2030-01-02', 'new');",
    );
    let mut next = pg_request(&extracts, grant.clone(), config.clone());
    next.state = report.state.clone();
    next.streams = Some(vec!["events".into()]);
    let second = runtime().run(postgres(), next, None).await.unwrap();
    assert_eq!(second.rows, 2, "only what changed is read");
    assert!(second.tables[0].merged);
    let conn = open_extract(&extracts.join("pg"));
    let (n, v): (i64, String) = conn
        .query_row(
            "SELECT count(*), max(v) FILTER (WHERE id = 7) FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((n, v.as_str()), (1001, "changed"));
    let state: serde_json::Value = serde_json::from_str(second.state.as_deref().unwrap()).unwrap();
    assert_eq!(state["events"], "2030-01-02 00:00:00+00");
}

#[tokio::test]
async fn every_login_method_works_and_no_password_reaches_the_guest() {
    let pg = PgCluster::start();
    pg.psql(
        "app",
        "CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2);",
    );
    pg.grant_select();
    let tmp = tempfile::tempdir().unwrap();
    for (user, password) in [
        ("reader", Some(READER_PASSWORD)),
        ("md5user", Some(MD5_PASSWORD)),
        ("plainuser", Some(PLAIN_PASSWORD)),
        ("trusted", None),
    ] {
        let file = password.map(|p| password_file(tmp.path(), p));
        let grant = grant_main(pg.grant(user, file.as_deref()));
        let extracts = tmp.path().join(format!("x-{user}"));
        let report = runtime()
            .run(postgres(), pg_request(&extracts, grant, json!({})), None)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert_eq!(report.rows, 2, "{user}");
    }
    // the session the host opens is read-only and bounded
    let grant = grant_main(pg.grant("reader", Some(&password_file(tmp.path(), READER_PASSWORD))));
    let extracts = tmp.path().join("probe");
    let sql = [
        "SHOW default_transaction_read_only",
        "SHOW statement_timeout",
        "SHOW TimeZone",
        "SELECT current_user",
    ];
    let report = run_hostile_db(&extracts, grant, json!({"sql": sql}))
        .await
        .unwrap();
    let outcomes = probe(&extracts);
    assert_eq!(report.rows, 5);
    assert_eq!(outcomes[1].1, "ok: [[Some(\"on\")]]");
    assert_eq!(outcomes[2].1, "ok: [[Some(\"1h\")]]");
    assert_eq!(outcomes[3].1, "ok: [[Some(\"UTC\")]]");
    assert_eq!(outcomes[4].1, "ok: [[Some(\"reader\")]]");
}

/// Runs the hostile fixture's `db` mode under `grant`.
async fn run_hostile_db(
    extracts: &Path,
    grant: Grant,
    extra: serde_json::Value,
) -> Result<agnes_runtime::RunReport, Error> {
    run_hostile_db_with(extracts, grant, extra, Limits::default()).await
}

async fn run_hostile_db_with(
    extracts: &Path,
    grant: Grant,
    extra: serde_json::Value,
    limits: Limits,
) -> Result<agnes_runtime::RunReport, Error> {
    let mut config = json!({"mode": "db"});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let mut req = agnes_tests::request(extracts, "src", config, &[]);
    req.grant = grant;
    req.limits = limits;
    runtime().run(agnes_tests::hostile(), req, None).await
}

/// The `probe` rows of the hostile fixture's extract.
fn probe(extracts: &Path) -> Vec<(String, String)> {
    let conn = open_extract(&extracts.join("src"));
    conn.prepare("SELECT path, outcome FROM probe")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn structured(table: &str, filter: Option<Expr>) -> QueryRequest {
    QueryRequest::Structured(Request {
        table: table.into(),
        filter,
        ..Request::default()
    })
}

fn call(grant: &Grant, table: &str, request: QueryRequest) -> QueryCall {
    QueryCall {
        config: json!({}).to_string(),
        grant: grant.clone(),
        limits: Limits::default(),
        table: table.into(),
        request,
    }
}

fn lit_s(s: &str) -> Box<Expr> {
    Box::new(Expr::Literal(Literal::String(s.into())))
}

fn col(c: &str) -> Box<Expr> {
    Box::new(Expr::column(c))
}

#[tokio::test]
async fn query_and_estimate_push_every_filter_form_to_the_source() {
    let pg = PgCluster::start();
    pg.psql(
        "app",
        "CREATE TABLE orders (id int8 PRIMARY KEY, country text, amount numeric(10,2),
                              day date, at timestamptz, note text, blob bytea);
         INSERT INTO orders SELECT g, (ARRAY['CZ','DE','US',NULL])[g % 4 + 1], g * 1.25,
                '2024-01-01'::date + g % 60, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour',
                CASE WHEN g % 10 = 0 THEN NULL ELSE 'note ' || g END, NULL
           FROM generate_series(1, 5000) g;
         ANALYZE orders;",
    );
    pg.grant_select();
    let tmp = tempfile::tempdir().unwrap();
    let grant = grant_main(pg.grant("reader", Some(&password_file(tmp.path(), READER_PASSWORD))));

    // (filter, the same condition in SQL for PostgreSQL to count)
    let day = |d: &str| Box::new(Expr::Literal(Literal::Date(d.into())));
    let cases: Vec<(Expr, &str)> = vec![
        (
            Expr::binary(
                Expr::column("country"),
                BinaryOp::Eq,
                Expr::Literal(Literal::String("CZ".into())),
            ),
            "country = 'CZ'",
        ),
        (
            Expr::binary(
                Expr::column("amount"),
                BinaryOp::GtEq,
                Expr::Literal(Literal::Decimal("6000.50".into())),
            ),
            "amount >= 6000.50",
        ),
        (
            Expr::binary(
                Expr::column("id"),
                BinaryOp::NotEq,
                Expr::Literal(Literal::Int(3)),
            ),
            "id <> 3",
        ),
        (
            Expr::binary(
                Expr::binary(
                    Expr::column("id"),
                    BinaryOp::Modulo,
                    Expr::Literal(Literal::Int(7)),
                ),
                BinaryOp::Eq,
                Expr::binary(
                    Expr::Literal(Literal::Int(1)),
                    BinaryOp::Plus,
                    Expr::Literal(Literal::Int(2)),
                ),
            ),
            "id % 7 = 1 + 2",
        ),
        (
            Expr::binary(
                Expr::binary(
                    Expr::column("amount"),
                    BinaryOp::Multiply,
                    Expr::Literal(Literal::Float(2.0)),
                ),
                BinaryOp::Lt,
                Expr::Negate(Box::new(Expr::Literal(Literal::Int(-100)))),
            ),
            "amount * 2.0 < 100",
        ),
        (
            Expr::InList {
                expr: col("country"),
                list: vec![*lit_s("DE"), *lit_s("US")],
                negated: false,
            },
            "country IN ('DE', 'US')",
        ),
        (
            Expr::InList {
                expr: col("country"),
                list: vec![*lit_s("DE")],
                negated: true,
            },
            "country NOT IN ('DE')",
        ),
        (
            Expr::Between {
                expr: col("day"),
                low: day("2024-01-10"),
                high: day("2024-01-20"),
                negated: false,
            },
            "day BETWEEN '2024-01-10' AND '2024-01-20'",
        ),
        (
            Expr::Between {
                expr: col("id"),
                low: Box::new(Expr::Literal(Literal::Int(10))),
                high: Box::new(Expr::Literal(Literal::Int(20))),
                negated: true,
            },
            "id NOT BETWEEN 10 AND 20",
        ),
        (
            Expr::Like {
                expr: col("note"),
                pattern: lit_s("note 1%"),
                negated: false,
                case_insensitive: false,
            },
            "note LIKE 'note 1%'",
        ),
        (
            Expr::Like {
                expr: col("note"),
                pattern: lit_s("NOTE 2_"),
                negated: true,
                case_insensitive: true,
            },
            "note NOT ILIKE 'NOTE 2_'",
        ),
        (
            Expr::IsNull {
                expr: col("country"),
                negated: false,
            },
            "country IS NULL",
        ),
        (
            Expr::IsNull {
                expr: col("blob"),
                negated: true,
            },
            "blob IS NOT NULL",
        ),
        (
            Expr::binary(
                Expr::column("at"),
                BinaryOp::Gt,
                Expr::Literal(Literal::Timestamp("2024-03-01 12:00:00".into())),
            ),
            "at > '2024-03-01 12:00:00+00'",
        ),
        (
            Expr::binary(
                Expr::column("at"),
                BinaryOp::Lt,
                Expr::Literal(Literal::Timestamp("2024-01-02T00:00:00+01:00".into())),
            ),
            "at < '2024-01-01 23:00:00+00'",
        ),
        (
            Expr::binary(
                Expr::column("day"),
                BinaryOp::Lt,
                Expr::Literal(Literal::Timestamp("2024-01-05 00:00:00".into())),
            ),
            "day < '2024-01-05'",
        ),
        (
            Expr::Not(Box::new(Expr::binary(
                Expr::binary(
                    Expr::column("country"),
                    BinaryOp::Eq,
                    Expr::Literal(Literal::String("CZ".into())),
                ),
                BinaryOp::Or,
                Expr::binary(
                    Expr::column("amount"),
                    BinaryOp::Gt,
                    Expr::Literal(Literal::Int(100)),
                ),
            ))),
            "NOT (country = 'CZ' OR amount > 100)",
        ),
        (
            Expr::binary(
                Expr::column("country"),
                BinaryOp::Eq,
                Expr::Literal(Literal::String("x' OR '1'='1".into())),
            ),
            "country = 'x'' OR ''1''=''1'",
        ),
    ];
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for (filter, sql) in &cases {
        let expected: u64 = pg
            .psql("app", &format!("SELECT count(*) FROM orders WHERE {sql}"))
            .parse()
            .unwrap();
        let c = call(&grant, "orders", structured("orders", Some(filter.clone())));
        let report = runtime()
            .query(postgres(), &c, &out)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(report.rows, expected, "{sql}");
        let estimate = runtime().estimate(postgres(), &c).await.unwrap();
        assert!(
            estimate.rows.is_some() && !estimate.exact,
            "{sql}: {estimate:?}"
        );
        assert!(estimate.scan_bytes.unwrap() > 0, "{sql}: {estimate:?}");
    }

    // projection, order and limit are pushed down too
    let top = QueryRequest::Structured(Request {
        table: "orders".into(),
        columns: vec!["amount".into(), "id".into()],
        filter: Some(Expr::binary(
            Expr::column("country"),
            BinaryOp::Eq,
            Expr::Literal(Literal::String("US".into())),
        )),
        order_by: vec![OrderKey {
            column: "amount".into(),
            descending: true,
        }],
        limit: Some(3),
    });
    let report = runtime()
        .query(postgres(), &call(&grant, "orders", top), &out)
        .await
        .unwrap();
    assert_eq!(report.rows, 3);
    assert_eq!(
        report
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["amount", "id"]
    );
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let ids: String = conn
        .query_row(
            &format!(
                "SELECT string_agg(id::VARCHAR, ',') FROM read_parquet('{}')",
                report.path.display()
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ids, pg.psql("app", "SELECT string_agg(id::text, ',') FROM (SELECT id FROM orders WHERE country = 'US' ORDER BY amount DESC LIMIT 3) s"));

    // admin SQL runs as given; its result says what the schema is
    let sql = QueryRequest::Sql(
        "SELECT country, count(*) AS n, sum(amount) AS total FROM orders GROUP BY 1 ORDER BY 1"
            .into(),
    );
    let report = runtime()
        .query(postgres(), &call(&grant, "by_country", sql.clone()), &out)
        .await
        .unwrap();
    assert_eq!(report.rows, 4);
    assert!(out.join("by_country.parquet").is_file());
    let estimate = runtime()
        .estimate(postgres(), &call(&grant, "by_country", sql))
        .await
        .unwrap();
    assert!(estimate.scan_bytes.unwrap() >= 8192, "{estimate:?}");

    // a request the host cannot validate is refused before the connector runs
    let refused = [
        (
            structured(
                "orders",
                Some(Expr::binary(
                    Expr::column("nope"),
                    BinaryOp::Eq,
                    Expr::Literal(Literal::Int(1)),
                )),
            ),
            "`nope` is not a column",
        ),
        (
            structured(
                "orders",
                Some(Expr::binary(
                    Expr::column("country"),
                    BinaryOp::Gt,
                    Expr::Literal(Literal::Int(1)),
                )),
            ),
            "compares a text with a number",
        ),
        (
            structured(
                "orders",
                Some(Expr::binary(
                    Expr::column("blob"),
                    BinaryOp::Eq,
                    Expr::column("blob"),
                )),
            ),
            "IS [NOT] NULL",
        ),
        (
            QueryRequest::Structured(Request {
                table: "orders".into(),
                columns: vec!["id; DROP TABLE orders".into()],
                ..Request::default()
            }),
            "is not a column",
        ),
        (QueryRequest::Sql("  ".into()), "non-empty"),
    ];
    for (request, why) in refused {
        let err = runtime()
            .query(postgres(), &call(&grant, "orders", request), &out)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidRequest { .. }), "{err}");
        assert!(err.to_string().contains(why), "{err}");
    }
    let err = runtime()
        .query(
            postgres(),
            &call(&grant, "missing", structured("missing", None)),
            &out,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchTable { .. }), "{err}");
    // admin SQL that writes fails at the source: the session is read-only
    let err = runtime()
        .query(
            postgres(),
            &call(
                &grant,
                "x",
                QueryRequest::Sql("DELETE FROM orders RETURNING id".into()),
            ),
            &out,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("read-only transaction")
            || err.to_string().contains("permission denied"),
        "{err}"
    );
    assert_eq!(pg.psql("app", "SELECT count(*) FROM orders"), "5000");
}

#[tokio::test]
async fn worlds_0_1_and_0_2_run_side_by_side() {
    let pg = PgCluster::start();
    pg.psql("app", "CREATE TABLE t (n int); INSERT INTO t VALUES (1);");
    pg.grant_select();
    let tmp = tempfile::tempdir().unwrap();
    let old = runtime()
        .load_file(&agnes_tests::repo_root().join("tests/fixtures/synth-0.1.0.wasm"))
        .unwrap();
    let limits = Limits::default();
    let old_spec = runtime().spec(&old, &limits).await.unwrap();
    let new_spec = runtime().spec(postgres(), &limits).await.unwrap();
    assert_eq!((old_spec.world, new_spec.world), (World::V0_1, World::V0_2));
    assert_eq!(old_spec.capabilities.names(), ["read"]);
    assert_eq!(new_spec.capabilities.names(), ["read", "query", "estimate"]);
    assert!(
        runtime()
            .surface(&old)
            .exports
            .iter()
            .any(|e| e.starts_with("agnes:connector/source@0.1.0#"))
    );

    // both run in one runtime, concurrently
    let old_run = runtime().run(
        &old,
        pg_request(
            &tmp.path().join("a"),
            Grant::default(),
            json!({"rows": 1000}),
        ),
        None,
    );
    let grant = grant_main(pg.grant("trusted", None));
    let new_run = runtime().run(
        postgres(),
        pg_request(&tmp.path().join("b"), grant.clone(), json!({})),
        None,
    );
    let (a, b) = tokio::join!(old_run, new_run);
    assert_eq!((a.unwrap().rows, b.unwrap().rows), (1000, 1));

    // asking a 0.1.0 component to query is a clear error, not a trap
    let out = tmp.path();
    let c = QueryCall {
        config: json!({"rows": 1}).to_string(),
        grant: Grant::default(),
        limits: Limits::default(),
        table: "synth".into(),
        request: structured("synth", None),
    };
    let err = runtime().query(&old, &c, out).await.unwrap_err();
    assert!(
        matches!(err, Error::Unsupported { call: "query", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("0.1.0"), "{err}");
    let err = runtime().estimate(&old, &c).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unsupported {
                call: "estimate",
                ..
            }
        ),
        "{err}"
    );
    // a 0.2.0 component without query says so through its spec
    let c = QueryCall {
        config: json!({"mode": "good"}).to_string(),
        table: "numbers".into(),
        request: structured("numbers", None),
        ..c
    };
    let err = runtime()
        .query(agnes_tests::hostile(), &c, out)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("its spec lists only: read"),
        "{err}"
    );
}

#[tokio::test]
async fn hostile_database_cases_fail_cleanly() {
    let pg = PgCluster::start();
    pg.psql("app", "CREATE TABLE orders (id int PRIMARY KEY, v text);
                    INSERT INTO orders SELECT g, repeat('x', 100) FROM generate_series(1, 300000) g;");
    pg.grant_select();
    let tmp = tempfile::tempdir().unwrap();
    let good_pw = password_file(tmp.path(), READER_PASSWORD);
    let extracts = tmp.path().join("extracts");
    let good = grant_main(pg.grant("reader", Some(&good_pw)));
    let first = runtime()
        .run(
            postgres(),
            pg_request(&extracts, good.clone(), json!({})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(first.rows, 300_000);
    let before = snapshot(&extracts);
    let still_serving = || {
        assert_eq!(
            snapshot(&extracts),
            before,
            "the previous extract is untouched"
        );
        let n: i64 = open_extract(&extracts.join("pg"))
            .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 300_000);
    };

    // wrong password: the error names the grant and never the password
    let wrong = "Wrong-pw-3b9e1d";
    let dir = tempfile::tempdir().unwrap();
    let bad = grant_main(pg.grant("reader", Some(&password_file(dir.path(), wrong))));
    let err = runtime()
        .run(postgres(), pg_request(&extracts, bad, json!({})), None)
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, Error::Database { .. }), "{text}");
    assert!(
        text.contains("database `main`") && text.contains("reader@127.0.0.1"),
        "{text}"
    );
    assert!(text.contains("password authentication failed"), "{text}");
    for secret in [wrong, READER_PASSWORD] {
        assert!(!text.contains(secret), "the password leaked: {text}");
        assert!(
            !pg.log().contains(secret),
            "the password reached the server log"
        );
    }
    still_serving();

    // a name that resolves to a private address without allow_private
    let mut private = pg.grant("reader", Some(&good_pw));
    private.allow_private = false;
    private.host = "localhost".into();
    let err = runtime()
        .run(
            postgres(),
            pg_request(&extracts, grant_main(private), json!({})),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("non-public address") && err.to_string().contains("allow_private"),
        "{err}"
    );
    still_serving();

    // TLS required by the grant, not offered by the server
    let mut tls = pg.grant("reader", Some(&good_pw));
    tls.tls = agnes_runtime::TlsMode::VerifyFull;
    let err = runtime()
        .run(
            postgres(),
            pg_request(&extracts, grant_main(tls), json!({})),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not accept TLS"), "{err}");
    still_serving();

    // the server killed mid-COPY
    let cluster = &pg;
    let killed = std::sync::atomic::AtomicBool::new(false);
    let killed = std::sync::Arc::new(killed);
    let flag = killed.clone();
    let port = cluster.port;
    let pid = cluster.pid();
    let on_progress: agnes_runtime::ProgressFn = Box::new(move |p| {
        if p.rows > 0 && !flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let _ = std::process::Command::new("pkill")
                .args(["-KILL", "-P", &pid.to_string()])
                .status();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let _ = port;
        }
    });
    let err = runtime()
        .run(
            postgres(),
            pg_request(&extracts, good.clone(), json!({"batch_rows": 1000})),
            Some(on_progress),
        )
        .await
        .unwrap_err();
    assert!(
        killed.load(std::sync::atomic::Ordering::SeqCst),
        "the server was killed mid-read"
    );
    assert!(
        err.to_string().contains("closed the connection") || err.to_string().contains("database"),
        "{err}"
    );
    still_serving();
}

#[tokio::test]
async fn a_guest_cannot_go_beyond_its_database_grant() {
    let pg = PgCluster::start();
    pg.psql(
        "app",
        "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2);",
    );
    pg.grant_select();
    let tmp = tempfile::tempdir().unwrap();
    let grant = grant_main(pg.grant("reader", Some(&password_file(tmp.path(), READER_PASSWORD))));
    let extracts = tmp.path().join("extracts");

    // an ungranted database name
    let err = fails_cleanly(&extracts, || {
        run_hostile_db(&extracts, grant.clone(), json!({"database": "other"}))
    })
    .await;
    assert!(
        matches!(err, Error::EgressDenied { .. }) && err.to_string().contains("database `other`"),
        "{err}"
    );

    // a second connection beyond max_db_connections
    let limits = Limits {
        max_db_connections: 1,
        ..Limits::default()
    };
    let err = fails_cleanly(&extracts, || {
        run_hostile_db_with(
            &extracts,
            grant.clone(),
            json!({"connections": 2, "swallow": true}),
            limits.clone(),
        )
    })
    .await;
    assert!(err.to_string().contains("max_db_connections"), "{err}");

    // COPY FROM STDIN data is never forwarded
    let err = fails_cleanly(&extracts, || {
        run_hostile_db(&extracts, grant.clone(), json!({"copy_data": true}))
    })
    .await;
    assert!(
        matches!(err, Error::DatabaseDenied { .. }) && err.to_string().contains("COPY FROM STDIN"),
        "{err}"
    );

    // undoing the read-only session and writing: PostgreSQL refuses (the role may only
    // SELECT), and the connector sees the refusal
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x");
    run_hostile_db(
        &x,
        grant.clone(),
        json!({"sql": [
            "SET default_transaction_read_only = off; DELETE FROM orders",
            "SET default_transaction_read_only = off",
            "DELETE FROM orders",
            "SELECT count(*) FROM orders"
        ]}),
    )
    .await
    .unwrap();
    let outcomes = probe(&x);
    // in one implicit transaction the session's read-only default still holds
    assert!(
        outcomes[1].1.contains("read-only transaction"),
        "{outcomes:?}"
    );
    // undone for the next transaction: the role's privileges are what refuses
    assert_eq!(outcomes[2].1, "ok: []", "{outcomes:?}");
    assert!(
        outcomes[3].1.contains("permission denied for table orders"),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[4].1, "ok: [[Some(\"2\")]]");
    assert_eq!(pg.psql("app", "SELECT count(*) FROM orders"), "2");
}

/// Files under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file()
                && std::fs::read(&p)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
            {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_postgres_source_in_the_server_never_records_its_password() {
    let pg = PgCluster::start();
    pg.psql(
        "app",
        "CREATE TABLE orders (id int PRIMARY KEY, country text);
                    INSERT INTO orders SELECT g, 'CZ' FROM generate_series(1, 100) g;",
    );
    pg.grant_select();
    let s = agnes_tests::TestServer::start();
    let secrets = tempfile::tempdir().unwrap();
    let good = password_file(secrets.path(), READER_PASSWORD);
    let db = |password: &Path| {
        json!({"databases": {"main": {
            "host": "127.0.0.1", "port": pg.port, "database": "app", "user": "reader",
            "password": {"file": password}, "tls": "disable", "allow_private": true
        }}})
    };
    let manifest = agnes_tests::repo_root().join("connectors-wasm/postgres/connector.toml");
    let (st, body) = s.call(
        "POST",
        Some(&s.admin),
        "/api/admin/sources",
        Some(
            json!({"name": "warehouse", "connector": agnes_tests::POSTGRES_COMPONENT,
                    "manifest": manifest, "config": {}, "grant": db(&good)}),
        ),
    );
    assert_eq!(st, 201, "{body}");
    s.admin_call(
        "POST",
        "/api/admin/sources/warehouse/tables",
        Some(json!({"all": true})),
    );
    s.admin_call("POST", "/api/admin/sources/warehouse/sync", None);
    s.wait_for_sync();
    let run = &s.admin_call("GET", "/api/sync/history?source=warehouse&limit=1", None)["runs"][0];
    assert_eq!(run["status"], "ok", "{run}");
    let manifest = s.admin_call("GET", "/api/sync/manifest", None);
    assert_eq!(manifest["tables"]["orders"]["rows"], 100, "{manifest}");

    // a component built against 0.1.0 is a source of the same server, served beside it
    let legacy = agnes_tests::repo_root().join("tests/fixtures/synth-0.1.0.wasm");
    let (st, body) = s.call(
        "POST",
        Some(&s.admin),
        "/api/admin/sources",
        Some(json!({"name": "legacy", "connector": legacy, "config": {"rows": 50}})),
    );
    assert_eq!(st, 201, "{body}");
    s.admin_call(
        "POST",
        "/api/admin/sources/legacy/tables",
        Some(json!({"all": true})),
    );
    s.admin_call("POST", "/api/admin/sources/legacy/sync", None);
    s.wait_for_sync();
    let manifest = s.admin_call("GET", "/api/sync/manifest", None);
    assert_eq!(
        (
            &manifest["tables"]["orders"]["rows"],
            &manifest["tables"]["synth"]["rows"]
        ),
        (&json!(100), &json!(50)),
        "{manifest}"
    );

    // the operator rotates to a wrong password: the sync fails naming the grant
    let wrong = "Wrong-rotated-pw-5c1e";
    let other = tempfile::tempdir().unwrap();
    let bad = password_file(other.path(), wrong);
    s.admin_call(
        "PATCH",
        "/api/admin/sources/warehouse",
        Some(json!({"grant": db(&bad)})),
    );
    s.admin_call("POST", "/api/admin/sources/warehouse/sync", None);
    s.wait_for_sync();
    let history = s.admin_call("GET", "/api/sync/history?source=warehouse", None);
    let run = &history["runs"][0];
    assert_eq!(run["status"], "failed", "{run}");
    let text = history.to_string();
    assert!(
        text.contains("database `main`") && text.contains("password authentication failed"),
        "{text}"
    );
    let audit = s.admin_call("GET", "/api/admin/audit", None).to_string();
    for secret in [wrong, READER_PASSWORD] {
        assert!(!text.contains(secret), "the sync history holds a password");
        assert!(!audit.contains(secret), "the audit log holds a password");
        assert!(
            !pg.log().contains(secret),
            "the server log holds a password"
        );
        assert!(
            files_containing(s.data_dir.path(), secret).is_empty(),
            "a file of the server's data dir holds a password"
        );
    }
    // the previous extract still serves
    let manifest = s.admin_call("GET", "/api/sync/manifest", None);
    assert_eq!(manifest["tables"]["orders"]["rows"], 100, "{manifest}");
}

#[tokio::test]
async fn tls_is_negotiated_and_verified_as_granted() {
    let pg = PgCluster::start();
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = agnes_tests::self_signed(tmp.path());
    pg.enable_tls(&cert, &key);
    pg.psql(
        "app",
        "CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2), (3);",
    );
    pg.grant_select();
    let pw = password_file(tmp.path(), READER_PASSWORD);
    let run = |tls: agnes_runtime::TlsMode, ca: Option<PathBuf>, name: &str| {
        let mut g = pg.grant("reader", Some(&pw));
        g.tls = tls;
        g.ca_file = ca;
        let extracts = tmp.path().join(name);
        async move {
            runtime()
                .run(
                    postgres(),
                    pg_request(&extracts, grant_main(g), json!({})),
                    None,
                )
                .await
        }
    };
    // encrypted, certificate not checked
    assert_eq!(
        run(agnes_runtime::TlsMode::Require, None, "a")
            .await
            .unwrap()
            .rows,
        3
    );
    // verified against the operator's CA file, for the IP the grant names
    assert_eq!(
        run(agnes_runtime::TlsMode::VerifyFull, Some(cert.clone()), "b")
            .await
            .unwrap()
            .rows,
        3
    );
    // verified against Mozilla's roots: a self-signed certificate is refused
    let err = run(agnes_runtime::TlsMode::VerifyFull, None, "c")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("TLS handshake") && err.to_string().contains("certificate"),
        "{err}"
    );
    // the session really is encrypted
    let extracts = tmp.path().join("probe");
    let mut g = pg.grant("reader", Some(&pw));
    g.tls = agnes_runtime::TlsMode::Require;
    run_hostile_db(
        &extracts,
        grant_main(g),
        json!({"sql": ["SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"]}),
    )
    .await
    .unwrap();
    assert_eq!(probe(&extracts)[1].1, "ok: [[Some(\"t\")]]");
}

/// `POST /api/v2/scan` as `token`: the rows of the Arrow IPC answer, or the error JSON.
fn scan_rows(
    s: &agnes_tests::TestServer,
    token: &str,
    body: serde_json::Value,
) -> Result<(usize, Vec<String>), (u16, serde_json::Value)> {
    let r = agnes_tests::http()
        .post(&s.url("/api/v2/scan"))
        .header("Authorization", &agnes_tests::bearer(token))
        .send_json(&body)
        .unwrap();
    let status = r.status().as_u16();
    if status != 200 {
        return Err((status, agnes_tests::read_json(r)));
    }
    let bytes = agnes_tests::read_bytes(r);
    let reader =
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let columns = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let rows = reader.map(|b| b.unwrap().num_rows()).sum();
    Ok((rows, columns))
}

#[test]
fn remote_tables_are_scanned_at_the_source_within_their_guardrails() {
    let pg = PgCluster::start();
    pg.psql(
        "app",
        "CREATE TABLE events (id int8 PRIMARY KEY, country text, amount numeric(10,2), day date);
         INSERT INTO events SELECT g, (ARRAY['CZ','DE','US'])[g % 3 + 1], g * 0.5, '2024-01-01'::date + g % 90
           FROM generate_series(1, 20000) g;
         CREATE TABLE other (id int);
         ANALYZE events;",
    );
    pg.grant_select();
    let table_bytes: u64 = pg
        .psql("app", "SELECT pg_table_size('events')")
        .parse()
        .unwrap();
    // a budget for one full scan and a half
    let s = agnes_tests::TestServer::start_with(|c| {
        c.remote.daily_scan_bytes_per_user = table_bytes * 3 / 2
    });
    let secrets = tempfile::tempdir().unwrap();
    let pw = password_file(secrets.path(), READER_PASSWORD);
    let grant = json!({"databases": {"main": {"host": "127.0.0.1", "port": pg.port, "database": "app",
        "user": "reader", "password": {"file": pw}, "tls": "disable", "allow_private": true}}});
    let manifest = agnes_tests::repo_root().join("connectors-wasm/postgres/connector.toml");
    s.admin_call(
        "POST",
        "/api/admin/sources",
        Some(
            json!({"name": "wh", "connector": agnes_tests::POSTGRES_COMPONENT,
        "manifest": manifest, "config": {}, "grant": grant}),
        ),
    );
    // a remote table needs a table the connector offers
    let (st, err) = s.call(
        "POST",
        Some(&s.admin),
        "/api/admin/sources/wh/tables",
        Some(json!({"tables": [{"name": "nope", "query_mode": "remote"}]})),
    );
    assert_eq!(st, 400, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("does not offer a table `nope`"),
        "{err}"
    );
    s.admin_call(
        "POST",
        "/api/admin/sources/wh/tables",
        Some(json!({"tables": [
        {"name": "events", "query_mode": "remote"}, {"name": "other"}]})),
    );
    s.admin_call("POST", "/api/admin/sources/wh/sync", None);
    s.wait_for_sync();
    // a connector that cannot query cannot have remote tables
    s.with_demo_source(json!({"tables": [{"name": "orders"}]}));
    let (st, err) = s.call(
        "PATCH",
        Some(&s.admin),
        "/api/admin/sources/demo/tables/orders",
        Some(json!({"query_mode": "remote"})),
    );
    assert_eq!(st, 400, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("cannot answer queries"),
        "{err}"
    );

    let ana = s.analyst("ana", "sales", "events");
    let bob = s.admin_call(
        "POST",
        "/api/admin/users",
        Some(json!({"name": "bob", "groups": []})),
    )["token"]
        .as_str()
        .unwrap()
        .to_string();

    // listed as remote, not copied, not downloadable
    let (_, m) = s.call("GET", Some(&ana), "/api/sync/manifest", None);
    assert_eq!(m["tables"]["events"]["query_mode"], "remote", "{m}");
    assert!(
        !s.data_dir
            .path()
            .join("extracts/wh/data/events.parquet")
            .exists()
    );
    let (st, err) = s.call("GET", Some(&ana), "/api/data/events/download", None);
    assert_eq!(
        (st, err["code"].as_str()),
        (400, Some("remote_table")),
        "{err}"
    );
    // schema from the connector, a sample with the limit pushed down
    let (st, schema) = s.call("GET", Some(&ana), "/api/v2/schema/events", None);
    assert_eq!(st, 200, "{schema}");
    assert_eq!(
        (
            schema["query_mode"].as_str(),
            schema["columns"].as_array().map(Vec::len)
        ),
        (Some("remote"), Some(4)),
        "{schema}"
    );
    assert!(
        schema["where_syntax"]
            .as_str()
            .unwrap()
            .contains("no functions")
    );
    let (st, sample) = s.call("GET", Some(&ana), "/api/v2/sample/events?n=3", None);
    assert_eq!(
        (st, sample["rows"].as_array().map(Vec::len)),
        (200, Some(3)),
        "{sample}"
    );
    // no grant, no scan
    assert_eq!(
        scan_rows(&s, &bob, json!({"table": "events"}))
            .unwrap_err()
            .0,
        403
    );

    // the where is pushed to the source: PostgreSQL's count, and the connector emitted
    // exactly those rows (the audit records what it read)
    let expected: usize = pg.psql("app", "SELECT count(*) FROM events WHERE country = 'CZ' AND amount > 100 AND day < '2024-02-01'").parse().unwrap();
    let (st, est) = s.call("POST", Some(&ana), "/api/v2/scan/estimate",
        Some(json!({"table": "events", "where": "country = 'CZ' AND amount > 100 AND day < DATE '2024-02-01'"})));
    assert_eq!(st, 200, "{est}");
    assert!(
        est["estimated_scan_bytes"].as_u64().unwrap() >= table_bytes,
        "{est}"
    );
    assert!(est["would_refuse"].is_null(), "{est}");
    let (rows, columns) = scan_rows(&s, &ana, json!({"table": "events", "select": ["id", "amount"],
        "where": "country = 'CZ' AND amount > 100 AND day < DATE '2024-02-01'", "order_by": ["amount DESC"]})).unwrap();
    assert_eq!(
        (rows, columns),
        (expected, vec!["id".to_string(), "amount".to_string()])
    );
    let audit = s.admin_call("GET", "/api/admin/audit?action=data.remote_scan", None);
    let detail = audit.to_string();
    assert!(detail.contains(&format!("rows={expected} ")), "{detail}");

    // refused before anything reaches the connector, naming the part
    for (bad, why) in [
        ("id IN (SELECT id FROM other)", "subquery"),
        ("lower(country) = 'cz'", "function `lower`"),
        ("other.id = 1", "not a column of `events`"),
        ("id = 1 -- OR 1=1", "comments"),
        ("id = 1; DELETE FROM events", "`;`"),
        ("nope = 1", "`nope` is not a column"),
        ("country > 1", "compares a text with a number"),
    ] {
        let (st, err) = scan_rows(&s, &ana, json!({"table": "events", "where": bad})).unwrap_err();
        assert_eq!(
            (st, err["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}: {err}"
        );
        assert!(
            err["message"].as_str().unwrap().contains(why),
            "{bad}: {err}"
        );
    }

    // the budget: today's scans (one full scan already) plus this one's estimate; a narrow
    // scan by the primary key still fits, another full scan does not
    assert_eq!(
        scan_rows(&s, &ana, json!({"table": "events", "where": "id < 10"}))
            .unwrap()
            .0,
        9
    );
    let (st, err) =
        scan_rows(&s, &ana, json!({"table": "events", "where": "amount > 0"})).unwrap_err();
    assert_eq!(
        (st, err["code"].as_str()),
        (400, Some("remote_budget_exceeded")),
        "{err}"
    );
    // the cap, per table, suggests a snapshot
    s.admin_call(
        "PATCH",
        "/api/admin/sources/wh/tables/events",
        Some(json!({"options": {"max_scan_bytes": 1000}})),
    );
    let (st, err) = scan_rows(&s, &ana, json!({"table": "events"})).unwrap_err();
    assert_eq!(
        (st, err["code"].as_str()),
        (400, Some("remote_scan_too_large")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("agnes snapshot create events --where"),
        "{err}"
    );
    let refused = s
        .admin_call(
            "GET",
            "/api/admin/audit?action=data.remote_scan_refused",
            None,
        )
        .to_string();
    assert!(
        refused.contains("remote_scan_too_large") && refused.contains("remote_budget_exceeded"),
        "{refused}"
    );
}

#[test]
fn a_query_over_a_remote_table_moves_only_what_it_needs() {
    let pg = PgCluster::start();
    pg.psql(
        "app",
        "CREATE TABLE events (id int8 PRIMARY KEY, country text, amount numeric(10,2));
         INSERT INTO events SELECT g, (ARRAY['CZ','DE','US'])[g % 3 + 1], g * 0.5
           FROM generate_series(1, 30000) g;
         ANALYZE events;",
    );
    pg.grant_select();
    let s = agnes_tests::TestServer::start();
    s.with_demo_source(json!({"all": true}));
    let secrets = tempfile::tempdir().unwrap();
    let pw = password_file(secrets.path(), READER_PASSWORD);
    let grant = json!({"databases": {"main": {"host": "127.0.0.1", "port": pg.port, "database": "app",
        "user": "reader", "password": {"file": pw}, "tls": "disable", "allow_private": true}}});
    let manifest = agnes_tests::repo_root().join("connectors-wasm/postgres/connector.toml");
    s.admin_call(
        "POST",
        "/api/admin/sources",
        Some(
            json!({"name": "wh", "connector": agnes_tests::POSTGRES_COMPONENT,
        "manifest": manifest, "config": {}, "grant": grant}),
        ),
    );
    s.admin_call(
        "POST",
        "/api/admin/sources/wh/tables",
        Some(json!({"tables": [{"name": "events", "query_mode": "remote"}]})),
    );
    let query = |sql: &str| {
        let (st, v) = s.call(
            "POST",
            Some(&s.admin),
            "/api/query",
            Some(json!({"sql": sql})),
        );
        assert_eq!(st, 200, "{sql}: {v}");
        v
    };
    let last_scan = || {
        let audit = s.admin_call("GET", "/api/admin/audit?action=data.remote_scan", None);
        audit["entries"][0]["detail"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| audit.to_string())
    };

    // an aggregate with a filter: only the matching rows (one column) leave PostgreSQL
    let cz: u64 = pg
        .psql("app", "SELECT count(*) FROM events WHERE country = 'CZ'")
        .parse()
        .unwrap();
    let v = query("SELECT count(*) AS n FROM events WHERE country = 'CZ'");
    assert_eq!(v["rows"][0][0], json!(cz), "{v}");
    let detail = last_scan();
    assert!(
        detail.contains(&format!(" rows={cz} ")),
        "the connector emitted only the matching rows: {detail}"
    );

    // a remote table joined with a local one (the demo's orders, ids 1..2500)
    let expected: u64 = pg
        .psql(
            "app",
            "SELECT count(*) FROM events WHERE country = 'DE' AND id <= 2500",
        )
        .parse()
        .unwrap();
    let v = query(
        "SELECT count(*) AS n, round(sum(o.amount), 2) AS revenue FROM events e \
         JOIN orders o ON o.order_id = e.id WHERE e.country = 'DE'",
    );
    assert_eq!(v["rows"][0][0], json!(expected), "{v}");
    let de: u64 = pg
        .psql("app", "SELECT count(*) FROM events WHERE country = 'DE'")
        .parse()
        .unwrap();
    assert!(
        last_scan().contains(&format!(" rows={de} ")),
        "the join's condition on events was pushed"
    );

    // an outer join keeps its meaning: nothing pushed, the answer still PostgreSQL's
    let v = query(
        "SELECT count(*) FROM orders o LEFT JOIN events e ON e.id = o.order_id + 29000 WHERE e.id IS NULL",
    );
    assert_eq!(v["rows"][0][0], json!(2500 - 1000), "{v}");
}

#[test]
fn materialized_tables_run_admin_sql_at_the_source_and_keep_their_last_good_version() {
    let pg = PgCluster::start();
    pg.psql(
        "app",
        "CREATE TABLE orders (id int8 PRIMARY KEY, country text, amount numeric(10,2));
         INSERT INTO orders SELECT g, (ARRAY['CZ','DE','US'])[g % 3 + 1], g * 0.5
           FROM generate_series(1, 3000) g;",
    );
    pg.grant_select();
    let s = agnes_tests::TestServer::start();
    let secrets = tempfile::tempdir().unwrap();
    let pw = password_file(secrets.path(), READER_PASSWORD);
    let grant = json!({"databases": {"main": {"host": "127.0.0.1", "port": pg.port, "database": "app",
        "user": "reader", "password": {"file": pw}, "tls": "disable", "allow_private": true}}});
    let manifest = agnes_tests::repo_root().join("connectors-wasm/postgres/connector.toml");
    s.admin_call(
        "POST",
        "/api/admin/sources",
        Some(
            json!({"name": "wh", "connector": agnes_tests::POSTGRES_COMPONENT,
        "manifest": manifest, "config": {}, "grant": grant}),
        ),
    );
    let sql =
        "SELECT country, count(*) AS n, sum(amount) AS total FROM orders GROUP BY 1 ORDER BY 1";
    // a materialized table needs its SQL
    let (st, err) = s.call(
        "POST",
        Some(&s.admin),
        "/api/admin/sources/wh/tables",
        Some(json!({"tables": [{"name": "by_country", "query_mode": "materialized"}]})),
    );
    assert_eq!(st, 400, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("needs its SQL"),
        "{err}"
    );
    s.admin_call(
        "POST",
        "/api/admin/sources/wh/tables",
        Some(json!({"tables": [
        {"name": "orders"},
        {"name": "by_country", "query_mode": "materialized", "options": {"sql": sql}}]})),
    );
    let sync = || s.sync_source("wh");
    let run = sync();
    assert_eq!(run["status"], "ok", "{run}");
    let m = s.admin_call("GET", "/api/sync/manifest", None);
    let by_country = m["tables"]["by_country"].clone();
    assert_eq!(
        (
            by_country["query_mode"].as_str(),
            by_country["rows"].as_i64()
        ),
        (Some("materialized"), Some(3)),
        "{m}"
    );
    assert_eq!(m["tables"]["orders"]["query_mode"], "local");
    // distributed like a local table: downloadable, its values PostgreSQL's
    let bytes = agnes_tests::read_bytes(
        agnes_tests::http()
            .get(&s.url("/api/data/by_country/download"))
            .header("Authorization", &agnes_tests::bearer(&s.admin))
            .call()
            .unwrap(),
    );
    let file = secrets.path().join("by_country.parquet");
    std::fs::write(&file, &bytes).unwrap();
    let got: String = duckdb::Connection::open_in_memory()
        .unwrap()
        .query_row(
            &format!("SELECT string_agg(country || ':' || n || ':' || total, ',' ORDER BY country) FROM read_parquet('{}')", file.display()),
            [],
            |r| r.get(0),
        )
        .unwrap();
    let want = pg.psql("app", "SELECT string_agg(country || ':' || n || ':' || total, ',' ORDER BY country) FROM (SELECT country, count(*) AS n, sum(amount) AS total FROM orders GROUP BY 1) s");
    assert_eq!(got, want);

    // a failing SQL keeps the previous version and records the error
    s.admin_call(
        "PATCH",
        "/api/admin/sources/wh/tables/by_country",
        Some(json!({"options": {"sql": "SELECT * FROM no_such_table"}})),
    );
    let run = sync();
    assert_eq!(run["status"], "partial", "{run}");
    let failed = run["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "by_country")
        .unwrap()
        .clone();
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("no_such_table") && error.contains("previous version is kept"),
        "{failed}"
    );
    let m = s.admin_call("GET", "/api/sync/manifest", None);
    assert_eq!(
        m["tables"]["by_country"]["hash"], by_country["hash"],
        "the last good version still serves"
    );

    // the guardrail: over max_bytes_per_materialize, the SQL does not run
    s.admin_call(
        "PATCH",
        "/api/admin/sources/wh/tables/by_country",
        Some(json!({"options": {"sql": sql, "max_bytes_per_materialize": 1}})),
    );
    let run = sync();
    let failed = run["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "by_country")
        .unwrap()
        .clone();
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("max_bytes_per_materialize"),
        "{failed}"
    );

    // its own grant: who may read `orders` does not read `by_country`, and the other way round
    s.admin_call("POST", "/api/admin/groups", Some(json!({"name": "ops"})));
    s.admin_call(
        "POST",
        "/api/admin/grants",
        Some(json!({"group": "ops", "resource_type": "table", "resource_id": "orders"})),
    );
    let ops = s.admin_call(
        "POST",
        "/api/admin/users",
        Some(json!({"name": "olga", "groups": ["ops"]})),
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _) = s.call("GET", Some(&ops), "/api/v2/schema/by_country", None);
    assert_eq!(st, 403);
}
