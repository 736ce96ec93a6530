//! The analysis activities (`docs/contract.md` §6.2) and the clients they use: ffprobe, the ML server,
//! storage, the database and progress events.
//!
//! Every activity is keyed by run id (+ model) and idempotent: a retry, a worker crash or a workflow
//! reset re-executes it without duplicating rows, and it never moves a terminal run. An activity
//! that finds its media or run deleted ends successfully without writing or publishing.

pub mod artifacts;
pub mod probe;
pub mod progress;

use drishtiksha_common::messages;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use drishtiksha_common::MediaType;
use drishtiksha_common::config::WorkerConfig;
use drishtiksha_common::db::runs::{self, AttemptStart, Finalization};
use drishtiksha_common::events::{self, EventPublisher};
use drishtiksha_common::metrics;
use drishtiksha_common::model::{RunStatus, extension_of, ml_part_extension};
use drishtiksha_common::redis_conn::RedisHandle;
use drishtiksha_common::storage::{ByteStream, Storage, StorageError, result_key};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use uuid::Uuid;

use drishtiksha_ml::{self as ml, AnalyzeRequest, MlClient, MlError, MlErrorKind};

/// How often a waiting activity heartbeats (the heartbeat timeout is `ML_HEARTBEAT_TIMEOUT`, at
/// least 2 s; the SDK throttles what it sends).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// Largest stored ML answer read back (the ML client accepts responses up to the same size).
const MAX_STORED_ANSWER: u64 = ml::MAX_RESPONSE_BYTES as u64;
/// How long a model call waits for the database to mark its row RUNNING before it goes ahead
/// without (the row is cosmetic until the answer is recorded).
const BEST_EFFORT_DB: Duration = Duration::from_secs(2);

/// The ML settings of the worker that prepared the run, recorded in the workflow history so the
/// workflow can build its activity options deterministically.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSettings {
    pub retry_initial_interval_ms: u64,
    pub retry_max_attempts: u32,
    pub analyze_timeout_secs: u64,
    /// How long an ML server that is down or not ready is waited for.
    #[serde(default = "default_unavailable_wait_secs")]
    pub unavailable_wait_secs: u64,
    #[serde(default = "default_heartbeat_timeout_secs")]
    pub heartbeat_timeout_secs: u64,
    /// The task queue of the model calls (empty: the workflow's own).
    #[serde(default)]
    pub inference_task_queue: String,
}

fn default_unavailable_wait_secs() -> u64 {
    30 * 60
}

fn default_heartbeat_timeout_secs() -> u64 {
    30
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunRef {
    pub run_id: Uuid,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModelRef {
    pub run_id: Uuid,
    pub model: String,
}

/// What `prepare_media` found.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Prepared {
    Ready {
        media_type: MediaType,
        has_audio: Option<bool>,
        settings: PipelineSettings,
        #[serde(default)]
        run_number: i32,
        #[serde(default)]
        storage_key: String,
    },
    FileMissing,
    /// The media or run was deleted, or the run is already terminal.
    Gone,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DiscoverRequest {
    pub run_id: Uuid,
    pub media_type: MediaType,
    pub has_audio: Option<bool>,
}

/// What `discover_models` found.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Discovery {
    Models {
        models: Vec<String>,
    },
    /// The ML server kept failing (or refused): the run fails with this message.
    Failed {
        message: String,
    },
    /// The ML server is down or not ready (connection refused, 503): it is waited for.
    Unavailable {
        message: String,
    },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StartRequest {
    pub run_id: Uuid,
    pub models: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Started {
    Started,
    Gone,
}

/// One model call (`infer`, on the inference task queue). Carries what the call needs so that it
/// does not depend on the database.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InferRequest {
    pub run_id: Uuid,
    pub media_id: Uuid,
    pub user_id: Uuid,
    pub media_type: MediaType,
    pub storage_key: String,
    pub model: String,
    /// The ML attempt this call is (1-based): answers of the ML server counted so far + 1.
    pub attempt: u32,
    pub max_attempts: u32,
}

/// A kept ML answer: where the response is stored, and what the workflow shows of it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub result_key: String,
    pub prediction: String,
    pub confidence: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_used: Option<String>,
    /// Found stored by an earlier attempt: the ML server was not called again.
    #[serde(default)]
    pub reused: bool,
}

/// How the ML server answered a model call. Its refusals are results, not activity failures: the
/// workflow counts them against `ML_RETRY_MAX_ATTEMPTS`, while a lost worker or a database outage
/// is an activity failure that Temporal retries without counting.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum InferOutcome {
    Answered(Answer),
    Refused(Refusal),
    /// The run was deleted or ended meanwhile.
    Gone,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// `ML_*` failure type.
    pub failure_type: String,
    /// The message stored if this is the last attempt (`docs/contract.md` §6.6 wording).
    pub message: String,
    pub retryable: bool,
    /// The server is down or not ready: waited for, not counted.
    pub waitable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Records a kept answer on the model's row.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RecordRequest {
    pub run_id: Uuid,
    pub model: String,
    pub attempt: u32,
    pub result_key: String,
}

