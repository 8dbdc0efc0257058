//! The Mainline DHT with real `shoal serve` processes on loopback: a fresh `shoal get ID` that
//! knows only a bootstrap node finds the holder among dozens of nodes with no `--peer`
//! anywhere; a node named by its id alone is found through the DHT; hostile DHT answers
//! (forbidden addresses, a flood of fake peers, a holder that serves wrong bytes) leave the
//! file right and contact nothing forbidden; and `--local-only` without DHT flags sends no UDP
//! packet past loopback, counted in a network namespace. Every wait is bounded.

mod common;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddrV4, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Node, get_into, in_ns, ip, pattern, read, run, run_args, shoal};
use support::{Liar, Lie};

/// How many nodes make the DHT of the first test, the bootstrap and the holder aside.
const DOZENS: usize = 24;
/// How long a node may take to announce what it shares.
const ANNOUNCE_WAIT: Duration = Duration::from_secs(60);

/// A node sharing `files` with the owner's secret `x`, started with `flags`.
fn node(files: &[(&str, &[u8])], flags: &[&str]) -> (Node, tempfile::TempDir) {
    node_with(shoal(), files, flags)
}

fn node_with(command: Command, files: &[(&str, &[u8])], flags: &[&str]) -> (Node, tempfile::TempDir) {
    common::serve_with(command, files, flags)
}

/// `shoal dht --json` of a node, as its owner.
fn dht_state(node: &Node) -> serde_json::Value {
    run_args(["dht", "--json", "--node", &node.url, "--secret", "x"]).json()
}

/// Waits (bounded) until `node` has announced at least one id on the DHT.
fn wait_announced(node: &Node) {
    let deadline = Instant::now() + ANNOUNCE_WAIT;
    loop {
        let state = dht_state(node);
        if state["announced"].as_u64().unwrap_or(0) >= 1 {
            return;
        }
        assert!(Instant::now() < deadline, "{} announced nothing: {state}", node.url);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The content id of `name` on `node`.
fn content_id(node: &Node, name: &str) -> String {
    let listed = run_args(["ls", "--json", "--node", &node.url]).json();
    listed
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == name))
        .and_then(|r| r["id"].as_str())
        .unwrap_or_else(|| panic!("{name} is not listed: {listed}"))
        .to_string()
}

