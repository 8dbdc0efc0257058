//! Search in a full mesh: how long a search started at one node takes, and how many messages
//! the whole network sends for it, when every node knows every other one.
//!
//! For 8, 16 and 32 nodes it starts that many shoal nodes in this process, each on
//! `127.0.0.1:0` with its own temporary share and state, each told every other node's URL as a
//! configured peer (so a mesh of n nodes has n(n-1)/2 links). One file is put in the share of the
//! last node started only. Then, through a real HTTP XML-RPC client talking to node 0, it times:
//!
//! - a hit at the farthest node with the seed's `query(name, [])` (returns the content) and with
//!   `shoal.search(pattern)` (returns the matches and their holders);
//! - a miss with `query("no-such-file", [])` (fault 100) and `shoal.search("no-such-*")` (empty).
//!
//! Each case runs once to warm up, then R times in a row (R = 20 for 8 and 16 nodes, 10 for 32).
//! The messages of one search are the sum over all nodes of `messages_sent()` after it minus
//! before it, read once the network has gone quiet (no count changing for 150 ms), so that
//! forwards still in flight after node 0 answered are counted too. Only XML-RPC calls between
//! nodes count; the `GET /content/<id>` node 0 makes to fetch a hit's data does not.
//!
//! Latencies are also given as multiples of an anchor measured in the same mesh: one `list()`
//! round trip to node 0 (median of 50), so that figures from different machines compare.
//! Node search deadlines are 10 s, so a miss is never cut short by a deadline, and peer exchange
//! is pushed out to an hour so that no background chatter is counted.
//!
//! Run: `cargo run --release -p shoal-bench --bin mesh` (Markdown on stdout). Optional arguments:
//! node counts to run instead of 8 16 32 (`mesh 8`), and `--json` for a JSON report instead.
//! Exits with 2 and the error chain on stderr if a node fails or an answer is wrong.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use shoal_bench::{Network, Rpc, median, ms};
use shoal_node::proto::calls::{Call, List, Query, Search};
use shoal_xmlrpc::{Fault, Value};

/// The node counts run when none are given.
const NODE_COUNTS: [usize; 3] = [8, 16, 32];
/// Round trips of `list()` whose median is the anchor.
const ANCHOR_SAMPLES: usize = 50;
/// The search deadline of every node: long enough that a miss is answered, not timed out.
const SEARCH_DEADLINE: Duration = Duration::from_secs(10);
/// The network counts as quiet once no node's message count changed for this long.
const QUIET_FOR: Duration = Duration::from_millis(150);
/// The name of the one file of the mesh, held by the last node only.
const FILE_NAME: &str = "mesh-target.txt";
/// The pattern that finds it.
const HIT_PATTERN: &str = "mesh-target*";
/// The target: a miss in the 32-node mesh within this time...
const TARGET_LATENCY: Duration = Duration::from_millis(300);
/// ...and with at most this many messages per link.
const TARGET_MESSAGES_PER_LINK: u64 = 2;

/// Repetitions per case for a mesh of `n` nodes.
fn repetitions(n: usize) -> usize {
    if n >= 32 { 10 } else { 20 }
}

/// A running mesh: the nodes (node 0 first, the holder last) and their directories.
struct Mesh {
    net: Network,
}

impl Mesh {
    /// Binds `n` listeners, then starts each node with every other node as a configured peer,
    /// and waits until the introductions (`hello` from each node to each peer) have settled.
    async fn start(n: usize) -> anyhow::Result<Mesh> {
        let peers: Vec<Vec<usize>> = (0..n).map(|i| (0..n).filter(|&j| j != i).collect()).collect();
        let net = Network::start(&peers, |options| {
            options.secret = Some("mesh-bench".to_string());
            options.search_deadline = SEARCH_DEADLINE;
            options.peer_exchange_interval = Duration::from_secs(3600);
        })
        .await?;
        let mesh = Mesh { net };
        mesh.quiet().await;
        for (i, node) in mesh.net.nodes.iter().flatten().enumerate() {
            let peers = node.api().peers().len();
            ensure!(peers == n - 1, "node {i} knows {peers} peers, not {}", n - 1);
        }
        Ok(mesh)
    }

    /// Waits until no node's message count has changed for [`QUIET_FOR`]; returns the total.
    async fn quiet(&self) -> u64 {
        self.net.quiet(QUIET_FOR).await
    }

    /// Stops every node, one after another, each waiting for its tasks.
    async fn shutdown(mut self) {
        for i in 0..self.net.len() {
            if let Some(node) = self.net.take(i) {
                node.shutdown().await;
            }
        }
    }
}

/// What a case must answer; a wrong answer stops the benchmark.
enum Expect {
    /// `query` returns this content.
    Content(Vec<u8>),
    /// `shoal.search` returns exactly one match, this name, held by this node only.
    HeldBy { name: String, url: String },
    /// A fault with this code.
    Fault(i32),
    /// An empty array.
    Empty,
}

