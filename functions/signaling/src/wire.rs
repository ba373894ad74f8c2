//! The wire protocol: versioned JSON text frames. Client messages are parsed once into
//! [`ClientMessage`]; server frames are written directly into a [`Frame`]. `PROTOCOL.md` in the
//! crate describes every message.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

use crate::Error;
use crate::ids::Frame;
use crate::sdp::{self, SdpKind};

/// The protocol version this crate speaks (`"v"` in every frame).
pub const PROTOCOL_VERSION: u64 = 1;

/// Longest token accepted in `hello`, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest `candidate` attribute accepted, in bytes.
pub const MAX_CANDIDATE_BYTES: usize = 2 * 1024;
/// Longest `sdpMid` accepted, in bytes.
pub const MAX_MID_BYTES: usize = 64;
/// Longest `usernameFragment` accepted, in bytes (RFC 8839 allows 256 characters).
pub const MAX_UFRAG_BYTES: usize = 256;

/// A message from a browser, parsed and checked.
///
/// Strings borrow from the frame when it holds no JSON escapes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientMessage<'a> {
    /// First message on a connection: the access token and, when reconnecting, the last
    /// sequence number the client saw.
    Hello {
        /// The access token, to be verified by the host.
        token: Cow<'a, str>,
        /// The last `seq` received before the connection dropped, if any.
        resume: Option<u64>,
    },
    /// An SDP offer, checked for a DTLS fingerprint and setup role.
    Offer {
        /// The session description.
        sdp: Cow<'a, str>,
    },
    /// An SDP answer, checked like an offer (and `a=setup:actpass` refused).
    Answer {
        /// The session description.
        sdp: Cow<'a, str>,
    },
    /// One trickled ICE candidate.
    Candidate(Candidate<'a>),
    /// The sender has no more candidates for this negotiation.
    EndOfCandidates,
    /// A chat text for the other participants.
    Chat {
        /// The text, UTF-8 and non-empty.
        text: Cow<'a, str>,
    },
    /// Client heartbeat; the room answers `pong`.
    Ping {
        /// The last `seq` the client has received (lets the room free its replay buffer).
        ack: Option<u64>,
    },
    /// Answer to the room's `ping`.
    Pong {
        /// The last `seq` the client has received.
        ack: Option<u64>,
    },
    /// The participant hangs up.
    Leave,
}

/// An ICE candidate, with the fields of the browser's `RTCIceCandidateInit`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Candidate<'a> {
    /// The `candidate:` attribute line (without `a=`).
    pub candidate: Cow<'a, str>,
    /// The media stream identification tag.
    pub sdp_mid: Option<Cow<'a, str>>,
    /// The index of the media description.
    pub sdp_m_line_index: Option<u16>,
    /// The ICE username fragment.
    pub username_fragment: Option<Cow<'a, str>>,
}

/// Parses and checks one client text frame. Unknown fields are ignored, so that newer clients
/// can add optional fields without breaking older rooms.
pub fn parse(text: &str) -> Result<ClientMessage<'_>, Error> {
    let mut raw: Raw<'_> = serde_json::from_str(text)?;

    match raw.v {
        None => return Err(Error::MissingField("v")),
        Some(PROTOCOL_VERSION) => {}
        Some(other) => return Err(Error::UnsupportedVersion(other)),
    }
    let Some(Str(kind)) = raw.kind.take() else {
        return Err(Error::MissingField("type"));
    };

    Ok(match &*kind {
        "hello" => {
            let token = required(raw.token, "token")?;
            bounded(&token, "token", MAX_TOKEN_BYTES)?;
            ClientMessage::Hello {
                token,
                resume: raw.resume,
            }
        }
        "offer" => {
            let sdp = required(raw.sdp, "sdp")?;
            sdp::check(&sdp, SdpKind::Offer)?;
            ClientMessage::Offer { sdp }
        }
        "answer" => {
            let sdp = required(raw.sdp, "sdp")?;
            sdp::check(&sdp, SdpKind::Answer)?;
            ClientMessage::Answer { sdp }
        }
        "candidate" => ClientMessage::Candidate(candidate(raw)?),
        "end_of_candidates" => ClientMessage::EndOfCandidates,
        "chat" => ClientMessage::Chat {
            text: required(raw.text, "text")?,
        },
        "ping" => ClientMessage::Ping { ack: raw.ack },
        "pong" => ClientMessage::Pong { ack: raw.ack },
        "leave" => ClientMessage::Leave,
        _ => return Err(Error::UnknownType),
    })
}

