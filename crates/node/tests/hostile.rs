//! A fake peer that lies in every field, against real nodes and the engine, over real HTTP on
//! `127.0.0.1:0`.
//!
//! The fake speaks XML-RPC (`shoal.search`, `shoal.locate`, `query`, `shoal.peers`,
//! `shoal.list_folder`, `hello`, `system.listMethods`) and serves `/content/<id>` and `/outboard/<id>`, each answer scripted
//! per test: sizes that are not the file's, names that try to leave the share or carry control
//! codes, thousands of holder URLs pointing at a counting "victim" server, redirects to a
//! counting server, endless bodies, wrong verification data. It counts every request and every
//! body byte it manages to send. Each test asserts what the protection under test guarantees,
//! so that it fails without that protection. Waits are bounded; nothing sleeps to synchronise.

#[path = "it/util.rs"]
mod util;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shoal_index::ContentId;
use shoal_node::discovery::{MAX_MERGED_HOLDERS, Match, Merged, match_from_value};
use shoal_node::engine::{Engine, EngineError, EngineOptions, Job, NewSource, Outcome, Progress, SourceStat, SourceState, part_path};
use shoal_node::proto::faults::NOT_FOUND;
use shoal_node::proto::limits::{MAX_HOLDERS_PER_MATCH, SEARCH_ANSWER_BYTES};
use shoal_xmlrpc::{Fault, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use fake::{Counter, Data, FakePeer, Rpc, Script};
use util::{SECRET, TestNode, random_bytes, s};

/// The bound on every test.
const TEST_LIMIT: Duration = Duration::from_secs(120);

const MIB: usize = 1 << 20;

/// Test-only servers: the scripted fake peer and a server that only counts what reaches it.
mod fake {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::body::{Body, Bytes};
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
    use axum::response::{IntoResponse, Response};
    use shoal_xmlrpc::{Fault, Value};
    use tokio_util::sync::CancellationToken;

    /// Body bytes are produced in chunks of this size.
    const CHUNK: usize = 64 * 1024;

    /// How the fake answers one XML-RPC method.
    #[derive(Clone)]
    pub enum Rpc {
        /// A successful answer with this value.
        Value(Value),
        /// A fault.
        Fault(i32, String),
        /// This exact document (for answers `encode_response` would not write).
        Raw(String),
        /// The start of a search answer, then array items for ever.
        Endless,
    }

    /// How the fake answers a GET or HEAD of a data path.
    #[derive(Clone)]
    pub enum Data {
        NotFound,
        /// Serves `data` as a file of `claimed` bytes (zeros past the end of `data`), with ranges;
        /// HEAD says `claimed`.
        Serve {
            data: Bytes,
            claimed: u64,
        },
        /// 302 to this URL.
        Redirect(String),
        /// 200 with no length: `prefix`, then zeros for ever.
        Endless {
            prefix: Bytes,
        },
    }

    /// The fake's answers.
    #[derive(Clone)]
    pub struct Script {
        pub search: Rpc,
        pub locate: Rpc,
        pub query: Rpc,
        pub peers: Rpc,
        pub list_folder: Rpc,
        pub content: Data,
        pub outboard: Data,
    }

    impl Default for Script {
        fn default() -> Self {
            Script {
                search: Rpc::Value(Value::Array(Vec::new())),
                locate: Rpc::Fault(100, "Could not handle the query".into()),
                query: Rpc::Fault(100, "Could not handle the query".into()),
                peers: Rpc::Value(Value::Array(Vec::new())),
                list_folder: Rpc::Fault(1, "method \"shoal.list_folder\" is not supported".into()),
                content: Data::NotFound,
                outboard: Data::NotFound,
            }
        }
    }

    struct Shared {
        script: Mutex<Script>,
        /// Requests by kind: `rpc <method>`, `GET /content`, `HEAD /outboard`, `other`.
        requests: Mutex<HashMap<String, u64>>,
        /// Body bytes produced by streamed answers, by kind.
        sent: Mutex<HashMap<String, u64>>,
        closed: CancellationToken,
    }

    /// A running fake peer; dropping it stops it and every response it holds open.
    pub struct FakePeer {
        /// `http://127.0.0.1:<port>`.
        pub url: String,
        shared: Arc<Shared>,
        task: tokio::task::JoinHandle<()>,
    }

    impl FakePeer {
        pub async fn start(script: Script) -> FakePeer {
            let shared = Arc::new(Shared {
                script: Mutex::new(script),
                requests: Mutex::default(),
                sent: Mutex::default(),
                closed: CancellationToken::new(),
            });
            // A small send buffer (inherited by accepted connections), so that what the fake
            // counts as sent is close to what the client took, not what the kernel buffered.
            let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
            socket.set_send_buffer_size(64 * 1024).expect("a send buffer size");
            socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind the fake peer");
            let listener = socket.listen(1024).expect("listen");
            let addr = listener.local_addr().expect("local address");
            let router = axum::Router::new().fallback(handle).with_state(shared.clone());
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            });
            FakePeer {
                url: format!("http://{addr}"),
                shared,
                task,
            }
        }

        /// Changes the script while the fake runs.
        pub fn script(&self, change: impl FnOnce(&mut Script)) {
            change(&mut self.shared.script.lock().unwrap());
        }

        /// Requests of one kind (`rpc shoal.search`, `GET /content`, ...).
        pub fn requests(&self, kind: &str) -> u64 {
            self.shared.requests.lock().unwrap().get(kind).copied().unwrap_or(0)
        }

        /// Body bytes produced for streamed answers of one kind (`rpc shoal.search`,
        /// `GET /outboard`, ...): what the fake managed to hand to the transport.
        pub fn sent(&self, kind: &str) -> u64 {
            self.shared.sent.lock().unwrap().get(kind).copied().unwrap_or(0)
        }
    }

    impl Drop for FakePeer {
        fn drop(&mut self) {
            self.shared.closed.cancel();
            self.task.abort();
        }
    }

    fn count(shared: &Shared, kind: &str) {
        *shared.requests.lock().unwrap().entry(kind.to_string()).or_default() += 1;
    }

    fn xml(text: String) -> Response {
        ([(header::CONTENT_TYPE, "text/xml")], text).into_response()
    }

    async fn handle(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let path = uri.path().to_string();
        if method == Method::POST {
            let Ok(call) = shoal_xmlrpc::decode_call(&body) else {
                count(&shared, "other");
                return xml(shoal_xmlrpc::encode_fault(&Fault::new(1, "malformed call")));
            };
            let kind = format!("rpc {}", call.method);
            count(&shared, &kind);
            let rpc = {
                let script = shared.script.lock().unwrap();
                match call.method.as_str() {
                    "shoal.search" => script.search.clone(),
                    "shoal.locate" => script.locate.clone(),
                    "query" => script.query.clone(),
                    "shoal.peers" => script.peers.clone(),
                    "shoal.list_folder" => script.list_folder.clone(),
                    "hello" => Rpc::Value(Value::Integer(0)),
                    "system.listMethods" => Rpc::Value(Value::Array(
                        ["hello", "query", "fetch", "shoal.search", "shoal.locate", "shoal.peers"]
                            .iter()
                            .map(|m| Value::String(m.to_string()))
                            .collect(),
                    )),
                    other => Rpc::Fault(1, format!("method \"{other}\" is not supported")),
                }
            };
            return match rpc {
                Rpc::Value(value) => xml(shoal_xmlrpc::encode_response(value)),
                Rpc::Fault(code, message) => xml(shoal_xmlrpc::encode_fault(&Fault::new(code, message))),
                Rpc::Raw(text) => xml(text),
                Rpc::Endless => {
                    let prefix = Bytes::from_static(b"<?xml version=\"1.0\"?><methodResponse><params><param><value><array><data>");
                    let item = b"<value><string>http://127.0.0.1:1</string></value>";
                    let filler = Bytes::from(item.repeat(CHUNK / item.len()));
                    ([(header::CONTENT_TYPE, "text/xml")], endless(shared.clone(), kind, prefix, filler)).into_response()
                }
            };
        }
        let head = method == Method::HEAD;
        let (what, data) = {
            let script = shared.script.lock().unwrap();
            if path.starts_with("/content/") {
                ("/content", script.content.clone())
            } else if path.starts_with("/outboard/") {
                ("/outboard", script.outboard.clone())
            } else {
                ("other", Data::NotFound)
            }
        };
        let kind = format!("{} {what}", if head { "HEAD" } else { "GET" });
        count(&shared, &kind);
        match data {
            Data::NotFound => (StatusCode::NOT_FOUND, "not found\n").into_response(),
            Data::Redirect(to) => Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, to)
                .body(Body::empty())
                .expect("a response"),
            Data::Endless { prefix } => {
                if head {
                    return StatusCode::OK.into_response();
                }
                let zeros = Bytes::from(vec![0u8; CHUNK]);
                endless(shared.clone(), kind, prefix, zeros).into_response()
            }
            Data::Serve { data, claimed } => serve(shared.clone(), kind, &headers, head, data, claimed),
        }
    }

    /// A body of `prefix` and then `filler` for ever, counting what it produces, ending when
    /// the client hangs up (the transport drops it) or the fake is dropped.
    fn endless(shared: Arc<Shared>, kind: String, prefix: Bytes, filler: Bytes) -> Body {
        let first = Some(prefix);
        let stream = futures_util::stream::unfold((shared, kind, first, filler), |(shared, kind, mut first, filler)| async move {
            if shared.closed.is_cancelled() {
                return None;
            }
            let chunk = first.take().unwrap_or_else(|| filler.clone());
            *shared.sent.lock().unwrap().entry(kind.clone()).or_default() += chunk.len() as u64;
            Some((Ok::<_, std::io::Error>(chunk), (shared, kind, first, filler)))
        });
        Body::from_stream(stream)
    }

    /// A single `bytes=a-b` or `bytes=a-` range within `size`.
    fn range(headers: &HeaderMap, size: u64) -> Option<(u64, u64)> {
        let text = headers.get(header::RANGE)?.to_str().ok()?.strip_prefix("bytes=")?;
        let (a, b) = text.split_once('-')?;
        let start: u64 = a.trim().parse().ok()?;
        let end = match b.trim() {
            "" => size,
            b => b.parse::<u64>().ok()?.saturating_add(1).min(size),
        };
        (start < end).then_some((start, end))
    }

    /// `data` as a file of `claimed` bytes: ranges answered with the claimed total.
    fn serve(shared: Arc<Shared>, kind: String, headers: &HeaderMap, head: bool, data: Bytes, claimed: u64) -> Response {
        let wanted = range(headers, claimed);
        let (start, end) = wanted.unwrap_or((0, claimed));
        let mut builder = Response::builder()
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::CONTENT_LENGTH, end - start);
        builder = match wanted {
            Some((a, b)) => builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {a}-{}/{claimed}", b - 1)),
            None => builder.status(StatusCode::OK),
        };
        if head {
            return builder.body(Body::empty()).expect("a response");
        }
        let stream = futures_util::stream::unfold((shared, kind, data, start, end), |(shared, kind, data, at, end)| async move {
            if at >= end || shared.closed.is_cancelled() {
                return None;
            }
            let len = (CHUNK as u64).min(end - at);
            let chunk: Bytes = (at..at + len)
                .map(|i| data.get(i as usize).copied().unwrap_or(0))
                .collect::<Vec<u8>>()
                .into();
            *shared.sent.lock().unwrap().entry(kind.clone()).or_default() += len;
            Some((Ok::<_, std::io::Error>(chunk), (shared, kind, data, at + len, end)))
        });
        builder.body(Body::from_stream(stream)).expect("a response")
    }

    /// A server that answers every request with `200 ok` and counts them, listening on one or
    /// more ports.
    pub struct Counter {
        pub ports: Vec<u16>,
        hits: Arc<AtomicU64>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    }

    impl Counter {
        pub async fn start(ports: usize) -> Counter {
            let hits = Arc::new(AtomicU64::new(0));
            let mut counter = Counter {
                ports: Vec::new(),
                hits: hits.clone(),
                tasks: Vec::new(),
            };
            for _ in 0..ports {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the counter");
                counter.ports.push(listener.local_addr().expect("local address").port());
                let hits = hits.clone();
                let router = axum::Router::new().fallback(move || {
                    let hits = hits.clone();
                    async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        "ok"
                    }
                });
                counter.tasks.push(tokio::spawn(async move {
                    let _ = axum::serve(listener, router).await;
                }));
            }
            counter
        }

        /// The base URL on its first port.
        pub fn url(&self) -> String {
            format!("http://127.0.0.1:{}", self.ports[0])
        }

        pub fn hits(&self) -> u64 {
            self.hits.load(Ordering::SeqCst)
        }
    }

    impl Drop for Counter {
        fn drop(&mut self) {
            for task in &self.tasks {
                task.abort();
            }
        }
    }
}

