//! Progress events on a real Redis subscription (§8, §9.6).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{KEY, config, form_for, spawn, video_bytes, within};
use futures::StreamExt;
use redis::aio::PubSubStream;
use serde_json::{Value, json};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A stand-in publishing on its own channel, and a subscription to that channel.
async fn setup(latency_scale: f64) -> (common::Standin, PubSubStream) {
    let channel = format!("standin-test-{}", uuid::Uuid::new_v4());
    let client = redis::Client::open(redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.expect("Redis at REDIS_URL or 127.0.0.1:6379");
    pubsub.subscribe(&channel).await.unwrap();
    let mut c = config();
    c.redis_url = Some(redis_url());
    c.channel = channel;
    c.latency_scale = latency_scale;
    (spawn(c).await, pubsub.into_on_message())
}

async fn next_event(stream: &mut PubSubStream) -> Value {
    let msg = within(15, stream.next()).await.expect("subscription open");
    let payload: String = msg.get_payload().unwrap();
    serde_json::from_str(&payload).unwrap()
}

async fn events(stream: &mut PubSubStream, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next_event(stream).await);
    }
    out
}

fn assert_envelope(e: &Value, media_id: &str, user_id: Value, model: &str) {
    let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["media_id", "user_id", "event", "message", "data"]);
    assert_eq!(e["media_id"], media_id);
    assert_eq!(e["user_id"], user_id);
    let data_keys: Vec<&str> = e["data"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(data_keys, ["model_name", "progress", "total", "details"]);
    assert_eq!(e["data"]["model_name"], model);
}

fn progress(e: &Value) -> (Value, Value, Value, Value) {
    (e["event"].clone(), e["data"]["progress"].clone(), e["data"]["total"].clone(), e["data"]["details"].clone())
}

/// Sends a call with a user and returns its first event: proof that nothing else was queued
/// before it (events keep request order).
async fn sentinel(s: &common::Standin, stream: &mut PubSubStream) {
    let (status, _) =
        s.analyze_json(form_for("s.mp4", video_bytes("sentinel"), "SIGLIP-LSTM-V4", "sentinel", Some("u"))).await;
    assert_eq!(status, 200);
    let first = next_event(stream).await;
    assert_eq!(first["media_id"], "sentinel", "unexpected earlier event: {first}");
}

#[tokio::test]
async fn siglip_publishes_its_schedule_in_order_and_nothing_without_a_user() {
    let (s, mut stream) = setup(0.02).await;
    let (status, body) =
        s.analyze_json(form_for("v.mp4", video_bytes("siglip"), "SIGLIP-LSTM-V4", "m1", Some("u1"))).await;
    assert_eq!(status, 200);
    let got = events(&mut stream, 52).await;
    for e in &got {
        assert_envelope(e, "m1", json!("u1"), "SIGLIP-LSTM-V4");
    }
    assert_eq!(got[0]["message"], "Starting analysis with SIGLIP-LSTM-V4");
    assert_eq!(
        progress(&got[0]),
        (json!("FRAME_ANALYSIS_PROGRESS"), json!(0), Value::Null, json!({"phase": "initialization"}))
    );
    for k in 1..=50u64 {
        let e = &got[k as usize];
        assert_eq!(e["message"], format!("Processed window {k}/50"));
        assert_eq!(progress(e), (json!("FRAME_ANALYSIS_PROGRESS"), json!(k), json!(50), Value::Null));
    }
    let done = &got[51];
    let data = &body["data"];
    assert_eq!(done["event"], "ANALYSIS_COMPLETE");
    let conf = data["confidence"].as_f64().unwrap();
    assert_eq!(
        done["message"],
        format!("Analysis completed: {} (confidence: {conf:.3})", data["prediction"].as_str().unwrap())
    );
    let details = &done["data"]["details"];
    let keys: Vec<&str> = details.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["prediction", "confidence", "processing_time", "total_frames", "windows_analyzed"]);
    assert_eq!(details["prediction"], data["prediction"]);
    assert_eq!(details["confidence"], data["confidence"]);
    assert_eq!(details["total_frames"], 300);
    assert_eq!(details["windows_analyzed"], 50);

    // Without userId (or with an empty one): nothing.
    let (status, _) = s.analyze_json(form_for("v.mp4", video_bytes("siglip"), "SIGLIP-LSTM-V4", "m2", None)).await;
    assert_eq!(status, 200);
    let (status, _) = s.analyze_json(form_for("v.mp4", video_bytes("siglip"), "SIGLIP-LSTM-V4", "m3", Some(""))).await;
    assert_eq!(status, 200);
    sentinel(&s, &mut stream).await;
}

