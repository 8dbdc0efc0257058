//! The partial file on disk: its hidden name beside the target, opening it without following a
//! symlink, reserving its space before the first byte (`posix_fallocate`, so a full disk is
//! reported at the start), writing checked pieces at their offsets with the kernel asked to
//! start writing them back at once (`sync_file_range`, so the fsync before the rename has little
//! left to do), and that fsync. Where the file and its final name live is [`super::place`].

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

    /// Writes a checked piece at `offset` and asks the kernel to start writing it back
    /// (blocking). A full disk is [`EngineError::NoSpace`].
    pub fn write_piece(&self, offset: u64, data: &[u8]) -> Result<(), EngineError> {
        match self.file.write_all_at(data, offset) {
            Ok(()) => {
                start_writeback(&self.file, offset, data.len());
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

/// Asks the kernel to start writing a piece to disk now, without waiting for it, so that the
/// final fsync before the rename has little left to do (writeback overlaps the download
/// instead of following it). A failure here only loses that head start.
fn start_writeback(file: &File, offset: u64, len: usize) {
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
    fn part_files_are_hidden_beside_the_target() {
        assert_eq!(part_path(Path::new("/a/b/c.iso")), PathBuf::from("/a/b/.c.iso.shoal-part"));
    }
}
