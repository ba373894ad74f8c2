//! TOTP second factor (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps) and recovery codes.
//!
//! Code generation comes from `totp-rs`; this module adds what a server needs around it: a
//! constant-time check over the allowed skew that reports *which* step matched (so a code is
//! accepted once), provisioning with an SVG QR code, and recovery codes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use qrcodegen::{QrCode, QrCodeEcc};
use totp_rs::{Algorithm, TOTP};

use crate::crypto::{self, Rng};

/// Seconds per time step.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Steps of clock skew accepted either side of now.
pub const SKEW_STEPS: u64 = 1;
/// Recovery codes handed out at enrolment.
pub const RECOVERY_CODES: usize = 10;

/// What an authenticator app needs to enrol.
#[derive(Debug, Clone)]
pub struct Provisioning {
    /// The seed in base32 (for manual entry).
    pub secret: String,
    /// The `otpauth://totp/…` URI.
    pub uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
    /// The SVG as a `data:` URI, ready for an `<img>`.
    pub qr_data_uri: String,
}

fn totp(seed: &[u8], issuer: &str, account: &str) -> TOTP {
    TOTP {
        algorithm: Algorithm::SHA1,
        digits: DIGITS,
        skew: 0,
        step: STEP_SECS,
        secret: seed.to_vec(),
        issuer: Some(issuer.replace(':', "")),
        account_name: account.replace(':', ""),
    }
}

/// A fresh 160-bit seed.
pub fn new_seed(rng: &mut Rng) -> [u8; 20] {
    rng.bytes()
}

/// Provisioning data for `seed`, labelled `issuer:account`.
pub fn provisioning(seed: &[u8], issuer: &str, account: &str) -> Provisioning {
    let t = totp(seed, issuer, account);
    let uri = t.get_url();
    let qr_svg = qr_svg(&uri);
    let qr_data_uri = format!("data:image/svg+xml;base64,{}", B64.encode(&qr_svg));
    Provisioning {
        secret: t.get_secret_base32(),
        uri,
        qr_svg,
        qr_data_uri,
    }
}

/// The code for time step `step`.
pub fn code_at_step(seed: &[u8], step: u64) -> String {
    totp(seed, "", "").generate(step.saturating_mul(STEP_SECS))
}

/// Checks `code` at `now_secs` against the current step and its neighbours, all compared in
/// constant time. Returns the matching step if it is later than `last_step` (the last step
/// already accepted for this account), so a code cannot be used twice.
pub fn verify(seed: &[u8], code: &str, now_secs: u64, last_step: u64) -> Option<u64> {
    let now_step = now_secs / STEP_SECS;
    let mut matched = None;
    for step in now_step.saturating_sub(SKEW_STEPS)..=now_step.saturating_add(SKEW_STEPS) {
        let expected = code_at_step(seed, step);
        if crypto::ct_eq(expected.as_bytes(), code.as_bytes()) && step > last_step {
            matched = Some(step);
        }
    }
    matched
}

/// Fresh recovery codes, `xxxxx-xxxxx` from an alphabet without look-alike characters
/// (about 50 bits each).
pub fn new_recovery_codes(rng: &mut Rng) -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    (0..RECOVERY_CODES)
        .map(|_| {
            format!(
                "{}-{}",
                rng.from_alphabet(ALPHABET, 5),
                rng.from_alphabet(ALPHABET, 5)
            )
        })
        .collect()
}

/// The form a recovery code is compared in: lower case, without separators or spaces.
pub fn normalize_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Renders `text` as a QR code in SVG (one path, medium error correction, 4-module margin).
fn qr_svg(text: &str) -> String {
    let Ok(qr) = QrCode::encode_text(text, QrCodeEcc::Medium) else {
        return String::new();
    };
    let size = qr.size();
    let border = 4;
    let dim = size + 2 * border;
    let mut path = String::new();
    for y in 0..size {
        for x in 0..size {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {dim} {dim}\" \
         shape-rendering=\"crispEdges\"><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\
         <path fill=\"#000\" d=\"{path}\"/></svg>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B: the SHA-1 seed and the published 8-digit values; the 6-digit code
    /// is the low six digits of each.
    const SEED: &[u8] = b"12345678901234567890";
    const VECTORS: &[(u64, &str)] = &[
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    #[test]
    fn rfc6238_appendix_b_sha1() {
        for &(time, expected) in VECTORS {
            let eight = TOTP {
                digits: 8,
                ..totp(SEED, "i", "a")
            };
            assert_eq!(eight.generate(time), expected, "t={time}");
            assert_eq!(
                code_at_step(SEED, time / STEP_SECS),
                expected[2..],
                "t={time}"
            );
        }
    }

    #[test]
    fn accepts_skew_of_one_step_only() {
        let now = 1_234_567_890;
        let step = now / STEP_SECS;
        for delta in [-1i64, 0, 1] {
            let code = code_at_step(SEED, step.checked_add_signed(delta).unwrap());
            assert!(verify(SEED, &code, now, 0).is_some(), "delta {delta}");
        }
        for delta in [-2i64, 2] {
            let code = code_at_step(SEED, step.checked_add_signed(delta).unwrap());
            assert!(verify(SEED, &code, now, 0).is_none(), "delta {delta}");
        }
        assert!(verify(SEED, "12345", now, 0).is_none());
        assert!(verify(SEED, "", now, 0).is_none());
    }

    #[test]
    fn a_code_is_accepted_once() {
        let now = 1_234_567_890;
        let code = code_at_step(SEED, now / STEP_SECS);
        let step = verify(SEED, &code, now, 0).unwrap();
        assert_eq!(verify(SEED, &code, now, step), None);
        // An older code in the window is refused too once a later one was used.
        let older = code_at_step(SEED, now / STEP_SECS - 1);
        assert_eq!(verify(SEED, &older, now, step), None);
        let newer = code_at_step(SEED, now / STEP_SECS + 1);
        assert_eq!(verify(SEED, &newer, now, step), Some(step + 1));
    }

    #[test]
    fn provisioning_has_uri_and_qr() {
        let p = provisioning(SEED, "Bedside", "ana@example.org");
        assert_eq!(p.secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert!(
            p.uri
                .starts_with("otpauth://totp/Bedside:ana%40example.org?secret="),
            "{}",
            p.uri
        );
        assert!(p.uri.contains("issuer=Bedside"));
        assert!(p.qr_svg.starts_with("<svg") && p.qr_svg.contains("<path"));
        assert!(p.qr_data_uri.starts_with("data:image/svg+xml;base64,"));
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalize() {
        let codes = new_recovery_codes(&mut Rng::from_seed([9; 32]));
        assert_eq!(codes.len(), RECOVERY_CODES);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), RECOVERY_CODES);
        assert_eq!(normalize_recovery_code(" AbCde-fGh23 "), "abcdefgh23");
    }
}
