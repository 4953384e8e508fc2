//! `agnes:connector/database` (world 0.2.0): database connections the host opens and
//! authenticates for the guest.
//!
//! [`Databases::connect`] takes a name the connector requested and the operator granted
//! ([`DatabaseGrant`]) and, before the guest sees a byte:
//!
//! 1. resolves the host (or takes the operator's pinned addresses) and refuses loopback,
//!    private, link-local and other non-public addresses unless the grant says
//!    `allow_private`, then connects to exactly the checked addresses (as HTTP egress);
//! 2. negotiates TLS when granted (`require`: encrypted; `verify-full`: certificate and
//!    host name checked against Mozilla's roots or the grant's `ca_file`);
//! 3. sends the startup message with the session made read-only
//!    (`default_transaction_read_only = on`), `statement_timeout` from the run's time
//!    limit, UTC, ISO dates, UTF-8 and standard-conforming strings, and logs in itself
//!    (SCRAM-SHA-256, md5, cleartext or trust) with the password it read from the grant;
//! 4. reads up to the first ReadyForQuery and hands the guest the stream.
//!
//! The password is read by the host, used by the host and never written to guest memory,
//! logs or errors. What the guest then writes is checked message by message
//! ([`Framer`]): COPY FROM STDIN data, function calls and password messages are refused
//! and fail the run. Connections count against `max_db_connections`, bytes read against
//! `max_db_read_mb`; all are closed when the run's store is dropped (its end, its timeout
//! or its cancellation), which also stops a guest blocked reading.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::{backend, frontend};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::policy::{DatabaseGrant, SecretValue, TlsMode};
use crate::{Error, Grant, Limits};

/// How long connecting and logging in may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest protocol message the guest may send (a statement with its parameters).
const MAX_FRONTEND_MESSAGE: u32 = 64 << 20;
/// The most one `read` returns.
const MAX_READ: usize = 1 << 20;

/// A bidirectional byte stream: TCP or TLS over TCP.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Stream for T {}

/// One open connection: the resource the guest holds.
pub struct Connection {
    pub(crate) name: String,
    stream: Pin<Box<dyn Stream>>,
    framer: Framer,
}

impl Connection {
    /// Reads at most `max` bytes (at least one unless the server closed), straight into
    /// the list handed to the guest (no zeroing, no second copy).
    pub(crate) async fn read(&mut self, max: usize) -> std::io::Result<Vec<u8>> {
        let max = max.clamp(1, MAX_READ);
        let mut buf = Vec::with_capacity(max);
        self.stream.read_buf(&mut buf).await?;
        Ok(buf)
    }

    /// Checks the framing of `bytes` and sends them.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.framer.check(bytes).map_err(WriteError::Denied)?;
        self.stream.write_all(bytes).await.map_err(WriteError::Io)?;
        self.stream.flush().await.map_err(WriteError::Io)
    }
}

pub(crate) enum WriteError {
    Denied(String),
    Io(std::io::Error),
}

/// The granted databases of one run and what it has opened.
pub(crate) struct Databases {
    grants: BTreeMap<String, (DatabaseGrant, Option<SecretValue>)>,
    overrides: Arc<super::egress::ResolveOverrides>,
    tls: Arc<rustls::ClientConfig>,
    pub opened: u32,
    pub bytes_read: u64,
}

