//! Folders and globs as download targets: `photos/` (every file under the shared folder,
//! recursively) and `photos/*.jpg` (the listed paths a glob matches), turned into one [`Job`]
//! per file, each with its content id, size and the holders that listed it.
//!
//! The layout under the output directory follows `scp -r` and `cp`: `photos/` lands in
//! `OUT/photos/...` (the folder's last component is kept), `photos/**/*.jpg` in `OUT/...` relative
//! to `photos` (the part before the first component with a wildcard). Every local path is a
//! suffix of a listed path that passed the name check ([`shoal_index::check_name`]: no `..`, not
//! absolute, nothing hidden), joined to the output directory, so a listing cannot lead a write
//! outside it.
//!
//! Globs: `*` matches within one path component, `**` across components, `?` one character
//! other than `/`, `[abc]`, `[a-z]` and `[!a-z]` (or `[^a-z]`) one character of a class. The
//! match is case-sensitive and over the whole path in the share.

use std::path::{Path, PathBuf};

use shoal_index::{ContentId, check_name};

use crate::discovery::listing::{ListedFile, Merge, list_on_peers, merge};
use crate::engine::Job;
use crate::net::Client;
use crate::proto::calls::folder_name;

/// A target that names many files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every file under a folder (its share name, no trailing `/`; empty: the whole share).
    Folder(String),
    /// The files under `base` whose whole path matches `pattern`.
    Glob { base: String, pattern: String },
}

/// Why a folder or glob could not be turned into jobs.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("{0:?} is not a name in a share: {1}")]
    Name(String, String),
    #[error("listing {0} needs peers: give --peer URL (or --peers-file, or a state directory that knows some)")]
    NoPeers(String),
    #[error("no peer lists any file for {what} (asked {asked}){reasons}")]
    Nothing { what: String, asked: usize, reasons: String },
    #[error("{what}: {detail}; nothing was fetched (name the peers to trust with --peer)")]
    Disagree { what: String, detail: String },
}

/// True when `target` names many files: it ends with `/` or holds a wildcard (`*`, `?`, `[`),
/// and is not a URL.
pub fn is_selection(target: &str) -> bool {
    !(target.starts_with("http://") || target.starts_with("https://")) && (target.ends_with('/') || target.contains(['*', '?', '[']))
}

impl Selection {
    /// Reads a target that [`is_selection`]: a folder (`photos/`, `/` for the whole share) or a
    /// glob.
    pub fn parse(target: &str) -> Result<Selection, FolderError> {
        let bad = |e: &dyn std::fmt::Display| FolderError::Name(target.to_string(), e.to_string());
        if !target.contains(['*', '?', '[']) {
            let folder = folder_name(target);
            if !folder.is_empty() {
                check_name(folder).map_err(|e| bad(&e))?;
            }
            return Ok(Selection::Folder(folder.to_string()));
        }
        let pattern = target.trim_start_matches('/');
        let components: Vec<&str> = pattern.split('/').collect();
        let fixed = components.iter().take_while(|c| !c.contains(['*', '?', '['])).count();
        let base = components[..fixed].join("/");
        if !base.is_empty() {
            check_name(&base).map_err(|e| bad(&e))?;
        }
        Ok(Selection::Glob {
            base,
            pattern: pattern.to_string(),
        })
    }

    /// The folder to list.
    pub fn folder(&self) -> &str {
        match self {
            Selection::Folder(folder) => folder,
            Selection::Glob { base, .. } => base,
        }
    }

    /// The part of a listed path that is not reproduced under the output directory.
    fn dropped_prefix(&self) -> &str {
        match self {
            Selection::Folder(folder) => folder.rsplit_once('/').map_or("", |(parent, _)| parent),
            Selection::Glob { base, .. } => base,
        }
    }

    /// True when a listed path is one of the selected files.
    pub fn selects(&self, path: &str) -> bool {
        match self {
            Selection::Folder(_) => true,
            Selection::Glob { pattern, .. } => glob_matches(pattern.as_bytes(), path.as_bytes()),
        }
    }

    /// Where a listed path goes below the output directory (`keep_full_path`: its whole share
    /// name, as a node's `fetch` keeps it). Always a checked relative name.
    pub fn local_name<'a>(&self, path: &'a str, keep_full_path: bool) -> Option<&'a str> {
        let prefix = self.dropped_prefix();
        let relative = if keep_full_path || prefix.is_empty() {
            path
        } else {
            path.strip_prefix(prefix)?.strip_prefix('/')?
        };
        check_name(relative).ok().map(|_| relative)
    }
}

