//! One node under load: many large downloads at once, a thousand searches at once, and small-file
//! requests per second next to nginx serving the same directory.
//!
//! It starts one shoal node in this process on `127.0.0.1:0`, sharing a temporary directory with
//! [`BIG_FILES`] files of 8 MiB and [`SMALL_FILES`] files of 4 KiB (pseudo-random bytes, each file
//! different), waits until all are indexed, then measures three phases:
//!
//! 1. **Downloads.** One `Job` per 8 MiB file, all run at once by a `shoal_node::engine::Engine`
//!    with its own temporary redb store and the nodes' HTTP client settings, the node as the only
//!    peer, content id and size from the node's index (the local `Api`). Every piece is checked
//!    against the content id by the engine. Reports errors (should be 0), total throughput (bytes
//!    over the wall time of the phase), each download's completion time from the common start
//!    (min, median, max and max/median as a fairness figure), and the process's peak RSS in the
//!    phase: `VmHWM` from `/proc/self/status` after resetting it (`5` to `/proc/self/clear_refs`)
//!    at the start, and the largest `VmRSS` seen by a 20 ms sampler. The node and the engine are
//!    both in this process, so the figure covers the serving and the downloading side.
//! 2. **Searches.** [`SEARCHES`] `shoal.search(name, query_id, 1)` calls at once (tokio tasks,
//!    bounded by a semaphore of 1000, one pooled reqwest client), each for one small file by
//!    name, each answer checked (exactly that file). Run twice: "cold" opens the connections,
//!    "warm" reuses them. Reports errors (should be 0), median and p99 latency and searches/s.
//! 3. **Small files.** `GET /files/<small file>` (cycling through all of them) from `--clients`
//!    keep-alive connections for `--duration` seconds, against the node and against nginx
//!    serving the same directory (started here from a generated config on a free loopback port,
//!    `daemon off`, stopped at the end), alternating for `--rounds` rounds. With `wrk` installed
//!    it drives the load (2 threads, a Lua script cycling the paths); otherwise (or with
//!    `--no-wrk`) a reqwest loop with one connection per client does, identically for both
//!    servers. Reports requests/s of each, and the ratio shoal/nginx of the means.
//!
//! Run: `cargo run --release -p shoal-bench --bin load` (Markdown on stdout; `--json PATH` also
//! writes every figure as JSON). Exits with 2 and the error chain on stderr if setup fails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use shoal_bench::{Rpc, median, ms, ms_f64, percentile};
use shoal_node::engine::{Engine, EngineOptions, Job, Progress};
use shoal_node::proto::calls::Search;
use shoal_node::{Node, NodeOptions};
use shoal_xmlrpc::Value;
use tokio_util::sync::CancellationToken;

/// Large files, downloaded all at once through the engine.
const BIG_FILES: usize = 64;
const BIG_SIZE: usize = 8 << 20;
/// Small files, for searches and requests per second.
const SMALL_FILES: usize = 200;
const SMALL_SIZE: usize = 4 << 10;
/// Searches started at once, and the bound on those in flight.
const SEARCHES: usize = 1000;
const SEARCHES_IN_FLIGHT: usize = 1000;
/// How often the RSS sampler reads `/proc/self/status`.
const RSS_EVERY: Duration = Duration::from_millis(20);
/// Longest wait for the index, for a download and for a search.
const INDEX_WAIT: Duration = Duration::from_secs(300);
const DOWNLOAD_WAIT: Duration = Duration::from_secs(600);
const SEARCH_WAIT: Duration = Duration::from_secs(60);

fn big_name(i: usize) -> String {
    format!("big-{i:02}.bin")
}

fn small_name(i: usize) -> String {
    format!("small-{i:03}.dat")
}

/// `len` pseudo-random bytes (splitmix64), different for each `seed`.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn status_field(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Phase 1: downloads.

struct Downloads {
    count: usize,
    errors: usize,
    first_error: Option<String>,
    bytes: u64,
    wall: Duration,
    completions: Vec<Duration>,
    peak_hwm: Option<u64>,
    peak_sampled: u64,
    rss_before: Option<u64>,
}

