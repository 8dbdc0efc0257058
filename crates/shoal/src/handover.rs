//! `shoal get` when a node runs on the same state directory: the store is locked, so the
//! download is handed to that node (`shoal.download`) and its progress is followed from
//! `shoal.downloads`. A path the node may not write to is downloaded into the state's
//! `incoming/` and moved into place here.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shoal_node::service::downloads::Status;
use shoal_node::service::remote::{Download, RemoteNode, faults};

use crate::cli::GetArgs;
use crate::get::{Reporter, summary};

/// Hands the download to the node running on `state` and follows its progress.
pub async fn run(args: &GetArgs, state: &Path) -> anyhow::Result<()> {
    if !args.web.ca_certs.is_empty() || !args.web.headers.is_empty() || args.web.location_trusted {
        bail!(
            "a node runs on {}: it downloads with its own settings, so --ca-cert, --header and --location-trusted cannot be handed to it; \
             give --ca-cert to `shoal serve`, or use another --state",
            state.display()
        );
    }
    let url = std::fs::read_to_string(state.join(shoal_node::state::URL_FILE)).with_context(|| {
        format!(
            "the state store in {} is in use, but no node URL is recorded there",
            state.display()
        )
    })?;
    let url = url.trim().to_string();
    let layers = crate::config::Layers::load(Some(state))?;
    let secret = match layers.get("secret", None).value {
        Some(secret) => secret,
        None => std::fs::read_to_string(state.join(shoal_node::state::SECRET_FILE))
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
    let node = RemoteNode::new(&url, Some(state.to_path_buf()), None);
    let output: PathBuf = match &args.output {
        Some(path) => std::path::absolute(path)?,
        None => std::env::current_dir()?,
    };
    let hash = crate::get::hash_arg(args)?;
    let mut call = Download {
        secret: secret.clone(),
        targets: args.targets.clone(),
        output: Some(output.to_string_lossy().into_owned()),
        hash,
        force: args.force,
        peers,
    };
    // A node writes only into its share, its download directory and its state's incoming/; a
    // path elsewhere is downloaded there and moved into place by this command.
    let mut moved_to: Option<PathBuf> = None;
    let started = match node.download(&call).await {
        Err(error) if error.fault_code() == Some(faults::OUTPUT_REFUSED) => {
            let incoming = state
                .join(shoal_node::service::api::INCOMING_DIR)
                .join(hex::encode(rand::random::<[u8; 8]>()));
            std::fs::create_dir_all(&incoming).with_context(|| format!("creating {}", incoming.display()))?;
            call.output = Some(incoming.to_string_lossy().into_owned());
            moved_to = Some(output.clone());
            node.download(&call).await
        }
        other => other,
    }
    .with_context(|| format!("handing the download to the node at {url}"))?;
    let target = started.target;
    if !args.quiet && !args.json {
        eprintln!("a node runs on this state directory; it downloads to {target}");
    }
    let reporter = Reporter::new(args.quiet, args.json);
    let started_at = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(300));
    loop {
        ticks.tick().await;
        let rows = node.downloads(Some(&secret)).await?;
        let Some(row) = rows.into_iter().find(|row| row.target.as_deref() == Some(target.as_str())) else {
            bail!("the node at {url} does not list the download of {target}");
        };
        reporter.update(row.done, row.size, row.live_sources as usize, false);
        match row.state.as_str() {
            state if state == Status::Running.name() => continue,
            state if state == Status::Done.name() => {
                reporter.finish();
                let target = match &moved_to {
                    Some(wanted) => move_into_place(Path::new(&target), wanted, args.force)?,
                    None => PathBuf::from(&target),
                };
                let target = target.to_string_lossy().into_owned();
                summary(
                    Path::new(&target),
                    row.id.as_deref().unwrap_or_default(),
                    row.size,
                    &[],
                    started_at.elapsed(),
                    args.json,
                    args.quiet,
                );
                return Ok(());
            }
            _ => {
                reporter.finish();
                let detail = row.detail.unwrap_or_else(|| "stopped".to_string());
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
