//! The progress channel (`docs/contract.md` §7.1): plain Redis PUBLISH of JSON messages.
//!
//! Publishing is best-effort and never delays the caller: a failure is counted and logged. Messages
//! are queued only after the database commit they describe.

use std::sync::{Arc, OnceLock};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::redis_conn::RedisHandle;
use crate::time::format_ts;

/// One message on the progress channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProgressMessage {
    pub media_id: String,
    pub user_id: String,
    pub event: String,
    pub message: String,
    pub data: Value,
}

impl ProgressMessage {
    /// A backend message; `data` gains `timestamp`.
    pub fn backend(media_id: Uuid, user_id: Uuid, event: &str, message: String, data: Value) -> Self {
        let mut data = match data {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        data.insert("timestamp".to_string(), json!(format_ts(&Utc::now())));
        Self {
            media_id: media_id.to_string(),
            user_id: user_id.to_string(),
            event: event.to_string(),
            message,
            data: Value::Object(data),
        }
    }
}

/// Messages waiting to be published, per process; beyond this, new messages are dropped (and
/// counted) while Redis is away.
pub const PUBLISH_BUFFER: usize = 4096;

/// Publishes to the progress channel over a lazily created, self-reconnecting connection.
///
/// Fire-and-forget: [`EventPublisher::publish`] queues the message in a bounded buffer and returns
/// at once; one background task per publisher publishes in order. A Redis outage therefore costs
/// events (counted in `drishtiksha_progress_events_dropped_total`), never a caller's latency.
#[derive(Clone)]
pub struct EventPublisher {
    redis: RedisHandle,
    channel: String,
    queue: Arc<OnceLock<mpsc::Sender<ProgressMessage>>>,
}

impl EventPublisher {
    pub fn new(redis: RedisHandle, channel: impl Into<String>) -> Self {
        Self { redis, channel: channel.into(), queue: Arc::default() }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Queues a message (the drain task starts on the first call, on the caller's runtime).
    pub async fn publish(&self, msg: &ProgressMessage) {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(PUBLISH_BUFFER);
            tokio::spawn(drain(self.redis.clone(), self.channel.clone(), rx));
            tx
        });
        if queue.try_send(msg.clone()).is_err() {
            crate::metrics::PROGRESS_EVENTS_DROPPED.inc();
        }
    }

    pub async fn publish_all(&self, msgs: &[ProgressMessage]) {
        for m in msgs {
            self.publish(m).await;
        }
    }
}

/// Publishes queued messages in order; a failed publish is dropped and counted, with one warning
/// per outage rather than one per message.
async fn drain(redis: RedisHandle, channel: String, mut rx: mpsc::Receiver<ProgressMessage>) {
    let mut failing = false;
    while let Some(msg) = rx.recv().await {
        match try_publish(&redis, &channel, &msg).await {
            Ok(()) => {
                if failing {
                    tracing::info!("progress events are published again");
                }
                failing = false;
            }
            Err(e) => {
                crate::metrics::PROGRESS_EVENTS_DROPPED.inc();
                if !failing {
                    tracing::warn!(event = %msg.event, media.id = %msg.media_id, error = %e, "progress events not published");
                }
                failing = true;
            }
        }
    }
}

async fn try_publish(redis: &RedisHandle, channel: &str, msg: &ProgressMessage) -> anyhow::Result<()> {
    let payload = serde_json::to_string(msg)?;
    let mut conn = redis.conn().await?;
    let _: i64 = redis::cmd("PUBLISH").arg(channel).arg(payload).query_async(&mut conn).await?;
    Ok(())
}

/// Finalizes a run ([`crate::db::runs::finalize`]), counts it in
/// `drishtiksha_runs_finished_total` and publishes its run-level event: what every finalization
/// does, whether the workflow, the reconciler or a cancel of a run that never started makes it.
/// `None` when the run was already terminal (nothing counted, nothing published).
pub async fn finalize_run(
    db: &sqlx::PgPool,
    events: &EventPublisher,
    run_id: Uuid,
    how: crate::db::runs::Finalization,
) -> Result<Option<crate::db::runs::FinalizedRun>, sqlx::Error> {
    let Some(finalized) = crate::db::runs::finalize(db, run_id, how).await? else { return Ok(None) };
    crate::metrics::RUNS_FINISHED.with_label_values(&[finalized.status.as_str()]).inc();
    events.publish(&run_finalized(&finalized)).await;
    Ok(Some(finalized))
}

/// The run-level event of docs/contract.md §7.2 (ANALYSIS_COMPLETE / ANALYSIS_FAILED / ANALYSIS_CANCELLED with finalStatus…).
pub fn run_finalized(f: &crate::db::runs::FinalizedRun) -> ProgressMessage {
    use crate::model::RunStatus;
    let (event, message) = match f.status {
        RunStatus::Cancelled => ("ANALYSIS_CANCELLED", format!("Analysis cancelled for \"{}\"", f.filename)),
        RunStatus::Analyzed => (
            "ANALYSIS_COMPLETE",
            format!("Analysis completed for \"{}\" ({}/{} models succeeded)", f.filename, f.completed, f.total_models),
        ),
        _ => ("ANALYSIS_FAILED", format!("Analysis failed for \"{}\"", f.filename)),
    };
    ProgressMessage::backend(
        f.media_id,
        f.user_id,
        event,
        message,
        json!({
            "runId": f.run_id,
            "runNumber": f.run_number,
            "finalStatus": f.status,
            "totalAnalyses": f.total_models,
            "completedAnalyses": f.completed,
            "failedAnalyses": f.failed,
            "pendingAnalyses": f.pending,
            "errorMessage": f.error_message,
            "filename": f.filename,
        }),
    )
}
