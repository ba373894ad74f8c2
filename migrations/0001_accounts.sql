-- Accounts, credentials, sessions, throttles and the audit log.
-- SQLite dialect: applied as-is by the native host, D1 and Spin SQLite.
-- Times are unix seconds, except audit_log.time (unix milliseconds).

CREATE TABLE accounts (
    id                 TEXT PRIMARY KEY,
    email              TEXT NOT NULL UNIQUE,
    phone              TEXT,
    password_hash      TEXT NOT NULL,
    activation_channel TEXT NOT NULL CHECK (activation_channel IN ('email', 'sms')),
    status             TEXT NOT NULL CHECK (status IN ('pending', 'active')),
    -- TOTP: 'off', 'pending' (enrolment started, not confirmed) or 'on'.
    totp_state         TEXT NOT NULL DEFAULT 'off' CHECK (totp_state IN ('off', 'pending', 'on')),
    -- AES-256-GCM sealed seed (nonce || ciphertext, base64), never plaintext.
    totp_seed          TEXT,
    -- Last accepted TOTP time step: a code is accepted once.
    totp_last_step     INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL
);

-- Activation and password-reset codes: keyed HMAC of the code, single use, expiring.
CREATE TABLE one_time_codes (
    account_id    TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    purpose       TEXT NOT NULL CHECK (purpose IN ('activation', 'password_reset')),
    code_hash     TEXT NOT NULL,
    expires_at    INTEGER NOT NULL,
    attempts_left INTEGER NOT NULL,
    sent_at       INTEGER NOT NULL,
    window_start  INTEGER NOT NULL,
    window_sends  INTEGER NOT NULL,
    PRIMARY KEY (account_id, purpose)
);

CREATE TABLE recovery_codes (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (account_id, code_hash)
);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX sessions_by_account ON sessions (account_id);

-- Second-factor challenges handed out after a correct password: each completes one login.
CREATE TABLE mfa_challenges (
    jti        TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX mfa_challenges_by_account ON mfa_challenges (account_id);

-- Opaque refresh tokens, stored as SHA-256; rotated on use.
CREATE TABLE refresh_tokens (
    hash       TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at  INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

-- Failure counters for lockout and rate limits, updated with one atomic statement each.
-- locked_until and updated_at are unix milliseconds.
CREATE TABLE throttles (
    key          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    locked_until INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- Hash-chained audit records: one chain per account ('system' for events without one).
CREATE TABLE audit_log (
    chain     TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    time      INTEGER NOT NULL,
    type      TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    requester TEXT,
    message   TEXT NOT NULL,
    room_id   TEXT,
    fields    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);
