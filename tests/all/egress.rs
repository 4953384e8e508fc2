//! Outbound HTTP: only to granted hosts and public addresses (unless granted), secrets
//! injected by the host for their declared hosts only; every refusal fails the run and
//! leaves the previous extract as it was.

use std::collections::HashMap;
use std::path::Path;

use agnes_runtime::manifest::ConnectorManifest;
use agnes_runtime::{Error, Grant, HttpGrant, Limits, RunRequest};
use agnes_tests::{Loopback, grant_with_secret, hostile, open_extract, request, runtime, snapshot};
use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

const SECRET: &str = "s3cr3t-value-7f1c";

/// A manifest like an http connector's: any granted host, one secret for loopback.
fn manifest() -> ConnectorManifest {
    ConnectorManifest::parse(
        r#"
        name = "hostile"
        version = "0"
        [[requests.http]]
        host = "*"
        [[requests.secrets]]
        name = "token"
        hosts = ["127.0.0.1"]
        "#,
    )
    .unwrap()
}

/// The effective grant (request ∩ operator grant) for `rules`, with secret `token` read
/// from a file under `dir`.
fn grant(dir: &Path, rules: Vec<HttpGrant>) -> Grant {
    let operator = grant_with_secret(dir, rules, "token", &format!("{SECRET}\n"));
    manifest()
        .effective(&operator, &Limits::default())
        .unwrap()
        .0
}

fn http_request(extracts: &Path, url: &str, headers: &[(&str, &str)], grant: Grant) -> RunRequest {
    let mut req = request(
        extracts,
        "api",
        json!({"mode": "http", "url": url, "headers": headers}),
        &[],
    );
    req.grant = grant;
    req
}

fn api() -> Loopback {
    Loopback::start(Router::new().route("/ok", get(|| async { "ok" })).route(
        "/to-metadata",
        get(|| async {
            (
                axum::http::StatusCode::FOUND,
                [("location", "http://169.254.169.254/latest/meta-data/")],
            )
        }),
    ))
}

/// Publishes a first, good extract of source `api`, so a refused run can be shown to leave
/// it intact.
async fn publish_good(extracts: &Path, server: &Loopback, tmp: &Path) {
    let req = http_request(
        extracts,
        &server.url("/ok"),
        &[],
        grant(tmp, vec![server.grant()]),
    );
    runtime().run(hostile(), req, None).await.unwrap();
}

/// Asserts the run was refused with `needle` in the reason, the server saw `seen`
/// requests in total, and the extract directory is byte-identical to `before`.
fn assert_refused(
    result: Result<agnes_runtime::RunReport, Error>,
    needle: &str,
    extracts: &Path,
    before: &std::collections::BTreeMap<std::path::PathBuf, String>,
) {
    let err = result.unwrap_err();
    assert!(matches!(err, Error::EgressDenied { .. }), "{err}");
    assert!(err.to_string().contains(needle), "{err}");
    assert!(
        !err.to_string().contains(SECRET),
        "no secret in errors: {err}"
    );
    let after: std::collections::BTreeMap<_, _> = snapshot(extracts)
        .into_iter()
        .filter(|(p, _)| !p.to_string_lossy().ends_with(".lock"))
        .collect();
    let before: std::collections::BTreeMap<_, _> = before
        .iter()
        .filter(|(p, _)| !p.to_string_lossy().ends_with(".lock"))
        .map(|(p, m)| (p.clone(), m.clone()))
        .collect();
    assert_eq!(before, after, "the previous extract is untouched");
}