/// What `record_result` ended with.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Recorded {
    Completed,
    /// The run was deleted or ended meanwhile.
    Gone,
    /// The stored answer is gone: the model must be asked again.
    AnswerMissing,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModelFailure {
    pub run_id: Uuid,
    pub model: String,
    pub message: String,
    /// Calls that reached the ML server (None: as the row says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "how")]
pub enum FinalizeHow {
    Finish { error: Option<String> },
    Cancel,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FinalizeRequest {
    pub run_id: Uuid,
    pub how: FinalizeHow,
}

/// The run as it ended (or as it already was when it had ended before).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub status: RunStatus,
    pub total_models: i32,
    pub completed_count: i64,
    pub failed_count: i64,
}

/// The activities with the clients they share.
#[derive(Clone)]
pub struct AnalysisActivities {
    pub db: PgPool,
    pub redis: RedisHandle,
    pub events: EventPublisher,
    pub storage: Storage,
    pub ml: MlClient,
    pub settings: PipelineSettings,
    /// `host:port` of the ML server, the `server` label of the inference metrics.
    pub server_label: String,
    /// Base of the URLs of copied artifacts (`<base>/media/<key>`).
    pub public_base_url: url::Url,
}

/// `host:port` of an ML server URL.
pub fn ml_server_label(url: &url::Url) -> String {
    format!("{}:{}", url.host_str().unwrap_or("unknown"), url.port_or_known_default().unwrap_or(0))
}

impl AnalysisActivities {
    pub async fn from_config(config: &WorkerConfig, db: PgPool) -> anyhow::Result<Self> {
        let common = &config.common;
        let redis = RedisHandle::new(common.redis_url.expose())?;
        Ok(Self {
            db,
            events: EventPublisher::new(redis.clone(), common.progress_channel.clone()),
            redis,
            storage: Storage::from_config(&common.storage).await?,
            ml: MlClient::new(&common.ml)?,
            settings: PipelineSettings {
                retry_initial_interval_ms: u64::try_from(common.ml.retry_initial_interval.as_millis())
                    .unwrap_or(u64::MAX),
                retry_max_attempts: common.ml.retry_max_attempts,
                analyze_timeout_secs: common.ml.analyze_timeout.as_secs().max(1),
                unavailable_wait_secs: common.ml.unavailable_wait.as_secs(),
                heartbeat_timeout_secs: common.ml.heartbeat_timeout.as_secs().max(2),
                inference_task_queue: common.temporal.inference_task_queue.clone(),
            },
            server_label: ml_server_label(&common.ml.server_url),
            public_base_url: common.public_base_url.clone(),
        })
    }
}

fn retryable(e: impl std::fmt::Display) -> ActivityError {
    ActivityError::application(ApplicationFailure::new(anyhow::anyhow!("{e}")))
}

fn ml_failure(e: &MlError) -> ActivityError {
    let failure = ApplicationFailure::builder(anyhow::anyhow!("{}", e.message))
        .type_name(e.kind.type_name().to_string())
        .non_retryable(!e.kind.is_retryable())
        .maybe_next_retry_delay(e.retry_after)
        .build();
    ActivityError::application(failure)
}

/// Runs `work` while heartbeating; `None` when the activity is cancelled (the work is dropped,
/// which aborts an HTTP call or kills a child process).
async fn with_heartbeats<F: Future>(ctx: &ActivityContext, work: F) -> Option<F::Output> {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            out = &mut work => return Some(out),
            () = ctx.cancelled() => return None,
            _ = tick.tick() => {
                if let Err(e) = ctx.record_heartbeat(()).await {
                    tracing::warn!(error = %e, "heartbeat not recorded");
                }
            }
        }
    }
}

