//! A node among strangers: what hostile peers cost it, and how fresh its index is.
//!
//! 1. **Hostile peers.** One node in this process whose table holds [`PEERS`] peers, then
//!    [`SEARCHES`] `shoal.search` calls at once (fresh query ids, one pooled client). Run twice
//!    in the same process: first with honest peers (real shoal nodes with a few files: the
//!    anchor), then with hostile ones (test servers that answer `system.listMethods` like a node
//!    and every search with an XML-RPC body that never ends, up to 1 GiB each). The peers run in
//!    a child process (this program with `--serve honest|hostile`), so the figures are the
//!    node's and its clients'. Reports this process's peak RSS during each run (`VmHWM` after a
//!    reset through `/proc/self/clear_refs`) and its RSS before, the wall time, failed searches,
//!    and the bytes the hostile peers managed to send.
//! 2. **Freshness.** Two nodes, B knowing A, with rescans an hour apart: a 4 KiB file is written
//!    into A's share with plain `std::fs::write`, and B's `shoal.search` for its name is polled
//!    every 5 ms until it finds it (bounded at 10 s). Repeated [`FRESH_ROUNDS`] times; reports the
//!    median and the maximum from the write to the first answer that has it. The anchor, in the
//!    same rounds: A's own `query` for a second fresh file (the seed's path: it reads the disk),
//!    the time of one call that needs no index at all.
//!
//! 3. **iroh floods** (`strangers iroh-flood [ATTEMPTS]`, 1,100 by default): a node with its
//!    iroh endpoint on loopback and homed on a relay in this process, with the default limits
//!    (loopback counted as any address, so that the direct callers stand for one remote host).
//!    Three strangers try for ATTEMPTS connections each, 64 at once, each connection asking for
//!    the file list once and kept open when answered: one key; a fresh key every 8 connections
//!    from one address; a fresh key every 8 connections through the relay (each key an address
//!    of its own). Meanwhile, every 250 ms, a TCP caller calls `list` and the owner's key asks
//!    for `/api/v1/status`, each on a new connection. Reports the connections held at once,
//!    the probes that got in, and when the node closed the one key's connections once they
//!    stopped opening streams.
//! 4. **Guessing through a relay** (`strangers relay-guess [SECONDS]`, 60 by default): four
//!    guessers send wrong secrets (`shoal.cancel`) through the relay, a fresh key every 10;
//!    before they start, and every 2 s while they run, a fresh key sends the right secret, and
//!    the owner's key one that is not.
//!    Reports the wrong secrets sent a minute and which right-secret probes got through.
//!
//! Run: `cargo run --release -p shoal-bench --bin strangers` (Markdown on stdout; `--json PATH`
//! also writes the figures of 1 and 2 as JSON); `... --bin strangers -- iroh-flood` or
//! `-- relay-guess` for 3 or 4 alone.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::IntoResponse;
use futures_util::StreamExt;
use shoal_bench::{Rpc, median, ms, ms_f64};
use shoal_node::proto::calls::{Action, Call, Control, List, Query, RouteParams, Search};
use shoal_node::{Node, NodeOptions};
use shoal_xmlrpc::Value;

/// Peers in the table.
const PEERS: usize = 16;
/// Searches at once.
const SEARCHES: usize = 1000;
/// Freshness rounds.
const FRESH_ROUNDS: usize = 20;
/// Most bytes a hostile peer sends in one answer (it is cut long before by the node's caps).
const HOSTILE_ANSWER_LIMIT: u64 = 1 << 30;
/// Longest wait for any one step.
const STEP_WAIT: Duration = Duration::from_secs(120);

fn status_field(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}

