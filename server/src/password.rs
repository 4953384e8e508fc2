//! Passwords for browser sign-in: argon2id (the `argon2` crate's defaults: 19 MiB, 2
//! passes, 1 lane), a random 16-byte salt per hash, stored as a PHC string. Never logged,
//! never returned.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::{ApiError, ApiResult};

/// The shortest password accepted.
pub const MIN_LEN: usize = 12;
const MAX_LEN: usize = 1024;

/// Refuses a password too short or too long to be one.
pub fn check_policy(password: &str) -> ApiResult<()> {
    let n = password.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&n) {
        return Err(ApiError::BadRequest(format!(
            "a password must be {MIN_LEN} to {MAX_LEN} characters"
        )));
    }
    Ok(())
}

/// The argon2id PHC string of `password`.
pub fn hash(password: &str) -> ApiResult<String> {
    check_policy(password)?;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| ApiError::internal(format!("random: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(ApiError::internal)?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(ApiError::internal)
}

/// Whether `password` matches `phc` (false for a malformed hash).
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A random password of 24 URL-safe characters (144 bits).
pub fn generate() -> ApiResult<String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(format!("random: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("correct horse battery", "not a hash"));
        assert_ne!(h, hash("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(hash("short").is_err());
        assert_eq!(generate().unwrap().len(), 24);
    }
}
