//! Extractors that answer in the contract's envelope: JSON bodies deserialized into their
//! documented schemas (§1.1, §1.4) and UUID path ids; the text rules every stored text follows.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::error::ApiError;

/// JSON bodies are limited to 64 kB (65 536 bytes).
pub const JSON_LIMIT: usize = 65_536;

/// A JSON object body deserialized into `T`, the request's documented schema. The fields of `T`
/// are [`Field`]s, so deserializing never fails on a field: absent, `null` and wrongly typed
/// values reach the handler's validation, which answers each with the contract's own message.
/// Non-object JSON is a validation failure, malformed JSON a 400, a wrong content type a 415.
pub struct JsonBody<T>(pub T);

pub fn is_json_content_type(value: Option<&axum::http::HeaderValue>) -> bool {
    let Some(v) = value.and_then(|v| v.to_str().ok()) else { return false };
    let mime = v.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
}

pub fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large.")
}

fn malformed() -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "Malformed JSON in request body.")
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers().get(CONTENT_TYPE)) {
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json."));
        }
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > JSON_LIMIT as u64) {
            return Err(too_large());
        }
        let body: Body = req.into_body();
        let bytes = axum::body::to_bytes(body, JSON_LIMIT)
            .await
            .map_err(|e| if is_length_limit(&e) { too_large() } else { malformed() })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(object @ Value::Object(_)) => T::deserialize(object).map(Self).map_err(|_| malformed()),
            Ok(_) => Err(ApiError::validation_one("Request body must be a JSON object")),
            Err(_) => Err(malformed()),
        }
    }
}

/// One field of a request body as it arrived. Fields are declared `#[serde(default)]`, so an
/// absent key is [`Field::Missing`]; nothing about a field's value fails the deserialization.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Field<T> {
    #[default]
    Missing,
    Null,
    /// Present with a JSON type `T` cannot be read from.
    WrongType,
    Value(T),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(deserializer)? {
            Value::Null => Self::Null,
            value => T::deserialize(value).map_or(Self::WrongType, Self::Value),
        })
    }
}

impl<T> Field<T> {
    /// The value, when one of the right type was sent.
    pub fn value(self) -> Option<T> {
        match self {
            Self::Value(v) => Some(v),
            _ => None,
        }
    }
}

impl Field<String> {
    /// The text; `Ok(None)` when absent or `null`, `Err(NotAString)` for another JSON type.
    pub fn text(&self) -> Result<Option<String>, NotAString> {
        match self {
            Self::Missing | Self::Null => Ok(None),
            Self::Value(s) => Ok(Some(s.clone())),
            Self::WrongType => Err(NotAString),
        }
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// A body field of the wrong JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAString;

/// Format characters (Unicode category Cf, 16.0): invisible, or reordering the text around them
/// (`invoice\u{202E}gnp.exe.png` shows as `invoice` + `exe.png` reversed). Never stored in names,
/// descriptions or file names.
const FORMAT_CHARS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Which line breaks a text may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// Names and file names: one line.
    One,
    /// Descriptions: `\n` and `\r` allowed.
    Many,
}

/// Whether a character may be stored: no control character (Cc; tab aside, line breaks where
/// allowed; this also keeps NUL, which PostgreSQL `text` cannot hold, out) and no format character.
pub fn is_allowed_char(c: char, lines: Lines) -> bool {
    if c == '\t' || (lines == Lines::Many && matches!(c, '\n' | '\r')) {
        return true;
    }
    !c.is_control() && !FORMAT_CHARS.iter().any(|(from, to)| (*from..=*to).contains(&c))
}

/// Text as it is stored: NFC-normalised and trimmed of Unicode white space; `None` when it holds a
/// character that [`is_allowed_char`] refuses.
pub fn clean_text(s: &str, lines: Lines) -> Option<String> {
    use unicode_normalization::UnicodeNormalization;
    let normal: String = s.nfc().collect();
    let trimmed = normal.trim();
    trimmed.chars().all(|c| is_allowed_char(c, lines)).then(|| trimmed.to_string())
}

/// The OpenAPI `pattern` of a text field (what [`clean_text`] accepts; `required`: at least one
/// character that is not white space). The schemas spell these out as literals (utoipa takes no
/// expressions there); a test checks that they are equal.
pub fn text_pattern(lines: Lines, required: bool) -> String {
    let escape = |c: char| {
        let v = c as u32;
        if v <= 0xFFFF { format!("\\u{v:04X}") } else { format!("\\U{v:08X}") }
    };
    let mut class = String::new();
    let mut ranges: Vec<(char, char)> = vec![('\u{0}', '\u{8}')];
    ranges.extend(if lines == Lines::Many {
        vec![('\u{B}', '\u{C}'), ('\u{E}', '\u{1F}')]
    } else {
        vec![('\u{A}', '\u{1F}')]
    });
    ranges.push(('\u{7F}', '\u{9F}'));
    ranges.extend_from_slice(FORMAT_CHARS);
    for (from, to) in ranges {
        class.push_str(&escape(from));
        if to != from {
            class.push('-');
            class.push_str(&escape(to));
        }
    }
    if required { format!("^[^{class}]*[^\\s{class}][^{class}]*$") } else { format!("^[^{class}]*$") }
}

/// Parses a path id; anything that is not a UUID is a validation failure with `message`.
pub fn parse_id(raw: &str, message: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::validation_one(message))
}

