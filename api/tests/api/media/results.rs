//! Bounded payloads, the full-result endpoint, and the ML server's artifacts copied into our
//! storage (local and S3), through the whole pipeline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use drishtiksha_common::payload::{MAX_HEATMAP_SIDE, MAX_PAYLOAD_BYTES};
use drishtiksha_common::storage::Storage;
use drishtiksha_testkit::{S3Server, s3_object_keys, unique_bucket};
use futures::FutureExt;
use serde_json::Value;

use super::pipeline::Pipeline;
use crate::support::file_part;

const HEATMAP_CATALOGUE: &str = r#"[{"name": "HEATMAP-4K", "class_name": "H", "description": "h", "isImage": true,
  "profile": "image-heatmap", "full_heatmap": true, "latency_ms": 0}]"#;
const AUDIO_CATALOGUE: &str = r#"[{"name": "WAVE-ART", "class_name": "W", "description": "w", "isAudio": true,
  "profile": "scattering", "latency_ms": 0}]"#;

fn ffmpeg(args: &[&str], ext: &str) -> Vec<u8> {
    let path = std::env::temp_dir().join(format!("results-{}.{ext}", uuid::Uuid::new_v4()));
    let ok = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error"])
        .args(args)
        .arg(&path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ffmpeg failed");
    let bytes = std::fs::read(&path).expect("file");
    let _ = std::fs::remove_file(path);
    bytes
}

async fn upload(p: &Pipeline, token: &str, name: &str, mime: &str, bytes: Vec<u8>) -> Value {
    let form = reqwest::multipart::Form::new().part("media", file_part(name, mime, bytes));
    let r = p.api.upload_form(token, form).await;
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.expect("json")["data"].clone()
}

fn analyzed(m: &Value) -> bool {
    matches!(m["status"].as_str(), Some("ANALYZED" | "FAILED" | "CANCELLED"))
}

#[tokio::test]
async fn a_4k_heatmap_is_bounded_in_media_responses_and_whole_at_the_result_endpoint() {
    let p = Pipeline::start_with(0.0, Some(HEATMAP_CATALOGUE), HashMap::new(), None).await;
    let (_, token) = p.api.new_user().await;
    let png = ffmpeg(&["-f", "lavfi", "-i", "color=c=gray:s=3840x2160", "-frames:v", "1"], "png");
    let media = upload(&p, &token, "uhd.png", "image/png", png).await;
    let id = media["id"].as_str().expect("id").to_string();
    let done = p.wait_for_media(&token, &id, Duration::from_secs(120), analyzed).await;
    assert_eq!(done["status"], "ANALYZED", "{done}");

    let detail =
        p.api.http.get(p.api.url(&format!("/api/v1/media/{id}"))).bearer_auth(&token).send().await.expect("get");
    let detail_bytes = detail.bytes().await.expect("body");
    assert!(detail_bytes.len() < MAX_PAYLOAD_BYTES, "GET /media/:id is {} bytes", detail_bytes.len());
    let detail: Value = serde_json::from_slice(&detail_bytes).expect("json");
    let analysis = &detail["data"]["analysisRuns"][0]["analyses"][0];
    let payload = &analysis["resultPayload"];
    let rows = payload["heatmap_scores"].as_array().expect("heatmap rows");
    assert_eq!(rows.len(), MAX_HEATMAP_SIDE);
    assert!(rows.iter().all(|r| r.as_array().is_some_and(|c| c.len() == MAX_HEATMAP_SIDE)));
    assert_eq!(payload["heatmap_scores_downsampled"], true);
    assert_eq!(payload["heatmap_scores_full_shape"], serde_json::json!({"height": 2160, "width": 3840}));
    assert_eq!(payload["dimensions"], serde_json::json!({"width": 3840, "height": 2160}));
    // The list and the run carry the same bounded payload.
    let list = p.api.http.get(p.api.url("/api/v1/media")).bearer_auth(&token).send().await.expect("list");
    assert!(list.bytes().await.expect("body").len() < MAX_PAYLOAD_BYTES);
    let run_id = detail["data"]["analysisRuns"][0]["id"].as_str().expect("run");
    let (status, run) = p.api.get(&format!("/api/v1/media/{id}/runs/{run_id}"), &token).await;
    assert_eq!(status, 200);
    assert_eq!(run["data"]["analyses"][0]["resultPayload"], *payload);

    // The full result: the kept answer, byte for byte.
    let analysis_id = analysis["id"].as_str().expect("analysis id");
    let full = p
        .api
        .http
        .get(p.api.url(&format!("/api/v1/media/{id}/analyses/{analysis_id}/result")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("result");
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["x-result-source"], "ml-server");
    let full = full.bytes().await.expect("body");
    let kept = std::fs::read(p.api.storage_dir.join(format!("results/{run_id}/HEATMAP-4K.json"))).expect("kept answer");
    assert!(full == kept, "the result endpoint must serve the kept answer unchanged");
    let full: Value = serde_json::from_slice(&full).expect("json");
    let heatmap = full["data"]["heatmap_scores"].as_array().expect("full heatmap");
    assert_eq!(heatmap.len(), 2160);
    assert!(heatmap.iter().all(|r| r.as_array().is_some_and(|c| c.len() == 3840)));
    println!(
        "| GET /media/:id bytes, 4K heatmap | before {} (full result) | after {} |",
        kept.len(),
        detail_bytes.len()
    );

    // Someone else's analysis does not exist for them.
    let (_, other) = p.api.new_user().await;
    let r = p
        .api
        .http
        .get(p.api.url(&format!("/api/v1/media/{id}/analyses/{analysis_id}/result")))
        .bearer_auth(&other)
        .send()
        .await
        .expect("result");
    assert_eq!(r.status(), 404);
    p.stop().await;
}

/// Stands in front of the stand-in like a real ML server with `ASSETS_BASE_URL`: every audio
/// result names a spectrogram this server serves.
fn spectrogram_front(standin: SocketAddr) -> futures::future::BoxFuture<'static, SocketAddr> {
    async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let me = listener.local_addr().expect("addr");
        let client = reqwest::Client::new();
        let app = Router::new()
            .route(
                "/media/visualizations/{name}",
                axum::routing::get(|| async { ([(header::CONTENT_TYPE, "image/png")], spectrogram_png()) }),
            )
            .fallback(move |req: Request| forward(client.clone(), standin, me, req));
        tokio::spawn(async move { axum::serve(listener, app).await });
        me
    }
    .boxed()
}

