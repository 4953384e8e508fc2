//! The csv connector, end to end: the extract it publishes matches the contract exactly.

use std::path::Path;

use agnes_tests::{csv, md5_file, open_extract, repo_root, request, runtime};
use serde_json::json;

fn demo_data() -> std::path::PathBuf {
    repo_root().join("examples/demo/data")
}

/// Data rows of a CSV file (lines minus the header), counted with a real CSV parser
/// (quoted fields may contain commas).
fn csv_rows(path: &Path) -> i64 {
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows = 0;
    let mut in_quotes = false;
    for c in text.chars() {
        match c {
            '"' => in_quotes = !in_quotes,
            '\n' if !in_quotes => rows += 1,
            _ => {}
        }
    }
    rows - 1
}

#[tokio::test]
async fn demo_dataset_becomes_a_contract_exact_extract() {
    let tmp = tempfile::tempdir().unwrap();
    let extracts = tmp.path().join("extracts");
    let data = demo_data();
    let report = runtime()
        .run(
            csv(),
            request(
                &extracts,
                "demo",
                json!({"dir": "/data", "batch_rows": 500}),
                &[(&data, "/data")],
            ),
            None,
        )
        .await
        .unwrap();
    let dir = extracts.join("demo");
    assert_eq!(
        report
            .tables
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["customers", "orders", "products"]
    );

    let conn = open_extract(&dir);
    // _meta: exactly these columns, in this order, with these types.
    let mut stmt = conn
        .prepare("SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = '_meta' ORDER BY ordinal_position")
        .unwrap();
    let cols: Vec<(String, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected = [
        ("table_name", "VARCHAR", "NO"),
        ("description", "VARCHAR", "YES"),
        ("rows", "BIGINT", "YES"),
        ("size_bytes", "BIGINT", "YES"),
        ("extracted_at", "TIMESTAMP", "YES"),
        ("query_mode", "VARCHAR", "YES"),
    ];
    assert_eq!(cols.len(), expected.len());
    for ((n, t, null), (en, et, enull)) in cols.iter().zip(expected) {
        assert_eq!((n.as_str(), t.as_str(), null.as_str()), (en, et, enull));
    }

    // One view per table, named like the parquet file stem; nothing else but _meta/_files.
    let mut stmt = conn
        .prepare("SELECT table_name, table_type FROM information_schema.tables ORDER BY table_name")
        .unwrap();
    let objects: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        objects,
        [
            ("_files".into(), "BASE TABLE".into()),
            ("_meta".into(), "BASE TABLE".into()),
            ("customers".into(), "VIEW".into()),
            ("orders".into(), "VIEW".into()),
            ("products".into(), "VIEW".into()),
        ]
    );

    for table in ["customers", "orders", "products"] {
        let csv_path = data.join(format!("{table}.csv"));
        let parquet = dir.join("data").join(format!("{table}.parquet"));
        let (rows, size, mode, md5): (i64, i64, String, String) = conn
            .query_row(
                "SELECT m.rows, m.size_bytes, m.query_mode, f.md5 FROM _meta m JOIN _files f USING (table_name) WHERE table_name = ?",
                [table],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            rows,
            csv_rows(&csv_path),
            "{table}: _meta.rows = CSV data rows"
        );
        let view_rows: i64 = conn
            .query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(view_rows, rows, "{table}: the view reads every row");
        assert_eq!(
            size as u64,
            std::fs::metadata(&parquet).unwrap().len(),
            "{table}: size_bytes"
        );
        assert_eq!(md5, md5_file(&parquet), "{table}: md5 of the served bytes");
        assert_eq!(mode, "local");
        let report = report.tables.iter().find(|t| t.name == table).unwrap();
        assert_eq!(report.md5, md5);
    }

    // Types were inferred and values survive the trip, quotes and all.
    let (amount, ordered_at, note): (f64, String, String) = conn
        .query_row(
            "SELECT amount, CAST(ordered_at AS VARCHAR), note FROM orders WHERE order_id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(amount, 861.56);
    assert_eq!(ordered_at, "2024-12-07 07:05:00");
    assert_eq!(note, "customer said \"asap\"");
    let active_type: String = conn
        .query_row("SELECT data_type FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'is_active'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(active_type, "BOOLEAN");
    // The parquet files are zstd-compressed.
    let codec: String = conn
        .query_row(
            &format!(
                "SELECT compression FROM parquet_metadata('{}') LIMIT 1",
                dir.join("data/orders.parquet").display()
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(codec, "ZSTD");
}

#[tokio::test]
async fn declared_types_table_mapping_and_selection() {
    let tmp = tempfile::tempdir().unwrap();
    let extracts = tmp.path().join("extracts");
    let data = demo_data();
    let mut req = request(
        &extracts,
        "typed",
        json!({"tables": {"sales": "orders.csv", "items": "products.csv"}, "columns": {"sales": {"quantity": "float64", "note": "string"}}}),
        &[(&data, "/data")],
    );
    req.streams = Some(vec!["sales".into()]);
    let report = runtime().run(csv(), req, None).await.unwrap();
    assert_eq!(report.tables.len(), 1);
    let conn = open_extract(&extracts.join("typed"));
    let ty: String = conn
        .query_row("SELECT data_type FROM information_schema.columns WHERE table_name = 'sales' AND column_name = 'quantity'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ty, "DOUBLE");
    let n: i64 = conn
        .query_row("SELECT count(*) FROM _meta", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "only the selected table is in the extract");
}

#[tokio::test]
async fn a_second_run_replaces_the_extract_atomically() {
    let tmp = tempfile::tempdir().unwrap();
    let extracts = tmp.path().join("extracts");
    let data = tmp.path().join("in");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("t.csv"), "a,b\n1,x\n2,y\n").unwrap();
    let r1 = runtime()
        .run(
            csv(),
            request(&extracts, "s", json!({}), &[(&data, "/data")]),
            None,
        )
        .await
        .unwrap();
    std::fs::write(data.join("t.csv"), "a,b\n1,x\n2,y\n3,z\n").unwrap();
    let r2 = runtime()
        .run(
            csv(),
            request(&extracts, "s", json!({}), &[(&data, "/data")]),
            None,
        )
        .await
        .unwrap();
    assert_ne!(r1.dir, r2.dir);
    let conn = open_extract(&extracts.join("s"));
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
    // A reader that attached the first version still reads the first version.
    let old = agnes_tests::open_extract(&r1.dir);
    let n: i64 = old
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}
