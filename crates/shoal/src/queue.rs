//! `shoal get` of many files: folders (`DIR/`), globs, and lists (`-i FILE`), run as a queue of
//! `-j N` downloads at once through one engine and one HTTP client (so connections to a peer
//! are reused from file to file), with one overall progress bar and a bar per large file in
//! flight (on a terminal), `--json` events per file, and a summary that names every failure.
//!
//! Each file is a [`Job`] verified by its content id as a single download is. A file already
//! complete at its target (its content id computed and compared) is skipped, so a re-run after
//! an interruption fetches only what is missing: large files resume from their records, small
//! ones are fetched again whole. The exit status is non-zero when any file failed.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shoal_node::engine::{Engine, Job, PIECE_SIZE, Progress};
use shoal_node::net::Client;
use shoal_node::service::folder::{self, Existing, Selection};
use tokio_util::sync::CancellationToken;

use crate::cli::GetArgs;

/// Files larger than this get a bar of their own while they download.
const OWN_BAR_FROM: u64 = 4 * PIECE_SIZE;
/// Most lines read from a list file.
const MAX_LIST_LINES: usize = 1_000_000;

/// One download of the queue.
#[derive(Debug, Clone)]
enum Item {
    /// A file of a folder or glob, its job known from the listing.
    Ready(Job),
    /// One line of a list, or the plain targets of the command line: resolved when its turn
    /// comes (a name is searched, URLs are mirrors).
    Resolve {
        label: String,
        targets: Vec<String>,
        output: PathBuf,
    },
    /// A line or target that could not become a download.
    Failed { label: String, error: String },
}

/// A line of a list file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    number: usize,
    targets: Vec<String>,
    out: Option<String>,
}

/// Reads a list file: one download a line (targets separated by tabs), `#` comments and blank
/// lines skipped, indented `out=NAME` lines naming the file of the download above them.
fn parse_list(text: &str) -> anyhow::Result<Vec<Line>> {
    let mut lines: Vec<Line> = Vec::new();
    for (index, raw) in text.lines().enumerate().take(MAX_LIST_LINES) {
        let number = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            let Some(last) = lines.last_mut() else {
                bail!("line {number}: an option line ({trimmed}) before any download");
            };
            match trimmed.split_once('=') {
                Some(("out", name)) => {
                    shoal_index::check_name(name.trim()).map_err(|e| anyhow::anyhow!("line {number}: out={name}: {e}"))?;
                    last.out = Some(name.trim().to_string());
                }
                _ => bail!("line {number}: unknown option line {trimmed:?} (only out=NAME is read)"),
            }
            continue;
        }
        let targets: Vec<String> = raw.split('\t').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect();
        lines.push(Line {
            number,
            targets,
            out: None,
        });
    }
    Ok(lines)
}

/// True when this `get` is a queue: a list, a folder or a glob.
pub fn wanted(args: &GetArgs) -> bool {
    args.input_file.is_some() || args.targets.iter().any(|t| folder::is_selection(t))
}

/// Counts, for the summary.
#[derive(Default)]
struct Tally {
    done: usize,
    skipped: usize,
    bytes: u64,
    failures: Vec<(String, String)>,
}

/// A large file in flight: its bar (on a terminal) and its progress.
struct Active {
    name: String,
    bar: Option<indicatif::ProgressBar>,
    progress: Arc<Progress>,
}

/// Prints per-file events (`--json`), or draws the bars.
struct Display {
    json: bool,
    bars: Option<indicatif::MultiProgress>,
    overall: Option<indicatif::ProgressBar>,
    /// Large files in flight (bars, and `progress` events with `--json`).
    active: Mutex<Vec<Active>>,
    ticks: std::sync::atomic::AtomicU64,
}

