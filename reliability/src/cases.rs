//! The six fault cases. Each returns one [`Outcome`] row: what was tried, how many times, and
//! whether the property held every time; a failed round is described in the notes with the
//! round number, so that `--seed` and `--only` can replay it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde::Serialize;
use shoal_xmlrpc::Value;

use crate::servers::{self, Mirror};
use crate::support::{MIB, Node, Proc, Rng, Rpc, done_summary, json, last_line, median_max, path, random_bytes, same_file};

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub case: String,
    pub tried: String,
    pub times: u32,
    /// `None` when the case was skipped (the notes say why).
    pub held: Option<bool>,
    pub notes: String,
}

/// What every case gets.
pub struct Ctx {
    pub bin: PathBuf,
    pub rounds: u32,
    pub rng: Rng,
    pub rpc: Rpc,
    pub root: PathBuf,
}

/// Longest any one `shoal get` run may take before it counts as a hang.
const GET_LIMIT: Duration = Duration::from_secs(120);

/// Runs `rounds` rounds of `round`, collecting failures into the notes.
fn rounds<T>(
    ctx: &mut Ctx,
    rounds: u32,
    mut round: impl FnMut(&mut Ctx, u32) -> anyhow::Result<T>,
    mut summarise: impl FnMut(&[T]) -> String,
) -> (u32, bool, String) {
    let mut kept = Vec::new();
    let mut failures = Vec::new();
    for i in 0..rounds {
        let started = Instant::now();
        match round(ctx, i) {
            Ok(stats) => {
                eprintln!("    round {i}: ok ({:.1} s)", started.elapsed().as_secs_f64());
                kept.push(stats);
            }
            Err(error) => {
                eprintln!("    round {i}: FAILED: {error:#}");
                failures.push(format!("round {i}: {error:#}"));
            }
        }
    }
    let mut notes = summarise(&kept);
    if !failures.is_empty() {
        notes = format!("{} of {rounds} rounds failed: {}. {notes}", failures.len(), failures.join("; "));
    }
    (rounds, failures.is_empty(), notes)
}

