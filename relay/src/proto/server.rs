//! The TURN server state machine: allocations, permissions, channels and their lifetimes.
//!
//! ```text
//!              Allocate (authenticated, quota ok)
//!   (none) ─────────────────────────────────────▶ Pending ──relay_bound(Ok)──▶ Active
//!                                                    │                           │
//!                                   relay_bound(Err) │ (after N ports)           │ lifetime passes,
//!                                                    ▼                           │ Refresh(0), room
//!                                                  (none) ◀──────────────────────┘ ended, TCP closed
//! ```
//!
//! Packets on the hot path (ChannelData and Send from the client, datagrams from peers) are
//! answered directly by the `handle_*` return value, pointing into the caller's buffer. Control
//! answers, relay socket requests and audit events queue up for [`Server::poll_output`].

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use tracing::{debug, trace, warn};

use crate::Pii;
use crate::proto::auth::{self, NonceCheck, Nonces, Refusal, Secret};
use crate::proto::codec::{self, ChannelData, Class, Kind, Message, Method, Writer, attr};
use crate::proto::limit::TokenBucket;
use crate::proto::policy::{DenyReason, PeerPolicy};

/// Protocol number of UDP in REQUESTED-TRANSPORT.
const UDP: u8 = 17;
/// How long a channel number and peer stay reserved after the binding expires (RFC 8656 §12).
const CHANNEL_COOLDOWN: Duration = Duration::from_secs(300);
/// How many relay ports an Allocate tries before answering 508.
const BIND_ATTEMPTS: u8 = 16;
/// Sources tracked by the 401 rate limit at once.
const MAX_LIMITED_SOURCES: usize = 100_000;
/// How long a port reserved by EVEN-PORT with the R bit is held (RFC 8656 suggests 30 s).
const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);
/// Headroom the caller leaves before a peer datagram so it can become a Data indication in place:
/// STUN header, XOR-PEER-ADDRESS (IPv6) and the DATA attribute header.
pub const PEER_HEADROOM: usize = codec::HEADER_LEN + 4 + 20 + 4;
/// Tailroom the caller leaves after a peer datagram for padding.
pub const PEER_TAILROOM: usize = 3;

/// Server settings. All durations are on the caller's clock.
#[derive(Clone, Debug)]
pub struct Config {
    /// REALM.
    pub realm: String,
    /// Accepted REST secrets, current first.
    pub secrets: Vec<Secret>,
    /// How long a nonce stays valid.
    pub nonce_lifetime: Duration,
    /// Allocation lifetime when none or a shorter one is requested.
    pub default_lifetime: Duration,
    /// Longest allocation lifetime granted.
    pub max_lifetime: Duration,
    /// Permission lifetime (RFC 8656: 300 s).
    pub permission_lifetime: Duration,
    /// Channel binding lifetime (RFC 8656: 600 s).
    pub channel_lifetime: Duration,
    /// Local IPv4 address relay sockets bind to, if IPv4 allocations are offered.
    pub relay_v4: Option<IpAddr>,
    /// Local IPv6 address relay sockets bind to, if IPv6 allocations are offered.
    pub relay_v6: Option<IpAddr>,
    /// Public IPv4 address advertised in XOR-RELAYED-ADDRESS when behind 1:1 NAT.
    pub external_v4: Option<IpAddr>,
    /// Public IPv6 address advertised in XOR-RELAYED-ADDRESS.
    pub external_v6: Option<IpAddr>,
    /// Relay ports.
    pub ports: RangeInclusive<u16>,
    /// Allocations in total.
    pub max_allocations: usize,
    /// Allocations per room or user name.
    pub max_allocations_per_user: usize,
    /// Permissions per allocation.
    pub max_permissions: usize,
    /// Channels per allocation.
    pub max_channels: usize,
    /// Relayed bytes per second per allocation (both directions); `None` for no limit.
    pub bandwidth: Option<u64>,
    /// 401 answers per second per source address.
    pub unauthorized_rate: u64,
    /// Burst of 401 answers per source address.
    pub unauthorized_burst: u64,
    /// Peer address policy.
    pub policy: PeerPolicy,
}

impl Config {
    /// Defaults from RFC 8656 with the given realm and secrets.
    pub fn new(realm: impl Into<String>, secrets: Vec<Secret>) -> Self {
        Self {
            realm: realm.into(),
            secrets,
            nonce_lifetime: Duration::from_secs(600),
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            permission_lifetime: Duration::from_secs(300),
            channel_lifetime: Duration::from_secs(600),
            relay_v4: None,
            relay_v6: None,
            external_v4: None,
            external_v6: None,
            ports: 49152..=65535,
            max_allocations: 10_000,
            max_allocations_per_user: 10,
            max_permissions: 32,
            max_channels: 32,
            bandwidth: None,
            unauthorized_rate: 50,
            unauthorized_burst: 100,
            policy: PeerPolicy::default(),
        }
    }
}

/// The client's transport to the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// Lowercase name for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

/// The client side of an allocation: transport, the listener it came in on (an index chosen
/// by the caller) and the client's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// Transport.
    pub transport: Transport,
    /// Listener index.
    pub listener: u16,
    /// Client address.
    pub client: SocketAddr,
}

/// Identifies an allocation for the caller's relay socket table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllocationId(pub u64);

/// Why an allocation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// Its lifetime passed without a refresh.
    Expired,
    /// The client sent Refresh with lifetime 0.
    Released,
    /// The session's room was ended by the control call.
    RoomEnded,
    /// The TCP or TLS connection closed.
    ConnectionClosed,
    /// The relay shut down.
    Shutdown,
}

