//! Account flows on simulated time: the core's API over the real embedded SQLite store, with
//! the clock and the randomness in the test's hands. What the black-box suite cannot do (wait
//! hours, step TOTP windows, count to a hundred failures) happens here in microseconds.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bedside_core::api::{Api, Client, Keys};
use bedside_core::audit::verify_export;
use bedside_core::config::{Argon2Params, Config};
use bedside_core::crypto::SecretKey;
use bedside_core::outbox::{Message, Outbox, OutboxError, Purpose};
use bedside_core::{Timestamp, totp};
use bedside_host::db::Sqlite;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "Tulip-Harbor-58";
const START: i64 = 1_800_000_000;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Message>>>);

impl Outbox for Capture {
    async fn send(&self, message: Message) -> Result<(), OutboxError> {
        self.0.lock().unwrap().push(message);
        Ok(())
    }
}

impl Capture {
    fn last_code(&self, to: &str) -> Option<String> {
        let all = self.0.lock().unwrap();
        all.iter()
            .rev()
            .find(|m| m.to == to)
            .and_then(|m| m.code.clone())
    }

    fn count(&self, to: &str, purpose: Purpose) -> usize {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|m| m.to == to && m.purpose == purpose)
            .count()
    }
}

struct Answer {
    status: StatusCode,
    body: Value,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    fn retry_after(&self) -> i64 {
        self.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

struct Harness {
    api: Api,
    db: Sqlite,
    outbox: Capture,
    now_ms: Mutex<i64>,
    seed: Mutex<u64>,
}

impl Harness {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(config: Config) -> Self {
        let config = Config {
            argon2: Argon2Params {
                m_kib: 64,
                t: 1,
                p: 1,
            },
            issuer: "https://bedside.test".into(),
            ..config
        };
        let keys = Keys {
            signing_seed: SecretKey([1; 32]),
            kek: SecretKey([2; 32]),
            pepper: SecretKey([3; 32]),
        };
        Self {
            api: Api::new(config, keys).unwrap(),
            db: Sqlite::memory().unwrap(),
            outbox: Capture::default(),
            now_ms: Mutex::new(START * 1000),
            seed: Mutex::new(0),
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp(*self.now_ms.lock().unwrap())
    }

    fn advance(&self, secs: i64) {
        *self.now_ms.lock().unwrap() += secs * 1000;
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Answer {
        let mut req = http::Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let seed = {
            let mut s = self.seed.lock().unwrap();
            *s += 1;
            let mut out = [0u8; 32];
            out[..8].copy_from_slice(&s.to_le_bytes());
            out
        };
        let client = Client {
            address: Some("192.0.2.10".parse::<IpAddr>().unwrap()),
        };
        let response = self
            .api
            .handle(
                &self.db,
                &self.outbox,
                req.body(bytes).unwrap(),
                client,
                self.now(),
                seed,
            )
            .await;
        let (parts, body) = response.into_parts();
        let text = String::from_utf8(body.to_vec()).unwrap();
        Answer {
            status: parts.status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            headers: parts.headers,
            text,
        }
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, Some(body), None).await
    }

    async fn register(&self, email: &str, channel: &str) {
        let mut body = json!({"email": email, "password": PASSWORD, "activation_channel": channel});
        if channel == "sms" {
            body["phone"] = json!("+41791234567");
        }
        let a = self.post("/v1/accounts", body).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    }

    async fn active_account(&self, email: &str) {
        self.register(email, "email").await;
        let code = self.outbox.last_code(email).unwrap();
        let a = self
            .post(
                "/v1/accounts/activate",
                json!({"email": email, "code": code}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    }

    async fn login(&self, email: &str, password: &str) -> Answer {
        self.post(
            "/v1/auth/login",
            json!({"email": email, "password": password}),
        )
        .await
    }

    async fn tokens(&self, email: &str) -> (String, String) {
        let a = self.login(email, PASSWORD).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        (
            a.body["access_token"].as_str().unwrap().to_owned(),
            a.body["refresh_token"].as_str().unwrap().to_owned(),
        )
    }
}

#[tokio::test]
async fn lockout_delays_double_then_a_hard_lock_holds_until_reset() {
    let h = Harness::new();
    h.active_account("ana@example.org").await;

    for _ in 0..5 {
        assert_eq!(h.login("ana@example.org", "Wrong-Pass-1").await.status, 401);
    }
    let mut expected_delay = 1;
    for _ in 0..6 {
        let locked = h.login("ana@example.org", PASSWORD).await;
        assert_eq!(
            locked.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            locked.text
        );
        assert_eq!(locked.code(), "too_many_attempts");
        assert_eq!(locked.retry_after(), expected_delay);
        h.advance(expected_delay);
        assert_eq!(h.login("ana@example.org", "Wrong-Pass-1").await.status, 401);
        expected_delay *= 2;
    }

    // The right password after the delay clears the counter.
    h.advance(expected_delay);
    assert_eq!(h.login("ana@example.org", PASSWORD).await.status, 200);
    assert_eq!(h.login("ana@example.org", "Wrong-Pass-1").await.status, 401);
    assert_eq!(h.login("ana@example.org", PASSWORD).await.status, 200);

    // A hundred consecutive failures lock the account for good, whatever the wait.
    let mut failures = 0;
    while failures < 100 {
        let a = h.login("ana@example.org", "Wrong-Pass-1").await;
        match a.status {
            StatusCode::UNAUTHORIZED => failures += 1,
            StatusCode::TOO_MANY_REQUESTS => h.advance(a.retry_after()),
            other => panic!("unexpected {other}"),
        }
    }
    h.advance(7 * 24 * 3600);
    let locked = h.login("ana@example.org", PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);

    // A password reset clears it.
    let a = h
        .post("/v1/password-reset", json!({"email": "ana@example.org"}))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let code = h.outbox.last_code("ana@example.org").unwrap();
    let a = h
        .post(
            "/v1/password-reset/confirm",
            json!({"email": "ana@example.org", "code": code, "new_password": "Maple-Delta-93"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    assert_eq!(
        h.login("ana@example.org", "Maple-Delta-93").await.status,
        200
    );
}

#[tokio::test]
async fn unknown_accounts_are_locked_out_like_known_ones() {
    let h = Harness::new();
    for _ in 0..5 {
        let a = h.login("nobody@example.org", PASSWORD).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::UNAUTHORIZED, "invalid_credentials")
        );
    }
    let a = h.login("nobody@example.org", PASSWORD).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn sms_codes_expire_in_minutes_and_die_after_five_wrong_tries() {
    let h = Harness::new();
    h.register("sam@example.org", "sms").await;
    let code = h.outbox.last_code("+41791234567").unwrap();
    assert_eq!(code.len(), 6);
    h.advance(10 * 60 + 1);
    let a = h
        .post(
            "/v1/accounts/activate",
            json!({"email": "sam@example.org", "code": code}),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, "code_expired")
    );

    let a = h
        .post(
            "/v1/accounts/activate/resend",
            json!({"email": "sam@example.org"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let fresh = h.outbox.last_code("+41791234567").unwrap();
    assert_ne!(fresh, code);
    // The expired try counted against the account: four more wrong tries reach its limit of
    // five, then each further try waits, and the code itself dies after five wrong tries.
    for _ in 0..4 {
        let a = h
            .post(
                "/v1/accounts/activate",
                json!({"email": "sam@example.org", "code": "000000"}),
            )
            .await;
        assert_eq!(a.code(), "invalid_code");
    }
    let a = h
        .post(
            "/v1/accounts/activate",
            json!({"email": "sam@example.org", "code": "000001"}),
        )
        .await;
    assert_eq!((a.code(), a.retry_after()), ("too_many_attempts", 1));
    h.advance(1);
    let a = h
        .post(
            "/v1/accounts/activate",
            json!({"email": "sam@example.org", "code": "000001"}),
        )
        .await;
    assert_eq!(a.code(), "invalid_code");
    h.advance(2);
    // Five wrong tries spent the code: the right one no longer works.
    let a = h
        .post(
            "/v1/accounts/activate",
            json!({"email": "sam@example.org", "code": fresh}),
        )
        .await;
    assert_eq!(a.code(), "invalid_code");
    assert_eq!(
        h.login("sam@example.org", PASSWORD).await.code(),
        "account_not_active"
    );
}

#[tokio::test]
async fn email_codes_live_a_day_and_resends_are_limited() {
    let h = Harness::new();
    h.register("eve@example.org", "email").await;
    let first = h.outbox.last_code("eve@example.org").unwrap();
    assert_eq!(first.len(), 8);

    // Within the interval a resend sends nothing; the first code still works later.
    h.advance(30);
    h.post(
        "/v1/accounts/activate/resend",
        json!({"email": "eve@example.org"}),
    )
    .await;
    assert_eq!(h.outbox.count("eve@example.org", Purpose::Activation), 1);

    // Five sends an hour at most.
    for _ in 0..6 {
        h.advance(61);
        h.post(
            "/v1/accounts/activate/resend",
            json!({"email": "eve@example.org"}),
        )
        .await;
    }
    assert_eq!(h.outbox.count("eve@example.org", Purpose::Activation), 5);
    let latest = h.outbox.last_code("eve@example.org").unwrap();
    let a = h
        .post(
            "/v1/accounts/activate",
            json!({"email": "eve@example.org", "code": first}),
        )
        .await;
    assert_eq!(a.code(), "invalid_code", "a resend replaces the old code");

    h.advance(24 * 3600 - 400);
    let a = h
        .post(
            "/v1/accounts/activate",
            json!({"email": "eve@example.org", "code": latest}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let again = h
        .post(
            "/v1/accounts/activate",
            json!({"email": "eve@example.org", "code": latest}),
        )
        .await;
    assert_eq!(again.code(), "invalid_code", "single use");
}

#[tokio::test]
async fn sessions_end_after_idle_and_absolute_timeouts() {
    let h = Harness::new();
    h.active_account("ida@example.org").await;

    // Idle: no refresh for longer than 30 minutes.
    let (_, refresh) = h.tokens("ida@example.org").await;
    h.advance(30 * 60 + 1);
    let a = h
        .post("/v1/auth/refresh", json!({"refresh_token": refresh}))
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    // Access tokens die 15 minutes after issue, with 30 s of tolerance.
    let (access, _) = h.tokens("ida@example.org").await;
    h.advance(15 * 60 + 20);
    assert_eq!(
        h.call("GET", "/v1/me", None, Some(&access)).await.status,
        200
    );
    h.advance(15);
    assert_eq!(
        h.call("GET", "/v1/me", None, Some(&access)).await.status,
        401
    );

    // Absolute: refreshing every 20 minutes keeps the session only for 12 hours.
    let (_, mut refresh) = h.tokens("ida@example.org").await;
    let mut alive_for = 0;
    loop {
        h.advance(20 * 60);
        alive_for += 20 * 60;
        let a = h
            .post("/v1/auth/refresh", json!({"refresh_token": refresh}))
            .await;
        if a.status != StatusCode::OK {
            assert_eq!(a.code(), "invalid_token");
            break;
        }
        refresh = a.body["refresh_token"].as_str().unwrap().to_owned();
    }
    assert!(
        (12 * 3600..=12 * 3600 + 20 * 60).contains(&alive_for),
        "{alive_for}"
    );
}

#[tokio::test]
async fn totp_codes_are_single_use_across_the_skew_window() {
    let h = Harness::new();
    h.active_account("tom@example.org").await;
    let (access, _) = h.tokens("tom@example.org").await;
    let enrol = h.call("POST", "/v1/me/totp", None, Some(&access)).await;
    assert_eq!(enrol.status, 200, "{}", enrol.text);
    let secret = enrol.body["secret"].as_str().unwrap();
    let seed = base32_decode(secret);
    let step = |h: &Harness| u64::try_from(h.now().secs()).unwrap() / totp::STEP_SECS;

    let code = totp::code_at_step(&seed, step(&h));
    let a = h
        .call(
            "POST",
            "/v1/me/totp/confirm",
            Some(json!({"code": code})),
            Some(&access),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["recovery_codes"].as_array().unwrap().len(), 10);

    let mfa_token = |a: &Answer| a.body["mfa_token"].as_str().unwrap().to_owned();
    let challenge = h.login("tom@example.org", PASSWORD).await;
    assert_eq!(challenge.body["mfa_required"], true);
    // The code used to confirm cannot log in.
    let a = h
        .post(
            "/v1/auth/mfa",
            json!({"mfa_token": mfa_token(&challenge), "code": code}),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, "invalid_code")
    );
    // The next step's code can, once.
    let next = totp::code_at_step(&seed, step(&h) + 1);
    let a = h
        .post(
            "/v1/auth/mfa",
            json!({"mfa_token": mfa_token(&challenge), "code": next}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    // The challenge completed its login; a new one cannot reuse the code.
    let a = h
        .post(
            "/v1/auth/mfa",
            json!({"mfa_token": mfa_token(&challenge), "code": next}),
        )
        .await;
    assert_eq!(a.code(), "invalid_token");
    let challenge = h.login("tom@example.org", PASSWORD).await;
    let a = h
        .post(
            "/v1/auth/mfa",
            json!({"mfa_token": mfa_token(&challenge), "code": next}),
        )
        .await;
    assert_eq!(a.code(), "invalid_code");

    // Two steps later a code from the past is outside the window.
    h.advance(3 * 30);
    let challenge = h.login("tom@example.org", PASSWORD).await;
    let stale = totp::code_at_step(&seed, step(&h) - 2);
    let a = h
        .post(
            "/v1/auth/mfa",
            json!({"mfa_token": mfa_token(&challenge), "code": stale}),
        )
        .await;
    assert_eq!(a.code(), "invalid_code");

    // MFA challenges expire.
    h.advance(5 * 60 + 31);
    let fresh = totp::code_at_step(&seed, step(&h));
    let a = h
        .post(
            "/v1/auth/mfa",
            json!({"mfa_token": mfa_token(&challenge), "code": fresh}),
        )
        .await;
    assert_eq!(a.code(), "invalid_token");
}

fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap() as u64;
        bits = (bits << 5) | v;
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[tokio::test]
async fn every_change_has_its_record_and_the_chain_holds() {
    let h = Harness::new();
    h.active_account("amy@example.org").await;
    assert_eq!(h.login("amy@example.org", "Wrong-Pass-1").await.status, 401);
    let (access, refresh) = h.tokens("amy@example.org").await;
    h.advance(60);
    let rotated = h
        .post("/v1/auth/refresh", json!({"refresh_token": refresh}))
        .await;
    assert_eq!(rotated.status, 200);
    let reuse = h
        .post("/v1/auth/refresh", json!({"refresh_token": refresh}))
        .await;
    assert_eq!(reuse.code(), "invalid_token");
    let (access2, _) = h.tokens("amy@example.org").await;
    let a = h
        .call(
            "POST",
            "/v1/me/password",
            Some(json!({"current_password": PASSWORD, "new_password": "Maple-Delta-93"})),
            Some(&access2),
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.text);
    assert_eq!(
        h.call("GET", "/v1/me", None, Some(&access)).await.status,
        401
    );
    let logout = h
        .call("POST", "/v1/auth/logout", None, Some(&access2))
        .await;
    assert_eq!(logout.status, 204);
    assert_eq!(
        h.call("GET", "/v1/me", None, Some(&access2)).await.status,
        401
    );

    let (access3, _) = {
        let a = h.login("amy@example.org", "Maple-Delta-93").await;
        (a.body["access_token"].as_str().unwrap().to_owned(), ())
    };
    let export = h
        .call("GET", "/v1/me/audit?format=jsonl", None, Some(&access3))
        .await;
    assert_eq!(export.status, 200);
    let kinds: Vec<String> = export
        .text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for expected in [
        "account_registered",
        "account_activated",
        "connection_failure",
        "connection_success",
        "token_reuse_detected",
        "password_changed",
        "logout",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "{expected} missing from {kinds:?}"
        );
    }
    assert_eq!(verify_export(&export.text), Ok(kinds.len()));
    for secret in [
        PASSWORD,
        "Maple-Delta-93",
        "Wrong-Pass-1",
        refresh.as_str(),
        access.as_str(),
    ] {
        assert!(!export.text.contains(secret), "the export leaks a secret");
    }
    for line in export.text.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["fields"]["client_address"], "192.0.2.10");
        assert!(record["time"].as_i64().unwrap() >= START * 1000);
    }

    // Deleting a record in the middle is found.
    let mut lines: Vec<&str> = export.text.lines().collect();
    lines.remove(2);
    let broken = verify_export(&lines.join("\n")).unwrap_err();
    assert_eq!(broken.line, 3);
}

#[tokio::test]
async fn bad_input_changes_nothing() {
    let h = Harness::new();
    for body in [
        json!({"email": "x@example.org", "password": PASSWORD}),
        json!({"email": "x@example.org", "password": 12345678, "activation_channel": "email"}),
        json!({"email": "x@example.org", "password": PASSWORD, "activation_channel": "fax"}),
        json!({"email": "x@example.org", "password": PASSWORD, "activation_channel": "email", "admin": true}),
        json!({"email": "x@example.org", "password": "password1A", "activation_channel": "sms"}),
    ] {
        let a = h.post("/v1/accounts", body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    }
    assert!(h.outbox.0.lock().unwrap().is_empty());
    h.register("x@example.org", "email").await;
    assert_eq!(h.outbox.count("x@example.org", Purpose::Activation), 1);
}

#[tokio::test]
async fn an_address_shared_by_many_is_limited_by_its_failures_only() {
    let h = Harness::new();
    h.active_account("ward@example.org").await;
    for _ in 0..150 {
        assert_eq!(h.login("ward@example.org", PASSWORD).await.status, 200);
    }
    // Password spraying from one address: every guess is for another account.
    let mut refused = 0;
    for i in 0..120 {
        let a = h.login(&format!("user{i}@example.org"), PASSWORD).await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert_eq!(refused, 20, "the address allows 100 failures, then locks");
}
