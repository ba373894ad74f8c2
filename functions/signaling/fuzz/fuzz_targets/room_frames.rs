//! A room with two joined participants fed arbitrary frames, drops and time steps: it must
//! never panic, every frame it sends must be valid JSON, and nothing is sent on a connection
//! after its close.
//!
//! Input: records separated by 0xFF. A record's first byte picks the action (low bit: alice or
//! bob; bits 1-2: text frame, advance time, drop and resume, binary frame); the rest is the
//! frame text.

#![no_main]

use std::collections::HashSet;
use std::time::Duration;

use bedside_signaling::{Config, ConnId, Instant, Output, Room, RoomId, UserId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::from_millis(1);
    let users = [UserId::new("alice"), UserId::new("bob")];
    let Ok(mut room) = Room::new(RoomId::new("fuzz"), users, Config::default(), now) else {
        return;
    };
    let mut closed = HashSet::new();
    let mut conns = [room.handle_open(now), room.handle_open(now)];
    room.handle_text(now, conns[0], r#"{"v":1,"type":"hello","token":"alice"}"#);
    room.handle_text(now, conns[1], r#"{"v":1,"type":"hello","token":"bob"}"#);
    drain(&mut room, now, &mut closed);

    for record in data.split(|b| *b == 0xff) {
        let Some((&action, rest)) = record.split_first() else {
            continue;
        };
        let who = usize::from(action & 1);
        match (action >> 1) & 3 {
            0 => {
                if let Ok(text) = std::str::from_utf8(rest) {
                    room.handle_text(now, conns[who], text);
                }
            }
            1 => {
                let millis = rest
                    .iter()
                    .take(3)
                    .fold(0u64, |acc, b| acc * 256 + u64::from(*b));
                now = now + Duration::from_millis(millis);
                room.handle_timeout(now);
            }
            2 => {
                room.handle_closed(now, conns[who]);
                closed.insert(conns[who]);
                drain(&mut room, now, &mut closed);
                conns[who] = room.handle_open(now);
                let user = if who == 0 { "alice" } else { "bob" };
                let resume = rest.first().map_or("null".to_owned(), |b| b.to_string());
                let hello =
                    format!(r#"{{"v":1,"type":"hello","token":"{user}","resume":{resume}}}"#);
                room.handle_text(now, conns[who], &hello);
            }
            _ => room.handle_binary(now, conns[who]),
        }
        drain(&mut room, now, &mut closed);
    }
});

fn drain(room: &mut Room, now: Instant, closed: &mut HashSet<ConnId>) {
    let mut verify: Vec<(ConnId, String)> = Vec::new();
    loop {
        match room.poll_output() {
            Output::Send { conn, frame } => {
                assert!(!closed.contains(&conn), "frame after close on {conn}");
                let value: Result<serde_json::Value, _> = serde_json::from_str(frame.as_str());
                assert!(value.is_ok(), "invalid frame: {:?}", frame.as_str());
            }
            Output::Close { conn, .. } => assert!(closed.insert(conn), "{conn} closed twice"),
            Output::VerifyToken { conn, token } => verify.push((conn, token.expose().to_owned())),
            Output::Timeout(at) => {
                assert!(at >= now);
                if verify.is_empty() {
                    return;
                }
                for (conn, user) in verify.drain(..) {
                    room.handle_token_verified(now, conn, UserId::new(user));
                }
            }
            Output::Done => return,
            _ => {}
        }
    }
}
