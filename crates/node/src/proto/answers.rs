//! Answers on the wire: what `shoal.locate`, `shoal.search`, `shoal.list_folder`, `shoal.peers`
//! and `shoal.downloads` send, encoded by this node and decoded from peers.
//!
//! Decoding an answer from a peer keeps only what passes every check: a name that
//! [`check_name`] accepts, a size within [`MAX_SIZE`], a well-formed content id, holder URLs
//! that are node base URLs ([`holder`]), deduplicated by `host:port` and capped per match and per
//! answer. An item that fails a check is dropped, not repaired; the rest of the answer stands.

use std::collections::{BTreeMap, HashSet};

use shoal_index::{ContentId, check_name};
use shoal_xmlrpc::Value;

use super::limits::{
    LIST_ANSWER_BYTES, MAX_HOLDERS_PER_ANSWER, MAX_HOLDERS_PER_MATCH, MAX_LIST_ENTRIES, MAX_MATCHES, MAX_PEERS_PER_ANSWER, MAX_SIZE,
};
use super::url::{holder, host_port};

/// `shoal.locate`'s answer: where a file is (or, forwarded from a seed node, its content).
#[derive(Debug, Clone, PartialEq)]
pub struct LocateAnswer {
    /// Base URL of the node that holds the file.
    pub holder: String,
    pub name: String,
    pub size: u64,
    /// The content id, when the holder is a shoal node.
    pub id: Option<ContentId>,
    /// The content itself, when it came from a seed node's `query`.
    pub content: Option<Vec<u8>>,
}

/// One match of `shoal.search`.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchMatch {
    pub name: String,
    pub size: u64,
    pub id: ContentId,
    /// Base URLs of nodes that hold it.
    pub holders: Vec<String>,
}

fn text(fields: &BTreeMap<String, Value>, key: &str) -> Option<String> {
    match fields.get(key)? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn size(fields: &BTreeMap<String, Value>) -> Option<u64> {
    let n = fields.get("size").and_then(shoal_xmlrpc::as_i64)?;
    u64::try_from(n).ok().filter(|n| *n <= MAX_SIZE)
}

fn checked_name(fields: &BTreeMap<String, Value>) -> Option<String> {
    let name = text(fields, "name")?;
    check_name(&name).ok().map(|n| n.as_str().to_string())
}

impl LocateAnswer {
    pub fn to_value(&self) -> Value {
        let mut fields = BTreeMap::new();
        fields.insert("url".into(), Value::String(self.holder.clone()));
        fields.insert("name".into(), Value::String(self.name.clone()));
        fields.insert("size".into(), shoal_xmlrpc::size_value(self.size));
        if let Some(id) = self.id {
            fields.insert("id".into(), Value::String(id.to_string()));
        }
        if let Some(content) = &self.content {
            fields.insert("content".into(), Value::Base64(content.clone()));
        }
        Value::Struct(fields)
    }

    /// Reads a peer's answer; `None` when any field fails its check. Content, when present,
    /// must be exactly `size` bytes and at most `max_content`.
    pub fn from_value(value: Value, max_content: u64) -> Option<LocateAnswer> {
        let Value::Struct(fields) = value else { return None };
        let size = size(&fields)?;
        let content = match fields.get("content") {
            None => None,
            Some(value) => {
                let bytes = shoal_xmlrpc::content_bytes(value.clone())?;
                if bytes.len() as u64 != size || size > max_content {
                    return None;
                }
                Some(bytes)
            }
        };
        let id = match text(&fields, "id") {
            Some(id) => Some(id.parse().ok()?),
            None => None,
        };
        if id.is_none() && content.is_none() {
            return None;
        }
        Some(LocateAnswer {
            holder: holder(&text(&fields, "url")?).ok()?,
            name: checked_name(&fields)?,
            size,
            id,
            content,
        })
    }
}

impl SearchMatch {
    pub fn to_value(&self) -> Value {
        let mut fields = BTreeMap::new();
        fields.insert("name".into(), Value::String(self.name.clone()));
        fields.insert("size".into(), shoal_xmlrpc::size_value(self.size));
        fields.insert("id".into(), Value::String(self.id.to_string()));
        fields.insert(
            "urls".into(),
            Value::Array(self.holders.iter().cloned().map(Value::String).collect()),
        );
        Value::Struct(fields)
    }
}

/// Reads a peer's `shoal.search` answer: at most [`MAX_MATCHES`] matches, each with at most
/// [`MAX_HOLDERS_PER_MATCH`] distinct holders (by `host:port`), at most
/// [`MAX_HOLDERS_PER_ANSWER`] holders in all. Malformed items are dropped.
pub fn search_answer(value: Value) -> Vec<SearchMatch> {
    let Value::Array(items) = value else { return Vec::new() };
    let mut budget = MAX_HOLDERS_PER_ANSWER;
    let mut out = Vec::new();
    for item in items.into_iter().take(MAX_MATCHES) {
        let Value::Struct(fields) = item else { continue };
        let (Some(name), Some(size), Some(id)) = (
            checked_name(&fields),
            size(&fields),
            text(&fields, "id").and_then(|id| id.parse::<ContentId>().ok()),
        ) else {
            continue;
        };
        let Some(Value::Array(urls)) = fields.get("urls") else { continue };
        let mut seen = HashSet::new();
        let mut holders = Vec::new();
        for url in urls.iter().take(MAX_HOLDERS_PER_MATCH * 4) {
            if holders.len() >= MAX_HOLDERS_PER_MATCH || budget == 0 {
                break;
            }
            let Value::String(url) = url else { continue };
            let Ok(url) = holder(url) else { continue };
            if seen.insert(host_port(&url).to_string()) {
                holders.push(url);
                budget -= 1;
            }
        }
        if !holders.is_empty() {
            out.push(SearchMatch { name, size, id, holders });
        }
    }
    out
}

/// One file of a `shoal.list_folder` page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderEntry {
    /// The file's name in the holder's share (a [`check_name`]-safe relative path).
    pub path: String,
    pub size: u64,
    pub id: ContentId,
}

