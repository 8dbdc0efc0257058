//! Name checking: `check_name` never panics; a name it accepts has no `.`/`..` component, no
//! leading `/`, no backslash, no NUL; and `resolve_new` of an accepted name under a temporary
//! root never gives a path outside that root.

#![no_main]

use std::path::{Component, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// One root for the whole run (with a subdirectory, a file and a symlink out, so resolution has
/// something to walk), kept for the life of the process.
fn root() -> &'static (tempfile::TempDir, PathBuf) {
    static ROOT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let root = dir.path().join("share");
        std::fs::create_dir_all(root.join("sub/deeper")).expect("share directories");
        std::fs::write(root.join("sub/file"), b"x").expect("a file");
        std::fs::create_dir_all(dir.path().join("outside")).expect("outside directory");
        let _ = std::os::unix::fs::symlink(dir.path().join("outside"), root.join("out"));
        let canonical = root.canonicalize().expect("canonical root");
        (dir, canonical)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(safe) = shoal_index::check_name(raw) else { return };
    let name = safe.as_str();
    assert_eq!(name, raw, "an accepted name is returned unchanged");
    assert!(!name.starts_with('/'), "accepted an absolute name {name:?}");
    assert!(!name.contains('\\'), "accepted a backslash in {name:?}");
    assert!(!name.contains('\0'), "accepted a NUL in {name:?}");
    assert!(
        !name.split('/').any(|c| c == ".." || c == "." || c.is_empty()),
        "accepted a dot or empty component in {name:?}"
    );
    let (_, root) = root();
    if let Ok(path) = safe.resolve_new(root) {
        assert!(path.starts_with(root), "{name:?} resolved to {path:?}, outside {root:?}");
        let below = path.strip_prefix(root).expect("checked above");
        assert!(
            below.components().all(|c| matches!(c, Component::Normal(_))),
            "{name:?} resolved to {path:?} with a non-plain component"
        );
    }
});
