//! One-time codes (activation, password reset): issue, deliver, consume; and input checks
//! shared by the handlers.

use crate::crypto::{self, hmac_hex};
use crate::outbox::{Channel, Message, Outbox, Purpose};
use crate::store::{Database, Row, Statement};
use crate::{Error, ErrorCode};

use super::Ctx;

/// Letters and digits without look-alikes, for codes typed from an email.
const EMAIL_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// The columns of an account the handlers need. No `Debug`: it holds the password hash and the
/// sealed TOTP seed.
#[derive(Clone)]
pub(super) struct Account {
    pub id: String,
    pub email: String,
    pub phone: Option<String>,
    pub password_hash: String,
    pub channel: Channel,
    pub active: bool,
    pub totp_state: String,
    pub totp_seed: Option<String>,
    pub totp_last_step: i64,
    pub created_at: i64,
}

impl Account {
    fn from_row(row: &Row) -> Option<Self> {
        Some(Self {
            id: row.text(0)?.to_owned(),
            email: row.text(1)?.to_owned(),
            phone: row.text(2).map(str::to_owned),
            password_hash: row.text(3)?.to_owned(),
            channel: match row.text(4)? {
                "sms" => Channel::Sms,
                _ => Channel::Email,
            },
            active: row.text(5)? == "active",
            totp_state: row.text(6)?.to_owned(),
            totp_seed: row.text(7).map(str::to_owned),
            totp_last_step: row.int(8)?,
            created_at: row.int(9)?,
        })
    }

    /// Where codes for this account go.
    pub fn destination(&self) -> (Channel, String) {
        match (&self.channel, &self.phone) {
            (Channel::Sms, Some(phone)) => (Channel::Sms, phone.clone()),
            _ => (Channel::Email, self.email.clone()),
        }
    }
}

const BY_EMAIL: &str = "SELECT id, email, phone, password_hash, activation_channel, status, \
    totp_state, totp_seed, totp_last_step, created_at FROM accounts WHERE email = ?1";
const BY_ID: &str = "SELECT id, email, phone, password_hash, activation_channel, status, \
    totp_state, totp_seed, totp_last_step, created_at FROM accounts WHERE id = ?1";

/// Loads an account by normalized email.
pub(super) async fn account_by_email<D: Database>(
    db: &D,
    email: &str,
) -> Result<Option<Account>, Error> {
    load(db, BY_EMAIL, email).await
}

/// Loads an account by id.
pub(super) async fn account_by_id<D: Database>(db: &D, id: &str) -> Result<Option<Account>, Error> {
    load(db, BY_ID, id).await
}

async fn load<D: Database>(db: &D, sql: &'static str, key: &str) -> Result<Option<Account>, Error> {
    let rows = db.query(Statement::new(sql, vec![key.into()])).await?;
    match rows.first() {
        None => Ok(None),
        Some(row) => Account::from_row(row)
            .map(Some)
            .ok_or(Error::Corrupt("account row")),
    }
}

impl Purpose {
    fn column(self) -> &'static str {
        match self {
            Purpose::PasswordReset => "password_reset",
            _ => "activation",
        }
    }
}

/// The keyed hash a code is stored as, bound to its account and purpose.
fn code_hash(pepper: &crypto::SecretKey, account: &str, purpose: Purpose, code: &str) -> String {
    let normalized: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    hmac_hex(
        pepper,
        format!("{account}:{}:{normalized}", purpose.column()).as_bytes(),
    )
}

/// A code ready to be stored and sent.
pub(super) struct IssuedCode {
    pub statement: Statement,
    pub message: Message,
}

/// Stores a new code unless the account's send limits say no: at most one message per
/// `?7` seconds and `?8` per hour. The limits are checked in the same statement that writes, so
/// parallel requests cannot each send; no row comes back when nothing may be sent.
const UPSERT_CODE: &str = "\
INSERT INTO one_time_codes (account_id, purpose, code_hash, expires_at, attempts_left, sent_at,
                            window_start, window_sends)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1)
ON CONFLICT (account_id, purpose) DO UPDATE SET
    code_hash = excluded.code_hash,
    expires_at = excluded.expires_at,
    attempts_left = excluded.attempts_left,
    sent_at = excluded.sent_at,
    window_start = CASE WHEN one_time_codes.window_start <= ?6 - 3600 THEN ?6
                        ELSE one_time_codes.window_start END,
    window_sends = CASE WHEN one_time_codes.window_start <= ?6 - 3600 THEN 1
                        ELSE one_time_codes.window_sends + 1 END
