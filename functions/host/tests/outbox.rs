//! The message senders against real local servers: a provider API stand-in on loopback for the
//! HTTP sender, and the file sink's format. (SMTP is tested against a real SMTP server by
//! `tests/suites/21-smtp.sh`.)

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bedside_core::outbox::{Channel, Message, Outbox, Purpose};
use bedside_host::outbox::{FileSink, HostOutbox, HttpSender};

type Seen = Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>;

async fn provider(status: StatusCode) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/messages",
            post(
                move |State(seen): State<Seen>, headers: HeaderMap, body: String| async move {
                    let auth = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    seen.lock()
                        .unwrap()
                        .push((auth, serde_json::from_str(&body).unwrap()));
                    status
                },
            ),
        )
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/messages", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn sms() -> Message {
    Message {
        to: "+41791234567".into(),
        channel: Channel::Sms,
        subject: "Bedside activation code".into(),
        body: "Your Bedside activation code is 123456.".into(),
        code: Some("123456".into()),
        purpose: Purpose::Activation,
    }
}

#[tokio::test]
async fn provider_api_gets_the_message_with_the_token() {
    let (url, seen) = provider(StatusCode::ACCEPTED).await;
    let outbox = HostOutbox::Http(HttpSender::new(url, "provider-token".into()));
    outbox.send(sms()).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0.as_deref(), Some("Bearer provider-token"));
    assert_eq!(seen[0].1["to"], "+41791234567");
    assert_eq!(seen[0].1["channel"], "sms");
    assert_eq!(seen[0].1["code"], "123456");
}

#[tokio::test]
async fn provider_refusal_is_an_error() {
    let (url, _) = provider(StatusCode::INTERNAL_SERVER_ERROR).await;
    let outbox = HostOutbox::Http(HttpSender::new(url, "t".into()));
    assert!(outbox.send(sms()).await.is_err());
}

#[tokio::test]
async fn file_sink_appends_one_json_line_per_message() {
    let dir = std::env::temp_dir().join(format!("bedside-outbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("outbox.jsonl");
    let _ = std::fs::remove_file(&path);
    let outbox = HostOutbox::File(FileSink::new(path.clone()));
    outbox.send(sms()).await.unwrap();
    outbox.send(sms()).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for key in ["to", "channel", "subject", "body", "code", "purpose"] {
        assert!(lines[0].get(key).is_some(), "{key}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
