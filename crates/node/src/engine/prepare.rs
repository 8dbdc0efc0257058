//! The first phase of a download: everything before the first piece is fetched.
//!
//! [`Preparing::prepare`] admits the job's sources, binds the size (with a content id and
//! holders, the size whose verification data streams in checked against the id and whose last
//! block checks too; from mirrors alone, what they say), decides what a resume record lets it
//! keep, opens the partial file and reserves its space, checks again the pieces the record calls
//! done, and writes the first record. What it hands on is [`Prepared`]: the piece [`Layout`],
//! the open [`PartFile`], the piece table and the record. Nothing is allocated from a size that
//! is not bound yet.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use shoal_index::{ContentId, OutboardVerifier, PieceHashes};

use super::disk::PartFile;
use super::pieces::Pieces;
use super::place::Spot;
use super::record::{self, Record};
use super::source::{Source, SourceKind, Sources};
use super::{Engine, EngineError, Job, NewSource, PIECE_SIZE, Progress};
use crate::net::Trust;
use crate::proto::have::PIECE_SIZE_HEADER;
use crate::proto::limits::MAX_SIZE;

/// Most sizes tried and most sources asked for a last block before a download gives up
/// (verification data is asked of every peer source).
const MAX_LAYOUT_TRIES: usize = 4;
/// Most holders asked for their size (`HEAD`) at the start of a download; the sizes they claim
/// are tried most claimed first.
const MAX_SIZE_PROBES: usize = 8;

/// The file's size, cut into pieces of [`PIECE_SIZE`], and the hashes each piece is checked
/// against (none for a download from mirrors alone, which is checked whole at the end).
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub size: u64,
    pub hashes: Option<PieceHashes>,
    /// The verification data as it was checked, kept when the download is served to others
    /// while it runs (`Engine::serving`).
    pub outboard: Option<Arc<[u8]>>,
}

impl Layout {
    /// Pieces in the file (one for an empty file).
    pub fn count(&self) -> u64 {
        self.size.div_ceil(PIECE_SIZE).max(1)
    }

    /// The bytes of piece `index`.
    pub fn piece(&self, index: u64) -> Range<u64> {
        let start = index * PIECE_SIZE;
        start..(start + PIECE_SIZE).min(self.size)
    }

    /// The length of piece `index`.
    pub fn piece_len(&self, index: u64) -> u64 {
        let start = index * PIECE_SIZE;
        (start + PIECE_SIZE).min(self.size).saturating_sub(start)
    }
}

/// What the first phase hands to the live one.
pub(super) struct Prepared {
    pub sources: Sources,
    pub layout: Layout,
    pub disk: PartFile,
    pub pieces: Pieces,
    /// The resume record, as written.
    pub record: Record,
}

/// A download before its first piece.
pub(super) struct Preparing<'a> {
    engine: &'a Engine,
    job: &'a Job,
    spot: Arc<Spot>,
    progress: &'a Progress,
}

