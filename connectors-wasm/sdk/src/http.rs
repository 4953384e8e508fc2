//! Outbound HTTP through `wasi:http`, blocking, for connectors.
//!
//! The host sends a request only to hosts the run is granted; anything else comes back as
//! [`HttpError::Denied`] and fails the run. Secrets are never in the guest: put
//! [`secret`]`("name")` (or [`secret_base64`]) into a header value and the host replaces
//! it with the value when, and only when, the request goes to a host the secret is
//! declared for in `connector.toml`.
//!
//! Redirects are followed ([`Request::max_redirects`], 10 by default); headers carrying a
//! secret placeholder are dropped when a redirect leaves the origin. Every hop is a new
//! request the host checks again.
//!
//! ```ignore
//! use agnes_connector_sdk::http::{Request, secret};
//! let resp = Request::get("https://api.example.com/v1/items?page=1")
//!     .header("Authorization", format!("Bearer {}", secret("api_token")))
//!     .send()?;
//! let items: serde_json::Value = resp.json()?;
//! ```

use std::time::Duration;

use crate::Error;

/// The placeholder the host replaces with secret `name`'s value.
pub fn secret(name: &str) -> String {
    format!("{{{{secret.{name}}}}}")
}

/// The placeholder the host replaces with secret `name`'s value, base64-encoded (for
/// `Authorization: Basic`).
pub fn secret_base64(name: &str) -> String {
    format!("{{{{secret.{name}|base64}}}}")
}

/// Percent-encodes a URL query component (RFC 3986 unreserved characters stay).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host refused the request: the run is not granted this host, address or secret.
    Denied(String),
    /// The URL cannot be used.
    InvalidUrl(String),
    /// Connecting, TLS or the exchange failed (worth a retry).
    Transport(String),
    /// More redirects than allowed.
    TooManyRedirects(String),
    /// Not built for wasm32: there is no `wasi:http` to call.
    Unsupported,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Denied(m) => write!(f, "request denied by the host: {m}"),
            HttpError::InvalidUrl(m) => write!(f, "invalid url: {m}"),
            HttpError::Transport(m) => write!(f, "http transport error: {m}"),
            HttpError::TooManyRedirects(m) => write!(f, "too many redirects: {m}"),
            HttpError::Unsupported => f.write_str("http is only available inside the wasm host"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for Error {
    fn from(e: HttpError) -> Error {
        match e {
            HttpError::Denied(_) => Error::AccessDenied(e.to_string()),
            HttpError::InvalidUrl(_) => Error::Config(e.to_string()),
            _ => Error::Io(e.to_string()),
        }
    }
}

/// A parsed absolute `http(s)` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// `host[:port]` as written.
    pub authority: String,
    /// `/path?query` (at least `/`).
    pub path_and_query: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, HttpError> {
        let bad = |why: &str| HttpError::InvalidUrl(format!("`{url}`: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(bad("only http and https")),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.is_empty()
            || authority.contains('@')
            || authority.contains(char::is_whitespace)
        {
            return Err(bad("no host, or user info in it"));
        }
        let mut path = rest[end..].split('#').next().unwrap_or("").to_string();
        if path.is_empty() || path.starts_with('?') {
            path.insert(0, '/');
        }
        Ok(Url {
            https,
            authority: authority.to_string(),
            path_and_query: path,
        })
    }

    /// Resolves a `Location` (absolute, scheme-relative, absolute-path or relative).
    pub fn join(&self, location: &str) -> Result<Url, HttpError> {
        if location.contains("://") {
            return Url::parse(location);
        }
        let scheme = if self.https { "https" } else { "http" };
        if let Some(rest) = location.strip_prefix("//") {
            return Url::parse(&format!("{scheme}://{rest}"));
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let base = self.path_and_query.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        Url::parse(&format!("{scheme}://{}{path}", self.authority))
    }

    fn origin(&self) -> (bool, &str) {
        (self.https, &self.authority)
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.path_and_query)
    }
}

/// A response, body read completely.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The URL that answered (after redirects).
    pub url: String,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::Source(format!(
                "{} answered {} with invalid JSON: {e}",
                self.url, self.status
            ))
        })
    }

    /// `Retry-After` in seconds (the delta form; an HTTP date is treated as absent).
    pub fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after")?
            .trim()
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    }

    /// A short text of the body for error messages.
    pub fn body_snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut s: String = text.chars().take(300).collect();
        if text.chars().count() > 300 {
            s.push('…');
        }
        s
    }
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    max_redirects: u32,
    timeout: Option<Duration>,
}

