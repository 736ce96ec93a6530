//! Contract tests for every endpoint except the analysis itself (§1–§3, §9.1, §9.8).
#![allow(clippy::unwrap_used)]

mod common;

use common::{KEY, client, config, form, spawn, video_bytes};
use serde_json::{Value, json};

fn assert_naive_utc_micros(ts: &str) {
    let parsed = chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S%.6f");
    assert!(parsed.is_ok(), "timestamp {ts}");
    assert_eq!(ts.len(), 26, "microseconds, no zone: {ts}");
    assert!(!ts.ends_with('Z'));
}

#[tokio::test]
async fn root_and_ping_answer_without_a_key() {
    let s = spawn(config()).await;
    let root: Value = client().get(s.url("/")).send().await.unwrap().json().await.unwrap();
    assert_eq!(root["status"], "ok");
    assert_eq!(root["default_model"], "SIGLIP-LSTM-V4");
    let first = &root["active_models"][0];
    assert_eq!(first["name"], "SIGLIP-LSTM-V4");
    assert_eq!(first["loaded"], true);
    assert!(first["description"].as_str().unwrap().starts_with("[simulated] "));
    let ping = client().get(s.url("/ping")).send().await.unwrap();
    assert_eq!(ping.status(), 200);
    assert_eq!(ping.json::<Value>().await.unwrap(), json!({"status": "pong"}));
}

#[tokio::test]
async fn keyed_endpoints_reject_a_missing_or_wrong_key_with_401() {
    let s = spawn(config()).await;
    for path in ["/stats", "/models", "/device", "/system", "/config", "/__standin/requests"] {
        for key in [None, Some("wrong")] {
            let mut request = client().get(s.url(path));
            if let Some(key) = key {
                request = request.header("X-API-Key", key);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{path} with key {key:?}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body, json!({"detail": "Invalid or missing API Key"}));
        }
    }
    let reset = client().post(s.url("/__standin/reset")).send().await.unwrap();
    assert_eq!(reset.status(), 401);
}

#[tokio::test]
async fn stats_describes_the_simulated_server_and_its_models_in_order() {
    let s = spawn(config()).await;
    let stats = s.get_json("/stats").await;
    assert_eq!(stats["service_name"], "Drishtiksha ML stand-in (simulated results)");
    assert_eq!(stats["status"], "running");
    assert!(stats["uptime_seconds"].is_f64());
    assert_eq!(stats["device_info"]["type"], "cpu");
    assert_eq!(stats["device_info"]["name"], "ML stand-in (no inference)");
    assert!(stats["device_info"]["cuda_version"].is_null());
    assert!(stats["system_info"]["cpu_count"].is_u64());
    assert!(stats["system_info"]["python_version"].is_string());
    assert_eq!(stats["active_models_count"], 5);
    assert_eq!(stats["total_models_count"], 5);
    assert_eq!(stats["configuration"]["default_model"], "SIGLIP-LSTM-V4");
    let models = stats["models_info"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["SIGLIP-LSTM-V4", "EFFICIENTNET-B7-V1", "LIP-FD-V1", "SCATTERING-WAVE-V1", "CROSS-EFFICIENT-VIT-IMG"]
    );
    let lipfd = &models[2];
    let keys: Vec<&str> = lipfd.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "name",
            "class_name",
            "description",
            "loaded",
            "device",
            "model_path",
            "isAudio",
            "isVideo",
            "isImage",
            "isMultiModal",
            "memory_usage_mb",
            "load_time",
            "inference_count"
        ]
    );
    assert_eq!(lipfd["class_name"], "LipFDetectorV1");
    assert_eq!(
        (&lipfd["isVideo"], &lipfd["isAudio"], &lipfd["isImage"], &lipfd["isMultiModal"]),
        (&json!(true), &json!(true), &json!(false), &json!(true))
    );
    assert!(lipfd["memory_usage_mb"].is_null() && lipfd["load_time"].is_null());
    assert_eq!(lipfd["inference_count"], 0);
}

#[tokio::test]
async fn models_device_system_and_config_return_their_objects() {
    let s = spawn(config()).await;
    let models = s.get_json("/models").await;
    assert_eq!(models["models"].as_array().unwrap().len(), 5);
    assert_eq!(models["summary"]["total_configured"], 5);
    assert_eq!(models["summary"]["currently_loaded"], 5);
    assert_eq!(models["summary"]["active_models"][0], "SIGLIP-LSTM-V4");
    assert_eq!(models["summary"]["loaded_models"].as_array().unwrap().len(), 5);
    let stats = s.get_json("/stats").await;
    assert_eq!(s.get_json("/device").await, stats["device_info"]);
    assert_eq!(s.get_json("/system").await["cpu_count"], stats["system_info"]["cpu_count"]);
    assert_eq!(s.get_json("/config").await["default_model"], "SIGLIP-LSTM-V4");
}

