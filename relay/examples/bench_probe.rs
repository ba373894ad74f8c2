//! Benchmark probe for any TURN relay (used by `relay/bench/run.sh`), built on this crate's
//! client-side codec.
//!
//! ```text
//! bench_probe rtt    SERVER SECRET COUNT RATE     # p50/p99/max round trip through two allocations
//! bench_probe allocs SERVER SECRET COUNT HOLD_SECS # hold COUNT idle allocations
//! ```
//!
//! `rtt` makes two allocations A and B, binds a channel from each to the other's relayed
//! address, and bounces COUNT datagrams A -> relay -> B -> relay -> A at RATE per second.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bedside_relay::proto::auth::{self, Secret};
use bedside_relay::proto::codec::{ChannelData, Class, Message, Method, Writer, attr};

struct Allocation {
    socket: UdpSocket,
    server: SocketAddr,
    username: String,
    realm: String,
    nonce: String,
    key: [u8; 16],
    relayed: SocketAddr,
    tid: u32,
}

fn unix_now() -> u64 {
    #[allow(clippy::disallowed_methods)] // A benchmark tool reads the clock.
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn tid(n: u32) -> [u8; 12] {
    let mut t = [7u8; 12];
    t[8..].copy_from_slice(&n.to_be_bytes());
    t
}

fn exchange(socket: &UdpSocket, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    for _ in 0..5 {
        socket.send(request)?;
        match socket.recv(&mut buf) {
            Ok(n) => return Ok(buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("no answer from the relay")
}

impl Allocation {
    fn new(server: SocketAddr, secret: &str) -> anyhow::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(server)?;
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        let cred = auth::mint(&Secret::new(secret), unix_now() + 3600, "bench");

        let mut out = Vec::new();
        Writer::new(&mut out, Method::Allocate, Class::Request, tid(1))
            .u32(attr::REQUESTED_TRANSPORT, 17 << 24);
        let answer = exchange(&socket, &out)?;
        let challenge = Message::parse(&answer)?;
        let realm = String::from_utf8(challenge.realm.context("no realm")?.to_vec())?;
        let nonce = String::from_utf8(challenge.nonce.context("no nonce")?.to_vec())?;
        let key = auth::long_term_key(
            cred.username.as_bytes(),
            realm.as_bytes(),
            cred.password.as_bytes(),
        );
        let mut alloc = Self {
            socket,
            server,
            username: cred.username,
            realm,
            nonce,
            key,
            relayed: server,
            tid: 2,
        };
        let answer = alloc.request(Method::Allocate, |w| {
            w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
        })?;
        let msg = Message::parse(&answer)?;
        alloc.relayed = msg.xor_relayed.context("allocate refused")?;
        Ok(alloc)
    }

    fn request(
        &mut self,
        method: Method,
        attrs: impl Fn(&mut Writer<'_>),
    ) -> anyhow::Result<Vec<u8>> {
        self.tid += 1;
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, method, Class::Request, tid(self.tid));
        attrs(&mut w);
        w.attr(attr::USERNAME, self.username.as_bytes())
            .attr(attr::REALM, self.realm.as_bytes())
            .attr(attr::NONCE, self.nonce.as_bytes())
            .integrity(&self.key);
        let answer = exchange(&self.socket, &out)?;
        let msg = Message::parse(&answer)?;
        if let Some(code) = msg.error_code {
            bail!("{method:?} refused with {code}");
        }
        Ok(answer)
    }

    fn bind(&mut self, channel: u16, peer: SocketAddr) -> anyhow::Result<()> {
        self.request(Method::ChannelBind, |w| {
            w.u32(attr::CHANNEL_NUMBER, u32::from(channel) << 16);
            w.xor_address(attr::XOR_PEER_ADDRESS, &peer);
        })?;
        Ok(())
    }
}

fn rtt(server: SocketAddr, secret: &str, count: usize, rate: u64) -> anyhow::Result<()> {
    let mut a = Allocation::new(server, secret)?;
    let mut b = Allocation::new(server, secret)?;
    a.bind(0x4000, b.relayed)?;
    b.bind(0x4000, a.relayed)?;
    let _ = a.server;

    let echo = b.socket.try_clone()?;
    echo.set_read_timeout(Some(Duration::from_millis(200)))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let echoer = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(n) = echo.recv(&mut buf) {
                let _ = echo.send(&buf[..n]);
            }
        }
    });

    a.socket.set_read_timeout(Some(Duration::from_millis(1)))?;
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let mut sent_at = vec![None::<Instant>; count];
    let mut samples = Vec::with_capacity(count);
    let mut buf = [0u8; 2048];
    #[allow(clippy::disallowed_methods)] // A benchmark tool reads the clock.
    let start = Instant::now();
    let mut next = 0;
    #[allow(clippy::disallowed_methods)]
    let deadline = start + interval * count as u32 + Duration::from_secs(2);
    loop {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        if now > deadline || samples.len() == count {
            break;
        }
        if next < count && now >= start + interval * next as u32 {
            let mut frame = vec![0x40, 0x00, 0x00, 0x00];
            let payload = [(next as u32).to_be_bytes().as_slice(), &[0u8; 156]].concat();
            frame[2..4].copy_from_slice(&(payload.len() as u16).to_be_bytes());
            frame.extend_from_slice(&payload);
            a.socket.send(&frame)?;
            sent_at[next] = Some(now);
            next += 1;
        }
        if let Ok(n) = a.socket.recv(&mut buf)
            && let Ok(cd) = ChannelData::parse(&buf[..n])
            && let Some(seq) = cd.payload.get(..4)
        {
            let seq = u32::from_be_bytes(seq.try_into()?) as usize;
            if let Some(Some(t)) = sent_at.get(seq) {
                #[allow(clippy::disallowed_methods)]
                samples.push(Instant::now().duration_since(*t));
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = echoer.join();

    samples.sort();
    let pick = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).map_or(0, |d| d.as_micros())
    };
    println!(
        "rtt_samples={} lost={} p50_us={} p99_us={} max_us={}",
        samples.len(),
        count - samples.len(),
        pick(0.50),
        pick(0.99),
        pick(1.0)
    );
    Ok(())
}

fn allocs(server: SocketAddr, secret: &str, count: usize, hold: u64) -> anyhow::Result<()> {
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        held.push(Allocation::new(server, secret).with_context(|| format!("allocation {i}"))?);
    }
    println!("allocations={}", held.len());
    std::thread::sleep(Duration::from_secs(hold));
    for alloc in &mut held {
        let _ = alloc.request(Method::Refresh, |w| {
            w.u32(attr::LIFETIME, 0);
        });
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, server, secret, count, last] = args.as_slice() else {
        bail!("usage: bench_probe rtt|allocs SERVER SECRET COUNT RATE|HOLD_SECS");
    };
    let server: SocketAddr = server.parse()?;
    let count: usize = count.parse()?;
    let last: u64 = last.parse()?;
    match mode.as_str() {
        "rtt" => rtt(server, secret, count, last),
        "allocs" => allocs(server, secret, count, last),
        other => bail!("unknown mode {other}"),
    }
}
