//! `Runtime::run_native` runs a connector compiled into the host through the same host
//! pipeline as a component: the synthetic table from the `synth` component and from the
//! same source compiled natively make the same extract.

use agnes_tests::{SYNTH_COMPONENT, open_extract, request, run_synth_native, runtime};
use serde_json::json;

fn fingerprint(dir: &std::path::Path) -> (i64, i64, String, String, String) {
    open_extract(dir)
        .query_row(
            "SELECT count(*), sum(id), max(label), min(created_at)::VARCHAR, sum(value)::VARCHAR FROM synth",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap()
}

#[tokio::test]
async fn native_and_wasm_runs_make_the_same_extract() {
    let tmp = tempfile::tempdir().unwrap();
    let synth = runtime()
        .load_file(std::path::Path::new(SYNTH_COMPONENT))
        .unwrap();
    let req = request(
        tmp.path(),
        "wasm",
        json!({"rows": 100_000, "batch_rows": 8192}),
        &[],
    );
    let wasm = runtime().run(&synth, req, None).await.unwrap();
    let native = run_synth_native(runtime(), tmp.path(), "native", 100_000, 8192).unwrap();
    assert_eq!((wasm.rows, native.rows), (100_000, 100_000));
    assert_eq!(
        wasm.bytes_emitted, native.bytes_emitted,
        "the same IPC bytes crossed into the host"
    );
    assert_eq!(native.component_digest, "native");
    let a = fingerprint(&tmp.path().join("wasm"));
    assert_eq!(a, fingerprint(&tmp.path().join("native")));
    assert_eq!(a.0, 100_000);
    assert_eq!(a.2, "label-00000000099999");
    assert_eq!(a.3, "2024-01-01 00:00:00+00");
}

#[test]
fn a_native_emit_to_an_unselected_table_fails_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = agnes_tests::synth_rows::schema();
    let table = agnes_runtime::TableSpec {
        name: "synth".into(),
        description: None,
        schema: schema.clone(),
        primary_key: vec![],
        cursor_field: None,
    };
    let req = request(tmp.path(), "n", json!({}), &[]);
    let err = runtime()
        .run_native(req, vec![table], |out| {
            out.emit("other", vec![1, 2, 3])?;
            Ok(None)
        })
        .unwrap_err();
    assert!(
        matches!(err, agnes_runtime::Error::UnknownStream { .. }),
        "{err}"
    );
    assert!(agnes_runtime::extract::published(tmp.path(), "n").is_none());
}
