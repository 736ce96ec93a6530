//! `MediaAnalysisWorkflow`: the deterministic orchestration of one analysis run (§6). Its name,
//! input, result and the client calls that start and cancel it are in
//! `drishtiksha_common::workflow`, which the api uses without linking this crate.

use std::time::{Duration, SystemTime};

use drishtiksha_activities::{
    AnalysisActivities, DiscoverRequest, Discovery, FinalizeHow, FinalizeRequest, InferOutcome, InferRequest,
    ModelFailure, PipelineSettings, Prepared, RecordRequest, Recorded, RunRef, RunSummary, StartRequest, Started,
};
use drishtiksha_common::workflow::{AnalysisInput, AnalysisResult, ModelProgress, WORKFLOW_TYPE};
use drishtiksha_common::{AnalysisStatus, MediaType, RunStatus, messages};
use temporalio_common::error::IncomingError;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::join_all;
use temporalio_sdk::{
    ActivityExecutionError, ApplicationFailure, TimerOptions, WorkflowCancellationToken, WorkflowContext,
    WorkflowContextView, WorkflowResult, WorkflowTermination,
};
use uuid::Uuid;

/// The workflow's result from the run as the database recorded it.
fn result_from_summary(summary: Option<RunSummary>) -> AnalysisResult {
    match summary {
        Some(s) => AnalysisResult {
            status: s.status,
            total_models: s.total_models,
            completed_count: s.completed_count,
            failed_count: s.failed_count,
        },
        // The run was deleted while the workflow ran.
        None => AnalysisResult { status: RunStatus::Cancelled, total_models: 0, completed_count: 0, failed_count: 0 },
    }
}

/// Orchestrates one analysis run (`docs/contract.md` §6.2): prepare, discover, start, fan out one model
/// call per model on the inference task queue, record each answer, finalize. Deterministic: all
/// I/O is in the activities, and only the SDK's own futures and combinators are awaited.
#[workflow]
#[derive(Default)]
pub struct MediaAnalysisWorkflow {
    models: Vec<ModelProgress>,
    discovery_waiting: Option<String>,
}

/// How one model's branch of the fan-out ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelEnd {
    Completed,
    Failed,
    Cancelled,
    Gone,
}

/// What every model call of a run needs.
struct RunInfo {
    input: AnalysisInput,
    media_type: MediaType,
    storage_key: String,
    run_number: i32,
    settings: PipelineSettings,
}

#[workflow_methods]
impl MediaAnalysisWorkflow {
    #[run(name = WORKFLOW_TYPE)]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: AnalysisInput) -> WorkflowResult<AnalysisResult> {
        let run_id = input.run_id;
        log_step(ctx, &input, "prepare_media");
        ctx.set_current_details("Probing the media file");
        let prepared = ctx
            .execute_local_activity(AnalysisActivities::prepare_media, RunRef { run_id }, options::local_prepare())
            .await;
        let info = match prepared {
            Ok(Prepared::Ready { media_type, has_audio, settings, run_number, storage_key }) => {
                (RunInfo { input: input.clone(), media_type, storage_key, run_number, settings }, has_audio)
            }
            Ok(Prepared::FileMissing) => return finish(ctx, run_id, Some(messages::MISSING_FILE.to_string())).await,
            Ok(Prepared::Gone) => return as_recorded(ctx, run_id).await,
            Err(e) => return not_started(ctx, run_id, &e).await,
        };
        let (info, has_audio) = info;

        log_step(ctx, &input, "discover_models");
        let models = match discover(ctx, &info, has_audio).await {
            Ok(models) => models,
            Err(end) => return end.finish(ctx, run_id).await,
        };