#[tokio::test]
async fn unknown_routes_give_404_and_wrong_methods_405_with_json_details() {
    let s = spawn(config()).await;
    let missing = client().get(s.url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap(), json!({"detail": "Not Found"}));
    let docs = client().get(s.url("/health/live")).send().await.unwrap();
    assert_eq!(docs.status(), 404);
    let wrong = client().get(s.url("/analyze")).header("X-API-Key", KEY).send().await.unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.json::<Value>().await.unwrap(), json!({"detail": "Method Not Allowed"}));
    let wrong = client().post(s.url("/stats")).send().await.unwrap();
    assert_eq!(wrong.status(), 405);
}

#[tokio::test]
async fn a_trailing_slash_answers_307_to_the_exact_path() {
    let s = spawn(config()).await;
    let response = client()
        .post(s.url("/analyze/"))
        .header("X-API-Key", KEY)
        .multipart(form("a.mp4", video_bytes("x"), None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
    let location = response.headers()["location"].to_str().unwrap();
    assert_eq!(location, s.url("/analyze"));
    let stats = client().get(s.url("/stats/")).send().await.unwrap();
    assert_eq!(stats.status(), 307);
}

#[tokio::test]
async fn the_correlation_id_is_echoed_or_generated() {
    let s = spawn(config()).await;
    let echoed =
        client().get(s.url("/ping")).header("X-Correlation-ID", "run-1:SIGLIP-LSTM-V4:1").send().await.unwrap();
    assert_eq!(echoed.headers()["x-correlation-id"], "run-1:SIGLIP-LSTM-V4:1");
    let generated = client().get(s.url("/nope")).send().await.unwrap();
    let id = generated.headers()["x-correlation-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let rejected = client().post(s.url("/analyze")).header("X-Correlation-ID", "c-9").send().await.unwrap();
    assert_eq!(rejected.status(), 401);
    assert_eq!(rejected.headers()["x-correlation-id"], "c-9");
}

#[tokio::test]
async fn the_request_log_records_calls_and_reset_clears_it() {
    let s = spawn(config()).await;
    let bytes = video_bytes("logged");
    let form = common::form_for("m1.mp4", bytes.clone(), "SIGLIP-LSTM-V4", "m1", Some("u1"));
    let (status, body) = s.analyze_json(form).await;
    assert_eq!(status, 200);
    assert_naive_utc_micros(body["timestamp"].as_str().unwrap());
    let (status, _) = s.analyze_json(common::form("bad.xyz", bytes.clone(), None)).await;
    assert_eq!(status, 415);

    let log = s.requests().await;
    assert_eq!(log.len(), 2);
    let first = &log[0];
    let keys: Vec<&str> = first.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["at", "model", "modelUsed", "mediaId", "userId", "filename", "size", "sha256", "status", "outcome"]
    );
    assert_naive_utc_micros(first["at"].as_str().unwrap());
    assert_eq!(first["model"], "SIGLIP-LSTM-V4");
    assert_eq!(first["modelUsed"], "SIGLIP-LSTM-V4");
    assert_eq!(first["mediaId"], "m1");
    assert_eq!(first["userId"], "u1");
    assert_eq!(first["filename"], "m1.mp4");
    assert_eq!(first["size"], bytes.len());
    use sha2::Digest;
    assert_eq!(first["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(first["status"], 200);
    assert_eq!(first["outcome"], "ok");
    assert_eq!(log[1]["status"], 415);
    assert_eq!(log[1]["outcome"], "415");
    assert!(log[1]["modelUsed"].is_null());

    let stats = s.get_json("/stats").await;
    assert_eq!(stats["models_info"][0]["inference_count"], 1);

    let reset = client().post(s.url("/__standin/reset")).header("X-API-Key", KEY).send().await.unwrap();
    assert_eq!(reset.status(), 204);
    assert!(s.requests().await.is_empty());
}

#[tokio::test]
async fn the_catalogue_can_be_replaced_at_run_time_in_json_or_toml() {
    let s = spawn(config()).await;
    let put = |body: &'static str, content_type: &'static str| {
        client()
            .put(s.url("/__standin/catalogue"))
            .header("X-API-Key", KEY)
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    let response =
        put(r#"{"models":[{"name":"ONLY-IMG","profile":"image-heatmap","isImage":true}]}"#, "application/json")
            .await
            .unwrap();
    assert_eq!(response.status(), 204);
    let models = s.get_json("/models").await;
    assert_eq!(models["summary"]["active_models"], json!(["ONLY-IMG"]));
    assert_eq!(s.get_json("/").await["default_model"], "ONLY-IMG");

    let toml = "[[models]]\nname = \"T\"\nprofile = \"siglip\"\nisVideo = true\nloaded = false\n";
    let response = put(toml, "application/toml").await.unwrap();
    assert_eq!(response.status(), 204);
    let stats = s.get_json("/stats").await;
    assert_eq!(stats["models_info"][0]["loaded"], false);
    assert_eq!(stats["active_models_count"], 0);
    assert_eq!(stats["total_models_count"], 1);

    let response = put("[]", "application/json").await.unwrap();
    assert_eq!(response.status(), 422);
    assert!(response.json::<Value>().await.unwrap()["detail"].is_string());
}
