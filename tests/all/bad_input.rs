//! Bad data and misbehaving guests: each fails the run with a clear error, publishes
//! nothing, leaves no staging debris, and leaves the previous extract byte-for-byte intact.

use agnes_runtime::Error;
use agnes_tests::{csv, fails_cleanly, request, run_hostile, runtime, snapshot};
use serde_json::json;

#[tokio::test]
async fn garbage_bytes_instead_of_arrow_ipc() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails_cleanly(tmp.path(), || run_hostile(tmp.path(), "garbage", json!({}))).await;
    assert!(
        matches!(&err, Error::InvalidBatch { table, reason } if table == "numbers" && reason.contains("not valid Arrow IPC")),
        "{err}"
    );
}

#[tokio::test]
async fn schema_change_mid_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails_cleanly(tmp.path(), || {
        run_hostile(tmp.path(), "schema_change", json!({}))
    })
    .await;
    let msg = err.to_string();
    assert!(matches!(err, Error::InvalidBatch { .. }), "{msg}");
    assert!(msg.contains("numbers"), "{msg}");
}

#[tokio::test]
async fn a_message_cut_in_half() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails_cleanly(tmp.path(), || run_hostile(tmp.path(), "partial", json!({}))).await;
    assert!(err.to_string().contains("end inside a message"), "{err}");
}

#[tokio::test]
async fn a_guest_that_traps_after_emitting() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails_cleanly(tmp.path(), || run_hostile(tmp.path(), "trap", json!({}))).await;
    assert!(
        matches!(
            err,
            Error::Trap {
                phase: agnes_runtime::Phase::Read,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_table_name_that_is_not_a_safe_identifier() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails_cleanly(tmp.path(), || {
        run_hostile(tmp.path(), "unsafe_name", json!({}))
    })
    .await;
    assert!(
        matches!(&err, Error::UnsafeName { kind: "table", name, .. } if name == "bad;name"),
        "{err}"
    );
}

#[tokio::test]
async fn emitting_to_a_table_that_was_not_offered() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails_cleanly(tmp.path(), || {
        run_hostile(tmp.path(), "unknown_stream", json!({}))
    })
    .await;
    assert!(
        matches!(&err, Error::UnknownStream { table, .. } if table == "secret_table"),
        "{err}"
    );
}

#[tokio::test]
async fn emitting_during_discover_is_denied() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails_cleanly(tmp.path(), || {
        run_hostile(tmp.path(), "emit_in_discover", json!({}))
    })
    .await;
    let msg = err.to_string();
    assert!(
        msg.contains("AccessDenied") && msg.contains("only allowed during read"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_connector_error_is_reported_with_its_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails_cleanly(tmp.path(), || run_hostile(tmp.path(), "error", json!({}))).await;
    assert!(
        matches!(&err, Error::Connector { kind: "source", message, .. } if message.contains("503")),
        "{err}"
    );
}

#[tokio::test]
async fn a_selected_table_that_does_not_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails_cleanly(tmp.path(), || async {
        let mut req = request(tmp.path(), "src", json!({"mode": "good"}), &[]);
        req.streams = Some(vec!["nope".into()]);
        runtime().run(agnes_tests::hostile(), req, None).await
    })
    .await;
    assert!(
        matches!(&err, Error::NoSuchTable { table, offered } if table == "nope" && offered == "numbers"),
        "{err}"
    );
}

/// CSV inputs: each bad file fails the csv connector with a message naming the file.
async fn csv_fails(files: &[(&str, &[u8])], config: serde_json::Value) -> Error {
    let tmp = tempfile::tempdir().unwrap();
    let extracts = tmp.path().join("extracts");
    let good = tmp.path().join("good");
    std::fs::create_dir(&good).unwrap();
    std::fs::write(good.join("t.csv"), "a,b\n1,x\n").unwrap();
    runtime()
        .run(
            csv(),
            request(&extracts, "s", json!({}), &[(&good, "/data")]),
            None,
        )
        .await
        .unwrap();
    let before = snapshot(&extracts);

    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    for (name, content) in files {
        if content.is_empty() && name.ends_with('/') {
            std::fs::create_dir(bad.join(name.trim_end_matches('/'))).unwrap();
        } else {
            std::fs::write(bad.join(name), content).unwrap();
        }
    }
    let err = runtime()
        .run(
            csv(),
            request(&extracts, "s", config, &[(&bad, "/data")]),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        snapshot(&extracts),
        before,
        "nothing changed on disk ({err})"
    );
    err
}

#[tokio::test]
async fn csv_with_a_ragged_row() {
    let err = csv_fails(&[("t.csv", b"a,b\n1,x\n2,y,extra\n3,z\n")], json!({})).await;
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Connector { kind: "source", .. }),
        "{msg}"
    );
    assert!(
        msg.contains("/data/t.csv") && msg.contains("Expected 2") && msg.contains("line 3"),
        "{msg}"
    );
}

