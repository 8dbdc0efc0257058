//! The JSON API under `/api/v1`, for the web UI and for scripts. It calls the same [`Api`] as
//! XML-RPC and encodes the same views: the rows of downloads, sources, peers, search matches,
//! folder pages and a started download are the protocol's wire types (`proto::calls`, which
//! serialise to this API's shape), never an internal struct serialised; the API's own requests
//! and small answers are below.
//!
//! Who may do what (docs/SECURITY.md): browsing the share (`GET /api/v1/files`) and searching
//! the network (`GET /api/v1/search`) are public, as the seed's `list()` and `query` are;
//! the peer table (`GET /api/v1/peers`, without the owner's activity) is public as
//! `shoal.peer_table` is; everything else needs the owner. The owner proves it by sending the
//! secret once to `POST /api/v1/login`, which opens a session of two random halves (kept only
//! in memory, 12 hours): one in the answer's body, which the page keeps in the tab's
//! `sessionStorage` and sends as `X-Shoal-Session` with every request, one as a cookie
//! (`HttpOnly`, `SameSite=Strict`). Both are needed: a browser sends cookies to every port of
//! the host, so the cookie alone, caught by another local web server, must not make its bearer
//! the owner (docs/SECURITY.md). Scripts send the secret as a bearer token instead
//! (`Authorization: Bearer SECRET`). Wrong secrets count against the caller's per-minute
//! allowance, as on XML-RPC. Cross-origin requests are refused by the node's browser check
//! (every route), requests that change anything must be `application/json`, and a search must
//! carry `X-Shoal` (a page of another origin can send none of these without being refused).
//!
//! Errors are `{"error": "..."}` with the status [`super::faults::status_of`] gives.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::guard::{self, Caller, Guard, Limit};
use crate::proto::calls::{DownloadRow, DownloadStarted, FolderPage, PeerRow, SearchMatch};
use crate::service::downloads::Status;
use crate::service::{Api, ApiError, Viewer};

/// The header that carries the page's half of a session: `ID.TOKEN`.
pub const SESSION_HEADER: &str = "x-shoal-session";
/// The session cookie's name is this prefix and the session's id, so that sessions of two
/// nodes (or two tabs) on one host do not overwrite each other's cookie.
pub const SESSION_COOKIE_PREFIX: &str = "shoal_";
/// How long a session lasts after login.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept at once; the oldest goes first.
const MAX_SESSIONS: usize = 64;
/// Largest request body the API reads.
const MAX_BODY: usize = 64 * 1024;
/// Most files in one page of `GET /api/v1/files`.
const MAX_PAGE: usize = 1000;
/// Most rows a search stream sends.
const MAX_SEARCH_ROWS: usize = 1024;
/// How often the downloads stream sends the table.
const DOWNLOADS_TICK: Duration = Duration::from_millis(500);

/// One session: an id that names it (and its cookie), the half the page keeps and sends as
/// [`SESSION_HEADER`], the half the browser keeps as an `HttpOnly` cookie, and when it ends.
struct Session {
    page: String,
    cookie: String,
    until: Instant,
}

/// What a login hands out: the header value for the page and the cookie for the browser.
struct Opened {
    /// `ID.TOKEN`, sent back as [`SESSION_HEADER`].
    header: String,
    cookie_name: String,
    cookie_value: String,
}

/// The owner's sessions, kept in memory only.
///
/// A session is proven by two random 256-bit halves, both needed: the page's half (in the tab's
/// `sessionStorage`, sent as a header) and the cookie's half. Cookies ignore ports, so a
/// browser sends the cookie to every web server on the host; the page's half stays with the
/// node's origin, so a cookie caught on another port does not make its bearer the owner.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

fn random_hex<const N: usize>() -> String {
    hex::encode(rand::random::<[u8; N]>())
}

impl Sessions {
    fn open(&self) -> Opened {
        let id = random_hex::<8>();
        let session = Session {
            page: random_hex::<32>(),
            cookie: random_hex::<32>(),
            until: Instant::now() + SESSION_LIFETIME,
        };
        let opened = Opened {
            header: format!("{id}.{}", session.page),
            cookie_name: format!("{SESSION_COOKIE_PREFIX}{id}"),
            cookie_value: session.cookie.clone(),
        };
        let mut table = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        table.retain(|_, s| s.until > now);
        if table.len() >= MAX_SESSIONS
            && let Some(oldest) = table.iter().min_by_key(|(_, s)| s.until).map(|(id, _)| id.clone())
        {
            table.remove(&oldest);
        }
        table.insert(id, session);
        opened
    }

