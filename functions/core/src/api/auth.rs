//! Login, second factor, token refresh and logout, and bearer authentication.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde::Deserialize;

use crate::audit::{self, EventType, Outcome};
use crate::outbox::Outbox;
use crate::store::{Database, Statement};
use crate::tokens::TokenKind;
use crate::{Error, ErrorCode, Timestamp, crypto, lockout, totp};

use super::codes::{self, Account};
use super::{Ctx, json, no_content};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Login {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Mfa {
    mfa_token: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Refresh {
    refresh_token: String,
}

/// An authenticated caller: proof that a live session presented a valid access token.
#[derive(Debug, Clone)]
pub(super) struct Caller {
    pub account: String,
    pub session: String,
}

/// A second factor presented by its owner.
pub(super) enum SecondFactor<'a> {
    Totp(&'a str),
    Recovery(&'a str),
}

impl SecondFactor<'_> {
    fn method(&self) -> &'static str {
        match self {
            Self::Totp(_) => "totp",
            Self::Recovery(_) => "recovery_code",
        }
    }
}

pub(super) fn login_key(account: &str) -> String {
    format!("login:acct:{account}")
}

pub(super) fn mfa_key(account: &str) -> String {
    format!("mfa:acct:{account}")
}

pub(super) fn code_key(account: &str) -> String {
    format!("code:acct:{account}")
}

/// The statements that forget an account's failure counters.
pub(super) fn clear_account_throttles(account: &str) -> [Statement; 3] {
    [
        lockout::clear(&login_key(account)),
        lockout::clear(&mfa_key(account)),
        lockout::clear(&code_key(account)),
    ]
}

/// Ends every live session of `account` except `keep`, and every pending second-factor
/// challenge.
pub(super) fn end_all_sessions(
    account: &str,
    keep: Option<&str>,
    now: Timestamp,
) -> [Statement; 2] {
    [
        Statement::new(
            "UPDATE sessions SET revoked_at = ?1 \
             WHERE account_id = ?2 AND revoked_at IS NULL AND id IS NOT ?3",
            vec![
                now.secs().into(),
                account.into(),
                keep.map(str::to_owned).into(),
            ],
        ),
        Statement::new(
            "DELETE FROM mfa_challenges WHERE account_id = ?1",
            vec![account.into()],
        ),
    ]
}

/// The failure counter of the caller's address. IPv6 clients are counted per /64, the block a
/// single subscriber usually holds.
pub(super) fn address_key<D, O>(ctx: &Ctx<'_, D, O>) -> String {
    match ctx.address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!(
                "login:addr:{:x}:{:x}:{:x}:{:x}::/64",
                s[0], s[1], s[2], s[3]
            )
        }
        _ => format!("login:addr:{}", ctx.address),
    }
}

/// Hands back the attempt a success counted against the caller's address.
pub(super) fn refund_address<D, O>(ctx: &Ctx<'_, D, O>) -> Statement {
    lockout::refund(&address_key(ctx), &ctx.api.config.address_lockout)
}

/// Counts a credential attempt from the caller's address. A success hands it back with
/// [`lockout::refund`], so only failures add up for an address many people share.
pub(super) async fn throttle_address<D: Database, O: Outbox>(
    ctx: &Ctx<'_, D, O>,
) -> Result<(), Error> {
    lockout::require(
        ctx.db,
        &address_key(ctx),
        &ctx.api.config.address_lockout,
        ctx.now,
        ErrorCode::TooManyAttempts,
    )
    .await
}

/// Counts an attempt on `key` (per account). A refusal is recorded in the audit log and also
/// counts against the caller's address; once the address is locked too, refusals are no longer
/// recorded, so nobody can flood another account's audit chain.
pub(super) async fn throttle_account<D: Database, O: Outbox>(
    ctx: &Ctx<'_, D, O>,
    key: &str,
    account: Option<&str>,
) -> Result<(), Error> {
    let policy = &ctx.api.config.account_lockout;
    let result = lockout::require(ctx.db, key, policy, ctx.now, ErrorCode::TooManyAttempts).await;
    if let Err(Error::Throttled { retry_after, .. }) = &result {
        tracing::warn!(
            free_attempts = policy.free_attempts,
            retry_after,
            "credential attempts locked out"
        );
        let address = &ctx.api.config.address_lockout;
        let charged = lockout::reserve(ctx.db, &address_key(ctx), address, ctx.now).await?;
        if charged == lockout::Reservation::Allowed {
            let event = ctx.failure(
                EventType::ConnectionFailure,
                account,
                ErrorCode::TooManyAttempts,
            );
            audit::record(ctx.db, ctx.now, &event).await?;
        }
    }
    result
}

