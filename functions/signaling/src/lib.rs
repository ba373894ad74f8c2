//! Bedside signaling: the room state machine and its wire protocol, with no I/O.
