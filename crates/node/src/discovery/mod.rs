//! Finding files and nodes: the flood search (`shoal.locate`, `shoal.search` and the seed's
//! `query`), the holders of a content id, peer exchange and the peer table.
//!
//! Behind [`Discover`], so that a later index (a DHT) can answer `holders` without the service
//! or the engine changing. Budgets: a hop asks at most [`MAX_FANOUT`] peers; every answer is
//! capped to what it needs ([`crate::proto::limits`]) and all answers in flight share the
//! client's budget; merged results are capped and merged in linear time.

pub mod candidates;
pub mod dht;
pub mod listing;
pub mod peers;
pub mod search;
pub mod swarm;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_index::{ContentId, SafeName};
use shoal_xmlrpc::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::net::{CallError, Client, NodeClient};
use crate::proto::calls::{Locate, LocateAnswer, Query, RouteParams, Search, SearchMatch, search_answer};
use crate::proto::url::{host_port, normalize};
use peers::{PeerKind, Peers};
use search::{MAX_HISTORY, SeenQueries};

/// Most peers one hop asks.
pub const MAX_FANOUT: usize = 32;
/// Most calls to peers a node's searches have in flight together: a search that finds no slot
/// free asks fewer peers rather than letting a crowd of searches hold thousands of connections.
pub const MAX_ASKS_IN_FLIGHT: usize = 128;
/// What a pattern search forwarded for a caller found is the answer to every search of the same
/// shape (pattern, ttl, history and time budget) this long after: a crowd of downloaders looking
/// for more holders of one id at once costs the node they share about one forward, not one each
/// (48 downloaders × 32 peers asked was 1,536 calls). A search of another shape (a ttl of 1, a
/// history naming every peer, a budget of 1 ms) cannot leave a poorer answer for the others.
/// Only finished forwards are shared: a search never waits on another, so two nodes forwarding
/// the same pattern to each other cannot wait on each other.
pub const SHARED_SEARCH_FOR: Duration = Duration::from_secs(2);
/// Most patterns whose results are kept at once; past it a result is not kept.
const MAX_SHARED_SEARCHES: usize = 256;
/// Most matches a merged search result holds, and most holders a merged match keeps.
pub use crate::proto::limits::{MAX_MERGED, MAX_MERGED_HOLDERS};

/// A file found by a search: where it is and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The node that holds it.
    pub url: String,
    pub name: String,
    pub size: u64,
    /// The content id, when the holder is a shoal node.
    pub id: Option<ContentId>,
    /// The content itself, when it came back inline (from a seed node's `query`).
    pub content: Option<Vec<u8>>,
}

/// One match of a pattern search, merged across every node that holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub name: String,
    /// The size the holders claim (checked against the content id before it is used).
    pub size: u64,
    pub id: ContentId,
    pub urls: Vec<String>,
    /// Which of `urls` are downloading it, and how many 1 MiB pieces each holds (as they say).
    pub partial: Vec<(String, u64)>,
}

impl From<SearchMatch> for Match {
    fn from(m: SearchMatch) -> Match {
        Match {
            name: m.name,
            size: m.size,
            id: m.id,
            urls: m.holders,
            partial: m.partial.into_iter().map(|p| (p.url, p.held)).collect(),
        }
    }
}

impl From<&Match> for SearchMatch {
    fn from(m: &Match) -> SearchMatch {
        SearchMatch {
            name: m.name.clone(),
            size: m.size,
            id: m.id,
            holders: m.urls.clone(),
            partial: m
                .partial
                .iter()
                .map(|(url, held)| crate::proto::calls::PartialHolder {
                    url: url.clone(),
                    held: *held,
                })
                .collect(),
        }
    }
}

impl From<LocateAnswer> for Hit {
    fn from(a: LocateAnswer) -> Hit {
        Hit {
            url: a.holder,
            name: a.name,
            size: a.size,
            id: a.id,
            content: a.content,
        }
    }
}

impl From<&Hit> for LocateAnswer {
    fn from(h: &Hit) -> LocateAnswer {
        LocateAnswer {
            holder: h.url.clone(),
            name: h.name.clone(),
            size: h.size,
            id: h.id,
            content: h.content.clone(),
        }
    }
}

/// Matches merged in linear time: one map from (name, id) to its row, one set of holders per row.
#[derive(Default)]
pub struct Merged {
    rows: Vec<Match>,
    index: HashMap<(String, ContentId), usize>,
    holders: Vec<HashSet<String>>,
}

