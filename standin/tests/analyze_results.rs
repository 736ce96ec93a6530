//! Success envelopes (§6) for every profile, and determinism (§9.4).
#![allow(clippy::unwrap_used)]

mod common;

use common::{ALL_PROFILES, catalogue, config, form, png_bytes, spawn, video_bytes};
use serde_json::{Map, Value, json};

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

fn is_prob(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| (0.0..=1.0).contains(&x))
}

fn assert_grid(v: &Value, rows: usize, cols: usize, range: std::ops::RangeInclusive<f64>) {
    let grid = v.as_array().unwrap();
    assert_eq!(grid.len(), rows);
    for row in grid {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), cols);
        assert!(row.iter().all(|c| c.as_f64().is_some_and(|x| range.contains(&x))));
    }
}

/// Checks the envelope and the common fields; returns `data`.
fn common_fields(body: &Value, model: &str, media_type: &str) -> Map<String, Value> {
    assert_eq!(keys(body), ["success", "model_used", "timestamp", "data"]);
    assert_eq!(body["success"], true);
    assert_eq!(body["model_used"], model);
    let data = body["data"].as_object().unwrap().clone();
    let prediction = data["prediction"].as_str().unwrap();
    assert!(prediction == "REAL" || prediction == "FAKE");
    let confidence = data["confidence"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&confidence), "{confidence}");
    assert!(data["processing_time"].is_f64());
    assert_eq!(data["note"], "Simulated result (ML stand-in).");
    assert_eq!(data["media_type"], media_type);
    data
}