#[tokio::test]
async fn efficientnet_publishes_face_progress_every_fifth_frame() {
    let (s, mut stream) = setup(0.01).await;
    let (status, body) =
        s.analyze_json(form_for("v.mp4", video_bytes("effnet"), "EFFICIENTNET-B7-V1", "m1", Some("u1"))).await;
    assert_eq!(status, 200);
    let got = events(&mut stream, 64).await;
    for e in &got {
        assert_envelope(e, "m1", json!("u1"), "EFFICIENTNET-B7-V1");
    }
    assert_eq!(got[0]["message"], "Starting analysis with EFFICIENTNET-B7-V1");
    assert_eq!(got[1]["message"], "Starting frame analysis for 300 frames");
    assert_eq!(
        progress(&got[1]),
        (json!("FRAME_ANALYSIS_PROGRESS"), json!(0), json!(300), json!({"phase": "frame_processing_start"}))
    );
    for f in 1..=60u64 {
        let e = &got[1 + f as usize];
        let i = f * 5;
        assert_eq!(e["message"], format!("Analyzed {i}/300 frames, detected {f} faces"));
        assert_eq!(
            progress(e),
            (
                json!("FRAME_ANALYSIS_PROGRESS"),
                json!(i),
                json!(300),
                json!({"phase": "frame_processing", "faces_detected_so_far": f, "current_frame_faces": 1})
            )
        );
    }
    assert_eq!(got[62]["message"], "Frame analysis completed. Processing 60 face detections");
    assert_eq!(got[62]["data"]["details"], json!({"phase": "frame_analysis_complete", "faces_detected": 60}));
    let done = &got[63];
    assert_eq!(done["event"], "ANALYSIS_COMPLETE");
    assert_eq!((&done["data"]["progress"], &done["data"]["total"]), (&json!(300), &json!(300)));
    let details = &done["data"]["details"];
    let keys: Vec<&str> = details.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["prediction", "confidence", "processing_time", "total_frames", "faces_detected"]);
    assert_eq!(details["prediction"], body["data"]["prediction"]);
    assert_eq!(details["faces_detected"], 60);

    let (status, _) = s.analyze_json(form_for("v.mp4", video_bytes("effnet"), "EFFICIENTNET-B7-V1", "m2", None)).await;
    assert_eq!(status, 200);
    sentinel(&s, &mut stream).await;
}

#[tokio::test]
async fn scattering_publishes_audio_stages_and_only_those_without_a_user() {
    let (s, mut stream) = setup(0.05).await;
    let (status, body) =
        s.analyze_json(form_for("a.wav", video_bytes("audio"), "SCATTERING-WAVE-V1", "a1", Some("u1"))).await;
    assert_eq!(status, 200);
    let got = events(&mut stream, 6).await;
    for e in &got {
        assert_envelope(e, "a1", json!("u1"), "SCATTERING-WAVE-V1");
    }
    let names: Vec<&str> = got.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "FRAME_ANALYSIS_PROGRESS",
            "AUDIO_EXTRACTION_START",
            "AUDIO_EXTRACTION_COMPLETE",
            "SPECTROGRAM_GENERATION_START",
            "SPECTROGRAM_GENERATION_COMPLETE",
            "ANALYSIS_COMPLETE"
        ]
    );
    assert_eq!(got[0]["message"], "Starting audio analysis with SCATTERING-WAVE-V1");
    assert_eq!(
        progress(&got[0]),
        (
            json!("FRAME_ANALYSIS_PROGRESS"),
            json!(0),
            Value::Null,
            json!({"phase": "initialization", "media_type": "audio"})
        )
    );
    for e in &got[1..5] {
        assert_eq!(
            (&e["data"]["progress"], &e["data"]["total"], &e["data"]["details"]),
            (&Value::Null, &Value::Null, &Value::Null)
        );
    }
    let data = &body["data"];
    let conf = data["confidence"].as_f64().unwrap();
    assert_eq!(
        got[5]["message"],
        format!("Audio analysis completed: {} (confidence: {conf:.3})", data["prediction"].as_str().unwrap())
    );
    let details = &got[5]["data"]["details"];
    let keys: Vec<&str> = details.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "prediction",
            "confidence",
            "processing_time",
            "media_type",
            "sample_rate",
            "channels",
            "mean_pitch",
            "pitch_stability"
        ]
    );
    assert_eq!(details["sample_rate"], 16000);
    assert_eq!(details["channels"], 2);
    assert_eq!(details["mean_pitch"], data["pitch"]["mean_pitch_hz"]);

    // Without userId only the extraction/spectrogram events, with `user_id: null`.
    let (status, _) = s.analyze_json(form_for("a.wav", video_bytes("audio"), "SCATTERING-WAVE-V1", "a2", None)).await;
    assert_eq!(status, 200);
    let got = events(&mut stream, 4).await;
    for e in &got {
        assert_envelope(e, "a2", Value::Null, "SCATTERING-WAVE-V1");
    }
    assert_eq!(got[0]["event"], "AUDIO_EXTRACTION_START");
    assert_eq!(got[3]["event"], "SPECTROGRAM_GENERATION_COMPLETE");
    sentinel(&s, &mut stream).await;
}

