//! Publishing progress events to Redis (§8, §9.6).
//!
//! Events go through one bounded queue to one task that owns the Redis connection, so handlers
//! never wait on Redis, events keep request order, and a Redis outage only costs events: publish
//! errors are logged, the connection is dropped and re-created on the next event.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

/// Events queued while Redis is slow; beyond this they are dropped with a warning.
const QUEUE: usize = 16 * 1024;

/// Handle for queueing events; cheap to clone. Without a Redis URL it discards everything.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: Option<mpsc::Sender<String>>,
}

impl Publisher {
    /// A publisher that sends nothing (no `--redis-url`).
    pub fn disabled() -> Self {
        Self { tx: None }
    }

    /// Starts the publishing task for `redis_url` and `channel`.
    pub fn spawn(client: redis::Client, channel: String) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(client, channel, rx));
        Self { tx: Some(tx) }
    }

    /// Whether events are published at all.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one compact-JSON event.
    pub fn publish(&self, payload: String) {
        if let Some(tx) = &self.tx
            && let Err(e) = tx.try_send(payload)
        {
            tracing::warn!(error = %e, "progress event dropped: publish queue full or closed");
        }
    }
}

async fn run(client: redis::Client, channel: String, mut rx: mpsc::Receiver<String>) {
    let mut conn: Option<ConnectionManager> = None;
    // Warn once per outage, not once per event (a call can publish dozens).
    let mut failing = false;
    while let Some(payload) = rx.recv().await {
        let result = match conn.as_mut() {
            Some(c) => c.publish::<_, _, ()>(&channel, &payload).await,
            None => {
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(1)
                    .set_connection_timeout(Duration::from_secs(2))
                    .set_response_timeout(Duration::from_secs(2));
                match client.get_connection_manager_with_config(config).await {
                    Ok(mut c) => {
                        let result = c.publish::<_, _, ()>(&channel, &payload).await;
                        conn = Some(c);
                        result
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("progress events published again");
            }
            Ok(()) => {}
            Err(e) => {
                if failing {
                    tracing::debug!(error = %e, "progress event not published");
                } else {
                    failing = true;
                    tracing::warn!(error = %e, "progress events not published; reconnecting on the next one");
                }
                conn = None;
            }
        }
    }
}
