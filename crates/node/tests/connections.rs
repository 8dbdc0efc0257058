//! The engine against real nginx on loopback: several connections to one server, what a server
//! that refuses them does to the count, `429` with `Retry-After`, and a mirror whose file changes
//! while it is downloaded.
//!
//! Behaviour is read from nginx's own access log (which connection served which range, with which
//! status), never from timing: every wait is a bounded poll, and the tests assert what would be
//! false without the feature (one connection only, a storm of refused requests, mixed content).

#[path = "it/engine_kit.rs"]
mod kit;
#[path = "it/util.rs"]
mod util;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shoal_node::engine::{EngineOptions, Job, NewSource, Progress, SourceState};
use shoal_testkit::{Nginx, NginxConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use kit::{MIB, assert_same_file, bounded, content_id, engine_in, run};
use util::random_bytes;

/// The engine's quick options with a stall timeout that throttled servers on a busy machine
/// do not trip.
fn quick_options() -> EngineOptions {
    EngineOptions {
        stall_timeout: Duration::from_secs(5),
        ..kit::quick_options()
    }
}

/// A mirrors-only job for `data`.
fn job(target: &Path, data: &[u8], mirrors: Vec<String>) -> Job {
    kit::job(target, data, vec![], mirrors)
}

/// Our own access log, with times: `CONNECTION STATUS MSEC REQUEST_TIME BODY_BYTES "RANGE"`.
const TIMED_FORMAT: &str = "log_format timed '$connection $status $msec $request_time $body_bytes_sent \"$http_range\"';";

/// One line of the timed log.
#[derive(Debug, Clone)]
struct Line {
    connection: u64,
    status: u16,
    /// When nginx began and ended the response, in seconds.
    start: f64,
    end: f64,
    body: u64,
    /// The requested range's length, when there was one.
    range_len: Option<u64>,
}

impl Line {
    fn parse(text: &str) -> Option<Line> {
        let mut parts = text.split_whitespace();
        let connection = parts.next()?.parse().ok()?;
        let status = parts.next()?.parse().ok()?;
        let end: f64 = parts.next()?.parse().ok()?;
        let took: f64 = parts.next()?.parse().ok()?;
        let body = parts.next()?.parse().ok()?;
        let range = parts.next()?.trim_matches('"');
        let range_len = range.strip_prefix("bytes=").and_then(|r| {
            let (a, b) = r.split_once('-')?;
            Some(b.parse::<u64>().ok()? + 1 - a.parse::<u64>().ok()?)
        });
        Some(Line {
            connection,
            status,
            start: end - took,
            end,
            body,
            range_len,
        })
    }

    /// A range answered in full (not a response the client abandoned part way).
    fn complete_range(&self) -> bool {
        self.status == 206 && self.range_len == Some(self.body)
    }
}

/// A real nginx serving `root`, logging to our timed log, with `server` directives.
struct Server {
    nginx: Nginx,
    root: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(files: &[(&str, &[u8])], http: &str, server: &str) -> Server {
        let dir = tempfile::tempdir().expect("a directory for nginx");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("the root");
        for (name, data) in files {
            std::fs::write(root.join(name), data).expect("a served file");
        }
        let log = dir.path().join("timed.log");
        let nginx = Nginx::start(NginxConfig {
            root: root.clone(),
            http: format!("{TIMED_FORMAT}\n  {http}"),
            server: format!("access_log {} timed;\n    {server}", log.display()),
            tls: None,
        });
        Server {
            nginx,
            root,
            log,
            _dir: dir,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.nginx.url())
    }

    /// Stops nginx (it finishes and logs every request first) and returns the log. Drop the
    /// engine first: nginx waits up to a minute for the first request on a connection that is
    /// open but idle, such as one a client's pool opened for a request cancelled at the end.
    fn stop(self) -> Vec<Line> {
        let _ = self.nginx.stop();
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter_map(Line::parse).collect()
    }
}

fn serving_connections(log: &[Line]) -> Vec<u64> {
    let mut seen: Vec<u64> = log.iter().filter(|l| l.complete_range()).map(|l| l.connection).collect();
    seen.sort_unstable();
    seen.dedup();
    seen
}

/// The most complete ranges nginx was serving at one moment. (A response the client abandons
/// part way, when another connection took over the rest, may linger on nginx's side for a
/// moment after the client has closed it, so those are left out.) Times are in milliseconds, so
/// one connection's response that begins in the millisecond its previous one ended is not
/// counted twice: each interval is shortened by 2 ms at its start.
fn most_at_once(log: &[Line]) -> usize {
    let mut events: Vec<(f64, i32)> = Vec::new();
    for line in log.iter().filter(|l| l.complete_range()) {
        let start = (line.start + 0.002).min(line.end);
        events.push((start, 1));
        events.push((line.end, -1));
    }
    // Ends before starts at the same instant.
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, change) in events {
        now += change;
        most = most.max(now);
    }
    most as usize
}

