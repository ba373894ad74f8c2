//! The server on simulated time: a scripted client and peers exchange messages with
//! [`Server`] without sockets; relay socket binds succeed unless a test says otherwise.

use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::auth::{self, Secret};
use crate::proto::codec::{Class, Message, Method, Writer, attr};
use crate::proto::policy::{IpNet, PeerPolicy};
use crate::proto::server::{
    AllocationId, Config, EndReason, Event, FiveTuple, Output, PEER_HEADROOM, PEER_TAILROOM,
    Server, Transport,
};

const REALM: &str = "bedside.test";
const T0: Duration = Duration::from_secs(1_800_000_000);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn config() -> Config {
    let mut config = Config::new(REALM, vec![Secret::new("current"), Secret::new("previous")]);
    config.relay_v4 = Some("127.0.0.1".parse().unwrap());
    config.relay_v6 = Some("::1".parse().unwrap());
    config.ports = 50000..=50009;
    config.policy = PeerPolicy::with_allowed(vec!["127.0.0.0/8".parse::<IpNet>().unwrap()]);
    config
}

/// One client's view: its five-tuple, credential and the nonce it learned.
struct Client {
    tuple: FiveTuple,
    username: String,
    password: String,
    nonce: Option<String>,
    next_tid: u8,
    fingerprint: bool,
}

impl Client {
    fn new(port: u16, secret: &str, expiry: Duration, name: &str) -> Self {
        let cred = auth::mint(&Secret::new(secret), expiry.as_secs(), name);
        Self {
            tuple: FiveTuple {
                transport: Transport::Udp,
                listener: 0,
                client: SocketAddr::from(([127, 0, 0, 1], port)),
            },
            username: cred.username,
            password: cred.password,
            nonce: None,
            next_tid: 0,
            fingerprint: true,
        }
    }

    fn key(&self) -> [u8; 16] {
        auth::long_term_key(
            self.username.as_bytes(),
            REALM.as_bytes(),
            self.password.as_bytes(),
        )
    }

    fn tid(&mut self) -> [u8; 12] {
        self.next_tid += 1;
        [self.next_tid; 12]
    }

    /// A request; signed when the client knows a nonce.
    fn request(&mut self, method: Method, attrs: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
        let tid = self.tid();
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, method, Class::Request, tid);
        attrs(&mut w);
        if let Some(nonce) = &self.nonce {
            w.attr(attr::USERNAME, self.username.as_bytes())
                .attr(attr::REALM, REALM.as_bytes())
                .attr(attr::NONCE, nonce.as_bytes())
                .integrity(&self.key());
        }
        if self.fingerprint {
            w.fingerprint();
        }
        out
    }
}

/// The server plus what it asked for.
struct Harness {
    server: Server,
    events: Vec<Event>,
    released: Vec<AllocationId>,
    /// Ports the fake socket layer refuses to bind.
    busy_ports: Vec<u16>,
}

/// What came back for one client input.
#[derive(Debug, Default)]
struct Answer {
    messages: Vec<Vec<u8>>,
    bound: Vec<(AllocationId, SocketAddr)>,
}

impl Answer {
    fn only(&self) -> Message<'_> {
        assert_eq!(
            self.messages.len(),
            1,
            "expected one answer, got {}",
            self.messages.len()
        );
        Message::parse(&self.messages[0]).unwrap()
    }

    fn code(&self) -> Option<u16> {
        self.only().error_code
    }
}

impl Harness {
    fn new(config: Config) -> Self {
        Self {
            server: Server::new(config, [9; 32], 42),
            events: Vec::new(),
            released: Vec::new(),
            busy_ports: Vec::new(),
        }
    }

