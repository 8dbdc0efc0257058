//! The interactive shell in a pseudo-terminal, as a person meets it: the prompt, completion of
//! commands and of file names from the last search, a download's notice printed above the
//! waiting prompt (which is drawn again after it), and colour on a terminal unless NO_COLOR.
//! Skips, saying why, where no pseudo-terminal can be opened.

mod common;

use std::process::Command;

use common::{Node, pattern, shoal};
use rexpect::session::{PtySession, spawn_with_options};

/// How long any one expectation may wait.
const TIMEOUT_MS: u64 = 30_000;

/// Starts `command` in a pseudo-terminal, or says why not (the caller then skips).
fn spawn(command: Command) -> Result<PtySession, String> {
    let options = rexpect::reader::Options::new().timeout_ms(Some(TIMEOUT_MS));
    spawn_with_options(command, options).map_err(|e| format!("cannot open a pseudo-terminal: {e}"))
}

/// Types `keys` (rexpect buffers until a newline or a flush).
fn type_keys(session: &mut PtySession, keys: &str) {
    session
        .send(keys)
        .and_then(|_| session.flush())
        .unwrap_or_else(|e| panic!("typing {keys:?}: {e}"));
}

/// Expects `needle`, panicking with what was seen instead.
fn expect(session: &mut PtySession, needle: &str) -> String {
    session.exp_string(needle).unwrap_or_else(|e| panic!("expected {needle:?}: {e}"))
}

#[test]
fn shell_prompt_completes_and_prints_notices_above_the_prompt() {
    let node = Node::serve(
        &[
            ("alpha.txt", b"alpha\n"),
            ("alphabet.bin", &pattern(1 << 20, 3)),
            ("beta.txt", b"beta\n"),
        ],
        &[],
    );
    let tmp = tempfile::tempdir().unwrap();
    let (dir, state) = (tmp.path().join("d"), tmp.path().join("s"));
    let mut command = shoal();
    command.env("NO_COLOR", "1").env("TERM", "xterm");
    command
        .arg("shell")
        .arg("--dir")
        .arg(&dir)
        .arg("--state")
        .arg(&state)
        .args(["--listen", "127.0.0.1:0", "--peer", &node.url]);
    let mut shell = match spawn(command) {
        Ok(session) => session,
        Err(reason) => {
            eprintln!("skipping: {reason}");
            return;
        }
    };
    expect(&mut shell, "type help for the commands");
    expect(&mut shell, "shoal> ");

    // A command name completes: `sea` + TAB becomes `search`, and the completed line runs.
    type_keys(&mut shell, "sea\t");
    expect(&mut shell, "shoal> search");
    type_keys(&mut shell, " alpha\r");
    expect(&mut shell, "NAME");
    let table = expect(&mut shell, "shoal> ");
    assert!(
        table.contains("alpha.txt") && table.contains("alphabet.bin"),
        "search alpha printed:\n{table:?}"
    );
    assert!(!table.contains("beta.txt"), "search alpha printed:\n{table:?}");

    // File names from the last search complete: both candidates are offered.
    type_keys(&mut shell, "fetch al\t\t");
    let offered = expect(&mut shell, "alphabet.bin");
    assert!(offered.contains("alpha.txt"), "TAB TAB after `fetch al` showed:\n{offered:?}");
    // Ctrl-U clears the line; then a background download.
    type_keys(&mut shell, "\x15get alphabet.bin\r");
    expect(&mut shell, "downloading alphabet.bin in the background");
    // The notice arrives while the prompt waits, on its own line, and the prompt is drawn again
    // right after it (only terminal control sequences in between).
    let (before, notice) = shell
        .exp_regex(r"download alphabet\.bin done\r\n(?:\x1b\[[0-9;?]*[A-Za-z]|\r)*shoal> ")
        .unwrap_or_else(|e| panic!("no `download alphabet.bin done` notice followed by a fresh prompt: {e}"));
    assert!(notice.starts_with("download alphabet.bin done"), "{notice:?}");
    assert!(
        before.contains("shoal> "),
        "the notice came before the prompt was drawn: {before:?}"
    );
    // The redrawn prompt takes input.
    type_keys(&mut shell, "downloads\r");
    let listed = expect(&mut shell, "shoal> ");
    assert!(
        listed
            .lines()
            .any(|l| l.contains("alphabet.bin") && l.contains("100.0%") && l.contains("done")),
        "downloads printed:\n{listed:?}"
    );
    type_keys(&mut shell, "exit\r");
    shell.exp_eof().unwrap_or_else(|e| panic!("the shell did not end after exit: {e}"));
    assert_eq!(std::fs::read(dir.join("alphabet.bin")).unwrap(), pattern(1 << 20, 3));
    let history = std::fs::read_to_string(state.join("shell_history")).unwrap_or_default();
    assert!(history.contains("get alphabet.bin"), "history kept: {history:?}");
}

#[test]
fn tables_are_bold_on_a_terminal_unless_no_color() {
    let node = Node::serve(&[("a.txt", b"a")], &[]);
    let ls = |no_color: bool| -> Option<String> {
        let mut command = shoal();
        command.env("TERM", "xterm").args(["ls", "--node", &node.url]);
        if no_color {
            command.env("NO_COLOR", "1");
        }
        match spawn(command) {
            Ok(mut session) => Some(session.exp_eof().unwrap_or_else(|e| panic!("shoal ls did not end: {e}"))),
            Err(reason) => {
                eprintln!("skipping: {reason}");
                None
            }
        }
    };
    let Some(coloured) = ls(false) else { return };
    assert!(coloured.contains("\x1b[1mNAME"), "no bold header on a terminal: {coloured:?}");
    let Some(plain) = ls(true) else { return };
    assert!(plain.contains("NAME") && plain.contains("a.txt"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "NO_COLOR output has escapes: {plain:?}");
}
