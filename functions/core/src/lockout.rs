//! Lockout and rate limits: failure counters kept in the store and reserved atomically.
//!
//! ```text
//!            attempt (reserve: one atomic upsert)
//!   ┌──────────────┐  counter < free  ┌────────────┐ success ┌───────────┐
//!   │ check allowed├─────────────────►│ verify     ├────────►│ clear key │
//!   └──────┬───────┘                  └─────┬──────┘         └───────────┘
//!          │ locked_until > now             │ failure: the reservation already
//!          │ or counter ≥ hard cap          │ counted it; once counter ≥ free,
//!          ▼                                ▼ locked_until = now + base·2^(n−free)
//!       429 Retry-After                 401 (delay capped at max_delay)
//! ```
//!
//! The reservation counts the attempt *before* the secret is checked, in the same statement
//! that checks the lock, so any number of parallel requests gets at most `free_attempts`
//! checks before the lock holds. After `hard_cap` consecutive failures the key stays locked
//! until it is cleared (a successful password reset clears the account's keys).

use crate::store::{Database, Row, Statement, Value};
use crate::{Error, ErrorCode, Timestamp};

/// How a counter turns failures into delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures allowed before delays start.
    pub free_attempts: i64,
    /// First delay, in seconds; it doubles with each further failure.
    pub base_delay_secs: i64,
    /// Longest delay, in seconds.
    pub max_delay_secs: i64,
    /// Consecutive failures after which the key stays locked until cleared.
    pub hard_cap: i64,
    /// A counter untouched this long starts over (0: never).
    pub window_secs: i64,
}

impl LockoutPolicy {
    /// Per account: 5 free failures, then 1 s, 2 s, 4 s … up to 15 min; locked after 100.
    pub const ACCOUNT: Self = Self {
        free_attempts: 5,
        base_delay_secs: 1,
        max_delay_secs: 15 * 60,
        hard_cap: 100,
        window_secs: 0,
    };
    /// Per client address: more room (shared addresses), forgiven after an hour of quiet.
    pub const ADDRESS: Self = Self {
        free_attempts: 100,
        base_delay_secs: 1,
        max_delay_secs: 15 * 60,
        hard_cap: i64::MAX,
        window_secs: 3600,
    };
    /// Requests that send messages (resend, reset) per client address.
    pub const REQUESTS: Self = Self {
        free_attempts: 20,
        base_delay_secs: 60,
        max_delay_secs: 3600,
        hard_cap: i64::MAX,
        window_secs: 3600,
    };
}

/// What a reservation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reservation {
    /// The attempt may go ahead; it is already counted as a failure until cleared.
    Allowed,
    /// Locked: come back in `retry_after` seconds.
    Denied {
        /// Seconds until the lock lifts (for a hard lock, an hour: a reset clears it sooner).
        retry_after: i64,
    },
}

const RESERVE: &str = "\
INSERT INTO throttles (key, failures, locked_until, updated_at)
VALUES (?1, 1, CASE WHEN 1 >= ?3 THEN ?2 + ?4 ELSE 0 END, ?2)
ON CONFLICT (key) DO UPDATE SET
    failures = CASE WHEN ?7 > 0 AND throttles.updated_at < ?2 - ?7 THEN 1
                    ELSE throttles.failures + 1 END,
    locked_until = CASE
        WHEN ?7 > 0 AND throttles.updated_at < ?2 - ?7 THEN CASE WHEN 1 >= ?3 THEN ?2 + ?4 ELSE 0 END
        WHEN throttles.failures + 1 >= ?3
            THEN ?2 + min(?5, ?4 * (1 << min(throttles.failures + 1 - ?3, 30)))
        ELSE 0 END,
    updated_at = ?2
WHERE (throttles.locked_until <= ?2 AND throttles.failures < ?6)
   OR (?7 > 0 AND throttles.updated_at < ?2 - ?7)
RETURNING failures";

const LOOKUP: &str = "SELECT locked_until, failures FROM throttles WHERE key = ?1";
const CLEAR: &str = "DELETE FROM throttles WHERE key = ?1";
const REFUND: &str = "\
UPDATE throttles SET failures = max(failures - 1, 0),
                     locked_until = CASE WHEN failures - 1 < ?2 THEN 0 ELSE locked_until END
WHERE key = ?1";

/// Counts an attempt on `key` and says whether it may go ahead.
pub async fn reserve<D: Database>(
    db: &D,
    key: &str,
    policy: &LockoutPolicy,
    now: Timestamp,
) -> Result<Reservation, Error> {
    // Counters keep milliseconds, so a one-second lock lasts a whole second.
    let now = now.millis();
    let ms = |secs: i64| secs.saturating_mul(1000);
    let rows = db
        .query(Statement::new(
            RESERVE,
            vec![
                key.into(),
                now.into(),
                policy.free_attempts.into(),
                ms(policy.base_delay_secs).into(),
                ms(policy.max_delay_secs).into(),
                policy.hard_cap.into(),
                ms(policy.window_secs).into(),
            ],
        ))
        .await?;
    if !rows.is_empty() {
        return Ok(Reservation::Allowed);
    }
    let rows = db.query(Statement::new(LOOKUP, vec![key.into()])).await?;
    let (locked_until, failures) = rows
        .first()
        .and_then(|r: &Row| Some((r.int(0)?, r.int(1)?)))
        .unwrap_or((now, 0));
    let retry_after = if failures >= policy.hard_cap {
        3600
    } else {
        ((locked_until - now + 999) / 1000).max(1)
    };
    Ok(Reservation::Denied { retry_after })
}

/// Reserves an attempt or fails with `code` and the time to wait.
pub async fn require<D: Database>(
    db: &D,
    key: &str,
    policy: &LockoutPolicy,
    now: Timestamp,
    code: ErrorCode,
) -> Result<(), Error> {
    match reserve(db, key, policy, now).await? {
        Reservation::Allowed => Ok(()),
        Reservation::Denied { retry_after } => Err(Error::Throttled { code, retry_after }),
    }
}

/// The statement that forgets `key`'s failures (after a success).
pub fn clear(key: &str) -> Statement {
    Statement::new(CLEAR, vec![Value::from(key)])
}

/// The statement that takes back one counted attempt on `key` (an attempt that succeeded), for
/// counters shared by many people, such as a client address, that a success must not clear.
/// The lock lifts again if the count falls back below `policy`'s free attempts.
pub fn refund(key: &str, policy: &LockoutPolicy) -> Statement {
    Statement::new(REFUND, vec![Value::from(key), policy.free_attempts.into()])
}