impl Merged {
    pub fn add(&mut self, found: Match) {
        let key = (found.name.clone(), found.id);
        let row = match self.index.get(&key) {
            Some(row) => *row,
            None => {
                if self.rows.len() >= MAX_MERGED {
                    return;
                }
                self.index.insert(key, self.rows.len());
                self.rows.push(Match {
                    urls: Vec::new(),
                    partial: Vec::new(),
                    ..found.clone()
                });
                self.holders.push(HashSet::new());
                self.rows.len() - 1
            }
        };
        for url in found.urls {
            if self.rows[row].urls.len() >= MAX_MERGED_HOLDERS {
                break;
            }
            if self.holders[row].insert(host_port(&url).to_string()) {
                if let Some((_, held)) = found.partial.iter().find(|(u, _)| *u == url) {
                    self.rows[row].partial.push((url.clone(), *held));
                }
                self.rows[row].urls.push(url);
            }
        }
    }

    /// The rows, sorted by name and id.
    pub fn into_sorted(self) -> Vec<Match> {
        let mut rows = self.rows;
        rows.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        rows
    }
}

/// Where a search is in the network: its id, the nodes it has passed and how far it may go.
#[derive(Debug, Clone)]
pub struct Route {
    pub query_id: String,
    pub history: Vec<String>,
    /// Nodes that may still search, this one included (the seed's 6 minus the history length).
    pub ttl: u32,
    /// Time left for this node to answer.
    pub budget: Duration,
}

/// What a node passes on when it forwards a search.
struct Hop {
    next: Route,
    /// Peers not to ask: every node already in the history (normalised).
    exclude: Vec<String>,
    /// When this node must answer with what it has.
    deadline: Instant,
}