#[tokio::test]
async fn injected_failures_publish_analysis_failed_or_half_the_schedule() {
    let (s, mut stream) = setup(0.0).await;
    let mut bytes = video_bytes("failing");
    bytes.extend_from_slice(b"STANDIN:422");
    let (status, _) = s.analyze_json(form_for("v.mp4", bytes, "SIGLIP-LSTM-V4", "f1", Some("u1"))).await;
    assert_eq!(status, 422);
    let failed = next_event(&mut stream).await;
    assert_envelope(&failed, "f1", json!("u1"), "SIGLIP-LSTM-V4");
    assert_eq!(failed["event"], "ANALYSIS_FAILED");
    assert_eq!(failed["message"], "Analysis failed: simulated media processing error");
    assert_eq!(failed["data"]["details"], json!({"error": "simulated media processing error"}));

    // hang: the first half of the schedule (26 of 52 events), then nothing.
    let mut bytes = video_bytes("hanging");
    bytes.extend_from_slice(b"STANDIN:hang");
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
    let result = impatient
        .post(s.url("/analyze"))
        .header("X-API-Key", KEY)
        .multipart(form_for("v.mp4", bytes, "SIGLIP-LSTM-V4", "h1", Some("u1")))
        .send()
        .await;
    assert!(result.expect_err("hangs").is_timeout());
    let got = events(&mut stream, 26).await;
    assert!(got.iter().all(|e| e["media_id"] == "h1"));
    assert_eq!(got[25]["message"], "Processed window 25/50");
    sentinel(&s, &mut stream).await;
}

#[tokio::test]
async fn a_fallback_publishes_the_primary_failure_then_the_fallback_schedule_under_its_own_name() {
    let (s, mut stream) = setup(0.0).await;
    let mut bytes = video_bytes("fallback-events");
    bytes.extend_from_slice(b"\nSTANDIN:fallback\n");
    let (status, body) = s.analyze_json(form_for("v.mp4", bytes, "SIGLIP-LSTM-V4", "m1", Some("u1"))).await;
    assert_eq!(status, 200);
    assert_eq!(body["model_used"], "EFFICIENTNET-B7-V1");
    let failed = next_event(&mut stream).await;
    assert_envelope(&failed, "m1", json!("u1"), "SIGLIP-LSTM-V4");
    assert_eq!(failed["event"], "ANALYSIS_FAILED");
    assert_eq!(failed["message"], "Analysis failed: simulated inference failure in model 'SIGLIP-LSTM-V4'");
    let got = events(&mut stream, 64).await;
    for e in &got {
        assert_envelope(e, "m1", json!("u1"), "EFFICIENTNET-B7-V1");
    }
    assert_eq!(got[0]["message"], "Starting analysis with EFFICIENTNET-B7-V1");
    assert_eq!(got[63]["event"], "ANALYSIS_COMPLETE");
    assert_eq!(got[63]["data"]["details"]["prediction"], body["data"]["prediction"]);
    sentinel(&s, &mut stream).await;
}
