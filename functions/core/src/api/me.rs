//! The caller's own account: profile, two-factor enrolment, password change, audit export.

use bytes::Bytes;
use http::header::{CONTENT_DISPOSITION, HeaderValue};
use http::{Response, StatusCode};
use serde::Deserialize;

use crate::audit::{self, EventType, Outcome};
use crate::outbox::Outbox;
use crate::store::{Database, Statement};
use crate::{Error, ErrorCode, crypto, lockout, password, totp};

use super::auth::{self, Caller, SecondFactor};
use super::codes::{self, Account};
use super::{Ctx, json, no_content, raw};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Confirm {
    code: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Disable {
    password: String,
    code: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangePassword {
    current_password: String,
    new_password: String,
}

async fn load<D: Database, O: Outbox>(ctx: &Ctx<'_, D, O>, who: &Caller) -> Result<Account, Error> {
    codes::account_by_id(ctx.db, &who.account)
        .await?
        .ok_or(Error::Denied(ErrorCode::InvalidToken))
}

/// Counts a credential attempt against the account's `key`.
async fn throttle<D: Database, O: Outbox>(ctx: &Ctx<'_, D, O>, key: &str) -> Result<(), Error> {
    let policy = &ctx.api.config.account_lockout;
    lockout::require(ctx.db, key, policy, ctx.now, ErrorCode::TooManyAttempts).await
}

/// `GET /v1/me`.
pub(super) async fn profile<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    who: &Caller,
) -> Result<Response<Bytes>, Error> {
    let account = load(ctx, who).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "id": account.id,
            "email": account.email,
            "phone": account.phone,
            "totp_enabled": account.totp_state == "on",
            "created_at": account.created_at,
        }),
    ))
}

/// `POST /v1/me/totp`: starts (or restarts) an enrolment; TOTP stays off until confirmed.
pub(super) async fn totp_enrol<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    who: &Caller,
) -> Result<Response<Bytes>, Error> {
    let account = load(ctx, who).await?;
    if account.totp_state == "on" {
        return Err(ErrorCode::TotpAlreadyEnabled.into());
    }
    let seed = totp::new_seed(&mut ctx.rng);
    let sealed = crypto::seal(
        &ctx.api.kek,
        auth::seed_aad(&account.id).as_bytes(),
        &seed,
        ctx.rng.bytes(),
    )?;
    ctx.db
        .query(Statement::new(
            "UPDATE accounts SET totp_state = 'pending', totp_seed = ?1, totp_last_step = 0 \
             WHERE id = ?2 AND totp_state != 'on'",
            vec![sealed.into(), account.id.as_str().into()],
        ))
        .await?;
    let p = totp::provisioning(&seed, &ctx.api.config.product_name, &account.email);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "secret": p.secret,
            "otpauth_uri": p.uri,
            "qr_svg": p.qr_svg,
            "qr_data_uri": p.qr_data_uri,
        }),
    ))
}

/// `POST /v1/me/totp/confirm`: the first code proves the app works; TOTP turns on and the
/// recovery codes are shown once.
pub(super) async fn totp_confirm<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    who: &Caller,
    req: Confirm,
) -> Result<Response<Bytes>, Error> {
    let account = load(ctx, who).await?;
    if account.totp_state != "pending" {
        return Err(ErrorCode::TotpNotPending.into());
    }
    throttle(ctx, &auth::mfa_key(&account.id)).await?;
    let seed = auth::open_seed(ctx, &account)?;
    let now = u64::try_from(ctx.now.secs()).unwrap_or(0);
    let Some(step) = totp::verify(&seed, &req.code, now, 0) else {
        let event = ctx.failure(
            EventType::TotpEnabled,
            Some(&account.id),
            ErrorCode::InvalidCode,
        );
        audit::record(ctx.db, ctx.now, &event).await?;
        return Err(ErrorCode::InvalidCode.into());
    };
    let step = i64::try_from(step).map_err(|_| Error::Corrupt("totp step"))?;
    let recovery = totp::new_recovery_codes(&mut ctx.rng);
    let sealed = account.totp_seed.clone().unwrap_or_default();
    // Every statement holds only while the enrolment this code proves is still pending: a
    // parallel confirm or a restarted enrolment turns the rest of the batch into no-ops.
    let id = account.id.as_str();
    let mut change = vec![Statement::new(
        "DELETE FROM recovery_codes WHERE account_id = ?1 AND EXISTS (SELECT 1 FROM accounts \
         WHERE id = ?1 AND totp_state = 'pending' AND totp_seed = ?2)",
        vec![id.into(), sealed.as_str().into()],
    )];
    for code in &recovery {
        let hash = crypto::hmac_hex(
            &ctx.api.pepper,
            totp::normalize_recovery_code(code).as_bytes(),
        );
        change.push(Statement::new(
            "INSERT INTO recovery_codes (account_id, code_hash) SELECT ?1, ?2 WHERE EXISTS \
             (SELECT 1 FROM accounts WHERE id = ?1 AND totp_state = 'pending' AND totp_seed = ?3)",
            vec![id.into(), hash.into(), sealed.as_str().into()],
        ));
    }
    change.push(Statement::new(
        "UPDATE accounts SET totp_state = 'on', totp_last_step = ?1 \
         WHERE id = ?2 AND totp_state = 'pending' AND totp_seed = ?3 RETURNING id",
        vec![step.into(), id.into(), sealed.as_str().into()],
    ));
    change.push(lockout::clear(&auth::mfa_key(id)));
    let event = ctx.event(
        EventType::TotpEnabled,
        Outcome::Success,
        Some(&account.id),
        "two-factor authentication enabled",
    );
    let rows = audit::commit(ctx.db, ctx.now, change, &event).await?;
    let turned_on = rows.get(recovery.len() + 1).is_some_and(|r| !r.is_empty());
    if !turned_on {
        return Err(ErrorCode::TotpNotPending.into());
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "recovery_codes": recovery }),
    ))
}

