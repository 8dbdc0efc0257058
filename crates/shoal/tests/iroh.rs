//! Nodes that reach each other by key: `shoal serve` with its iroh endpoint, `shoal get` and the
//! shell dialling a ticket, a relay carrying the traffic when direct paths are blocked, a mixed
//! network of a seed node, an HTTP-only node and an iroh node, and LAN discovery between two
//! network namespaces. Every process runs with `SHOAL_LOCAL_ONLY=1` (no public relay, look-up,
//! port mapping or mDNS on the real interfaces); the namespace tests make their own network.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Node, get_into, in_ns, ip, pattern, read, run, run_args, shoal};

/// A node sharing `files`, started with `extra` flags; the temporary directory lives as long as
/// the returned guard.
fn start(files: &[(&str, &[u8])], extra: &[&str]) -> (Node, tempfile::TempDir) {
    start_with(shoal(), files, extra)
}

fn start_with(command: Command, files: &[(&str, &[u8])], extra: &[&str]) -> (Node, tempfile::TempDir) {
    common::serve_with(command, files, extra)
}

#[test]
fn a_file_crosses_over_iroh_by_ticket_and_the_key_stays() {
    let data = pattern(3 << 20, 7);
    let (mut node, _tmp) = start(&[("big.bin", &data)], &[]);
    node.wait_until_sharing(&["big.bin"]);
    let id = node.id();
    let ticket = node.ticket();
    assert!(ticket.starts_with("shoal1"), "{ticket}");

    // The key is the owner's alone, and `shoal id` names the same node.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node.state.join("node.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let shown = run_args(["id", "--state", node.state.to_str().unwrap()]).expect_code(0);
    assert!(shown.stdout().contains(&format!("node id {id}\n")), "{}", shown.describe());
    assert!(shown.stdout().contains(&format!("ticket {ticket}\n")), "{}", shown.describe());

    let out = tempfile::tempdir().unwrap();
    let got = get_into(out.path(), &["big.bin", "--peer", &ticket]).expect_code(0);
    assert_eq!(read(&out.path().join("big.bin")), data);
    assert!(got.stdout().contains(&format!("iroh://{id}/content/")), "{}", got.describe());
    assert!(got.stdout().contains(&format!("node {id} reached direct")), "{}", got.describe());

    // A restarted node keeps its id.
    let state_dir = node.state.clone();
    drop(node);
    let mut command = shoal();
    command
        .arg("serve")
        .arg("--state")
        .arg(&state_dir)
        .arg("--dir")
        .arg(_tmp.path().join("shared"));
    command.args(["--listen", "127.0.0.1:0", "--secret", "x"]);
    let mut again = Node::spawn(command, _tmp.path().join("shared"), state_dir);
    assert_eq!(again.id(), id);
}

#[test]
fn a_node_named_by_ticket_learns_the_namer_back_by_its_ticket() {
    let (mut first, _a) = start(&[], &[]);
    let first_ticket = first.ticket();
    let (mut second, _b) = start(&[], &["--peer", &first_ticket]);
    let second_id = second.id();
    // The second node says hello to the first over iroh with its own ticket; the first dials
    // it back by that ticket (the probe) and keeps it as a peer, by id.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let peers = run_args(["peers", "--json", "--node", &first.url]).expect_code(0).json();
        let known = peers.as_array().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["url"] == format!("iroh://{second_id}") && r["path"] == "direct")
        });
        if known {
            break;
        }
        assert!(Instant::now() < deadline, "the first node never learnt the second: {peers}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_node_whose_key_does_not_match_the_ticket_is_refused() {
    let data = pattern(1 << 20, 3);
    let (mut honest, _a) = start(&[("f.bin", &data)], &[]);
    let (mut other, _b) = start(&[("f.bin", &pattern(1 << 20, 4))], &[]);
    honest.wait_until_sharing(&["f.bin"]);
    other.wait_until_sharing(&["f.bin"]);
    // The honest node's id with the other node's addresses: whoever answers there cannot prove
    // the key, so nothing is downloaded.
    let mut forged = shoal_node::proto::ticket::Ticket::parse(&other.ticket()).unwrap();
    forged.id = shoal_node::proto::ticket::Ticket::parse(&honest.id()).unwrap().id;
    let out = tempfile::tempdir().unwrap();
    let failed = get_into(out.path(), &["f.bin", "--peer", &forged.encode(), "--retry-for", "1"]);
    assert_ne!(failed.code(), Some(0), "{}", failed.describe());
    assert!(!out.path().join("f.bin").exists());
    // And a ticket that is not one is a clear error.
    let bad = get_into(out.path(), &["f.bin", "--peer", "shoal1notaticket"]);
    assert_eq!(bad.code(), Some(1), "{}", bad.describe());
    assert!(bad.stderr().contains("ticket is damaged"), "{}", bad.describe());
}