    /// The id of the live session the request proves with both halves, if any.
    fn valid(&self, headers: &HeaderMap) -> Option<String> {
        let (id, page) = session_header(headers)?;
        let cookie = cookie(headers, &format!("{SESSION_COOKIE_PREFIX}{id}"))?;
        let table = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let session = table.get(id).filter(|s| s.until > Instant::now())?;
        // Both halves compared in constant time, as the secret is, and both always compared.
        let page_ok = subtle::ConstantTimeEq::ct_eq(session.page.as_bytes(), page.as_bytes());
        let cookie_ok = subtle::ConstantTimeEq::ct_eq(session.cookie.as_bytes(), cookie.as_bytes());
        bool::from(page_ok & cookie_ok).then(|| id.to_string())
    }

    fn close(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// `ID.TOKEN` from [`SESSION_HEADER`]: an id of 16 hex digits, a token of 64.
fn session_header(headers: &HeaderMap) -> Option<(&str, &str)> {
    let value = headers.get(SESSION_HEADER)?.to_str().ok()?.trim();
    let (id, page) = value.split_once('.')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 16) && hex(page, 64)).then_some((id, page))
}

/// The routes under `/api/v1`.
pub fn routes() -> axum::Router<Api> {
    axum::Router::new()
        .route("/api/v1/files", get(files))
        .route("/api/v1/search", get(search))
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/session", get(session))
        .route("/api/v1/status", get(status))
        .route("/api/v1/dht", get(dht))
        .route("/api/v1/downloads", get(downloads).post(start_download))
        .route("/api/v1/downloads/events", get(download_events))
        .route("/api/v1/downloads/pause", post(pause))
        .route("/api/v1/downloads/resume", post(resume))
        .route("/api/v1/downloads/cancel", post(cancel))
        .route("/api/v1/peers", get(peers).post(add_peer))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(super::content::no_sniffing))
}

/// An API error as JSON.
pub(super) struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        let status = super::faults::status_of(&error);
        // The same wording XML-RPC callers get (internal causes are logged, not told).
        Failure(status, super::faults::fault_of(&error).message)
    }
}

type Answer<T> = Result<Json<T>, Failure>;

// ---- wire types ------------------------------------------------------------------------------

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

#[derive(Deserialize)]
struct FilesQuery {
    /// Only files under this folder (no leading or trailing `/`).
    folder: Option<String>,
    /// Files whose path sorts after this one.
    after: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
}

#[derive(Deserialize)]
struct Login {
    secret: String,
}