/// Runs a test body under the bound every test has.
async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("the test finished within its bound");
}

/// Runs one step under a bound.
async fn step<T>(what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .unwrap_or_else(|_| panic!("{what} did not end within its bound"))
}

/// Short timeouts, so that faults are noticed quickly.
fn quick_options() -> EngineOptions {
    EngineOptions {
        stall_timeout: Duration::from_secs(2),
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        give_up_after: Duration::from_secs(30),
        ..Default::default()
    }
}

/// An engine over a state store in `dir`.
fn engine_in(dir: &Path) -> Engine {
    let db = redb::Database::create(dir.join("s.redb")).expect("the state store");
    Engine::new(Arc::new(db), shoal_node::net::Client::new(Duration::from_secs(3)), quick_options()).expect("an engine")
}

/// Runs `job` to its end with no sources arriving later, watching the sizes of the partial
/// file and the target while it runs. Returns how it ended, its progress and the largest size
/// either file had.
async fn run(engine: &Engine, job: Job) -> (Result<Outcome, EngineError>, Arc<Progress>, u64) {
    let progress = Arc::new(Progress::default());
    let (_more, more_rx) = mpsc::channel::<NewSource>(1);
    let watched = watch_sizes(vec![part_path(&job.target), job.target.clone()]);
    let result = engine.run(job, progress.clone(), CancellationToken::new(), more_rx).await;
    (result, progress, watched.stop().await)
}

