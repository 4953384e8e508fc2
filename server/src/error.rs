//! `ApiError`: every handler's error. Renders `{code, message}` with a stable `code`;
//! 5xx responses hide internals (the cause is logged, never sent).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A failed request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// A bad request with its own machine-readable code (e.g. `remote_scan_too_large`).
    #[error("{1}")]
    Refused(&'static str, String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The SQL was refused by the query sandbox (not allowed, or invalid).
    #[error("{0}")]
    QueryRejected(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    RangeNotSatisfiable(String),
    /// Too many failed authentications from this client: retry after the seconds given.
    #[error("{0}")]
    TooManyRequests(String, u64),
    #[error("query exceeded its time limit of {0} s")]
    QueryTimeout(u64),
    /// Anything else: logged with its cause, reported as `internal`.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Refused(code, _) => code,
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::QueryRejected(_) => "query_rejected",
            ApiError::Conflict(_) => "conflict",
            ApiError::RangeNotSatisfiable(_) => "range_not_satisfiable",
            ApiError::QueryTimeout(_) => "query_timeout",
            ApiError::TooManyRequests(..) => "too_many_requests",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) | ApiError::QueryRejected(_) | ApiError::Refused(..) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::QueryTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message with an internal error's cause (for logs and start-up errors, never
    /// for a response).
    pub fn detail(&self) -> String {
        match self {
            ApiError::Internal(cause) => cause.clone(),
            other => other.to_string(),
        }
    }

    /// An internal error with its cause (logged, not sent).
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(cause.to_string())
    }
}

impl From<duckdb::Error> for ApiError {
    fn from(e: duckdb::Error) -> Self {
        ApiError::internal(format!("system database: {e}"))
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                ApiError::Conflict(format!("already exists ({})", d.message()))
            }
            _ => ApiError::internal(format!("system database: {e}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!("error.type" = "internal", cause = %cause, "request failed");
        }
        // `detail` is what the original Agnes client prints
        let message = self.to_string();
        let body = Json(json!({"code": self.code(), "message": message, "detail": message}));
        let mut response = (self.status(), body).into_response();
        if let ApiError::TooManyRequests(_, secs) = &self
            && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// `axum::Json` whose rejection (bad JSON, unknown field, wrong type) is an
/// [`ApiError::BadRequest`] with serde's message, so every error body is `{code, message}`.
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    axum::Json<T>:
        axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge(format!(
                    "the request body is over this route's limit: {}",
                    rejection.body_text()
                )))
            }
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// `axum::extract::Query` with the same kind of rejection.
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}
