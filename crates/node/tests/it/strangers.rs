//! What strangers may make a node do (issue 16): the relays a stranger's ticket names, the
//! address policy of a node reachable from other machines, and versions of a file that
//! strangers substitute in the owner's fetch.

use shoal_xmlrpc::Value;

use super::util::{SECRET, TestNode, s};

/// A listener that counts the connections made to it, never answering.
struct Trap {
    listener: std::net::TcpListener,
    pub url: String,
}

impl Trap {
    fn new() -> Trap {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Trap { listener, url }
    }

    /// Connections made so far (taken from the backlog).
    fn hits(&self) -> usize {
        let mut hits = 0;
        while self.listener.accept().is_ok() {
            hits += 1;
        }
        hits
    }
}

/// A node id whose key no one holds: the probe over iroh can only fail.
fn stranger_id() -> [u8; 32] {
    *iroh::SecretKey::from_bytes(&rand::random::<[u8; 32]>()).public().as_bytes()
}

/// A node on a private address (as on a LAN) must not be sent to its own loopback by a
/// stranger's ticket: the relay a stranger names passes the address policy like its addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_ticket_cannot_send_the_node_to_a_relay_the_policy_forbids() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = format!("http://{}", listener.local_addr().unwrap());
    // The node has a relay of its own (one that never answers), so it speaks to relays at all.
    let home = Trap::new();
    let home_relay = format!("{}/", home.url);
    let node = TestNode::start_on(listener, tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), |o| {
        o.url = Some("http://10.77.0.1:4242".into());
        o.iroh = Some(shoal_node::options::IrohOptions {
            relays: vec![home_relay],
            ..shoal_node::options::IrohOptions::local_only()
        });
    })
    .await;
    let trap = Trap::new();
    let ticket = shoal_node::proto::ticket::Ticket {
        id: stranger_id(),
        relay: Some(format!("{}/", trap.url)),
        addrs: Vec::new(),
    };
    // The probe (a dial over iroh, at most 5 s) is over when hello answers.
    let answer = super::util::call(&local, "hello", vec![s(&ticket.encode())]).await;
    assert_eq!(answer, Ok(Value::Integer(0)), "hello keeps the seed's contract");
    assert_eq!(trap.hits(), 0, "the node opened a connection to the relay a stranger named");
    assert!(node.node.api().peers().is_empty());
}

/// The default `serve` listens on every address but names itself `http://127.0.0.1:PORT`. It is
/// reachable from other machines, so strangers must not get the loopback policy (a hello could
/// make it call any port of its own loopback), and `Host` is checked as on a loopback node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_listening_on_every_address_gives_strangers_no_loopback() {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let node = TestNode::start_on(listener, tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), |_| {}).await;
    assert_eq!(node.url, format!("http://127.0.0.1:{port}"));
    let trap = Trap::new();
    let answer = node.call("hello", vec![s(&trap.url)]).await;
    assert!(answer.is_err(), "hello of a loopback URL was accepted: {answer:?}");
    assert_eq!(trap.hits(), 0, "a stranger's hello made the node call its own loopback");

    // A rebound name is refused; the node's own names pass.
    let get = |host: String| {
        let url = format!("http://127.0.0.1:{port}/api/v1/status");
        async move {
            let response = reqwest::Client::new().get(url).header("host", host).send().await.unwrap();
            response.status().as_u16()
        }
    };
    assert_eq!(get(format!("rebound.example:{port}")).await, 403);
    assert_ne!(get(format!("127.0.0.1:{port}")).await, 403);
    assert_ne!(get(format!("localhost:{port}")).await, 403);
}

/// Two strangers with their own `report.txt` against the owner's configured peer: they are more,
/// but the configured peer's version is the one fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_do_not_outvote_the_owners_peer_in_a_fetch() {
    let honest = TestNode::start().await;
    honest.add("report.txt", b"the honest report\n").await;
    let mut strangers = Vec::new();
    for _ in 0..2 {
        let stranger = TestNode::start().await;
        stranger.add("report.txt", b"a substituted report\n").await;
        strangers.push(stranger);
    }
    let honest_url = honest.url.clone();
    let owner = TestNode::start_with(|o| o.peers = vec![honest_url]).await;
    owner.knows(&strangers.iter().collect::<Vec<_>>()).await;
    assert_eq!(owner.call("fetch", vec![s("report.txt"), s(SECRET)]).await, Ok(Value::Integer(0)));
    assert_eq!(std::fs::read(owner.path("report.txt")).unwrap(), b"the honest report\n");
}

/// Learnt peers that disagree on what a name is: the fetch stops, says so, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_stops_when_strangers_disagree_on_a_name() {
    let a = TestNode::start().await;
    a.add("report.txt", b"one report\n").await;
    let b = TestNode::start().await;
    let c = TestNode::start().await;
    b.add("report.txt", b"another report\n").await;
    c.add("report.txt", b"another report\n").await;
    let owner = TestNode::start().await;
    owner.knows(&[&a, &b, &c]).await;
    let fault = owner.call("fetch", vec![s("report.txt"), s(SECRET)]).await.expect_err("a fault");
    assert_eq!(fault.code, shoal_node::proto::faults::AMBIGUOUS, "{fault:?}");
    assert!(fault.message.contains("2 versions"), "{}", fault.message);
    assert!(!owner.path("report.txt").exists());
}

/// A folder fetch takes the owner's configured peers' listing alone; among learnt peers, a
/// listing with a path the others lack stops the fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_adds_no_file_to_a_folder_fetch() {
    let honest = TestNode::start().await;
    honest.add("photos/a.jpg", b"picture a").await;
    honest.add("photos/b.jpg", b"picture b").await;
    let stranger = TestNode::start().await;
    stranger.add("photos/a.jpg", b"picture a").await;
    stranger.add("photos/b.jpg", b"picture b").await;
    stranger.add("photos/evil.desktop", b"[Desktop Entry]\nExec=evil\n").await;

    let honest_url = honest.url.clone();
    let owner = TestNode::start_with(|o| o.peers = vec![honest_url]).await;
    owner.knows(&[&stranger]).await;
    assert_eq!(owner.call("fetch", vec![s("photos/"), s(SECRET)]).await, Ok(Value::Integer(0)));
    assert_eq!(std::fs::read(owner.path("photos/b.jpg")).unwrap(), b"picture b");
    assert!(!owner.path("photos/evil.desktop").exists(), "a stranger's file was added");

    // The same two as learnt peers only: they disagree, so nothing is fetched.
    let alone = TestNode::start().await;
    alone.knows(&[&honest, &stranger]).await;
    let fault = alone.call("fetch", vec![s("photos/"), s(SECRET)]).await.expect_err("a fault");
    assert_eq!(fault.code, shoal_node::proto::faults::AMBIGUOUS, "{fault:?}");
    assert!(fault.message.contains("evil.desktop"), "{}", fault.message);
    assert!(!alone.path("photos").exists(), "something was fetched");
}
