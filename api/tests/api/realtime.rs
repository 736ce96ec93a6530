//! Socket.IO over the official `socket.io-client` (Node): handshake rules, the relay of the
//! Redis progress channel to the right user's sockets, several api instances, Redis restarts.

use std::time::Duration;

use crate::support::socket::SocketClient;
use crate::support::{TestApp, unique_email};
use serde_json::{Value, json};
use uuid::Uuid;

const CHANNEL: &str = "media-progress-events";
const WAIT: Duration = Duration::from_secs(20);

/// Events up to and including the first `progress_update` whose message is `marker` (late copies
/// of the subscription probes are skipped).
async fn events_until(client: &mut SocketClient, marker: &str) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    loop {
        let (name, payload) = client.event().await;
        if payload["event"] == "PING" {
            continue;
        }
        let done = name == "progress_update" && payload["message"] == marker;
        seen.push((name, payload));
        if done {
            return seen;
        }
    }
}

async fn publish(redis_url: &str, msg: &Value) {
    let client = redis::Client::open(redis_url).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let _: i64 = redis::cmd("PUBLISH").arg(CHANNEL).arg(msg.to_string()).query_async(&mut conn).await.expect("publish");
}

async fn publish_raw(redis_url: &str, raw: &str) {
    let client = redis::Client::open(redis_url).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let _: i64 = redis::cmd("PUBLISH").arg(CHANNEL).arg(raw).query_async(&mut conn).await.expect("publish");
}

fn msg(media: &str, user: &str, event: &str, message: &str, data: Value) -> Value {
    json!({"media_id": media, "user_id": user, "event": event, "message": message, "data": data})
}

/// A media row with one run, inserted directly; returns (media id, run id).
async fn media_with_run(app: &TestApp, user_id: &str) -> (Uuid, Uuid) {
    let media_id = Uuid::new_v4();
    let run_id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO media (id, user_id, filename, storage_key, mimetype, size, media_type, latest_analysis_run_id)
         VALUES ($1, $2::uuid, 'face.png', $3, 'image/png', 10, 'IMAGE', $4)",
    )
    .bind(media_id)
    .bind(user_id)
    .bind(format!("images/{media_id}.png"))
    .bind(run_id)
    .execute(&app.db)
    .await
    .expect("media");
    sqlx::query("INSERT INTO analysis_runs (id, media_id, run_number, workflow_id) VALUES ($1, $2, 1, $3)")
        .bind(run_id)
        .bind(media_id)
        .bind(format!("media-{media_id}-run-1"))
        .execute(&app.db)
        .await
        .expect("run");
    (media_id, run_id)
}

/// Publishes `marker` messages until one reaches the client: the listener is subscribed.
async fn until_subscribed(redis_url: &str, client: &mut SocketClient, user_id: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let probe = format!("subscribed? {}", Uuid::new_v4());
    loop {
        publish(redis_url, &msg(&Uuid::new_v4().to_string(), user_id, "PING", &probe, json!({}))).await;
        match tokio::time::timeout(Duration::from_millis(300), client.event()).await {
            Ok((name, p)) if name == "progress_update" && p["message"] == probe.as_str() => return,
            _ if tokio::time::Instant::now() > deadline => panic!("listener never subscribed"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn handshakes_without_a_valid_token_of_an_active_user_get_connect_error_messages() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.signup(&unique_email(), "correct-horse").await;

    let mut c = SocketClient::start(app.addr, None, "both").await;
    assert_eq!(c.next().await, json!({"kind": "connect_error", "message": "Authentication error: No token provided."}));
    let mut c = SocketClient::start(app.addr, Some("not-a-jwt"), "both").await;
    assert_eq!(c.next().await, json!({"kind": "connect_error", "message": "Authentication error: Invalid token."}));

    let now = chrono::Utc::now().timestamp();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"userId": user_id, "email": "x", "role": "USER", "iat": now - 7200, "exp": now - 3600}),
        &jsonwebtoken::EncodingKey::from_secret(b"test-secret-0123456789abcdef0123456789"),
    )
    .expect("sign");
    let mut c = SocketClient::start(app.addr, Some(&expired), "websocket").await;
    assert_eq!(c.next().await, json!({"kind": "connect_error", "message": "Authentication error: Invalid token."}));

    let (other_id, other_token) = app.signup(&unique_email(), "correct-horse").await;
    sqlx::query("DELETE FROM users WHERE id = $1::uuid").bind(&other_id).execute(&app.db).await.expect("delete");
    let mut c = SocketClient::start(app.addr, Some(&other_token), "websocket").await;
    assert_eq!(
        c.next().await,
        json!({"kind": "connect_error", "message": "Authentication error: User not found or inactive."})
    );

    let mut c = SocketClient::start(app.addr, Some(&token), "polling").await;
    assert_eq!(c.next().await, json!({"kind": "connect", "transport": "polling"}));
    let mut c = SocketClient::start(app.addr, Some(&token), "websocket").await;
    assert_eq!(c.next().await, json!({"kind": "connect", "transport": "websocket"}));
}

