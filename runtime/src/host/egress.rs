//! Outbound `wasi:http`, limited to the run's grant.
//!
//! Every request the guest sends goes through [`Egress::send`], which, before anything
//! reaches the network:
//!
//! 1. finds a granted [`HttpGrant`] rule for the scheme, host and port (https only unless
//!    the rule says `allow_http`);
//! 2. replaces `{{secret.NAME}}` (or `{{secret.NAME|base64}}`) placeholders in header
//!    values with the secret's value — only for a secret the connector declared and the
//!    operator granted, and only when the request goes to one of the secret's declared
//!    hosts. The guest never holds a value: it only writes the placeholder;
//! 3. resolves the host itself (or takes the operator's pinned addresses) and refuses
//!    loopback, private, link-local and other non-public addresses unless the rule says
//!    `allow_private`; then connects to exactly those checked addresses, so a second DNS
//!    answer cannot swap them (no rebinding).
//!
//! `wasi:http` never follows redirects by itself: a redirect is a new request from the
//! guest and passes the same checks. A refusal returns `HTTP-request-denied` to the guest
//! *and* fails the run with [`Error::EgressDenied`], whatever the guest does next.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use http::uri::Scheme;
use http_body_util::BodyExt;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::Error;
use crate::policy::{Grant, HttpGrant, SecretValue, host_matches};

/// How long connecting (DNS, TCP, TLS, HTTP handshake) may take by default.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Addresses an operator pins for host names (like curl's `--resolve`): used instead of
/// DNS, and checked exactly like DNS answers.
pub type ResolveOverrides = HashMap<String, Vec<IpAddr>>;

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

/// The `wasi:http` hooks of one run.
#[derive(Clone)]
pub(crate) struct Egress {
    inner: Arc<EgressInner>,
}

struct EgressInner {
    rules: Vec<HttpGrant>,
    /// name → (value, host patterns it may be sent to)
    secrets: HashMap<String, (SecretValue, Vec<String>)>,
    overrides: Arc<ResolveOverrides>,
    /// The first refusal; the run fails with it.
    denied: Mutex<Option<Error>>,
    tls: Arc<rustls::ClientConfig>,
    /// Replay or record HTTP exchanges instead of (or besides) the network.
    fixtures: Option<Arc<super::fixtures::HttpFixtures>>,
}

impl Egress {
    /// Reads the granted secrets' values now, so a missing one fails before the guest runs.
    pub(crate) fn new(
        grant: &Grant,
        overrides: Arc<ResolveOverrides>,
        tls: Arc<rustls::ClientConfig>,
        fixtures: Option<Arc<super::fixtures::HttpFixtures>>,
    ) -> Result<Egress, Error> {
        let mut secrets = HashMap::new();
        for (name, s) in &grant.secrets {
            secrets.insert(name.clone(), (s.read(name)?, s.hosts.clone()));
        }
        Ok(Egress {
            inner: Arc::new(EgressInner {
                rules: grant.http.clone(),
                secrets,
                overrides,
                denied: Mutex::new(None),
                tls,
                fixtures,
            }),
        })
    }

    /// The first refused request of the run, if any.
    pub(crate) fn take_denial(&self) -> Option<Error> {
        self.inner.denied.lock().expect("not poisoned").take()
    }

    fn deny(&self, attempt: String, reason: String) -> HttpError {
        tracing::warn!(
            "error.type" = "egress_denied",
            attempt = %attempt,
            reason = %reason,
            "connector request refused"
        );
        let mut slot = self.inner.denied.lock().expect("not poisoned");
        if slot.is_none() {
            *slot = Some(Error::EgressDenied { attempt, reason });
        }
        HttpError::HttpRequestDenied
    }