async fn downloads(node: &Node, work: &Path) -> anyhow::Result<Downloads> {
    let files: Vec<_> = node
        .api()
        .list()
        .await
        .context("listing the share")?
        .into_iter()
        .filter(|(name, _)| name.starts_with("big-"))
        .collect();
    ensure!(
        files.len() == BIG_FILES,
        "the node lists {} large files, not {BIG_FILES}",
        files.len()
    );
    let out = work.join("downloads");
    std::fs::create_dir_all(&out).context("creating the download directory")?;
    let db = redb::Database::create(work.join("engine.redb")).context("creating the engine's store")?;
    let client = shoal_node::net::Client::new(Duration::from_secs(3));
    let engine = Engine::new(Arc::new(db), client.clone(), EngineOptions::default()).context("starting the engine")?;

    let rss_before = status_field("VmRSS:");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (sampling, peak) = (sampling.clone(), peak.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(rss) = status_field("VmRSS:") {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(RSS_EVERY).await;
            }
        })
    };

    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for (name, entry) in &files {
        let job = Job {
            name: name.clone(),
            target: out.join(name),
            id: Some(entry.id),
            size: Some(entry.size),
            peers: vec![node.url().to_string()],
            ..Job::default()
        };
        let engine = engine.clone();
        running.spawn(async move {
            let (_more, more) = tokio::sync::mpsc::channel(1);
            let run = engine.run(job, Arc::new(Progress::default()), CancellationToken::new(), more);
            let result = match tokio::time::timeout(DOWNLOAD_WAIT, run).await {
                Ok(Ok(outcome)) => Ok(outcome.size),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("not done after {DOWNLOAD_WAIT:?}")),
            };
            (started.elapsed(), result)
        });
    }
    let mut result = Downloads {
        count: files.len(),
        errors: 0,
        first_error: None,
        bytes: 0,
        wall: Duration::ZERO,
        completions: Vec::new(),
        peak_hwm: None,
        peak_sampled: 0,
        rss_before,
    };
    while let Some(joined) = running.join_next().await {
        let (elapsed, outcome) = joined.context("a download task failed")?;
        match outcome {
            Ok(size) => {
                result.bytes += size;
                result.completions.push(elapsed);
            }
            Err(error) => {
                result.errors += 1;
                result.first_error.get_or_insert(error);
            }
        }
    }
    result.wall = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    result.peak_hwm = if reset { status_field("VmHWM:") } else { None };
    result.peak_sampled = peak.load(Ordering::Relaxed);
    for (name, entry) in &files {
        let size = std::fs::metadata(out.join(name)).map(|m| m.len()).unwrap_or(0);
        if size != entry.size && result.first_error.is_none() {
            result.errors += 1;
            result.first_error = Some(format!("{name} is {size} bytes, not {}", entry.size));
        }
    }
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// Phase 2: searches.

struct Searches {
    round: &'static str,
    calls: usize,
    errors: usize,
    first_error: Option<String>,
    latencies: Vec<Duration>,
    wall: Duration,
}

async fn one_search(rpc: &Rpc, i: usize) -> Result<(), String> {
    let wanted = small_name(i % SMALL_FILES);
    let pattern = wanted.trim_end_matches(".dat").to_string();
    let call = Search::own_files(&pattern, shoal_node::discovery::search::new_query_id());
    match tokio::time::timeout(SEARCH_WAIT, rpc.send(&call)).await {
        Err(_) => Err(format!("no answer within {SEARCH_WAIT:?}")),
        Ok(Err(error)) => Err(format!("{error:#}")),
        Ok(Ok(Err(fault))) => Err(fault.to_string()),
        Ok(Ok(Ok(Value::Array(items)))) => {
            let names: Vec<String> = items
                .into_iter()
                .filter_map(shoal_node::discovery::match_from_value)
                .map(|m| m.name)
                .collect();
            if names == [wanted.clone()] {
                Ok(())
            } else {
                Err(format!("searching for {wanted} found {names:?}"))
            }
        }
        Ok(Ok(Ok(other))) => Err(format!("an answer that is not an array: {other:?}")),
    }
}

