//! `shoal get`: download one file from peers and mirrors at once (folders, globs and lists are
//! a queue of such downloads: [`crate::queue`]), with a progress bar (or
//! `--json` lines, or nothing with `--quiet`), resumable by running the same command again.
//!
//! Without a node it opens the state store itself (for the peer table and resume records). When
//! a node runs on the same state directory the store is locked; then the download is handed to
//! that node (`shoal.download`) and its progress is shown from `shoal.downloads`.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use shoal_node::service::fetch::{Beneath, EngineOptions, SourceStat};
use shoal_node::service::folder::Existing;
use shoal_node::service::session::{Session, SessionError, SessionOptions};

use crate::cli::GetArgs;

/// Prints progress as a bar, as JSON lines, or not at all.
pub(crate) struct Reporter {
    json: bool,
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
}

impl Reporter {
    pub(crate) fn new(quiet: bool, json: bool) -> Self {
        let bar = (!quiet && !json && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Reporter {
            json,
            bar,
            started: Instant::now(),
        }
    }

    pub(crate) fn update(&self, done: u64, total: u64, live: usize, waiting: bool) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(if waiting {
                "waiting for a source…".to_string()
            } else {
                format!("{live} source{}", if live == 1 { "" } else { "s" })
            });
        }
        if self.json {
            let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
            println!(
                "{}",
                serde_json::json!({"event": "progress", "done": done, "total": total, "live_sources": live, "waiting": waiting, "elapsed": elapsed})
            );
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Per-source figures as `--json` prints them.
fn sources_json(sources: &[SourceStat]) -> serde_json::Value {
    sources
        .iter()
        .map(|s| {
            serde_json::json!({"url": s.url, "kind": s.kind.name(), "state": s.state.name(), "bytes": s.bytes,
                "bad_pieces": s.bad_pieces, "failures": s.failures, "last_error": s.last_error})
        })
        .collect()
}

pub(crate) fn summary(outcome_path: &Path, id: &str, size: u64, sources: &[SourceStat], elapsed: Duration, json: bool, quiet: bool) {
    let rate = size as f64 / elapsed.as_secs_f64().max(0.001) / (1024.0 * 1024.0);
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "done", "path": outcome_path, "id": id, "size": size, "seconds": elapsed.as_secs_f64(), "sources": sources_json(sources)})
        );
        return;
    }
    if quiet {
        return;
    }
    println!("saved {} ({size} bytes, {rate:.1} MiB/s)", outcome_path.display());
    println!("content id {id}");
    let total: u64 = sources.iter().map(|s| s.bytes).sum::<u64>().max(1);
    for source in sources.iter().filter(|s| s.bytes > 0 || s.bad_pieces > 0) {
        let share = source.bytes as f64 * 100.0 / total as f64;
        let bad = if source.bad_pieces > 0 {
            format!(", {} bad pieces", source.bad_pieces)
        } else {
            String::new()
        };
        println!(
            "  {:>5.1}%  {:>12} bytes  {} {}{bad}",
            share,
            source.bytes,
            source.kind.name(),
            source.url
        );
    }
}