impl Route {
    /// The route as a forwarded call carries it.
    fn params(&self) -> RouteParams {
        RouteParams {
            query_id: Some(self.query_id.clone()),
            ttl: Some(self.ttl),
            history: self.history.clone(),
            budget_ms: Some(u64::try_from(self.budget.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// The next hop from the node at `me`, or `None` when the search ends here.
    fn next_hop(self, me: &str) -> Option<Hop> {
        let mut history = self.history;
        history.push(me.to_string());
        if self.ttl <= 1 || history.len() >= MAX_HISTORY {
            return None;
        }
        let exclude = history.iter().filter_map(|u| normalize(u).ok()).collect();
        let next = Route {
            query_id: self.query_id,
            history,
            ttl: self.ttl - 1,
            budget: search::next_budget(self.budget),
        };
        Some(Hop {
            next,
            exclude,
            deadline: Instant::now() + self.budget,
        })
    }
}

/// What a content index answers: who holds an id. The flood search implements it; a DHT may.
pub trait Discover: Send + Sync + 'static {
    /// Base URLs of nodes that hold `id`, as they say (every byte is checked against the id).
    fn holders(&self, id: ContentId) -> futures_util::future::BoxFuture<'_, Vec<String>>;
}

/// Asks `peers` (at most [`MAX_FANOUT`]) for `pattern` (a name or a content id) in one hop and
/// merges what they know (`shoal get` and a running download's holder search).
pub async fn search_peers(client: &Client, peers: &[String], pattern: &str, deadline: Duration) -> Vec<Match> {
    ask_each(client, peers, &Search::new(pattern), deadline).await
}

/// Asks `peers` (at most [`MAX_FANOUT`]) for their own files matching `pattern`, a search
/// that goes no further than each of them (ttl 1), and merges the answers.
pub async fn own_files_of(client: &Client, peers: &[String], pattern: &str, deadline: Duration) -> Vec<Match> {
    ask_each(client, peers, &Search::own_files(pattern, search::new_query_id()), deadline).await
}

/// `call` to each of `peers` at once, the answers merged.
async fn ask_each(client: &Client, peers: &[String], call: &Search, deadline: Duration) -> Vec<Match> {
    let calls = peers.iter().take(MAX_FANOUT).map(|peer| async move {
        match NodeClient::new(client, peer).deadline(deadline).search(call).await {
            Ok(found) => found.into_iter().map(Match::from).collect(),
            Err(error) => {
                tracing::debug!(%peer, %error, "a peer did not answer a search");
                Vec::new()
            }
        }
    });
    let mut merged = Merged::default();
    for found in futures_util::future::join_all(calls).await.into_iter().flatten() {
        merged.add(found);
    }
    merged.into_sorted()
}

/// Tuning of discovery.
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// How many nodes a search may reach in a line, this one included (the seed's 6).
    pub ttl: u32,
    /// How long a search started here may take.
    pub search_deadline: Duration,
    /// Largest content accepted inline (from a seed's `query`).
    pub max_content: u64,
}

/// The flood search over the peer table.
pub struct Flood {
    pub peers: Peers,
    pub seen: SeenQueries,
    /// Nodes introduced by `hello` that have not answered yet.
    candidates: std::sync::Mutex<candidates::Candidates>,
    client: Client,
    asks: Arc<tokio::sync::Semaphore>,
    /// What recent forwarded searches found and when, by their shape ([`SHARED_SEARCH_FOR`]).
    shared: std::sync::Mutex<HashMap<SearchShape, (Instant, Vec<Match>)>>,
    options: DiscoveryOptions,
    stopping: CancellationToken,
}

/// What makes two forwarded searches ask the same peers the same thing: their pattern and
/// route, but for the query id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SearchShape {
    pattern: String,
    ttl: u32,
    history: Vec<String>,
    budget: Duration,
}

/// True for the fault a server gives for a method it does not have (Python: `method "x" is not
/// supported`), which tells a seed node from a shoal node.
fn is_unknown_method(error: &CallError) -> bool {
    matches!(error, CallError::Fault { fault, .. } if fault.message.contains("not supported"))
}

impl Flood {
    pub fn new(peers: Peers, client: Client, options: DiscoveryOptions, stopping: CancellationToken) -> Arc<Flood> {
        Arc::new(Flood {
            peers,
            seen: SeenQueries::default(),
            candidates: std::sync::Mutex::default(),
            client,
            asks: Arc::new(tokio::sync::Semaphore::new(MAX_ASKS_IN_FLIGHT)),
            shared: std::sync::Mutex::default(),
            options,
            stopping,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// This node's own URL.
    pub fn me(&self) -> &str {
        &self.peers.me().url
    }

    /// A fresh route for a search that starts at this node.
    pub fn new_route(&self) -> Route {
        Route {
            query_id: search::new_query_id(),
            history: Vec::new(),
            ttl: self.options.ttl,
            budget: self.options.search_deadline,
        }
    }

    /// The route a caller asked for, clamped to this node's own limits.
    pub fn route_from(&self, query_id: Option<String>, ttl: Option<u32>, history: Vec<String>, budget_ms: Option<u64>) -> Route {
        let fresh = self.new_route();
        Route {
            query_id: query_id.unwrap_or(fresh.query_id),
            history,
            ttl: ttl.map_or(fresh.ttl, |t| t.min(fresh.ttl)),
            budget: budget_ms.map(Duration::from_millis).map_or(fresh.budget, |b| b.min(fresh.budget)),
        }
    }

    /// The peers to ask on a hop: live, not excluded, at most [`MAX_FANOUT`], shoal peers first,
    /// then a random choice among the rest, so that a table full of strangers cannot crowd out
    /// the peers that answer.
    fn fanout(&self, exclude: &[String], seed_too: bool) -> Vec<(String, PeerKind)> {
        use rand::seq::SliceRandom;
        let mut live: Vec<_> = self
            .peers
            .live(exclude)
            .into_iter()
            .filter(|(_, kind)| seed_too || *kind != PeerKind::Seed)
            .collect();
        live.shuffle(&mut rand::rng());
        live.sort_by_key(|(_, kind)| *kind != PeerKind::Shoal);
        live.truncate(MAX_FANOUT);
        live
    }

    /// Starts one ask per peer, each holding one of the slots for calls in flight; when the
    /// slots run out, the rest of the peers are not asked. Dropping the set aborts the asks.
    fn spawn_asks<T, F, Fut>(self: &Arc<Self>, peers: Vec<(String, PeerKind)>, ask: F) -> JoinSet<T>
    where
        T: Send + 'static,
        F: Fn(Arc<Flood>, String, PeerKind) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let mut asks = JoinSet::new();
        for (peer, kind) in peers {
            let Ok(slot) = self.asks.clone().try_acquire_owned() else { break };
            let work = ask(self.clone(), peer, kind);
            asks.spawn(async move {
                let _slot = slot;
                work.await
            });
        }
        asks
    }

    /// Asks the peers where `name` is; the first hit wins.
    pub async fn forward_locate(self: &Arc<Self>, name: &SafeName, route: Route) -> Option<Hit> {
        let Hop { next, exclude, deadline } = route.next_hop(self.me())?;
        let name = name.to_string();
        let mut asks = self.spawn_asks(self.fanout(&exclude, true), move |flood, peer, kind| {
            let (name, next) = (name.clone(), next.clone());
            async move { flood.ask_locate(&peer, kind, &name, next).await }
        });
        loop {
            // A node that is shutting down answers what it has at once instead of waiting on others.
            let next = tokio::select! {
                () = self.stopping.cancelled() => return None,
                next = tokio::time::timeout_at(deadline.into(), asks.join_next()) => next.ok()?,
            };
            match next {
                Some(Ok(Some(hit))) => return Some(hit),
                Some(_) => continue,
                None => return None,
            }
        }
    }

    /// Asks one peer where `name` is, in the protocol it speaks.
    async fn ask_locate(&self, peer: &str, kind: PeerKind, name: &str, route: Route) -> Option<Hit> {
        self.client.metrics().searches_out.inc();
        let node = NodeClient::new(&self.client, peer).deadline(route.budget);
        if kind != PeerKind::Seed {
            let call = Locate {
                name: name.to_string(),
                route: route.params(),
            };
            match node.locate(&call, self.options.max_content).await {
                Ok(answer) => {
                    self.peers.succeeded(peer, Some(PeerKind::Shoal));
                    let answer = answer?;
                    // A hit names the file asked for, or it is not an answer to this search.
                    return (answer.name == name).then(|| Hit::from(answer));
                }
                Err(error) => match error.fault_code() {
                    Some(crate::proto::faults::NOT_FOUND) | Some(crate::proto::faults::ACCESS_DENIED) => {
                        self.peers.succeeded(peer, Some(PeerKind::Shoal));
                        return None;
                    }
                    // The peer does not know the extension: it is a seed node.
                    Some(crate::proto::faults::BAD_CALL) if is_unknown_method(&error) => self.peers.succeeded(peer, Some(PeerKind::Seed)),
                    Some(_) => {
                        self.peers.succeeded(peer, None);
                        return None;
                    }
                    None => {
                        tracing::debug!(%error, "a peer failed");
                        self.peers.failed(peer);
                        return None;
                    }
                },
            }
        }
        let call = Query {
            name: name.to_string(),
            history: route.history,
        };
        match node.query(&call, self.options.max_content).await {
            Ok(content) => {
                self.peers.succeeded(peer, None);
                let content = content?;
                Some(Hit {
                    url: peer.to_string(),
                    name: name.to_string(),
                    size: content.len() as u64,
                    id: None,
                    content: Some(content),
                })
            }
            Err(error) => {
                if error.is_peer_failure() {
                    self.peers.failed(peer);
                } else {
                    self.peers.succeeded(peer, None);
                }
                None
            }
        }
    }

    /// Forwards a pattern search to the peers and merges what they answer into `merged`.
    ///
    /// What a forward found answers every search of the same shape for [`SHARED_SEARCH_FOR`]
    /// after it (`shoal.search` calls: a crowd looking for more holders of one id); a search
    /// with a live view ([`Flood::forward_search_each`]) is always forwarded afresh.
    pub async fn forward_search(self: &Arc<Self>, pattern: &str, route: Route, merged: &mut Merged) {
        let shape = SearchShape {
            pattern: pattern.to_string(),
            ttl: route.ttl,
            history: route.history.clone(),
            budget: route.budget,
        };
        let recent = {
            let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            shared.retain(|_, (at, _)| at.elapsed() < SHARED_SEARCH_FOR);
            shared.get(&shape).map(|(_, found)| found.clone())
        };
        if let Some(found) = recent {
            for found in found {
                merged.add(found);
            }
            return;
        }
        let mut fresh = Merged::default();
        self.forward_search_each(pattern, route, &mut fresh, |_| {}).await;
        let found = fresh.into_sorted();
        {
            let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            if shared.len() < MAX_SHARED_SEARCHES || shared.contains_key(&shape) {
                shared.insert(shape, (Instant::now(), found.clone()));
            }
        }
        for found in found {
            merged.add(found);
        }
    }

    /// Forwards a pattern search on its own, calling `each` with every peer's answer as it
    /// arrives (a live view of the results), and merges them into `merged`.
    pub async fn forward_search_each(self: &Arc<Self>, pattern: &str, route: Route, merged: &mut Merged, mut each: impl FnMut(&[Match])) {
        let Some(Hop { next, exclude, deadline }) = route.next_hop(self.me()) else {
            return;
        };
        let pattern = pattern.to_string();
        let mut asks = self.spawn_asks(self.fanout(&exclude, false), move |flood, peer, _| {
            let (pattern, next) = (pattern.clone(), next.clone());
            async move { flood.ask_search(&peer, &pattern, next).await }
        });
        loop {
            let joined = tokio::select! {
                () = self.stopping.cancelled() => break,
                next = tokio::time::timeout_at(deadline.into(), asks.join_next()) => match next {
                    Ok(Some(joined)) => joined,
                    Ok(None) | Err(_) => break,
                },
            };
            let found = joined.unwrap_or_default();
            if !found.is_empty() {
                each(&found);
            }
            for found in found {
                merged.add(found);
            }
        }
    }

    async fn ask_search(&self, peer: &str, pattern: &str, route: Route) -> Vec<Match> {
        self.client.metrics().searches_out.inc();
        let call = Search {
            pattern: pattern.to_string(),
            route: route.params(),
        };
        match NodeClient::new(&self.client, peer).deadline(route.budget).search(&call).await {
            Ok(found) => {
                self.peers.succeeded(peer, Some(PeerKind::Shoal));
                found.into_iter().map(Match::from).collect()
            }
            Err(error) => {
                match error.fault_code() {
                    None => {
                        self.peers.failed(peer);
                    }
                    Some(crate::proto::faults::BAD_CALL) if is_unknown_method(&error) => self.peers.succeeded(peer, Some(PeerKind::Seed)),
                    Some(_) => self.peers.succeeded(peer, None),
                }
                Vec::new()
            }
        }
    }

    /// Peer exchange: asks live shoal peers for the peers they know and learns those that
    /// answer as nodes. Returns how many peers were new.
    pub async fn exchange_peers(&self) -> usize {
        let mut learned = 0;
        for (peer, kind) in self.peers.live(&[]).into_iter().take(MAX_FANOUT) {
            if kind == PeerKind::Seed {
                continue;
            }
            let Ok(urls) = NodeClient::new(&self.client, &peer).peers().await else {
                continue;
            };
            for url in urls {
                if self.learn(&url).await.unwrap_or(false) {
                    learned += 1;
                }
            }
        }
        learned
    }

    /// Learns a peer named by someone else: it joins the table only after it answered as a
    /// node (any well-formed XML-RPC answer, a fault included). Returns whether it was new.
    pub async fn learn(&self, url: &str) -> Result<bool, peers::PeerError> {
        let admitted = self.peers.admissible(url)?;
        // A ticket's addresses are hints for dialling its node; its key decides who answers.
        // They are kept for peers in the table (a known node may have moved) and for one
        // being probed, and forgotten when the probe fails, so strangers cannot fill memory.
        self.client.learn_ticket(url, crate::net::Trust::Peer);
        let Some(url) = admitted else { return Ok(false) };
        let probe = NodeClient::new(&self.client, &url).list_methods().await;
        match probe {
            Ok(_) | Err(CallError::Fault { .. }) => self.peers.add_learnt(&url).map(|(_, added)| added),
            Err(error) => {
                self.client.forget_ticket(&url);
                tracing::debug!(%url, %error, "a peer we were told of did not answer as a node");
                if matches!(error, CallError::Refused { .. }) {
                    return Err(peers::PeerError::Refused(url));
                }
                Err(peers::PeerError::NotANode(url))
            }
        }
    }

    /// The seed's `hello`: learns `raw` now when it answers, and otherwise keeps it as a
    /// candidate that is probed again later (a node introduced before it starts joins once it
    /// runs). Errors only for what can never be a node this one may reach.
    pub async fn hello(&self, raw: &str) -> Result<(), peers::PeerError> {
        match self.learn(raw).await {
            Ok(_) | Err(peers::PeerError::IsSelf(_)) => Ok(()),
            Err(peers::PeerError::NotANode(url)) => {
                let key = peers::limit_key(&url);
                let (host, subnet) = match &key {
                    Some((host, subnet)) => (Some(host.as_str()), subnet.clone()),
                    None => (None, None),
                };
                let kept = self.lock_candidates().add(raw, host, subnet, Instant::now());
                if kept {
                    tracing::debug!(%url, "an introduced node did not answer yet; it is tried again later");
                    Ok(())
                } else {
                    Err(peers::PeerError::Crowded)
                }
            }
            Err(error) => Err(error),
        }
    }

    fn lock_candidates(&self) -> std::sync::MutexGuard<'_, candidates::Candidates> {
        self.candidates.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Probes the introduced nodes whose wait is over; those that answer join the table.
    /// Returns how many joined.
    pub async fn retry_candidates(&self) -> usize {
        let due = self.lock_candidates().due(Instant::now());
        let probes = due.into_iter().map(|raw| async move {
            let result = self.learn(&raw).await;
            let mut candidates = self.lock_candidates();
            match result {
                Err(peers::PeerError::NotANode(_)) => {
                    candidates.failed(&raw, Instant::now());
                    false
                }
                Ok(added) => {
                    candidates.remove(&raw);
                    if added {
                        tracing::info!(url = %raw, "an introduced node answered and joined");
                    }
                    added
                }
                // Known now, itself, crowded or refused: nothing more to try.
                Err(_) => {
                    candidates.remove(&raw);
                    false
                }
            }
        });
        futures_util::future::join_all(probes)
            .await
            .into_iter()
            .filter(|added| *added)
            .count()
    }

    /// How many introduced nodes wait for a probe.
    pub fn candidates(&self) -> usize {
        self.lock_candidates().len()
    }

    /// Says `hello` with this node's URL to every known peer, so the introduction goes both ways.
    pub async fn introduce(&self) {
        let me = self.me();
        // Nodes reached over iroh are told this node's ticket, so they can dial it back.
        let ticket = self.client.iroh().map(|iroh| iroh.ticket().encode());
        let calls = self.peers.list().into_iter().map(|peer| {
            let me = match &ticket {
                Some(ticket) if peer.url.starts_with("iroh://") => ticket.as_str(),
                _ => me,
            };
            async move {
                if let Err(error) = NodeClient::new(&self.client, &peer.url).hello(me).await {
                    tracing::debug!(peer = %peer.url, %error, "introduction failed");
                }
            }
        });
        futures_util::future::join_all(calls).await;
    }
}

impl<D: Discover + ?Sized> Discover for Arc<D> {
    fn holders(&self, id: ContentId) -> futures_util::future::BoxFuture<'_, Vec<String>> {
        (**self).holders(id)
    }
}

impl Discover for Flood {
    fn holders(&self, id: ContentId) -> futures_util::future::BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            let peers: Vec<String> = self.peers.live(&[]).into_iter().map(|(url, _)| url).collect();
            let found = search_peers(&self.client, &peers, &id.to_string(), self.options.search_deadline).await;
            found.into_iter().filter(|m| m.id == id).flat_map(|m| m.urls).collect()
        })
    }
}

