//! The HTTP API: routing, request parsing and answers, over `http` types.
//!
//! [`Api::handle`] serves one request. It never logs request data and never puts internal
//! detail in an answer: every failure becomes `{"error":{"code","message"}}` with a stable code.

mod accounts;
mod auth;
mod codes;
mod me;
mod rooms;

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::audit::{Event, EventType, Outcome};
use crate::config::Config;
use crate::crypto::{Rng, SecretKey};
use crate::outbox::Outbox;
use crate::password::Hasher;
use crate::store::Database;
use crate::tokens::Signer;
use crate::{Error, ErrorCode, Timestamp};

pub use rooms::{Room, RoomActivity, RoomState};

/// Largest request body accepted, in bytes. Adapters should stop reading past it.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The OpenAPI 3.1 description of this API, served at `/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// The longest user agent kept in an audit record.
const MAX_USER_AGENT: usize = 256;

/// Key material, loaded by the adapter from its secret store.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Seed of the Ed25519 token-signing key.
    pub signing_seed: SecretKey,
    /// Key-encryption key for secrets at rest (TOTP seeds).
    pub kek: SecretKey,
    /// Key for the HMAC of one-time and recovery codes.
    pub pepper: SecretKey,
}

/// Facts about the caller that only the adapter knows.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The client's address, as the adapter determined it.
    pub address: Option<IpAddr>,
}

/// The accounts API of one deployment.
#[derive(Debug)]
pub struct Api {
    config: Config,
    signer: Signer,
    hasher: Hasher,
    kek: SecretKey,
    pepper: SecretKey,
    turn_secret: Option<Vec<u8>>,
}

/// What one request works with.
struct Ctx<'a, D, O> {
    api: &'a Api,
    db: &'a D,
    outbox: &'a O,
    now: Timestamp,
    rng: Rng,
    address: String,
    user_agent: String,
}

impl<D: Database, O: Outbox> Ctx<'_, D, O> {
    /// An audit event with the caller's address and user agent attached.
    fn event(
        &self,
        kind: EventType,
        outcome: Outcome,
        requester: Option<&str>,
        message: &str,
    ) -> Event {
        Event::new(kind, outcome, requester, message)
            .field("client_address", self.address.clone())
            .field("user_agent", self.user_agent.clone())
    }

    /// A failure event carrying the error code.
    fn failure(&self, kind: EventType, requester: Option<&str>, code: ErrorCode) -> Event {
        self.event(kind, Outcome::Failure, requester, code.message())
            .field("error_code", code.as_str())
    }
}

impl Api {
    /// An API for `config` with `keys`; fails only if the signing key cannot be built.
    pub fn new(config: Config, keys: Keys) -> Result<Self, Error> {
        let signer = Signer::from_seed(
            keys.signing_seed.0,
            &config.issuer,
            &config.audience,
            config.token_leeway_secs,
        )?;
        Ok(Self {
            hasher: Hasher::new(config.argon2),
            signer,
            config,
            kek: keys.kek,
            pepper: keys.pepper,
            turn_secret: None,
        })
    }

    /// Sets the secret shared with the TURN relays, from which per-participant credentials are
    /// minted (see [`crate::ice`]). It never leaves the server.
    pub fn with_turn_secret(mut self, secret: Vec<u8>) -> Self {
        self.turn_secret = Some(secret);
        self
    }

    /// The deployment's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The token signer (for adapters that authenticate other channels, such as WebSockets).
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Serves one request at `now`, with `seed` as the request's randomness.
    pub async fn handle<D: Database, O: Outbox>(
        &self,
        db: &D,
        outbox: &O,
        request: Request<Bytes>,
        client: Client,
        now: Timestamp,
        seed: [u8; 32],
    ) -> Response<Bytes> {
        let user_agent = request
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(MAX_USER_AGENT).collect())
            .unwrap_or_default();
        let mut ctx = Ctx {
            api: self,
            db,
            outbox,
            now,
            rng: Rng::from_seed(seed),
            address: client.address.map(|a| a.to_string()).unwrap_or_default(),
            user_agent,
        };
        match route(&mut ctx, &request).await {
            Ok(response) => response,
            Err(error) => error_response(&error),
        }
    }
}