    fn drain(&mut self, now: Duration) -> Answer {
        let mut answer = Answer::default();
        while let Some(output) = self.server.poll_output() {
            match output {
                Output::Transmit { data, .. } => answer.messages.push(data),
                Output::BindRelay { allocation, addr } => {
                    let ok = !self.busy_ports.contains(&addr.port());
                    if ok {
                        answer.bound.push((allocation, addr));
                    }
                    self.server.relay_bound(now, allocation, ok.then_some(addr));
                }
                Output::ReleaseRelay { allocation } => self.released.push(allocation),
                Output::Event(event) => self.events.push(event),
            }
        }
        answer
    }

    fn send(&mut self, now: Duration, from: FiveTuple, bytes: &[u8]) -> Answer {
        let relayed = self.server.handle_client(now, from, bytes);
        assert!(relayed.is_none(), "a request must not relay anything");
        self.drain(now)
    }

    /// Sends a request, learning the nonce from a 401/438 and retrying once, like a client.
    fn call(
        &mut self,
        now: Duration,
        client: &mut Client,
        method: Method,
        attrs: impl Fn(&mut Writer<'_>),
    ) -> Answer {
        let request = client.request(method, &attrs);
        let answer = self.send(now, client.tuple, &request);
        let msg = answer.only();
        if matches!(msg.error_code, Some(401 | 438)) && client.nonce.is_none()
            || msg.error_code == Some(438)
        {
            let nonce = msg.nonce.expect("challenge carries a nonce");
            client.nonce = Some(String::from_utf8(nonce.to_vec()).unwrap());
            let request = client.request(method, &attrs);
            return self.send(now, client.tuple, &request);
        }
        answer
    }

    fn allocate(&mut self, now: Duration, client: &mut Client) -> (AllocationId, SocketAddr) {
        let answer = self.call(now, client, Method::Allocate, |w| {
            w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
        });
        let msg = answer.only();
        assert_eq!(
            msg.class,
            Class::Success,
            "allocate failed: {:?}",
            msg.error_code
        );
        assert!(msg.verify_integrity(&client.key()));
        assert_eq!(msg.lifetime, Some(600));
        assert_eq!(msg.xor_mapped, Some(client.tuple.client));
        let relayed = msg.xor_relayed.unwrap();
        let (id, bound) = answer.bound[0];
        assert_eq!(relayed, bound);
        (id, relayed)
    }

    fn permit(&mut self, now: Duration, client: &mut Client, peer: SocketAddr) -> Option<u16> {
        self.call(now, client, Method::CreatePermission, |w| {
            w.xor_address(attr::XOR_PEER_ADDRESS, &peer);
        })
        .code()
    }

    fn bind(
        &mut self,
        now: Duration,
        client: &mut Client,
        ch: u16,
        peer: SocketAddr,
    ) -> Option<u16> {
        self.call(now, client, Method::ChannelBind, |w| {
            w.u32(attr::CHANNEL_NUMBER, u32::from(ch) << 16);
            w.xor_address(attr::XOR_PEER_ADDRESS, &peer);
        })
        .code()
    }

    /// A peer datagram; returns what the client would receive.
    fn peer_sends(
        &mut self,
        now: Duration,
        id: AllocationId,
        peer: SocketAddr,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        let mut buf = vec![0xEE; PEER_HEADROOM + data.len() + PEER_TAILROOM];
        buf[PEER_HEADROOM..PEER_HEADROOM + data.len()].copy_from_slice(data);
        let range = PEER_HEADROOM..PEER_HEADROOM + data.len();
        let out = self.server.handle_peer(now, id, peer, &mut buf, range)?;
        Some(buf[out.range].to_vec())
    }

    fn send_indication(
        &mut self,
        now: Duration,
        client: &mut Client,
        peer: SocketAddr,
        data: &[u8],
    ) -> Option<(SocketAddr, Vec<u8>)> {
        let tid = client.tid();
        let mut out = Vec::new();
        Writer::new(&mut out, Method::Send, Class::Indication, tid)
            .xor_address(attr::XOR_PEER_ADDRESS, &peer)
            .attr(attr::DATA, data);
        self.server
            .handle_client(now, client.tuple, &out)
            .map(|p| (p.peer, p.payload.to_vec()))
    }

    fn channel_data(
        &mut self,
        now: Duration,
        client: &Client,
        ch: u16,
        data: &[u8],
    ) -> Option<(SocketAddr, Vec<u8>)> {
        let mut frame = ch.to_be_bytes().to_vec();
        frame.extend_from_slice(&(data.len() as u16).to_be_bytes());
        frame.extend_from_slice(data);
        self.server
            .handle_client(now, client.tuple, &frame)
            .map(|p| (p.peer, p.payload.to_vec()))
    }
}

fn peer(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], port))
}

