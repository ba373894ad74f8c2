//! Rooms over WebSockets: one tokio task (the room's actor) per live room drives a
//! [`bedside_signaling::Room`]; each connection has one task that reads its socket and writes
//! what the actor queued for it.
//!
//! ```text
//!  socket ⇄ connection task ──Cmd──▶ room actor
//!                 ▲                  │  │  ▲
//!                 └──────── Out ─────┘  │  └── Cmd::Verified ◀── token check (core)
//!                                       └──▶ audit writer (core, one for the host, in order)
//! ```
//!
//! The actor is the only owner of the room: it feeds inputs with the time since the registry
//! started, drains outputs, and sleeps until the room's next deadline. A writer that cannot keep
//! up (its queue is full) loses its connection rather than stalling the room. Audit records and
//! the room's end go to the store through the core, one at a time, in the order the room
//! reported them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bedside_core::api::{Api, Client, RoomActivity};
use bedside_signaling::{AuditKind, Config, ConnId, Frame, Instant, Output, Room, RoomId, UserId};
use bytes::Bytes;
use futures_util::SinkExt as _;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, trace, warn};

use crate::db::Sqlite;
use crate::server::now as wall_clock;

/// Commands queued for a room's actor. Readers wait when it is full (backpressure to the
/// client's TCP window).
const ROOM_QUEUE: usize = 1024;
/// Commands an actor takes in before carrying out what they caused.
const BATCH: usize = 64;
/// Frames queued for one connection's writer before it counts as too slow and is dropped.
const CONN_QUEUE: usize = 1024;

/// The live rooms of this host.
#[derive(Clone, Debug)]
pub struct Rooms {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    live: Mutex<HashMap<String, Handle>>,
    config: Config,
    epoch: tokio::time::Instant,
    next_generation: AtomicU64,
    audit: OnceLock<mpsc::UnboundedSender<(RoomId, Job)>>,
}

#[derive(Debug, Clone)]
struct Handle {
    generation: u64,
    tx: mpsc::Sender<Cmd>,
}

/// What the actor is told.
#[derive(Debug)]
enum Cmd {
    /// Boxed: it is rare, and the queue's slots are sized by the largest command.
    Open(Box<Open>),
    Text {
        conn: ConnId,
        text: Utf8Bytes,
    },
    Binary {
        conn: ConnId,
    },
    Closed {
        conn: ConnId,
    },
    Verified {
        conn: ConnId,
        user: Option<String>,
    },
    End,
}

#[derive(Debug)]
struct Open {
    out: mpsc::Sender<Out>,
    address: Option<IpAddr>,
    reply: oneshot::Sender<ConnId>,
}

