//! The crate's error type and the stable codes shared by HTTP answers and audit records.

use http::StatusCode;

/// A stable, machine-readable error code: the `error.code` of an HTTP answer and the
/// `error_code` field of an audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request body is not valid JSON.
    InvalidJson,
    /// The JSON is well formed but does not match the expected shape.
    InvalidRequest,
    /// The body exceeds the size limit.
    PayloadTooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// No such route.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The email address is not acceptable.
    InvalidEmail,
    /// The phone number is not in E.164 form.
    InvalidPhone,
    /// SMS activation was asked for without a phone number.
    PhoneRequired,
    /// Password shorter than the minimum.
    PasswordTooShort,
    /// Password longer than the maximum.
    PasswordTooLong,
    /// Password lacks an upper-case letter, a lower-case letter or a digit.
    PasswordTooWeak,
    /// Password is on the common-password blocklist.
    PasswordTooCommon,
    /// Unknown account or wrong password (never says which).
    InvalidCredentials,
    /// The account has not been activated yet.
    AccountNotActive,
    /// A one-time, TOTP or recovery code was wrong, used or expired.
    InvalidCode,
    /// A one-time code has expired.
    CodeExpired,
    /// Too many failures: locked out for a while.
    TooManyAttempts,
    /// Too many requests of this kind: try later.
    RateLimited,
    /// No bearer token was presented.
    Unauthorized,
    /// The token is malformed, expired, revoked or not for us.
    InvalidToken,
    /// TOTP is already enabled.
    TotpAlreadyEnabled,
    /// TOTP confirmation without a pending enrolment.
    TotpNotPending,
    /// TOTP is not enabled.
    TotpNotEnabled,
    /// The invitee of a call is not an active account.
    InviteeUnknown,
    /// A call to oneself.
    CannotInviteSelf,
    /// The room is no longer ringing (already accepted, ended or aborted).
    RoomNotRinging,
    /// The room has ended or was aborted.
    RoomClosed,
    /// Only the invitee can accept a call.
    NotInvitee,
    /// The deployment has no relays configured.
    IceUnavailable,
    /// Something went wrong on our side.
    Internal,
}

