//! The checks every request passes before a handler runs: who is calling (their address), how
//! often they may search or guess the secret, and whether a browser sent the request on some
//! other site's behalf.
//!
//! - **Rate limits** per caller address ([`Limit`]): searches (`query`, `shoal.search`,
//!   `shoal.locate`), `hello`, and wrong secrets. A caller over the wrong-secret limit is refused
//!   even with the right secret until the bucket refills, so the secret cannot be guessed at line
//!   rate. Loopback callers are exempt from the search and hello limits by default (the owner's
//!   own tools and nodes on one machine), never from the secret limit.
//! - **Wrong secrets from all strangers together**: through a relay every fresh key is a new
//!   address, so the per-caller limit alone would let a guesser go on at line rate. Strangers
//!   (every caller not on loopback, or every caller when loopback is not exempt) share one
//!   budget a minute; once it is spent, every secret from a stranger is refused, right or wrong,
//!   until the oldest guess is a minute old. The owner's keys over iroh need no secret and are
//!   never refused; loopback callers keep their own per-caller limit (a local user could
//!   otherwise lock the owner's tools out).
//! - **Browsers**: a request whose `Origin` is not this node's own is refused (a web page cannot
//!   make the node act, CSRF); on a node bound to loopback or naming itself by loopback (the
//!   default `serve`) the `Host` must be one of its own names or addresses (a DNS-rebinding
//!   page cannot reach it).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::options::GuardOptions;
use crate::service::{Api, ApiError};

/// Where a request came from (set per connection by the accept loops): an address and, over
/// iroh, the caller's node id (proven by the handshake).
#[derive(Debug, Clone)]
pub struct Caller(pub SocketAddr, pub Option<Arc<str>>);

impl Caller {
    fn ip(&self) -> IpAddr {
        self.0.ip()
    }

    /// The caller's node id, when it came over iroh.
    pub fn key(&self) -> Option<&str> {
        self.1.as_deref()
    }
}

/// What a caller is limited in.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    Search,
    Hello,
}

/// The per-caller state and the node's own names.
pub struct Guard {
    options: GuardOptions,
    searches: DefaultKeyedRateLimiter<IpAddr>,
    hellos: DefaultKeyedRateLimiter<IpAddr>,
    /// Wrong guesses in the last minute: per caller, and from all strangers together.
    wrong_secrets: Mutex<WrongSecrets>,
    /// `scheme://host:port` spellings of this node (for `Origin`).
    origins: Vec<String>,
    /// `host:port` spellings of this node (for `Host`).
    hosts: Vec<String>,
    /// `Host` must be one of `hosts`: on a node bound to loopback or named by it.
    check_host: bool,
}

/// The times of wrong secrets in the last minute.
#[derive(Default)]
struct WrongSecrets {
    per_caller: HashMap<IpAddr, Vec<Instant>>,
    /// From every stranger (see [`Guard::is_stranger`]), oldest first.
    strangers: VecDeque<Instant>,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// Most callers remembered per limiter before the idle ones are forgotten.
const MAX_TRACKED: usize = 100_000;

impl Guard {
    /// `url` is the node's own URL, `local` the address it is bound to, `interfaces` the
    /// machine's addresses (the names a node bound to every address is reached by).
    pub fn new(options: GuardOptions, url: &str, local: SocketAddr, interfaces: &[IpAddr]) -> Guard {
        let port = local.port();
        let mut hosts = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")];
        let mut named_by_loopback = false;
        if let Ok(parsed) = url::Url::parse(url)
            && let Some(host) = parsed.host_str()
        {
            let port = parsed.port_or_known_default().unwrap_or(port);
            hosts.push(format!("{host}:{port}"));
            if port == 80 {
                hosts.push(host.to_string());
            }
            named_by_loopback = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
                None => false,
            };
        }
        if local.ip().is_unspecified() {
            // Reached from other machines by one of the machine's addresses.
            hosts.extend(interfaces.iter().map(|ip| SocketAddr::new(*ip, port).to_string()));
        } else {
            hosts.push(SocketAddr::new(local.ip(), port).to_string());
        }
        hosts.iter_mut().for_each(|h| *h = h.to_ascii_lowercase());
        let origins = hosts.iter().map(|h| format!("http://{h}")).collect();
        Guard {
            searches: governor::RateLimiter::keyed(
                Quota::per_second(nz(options.searches_per_second)).allow_burst(nz(options.search_burst)),
            ),
            hellos: governor::RateLimiter::keyed(Quota::per_minute(nz(options.hellos_per_minute))),
            wrong_secrets: Mutex::new(WrongSecrets::default()),
            options,
            origins,
            hosts,
            // A node named by loopback checks `Host` wherever it listens: a page that rebinds
            // a name of its own to the machine's address must not reach it.
            check_host: local.ip().is_loopback() || named_by_loopback,
        }
    }

    fn tidy(limiter: &DefaultKeyedRateLimiter<IpAddr>) {
        if limiter.len() > MAX_TRACKED {
            limiter.retain_recent();
        }
    }

    /// Whether `caller` may make one more call of kind `limit`.
    pub fn allow(&self, caller: &Caller, limit: Limit) -> Result<(), ApiError> {
        if self.options.loopback_exempt && caller.ip().is_loopback() {
            return Ok(());
        }
        let limiter = match limit {
            Limit::Search => &self.searches,
            Limit::Hello => &self.hellos,
        };
        Self::tidy(limiter);
        limiter.check_key(&caller.ip()).map_err(|_| ApiError::Busy)
    }

