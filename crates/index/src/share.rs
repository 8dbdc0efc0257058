//! The shared directory: walking it, hashing what changed, and answering lookups.
//!
//! [`Share::scan`] brings the index in line with the directory. It walks the root without
//! following symlinked directories, skips everything hidden (a leading `.`, which also covers our
//! partial downloads), compares each file's size, modification time and inode with the stored
//! entry, and hashes only new or changed files, on one worker per core pulling from a shared
//! queue. A file that changes while it is hashed is left for the next scan. Entries whose files
//! are gone are removed, but only if nobody recorded a newer entry meanwhile, so a download
//! finishing during a scan is never forgotten.
//!
//! Lookups read the index only; callers check [`FileEntry::matches`] against the file before
//! serving it under its id.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use wildmatch::WildMatch;

use crate::hash::{ContentId, Hashed, hash_reader};
use crate::name::{SafeName, check_name, is_inside};
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
}

/// A file the walk found.
struct Found {
    name: String,
    path: PathBuf,
    meta: Metadata,
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
        })
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
        let _one_scan = self.scan_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let stored: HashMap<String, FileEntry> = self.store.list()?.into_iter().collect();
        let mut report = ScanReport::default();
        let (found, unreadable) = self.walk()?;

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
            .filter(|(name, _)| !unreadable.iter().any(|dir| under(name, dir)))
            .collect();
        report.removed = self.store.remove_unchanged(&gone)?;
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

    /// Walks the root; returns the indexable files and the directories that could not be read
    /// (whose entries must not be taken for deleted).
    fn walk(&self) -> Result<(Vec<Found>, Vec<String>), ShareError> {
        let mut found = Vec::new();
        let mut unreadable = Vec::new();
        // Directories still to read, as names relative to the root ("" is the root).
        let mut pending = vec![String::new()];
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
                let file_type = match entry.file_type() {
                    Ok(file_type) => file_type,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot stat, skipped");
                        continue;
                    }
                };
                if file_type.is_dir() {
                    pending.push(name);
                } else if file_type.is_file() || file_type.is_symlink() {
                    if file_type.is_symlink() && !self.symlink_is_shareable(&path) {
                        continue;
                    }
                    // Follows a symlink, so the stamp is the target's, as when serving.
                    match fs::metadata(&path) {
                        Ok(meta) if meta.is_file() => found.push(Found { name, path, meta }),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "cannot stat, skipped");
                        }
                    }
                }
            }
        }
        Ok((found, unreadable))
    }

    /// True for a symlink to a regular file inside the share and not hidden.
    fn symlink_is_shareable(&self, path: &Path) -> bool {
        match path.canonicalize() {
            Ok(target) => is_inside(&self.root, &target) && target.is_file(),
            Err(_) => false,
        }
    }

    /// Hashes `jobs` on one worker per core and records the results in batches.
    fn hash_jobs(&self, jobs: &[Job], report: &mut ScanReport) -> Result<(), ShareError> {
        if jobs.is_empty() {
            return Ok(());
        }
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
    fn symlinks_inside_are_indexed_and_others_skipped() {
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
        assert_eq!(f.names(), ["alias.txt", "real.txt"]);
        assert_eq!(f.id_of("alias.txt"), id(b"real"));
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

    #[test]
    fn under_matches_whole_directory_names() {
        assert!(under("a/b", "a"));
        assert!(under("a/b/c", "a/b"));
        assert!(under("anything", ""));
        assert!(!under("ab/c", "a"));
        assert!(!under("a", "a"));
    }
}
