//! The state store's contract: what every backend behind `agnes_server::store::Store` must
//! do, use case by use case. Every test runs against every backend: the embedded DuckDB
//! state file and PostgreSQL (a private cluster, the scale-out mode's state).

use agnes_server::error::ApiError;
use agnes_server::store::{AuditFilter, SourceSpec, Store, TableOutcome, TableSpec};
use agnes_tests::pg::PgCluster;
use serde_json::json;

/// What keeps a backend alive (its directory, its cluster).
type Guard = Box<dyn std::any::Any>;

/// A fresh store of every backend, each with a name for the failure messages.
async fn backends() -> Vec<(&'static str, Box<dyn Store>, Guard)> {
    let dir = tempfile::tempdir().unwrap();
    let db = agnes_server::db::Db::open(&dir.path().join("state/system.duckdb")).unwrap();
    let pg = PgCluster::start();
    let state = agnes_server::db::Db::connect(&pg.state_target())
        .await
        .unwrap();
    vec![
        ("duckdb", Box::new(db), Box::new(dir)),
        ("postgres", Box::new(state), Box::new(pg)),
    ]
}

fn source(name: &str) -> SourceSpec {
    serde_json::from_value(
        json!({"name": name, "connector": "csv@0.1.0", "config": {"dir": "/data"}}),
    )
    .unwrap()
}

fn table(name: &str) -> TableSpec {
    serde_json::from_value(json!({"name": name})).unwrap()
}

