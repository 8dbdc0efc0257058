//! Search at scale: hit rate, messages and latency of `shoal.search` in sparse networks of 64 and
//! 256 nodes, by ttl, and what churn does to searches in flight.
//!
//! For each size it builds two networks of that many shoal nodes in this process, each node on
//! `127.0.0.1:0` with its own temporary share and state, told its neighbours' URLs as configured
//! peers (links are symmetric: both ends know each other):
//!
//! - **random**: each node links to [`K`] distinct random others (so a node has about 2K links);
//! - **small-world** (Watts–Strogatz): a ring lattice where each node links to its [`K`] nearest
//!   neighbours (K/2 on each side), each link rewired with probability [`REWIRE_P`] to a random
//!   node it is not yet linked to.
//!
//! Every choice comes from one seeded RNG (`--seed`, printed; each network's stream is derived
//! from the seed, the size and the topology, so `scale 64` repeats the 64-node figures of a full
//! run). Nodes run with a 5 s search deadline, rescans and peer exchange pushed out to an hour
//! and failing peers never dropped, so no background work is counted.
//!
//! [`SINGLE_FILES`] files are put at one random holder each, and [`TRIPLE_FILES`] files at three
//! distinct random holders each. Then, for one copy and for three copies, for ttl 1 to 6, it runs
//! `--searches` searches (50 by default) one after another, each from a random origin for a
//! random file of the set, as `shoal.search(name, query_id, ttl)` over HTTP XML-RPC with a fresh
//! 32-hex query id, bounded by twice the deadline (a search over that counts as a timeout). It
//! reports:
//!
//! - hit rate: the fraction of searches whose answer lists the file (with at least one holder);
//! - reachable: the fraction whose origin is within ttl − 1 hops of a holder (ttl counts the
//!   origin), i.e. the hit rate a perfect flood would reach; below it, a search lost paths
//!   (a node that first saw the query id on a longer path refuses the shorter one);
//! - messages per search: the sum over all nodes of `messages_sent()` after the search minus
//!   before it, read once the network is quiet (no count changing for 50 ms);
//! - latency median and p95, errors (faults, transport failures) and timeouts.
//!
//! Churn: it starts 50 searches (ttl 6) at once from nodes that will survive, and 10 ms later
//! shuts down a random 20 % of the nodes, all in parallel (`Node::shutdown`). Only searches for a
//! file with at least one surviving holder count towards the hit rate; "reachable" is then
//! measured in the network of survivors.
//!
//! Run: `cargo run --release -p shoal-bench --bin scale` (64 and 256 nodes, Markdown on stdout).
//! Arguments: node counts (`scale 64`), `--searches N`, `--seed N`, `--json PATH` to also write
//! every figure as JSON. Exits with 2 and the error chain on stderr if a network cannot start.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use shoal_bench::{Network, Rpc, median, ms, ms_f64, percentile};
use shoal_node::proto::calls::{RouteParams, Search};
use shoal_xmlrpc::Value;

/// The node counts run when none are given.
const NODE_COUNTS: [usize; 2] = [64, 256];
/// Links each node makes (random) or nearest neighbours (small-world ring).
const K: usize = 4;
/// Rewiring probability of the small-world network.
const REWIRE_P: f64 = 0.1;
/// The default seed.
const SEED: u64 = 0x5E0A1;
/// Files with one copy, and files with three copies.
const SINGLE_FILES: usize = 20;
const TRIPLE_FILES: usize = 5;
/// Every node's search deadline.
const SEARCH_DEADLINE: Duration = Duration::from_secs(5);
/// The network counts as quiet once no node's message count changed for this long.
const QUIET_FOR: Duration = Duration::from_millis(50);
/// The ttls measured.
const TTLS: std::ops::RangeInclusive<u32> = 1..=6;
/// Churn: searches started at once, their ttl, the share of nodes stopped, and how long after
/// the searches start the nodes are stopped.
const CHURN_SEARCHES: usize = 50;
const CHURN_TTL: u32 = 6;
const CHURN_FRACTION: f64 = 0.2;
const CHURN_AFTER: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Topology {
    Random,
    SmallWorld,
}

