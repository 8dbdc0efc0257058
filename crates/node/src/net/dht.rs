//! The node's place on BitTorrent's Mainline DHT (BEP 5 with BEP 42's secure ids and BEP 44's
//! signed records), through the `mainline` crate: who holds a content id, and where a node id
//! can be reached, with no central server.
//!
//! The DHT speaks BEP 5 on one UDP socket (IPv4). A node starts in client mode (it asks, it
//! does not answer) and turns to server mode once it has seen that others reach it; a node told
//! `--dht-listen` serves from the start (the owner chose a port others can reach).
//!
//! A content id is announced and looked up under a 20-byte key derived from it ([`key`]): the
//! first 20 bytes of `BLAKE3.derive_key("shoal 2026-12 content id on the Mainline DHT", id)`.
//! The id is never the key itself, so shoal's keys cannot collide with a BitTorrent v2
//! infohash (a truncated SHA-256) by construction, and a DHT node that sees the key learns the
//! id only if it already knows it.
//!
//! Everything the DHT hands over is a stranger's word: a lookup takes at most
//! [`MAX_PEERS_PER_LOOKUP`] addresses and runs at most [`LOOKUP_DEADLINE`]; the caller applies
//! the address policy to each (`discovery::dht`); a holder proves itself only by serving bytes
//! that check against the id. Inbound queries are limited per address and in all
//! ([`InboundFilter`]), the values the node stores for others are bounded by count, and BEP 5's
//! tokens (kept by `mainline`) mean an announce needs a round trip from the announcer's own
//! address, so a forged source address cannot make this node store or send anything large.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota};
use mainline::async_dht::AsyncDht;
use mainline::{Id, RequestFilter, RequestSpecific, ServerSettings};
use prometheus_client::metrics::counter::Counter;
use shoal_index::ContentId;

use super::policy::Scope;

/// The context string of the key derivation ([`key`]); changing it moves every id on the DHT.
pub const KEY_CONTEXT: &str = "shoal 2026-12 content id on the Mainline DHT";

/// The DHT key (a BEP 5 infohash) of a content id.
pub fn key(id: &ContentId) -> Id {
    let derived = blake3::derive_key(KEY_CONTEXT, id.as_bytes());
    Id::from_bytes(&derived[..20]).expect("20 bytes make an id")
}

/// The context string of the key pair of a content id's record of holders behind NAT
/// ([`holders_key`]).
pub const HOLDERS_CONTEXT: &str = "shoal 2026-12 holders behind NAT of a content id";

/// The key pair of a content id's open record of holders behind NAT (BEP 44, mutable): its
/// secret is derived from the id, so anyone who knows the id can read and write it. Its value
/// is at most [`MAX_NAT_HOLDERS`] node ids of 32 bytes, newest first.
pub fn holders_key(id: &ContentId) -> mainline::SigningKey {
    mainline::SigningKey::from_bytes(&blake3::derive_key(HOLDERS_CONTEXT, id.as_bytes()))
}

/// Most node ids in a record of holders behind NAT (768 bytes, under BEP 44's 1,000).
pub const MAX_NAT_HOLDERS: usize = 24;

/// Most addresses one lookup hands on (the first ones found; a lookup ends when it has them).
pub const MAX_PEERS_PER_LOOKUP: usize = 64;
/// Most addresses taken from one node's answer: a single liar cannot fill a lookup's
/// [`MAX_PEERS_PER_LOOKUP`] and crowd out the holders other nodes name.
pub const MAX_PEERS_PER_ANSWER: usize = 16;
/// How long a lookup goes on after its first address, for more.
pub const AFTER_FIRST_PEER: Duration = Duration::from_millis(500);
/// Longest a lookup runs.
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(15);
/// Queries answered per second from one address (a burst of twice that).
pub const INBOUND_PER_ADDRESS: u32 = 20;
/// Queries answered per second from everyone together.
pub const INBOUND_TOTAL: u32 = 1_000;
/// Addresses followed by the per-address limiter before it forgets the quiet ones.
const INBOUND_ADDRESSES: usize = 4_096;
/// Addresses followed at most: beyond, strangers are not answered until quiet ones are gone.
const INBOUND_ADDRESSES_MAX: usize = 65_536;
/// Content keys this node keeps announced peers for (for others), and peers per key.
const STORE_KEYS: usize = 1_000;
const STORE_PEERS_PER_KEY: usize = 100;
/// BEP 44 items kept for others.
const STORE_ITEMS: usize = 500;
/// Recent lookups kept for `shoal dht`.
const RECENT_LOOKUPS: usize = 32;
/// Nodes of the routing table kept in the state directory for a quick restart.
const SAVED_NODES: usize = 256;

