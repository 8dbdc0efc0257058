//! `shoal.peers() -> [url]`: peer exchange. A node hands out the peers it knows; the asker
//! learns each only after it answered as a node.

use shoal_xmlrpc::Value;

use super::{BadCall, Call, Params};
use crate::proto::limits::MAX_PEERS_PER_ANSWER;
use crate::proto::url::holder;

/// `shoal.peers()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers;

impl Peers {
    pub const METHOD: &'static str = "shoal.peers";
}

impl Call for Peers {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(p: Params) -> Result<Self, BadCall> {
        p.done()?;
        Ok(Peers)
    }

    fn encode(&self) -> Vec<Value> {
        Vec::new()
    }
}

/// `shoal.peers`' answer: node base URLs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerUrls(pub Vec<String>);

impl PeerUrls {
    /// The answer: at most [`MAX_PEERS_PER_ANSWER`] of the URLs.
    pub fn to_value(&self) -> Value {
        Value::Array(self.0.iter().take(MAX_PEERS_PER_ANSWER).cloned().map(Value::String).collect())
    }

    /// Reads a peer's answer: at most [`MAX_PEERS_PER_ANSWER`] node base URLs; anything else is
    /// dropped.
    pub fn from_value(value: Value) -> PeerUrls {
        let Value::Array(items) = value else { return PeerUrls::default() };
        PeerUrls(
            items
                .into_iter()
                .take(MAX_PEERS_PER_ANSWER)
                .filter_map(|v| if let Value::String(s) = v { holder(&s).ok() } else { None })
                .collect(),
        )
    }
}

/// Reads a peer's `shoal.peers` answer ([`PeerUrls::from_value`]).
pub fn peers_answer(value: Value) -> Vec<String> {
    PeerUrls::from_value(value).0
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    #[test]
    fn peers_round_trip_and_answers_are_capped() {
        round_trip(Peers);
        assert!(Peers::decode(Params::new(Peers::METHOD, vec![Value::Integer(1)])).is_err());
        let urls = PeerUrls(vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()]);
        assert_eq!(PeerUrls::from_value(urls.to_value()), urls);
        let many = PeerUrls(
            (0..MAX_PEERS_PER_ANSWER + 5)
                .map(|i| format!("http://10.0.0.1:{}", i + 1))
                .collect(),
        );
        assert_eq!(PeerUrls::from_value(many.to_value()).0.len(), MAX_PEERS_PER_ANSWER);
        let lies = Value::Array(vec![
            Value::String("http://u:p@h:1".into()),
            Value::Integer(3),
            Value::String("http://h:1".into()),
        ]);
        assert_eq!(peers_answer(lies), ["http://h:1"]);
    }
}
