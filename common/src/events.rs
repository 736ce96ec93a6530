//! The progress channel (`api.md` §7.1): plain Redis PUBLISH of JSON messages.
//!
//! Publishing is best-effort: a failure is logged and never fails the caller. Messages are
//! published only after the database commit they describe.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
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

/// Publishes to the progress channel over a lazily created, self-reconnecting connection.
#[derive(Clone)]
pub struct EventPublisher {
    redis: RedisHandle,
    channel: String,
}

impl EventPublisher {
    pub fn new(redis: RedisHandle, channel: impl Into<String>) -> Self {
        Self { redis, channel: channel.into() }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub async fn publish(&self, msg: &ProgressMessage) {
        if let Err(e) = self.try_publish(msg).await {
            tracing::warn!(event = %msg.event, media.id = %msg.media_id, error = %e, "progress event not published");
        }
    }

    pub async fn publish_all(&self, msgs: &[ProgressMessage]) {
        for m in msgs {
            self.publish(m).await;
        }
    }

    async fn try_publish(&self, msg: &ProgressMessage) -> anyhow::Result<()> {
        let payload = serde_json::to_string(msg)?;
        let mut conn = self.redis.conn().await?;
        let _: i64 = redis::cmd("PUBLISH").arg(&self.channel).arg(payload).query_async(&mut conn).await?;
        Ok(())
    }
}

/// The run-level event of api.md §7.2 (ANALYSIS_COMPLETE / ANALYSIS_FAILED / ANALYSIS_CANCELLED with finalStatus…).
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
