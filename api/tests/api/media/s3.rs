//! Uploads, URLs, deletion and clean-up with `STORAGE_PROVIDER=s3`, against an S3-compatible
//! server on loopback.

use std::time::Duration;

use bytes::Bytes;
use drishtiksha_common::storage::{S3_PART_SIZE, Storage};
use drishtiksha_testkit::{S3Server, eventually, s3_object_keys, s3_pending_multipart, unique_bucket};

use crate::support::{Temporal, TestApp, assert_error, body, png_bytes};

struct S3Api {
    api: TestApp,
    store: Storage,
    server: S3Server,
}

impl S3Api {
    async fn spawn(extra: &[(&str, &str)], max_upload_bytes: Option<u64>) -> Self {
        let server = S3Server::start().await.expect("s3 server");
        let bucket = unique_bucket();
        let mut builder =
            TestApp::builder().temporal(Temporal::Dev).envs(server.env(&bucket)).envs(extra.iter().copied());
        if let Some(limit) = max_upload_bytes {
            builder = builder.max_upload_bytes(limit);
        }
        let api = builder.spawn().await;
        let store = server.storage(&bucket).await.expect("store");
        Self { api, store, server }
    }

    async fn objects(&self) -> Vec<String> {
        let Storage::S3(s3) = &self.store else { unreachable!("s3 store") };
        s3_object_keys(s3).await.expect("list objects")
    }

    async fn pending_multipart(&self) -> usize {
        let Storage::S3(s3) = &self.store else { unreachable!("s3 store") };
        s3_pending_multipart(s3).await.expect("list uploads")
    }

    /// Nothing of a rejected upload is left: no row, no object, no multipart upload.
    async fn assert_nothing_stored(&self) {
        assert_eq!(self.api.count("media").await, 0, "a media row was created");
        assert_eq!(self.api.count("analysis_runs").await, 0, "a run was created");
        eventually(Duration::from_secs(10), || async { (self.pending_multipart().await == 0).then_some(()) })
            .await
            .expect("multipart uploads were left behind");
        assert_eq!(self.objects().await, Vec::<String>::new(), "objects were left in the bucket");
    }
}