impl<'a> Preparing<'a> {
    pub fn new(engine: &'a Engine, job: &'a Job, spot: Arc<Spot>, progress: &'a Progress) -> Preparing<'a> {
        Preparing {
            engine,
            job,
            spot,
            progress,
        }
    }

    /// Runs the phase (see the module's comment).
    pub async fn prepare(self) -> Result<Prepared, EngineError> {
        let job = self.job;
        let mut sources = Sources::new(job.id);
        for peer in &job.peers {
            sources.admit(NewSource::Peer(peer.clone()));
        }
        for mirror in &job.mirrors {
            sources.admit(NewSource::Mirror(mirror.clone()));
        }
        let previous = self
            .engine
            .store({
                let target = job.target.clone();
                move |records| records.get(&target)
            })
            .await?;
        if sources.is_empty() {
            return Err(EngineError::NoSources(job.name.clone()));
        }
        let layout = self.bind_size(&sources, previous.as_ref()).await?;
        let count = layout.count();
        let id_text = job.id.map(|id| id.to_string());
        let resumable = previous
            .as_ref()
            .filter(|r| r.size == layout.size && r.piece_size == PIECE_SIZE && r.id == id_text);
        let done = match resumable {
            Some(record) if self.spot.part_exists() => record::decode_done(&record.done, count),
            _ => vec![false; count as usize],
        };
        let disk = {
            let (spot, size, fresh) = (self.spot.clone(), layout.size, !done.iter().any(|d| *d));
            tokio::task::spawn_blocking(move || PartFile::open(spot, size, fresh))
                .await
                .map_err(|e| EngineError::Task(e.to_string()))??
        };
        let done = recheck(&disk, &layout, done).await?;
        let resumed: u64 = (0..count).filter(|i| done[*i as usize]).map(|i| layout.piece_len(i)).sum();
        self.progress.total.store(layout.size, Ordering::Relaxed);
        self.progress.done.store(resumed, Ordering::Relaxed);
        self.progress.resumed.store(resumed, Ordering::Relaxed);
        let record = Record {
            target: job.target.to_string_lossy().into_owned(),
            name: job.name.clone(),
            id: id_text,
            size: layout.size,
            piece_size: PIECE_SIZE,
            peers: job.peers.clone(),
            mirrors: job.mirrors.clone(),
            expect: None,
            force: job.force,
            by_node: job.by_node,
            done: record::encode_done(&done),
        };
        self.engine
            .store({
                let record = record.clone();
                move |records| records.put(&record)
            })
            .await?;
        Ok(Prepared {
            sources,
            pieces: Pieces::new(count, &done),
            layout,
            disk,
            record,
        })
    }

    /// The size, never taken from a peer's word: with a content id and holders, it is the one
    /// whose verification data and last block check against the id; from mirrors alone (the
    /// owner's choice) it is what they say, and the whole file is checked at the end.
    async fn bind_size(&self, sources: &Sources, previous: Option<&Record>) -> Result<Layout, EngineError> {
        let job = self.job;
        let size_error = |reason: String| EngineError::Size {
            name: job.name.clone(),
            reason,
        };
        match job.id {
            Some(id) if sources.has(SourceKind::Peer) => {
                let mut claims: Vec<u64> = previous.iter().map(|r| r.size).collect();
                claims.extend(job.size);
                // The verification data itself is not kept (`finish` computes it from the file).
                match self.verified_layout(id, claims, sources).await {
                    Some(layout) => Ok(layout),
                    None if sources.has(SourceKind::Mirror) => {
                        let mirrors: Vec<&Source> = sources.of(SourceKind::Mirror).collect();
                        let size = self.probe_size(&mirrors).await.map_err(size_error)?;
                        Ok(Layout {
                            size,
                            hashes: None,
                            outboard: None,
                        })
                    }
                    None => Err(size_error(
                        "no holder gave verification data that checks against the content id".into(),
                    )),
                }
            }
            _ => {
                let all: Vec<&Source> = sources.all().iter().collect();
                let size = match job.size {
                    Some(size) if size <= MAX_SIZE => size,
                    _ => self.probe_size(&all).await.map_err(size_error)?,
                };
                Ok(Layout {
                    size,
                    hashes: None,
                    outboard: None,
                })
            }
        }
    }

    /// The size the first of `sources` to answer claims: from `HEAD`, or, for a server that
    /// refuses `HEAD` or leaves out the length (presigned URLs, dynamic pages), from the total
    /// in the `Content-Range` of a one-byte `GET`.
    async fn probe_size(&self, sources: &[&Source]) -> Result<u64, String> {
        let mut last = String::from("no source answered");
        for source in sources {
            let shown = source.shown();
            match self.head_size(source).await {
                Ok(size) => return Ok(size),
                Err(reason) => last = format!("{shown}: {reason}"),
            }
            match self.range_size(source).await {
                Ok(size) => return Ok(size),
                Err(reason) => tracing::debug!(source = %shown, %reason, "no size from a one-byte range either"),
            }
        }
        Err(last)
    }

    async fn head_size(&self, source: &Source) -> Result<u64, String> {
        let request = self
            .engine
            .net
            .request(reqwest::Method::HEAD, &source.url, source.trust)
            .map_err(|e| e.to_string())?
            .timeout(self.engine.options.stall_timeout);
        let response = request.send().await.map_err(|e| crate::net::describe(&e))?;
        if !response.status().is_success() {
            return Err(format!("answered HTTP {}", response.status()));
        }
        match response
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        {
            Some(len) if len <= MAX_SIZE => Ok(len),
            Some(_) => Err(format!("claims a size over {MAX_SIZE} bytes")),
            None => Err("sent no Content-Length".into()),
        }
    }

    async fn range_size(&self, source: &Source) -> Result<u64, String> {
        let request = self
            .engine
            .net
            .request(reqwest::Method::GET, &source.url, source.trust)
            .map_err(|e| e.to_string())?
            .header(reqwest::header::RANGE, "bytes=0-0")
            .timeout(self.engine.options.stall_timeout);
        let response = request.send().await.map_err(|e| crate::net::describe(&e))?;
        if response.status() != reqwest::StatusCode::PARTIAL_CONTENT {
            return Err(format!("answered HTTP {} to a range request", response.status()));
        }
        // `bytes 0-0/TOTAL`; the body (one byte) is dropped with the response.
        let total = response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes 0-0/"))
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or("sent no usable Content-Range")?;
        if total > MAX_SIZE {
            return Err(format!("claims a size over {MAX_SIZE} bytes"));
        }
        Ok(total)
    }

    /// Fetches the verification data for a claimed `size` from the first peer that has it,
    /// checking it against the content id as it streams in: a claimed size larger than the file
    /// fails within a few KiB, whatever the claim, and nothing is allocated from the claim.
    /// Returns the index of the source that gave it, too.
    ///
    /// Every peer source is asked in turn (at most [`super::MAX_PEER_SOURCES`], one per host:port), not
    /// only the first few: a single answer may name a dozen holders that are not nodes ahead of
    /// the honest one, which would otherwise fail the download (hostile.rs, the URL flood).
    async fn piece_hashes(&self, id: ContentId, size: u64, peers: &[&Source]) -> Option<(PieceHashes, Option<Arc<[u8]>>, usize)> {
        let stall = self.engine.options.stall_timeout;
        for source in peers {
            let Ok(url) = source.url.join(&format!("/outboard/{id}?piece_size={PIECE_SIZE}")) else {
                continue;
            };
            let peer = &source.url;
            let Ok(request) = self.engine.net.request(reqwest::Method::GET, &url, Trust::Peer) else {
                continue;
            };
            let Ok(Ok(response)) = tokio::time::timeout(stall, request.send()).await else {
                continue;
            };
            if !response.status().is_success() {
                continue;
            }
            match self.read_outboard(id, size, response).await {
                Ok((hashes, outboard)) => return Some((hashes, outboard, source.index)),
                Err(error) => tracing::warn!(%peer, %error, "a peer sent bad verification data"),
            }
        }
        None
    }

    /// Streams an outboard through the verifier: every hash pair is checked against the content
    /// id as it arrives, and one hash per piece comes out. The answer is the piece outboard
    /// when the holder says so ([`PIECE_SIZE_HEADER`]), else the whole outboard (a node that
    /// does not know the query).
    /// The piece outboard comes back too when the download is served while it runs.
    async fn read_outboard(
        &self,
        id: ContentId,
        size: u64,
        response: reqwest::Response,
    ) -> Result<(PieceHashes, Option<Arc<[u8]>>), String> {
        let compact = response
            .headers()
            .get(PIECE_SIZE_HEADER)
            .is_some_and(|v| v.as_bytes() == PIECE_SIZE.to_string().as_bytes());
        let verifier = if compact {
            OutboardVerifier::new_compact(id, size, PIECE_SIZE)
        } else {
            OutboardVerifier::new(id, size, PIECE_SIZE)
        };
        let mut verifier = verifier.map_err(|e| e.to_string())?;
        // The pairs read are the piece outboard, kept only when the download is served.
        if self.engine.partials.is_some() {
            verifier = verifier.keeping_pairs();
        }
        let mut stream = response.bytes_stream();
        loop {
            let next = tokio::time::timeout(self.engine.options.stall_timeout, stream.next())
                .await
                .map_err(|_| "stalled".to_string())?;
            match next {
                None => break,
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(chunk)) => verifier.feed(&chunk).map_err(|e| e.to_string())?,
            }
        }
        let (hashes, pairs) = verifier.finish_keeping().map_err(|e| e.to_string())?;
        let outboard = self.engine.partials.is_some().then(|| Arc::from(pairs));
        Ok((hashes, outboard))
    }

