//! Accounts benchmark: prints each figure beside a reference measured in the same run.
//!
//! - token verifications per second (signature, header and claim checks) against bare Ed25519
//!   signature checks of the same token: the cryptographic floor;
//! - login latency minus the argon2id cost: a full `POST /v1/auth/login` through the core and
//!   the embedded store, against one argon2id verification with the same parameters; and the
//!   same login with the cheapest argon2id parameters, which measures the rest directly.
//!
//! Run with `cargo bench -p bedside-host --bench accounts`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use bedside_core::Timestamp;
use bedside_core::api::{Api, Client, Keys};
use bedside_core::config::{Argon2Params, Config};
use bedside_core::crypto::SecretKey;
use bedside_core::outbox::{Message, Outbox, OutboxError};
use bedside_core::password::Hasher;
use bedside_core::tokens::{Signer, TokenKind};
use bedside_host::db::Sqlite;
use bytes::Bytes;
use serde_json::json;

const PASSWORD: &str = "Tulip-Harbor-58";

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
    let signer = Signer::from_seed([7; 32], "https://bedside.test", "bedside", 30).unwrap();
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

/// Mean latency of a successful `POST /v1/auth/login` with `argon2` as the hashing cost.
fn login_latency(argon2: Argon2Params) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = Config {
        argon2,
        ..Config::default()
    };
    let keys = Keys {
        signing_seed: SecretKey([1; 32]),
        kek: SecretKey([2; 32]),
        pepper: SecretKey([3; 32]),
    };
    let api = Api::new(config, keys).unwrap();
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
    let now = 1_800_000_000;
    call(
        "/v1/accounts",
        json!({"email": "b@example.org", "password": PASSWORD, "activation_channel": "email"}),
        now,
    );
    // Activate directly: the benchmark measures login, not the outbox.
    runtime.block_on(async {
        use bedside_core::store::{Database, Statement};
        let activate = Statement::new("UPDATE accounts SET status = 'active'", vec![]);
        db.query(activate).await.unwrap();
    });
    let mut t = now;
    per_call(Duration::from_secs(4), || {
        t += 1;
        let body = json!({"email": "b@example.org", "password": PASSWORD});
        assert_eq!(call("/v1/auth/login", body, t).status(), 200);
    })
}

fn login() {
    let owasp = Argon2Params::default();
    let hasher = Hasher::new(owasp);
    let stored = hasher.hash(PASSWORD, [9; 16]).unwrap();
    let argon = per_call(Duration::from_secs(4), || {
        assert!(hasher.verify(black_box(PASSWORD), &stored));
    });
    let login = login_latency(owasp);
    let cheapest = login_latency(Argon2Params {
        m_kib: 8,
        t: 1,
        p: 1,
    });
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let overhead = login.saturating_sub(argon);
    println!(
        "{:<44}{:>12.2}ms{:>12.2}ms{:>9.3}",
        "login minus argon2id (ref: argon2id alone)",
        ms(overhead),
        ms(argon),
        ms(overhead) / ms(argon)
    );
    println!(
        "{:<44}{:>12.2}ms{:>12.2}ms{:>9.3}",
        "login at the cheapest argon2id (ref: same)",
        ms(cheapest),
        ms(argon),
        ms(cheapest) / ms(argon)
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