#[test]
fn the_owner_proves_itself_by_key_over_iroh() {
    let (mut node, _tmp) = start(&[("a.txt", b"a")], &[]);
    let ticket = node.ticket();
    // The CLI on the node's own state directory dials with its client key, which the node
    // knows as the owner's: an owner-only command passes without the secret.
    let mut own = shoal();
    own.args(["shell", "--node", &ticket, "--state", node.state.to_str().unwrap()]);
    let mine = run(own, "cancel nothing.iso\nexit\n");
    let said = format!("{}{}", mine.stdout(), mine.stderr());
    // Past the owner check, the node looked for the download and has none (fault 100).
    assert!(said.contains("fault 100") && !said.contains("fault 200"), "{}", mine.describe());
    // Another state directory's key is a stranger's.
    let stranger_state = tempfile::tempdir().unwrap();
    let mut stranger = shoal();
    stranger.args(["shell", "--node", &ticket, "--state", stranger_state.path().to_str().unwrap()]);
    let theirs = run(stranger, "cancel nothing.iso\nexit\n");
    let all = format!("{}{}", theirs.stdout(), theirs.stderr());
    assert!(all.contains("fault 200"), "{}", theirs.describe());
}

/// The seed node's script (a Python 3 port of the seed's node).
const SEED_NODE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../node/tests/python/seed_node.py");

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` and returns it with the rest of the first stdout line starting `prefix`.
fn spawn_announcing(mut command: Command, prefix: &str) -> (Process, String) {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = Process(command.spawn().unwrap_or_else(|e| panic!("starting {command:?}: {e}")));
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + common::START_TIMEOUT;
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("{command:?} printed no `{prefix}` line"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return (child, rest.trim().to_string());
        }
    }
}

#[test]
fn a_seed_node_an_http_node_and_an_iroh_node_form_one_network() {
    let seed_dir = tempfile::tempdir().unwrap();
    std::fs::write(seed_dir.path().join("seed.txt"), "from the seed\n").unwrap();
    let mut python = Command::new("python3");
    python.arg(SEED_NODE).arg(seed_dir.path()).arg("seed-secret");
    let (_seed, seed_url) = spawn_announcing(python, "listening on ");

    let h_data = pattern(2 << 20, 11);
    let (http_node, _h) = start(&[("h.bin", &h_data)], &["--no-iroh", "--peer", &seed_url]);
    http_node.wait_until_sharing(&["h.bin"]);
    let i_data = pattern(2 << 20, 12);
    let (mut iroh_node, _i) = start(&[("i.bin", &i_data)], &["--peer", &http_node.url]);
    iroh_node.wait_until_sharing(&["i.bin"]);
    let iroh_id = iroh_node.id();
    let ticket = iroh_node.ticket();

    // A client that knows only the iroh node's ticket finds and fetches all three nodes' files.
    let out = tempfile::tempdir().unwrap();
    let state = out.path().join("state");
    for (name, want) in [("i.bin", &i_data[..]), ("h.bin", &h_data[..])] {
        get_into(out.path(), &[name, "--peer", &ticket]).expect_code(0);
        assert_eq!(read(&out.path().join(name)), want, "{name}");
    }
    // The seed's own flow, driven over iroh: the owner's shell tells the iroh node to fetch a
    // file only the seed node has; the query goes iroh node -> HTTP node -> seed node.
    let mut shell = shoal();
    shell.args(["shell", "--node", &ticket, "--state", iroh_node.state.to_str().unwrap()]);
    let fetched = run(shell, "fetch seed.txt\nexit\n");
    assert!(iroh_node.dir.join("seed.txt").exists(), "{}", fetched.describe());
    assert_eq!(read(&iroh_node.dir.join("seed.txt")), b"from the seed\n");
    // A search sent over iroh comes back with the shoal nodes' files, each holder named so
    // the client can reach it.
    let found = run_args(["search", "*.bin", "--node", &ticket, "--state", state.to_str().unwrap(), "--json"]).json();
    let text = found.to_string();
    assert!(text.contains("h.bin") && text.contains("i.bin"), "{text}");
    assert!(text.contains(&format!("iroh://{iroh_id}")), "{text}");
    assert!(text.contains(&http_node.url), "{text}");
}

#[test]
fn one_download_mixes_an_iroh_peer_a_tcp_peer_and_a_mirror() {
    let data = pattern(24 << 20, 21);
    let (mut over_iroh, _a) = start(&[("mix.bin", &data)], &["--max-upload-rate", "4M"]);
    let (over_tcp, _b) = start(&[("mix.bin", &data)], &["--no-iroh", "--max-upload-rate", "4M"]);
    over_iroh.wait_until_sharing(&["mix.bin"]);
    over_tcp.wait_until_sharing(&["mix.bin"]);
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("mix.bin"), &data).unwrap();
    let nginx = shoal_testkit::Nginx::start(shoal_testkit::NginxConfig {
        root: root.path().to_path_buf(),
        server: "limit_rate 2m;".into(),
        http: String::new(),
        tls: None,
    });
    let mirror = format!("{}/mix.bin", nginx.url());
    let ticket = over_iroh.ticket();
    let out = tempfile::tempdir().unwrap();
    let got = get_into(
        out.path(),
        &["mix.bin", &mirror, "--peer", &ticket, "--peer", &over_tcp.url, "--json", "-x", "1"],
    )
    .expect_code(0);
    assert_eq!(read(&out.path().join("mix.bin")), data);
    let done: serde_json::Value = got
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "done")
        .expect("a done event");
    let bytes_from = |prefix: &str| -> u64 {
        done["sources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["url"].as_str().unwrap_or_default().starts_with(prefix))
            .map(|s| s["bytes"].as_u64().unwrap_or(0))
            .sum()
    };
    assert!(bytes_from("iroh://") > 0, "{done}");
    assert!(bytes_from(&over_tcp.url) > 0, "{done}");
    assert!(bytes_from(&mirror) > 0, "{done}");
}

/// A network namespace made for one test, deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("shoal-{tag}-{}", std::process::id());
        // A namespace left by an earlier run of this process id would be in the way.
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        ip(&["netns", "add", &name]);
        in_ns(&name, "ip", &["link", "set", "lo", "up"]);
        Netns(name)
    }

    /// `shoal` inside the namespace, with the environment of [`common::shoal`].
    fn shoal(&self) -> Command {
        common::shoal_in(&self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A file crossing through `shoal relay` in a namespace where every UDP packet is dropped, so
/// QUIC cannot go direct; `tls` serves the relay over https with a CA of the test's own (and
/// QUIC address discovery, on its fixed port inside the namespace).
fn relay_carries_the_file(tag: &str, tls: bool) {
    let ns = Netns::new(tag);
    in_ns(&ns.0, "iptables", &["-A", "OUTPUT", "-p", "udp", "-j", "DROP"]);
    in_ns(&ns.0, "ip6tables", &["-A", "OUTPUT", "-p", "udp", "-j", "DROP"]);
    let pki = shoal_testkit::Pki::new("relay");
    let mut relay = ns.shoal();
    relay.args(["relay", "--listen", "127.0.0.1:0"]);
    let mut trust: Vec<String> = Vec::new();
    if tls {
        relay.arg("--tls-cert").arg(&pki.server.cert).arg("--tls-key").arg(&pki.server.key);
        relay.args(["--https-listen", "127.0.0.1:0"]);
        trust = vec!["--ca-cert".into(), pki.ca_cert.to_string_lossy().into_owned()];
    }
    let (_relay, relay_url) = spawn_announcing(relay, "relay listening on ");
    assert_eq!(relay_url.starts_with("https://"), tls, "{relay_url}");

    let data = pattern(4 << 20, 31);
    let mut flags = vec!["--relay", relay_url.as_str()];
    flags.extend(trust.iter().map(String::as_str));
    let (mut node, _tmp) = start_with(ns.shoal(), &[("far.bin", &data)], &flags);
    let ticket = node.ticket();
    let parsed = shoal_node::proto::ticket::Ticket::parse(&ticket).unwrap();
    assert_eq!(
        parsed.relay.as_deref().map(|r| r.trim_end_matches('/')),
        Some(relay_url.as_str()),
        "the ticket names the home relay"
    );
    let out = tempfile::tempdir().unwrap();
    let mut command = ns.shoal();
    command.args(["get", "far.bin", "--peer", &ticket]).args(&flags);
    command.arg("--state").arg(out.path().join("state")).arg("-o").arg(out.path());
    let got = run(command, "").expect_code(0);
    assert_eq!(read(&out.path().join("far.bin")), data);
    assert!(got.stdout().contains("reached relay"), "{}", got.describe());
}

#[test]
fn a_relay_carries_the_file_when_direct_paths_are_blocked() {
    relay_carries_the_file("relay", false);
}

#[test]
fn a_relay_over_https_with_its_own_ca_carries_the_file() {
    relay_carries_the_file("relaytls", true);
}

#[test]
fn nodes_on_one_lan_find_each_other_with_no_peer_list() {
    let (one, two) = (Netns::new("lan1"), Netns::new("lan2"));
    // One LAN: a veth pair between the two namespaces.
    let (a, b) = (
        format!("sh{}a", std::process::id() % 100_000),
        format!("sh{}b", std::process::id() % 100_000),
    );
    ip(&[
        "link", "add", &a, "netns", &one.0, "type", "veth", "peer", "name", &b, "netns", &two.0,
    ]);
    in_ns(&one.0, "ip", &["addr", "add", "10.231.7.1/24", "dev", &a]);
    in_ns(&two.0, "ip", &["addr", "add", "10.231.7.2/24", "dev", &b]);
    in_ns(&one.0, "ip", &["link", "set", &a, "up"]);
    in_ns(&two.0, "ip", &["link", "set", &b, "up"]);
    // A LAN has a default route; multicast (mDNS) goes out on it.
    in_ns(&one.0, "ip", &["route", "add", "default", "dev", &a]);
    in_ns(&two.0, "ip", &["route", "add", "default", "dev", &b]);

    let data = pattern(1 << 20, 41);
    let (mut first, _a) = start_with(one.shoal(), &[("lan.bin", &data)], &["--mdns"]);
    let first_id = first.id();
    let (second, _b) = start_with(two.shoal(), &[], &["--mdns"]);
    // The second node learns the first from its announcement alone, and marks it local.
    let deadline = Instant::now() + Duration::from_secs(30);
    let row = loop {
        let mut command = two.shoal();
        command.args(["peers", "--json", "--node", &second.url]);
        let peers = run(command, "").expect_code(0).json();
        let found = peers
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["url"] == format!("iroh://{first_id}")).cloned());
        if let Some(row) = found.filter(|r| r["local"] == true) {
            break row;
        }
        assert!(Instant::now() < deadline, "no local peer after 30 s: {peers}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(row["local"], true);
    let mut table = two.shoal();
    table.args(["peers", "--node", &second.url]);
    let shown = run(table, "").expect_code(0);
    assert!(shown.stdout().contains("local"), "{}", shown.describe());
}

/// `shoal relay --allow` serves the listed node ids alone: with UDP blocked, a listed node's
/// download crosses the relay, and an unlisted one (a fresh key) gets nowhere.
#[test]
fn a_relay_with_a_list_serves_only_the_listed_nodes() {
    let ns = Netns::new("relayallow");
    in_ns(&ns.0, "iptables", &["-A", "OUTPUT", "-p", "udp", "-j", "DROP"]);
    in_ns(&ns.0, "ip6tables", &["-A", "OUTPUT", "-p", "udp", "-j", "DROP"]);
    let tmp = tempfile::tempdir().unwrap();
    let state = |name: &str| tmp.path().join(name).to_string_lossy().into_owned();
    let id_line = |dir: &str, prefix: &str| {
        let shown = run_args(["id", "--state", dir]).expect_code(0);
        let line = shown.stdout().lines().find_map(|l| l.strip_prefix(prefix)).map(str::to_string);
        line.unwrap_or_else(|| panic!("no `{prefix}` line: {}", shown.describe()))
    };
    let (node_state, friend_state, stranger_state) = (state("node"), state("friend"), state("stranger"));
    let node_id = id_line(&node_state, "node id ");
    let friend_id = id_line(&friend_state, "owner id ");

    let mut relay = ns.shoal();
    relay.args(["relay", "--listen", "127.0.0.1:0", "--allow", &node_id, "--allow", &friend_id]);
    let (_relay, relay_url) = spawn_announcing(relay, "relay listening on ");

    let data = pattern(1 << 20, 41);
    let dir = tmp.path().join("shared");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("listed.bin"), &data).unwrap();
    let mut command = ns.shoal();
    command.arg("serve").arg("--dir").arg(&dir).args(["--state", &node_state]);
    command.args(["--listen", "127.0.0.1:0", "--secret", "x", "--relay", &relay_url]);
    let mut node = Node::spawn(command, dir.clone(), node_state.clone().into());
    let ticket = node.ticket();

    let get_as = |state: &str, out: &Path| {
        let mut command = ns.shoal();
        command.args(["get", "listed.bin", "--peer", &ticket, "--relay", &relay_url, "--retry-for", "5"]);
        command.args(["--state", state]).arg("-o").arg(out);
        run(command, "")
    };
    let friend_out = tempfile::tempdir().unwrap();
    let got = get_as(&friend_state, friend_out.path()).expect_code(0);
    assert_eq!(read(&friend_out.path().join("listed.bin")), data);
    assert!(got.stdout().contains("reached relay"), "{}", got.describe());

    let stranger_out = tempfile::tempdir().unwrap();
    let got = get_as(&stranger_state, stranger_out.path());
    assert_ne!(got.code(), Some(0), "an unlisted node used the relay: {}", got.describe());
    assert!(!stranger_out.path().join("listed.bin").exists());
}
