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

const SIGNUP_WINDOW: Duration = Duration::from_secs(3600);

/// The signup limiter: valid signups per IP (each costs a password hash).
pub async fn signup(state: &AppState, ip: &ClientIp) -> Verdict {
    let max = state.config.signup_rate_limit_max;
    match increment(state, &format!("rl:signup:{}", ip.0), SIGNUP_WINDOW).await {
        Ok((count, reset)) => {
            Verdict { max, window: SIGNUP_WINDOW, counted: Some((count, reset)), exceeded: count > max }
        }
        Err(e) => {
            tracing::warn!(error = %e, "signup limiter unavailable; signup allowed");
            Verdict::open(max, SIGNUP_WINDOW)
        }
    }
}

/// RESERVE: take one attempt of the window unless it is used up, and report the count and TTL.
/// Reserving before the password is checked (rather than counting failures after it) is what makes
/// the limit hold under concurrency: at most `max` attempts per window are ever verified.
static RESERVE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local n = tonumber(redis.call('GET', KEYS[1]) or '0')
          local ttl = redis.call('TTL', KEYS[1])
          if n >= tonumber(ARGV[2]) then
            if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
            return {n, ttl, 0}
          end
          n = redis.call('INCR', KEYS[1])
          if n == 1 or ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
          return {n, ttl, 1}",
    )
});

/// RELEASE: give back a reserved attempt that turned out not to be a failure.
static RELEASE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local n = tonumber(redis.call('GET', KEYS[1]) or '0')
          if n > 0 then n = redis.call('DECR', KEYS[1]) end
          local ttl = redis.call('TTL', KEYS[1])
          return {n, ttl}",
    )
});

/// A limiter of failed attempts (logins per IP and e-mail, password changes per user): each
/// attempt reserves a slot of the window before the password is verified; a success gives it
/// back. Once the window is used up, even a correct password is refused (429).
pub struct AttemptLimiter<'a> {
    state: &'a AppState,
    key: String,
    max: u64,
    window: Duration,
}

impl<'a> AttemptLimiter<'a> {
    /// The login limiter of §1.7.
    pub fn login(state: &'a AppState, ip: &ClientIp, email: &str) -> Self {
        let key = format!("rl:login:{}:{}", ip.0, email.trim().to_lowercase());
        Self { state, key, max: LOGIN_MAX, window: LOGIN_WINDOW }
    }

    /// Guesses of the current password on a password change, per user.
    pub fn password_change(state: &'a AppState, user_id: uuid::Uuid) -> Self {
        Self { state, key: format!("rl:password:{user_id}"), max: LOGIN_MAX, window: LOGIN_WINDOW }
    }

    /// Reserves one attempt (one Redis round trip). When the verdict is exceeded the attempt must
    /// not be made.
    pub async fn reserve(&self) -> Verdict {
        let reserved: redis::RedisResult<(u64, i64, u8)> = async {
            let mut conn = self.state.redis.conn().await?;
            RESERVE.key(&self.key).arg(self.window.as_secs()).arg(self.max).invoke_async(&mut conn).await
        }
        .await;
        match reserved {
            Ok((count, ttl, granted)) => Verdict {
                max: self.max,
                window: self.window,
                counted: Some((count, ttl.max(0) as u64)),
                exceeded: granted == 0,
            },
            Err(e) => {
                tracing::warn!(error = %e, "attempt limiter unavailable; attempt allowed");
                Verdict::open(self.max, self.window)
            }
        }
    }

    /// Gives back the attempt reserved by `reserved` (the attempt succeeded).
    pub async fn release(&self, reserved: Verdict) -> Verdict {
        if reserved.counted.is_none() || reserved.exceeded {
            return reserved;
        }
        let released: redis::RedisResult<(u64, i64)> = async {
            let mut conn = self.state.redis.conn().await?;
            RELEASE.key(&self.key).invoke_async(&mut conn).await
        }
        .await;
        match released {
            Ok((count, ttl)) => {
                let reset = if ttl > 0 { ttl as u64 } else { self.window.as_secs() };
                Verdict { counted: Some((count, reset)), ..reserved }
            }
            Err(e) => {
                tracing::warn!(error = %e, "attempt limiter unavailable; attempt not given back");
                reserved
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