        log_step(ctx, &input, "start_run");
        let request = StartRequest { run_id, models: models.clone() };
        // Short database steps run as local activities: no task-queue round trips of their own.
        match ctx
            .execute_local_activity(AnalysisActivities::start_run, request, options::local_step("Start the run"))
            .await
        {
            Ok(Started::Started) => {}
            Ok(Started::Gone) => return as_recorded(ctx, run_id).await,
            Err(e) => return not_started(ctx, run_id, &e).await,
        }
        ctx.state_mut(|s| {
            s.models = models
                .iter()
                .map(|m| ModelProgress {
                    model: m.clone(),
                    status: AnalysisStatus::Pending,
                    attempt: None,
                    waiting: None,
                    model_used: None,
                })
                .collect();
        });
        update_details(ctx);

        log_step(ctx, &input, "infer");
        let branches: Vec<_> = models.iter().map(|model| analyze(ctx.clone(), &info, model.clone())).collect();
        let ends = join_all(branches).await;

        if ends.contains(&ModelEnd::Cancelled) || ctx.cancellation_token().is_cancelled() {
            return cancel(ctx, run_id).await;
        }
        if ends.contains(&ModelEnd::Gone) {
            return as_recorded(ctx, run_id).await;
        }
        log_step(ctx, &input, "finalize_run");
        finish(ctx, run_id, None).await
    }

    /// Per-model states: `[{model, status, attempt?, waiting?, modelUsed?}]`.
    #[query]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> Vec<ModelProgress> {
        self.models.clone()
    }
}

/// How a run ends before its fan-out.
enum EarlyEnd {
    Finish(Option<String>),
    Cancel,
}

impl EarlyEnd {
    async fn finish(
        self,
        ctx: &WorkflowContext<MediaAnalysisWorkflow>,
        run_id: Uuid,
    ) -> WorkflowResult<AnalysisResult> {
        match self {
            Self::Finish(error) => finish(ctx, run_id, error).await,
            Self::Cancel => cancel(ctx, run_id).await,
        }
    }
}

/// Step 2: the compatible models; an ML server that is down or not ready is waited for (up to
/// `ML_UNAVAILABLE_WAIT`), showing "Waiting for the ML server" in the run's details.
async fn discover(
    ctx: &WorkflowContext<MediaAnalysisWorkflow>,
    info: &RunInfo,
    has_audio: Option<bool>,
) -> Result<Vec<String>, EarlyEnd> {
    let run_id = info.input.run_id;
    let mut wait = Wait::new(&info.settings);
    loop {
        ctx.set_current_details("Discovering models");
        let request = DiscoverRequest { run_id, media_type: info.media_type, has_audio };
        let discovered = ctx
            .execute_local_activity(
                AnalysisActivities::discover_models,
                request,
                options::local_discover(&info.settings),
            )
            .await;
        match discovered {
            Ok(Discovery::Models { models }) if models.is_empty() => {
                return Err(EarlyEnd::Finish(Some(messages::no_compatible_models(info.media_type))));
            }
            Ok(Discovery::Models { models }) => {
                ctx.state_mut(|s| s.discovery_waiting = None);
                return Ok(models);
            }
            Ok(Discovery::Failed { message }) => {
                return Err(EarlyEnd::Finish(Some(format!("Model discovery failed: {message}"))));
            }
            Ok(Discovery::Unavailable { message }) => {
                let Some(delay) = wait.next(ctx) else {
                    return Err(EarlyEnd::Finish(Some(format!("Model discovery failed: {message}"))));
                };
                let note = format!("{}: {message}", messages::WAITING_FOR_ML);
                ctx.state_mut(|s| s.discovery_waiting = Some(note.clone()));
                ctx.set_current_details(format!("{note} (discovering models; next try in {}s)", delay.as_secs()));
                ctx.timer(TimerOptions::builder(delay).summary(messages::WAITING_FOR_ML.to_string()).build()).await;
                if ctx.cancellation_token().is_cancelled() {
                    return Err(EarlyEnd::Cancel);
                }
            }
            Err(e) if is_cancellation(ctx, &e) => return Err(EarlyEnd::Cancel),
            Err(e) => return Err(EarlyEnd::Finish(Some(format!("Model discovery failed: {}", failure_message(&e))))),
        }
    }
}

