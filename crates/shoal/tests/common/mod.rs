//! Helpers shared by the command-line tests: the `shoal` binary as a [`Command`] with a clean
//! environment, nodes started with `shoal serve` on `127.0.0.1:0` in temporary directories (killed
//! when dropped), and running a command to completion with a bound on how long it may take.

#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a node may take to print where it listens.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one command may run before the test gives up on it.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_shoal")
}

/// `shoal` with no `SHOAL_*` variables inherited from the caller's environment and the platform's
/// data directory pointed at a path that does not exist, so that no test reads or writes the
/// developer's own state directory.
pub fn shoal() -> Command {
    let mut command = Command::new(bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SHOAL_") {
            command.env_remove(key);
        }
    }
    command.env_remove("NO_COLOR");
    // Nothing a test starts reaches past this machine: no public relays, look-ups, port
    // mapping or mDNS on the real interfaces.
    command.env("SHOAL_LOCAL_ONLY", "1");
    command.env(
        "XDG_DATA_HOME",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("shoal-tests-no-data-home"),
    );
    command
}

/// What a finished command printed.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Both streams, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "exit status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout(),
            self.stderr()
        )
    }

    /// Panics with both streams unless the command exited with `code`.
    pub fn expect_code(self, code: i32) -> Output {
        assert_eq!(self.code(), Some(code), "{}", self.describe());
        self
    }

    /// Standard output parsed as JSON, after checking for exit code 0.
    pub fn json(self) -> serde_json::Value {
        let out = self.expect_code(0);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", out.describe()))
    }
}

/// Runs `command` with `stdin` as its standard input, collecting both output streams; kills it
/// and panics if it has not ended within [`RUN_TIMEOUT`].
pub fn run(mut command: Command, stdin: &str) -> Output {
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_string();
    // A writer thread, so that a command that stops reading cannot block the test.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let Some(status) = wait_bounded(&mut child, RUN_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        let out = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
        panic!("{command:?} did not finish within {RUN_TIMEOUT:?}; its output so far:\n{out}")
    };
    let _ = writer.join();
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Runs `shoal ARGS` with empty standard input.
pub fn run_args<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut command = shoal();
    command.args(args.into_iter().map(Into::into));
    run(command, "")
}

fn drain(mut stream: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        bytes
    })
}

/// Waits for `child` to exit, for at most `limit`.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `shoal serve` child process, killed when dropped, with its temporary directories.
pub struct Node {
    child: Child,
    /// The URL from its `listening on http://...` line.
    pub url: String,
    /// The shared directory.
    pub dir: PathBuf,
    /// The state directory.
    pub state: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// The lines the node printed after `listening on`.
    lines: Option<mpsc::Receiver<String>>,
}

impl Node {
    /// A node sharing `files` (name, contents) with the owner's secret `x`, knowing `peers`.
    pub fn serve(files: &[(&str, &[u8])], peers: &[&str]) -> Node {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let (dir, state) = (tmp.path().join("shared"), tmp.path().join("state"));
        std::fs::create_dir_all(&dir).expect("creating the shared directory");
        std::fs::create_dir_all(&state).expect("creating the state directory");
        for (name, contents) in files {
            std::fs::write(dir.join(name), contents).expect("writing a shared file");
        }
        let mut args: Vec<OsString> = vec![
            "serve".into(),
            "--dir".into(),
            dir.clone().into(),
            "--state".into(),
            state.clone().into(),
        ];
        args.extend(["--listen", "127.0.0.1:0", "--secret", "x"].map(OsString::from));
        for peer in peers {
            args.push("--peer".into());
            args.push(peer.into());
        }
        let mut command = shoal();
        command.args(args);
        let mut node = Node::spawn(command, dir, state);
        node._tmp = Some(tmp);
        node.wait_until_sharing(&files.iter().map(|(name, _)| *name).collect::<Vec<_>>());
        node
    }