/// One page of `shoal.list_folder`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FolderPage {
    pub files: Vec<FolderEntry>,
    /// The cursor of the next page (the last path given), when more may follow.
    pub next: Option<String>,
}

/// Bytes of XML one entry may take at most, apart from its escaped path: the struct's tags, the
/// id and the size (measured: about 190; rounded up).
const ENTRY_XML_BYTES: usize = 320;
/// The XML of an answer around its entries, and some room for error in the estimate.
const PAGE_XML_SLACK: usize = 16 << 10;

/// Bytes `path` can take once escaped for XML (`&` as `&amp;`, quotes as `&quot;`: at most six
/// bytes for one).
fn escaped_len(path: &str) -> usize {
    path.len() + path.bytes().filter(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'')).count() * 5
}

impl FolderPage {
    /// A page of `entries` (in name order, as many as the caller read, at most one more than
    /// fits): as many as fit within [`MAX_LIST_ENTRIES`] and [`LIST_ANSWER_BYTES`] of XML, with
    /// `next` set when any were left out or the page is full.
    pub fn fill(entries: impl IntoIterator<Item = FolderEntry>) -> FolderPage {
        let mut page = FolderPage::default();
        let mut bytes = PAGE_XML_SLACK;
        let mut full = false;
        for entry in entries {
            let cost = ENTRY_XML_BYTES + escaped_len(&entry.path);
            if page.files.len() >= MAX_LIST_ENTRIES || bytes + cost > LIST_ANSWER_BYTES {
                full = true;
                break;
            }
            bytes += cost;
            page.files.push(entry);
        }
        if full {
            page.next = page.files.last().map(|e| e.path.clone());
        }
        page
    }