/// Polls the sizes of some files until stopped, keeping the largest seen.
struct Watch {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<u64>,
}

fn watch_sizes(paths: Vec<std::path::PathBuf>) -> Watch {
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut largest = 0;
            // Bounded: the test's own bound ends it at the latest; each round is one stat per path.
            while !stop.is_cancelled() {
                for path in &paths {
                    if let Ok(meta) = std::fs::symlink_metadata(path) {
                        largest = largest.max(meta.len());
                    }
                }
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
            largest
        }
    });
    Watch { stop, task }
}

impl Watch {
    async fn stop(self) -> u64 {
        self.stop.cancel();
        self.task.await.expect("the watcher")
    }
}

/// The largest file under `dir` (recursively, not following symlinks).
fn largest_file(dir: &Path) -> u64 {
    let mut largest = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                largest = largest.max(meta.len());
            }
        }
    }
    largest
}

fn assert_same_file(path: &Path, data: &[u8]) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert_eq!(got.len(), data.len(), "size of {}", path.display());
    assert!(got == data, "{} differs from the honest bytes", path.display());
    assert!(!part_path(path).exists(), "the partial file is gone after success");
}

fn stat_of<'a>(sources: &'a [SourceStat], base: &str) -> &'a SourceStat {
    sources
        .iter()
        .find(|s| s.url.starts_with(&format!("{base}/")))
        .unwrap_or_else(|| panic!("no source stat for {base}: {sources:#?}"))
}

/// One `shoal.search` match as a peer sends it.
fn search_item(name: &str, size: u64, id: &str, urls: &[String]) -> Value {
    let mut f = std::collections::BTreeMap::new();
    f.insert("name".to_string(), s(name));
    f.insert("size".to_string(), shoal_xmlrpc::size_value(size));
    f.insert("id".to_string(), s(id));
    f.insert("urls".to_string(), Value::Array(urls.iter().map(|u| s(u)).collect()));
    Value::Struct(f)
}