/// `:id` of media routes.
pub struct MediaId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for MediaId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(params) =
            axum::extract::Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::validation_one("Invalid media id"))?;
        let raw = params.get("id").map(String::as_str).unwrap_or("");
        parse_id(raw, "Invalid media id").map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_normalised_trimmed_and_refused_with_invisible_or_reordering_characters() {
        assert_eq!(clean_text("  Ada\u{3000}", Lines::One).as_deref(), Some("Ada"));
        assert_eq!(clean_text("Cafe\u{301}", Lines::One).as_deref(), Some("Caf\u{e9}"));
        assert_eq!(clean_text("a\tb", Lines::One).as_deref(), Some("a\tb"));
        assert_eq!(clean_text("line 1\nline 2", Lines::Many).as_deref(), Some("line 1\nline 2"));
        for bad in ["invoice\u{202E}gnp.exe.png", "\u{200B}", "a\u{0}b", "a\nb", "a\u{7}b", "x\u{E0041}", "\u{FEFF}a"] {
            assert_eq!(clean_text(bad, Lines::One), None, "{bad:?}");
        }
        assert_eq!(clean_text("a\u{200D}b", Lines::Many), None);
    }

    #[test]
    fn the_patterns_accept_what_the_rules_accept() {
        assert!(text_pattern(Lines::One, true).starts_with("^[^\\u0000-\\u0008\\u000A-\\u001F\\u007F-\\u009F\\u00AD"));
        assert!(text_pattern(Lines::Many, false).contains("\\u0000-\\u0008\\u000B-\\u000C\\u000E-\\u001F"));
        assert!(text_pattern(Lines::One, false).contains("\\U000E0020-\\U000E007F"));
    }

    #[derive(serde::Deserialize, Debug)]
    struct Body {
        #[serde(default)]
        name: Field<String>,
        #[serde(default)]
        count: Field<i64>,
    }

    #[test]
    fn fields_tell_missing_null_wrong_type_and_value_apart() {
        let parse = |v: serde_json::Value| serde_json::from_value::<Body>(v).expect("never fails on a field");
        let b = parse(serde_json::json!({}));
        assert_eq!((b.name, b.count), (Field::Missing, Field::Missing));
        let b = parse(serde_json::json!({"name": null, "count": "7"}));
        assert_eq!((b.name, b.count), (Field::Null, Field::WrongType));
        let b = parse(serde_json::json!({"name": "Ada", "count": 7, "other": [1]}));
        assert_eq!(b.name.text(), Ok(Some("Ada".to_string())));
        assert_eq!(b.count.value(), Some(7));
        assert_eq!(parse(serde_json::json!({"name": 3})).name.text(), Err(NotAString));
    }
}
