//! The web interface: a handful of hand-written files compiled into the binary, so the UI works
//! offline and ships with the server it talks to. The UI is an ordinary client of `/api/v1`.
use std::sync::LazyLock;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../ui/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("i18n.js", JS),
    asset!("charts.js", JS),
    asset!("dom.js", JS),
    asset!("pages.js", JS),
    asset!("channel.js", JS),
    asset!("request.js", JS),
    asset!("stats.js", JS),
    asset!("admin.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

/// A strong validator per file, computed once: the files never change while the process runs.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.body))[..20]))
        .collect()
});

/// Everything the UI loads comes from this origin; nothing else may run or be fetched.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn serve(index: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    // Names carry no content hash, so browsers revalidate every time; the ETag keeps that a
    // 304 without a body.
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(asset.body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.name == "index.html" {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

/// Paths the UI must never answer: the API, its documents and the operators' endpoints keep
/// their own JSON 404s.
fn reserved(path: &str) -> bool {
    ["/api", "/health", "/ready", "/metrics"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// The fallback of the whole router: a UI file, the UI's page for a client-side route, or the
/// API's JSON 404.
pub async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if (method != Method::GET && method != Method::HEAD) || reserved(path) {
        return ApiError::not_found("route").into_response();
    }
    if let Some(name) = path.strip_prefix("/ui/") {
        return match ASSETS.iter().position(|a| a.name == name) {
            Some(i) => serve(i, &headers),
            None => ApiError::not_found("file").into_response(),
        };
    }
    if path == "/favicon.ico" || path == "/favicon.svg" {
        let i = ASSETS.iter().position(|a| a.name == "favicon.svg");
        return i.map_or_else(
            || ApiError::not_found("file").into_response(),
            |i| serve(i, &headers),
        );
    }
    // A file name that is not ours is a missing file, not a page.
    if path
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'))
    {
        return ApiError::not_found("file").into_response();
    }
    // Any other path is a page of the single-page app (e.g. /projects/…): the same document,
    // whose script reads the path.
    match ASSETS.iter().position(|a| a.name == "index.html") {
        Some(i) => serve(i, &headers),
        None => ApiError::not_found("route").into_response(),
    }
}