/// A `shoal.locate` hit as a peer sends it.
fn locate_hit(url: &str, name: &str, size: u64, id: Option<ContentId>, content: Option<&[u8]>) -> Value {
    let mut f = std::collections::BTreeMap::new();
    f.insert("url".to_string(), s(url));
    f.insert("name".to_string(), s(name));
    f.insert("size".to_string(), shoal_xmlrpc::size_value(size));
    if let Some(id) = id {
        f.insert("id".to_string(), s(&id.to_string()));
    }
    if let Some(content) = content {
        f.insert("content".to_string(), Value::Base64(content.to_vec()));
    }
    Value::Struct(f)
}

/// An XML-RPC call over HTTP, returning the raw response body.
async fn raw_call(url: &str, method: &str, params: Vec<Value>) -> Vec<u8> {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "text/xml")
        .body(shoal_xmlrpc::encode_call(method, &params))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("the node answers");
    response.bytes().await.expect("a body").to_vec()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A node that knows `others` (by `hello`, which probes each with `system.listMethods`).
async fn node_knowing(urls: &[&str]) -> TestNode {
    let node = TestNode::start().await;
    for url in urls {
        assert_eq!(node.call("hello", vec![s(url)]).await, Ok(Value::Integer(0)), "hello {url}");
    }
    node
}

/// The honest file of most tests: 3 MiB, held by an honest node.
struct Honest {
    node: TestNode,
    name: &'static str,
    data: Vec<u8>,
    id: ContentId,
    outboard: Vec<u8>,
}

async fn honest(name: &'static str, len: usize, seed: u64) -> Honest {
    let data = random_bytes(len, seed);
    let hashed = shoal_index::hash_bytes(&data);
    let node = TestNode::start().await;
    node.add(name, &data).await;
    Honest {
        node,
        name,
        data,
        id: hashed.id,
        outboard: hashed.outboard,
    }
}

impl Honest {
    fn job(&self, target: &Path, size: Option<u64>, peers: Vec<String>) -> Job {
        Job {
            name: self.name.into(),
            target: target.to_path_buf(),
            id: Some(self.id),
            size,
            peers,
            mirrors: Vec::new(),
            force: false,
            by_node: false,
        }
    }
}

/// `fetch(name, secret)` on `node`, then checks the file and that the node still answers.
async fn fetch_and_check(node: &TestNode, honest: &Honest) {
    let watched = watch_sizes(vec![node.path(honest.name), part_path(&node.path(honest.name))]);
    let fetched = step("fetch", node.call("fetch", vec![s(honest.name), s(SECRET)])).await;
    let largest = watched.stop().await;
    assert_eq!(fetched, Ok(Value::Integer(0)), "fetch succeeds from the honest holder");
    assert_same_file(&node.path(honest.name), &honest.data);
    assert!(
        largest <= honest.data.len() as u64,
        "a file of {largest} bytes appeared during the fetch"
    );
    assert!(largest_file(node.dir.path()) <= honest.data.len() as u64);
    let listed = step("list", node.call("list", vec![])).await.expect("the node still answers list");
    assert!(
        matches!(&listed, Value::Array(names) if names.contains(&s(honest.name))),
        "{listed:?}"
    );
}

// 1. A size of 2^62 (and 2^49) for the honest file: the download takes the size bound to the
// content id, never the claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_size_claim_is_not_believed() {
    bounded(async {
        let honest = honest("big.bin", 3 * MIB, 1).await;
        let id = honest.id.to_string();
        let fake = FakePeer::start(Script::default()).await;
        let urls = vec![fake.url.clone(), honest.node.url.clone()];
        fake.script(|script| {
            script.search = Rpc::Value(Value::Array(vec![
                search_item(honest.name, 1 << 62, &id, &urls),
                search_item(honest.name, 1 << 49, &id, &urls),
            ]));
            script.content = Data::Serve {
                data: Default::default(),
                claimed: 1 << 49,
            };
            script.outboard = Data::Serve {
                data: honest.outboard.clone().into(),
                claimed: honest.outboard.len() as u64,
            };
        });

        // Through a node that knows both.
        let node = node_knowing(&[&fake.url, &honest.node.url]).await;
        fetch_and_check(&node, &honest).await;
        assert!(fake.requests("rpc shoal.search") >= 1, "the fake was asked");

        // The engine, told the lie directly.
        for claim in [1u64 << 62, 1 << 49] {
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("out").join("big.bin");
            let engine = engine_in(dir.path());
            let job = honest.job(&target, Some(claim), urls.clone());
            let (result, progress, largest) = step("the engine", run(&engine, job)).await;
            let outcome = result.unwrap_or_else(|e| panic!("claim {claim}: the download fails: {e}"));
            assert_eq!(outcome.size, honest.data.len() as u64);
            assert_same_file(&target, &honest.data);
            assert!(
                largest <= honest.data.len() as u64,
                "claim {claim}: a file of {largest} bytes appeared"
            );
            assert!(largest_file(&dir.path().join("out")) <= honest.data.len() as u64);
            assert!(stat_of(&progress.sources(), &honest.node.url).bytes > 0);
        }
        assert_eq!(node.call("list", vec![]).await.map(|_| ()), Ok(()));
    })
    .await;
}

