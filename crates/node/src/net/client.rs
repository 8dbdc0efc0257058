//! Outbound calls: XML-RPC to peers and plain HTTP GETs, each with a timeout, a size cap, an
//! address policy and a share of a global memory budget.
//!
//! Every byte this node asks another machine for goes through [`Client`], so that no call can
//! hang forever or fill memory: connects time out, every call carries its own deadline, a
//! response body is read up to a cap and refused beyond it, and the bytes of all answers in
//! flight together stay within one budget. Requests to addresses a peer or caller chose follow
//! [`Trust::Peer`]: the node's [`Policy`], no redirects; what the owner asked for follows
//! [`Trust::Owner`]: a few redirects, never from https to http. What the owner adds to a request
//! (`--header`, `user:password@` in the URL) goes only to the origin (scheme, host, port) of the
//! URL the request was made for: the client follows an owner's redirects itself and leaves them
//! off every hop after one that changed origin, unless the owner said to trust where the
//! redirects lead (`--location-trusted`, as curl's). The client also counts the messages it
//! sends, which the search benchmark reports.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use shoal_xmlrpc::{Fault, Value};
use tokio::sync::Semaphore;

use super::policy::{Policy, Resolver};

/// Whose choice a request's address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// A peer or a caller named it: the node's address policy, no redirects.
    Peer,
    /// The owner named it: any address but the never-legitimate ones, a few redirects.
    Owner,
}

/// Most redirects followed on an owner's URL.
const MAX_REDIRECTS: usize = 5;

/// Why an outbound call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{url} answered with {fault}")]
    Fault { url: String, fault: Fault },
    #[error("calling {url} timed out after {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("calling {url} failed: {source}")]
    Transport { url: String, source: SendError },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} sent a response larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url} sent an invalid XML-RPC response: {source}")]
    Decode { url: String, source: shoal_xmlrpc::DecodeError },
    #[error("{url} is not an address this node may contact")]
    Refused { url: String },
    #[error("too many answers in flight; {url} was not read")]
    Busy { url: String },
    #[error("{url} gave an answer to {method} that does not fit it")]
    Unexpected { url: String, method: &'static str },
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

/// How a [`Client`] behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Addresses that peers and callers may point this node at.
    pub policy: Policy,
    /// Bytes of answers that may be in flight at once, across all calls.
    pub budget: usize,
    /// Certificate authorities trusted besides the platform's (`--ca-cert`).
    pub extra_roots: Vec<reqwest::Certificate>,
    /// Headers sent with the requests the owner asked for (`--header`), only to the origin of
    /// the URL each request is made for: never to peers, never after a redirect to another
    /// origin (unless `location_trusted`).
    pub owner_headers: reqwest::header::HeaderMap,
    /// Send `owner_headers` and a URL's credentials on after redirects to other origins too
    /// (`--location-trusted`).
    pub location_trusted: bool,
    /// The iroh endpoint that reaches nodes named `iroh://<id>` (none: such peers are refused).
    pub iroh: Option<Arc<super::iroh::Iroh>>,
}

impl Default for ClientOptions {
    /// The owner's client: owner trust everywhere, no extra roots or headers.
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(3),
            policy: Policy::OWNER,
            budget: 1 << 30,
            extra_roots: Vec::new(),
            owner_headers: reqwest::header::HeaderMap::new(),
            location_trusted: false,
            iroh: None,
        }
    }
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Http(reqwest::Error),
    #[error("{0}")]
    Iroh(String),
    /// A redirect was refused (an owner's URL only): too many, from https to http, or to an
    /// address that is never contacted.
    #[error("{0}")]
    Redirect(String),
}

impl SendError {
    /// True when a redirect was refused (an owner's URL only).
    pub fn is_redirect(&self) -> bool {
        matches!(self, SendError::Redirect(_)) || matches!(self, SendError::Http(e) if e.is_redirect())
    }
}

