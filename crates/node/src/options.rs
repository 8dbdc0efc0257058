//! Everything a node can be told, with the defaults a user gets from `shoal serve`.

use std::path::PathBuf;
use std::time::Duration;

use crate::discovery::peers::PeerOptions;
use crate::engine::EngineOptions;
pub use crate::net::dht::DhtOptions;
pub use crate::net::iroh::IrohOptions;

/// How a node runs. Built by the CLI from flags; tests build it directly.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The shared directory; created if missing.
    pub dir: PathBuf,
    /// The state directory: the redb store and the secret.
    pub state: PathBuf,
    /// The URL this node gives to others; by default its bound address (loopback for a wildcard).
    pub url: Option<String>,
    /// The owner's secret for `fetch`; by default one is made and kept in the state directory.
    pub secret: Option<String>,
    /// Peers to know from the start (`--peer` and the peers file).
    pub peers: Vec<String>,
    /// How many nodes a search may reach in a line, this one included (the seed's 6).
    pub ttl: u32,
    /// How long a search started here may take before it answers with what it has.
    pub search_deadline: Duration,
    /// Largest file content sent inside an XML-RPC answer; larger files get a fault naming the
    /// HTTP path to use.
    pub max_rpc_content: u64,
    /// Largest XML-RPC request body accepted.
    pub max_rpc_body: usize,
    /// How long a client may take to send a request's headers or an XML-RPC body.
    pub request_timeout: Duration,
    /// Most TCP connections served at once (held below the descriptor limit); further ones are
    /// closed at once. iroh connections have a budget of their own ([`Self::max_iroh_connections`]),
    /// so neither transport's callers can take the other's places.
    pub max_connections: usize,
    /// Most iroh connections from strangers at once, handshakes in progress included; further
    /// ones are refused. Apart from [`Self::max_connections`]: all of them share one UDP socket,
    /// so they cost memory, not descriptors.
    pub max_iroh_connections: usize,
    /// iroh connections kept for the owner's keys beyond [`Self::max_iroh_connections`] and the
    /// per-address and per-key caps, so that the owner gets in while strangers hold every other
    /// place.
    pub iroh_owner_reserve: usize,
    /// Most iroh connections at once from one node id (the owner's keys exempt). An honest node
    /// holds one connection to another; a command-line client one per command.
    pub max_iroh_per_key: usize,
    /// An iroh connection that has had no stream open for this long is closed; the other side
    /// dials again when it next has something to ask.
    pub iroh_idle_timeout: Duration,
    /// How often the share is scanned for added, changed and removed files.
    pub rescan_interval: Duration,
    /// How often known peers are asked for the peers they know.
    pub peer_exchange_interval: Duration,
    /// Time allowed to open a connection to a peer.
    pub connect_timeout: Duration,
    /// Backoff and dropping of failing peers.
    pub peer: PeerOptions,
    /// Cap on the rate this node serves file data at, in bytes per second (all clients together).
    pub max_upload_rate: Option<u64>,
    /// Serve the verified pieces of downloads in progress to other downloaders of the same
    /// content (the swarm); off makes a node that only takes (`--no-partial-upload`).
    pub partial_upload: bool,
    /// How downloads behave (rate cap, stall timeout, patience through outages).
    pub engine: EngineOptions,
    /// Where `shoal.download` may write besides the share (and `<state>/incoming`).
    pub download_dir: Option<PathBuf>,
    /// Per-caller rate limits.
    pub guard: GuardOptions,
    /// A connection whose reads or writes make no progress for this long is dropped.
    pub stall_timeout: Duration,
    /// Most connections at once from one address (not on loopback while
    /// `guard.loopback_exempt` holds).
    pub max_per_address: usize,
    /// Bytes of peers' answers that may be in flight at once (all searches together).
    pub answer_budget: usize,
    /// Certificate authorities trusted for https besides the platform's (`--ca-cert`).
    pub ca_certs: Vec<reqwest::Certificate>,
    /// The iroh endpoint beside the TCP listener (node key, relays, LAN discovery); `None`
    /// serves TCP alone.
    pub iroh: Option<IrohOptions>,
    /// Node ids (hex) that are the owner when they call over iroh, besides the id of the
    /// state directory's own client key.
    pub owner_keys: Vec<String>,
    /// The node's Mainline DHT node (content ids and holders); `None` runs none.
    pub dht: Option<crate::net::dht::DhtOptions>,
}