pub async fn run(args: GetArgs) -> anyhow::Result<()> {
    let layers = crate::config::Layers::load(args.state.as_deref())?;
    let state = layers.state.clone();
    let max_rate = crate::serve::rate(&layers, "max_download_rate", args.max_download_rate.clone())?;
    let mut known_peers = layers.list("peers", &args.peers).0;
    if let Some(file) = &args.peers_file {
        known_peers.extend(crate::serve::read_peers_file(file)?);
    }
    let queue = crate::queue::wanted(&args);
    let beneath = if queue { Some(crate::queue::output_dir(&args)?) } else { None };
    let options = SessionOptions {
        state: state.clone(),
        peers: args.peers.clone(),
        known_peers,
        iroh: args.net.iroh_options()?,
        ca_certs: args.web.ca_certs.clone(),
        headers: args.web.headers.clone(),
        location_trusted: args.web.location_trusted,
        engine: engine_options(&args, max_rate, beneath.clone()),
        // The DHT is asked for content ids' holders and for the addresses of peers named by id
        // alone: names are searched on peers, and URLs need none.
        dht: if args.hash.is_some()
            || args
                .targets
                .iter()
                .any(|t| t.parse::<shoal_node::service::fetch::ContentId>().is_ok())
            || args.peers.iter().any(|p| !p.starts_with("http://") && !p.starts_with("https://"))
        {
            args.net.dht_options()
        } else {
            None
        },
    };
    let session = match Session::open(options).await {
        Ok(session) => session,
        Err(SessionError::NodeRuns(_)) if queue => return Err(crate::queue::refuse_hand_over(&state)),
        Err(SessionError::NodeRuns(_)) => return crate::handover::run(&args, &state).await,
        Err(error) => return Err(error.into()),
    };
    let result = match beneath {
        Some(beneath) => crate::queue::run(&args, session.fetcher(), session.peers(), beneath, session.stop()).await,
        None => one(&args, &session).await,
    };
    session.close().await;
    result
}

/// The engine's options for this command, the same for one file and for a queue.
fn engine_options(args: &GetArgs, max_rate: Option<u64>, beneath: Option<Beneath>) -> EngineOptions {
    EngineOptions {
        max_rate,
        give_up_after: Duration::from_secs(args.retry_for),
        max_connections_per_source: args.max_connections_per_source.into(),
        beneath,
        ..EngineOptions::default()
    }
}

/// `--hash`, read.
pub(crate) fn hash_arg(args: &GetArgs) -> anyhow::Result<Option<shoal_node::service::fetch::ContentId>> {
    args.hash
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--hash: {e}"))
}

/// One file: resolved, checked against what is at its target, downloaded with a bar.
async fn one(args: &GetArgs, session: &Session) -> anyhow::Result<()> {
    let (fetcher, peers, stop) = (session.fetcher(), session.peers(), session.stop());
    let hash = hash_arg(args)?;
    let mut job = fetcher.resolve(peers, &args.targets, hash, args.output.as_deref()).await?;
    job.force = args.force;
    if fetcher.check(&mut job, None).await? == Existing::Complete {
        if args.json {
            println!(
                "{}",
                serde_json::json!({"event": "skipped", "name": job.name, "path": job.target, "reason": "complete"})
            );
        } else if !args.quiet {
            println!("{} is complete already", job.target.display());
        }
        return Ok(());
    }
    let reporter = Reporter::new(args.quiet, args.json);
    let started = Instant::now();
    let download = fetcher.start(job);
    let progress = download.progress.clone();
    let finish = download.finish();
    tokio::pin!(finish);
    let mut ticks = tokio::time::interval(Duration::from_millis(if args.json { 1000 } else { 200 }));
    let result = loop {
        tokio::select! {
            result = &mut finish => break result,
            _ = ticks.tick() => reporter.update(
                progress.done.load(Ordering::Relaxed),
                progress.total.load(Ordering::Relaxed),
                progress.live_sources(),
                progress.waiting.load(Ordering::Relaxed),
            ),
            _ = tokio::signal::ctrl_c() => stop.cancel(),
        }
    };
    reporter.finish();
    let outcome = result?;
    if let Some(expected) = hash
        && expected != outcome.id
    {
        bail!("the file's content id is {}, not --hash {expected}", outcome.id);
    }
    summary(
        &outcome.path,
        &outcome.id.to_string(),
        outcome.size,
        &outcome.sources,
        started.elapsed(),
        args.json,
        args.quiet,
    );
    // How each node reached over iroh was reached: directly or through a relay.
    let mut seen = Vec::new();
    for source in outcome.sources.iter().filter(|s| s.bytes > 0) {
        let Some(id) = source.url.strip_prefix("iroh://").and_then(|rest| rest.split('/').next()) else {
            continue;
        };
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let Some(path) = session.path_to(&source.url) else { continue };
        if args.json {
            println!("{}", serde_json::json!({"event": "path", "node": id, "path": path}));
        } else if !args.quiet {
            println!("node {id} reached {path}");
        }
    }
    Ok(())
}
