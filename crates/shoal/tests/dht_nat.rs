//! A holder behind a NAT found through the Mainline DHT alone: a lab of network namespaces (an
//! "internet" bridge, a relay, a DHT bootstrap node and two homes, each a router that
//! masquerades and drops unsolicited packets with one host behind it). The holder in home A
//! knows only the bootstrap node and the relay; the seeker in home B knows the same and the
//! file's content id. The BEP 5 address the holder's announce leaves on the DHT is its
//! router's, which leads nowhere; the holder's node id in the id's record of holders behind NAT
//! and its relay in its address record lead the seeker to it over iroh.
//!
//! Every process runs with `SHOAL_LOCAL_ONLY=1` inside the lab's namespaces, none of which is
//! connected to the machine's real interfaces. Needs root, iproute2 and iptables.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Output, START_TIMEOUT, in_ns, ip, read, run, shoal_in};

/// The lab's "internet" (a documentation range would be refused by shoal's address policy).
const RELAY_IP: &str = "11.22.0.10";
const ROUTER_A_IP: &str = "11.22.0.11";
const ROUTER_B_IP: &str = "11.22.0.12";
const BOOT_IP: &str = "11.22.0.20";
const HOST_A_IP: &str = "10.1.0.2";

/// Longest the holder may take to have its content id on the DHT.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest the seeker's `shoal get` may run.
const GET_TIMEOUT: Duration = Duration::from_secs(90);

/// The lab's namespaces, deleted (with whatever still runs in them) when dropped, in reverse
/// order of creation. A namespace is recorded as soon as it exists, so a set-up that fails
/// half-way is cleaned up too.
struct Lab {
    namespaces: Vec<String>,
    /// Short, unique per process: interface names are at most 15 bytes.
    tag: String,
}

impl Lab {
    fn new() -> Lab {
        Lab {
            namespaces: Vec::new(),
            tag: format!("d{}", std::process::id() % 100_000),
        }
    }

    /// A namespace with loopback up and IPv6 off (the scenario is IPv4 NAT).
    fn namespace(&mut self, role: &str) -> String {
        let name = format!("shoal-dhtnat-{role}-{}", std::process::id());
        // A namespace left by an earlier run of this process id would be in the way.
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        ip(&["netns", "add", &name]);
        self.namespaces.push(name.clone());
        in_ns(&name, "ip", &["link", "set", "lo", "up"]);
        in_ns(&name, "sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        in_ns(&name, "sysctl", &["-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        name
    }

    /// An interface name unique to this process.
    fn ifname(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.tag)
    }

    /// Plugs `ns` into the internet's bridge through a veth pair, with `addr`/24 on its end.
    fn plug(&self, inet: &str, ns: &str, role: &str, addr: &str) -> String {
        let (port, wan) = (self.ifname(&format!("p{role}")), self.ifname(&format!("w{role}")));
        ip(&[
            "link", "add", &wan, "netns", ns, "type", "veth", "peer", "name", &port, "netns", inet,
        ]);
        in_ns(inet, "ip", &["link", "set", &port, "master", "br0", "up"]);
        in_ns(ns, "ip", &["addr", "add", &format!("{addr}/24"), "dev", &wan]);
        in_ns(ns, "ip", &["link", "set", &wan, "up"]);
        wan
    }

