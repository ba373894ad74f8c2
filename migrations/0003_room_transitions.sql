-- One row per state a room has left: a room leaves each state at most once, so of two writers
-- racing to move the same room, the second one's batch fails on this key and rolls back with
-- the audit records it carried (the lifecycle trigger of 0002 stays as a second line).

CREATE TABLE room_transitions (
    room_id    TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (room_id, from_state)
);
