//! Password policy, the common-password blocklist and argon2id hashing.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

use crate::config::Argon2Params;
use crate::{Error, ErrorCode};

/// Fewest characters a password may have.
pub const MIN_CHARS: usize = 8;
/// Most characters a password may have (bounds the hashing cost of a request).
pub const MAX_CHARS: usize = 128;

/// Sorted big-endian fingerprints (first four bytes of SHA-256 of the lower-cased password) of
/// the 20,000 most common passwords; built by `data/build_blocklist.py`.
static BLOCKLIST: &[u8] = include_bytes!("../data/common-passwords.bin");

/// Checks a candidate password against the policy: length in characters, an upper-case
/// letter, a lower-case letter and a digit, and not a common password (case-insensitive).
pub fn check_policy(password: &str) -> Result<(), ErrorCode> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(ErrorCode::PasswordTooShort);
    }
    if chars > MAX_CHARS {
        return Err(ErrorCode::PasswordTooLong);
    }
    let upper = password.chars().any(char::is_uppercase);
    let lower = password.chars().any(char::is_lowercase);
    let digit = password.chars().any(|c| c.is_ascii_digit());
    if !(upper && lower && digit) {
        return Err(ErrorCode::PasswordTooWeak);
    }
    if is_common(password) {
        return Err(ErrorCode::PasswordTooCommon);
    }
    Ok(())
}

/// Whether `password`, lower-cased, is on the blocklist.
pub fn is_common(password: &str) -> bool {
    let digest = Sha256::digest(password.to_lowercase().as_bytes());
    let Some(print) = digest.first_chunk::<4>() else {
        return false;
    };
    let (entries, _) = BLOCKLIST.as_chunks::<4>();
    entries.binary_search(print).is_ok()
}

/// Hashes and verifies passwords with argon2id.
#[derive(Debug, Clone)]
pub struct Hasher {
    params: Argon2Params,
}

impl Hasher {
    /// A hasher that creates new hashes with `params`.
    pub fn new(params: Argon2Params) -> Self {
        Self { params }
    }

    /// The PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) of `password` with `salt`.
    pub fn hash(&self, password: &str, salt: [u8; 16]) -> Result<String, Error> {
        let params = Params::new(self.params.m_kib, self.params.t, self.params.p, Some(32))
            .map_err(|_| Error::Crypto("bad argon2 parameters"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::encode_b64(&salt).map_err(|_| Error::Crypto("bad salt"))?;
        let hash = argon
            .hash_password(password.as_bytes(), &salt)
            .map_err(|_| Error::Crypto("argon2 failed"))?;
        Ok(hash.to_string())
    }

    /// Whether `password` matches the stored PHC string, using the parameters stored in it.
    pub fn verify(&self, password: &str, stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        if parsed.algorithm != argon2::ARGON2ID_IDENT {
            return false;
        }
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    }

    /// Spends the same effort as a verification against a hash made with the current
    /// parameters, so an unknown account answers in comparable time.
    pub fn burn(&self, password: &str) {
        let _ = self.hash(password, [0x5a; 16]);
    }

    /// Whether a stored hash uses weaker parameters than the current ones.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return true;
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return true;
        };
        params.m_cost() < self.params.m_kib
            || params.t_cost() < self.params.t
            || params.p_cost() < self.params.p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Hasher {
        Hasher::new(Argon2Params {
            m_kib: 64,
            t: 1,
            p: 1,
        })
    }

    #[test]
    fn policy_errors_are_specific() {
        assert_eq!(check_policy("Ab1"), Err(ErrorCode::PasswordTooShort));
        assert_eq!(
            check_policy(&"Ab1".repeat(43)),
            Err(ErrorCode::PasswordTooLong)
        );
        assert_eq!(check_policy("alllower1"), Err(ErrorCode::PasswordTooWeak));
        assert_eq!(check_policy("ALLUPPER1"), Err(ErrorCode::PasswordTooWeak));
        assert_eq!(
            check_policy("NoDigitsHere"),
            Err(ErrorCode::PasswordTooWeak)
        );
        assert_eq!(check_policy("Password1"), Err(ErrorCode::PasswordTooCommon));
        assert_eq!(check_policy("Qwerty123"), Err(ErrorCode::PasswordTooCommon));
        assert_eq!(check_policy("Tulip-Harbor-58"), Ok(()));
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // Seven characters of which several are multi-byte: still too short.
        assert_eq!(
            check_policy("Éé1😀😀😀😀"),
            Err(ErrorCode::PasswordTooShort)
        );
        // 128 characters, 4 bytes each: allowed.
        let long = format!("Aa1{}", "😀".repeat(125));
        assert_eq!(check_policy(&long), Ok(()));
    }

    #[test]
    fn blocklist_holds_the_most_common_passwords() {
        for p in [
            "123456", "password", "qwerty", "letmein", "dragon", "PASSWORD",
        ] {
            assert!(is_common(p), "{p}");
        }
        assert!(!is_common("Tulip-Harbor-58"));
        assert_eq!(BLOCKLIST.len() % 4, 0);
        assert!(BLOCKLIST.len() / 4 >= 10_000);
        assert!(
            BLOCKLIST
                .chunks(4)
                .zip(BLOCKLIST.chunks(4).skip(1))
                .all(|(a, b)| a < b)
        );
    }

    #[test]
    fn hash_verifies_and_keeps_its_parameters() {
        let hasher = cheap();
        let stored = hasher.hash("Tulip-Harbor-58", [1; 16]).unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(hasher.verify("Tulip-Harbor-58", &stored));
        assert!(!hasher.verify("tulip-harbor-58", &stored));
        assert!(!hasher.verify("Tulip-Harbor-58", "garbage"));
        // A stronger deployment still verifies old hashes and asks to upgrade them.
        let stronger = Hasher::new(Argon2Params {
            m_kib: 128,
            t: 2,
            p: 1,
        });
        assert!(stronger.verify("Tulip-Harbor-58", &stored));
        assert!(stronger.needs_rehash(&stored));
        assert!(!hasher.needs_rehash(&stored));
    }

    #[test]
    fn default_parameters_are_owasp() {
        let stored = Hasher::new(Argon2Params::default())
            .hash("x", [2; 16])
            .unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }
}