/// Two [`Discover`]s asked at once, their answers joined (the flood and the DHT).
pub struct Both(pub Arc<dyn Discover>, pub Arc<dyn Discover>);

impl Discover for Both {
    fn holders(&self, id: ContentId) -> futures_util::future::BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            let (mut first, second) = futures_util::future::join(self.0.holders(id), self.1.holders(id)).await;
            for url in second {
                if !first.contains(&url) {
                    first.push(url);
                }
            }
            first
        })
    }
}

/// A fixed list of peers asked in one hop (`shoal get` without a node, tests).
pub struct FixedPeers {
    pub client: Client,
    pub peers: Vec<String>,
    pub deadline: Duration,
}

impl Discover for FixedPeers {
    fn holders(&self, id: ContentId) -> futures_util::future::BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            let found = search_peers(&self.client, &self.peers, &id.to_string(), self.deadline).await;
            found.into_iter().filter(|m| m.id == id).flat_map(|m| m.urls).collect()
        })
    }
}

/// Keeps asking `discover` for more holders of `id` every `every` while a download runs,
/// handing each new one to `more` (at most a few times the engine's peer cap in all). Ends
/// when `more` is closed.
pub async fn find_more(
    discover: impl Discover,
    id: ContentId,
    mut known: Vec<String>,
    every: Duration,
    more: tokio::sync::mpsc::Sender<crate::engine::NewSource>,
) {
    loop {
        tokio::select! {
            () = more.closed() => return,
            () = tokio::time::sleep(every) => {}
        }
        for url in discover.holders(id).await {
            if known.contains(&url) || known.len() >= 4 * crate::engine::MAX_PEER_SOURCES {
                continue;
            }
            known.push(url.clone());
            tracing::info!(%url, "found another holder");
            if more.send(crate::engine::NewSource::Peer(url)).await.is_err() {
                return;
            }
        }
    }
}

/// Reads one match of a `shoal.search` answer with the same checks as a whole answer.
pub fn match_from_value(value: Value) -> Option<Match> {
    search_answer(Value::Array(vec![value])).pop().map(Match::from)
}