fn workflow_id(ctx: &ActivityContext) -> &str {
    ctx.info().workflow_id.as_deref().unwrap_or_default()
}

/// Attempts allowed by the activity's retry policy (0 = unlimited).
fn max_attempts(ctx: &ActivityContext, fallback: u32) -> u32 {
    ctx.info().retry_policy.as_ref().map(|p| p.maximum_attempts()).filter(|n| *n > 0).unwrap_or(fallback)
}

#[activities]
impl AnalysisActivities {
    /// Step 1: probe the stored file, store `metadata` and `hasAudio`.
    #[activity]
    pub async fn prepare_media(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: RunRef,
    ) -> Result<Prepared, ActivityError> {
        let Some(run) = runs::context(&self.db, input.run_id).await? else {
            return Ok(Prepared::Gone);
        };
        if run.run_status.is_terminal() {
            return Ok(Prepared::Gone);
        }
        tracing::info!(workflow_id = workflow_id(&ctx), run_id = %run.run_id, media.id = %run.media_id,
            attempt = ctx.info().attempt, "preparing media");
        match self.storage.exists(&run.storage_key).await {
            Ok(true) => {}
            Ok(false) | Err(StorageError::NotFound | StorageError::InvalidKey) => return Ok(Prepared::FileMissing),
            Err(e) => return Err(retryable(e)),
        }
        let (metadata, has_audio) = if run.media_type == MediaType::Image {
            (None, None)
        } else {
            let location = self.storage.probe_location(&run.storage_key).await.map_err(retryable)?;
            let Some(probed) = with_heartbeats(&ctx, probe::ffprobe(&location)).await else {
                return Err(ActivityError::cancelled());
            };
            match probed {
                Ok(output) => {
                    let (summary, audio) = probe::summarize(&output);
                    let has_audio = (run.media_type == MediaType::Video).then_some(audio);
                    (Some(summary), has_audio)
                }
                Err(e) => {
                    tracing::warn!(workflow_id = workflow_id(&ctx), media.id = %run.media_id, error = %e, "probe failed");
                    (None, None)
                }
            }
        };
        runs::store_probe(&self.db, run.media_id, metadata.as_ref(), has_audio).await?;
        Ok(Prepared::Ready {
            media_type: run.media_type,
            has_audio,
            settings: self.settings.clone(),
            run_number: run.run_number,
            storage_key: run.storage_key,
        })
    }

    /// Step 2: `/stats` through the shared cache, then the selection rule.
    #[activity]
    pub async fn discover_models(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: DiscoverRequest,
    ) -> Result<Discovery, ActivityError> {
        let attempt = ctx.info().attempt;
        tracing::info!(workflow_id = workflow_id(&ctx), run_id = %input.run_id, attempt, "discovering models");
        let Some(stats) = with_heartbeats(&ctx, ml::cached_stats(&self.ml, &self.redis, &self.db)).await else {
            return Err(ActivityError::cancelled());
        };
        match stats {
            Ok(stats) => Ok(Discovery::Models { models: ml::select_models(&stats, input.media_type, input.has_audio) }),
            Err(e) if e.waitable => Ok(Discovery::Unavailable { message: e.message }),
            Err(e) if e.kind.is_retryable() && attempt < max_attempts(&ctx, self.settings.retry_max_attempts) => {
                Err(ml_failure(&e))
            }
            Err(e) => Ok(Discovery::Failed { message: e.message }),
        }
    }