impl Request {
    pub fn new(method: &str, url: impl Into<String>) -> Request {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            max_redirects: 10,
            timeout: None,
        }
    }
    pub fn get(url: impl Into<String>) -> Request {
        Request::new("GET", url)
    }
    pub fn post(url: impl Into<String>) -> Request {
        Request::new("POST", url)
    }
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }
    /// A JSON body with `content-type: application/json`.
    pub fn json(self, value: &serde_json::Value) -> Request {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }
    pub fn max_redirects(mut self, n: u32) -> Request {
        self.max_redirects = n;
        self
    }
    /// Time to the first response byte (the run's own wall-clock limit applies anyway).
    pub fn timeout(mut self, t: Duration) -> Request {
        self.timeout = Some(t);
        self
    }
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends the request, following redirects.
    pub fn send(&self) -> Result<Response, HttpError> {
        let mut url = Url::parse(&self.url)?;
        let origin = url.clone();
        let mut method = self.method.clone();
        let mut body = self.body.clone();
        let mut headers = self.headers.clone();
        for _ in 0..=self.max_redirects {
            let resp = imp::send(&method, &url, &headers, &body, self.timeout)?;
            let location = match resp.status {
                301 | 302 | 303 | 307 | 308 => resp.header("location").map(str::to_string),
                _ => None,
            };
            let Some(location) = location else {
                return Ok(resp);
            };
            let next = url.join(&location)?;
            if resp.status == 303 || (matches!(resp.status, 301 | 302) && method == "POST") {
                method = "GET".into();
                body.clear();
                headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
            }
            if next.origin() != origin.origin() {
                headers.retain(|(_, v)| !v.contains("{{secret."));
            }
            url = next;
        }
        Err(HttpError::TooManyRedirects(self.url.clone()))
    }
}

/// How a [`Client`] retries and paces requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Retries of one request on 429, 5xx and transport errors.
    pub max_retries: u32,
    /// First backoff; doubles per retry.
    pub backoff_ms: u64,
    /// Cap of one wait, also of a `Retry-After`.
    pub max_backoff_ms: u64,
    /// At least this long between two requests.
    pub min_interval_ms: u64,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_retries: 5,
            backoff_ms: 500,
            max_backoff_ms: 60_000,
            min_interval_ms: 0,
        }
    }
}

/// Sends requests with pacing and retries: 429 waits `Retry-After` (else backoff), 5xx and
/// transport errors back off exponentially; other non-2xx answers fail at once with the
/// status and the start of the body. A refused request ([`HttpError::Denied`]) is never
/// retried.
pub struct Client {
    retry: Retry,
    last: Option<std::time::Instant>,
    /// How to wait (`std::thread::sleep`, a WASI clock wait in the guest).
    pub sleep: fn(Duration),
}

impl Client {
    pub fn new(retry: Retry) -> Client {
        Client {
            retry,
            last: None,
            sleep: std::thread::sleep,
        }
    }

