//! File data over HTTP: `GET`/`HEAD /content/<id>`, `/files/<name>`, `/outboard/<id>` and
//! `/have/<id>`.
//!
//! `/content/<id>` also serves downloads in progress (the swarm): a range whose pieces are all
//! verified is served from the partial file like any other, a range touching a piece the node
//! lacks is answered `416` with `Shoal-Lacks` (see [`crate::proto::have`]); `/files/<name>`
//! never serves them. `/have/<id>` says what the node holds of an id, as a long poll with
//! `?since=<version>`.
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
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use shoal_index::ContentId;

use super::faults::status_of;
use super::guard::Caller;
use super::range::{self, Wanted};
use crate::proto::have::{
    CHOKED_HEADER, FROM_HEADER, HAVE_HEADER, HINTS_HEADER, Have, LACKS_HEADER, MAX_PIECE_SIZE, PARTIAL_HEADER, PIECE_SIZE_HEADER,
    SPREAD_HEADER, write_hints,
};
use crate::service::swarm::UploadSlot;
use crate::service::{Api, ApiError, Partial};

/// Answers up to this size are read whole; larger ones are streamed.
const SMALL_BODY: u64 = 64 * 1024;
/// The chunk size of a streamed answer.
const STREAM_CHUNK: usize = 256 * 1024;

/// Where a streamed answer's bytes come from: a file of the share, or a download in progress.
trait ReadAt: Send + Sync + 'static {
    /// Reads exactly `len` bytes from `offset` (blocking).
    fn read_chunk(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>>;
}

/// A file of the share opened for one answer alone: its position is this answer's own, so it is
/// read in order into buffers that need no zeroing first.
struct OwnFile(std::fs::File);

impl ReadAt for OwnFile {
    fn read_chunk(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Seek};
        let mut file = &self.0;
        file.seek(std::io::SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len);
        file.take(len as u64).read_to_end(&mut buf)?;
        if buf.len() != len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(buf)
    }
}

impl ReadAt for Partial {
    fn read_chunk(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_at(&mut buf, offset).map(|()| buf)
    }
}

