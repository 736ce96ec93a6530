//! The analysis activities (`api.md` §6.2) and the clients they use: ffprobe, the ML server,
//! storage, the database and progress events.
//!
//! Every activity is keyed by run id (+ model) and idempotent: a retry, a worker crash or a workflow
//! reset re-executes it without duplicating rows, and it never moves a terminal run. An activity
//! that finds its media or run deleted ends successfully without writing or publishing.

pub mod ml;
pub mod probe;
pub mod progress;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use drishtiksha_common::MediaType;
use drishtiksha_common::config::WorkerConfig;
use drishtiksha_common::db::runs::{self, AttemptStart, Finalization, RunContext};
use drishtiksha_common::events::{self, EventPublisher};
use drishtiksha_common::metrics;
use drishtiksha_common::model::{RunStatus, extension_of, ml_part_extension};
use drishtiksha_common::redis_conn::RedisHandle;
use drishtiksha_common::storage::{Storage, StorageError};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use uuid::Uuid;

use crate::ml::{AnalyzeRequest, MlClient, MlError, MlErrorKind};

/// How often a waiting activity heartbeats (the heartbeat timeout is 30 s).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
pub const MISSING_FILE_MESSAGE: &str = "Media file is missing from storage";

/// The ML settings of the worker that prepared the run, recorded in the workflow history so the
/// workflow can build its activity options deterministically.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSettings {
    pub retry_initial_interval_ms: u64,
    pub retry_max_attempts: u32,
    pub analyze_timeout_secs: u64,
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

/// What `analyze_with_model` ended with (failures are activity failures).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum ModelOutcome {
    Completed { attempt: u32, prediction: String, confidence: f64 },
    Gone,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModelFailure {
    pub run_id: Uuid,
    pub model: String,
    pub message: String,
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
pub struct AnalysisActivities {
    pub db: PgPool,
    pub redis: RedisHandle,
    pub events: EventPublisher,
    pub storage: Storage,
    pub ml: MlClient,
    pub settings: PipelineSettings,
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
            },
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
        Ok(Prepared::Ready { media_type: run.media_type, has_audio, settings: self.settings.clone() })
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

    /// Step 4: one model's analysis (one attempt per execution).
    #[activity]
    pub async fn analyze_with_model(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ModelRef,
    ) -> Result<ModelOutcome, ActivityError> {
        let attempt = ctx.info().attempt;
        let attempt_i32 = i32::try_from(attempt).unwrap_or(i32::MAX);
        let Some(run) = runs::context(&self.db, input.run_id).await? else {
            return Ok(ModelOutcome::Gone);
        };
        let model = input.model.as_str();
        let span = tracing::info_span!("analyze_with_model", workflow_id = workflow_id(&ctx), run_id = %run.run_id,
            media.id = %run.media_id, model, attempt);
        match runs::begin_attempt(&self.db, run.run_id, model, attempt_i32).await? {
            AttemptStart::Closed => return Ok(ModelOutcome::Gone),
            AttemptStart::AlreadyCompleted { prediction, confidence, .. } => {
                return Ok(ModelOutcome::Completed { attempt, prediction, confidence });
            }
            AttemptStart::Running { .. } => {}
        }
        tracing::info!(parent: &span, "analysis attempt started");
        self.events.publish(&progress::analysis_started(&run, model, attempt_i32)).await;

        let Some(outcome) = with_heartbeats(&ctx, self.call_ml(&run, model, attempt)).await else {
            tracing::info!(parent: &span, "analysis attempt cancelled");
            return Err(ActivityError::cancelled());
        };
        match outcome {
            Ok(result) => {
                let Some(analysis_id) = runs::complete_model(&self.db, run.run_id, model, attempt_i32, &result).await?
                else {
                    return Ok(ModelOutcome::Gone);
                };
                tracing::info!(parent: &span, prediction = %result.prediction, "analysis completed");
                let event = progress::analysis_completed(
                    &run,
                    model,
                    progress::Completed {
                        analysis_id,
                        prediction: &result.prediction,
                        confidence: result.confidence,
                        processing_time: result.processing_time,
                    },
                );
                self.events.publish(&event).await;
                Ok(ModelOutcome::Completed { attempt, prediction: result.prediction, confidence: result.confidence })
            }
            Err(e) => {
                let attempts_left = attempt < max_attempts(&ctx, self.settings.retry_max_attempts);
                tracing::warn!(parent: &span, failure = e.kind.type_name(), error = %e.message, "analysis attempt failed");
                if e.kind.is_retryable() && attempts_left && runs::await_retry(&self.db, run.run_id, model).await? {
                    self.events.publish(&progress::analysis_retrying(&run, model, attempt_i32, &e.message)).await;
                }
                Err(ml_failure(&e))
            }
        }
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
        let Some(failed) = runs::fail_model(&self.db, run.run_id, &input.model, &input.message).await? else {
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
        match runs::finalize(&self.db, input.run_id, how).await? {
            Some(f) => {
                metrics::RUNS_FINISHED.with_label_values(&[f.status.as_str()]).inc();
                tracing::info!(workflow_id = workflow_id(&ctx), run_id = %f.run_id, media.id = %f.media_id,
                    status = %f.status, completed = f.completed, failed = f.failed, "run finalized");
                self.events.publish(&events::run_finalized(&f)).await;
                Ok(Some(RunSummary {
                    status: f.status,
                    total_models: f.total_models,
                    completed_count: f.completed,
                    failed_count: f.failed,
                }))
            }
            None => Ok(runs::summary(&self.db, input.run_id).await?.map(|s| RunSummary {
                status: s.status,
                total_models: s.total_models,
                completed_count: s.completed,
                failed_count: s.failed,
            })),
        }
    }
}

impl AnalysisActivities {
    /// One `/analyze` call, counted and timed in the process metrics.
    async fn call_ml(&self, run: &RunContext, model: &str, attempt: u32) -> Result<runs::ModelResult, MlError> {
        let started = std::time::Instant::now();
        let result = self.call_ml_inner(run, model, attempt).await;
        let outcome = match &result {
            Ok(_) => "completed",
            Err(e) => e.kind.type_name(),
        };
        metrics::ML_CALL_DURATION.with_label_values(&["analyze", model]).observe(started.elapsed().as_secs_f64());
        metrics::MODEL_ANALYSES.with_label_values(&[model, outcome]).inc();
        result
    }

    async fn call_ml_inner(&self, run: &RunContext, model: &str, attempt: u32) -> Result<runs::ModelResult, MlError> {
        let missing = || MlError {
            kind: MlErrorKind::RequestRejected,
            message: MISSING_FILE_MESSAGE.to_string(),
            retry_after: None,
            status: None,
        };
        let (length, body) = self.storage.open(&run.storage_key).await.map_err(|_| missing())?;
        let ext = ml_part_extension(run.media_type, &extension_of(&run.storage_key));
        self.ml
            .analyze(AnalyzeRequest {
                body,
                length,
                part_filename: format!("{}{ext}", run.media_id),
                model: model.to_string(),
                media_id: run.media_id,
                user_id: run.user_id,
                correlation_id: format!("{}:{model}:{attempt}", run.run_id),
            })
            .await
    }
}
