//! The simulated GPU (§9.5): `--capacity`, `--over-capacity` and `GET /__standin/capacity`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{KEY, catalogue, client, config, form, spawn, video_bytes, within};
use drishtiksha_standin::gpu::OverCapacity;
use serde_json::Value;
use tokio::task::JoinHandle;

/// A slow model to hold slots and a fast one to knock on the door.
const SLOW_AND_FAST: &str = r#"[
  {"name":"SLOW","profile":"siglip","isVideo":true,"latency_ms":60000},
  {"name":"FAST","profile":"video-generic","isVideo":true,"latency_ms":0}
]"#;

async fn capacity(s: &common::Standin) -> Value {
    s.get_json("/__standin/capacity").await
}

/// Polls the capacity report until `done` holds, failing after 20 s.
async fn wait_for(s: &common::Standin, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let report = capacity(s).await;
        if done(&report) {
            return report;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {report}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts a call to `SLOW` that holds its slot until the returned task is aborted (the client
/// goes away).
fn hold_a_slot(s: &common::Standin, seed: &str) -> JoinHandle<()> {
    let url = s.url("/analyze");
    let bytes = video_bytes(seed);
    tokio::spawn(async move {
        let _ = client().post(url).header("X-API-Key", KEY).multipart(form("v.mp4", bytes, Some("SLOW"))).send().await;
    })
}

#[tokio::test]
async fn the_capacity_report_names_every_figure_and_starts_idle() {
    let s = spawn(config()).await;
    let report = capacity(&s).await;
    let keys: Vec<&str> = report.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "capacity",
            "overCapacity",
            "inFlight",
            "peakInFlight",
            "waiting",
            "busySeconds",
            "sinceSeconds",
            "served",
            "refusedForCapacity"
        ]
    );
    assert!(report["capacity"].is_null());
    assert_eq!(report["overCapacity"], "queue");
    assert_eq!((report["inFlight"].as_u64(), report["peakInFlight"].as_u64()), (Some(0), Some(0)));
    assert_eq!(report["busySeconds"], 0.0);
    assert_eq!((report["served"].as_u64(), report["refusedForCapacity"].as_u64()), (Some(0), Some(0)));
    let unauthorized = client().get(s.url("/__standin/capacity")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
}

#[tokio::test]
async fn capacity_two_runs_at_most_two_of_six_calls_at_once_and_queues_the_rest() {
    const LATENCY: f64 = 0.4;
    let mut c = config();
    c.latency_scale = 1.0;
    c.capacity = Some(2);
    c.catalogue = catalogue(r#"[{"name":"GPU","profile":"siglip","isVideo":true,"latency_ms":400}]"#);
    let s = spawn(c).await;
    let calls = (0..6).map(|i| {
        let s = &s;
        async move {
            let started = Instant::now();
            let (status, body) = s.analyze_json(form("v.mp4", video_bytes(&format!("queued-{i}")), None)).await;
            (status, body, started.elapsed().as_secs_f64())
        }
    });
    let results = within(60, futures::future::join_all(calls)).await;

    assert!(results.iter().all(|(status, _, _)| *status == 200), "{results:?}");
    let report = capacity(&s).await;
    assert_eq!(report["capacity"], 2);
    assert_eq!(report["peakInFlight"], 2, "{report}");
    assert_eq!((report["inFlight"].as_u64(), report["waiting"].as_u64()), (Some(0), Some(0)));
    assert_eq!((report["served"].as_u64(), report["refusedForCapacity"].as_u64()), (Some(6), Some(0)));
    // Six inferences of 0.4 s, never more than two at once: the GPU was busy at least 1.2 s.
    assert!(report["busySeconds"].as_f64().unwrap() >= 3.0 * LATENCY, "{report}");

    // Every inference took its latency; the call that got a slot last also queued behind two
    // full inferences first, so its answer came at least three latencies after it was sent.
    let processing: Vec<f64> = results.iter().map(|(_, b, _)| b["data"]["processing_time"].as_f64().unwrap()).collect();
    assert!(processing.iter().all(|t| *t >= LATENCY), "{processing:?}");
    let queued_for = results.iter().zip(&processing).map(|((_, _, elapsed), t)| elapsed - t).fold(0.0, f64::max);
    assert!(queued_for >= 2.0 * LATENCY - 0.001, "no call queued: {results:?}");
    let slowest = results.iter().map(|(_, _, elapsed)| *elapsed).fold(0.0, f64::max);
    assert!(slowest >= 3.0 * LATENCY, "{slowest}");
}

#[tokio::test]
async fn over_capacity_fail_refuses_calls_beyond_the_capacity_with_an_out_of_memory_inference_error() {
    let mut c = config();
    c.latency_scale = 1.0;
    c.capacity = Some(1);
    c.over_capacity = OverCapacity::Fail;
    c.catalogue = catalogue(SLOW_AND_FAST);
    let s = spawn(c).await;
    let holder = hold_a_slot(&s, "holder");
    wait_for(&s, "the slow call to hold the only slot", |r| r["inFlight"] == 1).await;

    let calls = (0..3).map(|i| {
        let s = &s;
        async move {
            let response = client()
                .post(s.url("/analyze"))
                .header("X-API-Key", KEY)
                .header("X-Correlation-ID", format!("run-1:FAST:{i}"))
                .multipart(form("v.mp4", video_bytes(&format!("refused-{i}")), Some("FAST")))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap(), i)
        }
    });
    for (status, body, i) in within(30, futures::future::join_all(calls)).await {
        assert_eq!(status, 500, "{body}");
        let detail = body["detail"].as_object().unwrap();
        let keys: Vec<&str> = detail.keys().map(String::as_str).collect();
        assert_eq!(keys, ["error", "message", "primary_error", "fallback_error", "correlation_id"]);
        assert_eq!(detail["error"], "Inference Error");
        assert_eq!(detail["message"], "Model inference failed and all fallbacks exhausted.");
        for field in ["primary_error", "fallback_error"] {
            assert!(detail[field].as_str().unwrap().starts_with("CUDA out of memory. "), "{body}");
        }
        assert_eq!(detail["correlation_id"], format!("run-1:FAST:{i}"));
    }

    let report = capacity(&s).await;
    assert_eq!(report["overCapacity"], "fail");
    assert_eq!(report["refusedForCapacity"], 3, "{report}");
    assert_eq!((report["inFlight"].as_u64(), report["peakInFlight"].as_u64()), (Some(1), Some(1)));
    assert_eq!(report["waiting"], 0);
    let log = s.requests().await;
    let refused: Vec<&Value> = log.iter().filter(|e| e["outcome"] == "over-capacity").collect();
    assert_eq!(refused.len(), 3, "{log:?}");
    assert!(refused.iter().all(|e| e["status"] == 500 && e["model"] == "FAST" && e["modelUsed"].is_null()));

    // The slow call's client goes away: its slot frees and the next call is served.
    holder.abort();
    wait_for(&s, "the abandoned call to free its slot", |r| r["inFlight"] == 0).await;
    let (status, body) = s.analyze_json(form("v.mp4", video_bytes("after"), Some("FAST"))).await;
    assert_eq!(status, 200, "{body}");
    let report = capacity(&s).await;
    assert_eq!((report["served"].as_u64(), report["refusedForCapacity"].as_u64()), (Some(1), Some(3)));
}

#[tokio::test]
async fn a_queued_call_whose_client_goes_away_leaves_the_queue() {
    let mut c = config();
    c.latency_scale = 1.0;
    c.capacity = Some(1);
    c.catalogue = catalogue(SLOW_AND_FAST);
    let s = spawn(c).await;
    let holder = hold_a_slot(&s, "first");
    wait_for(&s, "the first call to run", |r| r["inFlight"] == 1).await;
    let queued = hold_a_slot(&s, "second");
    wait_for(&s, "the second call to queue", |r| r["waiting"] == 1).await;
    assert_eq!(capacity(&s).await["inFlight"], 1);

    queued.abort();
    wait_for(&s, "the queue to empty", |r| r["waiting"] == 0).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.requests().await.get(1).is_none_or(|e| e["outcome"] != "cancelled") {
        assert!(Instant::now() < deadline, "queued call not marked cancelled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    holder.abort();
    let report = wait_for(&s, "the slot to free", |r| r["inFlight"] == 0).await;
    assert_eq!((report["peakInFlight"].as_u64(), report["served"].as_u64()), (Some(1), Some(0)));
}

#[tokio::test]
async fn busy_seconds_grow_while_an_inference_runs_and_restart_on_reset() {
    let mut c = config();
    c.latency_scale = 1.0;
    c.catalogue = catalogue(
        r#"[{"name":"SLOW","profile":"siglip","isVideo":true,"latency_ms":60000},
            {"name":"SHORT","profile":"video-generic","isVideo":true,"latency_ms":300}]"#,
    );
    let s = spawn(c).await;
    let (status, _) = s.analyze_json(form("v.mp4", video_bytes("short"), Some("SHORT"))).await;
    assert_eq!(status, 200);
    let report = capacity(&s).await;
    let busy = report["busySeconds"].as_f64().unwrap();
    assert!(busy >= 0.3, "{report}");
    assert!(report["sinceSeconds"].as_f64().unwrap() >= busy, "{report}");
    assert_eq!(report["served"], 1);
    // Idle: busy time stands still.
    assert_eq!(capacity(&s).await["busySeconds"], report["busySeconds"]);

    // A running inference counts before it ends.
    let holder = hold_a_slot(&s, "long");
    wait_for(&s, "the long call to run", |r| r["inFlight"] == 1).await;
    let growing = wait_for(&s, "busy time to grow", |r| r["busySeconds"].as_f64().unwrap() > busy).await;
    assert_eq!(growing["served"], 1);

    let before_reset = Instant::now();
    let reset = client().post(s.url("/__standin/reset")).header("X-API-Key", KEY).send().await.unwrap();
    assert_eq!(reset.status(), 204);
    let report = capacity(&s).await;
    let bound = before_reset.elapsed().as_secs_f64();
    assert!(report["sinceSeconds"].as_f64().unwrap() <= bound, "{report} after {bound}");
    assert!(report["busySeconds"].as_f64().unwrap() <= report["sinceSeconds"].as_f64().unwrap(), "{report}");
    assert_eq!((report["served"].as_u64(), report["refusedForCapacity"].as_u64()), (Some(0), Some(0)));
    // Peak restarts at what is running now.
    assert_eq!((report["inFlight"].as_u64(), report["peakInFlight"].as_u64()), (Some(1), Some(1)));

    holder.abort();
    let idle = wait_for(&s, "the slot to free", |r| r["inFlight"] == 0).await;
    assert_eq!(capacity(&s).await["busySeconds"], idle["busySeconds"]);
}
