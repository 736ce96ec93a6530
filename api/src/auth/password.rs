//! Password hashing: Argon2id for new hashes, legacy bcrypt accepted on verification (§2.5).
//!
//! Each Argon2id hash needs 19 MiB of working memory. Allocated per hash on a large blocking pool,
//! that memory ends up in glibc arenas that are never trimmed (the api grew to ~900 MB after a
//! morning of logins). So hashes run behind a gate of one permit per core (a request waits at
//! most [`HASH_WAIT`] for one, then gets 503 with `Retry-After`), and each hash works in a block
//! set taken from a pool that keeps at most one set per permit: the memory is allocated once per
//! core and reused, whatever the number of logins.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use tokio::sync::Semaphore;

use crate::error::{ApiError, UNAVAILABLE_MESSAGE};

/// How long a request waits for a hashing permit before it is answered 503.
pub const HASH_WAIT: Duration = Duration::from_secs(10);

fn params() -> Params {
    // m = 19 MiB, t = 2, p = 1: the OWASP baseline the contract asks for.
    Params::new(19 * 1024, 2, 1, None).unwrap_or_default()
}

fn argon2_with(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn permits() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Concurrent hashes and verifications: one per core.
static GATE: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(permits()));

/// Block sets of finished hashes, reused by the next ones (at most one per permit is kept).
static MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Runs `f` with `count` blocks of working memory, pooled when they are of the standard size.
fn with_blocks<R>(count: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
    let pooled = count == params().block_count();
    let reused = if pooled { MEMORY.lock().ok().and_then(|mut m| m.pop()) } else { None };
    let mut blocks = reused.unwrap_or_else(|| vec![Block::default(); count]);
    let result = f(&mut blocks);
    if pooled
        && let Ok(mut m) = MEMORY.lock()
        && m.len() < permits()
    {
        m.push(blocks);
    }
    result
}

/// Hashes into pooled memory and formats the PHC string.
pub fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let params = params();
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let argon2 = argon2_with(params.clone());
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        with_blocks(params.block_count(), |blocks| {
            argon2.hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, blocks)
        })
        .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("params: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Verifies a PHC Argon2 hash with pooled memory (any Argon2 variant and parameters).
fn verify_argon2(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return false };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(parsed.algorithm), Params::try_from(&parsed)) else {
        return false;
    };
    let version = parsed.version.map_or(Ok(Version::default()), Version::try_from);
    let Ok(version) = version else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else { return false };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let computed = Output::init_with(expected.len(), |out| {
        with_blocks(params.block_count(), |blocks| {
            argon2.hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, blocks)
        })
        .map_err(|_| argon2::password_hash::Error::Crypto)
    });
    // `Output` compares in constant time.
    computed.is_ok_and(|c| c == expected)
}

/// 503 with `Retry-After`: every hashing permit stayed taken for [`HASH_WAIT`].
fn busy() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE)
        .with_header(HeaderName::from_static("retry-after"), HeaderValue::from_static("1"))
}

/// Runs a hash or verification on the blocking pool once a permit of `gate` is free.
async fn gated<R: Send + 'static>(
    gate: &Semaphore,
    wait: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, ApiError> {
    let permit = match tokio::time::timeout(wait, gate.acquire()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            tracing::warn!("password hashing at capacity; request refused");
            return Err(busy());
        }
    };
    let result = tokio::task::spawn_blocking(f).await.map_err(ApiError::internal);
    drop(permit);
    result
}

pub async fn hash(password: String) -> Result<String, ApiError> {
    gated(&GATE, HASH_WAIT, move || hash_blocking(&password)).await?.map_err(ApiError::internal)
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
    if verify_argon2(password, stored) { Verified::Yes } else { Verified::No }
}

pub async fn verify(password: String, stored: String) -> Result<Verified, ApiError> {
    gated(&GATE, HASH_WAIT, move || verify_blocking(&password, &stored)).await
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

    #[test]
    fn hashes_of_the_argon2_crate_and_other_parameters_still_verify() {
        use argon2::password_hash::PasswordHasher;
        let salt = SaltString::generate(&mut OsRng);
        let other = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8 * 1024, 1, 1, None).expect("p"));
        let h = other.hash_password(b"pw-123456", &salt).expect("hash").to_string();
        assert_eq!(verify_blocking("pw-123456", &h), Verified::Yes);
        assert_eq!(verify_blocking("pw-1234567", &h), Verified::No);
        let ours = hash_blocking("pw-123456").expect("hash");
        let parsed = PasswordHash::new(&ours).expect("phc");
        assert!(argon2::PasswordVerifier::verify_password(&argon2_with(params()), b"pw-123456", &parsed).is_ok());
    }

    #[test]
    fn working_memory_is_reused_and_gives_the_same_results() {
        // A set used by one hash is dirty for the next: results must not depend on it.
        let h = hash_blocking("first password").expect("hash");
        for _ in 0..5 {
            hash_blocking("another password").expect("hash");
            assert_eq!(verify_blocking("first password", &h), Verified::Yes);
        }
        let kept = MEMORY.lock().expect("lock").len();
        assert!((1..=permits()).contains(&kept), "{kept} block sets kept");
    }

    #[tokio::test]
    async fn a_request_that_finds_every_permit_taken_gets_503_with_retry_after() {
        let gate = Semaphore::new(1);
        let held = gate.acquire().await.expect("permit");
        let e = gated(&gate, Duration::from_millis(50), || ()).await.expect_err("busy");
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.headers.as_ref().and_then(|h| h.get("retry-after")).map(|v| v.as_bytes()), Some(&b"1"[..]));
        drop(held);
        assert!(gated(&gate, Duration::from_millis(50), || ()).await.is_ok());
    }
}
