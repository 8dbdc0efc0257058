//! `hello(url) -> 0`, the seed's introduction: the caller names a node (itself, usually) for
//! this node to learn. The node probes the URL before it learns it; the answer says nothing.

use shoal_xmlrpc::Value;

use super::{BadCall, Call, Params};
use crate::proto::limits::MAX_URL_BYTES;

/// `hello(url)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub url: String,
}

impl Hello {
    pub const METHOD: &'static str = "hello";
}

impl Call for Hello {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(mut p: Params) -> Result<Self, BadCall> {
        let url = p.string("url", MAX_URL_BYTES)?;
        p.done()?;
        Ok(Hello { url })
    }

    fn encode(&self) -> Vec<Value> {
        vec![Value::String(self.url.clone())]
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    #[test]
    fn hello_round_trips_and_is_bounded() {
        round_trip(Hello {
            url: "http://127.0.0.1:4242".into(),
        });
        let long = Value::String("x".repeat(MAX_URL_BYTES + 1));
        assert!(Hello::decode(Params::new("hello", vec![long])).is_err());
        assert!(Hello::decode(Params::new("hello", vec![Value::String("http://h:1".into()), Value::Nil])).is_err());
        assert!(Hello::decode(Params::new("hello", vec![])).is_err());
    }
}
