//! The OpenAPI 3.1 document of the REST API and its viewer.
//!
//! The document is generated from the code: every route is registered through
//! [`utoipa_axum::routes!`], which takes the method and path from the handler's
//! `#[utoipa::path]` annotation, so the router and the document come from the same declaration.
//! Schemas are derived from the types the handlers serialize ([`crate::envelope::Success`],
//! [`ErrorBody`], `User`, `Media`, …). Responses every endpoint of a kind shares (401, 429, 5xx, …)
//! are added by [`add_common_responses`] from the operation's properties rather than repeated on
//! every handler.
//!
//! `/api/openapi.json` serves the document; `/api/docs/` serves Swagger UI from assets embedded in
//! the binary, so it works without internet access and under the api's CSP (no inline scripts).

use std::sync::{Arc, LazyLock};

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response as OaResponse, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Header, OpenApi as Document, Ref, RefOr, Schema};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::error::{ApiError, ErrorBody};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/api/openapi.json";
/// Where the viewer is served (with the trailing slash: its assets are relative).
pub const VIEWER_PATH: &str = "/api/docs/";

pub const TAG_HEALTH: &str = "health";
pub const TAG_AUTH: &str = "auth";
pub const TAG_MEDIA: &str = "media";
pub const TAG_MONITORING: &str = "monitoring";
pub const TAG_PDF: &str = "pdf";
pub const TAG_FILES: &str = "files";
pub const TAG_DOCS: &str = "docs";

/// Security scheme names (the handlers' `security(..)` attributes name them as literals).
pub const BEARER: &str = "bearerAuth";
pub const COOKIE: &str = "cookieAuth";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Drishtiksha backend API",
        description = "REST API of the Drishtiksha deepfake-detection backend: accounts, media uploads, analysis \
runs and their results, monitoring and PDF reports.\n\n\
Success responses under `/api/v1` (except the PDF) are enveloped as `{ statusCode, data, message, success }`; \
every error under `/api` is `{ statusCode, success: false, message, errors }`. Authenticated endpoints take \
`Authorization: Bearer <JWT>` (from `POST /api/v1/auth/login` or `/signup`) or the `authToken` cookie set by login. \
Live progress is pushed over Socket.IO at `/socket.io` (not described here).",
        license(name = "MIT")
    ),
    // The one route registered outside `routes!` (an axum wildcard): see `media::files_router`.
    paths(crate::media::files::serve_file),
    modifiers(&SecuritySchemes),
    components(schemas(ErrorBody)),
    tags(
        (name = TAG_HEALTH, description = "Liveness and readiness (not enveloped, not rate-limited)"),
        (name = TAG_AUTH, description = "Accounts and credentials"),
        (name = TAG_MEDIA, description = "Uploads, media, analysis runs"),
        (name = TAG_MONITORING, description = "ML server status, processing queue, maintenance (ADMIN)"),
        (name = TAG_PDF, description = "Analysis reports"),
        (name = TAG_FILES, description = "Stored files (local storage)"),
        (name = TAG_DOCS, description = "This document and its viewer"),
    )
)]
pub struct ApiDoc;

/// Bearer JWT and the `authToken` cookie (§2.1).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("The `token` of the login or signup answer (HS256 JWT)."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::COOKIE_NAME,
                "Set by login (HttpOnly); used when no Bearer token is sent.",
            ))),
        );
    }
}

/// A shared response: its component name, status and builder.
struct Shared {
    name: &'static str,
    status: &'static str,
    response: fn() -> OaResponse,
}

fn error_response(description: &str, status: u16, message: &str, errors: &[&str]) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .example(Some(serde_json::json!({
                "statusCode": status, "success": false, "message": message, "errors": errors
            })))
            .build(),
    )
}

fn integer_header(description: &str) -> Header {
    let mut h = Header::new(ObjectBuilder::new().schema_type(Type::Integer));
    h.description = Some(description.to_string());
    h
}

const UNAUTHORIZED: Shared = Shared {
    name: "Unauthorized",
    status: "401",
    response: || {
        error_response(
            "Missing, invalid or expired credentials, or an inactive user (§2.1).",
            401,
            "Unauthorized: Access token is required.",
            &[],
        )
        .build()
    },
};

const VALIDATION: Shared = Shared {
    name: "BadRequest",
    status: "400",
    response: || {
        error_response(
            "Validation failed (`errors`: one message per problem), or malformed JSON.",
            400,
            "Validation failed",
            &["Password must be at least 8 characters long"],
        )
        .build()
    },
};

const BODY_TOO_LARGE: Shared = Shared {
    name: "PayloadTooLarge",
    status: "413",
    response: || error_response("JSON body over 64 kB.", 413, "Request body too large.", &[]).build(),
};

const NOT_JSON: Shared = Shared {
    name: "UnsupportedMediaType",
    status: "415",
    response: || {
        error_response("The body is not `application/json`.", 415, "Content-Type must be application/json.", &[])
            .build()
    },
};