/// How the DHT node runs.
#[derive(Debug, Clone, Default)]
pub struct DhtOptions {
    /// The UDP address to bind (`--dht-listen`); given, the node serves from the start.
    pub listen: Option<SocketAddrV4>,
    /// Nodes to join through (`--dht-bootstrap HOST:PORT`); `None` means the public routers,
    /// whose names are resolved only then.
    pub bootstrap: Option<Vec<String>>,
    /// Where the routing table is kept between runs (`<state>/dht-nodes`).
    pub nodes_file: Option<PathBuf>,
}

/// Why the DHT did not start.
#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    #[error("--dht-bootstrap {0:?}: not HOST:PORT with an IPv4 address")]
    Bootstrap(String),
    #[error("binding the DHT's UDP socket: {0}")]
    Bind(std::io::Error),
}

/// Counters the DHT adds to `/metrics`.
#[derive(Clone, Default)]
pub struct DhtCounters {
    pub queries_in: Counter,
    pub queries_refused: Counter,
    pub announces: Counter,
    pub announce_failures: Counter,
    pub lookups: Counter,
    pub peers_found: Counter,
    pub peers_refused: Counter,
}

/// One lookup, for `shoal dht`.
#[derive(Debug, Clone)]
pub struct LookupRecord {
    pub id: ContentId,
    pub at: SystemTime,
    pub took: Duration,
    /// Addresses found (before the address policy).
    pub found: usize,
}

/// What `shoal dht` shows of the node.
#[derive(Debug, Clone)]
pub struct DhtInfo {
    /// The UDP address the node listens on.
    pub local: SocketAddrV4,
    /// The address others see, as the answers to its queries say.
    pub public: Option<SocketAddrV4>,
    /// Others reached it unasked (it is not behind a NAT that drops them).
    pub reachable: bool,
    /// It answers queries (server mode).
    pub serving: bool,
    /// Nodes in its routing table.
    pub nodes: usize,
    /// Its estimate of the DHT's size.
    pub size_estimate: usize,
}

/// The DHT node. Cheap to share; the `mainline` actor runs on its own thread.
pub struct Dht {
    dht: AsyncDht,
    policy: super::Policy,
    counters: DhtCounters,
    nodes_file: Option<PathBuf>,
    lookups: Mutex<VecDeque<LookupRecord>>,
    /// Ids announced with success lately.
    announced: AtomicU64,
    /// The node's address record (BEP 44, under its node key) was put on the DHT.
    published: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Dht {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dht").finish_non_exhaustive()
    }
}

/// Parses `HOST:PORT`s into IPv4 socket addresses (names are resolved here, blocking).
fn resolve(entries: &[String]) -> Result<Vec<SocketAddrV4>, DhtError> {
    use std::net::ToSocketAddrs;
    let mut out = Vec::new();
    for entry in entries {
        let addrs = entry.to_socket_addrs().map_err(|_| DhtError::Bootstrap(entry.clone()))?;
        let v4: Vec<SocketAddrV4> = addrs
            .filter_map(|a| match a {
                std::net::SocketAddr::V4(v4) => Some(v4),
                std::net::SocketAddr::V6(_) => None,
            })
            .collect();
        if v4.is_empty() {
            return Err(DhtError::Bootstrap(entry.clone()));
        }
        out.extend(v4);
    }
    Ok(out)
}

