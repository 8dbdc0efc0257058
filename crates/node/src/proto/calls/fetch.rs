//! `fetch(name, secret) -> 0`, the seed's owner call: download `name` from the network into
//! this node's share (a name ending in `/`: the whole folder). It answers when the file is
//! there, however long that takes.

use shoal_xmlrpc::Value;

use super::{BadCall, Call, MAX_SECRET, MAX_TEXT, Params};

/// `fetch(name, secret)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub name: String,
    pub secret: String,
}

impl Fetch {
    pub const METHOD: &'static str = "fetch";
}

impl Call for Fetch {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(mut p: Params) -> Result<Self, BadCall> {
        let name = p.string("name", MAX_TEXT)?;
        let secret = p.string("secret", MAX_SECRET)?;
        p.done()?;
        Ok(Fetch { name, secret })
    }

    fn encode(&self) -> Vec<Value> {
        vec![Value::String(self.name.clone()), Value::String(self.secret.clone())]
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    #[test]
    fn fetch_round_trips_and_needs_both_parameters() {
        round_trip(Fetch {
            name: "photos/".into(),
            secret: "s".repeat(64),
        });
        assert!(Fetch::decode(Params::new("fetch", vec![Value::String("a".into())])).is_err());
        let long = Value::String("s".repeat(MAX_SECRET + 1));
        assert!(Fetch::decode(Params::new("fetch", vec![Value::String("a".into()), long])).is_err());
    }
}
