//! Registration, activation and password reset: the routes that need no session.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::Deserialize;

use crate::audit::{self, EventType, Outcome};
use crate::outbox::{Channel, Outbox, Purpose};
use crate::password;
use crate::store::{Database, Statement, StoreError};
use crate::{Error, ErrorCode, lockout};

use super::codes::{self, Account};
use super::{Ctx, auth, json, no_content};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Register {
    email: String,
    password: String,
    #[serde(default)]
    phone: Option<String>,
    activation_channel: Channel,
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "email" => Ok(Channel::Email),
            "sms" => Ok(Channel::Sms),
            _ => Err(serde::de::Error::custom(
                "activation_channel must be email or sms",
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Activate {
    email: String,
    code: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EmailOnly {
    email: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResetConfirm {
    email: String,
    code: String,
    new_password: String,
}

const INSERT_ACCOUNT: &str = "\
INSERT INTO accounts (id, email, phone, password_hash, activation_channel, status, created_at)
VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)";

fn accepted(status: &str) -> Response<Bytes> {
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "status": status }),
    )
}

/// Sending routes are throttled per client address, to keep the outbox from being abused.
async fn throttle_sends<D: Database, O: Outbox>(ctx: &Ctx<'_, D, O>) -> Result<(), Error> {
    let key = format!("send:addr:{}", ctx.address);
    lockout::require(
        ctx.db,
        &key,
        &ctx.api.config.address_requests,
        ctx.now,
        ErrorCode::RateLimited,
    )
    .await
}

/// `POST /v1/accounts`: the answer is the same whether or not the address is taken.
pub(super) async fn register<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    req: Register,
) -> Result<Response<Bytes>, Error> {
    let email = codes::normalize_email(&req.email)?;
    let phone = req.phone.as_deref().map(codes::check_phone).transpose()?;
    if req.activation_channel == Channel::Sms && phone.is_none() {
        return Err(ErrorCode::PhoneRequired.into());
    }
    password::check_policy(&req.password)?;
    throttle_sends(ctx).await?;

    // Hash before looking the address up, so both answers take the same time.
    let hash = ctx.api.hasher.hash(&req.password, ctx.rng.bytes())?;
    if let Some(existing) = codes::account_by_email(ctx.db, &email).await? {
        notify_existing(ctx, &existing).await;
        return Ok(accepted("pending_activation"));
    }

    let account = Account {
        id: ctx.rng.id(),
        email,
        phone,
        password_hash: hash,
        channel: req.activation_channel,
        active: false,
        totp_state: "off".to_owned(),
        totp_seed: None,
        totp_last_step: 0,
        created_at: ctx.now.secs(),
    };
    let code = codes::issue(ctx, &account, Purpose::Activation);
    let channel = match account.channel {
        Channel::Email => "email",
        Channel::Sms => "sms",
    };
    let insert = Statement::new(
        INSERT_ACCOUNT,
        vec![
            account.id.as_str().into(),
            account.email.as_str().into(),
            account.phone.clone().into(),
            account.password_hash.as_str().into(),
            channel.into(),
            account.created_at.into(),
        ],
    );
    let event = ctx
        .event(
            EventType::AccountRegistered,
            Outcome::Success,
            Some(&account.id),
            "account registered",
        )
        .field("activation_channel", channel);
    match audit::commit(ctx.db, ctx.now, vec![insert, code.statement], &event).await {
        Ok(_) => codes::deliver(ctx, code.message).await,
        // Registered by a parallel request a moment ago: answer as for any taken address.
        Err(Error::Store(StoreError::Conflict)) => {}
        Err(e) => return Err(e),
    }
    Ok(accepted("pending_activation"))
}

async fn notify_existing<D: Database, O: Outbox>(ctx: &Ctx<'_, D, O>, existing: &Account) {
    let key = format!("notice:{}", existing.id);
    let policy = lockout::LockoutPolicy {
        free_attempts: 1,
        base_delay_secs: ctx.api.config.resend_interval_secs,
        max_delay_secs: 3600,
        hard_cap: i64::MAX,
        window_secs: 3600,
    };
    if let Ok(lockout::Reservation::Allowed) =
        lockout::reserve(ctx.db, &key, &policy, ctx.now).await
    {
        let notice = codes::registration_notice(&ctx.api.config.product_name, &existing.email);
        codes::deliver(ctx, notice).await;
    }
}

