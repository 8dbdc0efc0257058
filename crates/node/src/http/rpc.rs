//! XML-RPC over `POST /` and `POST /RPC2`: one table of methods, each with its help text and its
//! handler, so that `system.listMethods`, `system.methodHelp` and dispatch cannot drift apart.
//!
//! A handler decodes its call into the method's wire type ([`crate::proto::calls`]), which
//! bounds every field, calls [`Api`], and encodes the answer's wire type. Bodies are bounded in
//! size and in the time a client may take to send them; the request must say it is XML (a page
//! in a browser cannot send that cross-origin without asking first); per-caller limits apply
//! (see [`super::guard`]). A malformed call gets fault 1, as Python's `SimpleXMLRPCServer`
//! answers, never a crash.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use shoal_xmlrpc::{Fault, Value};

use super::faults::fault_of;
use super::guard::{Caller, Guard, Limit};
use crate::discovery::Hit;
use crate::proto::calls::{
    self, ACK, Action, BadCall, Call, DownloadRows, DownloadStarted, FileInfo, LocateAnswer, Matches, Names, Params, PeerRows, PeerUrls,
    SearchMatch,
};
use crate::proto::faults::BAD_CALL;
use crate::service::{Api, ApiError, Viewer};

/// What a handler failed with.
pub enum Failure {
    Api(ApiError),
    Bad(BadCall),
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure::Api(error)
    }
}

impl From<BadCall> for Failure {
    fn from(error: BadCall) -> Self {
        Failure::Bad(error)
    }
}

type Answer = Result<Value, Failure>;

/// Everything a handler gets.
pub struct Request {
    pub api: Api,
    pub guard: Arc<Guard>,
    pub caller: Caller,
    pub params: Params,
}

/// One XML-RPC method.
pub struct Method {
    pub name: &'static str,
    pub help: &'static str,
    pub handler: fn(Request) -> BoxFuture<'static, Answer>,
}