#[tokio::test]
async fn an_upload_is_stored_as_an_object_and_served_by_a_fresh_presigned_url() {
    let s = S3Api::spawn(&[("S3_PRESIGN_TTL", "10m")], None).await;
    let (_, token) = s.api.new_user().await;
    let media = s.api.upload_png(&token).await;
    let id = media["id"].as_str().expect("id");
    let key = media["publicId"].as_str().expect("key");
    assert_eq!(key, format!("images/{id}.png"));
    assert_eq!(s.objects().await, [format!("media/{key}")]);
    assert_eq!(s.store.size(key).await.expect("size"), png_bytes().len() as u64);

    // Every read of the media signs its URL anew; the URL fetches exactly the uploaded bytes.
    let (status, v) = s.api.get(&format!("/api/v1/media/{id}"), &token).await;
    assert_eq!(status, 200, "{v}");
    let url = v["data"]["url"].as_str().expect("url");
    assert!(url.contains(&format!("/media/{key}?")) && url.contains("X-Amz-Expires=600"), "{url}");
    assert!(!url.contains("/upload/"), "the frontend treats /upload/ URLs as Cloudinary's: {url}");
    let got = reqwest::get(url).await.expect("get");
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.expect("body").as_ref(), png_bytes().as_slice());
    let (_, list) = s.api.get("/api/v1/media", &token).await;
    assert!(list["data"][0]["url"].as_str().expect("url").contains("X-Amz-Signature="), "{list}");

    // The api serves no files itself with S3 storage.
    let r = s.api.http.get(s.api.url(&format!("/media/{key}"))).send().await.expect("get");
    assert_eq!(r.status(), 404);

    // Deleting the media deletes the object.
    let (status, _) = s.api.delete(&format!("/api/v1/media/{id}"), &token).await;
    assert_eq!(status, 200);
    assert_eq!(s.objects().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_public_base_url_is_used_instead_of_presigning() {
    let s = S3Api::spawn(&[("S3_PUBLIC_BASE_URL", "https://cdn.example.com")], None).await;
    let (_, token) = s.api.new_user().await;
    let media = s.api.upload_png(&token).await;
    let key = media["publicId"].as_str().expect("key");
    assert_eq!(media["url"], format!("https://cdn.example.com/media/{key}"));
}

#[tokio::test]
async fn a_large_upload_goes_up_in_parts_and_arrives_whole() {
    let s = S3Api::spawn(&[], None).await;
    let (_, token) = s.api.new_user().await;
    let mut bytes = png_bytes();
    // Trailing bytes after the image end; the file is stored unchanged.
    bytes.extend((0..(2 * S3_PART_SIZE + 4321)).map(|i| (i % 251) as u8));
    let r = s.api.upload(&token, "big.png", "image/png", bytes.clone(), None).await;
    let (status, v) = body(r).await;
    assert_eq!(status, 202, "{v}");
    let key = v["data"]["publicId"].as_str().expect("key");
    assert_eq!(v["data"]["size"], bytes.len() as u64);
    let stored: Vec<Bytes> =
        futures::TryStreamExt::try_collect(s.store.read_stream(key).await.expect("stream")).await.expect("read");
    assert!(stored.concat() == bytes, "the object differs from the upload");
    assert_eq!(s.pending_multipart().await, 0);
}

#[tokio::test]
async fn an_upload_over_the_limit_aborts_its_multipart_upload() {
    let limit = (S3_PART_SIZE + S3_PART_SIZE / 2) as u64;
    let s = S3Api::spawn(&[], Some(limit)).await;
    let (_, token) = s.api.new_user().await;
    // Over one part has been sent when the limit is crossed.
    let r = s.api.upload(&token, "big.png", "image/png", vec![7u8; 2 * S3_PART_SIZE], None).await;
    let (status, v) = body(r).await;
    assert_eq!(status, 413);
    assert_error(&v, 413, "File too large. The maximum size is 12 MB.", &[]);
    s.assert_nothing_stored().await;
}

#[tokio::test]
async fn a_client_that_disconnects_mid_upload_leaves_no_parts_behind() {
    let s = S3Api::spawn(&[], None).await;
    let (_, token) = s.api.new_user().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let boundary = "----cut-off";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"gone.png\"\r\nContent-Type: image/png\r\n\r\n"
    );
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let request = s
        .api
        .http
        .post(s.api.url("/api/v1/media"))
        .bearer_auth(&token)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let store = &s;
    let sender = async move {
        tx.send(Ok(Bytes::from(head))).await.expect("head");
        let chunk = Bytes::from(vec![3u8; 1 << 20]);
        for _ in 0..(S3_PART_SIZE / (1 << 20) + 3) {
            tx.send(Ok(chunk.clone())).await.expect("chunk");
        }
        // Wait until the api has started a multipart upload, then go away mid-body.
        eventually(Duration::from_secs(30), || async { (store.pending_multipart().await > 0).then_some(()) })
            .await
            .expect("a multipart upload in progress");
        tx.send(Err(std::io::Error::other("client went away"))).await.expect("error");
    };
    let (result, ()) = tokio::join!(request, sender);
    assert!(result.is_err() || result.is_ok_and(|r| r.status() == 400));
    s.assert_nothing_stored().await;
}

#[tokio::test]
async fn ready_names_the_object_store_when_it_is_down() {
    let S3Api { api, server, .. } = S3Api::spawn(&[], None).await;
    let (status, v) = body(api.http.get(api.url("/api/ready")).send().await.expect("ready")).await;
    assert_eq!((status, &v["checks"]["storage"]), (200, &serde_json::json!("ok")), "{v}");
    drop(server);
    let (status, v) = body(api.http.get(api.url("/api/ready")).send().await.expect("ready")).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["checks"]["storage"], "unavailable");
    assert_eq!(v["checks"]["postgres"], "ok");
}
