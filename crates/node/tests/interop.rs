//! Interop with the seed: shoal nodes and Python nodes in one network, and Python's own
//! `xmlrpc.client` as a client of a shoal node.
//!
//! The Python side is `tests/python/seed_node.py`, a Python 3 port of the seed's `Node` (same
//! methods, faults, history rule and single-threaded server). Each Python process is started on
//! `127.0.0.1:0`, announces its URL on one line after it has bound, and is killed when its guard
//! is dropped. No test sleeps: every wait is a bounded read of a pipe or an awaited call.

#[path = "it/util.rs"]
mod util;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;
use shoal_node::discovery::peers::PeerKind;
use shoal_node::proto::faults::{ACCESS_DENIED, NOT_FOUND};
use shoal_xmlrpc::Value;
use tempfile::TempDir;
use util::{SECRET, TestNode, binary, read, s, strings};

/// The seed node's script.
const SEED_NODE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/seed_node.py");

/// The secret every Python node is started with.
const SEED_SECRET: &str = "seed-secret";

/// How long a Python process may take to start or a Python client script to finish.
const PYTHON_DEADLINE: Duration = Duration::from_secs(60);

/// Text that travels as an XML-RPC string: non-ASCII, a tab, markup characters, newlines.
const TEXT: &str = "h\u{e9}llo, w\u{f6}rld <&> \u{1f41f}\n\tsecond line\n";

/// A child process that is killed and reaped when dropped, so a failing test leaves none behind.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Python seed node serving its own temporary directory.
struct SeedNode {
    url: String,
    dir: TempDir,
    /// Kept open so that the node never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    _process: Process,
}

impl SeedNode {
    /// Starts a seed node that knows `peers` (its command line), and waits for its
    /// `listening on` line.
    async fn start(peers: &[&str]) -> SeedNode {
        let dir = tempfile::tempdir().expect("seed dir");
        let mut process = Process(
            Command::new("python3")
                .arg(SEED_NODE)
                .arg(dir.path())
                .arg(SEED_SECRET)
                .args(peers)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("python3 runs"),
        );
        let stdout = process.0.stdout.take().expect("a stdout pipe");
        let read = tokio::task::spawn_blocking(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            reader.read_line(&mut line).map(|_| (line, reader))
        });
        let (line, stdout) = tokio::time::timeout(PYTHON_DEADLINE, read)
            .await
            .expect("the seed node announces itself in time")
            .expect("the reading task")
            .expect("the seed node's stdout");
        let url = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the seed node: {line:?}"))
            .to_string();
        SeedNode {
            url,
            dir,
            _stdout: stdout,
            _process: process,
        }
    }

    /// Writes a file into the node's directory.
    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.path(name), bytes).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An XML-RPC call to this node from Rust.
    async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, shoal_xmlrpc::Fault> {
        util::call(&self.url, method, params).await
    }
}

/// Runs a Python client `script` with `args` and parses the JSON it prints as its last line.
async fn python_client(script: &str, args: &[&str]) -> Json {
    let mut process = Process(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs"),
    );
    let mut stdout = process.0.stdout.take().expect("a stdout pipe");
    let read = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    });
    let out = tokio::time::timeout(PYTHON_DEADLINE, read)
        .await
        .expect("the Python client finishes in time")
        .expect("the reading task")
        .expect("the Python client's stdout");
    // Stdout is closed, so the process has finished or is about to.
    let status = process.0.wait().expect("the Python client's status");
    assert!(status.success(), "the Python client failed ({status}); it printed:\n{out}");
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("the Python client printed no JSON ({e}):\n{out}"))
}

