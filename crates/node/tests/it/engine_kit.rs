//! What the engine's tests share (`engine.rs`, `connections.rs`): an engine over a fresh state
//! store, a job for a byte buffer, a run to the end, the bound on every test, and the check of
//! a finished file.

#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shoal_index::ContentId;
use shoal_node::engine::{Engine, EngineError, EngineOptions, Job, NewSource, Outcome, Progress, part_path};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const MIB: usize = 1 << 20;

/// The bound on every test.
pub const TEST_LIMIT: Duration = Duration::from_secs(90);

pub fn content_id(data: &[u8]) -> ContentId {
    ContentId::from(blake3::hash(data))
}

/// Short timeouts, so that faults are noticed quickly.
pub fn quick_options() -> EngineOptions {
    EngineOptions {
        stall_timeout: Duration::from_millis(500),
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        give_up_after: Duration::from_secs(30),
        ..Default::default()
    }
}

/// An engine over a state store in `dir`.
pub fn engine_in(dir: &Path, options: EngineOptions) -> Engine {
    let db = redb::Database::create(dir.join("s.redb")).expect("the state store");
    Engine::new(Arc::new(db), shoal_node::net::Client::new(Duration::from_secs(3)), options).expect("an engine")
}

/// A job for `data` saved at `target`.
pub fn job(target: &Path, data: &[u8], peers: Vec<String>, mirrors: Vec<String>) -> Job {
    Job {
        name: "file.bin".into(),
        target: target.to_path_buf(),
        id: Some(content_id(data)),
        size: Some(data.len() as u64),
        peers,
        mirrors,
        force: false,
        by_node: false,
    }
}

/// Runs `job` to its end with no sources arriving later.
pub async fn run(engine: &Engine, job: Job) -> (Result<Outcome, EngineError>, Arc<Progress>) {
    let progress = Arc::new(Progress::default());
    let (_more, more_rx) = mpsc::channel::<NewSource>(1);
    let result = engine.run(job, progress.clone(), CancellationToken::new(), more_rx).await;
    (result, progress)
}

/// Runs a test body under the bound every test has.
pub async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("the test finished within its bound");
}

/// The file at `path` holds exactly `data`, and its partial file is gone.
pub fn assert_same_file(path: &Path, data: &[u8]) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert_eq!(got.len(), data.len(), "size of {}", path.display());
    assert!(got == data, "{} differs from the served bytes", path.display());
    assert!(!part_path(path).exists(), "the partial file is gone after success");
}