fn client(port: u16) -> Client {
    Client::new(port, "current", T0 + secs(86_400), "room-1")
}

#[test]
fn binding_needs_no_credentials() {
    let mut h = Harness::new(config());
    let mut c = client(40000);
    let request = c.request(Method::Binding, |_| {});
    let answer = h.send(T0, c.tuple, &request);
    let msg = answer.only();
    assert_eq!(msg.class, Class::Success);
    assert_eq!(msg.xor_mapped, Some(c.tuple.client));
    assert!(msg.fingerprint);
}

#[test]
fn allocate_challenges_then_succeeds_with_current_or_previous_secret() {
    let mut h = Harness::new(config());
    let mut c = client(40000);
    let request = c.request(Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
    });
    let answer = h.send(T0, c.tuple, &request);
    let msg = answer.only();
    assert_eq!(msg.error_code, Some(401));
    assert_eq!(msg.realm, Some(REALM.as_bytes()));
    assert!(msg.nonce.is_some());
    assert!(msg.integrity.is_none(), "challenges are not signed");

    let (id, relayed) = h.allocate(T0, &mut c);
    assert!((50000..=50009).contains(&relayed.port()));
    assert!(
        matches!(&h.events[..], [Event::AllocationCreated { allocation, name, .. }]
        if *allocation == id && name == "room-1")
    );

    let mut old = Client::new(40001, "previous", T0 + secs(60), "room-1");
    h.allocate(T0, &mut old);
    assert_eq!(h.server.allocation_count(), 2);
}

#[test]
fn wrong_or_expired_credentials_are_refused() {
    let mut h = Harness::new(config());
    let mut wrong = Client::new(40000, "guess", T0 + secs(60), "room-1");
    let answer = h.call(T0, &mut wrong, Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
    });
    assert_eq!(answer.code(), Some(401));

    let mut expired = Client::new(40001, "current", T0, "room-1");
    let answer = h.call(T0, &mut expired, Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
    });
    assert_eq!(answer.code(), Some(401));
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.server.stats().auth_failures, 2);
    let failed = h
        .events
        .iter()
        .filter(|e| matches!(e, Event::AllocationFailed { code: 401, .. }));
    assert_eq!(failed.count(), 2);
}

#[test]
fn stale_nonce_gets_438_with_a_fresh_nonce() {
    let mut h = Harness::new(config());
    let mut c = client(40000);
    h.allocate(T0, &mut c);
    let old_nonce = c.nonce.clone();

    let later = T0 + secs(601);
    let request = c.request(Method::Refresh, |_| {});
    let answer = h.send(later, c.tuple, &request);
    let msg = answer.only();
    assert_eq!(msg.error_code, Some(438));
    assert_ne!(
        msg.nonce.map(|n| n.to_vec()),
        old_nonce.map(String::into_bytes)
    );

    // The harness retries with the new nonce, like a client.
    let answer = h.call(later, &mut c, Method::Refresh, |_| {});
    assert_eq!(
        answer.only().class,
        Class::Error,
        "allocation expired at 600 s"
    );
}