    /// Step 3: run → PROCESSING, one PENDING row per model, `ANALYSIS_QUEUED` events.
    #[activity]
    pub async fn start_run(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: StartRequest,
    ) -> Result<Started, ActivityError> {
        let Some(run) = runs::start(&self.db, input.run_id, &input.models).await? else {
            return Ok(Started::Gone);
        };
        tracing::info!(workflow_id = workflow_id(&ctx), run_id = %run.run_id, media.id = %run.media_id,
            models = input.models.len(), "run started");
        self.events.publish(&progress::processing_started(&run)).await;
        for model in &input.models {
            self.events.publish(&progress::analysis_queued(&run, model)).await;
        }
        Ok(Started::Started)
    }

    /// Step 4a, on the inference task queue: one call of one model. The answer is kept in storage
    /// (`results/<runId>/<model>.json`) before anything else can fail, so a later failure never
    /// costs the inference again: a retry finds the kept answer and returns it without calling.
    /// The database is only used best-effort here (marking the row RUNNING).
    #[activity]
    pub async fn infer(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: InferRequest,
    ) -> Result<InferOutcome, ActivityError> {
        let model = input.model.as_str();
        let attempt_i32 = i32::try_from(input.attempt).unwrap_or(i32::MAX);
        let span = tracing::info_span!("infer", workflow_id = workflow_id(&ctx), run_id = %input.run_id,
            media.id = %input.media_id, model, attempt = input.attempt, task_attempt = ctx.info().attempt);
        let key = result_key(input.run_id, model);
        if let Some(answer) = self.kept_answer(&key, model).await? {
            tracing::info!(parent: &span, "answer already kept; the ML server is not called again");
            metrics::ML_ANSWERS_REUSED.inc();
            return Ok(InferOutcome::Answered(answer));
        }
        // Best effort: the row shows RUNNING and ANALYSIS_STARTED goes out when the database
        // answers in time; a database outage must not keep the GPU idle.
        let marked = tokio::time::timeout(BEST_EFFORT_DB, async {
            let Some(run) = runs::context(&self.db, input.run_id).await? else { return Ok(None) };
            match runs::begin_attempt(&self.db, input.run_id, model, attempt_i32).await? {
                AttemptStart::Closed => Ok::<_, sqlx::Error>(None),
                _ => Ok(Some(run)),
            }
        })
        .await;
        let run = match marked {
            Ok(Ok(None)) => return Ok(InferOutcome::Gone),
            Ok(Ok(Some(run))) => {
                self.events.publish(&progress::analysis_started(&run, model, attempt_i32)).await;
                Some(run)
            }
            Ok(Err(e)) => {
                tracing::warn!(parent: &span, error = %e, "row not marked running; calling the model anyway");
                None
            }
            Err(_) => {
                tracing::warn!(parent: &span, "database slow; calling the model without marking the row");
                None
            }
        };
        if let (Some(scheduled), Some(started)) = (ctx.info().current_attempt_scheduled_time, ctx.info().started_time) {
            let waited = started.duration_since(scheduled).unwrap_or_default();
            metrics::INFERENCE_QUEUE_WAIT.with_label_values(&[&self.server_label]).observe(waited.as_secs_f64());
        }
        // A file that is gone is final for the model; storage that cannot answer now (an object
        // store outage, an I/O error) is an activity failure, retried without counting.
        let file = match self.storage.open(&input.storage_key).await {
            Ok(file) => file,
            Err(StorageError::NotFound | StorageError::InvalidKey) => {
                tracing::warn!(parent: &span, "media file is missing from storage");
                return Ok(InferOutcome::Refused(Refusal {
                    failure_type: MlErrorKind::RequestRejected.type_name().to_string(),
                    message: messages::MISSING_FILE.to_string(),
                    retryable: false,
                    waitable: false,
                    retry_after_ms: None,
                }));
            }
            Err(e) => {
                tracing::warn!(parent: &span, error = %e, "media file not readable now; retried");
                return Err(retryable(e));
            }
        };
        tracing::info!(parent: &span, "model call started");
        let in_flight = InFlight::new(&self.server_label);
        let Some(outcome) = with_heartbeats(&ctx, self.call_ml(&input, file)).await else {
            tracing::info!(parent: &span, "model call cancelled");
            return Err(ActivityError::cancelled());
        };
        drop(in_flight);
        match outcome {
            Ok((body, result)) => {
                // Kept before anything else: the answer survives a database, Redis or worker
                // failure from here on.
                self.storage.put(&key, "application/json", &body).await.map_err(retryable)?;
                tracing::info!(parent: &span, prediction = %result.prediction, model_used = result.model_used.as_deref(),
                    "model answered; answer kept");
                Ok(InferOutcome::Answered(Answer {
                    result_key: key,
                    prediction: result.prediction,
                    confidence: result.confidence,
                    model_used: result.model_used.filter(|m| m != model),
                    reused: false,
                }))
            }
            Err(e) => {
                tracing::warn!(parent: &span, failure = e.kind.type_name(), waitable = e.waitable, error = %e.message,
                    "model call failed");
                let counted_retry = e.kind.is_retryable() && !e.waitable && input.attempt < input.max_attempts;
                if counted_retry || e.waitable {
                    let requeued =
                        tokio::time::timeout(BEST_EFFORT_DB, runs::await_retry(&self.db, input.run_id, model)).await;
                    if let (true, Ok(Ok(true)), Some(run)) = (counted_retry, requeued, run.as_ref()) {
                        self.events.publish(&progress::analysis_retrying(run, model, attempt_i32, &e.message)).await;
                    }
                }
                Ok(InferOutcome::Refused(Refusal {
                    failure_type: e.kind.type_name().to_string(),
                    message: e.message,
                    retryable: e.kind.is_retryable(),
                    waitable: e.waitable,
                    retry_after_ms: e.retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                }))
            }
        }
    }