async fn searches(url: &str) -> anyhow::Result<Vec<Searches>> {
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(SEARCHES_IN_FLIGHT)
        .timeout(SEARCH_WAIT)
        .build()
        .context("building the HTTP client")?;
    let rpc = Rpc::with_client(http, url);
    let limit = Arc::new(tokio::sync::Semaphore::new(SEARCHES_IN_FLIGHT));
    let mut rounds = Vec::new();
    for round in ["cold", "warm"] {
        let started = Instant::now();
        let mut running = tokio::task::JoinSet::new();
        for i in 0..SEARCHES {
            let (rpc, limit) = (rpc.clone(), limit.clone());
            running.spawn(async move {
                let _permit = limit.acquire_owned().await.map_err(|e| e.to_string())?;
                let sent = Instant::now();
                one_search(&rpc, i).await?;
                Ok::<Duration, String>(sent.elapsed())
            });
        }
        let mut result = Searches {
            round,
            calls: SEARCHES,
            errors: 0,
            first_error: None,
            latencies: Vec::new(),
            wall: Duration::ZERO,
        };
        while let Some(joined) = running.join_next().await {
            match joined.context("a search task failed")? {
                Ok(latency) => result.latencies.push(latency),
                Err(error) => {
                    result.errors += 1;
                    result.first_error.get_or_insert(error);
                }
            }
        }
        result.wall = started.elapsed();
        rounds.push(result);
    }
    Ok(rounds)
}

// ---------------------------------------------------------------------------------------------
// Phase 3: small files, shoal and nginx.