#[test]
fn allocations_expire_unless_refreshed_and_refresh_zero_releases() {
    let mut h = Harness::new(config());
    let mut c = client(40000);
    let (id, _) = h.allocate(T0, &mut c);
    assert_eq!(h.server.poll_timeout(), Some(T0 + secs(600)));

    let answer = h.call(T0 + secs(500), &mut c, Method::Refresh, |w| {
        w.u32(attr::LIFETIME, 100_000);
    });
    let msg = answer.only();
    assert_eq!(msg.lifetime, Some(3600), "clamped to the maximum");
    assert!(msg.verify_integrity(&c.key()));

    h.server.handle_timeout(T0 + secs(600));
    assert_eq!(h.server.allocation_count(), 1);
    h.server.handle_timeout(T0 + secs(500 + 3599));
    assert_eq!(h.server.allocation_count(), 1);
    h.server.handle_timeout(T0 + secs(500 + 3600));
    h.drain(T0);
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.released, vec![id]);
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::AllocationEnded {
            reason: EndReason::Expired,
            ..
        }
    )));

    let mut c = client(40001);
    let now = T0 + secs(10_000);
    h.allocate(now, &mut c);
    let answer = h.call(now, &mut c, Method::Refresh, |w| {
        w.u32(attr::LIFETIME, 0);
    });
    assert_eq!(answer.only().lifetime, Some(0));
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::AllocationEnded {
            reason: EndReason::Released,
            ..
        }
    )));
}

#[test]
fn allocate_retransmission_repeats_the_answer_and_a_new_one_is_437() {
    let mut h = Harness::new(config());
    let mut c = client(40000);
    h.allocate(T0, &mut c);
    // Same transaction as the successful one.
    c.next_tid -= 1;
    let request = c.request(Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
    });
    let answer = h.send(T0, c.tuple, &request);
    assert_eq!(answer.only().class, Class::Success);
    assert!(answer.bound.is_empty());

    let answer = h.call(T0, &mut c, Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
    });
    assert_eq!(answer.code(), Some(437));
}

#[test]
fn requests_on_an_allocation_must_use_its_username() {
    let mut h = Harness::new(config());
    let mut c = client(40000);
    h.allocate(T0, &mut c);
    let other = auth::mint(&Secret::new("current"), (T0 + secs(60)).as_secs(), "room-2");
    c.username = other.username;
    c.password = other.password;
    let answer = h.call(T0, &mut c, Method::Refresh, |_| {});
    assert_eq!(answer.code(), Some(441));
}

#[test]
fn unsupported_allocate_options_are_refused() {
    let mut h = Harness::new(config());
    let mut c = client(40000);
    let tcp = h.call(T0, &mut c, Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 6 << 24);
    });
    assert_eq!(tcp.code(), Some(442));
    let unknown = h.call(T0, &mut c, Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
        w.attr(0x7777, b"????");
    });
    assert_eq!(unknown.code(), Some(420));
    let missing = h.call(T0, &mut c, Method::Allocate, |_| {});
    assert_eq!(missing.code(), Some(400));
    let family = h.call(T0, &mut c, Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
        w.u32(attr::REQUESTED_ADDRESS_FAMILY, 0x03 << 24);
    });
    assert_eq!(family.code(), Some(440));
}

#[test]
fn permissions_gate_both_directions_and_expire() {
    let mut h = Harness::new(config());
    let mut c = client(40000);
    let (id, _) = h.allocate(T0, &mut c);
    let p = peer(7000);

    assert_eq!(
        h.send_indication(T0, &mut c, p, b"early"),
        None,
        "no permission yet"
    );
    assert_eq!(h.peer_sends(T0, id, p, b"early"), None);

    assert_eq!(h.permit(T0, &mut c, p), None);
    assert_eq!(
        h.send_indication(T0, &mut c, p, b"hello"),
        Some((p, b"hello".to_vec()))
    );

    // Permissions are per IP address: another port of the same host may answer.
    let reply = h.peer_sends(T0, id, peer(7001), b"world!").unwrap();
    let msg = Message::parse(&reply).unwrap();
    assert_eq!((msg.method, msg.class), (Method::Data, Class::Indication));
    assert_eq!(msg.peers.first(), Some(peer(7001)));
    assert_eq!(msg.data, Some(&b"world!"[..]));

    let almost = T0 + secs(299);
    assert!(h.peer_sends(almost, id, p, b"x").is_some());
    let expired = T0 + secs(300);
    assert_eq!(h.peer_sends(expired, id, p, b"x"), None);
    assert_eq!(h.send_indication(expired, &mut c, p, b"x"), None);

    // Refreshing the permission before it expires keeps it.
    assert_eq!(h.permit(expired, &mut c, p), None);
    assert!(h.peer_sends(expired + secs(299), id, p, b"x").is_some());
}

