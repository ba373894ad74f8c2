//! Relay throughput through the state machine alone (no sockets). Not run by default:
//! `cargo test --release -p bedside-signaling --test throughput -- --ignored --nocapture`.

use std::time::Duration;

use bedside_signaling::{Config, Instant, Output, Room, RoomId, UserId};

#[test]
#[ignore = "a measurement, run in release mode by hand"]
fn relay_throughput() {
    let mut config = Config::default();
    config.rate_per_second = u32::MAX / 2;
    config.rate_burst = u32::MAX / 2;
    let users = [UserId::new("alice"), UserId::new("bob")];
    let mut now = Instant::from_millis(1);
    let mut room = Room::new(RoomId::new("bench"), users, config, now).unwrap();
    let mut conns = Vec::new();
    for token in ["alice", "bob"] {
        let conn = room.handle_open(now);
        room.handle_text(
            now,
            conn,
            &format!(r#"{{"v":1,"type":"hello","token":"{token}"}}"#),
        );
        conns.push(conn);
    }
    let mut joined = 0;
    loop {
        match room.poll_output() {
            Output::VerifyToken { conn, token } => {
                room.handle_token_verified(now, conn, UserId::new(token.expose()));
            }
            Output::Audit(_) => joined += 1,
            Output::Timeout(_) | Output::Done => break,
            _ => {}
        }
    }
    assert_eq!(joined, 2);
    let (alice, bob) = (conns[0], conns[1]);
    let candidate = r#"{"v":1,"type":"candidate","candidate":"candidate:842163049 1 udp 1677729535 127.0.0.1 50000 typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag EsAw network-cost 999","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"EsAw"}"#;

    let messages = 500_000u64;
    #[allow(clippy::disallowed_methods)] // Wall-clock time is what this test measures.
    let started = std::time::Instant::now();
    let mut sent = 0u64;
    for n in 0..messages {
        room.handle_text(now, alice, candidate);
        if n % 100 == 99 {
            now = now + Duration::from_millis(1);
            let ack = format!(r#"{{"v":1,"type":"pong","ack":{}}}"#, n + 2);
            room.handle_text(now, bob, &ack);
        }
        loop {
            match room.poll_output() {
                Output::Send { .. } => sent += 1,
                Output::Timeout(_) | Output::Done => break,
                _ => {}
            }
        }
    }
    let elapsed = started.elapsed();
    assert!(sent >= messages);
    println!(
        "{messages} candidates relayed in {elapsed:?}: {:.0} messages/s",
        messages as f64 / elapsed.as_secs_f64()
    );
}
