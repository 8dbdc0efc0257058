//! The second transport: iroh. A node has an ed25519 key; other nodes dial it by its id over
//! QUIC, directly (with hole punching and port mapping) or through a relay that forwards
//! encrypted packets it cannot read. Every stream carries one HTTP/1.1 exchange, so the same
//! routes and handlers serve both transports; a peer named `iroh://<id>` is reached here and
//! anything else over TCP.
//!
//! The key proves the peer: the QUIC handshake fails unless the remote holds the private key of
//! the id dialled, whatever addresses a ticket gave.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::iroh::address_lookup::MemoryLookup;
use ::iroh::endpoint::{Connection, PortmapperConfig, presets};
use ::iroh::{Endpoint, EndpointAddr, EndpointId, RelayMode, RelayUrl, SecretKey, TransportAddr, Watcher};
use iroh_mdns_address_lookup::{DiscoveryEvent, MdnsAddressLookup};

use crate::proto::ticket::Ticket;

/// The protocol name every shoal connection negotiates.
pub const ALPN: &[u8] = b"shoal/1";
/// The mDNS service name shoal nodes announce on the LAN.
pub const MDNS_SERVICE: &str = "shoal";
/// The close code of a connection refused after its handshake for want of a place (the caps of
/// `http::iroh`); 429 as in HTTP.
pub const CLOSE_BUSY: u32 = 429;
/// The close code of a connection closed because it had no stream open for a while
/// (`http::iroh`): the node took no request sent on it, so the request may go again on a new
/// connection; 408 as in HTTP.
pub const CLOSE_IDLE: u32 = 408;
/// Longest wait for a connection to a node (through a relay, hole punching included).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Dials to a node that refuses the connection before giving up (50 ms, then 200 ms apart).
const DIAL_ATTEMPTS: usize = 3;
/// Size of the connection table at which closed connections are dropped from it. Live ones stay
/// (the table holds only nodes this one dialled: its peers and the holders of its downloads).
const MAX_CACHED: usize = 512;
/// Most nodes whose ticket addresses are remembered; the oldest are forgotten first.
const MAX_HINTS: usize = 1024;

