//! `GET /api/v1/pdf/report/run/:runId` (§4.5): the report is checked the way a reader would see
//! it, through poppler's `pdftotext` and `pdftoppm`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{TestApp, assert_error, body, unique_email};
use chrono::Utc;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const NOT_FOUND: &str = "Analysis run not found or you do not have permission.";

fn report_path(run_id: impl std::fmt::Display) -> String {
    format!("/api/v1/pdf/report/run/{run_id}")
}

async fn insert_media(db: &PgPool, user_id: &str, filename: &str, media_type: &str) -> Uuid {
    let id = Uuid::new_v4();
    let (mime, folder, metadata, has_audio) = match media_type {
        "VIDEO" => (
            "video/mp4",
            "videos",
            Some(json!({
                "format": {"duration": 12.48, "size": 5242880, "bitRate": 3360512, "formatName": "mov,mp4,m4a,3gp,3g2,mj2"},
                "video": {"codecName": "h264", "width": 1280, "height": 720, "frameRate": "30/1", "bitRate": 3200000},
                "audio": {"codecName": "aac", "sampleRate": 44100, "channels": 2, "bitRate": 128000},
                "streams": [{"codecType": "video", "codecName": "h264"}, {"codecType": "audio", "codecName": "aac"}]
            })),
            Some(true),
        ),
        "AUDIO" => ("audio/mpeg", "audios", None, None),
        _ => ("image/png", "images", None, None),
    };
    sqlx::query(
        "INSERT INTO media (id, user_id, filename, storage_key, url, mimetype, size, media_type, has_audio, metadata)
         VALUES ($1, $2::uuid, $3, $4, $5, $6, 5242880, $7::media_type, $8, $9)",
    )
    .bind(id)
    .bind(user_id)
    .bind(filename)
    .bind(format!("{folder}/{id}.bin"))
    .bind(format!("http://localhost:3000/media/{folder}/{id}.bin"))
    .bind(mime)
    .bind(media_type)
    .bind(has_audio)
    .bind(metadata)
    .execute(db)
    .await
    .expect("insert media");
    id
}

async fn insert_run(
    db: &PgPool,
    media_id: Uuid,
    run_number: i32,
    status: &str,
    total: i32,
    error: Option<&str>,
) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO analysis_runs (id, media_id, run_number, status, workflow_id, total_models, error_message)
         VALUES ($1, $2, $3, $4::run_status, $5, $6, $7)",
    )
    .bind(id)
    .bind(media_id)
    .bind(run_number)
    .bind(status)
    .bind(format!("media-{media_id}-run-{run_number}"))
    .bind(total)
    .bind(error)
    .execute(db)
    .await
    .expect("insert run");
    sqlx::query("UPDATE media SET status = $2::run_status, latest_analysis_run_id = $3 WHERE id = $1")
        .bind(media_id)
        .bind(status)
        .bind(id)
        .execute(db)
        .await
        .expect("update media");
    id
}

/// A row as §3.4 shows it for `status`; COMPLETED rows get a video result with `frames` scores.
async fn insert_analysis(db: &PgPool, run_id: Uuid, model: &str, status: &str, prediction: &str, frames: usize) {
    let (confidence, payload, error, time, kind): (f64, Option<Value>, Option<&str>, Option<f64>, Option<&str>) =
        match status {
            "COMPLETED" => {
                let p = if prediction == "FAKE" { 0.87 } else { 0.21 };
                let scores: Vec<Value> = (0..frames)
                    .map(|i| {
                        let s = (p + 0.1 * ((i as f64) * 0.7).sin()).clamp(0.0, 1.0);
                        json!({"index": i, "score": s, "prediction": if s > 0.5 { "FAKE" } else { "REAL" }})
                    })
                    .collect();
                let confidence = if p > 0.5 { p } else { 1.0 - p };
                let payload = json!({
                    "prediction": prediction, "confidence": confidence, "processing_time": 3.5, "note": null,
                    "media_type": "video", "frame_count": frames, "frames_analyzed": frames,
                    "frame_predictions": scores,
                    "metrics": {"final_average_score": p, "suspicious_frames_count": 12, "rolling_average_scores": [0.4]},
                    "visualization_path": null
                });
                (confidence, Some(payload), None, Some(3.5), Some("video"))
            }
            "FAILED" => (
                0.0,
                Some(json!({"error": "Model inference failed on the server.", "attempts": 3, "retryCount": 2})),
                Some("Model inference failed on the server."),
                None,
                None,
            ),
            "CANCELLED" => (0.0, None, Some("Analysis cancelled"), None, None),
            _ => (0.0, None, None, None, None),
        };
    let prediction = if status == "COMPLETED" { prediction } else { "N/A" };
    sqlx::query(
        "INSERT INTO deepfake_analyses (id, analysis_run_id, model_name, status, prediction, confidence, error_message,
                                        processing_time, media_type, result_payload)
         VALUES ($1, $2, $3, $4::analysis_status, $5, $6, $7, $8, $9, $10)",
    )
    .bind(Uuid::new_v4())
    .bind(run_id)
    .bind(model)
    .bind(status)
    .bind(prediction)
    .bind(confidence)
    .bind(error)
    .bind(time)
    .bind(kind)
    .bind(payload)
    .execute(db)
    .await
    .expect("insert analysis");
}

