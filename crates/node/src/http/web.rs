//! The web UI: four small files embedded in the binary (no CDN, nothing fetched at run time), served
//! at `/` and `/ui/*` with a strict content security policy (scripts and styles from this node
//! only, no inline script, no framing, no referrer). The page talks to [`super::json`].

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../../web/index.html");
const APP: &str = include_str!("../../web/app.js");
const STYLE: &str = include_str!("../../web/style.css");
const ICON: &str = include_str!("../../web/icon.svg");

/// What every UI response carries.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                      base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The files change only with the binary; a short cache keeps reloads cheap and upgrades visible.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    response
}

async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

async fn app() -> Response {
    asset(APP, "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

async fn icon() -> Response {
    asset(ICON, "image/svg+xml")
}

/// `GET /` (the page; `POST /` stays XML-RPC) and its assets.
pub fn routes() -> axum::Router<crate::service::Api> {
    axum::Router::new()
        .route("/", get(index))
        .route("/ui/app.js", get(app))
        .route("/ui/style.css", get(style))
        .route("/ui/icon.svg", get(icon))
        .route("/favicon.ico", get(icon))
}