/// The nodes a run joins through: `bootstrap` (named or the public routers), then the nodes
/// an earlier run kept, but only those of a scope this run was pointed at, so a private DHT
/// (--local-only with a LAN bootstrap) never rejoins the public nodes a run on the public
/// routers kept.
fn join_list(options: &DhtOptions, mut bootstrap: Vec<SocketAddrV4>, saved: Vec<SocketAddrV4>) -> Vec<SocketAddrV4> {
    let mut scopes: Vec<Scope> = options
        .listen
        .map(|l| *l.ip())
        .filter(|ip| !ip.is_unspecified())
        .map(scope_of)
        .into_iter()
        .collect();
    match &options.bootstrap {
        Some(_) => scopes.extend(bootstrap.iter().map(|b| scope_of(*b.ip()))),
        None => scopes.push(Scope::Public),
    }
    for node in saved {
        if scopes.contains(&scope_of(*node.ip())) && !bootstrap.contains(&node) {
            bootstrap.push(node);
        }
    }
    bootstrap
}

fn scope_of(ip: Ipv4Addr) -> Scope {
    super::policy::scope(std::net::IpAddr::V4(ip))
}

/// The nodes saved by an earlier run (at most [`SAVED_NODES`]; lines that do not parse are
/// skipped).
fn saved_nodes(path: &std::path::Path) -> Vec<SocketAddrV4> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .take(SAVED_NODES)
        .filter_map(|l| l.trim().parse::<SocketAddrV4>().ok())
        .collect()
}

