//! Hostile input against a running node, over real HTTP: names that try to leave the share,
//! broken and malicious XML-RPC bodies, odd `Range` headers, clients that drip, stall or just
//! hold connections open, and peers that lie during a `fetch`.
//!
//! Every node here shares a directory that sits inside a temporary parent directory, next to a
//! secret file `outside.txt`. After each hostile request a test checks that the node still
//! answers `list`, that no answer carried the secret (or a hidden file of the share, or
//! `/etc/passwd`), and that nothing inside the parent directory changed. No test sleeps to
//! synchronise; every wait is bounded by a timeout.

#[path = "it/util.rs"]
mod util;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_node::NodeOptions;
use shoal_node::proto::faults::{ACCESS_DENIED, BAD_CALL, DOWNLOAD_FAILED, EXISTS, NOT_FOUND};
use shoal_xmlrpc::{Fault, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use util::{SECRET, TestNode, s, strings, try_list};

/// The longest any single step may take before the test fails instead of hanging.
const BOUND: Duration = Duration::from_secs(20);

/// The content of `outside.txt`, beside the share. No answer may ever contain it.
const OUTSIDE: &[u8] = b"OUTSIDE-SECRET-4c1d9e: this file is next to the share, not in it\n";
/// The content of `.hidden`, inside the share. Hidden files are never served.
const HIDDEN: &[u8] = b"HIDDEN-SECRET-77ab: a hidden file of the share\n";
/// Markers that must never appear in an answer.
const LEAKS: &[&[u8]] = &[b"OUTSIDE-SECRET-4c1d9e", b"HIDDEN-SECRET-77ab", b"root:x:0:0"];
/// The shared file the range tests read.
const A_TXT: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

/// Runs `work` or fails the test after [`BOUND`].
async fn bounded<T>(what: &str, work: impl Future<Output = T>) -> T {
    match tokio::time::timeout(BOUND, work).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no answer within {BOUND:?}"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_no_leak(context: &str, answer: &[u8]) {
    for marker in LEAKS {
        assert!(
            !contains(answer, marker),
            "{context}: the answer leaks {:?}",
            String::from_utf8_lossy(marker)
        );
    }
}

/// What a directory tree holds, without following symlinks: paths relative to its root.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        for item in std::fs::read_dir(dir).expect("read_dir") {
            let path = item.expect("dir entry").path();
            let relative = path.strip_prefix(root).expect("below the root").to_path_buf();
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            if meta.file_type().is_symlink() {
                out.insert(relative, Entry::Link(std::fs::read_link(&path).expect("readlink")));
            } else if meta.is_dir() {
                out.insert(relative, Entry::Dir);
                walk(root, &path, out);
            } else {
                out.insert(relative, Entry::File(std::fs::read(&path).expect("read")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A node whose share lies in a parent directory beside `outside.txt`, with a few files:
/// `a.txt`, `a/inner.txt`, the hidden `.hidden`, and `link.txt`, a symlink to `outside.txt`.
struct Fixture {
    node: TestNode,
    parent: tempfile::TempDir,
    before: BTreeMap<PathBuf, Entry>,
}

impl Fixture {
    async fn start() -> Fixture {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tune: impl FnOnce(&mut NodeOptions)) -> Fixture {
        let parent = tempfile::tempdir().expect("parent dir");
        std::fs::write(parent.path().join("outside.txt"), OUTSIDE).expect("write outside.txt");
        let share = tempfile::Builder::new()
            .prefix("share")
            .tempdir_in(parent.path())
            .expect("share dir");
        let state = tempfile::tempdir().expect("state dir");
        let node = TestNode::start_in(share, state, tune).await;
        node.write("a.txt", A_TXT);
        node.write("a/inner.txt", b"inner\n");
        node.write(".hidden", HIDDEN);
        std::os::unix::fs::symlink(parent.path().join("outside.txt"), node.path("link.txt")).expect("symlink");
        node.rescan().await;
        let before = snapshot(parent.path());
        Fixture { node, parent, before }
    }

    fn outside(&self) -> PathBuf {
        self.parent.path().join("outside.txt")
    }

    /// `host:port` of the node, for raw sockets.
    fn addr(&self) -> String {
        self.node.url.trim_start_matches("http://").trim_end_matches('/').to_string()
    }

    /// The node still answers a normal call, and nothing in or beside the share changed.
    async fn assert_intact(&self, context: &str) {
        let listed = bounded(context, self.node.call("list", vec![])).await;
        let Ok(Value::Array(items)) = listed else {
            panic!("{context}: list answered {listed:?}")
        };
        let mut names: Vec<String> = items
            .into_iter()
            .map(|v| if let Value::String(s) = v { s } else { panic!("{v:?}") })
            .collect();
        names.sort();
        assert_eq!(names, ["a.txt", "a/inner.txt"], "{context}: the share's listing changed");
        assert!(
            snapshot(self.parent.path()) == self.before,
            "{context}: files in or beside the share changed"
        );
    }

    /// An XML-RPC call that must fail; returns its fault after checking it leaks nothing.
    async fn fault(&self, method: &str, params: Vec<Value>) -> Fault {
        let context = format!("{method}({params:?})");
        match bounded(&context, self.node.call(method, params)).await {
            Ok(value) => panic!("{context}: answered {value:?}, expected a fault"),
            Err(fault) => {
                assert_no_leak(&context, fault.message.as_bytes());
                fault
            }
        }
    }
}

/// A response read off a raw socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn parse(bytes: &[u8]) -> Option<Raw> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some(Raw {
            status,
            head,
            body: bytes[end + 4..].to_vec(),
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
    }
}

/// Sends `request` exactly as given on a new connection and reads until the node closes it.
/// The request is written by its own task, so a node that answers before reading all of it
/// cannot deadlock the test. A reset counts as the end of the answer.
async fn raw_exchange(addr: &str, request: Vec<u8>) -> Vec<u8> {
    bounded("raw exchange", async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut reader, mut writer) = stream.into_split();
        let writing = tokio::spawn(async move {
            let _ = writer.write_all(&request).await;
            writer
        });
        let mut answer = Vec::new();
        let _ = reader.read_to_end(&mut answer).await;
        drop(writing.await);
        answer
    })
    .await
}

