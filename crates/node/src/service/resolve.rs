//! Turning what a user typed into a [`Job`]: file names and content ids are searched across the
//! known peers (`shoal.search`), http and https URLs are mirrors, and all of them may be mixed (a
//! content id found on peers plus mirrors of the same bytes is the P2SP case).
//!
//! Each mirror is asked once (`HEAD`) before the download: its redirects are followed here, so
//! that the engine's range requests go straight to the final URL (unless that is on another
//! origin and the user gave this one credentials or headers, which never go there), and a mirror that can never
//! work (a certificate that is not trusted, a redirect from https down to http) is named in one
//! line before anything is written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_index::ContentId;

use crate::discovery::{Match, search_peers};
use crate::engine::Job;
use crate::net::Client;

/// What one TARGET argument is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Name(String),
    Id(ContentId),
    Url(String),
}

/// Classifies a TARGET argument.
pub fn classify(raw: &str) -> Target {
    if raw.starts_with("http://") || raw.starts_with("https://") {
        Target::Url(raw.to_string())
    } else if let Ok(id) = raw.parse::<ContentId>() {
        Target::Id(id)
    } else {
        Target::Name(raw.to_string())
    }
}

/// Why targets could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no peer has {0} (asked {1} peers)")]
    NotFound(String, usize),
    #[error("{name} has several versions in the network; pick one with --hash: {ids}")]
    Ambiguous { name: String, ids: String },
    #[error("the targets name different files: {0}")]
    Conflict(String),
    #[error("give at least one target: a file name, a content id or URLs")]
    Empty,
    #[error("{0}")]
    Mirrors(String),
}

/// Time allowed for the `HEAD` that follows a mirror's redirects.
const MIRROR_CHECK: Duration = Duration::from_secs(15);

/// What the `HEAD` of a mirror found.
enum Checked {
    /// Use this URL: the final one after redirects (with the user's credentials when it is on
    /// the same origin, or with `--location-trusted`), or the one given when the redirects led
    /// to another origin and the user gave credentials or headers for this one.
    Use(String),
    /// This mirror can never serve the file; the reason, for the user.
    Unusable(String),
}

/// Follows a mirror's redirects with one `HEAD`. Failures that may pass (a refused connection,
/// a server that answers `HEAD` badly) keep the URL as given; the engine retries those.
async fn check_mirror(client: &Client, raw: &str) -> Checked {
    let shown = crate::proto::url::without_credentials(raw);
    let Ok(url) = reqwest::Url::parse(raw) else {
        return Checked::Unusable(format!("{shown}: not a valid URL"));
    };
    let request = match client.request(reqwest::Method::HEAD, &url, crate::net::Trust::Owner) {
        Ok(request) => request.timeout(MIRROR_CHECK),
        Err(e) => return Checked::Unusable(format!("{shown}: {e}")),
    };
    match request.send().await {
        Ok(response) => {
            let mut last = response.url().clone();
            let credentials = !url.username().is_empty() || url.password().is_some();
            if last.origin() == url.origin() || client.location_trusted() {
                let _ = last.set_username(url.username());
                let _ = last.set_password(url.password());
            } else if credentials || client.keeps_headers_to_origin() {
                // What the user gave this mirror (credentials, --header) belongs to its origin:
                // the mirror stays the URL given, and each request follows the redirect to the
                // other origin without them, rather than going there straight with them.
                return Checked::Use(raw.to_string());
            }
            Checked::Use(last.to_string())
        }
        Err(e) => {
            if let Some(tls) = crate::net::tls_failure(&e) {
                Checked::Unusable(format!("{}: {tls}", crate::proto::url::redact(raw)))
            } else if e.is_redirect() {
                Checked::Unusable(format!("{shown}: {}", crate::net::describe(&e)))
            } else {
                Checked::Use(raw.to_string())
            }
        }
    }
}

