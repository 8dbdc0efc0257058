//! The node's protections against callers that are not its owner, one test per protection,
//! over real HTTP on loopback: browsers sending on another site's behalf (content type,
//! `Origin`, DNS rebinding), what strangers see of the downloads, where a download may write,
//! guessing the secret, search floods, peer-table floods, clients that never read, a share that
//! changes between rescans, and a directory swapped for a symlink while it is read.
//!
//! Callers with different addresses are clients bound to other loopback addresses (127.0.0.2,
//! 127.0.0.3, ...), which Linux routes to 127.0.0.1 like any other. No test sleeps to
//! synchronise; every wait is a bounded poll.

#[path = "it/util.rs"]
mod util;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use shoal_node::proto::faults::{ACCESS_DENIED, BUSY, OUTPUT_REFUSED};
use shoal_xmlrpc::{Fault, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use util::{SECRET, TestNode, s, strings, try_list};

/// The longest any single step may take before the test fails instead of hanging.
const BOUND: Duration = Duration::from_secs(30);

/// Runs `work` or fails the test after [`BOUND`].
async fn bounded<T>(what: &str, work: impl Future<Output = T>) -> T {
    match tokio::time::timeout(BOUND, work).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no answer within {BOUND:?}"),
    }
}

/// Polls `check` every 50 ms until it gives `Some`, for at most `limit`.
async fn poll<T, F: Future<Output = Option<T>>>(what: &str, limit: Duration, mut check: impl FnMut() -> F) -> T {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let polling = async {
        loop {
            tick.tick().await;
            if let Some(value) = check().await {
                return value;
            }
        }
    };
    match tokio::time::timeout(limit, polling).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: not within {limit:?}"),
    }
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// A client whose connections come from `from` (another caller, as the node sees it).
fn client_from(from: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from)
        .timeout(BOUND)
        .build()
        .expect("a client")
}

/// An XML-RPC call from `client`.
async fn call_with(client: &reqwest::Client, url: &str, method: &str, params: Vec<Value>) -> Result<Value, Fault> {
    let body = shoal_xmlrpc::encode_call(method, &params);
    let response = bounded(method, client.post(url).header("content-type", "text/xml").body(body).send())
        .await
        .expect("the node answers");
    let bytes = response.bytes().await.expect("a body");
    shoal_xmlrpc::decode_response(&bytes).expect("a valid XML-RPC response")
}

/// A POST of `body` with extra headers; the status and the body.
async fn post_raw(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Vec<u8>) {
    let mut request = reqwest::Client::new().post(url).body(body).timeout(BOUND);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = bounded("POST", request.send()).await.expect("the node answers");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("a body").to_vec())
}

/// `host:port` of a node, for raw sockets.
fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://").trim_end_matches('/').to_string()
}

/// Sends `request` on a new connection and reads until the node closes it.
async fn raw_exchange(addr: &str, request: Vec<u8>) -> Vec<u8> {
    bounded("raw exchange", async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(&request).await.expect("write");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        answer
    })
    .await
}

/// The status of a raw answer.
fn status_of(answer: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The fields of a struct value.
fn fields(value: &Value) -> &BTreeMap<String, Value> {
    match value {
        Value::Struct(fields) => fields,
        other => panic!("not a struct: {other:?}"),
    }
}

fn text(value: &Value) -> &str {
    match value {
        Value::String(s) => s,
        other => panic!("not a string: {other:?}"),
    }
}

/// The URLs in a node's peer table.
async fn peer_urls(url: &str) -> Vec<String> {
    match util::call(url, "shoal.peer_table", vec![]).await {
        Ok(Value::Array(rows)) => rows.iter().map(|r| text(&fields(r)["url"]).to_string()).collect(),
        other => panic!("shoal.peer_table answered {other:?}"),
    }
}

/// `host:port` of a URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_string()
}

fn knows(table: &[String], url: &str) -> bool {
    table.iter().any(|known| host_port(known) == host_port(url))
}

