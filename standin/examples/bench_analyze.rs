//! `/analyze` throughput and peak memory of the ML stand-in.
//!
//! Starts the `ml-standin` binary (`STANDIN_BIN`, else next to this example's target directory)
//! with latency scale 0, streams a generated 100 MiB `.mp4` to `/analyze` several times, and
//! prints markdown table rows: median throughput and the child's peak RSS (VmHWM).
//!
//! Run: `cargo build --release -p drishtiksha-standin --bin ml-standin &&
//!       cargo run --release -p drishtiksha-standin --example bench_analyze`

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use reqwest::multipart::{Form, Part};

const SIZE: usize = 100 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
const RUNS: usize = 5;
const KEY: &str = "bench-key";

fn standin_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("STANDIN_BIN") {
        return Ok(PathBuf::from(path));
    }
    // target/<profile>/examples/bench_analyze → target/<profile>/ml-standin
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|profile| profile.join("ml-standin"))
        .context("cannot locate the target directory")?;
    if !bin.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p drishtiksha-standin --bin ml-standin) or set STANDIN_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

/// Kills the child when the bench ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> anyhow::Result<(Server, String)> {
    let mut child = Command::new(standin_bin()?)
        .args(["--listen", "127.0.0.1:0", "--api-key", KEY, "--latency-scale", "0"])
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn,drishtiksha_standin=info")
        .env_remove("LOG_FORMAT")
        .env_remove("REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start ml-standin")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let server = Server(child);
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().context("ml-standin exited before listening")??;
        if line.contains("listening")
            && let Some(rest) = line.split("127.0.0.1:").nth(1)
        {
            let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
            break format!("127.0.0.1:{port}");
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Ok((server, addr))
}

/// `VmHWM` (peak resident set) of `pid`, in bytes.
fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}

async fn upload(client: &reqwest::Client, url: &str, block: &Bytes) -> anyhow::Result<Duration> {
    let block = block.clone();
    let chunks = (0..SIZE / CHUNK).map(move |i| {
        let at = (i * CHUNK) % block.len();
        Ok::<Bytes, std::io::Error>(block.slice(at..at + CHUNK))
    });
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let part = Part::stream_with_length(body, SIZE as u64).file_name("bench.mp4");
    let form = Form::new().part("media", part).text("model", "SIGLIP-LSTM-V4");
    let started = Instant::now();
    let response = client.post(url).header("X-API-Key", KEY).multipart(form).send().await?;
    let status = response.status();
    let _ = response.bytes().await?;
    if status != 200 {
        bail!("/analyze answered {status}");
    }
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (server, addr) = start()?;
    let pid = server.0.id();
    let url = format!("http://{addr}/analyze");
    let client = reqwest::Client::new();
    // 1 MiB of pseudo-random bytes, sliced into 64 KiB chunks (no copy per chunk).
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let block: Vec<u8> = (0..1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let block = Bytes::from(block);

    let mut rates = Vec::with_capacity(RUNS);
    for run in 1..=RUNS {
        let elapsed = upload(&client, &url, &block).await?;
        let rate = SIZE as f64 / 1e6 / elapsed.as_secs_f64();
        eprintln!("run {run}: {:.2} s, {rate:.1} MB/s", elapsed.as_secs_f64());
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let peak = peak_rss(pid)? as f64 / 1e6;
    println!("| ml-standin /analyze throughput (100 MiB, latency 0) | {median:.0} MB/s | target — |");
    println!("| ml-standin peak RSS during upload | {peak:.1} MB | target < 50 MB |");
    drop(server);
    Ok(())
}
