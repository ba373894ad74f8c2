//! The room: one state machine per session, relaying between its participants' connections.
//!
//! ```text
//!  connection:  open ──hello──▶ verifying ──verified──▶ joined ──closed──▶ (slot reconnecting)
//!                 │                │   └──rejected / not participant / full──▶ closed
//!                 └── hello_timeout┴──────────────────────────────────────────▶ closed 4008
//!
//!  room:    first join         second join          one leaves
//!     open ───────────▶ ringing ───────────▶ in call ───────────▶ alone
//!      │                 │    │                 ▲                   │
//!      │ idle_timeout    │    │ caller leaves   └──── a rejoin ─────┤
//!      ▼                 │    ▼                                     │ idle_timeout: ended(idle)
//!  ended(idle)           │  ended(aborted)                          │ last leaves: ended(completed)
//!                        ▼
//!               ended(ring_timeout)          from any phase, handle_end: ended(host)
//! ```
//!
//! A participant's place (slot) outlives their connection by `reconnect_grace`: messages for
//! them keep being sequenced into their replay buffer, and a `hello` with `resume` picks them up.

use std::collections::VecDeque;
use std::time::Duration;

use tracing::{debug, info, trace, warn};

use crate::Error;
use crate::audit::{AuditEvent, AuditKind, EndReason, LeaveReason};
use crate::config::Config;
use crate::ids::{ConnId, Frame, Pii, RoomId, Token, UserId};
use crate::limits::{RateBucket, Violations};
use crate::replay::Replay;
use crate::time::Instant;
use crate::wire::{self, ClientMessage, CloseCode, ErrorCode, FrameWriter};

/// What the host must do next, from [`Room::poll_output`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Send this text frame on the connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// The complete JSON text.
        frame: Frame,
    },
    /// Close the connection with this code and reason, after sending what was queued before.
    /// The room has already forgotten the connection.
    Close {
        /// The connection.
        conn: ConnId,
        /// The WebSocket close code.
        code: CloseCode,
        /// The close reason ([`ErrorCode::as_str`]).
        reason: ErrorCode,
    },
    /// Verify this access token, then call [`Room::handle_token_verified`] or
    /// [`Room::handle_token_rejected`].
    VerifyToken {
        /// The connection that presented it.
        conn: ConnId,
        /// The token. Never log it.
        token: Token,
    },
    /// Write an audit record.
    Audit(AuditEvent),
    /// Nothing more to do now: call [`Room::handle_timeout`] at this instant, or earlier if an
    /// input arrives.
    Timeout(Instant),
    /// The room has ended and has nothing left to say: drop it.
    Done,
}

/// A signaling room. See the crate documentation for the drive loop.
#[derive(Debug)]
pub struct Room {
    id: RoomId,
    config: Config,
    slots: Vec<Slot>,
    conns: Vec<Conn>,
    next_conn: u64,
    /// The last sequence number handed out.
    seq: u64,
    phase: Phase,
    had_call: bool,
    outputs: VecDeque<Output>,
}

