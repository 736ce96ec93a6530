//! The connection to Temporal: connecting, identities, readiness and task-queue backlog. The
//! workflow's names and client calls are in [`crate::workflow`].

use std::time::Duration;

use temporalio_client::{Client, ClientOptions, ConnectionOptions};

use crate::config::TemporalConfig;
use crate::workflow::WORKFLOW_TYPE;

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
