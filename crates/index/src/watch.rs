//! Watching the shared directory, so a change reaches the index within about a second instead of
//! at the next periodic scan.
//!
//! [`Watcher`] watches the share root recursively (inotify on Linux, through `notify`) and turns
//! its events into [`Batch`]es of paths relative to the root, for [`crate::Share::refresh`].
//! Events are coalesced: a batch goes out once no change came for [`WatchConfig::debounce`], so a
//! file written in many small writes is hashed once after it settles, or at the latest
//! [`WatchConfig::max_delay`] after its first change, so a file written without pause does not
//! hold back everything else. Paths are deduplicated, and a path under another one in the same
//! batch is dropped, since refreshing a directory walks all of it.
//!
//! Hidden paths, our partial downloads among them, are ignored; renaming a partial download to
//! its final name is reported, as an event on the visible name. Opening or reading a file or a
//! directory is no change, so our own scans and hashing do not feed back into batches.
//!
//! When events were lost (the kernel queue overflowed, a new directory could not be watched), or a
//! batch would name more than [`WatchConfig::max_paths`] paths, the batch is [`Batch::Rescan`] and
//! the consumer runs a full [`crate::Share::scan`]. The periodic scan stays as a fallback anyway.
//!
//! Batches travel through a channel of one slot: while the consumer is busy, later changes merge
//! into the next batch, so memory stays bounded however fast files change. Everything runs on one
//! thread of ours (and notify's own); no async runtime is needed, and the node reads the receiver
//! from a blocking thread. Dropping the [`Watcher`] stops both threads.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::name::has_hidden_component;

/// How long [`Watcher`]'s drop waits for its thread to end before leaving it detached.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("resolve share directory {path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("watch {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("start the watcher thread: {source}")]
    Spawn {
        #[source]
        source: io::Error,
    },
}

/// What changed in the share, as sent by [`Watcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batch {
    /// These paths, relative to the root, sorted, none under another, may have changed: give them
    /// to [`crate::Share::refresh`].
    Paths(Vec<PathBuf>),
    /// Changes were lost or too many to list: run a full [`crate::Share::scan`].
    Rescan,
}

/// How [`Watcher`] coalesces events into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchConfig {
    /// A batch goes out once no change came for this long...
    pub debounce: Duration,
    /// ...or at the latest this long after its first change.
    pub max_delay: Duration,
    /// A batch that would name more paths than this becomes [`Batch::Rescan`].
    pub max_paths: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            debounce: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_paths: 4096,
        }
    }
}

/// What reaches the watcher thread.
#[derive(Debug)]
enum Message {
    Event(notify::Result<Event>),
    Stop,
}

/// Watches a share root; see the module documentation. Dropping it stops the watching.
#[derive(Debug)]
pub struct Watcher {
    /// Canonical path of the watched root.
    root: PathBuf,
    /// `Some` until dropped; dropping it ends notify's own thread.
    notify: Option<RecommendedWatcher>,
    /// Tells our thread to stop.
    control: Sender<Message>,
    thread: Option<JoinHandle<()>>,
    /// Reports disconnected once our thread has ended (its sender is dropped as it returns).
    ended: Receiver<()>,
}

impl Watcher {
    /// Starts watching `root` with the default [`WatchConfig`]. Returns the watcher and the
    /// receiver of its batches.
    pub fn start(root: &Path) -> Result<(Watcher, Receiver<Batch>), WatchError> {
        Watcher::start_with(root, WatchConfig::default())
    }

    /// Starts watching `root`, coalescing as `config` says.
    pub fn start_with(root: &Path, config: WatchConfig) -> Result<(Watcher, Receiver<Batch>), WatchError> {
        let root = root.canonicalize().map_err(|source| WatchError::Root {
            path: root.to_owned(),
            source,
        })?;
        let (control, messages) = mpsc::channel();
        let events = control.clone();
        let handler = move |event: notify::Result<Event>| {
            // Fails only once our thread has ended, when nobody wants events any more.
            let _ = events.send(Message::Event(event));
        };
        let watch_error = |source| WatchError::Watch {
            path: root.clone(),
            source,
        };
        let notify_config = notify::Config::default().with_follow_symlinks(false);
        let mut notify = RecommendedWatcher::new(handler, notify_config).map_err(watch_error)?;
        notify.watch(&root, RecursiveMode::Recursive).map_err(watch_error)?;

        let (batches, receiver) = mpsc::sync_channel(1);
        let (ended_sender, ended) = mpsc::channel::<()>();
        let thread_root = root.clone();
        let thread = thread::Builder::new()
            .name("shoal-watch".into())
            .spawn(move || {
                let _ended = ended_sender;
                run(&thread_root, config, &messages, &batches);
            })
            .map_err(|source| WatchError::Spawn { source })?;
        tracing::debug!(root = %root.display(), "watching the share");
        let watcher = Watcher {
            root,
            notify: Some(notify),
            control,
            thread: Some(thread),
            ended,
        };
        Ok((watcher, receiver))
    }

