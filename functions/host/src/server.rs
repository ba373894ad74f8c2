//! The HTTP front: axum routes every API path into the core; the web client is served at `/`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::any;
use bedside_core::api::{Api, Client, MAX_BODY_BYTES, error_response};
use bedside_core::{Error, ErrorCode, Timestamp};
use http_body_util::BodyExt as _;
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

use crate::db::Sqlite;
use crate::outbox::HostOutbox;

/// What every request shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The accounts API.
    pub api: Arc<Api>,
    /// The store.
    pub db: Sqlite,
    /// The message sender.
    pub outbox: HostOutbox,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<Vec<IpAddr>>,
}

/// The router: API paths into the core, everything else to the web folder if there is one.
pub fn app(state: AppState, web_dir: Option<PathBuf>) -> Router {
    let api = any(serve_api);
    let router = Router::new()
        .route("/healthz", api.clone())
        .route("/openapi.json", api.clone())
        .route("/.well-known/jwks.json", api.clone())
        .route("/v1", api.clone())
        .route("/v1/{*rest}", api.clone());
    let router = match web_dir {
        Some(dir) => router.fallback_service(ServeDir::new(dir)),
        None => router.fallback(serve_api),
    };
    router.layer(TraceLayer::new_for_http()).with_state(state)
}

/// The wall clock, as the core wants it.
pub fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Timestamp(i64::try_from(millis).unwrap_or(i64::MAX))
}

/// 32 bytes from the operating system's CSPRNG.
pub fn seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    // Without system randomness nothing here is safe to run.
    if let Err(e) = getrandom::fill(&mut seed) {
        panic!("no system randomness: {e}");
    }
    seed
}

fn client_address(req: &Request, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let forwarded = || {
        req.headers()
            .get("x-forwarded-for")?
            .to_str()
            .ok()?
            .rsplit(',')
            .next()?
            .trim()
            .parse()
            .ok()
    };
    match peer {
        Some(ip) if trusted.contains(&ip) => forwarded().or(Some(ip)),
        other => other,
    }
}

async fn serve_api(State(state): State<AppState>, req: Request) -> Response {
    let address = client_address(&req, &state.trusted_proxies);
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    let bytes = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return error_response(&Error::Refused(ErrorCode::PayloadTooLarge)).map(Body::from);
        }
    };
    let request = http::Request::from_parts(parts, bytes);
    let response = state
        .api
        .handle(
            &state.db,
            &state.outbox,
            request,
            Client { address },
            now(),
            seed(),
        )
        .await;
    response.map(Body::from)
}
