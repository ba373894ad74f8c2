//! A deterministic harness around one room: simulated time, scripted browsers, and a token
//! verifier, with the drive loop run exactly as a host would run it.

#![allow(dead_code)] // Each test file uses a different part of the harness.

use std::collections::HashMap;
use std::time::Duration;

use bedside_signaling::{
    AuditEvent, AuditKind, Config, ConnId, Instant, Output, Room, RoomId, UserId,
};
use serde_json::{Value, json};

/// A well-formed DTLS fingerprint line.
pub const FINGERPRINT: &str = "a=fingerprint:sha-256 \
    5D:7A:1B:9E:06:2C:44:AF:10:3B:77:E8:C2:91:D4:0F:88:5A:E3:21:6B:CC:07:9D:F1:32:4E:A8:1C:60:B5:DE";

/// A browser-like SDP with the given extra lines (fingerprint and setup are up to the caller).
pub fn sdp(lines: &[&str]) -> String {
    let mut sdp = String::from(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\na=mid:0\r\n",
    );
    for line in lines {
        sdp.push_str(line);
        sdp.push_str("\r\n");
    }
    sdp
}

pub fn offer_sdp() -> String {
    sdp(&[FINGERPRINT, "a=setup:actpass", "a=rtpmap:111 opus/48000/2"])
}

pub fn answer_sdp() -> String {
    sdp(&[FINGERPRINT, "a=setup:active", "a=rtpmap:111 opus/48000/2"])
}

pub fn candidate(n: u32) -> Value {
    json!({
        "v": 1,
        "type": "candidate",
        "candidate": format!("candidate:{n} 1 udp 2122260223 127.0.0.1 {} typ host", 50000 + n),
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": "EsAw",
    })
}

pub fn chat(text: &str) -> Value {
    json!({"v": 1, "type": "chat", "text": text})
}

/// What one connection has seen.
#[derive(Debug, Default)]
pub struct Client {
    /// Frames received and not yet taken by the test.
    pub inbox: Vec<Value>,
    /// Close code and reason, once closed.
    pub closed: Option<(u16, &'static str)>,
    /// Highest `seq` received on this connection.
    pub last_seq: Option<u64>,
}

pub struct Harness {
    pub room: Room,
    pub now: Instant,
    pub audits: Vec<AuditEvent>,
    pub next_timeout: Option<Instant>,
    pub done: bool,
    /// Answer pings with a `pong` that acknowledges everything received.
    pub ack_pings: bool,
    /// Answer `VerifyToken` at once (otherwise verifications queue in `pending_verifications`).
    pub auto_verify: bool,
    pub pending_verifications: Vec<(ConnId, String)>,
    clients: HashMap<ConnId, Client>,
    tokens: HashMap<&'static str, &'static str>,
}

impl Harness {
    /// A room `r1` for alice (clinician) and bob (patient); carol has a valid account but is
    /// not a participant; dave is a participant only where a test adds him.
    pub fn new(config: Config) -> Self {
        Self::with_participants(config, &["alice", "bob"])
    }

    pub fn with_participants(config: Config, participants: &[&str]) -> Self {
        let now = Instant::from_millis(1_000_000);
        let users = participants.iter().map(|u| UserId::new(*u));
        let Ok(room) = Room::new(RoomId::new("r1"), users, config, now) else {
            panic!("the test config must be valid");
        };
        let tokens = [
            ("tok-alice", "alice"),
            ("tok-bob", "bob"),
            ("tok-carol", "carol"),
            ("tok-dave", "dave"),
        ];
        let mut harness = Self {
            room,
            now,
            audits: Vec::new(),
            next_timeout: None,
            done: false,
            auto_verify: true,
            ack_pings: true,
            pending_verifications: Vec::new(),
            clients: HashMap::new(),
            tokens: tokens.into_iter().collect(),
        };
        harness.drain();
        harness
    }

    /// Opens a connection (no hello yet).
    pub fn open(&mut self) -> ConnId {
        let conn = self.room.handle_open(self.now);
        self.clients.insert(conn, Client::default());
        self.drain();
        conn
    }

    /// Opens a connection and says hello with this token.
    pub fn connect(&mut self, token: &str, resume: Option<u64>) -> ConnId {
        let conn = self.open();
        self.send(
            conn,
            json!({"v": 1, "type": "hello", "token": token, "resume": resume}),
        );
        conn
    }

    /// Connects `user` afresh and returns the connection, asserting the welcome.
    pub fn join(&mut self, user: &str) -> ConnId {
        let conn = self.connect(&format!("tok-{user}"), None);
        let welcome = self.take(conn);
        assert_eq!(
            welcome.first().map(|f| f["type"].clone()),
            Some(json!("welcome")),
            "{welcome:?}"
        );
        assert_eq!(
            welcome.first().map(|f| f["user"].clone()),
            Some(json!(user))
        );
        conn
    }

    pub fn send(&mut self, conn: ConnId, message: Value) {
        self.text(conn, &message.to_string());
    }

    pub fn text(&mut self, conn: ConnId, text: &str) {
        self.room.handle_text(self.now, conn, text);
        self.drain();
    }

    /// The transport under `conn` dropped.
    pub fn drop_conn(&mut self, conn: ConnId) {
        self.room.handle_closed(self.now, conn);
        self.drain();
    }