    /// Step 4b: records a kept answer on the model's row (COMPLETED, counts, run status) and
    /// publishes `ANALYSIS_COMPLETED`. Retried until the database answers; never calls the ML
    /// server.
    #[activity]
    pub async fn record_result(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: RecordRequest,
    ) -> Result<Recorded, ActivityError> {
        let body = match self.storage.read_all(&input.result_key, MAX_STORED_ANSWER).await {
            Ok(b) => b,
            Err(StorageError::NotFound) => return Ok(Recorded::AnswerMissing),
            Err(e) => return Err(retryable(e)),
        };
        let Ok(mut result) = ml::validate_result(&body) else {
            return Ok(Recorded::AnswerMissing);
        };
        result.model_used = result.model_used.filter(|m| *m != input.model);
        // The row points at our copies of the artifacts and keeps a bounded payload; the kept
        // answer stays the full one.
        artifacts::adopt(&self.storage, &self.public_base_url, input.run_id, &input.model, &mut result.payload).await;
        drishtiksha_common::payload::bound(&mut result.payload);
        let Some(run) = runs::context(&self.db, input.run_id).await? else {
            return Ok(Recorded::Gone);
        };
        let attempt = i32::try_from(input.attempt).unwrap_or(i32::MAX);
        let Some(analysis_id) = runs::complete_model(&self.db, run.run_id, &input.model, attempt, &result).await?
        else {
            return Ok(Recorded::Gone);
        };
        tracing::info!(workflow_id = workflow_id(&ctx), run_id = %run.run_id, media.id = %run.media_id,
            model = %input.model, attempt = input.attempt, prediction = %result.prediction, "analysis completed");
        let event = progress::analysis_completed(
            &run,
            &input.model,
            progress::Completed {
                analysis_id,
                prediction: &result.prediction,
                confidence: result.confidence,
                processing_time: result.processing_time,
            },
        );
        self.events.publish(&event).await;
        Ok(Recorded::Completed)
    }

    /// A model that failed for good: row FAILED, counts, per-model `ANALYSIS_FAILED`. Returns the
    /// attempts made.
    #[activity]
    pub async fn record_model_failure(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ModelFailure,
    ) -> Result<u32, ActivityError> {
        let Some(run) = runs::context(&self.db, input.run_id).await? else {
            return Ok(0);
        };
        let attempts = input.attempts.map(|a| i32::try_from(a).unwrap_or(i32::MAX));
        let Some(failed) = runs::fail_model(&self.db, run.run_id, &input.model, &input.message, attempts).await? else {
            return Ok(0);
        };
        tracing::info!(workflow_id = workflow_id(&ctx), run_id = %run.run_id, media.id = %run.media_id,
            model = %input.model, attempt = failed.attempts, error = %input.message, "model failed");
        let event = progress::analysis_failed(&run, &input.model, failed.analysis_id, &input.message, failed.attempts);
        self.events.publish(&event).await;
        Ok(u32::try_from(failed.attempts).unwrap_or(0))
    }