#[tokio::test]
async fn channel_messages_become_progress_updates_and_typed_events_in_order() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.signup(&unique_email(), "correct-horse").await;
    let (media_id, run_id) = media_with_run(&app, &user_id).await;
    let mut client = SocketClient::connected(app.addr, &token).await;
    until_subscribed(&app.redis_url, &mut client, &user_id).await;
    let m = media_id.to_string();
    let r = run_id.to_string();

    let sequence = [
        msg(
            &m,
            &user_id,
            "MEDIA_UPLOADED",
            "uploaded",
            json!({"filename": "face.png", "mediaType": "IMAGE", "status": "QUEUED", "runId": r, "runNumber": 1}),
        ),
        msg(
            &m,
            &user_id,
            "ANALYSIS_STARTED",
            "started",
            json!({"model_name": "M1", "filename": "face.png", "runId": r, "phase": "analyzing", "attempt": 1}),
        ),
        // From the ML server: no runId; 3 of 8 → 38 %.
        msg(
            &m,
            &user_id,
            "FRAME_ANALYSIS_PROGRESS",
            "Processed window 3/8",
            json!({"model_name": "M1", "progress": 3, "total": 8, "details": null}),
        ),
        msg(
            &m,
            &user_id,
            "FRAME_ANALYSIS_PROGRESS",
            "Starting",
            json!({"model_name": "M1", "progress": 0, "total": null, "details": {"phase": "initialization"}}),
        ),
        msg(
            &m,
            &user_id,
            "ANALYSIS_COMPLETED",
            "done",
            json!({"model_name": "M1", "filename": "face.png", "runId": r, "analysisId": "a1", "prediction": "FAKE", "confidence": 0.91, "processingTime": 1.2, "phase": "completed"}),
        ),
        msg(
            &m,
            &user_id,
            "ANALYSIS_FAILED",
            "failed",
            json!({"model_name": "M2", "filename": "face.png", "runId": r, "analysisId": "a2", "error_message": "Model analysis service is unavailable.", "attempts": 3, "phase": "failed"}),
        ),
        msg(
            &m,
            &user_id,
            "ANALYSIS_COMPLETE",
            "finished",
            json!({"runId": r, "runNumber": 1, "finalStatus": "ANALYZED", "totalAnalyses": 2, "completedAnalyses": 1, "failedAnalyses": 1, "pendingAnalyses": 0, "errorMessage": null, "filename": "face.png"}),
        ),
        msg(&m, &user_id, "END", "end", json!({})),
    ];
    for s in &sequence {
        publish(&app.redis_url, s).await;
    }
    let events = events_until(&mut client, "end").await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "progress_update",
            "media_uploaded",
            "progress_update",
            "analysis_started",
            "progress_update",
            "analysis_progress",
            "progress_update",
            "progress_update",
            "analysis_completed",
            "progress_update",
            "analysis_failed",
            "processing_error",
            "progress_update",
            "run_finalized",
            "media_update",
            "progress_update",
        ]
    );
    let get = |i: usize| &events[i].1;
    assert_eq!(get(0)["mediaId"], m.as_str());
    assert_eq!(get(0)["userId"], user_id.as_str());
    assert_eq!(get(0)["event"], "MEDIA_UPLOADED");
    assert_eq!(get(0)["data"]["runId"], r.as_str());
    assert!(get(0)["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(
        get(1),
        &json!({"userId": user_id, "mediaId": m, "filename": "face.png", "status": "QUEUED", "mediaType": "IMAGE", "analysisRunId": r, "runNumber": 1})
    );
    assert_eq!(
        get(3),
        &json!({"userId": user_id, "mediaId": m, "analysisRunId": r, "runNumber": 1, "modelName": "M1", "attempt": 1})
    );
    assert_eq!(
        get(5),
        &json!({"userId": user_id, "mediaId": m, "analysisRunId": r, "modelName": "M1", "progress": 38})
    );
    assert_eq!(
        get(8),
        &json!({"userId": user_id, "mediaId": m, "analysisRunId": r, "analysisId": "a1", "modelName": "M1", "prediction": "FAKE", "confidence": 0.91})
    );
    assert_eq!(
        get(10),
        &json!({"userId": user_id, "mediaId": m, "analysisRunId": r, "modelName": "M2", "error": "Model analysis service is unavailable."})
    );
    assert_eq!(
        get(11),
        &json!({"mediaId": m, "filename": "face.png", "runId": r, "modelName": "M2", "error": "Model analysis service is unavailable."})
    );
    assert_eq!(
        get(13),
        &json!({"userId": user_id, "mediaId": m, "analysisRunId": r, "runNumber": 1, "finalStatus": "ANALYZED", "totalModels": 2, "completedCount": 1, "failedCount": 1, "errorMessage": null})
    );
    let media_update = get(14);
    assert_eq!(media_update["id"], m.as_str());
    assert_eq!(media_update["user"]["id"], user_id.as_str());
    assert_eq!(media_update["analysisRuns"][0]["id"], r.as_str());
    let detail: Value = app.get_auth(&format!("/api/v1/media/{m}"), &token).await.json().await.expect("json");
    assert_eq!(media_update, &detail["data"], "media_update must equal GET /media/:id");
}

