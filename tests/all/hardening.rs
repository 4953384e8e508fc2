//! Issue 20, hostile schemas and batches: what a guest legitimately sends may not push the
//! host around or change data silently. Each case is a clean refusal naming the limit or
//! the field (and the previous extract keeps serving), or exact data read back through
//! DuckDB. Native runs (`Runtime::run_native`) go through the same emit pipeline as a
//! component; the cases that depend on the wasm boundary use the hostile fixture.

use std::sync::Arc;

use agnes_runtime::{Error, Limits, TableSpec};
use agnes_tests::{fails_cleanly, open_extract, request, run_hostile_with, runtime};
use arrow_array::{
    ArrayRef, Date64Array, DictionaryArray, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::json;

fn table(name: &str, schema: SchemaRef) -> TableSpec {
    TableSpec {
        name: name.into(),
        description: None,
        schema,
        primary_key: vec![],
        cursor_field: None,
    }
}

/// One IPC stream (schema + batches), left open, as one emit.
fn ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Vec<u8> {
    let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), schema).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    std::mem::take(w.get_mut())
}

/// Runs source `src` natively with `tables`, emitting `batches` to the first one.
fn native(
    extracts: &std::path::Path,
    tables: Vec<TableSpec>,
    emits: Vec<Vec<u8>>,
    limits: Limits,
) -> Result<agnes_runtime::RunReport, Error> {
    let name = tables[0].name.clone();
    let mut req = request(extracts, "src", json!({}), &[]);
    req.limits = limits;
    runtime().run_native(req, tables, |out| {
        for e in emits {
            out.emit(&name, e)?;
        }
        Ok(None)
    })
}

/// Publishes a good extract, then runs table `numbers` of `schema` natively with `emits`:
/// the run must fail and leave everything as it was. Returns the error.
async fn refused(schema: SchemaRef, emits: Vec<Vec<u8>>, limits: Limits) -> Error {
    let tmp = tempfile::tempdir().unwrap();
    fails_cleanly(tmp.path(), || async {
        native(tmp.path(), vec![table("numbers", schema)], emits, limits)
    })
    .await
}

fn nested_list(depth: usize) -> DataType {
    let mut dt = DataType::Int64;
    for _ in 0..depth {
        dt = DataType::List(Arc::new(Field::new("item", dt, true)));
    }
    dt
}

#[tokio::test]
async fn issue20_lists_nested_past_the_limit_are_refused_at_discover() {
    let schema = Arc::new(Schema::new(vec![Field::new("deep", nested_list(26), true)]));
    let err = refused(schema, vec![], Limits::default()).await;
    assert!(
        matches!(&err, Error::LimitExceeded { limit: "max_nesting_depth", detail } if detail.contains("column `deep")),
        "{err}"
    );
}

#[tokio::test]
async fn issue20_tables_wider_than_the_limit_are_refused() {
    let fields: Vec<Field> = (0..40_000)
        .map(|i| Field::new(format!("c{i}"), DataType::Int64, true))
        .collect();
    let err = refused(Arc::new(Schema::new(fields)), vec![], Limits::default()).await;
    assert!(
        matches!(&err, Error::LimitExceeded { limit: "max_columns", detail } if detail.contains("40000 columns")),
        "{err}"
    );
}

#[tokio::test]
async fn issue20_a_null_dictionary_value_in_a_non_nullable_column_is_refused_not_stored_as_empty() {
    let dict_type = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let schema = Arc::new(Schema::new(vec![Field::new("label", dict_type, false)]));
    let values = StringArray::from(vec![Some("a"), None]);
    let dict = DictionaryArray::new(Int32Array::from(vec![0, 1]), Arc::new(values));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(dict) as ArrayRef]).unwrap();
    let err = refused(
        schema.clone(),
        vec![ipc(&schema, &[batch])],
        Limits::default(),
    )
    .await;
    assert!(
        matches!(&err, Error::InvalidBatch { reason, .. } if reason.contains("column `label` is declared non-nullable but holds 1 null")),
        "{err}"
    );
}