// 2. A size just below and just above the real one: tried, refused against the honest data,
// and the honest source is not blamed for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_size_claim_does_not_ban_the_honest_source() {
    bounded(async {
        let honest = honest("near.bin", 3 * MIB, 2).await;
        let real = honest.data.len() as u64;
        for claim in [real - 1024, real + 16 * 1024] {
            let fake = FakePeer::start(Script {
                content: Data::Serve {
                    data: honest.data.clone().into(),
                    claimed: claim,
                },
                outboard: Data::Serve {
                    data: honest.outboard.clone().into(),
                    claimed: honest.outboard.len() as u64,
                },
                ..Script::default()
            })
            .await;
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("near.bin");
            let engine = engine_in(dir.path());
            let job = honest.job(&target, Some(claim), vec![fake.url.clone(), honest.node.url.clone()]);
            let (result, progress, largest) = step("the engine", run(&engine, job)).await;
            let outcome = result.unwrap_or_else(|e| panic!("claim {claim}: the download fails: {e}"));
            assert_eq!(outcome.size, real);
            assert_same_file(&target, &honest.data);
            assert!(largest <= real, "claim {claim}: a file of {largest} bytes appeared");
            let sources = progress.sources();
            let stat = stat_of(&sources, &honest.node.url);
            assert_ne!(stat.state, SourceState::Banned, "claim {claim}: {sources:#?}");
            assert_eq!(stat.bad_pieces, 0, "claim {claim}: {sources:#?}");
            assert!(stat.bytes > 0, "claim {claim}: the honest source contributed: {sources:#?}");
        }
    })
    .await;
}

// 3. Wrong and endless verification data from the first holder: the honest holder's is used,
// and the endless stream is cut within a few MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outboard_lies_are_refused_and_endless_ones_cut() {
    bounded(async {
        let honest = honest("tree.bin", 3 * MIB, 3).await;
        let mut corrupt = honest.outboard.clone();
        let middle = corrupt.len() / 2;
        corrupt[middle] ^= 0x55;
        let lies = [
            (
                "corrupt",
                Data::Serve {
                    claimed: corrupt.len() as u64,
                    data: corrupt.into(),
                },
            ),
            (
                "endless zeros",
                Data::Endless {
                    prefix: Default::default(),
                },
            ),
            (
                "the real outboard, then zeros for ever",
                Data::Endless {
                    prefix: honest.outboard.clone().into(),
                },
            ),
        ];
        for (what, lie) in lies {
            let fake = FakePeer::start(Script {
                content: Data::Serve {
                    data: honest.data.clone().into(),
                    claimed: honest.data.len() as u64,
                },
                outboard: lie,
                ..Script::default()
            })
            .await;
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("tree.bin");
            let engine = engine_in(dir.path());
            let job = honest.job(
                &target,
                Some(honest.data.len() as u64),
                vec![fake.url.clone(), honest.node.url.clone()],
            );
            let (result, _, _) = step("the engine", run(&engine, job)).await;
            let outcome = result.unwrap_or_else(|e| panic!("{what}: the download fails: {e}"));
            assert_same_file(&target, &honest.data);
            assert!(
                outcome.outboard.as_deref().is_none_or(|kept| kept == &honest.outboard[..]),
                "{what}: an unchecked outboard was kept"
            );
            assert!(fake.requests("GET /outboard") >= 1, "{what}: the fake's outboard was asked for");
            let sent = fake.sent("GET /outboard");
            assert!(sent < 64 * MIB as u64, "{what}: the fake sent {sent} bytes of outboard");
        }
    })
    .await;
}

// 4. Redirects from a holder's data paths are never followed, and a stranger's fault does not
// name where they pointed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_from_holders_are_not_followed() {
    bounded(async {
        let honest = honest("moved.bin", 3 * MIB, 4).await;
        let target_server = Counter::start(1).await;
        let fake = FakePeer::start(Script {
            content: Data::Redirect(format!("{}/content/{}", target_server.url(), honest.id)),
            outboard: Data::Redirect(format!("{}/outboard/{}", target_server.url(), honest.id)),
            ..Script::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("moved.bin");
        let engine = engine_in(dir.path());
        let job = honest.job(
            &target,
            Some(honest.data.len() as u64),
            vec![fake.url.clone(), honest.node.url.clone()],
        );
        let (result, _, _) = step("the engine", run(&engine, job)).await;
        result.expect("the download completes from the honest peer");
        assert_same_file(&target, &honest.data);
        assert!(
            fake.requests("GET /outboard") + fake.requests("GET /content") >= 1,
            "the fake was asked"
        );
        assert_eq!(target_server.hits(), 0, "a redirect was followed");
    })
    .await;
}

// 4b. `query` through a node whose only peer locates the file on a holder that redirects: the
// redirect is not followed, and the fault the caller gets does not say where it pointed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirecting_located_holder_gives_a_fault_without_its_target() {
    bounded(async {
        let target_server = Counter::start(1).await;
        let fake = FakePeer::start(Script::default()).await;
        let small = b"a small file that lives elsewhere\n";
        let small_id = shoal_index::hash_bytes(small).id;
        fake.script(|script| {
            script.locate = Rpc::Value(locate_hit(&fake.url, "notes.txt", small.len() as u64, Some(small_id), None));
            script.content = Data::Redirect(format!("{}/content/{small_id}", target_server.url()));
        });
        let node = node_knowing(&[&fake.url]).await;
        let answer = step("query", node.call("query", vec![s("notes.txt")])).await;
        let fault = answer.expect_err("the redirected holder delivers nothing");
        assert!(fake.requests("rpc shoal.locate") >= 1);
        assert!(fake.requests("GET /content") >= 1, "the located holder was asked");
        assert_eq!(target_server.hits(), 0, "a redirect was followed");
        let port = target_server.ports[0].to_string();
        assert!(!fault.message.contains(&port), "the fault names the redirect target: {fault:?}");
        assert!(!fault.message.contains("http"), "the fault carries a URL: {fault:?}");
        assert_eq!(node.call("list", vec![]).await.map(|_| ()), Ok(()));
    })
    .await;
}

