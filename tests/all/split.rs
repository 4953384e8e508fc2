//! Split reads (`parallel_reads`): the csv connector asks for them in its connector.toml,
//! the host runs one instance per core, each reads a byte range cut at record boundaries,
//! and the table comes out the same — same rows, same order — as one instance reading the
//! whole file, for every CSV shape that makes cutting hard.

use std::path::Path;

use agnes_runtime::{Limits, RunRequest};
use agnes_tests::{connector_manifest, csv, request, runtime};
use serde_json::json;

/// A request for `dir`'s files; `split`: with the limits the csv manifest gets (its
/// `parallel_reads` ask within the operator's default), else one instance.
fn run_request(extracts: &Path, dir: &Path, split: bool) -> RunRequest {
    let mut req = request(
        extracts,
        "s",
        json!({"dir": "/data", "batch_rows": 100, "split_min_bytes": 1}),
        &[(dir, "/data")],
    );
    if split {
        let (_, limits) = connector_manifest("csv")
            .effective(&req.grant, &Limits::default())
            .unwrap();
        assert!(
            limits.read_partitions > 1,
            "the csv connector asks for split reads"
        );
        req.limits = limits;
    }
    req
}

/// Every row of a published parquet file as JSON, in file order; and its row groups.
fn table(path: &Path) -> (Vec<String>, i64) {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    conn.execute_batch("SET threads = 1").unwrap();
    let p = path.display().to_string().replace('\'', "''");
    let mut stmt = conn
        .prepare(&format!(
            "SELECT to_json(t)::VARCHAR FROM read_parquet('{p}') t"
        ))
        .unwrap();
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let groups = conn
        .query_row(
            &format!("SELECT count(DISTINCT row_group_id) FROM parquet_metadata('{p}')"),
            [],
            |r| r.get(0),
        )
        .unwrap();
    (rows, groups)
}

/// Runs `dir` once whole and once split; asserts the same table for each file and returns
/// the split run's row-group counts (more than one: the split happened).
async fn same_both_ways(dir: &Path) -> Vec<(String, usize, i64)> {
    assert!(
        std::thread::available_parallelism().unwrap().get() >= 2,
        "split reads need two cores"
    );
    let tmp = tempfile::tempdir().unwrap();
    let whole = runtime()
        .run(csv(), run_request(&tmp.path().join("a"), dir, false), None)
        .await
        .unwrap();
    let split = runtime()
        .run(csv(), run_request(&tmp.path().join("b"), dir, true), None)
        .await
        .unwrap();
    let mut out = Vec::new();
    for (w, s) in whole.tables.iter().zip(&split.tables) {
        assert_eq!(w.name, s.name);
        assert_eq!(w.rows, s.rows, "{}", w.name);
        let (wr, _) = table(&w.path);
        let (sr, groups) = table(&s.path);
        assert_eq!(wr.len(), sr.len(), "{}", w.name);
        for (i, (a, b)) in wr.iter().zip(&sr).enumerate() {
            assert_eq!(a, b, "{}: row {i}", w.name);
        }
        assert_eq!(
            agnes_tests::md5_file(&s.path),
            s.md5,
            "the md5 is of the joined file"
        );
        out.push((s.name.clone(), sr.len(), groups));
    }
    assert_eq!(whole.rows, split.rows);
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[tokio::test]
async fn hard_csv_shapes_give_the_same_table_split_or_whole() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // quoted newlines, delimiters and doubled quotes in every record: most cut points fall
    // inside a quoted field
    let mut quoted = String::from("id,text,note\n");
    for i in 0..3000 {
        quoted.push_str(&format!(
            "{i},\"line one {i}\nline two, with a comma\",\"say \"\"hi\"\" {i}\"\n"
        ));
    }
    write(d, "quoted.csv", quoted.as_bytes());
    // CRLF line ends
    let crlf: String = std::iter::once("id,name\r\n".to_string())
        .chain((0..3000).map(|i| format!("{i},name {i}\r\n")))
        .collect();
    write(d, "crlf.csv", crlf.as_bytes());
    // a byte-order mark before the header
    let mut bom = b"\xEF\xBB\xBFid,v\n".to_vec();
    for i in 0..3000 {
        bom.extend_from_slice(format!("{i},{}\n", i * 2).as_bytes());
    }
    write(d, "bom.csv", &bom);
    // no newline after the last record
    let mut last: String = std::iter::once("id,v\n".to_string())
        .chain((0..3000).map(|i| format!("{i},v{i}\n")))
        .collect();
    last.pop();
    write(d, "nolf.csv", last.as_bytes());
    // multi-byte text where the cut lands: the middle byte is inside a character
    let mut wide = String::from("id,text\n");
    for i in 0..2000 {
        wide.push_str(&format!("{i},漢字のテキスト é ü {i}\n"));
    }
    let mid = wide.len() / 2;
    let cut_in_char = (mid..mid + 4).any(|p| !wide.is_char_boundary(p));
    assert!(
        cut_in_char,
        "a cut point near the middle is inside a character"
    );
    write(d, "wide.csv", wide.as_bytes());

    let tables = same_both_ways(d).await;
    assert_eq!(tables.len(), 5);
    for (name, rows, groups) in &tables {
        assert!(*rows >= 2000, "{name}: {rows}");
        assert!(
            *groups >= 2,
            "{name}: read by more than one instance ({groups} row groups)"
        );
    }
}

