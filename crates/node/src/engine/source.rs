//! The sources of a download: what kind each is ([`SourceKind`]), which are admitted
//! ([`Sources`]: one per host:port for peers, at most [`MAX_PEER_SOURCES`] peers), how users see
//! each ([`SourceStat`], [`SourceState`]), and what the connections of one source share while
//! the download runs ([`SourceRun`]: its connection count, its first answer's validators, a
//! `Retry-After` hold, its failures and bad pieces, and the token that drops it).

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use shoal_index::ContentId;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::answer::Validators;
use super::conns::Conns;
use super::live::Shared;
use super::{MAX_PEER_SOURCES, MAX_RETRY_AFTER, NewSource};
use crate::net::Trust;
use crate::proto::have::Bits;

/// What a source is: a shoal node serving `/content/<id>` (checked piece by piece against the
/// content id) or a plain HTTP mirror (the owner's word; checked whole at the end unless a
/// shoal node gave the verification data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Peer,
    Mirror,
}

impl SourceKind {
    /// The kind as it is written on the wire (XML-RPC, JSON, `--json`) and in metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Peer => "peer",
            SourceKind::Mirror => "mirror",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The state of one source, as shown to users (see STATE.md for what moves it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    Connecting,
    Live,
    Retrying,
    Banned,
    Idle,
}

impl SourceState {
    pub fn name(&self) -> &'static str {
        match self {
            SourceState::Connecting => "connecting",
            SourceState::Live => "live",
            SourceState::Retrying => "retrying",
            SourceState::Banned => "banned",
            SourceState::Idle => "idle",
        }
    }
}

/// Per-source figures.
#[derive(Debug, Clone)]
pub struct SourceStat {
    pub url: String,
    pub kind: SourceKind,
    pub state: SourceState,
    /// Verified bytes this source contributed.
    pub bytes: u64,
    pub bad_pieces: u32,
    pub failures: u32,
    pub last_error: Option<String>,
    /// Connections open to this source now.
    pub connections: usize,
    /// Pieces it holds, when it holds only part of the file (a swarm's member); `None`: all.
    pub held: Option<u64>,
}

/// One admitted source.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub url: reqwest::Url,
    pub kind: SourceKind,
    pub trust: Trust,
    /// Its place in [`Sources`] and in [`super::Progress::sources`].
    pub index: usize,
    /// A peer's `/have/<id>`: what it holds (see [`crate::proto::have`]).
    pub have: Option<reqwest::Url>,
}

impl Source {
    /// The URL without credentials, for logs and users.
    pub fn shown(&self) -> String {
        crate::proto::url::without_credentials(self.url.as_str())
    }
}

/// The sources a download has admitted, in the order they came.
#[derive(Debug)]
pub(super) struct Sources {
    /// The content id, which peers are asked for.
    id: Option<ContentId>,
    list: Vec<Source>,
}

impl Sources {
    /// No source yet, for content `id`.
    pub fn new(id: Option<ContentId>) -> Sources {
        Sources { id, list: Vec::new() }
    }

    /// Admits `new` unless it cannot be reached as given (a peer without a content id, a
    /// mirror that is not http(s)), duplicates one admitted (the same URL, or a peer on the same
    /// host:port as another peer), or is a peer beyond [`MAX_PEER_SOURCES`]. Returns the
    /// admitted source.
    pub fn admit(&mut self, new: NewSource) -> Option<&Source> {
        let (url, kind, trust, have) = match &new {
            NewSource::Peer(base) => {
                let id = self.id?;
                match (
                    crate::net::node_url(base, &format!("/content/{id}")),
                    crate::net::node_url(base, &format!("/have/{id}")),
                ) {
                    (Ok(url), Ok(have)) => (url, SourceKind::Peer, Trust::Peer, Some(have)),
                    _ => return None,
                }
            }
            NewSource::Mirror(url) => match reqwest::Url::parse(url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => (url, SourceKind::Mirror, Trust::Owner, None),
                _ => return None,
            },
        };
        // One source per host:port, and a bounded number of peers per download, however many
        // holders an answer names.
        let key = (url.host_str().map(str::to_string), url.port_or_known_default());
        let peers = self.of(SourceKind::Peer).count();
        let duplicate = self.list.iter().any(|s| {
            s.url == url
                || (kind == SourceKind::Peer
                    && s.kind == SourceKind::Peer
                    && (s.url.host_str().map(str::to_string), s.url.port_or_known_default()) == key)
        });
        if duplicate || (kind == SourceKind::Peer && peers >= MAX_PEER_SOURCES) {
            return None;
        }
        let index = self.list.len();
        self.list.push(Source {
            url,
            kind,
            trust,
            index,
            have,
        });
        self.list.last()
    }