async fn raw_get(addr: &str, method: &str, target: &str, extra: &str) -> Raw {
    let request = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    let answer = raw_exchange(addr, request.into_bytes()).await;
    assert_no_leak(target, &answer);
    Raw::parse(&answer).unwrap_or_else(|| panic!("{method} {target}: not an HTTP answer: {:?}", String::from_utf8_lossy(&answer)))
}

async fn raw_post(addr: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    raw_exchange(addr, request).await
}

/// An HTTP status and body for a POST of `body` with a real client.
async fn post(url: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    bounded("POST", async {
        let response = reqwest::Client::new()
            .post(url)
            .header("content-type", "text/xml")
            .body(body)
            .send()
            .await
            .expect("the node answers");
        let status = response.status().as_u16();
        (status, response.bytes().await.expect("a body").to_vec())
    })
    .await
}

/// `curl --path-as-is`, so that dot segments reach the node as sent. Returns status and body.
async fn curl_as_is(url: String) -> (u16, Vec<u8>) {
    let output = bounded(
        "curl",
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args([
                    "--silent",
                    "--path-as-is",
                    "--max-time",
                    "10",
                    "--write-out",
                    "\n%{http_code}",
                    &url,
                ])
                .output()
                .expect("curl runs")
        }),
    )
    .await
    .expect("curl task");
    let stdout = output.stdout;
    let split = stdout.iter().rposition(|&b| b == b'\n').expect("curl wrote the status");
    let status = std::str::from_utf8(&stdout[split + 1..])
        .expect("status")
        .trim()
        .parse()
        .expect("a status");
    (status, stdout[..split].to_vec())
}

