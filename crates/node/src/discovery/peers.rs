//! The peer table: who this node knows, which of them answer, and what kind of node each is.
//!
//! Peers come from `--peer` and the peers file (*configured*: the owner's, never evicted) and
//! from `hello` calls and peer exchange (*learnt*: strangers' word). A learnt peer joins only
//! after it answered as a node (see `Flood::learn`); the table holds one entry per `host:port`,
//! at most [`PeerOptions::max_per_host`] learnt entries per host and
//! [`PeerOptions::max_per_subnet`] per /24 (IPv4) or /48 (IPv6), so one caller cannot fill it; when
//! it is full, the least useful learnt peer (failing, then never heard from, then oldest) makes
//! room. A peer that fails
//! is not dropped at once (the seed drops a peer on its first error): it is skipped for a
//! backoff that doubles with each failure, retried after it, and dropped only after
//! `drop_after_failures` failures in a row that span at least `drop_after`. The table is kept in
//! the state store so that it survives restarts. Its lock is a std `Mutex`, held only for short
//! in-memory sections, never across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::proto::url::{SelfUrl, UrlError, holder, host_port, normalize};

const PEERS: TableDefinition<&str, u8> = TableDefinition::new("peers");
/// The bit of a stored peer's code that marks it learnt.
const LEARNT: u8 = 0x80;

/// What protocol a peer speaks, learnt from its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerKind {
    /// Not known yet: try the shoal extension first.
    Unknown,
    /// Answers the `shoal.` methods.
    Shoal,
    /// Speaks only the seed's protocol (`hello`, `query`, `fetch`).
    Seed,
}

impl PeerKind {
    /// The kind as users and the wire see it.
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Unknown => "unknown",
            PeerKind::Shoal => "shoal",
            PeerKind::Seed => "seed",
        }
    }

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => PeerKind::Shoal,
            2 => PeerKind::Seed,
            _ => PeerKind::Unknown,
        }
    }
}

/// Tuning of the peer table.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// Most peers kept; further ones are refused until others leave.
    pub max_peers: usize,
    /// First backoff after a failure; it doubles with each further failure.
    pub backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// Failures in a row before a peer may be dropped.
    pub drop_after_failures: u32,
    /// How long a peer must have kept failing before it is dropped.
    pub drop_after: Duration,
    /// Most learnt peers on one host (ports differ).
    pub max_per_host: usize,
    /// Most learnt peers in one /24 (IPv4) or /48 (IPv6).
    pub max_per_subnet: usize,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            max_peers: 512,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            drop_after_failures: 6,
            drop_after: Duration::from_secs(600),
            max_per_host: 4,
            max_per_subnet: 16,
        }
    }
}

#[derive(Debug, Clone)]
struct PeerState {
    kind: PeerKind,
    /// Learnt from a stranger (hello, peer exchange), not configured by the owner.
    learnt: bool,
    /// When it last answered.
    last_ok: Option<Instant>,
    added: Instant,
    failures: u32,
    first_failure: Option<Instant>,
    retry_at: Option<Instant>,
    /// Found on the LAN (mDNS) rather than named by anyone.
    local: bool,
}

/// One row of the peer table, as shown to users.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub url: String,
    pub kind: PeerKind,
    pub failures: u32,
    /// True when the peer is in backoff and skipped for now.
    pub backing_off: bool,
    /// Learnt from a stranger rather than configured by the owner.
    pub learnt: bool,
    /// How long ago it last answered, if ever.
    pub last_seen: Option<Duration>,
    /// Found on the LAN.
    pub local: bool,
    /// How the connection to it runs (`direct` or `relay`), for a node reached over iroh.
    pub path: Option<&'static str>,
}

/// Why a peer was not added.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("{0} is this node's own URL")]
    IsSelf(String),
    #[error("the peer table is full ({0} peers)")]
    Full(usize),
    #[error("too many peers from the same address or network")]
    Crowded,
    #[error("{0} did not answer as a node")]
    NotANode(String),
    #[error("{0} is not an address this node may contact")]
    Refused(String),
    #[error("saving the peer table failed: {0}")]
    Store(String),
}