WHERE one_time_codes.sent_at <= ?6 - ?7
  AND (one_time_codes.window_start <= ?6 - 3600 OR one_time_codes.window_sends < ?8)
RETURNING account_id";

/// Makes a new code for `account`. The returned statement stores it (and retires the old one)
/// only if the send limits allow: send the message only if the statement returns a row.
pub(super) fn issue<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    account: &Account,
    purpose: Purpose,
) -> IssuedCode {
    let now = ctx.now.secs();
    let config = &ctx.api.config;
    let (channel, to) = account.destination();
    let (code, ttl) = match channel {
        Channel::Sms => (ctx.rng.digits(6), config.sms_code_ttl_secs),
        Channel::Email => (
            ctx.rng.from_alphabet(EMAIL_ALPHABET, 8),
            config.email_code_ttl_secs,
        ),
    };
    let hash = code_hash(&ctx.api.pepper, &account.id, purpose, &code);
    let statement = Statement::new(
        UPSERT_CODE,
        vec![
            account.id.as_str().into(),
            purpose.column().into(),
            hash.into(),
            (now + ttl).into(),
            config.code_attempts.into(),
            now.into(),
            config.resend_interval_secs.into(),
            config.sends_per_hour.into(),
        ],
    );
    let message = compose(&config.product_name, channel, to, purpose, &code, ttl);
    IssuedCode { statement, message }
}

/// Stores a code with [`issue`] and sends it if the limits allowed.
pub(super) async fn issue_and_send<D: Database, O: Outbox>(
    ctx: &mut Ctx<'_, D, O>,
    account: &Account,
    purpose: Purpose,
) -> Result<(), Error> {
    let code = issue(ctx, account, purpose);
    if ctx.db.query(code.statement).await?.is_empty() {
        let config = &ctx.api.config;
        tracing::warn!(
            interval = config.resend_interval_secs,
            per_hour = config.sends_per_hour,
            "code not sent: per-account send limit reached"
        );
        return Ok(());
    }
    deliver(ctx, code.message).await;
    Ok(())
}

fn compose(
    product: &str,
    channel: Channel,
    to: String,
    purpose: Purpose,
    code: &str,
    ttl: i64,
) -> Message {
    let lifetime = if ttl >= 3600 {
        format!("{} hours", ttl / 3600)
    } else {
        format!("{} minutes", ttl / 60)
    };
    let (subject, what) = match purpose {
        Purpose::PasswordReset => (format!("{product} password reset code"), "password reset"),
        _ => (format!("{product} activation code"), "activation"),
    };
    let body = format!(
        "Your {product} {what} code is {code}. It expires in {lifetime}. \
         If you did not ask for it, ignore this message."
    );
    Message {
        to,
        channel,
        subject,
        body,
        code: Some(code.to_owned()),
        purpose,
    }
}

/// A notice to the owner of an address that someone tried to register it again.
pub(super) fn registration_notice(product: &str, email: &str) -> Message {
    Message {
        to: email.to_owned(),
        channel: Channel::Email,
        subject: format!("{product}: someone tried to register your address"),
        body: format!(
            "Someone tried to create a {product} account with this address, which already has \
             one. If it was you, log in or reset your password. Otherwise ignore this message."
        ),
        code: None,
        purpose: Purpose::RegistrationNotice,
    }
}

const SPEND_ATTEMPT: &str = "\
UPDATE one_time_codes SET attempts_left = attempts_left - 1
WHERE account_id = ?1 AND purpose = ?2 AND attempts_left > 0
RETURNING code_hash, expires_at";
const CONSUME: &str = "\
DELETE FROM one_time_codes WHERE account_id = ?1 AND purpose = ?2 AND code_hash = ?3
RETURNING account_id";