/// What a connection task is told to send.
#[derive(Debug)]
enum Out {
    Text(Frame),
    Close(u16, &'static str),
}

/// An audit job, in the order the room reported it.
#[derive(Debug)]
enum Job {
    Joined {
        user: UserId,
        resumed: bool,
        address: Option<IpAddr>,
    },
    Left {
        user: UserId,
        reason: &'static str,
    },
    Refused {
        user: Option<UserId>,
        code: &'static str,
        address: Option<IpAddr>,
    },
    End {
        reason: &'static str,
    },
}

/// What the actor needs from the rest of the host.
#[derive(Debug, Clone)]
pub struct Backend {
    /// The core, for token checks and audit records.
    pub api: Arc<Api>,
    /// The store.
    pub db: Sqlite,
}

impl Rooms {
    /// A registry whose rooms run with `config`.
    pub fn new(config: Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                live: Mutex::new(HashMap::new()),
                config,
                epoch: tokio::time::Instant::now(),
                next_generation: AtomicU64::new(1),
                audit: OnceLock::new(),
            }),
        }
    }

    /// The room limits in force (the WebSocket frame limit is set a little above
    /// `max_message_bytes`).
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Rooms with a running actor.
    pub fn live_count(&self) -> usize {
        self.inner.live.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// Ends room `id` if it is live (the call was ended over HTTP).
    pub async fn end(&self, id: &str) {
        let handle = self.inner.live.lock().ok().and_then(|l| l.get(id).cloned());
        if let Some(handle) = handle {
            let _ = handle.tx.send(Cmd::End).await;
        }
    }

    /// Serves one upgraded connection to room `id`, whose participants the core confirmed.
    pub async fn serve(
        &self,
        backend: Backend,
        id: String,
        participants: (String, String),
        mut socket: WebSocket,
        address: Option<IpAddr>,
    ) {
        let (out_tx, mut out_rx) = mpsc::channel(CONN_QUEUE);
        let Some((tx, conn)) = self
            .open(&backend, &id, participants, out_tx, address)
            .await
        else {
            return;
        };
        loop {
            tokio::select! {
                message = socket.recv() => {
                    let cmd = match message {
                        Some(Ok(Message::Text(text))) => Cmd::Text { conn, text },
                        Some(Ok(Message::Binary(_))) => Cmd::Binary { conn },
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    };
                    if tx.send(cmd).await.is_err() {
                        return;
                    }
                }
                out = out_rx.recv() => {
                    let Some(out) = out else {
                        // The actor forgot this connection (the room ended).
                        let _ = socket.close().await;
                        return;
                    };
                    if !write(&mut socket, out, &mut out_rx).await {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(Cmd::Closed { conn }).await;
    }

    /// Registers a connection with the room's actor, starting one if none runs.
    async fn open(
        &self,
        backend: &Backend,
        id: &str,
        participants: (String, String),
        out: mpsc::Sender<Out>,
        address: Option<IpAddr>,
    ) -> Option<(mpsc::Sender<Cmd>, ConnId)> {
        // An actor may be exiting between our lookup and our command: then start a fresh one.
        for _ in 0..3 {
            let tx = self.actor(backend, id, &participants)?;
            let (reply, conn) = oneshot::channel();
            let open = Cmd::Open(Box::new(Open {
                out: out.clone(),
                address,
                reply,
            }));
            if tx.send(open).await.is_err() {
                continue;
            }
            if let Ok(conn) = conn.await {
                return Some((tx, conn));
            }
        }
        None
    }

    fn actor(
        &self,
        backend: &Backend,
        id: &str,
        participants: &(String, String),
    ) -> Option<mpsc::Sender<Cmd>> {
        let mut live = self.inner.live.lock().ok()?;
        if let Some(handle) = live.get(id).filter(|h| !h.tx.is_closed()) {
            return Some(handle.tx.clone());
        }
        let users = [
            UserId::new(participants.0.as_str()),
            UserId::new(participants.1.as_str()),
        ];
        let room = match Room::new(
            RoomId::new(id),
            users,
            self.inner.config.clone(),
            self.now(),
        ) {
            Ok(room) => room,
            Err(error) => {
                warn!(room = %id, %error, "room could not be created");
                return None;
            }
        };
        let (tx, rx) = mpsc::channel(ROOM_QUEUE);
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        live.insert(
            id.to_owned(),
            Handle {
                generation,
                tx: tx.clone(),
            },
        );
        let actor = Actor {
            rooms: self.clone(),
            backend: backend.clone(),
            generation,
            room,
            tx: tx.clone(),
            conns: HashMap::new(),
            audit: self
                .inner
                .audit
                .get_or_init(|| spawn_auditor(backend.clone()))
                .clone(),
        };
        tokio::spawn(actor.run(rx));
        debug!(room = %id, "room actor started");
        Some(tx)
    }

    fn now(&self) -> Instant {
        Instant::from_duration(self.inner.epoch.elapsed())
    }

    fn deadline(&self, at: Instant) -> tokio::time::Instant {
        self.inner.epoch + Duration::from_millis(at.as_millis())
    }

    fn forget(&self, id: &str, generation: u64) {
        if let Ok(mut live) = self.inner.live.lock()
            && live.get(id).is_some_and(|h| h.generation == generation)
        {
            live.remove(id);
        }
    }
}

struct Actor {
    rooms: Rooms,
    backend: Backend,
    generation: u64,
    room: Room,
    tx: mpsc::Sender<Cmd>,
    conns: HashMap<ConnId, Conn>,
    audit: mpsc::UnboundedSender<(RoomId, Job)>,
}

struct Conn {
    out: mpsc::Sender<Out>,
    address: Option<IpAddr>,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let id = self.room.id().to_string();
        while let Some(deadline) = self.drain() {
            let sleep = tokio::time::sleep_until(self.rooms.deadline(deadline));
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else {
                        break;
                    };
                    // Take what else is queued before draining, so bursts cost one drain.
                    let now = self.rooms.now();
                    self.handle(now, cmd);
                    for _ in 1..BATCH {
                        let Ok(cmd) = rx.try_recv() else {
                            break;
                        };
                        self.handle(now, cmd);
                    }
                }
                () = sleep => self.room.handle_timeout(self.rooms.now()),
            }
        }
        self.rooms.forget(&id, self.generation);
        debug!(room = %id, "room actor stopped");
    }

    fn handle(&mut self, now: Instant, cmd: Cmd) {
        match cmd {
            Cmd::Open(open) => {
                let Open {
                    out,
                    address,
                    reply,
                } = *open;
                let conn = self.room.handle_open(now);
                self.conns.insert(conn, Conn { out, address });
                if reply.send(conn).is_err() {
                    self.conns.remove(&conn);
                    self.room.handle_closed(now, conn);
                }
            }
            Cmd::Text { conn, text } => self.room.handle_text(now, conn, text.as_str()),
            Cmd::Binary { conn } => self.room.handle_binary(now, conn),
            Cmd::Closed { conn } => {
                self.conns.remove(&conn);
                self.room.handle_closed(now, conn);
            }
            Cmd::Verified {
                conn,
                user: Some(user),
            } => self
                .room
                .handle_token_verified(now, conn, UserId::new(user)),
            Cmd::Verified { conn, user: None } => self.room.handle_token_rejected(now, conn),
            Cmd::End => self.room.handle_end(now),
        }
    }

    /// Carries out what the room asks until it waits: its next deadline, or `None` when done.
    fn drain(&mut self) -> Option<Instant> {
        loop {
            match self.room.poll_output() {
                Output::Send { conn, frame } => self.send(conn, Out::Text(frame)),
                Output::Close { conn, code, reason } => {
                    self.send(conn, Out::Close(code.as_u16(), reason.as_str()));
                    self.conns.remove(&conn);
                }
                Output::VerifyToken { conn, token } => {
                    let backend = self.backend.clone();
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        let user = backend
                            .api
                            .verify_access(&backend.db, token.expose(), wall_clock())
                            .await
                            .ok();
                        let _ = tx.send(Cmd::Verified { conn, user }).await;
                    });
                }
                Output::Audit(event) => {
                    if let Some(job) = self.job(event.kind) {
                        let _ = self.audit.send((self.room.id().clone(), job));
                    }
                }
                Output::Timeout(at) => return Some(at),
                Output::Done => return None,
                _ => {}
            }
        }
    }

    fn send(&mut self, conn: ConnId, out: Out) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.out.try_send(out).is_err() {
            warn!(room = %self.room.id(), %conn, queue = CONN_QUEUE, "connection too slow: dropped");
            self.conns.remove(&conn);
            self.room.handle_closed(self.rooms.now(), conn);
        }
    }

    fn address(&self, conn: ConnId) -> Option<IpAddr> {
        self.conns.get(&conn).and_then(|c| c.address)
    }

    fn job(&self, kind: AuditKind) -> Option<Job> {
        Some(match kind {
            AuditKind::ParticipantJoined {
                user,
                conn,
                resumed,
            } => Job::Joined {
                user,
                resumed,
                address: self.address(conn),
            },
            AuditKind::ParticipantLeft { user, reason } => Job::Left {
                user,
                reason: reason.as_str(),
            },
            AuditKind::TokenRejected { conn } => Job::Refused {
                user: None,
                code: "invalid_token",
                address: self.address(conn),
            },
            AuditKind::NotParticipant { user, conn } => Job::Refused {
                user: Some(user),
                code: "not_participant",
                address: self.address(conn),
            },
            AuditKind::RoomFull { user, .. } => Job::Refused {
                user: Some(user),
                code: "room_full",
                address: None,
            },
            AuditKind::AbuseClosed { conn, user, .. } => Job::Refused {
                user,
                code: "policy_violation",
                address: self.address(conn),
            },
            AuditKind::RoomEnded { reason } => Job::End {
                reason: reason.as_str(),
            },
            _ => return None,
        })
    }
}