impl Topology {
    fn name(self) -> &'static str {
        match self {
            Topology::Random => "random",
            Topology::SmallWorld => "small-world",
        }
    }

    /// The adjacency lists of a network of `n` nodes.
    fn links(self, n: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
        let mut adjacent = vec![BTreeSet::new(); n];
        match self {
            Topology::Random => {
                for i in 0..n {
                    let mut others: Vec<usize> = (0..n).filter(|&j| j != i && !adjacent[i].contains(&j)).collect();
                    others.shuffle(rng);
                    for &j in others.iter().take(K) {
                        adjacent[i].insert(j);
                        adjacent[j].insert(i);
                    }
                }
            }
            Topology::SmallWorld => {
                let mut lattice = Vec::new();
                for i in 0..n {
                    for d in 1..=K / 2 {
                        let j = (i + d) % n;
                        if j != i && adjacent[i].insert(j) {
                            adjacent[j].insert(i);
                            lattice.push((i, j));
                        }
                    }
                }
                for (i, j) in lattice {
                    if !rng.random_bool(REWIRE_P) {
                        continue;
                    }
                    let free: Vec<usize> = (0..n).filter(|&m| m != i && !adjacent[i].contains(&m)).collect();
                    if let Some(&m) = free.choose(rng) {
                        adjacent[i].remove(&j);
                        adjacent[j].remove(&i);
                        adjacent[i].insert(m);
                        adjacent[m].insert(i);
                    }
                }
            }
        }
        adjacent.into_iter().map(|set| set.into_iter().collect()).collect()
    }
}

/// Hops from the nearest of `sources` to every node, through nodes `alive` only (`None`: not
/// reachable).
fn hops(links: &[Vec<usize>], sources: &[usize], alive: &[bool]) -> Vec<Option<usize>> {
    let mut dist = vec![None; links.len()];
    let mut queue = VecDeque::new();
    for &s in sources.iter().filter(|&&s| alive[s]) {
        dist[s] = Some(0);
        queue.push_back(s);
    }
    while let Some(i) = queue.pop_front() {
        let d = dist[i].unwrap_or(0);
        for &j in &links[i] {
            if alive[j] && dist[j].is_none() {
                dist[j] = Some(d + 1);
                queue.push_back(j);
            }
        }
    }
    dist
}

/// The size of the largest connected component.
fn largest_component(links: &[Vec<usize>]) -> usize {
    let alive = vec![true; links.len()];
    let mut seen = vec![false; links.len()];
    let mut largest = 0;
    for start in 0..links.len() {
        if seen[start] {
            continue;
        }
        let dist = hops(links, &[start], &alive);
        let size = dist
            .iter()
            .enumerate()
            .filter(|(_, d)| d.is_some())
            .inspect(|(i, _)| seen[*i] = true)
            .count();
        largest = largest.max(size);
    }
    largest
}

/// A test file and the nodes that hold it.
struct TestFile {
    name: String,
    holders: Vec<usize>,
}

/// How one search ended.
enum Answer {
    /// The file was listed, with this many holders.
    Hit(usize),
    Miss,
    Error(String),
    Timeout,
}

/// Runs `shoal.search(name, fresh query id, ttl)` at `rpc`, bounded by twice the deadline.
async fn search(rpc: &Rpc, name: &str, ttl: u32) -> (Duration, Answer) {
    let call = Search {
        pattern: name.to_string(),
        route: RouteParams {
            query_id: Some(shoal_node::discovery::search::new_query_id()),
            ttl: Some(ttl),
            ..Default::default()
        },
    };
    let started = Instant::now();
    let answer = tokio::time::timeout(SEARCH_DEADLINE * 2, rpc.send(&call)).await;
    let latency = started.elapsed();
    let answer = match answer {
        Err(_) => Answer::Timeout,
        Ok(Err(error)) => Answer::Error(format!("{error:#}")),
        Ok(Ok(Err(fault))) => Answer::Error(fault.to_string()),
        Ok(Ok(Ok(Value::Array(items)))) => {
            let holders: usize = items
                .into_iter()
                .filter_map(shoal_node::discovery::match_from_value)
                .filter(|m| m.name == name)
                .map(|m| m.urls.len())
                .sum();
            if holders > 0 { Answer::Hit(holders) } else { Answer::Miss }
        }
        Ok(Ok(Ok(other))) => Answer::Error(format!("an answer that is not an array: {other:?}")),
    };
    (latency, answer)
}