fn candidate(raw: Raw<'_>) -> Result<Candidate<'_>, Error> {
    let candidate = required(raw.candidate, "candidate")?;
    bounded(&candidate, "candidate", MAX_CANDIDATE_BYTES)?;
    if !candidate.starts_with("candidate:") || candidate.contains(['\r', '\n']) {
        return Err(Error::InvalidField {
            field: "candidate",
            reason: "must be one `candidate:` attribute line",
        });
    }

    let sdp_mid = raw.sdp_mid.map(|Str(mid)| mid);
    if let Some(mid) = &sdp_mid {
        bounded(mid, "sdpMid", MAX_MID_BYTES)?;
    }
    if sdp_mid.is_none() && raw.sdp_m_line_index.is_none() {
        return Err(Error::MissingField("sdpMid"));
    }
    let username_fragment = raw.username_fragment.map(|Str(ufrag)| ufrag);
    if let Some(ufrag) = &username_fragment {
        bounded(ufrag, "usernameFragment", MAX_UFRAG_BYTES)?;
    }

    Ok(Candidate {
        candidate,
        sdp_mid,
        sdp_m_line_index: raw.sdp_m_line_index,
        username_fragment,
    })
}

fn required<'a>(value: Option<Str<'a>>, field: &'static str) -> Result<Cow<'a, str>, Error> {
    match value {
        Some(Str(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(Error::InvalidField {
            field,
            reason: "must not be empty",
        }),
        None => Err(Error::MissingField(field)),
    }
}

fn bounded(value: &str, field: &'static str, max: usize) -> Result<(), Error> {
    if value.len() > max {
        return Err(Error::InvalidField {
            field,
            reason: "too long",
        });
    }
    Ok(())
}

/// Every field any client message can carry; which ones matter depends on `type`.
#[derive(Deserialize)]
struct Raw<'a> {
    v: Option<u64>,
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    token: Option<Str<'a>>,
    resume: Option<u64>,
    #[serde(borrow)]
    sdp: Option<Str<'a>>,
    #[serde(borrow)]
    candidate: Option<Str<'a>>,
    #[serde(rename = "sdpMid", borrow)]
    sdp_mid: Option<Str<'a>>,
    #[serde(rename = "sdpMLineIndex")]
    sdp_m_line_index: Option<u16>,
    #[serde(rename = "usernameFragment", borrow)]
    username_fragment: Option<Str<'a>>,
    #[serde(borrow)]
    text: Option<Str<'a>>,
    ack: Option<u64>,
}

/// A JSON string that borrows from the frame unless it had to be unescaped.
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Str<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(Visitor)
    }
}

/// Stable error codes, sent as `code` in `error` frames and as the close reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not JSON, a field of the wrong type, or a required field missing or empty.
    Malformed,
    /// `v` is not a version this room speaks.
    UnsupportedVersion,
    /// `type` is not a client message type.
    UnknownType,
    /// The frame exceeds `max_message_bytes`.
    MessageTooLarge,
    /// A chat text exceeds `max_chat_bytes`.
    ChatTooLong,
    /// An offer or answer without a usable DTLS fingerprint or setup role.
    InvalidSdp,
    /// Too many messages: this one was dropped.
    RateLimited,
    /// Nobody else is in the room to receive the message.
    NoPeer,
    /// A message other than `hello` before authentication, or a second `hello`.
    NotAuthenticated,
    /// The host did not accept the access token.
    InvalidToken,
    /// No `hello`, or no verification, within the deadline.
    AuthTimeout,
    /// The authenticated user is not a participant of this room.
    NotParticipant,
    /// The room already holds as many participants as it allows.
    RoomFull,
    /// Too many connections are waiting to authenticate.
    TooManyPending,
    /// The messages missed since the `resume` point are no longer available.
    ResumeGap,
    /// A newer connection of the same participant took this one's place.
    Replaced,
    /// No frame arrived in time after a `ping`.
    HeartbeatTimeout,
    /// Repeated violations: the connection is closed with 1008.
    PolicyViolation,
    /// The room has ended.
    RoomEnded,
    /// The participant left (`leave`).
    Left,
    /// A fault in the room itself.
    Internal,
}

