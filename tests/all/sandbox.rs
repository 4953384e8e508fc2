//! A guest cannot escape its grant or its limits.

use std::time::{Duration, Instant};

use agnes_runtime::{Error, Limits};
use agnes_tests::{fails_cleanly, hostile, open_extract, request, run_hostile_with, runtime};
use serde_json::json;

#[tokio::test]
async fn reads_outside_the_preopen_are_denied() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("inside.txt"), "hello").unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "outside").unwrap();
    let paths = [
        "/data/inside.txt",
        "/etc/passwd",
        "/data/../secret.txt",
        "/data/../../../../etc/passwd",
        "../secret.txt",
        "secret.txt",
        "/proc/self/environ",
    ];
    let extracts = tmp.path().join("extracts");
    let req = request(
        &extracts,
        "probe",
        json!({"mode": "probe", "paths": paths}),
        &[(&data, "/data")],
    );
    runtime().run(hostile(), req, None).await.unwrap();
    let conn = open_extract(&extracts.join("probe"));
    let mut stmt = conn.prepare("SELECT path, outcome FROM probe").unwrap();
    let outcomes: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(outcomes.len(), paths.len());
    for (path, outcome) in outcomes {
        if path == "/data/inside.txt" {
            assert_eq!(outcome, "read 5 bytes", "the granted directory is readable");
        } else {
            assert!(
                outcome.starts_with("denied"),
                "{path} must be denied, got {outcome}"
            );
        }
    }
}

#[tokio::test]
async fn no_grant_means_no_files_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let req = request(
        tmp.path(),
        "probe",
        json!({"mode": "probe", "paths": ["/", "/data/x", "/etc/passwd"]}),
        &[],
    );
    runtime().run(hostile(), req, None).await.unwrap();
    let conn = open_extract(&tmp.path().join("probe"));
    let denied: i64 = conn
        .query_row(
            "SELECT count(*) FROM probe WHERE outcome LIKE 'denied%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(denied, 3);
}

/// `mode` under `limits` fails with an error `check` accepts, after a good extract was
/// published, leaving it byte-for-byte intact.
async fn refused(mode: &str, extra: serde_json::Value, limits: Limits) -> Error {
    let tmp = tempfile::tempdir().unwrap();
    let extracts = tmp.path().to_path_buf();
    fails_cleanly(&extracts, || {
        run_hostile_with(&extracts, mode, extra, limits)
    })
    .await
}

#[tokio::test]
async fn a_spinning_guest_is_stopped_at_its_deadline() {
    let started = Instant::now();
    let err = refused(
        "spin",
        json!({}),
        Limits {
            timeout_secs: 1,
            ..Limits::default()
        },
    )
    .await;
    assert!(
        matches!(err, Error::Timeout { limit } if limit == Duration::from_secs(1)),
        "{err}"
    );
    // Not a timing assertion on speed: only that the guest did not run unbounded.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stopped {:?} after start",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_guest_blocked_in_a_host_call_is_stopped_at_its_deadline() {
    let started = Instant::now();
    let err = refused(
        "sleep",
        json!({}),
        Limits {
            timeout_secs: 1,
            ..Limits::default()
        },
    )
    .await;
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the hour-long sleep was cut: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit() {
    let err = refused(
        "memory_bomb",
        json!({}),
        Limits {
            memory_mb: 64,
            ..Limits::default()
        },
    )
    .await;
    let msg = err.to_string();
    assert!(matches!(err, Error::Trap { .. }), "{msg}");
    assert!(
        msg.contains("memory"),
        "the error says memory ran out: {msg}"
    );
}

#[tokio::test]
async fn row_and_output_limits_stop_a_flood() {
    let err = refused(
        "good",
        json!({"rows": 50_000}),
        Limits {
            max_rows: 10_000,
            ..Limits::default()
        },
    )
    .await;
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "max_rows",
                ..
            }
        ),
        "{err}"
    );
    let err = refused(
        "good",
        json!({"rows": 200_000, "batch": 50_000}),
        Limits {
            max_output_mb: 1,
            ..Limits::default()
        },
    )
    .await;
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "max_output_mb",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn an_oversized_batch_is_refused() {
    // one emit of 200k rows is several MiB of Arrow IPC
    let err = refused(
        "good",
        json!({"rows": 200_000, "batch": 200_000}),
        Limits {
            max_batch_mb: 1,
            ..Limits::default()
        },
    )
    .await;
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "max_batch_mb",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn two_runs_of_one_source_do_not_interleave() {
    let tmp = tempfile::tempdir().unwrap();
    let mut slow = request(tmp.path(), "src", json!({"mode": "spin"}), &[]);
    slow.limits = Limits {
        timeout_secs: 2,
        ..Limits::default()
    };
    let fast = request(tmp.path(), "src", json!({"mode": "good"}), &[]);
    let (a, b) = tokio::join!(runtime().run(hostile(), slow, None), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        runtime().run(hostile(), fast, None).await
    });
    assert!(matches!(a, Err(Error::Timeout { .. })));
    assert!(matches!(b, Err(Error::Busy { .. })), "{b:?}");
}

#[tokio::test]
async fn a_spinning_guest_exhausts_its_cpu_budget_before_its_wall_clock() {
    let err = refused(
        "spin",
        json!({}),
        Limits {
            cpu_secs: 1,
            timeout_secs: 120,
            ..Limits::default()
        },
    )
    .await;
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "cpu_secs",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn time_blocked_in_a_host_call_is_not_cpu_time() {
    let err = refused(
        "sleep",
        json!({}),
        Limits {
            cpu_secs: 1,
            timeout_secs: 3,
            ..Limits::default()
        },
    )
    .await;
    assert!(
        matches!(err, Error::Timeout { limit } if limit == Duration::from_secs(3)),
        "a sleeping guest hits the wall clock, not the CPU budget: {err}"
    );
}