/// Asserts that a body sent to the XML-RPC endpoint was refused cleanly: fault 1 or a 4xx.
fn assert_bad_call(context: &str, status: u16, body: &[u8]) {
    assert_no_leak(context, body);
    match status {
        200 => match shoal_xmlrpc::decode_response(body) {
            Ok(Err(fault)) => {
                assert_eq!(fault.code, BAD_CALL, "{context}: {fault}");
                assert!(
                    !fault.message.contains("ECHO-MARKER"),
                    "{context}: the fault echoes the input: {}",
                    fault.message
                );
                assert!(
                    fault.message.len() < 1024,
                    "{context}: a {}-byte fault message",
                    fault.message.len()
                );
            }
            other => panic!("{context}: expected fault {BAD_CALL}, got {other:?}"),
        },
        400..=499 => {}
        _ => panic!("{context}: status {status}, expected a fault or a 4xx"),
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn content_id(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. Names over XML-RPC.

#[tokio::test]
async fn names_that_leave_the_share_are_refused_over_xmlrpc() {
    let f = Fixture::start().await;
    let outside = f.outside().to_str().expect("utf-8 path").to_string();
    let long = "a".repeat(5000);
    // The fault codes for query, fetch (with the right secret) and shoal.info.
    let denied = [ACCESS_DENIED; 3];
    // XML-RPC names are not percent-decoded: these are literal names that the share lacks.
    let literal = [NOT_FOUND; 3];
    let cases: &[(&str, [i32; 3])] = &[
        ("../outside.txt", denied),
        ("a/../../outside.txt", denied),
        ("a/inner.txt/../../../outside.txt", denied),
        ("/etc/passwd", denied),
        (&outside, denied),
        ("..\\outside.txt", denied),
        ("a\\b", denied),
        ("a.txt\0", denied),
        ("../outside.txt\0.txt", denied),
        ("", denied),
        (".", denied),
        ("..", denied),
        ("./a.txt", denied),
        ("a//inner.txt", denied),
        ("..%2foutside.txt", denied),
        (&long, denied),
        (".hidden", denied),
        ("C:outside.txt", denied),
        // The symlink is not indexed, so shoal.info does not know it (100); query and fetch
        // resolve it and find it leads out (200).
        ("link.txt", [ACCESS_DENIED, ACCESS_DENIED, NOT_FOUND]),
        ("%2e%2e/outside.txt", literal),
        ("%2e%2e%2foutside.txt", literal),
    ];
    for (name, [query, fetch, info]) in cases {
        let shown: String = name.chars().take(60).collect();
        let got = f.fault("query", vec![s(name), strings(&[])]).await;
        assert_eq!(got.code, *query, "query({shown:?}): {got}");
        f.assert_intact(&format!("query({shown:?})")).await;
        let got = f.fault("fetch", vec![s(name), s(SECRET)]).await;
        assert_eq!(got.code, *fetch, "fetch({shown:?}): {got}");
        f.assert_intact(&format!("fetch({shown:?})")).await;
        let got = f.fault("shoal.info", vec![s(name)]).await;
        assert_eq!(got.code, *info, "shoal.info({shown:?}): {got}");
        f.assert_intact(&format!("shoal.info({shown:?})")).await;
    }
    // Neither by content id: the outside file's id is unknown to the node.
    let got = f.fault("shoal.info", vec![s(&content_id(OUTSIDE))]).await;
    assert_eq!(got.code, NOT_FOUND, "shoal.info(id of outside.txt): {got}");
    f.assert_intact("shoal.info(id of outside.txt)").await;
}

#[tokio::test]
async fn a_name_outside_the_share_gets_one_answer_whether_it_exists_or_not() {
    let f = Fixture::start().await;
    let parent = f.parent.path().to_str().expect("utf-8 path").to_string();
    let pairs = [
        ("../outside.txt".to_string(), "../nothing.txt".to_string()),
        ("a/../../outside.txt".to_string(), "a/../../nothing.txt".to_string()),
        (format!("{parent}/outside.txt"), format!("{parent}/nothing.txt")),
    ];
    for (exists, missing) in &pairs {
        for (method, extra) in [("query", strings(&[])), ("fetch", s(SECRET))] {
            let a = bounded(method, f.node.call(method, vec![s(exists), extra.clone()])).await;
            let b = bounded(method, f.node.call(method, vec![s(missing), extra.clone()])).await;
            assert_eq!(a, b, "{method}: {exists:?} and {missing:?} are told apart");
            assert_eq!(a.as_ref().map_err(|f| f.code), Err(ACCESS_DENIED), "{method}({exists:?})");
        }
        let a = bounded("info", f.node.call("shoal.info", vec![s(exists)])).await;
        let b = bounded("info", f.node.call("shoal.info", vec![s(missing)])).await;
        assert_eq!(a, b, "shoal.info: {exists:?} and {missing:?} are told apart");
        // The same over HTTP.
        let target = |name: &str| format!("/files/{}", name.trim_start_matches('/'));
        let a = raw_get(&f.addr(), "GET", &target(exists), "").await;
        let b = raw_get(&f.addr(), "GET", &target(missing), "").await;
        assert_eq!(
            (a.status, &a.body),
            (b.status, &b.body),
            "GET: {exists:?} and {missing:?} are told apart"
        );
        f.assert_intact(exists).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. and 3. Names and ids over HTTP.

#[tokio::test]
async fn paths_that_leave_the_share_are_refused_over_http() {
    let f = Fixture::start().await;
    let outside = percent_encode(f.outside().to_str().expect("utf-8 path"));
    let long = format!("/files/{}", "a".repeat(5000));
    let outboard = format!("/outboard/{}", content_id(OUTSIDE));
    let by_outside_id = format!("/content/{}", content_id(OUTSIDE));
    let abs = format!("/files/{outside}");
    // Request targets sent byte for byte, and the status each must get.
    let cases: &[(&str, u16)] = &[
        ("/files/../outside.txt", 403),
        ("/files/a/../../outside.txt", 403),
        ("/files/./a.txt", 403),
        ("/files/%2e%2e/outside.txt", 403),
        ("/files/%2e%2e%2foutside.txt", 403),
        ("/files/..%2foutside.txt", 403),
        ("/files/%2E%2E%2Foutside.txt", 403),
        // Decoded once only: `%2e%2e%2f` is then a literal name the share lacks.
        ("/files/%252e%252e%252foutside.txt", 404),
        ("/files/..%5coutside.txt", 403),
        ("/files/a%5cb", 403),
        ("/files/a.txt%00", 403),
        ("/files/%00", 403),
        ("/files/../outside.txt%00.txt", 403),
        ("/files/.hidden", 403),
        ("/files/%2ehidden", 403),
        ("/files/%2fetc%2fpasswd", 403),
        ("/files//etc/passwd", 403),
        (&abs, 403),
        (&long, 403),
        // The symlink to outside.txt is not indexed, and would not be served if it were.
        ("/files/link.txt", 404),
        (&by_outside_id, 404),
        (&outboard, 404),
    ];
    for (target, expected) in cases {
        let shown: String = target.chars().take(80).collect();
        let got = raw_get(&f.addr(), "GET", target, "").await;
        assert_eq!(got.status, *expected, "GET {shown}: {got:?}");
        f.assert_intact(&shown).await;
    }
    // curl with --path-as-is: 403 (not the router's 404) proves the dot segments arrived.
    for target in [
        "/files/../outside.txt",
        "/files/a/../../outside.txt",
        "/files/a/./../../outside.txt",
    ] {
        let (status, body) = curl_as_is(format!("{}{}", f.node.url.trim_end_matches('/'), target)).await;
        assert_no_leak(target, &body);
        assert_eq!(status, 403, "curl --path-as-is {target}");
        f.assert_intact(target).await;
    }
    // A name with invalid UTF-8 after decoding is refused too, with a 4xx.
    let got = raw_get(&f.addr(), "GET", "/files/%ff%fe", "").await;
    assert!((400..500).contains(&got.status), "GET /files/%ff%fe: {got:?}");
    f.assert_intact("/files/%ff%fe").await;
}

#[tokio::test]
async fn content_ids_that_are_not_known_get_404() {
    let f = Fixture::start().await;
    let known = content_id(A_TXT);
    let unknown = content_id(b"nobody has this");
    let cases = [
        "not-hex".to_string(),
        "zz".repeat(32),
        known[..63].to_string(),
        format!("{known}0"),
        unknown.clone(),
        format!("../{known}"),
        "%2e%2e%2fa.txt".to_string(),
    ];
    for id in &cases {
        for path in ["content", "outboard"] {
            let target = format!("/{path}/{id}");
            let got = raw_get(&f.addr(), "GET", &target, "").await;
            assert_eq!(got.status, 404, "GET {target}: {got:?}");
            f.assert_intact(&target).await;
        }
    }
    // The control: the known id is served.
    let got = raw_get(&f.addr(), "GET", &format!("/content/{known}"), "").await;
    assert_eq!((got.status, got.body.as_slice()), (200, A_TXT));
}

// ---------------------------------------------------------------------------------------------
// 4. XML-RPC bodies.

fn nested(depth: usize) -> Vec<u8> {
    let mut xml = String::from("<?xml version=\"1.0\"?><methodCall><methodName>query</methodName><params><param>");
    xml.push_str(&"<value><array><data>".repeat(depth / 3));
    xml.push_str("<value><string>a.txt</string></value>");
    xml.push_str(&"</data></array></value>".repeat(depth / 3));
    xml.push_str("</param></params></methodCall>");
    xml.into_bytes()
}

fn billion_laughs() -> Vec<u8> {
    let mut dtd = String::from("<!ENTITY lol0 \"ECHO-MARKER lol\">");
    for i in 1..=9 {
        dtd.push_str(&format!("<!ENTITY lol{i} \"{}\">", format!("&lol{};", i - 1).repeat(10)));
    }
    format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [{dtd}]><methodCall><methodName>query</methodName><params>\
         <param><value><string>&lol9;</string></value></param></params></methodCall>"
    )
    .into_bytes()
}

fn external_entity(target: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY x SYSTEM \"{target}\">]><methodCall><methodName>system.methodHelp</methodName>\
         <params><param><value><string>&x;</string></value></param></params></methodCall>"
    )
    .into_bytes()
}

#[tokio::test]
async fn broken_and_malicious_xmlrpc_bodies_get_fault_1() {
    let f = Fixture::start().await;
    let call = |method: &str, params: &[Value]| shoal_xmlrpc::encode_call(method, params).into_bytes();
    let outside_url = format!("file://{}", f.outside().display());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not XML", b"ECHO-MARKER: hello, node".to_vec()),
        ("mismatched tags", b"<?xml version=\"1.0\"?><methodCall><methodName>ECHO-MARKER</methodName><params></methodCall>".to_vec()),
        ("truncated", b"<?xml version=\"1.0\"?><methodCall><methodName>list</methodName><params><param><value><string>ECHO-MARKER".to_vec()),
        ("no method name", b"<?xml version=\"1.0\"?><methodCall><params/></methodCall>".to_vec()),
        ("a response, not a call", shoal_xmlrpc::encode_response(s("ECHO-MARKER")).into_bytes()),
        ("billion laughs", billion_laughs()),
        ("external entity /etc/passwd", external_entity("file:///etc/passwd")),
        ("external entity outside.txt", external_entity(&outside_url)),
        ("10,000-deep nesting", nested(10_000)),
        ("60,000-deep nesting, just under 1 MiB", nested(60_000)),
        ("non-UTF-8", b"<?xml version=\"1.0\"?><methodCall><methodName>li\xff\xfest</methodName></methodCall>".to_vec()),
        ("an empty body", Vec::new()),
        ("a NUL character reference", b"<?xml version=\"1.0\"?><methodCall><methodName>list&#0;</methodName></methodCall>".to_vec()),
        ("an i4 too large", b"<?xml version=\"1.0\"?><methodCall><methodName>shoal.locate</methodName><params><param><value><string>a.txt</string></value></param><param><value><array><data/></array></value></param><param><value><string>q</string></value></param><param><value><i4>99999999999</i4></value></param></params></methodCall>".to_vec()),
        ("query(42, [])", call("query", &[Value::Integer(42), strings(&[])])),
        ("query(a.txt, 42)", call("query", &[s("a.txt"), Value::Integer(42)])),
        ("query(a.txt, [42])", call("query", &[s("a.txt"), Value::Array(vec![Value::Integer(42)])])),
        ("query(a.txt, 65 urls)", call("query", &[s("a.txt"), Value::Array(vec![s("http://127.0.0.1:9/"); 65])])),
        ("query()", call("query", &[])),
        ("hello()", call("hello", &[])),
        ("hello(a, b)", call("hello", &[s("http://127.0.0.1:9/"), s("b")])),
        ("hello(not a url)", call("hello", &[s("ECHO-MARKER is not a URL")])),
        ("fetch(name)", call("fetch", &[s("a.txt")])),
        ("list(1)", call("list", &[Value::Integer(1)])),
        ("an unknown method", call("no.such.method", &[])),
        ("a 10,000-byte method name", call(&"m".repeat(10_000), &[])),
    ];
    for (what, body) in &cases {
        for path in ["", "RPC2"] {
            let context = format!("{what} to /{path}");
            let (status, answer) = post(&format!("{}/{path}", f.node.url.trim_end_matches('/')), body.clone()).await;
            // hello(not a url) echoes the URL it refused; everything else must not echo.
            if *what == "hello(not a url)" {
                let fault = shoal_xmlrpc::decode_response(&answer).expect("XML-RPC").expect_err("a fault");
                assert_eq!((status, fault.code), (200, BAD_CALL), "{context}: {fault}");
            } else {
                assert_bad_call(&context, status, &answer);
            }
            f.assert_intact(&context).await;
        }
    }
    // Not XML-RPC at all: the wrong method on the endpoint (`GET /` is the web UI's page).
    for (method, target) in [("GET", "/RPC2"), ("PUT", "/"), ("DELETE", "/RPC2"), ("PATCH", "/")] {
        let got = raw_get(&f.addr(), method, target, "").await;
        assert!((400..500).contains(&got.status), "{method} {target}: {got:?}");
        f.assert_intact(&format!("{method} {target}")).await;
    }
}

/// A `list()` call padded with whitespace to exactly `len` bytes.
fn padded_list(len: usize) -> Vec<u8> {
    let (head, tail) = ("<?xml version=\"1.0\"?><methodCall>", "<methodName>list</methodName></methodCall>");
    let mut body = head.as_bytes().to_vec();
    body.resize(len - tail.len(), b' ');
    body.extend_from_slice(tail.as_bytes());
    body
}

/// Checks a raw answer to an over-limit body: fault 1 or a 4xx, or the node closed the
/// connection without answering. Never the call's result.
fn assert_refused_raw(context: &str, answer: &[u8]) {
    if answer.is_empty() {
        return;
    }
    let raw = Raw::parse(answer).unwrap_or_else(|| panic!("{context}: not HTTP: {:?}", String::from_utf8_lossy(answer)));
    assert_bad_call(context, raw.status, &raw.body);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    // The default 1 MiB limit.
    let f = Fixture::start().await;
    let limit = 1 << 20;
    let under = raw_post(&f.addr(), "/", &padded_list(limit)).await;
    let under = Raw::parse(&under).expect("an answer");
    assert!(
        matches!(shoal_xmlrpc::decode_response(&under.body), Ok(Ok(Value::Array(_)))),
        "a body at the limit is served: {under:?}"
    );
    for over in [limit + 1, limit + 64 * 1024, 8 * limit] {
        let answer = raw_post(&f.addr(), "/", &padded_list(over)).await;
        assert_refused_raw(&format!("{over}-byte body"), &answer);
        f.assert_intact(&format!("{over}-byte body")).await;
    }
    // A real client, and a body that claims to be small but is not.
    let (status, answer) = post(&f.node.url, padded_list(limit + 1)).await;
    assert_bad_call("a real client over the limit", status, &answer);
    f.assert_intact("a real client over the limit").await;

    // A node with a small limit, through both paths.
    let small = Fixture::start_with(|o| o.max_rpc_body = 4096).await;
    let (status, answer) = post(&small.node.url, padded_list(4096)).await;
    assert_eq!(status, 200);
    assert!(
        matches!(shoal_xmlrpc::decode_response(&answer), Ok(Ok(Value::Array(_)))),
        "4096 bytes at a 4096 limit are served"
    );
    for path in ["", "RPC2"] {
        let (status, answer) = post(&format!("{}/{path}", small.node.url.trim_end_matches('/')), padded_list(4097)).await;
        assert_bad_call(&format!("4097 bytes to /{path}"), status, &answer);
        small.assert_intact("4097 bytes").await;
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Range.

/// Range, If-Range, then the status, body and Content-Range expected.
type RangeCase<'a> = (&'a str, Option<&'a str>, u16, &'a [u8], Option<String>);

#[tokio::test]
async fn odd_ranges_are_answered_by_the_rules() {
    let f = Fixture::start().await;
    let id = content_id(A_TXT);
    let etag = format!("\"{id}\"");
    let size = A_TXT.len();
    let client = reqwest::Client::new();
    // (Range, If-Range, status, body, Content-Range)
    let cases: &[RangeCase] = &[
        ("bytes=abc", None, 200, A_TXT, None),
        ("bytes=5-2", None, 200, A_TXT, None),
        ("bytes=0-1,4-5", None, 200, A_TXT, None),
        ("bytes=-", None, 200, A_TXT, None),
        ("items=0-3", None, 200, A_TXT, None),
        ("bytes=99999999999999999999999-", None, 200, A_TXT, None),
        ("bytes=0-99999999999999999999999", None, 200, A_TXT, None),
        ("bytes=999999-", None, 416, b"", Some(format!("bytes */{size}"))),
        ("bytes=26-30", None, 416, b"", Some(format!("bytes */{size}"))),
        ("bytes=-3", None, 206, b"xyz", Some(format!("bytes 23-25/{size}"))),
        ("bytes=2-4", None, 206, b"cde", Some(format!("bytes 2-4/{size}"))),
        ("bytes=20-999", None, 206, b"uvwxyz", Some(format!("bytes 20-25/{size}"))),
        ("bytes=2-4", Some(&etag), 206, b"cde", Some(format!("bytes 2-4/{size}"))),
        (
            "bytes=2-4",
            Some("\"0000000000000000000000000000000000000000000000000000000000000000\""),
            200,
            A_TXT,
            None,
        ),
        ("bytes=2-4", Some("Wed, 21 Oct 2015 07:28:00 GMT"), 200, A_TXT, None),
    ];
    for path in [format!("/content/{id}"), "/files/a.txt".to_string()] {
        let url = format!("{}{}", f.node.url.trim_end_matches('/'), path);
        for (range, if_range, status, body, content_range) in cases {
            let context = format!("GET {path} Range: {range} If-Range: {if_range:?}");
            let mut request = client.get(&url).header("range", *range);
            if let Some(tag) = if_range {
                request = request.header("if-range", *tag);
            }
            let response = bounded(&context, request.send()).await.expect("an answer");
            assert_eq!(response.status().as_u16(), *status, "{context}");
            let got_range = response
                .headers()
                .get("content-range")
                .map(|v| v.to_str().expect("ascii").to_string());
            assert_eq!(&got_range, content_range, "{context}: Content-Range");
            let got = bounded(&context, response.bytes()).await.expect("a body");
            assert_eq!(got.as_ref(), *body, "{context}: body");
        }
        // HEAD: the headers of a GET and not a byte of body (read off the socket).
        let head = raw_get(&f.addr(), "HEAD", &path, "").await;
        assert_eq!(head.status, 200, "HEAD {path}: {head:?}");
        assert_eq!(head.header("content-length"), Some(size.to_string().as_str()), "HEAD {path}");
        assert_eq!(head.header("etag"), Some(etag.as_str()), "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path} sent a body: {:?}", head.body);
        f.assert_intact(&path).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 6. and 7. Clients that drip, stall, or only hold connections.

/// Reads until the node closes the connection; what it sent before closing.
async fn until_closed(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    bounded(what, async {
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got).await;
        got
    })
    .await
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_closed() {
    let f = Fixture::start_with(|o| o.request_timeout = Duration::from_secs(1)).await;
    let mut slow = TcpStream::connect(f.addr()).await.expect("connect");
    slow.write_all(b"GET /files/a.txt HTTP/1.1\r\nHost: x\r\nX-Wait: for")
        .await
        .expect("write");
    // Others are served while it waits.
    f.assert_intact("while a client stalls in its headers").await;
    let got = until_closed(&mut slow, "a stalled header").await;
    assert!(
        !got.starts_with(b"HTTP/1.1 2"),
        "a stalled header was answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    f.assert_intact("after a client stalled in its headers").await;
}

#[tokio::test]
async fn a_client_that_drips_its_headers_is_closed() {
    let f = Fixture::start_with(|o| o.request_timeout = Duration::from_secs(1)).await;
    let mut drip = TcpStream::connect(f.addr()).await.expect("connect");
    drip.write_all(b"GET /files/a.txt HTTP/1.1\r\nHost: x\r\nX-Drip: ")
        .await
        .expect("write");
    f.assert_intact("while a client drips").await;
    // One byte every 50 ms, for ever: each byte arrives in time, the whole never does.
    let (mut reader, mut writer) = drip.split();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut got = Vec::new();
    let mut sent = 0usize;
    bounded("a dripping client", async {
        loop {
            let mut buf = [0u8; 1024];
            tokio::select! {
                read = reader.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                },
                _ = tick.tick() => {
                    if writer.write_all(b"a").await.is_err() {
                        break;
                    }
                    sent += 1;
                }
            }
        }
    })
    .await;
    assert!(!got.starts_with(b"HTTP/1.1 2"), "a dripping client was answered after {sent} bytes");
    f.assert_intact("after a client dripped").await;
}

#[tokio::test]
async fn a_client_that_stalls_in_its_body_is_closed_or_refused() {
    let f = Fixture::start_with(|o| o.request_timeout = Duration::from_secs(1)).await;
    for path in ["/", "/RPC2"] {
        let mut slow = TcpStream::connect(f.addr()).await.expect("connect");
        let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 1000\r\n\r\n");
        slow.write_all(head.as_bytes()).await.expect("write");
        slow.write_all(b"<?xml vers").await.expect("write");
        f.assert_intact("while a client stalls in its body").await;
        let got = until_closed(&mut slow, "a stalled body").await;
        assert_refused_raw("a stalled body", &got);
        f.assert_intact("after a client stalled in its body").await;
    }
}

#[tokio::test]
async fn many_idle_connections_do_not_stop_the_node() {
    let f = Fixture::start().await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(bounded("connect", TcpStream::connect(f.addr())).await.expect("connect"));
    }
    f.assert_intact("with 300 idle connections").await;
    let got = raw_get(&f.addr(), "GET", "/files/a.txt", "").await;
    assert_eq!((got.status, got.body.as_slice()), (200, A_TXT), "a file with 300 idle connections");
    drop(idle);
    f.assert_intact("after 300 idle connections closed").await;
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once_and_the_node_recovers() {
    let f = Fixture::start_with(|o| o.max_connections = 8).await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(f.addr()).await.expect("connect"));
    }
    // The node accepts in order, so the ninth connection is the one over the limit.
    let mut ninth = TcpStream::connect(f.addr()).await.expect("connect");
    ninth.write_all(b"GET /files/a.txt HTTP/1.1\r\nHost: x\r\n\r\n").await.ok();
    let got = until_closed(&mut ninth, "a connection over the limit").await;
    assert!(
        got.is_empty(),
        "a connection over the limit was answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    drop(idle);
    // The slots come back once the node has seen the idle connections close.
    bounded("the node serves again after idle connections closed", async {
        let mut retry = tokio::time::interval(Duration::from_millis(20));
        loop {
            retry.tick().await;
            if try_list(&f.node.url).await.is_some() {
                break;
            }
        }
    })
    .await;
    f.assert_intact("after the connection limit").await;
}

// ---------------------------------------------------------------------------------------------
// 8. Fetch safety.

#[tokio::test]
async fn fetch_with_a_wrong_secret_or_onto_an_existing_name_writes_nothing() {
    let f = Fixture::start().await;
    let peer = TestNode::start().await;
    peer.add("new.txt", b"the peer's new file\n").await;
    peer.add("a.txt", b"the peer's different a.txt\n").await;
    f.node.knows(&[&peer]).await;
    let before = snapshot(f.parent.path());
    for secret in [
        "wrong",
        "",
        &format!("{SECRET}x"),
        &SECRET[..SECRET.len() - 1],
        &SECRET.to_uppercase(),
    ] {
        let got = f.fault("fetch", vec![s("new.txt"), s(secret)]).await;
        assert_eq!(got.code, ACCESS_DENIED, "fetch with secret {secret:?}: {got}");
        assert!(snapshot(f.parent.path()) == before, "fetch with secret {secret:?} wrote something");
    }
    let got = f.fault("fetch", vec![s("a.txt"), s(SECRET)]).await;
    assert_eq!(got.code, EXISTS, "fetch onto a.txt: {got}");
    assert_eq!(util::read(&f.node.path("a.txt")), A_TXT, "fetch changed a.txt");
    assert!(snapshot(f.parent.path()) == before, "fetch onto an existing name wrote something");
    // The control: with the right secret, the same fetch writes the file.
    assert_eq!(
        bounded("fetch", f.node.call("fetch", vec![s("new.txt"), s(SECRET)])).await,
        Ok(Value::Integer(0))
    );
    assert_eq!(util::read(&f.node.path("new.txt")), b"the peer's new file\n");
}

fn part_files(root: &Path) -> Vec<PathBuf> {
    snapshot(root)
        .into_keys()
        .filter(|p| p.to_string_lossy().contains("shoal-part"))
        .collect()
}

/// How a [`lying_peer`] lies about the file it claims to have.
#[derive(Clone, Copy, Debug)]
enum Lie {
    /// Serves other bytes of the claimed length.
    Corrupt,
    /// Serves a few bytes and drops the connection.
    Truncated,
}

/// A peer that answers every `shoal.locate` with a hit on itself, then lies in `/content/`.
async fn lying_peer(lie: Lie) -> String {
    use axum::body::{Body, Bytes};
    use axum::routing::{get, post};
    let claimed: &'static [u8] = b"the bytes this peer claims to have, and does not serve";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("address"));
    let me = url.clone();
    let app = axum::Router::new()
        .route(
            "/",
            post(move |body: Bytes| async move {
                let call = shoal_xmlrpc::decode_call(&body).expect("a call");
                let answer = match (call.method.as_str(), call.params.first()) {
                    ("shoal.locate", Some(Value::String(name))) => {
                        let mut hit = BTreeMap::new();
                        hit.insert("url".to_string(), s(&me));
                        hit.insert("name".to_string(), s(name));
                        hit.insert("size".to_string(), Value::Integer(claimed.len() as i32));
                        hit.insert("id".to_string(), s(&content_id(claimed)));
                        shoal_xmlrpc::encode_response(Value::Struct(hit))
                    }
                    _ => shoal_xmlrpc::encode_fault(&Fault::new(NOT_FOUND, "no")),
                };
                ([("content-type", "text/xml")], answer)
            }),
        )
        .route(
            "/content/{id}",
            get(move || async move {
                let body = match lie {
                    Lie::Corrupt => Body::from(vec![b'x'; claimed.len()]),
                    Lie::Truncated => Body::from_stream(futures_util::stream::iter(vec![
                        Ok(Bytes::from_static(&claimed[..8])),
                        Err(std::io::Error::other("the peer hangs up")),
                    ])),
                };
                ([("content-length", claimed.len().to_string())], body)
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_failed_fetch_leaves_no_partial_file() {
    // Found nowhere.
    let f = Fixture::start().await;
    for name in ["nowhere.bin", "deep/er/nowhere.bin"] {
        let got = f.fault("fetch", vec![s(name), s(SECRET)]).await;
        assert_eq!(got.code, NOT_FOUND, "fetch({name}): {got}");
        assert!(
            part_files(f.parent.path()).is_empty(),
            "fetch({name}) left {:?}",
            part_files(f.parent.path())
        );
        f.assert_intact(name).await;
    }
    // Found at a peer that lies: the download starts, fails its check, and is cleaned away.
    for lie in [Lie::Corrupt, Lie::Truncated] {
        let f = Fixture::start().await;
        let liar = lying_peer(lie).await;
        assert_eq!(bounded("hello", f.node.call("hello", vec![s(&liar)])).await, Ok(Value::Integer(0)));
        let got = f.fault("fetch", vec![s("new.bin"), s(SECRET)]).await;
        assert_eq!(got.code, DOWNLOAD_FAILED, "fetch from a {lie:?} peer: {got}");
        assert!(
            part_files(f.parent.path()).is_empty(),
            "a {lie:?} peer left {:?}",
            part_files(f.parent.path())
        );
        assert!(!f.node.path("new.bin").exists(), "a {lie:?} peer's bytes were placed");
        f.assert_intact(&format!("{lie:?} peer")).await;
    }
}

// Unicode look-alikes of `.` and `/` are ordinary characters in a file name: they never
// traverse, they find nothing outside the share, and a real file so named is served.
#[tokio::test]
async fn unicode_look_alikes_do_not_traverse() {
    let f = Fixture::start().await;
    let look_alikes = [
        "\u{FF0E}\u{FF0E}/outside.txt", // fullwidth full stops
        "..\u{2215}outside.txt",        // division slash
        "..\u{2044}outside.txt",        // fraction slash
        "\u{2024}\u{2024}/outside.txt", // one dot leaders
        "..\u{FF0F}outside.txt",        // fullwidth solidus
        "\u{FE52}\u{FE52}/outside.txt", // small full stops
    ];
    for name in look_alikes {
        let fault = f.fault("query", vec![Value::String(name.to_string()), Value::Array(vec![])]).await;
        // A missing name (100), or refused as hidden when it starts with a real dot (200).
        assert!(fault.code == NOT_FOUND || fault.code == ACCESS_DENIED, "query({name:?}): {fault:?}");
        let got = raw_get(&f.addr(), "GET", &format!("/files/{}", percent_encode(name)), "").await;
        assert!(got.status == 404 || got.status == 403, "GET /files/{name:?}: {got:?}");
        f.assert_intact(name).await;
    }
    // A file whose name really has look-alikes in it is an ordinary file of the share.
    let name = "\u{FF0E}\u{FF0E}\u{2215}notes.txt";
    f.node.write(name, b"look-alike name");
    let got = bounded(
        name,
        f.node.call("query", vec![Value::String(name.to_string()), Value::Array(vec![])]),
    )
    .await;
    assert_eq!(got, Ok(Value::String("look-alike name".into())));
}

// Two Range headers in one request: the node answers by the rules for one of them, or sends
// the whole file, never an error or a mix.
#[tokio::test]
async fn two_range_headers_get_a_consistent_answer() {
    let f = Fixture::start().await;
    let got = raw_get(&f.addr(), "GET", "/files/a.txt", "Range: bytes=0-1\r\nRange: bytes=5-6\r\n").await;
    match got.status {
        206 => {
            let range = got.header("content-range").expect("a Content-Range").to_string();
            let expected: &[u8] = if range.starts_with("bytes 0-1/") {
                &A_TXT[0..2]
            } else {
                &A_TXT[5..7]
            };
            assert_eq!(got.body, expected, "the body matches {range}");
        }
        200 => assert_eq!(got.body, A_TXT),
        other => panic!("two Range headers: status {other}: {got:?}"),
    }
    f.assert_intact("two Range headers").await;
}