impl EndReason {
    /// Stable label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Released => "released",
            Self::RoomEnded => "room_ended",
            Self::ConnectionClosed => "connection_closed",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Audit events for the functions.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An allocation was created.
    AllocationCreated {
        /// Allocation.
        allocation: AllocationId,
        /// Room or user name from the credential.
        name: String,
        /// Client transport.
        transport: Transport,
        /// Client address.
        client: SocketAddr,
        /// Advertised relayed address.
        relay: SocketAddr,
    },
    /// An Allocate request was refused after or during authentication.
    AllocationFailed {
        /// Room or user name, when the credential parsed.
        name: Option<String>,
        /// Client address.
        client: SocketAddr,
        /// STUN error code sent.
        code: u16,
    },
    /// An allocation ended.
    AllocationEnded {
        /// Allocation.
        allocation: AllocationId,
        /// Room or user name.
        name: String,
        /// Why.
        reason: EndReason,
        /// Packets relayed in both directions.
        packets: u64,
        /// Payload bytes relayed in both directions.
        bytes: u64,
    },
}

/// What the caller must do.
#[derive(Debug)]
#[non_exhaustive]
pub enum Output {
    /// Send `data` to the client.
    Transmit {
        /// Destination.
        to: FiveTuple,
        /// A whole STUN message.
        data: Vec<u8>,
    },
    /// Bind a UDP socket on `addr` for the allocation and report with [`Server::relay_bound`].
    BindRelay {
        /// Allocation.
        allocation: AllocationId,
        /// Local address to bind.
        addr: SocketAddr,
    },
    /// Close the allocation's relay socket.
    ReleaseRelay {
        /// Allocation.
        allocation: AllocationId,
    },
    /// Report an audit event.
    Event(Event),
}

/// A payload to send from an allocation's relay socket to a peer.
#[derive(Debug, PartialEq, Eq)]
pub struct ToPeer<'a> {
    /// Allocation whose socket sends.
    pub allocation: AllocationId,
    /// Peer.
    pub peer: SocketAddr,
    /// Bytes to send.
    pub payload: &'a [u8],
}

/// A peer datagram rewritten in place for the client: send `buf[range]` to `to`.
#[derive(Debug, PartialEq, Eq)]
pub struct ToClient {
    /// Client.
    pub to: FiveTuple,
    /// Range of the caller's buffer to send.
    pub range: Range<usize>,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Allocations created.
    pub allocations_created: u64,
    /// Allocations ended.
    pub allocations_ended: u64,
    /// Allocate requests refused.
    pub allocations_failed: u64,
    /// Packets relayed client to peer.
    pub packets_to_peer: u64,
    /// Packets relayed peer to client.
    pub packets_to_client: u64,
    /// Payload bytes relayed client to peer.
    pub bytes_to_peer: u64,
    /// Payload bytes relayed peer to client.
    pub bytes_to_client: u64,
    /// Requests refused for credentials (401 after an integrity check, 441).
    pub auth_failures: u64,
    /// Peers refused by the address policy.
    pub peer_denials: u64,
    /// Requests refused by a quota (486, 508).
    pub quota_rejections: u64,
    /// 401 answers suppressed by the per-source rate limit.
    pub rate_limited: u64,
    /// Packets dropped: no permission, no channel, over bandwidth, malformed.
    pub dropped: u64,
}

enum State {
    Pending {
        tried: Vec<u16>,
        fingerprint: bool,
        /// EVEN-PORT was requested: retries pick even ports too.
        even: bool,
        /// RESERVATION-TOKEN to return for the port reserved after this one.
        reservation: Option<[u8; 8]>,
    },
    Active {
        response: Vec<u8>,
    },
}

struct Reservation {
    relay: SocketAddr,
    expires: Duration,
}

struct Permission {
    ip: IpAddr,
    expires: Duration,
}

struct Channel {
    number: u16,
    peer: SocketAddr,
    expires: Duration,
}

struct Allocation {
    five_tuple: FiveTuple,
    username: Box<[u8]>,
    name: Box<str>,
    credential_expiry: u64,
    key: [u8; 16],
    allocate_tid: codec::TransactionId,
    relay: SocketAddr,
    expires: Duration,
    state: State,
    permissions: Vec<Permission>,
    channels: Vec<Channel>,
    bandwidth: Option<TokenBucket>,
    packets: u64,
    bytes: u64,
}

impl Allocation {
    fn permitted(&self, ip: IpAddr, now: Duration) -> bool {
        self.permissions
            .iter()
            .any(|p| p.ip == ip && now < p.expires)
    }

    fn within_bandwidth(&mut self, len: usize, now: Duration) -> bool {
        match &mut self.bandwidth {
            Some(bucket) => bucket.take(len as u64, now),
            None => true,
        }
    }

    fn is_active(&self) -> bool {
        matches!(self.state, State::Active { .. })
    }
}

/// The credential check's outcome for a request that passed it.
struct Authorized {
    key: [u8; 16],
}

/// How to address an answer to one request.
struct Reply {
    to: FiveTuple,
    method: Method,
    tid: codec::TransactionId,
    fingerprint: bool,
}

