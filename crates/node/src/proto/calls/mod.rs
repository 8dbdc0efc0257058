//! Calls on the wire, one file per method (as mini-redis keeps one file per command). Each file
//! holds both directions of its method: the call's type, read by a node with
//! [`Call::decode`] (every field bounded) and written by a client with [`Call::encode`], and the
//! answer's type, written by a node with `to_value` and read by a client with `from_value`
//! (every item checked: one that does not fit is dropped, not repaired). A node and its clients
//! use the same type, so what one sends and the other reads cannot drift apart.
//!
//! A call that does not fit its type is refused with a [`BadCall`] (fault 1, as Python's
//! `SimpleXMLRPCServer` answers), naming the parameter, never echoing it at length.
//!
//! | file | method | answer |
//! | --- | --- | --- |
//! | [`hello`] | `hello(url)` | 0 ([`ACK`]) |
//! | [`query`] | `query(name, history=[])`, the seed's search | the file's bytes ([`Content`]) |
//! | [`fetch`] | `fetch(name, secret)`, the seed's owner call | 0 |
//! | [`list`] | `list()` | this node's names ([`Names`]) |
//! | [`list_folder`] | `shoal.list_folder(path, cursor)` | one page ([`FolderPage`]) |
//! | [`search`] | `shoal.search(pattern, query_id, ttl, history, budget_ms)` | matches ([`Matches`]) |
//! | [`locate`] | `shoal.locate(name, history, query_id, ttl, budget_ms)` | where it is ([`LocateAnswer`]) |
//! | [`info`] | `shoal.info(name_or_id)` | one file and its paths ([`FileInfo`]) |
//! | [`peers`] | `shoal.peers()`, peer exchange | peer URLs ([`PeerUrls`]) |
//! | [`peer_table`] | `shoal.peer_table()` | the table ([`PeerRows`]) |
//! | [`stats`] | `shoal.stats()` | counters ([`NodeStats`]) |
//! | [`dht`] | `shoal.dht([secret])` | the node on the Mainline DHT ([`DhtState`]) |
//! | [`download`] | `shoal.download(secret, targets, {output, hash, force, peers})` | [`DownloadStarted`] |
//! | [`downloads`] | `shoal.downloads([secret])` | the downloads ([`DownloadRows`]) |
//! | [`swarm`] | `shoal.swarm(id, url, pieces)`, who else fetches an id | members ([`Members`]) |
//! | [`control`] | `shoal.pause`, `shoal.resume`, `shoal.cancel` `(secret, target)` | 0 |
//! | [`system`] | `system.listMethods()`, `system.methodHelp(name)` | names, help text |
//!
//! The rows of `shoal.downloads` and `shoal.peer_table` are also the JSON API's rows
//! (`serde::Serialize`, with the JSON API's own field names and shape where the two differ).

pub mod control;
pub mod dht;
pub mod download;
pub mod downloads;
pub mod fetch;
pub mod hello;
pub mod info;
pub mod list;
pub mod list_folder;
pub mod locate;
pub mod peer_table;
pub mod peers;
pub mod query;
pub mod search;
pub mod stats;
pub mod swarm;
pub mod system;

use std::collections::BTreeMap;

use shoal_index::check_name;
use shoal_xmlrpc::Value;

use super::limits::{MAX_QUERY_ID, MAX_SIZE};

pub use control::{Action, Control};
pub use dht::{Dht, DhtState, LookupRow};
pub use download::{Download, DownloadStarted};
pub use downloads::{DownloadRow, DownloadRows, Downloads, SourceRow, UploadRow};
pub use fetch::Fetch;
pub use hello::Hello;
pub use info::{FileInfo, Info};
pub use list::{List, Names};
pub use list_folder::{FolderEntry, FolderPage, ListFolder, folder_name};
pub use locate::{Locate, LocateAnswer};
pub use peer_table::{PeerActivity, PeerRow, PeerRows, PeerState, PeerTable};
pub use peers::{PeerUrls, Peers, peers_answer};
pub use query::{Content, Query};
pub use search::{MatchLimits, Matches, PartialHolder, Search, SearchMatch, search_answer};
pub use stats::{IrohName, NodeStats, Stats};
pub use swarm::{Member, Members, Swarm};
pub use system::{ListMethods, MethodHelp};

/// A call that does not fit its method's signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadCall(pub String);

