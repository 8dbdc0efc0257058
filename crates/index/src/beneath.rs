//! Opening and creating files beneath the share root without a check-then-use race.
//!
//! [`SafeName::resolve_existing`](crate::SafeName::resolve_existing) checks a path and returns
//! it, and the caller opens it afterwards: whoever can write inside the share can swap a
//! directory for a symlink in between and have a file from outside served. Here the check is the
//! open itself. A [`Root`] holds a descriptor of the share root, and every name is resolved
//! relative to it by the kernel, which refuses to follow any symlink on the way: `openat2(2)`
//! with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel has it, otherwise a walk of one
//! `openat(2)` with `O_NOFOLLOW` per component, each relative to the directory descriptor opened
//! just before. What was opened is then checked on the descriptor (`fstat`), never on a path.
//!
//! This is stricter than `resolve_existing`: a symlink anywhere in a name is refused as
//! [`NameError::Outside`], even one that points back inside the share. Data paths of a share
//! never follow symlinks; the scanner may still index a symlink to a file inside the share, and
//! serving it through a [`Root`] then answers `Outside`.
//!
//! For downloads, [`Root::create_parent_dirs`] opens (creating where missing) the directories
//! above a name the same way and returns them as a [`Dir`], whose operations take one plain
//! component each and act relative to that directory's descriptor.
//!
//! Linux only: it needs `openat2`, `O_PATH` and the `*at` family.

