//! Credentials: the TURN REST ephemeral scheme, the RFC 8489 long-term key, and stateless
//! nonces that carry their own expiry.
//!
//! A REST username is `<expiry>:<name>` where `<expiry>` is a Unix time in seconds and `<name>`
//! names the room or user; its password is `base64(HMAC-SHA1(secret, username))`. The relay
//! accepts the current secret and the previous one, so a secret can be rotated without cutting
//! off credentials minted just before the rotation.
//!
//! A nonce is `<expiry as 16 hex digits><HMAC-SHA1(nonce key, expiry | client address) as hex>`:
//! the relay keeps no state per nonce and can still tell a stale nonce (438) from a forged one.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest as _, Md5};
use ring::hmac;

/// A shared secret for REST credentials. Its `Debug` form never shows the bytes.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    fn password(&self, username: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.0);
        STANDARD.encode(hmac::sign(&key, username).as_ref())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A minted REST credential pair.
#[derive(Clone, PartialEq, Eq)]
pub struct RestCredential {
    /// `<expiry>:<name>`.
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub password: String,
}

impl fmt::Debug for RestCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestCredential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Mints a REST credential for `name`, valid until `expiry` (Unix seconds).
pub fn mint(secret: &Secret, expiry: u64, name: &str) -> RestCredential {
    let username = format!("{expiry}:{name}");
    let password = secret.password(username.as_bytes());
    RestCredential { username, password }
}

/// A REST username split into its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestUsername<'a> {
    /// Expiry, Unix seconds.
    pub expiry: u64,
    /// Room or user name.
    pub name: &'a str,
}

impl<'a> RestUsername<'a> {
    /// Parses `<expiry>:<name>`; the name must be non-empty.
    pub fn parse(username: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(username).ok()?;
        let (expiry, name) = text.split_once(':')?;
        if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
            return None;
        }
        Some(Self {
            expiry: expiry.parse().ok()?,
            name,
        })
    }
}

/// Why a credential was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The username is not `<expiry>:<name>`.
    Malformed,
    /// The expiry is in the past.
    Expired,
    /// No accepted secret produces the message integrity.
    BadIntegrity,
}

/// RFC 8489 long-term key: `MD5(username ":" realm ":" password)`.
pub fn long_term_key(username: &[u8], realm: &[u8], password: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(username);
    md5.update(b":");
    md5.update(realm);
    md5.update(b":");
    md5.update(password);
    md5.finalize().into()
}

/// Checks a REST username at `now` and finds the long-term key, among those derived from
/// `secrets`, for which `verify` accepts the message.
pub fn authenticate<'u>(
    secrets: &[Secret],
    realm: &[u8],
    username: &'u [u8],
    now: Duration,
    verify: impl Fn(&[u8]) -> bool,
) -> Result<(RestUsername<'u>, [u8; 16]), Refusal> {
    let parsed = RestUsername::parse(username).ok_or(Refusal::Malformed)?;
    if parsed.expiry <= now.as_secs() {
        return Err(Refusal::Expired);
    }
    for secret in secrets {
        let password = secret.password(username);
        let key = long_term_key(username, realm, password.as_bytes());
        if verify(&key) {
            return Ok((parsed, key));
        }
    }
    Err(Refusal::BadIntegrity)
}

/// Issues and checks stateless nonces.
pub struct Nonces {
    key: hmac::Key,
    lifetime: Duration,
}

impl fmt::Debug for Nonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nonces")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// What a presented nonce turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued here for this client and not expired.
    Valid,
    /// Not issued here, for another client, or expired: answer 438 with a fresh one.
    Stale,
}