/// `POST /v1/auth/login`.
pub(super) async fn login<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    req: Login,
) -> Result<Response<Bytes>, Error> {
    // A malformed address is simply an unknown account (counted under its own key).
    let email =
        codes::normalize_email(&req.email).unwrap_or_else(|_| req.email.trim().to_lowercase());
    let account = codes::account_by_email(ctx.db, &email).await?;
    let key = match &account {
        Some(a) => login_key(&a.id),
        None => login_key(&format!("email:{}", crypto::sha256_hex(email.as_bytes()))),
    };
    let requester = account.as_ref().map(|a| a.id.clone());
    let requester = requester.as_deref();
    throttle_account(ctx, &key, requester).await?;
    throttle_address(ctx).await?;

    let Some(account) = account.filter(|a| ctx.api.hasher.verify(&req.password, &a.password_hash))
    else {
        if requester.is_none() {
            ctx.api.hasher.burn(&req.password);
        }
        let event = ctx
            .failure(
                EventType::ConnectionFailure,
                requester,
                ErrorCode::InvalidCredentials,
            )
            .field("method", "password");
        audit::record(ctx.db, ctx.now, &event).await?;
        return Err(Error::Denied(ErrorCode::InvalidCredentials));
    };
    if !account.active {
        ctx.db
            .batch(vec![lockout::clear(&key), refund_address(ctx)])
            .await?;
        let event = ctx.failure(
            EventType::ConnectionFailure,
            Some(&account.id),
            ErrorCode::AccountNotActive,
        );
        audit::record(ctx.db, ctx.now, &event).await?;
        return Err(ErrorCode::AccountNotActive.into());
    }

    let mut change = vec![lockout::clear(&key), refund_address(ctx)];
    if ctx.api.hasher.needs_rehash(&account.password_hash) {
        let upgraded = ctx.api.hasher.hash(&req.password, ctx.rng.bytes())?;
        change.push(Statement::new(
            "UPDATE accounts SET password_hash = ?1 WHERE id = ?2",
            vec![upgraded.into(), account.id.as_str().into()],
        ));
    }
    if account.totp_state == "on" {
        let token_id = ctx.rng.id();
        let ttl = ctx.api.config.mfa_ttl_secs;
        change.push(Statement::new(
            "INSERT INTO mfa_challenges (jti, account_id, expires_at) VALUES (?1, ?2, ?3)",
            vec![
                token_id.as_str().into(),
                account.id.as_str().into(),
                (ctx.now.secs() + ttl).into(),
            ],
        ));
        ctx.db.batch(change).await?;
        let token =
            ctx.api
                .signer
                .issue(TokenKind::Mfa, &account.id, None, &token_id, ctx.now, ttl)?;
        return Ok(json(
            StatusCode::OK,
            &serde_json::json!({"mfa_required": true, "mfa_token": token, "expires_in": ttl}),
        ));
    }
    let event = ctx
        .event(
            EventType::ConnectionSuccess,
            Outcome::Success,
            Some(&account.id),
            "logged in",
        )
        .field("method", "password");
    start_session(ctx, &account.id, change, &event).await
}

