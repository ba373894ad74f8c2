//! Signed access tokens (Ed25519 JWTs via `jwt-simple`) and the public key set.
//!
//! Tokens follow RFC 8725: one algorithm (EdDSA), an explicit `typ` per token kind so an MFA
//! challenge can never pass as an access token, exact issuer and audience, a key id, and a tight
//! clock tolerance. Verification takes `now` as a parameter.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jwt_simple::prelude::{
    Audiences, Duration, Ed25519KeyPair, Ed25519PublicKey, EdDSAKeyPairLike, EdDSAPublicKeyLike,
    HeaderOptions, JWTClaims, VerificationOptions,
};
use serde::{Deserialize, Serialize};

use crate::{ErrorCode, Timestamp, crypto};

/// The kind of a token, carried in the JWT `typ` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenKind {
    /// An access token (`at+jwt`, RFC 9068).
    Access,
    /// A second-factor challenge issued after a correct password (`mfa+jwt`).
    Mfa,
}

impl TokenKind {
    fn typ(self) -> &'static str {
        match self {
            Self::Access => "at+jwt",
            Self::Mfa => "mfa+jwt",
        }
    }
}

/// Claims beyond the registered ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Extra {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Account id (`sub`).
    pub subject: String,
    /// Session id (`sid`), for access tokens.
    pub session: Option<String>,
    /// Token id (`jti`).
    pub token_id: String,
    /// Expiry, seconds since the epoch.
    pub expires_at: i64,
}

/// Signs and verifies tokens with one Ed25519 key.
pub struct Signer {
    key_pair: Ed25519KeyPair,
    public: Ed25519PublicKey,
    key_id: String,
    issuer: String,
    audience: String,
    leeway_secs: u64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer whose key is derived from a 32-byte seed. The key id is a digest of the public
    /// key, so it changes when the key does.
    pub fn from_seed(
        seed: [u8; 32],
        issuer: &str,
        audience: &str,
        leeway_secs: i64,
    ) -> Result<Self, crate::Error> {
        let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
        let public_raw = pair.pk.to_vec();
        let key_id = crypto::sha256_hex(&public_raw)
            .get(..16)
            .unwrap_or_default()
            .to_owned();
        let key_pair = Ed25519KeyPair::from_bytes(&pair.to_vec())
            .map_err(|_| crate::Error::Crypto("signing key"))?
            .with_key_id(&key_id);
        let public = key_pair.public_key().with_key_id(&key_id);
        Ok(Self {
            key_pair,
            public,
            key_id,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway_secs: u64::try_from(leeway_secs).unwrap_or(0),
        })
    }

    /// The key id (`kid`).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs a token of `kind` for `subject`, valid `ttl_secs` from `now`.
    pub fn issue(
        &self,
        kind: TokenKind,
        subject: &str,
        session: Option<&str>,
        token_id: &str,
        now: Timestamp,
        ttl_secs: i64,
    ) -> Result<String, crate::Error> {
        let now_secs = u64::try_from(now.secs()).unwrap_or(0);
        let ttl = u64::try_from(ttl_secs).unwrap_or(0);
        let claims = JWTClaims {
            issued_at: Some(Duration::from_secs(now_secs)),
            expires_at: Some(Duration::from_secs(now_secs.saturating_add(ttl))),
            invalid_before: None,
            issuer: Some(self.issuer.clone()),
            subject: Some(subject.to_owned()),
            audiences: Some(Audiences::AsString(self.audience.clone())),
            jwt_id: Some(token_id.to_owned()),
            nonce: None,
            custom: Extra {
                sid: session.map(str::to_owned),
            },
        };
        let header = HeaderOptions {
            signature_type: Some(kind.typ().to_owned()),
            ..HeaderOptions::default()
        };
        self.key_pair
            .sign_with_options(claims, &header)
            .map_err(|_| crate::Error::Crypto("token signing failed"))
    }

    /// Verifies a token of `kind` at `now`: signature, algorithm, `typ`, `kid`, issuer,
    /// audience, expiry (with the configured tolerance) and the presence of `sub` and `jti`.
    pub fn verify(
        &self,
        kind: TokenKind,
        token: &str,
        now: Timestamp,
    ) -> Result<Verified, ErrorCode> {
        let now_secs = u64::try_from(now.secs()).unwrap_or(0);
        let options = VerificationOptions {
            required_signature_type: Some(kind.typ().to_owned()),
            required_key_id: Some(self.key_id.clone()),
            allowed_issuers: Some(HashSet::from([self.issuer.clone()])),
            allowed_audiences: Some(HashSet::from([self.audience.clone()])),
            time_tolerance: Some(Duration::from_secs(self.leeway_secs)),
            max_token_length: Some(4096),
            max_header_length: Some(512),
            artificial_time: Some(Duration::from_secs(now_secs)),
            ..VerificationOptions::default()
        };
        let claims = self
            .public
            .verify_token::<Extra>(token, Some(options))
            .map_err(|_| ErrorCode::InvalidToken)?;
        let (Some(subject), Some(token_id), Some(expires_at)) =
            (claims.subject, claims.jwt_id, claims.expires_at)
        else {
            return Err(ErrorCode::InvalidToken);
        };
        if kind == TokenKind::Access && claims.custom.sid.is_none() {
            return Err(ErrorCode::InvalidToken);
        }
        Ok(Verified {
            subject,
            session: claims.custom.sid,
            token_id,
            expires_at: i64::try_from(expires_at.as_secs()).unwrap_or(i64::MAX),
        })
    }

