//! ICE configuration for a call: the relays' STUN and TURN URLs, with TURN credentials minted
//! for one participant of one room (the TURN REST scheme).
//!
//! The username is `<expiry>:<room>:<account>` and the password is
//! `base64(HMAC-SHA1(secret, username))`. A relay that knows the shared secret checks both
//! without a database, refuses them after `expiry` (unix seconds), and can end every
//! allocation of a room by the name prefix `<room>:`. The secret itself never leaves the
//! server.
//!
//! URLs come in the order clients should prefer them: STUN (for direct UDP and TCP paths),
//! then TURN over UDP, TURN over TCP, and TURN over TLS on 443 for networks that let nothing
//! else through.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha1::Sha1;

use crate::Timestamp;
use crate::config::TurnConfig;

/// An `RTCConfiguration`-shaped answer: a browser can pass it to `new RTCPeerConnection(…)`
/// as is (unknown members such as `ttl` are ignored there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IceConfig {
    /// STUN servers, then TURN servers with their credentials.
    pub ice_servers: Vec<IceServer>,
    /// Always `all`: direct paths first, relays when they fail.
    pub ice_transport_policy: &'static str,
    /// Seconds the credentials stay valid; fetch a fresh configuration before then.
    pub ttl: i64,
}

/// One `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN REST username (TURN entries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN REST password (TURN entries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The ICE configuration for `account` in `room` at `now`, with credentials under `secret`.
pub fn config(
    turn: &TurnConfig,
    secret: &[u8],
    room: &str,
    account: &str,
    now: Timestamp,
) -> IceConfig {
    let expiry = now.secs().saturating_add(turn.ttl_secs);
    let username = format!("{expiry}:{room}:{account}");
    let credential = rest_password(secret, &username);

    let mut ice_servers = Vec::with_capacity(2);
    ice_servers.push(IceServer {
        urls: turn
            .hosts
            .iter()
            .map(|h| format!("stun:{h}:{}", turn.port))
            .collect(),
        username: None,
        credential: None,
    });
    let mut urls = Vec::with_capacity(turn.hosts.len() * 3);
    for host in &turn.hosts {
        urls.push(format!("turn:{host}:{}?transport=udp", turn.port));
        urls.push(format!("turn:{host}:{}?transport=tcp", turn.port));
        urls.push(format!("turns:{host}:{}?transport=tcp", turn.tls_port));
    }
    ice_servers.push(IceServer {
        urls,
        username: Some(username),
        credential: Some(credential),
    });
    IceConfig {
        ice_servers,
        ice_transport_policy: "all",
        ttl: turn.ttl_secs,
    }
}

/// `base64(HMAC-SHA1(secret, username))`, the password a TURN REST relay expects.
pub fn rest_password(secret: &[u8], username: &str) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(username.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relays() -> TurnConfig {
        TurnConfig {
            ttl_secs: 600,
            ..TurnConfig::new(vec!["relay.example.org".into()])
        }
    }

    #[test]
    fn password_matches_an_independent_hmac_sha1() {
        // Computed with Python's hmac and hashlib.
        assert_eq!(
            rest_password(b"north-relay-secret", "1700003600:r-42:acct-1"),
            "pnjf3TreqC2cpdYVE881/HAuXAE="
        );
    }

    #[test]
    fn urls_come_in_the_preferred_order_with_per_participant_credentials() {
        let now = Timestamp::from_secs(1_700_000_000);
        let a = config(&relays(), b"s", "r-42", "acct-1", now);
        let value = serde_json::to_value(&a).unwrap();
        assert_eq!(
            value["iceServers"][0],
            serde_json::json!({"urls": ["stun:relay.example.org:3478"]})
        );
        assert_eq!(
            value["iceServers"][1]["urls"],
            serde_json::json!([
                "turn:relay.example.org:3478?transport=udp",
                "turn:relay.example.org:3478?transport=tcp",
                "turns:relay.example.org:443?transport=tcp",
            ])
        );
        assert_eq!(value["iceServers"][1]["username"], "1700000600:r-42:acct-1");
        assert_eq!(value["iceTransportPolicy"], "all");
        assert_eq!(value["ttl"], 600);

        let b = config(&relays(), b"s", "r-42", "acct-2", now);
        let other_room = config(&relays(), b"s", "r-43", "acct-1", now);
        let cred = |c: &IceConfig| c.ice_servers[1].credential.clone().unwrap();
        assert_ne!(cred(&a), cred(&b));
        assert_ne!(cred(&a), cred(&other_room));
        assert_eq!(cred(&a), rest_password(b"s", "1700000600:r-42:acct-1"));
    }
}
