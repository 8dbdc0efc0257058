//! XML-RPC over `POST /` and `POST /RPC2`: decoding, dispatch to [`Api`], faults.
//!
//! Bodies are bounded in size and in the time a client may take to send them; a malformed call
//! gets fault 1 (as Python's `SimpleXMLRPCServer` answers), never a crash. The seed's methods
//! keep the seed's signatures; shoal's own live under the `shoal.` prefix.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use shoal_xmlrpc::{Fault, Value};

use crate::api::{Api, ApiError, Route, hit_value, match_value};
use crate::faults::{BAD_CALL, fault_of};

/// Every method with its signature and help text, for `system.listMethods` and
/// `system.methodHelp`.
pub const METHODS: &[(&str, &str)] = &[
    ("hello", "hello(url) -> 0. Learn the node at url."),
    (
        "query",
        "query(name, history=[]) -> content. The file from this node or the first node of the network that has it; fault 100 when none has it, 200 for a name outside the share, 300 when it is over the size limit.",
    ),
    (
        "fetch",
        "fetch(name, secret) -> 0. Download name from the network into this node's share (owner only).",
    ),
    ("list", "list() -> [name]. This node's own files."),
    (
        "shoal.search",
        "shoal.search(pattern) -> [{name, size, id, urls}]. Files whose names match pattern (a glob with * and ?, or a substring) across the network.",
    ),
    (
        "shoal.locate",
        "shoal.locate(name, history, query_id, ttl, budget_ms) -> {url, name, size, id}. Where a file is; answered once per query id.",
    ),
    (
        "shoal.info",
        "shoal.info(name_or_id) -> {name, size, id, content, files, outboard}. Details of a file of this node, with its HTTP paths.",
    ),
    ("shoal.peers", "shoal.peers() -> [url]. The peers this node knows (peer exchange)."),
    (
        "shoal.stats",
        "shoal.stats() -> {url, files, peers, messages_sent}. Counters of this node.",
    ),
    (
        "shoal.download",
        "shoal.download(secret, targets, {output, hash, force, peers}) -> {name, target}. Start a background download (owner only); targets are names, content ids or http mirror URLs; output defaults to the share.",
    ),
    (
        "shoal.downloads",
        "shoal.downloads() -> [{name, target, size, done, live_sources, state}]. The node's downloads and their progress.",
    ),
    (
        "shoal.pause",
        "shoal.pause(secret, target_or_name) -> 0. Pause a download, keeping its progress (owner only).",
    ),
    (
        "shoal.resume",
        "shoal.resume(secret, target_or_name) -> 0. Continue a paused, failed or interrupted download (owner only).",
    ),
    (
        "shoal.cancel",
        "shoal.cancel(secret, target_or_name) -> 0. Stop a download and delete its partial data (owner only).",
    ),
    (
        "shoal.peer_table",
        "shoal.peer_table() -> [{url, kind, failures, backing_off}]. The peer table with each peer's state.",
    ),
    ("system.listMethods", "system.listMethods() -> [name]."),
    ("system.methodHelp", "system.methodHelp(name) -> text."),
];

fn xml_response(xml: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], Body::from(xml)).into_response()
}

fn fault_response(fault: &Fault) -> Response {
    xml_response(shoal_xmlrpc::encode_fault(fault))
}

/// `POST /` and `POST /RPC2`.
pub async fn handle(State(api): State<Api>, body: Body) -> Response {
    let limit = api.options().max_rpc_body;
    let read = tokio::time::timeout(api.options().request_timeout, axum::body::to_bytes(body, limit)).await;
    let bytes: Bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return fault_response(&Fault::new(BAD_CALL, format!("the request body is over {limit} bytes or broken"))),
        Err(_) => return fault_response(&Fault::new(BAD_CALL, "the request body was not sent in time")),
    };
    let call = match shoal_xmlrpc::decode_call(&bytes) {
        Ok(call) => call,
        Err(error) => return fault_response(&Fault::new(BAD_CALL, format!("malformed call: {error}"))),
    };
    match dispatch(&api, &call.method, call.params).await {
        Ok(value) => xml_response(shoal_xmlrpc::encode_response(value)),
        Err(Dispatch::Api(error)) => fault_response(&fault_of(&error)),
        Err(Dispatch::Bad(message)) => fault_response(&Fault::new(BAD_CALL, message)),
    }
}

enum Dispatch {
    Api(ApiError),
    Bad(String),
}

impl From<ApiError> for Dispatch {
    fn from(error: ApiError) -> Self {
        Dispatch::Api(error)
    }
}

/// Parameters of a call, read in order with clear errors.
struct Params {
    method: String,
    values: std::vec::IntoIter<Value>,
    position: usize,
}

impl Params {
    fn next(&mut self) -> Option<Value> {
        self.position += 1;
        self.values.next()
    }