#[tokio::test]
async fn csv_with_a_ragged_row_after_the_inference_sample() {
    let err = csv_fails(
        &[("t.csv", b"a,b\n1,x\n2,y\n3,z,extra\n")],
        json!({"infer_rows": 1}),
    )
    .await;
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            Error::Connector {
                phase: agnes_runtime::Phase::Read,
                kind: "source",
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("/data/t.csv") && msg.contains("incorrect number of fields for line 4"),
        "{msg}"
    );
}

#[tokio::test]
async fn csv_that_is_not_utf8() {
    let err = csv_fails(&[("t.csv", b"a,b\n1,\xff\xfe\n")], json!({})).await;
    let msg = err.to_string();
    assert!(
        msg.contains("/data/t.csv") && msg.to_lowercase().contains("utf"),
        "{msg}"
    );
}

#[tokio::test]
async fn csv_path_that_cannot_be_read() {
    let err = csv_fails(&[("t.csv/", b"")], json!({})).await;
    let msg = err.to_string();
    assert!(matches!(err, Error::Connector { kind: "io", .. }), "{msg}");
    assert!(msg.contains("/data/t.csv: not a regular file"), "{msg}");
}

#[tokio::test]
async fn csv_file_name_that_is_not_a_safe_table_name() {
    let err = csv_fails(&[("bad;name.csv", b"a\n1\n")], json!({})).await;
    assert!(
        matches!(&err, Error::UnsafeName { kind: "table", name, .. } if name == "bad;name"),
        "{err}"
    );
}

#[tokio::test]
async fn csv_with_a_value_that_does_not_fit_the_inferred_type() {
    let err = csv_fails(&[("t.csv", b"n\n1\n2\nthree\n")], json!({"infer_rows": 2})).await;
    let msg = err.to_string();
    assert!(
        msg.contains("/data/t.csv") && msg.contains("three"),
        "{msg}"
    );
}

#[tokio::test]
async fn csv_with_an_invalid_config() {
    let err = csv_fails(&[("t.csv", b"a\n1\n")], json!({"delimiter": ";;"})).await;
    assert!(
        matches!(err, Error::Connector { kind: "config", .. }),
        "{err}"
    );
    let err = csv_fails(&[("t.csv", b"a\n1\n")], json!({"unknown_key": 1})).await;
    assert!(err.to_string().contains("unknown_key"), "{err}");
    let err = csv_fails(
        &[("t.csv", b"a\n1\n")],
        json!({"columns": {"t": {"a": "int128"}}}),
    )
    .await;
    assert!(err.to_string().contains("int128"), "{err}");
}

#[tokio::test]
async fn csv_with_duplicate_column_names() {
    let err = csv_fails(&[("t.csv", b"a,A\n1,2\n")], json!({})).await;
    assert!(
        matches!(&err, Error::UnsafeName { kind: "column", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn an_empty_csv_file() {
    let err = csv_fails(&[("t.csv", b"")], json!({})).await;
    assert!(err.to_string().contains("empty"), "{err}");
}

#[tokio::test]
async fn not_a_component() {
    let err = runtime()
        .load(b"this is not wasm")
        .err()
        .expect("must fail");
    assert!(
        matches!(&err, Error::Compile { reason, .. } if reason.contains("not a WebAssembly")),
        "{err}"
    );
    // a core module is not a component either
    let err = runtime().load(b"\0asm\x01\0\0\0").err().expect("must fail");
    assert!(matches!(err, Error::Compile { .. }), "{err}");
}
