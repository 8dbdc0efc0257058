//! Misbehaving servers inside the fault suite, on 127.0.0.1:0: an HTTP mirror that corrupts or
//! stalls, and an XML-RPC peer that takes 5 s over every answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use shoal_node::http::range::{Wanted, parse};
use shoal_xmlrpc::{Fault, Value};

/// How a mirror misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mirror {
    /// Flips one byte in every 64 KiB it sends (so every 1 MiB piece it sends fails its check).
    Corrupt,
    /// Sends the first 64 KiB of every range request, then nothing for a minute.
    Stall,
}

const FLIP_EVERY: u64 = 64 * 1024;
const STALL_AFTER: usize = 64 * 1024;

/// Starts a mirror serving `data` at `/file`; returns the file's URL and a count of the bytes it
/// sent in bodies.
pub fn start_mirror(handle: &tokio::runtime::Handle, data: Arc<Vec<u8>>, behaviour: Mirror) -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let app = Router::new().route(
        "/file",
        get(move |headers: HeaderMap| {
            let (data, sent) = (data.clone(), counter.clone());
            async move { mirror_answer(&data, &headers, behaviour, &sent) }
        }),
    );
    let addr = serve(handle, app)?;
    Ok((format!("http://{addr}/file"), sent))
}

fn mirror_answer(data: &Arc<Vec<u8>>, headers: &HeaderMap, behaviour: Mirror, sent: &Arc<AtomicU64>) -> Response {
    let size = data.len() as u64;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, span) = match parse(range, size) {
        Wanted::Whole => (StatusCode::OK, 0..size),
        Wanted::Part(span) => (StatusCode::PARTIAL_CONTENT, span),
        Wanted::Unsatisfiable => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response();
        }
    };
    let mut response_headers = HeaderMap::new();
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(span.end - span.start));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", span.start, span.end - 1))
    {
        response_headers.insert(header::CONTENT_RANGE, value);
    }
    let mut body = data[span.start as usize..span.end as usize].to_vec();
    let body = match behaviour {
        Mirror::Corrupt => {
            for offset in span.clone() {
                if offset % FLIP_EVERY == 4321 {
                    body[(offset - span.start) as usize] ^= 0xFF;
                }
            }
            sent.fetch_add(body.len() as u64, Ordering::Relaxed);
            Body::from(body)
        }
        Mirror::Stall => {
            body.truncate(STALL_AFTER);
            sent.fetch_add(body.len() as u64, Ordering::Relaxed);
            let first = Bytes::from(body);
            // The first chunk, then a minute of silence, then the connection ends short.
            let stream = futures_util::stream::unfold(Some(first), |state| async move {
                match state {
                    Some(first) => Some((Ok::<Bytes, std::io::Error>(first), None)),
                    None => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        None
                    }
                }
            });
            Body::from_stream(stream)
        }
    };
    (status, response_headers, body).into_response()
}

/// Starts an XML-RPC peer that waits `delay` before answering any call: `hello` with 0, everything
/// else with fault 100 (not found). Returns its URL and a count of the calls it received.
pub fn start_slow_peer(handle: &tokio::runtime::Handle, delay: Duration) -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let answer = move |body: Bytes| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            let xml = match shoal_xmlrpc::decode_call(&body) {
                Ok(call) if call.method == "hello" => shoal_xmlrpc::encode_response(Value::Integer(0)),
                Ok(_) => shoal_xmlrpc::encode_fault(&Fault::new(100, "not found")),
                Err(_) => shoal_xmlrpc::encode_fault(&Fault::new(1, "malformed call")),
            };
            ([(header::CONTENT_TYPE, "text/xml")], xml)
        }
    };
    let app = Router::new().route("/", post(answer.clone())).route("/RPC2", post(answer));
    let addr = serve(handle, app)?;
    Ok((format!("http://{addr}"), calls))
}

fn serve(handle: &tokio::runtime::Handle, app: Router) -> anyhow::Result<SocketAddr> {
    let listener = handle.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    handle.spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("faults: a test server stopped: {error}");
        }
    });
    Ok(addr)
}