/// The table of known peers, shared by all tasks.
pub struct Peers {
    me: SelfUrl,
    options: PeerOptions,
    db: Arc<redb::Database>,
    table: Mutex<HashMap<String, PeerState>>,
}

impl Peers {
    /// Loads the table from the state store.
    pub fn load(me: SelfUrl, options: PeerOptions, db: Arc<redb::Database>) -> Result<Self, PeerError> {
        let store = |e: &dyn std::fmt::Display| PeerError::Store(e.to_string());
        let mut table = HashMap::new();
        let txn = db.begin_write().map_err(|e| store(&e))?;
        txn.open_table(PEERS).map_err(|e| store(&e))?;
        txn.commit().map_err(|e| store(&e))?;
        let read = db.begin_read().map_err(|e| store(&e))?;
        let rows = read.open_table(PEERS).map_err(|e| store(&e))?;
        for row in rows.iter().map_err(|e| store(&e))? {
            let (url, code) = row.map_err(|e| store(&e))?;
            if !me.is_me(url.value()) {
                let code = code.value();
                table.insert(
                    url.value().to_string(),
                    PeerState::new(PeerKind::from_code(code & 0x7f), code & LEARNT != 0),
                );
            }
        }
        Ok(Peers {
            me,
            options,
            db,
            table: Mutex::new(table),
        })
    }

