//! Multi-node behaviour of issue 2: the seed's methods, search across hops without loops,
//! fetch, the index, the peer table, file data over HTTP.

use std::time::Duration;

use shoal_node::proto::faults::{ACCESS_DENIED, EXISTS, NOT_FOUND, TOO_LARGE};
use shoal_xmlrpc::Value;

use super::util::{SECRET, TestNode, binary, line, mesh, read, s, strings};

fn code(result: Result<Value, shoal_xmlrpc::Fault>) -> i32 {
    result.expect_err("a fault").code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_finds_text_and_binary_two_hops_away() {
    let nodes = line(3).await;
    nodes[2].add("notes.txt", b"plain text\n").await;
    nodes[2].add("dir/blob.bin", &binary(70_000)).await;
    let text = nodes[0].call("query", vec![s("notes.txt"), strings(&[])]).await.unwrap();
    assert_eq!(text, Value::String("plain text\n".into()));
    let blob = nodes[0].call("query", vec![s("dir/blob.bin"), strings(&[])]).await.unwrap();
    assert_eq!(blob, Value::Base64(binary(70_000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limits_the_depth_like_the_seed() {
    let nodes = line(3).await;
    nodes[2].add("far.txt", b"far").await;
    // With five nodes already in the history, the receiving node searches only itself.
    let full: Vec<String> = (0..5).map(|i| format!("http://10.255.255.{i}:1")).collect();
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    assert_eq!(code(nodes[0].call("query", vec![s("far.txt"), strings(&full)]).await), NOT_FOUND);
    // With four, the query may go one hop more, which is not enough for two hops.
    assert_eq!(
        code(nodes[0].call("query", vec![s("far.txt"), strings(&full[..4])]).await),
        NOT_FOUND
    );
    assert_eq!(nodes[0].call("query", vec![s("far.txt"), strings(&full[..3])]).await, Ok(s("far")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_of_nodes_answers_a_miss_without_deadlock() {
    let a = TestNode::start().await;
    let b = TestNode::start().await;
    let c = TestNode::start().await;
    a.knows(&[&b]).await;
    b.knows(&[&c]).await;
    c.knows(&[&a]).await;
    b.knows(&[&a]).await;
    let miss = tokio::time::timeout(Duration::from_secs(30), a.call("query", vec![s("nowhere"), strings(&[])]))
        .await
        .expect("no deadlock");
    assert_eq!(code(miss), NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_in_a_mesh_costs_at_most_two_messages_per_link() {
    let nodes = mesh(8).await;
    let before: u64 = nodes.iter().map(|n| n.node.api().messages_sent()).sum();
    assert_eq!(code(nodes[0].call("query", vec![s("nowhere"), strings(&[])]).await), NOT_FOUND);
    let sent: u64 = nodes.iter().map(|n| n.node.api().messages_sent()).sum::<u64>() - before;
    let links = 8 * 7 / 2;
    assert!(sent <= 2 * links, "{sent} messages for {links} links");
    assert!(sent >= 7, "every peer of the first node was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_id_is_answered_once() {
    let a = TestNode::start().await;
    a.add("here.txt", b"x").await;
    let params = |id: &str| vec![s("here.txt"), strings(&[]), s(id), Value::Integer(6), Value::Integer(1000)];
    assert!(a.call("shoal.locate", params("q-1")).await.is_ok());
    assert_eq!(code(a.call("shoal.locate", params("q-1")).await), NOT_FOUND);
    assert!(a.call("shoal.locate", params("q-2")).await.is_ok());
}

/// A crowd's identical searches through one node cost it about one forward: once one search
/// for an id was forwarded, nine more from others for the same id, all at once, are answered
/// from what it found, each with every holder. (Each forwarded alone was 10 × 3 calls.) Searches
/// of another shape that reach no one (ttl 1, a history naming every holder) just before leave
/// no empty answer for the crowd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_searches_from_others_share_one_forward() {
    let hub = TestNode::start().await;
    let mut holders = Vec::new();
    for _ in 0..3 {
        let holder = TestNode::start().await;
        holder.add("f.bin", b"the same bytes").await;
        holders.push(holder);
    }
    hub.knows(&holders.iter().collect::<Vec<_>>()).await;
    let id = blake3::hash(b"the same bytes").to_hex().to_string();
    let search = |query: String| {
        let params = vec![
            s(&id),
            s(&query),
            Value::Integer(6),
            strings(&["http://127.0.0.1:9/"]),
            Value::Integer(5000),
        ];
        hub.call("shoal.search", params)
    };
    let before = hub.node.api().messages_sent();
    let alone = vec![s(&id), s("poison-1"), Value::Integer(1)];
    hub.call("shoal.search", alone).await.unwrap();
    let urls: Vec<&str> = holders.iter().map(|h| h.url.as_str()).collect();
    let blind = vec![s(&id), s("poison-2"), Value::Integer(6), strings(&urls), Value::Integer(5000)];
    hub.call("shoal.search", blind).await.unwrap();
    let mut answers = vec![search("crowd-0".into()).await];
    answers.extend(futures_util::future::join_all((1..10).map(|i| search(format!("crowd-{i}")))).await);
    let sent = hub.node.api().messages_sent() - before;
    for answer in answers {
        let text = format!("{:?}", answer.expect("a search answer"));
        for holder in &holders {
            assert!(text.contains(holder.url.trim_end_matches('/')), "{text}");
        }
    }
    assert_eq!(sent, 3, "calls forwarded for 10 identical searches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_downloads_verifies_and_never_overwrites() {
    let nodes = line(3).await;
    let data = binary(3 << 20);
    nodes[2].add("big/file.bin", &data).await;
    assert_eq!(
        code(nodes[0].call("fetch", vec![s("big/file.bin"), s("wrong")]).await),
        ACCESS_DENIED
    );
    assert!(!nodes[0].path("big/file.bin").exists());
    assert_eq!(
        nodes[0].call("fetch", vec![s("big/file.bin"), s(SECRET)]).await,
        Ok(Value::Integer(0))
    );
    assert_eq!(read(&nodes[0].path("big/file.bin")), data);
    // The fetched file is indexed at once and served to others.
    let list = nodes[0].call("list", vec![]).await.unwrap();
    assert_eq!(list, Value::Array(vec![s("big/file.bin")]));
    // Fetching again refuses to overwrite, even a file with other content.
    nodes[0].write("big/file.bin", b"mine");
    assert_eq!(code(nodes[0].call("fetch", vec![s("big/file.bin"), s(SECRET)]).await), EXISTS);
    assert_eq!(read(&nodes[0].path("big/file.bin")), b"mine");
    // Nothing partial is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(nodes[0].path("big"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("file.bin")]);
    assert_eq!(code(nodes[0].call("fetch", vec![s("missing.bin"), s(SECRET)]).await), NOT_FOUND);
    assert!(!nodes[0].path("missing.bin").exists());
    assert_eq!(
        code(nodes[0].call("fetch", vec![s("new/dirs/missing.bin"), s(SECRET)]).await),
        NOT_FOUND
    );
    assert!(!nodes[0].path("new").exists(), "a failed fetch leaves no directories behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_returns_every_holder_with_ids() {
    let nodes = mesh(3).await;
    nodes[1].add("music/song.ogg", b"la la").await;
    nodes[2].add("music/song.ogg", b"la la").await;
    nodes[2].add("music/other.OGG", b"other").await;
    nodes[2].add("notes.txt", b"n").await;
    let found = nodes[0].call("shoal.search", vec![s("*.ogg")]).await.unwrap();
    let Value::Array(items) = found else { panic!("an array") };
    let matches: Vec<_> = items
        .into_iter()
        .map(|v| shoal_node::discovery::match_from_value(v).unwrap())
        .collect();
    assert_eq!(matches.len(), 2, "{matches:?}");
    let song = matches.iter().find(|m| m.name == "music/song.ogg").unwrap();
    assert_eq!(song.id.to_string(), blake3::hash(b"la la").to_hex().to_string());
    let mut urls = song.urls.clone();
    urls.sort();
    let mut expected = vec![nodes[1].url.clone(), nodes[2].url.clone()];
    expected.sort();
    assert_eq!(urls, expected);
    assert_eq!(song.size, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_content_names_the_http_path() {
    let a = TestNode::start_with(|o| o.max_rpc_content = 1000).await;
    a.add("big.bin", &binary(5000)).await;
    let fault = a.call("query", vec![s("big.bin"), strings(&[])]).await.unwrap_err();
    assert_eq!(fault.code, TOO_LARGE);
    assert!(fault.message.contains("/files/big.bin"), "{}", fault.message);
    let body = reqwest::get(format!("{}/files/big.bin", a.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], &binary(5000)[..]);
}

/// `?piece_size=` asks for only the hash pairs a downloader of pieces that size needs: a few
/// pairs instead of one per 16 KiB block, marked as such, and a bad piece size is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piece_outboard_is_served_for_a_piece_size() {
    let a = TestNode::start().await;
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 5).map(|i: u32| (i % 251) as u8).collect();
    a.add("big.bin", &data).await;
    let hashed = shoal_index::hash_bytes(&data);
    let id = hashed.id;
    let size = data.len() as u64;
    let answer = reqwest::get(format!("{}/outboard/{id}?piece_size=1048576", a.url)).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["shoal-piece-size"], "1048576");
    let body = answer.bytes().await.unwrap();
    let expected = shoal_index::piece_outboard(&id, size, &hashed.outboard, 1 << 20).unwrap();
    assert_eq!(body.as_ref(), expected.as_slice());
    assert_eq!(body.len() as u64, shoal_index::piece_outboard_size(size, 1 << 20));
    assert!(body.len() < hashed.outboard.len() / 10);
    // Without the query: the whole outboard, unmarked.
    let whole = reqwest::get(format!("{}/outboard/{id}", a.url)).await.unwrap();
    assert!(whole.headers().get("shoal-piece-size").is_none());
    assert_eq!(whole.bytes().await.unwrap().as_ref(), hashed.outboard.as_slice());
    for bad in ["1000", "1024", "2147483648", "x"] {
        let answer = reqwest::get(format!("{}/outboard/{id}?piece_size={bad}", a.url)).await.unwrap();
        assert_eq!(answer.status(), 400, "piece_size={bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_list_and_introspection() {
    let a = TestNode::start().await;
    a.add("a.txt", b"abc").await;
    let Value::Struct(info) = a.call("shoal.info", vec![s("a.txt")]).await.unwrap() else {
        panic!()
    };
    let id = blake3::hash(b"abc").to_hex().to_string();
    assert_eq!(info["id"], s(&id));
    assert_eq!(info["size"], Value::Integer(3));
    assert_eq!(info["content"], s(&format!("/content/{id}")));
    let outboard = reqwest::get(format!("{}/outboard/{id}", a.url)).await.unwrap();
    assert_eq!(outboard.status(), 200);
    let Value::Array(methods) = a.call("system.listMethods", vec![]).await.unwrap() else {
        panic!()
    };
    for name in ["hello", "query", "fetch", "list", "shoal.search", "shoal.peers"] {
        assert!(methods.contains(&s(name)), "{name}");
    }
    let Value::String(help) = a.call("system.methodHelp", vec![s("query")]).await.unwrap() else {
        panic!()
    };
    assert!(help.contains("history"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_follows_the_directory_and_survives_restarts() {
    let a = TestNode::start().await;
    a.add("one.txt", b"1").await;
    a.write("two.txt", b"2");
    std::fs::remove_file(a.path("one.txt")).unwrap();
    a.rescan().await;
    assert_eq!(a.call("list", vec![]).await.unwrap(), Value::Array(vec![s("two.txt")]));
    let (dir, state) = a.stop().await;
    let a = TestNode::start_in(dir, state, |_| {}).await;
    let report = a.node.api().rescan().await.unwrap();
    assert_eq!(report.hashed_bytes, 0, "unchanged files are not hashed again after a restart");
    assert_eq!(a.call("list", vec![]).await.unwrap(), Value::Array(vec![s("two.txt")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answers_query_from_disk_before_any_rescan() {
    let a = TestNode::start().await;
    a.write("fresh.txt", b"just now");
    assert_eq!(a.call("query", vec![s("fresh.txt"), strings(&[])]).await, Ok(s("just now")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_persist_skip_self_and_are_exchanged() {
    let a = TestNode::start().await;
    let b = TestNode::start().await;
    let c = TestNode::start().await;
    let me_spelt_otherwise = a.url.replace("127.0.0.1", "localhost") + "/";
    a.call("hello", vec![s(&me_spelt_otherwise)]).await.unwrap();
    assert!(a.node.api().peers().is_empty(), "a node never lists itself");
    a.knows(&[&b]).await;
    b.knows(&[&c]).await;
    assert_eq!(a.node.api().exchange_peers().await, 1, "a learns c from b");
    let peers: Vec<String> = a.node.api().peers().into_iter().map(|p| p.url).collect();
    assert_eq!(peers.len(), 2);
    let (dir, state) = a.stop().await;
    let a = TestNode::start_in(dir, state, |_| {}).await;
    assert_eq!(a.node.api().peers().len(), 2, "the peer table survives a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_peer_backs_off_and_the_search_still_answers() {
    let dead = TestNode::start().await;
    let dead_url = dead.url.clone();
    dead.stop().await;
    // A stranger's hello for a node that does not answer does not add it; the owner's peer stays.
    let a = TestNode::start_with(|o| o.peers = vec![dead_url.clone()]).await;
    let b = TestNode::start().await;
    b.add("x.txt", b"x").await;
    a.knows(&[&b]).await;
    assert!(
        a.call("hello", vec![s(&format!("{dead_url}/RPC2"))]).await.is_ok(),
        "a known host:port is already in the table"
    );
    let c = TestNode::start().await;
    let c_url = c.url.clone();
    c.stop().await;
    assert_eq!(a.call("hello", vec![s(&c_url)]).await, Ok(Value::Integer(0)), "the seed's hello");
    assert!(
        !a.node.api().peers().iter().any(|p| p.url == c_url),
        "a node that does not answer does not join"
    );
    assert_eq!(a.call("query", vec![s("x.txt"), strings(&[])]).await, Ok(s("x")));
    assert_eq!(code(a.call("query", vec![s("y.txt"), strings(&[])]).await), NOT_FOUND);
    let dead_row = a
        .node
        .api()
        .peers()
        .into_iter()
        .find(|p| p.url == dead_url)
        .expect("kept after one failure");
    assert!(dead_row.failures >= 1 && dead_row.backing_off, "{dead_row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_data_supports_ranges_etags_and_head() {
    let a = TestNode::start().await;
    let data = binary(100_000);
    a.add("d.bin", &data).await;
    let id = blake3::hash(&data).to_hex().to_string();
    let client = reqwest::Client::new();
    let url = format!("{}/content/{id}", a.url);
    let part = client.get(&url).header("range", "bytes=10-19").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["etag"], format!("\"{id}\"").as_str());
    assert_eq!(part.headers()["content-range"], "bytes 10-19/100000");
    assert_eq!(&part.bytes().await.unwrap()[..], &data[10..20]);
    let beyond = client.get(&url).header("range", "bytes=100000-").send().await.unwrap();
    assert_eq!(beyond.status(), 416);
    let head = client.head(format!("{}/files/d.bin", a.url)).send().await.unwrap();
    assert_eq!(head.headers()["content-length"], "100000");
    // A file changed since it was indexed is not served under its old id.
    a.write("d.bin", b"changed");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_downloads_and_resumes_from_a_node() {
    let a = TestNode::start().await;
    let data = binary(200_000);
    a.add("c.bin", &data).await;
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("c.bin");
    std::fs::write(&target, &data[..50_000]).unwrap();
    let status = std::process::Command::new("curl")
        .args(["-sS", "--fail", "-C", "-", "-o"])
        .arg(&target)
        .arg(format!("{}/files/c.bin", a.url))
        .status()
        .expect("curl runs");
    assert!(status.success());
    assert_eq!(read(&target), data);
}

/// Polls `check` until it holds, within `limit`.
async fn until(limit: Duration, mut check: impl FnMut() -> bool) {
    tokio::time::timeout(limit, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the condition holds in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_download_goes_on_after_the_node_restarts() {
    let holder = TestNode::start_with(|o| o.max_upload_rate = Some(2 << 20)).await;
    let data = binary(6 << 20);
    holder.add("slow.bin", &data).await;
    let b = TestNode::start().await;
    b.knows(&[&holder]).await;
    let started = b.call("shoal.download", vec![s(SECRET), strings(&["slow.bin"])]).await.unwrap();
    let Value::Struct(fields) = started else { panic!("a struct") };
    assert_eq!(fields["name"], s("slow.bin"));
    let api = b.node.api().clone();
    until(Duration::from_secs(30), || api.downloads().first().is_some_and(|d| d.done > 0)).await;
    drop(api);
    let (dir, state) = b.stop().await;
    assert!(!dir.path().join("slow.bin").exists(), "not complete yet, so not under its name");
    let b = TestNode::start_in(dir, state, |_| {}).await;
    let api = b.node.api().clone();
    until(Duration::from_secs(60), || {
        api.downloads()
            .first()
            .is_some_and(|d| d.status == shoal_node::service::downloads::Status::Done)
    })
    .await;
    let resumed = api.downloads()[0].clone();
    assert!(resumed.size == data.len() as u64);
    assert_eq!(read(&b.path("slow.bin")), data);
    assert_eq!(
        b.call("list", vec![]).await.unwrap(),
        Value::Array(vec![s("slow.bin")]),
        "indexed once done"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_share_is_indexed_before_start_returns() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ready.txt"), b"here from the start").unwrap();
    let node = TestNode::start_in(dir, tempfile::tempdir().unwrap(), |o| o.rescan_interval = Duration::from_secs(3600)).await;
    assert_eq!(node.call("list", vec![]).await.unwrap(), Value::Array(vec![s("ready.txt")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_is_not_a_file() {
    let a = TestNode::start().await;
    a.add("dir/inner.txt", b"x").await;
    assert_eq!(code(a.call("query", vec![s("dir"), strings(&[])]).await), NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_pause_resume_and_cancel() {
    use shoal_node::service::downloads::Status;
    let holder = TestNode::start_with(|o| o.max_upload_rate = Some(2 << 20)).await;
    let data = binary(6 << 20);
    holder.add("p.bin", &data).await;
    holder.add("c.bin", &binary(5 << 20)).await;
    let b = TestNode::start().await;
    b.knows(&[&holder]).await;
    let api = b.node.api().clone();
    let status_of = |name: &str| api.downloads().into_iter().find(|d| d.name == name).map(|d| d.status);
    // Pause keeps the progress; resume finishes the same download.
    b.call("shoal.download", vec![s(SECRET), strings(&["p.bin"])]).await.unwrap();
    until(Duration::from_secs(30), || {
        api.downloads().iter().any(|d| d.name == "p.bin" && d.done > 0)
    })
    .await;
    assert_eq!(code(b.call("shoal.pause", vec![s("wrong"), s("p.bin")]).await), ACCESS_DENIED);
    assert_eq!(b.call("shoal.pause", vec![s(SECRET), s("p.bin")]).await, Ok(Value::Integer(0)));
    until(Duration::from_secs(30), || status_of("p.bin") == Some(Status::Paused)).await;
    let part = b.path(".p.bin.shoal-part");
    assert!(part.exists() && !b.path("p.bin").exists(), "paused: progress kept, no final file");
    assert_eq!(b.call("shoal.resume", vec![s(SECRET), s("p.bin")]).await, Ok(Value::Integer(0)));
    until(Duration::from_secs(60), || status_of("p.bin") == Some(Status::Done)).await;
    assert_eq!(read(&b.path("p.bin")), data);
    // Cancel stops for good: the partial data and the resume record go.
    b.call("shoal.download", vec![s(SECRET), strings(&["c.bin"])]).await.unwrap();
    until(Duration::from_secs(30), || {
        api.downloads().iter().any(|d| d.name == "c.bin" && d.done > 0)
    })
    .await;
    assert_eq!(b.call("shoal.cancel", vec![s(SECRET), s("c.bin")]).await, Ok(Value::Integer(0)));
    assert!(!b.path(".c.bin.shoal-part").exists() && !b.path("c.bin").exists());
    assert!(status_of("c.bin").is_none(), "a cancelled download is no longer listed");
    assert_eq!(
        code(b.call("shoal.resume", vec![s(SECRET), s("c.bin")]).await),
        NOT_FOUND,
        "nothing left to resume"
    );
}

/// The seed's client says hello to every URL of its url file at start, whether or not those
/// nodes run yet, and the seed's `hello` learns them all. A node introduced before it starts is
/// answered 0 and learnt once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_introduced_before_it_starts_is_learnt_once_it_answers() {
    let node = TestNode::start().await;
    // An address that refuses connections (bound, not listening) until the late node starts.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let late_url = format!("http://{}", socket.local_addr().unwrap());
    assert_eq!(node.call("hello", vec![s(&late_url)]).await, Ok(Value::Integer(0)));
    let listed = |peers: &[shoal_node::discovery::peers::PeerInfo]| peers.iter().any(|p| p.url == late_url);
    assert!(!listed(&node.node.api().peers()), "a node that never answered is in the table");
    assert_eq!(node.node.api().candidates(), 1);

    let late = TestNode::start_on(
        socket.listen(64).unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        |_| {},
    )
    .await;
    assert_eq!(late.url, late_url);
    let mut learnt = false;
    for _ in 0..600 {
        if listed(&node.node.api().peers()) {
            learnt = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(learnt, "the late node was never learnt: {:?}", node.node.api().peers());
    assert_eq!(node.node.api().candidates(), 0);
}

/// The seed's `fetch` is one call that returns when the file is in the share. A download that
/// lasts longer than the stall timeout (the time a connection may make no progress) must still
/// be answered, with 0, on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_is_answered_however_long_the_download_takes() {
    let holder = TestNode::start_with(|o| o.max_upload_rate = Some(512 << 10)).await;
    let bytes = super::util::random_bytes(2 << 20, 16);
    holder.add("slow.bin", &bytes).await;
    // Here a connection may make no progress for 1 s; the download takes about 4 s.
    let node = TestNode::start_with(|o| o.stall_timeout = Duration::from_secs(1)).await;
    node.knows(&[&holder]).await;
    assert_eq!(
        node.call("fetch", vec![s("slow.bin"), s(SECRET)]).await,
        Ok(Value::Integer(0)),
        "the fetch was not answered"
    );
    assert_eq!(read(&node.path("slow.bin")), bytes);
}

/// A fetch whose caller hangs up goes on: the file arrives in the share all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_goes_on_when_its_caller_goes_away() {
    let holder = TestNode::start_with(|o| o.max_upload_rate = Some(512 << 10)).await;
    let bytes = super::util::random_bytes(2 << 20, 16);
    holder.add("slow.bin", &bytes).await;
    let node = TestNode::start().await;
    node.knows(&[&holder]).await;
    let body = shoal_xmlrpc::encode_call("fetch", &[s("slow.bin"), s(SECRET)]);
    let gone = reqwest::Client::new()
        .post(&node.url)
        .header("content-type", "text/xml")
        .body(body)
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(gone.is_err(), "the caller was meant to hang up before the answer");
    let mut arrived = false;
    for _ in 0..600 {
        if std::fs::read(node.path("slow.bin")).is_ok_and(|got| got == bytes) {
            arrived = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(arrived, "the fetch stopped when its caller went away");
}