fn spectrogram_png() -> Vec<u8> {
    static PNG: std::sync::LazyLock<Vec<u8>> =
        std::sync::LazyLock::new(|| drishtiksha_testkit::png_with_marker("spectrogram"));
    PNG.clone()
}

async fn forward(client: reqwest::Client, standin: SocketAddr, me: SocketAddr, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("body");
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut rb = client.request(parts.method.clone(), format!("http://{standin}{path}")).body(bytes);
    for (k, v) in &parts.headers {
        if k != header::HOST && k != header::CONTENT_LENGTH {
            rb = rb.header(k, v);
        }
    }
    let resp = rb.send().await.expect("stand-in");
    let status = resp.status();
    let mut text = resp.text().await.expect("text");
    if path.starts_with("/analyze") {
        text = text.replace(
            r#""spectrogram_url":null"#,
            &format!(r#""spectrogram_url":"http://{me}/media/visualizations/spec.png""#),
        );
    }
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// Runs an audio file through a model whose result names a spectrogram; returns (pipeline,
/// token, media id, run id, the stored spectrogram URL).
async fn analyzed_audio(extra: HashMap<String, String>) -> (Pipeline, String, String, String, String) {
    let p = Pipeline::start_with(0.0, Some(AUDIO_CATALOGUE), extra, Some(spectrogram_front)).await;
    let (_, token) = p.api.new_user().await;
    let wav = ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=1"], "wav");
    let media = upload(&p, &token, "voice.wav", "audio/wav", wav).await;
    let id = media["id"].as_str().expect("id").to_string();
    let done = p.wait_for_media(&token, &id, Duration::from_secs(60), analyzed).await;
    assert_eq!(done["status"], "ANALYZED", "{done}");
    let run = done["analysisRuns"][0]["id"].as_str().expect("run").to_string();
    let url = done["analysisRuns"][0]["analyses"][0]["resultPayload"]["visualization"]["spectrogram_url"]
        .as_str()
        .expect("spectrogram url")
        .to_string();
    let prefix = format!("http://files.example.test:3000/media/results/{run}/artifacts/WAVE-ART/");
    assert!(url.starts_with(&prefix), "stored URL is not ours: {url}");
    (p, token, id, run, url)
}

#[tokio::test]
async fn a_results_spectrogram_is_copied_into_local_storage_served_by_us_and_deleted_with_the_media() {
    let (p, token, id, run, url) = analyzed_audio(HashMap::new()).await;
    let key = url.split_once("/media/").expect("key").1.to_string();
    let file = p.api.storage_dir.join(&key);
    assert_eq!(std::fs::read(&file).expect("copied artifact"), spectrogram_png());
    let served = p.api.http.get(p.api.url(&format!("/media/{key}"))).send().await.expect("get");
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.expect("bytes").as_ref(), spectrogram_png().as_slice());
    // The kept answer itself is not public.
    let kept = p.api.http.get(p.api.url(&format!("/media/results/{run}/WAVE-ART.json"))).send().await.expect("get");
    assert_eq!(kept.status(), 404);

    let (status, _) = p.api.delete(&format!("/api/v1/media/{id}"), &token).await;
    assert_eq!(status, 200);
    assert!(!file.exists(), "the artifact survived its media");
    assert!(!p.api.storage_dir.join(format!("results/{run}")).exists(), "the run's results survived its media");
    p.stop().await;
}

#[tokio::test]
async fn a_results_spectrogram_is_copied_into_s3_and_deleted_with_the_media() {
    let server = S3Server::start().await.expect("s3 server");
    let bucket = unique_bucket();
    let (p, token, id, run, url) = analyzed_audio(server.env(&bucket)).await;
    let store = server.storage(&bucket).await.expect("store");
    let Storage::S3(s3) = &store else { unreachable!("s3 store") };
    let key = url.split_once("/media/").expect("key").1.to_string();
    let objects = s3_object_keys(s3).await.expect("objects");
    assert!(objects.contains(&format!("media/{key}")), "{objects:?}");
    assert_eq!(store.read_all(&key, 1 << 20).await.expect("artifact"), spectrogram_png());
    // Our URL stays stable; the object store serves the bytes.
    let served = p.api.http.get(p.api.url(&format!("/media/{key}"))).send().await.expect("get");
    assert_eq!(served.status(), 307);

    let (status, _) = p.api.delete(&format!("/api/v1/media/{id}"), &token).await;
    assert_eq!(status, 200);
    let left: Vec<String> = s3_object_keys(s3)
        .await
        .expect("objects")
        .into_iter()
        .filter(|k| k.starts_with(&format!("media/results/{run}")))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "results survived their media");
    p.stop().await;
}