    /// Sends `req` until it answers 2xx or the retries are used up.
    pub fn send(&mut self, req: &Request) -> Result<Response, Error> {
        let url = req.url().to_string();
        let method = req.method.clone();
        let mut attempt: u32 = 0;
        loop {
            if let Some(last) = self.last {
                let gap = Duration::from_millis(self.retry.min_interval_ms);
                let since = last.elapsed();
                if since < gap {
                    (self.sleep)(gap - since);
                }
            }
            self.last = Some(std::time::Instant::now());
            let backoff = Duration::from_millis(
                self.retry
                    .backoff_ms
                    .saturating_mul(1u64 << attempt.min(20))
                    .min(self.retry.max_backoff_ms),
            );
            let (wait, why) = match req.send() {
                Ok(resp) if resp.is_success() => return Ok(resp),
                Ok(resp) if resp.status == 429 || resp.status >= 500 => {
                    let wait = resp
                        .retry_after()
                        .unwrap_or(backoff)
                        .min(Duration::from_millis(self.retry.max_backoff_ms));
                    (wait, format!("{} {}", resp.status, resp.body_snippet()))
                }
                Ok(resp) => {
                    return Err(Error::Source(format!(
                        "{method} {url} answered {}: {}",
                        resp.status,
                        resp.body_snippet()
                    )));
                }
                Err(HttpError::Transport(e)) => (backoff, e),
                Err(e) => return Err(e.into()),
            };
            if attempt >= self.retry.max_retries {
                return Err(Error::Source(format!(
                    "{method} {url} failed after {} attempts: {why}",
                    attempt + 1
                )));
            }
            crate::log(
                crate::Level::Warn,
                &format!(
                    "{method} {url}: {why}; retry {} in {} ms",
                    attempt + 1,
                    wait.as_millis()
                ),
            );
            (self.sleep)(wait);
            attempt += 1;
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use std::time::Duration;

    use wasi::http::outgoing_handler;
    use wasi::http::types::{
        ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
    };
    use wasi::io::streams::StreamError;

    use super::{HttpError, Response, Url};

    fn code(e: &ErrorCode) -> HttpError {
        match e {
            ErrorCode::HttpRequestDenied => {
                HttpError::Denied("the run is not granted this request".into())
            }
            other => HttpError::Transport(format!("{other:?}")),
        }
    }

    pub(super) fn send(
        method: &str,
        url: &Url,
        headers: &[(String, String)],
        body: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Response, HttpError> {
        let list: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        let fields = Fields::from_list(&list)
            .map_err(|e| HttpError::InvalidUrl(format!("header not allowed: {e:?}")))?;
        let req = OutgoingRequest::new(fields);
        let m = match method {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        };
        let bad = |what: &str| HttpError::InvalidUrl(format!("{url}: bad {what}"));
        req.set_method(&m).map_err(|_| bad("method"))?;
        req.set_scheme(Some(if url.https {
            &Scheme::Https
        } else {
            &Scheme::Http
        }))
        .map_err(|_| bad("scheme"))?;
        req.set_authority(Some(&url.authority))
            .map_err(|_| bad("authority"))?;
        req.set_path_with_query(Some(&url.path_and_query))
            .map_err(|_| bad("path"))?;
        let out_body = req.body().map_err(|_| bad("body"))?;
        let options = timeout.map(|t| {
            let o = RequestOptions::new();
            let _ = o.set_first_byte_timeout(Some(t.as_nanos() as u64));
            o
        });
        let future = outgoing_handler::handle(req, options).map_err(|e| code(&e))?;
        {
            let stream = out_body
                .write()
                .map_err(|_| HttpError::Transport("request body stream".into()))?;
            for chunk in body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| HttpError::Transport(format!("writing the body: {e:?}")))?;
            }
        }
        OutgoingBody::finish(out_body, None).map_err(|e| code(&e))?;
        let incoming = loop {
            match future.get() {
                Some(result) => {
                    break result
                        .map_err(|()| HttpError::Transport("response taken twice".into()))?
                        .map_err(|e| code(&e))?;
                }
                None => future.subscribe().block(),
            }
        };
        let status = incoming.status();
        let headers = incoming
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        let in_body = incoming
            .consume()
            .map_err(|()| HttpError::Transport("response body taken twice".into()))?;
        let mut body = Vec::new();
        {
            let stream = in_body
                .stream()
                .map_err(|()| HttpError::Transport("response body stream".into()))?;
            loop {
                match stream.blocking_read(1 << 16) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(HttpError::Transport(format!(
                            "reading the response: {}",
                            e.to_debug_string()
                        )));
                    }
                }
            }
        }
        drop(in_body);
        Ok(Response {
            status,
            headers,
            body,
            url: url.to_string(),
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::time::Duration;

    use super::{HttpError, Response, Url};

    pub(super) fn send(
        _: &str,
        _: &Url,
        _: &[(String, String)],
        _: &[u8],
        _: Option<Duration>,
    ) -> Result<Response, HttpError> {
        Err(HttpError::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("https://api.example.com:8443/v1/items?page=2#frag").unwrap();
        assert_eq!(
            u,
            Url {
                https: true,
                authority: "api.example.com:8443".into(),
                path_and_query: "/v1/items?page=2".into()
            }
        );
        assert_eq!(Url::parse("http://h?x=1").unwrap().path_and_query, "/?x=1");
        for bad in ["ftp://h/", "h/path", "https:///x", "https://user@h/"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            u.join("/other").unwrap().to_string(),
            "https://api.example.com:8443/other"
        );
        assert_eq!(
            u.join("next?p=3").unwrap().to_string(),
            "https://api.example.com:8443/v1/next?p=3"
        );
        assert_eq!(
            u.join("//cdn.example.com/f").unwrap().to_string(),
            "https://cdn.example.com/f"
        );
        assert_eq!(u.join("http://x/y").unwrap().to_string(), "http://x/y");
    }

    #[test]
    fn placeholders() {
        assert_eq!(secret("jira_token"), "{{secret.jira_token}}");
        assert_eq!(secret_base64("t"), "{{secret.t|base64}}");
    }

    #[test]
    fn native_builds_have_no_network() {
        assert_eq!(
            Request::get("https://example.com/").send().unwrap_err(),
            HttpError::Unsupported
        );
    }
}