    /// This node's own URL.
    pub fn me(&self) -> &SelfUrl {
        &self.me
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PeerState>> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a peer the owner configured (any spelling); returns its canonical URL and whether
    /// it was new. Configured peers are never evicted.
    pub fn add(&self, raw: &str) -> Result<(String, bool), PeerError> {
        let url = normalize(raw)?;
        if self.me.is_me(&url) {
            return Err(PeerError::IsSelf(url));
        }
        // A peer already known on this host:port keeps its entry (and kind); it becomes the
        // owner's, which is stored only when that changed.
        let (url, kind, changed, added) = {
            let mut table = self.lock();
            let known = find_host_port(&table, &url).map(str::to_string);
            match known.and_then(|known| table.get_mut(&known).map(|state| (known, state))) {
                Some((known, state)) => {
                    let changed = std::mem::replace(&mut state.learnt, false);
                    (known, state.kind, changed, false)
                }
                None => {
                    table.insert(url.clone(), PeerState::new(PeerKind::Unknown, false));
                    (url, PeerKind::Unknown, true, true)
                }
            }
        };
        if changed {
            self.save(&url, Some(kind))?;
        }
        Ok((url, added))
    }

    /// Whether a peer someone else named may join: its URL is a node's base URL, it is not
    /// this node, and its host and network are below their limits. `Ok(None)` when it is known.
    pub fn admissible(&self, raw: &str) -> Result<Option<String>, PeerError> {
        let url = holder(raw)?;
        if self.me.is_me(&url) {
            return Err(PeerError::IsSelf(url));
        }
        let table = self.lock();
        if find_host_port(&table, &url).is_some() {
            return Ok(None);
        }
        let (host, subnet) = (host_of(&url), subnet_of(&url));
        // Nodes on this machine share its loopback address: only a local user can run them.
        if subnet.as_deref() == Some(&[127, 0, 0][..]) || host == "[::1]" {
            return Ok(Some(url));
        }
        let learnt = table.iter().filter(|(_, s)| s.learnt);
        let (mut same_host, mut same_subnet) = (0, 0);
        for (other, _) in learnt {
            same_host += usize::from(host_of(other) == host);
            same_subnet += usize::from(subnet.is_some() && subnet_of(other) == subnet);
        }
        if same_host >= self.options.max_per_host || same_subnet >= self.options.max_per_subnet {
            return Err(PeerError::Crowded);
        }
        Ok(Some(url))
    }

    /// Adds a learnt peer that answered as a node, evicting the least useful learnt peer when
    /// the table is full.
    pub fn add_learnt(&self, url: &str) -> Result<(String, bool), PeerError> {
        let Some(url) = self.admissible(url)? else {
            return Ok((normalize(url)?, false));
        };
        let evicted = {
            let mut table = self.lock();
            let mut evicted = None;
            if table.len() >= self.options.max_peers {
                let victim = table
                    .iter()
                    .filter(|(_, s)| s.learnt)
                    .min_by_key(|(_, s)| (std::cmp::Reverse(s.failures), s.last_ok.is_some(), s.last_ok, s.added))
                    .map(|(url, _)| url.clone());
                match victim {
                    Some(victim) => {
                        table.remove(&victim);
                        evicted = Some(victim);
                    }
                    None => return Err(PeerError::Full(self.options.max_peers)),
                }
            }
            let mut state = PeerState::new(PeerKind::Unknown, true);
            state.last_ok = Some(Instant::now());
            table.insert(url.clone(), state);
            evicted
        };
        if let Some(victim) = evicted {
            tracing::debug!(%victim, "evicted a learnt peer to make room");
            let _ = self.save(&victim, None);
        }
        self.save(&url, Some(PeerKind::Unknown))?;
        Ok((url, true))
    }

    /// The peers to ask now: not in backoff, not excluded.
    pub fn live(&self, exclude: &[String]) -> Vec<(String, PeerKind)> {
        let now = Instant::now();
        let mut live: Vec<_> = self
            .lock()
            .iter()
            .filter(|(url, state)| state.retry_at.is_none_or(|at| at <= now) && !exclude.contains(url))
            .map(|(url, state)| (url.clone(), state.kind))
            .collect();
        live.sort();
        live
    }

    /// [`Peers::live`] in two tiers: the peers the owner configured, then those learnt from
    /// strangers.
    pub fn live_tiers(&self, exclude: &[String]) -> (Vec<String>, Vec<String>) {
        let live = self.live(exclude);
        let table = self.lock();
        live.into_iter()
            .map(|(url, _)| url)
            .partition(|url| table.get(url).is_some_and(|state| !state.learnt))
    }

    /// Every known peer, for display and peer exchange.
    pub fn list(&self) -> Vec<PeerInfo> {
        let now = Instant::now();
        let mut rows: Vec<_> = self
            .lock()
            .iter()
            .map(|(url, s)| PeerInfo {
                url: url.clone(),
                kind: s.kind,
                failures: s.failures,
                backing_off: s.retry_at.is_some_and(|at| at > now),
                learnt: s.learnt,
                last_seen: s.last_ok.map(|at| now.saturating_duration_since(at)),
                local: s.local,
                path: None,
            })
            .collect();
        rows.sort_by(|a, b| a.url.cmp(&b.url));
        rows
    }

    /// Marks a peer as found on the LAN (or no longer seen there).
    pub fn set_local(&self, url: &str, local: bool) {
        if let Some(state) = self.lock().get_mut(url) {
            state.local = local;
        }
    }

    /// Records that a peer answered (with a result or a fault).
    pub fn succeeded(&self, url: &str, kind: Option<PeerKind>) {
        let changed_kind = {
            let mut table = self.lock();
            let Some(state) = table.get_mut(url) else { return };
            state.failures = 0;
            state.first_failure = None;
            state.retry_at = None;
            state.last_ok = Some(Instant::now());
            match kind {
                Some(kind) if kind != state.kind => {
                    state.kind = kind;
                    Some(kind)
                }
                _ => None,
            }
        };
        if let Some(kind) = changed_kind
            && let Err(error) = self.save(url, Some(kind))
        {
            tracing::warn!(%url, %error, "could not save a peer's kind");
        }
    }

    /// Records that a peer could not be reached; drops it after repeated failures over time.
    /// Returns true when the peer was dropped.
    pub fn failed(&self, url: &str) -> bool {
        let now = Instant::now();
        let dropped = {
            let mut table = self.lock();
            let Some(state) = table.get_mut(url) else { return false };
            state.failures += 1;
            let first = *state.first_failure.get_or_insert(now);
            let exponent = state.failures.saturating_sub(1).min(16);
            let backoff = self.options.backoff.saturating_mul(1 << exponent).min(self.options.max_backoff);
            state.retry_at = Some(now + backoff);
            // A configured peer is the owner's: it backs off but stays.
            let dropped =
                state.learnt && state.failures >= self.options.drop_after_failures && now.duration_since(first) >= self.options.drop_after;
            if dropped {
                table.remove(url);
            }
            dropped
        };
        if dropped {
            tracing::info!(%url, "dropped a peer after repeated failures");
            if let Err(error) = self.save(url, None) {
                tracing::warn!(%url, %error, "could not remove a dropped peer from the store");
            }
        }
        dropped
    }

    fn save(&self, url: &str, kind: Option<PeerKind>) -> Result<(), PeerError> {
        let store = |e: &dyn std::fmt::Display| PeerError::Store(e.to_string());
        let learnt = self.lock().get(url).is_some_and(|s| s.learnt);
        let txn = self.db.begin_write().map_err(|e| store(&e))?;
        {
            let mut table = txn.open_table(PEERS).map_err(|e| store(&e))?;
            match kind {
                Some(kind) => table.insert(url, kind.code() | if learnt { LEARNT } else { 0 }).map(drop),
                None => table.remove(url).map(drop),
            }
            .map_err(|e| store(&e))?;
        }
        txn.commit().map_err(|e| store(&e))
    }
}

/// The peer URLs kept in a state store, for commands that run without a node.
pub fn stored_urls(db: &redb::Database) -> Vec<String> {
    let Ok(read) = db.begin_read() else { return Vec::new() };
    let Ok(rows) = read.open_table(PEERS) else { return Vec::new() };
    let Ok(iter) = rows.iter() else { return Vec::new() };
    iter.filter_map(|row| row.ok().map(|(url, _)| url.value().to_string())).collect()
}

/// The entry of the table on the same `host:port` as `url`, if any.
fn find_host_port<'a>(table: &'a HashMap<String, PeerState>, url: &str) -> Option<&'a str> {
    let key = host_port(url);
    table.keys().find(|known| host_port(known) == key).map(String::as_str)
}

