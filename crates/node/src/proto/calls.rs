//! Calls on the wire: one type per method, decoded from XML-RPC parameters with every field
//! bounded. A call that does not fit its type is refused with a [`BadCall`] (fault 1, as
//! Python's `SimpleXMLRPCServer` answers), naming the parameter, never echoing it at length.

use std::collections::BTreeMap;

use shoal_index::ContentId;
use shoal_xmlrpc::Value;

use super::limits::{MAX_HISTORY, MAX_PATTERN, MAX_QUERY_ID, MAX_TARGETS, MAX_URL_BYTES};

/// A call that does not fit its method's signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadCall(pub String);

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

    fn next(&mut self) -> Option<Value> {
        self.position += 1;
        self.values.next()
    }

    fn bad(&self, what: &str, expected: &str) -> BadCall {
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

/// `hello(url)`.
pub struct Hello {
    pub url: String,
}

impl Hello {
    pub fn decode(mut p: Params) -> Result<Self, BadCall> {
        let url = p.string("url", MAX_URL_BYTES)?;
        p.done()?;
        Ok(Hello { url })
    }
}

/// `query(name, history=[])`, the seed's search.
pub struct Query {
    pub name: String,
    pub history: Vec<String>,
}

impl Query {
    pub fn decode(mut p: Params) -> Result<Self, BadCall> {
        let name = p.string("name", MAX_TEXT)?;
        let history = p.strings("history", MAX_HISTORY, MAX_URL_BYTES)?;
        p.done()?;
        Ok(Query { name, history })
    }
}

/// `fetch(name, secret)`, the seed's owner call.
pub struct Fetch {
    pub name: String,
    pub secret: String,
}

impl Fetch {
    pub fn decode(mut p: Params) -> Result<Self, BadCall> {
        let name = p.string("name", MAX_TEXT)?;
        let secret = p.string("secret", MAX_SECRET)?;
        p.done()?;
        Ok(Fetch { name, secret })
    }
}

/// Where a forwarded search stands, as the caller says (bounded; the node clamps it further).
#[derive(Debug, Clone, Default)]
pub struct RouteParams {
    pub query_id: Option<String>,
    pub ttl: Option<u32>,
    pub history: Vec<String>,
    pub budget_ms: Option<u64>,
}

fn query_id(id: Option<String>) -> Option<String> {
    id.filter(|id| !id.is_empty() && id.len() <= MAX_QUERY_ID)
}

/// `shoal.locate(name, history, query_id, ttl, budget_ms)`.
pub struct Locate {
    pub name: String,
    pub route: RouteParams,
}

impl Locate {
    pub fn decode(mut p: Params) -> Result<Self, BadCall> {
        let name = p.string("name", MAX_TEXT)?;
        let history = p.strings("history", MAX_HISTORY, MAX_URL_BYTES)?;
        let query_id = query_id(p.optional_string("query_id", MAX_PATTERN)?);
        let ttl = p.optional_int("ttl")?.and_then(|t| u32::try_from(t).ok());
        let budget_ms = p.optional_int("budget_ms")?.and_then(|b| u64::try_from(b).ok());
        p.done()?;
        Ok(Locate {
            name,
            route: RouteParams {
                query_id,
                ttl,
                history,
                budget_ms,
            },
        })
    }
}

/// `shoal.search(pattern, query_id, ttl, history, budget_ms)`.
pub struct Search {
    pub pattern: String,
    pub route: RouteParams,
}

impl Search {
    pub fn decode(mut p: Params) -> Result<Self, BadCall> {
        let pattern = p.optional_string("pattern", MAX_PATTERN)?.unwrap_or_default();
        let query_id = query_id(p.optional_string("query_id", MAX_PATTERN)?);
        let ttl = p.optional_int("ttl")?.and_then(|t| u32::try_from(t).ok());
        let history = p.strings("history", MAX_HISTORY, MAX_URL_BYTES)?;
        let budget_ms = p.optional_int("budget_ms")?.and_then(|b| u64::try_from(b).ok());
        p.done()?;
        Ok(Search {
            pattern,
            route: RouteParams {
                query_id,
                ttl,
                history,
                budget_ms,
            },
        })
    }
}

/// A call with one string parameter (`shoal.info(name_or_id)`, `system.methodHelp(name)`).
pub struct One {
    pub value: String,
}

impl One {
    pub fn decode(mut p: Params, what: &str) -> Result<Self, BadCall> {
        let value = p.string(what, MAX_TEXT)?;
        p.done()?;
        Ok(One { value })
    }
}

/// A call without parameters.
pub fn none(p: Params) -> Result<(), BadCall> {
    p.done()
}

/// `shoal.list_folder(path, cursor)`: one page of the files under a shared folder.
pub struct ListFolder {
    /// The folder's name in the share without a trailing `/`; empty for the whole share. Not
    /// yet checked as a name (the service does that, with the seed's fault 200).
    pub folder: String,
    /// The last path of the previous page (exclusive); empty for the first page.
    pub cursor: String,
}

impl ListFolder {
    pub fn decode(mut p: Params) -> Result<Self, BadCall> {
        let path = p.optional_string("path", MAX_TEXT)?.unwrap_or_default();
        let cursor = p.optional_string("cursor", MAX_TEXT)?.unwrap_or_default();
        p.done()?;
        Ok(ListFolder {
            folder: folder_name(&path).to_string(),
            cursor,
        })
    }
}

/// A folder as a caller spells it (`photos/`, `photos`, `/` or empty) as a share name without
/// the trailing slash (empty: the whole share).
pub fn folder_name(path: &str) -> &str {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed == "/" { "" } else { trimmed }
}

/// `shoal.download(secret, targets, {output, hash, force, peers})`.
pub struct Download {
    pub secret: String,
    pub targets: Vec<String>,
    pub output: Option<String>,
    pub hash: Option<ContentId>,
    pub force: bool,
    pub peers: Vec<String>,
}

impl Download {
    pub fn decode(mut p: Params) -> Result<Self, BadCall> {
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
}

/// `shoal.pause`, `shoal.resume`, `shoal.cancel` `(secret, target_or_name)`.
pub struct Control {
    pub secret: String,
    pub target: String,
}

impl Control {
    pub fn decode(mut p: Params) -> Result<Self, BadCall> {
        let secret = p.string("secret", MAX_SECRET)?;
        let target = p.string("target", MAX_TEXT)?;
        p.done()?;
        Ok(Control { secret, target })
    }
}

/// `shoal.downloads([secret])`: with the secret the owner's full view, without it a redacted one.
pub struct Downloads {
    pub secret: Option<String>,
}

impl Downloads {
    pub fn decode(mut p: Params) -> Result<Self, BadCall> {
        let secret = p.optional_string("secret", MAX_SECRET)?;
        p.done()?;
        Ok(Downloads { secret })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_bounded() {
        let long = Value::String("x".repeat(MAX_URL_BYTES + 1));
        assert!(Hello::decode(Params::new("hello", vec![long])).is_err());
        let history = Value::Array((0..MAX_HISTORY + 1).map(|_| Value::String("http://h:1".into())).collect());
        assert!(Query::decode(Params::new("query", vec![Value::String("a".into()), history])).is_err());
        assert!(Hello::decode(Params::new("hello", vec![Value::String("http://h:1".into()), Value::Nil])).is_err());
        let search = Search::decode(Params::new(
            "shoal.search",
            vec![Value::String("a".into()), Value::String("q".repeat(200)), Value::Integer(-3)],
        ))
        .unwrap();
        assert_eq!(search.route.query_id, None, "an over-long query id is replaced");
        assert_eq!(search.route.ttl, None, "a negative ttl is ignored");
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
}
