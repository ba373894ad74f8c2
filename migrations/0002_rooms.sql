-- Rooms: one per session (call) between two accounts.
-- Times are unix seconds.

CREATE TABLE rooms (
    id            TEXT PRIMARY KEY,
    caller        TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    invitee       TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- ringing: invited, not yet accepted; active: accepted; ended: the call is over;
    -- aborted: given up before it was accepted (by either side, or the ring deadline).
    state         TEXT NOT NULL CHECK (state IN ('ringing', 'active', 'ended', 'aborted')),
    created_at    INTEGER NOT NULL,
    ring_deadline INTEGER NOT NULL,
    accepted_at   INTEGER,
    ended_at      INTEGER,
    end_reason    TEXT,
    CHECK (caller <> invitee)
);
CREATE INDEX rooms_by_caller ON rooms (caller);
CREATE INDEX rooms_by_invitee ON rooms (invitee);

-- The schema enforces the lifecycle: ringing -> active | aborted | ended, active -> ended.
-- A change that does not follow it aborts the whole batch (with the audit records it carried),
-- so two writers racing on one room cannot both record a transition.
CREATE TRIGGER rooms_lifecycle BEFORE UPDATE OF state ON rooms
WHEN NOT (
    (OLD.state = 'ringing' AND NEW.state IN ('active', 'aborted', 'ended'))
    OR (OLD.state = 'active' AND NEW.state = 'ended')
)
BEGIN
    SELECT RAISE(ABORT, 'room state transition not allowed');
END;
