//! The REST half of the public API (`docs/contract.md` §1–§5): envelopes in, one-line errors out.

use std::path::Path;

use futures::TryStreamExt as _;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

/// Everything that ends a command with exit status 2: bad usage, no connection, a refusal by the
/// server. Printed as one line: the server's message, then a hint.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub hint: Option<String>,
    /// The HTTP status when the server answered.
    pub status: Option<u16>,
}

impl CliError {
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { message: message.into(), hint: Some(hint.into()), status: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// Longest wait for an answer to a small request (uploads and downloads have none: they can be
/// large; a media deletion may wait up to 5 s for its workflows).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A client of one server, with or without a token.
#[derive(Clone)]
pub struct Api {
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
}

impl Api {
    pub fn new(base: Url, token: Option<String>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("drishtiksha-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| CliError::usage(format!("cannot create an HTTP client: {e}"), "report this as a bug"))?;
        Ok(Self { base, http, token })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn url(&self, path: &str) -> Url {
        // Paths are absolute (`/api/v1/...`); a base with a path prefix keeps it.
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{prefix}{path}"));
        url
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, self.url(path));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    fn connection_error(&self, e: &reqwest::Error) -> CliError {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "the connection failed"
        };
        CliError {
            message: format!("cannot reach the server at {}: {what}", self.base),
            hint: Some("is it running (`make run`)? Pass --server URL or set DRISHTIKSHA_SERVER".into()),
            status: None,
        }
    }

    /// Sends a request and returns the envelope's `data`.
    async fn send(&self, req: RequestBuilder) -> Result<Value> {
        let resp = req.send().await.map_err(|e| self.connection_error(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.connection_error(&e))?;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            return Ok(json.map(|mut v| v["data"].take()).unwrap_or(Value::Null));
        }
        Err(api_error(status, json.as_ref(), &body))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        decode(self.send(self.request(Method::GET, path).timeout(REQUEST_TIMEOUT)).await?)
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: Option<Value>) -> Result<T> {
        let mut r = self.request(Method::POST, path).timeout(REQUEST_TIMEOUT);
        if let Some(b) = body {
            r = r.json(&b);
        }
        decode(self.send(r).await?)
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, path).timeout(REQUEST_TIMEOUT)).await.map(drop)
    }

    /// `GET` of a route that is not enveloped (`/api/ready`): the status and the JSON body.
    pub async fn get_raw(&self, path: &str) -> Result<(u16, Value)> {
        let req = self.request(Method::GET, path).timeout(REQUEST_TIMEOUT);
        let resp = req.send().await.map_err(|e| self.connection_error(&e))?;
        let status = resp.status().as_u16();
        let v = resp.json().await.unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// Streams `path` as the `media` part of an upload; `progress` is told every chunk's size.
    pub async fn upload(
        &self,
        path: &Path,
        mime: &str,
        description: Option<&str>,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<Value> {
        let io = |e: std::io::Error| CliError::usage(format!("cannot read {}: {e}", path.display()), "check the path");
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let len = file.metadata().await.map_err(io)?.len();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let stream = tokio_util::io::ReaderStream::new(file).inspect_ok(move |chunk| progress(chunk.len() as u64));
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
            .file_name(name)
            .mime_str(mime)
            .map_err(|e| CliError::usage(format!("bad MIME type {mime}: {e}"), "report this as a bug"))?;
        let mut form = reqwest::multipart::Form::new().part("media", part);
        if let Some(d) = description {
            form = form.text("description", d.to_string());
        }
        self.send(self.request(Method::POST, "/api/v1/media").multipart(form)).await
    }

    /// Downloads a binary response: its `Content-Disposition` file name and its bytes.
    pub async fn download(&self, path: &str) -> Result<(Option<String>, Vec<u8>)> {
        let resp = self.request(Method::GET, path).send().await.map_err(|e| self.connection_error(&e))?;
        let status = resp.status();
        let filename = resp
            .headers()
            .get(reqwest::header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("filename=").nth(1))
            .map(|f| f.trim_matches('"').to_string());
        let body = resp.bytes().await.map_err(|e| self.connection_error(&e))?;
        if !status.is_success() {
            let json: Option<Value> = serde_json::from_slice(&body).ok();
            return Err(api_error(status, json.as_ref(), &body));
        }
        Ok((filename, body.to_vec()))
    }
}

fn decode<T: DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| CliError {
        message: format!("the server's answer was not understood: {e}"),
        hint: Some("is --server pointing at a Drishtiksha backend of this version?".into()),
        status: None,
    })
}

/// The error envelope (§1.3) as one line, with a hint chosen by status.
fn api_error(status: StatusCode, json: Option<&Value>, raw: &[u8]) -> CliError {
    let message = json.and_then(|v| v["message"].as_str()).map(str::to_string).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        if text.is_empty() || text.len() > 200 { format!("the server answered {status}") } else { text.to_string() }
    });
    let details: Vec<&str> = json
        .and_then(|v| v["errors"].as_array())
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let message = if details.is_empty() { message } else { format!("{message}: {}", details.join("; ")) };
    let hint = match status.as_u16() {
        401 => Some("log in again with `drishtiksha login`"),
        403 => Some("this needs an ADMIN account"),
        404 => Some("`drishtiksha list` shows your media and their ids"),
        413 | 415 => Some(
            "videos mp4 m4v webm mov avi mkv, images jpg png webp gif, audio mp3 wav ogg m4a; at most the server's size limit",
        ),
        429 => Some("wait a little and try again"),
        500..=599 => Some("the server is having trouble; `drishtiksha status` shows its health"),
        _ => None,
    };
    CliError { message, hint: hint.map(str::to_string), status: Some(status.as_u16()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_error_envelope_becomes_the_message_with_its_details_and_a_hint() {
        let v = json!({"statusCode": 400, "success": false, "message": "Validation failed", "errors": ["Uploaded file is empty."]});
        let e = api_error(StatusCode::BAD_REQUEST, Some(&v), b"");
        assert_eq!(e.to_string(), "Validation failed: Uploaded file is empty.");
        let v = json!({"message": "Invalid access token.", "errors": []});
        let e = api_error(StatusCode::UNAUTHORIZED, Some(&v), b"");
        assert_eq!(e.to_string(), "Invalid access token. (hint: log in again with `drishtiksha login`)");
    }

    #[test]
    fn a_non_json_error_body_is_shown_when_short() {
        let e = api_error(StatusCode::BAD_GATEWAY, None, b"upstream down");
        assert!(e.to_string().starts_with("upstream down (hint:"));
        let e = api_error(StatusCode::BAD_GATEWAY, None, b"");
        assert!(e.to_string().starts_with("the server answered 502 Bad Gateway"));
    }

    #[test]
    fn paths_keep_a_base_prefix() {
        let api = Api::new(Url::parse("https://example.org/drishtiksha/").expect("url"), None).expect("api");
        assert_eq!(api.url("/api/v1/media").as_str(), "https://example.org/drishtiksha/api/v1/media");
        let api = Api::new(Url::parse("http://127.0.0.1:3000").expect("url"), None).expect("api");
        assert_eq!(api.url("/api/v1/media").as_str(), "http://127.0.0.1:3000/api/v1/media");
    }
}
