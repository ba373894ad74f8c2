//! Two small HTTP/1.1 endpoints: Prometheus metrics and health on a loopback port, and the
//! control call over TLS with a bearer service token:
//!
//! - `GET /metrics`, `GET /health` (503 while draining)
//! - `POST /v1/rooms/{room}/end` ends every allocation of the room at once.
//!
//! Requests are small and rare, so a minimal parser (request line, headers, no body) is enough.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::{SharedRef, now};
use crate::Pii;
use crate::config::Token;
use crate::proto::codec::constant_time_eq;

const MAX_REQUEST: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Request {
    method: String,
    path: String,
    authorization: Option<String>,
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    fn json(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.into(),
        }
    }
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Request> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if buf.len() >= MAX_REQUEST || stream.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    }
    let text = std::str::from_utf8(&buf).ok()?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let authorization = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim().to_owned());
    Some(Request {
        method,
        path,
        authorization,
    })
}

async fn write_response<S: AsyncWrite + Unpin>(stream: &mut S, response: Response) {
    let reason = match response.status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(response.body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Serves `/metrics` and `/health`.
pub(super) async fn serve_metrics(shared: SharedRef, listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::task::spawn_local(async move {
            let request = tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await;
            let Ok(Some(request)) = request else {
                return;
            };
            let response = match (request.method.as_str(), request.path.as_str()) {
                ("GET", "/metrics") => Response::text(200, metrics(&shared)),
                ("GET", "/health") if shared.borrow().draining => Response::text(503, "draining\n"),
                ("GET", "/health") => Response::text(200, "ok\n"),
                _ => Response::text(404, "not found\n"),
            };
            write_response(&mut stream, response).await;
        });
    }
}

fn metrics(shared: &SharedRef) -> String {
    let state = shared.borrow();
    let stats = state.server.stats();
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP bedside_relay_{name} {help}");
        let _ = writeln!(out, "# TYPE bedside_relay_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "bedside_relay_{name}{labels} {value}");
        }
    };
    let active = state.server.allocation_count() as u64;
    metric("allocations", "gauge", "Allocations now.", &[("", active)]);
    metric(
        "allocations_created_total",
        "counter",
        "Allocations created.",
        &[("", stats.allocations_created)],
    );
    metric(
        "allocations_ended_total",
        "counter",
        "Allocations ended.",
        &[("", stats.allocations_ended)],
    );
    metric(
        "allocations_failed_total",
        "counter",
        "Allocate requests refused.",
        &[("", stats.allocations_failed)],
    );
    metric(
        "packets_total",
        "counter",
        "Relayed packets.",
        &[
            ("{direction=\"to_peer\"}", stats.packets_to_peer),
            ("{direction=\"to_client\"}", stats.packets_to_client),
        ],
    );
    metric(
        "bytes_total",
        "counter",
        "Relayed payload bytes.",
        &[
            ("{direction=\"to_peer\"}", stats.bytes_to_peer),
            ("{direction=\"to_client\"}", stats.bytes_to_client),
        ],
    );
    metric(
        "auth_failures_total",
        "counter",
        "Requests refused for credentials.",
        &[("", stats.auth_failures)],
    );
    metric(
        "peer_denials_total",
        "counter",
        "Peers refused by the address policy.",
        &[("", stats.peer_denials)],
    );
    metric(
        "quota_rejections_total",
        "counter",
        "Requests refused by a quota.",
        &[("", stats.quota_rejections)],
    );
    metric(
        "rate_limited_total",
        "counter",
        "401 answers suppressed.",
        &[("", stats.rate_limited)],
    );
    metric(
        "dropped_total",
        "counter",
        "Packets dropped by the relay logic.",
        &[("", stats.dropped)],
    );
    metric(
        "send_errors_total",
        "counter",
        "Packets the sockets could not send.",
        &[("", state.io.send_errors.get())],
    );
    metric(
        "events_dropped_total",
        "counter",
        "Audit events dropped.",
        &[("", state.io.events_dropped.get())],
    );
    metric(
        "draining",
        "gauge",
        "1 while draining.",
        &[("", u64::from(state.draining))],
    );
    out
}

/// Serves the control call over TLS.
pub(super) async fn serve_control(
    shared: SharedRef,
    listener: TcpListener,
    tls: Rc<RefCell<TlsAcceptor>>,
    token: Token,
) {
    let token = Rc::new(token);
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let acceptor = tls.borrow().clone();
        let (shared, token) = (shared.clone(), token.clone());
        tokio::task::spawn_local(async move {
            let handshake = tokio::time::timeout(REQUEST_TIMEOUT, acceptor.accept(tcp)).await;
            let Ok(Ok(mut stream)) = handshake else {
                debug!(peer = %Pii(peer), "control tls handshake failed");
                return;
            };
            let request = tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await;
            let Ok(Some(request)) = request else {
                return;
            };
            let response = control(&shared, &token, &request);
            write_response(&mut stream, response).await;
        });
    }
}

fn control(shared: &SharedRef, token: &Token, request: &Request) -> Response {
    let presented = request
        .authorization
        .as_deref()
        .and_then(|v| v.strip_prefix("Bearer "));
    let authorized = presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.0.as_bytes()));
    if !authorized {
        warn!("control call with a missing or wrong token");
        return Response::json(401, "{\"error\":\"unauthorized\"}");
    }
    let room = request
        .path
        .strip_prefix("/v1/rooms/")
        .and_then(|rest| rest.strip_suffix("/end"))
        .filter(|room| !room.is_empty() && !room.contains('/'));
    let Some(room) = room else {
        return Response::json(404, "{\"error\":\"not found\"}");
    };
    if request.method != "POST" {
        return Response::json(405, "{\"error\":\"method not allowed\"}");
    }
    let room = percent_decode(room);
    let mut state = shared.borrow_mut();
    let ended = state.server.end_room(&room);
    state.flush(now());
    info!(room = %Pii(&room), ended, "room ended by control call");
    Response::json(200, format!("{{\"ended\":{ended}}}"))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("room%2D1"), "room-1");
        assert_eq!(percent_decode("a%3Ab"), "a:b");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("tail%4"), "tail%4");
    }
}