/// What an owner's request carries to the origin it was made for, and how its redirects are
/// followed (see the module's doc).
struct OwnerHops {
    /// `--header`s.
    headers: reqwest::header::HeaderMap,
    /// `--location-trusted`: they go on to other origins too.
    trusted: bool,
}

impl OwnerHops {
    /// Sends `request` and follows its redirects: at most [`MAX_REDIRECTS`], never from https
    /// down to http, never to an address that is never contacted. The owner's headers and the
    /// URL's credentials go with the first request and with each hop on the same origin, until
    /// a hop leaves it; unless `trusted`, nothing of them goes further.
    async fn follow(self, client: reqwest::Client, mut request: reqwest::Request) -> Result<reqwest::Response, SendError> {
        use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
        let named = request.url().origin();
        // reqwest has turned the URL's `user:password@` into an Authorization header: it is the
        // named origin's, like the owner's headers (and, as before, wins over an `-H` one).
        let mut own = self.headers;
        if let Some(credentials) = request.headers_mut().remove(AUTHORIZATION) {
            own.insert(AUTHORIZATION, credentials);
        }
        let mut left_origin = false;
        let mut was_https = request.url().scheme() == "https";
        for hop in 0..=MAX_REDIRECTS {
            let Some(mut this) = request.try_clone() else {
                // A streamed body cannot be sent twice: this request is not followed.
                Self::add(&mut request, &own);
                return client.execute(request).await.map_err(SendError::Http);
            };
            if self.trusted || (!left_origin && this.url().origin() == named) {
                Self::add(&mut this, &own);
            }
            let response = client.execute(this).await.map_err(SendError::Http)?;
            let status = response.status().as_u16();
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                return Ok(response);
            }
            let Some(mut next) = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| request.url().join(l).ok())
            else {
                return Ok(response);
            };
            if hop == MAX_REDIRECTS {
                return Err(SendError::Redirect("too many redirects".into()));
            }
            if next.scheme() == "http" && was_https {
                return Err(SendError::Redirect("refused a redirect from https to http".into()));
            }
            if !matches!(next.scheme(), "http" | "https") {
                return Err(SendError::Redirect(format!("refused a redirect to a {} URL", next.scheme())));
            }
            let literal = match next.host() {
                Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
                _ => None,
            };
            if literal.is_some_and(|ip| !Policy::OWNER.allows(ip)) {
                return Err(SendError::Redirect("refused a redirect to an address shoal never contacts".into()));
            }
            // Credentials written into a Location are not the user's: they are dropped.
            let _ = next.set_username("");
            let _ = next.set_password(None);
            was_https |= next.scheme() == "https";
            left_origin |= next.origin() != named;
            // The method after a redirect, as browsers and curl do: 303 asks for a GET (a HEAD
            // stays a HEAD); 301 and 302 turn a POST into a GET.
            let method = request.method().clone();
            if (status == 303 && method != reqwest::Method::HEAD) || (matches!(status, 301 | 302) && method == reqwest::Method::POST) {
                *request.method_mut() = reqwest::Method::GET;
                *request.body_mut() = None;
                request.headers_mut().remove(CONTENT_TYPE);
                request.headers_mut().remove(CONTENT_LENGTH);
            }
            *request.url_mut() = next;
        }
        Err(SendError::Redirect("too many redirects".into()))
    }

    /// Adds the owner's headers the request does not set itself.
    fn add(request: &mut reqwest::Request, own: &reqwest::header::HeaderMap) {
        for name in own.keys() {
            if !request.headers().contains_key(name) {
                for value in own.get_all(name) {
                    request.headers_mut().append(name.clone(), value.clone());
                }
            }
        }
    }
}

/// A request ready to go, over TCP or iroh (see [`Client::request`]).
pub struct Pending {
    builder: reqwest::RequestBuilder,
    iroh: Option<Arc<super::iroh::Iroh>>,
    timeout: Option<Duration>,
    /// For an owner's request over TCP: its redirects, followed by [`OwnerHops`].
    owner: Option<OwnerHops>,
}