/// The figures of many searches.
#[derive(Default)]
struct Tally {
    searches: usize,
    hits: usize,
    reachable: usize,
    holders_found: usize,
    errors: usize,
    timeouts: usize,
    latencies: Vec<Duration>,
    messages: Vec<u64>,
    first_error: Option<String>,
}

impl Tally {
    fn add(&mut self, latency: Duration, answer: Answer, reachable: bool) {
        self.searches += 1;
        self.reachable += reachable as usize;
        self.latencies.push(latency);
        match answer {
            Answer::Hit(holders) => {
                self.hits += 1;
                self.holders_found += holders;
            }
            Answer::Miss => {}
            Answer::Error(error) => {
                self.errors += 1;
                self.first_error.get_or_insert(error);
            }
            Answer::Timeout => self.timeouts += 1,
        }
    }

    fn rate(&self, count: usize) -> f64 {
        if self.searches == 0 {
            0.0
        } else {
            count as f64 / self.searches as f64
        }
    }

    fn messages_mean(&self) -> f64 {
        if self.messages.is_empty() {
            0.0
        } else {
            self.messages.iter().sum::<u64>() as f64 / self.messages.len() as f64
        }
    }

    fn messages_median(&self) -> u64 {
        let mut sorted = self.messages.clone();
        sorted.sort_unstable();
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "searches": self.searches,
            "hits": self.hits,
            "hit_rate": self.rate(self.hits),
            "reachable": self.reachable,
            "reachable_rate": self.rate(self.reachable),
            "holders_found_mean": if self.hits == 0 { 0.0 } else { self.holders_found as f64 / self.hits as f64 },
            "errors": self.errors,
            "timeouts": self.timeouts,
            "first_error": self.first_error,
            "latency_median_ms": ms_f64(median(&self.latencies)),
            "latency_p95_ms": ms_f64(percentile(&self.latencies, 95.0)),
            "latency_max_ms": ms_f64(self.latencies.iter().copied().max().unwrap_or_default()),
            "messages_mean": self.messages_mean(),
            "messages_median": self.messages_median(),
            "messages": self.messages,
        })
    }
}

/// One row of the search table.
struct Setting {
    copies: usize,
    ttl: u32,
    tally: Tally,
}

/// The churn run of one network.
struct Churn {
    stopped: usize,
    /// Searches whose file had no surviving holder (not counted).
    excluded: usize,
    tally: Tally,
    messages_total: u64,
    shutdown: Duration,
}

/// Everything measured in one network.
struct Report {
    nodes: usize,
    topology: Topology,
    seed: u64,
    links: usize,
    degree_min: usize,
    degree_max: usize,
    largest_component: usize,
    setup: Duration,
    settings: Vec<Setting>,
    churn: Churn,
}

/// The seed of the RNG of one network, derived from the run's seed.
fn network_seed(seed: u64, n: usize, topology: Topology) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(n as u64 * 10 + topology as u64)
}