    pub fn to_value(&self) -> Value {
        let files = self
            .files
            .iter()
            .map(|e| {
                let mut f = BTreeMap::new();
                f.insert("path".into(), Value::String(e.path.clone()));
                f.insert("size".into(), shoal_xmlrpc::size_value(e.size));
                f.insert("id".into(), Value::String(e.id.to_string()));
                Value::Struct(f)
            })
            .collect();
        let mut fields = BTreeMap::new();
        fields.insert("files".into(), Value::Array(files));
        if let Some(next) = &self.next {
            fields.insert("next".into(), Value::String(next.clone()));
        }
        Value::Struct(fields)
    }

    /// Reads a peer's page of the folder `folder` (no trailing `/`; empty: the whole share)
    /// asked for after `cursor`. At most [`MAX_LIST_ENTRIES`] entries are read; an entry is
    /// dropped unless its path passes [`check_name`], lies under `folder` and sorts after
    /// `cursor` (so no page can repeat or go back), its id is well formed and its size within
    /// [`MAX_SIZE`]. `next` is kept only when it moves past `cursor` (no endless paging).
    pub fn from_value(value: Value, folder: &str, cursor: &str) -> FolderPage {
        let Value::Struct(mut fields) = value else {
            return FolderPage::default();
        };
        let prefix = if folder.is_empty() { String::new() } else { format!("{folder}/") };
        let items = match fields.remove("files") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let mut files = Vec::new();
        for item in items.into_iter().take(MAX_LIST_ENTRIES) {
            let Value::Struct(f) = item else { continue };
            let (Some(path), Some(size), Some(id)) = (
                text(&f, "path").and_then(|p| check_name(&p).ok()).map(|p| p.as_str().to_string()),
                size(&f),
                text(&f, "id").and_then(|id| id.parse::<ContentId>().ok()),
            ) else {
                continue;
            };
            if !path.starts_with(&prefix) || path.as_str() <= cursor {
                continue;
            }
            files.push(FolderEntry { path, size, id });
        }
        let next = text(&fields, "next").filter(|n| n.as_str() > cursor && n.len() <= shoal_index::name::MAX_NAME_BYTES);
        FolderPage { files, next }
    }
}

/// Reads a peer's `shoal.peers` answer: at most [`MAX_PEERS_PER_ANSWER`] node base URLs.
pub fn peers_answer(value: Value) -> Vec<String> {
    let Value::Array(items) = value else { return Vec::new() };
    items
        .into_iter()
        .take(MAX_PEERS_PER_ANSWER)
        .filter_map(|v| if let Value::String(s) = v { holder(&s).ok() } else { None })
        .collect()
}

/// One source of a download, as `shoal.downloads` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    /// Redacted (no credentials, query or path) unless the owner asked.
    pub url: String,
    pub kind: String,
    pub state: String,
    pub bytes: u64,
    pub bad_pieces: u32,
    pub failures: u32,
    /// Only for the owner.
    pub last_error: Option<String>,
}

/// One download, as `shoal.downloads` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadRow {
    pub name: String,
    /// The local path; only for the owner.
    pub target: Option<String>,
    pub id: Option<String>,
    pub size: u64,
    pub done: u64,
    pub live_sources: u64,
    pub sources: Vec<SourceRow>,
    /// `running`, `done`, `failed` or `paused`.
    pub state: String,
    /// Why it failed; only for the owner.
    pub detail: Option<String>,
}

