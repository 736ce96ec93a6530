//! `MediaAnalysisWorkflow`: the deterministic orchestration of one analysis run (`api.md` §6), and
//! the client calls that start and cancel it.

use std::time::Duration;

use drishtiksha_activities::ml::{MSG_GENERIC, MSG_TIMEOUT};
use drishtiksha_activities::{
    AnalysisActivities, DiscoverRequest, Discovery, FinalizeHow, FinalizeRequest, MISSING_FILE_MESSAGE, ModelFailure,
    ModelOutcome, ModelRef, PipelineSettings, Prepared, RunRef, RunSummary, StartRequest, Started,
};
use drishtiksha_common::temporal::{SA_MEDIA_ID, SA_MEDIA_TYPE, SA_RUN_NUMBER, SA_USER_ID};
use drishtiksha_common::{AnalysisStatus, MediaType, RunStatus};
use serde::{Deserialize, Serialize};
use temporalio_client::errors::WorkflowInteractionError;
use temporalio_client::tonic::Code;
use temporalio_client::{Client, UntypedWorkflow, WorkflowCancelOptions, WorkflowIdReusePolicy, WorkflowStartOptions};
use temporalio_common::error::IncomingError;
use temporalio_common::search_attributes::SearchAttributes;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::join_all;
use temporalio_sdk::{
    ActivityExecutionError, ApplicationFailure, WorkflowCancellationToken, WorkflowContext, WorkflowContextView,
    WorkflowResult, WorkflowTermination,
};
use uuid::Uuid;

/// Run-level reason when a step before the fan-out fails for good.
pub const NOT_STARTED_MESSAGE: &str = "Analysis could not be started";

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

impl AnalysisResult {
    fn from_summary(summary: Option<RunSummary>) -> Self {
        match summary {
            Some(s) => Self {
                status: s.status,
                total_models: s.total_models,
                completed_count: s.completed_count,
                failed_count: s.failed_count,
            },
            // The run was deleted while the workflow ran.
            None => Self { status: RunStatus::Cancelled, total_models: 0, completed_count: 0, failed_count: 0 },
        }
    }
}

/// One model's state as the `progress` query shows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModelProgress {
    pub model: String,
    pub status: AnalysisStatus,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub attempt: Option<u32>,
}

/// Orchestrates one analysis run (`api.md` §6.2): prepare, discover, start, fan out one
/// `analyze_with_model` per model, finalize. Deterministic: all I/O is in the activities, and only
/// the SDK's own futures and combinators are awaited.
#[workflow]
#[derive(Default)]
pub struct MediaAnalysisWorkflow {
    models: Vec<ModelProgress>,
}

/// How one model's branch of the fan-out ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelEnd {
    Completed,
    Failed,
    Cancelled,
    Gone,
}

#[workflow_methods]
impl MediaAnalysisWorkflow {
    #[run(name = "MediaAnalysisWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: AnalysisInput) -> WorkflowResult<AnalysisResult> {
        let run_id = input.run_id;
        log_step(ctx, &input, "prepare_media");
        ctx.set_current_details("Probing the media file");
        let prepared = ctx
            .execute_local_activity(AnalysisActivities::prepare_media, RunRef { run_id }, options::local_prepare())
            .await;
        let (media_type, has_audio, settings) = match prepared {
            Ok(Prepared::Ready { media_type, has_audio, settings }) => (media_type, has_audio, settings),
            Ok(Prepared::FileMissing) => return finish(ctx, run_id, Some(MISSING_FILE_MESSAGE.to_string())).await,
            Ok(Prepared::Gone) => return Ok(AnalysisResult::from_summary(None)),
            Err(e) => return not_started(ctx, run_id, &e).await,
        };

        log_step(ctx, &input, "discover_models");
        ctx.set_current_details("Discovering models");
        let request = DiscoverRequest { run_id, media_type, has_audio };
        let discovered = ctx
            .execute_local_activity(AnalysisActivities::discover_models, request, options::local_discover(&settings))
            .await;
        let models = match discovered {
            Ok(Discovery::Models { models }) if models.is_empty() => {
                let message = format!("No compatible models available for {media_type}");
                return finish(ctx, run_id, Some(message)).await;
            }
            Ok(Discovery::Models { models }) => models,
            Ok(Discovery::Failed { message }) => {
                return finish(ctx, run_id, Some(format!("Model discovery failed: {message}"))).await;
            }
            Err(e) if is_cancellation(ctx, &e) => return cancel(ctx, run_id).await,
            Err(e) => {
                let message = format!("Model discovery failed: {}", failure_message(&e));
                return finish(ctx, run_id, Some(message)).await;
            }
        };

        log_step(ctx, &input, "start_run");
        let request = StartRequest { run_id, models: models.clone() };
        // Short database steps run as local activities: no task-queue round trips of their own.
        match ctx
            .execute_local_activity(AnalysisActivities::start_run, request, options::local_step("Start the run"))
            .await
        {
            Ok(Started::Started) => {}
            Ok(Started::Gone) => return Ok(AnalysisResult::from_summary(None)),
            Err(e) => return not_started(ctx, run_id, &e).await,
        }
        ctx.state_mut(|s| {
            s.models = models
                .iter()
                .map(|m| ModelProgress { model: m.clone(), status: AnalysisStatus::Running, attempt: None })
                .collect();
        });
        update_details(ctx);

