//! Start-up: configuration errors stop the process with one line and exit status 2; readiness
//! checks the real dependencies.

mod support;

use std::collections::HashMap;
use std::process::Command;

use support::{TestApp, body};

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
fn a_non_numeric_port_stops_the_api_with_status_2() {
    assert_config_error(&[("PORT", "abc")], "PORT", None);
}

#[test]
fn a_frontend_url_that_is_not_a_url_stops_the_api_with_status_2() {
    assert_config_error(&[("FRONTEND_URL", "not a url")], "FRONTEND_URL", None);
}

#[tokio::test]
async fn ready_checks_postgres_redis_and_temporal_for_real() {
    let temporal = drishtiksha_testkit::TemporalDevServer::start().expect("temporal");
    let app = TestApp::spawn_with(HashMap::from([("TEMPORAL_ADDRESS", temporal.address())])).await;
    let (status, v) = body(app.http.get(app.url("/api/ready")).send().await.expect("req")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        serde_json::json!({"success": true, "message": "Ready", "checks": {"postgres": "ok", "redis": "ok", "temporal": "ok"}})
    );
    drop(temporal);
    let (status, v) = body(app.http.get(app.url("/api/ready")).send().await.expect("req")).await;
    assert_eq!(status, 503);
    assert_eq!(v["checks"]["temporal"], "unavailable");
}
