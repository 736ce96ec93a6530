//! Media and run endpoints (§4.3): shapes, messages, ownership, PATCH rules, re-runs, cancel.
//! Workflows are started on a task queue no worker polls, so runs stay QUEUED until a test ends
//! them through the database layer.

use serde_json::{Value, json};

use crate::support::{Temporal, TestApp, assert_error, assert_timestamp, keys};

const NOT_FOUND: &str = "Media not found or you do not have permission.";
const RUN_NOT_FOUND: &str = "Analysis run not found or you do not have permission.";
const MEDIA_KEYS: [&str; 15] = [
    "id",
    "filename",
    "url",
    "publicId",
    "mimetype",
    "size",
    "description",
    "status",
    "mediaType",
    "hasAudio",
    "metadata",
    "userId",
    "createdAt",
    "updatedAt",
    "latestAnalysisRunId",
];
const RUN_KEYS: [&str; 12] = [
    "id",
    "mediaId",
    "runNumber",
    "status",
    "totalModels",
    "completedCount",
    "failedCount",
    "errorMessage",
    "createdAt",
    "updatedAt",
    "completedAt",
    "analyses",
];

fn with_relations() -> Vec<String> {
    MEDIA_KEYS.iter().map(|k| k.to_string()).chain(["user".to_string(), "analysisRuns".to_string()]).collect()
}

async fn latest_run_id(api: &TestApp, media_id: &str) -> String {
    let id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM analysis_runs WHERE media_id = $1::uuid ORDER BY run_number DESC LIMIT 1")
            .bind(media_id)
            .fetch_one(&api.db)
            .await
            .expect("run");
    id.to_string()
}

#[tokio::test]
async fn upload_returns_202_with_the_media_without_relations_and_run_1_queued() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let (user_id, token) = api.new_user().await;
    let r = api.upload(&token, "Clip.PNG", "image/png", crate::support::png_bytes(), Some("first look")).await;
    let (status, v) = crate::support::body(r).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(keys(&v), vec!["statusCode", "data", "message", "success"]);
    assert_eq!(v["statusCode"], 202);
    assert_eq!(v["message"], "Media uploaded and successfully queued for its first analysis run.");
    let m = &v["data"];
    assert_eq!(keys(m), MEDIA_KEYS.to_vec());
    let id = m["id"].as_str().expect("id");
    assert_eq!(m["filename"], "Clip.PNG");
    assert_eq!(m["publicId"], format!("images/{id}.png"));
    assert_eq!(m["url"], format!("http://files.example.test:3000/media/images/{id}.png"));
    assert_eq!(m["mimetype"], "image/png");
    assert_eq!(m["size"], crate::support::png_bytes().len());
    assert_eq!(m["description"], "first look");
    assert_eq!(m["status"], "QUEUED");
    assert_eq!(m["mediaType"], "IMAGE");
    assert_eq!(m["hasAudio"], Value::Null);
    assert_eq!(m["metadata"], Value::Null);
    assert_eq!(m["userId"], user_id);
    assert_timestamp(&m["createdAt"]);
    assert_timestamp(&m["updatedAt"]);
    let run_id = latest_run_id(&api, id).await;
    assert_eq!(m["latestAnalysisRunId"], run_id);
    let (run_number, status, workflow_id): (i32, String, String) =
        sqlx::query_as("SELECT run_number, status::text, workflow_id FROM analysis_runs WHERE id = $1::uuid")
            .bind(&run_id)
            .fetch_one(&api.db)
            .await
            .expect("run");
    assert_eq!((run_number, status.as_str()), (1, "QUEUED"));
    assert_eq!(workflow_id, format!("media-{id}-run-1"));
}

