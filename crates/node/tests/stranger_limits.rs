//! Strangers in numbers: one key or one address opening many iroh connections, connections that
//! never open a stream, a flood over one transport while the other and the owner's key still get
//! in, and wrong secrets spread over many addresses. Nodes run in this process with their iroh
//! endpoint on loopback (`IrohOptions::local_only`); the strangers dial with `iroh::Endpoint`
//! directly, one QUIC connection per `connect`, and speak HTTP/1.1 on a stream as the node's own
//! client does. Callers with other addresses over TCP are clients bound to 127.0.0.x. No test
//! sleeps to synchronise; every wait is a bounded poll.

#[path = "it/util.rs"]
mod util;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use iroh::endpoint::Connection;
use iroh::{EndpointAddr, SecretKey, TransportAddr};
use shoal_node::NodeOptions;
use shoal_node::net::iroh::{ALPN, Iroh};
use shoal_node::options::IrohOptions;
use shoal_node::proto::faults::{ACCESS_DENIED, NOT_FOUND};
use shoal_node::proto::ticket::Ticket;
use shoal_xmlrpc::{Fault, Value};
use util::{SECRET, TestNode, s};

/// The longest any single step may take before the test fails instead of hanging.
const BOUND: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, work: impl Future<Output = T>) -> T {
    match tokio::time::timeout(BOUND, work).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: nothing within {BOUND:?}"),
    }
}

/// Polls `check` every 50 ms until it holds, for at most [`BOUND`].
async fn poll_until<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + BOUND;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {BOUND:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node with its iroh endpoint on loopback, its options tuned by `tune`.
async fn iroh_node(tune: impl FnOnce(&mut NodeOptions)) -> (TestNode, EndpointAddr) {
    let node = TestNode::start_with(|o| {
        o.iroh = Some(IrohOptions::local_only());
        tune(o);
    })
    .await;
    let ticket = node.node.ticket(Duration::from_secs(5)).await.expect("a ticket");
    let ticket = Ticket::parse(&ticket).expect("a valid ticket");
    let id = iroh::EndpointId::from_bytes(&ticket.id).expect("an id");
    let addr = EndpointAddr::from_parts(id, ticket.addrs.iter().map(|a| TransportAddr::Ip(*a)));
    (node, addr)
}

/// An endpoint that dials with `key` (nothing reaching past loopback).
async fn dialler(key: SecretKey) -> Iroh {
    Iroh::bind(key, &IrohOptions::local_only(), false).await.expect("an endpoint")
}

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

/// A new connection to the node, or `None` when it is refused before or at the handshake.
async fn connect(from: &Iroh, node: &EndpointAddr) -> Option<Connection> {
    bounded("connecting", from.endpoint().connect(node.clone(), ALPN)).await.ok()
}

/// Sends one raw HTTP/1.1 request on a new stream of `conn`; the status and body, or `None`
/// when the connection is closed (refused after the handshake) or the stream fails.
async fn exchange(conn: &Connection, request: &[u8]) -> Option<(u16, String)> {
    bounded("an exchange over iroh", async {
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        send.write_all(request).await.ok()?;
        let answer = recv.read_to_end(1 << 20).await.ok()?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((status, body))
    })
    .await
}

async fn get(conn: &Connection, path: &str) -> Option<u16> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: node.iroh\r\nConnection: close\r\n\r\n");
    exchange(conn, request.as_bytes()).await.map(|(status, _)| status)
}