/// One participant's place in the room.
#[derive(Debug)]
struct Slot {
    user: UserId,
    /// The user id as a quoted JSON string, written into every frame they cause.
    user_json: Box<str>,
    presence: Presence,
    replay: Replay,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presence {
    Absent,
    Connected(ConnId),
    Reconnecting { until: Instant },
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    auth: Auth,
    last_rx: Instant,
    ping_sent: Option<Instant>,
    bucket: RateBucket,
    violations: Violations,
    /// The client has been told it is rate limited since its last accepted message.
    told_limited: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auth {
    AwaitingHello {
        deadline: Instant,
    },
    Verifying {
        deadline: Instant,
        resume: Option<u64>,
    },
    Joined {
        slot: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open { since: Instant },
    Ringing { since: Instant, caller: usize },
    InCall,
    Alone { since: Instant },
    Ended,
}

impl Room {
    /// A room for these participants (the users allowed to join; usually two).
    pub fn new(
        id: RoomId,
        participants: impl IntoIterator<Item = UserId>,
        config: Config,
        now: Instant,
    ) -> Result<Self, Error> {
        config.validate()?;
        let mut slots: Vec<Slot> = Vec::new();
        for user in participants {
            if slots.iter().any(|slot| slot.user == user) {
                return Err(Error::InvalidParticipants("a user is listed twice"));
            }
            slots.push(Slot {
                user_json: wire::json_str(user.as_str()),
                user,
                presence: Presence::Absent,
                replay: Replay::default(),
            });
        }
        if slots.is_empty() {
            return Err(Error::InvalidParticipants(
                "a room needs at least one participant",
            ));
        }

        debug!(room = %id, participants = slots.len(), capacity = config.capacity, "room created");
        Ok(Self {
            id,
            config,
            slots,
            conns: Vec::new(),
            next_conn: 1,
            seq: 0,
            phase: Phase::Open { since: now },
            had_call: false,
            outputs: VecDeque::new(),
        })
    }

    /// The room's id.
    pub fn id(&self) -> &RoomId {
        &self.id
    }

    /// Whether the room has ended (it accepts no one any more).
    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Connections the room currently tracks (authenticated or not).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// A WebSocket connection was accepted for this room. Returns the id to use for it.
    pub fn handle_open(&mut self, now: Instant) -> ConnId {
        let id = ConnId::new(self.next_conn);
        self.next_conn += 1;

        if self.phase == Phase::Ended {
            self.refuse(
                id,
                ErrorCode::RoomEnded,
                "the room has ended",
                CloseCode::Normal,
            );
            return id;
        }
        let pending = self
            .conns
            .iter()
            .filter(|c| !matches!(c.auth, Auth::Joined { .. }))
            .count();
        if pending >= self.config.max_pending {
            warn!(room = %self.id, conn = %id, pending, max_pending = self.config.max_pending,
                "too many unauthenticated connections");
            let message = "too many connections are waiting to authenticate";
            self.refuse(id, ErrorCode::TooManyPending, message, CloseCode::RoomFull);
            return id;
        }

        trace!(room = %self.id, conn = %id, "connection opened");
        self.conns.push(Conn {
            id,
            auth: Auth::AwaitingHello {
                deadline: now + self.config.hello_timeout,
            },
            last_rx: now,
            ping_sent: None,
            bucket: RateBucket::new(self.config.rate_burst, now),
            violations: Violations::new(now),
            told_limited: false,
        });
        id
    }

    /// A text frame arrived on a connection.
    pub fn handle_text(&mut self, now: Instant, conn: ConnId, text: &str) {
        let Some(c) = self.conns.iter_mut().find(|c| c.id == conn) else {
            trace!(room = %self.id, %conn, "frame for an unknown connection");
            return;
        };
        c.last_rx = now;
        c.ping_sent = None;

        match c.auth {
            Auth::AwaitingHello { deadline } => self.on_hello(now, conn, deadline, text),
            Auth::Verifying { .. } => self.close_unauthenticated(
                now,
                conn,
                ErrorCode::NotAuthenticated,
                "wait for welcome before sending",
            ),
            Auth::Joined { slot } => self.on_joined_text(now, conn, slot, text),
        }
    }

    /// A binary frame arrived on a connection: not part of the protocol, counted as a violation.
    pub fn handle_binary(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.iter_mut().find(|c| c.id == conn) else {
            return;
        };
        c.last_rx = now;
        c.ping_sent = None;
        match c.auth {
            Auth::Joined { .. } => {
                self.violation(
                    now,
                    conn,
                    ErrorCode::Malformed,
                    "binary frames are not accepted",
                );
            }
            _ => self.close_unauthenticated(
                now,
                conn,
                ErrorCode::NotAuthenticated,
                "binary frames are not accepted",
            ),
        }
    }

    /// The connection closed (by the client, the network, or after an [`Output::Close`]).
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.remove_conn(conn) else {
            return;
        };
        trace!(room = %self.id, %conn, "connection closed");
        if let Auth::Joined { slot } = c.auth {
            self.disconnect(now, slot, conn);
        }
    }

    /// The host verified the token of `conn`: it belongs to `user`.
    pub fn handle_token_verified(&mut self, now: Instant, conn: ConnId, user: UserId) {
        let Some(resume) = self.verifying(conn) else {
            return;
        };

        let Some(slot) = self.slots.iter().position(|s| s.user == user) else {
            warn!(room = %self.id, %conn, user = %Pii(&user), "user is not a participant");
            self.refuse(
                conn,
                ErrorCode::NotParticipant,
                "you are not a participant of this room",
                CloseCode::NotParticipant,
            );
            self.remove_conn(conn);
            self.audit(now, AuditKind::NotParticipant { user, conn });
            return;
        };

        let absent = self
            .slots
            .get(slot)
            .is_none_or(|s| s.presence == Presence::Absent);
        let present = self.present_count();
        if absent && present >= self.config.capacity {
            warn!(room = %self.id, %conn, present, capacity = self.config.capacity, "room is full");
            self.refuse(
                conn,
                ErrorCode::RoomFull,
                "the room is full",
                CloseCode::RoomFull,
            );
            self.remove_conn(conn);
            self.audit(
                now,
                AuditKind::RoomFull {
                    user,
                    capacity: self.config.capacity,
                },
            );
            return;
        }

        self.join(now, conn, slot, resume);
    }

    /// The host rejected the token of `conn` (invalid, expired, or for another room).
    pub fn handle_token_rejected(&mut self, now: Instant, conn: ConnId) {
        if self.verifying(conn).is_none() {
            return;
        }
        debug!(room = %self.id, %conn, "token rejected");
        self.refuse(
            conn,
            ErrorCode::InvalidToken,
            "the access token was not accepted",
            CloseCode::InvalidToken,
        );
        self.remove_conn(conn);
        self.audit(now, AuditKind::TokenRejected { conn });
    }

    /// Time has reached a deadline given by [`Output::Timeout`] (calling it early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_connections(now);
        self.expire_places(now);
        self.expire_phase(now);
    }

    /// The host ends the room (the session was cancelled, or the host shuts down).
    pub fn handle_end(&mut self, now: Instant) {
        self.end(now, EndReason::Host);
    }

    /// The next thing for the host to do. Call it until it returns [`Output::Timeout`] or
    /// [`Output::Done`].
    pub fn poll_output(&mut self) -> Output {
        if let Some(output) = self.outputs.pop_front() {
            if self.outputs.is_empty() && self.outputs.capacity() > 16 {
                // A burst (a replay, a room ending) should not pin memory for the room's life.
                self.outputs.shrink_to(16);
            }
            return output;
        }
        match self.next_timeout() {
            Some(at) => Output::Timeout(at),
            None if self.phase == Phase::Ended => Output::Done,
            // Unreachable while the room is open (its phase always has a deadline); waking up
            // never is the safe answer.
            None => Output::Timeout(Instant::from_millis(u64::MAX)),
        }
    }

    fn next_timeout(&self) -> Option<Instant> {
        let conns = self.conns.iter().map(|c| match c.auth {
            Auth::AwaitingHello { deadline } | Auth::Verifying { deadline, .. } => deadline,
            Auth::Joined { .. } => match c.ping_sent {
                Some(sent) => sent + self.config.pong_timeout,
                None => c.last_rx + self.config.ping_interval,
            },
        });
        let slots = self.slots.iter().filter_map(|s| match s.presence {
            Presence::Reconnecting { until } => Some(until),
            _ => None,
        });
        let phase = match self.phase {
            Phase::Open { since } | Phase::Alone { since } => {
                Some(since + self.config.idle_timeout)
            }
            Phase::Ringing { since, .. } => Some(since + self.config.ring_timeout),
            Phase::InCall | Phase::Ended => None,
        };
        conns.chain(slots).chain(phase).min()
    }

    /// Authentication deadlines and heartbeats.
    fn expire_connections(&mut self, now: Instant) {
        let due: Vec<(ConnId, Auth, Option<Instant>, Instant)> = (self.conns.iter())
            .map(|c| (c.id, c.auth, c.ping_sent, c.last_rx))
            .collect();
        for (conn, auth, ping_sent, last_rx) in due {
            match auth {
                Auth::AwaitingHello { deadline } | Auth::Verifying { deadline, .. } => {
                    if deadline <= now {
                        let hello_timeout_ms = duration_ms(self.config.hello_timeout);
                        warn!(room = %self.id, %conn, hello_timeout_ms, "no authentication in time");
                        let (code, close) = (ErrorCode::AuthTimeout, CloseCode::Timeout);
                        self.refuse(conn, code, "authenticate sooner", close);
                        self.remove_conn(conn);
                    }
                }
                Auth::Joined { slot } => self.heartbeat(now, conn, slot, ping_sent, last_rx),
            }
        }
    }

    /// Places held for disconnected participants whose grace period is over.
    fn expire_places(&mut self, now: Instant) {
        for slot in 0..self.slots.len() {
            let expired = self.slots.get(slot).is_some_and(
                |s| matches!(s.presence, Presence::Reconnecting { until } if until <= now),
            );
            if expired {
                let grace_ms = duration_ms(self.config.reconnect_grace);
                warn!(room = %self.id, grace_ms, "participant did not come back in time");
                self.leave(now, slot, LeaveReason::ConnectionLost);
            }
        }
    }

    /// Ringing and idle deadlines of the room itself.
    fn expire_phase(&mut self, now: Instant) {
        match self.phase {
            Phase::Ringing { since, caller } if since + self.config.ring_timeout <= now => {
                let ring_timeout_ms = duration_ms(self.config.ring_timeout);
                info!(room = %self.id, ring_timeout_ms, "nobody answered");
                if let Some(s) = self.slots.get(caller) {
                    let caller = s.user.clone();
                    self.audit(now, AuditKind::RingingTimedOut { caller });
                }
                self.end(now, EndReason::RingTimeout);
            }
            Phase::Open { since } | Phase::Alone { since }
                if since + self.config.idle_timeout <= now =>
            {
                let idle_timeout_ms = duration_ms(self.config.idle_timeout);
                info!(room = %self.id, idle_timeout_ms, "no call in progress for too long");
                self.end(now, EndReason::Idle);
            }
            _ => {}
        }
    }

    fn on_hello(&mut self, now: Instant, conn: ConnId, deadline: Instant, text: &str) {
        if text.len() > self.config.max_message_bytes {
            warn!(room = %self.id, %conn, size = text.len(), max = self.config.max_message_bytes,
                "hello too large");
            let message = "message too large";
            return self.close_unauthenticated(now, conn, ErrorCode::MessageTooLarge, message);
        }
        match wire::parse(text) {
            Ok(ClientMessage::Hello { token, resume }) => {
                if let Some(c) = self.conns.iter_mut().find(|c| c.id == conn) {
                    c.auth = Auth::Verifying { deadline, resume };
                }
                trace!(room = %self.id, %conn, ?resume, "hello");
                self.outputs.push_back(Output::VerifyToken {
                    conn,
                    token: Token::new(&token),
                });
            }
            Ok(_) => self.close_unauthenticated(
                now,
                conn,
                ErrorCode::NotAuthenticated,
                "the first message must be hello",
            ),
            Err(e) => self.close_unauthenticated(now, conn, e.code(), &e.to_string()),
        }
    }

    fn on_joined_text(&mut self, now: Instant, conn: ConnId, slot: usize, text: &str) {
        let (rate, burst) = (self.config.rate_per_second, self.config.rate_burst);
        let Some(c) = self.conns.iter_mut().find(|c| c.id == conn) else {
            return;
        };
        if !c.bucket.try_take(rate, burst, now) {
            let first = !c.told_limited;
            c.told_limited = true;
            if first {
                warn!(room = %self.id, %conn, rate_per_second = rate, burst, "rate limit hit");
            }
            return self.violation_quiet(now, conn, !first);
        }
        c.told_limited = false;

        if text.len() > self.config.max_message_bytes {
            let max = self.config.max_message_bytes;
            warn!(room = %self.id, %conn, size = text.len(), max, "message too large");
            let e = Error::TooLarge {
                size: text.len(),
                max,
            };
            return self.violation(now, conn, e.code(), &e.to_string());
        }

        let message = match wire::parse(text) {
            Ok(message) => message,
            Err(e) => {
                debug!(room = %self.id, %conn, error = %e, "refused message");
                return self.violation(now, conn, e.code(), &e.to_string());
            }
        };
        self.dispatch(now, conn, slot, message);
    }

    fn dispatch(&mut self, now: Instant, conn: ConnId, slot: usize, message: ClientMessage<'_>) {
        let kind = match &message {
            ClientMessage::Offer { .. } => "offer",
            ClientMessage::Answer { .. } => "answer",
            ClientMessage::Candidate(_) => "candidate",
            ClientMessage::EndOfCandidates => "end_of_candidates",
            ClientMessage::Chat { .. } => "chat",
            ClientMessage::Ping { ack } => {
                self.ack(slot, *ack);
                let pong = FrameWriter::new("pong", None, 0).finish();
                return self.outputs.push_back(Output::Send { conn, frame: pong });
            }
            ClientMessage::Pong { ack } => return self.ack(slot, *ack),
            ClientMessage::Leave => {
                self.outputs.push_back(Output::Close {
                    conn,
                    code: CloseCode::Normal,
                    reason: ErrorCode::Left,
                });
                self.remove_conn(conn);
                return self.leave(now, slot, LeaveReason::Hangup);
            }
            ClientMessage::Hello { .. } => {
                return self.violation(
                    now,
                    conn,
                    ErrorCode::NotAuthenticated,
                    "already authenticated",
                );
            }
        };

        let chat_bytes = match &message {
            ClientMessage::Chat { text } => text.len(),
            _ => 0,
        };
        if chat_bytes > self.config.max_chat_bytes {
            let max = self.config.max_chat_bytes;
            warn!(room = %self.id, %conn, size = chat_bytes, max, "chat text too long");
            let e = Error::ChatTooLong {
                size: chat_bytes,
                max,
            };
            return self.violation(now, conn, e.code(), &e.to_string());
        }
        if !self
            .slots
            .iter()
            .enumerate()
            .any(|(i, s)| i != slot && s.presence != Presence::Absent)
        {
            let frame = wire::error_frame(ErrorCode::NoPeer, "nobody else is in the room");
            return self.outputs.push_back(Output::Send { conn, frame });
        }

        let seq = self.seq + 1;
        let Some(from) = self.slots.get(slot) else {
            return;
        };
        let frame = relayed_frame(kind, seq, &from.user_json, &message);
        trace!(room = %self.id, %conn, seq, kind, "relay");
        self.broadcast(Some(slot), seq, frame);
    }

    fn ack(&mut self, slot: usize, ack: Option<u64>) {
        let (Some(ack), Some(s)) = (ack, self.slots.get_mut(slot)) else {
            return;
        };
        s.replay.ack(ack.min(self.seq));
    }

    fn heartbeat(
        &mut self,
        now: Instant,
        conn: ConnId,
        slot: usize,
        ping_sent: Option<Instant>,
        last_rx: Instant,
    ) {
        match ping_sent {
            Some(sent) if sent + self.config.pong_timeout <= now => {
                let pong_timeout_ms = duration_ms(self.config.pong_timeout);
                warn!(room = %self.id, %conn, pong_timeout_ms, "no answer to ping");
                self.refuse(
                    conn,
                    ErrorCode::HeartbeatTimeout,
                    "no answer to ping",
                    CloseCode::Timeout,
                );
                self.remove_conn(conn);
                self.disconnect(now, slot, conn);
            }
            None if last_rx + self.config.ping_interval <= now => {
                if let Some(c) = self.conns.iter_mut().find(|c| c.id == conn) {
                    c.ping_sent = Some(now);
                }
                let frame = FrameWriter::new("ping", None, 0).finish();
                self.outputs.push_back(Output::Send { conn, frame });
            }
            _ => {}
        }
    }

    /// The connection of `slot` is gone; the participant keeps their place for the grace period.
    fn disconnect(&mut self, now: Instant, slot: usize, conn: ConnId) {
        let until = now + self.config.reconnect_grace;
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if s.presence != Presence::Connected(conn) {
            return;
        }
        s.presence = Presence::Reconnecting { until };
        debug!(room = %self.id, %conn, user = %Pii(&s.user), "participant reconnecting");
        self.presence(slot, "reconnecting", None);
    }

    fn join(&mut self, now: Instant, conn: ConnId, slot: usize, resume: Option<u64>) {
        let Some(previous) = self.slots.get(slot).map(|s| s.presence) else {
            return;
        };
        if let Presence::Connected(old) = previous {
            debug!(room = %self.id, %old, %conn, "connection replaced");
            let message = "another connection took over";
            self.refuse(old, ErrorCode::Replaced, message, CloseCode::Replaced);
            self.remove_conn(old);
        }
        if let Some(c) = self.conns.iter_mut().find(|c| c.id == conn) {
            c.auth = Auth::Joined { slot };
        }

        let missed = self.take_place(slot, conn, resume, previous);
        let resumed = missed.is_some();
        self.greet(conn, slot, resume, missed);

        let Some(user) = self.slots.get(slot).map(|s| s.user.clone()) else {
            return;
        };
        debug!(room = %self.id, %conn, user = %Pii(&user), resumed, "participant joined");
        match (resumed, previous) {
            (true, Presence::Reconnecting { .. }) => self.presence(slot, "resumed", None),
            (true, _) => {}
            (false, _) => self.presence(slot, "joined", None),
        }
        self.audit(
            now,
            AuditKind::ParticipantJoined {
                user,
                conn,
                resumed,
            },
        );
        self.update_phase(now, Some(slot));
    }

    /// Puts `conn` in `slot`. Returns the frames to replay if the resume can be honoured;
    /// otherwise the participant starts afresh.
    fn take_place(
        &mut self,
        slot: usize,
        conn: ConnId,
        resume: Option<u64>,
        previous: Presence,
    ) -> Option<Vec<Frame>> {
        let seq = self.seq;
        let s = self.slots.get_mut(slot)?;
        s.presence = Presence::Connected(conn);
        let missed = match resume {
            Some(from) if previous != Presence::Absent && from <= seq => {
                s.replay.since(from).map(|frames| frames.cloned().collect())
            }
            _ => None,
        };
        if missed.is_none() {
            s.replay.reset(seq);
        }
        missed
    }

    /// Sends `welcome`, preceded by `resume_gap` if a resume failed, followed by the replay.
    fn greet(
        &mut self,
        conn: ConnId,
        slot: usize,
        resume: Option<u64>,
        missed: Option<Vec<Frame>>,
    ) {
        let (resumed, last_seq) = match (resume, &missed) {
            (Some(from), Some(_)) => (true, from),
            _ => (false, self.seq),
        };
        if resume.is_some() && !resumed {
            debug!(room = %self.id, %conn, "resume impossible, starting afresh");
            let message = "messages since your resume point are gone: start the call setup afresh";
            let frame = wire::error_frame(ErrorCode::ResumeGap, message);
            self.outputs.push_back(Output::Send { conn, frame });
        }
        let frame = self.welcome(slot, resumed, last_seq);
        self.outputs.push_back(Output::Send { conn, frame });
        for frame in missed.into_iter().flatten() {
            self.outputs.push_back(Output::Send { conn, frame });
        }
    }

    fn welcome(&self, slot: usize, resumed: bool, last_seq: u64) -> Frame {
        let mut peers = String::from("[");
        for (i, s) in self.slots.iter().enumerate() {
            let state = match s.presence {
                _ if i == slot => continue,
                Presence::Absent => continue,
                Presence::Connected(_) => "connected",
                Presence::Reconnecting { .. } => "reconnecting",
            };
            if peers.len() > 1 {
                peers.push(',');
            }
            peers.push_str("{\"user\":");
            peers.push_str(&s.user_json);
            peers.push_str(",\"state\":\"");
            peers.push_str(state);
            peers.push_str("\"}");
        }
        peers.push(']');

        let user = self.slots.get(slot).map_or("\"\"", |s| &s.user_json);
        FrameWriter::new("welcome", None, 128 + peers.len())
            .str("room", self.id.as_str())
            .raw("user", user)
            .u64("last_seq", last_seq)
            .bool("resumed", resumed)
            .raw("peers", &peers)
            .u64("ping_interval_ms", duration_ms(self.config.ping_interval))
            .u64("max_message_bytes", self.config.max_message_bytes as u64)
            .u64("max_chat_bytes", self.config.max_chat_bytes as u64)
            .finish()
    }

    /// Releases `slot`: tells the others, records it, and moves the room on.
    fn leave(&mut self, now: Instant, slot: usize, reason: LeaveReason) {
        let seq = self.seq;
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if s.presence == Presence::Absent {
            return;
        }
        if let Presence::Connected(conn) = s.presence {
            // The connection is being closed by the caller; make sure it is forgotten.
            self.conns.retain(|c| c.id != conn);
        }
        s.presence = Presence::Absent;
        s.replay.reset(seq);
        let user = s.user.clone();

        debug!(room = %self.id, user = %Pii(&user), reason = reason.as_str(), "participant left");
        self.presence(slot, "left", Some(reason.as_str()));
        self.audit(now, AuditKind::ParticipantLeft { user, reason });
        self.update_phase(now, None);
    }

    /// Sends a sequenced `presence` frame about `slot` to everyone else.
    fn presence(&mut self, slot: usize, state: &str, reason: Option<&str>) {
        let Some(user) = self.slots.get(slot).map(|s| &s.user_json) else {
            return;
        };
        let seq = self.seq + 1;
        let mut frame = FrameWriter::new("presence", Some(seq), 64 + user.len())
            .raw("user", user)
            .str("state", state);
        if let Some(reason) = reason {
            frame = frame.str("reason", reason);
        }
        self.broadcast(Some(slot), seq, frame.finish());
    }

    /// Hands out `seq` and delivers `frame` to every present participant except `from`.
    fn broadcast(&mut self, from: Option<usize>, seq: u64, frame: Frame) {
        let recipient = |(i, s): (usize, &Slot)| Some(i) != from && s.presence != Presence::Absent;
        if !self.slots.iter().enumerate().any(recipient) {
            return;
        }
        self.seq = seq;
        let (max_messages, max_bytes) = (
            self.config.replay_max_messages,
            self.config.replay_max_bytes,
        );
        for (i, s) in self.slots.iter_mut().enumerate() {
            if Some(i) == from || s.presence == Presence::Absent {
                continue;
            }
            if let Some(overflow) = s.replay.push(seq, frame.clone(), max_messages, max_bytes) {
                warn!(room = %self.id, user = %Pii(&s.user), evicted = overflow.evicted,
                    max_messages, max_bytes, "replay buffer full, oldest messages dropped");
            }
            if let Presence::Connected(conn) = s.presence {
                self.outputs.push_back(Output::Send {
                    conn,
                    frame: frame.clone(),
                });
            }
        }
    }

    fn update_phase(&mut self, now: Instant, joined: Option<usize>) {
        let present = self.present_count();
        let next = match (self.phase, present) {
            (Phase::Ended, _) => return,
            (Phase::Open { .. }, 0) => return,
            (_, 0) if self.had_call => return self.end(now, EndReason::Completed),
            (_, 0) => return self.end(now, EndReason::Aborted),
            (Phase::Alone { .. } | Phase::Ringing { .. }, 1) => return,
            (_, 1) if self.had_call => Phase::Alone { since: now },
            (_, 1) => {
                let caller = joined.or_else(|| {
                    self.slots
                        .iter()
                        .position(|s| s.presence != Presence::Absent)
                });
                Phase::Ringing {
                    since: now,
                    caller: caller.unwrap_or_default(),
                }
            }
            (_, _) => {
                self.had_call = true;
                Phase::InCall
            }
        };
        if next != self.phase {
            debug!(room = %self.id, phase = ?next, "room phase");
            self.phase = next;
        }
    }

    fn end(&mut self, now: Instant, reason: EndReason) {
        if self.phase == Phase::Ended {
            return;
        }
        info!(room = %self.id, reason = reason.as_str(), "room ended");
        let frame = FrameWriter::new("room_ended", None, 16)
            .str("reason", reason.as_str())
            .finish();
        for c in std::mem::take(&mut self.conns) {
            self.outputs.push_back(Output::Send {
                conn: c.id,
                frame: frame.clone(),
            });
            self.outputs.push_back(Output::Close {
                conn: c.id,
                code: CloseCode::Normal,
                reason: ErrorCode::RoomEnded,
            });
        }
        let seq = self.seq;
        let mut left = Vec::new();
        for s in &mut self.slots {
            if s.presence != Presence::Absent {
                s.presence = Presence::Absent;
                left.push(s.user.clone());
            }
            s.replay.reset(seq);
        }
        for user in left {
            self.audit(
                now,
                AuditKind::ParticipantLeft {
                    user,
                    reason: LeaveReason::RoomEnded,
                },
            );
        }
        self.audit(now, AuditKind::RoomEnded { reason });
        self.phase = Phase::Ended;
    }

    /// Counts a violation on an authenticated connection, telling the client why.
    fn violation(&mut self, now: Instant, conn: ConnId, code: ErrorCode, message: &str) {
        if self.count_violation(now, conn) {
            let frame = wire::error_frame(code, message);
            self.outputs.push_back(Output::Send { conn, frame });
        }
    }

    /// Counts a rate-limit violation; the client is told once per run of dropped messages.
    fn violation_quiet(&mut self, now: Instant, conn: ConnId, already_told: bool) {
        if self.count_violation(now, conn) && !already_told {
            let frame = wire::error_frame(ErrorCode::RateLimited, "too many messages: slow down");
            self.outputs.push_back(Output::Send { conn, frame });
        }
    }

    /// Returns whether the connection survives the violation.
    fn count_violation(&mut self, now: Instant, conn: ConnId) -> bool {
        let (max, decay) = (self.config.max_violations, self.config.violation_decay);
        let Some(c) = self.conns.iter_mut().find(|c| c.id == conn) else {
            return false;
        };
        let count = c.violations.record(decay, now);
        if count < max {
            return true;
        }

        warn!(room = %self.id, %conn, violations = count, max_violations = max,
            "closing connection for repeated violations");
        let slot = match c.auth {
            Auth::Joined { slot } => Some(slot),
            _ => None,
        };
        self.refuse(
            conn,
            ErrorCode::PolicyViolation,
            "too many invalid messages",
            CloseCode::PolicyViolation,
        );
        self.remove_conn(conn);
        let user = slot.and_then(|i| self.slots.get(i)).map(|s| s.user.clone());
        self.audit(
            now,
            AuditKind::AbuseClosed {
                conn,
                user,
                violations: count,
            },
        );
        if let Some(slot) = slot {
            self.leave(now, slot, LeaveReason::Removed);
        }
        false
    }

    /// Closes a connection that broke the protocol before authenticating.
    fn close_unauthenticated(
        &mut self,
        now: Instant,
        conn: ConnId,
        code: ErrorCode,
        message: &str,
    ) {
        debug!(room = %self.id, %conn, code = code.as_str(), "unauthenticated connection closed");
        self.refuse(conn, code, message, CloseCode::PolicyViolation);
        self.remove_conn(conn);
        self.audit(
            now,
            AuditKind::AbuseClosed {
                conn,
                user: None,
                violations: 1,
            },
        );
    }

    /// Queues an `error` frame and the close.
    fn refuse(&mut self, conn: ConnId, code: ErrorCode, message: &str, close: CloseCode) {
        let frame = wire::error_frame(code, message);
        self.outputs.push_back(Output::Send { conn, frame });
        self.outputs.push_back(Output::Close {
            conn,
            code: close,
            reason: code,
        });
    }

    fn remove_conn(&mut self, conn: ConnId) -> Option<Conn> {
        let index = self.conns.iter().position(|c| c.id == conn)?;
        Some(self.conns.swap_remove(index))
    }

    /// The `resume` of a connection waiting for verification, or `None` if it is not waiting.
    fn verifying(&self, conn: ConnId) -> Option<Option<u64>> {
        match self.conns.iter().find(|c| c.id == conn)?.auth {
            Auth::Verifying { resume, .. } => Some(resume),
            _ => {
                debug!(room = %self.id, %conn, "verification result for a connection not waiting");
                None
            }
        }
    }

    fn present_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.presence != Presence::Absent)
            .count()
    }

    fn audit(&mut self, now: Instant, kind: AuditKind) {
        self.outputs.push_back(Output::Audit(AuditEvent {
            room: self.id.clone(),
            at: now,
            kind,
        }));
    }
}