    /// Waits, bounded, until `shoal ls --json` lists exactly `names`. The node scans its share
    /// in the background after it starts listening, so a fresh node may list nothing yet.
    pub fn wait_until_sharing(&self, names: &[&str]) {
        let mut want: Vec<&str> = names.to_vec();
        want.sort_unstable();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let out = run_args(["ls", "--json", "--node", &self.url]);
            let listed: Vec<String> = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|v| {
                    v.as_array()
                        .map(|a| a.iter().filter_map(|m| m["name"].as_str().map(String::from)).collect())
                })
                .unwrap_or_default();
            let mut listed: Vec<&str> = listed.iter().map(String::as_str).collect();
            listed.sort_unstable();
            if listed == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} lists {listed:?}, not {want:?}, after {START_TIMEOUT:?}:\n{}",
                self.url,
                out.describe()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `command` (a `shoal serve ...`) and waits, bounded, for its `listening on` line.
    /// `dir` and `state` are recorded for the test; the caller keeps their directories alive.
    pub fn spawn(mut command: Command, dir: PathBuf, state: PathBuf) -> Node {
        let log = state.join("test-stderr.log");
        std::fs::create_dir_all(&state).expect("creating the state directory");
        let stderr = std::fs::File::create(&log).expect("creating the stderr log");
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
        let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines) = mpsc::channel();
        // Reads the node's stdout to its end, so the node never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Once the test has the URL nobody listens; the lines are dropped.
                let _ = lines_tx.send(line);
            }
        });
        let mut node = Node {
            child,
            url: String::new(),
            dir,
            state,
            _tmp: None,
            lines: None,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        node.url = url.trim().to_string();
                        node.lines = Some(lines);
                        return node;
                    }
                }
                Err(_) => {
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!("{command:?} did not print `listening on` within {START_TIMEOUT:?} (or ended); stderr:\n{log}");
                }
            }
        }
    }
}

impl Node {
    /// The node's ticket, from its `ticket ...` line (bounded wait; the node runs iroh).
    pub fn ticket(&mut self) -> String {
        self.line_after("ticket ")
    }

    /// The UDP address of the node's DHT node, from its `DHT node on udp ...` line (before the
    /// node id and ticket lines).
    pub fn dht_addr(&mut self) -> String {
        self.line_after("DHT node on udp ")
    }

    /// The node's id, from its `node id ...` line (before the ticket line).
    pub fn id(&mut self) -> String {
        self.line_after("node id ")
    }

    fn line_after(&mut self, prefix: &str) -> String {
        let lines = self.lines.as_ref().expect("the node's output");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                }
                Err(_) => panic!("the node printed no `{prefix}` line within {START_TIMEOUT:?}"),
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Walks through a transcript line by line, checking that things appear in order.
pub struct Transcript<'a> {
    lines: Vec<&'a str>,
    at: usize,
    text: &'a str,
}

impl<'a> Transcript<'a> {
    pub fn new(text: &'a str) -> Transcript<'a> {
        Transcript {
            lines: text.lines().collect(),
            at: 0,
            text,
        }
    }

    fn position(&self, all: &[&str]) -> Option<usize> {
        (self.at..self.lines.len()).find(|&i| all.iter().all(|part| self.lines[i].contains(part)))
    }

    /// Moves past the next line that contains every one of `all`; panics if there is none.
    pub fn next(&mut self, all: &[&str]) -> &'a str {
        match self.position(all) {
            Some(i) => {
                self.at = i + 1;
                self.lines[i]
            }
            None => panic!("no line containing all of {all:?} after line {} of:\n{}", self.at, self.text),
        }
    }

    /// The lines from here up to (not including) the next line that contains every one of
    /// `all`, moving past that line.
    pub fn until(&mut self, all: &[&str]) -> Vec<&'a str> {
        let start = self.at;
        self.next(all);
        self.lines[start..self.at - 1].to_vec()
    }
}

/// The bytes of a file, with the path in the panic message.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Deterministic filler of `len` bytes that is not all one value.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

/// `ip ARGS` (iproute2; the namespace tests need root).
pub fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("running ip {args:?} (iproute2 is needed, and root): {e}"));
    assert!(status.success(), "ip {args:?} failed");
}

/// `PROGRAM ARGS` inside the network namespace `ns`; its standard output.
pub fn in_ns(ns: &str, program: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?} in {ns}: {e}"));
    assert!(out.status.success(), "{program} {args:?} in {ns} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `shoal` inside the network namespace `ns`, with the environment of [`shoal`].
pub fn shoal_in(ns: &str) -> Command {
    let template = shoal();
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns, bin()]);
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command
}

/// `command` (a `shoal` or [`shoal_in`]) as `serve` of a node sharing `files`, with the owner's
/// secret `x`, on `127.0.0.1:0`, with `flags`; its directories live in the returned guard.
pub fn serve_with(mut command: Command, files: &[(&str, &[u8])], flags: &[&str]) -> (Node, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, state) = (tmp.path().join("shared"), tmp.path().join("state"));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, contents) in files {
        std::fs::write(dir.join(name), contents).unwrap();
    }
    command.arg("serve").arg("--dir").arg(&dir).arg("--state").arg(&state);
    command.args(["--listen", "127.0.0.1:0", "--secret", "x"]).args(flags);
    (Node::spawn(command, dir, state), tmp)
}

/// `shoal get ARGS` saving into `out`, with a state directory of its own there.
pub fn get_into(out: &Path, args: &[&str]) -> Output {
    let mut command = shoal();
    command
        .arg("get")
        .args(args)
        .arg("--state")
        .arg(out.join("state"))
        .arg("-o")
        .arg(out);
    run(command, "")
}
