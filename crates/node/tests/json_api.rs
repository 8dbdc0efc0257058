//! The JSON API (`/api/v1`) over real HTTP on loopback, with reqwest: the share paged, a search
//! streamed from peers as Server-Sent Events, the owner's login (a session's two halves, header
//! and cookie, or the bearer secret), downloads started, paused, resumed and finished, peers,
//! and the refusals: owner actions without login or with the cookie alone, wrong secrets, other
//! origins, requests that are not JSON, searches without the same-origin header or over the
//! rate (loopback included).

#[path = "it/util.rs"]
mod util;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value as Json, json};
use util::{SECRET, TestNode};

/// The longest any single step may take before the test fails instead of hanging.
const BOUND: Duration = Duration::from_secs(30);

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(BOUND).build().unwrap()
}

async fn get_json(url: &str) -> (u16, Json) {
    let response = client().get(url).send().await.expect("the node answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Json::Null))
}

/// A logged-in session as a browser tab holds it: the cookie (`name=value`) the browser keeps
/// and the token the page keeps and sends as `X-Shoal-Session`.
struct Session {
    cookie: String,
    token: String,
}

impl Session {
    /// Adds both halves to a request.
    fn on(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.header("cookie", &self.cookie).header("x-shoal-session", &self.token)
    }
}

/// Logs in with the secret: the session's cookie and token.
async fn login(node: &TestNode) -> Session {
    let response = client()
        .post(format!("{}/api/v1/login", node.url))
        .json(&json!({"secret": SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let body: Json = response.json().await.unwrap();
    Session {
        cookie: cookie.split(';').next().unwrap().to_string(),
        token: body["token"].as_str().unwrap_or_default().to_string(),
    }
}

async fn owner_get(node: &TestNode, session: &Session, path: &str) -> Json {
    let response = session.on(client().get(format!("{}{path}", node.url))).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

async fn owner_post(node: &TestNode, session: &Session, path: &str, body: Json) -> (u16, Json) {
    let response = session
        .on(client().post(format!("{}{path}", node.url)))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Json::Null))
}

/// Polls the download table (bounded) until the row for `name` is in `state`.
async fn wait_state(node: &TestNode, session: &Session, name: &str, state: &str) -> Json {
    let deadline = Instant::now() + BOUND;
    loop {
        let rows = owner_get(node, session, "/api/v1/downloads").await;
        if let Some(row) = rows.as_array().unwrap().iter().find(|r| r["name"] == name)
            && row["state"] == state
        {
            return row.clone();
        }
        assert!(Instant::now() < deadline, "{name} never reached {state}: {rows}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_share_is_public_and_paged_through_a_cursor() {
    let node = TestNode::start().await;
    for name in ["a.txt", "docs/b.txt", "docs/deep/c.txt", "docs/d.txt", "z.txt"] {
        node.write(name, name.as_bytes());
    }
    node.rescan().await;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let mut url = format!("{}/api/v1/files?limit=2", node.url);
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let (status, page) = get_json(&url).await;
        assert_eq!(status, 200);
        let files = page["files"].as_array().unwrap();
        assert!(files.len() <= 2);
        seen.extend(files.iter().map(|f| f["path"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["a.txt", "docs/b.txt", "docs/d.txt", "docs/deep/c.txt", "z.txt"]);
    let (_, docs) = get_json(&format!("{}/api/v1/files?folder=docs/deep", node.url)).await;
    assert_eq!(docs["files"][0]["path"], "docs/deep/c.txt");
    assert_eq!(docs["files"][0]["size"], 15);
    assert_eq!(docs["files"][0]["id"].as_str().unwrap().len(), 64);
    assert_eq!(docs["files"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn owner_actions_need_a_login_and_other_origins_are_refused() {
    let node = TestNode::start().await;
    let c = client();
    let base = &node.url;
    // Without a login: 401 for reads and writes alike.
    for path in ["/api/v1/downloads", "/api/v1/downloads/events", "/api/v1/status"] {
        let (status, body) = get_json(&format!("{base}{path}")).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    let response = c
        .post(format!("{base}/api/v1/downloads"))
        .json(&json!({"targets": ["x"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // A wrong secret, as login or as a bearer token, is refused.
    let response = c
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"secret": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.headers().get("set-cookie").is_none());
    let response = c.get(format!("{base}/api/v1/status")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(response.status(), 403);
    // The secret as a bearer token works (scripts).
    let response = c.get(format!("{base}/api/v1/status")).bearer_auth(SECRET).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // A forged session is not a session.
    let id = "0123456789abcdef";
    let response = c
        .get(format!("{base}/api/v1/downloads"))
        .header("cookie", format!("shoal_{id}={}", "0".repeat(64)))
        .header("x-shoal-session", format!("{id}.{}", "0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Another site's page cannot log in or act: its Origin is refused, and a form's content
    // type is not JSON.
    let response = c
        .post(format!("{base}/api/v1/login"))
        .header("origin", "http://evil.example")
        .json(&json!({"secret": SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = c
        .post(format!("{base}/api/v1/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("secret={SECRET}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    // Logged in, then logged out: the session stops working.
    let session = login(&node).await;
    let (_, answer) = get_json_with(&node, &session, "/api/v1/session").await;
    assert_eq!(answer["owner"], true);
    owner_get(&node, &session, "/api/v1/status").await;
    let (status, _) = owner_post(&node, &session, "/api/v1/logout", json!({})).await;
    assert_eq!(status, 200);
    let (status, _) = get_json_with(&node, &session, "/api/v1/downloads").await;
    assert_eq!(status, 401);
}

async fn get_json_with(node: &TestNode, session: &Session, path: &str) -> (u16, Json) {
    let response = session.on(client().get(format!("{}{path}", node.url))).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Json::Null))
}

/// The status of a GET to `path` with the given headers only.
async fn status_with(node: &TestNode, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut request = client().get(format!("{}{path}", node.url));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn the_session_cookie_alone_is_not_the_owner() {
    let node = TestNode::start().await;
    let session = login(&node).await;
    // A browser sends the cookie to every port of the host: another local web server catches
    // it and replays it. Alone it is nobody's session, on any owner route.
    for path in ["/api/v1/downloads", "/api/v1/status", "/api/v1/downloads/events"] {
        let status = status_with(&node, path, &[("cookie", &session.cookie)]).await;
        assert_eq!(status, 401, "the cookie alone was the owner on {path}");
    }
    let (_, answer) = get_json(&format!("{}/api/v1/session", node.url)).await;
    assert_eq!(answer["owner"], false);
    let replayed = client()
        .get(format!("{}/api/v1/session", node.url))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.json::<Json>().await.unwrap()["owner"], false);
    // The cookie is half of a session: its name carries the session's id, and it goes only to
    // the API's paths.
    assert!(session.cookie.starts_with("shoal_"), "{}", session.cookie);
    assert_eq!(session.token.len(), 16 + 1 + 64, "{}", session.token);
    assert!(session.cookie.starts_with(&format!("shoal_{}=", &session.token[..16])));
    // The page's half alone is no session either; both together are.
    let status = status_with(&node, "/api/v1/downloads", &[("x-shoal-session", &session.token)]).await;
    assert_eq!(status, 401);
    owner_get(&node, &session, "/api/v1/downloads").await;
    // Someone with the cookie alone cannot log the owner out.
    let response = client()
        .post(format!("{}/api/v1/logout", node.url))
        .header("cookie", &session.cookie)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    owner_get(&node, &session, "/api/v1/status").await;
    // Another login is another session with its own cookie, so two tabs (or two nodes on one
    // host) do not overwrite each other's.
    let other = login(&node).await;
    assert_ne!(other.cookie.split('=').next(), session.cookie.split('=').next());
    owner_get(&node, &session, "/api/v1/status").await;
    owner_get(&node, &other, "/api/v1/status").await;
    // The halves of two sessions do not mix.
    let mixed = Session {
        cookie: session.cookie.clone(),
        token: other.token.clone(),
    };
    let response = mixed.on(client().get(format!("{}/api/v1/status", node.url))).send().await.unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn a_search_streams_a_peers_match_and_a_click_downloads_it() {
    let holder = TestNode::start().await;
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    holder.add("music/song.ogg", &data).await;
    let node = TestNode::start().await;
    node.knows(&[&holder]).await;

    // The search is public and streams events: a match naming the holder, then done.
    let response = client()
        .get(format!("{}/api/v1/search?q=song", node.url))
        .header("x-shoal", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = String::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = tokio::time::timeout(BOUND, stream.next()).await.expect("the stream goes on") {
        body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if body.contains("event: done") {
            break;
        }
    }
    assert!(body.contains("event: match"), "{body}");
    assert!(body.contains("music/song.ogg") && body.contains(&holder.url), "{body}");

    // One request downloads it into the share, and the table shows it done with its source.
    let session = login(&node).await;
    let (status, started) = owner_post(&node, &session, "/api/v1/downloads", json!({"targets": ["music/song.ogg"]})).await;
    assert_eq!(status, 200, "{started}");
    let row = wait_state(&node, &session, "music/song.ogg", "done").await;
    assert_eq!(row["done"], data.len());
    assert!(
        row["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["kind"] == "peer" && s["bytes"] == data.len()),
        "{row}"
    );
    assert_eq!(std::fs::read(node.path("song.ogg")).unwrap(), data);
    // The peers view says how much came from the holder.
    let peers = owner_get(&node, &session, "/api/v1/peers").await;
    let row = peers.as_array().unwrap().iter().find(|p| p["url"] == holder.url).cloned().unwrap();
    assert_eq!(row["bytes"], data.len(), "{peers}");
    assert_eq!(row["kind"], "shoal");
    assert!(row["last_seen_s"].is_u64(), "{row}");
}

#[tokio::test]
async fn a_download_may_go_to_the_download_directory() {
    let holder = TestNode::start().await;
    holder.add("doc.pdf", b"a document").await;
    let elsewhere = tempfile::tempdir().unwrap();
    let dir = elsewhere.path().to_path_buf();
    let node = TestNode::start_with(|o| o.download_dir = Some(dir)).await;
    node.knows(&[&holder]).await;
    let session = login(&node).await;
    let status = owner_get(&node, &session, "/api/v1/status").await;
    let download_dir = status["download_dir"].as_str().unwrap().to_string();
    let (code, started) = owner_post(
        &node,
        &session,
        "/api/v1/downloads",
        json!({"targets": ["doc.pdf"], "output": download_dir}),
    )
    .await;
    assert_eq!(code, 200, "{started}");
    wait_state(&node, &session, "doc.pdf", "done").await;
    assert_eq!(std::fs::read(elsewhere.path().join("doc.pdf")).unwrap(), b"a document");
    // Anywhere else is refused.
    let (code, body) = owner_post(
        &node,
        &session,
        "/api/v1/downloads",
        json!({"targets": ["doc.pdf"], "output": "/etc"}),
    )
    .await;
    assert_eq!(code, 400, "{body}");
}

#[tokio::test]
async fn downloads_pause_and_resume_and_peers_are_added() {
    let holder = TestNode::start().await;
    let data: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect();
    holder.add("slow.bin", &data).await;
    // The downloading node is capped at 1 MiB/s, so the download is still running when paused.
    let node = TestNode::start_with(|o| o.engine.max_rate = Some(1 << 20)).await;
    let session = login(&node).await;
    let (status, _) = owner_post(&node, &session, "/api/v1/peers", json!({"url": holder.url})).await;
    assert_eq!(status, 200);
    let peers = owner_get(&node, &session, "/api/v1/peers").await;
    assert!(peers.as_array().unwrap().iter().any(|p| p["url"] == holder.url), "{peers}");
    let (status, started) = owner_post(&node, &session, "/api/v1/downloads", json!({"targets": ["slow.bin"]})).await;
    assert_eq!(status, 200, "{started}");
    let target = started["target"].as_str().unwrap().to_string();
    wait_state(&node, &session, "slow.bin", "running").await;
    let (status, body) = owner_post(&node, &session, "/api/v1/downloads/pause", json!({"target": target})).await;
    assert_eq!(status, 200, "{body}");
    let paused = wait_state(&node, &session, "slow.bin", "paused").await;
    assert!(paused["done"].as_u64().unwrap() < data.len() as u64);
    let (status, body) = owner_post(&node, &session, "/api/v1/downloads/resume", json!({"target": target})).await;
    assert_eq!(status, 200, "{body}");
    wait_state(&node, &session, "slow.bin", "done").await;
    assert_eq!(std::fs::read(node.path("slow.bin")).unwrap(), data);
    // Malformed bodies are refused clearly.
    let (status, body) = owner_post(&node, &session, "/api/v1/downloads", json!({"targets": []})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("targets"));
}

/// A client endpoint dialling with `key`, nothing reaching past loopback.
async fn iroh_client(key: iroh::SecretKey) -> shoal_node::net::Client {
    let iroh = shoal_node::net::iroh::Iroh::bind(key, &shoal_node::options::IrohOptions::local_only(), false)
        .await
        .unwrap();
    shoal_node::net::Client::with_options(shoal_node::net::ClientOptions {
        iroh: Some(std::sync::Arc::new(iroh)),
        ..Default::default()
    })
}

async fn iroh_get(client: &shoal_node::net::Client, id: &str, path: &str) -> (u16, Json) {
    let url = reqwest::Url::parse(&format!("iroh://{id}{path}")).unwrap();
    let response = client
        .request(reqwest::Method::GET, &url, shoal_node::net::Trust::Peer)
        .unwrap()
        .timeout(BOUND)
        .send()
        .await
        .expect("the node answers over iroh");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Json::Null))
}

#[tokio::test]
async fn over_iroh_the_owner_is_proven_by_key_and_a_stranger_is_not() {
    let node = TestNode::start_with(|o| o.iroh = Some(shoal_node::options::IrohOptions::local_only())).await;
    node.add("a.txt", b"a").await;
    let ticket = node.node.ticket(Duration::from_secs(3)).await.expect("a ticket");
    let id = node.node.id().unwrap();

    // The state directory's client key is the owner's.
    let owner = iroh_client(shoal_node::node::client_key(node.state.path()).unwrap()).await;
    owner.learn_ticket(&ticket, shoal_node::net::Trust::Owner);
    let (status, body) = iroh_get(&owner, &id, "/api/v1/status").await;
    assert_eq!(status, 200, "{body}");
    // Public routes answer everyone.
    let (status, files) = iroh_get(&owner, &id, "/api/v1/files").await;
    assert_eq!(status, 200);
    assert!(files.to_string().contains("a.txt"), "{files}");

    // Any other key is a stranger's: owner routes refuse it.
    let stranger = iroh_client(iroh::SecretKey::from_bytes(&[9; 32])).await;
    stranger.learn_ticket(&ticket, shoal_node::net::Trust::Owner);
    let (status, _) = iroh_get(&stranger, &id, "/api/v1/status").await;
    assert_eq!(status, 401);
    let (status, _) = iroh_get(&stranger, &id, "/api/v1/files").await;
    assert_eq!(status, 200);
    for client in [owner, stranger] {
        client.iroh().unwrap().close().await;
    }
    node.stop().await;
}

/// Reads a search stream to its `done` event (bounded) and returns what it said.
async fn read_search(response: reqwest::Response) -> String {
    let mut body = String::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = tokio::time::timeout(BOUND, stream.next()).await.expect("the stream goes on") {
        body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if body.contains("event: done") {
            break;
        }
    }
    body
}

#[tokio::test]
async fn a_search_needs_the_same_origin_header() {
    let holder = TestNode::start().await;
    holder.add("song.ogg", b"la la la").await;
    let node = TestNode::start().await;
    node.knows(&[&holder]).await;
    let url = format!("{}/api/v1/search?q=song", node.url);
    let sent = node.node.api().messages_sent();
    // What a page of another site gets the browser to send (an <img src>, a no-cors fetch):
    // a GET with no Origin and no header of its own. Refused, clearly, and nothing searched.
    let refused = client().get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: Json = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("X-Shoal: 1"), "{body}");
    assert_eq!(node.node.api().messages_sent(), sent, "a refused search asked the peers");
    // The same with Sec-Fetch headers as Chromium sends them for an image of another site.
    let refused = client()
        .get(&url)
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "no-cors")
        .header("sec-fetch-dest", "image")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(node.node.api().messages_sent(), sent, "a refused search asked the peers");
    // With the header (the web UI, `curl -H 'X-Shoal: 1'`) it searches the network.
    let answered = client().get(&url).header("x-shoal", "1").send().await.unwrap();
    assert_eq!(answered.status(), 200);
    let events = read_search(answered).await;
    assert!(events.contains("song.ogg") && events.contains(&holder.url), "{events}");
    assert!(node.node.api().messages_sent() > sent);
}

#[tokio::test]
async fn the_search_rate_applies_to_loopback_callers_too() {
    // Loopback callers are exempt from the search rate by default (the owner's tools), but a
    // page in the owner's browser calls from loopback as well.
    let node = TestNode::start_with(|o| {
        o.guard.searches_per_second = 1;
        o.guard.search_burst = 3;
    })
    .await;
    assert!(node.node.api().options().guard.loopback_exempt);
    let url = format!("{}/api/v1/search?q=anything", node.url);
    let mut statuses = Vec::new();
    for _ in 0..50 {
        let status = client().get(&url).header("x-shoal", "1").send().await.unwrap().status().as_u16();
        statuses.push(status);
        if status == 429 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "never limited: {statuses:?}");
    assert!(statuses.iter().take(3).all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test]
async fn the_peer_table_is_public_and_the_owners_activity_is_not() {
    let holder = TestNode::start().await;
    let node = TestNode::start().await;
    node.knows(&[&holder]).await;
    // Anyone sees the table `shoal.peer_table` shows: URL, kind, state.
    let (status, peers) = get_json(&format!("{}/api/v1/peers", node.url)).await;
    assert_eq!(status, 200, "{peers}");
    let row = peers.as_array().unwrap().iter().find(|p| p["url"] == holder.url).cloned();
    let row = row.unwrap_or_else(|| panic!("the holder is not listed: {peers}"));
    assert!(row["kind"].is_string() && row["failures"] == 0, "{row}");
    assert_eq!(row["state"], "ok");
    assert_eq!(row["learnt"], true);
    // ...but not when this node last used each peer or what it downloaded from it.
    for owners in ["last_seen_s", "bytes"] {
        assert!(row.get(owners).is_none(), "{owners} shown to a stranger: {row}");
    }
    // XML-RPC tells a stranger the same, and no more.
    let table = node.call("shoal.peer_table", vec![]).await.expect("shoal.peer_table answers");
    let shoal_xmlrpc::Value::Array(rows) = table else {
        panic!("{table:?}")
    };
    assert_eq!(rows.len(), peers.as_array().unwrap().len());
    for row in &rows {
        let shoal_xmlrpc::Value::Struct(fields) = row else {
            panic!("{row:?}")
        };
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        assert_eq!(names, ["backing_off", "failures", "kind", "learnt", "local", "path", "url"]);
    }
    // The owner sees the activity too.
    let response = client()
        .get(format!("{}/api/v1/peers", node.url))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    let peers: Json = response.json().await.unwrap();
    let row = peers.as_array().unwrap().iter().find(|p| p["url"] == holder.url).cloned().unwrap();
    assert!(row["last_seen_s"].is_u64() && row["bytes"] == 0, "{row}");
    // Credentials given but wrong are refused, not taken for a stranger's visit.
    let response = client()
        .get(format!("{}/api/v1/peers", node.url))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // Adding a peer stays the owner's.
    let response = client()
        .post(format!("{}/api/v1/peers", node.url))
        .json(&json!({"url": "http://127.0.0.1:9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn file_answers_forbid_content_sniffing() {
    let node = TestNode::start().await;
    // A stranger's file that a browser would take for a page if it guessed.
    node.add("page.html", b"<html><script>alert(1)</script></html>").await;
    let id = node.node.api().file("page.html").await.unwrap().1.id.to_string();
    let c = client();
    for path in [
        "/files/page.html".to_string(),
        format!("/content/{id}"),
        format!("/outboard/{id}"),
        "/files/missing.html".to_string(),
        "/content/not-an-id".to_string(),
        "/api/v1/files".to_string(),
        "/api/v1/status".to_string(),
        "/".to_string(),
        "/ui/app.js".to_string(),
    ] {
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            if method == reqwest::Method::HEAD && path.starts_with("/api") {
                continue;
            }
            let response = c.request(method.clone(), format!("{}{path}", node.url)).send().await.unwrap();
            let header = response.headers().get("x-content-type-options");
            assert_eq!(
                header.and_then(|h| h.to_str().ok()),
                Some("nosniff"),
                "{method} {path} ({})",
                response.status()
            );
        }
    }
    let response = c.get(format!("{}/files/page.html", node.url)).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/octet-stream");
    // XML-RPC answers and /metrics too.
    let rpc = c
        .post(&node.url)
        .header("content-type", "text/xml")
        .body(shoal_xmlrpc::encode_call("list", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        rpc.headers().get("x-content-type-options").map(|h| h.as_bytes()),
        Some(&b"nosniff"[..])
    );
    let metrics = c.get(format!("{}/metrics", node.url)).send().await.unwrap();
    assert_eq!(
        metrics.headers().get("x-content-type-options").map(|h| h.as_bytes()),
        Some(&b"nosniff"[..])
    );
}