#[tokio::test]
async fn list_returns_only_the_callers_media_newest_first_with_the_latest_run() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let (user_id, token) = api.new_user().await;
    let (_, other) = api.new_user().await;
    let first = api.upload_png(&token).await;
    let second = api.upload_png(&token).await;
    api.upload_png(&other).await;

    let (status, v) = api.get("/api/v1/media", &token).await;
    assert_eq!(status, 200);
    assert_eq!(v["message"], "Success");
    let list = v["data"].as_array().expect("array");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], second["id"]);
    assert_eq!(list[1]["id"], first["id"]);
    for m in list {
        assert_eq!(keys(m), with_relations());
        assert_eq!(keys(&m["user"]), vec!["id", "firstName", "lastName", "email"]);
        assert_eq!(m["user"]["id"], user_id);
        let runs = m["analysisRuns"].as_array().expect("runs");
        assert_eq!(runs.len(), 1);
        assert_eq!(keys(&runs[0]), RUN_KEYS.to_vec());
        assert_eq!(runs[0]["status"], "QUEUED");
        assert_eq!(runs[0]["analyses"], json!([]));
        assert_eq!(runs[0]["completedAt"], Value::Null);
    }
    let (_, v) = api.get("/api/v1/media", &other).await;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn get_media_returns_every_run_newest_first_with_analyses() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let (_, token) = api.new_user().await;
    let media = api.upload_png(&token).await;
    let id = media["id"].as_str().expect("id");
    let run1 = latest_run_id(&api, id).await;
    api.finish_run(&run1).await;
    let (status, v) = api.post(&format!("/api/v1/media/{id}/analyze"), &token).await;
    assert_eq!(status, 202, "{v}");

    // Analyses of run 1, written as the worker would, come back createdAt ASC then modelName ASC.
    for (model, at) in
        [("ZETA", "2026-01-01T00:00:00Z"), ("ALPHA", "2026-01-01T00:00:01Z"), ("BETA", "2026-01-01T00:00:01Z")]
    {
        sqlx::query(
            "INSERT INTO deepfake_analyses (id, analysis_run_id, model_name, status, created_at)
             VALUES ($1, $2::uuid, $3, 'FAILED', $4::timestamptz)",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(&run1)
        .bind(model)
        .bind(at)
        .execute(&api.db)
        .await
        .expect("analysis");
    }

    let upper = id.to_uppercase();
    let (status, v) = api.get(&format!("/api/v1/media/{upper}"), &token).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["message"], "Success");
    let m = &v["data"];
    assert_eq!(keys(m), with_relations());
    let runs = m["analysisRuns"].as_array().expect("runs");
    assert_eq!(runs.iter().map(|r| r["runNumber"].clone()).collect::<Vec<_>>(), vec![json!(2), json!(1)]);
    assert_eq!(m["latestAnalysisRunId"], runs[0]["id"]);
    assert_eq!(runs[1]["status"], "FAILED");
    assert_eq!(runs[1]["errorMessage"], "No compatible models available for IMAGE");
    assert_timestamp(&runs[1]["completedAt"]);
    let names: Vec<_> =
        runs[1]["analyses"].as_array().expect("analyses").iter().map(|a| a["modelName"].clone()).collect();
    assert_eq!(names, vec![json!("ZETA"), json!("ALPHA"), json!("BETA")]);
    let a = &runs[1]["analyses"][0];
    assert_eq!(
        keys(a),
        vec![
            "id",
            "analysisRunId",
            "modelName",
            "modelUsed",
            "status",
            "prediction",
            "confidence",
            "errorMessage",
            "processingTime",
            "mediaType",
            "resultPayload",
            "createdAt",
            "updatedAt"
        ]
    );
    assert_eq!(a["analysisRunId"], run1);
    assert_eq!(a["modelUsed"], Value::Null);
    assert_eq!(a["prediction"], "N/A");
    assert_eq!(a["createdAt"], "2026-01-01T00:00:00.000Z");
}

