//! Shared server state: the live catalogue, the simulated GPU, the failure generator, the
//! request log.
//!
//! Every lock here is a `std` mutex held for a few instructions and never across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use axum::http::HeaderMap;
use serde::Serialize;

use crate::catalogue::{Catalogue, ModelEntry};
use crate::config::Config;
use crate::failure::{self, FailureMode};
use crate::gpu::Gpu;
use crate::progress::Publisher;
use crate::rng::SplitMix64;
use crate::upload::MediaUpload;

/// `/analyze` calls kept by `GET /__standin/requests`.
const LOG_CAPACITY: usize = 1000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-updated in a way that
    // matters for a test tool; keep serving.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One line of `GET /__standin/requests`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogEntry {
    pub at: String,
    pub model: Option<String>,
    /// The model whose result was returned: `model`, or the fallback model after a server-side
    /// fallback; `null` when no result was returned.
    #[serde(rename = "modelUsed")]
    pub model_used: Option<String>,
    #[serde(rename = "mediaId")]
    pub media_id: Option<String>,
    #[serde(rename = "userId")]
    pub user_id: Option<String>,
    pub filename: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    /// HTTP status answered; `null` for `hang`, `drop` and calls the client abandoned.
    pub status: Option<u16>,
    /// `ok`, a failure mode, `cancelled`, or the validation status (`401`, `422`, `400`, `415`).
    pub outcome: String,
    #[serde(skip)]
    pub(crate) seq: u64,
}

#[derive(Debug, Default)]
struct RequestLog {
    entries: VecDeque<LogEntry>,
    next_seq: u64,
}

#[derive(Debug)]
struct Chaos {
    rng: SplitMix64,
    /// Calls seen per (file hash, model) carrying a `flaky-<n>` marker.
    flaky: HashMap<([u8; 32], String), u32>,
}

/// Why a call fails instead of succeeding, and how the request log names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub mode: FailureMode,
    pub outcome: String,
}

/// State shared by all handlers.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    catalogue: RwLock<Arc<Catalogue>>,
    started: Instant,
    chaos: Mutex<Chaos>,
    log: Mutex<RequestLog>,
    inference_counts: Mutex<HashMap<String, u64>>,
    pub publisher: Publisher,
    /// Concurrency limit and utilisation figures (§9.5).
    pub gpu: Gpu,
}

impl AppState {
    /// Builds the state; with a Redis URL this spawns the publishing task (needs a runtime).
    pub fn new(config: Config) -> anyhow::Result<Arc<Self>> {
        let publisher = match &config.redis_url {
            Some(url) => Publisher::spawn(redis::Client::open(url.as_str())?, config.channel.clone()),
            None => Publisher::disabled(),
        };
        Ok(Arc::new(Self {
            catalogue: RwLock::new(Arc::new(config.catalogue.clone())),
            started: Instant::now(),
            chaos: Mutex::new(Chaos { rng: SplitMix64::new(config.seed), flaky: HashMap::new() }),
            log: Mutex::new(RequestLog::default()),
            inference_counts: Mutex::new(HashMap::new()),
            publisher,
            gpu: Gpu::new(config.capacity, config.over_capacity),
            config,
        }))
    }

    /// Seconds since start.
    pub fn uptime(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Whether `X-API-Key` matches (compared without early exit).
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers.get("x-api-key") else {
            return false;
        };
        let (a, b) = (given.as_bytes(), self.config.api_key.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// The catalogue in force.
    pub fn catalogue(&self) -> Arc<Catalogue> {
        self.catalogue.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the catalogue (`PUT /__standin/catalogue`); calls in flight keep the old one.
    pub fn replace_catalogue(&self, catalogue: Catalogue) {
        *self.catalogue.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(catalogue);
    }

    pub fn inference_count(&self, model: &str) -> u64 {
        lock(&self.inference_counts).get(model).copied().unwrap_or(0)
    }

    pub fn count_inference(&self, model: &str) {
        *lock(&self.inference_counts).entry(model.to_owned()).or_default() += 1;
    }

    /// Applies the failure triggers of §9.7 in order; `None` means the call succeeds.
    ///
    /// Steps 3 and 4 each take one draw `f` uniform in [0, 1) from the `--seed` generator, and
    /// only when their rate is above zero: the call fails iff `f < rate`, with mode
    /// `fail_modes[floor(f / rate × len)]`, so a single sequential client sees a reproducible
    /// sequence. A catalogue `fail_rate` also draws its mode from `--fail-modes`.
    pub fn decide_failure(&self, upload: &MediaUpload, entry: &ModelEntry) -> Option<Failure> {
        if let Some(mode) = failure::failure_for(&upload.markers, &entry.name) {
            if let FailureMode::Flaky(n) = mode {
                let mut chaos = lock(&self.chaos);
                let calls = chaos.flaky.entry((upload.sha256, entry.name.clone())).or_default();
                *calls += 1;
                return (*calls <= n).then(|| Failure { mode, outcome: mode.to_string() });
            }
            return Some(Failure { mode, outcome: mode.to_string() });
        }
        if let Some(mode) = entry.fail {
            return Some(Failure { mode, outcome: mode.to_string() });
        }
        [entry.fail_rate, self.config.fail_rate]
            .into_iter()
            .find_map(|rate| self.draw(rate))
            .map(|mode| Failure { mode, outcome: mode.to_string() })
    }

    fn draw(&self, rate: f64) -> Option<FailureMode> {
        if rate <= 0.0 {
            return None;
        }
        let f = lock(&self.chaos).rng.next_f64();
        let modes = &self.config.fail_modes;
        if f >= rate || modes.is_empty() {
            return None;
        }
        let index = ((f / rate) * modes.len() as f64) as usize;
        modes.get(index.min(modes.len() - 1)).copied()
    }

    /// Appends a request-log entry and returns its handle for [`AppState::update_log`].
    pub fn log(&self, mut entry: LogEntry) -> u64 {
        let mut log = lock(&self.log);
        entry.seq = log.next_seq;
        log.next_seq += 1;
        if log.entries.len() == LOG_CAPACITY {
            log.entries.pop_front();
        }
        let seq = entry.seq;
        log.entries.push_back(entry);
        seq
    }

    /// Rewrites the status and outcome of a logged call, if still in the log.
    pub fn update_log(&self, seq: u64, status: Option<u16>, outcome: &str) {
        let mut log = lock(&self.log);
        if let Ok(i) = log.entries.binary_search_by_key(&seq, |e| e.seq) {
            let entry = &mut log.entries[i];
            if status != Some(200) {
                entry.model_used = None;
            }
            entry.status = status;
            entry.outcome = outcome.to_owned();
        }
    }

    /// The request log, oldest first.
    pub fn log_entries(&self) -> Vec<LogEntry> {
        lock(&self.log).entries.iter().cloned().collect()
    }

    /// Clears the log and the flaky counters, reseeds the failure generator and restarts the
    /// capacity figures, so a test can start from the state the server started in.
    pub fn reset(&self) {
        self.gpu.reset();
        lock(&self.log).entries.clear();
        let mut chaos = lock(&self.chaos);
        chaos.flaky.clear();
        chaos.rng = SplitMix64::new(self.config.seed);
    }
}