impl Pending {
    /// Adds a header.
    pub fn header<K, V>(mut self, key: K, value: V) -> Self
    where
        reqwest::header::HeaderName: TryFrom<K>,
        <reqwest::header::HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        reqwest::header::HeaderValue: TryFrom<V>,
        <reqwest::header::HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        self.builder = self.builder.header(key, value);
        self
    }

    /// Sets a body.
    pub fn body(mut self, body: impl Into<reqwest::Body>) -> Self {
        self.builder = self.builder.body(body);
        self
    }

    /// Gives up when no response came within `timeout` (over TCP also when the body takes longer).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.builder = self.builder.timeout(timeout);
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request.
    pub async fn send(self) -> Result<reqwest::Response, SendError> {
        let Some(iroh) = self.iroh else {
            let Some(owner) = self.owner else {
                return self.builder.send().await.map_err(SendError::Http);
            };
            let (client, request) = self.builder.build_split();
            return owner.follow(client, request.map_err(SendError::Http)?).await;
        };
        let request = self.builder.build().map_err(SendError::Http)?;
        let sent = iroh.send(request);
        match self.timeout {
            Some(limit) => tokio::time::timeout(limit, sent)
                .await
                .map_err(|_| SendError::Iroh("timed out".into()))?,
            None => sent.await,
        }
        .map_err(SendError::Iroh)
    }
}

/// Reads the certificate authorities in a PEM file (one or more `CERTIFICATE` blocks), as
/// curl's `--cacert` does. The error says which file and what is wrong with it.
pub fn load_ca_der(path: &std::path::Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("reading the CA file {}: {e}", path.display()))?;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the CA file {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("the CA file {} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// [`load_ca_der`], as roots for the HTTP client.
pub fn load_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    http_roots(&load_ca_der(path)?).map_err(|e| format!("the CA file {}: {e}", path.display()))
}

/// Certificates (DER) as roots for the HTTP client.
pub fn http_roots(ders: &[rustls::pki_types::CertificateDer<'static>]) -> Result<Vec<reqwest::Certificate>, String> {
    ders.iter()
        .map(|der| reqwest::Certificate::from_der(der).map_err(|e| e.to_string()))
        .collect()
}

/// Parses a `--header 'Name: value'` argument.
pub fn parse_header(text: &str) -> Result<(reqwest::header::HeaderName, reqwest::header::HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not a header like 'Name: value'"))?;
    let name = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a valid header name", name.trim()))?;
    if matches!(
        name,
        reqwest::header::HOST | reqwest::header::RANGE | reqwest::header::CONTENT_LENGTH | reqwest::header::TRANSFER_ENCODING
    ) {
        return Err(format!("the {name} header is set by shoal itself"));
    }
    let value =
        reqwest::header::HeaderValue::from_str(value.trim()).map_err(|_| format!("the value of {name} is not a valid header value"))?;
    Ok((name, value))
}

/// Why a request failed, in one line for a person: a TLS failure names the reason (such as
/// `certificate not trusted: unknown issuer`); no URL (and so no credentials) is in it.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    if let Some(tls) = tls_failure(error) {
        return tls;
    }
    let error = match error.downcast_ref::<SendError>() {
        Some(SendError::Iroh(text) | SendError::Redirect(text)) => return text.clone(),
        Some(SendError::Http(inner)) => inner,
        None => match error.downcast_ref::<reqwest::Error>() {
            Some(inner) => inner,
            None => return error.to_string(),
        },
    };
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    // The innermost cause is the useful one ("Connection refused"), the outer ones are generic.
    while let Some(cause) = source {
        text = cause.to_string();
        source = cause.source();
    }
    if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        format!("could not connect: {text}")
    } else {
        text
    }
}

