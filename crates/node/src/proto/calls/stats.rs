//! `shoal.stats() -> {url, id, ticket, files, peers, messages_sent}`: counters of a node, and
//! how to reach it over iroh (its id and ticket) when it runs iroh. `shoal status` and
//! `shoal id` read it.

use std::collections::BTreeMap;

use shoal_xmlrpc::Value;

use super::{BadCall, Call, MAX_TEXT, Params, count, text};

/// `shoal.stats()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats;

impl Stats {
    pub const METHOD: &'static str = "shoal.stats";
}

impl Call for Stats {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(p: Params) -> Result<Self, BadCall> {
        p.done()?;
        Ok(Stats)
    }

    fn encode(&self) -> Vec<Value> {
        Vec::new()
    }
}

/// `shoal.stats`' answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStats {
    /// The node's own URL.
    pub url: String,
    /// Its node id and ticket, when it runs iroh.
    pub iroh: Option<IrohName>,
    /// Files in its share.
    pub files: u64,
    /// Peers it knows.
    pub peers: u64,
    /// XML-RPC messages it sent since it started.
    pub messages_sent: u64,
}

/// How to reach a node over iroh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrohName {
    /// The node id (without `iroh://`).
    pub id: String,
    /// Its ticket (`shoal1…`).
    pub ticket: String,
}

impl NodeStats {
    pub fn to_value(&self) -> Value {
        let mut fields = BTreeMap::new();
        fields.insert("url".into(), Value::String(self.url.clone()));
        if let Some(iroh) = &self.iroh {
            fields.insert("id".into(), Value::String(iroh.id.clone()));
            fields.insert("ticket".into(), Value::String(iroh.ticket.clone()));
        }
        fields.insert("files".into(), shoal_xmlrpc::size_value(self.files));
        fields.insert("peers".into(), shoal_xmlrpc::size_value(self.peers));
        fields.insert("messages_sent".into(), shoal_xmlrpc::size_value(self.messages_sent));
        Value::Struct(fields)
    }

    /// Reads a node's answer; `None` when a field fails its check.
    pub fn from_value(value: Value) -> Option<NodeStats> {
        let Value::Struct(f) = value else { return None };
        let iroh = match (text(&f, "id", MAX_TEXT), text(&f, "ticket", MAX_TEXT)) {
            (Some(id), Some(ticket)) => Some(IrohName { id, ticket }),
            _ => None,
        };
        Some(NodeStats {
            url: text(&f, "url", MAX_TEXT)?,
            iroh,
            files: count(&f, "files", u64::MAX)?,
            peers: count(&f, "peers", u64::MAX)?,
            messages_sent: count(&f, "messages_sent", u64::MAX)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    #[test]
    fn stats_round_trip() {
        round_trip(Stats);
        for iroh in [
            None,
            Some(IrohName {
                id: "abc".into(),
                ticket: "shoal1abc".into(),
            }),
        ] {
            let stats = NodeStats {
                url: "http://127.0.0.1:4242".into(),
                iroh,
                files: 3,
                peers: 2,
                messages_sent: 1 << 33,
            };
            assert_eq!(NodeStats::from_value(stats.to_value()), Some(stats));
        }
        assert_eq!(NodeStats::from_value(Value::Array(vec![])), None);
    }
}