use std::ffi::{CStr, CString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::name::{NameError, SafeName};

/// Directory permissions for directories created by [`Root::create_parent_dirs`] (before umask).
const DIR_MODE: libc::mode_t = 0o755;
/// File permissions for files created by [`Dir::create_new`] (before umask).
const FILE_MODE: libc::mode_t = 0o644;
/// How often a system call that answered `EINTR` or `EAGAIN` is tried again.
const RETRIES: usize = 8;

/// Set once `openat2` answered `ENOSYS`, so later opens go straight to the walk.
static OPENAT2_MISSING: AtomicBool = AtomicBool::new(false);

/// The argument of `openat2(2)`, as in `linux/openat2.h`.
///
/// Defined here because libc marks its `open_how` non-exhaustive, so it cannot be built outside
/// libc without zeroing memory.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// The share root, held open so that names resolve relative to it rather than to a path.
#[derive(Debug)]
pub struct Root {
    /// `O_PATH | O_DIRECTORY` descriptor of the canonical root.
    fd: OwnedFd,
    /// The canonical root, for messages and for callers that still need a path.
    path: PathBuf,
}

/// A directory beneath a [`Root`], opened without following symlinks, ready to take the last
/// component of a name.
#[derive(Debug)]
pub struct Dir {
    /// `O_RDONLY | O_DIRECTORY` descriptor, so that it can also be fsynced.
    fd: OwnedFd,
    /// The last component of the name the directory was opened for.
    file_name: String,
    /// Directories created on the way, relative to the root, outermost first.
    created: Vec<String>,
}

impl Root {
    /// Opens the share root at `path` (canonicalized first).
    pub fn open(path: &Path) -> Result<Root, NameError> {
        let root_error = |source| NameError::Root {
            root: path.to_owned(),
            source,
        };
        let canonical = path.canonicalize().map_err(root_error)?;
        let c_path = CString::new(canonical.as_os_str().as_encoded_bytes()).map_err(|_| root_error(nul_error()))?;
        let fd = retry(|| {
            // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
            let raw = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
            owned(raw)
        })
        .map_err(root_error)?;
        Ok(Root { fd, path: canonical })
    }

    /// The canonical path of the root.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the existing regular file `name` read-only, never following a symlink.
    ///
    /// A symlink anywhere in the name gives [`NameError::Outside`] (whether it points inside the
    /// share or not, and whether it dangles or not); a missing file [`NameError::NotFound`]; a
    /// component above the last that is not a directory [`NameError::NotADirectory`]; anything
    /// but a regular file (a directory, a FIFO, a device) [`NameError::NotAFile`].
    pub fn open_file(&self, name: &SafeName) -> Result<File, NameError> {
        let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK;
        let fd = match self.open_beneath(name, flags) {
            Some(result) => result?,
            None => self.walk_open(name, flags)?,
        };
        file_error(name, regular_file(fd))
    }

    /// The metadata of the regular file `name`, taken from a descriptor opened as by
    /// [`Root::open_file`].
    pub fn metadata(&self, name: &SafeName) -> Result<Metadata, NameError> {
        self.open_file(name)?.metadata().map_err(|source| io_error(name, "fstat", source))
    }

    /// Opens every directory above the last component of `name`, creating missing ones (mode
    /// 0755 before umask), without following symlinks.
    ///
    /// A symlink on the way gives [`NameError::Outside`]; something that is not a directory
    /// [`NameError::NotADirectory`]. The returned [`Dir`] also tells which directories were
    /// created, so a download that fails can remove them again with [`Root::remove_created`].
    pub fn create_parent_dirs(&self, name: &SafeName) -> Result<Dir, NameError> {
        let (parents, file_name) = split_last(name.as_str());
        let mut created = Vec::new();
        let parent = walk_dirs(self.fd.as_fd(), name, &parents, Some(&mut created))?;
        let at = parent.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd);
        // Reopen the last directory for reading: an `O_PATH` descriptor cannot be fsynced.
        let fd = openat(at, c".", libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0)
            .map_err(|source| io_error(name, "open parent directory", source))?;
        Ok(Dir {
            fd,
            file_name: file_name.to_owned(),
            created,
        })
    }

    /// Removes directories that [`Root::create_parent_dirs`] created, innermost first, as long
    /// as they are empty. Stops quietly at the first one that is no longer empty, gone, or no
    /// longer reachable without a symlink; fails on other errors of the removal itself.
    pub fn remove_created(&self, created: &[String]) -> io::Result<()> {
        for relative in created.iter().rev() {
            let (parents, last) = split_last(relative);
            let Ok(safe) = crate::name::check_name(relative) else {
                return Err(invalid_input("not a directory created beneath the root"));
            };
            let parent = match walk_dirs(self.fd.as_fd(), &safe, &parents, None) {
                Ok(parent) => parent,
                Err(_) => return Ok(()),
            };
            let at = parent.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd);
            let c_last = component(last)?;
            // SAFETY: `at` is an open descriptor and `c_last` a valid C string, both live for the call.
            let rc = unsafe { libc::unlinkat(at.as_raw_fd(), c_last.as_ptr(), libc::AT_REMOVEDIR) };
            if rc != 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::ENOTEMPTY | libc::EEXIST | libc::ENOENT | libc::ENOTDIR) => Ok(()),
                    _ => Err(e),
                };
            }
        }
        Ok(())
    }

    /// Opens `name` with `openat2`, confined beneath the root. `None` when the kernel has no
    /// `openat2` (or a seccomp filter refuses it), so the caller walks instead.
    fn open_beneath(&self, name: &SafeName, flags: libc::c_int) -> Option<Result<OwnedFd, NameError>> {
        if OPENAT2_MISSING.load(Ordering::Relaxed) {
            return None;
        }
        let c_name = match CString::new(name.as_str()) {
            Ok(c_name) => c_name,
            Err(_) => return Some(Err(io_error(name, "openat2", nul_error()))),
        };
        let how = OpenHow {
            flags: u64::try_from(flags).unwrap_or(0),
            mode: 0,
            resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
        };
        match openat2(self.fd.as_fd(), &c_name, &how) {
            Ok(fd) => Some(Ok(fd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                OPENAT2_MISSING.store(true, Ordering::Relaxed);
                None
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => None,
            Err(e) => Some(Err(open_error(name, "openat2", e))),
        }
    }

    /// Opens `name` by walking it one component at a time, each relative to the descriptor of
    /// the directory before, none followed if it is a symlink. The fallback for kernels without
    /// `openat2`.
    fn walk_open(&self, name: &SafeName, flags: libc::c_int) -> Result<OwnedFd, NameError> {
        let (parents, last) = split_last(name.as_str());
        let parent = walk_dirs(self.fd.as_fd(), name, &parents, None)?;
        let at = parent.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd);
        let c_last = component(last).map_err(|e| io_error(name, "open", e))?;
        openat(at, &c_last, flags | libc::O_NOFOLLOW, 0).map_err(|e| open_error(name, "open", e))
    }
}