/// Waiting for an ML server that is down: capped exponential backoff within a window measured in
/// workflow time.
struct Wait {
    window: Duration,
    since: Option<SystemTime>,
    delay: Duration,
}

impl Wait {
    const FIRST: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(30);

    fn new(settings: &PipelineSettings) -> Self {
        Self { window: Duration::from_secs(settings.unavailable_wait_secs), since: None, delay: Self::FIRST }
    }

    /// The next delay, or `None` when the window is over.
    fn next(&mut self, ctx: &WorkflowContext<MediaAnalysisWorkflow>) -> Option<Duration> {
        let now = ctx.workflow_time().unwrap_or(SystemTime::UNIX_EPOCH);
        let since = *self.since.get_or_insert(now);
        let waited = now.duration_since(since).unwrap_or_default();
        if waited >= self.window {
            return None;
        }
        let delay = self.delay.min(self.window - waited).max(Duration::from_millis(100));
        self.delay = (self.delay * 2).min(Self::CAP);
        Some(delay)
    }

    /// The server answered: a later outage starts a new window.
    fn reset(&mut self) {
        self.since = None;
        self.delay = Self::FIRST;
    }
}

/// One model's branch: call the model on the inference task queue until the ML server answers,
/// keep and record the answer; a final refusal is recorded and the other branches carry on.
///
/// Only the ML server's own answers count against `ML_RETRY_MAX_ATTEMPTS`: a lost worker, a
/// rolling restart or a database outage are activity failures that Temporal retries without
/// counting, and a server that is down or not ready is waited for.
async fn analyze(ctx: WorkflowContext<MediaAnalysisWorkflow>, info: &RunInfo, model: String) -> ModelEnd {
    let run_id = info.input.run_id;
    let max_attempts = info.settings.retry_max_attempts.max(1);
    let mut attempt = 1u32;
    let mut wait = Wait::new(&info.settings);
    let end = loop {
        set_model(&ctx, &model, |m| {
            m.status = AnalysisStatus::Running;
            m.attempt = Some(attempt);
        });
        let request = InferRequest {
            run_id,
            media_id: info.input.media_id,
            user_id: info.input.user_id,
            media_type: info.media_type,
            storage_key: info.storage_key.clone(),
            model: model.clone(),
            attempt,
            max_attempts,
        };
        let outcome = ctx.execute_activity(AnalysisActivities::infer, request, options::infer(info, &model)).await;
        match outcome {
            Ok(InferOutcome::Answered(answer)) => {
                let record = RecordRequest { run_id, model: model.clone(), attempt, result_key: answer.result_key };
                match ctx
                    .execute_activity(AnalysisActivities::record_result, record, options::record("Record the answer"))
                    .await
                {
                    Ok(Recorded::Completed) => {
                        set_model(&ctx, &model, |m| {
                            m.status = AnalysisStatus::Completed;
                            m.waiting = None;
                            m.model_used = answer.model_used.clone();
                        });
                        break ModelEnd::Completed;
                    }
                    Ok(Recorded::Gone) => break ModelEnd::Gone,
                    // The kept answer is gone (storage lost it): ask the model again.
                    Ok(Recorded::AnswerMissing) => continue,
                    Err(e) if is_cancellation(&ctx, &e) => break ModelEnd::Cancelled,
                    Err(e) => break fail(&ctx, run_id, &model, failure_message(&e), attempt).await,
                }
            }
            Ok(InferOutcome::Gone) => break ModelEnd::Gone,
            Ok(InferOutcome::Refused(refusal)) if refusal.waitable => {
                let Some(delay) = wait.next(&ctx) else {
                    break fail(&ctx, run_id, &model, refusal.message, attempt - 1).await;
                };
                set_model(&ctx, &model, |m| {
                    m.status = AnalysisStatus::Pending;
                    m.waiting = Some(format!("{}: {}", messages::WAITING_FOR_ML, refusal.message));
                });
                update_details(&ctx);
                ctx.timer(TimerOptions::builder(delay).summary(messages::WAITING_FOR_ML.to_string()).build()).await;
            }
            Ok(InferOutcome::Refused(refusal)) if refusal.retryable && attempt < max_attempts => {
                wait.reset();
                let backoff = retry_delay(&info.settings, attempt)
                    .max(Duration::from_millis(refusal.retry_after_ms.unwrap_or(0)));
                set_model(&ctx, &model, |m| {
                    m.status = AnalysisStatus::Pending;
                    m.waiting = None;
                });
                update_details(&ctx);
                ctx.timer(TimerOptions::builder(backoff).summary(format!("Retry {model}")).build()).await;
                attempt += 1;
            }
            Ok(InferOutcome::Refused(refusal)) => break fail(&ctx, run_id, &model, refusal.message, attempt).await,
            Err(e) if is_cancellation(&ctx, &e) => break ModelEnd::Cancelled,
            Err(e) => break fail(&ctx, run_id, &model, failure_message(&e), attempt.saturating_sub(1)).await,
        }
        if ctx.cancellation_token().is_cancelled() {
            break ModelEnd::Cancelled;
        }
        update_details(&ctx);
    };
    update_details(&ctx);
    end
}

