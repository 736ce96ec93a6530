//! `MediaAnalysisWorkflow`: the deterministic orchestration of one analysis run (`api.md` §6), and
//! the client calls that start and cancel it.

use std::time::Duration;

use drishtiksha_common::MediaType;
use drishtiksha_common::temporal::{SA_MEDIA_ID, SA_MEDIA_TYPE, SA_RUN_NUMBER, SA_USER_ID};
use serde::{Deserialize, Serialize};
use temporalio_client::tonic::Code;
use temporalio_client::errors::WorkflowInteractionError;
use temporalio_client::{Client, UntypedWorkflow, WorkflowCancelOptions, WorkflowIdReusePolicy, WorkflowStartOptions};
use temporalio_common::search_attributes::SearchAttributes;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowResult};
use uuid::Uuid;

/// The workflow's input: ids only; everything else is read from the database by the activities.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisInput {
    pub run_id: Uuid,
    pub media_id: Uuid,
    pub user_id: Uuid,
}

/// The workflow's result.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisResult {
    pub status: String,
    pub total_models: i32,
    pub completed_count: i64,
    pub failed_count: i64,
}

#[workflow]
#[derive(Default)]
pub struct MediaAnalysisWorkflow {}

#[workflow_methods]
impl MediaAnalysisWorkflow {
    #[run(name = "MediaAnalysisWorkflow")]
    pub async fn run(_ctx: &mut WorkflowContext<Self>, _input: AnalysisInput) -> WorkflowResult<AnalysisResult> {
        Ok(AnalysisResult { status: "FAILED".to_string(), total_models: 0, completed_count: 0, failed_count: 0 })
    }
}

/// A request to start the analysis of one run.
pub struct StartAnalysis<'a> {
    pub task_queue: &'a str,
    pub workflow_id: &'a str,
    pub input: AnalysisInput,
    pub media_type: MediaType,
    pub run_number: i32,
    pub filename: &'a str,
}

/// Starts MediaAnalysisWorkflow with search attributes MediaId/UserId/MediaType/RunNumber and a static summary.
pub async fn start_analysis(client: &Client, req: StartAnalysis<'_>) -> anyhow::Result<()> {
    let attributes = SearchAttributes::new([
        SA_MEDIA_ID.value_set(req.input.media_id.to_string()),
        SA_USER_ID.value_set(req.input.user_id.to_string()),
        SA_MEDIA_TYPE.value_set(req.media_type.as_str().to_string()),
        SA_RUN_NUMBER.value_set(i64::from(req.run_number)),
    ]);
    let options = WorkflowStartOptions::new(req.task_queue, req.workflow_id)
        .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
        .search_attributes(attributes)
        .static_summary(format!("Analyse {} ({})", req.filename, req.media_type))
        .execution_timeout(Duration::from_secs(24 * 3600))
        .build();
    client
        .start_workflow(MediaAnalysisWorkflow::run, req.input, options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start workflow {}: {e}", req.workflow_id))?;
    Ok(())
}

/// Requests cancellation; Ok(()) when the workflow is already closed or not found.
pub async fn cancel_analysis(client: &Client, workflow_id: &str, reason: &str) -> anyhow::Result<()> {
    let handle = client.get_workflow_handle::<UntypedWorkflow>(workflow_id);
    match handle.cancel(WorkflowCancelOptions::builder().reason(reason.to_string()).build()).await {
        Ok(()) | Err(WorkflowInteractionError::NotFound(_)) => Ok(()),
        Err(WorkflowInteractionError::Rpc(status)) if status.code() == Code::FailedPrecondition => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot cancel workflow {workflow_id}: {e}")),
    }
}