/// The TLS failure behind `error`, described, when there is one: such an error will not go
/// away by retrying.
pub fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    // Bounded: error chains are short, and a cycle is impossible in owned sources.
    for _ in 0..16 {
        let current = next?;
        if let Some(e) = current.downcast_ref::<rustls::Error>() {
            return Some(describe_tls(e));
        }
        // An io::Error's `source` skips the error it wraps: step into it instead.
        let wrapped = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        next = wrapped.or_else(|| current.source());
    }
    None
}

fn describe_tls(error: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => "certificate not trusted: unknown issuer (give its CA with --ca-cert)".into(),
            C::BadSignature => "certificate not trusted: bad signature".into(),
            C::Expired | C::ExpiredContext { .. } => "certificate expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate not valid yet".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => "certificate not valid for this host name".into(),
            C::Revoked => "certificate revoked".into(),
            other => format!("certificate refused: {other:?}"),
        },
        other => format!("TLS failed: {other}"),
    }
}

/// A shared HTTP client for XML-RPC calls and downloads.
#[derive(Clone)]
pub struct Client {
    peer: reqwest::Client,
    /// Follows no redirect itself: [`OwnerHops`] does.
    owner: reqwest::Client,
    owner_headers: reqwest::header::HeaderMap,
    location_trusted: bool,
    policy: Policy,
    budget: Arc<Semaphore>,
    metrics: super::metrics::Metrics,
    iroh: Option<Arc<super::iroh::Iroh>>,
}

/// Builds one reqwest client. TLS is rustls; the roots are the platform's (which honours
/// `SSL_CERT_FILE` and `SSL_CERT_DIR`) plus `extra_roots`. A machine with no CA certificates at
/// all still gets a client, trusting only `extra_roots`. There is no way to turn verification off.
fn build(options: &ClientOptions, policy: Policy, proxies: bool) -> reqwest::Client {
    let builder = || {
        let builder = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Resolver::shared(policy))
            .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")));
        if proxies { builder } else { builder.no_proxy() }
    };
    match builder().tls_certs_merge(options.extra_roots.iter().cloned()).build() {
        Ok(client) => client,
        Err(error) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(%error, "no usable CA certificates on this machine; https trusts only --ca-cert");
            });
            builder()
                .tls_certs_only(options.extra_roots.iter().cloned())
                .build()
                .expect("a TLS client with explicit roots")
        }
    }
}

impl Client {
    /// The owner's client (the CLI talking to its node, `shoal get`): owner trust for every call.
    pub fn new(connect_timeout: Duration) -> Self {
        Client::with_options(ClientOptions {
            connect_timeout,
            ..ClientOptions::default()
        })
    }

    /// Peers' URLs are contacted directly; the owner's go through the proxies of the
    /// environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`), as curl's do.
    pub fn with_options(options: ClientOptions) -> Self {
        Client {
            peer: build(&options, options.policy, false),
            owner: build(&options, Policy::OWNER, true),
            owner_headers: options.owner_headers.clone(),
            location_trusted: options.location_trusted,
            policy: options.policy,
            budget: Arc::new(Semaphore::new((options.budget / 1024).clamp(1, Semaphore::MAX_PERMITS))),
            metrics: super::metrics::Metrics::default(),
            iroh: options.iroh.clone(),
        }
    }

    /// The iroh endpoint, when this client has one.
    pub fn iroh(&self) -> Option<&Arc<super::iroh::Iroh>> {
        self.iroh.as_ref()
    }

