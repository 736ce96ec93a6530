use std::process::ExitCode;

use drishtiksha_common::config::{self, ApiConfig};
use drishtiksha_common::telemetry;

#[tokio::main]
async fn main() -> ExitCode {
    // `api openapi` prints the OpenAPI document (for client generators; needs no configuration).
    if std::env::args().nth(1).as_deref() == Some("openapi") {
        use std::io::Write;
        let written = writeln!(std::io::stdout(), "{}", drishtiksha_api::openapi::document());
        return if written.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    config::load_dotenv();
    let config = match ApiConfig::from_env() {
        Ok(c) => c,
        Err(e) => telemetry::exit_on_config_error(&e),
    };
    telemetry::init(config.common.log_format);
    match drishtiksha_api::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "api stopped");
            ExitCode::FAILURE
        }
    }
}