fn all_bytes_under(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for p in snapshot(dir).keys() {
        if p.is_file() {
            out.extend(std::fs::read(p).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn a_granted_host_gets_the_secret_and_the_guest_never_sees_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server = api();
    let extracts = tmp.path().join("extracts");
    let req = http_request(
        &extracts,
        &server.url("/ok"),
        &[("authorization", "Bearer {{secret.token}}")],
        grant(tmp.path(), vec![server.grant()]),
    );
    runtime().run(hostile(), req, None).await.unwrap();

    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].uri, "/ok");
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    let conn = open_extract(&extracts.join("api"));
    let (status, body): (i64, String) = conn
        .query_row("SELECT status, body FROM http", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok"));
    let bytes = all_bytes_under(&extracts);
    assert!(
        !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "the secret appears nowhere in the extract"
    );
}

#[tokio::test]
async fn an_ungranted_host_is_refused_before_any_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let server = api();
    let extracts = tmp.path().join("extracts");
    publish_good(&extracts, &server, tmp.path()).await;
    let before = snapshot(&extracts);
    // same server, another loopback address: not in the grant
    let url = format!("http://127.0.0.2:{}/ok", server.port);
    let req = http_request(
        &extracts,
        &url,
        &[],
        grant(tmp.path(), vec![server.grant()]),
    );
    let result = runtime().run(hostile(), req, None).await;
    assert_refused(
        result,
        "no [[grant.http]] rule allows 127.0.0.2",
        &extracts,
        &before,
    );
    // and a plain-http request to a host granted for https only
    let https_only = HttpGrant {
        allow_http: false,
        ..server.grant()
    };
    let req = http_request(
        &extracts,
        &server.url("/ok"),
        &[],
        grant(tmp.path(), vec![https_only]),
    );
    let result = runtime().run(hostile(), req, None).await;
    assert_refused(
        result,
        "no [[grant.http]] rule allows 127.0.0.1",
        &extracts,
        &before,
    );
    assert_eq!(
        server.received().len(),
        1,
        "only the first, good run reached the server"
    );
}

#[tokio::test]
async fn a_granted_name_that_resolves_to_loopback_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let server = api();
    let extracts = tmp.path().join("extracts");
    publish_good(&extracts, &server, tmp.path()).await;
    let before = snapshot(&extracts);
    // `localhost` is granted by name, but not allow_private: real DNS (/etc/hosts) says 127.0.0.1
    let rule = HttpGrant {
        host: "localhost".into(),
        ports: vec![server.port],
        allow_http: true,
        allow_private: false,
    };
    let url = format!("http://localhost:{}/ok", server.port);
    let req = http_request(&extracts, &url, &[], grant(tmp.path(), vec![rule]));
    let result = runtime().run(hostile(), req, None).await;
    assert_refused(result, "localhost resolves to", &extracts, &before);
    assert_eq!(
        server.received().len(),
        1,
        "the refused request never arrived"
    );
}

#[tokio::test]
async fn a_granted_name_pinned_to_the_metadata_address_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let extracts = tmp.path().join("extracts");
    // an operator-pinned answer is checked like a DNS answer
    let pinned = runtime().clone().with_resolve(HashMap::from([(
        "metadata.example.com".to_string(),
        vec!["169.254.169.254".parse().unwrap()],
    )]));
    let rule = HttpGrant {
        host: "metadata.example.com".into(),
        ports: vec![],
        allow_http: true,
        allow_private: false,
    };
    let req = http_request(
        &extracts,
        "http://metadata.example.com/latest/meta-data/",
        &[],
        grant(tmp.path(), vec![rule]),
    );
    let result = pinned.run(hostile(), req, None).await;
    assert_refused(
        result,
        "metadata.example.com resolves to 169.254.169.254",
        &extracts,
        &Default::default(),
    );
}

#[tokio::test]
async fn a_redirect_to_the_metadata_address_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let server = api();
    let extracts = tmp.path().join("extracts");
    publish_good(&extracts, &server, tmp.path()).await;
    let before = snapshot(&extracts);
    let req = http_request(
        &extracts,
        &server.url("/to-metadata"),
        &[],
        grant(tmp.path(), vec![server.grant()]),
    );
    let result = runtime().run(hostile(), req, None).await;
    assert_refused(result, "169.254.169.254:80", &extracts, &before);
    let uris: Vec<String> = server.received().into_iter().map(|r| r.uri).collect();
    assert_eq!(
        uris,
        ["/ok", "/to-metadata"],
        "the redirect itself was served, its target never reached"
    );
}

#[tokio::test]
async fn an_undeclared_secret_is_refused_and_nothing_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let server = api();
    let extracts = tmp.path().join("extracts");
    publish_good(&extracts, &server, tmp.path()).await;
    let before = snapshot(&extracts);
    let req = http_request(
        &extracts,
        &server.url("/ok"),
        &[("x-api-key", "{{secret.aws_root_key}}")],
        grant(tmp.path(), vec![server.grant()]),
    );
    let result = runtime().run(hostile(), req, None).await;
    assert_refused(
        result,
        "secret `aws_root_key` is not declared",
        &extracts,
        &before,
    );
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn a_secret_sent_to_another_granted_host_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let server = api();
    let extracts = tmp.path().join("extracts");
    // `localhost` is granted (with private addresses), but the secret is for 127.0.0.1 only
    let rule = HttpGrant {
        host: "localhost".into(),
        ..server.grant()
    };
    let url = format!("http://localhost:{}/ok", server.port);
    let req = http_request(
        &extracts,
        &url,
        &[("authorization", "Bearer {{secret.token}}")],
        grant(tmp.path(), vec![server.grant(), rule]),
    );
    let result = runtime().run(hostile(), req, None).await;
    assert_refused(
        result,
        "may only be sent to 127.0.0.1, not localhost",
        &extracts,
        &Default::default(),
    );
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_guest_that_swallows_the_refusal_still_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let extracts = tmp.path().join("extracts");
    let mut req = http_request(&extracts, "https://example.com/", &[], Grant::default());
    let mut config: Value = serde_json::from_str(&req.config).unwrap();
    config["swallow"] = json!(true);
    req.config = config.to_string();
    let result = runtime().run(hostile(), req, None).await;
    assert_refused(
        result,
        "GET https://example.com:443/",
        &extracts,
        &Default::default(),
    );
}