impl Nonces {
    /// A nonce issuer with a random `key` and a `lifetime`.
    pub fn new(key: [u8; 32], lifetime: Duration) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key),
            lifetime,
        }
    }

    fn tag(&self, expiry: u64, client: &SocketAddr) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&expiry.to_be_bytes());
        match client.ip() {
            std::net::IpAddr::V4(ip) => ctx.update(&ip.octets()),
            std::net::IpAddr::V6(ip) => ctx.update(&ip.octets()),
        }
        ctx.update(&client.port().to_be_bytes());
        ctx.sign()
    }

    /// A nonce for `client`, valid from `now` for the configured lifetime.
    pub fn issue(&self, client: &SocketAddr, now: Duration) -> String {
        let expiry = (now + self.lifetime).as_secs();
        let mut out = format!("{expiry:016x}");
        for b in self.tag(expiry, client).as_ref() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Checks a nonce presented by `client` at `now`.
    pub fn check(&self, nonce: &[u8], client: &SocketAddr, now: Duration) -> NonceCheck {
        let (Some(expiry), Some(tag)) = (nonce.get(..16), nonce.get(16..)) else {
            return NonceCheck::Stale;
        };
        let Some(expiry) = std::str::from_utf8(expiry)
            .ok()
            .and_then(|e| u64::from_str_radix(e, 16).ok())
        else {
            return NonceCheck::Stale;
        };
        let Some(tag) = decode_hex(tag) else {
            return NonceCheck::Stale;
        };
        let expected = self.tag(expiry, client);
        let genuine = crate::proto::codec::constant_time_eq(expected.as_ref(), &tag);
        if genuine && expiry > now.as_secs() {
            NonceCheck::Valid
        } else {
            NonceCheck::Stale
        }
    }
}

fn decode_hex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_password_matches_reference_computation() {
        // `echo -n "1700000000:room42" | openssl dgst -sha1 -hmac "north" -binary | base64`
        let cred = mint(&Secret::new("north"), 1_700_000_000, "room42");
        assert_eq!(cred.username, "1700000000:room42");
        assert_eq!(cred.password, "6jEOOKLXV28ddpPg1Hvx2NSsH3k=");
    }

    #[test]
    fn usernames_parse_strictly() {
        let ok = RestUsername::parse(b"1700000000:room:with:colons").unwrap();
        assert_eq!(ok.expiry, 1_700_000_000);
        assert_eq!(ok.name, "room:with:colons");
        for bad in [
            &b"room"[..],
            b":room",
            b"12:",
            b"-5:room",
            b"1e9:room",
            b"\xff:room",
        ] {
            assert_eq!(RestUsername::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn authenticate_accepts_current_and_previous_secret_and_refuses_others() {
        let now = Duration::from_secs(1_000);
        let realm = b"bedside";
        let secrets = [Secret::new("current"), Secret::new("previous")];
        for (secret, accepted) in [("current", true), ("previous", true), ("other", false)] {
            let cred = mint(&Secret::new(secret), 2_000, "room");
            let good = long_term_key(cred.username.as_bytes(), realm, cred.password.as_bytes());
            let result = authenticate(&secrets, realm, cred.username.as_bytes(), now, |k| {
                k == good
            });
            assert_eq!(result.is_ok(), accepted, "{secret}");
        }
        let expired = mint(&secrets[0], 1_000, "room");
        let result = authenticate(&secrets, realm, expired.username.as_bytes(), now, |_| true);
        assert_eq!(result, Err(Refusal::Expired));
        let result = authenticate(&secrets, realm, b"nocolon", now, |_| true);
        assert_eq!(result, Err(Refusal::Malformed));
    }

    #[test]
    fn nonces_expire_and_are_bound_to_the_client() {
        let nonces = Nonces::new([7; 32], Duration::from_secs(600));
        let client: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        let t0 = Duration::from_secs(1_000_000);
        let nonce = nonces.issue(&client, t0);
        assert_eq!(
            nonces.check(nonce.as_bytes(), &client, t0),
            NonceCheck::Valid
        );
        let t1 = t0 + Duration::from_secs(599);
        assert_eq!(
            nonces.check(nonce.as_bytes(), &client, t1),
            NonceCheck::Valid
        );
        let t2 = t0 + Duration::from_secs(600);
        assert_eq!(
            nonces.check(nonce.as_bytes(), &client, t2),
            NonceCheck::Stale
        );
        assert_eq!(
            nonces.check(nonce.as_bytes(), &other, t0),
            NonceCheck::Stale
        );

        let mut forged = nonce.clone().into_bytes();
        forged[3] = b'f';
        assert_eq!(nonces.check(&forged, &client, t0), NonceCheck::Stale);
        assert_eq!(nonces.check(b"short", &client, t0), NonceCheck::Stale);
        let other_key = Nonces::new([8; 32], Duration::from_secs(600));
        assert_eq!(
            other_key.check(nonce.as_bytes(), &client, t0),
            NonceCheck::Stale
        );
    }
}
