//! The router and the OpenAPI document describe the same API.
//!
//! Routes are declared once, through `utoipa_axum::routes!`, which takes each route's method and
//! path from the handler's `#[utoipa::path]`; this test catches what could still drift: a route
//! added with plain `.route(..)`, a handler registered under a path its annotation does not name,
//! a documented operation that is not routed, a method answered but not documented.
//!
//! Paths: axum has no public route listing, so the registered paths are read from the router's
//! `Debug` output (the test fails loudly if that output stops listing them). Methods: every
//! registered path is requested with every method, unauthenticated and without a body, and the
//! methods that are routed (neither 405 nor the unknown-route fallback) must be exactly the
//! documented ones.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use drishtiksha_api::http::Unmatched;
use drishtiksha_common::config::ApiConfig;
use drishtiksha_testkit::{RedisServer, base_env, free_port, fresh_database};
use tower::ServiceExt;

use crate::support::Turn;

const METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

/// The paths registered in a router, in OpenAPI syntax (`{*key}` → `{key}`), without axum's
/// internal fallback routes.
fn registered_paths(router: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    // The fallback router lists catch-all paths of its own; only the routes count.
    let routes = debug.split("fallback_router").next().unwrap_or_default();
    let mut paths = BTreeSet::new();
    let mut rest = routes;
    while let Some(i) = rest.find("RouteId(") {
        rest = &rest[i..];
        let Some(start) = rest.find(": \"") else { break };
        let after = &rest[start + 3..];
        let Some(end) = after.find('"') else { break };
        let path = &after[..end];
        if !path.contains("__private__axum") {
            paths.insert(path.replace("{*", "{"));
        }
        rest = &after[end..];
    }
    paths
}

/// A concrete URI for a path template.
fn sample_uri(path: &str) -> String {
    path.replace("{id}", "6f1c5a4e-0d3b-4c2a-9e8f-7a6b5c4d3e2f")
        .replace("{runId}", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
        .replace("{key}", "images/nothing-here.png")
        .replace("{file}", "index.css")
}

fn documented_operations(doc: &utoipa::openapi::OpenApi) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        let methods = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("PUT", item.put.is_some()),
            ("PATCH", item.patch.is_some()),
            ("DELETE", item.delete.is_some()),
            ("HEAD", item.head.is_some()),
            ("OPTIONS", item.options.is_some()),
            ("TRACE", item.trace.is_some()),
        ];
        for (method, present) in methods {
            if present {
                ops.insert((method.to_string(), path.clone()));
            }
        }
    }
    ops
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_is_documented_and_every_documented_operation_is_routed() {
    // The router's requests count in this process's metrics, as an in-process api's do.
    let _turn = Turn::shared().await;
    let (db_url, _db) = fresh_database().await.expect("database");
    let redis = RedisServer::start().await.expect("redis-server");
    let storage = std::env::temp_dir().join(format!("drishtiksha-openapi-test-{}", uuid::Uuid::new_v4()));
    let mut env = base_env(&db_url, &redis.url());
    env.insert("LOCAL_STORAGE_PATH".into(), storage.to_string_lossy().into_owned());
    env.insert("TEMPORAL_ADDRESS".into(), format!("127.0.0.1:{}", free_port()));
    let state = drishtiksha_api::build_state(ApiConfig::from_source(&env).expect("config")).await.expect("state");
    let (router, _io) = drishtiksha_api::app(state);
    let document = drishtiksha_api::openapi_document();
    let documented = documented_operations(&document);

    let paths = registered_paths(&router);
    assert!(
        paths.contains("/api/v1/media/{id}") && paths.contains("/media/{key}"),
        "the router's Debug output no longer lists its paths: {paths:?}"
    );
    let documented_paths: BTreeSet<String> = documented.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(paths, documented_paths, "registered paths (left) differ from documented paths (right)");

    let mut routed = BTreeSet::new();
    for path in &paths {
        for method in METHODS {
            let request =
                Request::builder().method(method.clone()).uri(sample_uri(path)).body(Body::empty()).expect("request");
            let response = router.clone().oneshot(request).await.expect("response");
            let unmatched = response.extensions().get::<Unmatched>().is_some();
            if response.status() != StatusCode::METHOD_NOT_ALLOWED && !unmatched {
                routed.insert((method.to_string(), path.clone()));
            }
        }
    }
    assert_eq!(routed, documented, "routed operations (left) differ from documented operations (right)");
    let _ = std::fs::remove_dir_all(&storage);
}