/// The frame relayed for a client message, built once for all recipients.
fn relayed_frame(kind: &str, seq: u64, from: &str, message: &ClientMessage<'_>) -> Frame {
    let frame = FrameWriter::new(kind, Some(seq), 64 + from.len()).raw("from", from);
    match message {
        ClientMessage::Offer { sdp } | ClientMessage::Answer { sdp } => frame.str("sdp", sdp),
        ClientMessage::Candidate(c) => {
            let mut frame = frame.str("candidate", &c.candidate);
            if let Some(mid) = &c.sdp_mid {
                frame = frame.str("sdpMid", mid);
            }
            if let Some(index) = c.sdp_m_line_index {
                frame = frame.u64("sdpMLineIndex", u64::from(index));
            }
            if let Some(ufrag) = &c.username_fragment {
                frame = frame.str("usernameFragment", ufrag);
            }
            frame
        }
        ClientMessage::Chat { text } => frame.str("text", text),
        _ => frame,
    }
    .finish()
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A benchmark holds 10,000 idle clients in 100 MiB alongside the host's own buffers: the
    /// room's share per connection must stay a small fraction of that.
    #[test]
    fn per_connection_state_stays_small() {
        assert!(
            std::mem::size_of::<Conn>() <= 112,
            "{}",
            std::mem::size_of::<Conn>()
        );
        assert!(
            std::mem::size_of::<Slot>() <= 112,
            "{}",
            std::mem::size_of::<Slot>()
        );
        assert!(
            std::mem::size_of::<Output>() <= 80,
            "{}",
            std::mem::size_of::<Output>()
        );
        assert!(
            std::mem::size_of::<Room>() <= 384,
            "{}",
            std::mem::size_of::<Room>()
        );
    }

    #[test]
    fn a_room_can_move_to_its_own_task() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<Room>();
        assert_send::<Output>();
    }
}