/// Writes the rooms' audit jobs to the store, one after the other, in the order reported.
fn spawn_auditor(backend: Backend) -> mpsc::UnboundedSender<(RoomId, Job)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(RoomId, Job)>();
    tokio::spawn(async move {
        while let Some((room, job)) = rx.recv().await {
            let id = room.as_str();
            let db = &backend.db;
            let api = &backend.api;
            let now = wall_clock();
            let client = |address| Client { address };
            let result = match &job {
                Job::Joined {
                    user,
                    resumed,
                    address,
                } => {
                    let activity = RoomActivity::Joined {
                        account: user.as_str(),
                        resumed: *resumed,
                    };
                    api.record_room_activity(db, id, activity, &client(*address), now)
                        .await
                }
                Job::Left { user, reason } => {
                    let activity = RoomActivity::Left {
                        account: user.as_str(),
                        reason,
                    };
                    api.record_room_activity(db, id, activity, &client(None), now)
                        .await
                }
                Job::Refused {
                    user,
                    code,
                    address,
                } => {
                    let activity = RoomActivity::Refused {
                        account: user.as_ref().map(UserId::as_str),
                        code,
                    };
                    api.record_room_activity(db, id, activity, &client(*address), now)
                        .await
                }
                Job::End { reason } => api.close_room(db, id, reason, now).await,
            };
            match result {
                Ok(()) => trace!(room = %id, "audit record written"),
                Err(error) => {
                    tracing::error!(room = %id, %error, "room audit record could not be written");
                }
            }
        }
    });
    tx
}

/// Sends `first` and whatever else is already queued, then flushes once. `false` when the
/// connection is over (closed by the room, or the socket failed).
async fn write(socket: &mut WebSocket, first: Out, rx: &mut mpsc::Receiver<Out>) -> bool {
    let mut next = Some(first);
    while let Some(out) = next.take() {
        match out {
            Out::Text(frame) => {
                let Ok(text) = Utf8Bytes::try_from(Bytes::from_owner(frame)) else {
                    continue;
                };
                if socket.feed(Message::Text(text)).await.is_err() {
                    return false;
                }
            }
            Out::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return false;
            }
        }
        next = rx.try_recv().ok();
    }
    socket.flush().await.is_ok()
}
