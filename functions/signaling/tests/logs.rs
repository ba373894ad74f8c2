//! Limits hit are logged at `warn` with their numbers, and without user ids.
//!
//! One test in its own binary: a scoped subscriber races with tracing's global callsite cache
//! when other tests run on other threads without one.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bedside_signaling::Config;
use common::{Harness, candidate, chat};

#[test]
fn limits_hit_are_logged_at_warn_with_their_numbers() {
    let logs = capture(|| {
        let (mut h, alice, bob) = Harness::call(Config::default());
        for n in 0..110 {
            h.send(alice, candidate(n));
        }
        h.send(bob, chat(&"x".repeat(70_000)));
        h.advance(Duration::from_secs(30));

        let mut config = Config::default();
        config.capacity = 1;
        let mut h = Harness::new(config);
        let alice = h.join("alice");
        h.connect("tok-bob", None);
        let _ = alice;
        for _ in 0..9 {
            h.open();
        }
    });

    let warnings: Vec<&str> = logs.lines().filter(|line| line.contains("WARN")).collect();
    let expect = [
        ("rate limit hit", &["rate_per_second=20", "burst=100"][..]),
        (
            "closing connection for repeated violations",
            &["violations=10", "max_violations=10"],
        ),
        ("message too large", &["size=70031", "max=65536"]),
        ("no answer to ping", &["pong_timeout_ms=10000"]),
        ("room is full", &["present=1", "capacity=1"]),
        (
            "too many unauthenticated connections",
            &["pending=8", "max_pending=8"],
        ),
    ];
    for (message, fields) in expect {
        let line = warnings.iter().find(|line| line.contains(message));
        let Some(line) = line else {
            panic!("no warning {message:?} in:\n{logs}")
        };
        for field in fields {
            assert!(line.contains(field), "{field} missing from {line}");
        }
        assert!(line.contains("room=r1"), "{line}");
    }
    for user in ["alice", "bob"] {
        assert!(!logs.contains(user), "user id {user} in logs:\n{logs}");
    }
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture(f: impl FnOnce()) -> String {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}
