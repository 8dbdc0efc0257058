//! `shoal shell`: the seed's client, grown up. It starts a node in this process (or attaches to
//! a running one with `--node`) and reads commands: at a prompt with completion and history when
//! standard input is a terminal, line by line when it is piped, so that the shell can be
//! scripted. Messages that arrive while the user types (a download finished) are printed above
//! the prompt, never through it.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{ExternalPrinter, Helper};
use shoal_node::service::downloads::Status;
use shoal_node::service::remote::Action;
use tokio::io::AsyncBufReadExt;

use crate::cli::ShellArgs;
use crate::commands::{downloads_table, matches_table, peers_table};
use crate::output::printable;
use crate::remote::Remote;

/// The commands, their usage and what they do (for `help`).
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "fetch",
        "fetch NAME",
        "download NAME from the network into this node's share and wait for it",
    ),
    (
        "get",
        "get TARGET...",
        "download in the background: names, content ids or mirror URLs",
    ),
    (
        "search",
        "search PATTERN",
        "find files across the network (glob with * and ?, or a substring)",
    ),
    ("downloads", "downloads", "the node's downloads with their progress"),
    ("pause", "pause NAME", "pause a download, keeping its progress"),
    ("resume", "resume NAME", "continue a paused or failed download"),
    ("cancel", "cancel NAME", "stop a download and delete its partial data"),
    ("wait", "wait", "wait until no download is running"),
    ("ls", "ls", "this node's files"),
    ("peers", "peers", "the peers this node knows"),
    ("hello", "hello URL", "introduce a node to this one"),
    ("help", "help [COMMAND]", "this list, or one command's help"),
    ("exit", "exit", "leave (also end of input, or Ctrl-D)"),
];

/// Words the completer offers: names from the last search and listings, peer URLs.
#[derive(Default, Clone)]
struct Words {
    names: Arc<Mutex<Vec<String>>>,
    peers: Arc<Mutex<Vec<String>>>,
}

impl Words {
    fn set(list: &Arc<Mutex<Vec<String>>>, items: Vec<String>) {
        *list.lock().unwrap_or_else(|p| p.into_inner()) = items;
    }

