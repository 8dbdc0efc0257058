//! `shoal.search(pattern, query_id, ttl, history, budget_ms) -> [{name, size, id, urls, partial?}]`:
//! files whose names match `pattern` (a glob with `*` and `?`, or a substring) or whose content
//! id is `pattern`, across the network. Each node answers with its own matches and what its
//! peers answered, merged; the answer names every holder it knows of each match. A node
//! downloading a match names itself too, and says how much it holds in `partial`
//! (`[{url, held}]`, `held` the 1 MiB pieces it holds; each `url` is one of `urls`): a seeker
//! learns of the swarm, and reads what each partial holder has from its `/have`.
//!
//! Only `pattern` is needed: a caller that leaves out the rest starts a search at that node
//! (`shoal search`); one with `ttl` 1 asks that node about its own files alone.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use shoal_index::ContentId;
use shoal_xmlrpc::Value;

use super::{BadCall, Call, Params, RouteParams, as_text, checked_name, query_id, size, trimmed};
use crate::proto::limits::{
    MAX_HISTORY, MAX_HOLDERS_PER_ANSWER, MAX_HOLDERS_PER_MATCH, MAX_MATCHES, MAX_MERGED, MAX_PATTERN, MAX_URL_BYTES,
};
use crate::proto::url::{holder, host_port};

/// `shoal.search(pattern, query_id, ttl, history, budget_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub pattern: String,
    pub route: RouteParams,
}

impl Search {
    pub const METHOD: &'static str = "shoal.search";

    /// A search for `pattern` that starts at the node asked.
    pub fn new(pattern: &str) -> Search {
        Search {
            pattern: pattern.to_string(),
            route: RouteParams::default(),
        }
    }

    /// A search for `pattern` among the asked node's own files (ttl 1: it asks no one else),
    /// under the query id `query_id`.
    pub fn own_files(pattern: &str, query_id: String) -> Search {
        Search {
            pattern: pattern.to_string(),
            route: RouteParams {
                query_id: Some(query_id),
                ttl: Some(1),
                ..Default::default()
            },
        }
    }
}

impl Call for Search {
    fn method(&self) -> &'static str {
        Self::METHOD
    }

    fn decode(mut p: Params) -> Result<Self, BadCall> {
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

    fn encode(&self) -> Vec<Value> {
        let r = &self.route;
        // The history goes as an array (empty or not) unless nothing follows it.
        let history = (!r.history.is_empty() || r.budget_ms.is_some()).then(|| r.history_value());
        trimmed(vec![
            Some(Value::String(self.pattern.clone())),
            r.query_id_value(),
            r.ttl_value(),
            history,
            r.budget_value(),
        ])
    }
}

/// One match of `shoal.search`; also a row of the JSON API's search stream, where the holders
/// are called `holders` (on XML-RPC: `urls`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchMatch {
    pub name: String,
    pub size: u64,
    #[serde(serialize_with = "as_text")]
    pub id: ContentId,
    /// Base URLs of nodes that hold it, whole or in part.
    pub holders: Vec<String>,
    /// Which of them are downloading it, and how much each holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partial: Vec<PartialHolder>,
}

/// A node that holds part of a match (it is downloading it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartialHolder {
    pub url: String,
    /// Pieces of 1 MiB it holds ([`crate::proto::have`]).
    pub held: u64,
}

/// Pieces of a file of `size` bytes on the wire (1 MiB each, as `/have` counts them).
fn wire_pieces(size: u64) -> u64 {
    size.div_ceil(1 << 20).max(1)
}

impl SearchMatch {
    pub fn to_value(&self) -> Value {
        let mut fields = BTreeMap::new();
        fields.insert("name".into(), Value::String(self.name.clone()));
        fields.insert("size".into(), shoal_xmlrpc::size_value(self.size));
        fields.insert("id".into(), Value::String(self.id.to_string()));
        fields.insert(
            "urls".into(),
            Value::Array(self.holders.iter().cloned().map(Value::String).collect()),
        );
        if !self.partial.is_empty() {
            let partial = self.partial.iter().map(|p| {
                let mut f = BTreeMap::new();
                f.insert("url".into(), Value::String(p.url.clone()));
                f.insert("held".into(), shoal_xmlrpc::size_value(p.held));
                Value::Struct(f)
            });
            fields.insert("partial".into(), Value::Array(partial.collect()));
        }
        Value::Struct(fields)
    }
}

/// How much of a search answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchLimits {
    pub matches: usize,
    /// Distinct holders (by `host:port`) kept per match.
    pub holders_per_match: usize,
    pub holders_per_answer: usize,
}