/// An XML-RPC call over `conn`.
async fn rpc(conn: &Connection, method: &str, params: Vec<Value>) -> Option<Result<Value, Fault>> {
    let body = shoal_xmlrpc::encode_call(method, &params);
    let head = format!(
        "POST / HTTP/1.1\r\nHost: node.iroh\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (_, answer) = exchange(conn, &[head.as_bytes(), body.as_bytes()].concat()).await?;
    Some(shoal_xmlrpc::decode_response(answer.as_bytes()).expect("an XML-RPC answer"))
}

/// Opens `count` connections from `from`, each asking for the file list once; the ones that
/// were answered are kept open (the others are dropped).
async fn hold(from: &Iroh, node: &EndpointAddr, count: usize) -> Vec<Connection> {
    let mut held = Vec::new();
    for _ in 0..count {
        if let Some(conn) = connect(from, node).await
            && get(&conn, "/api/v1/files").await == Some(200)
        {
            held.push(conn);
        }
    }
    held
}

fn ip(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, d))
}

/// An XML-RPC call over TCP from the address `from`.
async fn tcp_call(from: IpAddr, url: &str, method: &str, params: Vec<Value>) -> Option<Result<Value, Fault>> {
    let client = reqwest::Client::builder().local_address(from).timeout(BOUND).build().unwrap();
    let body = shoal_xmlrpc::encode_call(method, &params);
    let response = client.post(url).header("content-type", "text/xml").body(body).send().await.ok()?;
    let bytes = response.bytes().await.ok()?;
    Some(shoal_xmlrpc::decode_response(&bytes).expect("an XML-RPC answer"))
}

// ---------------------------------------------------------------------------------------------
// Connections over iroh.

