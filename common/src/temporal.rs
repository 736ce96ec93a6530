//! Names the api, the worker and operators agree on, and the client connection.

use std::time::Duration;

use temporalio_client::{Client, ClientOptions, ConnectionOptions};
use temporalio_common::search_attributes::SearchAttributeKey;

use crate::config::TemporalConfig;

pub const WORKFLOW_TYPE: &str = "MediaAnalysisWorkflow";

pub const SA_MEDIA_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("MediaId");
pub const SA_USER_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("UserId");
pub const SA_MEDIA_TYPE: SearchAttributeKey<String> = SearchAttributeKey::keyword("MediaType");
pub const SA_RUN_NUMBER: SearchAttributeKey<i64> = SearchAttributeKey::int("RunNumber");

/// `media-<mediaId>-run-<runNumber>`: readable in the Web UI; a second start of a run is refused.
pub fn workflow_id(media_id: uuid::Uuid, run_number: i32) -> String {
    format!("media-{media_id}-run-{run_number}")
}

/// Connects a namespace-bound client. `identity` shows in the Web UI as the caller or worker.
pub async fn connect(cfg: &TemporalConfig, identity: &str) -> anyhow::Result<Client> {
    let mut address = cfg.address.clone();
    if cfg.tls && address.scheme() == "http" {
        let _ = address.set_scheme("https");
    }
    let options = ConnectionOptions::new(address)
        .identity(identity.to_string())
        .connect_timeout(Duration::from_secs(5))
        .maybe_api_key(cfg.api_key.as_ref().map(|k| k.expose().to_string()))
        .maybe_tls_options(cfg.tls.then(temporalio_client::TlsOptions::default))
        .build();
    let client = Client::connect(options, ClientOptions::new(cfg.namespace.clone()).build())
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to Temporal at {}: {e}", cfg.address))?;
    Ok(client)
}

/// `<process>@<host>:<pid>`, the identity shown for this process in Temporal.
pub fn identity(process: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_string());
    format!("{process}@{host}:{}", std::process::id())
}

/// A real round trip to the namespace (a visibility count), for readiness checks.
pub async fn ping(client: &Client) -> anyhow::Result<()> {
    client
        .count_workflows(format!("WorkflowType='{WORKFLOW_TYPE}'"), temporalio_client::WorkflowCountOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("temporal unavailable: {e}"))?;
    Ok(())
}

/// Temporal's approximate backlog of activity tasks on a task queue (the model calls waiting for
/// inference capacity, on the inference task queue).
pub async fn activity_backlog(client: &Client, namespace: &str, task_queue: &str) -> anyhow::Result<i64> {
    use temporalio_common::protos::temporal::api::enums::v1::TaskQueueType;
    use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
    use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeTaskQueueRequest;
    let request = DescribeTaskQueueRequest {
        namespace: namespace.to_string(),
        task_queue: Some(TaskQueue { name: task_queue.to_string(), ..Default::default() }),
        task_queue_type: TaskQueueType::Activity as i32,
        report_stats: true,
        ..Default::default()
    };
    let response = client
        .connection()
        .workflow_service()
        .describe_task_queue(temporalio_client::tonic::Request::new(request))
        .await
        .map_err(|e| anyhow::anyhow!("cannot describe task queue {task_queue}: {}", e.message()))?;
    Ok(response.into_inner().stats.map(|s| s.approximate_backlog_count).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn workflow_ids_are_readable() {
        let id = uuid::Uuid::nil();
        assert_eq!(super::workflow_id(id, 2), "media-00000000-0000-0000-0000-000000000000-run-2");
    }
}
