//! `shoal.download(secret, targets, {output, hash, force, peers}) -> {name, target}`: the owner
//! starts a background download. Targets are names, content ids or http mirror URLs (a folder
//! or glob: every file, in its layout); `output` is a path inside the share, the download
//! directory or the state directory's `incoming/`; `peers` are learnt, on the owner's word,
//! before the search. The answer names the download and where it lands; its progress is in
//! `shoal.downloads`. The JSON API's `POST /api/v1/downloads` answers the same two fields.

use std::collections::BTreeMap;

use serde::Serialize;
use shoal_index::ContentId;
use shoal_xmlrpc::Value;

use super::{BadCall, Call, MAX_SECRET, MAX_TEXT, Params, strings_value, text};
use crate::proto::limits::{MAX_TARGETS, MAX_URL_BYTES};

/// `shoal.download(secret, targets, {output, hash, force, peers})`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Download {
    pub secret: String,
    pub targets: Vec<String>,
    pub output: Option<String>,
    pub hash: Option<ContentId>,
    pub force: bool,
    pub peers: Vec<String>,
}

impl Download {
    pub const METHOD: &'static str = "shoal.download";
}

impl Call for Download {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(mut p: Params) -> Result<Self, BadCall> {
        let secret = p.string("secret", MAX_SECRET)?;
        let targets = p.strings("targets", MAX_TARGETS, MAX_TEXT)?;
        let options = p.optional_struct("options")?;
        p.done()?;
        let text = |key: &str| match options.get(key) {
            Some(Value::String(s)) if s.len() <= MAX_TEXT => Ok(Some(s.clone())),
            None | Some(Value::Nil) => Ok(None),
            Some(_) => Err(BadCall(format!(
                "shoal.download: option {key} must be a string of at most {MAX_TEXT} bytes"
            ))),
        };
        let hash = match text("hash")? {
            Some(h) => Some(
                h.parse()
                    .map_err(|_| BadCall("shoal.download: hash must be 64 hex characters".into()))?,
            ),
            None => None,
        };
        let peers = match options.get("peers") {
            None | Some(Value::Nil) => Vec::new(),
            Some(Value::Array(items)) if items.len() <= MAX_TARGETS => items
                .iter()
                .map(|v| match v {
                    Value::String(s) if s.len() <= MAX_URL_BYTES => Ok(s.clone()),
                    _ => Err(()),
                })
                .collect::<Result<_, _>>()
                .map_err(|_| BadCall("shoal.download: peers must be URLs".into()))?,
            Some(_) => return Err(BadCall("shoal.download: peers must be an array of URLs".into())),
        };
        Ok(Download {
            secret,
            targets,
            output: text("output")?,
            hash,
            force: matches!(options.get("force"), Some(Value::Boolean(true))),
            peers,
        })
    }

    /// The options struct holds only what differs from the defaults, and is left off when
    /// nothing does.
    fn encode(&self) -> Vec<Value> {
        let mut options = BTreeMap::new();
        if let Some(output) = &self.output {
            options.insert("output".to_string(), Value::String(output.clone()));
        }
        if let Some(hash) = self.hash {
            options.insert("hash".to_string(), Value::String(hash.to_string()));
        }
        if self.force {
            options.insert("force".to_string(), Value::Boolean(true));
        }
        if !self.peers.is_empty() {
            options.insert("peers".to_string(), strings_value(&self.peers));
        }
        let mut params = vec![Value::String(self.secret.clone()), strings_value(&self.targets)];
        if !options.is_empty() {
            params.push(Value::Struct(options));
        }
        params
    }
}

/// `shoal.download`'s answer: the download's name and the path it lands at (a folder's: the
/// directory its files land in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownloadStarted {
    pub name: String,
    pub target: String,
}

impl DownloadStarted {
    pub fn to_value(&self) -> Value {
        let mut fields = BTreeMap::new();
        fields.insert("name".into(), Value::String(self.name.clone()));
        fields.insert("target".into(), Value::String(self.target.clone()));
        Value::Struct(fields)
    }

    /// Reads a node's answer; `None` unless it has both fields, each at most a path's length.
    pub fn from_value(value: Value) -> Option<DownloadStarted> {
        let Value::Struct(fields) = value else { return None };
        Some(DownloadStarted {
            name: text(&fields, "name", MAX_TEXT)?,
            target: text(&fields, "target", MAX_TEXT)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    #[test]
    fn downloads_round_trip_with_and_without_options() {
        let bare = Download {
            secret: "s".into(),
            targets: vec!["a.iso".into()],
            ..Default::default()
        };
        assert_eq!(bare.encode().len(), 2, "no options struct when none is set");
        round_trip(bare);
        round_trip(Download {
            secret: "s".into(),
            targets: vec!["a.iso".into(), "http://m/b.iso".into()],
            output: Some("/srv/share/in".into()),
            hash: Some(ContentId([9; 32])),
            force: true,
            peers: vec!["http://127.0.0.1:1".into()],
        });
    }

    #[test]
    fn options_are_checked() {
        let call = |options: BTreeMap<String, Value>| {
            Download::decode(Params::new(
                Download::METHOD,
                vec![Value::String("s".into()), Value::Array(vec![]), Value::Struct(options)],
            ))
        };
        let one = |key: &str, value: Value| BTreeMap::from([(key.to_string(), value)]);
        assert!(call(one("hash", Value::String("nothex".into()))).is_err());
        assert!(call(one("output", Value::Integer(1))).is_err());
        assert!(call(one("peers", Value::String("http://h:1".into()))).is_err());
        let many = Value::Array((0..MAX_TARGETS + 1).map(|_| Value::String("http://h:1".into())).collect());
        assert!(call(one("peers", many)).is_err());
        assert!(!call(one("force", Value::String("yes".into()))).unwrap().force);
    }

    #[test]
    fn the_answer_is_the_same_struct_as_before() {
        let started = DownloadStarted {
            name: "a.iso".into(),
            target: "/srv/share/a.iso".into(),
        };
        let mut fields = BTreeMap::new();
        fields.insert("name".to_string(), Value::String("a.iso".into()));
        fields.insert("target".to_string(), Value::String("/srv/share/a.iso".into()));
        assert_eq!(started.to_value(), Value::Struct(fields));
        assert_eq!(DownloadStarted::from_value(started.to_value()), Some(started.clone()));
        assert_eq!(DownloadStarted::from_value(Value::Integer(0)), None);
        assert_eq!(
            serde_json::to_string(&started).unwrap(),
            r#"{"name":"a.iso","target":"/srv/share/a.iso"}"#
        );
    }
}