const TOO_MANY: Shared = Shared {
    name: "TooManyRequests",
    status: "429",
    response: || {
        error_response("Rate limit exceeded (§1.7).", 429, "Too many requests. Please try again after 1 minutes.", &[])
            .header("Retry-After", integer_header("Seconds until the window resets."))
            .build()
    },
};

const CROSS_ORIGIN: Shared = Shared {
    name: "CrossOriginRefused",
    status: "403",
    response: || {
        error_response(
            "Authenticated by the `authToken` cookie, from an `Origin` (or `Referer`) that is not allowed; \
             bearer-token requests are not checked.",
            403,
            crate::http::CROSS_ORIGIN_REFUSED,
            &[],
        )
        .build()
    },
};

const INTERNAL: Shared = Shared {
    name: "InternalError",
    status: "500",
    response: || error_response("Unexpected failure (logged).", 500, crate::error::INTERNAL_MESSAGE, &[]).build(),
};

const UNAVAILABLE: Shared = Shared {
    name: "ServiceUnavailable",
    status: "503",
    response: || {
        error_response("Postgres, Redis or Temporal is unavailable.", 503, crate::error::UNAVAILABLE_MESSAGE, &[])
            .build()
    },
};

/// Adds the responses an operation has because of what it is, not what it does: every
/// authenticated operation can answer 401, every operation under `/api/v1` 429, 500 and 503, and
/// every operation with a JSON body 400, 413 and 415. A response the handler documents itself wins.
/// Applied once every route is in the document.
pub fn add_common_responses(doc: &mut Document) {
    {
        let components = doc.components.get_or_insert_with(Default::default);
        for shared in
            [UNAUTHORIZED, VALIDATION, BODY_TOO_LARGE, NOT_JSON, TOO_MANY, CROSS_ORIGIN, INTERNAL, UNAVAILABLE]
        {
            components.responses.insert(shared.name.to_string(), RefOr::T((shared.response)()));
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let v1 = path.starts_with("/api/v1/");
            for (unsafe_method, op) in operations(item) {
                let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let json_body = op.request_body.as_ref().is_some_and(|b| match b {
                    RefOr::T(b) => b.content.contains_key("application/json"),
                    RefOr::Ref(_) => false,
                });
                let mut add = |shared: Shared| {
                    op.responses
                        .responses
                        .entry(shared.status.to_string())
                        .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{}", shared.name))));
                };
                if json_body {
                    add(VALIDATION);
                    add(BODY_TOO_LARGE);
                    add(NOT_JSON);
                }
                if authenticated {
                    add(UNAUTHORIZED);
                }
                if v1 && unsafe_method {
                    add(CROSS_ORIGIN);
                }
                if v1 {
                    add(TOO_MANY);
                    add(INTERNAL);
                    add(UNAVAILABLE);
                }
            }
        }
    }
}

/// The operations of a path, each with whether its method is unsafe (changes state).
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = (bool, &mut Operation)> {
    [
        (false, &mut item.get),
        (true, &mut item.put),
        (true, &mut item.post),
        (true, &mut item.delete),
        (true, &mut item.patch),
        (false, &mut item.head),
    ]
    .into_iter()
    .filter_map(|(unsafe_method, op)| op.as_mut().map(|op| (unsafe_method, op)))
}

/// `data: null` (logout, password change).
pub struct Null;

impl PartialSchema for Null {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Null).into()
    }
}

impl ToSchema for Null {}

/// `data: {}` (media deletion).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Empty {}

/// The document, generated once.
pub fn document() -> &'static str {
    static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
        crate::openapi_document().to_pretty_json().unwrap_or_else(|e| {
            tracing::error!(error = %e, "OpenAPI document not serializable");
            "{}".to_string()
        })
    });
    &DOCUMENT
}

/// `GET /api/openapi.json`.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = TAG_DOCS,
    summary = "This OpenAPI document",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
pub async fn get_openapi() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], document()).into_response()
}

/// `GET /api/docs`: the viewer lives under the trailing slash, where its relative asset URLs resolve.
#[utoipa::path(
    get,
    path = "/api/docs",
    tag = TAG_DOCS,
    summary = "Interactive documentation (redirect)",
    responses((status = 303, description = "Redirect to `/api/docs/`", headers(("Location" = String)))),
)]
pub async fn get_docs_redirect() -> Redirect {
    Redirect::to(VIEWER_PATH)
}

static VIEWER_CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        utoipa_swagger_ui::Config::from(DOCUMENT_PATH)
            .validator_url("none")
            .display_request_duration(true)
            .persist_authorization(true),
    )
});