struct Pdf {
    dir: PathBuf,
    file: PathBuf,
}

impl Pdf {
    fn save(bytes: &[u8]) -> Self {
        let dir = std::env::temp_dir().join(format!("drishtiksha-pdf-test-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("report.pdf");
        std::fs::write(&file, bytes).expect("write pdf");
        Self { dir, file }
    }

    /// The text of each page, in reading order.
    fn pages(&self) -> Vec<String> {
        let out = Command::new("pdftotext").arg("-layout").arg(&self.file).arg("-").output().expect("run pdftotext");
        assert!(out.status.success(), "pdftotext failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).expect("utf-8 text");
        let mut pages: Vec<String> = text.split('\x0c').map(str::to_string).collect();
        if pages.last().is_some_and(|p| p.trim().is_empty()) {
            pages.pop();
        }
        pages
    }

    /// Renders every page to PNG; returns how many images were written.
    fn rasterize(&self) -> usize {
        let prefix = self.dir.join("page");
        let out = Command::new("pdftoppm")
            .args(["-png", "-r", "40"])
            .arg(&self.file)
            .arg(&prefix)
            .output()
            .expect("run pdftoppm");
        assert!(out.status.success(), "pdftoppm failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "pdftoppm reported problems: {}", String::from_utf8_lossy(&out.stderr));
        count_pngs(&self.dir)
    }
}

fn count_pngs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
        .count()
}

impl Drop for Pdf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn download(app: &TestApp, token: &str, run_id: Uuid) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let r = app.get_auth(&report_path(run_id), token).await;
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    let bytes = r.bytes().await.expect("pdf body").to_vec();
    (headers, bytes)
}

fn squashed(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn report_of_an_analyzed_run_shows_verdict_models_file_name_and_report_id_on_renderable_pages() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.signup(&unique_email(), "password123").await;
    let media_id = insert_media(&app.db, &user_id, "interview.mp4", "VIDEO").await;
    let run_id = insert_run(&app.db, media_id, 1, "ANALYZED", 3, None).await;
    insert_analysis(&app.db, run_id, "SIGLIP-LSTM-V4", "COMPLETED", "FAKE", 50).await;
    insert_analysis(&app.db, run_id, "EFFICIENTNET-B7-V1", "COMPLETED", "FAKE", 300).await;
    insert_analysis(&app.db, run_id, "LIP-FD-V1", "FAILED", "", 0).await;

    let before = Utc::now().timestamp_millis();
    let (headers, bytes) = download(&app, &token, run_id).await;
    let after = Utc::now().timestamp_millis();

    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    let pdf = Pdf::save(&bytes);
    let pages = pdf.pages();
    let text = pages.join("\n");
    let flat = squashed(&text);
    assert!(text.contains("Deepfake Detection Analysis Report"));
    assert!(text.contains("DEEPFAKE"), "verdict missing:\n{text}");
    assert!(text.contains("HIGH"), "risk level missing:\n{text}");
    for model in ["SIGLIP-LSTM-V4", "EFFICIENTNET-B7-V1", "LIP-FD-V1"] {
        assert!(text.contains(model), "{model} missing");
    }
    assert!(text.contains("interview.mp4"));
    assert!(text.contains(&media_id.to_string()) && text.contains(&run_id.to_string()));
    assert!(text.contains("Model inference failed on the server."), "failed model's error missing");
    assert!(flat.contains("2 / 3 (67%)"), "success rate missing:\n{flat}");

    let report_id = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("RPT-"))
        .and_then(|ms| ms.parse::<i64>().ok())
        .expect("report id RPT-<epoch ms>");
    assert!((before..=after).contains(&report_id), "report id {report_id} not generated during the request");
    for (i, page) in pages.iter().enumerate() {
        assert!(page.contains(&format!("RPT-{report_id}")), "page {} lacks the report id", i + 1);
        assert!(page.contains(&format!("Page {} of {}", i + 1, pages.len())), "page {} lacks its number", i + 1);
    }
    assert_eq!(pdf.rasterize(), pages.len(), "every page renders to an image");

    assert_eq!(headers["content-type"], "application/pdf");
    assert_eq!(headers["content-length"], bytes.len().to_string().as_str());
    assert_eq!(headers["cache-control"], "no-cache, no-store, must-revalidate");
    assert_eq!(headers["pragma"], "no-cache");
    assert_eq!(headers["expires"], "0");
    let date = Utc::now().format("%Y-%m-%d");
    assert_eq!(
        headers["content-disposition"],
        format!("attachment; filename=\"Analysis_Report_interview_{date}.pdf\"").as_str()
    );
}

#[tokio::test]
async fn report_file_name_replaces_other_characters_and_is_cut_to_thirty() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.signup(&unique_email(), "password123").await;
    let media_id = insert_media(&app.db, &user_id, "Tëst clip (final) - interview.take 2.mov", "VIDEO").await;
    let run_id = insert_run(&app.db, media_id, 1, "ANALYZED", 1, None).await;
    insert_analysis(&app.db, run_id, "SIGLIP-LSTM-V4", "COMPLETED", "REAL", 50).await;

