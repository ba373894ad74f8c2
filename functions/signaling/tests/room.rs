//! Room behaviour end to end through the public API, on simulated time.

mod common;

use std::time::Duration;

use bedside_signaling::{AuditKind, Config, EndReason, LeaveReason, UserId};
use common::{Harness, answer_sdp, candidate, chat, offer_sdp, sdp};
use serde_json::{Value, json};

fn user(id: &str) -> UserId {
    UserId::new(id)
}

fn config(change: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::default();
    change(&mut config);
    config
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn full_call_setup_relays_offer_answer_candidates_and_chat() {
    let mut h = Harness::new(Config::default());
    let alice = h.connect("tok-alice", None);
    let welcome = h.take(alice);
    assert_eq!(welcome.len(), 1);
    assert_eq!(welcome[0]["type"], "welcome");
    assert_eq!(welcome[0]["room"], "r1");
    assert_eq!(welcome[0]["user"], "alice");
    assert_eq!(welcome[0]["resumed"], false);
    assert_eq!(welcome[0]["peers"], json!([]));
    assert_eq!(welcome[0]["ping_interval_ms"], 20_000);

    let bob = h.connect("tok-bob", None);
    let welcome = h.take(bob);
    assert_eq!(
        welcome[0]["peers"],
        json!([{"user": "alice", "state": "connected"}])
    );
    let presence = h.take(alice);
    assert_eq!(
        presence,
        [json!({"v": 1, "seq": 1, "type": "presence", "user": "bob", "state": "joined"})]
    );

    h.send(alice, json!({"v": 1, "type": "offer", "sdp": offer_sdp()}));
    let offer = h.take(bob);
    assert_eq!(
        offer,
        [json!({"v": 1, "seq": 2, "type": "offer", "from": "alice", "sdp": offer_sdp()})]
    );
    assert!(
        h.take(alice).is_empty(),
        "nothing echoes back to the sender"
    );

    h.send(bob, json!({"v": 1, "type": "answer", "sdp": answer_sdp()}));
    let answer = h.take(alice);
    assert_eq!(answer[0]["type"], "answer");
    assert_eq!(answer[0]["from"], "bob");
    assert_eq!(answer[0]["sdp"], answer_sdp());

    for n in 0..3 {
        h.send(alice, candidate(n));
        h.send(bob, candidate(10 + n));
    }
    h.send(alice, json!({"v": 1, "type": "end_of_candidates"}));
    h.send(bob, json!({"v": 1, "type": "end_of_candidates"}));
    let to_bob = h.take(bob);
    let to_alice = h.take(alice);
    assert_eq!(to_bob.len(), 4);
    assert_eq!(to_alice.len(), 4);
    let expected = candidate(1);
    assert_eq!(to_bob[1]["candidate"], expected["candidate"]);
    assert_eq!(to_bob[1]["sdpMid"], "0");
    assert_eq!(to_bob[1]["sdpMLineIndex"], 0);
    assert_eq!(to_bob[1]["usernameFragment"], "EsAw");
    assert_eq!(
        to_bob[3],
        json!({"v": 1, "seq": to_bob[3]["seq"], "type": "end_of_candidates", "from": "alice"})
    );
    assert_eq!(to_alice[0]["candidate"], candidate(10)["candidate"]);

    let text = "Bonjour, docteur ☺ — \"ligne 1\"\nligne 2";
    h.send(bob, chat(text));
    let said = h.take(alice);
    assert_eq!(said[0]["type"], "chat");
    assert_eq!(said[0]["from"], "bob");
    assert_eq!(said[0]["text"], text);

    let seqs: Vec<u64> = [&to_alice[..], &said[..]]
        .concat()
        .iter()
        .filter_map(|f| f["seq"].as_u64())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(
        h.take_audits(),
        [
            AuditKind::ParticipantJoined {
                user: user("alice"),
                conn: alice,
                resumed: false
            },
            AuditKind::ParticipantJoined {
                user: user("bob"),
                conn: bob,
                resumed: false
            },
        ]
    );
    assert!(h.closed(alice).is_none() && h.closed(bob).is_none());
}

#[test]
fn relayed_frames_carry_only_known_fields() {
    let (mut h, alice, bob) = Harness::call(Config::default());
    let mut message = chat("hi");
    message["from"] = json!("mallory");
    message["seq"] = json!(999);
    message["admin"] = json!(true);
    h.send(alice, message);
    let got = h.take(bob);
    assert_eq!(got[0]["from"], "alice");
    assert_ne!(got[0]["seq"], 999);
    assert_eq!(got[0].get("admin"), None);
}

#[test]
fn reconnect_with_resume_delivers_everything_missed_exactly_once() {
    let (mut h, alice, bob) = Harness::call(Config::default());
    h.send(alice, json!({"v": 1, "type": "offer", "sdp": offer_sdp()}));
    let seen = h.take(bob);
    let last_seen = seen[0]["seq"].as_u64().unwrap();

    // Frames sent to bob's old connection that never reached him (the network changed).
    h.send(alice, candidate(1));
    h.send(alice, candidate(2));
    h.take(bob);
    h.drop_conn(bob);
    assert_eq!(h.take(alice)[0]["state"], "reconnecting");

    // Alice keeps talking while bob is away.
    h.send(alice, candidate(3));
    h.send(alice, chat("are you there?"));
    assert!(
        h.take(alice).is_empty(),
        "bob is still in the room: no no_peer error"
    );

    h.advance_alive(secs(5), &[alice]);
    let bob2 = h.connect("tok-bob", Some(last_seen));
    let frames = h.take(bob2);
    assert_eq!(frames[0]["type"], "welcome");
    assert_eq!(frames[0]["resumed"], true);
    let missed: Vec<&Value> = frames[1..].iter().collect();
    let kinds: Vec<&str> = missed.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["candidate", "candidate", "candidate", "chat"]);
    assert_eq!(missed[0]["candidate"], candidate(1)["candidate"]);
    assert_eq!(missed[3]["text"], "are you there?");
    let seqs: Vec<u64> = missed.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs[0] == last_seen + 1 && seqs.windows(2).all(|w| w[0] < w[1]),
        "{seqs:?}"
    );

    assert_eq!(h.take(alice)[0]["state"], "resumed");
    h.send(alice, chat("welcome back"));
    assert_eq!(h.take(bob2)[0]["text"], "welcome back");
    assert_eq!(
        h.take_audits().last(),
        Some(&AuditKind::ParticipantJoined {
            user: user("bob"),
            conn: bob2,
            resumed: true
        })
    );
}

