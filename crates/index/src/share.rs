//! The shared directory: walking it, hashing what changed, and answering lookups.
//!
//! [`Share::scan`] brings the index in line with the directory. It walks the root without
//! following or sharing any symlink, skips everything hidden (a leading `.`, which also covers our
//! partial downloads), compares each file's size, modification time and inode with the stored
//! entry, and hashes only new or changed files, on one worker per core pulling from a shared
//! queue. A file that changes while it is hashed is left for the next scan. Entries whose files
//! are gone are removed, but only if nobody recorded a newer entry meanwhile, so a download
//! finishing during a scan is never forgotten.
//!
//! [`Share::refresh`] does the same for a few paths only (what [`crate::watch::Watcher`] saw
//! change), through the same code and under the same lock, so a scan and a refresh never race
//! and decide alike what is new, changed, unchanged or gone.
//!
//! Lookups read the index only; callers check [`FileEntry::matches`] against the file before
//! serving it under its id.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, FileType, Metadata};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use wildmatch::WildMatch;

use crate::hash::{ContentId, Hashed, hash_reader};
use crate::name::{SafeName, check_name, is_missing};
pub use crate::store::FileEntry;
use crate::store::{IndexStore, PutItem, StoreError};

/// Write hashed files to the index in batches of at most this many files...
const BATCH_FILES: usize = 256;
/// ...or of at most this many outboard bytes, whichever comes first.
const BATCH_OUTBOARD_BYTES: usize = 16 << 20;

/// Why a share operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("create share directory {path}: {source}")]
    CreateRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("resolve share directory {path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read share directory {path}: {source}")]
    ReadRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("stat {path}: {source}")]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} is {actual} bytes but was hashed as {hashed} bytes")]
    SizeMismatch { path: PathBuf, hashed: u64, actual: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a scan found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Files indexed for the first time.
    pub added: usize,
    /// Files whose size, modification time or inode changed, hashed again.
    pub changed: usize,
    /// Entries dropped because their file is gone.
    pub removed: usize,
    /// Files that matched their entry and were not hashed.
    pub unchanged: usize,
    /// Bytes hashed in this scan.
    pub hashed_bytes: u64,
}

/// The shared directory and its index.
#[derive(Debug)]
pub struct Share {
    /// Canonical path of the shared directory.
    root: PathBuf,
    store: IndexStore,
    /// Only one scan runs at a time.
    scan_lock: Mutex<()>,
    /// Bytes found new or changed and not hashed yet (the hashing backlog).
    backlog: std::sync::atomic::AtomicU64,
}

/// A file the walk found.
struct Found {
    name: String,
    path: PathBuf,
    meta: Metadata,
}

/// One scan's share of [`Share::hashing_backlog`], taken off as files are hashed and in full
/// when the scan ends.
struct Backlog<'a> {
    counter: &'a std::sync::atomic::AtomicU64,
    left: u64,
}

impl Backlog<'_> {
    fn done(&mut self, bytes: u64) {
        let bytes = bytes.min(self.left);
        self.left -= bytes;
        self.counter.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Drop for Backlog<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.left, Ordering::Relaxed);
    }
}

/// A file to hash: found, and new or changed.
struct Job {
    found: Found,
    existed: bool,
}

/// Why a file was not hashed this round.
enum Skip {
    Changed,
    Io(io::Error),
}