        log_step(ctx, &input, "analyze_with_model");
        let branches: Vec<_> =
            models.iter().map(|model| analyze(ctx.clone(), run_id, model.clone(), &settings)).collect();
        let ends = join_all(branches).await;

        if ends.contains(&ModelEnd::Cancelled) || ctx.cancellation_token().is_cancelled() {
            return cancel(ctx, run_id).await;
        }
        if ends.contains(&ModelEnd::Gone) {
            return Ok(AnalysisResult::from_summary(None));
        }
        log_step(ctx, &input, "finalize_run");
        finish(ctx, run_id, None).await
    }

    /// Per-model states: `[{model, status, attempt?}]`.
    #[query]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> Vec<ModelProgress> {
        self.models.clone()
    }
}

/// One model's branch: analyse; on a final failure record it; the other branches carry on.
async fn analyze(
    ctx: WorkflowContext<MediaAnalysisWorkflow>,
    run_id: Uuid,
    model: String,
    settings: &PipelineSettings,
) -> ModelEnd {
    let request = ModelRef { run_id, model: model.clone() };
    let outcome =
        ctx.execute_activity(AnalysisActivities::analyze_with_model, request, options::analyze(settings, &model)).await;
    let end = match outcome {
        Ok(ModelOutcome::Completed { attempt, .. }) => {
            set_model(&ctx, &model, AnalysisStatus::Completed, Some(attempt));
            ModelEnd::Completed
        }
        Ok(ModelOutcome::Gone) => ModelEnd::Gone,
        Err(e) if is_cancellation(&ctx, &e) => ModelEnd::Cancelled,
        Err(e) => {
            let failure = ModelFailure { run_id, model: model.clone(), message: failure_message(&e) };
            let recorded = ctx
                .execute_activity(
                    AnalysisActivities::record_model_failure,
                    failure,
                    options::step("Record a model failure"),
                )
                .await;
            match recorded {
                Ok(attempts) => {
                    set_model(&ctx, &model, AnalysisStatus::Failed, (attempts > 0).then_some(attempts));
                    ModelEnd::Failed
                }
                Err(e) if is_cancellation(&ctx, &e) => ModelEnd::Cancelled,
                Err(_) => ModelEnd::Failed,
            }
        }
    };
    update_details(&ctx);
    end
}

fn set_model(ctx: &WorkflowContext<MediaAnalysisWorkflow>, model: &str, status: AnalysisStatus, attempt: Option<u32>) {
    ctx.state_mut(|s| {
        if let Some(m) = s.models.iter_mut().find(|m| m.model == model) {
            m.status = status;
            m.attempt = attempt;
        }
    });
}

fn update_details(ctx: &WorkflowContext<MediaAnalysisWorkflow>) {
    let details = ctx.state(|s| {
        let count = |st: AnalysisStatus| s.models.iter().filter(|m| m.status == st).count();
        format!(
            "Analysing with {} models: {} completed, {} failed, {} in progress",
            s.models.len(),
            count(AnalysisStatus::Completed),
            count(AnalysisStatus::Failed),
            count(AnalysisStatus::Running) + count(AnalysisStatus::Pending)
        )
    });
    ctx.set_current_details(details);
}

fn log_step(ctx: &WorkflowContext<MediaAnalysisWorkflow>, input: &AnalysisInput, step: &str) {
    if !ctx.is_replaying() {
        tracing::info!(workflow_id = ctx.workflow_id(), run_id = %input.run_id, media.id = %input.media_id, step, "workflow step");
    }
}

fn is_cancellation(ctx: &WorkflowContext<MediaAnalysisWorkflow>, e: &ActivityExecutionError) -> bool {
    matches!(e, ActivityExecutionError::Cancelled(_)) || ctx.cancellation_token().is_cancelled()
}

/// The text stored for a model whose last attempt failed: the activity's classified message.
fn failure_message(e: &ActivityExecutionError) -> String {
    match e.cause() {
        Some(IncomingError::Application(app)) => app
            .failure()
            .map(|f| f.message.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| MSG_GENERIC.to_string()),
        Some(IncomingError::Timeout(_)) => MSG_TIMEOUT.to_string(),
        _ => MSG_GENERIC.to_string(),
    }
}

/// Finalizes with the usual rule.
async fn finish(
    ctx: &WorkflowContext<MediaAnalysisWorkflow>,
    run_id: Uuid,
    error: Option<String>,
) -> WorkflowResult<AnalysisResult> {
    if !ctx.is_replaying() {
        tracing::info!(workflow_id = ctx.workflow_id(), run_id = %run_id, error = error.as_deref(), step = "finalize_run", "finalizing run");
    }
    ctx.set_current_details("Finalizing");
    let request = FinalizeRequest { run_id, how: FinalizeHow::Finish { error } };
    match ctx
        .execute_local_activity(AnalysisActivities::finalize_run, request, options::local_step("Finalize the run"))
        .await
    {
        Ok(summary) => Ok(AnalysisResult::from_summary(summary)),
        Err(e) if is_cancellation(ctx, &e) => cancel(ctx, run_id).await,
        Err(e) => Err(ApplicationFailure::new(format!("finalizing the run failed: {}", failure_message(&e))).into()),
    }
}

