//! HS256 tokens with the contract's claims (§2.2).

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use drishtiksha_common::UserRole;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub user_id: Uuid,
    pub email: String,
    pub role: UserRole,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Invalid,
    Expired,
    BadPayload,
}

impl TokenError {
    pub fn message(self) -> &'static str {
        match self {
            Self::Invalid => "Invalid access token.",
            Self::Expired => "Access token has expired.",
            Self::BadPayload => "Invalid token payload.",
        }
    }
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    expires_in: Duration,
}

impl JwtKeys {
    pub fn new(secret: &[u8], expires_in: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 60;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            expires_in,
        }
    }

    pub fn issue(&self, user_id: Uuid, email: &str, role: UserRole) -> anyhow::Result<(String, Claims)> {
        self.issue_at(user_id, email, role, Utc::now().timestamp())
    }

    /// A token issued at `iat`: after a password change, tokens are issued no earlier than the
    /// change's cut-off, which may be up to a second ahead of the clock.
    pub fn issue_at(&self, user_id: Uuid, email: &str, role: UserRole, iat: i64) -> anyhow::Result<(String, Claims)> {
        let claims = Claims {
            user_id,
            email: email.to_string(),
            role,
            iat,
            exp: iat + i64::try_from(self.expires_in.as_secs()).unwrap_or(i64::MAX / 2),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, claims))
    }

    /// Verifies signature, algorithm and expiry; returns the user id.
    pub fn verify(&self, token: &str) -> Result<Uuid, TokenError> {
        self.verify_token(token).map(|t| t.user_id)
    }

    /// Verifies signature, algorithm and expiry; returns the claims revocation needs.
    pub fn verify_token(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let user_id = data
            .claims
            .get("userId")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or(TokenError::BadPayload)?;
        // A token without `iat` predates every password change.
        let iat = data.claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
        let exp = data.claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        Ok(VerifiedToken { user_id, iat, exp })
    }
}

/// A token whose signature and expiry are good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedToken {
    pub user_id: Uuid,
    pub iat: i64,
    pub exp: i64,
}

impl VerifiedToken {
    /// The key under which a token is revoked: its SHA-256 (the token itself is never stored).
    pub fn hash_of(token: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn b64(v: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_claims() {
        let keys = JwtKeys::new(SECRET, Duration::from_secs(3600));
        let id = Uuid::new_v4();
        let (token, claims) = keys.issue(id, "ada@example.com", UserRole::User).expect("issue");
        assert_eq!(keys.verify(&token), Ok(id));
        assert_eq!(claims.exp - claims.iat, 3600);
        let payload = token.split('.').nth(1).expect("payload");
        let json: Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("b64"))
                .expect("json");
        let keys_of: Vec<_> = json.as_object().expect("object").keys().cloned().collect();
        assert_eq!(keys_of, vec!["userId", "email", "role", "iat", "exp"]);
    }

    #[test]
    fn alg_none_and_other_secrets_and_tampering_are_rejected() {
        let keys = JwtKeys::new(SECRET, Duration::from_secs(3600));
        let other = JwtKeys::new(b"another-secret-another-secret-xx", Duration::from_secs(3600));
        let (token, _) = other.issue(Uuid::new_v4(), "a@b.co", UserRole::User).expect("issue");
        assert_eq!(keys.verify(&token), Err(TokenError::Invalid));

        let exp = Utc::now().timestamp() + 3600;
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(format!(r#"{{"userId":"{}","exp":{exp}}}"#, Uuid::new_v4()).as_bytes())
        );
        assert_eq!(keys.verify(&none), Err(TokenError::Invalid));

        let (token, _) = keys.issue(Uuid::new_v4(), "a@b.co", UserRole::User).expect("issue");
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = b64(format!(r#"{{"userId":"{}","role":"ADMIN","exp":{exp}}}"#, Uuid::new_v4()).as_bytes());
        assert_eq!(keys.verify(&parts.join(".")), Err(TokenError::Invalid));
    }

    #[test]
    fn expired_and_payload_without_user_id_have_their_own_errors() {
        let keys = JwtKeys::new(SECRET, Duration::from_secs(3600));
        let past = Utc::now().timestamp() - 3600;
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"userId": Uuid::new_v4(), "iat": past - 10, "exp": past}),
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encode");
        assert_eq!(keys.verify(&token), Err(TokenError::Expired));
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"email": "x@y.z", "exp": Utc::now().timestamp() + 60}),
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encode");
        assert_eq!(keys.verify(&token), Err(TokenError::BadPayload));
    }
}