async fn run_network(n: usize, topology: Topology, seed: u64, searches: usize) -> anyhow::Result<Report> {
    let seed = network_seed(seed, n, topology);
    let mut rng = StdRng::seed_from_u64(seed);
    let links = topology.links(n, &mut rng);
    let link_count = links.iter().map(Vec::len).sum::<usize>() / 2;
    let largest = largest_component(&links);

    let started = Instant::now();
    let mut net = Network::start(&links, |options| {
        options.search_deadline = SEARCH_DEADLINE;
        options.rescan_interval = Duration::from_secs(3600);
        options.peer_exchange_interval = Duration::from_secs(3600);
        options.peer.drop_after_failures = u32::MAX;
        options.peer.drop_after = Duration::from_secs(3600);
    })
    .await
    .with_context(|| format!("starting the {n}-node {} network", topology.name()))?;
    let setup = started.elapsed();

    // The files: SINGLE_FILES at one holder each, TRIPLE_FILES at three distinct holders each.
    let mut files: Vec<TestFile> = Vec::new();
    for i in 0..SINGLE_FILES {
        files.push(TestFile {
            name: format!("scale-one-{i:03}.dat"),
            holders: vec![rng.random_range(0..n)],
        });
    }
    for i in 0..TRIPLE_FILES {
        let holders = rand::seq::index::sample(&mut rng, n, 3.min(n)).into_vec();
        files.push(TestFile {
            name: format!("scale-three-{i:03}.dat"),
            holders,
        });
    }
    let mut to_rescan = BTreeSet::new();
    for file in &files {
        for &holder in &file.holders {
            let content = format!("{} held by node {holder} of {n}\n", file.name).repeat(16);
            std::fs::write(net.dirs[holder].0.path().join(&file.name), content).with_context(|| format!("writing {}", file.name))?;
            to_rescan.insert(holder);
        }
    }
    for holder in to_rescan {
        net.node(holder)
            .context("a holder is missing")?
            .api()
            .rescan()
            .await
            .context("indexing the files")?;
    }
    let everyone = vec![true; n];
    let distances: Vec<Vec<Option<usize>>> = files.iter().map(|f| hops(&links, &f.holders, &everyone)).collect();

    let http = shoal_bench::http_client(Duration::from_secs(60))?;
    let rpcs: Vec<Rpc> = net.urls.iter().map(|url| Rpc::with_client(http.clone(), url)).collect();

    let mut settings = Vec::new();
    for copies in [1, 3] {
        let candidates: Vec<usize> = (0..files.len()).filter(|&f| files[f].holders.len() == copies).collect();
        for ttl in TTLS {
            let mut tally = Tally::default();
            let mut before = net.quiet(QUIET_FOR).await;
            for _ in 0..searches {
                let origin = rng.random_range(0..n);
                let f = *candidates.choose(&mut rng).context("no files of this kind")?;
                let (latency, answer) = search(&rpcs[origin], &files[f].name, ttl).await;
                let reachable = distances[f][origin].is_some_and(|d| d < ttl as usize);
                tally.add(latency, answer, reachable);
                let after = net.quiet(QUIET_FOR).await;
                tally.messages.push(after - before);
                before = after;
            }
            eprintln!(
                "  {n} {} copies={copies} ttl={ttl}: hit rate {:.2}, {:.0} messages/search, median {} ms",
                topology.name(),
                tally.rate(tally.hits),
                tally.messages_mean(),
                ms(median(&tally.latencies))
            );
            settings.push(Setting { copies, ttl, tally });
        }
    }

    let churn = churn(&mut net, &links, &files, &rpcs, &mut rng).await?;
    net.shutdown().await;
    let degrees: Vec<usize> = links.iter().map(Vec::len).collect();
    Ok(Report {
        nodes: n,
        topology,
        seed,
        links: link_count,
        degree_min: degrees.iter().copied().min().unwrap_or_default(),
        degree_max: degrees.iter().copied().max().unwrap_or_default(),
        largest_component: largest,
        setup,
        settings,
        churn,
    })
}

