//! Waiting for a dependency that is away (Postgres, Redis, Temporal, the object store): the
//! processes retry with capped backoff and say what they wait for, instead of exiting. Only
//! configuration errors stop a process.

use std::future::Future;
use std::time::Duration;

const FIRST_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(10);

/// Calls `attempt` until it succeeds, sleeping 0.2 s, 0.4 s, … at most 10 s between tries, and
/// logging each failure as waiting for `what`.
pub async fn until_ready<T, E, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut delay = FIRST_DELAY;
    let mut tries = 0u32;
    loop {
        match attempt().await {
            Ok(value) => {
                if tries > 0 {
                    tracing::info!(dependency = what, tries, "dependency reachable");
                }
                return value;
            }
            Err(e) => {
                tries += 1;
                tracing::warn!(dependency = what, error = %e, retry_in_ms = delay.as_millis() as u64, "waiting for a dependency");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_DELAY);
            }
        }
    }
}
