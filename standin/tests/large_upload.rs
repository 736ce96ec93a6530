//! Large uploads are streamed: hashed and scanned as they arrive (its own test binary, so that its
//! CPU use does not overlap the timing-sensitive concurrency test).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{KEY, client, config, spawn, within};
use reqwest::multipart::{Form, Part};
use sha2::{Digest, Sha256};

#[tokio::test]
async fn a_150_mib_upload_is_streamed_and_hashed() {
    const SIZE: usize = 150 * 1024 * 1024;
    const CHUNK: usize = 1024 * 1024;
    let s = spawn(config()).await;
    let block: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let mut hasher = Sha256::new();
    for _ in 0..SIZE / CHUNK {
        hasher.update(&block);
    }
    hasher.update(b"STANDIN:fake");
    let expected = hex::encode(hasher.finalize());

    let block = Bytes::from(block);
    let chunks = (0..SIZE / CHUNK)
        .map(move |_| Ok::<Bytes, std::io::Error>(block.clone()))
        .chain(std::iter::once(Ok(Bytes::from_static(b"STANDIN:fake"))));
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let part = Part::stream_with_length(body, (SIZE + 12) as u64).file_name("big.mp4");
    let response = within(
        300,
        client()
            .post(s.url("/analyze"))
            .header("X-API-Key", KEY)
            .multipart(Form::new().part("media", part))
            .timeout(Duration::from_secs(300))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["data"]["prediction"], "FAKE");
    let log = s.requests().await;
    assert_eq!(log[0]["size"], SIZE + 12);
    assert_eq!(log[0]["sha256"], expected);
}