/// A file served by `count` nodes, each with its own share (hard links to one copy) and state.
struct Served {
    name: String,
    data: Arc<Vec<u8>>,
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

fn serve_file(ctx: &Ctx, name: &str, data: Vec<u8>, count: usize, upload_rate: Option<u64>) -> anyhow::Result<Served> {
    let dir = tempfile::tempdir_in(&ctx.root)?;
    let source = dir.path().join("source.bin");
    std::fs::write(&source, &data)?;
    let mut nodes = Vec::new();
    for i in 0..count {
        let share = dir.path().join(format!("node{i}/share"));
        std::fs::create_dir_all(&share)?;
        if std::fs::hard_link(&source, share.join(name)).is_err() {
            std::fs::copy(&source, share.join(name))?;
        }
        let extra: Vec<String> = upload_rate
            .map(|r| vec!["--max-upload-rate".to_string(), r.to_string()])
            .unwrap_or_default();
        nodes.push(Node::start(
            &ctx.bin,
            &share,
            &dir.path().join(format!("node{i}/state")),
            0,
            &extra,
        )?);
    }
    for node in &nodes {
        ctx.rpc.wait_listed(&node.url, name, Duration::from_secs(30))?;
    }
    Ok(Served {
        name: name.to_string(),
        data: Arc::new(data),
        nodes,
        dir,
    })
}

impl Served {
    fn get_args(&self, extra_targets: &[String]) -> (Vec<String>, PathBuf) {
        let out = self.dir.path().join("out");
        let _ = std::fs::create_dir_all(&out);
        let target = out.join(&self.name);
        let mut args = vec!["get".to_string(), self.name.clone()];
        args.extend(extra_targets.iter().cloned());
        for node in &self.nodes {
            args.extend(["--peer".to_string(), node.url.clone()]);
        }
        args.extend([
            "-o".to_string(),
            path(&target),
            "--state".to_string(),
            path(&self.dir.path().join("get-state")),
        ]);
        args.extend(["--json".to_string(), "--retry-for".to_string(), "60".to_string()]);
        (args, target)
    }
}

/// Reads `shoal get --json` output until `lines` progress lines were seen (or the download
/// ended); returns the last `done` figure and whether the download already finished.
fn wait_progress(get: &mut Proc, lines: u64, limit: Duration) -> (u64, bool) {
    let deadline = Instant::now() + limit;
    let (mut seen, mut done) = (0, 0);
    while seen < lines {
        let Some(line) = get.next_line(deadline) else { return (done, true) };
        match json(&line) {
            Some(v) if v["event"] == "progress" => {
                seen += 1;
                done = v["done"].as_u64().unwrap_or(done);
            }
            Some(v) if v["event"] == "done" => return (done, true),
            _ => {}
        }
    }
    (done, false)
}

fn sizes_and_rate(rng: &mut Rng, count: usize, seconds: u64) -> (u64, u64) {
    let size = rng.range(8 * MIB, 48 * MIB + 1);
    // Together the nodes send the file in about `seconds`.
    let rate = (size / (count as u64 * seconds)).max(64 * 1024);
    (size, rate)
}

/// 1. SIGKILL the downloader at random moments; the target is never wrong, and a rerun
///    completes the file byte for byte.
pub fn kill_downloader(ctx: &mut Ctx) -> Outcome {
    struct Stats {
        before_kill: bool,
        /// `done` of the last progress line read before the kill.
        reported: u64,
        /// Bytes the rerun did not fetch again: size minus the bytes its sources sent.
        kept: u64,
        reruns: u32,
    }
    let n = ctx.rounds;
    let (times, held, notes) = rounds(
        ctx,
        n,
        |ctx, round| {
            let count = ctx.rng.range(2, 4) as usize;
            let (size, rate) = sizes_and_rate(&mut ctx.rng, count, 4);
            let data = random_bytes(size, ctx.rng.next());
            let kill_after = ctx.rng.range(1, 5);
            let extra_ms = ctx.rng.range(0, 900);
            let served = serve_file(ctx, &format!("kill-{round}.bin"), data, count, Some(rate))?;
            let (args, target) = served.get_args(&[]);
            let mut get = Proc::start(&ctx.bin, &args)?;
            let (last_done, ended) = wait_progress(&mut get, kill_after, Duration::from_secs(60));
            if !ended {
                std::thread::sleep(Duration::from_millis(extra_ms));
            }
            get.kill();
            if target.exists() {
                ensure!(
                    same_file(&target, &served.data),
                    "after SIGKILL the target exists but is not the file ({size} bytes, {count} sources)"
                );
                return Ok(Stats {
                    before_kill: true,
                    reported: 0,
                    kept: 0,
                    reruns: 0,
                });
            }
            let mut reruns = 0;
            loop {
                reruns += 1;
                let finished = Proc::start(&ctx.bin, &args)?.finish(GET_LIMIT)?;
                if finished.status.success() {
                    ensure!(
                        same_file(&target, &served.data),
                        "the rerun exited 0 but the file differs ({size} bytes)"
                    );
                    let fetched: u64 = done_summary(&finished.stdout)
                        .and_then(|s| s["sources"].as_array().map(|a| a.iter().filter_map(|x| x["bytes"].as_u64()).sum()))
                        .unwrap_or(0);
                    return Ok(Stats {
                        before_kill: false,
                        reported: last_done,
                        kept: size.saturating_sub(fetched),
                        reruns,
                    });
                }
                if reruns >= 3 {
                    bail!(
                        "3 reruns failed, the last with {}: {}",
                        finished.status,
                        last_line(&finished.stderr)
                    );
                }
            }
        },
        |stats| {
            let early = stats.iter().filter(|s| s.before_kill).count();
            let reported: u64 = stats.iter().map(|s| s.reported).sum();
            let kept: u64 = stats.iter().map(|s| s.kept).sum();
            let short = stats.iter().filter(|s| !s.before_kill && s.kept < s.reported).count();
            let extra_reruns = stats.iter().filter(|s| s.reruns > 1).count();
            format!(
                "{early} downloads finished before the kill; the last progress lines before the kills reported {:.1} MiB done in all, the reruns kept {:.1} MiB (size minus the bytes the rerun's sources sent); rounds where a rerun kept less than the last progress line reported: {short}; rounds needing more than one rerun: {extra_reruns}",
                reported as f64 / MIB as f64,
                kept as f64 / MIB as f64
            )
        },
    );
    Outcome {
        case: "1. SIGKILL of the downloader".into(),
        tried: "file of 8-48 MiB from 2-3 rate-limited nodes; `shoal get --json` SIGKILLed after 1-4 progress lines (+0-0.9 s); target checked absent or identical; rerun until exit 0; compared byte for byte".into(),
        times,
        held: Some(held),
        notes,
    }
}

/// 2. SIGKILL a serving node mid-download (restarted in half the rounds); the download finishes
///    from the others, identical.
pub fn kill_source(ctx: &mut Ctx) -> Outcome {
    let n = ctx.rounds;
    let (times, held, notes) = rounds(
        ctx,
        n,
        |ctx, round| {
            let count = ctx.rng.range(2, 4) as usize;
            let (size, rate) = sizes_and_rate(&mut ctx.rng, count, 4);
            let data = random_bytes(size, ctx.rng.next());
            let kill_after = ctx.rng.range(1, 4);
            let victim = ctx.rng.range(0, count as u64) as usize;
            let restart = round % 2 == 1;
            let restart_after = Duration::from_millis(ctx.rng.range(300, 1500));
            let mut served = serve_file(ctx, &format!("source-{round}.bin"), data, count, Some(rate))?;
            let (args, target) = served.get_args(&[]);
            let mut get = Proc::start(&ctx.bin, &args)?;
            let (_, ended) = wait_progress(&mut get, kill_after, Duration::from_secs(60));
            let mut restarted = false;
            if !ended {
                served.nodes[victim].kill();
                if restart {
                    std::thread::sleep(restart_after);
                    served.nodes[victim].restart().context("restarting the killed source")?;
                    restarted = true;
                }
            }
            let finished = get.finish(GET_LIMIT)?;
            ensure!(
                finished.status.success(),
                "the download failed after a source was killed ({count} sources, restart {restart}): {}",
                last_line(&finished.stderr)
            );
            ensure!(same_file(&target, &served.data), "the file differs ({size} bytes)");
            Ok((ended, restarted, finished.took))
        },
        |stats| {
            let early = stats.iter().filter(|s| s.0).count();
            let restarted = stats.iter().filter(|s| s.1).count();
            let (median, max) = median_max(&stats.iter().map(|s| s.2).collect::<Vec<_>>());
            format!(
                "{early} downloads finished before the kill; {restarted} killed sources restarted on their port; download time median {:.1} s, max {:.1} s",
                median / 1000.0,
                max / 1000.0
            )
        },
    );
    Outcome {
        case: "2. SIGKILL of a source".into(),
        tried: "file of 8-48 MiB from 2-3 rate-limited nodes; one node SIGKILLed after 1-3 progress lines, restarted on the same port in every second round; the running `shoal get` must finish, identical".into(),
        times,
        held: Some(held),
        notes,
    }
}

/// 3. A mirror that corrupts and one that stalls, beside a good node.
pub fn bad_mirrors(ctx: &mut Ctx) -> Outcome {
    let variants: [&[Mirror]; 3] = [&[Mirror::Corrupt], &[Mirror::Stall], &[Mirror::Corrupt, Mirror::Stall]];
    let repeats = (ctx.rounds / 10).max(1);
    let n = repeats * variants.len() as u32;
    let (times, held, notes) = rounds(
        ctx,
        n,
        |ctx, round| {
            let mirrors = variants[(round as usize) % variants.len()];
            let size = ctx.rng.range(12 * MIB, 20 * MIB);
            let data = random_bytes(size, ctx.rng.next());
            // The good node alone would take about 4 s, so the fast mirrors get work.
            let served = serve_file(ctx, &format!("mirror-{round}.bin"), data, 1, Some(size / 4))?;
            let mut urls = Vec::new();
            for behaviour in mirrors {
                urls.push(servers::start_mirror(&ctx.rpc.handle, served.data.clone(), *behaviour)?.0);
            }
            let (args, target) = served.get_args(&urls);
            let finished = Proc::start(&ctx.bin, &args)?.finish(GET_LIMIT)?;
            ensure!(
                finished.status.success(),
                "{mirrors:?}: the download failed: {}",
                last_line(&finished.stderr)
            );
            ensure!(same_file(&target, &served.data), "{mirrors:?}: the file differs");
            let summary = done_summary(&finished.stdout).context("no done summary in the --json output")?;
            let sources = summary["sources"].as_array().cloned().unwrap_or_default();
            let stat = |url: &str| sources.iter().find(|s| s["url"].as_str().is_some_and(|u| u == url)).cloned();
            let mut report = Vec::new();
            for (behaviour, url) in mirrors.iter().zip(&urls) {
                let s = stat(url).unwrap_or_default();
                let bad = s["bad_pieces"].as_u64().unwrap_or(0);
                if *behaviour == Mirror::Corrupt {
                    ensure!(bad > 0, "the corrupting mirror's bad pieces were not reported: {s}");
                }
                report.push(format!(
                    "{behaviour:?}: {bad} bad pieces, state {}, {} bytes kept",
                    s["state"],
                    s["bytes"].as_u64().unwrap_or(0)
                ));
            }
            Ok(format!("{} in {:.1} s", report.join(", "), finished.took.as_secs_f64()))
        },
        |stats| stats.join("; "),
    );
    Outcome {
        case: "3. Corrupting and stalling mirrors".into(),
        tried: "12-20 MiB from one rate-limited node plus an in-process HTTP mirror that flips a byte every 64 KiB, one that stalls after 64 KiB per request, and both; identical file and bad pieces in the --json summary".into(),
        times,
        held: Some(held),
        notes,
    }
}

/// One `shoal search NAME --node URL --json`: whether it found `name`, and how long it took.
fn search(ctx: &Ctx, node: &str, name: &str, limit: Duration) -> anyhow::Result<(bool, Duration)> {
    let args: Vec<String> = ["search", name, "--node", node, "--json"].iter().map(|s| s.to_string()).collect();
    let finished = Proc::start(&ctx.bin, &args)?
        .finish(limit)
        .context("a search did not answer in time")?;
    ensure!(finished.status.success(), "a search failed: {}", last_line(&finished.stderr));
    let found: serde_json::Value = serde_json::from_str(&finished.stdout.join("\n")).context("the search printed no JSON")?;
    let hit = found
        .as_array()
        .is_some_and(|rows| rows.iter().any(|r| r["name"].as_str() == Some(name)));
    Ok((hit, finished.took))
}

/// 4. A–B–C: B is SIGKILLed and restarted while A searches for C's file.
pub fn restart_middle(ctx: &mut Ctx) -> Outcome {
    let cycles = (ctx.rounds / 4).max(2);
    let limit = Duration::from_secs(15);
    let result = (|| -> anyhow::Result<String> {
        let dir = tempfile::tempdir_in(&ctx.root)?;
        let name = "far.bin";
        let data = random_bytes(256 * 1024, ctx.rng.next());
        let node_dir = |n: &str| dir.path().join(n);
        std::fs::create_dir_all(node_dir("c/share"))?;
        std::fs::write(node_dir("c/share").join(name), &data)?;
        let c = Node::start(&ctx.bin, &node_dir("c/share"), &node_dir("c/state"), 0, &[])?;
        let mut b = Node::start(
            &ctx.bin,
            &node_dir("b/share"),
            &node_dir("b/state"),
            0,
            &["--peer".into(), c.url.clone()],
        )?;
        let a = Node::start(
            &ctx.bin,
            &node_dir("a/share"),
            &node_dir("a/state"),
            0,
            &["--peer".into(), b.url.clone()],
        )?;
        ctx.rpc.wait_listed(&c.url, name, Duration::from_secs(30))?;
        let mut latencies = Vec::new();
        let mut recoveries = Vec::new();
        let (mut found_while_down, mut searches_while_down) = (0, 0);
        let until_found = |ctx: &Ctx, latencies: &mut Vec<Duration>| -> anyhow::Result<Duration> {
            let started = Instant::now();
            loop {
                let (hit, took) = search(ctx, &a.url, name, limit)?;
                latencies.push(took);
                if hit {
                    return Ok(started.elapsed());
                }
                ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "A did not find the file through B within 60 s"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        };
        until_found(ctx, &mut latencies).context("before any restart")?;
        for cycle in 0..cycles {
            b.kill();
            let down_for = Duration::from_millis(ctx.rng.range(1000, 3000));
            let down_since = Instant::now();
            while down_since.elapsed() < down_for {
                let (hit, took) = search(ctx, &a.url, name, limit).with_context(|| format!("cycle {cycle}, B down"))?;
                latencies.push(took);
                searches_while_down += 1;
                found_while_down += u32::from(hit);
                std::thread::sleep(Duration::from_millis(100));
            }
            b.restart()
                .with_context(|| format!("cycle {cycle}: restarting B on port {}", b.port))?;
            recoveries.push(until_found(ctx, &mut latencies).with_context(|| format!("cycle {cycle}, after B came back"))?);
        }
        let (median, max) = median_max(&latencies);
        let (rec_median, rec_max) = median_max(&recoveries);
        Ok(format!(
            "{} searches, every one answered: median {median:.0} ms, max {max:.0} ms (deadline {} s); {searches_while_down} while B was down ({found_while_down} found the file anyway, A having learnt C); found again after B's restart in median {:.1} s, max {:.1} s",
            latencies.len(),
            limit.as_secs(),
            rec_median / 1000.0,
            rec_max / 1000.0
        ))
    })();
    let (held, notes) = match result {
        Ok(notes) => (true, notes),
        Err(error) => (false, format!("{error:#}")),
    };
    Outcome {
        case: "4. Restarting a node searches pass through".into(),
        tried: format!(
            "a line A-B-C with the file at C; `shoal search NAME --node A --json` in a loop while B is SIGKILLed, left down 1-3 s and restarted on its port ({cycles} cycles)"
        ),
        times: cycles,
        held: Some(held),
        notes,
    }
}

/// A tmpfs mount, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if output.status.success() {
            Ok(Tmpfs(dir.to_path_buf()))
        } else {
            Err(format!(
                "mount -t tmpfs: {} {}",
                output.status,
                last_line(&String::from_utf8_lossy(&output.stderr))
            ))
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// 5. A disk too small: a clear error, then with space freed the same command succeeds.
pub fn full_disk(ctx: &mut Ctx) -> Outcome {
    let tried = "download 12 MiB into a 20 MiB tmpfs holding 10 MiB of ballast: exit 1 naming the lack of space, no target; free the ballast and rerun the same command: identical".to_string();
    let case = "5. A full disk".to_string();
    // Ok(Err(reason)) is a skip.
    let result = (|| -> anyhow::Result<Result<String, String>> {
        let dir = tempfile::tempdir_in(&ctx.root)?;
        let small = dir.path().join("small");
        std::fs::create_dir_all(&small)?;
        let disk = match Tmpfs::mount(&small, "20m") {
            Ok(disk) => disk,
            Err(reason) => return Ok(Err(format!("skipped: {reason}"))),
        };
        let ballast = small.join("ballast");
        std::fs::write(&ballast, vec![1u8; 10 * MIB as usize])?;
        let data = random_bytes(12 * MIB, ctx.rng.next());
        let served = serve_file(ctx, "twelve.bin", data, 1, None)?;
        let target = small.join("twelve.bin");
        let args: Vec<String> = [
            "get",
            "twelve.bin",
            "--peer",
            &served.nodes[0].url,
            "-o",
            &path(&target),
            "--state",
            &path(&dir.path().join("get-state")),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let first = Proc::start(&ctx.bin, &args)?.finish(GET_LIMIT)?;
        ensure!(
            first.status.code() == Some(1),
            "a full disk should exit 1, got {}: {}",
            first.status,
            last_line(&first.stderr)
        );
        ensure!(
            first.stderr.contains("space"),
            "stderr should mention space: {}",
            last_line(&first.stderr)
        );
        ensure!(!target.exists(), "a target appeared on the full disk");
        std::fs::remove_file(&ballast)?;
        let second = Proc::start(&ctx.bin, &args)?.finish(GET_LIMIT)?;
        ensure!(
            second.status.success(),
            "the rerun with space failed: {}",
            last_line(&second.stderr)
        );
        ensure!(same_file(&target, &served.data), "the rerun's file differs");
        drop(disk);
        Ok(Ok(format!(
            "error: `{}`; rerun took {:.2} s",
            last_line(&first.stderr),
            second.took.as_secs_f64()
        )))
    })();
    match result {
        Ok(Err(skip)) => Outcome {
            case,
            tried,
            times: 0,
            held: None,
            notes: skip,
        },
        Ok(Ok(notes)) => Outcome {
            case,
            tried,
            times: 1,
            held: Some(true),
            notes,
        },
        Err(error) => Outcome {
            case,
            tried,
            times: 1,
            held: Some(false),
            notes: format!("{error:#}"),
        },
    }
}

/// 6. A peer that takes 5 s over every answer must not slow `query` or other clients' `list`.
pub fn slow_peer(ctx: &mut Ctx) -> Outcome {
    let delay = Duration::from_secs(5);
    let queries = (ctx.rounds / 2).max(3);
    let result = (|| -> anyhow::Result<(bool, String)> {
        let dir = tempfile::tempdir_in(&ctx.root)?;
        let data = random_bytes(256 * 1024, ctx.rng.next());
        let good = serve_file(ctx, "near.bin", data, 1, None)?;
        let (slow_url, slow_calls) = servers::start_slow_peer(&ctx.rpc.handle, delay)?;
        let extra = ["--peer".to_string(), slow_url, "--peer".to_string(), good.nodes[0].url.clone()];
        let node = Node::start(&ctx.bin, &dir.path().join("share"), &dir.path().join("state"), 0, &extra)?;
        // Let the node's introduction to the slow peer (a `hello` that takes 5 s) finish first, so
        // that the slow peer counts as a live peer and is asked during the queries.
        let deadline = Instant::now() + Duration::from_secs(10);
        while slow_calls.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(delay + Duration::from_secs(1));
        let list_limit = Duration::from_secs(10);
        let mut baseline = Vec::new();
        for _ in 0..10 {
            let started = Instant::now();
            ctx.rpc.list(&node.url, list_limit)?;
            baseline.push(started.elapsed());
        }
        // Other clients call `list` all the time the queries run.
        let stop = Arc::new(AtomicBool::new(false));
        let listers: Vec<_> = (0..3)
            .map(|_| {
                let (rpc, url, stop) = (ctx.rpc.clone(), node.url.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut times = Vec::new();
                    let mut errors = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        match rpc.list(&url, list_limit) {
                            Ok(_) => times.push(started.elapsed()),
                            Err(_) => errors += 1,
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    (times, errors)
                })
            })
            .collect();
        let mut query_times = Vec::new();
        let mut wrong = 0;
        let calls_before = slow_calls.load(Ordering::Relaxed);
        for _ in 0..queries {
            // Spread out, so that calls to the slow peer are outstanding all the time.
            std::thread::sleep(Duration::from_millis(500));
            let started = Instant::now();
            let answer = ctx.rpc.call(
                &node.url,
                "query",
                &[Value::String("near.bin".into()), Value::Array(vec![])],
                Duration::from_secs(20),
            );
            query_times.push(started.elapsed());
            match answer.ok().and_then(shoal_xmlrpc::content_bytes) {
                Some(bytes) if bytes == *good.data => {}
                _ => wrong += 1,
            }
        }
        let asked = slow_calls.load(Ordering::Relaxed) - calls_before;
        stop.store(true, Ordering::Relaxed);
        let mut list_times = Vec::new();
        let mut list_errors = 0;
        for lister in listers {
            let (times, errors) = lister.join().map_err(|_| anyhow::anyhow!("a list thread panicked"))?;
            list_times.extend(times);
            list_errors += errors;
        }
        let (q_median, q_max) = median_max(&query_times);
        let (l_median, l_max) = median_max(&list_times);
        let (b_median, b_max) = median_max(&baseline);
        let held = wrong == 0 && list_errors == 0 && q_max < delay.as_secs_f64() * 1000.0;
        Ok((
            held,
            format!(
                "query answered {}/{queries} with the right bytes: median {q_median:.0} ms, max {q_max:.0} ms (the slow peer takes {} ms); {} `list` calls from 3 other clients meanwhile: median {l_median:.1} ms, max {l_max:.1} ms, {list_errors} errors (before the queries: median {b_median:.1} ms, max {b_max:.1} ms); the slow peer was called {asked} times during the queries",
                queries - wrong,
                delay.as_millis(),
                list_times.len(),
            ),
        ))
    })();
    let (held, notes) = match result {
        Ok(pair) => pair,
        Err(error) => (false, format!("{error:#}")),
    };
    Outcome {
        case: "6. A peer that answers slowly".into(),
        tried: format!(
            "a node knowing an in-process XML-RPC peer that sleeps 5 s before every answer and a normal node holding a 256 KiB file; {queries} `query` calls for the file, 0.5 s apart, while 3 other clients call `list` in a loop; held = right bytes every time, each query under the 5 s (latencies are benchmark figures)"
        ),
        times: queries,
        held: Some(held),
        notes,
    }
}