/// `POST /v1/auth/mfa`: completes a login with a TOTP or recovery code.
pub(super) async fn mfa<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    req: Mfa,
) -> Result<Response<Bytes>, Error> {
    let factor = match (&req.code, &req.recovery_code) {
        (Some(code), None) => SecondFactor::Totp(code),
        (None, Some(code)) => SecondFactor::Recovery(code),
        _ => return Err(ErrorCode::InvalidRequest.into()),
    };
    let verified = ctx
        .api
        .signer
        .verify(TokenKind::Mfa, &req.mfa_token, ctx.now)
        .map_err(Error::Denied)?;
    let account = codes::account_by_id(ctx.db, &verified.subject)
        .await?
        .filter(|a| a.active && a.totp_state == "on")
        .ok_or(Error::Denied(ErrorCode::InvalidToken))?;
    let key = mfa_key(&account.id);
    throttle_account(ctx, &key, Some(&account.id)).await?;
    throttle_address(ctx).await?;
    let live = ctx
        .db
        .query(Statement::new(
            "SELECT jti FROM mfa_challenges \
             WHERE jti = ?1 AND account_id = ?2 AND used_at IS NULL AND expires_at > ?3",
            vec![
                verified.token_id.as_str().into(),
                account.id.as_str().into(),
                ctx.now.secs().into(),
            ],
        ))
        .await?;
    if live.is_empty() {
        return Err(Error::Denied(ErrorCode::InvalidToken));
    }

    // A wrong code leaves the challenge open (the counters limit the guesses); a right one
    // spends it below, once.
    if let Err(error) = check_second_factor(ctx, &account, &factor).await {
        let event = ctx
            .failure(
                EventType::ConnectionFailure,
                Some(&account.id),
                error.code(),
            )
            .field("method", factor.method());
        audit::record(ctx.db, ctx.now, &event).await?;
        return Err(error);
    }
    let event = ctx
        .event(
            EventType::ConnectionSuccess,
            Outcome::Success,
            Some(&account.id),
            "logged in",
        )
        .field("method", factor.method());
    spend_challenge(ctx, &verified.token_id, &account.id).await?;
    let change = vec![lockout::clear(&key), refund_address(ctx)];
    start_session(ctx, &account.id, change, &event).await
}

/// Marks a second-factor challenge used; a challenge completes one login, and ends with a
/// password change or reset.
async fn spend_challenge<D: Database, O: Outbox>(
    ctx: &Ctx<'_, D, O>,
    token_id: &str,
    account: &str,
) -> Result<(), Error> {
    let now = ctx.now.secs();
    let rows = ctx
        .db
        .query(Statement::new(
            "UPDATE mfa_challenges SET used_at = ?1 \
             WHERE jti = ?2 AND account_id = ?3 AND used_at IS NULL AND expires_at > ?1 \
             RETURNING jti",
            vec![now.into(), token_id.into(), account.into()],
        ))
        .await?;
    if rows.is_empty() {
        return Err(Error::Denied(ErrorCode::InvalidToken));
    }
    Ok(())
}

/// Checks and spends a second factor: a TOTP code newer than the last one accepted, or an
/// unused recovery code. Failures answer 401 `invalid_code`.
pub(super) async fn check_second_factor<D: Database, O: Outbox>(
    ctx: &Ctx<'_, D, O>,
    account: &Account,
    factor: &SecondFactor<'_>,
) -> Result<(), Error> {
    let denied = Error::Denied(ErrorCode::InvalidCode);
    match factor {
        SecondFactor::Totp(code) => {
            let seed = open_seed(ctx, account)?;
            let now = u64::try_from(ctx.now.secs()).unwrap_or(0);
            let last = u64::try_from(account.totp_last_step).unwrap_or(0);
            let step = totp::verify(&seed, code, now, last).ok_or(denied)?;
            let step = i64::try_from(step).map_err(|_| Error::Corrupt("totp step"))?;
            // Spend the step atomically: of two parallel uses of one code, one wins.
            let rows = ctx
                .db
                .query(Statement::new(
                    "UPDATE accounts SET totp_last_step = ?1 \
                     WHERE id = ?2 AND totp_last_step < ?1 RETURNING id",
                    vec![step.into(), account.id.as_str().into()],
                ))
                .await?;
            if rows.is_empty() {
                return Err(Error::Denied(ErrorCode::InvalidCode));
            }
        }
        SecondFactor::Recovery(code) => {
            let normalized = totp::normalize_recovery_code(code);
            let hash = crypto::hmac_hex(&ctx.api.pepper, normalized.as_bytes());
            let rows = ctx
                .db
                .query(Statement::new(
                    "UPDATE recovery_codes SET used_at = ?1 \
                     WHERE account_id = ?2 AND code_hash = ?3 AND used_at IS NULL \
                     RETURNING account_id",
                    vec![
                        ctx.now.secs().into(),
                        account.id.as_str().into(),
                        hash.into(),
                    ],
                ))
                .await?;
            if rows.is_empty() {
                return Err(denied);
            }
        }
    }
    Ok(())
}