#[test]
fn channels_bind_relay_and_refuse_conflicting_rebinds() {
    let mut h = Harness::new(config());
    let mut c = client(40000);
    let (id, _) = h.allocate(T0, &mut c);
    let (a, b) = (peer(7000), peer(7001));

    assert_eq!(
        h.bind(T0, &mut c, 0x3FFF, a),
        Some(400),
        "below the channel range"
    );
    assert_eq!(
        h.bind(T0, &mut c, 0x7FFF, a),
        Some(400),
        "above the channel range"
    );
    assert_eq!(h.bind(T0, &mut c, 0x4000, a), None);
    assert_eq!(
        h.channel_data(T0, &c, 0x4000, b"media"),
        Some((a, b"media".to_vec()))
    );
    assert_eq!(
        h.channel_data(T0, &c, 0x4001, b"media"),
        None,
        "unbound channel"
    );

    let reply = h.peer_sends(T0, id, a, b"back").unwrap();
    assert_eq!(reply, [0x40, 0x00, 0x00, 0x04, b'b', b'a', b'c', b'k']);
    // Peer b has no channel but shares a's IP, so it gets a Data indication.
    let reply = h.peer_sends(T0, id, b, b"back").unwrap();
    assert_eq!(Message::parse(&reply).unwrap().method, Method::Data);

    assert_eq!(
        h.bind(T0, &mut c, 0x4000, b),
        Some(400),
        "channel taken by another peer"
    );
    assert_eq!(
        h.bind(T0, &mut c, 0x4001, a),
        Some(400),
        "peer bound to another channel"
    );
    assert_eq!(
        h.bind(T0 + secs(100), &mut c, 0x4000, a),
        None,
        "rebinding the same pair refreshes"
    );
    assert_eq!(h.bind(T0, &mut c, 0x4001, b), None);

    // Keep the allocation alive; the channel lapses after 600 s from its last refresh...
    h.call(T0 + secs(550), &mut c, Method::Refresh, |w| {
        w.u32(attr::LIFETIME, 3600);
    });
    let lapsed = T0 + secs(700);
    h.server.handle_timeout(lapsed);
    assert_eq!(h.channel_data(lapsed, &c, 0x4000, b"x"), None);
    // ...and stays reserved for five more minutes.
    assert_eq!(h.bind(lapsed, &mut c, 0x4000, b), Some(400));
    let free = T0 + secs(1001);
    h.server.handle_timeout(free);
    assert_eq!(h.bind(free, &mut c, 0x4000, peer(7002)), None);
}

#[test]
fn channel_data_over_tcp_is_padded() {
    let mut h = Harness::new(config());
    let mut c = client(40000);
    c.tuple.transport = Transport::Tcp;
    let (id, _) = h.allocate(T0, &mut c);
    assert_eq!(h.bind(T0, &mut c, 0x4000, peer(7000)), None);
    let reply = h.peer_sends(T0, id, peer(7000), b"abcde").unwrap();
    assert_eq!(reply.len(), 12);
    assert_eq!(
        &reply[..9],
        &[0x40, 0x00, 0x00, 0x05, b'a', b'b', b'c', b'd', b'e']
    );
    assert_eq!(&reply[9..], &[0, 0, 0]);
}

