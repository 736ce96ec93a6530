//! One test suite for every storage implementation: a local directory and an S3-compatible
//! server (moto's server mode, a real HTTP S3 API on loopback).

use std::time::Duration;

use drishtiksha_common::config::{S3Config, Secret, StorageConfig};
use drishtiksha_common::storage::{Storage, StorageError};
use drishtiksha_testkit::{
    S3_TEST_KEY_ID, S3_TEST_SECRET, S3Server, eventually, s3_object_keys, s3_pending_multipart, unique_bucket,
};
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use url::Url;

const PART: usize = drishtiksha_common::storage::S3_PART_SIZE;

fn base_url() -> Url {
    Url::parse("http://files.example.test:3000").expect("url")
}

/// Bytes that differ at every offset, so a misplaced part shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed).collect()
}

async fn write_all(storage: &Storage, key: &str, bytes: &[u8], chunk: usize) -> u64 {
    let mut up = storage.begin_upload(key, "application/octet-stream").await.expect("begin");
    for c in bytes.chunks(chunk) {
        up.write(c).await.expect("write");
    }
    assert_eq!(up.written(), bytes.len() as u64);
    up.finish().await.expect("finish")
}

async fn read_all(storage: &Storage, key: &str) -> Vec<u8> {
    let chunks: Vec<bytes::Bytes> = storage.read_stream(key).await.expect("stream").try_collect().await.expect("read");
    chunks.concat()
}

fn local_config() -> (StorageConfig, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("drishtiksha-storage-test-{}", uuid::Uuid::new_v4()));
    (StorageConfig::Local { root: dir.clone() }, dir)
}

fn s3_config(server: &S3Server, bucket: &str, public_base_url: Option<&str>) -> S3Config {
    S3Config {
        bucket: bucket.to_string(),
        region: "us-east-1".to_string(),
        endpoint: Some(Url::parse(&server.endpoint()).expect("endpoint")),
        public_base_url: public_base_url.map(|u| Url::parse(u).expect("url")),
        presign_ttl: Duration::from_secs(3600),
        presign_endpoint: None,
        force_path_style: true,
        static_credentials: Some((S3_TEST_KEY_ID.to_string(), Secret::new(S3_TEST_SECRET))),
    }
}

/// Leftovers of unfinished uploads: partial files, or multipart uploads.
async fn leftovers(storage: &Storage) -> usize {
    match storage {
        Storage::Local(l) => {
            let mut n = 0;
            let mut stack = vec![l.root().to_path_buf()];
            while let Some(dir) = stack.pop() {
                for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    if e.path().is_dir() {
                        stack.push(e.path());
                    } else if e.file_name().to_string_lossy().ends_with(".part") {
                        n += 1;
                    }
                }
            }
            n
        }
        Storage::S3(s3) => s3_pending_multipart(s3).await.expect("list uploads"),
    }
}