/// The file name a URL points at.
fn url_file_name(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    let last = url.path_segments()?.next_back()?.to_string();
    let decoded = percent_decode(&last);
    (!decoded.is_empty() && !decoded.starts_with('.') && !decoded.contains(['/', '\\', '\0'])).then_some(decoded)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Builds the job for `targets`. `output` is a file path, or a directory to put the file in
/// (default: the current directory).
pub async fn resolve(
    client: &Client,
    peers: &[String],
    targets: &[String],
    hash: Option<ContentId>,
    output: Option<&Path>,
) -> Result<Job, ResolveError> {
    if targets.is_empty() {
        return Err(ResolveError::Empty);
    }
    let mut job = Job {
        id: hash,
        ..Job::default()
    };
    let mut name: Option<String> = None;
    let deadline = Duration::from_secs(10);
    for target in targets {
        match classify(target) {
            Target::Url(url) => {
                if name.is_none() {
                    name = url_file_name(&url);
                }
                job.mirrors.push(url);
            }
            Target::Id(id) => {
                if job.id.is_some_and(|known| known != id) {
                    return Err(ResolveError::Conflict(format!(
                        "{} and {id}",
                        job.id.map(|i| i.to_string()).unwrap_or_default()
                    )));
                }
                job.id = Some(id);
            }
            Target::Name(wanted) => {
                let found: Vec<Match> = search_peers(client, peers, &wanted, deadline)
                    .await
                    .into_iter()
                    .filter(|m| m.name == wanted)
                    .collect();
                let found: Vec<Match> = match job.id {
                    Some(id) => found.into_iter().filter(|m| m.id == id).collect(),
                    None => found,
                };
                match found.as_slice() {
                    [] => return Err(ResolveError::NotFound(wanted, peers.len())),
                    [one] => {
                        job.id = Some(one.id);
                        job.size = Some(one.size);
                        job.peers.extend(one.urls.iter().cloned());
                    }
                    many => {
                        let ids = many.iter().map(|m| m.id.to_string()).collect::<Vec<_>>().join(", ");
                        return Err(ResolveError::Ambiguous { name: wanted, ids });
                    }
                }
                name = Some(wanted);
            }
        }
    }
    // A content id: find who holds it (when no name search did already).
    if let Some(id) = job.id
        && job.peers.is_empty()
        && !peers.is_empty()
    {
        // A hop asks at most MAX_FANOUT peers; holders from an index (the DHT) may be more,
        // so they are asked in a few such groups at once.
        let pattern = id.to_string();
        let groups = peers
            .chunks(crate::discovery::MAX_FANOUT)
            .take(4)
            .map(|group| search_peers(client, group, &pattern, deadline));
        let mut merged = crate::discovery::Merged::default();
        for found in futures_util::future::join_all(groups).await.into_iter().flatten() {
            merged.add(found);
        }
        let found: Vec<Match> = merged.into_sorted().into_iter().filter(|m| m.id == id).collect();
        for m in &found {
            job.size = Some(m.size);
            job.peers.extend(m.urls.iter().cloned());
            if name.is_none() {
                name = m.name.rsplit('/').next().map(String::from);
            }
        }
        if found.is_empty() && job.mirrors.is_empty() {
            return Err(ResolveError::NotFound(id.to_string(), peers.len()));
        }
    }
    job.peers.sort();
    job.peers.dedup();
    if !job.mirrors.is_empty() {
        let checks = futures_util::future::join_all(job.mirrors.iter().map(|m| check_mirror(client, m))).await;
        let mut unusable = Vec::new();
        job.mirrors = checks
            .into_iter()
            .filter_map(|checked| match checked {
                Checked::Use(url) => Some(url),
                Checked::Unusable(reason) => {
                    unusable.push(reason);
                    None
                }
            })
            .collect();
        if job.mirrors.is_empty() && job.peers.is_empty() {
            return Err(ResolveError::Mirrors(unusable.join("; ")));
        }
        for reason in unusable {
            tracing::warn!(%reason, "a mirror is left out");
        }
    }
    let name = name
        .or_else(|| job.id.map(|id| id.to_string()))
        .unwrap_or_else(|| "download".to_string());
    let file_name = name.rsplit('/').next().unwrap_or(&name).to_string();
    job.target = match output {
        Some(path) if path.is_dir() => path.join(&file_name),
        Some(path) => path.to_path_buf(),
        None => PathBuf::from(&file_name),
    };
    // Resume records are keyed by the target: the same file from any working directory.
    job.target = std::path::absolute(&job.target).unwrap_or(job.target);
    job.name = name;
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_classified() {
        let id = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
        assert_eq!(classify(id), Target::Id(id.parse().unwrap()));
        assert_eq!(classify("http://m/x.iso"), Target::Url("http://m/x.iso".into()));
        assert_eq!(classify("notes.txt"), Target::Name("notes.txt".into()));
        assert_eq!(url_file_name("http://m/dir/a%20b.iso?x=1"), Some("a b.iso".into()));
        assert_eq!(url_file_name("http://m/"), None);
        assert_eq!(url_file_name("http://m/.."), None);
    }
}
