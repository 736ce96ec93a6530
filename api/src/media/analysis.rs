//! Starting and cancelling the analysis workflow of a run, from the api's side.

use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use uuid::Uuid;

use drishtiksha_common::MediaType;
use drishtiksha_common::reconcile;
use drishtiksha_workflows::{AnalysisInput, StartAnalysis, StartError};

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

impl RunToStart<'_> {
    fn owned(&self) -> reconcile::RunToStart {
        reconcile::RunToStart {
            run_id: self.run_id,
            media_id: self.media_id,
            user_id: self.user_id,
            media_type: self.media_type,
            run_number: self.run_number,
            filename: self.filename.to_string(),
            workflow_id: self.workflow_id.to_string(),
        }
    }
}

/// Starts the run's workflow. When Temporal does not accept the start in time (it is away or
/// restarting), the run stays QUEUED and the start is retried in the background with capped
/// backoff; the worker's reconciler also starts QUEUED runs that have no workflow. Nothing is lost
/// either way, so the caller answers 202.
pub async fn start_or_queue(state: &AppState, run: RunToStart<'_>) {
    let started = tokio::time::timeout(START_TIMEOUT, start(state, &run.owned()))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("starting workflow {} timed out", run.workflow_id)));
    let Err(e) = started else { return };
    tracing::warn!(run.id = %run.run_id, workflow.id = run.workflow_id, error = %format!("{e:#}"),
        "analysis not started yet; the run stays queued and its start is retried");
    if BACKGROUND_STARTS.fetch_add(1, Ordering::SeqCst) >= MAX_BACKGROUND_STARTS {
        BACKGROUND_STARTS.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let state = state.clone();
    let run = run.owned();
    tokio::spawn(async move {
        retry_start(&state, &run).await;
        BACKGROUND_STARTS.fetch_sub(1, Ordering::SeqCst);
    });
}

async fn retry_start(state: &AppState, run: &reconcile::RunToStart) {
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

async fn start(state: &AppState, run: &reconcile::RunToStart) -> anyhow::Result<()> {
    let client = state.temporal().await?;
    let started = drishtiksha_workflows::start_analysis(
        &client,
        StartAnalysis {
            task_queue: &state.config.common.temporal.task_queue,
            workflow_id: &run.workflow_id,
            input: AnalysisInput { run_id: run.run_id, media_id: run.media_id, user_id: run.user_id },
            media_type: run.media_type,
            run_number: run.run_number,
            filename: &run.filename,
        },
    )
    .await;
    match started {
        Ok(()) => {
            drishtiksha_common::metrics::RUNS_STARTED.inc();
            Ok(())
        }
        Err(StartError::AlreadyStarted) => Ok(()),
        Err(StartError::Other(e)) => Err(e.context("workflow start failed")),
    }
}

/// Requests cancellation of a run's workflow.
pub async fn cancel(state: &AppState, workflow_id: &str, reason: &str) -> anyhow::Result<()> {
    let client = state.temporal().await?;
    tokio::time::timeout(CANCEL_TIMEOUT, drishtiksha_workflows::cancel_analysis(&client, workflow_id, reason))
        .await
        .map_err(|_| anyhow::anyhow!("cancelling workflow {workflow_id} timed out"))?
}