#[test]
fn new_connection_takes_over_before_the_old_one_notices() {
    let (mut h, alice, bob) = Harness::call(Config::default());
    h.send(alice, chat("one"));
    let last = h.last_seq(bob);
    h.send(alice, chat("two"));

    let bob2 = h.connect("tok-bob", last);
    assert_eq!(h.closed(bob), Some((4009, "replaced")));
    let frames = h.take(bob2);
    assert_eq!(frames[0]["resumed"], true);
    assert_eq!(frames[1]["text"], "two");
    assert_eq!(frames.len(), 2);
    assert!(
        h.take(alice).is_empty(),
        "a seamless takeover is not news for the peer"
    );

    h.send(alice, chat("three"));
    let to_old: Vec<Value> = h.take(bob);
    assert!(to_old.iter().all(|f| f["text"] != "three"));
    assert_eq!(h.take(bob2)[0]["text"], "three");
}

#[test]
fn resume_after_buffer_overflow_is_a_clear_gap() {
    let config = config(|c| {
        c.replay_max_messages = 4;
    });
    let (mut h, alice, bob) = Harness::call(config);
    let last = h.last_seq(bob);
    h.drop_conn(bob);
    h.take(alice);
    for n in 0..10 {
        h.send(alice, chat(&format!("message {n}")));
    }

    let bob2 = h.connect("tok-bob", last);
    let frames = h.take(bob2);
    assert_eq!(frames[0]["type"], "error");
    assert_eq!(frames[0]["code"], "resume_gap");
    assert_eq!(frames[1]["type"], "welcome");
    assert_eq!(frames[1]["resumed"], false);
    assert_eq!(frames.len(), 2, "nothing partial is replayed");
    assert_eq!(
        h.take(alice)[0]["state"],
        "joined",
        "alice must renegotiate"
    );
    assert!(h.closed(bob2).is_none());
}