impl Expect {
    fn check(&self, answer: Result<Value, Fault>) -> anyhow::Result<()> {
        match (self, answer) {
            (Expect::Content(expected), Ok(value)) => {
                let content = shoal_xmlrpc::content_bytes(value).context("query returned no content")?;
                ensure!(&content == expected, "query returned {} bytes that are not the file", content.len());
            }
            (Expect::HeldBy { name, url }, Ok(Value::Array(matches))) => {
                ensure!(matches.len() == 1, "shoal.search returned {} matches, not 1", matches.len());
                let found =
                    shoal_node::discovery::match_from_value(matches[0].clone()).context("shoal.search returned a malformed match")?;
                ensure!(
                    &found.name == name && found.urls == [url.clone()],
                    "shoal.search found {} at {:?}, not {name} at {url}",
                    found.name,
                    found.urls
                );
            }
            (Expect::Fault(code), Err(fault)) => {
                ensure!(fault.code == *code, "expected fault {code}, got {fault}")
            }
            (Expect::Empty, Ok(Value::Array(matches))) => ensure!(matches.is_empty(), "expected no matches, got {}", matches.len()),
            (_, Err(fault)) => bail!("unexpected {fault}"),
            (_, Ok(value)) => bail!("unexpected answer {value:?}"),
        }
        Ok(())
    }
}

/// One measured search.
struct Case {
    name: &'static str,
    method: &'static str,
    params: Vec<Value>,
    expect: Expect,
}

impl Case {
    fn new(name: &'static str, call: &impl Call, expect: Expect) -> Case {
        Case {
            name,
            method: call.method(),
            params: call.encode(),
            expect,
        }
    }
}

/// The figures of one case.
struct Sample {
    latencies: Vec<Duration>,
    messages: Vec<u64>,
}

impl Sample {
    fn latency_median(&self) -> Duration {
        median(&self.latencies)
    }

    fn latency_max(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }

    fn messages_median(&self) -> u64 {
        let mut sorted = self.messages.clone();
        sorted.sort_unstable();
        sorted[sorted.len() / 2]
    }

    fn messages_min(&self) -> u64 {
        self.messages.iter().copied().min().unwrap_or_default()
    }

    fn messages_max(&self) -> u64 {
        self.messages.iter().copied().max().unwrap_or_default()
    }
}

/// Runs `case` once to warm up and then `repetitions` times, one after another, each from a
/// quiet network to a quiet network.
async fn measure(mesh: &Mesh, rpc: &Rpc, case: &Case, repetitions: usize) -> anyhow::Result<Sample> {
    let mut sample = Sample {
        latencies: Vec::new(),
        messages: Vec::new(),
    };
    let mut before = mesh.quiet().await;
    for run in 0..=repetitions {
        let started = Instant::now();
        let answer = rpc.call(case.method, &case.params).await?;
        let latency = started.elapsed();
        case.expect.check(answer).with_context(|| format!("{} (run {run})", case.name))?;
        let after = mesh.quiet().await;
        if run > 0 {
            sample.latencies.push(latency);
            sample.messages.push(after - before);
        }
        before = after;
    }
    Ok(sample)
}

/// The median of `ANCHOR_SAMPLES` `list()` round trips, after one warm-up.
async fn anchor(rpc: &Rpc) -> anyhow::Result<Duration> {
    let mut latencies = Vec::with_capacity(ANCHOR_SAMPLES);
    for run in 0..=ANCHOR_SAMPLES {
        let started = Instant::now();
        let answer = rpc.send(&List).await?;
        let latency = started.elapsed();
        ensure!(matches!(answer, Ok(Value::Array(_))), "list() did not return an array");
        if run > 0 {
            latencies.push(latency);
        }
    }
    Ok(median(&latencies))
}

