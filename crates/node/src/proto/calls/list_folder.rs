//! `shoal.list_folder(path, cursor) -> {files: [{path, size, id}], next}`: one page of the files
//! under a shared folder, recursively, in byte order of their names (see the protocol's
//! documentation in [`crate::proto`] for paging). A page is also the JSON API's
//! `GET /api/v1/files` answer, where an absent `next` is `null`.

use std::collections::BTreeMap;

use serde::Serialize;
use shoal_index::{ContentId, check_name};
use shoal_xmlrpc::Value;

use super::{BadCall, Call, MAX_TEXT, Params, as_text, size, text};
use crate::proto::limits::{LIST_ANSWER_BYTES, MAX_LIST_ENTRIES};

/// `shoal.list_folder(path, cursor)`: one page of the files under a shared folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFolder {
    /// The folder's name in the share without a trailing `/`; empty for the whole share. Not
    /// yet checked as a name (the service does that, with the seed's fault 200).
    pub folder: String,
    /// The last path of the previous page (exclusive); empty for the first page.
    pub cursor: String,
}

impl ListFolder {
    pub const METHOD: &'static str = "shoal.list_folder";
}

impl Call for ListFolder {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(mut p: Params) -> Result<Self, BadCall> {
        let path = p.optional_string("path", MAX_TEXT)?.unwrap_or_default();
        let cursor = p.optional_string("cursor", MAX_TEXT)?.unwrap_or_default();
        p.done()?;
        Ok(ListFolder {
            folder: folder_name(&path).to_string(),
            cursor,
        })
    }

    fn encode(&self) -> Vec<Value> {
        vec![Value::String(self.folder.clone()), Value::String(self.cursor.clone())]
    }
}

/// A folder as a caller spells it (`photos/`, `photos`, `/` or empty) as a share name without
/// the trailing slash (empty: the whole share).
pub fn folder_name(path: &str) -> &str {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed == "/" { "" } else { trimmed }
}

/// One file of a `shoal.list_folder` page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FolderEntry {
    /// The file's name in the holder's share (a [`check_name`]-safe relative path).
    pub path: String,
    pub size: u64,
    #[serde(serialize_with = "as_text")]
    pub id: ContentId,
}

/// One page of `shoal.list_folder`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct FolderPage {
    pub files: Vec<FolderEntry>,
    /// The cursor of the next page (the last path given), when more may follow.
    pub next: Option<String>,
}

/// Bytes of XML one entry may take at most, apart from its escaped path: the struct's tags, the
/// id and the size (measured: about 190; rounded up).
const ENTRY_XML_BYTES: usize = 320;
/// The XML of an answer around its entries, and some room for error in the estimate.
const PAGE_XML_SLACK: usize = 16 << 10;

/// Bytes `path` can take once escaped for XML (`&` as `&amp;`, quotes as `&quot;`: at most six
/// bytes for one).
fn escaped_len(path: &str) -> usize {
    path.len() + path.bytes().filter(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'')).count() * 5
}

impl FolderPage {
    /// A page of `entries` (in name order, as many as the caller read, at most one more than
    /// fits): as many as fit within [`MAX_LIST_ENTRIES`] and [`LIST_ANSWER_BYTES`] of XML, with
    /// `next` set when any were left out or the page is full.
    pub fn fill(entries: impl IntoIterator<Item = FolderEntry>) -> FolderPage {
        let mut page = FolderPage::default();
        let mut bytes = PAGE_XML_SLACK;
        let mut full = false;
        for entry in entries {
            let cost = ENTRY_XML_BYTES + escaped_len(&entry.path);
            if page.files.len() >= MAX_LIST_ENTRIES || bytes + cost > LIST_ANSWER_BYTES {
                full = true;
                break;
            }
            bytes += cost;
            page.files.push(entry);
        }
        if full {
            page.next = page.files.last().map(|e| e.path.clone());
        }
        page
    }

