//! `shoal.downloads([secret]) -> [{name, size, done, live_sources, sources, status}]`: the
//! node's downloads and their progress. With the secret, the owner's view: each download's local
//! path, full source URLs and errors; without it a redacted one (no paths, source URLs without
//! credentials, query or path, no error texts).
//!
//! The rows are also the JSON API's (`GET /api/v1/downloads` and its event stream, owner only),
//! which has another shape: `state` and `detail` beside the other fields rather than in
//! `status`, a `speed` per download and per source, no `live_sources` and no `failures`. One
//! type serves both: `to_value` writes the XML-RPC shape, `serde::Serialize` the JSON one.

use std::collections::BTreeMap;

use serde::Serialize;
use shoal_xmlrpc::Value;

use super::{BadCall, Call, MAX_SECRET, MAX_TEXT, Params, count, text};
use crate::proto::limits::MAX_SIZE;

/// Most downloads read from one answer (a folder of 100,000 files is 100,000 rows).
pub const MAX_DOWNLOAD_ROWS: usize = 200_000;
/// Most sources read per download.
pub const MAX_SOURCES_PER_ROW: usize = 1024;
/// Longest state or kind word read.
const MAX_WORD: usize = 32;

/// `shoal.downloads([secret])`: with the secret the owner's full view, without it a redacted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloads {
    pub secret: Option<String>,
}

impl Downloads {
    pub const METHOD: &'static str = "shoal.downloads";
}

impl Call for Downloads {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(mut p: Params) -> Result<Self, BadCall> {
        let secret = p.optional_string("secret", MAX_SECRET)?;
        p.done()?;
        Ok(Downloads { secret })
    }

    fn encode(&self) -> Vec<Value> {
        self.secret.iter().cloned().map(Value::String).collect()
    }
}

/// One source of a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceRow {
    /// Redacted (no credentials, query or path) unless the owner asked.
    pub url: String,
    /// `peer` or `mirror`.
    pub kind: String,
    pub state: String,
    /// Verified bytes it sent.
    pub bytes: u64,
    /// Bytes per second over the last interval (JSON event streams only; 0 elsewhere).
    pub speed: u64,
    pub bad_pieces: u32,
    /// XML-RPC only.
    #[serde(skip)]
    pub failures: u32,
    /// Only for the owner.
    pub last_error: Option<String>,
    /// Pieces it holds, when it holds only part of the file (another downloader in the swarm);
    /// absent: the whole file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pieces: Option<u64>,
}

/// Bytes of a download's content this node sent to one other downloader (the swarm).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadRow {
    /// The downloader: its node URL, or its address.
    pub peer: String,
    pub bytes: u64,
}

/// Most upload rows read per download.
pub const MAX_UPLOADS_PER_ROW: usize = 1024;

/// One download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownloadRow {
    pub name: String,
    /// The local path; only for the owner.
    pub target: Option<String>,
    pub id: Option<String>,
    pub size: u64,
    pub done: u64,
    /// XML-RPC only.
    #[serde(skip)]
    pub live_sources: u64,
    /// `running`, `done`, `failed` or `paused` (`service::downloads::Status::name`).
    pub state: String,
    /// Why it failed; only for the owner (others see `failed`).
    pub detail: Option<String>,
    /// Bytes per second over the last interval (JSON only; 0 elsewhere).
    pub speed: u64,
    pub sources: Vec<SourceRow>,
    /// What this node sent of the same content to other downloaders (the owner's view only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uploads: Vec<UploadRow>,
}

impl SourceRow {
    pub fn to_value(&self) -> Value {
        let mut f = BTreeMap::new();
        f.insert("url".into(), Value::String(self.url.clone()));
        f.insert("kind".into(), Value::String(self.kind.clone()));
        f.insert("state".into(), Value::String(self.state.clone()));
        f.insert("bytes".into(), shoal_xmlrpc::size_value(self.bytes));
        f.insert("bad_pieces".into(), shoal_xmlrpc::size_value(u64::from(self.bad_pieces)));
        f.insert("failures".into(), shoal_xmlrpc::size_value(u64::from(self.failures)));
        if let Some(error) = &self.last_error {
            f.insert("last_error".into(), Value::String(error.clone()));
        }
        if let Some(pieces) = self.pieces {
            f.insert("pieces".into(), shoal_xmlrpc::size_value(pieces));
        }
        Value::Struct(f)
    }