/// One XML-RPC call: the method it is sent as, how a node reads it and how a client writes it.
/// `decode(Params::new(call.method(), call.encode()))` gives the call back.
pub trait Call: Sized {
    /// The method's name on the wire.
    fn method(&self) -> &'static str;
    /// Reads a call from its parameters; any parameter that does not fit refuses the call.
    fn decode(params: Params) -> Result<Self, BadCall>;
    /// The parameters, in the order [`Call::decode`] reads them.
    fn encode(&self) -> Vec<Value>;
}

/// The answer of the calls that answer nothing in particular (`hello`, `fetch`, the download
/// controls): 0, as the seed's nodes answer. A client reads any answer to these as done.
pub const ACK: Value = Value::Integer(0);

/// Longest secret accepted (a generated one is 64 hex characters).
const MAX_SECRET: usize = 1024;
/// Longest name, path or target string (longer names are refused by the name check, with the
/// seed's fault 200, so the limit here only bounds memory).
const MAX_TEXT: usize = 16 << 10;

/// The parameters of a call, read in order.
pub struct Params {
    method: String,
    values: std::vec::IntoIter<Value>,
    position: usize,
}

impl Params {
    pub fn new(method: &str, values: Vec<Value>) -> Params {
        Params {
            method: method.chars().take(100).collect(),
            values: values.into_iter(),
            position: 0,
        }
    }

    /// The method the parameters were sent with (at most 100 characters of it).
    pub fn method(&self) -> &str {
        &self.method
    }

    fn next(&mut self) -> Option<Value> {
        self.position += 1;
        self.values.next()
    }

    pub(crate) fn bad(&self, what: &str, expected: &str) -> BadCall {
        BadCall(format!("{}: parameter {} ({what}) must be {expected}", self.method, self.position))
    }

    fn bounded(&self, s: String, what: &str, max: usize) -> Result<String, BadCall> {
        if s.len() > max {
            return Err(self.bad(what, &format!("at most {max} bytes")));
        }
        Ok(s)
    }

    pub fn string(&mut self, what: &str, max: usize) -> Result<String, BadCall> {
        match self.next() {
            Some(Value::String(s)) => self.bounded(s, what, max),
            Some(_) => Err(self.bad(what, "a string")),
            None => Err(BadCall(format!("{}: missing parameter {} ({what})", self.method, self.position))),
        }
    }

    pub fn optional_string(&mut self, what: &str, max: usize) -> Result<Option<String>, BadCall> {
        match self.next() {
            Some(Value::String(s)) => self.bounded(s, what, max).map(Some),
            None | Some(Value::Nil) => Ok(None),
            Some(_) => Err(self.bad(what, "a string")),
        }
    }

    pub fn optional_int(&mut self, what: &str) -> Result<Option<i64>, BadCall> {
        match self.next() {
            None | Some(Value::Nil) => Ok(None),
            Some(value) => shoal_xmlrpc::as_i64(&value).map(Some).ok_or_else(|| self.bad(what, "an integer")),
        }
    }

    pub fn strings(&mut self, what: &str, max_items: usize, max_len: usize) -> Result<Vec<String>, BadCall> {
        let expected = format!("an array of at most {max_items} strings of at most {max_len} bytes");
        match self.next() {
            None | Some(Value::Nil) => Ok(Vec::new()),
            Some(Value::Array(items)) if items.len() <= max_items => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) if s.len() <= max_len => Ok(s),
                    _ => Err(()),
                })
                .collect::<Result<_, _>>()
                .map_err(|_| self.bad(what, &expected)),
            Some(_) => Err(self.bad(what, &expected)),
        }
    }

    pub fn optional_struct(&mut self, what: &str) -> Result<BTreeMap<String, Value>, BadCall> {
        match self.next() {
            None | Some(Value::Nil) => Ok(BTreeMap::new()),
            Some(Value::Struct(fields)) => Ok(fields),
            Some(_) => Err(self.bad(what, "a struct")),
        }
    }

    /// Refuses parameters beyond the signature.
    pub fn done(mut self) -> Result<(), BadCall> {
        match self.values.next() {
            None => Ok(()),
            Some(_) => Err(BadCall(format!("{}: too many parameters", self.method))),
        }
    }
}

/// Where a forwarded search stands, as the caller says (bounded; the node clamps it further).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteParams {
    pub query_id: Option<String>,
    pub ttl: Option<u32>,
    pub history: Vec<String>,
    pub budget_ms: Option<u64>,
}