/// What the limits on strangers' introductions key on for `url` (a normalised URL): its host
/// and network, or `None` on this machine's loopback (only a local user can run nodes there).
pub fn limit_key(url: &str) -> Option<(String, Option<Vec<u8>>)> {
    let subnet = subnet_of(url);
    let host = host_of(url);
    if subnet.as_deref() == Some(&[127, 0, 0][..]) || host == "[::1]" {
        return None;
    }
    Some((host.to_string(), subnet))
}

fn host_of(url: &str) -> &str {
    let hp = host_port(url);
    hp.rsplit_once(':').map_or(hp, |(host, _)| host)
}

/// The /24 of an IPv4 host or the /48 of an IPv6 one; `None` for a name.
fn subnet_of(url: &str) -> Option<Vec<u8>> {
    let host = host_of(url).trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => Some(v4.octets()[..3].to_vec()),
        std::net::IpAddr::V6(v6) => Some(v6.octets()[..6].to_vec()),
    }
}

impl PeerState {
    fn new(kind: PeerKind, learnt: bool) -> Self {
        PeerState {
            kind,
            learnt,
            last_ok: None,
            added: Instant::now(),
            failures: 0,
            first_failure: None,
            retry_at: None,
            local: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(dir: &std::path::Path, options: PeerOptions) -> Peers {
        let db = Arc::new(redb::Database::create(dir.join("state.redb")).unwrap());
        let me = SelfUrl::new("http://127.0.0.1:4000", "127.0.0.1:4000".parse().unwrap()).unwrap();
        Peers::load(me, options, db).unwrap()
    }

    #[test]
    fn refuses_itself_and_dedups_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let peers = table(dir.path(), PeerOptions::default());
        assert!(matches!(peers.add("http://localhost:4000/"), Err(PeerError::IsSelf(_))));
        assert_eq!(peers.add("http://localhost:5000/").unwrap(), ("http://127.0.0.1:5000".into(), true));
        assert!(!peers.add("http://127.0.0.1:5000").unwrap().1);
        assert_eq!(peers.list().len(), 1);
    }

    #[test]
    fn a_failing_peer_backs_off_then_is_dropped_only_after_repeated_failures() {
        let dir = tempfile::tempdir().unwrap();
        let options = PeerOptions {
            drop_after_failures: 3,
            drop_after: Duration::ZERO,
            backoff: Duration::from_secs(60),
            ..Default::default()
        };
        let peers = table(dir.path(), options);
        let (url, _) = peers.add_learnt("http://127.0.0.1:5000").unwrap();
        assert!(!peers.failed(&url));
        assert!(peers.live(&[]).is_empty(), "in backoff after a failure");
        assert_eq!(peers.list()[0].failures, 1);
        peers.succeeded(&url, Some(PeerKind::Shoal));
        assert_eq!(peers.live(&[]), vec![(url.clone(), PeerKind::Shoal)]);
        assert!(!peers.failed(&url));
        assert!(!peers.failed(&url));
        assert!(peers.failed(&url), "dropped on the third failure in a row");
        assert!(peers.list().is_empty());
    }

    #[test]
    fn configured_peers_are_never_dropped_or_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let options = PeerOptions {
            drop_after_failures: 1,
            drop_after: Duration::ZERO,
            max_peers: 2,
            ..Default::default()
        };
        let peers = table(dir.path(), options);
        let (owner, _) = peers.add("http://127.0.0.1:5000").unwrap();
        for _ in 0..5 {
            assert!(!peers.failed(&owner));
        }
        peers.add_learnt("http://127.0.0.1:6001").unwrap();
        let (_, added) = peers.add_learnt("http://127.0.0.1:6002").unwrap();
        assert!(added, "a full table evicts a learnt peer");
        let urls: Vec<String> = peers.list().into_iter().map(|p| p.url).collect();
        assert!(urls.contains(&owner), "{urls:?}");
        assert_eq!(urls.len(), 2);
    }