/// 5,000 spellings of holder URLs on `victim`'s ports.
fn flood_urls(victim: &Counter, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let port = victim.ports[i % victim.ports.len()];
            match i % 8 {
                0 => format!("http://127.0.0.1:{port}/p{i}"),
                1 => format!("HTTP://LOCALHOST:{port}/p{i}/"),
                2 => format!("http://user:pw{i}@127.0.0.1:{port}/"),
                3 => format!("http://127.0.0.1:{port}/?token={i}"),
                4 => format!("http://2130706433:{port}/RPC2"),
                5 => format!("http://127.0.0.1:{port}/a%2F..%2F{i}"),
                6 => format!("http://127.0.0.1:{port}#frag{i}"),
                _ => format!("http://localhost:{port}"),
            }
        })
        .collect()
}

// 5. One answer names 5,000 holders, all on a victim: the victim hears from a few dozen at
// most, and the download completes from the honest holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_holder_urls_reaches_few_of_them() {
    bounded(async {
        let honest = honest("flood.bin", 3 * MIB, 5).await;
        let id = honest.id.to_string();
        let victim = Counter::start(64).await;
        let fake = FakePeer::start(Script::default()).await;
        let mut urls = flood_urls(&victim, 5000);
        urls.push(honest.node.url.clone());
        let answer = Value::Array(vec![search_item(honest.name, honest.data.len() as u64, &id, &urls)]);
        fake.script(|script| script.search = Rpc::Value(answer.clone()));

        // The engine, with the holders discovery merges when the fake answers first.
        let mut merged = Merged::default();
        for found in shoal_node::proto::calls::search_answer(answer.clone()) {
            merged.add(Match::from(found));
        }
        merged.add(Match {
            name: honest.name.into(),
            size: honest.data.len() as u64,
            id: honest.id,
            urls: vec![honest.node.url.clone()],
            partial: Vec::new(),
        });
        let found = merged.into_sorted();
        assert_eq!(found.len(), 1);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("flood.bin");
        let engine = engine_in(dir.path());
        let job = honest.job(&target, Some(found[0].size), found[0].urls.clone());
        let (result, _, _) = step("the engine", run(&engine, job)).await;
        let engine_hits = victim.hits();
        result.expect("the engine download completes from the honest holder");
        assert_same_file(&target, &honest.data);
        // At most a few requests per source slot: a size probe for the first few, a request for
        // verification data and one for data per source, whatever the answer named.
        let cap = (2 * shoal_node::engine::MAX_PEER_SOURCES + 8) as u64;
        assert!(engine_hits <= cap, "the victim got {engine_hits} requests from the engine");

        // A node's fetch over the fake and the honest holder.
        let node = node_knowing(&[&fake.url, &honest.node.url]).await;
        fetch_and_check(&node, &honest).await;
        let fetch_hits = victim.hits() - engine_hits;
        assert!(fetch_hits <= cap, "the victim got {fetch_hits} requests from the node");
    })
    .await;
}

// 6. Names that leave the share, hide or carry control codes never come through a node's
// search answer; an honest match in the same answer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_never_pass_through_a_search() {
    bounded(async {
        let fake = FakePeer::start(Script::default()).await;
        let id = shoal_index::hash_bytes(b"whatever").id.to_string();
        let holder = vec![fake.url.clone()];
        let hostile = [
            ".bashrc",
            "../../etc/x",
            "a\u{1b}[2Jb",
            "dir/.ssh/authorized_keys",
            "/etc/passwd",
            "a/../../b",
        ];
        let mut items: Vec<Value> = hostile.iter().map(|name| search_item(name, 8, &id, &holder)).collect();
        items.push(search_item("docs/honest notes.txt", 8, &id, &holder));
        fake.script(|script| script.search = Rpc::Value(Value::Array(items)));
        let node = node_knowing(&[&fake.url]).await;

        let raw = step("search", raw_call(&node.url, "shoal.search", vec![s("")])).await;
        assert!(!raw.contains(&0x1b), "the answer carries an ESC byte");
        for marker in [&b".bashrc"[..], b"../", b"authorized_keys", b"/etc/", b"&#27;", b"&#x1b;", b"[2J"] {
            assert!(!contains(&raw, marker), "the answer carries {:?}", String::from_utf8_lossy(marker));
        }
        let Ok(Ok(Value::Array(rows))) = shoal_xmlrpc::decode_response(&raw) else {
            panic!("not a search answer: {}", String::from_utf8_lossy(&raw));
        };
        let names: Vec<String> = rows
            .into_iter()
            .map(|row| match_from_value(row).expect("every row passes the checks").name)
            .collect();
        assert_eq!(names, vec!["docs/honest notes.txt".to_string()]);
        assert!(fake.requests("rpc shoal.search") >= 1);
    })
    .await;
}