#[tokio::test]
async fn no_event_ever_reaches_another_users_socket() {
    let app = TestApp::spawn().await;
    let (alice, alice_token) = app.signup(&unique_email(), "correct-horse").await;
    let (bob, bob_token) = app.signup(&unique_email(), "correct-horse").await;
    let mut a = SocketClient::connected(app.addr, &alice_token).await;
    let mut b = SocketClient::connected(app.addr, &bob_token).await;
    until_subscribed(&app.redis_url, &mut a, &alice).await;
    until_subscribed(&app.redis_url, &mut b, &bob).await;
    let (alice_media, alice_run) = media_with_run(&app, &alice).await;
    let (bob_media, bob_run) = media_with_run(&app, &bob).await;
    for i in 0..20 {
        for (user, media, run) in [(&alice, alice_media, alice_run), (&bob, bob_media, bob_run)] {
            publish(
                &app.redis_url,
                &msg(
                    &media.to_string(),
                    user,
                    "ANALYSIS_STARTED",
                    &format!("{user}-{i}"),
                    json!({"model_name": "M", "runId": run, "attempt": 1}),
                ),
            )
            .await;
        }
    }
    publish(&app.redis_url, &msg(&alice_media.to_string(), &alice, "END", "end", json!({}))).await;
    publish(&app.redis_url, &msg(&bob_media.to_string(), &bob, "END", "end", json!({}))).await;
    for (client, me, media) in [(&mut a, &alice, alice_media), (&mut b, &bob, bob_media)] {
        let events = events_until(client, "end").await;
        assert_eq!(events.len(), 41, "20 × (progress_update + analysis_started) + end");
        for (_, p) in &events {
            assert_eq!(p["userId"], me.as_str());
            assert_eq!(p["mediaId"], media.to_string());
        }
    }
}

