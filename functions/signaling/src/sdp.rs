//! The checks an offer or answer must pass before it is relayed: the room does not negotiate
//! media, but it refuses SDP that could not set up an authenticated DTLS-SRTP call.

use crate::Error;

/// Which side of the negotiation an SDP belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SdpKind {
    Offer,
    Answer,
}

/// Accepts SDP that starts with `v=0`, has at least one `a=fingerprint:sha-256` (every such
/// line holding exactly 32 colon-separated hex bytes) and at least one `a=setup` with a valid
/// role (`actpass` is not allowed in an answer, RFC 8842 section 5.3).
pub(crate) fn check(sdp: &str, kind: SdpKind) -> Result<(), Error> {
    let mut lines = sdp
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    if lines.next() != Some("v=0") {
        return Err(Error::InvalidSdp("must start with v=0"));
    }

    let mut fingerprint = false;
    let mut setup = false;
    for line in lines {
        if let Some(rest) = line.strip_prefix("a=fingerprint:") {
            let Some((algorithm, value)) = rest.split_once(' ') else {
                return Err(Error::InvalidSdp("a=fingerprint without a value"));
            };
            if algorithm.eq_ignore_ascii_case("sha-256") {
                if !is_sha256_fingerprint(value.trim_end()) {
                    return Err(Error::InvalidSdp("malformed sha-256 fingerprint"));
                }
                fingerprint = true;
            }
        } else if let Some(role) = line.strip_prefix("a=setup:") {
            match (role.trim_end(), kind) {
                ("active" | "passive", _) | ("actpass", SdpKind::Offer) => setup = true,
                ("actpass", SdpKind::Answer) => {
                    return Err(Error::InvalidSdp(
                        "a=setup:actpass is not allowed in an answer",
                    ));
                }
                _ => return Err(Error::InvalidSdp("unknown a=setup role")),
            }
        }
    }

    if !fingerprint {
        return Err(Error::InvalidSdp("missing a=fingerprint:sha-256"));
    }
    if !setup {
        return Err(Error::InvalidSdp("missing a=setup"));
    }
    Ok(())
}

/// `AB:CD:…`: 32 bytes as two hex digits each, separated by single colons (RFC 8122).
fn is_sha256_fingerprint(value: &str) -> bool {
    let mut bytes = 0;
    for pair in value.split(':') {
        if pair.len() != 2 || !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        bytes += 1;
    }
    bytes == 32
}

#[cfg(test)]
mod tests {
    use super::*;

    const FINGERPRINT: &str = "a=fingerprint:sha-256 \
        5D:7A:1B:9E:06:2C:44:AF:10:3B:77:E8:C2:91:D4:0F:88:5A:E3:21:6B:CC:07:9D:F1:32:4E:A8:1C:60:B5:DE";

    fn sdp(lines: &[&str]) -> String {
        let mut text = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n");
        for line in lines {
            text.push_str(line);
            text.push_str("\r\n");
        }
        text
    }

    #[test]
    fn accepts_fingerprint_and_setup_at_any_level() {
        let offer = sdp(&[
            "t=0 0",
            FINGERPRINT,
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=setup:actpass",
        ]);
        assert_eq!(check(&offer, SdpKind::Offer), Ok(()));
        let answer = sdp(&[
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            FINGERPRINT,
            "a=setup:active",
        ]);
        assert_eq!(check(&answer, SdpKind::Answer), Ok(()));
        let lowercase = sdp(&[&FINGERPRINT.to_lowercase(), "a=setup:passive"]);
        assert_eq!(check(&lowercase, SdpKind::Offer), Ok(()));
        let bare_newlines = sdp(&[FINGERPRINT, "a=setup:actpass"]).replace("\r\n", "\n");
        assert_eq!(check(&bare_newlines, SdpKind::Offer), Ok(()));
    }

    #[test]
    fn rejects_missing_or_malformed_parts() {
        let cases: &[(&[&str], SdpKind, &str)] = &[
            (
                &["a=setup:actpass"],
                SdpKind::Offer,
                "missing a=fingerprint:sha-256",
            ),
            (&[FINGERPRINT], SdpKind::Offer, "missing a=setup"),
            (
                &[
                    "a=fingerprint:sha-1 5D:7A:1B:9E:06:2C:44:AF:10:3B:77:E8:C2:91:D4:0F:88:5A:E3:21",
                    "a=setup:active",
                ],
                SdpKind::Offer,
                "missing a=fingerprint:sha-256",
            ),
            (
                &["a=fingerprint:sha-256 5D:7A:1B", "a=setup:active"],
                SdpKind::Offer,
                "malformed sha-256 fingerprint",
            ),
            (
                &[
                    "a=fingerprint:sha-256 5D7A1B9E062C44AF103B77E8C291D40F885AE3216BCC079DF1324EA81C60B5DE",
                    "a=setup:active",
                ],
                SdpKind::Offer,
                "malformed sha-256 fingerprint",
            ),
            (
                &["a=fingerprint:sha-256", "a=setup:active"],
                SdpKind::Offer,
                "a=fingerprint without a value",
            ),
            (
                &[FINGERPRINT, "a=setup:actpass"],
                SdpKind::Answer,
                "a=setup:actpass is not allowed in an answer",
            ),
            (
                &[FINGERPRINT, "a=setup:holdconn"],
                SdpKind::Offer,
                "unknown a=setup role",
            ),
        ];
        for (lines, kind, reason) in cases {
            assert_eq!(
                check(&sdp(lines), *kind),
                Err(Error::InvalidSdp(reason)),
                "{lines:?}"
            );
        }
        assert_eq!(
            check("o=- 1 2", SdpKind::Offer),
            Err(Error::InvalidSdp("must start with v=0"))
        );
        let colon_hex_with_bad_digit = FINGERPRINT.replace("DE", "DG");
        assert!(
            check(
                &sdp(&[&colon_hex_with_bad_digit, "a=setup:active"]),
                SdpKind::Offer
            )
            .is_err()
        );
    }
}
