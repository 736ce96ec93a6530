//! The `ml-standin` binary: configuration errors and graceful shutdown.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ml-standin");

#[test]
fn a_missing_api_key_is_one_clear_line_and_exit_code_2() {
    let output = Command::new(BIN).env_remove("API_KEY").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("API_KEY") && stderr.contains("--api-key"), "{stderr}");
}

#[test]
fn an_invalid_value_names_its_flag_and_exits_with_2() {
    let output = Command::new(BIN).args(["--api-key", "k", "--fail-rate", "7"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("STANDIN_FAIL_RATE"));
}

#[test]
fn help_lists_the_capacity_and_output_size_flags_with_their_variables() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "--capacity",
        "STANDIN_CAPACITY",
        "--over-capacity",
        "STANDIN_OVER_CAPACITY",
        "--full-heatmaps",
        "STANDIN_FULL_HEATMAPS",
        "--per-frame-predictions",
        "STANDIN_PER_FRAME_PREDICTIONS",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
    let output = Command::new(BIN).args(["--api-key", "k"]).env("STANDIN_OVER_CAPACITY", "spill").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("STANDIN_OVER_CAPACITY"));
}

#[test]
fn the_binary_serves_and_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--api-key", "k"])
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env_remove("LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        assert!(Instant::now() < deadline, "no listening line");
        let line = lines.next().expect("log line").unwrap();
        assert!(!line.is_empty() || Instant::now() < deadline);
        if let Some(rest) = line.split("127.0.0.1:").nth(1) {
            let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
            break format!("127.0.0.1:{port}");
        }
    };
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::{Read, Write};
    stream.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"status":"pong"}"#), "{response}");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}
