//! `shoal get`: download one file from peers and mirrors at once (folders, globs and lists are
//! a queue of such downloads: [`crate::queue`]), with a progress bar (or
//! `--json` lines, or nothing with `--quiet`), resumable by running the same command again.
//!
//! Without a node it opens the state store itself (for the peer table and resume records). When
//! a node runs on the same state directory the store is locked; then the download is handed to
//! that node (`shoal.download`) and its progress is shown from `shoal.downloads`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shoal_node::engine::{Engine, EngineOptions, Outcome, Progress, SourceStat};
use shoal_node::net::Client;
use shoal_xmlrpc::Value;
use tokio_util::sync::CancellationToken;

use crate::cli::GetArgs;

/// How often a running download asks the peers for more holders.
const FIND_MORE_EVERY: Duration = Duration::from_secs(15);

/// Prints progress as a bar, as JSON lines, or not at all.
struct Reporter {
    json: bool,
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
}

impl Reporter {
    fn new(quiet: bool, json: bool) -> Self {
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

    fn update(&self, done: u64, total: u64, live: usize, waiting: bool) {
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

    fn finish(&self) {
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
            serde_json::json!({"url": s.url, "kind": s.kind, "state": s.state.name(), "bytes": s.bytes,
                "bad_pieces": s.bad_pieces, "failures": s.failures, "last_error": s.last_error})
        })
        .collect()
}

fn summary(outcome_path: &Path, id: &str, size: u64, sources: &[SourceStat], elapsed: Duration, json: bool, quiet: bool) {
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
        println!("  {:>5.1}%  {:>12} bytes  {} {}{bad}", share, source.bytes, source.kind, source.url);
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
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => return hand_to_node(&args, &state).await,
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

/// Hands the download to the node running on `state` and follows its progress.
async fn hand_to_node(args: &GetArgs, state: &Path) -> anyhow::Result<()> {
    if !args.web.ca_certs.is_empty() || !args.web.headers.is_empty() || args.web.location_trusted {
        bail!(
            "a node runs on {}: it downloads with its own settings, so --ca-cert, --header and --location-trusted cannot be handed to it; \
             give --ca-cert to `shoal serve`, or use another --state",
            state.display()
        );
    }
    let url = std::fs::read_to_string(state.join(shoal_node::node::URL_FILE)).with_context(|| {
        format!(
            "the state store in {} is in use, but no node URL is recorded there",
            state.display()
        )
    })?;
    let url = url.trim().to_string();
    let layers = crate::config::Layers::load(Some(state))?;
    let secret = match layers.get("secret", None).value {
        Some(secret) => secret,
        None => std::fs::read_to_string(state.join(shoal_node::node::SECRET_FILE))
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .with_context(|| {
                format!(
                    "the node on {} keeps no secret file (it was started with --secret); give the secret in SHOAL_SECRET",
                    state.display()
                )
            })?,
    };
    let mut peers = layers.list("peers", &args.peers).0;
    if let Some(file) = &args.peers_file {
        peers.extend(crate::serve::read_peers_file(file)?);
    }
    let client = Client::new(Duration::from_secs(3));
    let output: PathBuf = match &args.output {
        Some(path) => std::path::absolute(path)?,
        None => std::env::current_dir()?,
    };
    let mut options = std::collections::BTreeMap::new();
    options.insert("output".to_string(), Value::String(output.to_string_lossy().into_owned()));
    options.insert("force".to_string(), Value::Boolean(args.force));
    if !peers.is_empty() {
        options.insert("peers".to_string(), Value::Array(peers.into_iter().map(Value::String).collect()));
    }
    if let Some(hash) = &args.hash {
        options.insert("hash".to_string(), Value::String(hash.clone()));
    }
    let targets = Value::Array(args.targets.iter().cloned().map(Value::String).collect());
    let hand_over = |options: std::collections::BTreeMap<String, Value>| {
        let (client, url, secret, targets) = (&client, &url, &secret, &targets);
        async move {
            client
                .call(
                    url,
                    "shoal.download",
                    &[Value::String(secret.clone()), targets.clone(), Value::Struct(options)],
                    Duration::from_secs(60),
                    1 << 20,
                )
                .await
        }
    };
    // A node writes only into its share, its download directory and its state's incoming/; a
    // path elsewhere is downloaded there and moved into place by this command.
    let mut moved_to: Option<PathBuf> = None;
    let started = match hand_over(options.clone()).await {
        Err(error)
            if error.fault_code() == Some(shoal_node::proto::faults::BAD_CALL) && error.to_string().contains("downloads only into") =>
        {
            let incoming = state
                .join(shoal_node::service::api::INCOMING_DIR)
                .join(hex::encode(rand::random::<[u8; 8]>()));
            std::fs::create_dir_all(&incoming).with_context(|| format!("creating {}", incoming.display()))?;
            options.insert("output".to_string(), Value::String(incoming.to_string_lossy().into_owned()));
            moved_to = Some(output.clone());
            hand_over(options).await
        }
        other => other,
    }
    .with_context(|| format!("handing the download to the node at {url}"))?;
    let Value::Struct(fields) = started else {
        bail!("the node at {url} gave an unexpected answer")
    };
    let Some(Value::String(target)) = fields.get("target").cloned() else {
        bail!("the node at {url} did not say where it downloads to")
    };
    if !args.quiet && !args.json {
        eprintln!("a node runs on this state directory; it downloads to {target}");
    }
    let reporter = Reporter::new(args.quiet, args.json);
    let started_at = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(300));
    loop {
        ticks.tick().await;
        let rows = client
            .call(
                &url,
                "shoal.downloads",
                &[Value::String(secret.clone())],
                Duration::from_secs(10),
                16 << 20,
            )
            .await?;
        let Value::Array(rows) = rows else {
            bail!("the node at {url} gave an unexpected download list")
        };
        let Some(Value::Struct(row)) = rows
            .into_iter()
            .find(|r| matches!(r, Value::Struct(f) if f.get("target") == Some(&Value::String(target.clone()))))
        else {
            bail!("the node at {url} does not list the download of {target}");
        };
        let number = |key: &str| row.get(key).and_then(shoal_xmlrpc::as_i64).unwrap_or(0) as u64;
        let status = row.get("status").cloned();
        reporter.update(number("done"), number("size"), number("live_sources") as usize, false);
        let Some(Value::Struct(status)) = status else { continue };
        match status.get("state") {
            Some(Value::String(s)) if s == "running" => continue,
            Some(Value::String(s)) if s == "done" => {
                reporter.finish();
                let target = match &moved_to {
                    Some(wanted) => move_into_place(Path::new(&target), wanted, args.force)?,
                    None => PathBuf::from(&target),
                };
                let target = target.to_string_lossy().into_owned();
                let id = match row.get("id") {
                    Some(Value::String(id)) => id.clone(),
                    _ => String::new(),
                };
                summary(
                    Path::new(&target),
                    &id,
                    number("size"),
                    &[],
                    started_at.elapsed(),
                    args.json,
                    args.quiet,
                );
                return Ok(());
            }
            _ => {
                reporter.finish();
                let detail = match status.get("detail") {
                    Some(Value::String(d)) => d.clone(),
                    _ => "stopped".to_string(),
                };
                bail!("the node's download of {target} failed: {detail}");
            }
        }
    }
}

/// Moves a file the node downloaded into its incoming directory to where the user asked: into
/// `wanted` when it is a directory, else to `wanted` itself; never over an existing file
/// unless `force`. Returns the final path.
fn move_into_place(from: &Path, wanted: &Path, force: bool) -> anyhow::Result<PathBuf> {
    let to = if wanted.is_dir() {
        wanted.join(from.file_name().context("the node's download has no file name")?)
    } else {
        wanted.to_path_buf()
    };
    if force {
        std::fs::rename(from, &to).or_else(|_| std::fs::copy(from, &to).map(drop).and_then(|()| std::fs::remove_file(from)))
    } else {
        match std::fs::hard_link(from, &to) {
            Ok(()) => std::fs::remove_file(from),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!("{} already exists; use --force to replace it", to.display()),
            Err(_) => {
                let mut source = std::fs::File::open(from)?;
                let mut dest = std::fs::OpenOptions::new().write(true).create_new(true).open(&to)?;
                std::io::copy(&mut source, &mut dest)?;
                dest.sync_all()?;
                std::fs::remove_file(from)
            }
        }
    }
    .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
    if let Some(dir) = from.parent() {
        let _ = std::fs::remove_dir(dir);
    }
    Ok(to)
}