fn count_status(log: &[Line], status: u16) -> usize {
    log.iter().filter(|l| l.status == status).count()
}

// 1. A server that caps each connection and allows several: the engine opens several, never
//    more than its cap, and the file is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_caps_each_connection_gets_several_never_more_than_the_cap() {
    bounded(async {
        let data = random_bytes(24 * MIB, 91);
        let server = Server::start(&[("file.bin", &data)], "", "limit_rate 2m;");
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let options = EngineOptions {
            max_connections_per_source: 4,
            ..quick_options()
        };
        let engine = engine_in(dir.path(), options);
        let (result, _) = run(&engine, job(&target, &data, vec![server.url("file.bin")])).await;
        let outcome = result.expect("the download succeeds");
        assert_same_file(&target, &data);
        assert_eq!(outcome.id, content_id(&data));
        drop(engine);
        let log = server.stop();
        let serving = serving_connections(&log);
        assert!(serving.len() > 1, "more than one connection served ranges: {log:#?}");
        let most = most_at_once(&log);
        assert!(most > 1, "ranges were served at once: {log:#?}");
        assert!(most <= 4, "never more than the cap of 4 at once, saw {most}: {log:#?}");
        assert_eq!(count_status(&log, 503) + count_status(&log, 429), 0, "{log:#?}");
    })
    .await;
}

// 2. With the cap at 1 (`-x 1`), exactly one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_of_one_keeps_one_connection() {
    bounded(async {
        let data = random_bytes(12 * MIB, 92);
        let server = Server::start(&[("file.bin", &data)], "", "limit_rate 8m;");
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let options = EngineOptions {
            max_connections_per_source: 1,
            ..quick_options()
        };
        let engine = engine_in(dir.path(), options);
        let (result, _) = run(&engine, job(&target, &data, vec![server.url("file.bin")])).await;
        let outcome = result.expect("the download succeeds");
        assert_same_file(&target, &data);
        assert_eq!(outcome.sources[0].connections, 0, "all closed at the end");
        drop(engine);
        let log = server.stop();
        // One at a time (a connection that fails under load is replaced, never doubled).
        assert_eq!(most_at_once(&log), 1, "one connection at a time: {log:#?}");
        assert!(log.len() >= 2, "over several requests: {log:#?}");
    })
    .await;
}

// 3. A server that allows one connection per client (503 beyond): the extra connection backs
//    off after its first refusal, and the download completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_allowing_one_connection_gets_one_after_a_refusal() {
    bounded(async {
        let data = random_bytes(16 * MIB, 93);
        let server = Server::start(
            &[("file.bin", &data)],
            "limit_conn_zone $binary_remote_addr zone=per_client:1m;",
            "limit_rate 4m; limit_conn per_client 1; limit_conn_status 503;",
        );
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let engine = engine_in(dir.path(), quick_options());
        let (result, _) = run(&engine, job(&target, &data, vec![server.url("file.bin")])).await;
        let outcome = result.expect("the download succeeds");
        assert_same_file(&target, &data);
        assert!(outcome.sources[0].bytes == data.len() as u64, "{:#?}", outcome.sources);
        drop(engine);
        let log = server.stop();
        let refused = count_status(&log, 503);
        assert!(refused >= 1, "the engine tried a second connection: {log:#?}");
        assert!(refused <= 3, "and backed off at once, not a storm of 503s ({refused}): {log:#?}");
        assert_eq!(most_at_once(&log), 1, "{log:#?}");
    })
    .await;
}