/// Every method this node answers.
pub static METHODS: &[Method] = &[
    Method {
        name: calls::Hello::METHOD,
        help: "hello(url) -> 0. Learn the node at url (it joins once it answers as a node).",
        handler: |r| Box::pin(hello(r)),
    },
    Method {
        name: calls::Query::METHOD,
        help: "query(name, history=[]) -> content. The file from this node or the first node of the network that has it; fault 100 when none has it, 200 for a name outside the share, 300 when it is over the size limit.",
        handler: |r| Box::pin(query(r)),
    },
    Method {
        name: calls::Fetch::METHOD,
        help: "fetch(name, secret) -> 0. Download name from the network into this node's share (owner only).",
        handler: |r| Box::pin(fetch(r)),
    },
    Method {
        name: calls::List::METHOD,
        help: "list() -> [name]. This node's own files.",
        handler: |r| Box::pin(list(r)),
    },
    Method {
        name: calls::ListFolder::METHOD,
        help: "shoal.list_folder(path, cursor) -> {files: [{path, size, id}], next}. Every file under the shared folder path (\"\" or \"/\": the whole share), recursively, in name order, at most 1000 a page; pass next back as cursor for the following page (absent on the last page).",
        handler: |r| Box::pin(list_folder(r)),
    },
    Method {
        name: calls::Search::METHOD,
        help: "shoal.search(pattern, query_id, ttl, history, budget_ms) -> [{name, size, id, urls}]. Files whose names match pattern (a glob with * and ?, or a substring) or whose content id is pattern, across the network.",
        handler: |r| Box::pin(search(r)),
    },
    Method {
        name: calls::Locate::METHOD,
        help: "shoal.locate(name, history, query_id, ttl, budget_ms) -> {url, name, size, id}. Where a file is; answered once per query id.",
        handler: |r| Box::pin(locate(r)),
    },
    Method {
        name: calls::Info::METHOD,
        help: "shoal.info(name_or_id) -> {name, size, id, content, files, outboard}. Details of a file of this node, with its HTTP paths.",
        handler: |r| Box::pin(info(r)),
    },
    Method {
        name: calls::Peers::METHOD,
        help: "shoal.peers() -> [url]. The peers this node knows (peer exchange).",
        handler: |r| Box::pin(peers(r)),
    },
    Method {
        name: calls::Swarm::METHOD,
        help: "shoal.swarm(id, url, pieces) -> [{url, pieces}]. Other downloaders of a content id this node holds or fetches (a tracker); url is the caller's node URL (\"\" for none), listed for others once it answers /have/<id>.",
        handler: |r| Box::pin(swarm(r)),
    },
    Method {
        name: calls::Stats::METHOD,
        help: "shoal.stats() -> {url, files, peers, messages_sent}. Counters of this node.",
        handler: |r| Box::pin(stats(r)),
    },
    Method {
        name: calls::Download::METHOD,
        help: "shoal.download(secret, targets, {output, hash, force, peers}) -> {name, target}. Start a background download (owner only); targets are names, content ids or http mirror URLs; output is a path inside the share or the download directory (default: the share).",
        handler: |r| Box::pin(download(r)),
    },
    Method {
        name: calls::Dht::METHOD,
        help: "shoal.dht([secret]) -> {running, nodes, reachable, serving, size_estimate, announced, lookups}. The node on the Mainline DHT; with the secret also its UDP addresses and its recent lookups.",
        handler: |r| Box::pin(dht(r)),
    },
    Method {
        name: calls::Downloads::METHOD,
        help: "shoal.downloads([secret]) -> [{name, size, done, live_sources, sources, status}]. The node's downloads and their progress; with the secret also their local paths, full source URLs and errors.",
        handler: |r| Box::pin(downloads(r)),
    },
    Method {
        name: Action::Pause.method(),
        help: "shoal.pause(secret, target_or_name) -> 0. Pause a download, keeping its progress (owner only).",
        handler: |r| Box::pin(control(r)),
    },
    Method {
        name: Action::Resume.method(),
        help: "shoal.resume(secret, target_or_name) -> 0. Continue a paused, failed or interrupted download (owner only).",
        handler: |r| Box::pin(control(r)),
    },
    Method {
        name: Action::Cancel.method(),
        help: "shoal.cancel(secret, target_or_name) -> 0. Stop a download and delete its partial data (owner only).",
        handler: |r| Box::pin(control(r)),
    },
    Method {
        name: calls::PeerTable::METHOD,
        help: "shoal.peer_table() -> [{url, kind, failures, backing_off, learnt}]. The peer table with each peer's state.",
        handler: |r| Box::pin(peer_table(r)),
    },
    Method {
        name: calls::ListMethods::METHOD,
        help: "system.listMethods() -> [name].",
        handler: |r| Box::pin(list_methods(r)),
    },
    Method {
        name: calls::MethodHelp::METHOD,
        help: "system.methodHelp(name) -> text.",
        handler: |r| Box::pin(method_help(r)),
    },
];

fn xml_response(xml: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], Body::from(xml)).into_response()
}

fn fault_response(fault: &Fault) -> Response {
    xml_response(shoal_xmlrpc::encode_fault(fault))
}

/// True when the request says its body is XML (`text/xml`, `application/xml`, with parameters).
fn is_xml(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .is_some_and(|v| v == "text/xml" || v == "application/xml")
}

