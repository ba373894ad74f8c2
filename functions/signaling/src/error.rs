//! The crate's error type: why a message or a room setting was refused.

use crate::wire::ErrorCode;

/// Why a client message or a room setting was refused.
///
/// Messages are lowercase and never quote the offending input (it may hold a token, SDP or
/// chat text); [`Error::code`] gives the stable code sent to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The frame is larger than the room accepts.
    #[error("message of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Size of the frame.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The frame is not JSON, or a field has the wrong JSON type.
    #[error("malformed message ({category} error at column {column})")]
    Malformed {
        /// `syntax`, `data` or `eof`, as the JSON parser classified the problem.
        category: &'static str,
        /// Where in the frame the parser stopped.
        column: usize,
    },
    /// The message has a protocol version this room does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u64),
    /// The message's `type` is not one a client may send.
    #[error("unknown message type")]
    UnknownType,
    /// A field the message type needs is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field is present but its value is not acceptable.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// The field's name on the wire.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An offer or answer whose SDP lacks what an encrypted call needs.
    #[error("invalid sdp: {0}")]
    InvalidSdp(&'static str),
    /// A chat text longer than the room accepts.
    #[error("chat text of {size} bytes exceeds the limit of {max}")]
    ChatTooLong {
        /// Size of the text in bytes.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The room's [`crate::Config`] cannot work.
    #[error("invalid config: {0}")]
    InvalidConfig(&'static str),
    /// The participant list given to [`crate::Room::new`] cannot work.
    #[error("invalid participants: {0}")]
    InvalidParticipants(&'static str),
}

impl Error {
    /// The stable code a client receives for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::MessageTooLarge,
            Self::Malformed { .. } | Self::MissingField(_) | Self::InvalidField { .. } => {
                ErrorCode::Malformed
            }
            Self::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            Self::UnknownType => ErrorCode::UnknownType,
            Self::InvalidSdp(_) => ErrorCode::InvalidSdp,
            Self::ChatTooLong { .. } => ErrorCode::ChatTooLong,
            Self::InvalidConfig(_) | Self::InvalidParticipants(_) => ErrorCode::Internal,
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        let category = match e.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        };
        Self::Malformed {
            category,
            column: e.column(),
        }
    }
}
