//! `faults`: shoal's reliability suite. It runs the release `shoal` binary as real processes on
//! loopback and hurts them on purpose: SIGKILLs of downloaders and sources, corrupting and
//! stalling mirrors, a node restarted under searches, a full disk, a peer that answers slowly.
//! Every wait is bounded and every random choice comes from one seed, printed at the start, so a
//! failing round can be replayed with `--seed` (and `--only` for one case).
//!
//! Usage: `cargo build --release -p shoal && cargo run --release -p reliability --bin faults --
//! [--rounds N] [--seed S] [--json PATH] [--only 1,3,6]`. Prints a Markdown table; with `--json`
//! writes the same rows as a JSON array of `{case, tried, times, held, notes}`. Exits 1 when a
//! property did not hold.

mod cases;
mod servers;
mod support;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::cases::{Ctx, Outcome};
use crate::support::{Rng, Rpc};

/// One case of the suite.
type Case = fn(&mut Ctx) -> Outcome;

struct Args {
    rounds: u32,
    seed: u64,
    json: Option<PathBuf>,
    only: Vec<u32>,
    bin: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        rounds: 20,
        seed: 0,
        json: None,
        only: Vec::new(),
        bin: None,
    };
    let mut seed = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rounds" => args.rounds = value()?.parse().context("--rounds: a number")?,
            "--seed" => seed = Some(value()?.parse().context("--seed: a number")?),
            "--json" => args.json = Some(PathBuf::from(value()?)),
            "--only" => {
                args.only = value()?
                    .split(',')
                    .map(|c| c.trim().parse())
                    .collect::<Result<_, _>>()
                    .context("--only: case numbers like 1,3")?
            }
            "--shoal" => args.bin = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                println!(
                    "faults [--rounds N (default 20)] [--seed S] [--json PATH] [--only 1,2,...] [--shoal PATH/TO/shoal]\nRuns shoal's fault suite against the release binary (target/release/shoal; build it with `cargo build --release -p shoal`)."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    args.seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    Ok(args)
}

/// The release `shoal` binary: `--shoal`, else target/release/shoal of this workspace (or of
/// `CARGO_TARGET_DIR`), built first if it is missing.
fn shoal_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(bin) = given {
        return Ok(bin);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let bin = target.join("release/shoal");
    if !bin.exists() {
        eprintln!(
            "{} is missing; running `cargo build --release -p shoal` (do that first next time)",
            bin.display()
        );
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "-p", "shoal"])
            .current_dir(&workspace)
            .status()
            .context("running cargo build")?;
        if !status.success() || !bin.exists() {
            bail!("building shoal failed ({status}); run `cargo build --release -p shoal`");
        }
    }
    Ok(bin.canonicalize()?)
}

fn markdown(rows: &[Outcome]) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = String::from("| case | what was tried | times | held |\n| --- | --- | --- | --- |\n");
    for row in rows {
        let held = match row.held {
            Some(true) => "yes",
            Some(false) => "**NO**",
            None => "skipped",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            cell(&row.case),
            cell(&row.tried),
            row.times,
            held
        ));
    }
    out.push('\n');
    for row in rows {
        out.push_str(&format!("- **{}**: {}\n", cell(&row.case), cell(&row.notes)));
    }
    out
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("faults: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let args = parse_args()?;
    let bin = shoal_binary(args.bin.clone())?;
    println!(
        "faults: seed {} (replay with --seed {} --rounds {}), shoal at {}",
        args.seed,
        args.seed,
        args.rounds,
        bin.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let root = tempfile::Builder::new().prefix("shoal-faults-").tempdir()?;
    let cases: [(u32, Case); 6] = [
        (1, cases::kill_downloader),
        (2, cases::kill_source),
        (3, cases::bad_mirrors),
        (4, cases::restart_middle),
        (5, cases::full_disk),
        (6, cases::slow_peer),
    ];
    let started = Instant::now();
    let mut rows = Vec::new();
    for (number, case) in cases {
        if !args.only.is_empty() && !args.only.contains(&number) {
            continue;
        }
        // Each case has its own stream of choices, so `--only` replays the same rounds.
        let mut ctx = Ctx {
            bin: bin.clone(),
            rounds: args.rounds,
            rng: Rng(args.seed ^ u64::from(number).wrapping_mul(0xA076_1D64_78BD_642F)),
            rpc: Rpc::new(runtime.handle().clone()),
            root: root.path().to_path_buf(),
        };
        let case_started = Instant::now();
        eprintln!("case {number}…");
        let row = case(&mut ctx);
        eprintln!(
            "case {number}: {} in {:.0} s",
            match row.held {
                Some(true) => "held",
                Some(false) => "DID NOT HOLD",
                None => "skipped",
            },
            case_started.elapsed().as_secs_f64()
        );
        rows.push(row);
    }
    println!("\n{}", markdown(&rows));
    println!("whole run: {:.0} s, seed {}", started.elapsed().as_secs_f64(), args.seed);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)? + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    runtime.shutdown_background();
    Ok(rows.iter().all(|r| r.held != Some(false)))
}