impl ErrorCode {
    /// The snake_case code as sent on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnsupportedVersion => "unsupported_version",
            Self::UnknownType => "unknown_type",
            Self::MessageTooLarge => "message_too_large",
            Self::ChatTooLong => "chat_too_long",
            Self::InvalidSdp => "invalid_sdp",
            Self::RateLimited => "rate_limited",
            Self::NoPeer => "no_peer",
            Self::NotAuthenticated => "not_authenticated",
            Self::InvalidToken => "invalid_token",
            Self::AuthTimeout => "auth_timeout",
            Self::NotParticipant => "not_participant",
            Self::RoomFull => "room_full",
            Self::TooManyPending => "too_many_pending",
            Self::ResumeGap => "resume_gap",
            Self::Replaced => "replaced",
            Self::HeartbeatTimeout => "heartbeat_timeout",
            Self::PolicyViolation => "policy_violation",
            Self::RoomEnded => "room_ended",
            Self::Left => "left",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes the room uses (RFC 6455 section 7.4, and 4000-4999 for the
/// application).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// 1000: the participant left, or the room ended.
    Normal,
    /// 1008: repeated violations, or a protocol violation before authentication.
    PolicyViolation,
    /// 4001: the token was rejected; fetch a new one before reconnecting.
    InvalidToken,
    /// 4003: the user is not a participant of this room; do not reconnect.
    NotParticipant,
    /// 4004: the room is full, or too many connections are waiting to authenticate.
    RoomFull,
    /// 4008: a deadline passed (authentication or heartbeat); reconnecting with `resume` is fine.
    Timeout,
    /// 4009: another connection of the same participant took over; do not reconnect.
    Replaced,
}

impl CloseCode {
    /// The numeric code for the WebSocket close frame.
    pub const fn as_u16(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::PolicyViolation => 1008,
            Self::InvalidToken => 4001,
            Self::NotParticipant => 4003,
            Self::RoomFull => 4004,
            Self::Timeout => 4008,
            Self::Replaced => 4009,
        }
    }
}

/// Writes one server frame: `{"v":1[,"seq":N],"type":"…"` then fields, then `}`.
pub(crate) struct FrameWriter(String);

impl FrameWriter {
    pub(crate) fn new(kind: &str, seq: Option<u64>, capacity: usize) -> Self {
        let mut out = String::with_capacity(capacity + 48);
        out.push_str("{\"v\":1");
        if let Some(seq) = seq {
            out.push_str(",\"seq\":");
            push_u64(&mut out, seq);
        }
        out.push_str(",\"type\":\"");
        out.push_str(kind);
        out.push('"');
        Self(out)
    }

    /// A string field, escaped.
    pub(crate) fn str(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        push_json_str(&mut self.0, value);
        self
    }

    /// A field whose value is already JSON (a pre-escaped string, an array).
    pub(crate) fn raw(mut self, key: &str, json: &str) -> Self {
        self.key(key);
        self.0.push_str(json);
        self
    }

    pub(crate) fn u64(mut self, key: &str, value: u64) -> Self {
        self.key(key);
        push_u64(&mut self.0, value);
        self
    }

    pub(crate) fn bool(mut self, key: &str, value: bool) -> Self {
        self.key(key);
        self.0.push_str(if value { "true" } else { "false" });
        self
    }

    pub(crate) fn finish(mut self) -> Frame {
        self.0.push('}');
        Frame::new(self.0)
    }

    fn key(&mut self, key: &str) {
        self.0.push_str(",\"");
        self.0.push_str(key);
        self.0.push_str("\":");
    }
}

/// An `error` frame.
pub(crate) fn error_frame(code: ErrorCode, message: &str) -> Frame {
    FrameWriter::new("error", None, 64 + message.len())
        .str("code", code.as_str())
        .str("message", message)
        .finish()
}

/// Appends `value` as a quoted JSON string.
pub(crate) fn push_json_str(out: &mut String, value: &str) {
    out.reserve(value.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, byte) in value.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // `i` is the index of an ASCII byte, so both ends are character boundaries.
        if let Some(chunk) = value.get(start..i) {
            out.push_str(chunk);
        }
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0xf));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    if let Some(rest) = value.get(start..) {
        out.push_str(rest);
    }
    out.push('"');
}

