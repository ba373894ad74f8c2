//! Rooms benchmark: relayed messages per second per core through one room and across 1,000
//! rooms, relay latency, and memory per idle connection with 10,000 connected clients, each
//! beside a bare tokio WebSocket echo server (tokio-tungstenite) measured the same way in the
//! same run.
//!
//! - The echo server uses the host's WebSocket buffer sizes and write batching, so what
//!   separates the two columns is the room (parsing, checks, sequencing, replay, the actor).
//! - The host (or the echo server) runs on a one-worker tokio runtime whose threads are named
//!   `srv-*`; clients run on their own runtime. "Per core" divides messages by the CPU time of
//!   the server threads only (from `/proc/self/task`), so client work is not counted.
//! - A relayed message is one frame in and one frame out: chat from A to B through a room, or
//!   a frame echoed back to its sender.
//! - Latency is send-to-receive time on loopback: one message in flight (unloaded); a window of
//!   messages in flight per room (saturated: then p99 is mostly queueing, window / rate); and one
//!   message in flight in each of 1,000 rooms at once (many calls; with one client thread this
//!   row is bound by the clients and loopback, as its echo column shows).
//! - Idle memory: a child process opens the connections (each joins its room with `hello`) and
//!   stays idle; the growth of this process's resident set, divided by the connections, is the
//!   figure. Rooms are measured first, so memory freed by a phase never flatters the rooms.
//!
//! Run with `bash functions/host/bench/rooms.sh` (raises the descriptor limit), or
//! `cargo bench -p bedside-host --bench rooms`. Loopback only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::serve::ListenerExt as _;
use bedside_core::api::{Api, Keys};
use bedside_core::config::{Argon2Params, Config};
use bedside_core::crypto::SecretKey;
use bedside_host::db::Sqlite;
use bedside_host::outbox::{FileSink, HostOutbox};
use bedside_host::rooms::Rooms;
use bedside_host::server::{AppState, app};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tower::ServiceExt as _;