/// `POST /` and `POST /RPC2`.
pub async fn handle(
    State(api): State<Api>,
    axum::Extension(guard): axum::Extension<Arc<Guard>>,
    axum::Extension(caller): axum::Extension<Caller>,
    working: Option<axum::Extension<super::stall::Working>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !is_xml(&headers) {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "XML-RPC requests must be sent as text/xml\n").into_response();
    }
    let limit = api.options().max_rpc_body;
    let read = tokio::time::timeout(api.options().request_timeout, axum::body::to_bytes(body, limit)).await;
    let bytes: Bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return fault_response(&Fault::new(BAD_CALL, format!("the request body is over {limit} bytes or broken"))),
        Err(_) => return fault_response(&Fault::new(BAD_CALL, "the request body was not sent in time")),
    };
    // The whole call is read: from here the node, not the client, takes the time (the seed's
    // `fetch` answers when the download is over, however long that is).
    let _at_work = working.map(|w| w.enter());
    let call = match shoal_xmlrpc::decode_call(&bytes) {
        Ok(call) => call,
        Err(error) => return fault_response(&Fault::new(BAD_CALL, format!("malformed call: {error}"))),
    };
    let Some(method) = METHODS.iter().find(|m| m.name == call.method) else {
        let name: String = call.method.chars().take(100).filter(|c| !c.is_control()).collect();
        return fault_response(&Fault::new(BAD_CALL, format!("method \"{name}\" is not supported")));
    };
    api.count_call_in(method.name);
    let request = Request {
        api,
        guard,
        caller,
        params: Params::new(method.name, call.params),
    };
    match (method.handler)(request).await {
        Ok(value) => xml_response(shoal_xmlrpc::encode_response(value)),
        Err(Failure::Api(error)) => fault_response(&fault_of(&error)),
        Err(Failure::Bad(BadCall(message))) => fault_response(&Fault::new(BAD_CALL, message)),
    }
}

async fn hello(r: Request) -> Answer {
    let call = calls::Hello::decode(r.params)?;
    r.guard.allow(&r.caller, Limit::Hello)?;
    r.api.hello(&call.url).await?;
    Ok(ACK)
}

async fn swarm(r: Request) -> Answer {
    r.guard.allow(&r.caller, Limit::Search)?;
    let call = calls::Swarm::decode(r.params)?;
    Ok(r.api.swarm(&call).to_value())
}

async fn query(r: Request) -> Answer {
    r.guard.allow(&r.caller, Limit::Search)?;
    let call = calls::Query::decode(r.params)?;
    Ok(calls::Content(r.api.query(&call.name, call.history).await?).into_value())
}

async fn fetch(r: Request) -> Answer {
    let call = calls::Fetch::decode(r.params)?;
    r.guard.check_secret(&r.api, &r.caller, &call.secret)?;
    r.api.fetch(&call.name).await?;
    Ok(ACK)
}

async fn list(r: Request) -> Answer {
    calls::List::decode(r.params)?;
    Ok(Names(r.api.list().await?.into_iter().map(|(name, _)| name).collect()).to_value())
}

async fn list_folder(r: Request) -> Answer {
    let call = calls::ListFolder::decode(r.params)?;
    Ok(r.api.list_folder(&call.folder, &call.cursor).await?.to_value())
}

async fn search(r: Request) -> Answer {
    r.guard.allow(&r.caller, Limit::Search)?;
    let call = calls::Search::decode(r.params)?;
    let route = r.api.route_from(call.route);
    let mut found = r.api.search(&call.pattern, route).await?;
    if let Some(keyed) = own_name_for(&r.api, &r.caller) {
        for url in found.iter_mut().flat_map(|m| m.urls.iter_mut()) {
            if url == r.api.url() {
                url.clone_from(&keyed);
            }
        }
    }
    Ok(Matches(found.iter().map(SearchMatch::from).collect()).to_value())
}

async fn locate(r: Request) -> Answer {
    r.guard.allow(&r.caller, Limit::Search)?;
    let call = calls::Locate::decode(r.params)?;
    let route = r.api.route_from(call.route);
    let mut hit: Hit = r.api.locate(&call.name, route).await?;
    if let Some(keyed) = own_name_for(&r.api, &r.caller)
        && hit.url == r.api.url()
    {
        hit.url = keyed;
    }
    Ok(LocateAnswer::from(&hit).to_value())
}

