//! The thin I/O layer: sockets, TLS, timers and signals around the sans-IO
//! [`Server`](crate::proto::server::Server).
//!
//! Everything runs on one thread (a tokio `LocalSet`), so the server lives in an
//! `Rc<RefCell<…>>` and no borrow is ever held across an `.await`. Each socket has one task that
//! reads, calls into the server, and sends what it returns with non-blocking writes.

mod events;
mod http;
mod stream;
pub mod tls;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error, info};

use crate::config::Settings;
use crate::proto::server::{
    AllocationId, Event, FastMap, FiveTuple, Output, PEER_HEADROOM, PEER_TAILROOM, Server,
    Transport,
};
use crate::{Error, Pii};

/// Largest UDP payload read.
const MAX_DATAGRAM: usize = 65_535;

/// Unix time now. The socket layer is where time enters the relay.
#[allow(clippy::disallowed_methods)] // The one clock read; the protocol core takes `now`.
pub fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Counters the socket layer adds to the server's.
#[derive(Debug, Default)]
pub struct IoStats {
    /// Datagrams or frames that could not be sent (socket buffer full, connection gone).
    pub send_errors: Cell<u64>,
    /// Audit events dropped because the report queue was full.
    pub events_dropped: Cell<u64>,
    /// Relay socket binds that failed.
    pub bind_failures: Cell<u64>,
}

fn bump(counter: &Cell<u64>) {
    counter.set(counter.get() + 1);
}

struct RelaySocket {
    socket: Rc<UdpSocket>,
    task: JoinHandle<()>,
}

/// State shared by the socket tasks.
pub(crate) struct Shared {
    pub(crate) server: Server,
    /// The one receive buffer for every UDP socket (tasks never hold it across an await), with
    /// headroom and tailroom for building client messages in place.
    buf: Vec<u8>,
    relays: FastMap<AllocationId, RelaySocket>,
    udp: Vec<Option<Rc<UdpSocket>>>,
    streams: HashMap<FiveTuple, mpsc::Sender<Vec<u8>>>,
    events: Option<mpsc::Sender<(Duration, Event)>>,
    pub(crate) io: IoStats,
    pub(crate) draining: bool,
    me: std::rc::Weak<RefCell<Shared>>,
}

pub(crate) type SharedRef = Rc<RefCell<Shared>>;

impl Shared {
    /// Carries out everything the server queued.
    pub(crate) fn flush(&mut self, now: Duration) {
        while let Some(output) = self.server.poll_output() {
            match output {
                Output::Transmit { to, data } => self.transmit(to, data),
                Output::BindRelay { allocation, addr } => {
                    let bound = self.bind_relay(allocation, addr);
                    self.server.relay_bound(now, allocation, bound);
                }
                Output::ReleaseRelay { allocation } => {
                    if let Some(relay) = self.relays.remove(&allocation) {
                        relay.task.abort();
                    }
                }
                Output::Event(event) => self.report(now, event),
            }
        }
    }

    fn transmit(&self, to: FiveTuple, data: Vec<u8>) {
        match to.transport {
            Transport::Udp => self.send_udp(to, &data),
            Transport::Tcp | Transport::Tls => {
                let sent = self
                    .streams
                    .get(&to)
                    .is_some_and(|tx| tx.try_send(data).is_ok());
                if !sent {
                    bump(&self.io.send_errors);
                }
            }
        }
    }

    fn send_udp(&self, to: FiveTuple, data: &[u8]) {
        let socket = self
            .udp
            .get(usize::from(to.listener))
            .and_then(Option::as_ref);
        let sent = socket.is_some_and(|s| s.try_send_to(data, to.client).is_ok());
        if !sent {
            bump(&self.io.send_errors);
        }
    }

    fn send_to_client(&self, to: FiveTuple, data: &[u8]) {
        match to.transport {
            Transport::Udp => self.send_udp(to, data),
            Transport::Tcp | Transport::Tls => self.transmit(to, data.to_vec()),
        }
    }

    fn send_to_peer(&self, allocation: AllocationId, peer: SocketAddr, payload: &[u8]) {
        let relay = self.relays.get(&allocation);
        if relay.is_none_or(|r| r.socket.try_send_to(payload, peer).is_err()) {
            bump(&self.io.send_errors);
        }
    }

    fn bind_relay(&mut self, allocation: AllocationId, addr: SocketAddr) -> Option<SocketAddr> {
        let bound = std::net::UdpSocket::bind(addr)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(UdpSocket::from_std);
        let socket = match bound {
            Ok(socket) => Rc::new(socket),
            Err(e) => {
                bump(&self.io.bind_failures);
                debug!(port = addr.port(), error = %e, "relay port not bound");
                return None;
            }
        };
        let local = socket.local_addr().ok()?;
        let shared = self.me.upgrade()?;
        let task = tokio::task::spawn_local(relay_socket(shared, allocation, socket.clone()));
        self.relays.insert(allocation, RelaySocket { socket, task });
        Some(local)
    }