    /// Whether `caller` counts against the budget of wrong secrets shared by all strangers:
    /// anyone not on loopback, and loopback too when it is not exempt.
    fn is_stranger(&self, caller: &Caller) -> bool {
        !(self.options.loopback_exempt && caller.ip().is_loopback())
    }

    /// Checks the owner's secret, refusing callers that guessed wrong too often in the last
    /// minute, and strangers while all of them together did (without looking at what they sent).
    pub fn check_secret(&self, api: &Api, caller: &Caller, secret: &str) -> Result<(), ApiError> {
        // The owner's own key, proven by the iroh handshake, is as good as the secret.
        if caller.key().is_some_and(|key| api.is_owner_key(key)) {
            return Ok(());
        }
        let ip = caller.ip();
        let stranger = self.is_stranger(caller);
        let now = Instant::now();
        let window = Duration::from_secs(60);
        {
            let mut wrong = self.wrong_secrets.lock().unwrap_or_else(|p| p.into_inner());
            if wrong.per_caller.len() > MAX_TRACKED {
                wrong
                    .per_caller
                    .retain(|_, times| times.last().is_some_and(|t| now.duration_since(*t) < window));
            }
            if let Some(times) = wrong.per_caller.get_mut(&ip) {
                times.retain(|t| now.duration_since(*t) < window);
                if times.len() >= self.options.wrong_secrets_per_minute as usize {
                    return Err(ApiError::AccessDenied);
                }
            }
            if stranger {
                while wrong.strangers.front().is_some_and(|t| now.duration_since(*t) >= window) {
                    wrong.strangers.pop_front();
                }
                if wrong.strangers.len() >= self.options.wrong_secrets_per_minute_total as usize {
                    tracing::debug!(%ip, "the strangers' wrong secrets for this minute are spent; refusing a secret");
                    return Err(ApiError::AccessDenied);
                }
            }
            // Counted as wrong until it proves right, so that guesses sent at once cannot all
            // pass the checks above before any of them is counted.
            wrong.per_caller.entry(ip).or_default().push(now);
            if stranger {
                wrong.strangers.push_back(now);
            }
        }
        let checked = api.check_secret(secret);
        if checked.is_ok() {
            let mut wrong = self.wrong_secrets.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(times) = wrong.per_caller.get_mut(&ip) {
                if let Some(at) = times.iter().rposition(|t| *t == now) {
                    times.remove(at);
                }
                if times.is_empty() {
                    wrong.per_caller.remove(&ip);
                }
            }
            if stranger && let Some(at) = wrong.strangers.iter().rposition(|t| *t == now) {
                wrong.strangers.remove(at);
            }
        } else {
            tracing::debug!(%ip, "a wrong secret");
        }
        checked
    }

    /// The browser checks: `Origin` must be this node's, and on a loopback-bound node `Host`
    /// must be one of its names.
    pub fn browser_check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default().trim_end_matches('/').to_ascii_lowercase();
            if !self.origins.contains(&origin) {
                return Err("cross-origin requests are refused");
            }
        }
        if self.check_host {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !self.hosts.contains(&host) {
                return Err("this node answers only to its own names");
            }
        }
        Ok(())
    }
}

/// The middleware that applies [`Guard::browser_check`] to every route.
pub async fn browser(axum::Extension(guard): axum::Extension<Arc<Guard>>, request: Request, next: Next) -> Response {
    // A browser cannot speak iroh: its callers carry no page's Origin or rebound Host.
    if request.extensions().get::<Caller>().is_some_and(|c| c.key().is_some()) {
        return next.run(request).await;
    }
    match guard.browser_check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(reason) => (StatusCode::FORBIDDEN, format!("{reason}\n")).into_response(),
    }
}

/// The header a caller adds to `GET /api/v1/search` to show that it is not a page of another
/// site: a page can make a browser send a cross-origin GET without `Origin` (an `<img src>`, a
/// `no-cors` fetch), but it cannot add a header of its own to one without a CORS preflight,
/// which the node never grants. The web UI sends it; curl users add `-H 'X-Shoal: 1'`.
pub const SAME_ORIGIN_HEADER: &str = "x-shoal";

/// Refuses a browser request that lacks [`SAME_ORIGIN_HEADER`]. Callers over iroh pass: a
/// browser cannot speak iroh.
pub fn same_origin_signal(caller: &Caller, headers: &HeaderMap) -> Result<(), &'static str> {
    if caller.key().is_some() || headers.contains_key(SAME_ORIGIN_HEADER) {
        Ok(())
    } else {
        Err("send the header X-Shoal: 1 with this request (a page of another site cannot)")
    }
}

impl Guard {
    /// [`Guard::allow`] without the loopback exemption: for routes a browser can reach, where
    /// loopback is where a hostile page on the owner's machine calls from.
    pub fn allow_from_anyone(&self, caller: &Caller, limit: Limit) -> Result<(), ApiError> {
        let limiter = match limit {
            Limit::Search => &self.searches,
            Limit::Hello => &self.hellos,
        };
        Self::tidy(limiter);
        limiter.check_key(&caller.ip()).map_err(|_| ApiError::Busy)
    }
}
