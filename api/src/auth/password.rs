//! Password hashing: Argon2id for new hashes, legacy bcrypt accepted on verification (§2.5).
//! Hashing is CPU-heavy, so it runs on the blocking pool.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};

fn argon2() -> Argon2<'static> {
    // m = 19 MiB, t = 2, p = 1: the OWASP baseline the contract asks for.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
}

pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password)).await?
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, but stored with a legacy scheme: re-hash with Argon2id.
    YesLegacy,
}

pub fn is_bcrypt(hash: &str) -> bool {
    hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")
}

pub fn verify_blocking(password: &str, stored: &str) -> Verified {
    if is_bcrypt(stored) {
        return match bcrypt::verify(password, stored) {
            Ok(true) => Verified::YesLegacy,
            _ => Verified::No,
        };
    }
    match PasswordHash::new(stored) {
        Ok(parsed) if argon2().verify_password(password.as_bytes(), &parsed).is_ok() => Verified::Yes,
        _ => Verified::No,
    }
}

pub async fn verify(password: String, stored: String) -> anyhow::Result<Verified> {
    Ok(tokio::task::spawn_blocking(move || verify_blocking(&password, &stored)).await?)
}

/// A real hash of a random password, verified against for unknown emails so that they cost the
/// same time as a wrong password.
pub static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    hash_blocking(&uuid::Uuid::new_v4().to_string()).unwrap_or_else(|_| String::from("$argon2id$invalid"))
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip_with_the_required_parameters() {
        let h = hash_blocking("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_eq!(verify_blocking("correct horse", &h), Verified::Yes);
        assert_eq!(verify_blocking("wrong horse", &h), Verified::No);
    }

    #[test]
    fn legacy_bcrypt_hashes_verify_and_ask_for_a_rehash() {
        let h = bcrypt::hash("legacy-password", 4).expect("bcrypt");
        assert_eq!(verify_blocking("legacy-password", &h), Verified::YesLegacy);
        assert_eq!(verify_blocking("nope", &h), Verified::No);
        let h2y = h.replacen("$2b$", "$2y$", 1);
        assert_eq!(verify_blocking("legacy-password", &h2y), Verified::YesLegacy);
    }

    #[test]
    fn garbage_hashes_never_verify() {
        assert_eq!(verify_blocking("x", "not-a-hash"), Verified::No);
    }
}