impl Share {
    /// Opens the share at `root` (created if missing) with its index in `db`.
    pub fn open(root: &Path, db: Arc<redb::Database>) -> Result<Self, ShareError> {
        fs::create_dir_all(root).map_err(|source| ShareError::CreateRoot {
            path: root.to_owned(),
            source,
        })?;
        let root = root.canonicalize().map_err(|source| ShareError::Root {
            path: root.to_owned(),
            source,
        })?;
        Ok(Share {
            root,
            store: IndexStore::new(db)?,
            scan_lock: Mutex::new(()),
            backlog: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Bytes of new or changed files that wait to be hashed.
    pub fn hashing_backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// The canonical path of the shared directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `name` under the root. Does no checking: names from outside must go through
    /// [`check_name`] and [`SafeName::resolve_existing`] or [`SafeName::resolve_new`].
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Brings the index in line with the directory; see the module documentation.
    pub fn scan(&self) -> Result<ScanReport, ShareError> {
        let report = self.sync(&[String::new()])?;
        tracing::info!(
            root = %self.root.display(),
            added = report.added,
            changed = report.changed,
            removed = report.removed,
            unchanged = report.unchanged,
            hashed_bytes = report.hashed_bytes,
            "share scanned"
        );
        Ok(report)
    }

    /// Brings just `relative` in line with the directory, by the same rules as [`Share::scan`].
    ///
    /// Each path is relative to the root and may be a file or a directory, or no longer exist: a
    /// vanished path loses its entry (a directory, every entry under it), a new or changed file is
    /// hashed, a directory is walked. A path below a symlinked directory is not in the share, as
    /// the walk does not follow those. Paths that could never be shared (hidden, not UTF-8,
    /// absolute, with `..`) are ignored; an empty path is the whole root. Meant for the batches of
    /// [`crate::watch::Watcher`].
    pub fn refresh(&self, relative: &[PathBuf]) -> Result<ScanReport, ShareError> {
        let scopes = scopes(relative);
        if scopes.is_empty() {
            return Ok(ScanReport::default());
        }
        let report = self.sync(&scopes)?;
        if report.added + report.changed + report.removed > 0 {
            tracing::info!(
                paths = scopes.len(),
                added = report.added,
                changed = report.changed,
                removed = report.removed,
                unchanged = report.unchanged,
                hashed_bytes = report.hashed_bytes,
                "share refreshed"
            );
        } else {
            tracing::debug!(
                paths = scopes.len(),
                unchanged = report.unchanged,
                "share refreshed, nothing changed"
            );
        }
        Ok(report)
    }

    /// Brings the index in line with the directory within `scopes`: names relative to the root
    /// ("" is the root itself), none inside another. The one place that decides what is new,
    /// changed, unchanged or gone, for both [`Share::scan`] and [`Share::refresh`].
    fn sync(&self, scopes: &[String]) -> Result<ScanReport, ShareError> {
        let _one_scan = self.scan_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut stored: HashMap<String, FileEntry> = HashMap::new();
        for scope in scopes {
            stored.extend(self.store.list_within(scope)?);
        }
        let mut report = ScanReport::default();
        let (found, unreadable) = self.walk(scopes)?;

        let mut seen = HashSet::with_capacity(found.len());
        let mut jobs = Vec::new();
        for found in found {
            seen.insert(found.name.clone());
            match stored.get(&found.name) {
                Some(entry) if entry.matches(&found.meta) => report.unchanged += 1,
                Some(_) => jobs.push(Job { found, existed: true }),
                None => jobs.push(Job { found, existed: false }),
            }
        }
        self.hash_jobs(&jobs, &mut report)?;

        let gone: Vec<(String, FileEntry)> = stored
            .into_iter()
            .filter(|(name, _)| !seen.contains(name))
            .filter(|(name, _)| !unreadable.iter().any(|dir| within(name, dir)))
            .collect();
        report.removed = self.store.remove_unchanged(&gone)?;
        Ok(report)
    }

    /// Walks `scopes` (see [`Share::sync`]); returns the indexable files and the names that could
    /// not be read (whose entries must not be taken for deleted).
    fn walk(&self, scopes: &[String]) -> Result<(Vec<Found>, Vec<String>), ShareError> {
        let mut found = Vec::new();
        let mut unreadable = Vec::new();
        // Directories still to read, as names relative to the root ("" is the root).
        let mut pending = Vec::new();
        for scope in scopes {
            if scope.is_empty() {
                pending.push(String::new());
            } else {
                self.visit_scope(scope, &mut found, &mut unreadable, &mut pending);
            }
        }
        while let Some(dir_name) = pending.pop() {
            let dir = self.root.join(&dir_name);
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(source) if dir_name.is_empty() => {
                    return Err(ShareError::ReadRoot { path: dir, source });
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read directory, skipped");
                    unreadable.push(dir_name);
                    continue;
                }
            };
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot read directory entry");
                        unreadable.push(dir_name.clone());
                        continue;
                    }
                };
                let file_name = entry.file_name();
                let Some(file_name) = file_name.to_str() else {
                    tracing::debug!(path = %entry.path().display(), "name is not UTF-8, skipped");
                    continue;
                };
                if file_name.starts_with('.') {
                    continue;
                }
                let name = if dir_name.is_empty() {
                    file_name.to_owned()
                } else {
                    format!("{dir_name}/{file_name}")
                };
                if let Err(e) = check_name(&name) {
                    tracing::debug!(name, error = %e, "name cannot be shared, skipped");
                    continue;
                }
                let path = entry.path();
                match entry.file_type() {
                    Ok(file_type) => self.visit(name, path, file_type, &mut found, &mut pending),
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot stat, skipped"),
                }
            }
        }
        Ok((found, unreadable))
    }

    /// Starts a walk at `name` (checked, not the root), as if the walk from the root had reached
    /// it: every directory above must be a real one, since the walk never follows a symlinked
    /// directory. A name that is not there leaves nothing found, so its entries count as gone.
    fn visit_scope(&self, name: &str, found: &mut Vec<Found>, unreadable: &mut Vec<String>, pending: &mut Vec<String>) {
        let components: Vec<&str> = name.split('/').collect();
        let mut path = self.root.clone();
        for (i, component) in components.iter().enumerate() {
            path.push(component);
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if is_missing(&e) => return,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot stat, skipped");
                    unreadable.push(name.to_owned());
                    return;
                }
            };
            if i + 1 == components.len() {
                self.visit(name.to_owned(), path, meta.file_type(), found, pending);
                return;
            }
            if !meta.is_dir() {
                return;
            }
        }
    }

    /// Sorts one walked name of type `file_type` (not followed): a directory is queued in
    /// `pending`, a regular file is `found`, anything else (symlinks included: the data paths
    /// never follow one, see [`crate::beneath`]) ignored.
    fn visit(&self, name: String, path: PathBuf, file_type: FileType, found: &mut Vec<Found>, pending: &mut Vec<String>) {
        if file_type.is_dir() {
            pending.push(name);
        } else if file_type.is_file() {
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => found.push(Found { name, path, meta }),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot stat, skipped");
                }
            }
        }
    }

    /// Hashes `jobs` on one worker per core and records the results in batches.
    fn hash_jobs(&self, jobs: &[Job], report: &mut ScanReport) -> Result<(), ShareError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let total: u64 = jobs.iter().map(|j| j.found.meta.len()).sum();
        self.backlog.fetch_add(total, Ordering::Relaxed);
        // Whatever happens below, the backlog of this call is gone when it returns.
        let mut settle = Backlog {
            counter: &self.backlog,
            left: total,
        };
        let workers = thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len());
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (sender, results) = mpsc::sync_channel::<(usize, Result<(Hashed, Metadata), Skip>)>(workers);
        thread::scope(|scope| {
            for _ in 0..workers {
                let sender = sender.clone();
                let (next, stop) = (&next, &stop);
                scope.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(index) else { break };
                        if sender.send((index, hash_job(&job.found))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(sender);

            let mut batch: Vec<PutItem> = Vec::new();
            let mut batch_bytes = 0;
            let mut failure = None;
            for (index, result) in results {
                if failure.is_some() {
                    continue; // drain so the workers can finish
                }
                let job = &jobs[index];
                settle.done(job.found.meta.len());
                let (hashed, meta) = match result {
                    Ok(done) => done,
                    Err(Skip::Changed) => {
                        tracing::debug!(name = job.found.name, "changed while hashing, left for the next scan");
                        continue;
                    }
                    Err(Skip::Io(e)) => {
                        tracing::warn!(path = %job.found.path.display(), error = %e, "cannot hash, skipped");
                        continue;
                    }
                };
                report.hashed_bytes += hashed.size;
                if job.existed {
                    report.changed += 1;
                } else {
                    report.added += 1;
                }
                let entry = FileEntry::from_metadata(&meta, hashed.id);
                batch_bytes += hashed.outboard.len();
                batch.push((job.found.name.clone(), entry, hashed.outboard));
                if batch.len() >= BATCH_FILES || batch_bytes >= BATCH_OUTBOARD_BYTES {
                    if let Err(e) = self.store.put_many(&batch) {
                        stop.store(true, Ordering::Relaxed);
                        failure = Some(e);
                    }
                    batch.clear();
                    batch_bytes = 0;
                }
            }
            match failure {
                Some(e) => Err(e.into()),
                None => Ok(self.store.put_many(&batch)?),
            }
        })
    }

    /// The entry for `name`, if indexed.
    pub fn lookup_name(&self, name: &SafeName) -> Result<Option<FileEntry>, ShareError> {
        Ok(self.store.get(name.as_str())?)
    }

    /// A name holding content `id`, and its entry.
    pub fn lookup_id(&self, id: &ContentId) -> Result<Option<(String, FileEntry)>, ShareError> {
        Ok(self.store.by_id(id)?)
    }

    /// The outboard of content `id`.
    pub fn outboard(&self, id: &ContentId) -> Result<Option<Vec<u8>>, ShareError> {
        Ok(self.store.outboard(id)?)
    }

    /// Every indexed file, sorted by name.
    pub fn list(&self) -> Result<Vec<(String, FileEntry)>, ShareError> {
        Ok(self.store.list()?)
    }

    /// One page of the files under directory `dir` (empty: the whole share), in name order,
    /// after the name `after` (exclusive), at most `limit` of them.
    pub fn list_page(&self, dir: &str, after: &str, limit: usize) -> Result<Vec<(String, FileEntry)>, ShareError> {
        Ok(self.store.list_page(dir, after, limit)?)
    }

    /// Indexed files whose name matches `pattern`, case-insensitively, sorted by name.
    ///
    /// A pattern with `*` or `?` is a glob over the whole name; any other pattern matches as a
    /// substring. An empty pattern or `*` lists everything.
    pub fn search(&self, pattern: &str) -> Result<Vec<(String, FileEntry)>, ShareError> {
        let mut all = self.store.list()?;
        if pattern.is_empty() || pattern == "*" {
            return Ok(all);
        }
        if pattern.contains(['*', '?']) {
            let glob = WildMatch::new_case_insensitive(pattern);
            all.retain(|(name, _)| glob.matches(name));
        } else {
            let needle = pattern.to_lowercase();
            all.retain(|(name, _)| name.to_lowercase().contains(&needle));
        }
        Ok(all)
    }

    /// Records a file the downloader just placed at `name`, already hashed as `hashed`, stamped
    /// with its current metadata so the next scan does not hash it again.
    pub fn add_file(&self, name: &SafeName, hashed: Hashed) -> Result<(), ShareError> {
        let path = self.path_of(name.as_str());
        let meta = fs::metadata(&path).map_err(|source| ShareError::Stat {
            path: path.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(ShareError::NotAFile { path });
        }
        if meta.len() != hashed.size {
            return Err(ShareError::SizeMismatch {
                path,
                hashed: hashed.size,
                actual: meta.len(),
            });
        }
        let entry = FileEntry::from_metadata(&meta, hashed.id);
        self.store.put(name.as_str(), &entry, &hashed.outboard)?;
        Ok(())
    }
}

/// True when `name` lies under directory `dir` ("" is the root).
fn under(name: &str, dir: &str) -> bool {
    dir.is_empty() || name.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// True when `name` is `scope` or lies under it.
fn within(name: &str, scope: &str) -> bool {
    name == scope || under(name, scope)
}

/// The names to refresh for `relative`: checked, deduplicated, and without any that lies within
/// another (walking the outer one covers it), sorted.
fn scopes(relative: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = relative.iter().filter_map(|path| scope_name(path)).collect();
    names.sort();
    names.dedup();
    // An ancestor sorts before the names under it, so it is already kept when they come.
    let mut kept: Vec<String> = Vec::with_capacity(names.len());
    let mut kept_set: HashSet<String> = HashSet::with_capacity(names.len());
    for name in names {
        let covered = kept_set.contains("") || name.match_indices('/').any(|(at, _)| kept_set.contains(&name[..at]));
        if !covered {
            kept_set.insert(name.clone());
            kept.push(name);
        }
    }
    kept
}

/// The checked name of a path relative to the root ("" for the root itself), or `None` for a
/// path that could never be shared.
fn scope_name(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => {
                tracing::debug!(path = %path.display(), "not a path relative to the share, ignored");
                return None;
            }
        }
    }
    let name = parts.join("/");
    if name.is_empty() {
        return Some(name);
    }
    match check_name(&name) {
        Ok(_) => Some(name),
        Err(e) => {
            tracing::debug!(name, error = %e, "name cannot be shared, ignored");
            None
        }
    }
}

