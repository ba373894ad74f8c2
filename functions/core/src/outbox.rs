//! The outbox port: email and SMS messages handed to a sender.

use std::future::Future;

use serde::Serialize;

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// An email to the account's address.
    Email,
    /// A text message to the account's phone.
    Sms,
}

/// Why a message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// An activation key for a new account.
    Activation,
    /// A password-reset code.
    PasswordReset,
    /// A notice that someone tried to register an address that already has an account.
    RegistrationNotice,
}

/// A message to deliver. `code`, when present, is the one-time code the body also carries.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// Email address or E.164 phone number.
    pub to: String,
    /// Email or SMS.
    pub channel: Channel,
    /// Subject line (emails; SMS senders ignore it).
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// The one-time code in the body, for senders that template it separately.
    pub code: Option<String>,
    /// Why it is sent.
    pub purpose: Purpose,
}

/// Errors an outbox reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The sender refused or could not be reached.
    #[error("delivery failed: {0}")]
    Delivery(String),
}

/// Something that delivers messages.
pub trait Outbox {
    /// Hands one message over for delivery.
    fn send(&self, message: Message) -> impl Future<Output = Result<(), OutboxError>>;
}