    /// The JSON Web Key Set that publishes the verification key.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": B64URL.encode(self.public.to_bytes()),
                "kid": self.key_id,
                "alg": "EdDSA",
                "use": "sig",
            }]
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn signer() -> Signer {
        Signer::from_seed([1; 32], "https://bedside.test", "bedside", 30).unwrap()
    }

    fn token() -> String {
        signer()
            .issue(TokenKind::Access, "acct", Some("sess"), "jti-1", NOW, 900)
            .unwrap()
    }

    fn parts(token: &str) -> (serde_json::Value, serde_json::Value, String) {
        let mut it = token.split('.');
        let h = B64URL.decode(it.next().unwrap()).unwrap();
        let p = B64URL.decode(it.next().unwrap()).unwrap();
        (
            serde_json::from_slice(&h).unwrap(),
            serde_json::from_slice(&p).unwrap(),
            it.next().unwrap().to_owned(),
        )
    }

    fn encode(header: &serde_json::Value, payload: &serde_json::Value, sig: &str) -> String {
        format!(
            "{}.{}.{sig}",
            B64URL.encode(header.to_string()),
            B64URL.encode(payload.to_string())
        )
    }

    #[test]
    fn round_trip_carries_all_claims() {
        let t = token();
        let (header, payload, _) = parts(&t);
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"], signer().key_id());
        for claim in ["iss", "aud", "sub", "sid", "jti", "iat", "exp"] {
            assert!(payload.get(claim).is_some(), "{claim}");
        }
        let v = signer().verify(TokenKind::Access, &t, NOW).unwrap();
        assert_eq!(v.subject, "acct");
        assert_eq!(v.session.as_deref(), Some("sess"));
        assert_eq!(v.token_id, "jti-1");
    }

    #[test]
    fn expiry_respects_the_tolerance_only() {
        let t = token();
        let at = |secs: i64| Timestamp::from_secs(NOW.secs() + secs);
        assert!(signer().verify(TokenKind::Access, &t, at(900 + 29)).is_ok());
        assert_eq!(
            signer().verify(TokenKind::Access, &t, at(900 + 31)),
            Err(ErrorCode::InvalidToken)
        );
    }

    #[test]
    fn rfc8725_attacks_are_refused() {
        let t = token();
        let (header, payload, sig) = parts(&t);
        let verify = |tok: &str| signer().verify(TokenKind::Access, tok, NOW);

        // alg "none" with and without a signature.
        let mut none = header.clone();
        none["alg"] = "none".into();
        assert!(verify(&encode(&none, &payload, "")).is_err());
        assert!(verify(&encode(&none, &payload, &sig)).is_err());

        // Algorithm confusion: HS256 keyed with the public key.
        let mut hs = header.clone();
        hs["alg"] = "HS256".into();
        let signing_input = format!(
            "{}.{}",
            B64URL.encode(hs.to_string()),
            B64URL.encode(payload.to_string())
        );
        let jwks = signer().jwks();
        let public = B64URL
            .decode(jwks["keys"][0]["x"].as_str().unwrap())
            .unwrap();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&public).unwrap();
        mac.update(signing_input.as_bytes());
        let hs_sig = B64URL.encode(mac.finalize().into_bytes());
        assert!(verify(&format!("{signing_input}.{hs_sig}")).is_err());

        // Edited payload keeps the old signature.
        let mut edited = payload.clone();
        edited["sub"] = "someone-else".into();
        assert!(verify(&encode(&header, &edited, &sig)).is_err());

        // Truncated signature, wrong kid, missing typ.
        assert!(verify(&t[..t.len() - 4]).is_err());
        let mut kid = header.clone();
        kid["kid"] = "other".into();
        assert!(verify(&encode(&kid, &payload, &sig)).is_err());

        // Signed by another key.
        let other = Signer::from_seed([2; 32], "https://bedside.test", "bedside", 30).unwrap();
        let foreign = other
            .issue(TokenKind::Access, "acct", Some("sess"), "j", NOW, 900)
            .unwrap();
        assert!(verify(&foreign).is_err());
    }

    #[test]
    fn audience_issuer_and_kind_must_match() {
        let t = token();
        let wrong_aud = Signer::from_seed([1; 32], "https://bedside.test", "other", 30).unwrap();
        assert!(wrong_aud.verify(TokenKind::Access, &t, NOW).is_err());
        let wrong_iss = Signer::from_seed([1; 32], "https://evil.test", "bedside", 30).unwrap();
        assert!(wrong_iss.verify(TokenKind::Access, &t, NOW).is_err());
        assert!(signer().verify(TokenKind::Mfa, &t, NOW).is_err());
        let mfa = signer()
            .issue(TokenKind::Mfa, "acct", None, "j2", NOW, 300)
            .unwrap();
        assert!(signer().verify(TokenKind::Access, &mfa, NOW).is_err());
        assert!(signer().verify(TokenKind::Mfa, &mfa, NOW).is_ok());
    }

    #[test]
    fn jwks_publishes_the_key() {
        let jwks = signer().jwks();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(B64URL.decode(key["x"].as_str().unwrap()).unwrap().len(), 32);
    }
}
