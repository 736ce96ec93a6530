//! Start-up: configuration errors stop the process with one line and exit status 2; readiness
//! checks the real dependencies.

use std::collections::HashMap;
use std::process::Command;

use crate::support::{Temporal, TestApp, Turn, body};

fn run_api_with(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!("api-startup-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_api"));
    cmd.env_clear().current_dir(&dir);
    let base = [
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ("SERVER_URL", "http://127.0.0.1:8000"),
        ("SERVER_API_KEY", "k"),
    ];
    let mut vars: HashMap<&str, &str> = base.into_iter().collect();
    for (k, v) in env {
        if v.is_empty() {
            vars.remove(k);
        } else {
            vars.insert(k, v);
        }
    }
    cmd.envs(vars);
    let out = cmd.output().expect("run api");
    let _ = std::fs::remove_dir_all(dir);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_config_error(env: &[(&str, &str)], var: &str, secret: Option<&str>) {
    let (code, stderr) = run_api_with(env);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(var), "{stderr}");
    if let Some(secret) = secret {
        assert!(!stderr.contains(secret), "{stderr}");
    }
}

#[test]
fn missing_database_url_stops_the_api_with_status_2() {
    assert_config_error(&[("DATABASE_URL", "")], "DATABASE_URL", None);
}

#[test]
fn a_10_byte_jwt_secret_stops_the_api_with_status_2() {
    assert_config_error(&[("JWT_SECRET", "0123456789")], "JWT_SECRET", Some("0123456789"));
}

#[test]
fn the_sample_jwt_secret_of_env_example_stops_the_api_with_status_2() {
    let sample = "change-me-to-a-random-string-of-at-least-32-bytes";
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.env.example")).expect("example");
    assert!(example.contains(&format!("JWT_SECRET={sample}")));
    assert_config_error(&[("JWT_SECRET", sample)], "JWT_SECRET", Some(sample));
    let repeated = "x".repeat(48);
    assert_config_error(&[("JWT_SECRET", &repeated)], "JWT_SECRET", Some(&repeated));
}

#[test]
fn a_non_numeric_port_stops_the_api_with_status_2() {
    assert_config_error(&[("PORT", "abc")], "PORT", None);
}

#[test]
fn a_frontend_url_that_is_not_a_url_stops_the_api_with_status_2() {
    assert_config_error(&[("FRONTEND_URL", "not a url")], "FRONTEND_URL", None);
}

