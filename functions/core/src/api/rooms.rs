//! Rooms: a call between two accounts, from the request to its end, and its ICE configuration.
//!
//! ```text
//!            accept (invitee), or the invitee joins the room's channel
//!   ringing ───────────────────────────────────────────────────────▶ active
//!      │  abort (either side), ring deadline passed,                   │ abort, or the room's
//!      │  the channel ends before anyone accepted                      │ channel ends
//!      ▼                                                               ▼
//!   aborted                                                          ended
//! ```
//!
//! Every transition is one batch with its audit records, in both participants' chains. A room
//! leaves each state once (a key in `room_transitions`), so of two racing writers one wins and
//! the other re-reads; the schema also refuses transitions the diagram does not show. Time is an input, so a ringing room whose deadline has passed is aborted by
//! the first reader that notices (once). Only the two participants see a room: for anyone else
//! it does not exist (404 `not_found`).

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::Deserialize;

use crate::audit::{self, Event, EventType, Outcome};
use crate::outbox::Outbox;
use crate::store::{Database, Row, Statement, StoreError};
use crate::{Error, ErrorCode, Timestamp, ice};

use super::auth::Caller;
use super::codes;
use super::{Api, Client, Ctx, json};

/// How often a transition re-reads its room after losing a race.
const TRANSITION_RETRIES: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewRoom {
    /// An email address or an account id.
    invitee: String,
}

/// Where a room is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoomState {
    /// Requested, waiting for the invitee.
    Ringing,
    /// Accepted: the call may take place.
    Active,
    /// The call is over.
    Ended,
    /// Given up before it was accepted.
    Aborted,
}

impl RoomState {
    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ringing => "ringing",
            Self::Active => "active",
            Self::Ended => "ended",
            Self::Aborted => "aborted",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "ringing" => Self::Ringing,
            "active" => Self::Active,
            "ended" => Self::Ended,
            "aborted" => Self::Aborted,
            _ => return None,
        })
    }

    fn is_live(self) -> bool {
        matches!(self, Self::Ringing | Self::Active)
    }
}

/// A room as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// 32 hex digits.
    pub id: String,
    /// The account that placed the call.
    pub caller: String,
    /// The account called.
    pub invitee: String,
    /// Where it is in its life.
    pub state: RoomState,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; a ringing room is aborted from then on.
    pub ring_deadline: i64,
    /// Unix seconds, once accepted.
    pub accepted_at: Option<i64>,
    /// Unix seconds, once ended or aborted.
    pub ended_at: Option<i64>,
    /// Why it ended or was aborted.
    pub end_reason: Option<String>,
}

impl Room {
    fn from_row(row: &Row) -> Option<Self> {
        Some(Self {
            id: row.text(0)?.to_owned(),
            caller: row.text(1)?.to_owned(),
            invitee: row.text(2)?.to_owned(),
            state: RoomState::parse(row.text(3)?)?,
            created_at: row.int(4)?,
            ring_deadline: row.int(5)?,
            accepted_at: row.int(6),
            ended_at: row.int(7),
            end_reason: row.text(8).map(str::to_owned),
        })
    }

    fn is_participant(&self, account: &str) -> bool {
        self.caller == account || self.invitee == account
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "state": self.state.as_str(),
            "caller": self.caller,
            "invitee": self.invitee,
            "created_at": self.created_at,
            "ring_deadline": self.ring_deadline,
            "accepted_at": self.accepted_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
        })
    }

    /// The same event in both participants' chains.
    fn for_both(&self, event: Event) -> [Event; 2] {
        let room = event.clone().room(&self.id);
        [
            room.clone().in_chain_of(&self.caller),
            room.in_chain_of(&self.invitee),
        ]
    }
}

/// What happened on a room's signaling channel, for its audit records.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum RoomActivity<'a> {
    /// A participant joined (or came back to) the channel.
    Joined {
        /// Who.
        account: &'a str,
        /// Whether they resumed without losing messages.
        resumed: bool,
    },
    /// A participant's place was released.
    Left {
        /// Who.
        account: &'a str,
        /// Why (`hangup`, `connection_lost`, `removed`, `room_ended`).
        reason: &'a str,
    },
    /// A connection was turned away or thrown out.
    Refused {
        /// Who, if they had authenticated.
        account: Option<&'a str>,
        /// Why, as a stable code (`invalid_token`, `not_participant`, `room_full`, …).
        code: &'a str,
    },
}

const INSERT: &str = "\
INSERT INTO rooms (id, caller, invitee, state, created_at, ring_deadline)
VALUES (?1, ?2, ?3, 'ringing', ?4, ?5)
RETURNING id, caller, invitee, state, created_at, ring_deadline, accepted_at, ended_at, end_reason";
const BY_ID: &str = "SELECT id, caller, invitee, state, created_at, ring_deadline, accepted_at, \
    ended_at, end_reason FROM rooms WHERE id = ?1";
