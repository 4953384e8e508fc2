//! The admin web UI: server-rendered pages (`maud`: compile-time-checked templates that
//! escape every value), no JavaScript, one embedded stylesheet.
//!
//! - **Sign-in:** user name + password (argon2id, set by an admin) → a session cookie
//!   (`HttpOnly`, `SameSite=Strict`, `Secure` over TLS; 12 h) whose sha256 is stored with
//!   the session's CSRF token. Failed sign-ins count against the client address like failed
//!   tokens (`[auth] failures_per_minute`). Sessions are listed and revocable; API tokens
//!   keep working for REST.
//! - **CSRF:** every form carries the session's token, checked on every POST (the sign-in
//!   form a double-submit cookie); a POST without it is refused.
//! - **One set of rules:** a form's action is the REST API call it stands for, made
//!   in-process on behalf of the signed-in user ([`api`]), so validation, permissions and
//!   the audit log are exactly the API's.
//! - **Headers:** a CSP without inline script (`default-src 'none'`), `X-Frame-Options:
//!   DENY`, `Referrer-Policy: no-referrer`, `nosniff`, `Cache-Control: no-store`.

mod pages;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::Value;
use tower::ServiceExt;

use crate::db::access;
use crate::state::AppState;
use crate::store::Principal;

/// The session cookie.
const COOKIE: &str = "agnes_session";
/// The sign-in form's double-submit cookie.
const LOGIN_COOKIE: &str = "agnes_login";
/// How long a browser session lives.
pub const SESSION_SECS: u64 = 12 * 3600;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/setup", get(pages::setup).post(pages::setup_token))
        .route("/admin", get(pages::overview))
        .route(
            "/admin/sources",
            get(pages::sources).post(pages::create_source),
        )
        .route("/admin/sources/{name}", get(pages::source))
        .route("/admin/sources/{name}/{action}", post(pages::source_action))
        .route("/admin/connectors", get(pages::connectors))
        .route(
            "/admin/connectors/{name}/{version}",
            get(pages::connector).post(pages::review_connector),
        )
        .route("/admin/marketplace", get(pages::marketplace))
        .route(
            "/admin/marketplace/{marketplace}/{plugin}",
            get(pages::marketplace_plugin).post(pages::decide_plugin),
        )
        .route("/admin/access", get(pages::access))
        .route("/admin/access/{action}", post(pages::access_action))
        .route(
            "/admin/metrics",
            get(pages::metrics).post(pages::remove_metric),
        )
        .route("/admin/audit", get(pages::audit))
        .route("/static/agnes.css", get(css))
        .layer(middleware::map_response(security_headers))
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-content-type-options", "nosniff");
    set(h, "cache-control", "no-store");
    response
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/agnes.css"),
    )
        .into_response()
}

/// A signed-in browser: the user and the session's CSRF token.
pub struct Browser {
    pub user: Principal,
    pub csrf: String,
}

/// A signed-in admin.
pub struct BrowserAdmin(pub Browser);

impl FromRequestParts<AppState> for Browser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let to_login = || {
            let next = parts.uri.path();
            Redirect::to(&format!("/login?next={}", encode(next))).into_response()
        };
        let Some(id) = cookie(&parts.headers, COOKIE) else {
            return Err(to_login());
        };
        match state.store.session(&access::hash(&id)).await {
            Ok(Some((user, csrf))) => Ok(Browser { user, csrf }),
            Ok(None) => Err(to_login()),
            Err(e) => Err(e.into_response()),
        }
    }
}

impl FromRequestParts<AppState> for BrowserAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let b = Browser::from_request_parts(parts, state).await?;
        if !b.user.is_admin() {
            return Err(pages::forbidden(&b));
        }
        Ok(BrowserAdmin(b))
    }
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// `Set-Cookie` for `name=value` (an empty value with `Max-Age=0` clears it).
fn set_cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config.tls.is_some() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("cookie values are hex")
}

/// Equal in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Percent-encodes a query value.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A form's fields.
pub type Fields = std::collections::HashMap<String, String>;

impl Browser {
    /// Refuses a form without this session's CSRF token (403).
    fn check(&self, form: Fields) -> Result<Fields, CsrfRefused> {
        match form.get("csrf") {
            Some(t) if same(t, &self.csrf) => Ok(form),
            _ => Err(CsrfRefused),
        }
    }
}

/// A signed-in browser, of any kind.
pub trait Signed {
    fn browser(&self) -> &Browser;
}

impl Signed for Browser {
    fn browser(&self) -> &Browser {
        self
    }
}

impl Signed for BrowserAdmin {
    fn browser(&self) -> &Browser {
        &self.0
    }
}

