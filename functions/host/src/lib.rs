//! The Bedside native host: the accounts API, the web client and (when configured) rooms, on
//! one machine, with an embedded SQLite database and a local data folder.
//!
//! The binary (`bedside`) wires these modules together; tests drive [`server::app`] directly.

pub mod config;
pub mod db;
pub mod keys;
pub mod outbox;
pub mod rooms;
pub mod server;
pub mod tls;

/// Threads for blocking work: API requests (half of them at most, see `server`), the embedded
/// store and message senders. The store serialises its statements on one connection, so more
/// threads would only wait, each holding a stack and a malloc arena.
pub const MAX_BLOCKING_THREADS: usize = 8;