    /// The page cut to its first `limit` files; `next` then points after the last one kept.
    pub fn truncate(&mut self, limit: usize) {
        if self.files.len() > limit {
            self.files.truncate(limit);
            self.next = self.files.last().map(|f| f.path.clone());
        }
    }

    pub fn to_value(&self) -> Value {
        let files = self
            .files
            .iter()
            .map(|e| {
                let mut f = BTreeMap::new();
                f.insert("path".into(), Value::String(e.path.clone()));
                f.insert("size".into(), shoal_xmlrpc::size_value(e.size));
                f.insert("id".into(), Value::String(e.id.to_string()));
                Value::Struct(f)
            })
            .collect();
        let mut fields = BTreeMap::new();
        fields.insert("files".into(), Value::Array(files));
        if let Some(next) = &self.next {
            fields.insert("next".into(), Value::String(next.clone()));
        }
        Value::Struct(fields)
    }

    /// Reads a peer's page of the folder `folder` (no trailing `/`; empty: the whole share)
    /// asked for after `cursor`. At most [`MAX_LIST_ENTRIES`] entries are read; an entry is
    /// dropped unless its path passes [`check_name`], lies under `folder` and sorts after
    /// `cursor` (so no page can repeat or go back), its id is well formed and its size within
    /// [`crate::proto::limits::MAX_SIZE`]. `next` is kept only when it moves past `cursor` (no
    /// endless paging).
    pub fn from_value(value: Value, folder: &str, cursor: &str) -> FolderPage {
        let Value::Struct(mut fields) = value else {
            return FolderPage::default();
        };
        let prefix = if folder.is_empty() { String::new() } else { format!("{folder}/") };
        let items = match fields.remove("files") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let mut files = Vec::new();
        for item in items.into_iter().take(MAX_LIST_ENTRIES) {
            let Value::Struct(f) = item else { continue };
            let (Some(path), Some(size), Some(id)) = (
                text(&f, "path", MAX_TEXT)
                    .and_then(|p| check_name(&p).ok())
                    .map(|p| p.as_str().to_string()),
                size(&f),
                text(&f, "id", MAX_TEXT).and_then(|id| id.parse::<ContentId>().ok()),
            ) else {
                continue;
            };
            if !path.starts_with(&prefix) || path.as_str() <= cursor {
                continue;
            }
            files.push(FolderEntry { path, size, id });
        }
        let next = text(&fields, "next", shoal_index::name::MAX_NAME_BYTES).filter(|n| n.as_str() > cursor);
        FolderPage { files, next }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    const ID: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    fn entry(path: &str, size: i64, id: &str) -> Value {
        let mut f = BTreeMap::new();
        f.insert("path".into(), Value::String(path.into()));
        f.insert("size".into(), Value::Long(size));
        f.insert("id".into(), Value::String(id.into()));
        Value::Struct(f)
    }

    #[test]
    fn folders_are_spelt_without_their_slash() {
        let call = ListFolder::decode(Params::new("shoal.list_folder", vec![Value::String("photos/".into())])).unwrap();
        assert_eq!((call.folder.as_str(), call.cursor.as_str()), ("photos", ""));
        for (given, folder) in [("", ""), ("/", ""), ("a/b", "a/b"), ("a/b/", "a/b")] {
            assert_eq!(folder_name(given), folder);
        }
        assert!(ListFolder::decode(Params::new("shoal.list_folder", vec![Value::Integer(3)])).is_err());
    }

    #[test]
    fn list_folder_round_trips() {
        round_trip(ListFolder {
            folder: "photos/2024".into(),
            cursor: "photos/2024/a.jpg".into(),
        });
        round_trip(ListFolder {
            folder: String::new(),
            cursor: String::new(),
        });
    }

    #[test]
    fn pages_round_trip() {
        let id: ContentId = ID.parse().unwrap();
        let page = FolderPage {
            files: vec![
                FolderEntry {
                    path: "d/a".into(),
                    size: 1,
                    id,
                },
                FolderEntry {
                    path: "d/b & c".into(),
                    size: 1 << 40,
                    id,
                },
            ],
            next: Some("d/b & c".into()),
        };
        assert_eq!(FolderPage::from_value(page.to_value(), "d", ""), page);
        let last = FolderPage { next: None, ..page };
        assert_eq!(FolderPage::from_value(last.to_value(), "d", ""), last);
    }

    #[test]
    fn folder_pages_drop_every_entry_that_fails_a_check() {
        let mut fields = BTreeMap::new();
        fields.insert(
            "files".into(),
            Value::Array(vec![
                entry("photos/a.jpg", 5, ID),
                entry("photos/../etc/passwd", 5, ID),
                entry("/etc/passwd", 5, ID),
                entry("photos/.a.jpg.shoal-part", 5, ID),
                entry("photos/x\u{1b}y", 5, ID),
                entry("elsewhere/b.jpg", 5, ID),
                entry("photos/bad-id", 5, "nothex"),
                entry("photos/huge", 1 << 62, ID),
                entry("photos/neg", -1, ID),
                entry("photos/b.jpg", 7, ID),
                Value::Integer(3),
            ]),
        );
        fields.insert("next".into(), Value::String("photos/b.jpg".into()));
        let page = FolderPage::from_value(Value::Struct(fields.clone()), "photos", "");
        let paths: Vec<&str> = page.files.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["photos/a.jpg", "photos/b.jpg"]);
        assert_eq!(page.next.as_deref(), Some("photos/b.jpg"));
        let later = FolderPage::from_value(Value::Struct(fields), "photos", "photos/b.jpg");
        assert!(later.files.is_empty(), "nothing at or before the cursor: {later:?}");
        assert_eq!(later.next, None, "a next that does not move on ends the paging");
        assert_eq!(FolderPage::from_value(Value::Integer(1), "", ""), FolderPage::default());
    }

