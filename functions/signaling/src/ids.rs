//! Names and values the room hands across its boundary: ids, tokens, frames, and `Pii`.

use std::fmt;
use std::sync::Arc;

/// The id of a room, as it appears in `/v1/rooms/{id}/ws`. Opaque to the room.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoomId(Arc<str>);

impl RoomId {
    /// Wraps the host's room id.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of an account, as the host's token verification reports it. Opaque to the room.
///
/// It is sent to the other participant (as `user` / `from` in frames) so that clients can tell
/// who is who; in logs it goes through [`Pii`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserId(Arc<str>);

impl UserId {
    /// Wraps the host's user id.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One WebSocket connection to the room, numbered by the room in [`crate::Room::handle_open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(u64);

impl ConnId {
    /// The number behind the id (unique within one room, never reused).
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    pub(crate) const fn new(n: u64) -> Self {
        Self(n)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// An access token presented in `hello`, handed to the host for verification.
///
/// Its `Debug` output hides the value, so the token cannot leak through a log of an
/// [`crate::Output`].
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Box<str>);

impl Token {
    pub(crate) fn new(token: &str) -> Self {
        Self(token.into())
    }

    /// The token itself, for the verifier. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<{} bytes>)", self.0.len())
    }
}

/// A value that identifies a person (user id, name, address): shown as `<pii>` in logs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pii<T>(pub T);

impl<T> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<pii>")
    }
}

impl<T> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<pii>")
    }
}

/// A complete text frame, serialised once and shared by every recipient and the replay buffer.
///
/// Cloning is a reference-count increment. `AsRef<[u8]>` lets a host wrap it without copying
/// (for example `bytes::Bytes::from_owner(frame)`).
#[derive(Clone, PartialEq, Eq)]
pub struct Frame(Arc<str>);

impl Frame {
    pub(crate) fn new(text: String) -> Self {
        Self(text.into())
    }

    /// The frame's JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The frame's size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the frame is empty (never true for a frame the room built).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl AsRef<str> for Frame {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Frame {
    /// Frames carry SDP and chat text: only their size is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame(<{} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_pii_stay_out_of_debug_output() {
        let token = Token::new("eyJhbGciOi.secret.sig");
        assert_eq!(format!("{token:?}"), "Token(<21 bytes>)");
        assert_eq!(
            format!("{} {:?}", Pii("alice"), Pii("alice")),
            "<pii> <pii>"
        );
        let frame = Frame::new(r#"{"text":"private"}"#.to_owned());
        assert!(!format!("{frame:?}").contains("private"));
    }
}