    let (headers, _) = download(&app, &token, run_id).await;
    let date = Utc::now().format("%Y-%m-%d");
    assert_eq!(
        headers["content-disposition"],
        format!("attachment; filename=\"Analysis_Report_T_st_clip__final____interview__{date}.pdf\"").as_str()
    );
}

#[tokio::test]
async fn report_is_404_for_a_run_of_another_users_media_and_for_a_missing_run() {
    let app = TestApp::spawn().await;
    let (owner_id, _) = app.signup(&unique_email(), "password123").await;
    let (_, other_token) = app.signup(&unique_email(), "password123").await;
    let media_id = insert_media(&app.db, &owner_id, "clip.mp4", "VIDEO").await;
    let run_id = insert_run(&app.db, media_id, 1, "ANALYZED", 1, None).await;
    insert_analysis(&app.db, run_id, "SIGLIP-LSTM-V4", "COMPLETED", "REAL", 10).await;

    let (status, v) = body(app.get_auth(&report_path(run_id), &other_token).await).await;
    assert_eq!(status, 404);
    assert_error(&v, 404, NOT_FOUND, &[]);
    let (status, v) = body(app.get_auth(&report_path(Uuid::new_v4()), &other_token).await).await;
    assert_eq!(status, 404);
    assert_error(&v, 404, NOT_FOUND, &[]);
}

#[tokio::test]
async fn report_is_400_for_an_invalid_run_id_and_401_without_credentials() {
    let app = TestApp::spawn().await;
    let (_, token) = app.signup(&unique_email(), "password123").await;
    let (status, v) = body(app.get_auth(&report_path("not-a-uuid"), &token).await).await;
    assert_eq!(status, 400);
    assert_error(&v, 400, "Validation failed", &["Invalid run id"]);

    let r = app.http.get(app.url(&report_path(Uuid::new_v4()))).send().await.expect("request");
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn reports_are_generated_for_failed_cancelled_and_in_flight_runs() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.signup(&unique_email(), "password123").await;
    let media_id = insert_media(&app.db, &user_id, "voice.mp3", "AUDIO").await;

    let failed = insert_run(&app.db, media_id, 1, "FAILED", 0, Some("No compatible models available for AUDIO")).await;
    let cancelled = insert_run(&app.db, media_id, 2, "CANCELLED", 2, Some("Analysis cancelled")).await;
    insert_analysis(&app.db, cancelled, "SCATTERING-WAVE-V1", "COMPLETED", "REAL", 0).await;
    insert_analysis(&app.db, cancelled, "OTHER-AUDIO-V1", "CANCELLED", "", 0).await;
    let in_flight = insert_run(&app.db, media_id, 3, "PROCESSING", 2, None).await;
    insert_analysis(&app.db, in_flight, "SCATTERING-WAVE-V1", "RUNNING", "", 0).await;
    insert_analysis(&app.db, in_flight, "OTHER-AUDIO-V1", "PENDING", "", 0).await;

    let expectations = [
        (failed, vec!["INCONCLUSIVE", "UNKNOWN", "FAILED", "No compatible models available for AUDIO"]),
        (cancelled, vec!["AUTHENTIC", "CANCELLED", "Analysis cancelled", "SCATTERING-WAVE-V1", "OTHER-AUDIO-V1"]),
        (in_flight, vec!["INCONCLUSIVE", "PROCESSING", "RUNNING", "PENDING", "still in progress"]),
    ];
    for (run_id, needles) in expectations {
        let (headers, bytes) = download(&app, &token, run_id).await;
        assert_eq!(headers["content-type"], "application/pdf");
        let pdf = Pdf::save(&bytes);
        let pages = pdf.pages();
        let flat = squashed(&pages.join("\n"));
        for needle in needles {
            assert!(flat.contains(needle), "{needle:?} missing from the report of run {run_id}:\n{flat}");
        }
        assert_eq!(pdf.rasterize(), pages.len());
    }
}