    #[test]
    fn a_page_is_bounded_in_entries_and_bytes() {
        let id: ContentId = ID.parse().unwrap();
        let many = (0..3000).map(|i| FolderEntry {
            path: format!("d/{i:05}"),
            size: 1,
            id,
        });
        let page = FolderPage::fill(many);
        assert_eq!(page.files.len(), MAX_LIST_ENTRIES);
        assert_eq!(page.next.as_deref(), Some("d/00999"));
        let long = (0..3000).map(|i| FolderEntry {
            path: format!("{}/{i:05}", "&".repeat(1000)),
            size: 1,
            id,
        });
        let page = FolderPage::fill(long);
        assert!(page.files.len() < MAX_LIST_ENTRIES && page.next.is_some());
        let xml = shoal_xmlrpc::encode_response(page.to_value());
        assert!(xml.len() <= LIST_ANSWER_BYTES, "{} bytes", xml.len());
        let small = FolderPage::fill((0..3).map(|i| FolderEntry {
            path: format!("d/{i}"),
            size: 1,
            id,
        }));
        assert_eq!((small.files.len(), small.next.as_deref()), (3, None));
        let xml = shoal_xmlrpc::encode_response(small.to_value());
        assert!(xml.len() <= PAGE_XML_SLACK + 3 * ENTRY_XML_BYTES, "the estimate holds: {xml}");
    }

    #[test]
    fn a_page_is_the_json_files_answer() {
        let mut page = FolderPage {
            files: (0..3)
                .map(|i| FolderEntry {
                    path: format!("d/{i}"),
                    size: 2,
                    id: ID.parse().unwrap(),
                })
                .collect(),
            next: None,
        };
        page.truncate(1);
        assert_eq!(
            serde_json::to_string(&page).unwrap(),
            format!(r#"{{"files":[{{"path":"d/0","size":2,"id":"{ID}"}}],"next":"d/0"}}"#)
        );
        page.truncate(5);
        assert_eq!(page.next.as_deref(), Some("d/0"), "a page within the limit is left as it is");
    }
}