impl Dht {
    /// Starts the node: binds its socket and begins joining through the bootstrap nodes (and
    /// those saved by the last run). Resolves bootstrap names, so call it off the runtime's
    /// worker threads or accept a short block.
    pub fn start(options: &DhtOptions, counters: DhtCounters) -> Result<Arc<Dht>, DhtError> {
        let mut config = mainline::Config::default();
        let mut bootstrap = match &options.bootstrap {
            Some(entries) => resolve(entries)?,
            // A public router whose name does not resolve is left out; the others may do.
            None => mainline::DEFAULT_BOOTSTRAP_NODES
                .iter()
                .filter_map(|entry| resolve(&[entry.to_string()]).ok())
                .flatten()
                .collect(),
        };
        if let Some(path) = &options.nodes_file {
            bootstrap = join_list(options, bootstrap, saved_nodes(path));
        }
        // Answers may name addresses of the scopes the owner pointed the DHT at: a DHT on
        // loopback (tests, one machine) or a LAN reaches those; on the public routers, only
        // public addresses.
        let mut named: Vec<Ipv4Addr> = options
            .listen
            .map(|l| *l.ip())
            .filter(|ip| !ip.is_unspecified())
            .into_iter()
            .collect();
        if options.bootstrap.is_some() {
            named.extend(bootstrap.iter().map(|b| *b.ip()));
        }
        let mut policy = super::Policy {
            loopback: false,
            private: false,
        };
        for ip in named {
            let scope = super::Policy::for_node(Some(std::net::IpAddr::V4(ip)));
            policy.loopback |= scope.loopback;
            policy.private |= scope.private;
        }
        config.bootstrap = Some(bootstrap);
        if let Some(listen) = options.listen {
            config.bind_address = Some(*listen.ip());
            config.port = Some(listen.port());
            config.server_mode = true;
        }
        config.server_settings = ServerSettings {
            max_info_hashes: STORE_KEYS,
            max_peers_per_info_hash: STORE_PEERS_PER_KEY,
            max_immutable_values: STORE_ITEMS,
            max_mutable_values: STORE_ITEMS,
            filter: Box::new(InboundFilter::new(counters.clone())),
        };
        let dht = mainline::Dht::new(config).map_err(DhtError::Bind)?.as_async();
        Ok(Arc::new(Dht {
            dht,
            policy,
            counters,
            nodes_file: options.nodes_file.clone(),
            lookups: Mutex::new(VecDeque::new()),
            announced: AtomicU64::new(0),
            published: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// [`Dht::start`] off the runtime's worker threads (bootstrap names are resolved there).
    pub async fn spawn(options: DhtOptions, counters: DhtCounters) -> Result<Arc<Dht>, DhtError> {
        tokio::task::spawn_blocking(move || Dht::start(&options, counters))
            .await
            .unwrap_or_else(|e| Err(DhtError::Bind(std::io::Error::other(e.to_string()))))
    }

    /// Which addresses a DHT answer may lead this node to: those of the scopes the owner
    /// pointed the DHT at (its listen address and explicit bootstrap nodes), else public ones.
    pub fn policy(&self) -> super::Policy {
        self.policy
    }

    /// The `mainline` handle, for BEP 44 records (the iroh address look-up).
    pub fn handle(&self) -> &AsyncDht {
        &self.dht
    }

    /// Adds the DHT's counters to `registry`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let c = &self.counters;
        registry.register("dht_queries_received", "DHT queries from other nodes", c.queries_in.clone());
        registry.register(
            "dht_queries_refused",
            "DHT queries left unanswered by the per-address and total limits",
            c.queries_refused.clone(),
        );
        registry.register("dht_announces", "Content ids announced on the DHT", c.announces.clone());
        registry.register(
            "dht_announce_failures",
            "DHT announces that reached no node",
            c.announce_failures.clone(),
        );
        registry.register("dht_lookups", "Content id lookups on the DHT", c.lookups.clone());
        registry.register(
            "dht_peers_found",
            "Addresses DHT lookups gave (before the address policy)",
            c.peers_found.clone(),
        );
        registry.register(
            "dht_peers_refused",
            "Addresses DHT lookups gave that the address policy refused (never contacted)",
            c.peers_refused.clone(),
        );
    }

    /// The node ids (32 bytes each) that the id's record of holders behind NAT names, newest
    /// first, at most [`MAX_NAT_HOLDERS`]. Unchecked: anyone may write the record.
    pub async fn nat_holders(&self, id: &ContentId) -> Vec<[u8; 32]> {
        let key = holders_key(id).verifying_key().to_bytes();
        let lookup = self.dht.get_mutable_most_recent(&key, None);
        let Ok(Some(item)) = tokio::time::timeout(LOOKUP_DEADLINE, lookup).await else {
            return Vec::new();
        };
        nat_holders_of(item.value())
    }

    /// Puts `me` first in the id's record of holders behind NAT (read, then written with the
    /// sequence number read, so a concurrent writer's update fails ours rather than being
    /// lost; one retry).
    pub async fn add_nat_holder(&self, id: &ContentId, me: [u8; 32]) -> bool {
        let signer = holders_key(id);
        let key = signer.verifying_key().to_bytes();
        for _ in 0..2 {
            let current = tokio::time::timeout(LOOKUP_DEADLINE, self.dht.get_mutable_most_recent(&key, None))
                .await
                .ok()
                .flatten();
            let (mut holders, cas) = match &current {
                Some(item) => (nat_holders_of(item.value()), Some(item.seq())),
                None => (Vec::new(), None),
            };
            holders.retain(|h| *h != me);
            holders.insert(0, me);
            holders.truncate(MAX_NAT_HOLDERS);
            let value: Vec<u8> = holders.concat();
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            let seq = cas.map_or(now, |seq| now.max(seq.saturating_add(1)));
            let item = mainline::MutableItem::new(signer.clone(), &value, seq, None);
            match self.dht.put_mutable(item, cas).await {
                Ok(_) => return true,
                Err(error) => tracing::debug!(%id, %error, "writing the record of holders behind NAT failed"),
            }
        }
        false
    }

    /// Announces that this node serves `id` over HTTP on `port` (BEP 5 `announce_peer` to the
    /// closest nodes of the id's key; they store the address they saw with this port).
    pub async fn announce(&self, id: &ContentId, port: u16) -> bool {
        self.counters.announces.inc();
        match self.dht.announce_peer(key(id), Some(port)).await {
            Ok(_) => true,
            Err(error) => {
                self.counters.announce_failures.inc();
                tracing::debug!(%id, %error, "a DHT announce failed");
                false
            }
        }
    }

    /// Sets how many ids the node has announced with success lately.
    pub fn set_announced_ids(&self, ids: u64) {
        self.announced.store(ids, Ordering::Relaxed);
    }

    /// Notes that the node's address record was put on the DHT.
    pub fn set_published(&self) {
        self.published.store(true, Ordering::Relaxed);
    }

    /// Whether the node's address record is on the DHT (a node id alone leads to it).
    pub fn published(&self) -> bool {
        self.published.load(Ordering::Relaxed)
    }

    /// Ids the node has announced with success lately (within twice the announce period).
    pub fn announced_ids(&self) -> u64 {
        self.announced.load(Ordering::Relaxed)
    }

    /// Addresses that say they hold `id`: at most [`MAX_PEERS_PER_LOOKUP`], distinct, at most
    /// [`MAX_PEERS_PER_ANSWER`] from one node's answer, within [`LOOKUP_DEADLINE`] and at most
    /// [`AFTER_FIRST_PEER`] after the first. Unchecked: the caller applies its address policy.
    pub async fn peers(&self, id: &ContentId) -> Vec<SocketAddrV4> {
        self.counters.lookups.inc();
        let started = Instant::now();
        let at = SystemTime::now();
        let mut found: Vec<SocketAddrV4> = Vec::new();
        let mut stream = self.dht.get_peers(key(id));
        let deadline = tokio::time::sleep(LOOKUP_DEADLINE);
        tokio::pin!(deadline);
        // Once an address is found the lookup waits only a moment for more: its last steps
        // wait on nodes that are gone (2 s each in `mainline`), and a running download asks
        // again for more holders every 15 s.
        let grace = tokio::time::sleep(LOOKUP_DEADLINE);
        tokio::pin!(grace);
        let mut grace_set = false;
        let mut ended = "the deadline";
        'lookup: loop {
            tokio::select! {
                () = &mut deadline => break,
                () = &mut grace, if grace_set => {
                    ended = "the grace after the first address";
                    break;
                }
                next = stream.next() => match next {
                    None => {
                        ended = "its end";
                        break;
                    }
                    Some(batch) => {
                        for addr in batch.into_iter().take(MAX_PEERS_PER_ANSWER) {
                            if !found.contains(&addr) {
                                found.push(addr);
                                if found.len() >= MAX_PEERS_PER_LOOKUP {
                                    ended = "enough addresses";
                                    break 'lookup;
                                }
                            }
                        }
                        if !grace_set && !found.is_empty() {
                            grace.as_mut().reset(tokio::time::Instant::now() + AFTER_FIRST_PEER);
                            grace_set = true;
                        }
                    }
                },
            }
        }
        self.counters.peers_found.inc_by(found.len() as u64);
        tracing::debug!(%id, found = found.len(), took = ?started.elapsed(), ended, "a DHT lookup");
        let record = LookupRecord {
            id: *id,
            at,
            took: started.elapsed(),
            found: found.len(),
        };
        let mut recent = self.lookups.lock().expect("lookups lock");
        if recent.len() >= RECENT_LOOKUPS {
            recent.pop_front();
        }
        recent.push_back(record);
        found
    }

    /// Counts addresses a lookup gave that the address policy refused.
    pub fn count_refused(&self, addresses: u64) {
        self.counters.peers_refused.inc_by(addresses);
    }

    /// The latest lookups, newest first.
    pub fn recent_lookups(&self) -> Vec<LookupRecord> {
        self.lookups.lock().expect("lookups lock").iter().rev().cloned().collect()
    }

    /// The node's state.
    pub async fn info(&self) -> DhtInfo {
        let info = self.dht.info().await;
        let nodes = self.dht.to_bootstrap().await.len();
        DhtInfo {
            local: info.local_addr(),
            public: info.public_address(),
            reachable: !info.firewalled(),
            serving: info.server_mode(),
            nodes,
            size_estimate: info.dht_size_estimate().0,
        }
    }

    /// Waits until the first round of joining is done; true when it found other nodes.
    pub async fn bootstrapped(&self) -> bool {
        self.dht.bootstrapped().await
    }

    /// Keeps the routing table's nodes in the state directory (at most [`SAVED_NODES`]).
    pub async fn save_nodes(&self) {
        let Some(path) = &self.nodes_file else { return };
        let nodes = self.dht.to_bootstrap().await;
        if nodes.is_empty() {
            return;
        }
        let text: String = nodes.iter().take(SAVED_NODES).map(|n| format!("{n}\n")).collect();
        let (path, temporary) = (path.clone(), path.with_extension("tmp"));
        let written =
            tokio::task::spawn_blocking(move || std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, &path))).await;
        if let Ok(Err(error)) = written {
            tracing::debug!(%error, "could not keep the DHT's nodes");
        }
    }
}