/// Starts [`CHURN_SEARCHES`] searches at once from nodes that survive, stops a random
/// [`CHURN_FRACTION`] of the nodes while they run, and counts what the searches found.
async fn churn(net: &mut Network, links: &[Vec<usize>], files: &[TestFile], rpcs: &[Rpc], rng: &mut StdRng) -> anyhow::Result<Churn> {
    let n = net.len();
    let stopped = ((n as f64) * CHURN_FRACTION).round() as usize;
    let victims: BTreeSet<usize> = rand::seq::index::sample(rng, n, stopped).into_iter().collect();
    let alive: Vec<bool> = (0..n).map(|i| !victims.contains(&i)).collect();
    let survivors: Vec<usize> = (0..n).filter(|&i| alive[i]).collect();
    let distances: Vec<Vec<Option<usize>>> = files.iter().map(|f| hops(links, &f.holders, &alive)).collect();

    net.quiet(QUIET_FOR).await;
    // Every node's count is read through a handle to its `Api`, which outlives a stopped node.
    let apis: Vec<shoal_node::Api> = net.nodes.iter().flatten().map(|node| node.api().clone()).collect();
    let sent = || apis.iter().map(|api| api.messages_sent()).sum::<u64>();
    let before = sent();
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..CHURN_SEARCHES {
        let origin = *survivors.choose(rng).context("no survivors")?;
        let f = rng.random_range(0..files.len());
        let (rpc, name) = (rpcs[origin].clone(), files[f].name.clone());
        running.spawn(async move { (origin, f, search(&rpc, &name, CHURN_TTL).await) });
    }
    tokio::time::sleep(CHURN_AFTER).await;
    let stopping = Instant::now();
    let nodes: Vec<_> = victims.iter().filter_map(|&i| net.take(i)).collect();
    futures_util::future::join_all(nodes.into_iter().map(|node| node.shutdown())).await;
    let shutdown = stopping.elapsed();

    let mut tally = Tally::default();
    let mut excluded = 0;
    while let Some(joined) = running.join_next().await {
        let (origin, f, (latency, answer)) = joined.context("a search task failed")?;
        if !files[f].holders.iter().any(|&h| alive[h]) {
            excluded += 1;
            continue;
        }
        let reachable = distances[f][origin].is_some_and(|d| d < CHURN_TTL as usize);
        tally.add(latency, answer, reachable);
    }
    net.quiet(QUIET_FOR).await;
    let messages_total = sent() - before;
    eprintln!(
        "  {n} churn: {stopped} stopped, hit rate {:.2} of {}, {} errors, {} timeouts",
        tally.rate(tally.hits),
        tally.searches,
        tally.errors,
        tally.timeouts
    );
    Ok(Churn {
        stopped,
        excluded,
        tally,
        messages_total,
        shutdown,
    })
}

fn pct(rate: f64) -> String {
    format!("{:.0} %", rate * 100.0)
}

fn print_markdown(reports: &[Report], seed: u64, searches: usize) {
    println!(
        "## Networks (seed {seed}; k = {K}, small-world p = {REWIRE_P}; deadline {} s)\n",
        SEARCH_DEADLINE.as_secs()
    );
    println!("| nodes | topology | network seed | links | degree min–max | largest component | setup (ms) |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for r in reports {
        println!(
            "| {} | {} | {} | {} | {}–{} | {} | {} |",
            r.nodes,
            r.topology.name(),
            r.seed,
            r.links,
            r.degree_min,
            r.degree_max,
            r.largest_component,
            ms(r.setup)
        );
    }
    println!("\n## Search by ttl ({searches} searches per row, one after another, random origin and file)\n");
    println!(
        "| nodes | topology | copies | ttl | hit rate | reachable (≤ ttl−1 hops) | holders found (mean) | messages/search (mean) | messages (median) | latency median (ms) | p95 (ms) | errors | timeouts |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in reports {
        for s in &r.settings {
            let t = &s.tally;
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.2} | {:.1} | {} | {} | {} | {} | {} |",
                r.nodes,
                r.topology.name(),
                s.copies,
                s.ttl,
                pct(t.rate(t.hits)),
                pct(t.rate(t.reachable)),
                if t.hits == 0 { 0.0 } else { t.holders_found as f64 / t.hits as f64 },
                t.messages_mean(),
                t.messages_median(),
                ms(median(&t.latencies)),
                ms(percentile(&t.latencies, 95.0)),
                t.errors,
                t.timeouts
            );
        }
    }
    println!(
        "\n## Churn ({CHURN_SEARCHES} searches at once, ttl {CHURN_TTL}; {:.0} % of the nodes stopped {} ms after they start)\n",
        CHURN_FRACTION * 100.0,
        CHURN_AFTER.as_millis()
    );
    println!(
        "| nodes | topology | stopped | searches counted | hit rate | reachable among survivors | latency median (ms) | p95 (ms) | max (ms) | errors | timeouts | messages/search | shutdown (ms) |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in reports {
        let c = &r.churn;
        let t = &c.tally;
        println!(
            "| {} | {} | {} | {} (of {}) | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} |",
            r.nodes,
            r.topology.name(),
            c.stopped,
            t.searches,
            t.searches + c.excluded,
            pct(t.rate(t.hits)),
            pct(t.rate(t.reachable)),
            ms(median(&t.latencies)),
            ms(percentile(&t.latencies, 95.0)),
            ms(t.latencies.iter().copied().max().unwrap_or_default()),
            t.errors,
            t.timeouts,
            c.messages_total as f64 / CHURN_SEARCHES as f64,
            ms(c.shutdown)
        );
    }
    for r in reports {
        let errors = r
            .settings
            .iter()
            .filter_map(|s| s.tally.first_error.as_ref())
            .chain(r.churn.tally.first_error.as_ref());
        if let Some(error) = errors.into_iter().next() {
            println!("\nFirst error ({} nodes, {}): {error}", r.nodes, r.topology.name());
        }
    }
}