#[tokio::test]
async fn issue20_struct_children_differing_only_in_case_or_empty_are_refused() {
    for children in [vec!["A", "a"], vec![""]] {
        let fields: Vec<Field> = children
            .iter()
            .map(|n| Field::new(*n, DataType::Int64, true))
            .collect();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Struct(fields.into()),
            true,
        )]));
        let err = refused(schema, vec![], Limits::default()).await;
        assert!(
            matches!(err, Error::UnsafeName { .. } | Error::InvalidSchema { .. }),
            "{children:?}: {err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("numbers.s.") || text.contains("`numbers` column `s.`"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn issue20_huge_names_and_escape_codes_never_reach_a_terminal_whole() {
    // a 50 MB column name: refused, and the error stays short
    let tmp = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "c".repeat(50 << 20),
        DataType::Int64,
        true,
    )]));
    let err = native(
        tmp.path(),
        vec![table("numbers", schema)],
        vec![],
        Limits::default(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.len() < 1024, "{} bytes", text.len());
    assert!(
        text.contains("bytes in all"),
        "the full length is noted: {text}"
    );

    // a 50 MB error message that starts with escape codes faking success
    let err = run_hostile_with(
        tmp.path(),
        "loud_error",
        json!({"rows": 50 << 20}),
        Limits::default(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.len() < 8192, "{} bytes", text.len());
    assert!(
        !text.contains('\u{1b}') && !text.contains('\r'),
        "{text:.200}"
    );
    assert!(text.contains("\\u{1b}[2K\\r"), "shown escaped: {text:.200}");
}

#[tokio::test]
async fn issue20_a_refused_checkpoint_fails_the_run_even_if_the_guest_ignores_it() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails_cleanly(tmp.path(), || {
        run_hostile_with(
            tmp.path(),
            "bad_checkpoint",
            json!({"rows": 3}),
            Limits::default(),
        )
    })
    .await;
    assert!(
        matches!(&err, Error::InvalidState { reason } if reason.contains("not valid JSON")),
        "{err}"
    );
}

#[tokio::test]
async fn issue20_a_valid_empty_batch_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let empty = RecordBatch::new_empty(schema.clone());
    let one =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![42]))]).unwrap();
    // schema + one empty batch, ending the emit (the decoder holds an empty body back)
    let report = native(
        tmp.path(),
        vec![table("numbers", schema.clone())],
        vec![ipc(&schema, std::slice::from_ref(&empty))],
        Limits::default(),
    )
    .unwrap();
    assert_eq!(report.rows, 0);
    // empty, then a row, in one stream
    let tmp = tempfile::tempdir().unwrap();
    let report = native(
        tmp.path(),
        vec![table("numbers", schema.clone())],
        vec![ipc(&schema, &[empty, one])],
        Limits::default(),
    )
    .unwrap();
    assert_eq!(report.rows, 1);
    assert_eq!(
        agnes_tests::query_i64(&tmp.path().join("src"), "SELECT sum(n) FROM numbers"),
        42
    );
}

#[tokio::test]
async fn issue20_a_batch_under_max_batch_mb_is_never_refused_by_wasmtime() {
    let tmp = tempfile::tempdir().unwrap();
    // 155 MB in one emit under max_batch_mb = 256 (wasmtime's own copy limit is 128 MiB
    // unless the host raises it), with a host budget that holds it
    let limits = Limits {
        max_batch_mb: 256,
        host_memory_mb: 2048,
        ..Limits::default()
    };
    let report = run_hostile_with(tmp.path(), "big_batch", json!({"rows": 155 << 20}), limits)
        .await
        .expect("a 155 MB batch under a 256 MiB limit");
    assert_eq!(report.rows, 1);
    // over max_batch_mb (whichever layer noticed), or under it but more than the host may
    // hold for one batch: the error names the limit
    for (max_batch_mb, host_memory_mb, limit) in
        [(64, 512, "max_batch_mb"), (256, 256, "host_memory_mb")]
    {
        let limits = Limits {
            max_batch_mb,
            host_memory_mb,
            ..Limits::default()
        };
        let err = run_hostile_with(tmp.path(), "big_batch", json!({"rows": 100 << 20}), limits)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::LimitExceeded { limit: l, .. } if *l == limit),
            "{limit}: {err}"
        );
    }
}

