//! What every case needs: a seeded generator, `shoal` child processes with bounded waits (killed
//! with SIGKILL when dropped), serving nodes that can be killed and restarted on the same port,
//! and blocking XML-RPC calls through the node's own client.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use shoal_xmlrpc::Value;

pub const MIB: u64 = 1 << 20;

/// A small seeded generator (splitmix64), so that every round can be replayed from the seed.
#[derive(Debug, Clone)]
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

/// Pseudo-random bytes, different for each seed.
pub fn random_bytes(len: u64, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(len as usize + 8);
    while (out.len() as u64) < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len as usize);
    out
}

/// True when the file at `path` holds exactly `data`.
pub fn same_file(path: &Path, data: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes == data)
}

/// The median and the maximum of some durations, in milliseconds.
pub fn median_max(times: &[Duration]) -> (f64, f64) {
    if times.is_empty() {
        return (0.0, 0.0);
    }
    let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[ms.len() - 1])
}

/// How a child process ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: String,
    pub took: Duration,
}

/// A `shoal` child process, killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    started: Instant,
}

impl Proc {
    /// Starts `bin` with `args`, with no `SHOAL_*` settings inherited.
    pub fn start(bin: &Path, args: &[String]) -> anyhow::Result<Proc> {
        let mut command = Command::new(bin);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SHOAL_") {
                command.env_remove(key);
            }
        }
        // Nothing leaves this machine: no public relays, look-ups, port mapping or mDNS.
        command.env("SHOAL_LOCAL_ONLY", "1");
        let mut child = command.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let out = child.stdout.take().context("the child's stdout")?;
        let mut err = child.stderr.take().context("the child's stderr")?;
        let (tx, lines) = mpsc::channel();
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
            let _ = err.read_to_string(&mut text);
            text
        });
        Ok(Proc {
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
            started: Instant::now(),
        })
    }

    /// The next line of standard output, or `None` when the process closed it or `deadline` passed.
    pub fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(left).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits at most `limit` (from now) for the process to exit; a process still running then is killed and
    /// that is an error (a hang).
    pub fn finish(mut self, limit: Duration) -> anyhow::Result<Finished> {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                self.kill();
                let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
                bail!("still running after {limit:?}, killed; stderr: {}", last_line(&stderr));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = self.started.elapsed();
        // The reader threads end when the pipes close; bound the wait anyway (a grandchild could
        // hold a pipe open).
        let drain_until = Instant::now() + Duration::from_secs(5);
        while let Some(_line) = self.next_line(drain_until) {}
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        Ok(Finished {
            status,
            stdout: std::mem::take(&mut self.seen),
            stderr,
            took,
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last non-empty line of some output, for one-line error messages.
pub fn last_line(text: &str) -> String {
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

/// Blocking XML-RPC calls through shoal's own client, on the suite's runtime.
#[derive(Clone)]
pub struct Rpc {
    pub handle: tokio::runtime::Handle,
    client: shoal_node::net::Client,
}

impl Rpc {
    pub fn new(handle: tokio::runtime::Handle) -> Rpc {
        let client = {
            let _entered = handle.enter();
            shoal_node::net::Client::new(Duration::from_secs(2))
        };
        Rpc { handle, client }
    }

    pub fn call(&self, url: &str, method: &str, params: &[Value], timeout: Duration) -> anyhow::Result<Value> {
        let client = self.client.clone();
        self.handle
            .block_on(async move { client.call(url, method, params, timeout, 64 << 20).await })
            .map_err(|e| anyhow!("{method} on {url}: {e}"))
    }

    /// The names a node lists.
    pub fn list(&self, url: &str, timeout: Duration) -> anyhow::Result<Vec<String>> {
        match self.call(url, "list", &[], timeout)? {
            Value::Array(items) => Ok(items
                .into_iter()
                .filter_map(|v| if let Value::String(s) = v { Some(s) } else { None })
                .collect()),
            other => bail!("list on {url} answered {other:?}"),
        }
    }

    /// Waits (at most `limit`) until the node at `url` lists `name`.
    pub fn wait_listed(&self, url: &str, name: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if self
                .list(url, Duration::from_secs(5))
                .is_ok_and(|names| names.iter().any(|n| n == name))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{url} did not list {name} within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A `shoal serve` process that can be killed and restarted with the same directory, state and
/// port.
pub struct Node {
    bin: PathBuf,
    pub dir: PathBuf,
    pub state: PathBuf,
    pub port: u16,
    pub url: String,
    extra: Vec<String>,
    proc: Option<Proc>,
}

impl Node {
    /// Starts a node sharing `dir` with state in `state` on 127.0.0.1:`port` (0 picks one).
    pub fn start(bin: &Path, dir: &Path, state: &Path, port: u16, extra: &[String]) -> anyhow::Result<Node> {
        std::fs::create_dir_all(dir)?;
        let mut node = Node {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            state: state.to_path_buf(),
            port,
            url: String::new(),
            extra: extra.to_vec(),
            proc: None,
        };
        node.launch()?;
        Ok(node)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let mut args: Vec<String> = vec!["serve".into(), "--dir".into(), path(&self.dir), "--state".into(), path(&self.state)];
        args.extend(["--listen".into(), format!("127.0.0.1:{}", self.port)]);
        args.extend(self.extra.iter().cloned());
        let mut last_error = String::new();
        // A port just freed by a killed process is normally free at once (SO_REUSEADDR); retry a
        // few times in case it is not.
        for _ in 0..5 {
            let mut proc = Proc::start(&self.bin, &args)?;
            let deadline = Instant::now() + Duration::from_secs(20);
            while let Some(line) = proc.next_line(deadline) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let port = url
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.trim().parse::<u16>().ok())
                        .context("a port in the listening line")?;
                    self.port = port;
                    self.url = format!("http://127.0.0.1:{port}");
                    self.proc = Some(proc);
                    return Ok(());
                }
            }
            last_error = match proc.finish(Duration::from_secs(2)) {
                Ok(done) => format!("{}: {}", done.status, last_line(&done.stderr)),
                Err(e) => e.to_string(),
            };
            std::thread::sleep(Duration::from_millis(300));
        }
        bail!("shoal serve on port {} did not start: {last_error}", self.port)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// Starts the node again on the port it had.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.launch()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Reads a JSON line of `shoal get --json`.
pub fn json(line: &str) -> Option<serde_json::Value> {
    serde_json::from_str(line).ok()
}

/// The `event: done` summary among some output lines.
pub fn done_summary(lines: &[String]) -> Option<serde_json::Value> {
    lines.iter().filter_map(|l| json(l)).find(|v| v["event"] == "done")
}