impl Dir {
    /// The last component of the name this directory was opened for.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// Directories [`Root::create_parent_dirs`] created to reach this one, relative to the
    /// root, outermost first.
    pub fn created(&self) -> &[String] {
        &self.created
    }

    /// Creates `file_name` read-write (mode 0644 before umask); fails with `AlreadyExists` if
    /// anything is there, a dangling symlink included.
    pub fn create_new(&self, file_name: &str) -> io::Result<File> {
        let c_name = component(file_name)?;
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        openat(self.fd.as_fd(), &c_name, flags, FILE_MODE).map(File::from)
    }

    /// Opens the existing regular file `file_name` read-write, to resume a partial download.
    /// A symlink fails (`ELOOP`), and so does anything but a regular file.
    pub fn open_existing_rw(&self, file_name: &str) -> io::Result<File> {
        let c_name = component(file_name)?;
        let flags = libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
        let fd = openat(self.fd.as_fd(), &c_name, flags, 0)?;
        regular_file(fd)?.ok_or_else(|| invalid_input("not a regular file"))
    }

    /// Links `from` as `to` in this directory; fails with `AlreadyExists` if `to` exists, so
    /// nothing is ever replaced. A symlink `from` is linked as the symlink itself.
    pub fn link_no_clobber(&self, from: &str, to: &str) -> io::Result<()> {
        let (c_from, c_to) = (component(from)?, component(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: `fd` is open for the life of `self`; both names are valid C strings.
        let rc = unsafe { libc::linkat(fd, c_from.as_ptr(), fd, c_to.as_ptr(), 0) };
        check(rc)
    }

    /// Renames `from` to `to` in this directory, replacing `to` as `rename(2)` does.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (c_from, c_to) = (component(from)?, component(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: `fd` is open for the life of `self`; both names are valid C strings.
        let rc = unsafe { libc::renameat(fd, c_from.as_ptr(), fd, c_to.as_ptr()) };
        check(rc)
    }

    /// Removes the file (or symlink) `file_name` from this directory.
    pub fn remove(&self, file_name: &str) -> io::Result<()> {
        let c_name = component(file_name)?;
        // SAFETY: the descriptor is open for the life of `self`; `c_name` is a valid C string.
        let rc = unsafe { libc::unlinkat(self.fd.as_raw_fd(), c_name.as_ptr(), 0) };
        check(rc)
    }

    /// Flushes the directory itself, so that created, linked and renamed entries survive a crash.
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: the descriptor is open for the life of `self`.
        let rc = unsafe { libc::fsync(self.fd.as_raw_fd()) };
        check(rc)
    }

    /// True when anything is at `file_name` in this directory, a dangling symlink included.
    pub fn exists(&self, file_name: &str) -> io::Result<bool> {
        let c_name = component(file_name)?;
        // SAFETY: `stat` is plain data, for which all zeroes is a valid value.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is open, `c_name` a valid C string and `stat` writable.
        let rc = unsafe { libc::fstatat(self.fd.as_raw_fd(), c_name.as_ptr(), &mut stat, libc::AT_SYMLINK_NOFOLLOW) };
        match check(rc) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Opens the directories `parents` of `name` in turn, starting at `root`, without following
/// symlinks. With `created`, missing directories are made and recorded there (relative to the
/// root). Returns the descriptor of the last one, or `None` when there are no parents (the
/// root itself).
fn walk_dirs(
    root: BorrowedFd<'_>,
    name: &SafeName,
    parents: &[&str],
    mut created: Option<&mut Vec<String>>,
) -> Result<Option<OwnedFd>, NameError> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let mut held: Option<OwnedFd> = None;
    for (i, part) in parents.iter().enumerate() {
        let at = held.as_ref().map_or(root, AsFd::as_fd);
        let c_part = component(part).map_err(|e| io_error(name, "open directory", e))?;
        let next = match openat(at, &c_part, flags, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let Some(created) = created.as_deref_mut() else {
                    return Err(not_found(name));
                };
                // SAFETY: `at` is an open descriptor and `c_part` a valid C string.
                let rc = unsafe { libc::mkdirat(at.as_raw_fd(), c_part.as_ptr(), DIR_MODE) };
                match check(rc) {
                    Ok(()) => created.push(parents[..=i].join("/")),
                    // Someone else made it meanwhile; the open below checks what it is.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_error(name, "create directory", e)),
                }
                openat(at, &c_part, flags, 0).map_err(|e| dir_error(name, at, &c_part, e))?
            }
            Err(e) => return Err(dir_error(name, at, &c_part, e)),
        };
        held = Some(next);
    }
    Ok(held)
}

