//! Checking the file names that callers send.
//!
//! Every name that reaches the index from outside (an HTTP path, an XML-RPC argument, a download
//! target) goes through [`check_name`] first. A [`SafeName`] is a relative path with `/`
//! separators whose components are plain file names: no `.` or `..`, nothing hidden (a leading
//! `.` marks hidden files and our own partial downloads, which are never addressable), no
//! backslashes, no control characters, no invisible or text-direction characters (which make
//! `evil\u{202e}cod.exe` show as `evilexe.doc`), no drive letters, and bounded in length.
//!
//! A syntactically safe name can still lead out of the share through a symlink, so turning a name
//! into a path is a second step: [`SafeName::resolve_existing`] for files we serve and
//! [`SafeName::resolve_new`] for files we are about to write. Names are not percent-decoded here;
//! the HTTP layer decodes exactly once before calling.

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Longest accepted name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// Longest accepted path component, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Why a name was refused or could not be resolved.
///
/// Messages carry the name the caller sent, never a resolved path outside the share.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name {name:?} is absolute")]
    Absolute { name: String },
    #[error("name {name:?} has an empty component")]
    EmptyComponent { name: String },
    #[error("name {name:?} has a `.` or `..` component")]
    DotComponent { name: String },
    #[error("name {name:?} has a hidden component (starting with `.`)")]
    Hidden { name: String },
    #[error("name {name:?} contains a backslash")]
    Backslash { name: String },
    #[error("name {name:?} contains a control character")]
    Control { name: String },
    /// `name` has the offending characters written as `\u{..}` escapes.
    #[error("name \"{name}\" contains an invisible or text-direction character")]
    Invisible { name: String },
    #[error("name {name:?} has a drive letter")]
    DriveLetter { name: String },
    #[error("name is {len} bytes long, more than {MAX_NAME_BYTES}")]
    TooLong { len: usize },
    #[error("name {name:?} has a component longer than {MAX_COMPONENT_BYTES} bytes")]
    ComponentTooLong { name: String },
    #[error("{name:?} is not in the share")]
    NotFound { name: String },
    #[error("{name:?} leads outside the share")]
    Outside { name: String },
    #[error("{name:?} is not a regular file")]
    NotAFile { name: String },
    #[error("a parent of {name:?} is not a directory")]
    NotADirectory { name: String },
    #[error("resolve share root {root}: {source}")]
    Root {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("resolve {name:?}: {step}: {source}")]
    Io {
        name: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A name that passed [`check_name`]: relative, `/`-separated, no dot or hidden components.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SafeName(String);

/// Checks a name sent by a caller and returns it as a [`SafeName`].
pub fn check_name(raw: &str) -> Result<SafeName, NameError> {
    let owned = || raw.to_owned();
    if raw.is_empty() {
        return Err(NameError::Empty);
    }
    if raw.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong { len: raw.len() });
    }
    if raw.chars().any(char::is_control) {
        return Err(NameError::Control { name: owned() });
    }
    if raw.chars().any(is_invisible) {
        let name = raw
            .chars()
            .map(|c| {
                if is_invisible(c) {
                    format!("\\u{{{:x}}}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect();
        return Err(NameError::Invisible { name });
    }
    if raw.contains('\\') {
        return Err(NameError::Backslash { name: owned() });
    }
    if raw.starts_with('/') {
        return Err(NameError::Absolute { name: owned() });
    }
    for component in raw.split('/') {
        if component.is_empty() {
            return Err(NameError::EmptyComponent { name: owned() });
        }
        if component == "." || component == ".." {
            return Err(NameError::DotComponent { name: owned() });
        }
        if component.starts_with('.') {
            return Err(NameError::Hidden { name: owned() });
        }
        if component.len() > MAX_COMPONENT_BYTES {
            return Err(NameError::ComponentTooLong { name: owned() });
        }
        let bytes = component.as_bytes();
        if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
            return Err(NameError::DriveLetter { name: owned() });
        }
    }
    Ok(SafeName(raw.to_owned()))
}

/// Characters that show nothing or change the direction of the text around them: a name with
/// one can look like another name, or hide its extension, in a terminal, a page or a file
/// manager. Zero-width spaces and joiners, direction marks, embeddings, overrides and isolates,
/// line and paragraph separators, the byte order mark, and their invisible relatives.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{061c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}')
}

/// True when a path relative to the share root has a hidden component.
pub(crate) fn has_hidden_component(relative: &Path) -> bool {
    relative.components().any(|c| match c {
        Component::Normal(part) => part.as_encoded_bytes().first() == Some(&b'.'),
        _ => true,
    })
}

/// Checks that `canonical` lies inside `canonical_root` and is not reached through a hidden
/// component (a symlink inside the share must not expose a hidden file or a partial download).
pub(crate) fn is_inside(canonical_root: &Path, canonical: &Path) -> bool {
    match canonical.strip_prefix(canonical_root) {
        Ok(relative) => !has_hidden_component(relative),
        Err(_) => false,
    }
}

impl SafeName {
    /// The name as sent, with `/` separators.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Resolves the name to an existing regular file inside the share rooted at `root`.
    ///
    /// Symlinks are followed, and the result must stay inside the canonical root: a symlink
    /// leading out of the share gives [`NameError::Outside`]; a missing file
    /// [`NameError::NotFound`]. Returns the canonical path.
    pub fn resolve_existing(&self, root: &Path) -> Result<PathBuf, NameError> {
        let canonical_root = canonical_root(root)?;
        let joined = canonical_root.join(&self.0);
        let canonical = match joined.canonicalize() {
            Ok(path) => path,
            // A dangling link answers as a link out of the share would: otherwise where it
            // points could be probed (exists outside: refused; missing: not found).
            Err(e) if is_missing(&e) && dangling_link(&canonical_root, &self.0) => {
                return Err(NameError::Outside { name: self.0.clone() });
            }
            Err(e) if is_missing(&e) => {
                return Err(NameError::NotFound { name: self.0.clone() });
            }
            Err(source) => return Err(self.io("canonicalize", source)),
        };
        if !is_inside(&canonical_root, &canonical) {
            return Err(NameError::Outside { name: self.0.clone() });
        }
        let meta = std::fs::metadata(&canonical).map_err(|e| self.io("stat", e))?;
        if !meta.is_file() {
            return Err(NameError::NotAFile { name: self.0.clone() });
        }
        Ok(canonical)
    }

    /// Resolves the name to a path where a download may be placed.
    ///
    /// The file need not exist, and no directories are created. Every existing component below
    /// the root must be a real directory (not a symlink), and an existing final component must not
    /// be a symlink or a directory. Returns the canonical root joined with the name.
    pub fn resolve_new(&self, root: &Path) -> Result<PathBuf, NameError> {
        let canonical_root = canonical_root(root)?;
        let components: Vec<&str> = self.0.split('/').collect();
        let mut current = canonical_root.clone();
        for (i, component) in components.iter().enumerate() {
            current.push(component);
            let last = i + 1 == components.len();
            let meta = match std::fs::symlink_metadata(&current) {
                Ok(meta) => meta,
                // Nothing further down exists yet, so nothing can be a symlink.
                Err(e) if is_missing(&e) => break,
                Err(source) => return Err(self.io("stat component", source)),
            };
            if meta.file_type().is_symlink() {
                return Err(NameError::Outside { name: self.0.clone() });
            }
            if last {
                if meta.is_dir() {
                    return Err(NameError::NotAFile { name: self.0.clone() });
                }
            } else if !meta.is_dir() {
                return Err(NameError::NotADirectory { name: self.0.clone() });
            }
        }
        Ok(canonical_root.join(&self.0))
    }

    fn io(&self, step: &'static str, source: io::Error) -> NameError {
        NameError::Io {
            name: self.0.clone(),
            step,
            source,
        }
    }
}

impl fmt::Display for SafeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SafeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn canonical_root(root: &Path) -> Result<PathBuf, NameError> {
    root.canonicalize().map_err(|source| NameError::Root {
        root: root.to_owned(),
        source,
    })
}

/// A missing file, or a path that runs through a regular file as if it were a directory.
pub(crate) fn is_missing(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

/// True when some component of `name` below `root` is a symlink whose target is missing.
fn dangling_link(root: &Path, name: &str) -> bool {
    let mut path = root.to_path_buf();
    for component in name.split('/') {
        path.push(component);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => return std::fs::metadata(&path).is_err(),
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn good_names_pass_unchanged() {
        for name in [
            "a",
            "a/b/c.txt",
            "100%.txt",
            "caf\u{e9}/\u{1f600}.mp3",
            "a.b",
            "a./b..",
            "ab:c",
            "notes: 1.txt",
            "with space/and-dash_underscore",
            &"n".repeat(MAX_COMPONENT_BYTES),
        ] {
            let safe = check_name(name).unwrap_or_else(|e| panic!("{name:?} refused: {e}"));
            assert_eq!(safe.as_str(), name);
            assert_eq!(safe.to_string(), name);
        }
    }

    #[test]
    fn bad_spellings_are_refused() {
        let long_component = "x".repeat(MAX_COMPONENT_BYTES + 1);
        let long_name = vec!["abcdefgh"; 120].join("/");
        assert!(long_name.len() > MAX_NAME_BYTES);
        type Expect = fn(&NameError) -> bool;
        let cases: &[(&str, Expect)] = &[
            ("", |e| matches!(e, NameError::Empty)),
            (".", |e| matches!(e, NameError::DotComponent { .. })),
            ("..", |e| matches!(e, NameError::DotComponent { .. })),
            ("../x", |e| matches!(e, NameError::DotComponent { .. })),
            ("a/../../x", |e| matches!(e, NameError::DotComponent { .. })),
            ("a/./b", |e| matches!(e, NameError::DotComponent { .. })),
            ("a/..", |e| matches!(e, NameError::DotComponent { .. })),
            ("/etc/passwd", |e| matches!(e, NameError::Absolute { .. })),
            ("/", |e| matches!(e, NameError::Absolute { .. })),
            ("a\\b", |e| matches!(e, NameError::Backslash { .. })),
            ("..\\x", |e| matches!(e, NameError::Backslash { .. })),
            ("a\0b", |e| matches!(e, NameError::Control { .. })),
            ("a\nb", |e| matches!(e, NameError::Control { .. })),
            ("a\u{7f}b", |e| matches!(e, NameError::Control { .. })),
            ("a\u{85}b", |e| matches!(e, NameError::Control { .. })),
            ("evil\u{202e}cod.exe", |e| matches!(e, NameError::Invisible { .. })),
            ("a\u{2066}b", |e| matches!(e, NameError::Invisible { .. })),
            ("a\u{200b}b", |e| matches!(e, NameError::Invisible { .. })),
            ("a\u{200f}b", |e| matches!(e, NameError::Invisible { .. })),
            ("a\u{2028}b", |e| matches!(e, NameError::Invisible { .. })),
            ("a\u{2029}b", |e| matches!(e, NameError::Invisible { .. })),
            ("\u{feff}a", |e| matches!(e, NameError::Invisible { .. })),
            ("a//b", |e| matches!(e, NameError::EmptyComponent { .. })),
            ("a/", |e| matches!(e, NameError::EmptyComponent { .. })),
            (".hidden", |e| matches!(e, NameError::Hidden { .. })),
            ("a/.b", |e| matches!(e, NameError::Hidden { .. })),
            ("a/.x.shoal-part", |e| matches!(e, NameError::Hidden { .. })),
            ("C:x", |e| matches!(e, NameError::DriveLetter { .. })),
            ("c:", |e| matches!(e, NameError::DriveLetter { .. })),
            ("a/D:/b", |e| matches!(e, NameError::DriveLetter { .. })),
            (&long_component, |e| matches!(e, NameError::ComponentTooLong { .. })),
            (&long_name, |e| matches!(e, NameError::TooLong { .. })),
        ];
        let shown = check_name("evil\u{202e}cod.exe").unwrap_err().to_string();
        assert!(shown.contains("evil\\u{202e}cod.exe") && !shown.contains('\u{202e}'), "{shown}");
        for (raw, expected) in cases {
            match check_name(raw) {
                Ok(safe) => panic!("{raw:?} accepted as {safe}"),
                Err(e) => assert!(expected(&e), "{raw:?} refused for the wrong reason: {e:?}"),
            }
        }
    }

    #[test]
    fn resolve_existing_finds_files_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("share");
        let outside = dir.path().join("outside");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::create_dir_all(root.join(".hidden")).unwrap();
        fs::write(root.join("sub/file.txt"), b"hi").unwrap();
        fs::write(root.join(".hidden/secret"), b"no").unwrap();
        fs::write(outside.join("secret"), b"no").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("outdir")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/file.txt"), root.join("inner")).unwrap();
        std::os::unix::fs::symlink(root.join(".hidden/secret"), root.join("peek")).unwrap();
        std::os::unix::fs::symlink(outside.join("nothing"), root.join("dangling")).unwrap();

        let found = check_name("sub/file.txt").unwrap().resolve_existing(&root).unwrap();
        assert_eq!(fs::read(found).unwrap(), b"hi");
        let inner = check_name("inner").unwrap().resolve_existing(&root).unwrap();
        assert_eq!(fs::read(inner).unwrap(), b"hi");

        for (name, outside_expected) in [
            ("escape", true),
            ("outdir/secret", true),
            ("peek", true),
            ("dangling", true),
            ("dangling/below", true),
            ("missing", false),
            ("sub/missing", false),
            ("sub/file.txt/below", false),
        ] {
            let err = check_name(name).unwrap().resolve_existing(&root).unwrap_err();
            if outside_expected {
                assert!(matches!(err, NameError::Outside { .. }), "{name}: {err:?}");
                let message = err.to_string();
                assert!(!message.contains("outside/"), "{message} leaks the target");
            } else {
                assert!(matches!(err, NameError::NotFound { .. }), "{name}: {err:?}");
            }
        }
        let err = check_name("sub").unwrap().resolve_existing(&root).unwrap_err();
        assert!(matches!(err, NameError::NotAFile { .. }), "{err:?}");
    }

    #[test]
    fn resolve_new_refuses_symlinked_parents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("share");
        let outside = dir.path().join("outside");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(root.join("file"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("outdir")).unwrap();
        std::os::unix::fs::symlink(outside.join("target"), root.join("link")).unwrap();
        let canonical = root.canonicalize().unwrap();

        for name in ["new.bin", "sub/new.bin", "sub/deeper/new.bin", "file"] {
            let path = check_name(name).unwrap().resolve_new(&root).unwrap();
            assert_eq!(path, canonical.join(name));
        }
        for name in ["outdir/new.bin", "outdir/a/b", "link"] {
            let err = check_name(name).unwrap().resolve_new(&root).unwrap_err();
            assert!(matches!(err, NameError::Outside { .. }), "{name}: {err:?}");
        }
        let err = check_name("file/below").unwrap().resolve_new(&root).unwrap_err();
        assert!(matches!(err, NameError::NotADirectory { .. }), "{err:?}");
        let err = check_name("sub").unwrap().resolve_new(&root).unwrap_err();
        assert!(matches!(err, NameError::NotAFile { .. }), "{err:?}");
    }
}