fn viewer_file(name: &str) -> Response {
    match utoipa_swagger_ui::serve(name, VIEWER_CONFIG.clone()) {
        Ok(Some(file)) => {
            let content_type = HeaderValue::from_str(&file.content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
            let csp = HeaderValue::from_static(crate::http::VIEWER_CSP);
            let mut resp = (
                [(header::CONTENT_TYPE, content_type), (header::CONTENT_SECURITY_POLICY, csp)],
                file.bytes.into_owned(),
            )
                .into_response();
            if file.gzpipped {
                resp.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            resp
        }
        Ok(None) => ApiError::not_found("Route not found.").into_response(),
        Err(e) => ApiError::internal(anyhow::anyhow!("viewer asset {name}: {e}")).into_response(),
    }
}

/// `GET /api/docs/`: Swagger UI.
#[utoipa::path(
    get,
    path = "/api/docs/",
    tag = TAG_DOCS,
    summary = "Interactive documentation (Swagger UI)",
    responses((status = 200, description = "The viewer's page", content_type = "text/html", body = String)),
)]
pub async fn get_docs() -> Response {
    viewer_file("index.html")
}

/// `GET /api/docs/{file}`: the viewer's scripts, styles and icons, embedded in the binary.
#[utoipa::path(
    get,
    path = "/api/docs/{file}",
    tag = TAG_DOCS,
    summary = "Viewer assets",
    params(("file" = String, Path, description = "Asset name, e.g. `swagger-ui.css`", example = "swagger-ui.css")),
    responses(
        (status = 200, description = "The asset", content_type = "*/*", body = String),
        (status = 404, description = "No such asset", body = ErrorBody),
    ),
)]
pub async fn get_docs_asset(Path(file): Path<String>) -> Response {
    viewer_file(&file)
}

#[cfg(test)]
mod tests {
    use crate::extract::{Lines, text_pattern};

    /// Every `pattern` of a name or description property in the document.
    fn text_patterns(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                    for (name, prop) in props {
                        if let Some(p) = prop.get("pattern").and_then(|p| p.as_str()) {
                            out.push((name.clone(), p.to_string()));
                        }
                    }
                }
                map.values().for_each(|v| text_patterns(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| text_patterns(v, out)),
            _ => {}
        }
    }

    #[test]
    fn text_field_patterns_are_the_ones_the_server_enforces() {
        let doc: serde_json::Value = serde_json::from_str(super::document()).expect("json");
        let mut found = Vec::new();
        text_patterns(&doc, &mut found);
        let names: Vec<_> = found.iter().filter(|(n, _)| n == "firstName" || n == "lastName").collect();
        let descriptions: Vec<_> = found.iter().filter(|(n, _)| n == "description").collect();
        assert_eq!((names.len(), descriptions.len()), (4, 2), "{found:?}");
        for (_, p) in names {
            assert_eq!(p, &text_pattern(Lines::One, true));
        }
        for (_, p) in descriptions {
            assert_eq!(p, &text_pattern(Lines::Many, false));
        }
    }

    /// The request bodies the handlers deserialize are documented as before: required keys,
    /// types, and `additionalProperties: false` where other keys are refused.
    #[test]
    fn request_schemas_are_the_parsed_types() {
        let doc: serde_json::Value = serde_json::from_str(super::document()).expect("json");
        let schema = |name: &str| doc["components"]["schemas"][name].clone();
        let required = |name: &str| schema(name)["required"].clone();
        assert_eq!(required("SignupRequest"), serde_json::json!(["email", "password", "firstName", "lastName"]));
        assert_eq!(required("LoginRequest"), serde_json::json!(["email", "password"]));
        assert_eq!(required("ChangePasswordRequest"), serde_json::json!(["currentPassword", "newPassword"]));
        assert_eq!(required("UploadMediaRequest"), serde_json::json!(["media"]));
        for name in ["UpdateProfileRequest", "UpdateMediaRequest"] {
            assert_eq!(schema(name)["additionalProperties"], serde_json::json!(false), "{name}");
            assert!(schema(name)["required"].is_null(), "{name}");
        }
        let props = |name: &str| schema(name)["properties"].as_object().map(|p| p.keys().cloned().collect::<Vec<_>>());
        assert_eq!(props("UpdateProfileRequest"), Some(vec!["firstName".to_string(), "lastName".to_string()]));
        assert_eq!(props("UpdateMediaRequest"), Some(vec!["description".to_string()]));
        assert_eq!(props("UploadMediaRequest"), Some(vec!["media".to_string(), "description".to_string()]));
        assert_eq!(schema("UploadMediaRequest")["properties"]["media"]["format"], "binary");
        assert_eq!(required("ServerStatus"), serde_json::json!(["responseTimeMs", "cachedAt"]));
        assert_eq!(schema("ServerStatus")["properties"]["cachedAt"]["format"], "date-time");
        assert_eq!(schema("ServerHealth")["properties"]["status"]["$ref"], "#/components/schemas/HealthStatus");
    }
}
