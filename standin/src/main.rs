//! `ml-standin`: the ML server stand-in binary (simulated results; see `standin/README.md`).

use std::io::IsTerminal;
use std::process::ExitCode;

use drishtiksha_standin::{Command, Config};
use tracing_subscriber::EnvFilter;

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stdout().is_terminal());
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::parse(std::env::args().skip(1), |var| std::env::var(var).ok()) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::Help) => {
            print!("{}", drishtiksha_standin::config::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ml-standin: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing();
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ml-standin: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    match drishtiksha_standin::serve(config, listener).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ml-standin: {e:#}");
            ExitCode::FAILURE
        }
    }
}