/// Spends one attempt on `account`'s code, checks `code`, and consumes it: of two parallel
/// requests with the same code, one gets through.
pub(super) async fn check<D: Database, O: Outbox>(
    ctx: &Ctx<'_, D, O>,
    account_id: &str,
    purpose: Purpose,
    code: &str,
) -> Result<(), Error> {
    let rows = ctx
        .db
        .query(Statement::new(
            SPEND_ATTEMPT,
            vec![account_id.into(), purpose.column().into()],
        ))
        .await?;
    let Some((stored, expires_at)) = rows
        .first()
        .and_then(|r| Some((r.text(0)?.to_owned(), r.int(1)?)))
    else {
        return Err(ErrorCode::InvalidCode.into());
    };
    let presented = code_hash(&ctx.api.pepper, account_id, purpose, code);
    if !crypto::ct_eq(stored.as_bytes(), presented.as_bytes()) {
        return Err(ErrorCode::InvalidCode.into());
    }
    if expires_at <= ctx.now.secs() {
        return Err(ErrorCode::CodeExpired.into());
    }
    let consumed = ctx
        .db
        .query(Statement::new(
            CONSUME,
            vec![account_id.into(), purpose.column().into(), stored.into()],
        ))
        .await?;
    if consumed.is_empty() {
        return Err(ErrorCode::InvalidCode.into());
    }
    Ok(())
}

/// The statement that retires any outstanding code for `purpose`.
pub(super) fn retire(account_id: &str, purpose: Purpose) -> Statement {
    Statement::new(
        "DELETE FROM one_time_codes WHERE account_id = ?1 AND purpose = ?2",
        vec![account_id.into(), purpose.column().into()],
    )
}

/// Hands a message to the outbox. A failed hand-over is reported to the operator; the caller's
/// change stands (the user can ask again).
pub(super) async fn deliver<D: Database, O: Outbox>(ctx: &Ctx<'_, D, O>, message: Message) {
    let channel = message.channel;
    let purpose = message.purpose;
    // The error text may carry the recipient: the sender logs its own details.
    if ctx.outbox.send(message).await.is_err() {
        tracing::error!(
            ?channel,
            ?purpose,
            "message could not be handed to the outbox"
        );
    }
}

/// Normalizes and checks an email address: trimmed, lower-cased, ASCII, `local@domain` with a
/// dotted domain, at most 254 characters.
pub(super) fn normalize_email(raw: &str) -> Result<String, ErrorCode> {
    let email = raw.trim().to_ascii_lowercase();
    if email.len() > 254 || !email.is_ascii() {
        return Err(ErrorCode::InvalidEmail);
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(ErrorCode::InvalidEmail);
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_`{|}~-".contains(&c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        });
    if local_ok && domain_ok {
        Ok(email)
    } else {
        Err(ErrorCode::InvalidEmail)
    }
}

/// Checks an E.164 phone number: `+`, then 8 to 15 digits, the first not 0.
pub(super) fn check_phone(raw: &str) -> Result<String, ErrorCode> {
    let Some(digits) = raw.strip_prefix('+') else {
        return Err(ErrorCode::InvalidPhone);
    };
    let ok = (8..=15).contains(&digits.len())
        && digits.bytes().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ErrorCode::InvalidPhone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email("  Ana.Lopez@Example.ORG ").unwrap(),
            "ana.lopez@example.org"
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.org",
            "ana@example",
            "ana@@example.org",
            "ana@exa mple.org",
            "ana..b@example.org",
            "ana@-example.org",
            "añа@example.org",
            "ana@example.org\0",
            "ana\u{202e}@example.org",
        ] {
            assert_eq!(
                normalize_email(bad),
                Err(ErrorCode::InvalidEmail),
                "{bad:?}"
            );
        }
        let long = format!("{}@example.org", "a".repeat(250));
        assert_eq!(normalize_email(&long), Err(ErrorCode::InvalidEmail));
    }

    #[test]
    fn phones_are_e164() {
        assert!(check_phone("+41791234567").is_ok());
        for bad in [
            "41791234567",
            "+0791234567",
            "+4179",
            "+41 79 123 45 67",
            "+4179123456789012",
        ] {
            assert_eq!(check_phone(bad), Err(ErrorCode::InvalidPhone), "{bad:?}");
        }
    }

    #[test]
    fn codes_hash_per_account_and_purpose_and_ignore_formatting() {
        let pepper = crypto::SecretKey([1; 32]);
        let a = code_hash(&pepper, "acct", Purpose::Activation, "ABCD-EFGH");
        assert_eq!(
            a,
            code_hash(&pepper, "acct", Purpose::Activation, "abcd efgh")
        );
        assert_ne!(
            a,
            code_hash(&pepper, "other", Purpose::Activation, "ABCD-EFGH")
        );
        assert_ne!(
            a,
            code_hash(&pepper, "acct", Purpose::PasswordReset, "ABCD-EFGH")
        );
    }
}
