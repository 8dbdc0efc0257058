//! `query(name, history=[]) -> content`, the seed's search: the file's bytes from this node or
//! the first node of the network that has it (fault 100 when none has it, 200 for a name outside
//! the share, 300 when it is over the size limit). shoal nodes ask seed nodes with it.

use shoal_xmlrpc::Value;

use super::{BadCall, Call, MAX_TEXT, Params, strings_value};
use crate::proto::limits::{MAX_HISTORY, MAX_URL_BYTES};

/// `query(name, history=[])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub name: String,
    /// The nodes the search has passed (the seed stops at 6).
    pub history: Vec<String>,
}

impl Query {
    pub const METHOD: &'static str = "query";
}

impl Call for Query {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(mut p: Params) -> Result<Self, BadCall> {
        let name = p.string("name", MAX_TEXT)?;
        let history = p.strings("history", MAX_HISTORY, MAX_URL_BYTES)?;
        p.done()?;
        Ok(Query { name, history })
    }

    fn encode(&self) -> Vec<Value> {
        vec![Value::String(self.name.clone()), strings_value(&self.history)]
    }
}

/// `query`'s answer: the file's content, as a string when it is safe text (as the seed's nodes
/// expect) and as base64 otherwise ([`shoal_xmlrpc::content_value`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content(pub Vec<u8>);

impl Content {
    /// The answer (the bytes move into it: content may be megabytes).
    pub fn into_value(self) -> Value {
        shoal_xmlrpc::content_value(self.0)
    }

    /// Reads a peer's answer: a string or base64 of at most `max` bytes.
    pub fn from_value(value: Value, max: u64) -> Option<Content> {
        let bytes = shoal_xmlrpc::content_bytes(value)?;
        (bytes.len() as u64 <= max).then_some(Content(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    #[test]
    fn query_round_trips_and_bounds_its_history() {
        round_trip(Query {
            name: "a.txt".into(),
            history: vec!["http://h:1".into()],
        });
        round_trip(Query {
            name: "a.txt".into(),
            history: Vec::new(),
        });
        let history = Value::Array((0..MAX_HISTORY + 1).map(|_| Value::String("http://h:1".into())).collect());
        assert!(Query::decode(Params::new("query", vec![Value::String("a".into()), history])).is_err());
    }

    #[test]
    fn content_survives_both_ways_and_is_capped() {
        for bytes in [b"plain text".to_vec(), vec![0, 159, 146, 150, b'\r']] {
            let answer = Content(bytes.clone());
            assert_eq!(Content::from_value(answer.into_value(), 64), Some(Content(bytes)));
        }
        assert_eq!(Content::from_value(Content(vec![1; 5]).into_value(), 4), None, "over the cap");
        assert_eq!(Content::from_value(Value::Integer(3), 64), None);
    }
}
