//! `GET|HEAD /media/<key>` (§4.6).

use crate::support::{Temporal, TestApp, png_bytes};

async fn uploaded_key(api: &TestApp) -> String {
    let (_, token) = api.new_user().await;
    let media = api.upload_png(&token).await;
    media["publicId"].as_str().expect("key").to_string()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("missing header {name}"))
}

#[tokio::test]
async fn an_uploaded_file_is_served_with_its_mimetype_and_validators_without_auth() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let key = uploaded_key(&api).await;
    let r = api
        .http
        .get(api.url(&format!("/media/{key}")))
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "image/png");
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert_eq!(header(&r, "content-length"), png_bytes().len().to_string());
    assert_eq!(header(&r, "cross-origin-resource-policy"), "cross-origin");
    assert_eq!(header(&r, "access-control-allow-origin"), "http://localhost:5173");
    assert!(r.headers().get("access-control-allow-credentials").is_none());
    assert!(header(&r, "etag").starts_with('"'));
    assert!(header(&r, "last-modified").ends_with(" GMT"));
    assert!(r.headers().get("ratelimit-limit").is_none());
    assert_eq!(r.bytes().await.expect("body").to_vec(), png_bytes());

    let head = api.http.head(api.url(&format!("/media/{key}"))).send().await.expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-length"), png_bytes().len().to_string());
    assert_eq!(header(&head, "content-type"), "image/png");
    assert!(head.bytes().await.expect("body").is_empty());
}

#[tokio::test]
async fn a_single_range_is_206_and_an_unsatisfiable_one_is_416() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let key = uploaded_key(&api).await;
    let url = api.url(&format!("/media/{key}"));
    let len = png_bytes().len();

    let r = api.http.get(&url).header("range", "bytes=0-3").send().await.expect("get");
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), format!("bytes 0-3/{len}"));
    assert_eq!(header(&r, "content-length"), "4");
    assert_eq!(r.bytes().await.expect("body").to_vec(), png_bytes()[..4].to_vec());

    let r = api.http.get(&url).header("range", "bytes=-8").send().await.expect("get");
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), format!("bytes {}-{}/{len}", len - 8, len - 1));
    assert_eq!(r.bytes().await.expect("body").to_vec(), png_bytes()[len - 8..].to_vec());

    let r = api.http.get(&url).header("range", "bytes=10-").send().await.expect("get");
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.expect("body").to_vec(), png_bytes()[10..].to_vec());

    let r = api.http.get(&url).header("range", format!("bytes={len}-")).send().await.expect("get");
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "content-range"), format!("bytes */{len}"));

    // Several ranges are answered with the whole file.
    let r = api.http.get(&url).header("range", "bytes=0-1,4-5").send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("body").len(), len);
}

#[tokio::test]
async fn conditional_requests_with_a_current_validator_are_304() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let key = uploaded_key(&api).await;
    let url = api.url(&format!("/media/{key}"));
    let first = api.http.get(&url).send().await.expect("get");
    let etag = header(&first, "etag").to_string();
    let last_modified = header(&first, "last-modified").to_string();

    let r = api.http.get(&url).header("if-none-match", &etag).send().await.expect("get");
    assert_eq!(r.status(), 304);
    assert_eq!(header(&r, "etag"), etag);
    assert!(r.bytes().await.expect("body").is_empty());
    let r = api.http.get(&url).header("if-none-match", format!("\"other\", W/{etag}")).send().await.expect("get");
    assert_eq!(r.status(), 304);
    let r = api.http.get(&url).header("if-modified-since", &last_modified).send().await.expect("get");
    assert_eq!(r.status(), 304);

    let r = api.http.get(&url).header("if-none-match", "\"stale\"").send().await.expect("get");
    assert_eq!(r.status(), 200);
    let r = api.http.get(&url).header("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT").send().await.expect("get");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn paths_outside_the_storage_root_and_hidden_files_are_404() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let key = uploaded_key(&api).await;
    // A file next to the storage root that traversal would reach.
    let outside = api.storage_dir.with_extension("secret");
    std::fs::write(&outside, b"secret").expect("write");
    let outside_name = outside.file_name().and_then(|n| n.to_str()).expect("name").to_string();
    std::fs::write(api.storage_dir.join("images/.hidden.part"), b"partial").expect("write");

    for path in [
        format!("/media/..%2F{outside_name}"),
        format!("/media/%2e%2e/{outside_name}"),
        "/media/..%2F..%2F..%2Fetc%2Fpasswd".to_string(),
        "/media/%2Fetc%2Fpasswd".to_string(),
        "/media/images/.hidden.part".to_string(),
        "/media/images".to_string(),
        "/media/images/missing.png".to_string(),
        format!("/media/{key}/extra"),
    ] {
        let r = api.http.get(api.url(&path)).send().await.expect("get");
        assert_eq!(r.status(), 404, "{path}");
        assert_ne!(r.bytes().await.expect("body").as_ref(), b"secret");
    }
    let _ = std::fs::remove_file(outside);
}

#[tokio::test]
async fn other_files_below_the_root_are_served_by_extension() {
    let api = TestApp::spawn().await;
    std::fs::create_dir_all(api.storage_dir.join("visualizations")).expect("dir");
    std::fs::write(api.storage_dir.join("visualizations/spectrogram.png"), png_bytes()).expect("write");
    let r = api.http.get(api.url("/media/visualizations/spectrogram.png")).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "image/png");
    assert_eq!(r.bytes().await.expect("body").to_vec(), png_bytes());
}
