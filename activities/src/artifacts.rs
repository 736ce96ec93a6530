//! The ML server's artifacts become ours.
//!
//! A result can name files the ML server made (a spectrogram, a visualisation) by URL on the ML
//! server's own `ASSETS_BASE_URL`. Those only work while both services share a folder and a base
//! URL, never with S3, and they outlive the media. Before a result is recorded, every artifact URL
//! it names is fetched and copied into our storage under the run
//! (`results/<runId>/artifacts/<model>/<n>-<name>`, deleted with the media's other results), and the
//! stored result points at our copy (`<PUBLIC_BASE_URL>/media/<key>`). An artifact that cannot be
//! fetched leaves its URL as it was, flagged `<field>_unavailable: true`: never a failed analysis.

use std::sync::LazyLock;
use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;
use uuid::Uuid;

use drishtiksha_common::storage::Storage;

/// Largest artifact copied.
pub const MAX_ARTIFACT_BYTES: u64 = 64 * 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

static HTTP: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(FETCH_TIMEOUT)
        .build()
        .expect("HTTP client")
});

/// The folder of a run's copied artifacts (inside the run's results folder).
pub fn artifacts_prefix(run_id: Uuid) -> String {
    format!("{}/artifacts", drishtiksha_common::storage::results_prefix(run_id))
}

fn safe(s: &str) -> String {
    let out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    let out = out.trim_start_matches('.').to_string();
    if out.is_empty() { "artifact".to_string() } else { out.chars().take(100).collect() }
}

/// Where artifact `n` of `model` for a run is kept.
pub fn artifact_key(run_id: Uuid, model: &str, n: usize, url: &Url) -> String {
    let name = url.path_segments().and_then(|mut s| s.next_back()).filter(|s| !s.is_empty()).unwrap_or("artifact");
    format!("{}/{}/{n}-{}", artifacts_prefix(run_id), safe(model), safe(name))
}

/// Whether `key: value` names an artifact: a `…_url` or `…_path` field holding an http(s) URL.
fn artifact_url(key: &str, value: &Value) -> Option<Url> {
    if !(key.ends_with("_url") || key.ends_with("_path")) {
        return None;
    }
    let url = Url::parse(value.as_str()?).ok()?;
    matches!(url.scheme(), "http" | "https").then_some(url)
}

/// Copies the artifacts `payload` names into our storage and rewrites their URLs; returns how many
/// were copied. Looks at the top level and at `visualization`.
pub async fn adopt(storage: &Storage, public_base_url: &Url, run_id: Uuid, model: &str, payload: &mut Value) -> usize {
    let ours = format!("{}/media/", public_base_url.as_str().trim_end_matches('/'));
    let mut n = 0;
    let mut copied = 0;
    let Value::Object(top) = payload else { return 0 };
    copied += adopt_in(storage, &ours, run_id, model, top, &mut n).await;
    if let Some(Value::Object(vis)) = top.get_mut("visualization") {
        copied += adopt_in(storage, &ours, run_id, model, vis, &mut n).await;
    }
    copied
}

async fn adopt_in(
    storage: &Storage,
    ours: &str,
    run_id: Uuid,
    model: &str,
    map: &mut Map<String, Value>,
    n: &mut usize,
) -> usize {
    let found: Vec<(String, Url)> = map
        .iter()
        .filter_map(|(k, v)| artifact_url(k, v).map(|u| (k.clone(), u)))
        .filter(|(_, u)| !u.as_str().starts_with(ours))
        .collect();
    let mut copied = 0;
    for (field, url) in found {
        *n += 1;
        let key = artifact_key(run_id, model, *n, &url);
        match copy(storage, &url, &key).await {
            Ok(()) => {
                map.insert(field, Value::String(format!("{ours}{key}")));
                copied += 1;
            }
            Err(e) => {
                tracing::warn!(run_id = %run_id, model, url = %url, error = %e, "artifact not copied; its URL is kept, marked unavailable");
                map.insert(format!("{field}_unavailable"), Value::Bool(true));
            }
        }
    }
    copied
}

