//! `POST /api/v1/media`: every rule of §5.1, and that a rejected upload stores nothing.

use std::time::Duration;

use bytes::Bytes;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::support::{Temporal, TestApp, assert_error, body, file_part, mp4_like, png_bytes};

const FILE_REQUIRED: &str = "A file is required for upload.";

#[tokio::test]
async fn upload_without_a_multipart_body_is_400_file_required() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let r = api
        .http
        .post(api.url("/api/v1/media"))
        .bearer_auth(&token)
        .json(&json!({"media": "x"}))
        .send()
        .await
        .expect("request");
    let (status, v) = body(r).await;
    assert_eq!(status, 400);
    assert_error(&v, 400, FILE_REQUIRED, &[]);
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn upload_without_a_file_in_media_is_400_file_required() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let form = Form::new().text("description", "only text").text("media", "not a file");
    let (status, v) = body(api.upload_form(&token, form).await).await;
    assert_eq!(status, 400);
    assert_error(&v, 400, FILE_REQUIRED, &[]);
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn upload_requires_credentials() {
    let api = TestApp::spawn().await;
    let form = Form::new().part("media", file_part("a.png", "image/png", png_bytes()));
    let r = api.http.post(api.url("/api/v1/media")).multipart(form).send().await.expect("request");
    let (status, v) = body(r).await;
    assert_eq!(status, 401);
    assert_error(&v, 401, "Unauthorized: Access token is required.", &[]);
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn upload_with_a_file_in_another_field_is_400_unexpected_file_field() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let form = Form::new()
        .part("media", file_part("a.png", "image/png", png_bytes()))
        .part("avatar", file_part("b.png", "image/png", png_bytes()));
    let (status, v) = body(api.upload_form(&token, form).await).await;
    assert_eq!(status, 400);
    assert_error(
        &v,
        400,
        "Validation failed",
        &["Unexpected file field 'avatar'. Upload one file in the 'media' field."],
    );
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn upload_with_two_files_in_media_is_400_unexpected_file_field() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let form = Form::new()
        .part("media", file_part("a.png", "image/png", png_bytes()))
        .part("media", file_part("b.png", "image/png", png_bytes()));
    let (status, v) = body(api.upload_form(&token, form).await).await;
    assert_eq!(status, 400);
    assert_error(
        &v,
        400,
        "Validation failed",
        &["Unexpected file field 'media'. Upload one file in the 'media' field."],
    );
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn upload_of_a_zero_byte_file_is_400_empty() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let (status, v) = body(api.upload(&token, "empty.png", "image/png", Vec::new(), None).await).await;
    assert_eq!(status, 400);
    assert_error(&v, 400, "Validation failed", &["Uploaded file is empty."]);
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn upload_with_a_file_name_over_255_bytes_is_400() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    // 252 two-byte characters + ".png": 508 bytes but only 256 characters.
    let name = format!("{}.png", "é".repeat(126));
    assert!(name.len() > 255 && name.chars().count() < 255);
    let (status, v) = body(api.upload(&token, &name, "image/png", png_bytes(), None).await).await;
    assert_eq!(status, 400);
    assert_error(&v, 400, "Validation failed", &["Filename is too long."]);
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn upload_with_a_nul_character_in_its_description_is_400_and_stores_nothing() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let (status, v) = body(api.upload(&token, "a.png", "image/png", png_bytes(), Some("a\u{0}b")).await).await;
    assert_eq!(status, 400);
    assert_error(&v, 400, "Validation failed", &["Description contains an invalid character"]);
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn upload_with_a_description_over_500_characters_is_400() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let long = "d".repeat(501);
    let (status, v) = body(api.upload(&token, "a.png", "image/png", png_bytes(), Some(&long)).await).await;
    assert_eq!(status, 400);
    assert_error(&v, 400, "Validation failed", &["Description must be at most 500 characters"]);
    // Sent before the file, and outranking an unsupported type (§5.1 order).
    let form = Form::new().text("description", long).part("media", file_part("a.txt", "text/plain", b"hi".to_vec()));
    let (status, v) = body(api.upload_form(&token, form).await).await;
    assert_eq!(status, 400);
    assert_error(&v, 400, "Validation failed", &["Description must be at most 500 characters"]);
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn upload_one_byte_over_the_limit_is_413_and_leaves_nothing() {
    let limit = 1_048_576u64;
    let api = TestApp::builder().max_upload_bytes(limit).spawn().await;
    let (_, token) = api.new_user().await;
    let payload = vec![7u8; limit as usize + 1];
    let (status, v) = body(api.upload(&token, "big.png", "image/png", payload, None).await).await;
    assert_eq!(status, 413);
    assert_error(&v, 413, "File too large. The maximum size is 1 MB.", &[]);
    api.assert_nothing_stored().await;

    // Exactly at the limit is accepted (its run waits for Temporal, which is away).
    let mut payload = png_bytes();
    payload.resize(limit as usize, 7);
    let (status, _) = body(api.upload(&token, "big.png", "image/png", payload, None).await).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn upload_one_byte_over_the_default_150_mib_limit_is_413_and_leaves_nothing() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let total: u64 = 157_286_400 + 1;
    let chunks = futures::stream::unfold(0u64, move |sent| async move {
        if sent >= total {
            return None;
        }
        let n = (total - sent).min(ZEROS.len() as u64) as usize;
        Some((Ok::<Bytes, std::io::Error>(Bytes::from_static(&ZEROS[..n])), sent + n as u64))
    });
    let part = Part::stream_with_length(reqwest::Body::wrap_stream(chunks), total)
        .file_name("huge.mp4")
        .mime_str("video/mp4")
        .expect("mime");
    let (status, v) = body(api.upload_form(&token, Form::new().part("media", part)).await).await;
    assert_eq!(status, 413);
    assert_error(&v, 413, "File too large. The maximum size is 150 MB.", &[]);
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn upload_of_an_unsupported_type_is_415() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let (status, v) =
        body(api.upload(&token, "notes.txt", "Text/Plain; charset=utf-8", b"hi".to_vec(), None).await).await;
    assert_eq!(status, 415);
    assert_error(
        &v,
        415,
        "Unsupported file type: 'text/plain'. Please upload a valid video, image, or audio file.",
        &[],
    );
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn upload_of_a_png_name_declared_video_mp4_is_415_extension_mismatch() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let (status, v) = body(api.upload(&token, "clip.PNG", "video/mp4", png_bytes(), None).await).await;
    assert_eq!(status, 415);
    assert_error(&v, 415, "File extension '.png' does not match MIME type 'video/mp4'.", &[]);
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn a_truncated_multipart_body_is_400_and_leaves_nothing() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let boundary = "----drishtiksha-boundary";
    let mut payload = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"cut.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    payload.extend_from_slice(&vec![1u8; 200_000]);
    // No closing boundary: the body ends in the middle of the file.
    let r = api
        .http
        .post(api.url("/api/v1/media"))
        .bearer_auth(&token)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(payload)
        .send()
        .await
        .expect("request");
    let (status, v) = body(r).await;
    assert_eq!(status, 400);
    assert_error(&v, 400, FILE_REQUIRED, &[]);
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn a_client_that_disconnects_mid_upload_leaves_nothing() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let boundary = "----cut-off";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"gone.png\"\r\nContent-Type: image/png\r\n\r\n"
    );
    let request = api
        .http
        .post(api.url("/api/v1/media"))
        .bearer_auth(&token)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(reqwest::Body::wrap_stream(tokio_stream_from(rx)))
        .send();
    let sender = async {
        tx.send(Ok(Bytes::from(head))).await.expect("send");
        tx.send(Ok(Bytes::from(vec![3u8; 300_000]))).await.expect("send");
        // The partial file exists while the upload is in flight…
        drishtiksha_testkit::eventually(Duration::from_secs(10), || async {
            (!api.stored_files().is_empty()).then_some(())
        })
        .await
        .expect("partial file written");
        tx.send(Err(std::io::Error::other("client gave up"))).await.expect("send");
    };
    let (result, ()) = tokio::join!(request, sender);
    assert!(result.is_err() || result.is_ok_and(|r| r.status().is_client_error()));
    // …and is gone once the request is dropped.
    drishtiksha_testkit::eventually(Duration::from_secs(10), || async { api.stored_files().is_empty().then_some(()) })
        .await
        .expect("partial file removed");
    api.assert_nothing_stored().await;
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn a_path_in_the_file_name_is_stripped_and_never_reaches_the_storage_key() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let (_, token) = api.new_user().await;
    let (status, v) =
        body(api.upload(&token, "../../etc/passwd.png", "image/png", png_bytes(), Some("sneaky")).await).await;
    assert_eq!(status, 202, "{v}");
    let media = &v["data"];
    assert_eq!(media["filename"], "passwd.png");
    let id = media["id"].as_str().expect("id");
    let key = media["publicId"].as_str().expect("publicId");
    assert_eq!(key, format!("images/{id}.png"));
    assert!(!key.contains(".."));
    let files = api.stored_files();
    assert_eq!(files, vec![api.storage_dir.join(key)]);
    assert_eq!(std::fs::read(&files[0]).expect("stored"), png_bytes());
}