fn json(reports: &[Report], seed: u64, searches: usize) -> serde_json::Value {
    let networks: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            let settings: Vec<serde_json::Value> = r
                .settings
                .iter()
                .map(|s| {
                    let mut value = s.tally.json();
                    value["copies"] = s.copies.into();
                    value["ttl"] = s.ttl.into();
                    value
                })
                .collect();
            let mut churn = r.churn.tally.json();
            churn["stopped"] = r.churn.stopped.into();
            churn["excluded_no_surviving_holder"] = r.churn.excluded.into();
            churn["messages_total"] = r.churn.messages_total.into();
            churn["messages_per_search"] = (r.churn.messages_total as f64 / CHURN_SEARCHES as f64).into();
            churn["shutdown_ms"] = ms_f64(r.churn.shutdown).into();
            serde_json::json!({
                "nodes": r.nodes,
                "topology": r.topology.name(),
                "network_seed": r.seed,
                "links": r.links,
                "degree_min": r.degree_min,
                "degree_max": r.degree_max,
                "largest_component": r.largest_component,
                "setup_ms": ms_f64(r.setup),
                "search": settings,
                "churn": churn,
            })
        })
        .collect();
    serde_json::json!({
        "seed": seed,
        "k": K,
        "rewire_p": REWIRE_P,
        "search_deadline_ms": ms_f64(SEARCH_DEADLINE),
        "searches_per_setting": searches,
        "churn": { "searches": CHURN_SEARCHES, "ttl": CHURN_TTL, "fraction": CHURN_FRACTION, "after_ms": ms_f64(CHURN_AFTER) },
        "networks": networks,
    })
}

async fn run() -> anyhow::Result<()> {
    let mut json_path: Option<PathBuf> = None;
    let mut counts = Vec::new();
    let mut seed = SEED;
    let mut searches = 50;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().with_context(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--json" => json_path = Some(PathBuf::from(value("--json")?)),
            "--seed" => seed = value("--seed")?.parse().context("--seed takes a number")?,
            "--searches" => searches = value("--searches")?.parse().context("--searches takes a number")?,
            other if other.starts_with('-') => bail!("unknown flag {other:?}"),
            other => counts.push(other.parse::<usize>().with_context(|| format!("{other:?} is not a node count"))?),
        }
    }
    if counts.is_empty() {
        counts = NODE_COUNTS.to_vec();
    }
    for &n in &counts {
        anyhow::ensure!(n >= K + 2, "a network needs at least {} nodes, not {n}", K + 2);
    }
    eprintln!("seed {seed}");
    let mut reports = Vec::new();
    for n in counts {
        for topology in [Topology::Random, Topology::SmallWorld] {
            eprintln!("{n} nodes, {}...", topology.name());
            reports.push(run_network(n, topology, seed, searches).await?);
        }
    }
    print_markdown(&reports, seed, searches);
    if let Some(path) = json_path {
        shoal_bench::write_json(&path, &json(&reports, seed, searches))?;
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