/// `shoal.search(pattern, query_id)`: a search from the node asked, under its own query id.
fn search(pattern: &str, query_id: String) -> Search {
    Search {
        pattern: pattern.to_string(),
        route: RouteParams {
            query_id: Some(query_id),
            ..Default::default()
        },
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A test peer that answers searches with a body that never ends.
struct Hostile {
    url: String,
    _sent: Arc<AtomicU64>,
    _stop: tokio_util::sync::DropGuard,
}

async fn hostile_handler(State(sent): State<Arc<AtomicU64>>, body: Bytes) -> axum::response::Response {
    let method = shoal_xmlrpc::decode_call(&body).map(|c| c.method).unwrap_or_default();
    if method != "shoal.search" && method != "shoal.locate" {
        let answer = shoal_xmlrpc::encode_response(Value::Array(vec![Value::String("shoal.search".into())]));
        return ([("content-type", "text/xml")], answer).into_response();
    }
    let chunk = Bytes::from(format!("<value><string>{}</string></value>", "x".repeat(64 << 10)));
    let head = Bytes::from_static(b"<?xml version=\"1.0\"?><methodResponse><params><param><value><array><data>");
    let chunks = HOSTILE_ANSWER_LIMIT / chunk.len() as u64;
    let stream = futures_util::stream::iter(std::iter::once(head).chain((0..chunks).map(move |_| chunk.clone()))).map(move |c| {
        sent.fetch_add(c.len() as u64, Ordering::Relaxed);
        Ok::<_, std::io::Error>(c)
    });
    ([("content-type", "text/xml")], Body::from_stream(stream)).into_response()
}

async fn hostile() -> anyhow::Result<Hostile> {
    let sent = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new()
        .route("/", axum::routing::post(hostile_handler))
        .with_state(sent.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await;
    });
    Ok(Hostile {
        url,
        _sent: sent,
        _stop: stop.drop_guard(),
    })
}

async fn start_node(configure: impl FnOnce(&mut NodeOptions)) -> anyhow::Result<(Node, tempfile::TempDir, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let state = tempfile::tempdir()?;
    let mut options = NodeOptions::new(dir.path(), state.path());
    options.secret = Some("bench".into());
    options.rescan_interval = Duration::from_secs(3600);
    options.peer_exchange_interval = Duration::from_secs(3600);
    configure(&mut options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let node = Node::start(options, listener).await.context("starting a node")?;
    Ok((node, dir, state))
}

#[derive(Debug, Clone)]
struct Searches {
    peers: &'static str,
    failed: usize,
    wall: Duration,
    rss_before: u64,
    peak: Option<u64>,
}

async fn searches(node: &Node, peers: &'static str, _round: usize) -> anyhow::Result<Searches> {
    let http = shoal_bench::http_client(Duration::from_secs(60))?;
    let rpc = Rpc::with_client(http, node.url());
    let rss_before = status_field("VmRSS:").unwrap_or(0);
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let started = Instant::now();
    let calls = (0..SEARCHES).map(|i| {
        let rpc = rpc.clone();
        async move {
            let qid = format!("bench-{peers}-{i}-{}", rand::random::<u64>());
            matches!(rpc.send(&search(&format!("f{}", i % 10), qid)).await, Ok(Ok(_)))
        }
    });
    let results = tokio::time::timeout(STEP_WAIT, futures_util::future::join_all(calls))
        .await
        .context("the searches did not end in time")?;
    let wall = started.elapsed();
    Ok(Searches {
        peers,
        failed: results.iter().filter(|ok| !**ok).count(),
        wall,
        rss_before,
        peak: if reset { status_field("VmHWM:") } else { None },
    })
}

/// Peers in a child process: their URLs, and the child (ended when dropped).
struct Peers {
    urls: Vec<String>,
    child: std::process::Child,
}

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `count` peers of `kind` in a child process.
fn spawn_peers(kind: &str, count: usize) -> anyhow::Result<Peers> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["--serve", kind, &count.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the peers' process")?;
    let stdout = child.stdout.take().context("the peers' output")?;
    let mut urls = Vec::new();
    for line in std::io::BufReader::new(stdout).lines().take(count + 1) {
        let line = line?;
        if line == "ready" {
            break;
        }
        urls.push(line);
    }
    ensure!(urls.len() == count, "the peers' process gave {} URLs, not {count}", urls.len());
    Ok(Peers { urls, child })
}

/// The child: serves `count` peers of `kind`, prints their URLs and "ready", and runs until its
/// standard input closes.
async fn serve_peers(kind: &str, count: usize) -> anyhow::Result<()> {
    let mut keep = Vec::new();
    let mut hostiles = Vec::new();
    for i in 0..count {
        if kind == "hostile" {
            let fake = hostile().await?;
            println!("{}", fake.url);
            hostiles.push(fake);
        } else {
            let (node, dir, state) = start_node(|_| {}).await?;
            for f in 0..10 {
                std::fs::write(dir.path().join(format!("f{f}-{i}.txt")), format!("file {f} of peer {i}"))?;
            }
            node.api().rescan().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", node.url());
            keep.push((node, dir, state));
        }
    }
    println!("ready");
    let mut line = String::new();
    let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
    Ok(())
}

async fn hostile_phase() -> anyhow::Result<(Searches, Searches)> {
    // The anchor: honest peers, each with a few files.
    let honest = spawn_peers("honest", PEERS)?;
    let (node, _dir, _state) = start_node(|o| o.peers = honest.urls.clone()).await?;
    let anchor = searches(&node, "honest", 0).await?;
    node.shutdown().await;
    drop(honest);

    let hostile = spawn_peers("hostile", PEERS)?;
    let (node, _dir, _state) = start_node(|o| o.peers = hostile.urls.clone()).await?;
    let measured = searches(&node, "hostile", 1).await?;
    node.shutdown().await;
    drop(hostile);
    Ok((anchor, measured))
}

struct Fresh {
    search: Vec<Duration>,
    query: Vec<Duration>,
}

async fn fresh_phase() -> anyhow::Result<Fresh> {
    let (a, a_dir, _a_state) = start_node(|_| {}).await?;
    let (b, _b_dir, _b_state) = start_node(|o| o.peers = vec![a.url().to_string()]).await?;
    let rpc = Rpc::new(b.url())?;
    let holder = Rpc::new(a.url())?;
    let mut fresh = Fresh {
        search: Vec::new(),
        query: Vec::new(),
    };
    for round in 0..FRESH_ROUNDS {
        let name = format!("fresh-{round}.bin");
        let bytes: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
        let written = Instant::now();
        std::fs::write(a_dir.path().join(&name), &bytes)?;
        let deadline = written + Duration::from_secs(10);
        loop {
            let qid = format!("fresh-{round}-{}", rand::random::<u64>());
            if let Ok(Ok(Value::Array(found))) = rpc.send(&search(&name, qid)).await
                && !found.is_empty()
            {
                fresh.search.push(written.elapsed());
                break;
            }
            ensure!(Instant::now() < deadline, "{name} was not found within 10 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let name = format!("fresh-query-{round}.txt");
        let written = Instant::now();
        std::fs::write(a_dir.path().join(&name), b"read from disk")?;
        loop {
            let query = Query {
                name: name.clone(),
                history: Vec::new(),
            };
            if let Ok(Ok(_)) = holder.send(&query).await {
                fresh.query.push(written.elapsed());
                break;
            }
            ensure!(Instant::now() < deadline + Duration::from_secs(10), "{name} was not found by query");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    b.shutdown().await;
    a.shutdown().await;
    Ok(fresh)
}

async fn run(json: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let (anchor, hostile) = hostile_phase().await?;
    let fresh = fresh_phase().await?;
    println!("## {SEARCHES} searches at once, {PEERS} peers in the table\n");
    println!("| peers | failed | wall (s) | RSS before (MiB) | peak VmHWM (MiB) |");
    println!("|---|---:|---:|---:|---:|");
    for s in [&anchor, &hostile] {
        println!(
            "| {} | {} | {:.2} | {:.1} | {} |",
            s.peers,
            s.failed,
            s.wall.as_secs_f64(),
            mib(s.rss_before),
            s.peak.map_or("n/a".into(), |p| format!("{:.1}", mib(p))),
        );
    }
    if let (Some(a), Some(h)) = (anchor.peak, hostile.peak) {
        println!("\npeak memory with hostile peers / with honest peers: {:.2}x", h as f64 / a as f64);
    }
    let max = |d: &[Duration]| d.iter().max().copied().unwrap_or_default();
    println!("\n## From writing a file to a peer finding it ({FRESH_ROUNDS} rounds)\n");
    println!("| path | median | max |");
    println!("|---|---:|---:|");
    println!(
        "| shoal.search (the index, fed by the watcher) | {} | {} |",
        ms(median(&fresh.search)),
        ms(max(&fresh.search))
    );
    println!(
        "| the holder's own query (reads the disk; the anchor) | {} | {} |",
        ms(median(&fresh.query)),
        ms(max(&fresh.query))
    );
    if let Some(path) = json {
        let figures = serde_json::json!({
            "searches": SEARCHES, "peers": PEERS,
            "honest": {"failed": anchor.failed, "wall_s": anchor.wall.as_secs_f64(), "rss_before": anchor.rss_before, "peak_hwm": anchor.peak},
            "hostile": {"failed": hostile.failed, "wall_s": hostile.wall.as_secs_f64(), "rss_before": hostile.rss_before, "peak_hwm": hostile.peak},
            "fresh_search_ms": fresh.search.iter().map(|d| ms_f64(*d)).collect::<Vec<_>>(),
            "fresh_query_ms": fresh.query.iter().map(|d| ms_f64(*d)).collect::<Vec<_>>(),
        });
        shoal_bench::write_json(&path, &figures)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut json = None;
    let mut serve: Option<(String, usize)> = None;
    let mut scenario: Option<(String, Option<u64>)> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "iroh-flood" | "relay-guess" => {
                let count = args.next().map(|n| n.parse::<u64>());
                match count {
                    Some(Err(_)) => {
                        eprintln!("strangers: {arg} takes a number");
                        return ExitCode::from(2);
                    }
                    count => scenario = Some((arg.clone(), count.map(|c| c.unwrap_or_default()))),
                }
            }
            "--serve" => {
                let kind = args.next().unwrap_or_default();
                let count = args.next().and_then(|n| n.parse().ok()).unwrap_or(PEERS);
                serve = Some((kind, count));
            }
            "--json" => json = args.next().map(std::path::PathBuf::from),
            other => {
                eprintln!(
                    "strangers: unknown argument {other:?} (usage: strangers [--json PATH] | iroh-flood [ATTEMPTS] | relay-guess [SECONDS])"
                );
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("strangers: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some((kind, count)) = serve {
        return match runtime.block_on(serve_peers(&kind, count)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("strangers --serve: {error:#}");
                ExitCode::from(2)
            }
        };
    }
    let outcome = match scenario {
        Some((name, count)) if name == "iroh-flood" => runtime.block_on(iroh_flood(count.unwrap_or(1100) as usize)),
        Some((_, count)) => runtime.block_on(relay_guess(count.unwrap_or(60))),
        None => runtime.block_on(run(json)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("strangers: {error:#}");
            ExitCode::from(2)
        }
    }
}

// -------------------------------------------------------------------------------------------
// Strangers over iroh: connection floods and wrong secrets through a relay.

/// The secret the bench nodes are started with.
const SECRET: &str = "bench";

/// An iroh relay in this process, plain HTTP on loopback.
async fn relay_server() -> anyhow::Result<(iroh_relay::server::Server, iroh::RelayUrl)> {
    use iroh_relay::server::{RelayConfig, Server, ServerConfig};
    let mut config = ServerConfig::default();
    config.relay = Some(RelayConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0))));
    let server = Server::spawn(config)
        .await
        .map_err(|e| anyhow::anyhow!("starting the relay: {e}"))?;
    let addr = server.http_addr().context("the relay's address")?;
    let url = format!("http://{addr}").parse().context("the relay's URL")?;
    Ok((server, url))
}

/// A node with its iroh endpoint (on loopback, and homed on `relay` when given); its address
/// by direct path (127.0.0.1 only), and by relay alone.
async fn iroh_bench_node(
    relay: Option<&iroh::RelayUrl>,
    configure: impl FnOnce(&mut NodeOptions),
) -> anyhow::Result<(Node, tempfile::TempDir, tempfile::TempDir, iroh::EndpointAddr, iroh::EndpointAddr)> {
    let (node, dir, state) = start_node(|o| {
        let mut iroh = shoal_node::options::IrohOptions::local_only();
        iroh.relays = relay.map(|r| vec![r.to_string()]).unwrap_or_default();
        o.iroh = Some(iroh);
        configure(o);
    })
    .await?;
    let ticket = node.ticket(Duration::from_secs(10)).await.context("the node's ticket")?;
    let ticket = shoal_node::proto::ticket::Ticket::parse(&ticket).map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = iroh::EndpointId::from_bytes(&ticket.id)?;
    // 127.0.0.1 alone, so that every direct caller comes from one address (a client given
    // several sends its first packet to each).
    let loopback = ticket.addrs.iter().filter(|a| a.ip() == std::net::Ipv4Addr::LOCALHOST);
    let direct = iroh::EndpointAddr::from_parts(id, loopback.map(|a| iroh::TransportAddr::Ip(*a)));
    let relayed = iroh::EndpointAddr::from_parts(id, relay.map(|r| iroh::TransportAddr::Relay(r.clone())));
    Ok((node, dir, state, direct, relayed))
}

/// An endpoint dialling with `key`: over loopback only, or (with `relay`) through the relay
/// only, with no UDP socket of its own, so that every path it has runs through the relay.
async fn dialler(key: iroh::SecretKey, relay: Option<&iroh::RelayUrl>) -> anyhow::Result<iroh::Endpoint> {
    use iroh::endpoint::{PortmapperConfig, presets};
    let mut builder = iroh::Endpoint::builder(presets::Minimal)
        .secret_key(key)
        .portmapper_config(PortmapperConfig::Disabled);
    builder = match relay {
        Some(url) => builder.relay_mode(iroh::RelayMode::custom([url.clone()])).clear_ip_transports(),
        None => builder.relay_mode(iroh::RelayMode::Disabled),
    };
    builder.bind().await.context("binding a dialling endpoint")
}

fn fresh_key() -> iroh::SecretKey {
    iroh::SecretKey::from_bytes(&rand::random::<[u8; 32]>())
}

/// One raw HTTP/1.1 exchange on a new stream of `conn`: the status and body, or `None` when the
/// connection or stream fails (a refused connection is closed by the node).
async fn iroh_exchange(conn: &iroh::endpoint::Connection, request: &[u8]) -> Option<(u16, String)> {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        send.write_all(request).await.ok()?;
        let answer = recv.read_to_end(1 << 20).await.ok()?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((status, body))
    })
    .await
    .ok()
    .flatten()
}

async fn iroh_get(conn: &iroh::endpoint::Connection, path: &str) -> Option<u16> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: node.iroh\r\nConnection: close\r\n\r\n");
    iroh_exchange(conn, request.as_bytes()).await.map(|(status, _)| status)
}

/// `shoal.cancel(secret, "nothing.iso")` over `conn`: `Some(true)` when the secret passed the
/// check (there is no such download: fault 100), `Some(false)` when it was refused (fault 200).
async fn secret_passes(conn: &iroh::endpoint::Connection, secret: &str) -> Option<bool> {
    let call = Control {
        action: Action::Cancel,
        secret: secret.into(),
        target: "nothing.iso".into(),
    };
    let body = shoal_xmlrpc::encode_call(call.method(), &call.encode());
    let head = format!(
        "POST / HTTP/1.1\r\nHost: node.iroh\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (_, answer) = iroh_exchange(conn, &[head.as_bytes(), body.as_bytes()].concat()).await?;
    match shoal_xmlrpc::decode_response(answer.as_bytes()).ok()? {
        Err(fault) if fault.code == shoal_node::proto::faults::NOT_FOUND => Some(true),
        Err(fault) if fault.code == shoal_node::proto::faults::ACCESS_DENIED => Some(false),
        _ => None,
    }
}

/// The right secret sent by a key never seen before, through the relay: whether it passed
/// (`None` when the dial or the call failed).
async fn right_secret_from_a_fresh_key(relay_url: &iroh::RelayUrl, relayed: &iroh::EndpointAddr) -> anyhow::Result<Option<bool>> {
    let prober = dialler(fresh_key(), Some(relay_url)).await?;
    let passed = match tokio::time::timeout(
        Duration::from_secs(20),
        prober.connect(relayed.clone(), shoal_node::net::iroh::ALPN),
    )
    .await
    {
        Ok(Ok(conn)) => secret_passes(&conn, SECRET).await,
        _ => None,
    };
    prober.close().await;
    Ok(passed)
}

/// Probes that run while strangers flood the node: a TCP caller (`list`, a new connection each
/// time) and the owner's key over iroh (`GET /api/v1/status`, a new connection each time,
/// dialled as the CLI dials: `net::iroh::Iroh`, which tries a refused dial again twice).
struct Probes {
    tcp: (usize, usize),
    owner: (usize, usize),
}

async fn probe_until(
    stop: tokio_util::sync::CancellationToken,
    url: String,
    owner: Arc<shoal_node::net::iroh::Iroh>,
    node: iroh::EndpointId,
) -> anyhow::Result<Probes> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()?;
    let rpc = Rpc::with_client(http, &url);
    let mut probes = Probes {
        tcp: (0, 0),
        owner: (0, 0),
    };
    loop {
        probes.tcp.1 += 1;
        if let Ok(Ok(_)) = rpc.send(&List).await {
            probes.tcp.0 += 1;
        }
        probes.owner.1 += 1;
        if let Ok(conn) = owner.connection(node).await {
            if iroh_get(&conn, "/api/v1/status").await == Some(200) {
                probes.owner.0 += 1;
            }
            conn.close(0u32.into(), b"done");
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(probes),
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Longest wait for one of a flood's connections (on loopback, a handshake takes milliseconds;
/// now and then a refused attempt of the flooding client waits this long, the node holding
/// nothing for it).
const FLOOD_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What one flood left.
struct Flood {
    what: &'static str,
    attempts: usize,
    keys: usize,
    /// Connections held at once at the end of the flood.
    held_at_once: usize,
    held: Vec<iroh::endpoint::Connection>,
    endpoints: Vec<iroh::Endpoint>,
    wall: Duration,
    probes: Probes,
}

/// `attempts` connections to `node`, a fresh key every `per_key` of them, 64 at once; each asks
/// for the file list once and is kept open when answered. Probes run meanwhile.
#[allow(clippy::too_many_arguments)]
async fn flood(
    what: &'static str,
    node: &Node,
    addr: &iroh::EndpointAddr,
    relay: Option<&iroh::RelayUrl>,
    attempts: usize,
    per_key: usize,
    owner: Arc<shoal_node::net::iroh::Iroh>,
) -> anyhow::Result<Flood> {
    let keys = attempts.div_ceil(per_key);
    let mut endpoints = Vec::with_capacity(keys);
    for _ in 0..keys {
        endpoints.push(dialler(fresh_key(), relay).await?);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let probing = tokio::spawn(probe_until(stop.clone(), node.url().to_string(), owner, addr.id));
    let started = Instant::now();
    let held: Vec<_> = futures_util::stream::iter(0..attempts)
        .map(|i| {
            let endpoint = endpoints[i / per_key].clone();
            let addr = addr.clone();
            async move {
                let conn = tokio::time::timeout(FLOOD_CONNECT_TIMEOUT, endpoint.connect(addr, shoal_node::net::iroh::ALPN))
                    .await
                    .ok()?
                    .ok()?;
                (iroh_get(&conn, "/api/v1/files").await == Some(200)).then_some(conn)
            }
        })
        .buffer_unordered(64)
        .filter_map(|conn| async move { conn })
        .collect()
        .await;
    let wall = started.elapsed();
    // The probes go on a little while the flood's connections are held.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let probes = probing.await??;
    Ok(Flood {
        what,
        attempts,
        keys,
        held_at_once: held.len(),
        held,
        endpoints,
        wall,
        probes,
    })
}

/// Closes what a flood holds and lets the node see it.
async fn end_flood(flood: &mut Flood) {
    for conn in flood.held.drain(..) {
        conn.close(0u32.into(), b"done");
    }
    for endpoint in flood.endpoints.drain(..) {
        endpoint.close().await;
    }
}

/// Seconds until every connection of `held` was closed by the node (none opens a stream), at
/// most `limit`.
async fn seconds_until_closed(held: &[iroh::endpoint::Connection], limit: Duration) -> Option<f64> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if held.iter().all(|c| c.close_reason().is_some()) {
            return Some(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// `iroh-flood`: how many iroh connections one key, one address and many addresses (fresh keys
/// through a relay) hold with the default limits, whether a TCP caller and the owner's key get
/// in meanwhile, and when an unused connection is closed.
async fn iroh_flood(attempts: usize) -> anyhow::Result<()> {
    let (_relay, relay_url) = relay_server().await?;
    // Loopback is counted as any other address here, so that the direct callers stand for one
    // remote host (by default loopback is exempt from the per-address cap).
    let (node, _dir, state, direct, relayed) = iroh_bench_node(Some(&relay_url), |o| o.guard.loopback_exempt = false).await?;
    let defaults = NodeOptions::new(".", ".");
    let owner_key = shoal_node::node::client_key(state.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let owner = shoal_node::net::iroh::Iroh::bind(owner_key, &shoal_node::options::IrohOptions::local_only(), false)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    owner.learn(&shoal_node::proto::ticket::Ticket {
        id: *direct.id.as_bytes(),
        relay: None,
        addrs: direct.ip_addrs().copied().collect(),
    });
    let owner = Arc::new(owner);

    let mut rows = Vec::new();
    let mut one_key = flood("one key, one address", &node, &direct, None, attempts, attempts, owner.clone()).await?;
    let idle = seconds_until_closed(&one_key.held, Duration::from_secs(90)).await;
    end_flood(&mut one_key).await;
    rows.push(one_key);
    let mut one_address = flood(
        "fresh key every 8 connections, one address",
        &node,
        &direct,
        None,
        attempts,
        8,
        owner.clone(),
    )
    .await?;
    end_flood(&mut one_address).await;
    rows.push(one_address);
    let mut many = flood(
        "fresh key every 8 connections, through a relay",
        &node,
        &relayed,
        Some(&relay_url),
        attempts,
        8,
        owner.clone(),
    )
    .await?;
    end_flood(&mut many).await;
    rows.push(many);
    owner.close().await;
    node.shutdown().await;

    println!(
        "## iroh connections from strangers: {attempts} attempts, limits {} per key, {} per address, {} in all (+{} for the owner's keys)\n",
        defaults.max_iroh_per_key, defaults.max_per_address, defaults.max_iroh_connections, defaults.iroh_owner_reserve
    );
    println!("| stranger | attempts | keys | held at once | wall (s) | TCP caller got in | owner's key got in |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {} | {:.1} | {}/{} | {}/{} |",
            row.what,
            row.attempts,
            row.keys,
            row.held_at_once,
            row.wall.as_secs_f64(),
            row.probes.tcp.0,
            row.probes.tcp.1,
            row.probes.owner.0,
            row.probes.owner.1
        );
    }
    match idle {
        Some(s) => println!(
            "\nthe one key's {} connections, left with no stream open, were all closed by the node {s:.1} s later (idle timeout {:?})",
            rows[0].held_at_once, defaults.iroh_idle_timeout
        ),
        None => println!("\nthe one key's connections were still open 90 s later"),
    }
    Ok(())
}

/// `relay-guess`: wrong secrets sent through a relay for `seconds`, a fresh key every 10
/// guesses (4 guessers at once); every 2 s a fresh key sends the right secret and the owner's
/// key calls an owner-only method.
async fn relay_guess(seconds: u64) -> anyhow::Result<()> {
    let (_relay, relay_url) = relay_server().await?;
    let (node, _dir, state, _direct, relayed) = iroh_bench_node(Some(&relay_url), |_| {}).await?;
    let owner_key = shoal_node::node::client_key(state.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let defaults = NodeOptions::new(".", ".").guard;
    // Before any guess, the right secret from a fresh key through the relay passes.
    let before = right_secret_from_a_fresh_key(&relay_url, &relayed).await?;
    let sent = Arc::new(AtomicU64::new(0));
    let keys = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let mut guessers = Vec::new();
    for _ in 0..4 {
        let (sent, keys, stop, relay_url, relayed) = (sent.clone(), keys.clone(), stop.clone(), relay_url.clone(), relayed.clone());
        guessers.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let Ok(endpoint) = dialler(fresh_key(), Some(&relay_url)).await else {
                    continue;
                };
                if let Ok(Ok(conn)) = tokio::time::timeout(
                    Duration::from_secs(20),
                    endpoint.connect(relayed.clone(), shoal_node::net::iroh::ALPN),
                )
                .await
                {
                    keys.fetch_add(1, Ordering::Relaxed);
                    for n in 0..10 {
                        if stop.is_cancelled() {
                            break;
                        }
                        if secret_passes(&conn, &format!("guess-{n}-{}", rand::random::<u64>()))
                            .await
                            .is_some()
                        {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                endpoint.close().await;
            }
        }));
    }
    let owner = dialler(owner_key, Some(&relay_url)).await?;
    let owner_conn = owner.connect(relayed.clone(), shoal_node::net::iroh::ALPN).await?;
    let (mut right, mut owner_ok, mut probes) = (Vec::new(), 0, 0);
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        probes += 1;
        let passed = right_secret_from_a_fresh_key(&relay_url, &relayed).await?;
        right.push((started.elapsed().as_secs_f64(), sent.load(Ordering::Relaxed), passed));
        if secret_passes(&owner_conn, "not the secret").await == Some(true) {
            owner_ok += 1;
        }
    }
    stop.cancel();
    for guesser in guessers {
        let _ = guesser.await;
    }
    let wall = started.elapsed();
    let guesses = sent.load(Ordering::Relaxed);
    owner.close().await;
    node.shutdown().await;

    println!(
        "## Wrong secrets through a relay, a fresh key every 10 guesses (limits: {} a minute per caller, {} a minute from all strangers)\n",
        defaults.wrong_secrets_per_minute, defaults.wrong_secrets_per_minute_total
    );
    println!(
        "wrong secrets sent: {guesses} in {:.1} s ({:.0} a minute), from {} keys",
        wall.as_secs_f64(),
        guesses as f64 * 60.0 / wall.as_secs_f64(),
        keys.load(Ordering::Relaxed)
    );
    println!(
        "(a refused secret and a wrong one get the same fault 200; the node compares at most {} a minute from all strangers)",
        defaults.wrong_secrets_per_minute_total
    );
    println!(
        "the right secret from a fresh key before any guess: {}",
        match before {
            Some(true) => "accepted",
            Some(false) => "refused",
            None => "unanswered",
        }
    );
    let accepted: Vec<_> = right.iter().filter(|(_, _, p)| *p == Some(true)).collect();
    let refused = right.iter().filter(|(_, _, p)| *p == Some(false)).count();
    println!(
        "the right secret from a fresh key, every 2 s: {} accepted, {refused} refused, {} unanswered, of {probes}",
        accepted.len(),
        probes - accepted.len() - refused
    );
    for (at, sent, _) in &accepted {
        println!("  accepted at {at:.1} s, after {sent} wrong secrets had been sent");
    }
    println!("the owner's key with no secret, every 2 s: {owner_ok} of {probes} accepted");
    Ok(())
}