/// The node ids a record's value names: whole 32-byte ids, at most [`MAX_NAT_HOLDERS`],
/// distinct.
fn nat_holders_of(value: &[u8]) -> Vec<[u8; 32]> {
    let mut out: Vec<[u8; 32]> = Vec::new();
    for chunk in value.chunks_exact(32).take(MAX_NAT_HOLDERS) {
        let id: [u8; 32] = chunk.try_into().expect("32 bytes");
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// Limits the queries this node answers: [`INBOUND_PER_ADDRESS`] per second from one address
/// (loopback, the machine's own nodes, exempt) and [`INBOUND_TOTAL`] in all. A refused query gets no answer (as a lost packet).
pub struct InboundFilter<C: governor::clock::Clock = governor::clock::DefaultClock> {
    per_address: Arc<PerAddress<C>>,
    total: Arc<DefaultDirectRateLimiter>,
    counters: DhtCounters,
    /// When the per-address table was last tidied, in seconds since `started`.
    tidied: Arc<AtomicU64>,
    started: Instant,
}

/// The per-address limiter on the clock `C` (a fake one in tests).
type PerAddress<C> = governor::RateLimiter<
    Ipv4Addr,
    governor::state::keyed::HashMapStateStore<Ipv4Addr>,
    C,
    governor::middleware::NoOpMiddleware<<C as governor::clock::Clock>::Instant>,
>;

impl<C: governor::clock::Clock> Clone for InboundFilter<C> {
    fn clone(&self) -> Self {
        InboundFilter {
            per_address: self.per_address.clone(),
            total: self.total.clone(),
            counters: self.counters.clone(),
            tidied: self.tidied.clone(),
            started: self.started,
        }
    }
}

impl<C: governor::clock::Clock> std::fmt::Debug for InboundFilter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundFilter").finish_non_exhaustive()
    }
}

