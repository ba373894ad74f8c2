//! Small cryptographic helpers: per-request randomness, sealing secrets at rest, digests.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Error;

/// A 256-bit key (key-encryption key, code pepper).
#[derive(Clone)]
pub struct SecretKey(pub [u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// The randomness of one request, seeded by the adapter from its platform's CSPRNG.
#[derive(Debug)]
pub struct Rng(ChaCha20Rng);

impl Rng {
    /// A generator for one request.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ChaCha20Rng::from_seed(seed))
    }

    /// `N` random bytes.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.0.fill_bytes(&mut out);
        out
    }

    /// A random identifier: 128 bits as 32 lower-case hex digits.
    pub fn id(&mut self) -> String {
        hex(&self.bytes::<16>())
    }

    /// `len` random decimal digits, uniformly distributed.
    pub fn digits(&mut self, len: usize) -> String {
        self.from_alphabet(b"0123456789", len)
    }

    /// `len` characters from `alphabet`, uniformly distributed (rejection sampling).
    pub fn from_alphabet(&mut self, alphabet: &[u8], len: usize) -> String {
        let n = alphabet.len() as u32;
        let limit = u32::MAX - (u32::MAX % n);
        let mut out = String::with_capacity(len);
        while out.len() < len {
            let v = self.0.next_u32();
            if v >= limit {
                continue;
            }
            if let Some(&c) = alphabet.get((v % n) as usize) {
                out.push(char::from(c));
            }
        }
        out
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            // A nibble is below 16, so it is always a hex digit.
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    out
}

/// SHA-256 of `data` as hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// HMAC-SHA-256 of `data` under `key`, as hex. Used for short codes, which a plain digest
/// would not protect against offline guessing.
pub fn hmac_hex(key: &SecretKey, data: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail for a 32-byte key.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&key.0) else {
        return String::new();
    };
    mac.update(data);
    hex(&mac.finalize().into_bytes())
}

/// Compares two byte strings in time independent of where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Encrypts `plaintext` with AES-256-GCM under `key`, binding it to `aad` (for example the
/// account id, so a sealed value cannot be moved to another row). Returns base64 of
/// `nonce || ciphertext`.
pub fn seal(
    key: &SecretKey,
    aad: &[u8],
    plaintext: &[u8],
    nonce: [u8; 12],
) -> Result<String, Error> {
    let cipher = Aes256Gcm::new(&key.0.into());
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| Error::Crypto("seal failed"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(B64.encode(out))
}

/// Reverses [`seal`]; fails if the value was altered, moved or sealed under another key.
pub fn open(key: &SecretKey, aad: &[u8], sealed: &str) -> Result<Vec<u8>, Error> {
    let raw = B64
        .decode(sealed)
        .map_err(|_| Error::Corrupt("sealed value is not base64"))?;
    let Some((nonce, ciphertext)) = raw.split_at_checked(12) else {
        return Err(Error::Corrupt("sealed value too short"));
    };
    let cipher = Aes256Gcm::new(&key.0.into());
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| Error::Crypto("open failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_aad() {
        let key = SecretKey([7; 32]);
        let sealed = seal(&key, b"acct-1", b"seed", [1; 12]).unwrap();
        assert_eq!(open(&key, b"acct-1", &sealed).unwrap(), b"seed");
        assert!(open(&key, b"acct-2", &sealed).is_err());
        assert!(open(&SecretKey([8; 32]), b"acct-1", &sealed).is_err());
    }

    #[test]
    fn digits_are_uniform_enough_and_seeded() {
        let a = Rng::from_seed([3; 32]).digits(6);
        let b = Rng::from_seed([3; 32]).digits(6);
        assert_eq!(a, b);
        assert_eq!(a.len(), 6);
        assert!(a.bytes().all(|c| c.is_ascii_digit()));
        let mut rng = Rng::from_seed([4; 32]);
        let mut counts = [0u32; 10];
        for c in rng.digits(10_000).bytes() {
            counts[usize::from(c - b'0')] += 1;
        }
        assert!(
            counts.iter().all(|&n| (850..1150).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn hmac_matches_an_independent_implementation() {
        // Computed with Python's `hmac` module.
        let key = SecretKey(*b"0123456789abcdef0123456789abcdef");
        assert_eq!(
            hmac_hex(&key, b"what do ya want for nothing?"),
            "137e6557c3c13a1ca5dc7e52a389a0f86be8cb4db4ae61c62396058b00acacd0"
        );
    }
}
