//! One Redis subscription per api process; reconnects by itself with backoff.

use std::time::Duration;

use futures::StreamExt;
use socketioxide::SocketIo;

use super::relay::Relay;
use crate::state::AppState;

pub fn spawn_listener(io: SocketIo, state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let channel = state.config.common.progress_channel.clone();
        let mut relay = Relay::new(io, state.clone());
        let mut backoff = Duration::from_millis(200);
        loop {
            match state.redis.client().get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                    Ok(()) => {
                        tracing::info!(channel = %channel, "progress listener subscribed");
                        backoff = Duration::from_millis(200);
                        let mut messages = pubsub.on_message();
                        while let Some(msg) = messages.next().await {
                            match msg.get_payload::<String>() {
                                Ok(payload) => relay.handle(&payload).await,
                                Err(e) => tracing::warn!(error = %e, "progress message dropped: not UTF-8"),
                            }
                        }
                        tracing::warn!(channel = %channel, "progress listener lost its Redis connection");
                    }
                    Err(e) => tracing::warn!(error = %e, "progress listener could not subscribe"),
                },
                Err(e) => tracing::warn!(error = %e, "progress listener cannot reach Redis"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    })
}
