//! `drishtiksha`: the analysts' command line. It talks only to the backend's public REST +
//! Socket.IO API (`docs/contract.md`), so every analysis it starts is durable and shared with the web
//! app: closing the terminal loses nothing, and `watch` re-attaches.
//!
//! Exit status: 0 every file analysed by every model; 1 any run FAILED, CANCELLED or partially
//! analysed (a model failed); 2 usage, authentication or connection errors; 130 interrupted.

mod client;
mod commands;
mod config;
mod files;
mod model;
mod output;
mod socket;
mod track;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  drishtiksha signup                       # a new account (or `login` to an existing one)
  drishtiksha login                        # e-mail and password, prompted
  drishtiksha analyze clip.mp4 voice.wav   # upload, live progress, results table
  drishtiksha analyze ./inbox --recursive --json > results.json
  drishtiksha analyze ./inbox --detach     # upload and return; the server does the rest
  drishtiksha watch                        # re-attach to everything still running
  drishtiksha show 8c0e…                   # runs, analyses and the models used
  drishtiksha report <RUN_ID> -o report.pdf

Exit status: 0 all analysed; 1 any run FAILED, CANCELLED or with a failed model; 2 usage,
login or connection errors; 130 interrupted (the analyses go on on the server).

Environment: DRISHTIKSHA_SERVER (default http://127.0.0.1:3000), DRISHTIKSHA_TOKEN (instead of
`login`), NO_COLOR.";

#[derive(Debug, Parser)]
#[command(name = "drishtiksha", version, about = "Deepfake analysis from the command line, on a Drishtiksha server.", after_help = EXAMPLES)]
pub struct Cli {
    /// Server base URL (default: the one you logged in to, else http://127.0.0.1:3000).
    #[arg(long, global = true, env = "DRISHTIKSHA_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Print machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress on stderr (errors are still printed).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Poll the server instead of live Socket.IO updates (for proxies without WebSocket).
    #[arg(long, global = true, env = "DRISHTIKSHA_NO_SOCKET", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_socket: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in with e-mail and password; the token is kept in your config directory (mode 0600).
    #[command(
        after_help = "Examples:\n  drishtiksha login\n  drishtiksha login --email ada@example.com\n  pass show drishtiksha | drishtiksha login -e ada@example.com --password-stdin"
    )]
    Login {
        /// Account e-mail (prompted when missing).
        #[arg(long, short)]
        email: Option<String>,
        /// Read the password from the first line of stdin (for scripts); never pass it as an argument.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Create an account and log in with it (the password is prompted twice, never echoed).
    #[command(
        after_help = "Examples:\n  drishtiksha signup\n  drishtiksha signup --email ada@example.com --first-name Ada --last-name Lovelace"
    )]
    Signup {
        #[arg(long, short)]
        email: Option<String>,
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
        /// Read the password from the first line of stdin (for scripts).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Revoke the token on the server and forget it here.
    Logout,
    /// Who the saved token (or DRISHTIKSHA_TOKEN) belongs to.
    Whoami,
    /// Upload files (or every media file of directories) and follow their analysis to the end.
    #[command(
        after_help = "Examples:\n  drishtiksha analyze clip.mp4\n  drishtiksha analyze ./inbox --recursive\n  drishtiksha analyze clip.mp4 --json | jq '.results[0].verdict'\n  drishtiksha analyze ./batch --detach   # then later: drishtiksha watch"
    )]
    Analyze {
        /// Files and directories (directories: their supported files; see --recursive).
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
        /// Also take files from subdirectories.
        #[arg(long, short)]
        recursive: bool,
        /// Return right after the uploads; `drishtiksha watch` follows them later.
        #[arg(long)]
        detach: bool,
        /// Description stored with each upload (at most 500 characters).
        #[arg(long, short)]
        description: Option<String>,
    },
    /// Follow running analyses until they end (default: all of yours that are unfinished).
    Watch {
        /// Media ids to follow.
        #[arg(value_name = "MEDIA_ID")]
        ids: Vec<String>,
    },
    /// Your media, newest first, with the latest run's status and verdict.
    List,
    /// One media: every run, every model's result, and the model the ML server used.
    Show {
        #[arg(value_name = "MEDIA_ID")]
        id: String,
    },
    /// Start a new analysis run of an uploaded media and follow it.
    Rerun {
        #[arg(value_name = "MEDIA_ID")]
        id: String,
        /// Return right after the run is queued.
        #[arg(long)]
        detach: bool,
    },
    /// Cancel the running analysis of a media (completed model results are kept).
    Cancel {
        #[arg(value_name = "MEDIA_ID")]
        id: String,
    },
    /// Delete a media, its runs and its file (asks first unless --yes).
    Delete {
        #[arg(value_name = "MEDIA_ID")]
        id: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Download the PDF report of a run (a media id means its latest run).
    Report {
        #[arg(value_name = "RUN_ID")]
        id: String,
        /// Where to write it (default: the server's file name, in the current directory).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// The ML server's status and its models, with the media types each one analyses.
    Models,
    /// Health of the backend, the processing queue, and (for ADMINs) status consistency.
    Status,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let ui = output::Ui::detect(cli.quiet);
    match commands::run(cli, ui).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let label = if ui.color_err { console::style("error:").red().bold().to_string() } else { "error:".into() };
            eprintln!("{label} {e}");
            ExitCode::from(2)
        }
    }
}