#[test]
fn every_denied_peer_class_gets_403() {
    let mut h = Harness::new(Config {
        policy: PeerPolicy::default(),
        ..config()
    });
    let mut c = client(40000);
    h.allocate(T0, &mut c);
    for ip in [
        "127.0.0.1",
        "0.0.0.0",
        "10.1.2.3",
        "172.20.0.1",
        "192.168.0.1",
        "100.64.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "255.255.255.255",
    ] {
        let p = SocketAddr::new(ip.parse().unwrap(), 9);
        assert_eq!(h.permit(T0, &mut c, p), Some(403), "{ip}");
        assert_eq!(h.bind(T0, &mut c, 0x4000, p), Some(403), "{ip}");
    }
    assert_eq!(h.permit(T0, &mut c, "8.8.8.8:53".parse().unwrap()), None);
    // IPv6 peers, denied or not, do not fit an IPv4 allocation.
    assert_eq!(
        h.permit(T0, &mut c, "[::ffff:10.0.0.1]:9".parse().unwrap()),
        Some(443)
    );

    let mut c6 = client(40001);
    let answer = h.call(T0, &mut c6, Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
        w.u32(attr::REQUESTED_ADDRESS_FAMILY, 0x02 << 24);
    });
    assert!(answer.only().xor_relayed.unwrap().is_ipv6());
    for ip in [
        "::1",
        "::",
        "fc00::1",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::10.0.0.1",
    ] {
        let p = SocketAddr::new(ip.parse().unwrap(), 9);
        assert_eq!(h.permit(T0, &mut c6, p), Some(403), "{ip}");
    }
    assert!(h.server.stats().peer_denials >= 2 * 9 + 8);
}

#[test]
fn a_denied_peer_in_a_batch_refuses_the_whole_request() {
    let mut h = Harness::new(Config {
        policy: PeerPolicy::default(),
        ..config()
    });
    let mut c = client(40000);
    let (id, _) = h.allocate(T0, &mut c);
    let good: SocketAddr = "8.8.8.8:53".parse().unwrap();
    let answer = h.call(T0, &mut c, Method::CreatePermission, |w| {
        w.xor_address(attr::XOR_PEER_ADDRESS, &good);
        w.xor_address(attr::XOR_PEER_ADDRESS, &"10.0.0.1:9".parse().unwrap());
    });
    assert_eq!(answer.code(), Some(403));
    assert_eq!(
        h.peer_sends(T0, id, good, b"x"),
        None,
        "nothing was installed"
    );
}

#[test]
fn allocation_quotas_per_user_and_in_total() {
    let mut h = Harness::new(Config {
        max_allocations_per_user: 2,
        max_allocations: 3,
        ..config()
    });
    for port in 0..2 {
        h.allocate(T0, &mut client(40000 + port));
    }
    let answer = h.call(T0, &mut client(40002), Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
    });
    assert_eq!(answer.code(), Some(486));
    let mut other = Client::new(40003, "current", T0 + secs(60), "room-2");
    h.allocate(T0, &mut other);
    let mut third = Client::new(40004, "current", T0 + secs(60), "room-3");
    let answer = h.call(T0, &mut third, Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
    });
    assert_eq!(answer.code(), Some(508));
    assert_eq!(h.server.stats().quota_rejections, 2);
}

#[test]
fn port_range_exhaustion_and_busy_ports() {
    let mut h = Harness::new(Config {
        ports: 50000..=50002,
        ..config()
    });
    h.busy_ports = vec![50000, 50001];
    let (_, relayed) = h.allocate(T0, &mut client(40000));
    assert_eq!(relayed.port(), 50002);
    let answer = h.call(T0, &mut client(40001), Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
    });
    assert_eq!(answer.code(), Some(508));
    assert_eq!(h.server.allocation_count(), 1);
}