/// Hashes one file, making sure it did not change before or while it was read.
fn hash_job(found: &Found) -> Result<(Hashed, Metadata), Skip> {
    let file = File::open(&found.path).map_err(Skip::Io)?;
    let before = file.metadata().map_err(Skip::Io)?;
    let stamp = FileEntry::from_metadata(&before, ContentId([0; 32]));
    if !stamp.matches(&found.meta) {
        return Err(Skip::Changed);
    }
    let hashed = match hash_reader(file, before.len()) {
        Ok(hashed) => hashed,
        // A file that shrank while we read it.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(Skip::Changed),
        Err(e) => return Err(Skip::Io(e)),
    };
    let after = fs::metadata(&found.path).map_err(Skip::Io)?;
    if !stamp.matches(&after) {
        return Err(Skip::Changed);
    }
    Ok((hashed, before))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Fixture {
        dir: tempfile::TempDir,
        share: Share,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let share = open_share(dir.path());
            Fixture { dir, share }
        }

        fn write(&self, name: &str, content: &[u8]) {
            let path = self.share.root().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }

        fn names(&self) -> Vec<String> {
            self.share.list().unwrap().into_iter().map(|(n, _)| n).collect()
        }

        fn id_of(&self, name: &str) -> ContentId {
            self.share.lookup_name(&check_name(name).unwrap()).unwrap().unwrap().id
        }
    }

    fn open_share(dir: &Path) -> Share {
        let db = redb::Database::create(dir.join("state.redb")).unwrap();
        Share::open(&dir.join("share"), Arc::new(db)).unwrap()
    }

    fn id(content: &[u8]) -> ContentId {
        blake3::hash(content).into()
    }

    #[test]
    fn scan_indexes_nested_files_and_skips_hidden_ones() {
        let f = Fixture::new();
        f.write("top.txt", b"top");
        f.write("a/b/c.txt", b"deep");
        f.write(".hidden", b"no");
        f.write("a/.x.shoal-part", b"partial");
        f.write(".dir/inside.txt", b"no");
        f.write("a/b/empty", b"");
        let report = f.share.scan().unwrap();
        assert_eq!(
            report,
            ScanReport {
                added: 3,
                hashed_bytes: 7,
                ..ScanReport::default()
            }
        );
        assert_eq!(f.names(), ["a/b/c.txt", "a/b/empty", "top.txt"]);
        assert_eq!(f.id_of("a/b/c.txt"), id(b"deep"));
        assert_eq!(f.id_of("a/b/empty"), id(b""));
        let (name, entry) = f.share.lookup_id(&id(b"top")).unwrap().unwrap();
        assert_eq!(name, "top.txt");
        let meta = fs::metadata(f.share.path_of("top.txt")).unwrap();
        assert!(entry.matches(&meta));
        let outboard = f.share.outboard(&id(b"top")).unwrap().unwrap();
        assert!(outboard.is_empty(), "a one-block file has no hash pairs");
    }

    #[test]
    fn scan_sees_changes_and_deletions() {
        let f = Fixture::new();
        let big = vec![5u8; 200_000];
        f.write("keep", b"same");
        f.write("edit", &big);
        f.write("drop", b"bye");
        f.share.scan().unwrap();
        let old = f.id_of("edit");
        assert!(f.share.outboard(&old).unwrap().is_some());

        f.write("edit", b"different and shorter");
        fs::remove_file(f.share.path_of("drop")).unwrap();
        let report = f.share.scan().unwrap();
        assert_eq!(
            report,
            ScanReport {
                changed: 1,
                removed: 1,
                unchanged: 1,
                hashed_bytes: 21,
                ..ScanReport::default()
            }
        );
        assert_eq!(f.id_of("edit"), id(b"different and shorter"));
        assert_eq!(f.share.outboard(&old).unwrap(), None);
        assert_eq!(f.share.lookup_id(&old).unwrap(), None);
        assert_eq!(f.names(), ["edit", "keep"]);
    }

    #[test]
    fn rescan_after_reopen_hashes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let share = open_share(dir.path());
            for i in 0..40 {
                let content = format!("file number {i}").repeat(i * 500 + 1);
                let path = share.root().join(format!("d{}/f{i}", i % 4));
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, content).unwrap();
            }
            let report = share.scan().unwrap();
            assert_eq!(report.added, 40);
            assert!(report.hashed_bytes > 0);
            for (name, entry) in share.list().unwrap() {
                let content = fs::read(share.path_of(&name)).unwrap();
                assert_eq!(entry.id, id(&content), "{name}");
                assert_eq!(entry.size, content.len() as u64);
            }
        }
        let share = open_share(dir.path());
        let report = share.scan().unwrap();
        assert_eq!(
            report,
            ScanReport {
                unchanged: 40,
                ..ScanReport::default()
            }
        );
    }

    #[test]
    fn duplicates_are_listed_under_both_names() {
        let f = Fixture::new();
        let content = vec![9u8; 70_000];
        f.write("one.bin", &content);
        f.write("copies/two.bin", &content);
        f.share.scan().unwrap();
        assert_eq!(f.names(), ["copies/two.bin", "one.bin"]);
        assert_eq!(f.id_of("one.bin"), f.id_of("copies/two.bin"));

        fs::remove_file(f.share.path_of("one.bin")).unwrap();
        assert_eq!(f.share.scan().unwrap().removed, 1);
        let (name, _) = f.share.lookup_id(&id(&content)).unwrap().unwrap();
        assert_eq!(name, "copies/two.bin");
        let outboard = f.share.outboard(&id(&content)).unwrap().unwrap();
        let pieces = crate::hash::piece_hashes(&id(&content), 70_000, &outboard, crate::BLOCK_BYTES).unwrap();
        assert!(pieces.verify(0, &content[..16384]));
    }

    #[test]
    fn symlinks_are_never_indexed() {
        let f = Fixture::new();
        let outside = f.dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), b"secret").unwrap();
        f.write("real.txt", b"real");
        f.write(".private/hidden.txt", b"hidden");
        let root = f.share.root();
        symlink(root.join("real.txt"), root.join("alias.txt")).unwrap();
        symlink(outside.join("secret"), root.join("escape")).unwrap();
        symlink(&outside, root.join("outdir")).unwrap();
        symlink(root.join(".private"), root.join("privdir")).unwrap();
        symlink(root.join(".private/hidden.txt"), root.join("peek")).unwrap();
        symlink(root.join("missing"), root.join("dangling")).unwrap();
        f.share.scan().unwrap();
        assert_eq!(f.names(), ["real.txt"], "no symlink is shared, not even one inside");
    }

    #[test]
    fn search_globs_and_substrings_ignore_case() {
        let f = Fixture::new();
        for name in ["Music/Song.MP3", "music/other.ogg", "docs/readme.txt"] {
            f.write(name, name.as_bytes());
        }
        f.share.scan().unwrap();
        let search = |pattern: &str| -> Vec<String> { f.share.search(pattern).unwrap().into_iter().map(|(n, _)| n).collect() };
        assert_eq!(search("").len(), 3);
        assert_eq!(search("*").len(), 3);
        assert_eq!(search("song"), ["Music/Song.MP3"]);
        assert_eq!(search("MUSIC/"), ["Music/Song.MP3", "music/other.ogg"]);
        assert_eq!(search("*.mp3"), ["Music/Song.MP3"]);
        assert_eq!(search("docs/*.TX?"), ["docs/readme.txt"]);
        assert!(search("*.mp").is_empty(), "a glob covers the whole name");
        assert!(search("nothing").is_empty());
    }

    #[test]
    fn add_file_records_without_rehashing() {
        let f = Fixture::new();
        let content = vec![1u8; 100_000];
        f.write("downloads/new.bin", &content);
        let name = check_name("downloads/new.bin").unwrap();
        let hashed = crate::hash::hash_bytes(&content);
        f.share.add_file(&name, hashed.clone()).unwrap();
        assert_eq!(f.share.lookup_name(&name).unwrap().unwrap().id, hashed.id);
        assert_eq!(f.share.outboard(&hashed.id).unwrap(), Some(hashed.outboard));
        let report = f.share.scan().unwrap();
        assert_eq!(report.hashed_bytes, 0);
        assert_eq!(report.unchanged, 1);

        let short = crate::hash::hash_bytes(b"short");
        let err = f.share.add_file(&name, short).unwrap_err();
        assert!(matches!(err, ShareError::SizeMismatch { .. }), "{err}");
        let missing = check_name("downloads/missing").unwrap();
        let err = f.share.add_file(&missing, crate::hash::hash_bytes(b"")).unwrap_err();
        assert!(matches!(err, ShareError::Stat { .. }), "{err}");
    }

    #[test]
    fn a_file_changed_after_the_walk_is_left_for_the_next_scan() {
        let f = Fixture::new();
        f.write("moving", b"first version");
        let path = f.share.path_of("moving");
        let meta = fs::metadata(&path).unwrap();
        f.write("moving", b"second, longer version");
        let found = Found {
            name: "moving".into(),
            path: path.clone(),
            meta,
        };
        assert!(matches!(hash_job(&found), Err(Skip::Changed)));
        let fresh = Found {
            meta: fs::metadata(&path).unwrap(),
            ..found
        };
        let (hashed, _) = hash_job(&fresh).ok().unwrap();
        assert_eq!(hashed.id, id(b"second, longer version"));
    }

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn refresh_touches_only_the_given_paths() {
        let f = Fixture::new();
        for name in ["a/x", "a/y", "b", "c"] {
            f.write(name, name.as_bytes());
        }
        f.share.scan().unwrap();
        f.write("a/x", b"new x");
        fs::remove_file(f.share.path_of("a/y")).unwrap();
        fs::remove_file(f.share.path_of("b")).unwrap();
        f.write("a/z", b"z");
        f.write("d", b"d");

        let report = f.share.refresh(&paths(&["a/x"])).unwrap();
        assert_eq!(
            report,
            ScanReport {
                changed: 1,
                hashed_bytes: 5,
                ..ScanReport::default()
            }
        );
        assert_eq!(f.id_of("a/x"), id(b"new x"));
        assert_eq!(f.names(), ["a/x", "a/y", "b", "c"], "nothing outside the path is touched");

        let report = f.share.refresh(&paths(&["a"])).unwrap();
        assert_eq!(
            report,
            ScanReport {
                added: 1,
                removed: 1,
                unchanged: 1,
                hashed_bytes: 1,
                ..ScanReport::default()
            }
        );
        assert_eq!(f.names(), ["a/x", "a/z", "b", "c"]);

        let report = f.share.refresh(&paths(&["b", "d"])).unwrap();
        assert_eq!(
            report,
            ScanReport {
                added: 1,
                removed: 1,
                hashed_bytes: 1,
                ..ScanReport::default()
            }
        );
        assert_eq!(f.names(), ["a/x", "a/z", "c", "d"]);
        assert_eq!(f.share.scan().unwrap().unchanged, 4, "refresh left nothing for the scan");
    }

    #[test]
    fn refresh_of_a_vanished_directory_removes_everything_under_it() {
        let f = Fixture::new();
        for name in ["dir/x", "dir/sub/y", "dirx", "dir!/z"] {
            f.write(name, name.as_bytes());
        }
        f.share.scan().unwrap();
        fs::remove_dir_all(f.share.path_of("dir")).unwrap();
        let report = f.share.refresh(&paths(&["dir"])).unwrap();
        assert_eq!(report.removed, 2);
        assert_eq!(f.names(), ["dir!/z", "dirx"]);

        // A file that became a directory, and a directory that became a file.
        f.write("dir", b"now a file");
        fs::remove_file(f.share.path_of("dirx")).unwrap();
        f.write("dirx/inner", b"inner");
        let report = f.share.refresh(&paths(&["dir", "dirx"])).unwrap();
        assert_eq!((report.added, report.removed), (2, 1));
        assert_eq!(f.names(), ["dir", "dir!/z", "dirx/inner"]);
    }

    #[test]
    fn refresh_hashes_overlapping_paths_once() {
        let f = Fixture::new();
        f.write("a/b/c", b"c");
        f.write("a/d", b"d");
        let report = f.share.refresh(&paths(&["a/b/c", "a", "a/b", "./a/d", "a"])).unwrap();
        assert_eq!((report.added, report.hashed_bytes), (2, 2));
        f.write("e", b"e");
        let report = f.share.refresh(&paths(&["a", ""])).unwrap();
        assert_eq!((report.added, report.unchanged), (1, 2), "an empty path is the whole root");
    }

    #[test]
    fn refresh_skips_what_a_scan_skips() {
        let f = Fixture::new();
        let outside = f.dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), b"secret").unwrap();
        fs::write(f.dir.path().join("sibling"), b"sibling").unwrap();
        f.write("real.txt", b"real");
        f.write(".x.shoal-part", b"partial");
        f.write("a/.hidden", b"hidden");
        f.write(".private/hidden.txt", b"hidden");
        let root = f.share.root();
        symlink(root.join("real.txt"), root.join("alias.txt")).unwrap();
        symlink(outside.join("secret"), root.join("escape")).unwrap();
        symlink(&outside, root.join("outdir")).unwrap();
        symlink(root.join("a"), root.join("indir")).unwrap();
        symlink(root.join(".private"), root.join("privdir")).unwrap();
        symlink(root.join(".private/hidden.txt"), root.join("peek")).unwrap();
        let asked = paths(&[
            "escape",
            "outdir",
            "outdir/secret",
            "indir",
            "privdir/hidden.txt",
            "peek",
            ".x.shoal-part",
            "a/.hidden",
            ".private",
            "../sibling",
            "missing/file",
            "real.txt/under-a-file",
        ]);
        let mut asked_absolute = asked.clone();
        asked_absolute.push(root.join("real.txt"));
        let report = f.share.refresh(&asked_absolute).unwrap();
        assert_eq!(report, ScanReport::default());
        assert!(f.names().is_empty(), "{:?}", f.names());

        f.share.refresh(&paths(&["alias.txt", "a", "real.txt"])).unwrap();
        assert_eq!(f.names(), ["real.txt"]);
        assert_eq!(f.share.scan().unwrap().unchanged, 1, "scan agrees");
    }

    #[test]
    fn scopes_are_checked_sorted_and_outermost() {
        let got = scopes(&paths(&[
            "b/c", "a!/y", "a/x", "a", "./c/", "../d", "/e", ".h", "f/.g", "b", "a/x/y",
        ]));
        assert_eq!(got, ["a", "a!/y", "b", "c"]);
        assert_eq!(scopes(&paths(&["a", "", "b"])), [""]);
        assert!(scopes(&[]).is_empty());
    }

    #[test]
    fn under_matches_whole_directory_names() {
        assert!(under("a/b", "a"));
        assert!(under("a/b/c", "a/b"));
        assert!(under("anything", ""));
        assert!(!under("ab/c", "a"));
        assert!(!under("a", "a"));
    }
}