/// Everything measured in one mesh.
struct MeshReport {
    nodes: usize,
    links: u64,
    setup: Duration,
    anchor: Duration,
    repetitions: usize,
    cases: Vec<(&'static str, Sample)>,
    failing_peers: usize,
    shutdown: Duration,
}

async fn run_mesh(n: usize) -> anyhow::Result<MeshReport> {
    ensure!(n >= 2, "a mesh needs at least 2 nodes, not {n}");
    let started = Instant::now();
    let mesh = Mesh::start(n).await.with_context(|| format!("building the {n}-node mesh"))?;
    let setup = started.elapsed();

    let content = format!("the one file of the {n}-node mesh\n").repeat(64).into_bytes();
    let holder = mesh.net.node(n - 1).context("an empty mesh")?;
    std::fs::write(mesh.net.dirs[n - 1].0.path().join(FILE_NAME), &content).context("writing the file")?;
    holder.api().rescan().await.context("indexing the file")?;
    let holder_url = mesh.net.urls[n - 1].clone();

    let rpc = Rpc::new(&mesh.net.urls[0])?;
    let anchor = anchor(&rpc).await?;
    let query = |name: &str| Query {
        name: name.into(),
        history: Vec::new(),
    };
    let cases = [
        Case::new("hit: query", &query(FILE_NAME), Expect::Content(content.clone())),
        Case::new(
            "hit: shoal.search",
            &Search::new(HIT_PATTERN),
            Expect::HeldBy {
                name: FILE_NAME.into(),
                url: holder_url,
            },
        ),
        Case::new("miss: query", &query("no-such-file"), Expect::Fault(100)),
        Case::new("miss: shoal.search", &Search::new("no-such-*"), Expect::Empty),
    ];
    let repetitions = repetitions(n);
    let mut samples = Vec::new();
    for case in &cases {
        let sample = measure(&mesh, &rpc, case, repetitions)
            .await
            .with_context(|| format!("{n} nodes, {}", case.name))?;
        samples.push((case.name, sample));
    }
    let failing_peers = mesh.net.failing_peers();
    let stopping = Instant::now();
    mesh.shutdown().await;
    let shutdown = stopping.elapsed();
    let links = (n * (n - 1) / 2) as u64;
    Ok(MeshReport {
        nodes: n,
        links,
        setup,
        anchor,
        repetitions,
        cases: samples,
        failing_peers,
        shutdown,
    })
}

fn times(d: Duration, anchor: Duration) -> String {
    format!("{:.1}×", d.as_secs_f64() / anchor.as_secs_f64())
}

/// The target, for the miss cases of the 32-node mesh: every run within [`TARGET_LATENCY`] and
/// with at most [`TARGET_MESSAGES_PER_LINK`] messages per link.
fn target_holds(report: &MeshReport, sample: &Sample) -> bool {
    sample.latency_max() <= TARGET_LATENCY && sample.messages_max() <= TARGET_MESSAGES_PER_LINK * report.links
}

fn print_markdown(reports: &[MeshReport]) {
    println!("## Full-mesh search from node 0 (file held by the last node only)\n");
    println!(
        "| nodes | links | setup (ms) | anchor: list() median of {ANCHOR_SAMPLES} (ms) | runs per case | peers seen failing | shutdown (ms) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for r in reports {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.nodes,
            r.links,
            ms(r.setup),
            ms(r.anchor),
            r.repetitions,
            r.failing_peers,
            ms(r.shutdown)
        );
    }
    println!();
    println!(
        "| nodes | case | median (ms) | median / anchor | max (ms) | max / anchor | messages (median) | messages (min–max) | messages / links |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in reports {
        for (name, s) in &r.cases {
            let (median, max) = (s.latency_median(), s.latency_max());
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {}–{} | {:.2} |",
                r.nodes,
                name,
                ms(median),
                times(median, r.anchor),
                ms(max),
                times(max, r.anchor),
                s.messages_median(),
                s.messages_min(),
                s.messages_max(),
                s.messages_median() as f64 / r.links as f64
            );
        }
    }
    println!();
    match reports.iter().find(|r| r.nodes == 32) {
        Some(r) => {
            let limit = TARGET_MESSAGES_PER_LINK * r.links;
            println!(
                "Target: a miss in the 32-node mesh within {} ms (every run) and with at most {limit} messages ({TARGET_MESSAGES_PER_LINK} × {} links).\n",
                TARGET_LATENCY.as_millis(),
                r.links
            );
            for (name, s) in r.cases.iter().filter(|(name, _)| name.starts_with("miss")) {
                println!(
                    "- {name}: max {} ms (median {} ms), at most {} messages: {}",
                    ms(s.latency_max()),
                    ms(s.latency_median()),
                    s.messages_max(),
                    if target_holds(r, s) { "holds" } else { "DOES NOT HOLD" }
                );
            }
        }
        None => println!("Target: not checked (the 32-node mesh was not run)."),
    }
}

fn print_json(reports: &[MeshReport]) -> anyhow::Result<()> {
    let meshes: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            let cases: Vec<serde_json::Value> = r
                .cases
                .iter()
                .map(|(name, s)| {
                    serde_json::json!({
                        "case": name,
                        "latency_median_ms": s.latency_median().as_secs_f64() * 1e3,
                        "latency_max_ms": s.latency_max().as_secs_f64() * 1e3,
                        "latencies_ms": s.latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>(),
                        "messages": s.messages,
                        "messages_per_link": s.messages_median() as f64 / r.links as f64,
                        "target_holds": (r.nodes == 32 && name.starts_with("miss")).then(|| target_holds(r, s)),
                    })
                })
                .collect();
            serde_json::json!({
                "nodes": r.nodes,
                "links": r.links,
                "setup_ms": r.setup.as_secs_f64() * 1e3,
                "anchor_list_median_ms": r.anchor.as_secs_f64() * 1e3,
                "repetitions": r.repetitions,
                "failing_peers": r.failing_peers,
                "shutdown_ms": r.shutdown.as_secs_f64() * 1e3,
                "cases": cases,
            })
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "meshes": meshes }))?);
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let mut json = false;
    let mut counts = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => json = true,
            other => counts.push(other.parse::<usize>().with_context(|| format!("{other:?} is not a node count"))?),
        }
    }
    if counts.is_empty() {
        counts = NODE_COUNTS.to_vec();
    }
    let mut reports = Vec::new();
    for n in counts {
        eprintln!("mesh of {n} nodes...");
        reports.push(run_mesh(n).await?);
    }
    if json {
        print_json(&reports)?
    } else {
        print_markdown(&reports)
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
