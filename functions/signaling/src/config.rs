//! Limits and timeouts of a room, with defaults suited to a two-person consultation.

use std::time::Duration;

use crate::Error;

/// Limits and timeouts of one room.
///
/// Start from [`Config::default`] and change fields:
///
/// ```
/// let mut config = bedside_signaling::Config::default();
/// config.ring_timeout = std::time::Duration::from_secs(120);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Participants present at once (connected, or disconnected within the grace period).
    pub capacity: usize,
    /// Largest text frame accepted, in bytes. The host should set its WebSocket frame limit a
    /// little above this so that larger frames never reach memory.
    pub max_message_bytes: usize,
    /// Largest chat text, in bytes of UTF-8.
    pub max_chat_bytes: usize,
    /// Sustained messages per second per connection (token bucket refill rate).
    pub rate_per_second: u32,
    /// Messages a connection may send in a burst (token bucket size).
    pub rate_burst: u32,
    /// Protocol violations (malformed, oversized, invalid or rate-limited messages) after which
    /// the connection is closed with 1008.
    pub max_violations: u32,
    /// One violation is forgiven per this much time without new ones.
    pub violation_decay: Duration,
    /// Connections not yet authenticated, beyond which new connections are refused.
    pub max_pending: usize,
    /// Time a new connection has to send `hello` and be verified.
    pub hello_timeout: Duration,
    /// Silence from a client after which the room sends `ping`.
    pub ping_interval: Duration,
    /// Time allowed for any frame to arrive after a `ping` before the connection is dropped.
    pub pong_timeout: Duration,
    /// Time a disconnected participant keeps their place (and their missed messages) to resume.
    pub reconnect_grace: Duration,
    /// Time the first participant waits alone before the call is given up.
    pub ring_timeout: Duration,
    /// Time a room without a call in progress (nobody yet, or one participant left alone after
    /// the call) stays open before it ends.
    pub idle_timeout: Duration,
    /// Messages kept per participant for replay on resume.
    pub replay_max_messages: usize,
    /// Bytes kept per participant for replay on resume.
    pub replay_max_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            capacity: 2,
            max_message_bytes: 64 * 1024,
            max_chat_bytes: 4 * 1024,
            rate_per_second: 20,
            rate_burst: 100,
            max_violations: 10,
            violation_decay: Duration::from_secs(60),
            max_pending: 8,
            hello_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(10),
            reconnect_grace: Duration::from_secs(30),
            ring_timeout: Duration::from_secs(90),
            idle_timeout: Duration::from_secs(5 * 60),
            replay_max_messages: 256,
            replay_max_bytes: 256 * 1024,
        }
    }
}

impl Config {
    /// Checks that the limits can work together.
    pub fn validate(&self) -> Result<(), Error> {
        let problem = if self.capacity == 0 {
            "capacity must be at least 1"
        } else if self.max_message_bytes < 256 {
            "max_message_bytes must be at least 256"
        } else if self.rate_per_second == 0 || self.rate_burst == 0 {
            "rate_per_second and rate_burst must be at least 1"
        } else if self.max_violations == 0 {
            "max_violations must be at least 1"
        } else if self.ping_interval.is_zero() || self.pong_timeout.is_zero() {
            "ping_interval and pong_timeout must be positive"
        } else if self.replay_max_messages == 0 || self.replay_max_bytes < self.max_message_bytes {
            "the replay buffer must hold at least one message of max_message_bytes"
        } else {
            return Ok(());
        };
        Err(Error::InvalidConfig(problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_zero_capacity_is_not() {
        assert_eq!(Config::default().validate(), Ok(()));
        let config = Config {
            capacity: 0,
            ..Config::default()
        };
        assert!(matches!(config.validate(), Err(Error::InvalidConfig(_))));
    }
}