impl Databases {
    /// Reads the granted passwords now, so a missing one fails before the guest runs.
    pub(crate) fn new(
        grant: &Grant,
        overrides: Arc<super::egress::ResolveOverrides>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Databases, Error> {
        let mut grants = BTreeMap::new();
        for (name, g) in &grant.databases {
            let password = match &g.password {
                Some(p) => Some(p.read(&format!("databases.{name}.password"))?),
                None => None,
            };
            grants.insert(name.clone(), (g.clone(), password));
        }
        Ok(Databases {
            grants,
            overrides,
            tls,
            opened: 0,
            bytes_read: 0,
        })
    }

    /// Whether `name` is granted to this run.
    pub(crate) fn granted(&self, name: &str) -> Option<&DatabaseGrant> {
        self.grants.get(name).map(|(g, _)| g)
    }

    /// Opens, secures and logs in to the granted database `name`.
    pub(crate) async fn connect(&self, name: &str, limits: &Limits) -> Result<Connection, Error> {
        let (grant, password) = self.grants.get(name).expect("checked by the caller");
        let fail = |reason: String| Error::Database {
            name: name.to_string(),
            target: grant.target(),
            reason,
        };
        let work = async {
            let addrs = self.resolve(grant).await.map_err(&fail)?;
            let tcp = connect_any(&addrs).await.map_err(&fail)?;
            let _ = tcp.set_nodelay(true);
            let mut stream: Pin<Box<dyn Stream>> = match grant.tls {
                TlsMode::Disable => Box::pin(tcp),
                mode => Box::pin(self.tls(tcp, grant, mode).await.map_err(&fail)?),
            };
            startup(&mut stream, grant, password.as_ref(), limits)
                .await
                .map_err(&fail)?;
            Ok(stream)
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, work)
            .await
            .map_err(|_| fail(format!("no login within {CONNECT_TIMEOUT:?}")))??;
        tracing::info!(database = %name, target = %grant.target(), "database connection opened for the connector");
        Ok(Connection {
            name: name.to_string(),
            stream,
            framer: Framer::default(),
        })
    }

    async fn resolve(&self, grant: &DatabaseGrant) -> Result<Vec<SocketAddr>, String> {
        let host = grant.host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            vec![SocketAddr::new(ip, grant.port)]
        } else if let Some(ips) = self.overrides.get(host) {
            ips.iter()
                .map(|ip| SocketAddr::new(*ip, grant.port))
                .collect()
        } else {
            tokio::net::lookup_host((host, grant.port))
                .await
                .map_err(|e| format!("resolving {host}: {e}"))?
                .collect()
        };
        if addrs.is_empty() {
            return Err(format!("{host} has no address"));
        }
        if !grant.allow_private
            && let Some(a) = addrs.iter().find(|a| !super::egress::is_public(a.ip()))
        {
            return Err(format!(
                "{host} resolves to {}, a loopback, private or otherwise non-public address; \
                 set allow_private = true in the grant if this database is meant to be internal",
                a.ip()
            ));
        }
        Ok(addrs)
    }

    async fn tls(
        &self,
        mut tcp: tokio::net::TcpStream,
        grant: &DatabaseGrant,
        mode: TlsMode,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
        let mut buf = BytesMut::new();
        frontend::ssl_request(&mut buf);
        tcp.write_all(&buf)
            .await
            .map_err(|e| format!("sending the TLS request: {e}"))?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer)
            .await
            .map_err(|e| format!("reading the TLS answer: {e}"))?;
        if answer[0] != b'S' {
            return Err("the server does not accept TLS, and the grant requires it".into());
        }
        let config = match mode {
            TlsMode::Require => Arc::new(no_verification(&self.tls)),
            _ => match &grant.ca_file {
                Some(path) => Arc::new(with_ca_file(path)?),
                None => self.tls.clone(),
            },
        };
        let host = grant.host.trim_start_matches('[').trim_end_matches(']');
        let server_name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("`{host}` is not a TLS server name: {e}"))?;
        tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))
    }
}

async fn connect_any(addrs: &[SocketAddr]) -> Result<tokio::net::TcpStream, String> {
    let mut last = String::new();
    for a in addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("connecting to {a}: {e}"),
        }
    }
    Err(last)
}

