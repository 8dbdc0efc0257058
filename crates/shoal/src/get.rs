//! `shoal get`: download one file from peers and mirrors at once (folders, globs and lists are
//! a queue of such downloads: [`crate::queue`]), with a progress bar (or
//! `--json` lines, or nothing with `--quiet`), resumable by running the same command again.
//!
//! Without a node it opens the state store itself (for the peer table and resume records). When
//! a node runs on the same state directory the store is locked; then the download is handed to
//! that node (`shoal.download`) and its progress is shown from `shoal.downloads`.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shoal_node::engine::{Engine, EngineOptions, Outcome, Progress, SourceStat};
use shoal_node::net::Client;
use tokio_util::sync::CancellationToken;

use crate::cli::GetArgs;

/// How often a running download asks the peers for more holders.
const FIND_MORE_EVERY: Duration = Duration::from_secs(15);

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
    shoal_node::node::prepare_state_dir(&state).with_context(|| format!("creating the state directory {}", state.display()))?;
    let store = state.join(shoal_node::node::STORE_FILE);
    let opened = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || shoal_node::node::open_store(&store)).await?
    };
    let db = match opened {
        Ok(db) => Arc::new(db),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) if crate::queue::wanted(&args) => {
            return Err(crate::queue::refuse_hand_over(&state));
        }
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => return crate::handover::run(&args, &state).await,
        Err(error) => return Err(error).with_context(|| format!("opening the state store {}", store.display())),
    };
    let mut peers = layers.list("peers", &args.peers).0;
    if let Some(file) = &args.peers_file {
        peers.extend(crate::serve::read_peers_file(file)?);
    }
    peers.extend(shoal_node::discovery::peers::stored_urls(&db));
    let (client, peers) = client_for(&args, &state, peers).await?;
    let iroh = client.iroh().cloned();
    let result = async move {
        if crate::queue::wanted(&args) {
            return crate::queue::run(&args, db, client, peers, max_rate).await;
        }
        let hash = args
            .hash
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--hash: {e}"))?;
        let output = args.output.clone();
        let mut job = shoal_node::service::resolve::resolve(&client, &peers, &args.targets, hash, output.as_deref()).await?;
        job.force = args.force;
        if !args.force && job.target.exists() {
            bail!("{} already exists; use --force to replace it", job.target.display());
        }
        let options = EngineOptions {
            max_rate,
            give_up_after: Duration::from_secs(args.retry_for),
            max_connections_per_source: args.max_connections_per_source.into(),
            ..EngineOptions::default()
        };
        let engine = Engine::new(db, client.clone(), options)?;
        let progress = Arc::new(Progress::default());
        let cancel = CancellationToken::new();
        let (more_tx, more_rx) = tokio::sync::mpsc::channel(16);
        // Holders that appear while the download runs join it.
        let finder = job.id.filter(|_| !peers.is_empty()).map(|id| {
            tokio::spawn(shoal_node::discovery::find_more(
                shoal_node::discovery::FixedPeers {
                    client: client.clone(),
                    peers: peers.clone(),
                    deadline: FIND_MORE_EVERY,
                },
                id,
                job.peers.clone(),
                FIND_MORE_EVERY,
                more_tx.clone(),
            ))
        });
        drop(more_tx);
        let reporter = Reporter::new(args.quiet, args.json);
        let started = Instant::now();
        let expected_hash = hash;
        let download = engine.run(job, progress.clone(), cancel.clone(), more_rx);
        tokio::pin!(download);
        let mut ticks = tokio::time::interval(Duration::from_millis(if args.json { 1000 } else { 200 }));
        let result: Result<Outcome, shoal_node::engine::EngineError> = loop {
            tokio::select! {
                result = &mut download => break result,
                _ = ticks.tick() => reporter.update(
                    progress.done.load(Ordering::Relaxed),
                    progress.total.load(Ordering::Relaxed),
                    progress.live_sources(),
                    progress.waiting.load(Ordering::Relaxed),
                ),
                _ = tokio::signal::ctrl_c() => {
                    cancel.cancel();
                }
            }
        };
        reporter.finish();
        if let Some(finder) = finder {
            finder.abort();
        }
        let outcome = result?;
        if outcome.size <= shoal_node::engine::PIECE_SIZE {
            // A small file is placed without an fsync of its own (engine::small).
            let path = outcome.path.clone();
            tokio::task::spawn_blocking(move || shoal_node::engine::small::sync_file_system(&path))
                .await?
                .with_context(|| format!("syncing {}", outcome.path.display()))?;
        }
        if let Some(expected) = expected_hash
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
        if let Some(iroh) = client.iroh() {
            let mut seen = Vec::new();
            for source in outcome.sources.iter().filter(|s| s.bytes > 0) {
                let Some(id) = source.url.strip_prefix("iroh://").and_then(|rest| rest.split('/').next()) else {
                    continue;
                };
                if seen.contains(&id) {
                    continue;
                }
                seen.push(id);
                let path = iroh.path(id).unwrap_or("closed");
                if args.json {
                    println!("{}", serde_json::json!({"event": "path", "node": id, "path": path}));
                } else if !args.quiet {
                    println!("node {id} reached {path}");
                }
            }
        }
        Ok(())
    }
    .await;
    // The endpoint says goodbye to the nodes it reached, so they need not wait for a timeout.
    if let Some(iroh) = iroh {
        iroh.close().await;
    }
    result
}

