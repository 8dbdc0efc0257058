//! The JSON API (`/api/v1`) over real HTTP on loopback, with reqwest: the share paged, a search
//! streamed from peers as Server-Sent Events, the owner's login (session cookie or bearer
//! secret), downloads started, paused, resumed and finished, peers, and the refusals: owner
//! actions without login, wrong secrets, other origins, requests that are not JSON.

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

/// Logs in with the secret and returns the session cookie (`name=value`).
async fn login(node: &TestNode) -> String {
    let response = client()
        .post(format!("{}/api/v1/login", node.url))
        .json(&json!({"secret": SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    cookie.split(';').next().unwrap().to_string()
}

async fn owner_get(node: &TestNode, cookie: &str, path: &str) -> Json {
    let response = client()
        .get(format!("{}{path}", node.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

async fn owner_post(node: &TestNode, cookie: &str, path: &str, body: Json) -> (u16, Json) {
    let response = client()
        .post(format!("{}{path}", node.url))
        .header("cookie", cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Json::Null))
}

/// Polls the download table (bounded) until the row for `name` is in `state`.
async fn wait_state(node: &TestNode, cookie: &str, name: &str, state: &str) -> Json {
    let deadline = Instant::now() + BOUND;
    loop {
        let rows = owner_get(node, cookie, "/api/v1/downloads").await;
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
    for path in ["/api/v1/downloads", "/api/v1/peers", "/api/v1/status"] {
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
    let response = c.get(format!("{base}/api/v1/peers")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(response.status(), 403);
    // The secret as a bearer token works (scripts).
    let response = c.get(format!("{base}/api/v1/peers")).bearer_auth(SECRET).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // A forged session cookie is not a session.
    let response = c
        .get(format!("{base}/api/v1/downloads"))
        .header("cookie", format!("shoal_session={}", "0".repeat(64)))
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
    // Logged in, then logged out: the cookie stops working.
    let cookie = login(&node).await;
    let (_, session) = get_json_with(&node, &cookie, "/api/v1/session").await;
    assert_eq!(session["owner"], true);
    owner_get(&node, &cookie, "/api/v1/status").await;
    let (status, _) = owner_post(&node, &cookie, "/api/v1/logout", json!({})).await;
    assert_eq!(status, 200);
    let (status, _) = get_json_with(&node, &cookie, "/api/v1/downloads").await;
    assert_eq!(status, 401);
}

async fn get_json_with(node: &TestNode, cookie: &str, path: &str) -> (u16, Json) {
    let response = client()
        .get(format!("{}{path}", node.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Json::Null))
}

#[tokio::test]
async fn a_search_streams_a_peers_match_and_a_click_downloads_it() {
    let holder = TestNode::start().await;
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    holder.add("music/song.ogg", &data).await;
    let node = TestNode::start().await;
    node.knows(&[&holder]).await;

    // The search is public and streams events: a match naming the holder, then done.
    let response = client().get(format!("{}/api/v1/search?q=song", node.url)).send().await.unwrap();
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
    let cookie = login(&node).await;
    let (status, started) = owner_post(&node, &cookie, "/api/v1/downloads", json!({"targets": ["music/song.ogg"]})).await;
    assert_eq!(status, 200, "{started}");
    let row = wait_state(&node, &cookie, "music/song.ogg", "done").await;
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
    let peers = owner_get(&node, &cookie, "/api/v1/peers").await;
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
    let cookie = login(&node).await;
    let status = owner_get(&node, &cookie, "/api/v1/status").await;
    let download_dir = status["download_dir"].as_str().unwrap().to_string();
    let (code, started) = owner_post(
        &node,
        &cookie,
        "/api/v1/downloads",
        json!({"targets": ["doc.pdf"], "output": download_dir}),
    )
    .await;
    assert_eq!(code, 200, "{started}");
    wait_state(&node, &cookie, "doc.pdf", "done").await;
    assert_eq!(std::fs::read(elsewhere.path().join("doc.pdf")).unwrap(), b"a document");
    // Anywhere else is refused.
    let (code, body) = owner_post(
        &node,
        &cookie,
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
    let cookie = login(&node).await;
    let (status, _) = owner_post(&node, &cookie, "/api/v1/peers", json!({"url": holder.url})).await;
    assert_eq!(status, 200);
    let peers = owner_get(&node, &cookie, "/api/v1/peers").await;
    assert!(peers.as_array().unwrap().iter().any(|p| p["url"] == holder.url), "{peers}");
    let (status, started) = owner_post(&node, &cookie, "/api/v1/downloads", json!({"targets": ["slow.bin"]})).await;
    assert_eq!(status, 200, "{started}");
    let target = started["target"].as_str().unwrap().to_string();
    wait_state(&node, &cookie, "slow.bin", "running").await;
    let (status, body) = owner_post(&node, &cookie, "/api/v1/downloads/pause", json!({"target": target})).await;
    assert_eq!(status, 200, "{body}");
    let paused = wait_state(&node, &cookie, "slow.bin", "paused").await;
    assert!(paused["done"].as_u64().unwrap() < data.len() as u64);
    let (status, body) = owner_post(&node, &cookie, "/api/v1/downloads/resume", json!({"target": target})).await;
    assert_eq!(status, 200, "{body}");
    wait_state(&node, &cookie, "slow.bin", "done").await;
    assert_eq!(std::fs::read(node.path("slow.bin")).unwrap(), data);
    // Malformed bodies are refused clearly.
    let (status, body) = owner_post(&node, &cookie, "/api/v1/downloads", json!({"targets": []})).await;
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
