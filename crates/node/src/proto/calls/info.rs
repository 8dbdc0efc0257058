//! `shoal.info(name_or_id) -> {name, size, id, content, files, outboard}`: one file of this
//! node by name or content id, with the HTTP paths that serve it.

use std::collections::BTreeMap;

use shoal_index::ContentId;
use shoal_xmlrpc::Value;

use super::{BadCall, Call, MAX_TEXT, Params, checked_name, size, text};

/// `shoal.info(name_or_id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name_or_id: String,
}

impl Info {
    pub const METHOD: &'static str = "shoal.info";
}

impl Call for Info {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(mut p: Params) -> Result<Self, BadCall> {
        let name_or_id = p.string("name_or_id", MAX_TEXT)?;
        p.done()?;
        Ok(Info { name_or_id })
    }

    fn encode(&self) -> Vec<Value> {
        vec![Value::String(self.name_or_id.clone())]
    }
}

/// `shoal.info`'s answer; the paths (`/content/<id>`, `/outboard/<id>`, `/files/<name>`)
/// follow from the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub name: String,
    pub size: u64,
    pub id: ContentId,
}

impl FileInfo {
    pub fn to_value(&self) -> Value {
        let mut fields = BTreeMap::new();
        fields.insert("name".into(), Value::String(self.name.clone()));
        fields.insert("size".into(), shoal_xmlrpc::size_value(self.size));
        fields.insert("id".into(), Value::String(self.id.to_string()));
        fields.insert("content".into(), Value::String(format!("/content/{}", self.id)));
        fields.insert("outboard".into(), Value::String(format!("/outboard/{}", self.id)));
        fields.insert("files".into(), Value::String(format!("/files/{}", self.name)));
        Value::Struct(fields)
    }

    /// Reads a node's answer; `None` when the name, size or id fails its check.
    pub fn from_value(value: Value) -> Option<FileInfo> {
        let Value::Struct(f) = value else { return None };
        Some(FileInfo {
            name: checked_name(&f)?,
            size: size(&f)?,
            id: text(&f, "id", 64)?.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    #[test]
    fn info_round_trips() {
        round_trip(Info {
            name_or_id: "a/b.txt".into(),
        });
        let info = FileInfo {
            name: "a/b.txt".into(),
            size: 12,
            id: ContentId([3; 32]),
        };
        let value = info.to_value();
        let Value::Struct(fields) = &value else { panic!() };
        assert_eq!(fields["files"], Value::String("/files/a/b.txt".into()));
        assert_eq!(FileInfo::from_value(value), Some(info));
    }
}
