//! `/analyze` rejections: exact statuses and bodies of §7.1, in the check order of §5.
#![allow(clippy::unwrap_used)]

mod common;

use common::{KEY, catalogue, client, config, form, spawn, video_bytes};
use reqwest::multipart::Form;
use serde_json::{Value, json};

async fn post(s: &common::Standin, key: Option<&str>, form: Form) -> (u16, Value) {
    let mut request = client().post(s.url("/analyze")).multipart(form);
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_missing_or_wrong_key_gives_401_before_anything_else() {
    let s = spawn(config()).await;
    let unauthorized = json!({"detail": "Invalid or missing API Key"});
    assert_eq!(post(&s, None, form("a.mp4", video_bytes("a"), None)).await, (401, unauthorized.clone()));
    assert_eq!(post(&s, Some("wrong"), form("a.mp4", video_bytes("a"), None)).await, (401, unauthorized.clone()));
    // Even a form without media is rejected for the key first.
    assert_eq!(post(&s, None, Form::new().text("model", "X")).await, (401, unauthorized));
}

#[tokio::test]
async fn a_form_without_media_gives_the_422_list_body() {
    let s = spawn(config()).await;
    let expected = json!({"detail": [
        {"type": "missing", "loc": ["body", "media"], "msg": "Field required", "input": null}
    ]});
    let no_media = Form::new().text("model", "SIGLIP-LSTM-V4").text("mediaId", "m");
    assert_eq!(post(&s, Some(KEY), no_media).await, (422, expected.clone()));
    // Not a form at all.
    let response =
        client().post(s.url("/analyze")).header("X-API-Key", KEY).json(&json!({"media": "x"})).send().await.unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(response.json::<Value>().await.unwrap(), expected);
    // `media` as a text field is a validation error too.
    let (status, body) = post(&s, Some(KEY), Form::new().text("media", "not a file")).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "media"]));
}

#[tokio::test]
async fn an_empty_file_gives_400_even_with_an_unknown_extension() {
    let s = spawn(config()).await;
    let expected = json!({"detail": "Uploaded media file is empty."});
    assert_eq!(post(&s, Some(KEY), form("a.mp4", Vec::new(), None)).await, (400, expected.clone()));
    assert_eq!(post(&s, Some(KEY), form("a.xyz", Vec::new(), Some("NOPE"))).await, (400, expected));
}

#[tokio::test]
async fn an_unknown_extension_gives_415_before_model_checks() {
    let s = spawn(config()).await;
    for name in ["clip.xyz", "noextension", "photo.webp", "song.flac"] {
        let expected = json!({"detail": format!("Could not determine media type for file '{name}'.")});
        assert_eq!(post(&s, Some(KEY), form(name, video_bytes("a"), Some("NOPE"))).await, (415, expected), "{name}");
    }
    // Extensions are case-insensitive.
    let (status, body) = post(&s, Some(KEY), form("CLIP.MP4", video_bytes("a"), None)).await;
    assert_eq!((status, &body["data"]["media_type"]), (200, &json!("video")));
}

#[tokio::test]
async fn lenient_extensions_add_the_documented_ones() {
    let mut c = config();
    c.strict_extensions = false;
    let s = spawn(c).await;
    for (name, media) in [
        ("a.webp", "image"),
        ("a.mkv", "video"),
        ("a.m4v", "video"),
        ("a.flac", "audio"),
        ("a.ogg", "audio"),
        ("a.m4a", "audio"),
    ] {
        let (status, body) = post(&s, Some(KEY), form(name, video_bytes("a"), None)).await;
        assert_eq!((status, &body["data"]["media_type"]), (200, &json!(media)), "{name}");
    }
}

#[tokio::test]
async fn model_validation_rejects_unknown_unloaded_and_unsuitable_models_with_422() {
    let mut c = config();
    c.catalogue = catalogue(
        r#"[{"name":"SIGLIP-LSTM-V4","profile":"siglip","isVideo":true},
            {"name":"SLEEPY","profile":"siglip","isVideo":true,"loaded":false}]"#,
    );
    let s = spawn(c).await;
    let detail = |text: &str| json!({"detail": text});
    assert_eq!(
        post(&s, Some(KEY), form("a.mp4", video_bytes("a"), Some("NOPE"))).await,
        (422, detail("Requested model 'NOPE' is not active or available."))
    );
    assert_eq!(
        post(&s, Some(KEY), form("a.mp4", video_bytes("a"), Some("SLEEPY"))).await,
        (422, detail("Requested model 'SLEEPY' is not active or available."))
    );
    assert_eq!(
        post(&s, Some(KEY), form("a.wav", video_bytes("a"), Some("SIGLIP-LSTM-V4"))).await,
        (422, detail("The selected model 'SIGLIP-LSTM-V4' does not support media of type 'AUDIO'."))
    );
    assert_eq!(
        post(&s, Some(KEY), form("a.png", video_bytes("a"), None)).await,
        (422, detail("No active models found that can process media of type 'IMAGE'."))
    );
    let outcomes: Vec<Value> = s.requests().await.iter().map(|e| e["outcome"].clone()).collect();
    assert_eq!(outcomes, vec![json!("422"); 4]);
}

#[tokio::test]
async fn auto_selection_uses_single_purpose_models_and_the_default() {
    let s = spawn(config()).await;
    for (name, model) in
        [("a.mp4", "SIGLIP-LSTM-V4"), ("a.wav", "SCATTERING-WAVE-V1"), ("a.png", "CROSS-EFFICIENT-VIT-IMG")]
    {
        let (status, body) = post(&s, Some(KEY), form(name, video_bytes("a"), Some(""))).await;
        assert_eq!((status, &body["model_used"]), (200, &json!(model)), "{name}");
    }
}

#[tokio::test]
async fn a_malformed_multipart_body_gives_400() {
    let s = spawn(config()).await;
    let response = client()
        .post(s.url("/analyze"))
        .header("X-API-Key", KEY)
        .header("Content-Type", "multipart/form-data; boundary=XYZ")
        .body("--XYZ\r\nContent-Disposition: form-data; name=\"media\"; filename=\"a.mp4\"\r\n\r\nabc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}