    /// Moves simulated time forward by `by`, firing every timeout on the way, in order.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        for _ in 0..100_000 {
            match self.next_timeout {
                Some(at) if at <= target => {
                    self.now = self.now.max(at);
                    self.room.handle_timeout(self.now);
                    self.drain();
                }
                _ => break,
            }
        }
        self.now = target;
    }

    /// Like `advance`, answering every `ping` on `conns` with a `pong` acknowledging what
    /// they received, the way a live browser would.
    pub fn advance_alive(&mut self, by: Duration, conns: &[ConnId]) {
        let target = self.now + by;
        while self.now < target {
            let step = (target - self.now).min(Duration::from_secs(1));
            self.advance(step);
            for &conn in conns {
                let pinged = self.clients.get(&conn).is_some_and(|c| {
                    c.closed.is_none() && c.inbox.iter().any(|f| f["type"] == "ping")
                });
                if pinged {
                    let Some(client) = self.clients.get_mut(&conn) else {
                        continue;
                    };
                    client.inbox.retain(|f| f["type"] != "ping");
                    let ack = if self.ack_pings {
                        client.last_seq
                    } else {
                        None
                    };
                    self.send(conn, json!({"v": 1, "type": "pong", "ack": ack}));
                }
            }
        }
    }

    /// Verifies queued tokens now (when `auto_verify` is off).
    pub fn verify_pending(&mut self) {
        for (conn, token) in std::mem::take(&mut self.pending_verifications) {
            self.answer_verification(conn, &token);
        }
        self.drain();
    }

    /// Runs the drive loop: drains `poll_output` until `Timeout` or `Done`, checking what a
    /// host relies on (valid JSON, increasing `seq` per connection, nothing after `Close`).
    pub fn drain(&mut self) {
        for _ in 0..1_000_000 {
            match self.room.poll_output() {
                Output::Send { conn, frame } => {
                    let client = self.clients.entry(conn).or_default();
                    assert!(
                        client.closed.is_none(),
                        "frame after close on {conn}: {}",
                        frame.as_str()
                    );
                    let value: Value = match serde_json::from_str(frame.as_str()) {
                        Ok(value) => value,
                        Err(e) => panic!("invalid JSON frame {:?}: {e}", frame.as_str()),
                    };
                    assert_eq!(value["v"], 1);
                    if value["type"] == "welcome" {
                        client.last_seq = value["last_seq"].as_u64();
                    }
                    if let Some(seq) = value["seq"].as_u64() {
                        if let Some(last) = client.last_seq {
                            assert!(seq > last, "seq {seq} after {last} on {conn}");
                        }
                        client.last_seq = Some(seq);
                    }
                    client.inbox.push(value);
                }
                Output::Close { conn, code, reason } => {
                    let client = self.clients.entry(conn).or_default();
                    assert!(client.closed.is_none(), "closed twice: {conn}");
                    client.closed = Some((code.as_u16(), reason.as_str()));
                    // A host closes the socket; reporting it back must be harmless.
                    self.room.handle_closed(self.now, conn);
                }
                Output::VerifyToken { conn, token } => {
                    if self.auto_verify {
                        self.answer_verification(conn, token.expose());
                    } else {
                        self.pending_verifications
                            .push((conn, token.expose().to_owned()));
                    }
                }
                Output::Audit(event) => {
                    assert_eq!(event.room.as_str(), "r1");
                    assert_eq!(event.at, self.now);
                    self.audits.push(event);
                }
                Output::Timeout(at) => {
                    assert!(at >= self.now || at == self.now, "timeout in the past");
                    self.next_timeout = Some(at);
                    return;
                }
                Output::Done => {
                    self.done = true;
                    self.next_timeout = None;
                    return;
                }
                other => panic!("unexpected output {other:?}"),
            }
        }
        panic!("the room never stopped producing output");
    }

    fn answer_verification(&mut self, conn: ConnId, token: &str) {
        match self.tokens.get(token) {
            Some(user) => self
                .room
                .handle_token_verified(self.now, conn, UserId::new(*user)),
            None => self.room.handle_token_rejected(self.now, conn),
        }
    }

    /// Takes the frames `conn` received so far.
    pub fn take(&mut self, conn: ConnId) -> Vec<Value> {
        self.clients
            .get_mut(&conn)
            .map(|c| std::mem::take(&mut c.inbox))
            .unwrap_or_default()
    }

    /// Takes the frames and returns their types.
    pub fn take_types(&mut self, conn: ConnId) -> Vec<String> {
        self.take(conn)
            .iter()
            .map(|f| f["type"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    pub fn closed(&self, conn: ConnId) -> Option<(u16, &'static str)> {
        self.clients.get(&conn).and_then(|c| c.closed)
    }

    pub fn last_seq(&self, conn: ConnId) -> Option<u64> {
        self.clients.get(&conn).and_then(|c| c.last_seq)
    }

    /// Takes the audit events recorded so far, by name.
    pub fn take_audits(&mut self) -> Vec<AuditKind> {
        std::mem::take(&mut self.audits)
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    /// Alice and bob in a call, their joins already consumed.
    pub fn call(config: Config) -> (Self, ConnId, ConnId) {
        let mut h = Self::new(config);
        let alice = h.join("alice");
        let bob = h.join("bob");
        assert_eq!(h.take_types(alice), ["presence"]);
        h.take_audits();
        (h, alice, bob)
    }
}
