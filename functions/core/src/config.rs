//! Deployment settings with safe defaults.

use crate::lockout::LockoutPolicy;

/// Argon2id cost parameters. New hashes use these; stored hashes keep their own, so the cost
/// can be raised later without invalidating passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for Argon2Params {
    /// OWASP's recommended minimum: 19 MiB, two passes, one lane.
    fn default() -> Self {
        Self {
            m_kib: 19_456,
            t: 2,
            p: 1,
        }
    }
}

/// Everything a deployment may tune.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `iss` of every token, usually the public base URL.
    pub issuer: String,
    /// The only accepted `aud`.
    pub audience: String,
    /// Name shown in authenticator apps and messages.
    pub product_name: String,
    /// Access-token lifetime.
    pub access_ttl_secs: i64,
    /// MFA challenge lifetime.
    pub mfa_ttl_secs: i64,
    /// A session ends after this long without a refresh.
    pub session_idle_secs: i64,
    /// A session ends this long after login, whatever happens.
    pub session_absolute_secs: i64,
    /// Clock tolerance when checking token times.
    pub token_leeway_secs: i64,
    /// Password hashing cost.
    pub argon2: Argon2Params,
    /// Failed logins and codes per account.
    pub account_lockout: LockoutPolicy,
    /// Failed logins and codes per client address.
    pub address_lockout: LockoutPolicy,
    /// Resend and reset requests per client address.
    pub address_requests: LockoutPolicy,
    /// Lifetime of codes sent by email.
    pub email_code_ttl_secs: i64,
    /// Lifetime of codes sent by SMS.
    pub sms_code_ttl_secs: i64,
    /// Wrong tries before a one-time code dies.
    pub code_attempts: i64,
    /// Minimum gap between two messages with codes for one account.
    pub resend_interval_secs: i64,
    /// Messages with codes per account per hour.
    pub sends_per_hour: i64,
    /// Time an invitee has to accept a call before the room counts as aborted.
    pub room_ring_secs: i64,
    /// The TURN/STUN relays handed to participants, if the deployment has any.
    pub turn: Option<TurnConfig>,
}

/// The relays (STUN and TURN) of a deployment. Their shared secret is key material, handed to
/// [`crate::api::Api::with_turn_secret`], never part of the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// Relay host names (or addresses), tried in this order.
    pub hosts: Vec<String>,
    /// STUN and TURN port, over UDP and TCP.
    pub port: u16,
    /// TURN over TLS port (443 gets through most firewalls).
    pub tls_port: u16,
    /// Lifetime of the credentials handed out.
    pub ttl_secs: i64,
}

impl TurnConfig {
    /// Relays at `hosts` on the standard ports, with one-hour credentials.
    pub fn new(hosts: Vec<String>) -> Self {
        Self {
            hosts,
            port: 3478,
            tls_port: 443,
            ttl_secs: 3600,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".to_owned(),
            audience: "bedside".to_owned(),
            product_name: "Bedside".to_owned(),
            access_ttl_secs: 15 * 60,
            mfa_ttl_secs: 5 * 60,
            session_idle_secs: 30 * 60,
            session_absolute_secs: 12 * 3600,
            token_leeway_secs: 30,
            argon2: Argon2Params::default(),
            account_lockout: LockoutPolicy::ACCOUNT,
            address_lockout: LockoutPolicy::ADDRESS,
            address_requests: LockoutPolicy::REQUESTS,
            email_code_ttl_secs: 24 * 3600,
            sms_code_ttl_secs: 10 * 60,
            code_attempts: 5,
            resend_interval_secs: 60,
            sends_per_hour: 5,
            room_ring_secs: 90,
            turn: None,
        }
    }
}
