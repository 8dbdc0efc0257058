//! `shoal.dht([secret]) -> {running, nodes, reachable, serving, size_estimate, announced, ...}`:
//! the node's place on the Mainline DHT, for `shoal dht`, `shoal status` and the web UI (the
//! JSON API's `GET /api/v1/dht` and `status.dht` have the same fields). With the secret also
//! its UDP addresses and its recent lookups (which content ids the owner looked for, and how
//! long each took); without it, counts only.

use std::collections::BTreeMap;

use serde::Serialize;
use shoal_xmlrpc::Value;

use super::{BadCall, Call, MAX_SECRET, MAX_TEXT, Params, count, flag, text};

/// Most lookups read from one answer.
pub const MAX_LOOKUP_ROWS: usize = 64;
/// Length of a content id in hex.
const ID_HEX: usize = 64;

/// `shoal.dht([secret])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dht {
    pub secret: Option<String>,
}

impl Dht {
    pub const METHOD: &'static str = "shoal.dht";
}

impl Call for Dht {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(mut p: Params) -> Result<Self, BadCall> {
        let secret = p.optional_string("secret", MAX_SECRET)?;
        p.done()?;
        Ok(Dht { secret })
    }

    fn encode(&self) -> Vec<Value> {
        self.secret.iter().cloned().map(Value::String).collect()
    }
}

/// One recent lookup of a content id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LookupRow {
    /// The content id (hex).
    pub id: String,
    /// When it started, in seconds since the Unix epoch.
    pub at: u64,
    /// How long it ran, in milliseconds.
    pub ms: u64,
    /// Addresses it found (before the address policy).
    pub found: u64,
}

/// `shoal.dht`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct DhtState {
    /// The node runs a DHT node (all else is zero or empty when not).
    pub running: bool,
    /// Nodes in its routing table.
    pub nodes: u64,
    /// Others reached it unasked (not behind a NAT that drops them).
    pub reachable: bool,
    /// It answers others' queries (server mode).
    pub serving: bool,
    /// Its estimate of the DHT's size.
    pub size_estimate: u64,
    /// Content ids it announced with success lately.
    pub announced: u64,
    /// Its address record is on the DHT: other nodes reach it by its node id alone.
    pub published: bool,
    /// Its UDP address (the owner's view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// The address others see it at, as their answers say (the owner's view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public: Option<String>,
    /// Its latest lookups, newest first (the owner's view only).
    pub lookups: Vec<LookupRow>,
}

impl DhtState {
    pub fn to_value(&self) -> Value {
        let mut f = BTreeMap::new();
        f.insert("running".into(), Value::Boolean(self.running));
        f.insert("nodes".into(), shoal_xmlrpc::size_value(self.nodes));
        f.insert("reachable".into(), Value::Boolean(self.reachable));
        f.insert("serving".into(), Value::Boolean(self.serving));
        f.insert("size_estimate".into(), shoal_xmlrpc::size_value(self.size_estimate));
        f.insert("announced".into(), shoal_xmlrpc::size_value(self.announced));
        f.insert("published".into(), Value::Boolean(self.published));
        if let Some(local) = &self.local {
            f.insert("local".into(), Value::String(local.clone()));
        }
        if let Some(public) = &self.public {
            f.insert("public".into(), Value::String(public.clone()));
        }
        let rows = self
            .lookups
            .iter()
            .map(|l| {
                let mut r = BTreeMap::new();
                r.insert("id".into(), Value::String(l.id.clone()));
                r.insert("at".into(), shoal_xmlrpc::size_value(l.at));
                r.insert("ms".into(), shoal_xmlrpc::size_value(l.ms));
                r.insert("found".into(), shoal_xmlrpc::size_value(l.found));
                Value::Struct(r)
            })
            .collect();
        f.insert("lookups".into(), Value::Array(rows));
        Value::Struct(f)
    }

    /// Reads a node's answer; `None` when a field fails its check (a lookup row that does
    /// not fit is dropped; at most [`MAX_LOOKUP_ROWS`] are read).
    pub fn from_value(value: Value) -> Option<DhtState> {
        let Value::Struct(f) = value else { return None };
        let lookups = match f.get("lookups") {
            Some(Value::Array(rows)) => rows
                .iter()
                .take(MAX_LOOKUP_ROWS)
                .filter_map(|row| {
                    let Value::Struct(r) = row else { return None };
                    let id = text(r, "id", ID_HEX)?;
                    (id.len() == ID_HEX && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())?;
                    Some(LookupRow {
                        id,
                        at: count(r, "at", u64::MAX)?,
                        ms: count(r, "ms", u64::MAX)?,
                        found: count(r, "found", u64::MAX)?,
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(DhtState {
            running: flag(&f, "running")?,
            nodes: count(&f, "nodes", u64::MAX)?,
            reachable: flag(&f, "reachable")?,
            serving: flag(&f, "serving")?,
            size_estimate: count(&f, "size_estimate", u64::MAX)?,
            announced: count(&f, "announced", u64::MAX)?,
            published: flag(&f, "published").unwrap_or(false),
            local: text(&f, "local", MAX_TEXT),
            public: text(&f, "public", MAX_TEXT),
            lookups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    #[test]
    fn dht_round_trip() {
        round_trip(Dht { secret: None });
        round_trip(Dht { secret: Some("s".into()) });
        let state = DhtState {
            running: true,
            nodes: 63,
            reachable: true,
            serving: true,
            size_estimate: 70,
            announced: 2,
            published: true,
            local: Some("127.0.0.1:6881".into()),
            public: None,
            lookups: vec![LookupRow {
                id: "ab".repeat(32),
                at: 1_790_000_000,
                ms: 120,
                found: 3,
            }],
        };
        assert_eq!(DhtState::from_value(state.to_value()), Some(state.clone()));
        // A row whose id is not a content id is dropped; the rest is kept.
        let mut bad = state.clone();
        bad.lookups.push(LookupRow {
            id: "<script>".into(),
            ..state.lookups[0].clone()
        });
        assert_eq!(DhtState::from_value(bad.to_value()), Some(state));
        assert_eq!(DhtState::from_value(Value::Array(vec![])), None);
    }
}