/// What the endpoint may use to reach and be reached.
#[derive(Debug, Clone)]
pub struct IrohOptions {
    /// Relays given explicitly (`--relay`); when empty, the public ones if allowed.
    pub relays: Vec<String>,
    /// iroh's public relays (number 0's), when no relay is given.
    pub public_relays: bool,
    /// Port mapping on the local router (UPnP, PCP, NAT-PMP).
    pub portmap: bool,
    /// Finding nodes on the LAN (mDNS), and being found.
    pub mdns: bool,
    /// Publishing and resolving addresses through iroh's public DNS (so a bare id can be dialled).
    pub public_lookup: bool,
    /// Publishing and resolving addresses on the Mainline DHT, when the node runs a DHT node
    /// (`--address-lookup dht`).
    pub dht_lookup: bool,
    /// The UDP address to bind (by default any address, a free port).
    pub bind: Option<SocketAddr>,
    /// Certificate authorities trusted for relays besides the built-in web roots (`--ca-cert`:
    /// a group's own relay with its own CA).
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl IrohOptions {
    /// Everything iroh offers: public relays, address lookup, port mapping, mDNS.
    pub fn everything() -> Self {
        IrohOptions {
            relays: Vec::new(),
            public_relays: true,
            portmap: true,
            mdns: true,
            public_lookup: true,
            dht_lookup: true,
            bind: None,
            extra_roots: Vec::new(),
        }
    }

    /// Nothing that reaches past the peers and relays given explicitly (`--local-only`).
    pub fn local_only() -> Self {
        IrohOptions {
            relays: Vec::new(),
            public_relays: false,
            portmap: false,
            mdns: false,
            public_lookup: false,
            dht_lookup: true,
            bind: None,
            extra_roots: Vec::new(),
        }
    }

    fn relay_mode(&self) -> Result<RelayMode, String> {
        if !self.relays.is_empty() {
            let urls = self
                .relays
                .iter()
                .map(|r| r.parse::<RelayUrl>().map_err(|_| format!("{r:?} is not a relay URL")))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(RelayMode::custom(urls));
        }
        Ok(if self.public_relays {
            RelayMode::Default
        } else {
            RelayMode::Disabled
        })
    }
}

/// QUIC settings: iroh's, with the ACK frequency extension asking the receiver of bulk data
/// to acknowledge every 16th packet rather than every second one.
fn transport_config() -> ::iroh::endpoint::QuicTransportConfig {
    let mut acks = ::iroh::endpoint::AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(15u32.into());
    ::iroh::endpoint::QuicTransportConfig::builder()
        .ack_frequency_config(Some(acks))
        .build()
}

/// Reads the node key kept at `path`, making one first if there is none. The file (64 hex
/// digits) is readable by the owner alone.
pub fn load_or_create_key(path: &std::path::Path) -> std::io::Result<SecretKey> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut bytes)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not a key (64 hex digits)"))?;
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the key file is readable by others; making it the owner's alone");
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            return Ok(SecretKey::from_bytes(&bytes));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key = SecretKey::from_bytes(&rand::random::<[u8; 32]>());
    // A new file only: two processes racing both read the winner's key afterwards.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(format!("{}\n", hex::encode(key.to_bytes())).as_bytes())?;
        file.sync_all()?;
    }
    match std::fs::hard_link(&tmp, path) {
        Ok(()) => {
            let _ = std::fs::remove_file(&tmp);
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&tmp);
            load_or_create_key(path)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The id of a key, as the 64 hex digits a peer table holds.
pub fn id_of(key: &SecretKey) -> String {
    key.public().to_string()
}

/// A bound iroh endpoint and the connections it holds.
pub struct Iroh {
    endpoint: Endpoint,
    memory: MemoryLookup,
    /// The ids in `memory`, oldest first (bounded by [`MAX_HINTS`]).
    hinted: Mutex<std::collections::VecDeque<EndpointId>>,
    mdns: Option<MdnsAddressLookup>,
    with_relays: bool,
    /// The relays this endpoint uses (the owner's `--relay`s, or the public ones).
    relays: ::iroh::RelayMap,
    /// One slot per node dialled: the lock makes concurrent requests share one dial.
    conns: Mutex<HashMap<EndpointId, Arc<tokio::sync::Mutex<Option<Connection>>>>>,
}

impl std::fmt::Debug for Iroh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iroh").field("id", &self.endpoint.id()).finish()
    }
}

impl Iroh {
    /// Binds an endpoint with `key`. With `accept`, it takes connections for [`ALPN`].
    pub async fn bind(key: SecretKey, options: &IrohOptions, accept: bool) -> Result<Iroh, String> {
        Iroh::bind_with_dht(key, options, accept, None).await
    }

