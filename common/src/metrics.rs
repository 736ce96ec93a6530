//! Prometheus metrics of this process (text exposition format at `/metrics`). One registry per
//! process; the metrics below are registered on first use.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    REGISTRY.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn counter(name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    REGISTRY.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric");
    REGISTRY.register(Box::new(h.clone())).expect("metric registered once");
    h
}

const HTTP_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
const ML_BUCKETS: [f64; 12] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1200.0];

pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("drishtiksha_http_requests_total", "HTTP requests by route and status", &["method", "route", "status"])
});
pub static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "drishtiksha_http_request_duration_seconds",
        "HTTP request latency by route",
        &["method", "route"],
        HTTP_BUCKETS.to_vec(),
    )
});
pub static UPLOADS: LazyLock<IntCounter> =
    LazyLock::new(|| counter("drishtiksha_uploads_total", "Uploads accepted and stored"));
pub static UPLOAD_BYTES: LazyLock<IntCounter> =
    LazyLock::new(|| counter("drishtiksha_upload_bytes_total", "Bytes of accepted uploads"));
pub static RUNS_STARTED: LazyLock<IntCounter> =
    LazyLock::new(|| counter("drishtiksha_runs_started_total", "Analysis workflows started"));
pub static RUNS_FINISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("drishtiksha_runs_finished_total", "Analysis runs finalized, by final status", &["status"])
});
pub static MODEL_ANALYSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "drishtiksha_model_analyses_total",
        "Model analysis attempts by model and outcome",
        &["model", "outcome"],
    )
});
pub static ML_CALL_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "drishtiksha_ml_call_duration_seconds",
        "ML server call latency by endpoint and model",
        &["endpoint", "model"],
        ML_BUCKETS.to_vec(),
    )
});
pub static SOCKET_CONNECTIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    let g = IntGauge::new("drishtiksha_socket_connections", "Open Socket.IO connections").expect("valid metric");
    REGISTRY.register(Box::new(g.clone())).expect("metric registered once");
    g
});
pub static EVENTS_RELAYED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("drishtiksha_events_relayed_total", "Socket.IO events emitted by the progress relay", &["event"])
});
/// Progress messages replaced by a newer one of the same media and model before reaching a socket
/// (label: the channel message's `event`, e.g. `FRAME_ANALYSIS_PROGRESS`).
pub static SOCKET_EVENTS_COALESCED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "drishtiksha_socket_events_coalesced_total",
        "Progress messages superseded by a newer one for the same media and model before delivery",
        &["event"],
    )
});
/// Messages the relay chose not to deliver to a connected socket. Only progress messages can be
/// dropped (a socket tracking too many distinct media/model pairs at once); never an outcome.
pub static SOCKET_EVENTS_DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "drishtiksha_socket_events_dropped_total",
        "Progress messages not delivered to a connected socket by the relay's policy",
        &["event"],
    )
});
/// Sockets closed because they fell too far behind (the client reconnects and refetches).
pub static SOCKET_OVERFLOW_DISCONNECTS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "drishtiksha_socket_overflow_disconnects_total",
        "Sockets disconnected because their backlog of undelivered events exceeded the bound",
    )
});

/// The registry in the text exposition format.
pub fn render() -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&REGISTRY.gather(), &mut buf) {
        tracing::warn!(error = %e, "metrics not encoded");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Route label of requests that matched no route (unknown paths, wrong methods): one value, so that
/// clients cannot add series by inventing paths.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Method label: the standard methods by name, every other method as one value (`OTHER`), so that
/// clients cannot add series by inventing methods.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::IntGaugeVec {
    let g = prometheus::IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    REGISTRY.register(Box::new(g.clone())).expect("metric registered once");
    g
}

/// Wait before a model call started: time its task spent in the inference queue's backlog.
const WAIT_BUCKETS: [f64; 14] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

pub static PROGRESS_EVENTS_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "drishtiksha_progress_events_dropped_total",
        "Progress events not published (Redis away or the publish buffer full)",
    )
});
pub static INFERENCE_IN_FLIGHT: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    gauge_vec("drishtiksha_inference_in_flight", "Model calls in flight to an ML server", &["server"])
});
pub static INFERENCE_CAPACITY: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    gauge_vec("drishtiksha_inference_capacity", "Configured concurrent inferences of an ML server", &["server"])
});
pub static INFERENCE_QUEUE_WAIT: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "drishtiksha_inference_queue_wait_seconds",
        "Time a model call waited for inference capacity before it started",
        &["server"],
        WAIT_BUCKETS.to_vec(),
    )
});
pub static INFERENCE_BACKLOG: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "drishtiksha_inference_backlog",
        "Model calls waiting in the inference task queue (Temporal's approximate backlog)",
        &["task_queue"],
    )
});
pub static ML_ANSWERS_REUSED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "drishtiksha_ml_answers_reused_total",
        "Model calls answered from a stored ML answer instead of calling the ML server again",
    )
});

#[cfg(test)]
mod tests {
    use super::method_label;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("DELETE"), "DELETE");
        assert_eq!(method_label("XFOO"), "OTHER");
        assert_eq!(method_label("get"), "OTHER");
    }
}
