//! Views: what the facade shows its frontends. The node's downloads and peers come out as the
//! protocol's row types ([`DownloadRow`], [`PeerRow`]), already shaped for who asks
//! ([`Viewer`]); XML-RPC, the JSON API, the web UI and `/metrics` only encode them, so a
//! status or a state is put into words in one place. The few things the HTTP layer needs from
//! below the facade (the node's counters, a forwarded search's route, the share's root) are named
//! methods here, so no frontend reaches past [`Api`] into the share, discovery or the client.

use std::path::Path;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::Api;
use super::downloads::DownloadInfo;
use crate::discovery::Route;
use crate::discovery::peers::PeerInfo;
use crate::net::metrics::{MethodLabel, RouteLabel};
use crate::proto::calls::{
    DhtState, DownloadRow, IrohName, LookupRow, NodeStats, PeerActivity, PeerRow, PeerState, RouteParams, SourceRow,
};
use crate::proto::url::redact;

/// Who a view is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// The owner: local paths, full source URLs, error texts, and the owner's own use of each
    /// peer.
    Owner,
    /// Anyone: no local paths, source URLs without credentials, query or path, failures
    /// without their reason.
    Anyone,
}

impl Viewer {
    fn is_owner(self) -> bool {
        self == Viewer::Owner
    }
}

/// A download as `viewer` sees it.
fn download_row(info: DownloadInfo, viewer: Viewer) -> DownloadRow {
    let owner = viewer.is_owner();
    let detail = match (info.status.detail(), owner) {
        (Some(reason), true) => Some(reason.to_string()),
        (Some(_), false) => Some(info.status.name().to_string()),
        (None, _) => None,
    };
    DownloadRow {
        name: info.name,
        target: owner.then_some(info.target),
        id: info.id,
        size: info.size,
        done: info.done,
        live_sources: info.live_sources as u64,
        state: info.status.name().to_string(),
        detail,
        speed: 0,
        sources: info
            .sources
            .into_iter()
            .map(|s| SourceRow {
                url: if owner { s.url } else { redact(&s.url) },
                kind: s.kind.name().to_string(),
                state: s.state.name().to_string(),
                bytes: s.bytes,
                speed: 0,
                bad_pieces: s.bad_pieces,
                failures: s.failures,
                last_error: if owner { s.last_error } else { None },
                pieces: s.held,
            })
            .collect(),
        uploads: Vec::new(),
    }
}

/// A peer as anyone sees it.
fn peer_row(peer: PeerInfo) -> PeerRow {
    PeerRow {
        state: PeerState::new(peer.backing_off, peer.failures),
        kind: peer.kind.name().to_string(),
        failures: peer.failures,
        learnt: peer.learnt,
        local: peer.local,
        path: peer.path.map(String::from),
        url: peer.url,
        activity: None,
    }
}

impl Api {
    /// The node's downloads with their progress, as `viewer` may see them.
    pub fn download_rows(&self, viewer: Viewer) -> Vec<DownloadRow> {
        let mut rows: Vec<DownloadRow> = self.downloads().into_iter().map(|d| download_row(d, viewer)).collect();
        if viewer.is_owner() {
            for row in &mut rows {
                if let Some(id) = row.id.as_deref().and_then(|id| id.parse().ok()) {
                    row.uploads = self
                        .uploads_of(&id)
                        .into_iter()
                        .map(|(peer, bytes)| crate::proto::calls::UploadRow { peer, bytes })
                        .collect();
                }
            }
        }
        rows
    }

    /// The peer table as `viewer` may see it: the owner also sees when each peer last answered
    /// and the verified bytes this node's downloads took from it since it started.
    pub fn peer_rows(&self, viewer: Viewer) -> Vec<PeerRow> {
        let peers = self.peers();
        if !viewer.is_owner() {
            return peers.into_iter().map(peer_row).collect();
        }
        // Each peer source of a download is a peer's base URL plus the content path.
        let sources: Vec<(String, u64)> = self
            .downloads()
            .into_iter()
            .flat_map(|d| {
                d.sources
                    .into_iter()
                    .filter(|s| s.kind == crate::engine::SourceKind::Peer)
                    .map(|s| (s.url, s.bytes))
            })
            .collect();
        let bytes_from = |peer: &str| -> u64 {
            let base = peer.trim_end_matches('/');
            sources
                .iter()
                .filter(|(url, _)| url.strip_prefix(base).is_some_and(|rest| rest.starts_with('/')))
                .map(|(_, bytes)| bytes)
                .sum()
        };
        peers
            .into_iter()
            .map(|p| {
                let activity = PeerActivity {
                    last_seen_s: p.last_seen.map(|d| d.as_secs()),
                    bytes: bytes_from(&p.url),
                };
                PeerRow {
                    activity: Some(activity),
                    ..peer_row(p)
                }
            })
            .collect()
    }