/// Counters a streamed answer adds its bytes to as they go.
struct Sent {
    bytes: Counter,
    /// Bytes of downloads in progress.
    partial: Option<Counter>,
    /// Bytes to this downloader of a swarm.
    to_asker: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// Streams `span` of `from` in chunks of at most [`STREAM_CHUNK`], each read on the blocking
/// pool only once the upload limit lets it go: an answer waiting on the limit holds no buffer,
/// so a crowd of askers costs memory only for the chunks on their way. `slot` (an upload slot)
/// is held as long as the body.
fn stream_range(
    from: Arc<dyn ReadAt>,
    span: std::ops::Range<u64>,
    limit: Option<Arc<crate::net::rate::RateLimiter>>,
    sent: Sent,
    slot: Option<UploadSlot>,
) -> Body {
    let sent = Arc::new(sent);
    let stream = futures_util::stream::unfold(span, move |left| {
        let _slot = &slot;
        let (from, limit, sent) = (from.clone(), limit.clone(), sent.clone());
        async move {
            if left.is_empty() {
                return None;
            }
            let len = (left.end - left.start).min(STREAM_CHUNK as u64) as usize;
            let offset = left.start;
            if let Some(limit) = &limit {
                crate::net::rate::throttle(limit, len).await;
            }
            let read = tokio::task::spawn_blocking(move || from.read_chunk(offset, len)).await;
            let chunk = match read {
                Ok(Ok(buf)) => buf,
                Ok(Err(error)) => return Some((Err(error), left.end..left.end)),
                Err(error) => return Some((Err(std::io::Error::other(error)), left.end..left.end)),
            };
            sent.bytes.inc_by(len as u64);
            if let Some(partial) = &sent.partial {
                partial.inc_by(len as u64);
            }
            if let Some(to_asker) = &sent.to_asker {
                to_asker.fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Some((Ok(bytes::Bytes::from(chunk)), offset + len as u64..left.end))
        }
    });
    Body::from_stream(stream)
}

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

/// A downloader of a swarm, as a request to `/content/<id>` names it.
struct Asker {
    /// It takes hints ([`HINTS_HEADER`]): spreading and upload slots apply to it.
    takes_hints: bool,
    /// Who it is, for upload slots: its node id over iroh, the node URL it names
    /// ([`FROM_HEADER`]), or its address and port.
    who: String,
}

impl Asker {
    fn of(headers: &HeaderMap, caller: &Caller) -> Asker {
        let takes_hints = headers.get(HINTS_HEADER).is_some_and(|v| v.as_bytes() == b"1");
        let who = match caller.key() {
            Some(key) => format!("iroh://{key}"),
            None => headers
                .get(FROM_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| crate::proto::url::holder(v).ok())
                .unwrap_or_else(|| caller.0.to_string()),
        };
        Asker { takes_hints, who }
    }

    /// An upload slot for it (held while the range is sent; `None` for a request that slots do
    /// not apply to), or the answer that it has none now.
    fn slot(&self, api: &Api, id: &ContentId, seeding: bool) -> Result<Option<UploadSlot>, Choked> {
        if !self.takes_hints {
            return Ok(None);
        }
        api.admit_upload(id, &self.who, seeding).map(Some).ok_or(Choked)
    }
}

/// No upload slot for a downloader now.
struct Choked;

impl Choked {
    /// `503` with `Shoal-Choked`: ask others, come back in a second.
    fn answer(self) -> Response {
        Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header(CHOKED_HEADER, "1")
            .header(header::RETRY_AFTER, "1")
            .header(header::CONTENT_LENGTH, 0)
            .body(Body::empty())
            .unwrap_or_default()
    }
}

/// `GET /content/<id>`.
pub async fn by_id(
    State(api): State<Api>,
    axum::Extension(caller): axum::Extension<Caller>,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(id) = id.parse::<ContentId>() else {
        return no_sniffing(error_response(ApiError::NotFound(id))).await;
    };
    let asker = Asker::of(&headers, &caller);
    let response = match serve(&api, &method, &id.to_string(), &headers, Some(&asker)).await {
        Served::Answer(response) => response,
        Served::NotHere(error) => match api.partial(&id) {
            Some(partial) => serve_partial(&api, &method, &partial, &headers, &asker).await,
            None => error_response(error),
        },
    };
    no_sniffing(response).await
}

/// `GET /files/<name>` (the name is percent-decoded once by the router).
pub async fn by_name(State(api): State<Api>, method: Method, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let response = match serve(&api, &method, &name, &headers, None).await {
        Served::Answer(response) => response,
        Served::NotHere(error) => error_response(error),
    };
    no_sniffing(response).await
}

/// The query of `/have/<id>`.
#[derive(serde::Deserialize)]
pub struct HaveQuery {
    since: Option<u64>,
}

/// `GET /have/<id>[?since=<version>]`: what this node holds of the id (see
/// [`crate::proto::have`]).
pub async fn have(State(api): State<Api>, Path(id): Path<String>, Query(query): Query<HaveQuery>) -> Response {
    let Ok(id) = id.parse::<ContentId>() else {
        return no_sniffing(error_response(ApiError::NotFound(id))).await;
    };
    let response = match api.have(id, query.since).await {
        Ok(have) => {
            let body = match &have {
                Have::Complete => Vec::new(),
                Have::Partial { bits, .. } => bits.to_wire().to_vec(),
            };
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                    (header::HeaderName::from_static(HAVE_HEADER), have.header()),
                ],
                body,
            )
                .into_response()
        }
        Err(error) => error_response(error),
    };
    no_sniffing(response).await
}

/// The query of `/outboard/<id>`.
#[derive(serde::Deserialize)]
pub struct OutboardQuery {
    piece_size: Option<u64>,
}

