//! Outbound calls: XML-RPC to peers and plain HTTP GETs, each with a timeout and a size cap.
//!
//! Every byte this node asks another machine for goes through [`Client`], so that no call can
//! hang forever or fill memory: connects time out, every call carries its own deadline, and a
//! response body is read up to a cap and refused beyond it. The client also counts the messages
//! it sends, which the search benchmark reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use shoal_xmlrpc::{Fault, Value};

/// Why an outbound call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{url} answered with {fault}")]
    Fault { url: String, fault: Fault },
    #[error("calling {url} timed out after {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("calling {url} failed: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} sent a response larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url} sent an invalid XML-RPC response: {source}")]
    Decode { url: String, source: shoal_xmlrpc::DecodeError },
}

impl CallError {
    /// The fault code, when the peer answered with a fault.
    pub fn fault_code(&self) -> Option<i32> {
        match self {
            CallError::Fault { fault, .. } => Some(fault.code),
            _ => None,
        }
    }

    /// True when the peer itself is unreachable or broken (not merely without an answer).
    pub fn is_peer_failure(&self) -> bool {
        !matches!(self, CallError::Fault { .. })
    }
}

/// A shared HTTP client for XML-RPC calls and downloads.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    sent: Arc<AtomicU64>,
}

impl Client {
    pub fn new(connect_timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Client {
            http,
            sent: Arc::default(),
        }
    }

    /// The underlying HTTP client, for streaming downloads.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// How many requests this client has sent.
    pub fn messages_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Calls `method` on the XML-RPC server at `url`, waiting at most `timeout` and reading at
    /// most `limit` bytes of response.
    pub async fn call(&self, url: &str, method: &str, params: &[Value], timeout: Duration, limit: usize) -> Result<Value, CallError> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let body = shoal_xmlrpc::encode_call(method, params);
        let work = async {
            let response = self
                .http
                .post(url)
                .header("content-type", "text/xml")
                .body(body)
                .send()
                .await
                .map_err(|source| CallError::Transport {
                    url: url.to_string(),
                    source,
                })?;
            if !response.status().is_success() {
                return Err(CallError::Status {
                    url: url.to_string(),
                    status: response.status().as_u16(),
                });
            }
            let bytes = read_capped(response, url, limit).await?;
            match shoal_xmlrpc::decode_response(&bytes) {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(fault)) => Err(CallError::Fault {
                    url: url.to_string(),
                    fault,
                }),
                Err(source) => Err(CallError::Decode {
                    url: url.to_string(),
                    source,
                }),
            }
        };
        tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| {
            Err(CallError::Timeout {
                url: url.to_string(),
                after: timeout,
            })
        })
    }
}

/// Reads a response body, refusing it once it passes `limit` bytes.
pub async fn read_capped(response: reqwest::Response, url: &str, limit: usize) -> Result<Vec<u8>, CallError> {
    if response.content_length().is_some_and(|len| len > limit as u64) {
        return Err(CallError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    let mut out = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| CallError::Transport {
            url: url.to_string(),
            source,
        })?;
        if out.len() + chunk.len() > limit {
            return Err(CallError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