#[tokio::test]
async fn one_key_holds_at_most_its_share_of_iroh_connections() {
    let (node, addr) = iroh_node(|o| o.max_iroh_per_key = 3).await;
    let stranger = dialler(key(7)).await;
    let held = hold(&stranger, &addr, 8).await;
    assert_eq!(held.len(), 3, "connections one key holds at once");
    // The cap is per key: another key gets in meanwhile.
    let other = dialler(key(8)).await;
    assert_eq!(hold(&other, &addr, 1).await.len(), 1, "another key");
    // A place given back is free again.
    held[0].close(0u32.into(), b"done");
    poll_until("a closed connection's place freed", || async {
        hold(&stranger, &addr, 1).await.len() == 1
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_iroh_connections_but_the_owner_gets_in() {
    // Loopback counted as any address, so that the loopback callers stand for one remote host.
    let (node, addr) = iroh_node(|o| {
        o.guard.loopback_exempt = false;
        o.max_per_address = 3;
    })
    .await;
    let mut held = Vec::new();
    for n in 10..16 {
        held.extend(hold(&dialler(key(n)).await, &addr, 1).await);
    }
    assert_eq!(held.len(), 3, "connections from one address, one key each");
    // The owner's key, from the same address, is not refused by the cap.
    let owner = dialler(shoal_node::node::client_key(node.state.path()).unwrap()).await;
    let conn = connect(&owner, &addr).await.expect("the owner connects");
    assert_eq!(get(&conn, "/api/v1/status").await, Some(200), "the owner's status");
    node.stop().await;
}

#[tokio::test]
async fn an_iroh_connection_that_opens_no_stream_is_closed() {
    let (node, addr) = iroh_node(|o| o.iroh_idle_timeout = Duration::from_millis(300)).await;
    let stranger = dialler(key(20)).await;
    let idle = connect(&stranger, &addr).await.expect("a connection");
    // A second connection keeps a stream open: half a request, its headers not yet ended.
    let busy = connect(&stranger, &addr).await.expect("a second connection");
    let (mut send, mut recv) = bounded("a stream", busy.open_bi()).await.unwrap();
    send.write_all(b"GET /api/v1/files HTTP/1.1\r\n").await.unwrap();
    // QUIC keep-alives would hold the first for good; the node closes it.
    poll_until("the connection with no stream closed", || async { idle.close_reason().is_some() }).await;
    // The one with a stream open stays, and its request is answered.
    assert!(busy.close_reason().is_none(), "a connection with an open stream was closed");
    send.write_all(b"Host: node.iroh\r\nConnection: close\r\n\r\n").await.unwrap();
    let answer = bounded("the answer", recv.read_to_end(1 << 20)).await.expect("an answer");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    // Once its stream is done, it has none open either.
    poll_until("the connection whose stream ended closed", || async {
        busy.close_reason().is_some()
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn strangers_filling_the_iroh_budget_leave_tcp_and_the_owner_in() {
    let (node, addr) = iroh_node(|o| {
        o.max_connections = 6;
        o.max_iroh_connections = 4;
        o.max_iroh_per_key = 2;
    })
    .await;
    // Three strangers try for four connections each: the iroh budget holds four in all.
    let (mut strangers, mut held) = (Vec::new(), Vec::new());
    for n in 30..33 {
        strangers.push(dialler(key(n)).await);
        held.extend(hold(strangers.last().unwrap(), &addr, 4).await);
    }
    assert_eq!(held.len(), 4, "strangers' iroh connections at once");
    assert!(hold(&dialler(key(33)).await, &addr, 1).await.is_empty(), "one more stranger got in");
    // Over TCP, callers still get in.
    let listed = tcp_call(ip(1), &node.url, "list", vec![]).await;
    assert!(matches!(listed, Some(Ok(_))), "a TCP caller while iroh is full: {listed:?}");
    // And the owner's key over iroh.
    let owner = dialler(shoal_node::node::client_key(node.state.path()).unwrap()).await;
    let conn = connect(&owner, &addr).await.expect("the owner connects");
    assert_eq!(get(&conn, "/api/v1/status").await, Some(200), "the owner's status");

    // The reverse: TCP connections held to its whole budget leave iroh callers in.
    for conn in held {
        conn.close(0u32.into(), b"done");
    }
    let mut streams = Vec::new();
    for _ in 0..6 {
        streams.push(tokio::net::TcpStream::connect(node.node.local_addr()).await.unwrap());
    }
    poll_until("the TCP budget spent", || async {
        tcp_call(ip(1), &node.url, "list", vec![]).await.is_none()
    })
    .await;
    let stranger = dialler(key(34)).await;
    poll_until("an iroh stranger in while TCP is full", || async {
        hold(&stranger, &addr, 1).await.len() == 1
    })
    .await;
    drop(streams);
    node.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Wrong secrets from many addresses.

#[tokio::test]
async fn wrong_secrets_from_many_addresses_spend_one_budget_but_not_the_owners_key() {
    let (node, addr) = iroh_node(|o| {
        // Loopback counted as any address: 127.0.0.x stand for strangers elsewhere (through a
        // relay, each fresh key is such an address).
        o.guard.loopback_exempt = false;
        o.guard.wrong_secrets_per_minute = 3;
        o.guard.wrong_secrets_per_minute_total = 5;
    })
    .await;
    // Five callers guess once each: none is over its own limit.
    for d in 10..15 {
        let got = tcp_call(ip(d), &node.url, "shoal.cancel", vec![s("wrong"), s("nothing.iso")]).await;
        assert_eq!(
            got.map(|r| r.map_err(|f| f.code)),
            Some(Err(ACCESS_DENIED)),
            "guess from 127.0.0.{d}"
        );
    }
    // The budget of all strangers is spent: the right secret from a new address is refused.
    let got = tcp_call(ip(20), &node.url, "shoal.cancel", vec![s(SECRET), s("nothing.iso")]).await;
    assert_eq!(
        got.map(|r| r.map_err(|f| f.code)),
        Some(Err(ACCESS_DENIED)),
        "the right secret from a stranger once the budget is spent"
    );
    // The owner's key needs no secret and is not refused: past the check, there is no such
    // download (fault 100).
    let owner = dialler(shoal_node::node::client_key(node.state.path()).unwrap()).await;
    let conn = connect(&owner, &addr).await.expect("the owner connects");
    let got = rpc(&conn, "shoal.cancel", vec![s("anything"), s("nothing.iso")]).await;
    assert_eq!(got.map(|r| r.map_err(|f| f.code)), Some(Err(NOT_FOUND)), "the owner by key");
    node.stop().await;
}