/// A room leaves each state once: the second of two racing writers fails here.
const GUARD: &str = "\
INSERT INTO room_transitions (room_id, from_state, to_state, at) VALUES (?1, ?2, ?3, ?4)";
const MOVE: &str = "\
UPDATE rooms SET state = ?2,
    accepted_at = CASE WHEN ?2 = 'active' THEN ?3 ELSE accepted_at END,
    ended_at = CASE WHEN ?2 IN ('ended', 'aborted') THEN ?3 ELSE ended_at END,
    end_reason = ?4
WHERE id = ?1
RETURNING id, caller, invitee, state, created_at, ring_deadline, accepted_at, ended_at, end_reason";

/// `POST /v1/rooms`: calls someone.
pub(super) async fn create<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    who: &Caller,
    req: NewRoom,
) -> Result<Response<Bytes>, Error> {
    let wanted = req.invitee.trim();
    let invitee = if wanted.contains('@') {
        let email = codes::normalize_email(wanted)?;
        codes::account_by_email(ctx.db, &email).await?
    } else {
        codes::account_by_id(ctx.db, wanted).await?
    };
    let invitee = invitee
        .filter(|a| a.active)
        .ok_or(ErrorCode::InviteeUnknown)?;
    if invitee.id == who.account {
        return Err(ErrorCode::CannotInviteSelf.into());
    }

    let id = ctx.rng.id();
    let now = ctx.now.secs();
    let deadline = now.saturating_add(ctx.api.config.room_ring_secs);
    let insert = Statement::new(
        INSERT,
        vec![
            id.as_str().into(),
            who.account.as_str().into(),
            invitee.id.as_str().into(),
            now.into(),
            deadline.into(),
        ],
    );
    let event = ctx
        .event(
            EventType::SessionRequest,
            Outcome::Success,
            Some(&who.account),
            "a call was requested",
        )
        .room(&id);
    let events = [
        event.clone().in_chain_of(&who.account),
        event.in_chain_of(&invitee.id),
    ];
    let rows = audit::commit_all(ctx.db, ctx.now, vec![insert], &events).await?;
    let room = rows
        .first()
        .and_then(|r| r.first())
        .and_then(Room::from_row)
        .ok_or(Error::Corrupt("room"))?;
    tracing::debug!(room = %room.id, "room requested");
    Ok(json(StatusCode::CREATED, &room.to_json()))
}

/// `GET /v1/rooms/{id}`.
pub(super) async fn show<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    who: &Caller,
    id: &str,
) -> Result<Response<Bytes>, Error> {
    let room = visible(ctx.db, id, &who.account, ctx.now).await?;
    Ok(json(StatusCode::OK, &room.to_json()))
}

/// `POST /v1/rooms/{id}/accept`: the invitee takes the call.
pub(super) async fn accept<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    who: &Caller,
    id: &str,
) -> Result<Response<Bytes>, Error> {
    let room = visible(ctx.db, id, &who.account, ctx.now).await?;
    if room.invitee != who.account {
        return Err(ErrorCode::NotInvitee.into());
    }
    match room.state {
        RoomState::Ringing => {}
        RoomState::Active => return Err(ErrorCode::RoomNotRinging.into()),
        RoomState::Ended | RoomState::Aborted => return Err(ErrorCode::RoomClosed.into()),
    }
    let event = ctx.event(
        EventType::SessionAccepted,
        Outcome::Success,
        Some(&who.account),
        "the call was accepted",
    );
    let events = room.for_both(event);
    match transition(ctx.db, ctx.now, room, RoomState::Active, None, &events).await? {
        Ok(room) => Ok(json(StatusCode::OK, &room.to_json())),
        Err(room) if room.state.is_live() => Err(ErrorCode::RoomNotRinging.into()),
        Err(_) => Err(ErrorCode::RoomClosed.into()),
    }
}

