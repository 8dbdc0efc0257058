//! `shoal.swarm(id, url, pieces) -> [{url, pieces}]`: who else is fetching a content id, as a
//! tracker and peer exchange tell it. A downloader asks the nodes it fetches from; it names its
//! own node URL (or `""` when it serves nothing, as `shoal get` without a node) and how many
//! pieces it holds. The node answers with other members of the id's swarm, each with the pieces
//! it last said it held (a hint for the order to try them; the downloader learns the truth from
//! each member's `/have`).
//!
//! A node answers only for ids it holds or downloads, and lists a URL only after it answered a
//! `/have` for that id itself (the caller's word is not enough: see `service::swarm`).

use std::collections::BTreeMap;

use shoal_index::ContentId;
use shoal_xmlrpc::Value;

use super::{BadCall, Call, Params, count, text};
use crate::proto::limits::{MAX_SIZE, MAX_SWARM_ANSWER, MAX_URL_BYTES};
use crate::proto::url::holder;

/// `shoal.swarm(id, url, pieces)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swarm {
    pub id: ContentId,
    /// The caller's node URL, `None` for a downloader that serves nothing.
    pub url: Option<String>,
    /// Pieces the caller holds (its claim, shown to others as a hint).
    pub pieces: u64,
}

impl Swarm {
    pub const METHOD: &'static str = "shoal.swarm";
}

impl Call for Swarm {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(mut p: Params) -> Result<Self, BadCall> {
        let id = p.string("id", 64)?;
        let id = id.parse::<ContentId>().map_err(|_| p.bad("id", "a content id (64 hex digits)"))?;
        let url = p.string("url", MAX_URL_BYTES)?;
        let url = if url.is_empty() {
            None
        } else {
            Some(holder(&url).map_err(|_| p.bad("url", "a node's base URL or \"\""))?)
        };
        let pieces = p.optional_int("pieces")?.unwrap_or(0);
        let pieces = u64::try_from(pieces)
            .ok()
            .filter(|n| *n <= MAX_SIZE)
            .ok_or_else(|| p.bad("pieces", "a count"))?;
        p.done()?;
        Ok(Swarm { id, url, pieces })
    }

    fn encode(&self) -> Vec<Value> {
        vec![
            Value::String(self.id.to_string()),
            Value::String(self.url.clone().unwrap_or_default()),
            shoal_xmlrpc::size_value(self.pieces),
        ]
    }
}

/// One member of a swarm, as a node names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub url: String,
    /// Pieces it said it held when it last asked.
    pub pieces: u64,
}

/// `shoal.swarm`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Members(pub Vec<Member>);

impl Members {
    /// At most [`MAX_SWARM_ANSWER`] members.
    pub fn to_value(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .take(MAX_SWARM_ANSWER)
                .map(|m| {
                    let mut fields = BTreeMap::new();
                    fields.insert("url".into(), Value::String(m.url.clone()));
                    fields.insert("pieces".into(), shoal_xmlrpc::size_value(m.pieces));
                    Value::Struct(fields)
                })
                .collect(),
        )
    }

    /// Reads a node's answer: at most [`MAX_SWARM_ANSWER`] members whose URL is a node's base
    /// URL; anything else is dropped.
    pub fn from_value(value: Value) -> Members {
        let Value::Array(items) = value else { return Members::default() };
        Members(
            items
                .into_iter()
                .take(MAX_SWARM_ANSWER)
                .filter_map(|item| {
                    let Value::Struct(fields) = item else { return None };
                    let url = holder(&text(&fields, "url", MAX_URL_BYTES)?).ok()?;
                    let pieces = count(&fields, "pieces", MAX_SIZE).unwrap_or(0);
                    Some(Member { url, pieces })
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    #[test]
    fn swarm_round_trips_and_is_checked() {
        let id = ContentId([7; 32]);
        round_trip(Swarm {
            id,
            url: Some("http://127.0.0.1:4242".into()),
            pieces: 12,
        });
        round_trip(Swarm { id, url: None, pieces: 0 });
        let call = |params: Vec<Value>| Swarm::decode(Params::new(Swarm::METHOD, params));
        let s = |t: &str| Value::String(t.into());
        assert!(call(vec![s("nope"), s("")]).is_err());
        assert!(call(vec![s(&id.to_string()), s("ftp://h:1")]).is_err());
        assert!(call(vec![s(&id.to_string()), s("http://h:1/x?y")]).is_err());
        assert!(call(vec![s(&id.to_string()), s(""), Value::Integer(-1)]).is_err());
        assert_eq!(call(vec![s(&id.to_string()), s("")]).unwrap().pieces, 0);
    }

    #[test]
    fn members_are_capped_and_checked() {
        let members = Members(vec![Member {
            url: "http://127.0.0.1:1".into(),
            pieces: 3,
        }]);
        assert_eq!(Members::from_value(members.to_value()), members);
        let many = Members(
            (0..MAX_SWARM_ANSWER + 4)
                .map(|i| Member {
                    url: format!("http://10.0.0.1:{}", i + 1),
                    pieces: 0,
                })
                .collect(),
        );
        assert_eq!(Members::from_value(many.to_value()).0.len(), MAX_SWARM_ANSWER);
        let mut bad = BTreeMap::new();
        bad.insert("url".to_string(), Value::String("http://u:p@h:1".into()));
        assert!(
            Members::from_value(Value::Array(vec![Value::Struct(bad), Value::Integer(1)]))
                .0
                .is_empty()
        );
    }
}