#[test]
fn resume_after_grace_period_is_a_gap() {
    let (mut h, alice, bob) = Harness::call(Config::default());
    let last = h.last_seq(bob);
    h.drop_conn(bob);
    h.advance_alive(secs(31), &[alice]);
    let left = h.take(alice);
    assert_eq!(
        left.last()
            .map(|f| (f["state"].clone(), f["reason"].clone())),
        Some((json!("left"), json!("connection_lost")))
    );
    assert!(h.take_audits().contains(&AuditKind::ParticipantLeft {
        user: user("bob"),
        reason: LeaveReason::ConnectionLost,
    }));

    let bob2 = h.connect("tok-bob", last);
    let frames = h.take(bob2);
    assert_eq!(frames[0]["code"], "resume_gap");
    assert_eq!(frames[1]["resumed"], false);
}

#[test]
fn acknowledged_frames_are_released() {
    let (mut h, alice, bob) = Harness::call(Config::default());
    h.send(alice, chat("one"));
    let first = h.last_seq(bob).unwrap();
    h.send(alice, chat("two"));
    let second = h.last_seq(bob).unwrap();
    h.send(bob, json!({"v": 1, "type": "ping", "ack": second}));
    assert_eq!(h.take_types(bob), ["chat", "chat", "pong"]);
    h.drop_conn(bob);

    // Bob says he saw only the first one, which contradicts his ack: the room cannot replay.
    let bob2 = h.connect("tok-bob", Some(first));
    assert_eq!(h.take(bob2)[0]["code"], "resume_gap");
    h.drop_conn(bob2);
    let bob3 = h.connect("tok-bob", h.last_seq(bob2));
    let frames = h.take(bob3);
    assert_eq!(frames[0]["type"], "welcome");
    assert_eq!(frames[0]["resumed"], true);
}

#[test]
fn capacity_turns_away_an_extra_participant() {
    let mut h = Harness::with_participants(Config::default(), &["alice", "bob", "dave"]);
    h.join("alice");
    h.join("bob");
    let dave = h.connect("tok-dave", None);
    let frames = h.take(dave);
    assert_eq!(frames[0]["code"], "room_full");
    assert_eq!(h.closed(dave), Some((4004, "room_full")));
    assert_eq!(
        h.take_audits().last(),
        Some(&AuditKind::RoomFull {
            user: user("dave"),
            capacity: 2
        })
    );
}

#[test]
fn capacity_of_three_admits_a_third_participant() {
    let config = config(|c| {
        c.capacity = 3;
    });
    let mut h = Harness::with_participants(config, &["alice", "bob", "dave"]);
    let alice = h.join("alice");
    let bob = h.join("bob");
    let dave = h.join("dave");
    h.take(alice);
    h.take(bob);
    h.send(dave, chat("hello both"));
    assert_eq!(h.take(alice)[0]["from"], "dave");
    assert_eq!(h.take(bob)[0]["from"], "dave");
}

#[test]
fn a_third_user_cannot_join() {
    let (mut h, alice, _bob) = Harness::call(Config::default());
    let carol = h.connect("tok-carol", None);
    let frames = h.take(carol);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["type"], "error");
    assert_eq!(frames[0]["code"], "not_participant");
    assert_eq!(h.closed(carol), Some((4003, "not_participant")));
    assert_eq!(
        h.take_audits(),
        [AuditKind::NotParticipant {
            user: user("carol"),
            conn: carol
        }]
    );
    assert!(h.take(alice).is_empty(), "participants hear nothing of it");
}

#[test]
fn wrong_token_is_refused_and_audited() {
    let mut h = Harness::new(Config::default());
    let conn = h.connect("forged.token.value", None);
    let frames = h.take(conn);
    assert_eq!(frames[0]["code"], "invalid_token");
    assert_eq!(h.closed(conn), Some((4001, "invalid_token")));
    assert_eq!(h.take_audits(), [AuditKind::TokenRejected { conn }]);
    assert!(
        !format!("{frames:?}").contains("forged"),
        "the token is not echoed"
    );
}