async fn route<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>, Error> {
    let path = req.uri().path();
    let method = req.method();
    let allow = |methods: &'static [Method]| -> Result<(), Error> {
        if methods.contains(method) {
            Ok(())
        } else {
            Err(Error::MethodNotAllowed(methods))
        }
    };
    match path {
        "/healthz" => {
            allow(&[Method::GET])?;
            Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"})))
        }
        "/openapi.json" => {
            allow(&[Method::GET])?;
            Ok(raw(StatusCode::OK, "application/json", OPENAPI_JSON.into()))
        }
        "/.well-known/jwks.json" => {
            allow(&[Method::GET])?;
            Ok(json(StatusCode::OK, &ctx.api.signer.jwks()))
        }
        "/v1/accounts" => {
            allow(&[Method::POST])?;
            accounts::register(ctx, body(req)?).await
        }
        "/v1/accounts/activate" => {
            allow(&[Method::POST])?;
            accounts::activate(ctx, body(req)?).await
        }
        "/v1/accounts/activate/resend" => {
            allow(&[Method::POST])?;
            accounts::resend(ctx, body(req)?).await
        }
        "/v1/password-reset" => {
            allow(&[Method::POST])?;
            accounts::reset_request(ctx, body(req)?).await
        }
        "/v1/password-reset/confirm" => {
            allow(&[Method::POST])?;
            accounts::reset_confirm(ctx, body(req)?).await
        }
        "/v1/auth/login" => {
            allow(&[Method::POST])?;
            auth::login(ctx, body(req)?).await
        }
        "/v1/auth/mfa" => {
            allow(&[Method::POST])?;
            auth::mfa(ctx, body(req)?).await
        }
        "/v1/auth/refresh" => {
            allow(&[Method::POST])?;
            auth::refresh(ctx, body(req)?).await
        }
        "/v1/auth/logout" => {
            allow(&[Method::POST])?;
            let who = auth::authenticate(ctx, req).await?;
            auth::logout(ctx, &who).await
        }
        "/v1/me" => {
            allow(&[Method::GET])?;
            let who = auth::authenticate(ctx, req).await?;
            me::profile(ctx, &who).await
        }
        "/v1/me/totp" => {
            allow(&[Method::POST, Method::DELETE])?;
            let who = auth::authenticate(ctx, req).await?;
            if method == Method::POST {
                me::totp_enrol(ctx, &who).await
            } else {
                me::totp_disable(ctx, &who, body(req)?).await
            }
        }
        "/v1/me/totp/confirm" => {
            allow(&[Method::POST])?;
            let who = auth::authenticate(ctx, req).await?;
            me::totp_confirm(ctx, &who, body(req)?).await
        }
        "/v1/me/password" => {
            allow(&[Method::POST])?;
            let who = auth::authenticate(ctx, req).await?;
            me::change_password(ctx, &who, body(req)?).await
        }
        "/v1/me/audit" => {
            allow(&[Method::GET])?;
            let who = auth::authenticate(ctx, req).await?;
            me::audit_export(ctx, &who, req.uri().query()).await
        }
        "/v1/rooms" => {
            allow(&[Method::POST])?;
            let who = auth::authenticate(ctx, req).await?;
            rooms::create(ctx, &who, body(req)?).await
        }
        _ => match path
            .strip_prefix("/v1/rooms/")
            .map(|rest| rest.split_once('/'))
        {
            Some(Some((id, action))) if rooms::is_room_id(id) => {
                let allowed: &'static [Method] = match action {
                    "accept" | "abort" => &[Method::POST],
                    "ice" => &[Method::GET],
                    _ => return Err(ErrorCode::NotFound.into()),
                };
                allow(allowed)?;
                let who = auth::authenticate(ctx, req).await?;
                match action {
                    "accept" => rooms::accept(ctx, &who, id).await,
                    "abort" => rooms::abort(ctx, &who, id).await,
                    _ => rooms::ice_config(ctx, &who, id).await,
                }
            }
            Some(None) => {
                let id = path.trim_start_matches("/v1/rooms/");
                if !rooms::is_room_id(id) {
                    return Err(ErrorCode::NotFound.into());
                }
                allow(&[Method::GET])?;
                let who = auth::authenticate(ctx, req).await?;
                rooms::show(ctx, &who, id).await
            }
            _ => Err(ErrorCode::NotFound.into()),
        },
    }
}

/// Parses a JSON body: content type, size, syntax, then shape (unknown fields refused).
fn body<T: DeserializeOwned>(req: &Request<Bytes>) -> Result<T, Error> {
    if req.body().len() > MAX_BODY_BYTES {
        return Err(ErrorCode::PayloadTooLarge.into());
    }
    let is_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ErrorCode::UnsupportedMediaType.into());
    }
    serde_json::from_slice(req.body()).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ErrorCode::InvalidRequest.into(),
            Category::Syntax | Category::Eof | Category::Io => ErrorCode::InvalidJson.into(),
        }
    })
}

fn raw(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Bytes> {
    raw(status, "application/json", value.to_string().into())
}

fn no_content() -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// Turns an error into its answer. Internal failures say only `internal`.
pub fn error_response(error: &Error) -> Response<Bytes> {
    let code = error.code();
    let status = match error {
        Error::Denied(_) => StatusCode::UNAUTHORIZED,
        _ => code.status(),
    };
    let mut response = json(
        status,
        &serde_json::json!({"error": {"code": code.as_str(), "message": code.message()}}),
    );
    if let Error::Throttled { retry_after, .. } = error
        && let Ok(value) = HeaderValue::from_str(&(*retry_after).max(1).to_string())
    {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    if let Error::MethodNotAllowed(methods) = error {
        let list: Vec<&str> = methods.iter().map(Method::as_str).collect();
        if let Ok(value) = HeaderValue::from_str(&list.join(", ")) {
            response.headers_mut().insert(http::header::ALLOW, value);
        }
    }
    if code == ErrorCode::Unauthorized || code == ErrorCode::InvalidToken {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
    }
    response
}