#[tokio::test]
async fn quoting_that_makes_cutting_unsafe_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    // a quote inside an unquoted field, as a CSV reader takes it literally: counting quotes
    // from the start would put every later cut inside a "quoted" field
    let mut text = String::from("id,height,name\n1,5'10\",ann\n");
    for i in 2..3000 {
        text.push_str(&format!("{i},6'0,bob {i}\n"));
    }
    write(dir.path(), "odd.csv", text.as_bytes());
    let tables = same_both_ways(dir.path()).await;
    let (_, rows, groups) = &tables[0];
    assert_eq!(*rows, 2999);
    assert_eq!(*groups, 1, "detected and read by one instance, not guessed");
}

#[tokio::test]
async fn small_files_are_shared_out_whole() {
    let dir = tempfile::tempdir().unwrap();
    for t in 0..5 {
        let text: String = std::iter::once("id,v\n".to_string())
            .chain((0..50).map(|i| format!("{i},{t}\n")))
            .collect();
        write(dir.path(), &format!("t{t}.csv"), text.as_bytes());
    }
    // above the files' size: each is read whole, by one instance
    let tmp = tempfile::tempdir().unwrap();
    let mut req = run_request(tmp.path(), dir.path(), true);
    req.config = json!({"dir": "/data", "split_min_bytes": 1 << 20}).to_string();
    let report = runtime().run(csv(), req, None).await.unwrap();
    assert_eq!(report.tables.len(), 5);
    for t in &report.tables {
        let (rows, groups) = table(&t.path);
        assert_eq!((rows.len(), groups), (50, 1), "{}", t.name);
        assert!(
            rows.iter()
                .all(|r| r.contains(&format!("\"v\":{}", &t.name[1..])))
        );
    }
    assert_eq!(report.rows, 250);
}

#[tokio::test]
async fn a_failing_instance_fails_the_run_with_its_error_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("id,v\n");
    for i in 0..3000 {
        text.push_str(&format!("{i},{i}\n"));
    }
    // a bad value in the last part only: the instance reading it fails
    text.push_str("3000,not a number\n");
    write(dir.path(), "t.csv", text.as_bytes());
    let tmp = tempfile::tempdir().unwrap();
    let mut req = run_request(tmp.path(), dir.path(), true);
    req.config = json!({"dir": "/data", "batch_rows": 100, "split_min_bytes": 1, "columns": {"t": {"v": "int64"}}}).to_string();
    let err = runtime()
        .run(csv(), req, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a number") || err.contains("parse"),
        "{err}"
    );
    assert!(
        !err.contains("another instance"),
        "the real error, not a stopped peer: {err}"
    );
    assert!(
        agnes_runtime::extract::published(tmp.path(), "s").is_none(),
        "nothing published"
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("s"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers
            .iter()
            .all(|n| !n.to_string_lossy().ends_with(".tmp")),
        "{leftovers:?}"
    );
}
