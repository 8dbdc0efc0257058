//! `shoal.locate(name, history, query_id, ttl, budget_ms) -> {url, name, size, id}`: where a
//! file is. Forwarded hop by hop like the seed's `query`, answered once per query id; the first
//! hit wins. A hit from a seed node comes back with its content instead of an id.

use std::collections::BTreeMap;

use shoal_index::ContentId;
use shoal_xmlrpc::Value;

use super::{BadCall, Call, MAX_TEXT, Params, RouteParams, checked_name, query_id, size, text, trimmed};
use crate::proto::limits::{MAX_HISTORY, MAX_PATTERN, MAX_URL_BYTES};
use crate::proto::url::holder;

/// `shoal.locate(name, history, query_id, ttl, budget_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locate {
    pub name: String,
    pub route: RouteParams,
}

impl Locate {
    pub const METHOD: &'static str = "shoal.locate";
}

impl Call for Locate {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(mut p: Params) -> Result<Self, BadCall> {
        let name = p.string("name", MAX_TEXT)?;
        let history = p.strings("history", MAX_HISTORY, MAX_URL_BYTES)?;
        let query_id = query_id(p.optional_string("query_id", MAX_PATTERN)?);
        let ttl = p.optional_int("ttl")?.and_then(|t| u32::try_from(t).ok());
        let budget_ms = p.optional_int("budget_ms")?.and_then(|b| u64::try_from(b).ok());
        p.done()?;
        Ok(Locate {
            name,
            route: RouteParams {
                query_id,
                ttl,
                history,
                budget_ms,
            },
        })
    }

    fn encode(&self) -> Vec<Value> {
        let r = &self.route;
        let mut params = trimmed(vec![
            Some(Value::String(self.name.clone())),
            Some(r.history_value()),
            r.query_id_value(),
            r.ttl_value(),
            r.budget_value(),
        ]);
        // The history is always sent, even empty, as the seed's `query` sends it.
        params.truncate(params.len().max(2));
        params
    }
}

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
        let id = match fields.get("id") {
            Some(Value::String(id)) => Some(id.parse().ok()?),
            _ => None,
        };
        if id.is_none() && content.is_none() {
            return None;
        }
        Some(LocateAnswer {
            holder: holder(&text(&fields, "url", MAX_URL_BYTES)?).ok()?,
            name: checked_name(&fields)?,
            size,
            id,
            content,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    #[test]
    fn locate_round_trips_with_and_without_its_route() {
        round_trip(Locate {
            name: "a.txt".into(),
            route: RouteParams {
                query_id: Some("q1".into()),
                ttl: Some(5),
                history: vec!["http://h:1".into()],
                budget_ms: Some(2500),
            },
        });
        let bare = Locate {
            name: "a.txt".into(),
            route: RouteParams::default(),
        };
        assert_eq!(bare.encode(), vec![Value::String("a.txt".into()), Value::Array(vec![])]);
        round_trip(bare);
        round_trip(Locate {
            name: "a.txt".into(),
            route: RouteParams {
                budget_ms: Some(7),
                ..Default::default()
            },
        });
    }

    #[test]
    fn out_of_range_route_fields_are_ignored() {
        let call = Locate::decode(Params::new(
            "shoal.locate",
            vec![
                Value::String("a".into()),
                Value::Array(vec![]),
                Value::String(String::new()),
                Value::Integer(-1),
                Value::Integer(-5),
            ],
        ))
        .unwrap();
        assert_eq!(call.route, RouteParams::default());
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
            ..hit.clone()
        };
        assert_eq!(LocateAnswer::from_value(hidden.to_value(), 16), None);
        let by_id = LocateAnswer {
            id: Some(ContentId([7; 32])),
            content: None,
            ..hit
        };
        assert_eq!(LocateAnswer::from_value(by_id.to_value(), 16), Some(by_id));
    }
}