/// What every store must do.
async fn suite(storage: &Storage) {
    // A small object round-trips and is visible only once finished.
    let small = pattern(1000, 1);
    let mut up = storage.begin_upload("images/small.png", "image/png").await.expect("begin");
    up.write(&small).await.expect("write");
    assert!(!storage.exists("images/small.png").await.expect("exists"), "visible before finish");
    assert_eq!(up.finish().await.expect("finish"), 1000);
    assert!(storage.exists("images/small.png").await.expect("exists"));
    assert_eq!(storage.size("images/small.png").await.expect("size"), 1000);
    assert_eq!(read_all(storage, "images/small.png").await, small);

    // A large object crosses several parts, in chunks that do not divide the part size.
    let large = pattern(2 * PART + 12_345, 7);
    let mut up = storage.begin_upload("videos/large.mp4", "video/mp4").await.expect("begin");
    for c in large.chunks(65_521) {
        up.write(c).await.expect("write");
    }
    assert!(!storage.exists("videos/large.mp4").await.expect("exists"), "visible before finish");
    assert_eq!(up.finish().await.expect("finish"), large.len() as u64);
    assert_eq!(storage.size("videos/large.mp4").await.expect("size"), large.len() as u64);
    let back = read_all(storage, "videos/large.mp4").await;
    assert_eq!(Sha256::digest(&back), Sha256::digest(&large), "large object changed on the way");

    // An object of exactly one part.
    let exact = pattern(PART, 3);
    assert_eq!(write_all(storage, "audios/exact.wav", &exact, 1 << 20).await, PART as u64);
    assert_eq!(read_all(storage, "audios/exact.wav").await, exact);

    // Aborted uploads leave nothing, whether or not parts were already sent.
    for len in [10, PART + 1, 2 * PART + 5] {
        let mut up = storage.begin_upload("videos/aborted.mp4", "video/mp4").await.expect("begin");
        up.write(&pattern(len, 9)).await.expect("write");
        up.abort().await;
        assert!(!storage.exists("videos/aborted.mp4").await.expect("exists"));
        assert_eq!(leftovers(storage).await, 0, "abort of {len} bytes left data behind");
    }

    // A dropped upload (the client went away mid-body) is cleaned up as well.
    let mut up = storage.begin_upload("videos/dropped.mp4", "video/mp4").await.expect("begin");
    up.write(&pattern(PART + 10, 4)).await.expect("write");
    drop(up);
    eventually(Duration::from_secs(10), || async { (leftovers(storage).await == 0).then_some(()) })
        .await
        .expect("dropped upload cleaned up");
    assert!(!storage.exists("videos/dropped.mp4").await.expect("exists"));

    // Deletion.
    storage.delete("images/small.png").await.expect("delete");
    assert!(!storage.exists("images/small.png").await.expect("exists"));
    assert!(matches!(storage.size("images/small.png").await, Err(StorageError::NotFound)));
    assert!(matches!(storage.read_stream("images/small.png").await, Err(StorageError::NotFound)));
    assert!(matches!(storage.delete("images/small.png").await, Err(StorageError::NotFound)));
    assert!(matches!(storage.size("images/never.png").await, Err(StorageError::NotFound)));

    // Keys cannot escape their place.
    for key in ["../etc/passwd", "/etc/passwd", "videos/../../x", "videos//a.mp4", "", "videos/", "a\\b"] {
        assert!(matches!(storage.size(key).await, Err(StorageError::InvalidKey)), "{key:?} accepted");
        assert!(matches!(storage.delete(key).await, Err(StorageError::InvalidKey)), "{key:?} accepted");
        assert!(storage.begin_upload(key, "video/mp4").await.is_err(), "{key:?} accepted");
    }

    // ffprobe reads what probe_location names.
    let wav = wav_bytes();
    write_all(storage, "audios/tone.wav", &wav, 4096).await;
    let location = storage.probe_location("audios/tone.wav").await.expect("location");
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0"])
        .arg(&location)
        .output()
        .expect("ffprobe");
    assert!(out.status.success(), "ffprobe failed on {location}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "audio");
}

/// One second of a 440 Hz tone as 8 kHz 16-bit mono WAV.
fn wav_bytes() -> Vec<u8> {
    let samples: Vec<i16> =
        (0..8000).map(|i| ((i as f32 * 440.0 * std::f32::consts::TAU / 8000.0).sin() * 8000.0) as i16).collect();
    let data_len = (samples.len() * 2) as u32;
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&8000u32.to_le_bytes());
    v.extend_from_slice(&16000u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        v.extend_from_slice(&s.to_le_bytes());
    }
    v
}