/// Lists `selection` on `peers` (all named by the owner) and makes one job per selected file,
/// targets under `out_dir`. Returns the jobs in name order.
pub async fn plan(
    client: &Client,
    peers: &[String],
    selection: &Selection,
    out_dir: &Path,
    keep_full_path: bool,
) -> Result<Vec<Job>, FolderError> {
    plan_tiered(client, &[(peers, Merge::Union)], selection, out_dir, keep_full_path).await
}

/// [`plan`] over tiers of peers, most trusted first (the owner's configured peers, then those
/// learnt from strangers): the first tier whose peers list any selected file is used alone, so
/// that strangers never outvote or add to what the owner's peers list.
pub async fn plan_tiered(
    client: &Client,
    tiers: &[(&[String], Merge)],
    selection: &Selection,
    out_dir: &Path,
    keep_full_path: bool,
) -> Result<Vec<Job>, FolderError> {
    let what = match selection {
        Selection::Folder(folder) if folder.is_empty() => "the whole share".to_string(),
        Selection::Folder(folder) => format!("{folder}/"),
        Selection::Glob { pattern, .. } => pattern.clone(),
    };
    if tiers.iter().all(|(peers, _)| peers.is_empty()) {
        return Err(FolderError::NoPeers(what));
    }
    let out_dir = std::path::absolute(out_dir).unwrap_or_else(|_| out_dir.to_path_buf());
    let (mut asked, mut failures) = (0, Vec::new());
    for (peers, rule) in tiers.iter().filter(|(peers, _)| !peers.is_empty()) {
        let listings = list_on_peers(client, peers, selection.folder()).await;
        asked += peers.len().min(crate::discovery::MAX_FANOUT);
        failures.extend(listings.failures);
        let selected = |path: &str| selection.selects(path) && selection.local_name(path, keep_full_path).is_some();
        let files = merge(listings.listed, *rule, selected).map_err(|detail| FolderError::Disagree {
            what: what.clone(),
            detail,
        })?;
        let jobs: Vec<Job> = files
            .into_iter()
            .filter_map(|file: ListedFile| {
                let local = selection.local_name(&file.path, keep_full_path)?;
                Some(Job {
                    target: out_dir.join(local),
                    name: file.path,
                    id: Some(file.id),
                    size: Some(file.size),
                    peers: file.holders,
                    ..Job::default()
                })
            })
            .collect();
        if !jobs.is_empty() {
            return Ok(jobs);
        }
    }
    let reasons: String = failures.iter().take(3).map(|(peer, error)| format!("; {peer}: {error}")).collect();
    Err(FolderError::Nothing { what, asked, reasons })
}

/// What is at a download's target already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Absent,
    /// A regular file with the expected content id: nothing to fetch.
    Complete,
    /// Something else: a file with other content, a directory or a symlink.
    Different,
}

/// Checks `target` against content `id` by hashing it (blocking: call off the runtime). Beside
/// a complete file, a partial file left by a kill between linking the file and removing its
/// partial name is removed.
pub fn existing(target: &Path, id: Option<ContentId>) -> Existing {
    match std::fs::symlink_metadata(target) {
        Err(_) => Existing::Absent,
        Ok(meta) if !meta.is_file() => Existing::Different,
        Ok(_) => match (id, shoal_index::hash_file(target)) {
            (Some(id), Ok(hashed)) if hashed.id == id => {
                let _ = std::fs::remove_file(crate::engine::part_path(target));
                Existing::Complete
            }
            _ => Existing::Different,
        },
    }
}

/// The directory a selection lands in below `out_dir` (for display: `OUT/photos`).
pub fn landing_dir(selection: &Selection, out_dir: &Path) -> PathBuf {
    match selection {
        Selection::Folder(folder) => match folder.rsplit('/').next() {
            Some(last) if !last.is_empty() => out_dir.join(last),
            _ => out_dir.to_path_buf(),
        },
        Selection::Glob { .. } => out_dir.to_path_buf(),
    }
}

/// Matches a glob (see the module's doc) against a whole path.
///
/// Every step compares a suffix of the pattern with a suffix of the path, so each pair is
/// decided once and remembered: the work is at most pattern × path steps, whatever the stars
/// (a plain backtracking matcher takes exponential time on `*a*a*a*…b` against a long path).
fn glob_matches(pattern: &[u8], path: &[u8]) -> bool {
    let mut memo = vec![None; (pattern.len() + 1) * (path.len() + 1)];
    Glob {
        memo: &mut memo,
        width: path.len() + 1,
    }
    .matches(pattern, path)
}

/// The remembered answers of one [`glob_matches`], keyed by the lengths of the two suffixes.
struct Glob<'a> {
    memo: &'a mut [Option<bool>],
    width: usize,
}