fn assert_video(data: &Map<String, Value>, units: usize, frame_count: Value, metric_keys: &[&str]) {
    let k: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(
        k,
        [
            "prediction",
            "confidence",
            "processing_time",
            "note",
            "media_type",
            "frame_count",
            "frames_analyzed",
            "frame_predictions",
            "metrics",
            "visualization_path"
        ]
    );
    assert_eq!(data["frame_count"], frame_count);
    assert_eq!(data["frames_analyzed"], units);
    let predictions = data["frame_predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), units);
    for (i, p) in predictions.iter().enumerate() {
        assert_eq!(keys(p), ["index", "score", "prediction"]);
        assert_eq!(p["index"], i);
        assert!(is_prob(&p["score"]));
        let fake = p["score"].as_f64().unwrap() > 0.5;
        assert_eq!(p["prediction"], if fake { "FAKE" } else { "REAL" });
    }
    assert_eq!(keys(&data["metrics"]), metric_keys);
    assert!(data["visualization_path"].is_null());
}

#[tokio::test]
async fn every_profile_returns_the_documented_success_shape() {
    let mut c = config();
    c.catalogue = catalogue(ALL_PROFILES);
    let s = spawn(c).await;
    let video = video_bytes("shapes");
    let call = |name: &'static str, file: &'static str, bytes: Vec<u8>| {
        let s = &s;
        async move {
            let (status, body) = s.analyze_json(form(file, bytes, Some(name))).await;
            assert_eq!(status, 200, "{name}: {body}");
            body
        }
    };

    let siglip = call("SIGLIP-LSTM-V4", "v.mp4", video.clone()).await;
    let data = common_fields(&siglip, "SIGLIP-LSTM-V4", "video");
    assert_video(
        &data,
        50,
        json!(300),
        &[
            "rolling_average_scores",
            "final_average_score",
            "max_score",
            "min_score",
            "score_variance",
            "suspicious_frames_count",
        ],
    );
    assert_eq!(data["metrics"]["rolling_average_scores"].as_array().unwrap().len(), 50);
    assert!(data["metrics"]["suspicious_frames_count"].is_u64());

    let effnet = call("EFFICIENTNET-B7-V1", "v.mov", video.clone()).await;
    let data = common_fields(&effnet, "EFFICIENTNET-B7-V1", "video");
    assert_video(&data, 300, json!(300), &["total_faces_detected", "average_face_score", "suspicious_frames_count"]);
    assert_eq!(data["metrics"]["total_faces_detected"], 60);

    let colorcues = call("COLOR-CUES-LSTM-V1", "v.avi", video.clone()).await;
    let data = common_fields(&colorcues, "COLOR-CUES-LSTM-V1", "video");
    assert_video(
        &data,
        19,
        json!(300),
        &["sequence_count", "rolling_average_scores", "final_average_score", "suspicious_sequences_count"],
    );

    let eyeblink = call("EYEBLINK-CNN-LSTM-V1", "v.webm", video.clone()).await;
    let data = common_fields(&eyeblink, "EYEBLINK-CNN-LSTM-V1", "video");
    assert_video(
        &data,
        3,
        json!(300),
        &["blink_sequences_found", "suspicious_blink_sequences", "average_blink_suspicion"],
    );

    let generic = call("CROSS-EFFICIENT-VIT-GAN", "v.mpeg", video.clone()).await;
    let data = common_fields(&generic, "CROSS-EFFICIENT-VIT-GAN", "video");
    assert_video(&data, 30, Value::Null, &["final_average_score"]);

    let lipfd = call("LIP-FD-V1", "v.mp4", video.clone()).await;
    let data = common_fields(&lipfd, "LIP-FD-V1", "video");
    assert_video(&data, 200, Value::Null, &["final_average_score", "window_scores"]);
    assert_eq!(data["metrics"]["window_scores"].as_array().unwrap().len(), 200);

    for (model, file, properties) in [
        ("SCATTERING-WAVE-V1", "a.wav", json!({"duration_seconds": 2.0, "sample_rate": 16000, "channels": 2})),
        ("AUDIO-GENERIC-V1", "a.mp3", json!({"duration_seconds": 10.0, "sample_rate": 16000, "channels": 1})),
    ] {
        let body = call(model, file, video.clone()).await;
        let data = common_fields(&body, model, "audio");
        let k: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(
            k,
            [
                "prediction",
                "confidence",
                "processing_time",
                "note",
                "media_type",
                "properties",
                "pitch",
                "energy",
                "spectral",
                "voice_quality",
                "visualization"
            ]
        );
        assert_eq!(data["properties"], properties);
        assert_eq!(keys(&data["pitch"]), ["mean_pitch_hz", "pitch_stability_score"]);
        let pitch = data["pitch"]["mean_pitch_hz"].as_f64().unwrap();
        assert!((80.0..=300.0).contains(&pitch));
        assert!(is_prob(&data["pitch"]["pitch_stability_score"]));
        assert_eq!(keys(&data["energy"]), ["rms_energy", "silence_ratio"]);
        assert_eq!(keys(&data["spectral"]), ["spectral_centroid", "spectral_contrast"]);
        assert!(data["voice_quality"].is_null());
        assert_eq!(keys(&data["visualization"]), ["spectrogram_url", "spectrogram_data"]);
        assert!(data["visualization"]["spectrogram_url"].is_null());
        assert_grid(&data["visualization"]["spectrogram_data"], 8, 8, -80.0..=0.0);
    }

    for (model, heatmap) in [("CROSS-EFFICIENT-VIT-IMG", false), ("IMAGE-HEATMAP-V1", true)] {
        let body = call(model, "p.png", png_bytes(1920, 1080)).await;
        let data = common_fields(&body, model, "image");
        let k: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(
            k,
            [
                "prediction",
                "confidence",
                "processing_time",
                "note",
                "media_type",
                "dimensions",
                "heatmap_scores",
                "visualization_path"
            ]
        );
        assert_eq!(data["dimensions"], json!({"width": 1920, "height": 1080}));
        if heatmap {
            assert_grid(&data["heatmap_scores"], 8, 8, 0.0..=1.0);
        } else {
            assert!(data["heatmap_scores"].is_null());
        }
        assert!(data["visualization_path"].is_null());
    }
    // Unparseable image bytes fall back to 640 × 480.
    let body = call("CROSS-EFFICIENT-VIT-IMG", "p.jpg", b"not really a jpeg".to_vec()).await;
    assert_eq!(body["data"]["dimensions"], json!({"width": 640, "height": 480}));
}

fn without_processing_time(body: &Value) -> Value {
    let mut data = body["data"].clone();
    data.as_object_mut().unwrap().remove("processing_time");
    data
}

#[tokio::test]
async fn the_same_bytes_give_the_same_data_on_every_call_and_server() {
    let mut c = config();
    c.catalogue = catalogue(ALL_PROFILES);
    let a = spawn(c.clone()).await;
    let b = spawn(c).await;
    let bytes = video_bytes("determinism");
    for model in ["SIGLIP-LSTM-V4", "EFFICIENTNET-B7-V1", "LIP-FD-V1"] {
        let (_, first) = a.analyze_json(form("x.mp4", bytes.clone(), Some(model))).await;
        let (_, second) = a.analyze_json(form("renamed.mov", bytes.clone(), Some(model))).await;
        let (_, other_server) = b.analyze_json(form("x.mp4", bytes.clone(), Some(model))).await;
        assert_eq!(without_processing_time(&first), without_processing_time(&second), "{model}");
        assert_eq!(without_processing_time(&first), without_processing_time(&other_server), "{model}");
    }
    let (_, audio1) = a.analyze_json(form("x.wav", bytes.clone(), Some("SCATTERING-WAVE-V1"))).await;
    let (_, audio2) = b.analyze_json(form("x.wav", bytes.clone(), Some("SCATTERING-WAVE-V1"))).await;
    assert_eq!(without_processing_time(&audio1), without_processing_time(&audio2));

    // Different content gives (in practice) a different verdict probability.
    let mut confidences = std::collections::HashSet::new();
    for i in 0..8 {
        let (_, body) = a.analyze_json(form("x.mp4", video_bytes(&format!("other-{i}")), None)).await;
        confidences.insert(body["data"]["confidence"].to_string());
    }
    assert!(confidences.len() > 1);
}

#[tokio::test]
async fn standin_fake_and_real_markers_force_the_verdict() {
    let s = spawn(config()).await;
    for (marker, prediction) in [("STANDIN:fake", "FAKE"), ("standin:REAL", "REAL")] {
        let mut bytes = video_bytes("marker");
        bytes.extend_from_slice(marker.as_bytes());
        for model in ["SIGLIP-LSTM-V4", "EFFICIENTNET-B7-V1"] {
            let (status, body) = s.analyze_json(form("m.mp4", bytes.clone(), Some(model))).await;
            assert_eq!(status, 200);
            assert_eq!(body["data"]["prediction"], prediction, "{marker} {model}");
            assert_eq!(body["data"]["confidence"], 0.9);
        }
    }
    // A model-scoped marker wins over an unscoped one for that model only.
    let mut bytes = video_bytes("scoped");
    bytes.extend_from_slice(b"\nSTANDIN:real\nSTANDIN:fake@efficientnet-b7-v1\n");
    let (_, siglip) = s.analyze_json(form("m.mp4", bytes.clone(), Some("SIGLIP-LSTM-V4"))).await;
    let (_, effnet) = s.analyze_json(form("m.mp4", bytes, Some("EFFICIENTNET-B7-V1"))).await;
    assert_eq!(siglip["data"]["prediction"], "REAL");
    assert_eq!(effnet["data"]["prediction"], "FAKE");
}

#[tokio::test]
async fn full_heatmaps_have_one_cell_per_pixel_of_the_uploaded_image() {
    const CATALOGUE: &str = r#"[
      {"name":"FULL-HEATMAP","profile":"image-heatmap","isImage":true,"full_heatmap":true},
      {"name":"IMAGE-HEATMAP-V1","profile":"image-heatmap","isImage":true},
      {"name":"CROSS-EFFICIENT-VIT-IMG","profile":"image-generic","isImage":true}
    ]"#;
    let png = png_bytes(320, 200);
    let mut c = config();
    c.catalogue = catalogue(CATALOGUE);
    let s = spawn(c).await;
    let call = |model: &'static str, s: &common::Standin| {
        let png = png.clone();
        let s = s.base.clone();
        async move {
            let response = common::client()
                .post(format!("{s}/analyze"))
                .header("X-API-Key", common::KEY)
                .multipart(form("p.png", png, Some(model)))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };

    // The catalogue asks for it for one model only.
    let full = call("FULL-HEATMAP", &s).await;
    assert_eq!(full["data"]["dimensions"], json!({"width": 320, "height": 200}));
    assert_grid(&full["data"]["heatmap_scores"], 200, 320, 0.0..=1.0);
    let again = call("FULL-HEATMAP", &s).await;
    assert_eq!(again["data"]["heatmap_scores"], full["data"]["heatmap_scores"]);
    let small = call("IMAGE-HEATMAP-V1", &s).await;
    assert_grid(&small["data"]["heatmap_scores"], 8, 8, 0.0..=1.0);

    // `--full-heatmaps` asks for it for every image-heatmap model; the draw is the same one, so
    // the first cells of the full heatmap are the 8 × 8 heatmap's first row.
    let mut c = config();
    c.catalogue = catalogue(CATALOGUE);
    c.full_heatmaps = true;
    let everywhere = spawn(c).await;
    let body = call("IMAGE-HEATMAP-V1", &everywhere).await;
    let rows = body["data"]["heatmap_scores"].as_array().unwrap();
    assert_grid(&body["data"]["heatmap_scores"], 200, 320, 0.0..=1.0);
    assert_eq!(rows[0].as_array().unwrap()[..8], small["data"]["heatmap_scores"][0].as_array().unwrap()[..]);
    let generic = call("CROSS-EFFICIENT-VIT-IMG", &everywhere).await;
    assert!(generic["data"]["heatmap_scores"].is_null());
}

#[tokio::test]
async fn per_frame_predictions_list_every_frame_while_the_units_stay_the_same() {
    let mut c = config();
    c.per_frame_predictions = true;
    let s = spawn(c).await;
    let (status, body) = s.analyze_json(form("v.mp4", video_bytes("per-frame"), Some("SIGLIP-LSTM-V4"))).await;
    assert_eq!(status, 200);
    let data = common_fields(&body, "SIGLIP-LSTM-V4", "video");
    assert_eq!(data["frames_analyzed"], 50);
    let predictions = data["frame_predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 300);
    assert!(predictions.iter().enumerate().all(|(i, p)| p["index"] == i && is_prob(&p["score"])));
    // Six frames per window: frames 0–5 carry window 0's score.
    assert!(predictions[..6].iter().all(|p| p["score"] == predictions[0]["score"]));
    let plain = spawn(config()).await;
    let (_, unit_body) = plain.analyze_json(form("v.mp4", video_bytes("per-frame"), Some("SIGLIP-LSTM-V4"))).await;
    assert_eq!(unit_body["data"]["frame_predictions"][1]["score"], predictions[6]["score"]);
    assert_eq!(unit_body["data"]["metrics"], data["metrics"]);
}
