//! Calls end to end: the HTTP room lifecycle through the router, and the signaling channel over
//! real WebSockets against the host listening on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt as _;
use base64::Engine as _;
use bedside_core::api::{Api, Keys};
use bedside_core::audit::verify_export;
use bedside_core::config::{Argon2Params, Config, TurnConfig};
use bedside_core::crypto::SecretKey;
use bedside_core::ice::rest_password;
use bedside_host::db::Sqlite;
use bedside_host::outbox::{FileSink, HostOutbox};
use bedside_host::rooms::Rooms;
use bedside_host::server::{AppState, app};
use bedside_host::tls::{self, TlsListener};
use futures_util::{SinkExt as _, StreamExt as _};
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tower::ServiceExt as _;

const PASSWORD: &str = "Tulip-Harbor-58";
const TURN_SECRET: &[u8] = b"relay-shared-secret";
const SDP_FINGERPRINT: &str = "a=fingerprint:sha-256 \
    AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A self-signed P-256 certificate for 127.0.0.1 (valid until 2126) and its key: test data only.
const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBkzCCATmgAwIBAgIUWO7EbQu1rbxqRIisSF4D12XqZaYwCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMYmVkc2lkZS10ZXN0MCAXDTI2MTIwMzE3MTMyMloYDzIxMjYx
MTA5MTcxMzIyWjAXMRUwEwYDVQQDDAxiZWRzaWRlLXRlc3QwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAAThBjFJhnFi10Y49ZCmb1yf9YsHNZzIW3C0k1wRnN+LKDM/
G0TlD6PpbdwS1IvezFk3JSgFENgaLCHnQdyD1C6jo2EwXzAdBgNVHQ4EFgQUsSt2
AX1iZICkuv1ad2bO3OLiguMwHwYDVR0jBBgwFoAUsSt2AX1iZICkuv1ad2bO3OLi
guMwDwYDVR0RBAgwBocEfwAAATAMBgNVHRMBAf8EAjAAMAoGCCqGSM49BAMCA0gA
MEUCIBaTjwREoQtKGqkw2y3105EGbNWv9Z5iB4bI1fC6YjpyAiEA3i2W7LA9Y57R
BH91kXHK6jn/UQEShkdSXuLcMuSwv8s=
-----END CERTIFICATE-----
";
const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgyQSmtkRPWgqS9Emg
ZZbb+sZe9TQbvz0XxK96gKyGwTehRANCAAThBjFJhnFi10Y49ZCmb1yf9YsHNZzI
W3C0k1wRnN+LKDM/G0TlD6PpbdwS1IvezFk3JSgFENgaLCHnQdyD1C6j
-----END PRIVATE KEY-----
";

struct Stack {
    app: Router,
    addr: SocketAddr,
    outbox: PathBuf,
    _dir: TempDir,
}

struct User {
    id: String,
    email: String,
    token: String,
}

