//! Helpers for the multi-process tests: `shoal serve` nodes and `shoal get` runs as child
//! processes, killed when their guard is dropped, with every wait bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `shoal` binary under test.
pub const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

pub const MIB: usize = 1 << 20;

/// Pseudo-random bytes (splitmix64), different for each seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A small seeded generator (splitmix64), so that failures can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low).max(1)
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    pub child: Child,
    /// Lines of its standard output, as they come.
    pub stdout: mpsc::Receiver<String>,
    /// Its standard error, collected by a thread until the process ends.
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Proc {
    /// Starts `shoal` with `args`.
    pub fn shoal(args: &[&str]) -> Proc {
        Self::shoal_env(args, &[])
    }

    /// Starts `shoal` with `args` and the environment variables `env`.
    pub fn shoal_env(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut command = Command::new(SHOAL);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in ["SHOAL_STATE", "SHOAL_DIR", "SHOAL_LISTEN", "SHOAL_URL", "SHOAL_SECRET", "SHOAL_LOG"] {
            command.env_remove(var);
        }
        command.envs(env.iter().copied());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {SHOAL}: {e}"));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(err).read_to_string(&mut text);
            text
        });
        Proc {
            child,
            stdout,
            stderr: Some(stderr),
        }
    }

    /// The next stdout line within `limit` (None when the output ended or time ran out).
    pub fn line(&self, limit: Duration) -> Option<String> {
        self.stdout.recv_timeout(limit).ok()
    }

    /// Waits at most `limit` for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its standard error; call after it exited.
    pub fn stderr(&mut self) -> String {
        self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    }

    /// Waits for the exit (bounded) and gives the status, the stdout lines and stderr.
    pub fn finish(mut self, limit: Duration) -> (ExitStatus, Vec<String>, String) {
        let status = self.wait(limit).unwrap_or_else(|| {
            self.kill();
            panic!("shoal did not exit within {limit:?}; stderr: {}", self.stderr())
        });
        let lines: Vec<String> = self.stdout.try_iter().collect();
        let mut lines = lines;
        // The reader thread may still be flushing the last lines after the exit.
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        let stderr = self.stderr();
        (status, lines, stderr)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// A `shoal serve` process with its directories.
pub struct Serve {
    pub proc: Proc,
    pub url: String,
    pub dir: PathBuf,
    pub state: PathBuf,
}

impl Serve {
    /// Starts `shoal serve --dir DIR --state STATE --listen 127.0.0.1:0 EXTRA...` and reads its URL.
    pub fn start(dir: &Path, state: &Path, extra: &[&str]) -> Serve {
        let (d, s) = (dir.to_string_lossy().into_owned(), state.to_string_lossy().into_owned());
        let mut args = vec!["serve", "--dir", &d, "--state", &s, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut proc = Proc::shoal(&args);
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match proc.line(left) {
                Some(line) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        break url.trim().to_string();
                    }
                }
                None => {
                    proc.kill();
                    panic!("shoal serve printed no address; stderr: {}", proc.stderr());
                }
            }
        };
        Serve {
            proc,
            url,
            dir: dir.to_path_buf(),
            state: state.to_path_buf(),
        }
    }

    /// Waits (bounded) until the node serves `name` from its index.
    pub fn wait_indexed(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_status(&self.url, "HEAD", &format!("/files/{name}")) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not index {name} in time", self.url);
    }
}

/// The status code of a bodiless request, over a plain socket.
pub fn http_status(base: &str, method: &str, path: &str) -> Option<u16> {
    let authority = base.strip_prefix("http://")?.trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let text = String::from_utf8_lossy(&head[..n]);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A tmpfs mounted at a directory, unmounted when dropped.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "20m") at `dir`, or says why it cannot.
    pub fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if output.status.success() {
            Ok(Tmpfs { dir: dir.to_path_buf() })
        } else {
            Err(format!("{} {}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.dir).status().is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// The fields of a JSON line from `shoal get --json`.
pub fn json(line: &str) -> Option<serde_json::Value> {
    serde_json::from_str(line).ok()
}

/// A stranger that says it holds every piece of one file, and then serves wrong bytes
/// (`lie = Wrong`) or says it lacks them (`lie = Lacks`).
#[derive(Clone, Copy, PartialEq)]
pub enum Lie {
    Wrong,
    Lacks,
}

pub struct Liar {
    pub url: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Liar {
    pub fn start(id: &str, size: usize, lie: Lie) -> Liar {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let (id, flag) = (id.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => Liar::answer(stream, &id, size, lie),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Liar {
            url,
            stop,
            thread: Some(thread),
        }
    }

    fn answer(mut stream: TcpStream, id: &str, size: usize, lie: Lie) {
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
            if stream.read(&mut byte).unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut words = text.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let range = text
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_string))
            .and_then(|r| {
                r.split_once('-')
                    .map(|(a, b)| (a.parse::<usize>().ok(), b.trim().parse::<usize>().ok()))
            });
        let count = size.div_ceil(MIB);
        let reply = |stream: &mut TcpStream, status: &str, headers: &[String], body: &[u8]| {
            let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
            for h in headers {
                out.push_str(h);
                out.push_str("\r\n");
            }
            out.push_str("\r\n");
            let _ = stream.write_all(out.as_bytes());
            if method != "HEAD" {
                let _ = stream.write_all(body);
            }
        };
        if path.starts_with(&format!("/have/{id}")) {
            let mut bits = vec![0xffu8; count.div_ceil(8)];
            let spare = count.div_ceil(8) * 8 - count;
            if spare > 0 {
                *bits.last_mut().unwrap() &= 0xff << spare;
            }
            if path.contains("since=") {
                // A long poll: nothing new, after a while.
                std::thread::sleep(Duration::from_millis(500));
            }
            reply(&mut stream, "200 OK", &["shoal-have: 1".into()], &bits);
        } else if path == format!("/content/{id}") {
            match (lie, range) {
                (_, None) => reply(&mut stream, "200 OK", &[], &[]),
                (Lie::Lacks, Some(_)) => reply(
                    &mut stream,
                    "416 Range Not Satisfiable",
                    &[format!("content-range: bytes */{size}"), "shoal-lacks: 1".into()],
                    &[],
                ),
                (Lie::Wrong, Some((Some(start), Some(end)))) => {
                    let junk = random_bytes(end + 1 - start, start as u64 + 7);
                    reply(
                        &mut stream,
                        "206 Partial Content",
                        &[format!("content-range: bytes {start}-{end}/{size}")],
                        &junk,
                    );
                }
                _ => reply(&mut stream, "400 Bad Request", &[], &[]),
            }
        } else {
            reply(&mut stream, "404 Not Found", &[], &[]);
        }
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
