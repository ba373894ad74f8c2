//! The relay's protocol logic, without sockets or clocks: wire format, credentials, peer
//! policy, rate limits and the server state machine.

pub mod auth;
pub mod codec;
pub mod limit;
pub mod policy;
pub mod server;

#[cfg(test)]
mod tests;
