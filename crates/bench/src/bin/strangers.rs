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
//! Run: `cargo run --release -p shoal-bench --bin strangers` (Markdown on stdout; `--json PATH`
//! also writes the figures as JSON).

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
            let qid = Value::String(format!("bench-{peers}-{i}-{}", rand::random::<u64>()));
            matches!(
                rpc.call("shoal.search", &[Value::String(format!("f{}", i % 10)), qid]).await,
                Ok(Ok(_))
            )
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
            let qid = Value::String(format!("fresh-{round}-{}", rand::random::<u64>()));
            if let Ok(Ok(Value::Array(found))) = rpc.call("shoal.search", &[Value::String(name.clone()), qid]).await
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
            if let Ok(Ok(_)) = holder.call("query", &[Value::String(name.clone()), Value::Array(Vec::new())]).await {
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
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--serve" => {
                let kind = args.next().unwrap_or_default();
                let count = args.next().and_then(|n| n.parse().ok()).unwrap_or(PEERS);
                serve = Some((kind, count));
            }
            "--json" => json = args.next().map(std::path::PathBuf::from),
            other => {
                eprintln!("strangers: unknown argument {other:?} (usage: strangers [--json PATH])");
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
    match runtime.block_on(run(json)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("strangers: {error:#}");
            ExitCode::from(2)
        }
    }
}