    /// Reads one source of a node's answer; `None` when a field fails its check.
    pub fn from_value(value: &Value) -> Option<SourceRow> {
        let Value::Struct(f) = value else { return None };
        Some(SourceRow {
            url: text(f, "url", MAX_TEXT)?,
            kind: text(f, "kind", MAX_WORD)?,
            state: text(f, "state", MAX_WORD)?,
            bytes: count(f, "bytes", MAX_SIZE)?,
            speed: 0,
            bad_pieces: small(f, "bad_pieces")?,
            failures: small(f, "failures")?,
            last_error: optional_text(f, "last_error", MAX_TEXT)?,
            pieces: match f.get("pieces") {
                None => None,
                Some(_) => Some(count(f, "pieces", MAX_SIZE)?),
            },
        })
    }
}

impl UploadRow {
    fn to_value(&self) -> Value {
        let mut f = BTreeMap::new();
        f.insert("peer".into(), Value::String(self.peer.clone()));
        f.insert("bytes".into(), shoal_xmlrpc::size_value(self.bytes));
        Value::Struct(f)
    }

    fn from_value(value: &Value) -> Option<UploadRow> {
        let Value::Struct(f) = value else { return None };
        Some(UploadRow {
            peer: text(f, "peer", MAX_TEXT)?,
            bytes: count(f, "bytes", u64::MAX >> 1)?,
        })
    }
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
        let sources = self.sources.iter().map(SourceRow::to_value).collect();
        fields.insert("sources".into(), Value::Array(sources));
        let mut status = BTreeMap::new();
        status.insert("state".into(), Value::String(self.state.clone()));
        if let Some(detail) = &self.detail {
            status.insert("detail".into(), Value::String(detail.clone()));
        }
        fields.insert("status".into(), Value::Struct(status));
        if !self.uploads.is_empty() {
            let uploads = self.uploads.iter().map(UploadRow::to_value).collect();
            fields.insert("uploads".into(), Value::Array(uploads));
        }
        Value::Struct(fields)
    }

    /// Reads one download of a node's answer; `None` when a field fails its check. At most
    /// [`MAX_SOURCES_PER_ROW`] sources are read; a source that fails a check is dropped.
    pub fn from_value(value: &Value) -> Option<DownloadRow> {
        let Value::Struct(f) = value else { return None };
        let Some(Value::Struct(status)) = f.get("status") else {
            return None;
        };
        let sources = match f.get("sources") {
            Some(Value::Array(items)) => items.iter().take(MAX_SOURCES_PER_ROW).filter_map(SourceRow::from_value).collect(),
            _ => return None,
        };
        Some(DownloadRow {
            name: text(f, "name", MAX_TEXT)?,
            target: optional_text(f, "target", MAX_TEXT)?,
            id: optional_text(f, "id", MAX_TEXT)?,
            size: count(f, "size", MAX_SIZE)?,
            done: count(f, "done", MAX_SIZE)?,
            live_sources: count(f, "live_sources", u64::from(u32::MAX))?,
            state: text(status, "state", MAX_WORD)?,
            detail: optional_text(status, "detail", MAX_TEXT)?,
            speed: 0,
            sources,
            uploads: match f.get("uploads") {
                Some(Value::Array(items)) => items.iter().take(MAX_UPLOADS_PER_ROW).filter_map(UploadRow::from_value).collect(),
                _ => Vec::new(),
            },
        })
    }
}

/// A count that fits in 32 bits.
fn small(fields: &BTreeMap<String, Value>, key: &str) -> Option<u32> {
    count(fields, key, u64::from(u32::MAX)).map(|n| n as u32)
}

/// A string field that may be absent: `Some(None)` when it is, `None` when it is there but
/// does not fit.
fn optional_text(fields: &BTreeMap<String, Value>, key: &str, max: usize) -> Option<Option<String>> {
    match fields.get(key) {
        None => Some(None),
        Some(_) => text(fields, key, max).map(Some),
    }
}

/// `shoal.downloads`' answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DownloadRows(pub Vec<DownloadRow>);

impl DownloadRows {
    pub fn to_value(&self) -> Value {
        Value::Array(self.0.iter().map(DownloadRow::to_value).collect())
    }