// 4. 429 with Retry-After: the source waits as long as it is told, so each refusal is followed
//    by an accepted request rather than a burst of retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_so_a_rate_limited_server_sees_few_429s() {
    bounded(async {
        let data = random_bytes(12 * MIB, 94);
        // One request per 2 s; beyond that 429 with Retry-After: 2 (the header rides on every
        // answer; the engine reads it on 429 and 503 only).
        let server = Server::start(
            &[("file.bin", &data)],
            "limit_req_zone $binary_remote_addr zone=per_client:1m rate=30r/m;",
            "limit_rate 8m; limit_req zone=per_client; limit_req_status 429; add_header Retry-After 2 always;",
        );
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        // One connection, so that every request comes from the backoff under test (with the
        // ordinary backoff of 50-200 ms, each 2 s wait would be about ten 429s).
        let options = EngineOptions {
            max_connections_per_source: 1,
            ..quick_options()
        };
        let engine = engine_in(dir.path(), options);
        let (result, _) = run(&engine, job(&target, &data, vec![server.url("file.bin")])).await;
        result.expect("the download succeeds");
        assert_same_file(&target, &data);
        drop(engine);
        let log = server.stop();
        let limited = count_status(&log, 429);
        let served = log.iter().filter(|l| l.status == 206).count();
        assert!(limited >= 1, "the server did limit the requests: {log:#?}");
        assert!(
            limited <= served + 1,
            "at most one 429 per accepted request ({limited} 429s, {served} ranges): {log:#?}"
        );
    })
    .await;
}

// 5. A mirror whose file changes mid-download (same size, new ETag and Last-Modified) is
//    dropped; the download completes from the other mirror and checks against the content id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_whose_file_changes_is_dropped_and_nothing_is_mixed_in() {
    bounded(async {
        let data = random_bytes(24 * MIB, 95);
        let changing = Server::start(&[("file.bin", &data)], "", "limit_rate 1m;");
        // The new version waits beside the old one (hidden), so that the change is one rename:
        // other bytes of the same size, with another mtime (so another ETag and Last-Modified).
        let fresh = changing.root.join(".file.bin.new");
        std::fs::write(&fresh, random_bytes(data.len(), 96)).unwrap();
        let file = std::fs::File::options().write(true).open(&fresh).unwrap();
        file.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600)).unwrap();
        drop(file);
        let steady = Server::start(&[("file.bin", &data)], "", "limit_rate 1m;");
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let options = EngineOptions {
            max_connections_per_source: 2,
            ..quick_options()
        };
        let engine = engine_in(dir.path(), options);
        let progress = Arc::new(Progress::default());
        let (_more, more_rx) = mpsc::channel::<NewSource>(1);
        let changing_url = changing.url("file.bin");
        let running = tokio::spawn({
            let (engine, progress) = (engine.clone(), progress.clone());
            let job = job(&target, &data, vec![changing_url.clone(), steady.url("file.bin")]);
            async move { engine.run(job, progress, CancellationToken::new(), more_rx).await }
        });
        // Once the changing mirror has given a piece, its file is replaced as rsync does it (the
        // new file renamed over the old). Its responses in flight still read the old file.
        let polled = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let given = progress.sources().iter().find(|s| s.url == changing_url).map_or(0, |s| s.bytes);
                if given >= MIB as u64 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(polled.is_ok(), "the changing mirror never gave a piece");
        std::fs::rename(&fresh, changing.root.join("file.bin")).unwrap();
        let outcome = running
            .await
            .expect("the engine task")
            .expect("the download succeeds from the other mirror");
        assert_same_file(&target, &data);
        assert_eq!(outcome.id, content_id(&data), "nothing from the changed file was mixed in");
        let stat = outcome.sources.iter().find(|s| s.url == changing_url).expect("its figures");
        assert_eq!(stat.state, SourceState::Banned, "{stat:#?}");
        let error = stat.last_error.clone().unwrap_or_default();
        assert!(error.contains("changed while downloading"), "{error}");
        assert!(progress.done.load(Ordering::Relaxed) == data.len() as u64);
        drop(engine);
        drop(changing.stop());
        drop(steady.stop());
    })
    .await;
}
