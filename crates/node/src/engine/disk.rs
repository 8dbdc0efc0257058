//! The partial file on disk: its hidden name beside the target, opening it without following a
//! symlink, reserving its space before the first byte (`posix_fallocate`, so a full disk is
//! reported at the start), writing checked pieces at their offsets, asking the kernel to start
//! writing them back soon after (`sync_file_range`, so the fsync before the rename has little
//! left to do), and that fsync. Where the file and its final name live is [`super::place`].
//!
//! The write-back request is made off the writers' path ([`WriteBack`]): `sync_file_range`
//! blocks while the disk's queue is full, and a connection that waited on it stopped reading
//! its socket, so a busy disk slowed the download itself instead of only its end. A piece
//! written lands in the page cache at memory speed (as any download tool's does); one blocking
//! call at a time, on the blocking pool, starts write-back of everything written since its last
//! call.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::EngineError;
use super::place::Spot;

/// The partial file beside a target: hidden, so the index never shows it.
pub fn part_path(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    target.with_file_name(format!(".{name}.shoal-part"))
}

/// The partial file of one download, open for reading and writing, its space reserved (a
/// clone shares the open file).
#[derive(Clone)]
pub(super) struct PartFile {
    file: Arc<File>,
    /// The file's size when complete.
    size: u64,
    spot: Arc<Spot>,
    writeback: Arc<WriteBack>,
}

impl PartFile {
    /// Opens the partial file where `spot` says (`fresh`: anew, removing an old one; otherwise
    /// reopened to resume), makes the directories above it, and reserves `size` bytes, refusing
    /// when the file system has too little room (blocking).
    pub fn open(spot: Arc<Spot>, size: u64, fresh: bool) -> Result<PartFile, EngineError> {
        let part = spot.part().to_path_buf();
        let io = |step: &'static str| {
            let path = part.clone();
            move |source| EngineError::Io { step, path, source }
        };
        spot.make_dirs()?;
        let file = spot.open_part(fresh).map_err(io("open"))?;
        let have = file.metadata().map_err(io("stat"))?.len();
        if have < size {
            let dir = part.parent().unwrap_or(Path::new("."));
            if let Some(free) = free_space(dir)
                && free < size - have
            {
                return Err(EngineError::NoSpace {
                    dir: dir.to_path_buf(),
                    needed: size - have,
                    free,
                });
            }
            allocate(&file, size).map_err(|source| {
                if source.raw_os_error() == Some(libc::ENOSPC) {
                    no_space(&part, size - have)
                } else {
                    io("allocate")(source)
                }
            })?;
        }
        Ok(PartFile {
            file: Arc::new(file),
            size,
            spot,
            writeback: Arc::default(),
        })
    }

    /// Where the download's files are.
    pub fn spot(&self) -> &Arc<Spot> {
        &self.spot
    }

    /// The partial file's path.
    pub fn path(&self) -> &Path {
        self.spot.part()
    }

    /// Reads `buf.len()` bytes at `offset` (blocking).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Writes a checked piece, in the parts it arrived in, at `offset` (blocking) and has
    /// write-back of it started without waiting for that ([`WriteBack`]). A full disk is
    /// [`EngineError::NoSpace`].
    pub fn write_piece(&self, offset: u64, parts: &[Bytes]) -> Result<(), EngineError> {
        match write_all_vectored_at(&self.file, parts, offset) {
            Ok(len) => {
                self.writeback.request(&self.file, offset..offset + len);
                Ok(())
            }
            Err(source) if source.raw_os_error() == Some(libc::ENOSPC) => Err(no_space(self.path(), self.size)),
            Err(source) => Err(EngineError::Io {
                step: "write",
                path: self.path().to_path_buf(),
                source,
            }),
        }
    }

    /// Flushes the file to disk (blocking).
    pub fn sync(&self) -> Result<(), EngineError> {
        self.file.sync_all().map_err(|source| EngineError::Io {
            step: "sync",
            path: self.path().to_path_buf(),
            source,
        })
    }
}