    fn report(&mut self, now: Duration, event: Event) {
        match &event {
            Event::AllocationCreated {
                allocation,
                transport,
                client,
                ..
            } => debug!(
                allocation = allocation.0,
                transport = transport.label(),
                client = %Pii(client),
                "allocation created"
            ),
            Event::AllocationEnded {
                allocation, reason, ..
            } => {
                debug!(
                    allocation = allocation.0,
                    reason = reason.label(),
                    "allocation ended"
                );
            }
            Event::AllocationFailed { code, client, .. } => {
                debug!(code, client = %Pii(client), "allocation refused");
            }
        }
        if let Some(tx) = &self.events
            && tx.try_send((now, event)).is_err()
        {
            bump(&self.io.events_dropped);
        }
    }

    pub(crate) fn register_stream(&mut self, tuple: FiveTuple, tx: mpsc::Sender<Vec<u8>>) {
        self.streams.insert(tuple, tx);
    }

    pub(crate) fn stream_closed(&mut self, tuple: FiveTuple, now: Duration) {
        self.streams.remove(&tuple);
        self.server.handle_connection_closed(tuple);
        self.flush(now);
    }

    /// Handles one frame or datagram from a client and relays what it yields.
    pub(crate) fn client_input(&mut self, now: Duration, tuple: FiveTuple, bytes: &[u8]) {
        if let Some(out) = self.server.handle_client(now, tuple, bytes) {
            self.send_to_peer(out.allocation, out.peer, out.payload);
        }
        self.flush(now);
    }
}

/// Kernel buffer size asked for on client-facing UDP sockets.
const LISTENER_BUFFER: usize = 8 << 20;
/// Datagrams handled per wakeup before a socket task yields to the others.
const BATCH: usize = 256;

async fn udp_listener(shared: SharedRef, listener: u16, socket: Rc<UdpSocket>) {
    loop {
        if socket.readable().await.is_err() {
            // Only when the runtime is shutting down.
            return;
        }
        let mut handled = 0;
        while handled < BATCH {
            handled += 1;
            let mut guard = shared.borrow_mut();
            let state = &mut *guard;
            let (len, client) = match socket.try_recv_from(&mut state.buf) {
                Ok(received) => received,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    handled = 0;
                    break;
                }
                Err(e) => {
                    // ICMP errors from earlier sends surface here on Linux; keep serving.
                    debug!(error = %e, "udp receive error");
                    continue;
                }
            };
            let now = now();
            let tuple = FiveTuple {
                transport: Transport::Udp,
                listener,
                client,
            };
            let bytes = state.buf.get(..len).unwrap_or_default();
            if let Some(out) = state.server.handle_client(now, tuple, bytes) {
                state.send_to_peer(out.allocation, out.peer, out.payload);
            }
            state.flush(now);
        }
        if handled >= BATCH {
            // Still readable after a full batch: let the other sockets run first.
            tokio::task::yield_now().await;
        }
    }
}

async fn relay_socket(shared: SharedRef, allocation: AllocationId, socket: Rc<UdpSocket>) {
    loop {
        if socket.readable().await.is_err() {
            // Only when the runtime is shutting down.
            return;
        }
        let mut handled = 0;
        while handled < BATCH {
            handled += 1;
            let mut guard = shared.borrow_mut();
            let state = &mut *guard;
            let window = PEER_HEADROOM..PEER_HEADROOM + MAX_DATAGRAM;
            let Some(slot) = state.buf.get_mut(window) else {
                return;
            };
            let (len, peer) = match socket.try_recv_from(slot) {
                Ok(received) => received,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    handled = 0;
                    break;
                }
                Err(e) => {
                    debug!(error = %e, "relay receive error");
                    continue;
                }
            };
            let range = PEER_HEADROOM..PEER_HEADROOM + len;
            let out = state
                .server
                .handle_peer(now(), allocation, peer, &mut state.buf, range);
            if let Some(out) = out
                && let Some(bytes) = state.buf.get(out.range)
            {
                state.send_to_client(out.to, bytes);
            }
        }
        if handled >= BATCH {
            // Still readable after a full batch: let the other sockets run first.
            tokio::task::yield_now().await;
        }
    }
}

/// A client-facing UDP socket with large kernel buffers: every client of the relay shares it, and
/// clients send in bursts. The kernel caps the sizes at `net.core.[rw]mem_max`.
fn bind_listener(addr: SocketAddr) -> Result<UdpSocket, Error> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(LISTENER_BUFFER);
    let _ = socket.set_send_buffer_size(LISTENER_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(UdpSocket::from_std(socket.into())?)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut out)
        .map_err(|_| Error::Tls("system random source failed".into()))?;
    Ok(out)
}

