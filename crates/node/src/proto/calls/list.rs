//! `list() -> [name]`: this node's own files, by name (the seed's `list`). Public: it says what
//! a search would.

use shoal_xmlrpc::Value;

use super::{BadCall, Call, MAX_TEXT, Params};

/// `list()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List;

impl List {
    pub const METHOD: &'static str = "list";
}

impl Call for List {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(p: Params) -> Result<Self, BadCall> {
        p.done()?;
        Ok(List)
    }

    fn encode(&self) -> Vec<Value> {
        Vec::new()
    }
}

/// An answer that is a list of names (`list`, `system.listMethods`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Names(pub Vec<String>);

impl Names {
    /// Most names read from one answer.
    pub const MAX: usize = 1_000_000;

    pub fn to_value(&self) -> Value {
        Value::Array(self.0.iter().cloned().map(Value::String).collect())
    }

    /// Reads a node's answer: at most [`Names::MAX`] strings of at most 16 KiB; anything else
    /// is dropped.
    pub fn from_value(value: Value) -> Names {
        let Value::Array(items) = value else { return Names::default() };
        Names(
            items
                .into_iter()
                .take(Self::MAX)
                .filter_map(|v| match v {
                    Value::String(s) if s.len() <= MAX_TEXT => Some(s),
                    _ => None,
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
    fn names_round_trip() {
        round_trip(List);
        let names = Names(vec!["a.txt".into(), "b/c.txt".into()]);
        assert_eq!(Names::from_value(names.to_value()), names);
        let mixed = Value::Array(vec![
            Value::Integer(1),
            Value::String("x".repeat(MAX_TEXT + 1)),
            Value::String("ok".into()),
        ]);
        assert_eq!(Names::from_value(mixed).0, ["ok"]);
    }
}
