//! Reports allocation events to the functions' audit endpoint: JSON batches POSTed over TLS
//! with a bearer service token, retried with backoff. The queue is bounded; what overflows is
//! counted in `bedside_relay_events_dropped_total`.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

use super::tls;
use crate::Error;
use crate::config::{Settings, Token};
use crate::proto::server::Event;

const QUEUE: usize = 10_000;
const BATCH: usize = 100;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Target {
    host: String,
    port: u16,
    path: String,
    token: Option<Token>,
    connector: TlsConnector,
}

type Queue = (mpsc::Sender<(Duration, Event)>, JoinHandle<()>);

/// Starts the reporter when `events_url` is configured.
pub(super) fn start(settings: &Settings) -> Result<Option<Queue>, Error> {
    let Some(url) = &settings.events_url else {
        return Ok(None);
    };
    let rest = url
        .strip_prefix("https://")
        .ok_or(Error::Config("events_url must be https"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, p.parse().map_err(|_| Error::Config("events_url port"))?)
        }
        _ => (authority, 443),
    };
    let ca = settings
        .events_ca
        .as_ref()
        .ok_or(Error::Config("events_url needs events_ca"))?;
    let target = Target {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        path: path.to_owned(),
        token: settings.events_token.clone(),
        connector: tls::connector(ca)?,
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::task::spawn_local(report(rx, Arc::new(target)));
    Ok(Some((tx, task)))
}

async fn report(mut rx: mpsc::Receiver<(Duration, Event)>, target: Arc<Target>) {
    let mut batch: Vec<String> = Vec::new();
    let mut closed = false;
    loop {
        if batch.is_empty() {
            match rx.recv().await {
                Some((at, event)) => batch.push(to_json(at, &event)),
                None => return,
            }
        }
        while batch.len() < BATCH {
            match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                Ok(Some((at, event))) => batch.push(to_json(at, &event)),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(250);
        loop {
            match post(&target, &batch).await {
                Ok(()) => {
                    debug!(events = batch.len(), "events reported");
                    batch.clear();
                    break;
                }
                Err(reason) if closed => {
                    warn!(
                        events = batch.len(),
                        reason, "events not reported at shutdown"
                    );
                    return;
                }
                Err(reason) => {
                    warn!(
                        events = batch.len(),
                        reason, "event report failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
        if closed {
            return;
        }
    }
}

async fn post(target: &Target, batch: &[String]) -> Result<(), &'static str> {
    let body = format!("{{\"events\":[{}]}}", batch.join(","));
    let attempt = async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|_| "connect failed")?;
        let name = ServerName::try_from(target.host.clone()).map_err(|_| "bad server name")?;
        let mut tls = target.connector.connect(name, tcp).await.map_err(|e| {
            debug!(error = %e, "tls to the events endpoint failed");
            "tls failed"
        })?;
        let auth = match &target.token {
            Some(token) => format!("authorization: Bearer {}\r\n", token.0),
            None => String::new(),
        };
        let request = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n{auth}\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            target.path,
            target.host,
            body.len()
        );
        tls.write_all(request.as_bytes())
            .await
            .map_err(|_| "write failed")?;
        let mut head = [0u8; 16];
        let n = tls.read(&mut head).await.map_err(|_| "read failed")?;
        let status = head
            .get(..n)
            .and_then(|h| std::str::from_utf8(h).ok())
            .unwrap_or("");
        if status.starts_with("HTTP/1.1 2") || status.starts_with("HTTP/1.0 2") {
            Ok(())
        } else {
            Err("endpoint refused the report")
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, attempt)
        .await
        .map_err(|_| "timed out")?
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn to_json(at: Duration, event: &Event) -> String {
    let at = at.as_secs();
    match event {
        Event::AllocationCreated {
            allocation,
            name,
            transport,
            client,
            relay,
        } => format!(
            "{{\"type\":\"allocation_created\",\"at\":{at},\"allocation\":{},\"room\":{},\
             \"transport\":\"{}\",\"client\":\"{client}\",\"relay\":\"{relay}\"}}",
            allocation.0,
            escape(name),
            transport.label()
        ),
        Event::AllocationFailed { name, client, code } => format!(
            "{{\"type\":\"allocation_failed\",\"at\":{at},\"room\":{},\"client\":\"{client}\",\
             \"code\":{code}}}",
            name.as_deref().map_or_else(|| "null".to_owned(), escape)
        ),
        Event::AllocationEnded {
            allocation,
            name,
            reason,
            packets,
            bytes,
        } => format!(
            "{{\"type\":\"allocation_ended\",\"at\":{at},\"allocation\":{},\"room\":{},\
             \"reason\":\"{}\",\"packets\":{packets},\"bytes\":{bytes}}}",
            allocation.0,
            escape(name),
            reason.label()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::server::{AllocationId, EndReason};

    #[test]
    fn events_encode_as_json_with_escaping() {
        let event = Event::AllocationEnded {
            allocation: AllocationId(7),
            name: "room \"a\"\n".into(),
            reason: EndReason::RoomEnded,
            packets: 3,
            bytes: 300,
        };
        assert_eq!(
            to_json(Duration::from_secs(5), &event),
            "{\"type\":\"allocation_ended\",\"at\":5,\"allocation\":7,\"room\":\"room \\\"a\\\"\\u000a\",\
             \"reason\":\"room_ended\",\"packets\":3,\"bytes\":300}"
        );
        let failed = Event::AllocationFailed {
            name: None,
            client: "127.0.0.1:1".parse().unwrap(),
            code: 401,
        };
        assert!(to_json(Duration::ZERO, &failed).contains("\"room\":null"));
    }
}
