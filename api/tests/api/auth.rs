//! Accounts and the HTTP conventions, over real HTTP against Postgres and Redis.

use crate::support::{TestApp, assert_error, body, unique_email};
use base64::Engine;
use serde_json::{Value, json};

const PASSWORD: &str = "correct-horse-battery";

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

fn sign(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("sign")
}

const SECRET: &[u8] = b"test-secret-0123456789abcdef0123456789";

#[tokio::test]
async fn signup_returns_201_with_user_and_token_and_no_cookie() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let r = app
        .post_json(
            "/api/v1/auth/signup",
            json!({"email": format!("  {}  ", email.to_uppercase()), "password": PASSWORD, "firstName": " Ada ", "lastName": "Lovelace"}),
        )
        .await;
    assert!(r.headers().get("set-cookie").is_none());
    let (status, v) = body(r).await;
    assert_eq!(status, 201);
    let keys: Vec<_> = v.as_object().expect("object").keys().cloned().collect();
    assert_eq!(keys, vec!["statusCode", "data", "message", "success"]);
    assert_eq!(v["message"], "User created successfully");
    let user = &v["data"]["user"];
    assert_eq!(user["email"], email);
    assert_eq!(user["firstName"], "Ada");
    assert_eq!(user["role"], "USER");
    assert_eq!(user["isActive"], true);
    assert!(user.get("passwordHash").is_none() && user.get("password").is_none());
    let created = user["createdAt"].as_str().expect("createdAt");
    assert_eq!(created.len(), 24, "{created}");
    assert!(created.ends_with('Z'));
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
        .bind(&email)
        .fetch_one(&app.db)
        .await
        .expect("row");
    assert!(hash.starts_with("$argon2id$"));
}

#[tokio::test]
async fn duplicate_email_is_409_also_under_concurrent_signups() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let req = || {
        app.post_json(
            "/api/v1/auth/signup",
            json!({"email": email, "password": PASSWORD, "firstName": "A", "lastName": "B"}),
        )
    };
    let (a, b) = tokio::join!(req(), req());
    let mut statuses = vec![a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, vec![201, 409]);
    let (status, v) = body(req().await).await;
    assert_eq!(status, 409);
    assert_error(&v, 409, "User with this email already exists", &[]);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.expect("count");
    assert_eq!(n, 1);
}