#[tokio::test]
async fn local_storage_passes_the_suite() {
    let (cfg, dir) = local_config();
    let storage = Storage::from_config(&cfg).await.expect("local storage");
    suite(&storage).await;
    assert_eq!(
        storage.public_url("videos/a.mp4", &base_url()).await.expect("url"),
        "http://files.example.test:3000/media/videos/a.mp4"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn s3_storage_passes_the_suite() {
    let server = S3Server::start().await.expect("s3 server");
    let bucket = unique_bucket();
    let storage = Storage::from_config(&StorageConfig::S3(Box::new(s3_config(&server, &bucket, None))))
        .await
        .expect("s3 storage creates its bucket");
    suite(&storage).await;
    let Storage::S3(s3) = &storage else { panic!("s3 expected") };
    let keys = s3_object_keys(s3).await.expect("list objects");
    assert_eq!(keys, ["media/audios/exact.wav", "media/audios/tone.wav", "media/videos/large.mp4"]);

    // Presigned URLs fetch the object over plain HTTP, and only that object.
    let url = storage.public_url("audios/exact.wav", &base_url()).await.expect("url");
    assert!(url.starts_with(&format!("{}/{bucket}/media/audios/exact.wav?", server.endpoint())), "{url}");
    assert!(url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires=3600"), "{url}");
    let got = reqwest::get(&url).await.expect("get").bytes().await.expect("body");
    assert_eq!(got.as_ref(), pattern(PART, 3).as_slice());
}

#[tokio::test]
async fn a_bucket_created_at_start_up_aborts_interrupted_multipart_uploads_after_a_day() {
    let server = S3Server::start().await.expect("s3 server");
    let bucket = unique_bucket();
    let storage = Storage::from_config(&StorageConfig::S3(Box::new(s3_config(&server, &bucket, None))))
        .await
        .expect("s3 storage creates its bucket");
    let Storage::S3(s3) = &storage else { panic!("s3 expected") };
    let lifecycle = s3
        .client()
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .expect("the bucket has a lifecycle configuration");
    let days: Vec<Option<i32>> = lifecycle
        .rules()
        .iter()
        .filter(|r| r.status() == &aws_sdk_s3::types::ExpirationStatus::Enabled)
        .map(|r| r.abort_incomplete_multipart_upload().and_then(|a| a.days_after_initiation()))
        .collect();
    assert_eq!(days, [Some(1)]);
}

#[tokio::test]
async fn local_storage_sweeps_partial_files_of_interrupted_uploads() {
    let dir = std::env::temp_dir().join(format!("drishtiksha-storage-test-{}", uuid::Uuid::new_v4().simple()));
    let storage = Storage::from_config(&StorageConfig::Local { root: dir.clone() }).await.expect("local storage");
    let Storage::Local(local) = &storage else { panic!("local expected") };
    // An interrupted upload (its partial file stays), a finished one, and an unrelated dot-file.
    let upload = storage.begin_upload("videos/cut.mp4", "video/mp4").await.expect("upload");
    std::mem::forget(upload);
    write_all(&storage, "videos/whole.mp4", b"whole", 5).await;
    std::fs::write(dir.join("videos/.keep"), b"").expect("dot-file");
    let partials = || {
        std::fs::read_dir(dir.join("videos"))
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
            .count()
    };
    assert_eq!(partials(), 1);
    // Younger than the bound: kept (it may be an upload in progress on another api).
    assert_eq!(local.sweep_partials(Duration::from_secs(3600)).await.expect("sweep"), 0);
    assert_eq!(partials(), 1);
    assert_eq!(local.sweep_partials(Duration::ZERO).await.expect("sweep"), 1);
    assert_eq!(partials(), 0);
    assert_eq!(read_all(&storage, "videos/whole.mp4").await, b"whole");
    assert!(dir.join("videos/.keep").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn s3_public_base_url_replaces_presigning_and_existing_buckets_are_reused() {
    let server = S3Server::start().await.expect("s3 server");
    let bucket = unique_bucket();
    let cfg = StorageConfig::S3(Box::new(s3_config(&server, &bucket, Some("https://cdn.example.com/assets/"))));
    let first = Storage::from_config(&cfg).await.expect("creates the bucket");
    write_all(&first, "images/a.png", b"png", 3).await;
    // A second process finds the bucket and its objects.
    let second = Storage::from_config(&cfg).await.expect("verifies the bucket");
    assert_eq!(read_all(&second, "images/a.png").await, b"png");
    assert_eq!(
        second.public_url("images/a.png", &base_url()).await.expect("url"),
        "https://cdn.example.com/assets/media/images/a.png"
    );
}

#[tokio::test]
async fn an_unreachable_object_store_is_a_clear_start_up_error() {
    let port = drishtiksha_testkit::free_port();
    let cfg = S3Config {
        endpoint: Some(Url::parse(&format!("http://127.0.0.1:{port}")).expect("url")),
        bucket: "drishtiksha-media".into(),
        region: "us-east-1".into(),
        public_base_url: None,
        presign_ttl: Duration::from_secs(60),
        presign_endpoint: None,
        force_path_style: true,
        static_credentials: Some(("id".into(), Secret::new("top-secret-value"))),
    };
    let err = Storage::from_config(&StorageConfig::S3(Box::new(cfg))).await.expect_err("must fail");
    let text = format!("{err:#}");
    assert!(text.contains("\"drishtiksha-media\"") && text.contains("unreachable"), "{text}");
    assert!(!text.contains("top-secret-value"), "{text}");
}

#[tokio::test]
async fn browser_urls_are_signed_for_the_presign_endpoint_and_probe_urls_for_the_store() {
    let server = S3Server::start().await.expect("s3 server");
    let bucket = unique_bucket();
    let mut cfg = s3_config(&server, &bucket, None);
    // The address browsers use (a proxy in front of the store), here another name of the server.
    let public = format!("http://localhost:{}", server.port);
    cfg.presign_endpoint = Some(Url::parse(&public).expect("url"));
    let storage = Storage::from_config(&StorageConfig::S3(Box::new(cfg))).await.expect("storage");
    write_all(&storage, "images/a.png", b"png", 3).await;
    let browser = storage.public_url("images/a.png", &base_url()).await.expect("url");
    assert!(browser.starts_with(&format!("{public}/{bucket}/media/images/a.png?")), "{browser}");
    let probe = storage.probe_location("images/a.png").await.expect("probe");
    assert!(probe.starts_with(&format!("{}/{bucket}/media/images/a.png?", server.endpoint())), "{probe}");
    assert_eq!(reqwest::get(&browser).await.expect("get").bytes().await.expect("body").as_ref(), b"png");
}
