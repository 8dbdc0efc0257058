//! The command line's protections, with real processes: the state directory's secret (its file,
//! `SHOAL_SECRET`, `config.toml`) never goes to a node other than the one running on it, a
//! secret paired with a node on the command line goes to it only with the calls that need one,
//! the state directory and its files are the owner's alone, a readable `config.toml` holding a
//! secret is warned about, and a node out of file descriptors keeps serving afterwards without
//! flooding its log.

mod common;
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::Serve;

/// A fake node: answers every XML-RPC call with an empty array and keeps every request it got
/// (head and body) for the test to look at.
struct FakeNode {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeNode {
    fn start() -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let kept = requests.clone();
        // The thread ends with the test process; every connection is served in turn.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Some(request) = answer(stream) {
                    kept.lock().unwrap().push(request);
                }
            }
        });
        FakeNode { url, requests }
    }

    /// Everything received so far, as one text.
    fn received(&self) -> String {
        self.requests.lock().unwrap().join("\n----\n")
    }
}

/// Reads one request (bounded by a read timeout), answers it, and gives it back.
fn answer(mut stream: TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut got = Vec::new();
    let body_start = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&chunk[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..body_start]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while got.len() < body_start + length.min(1 << 20) {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    let body = "<?xml version=\"1.0\"?><methodResponse><params><param><value><array><data></data></array></value></param></params></methodResponse>";
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// Waits (bounded) for a file to exist.
fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `shoal ARGS` with `env`, its standard input `stdin`.
fn shoal_with(args: &[&str], env: &[(&str, &str)], stdin: &str) -> common::Output {
    let mut command = common::shoal();
    command.args(args).envs(env.iter().copied());
    common::run(command, stdin)
}

#[test]
fn the_state_directory_secret_is_never_sent_to_another_node() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir, state) = (tmp.path().join("share"), tmp.path().join("state"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let secret = "local-secret-7d41c0ffee9b";
    std::fs::write(state.join("secret"), secret).unwrap();
    let own = Serve::start(&dir, &state, &[]);
    wait_for_file(&state.join("node.url"));
    let state_arg = state.to_str().unwrap();

    // The control: the node on the state directory gets its secret (it shows the owner's view).
    let out = shoal_with(&["downloads", "--json", "--state", state_arg], &[], "");
    assert_eq!(out.code(), Some(0), "{}", out.describe());

    let fake = FakeNode::start();
    let out = shoal_with(&["downloads", "--node", &fake.url, "--state", state_arg], &[], "");
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let out = shoal_with(
        &["shell", "--node", &fake.url, "--state", state_arg],
        &[],
        "downloads\nfetch x\ndownload http://127.0.0.1:9/x.bin\nexit\n",
    );
    let received = fake.received();
    assert!(
        received.contains("shoal.downloads"),
        "the fake was not asked: {received}\n{}",
        out.describe()
    );
    assert!(
        !received.contains(secret),
        "the state directory's secret went to another node:\n{received}"
    );
    // Nor does the shell print it.
    assert!(
        !out.stdout().contains(secret) && !out.stderr().contains(secret),
        "{}",
        out.describe()
    );

    // When the user pairs a secret with that node on the command line, it is sent: they asked.
    let given = FakeNode::start();
    let out = shoal_with(
        &[
            "downloads",
            "--node",
            &given.url,
            "--state",
            state_arg,
            "--secret",
            "given-secret-55",
        ],
        &[],
        "",
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let out = shoal_with(
        &["shell", "--node", &given.url, "--state", state_arg, "--secret", "given-secret-55"],
        &[],
        "fetch x\nexit\n",
    );
    let received = given.received();
    assert!(
        received.contains("given-secret-55") && received.contains("<methodName>fetch</methodName>"),
        "the given secret was not sent: {received}\n{}",
        out.describe()
    );
    assert!(!received.contains(secret), "the state directory's secret went along:\n{received}");
    drop(own);
}

/// Writes `text` to `path` readable by its owner alone.
fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn secrets_from_the_environment_and_config_go_only_to_the_node_on_the_state_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir, state) = (tmp.path().join("share"), tmp.path().join("state"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let (file_secret, config_secret, env_secret) = ("file-secret-1c9e77", "config-secret-5ab0d3", "env-secret-9f1e02");
    std::fs::write(state.join("secret"), file_secret).unwrap();
    write_private(&state.join("config.toml"), &format!("secret = \"{config_secret}\"\n"));
    // The node on the state directory takes its secret from the config file.
    let own = Serve::start(&dir, &state, &[]);
    wait_for_file(&state.join("node.url"));
    let state_arg = state.to_str().unwrap();
    let secrets = [file_secret, config_secret, env_secret];
    let never = |fake: &FakeNode, what: &str| {
        let received = fake.received();
        for secret in secrets {
            assert!(!received.contains(secret), "{what}: {secret} went to a foreign node:\n{received}");
        }
        received
    };

    // The control: the node on the state directory gets the config file's secret (an owner's
    // call passes the secret check, fault 200, and finds no such download, fault 100).
    let out = shoal_with(&["shell", "--node", "--state", state_arg], &[], "pause nothing.bin\nexit\n");
    assert!(
        out.stdout().contains("fault 100") && !out.stdout().contains("secret"),
        "the owner's call was refused: {}",
        out.describe()
    );

    // A foreign node named with --node, with the secret in the config file and exported too:
    // it is asked, and gets none of them, whatever the command.
    let fake = FakeNode::start();
    let script = "downloads\nfetch x\nget http://127.0.0.1:9/x.bin\npause x\nresume x\ncancel x\nls\npeers\nexit\n";
    for env in [&[][..], &[("SHOAL_SECRET", env_secret)][..]] {
        let out = shoal_with(&["downloads", "--node", &fake.url, "--state", state_arg], env, "");
        assert_eq!(out.code(), Some(0), "downloads gets the public view: {}", out.describe());
        let out = shoal_with(&["shell", "--node", &fake.url, "--state", state_arg], env, script);
        assert!(
            out.stdout().contains("needs the secret of the node"),
            "owner calls say what they need: {}",
            out.describe()
        );
        for command in ["ls", "peers", "status", "search"] {
            let out = shoal_with(&[command, "--node", &fake.url, "--state", state_arg], env, "");
            assert_eq!(out.code(), Some(0), "{command}: {}", out.describe());
        }
    }
    let received = never(&fake, "--node");
    for method in ["shoal.downloads", "shoal.search", "shoal.peer_table", "shoal.stats"] {
        assert!(received.contains(method), "the fake was not asked {method}: {received}");
    }

    // `node =` and `secret =` in one config file, or SHOAL_NODE and SHOAL_SECRET together, are no
    // pairing: the secret is the state directory's node's.
    let paired = FakeNode::start();
    let other_state = tmp.path().join("other-state");
    std::fs::create_dir_all(&other_state).unwrap();
    write_private(
        &other_state.join("config.toml"),
        &format!("node = \"{}\"\nsecret = \"{config_secret}\"\n", paired.url),
    );
    let other_arg = other_state.to_str().unwrap();
    let out = shoal_with(&["downloads", "--state", other_arg], &[], "");
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let out = shoal_with(
        &["downloads", "--state", state_arg],
        &[("SHOAL_NODE", paired.url.as_str()), ("SHOAL_SECRET", env_secret)],
        "",
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let received = never(&paired, "config or environment");
    assert_eq!(received.matches("shoal.downloads").count(), 2, "{received}");

    // A secret given on that command line, as a flag or a file, goes to the node it names, and
    // only with the calls that need it.
    let given = FakeNode::start();
    let file = tmp.path().join("given.secret");
    write_private(&file, "given-by-file-77e1\n");
    let out = shoal_with(
        &[
            "shell",
            "--node",
            &given.url,
            "--state",
            state_arg,
            "--secret-file",
            file.to_str().unwrap(),
        ],
        &[("SHOAL_SECRET", env_secret)],
        "fetch x\nls\npeers\nexit\n",
    );
    assert!(!out.stdout().contains("needs the secret"), "{}", out.describe());
    let out = shoal_with(
        &[
            "downloads",
            "--node",
            &given.url,
            "--state",
            state_arg,
            "--secret",
            "given-by-flag-31c0",
        ],
        &[],
        "",
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stderr().contains("visible to every user"),
        "--secret is warned about: {}",
        out.describe()
    );
    let asked_with_secret = given.received();
    assert!(
        asked_with_secret.contains("given-by-file-77e1") && asked_with_secret.contains("given-by-flag-31c0"),
        "the given secrets were sent: {asked_with_secret}"
    );
    let plain = FakeNode::start();
    for command in ["ls", "peers", "status", "search"] {
        let out = shoal_with(
            &[
                command,
                "--node",
                &plain.url,
                "--state",
                state_arg,
                "--secret",
                "given-by-flag-31c0",
            ],
            &[],
            "",
        );
        assert_eq!(out.code(), Some(0), "{command}: {}", out.describe());
    }
    let received = plain.received();
    assert!(received.contains("shoal.stats"), "{received}");
    assert!(
        !received.contains("given-by-flag-31c0"),
        "a call that needs no secret carried one:\n{received}"
    );
    never(&given, "given");
    drop(own);
}

/// The soft and hard descriptor limit a `shoal serve` runs with in the exhaustion test: its
/// idle needs plus a few connections, below its connection cap (which is at least 16), so
/// that accepting does run out of descriptors.
const NOFILE: u32 = 26;

/// A `list` call over a raw socket; true when it was answered.
fn answers_list(url: &str) -> bool {
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let Ok(mut stream) = TcpStream::connect(authority) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let body = "<?xml version=\"1.0\"?><methodCall><methodName>list</methodName><params></params></methodCall>";
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {authority}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).contains("<methodResponse>")
}

const FAILS: &str = "accepting connections fails";

#[test]
fn a_node_out_of_descriptors_recovers_and_says_so_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir, state) = (tmp.path().join("share"), tmp.path().join("state"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.txt"), b"alpha\n").unwrap();
    // `ulimit -n` in sh sets the soft and the hard limit, so the node cannot raise it.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {NOFILE} && exec \"$0\" \"$@\""))
        .arg(common::bin())
        .args(["serve", "--dir"])
        .arg(&dir)
        .arg("--state")
        .arg(&state)
        .args(["--listen", "127.0.0.1:0", "--secret", "x"]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SHOAL_") {
            command.env_remove(key);
        }
    }
    let node = common::Node::spawn(command, dir.clone(), state.clone());
    let log = state.join("test-stderr.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !answers_list(&node.url) {
        assert!(Instant::now() < deadline, "the node never answered");
        std::thread::sleep(Duration::from_millis(50));
    }

    let authority = node.url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let address = authority.parse().expect("a socket address");
    let mut open = Vec::new();
    for _ in 0..200 {
        if let Ok(stream) = TcpStream::connect_timeout(&address, Duration::from_millis(250)) {
            open.push(stream);
        }
    }
    // The node runs out of descriptors: it says so (once).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains(FAILS) {
        assert!(
            Instant::now() < deadline,
            "the node never ran out of descriptors with {} connections open (limit {NOFILE}); raise the connection count or lower the limit",
            open.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // It stays starved for a while: a node that logged every failed accept (or retried without
    // backing off) would write many lines meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    drop(open);

    let deadline = Instant::now() + Duration::from_secs(30);
    while !answers_list(&node.url) {
        assert!(Instant::now() < deadline, "the node did not recover after the connections closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(node);
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let fails = log.matches(FAILS).count();
    assert!((1..=3).contains(&fails), "{fails} lines say accepting fails:\n{log}");
}

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_state_directory_and_its_files_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir, state) = (tmp.path().join("share"), tmp.path().join("state"));
    std::fs::create_dir_all(&dir).unwrap();
    // A state directory made open to others (as older versions left it), with a store to match.
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let node = Serve::start(&dir, &state, &[]);
    wait_for_file(&state.join("node.url"));
    assert_eq!(mode(&state), 0o700, "the state directory");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&state).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if meta.is_file() {
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
            seen.push(name);
        }
    }
    for name in ["shoal.redb", "secret", "node.url"] {
        assert!(seen.iter().any(|s| s == name), "{name} in {seen:?}");
    }
    drop(node);

    // A store left open to others by an older version is narrowed when it is next opened, and a
    // state directory that `shoal get` makes is the owner's alone from the start.
    std::fs::set_permissions(state.join("shoal.redb"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let fresh = tmp.path().join("fresh/state");
    for state in [&state, &fresh] {
        let target = tmp.path().join("none.bin");
        let out = shoal_with(
            &[
                "get",
                "http://127.0.0.1:9/none.bin",
                "--state",
                state.to_str().unwrap(),
                "--retry-for",
                "1",
                "-o",
                target.to_str().unwrap(),
            ],
            &[],
            "",
        );
        assert_ne!(out.code(), Some(0), "nothing answers there: {}", out.describe());
        assert_eq!(mode(state), 0o700, "{}", state.display());
        assert_eq!(mode(&state.join("shoal.redb")), 0o600, "{}", state.display());
    }
}

#[test]
fn a_config_file_holding_a_secret_that_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let config = state.join("config.toml");
    let state_arg = state.to_str().unwrap();
    let warned = |text: &str, file_mode: u32| {
        std::fs::write(&config, text).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(file_mode)).unwrap();
        let mut lines = Vec::new();
        // At the start of any command: one that reads the settings, one that talks to a node.
        for args in [&["config", "--state", state_arg][..], &["downloads", "--state", state_arg][..]] {
            let out = shoal_with(args, &[], "");
            let line: Vec<String> = out
                .stderr()
                .lines()
                .filter(|l| l.contains("config.toml"))
                .map(String::from)
                .collect();
            lines.push(line);
        }
        lines
    };
    for lines in warned("secret = \"open-to-all\"\n", 0o644) {
        assert_eq!(lines.len(), 1, "one warning: {lines:?}");
        assert!(
            lines[0].starts_with("warning:") && lines[0].contains("chmod 600") && lines[0].contains("secret"),
            "{lines:?}"
        );
    }
    for lines in warned("secret = \"mine-alone\"\n", 0o600) {
        assert!(lines.is_empty(), "no warning for a file of the owner's alone: {lines:?}");
    }
    for lines in warned("listen = \"127.0.0.1:0\"\n", 0o644) {
        assert!(lines.is_empty(), "no warning for a file without a secret: {lines:?}");
    }
}

#[test]
fn a_secret_file_names_the_secret_without_a_command_line_showing_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir, state) = (tmp.path().join("share"), tmp.path().join("state"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = tmp.path().join("node.secret");
    write_private(&file, "from-a-file-0d4c\n# the first line is the secret\n");
    let file_arg = file.to_str().unwrap();
    let node = Serve::start(&dir, &state, &["--secret-file", file_arg]);
    // The owner's call with the file passes the secret check (fault 200) and finds no such
    // download (fault 100); a wrong secret is refused.
    let pause = |secret_args: &[&str]| {
        let mut args = vec!["shell", "--node", node.url.as_str(), "--state", state.to_str().unwrap()];
        args.extend_from_slice(secret_args);
        shoal_with(&args, &[], "pause nothing.bin\nexit\n")
    };
    let out = pause(&["--secret-file", file_arg]);
    assert!(out.stdout().contains("fault 100"), "{}", out.describe());
    assert!(
        !out.stderr().contains("visible to every user"),
        "no warning for a file: {}",
        out.describe()
    );
    let out = pause(&["--secret", "not-it"]);
    assert!(out.stdout().contains("fault 200"), "{}", out.describe());

    // An empty or missing file is a clear error before anything is sent.
    let empty = tmp.path().join("empty.secret");
    write_private(&empty, "\n");
    for (path, says) in [(empty.to_str().unwrap(), "empty"), ("/nonexistent/secret", "--secret-file")] {
        let out = shoal_with(&["downloads", "--node", &node.url, "--secret-file", path], &[], "");
        assert_eq!(out.code(), Some(1), "{}", out.describe());
        assert!(out.stderr().contains(says), "{}", out.describe());
    }
}