impl DownloadRow {
    pub fn to_value(&self) -> Value {
        let mut fields = BTreeMap::new();
        fields.insert("name".into(), Value::String(self.name.clone()));
        if let Some(target) = &self.target {
            fields.insert("target".into(), Value::String(target.clone()));
        }
        if let Some(id) = &self.id {
            fields.insert("id".into(), Value::String(id.clone()));
        }
        fields.insert("size".into(), shoal_xmlrpc::size_value(self.size));
        fields.insert("done".into(), shoal_xmlrpc::size_value(self.done));
        fields.insert("live_sources".into(), shoal_xmlrpc::size_value(self.live_sources));
        let sources = self
            .sources
            .iter()
            .map(|s| {
                let mut f = BTreeMap::new();
                f.insert("url".into(), Value::String(s.url.clone()));
                f.insert("kind".into(), Value::String(s.kind.clone()));
                f.insert("state".into(), Value::String(s.state.clone()));
                f.insert("bytes".into(), shoal_xmlrpc::size_value(s.bytes));
                f.insert("bad_pieces".into(), shoal_xmlrpc::size_value(u64::from(s.bad_pieces)));
                f.insert("failures".into(), shoal_xmlrpc::size_value(u64::from(s.failures)));
                if let Some(error) = &s.last_error {
                    f.insert("last_error".into(), Value::String(error.clone()));
                }
                Value::Struct(f)
            })
            .collect();
        fields.insert("sources".into(), Value::Array(sources));
        let mut status = BTreeMap::new();
        status.insert("state".into(), Value::String(self.state.clone()));
        if let Some(detail) = &self.detail {
            status.insert("detail".into(), Value::String(detail.clone()));
        }
        fields.insert("status".into(), Value::Struct(status));
        Value::Struct(fields)
    }
}

/// One row of `shoal.peer_table`.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRow {
    pub url: String,
    pub kind: String,
    pub failures: u32,
    pub backing_off: bool,
    pub learnt: bool,
    /// Found on the LAN.
    pub local: bool,
    /// `direct` or `relay` for a node reached over iroh, empty otherwise.
    pub path: String,
}

impl PeerRow {
    pub fn to_value(&self) -> Value {
        let mut f = BTreeMap::new();
        f.insert("url".into(), Value::String(self.url.clone()));
        f.insert("kind".into(), Value::String(self.kind.clone()));
        f.insert("failures".into(), shoal_xmlrpc::size_value(u64::from(self.failures)));
        f.insert("backing_off".into(), Value::Boolean(self.backing_off));
        f.insert("learnt".into(), Value::Boolean(self.learnt));
        f.insert("local".into(), Value::Boolean(self.local));
        f.insert("path".into(), Value::String(self.path.clone()));
        Value::Struct(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    fn item(name: &str, size: i64, urls: Vec<String>) -> Value {
        let mut f = BTreeMap::new();
        f.insert("name".into(), Value::String(name.into()));
        f.insert("size".into(), Value::Long(size));
        f.insert("id".into(), Value::String(ID.into()));
        f.insert("urls".into(), Value::Array(urls.into_iter().map(Value::String).collect()));
        Value::Struct(f)
    }

    #[test]
    fn lies_are_dropped_at_the_edge() {
        let good = vec!["http://127.0.0.1:1".to_string()];
        let answer = Value::Array(vec![
            item("ok.txt", 5, good.clone()),
            item(".bashrc", 5, good.clone()),
            item("../x", 5, good.clone()),
            item("a\u{1b}[2Jb", 5, good.clone()),
            item("big", 1 << 62, good.clone()),
            item("neg", -1, good.clone()),
            item("nohold", 5, vec!["http://u:p@h:1".into(), "ftp://h".into()]),
        ]);
        let found = search_answer(answer);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].name, "ok.txt");
    }

    #[test]
    fn holders_are_capped_and_deduplicated() {
        let urls: Vec<String> = (0..5000).map(|i| format!("http://10.0.{}.{}:80", i / 250, i % 250)).collect();
        let mut dup = vec!["http://h:1".to_string(), "http://H:1/".to_string(), "http://h:1/RPC2".to_string()];
        dup.extend(urls.clone());
        let found = search_answer(Value::Array(vec![item("a", 1, dup)]));
        assert_eq!(found[0].holders.len(), MAX_HOLDERS_PER_MATCH);
        assert_eq!(found[0].holders[0], "http://h:1");
        assert_ne!(host_port(&found[0].holders[1]), "h:1");
        let many: Vec<Value> = (0..1000)
            .map(|i| item(&format!("f{i}"), 1, urls[i * 5..i * 5 + 5].to_vec()))
            .collect();
        let found = search_answer(Value::Array(many));
        assert!(found.len() <= MAX_MATCHES);
        assert!(found.iter().map(|m| m.holders.len()).sum::<usize>() <= MAX_HOLDERS_PER_ANSWER);
    }

