//! Starting and cancelling the analysis workflow of a run, from the api's side.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use drishtiksha_common::db::runs::Finalization;
use drishtiksha_common::events;
pub use drishtiksha_common::reconcile::RunToStart;
use drishtiksha_common::workflow::Cancelled;
use uuid::Uuid;

use crate::state::AppState;

/// How long a request waits for Temporal to accept a workflow start before it answers anyway and
/// leaves the start to the background (durable intake).
const START_TIMEOUT: Duration = Duration::from_secs(3);
/// A cancel that neither answers nor refuses must not hold the request forever.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the api keeps retrying a start in the background; after that the reconciler starts
/// the run on its next pass.
const BACKGROUND_PATIENCE: Duration = Duration::from_secs(10 * 60);
/// Background starts in flight per process; beyond this, the reconciler takes over.
const MAX_BACKGROUND_STARTS: usize = 1000;

static BACKGROUND_STARTS: AtomicUsize = AtomicUsize::new(0);

/// Starts the run's workflow. When Temporal does not accept the start in time (it is away or
/// restarting), the run stays QUEUED and the start is retried in the background with capped
/// backoff; the worker's reconciler also starts QUEUED runs that have no workflow. Nothing is lost
/// either way, so the caller answers 202.
pub async fn start_or_queue(state: &AppState, run: RunToStart) {
    let started = tokio::time::timeout(START_TIMEOUT, start(state, &run))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("starting workflow {} timed out", run.workflow_id)));
    let Err(e) = started else { return };
    tracing::warn!(run.id = %run.run_id, workflow.id = %run.workflow_id, error = %format!("{e:#}"),
        "analysis not started yet; the run stays queued and its start is retried");
    if BACKGROUND_STARTS.fetch_add(1, Ordering::SeqCst) >= MAX_BACKGROUND_STARTS {
        BACKGROUND_STARTS.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        retry_start(&state, &run).await;
        BACKGROUND_STARTS.fetch_sub(1, Ordering::SeqCst);
    });
}

async fn retry_start(state: &AppState, run: &RunToStart) {
    let deadline = tokio::time::Instant::now() + BACKGROUND_PATIENCE;
    let mut delay = Duration::from_millis(500);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(15));
        match tokio::time::timeout(START_TIMEOUT * 5, start(state, run)).await {
            Ok(Ok(())) => {
                tracing::info!(run.id = %run.run_id, workflow.id = %run.workflow_id, "queued run started");
                return;
            }
            Ok(Err(e)) => tracing::debug!(run.id = %run.run_id, error = %format!("{e:#}"), "start retried later"),
            Err(_) => tracing::debug!(run.id = %run.run_id, "start timed out; retried later"),
        }
    }
    tracing::warn!(run.id = %run.run_id, "run still not started; the reconciler will start it");
}

async fn start(state: &AppState, run: &RunToStart) -> anyhow::Result<()> {
    let client = state.temporal().await?;
    drishtiksha_common::workflow::start_run(&client, &state.config.common.temporal.task_queue, run)
        .await
        .map_err(|e| e.context("workflow start failed"))?;
    drishtiksha_common::metrics::RUNS_STARTED.inc();
    Ok(())
}

/// Requests cancellation of a run's workflow.
pub async fn cancel(state: &AppState, workflow_id: &str, reason: &str) -> anyhow::Result<Cancelled> {
    let client = state.temporal().await?;
    tokio::time::timeout(CANCEL_TIMEOUT, drishtiksha_common::workflow::cancel_analysis(&client, workflow_id, reason))
        .await
        .map_err(|_| anyhow::anyhow!("cancelling workflow {workflow_id} timed out"))?
}

/// Cancels a run that has no workflow yet (accepted while Temporal was away, its start still
/// pending): the run is finalized CANCELLED in the database at once, so a start that happens
/// later finds it finished and does nothing. A start that raced in since the first request is
/// asked to cancel too.
pub async fn cancel_unstarted(state: &AppState, run_id: Uuid, workflow_id: &str, reason: &str) -> anyhow::Result<()> {
    if events::finalize_run(&state.db, &state.events, run_id, Finalization::Cancel).await?.is_some() {
        tracing::info!(run.id = %run_id, "queued run cancelled before its workflow started");
    }
    cancel(state, workflow_id, reason).await.map(|_| ())
}
