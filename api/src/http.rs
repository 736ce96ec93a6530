//! Cross-cutting HTTP behaviour: CORS (§1.5), security headers (§1.6), request ids, the 404/405
//! envelopes (§1.4) and the per-request tracing span.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The viewer at `/api/docs/` gets the same policy without `upgrade-insecure-requests`: served over
/// plain HTTP from anything but localhost, its scripts and styles would otherwise be fetched over
/// HTTPS and the page would stay blank. Its assets are same-origin and relative, so nothing else
/// changes.
pub const VIEWER_CSP: &str = "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline'";
const CSP: &str = "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests";
const EXPOSED: &str =
    "Content-Disposition, Retry-After, RateLimit-Policy, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset";
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Where the Socket.IO layer answers (§7.4).
pub const SOCKET_IO_PATH: &str = "/socket.io";

/// The allowed origins, normalised (`scheme://host[:port]`).
#[derive(Clone)]
pub struct Origins(pub Arc<Vec<String>>);

fn is_media_path(path: &str) -> bool {
    path.starts_with("/media/")
}

/// CORS with credentials for the configured origins; files under `/media/` without credentials.
///
/// Hand-written: tower-http's `CorsLayer` answers preflights `200` (the contract fixes `204`) and
/// sets a different `Vary`; the frontend and the tests rely on the contract's exact answers.
pub async fn cors(State(origins): State<Origins>, req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_string);
    let allowed = origin
        .as_deref()
        .and_then(drishtiksha_common::config::parse_origin)
        .filter(|o| origins.0.iter().any(|a| a == o))
        .and(origin.clone());
    let media = is_media_path(req.uri().path());
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);

    let mut resp = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        if allowed.is_some() {
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET,POST,PUT,PATCH,DELETE,OPTIONS"),
            );
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type,Authorization"));
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
        r
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = allowed.and_then(|o| HeaderValue::from_str(&o).ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if !media {
            h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
    }
    resp
}

/// 403 of a cookie-authenticated unsafe request from a foreign origin.
pub const CROSS_ORIGIN_REFUSED: &str = "Forbidden: cross-origin request refused.";

/// Origins a cookie-authenticated unsafe request may come from: the frontend's and the api's own.
#[derive(Clone)]
pub struct TrustedOrigins(pub Arc<Vec<String>>);

impl TrustedOrigins {
    pub fn from_config(config: &drishtiksha_common::config::ApiConfig) -> Self {
        let mut all = config.frontend_origins.clone();
        all.extend(drishtiksha_common::config::parse_origin(
            &config.common.public_base_url.origin().ascii_serialization(),
        ));
        Self(Arc::new(all))
    }
}

/// The origin of a request: `Origin`, else the origin of `Referer`.
fn request_origin(headers: &axum::http::HeaderMap) -> Option<String> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let from_referer = || {
        let referer = headers.get(header::REFERER)?.to_str().ok()?;
        Some(url::Url::parse(referer).ok()?.origin().ascii_serialization())
    };
    let raw = match origin {
        Some(o) => o.to_string(),
        None => from_referer()?,
    };
    drishtiksha_common::config::parse_origin(&raw)
}

/// Cross-site request forgery defence for cookie sessions: `SameSite=Lax` does not cover another
/// port of the same host (same site), so an unsafe request authenticated by the cookie must come
/// from a trusted origin (`Origin`, else `Referer`; neither is refused). Bearer-token requests
/// carry no ambient credentials and are not checked. Hand-written: tower-http's CORS layer only
/// decorates responses, it never refuses a request.
pub async fn require_trusted_origin(State(trusted): State<TrustedOrigins>, req: Request, next: Next) -> Response {
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let by_cookie =
        matches!(crate::auth::token_from_headers(req.headers()), Some((_, crate::auth::TokenSource::Cookie)));
    if unsafe_method && by_cookie {
        let origin = request_origin(req.headers());
        if !origin.is_some_and(|o| trusted.0.contains(&o)) {
            return ApiError::new(StatusCode::FORBIDDEN, CROSS_ORIGIN_REFUSED).into_response();
        }
    }
    next.run(req).await
}