#[test]
fn nothing_but_hello_is_accepted_before_authentication() {
    let mut h = Harness::new(Config::default());
    let conn = h.open();
    h.send(conn, chat("let me in"));
    assert_eq!(h.take(conn)[0]["code"], "not_authenticated");
    assert_eq!(h.closed(conn), Some((1008, "not_authenticated")));

    let conn = h.open();
    h.text(conn, "{not json");
    assert_eq!(h.take(conn)[0]["code"], "malformed");
    assert_eq!(h.closed(conn), Some((1008, "malformed")));

    // A message while the token is being verified is refused too.
    h.auto_verify = false;
    let conn = h.connect("tok-alice", None);
    h.send(conn, json!({"v": 1, "type": "ping"}));
    assert_eq!(h.closed(conn), Some((1008, "not_authenticated")));
    h.verify_pending();
    assert!(
        h.take_types(conn).iter().all(|t| t != "welcome"),
        "a late verification is ignored"
    );
}

#[test]
fn hello_must_arrive_and_be_verified_in_time() {
    let mut h = Harness::new(Config::default());
    let silent = h.open();
    h.advance(secs(9));
    assert!(h.closed(silent).is_none());
    h.advance(secs(1));
    assert_eq!(h.take(silent)[0]["code"], "auth_timeout");
    assert_eq!(h.closed(silent), Some((4008, "auth_timeout")));

    h.auto_verify = false;
    let slow = h.connect("tok-alice", None);
    h.advance(secs(10));
    assert_eq!(h.closed(slow), Some((4008, "auth_timeout")));
    h.verify_pending();
    assert_eq!(h.room.connection_count(), 0);
}

#[test]
fn too_many_pending_connections_are_refused() {
    let mut h = Harness::new(config(|c| {
        c.max_pending = 2;
    }));
    let first = h.open();
    let second = h.open();
    let third = h.open();
    assert!(h.closed(first).is_none() && h.closed(second).is_none());
    assert_eq!(h.closed(third), Some((4004, "too_many_pending")));
}

#[test]
fn ringing_times_out() {
    let mut h = Harness::new(Config::default());
    let alice = h.join("alice");
    h.advance_alive(secs(89), &[alice]);
    assert!(h.closed(alice).is_none());
    h.advance_alive(secs(1), &[alice]);

    let frames = h.take(alice);
    assert_eq!(
        frames.last(),
        Some(&json!({"v": 1, "type": "room_ended", "reason": "ring_timeout"}))
    );
    assert_eq!(h.closed(alice), Some((1000, "room_ended")));
    assert_eq!(
        h.take_audits()[1..],
        [
            AuditKind::RingingTimedOut {
                caller: user("alice")
            },
            AuditKind::ParticipantLeft {
                user: user("alice"),
                reason: LeaveReason::RoomEnded
            },
            AuditKind::RoomEnded {
                reason: EndReason::RingTimeout
            },
        ]
    );
    assert!(h.done && h.room.is_ended());

    let late = h.connect("tok-bob", None);
    assert_eq!(h.take(late)[0]["code"], "room_ended");
    assert_eq!(h.closed(late), Some((1000, "room_ended")));
}

#[test]
fn caller_hanging_up_while_ringing_aborts_the_room() {
    let mut h = Harness::new(Config::default());
    let alice = h.join("alice");
    h.send(alice, json!({"v": 1, "type": "leave"}));
    assert_eq!(h.closed(alice), Some((1000, "left")));
    assert_eq!(
        h.take_audits()[1..],
        [
            AuditKind::ParticipantLeft {
                user: user("alice"),
                reason: LeaveReason::Hangup
            },
            AuditKind::RoomEnded {
                reason: EndReason::Aborted
            },
        ]
    );
    assert!(h.done);
}

#[test]
fn caller_dropping_while_ringing_aborts_after_the_grace_period() {
    let mut h = Harness::new(Config::default());
    let alice = h.join("alice");
    h.drop_conn(alice);
    h.advance(secs(29));
    assert!(!h.done);
    h.advance(secs(1));
    assert!(h.done);
    assert_eq!(
        h.take_audits()[1..],
        [
            AuditKind::ParticipantLeft {
                user: user("alice"),
                reason: LeaveReason::ConnectionLost
            },
            AuditKind::RoomEnded {
                reason: EndReason::Aborted
            },
        ]
    );
}

