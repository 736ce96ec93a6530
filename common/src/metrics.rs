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