#[tokio::test]
async fn issue20_a_nullability_mismatch_names_the_field() {
    let declared = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let sent = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
    let batch =
        RecordBatch::try_new(sent.clone(), vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
    let err = refused(declared, vec![ipc(&sent, &[batch])], Limits::default()).await;
    assert!(
        err.to_string().contains(
            "column 1 was discovered as `n` Int64 NOT NULL but the stream carries `n` Int64"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn issue20_a_memory_refusal_names_memory_mb() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = Limits {
        memory_mb: 1,
        ..Limits::default()
    };
    let err = run_hostile_with(tmp.path(), "good", json!({}), limits)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("memory_mb"), "{text}");
    assert!(!text.contains("is it built against"), "{text}");
}

#[tokio::test]
async fn issue20_dropped_log_lines_are_counted_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_log_lines: 1000,
        ..Limits::default()
    };
    let report = run_hostile_with(tmp.path(), "log_flood", json!({"rows": 3500}), limits)
        .await
        .unwrap();
    assert_eq!(report.logs_dropped, 2500);
    assert_eq!(report.rows, 1);
}

#[tokio::test]
async fn issue20_date64_reads_back_as_a_timestamp_and_duration_and_interval_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Date64, true)]));
    // 2024-12-07 07:05:00 UTC, in ms: a Date64 with a time of day survives
    let ms = 1_733_555_100_000i64;
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Date64Array::from(vec![ms]))]).unwrap();
    native(
        tmp.path(),
        vec![table("numbers", schema.clone())],
        vec![ipc(&schema, &[batch])],
        Limits::default(),
    )
    .unwrap();
    let conn = open_extract(&tmp.path().join("src"));
    let (ty, text): (String, String) = conn
        .query_row(
            "SELECT typeof(d), CAST(d AS VARCHAR) FROM numbers",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (ty.as_str(), text.as_str()),
        ("TIMESTAMP", "2024-12-07 07:05:00")
    );

    for (dt, needle) in [
        (DataType::Duration(TimeUnit::Millisecond), "elapsed_ms"),
        (
            DataType::Interval(arrow_schema::IntervalUnit::DayTime),
            "cannot be written to parquet",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("x", dt.clone(), true)]));
        let err = native(
            tmp.path(),
            vec![table("numbers", schema)],
            vec![],
            Limits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidSchema { column, reason, .. } if column == "x" && reason.contains(needle)),
            "{dt}: {err}"
        );
    }
}

#[tokio::test]
async fn issue20_the_number_of_batches_is_bounded() {
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let mut emits = vec![ipc(&schema, &[RecordBatch::new_empty(schema.clone())])];
    let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &schema).unwrap();
    std::mem::take(w.get_mut());
    for _ in 0..150 {
        w.write(&RecordBatch::new_empty(schema.clone())).unwrap();
        emits.push(std::mem::take(w.get_mut()));
    }
    let limits = Limits {
        max_batches: 100,
        ..Limits::default()
    };
    let err = refused(schema.clone(), emits, limits).await;
    assert!(
        matches!(
            &err,
            Error::LimitExceeded {
                limit: "max_batches",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn issue20_readers_stay_fast_on_the_widest_and_deepest_extract_the_limits_allow() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = Limits::default();
    // max_columns columns, the last one a list nested max_nesting_depth deep
    let depth = limits.max_nesting_depth;
    let mut fields: Vec<Field> = (0..limits.max_columns - 1)
        .map(|i| Field::new(format!("c{i}"), DataType::Int64, true))
        .collect();
    fields.push(Field::new("deep", nested_list(depth), true));
    let schema = Arc::new(Schema::new(fields));
    let rows = 100usize;
    let mut columns: Vec<ArrayRef> = (0..limits.max_columns - 1)
        .map(|i| {
            Arc::new(Int64Array::from_iter_values(
                (0..rows as i64).map(|r| r * i as i64),
            )) as ArrayRef
        })
        .collect();
    let mut deep: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
    for _ in 0..depth {
        let item = Arc::new(Field::new("item", deep.data_type().clone(), true));
        deep = Arc::new(ListArray::new(
            item,
            arrow_buffer::OffsetBuffer::from_lengths(vec![1; rows]),
            deep,
            None,
        ));
    }
    columns.push(deep);
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    native(
        tmp.path(),
        vec![table("numbers", schema.clone())],
        vec![ipc(&schema, &[batch])],
        limits,
    )
    .unwrap();

    let started = std::time::Instant::now();
    let conn = open_extract(&tmp.path().join("src"));
    let mut stmt = conn.prepare("SELECT * FROM numbers").unwrap();
    let n = stmt.query_map([], |_| Ok(())).unwrap().count();
    assert_eq!(n, rows);
    let leaf = format!("deep{}", "[1]".repeat(depth));
    let sum = agnes_tests::query_i64(
        &tmp.path().join("src"),
        &format!("SELECT sum({leaf}) FROM numbers"),
    );
    assert_eq!(sum, (0..rows as i64).sum::<i64>());
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(20),
        "reading back took {took:?}"
    );
}

#[tokio::test]
async fn issue20_host_time_spent_on_the_guests_output_counts_against_cpu_secs() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from_iter_values(0..65_536))],
    )
    .unwrap();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &schema).unwrap();
    let mut first = true;
    let mut req = request(tmp.path(), "src", json!({}), &[]);
    req.limits = Limits {
        cpu_secs: 1,
        ..Limits::default()
    };
    // the "guest" is native: it uses no epoch ticks, all its cost is the host's
    let err = runtime()
        .run_native(req, vec![table("numbers", schema.clone())], |out| {
            for _ in 0..50_000 {
                w.write(&batch).unwrap();
                let bytes = std::mem::take(w.get_mut());
                out.emit("numbers", bytes)?;
                first = false;
            }
            Ok(None)
        })
        .unwrap_err();
    assert!(!first);
    assert!(
        matches!(&err, Error::LimitExceeded { limit: "cpu_secs", detail } if detail.contains("the host handling")),
        "{err}"
    );
}