fn fault_code(result: &Result<Value, shoal_xmlrpc::Fault>) -> Option<i32> {
    result.as_ref().err().map(|fault| fault.code)
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn file_hex(path: &Path) -> String {
    hex(&read(path))
}

/// Python's `xmlrpc.client` against a shoal node: every seed method, the introspection methods,
/// text and binary content, and each fault, as a Python program sees them.
const PYTHON_CLIENT: &str = r#"
import json, sys
import xmlrpc.client as x

url, peer = sys.argv[1], sys.argv[2]
node = x.ServerProxy(url, allow_none=True)

def fault(call):
    try:
        return {"value": repr(call())}
    except x.Fault as f:
        return {"fault": f.faultCode, "message": f.faultString}

def content(value):
    if isinstance(value, x.Binary):
        return {"type": "Binary", "hex": value.data.hex()}
    return {"type": type(value).__name__, "value": value}

out = {}
out["hello"] = node.hello(peer)
out["list"] = sorted(node.list())
out["text"] = content(node.query("hello.txt", []))
out["text_default_history"] = content(node.query("hello.txt"))
out["binary"] = content(node.query("blob.bin", []))
out["outside"] = fault(lambda: node.query("../etc/passwd", []))
out["missing"] = fault(lambda: node.query("missing", []))
out["wrong_secret"] = fault(lambda: node.fetch("x", "wrong"))
out["methods"] = node.system.listMethods()
out["help"] = node.system.methodHelp("query")
out["unknown"] = fault(lambda: node.no_such_method(1, "two"))
out["list_after"] = sorted(node.list())
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_calls_a_shoal_node() {
    let node = TestNode::start().await;
    let other = TestNode::start().await;
    let blob = binary(20_000);
    node.add("hello.txt", TEXT.as_bytes()).await;
    node.add("blob.bin", &blob).await;

    let out = python_client(PYTHON_CLIENT, &[&node.url, &other.url]).await;

    assert_eq!(out["hello"], 0);
    let peers: Vec<String> = node.node.api().peers().into_iter().map(|p| p.url).collect();
    assert!(
        peers.contains(&other.url),
        "hello from Python taught the node {}: {peers:?}",
        other.url
    );
    assert_eq!(out["list"], serde_json::json!(["blob.bin", "hello.txt"]));
    assert_eq!(out["text"], serde_json::json!({"type": "str", "value": TEXT}));
    assert_eq!(out["text_default_history"], serde_json::json!({"type": "str", "value": TEXT}));
    assert_eq!(out["binary"]["type"], "Binary");
    assert!(
        out["binary"]["hex"] == hex(&blob),
        "the binary file arrives in Python byte for byte"
    );
    assert_eq!(out["outside"]["fault"], ACCESS_DENIED, "{}", out["outside"]);
    assert_eq!(out["missing"]["fault"], NOT_FOUND, "{}", out["missing"]);
    assert_eq!(out["wrong_secret"]["fault"], ACCESS_DENIED, "{}", out["wrong_secret"]);
    let methods: Vec<&str> = out["methods"].as_array().expect("a list").iter().filter_map(Json::as_str).collect();
    for method in ["query", "hello", "fetch", "list"] {
        assert!(methods.contains(&method), "system.listMethods lacks {method}: {methods:?}");
    }
    assert!(
        !out["help"].as_str().expect("a string").trim().is_empty(),
        "system.methodHelp('query') is empty"
    );
    assert!(
        out["unknown"]["fault"].is_i64(),
        "an unknown method gives a fault: {}",
        out["unknown"]
    );
    assert_eq!(out["list_after"], out["list"], "the node still answers after an unknown method");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoal_finds_and_fetches_a_file_only_a_seed_node_has() {
    let a = TestNode::start().await;
    let b = TestNode::start().await;
    let p = SeedNode::start(&[]).await;
    let blob = binary(100_000);
    p.write("seed-only.txt", TEXT.as_bytes());
    p.write("seed-only.bin", &blob);
    a.knows(&[&b]).await;
    assert_eq!(b.call("hello", vec![s(&p.url)]).await, Ok(Value::Integer(0)));

    // A -> B (shoal.locate) -> P (shoal.locate refused, then the seed's query).
    assert_eq!(a.call("query", vec![s("seed-only.txt"), strings(&[])]).await, Ok(s(TEXT)));
    let kinds: Vec<(String, PeerKind)> = b.node.api().peers().into_iter().map(|p| (p.url, p.kind)).collect();
    assert!(
        kinds.contains(&(p.url.clone(), PeerKind::Seed)),
        "B takes P for a seed node: {kinds:?}"
    );

    assert_eq!(a.call("fetch", vec![s("seed-only.bin"), s(SECRET)]).await, Ok(Value::Integer(0)));
    assert!(
        file_hex(&a.path("seed-only.bin")) == hex(&blob),
        "the fetched binary file is byte-identical"
    );
    assert_eq!(a.call("fetch", vec![s("seed-only.txt"), s(SECRET)]).await, Ok(Value::Integer(0)));
    assert_eq!(read(&a.path("seed-only.txt")), TEXT.as_bytes());
    // Fetched files are shared at once.
    assert_eq!(
        a.call("query", vec![s("seed-only.bin"), strings(&[])]).await,
        Ok(Value::Base64(blob))
    );
}

/// Python's client fetching through Python nodes.
const PYTHON_FETCH: &str = r#"
import json, sys
import xmlrpc.client as x

url, secret = sys.argv[1], sys.argv[2]
node = x.ServerProxy(url, allow_none=True)
out = {}
out["fetch_bin"] = node.fetch("shoal-only.bin", secret)
out["fetch_txt"] = node.fetch("shoal-only.txt", secret)
text = node.query("shoal-only.txt")
out["query_txt"] = {"type": type(text).__name__, "value": str(text)}
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_nodes_fetch_a_file_only_shoal_has() {
    let shoal = TestNode::start().await;
    let blob = binary(100_000);
    shoal.add("shoal-only.bin", &blob).await;
    shoal.add("shoal-only.txt", TEXT.as_bytes()).await;
    let q = SeedNode::start(&[&shoal.url]).await;
    let p = SeedNode::start(&[&q.url]).await;

    // P -> Q -> shoal, through the seed's query on every hop.
    let out = python_client(PYTHON_FETCH, &[&p.url, SEED_SECRET]).await;

    assert_eq!(out["fetch_bin"], 0);
    assert!(
        file_hex(&p.path("shoal-only.bin")) == hex(&blob),
        "P holds the binary file byte for byte"
    );
    assert_eq!(out["fetch_txt"], 0);
    assert_eq!(read(&p.path("shoal-only.txt")), TEXT.as_bytes());
    assert_eq!(out["query_txt"], serde_json::json!({"type": "str", "value": TEXT}));
    assert!(!q.path("shoal-only.bin").exists(), "Q only passed the file on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_node_in_a_cycle_does_not_hang_shoal() {
    // A search deadline longer than the test's bound, so that a hang shows as a hang.
    let shoal = TestNode::start_with(|options| options.search_deadline = Duration::from_secs(120)).await;
    let p = SeedNode::start(&[&shoal.url]).await;
    assert_eq!(shoal.call("hello", vec![s(&p.url)]).await, Ok(Value::Integer(0)));
    p.write("in-seed.txt", TEXT.as_bytes());

    let bound = Duration::from_secs(30);
    // shoal -> P -> shoal (history [shoal, P]) -> no one left.
    let missing = tokio::time::timeout(bound, shoal.call("query", vec![s("missing"), strings(&[])]))
        .await
        .expect("shoal answers a query in a cycle with a seed node");
    assert_eq!(fault_code(&missing), Some(NOT_FOUND), "{missing:?}");

    // P -> shoal -> (P is in the history) no one left; P is free again afterwards.
    let from_seed = tokio::time::timeout(bound, p.call("query", vec![s("missing"), strings(&[])]))
        .await
        .expect("the seed node answers a query in a cycle with shoal");
    assert_eq!(fault_code(&from_seed), Some(NOT_FOUND), "{from_seed:?}");

    // The cycle still finds what is in it.
    let found = tokio::time::timeout(bound, shoal.call("query", vec![s("in-seed.txt"), strings(&[])]))
        .await
        .expect("shoal answers in time");
    assert_eq!(found, Ok(s(TEXT)));
}
