//! `system.listMethods() -> [name]` and `system.methodHelp(name) -> text`, the XML-RPC
//! introspection calls. A node probes a URL it was told of with `system.listMethods`: any
//! XML-RPC answer, a fault included, shows a node.

use shoal_xmlrpc::Value;

use super::{BadCall, Call, MAX_TEXT, Params};

/// `system.listMethods()`; answered with [`super::Names`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMethods;

impl ListMethods {
    pub const METHOD: &'static str = "system.listMethods";
}

impl Call for ListMethods {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(p: Params) -> Result<Self, BadCall> {
        p.done()?;
        Ok(ListMethods)
    }

    fn encode(&self) -> Vec<Value> {
        Vec::new()
    }
}

/// `system.methodHelp(method)`; answered with the help text (empty for an unknown method).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodHelp {
    pub method: String,
}

impl MethodHelp {
    pub const METHOD: &'static str = "system.methodHelp";

    pub fn answer(help: &str) -> Value {
        Value::String(help.to_string())
    }
}

impl Call for MethodHelp {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(mut p: Params) -> Result<Self, BadCall> {
        let method = p.string("method", MAX_TEXT)?;
        p.done()?;
        Ok(MethodHelp { method })
    }

    fn encode(&self) -> Vec<Value> {
        vec![Value::String(self.method.clone())]
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    #[test]
    fn introspection_round_trips() {
        round_trip(ListMethods);
        round_trip(MethodHelp {
            method: "shoal.search".into(),
        });
        assert!(MethodHelp::decode(Params::new(MethodHelp::METHOD, vec![])).is_err());
    }
}