impl NodeOptions {
    /// Defaults for a node sharing `dir` with its state in `state`.
    pub fn new(dir: impl Into<PathBuf>, state: impl Into<PathBuf>) -> Self {
        NodeOptions {
            dir: dir.into(),
            state: state.into(),
            url: None,
            secret: None,
            peers: Vec::new(),
            ttl: crate::discovery::search::MAX_HISTORY as u32,
            search_deadline: Duration::from_secs(5),
            max_rpc_content: 16 << 20,
            max_rpc_body: 1 << 20,
            request_timeout: Duration::from_secs(20),
            max_connections: 1024,
            max_iroh_connections: 512,
            iroh_owner_reserve: 8,
            max_iroh_per_key: 8,
            iroh_idle_timeout: Duration::from_secs(20),
            rescan_interval: Duration::from_secs(10),
            peer_exchange_interval: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(3),
            peer: PeerOptions::default(),
            max_upload_rate: None,
            partial_upload: true,
            engine: EngineOptions::default(),
            download_dir: None,
            ca_certs: Vec::new(),
            iroh: None,
            owner_keys: Vec::new(),
            dht: None,
            guard: GuardOptions::default(),
            stall_timeout: Duration::from_secs(60),
            max_per_address: 64,
            answer_budget: 32 << 20,
        }
    }
}

impl NodeOptions {
    /// Trusts the CA certificates of the PEM file `path` besides the platform's roots, for
    /// https mirrors and for relays alike.
    pub fn trust_ca_file(&mut self, path: &std::path::Path) -> Result<(), String> {
        let roots = crate::net::load_ca_der(path)?;
        let http = crate::net::http_roots(&roots).map_err(|e| format!("{}: {e}", path.display()))?;
        self.ca_certs.extend(http);
        if let Some(iroh) = &mut self.iroh {
            iroh.extra_roots.extend(roots);
        }
        Ok(())
    }
}

/// A rate setting (`--max-upload-rate 4M` and the like) in bytes per second.
pub use crate::net::rate::parse_rate;

/// The node id (32 bytes) a node id, `iroh://<id>` or ticket names, as `--owner-key` and
/// `shoal relay --allow` take them.
pub fn node_id(text: &str) -> Result<[u8; 32], String> {
    crate::proto::ticket::Ticket::parse(text).map(|t| t.id).map_err(|e| e.to_string())
}

/// A node id in hex, as the owner keys are kept.
pub fn node_id_hex(text: &str) -> Result<String, String> {
    crate::proto::ticket::Ticket::parse(text)
        .map(|t| t.id_hex())
        .map_err(|e| e.to_string())
}

/// The ticket of a node known by its id alone (no relay, no addresses).
pub fn bare_ticket(id: [u8; 32]) -> String {
    crate::proto::ticket::Ticket::bare(id).encode()
}

/// Rates per caller address.
#[derive(Debug, Clone)]
pub struct GuardOptions {
    /// Searches per second per caller, and the burst allowed.
    pub searches_per_second: u32,
    pub search_burst: u32,
    /// `hello` calls per minute per caller.
    pub hellos_per_minute: u32,
    /// Wrong secrets per minute per caller before every secret from it is refused for a while.
    pub wrong_secrets_per_minute: u32,
    /// Wrong secrets per minute from all strangers together (callers not on loopback while
    /// `loopback_exempt` holds, every caller otherwise) before every secret from a stranger is
    /// refused until the minute has passed. Addresses are cheap through a relay (each fresh key
    /// is one), so the per-caller limit alone does not bound guessing; the owner's keys are
    /// never refused, and loopback callers keep their per-caller limit.
    pub wrong_secrets_per_minute_total: u32,
    /// Loopback callers skip the search and hello limits and the per-address connection cap.
    pub loopback_exempt: bool,
}

impl Default for GuardOptions {
    fn default() -> Self {
        GuardOptions {
            searches_per_second: 20,
            search_burst: 100,
            hellos_per_minute: 30,
            wrong_secrets_per_minute: 10,
            wrong_secrets_per_minute_total: 30,
            loopback_exempt: true,
        }
    }
}