// 7. Endless answers from 16 peers: one search still returns, and each peer got to send about
// one answer's cap. Then two peers with 40,000 holders each for one match: bounded merge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_and_overfull_answers_stay_within_budgets() {
    bounded(async {
        let mut fakes = Vec::new();
        for _ in 0..16 {
            fakes.push(
                FakePeer::start(Script {
                    search: Rpc::Endless,
                    ..Script::default()
                })
                .await,
            );
        }
        let urls: Vec<String> = fakes.iter().map(|f| f.url.clone()).collect();
        let node = TestNode::start_with(|o| {
            o.peers = urls.clone();
            o.search_deadline = Duration::from_secs(5);
        })
        .await;
        let answer = step("a search over endless answers", node.call("shoal.search", vec![s("anything")])).await;
        assert_eq!(answer, Ok(Value::Array(Vec::new())));
        for fake in &fakes {
            assert_eq!(fake.requests("rpc shoal.search"), 1, "{}", fake.url);
            let sent = fake.sent("rpc shoal.search");
            assert!(
                sent > SEARCH_ANSWER_BYTES as u64 / 2,
                "{}: only {sent} bytes sent; was it read at all?",
                fake.url
            );
            assert!(sent < 4 * MIB as u64, "{}: sent {sent} bytes", fake.url);
        }
        drop(fakes);

        // Two peers naming 40,000 holders each for one match, in the compact form XML-RPC allows
        // (`<value>url</value>`), so that each answer fits the answer cap and is read whole.
        let id = shoal_index::hash_bytes(b"merged").id.to_string();
        let mut overfull = Vec::new();
        for hosts in ["abcdefghijklm", "nopqrstuvwxyz"] {
            let hosts: Vec<char> = hosts.chars().collect();
            let mut xml = String::from("<?xml version=\"1.0\"?><methodResponse><params><param><value><array><data><value><struct>");
            xml.push_str(&format!(
                "<member><name>name</name><value><string>m.bin</string></value></member>\
                 <member><name>size</name><value><i4>6</i4></value></member>\
                 <member><name>id</name><value><string>{id}</string></value></member>\
                 <member><name>urls</name><value><array><data>"
            ));
            for i in 0..40_000 {
                xml.push_str(&format!(
                    "<value>http://{}:{}</value>",
                    hosts[i % hosts.len()],
                    1 + (i / hosts.len()) % 9
                ));
            }
            xml.push_str("</data></array></value></member></struct></value></data></array></value></param></params></methodResponse>");
            assert!(xml.len() < SEARCH_ANSWER_BYTES, "the answer fits the cap: {}", xml.len());
            overfull.push(
                FakePeer::start(Script {
                    search: Rpc::Raw(xml),
                    ..Script::default()
                })
                .await,
            );
        }
        let urls: Vec<String> = overfull.iter().map(|f| f.url.clone()).collect();
        let node = TestNode::start_with(|o| {
            o.peers = urls.clone();
            o.search_deadline = Duration::from_secs(5);
        })
        .await;
        let answer = step("a search over overfull answers", node.call("shoal.search", vec![s("m.bin")]))
            .await
            .expect("the search answers");
        let Value::Array(rows) = answer else { panic!("{answer:?}") };
        assert_eq!(rows.len(), 1, "{rows:?}");
        // Read the holders as they are on the wire (`match_from_value` would cap them again).
        let Value::Struct(fields) = &rows[0] else { panic!("{rows:?}") };
        let Some(Value::Array(holders)) = fields.get("urls") else {
            panic!("{fields:?}")
        };
        assert_eq!(fields.get("name"), Some(&s("m.bin")));
        assert!(holders.len() <= MAX_MERGED_HOLDERS, "{} holders", holders.len());
        assert!(
            holders.len() > MAX_HOLDERS_PER_MATCH,
            "both answers were read and merged: {holders:?}"
        );
        for fake in &overfull {
            assert_eq!(fake.requests("rpc shoal.search"), 1);
        }
    })
    .await;
}

// 8. Located hits that lie (content of another size, another name, a holder with
// credentials): the caller gets "not found", never the lie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_locate_hits_are_not_found() {
    bounded(async {
        let fake = FakePeer::start(Script::default()).await;
        let node = node_knowing(&[&fake.url]).await;
        let lie = b"LIE-CONTENT-0b5e";
        let with_credentials = fake.url.replace("http://", "http://user:pw@");
        let hits = [
            (
                "content longer than its size",
                locate_hit(&fake.url, "notes.txt", 4, None, Some(lie)),
            ),
            (
                "content shorter than its size",
                locate_hit(&fake.url, "notes.txt", 64, None, Some(lie)),
            ),
            (
                "another name",
                locate_hit(&fake.url, "other.txt", lie.len() as u64, None, Some(lie)),
            ),
            (
                "a holder with credentials",
                locate_hit(&with_credentials, "notes.txt", lie.len() as u64, None, Some(lie)),
            ),
            (
                "a hidden name",
                locate_hit(&fake.url, ".notes.txt", lie.len() as u64, None, Some(lie)),
            ),
        ];
        for (what, hit) in hits {
            fake.script(|script| script.locate = Rpc::Value(hit.clone()));
            let before = fake.requests("rpc shoal.locate");
            let answer = step("query", node.call("query", vec![s("notes.txt")])).await;
            assert_eq!(fake.requests("rpc shoal.locate"), before + 1, "{what}: the fake was asked");
            match answer {
                Err(Fault { code, .. }) => assert_eq!(code, NOT_FOUND, "{what}"),
                Ok(value) => panic!("{what}: the lie came through: {value:?}"),
            }
        }
        assert_eq!(node.call("list", vec![]).await.map(|_| ()), Ok(()));
    })
    .await;
}