/// nginx serving a directory at `/files/`, as a child process stopped on drop.
struct Nginx {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(share: &Path) -> anyhow::Result<Nginx> {
        let dir = tempfile::tempdir().context("creating nginx's directory")?;
        // A free port: bind one, note it, let it go (nginx binds it a moment later).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
        let d = dir.path().display();
        let config = format!(
            "daemon off;\nmaster_process on;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n  default_type application/octet-stream;\n\
             \x20 client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             \x20 server {{\n    listen 127.0.0.1:{port};\n    location /files/ {{ alias {}/; }}\n  }}\n}}\n",
            share.display()
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config).context("writing nginx.conf")?;
        let child = std::process::Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting nginx (is it installed?)")?;
        let mut nginx = Nginx { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = nginx.child.try_wait()? {
                let log = std::fs::read_to_string(nginx._dir.path().join("error.log")).unwrap_or_default();
                bail!("nginx exited at once ({status}): {}", log.trim());
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(nginx);
            }
            ensure!(Instant::now() < deadline, "nginx did not listen on port {port} within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops the workers too; SIGKILL would orphan them.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One load run against one server.
struct Rps {
    server: &'static str,
    round: usize,
    requests_per_s: f64,
    requests: u64,
    /// Non-2xx answers and socket errors.
    errors: u64,
    latency_p50: Option<Duration>,
    latency_p99: Option<Duration>,
    tool: &'static str,
}

/// The Lua script that makes wrk cycle through the small files.
fn wrk_script() -> String {
    format!(
        "local i = 0\nrequest = function()\n  local path = string.format(\"/files/small-%03d.dat\", i)\n  i = (i + 1) % {SMALL_FILES}\n  return wrk.format(\"GET\", path)\nend\n"
    )
}

fn wrk_installed() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// A wrk duration such as `812.00us`, `1.20ms` or `2.01s`.
fn wrk_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

async fn run_wrk(server: &'static str, round: usize, base: &str, script: &Path, clients: usize, duration: Duration) -> anyhow::Result<Rps> {
    let mut command = std::process::Command::new("wrk");
    command
        .arg("-t2")
        .arg(format!("-c{clients}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(base);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await?
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "wrk failed: {}{}",
        text,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut rps = Rps {
        server,
        round,
        requests_per_s: 0.0,
        requests: 0,
        errors: 0,
        latency_p50: None,
        latency_p99: None,
        tool: "wrk",
    };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rps.requests_per_s = rest.trim().parse().context("reading wrk's Requests/sec")?;
        } else if line.contains(" requests in ") {
            rps.requests = words.first().and_then(|w| w.parse().ok()).unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            rps.errors += rest.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            rps.errors += rest
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        } else if words.len() == 2 && words[0] == "50%" {
            rps.latency_p50 = wrk_duration(words[1]);
        } else if words.len() == 2 && words[0] == "99%" {
            rps.latency_p99 = wrk_duration(words[1]);
        }
    }
    ensure!(rps.requests_per_s > 0.0, "no Requests/sec in wrk's output: {text}");
    Ok(rps)
}

/// The same load without wrk: `clients` tasks, each with one keep-alive connection of its own,
/// each cycling through the small files for `duration`.
async fn run_loop(server: &'static str, round: usize, base: &str, clients: usize, duration: Duration) -> anyhow::Result<Rps> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut running = tokio::task::JoinSet::new();
    for c in 0..clients {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        let base = base.to_string();
        running.spawn(async move {
            let (mut ok, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
            let mut i = c;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let url = format!("{base}/files/{}", small_name(i % SMALL_FILES));
                i += 1;
                match http.get(&url).send().await {
                    Ok(response) if response.status().is_success() => match response.bytes().await {
                        Ok(body) if body.len() == SMALL_SIZE => {
                            ok += 1;
                            latencies.push(sent.elapsed());
                        }
                        _ => errors += 1,
                    },
                    _ => errors += 1,
                }
            }
            (ok, errors, latencies)
        });
    }
    let (mut ok, mut errors, mut latencies) = (0, 0, Vec::new());
    while let Some(joined) = running.join_next().await {
        let (o, e, l) = joined.context("a load task failed")?;
        (ok, errors) = (ok + o, errors + e);
        latencies.extend(l);
    }
    let elapsed = started.elapsed();
    Ok(Rps {
        server,
        round,
        requests_per_s: ok as f64 / elapsed.as_secs_f64(),
        requests: ok,
        errors,
        latency_p50: Some(percentile(&latencies, 50.0)),
        latency_p99: Some(percentile(&latencies, 99.0)),
        tool: "reqwest loop",
    })
}

/// Checks that `base` serves the first small file with exactly its bytes.
async fn check_serves(base: &str, expected: &[u8]) -> anyhow::Result<()> {
    let url = format!("{base}/files/{}", small_name(0));
    let response = reqwest::get(&url).await.with_context(|| format!("GET {url}"))?;
    ensure!(response.status().is_success(), "GET {url}: HTTP {}", response.status());
    let body = response.bytes().await?;
    ensure!(
        body.as_ref() == expected,
        "GET {url} sent {} bytes that are not the file",
        body.len()
    );
    Ok(())
}

struct Settings {
    clients: usize,
    duration: Duration,
    rounds: usize,
    use_wrk: bool,
}

async fn small_files(node_url: &str, share: &Path, work: &Path, settings: &Settings) -> anyhow::Result<Vec<Rps>> {
    let nginx = Nginx::start(share)?;
    let first = bytes(1_000, SMALL_SIZE);
    check_serves(node_url, &first).await.context("shoal")?;
    check_serves(&nginx.base(), &first).await.context("nginx")?;
    let script = work.join("cycle.lua");
    std::fs::write(&script, wrk_script()).context("writing the wrk script")?;
    let mut results = Vec::new();
    for round in 1..=settings.rounds {
        for (server, base) in [("shoal", node_url.to_string()), ("nginx", nginx.base())] {
            eprintln!("  small files: {server}, round {round}...");
            let rps = if settings.use_wrk {
                run_wrk(server, round, &base, &script, settings.clients, settings.duration).await?
            } else {
                run_loop(server, round, &base, settings.clients, settings.duration).await?
            };
            results.push(rps);
        }
    }
    drop(nginx);
    Ok(results)
}

fn mean_rps(results: &[Rps], server: &str) -> f64 {
    let rows: Vec<f64> = results.iter().filter(|r| r.server == server).map(|r| r.requests_per_s).collect();
    if rows.is_empty() {
        0.0
    } else {
        rows.iter().sum::<f64>() / rows.len() as f64
    }
}

// ---------------------------------------------------------------------------------------------

struct Report {
    index: Duration,
    downloads: Downloads,
    searches: Vec<Searches>,
    small: Vec<Rps>,
    settings: Settings,
}

fn opt_ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".to_string(), ms)
}

fn print_markdown(r: &Report) {
    let d = &r.downloads;
    let (min, med, max) = (
        d.completions.iter().copied().min().unwrap_or_default(),
        median(&d.completions),
        d.completions.iter().copied().max().unwrap_or_default(),
    );
    println!(
        "## One node under load (indexing {BIG_FILES} × 8 MiB + {SMALL_FILES} × 4 KiB took {} ms)\n",
        ms(r.index)
    );
    println!("### {} concurrent 8 MiB downloads through the engine\n", d.count);
    println!(
        "| downloads | errors | MiB | wall (s) | throughput (MiB/s) | completion min (ms) | median (ms) | max (ms) | max / median | peak RSS VmHWM (MiB) | peak VmRSS sampled (MiB) | RSS before (MiB) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.0} | {:.2} | {:.1} | {} | {} | {} | {:.2} | {} | {:.1} | {} |",
        d.count,
        d.errors,
        mib(d.bytes),
        d.wall.as_secs_f64(),
        mib(d.bytes) / d.wall.as_secs_f64(),
        ms(min),
        ms(med),
        ms(max),
        max.as_secs_f64() / med.as_secs_f64().max(f64::MIN_POSITIVE),
        d.peak_hwm.map_or_else(|| "–".to_string(), |b| format!("{:.1}", mib(b))),
        mib(d.peak_sampled),
        d.rss_before.map_or_else(|| "–".to_string(), |b| format!("{:.1}", mib(b))),
    );
    if let Some(error) = &d.first_error {
        println!("\nFirst download error: {error}");
    }
    println!("\n### {SEARCHES} concurrent `shoal.search` calls (semaphore {SEARCHES_IN_FLIGHT}, one pooled client)\n");
    println!("| round | calls | errors | median (ms) | p99 (ms) | max (ms) | wall (ms) | searches/s |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for s in &r.searches {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            s.round,
            s.calls,
            s.errors,
            ms(median(&s.latencies)),
            ms(percentile(&s.latencies, 99.0)),
            ms(s.latencies.iter().copied().max().unwrap_or_default()),
            ms(s.wall),
            s.calls as f64 / s.wall.as_secs_f64()
        );
    }
    for s in r.searches.iter().filter_map(|s| s.first_error.as_ref()) {
        println!("\nFirst search error: {s}");
    }
    let tool = r.small.first().map_or("–", |s| s.tool);
    println!(
        "\n### GET /files/<4 KiB file>: {} keep-alive clients, {} s per run, {tool}\n",
        r.settings.clients,
        r.settings.duration.as_secs()
    );
    println!("| server | round | requests/s | requests | errors | latency p50 (ms) | p99 (ms) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for s in &r.small {
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} |",
            s.server,
            s.round,
            s.requests_per_s,
            s.requests,
            s.errors,
            opt_ms(s.latency_p50),
            opt_ms(s.latency_p99)
        );
    }
    let (shoal, nginx) = (mean_rps(&r.small, "shoal"), mean_rps(&r.small, "nginx"));
    println!(
        "\nMean requests/s: shoal {shoal:.0}, nginx {nginx:.0}; shoal / nginx = {:.2}",
        shoal / nginx.max(f64::MIN_POSITIVE)
    );
}