#[tokio::test]
async fn upload_while_temporal_is_unreachable_is_accepted_and_its_run_stays_queued() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let (status, v) = body(api.upload(&token, "clip.mp4", "application/mp4", mp4_like(4096), None).await).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["data"]["status"], "QUEUED");

    let (media_id, media_status, key): (uuid::Uuid, String, String) =
        sqlx::query_as("SELECT id, status::text, storage_key FROM media").fetch_one(&api.db).await.expect("media row");
    assert_eq!(media_status, "QUEUED");
    assert_eq!(key, format!("videos/{media_id}.mp4"));
    assert!(api.storage_dir.join(&key).is_file(), "file kept");
    let (run_status, error, completed): (String, Option<String>, bool) = sqlx::query_as(
        "SELECT status::text, error_message, completed_at IS NOT NULL FROM analysis_runs WHERE run_number = 1",
    )
    .fetch_one(&api.db)
    .await
    .expect("run row");
    assert_eq!((run_status.as_str(), error, completed), ("QUEUED", None, false), "the run waits to be started");

    // The queued run is the media's active run: a re-run is a conflict, not a second run.
    let (status, v) = api.post(&format!("/api/v1/media/{media_id}/analyze"), &token).await;
    assert_eq!(status, 409);
    assert_error(&v, 409, "An analysis run is already in progress for this media.", &[]);
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM analysis_runs").fetch_one(&api.db).await.expect("runs");
    assert_eq!(runs, 1);
}