#[test]
fn hangup_after_a_call_then_last_leave_completes_the_room() {
    let (mut h, alice, bob) = Harness::call(Config::default());
    h.send(bob, json!({"v": 1, "type": "leave"}));
    let left = h.take(alice);
    assert_eq!(
        (left[0]["state"].clone(), left[0]["reason"].clone()),
        (json!("left"), json!("hangup"))
    );
    h.send(alice, chat("still there?"));
    assert_eq!(h.take(alice)[0]["code"], "no_peer");
    h.send(alice, json!({"v": 1, "type": "leave"}));
    assert_eq!(
        h.take_audits().last(),
        Some(&AuditKind::RoomEnded {
            reason: EndReason::Completed
        })
    );
    assert!(h.done);
}

#[test]
fn heartbeat_pings_silent_clients_and_drops_dead_ones() {
    let (mut h, alice, bob) = Harness::call(Config::default());
    h.advance(secs(20));
    assert_eq!(h.take_types(alice), ["ping"]);
    assert_eq!(h.take_types(bob), ["ping"]);
    h.send(alice, json!({"v": 1, "type": "pong"}));

    h.advance(secs(10));
    assert!(h.closed(alice).is_none(), "alice answered");
    assert_eq!(h.closed(bob), Some((4008, "heartbeat_timeout")));
    assert_eq!(h.take(bob)[0]["code"], "heartbeat_timeout");
    assert_eq!(h.take(alice)[0]["state"], "reconnecting");

    h.advance_alive(secs(30), &[alice]);
    assert_eq!(
        h.take(alice).last().map(|f| f["reason"].clone()),
        Some(json!("connection_lost"))
    );
    assert!(h.closed(alice).is_none());
}

#[test]
fn idle_rooms_end() {
    let mut empty = Harness::new(Config::default());
    empty.advance(secs(5 * 60));
    assert!(empty.done);
    assert_eq!(
        empty.take_audits(),
        [AuditKind::RoomEnded {
            reason: EndReason::Idle
        }]
    );

    let (mut h, alice, bob) = Harness::call(Config::default());
    h.advance_alive(secs(3600), &[alice, bob]);
    assert!(!h.done, "a call in progress never idles");
    h.send(bob, json!({"v": 1, "type": "leave"}));
    h.advance_alive(secs(5 * 60 - 1), &[alice]);
    assert!(!h.done);
    h.advance_alive(secs(1), &[alice]);
    assert!(h.done);
    assert_eq!(h.closed(alice), Some((1000, "room_ended")));
    assert_eq!(
        h.take_audits().last(),
        Some(&AuditKind::RoomEnded {
            reason: EndReason::Idle
        })
    );
}

