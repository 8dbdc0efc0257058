//! `GET /metrics`: the node's counters and gauges in the Prometheus text format, and the
//! middleware that times every request. For the owner only (the secret as a bearer token, as
//! Prometheus's `authorization` scrape setting sends it, or a UI session): the figures tell
//! what the node downloads and whom it knows.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::proto::calls::PeerState;
use crate::service::Api;
use crate::service::downloads::Status;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    kind: &'static str,
    state: &'static str,
}

/// The route class of a path, for the latency histogram (a bounded set of labels, whatever
/// paths callers send).
fn route_of(path: &str) -> &'static str {
    match path {
        "/" | "/RPC2" => "rpc_or_page",
        "/metrics" => "metrics",
        p if p.starts_with("/content/") => "content",
        p if p.starts_with("/files/") => "files",
        p if p.starts_with("/outboard/") => "outboard",
        p if p.starts_with("/api/") => "api",
        p if p.starts_with("/ui/") => "ui",
        _ => "other",
    }
}

/// Times each request until its response is ready (a streamed body's transfer is not included).
pub async fn timed(State(api): State<Api>, request: Request, next: Next) -> Response {
    let route = route_of(request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    api.observe_request(route, started.elapsed().as_secs_f64());
    response
}

pub(super) async fn metrics(State(api): State<Api>, _owner: super::json::Owner) -> Response {
    let mut registry = Registry::with_prefix("shoal");
    api.register_metrics(&mut registry);

    let downloads = Family::<StateLabel, Gauge>::default();
    for state in Status::NAMES {
        downloads.get_or_create(&StateLabel { state }).set(0);
    }
    for row in api.downloads() {
        downloads.get_or_create(&StateLabel { state: row.status.name() }).inc();
    }
    registry.register("downloads", "Downloads this node knows of, by state", downloads);

    let peers = Family::<PeerLabel, Gauge>::default();
    for peer in api.peers() {
        let state = PeerState::new(peer.backing_off, peer.failures).label();
        peers
            .get_or_create(&PeerLabel {
                kind: peer.kind.name(),
                state,
            })
            .inc();
    }
    registry.register("peers", "Known peers, by kind and state", peers);

    if api.dht().is_some() {
        let dht = api.dht_state(crate::service::Viewer::Anyone).await;
        let gauge = |value: u64| {
            let g = Gauge::<i64>::default();
            g.set(value as i64);
            g
        };
        registry.register("dht_nodes", "Nodes in the DHT routing table", gauge(dht.nodes));
        registry.register(
            "dht_reachable",
            "1 when others reached this DHT node unasked (not behind a NAT that drops them)",
            gauge(dht.reachable as u64),
        );
        registry.register(
            "dht_serving",
            "1 when this DHT node answers queries (server mode)",
            gauge(dht.serving as u64),
        );
        registry.register(
            "dht_ids_announced",
            "Content ids announced on the DHT with success lately",
            gauge(dht.announced),
        );
    }

    let files = api.list().await.unwrap_or_default();
    let indexed = Gauge::<i64>::default();
    indexed.set(files.len() as i64);
    registry.register("files_indexed", "Files in the share's index", indexed);
    let shared = Gauge::<i64>::default();
    shared.set(files.iter().map(|(_, e)| e.size).sum::<u64>().min(i64::MAX as u64) as i64);
    registry.register("bytes_shared", "Bytes of the files in the share's index", shared);
    let backlog = Gauge::<i64>::default();
    backlog.set(api.hashing_backlog().min(i64::MAX as u64) as i64);
    registry.register("hashing_backlog_bytes", "Bytes of new or changed files not hashed yet", backlog);

    let (swarm, partials) = api.swarm_stats();
    for (name, help, value) in [
        (
            "swarm_partial_downloads",
            "Downloads in progress whose verified pieces this node serves to others",
            partials,
        ),
        (
            "swarms",
            "Content ids with other downloaders known (swarms this node takes part in)",
            swarm.swarms,
        ),
        (
            "swarm_members",
            "Other downloaders known, over all swarms (members per swarm = this / swarms)",
            swarm.members,
        ),
        (
            "upload_slots_busy",
            "Ranges of swarm content being sent under upload slots now",
            swarm.slots_busy,
        ),
        (
            "upload_slots_held",
            "Downloaders holding an upload slot now (regular and optimistic)",
            swarm.slots_held,
        ),
    ] {
        let gauge = Gauge::<i64>::default();
        gauge.set(value.min(i64::MAX as usize) as i64);
        registry.register(name, help, gauge);
    }

    let mut text = String::new();
    if prometheus_client::encoding::text::encode_registry(&mut text, &registry).is_err() {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response();
    }
    let mut response = classic(&text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The Prometheus text format (0.0.4) from the crate's OpenMetrics text: the two differ, for
/// what we emit, only in how a counter's family is named in `# HELP` and `# TYPE` (OpenMetrics
/// names the family `x` and its sample `x_total`; the classic format names both `x_total`),
/// and every Prometheus version and `promtool check metrics` read the classic one.
fn classic(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let counters: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64);
    for line in lines {
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None if line == "# EOF" || line.starts_with("# UNIT ") => continue,
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}