/// The delay before ML attempt `attempt + 1`: initial × 2^(attempt-1), at most initial × 100.
fn retry_delay(settings: &PipelineSettings, attempt: u32) -> Duration {
    let initial = Duration::from_millis(settings.retry_initial_interval_ms.max(1));
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1)).min(100);
    initial.saturating_mul(factor).min(initial.saturating_mul(100))
}

/// Records a model's final failure (row FAILED with `attempts` calls that reached the server).
async fn fail(
    ctx: &WorkflowContext<MediaAnalysisWorkflow>,
    run_id: Uuid,
    model: &str,
    message: String,
    attempts: u32,
) -> ModelEnd {
    let failure = ModelFailure { run_id, model: model.to_string(), message, attempts: Some(attempts) };
    let recorded = ctx
        .execute_activity(AnalysisActivities::record_model_failure, failure, options::record("Record a model failure"))
        .await;
    match recorded {
        Ok(_) => {
            set_model(ctx, model, |m| {
                m.status = AnalysisStatus::Failed;
                m.attempt = Some(attempts);
                m.waiting = None;
            });
            ModelEnd::Failed
        }
        Err(e) if is_cancellation(ctx, &e) => ModelEnd::Cancelled,
        Err(_) => ModelEnd::Failed,
    }
}

fn set_model(ctx: &WorkflowContext<MediaAnalysisWorkflow>, model: &str, change: impl FnOnce(&mut ModelProgress)) {
    ctx.state_mut(|s| {
        if let Some(m) = s.models.iter_mut().find(|m| m.model == model) {
            change(m);
        }
    });
}

