//! Bedside TURN relay (RFC 8489 STUN, RFC 8656 TURN) for the media fallback path.
//!
//! When a firewall blocks peer-to-peer media, browsers send their DTLS-SRTP streams through
//! this relay. The relay never sees plaintext: it forwards encrypted datagrams between an
//! allocation's client and the peers the client has permitted.
//!
//! # Layout
//!
//! - [`proto`]: everything that decides. No sockets, no clock, no global randomness: time is a
//!   `now: Duration` (Unix time) argument, randomness comes in as seed values.
//! - [`net`]: the thin tokio layer that owns UDP, TCP and TLS sockets, feeds bytes and time into
//!   the [`proto::server::Server`] and carries its outputs out.
//! - [`config`]: the configuration file and its environment overrides.
//!
//! # Drive loop
//!
//! ```text
//! loop {
//!     on a client datagram or stream frame:
//!         if let Some(p) = server.handle_client(now, five_tuple, &bytes) { send p.payload to p.peer }
//!     on a datagram at an allocation's relay socket (read with PEER_HEADROOM free before it):
//!         if let Some(c) = server.handle_peer(now, id, peer, &mut buf, range) { send buf[c.range] to c.to }
//!     at least once a second:
//!         server.handle_timeout(now)
//!     after each of the above, until it returns None:
//!         match server.poll_output() { Transmit, BindRelay (answer with relay_bound), ReleaseRelay, Event }
//! }
//! ```
//!
//! # Why an own codec
//!
//! The webrtc-rs `stun` crate decodes a message into owned `Vec`s (one for the raw bytes, one per
//! attribute) and its `turn` server reads the clock inside its allocation logic and keeps each
//! allocation in its own set of tasks and timers. On the relay's hot path, ChannelData and
//! Data indications, that costs allocations and clock reads per packet. The codec in
//! [`proto::codec`] borrows from the receive buffer, builds Data indications and ChannelData
//! headers in place in headroom the socket layer leaves before each datagram, and allocates
//! only for control answers.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod config;
pub mod net;
pub mod proto;

use std::fmt;

/// Everything that can go wrong in the relay library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes from the network are not a valid STUN, TURN or ChannelData message.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// A socket operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Certificates or keys could not be loaded, or TLS could not be set up.
    #[error("tls error: {0}")]
    Tls(String),
}

/// Wraps an address or a name so that logs show it only when PII logging is on.
///
/// Logs are shipped off the host; client addresses and room names in them are personal data.
#[derive(Clone, Copy)]
pub struct Pii<T>(pub T);

impl<T: fmt::Display> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if log_pii() {
            self.0.fmt(f)
        } else {
            f.write_str("<redacted>")
        }
    }
}

impl<T: fmt::Display> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

static LOG_PII: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns on showing [`Pii`] values in release builds (for debugging on a test host).
pub fn set_log_pii(on: bool) {
    LOG_PII.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn log_pii() -> bool {
    LOG_PII.load(std::sync::atomic::Ordering::Relaxed)
}