/// Decrypts the account's TOTP seed.
pub(super) fn open_seed<D: Database, O: Outbox>(
    ctx: &Ctx<'_, D, O>,
    account: &Account,
) -> Result<Vec<u8>, Error> {
    let sealed = account
        .totp_seed
        .as_deref()
        .ok_or(Error::Corrupt("totp seed missing"))?;
    crypto::open(&ctx.api.kek, seed_aad(&account.id).as_bytes(), sealed)
}

/// What a TOTP seed is bound to when sealed.
pub(super) fn seed_aad(account: &str) -> String {
    format!("totp-seed:{account}")
}

const INSERT_SESSION: &str = "\
INSERT INTO sessions (id, account_id, created_at, last_seen_at, expires_at)
VALUES (?1, ?2, ?3, ?3, ?4)";
const INSERT_REFRESH: &str =
    "INSERT INTO refresh_tokens (hash, session_id, issued_at) VALUES (?1, ?2, ?3)";

/// Opens a session with `change` and `event` in the same batch, and answers with its tokens.
async fn start_session<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    account: &str,
    mut change: Vec<Statement>,
    event: &audit::Event,
) -> Result<Response<Bytes>, Error> {
    let session = ctx.rng.id();
    let now = ctx.now.secs();
    let expires_at = now + ctx.api.config.session_absolute_secs;
    change.push(Statement::new(
        INSERT_SESSION,
        vec![
            session.as_str().into(),
            account.into(),
            now.into(),
            expires_at.into(),
        ],
    ));
    let (refresh, refresh_stmt) = new_refresh(ctx, &session);
    change.push(refresh_stmt);
    audit::commit(ctx.db, ctx.now, change, event).await?;
    token_pair(ctx, account, &session, refresh, expires_at)
}

fn new_refresh<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    session: &str,
) -> (String, Statement) {
    let token = B64URL.encode(ctx.rng.bytes::<32>());
    let stmt = Statement::new(
        INSERT_REFRESH,
        vec![
            crypto::sha256_hex(token.as_bytes()).into(),
            session.into(),
            ctx.now.secs().into(),
        ],
    );
    (token, stmt)
}

fn token_pair<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    account: &str,
    session: &str,
    refresh: String,
    session_expires_at: i64,
) -> Result<Response<Bytes>, Error> {
    let config = &ctx.api.config;
    let token_id = ctx.rng.id();
    let access = ctx.api.signer.issue(
        TokenKind::Access,
        account,
        Some(session),
        &token_id,
        ctx.now,
        config.access_ttl_secs,
    )?;
    let refresh_expires_in = config
        .session_idle_secs
        .min(session_expires_at - ctx.now.secs());
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": config.access_ttl_secs,
            "refresh_token": refresh,
            "refresh_expires_in": refresh_expires_in,
        }),
    ))
}

const SPEND_REFRESH: &str = "\
UPDATE refresh_tokens SET used_at = ?1 WHERE hash = ?2 AND used_at IS NULL RETURNING session_id";
const FIND_REFRESH: &str = "SELECT session_id FROM refresh_tokens WHERE hash = ?1";
const SESSION: &str = "\
SELECT account_id, last_seen_at, expires_at, revoked_at FROM sessions WHERE id = ?1";