/// `POST /v1/rooms/{id}/abort`: either side gives up a ringing call, or hangs up an active one.
pub(super) async fn abort<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    who: &Caller,
    id: &str,
) -> Result<Response<Bytes>, Error> {
    let mut room = visible(ctx.db, id, &who.account, ctx.now).await?;
    for _ in 0..TRANSITION_RETRIES {
        let (to, kind, reason, message) = match room.state {
            RoomState::Ringing if room.caller == who.account => (
                RoomState::Aborted,
                EventType::SessionAborted,
                "cancelled",
                "the caller cancelled the call",
            ),
            RoomState::Ringing => (
                RoomState::Aborted,
                EventType::SessionAborted,
                "declined",
                "the invitee declined the call",
            ),
            RoomState::Active => (
                RoomState::Ended,
                EventType::SessionEnded,
                "hangup",
                "a participant ended the call",
            ),
            RoomState::Ended | RoomState::Aborted => return Err(ErrorCode::RoomClosed.into()),
        };
        let event = ctx
            .event(kind, Outcome::Success, Some(&who.account), message)
            .field("reason", reason);
        let events = room.for_both(event);
        match transition(ctx.db, ctx.now, room, to, Some(reason), &events).await? {
            Ok(done) => return Ok(json(StatusCode::OK, &done.to_json())),
            Err(current) => room = current,
        }
    }
    Err(StoreError::Conflict.into())
}

/// `GET /v1/rooms/{id}/ice`: STUN/TURN servers and this participant's TURN credentials.
pub(super) async fn ice_config<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    who: &Caller,
    id: &str,
) -> Result<Response<Bytes>, Error> {
    let room = visible(ctx.db, id, &who.account, ctx.now).await?;
    if !room.state.is_live() {
        return Err(ErrorCode::RoomClosed.into());
    }
    let (Some(turn), Some(secret)) = (&ctx.api.config.turn, &ctx.api.turn_secret) else {
        return Err(ErrorCode::IceUnavailable.into());
    };
    let config = ice::config(turn, secret, &room.id, &who.account, ctx.now);
    let value = serde_json::to_value(&config).map_err(|_| Error::Corrupt("ice config"))?;
    Ok(json(StatusCode::OK, &value))
}

/// The room `id` as `account` may see it: unknown rooms and strangers get 404. A ringing room
/// past its deadline is aborted first.
async fn visible<D: Database>(
    db: &D,
    id: &str,
    account: &str,
    now: Timestamp,
) -> Result<Room, Error> {
    let room = load(db, id)
        .await?
        .filter(|r| r.is_participant(account))
        .ok_or(ErrorCode::NotFound)?;
    expire(db, room, now).await
}

async fn load<D: Database>(db: &D, id: &str) -> Result<Option<Room>, Error> {
    if !is_room_id(id) {
        return Ok(None);
    }
    let rows = db.query(Statement::new(BY_ID, vec![id.into()])).await?;
    match rows.first() {
        None => Ok(None),
        Some(row) => Room::from_row(row).map(Some).ok_or(Error::Corrupt("room")),
    }
}

/// Aborts `room` if it is ringing past its deadline (recorded once, whoever notices first).
async fn expire<D: Database>(db: &D, room: Room, now: Timestamp) -> Result<Room, Error> {
    if room.state != RoomState::Ringing || now.secs() < room.ring_deadline {
        return Ok(room);
    }
    let event = Event::new(
        EventType::SessionAborted,
        Outcome::Success,
        None,
        "nobody answered the call in time",
    )
    .field("reason", "ring_timeout");
    let events = room.for_both(event);
    let reason = Some("ring_timeout");
    Ok(
        match transition(db, now, room, RoomState::Aborted, reason, &events).await? {
            Ok(room) | Err(room) => room,
        },
    )
}