impl InboundFilter {
    pub fn new(counters: DhtCounters) -> InboundFilter {
        InboundFilter::with_clock(counters, governor::clock::DefaultClock::default())
    }
}

impl<C: governor::clock::Clock> InboundFilter<C> {
    /// A filter whose per-address limits run on `clock`.
    pub fn with_clock(counters: DhtCounters, clock: C) -> InboundFilter<C> {
        let per = NonZeroU32::new(INBOUND_PER_ADDRESS).expect("not zero");
        let burst = NonZeroU32::new(2 * INBOUND_PER_ADDRESS).expect("not zero");
        let total = NonZeroU32::new(INBOUND_TOTAL).expect("not zero");
        InboundFilter {
            per_address: Arc::new(governor::RateLimiter::hashmap_with_clock(
                Quota::per_second(per).allow_burst(burst),
                clock,
            )),
            total: Arc::new(governor::RateLimiter::direct(Quota::per_second(total))),
            counters,
            tidied: Arc::new(AtomicU64::new(0)),
            started: Instant::now(),
        }
    }

    /// Forgets quiet addresses once the table holds more than [`INBOUND_ADDRESSES`], at most
    /// once a second (a scan of the table); true while it still holds more than
    /// [`INBOUND_ADDRESSES_MAX`] (a flood from that many addresses within two seconds).
    fn overfull(&self) -> bool {
        if self.per_address.len() <= INBOUND_ADDRESSES {
            return false;
        }
        let now = self.started.elapsed().as_secs();
        if self.tidied.swap(now, Ordering::Relaxed) != now {
            self.per_address.retain_recent();
        }
        self.per_address.len() > INBOUND_ADDRESSES_MAX
    }

    /// True when a query from `from` may be answered now.
    pub fn allows(&self, from: Ipv4Addr) -> bool {
        self.counters.queries_in.inc();
        // Loopback is this machine's own nodes (tests, several nodes on one host): only the
        // total applies to it. While the table is overfull, strangers get no answer: its memory
        // stays bounded whatever the flood.
        let allowed = (from.is_loopback() || (!self.overfull() && self.per_address.check_key(&from).is_ok())) && self.total.check().is_ok();
        if !allowed {
            self.counters.queries_refused.inc();
        }
        allowed
    }
}