    /// [`Iroh::bind`], with node addresses published and resolved on `dht` too (when
    /// `options.dht_lookup`); an endpoint that accepts publishes its own.
    pub async fn bind_with_dht(
        key: SecretKey,
        options: &IrohOptions,
        accept: bool,
        dht: Option<std::sync::Arc<super::dht::Dht>>,
    ) -> Result<Iroh, String> {
        let memory = MemoryLookup::new();
        let relay_mode = options.relay_mode()?;
        let with_relays = !matches!(relay_mode, RelayMode::Disabled);
        let relays = relay_mode.relay_map();
        let mut builder = Endpoint::builder(presets::Minimal)
            .secret_key(key.clone())
            .relay_mode(relay_mode)
            .address_lookup(memory.clone());
        if accept {
            builder = builder.alpns(vec![ALPN.to_vec()]);
        }
        builder = builder.transport_config(transport_config());
        if !options.extra_roots.is_empty() {
            builder = builder.ca_tls_config(::iroh::tls::CaTlsConfig::default().with_extra_roots(options.extra_roots.iter().cloned()));
        }
        if options.public_lookup {
            builder = builder
                .address_lookup(::iroh::address_lookup::PkarrPublisher::n0_dns())
                .address_lookup(::iroh::address_lookup::PkarrResolver::n0_dns())
                .address_lookup(::iroh::address_lookup::DnsAddressLookup::n0_dns());
        }
        if let Some(dht) = dht.filter(|_| options.dht_lookup) {
            let relays: Vec<String> = relays.urls::<Vec<RelayUrl>>().iter().map(|r| r.to_string()).collect();
            let publisher = accept.then(|| key.clone());
            builder = builder.address_lookup(super::dht_lookup::DhtAddressLookup::new(dht, publisher, relays));
        }
        if !options.portmap {
            builder = builder.portmapper_config(PortmapperConfig::Disabled);
        }
        let mdns = if options.mdns {
            let mdns = MdnsAddressLookup::builder()
                .service_name(MDNS_SERVICE)
                .build(key.public())
                .map_err(|e| format!("starting LAN discovery: {e}"))?;
            builder = builder.address_lookup(mdns.clone());
            Some(mdns)
        } else {
            None
        };
        if let Some(bind) = options.bind {
            builder = builder
                .clear_ip_transports()
                .bind_addr(bind)
                .map_err(|e| format!("the iroh address {bind}: {e}"))?;
        }
        let endpoint = builder.bind().await.map_err(|e| format!("starting the iroh endpoint: {e}"))?;
        Ok(Iroh {
            endpoint,
            memory,
            hinted: Mutex::new(std::collections::VecDeque::new()),
            mdns,
            with_relays,
            relays,
            conns: Mutex::new(HashMap::new()),
        })
    }

    /// The endpoint (for the accept loop).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// This node's id, as 64 hex digits.
    pub fn id(&self) -> String {
        self.endpoint.id().to_string()
    }

