//! Accounts benchmark: prints each figure beside a reference measured in the same run.
//!
//! - token verifications per second (signature, header and claim checks) against bare Ed25519
//!   signature checks of the same token: the cryptographic floor;
//! - login latency minus the argon2id cost: a full `POST /v1/auth/login` through the core and
//!   the embedded store, against one argon2id verification with the same parameters.
//!
//! Run with `cargo bench -p bedside-host --bench accounts`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use bedside_core::Timestamp;
use bedside_core::api::{Api, Client, Keys};
use bedside_core::config::Config;
use bedside_core::crypto::SecretKey;
use bedside_core::outbox::{Message, Outbox, OutboxError};
use bedside_core::password::Hasher;
use bedside_core::tokens::{Signer, TokenKind};
use bedside_host::db::Sqlite;
use bytes::Bytes;
use serde_json::json;

struct Drop;

impl Outbox for Drop {
    async fn send(&self, message: Message) -> Result<(), OutboxError> {
        black_box(message);
        Ok(())
    }
}

/// Runs `f` repeatedly for about `budget` and returns the mean time per call.
fn per_call(budget: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget {
        f();
        n += 1;
    }
    start.elapsed() / n.max(1)
}

fn tokens() {
    let now = Timestamp::from_secs(1_800_000_000);
    let signer = Signer::from_seed([7; 32], "https://bedside.test", "bedside", 30);
    let token = signer
        .issue(
            TokenKind::Access,
            "account",
            Some("session"),
            "jti",
            now,
            900,
        )
        .unwrap();
    let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7; 32]));
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = ed25519_compact::Signature::from_slice(&B64URL.decode(sig).unwrap()).unwrap();

    let ours = per_call(Duration::from_secs(2), || {
        black_box(
            signer
                .verify(TokenKind::Access, black_box(&token), now)
                .unwrap(),
        );
    });
    let floor = per_call(Duration::from_secs(2), || {
        pair.pk.verify(black_box(input.as_bytes()), &sig).unwrap();
    });
    let rate = |d: Duration| 1.0 / d.as_secs_f64();
    println!(
        "{:<44}{:>14}{:>14}{:>9}",
        "", "bedside", "reference", "ratio"
    );
    println!(
        "{:<44}{:>14.0}{:>14.0}{:>9.2}",
        "token verifications/s (ref: bare Ed25519)",
        rate(ours),
        rate(floor),
        rate(ours) / rate(floor)
    );
}

fn login() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = Config::default();
    let hasher = Hasher::new(config.argon2);
    let api = Api::new(
        config,
        Keys {
            signing_seed: SecretKey([1; 32]),
            kek: SecretKey([2; 32]),
            pepper: SecretKey([3; 32]),
        },
    );
    let db = Sqlite::memory().unwrap();
    let mut seed = 0u64;
    let mut call = |path: &str, body: serde_json::Value, now: i64| {
        seed += 1;
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        let req = http::Request::post(path)
            .header("content-type", "application/json")
            .body(Bytes::from(body.to_string()))
            .unwrap();
        let client = Client {
            address: Some("192.0.2.1".parse().unwrap()),
        };
        runtime.block_on(api.handle(&db, &Drop, req, client, Timestamp::from_secs(now), s))
    };
    let password = "Tulip-Harbor-58";
    let now = 1_800_000_000;
    call(
        "/v1/accounts",
        json!({"email": "b@example.org", "password": password, "activation_channel": "email"}),
        now,
    );
    // Activate directly: the benchmark measures login, not the outbox.
    runtime.block_on(async {
        use bedside_core::store::{Database, Statement};
        db.query(Statement::new(
            "UPDATE accounts SET status = 'active'",
            vec![],
        ))
        .await
        .unwrap();
    });
    let stored = hasher.hash(password, [9; 16]).unwrap();

    let mut t = now;
    let login = per_call(Duration::from_secs(5), || {
        t += 1;
        let r = call(
            "/v1/auth/login",
            json!({"email": "b@example.org", "password": password}),
            t,
        );
        assert_eq!(r.status(), 200);
    });
    let argon = per_call(Duration::from_secs(5), || {
        assert!(hasher.verify(black_box(password), &stored));
    });
    let overhead = login.saturating_sub(argon);
    println!(
        "{:<44}{:>12.1}ms{:>12.1}ms{:>9.3}",
        "login minus argon2id (ref: argon2id alone)",
        overhead.as_secs_f64() * 1e3,
        argon.as_secs_f64() * 1e3,
        overhead.as_secs_f64() / argon.as_secs_f64()
    );
    println!(
        "{:<44}{:>12.1}ms",
        "login, whole request",
        login.as_secs_f64() * 1e3
    );
}

fn main() {
    // `cargo test --benches` runs this too: keep that quick and skip the measurements.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    tokens();
    login();
}