/// A query id as a node takes it: an empty or over-long one is replaced by the node's own.
fn query_id(id: Option<String>) -> Option<String> {
    id.filter(|id| !id.is_empty() && id.len() <= MAX_QUERY_ID)
}

impl RouteParams {
    fn ttl_value(&self) -> Option<Value> {
        self.ttl.map(|t| Value::Integer(i32::try_from(t).unwrap_or(i32::MAX)))
    }

    fn budget_value(&self) -> Option<Value> {
        self.budget_ms.map(|b| Value::Integer(b.min(i32::MAX as u64) as i32))
    }

    fn query_id_value(&self) -> Option<Value> {
        self.query_id.clone().map(Value::String)
    }

    fn history_value(&self) -> Value {
        strings_value(&self.history)
    }
}

/// Parameters with optional ones among them: the absent ones at the end are left off (the
/// method's defaults apply), one in the middle is sent as nil, which every decoder here reads as
/// absent.
fn trimmed(params: Vec<Option<Value>>) -> Vec<Value> {
    let used = params.iter().rposition(Option::is_some).map_or(0, |last| last + 1);
    params.into_iter().take(used).map(|p| p.unwrap_or(Value::Nil)).collect()
}

fn strings_value(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

// ---- reading answers: shared checks ----------------------------------------------------------

/// A string field of an answer, at most `max` bytes.
fn text(fields: &BTreeMap<String, Value>, key: &str, max: usize) -> Option<String> {
    match fields.get(key)? {
        Value::String(s) if s.len() <= max => Some(s.clone()),
        _ => None,
    }
}

/// A count or size field of an answer: not negative, at most `max`.
fn count(fields: &BTreeMap<String, Value>, key: &str, max: u64) -> Option<u64> {
    let n = fields.get(key).and_then(shoal_xmlrpc::as_i64)?;
    u64::try_from(n).ok().filter(|n| *n <= max)
}

/// A file size field (`size`), within [`MAX_SIZE`].
fn size(fields: &BTreeMap<String, Value>) -> Option<u64> {
    count(fields, "size", MAX_SIZE)
}

/// A boolean field; absent or of another type is `None`.
fn flag(fields: &BTreeMap<String, Value>, key: &str) -> Option<bool> {
    match fields.get(key)? {
        Value::Boolean(b) => Some(*b),
        _ => None,
    }
}

/// A name field (`name`) that passes the same check as a local name.
fn checked_name(fields: &BTreeMap<String, Value>) -> Option<String> {
    let name = text(fields, "name", MAX_TEXT)?;
    check_name(&name).ok().map(|n| n.as_str().to_string())
}

/// Serialises a value by its `Display` (content ids as hex in the JSON API).
fn as_text<T: std::fmt::Display, S: serde::Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The call `call` encodes to is the call `decode` reads back.
    pub(super) fn round_trip<C: Call + PartialEq + std::fmt::Debug>(call: C) {
        let params = call.encode();
        let decoded = C::decode(Params::new(call.method(), params.clone()));
        assert_eq!(decoded.as_ref(), Ok(&call), "{} as {params:?}", call.method());
    }

    #[test]
    fn absent_parameters_are_left_off_at_the_end_and_nil_in_between() {
        let s = |t: &str| Some(Value::String(t.into()));
        assert_eq!(trimmed(vec![s("a"), None, None]), vec![Value::String("a".into())]);
        assert_eq!(
            trimmed(vec![s("a"), None, s("c")]),
            vec![Value::String("a".into()), Value::Nil, Value::String("c".into())]
        );
        assert_eq!(trimmed(vec![None, None]), Vec::<Value>::new());
    }

    #[test]
    fn answer_fields_are_bounded() {
        let mut f = BTreeMap::new();
        f.insert("s".to_string(), Value::String("abcd".into()));
        f.insert("n".to_string(), Value::Integer(-1));
        f.insert("m".to_string(), Value::Long(1 << 40));
        assert_eq!(text(&f, "s", 4).as_deref(), Some("abcd"));
        assert_eq!(text(&f, "s", 3), None, "over its bound");
        assert_eq!(text(&f, "n", 3), None, "not a string");
        assert_eq!(count(&f, "n", 10), None, "negative");
        assert_eq!(count(&f, "m", 1 << 40), Some(1 << 40));
        assert_eq!(count(&f, "m", 10), None, "over its bound");
    }
}