fn listing_entry(path: &str, size: i64, id: &str) -> Value {
    let mut f = std::collections::BTreeMap::new();
    f.insert("path".into(), s(path));
    f.insert("size".into(), Value::Long(size));
    f.insert("id".into(), s(id));
    Value::Struct(f)
}

// 11. A folder listing that tries to leave the output directory, names hidden or partial files,
// carries bad ids and sizes or lies about its folder: every such entry is dropped, the honest
// one is downloaded, and nothing is written outside the node's share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_folder_listing_writes_nothing_outside_the_share() {
    bounded(async {
        let data = random_bytes(40 * 1024, 11);
        let id = shoal_index::hash_bytes(&data).id.to_string();
        let fake = FakePeer::start(Script::default()).await;
        let mut page = std::collections::BTreeMap::new();
        page.insert(
            "files".into(),
            Value::Array(vec![
                listing_entry("photos/ok.bin", data.len() as i64, &id),
                listing_entry("photos/../../escape.bin", data.len() as i64, &id),
                listing_entry("/tmp/absolute.bin", data.len() as i64, &id),
                listing_entry("photos/.ok.bin.shoal-part", data.len() as i64, &id),
                listing_entry("photos/sub/.hidden", data.len() as i64, &id),
                listing_entry("elsewhere/other.bin", data.len() as i64, &id),
                listing_entry("photos/bad-id.bin", data.len() as i64, "not-an-id"),
                listing_entry("photos/huge.bin", 1 << 62, &id),
                listing_entry("photos/neg.bin", -5, &id),
            ]),
        );
        fake.script(|script| {
            script.list_folder = Rpc::Value(Value::Struct(page));
            script.content = Data::Serve {
                data: data.clone().into(),
                claimed: data.len() as u64,
            };
        });
        let node = TestNode::start().await;
        let mut options = std::collections::BTreeMap::new();
        options.insert("peers".to_string(), Value::Array(vec![s(&fake.url)]));
        let started = step(
            "shoal.download",
            node.call(
                "shoal.download",
                vec![s(SECRET), Value::Array(vec![s("photos/")]), Value::Struct(options)],
            ),
        )
        .await;
        let Ok(Value::Struct(started)) = started else {
            panic!("the folder download starts: {started:?}")
        };
        assert_eq!(started.get("target"), Some(&s(&node.path("photos").to_string_lossy())));
        let wanted = node.path("photos/ok.bin");
        for _ in 0..1000 {
            if wanted.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_same_file(&wanted, &data);
        // Only the honest entry: the share holds photos/ok.bin and nothing else, and its parent
        // directory gained nothing.
        let mut found = Vec::new();
        let mut stack = vec![node.dir.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                } else {
                    found.push(entry.path().strip_prefix(node.dir.path()).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        assert_eq!(found, ["photos/ok.bin"]);
        let parent = node.dir.path().parent().unwrap();
        assert!(!parent.join("escape.bin").exists() && !Path::new("/tmp/absolute.bin").exists());
        assert_eq!(fake.requests("GET /content"), 1, "one file was fetched");
    })
    .await;
}

// 12. A small file with a known id and size costs one request to its holder (no size probe, no
// verification data, no last-piece check), and a holder whose bytes do not hash to the id is
// passed over for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_file_costs_one_request_and_lying_bytes_are_refused() {
    bounded(async {
        let data = random_bytes(16 * 1024, 12);
        let hashed = shoal_index::hash_bytes(&data);
        let fake = FakePeer::start(Script {
            content: Data::Serve {
                data: data.clone().into(),
                claimed: data.len() as u64,
            },
            ..Script::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_in(dir.path());
        let job = |target: &Path, peers: Vec<String>| Job {
            name: "small.bin".into(),
            target: target.to_path_buf(),
            id: Some(hashed.id),
            size: Some(data.len() as u64),
            peers,
            ..Job::default()
        };
        let target = dir.path().join("out/small.bin");
        let (result, _, _) = step("the engine", run(&engine, job(&target, vec![fake.url.clone()]))).await;
        result.expect("the small file downloads");
        assert_same_file(&target, &data);
        assert_eq!(fake.requests("GET /content"), 1);
        assert_eq!(fake.requests("HEAD /content") + fake.requests("GET /outboard"), 0);
        assert!(engine.records().all().unwrap().is_empty(), "no resume record");

        // The same size, other bytes: refused; the honest node that follows serves it.
        let honest = TestNode::start().await;
        honest.add("small.bin", &data).await;
        let mut wrong = data.clone();
        wrong[100] ^= 1;
        fake.script(|script| {
            script.content = Data::Serve {
                data: wrong.clone().into(),
                claimed: wrong.len() as u64,
            }
        });
        let target = dir.path().join("out/second.bin");
        let (result, progress, largest) = step("the engine", run(&engine, job(&target, vec![fake.url.clone(), honest.url.clone()]))).await;
        result.expect("the honest holder serves it");
        assert_same_file(&target, &data);
        assert!(largest <= data.len() as u64);
        assert_eq!(stat_of(&progress.sources(), &honest.url).bytes, data.len() as u64);

        // Only the liar: nothing appears under the target.
        let target = dir.path().join("out/third.bin");
        let (result, _, _) = step("the engine", run(&engine, job(&target, vec![fake.url.clone()]))).await;
        assert!(result.is_err(), "no holder gave the right bytes");
        assert!(!target.exists() && !part_path(&target).exists());
    })
    .await;
}