/// Opens the partial file by path: a fresh download removes any old one and creates it anew,
/// never through a symlink (`O_EXCL` with `O_NOFOLLOW`); a resumed one reopens it, refusing a
/// symlink or anything but a regular file.
pub(super) fn open_part(part: &Path, fresh: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).custom_flags(libc::O_NOFOLLOW);
    if !fresh {
        match options.open(part) {
            Ok(file) if file.metadata()?.is_file() => return Ok(file),
            Ok(_) => return Err(std::io::Error::other("the partial file is not a regular file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    match std::fs::remove_file(part) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    options.create_new(true).mode(0o644).open(part)
}

/// The error for a full disk while writing `part`, `needed` bytes wanted.
pub(super) fn no_space(part: &Path, needed: u64) -> EngineError {
    let dir = part.parent().unwrap_or(Path::new(".")).to_path_buf();
    EngineError::NoSpace {
        free: free_space(&dir).unwrap_or(0),
        dir,
        needed,
    }
}

/// Bytes an unprivileged user may still write in the file system holding `dir`.
fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a valid out-pointer for the call.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// The most parts one `pwritev` takes (Linux's `IOV_MAX`).
const MAX_IOVECS: usize = 1024;

/// Writes `parts` one after another at `offset` with as few `pwritev` calls as they allow (no
/// copy into one buffer first). Returns the bytes written.
fn write_all_vectored_at(file: &File, parts: &[Bytes], offset: u64) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let (mut parts, mut skip, mut at) = (parts, 0usize, offset);
    loop {
        // Parts written whole (or empty) are behind us.
        while let Some(first) = parts.first()
            && skip >= first.len()
        {
            parts = &parts[1..];
            skip = 0;
        }
        if parts.is_empty() {
            return Ok(total);
        }
        let iovecs: Vec<libc::iovec> = parts
            .iter()
            .take(MAX_IOVECS)
            .enumerate()
            .map(|(i, part)| {
                let rest = if i == 0 { &part[skip..] } else { &part[..] };
                libc::iovec {
                    iov_base: rest.as_ptr() as *mut libc::c_void,
                    iov_len: rest.len(),
                }
            })
            .collect();
        // SAFETY: every iovec points into a part borrowed for the duration of the call, and the
        // descriptor is open for writing.
        let written = unsafe { libc::pwritev(file.as_raw_fd(), iovecs.as_ptr(), iovecs.len() as libc::c_int, at as libc::off_t) };
        if written < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut written = written as usize;
        at += written as u64;
        while written > 0 {
            let rest = parts[0].len() - skip;
            if written >= rest {
                written -= rest;
                parts = &parts[1..];
                skip = 0;
            } else {
                skip += written;
                written = 0;
            }
        }
    }
}

/// Write-back of what was written, started off the writers' path: at most one blocking call at a
/// time starts it for the span of everything written since the previous call (pages in that
/// span that are not dirty cost nothing).
#[derive(Debug, Default)]
struct WriteBack {
    state: Mutex<Flush>,
}

#[derive(Debug, Default)]
struct Flush {
    /// Written since the running call took its span.
    pending: Option<Range<u64>>,
    /// A call is running (or queued on the blocking pool).
    busy: bool,
}

impl WriteBack {
    /// Adds `written` to what the next call starts write-back of, and starts a call unless one
    /// runs; returns at once (without a runtime, it starts write-back itself).
    fn request(self: &Arc<Self>, file: &Arc<File>, written: Range<u64>) {
        if written.is_empty() {
            return;
        }
        {
            let mut flush = self.state.lock().unwrap_or_else(|p| p.into_inner());
            flush.pending = Some(match flush.pending.take() {
                Some(span) => span.start.min(written.start)..span.end.max(written.end),
                None => written,
            });
            if flush.busy {
                return;
            }
            flush.busy = true;
        }
        let (this, file) = (self.clone(), file.clone());
        let job = move || {
            while let Some(span) = this.take() {
                start_writeback(&file, span.start, span.end - span.start);
            }
        };
        match tokio::runtime::Handle::try_current() {
            // Detached: it ends when nothing is pending, and a failure only loses a head start.
            Ok(runtime) => drop(runtime.spawn_blocking(job)),
            Err(_) => job(),
        }
    }

    /// The span to write back next; none (and not busy any more) when nothing is pending.
    fn take(&self) -> Option<Range<u64>> {
        let mut flush = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let span = flush.pending.take();
        flush.busy = span.is_some();
        span
    }
}

/// Asks the kernel to start writing a span to disk now, without waiting for the writes to end,
/// so that the final fsync before the rename has little left to do (write-back overlaps the
/// download instead of following it). It may wait for room in the disk's queue. A failure here
/// only loses that head start.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call; the range is plain numbers.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Reserves `size` bytes for `file` (`posix_fallocate`; a plain `set_len` where the file system
/// cannot reserve).
fn allocate(file: &File, size: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if size == 0 {
        return Ok(());
    }
    // SAFETY: the descriptor is open for writing for the duration of the call.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) };
    match rc {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(size),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_written_one_after_another_at_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::options().read(true).write(true).create_new(true).open(&path).unwrap();
        // More parts than one pwritev takes, some empty, of many lengths.
        let parts: Vec<Bytes> = (0..2500usize).map(|i| Bytes::from(vec![(i % 251) as u8; i % 7])).collect();
        let expected: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        let written = write_all_vectored_at(&file, &parts, 100).unwrap();
        assert_eq!(written, expected.len() as u64);
        let mut back = vec![0u8; expected.len()];
        file.read_exact_at(&mut back, 100).unwrap();
        assert_eq!(back, expected);
        assert_eq!(file.metadata().unwrap().len(), 100 + expected.len() as u64);
        assert_eq!(write_all_vectored_at(&file, &[], 0).unwrap(), 0);
    }

    #[test]
    fn part_files_are_hidden_beside_the_target() {
        assert_eq!(part_path(Path::new("/a/b/c.iso")), PathBuf::from("/a/b/.c.iso.shoal-part"));
    }
}