    /// Remembers the relay and addresses a ticket gives for its node, keeping only addresses
    /// this client's policy for `trust` allows. A stranger's relay is kept only when it is one
    /// of the relays this node uses itself, or an address literal the policy allows: iroh
    /// opens a connection to whatever relay it is told of, and a host name could lead
    /// anywhere once resolved. Does nothing for an http URL or a bare id.
    pub fn learn_ticket(&self, raw: &str, trust: Trust) {
        let (Some(iroh), Ok(mut ticket)) = (&self.iroh, crate::proto::ticket::Ticket::parse(raw)) else {
            return;
        };
        let policy = match trust {
            Trust::Peer => self.policy,
            Trust::Owner => Policy::OWNER,
        };
        ticket.addrs.retain(|a| policy.allows(a.ip()));
        if trust == Trust::Peer
            && let Some(relay) = ticket.relay.take()
        {
            if iroh.uses_relay(&relay) || relay_literal_allowed(&relay, policy) {
                ticket.relay = Some(relay);
            } else {
                tracing::debug!(%relay, "a stranger's ticket names a relay this node does not use; ignored");
            }
        }
        iroh.learn(&ticket);
    }

    /// Forgets what [`Client::learn_ticket`] remembered for the node `raw` names.
    pub fn forget_ticket(&self, raw: &str) {
        if let (Some(iroh), Ok(ticket)) = (&self.iroh, crate::proto::ticket::Ticket::parse(raw)) {
            iroh.forget(&ticket.id);
        }
    }

    /// The HTTP client for requests of the given trust. Callers check IP literals with
    /// [`Client::check`] first (the resolver sees only host names). Neither follows redirects
    /// nor adds the owner's headers: [`Client::request`] does both for the owner.
    pub fn http(&self, trust: Trust) -> &reqwest::Client {
        match trust {
            Trust::Peer => &self.peer,
            Trust::Owner => &self.owner,
        }
    }

    /// True when the owner's requests carry headers (`--header`) that stay with the origin
    /// they are made for (no `--location-trusted`).
    pub fn keeps_headers_to_origin(&self) -> bool {
        !self.owner_headers.is_empty() && !self.location_trusted
    }

    /// True when the owner trusts where redirects lead with headers and credentials
    /// (`--location-trusted`).
    pub fn location_trusted(&self) -> bool {
        self.location_trusted
    }