#[test]
fn malformed_and_oversized_messages_get_errors_not_a_close() {
    let config = config(|c| {
        c.max_message_bytes = 1024;
        c.max_chat_bytes = 64;
        c.max_violations = 100;
    });
    let (mut h, alice, bob) = Harness::call(config.clone());
    let cases: Vec<(String, &str)> = vec![
        ("{\"v\":1,\"type\":".to_owned(), "malformed"),
        ("\u{0}\u{1}binary-ish".to_owned(), "malformed"),
        (json!({"v": 1, "type": "chat"}).to_string(), "malformed"),
        (json!({"v": 1, "type": "chat", "text": 42}).to_string(), "malformed"),
        (json!({"v": 2, "type": "chat", "text": "hi"}).to_string(), "unsupported_version"),
        (json!({"v": 1, "type": "teleport"}).to_string(), "unknown_type"),
        (json!({"v": 1, "type": "chat", "text": "x".repeat(2000)}).to_string(), "message_too_large"),
        (json!({"v": 1, "type": "chat", "text": "é".repeat(33)}).to_string(), "chat_too_long"),
        (json!({"v": 1, "type": "hello", "token": "tok-alice"}).to_string(), "not_authenticated"),
        (json!({"v": 1, "type": "candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}).to_string(), "malformed"),
    ];
    for (text, code) in &cases {
        h.text(alice, text);
        let frames = h.take(alice);
        assert_eq!(frames.len(), 1, "{text}");
        assert_eq!(frames[0]["type"], "error");
        assert_eq!(frames[0]["code"], *code, "{text}");
        assert!(frames[0]["message"].is_string());
    }
    assert!(h.take(bob).is_empty(), "nothing invalid is relayed");
    assert!(h.closed(alice).is_none());
    h.room.handle_binary(h.now, alice);
    h.drain();
    assert_eq!(h.take(alice)[0]["code"], "malformed");

    h.send(alice, chat(&"é".repeat(32)));
    assert_eq!(
        h.take(bob)[0]["text"],
        "é".repeat(32),
        "a chat at the limit passes"
    );
}

#[test]
fn sdp_without_fingerprint_or_setup_is_rejected() {
    let (mut h, alice, bob) = Harness::call(Config::default());
    let no_fingerprint = sdp(&["a=setup:actpass"]);
    let no_setup = sdp(&[common::FINGERPRINT]);
    let short_fingerprint = sdp(&["a=fingerprint:sha-256 5D:7A:1B", "a=setup:actpass"]);
    for bad in [no_fingerprint, no_setup, short_fingerprint] {
        h.send(alice, json!({"v": 1, "type": "offer", "sdp": bad}));
        let frames = h.take(alice);
        assert_eq!(frames[0]["code"], "invalid_sdp");
    }
    let actpass_answer = sdp(&[common::FINGERPRINT, "a=setup:actpass"]);
    h.send(
        bob,
        json!({"v": 1, "type": "answer", "sdp": actpass_answer}),
    );
    assert_eq!(h.take(bob)[0]["code"], "invalid_sdp");
    assert!(h.take(alice).is_empty() && h.take_types(bob).is_empty());
}

#[test]
fn repeated_violations_close_with_1008() {
    let (mut h, alice, bob) = Harness::call(Config::default());
    for n in 1..10 {
        h.text(bob, "garbage");
        assert!(h.closed(bob).is_none(), "closed after {n}");
    }
    h.text(bob, "garbage");
    assert_eq!(h.closed(bob), Some((1008, "policy_violation")));
    let left = h.take(alice);
    assert_eq!(left[0]["reason"], "removed");
    let audits = h.take_audits();
    assert_eq!(
        audits[0],
        AuditKind::AbuseClosed {
            conn: bob,
            user: Some(user("bob")),
            violations: 10
        }
    );
    assert_eq!(
        audits[1],
        AuditKind::ParticipantLeft {
            user: user("bob"),
            reason: LeaveReason::Removed
        }
    );
}

#[test]
fn violations_are_forgiven_over_time() {
    let (mut h, alice, bob) = Harness::call(Config::default());
    for _ in 0..30 {
        h.text(bob, "garbage");
        h.advance_alive(secs(61), &[alice, bob]);
    }
    assert!(h.closed(bob).is_none());
}

#[test]
fn flood_is_rate_limited_then_closed_with_1008() {
    let (mut h, alice, bob) = Harness::call(Config::default());
    for n in 0..100 {
        h.send(alice, candidate(n));
    }
    assert_eq!(h.take(bob).len(), 100, "the burst passes");
    assert!(h.take(alice).is_empty());

    h.send(alice, candidate(100));
    assert_eq!(h.take(alice)[0]["code"], "rate_limited");
    for n in 101..109 {
        h.send(alice, candidate(n));
    }
    assert!(
        h.take(alice).is_empty(),
        "told once, not once per dropped message"
    );
    assert!(h.closed(alice).is_none());
    h.send(alice, candidate(109));
    assert_eq!(h.closed(alice), Some((1008, "policy_violation")));
    let to_bob = h.take(bob);
    assert!(
        to_bob.iter().all(|f| f["type"] != "candidate"),
        "dropped, not relayed"
    );
    assert_eq!(
        to_bob.last().map(|f| f["reason"].clone()),
        Some(json!("removed"))
    );
    assert_eq!(
        h.take_audits()[0],
        AuditKind::AbuseClosed {
            conn: alice,
            user: Some(user("alice")),
            violations: 10
        }
    );
}

#[test]
fn capacity_one_refuses_the_second_participant() {
    let mut h = Harness::new(config(|c| c.capacity = 1));
    h.join("alice");
    let bob = h.connect("tok-bob", None);
    assert_eq!(h.closed(bob), Some((4004, "room_full")));
}

#[test]
fn host_can_end_the_room() {
    let (mut h, alice, bob) = Harness::call(Config::default());
    let pending = h.open();
    h.room.handle_end(h.now);
    h.drain();
    for conn in [alice, bob] {
        assert_eq!(
            h.take(conn),
            [json!({"v": 1, "type": "room_ended", "reason": "host"})]
        );
        assert_eq!(h.closed(conn), Some((1000, "room_ended")));
    }
    assert_eq!(h.closed(pending), Some((1000, "room_ended")));
    assert_eq!(
        h.take_audits().last(),
        Some(&AuditKind::RoomEnded {
            reason: EndReason::Host
        })
    );
    assert!(h.done);
}

#[test]
fn inputs_for_unknown_connections_are_ignored() {
    let (mut h, alice, bob) = Harness::call(Config::default());
    h.drop_conn(bob);
    h.take(alice);
    h.text(bob, &chat("ghost").to_string());
    h.room.handle_token_verified(h.now, bob, user("bob"));
    h.room.handle_token_rejected(h.now, bob);
    h.room.handle_closed(h.now, bob);
    h.drain();
    assert!(h.take(alice).is_empty());
    assert!(h.take_audits().is_empty());
}

/// Seeded random walk: bob's connection drops and comes back at random while alice keeps
/// sending; with resume, bob ends up with every chat exactly once and in order.
#[test]
fn random_drops_lose_nothing() {
    for seed in 1..=20u64 {
        let mut rng = seed;
        let mut next = move |n: u64| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) % n
        };
        let (mut h, alice, mut bob) = Harness::call(Config::default());
        h.ack_pings = false;
        let mut received: Vec<String> = Vec::new();
        let mut last_seen = h.last_seq(bob);
        let mut bob_connected = true;
        let mut sent = 0;

        for _ in 0..300 {
            match next(10) {
                0..=5 => {
                    h.send(alice, chat(&format!("m{sent}")));
                    sent += 1;
                }
                6 if bob_connected => {
                    // Bob reads only part of what was sent before the drop.
                    let frames = h.take(bob);
                    let keep = next(frames.len() as u64 + 1) as usize;
                    for frame in &frames[..keep] {
                        if frame["type"] == "chat" {
                            received.push(frame["text"].as_str().unwrap().to_owned());
                        }
                        last_seen = frame["seq"].as_u64().or(last_seen);
                    }
                    h.drop_conn(bob);
                    bob_connected = false;
                }
                7 | 8 if !bob_connected => {
                    bob = h.connect("tok-bob", last_seen);
                    bob_connected = true;
                    let frames = h.take(bob);
                    assert_eq!(frames[0]["resumed"], true, "seed {seed}");
                    for frame in &frames[1..] {
                        if frame["type"] == "chat" {
                            received.push(frame["text"].as_str().unwrap().to_owned());
                        }
                        last_seen = frame["seq"].as_u64().or(last_seen);
                    }
                }
                _ if bob_connected => {
                    h.advance_alive(Duration::from_millis(next(1000)), &[alice, bob])
                }
                _ => h.advance_alive(Duration::from_millis(next(1000)), &[alice]),
            }
            assert!(
                h.take(alice).iter().all(|f| f["type"] != "error"),
                "seed {seed}"
            );
        }
        if !bob_connected {
            bob = h.connect("tok-bob", last_seen);
        }
        for frame in h.take(bob) {
            if frame["type"] == "chat" {
                received.push(frame["text"].as_str().unwrap().to_owned());
            }
        }
        let expected: Vec<String> = (0..sent).map(|n| format!("m{n}")).collect();
        assert_eq!(received, expected, "seed {seed}");
    }
}

#[test]
fn rate_limit_refills_at_the_sustained_rate() {
    let config = config(|c| {
        c.rate_per_second = 20;
        c.rate_burst = 5;
    });
    let (mut h, alice, bob) = Harness::call(config);
    for n in 0..6 {
        h.send(alice, candidate(n));
    }
    assert_eq!(h.take(bob).len(), 5);
    assert_eq!(h.take(alice)[0]["code"], "rate_limited");
    h.advance(Duration::from_millis(49));
    h.send(alice, candidate(6));
    assert!(h.take(bob).is_empty());
    h.advance(Duration::from_millis(50));
    h.send(alice, candidate(7));
    assert_eq!(h.take(bob).len(), 1, "one message per 50 ms at 20/s");
    assert!(
        h.take(alice).is_empty(),
        "told once per run of dropped messages"
    );
    h.send(alice, candidate(8));
    assert_eq!(
        h.take(alice)[0]["code"],
        "rate_limited",
        "told again after a message passed"
    );
}