#[tokio::test]
async fn malformed_channel_messages_are_dropped() {
    let app = TestApp::spawn().await;
    let (user, token) = app.signup(&unique_email(), "correct-horse").await;
    let mut c = SocketClient::connected(app.addr, &token).await;
    until_subscribed(&app.redis_url, &mut c, &user).await;
    publish_raw(&app.redis_url, "not json").await;
    publish(&app.redis_url, &json!({"user_id": user, "event": "X", "message": "no media"})).await;
    publish(&app.redis_url, &json!({"media_id": "", "user_id": user, "event": "X", "message": "empty media"})).await;
    publish(&app.redis_url, &json!({"media_id": "m", "user_id": user, "event": 5, "message": "bad event"})).await;
    publish(&app.redis_url, &msg("m", &user, "END", "end", json!({}))).await;
    let events = events_until(&mut c, "end").await;
    assert_eq!(events.len(), 1, "{events:?}");
}

#[tokio::test]
async fn every_api_instance_relays_to_its_own_sockets() {
    let app = TestApp::spawn().await;
    let (peer_addr, _peer) = app.spawn_peer().await;
    let (user, token) = app.signup(&unique_email(), "correct-horse").await;
    let mut on_first = SocketClient::connected(app.addr, &token).await;
    let mut on_peer = SocketClient::connected(peer_addr, &token).await;
    until_subscribed(&app.redis_url, &mut on_first, &user).await;
    until_subscribed(&app.redis_url, &mut on_peer, &user).await;
    publish(&app.redis_url, &msg("m1", &user, "FRAME_ANALYSIS_PROGRESS", "hello", json!({"model_name": "M"}))).await;
    publish(&app.redis_url, &msg("m1", &user, "END", "end", json!({}))).await;
    for c in [&mut on_first, &mut on_peer] {
        let events = events_until(c, "end").await;
        let messages: Vec<&Value> = events.iter().map(|(_, p)| &p["message"]).collect();
        assert_eq!(messages, vec!["hello", "end"]);
    }
}

#[tokio::test]
async fn the_listener_resubscribes_after_redis_restarts() {
    let mut app = TestApp::spawn().await;
    let (user, token) = app.signup(&unique_email(), "correct-horse").await;
    let mut c = SocketClient::connected(app.addr, &token).await;
    until_subscribed(&app.redis_url, &mut c, &user).await;
    app.redis.restart().await.expect("restart redis");
    until_subscribed(&app.redis_url, &mut c, &user).await;
    publish(&app.redis_url, &msg("m1", &user, "AFTER_RESTART", "after", json!({}))).await;
    let events = events_until(&mut c, "after").await;
    assert_eq!(events.last().map(|(_, p)| p["event"].clone()), Some(json!("AFTER_RESTART")));
}

#[tokio::test]
async fn a_websocket_message_over_1_mb_disconnects_the_client_and_one_under_it_does_not() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.signup(&unique_email(), "correct-horse").await;

    let mut big =
        SocketClient::start_with(app.addr, Some(&token), "websocket", 120, &["--emit-bytes", "2000000"]).await;
    assert_eq!(big.next().await["kind"], "connect");
    let next = big.next().await;
    assert_eq!(next["kind"], "disconnect", "{next}");

    let mut small =
        SocketClient::start_with(app.addr, Some(&token), "websocket", 120, &["--emit-bytes", "500000"]).await;
    assert_eq!(small.next().await["kind"], "connect");
    // Still connected: it receives the relay's events.
    until_subscribed(&app.redis_url, &mut small, &user_id).await;
}

#[tokio::test]
async fn a_token_revoked_by_logout_is_refused_at_the_handshake() {
    let app = TestApp::spawn().await;
    let (_, token) = app.signup(&unique_email(), "correct-horse").await;
    let r = app.http.post(app.url("/api/v1/auth/logout")).bearer_auth(&token).send().await.expect("logout");
    assert_eq!(r.status(), 200);
    let mut c = SocketClient::start(app.addr, Some(&token), "websocket").await;
    assert_eq!(c.next().await, json!({"kind": "connect_error", "message": "Authentication error: Invalid token."}));
}