#[tokio::test]
async fn users_tokens_and_authentication() {
    for (backend, store, _dir) in backends().await {
        let admin_token = store
            .bootstrap("admin")
            .await
            .unwrap()
            .expect("first admin");
        assert!(
            store.bootstrap("again").await.unwrap().is_none(),
            "{backend}: once"
        );
        assert_eq!(store.count_users().await.unwrap(), 1);
        let admin = store
            .authenticate(&admin_token)
            .await
            .unwrap()
            .expect("admin token");
        assert!(admin.is_admin(), "{backend}");

        store.create_group("sales").await.unwrap();
        let (_, info, token) = store
            .create_user("ana", &["sales".to_string()], Some(30))
            .await
            .unwrap();
        assert!(info.expires_at.is_some(), "{backend}: expiry recorded");
        assert!(
            token.starts_with(&format!("agnes_{}_", info.prefix)),
            "{backend}: the prefix names the token"
        );
        let ana = store
            .authenticate(&token)
            .await
            .unwrap()
            .expect("ana's token");
        assert_eq!(ana.name, "ana");
        assert!(
            ana.groups.contains(&"sales".to_string()),
            "{backend}: {:?}",
            ana.groups
        );
        assert!(!ana.is_admin());
        let (second, second_token) = store.create_token(&ana.id, "laptop", None).await.unwrap();
        assert_eq!(
            store.list_tokens(Some(&ana.id)).await.unwrap().len(),
            2,
            "{backend}"
        );

        // tokens are stored hashed: a token that was never issued, or one changed, fails
        assert!(
            store
                .authenticate("agnes_00000000_nope")
                .await
                .unwrap()
                .is_none()
        );
        let mut altered = token.clone();
        altered.push('x');
        assert!(
            store.authenticate(&altered).await.unwrap().is_none(),
            "{backend}"
        );

        // a user revokes their own token; it stops authenticating, the other one works
        store.revoke_token(&second.id, &ana).await.unwrap();
        assert!(
            store.authenticate(&second_token).await.unwrap().is_none(),
            "{backend}"
        );
        assert!(
            store.authenticate(&token).await.unwrap().is_some(),
            "{backend}"
        );
        // and may not revoke someone else's
        let admin_tokens = store.list_tokens(Some(&admin.id)).await.unwrap();
        assert!(
            store.revoke_token(&admin_tokens[0].id, &ana).await.is_err(),
            "{backend}: not another user's token"
        );
        // a disabled user's tokens stop authenticating
        store.disable_user("ana").await.unwrap();
        assert!(
            store.authenticate(&token).await.unwrap().is_none(),
            "{backend}"
        );
        assert!(
            store.authenticate(&admin_token).await.unwrap().is_some(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn grants_reach_members_and_go_with_revocation() {
    for (backend, store, _dir) in backends().await {
        store.bootstrap("admin").await.unwrap();
        store.create_group("sales").await.unwrap();
        let (_, _, token) = store.create_user("ana", &[], None).await.unwrap();
        let ana = || async { store.authenticate(&token).await.unwrap().unwrap() };
        assert!(
            !ana().await.can_read("orders", "shop"),
            "{backend}: deny by default"
        );
        store.grant("sales", "table", "orders").await.unwrap();
        assert!(
            !ana().await.can_read("orders", "shop"),
            "{backend}: not a member yet"
        );
        store.add_member("sales", "ana").await.unwrap();
        assert!(ana().await.can_read("orders", "shop"), "{backend}");
        assert!(!ana().await.can_read("customers", "shop"), "{backend}");
        store.grant("sales", "source", "shop").await.unwrap();
        assert!(
            ana().await.can_read("customers", "shop"),
            "{backend}: a source grant"
        );
        let grants = store.list_grants().await.unwrap();
        assert!(
            grants
                .iter()
                .any(|g| g.group == "sales" && g.resource_id == "orders")
        );
        store.revoke_grant("sales", "source", "shop").await.unwrap();
        store.remove_member("sales", "ana").await.unwrap();
        assert!(!ana().await.can_read("orders", "shop"), "{backend}");
        assert!(
            store.grant("nobody", "table", "orders").await.is_err(),
            "{backend}: a grant names an existing group"
        );
    }
}

#[tokio::test]
async fn sources_and_tables_all_or_nothing() {
    for (backend, store, _dir) in backends().await {
        store.create_source(&source("shop")).await.unwrap();
        let dup = store.create_source(&source("shop")).await.unwrap_err();
        assert!(matches!(dup, ApiError::Conflict(_)), "{backend}: {dup:?}");
        store.create_source(&source("crm")).await.unwrap();
        store
            .add_tables("shop", &[table("orders"), table("customers")])
            .await
            .unwrap();
        // one name taken by another source: a conflict naming the owner, and nothing added
        let taken = store
            .add_tables("crm", &[table("leads"), table("orders")])
            .await
            .unwrap_err();
        assert!(
            matches!(&taken, ApiError::Conflict(m) if m.contains("shop")),
            "{backend}: {taken:?}"
        );
        assert!(
            store.list_tables(Some("crm")).await.unwrap().is_empty(),
            "{backend}"
        );
        let mut names: Vec<String> = store
            .list_tables(None)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.spec.name)
            .collect();
        names.sort();
        assert_eq!(names, ["customers", "orders"], "{backend}");

        store.create_group("sales").await.unwrap();
        store.grant("sales", "table", "orders").await.unwrap();
        let removal = store.delete_source("shop").await.unwrap();
        let mut removed = removal.tables.clone();
        removed.sort();
        assert_eq!(removed, ["customers", "orders"], "{backend}");
        assert_eq!(
            removal.dangling_grants.len(),
            1,
            "{backend}: the grant is kept and listed"
        );
        assert!(store.get_source("shop").await.unwrap().is_none());
        assert!(
            store.list_tables(None).await.unwrap().is_empty(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn run_history_newest_first_and_abandoned_runs() {
    for (backend, store, _dir) in backends().await {
        store.create_source(&source("shop")).await.unwrap();
        let first = store
            .start_run("shop", "manual", false, "process-a")
            .await
            .unwrap();
        // one run per source at a time, whichever process asks
        let busy = store
            .start_run("shop", "schedule", false, "process-b")
            .await
            .unwrap_err();
        assert!(
            matches!(&busy, ApiError::Conflict(m) if m.contains(&format!("run {first}"))),
            "{backend}: {busy:?}"
        );
        assert!(matches!(
            store
                .start_run("nowhere", "manual", false, "process-a")
                .await,
            Err(ApiError::NotFound(_))
        ));
        store
            .record_outcome(
                first,
                &TableOutcome {
                    table: "orders".into(),
                    status: "ok".into(),
                    rows: Some(10),
                    size_bytes: Some(100),
                    error: None,
                    finished_at: "2026-12-05 00:00:00".into(),
                },
            )
            .await
            .unwrap();
        store.finish_run(first, "success", None).await.unwrap();
        let second = store
            .start_run("shop", "schedule", true, "process-b")
            .await
            .unwrap();
        assert!(second > first, "{backend}: ids grow");
        let runs = store.list_runs(Some("shop"), 10).await.unwrap();
        assert_eq!(
            runs.iter().map(|r| r.id).collect::<Vec<_>>(),
            [second, first]
        );
        assert_eq!(runs[1].tables.len(), 1);
        assert_eq!(runs[1].tables[0].rows, Some(10));
        assert_eq!(runs[0].status, "running");
        // a process that beats keeps its run; one that stopped beating loses it
        store.heartbeat("process-b").await.unwrap();
        let a_minute_ago = (chrono::Utc::now() - chrono::Duration::seconds(60))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        assert_eq!(
            store.abandon_running(Some(&a_minute_ago)).await.unwrap(),
            0,
            "{backend}: alive"
        );
        let in_a_minute = (chrono::Utc::now() + chrono::Duration::seconds(60))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        assert_eq!(
            store.abandon_running(Some(&in_a_minute)).await.unwrap(),
            1,
            "{backend}: stale"
        );
        let run = store.get_run(second).await.unwrap().unwrap();
        assert_eq!(run.status, "failed");
        assert!(run.error.is_some());
        // the source is free again; a restart of the only process abandons everything
        let third = store
            .start_run("shop", "manual", false, "process-a")
            .await
            .unwrap();
        assert_eq!(store.abandon_running(None).await.unwrap(), 1, "{backend}");
        assert_eq!(
            store.get_run(third).await.unwrap().unwrap().status,
            "failed"
        );
        let latest = store.latest_runs().await.unwrap();
        assert_eq!(latest.len(), 1);
        assert_eq!(latest[0].id, third);
    }
}

#[tokio::test]
async fn audit_and_settings() {
    for (backend, store, _dir) in backends().await {
        store
            .audit(Some("admin"), "source.create", Some("shop"), None)
            .await
            .unwrap();
        store
            .audit(
                Some("ana"),
                "data.download",
                Some("orders"),
                Some("bytes 0-9"),
            )
            .await
            .unwrap();
        store
            .audit(None, "sourcery.other", None, None)
            .await
            .unwrap();
        let filter = AuditFilter {
            since: None,
            action: Some("source".into()),
            limit: 10,
        };
        let entries = store.list_audit(&filter).await.unwrap();
        assert_eq!(
            entries.len(),
            1,
            "{backend}: `source` matches source.*, not sourcery"
        );
        assert_eq!(entries[0].resource.as_deref(), Some("shop"));
        let all = store
            .list_audit(&AuditFilter {
                since: None,
                action: None,
                limit: 2,
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 2, "{backend}: the limit");

        assert!(store.get_setting("welcome").await.unwrap().is_none());
        store
            .put_setting("welcome", Some("hi"), "admin")
            .await
            .unwrap();
        let s = store.get_setting("welcome").await.unwrap().unwrap();
        assert_eq!((s.value.as_str(), s.updated_by.as_str()), ("hi", "admin"));
        store.put_setting("welcome", None, "admin").await.unwrap();
        assert!(
            store.get_setting("welcome").await.unwrap().is_none(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn metrics_connectors_and_web_sessions() {
    for (backend, store, _dir) in backends().await {
        // metrics: upsert by id, listed by category then name
        let metric = |id: &str, category: &str, name: &str, sql: &str| {
            serde_json::from_value::<agnes_server::metrics::Metric>(json!({
                "id": id, "name": name, "display_name": name, "category": category, "sql": sql
            }))
            .unwrap()
        };
        store
            .upsert_metric(&metric("sales/b", "sales", "b", "SELECT 1"))
            .await
            .unwrap();
        store
            .upsert_metric(&metric("revenue/a", "revenue", "a", "SELECT 2"))
            .await
            .unwrap();
        store
            .upsert_metric(&metric("sales/b", "sales", "b", "SELECT 3"))
            .await
            .unwrap();
        let ids: Vec<String> = store
            .list_metrics()
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, ["revenue/a", "sales/b"], "{backend}");
        assert_eq!(
            store.get_metric("sales/b").await.unwrap().unwrap().sql,
            "SELECT 3"
        );
        store.delete_metric("sales/b").await.unwrap();
        assert!(
            store.get_metric("sales/b").await.unwrap().is_none(),
            "{backend}"
        );

        // connector uploads: recorded pending, reviewed with who and when
        let info = agnes_server::store::ConnectorInfo {
            name: "csv".into(),
            version: "0.1.0".into(),
            digest: "sha256:00".into(),
            key_id: "k".into(),
            requests: json!({"dirs": ["/data"]}),
            imports: json!([]),
            uploaded_at: "2026-12-05 00:00:00".into(),
            uploaded_by: "admin".into(),
            status: "pending".into(),
            reviewed_at: None,
            reviewed_by: None,
        };
        store.record_connector(&info).await.unwrap();
        store
            .review_connector("csv", "0.1.0", "approved", "reviewer")
            .await
            .unwrap();
        let listed = store.list_connectors().await.unwrap();
        assert_eq!(listed.len(), 1, "{backend}");
        assert_eq!(listed[0].status, "approved");
        assert_eq!(listed[0].reviewed_by.as_deref(), Some("reviewer"));
        assert_eq!(listed[0].requests, json!({"dirs": ["/data"]}));
        assert!(
            store
                .review_connector("csv", "9.9.9", "approved", "reviewer")
                .await
                .is_err(),
            "{backend}: an unknown version"
        );

        // browser sign-in: a password hash and sessions that end when revoked
        store.bootstrap("admin").await.unwrap();
        assert!(store.password_of("admin").await.unwrap().is_none());
        store.set_password("admin", "$argon2id$fake").await.unwrap();
        let (user_id, hash) = store.password_of("admin").await.unwrap().unwrap();
        assert_eq!(hash, "$argon2id$fake", "{backend}");
        store
            .create_session(
                "0123456789abcdef0123456789abcdef",
                &user_id,
                "csrf-1",
                3600,
                "test",
            )
            .await
            .unwrap();
        let (who, csrf) = store
            .session("0123456789abcdef0123456789abcdef")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((who.name.as_str(), csrf.as_str()), ("admin", "csrf-1"));
        let sessions = store.list_sessions().await.unwrap();
        assert_eq!(sessions.len(), 1, "{backend}");
        assert_eq!(store.revoke_session(&sessions[0].id).await.unwrap(), 1);
        assert!(
            store
                .session("0123456789abcdef0123456789abcdef")
                .await
                .unwrap()
                .is_none(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn marketplace_records() {
    use agnes_server::marketplace::{Marketplace, Plugin, PluginReview, ReviewerInfo};
    for (backend, store, _dir) in backends().await {
        let mp = |name: &str| -> Marketplace {
            serde_json::from_value(json!({
                "name": name, "url": format!("https://git.example.com/{name}.git"),
                "created_at": "2026-12-05 00:00:00", "created_by": "admin"
            }))
            .unwrap()
        };
        let plugin = |marketplace: &str, name: &str, status: &str| -> Plugin {
            serde_json::from_value(json!({
                "marketplace": marketplace, "name": name, "path": format!("plugins/{name}"),
                "status": status, "synced_at": "2026-12-05 00:00:00"
            }))
            .unwrap()
        };
        store.put_marketplace(&mp("team")).await.unwrap();
        store.put_marketplace(&mp("other")).await.unwrap();
        // put replaces by name
        let mut synced = mp("team");
        synced.commit = Some("abc".into());
        store.put_marketplace(&synced).await.unwrap();
        let listed = store.list_marketplaces().await.unwrap();
        assert_eq!(listed.len(), 2, "{backend}");
        let team = listed.iter().find(|m| m.spec.name == "team").unwrap();
        assert_eq!(team.commit.as_deref(), Some("abc"), "{backend}");

        store
            .put_plugin(&plugin("team", "sql-helper", "approved"))
            .await
            .unwrap();
        store
            .put_plugin(&plugin("team", "curl-bash", "denied"))
            .await
            .unwrap();
        store
            .put_plugin(&plugin("other", "sql-helper", "pending"))
            .await
            .unwrap();
        store
            .put_plugin(&plugin("team", "curl-bash", "pending"))
            .await
            .unwrap();
        let plugins = store.list_plugins().await.unwrap();
        assert_eq!(
            plugins.len(),
            3,
            "{backend}: one record per (marketplace, plugin)"
        );
        let held = plugins
            .iter()
            .find(|p| p.marketplace == "team" && p.name == "curl-bash")
            .unwrap();
        assert_eq!(held.status, "pending", "{backend}: replaced");
        store.delete_plugin("team", "curl-bash").await.unwrap();
        assert_eq!(store.list_plugins().await.unwrap().len(), 2);

        let review = PluginReview {
            bundle: "sha256:b1".into(),
            reviewer: "plugin-reviewer".into(),
            reviewer_digest: "sha256:r1".into(),
            verdict: "allow".into(),
            findings: Vec::new(),
            failure: None,
            millis: 1,
            reviewed_at: "2026-12-05 00:00:00".into(),
        };
        store.put_review(&review).await.unwrap();
        store
            .put_review(&PluginReview {
                reviewer_digest: "sha256:r2".into(),
                verdict: "flag".into(),
                ..review.clone()
            })
            .await
            .unwrap();
        assert_eq!(
            store.list_reviews().await.unwrap().len(),
            2,
            "{backend}: one per (bundle, reviewer version)"
        );
        store
            .put_reviewer(&ReviewerInfo {
                name: "plugin-reviewer".into(),
                version: "0.1.0".into(),
                digest: "sha256:r1".into(),
                key_id: "k".into(),
                imports: vec!["agnes:hook/bundle@0.1.0".into()],
                uploaded_at: "2026-12-05 00:00:00".into(),
                uploaded_by: "admin".into(),
                enabled: true,
            })
            .await
            .unwrap();
        assert_eq!(store.list_reviewers().await.unwrap().len(), 1);

        // removing a marketplace removes its plugins; reviews stay (keyed by bundle)
        assert_eq!(
            store.delete_marketplace("team").await.unwrap(),
            1,
            "{backend}"
        );
        let left = store.list_plugins().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].marketplace, "other");
        assert_eq!(store.list_marketplaces().await.unwrap().len(), 1);
        assert_eq!(store.list_reviews().await.unwrap().len(), 2, "{backend}");
    }
}

/// Replicas started together on an empty PostgreSQL database: each migrates under the
/// advisory lock, so the ladder runs once and every replica comes up on the newest schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_migrate_once() {
    let pg = PgCluster::start();
    let target = pg.state_target();
    let replicas: Vec<_> = (0..4)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move { agnes_server::db::Db::connect(&target).await })
        })
        .collect();
    let latest = agnes_server::db::migrations::LATEST;
    for r in replicas {
        let db = r.await.unwrap().expect("every replica starts");
        assert_eq!(db.schema_version().await.unwrap(), latest);
    }
    let db = target.url.rsplit('/').next().unwrap();
    let applied = pg.psql(
        db,
        "SELECT count(*), count(DISTINCT version), max(version) FROM schema_version",
    );
    assert_eq!(applied.trim(), format!("{latest}|{latest}|{latest}"));
    assert_eq!(
        pg.psql(db, "SELECT string_agg(name, ',' ORDER BY name) FROM groups")
            .trim(),
        "Admin,Everyone",
        "the built-in groups exist once"
    );
}

/// The queue of the scale-out mode: a queued run claims its source, a worker takes it, a
/// worker silent past its lease loses it to the next (when due), and a run given up fails
/// and frees its source.
#[tokio::test]
async fn queued_runs_are_taken_requeued_and_given_up() {
    let at = |secs: i64| {
        (chrono::Utc::now() + chrono::Duration::seconds(secs))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    for (backend, store, _dir) in backends().await {
        store.create_source(&source("shop")).await.unwrap();
        store.create_source(&source("shop2")).await.unwrap();
        let run = store
            .queue_run("shop", "manual:admin", false)
            .await
            .unwrap();
        assert!(
            matches!(
                store.queue_run("shop", "schedule", false).await,
                Err(ApiError::Conflict(_))
            ),
            "{backend}: one per source"
        );
        assert_eq!(store.active_runs().await.unwrap()[0].status, "queued");
        let taken = store.take_queued("worker-a").await.unwrap().expect("due");
        assert_eq!((taken.run, taken.source.as_str()), (run, "shop"));
        assert!(
            store.take_queued("worker-b").await.unwrap().is_none(),
            "{backend}: taken once"
        );
        assert!(store.owns_run(run, "worker-a").await.unwrap());
        assert!(!store.owns_run(run, "worker-b").await.unwrap());
        // a worker that beats keeps its run; silent past the cutoff, it loses it
        store.heartbeat("worker-a").await.unwrap();
        assert_eq!(
            store.requeue_stale(&at(-60), &at(0), 3).await.unwrap(),
            (0, 0)
        );
        assert_eq!(
            store.requeue_stale(&at(60), &at(3600), 3).await.unwrap(),
            (1, 0)
        );
        assert!(
            !store.owns_run(run, "worker-a").await.unwrap(),
            "{backend}: lost it"
        );
        assert!(
            store.take_queued("worker-b").await.unwrap().is_none(),
            "{backend}: not due for an hour"
        );

        // shop2: due at once each time; the third silence gives up
        let run2 = store
            .queue_run("shop2", "manual:admin", false)
            .await
            .unwrap();
        for (worker, expected) in [
            ("worker-a", (1, 0)),
            ("worker-b", (1, 0)),
            ("worker-c", (0, 1)),
        ] {
            let taken = store.take_queued(worker).await.unwrap().expect("due");
            assert_eq!(taken.run, run2, "{backend}");
            assert_eq!(
                store.requeue_stale(&at(60), &at(-1), 3).await.unwrap(),
                expected,
                "{backend}: {worker}"
            );
        }
        let given_up = store.get_run(run2).await.unwrap().unwrap();
        assert_eq!(given_up.status, "failed", "{backend}");
        assert!(given_up.error.unwrap().contains("3 times"));
        // its source is free again
        store
            .queue_run("shop2", "manual:admin", false)
            .await
            .unwrap();
    }
}
