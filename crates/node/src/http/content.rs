//! File data over HTTP: `GET`/`HEAD /content/<id>`, `/files/<name>` and `/outboard/<id>`.
//!
//! Files are streamed from disk in bounded chunks (never read whole), with `Content-Length`,
//! `Accept-Ranges`, single-range `Range` (206/416), `If-Range`, and an `ETag` equal to the
//! content id, so that curl and aria2c can download and resume. A file whose size, mtime or inode
//! no longer match the index is not served under the id it had (404 until the next scan).
//!
//! Every answer says `X-Content-Type-Options: nosniff`: the bytes are a stranger's, and a
//! browser must take them as the `application/octet-stream` they are sent as, never guess
//! HTML or script from them (a shared `page.html` opened from `/files` would otherwise run in
//! the node's origin).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shoal_index::ContentId;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::faults::status_of;
use super::range::{self, Wanted};
use crate::service::{Api, ApiError};

/// Answers up to this size are read whole; larger ones are streamed.
const SMALL_BODY: u64 = 64 * 1024;
/// The chunk size of a streamed answer.
const STREAM_CHUNK: usize = 256 * 1024;

fn error_response(error: ApiError) -> Response {
    let text = match &error {
        ApiError::Internal(detail) => {
            tracing::warn!(%detail, "internal error serving a file");
            "internal error".to_string()
        }
        other => other.to_string(),
    };
    (status_of(&error), format!("{text}\n")).into_response()
}

/// Adds `X-Content-Type-Options: nosniff` to an answer (also used by the JSON API).
pub(super) async fn no_sniffing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// `GET /content/<id>`.
pub async fn by_id(State(api): State<Api>, method: Method, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let Ok(id) = id.parse::<ContentId>() else {
        return no_sniffing(error_response(ApiError::NotFound(id))).await;
    };
    no_sniffing(serve(&api, &method, &id.to_string(), &headers).await).await
}

/// `GET /files/<name>` (the name is percent-decoded once by the router).
pub async fn by_name(State(api): State<Api>, method: Method, Path(name): Path<String>, headers: HeaderMap) -> Response {
    no_sniffing(serve(&api, &method, &name, &headers).await).await
}

/// `GET /outboard/<id>`: the bao outboard (pre-order, 16 KiB chunk groups) of a file.
pub async fn outboard(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<ContentId>() else {
        return no_sniffing(error_response(ApiError::NotFound(id))).await;
    };
    let response = match api.outboard(id).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(error) => error_response(error),
    };
    no_sniffing(response).await
}

async fn serve(api: &Api, method: &Method, key: &str, headers: &HeaderMap) -> Response {
    let opened = match api.open_for_serving(key, SMALL_BODY) {
        Ok(opened) => opened,
        Err(error) => return error_response(error),
    };
    let (name, entry) = (opened.name.as_str(), opened.entry);
    let etag = format!("\"{}\"", entry.id);
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == etag));
    let wanted = if if_range_ok {
        range::parse(range_header, entry.size)
    } else {
        Wanted::Whole
    };
    let mut builder = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(
            header::ETAG,
            HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
        )
        .header(header::CONTENT_TYPE, "application/octet-stream");
    let span = match wanted {
        Wanted::Whole => {
            builder = builder.status(StatusCode::OK);
            0..entry.size
        }
        Wanted::Part(span) => {
            builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", span.start, span.end - 1, entry.size),
            );
            span
        }
        Wanted::Unsatisfiable => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{}", entry.size))
                .body(Body::empty())
                .unwrap_or_default();
        }
    };
    builder = builder.header(header::CONTENT_LENGTH, span.end - span.start);
    if method == Method::HEAD {
        return builder.body(Body::empty()).unwrap_or_default();
    }
    let len = span.end - span.start;
    if let Some(whole) = opened.whole {
        // A small file was read whole with the lookup: no further trip to the blocking pool.
        let bytes = bytes::Bytes::from(whole).slice(span.start as usize..span.end as usize);
        if let Some(limit) = api.upload_limit() {
            crate::net::rate::throttle(limit, bytes.len()).await;
        }
        api.count_bytes_up(bytes.len() as u64);
        return builder.body(Body::from(bytes)).unwrap_or_default();
    }
    let mut file = tokio::fs::File::from_std(opened.file);
    if let Err(error) = file.seek(std::io::SeekFrom::Start(span.start)).await {
        return error_response(ApiError::Internal(format!("seek {name}: {error}")));
    }
    let reader = file.take(len);
    let sent = api.bytes_up_counter();
    let stream = futures_util::StreamExt::inspect(
        tokio_util::io::ReaderStream::with_capacity(reader, STREAM_CHUNK.min(len as usize)),
        move |chunk| {
            if let Ok(bytes) = chunk {
                sent.inc_by(bytes.len() as u64);
            }
        },
    );
    match api.upload_limit().cloned() {
        None => builder.body(Body::from_stream(stream)).unwrap_or_default(),
        Some(limit) => {
            use futures_util::StreamExt;
            let throttled = stream.then(move |chunk| {
                let limit = limit.clone();
                async move {
                    if let Ok(bytes) = &chunk {
                        crate::net::rate::throttle(&limit, bytes.len()).await;
                    }
                    chunk
                }
            });
            builder.body(Body::from_stream(throttled)).unwrap_or_default()
        }
    }
}