/// `GET /outboard/<id>[?piece_size=<bytes>]`: the bao outboard (pre-order, 16 KiB chunk groups)
/// of a file, or with `piece_size` only the pairs a downloader of pieces that size needs (marked
/// by [`PIECE_SIZE_HEADER`]; a download in progress serves only that). Sent under the upload
/// limit like the file's bytes.
pub async fn outboard(State(api): State<Api>, Path(id): Path<String>, Query(query): Query<OutboardQuery>) -> Response {
    let Ok(id) = id.parse::<ContentId>() else {
        return no_sniffing(error_response(ApiError::NotFound(id))).await;
    };
    if let Some(size) = query.piece_size
        && (!size.is_power_of_two() || !(shoal_index::BLOCK_BYTES..=MAX_PIECE_SIZE).contains(&size))
    {
        let reason = format!(
            "piece_size must be a power of two from {} to {MAX_PIECE_SIZE} bytes",
            shoal_index::BLOCK_BYTES
        );
        return no_sniffing(error_response(ApiError::BadRequest(reason))).await;
    }
    let response = match api.outboard(id, query.piece_size).await {
        Ok(bytes) => {
            if let Some(limit) = api.upload_limit() {
                crate::net::rate::throttle(limit, bytes.len()).await;
            }
            let mut response = ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response();
            if let Some(size) = query.piece_size {
                response
                    .headers_mut()
                    .insert(header::HeaderName::from_static(PIECE_SIZE_HEADER), HeaderValue::from(size));
            }
            response
        }
        Err(error) => error_response(error),
    };
    no_sniffing(response).await
}

/// The `ETag` of content `id` and what a request asks of it: its `Range`, unless an `If-Range`
/// names another version (then the whole file).
fn wanted_of(headers: &HeaderMap, id: &ContentId, size: u64) -> (String, Wanted) {
    let etag = format!("\"{id}\"");
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == etag));
    let wanted = if if_range_ok {
        range::parse(range_header, size)
    } else {
        Wanted::Whole
    };
    (etag, wanted)
}

/// A file of the share served, or why there is none under that key.
enum Served {
    Answer(Response),
    NotHere(ApiError),
}

/// Serves a file of the share by name or id; `asker`: a request for `/content/<id>`, which
/// counts towards spreading a swarm's pieces ([`Api::spread`]) and upload slots.
async fn serve(api: &Api, method: &Method, key: &str, headers: &HeaderMap, asker: Option<&Asker>) -> Served {
    let opened = match api.open_for_serving(key, SMALL_BODY) {
        Ok(opened) => opened,
        Err(error @ ApiError::NotFound(_)) => return Served::NotHere(error),
        Err(error) => return Served::Answer(error_response(error)),
    };
    Served::Answer(serve_opened(api, method, opened, headers, asker).await)
}

/// Serves a range of a download in progress: only when every piece it touches is verified;
/// otherwise `416` with `Shoal-Lacks`. A request without a range is served only once the
/// download holds every piece.
async fn serve_partial(api: &Api, method: &Method, partial: &Arc<Partial>, headers: &HeaderMap, asker: &Asker) -> Response {
    let size = partial.size;
    let (etag, wanted) = wanted_of(headers, &partial.id, size);
    let held = partial.holding().bits.held();
    let mut builder = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(
            header::ETAG,
            HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
        )
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(PARTIAL_HEADER, held);
    let lacks = |builder: axum::http::response::Builder| {
        builder
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_RANGE, format!("bytes */{size}"))
            .header(LACKS_HEADER, "1")
            .body(Body::empty())
            .unwrap_or_default()
    };
    if method == Method::HEAD && matches!(wanted, Wanted::Whole) {
        // What a size probe asks: the size, which the downloader binds to the id itself.
        return builder
            .status(StatusCode::OK)
            .header(header::CONTENT_LENGTH, size)
            .body(Body::empty())
            .unwrap_or_default();
    }
    let span = match wanted {
        Wanted::Whole if partial.holds(0..size) => {
            builder = builder.status(StatusCode::OK);
            0..size
        }
        Wanted::Part(span) if partial.holds(span.clone()) => {
            builder = builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {}-{}/{}", span.start, span.end - 1, size));
            span
        }
        Wanted::Unsatisfiable => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(Body::empty())
                .unwrap_or_default();
        }
        _ => return lacks(builder),
    };
    let slot = if method == Method::HEAD {
        None
    } else {
        match asker.slot(api, &partial.id, false) {
            Ok(slot) => slot,
            Err(choked) => return choked.answer(),
        }
    };
    builder = builder.header(header::CONTENT_LENGTH, span.end - span.start);
    if method == Method::HEAD {
        return builder.body(Body::empty()).unwrap_or_default();
    }
    api.count_partial_served();
    let sent = Sent {
        bytes: api.bytes_up_counter(),
        partial: Some(api.partial_bytes_up_counter()),
        to_asker: asker.takes_hints.then(|| api.upload_counter(&partial.id, &asker.who)).flatten(),
    };
    let body = stream_range(partial.clone(), span, api.upload_limit().cloned(), sent, slot);
    builder.body(body).unwrap_or_default()
}