/// The client for a download and the peers in the spelling the engine uses. Peers named by id
/// or ticket become `iroh://<id>` (the client keeps the ticket's addresses), and only then is an
/// iroh endpoint bound, with the state directory's client key; a download from http peers and
/// mirrors alone opens none.
pub async fn client_for(args: &GetArgs, state: &Path, mut peers: Vec<String>) -> anyhow::Result<(Client, Vec<String>)> {
    let is_keyed = |p: &String| shoal_node::proto::ticket::is_keyed(p);
    if args.net.no_iroh {
        // Peers the user named need iroh; those the state directory's table holds are left out.
        if args.peers.iter().any(is_keyed) {
            anyhow::bail!("peers named by id or ticket need iroh, which --no-iroh turns off");
        }
        peers.retain(|p| !is_keyed(p));
    }
    let keyed = peers.iter().any(is_keyed);
    let iroh = match args.net.iroh_options()? {
        Some(mut options) if keyed => {
            for path in &args.web.ca_certs {
                options
                    .extra_roots
                    .extend(shoal_node::net::load_ca_der(path).map_err(anyhow::Error::msg)?);
            }
            let key = shoal_node::node::client_key(state)?;
            Some(Arc::new(
                shoal_node::net::iroh::Iroh::bind(key, &options, false)
                    .await
                    .map_err(anyhow::Error::msg)?,
            ))
        }
        _ => None,
    };
    let client = owner_client(&args.web, iroh)?;
    let mut named = Vec::with_capacity(peers.len());
    for peer in peers {
        client.learn_ticket(&peer, shoal_node::net::Trust::Owner);
        named.push(shoal_node::proto::url::normalize(&peer).map_err(|e| anyhow::anyhow!("--peer: {e}"))?);
    }
    named.sort();
    named.dedup();
    Ok((client, named))
}

/// The client for a download the user asked for: the platform's CA roots plus `--ca-cert`,
/// and `--header` on the requests to the origins of the URLs the user gave (and beyond their
/// redirects with `--location-trusted`).
pub fn owner_client(web: &crate::cli::WebArgs, iroh: Option<Arc<shoal_node::net::iroh::Iroh>>) -> anyhow::Result<Client> {
    let mut options = shoal_node::net::ClientOptions {
        iroh,
        location_trusted: web.location_trusted,
        ..Default::default()
    };
    for path in &web.ca_certs {
        options
            .extra_roots
            .extend(shoal_node::net::load_ca_file(path).map_err(anyhow::Error::msg)?);
    }
    for header in &web.headers {
        let (name, value) = shoal_node::net::parse_header(header).map_err(|e| anyhow::anyhow!("--header: {e}"))?;
        options.owner_headers.append(name, value);
    }
    Ok(Client::with_options(options))
}