impl<C: governor::clock::Clock + Send + Sync + 'static> RequestFilter for InboundFilter<C> {
    fn allow_request(&self, _request: &RequestSpecific, from: SocketAddrV4) -> bool {
        self.allows(*from.ip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_derived_not_truncated() {
        let id = ContentId([7; 32]);
        let k = key(&id);
        assert_eq!(k.as_bytes().len(), 20);
        assert_ne!(&k.as_bytes()[..], &id.as_bytes()[..20]);
        assert_eq!(key(&id), key(&ContentId([7; 32])));
        assert_ne!(key(&id), key(&ContentId([8; 32])));
    }

    #[test]
    fn a_record_of_holders_is_read_with_its_bounds() {
        let mut value: Vec<u8> = Vec::new();
        for i in 0..40u8 {
            value.extend([i; 32]);
        }
        value.extend([1u8; 32]);
        value.extend([9u8; 5]);
        let holders = nat_holders_of(&value);
        assert_eq!(holders.len(), MAX_NAT_HOLDERS);
        assert_eq!(holders[0], [0u8; 32]);
        assert_eq!(nat_holders_of(&[[3u8; 32], [3u8; 32]].concat()), vec![[3u8; 32]]);
        assert!(nat_holders_of(&[7u8; 31]).is_empty());
        // Anyone who knows the id derives the same key, and only that id's.
        let id = ContentId([5; 32]);
        assert_eq!(holders_key(&id).to_bytes(), holders_key(&ContentId([5; 32])).to_bytes());
        assert_ne!(holders_key(&id).to_bytes(), holders_key(&ContentId([6; 32])).to_bytes());
    }

    #[test]
    fn one_address_cannot_take_every_answer() {
        let filter = InboundFilter::new(DhtCounters::default());
        let loud = Ipv4Addr::new(203, 0, 113, 9);
        let answered = (0..1_000).filter(|_| filter.allows(loud)).count();
        assert!(answered <= 2 * INBOUND_PER_ADDRESS as usize + 1, "{answered}");
        assert!(filter.allows(Ipv4Addr::new(198, 51, 100, 1)), "another address is still answered");
        assert_eq!(filter.counters.queries_refused.get() as usize, 1_000 - answered);
    }

    #[test]
    fn a_private_dht_does_not_rejoin_public_nodes_kept_by_another_run() {
        let saved: Vec<SocketAddrV4> = ["8.8.8.8:6881", "10.1.0.9:6881", "127.0.0.1:7000"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let lan: SocketAddrV4 = "10.1.0.1:6881".parse().unwrap();
        let private = DhtOptions {
            bootstrap: Some(vec![lan.to_string()]),
            ..DhtOptions::default()
        };
        let joined = join_list(&private, vec![lan], saved.clone());
        assert_eq!(joined, [lan, saved[1]]);
        // On the public routers, only public nodes rejoin.
        let public = join_list(&DhtOptions::default(), Vec::new(), saved.clone());
        assert_eq!(public, [saved[0]]);
        // A DHT on loopback (tests, one machine) rejoins loopback nodes.
        let here = DhtOptions {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            bootstrap: Some(Vec::new()),
            nodes_file: None,
        };
        assert_eq!(join_list(&here, Vec::new(), saved.clone()), [saved[2]]);
    }

    #[test]
    fn a_flood_from_many_addresses_keeps_the_table_bounded() {
        // No time passes for the limits: nothing a tidy could forget is quiet yet.
        let filter = InboundFilter::with_clock(DhtCounters::default(), governor::clock::FakeRelativeClock::default());
        for i in 0..(INBOUND_ADDRESSES_MAX as u32 + 10_000) {
            filter.allows(Ipv4Addr::from(0x0b00_0000 + i));
        }
        assert!(
            filter.per_address.len() <= INBOUND_ADDRESSES_MAX + 1,
            "{}",
            filter.per_address.len()
        );
        assert!(filter.counters.queries_refused.get() > 0);
    }

    #[test]
    fn saved_nodes_are_bounded_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dht-nodes");
        let mut text = String::from("not an address\n[::1]:6881\n");
        for i in 0..1_000u32 {
            text.push_str(&format!("10.0.{}.{}:6881\n", i / 250, i % 250 + 1));
        }
        std::fs::write(&path, text).unwrap();
        let nodes = saved_nodes(&path);
        assert_eq!(nodes.len(), SAVED_NODES - 2);
        assert_eq!(nodes[0], "10.0.0.1:6881".parse().unwrap());
    }
}