    pub fn all(&self) -> &[Source] {
        &self.list
    }

    /// The admitted sources of one kind.
    pub fn of(&self, kind: SourceKind) -> impl Iterator<Item = &Source> {
        self.list.iter().filter(move |s| s.kind == kind)
    }

    pub fn has(&self, kind: SourceKind) -> bool {
        self.of(kind).next().is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// One source of a running download, shared by its connections.
pub(super) struct SourceRun {
    pub source: Source,
    /// Cancelled when the source is dropped (banned, unusable, changed): ends every connection.
    pub dropped: CancellationToken,
    /// Set when a connection ended for good (the download finished or stopped, or the source
    /// gave up): no connection opens after that.
    pub closing: AtomicBool,
    conns: Mutex<Conns>,
    /// Woken when the source should open connections or stop.
    pub wake: Notify,
    /// Bytes received from this source over all its connections (for the adaptation).
    pub received: AtomicU64,
    pub bad: AtomicU32,
    pub failures: AtomicU32,
    /// Fixed by the first answer with data.
    validators: Mutex<Option<Validators>>,
    /// No request before this (a `Retry-After`).
    not_before: Mutex<Option<Instant>>,
    /// What the source holds, as far as this download knows.
    avail: Mutex<Avail>,
    /// Pieces a holder seeding a swarm asked to be asked for instead (see
    /// [`crate::proto::have::SPREAD_HEADER`]).
    hints: Mutex<Vec<u64>>,
    /// Spread refusals in a row that named nothing missing here, and until when hints are off.
    spread: Mutex<(u32, Option<Instant>)>,
}

/// Spread refusals in a row, naming nothing missing here, before hints are turned off a while.
const MAX_USELESS_SPREADS: u32 = 8;
/// How long hints stay off then.
const NO_HINTS_FOR: Duration = Duration::from_secs(10);

/// What a source holds (see [`super::avail`], which follows a peer's `/have`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Avail {
    /// Not known yet: its connections wait for the first answer.
    Unknown,
    /// The whole file (a mirror, a complete holder, or a node that does not say).
    Complete,
    /// These pieces, a set that only grows.
    Partial(Bits),
}

impl SourceRun {
    /// A source allowed at most `cap` connections; mirrors ramp by acceptance (see [`Conns`]).
    /// With `ask_have` (a peer, and pieces checked by hashes), what it holds is unknown until
    /// its `/have` answers; otherwise it holds everything.
    pub fn new(source: Source, cap: usize, ask_have: bool) -> SourceRun {
        let ramp = source.kind == SourceKind::Mirror;
        let avail = if ask_have && source.have.is_some() {
            Avail::Unknown
        } else {
            Avail::Complete
        };
        SourceRun {
            avail: Mutex::new(avail),
            hints: Mutex::new(Vec::new()),
            spread: Mutex::new((0, None)),
            source,
            dropped: CancellationToken::new(),
            closing: AtomicBool::new(false),
            conns: Mutex::new(Conns::new(cap, ramp)),
            wake: Notify::new(),
            received: AtomicU64::new(0),
            bad: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            validators: Mutex::new(None),
            not_before: Mutex::new(None),
        }
    }

    pub fn conns(&self) -> std::sync::MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the source with all its connections: shown as banned, for good.
    pub fn drop_source(&self, shared: &Shared, reason: String) {
        if !self.dropped.is_cancelled() {
            shared.net.metrics().sources_banned.inc();
        }
        shared.tally.progress.update(self.source.index, |s| {
            s.state = SourceState::Banned;
            s.last_error = Some(reason);
        });
        self.dropped.cancel();
    }