/// A step before the fan-out failed for good (or was cancelled).
async fn not_started(
    ctx: &WorkflowContext<MediaAnalysisWorkflow>,
    run_id: Uuid,
    e: &ActivityExecutionError,
) -> WorkflowResult<AnalysisResult> {
    if is_cancellation(ctx, e) {
        return cancel(ctx, run_id).await;
    }
    finish(ctx, run_id, Some(NOT_STARTED_MESSAGE.to_string())).await
}

/// The cancellation path (§6.4): finalize CANCELLED in a detached scope, then end Cancelled.
async fn cancel(ctx: &WorkflowContext<MediaAnalysisWorkflow>, run_id: Uuid) -> WorkflowResult<AnalysisResult> {
    if !ctx.is_replaying() {
        tracing::info!(workflow_id = ctx.workflow_id(), run_id = %run_id, step = "finalize_run", "cancelling run");
    }
    ctx.state_mut(|s| {
        for m in s.models.iter_mut().filter(|m| !m.status.is_finished()) {
            m.status = AnalysisStatus::Cancelled;
        }
    });
    ctx.set_current_details("Cancelled");
    let request = FinalizeRequest { run_id, how: FinalizeHow::Cancel };
    let detached = options::finalize(Some(WorkflowCancellationToken::new()));
    if let Err(e) = ctx.execute_activity(AnalysisActivities::finalize_run, request, detached).await {
        tracing::warn!(workflow_id = ctx.workflow_id(), run_id = %run_id, error = %failure_message(&e), "cancelled run not finalized");
    }
    Err(WorkflowTermination::cancelled())
}

/// Activity options, one helper per kind of step.
mod options {
    use std::time::Duration;

    use drishtiksha_activities::PipelineSettings;
    use drishtiksha_activities::ml::MlErrorKind;
    use temporalio_common::RetryPolicy;
    use temporalio_sdk::{ActivityOptions, LocalActivityOptions, WorkflowCancellationToken};

    const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);

    /// Database and bookkeeping steps: short, retried with backoff for a while.
    fn step_retry() -> RetryPolicy {
        RetryPolicy::builder()
            .initial_interval(Duration::from_secs(1))
            .backoff_coefficient(2.0)
            .maximum_interval(Duration::from_secs(30))
            .maximum_attempts(10)
            .build()
    }

    fn ml_retry(settings: &PipelineSettings, non_retryable: Vec<&'static str>) -> RetryPolicy {
        let initial = Duration::from_millis(settings.retry_initial_interval_ms.max(1));
        RetryPolicy::builder()
            .initial_interval(initial)
            .backoff_coefficient(2.0)
            .maximum_interval(initial.saturating_mul(100))
            .maximum_attempts(settings.retry_max_attempts)
            .non_retryable_error_types(non_retryable)
            .build()
    }

    pub fn step(summary: &str) -> ActivityOptions {
        ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
            .retry_policy(step_retry())
            .summary(summary.to_string())
            .build()
    }

    pub fn local_step(summary: &str) -> LocalActivityOptions {
        LocalActivityOptions::builder()
            .start_to_close_timeout(Duration::from_secs(60))
            .retry_policy(step_retry())
            .summary(summary.to_string())
            .build()
    }

    pub fn local_prepare() -> LocalActivityOptions {
        LocalActivityOptions::builder()
            .start_to_close_timeout(Duration::from_secs(10 * 60))
            .retry_policy(step_retry())
            .summary("Probe the media file".to_string())
            .build()
    }

    pub fn local_discover(settings: &PipelineSettings) -> LocalActivityOptions {
        LocalActivityOptions::builder()
            .start_to_close_timeout(Duration::from_secs(5 * 60))
            .retry_policy(ml_retry(settings, vec![MlErrorKind::AuthRejected.type_name()]))
            .summary("Discover models (ML /stats)".to_string())
            .build()
    }

    pub fn analyze(settings: &PipelineSettings, model: &str) -> ActivityOptions {
        let non_retryable = [MlErrorKind::AuthRejected, MlErrorKind::RequestRejected, MlErrorKind::InvalidResponse]
            .map(MlErrorKind::type_name)
            .to_vec();
        ActivityOptions::with_start_to_close_timeout(Duration::from_secs(settings.analyze_timeout_secs + 60))
            .heartbeat_timeout(HEARTBEAT_TIMEOUT)
            .retry_policy(ml_retry(settings, non_retryable))
            .summary(format!("Analyze with {model}"))
            .build()
    }

    /// `detached`: a token of its own, so that finalizing a cancelled run is not itself cancelled.
    pub fn finalize(detached: Option<WorkflowCancellationToken>) -> ActivityOptions {
        ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
            .retry_policy(step_retry())
            .summary("Finalize the run".to_string())
            .maybe_cancellation_token(detached)
            .build()
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
