//! The server state machine on arbitrary client and peer input.
//!
//! Input layout: each record is `kind (1) | len (2, big endian) | bytes`; kind selects client
//! UDP, client TCP, or a peer datagram for the most recent allocation. Relay binds succeed.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use bedside_relay::proto::auth::Secret;
use bedside_relay::proto::policy::PeerPolicy;
use bedside_relay::proto::server::{
    Config, FiveTuple, Output, PEER_HEADROOM, PEER_TAILROOM, Server, Transport,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut config = Config::new("fuzz", vec![Secret::new("s")]);
    config.relay_v4 = Some("127.0.0.1".parse().unwrap());
    config.policy = PeerPolicy::with_allowed(vec!["127.0.0.0/8".parse().unwrap()]);
    let mut server = Server::new(config, [1; 32], 7);
    let mut now = Duration::from_secs(1_700_000_000);
    let mut last = None;
    let mut rest = data;
    while let [kind, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(u64::from(*kind));
        let client = SocketAddr::from(([127, 0, 0, 1], 40000 + u16::from(kind % 4)));
        match kind % 3 {
            0 | 1 => {
                let transport = if kind % 3 == 0 {
                    Transport::Udp
                } else {
                    Transport::Tcp
                };
                let from = FiveTuple {
                    transport,
                    listener: 0,
                    client,
                };
                let _ = server.handle_client(now, from, bytes);
            }
            _ => {
                if let Some(id) = last {
                    let mut buf = vec![0u8; PEER_HEADROOM + bytes.len() + PEER_TAILROOM];
                    buf[PEER_HEADROOM..PEER_HEADROOM + bytes.len()].copy_from_slice(bytes);
                    let range = PEER_HEADROOM..PEER_HEADROOM + bytes.len();
                    let peer = SocketAddr::from(([127, 0, 0, 2], 9));
                    if let Some(out) = server.handle_peer(now, id, peer, &mut buf, range) {
                        assert!(out.range.end <= buf.len());
                    }
                }
            }
        }
        while let Some(output) = server.poll_output() {
            if let Output::BindRelay { allocation, addr } = output {
                last = Some(allocation);
                server.relay_bound(now, allocation, Some(addr));
            }
        }
        server.handle_timeout(now);
    }
});
