//! The HTTP front: axum routes every API path into the core; the web client is served at `/`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts as _, Path, Request, State};
use axum::response::Response;
use axum::routing::{any, get};
use bedside_core::api::{Api, Client, MAX_BODY_BYTES, error_response};
use bedside_core::{Error, ErrorCode, Timestamp};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

use crate::db::Sqlite;
use crate::outbox::HostOutbox;
use crate::rooms::{Backend, Rooms};

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
    /// The live rooms.
    pub rooms: Rooms,
}

/// The router: API paths into the core, everything else to the web folder if there is one.
pub fn app(state: AppState, web_dir: Option<PathBuf>) -> Router {
    let api = any(serve_api);
    let router = Router::new()
        .route("/healthz", api.clone())
        .route("/openapi.json", api.clone())
        .route("/.well-known/jwks.json", api.clone())
        .route("/v1", api.clone())
        .route("/v1/rooms/{id}/ws", get(room_socket))
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

/// The client's address: the peer, or, when the peer is a trusted proxy, the nearest address in
/// `X-Forwarded-For` that is not itself a trusted proxy (entries further left are the client's
/// own claims and are ignored).
pub fn client_address(req: &Request, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let chain = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut nearest = peer;
    for hop in chain.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        nearest = ip;
        if !trusted.contains(&ip) {
            break;
        }
    }
    Some(nearest)
}

/// API requests served at once, each on a blocking thread: hashing a password (argon2id,
/// 19 MiB by default) must not stall the async workers that carry the rooms. Half the blocking
/// pool, so the store's own blocking calls always find a thread and a full house of requests
/// cannot wait on itself.
static API_PERMITS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(crate::MAX_BLOCKING_THREADS / 2);

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
    let ended_room = ended_room(&request);
    // The core's work (password hashing above all) runs off the async workers, so rooms and
    // other connections keep flowing while logins hash.
    let Ok(_permit) = API_PERMITS.acquire().await else {
        return error_response(&Error::Refused(ErrorCode::Internal)).map(Body::from);
    };
    let worker = state.clone();
    let runtime = tokio::runtime::Handle::current();
    let served = tokio::task::spawn_blocking(move || {
        let client = Client { address };
        let api = &worker.api;
        runtime.block_on(api.handle(&worker.db, &worker.outbox, request, client, now(), seed()))
    })
    .await;
    let Ok(response) = served else {
        tracing::error!("request handler failed");
        return error_response(&Error::Refused(ErrorCode::Internal)).map(Body::from);
    };
    if let Some(id) = ended_room
        && response.status() == http::StatusCode::OK
    {
        state.rooms.end(&id).await;
    }
    response.map(Body::from)
}

/// The room a request ends, if it is `POST /v1/rooms/{id}/abort`: its live channel must end
/// with it.
fn ended_room(req: &http::Request<Bytes>) -> Option<String> {
    let id = req
        .uri()
        .path()
        .strip_prefix("/v1/rooms/")?
        .strip_suffix("/abort")?;
    (req.method() == http::Method::POST && Api::is_room_id(id)).then(|| id.to_owned())
}

/// `GET /v1/rooms/{id}/ws`: the room's signaling channel. The room must be live; who may join
/// is settled inside, by the token sent in `hello`.
async fn room_socket(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let refuse = |code: ErrorCode| error_response(&Error::Refused(code)).map(Body::from);
    if !Api::is_room_id(&id) {
        return refuse(ErrorCode::NotFound);
    }
    let address = client_address(&req, &state.trusted_proxies);
    let participants = match state.api.room_for_socket(&state.db, &id, now()).await {
        Ok(Some(participants)) => participants,
        Ok(None) => return refuse(ErrorCode::NotFound),
        Err(error) => return error_response(&error).map(Body::from),
    };
    let (mut parts, _) = req.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(_) => return refuse(ErrorCode::InvalidRequest),
    };
    let limit = state.rooms.config().max_message_bytes + 1024;
    let backend = Backend {
        api: Arc::clone(&state.api),
        db: state.db.clone(),
    };
    let rooms = state.rooms.clone();
    // Idle connections dominate: start with a small read buffer (it grows for large frames).
    upgrade
        .read_buffer_size(1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            rooms
                .serve(backend, id, participants, socket, address)
                .await;
        })
}