    /// A home: a router on the internet at `wan_ip` that masquerades what leaves and drops
    /// what arrives unsolicited, and a host at `10.N.0.2` behind it. Returns the router's
    /// namespace and its wan interface, and the host's namespace.
    fn home(&mut self, inet: &str, n: u8, wan_ip: &str) -> (String, String, String) {
        let router = self.namespace(&format!("r{n}"));
        let host = self.namespace(&format!("h{n}"));
        let wan = self.plug(inet, &router, &format!("r{n}"), wan_ip);
        let (lan, eth) = (self.ifname(&format!("l{n}")), self.ifname(&format!("e{n}")));
        ip(&[
            "link", "add", &lan, "netns", &router, "type", "veth", "peer", "name", &eth, "netns", &host,
        ]);
        in_ns(&router, "ip", &["addr", "add", &format!("10.{n}.0.1/24"), "dev", &lan]);
        in_ns(&router, "ip", &["link", "set", &lan, "up"]);
        in_ns(&router, "sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        let iptables = |args: &[&str]| in_ns(&router, "iptables", args);
        iptables(&["-t", "nat", "-A", "POSTROUTING", "-o", &wan, "-j", "MASQUERADE"]);
        // As home routers do, only answers come in. The drops happen before conntrack
        // confirms the packets, so an unsolicited one leaves no entry that could take a
        // port a mapping needs.
        for chain in ["FORWARD", "INPUT"] {
            iptables(&[
                "-A",
                chain,
                "-i",
                &wan,
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "ACCEPT",
            ]);
            iptables(&["-A", chain, "-i", &wan, "-j", "DROP"]);
        }
        in_ns(&host, "ip", &["addr", "add", &format!("10.{n}.0.2/24"), "dev", &eth]);
        in_ns(&host, "ip", &["link", "set", &eth, "up"]);
        in_ns(&host, "ip", &["route", "add", "default", "via", &format!("10.{n}.0.1")]);
        (router, wan, host)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            // Whatever still runs inside was started by this test.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).stderr(Stdio::null()).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A long-running process (killed when dropped) whose stdout lines are kept and whose stderr
/// goes to a file.
struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    log: PathBuf,
}

impl Daemon {
    fn start(mut command: Command, log: &Path) -> Daemon {
        let stderr = std::fs::File::create(log).expect("creating a log file");
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
        let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        // Reads to the end, so the process never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                kept.lock().unwrap().push(line);
            }
        });
        Daemon {
            child,
            lines,
            log: log.to_path_buf(),
        }
    }

    /// The rest of the first stdout line that starts with `prefix` (bounded wait).
    fn line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find_map(|l| l.strip_prefix(prefix).map(|r| r.trim().to_string()));
            if let Some(rest) = found {
                return rest;
            }
            let ended = self.child.try_wait().ok().flatten();
            if ended.is_some() || Instant::now() >= deadline {
                panic!(
                    "no `{prefix}` line (exit status {ended:?}); stdout:\n{}\nstderr:\n{}",
                    self.lines.lock().unwrap().join("\n"),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` to its end, killing it and panicking after `limit`.
fn run_within(mut command: Command, limit: Duration, dir: &Path) -> Output {
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {limit:?}; stdout:\n{}\nstderr:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap_or_default(),
        stderr: std::fs::read(&err).unwrap_or_default(),
    }
}

/// `len` bytes from a xorshift generator seeded from the clock and the process id.
fn random_bytes(len: usize) -> Vec<u8> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut state = (nanos ^ (u64::from(std::process::id()) << 32)) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `shoal dht --json` on the node at `url`, run inside `ns`.
fn dht_state(ns: &str, url: &str) -> serde_json::Value {
    let mut command = shoal_in(ns);
    command.args(["dht", "--json", "--node", url, "--secret", "x"]);
    run(command, "").json()
}

#[test]
fn a_holder_behind_nat_is_found_through_the_dht_and_reached_through_the_relay() {
    // Declared first, so dropped last: the processes end before their namespaces go.
    let mut lab = Lab::new();
    let inet = lab.namespace("inet");
    in_ns(&inet, "ip", &["link", "add", "br0", "type", "bridge"]);
    in_ns(&inet, "ip", &["link", "set", "br0", "up"]);
    let relay_ns = lab.namespace("relay");
    lab.plug(&inet, &relay_ns, "rl", RELAY_IP);
    let boot_ns = lab.namespace("boot");
    lab.plug(&inet, &boot_ns, "bt", BOOT_IP);
    let (router_a, router_a_wan, home_a) = lab.home(&inet, 1, ROUTER_A_IP);
    let (_, _, home_b) = lab.home(&inet, 2, ROUTER_B_IP);
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| {
        let path = tmp.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    };

    // The relay, on the internet.
    let mut relay_cmd = shoal_in(&relay_ns);
    relay_cmd.args(["relay", "--listen", &format!("{RELAY_IP}:0")]);
    let mut relay = Daemon::start(relay_cmd, &tmp.path().join("relay.log"));
    let relay_url = relay.line("relay listening on ");

    // The bootstrap node: a DHT node in server mode on the internet, sharing nothing.
    let mut boot_cmd = shoal_in(&boot_ns);
    boot_cmd
        .arg("serve")
        .arg("--dir")
        .arg(dir("boot-share"))
        .arg("--state")
        .arg(dir("boot-state"));
    boot_cmd.args(["--listen", &format!("{BOOT_IP}:0"), "--dht-listen", &format!("{BOOT_IP}:0")]);
    boot_cmd.args(["--relay", &relay_url, "--secret", "x"]);
    let mut boot = Daemon::start(boot_cmd, &tmp.path().join("boot.log"));
    let boot_dht = boot.line("DHT node on udp ");
    assert!(boot_dht.starts_with(&format!("{BOOT_IP}:")), "{boot_dht}");

    // The holder, in home A: it knows the bootstrap node and the relay, nothing else.
    let data = random_bytes(4 << 20);
    let content_id = shoal_index::hash_bytes(&data).id.to_string();
    let share = dir("holder-share");
    std::fs::write(share.join("behind-nat.bin"), &data).unwrap();
    let mut holder_cmd = shoal_in(&home_a);
    holder_cmd
        .arg("serve")
        .arg("--dir")
        .arg(&share)
        .arg("--state")
        .arg(dir("holder-state"));
    holder_cmd.args(["--listen", &format!("{HOST_A_IP}:0"), "--dht-bootstrap", &boot_dht]);
    holder_cmd.args(["--relay", &relay_url, "--secret", "x"]);
    let mut holder = Daemon::start(holder_cmd, &tmp.path().join("holder.log"));
    let holder_url = holder.line("listening on ");
    let holder_id = holder.line("node id ");
    // Router A counts (and drops) the connections that arrive for the holder's HTTP port: the
    // port its BEP 5 announce names at the router's address.
    let http_port = holder_url.rsplit(':').next().unwrap().trim_end_matches('/').to_string();
    let rule = format!("-I INPUT 1 -i {router_a_wan} -p tcp --dport {http_port} -m conntrack --ctstate NEW -j DROP");
    in_ns(&router_a, "iptables", &rule.split_whitespace().collect::<Vec<_>>());

    // The holder has announced the id (the BEP 5 announce or its node id in the record of
    // holders behind NAT) and put its address record (its relay) on the DHT.
    let deadline = Instant::now() + ANNOUNCE_TIMEOUT;
    let state = loop {
        let state = dht_state(&home_a, &holder_url);
        // (`published`, where the node reports it, says the address record is on the DHT.)
        let published = state.get("published").is_none_or(|p| p == true);
        if state["announced"].as_u64().unwrap_or(0) >= 1 && published {
            break state;
        }
        assert!(
            Instant::now() < deadline,
            "the holder did not announce within {ANNOUNCE_TIMEOUT:?}: {state}\nholder's stderr:\n{}\nbootstrap's stderr:\n{}",
            holder.stderr(),
            boot.stderr()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // Behind its NAT, nobody reaches the holder's DHT node unasked.
    assert_eq!(state["reachable"], false, "{state}");

    // The seeker, in home B: the content id, the bootstrap node and the relay.
    let out = dir("seeker-out");
    let mut get = shoal_in(&home_b);
    get.args(["get", &content_id, "--dht-bootstrap", &boot_dht, "--relay", &relay_url]);
    get.args(["--retry-for", "60"]);
    get.arg("--state").arg(dir("seeker-state")).arg("-o").arg(&out);
    let got = run_within(get, GET_TIMEOUT, &dir("seeker-run"));
    let context = || {
        format!(
            "{}\nholder's stderr:\n{}\nbootstrap's stderr:\n{}\nrelay's stderr:\n{}",
            got.describe(),
            holder.stderr(),
            boot.stderr(),
            relay.stderr()
        )
    };
    assert_eq!(got.code(), Some(0), "{}", context());
    assert_eq!(read(&out.join("behind-nat.bin")), data, "{}", context());

    // Every byte came from the holder by its node id: the BEP 5 address (router A's, behind
    // which nothing answers unasked) gave none, so the id came from the record of holders
    // behind NAT and the path from the holder's relay.
    let stdout = got.stdout();
    let sources: Vec<&str> = stdout.lines().filter(|l| l.contains("% ") && l.contains(" bytes ")).collect();
    assert!(!sources.is_empty(), "no source lines: {}", context());
    for line in &sources {
        assert!(
            line.contains(&format!("iroh://{holder_id}/")),
            "a source other than the holder: {line}\n{}",
            context()
        );
    }
    assert!(!stdout.contains(&format!("http://{ROUTER_A_IP}")), "{}", context());
    assert!(stdout.contains(&format!("node {holder_id} reached ")), "{}", context());
    // The seeker did find the BEP 5 address and tried it, and router A turned it away.
    let counted = Command::new("ip")
        .args(["netns", "exec", &router_a, "iptables", "-L", "INPUT", "1", "-v", "-x", "-n"])
        .output()
        .unwrap();
    let packets: u64 = String::from_utf8_lossy(&counted.stdout)
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    assert!(
        packets > 0,
        "router A saw no connection to {ROUTER_A_IP}:{http_port}: {}",
        context()
    );
}