#[tokio::test]
async fn upload_far_over_the_limit_is_answered_413_before_the_body_ends() {
    let limit = 1_048_576u64;
    let api = TestApp::builder().max_upload_bytes(limit).spawn().await;
    let (_, token) = api.new_user().await;
    let payload = vec![7u8; 20 * limit as usize];
    let (status, v) = body(api.upload(&token, "big.png", "image/png", payload, None).await).await;
    assert_eq!(status, 413);
    assert_error(&v, 413, "File too large. The maximum size is 1 MB.", &[]);
    api.assert_nothing_stored().await;
}

/// A multipart body of `head` followed by `filler` bytes in 64 KiB chunks, counting what the
/// server pulled; the request is answered when the server stops reading.
async fn send_counted(api: &TestApp, token: &str, head: String, filler: u8, total: usize) -> (u16, Value, usize) {
    use futures::StreamExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const CHUNK: usize = 64 * 1024;
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let head = Bytes::from(head);
    let chunks = futures::stream::iter(0..=total / CHUNK).map(move |i| {
        let chunk = if i == 0 { head.clone() } else { Bytes::from(vec![filler; CHUNK]) };
        counter.fetch_add(chunk.len(), Ordering::SeqCst);
        Ok::<_, std::io::Error>(chunk)
    });
    let r = api
        .http
        .post(api.url("/api/v1/media"))
        .bearer_auth(token)
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("the server answers before the body ends");
    let (status, v) = body(r).await;
    (status, v, sent.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_64_mib_part_header_is_refused_as_soon_as_it_passes_the_bound() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let head = "--XyZ\r\nContent-Disposition: form-data; name=\"media\"; filename=\"a.png\"\r\nX-Long: ".to_string();
    let (status, v, sent) = send_counted(&api, &token, head, b'a', 64 << 20).await;
    assert_eq!(status, 400);
    assert_error(&v, 400, FILE_REQUIRED, &[]);
    // What was read is bounded (loopback socket buffers aside, a few MiB), not the whole header.
    assert!(sent < 32 << 20, "{sent} bytes were pulled from the client");
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn a_200_mib_ignored_text_field_is_refused_413_without_being_read_to_the_end() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let head = "--XyZ\r\nContent-Disposition: form-data; name=\"notes\"\r\n\r\n".to_string();
    let (status, v, sent) = send_counted(&api, &token, head, b'n', 200 << 20).await;
    assert_eq!(status, 413);
    assert_error(&v, 413, "Request body too large.", &[]);
    assert!(sent < 32 << 20, "{sent} bytes were pulled from the client");
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn a_description_longer_than_500_characters_can_be_ends_the_request_at_once() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let head = "--XyZ\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\n".to_string();
    let (status, v, sent) = send_counted(&api, &token, head, b'd', 200 << 20).await;
    assert_eq!(status, 400);
    assert_error(&v, 400, "Validation failed", &["Description must be at most 500 characters"]);
    assert!(sent < 32 << 20, "{sent} bytes were pulled from the client");
}

#[tokio::test]
async fn many_small_ignored_fields_are_bounded_by_the_upload_limit_plus_a_margin() {
    let limit = 1_048_576u64;
    let api = TestApp::builder().max_upload_bytes(limit).spawn().await;
    let (_, token) = api.new_user().await;
    let mut form = Form::new();
    for i in 0..40 {
        form = form.text(format!("f{i}"), "x".repeat(60_000));
    }
    let form = form.part("media", file_part("a.png", "image/png", png_bytes()));
    let (status, v) = body(api.upload_form(&token, form).await).await;
    assert_eq!(status, 413);
    assert_error(&v, 413, "File too large. The maximum size is 1 MB.", &[]);
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn markup_declared_as_an_image_or_a_video_is_400_and_stores_nothing() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let html = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>".to_vec();
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>"#.to_vec();
    for (name, mime, bytes) in
        [("a.png", "image/png", html.clone()), ("b.mp4", "video/mp4", svg.clone()), ("c.jpg", "image/jpeg", svg)]
    {
        let (status, v) = body(api.upload(&token, name, mime, bytes, None).await).await;
        assert_eq!(status, 400, "{name}");
        assert_error(&v, 400, "Validation failed", &[&format!("File content does not match its type '{mime}'.")]);
    }
    api.assert_nothing_stored().await;
}

#[tokio::test]
async fn file_names_and_descriptions_with_bidi_or_zero_width_characters_are_400() {
    let api = TestApp::spawn().await;
    let (_, token) = api.new_user().await;
    let (status, v) =
        body(api.upload(&token, "invoice\u{202E}gnp.exe.png", "image/png", png_bytes(), None).await).await;
    assert_eq!(status, 400);
    assert_error(&v, 400, "Validation failed", &["Filename contains an invalid character."]);
    let (status, v) = body(api.upload(&token, "a.png", "image/png", png_bytes(), Some("look\u{200B}here")).await).await;
    assert_eq!(status, 400);
    assert_error(&v, 400, "Validation failed", &["Description contains an invalid character"]);
    api.assert_nothing_stored().await;
    // Line breaks in a description are fine; it is stored trimmed.
    let (status, v) =
        body(api.upload(&token, "a.png", "image/png", png_bytes(), Some("  line 1\nline 2 ")).await).await;
    // Accepted; Temporal is unreachable here, which the upload answers either way.
    assert!(matches!(status, 202 | 503), "{v}");
    let stored: Option<String> =
        sqlx::query_scalar("SELECT description FROM media").fetch_one(&api.db).await.expect("row");
    assert_eq!(stored.as_deref(), Some("line 1\nline 2"));
}