#[tokio::test]
async fn media_of_other_users_and_missing_media_are_404_on_every_route() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let (_, owner) = api.new_user().await;
    let (_, intruder) = api.new_user().await;
    let media = api.upload_png(&owner).await;
    let id = media["id"].as_str().expect("id");
    let run = latest_run_id(&api, id).await;
    let missing = uuid::Uuid::new_v4();

    for target in [id.to_string(), missing.to_string()] {
        let (s, v) = api.get(&format!("/api/v1/media/{target}"), &intruder).await;
        assert_eq!(s, 404);
        assert_error(&v, 404, NOT_FOUND, &[]);
        let (s, v) = api.patch(&format!("/api/v1/media/{target}"), &intruder, json!({"description": "x"})).await;
        assert_error(&v, 404, NOT_FOUND, &[]);
        assert_eq!(s, 404);
        let (s, v) = api.delete(&format!("/api/v1/media/{target}"), &intruder).await;
        assert_eq!(s, 404);
        assert_error(&v, 404, NOT_FOUND, &[]);
        let (s, v) = api.post(&format!("/api/v1/media/{target}/analyze"), &intruder).await;
        assert_eq!(s, 404);
        assert_error(&v, 404, NOT_FOUND, &[]);
        let (s, v) = api.get(&format!("/api/v1/media/{target}/runs/{run}"), &intruder).await;
        assert_eq!(s, 404);
        assert_error(&v, 404, RUN_NOT_FOUND, &[]);
        let (s, v) = api.post(&format!("/api/v1/media/{target}/runs/{run}/cancel"), &intruder).await;
        assert_eq!(s, 404);
        assert_error(&v, 404, RUN_NOT_FOUND, &[]);
    }
    // Nothing changed for the owner.
    let (s, v) = api.get(&format!("/api/v1/media/{id}"), &owner).await;
    assert_eq!(s, 200);
    assert_eq!(v["data"]["analysisRuns"][0]["status"], "QUEUED");
}

#[tokio::test]
async fn invalid_ids_are_400_before_anything_else() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let (_, token) = api.new_user().await;
    let media = api.upload_png(&token).await;
    let id = media["id"].as_str().expect("id");
    let (s, v) = api.get("/api/v1/media/not-a-uuid", &token).await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "Validation failed", &["Invalid media id"]);
    let (s, v) = api.patch("/api/v1/media/123", &token, json!({"nope": 1})).await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "Validation failed", &["Invalid media id"]);
    let (s, v) = api.post("/api/v1/media/123/analyze", &token).await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "Validation failed", &["Invalid media id"]);
    let (s, v) = api.get(&format!("/api/v1/media/{id}/runs/zzz"), &token).await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "Validation failed", &["Invalid run id"]);
    let (s, v) = api.post(&format!("/api/v1/media/{id}/runs/zzz/cancel"), &token).await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "Validation failed", &["Invalid run id"]);
    let (s, v) = api.post(&format!("/api/v1/media/bad/runs/{}/cancel", uuid::Uuid::new_v4()), &token).await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "Validation failed", &["Invalid media id"]);
}

#[tokio::test]
async fn patch_checks_id_then_ownership_then_body() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let (_, token) = api.new_user().await;
    let (_, other) = api.new_user().await;
    let media = api.upload_png(&token).await;
    let id = media["id"].as_str().expect("id");
    let path = format!("/api/v1/media/{id}");

    // Another user's media with a bad body: ownership first.
    let (s, v) = api.patch(&path, &other, json!({"filename": "x"})).await;
    assert_eq!(s, 404);
    assert_error(&v, 404, NOT_FOUND, &[]);
    let r = api.http.patch(api.url(&path)).bearer_auth(&other).body("{not json").send().await.expect("request");
    assert_eq!(r.status(), 404);

    let (s, v) = api.patch(&path, &token, json!({"filename": "x", "status": "ANALYZED"})).await;
    assert_eq!(s, 400);
    assert_error(
        &v,
        400,
        "Validation failed",
        &["Field 'filename' cannot be updated.", "Field 'status' cannot be updated."],
    );
    let (s, v) = api.patch(&path, &token, json!({"description": "x".repeat(501)})).await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "Validation failed", &["Description must be at most 500 characters"]);
    // PostgreSQL text cannot hold NUL: refused as invalid, not a failed write.
    let (s, v) = api.patch(&path, &token, json!({"description": "a\u{0}b"})).await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "Validation failed", &["Description contains an invalid character"]);
    let r = api
        .http
        .patch(api.url(&path))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    let (s, v) = crate::support::body(r).await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "Malformed JSON in request body.", &[]);

    let (s, v) = api.patch(&path, &token, json!({"description": "é".repeat(500)})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "Media updated successfully.");
    assert_eq!(keys(&v["data"]), MEDIA_KEYS.to_vec());
    assert_eq!(v["data"]["description"], "é".repeat(500));
    assert_eq!(v["data"]["filename"], "pixel.png");

    let (s, v) = api.patch(&path, &token, json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(v["data"]["description"], "é".repeat(500));
    let (s, v) = api.patch(&path, &token, json!({"description": null})).await;
    assert_eq!(s, 200);
    assert_eq!(v["data"]["description"], Value::Null);
}