/// A form POST by a signed-in `S` ([`Browser`] or [`BrowserAdmin`]): the session is
/// checked first, then the form is read and its CSRF token compared with the session's
/// (403, nothing done, without it).
pub struct Posted<S> {
    pub who: S,
    pub form: Fields,
}

impl<S> axum::extract::FromRequest<AppState> for Posted<S>
where
    S: FromRequestParts<AppState, Rejection = Response> + Signed + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let who = S::from_request_parts(&mut parts, state).await?;
        let Form(form) = Form::<Fields>::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let form = who
            .browser()
            .check(form)
            .map_err(IntoResponse::into_response)?;
        Ok(Posted { who, form })
    }
}

/// A form without the session's CSRF token: 403, nothing done.
pub struct CsrfRefused;

impl IntoResponse for CsrfRefused {
    fn into_response(self) -> Response {
        pages::csrf_refused()
    }
}

/// Calls the REST API in-process on behalf of `user`: the same handlers, permission
/// checks, validation and audit entries as a client with their token. Returns the status
/// and the JSON answer.
pub(crate) async fn api(
    state: &AppState,
    user: &Principal,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
        .expect("a valid request");
    request
        .extensions_mut()
        .insert(crate::auth::OnBehalf(user.clone()));
    let response = match crate::app::app(state.clone()).oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
    error: Option<String>,
}

/// Where to go after signing in: a local path only (never another origin).
fn local_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".into(),
    }
}

async fn login_form(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    let token = match access::random_hex(16) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let mut response =
        pages::login(&token, &local_next(q.next.as_deref()), q.error.as_deref()).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, LOGIN_COOKIE, &token, 600),
    );
    response
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
    csrf: String,
    next: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = local_next(form.next.as_deref());
    let back = |error: &str| {
        Redirect::to(&format!(
            "/login?next={}&error={}",
            encode(&next),
            encode(error)
        ))
        .into_response()
    };
    if !cookie(&headers, LOGIN_COOKIE).is_some_and(|c| same(&c, &form.csrf)) {
        return (StatusCode::FORBIDDEN, pages::message("Sign-in refused", "The sign-in form expired or was not sent from this site. Reload the sign-in page and try again.")).into_response();
    }
    let per_minute = state.config.auth.failures_per_minute;
    if let Some(wait) = state.auth_cache.locked_out(client, per_minute) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, wait.to_string())],
            pages::message(
                "Too many attempts",
                &format!("Too many failed sign-ins from this address; try again in {wait} s."),
            ),
        )
            .into_response();
    }
    let found = match state.store.password_of(&form.user).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    // verify against something even for an unknown user: the answer takes as long
    let (user_id, hash) = found
        .clone()
        .unwrap_or_else(|| (String::new(), dummy_hash().to_string()));
    let password = form.password.clone();
    let ok = tokio::task::spawn_blocking(move || crate::password::verify(&password, &hash))
        .await
        .unwrap_or(false)
        && found.is_some();
    if !ok {
        state.auth_cache.failed(client);
        tracing::warn!("error.type" = "auth_failed", client = ?client, "browser sign-in failed");
        crate::routes::audit_as(&state, Some(&form.user), "session.failed", None).await;
        return back("The user name or password is wrong, or the user is disabled.");
    }
    let (id, csrf) = match (access::random_hex(32), access::random_hex(32)) {
        (Ok(id), Ok(csrf)) => (id, csrf),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let client_text = client.map(|c| c.to_string()).unwrap_or_default();
    if let Err(e) = state
        .store
        .create_session(
            &access::hash(&id),
            &user_id,
            &csrf,
            SESSION_SECS,
            &client_text,
        )
        .await
    {
        return e.into_response();
    }
    crate::routes::audit_as(
        &state,
        Some(&form.user),
        "session.create",
        Some(client_text),
    )
    .await;
    let mut response = Redirect::to(&next).into_response();
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&state, COOKIE, &id, SESSION_SECS),
    );
    h.append(header::SET_COOKIE, set_cookie(&state, LOGIN_COOKIE, "", 0));
    response
}

/// The hash of a random password nobody knows, verified for unknown users.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        crate::password::generate()
            .and_then(|p| crate::password::hash(&p))
            .unwrap_or_default()
    })
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted { who: browser, .. }: Posted<Browser>,
) -> Response {
    if let Some(id) = cookie(&headers, COOKIE) {
        let _ = state.store.revoke_session(&access::hash(&id)).await;
    }
    crate::routes::audit_as(&state, Some(&browser.user.name), "session.end", None).await;
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(&state, COOKIE, "", 0));
    response
}

/// The client's address, when the server knows it (`ConnectInfo`).
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// A page: `200 text/html`.
pub(crate) fn html(markup: maud::Markup) -> Response {
    Html(markup.into_string()).into_response()
}