/// An HTTP mirror on loopback that says it has a 1 MiB file, answers a ranged GET with its
/// headers and then sends nothing (the download stays running, its source listed). It answers
/// every path, so any URL with its address works.
async fn stalling_mirror() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_stalling(stream));
        }
    });
    port
}

async fn serve_stalling(mut stream: TcpStream) {
    const SIZE: u64 = 1 << 20;
    let mut buffer = Vec::new();
    loop {
        let end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end + 4);
        if head.starts_with("HEAD ") {
            let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\nAccept-Ranges: bytes\r\n\r\n");
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        let answer = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {SIZE}\r\nContent-Range: bytes 0-{}/{SIZE}\r\n\r\n",
            SIZE - 1
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        // Holds the connection without sending the body, until the client gives up.
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        return;
    }
}

/// A server that answers every request with an empty XML-RPC array: a node as far as a probe
/// can tell (`system.listMethods`, `shoal.peers`, `hello` all get an answer).
async fn answering_fake() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let body_start = loop {
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&chunk[..n]),
                    }
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
                while got.len() < body_start + length {
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = shoal_xmlrpc::encode_response(Value::Array(vec![]));
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    url
}

// ---------------------------------------------------------------------------------------------
// 1. Browsers: the content type and Origin (CSRF).

#[tokio::test]
async fn a_browser_cannot_make_the_node_act_csrf() {
    let node = TestNode::start().await;
    let peer = TestNode::start().await;
    let hello = shoal_xmlrpc::encode_call("hello", &[s(&peer.url)]).into_bytes();

    // A form or a simple fetch() can send text/plain without asking the browser first.
    let (status, _) = post_raw(&node.url, &[("content-type", "text/plain")], hello.clone()).await;
    assert_eq!(status, 415, "a text/plain XML-RPC call");
    assert!(!knows(&peer_urls(&node.url).await, &peer.url), "a text/plain hello taught a peer");

    // Another site's page, even one that sends text/xml (after a preflight it would not pass).
    let (status, _) = post_raw(
        &node.url,
        &[("content-type", "text/xml"), ("origin", "http://evil.example")],
        hello.clone(),
    )
    .await;
    assert_eq!(status, 403, "a call from another origin");
    assert!(!knows(&peer_urls(&node.url).await, &peer.url), "a cross-origin hello taught a peer");

    // The node's own origin (its own page, if it had one) is served.
    let own = node.url.trim_end_matches('/').to_string();
    let (status, body) = post_raw(&node.url, &[("content-type", "text/xml"), ("origin", &own)], hello).await;
    assert_eq!(status, 200, "a call from the node's own origin");
    assert_eq!(shoal_xmlrpc::decode_response(&body).expect("XML-RPC"), Ok(Value::Integer(0)));
    assert!(
        knows(&peer_urls(&node.url).await, &peer.url),
        "the same-origin hello was not learnt"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. DNS rebinding: a loopback node answers only to its own names.

#[tokio::test]
async fn a_loopback_node_answers_only_to_its_own_host_names() {
    let node = TestNode::start().await;
    node.add("a.txt", b"alpha\n").await;
    let addr = addr_of(&node.url);
    let port = addr.rsplit_once(':').expect("a port").1.to_string();
    let list = shoal_xmlrpc::encode_call("list", &[]);
    let request = |host: &str| {
        format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{list}",
            list.len()
        )
        .into_bytes()
    };
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("127.0.0.2:{port}"),
    ] {
        let answer = raw_exchange(&addr, request(&host)).await;
        assert_eq!(status_of(&answer), 403, "Host: {host}: {:?}", String::from_utf8_lossy(&answer));
        assert!(!contains(&answer, b"a.txt"), "Host: {host} got the listing");
        let get = format!("GET /files/a.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(&addr, get.into_bytes()).await;
        assert_eq!(status_of(&answer), 403, "GET with Host: {host}");
        assert!(!contains(&answer, b"alpha"), "Host: {host} got the file");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
    ] {
        let answer = raw_exchange(&addr, request(&host)).await;
        assert_eq!(status_of(&answer), 200, "Host: {host}: {:?}", String::from_utf8_lossy(&answer));
        assert!(contains(&answer, b"a.txt"), "Host: {host} did not get the listing");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. What strangers see of the downloads.

#[tokio::test]
async fn downloads_are_redacted_for_callers_without_the_secret() {
    let node = TestNode::start().await;
    let port = stalling_mirror().await;
    let mirror = format!("http://user:pw@127.0.0.1:{port}/f.bin?sig=SECRETSIG");
    let started = bounded("shoal.download", node.call("shoal.download", vec![s(SECRET), strings(&[&mirror])]))
        .await
        .expect("the owner's download starts");
    let target = text(&fields(&started)["target"]).to_string();
    assert!(target.ends_with("/f.bin"), "target {target}");

    // Until the download lists its source (it stays running: the mirror never sends the body).
    let owner_view = poll("the download's source is listed", BOUND, || async {
        let body = shoal_xmlrpc::encode_call("shoal.downloads", &[s(SECRET)]).into_bytes();
        let (_, answer) = post_raw(&node.url, &[("content-type", "text/xml")], body).await;
        let text = String::from_utf8_lossy(&answer).into_owned();
        text.contains("127.0.0.1").then_some(text)
    })
    .await;
    // The owner sees the whole URL but its credentials, which are never shown or logged.
    let without_credentials = format!("http://127.0.0.1:{port}/f.bin?sig=SECRETSIG");
    assert!(
        owner_view.contains(&without_credentials),
        "the owner does not see the URL: {owner_view}"
    );
    assert!(!owner_view.contains("user:pw"), "the credentials are shown: {owner_view}");
    assert!(owner_view.contains(&target), "the owner does not see the target: {owner_view}");

    // A caller without the secret (any stranger) sees that there is a download, not where it
    // comes from in full or where it goes.
    let body = shoal_xmlrpc::encode_call("shoal.downloads", &[]).into_bytes();
    let (status, answer) = post_raw(&node.url, &[("content-type", "text/xml")], body).await;
    assert_eq!(status, 200);
    let seen = String::from_utf8_lossy(&answer).into_owned();
    let share = node.dir.path().to_str().unwrap();
    for secret in ["pw", "user", "SECRETSIG", "sig=", "/f.bin", target.as_str(), share] {
        assert!(!seen.contains(secret), "a caller without the secret sees {secret:?}: {seen}");
    }
    assert!(seen.contains("f.bin"), "the stranger's view lists no download: {seen}");
    assert!(
        seen.contains(&format!("<string>http://127.0.0.1:{port}</string>")),
        "the stranger's view has no redacted source: {seen}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Where `shoal.download` may write.

/// Every path below `root` (files, directories, links), without following links.
fn tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(items) = std::fs::read_dir(&dir) else { continue };
        for item in items.flatten() {
            let path = item.path();
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

/// What is at `path` now (for a path that must not change): its bytes, or that it is absent.
fn state_of(path: &Path) -> Option<Result<Vec<u8>, String>> {
    match std::fs::symlink_metadata(path) {
        Err(_) => None,
        Ok(_) => Some(std::fs::read(path).map_err(|e| e.kind().to_string())),
    }
}

#[tokio::test]
async fn downloads_write_only_inside_the_share_or_the_download_dir() {
    let outside = tempfile::tempdir().expect("outside dir");
    let allowed = tempfile::tempdir().expect("download dir");
    let allowed_path = allowed.path().to_path_buf();
    let node = TestNode::start_with(|o| o.download_dir = Some(allowed_path)).await;
    std::os::unix::fs::symlink(outside.path(), node.path("link")).expect("symlink");
    let port = stalling_mirror().await;
    let mirror = format!("http://127.0.0.1:{port}/f.bin");
    let keys = PathBuf::from("/root/.ssh/authorized_keys");
    let keys_before = state_of(&keys);
    let share = node.dir.path().to_str().unwrap().to_string();
    let refused = [
        outside.path().join("f.bin").to_str().unwrap().to_string(),
        outside.path().to_str().unwrap().to_string(),
        keys.to_str().unwrap().to_string(),
        "/root/.ssh/".to_string(),
        format!("{share}/link/f.bin"),
        format!("{share}/link"),
        format!("{share}/../{}/f.bin", outside.path().file_name().unwrap().to_str().unwrap()),
        "relative/f.bin".to_string(),
        format!("{share}/.hidden/f.bin"),
    ];
    let share_before = tree(node.dir.path());
    for output in &refused {
        let mut options = BTreeMap::new();
        options.insert("output".to_string(), s(output));
        let got = bounded(
            "shoal.download",
            node.call("shoal.download", vec![s(SECRET), strings(&[&mirror]), Value::Struct(options)]),
        )
        .await;
        match got {
            Err(fault) => assert_eq!(fault.code, OUTPUT_REFUSED, "output {output}: {fault}"),
            Ok(answer) => panic!("output {output} was accepted: {answer:?}"),
        }
    }
    assert!(
        tree(outside.path()).is_empty(),
        "something was written outside: {:?}",
        tree(outside.path())
    );
    assert_eq!(state_of(&keys), keys_before, "{} changed", keys.display());
    assert_eq!(tree(node.dir.path()), share_before, "the share changed");
    assert!(
        bounded("shoal.downloads", node.call("shoal.downloads", vec![s(SECRET)]))
            .await
            .is_ok_and(|rows| rows == Value::Array(vec![])),
        "a refused download was started"
    );

    // The control: inside the download directory is fine.
    let inside = allowed.path().join("sub").join("f.bin");
    let mut options = BTreeMap::new();
    options.insert("output".to_string(), s(inside.to_str().unwrap()));
    let got = bounded(
        "shoal.download",
        node.call("shoal.download", vec![s(SECRET), strings(&[&mirror]), Value::Struct(options)]),
    )
    .await
    .expect("a download into the download directory is accepted");
    let target = PathBuf::from(text(&fields(&got)["target"]));
    let root = allowed.path().canonicalize().expect("canonical");
    assert!(
        target.starts_with(&root),
        "target {} is not in {}",
        target.display(),
        root.display()
    );
    assert!(tree(outside.path()).is_empty(), "something was written outside");
}

// ---------------------------------------------------------------------------------------------
// 5. Guessing the secret.

#[tokio::test]
async fn wrong_secrets_lock_out_the_caller_not_everyone() {
    let node = TestNode::start_with(|o| o.guard.wrong_secrets_per_minute = 3).await;
    let peer = TestNode::start().await;
    peer.add("new.txt", b"the peer's new file\n").await;
    node.knows(&[&peer]).await;
    let guesser = client_from(ip(127, 0, 0, 1));
    for guess in ["wrong-1", "wrong-2", "wrong-3"] {
        let got = call_with(&guesser, &node.url, "fetch", vec![s("new.txt"), s(guess)]).await;
        assert_eq!(got.map_err(|f| f.code), Err(ACCESS_DENIED), "secret {guess}");
    }
    // The right secret from the guesser is refused too: guessing at line rate gains nothing.
    let got = call_with(&guesser, &node.url, "fetch", vec![s("new.txt"), s(SECRET)]).await;
    assert_eq!(got.map_err(|f| f.code), Err(ACCESS_DENIED), "the right secret after 3 wrong ones");
    assert!(!node.path("new.txt").exists(), "the refused fetch wrote the file");
    for (method, params) in [("shoal.downloads", vec![s(SECRET)]), ("shoal.pause", vec![s(SECRET), s("new.txt")])] {
        let got = call_with(&guesser, &node.url, method, params).await;
        assert_eq!(got.map_err(|f| f.code), Err(ACCESS_DENIED), "{method} from the guesser");
    }

    // The owner, from another address, is not locked out.
    let owner = client_from(ip(127, 0, 0, 2));
    let got = call_with(&owner, &node.url, "fetch", vec![s("new.txt"), s(SECRET)]).await;
    assert_eq!(got, Ok(Value::Integer(0)), "the right secret from another caller");
    assert_eq!(util::read(&node.path("new.txt")), b"the peer's new file\n");
}

// ---------------------------------------------------------------------------------------------
// 6. Search floods.

#[tokio::test]
async fn a_search_flood_is_refused_for_that_caller_only() {
    let node = TestNode::start_with(|o| {
        o.guard.loopback_exempt = false;
        o.guard.searches_per_second = 1;
        o.guard.search_burst = 5;
    })
    .await;
    node.add("a.txt", b"alpha\n").await;
    let flooder = client_from(ip(127, 0, 0, 1));
    let mut answered = 0;
    let mut busy = None;
    for i in 0..200 {
        match call_with(&flooder, &node.url, "shoal.search", vec![s("a.txt")]).await {
            Ok(_) => answered += 1,
            Err(fault) if fault.code == BUSY => {
                busy = Some(i);
                break;
            }
            Err(fault) => panic!("search {i}: {fault}"),
        }
    }
    let busy = busy.expect("200 searches in a row were all served");
    assert!(busy >= 5, "refused after {answered} searches, within the burst of 5");
    // query and shoal.locate draw on the same allowance (at most one call in a few may get a
    // token that refilled meanwhile).
    for method in ["query", "shoal.locate"] {
        let mut refused = false;
        for _ in 0..20 {
            if call_with(&flooder, &node.url, method, vec![s("a.txt")])
                .await
                .is_err_and(|f| f.code == BUSY)
            {
                refused = true;
                break;
            }
        }
        assert!(refused, "20 calls of {method} from the flooder were all served");
    }

    // Another caller is served meanwhile.
    let other = client_from(ip(127, 0, 0, 3));
    let got = call_with(&other, &node.url, "shoal.search", vec![s("a.txt")]).await;
    let Ok(Value::Array(found)) = got else {
        panic!("another caller's search: {got:?}")
    };
    assert_eq!(found.len(), 1, "another caller's search found {found:?}");
}

// ---------------------------------------------------------------------------------------------
// 7. Peer-table floods.

/// `count` URLs on loopback addresses other than 127.0.0.1 where nothing listens: each port was
/// bound and released (a wildcard listener on the same port would have made the bind fail).
fn silent_urls(count: usize) -> Vec<String> {
    let mut urls = Vec::new();
    let mut host = 0u8;
    while urls.len() < count {
        host = host % 200 + 1;
        let address = ip(127, 0, 7, host);
        let listener = std::net::TcpListener::bind((address, 0)).expect("bind a free port");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        urls.push(format!("http://{address}:{port}"));
    }
    urls
}

#[tokio::test]
async fn hello_floods_of_silent_urls_never_enter_the_table() {
    let node = TestNode::start_with(|o| {
        o.guard.loopback_exempt = false;
        o.peer.max_peers = 16;
    })
    .await;
    let silent = silent_urls(100);
    // 2,000 hellos from 8 callers, each naming a URL where nothing answers (some with a path).
    let callers: Vec<reqwest::Client> = (1..=8).map(|i| client_from(ip(127, 0, 1, i))).collect();
    let calls = (0..2000).map(|i| {
        let client = &callers[i % callers.len()];
        let url = if i % 3 == 0 {
            format!("{}/RPC2", silent[i % silent.len()])
        } else {
            silent[i % silent.len()].clone()
        };
        let node = &node.url;
        async move { (url.clone(), call_with(client, node, "hello", vec![s(&url)]).await) }
    });
    let results: Vec<_> = bounded(
        "2,000 hellos",
        futures_util::stream::iter(calls).buffer_unordered(16).collect::<Vec<_>>(),
    )
    .await;
    let mut busy = 0;
    for (url, result) in results {
        match result {
            Err(fault) if fault.code == BUSY => busy += 1,
            Err(_) => {}
            // The seed's contract: a node that does not answer yet is a candidate, tried later.
            Ok(value) => assert_eq!(value, Value::Integer(0), "hello({url})"),
        }
    }
    assert!(busy > 0, "no hello was refused for its rate");
    let candidates = node.node.api().candidates();
    assert!(
        candidates <= shoal_node::discovery::candidates::MAX_CANDIDATES,
        "{candidates} candidates kept"
    );
    let table = peer_urls(&node.url).await;
    assert!(table.len() <= 16, "{} peers in a table of 16", table.len());
    for url in &silent {
        assert!(!knows(&table, url), "{url} never answered but is in the table: {table:?}");
    }

    // A real node said hello by another caller joins.
    let real = TestNode::start().await;
    let newcomer = client_from(ip(127, 0, 1, 9));
    assert_eq!(
        call_with(&newcomer, &node.url, "hello", vec![s(&real.url)]).await,
        Ok(Value::Integer(0)),
        "a real node's hello"
    );
    let table = peer_urls(&node.url).await;
    assert!(knows(&table, &real.url), "the real node is not listed: {table:?}");
}

#[tokio::test]
async fn a_full_table_evicts_learnt_peers_never_configured_ones() {
    let configured = TestNode::start().await;
    let configured_url = configured.url.clone();
    let node = TestNode::start_with(|o| {
        o.peer.max_peers = 4;
        o.peers = vec![configured_url];
    })
    .await;
    let mut fakes = Vec::new();
    for _ in 0..12 {
        fakes.push(answering_fake().await);
    }
    for (i, fake) in fakes.iter().enumerate() {
        let got = bounded("hello", node.call("hello", vec![s(fake)])).await;
        assert_eq!(got, Ok(Value::Integer(0)), "hello({fake}), answering fake number {i}");
        let table = peer_urls(&node.url).await;
        assert!(table.len() <= 4, "{} peers in a table of 4: {table:?}", table.len());
        assert!(knows(&table, &configured.url), "the configured peer was evicted: {table:?}");
        assert!(knows(&table, fake), "the newest answering peer did not make room: {table:?}");
    }
    // And the configured peer still answers searches through the node.
    configured.add("kept.txt", b"kept\n").await;
    let got = bounded("search", node.call("shoal.search", vec![s("kept.txt")])).await;
    let Ok(Value::Array(found)) = got else { panic!("search: {got:?}") };
    assert_eq!(found.len(), 1, "the configured peer's file: {found:?}");
}

// ---------------------------------------------------------------------------------------------
// 8. Clients that ask for a large file and never read.

#[tokio::test]
async fn readers_that_never_read_lose_their_slots() {
    let node = TestNode::start_with(|o| {
        o.max_connections = 8;
        o.stall_timeout = Duration::from_secs(1);
    })
    .await;
    node.add("big.bin", &vec![0x5a; 64 << 20]).await;
    let addr = addr_of(&node.url);
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut stream = bounded("connect", TcpStream::connect(&addr)).await.expect("connect");
        let request = format!("GET /files/big.bin HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        stalled.push(stream);
    }
    // The eight never read; a new caller is served once the node gave up on them.
    poll("a new caller is served beside 8 stalled readers", Duration::from_secs(20), || {
        try_list(&node.url)
    })
    .await;
    drop(stalled);
}

// ---------------------------------------------------------------------------------------------
// 9. A share that changes between rescans.

/// The names a search from `from` finds.
async fn found_names(from: &TestNode, pattern: &str) -> Vec<String> {
    match from.call("shoal.search", vec![s(pattern)]).await {
        Ok(Value::Array(found)) => found.iter().map(|m| text(&fields(m)["name"]).to_string()).collect(),
        other => panic!("search {pattern}: {other:?}"),
    }
}

#[tokio::test]
async fn changes_to_the_share_are_searchable_before_the_next_rescan() {
    let node = TestNode::start_with(|o| o.rescan_interval = Duration::from_secs(3600)).await;
    let peer = TestNode::start().await;
    peer.knows(&[&node]).await;
    std::fs::write(node.path("fresh-new.txt"), b"fresh\n").expect("write");
    poll("a new file is found", Duration::from_secs(10), || async {
        found_names(&peer, "fresh-")
            .await
            .contains(&"fresh-new.txt".to_string())
            .then_some(())
    })
    .await;
    std::fs::rename(node.path("fresh-new.txt"), node.path("fresh-renamed.txt")).expect("rename");
    poll("a renamed file is found by its new name only", Duration::from_secs(10), || async {
        (found_names(&peer, "fresh-").await == ["fresh-renamed.txt"]).then_some(())
    })
    .await;
    std::fs::remove_file(node.path("fresh-renamed.txt")).expect("remove");
    poll("a deleted file is no longer found", Duration::from_secs(10), || async {
        found_names(&peer, "fresh-").await.is_empty().then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 10. A directory swapped for a symlink while it is read.

fn content_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Base64(b) => b.clone(),
        other => format!("{other:?}").into_bytes(),
    }
}

#[tokio::test]
async fn query_never_follows_a_directory_swapped_for_a_symlink() {
    let parent = tempfile::tempdir().expect("parent");
    let share_dir = tempfile::Builder::new().prefix("s").tempdir_in(parent.path()).expect("share dir");
    let share = share_dir.path().to_path_buf();
    let outside = parent.path().join("outside");
    std::fs::create_dir_all(share.join("d")).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(share.join("d/f"), b"inside\n").expect("write");
    std::fs::write(outside.join("f"), b"SECRET outside the share\n").expect("write");
    std::os::unix::fs::symlink(&outside, parent.path().join("link")).expect("symlink");
    let node = TestNode::start_in(share_dir, tempfile::tempdir().expect("state"), |_| {}).await;
    assert_eq!(node.call("query", vec![s("d/f")]).await, Ok(s("inside\n")));

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, share, parent) = (stop.clone(), share.clone(), parent.path().to_path_buf());
        std::thread::spawn(move || {
            let (d, real, link) = (share.join("d"), parent.join("real"), parent.join("link"));
            let mut swaps = 0u64;
            for _ in 0..1_000_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // d becomes the symlink to the outside directory, then the real directory again.
                std::fs::rename(&d, &real).expect("d away");
                std::fs::rename(&link, &d).expect("link in");
                std::fs::rename(&d, &link).expect("link away");
                std::fs::rename(&real, &d).expect("d back");
                swaps += 1;
            }
            swaps
        })
    };
    let mut leaks = 0;
    let mut served = 0;
    for _ in 0..2000 {
        match bounded("query", node.call("query", vec![s("d/f")])).await {
            Ok(value) => {
                let bytes = content_bytes(&value);
                if contains(&bytes, b"SECRET") {
                    leaks += 1;
                } else {
                    assert_eq!(bytes, b"inside\n");
                    served += 1;
                }
            }
            Err(fault) => assert!(!fault.message.contains("SECRET"), "a fault leaks: {fault}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().expect("the swapper");
    assert!(swaps > 0, "the directory was never swapped");
    assert_eq!(
        leaks, 0,
        "{leaks} of 2000 queries answered with the file outside ({served} inside, {swaps} swaps)"
    );
}

// ---------------------------------------------------------------------------------------------
// 11. Addresses a stranger may name but the node never contacts.

#[tokio::test]
async fn metadata_link_local_and_unspecified_addresses_are_never_contacted() {
    let node = TestNode::start().await;
    let forbidden = [
        "http://169.254.169.254/",
        "http://169.254.169.254:80/RPC2",
        "http://[::ffff:169.254.169.254]:80",
        "http://[fe80::1]:8080",
        "http://0.0.0.0:9",
        "http://224.0.0.1:80",
        "http://255.255.255.255:80",
    ];
    for url in forbidden {
        let answer = node.call("hello", vec![s(url)]).await;
        assert!(answer.is_err(), "hello({url}) was accepted: {answer:?}");
        let table = peer_urls(&node.url).await;
        assert!(!knows(&table, url), "{url} joined the table: {table:?}");
    }
    // A search that names such a holder does not make the node fetch from it either: the
    // fetch of a located file to a forbidden holder fails without a connection.
    let client = shoal_node::net::Client::with_options(shoal_node::net::ClientOptions {
        connect_timeout: Duration::from_secs(1),
        policy: shoal_node::net::Policy::for_node(Some("127.0.0.1".parse().unwrap())),
        budget: 1 << 20,
        ..Default::default()
    });
    for url in forbidden {
        let parsed = reqwest::Url::parse(url).unwrap();
        assert!(
            client.request(reqwest::Method::GET, &parsed, shoal_node::net::Trust::Peer).is_err(),
            "{url} is refused before any connection"
        );
        assert!(
            client
                .request(reqwest::Method::GET, &parsed, shoal_node::net::Trust::Owner)
                .is_err(),
            "{url} is refused even for the owner"
        );
    }
    // Loopback stays reachable for a node on loopback (tests, one machine), and the policy of a
    // node with a public URL refuses it.
    let loopback = reqwest::Url::parse("http://127.0.0.1:9/").unwrap();
    assert!(
        client
            .request(reqwest::Method::GET, &loopback, shoal_node::net::Trust::Peer)
            .is_ok()
    );
    let public = shoal_node::net::Client::with_options(shoal_node::net::ClientOptions {
        connect_timeout: Duration::from_secs(1),
        policy: shoal_node::net::Policy::for_node(Some("8.8.8.8".parse().unwrap())),
        budget: 1 << 20,
        ..Default::default()
    });
    assert!(
        public
            .request(reqwest::Method::GET, &loopback, shoal_node::net::Trust::Peer)
            .is_err()
    );
    assert!(
        public
            .request(
                reqwest::Method::GET,
                &reqwest::Url::parse("http://10.0.0.1/").unwrap(),
                shoal_node::net::Trust::Peer
            )
            .is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// 12. One address cannot hold every connection.

/// A raw connection from `from` to the node at `addr`.
async fn connect_from(from: Ipv4Addr, addr: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(std::net::SocketAddr::new(IpAddr::V4(from), 0))
        .expect("bind the caller's address");
    bounded("connect", socket.connect(addr.parse().expect("an address")))
        .await
        .expect("connect")
}

#[tokio::test]
async fn one_address_gets_a_bounded_share_of_the_connections() {
    let node = TestNode::start_with(|o| {
        o.max_per_address = 2;
        o.guard.loopback_exempt = false;
    })
    .await;
    let addr = addr_of(&node.url);
    let crowd = Ipv4Addr::new(127, 0, 2, 1);
    // Two idle connections from one address take its share; a third is closed unanswered.
    let first = connect_from(crowd, &addr).await;
    let second = connect_from(crowd, &addr).await;
    let mut third = connect_from(crowd, &addr).await;
    third
        .write_all(format!("GET /files/none HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .ok();
    let mut got = Vec::new();
    let _ = bounded("the third connection", third.read_to_end(&mut got)).await;
    assert!(
        got.is_empty(),
        "a connection over the address's share was answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    // Another address is served meanwhile.
    let other = client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 2, 2)));
    assert!(
        call_with(&other, &node.url, "list", vec![]).await.is_ok(),
        "another caller is served"
    );
    // Once the crowd lets go, its address is served again.
    drop((first, second));
    let crowd_client = client_from(IpAddr::V4(crowd));
    bounded("the crowd's address is served again", async {
        let mut retry = tokio::time::interval(Duration::from_millis(20));
        loop {
            retry.tick().await;
            let body = shoal_xmlrpc::encode_call("list", &[]);
            let sent = crowd_client
                .post(&node.url)
                .header("content-type", "text/xml")
                .body(body)
                .send()
                .await;
            if sent.is_ok_and(|r| r.status().is_success()) {
                break;
            }
        }
    })
    .await;
}