fn json(r: &Report) -> serde_json::Value {
    let d = &r.downloads;
    let completions: Vec<f64> = d.completions.iter().copied().map(ms_f64).collect();
    let med = median(&d.completions);
    let max = d.completions.iter().copied().max().unwrap_or_default();
    let searches: Vec<serde_json::Value> = r
        .searches
        .iter()
        .map(|s| {
            serde_json::json!({
                "round": s.round,
                "calls": s.calls,
                "errors": s.errors,
                "first_error": s.first_error,
                "latency_median_ms": ms_f64(median(&s.latencies)),
                "latency_p99_ms": ms_f64(percentile(&s.latencies, 99.0)),
                "latency_max_ms": ms_f64(s.latencies.iter().copied().max().unwrap_or_default()),
                "wall_ms": ms_f64(s.wall),
                "searches_per_s": s.calls as f64 / s.wall.as_secs_f64(),
            })
        })
        .collect();
    let small: Vec<serde_json::Value> = r
        .small
        .iter()
        .map(|s| {
            serde_json::json!({
                "server": s.server,
                "round": s.round,
                "tool": s.tool,
                "requests_per_s": s.requests_per_s,
                "requests": s.requests,
                "errors": s.errors,
                "latency_p50_ms": s.latency_p50.map(ms_f64),
                "latency_p99_ms": s.latency_p99.map(ms_f64),
            })
        })
        .collect();
    let (shoal, nginx) = (mean_rps(&r.small, "shoal"), mean_rps(&r.small, "nginx"));
    serde_json::json!({
        "index_ms": ms_f64(r.index),
        "downloads": {
            "count": d.count,
            "file_bytes": BIG_SIZE,
            "errors": d.errors,
            "first_error": d.first_error,
            "bytes": d.bytes,
            "wall_ms": ms_f64(d.wall),
            "throughput_mib_per_s": mib(d.bytes) / d.wall.as_secs_f64(),
            "completion_ms": completions,
            "completion_min_ms": ms_f64(d.completions.iter().copied().min().unwrap_or_default()),
            "completion_median_ms": ms_f64(med),
            "completion_max_ms": ms_f64(max),
            "max_over_median": max.as_secs_f64() / med.as_secs_f64().max(f64::MIN_POSITIVE),
            "peak_rss_vmhwm_bytes": d.peak_hwm,
            "peak_rss_sampled_bytes": d.peak_sampled,
            "rss_before_bytes": d.rss_before,
        },
        "searches": searches,
        "small_files": {
            "clients": r.settings.clients,
            "duration_s": r.settings.duration.as_secs(),
            "runs": small,
            "shoal_mean_rps": shoal,
            "nginx_mean_rps": nginx,
            "shoal_over_nginx": shoal / nginx.max(f64::MIN_POSITIVE),
        },
    })
}