    /// Checks a claimed size: the last block (at most 16 KiB), from any source, must pass its
    /// check against `hashes` (which were proven for that size). The tree's shape depends on the
    /// size, so a last block that checks binds the size exactly.
    ///
    /// The source that gave the verification data (`first`) is asked first, so that holders
    /// ahead of it in the list cannot crowd it out.
    async fn size_holds(&self, hashes: &PieceHashes, sources: &[Source], first: usize) -> bool {
        let range = hashes.tail.range.clone();
        let order = sources
            .iter()
            .filter(|s| s.index == first)
            .chain(sources.iter().filter(|s| s.index != first).take(MAX_LAYOUT_TRIES - 1));
        for source in order {
            let Ok(request) = self.engine.net.request(reqwest::Method::GET, &source.url, source.trust) else {
                continue;
            };
            let request = if range.is_empty() {
                request
            } else {
                request.header(reqwest::header::RANGE, format!("bytes={}-{}", range.start, range.end - 1))
            };
            let Ok(Ok(response)) = tokio::time::timeout(self.engine.options.stall_timeout, request.send()).await else {
                continue;
            };
            let ok_status = if range.start == 0 {
                response.status().is_success()
            } else {
                response.status() == reqwest::StatusCode::PARTIAL_CONTENT
            };
            if !ok_status {
                continue;
            }
            let want = (range.end - range.start) as usize;
            // A download's own reads do not draw on the budget of peers' answers (searches).
            let Ok(body) = crate::net::client::read_body(response, source.url.as_str(), want).await else {
                continue;
            };
            if hashes.tail.verify(&body) {
                return true;
            }
        }
        false
    }

