//! Concurrency and cancellation (§9.5).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{KEY, catalogue, config, form, spawn, within};

#[tokio::test]
async fn twenty_simultaneous_calls_at_one_second_latency_finish_in_under_two_seconds() {
    let mut c = config();
    c.latency_scale = 1.0;
    c.catalogue = catalogue(r#"[{"name":"SLOW","profile":"siglip","isVideo":true,"latency_ms":1000}]"#);
    let s = spawn(c).await;
    let started = Instant::now();
    let calls = (0..20).map(|i| {
        let s = &s;
        async move { s.analyze_json(form("v.mp4", common::video_bytes(&format!("c{i}")), None)).await }
    });
    let results = within(10, futures::future::join_all(calls)).await;
    let elapsed = started.elapsed();
    assert!(results.iter().all(|(status, _)| *status == 200));
    for (_, body) in &results {
        let t = body["data"]["processing_time"].as_f64().unwrap();
        assert!(t >= 1.0, "latency honoured: {t}");
    }
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[tokio::test]
async fn a_client_disconnect_stops_the_simulated_work() {
    let mut c = config();
    c.latency_scale = 1.0;
    c.catalogue = catalogue(r#"[{"name":"SLOW","profile":"siglip","isVideo":true,"latency_ms":60000}]"#);
    let s = spawn(c).await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let result = impatient
        .post(s.url("/analyze"))
        .header("X-API-Key", KEY)
        .multipart(form("v.mp4", common::video_bytes("gone"), None))
        .send()
        .await;
    assert!(result.expect_err("gave up").is_timeout());
    // Poll the log until the abandoned call shows as cancelled, well before its latency ends.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = s.requests().await;
        if let Some(entry) = log.first()
            && entry["outcome"] == "cancelled"
        {
            assert!(entry["status"].is_null());
            break;
        }
        assert!(Instant::now() < deadline, "still running: {log:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.get_json("/stats").await["models_info"][0]["inference_count"], 0);
}