impl MatchLimits {
    /// A peer's answer to a search this node forwarded.
    pub const PEER: MatchLimits = MatchLimits {
        matches: MAX_MATCHES,
        holders_per_match: MAX_HOLDERS_PER_MATCH,
        holders_per_answer: MAX_HOLDERS_PER_ANSWER,
    };
    /// The answer of the owner's own node, which merged the network's answers: every match it
    /// may hold, each with as many holders as a peer's.
    pub const MERGED: MatchLimits = MatchLimits {
        matches: MAX_MERGED,
        holders_per_match: MAX_HOLDERS_PER_MATCH,
        holders_per_answer: MAX_MERGED * MAX_HOLDERS_PER_MATCH,
    };
}

/// `shoal.search`'s answer: the matches.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Matches(pub Vec<SearchMatch>);

impl Matches {
    pub fn to_value(&self) -> Value {
        Value::Array(self.0.iter().map(SearchMatch::to_value).collect())
    }

    /// Reads a peer's answer: at most [`MAX_MATCHES`] matches, each with at most
    /// [`MAX_HOLDERS_PER_MATCH`] distinct holders (by `host:port`), at most
    /// [`MAX_HOLDERS_PER_ANSWER`] holders in all. Malformed items are dropped.
    pub fn from_value(value: Value) -> Matches {
        Matches::from_value_within(value, MatchLimits::PEER)
    }

    /// Reads an answer within `limits`; malformed items are dropped.
    pub fn from_value_within(value: Value, limits: MatchLimits) -> Matches {
        let Value::Array(items) = value else { return Matches::default() };
        let mut budget = limits.holders_per_answer;
        let mut out = Vec::new();
        for item in items.into_iter().take(limits.matches) {
            let Value::Struct(fields) = item else { continue };
            let id = match fields.get("id") {
                Some(Value::String(id)) => id.parse::<ContentId>().ok(),
                _ => None,
            };
            let (Some(name), Some(size), Some(id)) = (checked_name(&fields), size(&fields), id) else {
                continue;
            };
            let Some(Value::Array(urls)) = fields.get("urls") else { continue };
            let mut seen = HashSet::new();
            let mut holders = Vec::new();
            for url in urls.iter().take(limits.holders_per_match * 4) {
                if holders.len() >= limits.holders_per_match || budget == 0 {
                    break;
                }
                let Value::String(url) = url else { continue };
                let Ok(url) = holder(url) else { continue };
                if seen.insert(host_port(&url).to_string()) {
                    holders.push(url);
                    budget -= 1;
                }
            }
            if !holders.is_empty() {
                let partial = partial_holders(&fields, &holders, size);
                out.push(SearchMatch {
                    name,
                    size,
                    id,
                    holders,
                    partial,
                });
            }
        }
        Matches(out)
    }
}

/// The `partial` field of a match: only holders the match names, each once, holding no more
/// pieces than the size has; anything else is dropped.
fn partial_holders(fields: &BTreeMap<String, Value>, holders: &[String], size: u64) -> Vec<PartialHolder> {
    let Some(Value::Array(items)) = fields.get("partial") else {
        return Vec::new();
    };
    let mut partial: Vec<PartialHolder> = Vec::new();
    for item in items.iter().take(holders.len()) {
        let Value::Struct(f) = item else { continue };
        let (Some(Value::String(url)), Some(held)) = (f.get("url"), super::count(f, "held", wire_pieces(size))) else {
            continue;
        };
        let Ok(url) = holder(url) else { continue };
        if holders.contains(&url) && !partial.iter().any(|p| p.url == url) {
            partial.push(PartialHolder { url, held });
        }
    }
    partial
}