    fn entry(path: &str, size: i64, id: &str) -> Value {
        let mut f = BTreeMap::new();
        f.insert("path".into(), Value::String(path.into()));
        f.insert("size".into(), Value::Long(size));
        f.insert("id".into(), Value::String(id.into()));
        Value::Struct(f)
    }

    #[test]
    fn folder_pages_drop_every_entry_that_fails_a_check() {
        let mut fields = BTreeMap::new();
        fields.insert(
            "files".into(),
            Value::Array(vec![
                entry("photos/a.jpg", 5, ID),
                entry("photos/../etc/passwd", 5, ID),
                entry("/etc/passwd", 5, ID),
                entry("photos/.a.jpg.shoal-part", 5, ID),
                entry("photos/x\u{1b}y", 5, ID),
                entry("elsewhere/b.jpg", 5, ID),
                entry("photos/bad-id", 5, "nothex"),
                entry("photos/huge", 1 << 62, ID),
                entry("photos/neg", -1, ID),
                entry("photos/b.jpg", 7, ID),
                Value::Integer(3),
            ]),
        );
        fields.insert("next".into(), Value::String("photos/b.jpg".into()));
        let page = FolderPage::from_value(Value::Struct(fields.clone()), "photos", "");
        let paths: Vec<&str> = page.files.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["photos/a.jpg", "photos/b.jpg"]);
        assert_eq!(page.next.as_deref(), Some("photos/b.jpg"));
        let later = FolderPage::from_value(Value::Struct(fields), "photos", "photos/b.jpg");
        assert!(later.files.is_empty(), "nothing at or before the cursor: {later:?}");
        assert_eq!(later.next, None, "a next that does not move on ends the paging");
        assert_eq!(FolderPage::from_value(Value::Integer(1), "", ""), FolderPage::default());
    }

    #[test]
    fn a_page_is_bounded_in_entries_and_bytes() {
        let id: ContentId = ID.parse().unwrap();
        let many = (0..3000).map(|i| FolderEntry {
            path: format!("d/{i:05}"),
            size: 1,
            id,
        });
        let page = FolderPage::fill(many);
        assert_eq!(page.files.len(), MAX_LIST_ENTRIES);
        assert_eq!(page.next.as_deref(), Some("d/00999"));
        let long = (0..3000).map(|i| FolderEntry {
            path: format!("{}/{i:05}", "&".repeat(1000)),
            size: 1,
            id,
        });
        let page = FolderPage::fill(long);
        assert!(page.files.len() < MAX_LIST_ENTRIES && page.next.is_some());
        let xml = shoal_xmlrpc::encode_response(page.to_value());
        assert!(xml.len() <= LIST_ANSWER_BYTES, "{} bytes", xml.len());
        let small = FolderPage::fill((0..3).map(|i| FolderEntry {
            path: format!("d/{i}"),
            size: 1,
            id,
        }));
        assert_eq!((small.files.len(), small.next.as_deref()), (3, None));
        let xml = shoal_xmlrpc::encode_response(small.to_value());
        assert!(xml.len() <= PAGE_XML_SLACK + 3 * ENTRY_XML_BYTES, "the estimate holds: {xml}");
    }

    #[test]
    fn locate_answers_are_checked() {
        let hit = LocateAnswer {
            holder: "http://127.0.0.1:9".into(),
            name: "a.txt".into(),
            size: 3,
            id: None,
            content: Some(b"abc".to_vec()),
        };
        assert_eq!(LocateAnswer::from_value(hit.to_value(), 16), Some(hit.clone()));
        let lying = LocateAnswer { size: 4, ..hit.clone() };
        assert_eq!(LocateAnswer::from_value(lying.to_value(), 16), None, "content must match its size");
        assert_eq!(LocateAnswer::from_value(hit.to_value(), 2), None, "content over the cap");
        let hidden = LocateAnswer {
            name: ".ssh/x".into(),
            ..hit
        };
        assert_eq!(LocateAnswer::from_value(hidden.to_value(), 16), None);
    }
}
