//! The peer table: who this node knows, which of them answer, and what kind of node each is.
//!
//! Peers come from `--peer`, the peers file, `hello` calls and peer exchange. A peer that fails
//! is not dropped at once (the seed drops a peer on its first error): it is skipped for a
//! backoff that doubles with each failure, retried after it, and dropped only after
//! `drop_after_failures` failures in a row that span at least `drop_after`. The table is kept in
//! the state store so that it survives restarts. Its lock is a std `Mutex`, held only for short
//! in-memory sections, never across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::peer_url::{SelfUrl, UrlError, normalize};

const PEERS: TableDefinition<&str, u8> = TableDefinition::new("peers");

/// What protocol a peer speaks, learnt from its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerKind {
    /// Not known yet: try the shoal extension first.
    Unknown,
    /// Answers the `shoal.` methods.
    Shoal,
    /// Speaks only the seed's protocol (`hello`, `query`, `fetch`).
    Seed,
}

impl PeerKind {
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
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            max_peers: 512,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            drop_after_failures: 6,
            drop_after: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone)]
struct PeerState {
    kind: PeerKind,
    failures: u32,
    first_failure: Option<Instant>,
    retry_at: Option<Instant>,
}

/// One row of the peer table, as shown to users.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerInfo {
    pub url: String,
    pub kind: PeerKind,
    pub failures: u32,
    /// True when the peer is in backoff and skipped for now.
    pub backing_off: bool,
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
            let (url, kind) = row.map_err(|e| store(&e))?;
            if !me.is_me(url.value()) {
                table.insert(url.value().to_string(), PeerState::new(PeerKind::from_code(kind.value())));
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

    /// Adds a peer (any spelling); returns its canonical URL and whether it was new.
    pub fn add(&self, raw: &str) -> Result<(String, bool), PeerError> {
        let url = normalize(raw)?;
        if self.me.is_me(&url) {
            return Err(PeerError::IsSelf(url));
        }
        let added = {
            let mut table = self.lock();
            if table.contains_key(&url) {
                false
            } else if table.len() >= self.options.max_peers {
                return Err(PeerError::Full(self.options.max_peers));
            } else {
                table.insert(url.clone(), PeerState::new(PeerKind::Unknown));
                true
            }
        };
        if added {
            self.save(&url, Some(PeerKind::Unknown))?;
        }
        Ok((url, added))
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
            })
            .collect();
        rows.sort_by(|a, b| a.url.cmp(&b.url));
        rows
    }

    /// Records that a peer answered (with a result or a fault).
    pub fn succeeded(&self, url: &str, kind: Option<PeerKind>) {
        let changed_kind = {
            let mut table = self.lock();
            let Some(state) = table.get_mut(url) else { return };
            state.failures = 0;
            state.first_failure = None;
            state.retry_at = None;
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
            let dropped = state.failures >= self.options.drop_after_failures && now.duration_since(first) >= self.options.drop_after;
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
        let txn = self.db.begin_write().map_err(|e| store(&e))?;
        {
            let mut table = txn.open_table(PEERS).map_err(|e| store(&e))?;
            match kind {
                Some(kind) => table.insert(url, kind.code()).map(drop),
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

impl PeerState {
    fn new(kind: PeerKind) -> Self {
        PeerState {
            kind,
            failures: 0,
            first_failure: None,
            retry_at: None,
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
        let (url, _) = peers.add("http://127.0.0.1:5000").unwrap();
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