    fn string(&mut self, what: &str) -> Result<String, Dispatch> {
        match self.next() {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(self.bad(what, "a string")),
            None => Err(Dispatch::Bad(format!(
                "{}: missing parameter {} ({what})",
                self.method, self.position
            ))),
        }
    }

    fn optional_string(&mut self, what: &str) -> Result<Option<String>, Dispatch> {
        match self.next() {
            Some(Value::String(s)) => Ok(Some(s)),
            None | Some(Value::Nil) => Ok(None),
            Some(_) => Err(self.bad(what, "a string")),
        }
    }

    fn optional_int(&mut self, what: &str) -> Result<Option<i64>, Dispatch> {
        match self.next() {
            None | Some(Value::Nil) => Ok(None),
            Some(value) => shoal_xmlrpc::as_i64(&value).map(Some).ok_or_else(|| self.bad(what, "an integer")),
        }
    }

    fn strings(&mut self, what: &str) -> Result<Vec<String>, Dispatch> {
        match self.next() {
            None | Some(Value::Nil) => Ok(Vec::new()),
            Some(Value::Array(items)) if items.len() <= 64 => items
                .into_iter()
                .map(|item| if let Value::String(s) = item { Ok(s) } else { Err(()) })
                .collect::<Result<_, _>>()
                .map_err(|_| self.bad(what, "an array of strings")),
            Some(_) => Err(self.bad(what, "an array of at most 64 strings")),
        }
    }

    fn bad(&self, what: &str, expected: &str) -> Dispatch {
        Dispatch::Bad(format!("{}: parameter {} ({what}) must be {expected}", self.method, self.position))
    }

    fn done(mut self) -> Result<(), Dispatch> {
        match self.values.next() {
            None => Ok(()),
            Some(_) => Err(Dispatch::Bad(format!("{}: too many parameters", self.method))),
        }
    }
}

fn route_from(api: &Api, query_id: Option<String>, ttl: Option<i64>, history: Vec<String>, budget_ms: Option<i64>) -> Route {
    let fresh = api.new_route();
    let budget = budget_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map(Duration::from_millis)
        .map_or(fresh.budget, |b| b.min(fresh.budget));
    Route {
        query_id: query_id.filter(|id| !id.is_empty() && id.len() <= 128).unwrap_or(fresh.query_id),
        history,
        ttl: ttl.and_then(|t| u32::try_from(t).ok()).map_or(fresh.ttl, |t| t.min(fresh.ttl)),
        budget,
    }
}