    fn get(list: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
        list.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

struct ShellHelper {
    words: Words,
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &rustyline::Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before.rfind(' ').map_or(0, |i| i + 1);
        let word = &before[start..];
        let command = before.split_whitespace().next().unwrap_or_default();
        let choices: Vec<String> = if start == 0 {
            COMMANDS.iter().map(|(c, _, _)| c.to_string()).collect()
        } else {
            match command {
                "fetch" | "get" | "pause" | "resume" | "cancel" => Words::get(&self.words.names),
                "hello" => Words::get(&self.words.peers),
                "help" => COMMANDS.iter().map(|(c, _, _)| c.to_string()).collect(),
                _ => Vec::new(),
            }
        };
        let pairs = choices
            .into_iter()
            .filter(|c| c.starts_with(word))
            .map(|c| Pair {
                display: c.clone(),
                replacement: c,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

/// Runs one command line; returns false when the shell should end.
async fn run_line(remote: &Remote, words: &Words, line: &str) -> bool {
    let mut parts = line.split_whitespace();
    let Some(command) = parts.next() else { return true };
    let args: Vec<String> = parts.map(String::from).collect();
    let rest = line.trim_start()[command.len()..].trim().to_string();
    let usage = |name: &str| COMMANDS.iter().find(|(c, _, _)| *c == name).map(|(_, u, _)| *u).unwrap_or_default();
    let result: anyhow::Result<()> = async {
        match command {
            "exit" | "quit" => return Ok(()),
            "help" => match args.first() {
                None => {
                    for (_, usage, what) in COMMANDS {
                        println!("  {usage:<16} {what}");
                    }
                }
                Some(name) => match COMMANDS.iter().find(|(c, _, _)| c == name) {
                    Some((_, usage, what)) => println!("{usage}: {what}"),
                    None => println!("no command {name:?}; type help for the list"),
                },
            },
            "fetch" if !rest.is_empty() => match remote.fetch(&rest).await {
                Ok(_) => println!("fetched {rest}"),
                Err(error) if error.fault_code() == Some(shoal_node::service::remote::faults::NOT_FOUND) => {
                    println!("could not find the file {rest}")
                }
                Err(shoal_node::service::remote::CallError::Fault { fault, .. }) => println!("fetch {rest}: {}", printable(&fault.message)),
                Err(error) => println!("fetch {rest}: {}", printable(&error.to_string())),
            },
            "search" => {
                let found = remote.search(&rest).await?;
                Words::set(&words.names, found.iter().map(|m| m.name.clone()).collect());
                if found.is_empty() {
                    println!("nothing matches {rest:?}");
                } else {
                    print!("{}", matches_table(&found, true));
                }
            }
            "get" if !args.is_empty() => {
                let name = remote.download(&args).await?;
                println!("downloading {} in the background (see `downloads`)", printable(&name));
            }
            "downloads" => {
                let rows = remote.downloads().await?;
                if rows.as_array().is_none_or(|r| r.is_empty()) {
                    println!("no downloads");
                } else {
                    print!("{}", downloads_table(&rows));
                }
            }
            "pause" | "resume" | "cancel" if !rest.is_empty() => {
                let (action, done) = match command {
                    "pause" => (Action::Pause, "paused"),
                    "resume" => (Action::Resume, "resumed"),
                    _ => (Action::Cancel, "cancelled"),
                };
                remote.control(action, &rest).await?;
                println!("{done} {rest}");
            }
            "wait" => wait_for_downloads(remote).await?,
            "ls" => {
                let files = remote.files().await?;
                if files.is_empty() {
                    println!("the share is empty");
                } else {
                    print!("{}", matches_table(&files, false));
                }
            }
            "peers" => {
                let rows = remote.peer_table().await?;
                let urls = rows
                    .as_array()
                    .map(|r| r.iter().filter_map(|p| p["url"].as_str().map(String::from)).collect())
                    .unwrap_or_default();
                Words::set(&words.peers, urls);
                if rows.as_array().is_none_or(|r| r.is_empty()) {
                    println!("no peers known");
                } else {
                    print!("{}", peers_table(&rows));
                }
            }
            "hello" if args.len() == 1 => {
                remote.hello(&args[0]).await?;
                println!("now knows {}", args[0]);
            }
            "fetch" | "get" | "pause" | "resume" | "cancel" | "hello" => println!("usage: {}", usage(command)),
            other => println!("unknown command {other:?}; type help for the list"),
        }
        Ok(())
    }
    .await;
    if let Err(error) = result {
        println!("{command}: {}", printable(&format!("{error:#}")));
    }
    !matches!(command, "exit" | "quit")
}

/// The state of a running download, as the node names it.
const RUNNING: &str = Status::Running.name();

async fn wait_for_downloads(remote: &Remote) -> anyhow::Result<()> {
    loop {
        let rows = remote.downloads().await?;
        let running = rows
            .as_array()
            .map(|r| r.iter().filter(|d| d["status"]["state"] == RUNNING).count())
            .unwrap_or(0);
        if running == 0 {
            print!("{}", downloads_table(&rows));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each download's target and state, as the node lists them now.
async fn download_states(remote: &Remote) -> anyhow::Result<HashMap<String, String>> {
    let rows = remote.downloads().await?;
    Ok(rows
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            (
                row["target"].as_str().unwrap_or_default().to_string(),
                row["status"]["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// Watches the node's downloads and reports each one that ends. `known` is the table as it
/// stood before the prompt opened: a download missing from it is new, and is reported when it
/// ends even if it ended before the first look.
async fn watch_downloads(remote: Remote, mut known: HashMap<String, String>, mut say: impl FnMut(String) + Send) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(rows) = remote.downloads().await else { continue };
        for row in rows.as_array().into_iter().flatten() {
            let target = row["target"].as_str().unwrap_or_default().to_string();
            let state = row["status"]["state"].as_str().unwrap_or_default().to_string();
            let before = known.insert(target, state.clone());
            if state != RUNNING && before.as_deref().is_none_or(|before| before == RUNNING) {
                let name = row["name"].as_str().unwrap_or_default();
                let detail = row["status"]["detail"].as_str().map(|d| format!(": {d}")).unwrap_or_default();
                say(printable(&format!("download {name} {state}{detail}")));
            }
        }
    }
}

pub async fn run(args: ShellArgs) -> anyhow::Result<()> {
    let (remote, node) = match &args.attach {
        Some(url) => {
            let remote = Remote::find(Some(url.as_str()), args.node.state.as_deref(), &args.node.net, &args.secret)?;
            (remote, None)
        }
        None => {
            let secret = crate::remote::given_secret(&args.secret)?;
            let node = crate::serve::start(&args.node, secret, None, &[]).await?;
            let remote = Remote::new(node.url(), Some(node.api().secret().to_string()));
            (remote, Some(node))
        }
    };
    let words = Words::default();
    if let Ok(rows) = remote.peer_table().await {
        Words::set(
            &words.peers,
            rows.as_array()
                .map(|r| r.iter().filter_map(|p| p["url"].as_str().map(String::from)).collect())
                .unwrap_or_default(),
        );
    }
    let state = crate::config::Layers::load(args.node.state.as_deref())?.state;
    let result = if std::io::stdin().is_terminal() {
        interactive(&remote, &words, &state).await
    } else {
        piped(&remote, &words).await
    };
    if let Some(node) = node {
        node.shutdown().await;
    }
    result
}

async fn piped(remote: &Remote, words: &Words) -> anyhow::Result<()> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.context("reading standard input")? {
        if !run_line(remote, words, &line).await {
            break;
        }
    }
    Ok(())
}

async fn interactive(remote: &Remote, words: &Words, state: &std::path::Path) -> anyhow::Result<()> {
    let mut editor: rustyline::Editor<ShellHelper, rustyline::history::FileHistory> =
        rustyline::Editor::new().context("starting the line editor")?;
    editor.set_helper(Some(ShellHelper { words: words.clone() }));
    let history = state.join("shell_history");
    let _ = shoal_node::state::prepare_state_dir(state);
    let _ = editor.load_history(&history);
    let mut printer = editor.create_external_printer().context("starting the message printer")?;
    let known = download_states(remote).await.unwrap_or_default();
    let watcher = tokio::spawn(watch_downloads(
        Remote::new(&remote.url, remote.secret.clone()),
        known,
        move |message| {
            let _ = printer.print(format!("{message}\n"));
        },
    ));
    println!("shoal shell on {} — type help for the commands", remote.url);
    let mut editor = Some(editor);
    loop {
        let Some(mut ed) = editor.take() else { break };
        let (read, ed) = tokio::task::spawn_blocking(move || {
            let read = ed.readline("shoal> ");
            (read, ed)
        })
        .await
        .context("the line editor stopped")?;
        editor = Some(ed);
        match read {
            Ok(line) => {
                if let Some(ed) = editor.as_mut()
                    && !line.trim().is_empty()
                {
                    let _ = ed.add_history_entry(line.as_str());
                }
                if !run_line(remote, words, &line).await {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(error).context("reading a command"),
        }
    }
    watcher.abort();
    if let Some(mut ed) = editor {
        let _ = ed.save_history(&history);
    }
    Ok(())
}