#[derive(Serialize)]
struct SessionBody {
    owner: bool,
    /// After a login: the value the page sends as [`SESSION_HEADER`] with every owner request.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

#[derive(Serialize)]
struct StatusBody {
    url: String,
    /// Where downloads may go besides the share (`--download-dir`), when set.
    download_dir: Option<String>,
    version: &'static str,
    files: u64,
    bytes_shared: u64,
    peers: u64,
    downloads_running: u64,
    messages_sent: u64,
    /// The node on the Mainline DHT (`running: false` when it runs none).
    dht: crate::proto::calls::DhtState,
}

#[derive(Deserialize)]
struct StartDownload {
    targets: Vec<String>,
    /// A file or folder in the share or the download directory; the share when absent.
    output: Option<String>,
    #[serde(default)]
    force: bool,
    hash: Option<String>,
}

#[derive(Deserialize)]
struct TargetBody {
    target: String,
}

#[derive(Serialize)]
struct Done {
    ok: bool,
}

#[derive(Deserialize)]
struct AddPeer {
    url: String,
}

// ---- owner checks ----------------------------------------------------------------------------

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Passes when the request proves a live session (its header and its cookie), carries the
/// secret as a bearer token, or came over iroh from an owner's key. Fails with 401 when it
/// proves nothing (403 for a wrong bearer secret).
fn owner(api: &Api, guard: &Guard, sessions: &Sessions, caller: &Caller, headers: &HeaderMap) -> Result<(), Failure> {
    if caller.key().is_some_and(|key| api.is_owner_key(key)) {
        return Ok(());
    }
    if sessions.valid(headers).is_some() {
        return Ok(());
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        Some(secret) => guard.check_secret(api, caller, secret.trim()).map_err(Failure::from),
        None => Err(Failure(StatusCode::UNAUTHORIZED, "log in as the owner first".into())),
    }
}

/// Requests that change something must say they are JSON (a cross-origin form cannot).
fn json_body(headers: &HeaderMap) -> Result<(), Failure> {
    let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if json {
        Ok(())
    } else {
        Err(Failure(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json".into()))
    }
}

fn parse<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, Failure> {
    json_body(headers)?;
    serde_json::from_slice(body).map_err(|e| Failure(StatusCode::BAD_REQUEST, format!("bad request: {e}")))
}

use axum::Extension as Ext;

/// Proof that a request comes from the owner: extracting it checks the session cookie or the
/// bearer secret, so a handler that takes it cannot run for anyone else.
pub(super) struct Owner;

impl axum::extract::FromRequestParts<Api> for Owner {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, api: &Api) -> Result<Self, Failure> {
        let missing = || Failure(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into());
        let guard = parts.extensions.get::<Arc<Guard>>().cloned().ok_or_else(missing)?;
        let sessions = parts.extensions.get::<Arc<Sessions>>().cloned().ok_or_else(missing)?;
        let caller = parts.extensions.get::<Caller>().cloned().ok_or_else(missing)?;
        owner(api, &guard, &sessions, &caller, &parts.headers)?;
        Ok(Owner)
    }
}

/// A JSON request body of type `T`: refused unless it is `application/json`, at most
/// [`MAX_BODY`] bytes, and of the right shape.
struct Body<T>(T);

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<Api> for Body<T> {
    type Rejection = Failure;

    async fn from_request(request: axum::extract::Request, api: &Api) -> Result<Self, Failure> {
        let headers = request.headers().clone();
        let bytes = axum::body::Bytes::from_request(request, api)
            .await
            .map_err(|_| Failure(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {MAX_BODY} bytes")))?;
        parse(&headers, &bytes).map(Body)
    }
}

// ---- handlers --------------------------------------------------------------------------------

/// A page of the share as `GET /api/v1/files` gives it: the files, and on the first page the
/// downloads in progress under the folder that others may fetch pieces of (`partial`).
#[derive(Serialize)]
struct FilesPage {
    #[serde(flatten)]
    page: FolderPage,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    partial: Vec<PartialFile>,
}

/// A file being downloaded, as the share shows it.
#[derive(Serialize)]
struct PartialFile {
    path: String,
    size: u64,
    id: String,
    /// Pieces of 1 MiB held, of `pieces`.
    held: u64,
    pieces: u64,
}

/// A page of the share: `{files: [{path, size, id}], next, partial?}`, `next` (give it as
/// `after` for the next page) null on the last page; `partial` (first page only): the files
/// under the folder being downloaded, `[{path, size, id, held, pieces}]`.
async fn files(State(api): State<Api>, Query(query): Query<FilesQuery>) -> Answer<FilesPage> {
    let limit = query.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let folder = query.folder.as_deref().map(|f| f.trim_matches('/')).unwrap_or("");
    let after = query.after.as_deref().unwrap_or("");
    // The same paged read of the index as `shoal.list_folder` (byte order, cursor exclusive).
    let mut page = api.list_folder(folder, after).await?;
    page.truncate(limit);
    let prefix = if folder.is_empty() { String::new() } else { format!("{folder}/") };
    let partial = if after.is_empty() {
        api.partial_files()
            .into_iter()
            .filter(|m| m.name.starts_with(&prefix))
            .map(|m| PartialFile {
                held: m.partial.first().map_or(0, |(_, held)| *held),
                pieces: m.size.div_ceil(1 << 20).max(1),
                path: m.name,
                size: m.size,
                id: m.id.to_string(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Json(FilesPage { page, partial }))
}

/// Search results as Server-Sent Events: a `match` event per group of results as peers answer
/// (this node's own first), then `done`. Rows are grouped by content id in the UI.
///
/// A search makes the node send messages to its peers, and a page of any site can make the
/// owner's browser send a GET: the request must carry [`guard::SAME_ORIGIN_HEADER`] (no page of
/// another site can add it), and the search rate applies to every caller, loopback included
/// (the owner's browser calls from loopback).
async fn search(
    State(api): State<Api>,
    Ext(guard): Ext<Arc<Guard>>,
    Ext(caller): Ext<Caller>,
    headers: HeaderMap,
    Query(query): Query<SearchQuery>,
) -> Result<Response, Failure> {
    guard::same_origin_signal(&caller, &headers).map_err(|reason| Failure(StatusCode::FORBIDDEN, reason.into()))?;
    guard.allow_from_anyone(&caller, Limit::Search)?;
    let pattern = query.q.trim().to_string();
    if pattern.is_empty() || pattern.len() > crate::proto::limits::MAX_PATTERN {
        return Err(Failure(StatusCode::BAD_REQUEST, "give a pattern of 1 to 255 bytes in q".into()));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let mut sent = 0usize;
        let each = |found: &[crate::discovery::Match]| {
            let rows: Vec<SearchMatch> = found
                .iter()
                .take(MAX_SEARCH_ROWS.saturating_sub(sent))
                .map(SearchMatch::from)
                .collect();
            sent += rows.len();
            if !rows.is_empty()
                && let Ok(event) = Event::default().event("match").json_data(&rows)
            {
                // A closed page stops caring; a full channel drops this batch rather than wait.
                let _ = tx.try_send(event);
            }
        };
        let result = api.search_each(&pattern, api.new_route(), each).await;
        let done = match result {
            Ok(all) => Event::default().event("done").data(all.len().to_string()),
            Err(error) => Event::default().event("failed").data(Failure::from(error).1),
        };
        let _ = tx.send(done).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx)) });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

async fn login(
    State(api): State<Api>,
    Ext(guard): Ext<Arc<Guard>>,
    Ext(sessions): Ext<Arc<Sessions>>,
    Ext(caller): Ext<Caller>,
    Body(login): Body<Login>,
) -> Result<Response, Failure> {
    guard.check_secret(&api, &caller, &login.secret)?;
    let opened = sessions.open();
    // The cookie goes only to the API's paths; it is half of the proof, never all of it.
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/api/v1; Max-Age={}",
        opened.cookie_name,
        opened.cookie_value,
        SESSION_LIFETIME.as_secs()
    );
    let body = SessionBody {
        owner: true,
        token: Some(opened.header),
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// Ends the session the request proves (both halves: a cookie caught elsewhere cannot log the
/// owner out) and tells the browser to drop its cookie.
async fn logout(Ext(sessions): Ext<Arc<Sessions>>, headers: HeaderMap) -> Response {
    if let Some(id) = sessions.valid(&headers) {
        sessions.close(&id);
        let cookie = format!("{SESSION_COOKIE_PREFIX}{id}=; HttpOnly; SameSite=Strict; Path=/api/v1; Max-Age=0");
        return ([(header::SET_COOKIE, cookie)], Json(SessionBody { owner: false, token: None })).into_response();
    }
    Json(SessionBody { owner: false, token: None }).into_response()
}

/// Whether this tab is logged in (the page asks with its stored half when it loads).
async fn session(Ext(sessions): Ext<Arc<Sessions>>, headers: HeaderMap) -> Json<SessionBody> {
    let owner = sessions.valid(&headers).is_some();
    Json(SessionBody { owner, token: None })
}

async fn status(State(api): State<Api>, _owner: Owner) -> Answer<StatusBody> {
    let files = api.list().await?;
    Ok(Json(StatusBody {
        url: api.url().to_string(),
        download_dir: api.options().download_dir.as_ref().map(|d| d.to_string_lossy().into_owned()),
        version: env!("CARGO_PKG_VERSION"),
        files: files.len() as u64,
        bytes_shared: files.iter().map(|(_, e)| e.size).sum(),
        peers: api.peers().len() as u64,
        downloads_running: api.downloads().iter().filter(|d| d.status == Status::Running).count() as u64,
        messages_sent: api.messages_sent(),
        dht: api.dht_state(Viewer::Owner).await,
    }))
}

/// `GET /api/v1/dht`: the node on the Mainline DHT, with its addresses and recent lookups.
async fn dht(State(api): State<Api>, _owner: Owner) -> Answer<crate::proto::calls::DhtState> {
    Ok(Json(api.dht_state(Viewer::Owner).await))
}

/// The owner's view of the downloads, with each download's and source's speed since the
/// `previous` figures (taken `elapsed` seconds ago; by target, and by target and source URL).
fn download_rows(api: &Api, previous: &HashMap<(String, String), u64>, elapsed: f64) -> Vec<DownloadRow> {
    let speed = |key: (String, String), now: u64| -> u64 {
        match previous.get(&key) {
            Some(before) if elapsed > 0.0 => (now.saturating_sub(*before) as f64 / elapsed) as u64,
            _ => 0,
        }
    };
    let mut rows = api.download_rows(Viewer::Owner);
    for row in &mut rows {
        let target = row.target.clone().unwrap_or_default();
        row.speed = speed((target.clone(), String::new()), row.done);
        for source in &mut row.sources {
            source.speed = speed((target.clone(), source.url.clone()), source.bytes);
        }
    }
    rows
}

async fn downloads(State(api): State<Api>, _owner: Owner) -> Answer<Vec<DownloadRow>> {
    Ok(Json(download_rows(&api, &HashMap::new(), 0.0)))
}

/// The downloads table as Server-Sent Events (`downloads`, every half second while anything
/// changes, with speeds over the last interval), for live bars.
async fn download_events(State(api): State<Api>, _owner: Owner) -> Result<Response, Failure> {
    struct Tick {
        api: Api,
        previous: HashMap<(String, String), u64>,
        at: Instant,
        last_sent: String,
        first: bool,
        interval: tokio::time::Interval,
    }
    let tick = Tick {
        api,
        previous: HashMap::new(),
        at: Instant::now(),
        last_sent: String::new(),
        first: true,
        interval: tokio::time::interval(DOWNLOADS_TICK),
    };
    let stream = futures_util::stream::unfold(tick, |mut t| async move {
        // An idle table is not sent again: a page left open costs the node one timer tick.
        loop {
            t.interval.tick().await;
            let elapsed = t.at.elapsed().as_secs_f64();
            let rows = download_rows(&t.api, &t.previous, elapsed);
            t.previous.clear();
            for row in &rows {
                let target = row.target.clone().unwrap_or_default();
                t.previous.insert((target.clone(), String::new()), row.done);
                for s in &row.sources {
                    t.previous.insert((target.clone(), s.url.clone()), s.bytes);
                }
            }
            t.at = Instant::now();
            let data = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into());
            if data != t.last_sent || t.first {
                t.first = false;
                t.last_sent = data.clone();
                return Some((Ok::<_, Infallible>(Event::default().event("downloads").data(data)), t));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

async fn start_download(State(api): State<Api>, _owner: Owner, Body(request): Body<StartDownload>) -> Answer<DownloadStarted> {
    if request.targets.is_empty() || request.targets.len() > crate::proto::limits::MAX_TARGETS {
        return Err(Failure(StatusCode::BAD_REQUEST, "give 1 to 64 targets".into()));
    }
    let hash = request
        .hash
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, format!("hash: {e}")))?;
    let output = request.output.map(|o| {
        let path = std::path::PathBuf::from(&o);
        if path.is_absolute() {
            path
        } else {
            api.share_root_path().join(path)
        }
    });
    let (name, target) = api
        .download(crate::service::api::DownloadRequest {
            targets: request.targets,
            output,
            hash,
            force: request.force,
            peers: Vec::new(),
        })
        .await?;
    Ok(Json(DownloadStarted {
        name,
        target: target.to_string_lossy().into_owned(),
    }))
}

enum Control {
    Pause,
    Resume,
    Cancel,
}

async fn control(api: Api, request: TargetBody, what: Control) -> Answer<Done> {
    let target = api.download_target(&request.target)?;
    match what {
        Control::Pause => api.pause_download(&target)?,
        Control::Resume => api.resume_download(&target)?,
        Control::Cancel => api.cancel_download(&target).await,
    }
    Ok(Json(Done { ok: true }))
}

async fn pause(State(api): State<Api>, _owner: Owner, Body(request): Body<TargetBody>) -> Answer<Done> {
    control(api, request, Control::Pause).await
}

async fn resume(State(api): State<Api>, _owner: Owner, Body(request): Body<TargetBody>) -> Answer<Done> {
    control(api, request, Control::Resume).await
}

async fn cancel(State(api): State<Api>, _owner: Owner, Body(request): Body<TargetBody>) -> Answer<Done> {
    control(api, request, Control::Cancel).await
}

/// The peer table: public, as `shoal.peer_table` is (peer exchange gives the URLs to anyone
/// anyway); with the owner's credentials also when each peer last answered and how much was
/// downloaded from it. Credentials that are given but wrong are refused, not ignored.
async fn peers(
    State(api): State<Api>,
    Ext(guard): Ext<Arc<Guard>>,
    Ext(sessions): Ext<Arc<Sessions>>,
    Ext(caller): Ext<Caller>,
    headers: HeaderMap,
) -> Answer<Vec<PeerRow>> {
    let viewer = match owner(&api, &guard, &sessions, &caller, &headers) {
        Ok(()) => Viewer::Owner,
        Err(Failure(StatusCode::UNAUTHORIZED, _)) => Viewer::Anyone,
        Err(refused) => return Err(refused),
    };
    Ok(Json(api.peer_rows(viewer)))
}

async fn add_peer(State(api): State<Api>, _owner: Owner, Body(request): Body<AddPeer>) -> Answer<Done> {
    api.add_peer(&request.url)?;
    Ok(Json(Done { ok: true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The headers a tab sends for a session: its half as the header, the cookie's half.
    fn proof(opened: &Opened) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(SESSION_HEADER, opened.header.parse().unwrap());
        let cookie = format!("other=1; {}={}", opened.cookie_name, opened.cookie_value);
        headers.insert(header::COOKIE, cookie.parse().unwrap());
        headers
    }

    #[test]
    fn sessions_need_both_halves_and_are_bounded_and_closable() {
        let sessions = Sessions::default();
        let first = sessions.open();
        assert_eq!(first.header.len(), 16 + 1 + 64);
        assert_eq!(first.cookie_value.len(), 64);
        let id = sessions.valid(&proof(&first)).expect("both halves prove the session");
        assert_eq!(first.cookie_name, format!("shoal_{id}"));
        // Either half alone proves nothing; neither does a half of the right length but wrong.
        let mut cookie_only = proof(&first);
        cookie_only.remove(SESSION_HEADER);
        assert_eq!(sessions.valid(&cookie_only), None);
        let mut header_only = proof(&first);
        header_only.remove(header::COOKIE);
        assert_eq!(sessions.valid(&header_only), None);
        let mut wrong_page = proof(&first);
        wrong_page.insert(SESSION_HEADER, format!("{id}.{}", "0".repeat(64)).parse().unwrap());
        assert_eq!(sessions.valid(&wrong_page), None);
        let mut wrong_cookie = proof(&first);
        wrong_cookie.insert(header::COOKIE, format!("shoal_{id}={}", "0".repeat(64)).parse().unwrap());
        assert_eq!(sessions.valid(&wrong_cookie), None);
        // The table holds at most MAX_SESSIONS: the oldest made way for the newest.
        let later: Vec<Opened> = (0..MAX_SESSIONS).map(|_| sessions.open()).collect();
        assert_eq!(sessions.valid(&proof(&first)), None, "the oldest session was not evicted");
        assert!(later.iter().all(|o| sessions.valid(&proof(o)).is_some()));
        let id = sessions.valid(&proof(&later[0])).unwrap();
        sessions.close(&id);
        assert_eq!(sessions.valid(&proof(&later[0])), None);
    }

    #[test]
    fn a_malformed_session_header_is_no_session() {
        for bad in [
            "",
            ".",
            "abc.def",
            &format!("{}.{}", "g".repeat(16), "0".repeat(64)),
            &"0".repeat(81),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(SESSION_HEADER, bad.parse().unwrap());
            assert_eq!(session_header(&headers), None, "{bad}");
        }
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; shoal_0123=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, "shoal_0123").as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }
}