#[test]
fn bandwidth_limit_drops_the_excess() {
    let mut h = Harness::new(Config {
        bandwidth: Some(1000),
        ..config()
    });
    let mut c = client(40000);
    let (id, _) = h.allocate(T0, &mut c);
    assert_eq!(h.bind(T0, &mut c, 0x4000, peer(7000)), None);
    let chunk = [0u8; 400];
    assert!(h.channel_data(T0, &c, 0x4000, &chunk).is_some());
    assert!(h.peer_sends(T0, id, peer(7000), &chunk).is_some());
    assert!(
        h.channel_data(T0, &c, 0x4000, &chunk).is_none(),
        "over 1000 bytes in one second"
    );
    assert!(h.channel_data(T0 + secs(1), &c, 0x4000, &chunk).is_some());
}

#[test]
fn unauthorized_answers_are_rate_limited_per_source() {
    let mut h = Harness::new(Config {
        unauthorized_rate: 1,
        unauthorized_burst: 3,
        ..config()
    });
    let mut c = client(40000);
    let mut answered = 0;
    for _ in 0..10 {
        let request = c.request(Method::Allocate, |_| {});
        answered += h.send(T0, c.tuple, &request).messages.len();
    }
    assert_eq!(answered, 3);
    assert_eq!(h.server.stats().rate_limited, 7);
    let request = c.request(Method::Allocate, |_| {});
    assert_eq!(h.send(T0 + secs(1), c.tuple, &request).messages.len(), 1);
    // Another source is not affected.
    let mut other = client(40001);
    other.tuple.client = "127.0.0.9:40001".parse().unwrap();
    let request = other.request(Method::Allocate, |_| {});
    assert_eq!(h.send(T0, other.tuple, &request).messages.len(), 1);
}

#[test]
fn ending_a_room_ends_all_its_allocations_at_once() {
    let mut h = Harness::new(config());
    let (a, _) = h.allocate(T0, &mut client(40000));
    let (b, _) = h.allocate(T0, &mut client(40001));
    let mut other = Client::new(40002, "current", T0 + secs(60), "room-2");
    let (c, _) = h.allocate(T0, &mut other);
    assert_eq!(h.server.end_room("room-1"), 2);
    h.drain(T0);
    let mut released = h.released.clone();
    released.sort();
    assert_eq!(released, vec![a, b]);
    assert_eq!(h.server.allocation_count(), 1);
    let ended = h.events.iter().filter(|e| {
        matches!(
            e,
            Event::AllocationEnded {
                reason: EndReason::RoomEnded,
                ..
            }
        )
    });
    assert_eq!(ended.count(), 2);
    assert_eq!(h.peer_sends(T0, a, peer(1), b"x"), None);
    h.server.shutdown();
    h.drain(T0);
    assert!(h.released.contains(&c));
}

#[test]
fn draining_refuses_new_allocations_only() {
    let mut h = Harness::new(config());
    let mut c = client(40000);
    h.allocate(T0, &mut c);
    h.server.drain();
    let answer = h.call(T0, &mut client(40001), Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
    });
    assert_eq!(answer.code(), Some(508));
    let answer = h.call(T0, &mut c, Method::Refresh, |_| {});
    assert_eq!(answer.only().class, Class::Success);
}

#[test]
fn tcp_connection_close_ends_the_allocation() {
    let mut h = Harness::new(config());
    let mut c = client(40000);
    c.tuple.transport = Transport::Tls;
    h.allocate(T0, &mut c);
    h.server.handle_connection_closed(c.tuple);
    h.drain(T0);
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::AllocationEnded {
            reason: EndReason::ConnectionClosed,
            ..
        }
    )));
}

#[test]
fn external_address_is_advertised() {
    let mut h = Harness::new(Config {
        external_v4: Some("203.0.113.7".parse().unwrap()),
        ..config()
    });
    let mut c = client(40000);
    let answer = h.call(T0, &mut c, Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
    });
    let relayed = answer.only().xor_relayed.unwrap();
    assert_eq!(relayed.ip().to_string(), "203.0.113.7");
    assert_eq!(relayed.port(), answer.bound[0].1.port());
}