    /// Waits (at most `wait`) until the endpoint knows a direct address and, when it has
    /// relays, its home relay, so that a ticket made afterwards is complete.
    pub async fn settle(&self, wait: Duration) {
        let relays = self.with_relays;
        let mut watch = self.endpoint.watch_addr();
        let _ = tokio::time::timeout(wait, async {
            loop {
                let addr = watch.get();
                if addr.ip_addrs().next().is_some() && (!relays || addr.relay_urls().next().is_some()) {
                    return;
                }
                if watch.updated().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// This node's ticket: its id, home relay and up to six direct addresses (IPv4 first).
    pub fn ticket(&self) -> Ticket {
        let addr = self.endpoint.addr();
        let mut ips: Vec<SocketAddr> = addr.ip_addrs().copied().collect();
        // A socket bound to every address is reachable on loopback too (nodes on one machine).
        for bound in self.endpoint.bound_sockets() {
            if bound.ip().is_unspecified() {
                let loopback = if bound.is_ipv4() {
                    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
                } else {
                    std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
                };
                ips.push(SocketAddr::new(loopback, bound.port()));
            } else if bound.ip().is_loopback() {
                ips.push(bound);
            }
        }
        ips.sort_by_key(|a| (a.is_ipv6(), a.ip().is_loopback(), *a));
        ips.dedup();
        Ticket {
            id: *self.endpoint.id().as_bytes(),
            relay: addr.relay_urls().next().map(|r| r.to_string()),
            addrs: ips.into_iter().take(crate::proto::ticket::MAX_ADDRS).collect(),
        }
    }

    /// Whether `url` is one of the relays this endpoint itself uses.
    pub fn uses_relay(&self, url: &str) -> bool {
        url.parse::<RelayUrl>().is_ok_and(|url| self.relays.contains(&url))
    }

    /// Remembers where the node of `ticket` may be found (nothing for a bare id).
    pub fn learn(&self, ticket: &Ticket) {
        if ticket.relay.is_none() && ticket.addrs.is_empty() {
            return;
        }
        let Ok(id) = EndpointId::from_bytes(&ticket.id) else { return };
        let mut addrs: Vec<TransportAddr> = ticket.addrs.iter().map(|a| TransportAddr::Ip(*a)).collect();
        if let Some(relay) = ticket.relay.as_deref().and_then(|r| r.parse::<RelayUrl>().ok()) {
            addrs.push(TransportAddr::Relay(relay));
        }
        let mut hinted = self.hinted.lock().unwrap_or_else(|p| p.into_inner());
        if !hinted.contains(&id) {
            hinted.push_back(id);
            if hinted.len() > MAX_HINTS
                && let Some(oldest) = hinted.pop_front()
            {
                self.memory.remove_endpoint_info(oldest);
            }
        }
        self.memory.add_endpoint_info(EndpointAddr::from_parts(id, addrs));
    }

    /// Forgets the addresses [`Iroh::learn`] remembered for `id`.
    pub fn forget(&self, id: &[u8; 32]) {
        if let Ok(id) = EndpointId::from_bytes(id) {
            self.hinted.lock().unwrap_or_else(|p| p.into_inner()).retain(|known| *known != id);
            self.memory.remove_endpoint_info(id);
        }
    }

    /// The nodes found on the LAN, as they come and go.
    pub async fn lan_events(&self) -> Option<impl futures_util::Stream<Item = LanEvent> + Unpin + use<>> {
        use futures_util::StreamExt;
        let stream = self.mdns.as_ref()?.subscribe().await;
        Some(stream.map(|event| match event {
            DiscoveryEvent::Discovered { endpoint_info, .. } => LanEvent::Found(endpoint_info.endpoint_id.to_string()),
            DiscoveryEvent::Expired { endpoint_id } => LanEvent::Gone(endpoint_id.to_string()),
            _ => LanEvent::Other,
        }))
    }

    /// An open connection to `id`, dialling it when there is none.
    pub async fn connection(&self, id: EndpointId) -> Result<Connection, String> {
        let slot = {
            let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
            if conns.len() >= MAX_CACHED {
                conns.retain(|_, slot| {
                    slot.try_lock()
                        .is_ok_and(|c| c.as_ref().is_some_and(|c| c.close_reason().is_none()))
                });
            }
            conns.entry(id).or_default().clone()
        };
        let mut held = slot.lock().await;
        if let Some(conn) = held.as_ref()
            && conn.close_reason().is_none()
        {
            return Ok(conn.clone());
        }
        let conn = tokio::time::timeout(DIAL_TIMEOUT, self.dial(id))
            .await
            .map_err(|_| format!("no connection to node {} within {DIAL_TIMEOUT:?}", id.fmt_short()))?
            .map_err(|e| format!("connecting to node {}: {e}", id.fmt_short()))?;
        *held = Some(conn.clone());
        Ok(conn)
    }

    /// Dials `id`, trying again a few times, shortly after, when the node refuses the
    /// connection before its handshake: a node whose places are taken (strangers flooding it)
    /// still has a few kept for its owner's keys, which strangers' handshakes in progress hold
    /// only for moments.
    async fn dial(&self, id: EndpointId) -> Result<Connection, ::iroh::endpoint::ConnectError> {
        let mut wait = Duration::from_millis(50);
        for _ in 1..DIAL_ATTEMPTS {
            match self.endpoint.connect(EndpointAddr::new(id), ALPN).await {
                Err(error) if refused(&error) => {
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                }
                dialled => return dialled,
            }
        }
        self.endpoint.connect(EndpointAddr::new(id), ALPN).await
    }

    /// How the connection to `id` runs now: `direct`, `relay`, or `None` when there is none.
    pub fn path(&self, id: &str) -> Option<&'static str> {
        let id: EndpointId = id.parse().ok()?;
        let slot = self.conns.lock().unwrap_or_else(|p| p.into_inner()).get(&id)?.clone();
        let conn = slot.try_lock().ok()?.clone()?;
        let paths = conn.paths();
        let selected = paths.iter().find(|p| p.is_selected())?;
        Some(if selected.is_relay() { "relay" } else { "direct" })
    }

    /// Sends one HTTP request to the node named by the request's `iroh://<id>` URL, on a new
    /// stream of the (shared) connection to it. When the node closed that connection as idle
    /// just as the request went out (it took none of it), the request goes once more on a new
    /// connection.
    pub async fn send(&self, request: reqwest::Request) -> Result<reqwest::Response, String> {
        let host = request.url().host_str().unwrap_or_default();
        let id: EndpointId = host.parse().map_err(|_| "not a node id".to_string())?;
        let again = request.try_clone();
        let conn = self.connection(id).await?;
        match Self::send_on(&conn, id, request).await {
            Err(error) if closed_idle(&conn) => match again {
                Some(again) => Self::send_on(&self.connection(id).await?, id, again).await,
                None => Err(error),
            },
            sent => sent,
        }
    }

    async fn send_on(conn: &Connection, id: EndpointId, request: reqwest::Request) -> Result<reqwest::Response, String> {
        let (send, recv) = conn.open_bi().await.map_err(|e| format!("opening a stream: {e}"))?;
        let io = hyper_util::rt::TokioIo::new(tokio::io::join(recv, send));
        let (mut sender, driver) = hyper::client::conn::http1::handshake::<_, reqwest::Body>(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(error) = driver.await {
                tracing::debug!(%error, "an iroh stream ended with an error");
            }
        });
        let mut http: http::Request<reqwest::Body> = request.try_into().map_err(|e: reqwest::Error| e.to_string())?;
        let origin_form = http
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse::<http::Uri>()
            .map_err(|e| e.to_string())?;
        *http.uri_mut() = origin_form;
        let host = http::HeaderValue::from_str(&format!("{}.iroh", id)).map_err(|e| e.to_string())?;
        http.headers_mut().insert(http::header::HOST, host);
        let response = sender.send_request(http).await.map_err(|e| e.to_string())?;
        Ok(reqwest::Response::from(response.map(reqwest::Body::wrap)))
    }

    /// Closes every connection and the endpoint.
    pub async fn close(&self) {
        self.endpoint.close().await;
    }
}

/// Whether a dial failed because the node refused the connection before its handshake.
fn refused(error: &::iroh::endpoint::ConnectError) -> bool {
    use ::iroh::endpoint::{ConnectError, ConnectingError, ConnectionError, TransportErrorCode};
    matches!(
        error,
        ConnectError::Connecting {
            source: ConnectingError::ConnectionError {
                source: ConnectionError::ConnectionClosed(close),
                ..
            },
            ..
        } if close.error_code == TransportErrorCode::CONNECTION_REFUSED
    )
}

/// Whether the other side closed `conn` as idle ([`CLOSE_IDLE`]).
fn closed_idle(conn: &Connection) -> bool {
    matches!(
        conn.close_reason(),
        Some(::iroh::endpoint::ConnectionError::ApplicationClosed(close)) if close.error_code == CLOSE_IDLE.into()
    )
}

/// A change among the nodes on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LanEvent {
    /// A node (its id) announced itself.
    Found(String),
    /// A node's announcement expired.
    Gone(String),
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(n: u16) -> Ticket {
        let mut seed = [0u8; 32];
        seed[..2].copy_from_slice(&n.to_be_bytes());
        Ticket {
            id: *SecretKey::from_bytes(&seed).public().as_bytes(),
            relay: None,
            addrs: vec![SocketAddr::from(([127, 0, 0, 1], 1000 + n))],
        }
    }

    fn known(iroh: &Iroh, ticket: &Ticket) -> bool {
        iroh.memory.get_endpoint_info(EndpointId::from_bytes(&ticket.id).unwrap()).is_some()
    }

    /// A node closes a connection as idle just as a request goes out on it: the request goes
    /// again on a new connection and is answered.
    #[tokio::test]
    async fn a_request_on_a_connection_closed_as_idle_goes_again() {
        let server = Iroh::bind(SecretKey::from_bytes(&[2; 32]), &IrohOptions::local_only(), true)
            .await
            .unwrap();
        let endpoint = server.endpoint().clone();
        let serving = tokio::spawn(async move {
            // The first connection is closed as idle before any stream is taken.
            let first = endpoint.accept().await.unwrap().await.unwrap();
            first.close(CLOSE_IDLE.into(), b"idle");
            // The second is served: one answer on its first stream.
            let second = endpoint.accept().await.unwrap().await.unwrap();
            let (mut send, mut recv) = second.accept_bi().await.unwrap();
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let chunk = recv.read_chunk(1024).await.unwrap().unwrap();
                request.extend_from_slice(&chunk);
            }
            send.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
            send.finish().unwrap();
            second.closed().await;
        });
        let client = Iroh::bind(SecretKey::from_bytes(&[3; 32]), &IrohOptions::local_only(), false)
            .await
            .unwrap();
        server.settle(Duration::from_secs(5)).await;
        client.learn(&server.ticket());
        let url = format!("iroh://{}/x", server.id()).parse().unwrap();
        let request = reqwest::Request::new(reqwest::Method::GET, url);
        let response = tokio::time::timeout(Duration::from_secs(30), client.send(request))
            .await
            .expect("an answer within 30 s")
            .expect("the request is answered on a second connection");
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "ok");
        client.close().await;
        serving.abort();
        server.close().await;
    }

    /// A node refuses a connection before its handshake (its places were all taken for a
    /// moment): the dial is tried again and gets in.
    #[tokio::test]
    async fn a_refused_dial_is_tried_again() {
        let server = Iroh::bind(SecretKey::from_bytes(&[4; 32]), &IrohOptions::local_only(), true)
            .await
            .unwrap();
        let endpoint = server.endpoint().clone();
        let serving = tokio::spawn(async move {
            endpoint.accept().await.unwrap().refuse();
            // Copies of the refused attempt may still arrive over the other paths the client
            // tried: each handshake runs on its own, so a stale copy cannot hold up the retry.
            let mut handshakes = tokio::task::JoinSet::new();
            while let Some(incoming) = endpoint.accept().await {
                handshakes.spawn(async move {
                    if let Ok(conn) = incoming.await {
                        conn.closed().await;
                    }
                });
            }
        });
        let client = Iroh::bind(SecretKey::from_bytes(&[5; 32]), &IrohOptions::local_only(), false)
            .await
            .unwrap();
        server.settle(Duration::from_secs(5)).await;
        client.learn(&server.ticket());
        let id: EndpointId = server.id().parse().unwrap();
        let conn = client.connection(id).await.expect("the second dial gets in");
        assert!(conn.close_reason().is_none());
        client.close().await;
        serving.abort();
        server.close().await;
    }

    #[tokio::test]
    async fn ticket_hints_are_bounded_and_forgotten() {
        let iroh = Iroh::bind(SecretKey::from_bytes(&[1; 32]), &IrohOptions::local_only(), false)
            .await
            .unwrap();
        let first = ticket(0);
        iroh.learn(&first);
        assert!(known(&iroh, &first));
        for n in 1..=MAX_HINTS as u16 {
            iroh.learn(&ticket(n));
        }
        // One more than the bound: the oldest is gone, the newest kept.
        assert!(!known(&iroh, &first));
        assert!(known(&iroh, &ticket(MAX_HINTS as u16)));
        assert_eq!(iroh.hinted.lock().unwrap().len(), MAX_HINTS);
        let last = ticket(MAX_HINTS as u16);
        iroh.forget(&last.id);
        assert!(!known(&iroh, &last));
        iroh.close().await;
    }
}
