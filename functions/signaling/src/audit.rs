//! Session lifecycle events the host turns into audit records.

use crate::ids::{ConnId, RoomId, UserId};
use crate::time::Instant;

/// Something that happened in a room and belongs in the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// The room it happened in.
    pub room: RoomId,
    /// When, as given by the host's `now`.
    pub at: Instant,
    /// What happened.
    pub kind: AuditKind,
}

/// What happened. Chat text, SDP and tokens never appear here.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditKind {
    /// A participant authenticated and took their place (or took it back after a drop).
    ParticipantJoined {
        /// Who.
        user: UserId,
        /// Over which connection.
        conn: ConnId,
        /// Whether this continued an earlier connection without losing messages.
        resumed: bool,
    },
    /// A participant's place was released.
    ParticipantLeft {
        /// Who.
        user: UserId,
        /// Why.
        reason: LeaveReason,
    },
    /// The host rejected the token presented in `hello`.
    TokenRejected {
        /// The connection that presented it.
        conn: ConnId,
    },
    /// An authenticated user who is not a participant of this room tried to join.
    NotParticipant {
        /// Who.
        user: UserId,
        /// Over which connection.
        conn: ConnId,
    },
    /// A participant was turned away because the room was at capacity.
    RoomFull {
        /// Who.
        user: UserId,
        /// The capacity in force.
        capacity: usize,
    },
    /// A connection was closed with 1008 for repeated or pre-authentication violations.
    AbuseClosed {
        /// The connection.
        conn: ConnId,
        /// Its user, if it had authenticated.
        user: Option<UserId>,
        /// Violations counted when it was closed.
        violations: u32,
    },
    /// The first participant waited for the other one longer than `ring_timeout`.
    RingingTimedOut {
        /// The participant who was waiting.
        caller: UserId,
    },
    /// The room is over; the host can drop it.
    RoomEnded {
        /// Why.
        reason: EndReason,
    },
}

impl AuditKind {
    /// A stable snake_case name for the event, for audit records.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::ParticipantJoined { .. } => "participant_joined",
            Self::ParticipantLeft { .. } => "participant_left",
            Self::TokenRejected { .. } => "token_rejected",
            Self::NotParticipant { .. } => "not_participant",
            Self::RoomFull { .. } => "room_full",
            Self::AbuseClosed { .. } => "abuse_closed",
            Self::RingingTimedOut { .. } => "ringing_timed_out",
            Self::RoomEnded { .. } => "room_ended",
        }
    }
}

/// Why a participant's place was released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeaveReason {
    /// They sent `leave`.
    Hangup,
    /// Their connection dropped and they did not come back within the grace period.
    ConnectionLost,
    /// Their connection was closed for abuse.
    Removed,
    /// The room ended around them.
    RoomEnded,
}

impl LeaveReason {
    /// The snake_case reason, as sent in `presence` frames.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hangup => "hangup",
            Self::ConnectionLost => "connection_lost",
            Self::Removed => "removed",
            Self::RoomEnded => "room_ended",
        }
    }
}

/// Why a room ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// A call took place and every participant has left.
    Completed,
    /// The only participant left before anyone answered.
    Aborted,
    /// Nobody answered within `ring_timeout`.
    RingTimeout,
    /// Nobody was in a call for `idle_timeout`.
    Idle,
    /// The host ended the room ([`crate::Room::handle_end`]).
    Host,
}

impl EndReason {
    /// The snake_case reason, as sent in `room_ended` frames.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Aborted => "aborted",
            Self::RingTimeout => "ring_timeout",
            Self::Idle => "idle",
            Self::Host => "host",
        }
    }
}
