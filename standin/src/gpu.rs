//! The simulated GPU (§9.5): at most `--capacity` inferences at once, and the figures of
//! `GET /__standin/capacity`.
//!
//! The real server runs every call on one GPU; its limit is memory, not a queue. The stand-in
//! models that with a fair (FIFO) semaphore: a call beyond the capacity either waits for a slot,
//! like work piling up behind a busy GPU, or is refused the way an out-of-memory inference fails.
//! Concurrency and busy time are tracked with or without a capacity, so benchmarks can read the
//! utilisation (`busySeconds / sinceSeconds`) of an unlimited stand-in too.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Semaphore, SemaphorePermit};

/// What a call does when every slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OverCapacity {
    /// Wait, first come first served, for a slot to free.
    #[default]
    Queue,
    /// Answer 500 Inference Error with CUDA out-of-memory errors, as the real server does.
    Fail,
}

impl fmt::Display for OverCapacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Queue => "queue",
            Self::Fail => "fail",
        })
    }
}

impl FromStr for OverCapacity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "queue" => Ok(Self::Queue),
            "fail" => Ok(Self::Fail),
            _ => Err(format!("unknown over-capacity behaviour '{s}' (expected queue or fail)")),
        }
    }
}

#[derive(Debug)]
struct Stats {
    in_flight: usize,
    peak: usize,
    waiting: usize,
    /// Busy time of the intervals that have ended since `since`.
    busy: Duration,
    /// Start of the current busy interval (some inference running), if any.
    busy_since: Option<Instant>,
    since: Instant,
    served: u64,
    refused: u64,
}

impl Stats {
    fn new(now: Instant) -> Self {
        Self {
            in_flight: 0,
            peak: 0,
            waiting: 0,
            busy: Duration::ZERO,
            busy_since: None,
            since: now,
            served: 0,
            refused: 0,
        }
    }
}

/// `GET /__standin/capacity`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityReport {
    /// `null` when unlimited.
    pub capacity: Option<usize>,
    pub over_capacity: OverCapacity,
    /// Inferences running now.
    pub in_flight: usize,
    /// Most inferences running at once since start or the last reset.
    pub peak_in_flight: usize,
    /// Calls queued for a slot.
    pub waiting: usize,
    /// Wall seconds during which at least one inference ran, since start or the last reset.
    pub busy_seconds: f64,
    /// Seconds since start or the last reset.
    pub since_seconds: f64,
    /// Inferences completed.
    pub served: u64,
    /// Calls refused because every slot was taken (`--over-capacity fail`).
    pub refused_for_capacity: u64,
}

/// The simulated GPU shared by all calls.
#[derive(Debug)]
pub struct Gpu {
    capacity: Option<usize>,
    over_capacity: OverCapacity,
    /// Fair: permits freed go to waiters in arrival order, so `try_acquire` never overtakes them.
    slots: Option<Semaphore>,
    stats: Mutex<Stats>,
}

/// Every slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl Gpu {
    /// A GPU of `capacity` concurrent inferences (`None` = unlimited).
    pub fn new(capacity: Option<usize>, over_capacity: OverCapacity) -> Self {
        Self {
            capacity,
            over_capacity,
            slots: capacity.map(Semaphore::new),
            stats: Mutex::new(Stats::new(Instant::now())),
        }
    }

    pub fn capacity(&self) -> Option<usize> {
        self.capacity
    }

    pub fn over_capacity(&self) -> OverCapacity {
        self.over_capacity
    }

    fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot if one is free now.
    pub fn try_acquire(&self) -> Result<Slot<'_>, Full> {
        let permit = match &self.slots {
            None => None,
            Some(slots) => Some(slots.try_acquire().map_err(|_| Full)?),
        };
        Ok(self.occupy(permit))
    }

    /// Waits for a slot, behind the calls that were already waiting. Dropping the future (a
    /// client disconnect) leaves the queue.
    pub async fn acquire(&self) -> Slot<'_> {
        let permit = match &self.slots {
            None => None,
            Some(slots) => {
                let _waiting = Waiting::enter(self);
                // The semaphore is never closed, so acquiring cannot fail.
                slots.acquire().await.ok()
            }
        };
        self.occupy(permit)
    }

    /// Counts a call refused for capacity.
    pub fn refuse(&self) {
        self.stats().refused += 1;
    }

    fn occupy<'a>(&'a self, permit: Option<SemaphorePermit<'a>>) -> Slot<'a> {
        let mut stats = self.stats();
        stats.in_flight += 1;
        stats.peak = stats.peak.max(stats.in_flight);
        if stats.busy_since.is_none() {
            stats.busy_since = Some(Instant::now());
        }
        Slot { gpu: self, served: false, _permit: permit }
    }

    /// The figures of `GET /__standin/capacity`.
    pub fn report(&self) -> CapacityReport {
        let now = Instant::now();
        let stats = self.stats();
        let busy = stats.busy + stats.busy_since.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        CapacityReport {
            capacity: self.capacity,
            over_capacity: self.over_capacity,
            in_flight: stats.in_flight,
            peak_in_flight: stats.peak,
            waiting: stats.waiting,
            busy_seconds: micros(busy),
            since_seconds: micros(now.saturating_duration_since(stats.since)),
            served: stats.served,
            refused_for_capacity: stats.refused,
        }
    }

    /// Starts the figures afresh; inferences still running count from now.
    pub fn reset(&self) {
        let now = Instant::now();
        let mut stats = self.stats();
        let (in_flight, waiting) = (stats.in_flight, stats.waiting);
        *stats = Stats::new(now);
        stats.in_flight = in_flight;
        stats.peak = in_flight;
        stats.waiting = waiting;
        stats.busy_since = (in_flight > 0).then_some(now);
    }
}