    async fn send(
        self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<
        (
            http::Response<WasiBody>,
            Box<dyn Future<Output = Result<(), HttpError>> + Send>,
        ),
        HttpError,
    > {
        let uri = request.uri().clone();
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return Err(HttpError::HttpProtocolError),
        };
        let Some(host) = uri
            .host()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
        else {
            return Err(HttpError::HttpRequestUriInvalid);
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let attempt = format!(
            "{} {}://{host}:{port}{}",
            request.method(),
            if https { "https" } else { "http" },
            uri.path()
        );
        let Some(rule) = self
            .inner
            .rules
            .iter()
            .find(|r| r.allows(https, &host, port))
            .cloned()
        else {
            let why = if !https && self.inner.rules.iter().any(|r| r.allows(true, &host, 443)) {
                "plain http is not granted for this host (allow_http)".to_string()
            } else {
                format!("no [[grant.http]] rule allows {host}:{port}")
            };
            return Err(self.deny(attempt, why));
        };

        // Secrets: substitute placeholders, refusing any the grant does not allow here.
        for value in request.headers_mut().values_mut() {
            let Ok(text) = value.to_str() else { continue };
            if !text.contains("{{secret.") {
                continue;
            }
            let replaced = match self.substitute(text, &host) {
                Ok(v) => v,
                Err(reason) => return Err(self.deny(attempt, reason)),
            };
            let mut v = http::HeaderValue::from_str(&replaced).map_err(|_| {
                self.deny(
                    attempt.clone(),
                    "a secret is not a valid header value".into(),
                )
            })?;
            v.set_sensitive(true);
            *value = v;
        }

        let method = request.method().to_string();
        let url = uri.to_string();
        if let Some(f) = &self.inner.fixtures
            && f.mode == super::fixtures::Mode::Replay
        {
            return match f.answer(&method, &url) {
                Some(response) => Ok((response, Box::new(async { Ok(()) }))),
                None => Err(self.deny(
                    attempt,
                    format!("unexpected request {method} {url}: no recorded fixture answers it"),
                )),
            };
        }

        let connect_timeout = options
            .and_then(|o| o.connect_timeout)
            .unwrap_or(CONNECT_TIMEOUT);
        let addrs = self.resolve(&host, port, connect_timeout).await?;
        if !rule.allow_private
            && let Some(ip) = addrs.iter().map(SocketAddr::ip).find(|ip| !is_public(*ip))
        {
            return Err(self.deny(
                attempt,
                format!(
                    "{host} resolves to {ip}, a loopback, private or link-local address; \
                     grant allow_private = true for this host to reach it"
                ),
            ));
        }

        let stream =
            tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(&addrs[..]))
                .await
                .map_err(|_| HttpError::ConnectionTimeout)?
                .map_err(HttpError::Connect)?;
        let first_byte = options
            .and_then(|o| o.first_byte_timeout)
            .unwrap_or(Duration::from_secs(600));
        // origin-form on the wire
        *request.uri_mut() = http::Uri::builder()
            .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
            .build()
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        let response = if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| HttpError::TlsProtocolError)?;
            let tls =
                tokio_rustls::TlsConnector::from(self.inner.tls.clone()).connect(name, stream);
            let tls = tokio::time::timeout(connect_timeout, tls)
                .await
                .map_err(|_| HttpError::ConnectionTimeout)?
                .map_err(HttpError::Tls)?;
            exchange(tls, request, connect_timeout, first_byte).await?
        } else {
            exchange(stream, request, connect_timeout, first_byte).await?
        };
        let response = match &self.inner.fixtures {
            Some(f) => f.keep(&method, &url, response).await?,
            None => response,
        };
        Ok((response, Box::new(async { Ok(()) })))
    }

    /// Replaces every `{{secret.NAME}}` / `{{secret.NAME|base64}}` in `text`.
    fn substitute(&self, text: &str, host: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("{{secret.") {
            out.push_str(&rest[..start]);
            let after = &rest[start + "{{secret.".len()..];
            let end = after
                .find("}}")
                .ok_or_else(|| "an unterminated {{secret.…}} placeholder".to_string())?;
            let (name, base64) = match after[..end].split_once('|') {
                None => (&after[..end], false),
                Some((n, "base64")) => (n, true),
                Some((_, f)) => return Err(format!("unknown secret encoding `{f}` (use base64)")),
            };
            let Some((value, hosts)) = self.inner.secrets.get(name) else {
                return Err(format!(
                    "secret `{name}` is not declared in connector.toml and granted to this run"
                ));
            };
            if !hosts.iter().any(|p| host_matches(p, host)) {
                return Err(format!(
                    "secret `{name}` may only be sent to {}, not {host}",
                    hosts.join(", ")
                ));
            }
            if base64 {
                out.push_str(&base64::engine::general_purpose::STANDARD.encode(&value.0));
            } else {
                out.push_str(&value.0);
            }
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    async fn resolve(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Vec<SocketAddr>, HttpError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        if let Some(ips) = self.inner.overrides.get(host) {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        }
        let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| HttpError::DnsTimeout)?
            .map_err(|_| HttpError::DestinationNotFound)?;
        let addrs: Vec<SocketAddr> = found.collect();
        if addrs.is_empty() {
            return Err(HttpError::DestinationNotFound);
        }
        Ok(addrs)
    }
}