#[tokio::test]
async fn rerun_is_409_while_a_run_is_active_and_creates_the_next_run_afterwards() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let (_, token) = api.new_user().await;
    let media = api.upload_png(&token).await;
    let id = media["id"].as_str().expect("id");
    let path = format!("/api/v1/media/{id}/analyze");

    let (s, v) = api.post(&path, &token).await;
    assert_eq!(s, 409);
    assert_error(&v, 409, "An analysis run is already in progress for this media.", &[]);

    api.finish_run(&latest_run_id(&api, id).await).await;
    let (s, v) = api.post(&path, &token).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["message"], "A new analysis run has been successfully queued for this media.");
    let m = &v["data"];
    assert_eq!(keys(m), with_relations());
    assert_eq!(m["status"], "QUEUED");
    assert_eq!(m["analysisRuns"][0]["runNumber"], 2);
    assert_eq!(m["analysisRuns"][0]["status"], "QUEUED");
    assert_eq!(m["analysisRuns"][0]["analyses"], json!([]));
    assert_eq!(m["latestAnalysisRunId"], m["analysisRuns"][0]["id"]);
    let wf: String = sqlx::query_scalar("SELECT workflow_id FROM analysis_runs WHERE run_number = 2")
        .fetch_one(&api.db)
        .await
        .expect("run 2");
    assert_eq!(wf, format!("media-{id}-run-2"));
    let (s, _) = api.post(&path, &token).await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn two_concurrent_reruns_queue_exactly_one_run() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let (_, token) = api.new_user().await;
    let media = api.upload_png(&token).await;
    let id = media["id"].as_str().expect("id");
    api.finish_run(&latest_run_id(&api, id).await).await;
    let path = format!("/api/v1/media/{id}/analyze");
    for round in 0..3 {
        let (a, b) = tokio::join!(api.post(&path, &token), api.post(&path, &token));
        let mut statuses = vec![a.0, b.0];
        statuses.sort();
        assert_eq!(statuses, vec![202, 409], "round {round}: {a:?} {b:?}");
        let active: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM analysis_runs WHERE status IN ('QUEUED','PROCESSING','PARTIALLY_ANALYZED')",
        )
        .fetch_one(&api.db)
        .await
        .expect("count");
        assert_eq!(active, 1);
        api.finish_run(&latest_run_id(&api, id).await).await;
    }
    let numbers: Vec<i32> = sqlx::query_scalar("SELECT run_number FROM analysis_runs ORDER BY run_number")
        .fetch_all(&api.db)
        .await
        .expect("runs");
    assert_eq!(numbers, vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn get_run_returns_the_run_with_its_analyses_only_under_its_own_media() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let (_, token) = api.new_user().await;
    let a = api.upload_png(&token).await;
    let b = api.upload_png(&token).await;
    let a_id = a["id"].as_str().expect("id");
    let run = latest_run_id(&api, a_id).await;

    let (s, v) = api.get(&format!("/api/v1/media/{a_id}/runs/{}", run.to_uppercase()), &token).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "Analysis run retrieved successfully.");
    assert_eq!(keys(&v["data"]), RUN_KEYS.to_vec());
    assert_eq!(v["data"]["id"], run);
    assert_eq!(v["data"]["mediaId"], a_id);
    assert_eq!(v["data"]["runNumber"], 1);
    assert_eq!(v["data"]["totalModels"], 0);
    assert_eq!(v["data"]["errorMessage"], Value::Null);

    let (s, v) = api.get(&format!("/api/v1/media/{}/runs/{run}", b["id"].as_str().expect("id")), &token).await;
    assert_eq!(s, 404);
    assert_error(&v, 404, RUN_NOT_FOUND, &[]);
    let (s, _) = api.get(&format!("/api/v1/media/{a_id}/runs/{}", uuid::Uuid::new_v4()), &token).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn cancel_is_202_while_active_repeatable_and_409_once_finished() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let (_, token) = api.new_user().await;
    let media = api.upload_png(&token).await;
    let id = media["id"].as_str().expect("id");
    let run = latest_run_id(&api, id).await;
    let path = format!("/api/v1/media/{id}/runs/{run}/cancel");

    let (s, v) = api.post(&path, &token).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["message"], "Cancellation requested for this analysis run.");
    assert_eq!(keys(&v["data"]), RUN_KEYS.to_vec());
    assert_eq!(v["data"]["id"], run);
    assert_eq!(v["data"]["status"], "QUEUED");
    // No worker runs this workflow, so the run is still cancelling: asking again is fine.
    let (s, _) = api.post(&path, &token).await;
    assert_eq!(s, 202);

    api.finish_run(&run).await;
    let (s, v) = api.post(&path, &token).await;
    assert_eq!(s, 409);
    assert_error(&v, 409, "Analysis run has already finished.", &[]);
}

