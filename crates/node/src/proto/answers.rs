//! Answers on the wire: what `shoal.locate`, `shoal.search`, `shoal.peers` and `shoal.downloads`
//! send, encoded by this node and decoded from peers.
//!
//! Decoding an answer from a peer keeps only what passes every check: a name that
//! [`check_name`] accepts, a size within [`MAX_SIZE`], a well-formed content id, holder URLs
//! that are node base URLs ([`holder`]), deduplicated by `host:port` and capped per match and per
//! answer. An item that fails a check is dropped, not repaired; the rest of the answer stands.

use std::collections::{BTreeMap, HashSet};

use shoal_index::{ContentId, check_name};
use shoal_xmlrpc::Value;

use super::limits::{MAX_HOLDERS_PER_ANSWER, MAX_HOLDERS_PER_MATCH, MAX_MATCHES, MAX_PEERS_PER_ANSWER, MAX_SIZE};
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
}

impl PeerRow {
    pub fn to_value(&self) -> Value {
        let mut f = BTreeMap::new();
        f.insert("url".into(), Value::String(self.url.clone()));
        f.insert("kind".into(), Value::String(self.kind.clone()));
        f.insert("failures".into(), shoal_xmlrpc::size_value(u64::from(self.failures)));
        f.insert("backing_off".into(), Value::Boolean(self.backing_off));
        f.insert("learnt".into(), Value::Boolean(self.learnt));
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