/// The startup exchange: parameters, authentication, up to the first ReadyForQuery.
async fn startup(
    stream: &mut Pin<Box<dyn Stream>>,
    grant: &DatabaseGrant,
    password: Option<&SecretValue>,
    limits: &Limits,
) -> Result<(), String> {
    let timeout_ms = limits
        .timeout_secs
        .saturating_mul(1000)
        .clamp(1, i32::MAX as u64)
        .to_string();
    let params = [
        ("user", grant.user.as_str()),
        ("database", grant.database.as_str()),
        ("application_name", "agnes-connector"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("TimeZone", "UTC"),
        ("standard_conforming_strings", "on"),
        ("default_transaction_read_only", "on"),
        ("statement_timeout", timeout_ms.as_str()),
    ];
    let mut out = BytesMut::new();
    frontend::startup_message(params.iter().copied(), &mut out)
        .map_err(|e| format!("building the startup message: {e}"))?;
    send(stream, &mut out).await?;
    let need_password = || {
        password.map(|p| p.0.as_str()).ok_or_else(|| {
            "the server asks for a password and the grant has none; add password = { env = ... } or { file = ... }".to_string()
        })
    };
    let mut scram: Option<ScramSha256> = None;
    let mut inbuf = BytesMut::new();
    loop {
        let message = next_message(stream, &mut inbuf).await?;
        match message {
            backend::Message::AuthenticationOk => {}
            backend::Message::AuthenticationCleartextPassword => {
                frontend::password_message(need_password()?.as_bytes(), &mut out)
                    .map_err(|e| e.to_string())?;
                send(stream, &mut out).await?;
            }
            backend::Message::AuthenticationMd5Password(body) => {
                let hash = postgres_protocol::authentication::md5_hash(
                    grant.user.as_bytes(),
                    need_password()?.as_bytes(),
                    body.salt(),
                );
                frontend::password_message(hash.as_bytes(), &mut out)
                    .map_err(|e| e.to_string())?;
                send(stream, &mut out).await?;
            }
            backend::Message::AuthenticationSasl(body) => {
                use fallible_iterator::FallibleIterator;
                let mut mechanisms = body.mechanisms();
                let mut found = false;
                while let Some(m) = mechanisms.next().map_err(|e| e.to_string())? {
                    found |= m == SCRAM_SHA_256;
                }
                if !found {
                    return Err("the server offers no SASL mechanism the host speaks (SCRAM-SHA-256)".into());
                }
                let s = ScramSha256::new(need_password()?.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)
                    .map_err(|e| e.to_string())?;
                send(stream, &mut out).await?;
                scram = Some(s);
            }
            backend::Message::AuthenticationSaslContinue(body) => {
                let s = scram.as_mut().ok_or("unexpected SASL continue")?;
                s.update(body.data()).map_err(|e| format!("SCRAM: {e}"))?;
                frontend::sasl_response(s.message(), &mut out).map_err(|e| e.to_string())?;
                send(stream, &mut out).await?;
            }
            backend::Message::AuthenticationSaslFinal(body) => {
                let mut s = scram.take().ok_or("unexpected SASL final")?;
                s.finish(body.data())
                    .map_err(|e| format!("SCRAM: the server's proof is wrong: {e}"))?;
            }
            backend::Message::ErrorResponse(body) => {
                return Err(format!("the server refused the login: {}", error_text(&body)));
            }
            backend::Message::ParameterStatus(_)
            | backend::Message::BackendKeyData(_)
            | backend::Message::NoticeResponse(_) => {}
            backend::Message::ReadyForQuery(_) => {
                if !inbuf.is_empty() {
                    return Err("the server sent data after ReadyForQuery".into());
                }
                return Ok(());
            }
            _ => return Err("unexpected message during login (authentication method not supported: GSS, SSPI or Kerberos)".into()),
        }
    }
}

async fn send(stream: &mut Pin<Box<dyn Stream>>, out: &mut BytesMut) -> Result<(), String> {
    stream
        .write_all(out)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    stream.flush().await.map_err(|e| format!("sending: {e}"))?;
    out.clear();
    Ok(())
}

async fn next_message(
    stream: &mut Pin<Box<dyn Stream>>,
    inbuf: &mut BytesMut,
) -> Result<backend::Message, String> {
    loop {
        if let Some(m) =
            backend::Message::parse(inbuf).map_err(|e| format!("reading the server: {e}"))?
        {
            return Ok(m);
        }
        if inbuf.len() > 1 << 20 {
            return Err("the server sent an oversized message during login".into());
        }
        let n = stream
            .read_buf(inbuf)
            .await
            .map_err(|e| format!("reading the server: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection during login".into());
        }
    }
}

/// `message (SQLSTATE)` of an ErrorResponse.
fn error_text(body: &backend::ErrorResponseBody) -> String {
    use fallible_iterator::FallibleIterator;
    let (mut message, mut code) = (String::new(), String::new());
    let mut fields = body.fields();
    while let Ok(Some(f)) = fields.next() {
        match f.type_() {
            b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'C' => code = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            _ => {}
        }
    }
    crate::names::sanitized(&format!("{message} ({code})"), 1024)
}

fn with_ca_file(path: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("reading ca_file {}: {e}", path.display()))?
    {
        let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `tls = "require"`: encrypt without checking who is at the other end (libpq's
/// `sslmode=require`).
fn no_verification(base: &rustls::ClientConfig) -> rustls::ClientConfig {
    let mut config = base.clone();
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(AcceptAnyCertificate(
            rustls::crypto::ring::default_provider(),
        )));
    config
}

#[derive(Debug)]
struct AcceptAnyCertificate(rustls::crypto::CryptoProvider);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Follows the frontend messages the guest writes, across `write` calls, and refuses the
/// ones a read-only client never sends.
#[derive(Debug, Default)]
pub(crate) struct Framer {
    /// Bytes of the current message's 5-byte header seen so far.
    header: Vec<u8>,
    /// Body bytes of the current message still to come.
    remaining: u32,
}

impl Framer {
    pub(crate) fn check(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining as usize).min(bytes.len());
                self.remaining -= n as u32;
                bytes = &bytes[n..];
                continue;
            }
            let need = 5 - self.header.len();
            let n = need.min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() < 5 {
                break;
            }
            let kind = self.header[0];
            let len = u32::from_be_bytes([
                self.header[1],
                self.header[2],
                self.header[3],
                self.header[4],
            ]);
            self.header.clear();
            let what = match kind {
                // simple query, parse, bind, describe, execute, sync, flush, close, terminate
                b'Q' | b'P' | b'B' | b'D' | b'E' | b'S' | b'H' | b'C' | b'X' => None,
                b'd' | b'c' | b'f' => {
                    Some("COPY FROM STDIN data (a read-only connector never writes)")
                }
                b'F' => Some("a function call message"),
                b'p' => Some("a password message (the host logs in)"),
                _ => Some("an unknown protocol message"),
            };
            if let Some(what) = what {
                return Err(format!("{what} (type {:?})", kind as char));
            }
            if !(4..=MAX_FRONTEND_MESSAGE).contains(&len) {
                return Err(format!(
                    "a message of {len} bytes (the limit is {MAX_FRONTEND_MESSAGE})"
                ));
            }
            self.remaining = len - 4;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn framer_follows_messages_across_writes_and_refuses_writes() {
        let mut f = Framer::default();
        let mut stream = msg(b'Q', b"SELECT 1\0");
        stream.extend(msg(b'S', b""));
        // split at every position: still accepted
        for cut in 0..stream.len() {
            let mut f = Framer::default();
            f.check(&stream[..cut]).unwrap();
            f.check(&stream[cut..]).unwrap();
        }
        f.check(&stream).unwrap();
        let err = f.check(&msg(b'd', b"1\t2\n")).unwrap_err();
        assert!(err.contains("COPY FROM STDIN"), "{err}");
        let mut f = Framer::default();
        assert!(
            f.check(&msg(b'p', b"pw\0"))
                .unwrap_err()
                .contains("password")
        );
        let mut f = Framer::default();
        let mut huge = vec![b'Q'];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(f.check(&huge).unwrap_err().contains("limit"));
        let mut f = Framer::default();
        let mut short = vec![b'Q'];
        short.extend_from_slice(&3u32.to_be_bytes());
        assert!(f.check(&short).is_err());
    }
}