#[tokio::test]
async fn cancelling_a_queued_run_whose_workflow_never_started_ends_it_cancelled_at_once() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let (_, token) = api.new_user().await;
    let media = api.upload_png(&token).await;
    let id = media["id"].as_str().expect("id");
    let run = latest_run_id(&api, id).await;
    // As if the upload had come while Temporal was away: the run is QUEUED and its workflow
    // does not exist (yet).
    sqlx::query("UPDATE analysis_runs SET workflow_id = $2 WHERE id = $1::uuid")
        .bind(&run)
        .bind(format!("media-{id}-never-started"))
        .execute(&api.db)
        .await
        .expect("workflow id");

    let path = format!("/api/v1/media/{id}/runs/{run}/cancel");
    let (s, v) = api.post(&path, &token).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["data"]["status"], "CANCELLED", "{v}");
    assert_eq!(v["data"]["errorMessage"], "Analysis cancelled");
    let (s, v) = api.get(&format!("/api/v1/media/{id}"), &token).await;
    assert_eq!(s, 200);
    assert_eq!(v["data"]["status"], "CANCELLED", "{v}");
    // Finished: a second cancel is refused like any other finished run's.
    let (s, v) = api.post(&path, &token).await;
    assert_error(&v, 409, "Analysis run has already finished.", &[]);
    assert_eq!(s, 409);
}

#[tokio::test]
async fn delete_removes_rows_and_file_and_everything_404s_afterwards() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let (_, token) = api.new_user().await;
    let media = api.upload_png(&token).await;
    let id = media["id"].as_str().expect("id");
    let key = media["publicId"].as_str().expect("key");
    api.finish_run(&latest_run_id(&api, id).await).await;
    let file = api.http.get(api.url(&format!("/media/{key}"))).send().await.expect("file");
    assert_eq!(file.status(), 200);

    let (s, v) = api.delete(&format!("/api/v1/media/{id}"), &token).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(keys(&v), vec!["statusCode", "data", "message", "success"]);
    assert_eq!(v["data"], json!({}));
    assert_eq!(v["message"], "Media deleted successfully.");
    assert_eq!(api.count("media").await, 0);
    assert_eq!(api.count("analysis_runs").await, 0);
    assert!(!api.storage_dir.join(key).exists());

    let (s, _) = api.get(&format!("/api/v1/media/{id}"), &token).await;
    assert_eq!(s, 404);
    let file = api.http.get(api.url(&format!("/media/{key}"))).send().await.expect("file");
    assert_eq!(file.status(), 404);
    let (s, _) = api.delete(&format!("/api/v1/media/{id}"), &token).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn delete_of_media_whose_file_is_already_gone_still_succeeds() {
    let api = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let (_, token) = api.new_user().await;
    let media = api.upload_png(&token).await;
    let id = media["id"].as_str().expect("id");
    std::fs::remove_file(api.storage_dir.join(media["publicId"].as_str().expect("key"))).expect("remove");
    // Run 1 is still queued: the delete asks Temporal to cancel it, waits briefly, then deletes.
    let (s, v) = api.delete(&format!("/api/v1/media/{id}"), &token).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(api.count("media").await, 0);
}