/// helmet's default headers; `/media/` files are cross-origin resources.
///
/// Hand-written: two of the values depend on the request path (CORP for `/media/`, `no-store` for
/// `/api/v1`), which tower-http's `SetResponseHeaderLayer` cannot see (it is given the response only).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let media = is_media_path(req.uri().path());
    let api = req.uri().path() == "/api/v1" || req.uri().path().starts_with("/api/v1/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.entry(HeaderName::from_static(name)).or_insert(HeaderValue::from_static(value));
    };
    set(h, "content-security-policy", CSP);
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", if media { "cross-origin" } else { "same-origin" });
    set(h, "origin-agent-cluster", "?1");
    set(h, "referrer-policy", "no-referrer");
    set(h, "strict-transport-security", "max-age=31536000; includeSubDomains");
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-dns-prefetch-control", "off");
    set(h, "x-download-options", "noopen");
    set(h, "x-frame-options", "SAMEORIGIN");
    set(h, "x-permitted-cross-domain-policies", "none");
    set(h, "x-xss-protection", "0");
    // Responses under /api/v1 can carry tokens and private data: never stored by caches (§1.6).
    if api {
        h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    }
    h.remove(header::SERVER);
    h.remove("x-powered-by");
    resp
}

/// Echoes a sane client `X-Request-Id` or makes one, and runs the request in a span carrying it.
///
/// Hand-written: tower-http's `SetRequestIdLayer` keeps whatever id a client sends (any length,
/// any header bytes) and logs it; this one replaces ids that are not short printable ASCII.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    req.headers_mut().insert(REQUEST_ID, value.clone());
    let span = tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id);
    let started = std::time::Instant::now();
    let mut resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "response");
    });
    resp.headers_mut().insert(REQUEST_ID, value);
    resp
}

/// Gives axum's bare 405 the contract's envelope (keeping `Allow`).
pub async fn method_not_allowed_envelope(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
        return resp;
    }
    let (parts, _) = resp.into_parts();
    let mut out = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.").into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

/// Marks fallback responses: they are labelled as unmatched in the metrics.
#[derive(Clone, Copy)]
pub struct Unmatched;

pub async fn route_not_found() -> Response {
    let mut resp = ApiError::not_found("Route not found.").into_response();
    resp.extensions_mut().insert(Unmatched);
    resp
}

/// Route layer: hands the matched route template (`/api/v1/media/{id}`) to [`http_metrics`], which
/// runs outside the router and so never sees the request's [`MatchedPath`].
pub async fn expose_matched_path(req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let mut resp = next.run(req).await;
    if let Some(matched) = matched {
        resp.extensions_mut().insert(matched);
    }
    resp
}

/// Counts requests by route and status and observes their latency. Labels come from the code, never
/// from the client: the route template that matched, `/socket.io` for the Socket.IO layer (which
/// answers before routing), and one value for everything else; unknown methods share one label.
pub async fn http_metrics(req: Request, next: Next) -> Response {
    use drishtiksha_common::metrics::{HTTP_DURATION, HTTP_REQUESTS, UNMATCHED_ROUTE, method_label};
    let method = method_label(req.method().as_str());
    let socket_io = req.uri().path().starts_with(SOCKET_IO_PATH);
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let matched = resp.extensions().get::<MatchedPath>();
    let route = match matched {
        Some(m) => m.as_str(),
        None if socket_io && resp.extensions().get::<Unmatched>().is_none() => SOCKET_IO_PATH,
        None => UNMATCHED_ROUTE,
    };
    let status = resp.status().as_u16().to_string();
    HTTP_REQUESTS.with_label_values(&[method, route, status.as_str()]).inc();
    HTTP_DURATION.with_label_values(&[method, route]).observe(started.elapsed().as_secs_f64());
    resp
}

/// `GET /metrics` on the metrics address only (see [`crate::DEFAULT_METRICS_ADDR`]): Prometheus
/// text format.
pub async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))],
        drishtiksha_common::metrics::render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::{CSP, VIEWER_CSP};

    #[test]
    fn the_viewer_policy_is_the_api_policy_without_the_https_upgrade() {
        assert_eq!(CSP, format!("{VIEWER_CSP};upgrade-insecure-requests"));
    }
}
