//! A session of the official `socket.io-client` (Node), driven through `tests/js/client.mjs`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

pub const WAIT: Duration = Duration::from_secs(60);

pub struct SocketClient {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl SocketClient {
    /// Starts a client; `transports` is `polling`, `websocket` or `both`.
    pub async fn start(addr: std::net::SocketAddr, token: Option<&str>, transports: &str) -> Self {
        Self::start_for(addr, token, transports, 120).await
    }

    /// Starts a client that stays connected for at most `seconds`.
    pub async fn start_for(addr: std::net::SocketAddr, token: Option<&str>, transports: &str, seconds: u32) -> Self {
        Self::start_with(addr, token, transports, seconds, &[]).await
    }

    /// A slow reader: the client keeps its event loop busy for `busy_ms` after every event, like a
    /// page that re-renders on each one.
    pub async fn start_slow(addr: std::net::SocketAddr, token: &str, transports: &str, busy_ms: u32) -> Self {
        Self::start_with(addr, Some(token), transports, 120, &["--busy-ms", &busy_ms.to_string()]).await
    }

    /// Starts a client with more options of `client.mjs` (e.g. `--emit-bytes N`, `--busy-ms N`).
    pub async fn start_with(
        addr: std::net::SocketAddr,
        token: Option<&str>,
        transports: &str,
        seconds: u32,
        extra: &[&str],
    ) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/client.mjs");
        let mut cmd = Command::new("node");
        cmd.arg(script).arg(format!("http://{addr}")).args([
            "--transports",
            transports,
            "--seconds",
            &seconds.to_string(),
        ]);
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        cmd.args(extra);
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).kill_on_drop(true).spawn().expect("node");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self { _child: child, lines }
    }

    /// A WebSocket client that has connected.
    pub async fn connected(addr: std::net::SocketAddr, token: &str) -> Self {
        let mut c = Self::start(addr, Some(token), "websocket").await;
        let first = c.next().await;
        assert_eq!(first["kind"], "connect", "{first}");
        c
    }

    /// The next line the client printed.
    pub async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("socket.io-client said nothing in time")
            .expect("read")
            .expect("socket.io-client exited");
        serde_json::from_str(&line).expect("json line")
    }

    /// The next event (skipping connection notices).
    pub async fn event(&mut self) -> (String, Value) {
        loop {
            let v = self.next().await;
            if v["kind"] == "event" {
                return (v["event"].as_str().expect("name").to_string(), v["payload"].clone());
            }
        }
    }

    /// Events until (and including) the first one named `name`.
    pub async fn until_event(&mut self, name: &str) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        loop {
            let (n, p) = self.event().await;
            let done = n == name;
            seen.push((n, p));
            if done {
                return seen;
            }
        }
    }
}