    /// The canonical path of the watched root.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        drop(self.notify.take());
        let _ = self.control.send(Message::Stop);
        let Some(thread) = self.thread.take() else { return };
        match self.ended.recv_timeout(STOP_TIMEOUT) {
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!(root = %self.root.display(), "watcher thread did not stop, left detached");
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                if thread.join().is_err() {
                    tracing::warn!(root = %self.root.display(), "watcher thread panicked");
                }
            }
        }
    }
}

/// The watcher thread: gathers events into `pending` and sends it when due, until told to stop,
/// until notify goes away, or until nobody receives batches any more.
fn run(root: &Path, config: WatchConfig, messages: &Receiver<Message>, batches: &SyncSender<Batch>) {
    let mut pending = Pending::default();
    // When the pending batch had its first change, and when it is due.
    let mut due: Option<(Instant, Instant)> = None;
    loop {
        let now = Instant::now();
        if let Some((_, deadline)) = due
            && now >= deadline
        {
            due = None;
            let Some(batch) = pending.take() else { continue };
            match batches.try_send(batch) {
                Ok(()) => {}
                // The consumer is busy with the previous batch: merge on and try again later.
                Err(TrySendError::Full(batch)) => {
                    pending.restore(batch, config.max_paths);
                    due = Some((now, now + config.debounce));
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
            continue;
        }
        let message = match due {
            None => messages.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some((_, deadline)) => messages.recv_timeout(deadline.saturating_duration_since(now)),
        };
        match message {
            Ok(Message::Event(event)) => {
                if pending.add(root, event, config.max_paths) {
                    let now = Instant::now();
                    due = Some(match due {
                        None => (now, now + config.debounce),
                        Some((first, _)) => (first, (now + config.debounce).min(first + config.max_delay)),
                    });
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The batch being gathered.
#[derive(Debug, Default)]
struct Pending {
    /// Relative paths, none under another.
    paths: BTreeSet<PathBuf>,
    /// Events were lost or too many: the batch is a rescan whatever the paths.
    rescan: bool,
}

impl Pending {
    /// Takes in one event from notify; returns whether it changed the batch.
    fn add(&mut self, root: &Path, event: notify::Result<Event>, max_paths: usize) -> bool {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(root = %root.display(), error = %e, "watching failed, the share will be rescanned");
                return self.set_rescan();
            }
        };
        if event.need_rescan() {
            tracing::info!(root = %root.display(), "events were lost, the share will be rescanned");
            return self.set_rescan();
        }
        if !is_change(&event.kind) {
            return false;
        }
        let mut changed = false;
        for path in &event.paths {
            let Ok(relative) = path.strip_prefix(root) else {
                tracing::debug!(path = %path.display(), "event outside the share, ignored");
                continue;
            };
            if relative.as_os_str().is_empty() {
                // The root itself was moved, removed or changed: only a scan can tell.
                tracing::info!(root = %root.display(), kind = ?event.kind, "the share root changed, it will be rescanned");
                changed |= self.set_rescan();
                continue;
            }
            if has_hidden_component(relative) {
                continue;
            }
            changed |= self.insert(relative, max_paths);
        }
        changed
    }

    /// Adds one relative path, dropping those under it and skipping it if under one already
    /// there. Past `max_paths` the batch becomes a rescan.
    fn insert(&mut self, relative: &Path, max_paths: usize) -> bool {
        if self.rescan || relative.ancestors().any(|ancestor| self.paths.contains(ancestor)) {
            return false;
        }
        // Paths order by component, so the ones under `relative` follow it directly.
        let below: Vec<PathBuf> = self
            .paths
            .range(relative.to_path_buf()..)
            .take_while(|path| path.starts_with(relative))
            .cloned()
            .collect();
        for path in &below {
            self.paths.remove(path);
        }
        if self.paths.len() >= max_paths {
            tracing::info!(max_paths, "too many changes to list, the share will be rescanned");
            return self.set_rescan();
        }
        self.paths.insert(relative.to_path_buf());
        true
    }

    /// Turns the batch into a rescan; returns whether it was not one already.
    fn set_rescan(&mut self) -> bool {
        self.paths.clear();
        !std::mem::replace(&mut self.rescan, true)
    }

    /// The batch to send, leaving nothing pending; `None` when nothing is.
    fn take(&mut self) -> Option<Batch> {
        if std::mem::take(&mut self.rescan) {
            self.paths.clear();
            return Some(Batch::Rescan);
        }
        if self.paths.is_empty() {
            return None;
        }
        Some(Batch::Paths(std::mem::take(&mut self.paths).into_iter().collect()))
    }

    /// Puts back a batch that could not be sent, merging it with what came meanwhile.
    fn restore(&mut self, batch: Batch, max_paths: usize) {
        match batch {
            Batch::Rescan => {
                self.set_rescan();
            }
            Batch::Paths(paths) => {
                for path in paths {
                    self.insert(&path, max_paths);
                }
            }
        }
    }
}

/// True for an event that may mean a file's content, metadata or existence changed; opening,
/// reading and closing without writing are not changes.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Any | EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Other => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};
    use std::fs;
    use std::sync::Arc;

    use crate::hash::ContentId;
    use crate::name::check_name;
    use crate::share::Share;

    /// Longest wait for a batch: generous, since the machine may be busy.
    const WAIT: Duration = Duration::from_secs(10);

    // --- Pending, fed with made-up events.

    fn event(kind: EventKind, paths: &[&str]) -> notify::Result<Event> {
        let root = Path::new("/share");
        Ok(paths.iter().fold(Event::new(kind), |event, path| event.add_path(root.join(path))))
    }

    fn gathered(events: Vec<notify::Result<Event>>, max_paths: usize) -> Option<Batch> {
        let mut pending = Pending::default();
        for event in events {
            pending.add(Path::new("/share"), event, max_paths);
        }
        pending.take()
    }

    fn batch(paths: &[&str]) -> Option<Batch> {
        Some(Batch::Paths(paths.iter().map(PathBuf::from).collect()))
    }

    #[test]
    fn pending_keeps_changes_and_drops_the_rest() {
        let create = EventKind::Create(CreateKind::File);
        let events = vec![
            event(create, &["b"]),
            event(EventKind::Modify(ModifyKind::Any), &["b", "a/x"]),
            event(EventKind::Access(AccessKind::Open(AccessMode::Any)), &["opened"]),
            event(EventKind::Access(AccessKind::Close(AccessMode::Read)), &["read"]),
            event(EventKind::Access(AccessKind::Close(AccessMode::Write)), &["written"]),
            event(EventKind::Remove(RemoveKind::File), &["gone"]),
            event(create, &[".x.shoal-part", "a/.hidden", ".dir/inside"]),
            event(EventKind::Modify(ModifyKind::Name(RenameMode::Both)), &["c/.y.shoal-part", "c/y"]),
            Ok(Event::new(create).add_path(PathBuf::from("/elsewhere/file"))),
        ];
        assert_eq!(gathered(events, 100), batch(&["a/x", "b", "c/y", "gone", "written"]));
        assert_eq!(gathered(vec![event(create, &[".hidden"])], 100), None);
    }

    #[test]
    fn pending_keeps_only_the_outermost_path() {
        let create = EventKind::Create(CreateKind::Any);
        let inner_first = vec![event(create, &["d/e/f", "d/e/g", "d!", "d0/x"]), event(create, &["d/e"])];
        assert_eq!(gathered(inner_first, 100), batch(&["d/e", "d!", "d0/x"]));
        let outer_first = vec![event(create, &["d"]), event(create, &["d/e/f", "d"])];
        assert_eq!(gathered(outer_first, 100), batch(&["d"]));
    }

    #[test]
    fn pending_turns_into_a_rescan() {
        let create = EventKind::Create(CreateKind::File);
        let lost = Ok(Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan));
        assert_eq!(gathered(vec![event(create, &["a"]), lost], 100), Some(Batch::Rescan));
        let failed = Err(notify::Error::generic("watch limit"));
        assert_eq!(gathered(vec![failed, event(create, &["a"])], 100), Some(Batch::Rescan));
        let root = event(EventKind::Remove(RemoveKind::Folder), &[""]);
        assert_eq!(gathered(vec![root], 100), Some(Batch::Rescan));
        assert_eq!(gathered(vec![event(create, &["a", "b", "c"])], 3), batch(&["a", "b", "c"]));
        assert_eq!(gathered(vec![event(create, &["a", "b", "c", "d"])], 3), Some(Batch::Rescan));

        let mut pending = Pending::default();
        assert!(pending.add(Path::new("/share"), event(create, &["a"]), 3));
        assert_eq!(pending.take(), batch(&["a"]));
        assert_eq!(pending.take(), None, "taking empties it");
        pending.add(Path::new("/share"), event(create, &["b/c"]), 3);
        pending.restore(Batch::Paths(vec!["a".into(), "b".into()]), 3);
        assert_eq!(pending.take(), batch(&["a", "b"]), "a batch put back merges");
    }

    // --- The real thing: files changed on disk, batches given to Share::refresh.

    struct Harness {
        dir: tempfile::TempDir,
        share: Share,
        watcher: Watcher,
        batches: Receiver<Batch>,
    }

    impl Harness {
        fn new() -> Self {
            Harness::with(WatchConfig::default())
        }

        fn with(config: WatchConfig) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let db = redb::Database::create(dir.path().join("state.redb")).unwrap();
            let share = Share::open(&dir.path().join("share"), Arc::new(db)).unwrap();
            let (watcher, batches) = Watcher::start_with(share.root(), config).unwrap();
            assert_eq!(watcher.root(), share.root());
            Harness {
                dir,
                share,
                watcher,
                batches,
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.share.path_of(name)
        }

        fn write(&self, name: &str, content: &[u8]) {
            fs::write(self.path(name), content).unwrap();
        }

        /// Receives batches, refreshing the share with each, until every name in `names` was
        /// covered by one; returns the batches. Any batch covering a name came after the change
        /// that the caller made before calling, so refreshing it sees that change.
        fn settle(&self, names: &[&str]) -> Vec<Vec<PathBuf>> {
            let deadline = Instant::now() + WAIT;
            let mut missing: Vec<&str> = names.to_vec();
            let mut received = Vec::new();
            while !missing.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                let paths = match self.batches.recv_timeout(left) {
                    Ok(Batch::Paths(paths)) => paths,
                    Ok(Batch::Rescan) => panic!("unexpected rescan"),
                    Err(e) => panic!("no batch covering {missing:?} within {WAIT:?}: {e}; got {received:?}"),
                };
                self.share.refresh(&paths).unwrap();
                missing.retain(|name| !paths.iter().any(|path| Path::new(name).starts_with(path)));
                received.push(paths);
            }
            received
        }

        fn id_of(&self, name: &str) -> Option<ContentId> {
            self.share.lookup_name(&check_name(name).unwrap()).unwrap().map(|entry| entry.id)
        }
    }

    fn id(content: &[u8]) -> Option<ContentId> {
        Some(blake3::hash(content).into())
    }

    #[test]
    fn written_changed_and_removed_files_reach_the_index() {
        let h = Harness::new();
        h.write("song.ogg", b"first");
        let batches = h.settle(&["song.ogg"]);
        assert!(batches.iter().flatten().any(|path| path == Path::new("song.ogg")), "{batches:?}");
        assert_eq!(h.id_of("song.ogg"), id(b"first"));

        h.write("song.ogg", b"second version");
        h.settle(&["song.ogg"]);
        assert_eq!(h.id_of("song.ogg"), id(b"second version"));

        fs::remove_file(h.path("song.ogg")).unwrap();
        h.settle(&["song.ogg"]);
        assert_eq!(h.id_of("song.ogg"), None);
    }

    #[test]
    fn a_renamed_file_moves_in_the_index() {
        let h = Harness::new();
        h.write("old.txt", b"content");
        h.settle(&["old.txt"]);
        fs::rename(h.path("old.txt"), h.path("new.txt")).unwrap();
        h.settle(&["old.txt", "new.txt"]);
        assert_eq!(h.id_of("old.txt"), None);
        assert_eq!(h.id_of("new.txt"), id(b"content"));
    }

    #[test]
    fn new_directories_are_indexed_whole() {
        let h = Harness::new();
        fs::create_dir_all(h.path("made/deep/er")).unwrap();
        h.write("made/top", b"top");
        h.write("made/deep/er/leaf", b"leaf");
        h.settle(&["made/top", "made/deep/er/leaf"]);
        assert_eq!(h.id_of("made/top"), id(b"top"));
        assert_eq!(h.id_of("made/deep/er/leaf"), id(b"leaf"));

        let outside = h.dir.path().join("outside");
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("a"), b"a").unwrap();
        fs::write(outside.join("sub/b"), b"b").unwrap();
        fs::rename(&outside, h.path("moved")).unwrap();
        h.settle(&["moved/a", "moved/sub/b"]);
        assert_eq!(h.id_of("moved/a"), id(b"a"));
        assert_eq!(h.id_of("moved/sub/b"), id(b"b"));

        // The moved-in directory is watched too.
        h.write("moved/sub/c", b"c");
        h.settle(&["moved/sub/c"]);
        assert_eq!(h.id_of("moved/sub/c"), id(b"c"));

        fs::rename(h.path("moved"), h.dir.path().join("moved-out")).unwrap();
        h.settle(&["moved"]);
        assert_eq!(h.id_of("moved/a"), None);
        assert_eq!(h.id_of("moved/sub/c"), None);
    }

    #[test]
    fn hidden_files_are_ignored_until_renamed_visible() {
        let h = Harness::new();
        fs::create_dir_all(h.path("dl")).unwrap();
        h.settle(&["dl"]);
        h.write("dl/.film.mkv.shoal-part", b"partial");
        h.write(".hidden", b"hidden");
        h.write("marker", b"marker");
        let batches = h.settle(&["marker"]);
        let hidden = |path: &PathBuf| path.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
        assert!(!batches.iter().flatten().any(hidden), "{batches:?}");
        assert!(!batches.iter().flatten().any(|path| path == Path::new("dl")), "{batches:?}");

        fs::rename(h.path("dl/.film.mkv.shoal-part"), h.path("dl/film.mkv")).unwrap();
        h.settle(&["dl/film.mkv"]);
        assert_eq!(h.id_of("dl/film.mkv"), id(b"partial"));
        assert_eq!(h.share.list().unwrap().len(), 2, "film and marker only");
    }

    #[test]
    fn a_symlink_out_of_the_share_is_not_indexed() {
        let h = Harness::new();
        let outside = h.dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), b"secret").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), h.path("escape")).unwrap();
        std::os::unix::fs::symlink(&outside, h.path("outdir")).unwrap();
        h.settle(&["escape", "outdir"]);
        let report = h.share.refresh(&[PathBuf::from("escape"), PathBuf::from("outdir/secret")]).unwrap();
        assert_eq!(report, crate::ScanReport::default());
        assert!(h.share.list().unwrap().is_empty());
    }

    #[test]
    fn many_small_writes_make_one_batch() {
        use std::io::Write;
        let config = WatchConfig {
            debounce: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
            ..WatchConfig::default()
        };
        let h = Harness::with(config);
        let mut file = fs::File::create(h.path("slow.bin")).unwrap();
        for i in 0..50u8 {
            file.write_all(&[i; 100]).unwrap();
            file.flush().unwrap();
        }
        drop(file);
        h.write("marker", b"marker");
        let batches = h.settle(&["slow.bin", "marker"]);
        let naming = batches.iter().filter(|paths| paths.contains(&PathBuf::from("slow.bin"))).count();
        assert_eq!(naming, 1, "{batches:?}");
        assert_eq!(h.share.lookup_name(&check_name("slow.bin").unwrap()).unwrap().unwrap().size, 5000);
    }

    #[test]
    fn too_many_changes_make_a_rescan() {
        let config = WatchConfig {
            debounce: Duration::from_secs(2),
            max_delay: Duration::from_secs(5),
            max_paths: 3,
        };
        let h = Harness::with(config);
        for i in 0..5 {
            h.write(&format!("f{i}"), b"x");
        }
        assert_eq!(h.batches.recv_timeout(WAIT), Ok(Batch::Rescan));
        assert_eq!(h.share.scan().unwrap().added, 5);
    }

    #[test]
    fn dropping_the_watcher_ends_its_thread() {
        let h = Harness::new();
        h.write("f", b"f");
        let Harness { watcher, batches, .. } = h;
        let started = Instant::now();
        drop(watcher);
        assert!(started.elapsed() < STOP_TIMEOUT, "the thread ended in time");
        // Whatever was sent before is still there; then the channel is closed.
        for _ in 0..3 {
            match batches.recv_timeout(WAIT) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => panic!("the watcher thread still runs"),
            }
        }
        panic!("more batches than changes");
    }
}