#[tokio::test]
async fn five_model_run_with_300_frame_results_spans_several_pages_with_a_chart_per_model() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.signup(&unique_email(), "password123").await;
    let media_id = insert_media(&app.db, &user_id, "long_clip.mp4", "VIDEO").await;
    let run_id = insert_run(&app.db, media_id, 1, "ANALYZED", 5, None).await;
    let models = ["SIGLIP-LSTM-V4", "EFFICIENTNET-B7-V1", "COLOR-CUES-LSTM-V1", "EYEBLINK-CNN-LSTM-V1", "MFF-MOE-V1"];
    for (i, model) in models.iter().enumerate() {
        insert_analysis(&app.db, run_id, model, "COMPLETED", if i % 2 == 0 { "REAL" } else { "FAKE" }, 300).await;
    }

    let (_, bytes) = download(&app, &token, run_id).await;
    let pdf = Pdf::save(&bytes);
    let pages = pdf.pages();
    assert!(pages.len() >= 3, "expected several pages, got {}", pages.len());
    let text = pages.join("\n");
    assert!(text.contains("AUTHENTIC"), "3 REAL vs 2 FAKE is AUTHENTIC");
    for model in models {
        assert!(text.contains(&format!("Frame scores — {model}")), "chart of {model} missing");
    }
    assert_eq!(text.matches("threshold 0.5").count(), models.len(), "every chart marks the threshold");
    assert!(squashed(&text).contains("300 / 300"), "frames analysed / frame count missing");
    for (i, page) in pages.iter().enumerate() {
        assert!(page.contains(&format!("Page {} of {}", i + 1, pages.len())));
    }
    assert_eq!(pdf.rasterize(), pages.len());
}

#[tokio::test]
async fn model_table_repeats_its_header_on_every_page_it_spans() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.signup(&unique_email(), "password123").await;
    let media_id = insert_media(&app.db, &user_id, "crowded.mp4", "VIDEO").await;
    let run_id = insert_run(&app.db, media_id, 1, "ANALYZED", 45, None).await;
    for i in 0..45 {
        insert_analysis(&app.db, run_id, &format!("MODEL-{i:02}"), "COMPLETED", "REAL", 0).await;
    }

    let (_, bytes) = download(&app, &token, run_id).await;
    let pdf = Pdf::save(&bytes);
    let pages = pdf.pages();
    let lines = |page: &String| page.lines().map(squashed).collect::<Vec<_>>();
    let is_header = |l: &String| l == "Model Category Status Prediction Confidence Processing time";
    // Table rows read "MODEL-07 Video COMPLETED REAL 79.0% 3.50 s"; the detail headings lack the category.
    let is_row = |l: &String| l.starts_with("MODEL-") && l.contains(" Video COMPLETED ");
    let table_pages: Vec<Vec<String>> = pages.iter().map(lines).filter(|ls| ls.iter().any(is_row)).collect();
    assert!(table_pages.len() >= 2, "45 rows should not fit on one page");
    for page in &table_pages {
        let header_at = page.iter().position(is_header).expect("a page with table rows has the header");
        let first_row = page.iter().position(is_row).expect("rows");
        assert!(header_at < first_row, "the header comes before the rows");
    }
    assert_eq!(table_pages.iter().flatten().filter(|l| is_row(l)).count(), 45, "every row is shown once");
    assert!(pages.iter().any(|p| p.contains("Model comparison (continued)")));
}