async fn dispatch(api: &Api, method: &str, params: Vec<Value>) -> Result<Value, Dispatch> {
    let mut p = Params {
        method: method.to_string(),
        values: params.into_iter(),
        position: 0,
    };
    let value = match method {
        "hello" => {
            let url = p.string("url")?;
            p.done()?;
            // Learning a peer writes the store (an fsync): off the async runtime.
            let api = api.clone();
            tokio::task::spawn_blocking(move || api.hello(&url))
                .await
                .map_err(|e| Dispatch::Api(ApiError::Internal(e.to_string())))??;
            Value::Integer(0)
        }
        "query" => {
            let name = p.string("name")?;
            let history = p.strings("history")?;
            p.done()?;
            shoal_xmlrpc::content_value(api.query(&name, history).await?)
        }
        "fetch" => {
            let name = p.string("name")?;
            let secret = p.string("secret")?;
            p.done()?;
            api.fetch(&name, &secret).await?;
            Value::Integer(0)
        }
        "list" => {
            p.done()?;
            Value::Array(api.list().await?.into_iter().map(|(name, _)| Value::String(name)).collect())
        }
        "shoal.locate" => {
            let name = p.string("name")?;
            let history = p.strings("history")?;
            let query_id = p.optional_string("query_id")?;
            let ttl = p.optional_int("ttl")?;
            let budget = p.optional_int("budget_ms")?;
            p.done()?;
            let route = route_from(api, query_id, ttl, history, budget);
            hit_value(&api.locate(&name, route).await?)
        }
        "shoal.search" => {
            let pattern = p.optional_string("pattern")?.unwrap_or_default();
            let query_id = p.optional_string("query_id")?;
            let ttl = p.optional_int("ttl")?;
            let history = p.strings("history")?;
            let budget = p.optional_int("budget_ms")?;
            p.done()?;
            let route = route_from(api, query_id, ttl, history, budget);
            Value::Array(api.search(&pattern, route).await?.iter().map(match_value).collect())
        }
        "shoal.info" => {
            let key = p.string("name_or_id")?;
            p.done()?;
            let (name, entry) = api.file(&key).await?;
            let mut fields = BTreeMap::new();
            fields.insert("name".into(), Value::String(name.clone()));
            fields.insert("size".into(), shoal_xmlrpc::size_value(entry.size));
            fields.insert("id".into(), Value::String(entry.id.to_string()));
            fields.insert("content".into(), Value::String(format!("/content/{}", entry.id)));
            fields.insert("outboard".into(), Value::String(format!("/outboard/{}", entry.id)));
            fields.insert("files".into(), Value::String(format!("/files/{name}")));
            Value::Struct(fields)
        }
        "shoal.peers" => {
            p.done()?;
            Value::Array(api.peers().into_iter().map(|peer| Value::String(peer.url)).collect())
        }
        "shoal.stats" => {
            p.done()?;
            let mut fields = BTreeMap::new();
            fields.insert("url".into(), Value::String(api.url().to_string()));
            fields.insert("files".into(), shoal_xmlrpc::size_value(api.list().await?.len() as u64));
            fields.insert("peers".into(), shoal_xmlrpc::size_value(api.peers().len() as u64));
            fields.insert("messages_sent".into(), shoal_xmlrpc::size_value(api.messages_sent()));
            Value::Struct(fields)
        }
        "shoal.download" => {
            let secret = p.string("secret")?;
            api.check_secret(&secret)?;
            let targets = p.strings("targets")?;
            let extra = match p.next() {
                None | Some(Value::Nil) => BTreeMap::new(),
                Some(Value::Struct(fields)) => fields,
                Some(_) => return Err(p.bad("options", "a struct")),
            };
            p.done()?;
            let text = |key: &str| match extra.get(key) {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            };
            let hash = match text("hash") {
                Some(h) => Some(
                    h.parse()
                        .map_err(|_| Dispatch::Bad("shoal.download: hash must be 64 hex characters".into()))?,
                ),
                None => None,
            };
            let output = text("output")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| api.share().root().to_path_buf());
            let force = matches!(extra.get("force"), Some(Value::Boolean(true)));
            // Peers the caller names are learnt, then searched with the known ones.
            if let Some(Value::Array(named)) = extra.get("peers") {
                for peer in named.iter().take(64) {
                    if let Value::String(url) = peer {
                        api.hello(url)?;
                    }
                }
            }
            let peers = api.live_peer_urls();
            let mut job = crate::engine::resolve::resolve(api.client(), &peers, &targets, hash, Some(&output))
                .await
                .map_err(|e| Dispatch::Api(ApiError::Unresolved(e.to_string())))?;
            job.force = force;
            job.by_node = true;
            job.peers.retain(|u| u != api.url());
            let mut fields = BTreeMap::new();
            fields.insert("name".into(), Value::String(job.name.clone()));
            fields.insert("target".into(), Value::String(job.target.to_string_lossy().into_owned()));
            api.start_download(job);
            Value::Struct(fields)
        }
        "shoal.downloads" => {
            p.done()?;
            let rows = serde_json::to_value(api.downloads()).unwrap_or_default();
            json_to_value(rows)
        }
        "shoal.pause" | "shoal.resume" | "shoal.cancel" => {
            let secret = p.string("secret")?;
            api.check_secret(&secret)?;
            let key = p.string("target")?;
            p.done()?;
            let target = api.download_target(&key)?;
            match method {
                "shoal.pause" => {
                    if !api.download_manager().pause(&target) {
                        return Err(Dispatch::Api(ApiError::NotFound(format!(
                            "a running download to {}",
                            target.display()
                        ))));
                    }
                }
                "shoal.resume" => api.resume_download(&target)?,
                _ => {
                    api.download_manager().cancel(&target).await;
                }
            }
            Value::Integer(0)
        }
        "shoal.peer_table" => {
            p.done()?;
            json_to_value(serde_json::to_value(api.peers()).unwrap_or_default())
        }
        "system.listMethods" => {
            p.done()?;
            Value::Array(METHODS.iter().map(|(name, _)| Value::String(name.to_string())).collect())
        }
        "system.methodHelp" => {
            let name = p.string("method")?;
            p.done()?;
            let help = METHODS.iter().find(|(m, _)| *m == name).map(|(_, help)| *help).unwrap_or("");
            Value::String(help.to_string())
        }
        other => {
            return Err(Dispatch::Bad(format!(
                "method \"{}\" is not supported",
                other.chars().take(100).collect::<String>()
            )));
        }
    };
    Ok(value)
}

/// JSON (from serde) as an XML-RPC value: objects become structs, numbers integers or doubles,
/// null becomes nil.
fn json_to_value(json: serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(b),
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(u) => shoal_xmlrpc::size_value(u),
            None => Value::Double(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => Value::Array(items.into_iter().map(json_to_value).collect()),
        serde_json::Value::Object(fields) => Value::Struct(fields.into_iter().map(|(k, v)| (k, json_to_value(v))).collect()),
    }
}
