//! API keys and per-key rate limits, applied to every route but `/health` and `/ready`.
//!
//! Keys are kept as SHA-256 digests and a presented key is compared with every one of
//! them in constant time (`subtle`): the time taken depends neither on how much of a key
//! matched nor on which key matched, nor on the keys' lengths. The rate limit is a token
//! bucket per key (per client when no keys are configured, all clients sharing one).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::RateLimit;
use crate::error::ApiError;
use crate::state::AppState;

/// Routes that answer without a key: probes must work without secrets.
pub const PUBLIC_PATHS: [&str; 3] = ["/health", "/ready", "/"];

/// The configured API keys, as digests.
#[derive(Clone)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, not even digests.
        write!(f, "ApiKeys({} keys)", self.digests.len())
    }
}

impl ApiKeys {
    pub fn new(keys: &[String]) -> ApiKeys {
        ApiKeys {
            digests: keys.iter().map(|k| digest(k)).collect(),
        }
    }

    /// No keys configured: every request is allowed.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The index of the key equal to `presented`, compared with all keys in constant time.
    pub fn find(&self, presented: &str) -> Option<usize> {
        let wanted = digest(presented);
        let mut found = u32::MAX;
        for (index, key) in self.digests.iter().enumerate() {
            // No early exit: every key is compared, whatever matched before.
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            found.conditional_assign(&index, key.ct_eq(&wanted));
        }
        (found != u32::MAX).then_some(found as usize)
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Who a request is, for rate limits and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    /// No keys are configured.
    Anonymous,
    /// The index of the key used.
    Key(usize),
}

/// Token buckets per client.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<Client, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `client`'s bucket, or says how long until one is available.
    pub fn check(&self, client: Client, now: Instant) -> Result<(), Duration> {
        let per_second = self.limit.requests_per_minute / 60.0;
        let burst = f64::from(self.limit.burst);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / per_second;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_secs(60)))
        }
    }
}

/// The key presented with a request: `Authorization: Bearer <key>` (the scheme in any
/// case), or `x-api-key: <key>` as some clients send it.
fn presented_key(request: &Request) -> Option<&str> {
    let headers = request.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION)
        && let Ok(text) = value.to_str()
    {
        let text = text.trim();
        if let Some((scheme, key)) = text.split_once(' ')
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return Some(key.trim());
        }
        return None;
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Middleware: checks the API key and the client's rate limit.
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if PUBLIC_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let keys = state.api_keys();
    let client = if keys.is_empty() {
        Client::Anonymous
    } else {
        match presented_key(&request) {
            None => {
                return ApiError::unauthorized(
                    "missing API key: send it as `Authorization: Bearer <key>`",
                )
                .into_response();
            }
            Some(key) => match keys.find(key) {
                Some(index) => Client::Key(index),
                None => return ApiError::unauthorized("invalid API key").into_response(),
            },
        }
    };
    if let Some(limiter) = state.rate_limiter()
        && let Err(wait) = limiter.check(client, Instant::now())
    {
        return ApiError::rate_limited(wait).into_response();
    }
    request.extensions_mut().insert(client);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_exactly_whatever_their_lengths() {
        let keys = ApiKeys::new(&["alpha".into(), "a-much-longer-second-key".into()]);
        assert_eq!(keys.find("alpha"), Some(0));
        assert_eq!(keys.find("a-much-longer-second-key"), Some(1));
        for wrong in ["", "alph", "alphaa", "Alpha", "a-much-longer-second-ke"] {
            assert_eq!(keys.find(wrong), None, "{wrong:?}");
        }
        assert!(ApiKeys::new(&[]).is_empty());
        assert_eq!(format!("{keys:?}"), "ApiKeys(2 keys)");
    }

    #[test]
    fn token_bucket_allows_a_burst_then_refills() {
        let limiter = RateLimiter::new(RateLimit {
            requests_per_minute: 60.0,
            burst: 3,
        });
        let start = Instant::now();
        let a = Client::Key(0);
        for _ in 0..3 {
            assert!(limiter.check(a, start).is_ok());
        }
        let wait = limiter.check(a, start).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        // Another key has its own bucket.
        assert!(limiter.check(Client::Key(1), start).is_ok());
        // One token per second comes back.
        assert!(
            limiter
                .check(a, start + Duration::from_millis(1001))
                .is_ok()
        );
        assert!(
            limiter
                .check(a, start + Duration::from_millis(1002))
                .is_err()
        );
        // Never more than the burst saved up.
        let later = start + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(limiter.check(a, later).is_ok());
        }
        assert!(limiter.check(a, later).is_err());
    }
}
