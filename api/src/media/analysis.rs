//! Starting and cancelling the analysis workflow of a run, from the api's side.

use std::time::Duration;

use anyhow::Context;
use uuid::Uuid;

use drishtiksha_common::MediaType;
use drishtiksha_common::db::runs::{self, Finalization};
use drishtiksha_common::events;
use drishtiksha_workflows::{AnalysisInput, StartAnalysis};

use crate::state::AppState;

/// Run-level reason stored when the workflow could not be started (§6.6).
pub const NOT_STARTED: &str = "Analysis could not be started";

/// A start of Temporal that neither answers nor refuses must not hold the request forever.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The run whose workflow is to be started.
pub struct RunToStart<'a> {
    pub run_id: Uuid,
    pub media_id: Uuid,
    pub user_id: Uuid,
    pub run_number: i32,
    pub workflow_id: &'a str,
    pub media_type: MediaType,
    pub filename: &'a str,
}

/// Starts the run's workflow. When that fails, the run (and the media, if the run is its latest)
/// is finalized FAILED with [`NOT_STARTED`] and the run-level event is published; the error is
/// returned for the caller's 503.
pub async fn start_or_fail(state: &AppState, run: RunToStart<'_>) -> anyhow::Result<()> {
    let started = tokio::time::timeout(START_TIMEOUT, start(state, &run))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("starting workflow {} timed out", run.workflow_id)));
    let Err(e) = started else { return Ok(()) };
    tracing::warn!(run.id = %run.run_id, workflow.id = run.workflow_id, error = %format!("{e:#}"), "analysis not started");
    match runs::finalize(&state.db, run.run_id, Finalization::Finish { error: Some(NOT_STARTED.to_string()) }).await {
        Ok(Some(finalized)) => state.events.publish(&events::run_finalized(&finalized)).await,
        Ok(None) => {}
        Err(db) => {
            tracing::error!(run.id = %run.run_id, error = %db, "run could not be finalized after a failed start")
        }
    }
    Err(e)
}

async fn start(state: &AppState, run: &RunToStart<'_>) -> anyhow::Result<()> {
    let client = state.temporal().await?;
    drishtiksha_workflows::start_analysis(
        &client,
        StartAnalysis {
            task_queue: &state.config.common.temporal.task_queue,
            workflow_id: run.workflow_id,
            input: AnalysisInput { run_id: run.run_id, media_id: run.media_id, user_id: run.user_id },
            media_type: run.media_type,
            run_number: run.run_number,
            filename: run.filename,
        },
    )
    .await
    .context("workflow start failed")?;
    drishtiksha_common::metrics::RUNS_STARTED.inc();
    Ok(())
}

/// Requests cancellation of a run's workflow.
pub async fn cancel(state: &AppState, workflow_id: &str, reason: &str) -> anyhow::Result<()> {
    let client = state.temporal().await?;
    tokio::time::timeout(START_TIMEOUT, drishtiksha_workflows::cancel_analysis(&client, workflow_id, reason))
        .await
        .map_err(|_| anyhow::anyhow!("cancelling workflow {workflow_id} timed out"))?
}