#[tokio::test]
async fn issue20_a_stdout_flood_counts_against_cpu_secs() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = Limits {
        cpu_secs: 1,
        ..Limits::default()
    };
    let err = run_hostile_with(
        tmp.path(),
        "stdout_flood",
        json!({"rows": 2_000_000}),
        limits,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::LimitExceeded {
                limit: "cpu_secs",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn issue20_every_reader_stays_fast_on_the_widest_and_deepest_table_the_limits_allow() {
    let s = agnes_tests::TestServer::start();
    let source = json!({"name": "hostile", "connector": agnes_tests::HOSTILE_COMPONENT,
                        "config": {"mode": "widest", "rows": 100}});
    s.admin_call("POST", "/api/admin/sources", Some(source));
    s.admin_call(
        "POST",
        "/api/admin/sources/hostile/tables",
        Some(json!({"all": true})),
    );
    let started = std::time::Instant::now();
    s.admin_call("POST", "/api/admin/sources/hostile/sync", None);
    s.wait_for_sync();
    let run = &s.admin_call("GET", "/api/sync/history?limit=1", None)["runs"][0];
    assert_eq!(run["status"], "ok", "{run}");
    // the catalog, the schema, a query, a download read by a local DuckDB
    let catalog = s.admin_call("GET", "/api/catalog/tables", None);
    assert_eq!(catalog["tables"][0]["rows"], 100, "{catalog}");
    let schema = s.admin_call("GET", "/api/v2/schema/wide", None);
    assert_eq!(schema["columns"].as_array().unwrap().len(), 1000);
    let leaf = format!("deep{}", "[1]".repeat(8));
    let q = s.admin_call(
        "POST",
        "/api/query",
        Some(json!({"sql": format!("SELECT count(*) AS n, sum({leaf}) AS s, sum(c998) AS w FROM wide"), "limit": 10})),
    );
    assert_eq!(q["rows"][0], json!([100, 4950, 4950 * 998]), "{q}");
    let sample = s.admin_call("GET", "/api/v2/sample/wide?n=5", None);
    assert_eq!(sample["row_count"], 5);
    let r = agnes_tests::http()
        .get(&s.url("/api/data/wide/download"))
        .header("Authorization", &agnes_tests::bearer(&s.admin))
        .call()
        .unwrap();
    let bytes = agnes_tests::read_bytes(r);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let n: i64 = conn
        .query_row(
            &format!(
                "SELECT sum({leaf}) FROM read_parquet('{}')",
                file.path().display()
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 4950);
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(60),
        "sync and every reader took {took:?}"
    );
}
