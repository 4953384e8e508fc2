//! The scale-out mode on one machine: several servers (each its own data dir, port and
//! runtime) sharing one PostgreSQL state — a private cluster started by the test, real
//! HTTP over loopback between the test and every server.

use std::time::{Duration, Instant};

use agnes_tests::TestServer;
use agnes_tests::pg::PgCluster;
use serde_json::json;

/// A token created on one replica works on the other; its revocation on the first applies
/// on the second at once — announced, not waiting for the second's auth cache to expire.
#[test]
fn access_and_its_revocation_reach_every_replica() {
    let pg = PgCluster::start();
    let state = pg.state_config();
    let a = TestServer::start_with(|c| c.state = state.clone());
    let b = TestServer::replica(&a, |c| c.state = state.clone());

    let created = a.admin_call("POST", "/api/admin/users", Some(json!({"name": "ana"})));
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["token_info"]["id"].as_str().unwrap().to_string();
    let cached = Instant::now();
    let (st, mine) = b.call("GET", Some(&token), "/api/tokens", None);
    assert_eq!(st, 200, "a token made on A works on B: {mine}");
    assert_eq!(mine["tokens"][0]["id"], id.as_str());

    // B has resolved (cached) it; A revokes it
    let (st, body) = a.call("DELETE", Some(&token), &format!("/api/tokens/{id}"), None);
    assert_eq!(st, 200, "{body}");
    // B's cached entry would last until `cached + AUTH_TTL`: refused well before that
    let bound = agnes_server::auth::AUTH_TTL / 2;
    loop {
        let (st, _) = b.call("GET", Some(&token), "/api/tokens", None);
        if st == 401 {
            break;
        }
        assert_eq!(st, 200);
        assert!(
            cached.elapsed() < bound,
            "B still accepts the revoked token half its cache TTL after caching it: the revocation was not announced"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // and on A, of course
    assert_eq!(a.call("GET", Some(&token), "/api/tokens", None).0, 401);

    // a user disabled on B is refused on A (which had resolved their token) the same way
    let second = a.admin_call("POST", "/api/admin/users", Some(json!({"name": "bob"})));
    let bob = second["token"].as_str().unwrap().to_string();
    let cached = Instant::now();
    let (st, before) = a.call("GET", Some(&bob), "/api/tokens", None);
    assert_eq!(st, 200, "{before}");
    b.admin_call("POST", "/api/admin/users/bob/disable", None);
    while a.call("GET", Some(&bob), "/api/tokens", None).0 != 401 {
        assert!(
            cached.elapsed() < bound,
            "A still accepts a user disabled on B"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two triggers of one source at once, one on each replica: one run, the other refused
/// with the run that holds the source; the source is free again once it finished.
#[test]
fn simultaneous_triggers_on_two_replicas_run_one_sync() {
    let pg = PgCluster::start();
    let state = pg.state_config();
    let a = TestServer::start_with(|c| c.state = state.clone());
    let b = TestServer::replica(&a, |c| c.state = state.clone());
    a.with_demo_source(json!({"all": true}));
    let runs_before = a.admin_call("GET", "/api/sync/history?source=demo&limit=100", None)["runs"]
        .as_array()
        .unwrap()
        .len();

    let barrier = std::sync::Barrier::new(2);
    let trigger = |server: &TestServer| {
        barrier.wait();
        server.call(
            "POST",
            Some(&server.admin),
            "/api/admin/sources/demo/sync",
            None,
        )
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ja = s.spawn(|| trigger(&a));
        let jb = s.spawn(|| trigger(&b));
        (ja.join().unwrap(), jb.join().unwrap())
    });
    let mut statuses = [ra.0, rb.0];
    statuses.sort();
    assert_eq!(statuses, [202, 409], "A: {ra:?}, B: {rb:?}");
    let refused = if ra.0 == 409 { &ra.1 } else { &rb.1 };
    assert!(
        refused.to_string().contains("is syncing (run"),
        "the refusal names the run: {refused}"
    );
    a.wait_for_sync();
    b.wait_for_sync();
    let runs = a.admin_call("GET", "/api/sync/history?source=demo&limit=100", None)["runs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(runs.len(), runs_before + 1, "one run: {runs:?}");
    assert_eq!(runs[0]["status"], "ok", "{:?}", runs[0]);
    // free again: B may sync it now
    let (st, body) = b.call("POST", Some(&b.admin), "/api/admin/sources/demo/sync", None);
    assert_eq!(st, 202, "{body}");
    b.wait_for_sync();
}

/// A version replaced more than `grace_secs` ago leaves the bucket (and the record); the
/// current one and a version replaced within the grace stay.
#[test]
fn replaced_versions_leave_the_bucket_after_the_grace() {
    use agnes_tests::garage::{BUCKET, Garage, KEY_ID, REGION};
    let pg = PgCluster::start();
    let garage = Garage::start();
    let secret = garage.secret_file();
    let state = pg.state_config();
    let storage = agnes_server::config::StorageConfig {
        backend: "s3".into(),
        endpoint: Some(garage.endpoint.clone()),
        public_endpoint: None,
        bucket: Some(BUCKET.into()),
        region: REGION.into(),
        access_key_id: Some(KEY_ID.into()),
        secret_access_key_file: Some(secret),
        presign_ttl_secs: 1,
        grace_secs: 3,
    };
    let a = TestServer::start_with(|c| {
        c.state = state.clone();
        c.storage = storage.clone();
    });
    a.with_demo_source(json!({"all": true}));
    a.sync_source("demo");
    let versions = || a.block_on(a.state.store.published_versions()).unwrap();
    let [old, current] = &versions()[..] else {
        panic!("two versions: {:?}", versions())
    };
    let (old, current) = (old.clone(), current.clone());
    let fetch = |version: &str| {
        let key = format!("demo/{version}/data/orders.parquet");
        let bucket = a.state.bucket().unwrap().clone();
        let (url, _) = a.block_on(bucket.presign(&key)).unwrap();
        agnes_tests::http()
            .get(&url)
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!((fetch(&old.version), fetch(&current.version)), (200, 200));
    let remove = || {
        a.block_on(agnes_server::sync::remove_replaced(&a.state))
            .unwrap()
    };
    assert_eq!(remove(), 0, "replaced less than the grace ago");
    std::thread::sleep(Duration::from_millis(3200));
    // this call, or the server's own pass (every quarter lease) if it came first
    assert!(remove() <= 1);
    assert_eq!(versions(), std::slice::from_ref(&current));
    assert_eq!(fetch(&old.version), 404, "gone from the bucket");
    assert_eq!(fetch(&current.version), 200, "the current one stays");
    assert_eq!(remove(), 0);
}