    /// Reads a node's answer: at most [`MAX_DOWNLOAD_ROWS`] rows; a row that fails a check is
    /// dropped.
    pub fn from_value(value: Value) -> DownloadRows {
        let Value::Array(items) = value else {
            return DownloadRows::default();
        };
        DownloadRows(items.iter().take(MAX_DOWNLOAD_ROWS).filter_map(DownloadRow::from_value).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    fn row(owner: bool) -> DownloadRow {
        DownloadRow {
            name: "a.iso".into(),
            target: owner.then(|| "/srv/share/a.iso".to_string()),
            id: Some("af13".into()),
            size: 5 << 30,
            done: 1 << 20,
            live_sources: 1,
            state: "failed".into(),
            detail: Some(if owner { "every source failed" } else { "failed" }.into()),
            speed: 0,
            sources: vec![SourceRow {
                url: "http://127.0.0.1:1/content/af13".into(),
                kind: "peer".into(),
                state: "live".into(),
                bytes: 1 << 20,
                speed: 0,
                bad_pieces: 2,
                failures: 3,
                last_error: owner.then(|| "refused".to_string()),
                pieces: None,
            }],
            uploads: Vec::new(),
        }
    }

    #[test]
    fn a_swarm_row_round_trips_with_its_pieces_and_uploads() {
        let mut swarm = row(true);
        swarm.sources[0].pieces = Some(7);
        swarm.uploads = vec![UploadRow {
            peer: "http://127.0.0.1:2".into(),
            bytes: 3 << 20,
        }];
        assert_eq!(
            DownloadRows::from_value(DownloadRows(vec![swarm.clone()]).to_value()).0,
            vec![swarm.clone()]
        );
        let json = serde_json::to_value(&swarm).unwrap();
        assert_eq!(json["sources"][0]["pieces"], 7);
        assert_eq!(json["uploads"][0]["peer"], "http://127.0.0.1:2");
    }

    #[test]
    fn downloads_round_trip() {
        round_trip(Downloads { secret: None });
        assert!(Downloads { secret: None }.encode().is_empty(), "no secret, no parameter");
        round_trip(Downloads { secret: Some("s".into()) });
    }

    #[test]
    fn rows_round_trip_in_both_views() {
        let rows = DownloadRows(vec![row(true), row(false)]);
        assert_eq!(DownloadRows::from_value(rows.to_value()), rows);
    }

    #[test]
    fn the_xmlrpc_row_keeps_its_shape() {
        let Value::Struct(fields) = row(false).to_value() else { panic!() };
        let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
        assert_eq!(keys, ["done", "id", "live_sources", "name", "size", "sources", "status"]);
        let Some(Value::Array(sources)) = fields.get("sources") else {
            panic!()
        };
        let Value::Struct(source) = &sources[0] else { panic!() };
        let keys: Vec<&str> = source.keys().map(String::as_str).collect();
        assert_eq!(keys, ["bad_pieces", "bytes", "failures", "kind", "state", "url"]);
    }

    #[test]
    fn the_json_row_keeps_its_shape() {
        let json = serde_json::to_string(&row(true)).unwrap();
        assert_eq!(
            json,
            r#"{"name":"a.iso","target":"/srv/share/a.iso","id":"af13","size":5368709120,"done":1048576,"state":"failed","detail":"every source failed","speed":0,"sources":[{"url":"http://127.0.0.1:1/content/af13","kind":"peer","state":"live","bytes":1048576,"speed":0,"bad_pieces":2,"last_error":"refused"}]}"#
        );
    }

    #[test]
    fn rows_that_do_not_fit_are_dropped() {
        let mut long = row(true);
        long.name = "n".repeat(MAX_TEXT + 1);
        let mut bad_source = row(true);
        bad_source.sources[0].kind = "k".repeat(MAX_WORD + 1);
        let read = DownloadRows::from_value(DownloadRows(vec![long, bad_source, row(false)]).to_value());
        assert_eq!(read.0.len(), 2, "{read:?}");
        assert!(read.0[0].sources.is_empty(), "the source that does not fit is dropped");
        assert_eq!(read.0[1], row(false));
        let Value::Struct(mut no_status) = row(true).to_value() else {
            panic!()
        };
        no_status.remove("status");
        assert_eq!(DownloadRow::from_value(&Value::Struct(no_status)), None);
    }
}