/// `DELETE /v1/me/totp`: needs the password and a current code (or a recovery code).
pub(super) async fn totp_disable<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    who: &Caller,
    req: Disable,
) -> Result<Response<Bytes>, Error> {
    let account = load(ctx, who).await?;
    if account.totp_state != "on" {
        return Err(ErrorCode::TotpNotEnabled.into());
    }
    throttle(ctx, &auth::mfa_key(&account.id)).await?;
    if !ctx.api.hasher.verify(&req.password, &account.password_hash) {
        let event = ctx.failure(
            EventType::TotpDisabled,
            Some(&account.id),
            ErrorCode::InvalidCredentials,
        );
        audit::record(ctx.db, ctx.now, &event).await?;
        return Err(Error::Denied(ErrorCode::InvalidCredentials));
    }
    let looks_like_totp =
        req.code.len() == totp::DIGITS && req.code.bytes().all(|c| c.is_ascii_digit());
    let factor = if looks_like_totp {
        SecondFactor::Totp(&req.code)
    } else {
        SecondFactor::Recovery(&req.code)
    };
    if let Err(error) = auth::check_second_factor(ctx, &account, &factor).await {
        let event = ctx.failure(EventType::TotpDisabled, Some(&account.id), error.code());
        audit::record(ctx.db, ctx.now, &event).await?;
        return Err(error);
    }
    let change = vec![
        Statement::new(
            "UPDATE accounts SET totp_state = 'off', totp_seed = NULL, totp_last_step = 0 \
             WHERE id = ?1",
            vec![account.id.as_str().into()],
        ),
        Statement::new(
            "DELETE FROM recovery_codes WHERE account_id = ?1",
            vec![account.id.as_str().into()],
        ),
        lockout::clear(&auth::mfa_key(&account.id)),
    ];
    let event = ctx.event(
        EventType::TotpDisabled,
        Outcome::Success,
        Some(&account.id),
        "two-factor authentication disabled",
    );
    audit::commit(ctx.db, ctx.now, change, &event).await?;
    Ok(no_content())
}

/// `POST /v1/me/password`: ends every other session of the account.
pub(super) async fn change_password<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    who: &Caller,
    req: ChangePassword,
) -> Result<Response<Bytes>, Error> {
    let account = load(ctx, who).await?;
    throttle(ctx, &auth::login_key(&account.id)).await?;
    if !ctx
        .api
        .hasher
        .verify(&req.current_password, &account.password_hash)
    {
        let event = ctx.failure(
            EventType::PasswordChanged,
            Some(&account.id),
            ErrorCode::InvalidCredentials,
        );
        audit::record(ctx.db, ctx.now, &event).await?;
        return Err(Error::Denied(ErrorCode::InvalidCredentials));
    }
    if let Err(code) = password::check_policy(&req.new_password) {
        ctx.db
            .query(lockout::clear(&auth::login_key(&account.id)))
            .await?;
        return Err(code.into());
    }
    let hash = ctx.api.hasher.hash(&req.new_password, ctx.rng.bytes())?;
    let change = vec![
        Statement::new(
            "UPDATE accounts SET password_hash = ?1 WHERE id = ?2",
            vec![hash.into(), account.id.as_str().into()],
        ),
        lockout::clear(&auth::login_key(&account.id)),
        codes::retire(&account.id, crate::outbox::Purpose::PasswordReset),
    ];
    let mut change = change;
    change.extend(auth::end_all_sessions(
        &account.id,
        Some(&who.session),
        ctx.now,
    ));
    let event = ctx.event(
        EventType::PasswordChanged,
        Outcome::Success,
        Some(&account.id),
        "password changed; other sessions ended",
    );
    audit::commit(ctx.db, ctx.now, change, &event).await?;
    Ok(no_content())
}

/// `GET /v1/me/audit?format=jsonl|csv`: the caller's own records, oldest first.
pub(super) async fn audit_export<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    who: &Caller,
    query: Option<&str>,
) -> Result<Response<Bytes>, Error> {
    let mut format = "jsonl";
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("format", value)) => format = value,
            _ => return Err(ErrorCode::InvalidRequest.into()),
        }
    }
    let records = audit::export(ctx.db, &who.account).await?;
    let (content_type, body, extension) = match format {
        "jsonl" => ("application/x-ndjson", audit::to_jsonl(&records), "jsonl"),
        "csv" => ("text/csv; charset=utf-8", audit::to_csv(&records), "csv"),
        _ => return Err(ErrorCode::InvalidRequest.into()),
    };
    let mut response = raw(StatusCode::OK, content_type, body.into());
    let disposition = format!("attachment; filename=\"bedside-audit.{extension}\"");
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