/// One HTTP/1.1 exchange on an established connection.
async fn exchange<S>(
    stream: S,
    request: http::Request<WasiBody>,
    connect_timeout: Duration,
    first_byte: Duration,
) -> Result<http::Response<WasiBody>, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    // Drives the connection until the response body is read or dropped; dropping the
    // store drops the body, which closes the connection.
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connector http connection ended");
        }
    });
    let response = tokio::time::timeout(first_byte, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    Ok(response.map(|body| body.map_err(HttpError::from).boxed_unsync()))
}

impl WasiHttpHooks for Egress {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        Box::new(self.clone().send(request, options))
    }
}

/// The TLS client configuration: Mozilla's roots (webpki-roots), nothing from the host's
/// environment.
pub(crate) fn tls_config() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Whether `ip` is a public unicast address: not loopback, private (RFC 1918, ULA),
/// link-local (incl. cloud metadata 169.254.169.254), CGNAT, unspecified, broadcast,
/// multicast, documentation or otherwise reserved. IPv4-mapped/compatible IPv6 addresses are
/// judged as the IPv4 address they carry.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            if seg[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
                // deprecated IPv4-compatible ::a.b.c.d
                let [_, _, _, _, _, _, hi, lo] = seg;
                let v4 = std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
                return is_public(IpAddr::V4(v4));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || seg[0] == 0x2001 && seg[1] == 0x0db8 // documentation
                || seg[0] == 0x0064 && seg[1] == 0xff9b) // NAT64: may reach internal v4
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::SecretGrant;

    #[test]
    fn non_public_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(
                !is_public(ip.parse().unwrap()),
                "{ip} must not count as public"
            );
        }
        for ip in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    fn egress(secret_file: &std::path::Path) -> Egress {
        std::fs::write(secret_file, "s3cr3t\n").unwrap();
        let mut grant = Grant::default();
        grant.secrets.insert(
            "token".into(),
            SecretGrant {
                file: Some(secret_file.to_path_buf()),
                hosts: vec!["*.example.com".into()],
                ..SecretGrant::default()
            },
        );
        Egress::new(&grant, Arc::default(), tls_config(), None).unwrap()
    }

    #[test]
    fn placeholders_are_replaced_only_for_declared_hosts() {
        let tmp = tempfile::tempdir().unwrap();
        let e = egress(&tmp.path().join("token"));
        assert_eq!(
            e.substitute("Bearer {{secret.token}}", "api.example.com")
                .unwrap(),
            "Bearer s3cr3t"
        );
        assert_eq!(
            e.substitute("Basic {{secret.token|base64}}", "api.example.com")
                .unwrap(),
            "Basic czNjcjN0"
        );
        for (text, host, why) in [
            (
                "{{secret.token}}",
                "evil.test",
                "may only be sent to *.example.com",
            ),
            ("{{secret.token}}", "example.com", "may only be sent to"),
            (
                "{{secret.other}}",
                "api.example.com",
                "`other` is not declared",
            ),
            (
                "{{secret.token|hex}}",
                "api.example.com",
                "unknown secret encoding",
            ),
            ("{{secret.token", "api.example.com", "unterminated"),
        ] {
            let err = e.substitute(text, host).unwrap_err();
            assert!(err.contains(why), "{text} → {host}: {err}");
            assert!(
                !err.contains("s3cr3t"),
                "the value never appears in an error"
            );
        }
    }

    #[test]
    fn a_missing_secret_fails_before_the_run() {
        let mut grant = Grant::default();
        grant.secrets.insert(
            "token".into(),
            SecretGrant {
                env: Some("AGNES_TEST_SURELY_UNSET_VAR".into()),
                ..SecretGrant::default()
            },
        );
        let err = Egress::new(&grant, Arc::default(), tls_config(), None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("AGNES_TEST_SURELY_UNSET_VAR is not set"),
            "{err}"
        );
    }
}