const PASSWORD: &str = "Tulip-Harbor-58";
/// Messages through the single room (and the single echo connection).
const ONE_ROOM_MESSAGES: u64 = 200_000;
/// Rooms (and echo connections) in the many-rooms run, and messages through each.
const MANY_ROOMS: usize = 1_000;
const MANY_ROOMS_MESSAGES: u64 = 200;
/// Messages through each room when every room has one message in flight (many calls chatting).
const LIGHT_MESSAGES: u64 = 20;
/// Messages in flight per room in the throughput runs.
const WINDOW: u64 = 256;
const MANY_WINDOW: u64 = 16;
/// Round trips for the unloaded latency.
const LATENCY_SAMPLES: usize = 5_000;
/// Idle connections (two per room).
const IDLE_CLIENTS: usize = 10_000;
/// Accounts the rooms are spread over (pairs call each other), so audit chains see little
/// contention.
const ACCOUNTS: usize = 100;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--idle-server") {
        idle_server(&args[i + 1..]);
        return;
    }
    let server = runtime("srv");
    let clients = runtime("cli");
    let dir = std::env::temp_dir().join(format!("bedside-bench-rooms-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let host = server.block_on(Host::start(&dir));
    let echo = server.block_on(echo_server());
    println!("setting up {ACCOUNTS} accounts…");
    let users = server.block_on(host.users(ACCOUNTS));

    let skip_idle = std::env::var_os("BENCH_SKIP_IDLE").is_some();
    let (room_idle, echo_idle) = if skip_idle {
        ((0.0, 0.0), (0.0, 0.0))
    } else {
        println!(
            "idle: {IDLE_CLIENTS} clients joining {} rooms…",
            IDLE_CLIENTS / 2
        );
        let rooms = idle_memory(&clients, &dir, "rooms");
        println!("idle: {IDLE_CLIENTS} clients on the echo server…");
        (rooms, idle_memory(&clients, &dir, "echo"))
    };
    if std::env::var_os("BENCH_ONLY_IDLE").is_some() {
        println!("idle per connection: rooms {room_idle:?}, echo {echo_idle:?}");
        return;
    }
    let one = server.block_on(host.rooms(&users, 1));
    let many = server.block_on(host.rooms(&users, MANY_ROOMS));
    let pairs_one = clients.block_on(join_rooms(&host, &one, &users));
    let pairs_many = clients.block_on(join_rooms(&host, &many, &users));
    let light = server.block_on(host.rooms(&users, MANY_ROOMS));
    let pairs_light = clients.block_on(join_rooms(&host, &light, &users));
    let echo_light = clients.block_on(echo_pairs(echo, MANY_ROOMS));
    let echo_one = clients.block_on(echo_pairs(echo, 1));
    let echo_many = clients.block_on(echo_pairs(echo, MANY_ROOMS));

    println!("relaying…");
    let mut pairs_one = pairs_one;
    let mut echo_one = echo_one;
    let room_latency = clients.block_on(latency(&mut pairs_one));
    let echo_latency = clients.block_on(latency(&mut echo_one));
    let room_one = throughput(&clients, pairs_one, ONE_ROOM_MESSAGES, WINDOW);
    let echo_one = throughput(&clients, echo_one, ONE_ROOM_MESSAGES, WINDOW);
    let room_many = throughput(&clients, pairs_many, MANY_ROOMS_MESSAGES, MANY_WINDOW);
    let echo_many = throughput(&clients, echo_many, MANY_ROOMS_MESSAGES, MANY_WINDOW);
    let room_light = throughput(&clients, pairs_light, LIGHT_MESSAGES, 1);
    let echo_light = throughput(&clients, echo_light, LIGHT_MESSAGES, 1);

    println!();
    println!("{:<52} {:>14} {:>14}", "", "rooms", "echo baseline");
    let row = |name: &str, a: String, b: String| println!("{name:<52} {a:>14} {b:>14}");
    let rate = |r: &Run| format!("{:.0}", r.per_second());
    let core = |r: &Run| format!("{:.0}", r.per_core_second());
    let micros = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
    row("one room: messages/s", rate(&room_one), rate(&echo_one));
    row(
        "one room: messages/s per server core",
        core(&room_one),
        core(&echo_one),
    );
    row(
        "one room: p99 latency, window 256",
        micros(room_one.p99),
        micros(echo_one.p99),
    );
    let many_name = format!("{MANY_ROOMS} rooms: messages/s");
    row(&many_name, rate(&room_many), rate(&echo_many));
    let many_core = format!("{MANY_ROOMS} rooms: messages/s per server core");
    row(&many_core, core(&room_many), core(&echo_many));
    let many_p99 = format!("{MANY_ROOMS} rooms: p99 latency, window 16 each");
    row(&many_p99, micros(room_many.p99), micros(echo_many.p99));
    let light_p99 = format!("{MANY_ROOMS} rooms, 1 in flight each: p99 latency");
    row(&light_p99, micros(room_light.p99), micros(echo_light.p99));
    let light_rate = format!("{MANY_ROOMS} rooms, 1 in flight each: messages/s");
    row(&light_rate, rate(&room_light), rate(&echo_light));
    row(
        "latency p50, one message in flight",
        micros(room_latency.0),
        micros(echo_latency.0),
    );
    row(
        "latency p99, one message in flight",
        micros(room_latency.1),
        micros(echo_latency.1),
    );
    let kib = |b: f64| format!("{:.1} KiB", b / 1024.0);
    row(
        "memory per idle connection (10,000)",
        kib(room_idle.0),
        kib(echo_idle.0),
    );
    let mib = |b: f64| format!("{:.1} MiB", b / (1024.0 * 1024.0));
    row(
        "memory for 10,000 idle connections",
        mib(room_idle.1),
        mib(echo_idle.1),
    );
    println!();
    println!(
        "targets: ≥ 150000 messages/s per core, p99 < 1 ms on loopback, 10,000 idle < 100 MiB"
    );

    drop(clients);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

fn runtime(name: &'static str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(bedside_host::MAX_BLOCKING_THREADS)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

/// CPU time so far of this process's threads whose name starts with `prefix`.
fn cpu(prefix: &str) -> Duration {
    let ticks_per_second = 100.0; // Linux USER_HZ
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| {
            fields
                .get(n - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ticks += field(14) + field(15);
    }
    Duration::from_secs_f64(ticks as f64 / ticks_per_second)
}

struct Host {
    app: Router,
    addr: SocketAddr,
    outbox: PathBuf,
}

struct User {
    id: String,
    token: String,
}

impl Host {
    async fn start(dir: &std::path::Path) -> Self {
        let mut config = Config {
            argon2: Argon2Params {
                m_kib: 64,
                t: 1,
                p: 1,
            },
            room_ring_secs: 3600,
            ..Config::default()
        };
        config.address_requests.free_attempts = 1_000_000;
        config.address_lockout.free_attempts = 1_000_000;
        let keys = Keys {
            signing_seed: SecretKey([1; 32]),
            kek: SecretKey([2; 32]),
            pepper: SecretKey([3; 32]),
        };
        // Throughput is the point here: lift the per-connection rate limit.
        let mut rooms = bedside_signaling::Config::default();
        rooms.rate_per_second = 10_000_000;
        rooms.rate_burst = 10_000_000;
        // Clients here never answer pings; in real use they do, at no cost in memory.
        rooms.ping_interval = Duration::from_secs(3600);
        let outbox = dir.join("outbox.jsonl");
        let state = AppState {
            api: Arc::new(Api::new(config, keys).unwrap()),
            db: Sqlite::open(&dir.join("bedside.sqlite3")).unwrap(),
            outbox: HostOutbox::File(FileSink::new(outbox.clone())),
            trusted_proxies: Arc::new(Vec::new()),
            rooms: Rooms::new(rooms),
        };
        let app = app(state, None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // As the `bedside` binary does.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let served = app
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
        Self { app, addr, outbox }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Value) -> Value {
        let mut req = http::Request::builder().method(method).uri(path);
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let response = self.app.clone().oneshot(req).await.unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    async fn users(&self, n: usize) -> Vec<User> {
        let mut users = Vec::with_capacity(n);
        for i in 0..n {
            let email = format!("user{i}@bedside.test");
            let body = json!({"email": email, "password": PASSWORD, "activation_channel": "email"});
            self.call("POST", "/v1/accounts", None, body).await;
            let code = std::fs::read_to_string(&self.outbox)
                .unwrap()
                .lines()
                .rev()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|m| m["to"] == email.as_str())
                .find_map(|m| m["code"].as_str().map(str::to_owned))
                .unwrap();
            let activate = json!({"email": email, "code": code});
            self.call("POST", "/v1/accounts/activate", None, activate)
                .await;
            let login = json!({"email": email, "password": PASSWORD});
            let tokens = self.call("POST", "/v1/auth/login", None, login).await;
            let token = tokens["access_token"].as_str().unwrap().to_owned();
            let me = self.call("GET", "/v1/me", Some(&token), Value::Null).await;
            let id = me["id"].as_str().unwrap().to_owned();
            users.push(User { id, token });
        }
        users
    }

    /// `n` rooms; room `i` is between users `2k` and `2k+1` with `k = i mod pairs`.
    async fn rooms(&self, users: &[User], n: usize) -> Vec<String> {
        let pairs = users.len() / 2;
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let (caller, invitee) = (&users[2 * (i % pairs)], &users[2 * (i % pairs) + 1]);
            let body = json!({"invitee": invitee.id});
            let room = self
                .call("POST", "/v1/rooms", Some(&caller.token), body)
                .await;
            let id = room["id"].as_str().unwrap().to_owned();
            let path = format!("/v1/rooms/{id}/accept");
            self.call("POST", &path, Some(&invitee.token), Value::Null)
                .await;
            ids.push(id);
        }
        ids
    }
}

/// A sender and a receiver: two participants of a room, or one echo connection twice.
enum Pair {
    Room { a: Box<Ws>, b: Box<Ws> },
    Echo { c: Box<Ws> },
}

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .unwrap()
        .0
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

async fn join(ws: &mut Ws, token: &str) {
    let hello = json!({"v": 1, "type": "hello", "token": token, "resume": null});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    let welcome = next_text(ws).await;
    assert!(welcome.contains("\"welcome\""), "{welcome}");
}

async fn join_rooms(host: &Host, rooms: &[String], users: &[User]) -> Vec<Pair> {
    let pairs = users.len() / 2;
    let mut out = Vec::with_capacity(rooms.len());
    for (i, id) in rooms.iter().enumerate() {
        let url = format!("{}/v1/rooms/{id}/ws", host.url());
        let mut a = connect(&url).await;
        join(&mut a, &users[2 * (i % pairs)].token).await;
        let mut b = connect(&url).await;
        join(&mut b, &users[2 * (i % pairs) + 1].token).await;
        let joined = next_text(&mut a).await;
        assert!(joined.contains("\"joined\""), "{joined}");
        out.push(Pair::Room {
            a: Box::new(a),
            b: Box::new(b),
        });
    }
    // Let the join records reach the store before anything is measured.
    tokio::time::sleep(Duration::from_secs(1)).await;
    out
}

async fn echo_pairs(addr: SocketAddr, n: usize) -> Vec<Pair> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Pair::Echo {
            c: Box::new(connect(&format!("ws://{addr}")).await),
        });
    }
    out
}

/// A bare WebSocket echo server on the current runtime, with the host's buffer sizes and its
/// write batching (frames read together are flushed together), so that the difference to the
/// rooms is the room itself.
async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(4 * 1024);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut ws) =
                    tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await
                else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    let mut next = Some(message);
                    while let Some(message) = next.take() {
                        if message.is_text() && ws.feed(message).await.is_err() {
                            return;
                        }
                        next = ws.next().now_or_never().flatten().and_then(Result::ok);
                    }
                    if ws.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn chat(epoch: Instant) -> Message {
    let nanos = epoch.elapsed().as_nanos();
    Message::text(format!(r#"{{"v":1,"type":"chat","text":"{nanos}"}}"#))
}

/// The send time carried by a relayed chat frame.
fn sent_at(frame: &str) -> u128 {
    let start = frame.find("\"text\":\"").map_or(0, |i| i + 8);
    let digits: String = frame[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or(0)
}

/// p50 and p99 of single round trips through the first pair, one message in flight.
async fn latency(pairs: &mut [Pair]) -> (Duration, Duration) {
    let epoch = Instant::now();
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        let start = Instant::now();
        match &mut pairs[0] {
            Pair::Room { a, b } => {
                a.send(chat(epoch)).await.unwrap();
                while !next_text(b).await.contains("\"chat\"") {}
            }
            Pair::Echo { c } => {
                c.send(chat(epoch)).await.unwrap();
                next_text(c).await;
            }
        }
        samples.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    (percentile(samples.clone(), 0.5), percentile(samples, 0.99))
}

struct Run {
    messages: u64,
    wall: Duration,
    cpu: Duration,
    p99: Duration,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.messages as f64 / self.wall.as_secs_f64()
    }

    fn per_core_second(&self) -> f64 {
        self.messages as f64 / self.cpu.as_secs_f64().max(0.01)
    }
}

/// Sends `per_pair` messages through every pair at once, `window` in flight per pair.
fn throughput(clients: &Runtime, pairs: Vec<Pair>, per_pair: u64, window: u64) -> Run {
    let epoch = Instant::now();
    let cpu_before = cpu("srv");
    let cli_before = cpu("cli");
    let started = Instant::now();
    let samples = clients.block_on(async move {
        let mut tasks = Vec::with_capacity(pairs.len());
        for pair in pairs {
            tasks.push(tokio::spawn(drive(pair, per_pair, window, epoch)));
        }
        let mut samples = Vec::new();
        for task in tasks {
            samples.extend(task.await.unwrap());
        }
        samples
    });
    let wall = started.elapsed();
    let cpu = cpu("srv").saturating_sub(cpu_before);
    if std::env::var_os("BENCH_DEBUG").is_some() {
        eprintln!(
            "run: wall {wall:?}, server cpu {cpu:?}, client cpu {:?}",
            self::cpu("cli").saturating_sub(cli_before)
        );
    }
    Run {
        messages: samples.len() as u64,
        wall,
        cpu,
        p99: percentile(samples, 0.99),
    }
}

/// One pair's share of a throughput run: latencies of every message, in nanoseconds.
async fn drive(pair: Pair, total: u64, window: u64, epoch: Instant) -> Vec<u64> {
    let received = Arc::new(AtomicU64::new(0));
    let (mut tx, mut rx) = match pair {
        Pair::Room { a, b } => ((*a).split().0, (*b).split().1),
        Pair::Echo { c } => {
            let (tx, rx) = (*c).split();
            (tx, rx)
        }
    };
    let counter = Arc::clone(&received);
    let arrived = Arc::new(tokio::sync::Notify::new());
    let wake = Arc::clone(&arrived);
    let reader = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(total as usize);
        while latencies.len() < total as usize {
            let Some(Ok(Message::Text(text))) = rx.next().await else {
                continue;
            };
            if !text.contains("\"chat\"") {
                continue;
            }
            let sent = sent_at(text.as_str());
            let now = epoch.elapsed().as_nanos();
            latencies.push(u64::try_from(now.saturating_sub(sent)).unwrap_or(u64::MAX));
            counter.fetch_add(1, Ordering::Release);
            wake.notify_one();
        }
        latencies
    });
    for sent in 0..total {
        if sent - received.load(Ordering::Acquire) >= window {
            tx.flush().await.unwrap();
            // A stored permit covers an arrival between the check and the wait.
            while sent - received.load(Ordering::Acquire) >= window {
                arrived.notified().await;
            }
        }
        tx.feed(chat(epoch)).await.unwrap();
    }
    tx.flush().await.unwrap();
    let latencies = reader.await.unwrap();
    // Keep the sender alive until everything arrived, so no close races the last frames.
    drop(tx);
    latencies
}

