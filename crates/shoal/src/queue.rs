//! `shoal get` of many files: folders (`DIR/`), globs, and lists (`-i FILE`): what to fetch is
//! read here (the list file's format) and handed to the fetcher's queue
//! ([`shoal_node::service::fetch`]), `-j N` downloads at once through one engine and one HTTP
//! client (so connections to a peer are reused from file to file); this file draws one overall
//! progress bar and a bar per large file in flight (on a terminal), or prints `--json` events
//! per file, and the summary that names every failure.
//!
//! Each file is a [`Job`] verified by its content id as a single download is. A file already
//! complete at its target (its content id computed and compared) is skipped, so a re-run after
//! an interruption fetches only what is missing: large files resume from their records, small
//! ones are fetched again whole. The exit status is non-zero when any file failed.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shoal_node::service::fetch::{Beneath, Event, Events, Fetcher, Job, PIECE_SIZE, Progress, QueueOptions, Tally, Wanted};
use shoal_node::service::folder;
use tokio_util::sync::CancellationToken;

use crate::cli::GetArgs;

/// Files larger than this get a bar of their own while they download.
const OWN_BAR_FROM: u64 = 4 * PIECE_SIZE;
/// Most lines read from a list file.
const MAX_LIST_LINES: usize = 1_000_000;

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
    /// Bytes of the files done, and how many failed, for the overall bar.
    bytes: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicUsize,
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
            bytes: Default::default(),
            failed: Default::default(),
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
    fn tick(&self) {
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
            let failed = match self.failed.load(Ordering::Relaxed) {
                0 => String::new(),
                n => format!(", {n} failed"),
            };
            let bytes = self.bytes.load(Ordering::Relaxed);
            bar.set_message(format!("{:.1} MiB{failed}", bytes as f64 / (1024.0 * 1024.0)));
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

impl Events for Display {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Start { job, progress } => self.start(job, progress),
            Event::Skipped { job } => {
                self.event(serde_json::json!({"event": "skipped", "name": job.name, "path": job.target, "reason": "complete"}));
                self.count_one();
            }
            Event::Done {
                name,
                outcome,
                progress,
                elapsed,
            } => {
                self.event(
                    serde_json::json!({"event": "done", "name": name, "path": outcome.path, "id": outcome.id.to_string(),
                    "size": outcome.size, "resumed": progress.resumed.load(Ordering::Relaxed), "seconds": elapsed.as_secs_f64()}),
                );
                self.bytes.fetch_add(outcome.size, Ordering::Relaxed);
                self.end(progress);
            }
            Event::Failed { name, error, progress } => {
                self.event(serde_json::json!({"event": "failed", "name": name, "error": error}));
                self.failed.fetch_add(1, Ordering::Relaxed);
                match progress {
                    Some(progress) => self.end(progress),
                    None => self.count_one(),
                }
            }
        }
    }
}

/// The directory a queue's files go into (`-o`, default the current directory), made when
/// missing, and held open: every file is made beneath it with no symlink on the way, so a
/// directory symlink planted there (by another user who may write into it) is refused, not
/// followed.
pub fn output_dir(args: &GetArgs) -> anyhow::Result<Beneath> {
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
    Ok(Beneath {
        root: Arc::new(shoal_index::Root::open(&out_dir).with_context(|| format!("opening {}", out_dir.display()))?),
        base: out_dir,
    })
}

/// What to download: the command line's targets (each folder or glob alone, the rest as one
/// download), then the list's lines.
fn wanted_of(args: &GetArgs, out_dir: &Path) -> anyhow::Result<Vec<Wanted>> {
    let mut wanted = Vec::new();
    let plain: Vec<String> = args.targets.iter().filter(|t| !folder::is_selection(t)).cloned().collect();
    for target in args.targets.iter().filter(|t| folder::is_selection(t)) {
        wanted.push(Wanted {
            label: target.clone(),
            targets: vec![target.clone()],
            output: out_dir.to_path_buf(),
        });
    }
    if !plain.is_empty() {
        wanted.push(Wanted {
            label: plain.join(" "),
            targets: plain,
            output: out_dir.to_path_buf(),
        });
    }
    if let Some(file) = &args.input_file {
        let text = if file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading the list from standard input")?
        } else {
            std::fs::read_to_string(file).with_context(|| format!("reading the list {}", file.display()))?
        };
        let lines = parse_list(&text).with_context(|| format!("in the list {}", file.display()))?;
        for line in lines {
            wanted.push(Wanted {
                label: format!("line {}: {}", line.number, line.targets.join(" ")),
                output: match &line.out {
                    Some(name) => out_dir.join(name),
                    None => out_dir.to_path_buf(),
                },
                targets: line.targets,
            });
        }
    }
    Ok(wanted)
}

/// Runs a queue `get` through `fetcher`: `peers` are the peers to list and search, `beneath`
/// the output directory ([`output_dir`]); Ctrl-C cancels `stop`.
pub async fn run(args: &GetArgs, fetcher: &Fetcher, peers: &[String], beneath: Beneath, stop: &CancellationToken) -> anyhow::Result<()> {
    if args.hash.is_some() {
        bail!("--hash names one file; with folders, globs and lists each file is checked by the content id it is listed with");
    }
    let out_dir = beneath.base.clone();
    let wanted = wanted_of(args, &out_dir)?;
    // Folders and globs are listed now (all at once); their files join the queue.
    let items = fetcher.plan(wanted, peers).await;
    let display = Display::new(args.quiet, args.json, items.len());
    let options = QueueOptions {
        concurrency: usize::from(args.max_concurrent),
        force: args.force,
        // The way to each target is checked before anything there is read (the engine checks
        // it again as it makes the file).
        rule: Some(Arc::new(move |target: &Path| {
            beneath.check(target).map(|()| target.to_path_buf()).map_err(|e| e.to_string())
        })),
        sync: Some(out_dir),
    };
    let started = Instant::now();
    let queue = fetcher.queue(items, peers, &options, &display, stop);
    tokio::pin!(queue);
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    let tally = loop {
        tokio::select! {
            tally = &mut queue => break tally,
            _ = ticks.tick() => display.tick(),
            _ = tokio::signal::ctrl_c() => stop.cancel(),
        }
    };
    display.finish();
    summary(&tally, started.elapsed(), args.json, args.quiet);
    if !tally.failures.is_empty() {
        bail!(
            "{} of {} downloads failed",
            tally.failures.len(),
            tally.failures.len() + tally.done + tally.skipped
        );
    }
    if stop.is_cancelled() {
        bail!("interrupted; run the same command again to resume");
    }
    Ok(())
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
