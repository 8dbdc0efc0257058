//! The Mainline DHT under shoal's keys: lookups, announces and what churn does to lookups, on a
//! local DHT of `mainline` nodes in this process.
//!
//! It starts `--nodes` nodes (256 by default), each a `mainline::Dht` in server mode bound to
//! `127.0.0.1:0`; the first starts with no bootstrap node and every other joins through it. Once
//! all are up, each runs a `find_node` of its own id (`bootstrapped`), so the early nodes learn
//! of the later ones, and the network is left until it is quiet. Every node's `ServerSettings`
//! holds one counting `RequestFilter` (a shared `Arc<AtomicU64>`, every query allowed), so the
//! count is every query any node received: the packets the asking node sent (each answered by
//! one packet back, on a DHT where no node is gone).
//!
//! Keys are shoal's: `shoal_node::net::dht::key` of `--keys` random content ids (64 by default).
//!
//! - **Announces**: each key is announced by a random node (`announce_peer` with the implied
//!   port, so the record names the announcer's own UDP address), one at a time; per announce,
//!   the queries all nodes received from its start until the network is quiet again (the
//!   announcer's `get_peers` walk to the key and its `announce_peer` to the closest nodes).
//! - **Lookups**: each key is looked up (`get_peers`, the async stream) from another random
//!   node, one at a time; a lookup succeeds when the announcer's address comes out of the
//!   stream. Reported: the success rate, the time until the announcer's address came out (the
//!   first peer: one peer was announced per key), the time until the stream ended (the query
//!   done: every close node asked or timed out), both as median and p99, and queries received
//!   per lookup (all nodes' count after the lookup, once quiet, minus before).
//! - **Churn**: a random 20 % of the nodes but the first leave (their `Dht` dropped: the actor
//!   stops and the socket closes), nothing is announced again, and every key is looked up once
//!   more from a surviving node that has not looked it up before. Queries sent to a gone node
//!   are lost, so they are not in the count; the timeouts they cost are in the times.
//!
//! Every wait is bounded: a node's start and bootstrap ([`START_BOUND`]), an announce
//! ([`ANNOUNCE_BOUND`]), a lookup stream ([`LOOKUP_BOUND`]; one that does not end in time counts
//! as ended at the bound), the waits for a quiet network ([`QUIET_BOUND`]).
//!
//! Run: `cargo run --release -p shoal-bench --bin dht` (Markdown on stdout: rows of
//! `| case | measured | figure |`, then notes as `- ` lines; progress on stderr). Arguments:
//! `--nodes N`, `--keys K`, `--seed N`, `--json PATH` to also write every figure as JSON. Exits
//! with 2 and the error chain on stderr if the network cannot start.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use mainline::async_dht::AsyncDht;
use mainline::{Id, RequestFilter, RequestSpecific, ServerSettings};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use shoal_bench::{median, ms, ms_f64, percentile};
use shoal_node::service::fetch::ContentId;

/// Nodes when `--nodes` is not given.
const NODES: usize = 256;
/// Keys announced and looked up when `--keys` is not given.
const KEYS: usize = 64;
/// The seed when `--seed` is not given.
const SEED: u64 = 2026;
/// The share of nodes that leave before the second round of lookups, in percent.
const LEAVE_PERCENT: usize = 20;
/// Longest wait for the network to start and every node to finish its bootstrap.
const START_BOUND: Duration = Duration::from_secs(180);
/// Longest wait for one announce.
const ANNOUNCE_BOUND: Duration = Duration::from_secs(30);
/// Longest one lookup's stream is followed.
const LOOKUP_BOUND: Duration = Duration::from_secs(30);
/// How long the count must stay still for the network to be quiet, and the longest wait for it.
const QUIET_FOR: Duration = Duration::from_millis(150);
const QUIET_BOUND: Duration = Duration::from_secs(10);
/// How long the idle background is counted.
const IDLE_WINDOW: Duration = Duration::from_secs(3);
/// shoal's announce schedule (`crates/node/src/tasks.rs`): every id every 30 min, at most 4
/// announces started per second.
const ANNOUNCE_EVERY_SECS: f64 = 1800.0;
const ANNOUNCES_PER_SECOND: f64 = 4.0;
/// Share sizes whose steady announce traffic is worked out.
const SHARES: [u64; 2] = [1_000, 100_000];