    /// Step 5: the run's final status in one transaction, then the run-level event.
    #[activity]
    pub async fn finalize_run(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: FinalizeRequest,
    ) -> Result<Option<RunSummary>, ActivityError> {
        let how = match input.how {
            FinalizeHow::Finish { error } => Finalization::Finish { error },
            FinalizeHow::Cancel => Finalization::Cancel,
        };
        match events::finalize_run(&self.db, &self.events, input.run_id, how).await? {
            Some(f) => {
                tracing::info!(workflow_id = workflow_id(&ctx), run_id = %f.run_id, media.id = %f.media_id,
                    status = %f.status, completed = f.completed, failed = f.failed, "run finalized");
                Ok(Some(RunSummary {
                    status: f.status,
                    total_models: f.total_models,
                    completed_count: f.completed,
                    failed_count: f.failed,
                }))
            }
            None => self.summary_of(input.run_id).await,
        }
    }

    /// The run as the database has it (what a re-executed workflow of a finished run returns).
    #[activity]
    pub async fn run_summary(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: RunRef,
    ) -> Result<Option<RunSummary>, ActivityError> {
        self.summary_of(input.run_id).await
    }
}

/// One inference in flight, counted in `drishtiksha_inference_in_flight` while it lives.
struct InFlight(String);

impl InFlight {
    fn new(server: &str) -> Self {
        metrics::INFERENCE_IN_FLIGHT.with_label_values(&[server]).inc();
        Self(server.to_string())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::INFERENCE_IN_FLIGHT.with_label_values(&[&self.0]).dec();
    }
}

impl AnalysisActivities {
    async fn summary_of(&self, run_id: Uuid) -> Result<Option<RunSummary>, ActivityError> {
        Ok(runs::summary(&self.db, run_id).await?.map(|s| RunSummary {
            status: s.status,
            total_models: s.total_models,
            completed_count: s.completed,
            failed_count: s.failed,
        }))
    }

    /// A kept answer of an earlier attempt, if any.
    async fn kept_answer(&self, key: &str, model: &str) -> Result<Option<Answer>, ActivityError> {
        let body = match self.storage.read_all(key, MAX_STORED_ANSWER).await {
            Ok(b) => b,
            Err(StorageError::NotFound) => return Ok(None),
            Err(e) => return Err(retryable(e)),
        };
        let Ok(result) = ml::validate_result(&body) else {
            return Ok(None);
        };
        Ok(Some(Answer {
            result_key: key.to_string(),
            prediction: result.prediction,
            confidence: result.confidence,
            model_used: result.model_used.filter(|m| m != model),
            reused: true,
        }))
    }

    /// One `/analyze` call, counted and timed in the process metrics: the response body as
    /// received and its validated reading.
    async fn call_ml(
        &self,
        input: &InferRequest,
        (length, body): (u64, ByteStream),
    ) -> Result<(Vec<u8>, runs::ModelResult), MlError> {
        let started = std::time::Instant::now();
        let ext = ml_part_extension(input.media_type, &extension_of(&input.storage_key));
        let result = self
            .ml
            .analyze(AnalyzeRequest {
                body,
                length,
                part_filename: format!("{}{ext}", input.media_id),
                model: input.model.clone(),
                media_id: input.media_id,
                user_id: input.user_id,
                correlation_id: format!("{}:{}:{}", input.run_id, input.model, input.attempt),
            })
            .await;
        let outcome = match &result {
            Ok(_) => "completed",
            Err(e) => e.kind.type_name(),
        };
        let model = input.model.as_str();
        metrics::ML_CALL_DURATION.with_label_values(&["analyze", model]).observe(started.elapsed().as_secs_f64());
        metrics::MODEL_ANALYSES.with_label_values(&[model, outcome]).inc();
        result
    }
}