impl Glob<'_> {
    fn matches(&mut self, pattern: &[u8], path: &[u8]) -> bool {
        let key = pattern.len() * self.width + path.len();
        if let Some(known) = self.memo[key] {
            return known;
        }
        let result = match pattern.first() {
            None => path.is_empty(),
            Some(b'*') if pattern.get(1) == Some(&b'*') => {
                // `**/` also matches no directory at all.
                let rest = &pattern[2..];
                rest.strip_prefix(b"/").is_some_and(|after| self.matches(after, path))
                    || (0..=path.len()).any(|i| self.matches(rest, &path[i..]))
            }
            Some(b'*') => {
                let rest = &pattern[1..];
                let run = path.iter().position(|b| *b == b'/').unwrap_or(path.len());
                (0..=run).any(|i| self.matches(rest, &path[i..]))
            }
            Some(b'?') => path.first().is_some_and(|b| *b != b'/') && self.matches(&pattern[1..], &path[1..]),
            Some(b'[') => match (class(&pattern[1..]), path.first()) {
                (Some((members, negated, len)), Some(&c)) => {
                    let hit = members.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                    c != b'/' && hit != negated && self.matches(&pattern[1 + len..], &path[1..])
                }
                // An unclosed `[` is a literal.
                (None, Some(b'[')) => self.matches(&pattern[1..], &path[1..]),
                _ => false,
            },
            Some(&c) => path.first() == Some(&c) && self.matches(&pattern[1..], &path[1..]),
        };
        self.memo[key] = Some(result);
        result
    }
}

/// A character class of a glob: its byte ranges, whether it is negated, and how many bytes of the
/// pattern it took (its `]` included).
type Class = (Vec<(u8, u8)>, bool, usize);

/// Parses a character class after its `[`; `None` when it never closes.
fn class(pattern: &[u8]) -> Option<Class> {
    let negated = matches!(pattern.first(), Some(b'!' | b'^'));
    let mut i = usize::from(negated);
    let mut members = Vec::new();
    let mut first = true;
    while i < pattern.len() {
        let c = pattern[i];
        if c == b']' && !first {
            return Some((members, negated, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|e| *e != b']') {
            members.push((c, pattern[i + 2]));
            i += 3;
        } else {
            members.push((c, c));
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, path: &str, expected: bool) {
        assert_eq!(glob_matches(pattern.as_bytes(), path.as_bytes()), expected, "{pattern} vs {path}");
    }

    #[test]
    fn a_glob_full_of_stars_takes_polynomial_time() {
        // Backtracking alone would try about 10^12 splits here; remembered, a few thousand steps.
        let path = "a".repeat(64);
        check(&"*a".repeat(12), &path, true);
        check(&format!("{}b", "*a".repeat(12)), &path, false);
        check(&format!("{}b", "**a".repeat(12)), &path, false);
    }

    #[test]
    fn globs_match_whole_paths() {
        check("photos/*.jpg", "photos/a.jpg", true);
        check("photos/*.jpg", "photos/sub/a.jpg", false);
        check("photos/*.jpg", "photos/a.jpeg", false);
        check("photos/**/*.jpg", "photos/a.jpg", true);
        check("photos/**/*.jpg", "photos/x/y/a.jpg", true);
        check("photos/**", "photos/x/y/a.jpg", true);
        check("?.txt", "a.txt", true);
        check("?.txt", "ab.txt", false);
        check("d/[ab]*.txt", "d/b1.txt", true);
        check("d/[!ab]*.txt", "d/b1.txt", false);
        check("d/[a-c][0-9]", "d/c7", true);
        check("d/[a-c][0-9]", "d/d7", false);
        check("d/[x", "d/[x", true);
        check("*", "a/b", false);
    }

    #[test]
    fn selections_keep_the_layout_of_scp() {
        let folder = Selection::parse("photos/2024/").unwrap();
        assert_eq!(folder, Selection::Folder("photos/2024".into()));
        assert_eq!(folder.local_name("photos/2024/x/a.jpg", false), Some("2024/x/a.jpg"));
        assert_eq!(folder.local_name("photos/2024/x/a.jpg", true), Some("photos/2024/x/a.jpg"));
        assert_eq!(landing_dir(&folder, Path::new("/out")), PathBuf::from("/out/2024"));
        let all = Selection::parse("/").unwrap();
        assert_eq!(all.local_name("a/b", false), Some("a/b"));
        let glob = Selection::parse("photos/*/*.jpg").unwrap();
        assert_eq!(glob.folder(), "photos");
        assert!(glob.selects("photos/x/a.jpg") && !glob.selects("photos/a.jpg"));
        assert_eq!(glob.local_name("photos/x/a.jpg", false), Some("x/a.jpg"));
        assert!(Selection::parse("../*").is_err());
        assert!(Selection::parse(".hidden/").is_err());
        assert!(is_selection("photos/") && is_selection("*.jpg") && !is_selection("a.txt"));
        assert!(!is_selection("http://m/dir/"));
    }
}