/// Counts every query any node receives, and allows it.
#[derive(Debug, Clone)]
struct Counting(Arc<AtomicU64>);

impl RequestFilter for Counting {
    fn allow_request(&self, _request: &RequestSpecific, _from: SocketAddrV4) -> bool {
        self.0.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// One node of the local DHT.
struct Member {
    dht: AsyncDht,
    addr: SocketAddrV4,
}

/// The local DHT: its nodes (`None` once gone) and the shared count of queries received.
struct Net {
    nodes: Vec<Option<Member>>,
    received: Arc<AtomicU64>,
}

impl Net {
    async fn start(count: usize) -> anyhow::Result<Net> {
        let received = Arc::new(AtomicU64::new(0));
        let settings = || ServerSettings {
            filter: Box::new(Counting(received.clone())),
            ..ServerSettings::default()
        };
        let first = mainline::Dht::builder()
            .server_mode()
            .no_bootstrap()
            .bind_address(Ipv4Addr::LOCALHOST)
            .server_settings(settings())
            .build()
            .context("starting the first DHT node")?
            .as_async();
        let boot = first.info().await.local_addr();
        let mut nodes = vec![Some(Member { dht: first, addr: boot })];
        for i in 1..count {
            let dht = mainline::Dht::builder()
                .server_mode()
                .bootstrap(&[boot.to_string()])
                .bind_address(Ipv4Addr::LOCALHOST)
                .server_settings(settings())
                .build()
                .with_context(|| format!("starting DHT node {i}"))?
                .as_async();
            let addr = dht.info().await.local_addr();
            nodes.push(Some(Member { dht, addr }));
        }
        let net = Net { nodes, received };
        // Each node walks to its own id once all exist, so the early ones learn the later ones.
        let joined = futures_util::future::join_all(net.alive().map(|(_, m)| m.dht.bootstrapped()));
        let joined = tokio::time::timeout(START_BOUND, joined)
            .await
            .context("the nodes did not finish their bootstrap in time")?;
        let lonely = joined.iter().filter(|ok| !**ok).count();
        if lonely > 0 {
            bail!("{lonely} of {count} nodes found no other node");
        }
        Ok(net)
    }

    fn alive(&self) -> impl Iterator<Item = (usize, &Member)> {
        self.nodes.iter().enumerate().filter_map(|(i, m)| m.as_ref().map(|m| (i, m)))
    }

    fn member(&self, i: usize) -> &Member {
        self.nodes[i].as_ref().expect("a live node")
    }

    fn count(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until no node has received a query for [`QUIET_FOR`] (at most [`QUIET_BOUND`]);
    /// returns the count then.
    async fn quiet(&self) -> u64 {
        let started = Instant::now();
        let mut last = self.count();
        let mut still = Instant::now();
        while started.elapsed() < QUIET_BOUND {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = self.count();
            if now != last {
                last = now;
                still = Instant::now();
            } else if still.elapsed() >= QUIET_FOR {
                break;
            }
        }
        last
    }
}

/// One lookup's outcome.
struct Lookup {
    /// When the announcer's address came out of the stream.
    first: Option<Duration>,
    /// When the stream ended (or [`LOOKUP_BOUND`]).
    end: Duration,
    bounded: bool,
    queries: u64,
}

/// One announce's outcome.
struct Announce {
    ok: bool,
    took: Duration,
    queries: u64,
}

/// Follows a lookup of `key` from `dht` until its stream ends or the bound.
async fn lookup(net: &Net, dht: &AsyncDht, key: Id, want: SocketAddrV4) -> Lookup {
    let before = net.quiet().await;
    let started = Instant::now();
    let mut stream = dht.get_peers(key);
    let mut first = None;
    let deadline = tokio::time::sleep(LOOKUP_BOUND);
    tokio::pin!(deadline);
    let bounded = loop {
        tokio::select! {
            () = &mut deadline => break true,
            next = stream.next() => match next {
                None => break false,
                Some(batch) => {
                    if first.is_none() && batch.contains(&want) {
                        first = Some(started.elapsed());
                    }
                }
            },
        }
    };
    let end = started.elapsed();
    drop(stream);
    let after = net.quiet().await;
    Lookup {
        first,
        end,
        bounded,
        queries: after - before,
    }
}

/// Figures of one round of lookups.
struct Round {
    lookups: Vec<Lookup>,
}

impl Round {
    fn found(&self) -> usize {
        self.lookups.iter().filter(|l| l.first.is_some()).count()
    }
    fn firsts(&self) -> Vec<Duration> {
        self.lookups.iter().filter_map(|l| l.first).collect()
    }
    fn ends(&self) -> Vec<Duration> {
        self.lookups.iter().map(|l| l.end).collect()
    }
    fn queries(&self) -> Vec<u64> {
        self.lookups.iter().map(|l| l.queries).collect()
    }
    fn bounded(&self) -> usize {
        self.lookups.iter().filter(|l| l.bounded).count()
    }
}

fn mean(values: &[u64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<u64>() as f64 / values.len() as f64
}

fn median_u64(values: &[u64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => 0.0,
        len if len % 2 == 0 => (sorted[mid - 1] + sorted[mid]) as f64 / 2.0,
        _ => sorted[mid] as f64,
    }
}

/// Picks a live node other than those in `not`.
fn pick(net: &Net, rng: &mut StdRng, not: &[usize]) -> usize {
    let choices: Vec<usize> = net.alive().map(|(i, _)| i).filter(|i| !not.contains(i)).collect();
    choices[rng.random_range(0..choices.len())]
}

struct Report {
    nodes: usize,
    keys: usize,
    seed: u64,
    setup: Duration,
    idle_per_second: f64,
    announces: Vec<Announce>,
    before: Round,
    after: Round,
    left: usize,
    announcers_left: usize,
}

fn round_row(label: &str, round: &Round, nodes: usize) -> String {
    let n = round.lookups.len();
    let found = round.found();
    let firsts = round.firsts();
    let ends = round.ends();
    let queries = round.queries();
    let bounded = match round.bounded() {
        0 => String::new(),
        b => format!(" ({b} streams still open at the {} s bound)", LOOKUP_BOUND.as_secs()),
    };
    format!(
        "| {label}, {nodes} nodes, {n} keys | found the announcer {found}/{n}; time to the first peer (the announcer's \
         address out of the stream): median {} ms, p99 {} ms; time until the stream ends: median {} ms, p99 {} \
         ms{bounded}; queries received by all nodes per lookup: mean {:.1}, median {:.0}, max {} | **success {:.0}%, \
         first peer p50 {} / p99 {} ms, stream end p50 {} / p99 {} ms, {:.1} messages/lookup** |",
        ms(median(&firsts)),
        ms(percentile(&firsts, 99.0)),
        ms(median(&ends)),
        ms(percentile(&ends, 99.0)),
        mean(&queries),
        median_u64(&queries),
        queries.iter().max().copied().unwrap_or(0),
        100.0 * found as f64 / n.max(1) as f64,
        ms(median(&firsts)),
        ms(percentile(&firsts, 99.0)),
        ms(median(&ends)),
        ms(percentile(&ends, 99.0)),
        mean(&queries),
    )
}

fn print_markdown(r: &Report) {
    let queries: Vec<u64> = r.announces.iter().map(|a| a.queries).collect();
    let took: Vec<Duration> = r.announces.iter().map(|a| a.took).collect();
    let ok = r.announces.iter().filter(|a| a.ok).count();
    let per_announce = mean(&queries);
    println!("| case | measured | figure |");
    println!("| --- | --- | --- |");
    println!("{}", round_row("1a. DHT lookups", &r.before, r.nodes));
    println!(
        "{}",
        round_row(
            &format!(
                "1b. DHT lookups after {LEAVE_PERCENT}% left ({} nodes gone, no re-announce)",
                r.left
            ),
            &r.after,
            r.nodes - r.left
        )
    );
    println!(
        "| 3a. announce cost, {} nodes, {} keys | {ok}/{} announces succeeded; time per announce: median {} ms, p99 \
         {} ms; queries received by all nodes per announce (the announcer's get_peers walk and its announce_peer \
         calls; each answered by one packet): mean {per_announce:.1}, median {:.0}, max {} | **{per_announce:.1} \
         packets sent per announce (+ as many answers)** |",
        r.nodes,
        r.keys,
        r.keys,
        ms(median(&took)),
        ms(percentile(&took, 99.0)),
        median_u64(&queries),
        queries.iter().max().copied().unwrap_or(0),
    );
    for (i, share) in SHARES.iter().enumerate() {
        let rate = (*share as f64 / ANNOUNCE_EVERY_SECS).min(ANNOUNCES_PER_SECOND);
        let cycle = *share as f64 / rate;
        let capped = if rate >= ANNOUNCES_PER_SECOND {
            format!(
                "capped at {ANNOUNCES_PER_SECOND} announces/s, so a full pass takes {:.1} h, not 30 min",
                cycle / 3600.0
            )
        } else {
            format!("every id every 30 min: {share}/{ANNOUNCE_EVERY_SECS} s")
        };
        let letter = ['b', 'c'][i];
        println!(
            "| 3{letter}. steady announce traffic, {share} files (computed) | {rate:.3} announces/s ({capped}) × \
             {per_announce:.1} queries each = {:.1} queries/s sent, {:.1} packets/s with the answers | **{:.1} \
             packets/s** |",
            rate * per_announce,
            2.0 * rate * per_announce,
            2.0 * rate * per_announce,
        );
    }
    println!(
        "- DHT bench: {} `mainline` nodes on 127.0.0.1 (server mode, joined through the first) started and \
         bootstrapped in {:.1} s; seed {}; idle background while quiet: {:.1} queries/s over all nodes (not \
         subtracted); keys are `shoal_node::net::dht::key` of random content ids.",
        r.nodes,
        r.setup.as_secs_f64(),
        r.seed,
        r.idle_per_second,
    );
    println!(
        "- DHT bench: after {} nodes left ({} of them announcers; their records stay on the nodes that stored \
         them), lookups ran from survivors that had not looked the key up before; queries sent to gone nodes are \
         lost, so they are not counted (the 2 s request timeouts they cost are in the times).",
        r.left, r.announcers_left,
    );
    println!(
        "- DHT bench: messages are counted one lookup (or announce) at a time, from a quiet network to a quiet \
         network ({} ms without a query); times are from the `get_peers` call (mainline's actor picks a message up \
         within its 50 ms socket read timeout).",
        QUIET_FOR.as_millis(),
    );
}

fn json(r: &Report) -> serde_json::Value {
    let round = |round: &Round| {
        serde_json::json!({
            "lookups": round.lookups.len(),
            "found": round.found(),
            "first_peer_ms": round.firsts().iter().map(|d| ms_f64(*d)).collect::<Vec<_>>(),
            "end_ms": round.ends().iter().map(|d| ms_f64(*d)).collect::<Vec<_>>(),
            "queries": round.queries(),
            "bounded": round.bounded(),
        })
    };
    serde_json::json!({
        "nodes": r.nodes,
        "keys": r.keys,
        "seed": r.seed,
        "setup_ms": ms_f64(r.setup),
        "idle_queries_per_second": r.idle_per_second,
        "announces": r.announces.iter().map(|a| serde_json::json!({
            "ok": a.ok, "ms": ms_f64(a.took), "queries": a.queries,
        })).collect::<Vec<_>>(),
        "lookups": round(&r.before),
        "after_leave": { "left": r.left, "announcers_left": r.announcers_left, "lookups": round(&r.after) },
    })
}

async fn run_bench(nodes: usize, keys: usize, seed: u64) -> anyhow::Result<Report> {
    let mut rng = StdRng::seed_from_u64(seed);
    eprintln!("starting {nodes} DHT nodes on 127.0.0.1...");
    let started = Instant::now();
    let mut net = Net::start(nodes).await?;
    let setup = started.elapsed();
    net.quiet().await;
    eprintln!("up in {:.1} s; counting the idle background", setup.as_secs_f64());
    let idle_from = net.count();
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle_per_second = (net.count() - idle_from) as f64 / IDLE_WINDOW.as_secs_f64();
    // Every node's address, kept for the records of nodes that leave.
    let addrs: Vec<SocketAddrV4> = net.alive().map(|(_, m)| m.addr).collect();

    // Keys, each with its announcer.
    let ids: Vec<Id> = (0..keys).map(|_| shoal_node::net::dht::key(&ContentId(rng.random()))).collect();
    let announcers: Vec<usize> = (0..keys).map(|_| rng.random_range(0..nodes)).collect();

    eprintln!("announcing {keys} keys one at a time...");
    let mut announces = Vec::new();
    for (key, &who) in ids.iter().zip(&announcers) {
        let before = net.quiet().await;
        let t = Instant::now();
        let ok = matches!(
            tokio::time::timeout(ANNOUNCE_BOUND, net.member(who).dht.announce_peer(*key, None)).await,
            Ok(Ok(_))
        );
        let took = t.elapsed();
        let after = net.quiet().await;
        announces.push(Announce {
            ok,
            took,
            queries: after - before,
        });
    }

    eprintln!("looking each key up from another node...");
    let mut lookers = Vec::new();
    let mut before = Round { lookups: Vec::new() };
    for (key, &who) in ids.iter().zip(&announcers) {
        let from = pick(&net, &mut rng, &[who]);
        lookers.push(from);
        let want = addrs[who];
        before.lookups.push(lookup(&net, &net.member(from).dht, *key, want).await);
    }

    // A random LEAVE_PERCENT of the nodes but the first leave.
    let mut others: Vec<usize> = (1..nodes).collect();
    others.shuffle(&mut rng);
    let left = nodes * LEAVE_PERCENT / 100;
    let leaving: Vec<usize> = others.into_iter().take(left).collect();
    eprintln!("{left} nodes leave...");
    for &i in &leaving {
        net.nodes[i] = None;
    }
    // The actors stop within one socket read timeout (50 ms); give them a few.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let announcers_left = announcers
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|a| leaving.contains(a))
        .count();

    eprintln!("looking each key up again from survivors...");
    let mut after = Round { lookups: Vec::new() };
    for ((key, &who), &first_looker) in ids.iter().zip(&announcers).zip(&lookers) {
        let from = pick(&net, &mut rng, &[who, first_looker]);
        let want = addrs[who];
        after.lookups.push(lookup(&net, &net.member(from).dht, *key, want).await);
    }
    Ok(Report {
        nodes,
        keys,
        seed,
        setup,
        idle_per_second,
        announces,
        before,
        after,
        left,
        announcers_left,
    })
}

async fn run() -> anyhow::Result<()> {
    let mut json_path: Option<PathBuf> = None;
    let (mut nodes, mut keys, mut seed) = (NODES, KEYS, SEED);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().with_context(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--json" => json_path = Some(PathBuf::from(value("--json")?)),
            "--nodes" => nodes = value("--nodes")?.parse().context("--nodes takes a number")?,
            "--keys" => keys = value("--keys")?.parse().context("--keys takes a number")?,
            "--seed" => seed = value("--seed")?.parse().context("--seed takes a number")?,
            other => bail!("unknown argument {other:?}"),
        }
    }
    anyhow::ensure!(nodes >= 10, "the DHT needs at least 10 nodes, not {nodes}");
    anyhow::ensure!(keys >= 1, "at least one key");
    eprintln!("seed {seed}");
    let report = run_bench(nodes, keys, seed).await?;
    print_markdown(&report);
    if let Some(path) = json_path {
        shoal_bench::write_json(&path, &json(&report))?;
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