/// How this node names itself as a holder to `caller`: by its id to a caller that came over
/// iroh (its TCP URL may well be a loopback or private one the caller cannot reach).
fn own_name_for(api: &Api, caller: &Caller) -> Option<String> {
    caller.key()?;
    api.keyed_url()
}

async fn info(r: Request) -> Answer {
    let call = calls::Info::decode(r.params)?;
    let (name, entry) = r.api.file(&call.name_or_id).await?;
    Ok(FileInfo {
        name,
        size: entry.size,
        id: entry.id,
    }
    .to_value())
}

async fn peers(r: Request) -> Answer {
    calls::Peers::decode(r.params)?;
    Ok(PeerUrls(r.api.peers().into_iter().map(|peer| peer.url).collect()).to_value())
}

async fn stats(r: Request) -> Answer {
    calls::Stats::decode(r.params)?;
    Ok(r.api.stats().await?.to_value())
}

async fn download(r: Request) -> Answer {
    let call = calls::Download::decode(r.params)?;
    r.guard.check_secret(&r.api, &r.caller, &call.secret)?;
    let request = crate::service::api::DownloadRequest {
        targets: call.targets,
        output: call.output.map(std::path::PathBuf::from),
        hash: call.hash,
        force: call.force,
        peers: call.peers,
    };
    let (name, target) = r.api.download(request).await?;
    Ok(DownloadStarted {
        name,
        target: target.to_string_lossy().into_owned(),
    }
    .to_value())
}

async fn dht(r: Request) -> Answer {
    let call = calls::Dht::decode(r.params)?;
    let viewer = match &call.secret {
        Some(secret) => {
            r.guard.check_secret(&r.api, &r.caller, secret)?;
            Viewer::Owner
        }
        None => Viewer::Anyone,
    };
    Ok(r.api.dht_state(viewer).await.to_value())
}

async fn downloads(r: Request) -> Answer {
    let call = calls::Downloads::decode(r.params)?;
    let viewer = match &call.secret {
        Some(secret) => {
            r.guard.check_secret(&r.api, &r.caller, secret)?;
            Viewer::Owner
        }
        None => Viewer::Anyone,
    };
    Ok(DownloadRows(r.api.download_rows(viewer)).to_value())
}

/// `shoal.pause`, `shoal.resume`, `shoal.cancel`: the method names the action.
async fn control(r: Request) -> Answer {
    let call = calls::Control::decode(r.params)?;
    r.guard.check_secret(&r.api, &r.caller, &call.secret)?;
    let target = r.api.download_target(&call.target)?;
    match call.action {
        Action::Pause => r.api.pause_download(&target)?,
        Action::Resume => r.api.resume_download(&target)?,
        Action::Cancel => r.api.cancel_download(&target).await,
    }
    Ok(ACK)
}

/// Public, as `shoal.peers` is: peer exchange hands the same URLs to anyone, and the state
/// beside them (kind, failures, learnt, LAN, path) is what anyone could learn by probing those
/// URLs. When this node last heard from each peer and what it downloaded from it describe the
/// owner's use of the network and are not here; `GET /api/v1/peers` shows them to the owner
/// only (docs/SECURITY.md).
async fn peer_table(r: Request) -> Answer {
    calls::PeerTable::decode(r.params)?;
    Ok(PeerRows(r.api.peer_rows(Viewer::Anyone)).to_value())
}

async fn list_methods(r: Request) -> Answer {
    calls::ListMethods::decode(r.params)?;
    Ok(Names(METHODS.iter().map(|m| m.name.to_string()).collect()).to_value())
}

async fn method_help(r: Request) -> Answer {
    let call = calls::MethodHelp::decode(r.params)?;
    let help = METHODS.iter().find(|m| m.name == call.method).map(|m| m.help).unwrap_or("");
    Ok(calls::MethodHelp::answer(help))
}