#[tokio::test]
async fn names_with_a_nul_character_are_refused_not_a_server_error() {
    let app = TestApp::spawn().await;
    let (status, v) = body(
        app.post_json(
            "/api/v1/auth/signup",
            json!({"email": unique_email(), "password": PASSWORD, "firstName": "A\u{0}da", "lastName": "Lovelace"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_error(&v, 400, "Validation failed", &["First name contains an invalid character"]);
}

#[tokio::test]
async fn signup_validation_lists_every_problem() {
    let app = TestApp::spawn().await;
    let (status, v) = body(
        app.post_json(
            "/api/v1/auth/signup",
            json!({"email": "not-an-email", "password": "1234567", "firstName": "  "}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_error(
        &v,
        400,
        "Validation failed",
        &[
            "Invalid email address",
            "Password must be at least 8 characters long",
            "First name is required",
            "Last name is required",
        ],
    );
    let (status, v) = body(
        app.post_json(
            "/api/v1/auth/signup",
            json!({"email": unique_email(), "password": "x".repeat(129), "firstName": "a".repeat(101), "lastName": "B"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        v["errors"],
        json!(["Password must be at most 128 characters long", "First name must be at most 100 characters"])
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.expect("count");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn login_sets_the_cookie_and_wrong_password_and_unknown_email_get_the_same_401() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    app.signup(&email, PASSWORD).await;

    let r = app.post_json("/api/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
    let cookie = r.headers().get("set-cookie").expect("cookie").to_str().expect("ascii").to_string();
    assert!(cookie.starts_with("authToken=ey"), "{cookie}");
    for part in ["Path=/", "Expires=", "HttpOnly", "SameSite=Lax"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"));
    assert_eq!(r.headers().get("ratelimit-limit").map(|v| v.to_str().expect("ascii")), Some("10"));
    let (status, v) = body(r).await;
    assert_eq!(status, 200);
    assert_eq!(v["message"], "Login successful");
    assert_eq!(v["data"]["user"]["email"], email);
    let token = v["data"]["token"].as_str().expect("token");
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).expect("payload"))
            .expect("b64"),
    )
    .expect("json");
    assert_eq!(payload["email"], email);
    assert_eq!(payload["role"], "USER");
    assert_eq!(payload["exp"].as_i64().expect("exp") - payload["iat"].as_i64().expect("iat"), 86_400);

    let (s1, wrong) =
        body(app.post_json("/api/v1/auth/login", json!({"email": email, "password": "wrong-password"})).await).await;
    let (s2, unknown) =
        body(app.post_json("/api/v1/auth/login", json!({"email": unique_email(), "password": PASSWORD})).await).await;
    assert_eq!((s1, s2), (401, 401));
    assert_error(&wrong, 401, "Invalid email or password", &[]);
    assert_eq!(wrong, unknown);

    let (status, v) = body(app.post_json("/api/v1/auth/login", json!({"email": "nope", "password": ""})).await).await;
    assert_eq!(status, 400);
    assert_eq!(v["errors"], json!(["A valid email is required", "Password is required"]));
}

#[tokio::test]
async fn the_eleventh_failed_login_is_429_and_then_even_the_right_password_is_refused() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    app.signup(&email, PASSWORD).await;
    for i in 0..10 {
        let r = app.post_json("/api/v1/auth/login", json!({"email": email, "password": "wrong-password"})).await;
        assert_eq!(r.status(), 401, "attempt {}", i + 1);
        assert_eq!(
            r.headers().get("ratelimit-remaining").and_then(|v| v.to_str().ok()),
            Some((9 - i).to_string().as_str())
        );
    }
    let r = app.post_json("/api/v1/auth/login", json!({"email": email, "password": "wrong-password"})).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).expect("Retry-After");
    assert!(retry > 0 && retry <= 600);
    let (_, v) = body(r).await;
    assert_error(&v, 429, "Too many requests. Please try again after 10 minutes.", &[]);
    let r = app.post_json("/api/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(r.status(), 429);
    // Another address-and-email pair is not affected.
    let other = unique_email();
    app.signup(&other, PASSWORD).await;
    let r = app.post_json("/api/v1/auth/login", json!({"email": other, "password": PASSWORD})).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn thirty_concurrent_wrong_passwords_get_at_most_ten_verified_and_the_rest_429() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    app.signup(&email, PASSWORD).await;
    let attempts = (0..30).map(|_| async {
        app.post_json("/api/v1/auth/login", json!({"email": email, "password": "wrong-password"}))
            .await
            .status()
            .as_u16()
    });
    let mut statuses = futures::future::join_all(attempts).await;
    statuses.sort_unstable();
    let verified = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((verified, limited), (10, 20), "{statuses:?}");
    let r = app.post_json("/api/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn a_successful_login_does_not_use_up_an_attempt() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    app.signup(&email, PASSWORD).await;
    for _ in 0..12 {
        let r = app.post_json("/api/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers().get("ratelimit-remaining").and_then(|v| v.to_str().ok()), Some("10"));
    }
}

#[tokio::test]
async fn wrong_current_passwords_on_a_password_change_are_limited_per_user() {
    let app = TestApp::spawn().await;
    let (_, token) = app.signup(&unique_email(), PASSWORD).await;
    let put = |current: &'static str| {
        app.http
            .put(app.url("/api/v1/auth/profile/password"))
            .bearer_auth(&token)
            .json(&json!({"currentPassword": current, "newPassword": "new-password-1"}))
            .send()
    };
    for i in 0..10 {
        assert_eq!(put("not-my-password").await.expect("req").status(), 400, "guess {}", i + 1);
    }
    let (status, v) = body(put("not-my-password").await.expect("req")).await;
    assert_eq!(status, 429);
    assert_error(&v, 429, "Too many requests. Please try again after 10 minutes.", &[]);
    assert_eq!(put(PASSWORD).await.expect("req").status(), 429);
}

#[tokio::test]
async fn profile_requires_a_valid_token_of_an_existing_user() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.signup(&unique_email(), PASSWORD).await;
    let (status, v) = body(app.get_auth("/api/v1/auth/profile", &token).await).await;
    assert_eq!(status, 200);
    assert_eq!(v["message"], "Profile retrieved successfully");
    assert_eq!(v["data"]["id"], user_id.as_str());

    let (status, v) = body(app.http.get(app.url("/api/v1/auth/profile")).send().await.expect("req")).await;
    assert_eq!(status, 401);
    assert_error(&v, 401, "Unauthorized: Access token is required.", &[]);

    let now = chrono::Utc::now().timestamp();
    let expired =
        sign(&json!({"userId": user_id, "email": "x", "role": "USER", "iat": now - 7200, "exp": now - 3600}), SECRET);
    let (status, v) = body(app.get_auth("/api/v1/auth/profile", &expired).await).await;
    assert_eq!(status, 401);
    assert_error(&v, 401, "Access token has expired.", &[]);

    let foreign =
        sign(&json!({"userId": user_id, "iat": now, "exp": now + 3600}), b"another-secret-another-secret-another");
    let (_, v) = body(app.get_auth("/api/v1/auth/profile", &foreign).await).await;
    assert_error(&v, 401, "Invalid access token.", &[]);

    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(json!({"userId": user_id, "iat": now, "exp": now + 3600}).to_string().as_bytes())
    );
    let (_, v) = body(app.get_auth("/api/v1/auth/profile", &none).await).await;
    assert_error(&v, 401, "Invalid access token.", &[]);

    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1] = b64(json!({"userId": user_id, "role": "ADMIN", "iat": now, "exp": now + 3600}).to_string().as_bytes());
    let (_, v) = body(app.get_auth("/api/v1/auth/profile", &parts.join(".")).await).await;
    assert_error(&v, 401, "Invalid access token.", &[]);

    let no_user_id = sign(&json!({"email": "x@y.zz", "iat": now, "exp": now + 3600}), SECRET);
    let (_, v) = body(app.get_auth("/api/v1/auth/profile", &no_user_id).await).await;
    assert_error(&v, 401, "Invalid token payload.", &[]);

    sqlx::query("DELETE FROM users WHERE id = $1::uuid").bind(&user_id).execute(&app.db).await.expect("delete");
    let (status, v) = body(app.get_auth("/api/v1/auth/profile", &token).await).await;
    assert_eq!(status, 401);
    assert_error(&v, 401, "Invalid access token or user is inactive.", &[]);
}

#[tokio::test]
async fn the_auth_cookie_alone_authenticates_and_logout_clears_it() {
    let app = TestApp::spawn().await;
    let (_, token) = app.signup(&unique_email(), PASSWORD).await;
    let r = app
        .http
        .get(app.url("/api/v1/auth/profile"))
        .header("cookie", format!("theme=dark; authToken={token}"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 200);
    // A non-Bearer Authorization header falls back to the cookie.
    let r = app
        .http
        .get(app.url("/api/v1/auth/profile"))
        .header("authorization", "Basic abc")
        .header("cookie", format!("authToken={token}"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 200);

    let r = app.http.post(app.url("/api/v1/auth/logout")).send().await.expect("req");
    let cookie = r.headers().get("set-cookie").expect("cookie").to_str().expect("ascii").to_string();
    assert!(cookie.starts_with("authToken=;") && cookie.contains("Max-Age=0"), "{cookie}");
    let (status, v) = body(r).await;
    assert_eq!(status, 200);
    assert_eq!(v["data"], Value::Null);
    assert_eq!(v["message"], "Logout successful");
}

#[tokio::test]
async fn profile_update_changes_names_and_refuses_other_fields_without_changing_anything() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let (_, token) = app.signup(&email, PASSWORD).await;
    let put = |b: Value| app.http.put(app.url("/api/v1/auth/profile")).bearer_auth(&token).json(&b).send();

    let (status, v) = body(
        put(json!({"firstName": "Grace", "role": "ADMIN", "email": "x@y.zz", "isActive": false})).await.expect("req"),
    )
    .await;
    assert_eq!(status, 400);
    // In the order of the body's keys.
    assert_error(
        &v,
        400,
        "Validation failed",
        &["Field 'role' cannot be updated.", "Field 'email' cannot be updated.", "Field 'isActive' cannot be updated."],
    );
    let (role, first, active): (String, String, bool) =
        sqlx::query_as("SELECT role::text, first_name, is_active FROM users WHERE email = $1")
            .bind(&email)
            .fetch_one(&app.db)
            .await
            .expect("row");
    assert_eq!((role.as_str(), first.as_str(), active), ("USER", "Ada", true));

    let (status, v) = body(put(json!({})).await.expect("req")).await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["firstName"], "Ada");
    let (status, v) = body(put(json!({"firstName": " Grace ", "lastName": "Hopper"})).await.expect("req")).await;
    assert_eq!(status, 200);
    assert_eq!(v["message"], "Profile updated successfully");
    assert_eq!(v["data"]["firstName"], "Grace");
    assert_eq!(v["data"]["lastName"], "Hopper");
}

#[tokio::test]
async fn password_change_needs_the_current_password_and_a_wrong_one_is_400_not_401() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let (_, token) = app.signup(&email, PASSWORD).await;
    let put = |b: Value| app.http.put(app.url("/api/v1/auth/profile/password")).bearer_auth(&token).json(&b).send();

    let (status, v) =
        body(put(json!({"currentPassword": "not-my-password", "newPassword": "new-password-1"})).await.expect("req"))
            .await;
    assert_eq!(status, 400);
    assert_error(&v, 400, "Current password is incorrect", &[]);
    assert_eq!(app.get_auth("/api/v1/auth/profile", &token).await.status(), 200);

    let (status, v) = body(put(json!({"newPassword": "short"})).await.expect("req")).await;
    assert_eq!(status, 400);
    assert_eq!(v["errors"], json!(["Current password is required", "Password must be at least 8 characters long"]));

    let (status, v) = body(
        put(json!({"currentPassword": PASSWORD, "newPassword": "new-password-1", "confirmPassword": "whatever"}))
            .await
            .expect("req"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["message"], "Password updated successfully");
    assert!(v["data"]["token"].as_str().is_some_and(|t| t.starts_with("ey")), "{v}");
    let r = app.post_json("/api/v1/auth/login", json!({"email": email, "password": "new-password-1"})).await;
    assert_eq!(r.status(), 200);
    let r = app.post_json("/api/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn legacy_bcrypt_users_can_log_in_and_are_rehashed_with_argon2id() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let hash = bcrypt::hash("legacy-password", 4).expect("bcrypt");
    sqlx::query("INSERT INTO users (id, email, first_name, last_name, password_hash) VALUES ($1, $2, 'L', 'U', $3)")
        .bind(uuid::Uuid::new_v4())
        .bind(&email)
        .bind(&hash)
        .execute(&app.db)
        .await
        .expect("insert");
    let r = app.post_json("/api/v1/auth/login", json!({"email": email, "password": "legacy-password"})).await;
    assert_eq!(r.status(), 200);
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
        .bind(&email)
        .fetch_one(&app.db)
        .await
        .expect("row");
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    let r = app.post_json("/api/v1/auth/login", json!({"email": email, "password": "legacy-password"})).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn inactive_users_cannot_log_in_or_use_their_tokens() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let (_, token) = app.signup(&email, PASSWORD).await;
    sqlx::query("UPDATE users SET is_active = false WHERE email = $1")
        .bind(&email)
        .execute(&app.db)
        .await
        .expect("update");
    let (_, v) = body(app.post_json("/api/v1/auth/login", json!({"email": email, "password": PASSWORD})).await).await;
    assert_error(&v, 401, "Invalid email or password", &[]);
    let (_, v) = body(app.get_auth("/api/v1/auth/profile", &token).await).await;
    assert_error(&v, 401, "Invalid access token or user is inactive.", &[]);
}

#[tokio::test]
async fn json_bodies_over_64_kb_malformed_or_of_another_type_are_refused() {
    let app = TestApp::spawn().await;
    let big = format!(r#"{{"email":"{}","password":"x"}}"#, "a".repeat(65_537 - 27));
    assert_eq!(big.len(), 65_537);
    let r = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("req");
    let (status, v) = body(r).await;
    assert_eq!(status, 413);
    assert_error(&v, 413, "Request body too large.", &[]);

    let r = app
        .http
        .post(app.url("/api/v1/auth/signup"))
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"email": "a@b.co", "password": "#)
        .send()
        .await
        .expect("req");
    let (status, v) = body(r).await;
    assert_eq!(status, 400);
    assert_error(&v, 400, "Malformed JSON in request body.", &[]);

    let r = app
        .http
        .post(app.url("/api/v1/auth/signup"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=a@b.co")
        .send()
        .await
        .expect("req");
    let (status, v) = body(r).await;
    assert_eq!(status, 415);
    assert_error(&v, 415, "Content-Type must be application/json.", &[]);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_enveloped_404_and_405() {
    let app = TestApp::spawn().await;
    let (status, v) = body(app.http.get(app.url("/api/v1/nope")).send().await.expect("req")).await;
    assert_eq!(status, 404);
    assert_error(&v, 404, "Route not found.", &[]);
    let r = app.http.delete(app.url("/api/v1/auth/login")).send().await.expect("req");
    assert_eq!(r.headers().get("allow").and_then(|v| v.to_str().ok()), Some("POST"));
    let (status, v) = body(r).await;
    assert_eq!(status, 405);
    assert_error(&v, 405, "Method not allowed.", &[]);
}

#[tokio::test]
async fn cors_reflects_allowed_origins_with_credentials_and_ignores_foreign_ones() {
    let app = TestApp::spawn().await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/media/00000000-0000-4000-8000-000000000000"))
            .header("origin", origin)
            .header("access-control-request-method", "PATCH")
            .header("access-control-request-headers", "content-type,authorization")
            .send()
    };
    let r = preflight("http://localhost:5173").await.expect("req");
    assert_eq!(r.status(), 204);
    let h = r.headers();
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(get("access-control-allow-origin").as_deref(), Some("http://localhost:5173"));
    assert_eq!(get("access-control-allow-credentials").as_deref(), Some("true"));
    assert_eq!(get("access-control-allow-methods").as_deref(), Some("GET,POST,PUT,PATCH,DELETE,OPTIONS"));
    assert_eq!(get("access-control-allow-headers").as_deref(), Some("Content-Type,Authorization"));
    assert_eq!(get("access-control-max-age").as_deref(), Some("600"));

    let r = preflight("https://evil.example").await.expect("req");
    assert!(r.headers().keys().all(|k| !k.as_str().starts_with("access-control-")), "{:?}", r.headers());

    let r = app.http.get(app.url("/api/health")).header("origin", "http://127.0.0.1:5173").send().await.expect("req");
    assert_eq!(
        r.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("http://127.0.0.1:5173")
    );
    assert!(r.headers().get("access-control-expose-headers").is_some());
    assert!(r.headers().get("vary").is_some());
}

#[tokio::test]
async fn responses_carry_security_headers_and_the_request_id() {
    let app = TestApp::spawn().await;
    let r = app.http.get(app.url("/api/health")).header("x-request-id", "abc-123").send().await.expect("req");
    let h = r.headers().clone();
    assert_eq!(h.get("x-request-id").and_then(|v| v.to_str().ok()), Some("abc-123"));
    assert!(
        h.get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("default-src 'self'"))
    );
    assert_eq!(h.get("x-frame-options").and_then(|v| v.to_str().ok()), Some("SAMEORIGIN"));
    assert_eq!(h.get("cross-origin-resource-policy").and_then(|v| v.to_str().ok()), Some("same-origin"));
    assert_eq!(h.get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"));
    assert!(h.get("x-powered-by").is_none());
    let (status, v) = body(r).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"success": true, "message": "Drishtiksha Backend API is alive and running!"}));
    let r = app.http.get(app.url("/")).send().await.expect("req");
    let generated = r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).expect("id").to_string();
    assert!(uuid::Uuid::parse_str(&generated).is_ok());
}

#[tokio::test]
async fn the_api_limiter_counts_requests_under_api_v1_and_answers_429_past_the_max() {
    let app = TestApp::builder().env("API_RATE_LIMIT_MAX", "3").spawn().await;
    for i in 0..3 {
        let r = app.http.post(app.url("/api/v1/auth/logout")).send().await.expect("req");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers().get("ratelimit-policy").and_then(|v| v.to_str().ok()), Some("3;w=60"));
        assert_eq!(
            r.headers().get("ratelimit-remaining").and_then(|v| v.to_str().ok()),
            Some((2 - i).to_string().as_str())
        );
    }
    let r = app.http.post(app.url("/api/v1/auth/logout")).send().await.expect("req");
    assert!(r.headers().get("retry-after").is_some());
    let (status, v) = body(r).await;
    assert_eq!(status, 429);
    assert_error(&v, 429, "Too many requests. Please try again after 1 minutes.", &[]);
    // Liveness is not rate-limited.
    assert_eq!(app.http.get(app.url("/api/health")).send().await.expect("req").status(), 200);
}

#[tokio::test]
async fn limiters_fail_open_and_ready_names_redis_when_redis_is_down() {
    let mut app = TestApp::spawn().await;
    app.redis.stop();
    let email = unique_email();
    let r = app
        .post_json(
            "/api/v1/auth/signup",
            json!({"email": email, "password": PASSWORD, "firstName": "A", "lastName": "B"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("ratelimit-limit").is_none());
    let (status, v) = body(app.http.get(app.url("/api/ready")).send().await.expect("req")).await;
    assert_eq!(status, 503);
    assert_eq!(v["success"], false);
    assert_eq!(v["message"], "Not ready");
    assert_eq!(v["checks"]["redis"], "unavailable");
    assert_eq!(v["checks"]["postgres"], "ok");
    app.redis.restart().await.expect("restart");
    let ready = drishtiksha_testkit::eventually(std::time::Duration::from_secs(10), || async {
        let (_, v) = body(app.http.get(app.url("/api/ready")).send().await.ok()?).await;
        (v["checks"]["redis"] == "ok").then_some(v)
    })
    .await
    .expect("redis back");
    assert_eq!(ready["checks"]["postgres"], "ok");
}

#[tokio::test]
async fn signups_past_the_per_address_limit_get_429_before_any_hashing() {
    let app = TestApp::builder().env("SIGNUP_RATE_LIMIT_MAX", "2").spawn().await;
    app.signup(&unique_email(), PASSWORD).await;
    app.signup(&unique_email(), PASSWORD).await;
    let email = unique_email();
    let r = app
        .post_json(
            "/api/v1/auth/signup",
            json!({"email": email, "password": PASSWORD, "firstName": "A", "lastName": "B"}),
        )
        .await;
    assert_eq!(r.headers().get("ratelimit-limit").and_then(|v| v.to_str().ok()), Some("2"));
    let (status, v) = body(r).await;
    assert_eq!(status, 429);
    assert_error(&v, 429, "Too many requests. Please try again after 60 minutes.", &[]);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email = $1")
        .bind(&email)
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(n, 0);
}

async fn login_token(app: &TestApp, email: &str, password: &str) -> String {
    let (status, v) =
        body(app.post_json("/api/v1/auth/login", json!({"email": email, "password": password})).await).await;
    assert_eq!(status, 200, "{v}");
    v["data"]["token"].as_str().expect("token").to_string()
}

#[tokio::test]
async fn a_password_change_revokes_every_earlier_token_and_answers_a_fresh_one() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let (_, signup_token) = app.signup(&email, PASSWORD).await;
    let other_device = login_token(&app, &email, PASSWORD).await;
    let (status, v) = body(
        app.http
            .put(app.url("/api/v1/auth/profile/password"))
            .bearer_auth(&signup_token)
            .json(&json!({"currentPassword": PASSWORD, "newPassword": "new-password-1"}))
            .send()
            .await
            .expect("req"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let fresh = v["data"]["token"].as_str().expect("fresh token").to_string();
    for old in [&signup_token, &other_device] {
        let (status, v) = body(app.get_auth("/api/v1/auth/profile", old).await).await;
        assert_eq!(status, 401);
        assert_error(&v, 401, "Invalid access token.", &[]);
    }
    assert_eq!(app.get_auth("/api/v1/auth/profile", &fresh).await.status(), 200);
    // A login right after the change (same second) gets a token that works.
    let after = login_token(&app, &email, "new-password-1").await;
    assert_eq!(app.get_auth("/api/v1/auth/profile", &after).await.status(), 200);
}

#[tokio::test]
async fn a_password_change_made_with_the_cookie_sets_the_fresh_token_as_the_cookie() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let (_, token) = app.signup(&email, PASSWORD).await;
    let r = app
        .http
        .put(app.url("/api/v1/auth/profile/password"))
        .header("cookie", format!("authToken={token}"))
        .header("origin", "http://localhost:5173")
        .json(&json!({"currentPassword": PASSWORD, "newPassword": "new-password-1"}))
        .send()
        .await
        .expect("req");
    let cookie = r.headers().get("set-cookie").expect("cookie").to_str().expect("ascii").to_string();
    let (status, v) = body(r).await;
    assert_eq!(status, 200);
    let fresh = v["data"]["token"].as_str().expect("token");
    assert!(cookie.starts_with(&format!("authToken={fresh};")), "{cookie}");
}

#[tokio::test]
async fn logout_revokes_the_token_it_was_called_with_and_only_that_one() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    app.signup(&email, PASSWORD).await;
    // The frontend's flow: login, use, logout, login again, use.
    let first = login_token(&app, &email, PASSWORD).await;
    // The claims are whole seconds and nothing else (§2.2): logins within one second get the same
    // token. Another device's token is one from a later second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let other_device = loop {
        let t = login_token(&app, &email, PASSWORD).await;
        if t != first {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "every login gave the same token");
    };
    assert_eq!(app.get_auth("/api/v1/auth/profile", &first).await.status(), 200);
    let r = app.http.post(app.url("/api/v1/auth/logout")).bearer_auth(&first).send().await.expect("req");
    assert_eq!(r.status(), 200);
    let (status, v) = body(app.get_auth("/api/v1/auth/profile", &first).await).await;
    assert_eq!(status, 401);
    assert_error(&v, 401, "Invalid access token.", &[]);
    assert_eq!(app.get_auth("/api/v1/auth/profile", &other_device).await.status(), 200);
    let again = login_token(&app, &email, PASSWORD).await;
    assert_eq!(app.get_auth("/api/v1/auth/profile", &again).await.status(), 200);

    // With the cookie.
    let r = app
        .http
        .post(app.url("/api/v1/auth/logout"))
        .header("cookie", format!("authToken={again}"))
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 200);
    let r = app.http.get(app.url("/api/v1/auth/profile")).header("cookie", format!("authToken={again}")).send();
    assert_eq!(r.await.expect("req").status(), 401);
    // Logging out twice, or with a revoked or bad token, is still a success.
    let r = app.http.post(app.url("/api/v1/auth/logout")).bearer_auth(&first).send().await.expect("req");
    assert_eq!(r.status(), 200);
    let r = app.http.post(app.url("/api/v1/auth/logout")).bearer_auth("garbage").send().await.expect("req");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn every_api_v1_response_is_marked_no_store() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    app.signup(&email, PASSWORD).await;
    let login = app.post_json("/api/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
    let unknown = app.http.get(app.url("/api/v1/no-such-route")).send().await.expect("req");
    let unauthorized = app.http.get(app.url("/api/v1/media")).send().await.expect("req");
    for r in [login, unknown, unauthorized] {
        assert_eq!(r.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"), "{}", r.url());
    }
}

#[tokio::test]
async fn cookie_authenticated_unsafe_requests_from_a_foreign_origin_are_403() {
    let app = TestApp::spawn().await;
    let (_, token) = app.signup(&unique_email(), PASSWORD).await;
    let cookie = format!("authToken={token}");
    let patch = |origin: Option<&str>, referer: Option<&str>, bearer: bool| {
        let mut r = app.http.put(app.url("/api/v1/auth/profile")).json(&json!({"firstName": "Eve"}));
        r = if bearer { r.bearer_auth(&token) } else { r.header("cookie", &cookie) };
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        if let Some(re) = referer {
            r = r.header("referer", re);
        }
        async move { r.send().await.expect("req") }
    };
    // Another port of the same host is the same site: SameSite=Lax sends the cookie.
    for (origin, referer) in [
        (Some("http://localhost:5174"), None),
        (Some("null"), None),
        (None, Some("http://evil.example/page")),
        (None, None),
    ] {
        let (status, v) = body(patch(origin, referer, false).await).await;
        assert_eq!(status, 403, "{origin:?} {referer:?}");
        assert_error(&v, 403, "Forbidden: cross-origin request refused.", &[]);
    }
    let (_, profile) = body(app.get_auth("/api/v1/auth/profile", &token).await).await;
    assert_eq!(profile["data"]["firstName"], "Ada");
    assert_eq!(patch(Some("http://localhost:5173"), None, false).await.status(), 200);
    assert_eq!(patch(None, Some("http://127.0.0.1:5173/settings"), false).await.status(), 200);
    // Bearer tokens carry no ambient authority.
    assert_eq!(patch(Some("http://evil.example"), None, true).await.status(), 200);
    // Safe methods are not checked.
    let r =
        app.http.get(app.url("/api/v1/auth/profile")).header("cookie", &cookie).header("origin", "http://evil.example");
    assert_eq!(r.send().await.expect("req").status(), 200);
    // Logout with the cookie from a foreign origin is refused too (and revokes nothing).
    let r =
        app.http.post(app.url("/api/v1/auth/logout")).header("cookie", &cookie).header("origin", "http://evil.example");
    assert_eq!(r.send().await.expect("req").status(), 403);
    assert_eq!(app.get_auth("/api/v1/auth/profile", &token).await.status(), 200);
}

#[tokio::test]
async fn names_with_invisible_or_reordering_characters_are_refused_and_others_are_normalised() {
    let app = TestApp::spawn().await;
    for (first, last, error) in [
        ("\u{200B}", "Lovelace", "First name contains an invalid character"),
        ("Ada", "Love\u{202E}ecal", "Last name contains an invalid character"),
        ("A\u{7}da", "Lovelace", "First name contains an invalid character"),
    ] {
        let (status, v) = body(
            app.post_json(
                "/api/v1/auth/signup",
                json!({"email": unique_email(), "password": PASSWORD, "firstName": first, "lastName": last}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 400, "{first:?} {last:?}");
        assert_eq!(v["errors"], json!([error]));
    }
    // Unicode white space is trimmed and the name stored in NFC.
    let (status, v) = body(
        app.post_json(
            "/api/v1/auth/signup",
            json!({"email": unique_email(), "password": PASSWORD, "firstName": "\u{3000}Rene\u{301}\u{A0}", "lastName": "L"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["data"]["user"]["firstName"], "Ren\u{e9}");
}
