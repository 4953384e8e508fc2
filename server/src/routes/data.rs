//! `GET /api/data/{name}/download`: the table's parquet bytes. ETag = `"<md5>"` (the
//! manifest hash); `If-None-Match` → 304; one `Range: bytes=` range → 206. The file is the
//! catalog's versioned path, opened once: a sync publishing a new version meanwhile cannot
//! tear or mix the bytes of a download.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/data/{name}/download", get(download))
}

/// Parses one `bytes=` range against `size`: `Ok(None)` means the whole file.
pub(crate) fn parse_range(value: Option<&str>, size: u64) -> ApiResult<Option<(u64, u64)>> {
    let Some(value) = value else { return Ok(None) };
    let bad = || {
        ApiError::RangeNotSatisfiable(format!(
            "range `{}` does not fit a file of {size} bytes; use one `bytes=start-end`",
            agnes_runtime::names::shown(value)
        ))
    };
    let spec = value.strip_prefix("bytes=").ok_or_else(bad)?;
    if spec.contains(',') {
        return Err(bad());
    }
    let (start, end) = spec.split_once('-').ok_or_else(bad)?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| bad())?;
            if n == 0 || size == 0 {
                return Err(bad());
            }
            (size.saturating_sub(n), size - 1)
        }
        (s, "") => (s.parse().map_err(|_| bad())?, size.saturating_sub(1)),
        (s, e) => (
            s.parse().map_err(|_| bad())?,
            e.parse::<u64>()
                .map_err(|_| bad())?
                .min(size.saturating_sub(1)),
        ),
    };
    if start > end || start >= size {
        return Err(bad());
    }
    Ok(Some((start, end)))
}

async fn download(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let table = super::readable_table(&state, &user, &name)?;
    if table.query_mode == "remote" {
        return Err(ApiError::Refused(
            "remote_table",
            format!(
                "`{name}` is a remote table: its data stays at the source. Cut what you need with \
                 `agnes snapshot create {name} --where ...`, or query it with `agnes query --remote`"
            ),
        ));
    }
    let etag = format!("\"{}\"", table.md5);
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && inm.split(',').any(|t| t.trim() == etag || t.trim() == "*")
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let mut file = tokio::fs::File::open(&table.path)
        .await
        .map_err(|e| ApiError::internal(format!("{}: {e}", table.path.display())))?;
    let size = file.metadata().await.map_err(ApiError::internal)?.len();
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    )?;
    super::audit(
        &state,
        &user.0,
        "data.download",
        Some(name.clone()),
        range.map(|(s, e)| format!("bytes {s}-{e}")),
    )
    .await;
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).map_err(ApiError::internal)?,
    );
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apache.parquet"),
    );
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, size),
        Some((s, e)) => {
            let cr = format!("bytes {s}-{e}/{size}");
            response_headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&cr).map_err(ApiError::internal)?,
            );
            (StatusCode::PARTIAL_CONTENT, s, e - s + 1)
        }
    };
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(ApiError::internal)?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 * 1024);
    Ok((status, response_headers, Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10).unwrap(), None);
        assert_eq!(parse_range(Some("bytes=0-3"), 10).unwrap(), Some((0, 3)));
        assert_eq!(parse_range(Some("bytes=4-"), 10).unwrap(), Some((4, 9)));
        assert_eq!(parse_range(Some("bytes=-3"), 10).unwrap(), Some((7, 9)));
        assert_eq!(parse_range(Some("bytes=5-100"), 10).unwrap(), Some((5, 9)));
        for bad in [
            "bytes=10-",
            "bytes=5-2",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=x-1",
            "bytes=-0",
        ] {
            assert!(parse_range(Some(bad), 10).is_err(), "{bad}");
        }
    }
}