#[test]
fn garbage_is_dropped_without_answers() {
    let mut h = Harness::new(config());
    let c = client(40000);
    for bytes in [
        &[][..],
        &[0xFF; 40],
        &[0x00, 0x01, 0x00, 0x00],
        &[0x40, 0x00, 0xFF, 0xFF],
    ] {
        assert!(h.server.handle_client(T0, c.tuple, bytes).is_none());
        assert!(h.drain(T0).messages.is_empty());
    }
}

#[test]
fn even_port_with_reservation_and_the_reserved_allocation() {
    let mut h = Harness::new(Config {
        ports: 50000..=50009,
        ..config()
    });
    let mut rtp = client(40000);
    let answer = h.call(T0, &mut rtp, Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
        w.attr(attr::EVEN_PORT, &[0x80]);
    });
    let msg = answer.only();
    let port = msg.xor_relayed.unwrap().port();
    assert_eq!(port % 2, 0);
    let token = msg.reservation_token.expect("a reservation token");

    let mut rtcp = client(40001);
    let answer = h.call(T0, &mut rtcp, Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
        w.attr(attr::RESERVATION_TOKEN, &token);
    });
    assert_eq!(answer.only().xor_relayed.unwrap().port(), port + 1);

    // A token works once, and an unknown one gets 508.
    let answer = h.call(T0, &mut client(40002), Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
        w.attr(attr::RESERVATION_TOKEN, &token);
    });
    assert_eq!(answer.code(), Some(508));
}

#[test]
fn unused_reservations_expire_and_free_their_port() {
    let mut h = Harness::new(Config {
        ports: 50000..=50001,
        ..config()
    });
    let answer = h.call(T0, &mut client(40000), Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
        w.attr(attr::EVEN_PORT, &[0x80]);
    });
    assert_eq!(answer.only().xor_relayed.unwrap().port(), 50000);
    let mut other = client(40001);
    let plain = |w: &mut Writer<'_>| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
    };
    assert_eq!(
        h.call(T0, &mut other, Method::Allocate, plain).code(),
        Some(508)
    );
    h.server.handle_timeout(T0 + secs(30));
    let answer = h.call(T0 + secs(30), &mut other, Method::Allocate, plain);
    assert_eq!(answer.only().xor_relayed.unwrap().port(), 50001);
}

/// The fuzz target's regression seeds (malformed inputs that crashed other STUN/TURN stacks)
/// go through the parsers and the server without a panic and without an answer to garbage.
#[test]
fn fuzz_regression_seeds_are_handled() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/parse");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let parsed = Message::parse(&bytes);
        let _ = crate::proto::codec::ChannelData::parse(&bytes);
        let _ = crate::proto::codec::stream_frame_len(&bytes);
        let mut h = Harness::new(config());
        let c = client(40000);
        assert!(
            h.server.handle_client(T0, c.tuple, &bytes).is_none(),
            "{name}"
        );
        let answers = h.drain(T0).messages;
        if parsed.is_err() {
            assert!(answers.is_empty(), "{name}: malformed input was answered");
        }
        for answer in answers {
            Message::parse(&answer).unwrap_or_else(|e| panic!("{name}: bad answer: {e}"));
        }
        seen += 1;
    }
    assert!(seen >= 20, "seeds missing: {seen}");
}

#[test]
fn allocate_from_a_reused_five_tuple_with_new_credentials_is_437_not_441() {
    let mut h = Harness::new(config());
    let mut first = client(40000);
    h.allocate(T0, &mut first);
    // A new client process got the same local port and mints its own credential.
    let mut second = Client::new(40000, "current", T0 + secs(7200), "room-1");
    second.next_tid = 100;
    let answer = h.call(T0, &mut second, Method::Allocate, |w| {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
    });
    assert_eq!(answer.code(), Some(437));
    assert!(answer.only().verify_integrity(&second.key()));
}