/// Makes `path` readable and searchable by others, so that nginx's workers (which drop root for
/// `nobody`) can serve from it.
fn open_up(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).with_context(|| format!("chmod {}", path.display()))
}

async fn run() -> anyhow::Result<()> {
    let mut json_path: Option<PathBuf> = None;
    let mut settings = Settings {
        clients: 64,
        duration: Duration::from_secs(5),
        rounds: 2,
        use_wrk: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().with_context(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--json" => json_path = Some(PathBuf::from(value("--json")?)),
            "--clients" => settings.clients = value("--clients")?.parse().context("--clients takes a number")?,
            "--duration" => settings.duration = Duration::from_secs(value("--duration")?.parse().context("--duration takes seconds")?),
            "--rounds" => settings.rounds = value("--rounds")?.parse().context("--rounds takes a number")?,
            "--no-wrk" => settings.use_wrk = false,
            other => bail!("unknown argument {other:?}"),
        }
    }
    ensure!(
        settings.clients > 0 && settings.rounds > 0 && !settings.duration.is_zero(),
        "clients, rounds and duration must be positive"
    );
    if settings.use_wrk && !wrk_installed() {
        eprintln!("wrk is not installed; using a reqwest loop for both servers");
        settings.use_wrk = false;
    }

    let work = tempfile::tempdir().context("creating the work directory")?;
    let (share, state) = (work.path().join("share"), work.path().join("state"));
    std::fs::create_dir_all(&share).context("creating the share")?;
    open_up(work.path())?;
    open_up(&share)?;
    eprintln!("writing {BIG_FILES} × 8 MiB and {SMALL_FILES} × 4 KiB...");
    {
        let share = share.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for i in 0..BIG_FILES {
                std::fs::write(share.join(big_name(i)), bytes(i as u64, BIG_SIZE))?;
            }
            for i in 0..SMALL_FILES {
                std::fs::write(share.join(small_name(i)), bytes(1_000 + i as u64, SMALL_SIZE))?;
            }
            Ok(())
        })
        .await?
        .context("writing the files")?;
    }

    let mut options = NodeOptions::new(&share, &state);
    options.secret = Some("load-bench".to_string());
    options.rescan_interval = Duration::from_secs(3600);
    options.peer_exchange_interval = Duration::from_secs(3600);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding 127.0.0.1:0")?;
    let started = Instant::now();
    let node = Node::start(options, listener).await.context("starting the node")?;
    // The node scans its share as it starts; wait until every file is indexed.
    loop {
        let listed = node.api().list().await.context("listing the share")?.len();
        if listed == BIG_FILES + SMALL_FILES {
            break;
        }
        ensure!(started.elapsed() < INDEX_WAIT, "only {listed} files indexed after {INDEX_WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let index = started.elapsed();
    eprintln!("indexed in {} ms; downloads...", ms(index));

    let downloads = downloads(&node, work.path()).await?;
    // The engine's client is gone with it; let the node see its connections close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    eprintln!("searches...");
    let searches = searches(node.url()).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    eprintln!("small files...");
    let small = small_files(node.url(), &share, work.path(), &settings).await?;
    node.shutdown().await;

    let report = Report {
        index,
        downloads,
        searches,
        small,
        settings,
    };
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
