//! The node's counters, for `/metrics` (Prometheus text, through the prometheus-client crate).
//!
//! They live beside the outbound [`super::Client`] because every layer that counts something
//! already holds one (the engine, discovery, the facade and the server), so no layer reaches
//! upward for them. Counters only grow; gauges (downloads and peers by state, files indexed,
//! the hashing backlog) are read from the node when a scrape comes, see `http::metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A label with a source kind (`peer`, `mirror`, `seed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// A label with a route class (`rpc`, `content`, `api`, `ui`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: &'static str,
}

/// A label with an XML-RPC method name (one of the node's own; others are `other`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: &'static str,
}

fn latency() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 16))
}

/// The counters. Cheap to clone (every field is shared).
#[derive(Clone)]
pub struct Metrics {
    /// Verified bytes downloaded, by source kind.
    pub bytes_down: Family<KindLabel, Counter>,
    /// File bytes sent to others (`/content`, `/files`).
    pub bytes_up: Counter,
    /// Ranges of downloads in progress served to other downloaders (the swarm).
    pub partial_ranges_up: Counter,
    /// File bytes of downloads in progress sent to other downloaders.
    pub partial_bytes_up: Counter,
    pub pieces_verified: Counter,
    pub pieces_rejected: Counter,
    pub sources_banned: Counter,
    /// XML-RPC calls answered, by method.
    pub calls_in: Family<MethodLabel, Counter>,
    /// Searches and locates this node sent to peers.
    pub searches_out: Counter,
    /// Requests this node sent (XML-RPC and HTTP).
    pub messages_sent: Counter,
    /// Time to answer a request, by route class.
    pub request_seconds: Family<RouteLabel, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            bytes_down: Family::default(),
            bytes_up: Counter::default(),
            partial_ranges_up: Counter::default(),
            partial_bytes_up: Counter::default(),
            pieces_verified: Counter::default(),
            pieces_rejected: Counter::default(),
            sources_banned: Counter::default(),
            calls_in: Family::default(),
            searches_out: Counter::default(),
            messages_sent: Counter::default(),
            request_seconds: Family::new_with_constructor(latency as fn() -> Histogram),
        }
    }
}

impl Metrics {
    /// Adds the counters to `registry` (under the `shoal` prefix it was made with).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "bytes_downloaded",
            "Verified bytes downloaded, by source kind",
            self.bytes_down.clone(),
        );
        registry.register(
            "bytes_uploaded",
            "File bytes sent to other nodes and clients",
            self.bytes_up.clone(),
        );
        registry.register(
            "partial_ranges_served",
            "Ranges of downloads in progress served to other downloaders",
            self.partial_ranges_up.clone(),
        );
        registry.register(
            "partial_bytes_uploaded",
            "File bytes of downloads in progress sent to other downloaders (part of bytes_uploaded)",
            self.partial_bytes_up.clone(),
        );
        registry.register(
            "pieces_verified",
            "Pieces that passed their check against the content id",
            self.pieces_verified.clone(),
        );
        registry.register(
            "pieces_rejected",
            "Pieces that failed their check and were thrown away",
            self.pieces_rejected.clone(),
        );
        registry.register(
            "sources_banned",
            "Download sources dropped for bad pieces or as unusable",
            self.sources_banned.clone(),
        );
        registry.register("rpc_calls", "XML-RPC calls answered, by method", self.calls_in.clone());
        registry.register("searches_sent", "Searches and locates sent to peers", self.searches_out.clone());
        registry.register("messages_sent", "XML-RPC calls sent to other nodes", self.messages_sent.clone());
        registry.register(
            "request_duration_seconds",
            "Time to answer an HTTP request, by route",
            self.request_seconds.clone(),
        );
    }
}