impl ErrorCode {
    /// The snake_case wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidRequest => "invalid_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::InvalidEmail => "invalid_email",
            Self::InvalidPhone => "invalid_phone",
            Self::PhoneRequired => "phone_required",
            Self::PasswordTooShort => "password_too_short",
            Self::PasswordTooLong => "password_too_long",
            Self::PasswordTooWeak => "password_too_weak",
            Self::PasswordTooCommon => "password_too_common",
            Self::InvalidCredentials => "invalid_credentials",
            Self::AccountNotActive => "account_not_active",
            Self::InvalidCode => "invalid_code",
            Self::CodeExpired => "code_expired",
            Self::TooManyAttempts => "too_many_attempts",
            Self::RateLimited => "rate_limited",
            Self::Unauthorized => "unauthorized",
            Self::InvalidToken => "invalid_token",
            Self::TotpAlreadyEnabled => "totp_already_enabled",
            Self::TotpNotPending => "totp_not_pending",
            Self::TotpNotEnabled => "totp_not_enabled",
            Self::InviteeUnknown => "invitee_unknown",
            Self::CannotInviteSelf => "cannot_invite_self",
            Self::RoomNotRinging => "room_not_ringing",
            Self::RoomClosed => "room_closed",
            Self::NotInvitee => "not_invitee",
            Self::IceUnavailable => "ice_unavailable",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status that carries this code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidJson
            | Self::InvalidRequest
            | Self::InvalidEmail
            | Self::InvalidPhone
            | Self::PhoneRequired
            | Self::PasswordTooShort
            | Self::PasswordTooLong
            | Self::PasswordTooWeak
            | Self::PasswordTooCommon
            | Self::CodeExpired => StatusCode::BAD_REQUEST,
            Self::InvalidCode => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::InvalidCredentials | Self::Unauthorized | Self::InvalidToken => {
                StatusCode::UNAUTHORIZED
            }
            Self::AccountNotActive => StatusCode::FORBIDDEN,
            Self::TooManyAttempts | Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::TotpAlreadyEnabled | Self::TotpNotPending | Self::TotpNotEnabled => {
                StatusCode::CONFLICT
            }
            Self::InviteeUnknown => StatusCode::NOT_FOUND,
            Self::CannotInviteSelf => StatusCode::BAD_REQUEST,
            Self::RoomNotRinging | Self::RoomClosed => StatusCode::CONFLICT,
            Self::IceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotInvitee => StatusCode::FORBIDDEN,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short human message; never carries request data.
    pub fn message(self) -> &'static str {
        match self {
            Self::InvalidJson => "the request body is not valid JSON",
            Self::InvalidRequest => "the request does not match the expected shape",
            Self::PayloadTooLarge => "the request body is too large",
            Self::UnsupportedMediaType => "the request body must be application/json",
            Self::NotFound => "no such resource",
            Self::MethodNotAllowed => "method not allowed on this resource",
            Self::InvalidEmail => "the email address is not valid",
            Self::InvalidPhone => "the phone number must be in E.164 form, e.g. +41791234567",
            Self::PhoneRequired => "a phone number is needed for SMS activation",
            Self::PasswordTooShort => "the password must have at least 8 characters",
            Self::PasswordTooLong => "the password must have at most 128 characters",
            Self::PasswordTooWeak => {
                "the password needs an upper-case letter, a lower-case letter and a digit"
            }
            Self::PasswordTooCommon => "the password is too common",
            Self::InvalidCredentials => "wrong email or password",
            Self::AccountNotActive => "the account is not activated yet",
            Self::InvalidCode => "the code is not valid",
            Self::CodeExpired => "the code has expired",
            Self::TooManyAttempts => "too many failed attempts, try again later",
            Self::RateLimited => "too many requests, try again later",
            Self::Unauthorized => "authentication required",
            Self::InvalidToken => "the token is not valid",
            Self::TotpAlreadyEnabled => "two-factor authentication is already enabled",
            Self::TotpNotPending => "no two-factor enrolment is pending",
            Self::TotpNotEnabled => "two-factor authentication is not enabled",
            Self::InviteeUnknown => "no active account matches the invitee",
            Self::CannotInviteSelf => "a call needs someone else",
            Self::RoomNotRinging => "the room is not ringing any more",
            Self::RoomClosed => "the room has ended",
            Self::NotInvitee => "only the invitee can accept the call",
            Self::IceUnavailable => "no relays are configured",
            Self::Internal => "internal error",
        }
    }
}

/// Errors raised while serving a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A client-facing failure with a stable code.
    #[error("request refused: {}", .0.as_str())]
    Refused(ErrorCode),
    /// A credential check failed: answered with 401 whatever the code's usual status.
    #[error("request denied: {}", .0.as_str())]
    Denied(ErrorCode),
    /// The route exists but not with this method; carries the methods it takes.
    #[error("method not allowed")]
    MethodNotAllowed(&'static [http::Method]),
    /// Locked out or rate limited until `retry_after` seconds from now.
    #[error("throttled for {retry_after} s")]
    Throttled {
        /// `too_many_attempts` or `rate_limited`.
        code: ErrorCode,
        /// Seconds until the next attempt may succeed.
        retry_after: i64,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The outbox failed to hand a message over.
    #[error("outbox: {0}")]
    Outbox(#[from] crate::outbox::OutboxError),
    /// Stored data could not be read back (corrupt row, wrong key).
    #[error("corrupt stored data: {0}")]
    Corrupt(&'static str),
    /// A cryptographic operation failed.
    #[error("crypto: {0}")]
    Crypto(&'static str),
}

impl Error {
    /// The stable code this error answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Refused(code) | Self::Denied(code) | Self::Throttled { code, .. } => *code,
            Self::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            Self::Store(_) | Self::Outbox(_) | Self::Corrupt(_) | Self::Crypto(_) => {
                ErrorCode::Internal
            }
        }
    }
}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Self {
        Self::Refused(code)
    }
}
