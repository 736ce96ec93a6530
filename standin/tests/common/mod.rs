//! Shared helpers: an in-process stand-in on a free port, a client, form builders.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use drishtiksha_standin::catalogue::{Catalogue, Format};
use drishtiksha_standin::{Config, serve_with_shutdown};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const KEY: &str = "test-key";

/// A stand-in served in-process; stopped when dropped.
pub struct Standin {
    pub addr: SocketAddr,
    pub base: String,
    task: JoinHandle<()>,
}

impl Drop for Standin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Standin {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `POST /analyze` with the right key.
    pub async fn analyze(&self, form: Form) -> reqwest::Response {
        client()
            .post(self.url("/analyze"))
            .header("X-API-Key", KEY)
            .multipart(form)
            .send()
            .await
            .expect("analyze call completes")
    }

    /// `POST /analyze`, returning status and JSON body.
    pub async fn analyze_json(&self, form: Form) -> (u16, Value) {
        let response = self.analyze(form).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// `GET` with the right key, returning the JSON body of a 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = client().get(self.url(path)).header("X-API-Key", KEY).send().await.expect("GET completes");
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("JSON body")
    }

    /// The inspection log.
    pub async fn requests(&self) -> Vec<Value> {
        match self.get_json("/__standin/requests").await {
            Value::Array(entries) => entries,
            other => panic!("expected an array, got {other}"),
        }
    }
}

/// Defaults plus the test key and no latency.
pub fn config() -> Config {
    let mut config = Config::new(KEY);
    config.latency_scale = 0.0;
    config
}

/// Starts a stand-in on 127.0.0.1 with a free port.
pub async fn spawn(config: Config) -> Standin {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        serve_with_shutdown(config, listener, std::future::pending()).await.expect("stand-in serves");
    });
    Standin { addr, base: format!("http://{addr}"), task }
}

/// A client that never follows redirects (the backend must not) and gives up after 30 s.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// An `/analyze` form: `media` named `filename`, plus the optional text fields.
pub fn form(filename: &str, bytes: impl Into<Vec<u8>>, model: Option<&str>) -> Form {
    let mut form = Form::new().part("media", Part::bytes(bytes.into()).file_name(filename.to_owned()));
    if let Some(model) = model {
        form = form.text("model", model.to_owned());
    }
    form
}

/// [`form`] with `mediaId` and `userId` as well.
pub fn form_for(filename: &str, bytes: impl Into<Vec<u8>>, model: &str, media_id: &str, user_id: Option<&str>) -> Form {
    let mut form = form(filename, bytes, Some(model)).text("mediaId", media_id.to_owned());
    if let Some(user) = user_id {
        form = form.text("userId", user.to_owned());
    }
    form
}

/// Some bytes standing for a video (the stand-in never decodes content).
pub fn video_bytes(seed: &str) -> Vec<u8> {
    let mut bytes = b"\x00\x00\x00\x18ftypmp42".to_vec();
    bytes.extend(seed.bytes().cycle().take(4096));
    bytes
}

/// A PNG header declaring `width` × `height`.
pub fn png_bytes(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    bytes
}

/// One model per profile, flagged for the profile's media type, no latency.
pub const ALL_PROFILES: &str = r#"[
  {"name":"SIGLIP-LSTM-V4","profile":"siglip","isVideo":true},
  {"name":"EFFICIENTNET-B7-V1","profile":"efficientnet","isVideo":true},
  {"name":"COLOR-CUES-LSTM-V1","profile":"colorcues","isVideo":true},
  {"name":"EYEBLINK-CNN-LSTM-V1","profile":"eyeblink","isVideo":true},
  {"name":"CROSS-EFFICIENT-VIT-GAN","profile":"video-generic","isVideo":true},
  {"name":"LIP-FD-V1","profile":"lipfd","isVideo":true,"isAudio":true,"isMultiModal":true},
  {"name":"SCATTERING-WAVE-V1","profile":"scattering","isAudio":true},
  {"name":"AUDIO-GENERIC-V1","profile":"audio-generic","isAudio":true},
  {"name":"CROSS-EFFICIENT-VIT-IMG","profile":"image-generic","isImage":true},
  {"name":"IMAGE-HEATMAP-V1","profile":"image-heatmap","isImage":true}
]"#;

pub fn catalogue(json: &str) -> Catalogue {
    Catalogue::parse(json, Format::Json).expect("test catalogue")
}

/// Awaits `f`, failing the test if it takes longer than `secs` seconds.
pub async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f).await.expect("finished before the deadline")
}
