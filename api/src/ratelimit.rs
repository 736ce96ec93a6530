//! Rate limits (§1.7): fixed windows counted in Redis, shared by every api instance. When Redis is
//! unavailable the limiters fail open (and log).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

const LOGIN_MAX: u64 = 10;
const LOGIN_WINDOW: Duration = Duration::from_secs(600);

/// The client address: the socket peer, or the `X-Forwarded-For` hop chosen by `TRUST_PROXY`.
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

pub fn client_ip(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted_hops: usize) -> String {
    // Nearest first: the peer, then the forwarded hops from right to left (Express semantics).
    let mut chain: Vec<String> = peer.map(|p| p.to_string()).into_iter().collect();
    if let Some(xff) = forwarded_for {
        chain.extend(xff.split(',').rev().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
    }
    if chain.is_empty() {
        return "unknown".to_string();
    }
    let i = trusted_hops.min(chain.len() - 1);
    chain.swap_remove(i)
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let xff = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        let hops = state.config.trust_proxy;
        Ok(Self(client_ip(peer, if hops > 0 { xff } else { None }, hops)))
    }
}

/// The state of one limiter for one request.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    max: u64,
    window: Duration,
    /// `None` when Redis could not be asked.
    counted: Option<(u64, u64)>,
    /// Whether this request is over the limit.
    exceeded: bool,
}

impl Verdict {
    fn open(max: u64, window: Duration) -> Self {
        Self { max, window, counted: None, exceeded: false }
    }

    pub fn rejection(&self) -> Option<Response> {
        if !self.exceeded {
            return None;
        }
        let minutes = self.window.as_secs().div_ceil(60);
        let retry = self.counted.map(|(_, reset)| reset).unwrap_or(self.window.as_secs());
        Some(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many requests. Please try again after {minutes} minutes."),
            )
            .with_header(HeaderName::from_static("retry-after"), HeaderValue::from(retry))
            .into_response(),
        )
    }

    /// Adds the `RateLimit-*` headers.
    pub fn decorate(&self, mut resp: Response) -> Response {
        let Some((count, reset)) = self.counted else { return resp };
        let h = resp.headers_mut();
        let policy = format!("{};w={}", self.max, self.window.as_secs());
        if let Ok(v) = HeaderValue::from_str(&policy) {
            h.insert(HeaderName::from_static("ratelimit-policy"), v);
        }
        h.insert(HeaderName::from_static("ratelimit-limit"), HeaderValue::from(self.max));
        h.insert(HeaderName::from_static("ratelimit-remaining"), HeaderValue::from(self.max.saturating_sub(count)));
        h.insert(HeaderName::from_static("ratelimit-reset"), HeaderValue::from(reset));
        resp
    }
}

/// INCR, start the window on the first hit, and report the TTL: one round trip, atomic.
static INCREMENT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local n = redis.call('INCR', KEYS[1])
          if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
          local ttl = redis.call('TTL', KEYS[1])
          if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
          return {n, ttl}",
    )
});

/// Adds one to a window counter; returns (count, seconds until the window resets).
async fn increment(state: &AppState, key: &str, window: Duration) -> redis::RedisResult<(u64, u64)> {
    let mut conn = state.redis.conn().await?;
    let (count, ttl): (u64, i64) = INCREMENT.key(key).arg(window.as_secs()).invoke_async(&mut conn).await?;
    Ok((count, ttl.max(0) as u64))
}

async fn peek(state: &AppState, key: &str) -> redis::RedisResult<(u64, u64)> {
    let mut conn = state.redis.conn().await?;
    let (count, ttl): (Option<u64>, i64) =
        redis::pipe().cmd("GET").arg(key).cmd("TTL").arg(key).query_async(&mut conn).await?;
    Ok((count.unwrap_or(0), if ttl > 0 { ttl as u64 } else { 0 }))
}

/// Middleware: the API limiter on every request under `/api/v1`.
pub async fn api_limiter(State(state): State<AppState>, ip: ClientIp, req: Request, next: Next) -> Response {
    let max = state.config.api_rate_limit_max;
    let window = state.config.api_rate_limit_window;
    let key = format!("rl:api:{}", ip.0);
    let verdict = match increment(&state, &key, window).await {
        Ok((count, reset)) => Verdict { max, window, counted: Some((count, reset)), exceeded: count > max },
        Err(e) => {
            tracing::warn!(error = %e, "rate limiter unavailable; request allowed");
            Verdict::open(max, window)
        }
    };
    if let Some(rejection) = verdict.rejection() {
        return verdict.decorate(rejection);
    }
    let resp = next.run(req).await;
    // The login limiter's headers, when present, describe the stricter limit: keep them.
    if resp.headers().contains_key("ratelimit-policy") { resp } else { verdict.decorate(resp) }
}

/// The login limiter: failed logins (status ≥ 400) per IP and e-mail; checked before credentials.
pub struct LoginLimiter<'a> {
    state: &'a AppState,
    key: String,
}

impl<'a> LoginLimiter<'a> {
    pub fn new(state: &'a AppState, ip: &ClientIp, email: &str) -> Self {
        Self { state, key: format!("rl:login:{}:{}", ip.0, email.trim().to_lowercase()) }
    }

    pub async fn check(&self) -> Verdict {
        match peek(self.state, &self.key).await {
            Ok((count, reset)) => Verdict {
                max: LOGIN_MAX,
                window: LOGIN_WINDOW,
                counted: Some((count, if count == 0 { LOGIN_WINDOW.as_secs() } else { reset })),
                exceeded: count >= LOGIN_MAX,
            },
            Err(e) => {
                tracing::warn!(error = %e, "login limiter unavailable; attempt allowed");
                Verdict::open(LOGIN_MAX, LOGIN_WINDOW)
            }
        }
    }

    pub async fn record_failure(&self, before: Verdict) -> Verdict {
        match increment(self.state, &self.key, LOGIN_WINDOW).await {
            Ok((count, reset)) => Verdict { counted: Some((count, reset)), ..before },
            Err(e) => {
                tracing::warn!(error = %e, "login limiter unavailable; failure not counted");
                before
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::client_ip;

    #[test]
    fn trusted_hops_select_the_forwarded_address() {
        let peer = Some("10.0.0.1".parse().expect("ip"));
        assert_eq!(client_ip(peer, None, 0), "10.0.0.1");
        assert_eq!(client_ip(peer, Some("1.1.1.1, 2.2.2.2"), 0), "10.0.0.1");
        assert_eq!(client_ip(peer, Some("1.1.1.1, 2.2.2.2"), 1), "2.2.2.2");
        assert_eq!(client_ip(peer, Some("1.1.1.1, 2.2.2.2"), 2), "1.1.1.1");
        assert_eq!(client_ip(peer, Some("1.1.1.1, 2.2.2.2"), 9), "1.1.1.1");
    }
}