    /// Refuses a URL whose host is an IP literal the policy for `trust` forbids.
    pub fn check(&self, url: &reqwest::Url, trust: Trust) -> Result<(), CallError> {
        let policy = match trust {
            Trust::Peer => self.policy,
            Trust::Owner => Policy::OWNER,
        };
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(CallError::Refused { url: url.to_string() }),
        };
        if url.scheme() == crate::proto::ticket::SCHEME && self.iroh.is_some() {
            return Ok(());
        }
        if ip.is_some_and(|ip| !policy.allows(ip)) || !matches!(url.scheme(), "http" | "https") {
            return Err(CallError::Refused { url: url.to_string() });
        }
        Ok(())
    }

    /// A GET (or HEAD) request for `url`, checked against the policy.
    pub fn request(&self, method: reqwest::Method, url: &reqwest::Url, trust: Trust) -> Result<Pending, CallError> {
        self.check(url, trust)?;
        let iroh = self.iroh.clone().filter(|_| url.scheme() == crate::proto::ticket::SCHEME);
        let owner = (trust == Trust::Owner).then(|| OwnerHops {
            headers: self.owner_headers.clone(),
            trusted: self.location_trusted,
        });
        Ok(Pending {
            builder: self.http(trust).request(method, url.clone()),
            iroh,
            timeout: None,
            owner,
        })
    }

    /// How many requests this client has sent.
    pub fn messages_sent(&self) -> u64 {
        self.metrics.messages_sent.get()
    }

    /// The node's counters (shared by every clone of this client).
    pub fn metrics(&self) -> &super::metrics::Metrics {
        &self.metrics
    }

    /// Reads a response body, refusing it once it passes `limit` bytes or the global budget of
    /// answers in flight is spent.
    pub async fn read_capped(&self, response: reqwest::Response, url: &str, limit: usize) -> Result<Vec<u8>, CallError> {
        read_capped_within(response, url, limit, Some(&self.budget)).await
    }

    /// Calls `method` on the XML-RPC server at `url`, waiting at most `timeout` and reading at
    /// most `limit` bytes of response.
    pub async fn call(&self, url: &str, method: &str, params: &[Value], timeout: Duration, limit: usize) -> Result<Value, CallError> {
        self.call_as(url, method, params, timeout, limit, Trust::Peer).await
    }

    /// [`Client::call`] with the given trust.
    pub async fn call_as(
        &self,
        url: &str,
        method: &str,
        params: &[Value],
        timeout: Duration,
        limit: usize,
        trust: Trust,
    ) -> Result<Value, CallError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| CallError::Refused { url: url.to_string() })?;
        let request = self.request(reqwest::Method::POST, &parsed, trust)?;
        self.metrics.messages_sent.inc();
        let body = shoal_xmlrpc::encode_call(method, params);
        let work = async {
            let response = request
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
            let bytes = self.read_capped(response, url, limit).await?;
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

/// Reads a response body, refusing it once it passes `limit` bytes (no shared budget: for a
/// download's own bounded reads).
pub async fn read_body(response: reqwest::Response, url: &str, limit: usize) -> Result<Vec<u8>, CallError> {
    read_capped_within(response, url, limit, None).await
}

/// Reads a response body, refusing it once it passes `limit` bytes or, with a budget, once the
/// budget's permits (KiB) run out; the permits are held while the body is read.
async fn read_capped_within(
    response: reqwest::Response,
    url: &str,
    limit: usize,
    budget: Option<&Arc<Semaphore>>,
) -> Result<Vec<u8>, CallError> {
    if response.content_length().is_some_and(|len| len > limit as u64) {
        return Err(CallError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    // The chunks are kept as they came (no doubling buffer) and joined once at the end, so the
    // memory held is the bytes counted against the budget.
    let mut chunks: Vec<bytes::Bytes> = Vec::new();
    let mut len = 0usize;
    let mut held: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| CallError::Transport {
            url: url.to_string(),
            source: SendError::Http(source),
        })?;
        if len + chunk.len() > limit {
            return Err(CallError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        if let Some(budget) = budget {
            let want = ((len + chunk.len()).div_ceil(1024) as u32).saturating_sub(held.as_ref().map_or(0, |p| p.num_permits() as u32));
            if want > 0 {
                let more = budget
                    .clone()
                    .try_acquire_many_owned(want)
                    .map_err(|_| CallError::Busy { url: url.to_string() })?;
                match &mut held {
                    Some(permit) => permit.merge(more),
                    None => held = Some(more),
                }
            }
        }
        len += chunk.len();
        chunks.push(chunk);
    }
    let mut out = Vec::with_capacity(len);
    for chunk in chunks {
        out.extend_from_slice(&chunk);
    }
    drop(held);
    Ok(out)
}

/// True when `relay` names its host by an address the policy allows (a host name is never
/// enough: it is resolved by iroh, past the policy's resolver).
pub(crate) fn relay_literal_allowed(relay: &str, policy: Policy) -> bool {
    let Ok(url) = url::Url::parse(relay) else { return false };
    match url.host() {
        Some(url::Host::Ipv4(ip)) => policy.allows(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => policy.allows(std::net::IpAddr::V6(ip)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_parsed_and_the_ones_shoal_sets_are_refused() {
        let (name, value) = parse_header("Authorization:  Bearer abc ").unwrap();
        assert_eq!((name.as_str(), value.to_str().unwrap()), ("authorization", "Bearer abc"));
        assert!(parse_header("no colon here").unwrap_err().contains("Name: value"));
        assert!(parse_header("bad name: x").unwrap_err().contains("not a valid header name"));
        assert!(parse_header("X-Ok: line\nbreak").unwrap_err().contains("not a valid header value"));
        for taken in ["Host: a", "range: bytes=0-1", "Content-Length: 3", "Transfer-Encoding: chunked"] {
            assert!(parse_header(taken).unwrap_err().contains("set by shoal"), "{taken}");
        }
    }
}
