//! The analysis workflow as its clients see it: its type name, input, result and `progress` query
//! rows, and how a run's workflow is started and cancelled. The api and the reconciler use this
//! module without linking the workflow's code or the worker side of the SDK; the workflow itself
//! (crate `drishtiksha-workflows`) is declared with the same name and types.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_client::errors::{WorkflowInteractionError, WorkflowStartError};
use temporalio_client::tonic::Code;
use temporalio_client::{Client, UntypedWorkflow, WorkflowCancelOptions, WorkflowIdReusePolicy, WorkflowStartOptions};
use temporalio_common::search_attributes::{SearchAttributeKey, SearchAttributes};
use temporalio_common::{HasWorkflowDefinition, WorkflowDefinition};
use uuid::Uuid;

use crate::model::{AnalysisStatus, MediaType, RunStatus};
use crate::reconcile::RunToStart;

/// The workflow type, as registered by the worker and shown in the Web UI.
pub const WORKFLOW_TYPE: &str = "MediaAnalysisWorkflow";

pub const SA_MEDIA_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("MediaId");
pub const SA_USER_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("UserId");
pub const SA_MEDIA_TYPE: SearchAttributeKey<String> = SearchAttributeKey::keyword("MediaType");
pub const SA_RUN_NUMBER: SearchAttributeKey<i64> = SearchAttributeKey::int("RunNumber");

/// A workflow is given 24 hours; the reconciler finalizes a run whose workflow timed out.
const EXECUTION_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// `media-<mediaId>-run-<runNumber>`: readable in the Web UI; a second start of a run is refused.
pub fn workflow_id(media_id: Uuid, run_number: i32) -> String {
    format!("media-{media_id}-run-{run_number}")
}

/// The workflow's input: ids only; everything else is read from the database by the activities.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisInput {
    pub run_id: Uuid,
    pub media_id: Uuid,
    pub user_id: Uuid,
}

/// The workflow's result: the run as it ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisResult {
    pub status: RunStatus,
    pub total_models: i32,
    pub completed_count: i64,
    pub failed_count: i64,
}

/// One model's state as the workflow's `progress` query shows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModelProgress {
    pub model: String,
    pub status: AnalysisStatus,
    /// The ML attempt (answers of the ML server counted so far + 1, or the attempts made).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub attempt: Option<u32>,
    /// Set while the model waits for an ML server that is down or not ready.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub waiting: Option<String>,
    /// The model that answered, when the ML server fell back to another one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model_used: Option<String>,
}

/// The workflow's definition for its clients: [`WORKFLOW_TYPE`], [`AnalysisInput`] in,
/// [`AnalysisResult`] out.
pub struct MediaAnalysis;

impl WorkflowDefinition for MediaAnalysis {
    type Input = AnalysisInput;
    type Output = AnalysisResult;

    fn name(&self) -> &str {
        WORKFLOW_TYPE
    }
}

impl HasWorkflowDefinition for MediaAnalysis {
    type Run = Self;
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

/// Why a workflow start did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The run's workflow exists already (started by an earlier try).
    #[error("the workflow is already started")]
    AlreadyStarted,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Starts the workflow with search attributes MediaId/UserId/MediaType/RunNumber and a static
/// summary. A second start of the same run is refused by Temporal ([`StartError::AlreadyStarted`]).
pub async fn start_analysis(client: &Client, req: StartAnalysis<'_>) -> Result<(), StartError> {
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
        .execution_timeout(EXECUTION_TIMEOUT)
        .build();
    match client.start_workflow(MediaAnalysis, req.input, options).await {
        Ok(_) => Ok(()),
        Err(WorkflowStartError::AlreadyStarted { .. }) => Err(StartError::AlreadyStarted),
        Err(e) => Err(StartError::Other(anyhow::anyhow!("cannot start workflow {}: {e}", req.workflow_id))),
    }
}

/// Starts a run's workflow; a workflow that already exists (an earlier try got through) counts
/// as started.
pub async fn start_run(client: &Client, task_queue: &str, run: &RunToStart) -> anyhow::Result<()> {
    let request = StartAnalysis {
        task_queue,
        workflow_id: &run.workflow_id,
        input: AnalysisInput { run_id: run.run_id, media_id: run.media_id, user_id: run.user_id },
        media_type: run.media_type,
        run_number: run.run_number,
        filename: &run.filename,
    };
    match start_analysis(client, request).await {
        Ok(()) | Err(StartError::AlreadyStarted) => Ok(()),
        Err(StartError::Other(e)) => Err(e),
    }
}

/// What a cancellation request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The workflow was asked to wind down (or had already closed).
    Requested,
    /// There is no such workflow: the run was never started (durable intake), or was deleted.
    NoWorkflow,
}

/// Requests cancellation; a workflow that is already closed counts as requested.
pub async fn cancel_analysis(client: &Client, workflow_id: &str, reason: &str) -> anyhow::Result<Cancelled> {
    let handle = client.get_workflow_handle::<UntypedWorkflow>(workflow_id);
    match handle.cancel(WorkflowCancelOptions::builder().reason(reason.to_string()).build()).await {
        Ok(()) => Ok(Cancelled::Requested),
        Err(WorkflowInteractionError::NotFound(_)) => Ok(Cancelled::NoWorkflow),
        Err(WorkflowInteractionError::Rpc(status)) if status.code() == Code::FailedPrecondition => {
            Ok(Cancelled::Requested)
        }
        Err(e) => Err(anyhow::anyhow!("cannot cancel workflow {workflow_id}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_ids_are_readable() {
        assert_eq!(workflow_id(Uuid::nil(), 2), "media-00000000-0000-0000-0000-000000000000-run-2");
    }

    #[test]
    fn the_input_is_camel_case_ids() {
        let input = AnalysisInput { run_id: Uuid::nil(), media_id: Uuid::nil(), user_id: Uuid::nil() };
        let json = serde_json::to_value(&input).expect("json");
        assert_eq!(
            json.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["runId".to_string(), "mediaId".to_string(), "userId".to_string()])
        );
    }
}