/// A folder removed when the test ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Stack {
    async fn start(ring_secs: i64) -> Self {
        Self::start_with(ring_secs, false).await
    }

    /// The stack, serving TLS with the test certificate when `tls`.
    async fn start_with(ring_secs: i64, tls: bool) -> Self {
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).unwrap();
        let dir = std::env::temp_dir().join(format!("bedside-rooms-{}", u64::from_le_bytes(seed)));
        std::fs::create_dir_all(&dir).unwrap();
        let outbox = dir.join("outbox.jsonl");
        let config = Config {
            argon2: Argon2Params {
                m_kib: 64,
                t: 1,
                p: 1,
            },
            room_ring_secs: ring_secs,
            turn: Some(TurnConfig {
                ttl_secs: 300,
                ..TurnConfig::new(vec!["relay.bedside.test".into()])
            }),
            ..Config::default()
        };
        let keys = Keys {
            signing_seed: SecretKey([1; 32]),
            kek: SecretKey([2; 32]),
            pepper: SecretKey([3; 32]),
        };
        let state = AppState {
            api: Arc::new(
                Api::new(config, keys)
                    .unwrap()
                    .with_turn_secret(TURN_SECRET.to_vec()),
            ),
            db: Sqlite::open(&dir.join("bedside.sqlite3")).unwrap(),
            outbox: HostOutbox::File(FileSink::new(outbox.clone())),
            trusted_proxies: Arc::new(Vec::new()),
            rooms: Rooms::new(bedside_signaling::Config::default()),
        };
        let app = app(state, None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = app
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        if tls {
            std::fs::write(dir.join("cert.pem"), TEST_CERT).unwrap();
            std::fs::write(dir.join("key.pem"), TEST_KEY).unwrap();
            let acceptor = tls::acceptor(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
            let listener = TlsListener::new(listener, acceptor).unwrap();
            let listener = listener.tap_io(|_| {});
            tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
        } else {
            tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
        }
        Self {
            app,
            addr,
            outbox,
            _dir: TempDir(dir),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = if body.is_null() {
            req.body(axum::body::Body::empty()).unwrap()
        } else {
            req.header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap()
        };
        let response = self.app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn user(&self, name: &str) -> User {
        let email = format!("{name}@bedside.test");
        let body = json!({"email": email, "password": PASSWORD, "activation_channel": "email"});
        let (status, _) = self.call("POST", "/v1/accounts", None, body).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let code = std::fs::read_to_string(&self.outbox)
            .unwrap()
            .lines()
            .rev()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|m| m["to"] == email.as_str())
            .find_map(|m| m["code"].as_str().map(str::to_owned))
            .unwrap();
        let (status, _) = self
            .call(
                "POST",
                "/v1/accounts/activate",
                None,
                json!({"email": email, "code": code}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, tokens) = self
            .call(
                "POST",
                "/v1/auth/login",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let token = tokens["access_token"].as_str().unwrap().to_owned();
        let (_, me) = self.call("GET", "/v1/me", Some(&token), Value::Null).await;
        User {
            id: me["id"].as_str().unwrap().to_owned(),
            email,
            token,
        }
    }

    async fn ws(&self, room: &str) -> Ws {
        let url = format!("ws://{}/v1/rooms/{room}/ws", self.addr);
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    async fn audit(&self, user: &User) -> (String, Vec<Value>) {
        let (status, body) = self
            .call("GET", "/v1/me/audit", Some(&user.token), Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK);
        let text = body.as_str().unwrap().to_owned();
        let records = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (text, records)
    }

    /// Waits until the room reaches `state` (its end is written after the sockets close).
    async fn wait_state(&self, user: &User, room: &str, state: &str) -> Value {
        for _ in 0..500 {
            let (_, body) = self
                .call(
                    "GET",
                    &format!("/v1/rooms/{room}"),
                    Some(&user.token),
                    Value::Null,
                )
                .await;
            if body["state"] == state {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("room {room} never reached {state}");
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

async fn hello<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    token: &str,
    resume: Option<u64>,
) {
    send(
        ws,
        json!({"v": 1, "type": "hello", "token": token, "resume": resume}),
    )
    .await;
}

/// The next text frame as JSON, skipping the room's pings.
async fn recv<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] != "ping" {
                return value;
            }
        }
    }
}

/// Reads until the close frame and returns its code and reason.
async fn closed<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> (CloseCode, String) {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a close within 5 s");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code, frame.reason.to_string()),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

fn sdp(setup: &str) -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n{SDP_FINGERPRINT}\r\na=setup:{setup}\r\n"
    )
}

fn types(records: &[Value], room: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["room_id"] == room)
        .map(|r| r["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_call_from_request_to_end_over_websockets() {
    let stack = Stack::start(90).await;
    let alice = stack.user("alice").await;
    let bob = stack.user("bob").await;
    let carol = stack.user("carol").await;

    // Alice calls Bob by email; Carol learns nothing about the room.
    let (status, room) = stack
        .call(
            "POST",
            "/v1/rooms",
            Some(&alice.token),
            json!({"invitee": bob.email}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{room}");
    assert_eq!(room["state"], "ringing");
    assert_eq!(room["caller"], alice.id.as_str());
    assert_eq!(room["invitee"], bob.id.as_str());
    let id = room["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/rooms/{id}");
    let (status, body) = stack
        .call("GET", &path, Some(&carol.token), Value::Null)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = stack
        .call(
            "GET",
            &format!("{path}/ice"),
            Some(&carol.token),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = stack
        .call(
            "POST",
            &format!("{path}/accept"),
            Some(&alice.token),
            Value::Null,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_invitee"))
    );

    // Each participant gets TURN credentials of their own, under the relay's secret.
    let (status, ice) = stack
        .call("GET", &format!("{path}/ice"), Some(&bob.token), Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{ice}");
    let turn = &ice["iceServers"][1];
    let username = turn["username"].as_str().unwrap();
    assert!(
        username.ends_with(&format!(":{id}:{}", bob.id)),
        "{username}"
    );
    assert_eq!(
        turn["credential"],
        rest_password(TURN_SECRET, username).as_str()
    );
    assert_eq!(
        turn["urls"][2],
        "turns:relay.bedside.test:443?transport=tcp"
    );
    assert!(
        !ice.to_string()
            .contains(std::str::from_utf8(TURN_SECRET).unwrap())
    );
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(turn["credential"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded.len(), 20, "HMAC-SHA1");

    let (status, accepted) = stack
        .call(
            "POST",
            &format!("{path}/accept"),
            Some(&bob.token),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(accepted["state"], "active");

    // Alice joins first, then Bob; Alice hears of Bob and makes the offer.
    let mut a = stack.ws(&id).await;
    hello(&mut a, &alice.token, None).await;
    let welcome = recv(&mut a).await;
    assert_eq!(
        (welcome["type"].as_str(), welcome["user"].as_str()),
        (Some("welcome"), Some(alice.id.as_str()))
    );
    let mut b = stack.ws(&id).await;
    hello(&mut b, &bob.token, None).await;
    let welcome = recv(&mut b).await;
    assert_eq!(welcome["peers"][0]["user"], alice.id.as_str());
    let joined = recv(&mut a).await;
    assert_eq!(
        (joined["type"].as_str(), joined["state"].as_str()),
        (Some("presence"), Some("joined"))
    );

    send(
        &mut a,
        json!({"v": 1, "type": "offer", "sdp": sdp("actpass")}),
    )
    .await;
    let offer = recv(&mut b).await;
    assert_eq!(offer["type"], "offer");
    assert_eq!(offer["from"], alice.id.as_str());
    assert!(
        offer["sdp"]
            .as_str()
            .unwrap()
            .contains("a=fingerprint:sha-256 AB:CD")
    );
    send(
        &mut b,
        json!({"v": 1, "type": "answer", "sdp": sdp("active")}),
    )
    .await;
    assert_eq!(recv(&mut a).await["type"], "answer");
    let candidate = "candidate:842163049 1 udp 1677729535 127.0.0.1 50000 typ host";
    send(
        &mut a,
        json!({"v": 1, "type": "candidate", "candidate": candidate, "sdpMid": "0"}),
    )
    .await;
    let got = recv(&mut b).await;
    assert_eq!(
        (got["type"].as_str(), got["candidate"].as_str()),
        (Some("candidate"), Some(candidate))
    );
    send(&mut b, json!({"v": 1, "type": "end_of_candidates"})).await;
    assert_eq!(recv(&mut a).await["type"], "end_of_candidates");
    send(
        &mut b,
        json!({"v": 1, "type": "chat", "text": "Bonjour, docteur"}),
    )
    .await;
    let chat = recv(&mut a).await;
    assert_eq!(
        (chat["text"].as_str(), chat["from"].as_str()),
        (Some("Bonjour, docteur"), Some(bob.id.as_str()))
    );
    let b_last = got["seq"].as_u64().unwrap();

    // Bob's connection drops; what Alice says meanwhile reaches him when he resumes.
    drop(b);
    let reconnecting = recv(&mut a).await;
    assert_eq!(reconnecting["state"], "reconnecting");
    send(
        &mut a,
        json!({"v": 1, "type": "chat", "text": "Vous m'entendez ?"}),
    )
    .await;
    let mut b = stack.ws(&id).await;
    hello(&mut b, &bob.token, Some(b_last)).await;
    let welcome = recv(&mut b).await;
    assert_eq!(welcome["resumed"], true, "{welcome}");
    let mut replayed = Vec::new();
    loop {
        let frame = recv(&mut b).await;
        let done = frame["type"] == "chat";
        replayed.push(frame);
        if done {
            break;
        }
    }
    assert_eq!(replayed.last().unwrap()["text"], "Vous m'entendez ?");
    assert_eq!(recv(&mut a).await["state"], "resumed");

    // Carol, with a valid token, is no participant; a forged token is refused.
    let mut c = stack.ws(&id).await;
    hello(&mut c, &carol.token, None).await;
    assert_eq!(recv(&mut c).await["code"], "not_participant");
    assert_eq!(
        closed(&mut c).await,
        (CloseCode::from(4003), "not_participant".to_owned())
    );
    let mut forged = stack.ws(&id).await;
    hello(&mut forged, &format!("{}x", alice.token), None).await;
    assert_eq!(recv(&mut forged).await["code"], "invalid_token");
    assert_eq!(closed(&mut forged).await.0, CloseCode::from(4001));

    // Both hang up: the room ends and the store says so.
    send(&mut b, json!({"v": 1, "type": "leave"})).await;
    assert_eq!(closed(&mut b).await, (CloseCode::Normal, "left".to_owned()));
    assert_eq!(recv(&mut a).await["state"], "left");
    send(&mut a, json!({"v": 1, "type": "leave"})).await;
    let ended = stack.wait_state(&alice, &id, "ended").await;
    assert_eq!(ended["end_reason"], "completed");

    // Both exports tell the story with the room id, and their chains hold.
    for user in [&alice, &bob] {
        let (text, records) = stack.audit(user).await;
        verify_export(&text).unwrap();
        let seen = types(&records, &id);
        for wanted in [
            "session_request",
            "session_accepted",
            "room_joined",
            "room_left",
            "session_ended",
        ] {
            assert!(
                seen.iter().any(|t| t == wanted),
                "{} lacks {wanted}: {seen:?}",
                user.email
            );
        }
        assert_eq!(seen.iter().filter(|t| *t == "session_ended").count(), 1);
    }
    let (_, records) = stack.audit(&carol).await;
    assert!(records.iter().any(|r| r["room_id"] == id.as_str()
        && r["type"] == "connection_failure"
        && r["fields"]["error_code"] == "not_participant"));

    // The room is over: no new channel, no ICE.
    let (status, _) = stack
        .call("GET", &format!("{path}/ice"), Some(&bob.token), Value::Null)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let url = format!("ws://{}/v1/rooms/{id}/ws", stack.addr);
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}

#[tokio::test]
async fn ringing_rooms_abort_once_and_refuse_strangers() {
    let stack = Stack::start(1).await;
    let alice = stack.user("alice").await;
    let bob = stack.user("bob").await;

    let (status, body) = stack
        .call(
            "POST",
            "/v1/rooms",
            Some(&alice.token),
            json!({"invitee": alice.id}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("cannot_invite_self"))
    );
    let (status, body) = stack
        .call(
            "POST",
            "/v1/rooms",
            Some(&alice.token),
            json!({"invitee": "nobody@bedside.test"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("invitee_unknown"))
    );
    let (status, _) = stack
        .call("POST", "/v1/rooms", None, json!({"invitee": bob.id}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Declined by the invitee.
    let (_, room) = stack
        .call(
            "POST",
            "/v1/rooms",
            Some(&alice.token),
            json!({"invitee": bob.id}),
        )
        .await;
    let declined = room["id"].as_str().unwrap().to_owned();
    let (status, body) = stack
        .call(
            "POST",
            &format!("/v1/rooms/{declined}/abort"),
            Some(&bob.token),
            Value::Null,
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str(), body["end_reason"].as_str()),
        (StatusCode::OK, Some("aborted"), Some("declined"))
    );
    let (status, body) = stack
        .call(
            "POST",
            &format!("/v1/rooms/{declined}/accept"),
            Some(&bob.token),
            Value::Null,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("room_closed"))
    );

    // Nobody answers: the deadline passes and both readers see one abort.
    let (_, room) = stack
        .call(
            "POST",
            "/v1/rooms",
            Some(&alice.token),
            json!({"invitee": bob.email}),
        )
        .await;
    let missed = room["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let path = format!("/v1/rooms/{missed}");
    let (a, b) = tokio::join!(
        stack.call("GET", &path, Some(&alice.token), Value::Null),
        stack.call("GET", &path, Some(&bob.token), Value::Null),
    );
    assert_eq!(a.1["state"], "aborted");
    assert_eq!(b.1["end_reason"], "ring_timeout");
    for user in [&alice, &bob] {
        let (text, records) = stack.audit(user).await;
        verify_export(&text).unwrap();
        let seen = types(&records, &missed);
        assert_eq!(
            seen,
            ["session_request", "session_aborted"],
            "{}",
            user.email
        );
    }
    let url = format!("ws://{}/v1/rooms/{missed}/ws", stack.addr);
    assert!(
        tokio_tungstenite::connect_async(url).await.is_err(),
        "no channel for an aborted room"
    );
}

/// A WebSocket over TLS to the stack, trusting only the test certificate.
async fn wss(
    stack: &Stack,
    room: &str,
) -> WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(TEST_CERT.as_bytes()).unwrap())
        .unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(stack.addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let url = format!("wss://{}/v1/rooms/{room}/ws", stack.addr);
    tokio_tungstenite::client_async(url, tls).await.unwrap().0
}

#[tokio::test]
async fn the_channel_works_over_tls() {
    let stack = Stack::start_with(90, true).await;
    let alice = stack.user("alice").await;
    let bob = stack.user("bob").await;
    let (status, room) = stack
        .call(
            "POST",
            "/v1/rooms",
            Some(&alice.token),
            json!({"invitee": bob.id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = room["id"].as_str().unwrap();

    let mut a = wss(&stack, id).await;
    hello(&mut a, &alice.token, None).await;
    assert_eq!(recv(&mut a).await["type"], "welcome");
    let mut b = wss(&stack, id).await;
    hello(&mut b, &bob.token, None).await;
    assert_eq!(recv(&mut b).await["type"], "welcome");
    assert_eq!(recv(&mut a).await["state"], "joined");
    send(&mut b, json!({"v": 1, "type": "chat", "text": "over TLS"})).await;
    assert_eq!(recv(&mut a).await["text"], "over TLS");

    // The same port refuses plain WebSockets.
    let url = format!("ws://{}/v1/rooms/{id}/ws", stack.addr);
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}

/// The core's room lifecycle on simulated time over the embedded store: deadlines without
/// waiting, and racing transitions.
mod simulated {
    use std::sync::Mutex;

    use bedside_core::Timestamp;
    use bedside_core::api::{Client, RoomActivity};
    use bedside_core::outbox::{Message, Outbox, OutboxError};
    use bytes::Bytes;

    use super::*;

    const START: i64 = 1_800_000_000;

    #[derive(Default)]
    struct Codes(Mutex<Vec<Message>>);

    impl Outbox for Codes {
        async fn send(&self, message: Message) -> Result<(), OutboxError> {
            self.0.lock().unwrap().push(message);
            Ok(())
        }
    }

    struct Sim {
        api: Api,
        db: Sqlite,
        codes: Codes,
        now: Mutex<i64>,
        seed: Mutex<u64>,
    }

    impl Sim {
        fn new() -> Self {
            let config = Config {
                argon2: Argon2Params {
                    m_kib: 64,
                    t: 1,
                    p: 1,
                },
                room_ring_secs: 90,
                ..Config::default()
            };
            let keys = Keys {
                signing_seed: SecretKey([4; 32]),
                kek: SecretKey([5; 32]),
                pepper: SecretKey([6; 32]),
            };
            Self {
                api: Api::new(config, keys).unwrap(),
                db: Sqlite::memory().unwrap(),
                codes: Codes::default(),
                now: Mutex::new(START),
                seed: Mutex::new(0),
            }
        }

        fn now(&self) -> Timestamp {
            Timestamp::from_secs(*self.now.lock().unwrap())
        }

        fn advance(&self, secs: i64) {
            *self.now.lock().unwrap() += secs;
        }

        async fn call(
            &self,
            method: &str,
            path: &str,
            token: Option<&str>,
            body: Value,
        ) -> (StatusCode, Value) {
            let mut req = http::Request::builder().method(method).uri(path);
            if let Some(token) = token {
                req = req.header("authorization", format!("Bearer {token}"));
            }
            let bytes = if body.is_null() {
                Bytes::new()
            } else {
                req = req.header("content-type", "application/json");
                Bytes::from(body.to_string())
            };
            let seed = {
                let mut n = self.seed.lock().unwrap();
                *n += 1;
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&n.to_le_bytes());
                seed
            };
            let request = req.body(bytes).unwrap();
            let response = self
                .api
                .handle(
                    &self.db,
                    &self.codes,
                    request,
                    Client::default(),
                    self.now(),
                    seed,
                )
                .await;
            let status = response.status();
            let text = String::from_utf8(response.body().to_vec()).unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }

        async fn user(&self, name: &str) -> User {
            let email = format!("{name}@bedside.test");
            let body = json!({"email": email, "password": PASSWORD, "activation_channel": "email"});
            assert_eq!(
                self.call("POST", "/v1/accounts", None, body).await.0,
                StatusCode::ACCEPTED
            );
            let code = {
                let codes = self.codes.0.lock().unwrap();
                codes
                    .iter()
                    .rev()
                    .find(|m| m.to == email)
                    .unwrap()
                    .code
                    .clone()
                    .unwrap()
            };
            let body = json!({"email": email, "code": code});
            assert_eq!(
                self.call("POST", "/v1/accounts/activate", None, body)
                    .await
                    .0,
                StatusCode::OK
            );
            let body = json!({"email": email, "password": PASSWORD});
            let (_, tokens) = self.call("POST", "/v1/auth/login", None, body).await;
            let token = tokens["access_token"].as_str().unwrap().to_owned();
            let (_, me) = self.call("GET", "/v1/me", Some(&token), Value::Null).await;
            User {
                id: me["id"].as_str().unwrap().to_owned(),
                email,
                token,
            }
        }

        async fn room(&self, caller: &User, invitee: &User) -> String {
            let body = json!({"invitee": invitee.id});
            let (status, room) = self
                .call("POST", "/v1/rooms", Some(&caller.token), body)
                .await;
            assert_eq!(status, StatusCode::CREATED);
            room["id"].as_str().unwrap().to_owned()
        }

        async fn kinds(&self, user: &User, room: &str) -> Vec<String> {
            let (status, body) = self
                .call("GET", "/v1/me/audit", Some(&user.token), Value::Null)
                .await;
            assert_eq!(status, StatusCode::OK);
            let text = body.as_str().unwrap();
            verify_export(text).unwrap();
            let records: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            types(&records, room)
        }
    }

    #[tokio::test]
    async fn the_ring_deadline_is_an_input_and_is_recorded_once() {
        let sim = Sim::new();
        let (alice, bob) = (sim.user("alice").await, sim.user("bob").await);
        let id = sim.room(&alice, &bob).await;
        let path = format!("/v1/rooms/{id}");

        sim.advance(89);
        let (_, room) = sim.call("GET", &path, Some(&bob.token), Value::Null).await;
        assert_eq!(room["state"], "ringing");
        assert_eq!(
            sim.api
                .room_for_socket(&sim.db, &id, sim.now())
                .await
                .unwrap(),
            Some((alice.id.clone(), bob.id.clone()))
        );

        sim.advance(1);
        let (a, b) = tokio::join!(
            sim.call("GET", &path, Some(&alice.token), Value::Null),
            sim.call("GET", &path, Some(&bob.token), Value::Null),
        );
        assert_eq!(
            (a.1["state"].as_str(), b.1["state"].as_str()),
            (Some("aborted"), Some("aborted"))
        );
        assert_eq!(a.1["end_reason"], "ring_timeout");
        assert_eq!(
            sim.api
                .room_for_socket(&sim.db, &id, sim.now())
                .await
                .unwrap(),
            None
        );
        for user in [&alice, &bob] {
            assert_eq!(
                sim.kinds(user, &id).await,
                ["session_request", "session_aborted"]
            );
        }
    }

    #[tokio::test]
    async fn racing_accept_and_abort_leave_one_consistent_story() {
        let sim = Sim::new();
        let (alice, bob) = (sim.user("alice").await, sim.user("bob").await);
        for _ in 0..20 {
            let id = sim.room(&alice, &bob).await;
            let (accept, abort) = (
                format!("/v1/rooms/{id}/accept"),
                format!("/v1/rooms/{id}/abort"),
            );
            let ((accepted, _), (aborted, _)) = tokio::join!(
                sim.call("POST", &accept, Some(&bob.token), Value::Null),
                sim.call("POST", &abort, Some(&alice.token), Value::Null),
            );
            assert_eq!(
                aborted,
                StatusCode::OK,
                "abort wins or ends the accepted call"
            );
            let (_, room) = sim
                .call(
                    "GET",
                    &format!("/v1/rooms/{id}"),
                    Some(&bob.token),
                    Value::Null,
                )
                .await;
            let expected: &[&str] = match (accepted, room["state"].as_str().unwrap()) {
                (StatusCode::OK, "ended") => {
                    &["session_request", "session_accepted", "session_ended"]
                }
                (StatusCode::CONFLICT, "aborted") => &["session_request", "session_aborted"],
                other => panic!("inconsistent outcome {other:?}"),
            };
            for user in [&alice, &bob] {
                assert_eq!(sim.kinds(user, &id).await, expected);
            }
        }
    }

    #[tokio::test]
    async fn the_channel_accepts_on_the_invitees_join_and_closes_the_room() {
        let sim = Sim::new();
        let (alice, bob) = (sim.user("alice").await, sim.user("bob").await);
        let id = sim.room(&alice, &bob).await;
        let client = Client::default();

        let joined = |account| RoomActivity::Joined {
            account,
            resumed: false,
        };
        sim.api
            .record_room_activity(&sim.db, &id, joined(&alice.id), &client, sim.now())
            .await
            .unwrap();
        let (_, room) = sim
            .call(
                "GET",
                &format!("/v1/rooms/{id}"),
                Some(&bob.token),
                Value::Null,
            )
            .await;
        assert_eq!(
            room["state"], "ringing",
            "the caller joining accepts nothing"
        );
        sim.api
            .record_room_activity(&sim.db, &id, joined(&bob.id), &client, sim.now())
            .await
            .unwrap();
        let (_, room) = sim
            .call(
                "GET",
                &format!("/v1/rooms/{id}"),
                Some(&bob.token),
                Value::Null,
            )
            .await;
        assert_eq!(room["state"], "active");

        sim.api
            .close_room(&sim.db, &id, "completed", sim.now())
            .await
            .unwrap();
        sim.api
            .close_room(&sim.db, &id, "host", sim.now())
            .await
            .unwrap();
        let (_, room) = sim
            .call(
                "GET",
                &format!("/v1/rooms/{id}"),
                Some(&alice.token),
                Value::Null,
            )
            .await;
        assert_eq!(
            (room["state"].as_str(), room["end_reason"].as_str()),
            (Some("ended"), Some("completed"))
        );
        assert_eq!(
            sim.kinds(&alice, &id).await,
            [
                "session_request",
                "room_joined",
                "session_accepted",
                "session_ended"
            ]
        );
        assert_eq!(
            sim.kinds(&bob, &id).await,
            [
                "session_request",
                "session_accepted",
                "room_joined",
                "session_ended"
            ]
        );
    }
}
