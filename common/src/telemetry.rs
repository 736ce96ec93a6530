//! Logging: `tracing` with `RUST_LOG`, JSON lines when `LOG_FORMAT=json`.
//!
//! Policy: dotted fields (`media.id`, `run.id`, `model`), never secrets, tokens, passwords or
//! upstream bodies.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,temporalio_sdk_core=warn,temporalio_client=warn,sqlx=warn,tower_http=warn")
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi);
    // A second initialisation (tests) is harmless.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Prints a configuration error as one line and exits with status 2.
pub fn exit_on_config_error(e: &crate::config::ConfigError) -> ! {
    eprintln!("{e}");
    std::process::exit(2)
}