fn update_details(ctx: &WorkflowContext<MediaAnalysisWorkflow>) {
    let details = ctx.state(|s| {
        let count = |st: AnalysisStatus| s.models.iter().filter(|m| m.status == st).count();
        let summary = format!(
            "Analysing with {} models: {} completed, {} failed, {} in progress",
            s.models.len(),
            count(AnalysisStatus::Completed),
            count(AnalysisStatus::Failed),
            count(AnalysisStatus::Running) + count(AnalysisStatus::Pending)
        );
        match s.models.iter().find_map(|m| m.waiting.as_ref()) {
            Some(waiting) => format!("{waiting}. {summary}"),
            None => summary,
        }
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

/// The text stored for a step that failed for good: the activity's classified message.
fn failure_message(e: &ActivityExecutionError) -> String {
    match e.cause() {
        // Only classified ML failures carry a message for users; anything else (a database or
        // storage error) is never shown as such.
        Some(IncomingError::Application(app)) => app
            .failure()
            .filter(|f| !f.message.is_empty() && app.type_name().is_some_and(|t| t.starts_with("ML_")))
            .map(|f| f.message.clone())
            .unwrap_or_else(|| messages::ML_GENERIC.to_string()),
        Some(IncomingError::Timeout(_)) => messages::ML_TIMEOUT.to_string(),
        _ => messages::ML_GENERIC.to_string(),
    }
}

/// The run as the database has it: what a re-executed workflow of a run that has already ended
/// (e.g. after an operator's reset) or was deleted returns.
async fn as_recorded(ctx: &WorkflowContext<MediaAnalysisWorkflow>, run_id: Uuid) -> WorkflowResult<AnalysisResult> {
    let summary = ctx
        .execute_local_activity(AnalysisActivities::run_summary, RunRef { run_id }, options::local_step("Read the run"))
        .await;
    match summary {
        Ok(summary) => Ok(result_from_summary(summary)),
        Err(e) if is_cancellation(ctx, &e) => cancel(ctx, run_id).await,
        Err(_) => Ok(result_from_summary(None)),
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
        Ok(summary) => Ok(result_from_summary(summary)),
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
    finish(ctx, run_id, Some(messages::NOT_STARTED.to_string())).await
}

/// The cancellation path (§6.4): finalize CANCELLED in a detached scope, then end Cancelled.
async fn cancel(ctx: &WorkflowContext<MediaAnalysisWorkflow>, run_id: Uuid) -> WorkflowResult<AnalysisResult> {
    if !ctx.is_replaying() {
        tracing::info!(workflow_id = ctx.workflow_id(), run_id = %run_id, step = "finalize_run", "cancelling run");
    }
    ctx.state_mut(|s| {
        for m in s.models.iter_mut().filter(|m| !m.status.is_finished()) {
            m.status = AnalysisStatus::Cancelled;
            m.waiting = None;
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
    use drishtiksha_ml::MlErrorKind;
    use temporalio_common::Priority;
    use temporalio_common::RetryPolicy;
    use temporalio_sdk::{ActivityOptions, LocalActivityOptions, WorkflowCancellationToken};

    use super::RunInfo;

    /// Priority of a run's first analysis; re-runs wait behind first analyses.
    pub const FIRST_ANALYSIS_PRIORITY: u32 = 2;
    pub const RERUN_PRIORITY: u32 = 4;

    /// Database and bookkeeping steps: retried until the database answers, at most every 10 s.
    fn step_retry() -> RetryPolicy {
        RetryPolicy::builder()
            .initial_interval(Duration::from_millis(500))
            .backoff_coefficient(2.0)
            .maximum_interval(Duration::from_secs(10))
            .maximum_attempts(0)
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

    /// Regular activities that record outcomes: retried until the database answers.
    pub fn record(summary: &str) -> ActivityOptions {
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

    /// A model call, on the inference task queue with the run's priority and the user as its
    /// fairness key. Time waiting in the queue's backlog is not limited (only start-to-close and
    /// heartbeats are); activity failures (a lost worker, storage trouble) are retried without
    /// limit and without counting as ML attempts.
    pub fn infer(info: &RunInfo, model: &str) -> ActivityOptions {
        let settings = &info.settings;
        let priority_key = if info.run_number <= 1 { FIRST_ANALYSIS_PRIORITY } else { RERUN_PRIORITY };
        let priority =
            Priority::builder().priority_key(priority_key).fairness_key(info.input.user_id.to_string()).build();
        let retry = RetryPolicy::builder()
            .initial_interval(Duration::from_secs(1))
            .backoff_coefficient(2.0)
            .maximum_interval(Duration::from_secs(30))
            .maximum_attempts(0)
            .build();
        ActivityOptions::with_start_to_close_timeout(Duration::from_secs(settings.analyze_timeout_secs + 60))
            .maybe_task_queue(
                (!settings.inference_task_queue.is_empty()).then(|| settings.inference_task_queue.clone()),
            )
            .heartbeat_timeout(Duration::from_secs(settings.heartbeat_timeout_secs.max(2)))
            .retry_policy(retry)
            .priority(priority)
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