/// `POST /v1/accounts/activate`.
pub(super) async fn activate<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    req: Activate,
) -> Result<Response<Bytes>, Error> {
    auth::throttle_address(ctx).await?;
    let Ok(email) = codes::normalize_email(&req.email) else {
        return Err(ErrorCode::InvalidCode.into());
    };
    let Some(account) = codes::account_by_email(ctx.db, &email).await? else {
        return Err(ErrorCode::InvalidCode.into());
    };
    if account.active {
        return Err(ErrorCode::InvalidCode.into());
    }
    let key = auth::code_key(&account.id);
    auth::throttle_account(ctx, &key, Some(&account.id)).await?;
    if let Err(error) = codes::check(ctx, &account.id, Purpose::Activation, &req.code).await {
        let event = ctx.failure(EventType::AccountActivated, Some(&account.id), error.code());
        audit::record(ctx.db, ctx.now, &event).await?;
        return Err(error);
    }
    let change = vec![
        Statement::new(
            "UPDATE accounts SET status = 'active' WHERE id = ?1 AND status = 'pending'",
            vec![account.id.as_str().into()],
        ),
        lockout::clear(&key),
        auth::refund_address(ctx),
    ];
    let event = ctx.event(
        EventType::AccountActivated,
        Outcome::Success,
        Some(&account.id),
        "account activated",
    );
    audit::commit(ctx.db, ctx.now, change, &event).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"status": "active"}),
    ))
}

/// `POST /v1/accounts/activate/resend`: always the same answer.
pub(super) async fn resend<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    req: EmailOnly,
) -> Result<Response<Bytes>, Error> {
    send_code(ctx, &req.email, Purpose::Activation).await
}

/// `POST /v1/password-reset`: always the same answer.
pub(super) async fn reset_request<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    req: EmailOnly,
) -> Result<Response<Bytes>, Error> {
    send_code(ctx, &req.email, Purpose::PasswordReset).await
}

/// Sends a fresh code for `purpose` if the address belongs to an account in the right state
/// (pending for activation, active for a reset) and its send limits allow; answers the same in
/// every case, so the answer tells nothing about the address.
async fn send_code<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    email: &str,
    purpose: Purpose,
) -> Result<Response<Bytes>, Error> {
    throttle_sends(ctx).await?;
    let account = match codes::normalize_email(email) {
        Ok(email) => codes::account_by_email(ctx.db, &email).await?,
        Err(_) => None,
    };
    let wanted_active = purpose == Purpose::PasswordReset;
    let Some(account) = account.filter(|a| a.active == wanted_active) else {
        return Ok(accepted("sent"));
    };
    codes::issue_and_send(ctx, &account, purpose).await?;
    Ok(accepted("sent"))
}

/// `POST /v1/password-reset/confirm`: sets the password and ends every session.
pub(super) async fn reset_confirm<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    req: ResetConfirm,
) -> Result<Response<Bytes>, Error> {
    password::check_policy(&req.new_password)?;
    auth::throttle_address(ctx).await?;
    let Ok(email) = codes::normalize_email(&req.email) else {
        return Err(ErrorCode::InvalidCode.into());
    };
    let Some(account) = codes::account_by_email(ctx.db, &email).await? else {
        return Err(ErrorCode::InvalidCode.into());
    };
    let key = auth::code_key(&account.id);
    auth::throttle_account(ctx, &key, Some(&account.id)).await?;
    if let Err(error) = codes::check(ctx, &account.id, Purpose::PasswordReset, &req.code).await {
        let event = ctx.failure(EventType::PasswordReset, Some(&account.id), error.code());
        audit::record(ctx.db, ctx.now, &event).await?;
        return Err(error);
    }
    let hash = ctx.api.hasher.hash(&req.new_password, ctx.rng.bytes())?;
    let mut change = vec![
        Statement::new(
            "UPDATE accounts SET password_hash = ?1 WHERE id = ?2",
            vec![hash.into(), account.id.as_str().into()],
        ),
        lockout::clear(&key),
        auth::refund_address(ctx),
    ];
    change.extend(auth::end_all_sessions(&account.id, None, ctx.now));
    change.extend(auth::clear_account_throttles(&account.id));
    let event = ctx.event(
        EventType::PasswordReset,
        Outcome::Success,
        Some(&account.id),
        "password reset with a code; all sessions ended",
    );
    audit::commit(ctx.db, ctx.now, change, &event).await?;
    Ok(no_content())
}
