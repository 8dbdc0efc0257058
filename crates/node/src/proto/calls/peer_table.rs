//! `shoal.peer_table() -> [{url, kind, failures, backing_off, learnt, local, path}]`: the peer
//! table with each peer's state. Public, as `shoal.peers` is: what it shows beside the URLs is
//! what anyone could learn by probing them.
//!
//! A row is also the JSON API's (`GET /api/v1/peers`), which spells the state as one word
//! (`ok`, `failing`, `backing off`) instead of `backing_off`, gives `path` as `null` rather
//! than empty, and adds the owner's own use of each peer ([`PeerActivity`]) for the owner. One
//! type serves both: `to_value` writes the XML-RPC shape, `serde::Serialize` the JSON one.

use std::collections::BTreeMap;

use serde::Serialize;
use shoal_xmlrpc::Value;

use super::{BadCall, Call, MAX_TEXT, Params, count, flag, text};

/// Most rows read from one answer.
pub const MAX_PEER_ROWS: usize = 100_000;
/// Longest kind or path word read.
const MAX_WORD: usize = 32;

/// `shoal.peer_table()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTable;

impl PeerTable {
    pub const METHOD: &'static str = "shoal.peer_table";
}

impl Call for PeerTable {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(p: Params) -> Result<Self, BadCall> {
        p.done()?;
        Ok(PeerTable)
    }

    fn encode(&self) -> Vec<Value> {
        Vec::new()
    }
}

/// How a peer is doing: one classification for every frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    Ok,
    /// It failed lately but may be asked.
    Failing,
    /// It failed too often and is left alone for a while.
    BackingOff,
}

impl PeerState {
    pub fn new(backing_off: bool, failures: u32) -> PeerState {
        if backing_off {
            PeerState::BackingOff
        } else if failures > 0 {
            PeerState::Failing
        } else {
            PeerState::Ok
        }
    }

    /// As people read it (the JSON API, the UI).
    pub fn name(self) -> &'static str {
        match self {
            PeerState::Ok => "ok",
            PeerState::Failing => "failing",
            PeerState::BackingOff => "backing off",
        }
    }

    /// As a Prometheus label value.
    pub fn label(self) -> &'static str {
        match self {
            PeerState::Ok => "ok",
            PeerState::Failing => "failing",
            PeerState::BackingOff => "backing_off",
        }
    }
}

impl Serialize for PeerState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// What the owner's own use of a peer was: owner-only, JSON only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerActivity {
    /// Seconds since it last answered; null when it never has.
    pub last_seen_s: Option<u64>,
    /// Verified bytes downloaded from it by the downloads this node ran since it started.
    pub bytes: u64,
}

/// One row of the peer table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerRow {
    pub url: String,
    /// `shoal` or `seed` (or unknown, before it answered).
    pub kind: String,
    pub state: PeerState,
    pub failures: u32,
    pub learnt: bool,
    /// Found on the LAN.
    pub local: bool,
    /// `direct` or `relay` for a node reached over iroh.
    pub path: Option<String>,
    /// Only for the owner, and only in the JSON API.
    #[serde(flatten)]
    pub activity: Option<PeerActivity>,
}

impl PeerRow {
    pub fn to_value(&self) -> Value {
        let mut f = BTreeMap::new();
        f.insert("url".into(), Value::String(self.url.clone()));
        f.insert("kind".into(), Value::String(self.kind.clone()));
        f.insert("failures".into(), shoal_xmlrpc::size_value(u64::from(self.failures)));
        f.insert("backing_off".into(), Value::Boolean(self.state == PeerState::BackingOff));
        f.insert("learnt".into(), Value::Boolean(self.learnt));
        f.insert("local".into(), Value::Boolean(self.local));
        f.insert("path".into(), Value::String(self.path.clone().unwrap_or_default()));
        Value::Struct(f)
    }

    /// Reads one row of a node's answer; `None` when a field fails its check (`local` and
    /// `path`, which older nodes do not send, may be absent).
    pub fn from_value(value: &Value) -> Option<PeerRow> {
        let Value::Struct(f) = value else { return None };
        let failures = count(f, "failures", u64::from(u32::MAX))? as u32;
        let path = match f.get("path") {
            None => None,
            Some(_) => Some(text(f, "path", MAX_WORD)?).filter(|p| !p.is_empty()),
        };
        Some(PeerRow {
            url: text(f, "url", MAX_TEXT)?,
            kind: text(f, "kind", MAX_WORD)?,
            state: PeerState::new(flag(f, "backing_off")?, failures),
            failures,
            learnt: flag(f, "learnt")?,
            local: flag(f, "local").unwrap_or(false),
            path,
            activity: None,
        })
    }
}

/// `shoal.peer_table`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerRows(pub Vec<PeerRow>);

impl PeerRows {
    pub fn to_value(&self) -> Value {
        Value::Array(self.0.iter().map(PeerRow::to_value).collect())
    }

    /// Reads a node's answer: at most [`MAX_PEER_ROWS`] rows; one that fails a check is dropped.
    pub fn from_value(value: Value) -> PeerRows {
        let Value::Array(items) = value else { return PeerRows::default() };
        PeerRows(items.iter().take(MAX_PEER_ROWS).filter_map(PeerRow::from_value).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    fn row(state: PeerState, failures: u32, path: Option<&str>) -> PeerRow {
        PeerRow {
            url: "http://127.0.0.1:1".into(),
            kind: "shoal".into(),
            state,
            failures,
            learnt: true,
            local: false,
            path: path.map(String::from),
            activity: None,
        }
    }

    #[test]
    fn peer_tables_round_trip() {
        round_trip(PeerTable);
        let rows = PeerRows(vec![
            row(PeerState::Ok, 0, None),
            row(PeerState::Failing, 2, Some("relay")),
            row(PeerState::BackingOff, 9, Some("direct")),
        ]);
        assert_eq!(PeerRows::from_value(rows.to_value()), rows);
    }

    #[test]
    fn both_shapes_stay_as_they_were() {
        let Value::Struct(fields) = row(PeerState::BackingOff, 9, None).to_value() else {
            panic!()
        };
        let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
        assert_eq!(keys, ["backing_off", "failures", "kind", "learnt", "local", "path", "url"]);
        assert_eq!(fields["path"], Value::String(String::new()));
        assert_eq!(fields["backing_off"], Value::Boolean(true));
        let mut owner = row(PeerState::BackingOff, 9, None);
        owner.activity = Some(PeerActivity {
            last_seen_s: None,
            bytes: 7,
        });
        assert_eq!(
            serde_json::to_string(&owner).unwrap(),
            r#"{"url":"http://127.0.0.1:1","kind":"shoal","state":"backing off","failures":9,"learnt":true,"local":false,"path":null,"last_seen_s":null,"bytes":7}"#
        );
        assert_eq!(
            serde_json::to_string(&row(PeerState::Failing, 1, Some("relay"))).unwrap(),
            r#"{"url":"http://127.0.0.1:1","kind":"shoal","state":"failing","failures":1,"learnt":true,"local":false,"path":"relay"}"#
        );
    }

    #[test]
    fn one_classification_two_spellings() {
        assert_eq!(PeerState::new(true, 0), PeerState::BackingOff);
        assert_eq!(PeerState::new(false, 3), PeerState::Failing);
        assert_eq!(PeerState::new(false, 0), PeerState::Ok);
        assert_eq!(PeerState::BackingOff.name(), "backing off");
        assert_eq!(PeerState::BackingOff.label(), "backing_off");
    }
}
