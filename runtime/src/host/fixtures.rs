//! Recorded HTTP exchanges for testing connectors without their source
//! (`agnes connector test --fixtures`): in replay mode the host answers every granted request
//! from the recording — after the grant and secret checks, which still apply — and an
//! unexpected request fails the run naming it; in record mode the host sends the request and
//! keeps the exchange (never a request header: secrets are not recorded).

use std::sync::Mutex;

use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// One request and the response it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The full URL the connector asked for.
    pub url: String,
    pub status: u16,
    /// Response headers (lower-case names), in order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The response body as text, or as base64 when it is not UTF-8.
    #[serde(default)]
    pub body: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body_base64: bool,
}

/// Replay from, or record into, a list of exchanges.
#[derive(Debug)]
pub struct HttpFixtures {
    pub(crate) mode: Mode,
    exchanges: Mutex<Vec<(Exchange, bool)>>,
    unexpected: Mutex<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Replay,
    Record,
}

impl HttpFixtures {
    /// Answers requests from `exchanges` (each used once, in order of the first match).
    pub fn replay(exchanges: Vec<Exchange>) -> HttpFixtures {
        HttpFixtures {
            mode: Mode::Replay,
            exchanges: Mutex::new(exchanges.into_iter().map(|e| (e, false)).collect()),
            unexpected: Mutex::default(),
        }
    }

    /// Sends requests and records what they got.
    pub fn record() -> HttpFixtures {
        HttpFixtures {
            mode: Mode::Record,
            exchanges: Mutex::default(),
            unexpected: Mutex::default(),
        }
    }

    /// The exchanges (recorded ones, or the replayed list).
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(e, _)| e.clone())
            .collect()
    }

    /// Requests that had no recorded exchange (replay).
    pub fn unexpected(&self) -> Vec<String> {
        self.unexpected.lock().expect("not poisoned").clone()
    }

    /// Recorded exchanges the run never asked for (replay).
    pub fn unused(&self) -> Vec<String> {
        self.exchanges
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(_, used)| !used)
            .map(|(e, _)| format!("{} {}", e.method, e.url))
            .collect()
    }

    /// The recorded answer to `method url`, or `None` (recorded as unexpected).
    pub(crate) fn answer(&self, method: &str, url: &str) -> Option<http::Response<WasiBody>> {
        let mut all = self.exchanges.lock().expect("not poisoned");
        let Some((e, used)) = all
            .iter_mut()
            .find(|(e, used)| !*used && e.method.eq_ignore_ascii_case(method) && e.url == url)
        else {
            self.unexpected
                .lock()
                .expect("not poisoned")
                .push(format!("{method} {url}"));
            return None;
        };
        *used = true;
        let body = if e.body_base64 {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(e.body.as_bytes())
                .unwrap_or_default()
        } else {
            e.body.clone().into_bytes()
        };
        let mut response = http::Response::builder().status(e.status);
        for (k, v) in &e.headers {
            response = response.header(k, v);
        }
        let full = http_body_util::Full::new(bytes::Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync();
        response.body(full).ok()
    }

    /// Reads `response` whole, records it for `method url` and answers the same bytes.
    pub(crate) async fn keep(
        &self,
        method: &str,
        url: &str,
        response: http::Response<WasiBody>,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await?.to_bytes();
        let (text, base64) = match std::str::from_utf8(&bytes) {
            Ok(t) => (t.to_string(), false),
            Err(_) => {
                use base64::Engine as _;
                (
                    base64::engine::general_purpose::STANDARD.encode(&bytes),
                    true,
                )
            }
        };
        self.exchanges.lock().expect("not poisoned").push((
            Exchange {
                method: method.to_string(),
                url: url.to_string(),
                status: parts.status.as_u16(),
                headers: parts
                    .headers
                    .iter()
                    .filter(|(k, _)| {
                        !matches!(
                            k.as_str(),
                            "set-cookie" | "transfer-encoding" | "connection"
                        )
                    })
                    .filter_map(|(k, v)| {
                        Some((k.as_str().to_string(), v.to_str().ok()?.to_string()))
                    })
                    .collect(),
                body: text,
                body_base64: base64,
            },
            true,
        ));
        let full = http_body_util::Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync();
        Ok(http::Response::from_parts(parts, full))
    }
}