    /// True once an answer with data fixed the source's validators.
    pub fn answered_before(&self) -> bool {
        self.validators.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Checks an answer's validators against the first answer's (fixing them on the first).
    pub fn check_validators(&self, headers: &reqwest::header::HeaderMap) -> Result<(), String> {
        let seen = Validators::of(headers);
        let mut fixed = self.validators.lock().unwrap_or_else(|p| p.into_inner());
        match &*fixed {
            None => {
                *fixed = Some(seen);
                Ok(())
            }
            Some(first) => match seen.differs_from(first) {
                Some(what) => Err(format!("the file changed while downloading ({what})")),
                None => Ok(()),
            },
        }
    }

    /// The strong ETag to send in `If-Range`, once the first answer gave one.
    pub fn if_range(&self) -> Option<String> {
        let fixed = self.validators.lock().unwrap_or_else(|p| p.into_inner());
        fixed.as_ref()?.strong_etag().map(str::to_string)
    }

    /// Defers every request to this source by `wait`, bounded by the time left before the
    /// download gives up.
    pub fn defer(&self, shared: &Shared, wait: Duration) {
        let left = shared.options.give_up_after.saturating_sub(shared.tally.since_progress());
        let until = Instant::now() + wait.min(MAX_RETRY_AFTER).min(left);
        let mut not_before = self.not_before.lock().unwrap_or_else(|p| p.into_inner());
        *not_before = Some(not_before.map_or(until, |t| t.max(until)));
    }

    /// No request to this source before this.
    pub fn not_before(&self) -> Option<Instant> {
        *self.not_before.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pieces the source asked to be asked for (lock order: before the piece table).
    pub fn hints(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.hints.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a spread refusal that named nothing missing here; after
    /// [`MAX_USELESS_SPREADS`] in a row, requests go without hints for [`NO_HINTS_FOR`] (the
    /// holder then serves what is asked: a way out when the pieces it would rather send are
    /// ones this download has from elsewhere).
    pub fn spread_refused(&self) {
        let mut spread = self.spread.lock().unwrap_or_else(|p| p.into_inner());
        spread.0 += 1;
        if spread.0 >= MAX_USELESS_SPREADS {
            *spread = (0, Some(Instant::now() + NO_HINTS_FOR));
        }
    }

    /// Whether requests say they take hints now.
    pub fn takes_hints(&self) -> bool {
        let spread = self.spread.lock().unwrap_or_else(|p| p.into_inner());
        spread.1.is_none_or(|until| Instant::now() >= until)
    }

    /// What the source holds (lock order: this before the piece table).
    pub fn avail(&self) -> std::sync::MutexGuard<'_, Avail> {
        self.avail.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_as_on_the_wire() {
        assert_eq!(SourceKind::Peer.name(), "peer");
        assert_eq!(SourceKind::Mirror.name(), "mirror");
        assert_eq!(SourceKind::Mirror.to_string(), "mirror");
    }

    #[test]
    fn one_peer_per_host_and_port_and_mirrors_by_url() {
        let id = ContentId::from(blake3::hash(b"x"));
        let mut sources = Sources::new(Some(id));
        let peer = |url: &str| NewSource::Peer(url.to_string());
        let mirror = |url: &str| NewSource::Mirror(url.to_string());
        assert!(sources.admit(peer("http://127.0.0.1:1")).is_some());
        assert!(sources.admit(peer("http://127.0.0.1:1/other/path")).is_none(), "the same peer");
        assert!(sources.admit(peer("http://127.0.0.1:2")).is_some());
        assert!(
            sources.admit(mirror("http://127.0.0.1:1/file")).is_some(),
            "a mirror on a peer's port"
        );
        assert!(sources.admit(mirror("http://127.0.0.1:1/file")).is_none(), "the same mirror");
        assert!(sources.admit(mirror("http://127.0.0.1:1/other")).is_some(), "another file there");
        assert!(sources.admit(mirror("ftp://127.0.0.1/file")).is_none());
        assert_eq!(sources.of(SourceKind::Peer).count(), 2);
        assert_eq!(sources.of(SourceKind::Mirror).count(), 2);
        let indices: Vec<usize> = sources.all().iter().map(|s| s.index).collect();
        assert_eq!(indices, vec![0, 1, 2, 3]);
        assert!(
            Sources::new(None).admit(peer("http://127.0.0.1:1")).is_none(),
            "a peer needs the id"
        );
    }

    #[test]
    fn peers_are_capped_and_mirrors_are_not() {
        let mut sources = Sources::new(Some(ContentId::from(blake3::hash(b"x"))));
        for port in 1..=(MAX_PEER_SOURCES as u16 + 5) {
            sources.admit(NewSource::Peer(format!("http://127.0.0.1:{port}")));
        }
        assert_eq!(sources.of(SourceKind::Peer).count(), MAX_PEER_SOURCES);
        assert!(sources.admit(NewSource::Mirror("http://127.0.0.1:9/f".into())).is_some());
    }
}