/// Classifies a failed open of directory `part` under `at`. `O_PATH | O_DIRECTORY | O_NOFOLLOW`
/// answers `ENOTDIR` for a symlink as for a file, so look at what is there now: the answer only
/// picks the error, the open already refused. A directory there now was a symlink a moment ago
/// (someone is swapping them), so it counts as one.
fn dir_error(name: &SafeName, at: BorrowedFd<'_>, part: &CStr, e: io::Error) -> NameError {
    if e.raw_os_error() != Some(libc::ENOTDIR) {
        return open_error(name, "open directory", e);
    }
    // SAFETY: `stat` is plain data, for which all zeroes is a valid value.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `at` is open, `part` a valid C string and `stat` writable.
    let rc = unsafe { libc::fstatat(at.as_raw_fd(), part.as_ptr(), &mut stat, libc::AT_SYMLINK_NOFOLLOW) };
    match check(rc) {
        Ok(()) if matches!(stat.st_mode & libc::S_IFMT, libc::S_IFLNK | libc::S_IFDIR) => NameError::Outside { name: name.to_string() },
        Err(e) if e.kind() == io::ErrorKind::NotFound => not_found(name),
        _ => NameError::NotADirectory { name: name.to_string() },
    }
}

/// Maps an error from opening `name` to what callers expect of a name lookup.
fn open_error(name: &SafeName, step: &'static str, e: io::Error) -> NameError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => not_found(name),
        // ELOOP: a symlink met with RESOLVE_NO_SYMLINKS or O_NOFOLLOW; EXDEV: an escape.
        Some(libc::ELOOP | libc::EXDEV) => NameError::Outside { name: name.to_string() },
        Some(libc::ENOTDIR) => NameError::NotADirectory { name: name.to_string() },
        _ => io_error(name, step, e),
    }
}

/// Maps the result of [`regular_file`] for `name`.
fn file_error(name: &SafeName, result: io::Result<Option<File>>) -> Result<File, NameError> {
    match result {
        Ok(Some(file)) => Ok(file),
        Ok(None) => Err(NameError::NotAFile { name: name.to_string() }),
        Err(e) => Err(io_error(name, "fstat", e)),
    }
}

/// Turns `fd` into a blocking `File` if it is a regular file, `None` otherwise.
///
/// Opens use `O_NONBLOCK` so that a FIFO in the share cannot hang them; the flag is cleared
/// again here (it means nothing for regular files, but callers should get plain files).
fn regular_file(fd: OwnedFd) -> io::Result<Option<File>> {
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    let raw = file.as_raw_fd();
    // SAFETY: `raw` is open for the life of `file`; F_GETFL takes no argument.
    let status = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if status < 0 {
        return Err(io::Error::last_os_error());
    }
    if status & libc::O_NONBLOCK != 0 {
        // SAFETY: as above; F_SETFL takes an int.
        check(unsafe { libc::fcntl(raw, libc::F_SETFL, status & !libc::O_NONBLOCK) })?;
    }
    Ok(Some(file))
}

/// `openat(2)`, tried again on `EINTR`.
fn openat(at: BorrowedFd<'_>, name: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    retry(|| {
        // SAFETY: `at` is an open descriptor and `name` a valid C string, both live for the call.
        let raw = unsafe { libc::openat(at.as_raw_fd(), name.as_ptr(), flags, libc::c_uint::from(mode)) };
        owned(raw)
    })
}

/// `openat2(2)`, tried again on `EINTR` and on `EAGAIN` (a concurrent rename the kernel could
/// not rule out as an escape).
fn openat2(at: BorrowedFd<'_>, name: &CStr, how: &OpenHow) -> io::Result<OwnedFd> {
    retry(|| {
        // SAFETY: `at` is open, `name` a valid C string and `how` a valid `open_how` whose size
        // is passed alongside; all live for the call.
        let raw = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                at.as_raw_fd(),
                name.as_ptr(),
                std::ptr::from_ref(how),
                std::mem::size_of::<OpenHow>(),
            )
        };
        owned(libc::c_int::try_from(raw).unwrap_or(-1))
    })
}