async fn serve_opened(
    api: &Api,
    method: &Method,
    opened: crate::service::api::Opened,
    headers: &HeaderMap,
    asker: Option<&Asker>,
) -> Response {
    let entry = opened.entry;
    let (etag, wanted) = wanted_of(headers, &entry.id, entry.size);
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
    let mut slot = None;
    if let Some(asker) = asker
        && method != Method::HEAD
    {
        slot = match asker.slot(api, &entry.id, true) {
            Ok(slot) => slot,
            Err(choked) => return choked.answer(),
        };
        if let Err(hints) = api.spread(&entry.id, entry.size, span.clone(), asker.takes_hints) {
            return Response::builder()
                .status(StatusCode::CONFLICT)
                .header(SPREAD_HEADER, write_hints(&hints))
                .header(header::CONTENT_LENGTH, 0)
                .body(Body::empty())
                .unwrap_or_default();
        }
    }
    builder = builder.header(header::CONTENT_LENGTH, span.end - span.start);
    if method == Method::HEAD {
        return builder.body(Body::empty()).unwrap_or_default();
    }
    if let Some(whole) = opened.whole {
        // A small file was read whole with the lookup: no further trip to the blocking pool.
        let bytes = bytes::Bytes::from(whole).slice(span.start as usize..span.end as usize);
        if let Some(limit) = api.upload_limit() {
            crate::net::rate::throttle(limit, bytes.len()).await;
        }
        api.count_bytes_up(bytes.len() as u64);
        return builder.body(Body::from(bytes)).unwrap_or_default();
    }
    let sent = Sent {
        bytes: api.bytes_up_counter(),
        partial: None,
        to_asker: asker.filter(|a| a.takes_hints).and_then(|a| api.upload_counter(&entry.id, &a.who)),
    };
    let body = match api.upload_limit() {
        Some(limit) => stream_range(Arc::new(OwnFile(opened.file)), span, Some(limit.clone()), sent, slot),
        None => stream_file(opened.file, span, sent, slot).await,
    };
    builder.body(body).unwrap_or_default()
}

/// Streams `span` of a file of the share with no upload limit: read ahead by tokio's file in
/// [`STREAM_CHUNK`]s, which keeps a single-source download over loopback at the speed of
/// curl from nginx (a chunk read only on demand, [`stream_range`], was 10% slower).
async fn stream_file(file: std::fs::File, span: std::ops::Range<u64>, sent: Sent, slot: Option<UploadSlot>) -> Body {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::from_std(file);
    if let Err(error) = file.seek(std::io::SeekFrom::Start(span.start)).await {
        let error = futures_util::stream::once(async move { Err::<bytes::Bytes, _>(error) });
        return Body::from_stream(error);
    }
    let len = span.end - span.start;
    let reader = file.take(len);
    let stream = futures_util::StreamExt::inspect(
        tokio_util::io::ReaderStream::with_capacity(reader, STREAM_CHUNK.min(len as usize)),
        move |chunk| {
            // The upload slot, if any, lives as long as the body does.
            let _slot = &slot;
            if let Ok(bytes) = chunk {
                sent.bytes.inc_by(bytes.len() as u64);
                if let Some(to_asker) = &sent.to_asker {
                    to_asker.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
            }
        },
    );
    Body::from_stream(stream)
}