/// Moves `room` to `to` with `events`, in one batch. `Ok` with the moved room, or `Err` with the
/// room as another writer left it when the move is no longer allowed from there.
async fn transition<D: Database>(
    db: &D,
    now: Timestamp,
    mut room: Room,
    to: RoomState,
    reason: Option<&str>,
    events: &[Event],
) -> Result<Result<Room, Room>, Error> {
    let from = room.state;
    for _ in 0..TRANSITION_RETRIES {
        if room.state != from {
            return Ok(Err(room));
        }
        let guard = Statement::new(
            GUARD,
            vec![
                room.id.as_str().into(),
                from.as_str().into(),
                to.as_str().into(),
                now.secs().into(),
            ],
        );
        let change = Statement::new(
            MOVE,
            vec![
                room.id.as_str().into(),
                to.as_str().into(),
                now.secs().into(),
                reason.into(),
            ],
        );
        match audit::try_commit_all(db, now, vec![guard, change], events).await {
            Ok(rows) => {
                let moved = rows
                    .get(1)
                    .and_then(|r| r.first())
                    .and_then(Room::from_row)
                    .ok_or(Error::Corrupt("room"))?;
                tracing::debug!(room = %moved.id, state = to.as_str(), "room moved");
                return Ok(Ok(moved));
            }
            // Another writer moved the room or extended a chain: look again.
            Err(Error::Store(StoreError::Conflict)) => {
                room = load(db, &room.id).await?.ok_or(Error::Corrupt("room"))?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict.into())
}

/// Room ids are 32 lower-case hex digits; anything else names no room.
pub(super) fn is_room_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Helpers for adapters that run a room's signaling channel (WebSockets, Durable Objects).
impl Api {
    /// Verifies an access token (signature, expiry, live session) at `now`: the account id.
    pub async fn verify_access<D: Database>(
        &self,
        db: &D,
        token: &str,
        now: Timestamp,
    ) -> Result<String, Error> {
        super::auth::verify_access(self, db, token, now)
            .await
            .map(|caller| caller.account)
    }

    /// The participants `(caller, invitee)` of room `id` if a channel may open for it now (it
    /// is ringing before its deadline, or active); `None` for unknown or closed rooms.
    pub async fn room_for_socket<D: Database>(
        &self,
        db: &D,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<(String, String)>, Error> {
        let Some(room) = load(db, id).await? else {
            return Ok(None);
        };
        let room = expire(db, room, now).await?;
        Ok(room.state.is_live().then_some((room.caller, room.invitee)))
    }

    /// Records what happened on room `id`'s channel. The invitee joining a ringing room
    /// accepts the call.
    pub async fn record_room_activity<D: Database>(
        &self,
        db: &D,
        id: &str,
        activity: RoomActivity<'_>,
        client: &Client,
        now: Timestamp,
    ) -> Result<(), Error> {
        let address = client.address.map(|a| a.to_string()).unwrap_or_default();
        let event = match activity {
            RoomActivity::Joined { account, resumed } => {
                self.accept_on_join(db, id, account, now).await?;
                Event::new(
                    EventType::RoomJoined,
                    Outcome::Success,
                    Some(account),
                    "joined the call",
                )
                .field("resumed", if resumed { "true" } else { "false" })
            }
            RoomActivity::Left { account, reason } => Event::new(
                EventType::RoomLeft,
                Outcome::Success,
                Some(account),
                "left the call",
            )
            .field("reason", reason),
            RoomActivity::Refused { account, code } => Event::new(
                EventType::ConnectionFailure,
                Outcome::Failure,
                account,
                "the call's channel refused a connection",
            )
            .field("error_code", code)
            .field("method", "room_channel"),
        };
        let event = event.room(id).field("client_address", address);
        audit::record(db, now, &event).await
    }

    async fn accept_on_join<D: Database>(
        &self,
        db: &D,
        id: &str,
        account: &str,
        now: Timestamp,
    ) -> Result<(), Error> {
        let Some(room) = load(db, id).await? else {
            return Ok(());
        };
        if room.state != RoomState::Ringing || room.invitee != account {
            return Ok(());
        }
        let event = Event::new(
            EventType::SessionAccepted,
            Outcome::Success,
            Some(account),
            "the call was accepted by joining it",
        );
        let events = room.for_both(event);
        transition(db, now, room, RoomState::Active, None, &events)
            .await
            .map(drop)
    }

    /// The room's channel is over: a ringing room is aborted, an active one ended, each with
    /// its record in both chains. `reason` is the channel's end reason. Closed rooms stay as
    /// they are.
    pub async fn close_room<D: Database>(
        &self,
        db: &D,
        id: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), Error> {
        let Some(mut room) = load(db, id).await? else {
            return Ok(());
        };
        for _ in 0..TRANSITION_RETRIES {
            let (to, kind, message) = match room.state {
                RoomState::Ringing => (
                    RoomState::Aborted,
                    EventType::SessionAborted,
                    "the call was given up before it was accepted",
                ),
                RoomState::Active => (RoomState::Ended, EventType::SessionEnded, "the call ended"),
                RoomState::Ended | RoomState::Aborted => return Ok(()),
            };
            let event = Event::new(kind, Outcome::Success, None, message).field("reason", reason);
            let events = room.for_both(event);
            match transition(db, now, room, to, Some(reason), &events).await? {
                Ok(_) => return Ok(()),
                Err(current) => room = current,
            }
        }
        Err(StoreError::Conflict.into())
    }

    /// Whether `id` could name a room (so adapters can refuse other paths before any lookup).
    pub fn is_room_id(id: &str) -> bool {
        is_room_id(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_are_32_lower_hex_digits() {
        assert!(is_room_id("0123456789abcdef0123456789abcdef"));
        assert!(!is_room_id("0123456789ABCDEF0123456789abcdef"));
        assert!(!is_room_id("0123456789abcdef"));
        assert!(!is_room_id("../../../../etc/passwd/0123456789"));
        assert!(!is_room_id(""));
    }

    #[test]
    fn states_round_trip() {
        for state in [
            RoomState::Ringing,
            RoomState::Active,
            RoomState::Ended,
            RoomState::Aborted,
        ] {
            assert_eq!(RoomState::parse(state.as_str()), Some(state));
        }
        assert_eq!(RoomState::parse("open"), None);
    }
}