/// Runs `open` until it answers something other than `EINTR` or `EAGAIN`, at most [`RETRIES`]
/// times.
fn retry(mut open: impl FnMut() -> io::Result<OwnedFd>) -> io::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match open() {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) && tries < RETRIES => tries += 1,
            result => return result,
        }
    }
}

/// Takes ownership of a descriptor returned by an open call, or the error it set.
fn owned(raw: libc::c_int) -> io::Result<OwnedFd> {
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just returned by a successful open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The result of a call that returns 0 or -1 with errno.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// A single path component as a C string: not empty, not `.` or `..`, no `/` or NUL.
fn component(part: &str) -> io::Result<CString> {
    if part.is_empty() || part == "." || part == ".." || part.contains('/') {
        return Err(invalid_input("not a single path component"));
    }
    CString::new(part).map_err(|_| nul_error())
}

/// Splits a `/`-separated name into its directories and its last component.
fn split_last(name: &str) -> (Vec<&str>, &str) {
    match name.rsplit_once('/') {
        Some((dirs, last)) => (dirs.split('/').collect(), last),
        None => (Vec::new(), name),
    }
}

fn not_found(name: &SafeName) -> NameError {
    NameError::NotFound { name: name.to_string() }
}

fn io_error(name: &SafeName, step: &'static str, source: io::Error) -> NameError {
    NameError::Io {
        name: name.to_string(),
        step,
        source,
    }
}

fn invalid_input(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn nul_error() -> io::Error {
    invalid_input("contains a NUL byte")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::check_name;
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::AtomicBool;
    use std::thread;

    /// A share root and a directory beside it, holding a secret that must never be read.
    struct Fixture {
        _dir: tempfile::TempDir,
        share: PathBuf,
        outside: PathBuf,
        root: Root,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let share = dir.path().join("share");
            let outside = dir.path().join("outside");
            fs::create_dir_all(&share).unwrap();
            fs::create_dir_all(&outside).unwrap();
            fs::write(outside.join("f"), b"SECRET").unwrap();
            let root = Root::open(&share).unwrap();
            Fixture {
                _dir: dir,
                share,
                outside,
                root,
            }
        }

        fn write(&self, name: &str, content: &[u8]) {
            let path = self.share.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }

        fn open(&self, name: &str) -> Result<File, NameError> {
            self.root.open_file(&check_name(name).unwrap())
        }

        fn walk(&self, name: &str) -> Result<File, NameError> {
            let name = check_name(name).unwrap();
            let fd = self.root.walk_open(&name, libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK)?;
            file_error(&name, regular_file(fd))
        }

        fn parents(&self, name: &str) -> Result<Dir, NameError> {
            self.root.create_parent_dirs(&check_name(name).unwrap())
        }
    }

    fn read(mut file: File) -> String {
        let mut content = String::new();
        file.read_to_string(&mut content).unwrap();
        content
    }

    /// One way of opening a name beneath the fixture's root.
    type Opener = fn(&Fixture, &str) -> Result<File, NameError>;

    /// Both ways of opening, so every expectation is checked against each.
    fn openers() -> [(&'static str, Opener); 2] {
        [("openat2", Fixture::open), ("walk", Fixture::walk)]
    }

    #[test]
    fn root_open_needs_a_directory() {
        let f = Fixture::new();
        assert_eq!(f.root.path(), f.share.canonicalize().unwrap());
        f.write("file", b"x");
        for path in [f.share.join("file"), f.share.join("missing")] {
            let err = Root::open(&path).unwrap_err();
            assert!(matches!(err, NameError::Root { .. }), "{err:?}");
        }
    }

    #[test]
    fn nested_files_open_and_read() {
        let f = Fixture::new();
        f.write("top", b"top");
        f.write("a/b/c.txt", b"deep");
        for (how, open) in openers() {
            assert_eq!(read(open(&f, "top").unwrap()), "top", "{how}");
            assert_eq!(read(open(&f, "a/b/c.txt").unwrap()), "deep", "{how}");
        }
        let meta = f.root.metadata(&check_name("a/b/c.txt").unwrap()).unwrap();
        assert_eq!(meta.len(), 4);
    }

    #[test]
    fn symlinks_anywhere_are_outside() {
        let f = Fixture::new();
        f.write("real/f", b"inside");
        symlink(&f.outside, f.share.join("outdir")).unwrap();
        symlink(f.share.join("real"), f.share.join("indir")).unwrap();
        symlink(f.outside.join("f"), f.share.join("outfile")).unwrap();
        symlink(f.share.join("real/f"), f.share.join("infile")).unwrap();
        symlink(f.outside.join("missing"), f.share.join("dangling")).unwrap();
        symlink("f", f.share.join("real/relative")).unwrap();
        for (how, open) in openers() {
            for name in [
                "outdir/f",
                "indir/f",
                "outfile",
                "infile",
                "dangling",
                "dangling/below",
                "real/relative",
            ] {
                let err = open(&f, name).unwrap_err();
                assert!(matches!(err, NameError::Outside { .. }), "{how} {name}: {err:?}");
                assert!(!err.to_string().contains("outside/"), "{err} leaks the target");
            }
        }
    }

    #[test]
    fn missing_files_directories_and_fifos() {
        let f = Fixture::new();
        f.write("sub/file", b"x");
        let fifo = CString::new(f.share.join("fifo").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        for (how, open) in openers() {
            for name in ["missing", "sub/missing", "nodir/file"] {
                let err = open(&f, name).unwrap_err();
                assert!(matches!(err, NameError::NotFound { .. }), "{how} {name}: {err:?}");
            }
            for name in ["sub", "fifo"] {
                let err = open(&f, name).unwrap_err();
                assert!(matches!(err, NameError::NotAFile { .. }), "{how} {name}: {err:?}");
            }
            let err = open(&f, "sub/file/below").unwrap_err();
            assert!(matches!(err, NameError::NotADirectory { .. }), "{how}: {err:?}");
        }
    }

    #[test]
    fn opened_files_block_normally() {
        let f = Fixture::new();
        f.write("file", b"x");
        let file = f.open("file").unwrap();
        // SAFETY: the descriptor is open for the life of `file`.
        let status = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(status & libc::O_NONBLOCK, 0);
    }

    #[test]
    fn create_parent_dirs_creates_and_reports() {
        let f = Fixture::new();
        f.write("a/existing", b"x");
        let dir = f.parents("a/b/c/new.bin").unwrap();
        assert_eq!(dir.file_name(), "new.bin");
        assert_eq!(dir.created(), ["a/b", "a/b/c"]);
        assert!(f.share.join("a/b/c").is_dir());
        let mut file = dir.create_new("new.bin").unwrap();
        io::Write::write_all(&mut file, b"data").unwrap();
        dir.sync().unwrap();
        assert_eq!(fs::read(f.share.join("a/b/c/new.bin")).unwrap(), b"data");

        let again = f.parents("a/b/c/other").unwrap();
        assert!(again.created().is_empty());
        let top = f.parents("top.bin").unwrap();
        assert_eq!(top.file_name(), "top.bin");
        assert!(top.created().is_empty());
        top.create_new("top.bin").unwrap();
        assert!(f.share.join("top.bin").is_file());

        // A failed download takes its directories away again, but only empty ones.
        let failed = f.parents("x/y/z").unwrap();
        assert_eq!(failed.created(), ["x", "x/y"]);
        f.root.remove_created(failed.created()).unwrap();
        assert!(!f.share.join("x").exists());
        f.root.remove_created(dir.created()).unwrap();
        assert!(f.share.join("a/b/c/new.bin").is_file());
    }

    #[test]
    fn create_parent_dirs_refuses_symlinks_and_files() {
        let f = Fixture::new();
        f.write("real/file", b"x");
        symlink(&f.outside, f.share.join("outdir")).unwrap();
        symlink(f.share.join("real"), f.share.join("indir")).unwrap();
        symlink(f.outside.join("missing"), f.share.join("dangling")).unwrap();
        for name in ["outdir/new", "outdir/a/b", "indir/new", "dangling/new"] {
            let err = f.parents(name).unwrap_err();
            assert!(matches!(err, NameError::Outside { .. }), "{name}: {err:?}");
        }
        assert!(!f.outside.join("a").exists());
        assert!(!f.outside.join("missing").exists());
        let err = f.parents("real/file/new").unwrap_err();
        assert!(matches!(err, NameError::NotADirectory { .. }), "{err:?}");
    }

    #[test]
    fn dir_operations_never_clobber_or_follow() {
        let f = Fixture::new();
        let dir = f.parents("d/file").unwrap();
        symlink(f.outside.join("f"), f.share.join("d/link")).unwrap();
        symlink(f.outside.join("missing"), f.share.join("d/dangling")).unwrap();
        for taken in ["link", "dangling"] {
            let err = dir.create_new(taken).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{taken}");
        }
        assert!(!f.outside.join("missing").exists());
        assert!(dir.open_existing_rw("link").is_err());
        assert_eq!(fs::read(f.outside.join("f")).unwrap(), b"SECRET");
        assert!(dir.exists("dangling").unwrap());
        assert!(!dir.exists("file").unwrap());

        io::Write::write_all(&mut dir.create_new(".file.part").unwrap(), b"partial").unwrap();
        let err = dir.create_new(".file.part").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let mut resumed = dir.open_existing_rw(".file.part").unwrap();
        assert_eq!(read(resumed.try_clone().unwrap()), "partial");
        io::Write::write_all(&mut resumed, b" done").unwrap();

        dir.link_no_clobber(".file.part", "file").unwrap();
        assert_eq!(fs::read(f.share.join("d/file")).unwrap(), b"partial done");
        for taken in ["file", "link", "dangling"] {
            let err = dir.link_no_clobber(".file.part", taken).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{taken}");
        }
        dir.remove(".file.part").unwrap();
        assert!(!dir.exists(".file.part").unwrap());
        dir.rename("file", "renamed").unwrap();
        assert!(dir.exists("renamed").unwrap());
        dir.sync().unwrap();

        fs::create_dir(f.share.join("d/sub")).unwrap();
        let err = dir.open_existing_rw("sub").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::IsADirectory, "{err}");
        let fifo = CString::new(f.share.join("d/fifo").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let err = dir.open_existing_rw("fifo").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        for bad in ["", ".", "..", "a/b", "/x", "nul\0"] {
            let err = dir.create_new(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            assert_eq!(dir.exists(bad).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            assert!(dir.link_no_clobber("renamed", bad).is_err(), "{bad:?}");
        }
    }

    /// How many times the attacker swaps the directory for a symlink and back.
    const SWAPS: usize = 20_000;
    /// Upper bound on the opens the reader tries while the attacker runs.
    const MAX_OPENS: usize = 1_000_000;

    /// Swaps `d` (a real directory holding `f` = "inside") with a symlink to a directory holding
    /// `f` = "SECRET" while `open` keeps opening `d/f`; the secret must never be read.
    fn race(open: Opener) {
        let f = Fixture::new();
        f.write("d/f", b"inside");
        symlink(&f.outside, f.share.join("link")).unwrap();
        let done = AtomicBool::new(false);
        let (mut inside, mut refused) = (0usize, 0usize);
        thread::scope(|scope| {
            scope.spawn(|| {
                let (d, away, link) = (f.share.join("d"), f.share.join("away"), f.share.join("link"));
                for _ in 0..SWAPS {
                    fs::rename(&d, &away).unwrap();
                    fs::rename(&link, &d).unwrap();
                    fs::rename(&d, &link).unwrap();
                    fs::rename(&away, &d).unwrap();
                }
                done.store(true, Ordering::Relaxed);
            });
            for _ in 0..MAX_OPENS {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                match open(&f, "d/f") {
                    Ok(file) => {
                        let content = read(file);
                        assert_ne!(content, "SECRET", "read a file outside the share");
                        assert_eq!(content, "inside");
                        inside += 1;
                    }
                    Err(NameError::Outside { .. } | NameError::NotFound { .. }) => refused += 1,
                    Err(e) => panic!("unexpected error: {e:?}"),
                }
            }
        });
        eprintln!("race: {inside} opens read the file inside, {refused} were refused");
        assert!(inside > 0, "no open succeeded, so the race proved nothing");
    }

    #[test]
    fn race_with_openat2_never_reads_outside() {
        race(Fixture::open);
    }

    #[test]
    fn race_with_the_walk_never_reads_outside() {
        race(Fixture::walk);
    }
}