    /// The size and verification data of content `id`, bound to the id: each claimed size is
    /// tried until its verification data proves out and its last block checks.
    async fn verified_layout(&self, id: ContentId, claims: Vec<u64>, sources: &Sources) -> Option<Layout> {
        let peers: Vec<&Source> = sources.of(SourceKind::Peer).collect();
        // Every holder is asked for its size at once; the sizes are tried most claimed first
        // (after the job's own claims), so a few liars cannot crowd the true size out.
        let heads = peers
            .iter()
            .take(MAX_SIZE_PROBES)
            .map(|peer| self.probe_size(std::slice::from_ref(peer)));
        let mut counts: Vec<(u64, usize)> = Vec::new();
        for size in futures_util::future::join_all(heads).await.into_iter().flatten() {
            match counts.iter_mut().find(|(s, _)| *s == size) {
                Some((_, n)) => *n += 1,
                None => counts.push((size, 1)),
            }
        }
        counts.sort_by_key(|c| std::cmp::Reverse(c.1));
        let mut candidates = claims;
        candidates.extend(counts.into_iter().map(|(size, _)| size));
        let mut tried = Vec::new();
        for size in candidates.into_iter().filter(|s| *s <= MAX_SIZE) {
            if tried.contains(&size) || tried.len() >= MAX_LAYOUT_TRIES {
                continue;
            }
            tried.push(size);
            let Some((hashes, outboard, from)) = self.piece_hashes(id, size, &peers).await else {
                continue;
            };
            if self.size_holds(&hashes, sources.all(), from).await {
                return Some(Layout {
                    size,
                    hashes: Some(hashes),
                    outboard,
                });
            }
            tracing::warn!(size, "a claimed size did not hold against the content id");
        }
        None
    }
}

/// Checks again the pieces a resume record calls done, when there are hashes to check them by
/// (a power cut may have lost writes the record had seen); returns the flags that still hold.
async fn recheck(disk: &PartFile, layout: &Layout, done: Vec<bool>) -> Result<Vec<bool>, EngineError> {
    if layout.hashes.is_none() || !done.iter().any(|d| *d) {
        return Ok(done);
    }
    let (disk, layout) = (disk.clone(), layout.clone());
    tokio::task::spawn_blocking(move || {
        let Some(hashes) = &layout.hashes else {
            return done;
        };
        let mut buf = Vec::new();
        done.iter()
            .enumerate()
            .map(|(i, d)| {
                *d && {
                    let range = hashes.range(i as u64);
                    buf.resize((range.end - range.start) as usize, 0);
                    disk.read_at(&mut buf, range.start).is_ok() && hashes.verify(i as u64, &buf)
                }
            })
            .collect()
    })
    .await
    .map_err(|e| EngineError::Task(e.to_string()))
}