    #[test]
    fn one_entry_per_host_port_and_limits_per_host_and_subnet() {
        let dir = tempfile::tempdir().unwrap();
        let options = PeerOptions {
            max_per_host: 2,
            max_per_subnet: 3,
            ..Default::default()
        };
        let peers = table(dir.path(), options);
        assert!(peers.add_learnt("http://10.0.0.1:1").unwrap().1);
        assert!(
            !peers.add_learnt("http://10.0.0.1:1/RPC2").unwrap().1,
            "same host:port, another path"
        );
        assert!(peers.add_learnt("http://10.0.0.1:2").unwrap().1);
        assert!(matches!(peers.add_learnt("http://10.0.0.1:3"), Err(PeerError::Crowded)), "per host");
        assert!(peers.add_learnt("http://10.0.0.2:1").unwrap().1);
        assert!(matches!(peers.add_learnt("http://10.0.0.3:1"), Err(PeerError::Crowded)), "per /24");
        assert!(peers.add_learnt("http://10.0.1.3:1").unwrap().1, "another /24");
        assert!(peers.add("http://10.0.0.9:1").unwrap().1, "the owner's peers are not limited");
        // The owner naming a learnt peer in another spelling keeps its entry and makes it his.
        let before = peers.list().len();
        assert_eq!(peers.add("http://10.0.0.1:1/RPC2").unwrap(), ("http://10.0.0.1:1".into(), false));
        assert_eq!(peers.list().len(), before);
        assert!(peers.list().iter().any(|p| p.url == "http://10.0.0.1:1" && !p.learnt));
        assert!(matches!(peers.add_learnt("http://u:p@10.9.9.9:1"), Err(PeerError::Url(_))));
    }

    #[test]
    fn failures_must_span_time_before_a_drop() {
        let dir = tempfile::tempdir().unwrap();
        let options = PeerOptions {
            drop_after_failures: 1,
            drop_after: Duration::from_secs(3600),
            ..Default::default()
        };
        let peers = table(dir.path(), options);
        let (url, _) = peers.add("http://127.0.0.1:5000").unwrap();
        for _ in 0..10 {
            assert!(!peers.failed(&url));
        }
        assert_eq!(peers.list().len(), 1);
    }

    #[test]
    fn the_table_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let peers = table(dir.path(), PeerOptions::default());
            let (url, _) = peers.add("http://127.0.0.1:5000").unwrap();
            peers.succeeded(&url, Some(PeerKind::Seed));
        }
        let peers = table(dir.path(), PeerOptions::default());
        assert_eq!(peers.live(&[]), vec![("http://127.0.0.1:5000".into(), PeerKind::Seed)]);
    }
}
