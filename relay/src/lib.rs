//! Bedside TURN relay.