/// Runs the relay until SIGTERM or SIGINT, then drains. Must run inside a `LocalSet`.
pub async fn run(settings: Settings) -> Result<(), Error> {
    let nonce_key = random_bytes::<32>()?;
    let seed = u64::from_le_bytes(random_bytes::<8>()?);
    let events = events::start(&settings)?;
    let shared: SharedRef = Rc::new_cyclic(|me| {
        RefCell::new(Shared {
            server: Server::new(settings.server.clone(), nonce_key, seed),
            buf: vec![0; PEER_HEADROOM + MAX_DATAGRAM + PEER_TAILROOM],
            relays: FastMap::default(),
            udp: Vec::new(),
            streams: HashMap::new(),
            events: events.as_ref().map(|(tx, _)| tx.clone()),
            io: IoStats::default(),
            draining: false,
            me: me.clone(),
        })
    });

    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(Rc::new(RefCell::new(tls::acceptor(cert, key)?))),
        _ => None,
    };

    for (index, listen) in settings.listen.iter().enumerate() {
        let index = u16::try_from(index).map_err(|_| Error::Config("too many listeners"))?;
        match listen.transport {
            Transport::Udp => {
                let socket = Rc::new(bind_listener(listen.addr)?);
                let mut state = shared.borrow_mut();
                state.udp.resize(usize::from(index) + 1, None);
                if let Some(slot) = state.udp.get_mut(usize::from(index)) {
                    *slot = Some(socket.clone());
                }
                tokio::task::spawn_local(udp_listener(shared.clone(), index, socket));
            }
            Transport::Tcp | Transport::Tls => {
                let listener = tokio::net::TcpListener::bind(listen.addr).await?;
                let acceptor = match listen.transport {
                    Transport::Tls => tls.clone(),
                    _ => None,
                };
                let transport = listen.transport;
                let task = stream::listen(shared.clone(), index, transport, listener, acceptor);
                tokio::task::spawn_local(task);
            }
        }
        info!(transport = listen.transport.label(), addr = %listen.addr, "listening");
    }
    if let Some(addr) = settings.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tokio::task::spawn_local(http::serve_metrics(shared.clone(), listener));
        info!(%addr, "metrics and health listening");
    }
    if let (Some(addr), Some(token), Some(tls)) = (
        settings.control_addr,
        settings.control_token.clone(),
        tls.clone(),
    ) {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tokio::task::spawn_local(http::serve_control(shared.clone(), listener, tls, token));
        info!(%addr, "control endpoint listening");
    }

    let timer = tokio::task::spawn_local(tick(shared.clone()));
    wait_for_shutdown(&shared, &settings, &tls).await?;

    info!(
        allocations = shared.borrow().server.allocation_count(),
        "draining"
    );
    shared.borrow_mut().draining = true;
    shared.borrow_mut().server.drain();
    let deadline = tokio::time::Instant::now() + settings.drain;
    while shared.borrow().server.allocation_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    timer.abort();
    {
        let mut state = shared.borrow_mut();
        state.server.shutdown();
        state.flush(now());
        state.events = None;
    }
    if let Some((tx, task)) = events {
        drop(tx);
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    info!("stopped");
    Ok(())
}

async fn tick(shared: SharedRef) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    loop {
        interval.tick().await;
        let now = now();
        let mut state = shared.borrow_mut();
        state.server.handle_timeout(now);
        state.flush(now);
    }
}

/// Waits for SIGTERM or SIGINT. SIGHUP meanwhile reads the configuration again and applies
/// what can change without a restart: the REST secrets (rotation) and the TLS certificate.
async fn wait_for_shutdown(
    shared: &SharedRef,
    settings: &Settings,
    tls: &Option<Rc<RefCell<tokio_rustls::TlsAcceptor>>>,
) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                match Settings::load(settings.source.as_deref(), std::env::vars()) {
                    Ok(fresh) => {
                        shared.borrow_mut().server.set_secrets(fresh.server.secrets.clone());
                        info!(secrets = fresh.server.secrets.len(), "secrets reloaded");
                        reload_tls(&fresh, tls);
                    }
                    Err(e) => error!(error = %e, "configuration reload failed; keeping the current one"),
                }
            }
        }
    }
}

fn reload_tls(settings: &Settings, tls: &Option<Rc<RefCell<tokio_rustls::TlsAcceptor>>>) {
    let (Some(holder), Some(cert), Some(key)) = (tls, &settings.tls_cert, &settings.tls_key) else {
        return;
    };
    match tls::acceptor(cert, key) {
        Ok(acceptor) => {
            *holder.borrow_mut() = acceptor;
            info!("tls certificate reloaded");
        }
        Err(e) => error!(error = %e, "tls certificate reload failed; keeping the previous one"),
    }
}
