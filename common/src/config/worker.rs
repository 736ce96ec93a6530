//! The worker process's settings.

use std::time::Duration;

use super::{CommonConfig, ConfigError, ProcessEnv, Source, Vars, err};

/// What a worker process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerRole {
    /// Workflows and their short steps, on `TEMPORAL_TASK_QUEUE`.
    Orchestration,
    /// Model calls to this process's ML server, on `TEMPORAL_INFERENCE_TASK_QUEUE`, at most
    /// `ML_CAPACITY` at once.
    Inference,
    /// Both (one process for a one-machine deployment).
    All,
}

impl WorkerRole {
    pub fn orchestrates(self) -> bool {
        matches!(self, Self::Orchestration | Self::All)
    }

    pub fn infers(self) -> bool {
        matches!(self, Self::Inference | Self::All)
    }
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub common: CommonConfig,
    pub role: WorkerRole,
    /// Concurrent short steps (database writes, finalization) of an orchestration worker.
    pub max_concurrent_activities: usize,
    /// Concurrent inferences the ML server of this inference worker can run (`ML_CAPACITY`): the
    /// inference worker's activity slots. Run one inference worker per ML server.
    pub ml_capacity: usize,
    /// How long in-flight model calls may finish after SIGTERM (`WORKER_SHUTDOWN_GRACE`).
    pub shutdown_grace: Duration,
    pub reconcile_interval: Duration,
    /// Runs updated more recently than this are left alone by the reconciler.
    pub reconcile_stale_after: Duration,
}

impl WorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let v = Vars(src);
        let role = match v.opt("WORKER_ROLE").as_deref() {
            None | Some("all") => WorkerRole::All,
            Some("orchestration") => WorkerRole::Orchestration,
            Some("inference") => WorkerRole::Inference,
            Some(other) => {
                return Err(err("WORKER_ROLE", format!("must be all, orchestration or inference, got {other:?}")));
            }
        };
        let max_concurrent_activities = v.parse("WORKER_MAX_CONCURRENT_ACTIVITIES", 100usize, "a positive integer")?;
        let ml_capacity = v.parse("ML_CAPACITY", 1usize, "a positive number of concurrent inferences")?;
        if ml_capacity == 0 || max_concurrent_activities == 0 {
            return Err(err("ML_CAPACITY", "and WORKER_MAX_CONCURRENT_ACTIVITIES must be positive"));
        }
        Ok(Self {
            common: CommonConfig::from_source(src)?,
            role,
            max_concurrent_activities,
            ml_capacity,
            shutdown_grace: v.duration("WORKER_SHUTDOWN_GRACE", Duration::from_secs(60))?,
            reconcile_interval: v.duration("RECONCILE_INTERVAL", Duration::from_secs(60))?,
            reconcile_stale_after: v.duration("RECONCILE_STALE_AFTER", Duration::from_secs(60))?,
        })
    }
}