fn percentile(mut samples: Vec<u64>, p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_nanos(samples[index])
}

/// Memory growth of a server (`rooms` or `echo`, in a child process of its own) holding
/// `IDLE_CLIENTS` idle connections: per connection and in total, in bytes.
fn idle_memory(clients: &Runtime, dir: &std::path::Path, kind: &str) -> (f64, f64) {
    let plan_file = dir.join(format!("idle-{kind}.json"));
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--idle-server")
        .arg(kind)
        .arg(&plan_file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert!(line.starts_with("ready"), "idle server: {line}");
    let plan: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    let status = format!("/proc/{}/status", child.id());
    let before = rss_of(&status);

    let sockets = clients.block_on(async {
        let mut sockets = Vec::with_capacity(plan.len());
        for entry in &plan {
            let mut ws = connect(entry["url"].as_str().unwrap()).await;
            match entry["token"].as_str() {
                Some(token) => join(&mut ws, token).await,
                None => {
                    ws.send(Message::text("{}")).await.unwrap();
                    next_text(&mut ws).await;
                }
            }
            sockets.push(ws);
        }
        // Let the join records reach the store.
        tokio::time::sleep(Duration::from_secs(2)).await;
        sockets
    });
    let after = rss_of(&status);
    drop(sockets);
    drop(child.stdin.take());
    let _ = child.wait();
    let grown = (after - before).max(0.0);
    (grown / IDLE_CLIENTS as f64, grown)
}

fn rss_of(status: &str) -> f64 {
    let status = std::fs::read_to_string(status).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024.0
}

/// The child side of [`idle_memory`]: a server with everything set up for the idle clients
/// (accounts and rooms for `rooms`), their plan written to a file; says `ready` and serves
/// until its standard input closes.
fn idle_server(args: &[String]) {
    let (kind, plan_file) = (args[0].as_str(), PathBuf::from(&args[1]));
    let server = runtime("srv");
    let dir = plan_file.with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    let plan: Vec<Value> = server.block_on(async {
        if kind == "echo" {
            let addr = echo_server().await;
            let url = format!("ws://{addr}");
            return (0..IDLE_CLIENTS).map(|_| json!({"url": url})).collect();
        }
        let host = Host::start(&dir).await;
        let users = host.users(ACCOUNTS).await;
        let rooms = host.rooms(&users, IDLE_CLIENTS / 2).await;
        let pairs = users.len() / 2;
        (0..IDLE_CLIENTS)
            .map(|n| {
                let i = n / 2;
                let user = &users[2 * (i % pairs) + n % 2];
                let url = format!("{}/v1/rooms/{}/ws", host.url(), rooms[i]);
                json!({"url": url, "token": user.token})
            })
            .collect()
    });
    std::fs::write(&plan_file, serde_json::to_string(&plan).unwrap()).unwrap();
    // Settle (allocator, store) before the parent takes its first reading.
    std::thread::sleep(Duration::from_millis(500));
    println!("ready");
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