    /// The node's counters (`shoal.stats`).
    pub async fn stats(&self) -> Result<NodeStats, super::ApiError> {
        let iroh = match (self.keyed_url(), self.ticket()) {
            (Some(keyed), Some(ticket)) => Some(IrohName {
                id: keyed.trim_start_matches("iroh://").to_string(),
                ticket,
            }),
            _ => None,
        };
        Ok(NodeStats {
            url: self.url().to_string(),
            iroh,
            files: self.list().await?.len() as u64,
            peers: self.peers().len() as u64,
            messages_sent: self.messages_sent(),
        })
    }

    /// The node on the Mainline DHT (`shoal.dht`); the owner also sees its addresses and its
    /// recent lookups.
    pub async fn dht_state(&self, viewer: Viewer) -> DhtState {
        let Some(dht) = self.dht() else {
            return DhtState::default();
        };
        let info = dht.info().await;
        let owner = viewer == Viewer::Owner;
        DhtState {
            running: true,
            nodes: info.nodes as u64,
            reachable: info.reachable,
            serving: info.serving,
            size_estimate: info.size_estimate as u64,
            announced: dht.announced_ids(),
            published: dht.published(),
            local: owner.then(|| info.local.to_string()),
            public: info.public.filter(|_| owner).map(|a| a.to_string()),
            lookups: if owner {
                dht.recent_lookups()
                    .into_iter()
                    .map(|l| LookupRow {
                        id: l.id.to_string(),
                        at: l.at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                        ms: l.took.as_millis() as u64,
                        found: l.found as u64,
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// The route a caller of a forwarded search asked for, clamped to this node's own limits.
    pub fn route_from(&self, route: RouteParams) -> Route {
        self.flood().route_from(route.query_id, route.ttl, route.history, route.budget_ms)
    }

    /// The share's root directory (where a relative download path of the owner's lands).
    pub fn share_root_path(&self) -> &Path {
        self.share().root()
    }

    /// Bytes of new or changed files in the share not hashed yet.
    pub fn hashing_backlog(&self) -> u64 {
        self.share().hashing_backlog()
    }

    /// Counts an XML-RPC call answered.
    pub fn count_call_in(&self, method: &'static str) {
        self.client().metrics().calls_in.get_or_create(&MethodLabel { method }).inc();
    }

    /// Counts file bytes sent to others.
    pub fn count_bytes_up(&self, bytes: u64) {
        self.client().metrics().bytes_up.inc_by(bytes);
    }

    /// Counts a range of a download in progress served to another downloader.
    pub fn count_partial_served(&self) {
        self.client().metrics().partial_ranges_up.inc();
    }

    /// The counter of bytes of downloads in progress sent, for a body that counts as it streams.
    pub fn partial_bytes_up_counter(&self) -> Counter {
        self.client().metrics().partial_bytes_up.clone()
    }

    /// The counter of file bytes sent, for a body that counts as it streams.
    pub fn bytes_up_counter(&self) -> Counter {
        self.client().metrics().bytes_up.clone()
    }

    /// Records how long a request of the route class `route` took to answer.
    pub fn observe_request(&self, route: &'static str, seconds: f64) {
        self.client()
            .metrics()
            .request_seconds
            .get_or_create(&RouteLabel { route })
            .observe(seconds);
    }

    /// Adds the node's counters to `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.client().metrics().register(registry);
        if let Some(dht) = self.dht() {
            dht.register(registry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{SourceStat, SourceState};
    use crate::service::downloads::Status;

    fn failed_download() -> DownloadInfo {
        DownloadInfo {
            name: "a.iso".into(),
            target: "/srv/share/a.iso".into(),
            id: None,
            size: 10,
            done: 4,
            live_sources: 0,
            sources: vec![SourceStat {
                url: "https://user:pw@mirror.example:8443/a.iso?token=t".into(),
                kind: crate::engine::SourceKind::Mirror,
                state: SourceState::Banned,
                bytes: 4,
                bad_pieces: 3,
                failures: 1,
                last_error: Some("bad pieces".into()),
                connections: 0,
                held: None,
            }],
            status: Status::Failed("every source failed".into()),
        }
    }

    #[test]
    fn the_owner_sees_everything_and_anyone_else_a_redacted_row() {
        let owner = download_row(failed_download(), Viewer::Owner);
        assert_eq!(owner.target.as_deref(), Some("/srv/share/a.iso"));
        assert_eq!(
            (owner.state.as_str(), owner.detail.as_deref()),
            ("failed", Some("every source failed"))
        );
        assert_eq!(owner.sources[0].url, "https://user:pw@mirror.example:8443/a.iso?token=t");
        assert_eq!(owner.sources[0].last_error.as_deref(), Some("bad pieces"));
        assert_eq!(
            (owner.sources[0].kind.as_str(), owner.sources[0].state.as_str()),
            ("mirror", "banned")
        );

        let anyone = download_row(failed_download(), Viewer::Anyone);
        assert_eq!(anyone.target, None, "no local path");
        assert_eq!(anyone.detail.as_deref(), Some("failed"), "that it failed, not why");
        assert_eq!(
            anyone.sources[0].url, "https://mirror.example:8443",
            "no credentials, path or query"
        );
        assert_eq!(anyone.sources[0].last_error, None);
        assert_eq!((anyone.size, anyone.done, anyone.sources[0].bad_pieces), (10, 4, 3));
    }
}