/// Reads a peer's `shoal.search` answer ([`Matches::from_value`]).
pub fn search_answer(value: Value) -> Vec<SearchMatch> {
    Matches::from_value(value).0
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    const ID: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    fn item(name: &str, size: i64, urls: Vec<String>) -> Value {
        let mut f = BTreeMap::new();
        f.insert("name".into(), Value::String(name.into()));
        f.insert("size".into(), Value::Long(size));
        f.insert("id".into(), Value::String(ID.into()));
        f.insert("urls".into(), Value::Array(urls.into_iter().map(Value::String).collect()));
        Value::Struct(f)
    }

    #[test]
    fn searches_round_trip_in_every_shape_they_are_sent() {
        let s = |t: &str| Value::String(t.into());
        let plain = Search::new("*.iso");
        assert_eq!(plain.encode(), vec![s("*.iso")], "a search from the top is the pattern alone");
        round_trip(plain);
        let own = Search::own_files("", "q1".into());
        assert_eq!(own.encode(), vec![s(""), s("q1"), Value::Integer(1)]);
        round_trip(own);
        let forwarded = Search {
            pattern: "a".into(),
            route: RouteParams {
                query_id: Some("q2".into()),
                ttl: Some(4),
                history: vec!["http://h:1".into(), "http://g:2".into()],
                budget_ms: Some(1200),
            },
        };
        assert_eq!(forwarded.encode().len(), 5);
        round_trip(forwarded);
        round_trip(Search {
            pattern: "a".into(),
            route: RouteParams {
                budget_ms: Some(9),
                ..Default::default()
            },
        });
    }

    #[test]
    fn over_long_or_negative_route_fields_are_dropped() {
        let search = Search::decode(Params::new(
            "shoal.search",
            vec![Value::String("a".into()), Value::String("q".repeat(200)), Value::Integer(-3)],
        ))
        .unwrap();
        assert_eq!(search.route.query_id, None, "an over-long query id is replaced");
        assert_eq!(search.route.ttl, None, "a negative ttl is ignored");
    }

    #[test]
    fn matches_round_trip() {
        let found = Matches(vec![SearchMatch {
            name: "a/b.txt".into(),
            size: 5 << 32,
            id: ID.parse().unwrap(),
            holders: vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
            partial: vec![PartialHolder {
                url: "http://127.0.0.1:2".into(),
                held: 7,
            }],
        }]);
        assert_eq!(Matches::from_value(found.to_value()), found);
    }

    #[test]
    fn partial_holders_are_believed_only_as_far_as_the_match_goes() {
        let mut f = match item("f.bin", 3 << 20, vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()]) {
            Value::Struct(f) => f,
            _ => unreachable!(),
        };
        let partial = |url: &str, held: i64| {
            let mut p = BTreeMap::new();
            p.insert("url".to_string(), Value::String(url.into()));
            p.insert("held".to_string(), Value::Long(held));
            Value::Struct(p)
        };
        f.insert(
            "partial".into(),
            Value::Array(vec![
                partial("http://127.0.0.1:1", 2),
                partial("http://127.0.0.1:1", 1),
                partial("http://10.9.9.9:1", 1),
                partial("http://127.0.0.1:2", 4),
            ]),
        );
        let found = search_answer(Value::Array(vec![Value::Struct(f)]));
        let want = vec![PartialHolder {
            url: "http://127.0.0.1:1".into(),
            held: 2,
        }];
        // Named twice: the first; not among the holders: dropped; more pieces than 3 MiB has: dropped.
        assert_eq!(found[0].partial, want);
    }

    #[test]
    fn lies_are_dropped_at_the_edge() {
        let good = vec!["http://127.0.0.1:1".to_string()];
        let answer = Value::Array(vec![
            item("ok.txt", 5, good.clone()),
            item(".bashrc", 5, good.clone()),
            item("../x", 5, good.clone()),
            item("a\u{1b}[2Jb", 5, good.clone()),
            item("big", 1 << 62, good.clone()),
            item("neg", -1, good.clone()),
            item("nohold", 5, vec!["http://u:p@h:1".into(), "ftp://h".into()]),
        ]);
        let found = search_answer(answer);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].name, "ok.txt");
    }

    #[test]
    fn holders_are_capped_and_deduplicated() {
        let urls: Vec<String> = (0..5000).map(|i| format!("http://10.0.{}.{}:80", i / 250, i % 250)).collect();
        let mut dup = vec!["http://h:1".to_string(), "http://H:1/".to_string(), "http://h:1/RPC2".to_string()];
        dup.extend(urls.clone());
        let found = search_answer(Value::Array(vec![item("a", 1, dup)]));
        assert_eq!(found[0].holders.len(), MAX_HOLDERS_PER_MATCH);
        assert_eq!(found[0].holders[0], "http://h:1");
        assert_ne!(host_port(&found[0].holders[1]), "h:1");
        let many: Vec<Value> = (0..1000)
            .map(|i| item(&format!("f{i}"), 1, urls[i * 5..i * 5 + 5].to_vec()))
            .collect();
        let found = search_answer(Value::Array(many));
        assert!(found.len() <= MAX_MATCHES);
        assert!(found.iter().map(|m| m.holders.len()).sum::<usize>() <= MAX_HOLDERS_PER_ANSWER);
    }

    #[test]
    fn the_owner_reads_every_match_its_node_merged() {
        let urls = vec!["http://127.0.0.1:1".to_string()];
        let many = Value::Array((0..MAX_MERGED + 10).map(|i| item(&format!("f{i}"), 1, urls.clone())).collect());
        assert_eq!(Matches::from_value(many.clone()).0.len(), MAX_MATCHES);
        assert_eq!(Matches::from_value_within(many, MatchLimits::MERGED).0.len(), MAX_MERGED);
    }

    #[test]
    fn a_match_is_a_json_row_with_its_holders() {
        let row = SearchMatch {
            name: "a".into(),
            size: 1,
            id: ID.parse().unwrap(),
            holders: vec!["http://h:1".into()],
            partial: Vec::new(),
        };
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            format!(r#"{{"name":"a","size":1,"id":"{ID}","holders":["http://h:1"]}}"#)
        );
        let row = SearchMatch {
            partial: vec![PartialHolder {
                url: "http://h:1".into(),
                held: 3,
            }],
            ..row
        };
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            format!(r#"{{"name":"a","size":1,"id":"{ID}","holders":["http://h:1"],"partial":[{{"url":"http://h:1","held":3}}]}}"#)
        );
    }
}
