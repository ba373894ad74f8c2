//! Bedside accounts core: password policy and hashing, activation codes, TOTP two-factor,
//! tokens, lockout, the hash-chained audit log and the HTTP API handlers, with no I/O.
//!
//! Nothing here opens a socket, reads the clock or draws from a global random source. Each
//! request is served by [`api::Api::handle`], which takes:
//!
//! - the request as [`http::Request`] with the body already read into [`bytes::Bytes`], plus the
//!   client's address (a [`api::Client`]);
//! - `now` as a [`Timestamp`] and a 32-byte seed for that request's randomness;
//! - the ports an adapter implements: a SQLite-dialect [`store::Database`] (D1, Spin SQLite or
//!   an embedded SQLite) and an [`outbox::Outbox`] for email and SMS.
//!
//! and returns the [`http::Response`]. Every SQL statement lives in this crate and runs against
//! the one schema in the repository's `migrations/` folder, so every deployment behaves alike.
//! Every change that the audit log records (see [`audit::EventType`]) is written in one atomic
//! batch with its record. Bookkeeping that is not a security event (a resent code, a rotated
//! refresh token, a started TOTP enrolment) is written on its own.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod api;
pub mod audit;
pub mod config;
pub mod crypto;
mod error;
pub mod ice;
pub mod lockout;
pub mod outbox;
pub mod password;
pub mod store;
pub mod tokens;
pub mod totp;

pub use error::{Error, ErrorCode};

/// Wall-clock time as milliseconds since the Unix epoch, handed in by the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Builds a timestamp from whole seconds since the epoch.
    pub fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// Whole seconds since the epoch (what the database stores).
    pub fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }
}

/// The SQL migrations, in order, as `(file name, statements)`.
///
/// Adapters that apply migrations themselves (the native host) use this list; D1 and Spin read
/// the same files from the `migrations/` folder.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_accounts.sql",
        include_str!("../../../migrations/0001_accounts.sql"),
    ),
    (
        "0002_rooms.sql",
        include_str!("../../../migrations/0002_rooms.sql"),
    ),
    (
        "0003_room_transitions.sql",
        include_str!("../../../migrations/0003_room_transitions.sql"),
    ),
];
