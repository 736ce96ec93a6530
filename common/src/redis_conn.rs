//! A lazily established, self-reconnecting Redis connection with short timeouts, so that a Redis
//! outage costs callers milliseconds (they fail open or skip), never a hang, and a Redis that was
//! down at start-up is picked up once it comes back.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

#[derive(Clone)]
pub struct RedisHandle {
    client: redis::Client,
    conn: Arc<OnceCell<ConnectionManager>>,
}

impl RedisHandle {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("invalid REDIS_URL: {e}"))?;
        Ok(Self { client, conn: Default::default() })
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub async fn conn(&self) -> redis::RedisResult<ConnectionManager> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Duration::from_secs(1))
                    .set_response_timeout(Duration::from_secs(1))
                    // A Redis that refuses connections fails the command at once (callers fail
                    // open or drop an event) instead of holding a request for the backoff.
                    .set_number_of_retries(0)
                    .set_max_delay(500);
                ConnectionManager::new_with_config(self.client.clone(), cfg).await
            })
            .await?;
        Ok(conn.clone())
    }
}
