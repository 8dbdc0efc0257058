//! The `shoal` command: a thin layer over `shoal-node` that reads flags, sets up logging, and
//! prints errors as one line with their whole cause chain: exit code 1 when a command fails, 2
//! for a usage error (from clap).

mod cli;
mod commands;
mod config;
mod get;
mod handover;
mod output;
mod queue;
mod relay;
mod remote;
mod serve;
mod shell;

use clap::Parser;

/// glibc's allocator keeps what is freed in per-thread arenas, and a node that receives and
/// streams many ranges at once (a crowd: 1 MiB pieces arriving in parts on dozens of
/// connections, 256 KiB chunks going out) leaves its heaps full of free holes. Two arenas, and
/// the free pages handed back four times a second (`malloc_trim`), keep peak RSS near what is in use:
/// at a 48-node crowd 61 MiB became under 48 (bench/swarm.sh). A fixed mmap threshold did as
/// well for memory but cost a third of the single-source speed (fresh pages for every buffer).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let trim = std::thread::Builder::new().name("trim".into()).spawn(|| {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(250));
            // SAFETY: malloc_trim only returns free memory to the system.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
    if let Err(error) = trim {
        tracing::debug!(%error, "no thread to hand free memory back");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = cli::Cli::parse();
    if cli.command.prints_a_report() {
        // A report piped into `head` ends quietly when the pipe closes, as other tools do.
        // SAFETY: setting a signal's disposition to the default has no preconditions.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG").unwrap_or_else(|_| {
            // The TLS verifier logs every refused certificate as an error of its own; shoal
            // reports it once, in its own words. iroh's socket reports connections closed at
            // exit as errors.
            tracing_subscriber::EnvFilter::new("warn,rustls_platform_verifier=off,iroh::socket=off")
        }))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("shoal: starting the async runtime: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            cli::Command::Serve(args) => serve::run(args).await,
            cli::Command::Get(args) => get::run(args).await,
            cli::Command::Shell(args) => shell::run(args).await,
            cli::Command::Search(args) => commands::search(args).await,
            cli::Command::Ls(args) => commands::ls(args).await,
            cli::Command::Peers(args) => commands::peers(args).await,
            cli::Command::Downloads(args) => commands::downloads(args).await,
            cli::Command::Status(args) => commands::status(args).await,
            cli::Command::Dht(args) => commands::dht(args).await,
            cli::Command::Config(args) => commands::config(args),
            cli::Command::Id(args) => commands::id(args).await,
            cli::Command::Relay(args) => relay::relay(args).await,
            cli::Command::Completions { shell } => {
                commands::completions(shell);
                Ok(())
            }
            cli::Command::Man => commands::man(),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The chain may quote a node's fault text: no control character reaches the terminal.
            eprintln!("shoal: {}", output::printable(&format!("{error:#}")));
            std::process::ExitCode::from(1)
        }
    }
}