/// A fast, non-cryptographic hasher for the per-packet maps. The keys (five-tuples, ids) come
/// from the network, but a client cannot choose many colliding source addresses cheaply and the
/// maps are bounded by the allocation quota.
#[derive(Default)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The TURN server. See the crate documentation for the drive loop.
pub struct Server {
    config: Config,
    nonces: Nonces,
    rng: u64,
    next_id: u64,
    allocations: FastMap<AllocationId, Allocation>,
    by_tuple: FastMap<FiveTuple, AllocationId>,
    per_user: HashMap<Box<str>, usize>,
    used_ports: HashSet<(bool, u16)>,
    reservations: HashMap<[u8; 8], Reservation>,
    unauthorized: HashMap<IpAddr, TokenBucket>,
    outputs: VecDeque<Output>,
    stats: Stats,
    draining: bool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("allocations", &self.allocations.len())
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with `config`, a random `nonce_key` and a random `seed` for port choice.
    pub fn new(config: Config, nonce_key: [u8; 32], seed: u64) -> Self {
        let nonces = Nonces::new(nonce_key, config.nonce_lifetime);
        Self {
            config,
            nonces,
            rng: seed | 1,
            next_id: 1,
            allocations: FastMap::default(),
            by_tuple: FastMap::default(),
            per_user: HashMap::new(),
            used_ports: HashSet::new(),
            reservations: HashMap::new(),
            unauthorized: HashMap::new(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            draining: false,
        }
    }

    /// Replaces the accepted secrets (rotation without restart).
    pub fn set_secrets(&mut self, secrets: Vec<Secret>) {
        self.config.secrets = secrets;
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Active and pending allocations.
    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    /// The next queued output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Server::handle_timeout`] should run next at the latest.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.allocations.values().map(|a| a.expires).min()
    }

    /// Handles a datagram or stream frame from a client. Returns a payload to relay to a peer
    /// for ChannelData and Send indications; everything else goes through `poll_output`.
    pub fn handle_client<'a>(
        &mut self,
        now: Duration,
        from: FiveTuple,
        buf: &'a [u8],
    ) -> Option<ToPeer<'a>> {
        match codec::kind(buf) {
            Kind::ChannelData => self.channel_data(now, from, buf),
            Kind::Stun => match Message::parse(buf) {
                Ok(msg) => self.stun(now, from, &msg),
                Err(_) => {
                    self.stats.dropped += 1;
                    None
                }
            },
            Kind::Other => {
                self.stats.dropped += 1;
                None
            }
        }
    }

    /// Handles a datagram that arrived on an allocation's relay socket from `peer`.
    ///
    /// `buf[payload]` holds the datagram, with [`PEER_HEADROOM`] bytes free before it and
    /// [`PEER_TAILROOM`] after it; the message for the client is built in place.
    pub fn handle_peer(
        &mut self,
        now: Duration,
        allocation: AllocationId,
        peer: SocketAddr,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Option<ToClient> {
        let alloc = self.allocations.get_mut(&allocation)?;
        let len = payload.len();
        if !alloc.is_active()
            || !alloc.permitted(peer.ip(), now)
            || !alloc.within_bandwidth(len, now)
        {
            self.stats.dropped += 1;
            return None;
        }

        let stream = alloc.five_tuple.transport != Transport::Udp;
        let channel = alloc
            .channels
            .iter()
            .find(|c| c.peer == peer && now < c.expires);
        let range = match channel {
            Some(channel) => frame_channel_data(buf, payload, channel.number, stream),
            None => frame_data_indication(buf, payload, peer, now, self.rng),
        };
        let Some(range) = range else {
            self.stats.dropped += 1;
            return None;
        };

        alloc.packets += 1;
        alloc.bytes += len as u64;
        self.stats.packets_to_client += 1;
        self.stats.bytes_to_client += len as u64;
        Some(ToClient {
            to: alloc.five_tuple,
            range,
        })
    }

    /// Reports the outcome of an [`Output::BindRelay`]: the bound local address, or `None` when
    /// the port could not be bound.
    pub fn relay_bound(
        &mut self,
        now: Duration,
        allocation: AllocationId,
        bound: Option<SocketAddr>,
    ) {
        let Some(alloc) = self.allocations.get_mut(&allocation) else {
            return;
        };
        let State::Pending {
            tried,
            fingerprint,
            even,
            reservation,
        } = &mut alloc.state
        else {
            return;
        };
        let (fingerprint, even, reservation) = (*fingerprint, *even, *reservation);
        let reply = Reply {
            to: alloc.five_tuple,
            method: Method::Allocate,
            tid: alloc.allocate_tid,
            fingerprint,
        };

        let Some(bound) = bound else {
            // Keep the refused port marked used while this allocation tries others.
            tried.push(alloc.relay.port());
            let attempts = tried.len();
            let (ip, key, name) = (alloc.relay.ip(), alloc.key, alloc.name.to_string());
            let next = match (attempts < usize::from(BIND_ATTEMPTS), even) {
                (false, _) => None,
                (true, true) => self.pick_even_port(ip.is_ipv6(), false),
                (true, false) => self.pick_port(ip.is_ipv6()),
            };
            let Some(port) = next else {
                self.remove(allocation, None);
                self.stats.quota_rejections += 1;
                warn!(attempts, "no relay port could be bound");
                self.fail_allocate(&reply, Some(&key), 508, Some(name));
                return;
            };
            if let Some(alloc) = self.allocations.get_mut(&allocation) {
                alloc.relay = SocketAddr::new(ip, port);
            }
            self.outputs.push_back(Output::BindRelay {
                allocation,
                addr: SocketAddr::new(ip, port),
            });
            return;
        };

        let tried = std::mem::take(tried);
        let v6 = bound.is_ipv6();
        for port in tried {
            self.used_ports.remove(&(v6, port));
        }
        let advertised = self.advertised(bound);
        let Some(alloc) = self.allocations.get_mut(&allocation) else {
            return;
        };
        alloc.relay = bound;
        let lifetime = alloc.expires.saturating_sub(now).as_secs() as u32;
        let mut data = Vec::with_capacity(96);
        let mut w = Writer::new(&mut data, Method::Allocate, Class::Success, reply.tid);
        w.xor_address(attr::XOR_RELAYED_ADDRESS, &advertised)
            .u32(attr::LIFETIME, lifetime)
            .xor_address(attr::XOR_MAPPED_ADDRESS, &reply.to.client);
        if let Some(token) = reservation {
            w.attr(attr::RESERVATION_TOKEN, &token);
        }
        w.integrity(&alloc.key);
        if fingerprint {
            w.fingerprint();
        }
        alloc.state = State::Active {
            response: data.clone(),
        };
        debug!(
            allocation = allocation.0,
            client = %Pii(reply.to.client),
            relay = %Pii(advertised),
            lifetime,
            "allocation created"
        );
        let event = Event::AllocationCreated {
            allocation,
            name: alloc.name.to_string(),
            transport: reply.to.transport,
            client: reply.to.client,
            relay: advertised,
        };
        self.stats.allocations_created += 1;
        self.outputs
            .push_back(Output::Transmit { to: reply.to, data });
        self.outputs.push_back(Output::Event(event));
    }

    /// Ends allocations whose lifetime passed and forgets expired permissions, channels and
    /// rate-limit state.
    pub fn handle_timeout(&mut self, now: Duration) {
        let expired: Vec<AllocationId> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.remove(id, Some(EndReason::Expired));
        }
        for alloc in self.allocations.values_mut() {
            alloc.permissions.retain(|p| now < p.expires);
            alloc
                .channels
                .retain(|c| now < c.expires + CHANNEL_COOLDOWN);
        }
        self.unauthorized.retain(|_, bucket| !bucket.is_full(now));
        let used = &mut self.used_ports;
        self.reservations.retain(|_, r| {
            let keep = now < r.expires;
            if !keep {
                used.remove(&(r.relay.is_ipv6(), r.relay.port()));
            }
            keep
        });
    }

    /// A TCP or TLS client connection closed: its allocation ends (RFC 8656 §3.1).
    pub fn handle_connection_closed(&mut self, from: FiveTuple) {
        if let Some(id) = self.by_tuple.get(&from).copied() {
            self.remove(id, Some(EndReason::ConnectionClosed));
        }
    }

    /// Ends every allocation whose credential names `room`. Returns how many ended.
    pub fn end_room(&mut self, room: &str) -> usize {
        let ids: Vec<AllocationId> = self
            .allocations
            .iter()
            .filter(|(_, a)| &*a.name == room)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.remove(*id, Some(EndReason::RoomEnded));
        }
        ids.len()
    }

    /// Stops accepting new allocations; existing ones run on.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Ends every allocation.
    pub fn shutdown(&mut self) {
        let ids: Vec<AllocationId> = self.allocations.keys().copied().collect();
        for id in ids {
            self.remove(id, Some(EndReason::Shutdown));
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: port choice only needs to be unpredictable enough to spread load.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick_port(&mut self, v6: bool) -> Option<u16> {
        let (lo, hi) = (*self.config.ports.start(), *self.config.ports.end());
        if lo > hi {
            return None;
        }
        let span = u64::from(hi - lo) + 1;
        let start = self.next_random() % span;
        (0..span)
            .map(|i| lo + ((start + i) % span) as u16)
            .find(|port| !self.used_ports.contains(&(v6, *port)))
            .inspect(|port| {
                self.used_ports.insert((v6, *port));
            })
    }

    /// An even port; with `pair`, one whose successor is free too (both are marked used).
    fn pick_even_port(&mut self, v6: bool, pair: bool) -> Option<u16> {
        let (lo, hi) = (*self.config.ports.start(), *self.config.ports.end());
        let first = lo.checked_add(lo % 2)?;
        if first > hi {
            return None;
        }
        let slots = u64::from((hi - first) / 2) + 1;
        let start = self.next_random() % slots;
        let free = |s: &Self, port: u16| !s.used_ports.contains(&(v6, port));
        let port = (0..slots)
            .map(|i| first + 2 * ((start + i) % slots) as u16)
            .find(|&p| free(self, p) && (!pair || (p < hi && free(self, p + 1))))?;
        self.used_ports.insert((v6, port));
        if pair {
            self.used_ports.insert((v6, port + 1));
        }
        Some(port)
    }

    /// Holds `relay` for a later Allocate with the returned RESERVATION-TOKEN.
    fn reserve(&mut self, relay: SocketAddr, now: Duration) -> [u8; 8] {
        let token = self.next_random().to_be_bytes();
        let expires = now + RESERVATION_LIFETIME;
        self.reservations
            .insert(token, Reservation { relay, expires });
        token
    }

    fn advertised(&self, bound: SocketAddr) -> SocketAddr {
        let external = if bound.is_ipv4() {
            self.config.external_v4
        } else {
            self.config.external_v6
        };
        SocketAddr::new(external.unwrap_or(bound.ip()), bound.port())
    }

    fn remove(&mut self, id: AllocationId, reason: Option<EndReason>) {
        let Some(alloc) = self.allocations.remove(&id) else {
            return;
        };
        self.by_tuple.remove(&alloc.five_tuple);
        let v6 = alloc.relay.is_ipv6();
        self.used_ports.remove(&(v6, alloc.relay.port()));
        if let State::Pending { tried, .. } = &alloc.state {
            for port in tried {
                self.used_ports.remove(&(v6, *port));
            }
        }
        if let Entry::Occupied(mut count) = self.per_user.entry(alloc.name.clone()) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
            }
        }
        if alloc.is_active() {
            self.outputs
                .push_back(Output::ReleaseRelay { allocation: id });
        }
        let Some(reason) = reason else {
            return;
        };
        debug!(
            allocation = id.0,
            reason = reason.label(),
            "allocation ended"
        );
        self.stats.allocations_ended += 1;
        self.outputs
            .push_back(Output::Event(Event::AllocationEnded {
                allocation: id,
                name: alloc.name.into(),
                reason,
                packets: alloc.packets,
                bytes: alloc.bytes,
            }));
    }

    fn channel_data<'a>(
        &mut self,
        now: Duration,
        from: FiveTuple,
        buf: &'a [u8],
    ) -> Option<ToPeer<'a>> {
        let parsed = ChannelData::parse(buf).ok();
        let id = self.by_tuple.get(&from).copied();
        let (Some(cd), Some(id)) = (parsed, id) else {
            self.stats.dropped += 1;
            return None;
        };
        let alloc = self.allocations.get_mut(&id)?;
        let peer = alloc
            .channels
            .iter()
            .find(|c| c.number == cd.channel && now < c.expires)?
            .peer;
        self.relay_to_peer(now, id, peer, cd.payload)
    }

    fn relay_to_peer<'a>(
        &mut self,
        now: Duration,
        id: AllocationId,
        peer: SocketAddr,
        payload: &'a [u8],
    ) -> Option<ToPeer<'a>> {
        let alloc = self.allocations.get_mut(&id)?;
        if !alloc.permitted(peer.ip(), now) || !alloc.within_bandwidth(payload.len(), now) {
            self.stats.dropped += 1;
            return None;
        }
        alloc.packets += 1;
        alloc.bytes += payload.len() as u64;
        self.stats.packets_to_peer += 1;
        self.stats.bytes_to_peer += payload.len() as u64;
        Some(ToPeer {
            allocation: id,
            peer,
            payload,
        })
    }

    fn stun<'a>(
        &mut self,
        now: Duration,
        from: FiveTuple,
        msg: &Message<'a>,
    ) -> Option<ToPeer<'a>> {
        if msg.class == Class::Indication && msg.method == Method::Send {
            let id = self.by_tuple.get(&from).copied();
            let (Some(id), Some(peer), Some(data)) = (id, msg.peers.first(), msg.data) else {
                self.stats.dropped += 1;
                return None;
            };
            return self.relay_to_peer(now, id, peer, data);
        }
        if msg.class != Class::Request {
            return None;
        }
        // An allocation whose lifetime passed is gone even if the timer has not run yet.
        if let Some(id) = self.by_tuple.get(&from).copied()
            && self.allocations.get(&id).is_some_and(|a| a.expires <= now)
        {
            self.remove(id, Some(EndReason::Expired));
        }
        trace!(
            method = ?msg.method,
            client = %Pii(from.client),
            unknown = ?msg.unknown.as_slice(),
            channel = ?msg.channel_number,
            peer = ?msg.peers.first().map(Pii),
            raw = ?msg.as_bytes(),
            "request"
        );
        let reply = Reply {
            to: from,
            method: msg.method,
            tid: msg.transaction_id,
            fingerprint: msg.fingerprint,
        };
        match msg.method {
            Method::Binding => self.binding(&reply, msg),
            Method::Allocate => self.allocate(now, &reply, msg),
            Method::Refresh => self.refresh(now, &reply, msg),
            Method::CreatePermission => self.create_permission(now, &reply, msg),
            Method::ChannelBind => self.channel_bind(now, &reply, msg),
            _ => self.error(&reply, None, 400, |_| {}),
        }
        None
    }

    fn binding(&mut self, reply: &Reply, msg: &Message<'_>) {
        if !msg.unknown.as_slice().is_empty() {
            let unknown = msg.unknown;
            return self.error(reply, None, 420, |w| {
                w.unknown_attributes(unknown.as_slice());
            });
        }
        let client = reply.to.client;
        self.success(reply, None, |w| {
            w.xor_address(attr::XOR_MAPPED_ADDRESS, &client);
        });
    }

    fn allocate(&mut self, now: Duration, reply: &Reply, msg: &Message<'_>) {
        if let Some(id) = self.by_tuple.get(&reply.to).copied() {
            return self.allocate_again(now, id, reply, msg);
        }
        let Some(auth) = self.authenticate(now, reply, msg, None) else {
            return;
        };
        let key = Some(&auth.key[..]);
        let name = msg
            .username
            .and_then(auth::RestUsername::parse)
            .map(|u| u.name.to_owned());
        if !msg.unknown.as_slice().is_empty() || msg.dont_fragment {
            let mut unknown = msg.unknown;
            if msg.dont_fragment && !unknown.as_slice().contains(&attr::DONT_FRAGMENT) {
                unknown = with_unknown(unknown, attr::DONT_FRAGMENT);
            }
            return self.fail_allocate_with(reply, key, 420, name, |w| {
                w.unknown_attributes(unknown.as_slice());
            });
        }
        let token = msg.reservation_token;
        let code = match msg.requested_transport {
            None => Some(400),
            Some(UDP) if token.is_some() && msg.requested_family.is_some() => Some(400),
            Some(UDP) if token.is_some() && msg.even_port.is_some() => Some(400),
            Some(UDP) => None,
            Some(_) => Some(442),
        };
        if let Some(code) = code {
            return self.fail_allocate(reply, key, code, name);
        }
        let relay_ip = match msg.requested_family {
            None | Some(0x01) => self.config.relay_v4,
            Some(0x02) => self.config.relay_v6,
            Some(_) => None,
        };
        let Some(relay_ip) = relay_ip else {
            return self.fail_allocate(reply, key, 440, name);
        };
        let name = name.unwrap_or_default();
        if self.draining {
            return self.fail_allocate(reply, key, 508, Some(name));
        }
        if self.allocations.len() >= self.config.max_allocations {
            self.stats.quota_rejections += 1;
            warn!(
                max = self.config.max_allocations,
                "allocation limit reached"
            );
            return self.fail_allocate(reply, key, 508, Some(name));
        }
        let count = self.per_user.get(name.as_str()).copied().unwrap_or(0);
        if count >= self.config.max_allocations_per_user {
            self.stats.quota_rejections += 1;
            warn!(max = self.config.max_allocations_per_user, name = %Pii(&name), "per-user allocation limit reached");
            return self.fail_allocate(reply, key, 486, Some(name));
        }
        let (relay, reservation) = match (token, msg.even_port) {
            (Some(token), _) => match self.reservations.remove(&token) {
                Some(reserved) if now < reserved.expires => (reserved.relay, None),
                Some(reserved) => {
                    self.used_ports
                        .remove(&(reserved.relay.is_ipv6(), reserved.relay.port()));
                    return self.fail_allocate(reply, key, 508, Some(name));
                }
                None => return self.fail_allocate(reply, key, 508, Some(name)),
            },
            (None, Some(pair)) => match self.pick_even_port(relay_ip.is_ipv6(), pair) {
                Some(port) => {
                    let reservation =
                        pair.then(|| self.reserve(SocketAddr::new(relay_ip, port + 1), now));
                    (SocketAddr::new(relay_ip, port), reservation)
                }
                None => (SocketAddr::new(relay_ip, 0), None),
            },
            (None, None) => match self.pick_port(relay_ip.is_ipv6()) {
                Some(port) => (SocketAddr::new(relay_ip, port), None),
                None => (SocketAddr::new(relay_ip, 0), None),
            },
        };
        if relay.port() == 0 {
            self.stats.quota_rejections += 1;
            warn!("relay port range exhausted");
            return self.fail_allocate(reply, key, 508, Some(name));
        }

        let id = AllocationId(self.next_id);
        self.next_id += 1;
        let lifetime = self.lifetime(msg.lifetime);
        let username: Box<[u8]> = msg.username.unwrap_or_default().into();
        let credential_expiry = auth::RestUsername::parse(&username)
            .map(|u| u.expiry)
            .unwrap_or_default();
        let bandwidth = self
            .config
            .bandwidth
            .map(|rate| TokenBucket::new(rate, rate, now));
        *self.per_user.entry(name.as_str().into()).or_insert(0) += 1;
        self.by_tuple.insert(reply.to, id);
        self.allocations.insert(
            id,
            Allocation {
                five_tuple: reply.to,
                username,
                name: name.into(),
                credential_expiry,
                key: auth.key,
                allocate_tid: reply.tid,
                relay,
                expires: now + lifetime,
                state: State::Pending {
                    tried: Vec::new(),
                    fingerprint: reply.fingerprint,
                    even: msg.even_port.is_some(),
                    reservation,
                },
                permissions: Vec::new(),
                channels: Vec::new(),
                bandwidth,
                packets: 0,
                bytes: 0,
            },
        );
        self.outputs.push_back(Output::BindRelay {
            allocation: id,
            addr: relay,
        });
    }

    /// An Allocate on a five-tuple that already has an allocation: a retransmission gets the
    /// original answer again, anything else 437.
    fn allocate_again(
        &mut self,
        now: Duration,
        id: AllocationId,
        reply: &Reply,
        msg: &Message<'_>,
    ) {
        let Some(alloc) = self.allocations.get(&id) else {
            return;
        };
        if alloc.allocate_tid == reply.tid {
            if let State::Active { response } = &alloc.state {
                let data = response.clone();
                self.outputs
                    .push_back(Output::Transmit { to: reply.to, data });
            }
            return;
        }
        // Authenticated on its own, not against the allocation: a client that reuses a port
        // with fresh credentials learns of the mismatch (437) and can move on.
        let Some(auth) = self.authenticate(now, reply, msg, None) else {
            return;
        };
        self.error(reply, Some(&auth.key), 437, |_| {});
    }

    fn refresh(&mut self, now: Duration, reply: &Reply, msg: &Message<'_>) {
        let id = self.by_tuple.get(&reply.to).copied();
        let Some(auth) = self.authenticate(now, reply, msg, id) else {
            return;
        };
        let Some(id) = id else {
            return self.error(reply, Some(&auth.key), 437, |_| {});
        };
        if msg.requested_family.is_some_and(|family| {
            let v6 = self.allocations.get(&id).is_some_and(|a| a.relay.is_ipv6());
            family != if v6 { 0x02 } else { 0x01 }
        }) {
            return self.error(reply, Some(&auth.key), 443, |_| {});
        }
        if msg.lifetime == Some(0) {
            self.remove(id, Some(EndReason::Released));
            return self.success(reply, Some(&auth.key), |w| {
                w.u32(attr::LIFETIME, 0);
            });
        }
        let lifetime = self.lifetime(msg.lifetime);
        if let Some(alloc) = self.allocations.get_mut(&id) {
            alloc.expires = now + lifetime;
        }
        self.success(reply, Some(&auth.key), |w| {
            w.u32(attr::LIFETIME, lifetime.as_secs() as u32);
        });
    }

    fn create_permission(&mut self, now: Duration, reply: &Reply, msg: &Message<'_>) {
        let id = self.by_tuple.get(&reply.to).copied();
        let Some(auth) = self.authenticate(now, reply, msg, id) else {
            return;
        };
        let key = Some(&auth.key[..]);
        let Some(id) = id else {
            return self.error(reply, key, 437, |_| {});
        };
        if msg.peers.is_empty() {
            return self.error(reply, key, 400, |_| {});
        }
        for peer in msg.peers.iter() {
            if let Err(code) = self.check_peer(id, peer) {
                return self.error(reply, key, code, |_| {});
            }
        }
        let lifetime = self.config.permission_lifetime;
        let max = self.config.max_permissions;
        let Some(alloc) = self.allocations.get_mut(&id) else {
            return;
        };
        for peer in msg.peers.iter() {
            if !install_permission(alloc, peer.ip(), now + lifetime, max) {
                self.stats.quota_rejections += 1;
                return self.error(reply, key, 508, |_| {});
            }
        }
        self.success(reply, key, |_| {});
    }

    fn channel_bind(&mut self, now: Duration, reply: &Reply, msg: &Message<'_>) {
        let id = self.by_tuple.get(&reply.to).copied();
        let Some(auth) = self.authenticate(now, reply, msg, id) else {
            return;
        };
        let key = Some(&auth.key[..]);
        let Some(id) = id else {
            return self.error(reply, key, 437, |_| {});
        };
        let (Some(number), Some(peer)) = (msg.channel_number, msg.peers.first()) else {
            return self.error(reply, key, 400, |_| {});
        };
        // RFC 8656 narrowed channels to 0x4000..=0x4fff; RFC 5766 clients (coturn's among
        // them) still pick from 0x4000..=0x7ffe, and ChannelData framing covers both.
        if !(0x4000..=0x7FFE).contains(&number) {
            return self.error(reply, key, 400, |_| {});
        }
        if let Err(code) = self.check_peer(id, peer) {
            return self.error(reply, key, code, |_| {});
        }
        let (channel_lifetime, permission_lifetime) = (
            self.config.channel_lifetime,
            self.config.permission_lifetime,
        );
        let (max_channels, max_permissions) =
            (self.config.max_channels, self.config.max_permissions);
        let Some(alloc) = self.allocations.get_mut(&id) else {
            return;
        };
        let conflict = alloc
            .channels
            .iter()
            .any(|c| (c.number == number) != (c.peer == peer));
        if conflict {
            return self.error(reply, key, 400, |_| {});
        }
        let count = alloc.channels.len();
        match alloc.channels.iter_mut().find(|c| c.number == number) {
            Some(channel) => channel.expires = now + channel_lifetime,
            None if count < max_channels => {
                alloc.channels.push(Channel {
                    number,
                    peer,
                    expires: now + channel_lifetime,
                });
            }
            None => {
                self.stats.quota_rejections += 1;
                return self.error(reply, key, 508, |_| {});
            }
        }
        if !install_permission(alloc, peer.ip(), now + permission_lifetime, max_permissions) {
            self.stats.quota_rejections += 1;
            return self.error(reply, key, 508, |_| {});
        }
        self.success(reply, key, |_| {});
    }

    /// 443 for a peer of the other address family, 403 for a denied one.
    fn check_peer(&mut self, id: AllocationId, peer: SocketAddr) -> Result<(), u16> {
        let v6 = self.allocations.get(&id).is_some_and(|a| a.relay.is_ipv6());
        if peer.is_ipv6() != v6 {
            return Err(443);
        }
        if let Err(reason) = self.config.policy.check(peer.ip()) {
            self.stats.peer_denials += 1;
            note_denial(reason, peer);
            return Err(403);
        }
        Ok(())
    }

    fn lifetime(&self, requested: Option<u32>) -> Duration {
        let requested = requested.map_or(self.config.default_lifetime, |s| {
            Duration::from_secs(u64::from(s))
        });
        requested.clamp(self.config.default_lifetime, self.config.max_lifetime)
    }

    /// The long-term credential check (RFC 8489 §9.2.4). On failure the answer is already
    /// queued and `None` is returned.
    fn authenticate(
        &mut self,
        now: Duration,
        reply: &Reply,
        msg: &Message<'_>,
        existing: Option<AllocationId>,
    ) -> Option<Authorized> {
        if msg.integrity.is_none() {
            self.challenge(now, reply, 401, None);
            return None;
        }
        let (Some(username), Some(realm), Some(nonce)) = (msg.username, msg.realm, msg.nonce)
        else {
            self.error(reply, None, 400, |_| {});
            return None;
        };
        if realm != self.config.realm.as_bytes() {
            self.challenge(now, reply, 401, None);
            return None;
        }
        if self.nonces.check(nonce, &reply.to.client, now) == NonceCheck::Stale {
            self.challenge(now, reply, 438, None);
            return None;
        }

        if let Some(alloc) = existing.and_then(|id| self.allocations.get(&id)) {
            if &*alloc.username != username {
                self.stats.auth_failures += 1;
                self.error(reply, None, 441, |_| {});
                return None;
            }
            if alloc.credential_expiry > now.as_secs() && msg.verify_integrity(&alloc.key) {
                return Some(Authorized { key: alloc.key });
            }
            self.stats.auth_failures += 1;
            self.challenge(now, reply, 401, None);
            return None;
        }

        let secrets = &self.config.secrets;
        match auth::authenticate(secrets, realm, username, now, |k| msg.verify_integrity(k)) {
            Ok((_, key)) => Some(Authorized { key }),
            Err(refusal) => {
                self.stats.auth_failures += 1;
                debug!(refusal = ?refusal, client = %Pii(reply.to.client), "credential refused");
                let name = match refusal {
                    Refusal::Malformed => None,
                    Refusal::Expired | Refusal::BadIntegrity => {
                        auth::RestUsername::parse(username).map(|u| u.name.to_owned())
                    }
                };
                self.challenge(now, reply, 401, name);
                None
            }
        }
    }

    /// 401 or 438 with REALM and a fresh NONCE; 401s are rate limited per source address.
    fn challenge(&mut self, now: Duration, reply: &Reply, code: u16, failed_name: Option<String>) {
        if let (Method::Allocate, Some(name)) = (reply.method, failed_name) {
            self.stats.allocations_failed += 1;
            let client = reply.to.client;
            let event = Event::AllocationFailed {
                name: Some(name),
                client,
                code,
            };
            self.outputs.push_back(Output::Event(event));
        }
        if code == 401 {
            let (rate, burst) = (
                self.config.unauthorized_rate,
                self.config.unauthorized_burst,
            );
            let ip = reply.to.client.ip();
            // Many sources at once (spoofed floods): stop answering rather than grow the table.
            let full = self.unauthorized.len() >= MAX_LIMITED_SOURCES
                && !self.unauthorized.contains_key(&ip);
            let allowed = !full
                && self
                    .unauthorized
                    .entry(ip)
                    .or_insert_with(|| TokenBucket::new(rate, burst, now))
                    .take(1, now);
            if !allowed {
                self.stats.rate_limited += 1;
                return;
            }
        }
        let nonce = self.nonces.issue(&reply.to.client, now);
        let realm = self.config.realm.clone();
        self.error(reply, None, code, |w| {
            w.attr(attr::REALM, realm.as_bytes())
                .attr(attr::NONCE, nonce.as_bytes());
        });
    }

    fn fail_allocate(
        &mut self,
        reply: &Reply,
        key: Option<&[u8]>,
        code: u16,
        name: Option<String>,
    ) {
        self.fail_allocate_with(reply, key, code, name, |_| {});
    }

    fn fail_allocate_with(
        &mut self,
        reply: &Reply,
        key: Option<&[u8]>,
        code: u16,
        name: Option<String>,
        extra: impl FnOnce(&mut Writer<'_>),
    ) {
        self.stats.allocations_failed += 1;
        let client = reply.to.client;
        self.outputs
            .push_back(Output::Event(Event::AllocationFailed {
                name,
                client,
                code,
            }));
        self.error(reply, key, code, extra);
    }

    fn error(
        &mut self,
        reply: &Reply,
        key: Option<&[u8]>,
        code: u16,
        extra: impl FnOnce(&mut Writer<'_>),
    ) {
        let mut data = Vec::with_capacity(128);
        let mut w = Writer::new(&mut data, reply.method, Class::Error, reply.tid);
        w.error_code(code, reason_phrase(code));
        extra(&mut w);
        finish(&mut w, key, reply.fingerprint);
        self.outputs
            .push_back(Output::Transmit { to: reply.to, data });
    }

    fn success(&mut self, reply: &Reply, key: Option<&[u8]>, attrs: impl FnOnce(&mut Writer<'_>)) {
        let mut data = Vec::with_capacity(96);
        let mut w = Writer::new(&mut data, reply.method, Class::Success, reply.tid);
        attrs(&mut w);
        finish(&mut w, key, reply.fingerprint);
        self.outputs
            .push_back(Output::Transmit { to: reply.to, data });
    }
}

fn finish(w: &mut Writer<'_>, key: Option<&[u8]>, fingerprint: bool) {
    if let Some(key) = key {
        w.integrity(key);
    }
    if fingerprint {
        w.fingerprint();
    }
}

fn with_unknown(mut unknown: codec::Unknown, ty: u16) -> codec::Unknown {
    unknown.push(ty);
    unknown
}

fn note_denial(reason: DenyReason, peer: SocketAddr) {
    debug!(reason = reason.label(), peer = %Pii(peer), "peer address denied");
}

fn install_permission(alloc: &mut Allocation, ip: IpAddr, expires: Duration, max: usize) -> bool {
    if let Some(p) = alloc.permissions.iter_mut().find(|p| p.ip == ip) {
        p.expires = expires;
        return true;
    }
    if alloc.permissions.len() >= max {
        return false;
    }
    alloc.permissions.push(Permission { ip, expires });
    true
}

/// Writes a ChannelData header before `buf[payload]` and pads it for streams.
fn frame_channel_data(
    buf: &mut [u8],
    payload: Range<usize>,
    channel: u16,
    stream: bool,
) -> Option<Range<usize>> {
    let start = payload.start.checked_sub(codec::CHANNEL_HEADER_LEN)?;
    let len = u16::try_from(payload.len()).ok()?;
    buf.get_mut(start..payload.start)?
        .copy_from_slice(&codec::channel_header(channel, len));
    let end = if stream {
        pad(buf, payload.end)?
    } else {
        payload.end
    };
    Some(start..end)
}

/// Writes a Data indication header (XOR-PEER-ADDRESS, DATA) before `buf[payload]` and pads it.
fn frame_data_indication(
    buf: &mut [u8],
    payload: Range<usize>,
    peer: SocketAddr,
    now: Duration,
    salt: u64,
) -> Option<Range<usize>> {
    let addr_len = codec::xor_address_len(&peer);
    let header_len = codec::HEADER_LEN + 4 + addr_len + 4;
    let start = payload.start.checked_sub(header_len)?;
    let data_len = u16::try_from(payload.len()).ok()?;
    let end = pad(buf, payload.end)?;
    let message_len = u16::try_from(end - start - codec::HEADER_LEN).ok()?;
    // Indications need a transaction id but no answer; vary it cheaply.
    let mut tid = [0u8; 12];
    let seed = (now.as_nanos() as u64) ^ salt ^ (payload.start as u64);
    for (chunk, word) in tid.chunks_mut(8).zip([seed, seed.rotate_left(29)]) {
        for (b, w) in chunk.iter_mut().zip(word.to_be_bytes()) {
            *b = w;
        }
    }

    let header = buf.get_mut(start..payload.start)?;
    let (stun, rest) = header.split_at_mut(codec::HEADER_LEN);
    let head = codec::header(Method::Data, Class::Indication, message_len, &tid);
    stun.copy_from_slice(&head);
    let (addr_attr, data_attr) = rest.split_at_mut(4 + addr_len);
    let (addr_head, addr_value) = addr_attr.split_at_mut(4);
    addr_head.copy_from_slice(&attr_header(attr::XOR_PEER_ADDRESS, addr_len as u16));
    codec::write_xor_address(addr_value, &peer, &tid);
    data_attr.copy_from_slice(&attr_header(attr::DATA, data_len));
    Some(start..end)
}

fn attr_header(ty: u16, len: u16) -> [u8; 4] {
    let t = ty.to_be_bytes();
    let l = len.to_be_bytes();
    [t[0], t[1], l[0], l[1]]
}

/// Zero-pads `buf` from `end` to a multiple of four; returns the new end.
fn pad(buf: &mut [u8], end: usize) -> Option<usize> {
    let padded = end.next_multiple_of(4);
    buf.get_mut(end..padded)?.fill(0);
    Some(padded)
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        486 => "Allocation Quota Reached",
        508 => "Insufficient Capacity",
        _ => "Error",
    }
}