async fn copy(storage: &Storage, url: &Url, key: &str) -> anyhow::Result<()> {
    let mut response = HTTP.get(url.clone()).send().await?.error_for_status()?;
    if response.content_length().is_some_and(|n| n > MAX_ARTIFACT_BYTES) {
        anyhow::bail!("artifact larger than {MAX_ARTIFACT_BYTES} bytes");
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let mut upload = storage.begin_upload(key, &content_type).await?;
    let mut written = 0u64;
    let result = async {
        while let Some(chunk) = response.chunk().await? {
            written += chunk.len() as u64;
            if written > MAX_ARTIFACT_BYTES {
                anyhow::bail!("artifact larger than {MAX_ARTIFACT_BYTES} bytes");
            }
            upload.write(&chunk).await?;
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            upload.finish().await?;
            Ok(())
        }
        Err(e) => {
            upload.abort().await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn artifact_fields_are_http_urls_in_url_or_path_fields() {
        assert!(artifact_url("spectrogram_url", &json!("http://ml:8000/media/visualizations/a.png")).is_some());
        assert!(artifact_url("visualization_path", &json!("https://ml/x.mp4")).is_some());
        assert!(artifact_url("visualization_path", &json!(null)).is_none());
        assert!(artifact_url("note", &json!("http://ml/x.png")).is_none());
        assert!(artifact_url("spectrogram_url", &json!("/local/path.png")).is_none());
    }

    #[test]
    fn artifact_keys_stay_inside_the_runs_results_folder() {
        let run = Uuid::nil();
        let url = Url::parse("http://ml/media/visualizations/..%2F..%2Fetc.png").expect("url");
        let key = artifact_key(run, "SCATTERING WAVE/V1", 1, &url);
        assert!(key.starts_with(&format!("results/{run}/artifacts/SCATTERING_WAVE_V1/1-")), "{key}");
        assert!(drishtiksha_common::storage::validate_key(&key).is_ok(), "{key}");
    }

    async fn local_store() -> (Storage, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("artifacts-test-{}", Uuid::new_v4()));
        let store = drishtiksha_common::storage::LocalStorage::new(dir.clone()).await.expect("store");
        (Storage::Local(store), dir)
    }

    /// Serves `body` once as an HTTP response to whatever request comes.
    async fn serve_once(body: &'static [u8]) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes()).await.expect("head");
            conn.write_all(body).await.expect("body");
        });
        addr
    }

    #[tokio::test]
    async fn a_fetched_artifact_is_stored_under_the_run_and_its_url_becomes_ours() {
        let (store, dir) = local_store().await;
        let ml = serve_once(b"PNG-BYTES").await;
        let run = Uuid::new_v4();
        let base = Url::parse("http://api.example.test:3000/").expect("url");
        let mut payload = json!({"prediction": "REAL", "visualization": {
            "spectrogram_url": format!("http://{ml}/media/visualizations/spec.png"), "spectrogram_data": [[1.0]]}});
        assert_eq!(adopt(&store, &base, run, "WAVE", &mut payload).await, 1);
        let key = format!("results/{run}/artifacts/WAVE/1-spec.png");
        assert_eq!(payload["visualization"]["spectrogram_url"], format!("http://api.example.test:3000/media/{key}"));
        assert_eq!(store.read_all(&key, 1024).await.expect("stored"), b"PNG-BYTES");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn an_artifact_that_cannot_be_fetched_keeps_its_url_marked_unavailable() {
        let (store, dir) = local_store().await;
        // Nothing listens on a port just released.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let url = format!("http://127.0.0.1:{port}/media/visualizations/spec.png");
        let mut payload =
            json!({"prediction": "REAL", "visualization": {"spectrogram_url": url, "spectrogram_data": null}});
        let base = Url::parse("http://api.example.test:3000").expect("url");
        assert_eq!(adopt(&store, &base, Uuid::new_v4(), "WAVE", &mut payload).await, 0);
        assert_eq!(payload["visualization"]["spectrogram_url"], url.as_str());
        assert_eq!(payload["visualization"]["spectrogram_url_unavailable"], true);
        assert_eq!(payload["prediction"], "REAL");
        let _ = std::fs::remove_dir_all(dir);
    }
}