/// `GET path` with the owner's secret, the body as text.
fn owner_get(base: &str, path: &str) -> String {
    let authority = base.strip_prefix("http://").unwrap().trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// `shoal get ID` on `node`'s state directory: the node runs the download (the hand-over).
fn hand_over(node: &Node, id: &str) -> common::Output {
    let mut handed = shoal();
    handed
        .args(["get", id, "--no-iroh"])
        .arg("--state")
        .arg(&node.state)
        .env("SHOAL_SECRET", "x");
    handed.arg("-o").arg(&node.dir);
    run(handed, "").expect_code(0)
}

#[test]
fn a_fresh_get_that_knows_only_a_bootstrap_finds_the_holder_among_dozens_of_nodes() {
    let dht = ["--dht-listen", "127.0.0.1:0", "--no-iroh"];
    let (mut boot, _b) = node(&[], &dht);
    let boot_addr = boot.dht_addr();
    let joined = |files: &[(&str, &[u8])]| node(files, &[&dht[..], &["--dht-bootstrap", &boot_addr]].concat());
    let others: Vec<(Node, tempfile::TempDir)> = (0..DOZENS).map(|_| joined(&[])).collect();
    let data = pattern(3 << 20, 19);
    let (holder, _h) = joined(&[("found.bin", &data)]);
    holder.wait_until_sharing(&["found.bin"]);
    let id = content_id(&holder, "found.bin");
    wait_announced(&holder);

    // A fresh command that knows nothing but the bootstrap node and the id.
    let out = tempfile::tempdir().unwrap();
    let got = get_into(out.path(), &[&id, "--dht-bootstrap", &boot_addr, "--no-iroh"]).expect_code(0);
    assert_eq!(read(&out.path().join("found.bin")), data, "{}", got.describe());
    assert!(got.stdout().contains(&holder.url), "the holder gave the bytes: {}", got.describe());
    // It keeps the routing table it learnt for its next run.
    let kept = std::fs::read_to_string(out.path().join("state").join("dht-nodes")).unwrap();
    let nodes: Vec<SocketAddrV4> = kept.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(nodes.len() >= 2, "{kept}");
    // Without the DHT the same command finds nothing: no peer names the id.
    let none = tempfile::tempdir().unwrap();
    let refused = get_into(none.path(), &[&id, "--no-dht", "--no-iroh"]);
    assert_ne!(refused.code(), Some(0), "{}", refused.describe());

    // A node of the DHT fetches the id too (handed over through its state directory), and
    // shows the lookup it made.
    let seeker = &others[DOZENS - 1].0;
    hand_over(seeker, &id);
    assert_eq!(read(&seeker.dir.join("found.bin")), data);
    let state = dht_state(seeker);
    assert_eq!(state["running"], true, "{state}");
    assert!(state["nodes"].as_u64().unwrap() >= 2, "{state}");
    let lookups = state["lookups"].as_array().unwrap();
    assert!(
        lookups.iter().any(|l| l["id"] == id.as_str() && l["found"].as_u64() >= Some(1)),
        "{state}"
    );
    // The seed's own call, from Python's xmlrpc: `fetch(id, secret)` on another node of the
    // DHT answers once the file is in its share, under the name its holder gives.
    let fetcher = &others[DOZENS - 2].0;
    let mut python = Command::new("python3");
    python.args([
        "-c",
        "import sys, xmlrpc.client as x; print(x.ServerProxy(sys.argv[1]).fetch(sys.argv[2], 'x'))",
        &fetcher.url,
        &id,
    ]);
    let answered = run(python, "").expect_code(0);
    assert_eq!(answered.stdout().trim(), "0", "{}", answered.describe());
    assert_eq!(read(&fetcher.dir.join("found.bin")), data);

    // The holder says what it announced; status, the JSON API and /metrics show the DHT.
    assert!(dht_state(&holder)["announced"].as_u64() >= Some(1));
    let status = run_args(["status", "--node", &seeker.url, "--secret", "x"]).expect_code(0);
    assert!(status.stdout().contains("dht       "), "{}", status.describe());
    let api = owner_get(&seeker.url, "/api/v1/dht");
    assert!(api.contains("\"running\":true"), "{api}");
    let metrics = owner_get(&seeker.url, "/metrics");
    assert!(metrics.contains("shoal_dht_nodes "), "{metrics}");
    assert!(metric(&metrics, "shoal_dht_lookups_total") >= 1, "{metrics}");
    // Anyone may ask how the node is on the DHT, but not what it looked up.
    let public = run_args(["dht", "--json", "--node", &seeker.url]).json();
    assert_eq!(public["lookups"].as_array().map(Vec::len), Some(0), "{public}");
    assert!(public.get("local").is_none(), "{public}");
    drop(boot);
}

#[test]
fn a_node_named_by_its_id_alone_is_found_through_the_dht() {
    let (mut boot, _b) = node(&[], &["--dht-listen", "127.0.0.1:0", "--no-iroh"]);
    let boot_addr = boot.dht_addr();
    let data = pattern(1 << 20, 23);
    // The holder's iroh endpoint on loopback, so the address it publishes is one the seeker's
    // policy allows (a DHT on loopback leads to loopback and private addresses).
    let (mut holder, _h) = node(
        &[("by-id.bin", &data)],
        &["--dht-bootstrap", &boot_addr, "--iroh-listen", "127.0.0.1:0"],
    );
    holder.wait_until_sharing(&["by-id.bin"]);
    let id = holder.id();
    let deadline = Instant::now() + ANNOUNCE_WAIT;
    while dht_state(&holder)["published"] != true {
        assert!(Instant::now() < deadline, "the holder never published its addresses");
        std::thread::sleep(Duration::from_millis(200));
    }
    // No ticket, no address: the id alone, resolved on the DHT.
    let out = tempfile::tempdir().unwrap();
    let got = get_into(out.path(), &["by-id.bin", "--peer", &id, "--dht-bootstrap", &boot_addr]).expect_code(0);
    assert_eq!(read(&out.path().join("by-id.bin")), data);
    assert!(got.stdout().contains(&format!("iroh://{id}")), "{}", got.describe());
    // With no look-up the id leads nowhere.
    let none = tempfile::tempdir().unwrap();
    let lost = get_into(none.path(), &["by-id.bin", "--peer", &id, "--no-dht"]);
    assert_ne!(lost.code(), Some(0), "{}", lost.describe());
}

/// A bencoded value: as much of bencode as a KRPC message needs.
#[derive(Debug)]
enum Ben {
    Int,
    Bytes(Vec<u8>),
    List,
    Dict(Vec<(Vec<u8>, Ben)>),
}

fn parse(b: &[u8]) -> Option<(Ben, &[u8])> {
    match *b.first()? {
        b'i' => {
            let end = b.iter().position(|&c| c == b'e')?;
            Some((Ben::Int, &b[end + 1..]))
        }
        b'l' => {
            let mut rest = &b[1..];
            while *rest.first()? != b'e' {
                rest = parse(rest)?.1;
            }
            Some((Ben::List, &rest[1..]))
        }
        b'd' => {
            let mut rest = &b[1..];
            let mut entries = Vec::new();
            while *rest.first()? != b'e' {
                let (Ben::Bytes(key), after) = parse(rest)? else { return None };
                let (value, after) = parse(after)?;
                entries.push((key, value));
                rest = after;
            }
            Some((Ben::Dict(entries), &rest[1..]))
        }
        b'0'..=b'9' => {
            let colon = b.iter().position(|&c| c == b':')?;
            let len: usize = std::str::from_utf8(&b[..colon]).ok()?.parse().ok()?;
            let start = colon + 1;
            Some((Ben::Bytes(b.get(start..start + len)?.to_vec()), &b[start + len..]))
        }
        _ => None,
    }
}

fn field<'a>(dict: &'a Ben, key: &str) -> Option<&'a Ben> {
    let Ben::Dict(entries) = dict else { return None };
    entries.iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v)
}