fn micros(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

/// A call queued for a slot; leaves the count however the wait ends.
struct Waiting<'a>(&'a Gpu);

impl<'a> Waiting<'a> {
    fn enter(gpu: &'a Gpu) -> Self {
        gpu.stats().waiting += 1;
        Self(gpu)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut stats = self.0.stats();
        stats.waiting = stats.waiting.saturating_sub(1);
    }
}

/// One running inference. Dropping it frees the slot (also when the client went away);
/// [`Slot::complete`] counts the inference as served first.
#[derive(Debug)]
pub struct Slot<'a> {
    gpu: &'a Gpu,
    served: bool,
    // Released after `drop` has updated the figures, so `inFlight` never exceeds the capacity.
    _permit: Option<SemaphorePermit<'a>>,
}

impl Slot<'_> {
    /// Ends the inference as served.
    pub fn complete(mut self) {
        self.served = true;
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut stats = self.gpu.stats();
        stats.in_flight = stats.in_flight.saturating_sub(1);
        if self.served {
            stats.served += 1;
        }
        if stats.in_flight == 0
            && let Some(start) = stats.busy_since.take()
        {
            let now = Instant::now();
            stats.busy += now.saturating_duration_since(start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_capacity_parses_queue_and_fail_only() {
        assert_eq!("Queue".parse::<OverCapacity>(), Ok(OverCapacity::Queue));
        assert_eq!(" fail ".parse::<OverCapacity>(), Ok(OverCapacity::Fail));
        assert!("drop".parse::<OverCapacity>().is_err());
        assert_eq!(OverCapacity::Fail.to_string(), "fail");
    }

    #[test]
    fn slots_are_limited_and_freed_on_drop() {
        let gpu = Gpu::new(Some(2), OverCapacity::Fail);
        let a = gpu.try_acquire().expect("first slot");
        let b = gpu.try_acquire().expect("second slot");
        assert_eq!(gpu.try_acquire().map(|_| ()), Err(Full));
        gpu.refuse();
        a.complete();
        let c = gpu.try_acquire().expect("freed slot");
        drop((b, c));
        let r = gpu.report();
        assert_eq!((r.in_flight, r.peak_in_flight, r.served, r.refused_for_capacity), (0, 2, 1, 1));
        assert_eq!(r.capacity, Some(2));
    }

    #[test]
    fn an_unlimited_gpu_still_counts_concurrency() {
        let gpu = Gpu::new(None, OverCapacity::Queue);
        let slots: Vec<_> = (0..5).map(|_| gpu.try_acquire().expect("unlimited")).collect();
        assert_eq!(gpu.report().in_flight, 5);
        drop(slots);
        let r = gpu.report();
        assert_eq!((r.in_flight, r.peak_in_flight, r.capacity), (0, 5, None));
    }

    #[test]
    fn reset_keeps_running_inferences_and_restarts_the_figures() {
        let gpu = Gpu::new(Some(3), OverCapacity::Queue);
        let a = gpu.try_acquire().expect("slot");
        let b = gpu.try_acquire().expect("slot");
        drop(b);
        gpu.refuse();
        gpu.reset();
        let r = gpu.report();
        assert_eq!((r.in_flight, r.peak_in_flight, r.served, r.refused_for_capacity), (1, 1, 0, 0));
        // Still busy after the reset: the running inference counts from the reset on.
        assert!(r.busy_seconds <= r.since_seconds);
        a.complete();
        assert_eq!(gpu.report().served, 1);
    }

    #[tokio::test]
    async fn waiters_are_served_in_arrival_order() {
        let gpu = std::sync::Arc::new(Gpu::new(Some(1), OverCapacity::Queue));
        let held = gpu.try_acquire().expect("slot");
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (waiter, order) = (gpu.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let slot = waiter.acquire().await;
                order.lock().unwrap_or_else(PoisonError::into_inner).push(i);
                slot.complete();
            }));
            // Each waiter must be queued before the next one starts.
            while gpu.report().waiting < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for t in tasks {
            t.await.expect("waiter finishes");
        }
        assert_eq!(*order.lock().unwrap_or_else(PoisonError::into_inner), vec![0, 1, 2]);
        let r = gpu.report();
        assert_eq!((r.waiting, r.in_flight, r.peak_in_flight, r.served), (0, 0, 1, 3));
    }
}