/// `POST /v1/auth/refresh`: rotates the refresh token. A token used twice means it leaked:
/// the session ends.
pub(super) async fn refresh<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    req: Refresh,
) -> Result<Response<Bytes>, Error> {
    let invalid = || Error::Denied(ErrorCode::InvalidToken);
    let hash = crypto::sha256_hex(req.refresh_token.as_bytes());
    let now = ctx.now.secs();
    let spent = ctx
        .db
        .query(Statement::new(
            SPEND_REFRESH,
            vec![now.into(), hash.as_str().into()],
        ))
        .await?;
    let Some(session) = spent.first().and_then(|r| r.text(0)).map(str::to_owned) else {
        return reuse_or_unknown(ctx, &hash).await;
    };
    let rows = ctx
        .db
        .query(Statement::new(SESSION, vec![session.as_str().into()]))
        .await?;
    let Some((account, last_seen, expires_at, revoked)) = rows.first().and_then(|r| {
        Some((
            r.text(0)?.to_owned(),
            r.int(1)?,
            r.int(2)?,
            r.int(3).is_some(),
        ))
    }) else {
        return Err(invalid());
    };
    let idle = now - last_seen > ctx.api.config.session_idle_secs;
    if revoked || idle || expires_at <= now {
        return Err(invalid());
    }
    let (token, stmt) = new_refresh(ctx, &session);
    ctx.db
        .batch(vec![
            stmt,
            Statement::new(
                "UPDATE sessions SET last_seen_at = ?1 WHERE id = ?2",
                vec![now.into(), session.as_str().into()],
            ),
        ])
        .await?;
    token_pair(ctx, &account, &session, token, expires_at)
}

async fn reuse_or_unknown<D: Database, O: Outbox>(
    ctx: &Ctx<'_, D, O>,
    hash: &str,
) -> Result<Response<Bytes>, Error> {
    let rows = ctx
        .db
        .query(Statement::new(FIND_REFRESH, vec![hash.into()]))
        .await?;
    let Some(session) = rows.first().and_then(|r| r.text(0)).map(str::to_owned) else {
        return Err(Error::Denied(ErrorCode::InvalidToken));
    };
    let owner = ctx
        .db
        .query(Statement::new(SESSION, vec![session.as_str().into()]))
        .await?
        .first()
        .and_then(|r| r.text(0).map(str::to_owned));
    tracing::warn!("refresh token reused: session revoked");
    let event = ctx
        .event(
            EventType::TokenReuseDetected,
            Outcome::Failure,
            owner.as_deref(),
            "a used refresh token was presented again; the session was ended",
        )
        .field("error_code", ErrorCode::InvalidToken.as_str());
    let revoke = Statement::new(
        "UPDATE sessions SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
        vec![ctx.now.secs().into(), session.into()],
    );
    audit::commit(ctx.db, ctx.now, vec![revoke], &event).await?;
    Err(Error::Denied(ErrorCode::InvalidToken))
}

/// `POST /v1/auth/logout`.
pub(super) async fn logout<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    who: &Caller,
) -> Result<Response<Bytes>, Error> {
    let revoke = Statement::new(
        "UPDATE sessions SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
        vec![ctx.now.secs().into(), who.session.as_str().into()],
    );
    let event = ctx.event(
        EventType::Logout,
        Outcome::Success,
        Some(&who.account),
        "logged out",
    );
    audit::commit(ctx.db, ctx.now, vec![revoke], &event).await?;
    Ok(no_content())
}

/// Checks the bearer token and that its session is still live.
pub(super) async fn authenticate<D: Database, O: Outbox>(
    ctx: &Ctx<'_, D, O>,
    req: &Request<Bytes>,
) -> Result<Caller, Error> {
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .ok_or(ErrorCode::Unauthorized)?;
    let token = header
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or(ErrorCode::InvalidToken)?;
    verify_access(ctx.api, ctx.db, token.trim(), ctx.now).await
}

/// Verifies an access token and its session at `now`.
pub(super) async fn verify_access<D: Database>(
    api: &super::Api,
    db: &D,
    token: &str,
    now: Timestamp,
) -> Result<Caller, Error> {
    let verified = api.signer.verify(TokenKind::Access, token, now)?;
    let session = verified.session.ok_or(ErrorCode::InvalidToken)?;
    let rows = db
        .query(Statement::new(SESSION, vec![session.as_str().into()]))
        .await?;
    let live = rows.first().is_some_and(|r| {
        r.text(0) == Some(verified.subject.as_str())
            && r.int(3).is_none()
            && r.int(2).is_some_and(|exp| exp > now.secs())
    });
    if !live {
        return Err(ErrorCode::InvalidToken.into());
    }
    Ok(Caller {
        account: verified.subject,
        session,
    })
}
