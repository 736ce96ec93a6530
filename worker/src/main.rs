//! `worker`: the Temporal worker process. Configuration from the environment (and `.env`); exit
//! status 2 on a configuration error, 1 when the worker fails; SIGTERM / Ctrl-C stop it gracefully.

use drishtiksha_common::config::{WorkerConfig, load_dotenv};
use drishtiksha_common::telemetry;
use drishtiksha_worker::spawn_worker;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    load_dotenv();
    let config = match WorkerConfig::from_env() {
        Ok(c) => c,
        Err(e) => telemetry::exit_on_config_error(&e),
    };
    telemetry::init(config.common.log_format);
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "worker failed");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: WorkerConfig) -> anyhow::Result<()> {
    let mut guard = tokio::task::spawn_blocking(move || spawn_worker(config)).await??;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stopped_by_itself = tokio::select! {
        _ = tokio::signal::ctrl_c() => { tracing::info!("interrupt received; shutting down"); false }
        _ = terminate.recv() => { tracing::info!("SIGTERM received; shutting down"); false }
        () = guard.finished() => true,
    };
    tokio::task::spawn_blocking(move || guard.shutdown()).await??;
    if stopped_by_itself {
        anyhow::bail!("worker stopped unexpectedly");
    }
    Ok(())
}