/// A value as a quoted JSON string, for fields written into many frames.
pub(crate) fn json_str(value: &str) -> Box<str> {
    let mut out = String::with_capacity(value.len() + 2);
    push_json_str(&mut out, value);
    out.into_boxed_str()
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

fn push_u64(out: &mut String, value: u64) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(out, "{value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\na=fingerprint:sha-256 5D:7A:1B:9E:06:2C:44:AF:10:3B:77:E8:C2:91:D4:0F:88:5A:E3:21:6B:CC:07:9D:F1:32:4E:A8:1C:60:B5:DE\r\na=setup:actpass\r\n";

    #[test]
    fn parses_every_client_message() {
        let hello = parse(r#"{"v":1,"type":"hello","token":"abc","resume":null}"#);
        assert_eq!(
            hello,
            Ok(ClientMessage::Hello {
                token: "abc".into(),
                resume: None
            })
        );
        let resume = parse(r#"{"type":"hello","v":1,"token":"abc","resume":41}"#);
        assert_eq!(
            resume,
            Ok(ClientMessage::Hello {
                token: "abc".into(),
                resume: Some(41)
            })
        );

        let offer = serde_json::json!({"v": 1, "type": "offer", "sdp": SDP}).to_string();
        assert_eq!(parse(&offer), Ok(ClientMessage::Offer { sdp: SDP.into() }));

        let candidate = parse(
            r#"{"v":1,"type":"candidate","candidate":"candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}"#,
        );
        let Ok(ClientMessage::Candidate(candidate)) = candidate else {
            panic!("not a candidate: {candidate:?}");
        };
        assert!(
            matches!(candidate.candidate, Cow::Borrowed(_)),
            "no escapes: borrowed"
        );
        assert_eq!(candidate.sdp_mid.as_deref(), Some("0"));
        assert_eq!(candidate.sdp_m_line_index, Some(0));

        let chat = parse(r#"{"v":1,"type":"chat","text":"caf\u00e9 \"ok\""}"#);
        assert_eq!(
            chat,
            Ok(ClientMessage::Chat {
                text: "café \"ok\"".into()
            })
        );
        assert_eq!(
            parse(r#"{"v":1,"type":"ping","ack":3}"#),
            Ok(ClientMessage::Ping { ack: Some(3) })
        );
        assert_eq!(
            parse(r#"{"v":1,"type":"pong"}"#),
            Ok(ClientMessage::Pong { ack: None })
        );
        assert_eq!(
            parse(r#"{"v":1,"type":"leave","extra":[1,2]}"#),
            Ok(ClientMessage::Leave)
        );
        assert_eq!(
            parse(r#"{"v":1,"type":"end_of_candidates"}"#),
            Ok(ClientMessage::EndOfCandidates)
        );
    }

    #[test]
    fn refuses_bad_messages_with_stable_codes() {
        let cases = [
            ("", ErrorCode::Malformed),
            ("not json", ErrorCode::Malformed),
            ("[1,2]", ErrorCode::Malformed),
            (r#"{"type":"ping"}"#, ErrorCode::Malformed),
            (r#"{"v":"1","type":"ping"}"#, ErrorCode::Malformed),
            (r#"{"v":2,"type":"ping"}"#, ErrorCode::UnsupportedVersion),
            (r#"{"v":1}"#, ErrorCode::Malformed),
            (r#"{"v":1,"type":"shout"}"#, ErrorCode::UnknownType),
            (r#"{"v":1,"type":"hello"}"#, ErrorCode::Malformed),
            (r#"{"v":1,"type":"hello","token":""}"#, ErrorCode::Malformed),
            (
                r#"{"v":1,"type":"hello","token":"t","resume":-1}"#,
                ErrorCode::Malformed,
            ),
            (r#"{"v":1,"type":"chat","text":""}"#, ErrorCode::Malformed),
            (r#"{"v":1,"type":"chat","text":5}"#, ErrorCode::Malformed),
            (
                r#"{"v":1,"type":"offer","sdp":"v=0\r\n"}"#,
                ErrorCode::InvalidSdp,
            ),
            (
                r#"{"v":1,"type":"candidate","candidate":"candidate:1","sdpMLineIndex":70000}"#,
                ErrorCode::Malformed,
            ),
            (
                r#"{"v":1,"type":"candidate","candidate":"candidate:1"}"#,
                ErrorCode::Malformed,
            ),
            (
                r#"{"v":1,"type":"candidate","candidate":"a=candidate:1","sdpMid":"0"}"#,
                ErrorCode::Malformed,
            ),
            (
                r#"{"v":1,"type":"candidate","candidate":"candidate:1\r\na=x","sdpMid":"0"}"#,
                ErrorCode::Malformed,
            ),
            (r#"{"v":1,"v":1,"type":"ping"}"#, ErrorCode::Malformed),
        ];
        for (text, code) in cases {
            let result = parse(text);
            assert_eq!(
                result.as_ref().map_err(Error::code).err(),
                Some(code),
                "{text}: {result:?}"
            );
        }
    }

    #[test]
    fn error_messages_never_quote_the_input() {
        let Err(error) = parse(r#"{"v":1,"type":"hello","token":12345678}"#) else {
            panic!("a numeric token must be refused");
        };
        assert!(!error.to_string().contains("12345678"), "{error}");
        let Err(error) = parse(r#"{"v":1,"type":"hello","token":"s3cret","resume":"s3cret"}"#)
        else {
            panic!("a string resume must be refused");
        };
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    #[test]
    fn frames_are_valid_json_with_escaped_strings() {
        let nasty = "quote\" backslash\\ newline\n tab\t bell\u{7} nul\0 é ☎";
        let frame = FrameWriter::new("chat", Some(7), 0)
            .str("text", nasty)
            .raw("from", &json_str("bob"))
            .bool("ok", true)
            .u64("n", u64::MAX)
            .finish();
        let value: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
        assert_eq!(value["v"], 1);
        assert_eq!(value["seq"], 7);
        assert_eq!(value["type"], "chat");
        assert_eq!(value["text"], nasty);
        assert_eq!(value["from"], "bob");
        assert_eq!(value["ok"], true);
        assert_eq!(value["n"], u64::MAX);
        assert!(
            frame
                .as_str()
                .starts_with(r#"{"v":1,"seq":7,"type":"chat""#)
        );
    }

    #[test]
    fn every_error_code_is_documented() {
        const ALL: [ErrorCode; 21] = [
            ErrorCode::Malformed,
            ErrorCode::UnsupportedVersion,
            ErrorCode::UnknownType,
            ErrorCode::MessageTooLarge,
            ErrorCode::ChatTooLong,
            ErrorCode::InvalidSdp,
            ErrorCode::RateLimited,
            ErrorCode::NoPeer,
            ErrorCode::NotAuthenticated,
            ErrorCode::InvalidToken,
            ErrorCode::AuthTimeout,
            ErrorCode::NotParticipant,
            ErrorCode::RoomFull,
            ErrorCode::TooManyPending,
            ErrorCode::ResumeGap,
            ErrorCode::Replaced,
            ErrorCode::HeartbeatTimeout,
            ErrorCode::PolicyViolation,
            ErrorCode::RoomEnded,
            ErrorCode::Left,
            ErrorCode::Internal,
        ];
        // Adding a variant without listing it above fails to compile here.
        let listed = |code: ErrorCode| match code {
            ErrorCode::Malformed
            | ErrorCode::UnsupportedVersion
            | ErrorCode::UnknownType
            | ErrorCode::MessageTooLarge
            | ErrorCode::ChatTooLong
            | ErrorCode::InvalidSdp
            | ErrorCode::RateLimited
            | ErrorCode::NoPeer
            | ErrorCode::NotAuthenticated
            | ErrorCode::InvalidToken
            | ErrorCode::AuthTimeout
            | ErrorCode::NotParticipant
            | ErrorCode::RoomFull
            | ErrorCode::TooManyPending
            | ErrorCode::ResumeGap
            | ErrorCode::Replaced
            | ErrorCode::HeartbeatTimeout
            | ErrorCode::PolicyViolation
            | ErrorCode::RoomEnded
            | ErrorCode::Left
            | ErrorCode::Internal => true,
        };
        let protocol = include_str!("../PROTOCOL.md");
        for code in ALL {
            assert!(listed(code));
            let name = code.as_str();
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            if !matches!(code, ErrorCode::Internal) {
                assert!(
                    protocol.contains(&format!("`{name}`")),
                    "{name} missing from PROTOCOL.md"
                );
            }
        }
        for code in [1000, 1008, 4001, 4003, 4004, 4008, 4009] {
            assert!(
                protocol.contains(&format!("| {code} |")),
                "close code {code} undocumented"
            );
        }
    }
}
