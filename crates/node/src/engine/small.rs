//! The fast path for a small file: one piece or less, content id and size known, from shoal
//! holders. A folder of thousands of such files would otherwise pay, per file, size probes, a
//! verification-data fetch, a last-piece check and resume-record writes (each an fsync).
//!
//! Here a file costs one `GET /content/<id>` on a pooled connection: the body is read up to the
//! claimed size (a longer one is refused), its BLAKE3 hash must equal the content id (which
//! binds the size too: no other byte string has that hash), and only then is it written to the
//! hidden partial file (`O_EXCL | O_NOFOLLOW`, [`super::part_path`]) and linked under its final
//! name without clobbering ([`super::place::link_into_place`]). A holder that fails is skipped
//! for the next; when none delivers, [`Engine::run`] goes on with the full engine, which also
//! finds the true size when the claimed one was a lie.
//!
//! No resume record is written (a file this small is fetched again whole), and the file is not
//! fsynced one by one: a SIGKILL loses nothing written (the page cache survives the process),
//! and whoever runs a batch syncs the file system once at its end ([`sync_file_system`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::place::Spot;
use super::{Engine, EngineError, Job, MAX_PEER_SOURCES, Outcome, PIECE_SIZE, Progress, SourceKind, SourceStat, SourceState};
use tokio_util::sync::CancellationToken;

use crate::net::Trust;

/// Downloads `job` by the fast path when it fits: `None` when it does not (no id or size, over
/// one piece, no holder, a rate cap) or when no holder delivered the right bytes, so that the
/// caller runs the full engine; otherwise the outcome.
pub(super) async fn run(
    engine: &Engine,
    job: &Job,
    spot: &Arc<Spot>,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
) -> Option<Result<Outcome, EngineError>> {
    let (Some(id), Some(size)) = (job.id, job.size) else {
        return None;
    };
    if size > PIECE_SIZE || job.peers.is_empty() || engine.options.max_rate.is_some() {
        return None;
    }
    progress.total.store(size, Ordering::Relaxed);
    let mut holders: Vec<&String> = job.peers.iter().collect();
    holders.dedup();
    for peer in holders.into_iter().take(MAX_PEER_SOURCES) {
        let Ok(url) = crate::net::node_url(peer, &format!("/content/{id}")) else {
            continue;
        };
        let Ok(request) = engine.net.request(reqwest::Method::GET, &url, Trust::Peer) else {
            continue;
        };
        let body = async {
            let response = request.send().await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status()));
            }
            crate::net::client::read_body(response, url.as_str(), size as usize)
                .await
                .map_err(|e| e.to_string())
        };
        let body = tokio::select! {
            () = cancel.cancelled() => return Some(Err(EngineError::Cancelled { done: 0, total: size })),
            body = tokio::time::timeout(engine.options.stall_timeout, body) => body,
        };
        let body = match body {
            Ok(Ok(body)) => body,
            Ok(Err(reason)) => {
                tracing::debug!(%url, %reason, "a holder did not deliver a small file");
                continue;
            }
            Err(_) => continue,
        };
        let (target, spot) = (job.target.clone(), spot.clone());
        let force = job.force;
        let written = tokio::task::spawn_blocking(move || -> Result<bool, EngineError> {
            if body.len() as u64 != size || shoal_index::ContentId::from(blake3::hash(&body)) != id {
                return Ok(false);
            }
            write_and_place(&spot, &target, &body, force)?;
            Ok(true)
        })
        .await;
        match written {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                tracing::warn!(%url, "a holder sent a small file that does not match its content id");
                continue;
            }
            Ok(Err(error)) => return Some(Err(error)),
            Err(error) => return Some(Err(EngineError::Task(error.to_string()))),
        }
        progress.done.store(size, Ordering::Relaxed);
        let stat = SourceStat {
            url: url.to_string(),
            kind: SourceKind::Peer,
            state: SourceState::Idle,
            bytes: size,
            bad_pieces: 0,
            failures: 0,
            last_error: None,
            connections: 0,
            held: None,
        };
        let metrics = engine.net.metrics();
        metrics.pieces_verified.inc();
        metrics
            .bytes_down
            .get_or_create(&crate::net::metrics::KindLabel {
                kind: SourceKind::Peer.name().into(),
            })
            .inc_by(size);
        progress.sources.lock().unwrap_or_else(|p| p.into_inner()).push(stat.clone());
        // A record left by an earlier run of the full engine for this target is done with.
        let key = job.target.clone();
        if engine.records.get(&key).ok().flatten().is_some()
            && let Err(error) = engine.store(move |records| records.remove(&key)).await
        {
            return Some(Err(error));
        }
        return Some(Ok(Outcome {
            path: job.target.clone(),
            id,
            size,
            outboard: None,
            sources: vec![stat],
        }));
    }
    None
}

/// Writes `bytes` (checked already) to the hidden partial file beside `target` and links it
/// under `target` (no clobber unless `replace`), both where `spot` says.
fn write_and_place(spot: &Spot, target: &Path, bytes: &[u8], replace: bool) -> Result<(), EngineError> {
    use std::io::Write;
    let io = |step: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| EngineError::Io { step, path, source }
    };
    spot.make_dirs()?;
    let part = spot.part().to_path_buf();
    // A partial file left by a killed run is never reused: it is replaced, never followed.
    let mut file = spot.open_part(true).map_err(io("open", &part))?;
    if let Err(error) = file.write_all(bytes) {
        spot.remove_part();
        return Err(if error.raw_os_error() == Some(libc::ENOSPC) {
            super::disk::no_space(&part, bytes.len() as u64)
        } else {
            io("write", &part)(error)
        });
    }
    drop(file);
    match spot.place(replace, false) {
        Ok(()) => Ok(()),
        Err(e) => {
            spot.remove_part();
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Err(EngineError::Exists(target.to_path_buf()))
            } else {
                Err(io("place", target)(e))
            }
        }
    }
}

/// Flushes the file system that holds `path` to disk (`syncfs`): one call at the end of a batch
/// of small files instead of two fsyncs per file.
pub fn sync_file_system(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(Path::new("."))
    };
    let handle = std::fs::File::open(dir)?;
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_content_id_is_the_plain_blake3_hash() {
        // The fast path checks a small body with `blake3::hash`; the index's content id (the bao
        // root at 16 KiB chunk groups) must be the same hash for every size up to a piece.
        for len in [0usize, 1, 1024, 16 << 10, (16 << 10) + 1, 1 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            assert_eq!(
                shoal_index::hash_bytes(&data).id,
                shoal_index::ContentId::from(blake3::hash(&data)),
                "{len} bytes"
            );
        }
    }
}