impl Display {
    fn new(quiet: bool, json: bool, files: usize) -> Display {
        let bars = (!quiet && !json && std::io::stderr().is_terminal()).then(indicatif::MultiProgress::new);
        let overall = bars.as_ref().map(|bars| {
            let bar = bars.add(indicatif::ProgressBar::new(files as u64));
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} files {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Display {
            json,
            bars,
            overall,
            active: Mutex::new(Vec::new()),
            ticks: Default::default(),
        }
    }

    fn event(&self, value: serde_json::Value) {
        if self.json {
            println!("{value}");
        }
    }

    fn start(&self, job: &Job, progress: &Arc<Progress>) {
        self.event(serde_json::json!({"event": "start", "name": job.name, "path": job.target, "size": job.size}));
        if job.size.is_some_and(|size| size >= OWN_BAR_FROM) && (self.bars.is_some() || self.json) {
            let bar = self.bars.as_ref().map(|bars| {
                let bar = bars.add(indicatif::ProgressBar::new(job.size.unwrap_or(0)));
                bar.set_style(
                    indicatif::ProgressStyle::with_template("  {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar.set_message(crate::output::printable(&job.name));
                bar
            });
            self.lock().push(Active {
                name: job.name.clone(),
                bar,
                progress: progress.clone(),
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Active>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn end(&self, progress: &Arc<Progress>) {
        let mut active = self.lock();
        if let Some(at) = active.iter().position(|a| Arc::ptr_eq(&a.progress, progress))
            && let Some(bar) = active.remove(at).bar
        {
            bar.finish_and_clear();
            if let Some(bars) = &self.bars {
                bars.remove(&bar);
            }
        }
        drop(active);
        self.count_one();
    }

    /// One more file of the queue has ended (done, skipped or failed).
    fn count_one(&self) {
        if let Some(bar) = &self.overall {
            bar.inc(1);
        }
    }

    /// Every 200 ms: the bars; every second with `--json`, a `progress` event per large file.
    fn tick(&self, tally: &Tally) {
        let tick = self.ticks.fetch_add(1, Ordering::Relaxed);
        for active in self.lock().iter() {
            let (done, total) = (
                active.progress.done.load(Ordering::Relaxed),
                active.progress.total.load(Ordering::Relaxed),
            );
            if let Some(bar) = &active.bar {
                bar.set_length(total.max(1));
                bar.set_position(done);
            }
            if self.json && tick.is_multiple_of(5) {
                self.event(
                    serde_json::json!({"event": "progress", "name": active.name, "done": done, "total": total,
                    "live_sources": active.progress.live_sources()}),
                );
            }
        }
        if let Some(bar) = &self.overall {
            let failed = if tally.failures.is_empty() {
                String::new()
            } else {
                format!(", {} failed", tally.failures.len())
            };
            bar.set_message(format!("{:.1} MiB{failed}", tally.bytes as f64 / (1024.0 * 1024.0)));
        }
    }

    fn finish(&self) {
        for active in self.lock().drain(..) {
            if let Some(bar) = active.bar {
                bar.finish_and_clear();
            }
        }
        if let Some(bar) = &self.overall {
            bar.finish_and_clear();
        }
        if let Some(bars) = &self.bars {
            let _ = bars.clear();
        }
    }
}

/// Runs a queue `get`: `peers` are the peers to list and search, `db` the state store.
pub async fn run(args: &GetArgs, db: Arc<redb::Database>, client: Client, peers: Vec<String>, max_rate: Option<u64>) -> anyhow::Result<()> {
    if args.hash.is_some() {
        bail!("--hash names one file; with folders, globs and lists each file is checked by the content id it is listed with");
    }
    let out_dir = match &args.output {
        Some(path) => path.clone(),
        None => std::env::current_dir().context("reading the current directory")?,
    };
    if out_dir.exists() && !out_dir.is_dir() {
        bail!(
            "{} is not a directory: with folders, globs and lists -o names the directory the files go into",
            out_dir.display()
        );
    }
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out_dir = std::path::absolute(&out_dir)?;
    // Every file is made beneath -o, held open, with no symlink on the way: a directory symlink
    // planted there (by another user who may write into it) is refused, not followed.
    let beneath = shoal_node::engine::Beneath {
        root: Arc::new(shoal_index::Root::open(&out_dir).with_context(|| format!("opening {}", out_dir.display()))?),
        base: out_dir.clone(),
    };

    // What to download: the command line's targets, then the list's lines.
    let mut requests: Vec<(String, Vec<String>, PathBuf)> = Vec::new();
    let plain: Vec<String> = args.targets.iter().filter(|t| !folder::is_selection(t)).cloned().collect();
    for target in args.targets.iter().filter(|t| folder::is_selection(t)) {
        requests.push((target.clone(), vec![target.clone()], out_dir.clone()));
    }
    if !plain.is_empty() {
        requests.push((plain.join(" "), plain, out_dir.clone()));
    }
    if let Some(file) = &args.input_file {
        let text = if file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading the list from standard input")?
        } else {
            std::fs::read_to_string(file).with_context(|| format!("reading the list {}", file.display()))?
        };
        let lines = parse_list(&text).with_context(|| format!("in the list {}", file.display()))?;
        for line in lines {
            let label = format!("line {}: {}", line.number, line.targets.join(" "));
            let output = match &line.out {
                Some(name) => out_dir.join(name),
                None => out_dir.clone(),
            };
            requests.push((label, line.targets, output));
        }
    }
    let options = shoal_node::engine::EngineOptions {
        max_rate,
        give_up_after: Duration::from_secs(args.retry_for),
        beneath: Some(beneath.clone()),
        ..shoal_node::engine::EngineOptions::default()
    };
    let engine = Engine::new(db, client.clone(), options)?;

    // Folders and globs are listed now (all at once); their files join the queue.
    let mut items: Vec<Item> = Vec::new();
    for (label, targets, output) in requests {
        match targets.as_slice() {
            [one] if folder::is_selection(one) => match Selection::parse(one) {
                Ok(selection) => match folder::plan(&client, &peers, &selection, &output, false).await {
                    Ok(jobs) => items.extend(jobs.into_iter().map(|mut job| {
                        job.force = args.force;
                        Item::Ready(job)
                    })),
                    Err(error) => items.push(Item::Failed {
                        label,
                        error: error.to_string(),
                    }),
                },
                Err(error) => items.push(Item::Failed {
                    label,
                    error: error.to_string(),
                }),
            },
            many if many.iter().any(|t| folder::is_selection(t)) => items.push(Item::Failed {
                label,
                error: "a folder or glob must be alone on its line".into(),
            }),
            _ => items.push(Item::Resolve { label, targets, output }),
        }
    }

    let shared = Arc::new(Shared {
        display: Display::new(args.quiet, args.json, items.len()),
        tally: Mutex::new(Tally::default()),
        cancel: CancellationToken::new(),
        engine: engine.clone(),
        client: client.clone(),
        peers: peers.clone(),
        force: args.force,
        beneath,
    });
    let (display, tally, cancel) = (&shared.display, &shared.tally, &shared.cancel);
    let started = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(usize::from(args.max_concurrent)));
    let mut running = tokio::task::JoinSet::new();
    let queue = {
        let shared = shared.clone();
        async move {
            for item in items {
                let Ok(slot) = slots.clone().acquire_owned().await else { break };
                if shared.cancel.is_cancelled() {
                    break;
                }
                let s = shared.clone();
                running.spawn(async move {
                    let _slot = slot;
                    one(item, &s).await;
                });
                // Reap finished tasks as we go, so that a long queue holds no pile of them.
                while running.try_join_next().is_some() {}
            }
            while running.join_next().await.is_some() {}
        }
    };
    tokio::pin!(queue);
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            () = &mut queue => break,
            _ = ticks.tick() => display.tick(&tally.lock().unwrap_or_else(|p| p.into_inner())),
            _ = tokio::signal::ctrl_c() => cancel.cancel(),
        }
    }
    display.finish();
    // Small files are placed without an fsync each: one sync of the file system, before success
    // is reported.
    let synced = {
        let dir = out_dir.clone();
        tokio::task::spawn_blocking(move || shoal_node::engine::small::sync_file_system(&dir)).await?
    };
    synced.with_context(|| format!("syncing {}", out_dir.display()))?;
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    summary(&tally, started.elapsed(), args.json, args.quiet);
    if !tally.failures.is_empty() {
        bail!(
            "{} of {} downloads failed",
            tally.failures.len(),
            tally.failures.len() + tally.done + tally.skipped
        );
    }
    if cancel.is_cancelled() {
        bail!("interrupted; run the same command again to resume");
    }
    Ok(())
}

/// What every download of a queue shares.
struct Shared {
    engine: Engine,
    client: Client,
    peers: Vec<String>,
    force: bool,
    beneath: shoal_node::engine::Beneath,
    display: Display,
    tally: Mutex<Tally>,
    cancel: CancellationToken,
}

/// Runs one item of the queue to its end and counts it.
async fn one(item: Item, shared: &Shared) {
    let Shared {
        engine,
        client,
        peers,
        force,
        beneath,
        display,
        tally,
        cancel,
    } = shared;
    let force = *force;
    let tally = |change: &dyn Fn(&mut Tally)| change(&mut tally.lock().unwrap_or_else(|p| p.into_inner()));
    let fail = |name: String, error: String| {
        display.event(serde_json::json!({"event": "failed", "name": name, "error": error}));
        tally(&|t| t.failures.push((name.clone(), error.clone())));
    };
    let mut job = match item {
        Item::Ready(job) => job,
        Item::Failed { label, error } => {
            fail(label, error);
            display.count_one();
            return;
        }
        Item::Resolve { label, targets, output } => {
            match shoal_node::service::resolve::resolve(client, peers, &targets, None, Some(&output)).await {
                Ok(mut job) => {
                    job.force = force;
                    job
                }
                Err(error) => {
                    fail(label, error.to_string());
                    display.count_one();
                    return;
                }
            }
        }
    };
    job.force = job.force || force;
    let progress = Arc::new(Progress::default());
    // The way to the target is checked before anything there is read (the engine checks it
    // again as it makes the file).
    let found = {
        let (target, id, beneath) = (job.target.clone(), job.id, beneath.clone());
        tokio::task::spawn_blocking(move || beneath.check(&target).map(|()| folder::existing(&target, id)))
            .await
            .unwrap_or(Ok(Existing::Absent))
    };
    let found = match found {
        Ok(found) => found,
        Err(error) => {
            fail(job.name.clone(), error.to_string());
            display.count_one();
            return;
        }
    };
    match found {
        Existing::Complete => {
            display.event(serde_json::json!({"event": "skipped", "name": job.name, "path": job.target, "reason": "complete"}));
            tally(&|t| t.skipped += 1);
            display.count_one();
            return;
        }
        Existing::Different if !job.force => {
            fail(
                job.name.clone(),
                format!("{} already exists; use --force to replace it", job.target.display()),
            );
            display.count_one();
            return;
        }
        _ => {}
    }
    display.start(&job, &progress);
    let started = Instant::now();
    let name = job.name.clone();
    let (_none, nothing_more) = tokio::sync::mpsc::channel(1);
    let result = engine.run(job, progress.clone(), cancel.child_token(), nothing_more).await;
    display.end(&progress);
    match result {
        Ok(outcome) => {
            display.event(
                serde_json::json!({"event": "done", "name": name, "path": outcome.path, "id": outcome.id.to_string(),
                "size": outcome.size, "resumed": progress.resumed.load(Ordering::Relaxed), "seconds": started.elapsed().as_secs_f64()}),
            );
            tally(&|t| {
                t.done += 1;
                t.bytes += outcome.size;
            });
        }
        Err(error) => fail(name, error.to_string()),
    }
}

fn summary(tally: &Tally, elapsed: Duration, json: bool, quiet: bool) {
    let rate = tally.bytes as f64 / elapsed.as_secs_f64().max(0.001) / (1024.0 * 1024.0);
    if json {
        let failures: Vec<serde_json::Value> = tally
            .failures
            .iter()
            .map(|(name, error)| serde_json::json!({"name": name, "error": error}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"event": "summary", "done": tally.done, "skipped": tally.skipped, "failed": tally.failures.len(),
                "bytes": tally.bytes, "seconds": elapsed.as_secs_f64(), "failures": failures})
        );
        return;
    }
    if !quiet {
        println!(
            "{} downloaded ({} bytes, {rate:.1} MiB/s), {} already complete, {} failed",
            tally.done,
            tally.bytes,
            tally.skipped,
            tally.failures.len()
        );
    }
    for (name, error) in &tally.failures {
        let line = format!("failed: {name}: {error}");
        if quiet {
            eprintln!("{}", crate::output::printable(&line));
        } else {
            println!("  {}", crate::output::printable(&line));
        }
    }
}

/// Where a queue's files land, for the message of a refused hand-over.
pub fn refuse_hand_over(state: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "a node runs on the state directory {}: folders, globs and lists are downloaded without a node; give another --state (or stop the node), or ask the node with shoal.download",
        state.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_files_read_as_aria2_input_files() {
        let text = "# a comment\n\nnotes.txt\nhttp://m1/x.iso\thttp://m2/x.iso\n  out=iso/x.iso\nphotos/\n";
        let lines = parse_list(text).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].targets, ["notes.txt"]);
        assert_eq!(lines[1].targets, ["http://m1/x.iso", "http://m2/x.iso"]);
        assert_eq!(lines[1].out.as_deref(), Some("iso/x.iso"));
        assert_eq!((lines[2].number, lines[2].out.as_deref()), (6, None));
        assert!(parse_list("  out=x\n").is_err(), "an option before any download");
        assert!(parse_list("a\n  split=4\n").is_err(), "an option that is not read");
        assert!(parse_list("a\n  out=../x\n").is_err(), "out= is a safe name");
    }
}
