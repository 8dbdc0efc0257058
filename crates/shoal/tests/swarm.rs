//! The swarm, with real `shoal serve` processes on loopback: a download in progress serves the
//! pieces it has verified, downloaders of the same file find each other through the holder and
//! trade pieces, strangers that lie about what they hold are dropped, a crowd finishes without
//! its only holder, and a node that gives nothing back still finishes. Every wait is bounded.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{Liar, Lie, MIB, Proc, Serve, json, random_bytes};

const PIECE: usize = MIB;

/// An HTTP answer: status, headers (lower-case names) and body.
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`), read to its end.
fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let authority = base.strip_prefix("http://").expect("an http URL").trim_end_matches('/');
    let mut stream = TcpStream::connect(authority).expect("connecting to the node");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reading the answer");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an answer head");
    let text = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    // The node answers with a length or chunks; a chunked body is unwrapped.
    if text.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = unchunk(&body);
    }
    Answer { status, headers, body }
}

fn unchunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
    out
}

fn string(s: &str) -> String {
    format!("<value><string>{s}</string></value>")
}

/// Sends an XML-RPC call; gives the answer's XML.
fn rpc(base: &str, method: &str, params: &[String]) -> String {
    let params: String = params.iter().map(|p| format!("<param>{p}</param>")).collect();
    let body = format!("<?xml version=\"1.0\"?><methodCall><methodName>{method}</methodName><params>{params}</params></methodCall>");
    let answer = http(base, "POST", "/", &[("Content-Type", "text/xml")], &body);
    String::from_utf8_lossy(&answer.body).into_owned()
}

/// Tells `node` (secret `x`) to download `target` in the background.
fn start_download(node: &Serve, target: &str) {
    let answer = rpc(
        &node.url,
        "shoal.download",
        &[
            string("x"),
            format!("<value><array><data>{}</data></array></value>", string(target)),
        ],
    );
    assert!(!answer.contains("<fault>"), "shoal.download on {}: {answer}", node.url);
}

/// A node sharing `files` (in `root/share`), or nothing, with the owner's secret `x`.
fn node(root: &Path, files: &[(&str, &[u8])], extra: &[&str]) -> Serve {
    let dir = root.join("share");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in files {
        std::fs::write(dir.join(name), data).unwrap();
    }
    let mut args = vec!["--secret", "x", "--no-iroh"];
    args.extend_from_slice(extra);
    let node = Serve::start(&dir, &root.join("state"), &args);
    for (name, _) in files {
        node.wait_indexed(name);
    }
    node
}

/// `n` nodes (under `root/d0`, `d1`, …) that know only `holder` and serve at 2 MiB/s.
fn downloaders(root: &Path, holder: &Serve, n: usize) -> Vec<Serve> {
    (0..n)
        .map(|i| {
            node(
                &root.join(format!("d{i}")),
                &[],
                &["--peer", &holder.url, "--max-upload-rate", "2M"],
            )
        })
        .collect()
}

/// What `/have/<id>` says: `None` for the whole file, else the pieces held.
fn have(base: &str, id: &str, count: usize) -> Option<Option<Vec<bool>>> {
    let answer = http(base, "GET", &format!("/have/{id}"), &[], "");
    if answer.status != 200 {
        return None;
    }
    match answer.headers.get("shoal-have").map(String::as_str) {
        Some("complete") => Some(None),
        Some(_) => Some(Some((0..count).map(|i| answer.body[i / 8] & (0x80 >> (i % 8)) != 0).collect())),
        None => None,
    }
}

/// Waits (bounded) until every node has `name` whole and right in its share.
fn wait_all_done(nodes: &[&Serve], name: &str, data: &[u8], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let missing: Vec<&str> = nodes
            .iter()
            .filter(|n| std::fs::read(n.dir.join(name)).map_or(true, |got| got != data))
            .map(|n| n.url.as_str())
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{missing:?} have no right {name} after {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The node's downloads as `shoal downloads --json` shows them.
fn downloads(node: &Serve) -> Vec<serde_json::Value> {
    let (status, lines, stderr) =
        Proc::shoal(&["downloads", "--json", "--node", &node.url, "--secret", "x"]).finish(Duration::from_secs(30));
    assert!(status.success(), "shoal downloads: {stderr}");
    let text = lines.join("\n");
    json(&text)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_else(|| panic!("not a JSON array: {text}"))
}

/// Bytes each source gave the node's download of `id`, by source URL.
fn bytes_by_source(node: &Serve, id: &str) -> BTreeMap<String, u64> {
    downloads(node)
        .iter()
        .filter(|d| d["id"].as_str() == Some(id))
        .flat_map(|d| d["sources"].as_array().cloned().unwrap_or_default())
        .map(|s| (s["url"].as_str().unwrap_or_default().to_string(), s["bytes"].as_u64().unwrap_or(0)))
        .collect()
}

/// A counter from the node's `/metrics` (for the owner).
fn metric(node: &Serve, name: &str) -> u64 {
    let answer = http(&node.url, "GET", "/metrics", &[("Authorization", "Bearer x")], "");
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn content_id(node: &Serve, name: &str) -> String {
    let answer = http(&node.url, "HEAD", &format!("/files/{name}"), &[], "");
    answer.headers["etag"].trim_matches('"').to_string()
}

#[test]
fn a_partial_holder_serves_exactly_the_pieces_it_has() {
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(6 * PIECE, 81);
    // The holder serves slowly, so the downloader holds part of the file for seconds.
    let holder = node(&tmp.path().join("h"), &[("f.bin", &data)], &["--max-upload-rate", "512K"]);
    let id = content_id(&holder, "f.bin");
    let partial = node(&tmp.path().join("p"), &[], &["--peer", &holder.url]);
    start_download(&partial, "f.bin");
    // Bounded: the download holds its first piece within seconds, and the whole file only after
    // ~12 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        if let Some(Some(bits)) = have(&partial.url, &id, 6)
            && bits.iter().any(|b| *b)
        {
            break bits;
        }
        assert!(Instant::now() < deadline, "the download held no piece in time");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!held.iter().all(|b| *b), "the download was complete before it was looked at");
    let mut served = 0;
    for (piece, has) in held.iter().enumerate() {
        let range = format!("bytes={}-{}", piece * PIECE, (piece + 1) * PIECE - 1);
        let answer = http(&partial.url, "GET", &format!("/content/{id}"), &[("Range", &range)], "");
        if *has {
            assert_eq!(answer.status, 206, "piece {piece} is held");
            assert_eq!(answer.body, data[piece * PIECE..(piece + 1) * PIECE], "piece {piece}'s bytes");
            served += 1;
        } else if answer.status == 416 {
            assert_eq!(answer.headers.get("shoal-lacks").map(String::as_str), Some("1"));
            assert_eq!(answer.headers.get("content-range").map(String::as_str), Some("bytes */6291456"));
            assert!(answer.body.is_empty());
        } else {
            // Verified since the look at /have: then it must be right and listed now.
            assert_eq!(answer.status, 206, "piece {piece}");
            assert_eq!(answer.body, data[piece * PIECE..(piece + 1) * PIECE]);
            assert!(have(&partial.url, &id, 6).unwrap().unwrap()[piece]);
        }
    }
    assert!(served >= 1);
    // The verification data is served too, so a downloader that knows only this node can check:
    // the piece outboard it checked, the same as the holder's; not the whole outboard, which
    // it never had.
    let path = format!("/outboard/{id}?piece_size=1048576");
    let outboard = http(&partial.url, "GET", &path, &[], "");
    let holders = http(&holder.url, "GET", &path, &[], "");
    assert_eq!(outboard.headers.get("shoal-piece-size").map(String::as_str), Some("1048576"));
    assert_eq!((outboard.status, &outboard.body), (200, &holders.body));
    // Five pairs above the six pieces and six down the last piece to its last 16 KiB block.
    assert_eq!(outboard.body.len(), 11 * 64);
    assert_eq!(http(&partial.url, "GET", &format!("/outboard/{id}"), &[], "").status, 404);
    // Partial content is for shoal peers only: not under its name, and the seed's query for a
    // name only a partial holder has (the holder left out by the history) is fault 100.
    assert_eq!(http(&partial.url, "GET", "/files/f.bin", &[], "").status, 404);
    let history = format!("<value><array><data>{}</data></array></value>", string(&holder.url));
    let answer = rpc(&partial.url, "query", &[string("f.bin"), history]);
    assert!(
        answer.contains("<fault>") && (answer.contains("<i4>100</i4>") || answer.contains("<int>100</int>")),
        "query of a partial file: {answer}"
    );
    // A shoal search for the id names the partial holder and how much it holds; the share's
    // listings show the file being downloaded, marked partial.
    let answer = rpc(
        &partial.url,
        "shoal.search",
        &[string(&id), string("q-partial"), "<value><int>1</int></value>".into()],
    );
    assert!(answer.contains(&string(partial.url.trim_end_matches('/'))), "{answer}");
    assert!(
        answer.contains("<name>partial</name>") && answer.contains("<name>held</name>"),
        "{answer}"
    );
    let files = http(&partial.url, "GET", "/api/v1/files", &[], "");
    let files = json(&String::from_utf8_lossy(&files.body)).expect("a JSON page");
    assert_eq!(files["files"].as_array().map(Vec::len), Some(0), "{files}");
    assert_eq!(files["partial"][0]["id"].as_str(), Some(id.as_str()), "{files}");
    assert_eq!(files["partial"][0]["pieces"].as_u64(), Some(6), "{files}");
    assert!(
        files["partial"][0]["held"].as_u64().is_some_and(|h| (1..=6).contains(&h)),
        "{files}"
    );
    let (status, lines, stderr) = Proc::shoal(&["ls", "--node", &partial.url]).finish(Duration::from_secs(30));
    assert!(status.success(), "shoal ls: {stderr}");
    assert!(lines.iter().any(|l| l.starts_with("f.bin") && l.contains("partial ")), "{lines:?}");
    wait_all_done(&[&partial], "f.bin", &data, Duration::from_secs(120));
    assert_eq!(have(&partial.url, &id, 6), Some(None), "complete once it is done");
}

#[test]
fn a_crowd_swarms_and_a_free_rider_still_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(12 * PIECE, 82);
    let holder = node(&tmp.path().join("h"), &[("f.bin", &data)], &["--max-upload-rate", "1M"]);
    let id = content_id(&holder, "f.bin");
    let crowd = downloaders(tmp.path(), &holder, 4);
    let rider = node(&tmp.path().join("rider"), &[], &["--peer", &holder.url, "--no-partial-upload"]);
    for n in crowd.iter().chain([&rider]) {
        start_download(n, "f.bin");
    }
    let all: Vec<&Serve> = crowd.iter().chain([&rider]).collect();
    wait_all_done(&all, "f.bin", &data, Duration::from_secs(180));
    let holder_content = format!("{}/content/{id}", holder.url);
    for n in &crowd {
        let by_source = bytes_by_source(n, &id);
        let from_others: u64 = by_source.iter().filter(|(url, _)| **url != holder_content).map(|(_, b)| *b).sum();
        assert!(
            from_others >= PIECE as u64,
            "{} got {from_others} bytes from other downloaders: {by_source:?}",
            n.url
        );
        assert!(
            metric(n, "shoal_partial_bytes_uploaded_total") > 0,
            "{} served nothing while it downloaded",
            n.url
        );
        // The owner sees what went to each other downloader.
        let rows = downloads(n);
        let uploads = rows
            .iter()
            .find(|d| d["id"].as_str() == Some(id.as_str()))
            .and_then(|d| d["uploads"].as_array().cloned())
            .unwrap_or_default();
        let sent: u64 = uploads.iter().filter_map(|u| u["bytes"].as_u64()).sum();
        assert!(sent >= metric(n, "shoal_partial_bytes_uploaded_total"), "{}: {uploads:?}", n.url);
        // Named by their node URL, or by address and port (the free rider names none).
        assert!(
            uploads.iter().all(|u| u["peer"].as_str().is_some_and(|p| p.contains("127.0.0.1:"))),
            "{uploads:?}"
        );
    }
    assert_eq!(
        metric(&rider, "shoal_partial_bytes_uploaded_total"),
        0,
        "the free rider served pieces"
    );
    // The holder sent less than the whole crowd took: the rest went between downloaders.
    assert!(metric(&holder, "shoal_bytes_uploaded_total") < (5 * data.len()) as u64);
    // It knew the crowd as one swarm: the four that serve (the rider names no URL).
    assert_eq!(metric(&holder, "shoal_swarms"), 1);
    assert_eq!(metric(&holder, "shoal_swarm_members"), 4);
}

#[test]
fn strangers_that_lie_about_their_pieces_are_dropped_and_the_file_is_right() {
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(8 * PIECE, 83);
    let holder = node(&tmp.path().join("h"), &[("f.bin", &data)], &["--max-upload-rate", "1M"]);
    let id = content_id(&holder, "f.bin");
    let liars = [Liar::start(&id, data.len(), Lie::Wrong), Liar::start(&id, data.len(), Lie::Lacks)];
    // Each liar names itself to the holder as a member of the id's swarm; the holder lists it
    // once it answered /have for the id (it does: every piece, it says).
    let deadline = Instant::now() + Duration::from_secs(30);
    for liar in &liars {
        loop {
            let answer = rpc(
                &holder.url,
                "shoal.swarm",
                &[string(&id), string(&liar.url), "<value><int>8</int></value>".into()],
            );
            let listed = rpc(&holder.url, "shoal.swarm", &[string(&id), string("")]);
            if listed.contains(&liar.url) {
                break;
            }
            assert!(!answer.contains("<fault>"), "shoal.swarm: {answer}");
            assert!(Instant::now() < deadline, "the holder never listed {}", liar.url);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let downloader = node(&tmp.path().join("d"), &[], &["--peer", &holder.url]);
    start_download(&downloader, "f.bin");
    wait_all_done(&[&downloader], "f.bin", &data, Duration::from_secs(120));
    let rows = downloads(&downloader);
    let sources: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|d| d["id"].as_str() == Some(id.as_str()))
        .flat_map(|d| d["sources"].as_array().unwrap().iter())
        .collect();
    for liar in &liars {
        let source = sources
            .iter()
            .find(|s| s["url"].as_str().is_some_and(|u| u.starts_with(&liar.url)))
            .unwrap_or_else(|| panic!("{} was never a source: {sources:?}", liar.url));
        assert_eq!(source["state"], "banned", "{source}");
        assert_eq!(source["bytes"], 0, "{source}");
    }
}

#[test]
fn the_crowd_completes_after_its_only_holder_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let count = 16;
    let data = random_bytes(count * PIECE, 84);
    let mut holder = node(&tmp.path().join("h"), &[("f.bin", &data)], &["--max-upload-rate", "2M"]);
    let id = content_id(&holder, "f.bin");
    let crowd = downloaders(tmp.path(), &holder, 3);
    for n in &crowd {
        start_download(n, "f.bin");
    }
    // The holder leaves (SIGKILL) as soon as the crowd holds every piece between them.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut union = vec![false; count];
        for n in &crowd {
            match have(&n.url, &id, count) {
                Some(None) => union = vec![true; count],
                Some(Some(bits)) => union.iter_mut().zip(bits).for_each(|(u, b)| *u |= b),
                None => {}
            }
        }
        if union.iter().all(|u| *u) {
            break;
        }
        assert!(Instant::now() < deadline, "the crowd never held every piece between them");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = metric(&holder, "shoal_bytes_uploaded_total");
    holder.proc.kill();
    let nodes: Vec<&Serve> = crowd.iter().collect();
    wait_all_done(&nodes, "f.bin", &data, Duration::from_secs(120));
    eprintln!(
        "the holder had sent {:.2} times the file when it left",
        sent as f64 / data.len() as f64
    );
}

#[test]
fn a_node_killed_mid_swarm_resumes_and_rejoins() {
    let tmp = tempfile::tempdir().unwrap();
    let count = 12;
    let data = random_bytes(count * PIECE, 85);
    let holder = node(&tmp.path().join("h"), &[("f.bin", &data)], &["--max-upload-rate", "1M"]);
    let id = content_id(&holder, "f.bin");
    let extra = ["--peer", holder.url.as_str(), "--max-upload-rate", "2M"];
    let other = node(&tmp.path().join("b"), &[], &extra);
    let mut killed = node(&tmp.path().join("a"), &[], &extra);
    for n in [&other, &killed] {
        start_download(n, "f.bin");
    }
    // SIGKILL once it holds a few pieces and not all.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(Some(bits)) = have(&killed.url, &id, count)
            && bits.iter().filter(|b| **b).count() >= 3
        {
            break;
        }
        assert!(Instant::now() < deadline, "the download held no three pieces in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.proc.kill();
    // The same share and state: the node resumes its download by itself and meets the swarm
    // again under its new address.
    let (dir, state) = (killed.dir.clone(), killed.state.clone());
    let mut args = vec!["--secret", "x", "--no-iroh"];
    args.extend_from_slice(&extra);
    let again = Serve::start(&dir, &state, &args);
    wait_all_done(&[&again, &other], "f.bin", &data, Duration::from_secs(120));
    let by_source = bytes_by_source(&again, &id);
    let fetched: u64 = by_source.values().sum();
    assert!(
        fetched < data.len() as u64,
        "the second run fetched everything again: {by_source:?}"
    );
    let from_others: u64 = by_source
        .iter()
        .filter(|(url, _)| !url.starts_with(&holder.url))
        .map(|(_, b)| *b)
        .sum();
    assert!(from_others > 0, "the resumed node took nothing from the swarm: {by_source:?}");
}