fn string(bytes: &[u8]) -> Vec<u8> {
    [format!("{}:", bytes.len()).as_bytes(), bytes].concat()
}

/// A DHT node that lies: it says its id is next to `key` (so every lookup of the key asks it)
/// and answers `get_peers` with `values`, whatever the key.
struct LyingDhtNode {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LyingDhtNode {
    fn start(key: [u8; 20], values: Vec<SocketAddrV4>) -> LyingDhtNode {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let addr = socket.local_addr().unwrap().to_string();
        let mut id = key;
        id[19] ^= 1;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                let Some((message, _)) = parse(&buf[..n]) else { continue };
                let (Some(Ben::Bytes(tid)), Some(Ben::Bytes(query))) = (field(&message, "t"), field(&message, "q")) else {
                    continue;
                };
                let mut body = [string(b"id"), string(&id)].concat();
                match query.as_slice() {
                    b"get_peers" => {
                        body.extend(string(b"token"));
                        body.extend(string(b"tokn"));
                        body.extend(string(b"values"));
                        body.push(b'l');
                        for value in &values {
                            let compact = [&value.ip().octets()[..], &value.port().to_be_bytes()[..]].concat();
                            body.extend(string(&compact));
                        }
                        body.push(b'e');
                    }
                    b"find_node" | b"get" => {
                        body.extend(string(b"nodes"));
                        body.extend(string(b""));
                    }
                    _ => {}
                }
                let answer = [
                    &b"d1:rd"[..],
                    &body,
                    b"e",
                    &string(b"t"),
                    &string(tid),
                    &string(b"y"),
                    &string(b"r"),
                    b"e",
                ]
                .concat();
                let _ = socket.send_to(&answer, from);
            }
        });
        LyingDhtNode {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for LyingDhtNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The number a `/metrics` text gives for `series`.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

#[test]
fn hostile_dht_answers_leave_the_file_right_and_reach_nothing_forbidden() {
    let (mut boot, _b) = node(&[], &["--dht-listen", "127.0.0.1:0", "--no-iroh"]);
    let boot_addr = boot.dht_addr();
    let data = pattern(4 << 20, 29);
    let (holder, _h) = node(
        &[("true.bin", &data)],
        &["--dht-listen", "127.0.0.1:0", "--dht-bootstrap", &boot_addr, "--no-iroh"],
    );
    holder.wait_until_sharing(&["true.bin"]);
    let id = content_id(&holder, "true.bin");
    wait_announced(&holder);
    let bytes: [u8; 32] = (0..32)
        .map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let key = *shoal_node::net::dht::key(&shoal_node::service::fetch::ContentId(bytes)).as_bytes();

    // The liar's answer: forbidden addresses first, then a holder that serves wrong bytes,
    // then a flood of fake peers on ports nobody listens on.
    let liar = Liar::start(&id, data.len(), Lie::Wrong);
    let mut values: Vec<SocketAddrV4> = ["169.254.169.254:80", "224.0.0.1:80", "0.0.0.0:80", "255.255.255.255:80"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let forbidden = values.len() as u64;
    values.push(liar.url.trim_start_matches("http://").parse().unwrap());
    let closed: Vec<std::net::TcpListener> = (0..150).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let closed: Vec<u16> = closed.iter().map(|l| l.local_addr().unwrap().port()).collect();
    values.extend(closed.iter().map(|port| SocketAddrV4::new([127, 0, 0, 1].into(), *port)));
    let lying = LyingDhtNode::start(key, values);

    // The seeker knows the liar and the honest bootstrap.
    let (seeker, _s) = node(
        &[],
        &[
            "--dht-listen",
            "127.0.0.1:0",
            "--dht-bootstrap",
            &lying.addr,
            "--dht-bootstrap",
            &boot_addr,
            "--no-iroh",
        ],
    );
    let got = hand_over(&seeker, &id);
    assert_eq!(read(&seeker.dir.join("true.bin")), data, "{}", got.describe());

    // The forbidden addresses were refused before any request; the wrong bytes were thrown
    // away and their source dropped; the lookup took at most 16 of the liar's 155 addresses.
    let metrics = owner_get(&seeker.url, "/metrics");
    assert!(metric(&metrics, "shoal_dht_peers_refused_total") >= forbidden, "{metrics}");
    let state = dht_state(&seeker);
    let lookups = state["lookups"].as_array().unwrap();
    assert!(!lookups.is_empty(), "{state}");
    for lookup in lookups {
        // 16 from the liar's answer at most, and the few the honest nodes name.
        let found = lookup["found"].as_u64().unwrap();
        assert!((1..=16 + 4).contains(&found), "{found} addresses taken from one lookup: {state}");
    }
    let downloads = run_args(["downloads", "--json", "--node", &seeker.url, "--secret", "x"]).json();
    let row = &downloads.as_array().unwrap()[0];
    let sources = row["sources"].as_array().unwrap();
    let bytes_from = |url: &str| -> u64 {
        sources
            .iter()
            .filter(|s| s["url"].as_str().is_some_and(|u| u.starts_with(&format!("{url}/"))))
            .map(|s| s["bytes"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(bytes_from(&liar.url), 0, "{row}");
    assert_eq!(bytes_from(&holder.url), data.len() as u64, "{row}");
    drop(boot);
}

/// A network namespace made for one test, deleted when dropped.
struct Netns(String);

impl Netns {
    /// A namespace with loopback up, an interface (one end of a veth pair) with an address and a default route (so
    /// a packet for anywhere would go out), and iptables rules that count and drop every UDP
    /// packet that is not for loopback.
    fn counting(tag: &str) -> Netns {
        let name = format!("shoal-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        in_ns(&ns.0, "ip", &["link", "set", "lo", "up"]);
        in_ns(&ns.0, "ip", &["link", "add", "out0", "type", "veth", "peer", "name", "out1"]);
        in_ns(&ns.0, "ip", &["link", "set", "out1", "up"]);
        in_ns(&ns.0, "ip", &["addr", "add", "10.77.0.2/24", "dev", "out0"]);
        in_ns(&ns.0, "ip", &["link", "set", "out0", "up"]);
        in_ns(&ns.0, "ip", &["route", "add", "default", "via", "10.77.0.1", "dev", "out0"]);
        in_ns(&ns.0, "iptables", &["-A", "OUTPUT", "-o", "lo", "-j", "ACCEPT"]);
        in_ns(&ns.0, "iptables", &["-A", "OUTPUT", "-p", "udp", "-j", "DROP"]);
        ns
    }

    /// UDP packets that tried to leave through anything but loopback.
    fn udp_out(&self) -> u64 {
        let rules = in_ns(&self.0, "iptables", &["-L", "OUTPUT", "-v", "-n", "-x"]);
        rules
            .lines()
            .find(|l| l.contains("DROP"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no UDP rule in:\n{rules}"))
    }

    fn shoal(&self) -> Command {
        common::shoal_in(&self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn local_only_without_dht_flags_sends_no_udp_past_loopback() {
    // The counter counts: a node pointed at a bootstrap outside sends DHT packets there.
    let control = Netns::counting("dhton");
    let (_pointed, _p) = node_with(control.shoal(), &[], &["--dht-bootstrap", "10.77.0.9:6881", "--no-iroh"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while control.udp_out() == 0 {
        assert!(Instant::now() < deadline, "a node with --dht-bootstrap sent no UDP packet");
        std::thread::sleep(Duration::from_millis(100));
    }

    // --local-only (SHOAL_LOCAL_ONLY=1, as every test process has) with every default: iroh
    // on, no DHT flag. It starts, looks an id up, and is asked about its DHT.
    let quiet = Netns::counting("dhtoff");
    let data = pattern(64 << 10, 37);
    let (node, _n) = node_with(quiet.shoal(), &[("here.bin", &data)], &[]);
    let mut get = quiet.shoal();
    let out = tempfile::tempdir().unwrap();
    get.args(["get", &"ab".repeat(32)]).arg("--state").arg(out.path().join("state"));
    get.arg("-o").arg(out.path());
    let missed = run(get, "");
    assert_ne!(missed.code(), Some(0), "{}", missed.describe());
    let mut asked = quiet.shoal();
    asked.args(["dht", "--json", "--node", &node.url, "--secret", "x"]);
    let state = run(asked, "").json();
    assert_eq!(state["running"], false, "{state}");
    assert_eq!(quiet.udp_out(), 0, "UDP packets left loopback under --local-only");
}