#[tokio::test]
async fn ready_checks_postgres_redis_and_temporal_for_real() {
    let mut app = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let (status, v) = body(app.http.get(app.url("/api/ready")).send().await.expect("req")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        serde_json::json!({"success": true, "message": "Ready", "checks": {"postgres": "ok", "redis": "ok", "temporal": "ok", "storage": "ok"}})
    );
    drop(app.temporal.take());
    let (status, v) = body(app.http.get(app.url("/api/ready")).send().await.expect("req")).await;
    assert_eq!(status, 503);
    assert_eq!(v["checks"]["temporal"], "unavailable");
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_text_format_with_route_labels() {
    let app = TestApp::spawn().await;
    let token = app.signup(&crate::support::unique_email(), "correct-horse").await.1;
    let _ = app.get_auth("/api/v1/auth/profile", &token).await;
    let _ = app.http.get(app.url("/api/v1/unknown/path")).send().await.expect("req");
    app.metrics().await;
    let r = app.http.get(app.metrics_url()).send().await.expect("req");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/plain")));
    let text = r.text().await.expect("text");
    assert!(
        text.contains(r#"drishtiksha_http_requests_total{method="POST",route="/api/v1/auth/signup",status="201"}"#),
        "{text}"
    );
    assert!(text.contains(r#"route="/api/v1/auth/profile",status="200""#));
    assert!(text.contains(r#"route="unmatched",status="404""#));
    assert!(!text.contains("/api/v1/unknown/path"));
    assert!(text.contains("drishtiksha_http_request_duration_seconds_bucket"));
}

/// The series of the http metrics whose route is one of `routes`.
fn http_series(text: &str, routes: &[&str]) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("drishtiksha_http_"))
        .filter(|l| routes.iter().any(|r| l.contains(&format!("route=\"{r}\""))))
        .map(|l| l.rsplit_once(' ').map_or(l, |(series, _)| series).to_string())
        .collect()
}

#[tokio::test]
async fn random_paths_ids_and_methods_add_no_metric_series() {
    // Alone in this process: no other api adds series meanwhile.
    let app = TestApp::builder().turn(Turn::solo().await).spawn().await;
    let xfoo = reqwest::Method::from_bytes(b"XFOO").expect("method");
    let send = |method: reqwest::Method, path: String| {
        let req = app.http.request(method, app.url(&path));
        async move { req.send().await.expect("req").status().as_u16() }
    };
    // One of each kind first: the series these create are the fixed set.
    assert_eq!(send(reqwest::Method::GET, "/api/v1/media/warm-up".into()).await, 401);
    assert_eq!(send(reqwest::Method::GET, "/api/v1/no-such-route".into()).await, 404);
    assert_eq!(send(xfoo.clone(), "/api/v1/media/warm-up".into()).await, 405);
    assert_eq!(send(xfoo.clone(), "/api/v1/no-such-route".into()).await, 404);
    let routes = ["/api/v1/media/{id}", "unmatched"];
    let before = http_series(&app.metrics().await, &routes);
    assert!(before.iter().any(|l| l.contains(r#"route="/api/v1/media/{id}",status="401""#)), "{before:?}");
    assert!(before.iter().any(|l| l.contains(r#"method="OTHER",route="unmatched",status="405""#)), "{before:?}");

    let long_id = "x".repeat(30_000);
    for i in 0..20 {
        let id = uuid::Uuid::new_v4().simple().to_string();
        assert_eq!(send(reqwest::Method::GET, format!("/api/v1/media/{id}{i}")).await, 401);
        assert_eq!(send(reqwest::Method::GET, format!("/api/v1/{id}/{i}")).await, 404);
        assert_eq!(send(xfoo.clone(), format!("/api/v1/media/{id}")).await, 405);
        let other = reqwest::Method::from_bytes(format!("X{i}").as_bytes()).expect("method");
        assert_eq!(send(other, format!("/api/v1/{id}")).await, 404);
    }
    assert_eq!(send(reqwest::Method::GET, format!("/api/v1/media/{long_id}")).await, 401);

    let after_text = app.metrics().await;
    assert_eq!(http_series(&after_text, &routes), before);
    assert!(!after_text.contains("xxxxxxxxxx"), "a client-chosen id became a label");
    assert!(!after_text.contains("method=\"X"), "a client-chosen method became a label");
}

#[tokio::test]
async fn metrics_are_not_served_on_the_public_port() {
    let app = TestApp::spawn().await;
    assert_eq!(app.http.get(app.url("/api/health")).send().await.expect("req").status(), 200);
    assert!(app.metrics().await.contains("drishtiksha_http_requests_total"));
    let (status, v) = body(app.http.get(app.url("/metrics")).send().await.expect("req")).await;
    assert_eq!(status, 404);
    assert_eq!(v["message"], "Route not found.");
}

#[test]
fn without_metrics_addr_metrics_listen_on_the_loopback_interface() {
    assert!(drishtiksha_api::DEFAULT_METRICS_ADDR.ip().is_loopback());
}

mod slow_clients {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use crate::support::TestApp;

    /// Everything the server sends until it closes the connection; fails if it is still open
    /// after `deadline` (far beyond the configured timeouts).
    async fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> Vec<u8> {
        let mut out = Vec::new();
        match tokio::time::timeout(deadline, stream.read_to_end(&mut out)).await {
            Ok(_) => out,
            Err(_) => panic!("the connection is still open; received so far: {:?}", String::from_utf8_lossy(&out)),
        }
    }

    async fn app_with_timeouts() -> TestApp {
        TestApp::builder().env("HTTP_HEADER_TIMEOUT", "1").env("HTTP_BODY_TIMEOUT", "1").spawn().await
    }

    #[tokio::test]
    async fn a_partial_request_line_is_closed_after_the_header_timeout() {
        let app = app_with_timeouts().await;
        let mut s = TcpStream::connect(app.addr).await.expect("connect");
        s.write_all(b"GET /api/hea").await.expect("write");
        read_until_closed(&mut s, Duration::from_secs(20)).await;
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
        let app = app_with_timeouts().await;
        let mut s = TcpStream::connect(app.addr).await.expect("connect");
        s.write_all(b"GET /api/health HTTP/1.1\r\nHost: api\r\n\r\n").await.expect("write");
        let got = read_until_closed(&mut s, Duration::from_secs(20)).await;
        assert!(got.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&got));
    }

    #[tokio::test]
    async fn a_body_that_stops_is_answered_and_closed_after_the_body_timeout() {
        let app = app_with_timeouts().await;
        let mut s = TcpStream::connect(app.addr).await.expect("connect");
        let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
        s.write_all(head.as_bytes()).await.expect("write");
        s.write_all(br#"{"email":"#).await.expect("write");
        let got = read_until_closed(&mut s, Duration::from_secs(20)).await;
        assert!(got.starts_with(b"HTTP/1.1 400"), "{:?}", String::from_utf8_lossy(&got));
    }

    #[tokio::test]
    async fn connections_past_the_maximum_wait_until_one_closes() {
        let app = TestApp::builder().env("HTTP_MAX_CONNECTIONS", "2").spawn().await;
        let request = b"GET /api/health HTTP/1.1\r\nHost: api\r\n\r\n";
        let mut buf = [0u8; 512];
        let mut open = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(app.addr).await.expect("connect");
            s.write_all(request).await.expect("write");
            let n = s.read(&mut buf).await.expect("read");
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            open.push(s);
        }
        let mut third = TcpStream::connect(app.addr).await.expect("connect");
        third.write_all(request).await.expect("write");
        assert!(
            tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await.is_err(),
            "a third connection was served past the maximum of two"
        );
        drop(open.remove(0));
        let n = tokio::time::timeout(Duration::from_secs(20), third.read(&mut buf))
            .await
            .expect("served once a connection closed")
            .expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    }
}
