//! Bedside signaling: the room state machine and its wire protocol, with no I/O.
//!
//! A session between a clinician and a patient is a [`Room`]. The room relays what the two
//! browsers need to set up an end-to-end encrypted WebRTC call (SDP offers and answers, which
//! must carry a DTLS fingerprint, and trickled ICE candidates) and their text chat, over one
//! WebSocket per participant speaking versioned JSON (`PROTOCOL.md` beside this crate).
//!
//! The room owns no socket, no clock, no thread and no task. The host (a tokio task per room
//! over axum WebSockets, or a Durable Object) feeds it inputs with the current time and carries
//! out what it asks for.
//!
//! # Drive loop
//!
//! After every input, drain [`Room::poll_output`] until it returns [`Output::Timeout`] (or
//! [`Output::Done`]). Only then wait for the next input or for the timeout, whichever comes
//! first. Skipping the drain loses frames; waking up late delays pings and deadlines.
//!
//! ```
//! use bedside_signaling::{Config, Instant, Output, Room, RoomId, UserId};
//!
//! let users = [UserId::new("clinician-1"), UserId::new("patient-7")];
//! let mut room = Room::new(RoomId::new("r-42"), users, Config::default(), Instant::ZERO)?;
//! let mut now = Instant::ZERO;
//!
//! // A WebSocket upgrade for /v1/rooms/r-42/ws was accepted:
//! let conn = room.handle_open(now);
//! // …its first text frame arrived:
//! room.handle_text(now, conn, r#"{"v":1,"type":"hello","token":"eyJ…","resume":null}"#);
//!
//! loop {
//!     match room.poll_output() {
//!         Output::Send { conn, frame } => { /* send frame.as_str() on conn */ }
//!         Output::Close { conn, code, reason } => { /* close conn with code.as_u16() */ }
//!         Output::VerifyToken { conn, token } => {
//!             // Verify token.expose() (signature, expiry, this room), then report back:
//!             room.handle_token_verified(now, conn, UserId::new("patient-7"));
//!         }
//!         Output::Audit(event) => { /* write an audit record */ }
//!         Output::Timeout(at) => {
//!             // Wait for the next input or until `at`, then call the matching handle_*
//!             // (handle_timeout for the deadline) and drain again.
//!             break;
//!         }
//!         Output::Done => { /* the room has ended: drop it */ break; }
//!         _ => {}
//!     }
//! }
//! # now = now + std::time::Duration::from_secs(1);
//! # room.handle_timeout(now);
//! # Ok::<(), bedside_signaling::Error>(())
//! ```
//!
//! Inputs, each taking `now` as an [`Instant`] (milliseconds since an epoch the host keeps):
//! [`Room::handle_open`], [`Room::handle_text`], [`Room::handle_binary`],
//! [`Room::handle_closed`], [`Room::handle_token_verified`], [`Room::handle_token_rejected`],
//! [`Room::handle_timeout`] and [`Room::handle_end`]. Inputs for connections the room has
//! already closed are ignored, so the host need not worry about races between its tasks.
//!
//! The host sets its WebSocket frame limit a little above [`Config::max_message_bytes`], and
//! after an [`Output::Close`] closes the socket without calling back (a later
//! [`Room::handle_closed`] for it is harmless).

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod audit;
mod config;
mod error;
mod ids;
mod limits;
mod replay;
mod room;
mod sdp;
mod time;
pub mod wire;

pub use audit::{AuditEvent, AuditKind, EndReason, LeaveReason};
pub use config::Config;
pub use error::Error;
pub use ids::{ConnId, Frame, Pii, RoomId, Token, UserId};
pub use room::{Output, Room};
pub use time::Instant;
pub use wire::{CloseCode, ErrorCode};
