//! `bedside`: the whole Bedside stack on one machine.
//!
//! ```text
//! bedside [serve] [--listen 127.0.0.1:8080] [--data-dir data]
//! bedside audit-verify EXPORT.jsonl
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use axum::serve::ListenerExt as _;
use bedside_core::api::Api;
use tracing_subscriber::EnvFilter;

use bedside_host::config::HostConfig;
use bedside_host::outbox::{FileSink, HostOutbox, HttpSender, Queue, SmtpSender};
use bedside_host::rooms::Rooms;
use bedside_host::tls::{self, TlsListener};
use bedside_host::{db, keys, server};

const USAGE: &str = "usage:
  bedside [serve] [--listen ADDR] [--data-dir DIR]   run the stack (default 127.0.0.1:8080, ./data)
  bedside audit-verify FILE                         verify the hash chain of an audit export";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("audit-verify") => audit_verify(args.get(1..).unwrap_or_default()),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("serve") => serve(args.get(1..).unwrap_or_default()),
        _ => serve(&args),
    }
}

fn audit_verify(args: &[String]) -> anyhow::Result<()> {
    let [path] = args else {
        bail!("{USAGE}");
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    match bedside_core::audit::verify_export(&text) {
        Ok(count) => {
            println!("ok: {count} records");
            Ok(())
        }
        Err(broken) => {
            println!("broken: {broken}");
            std::process::exit(1);
        }
    }
}

fn serve(args: &[String]) -> anyhow::Result<()> {
    let mut listen = None;
    let mut data_dir = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--listen" => listen = it.next().cloned(),
            "--data-dir" => data_dir = it.next().map(PathBuf::from),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            EnvFilter::try_from_env("BEDSIDE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = HostConfig::load(listen, data_dir)?;
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(bedside_host::MAX_BLOCKING_THREADS)
        .enable_all()
        .build()?
        .block_on(run(config))
}

async fn run(config: HostConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create {}", config.data_dir.display()))?;
    // The folder holds the database, generated keys and live codes: the service account only.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let private = std::fs::Permissions::from_mode(0o700);
        std::fs::set_permissions(&config.data_dir, private)
            .with_context(|| format!("restrict {}", config.data_dir.display()))?;
    }
    let db = db::Sqlite::open(&config.data_dir.join("bedside.sqlite3"))?;
    let keys = keys::load(&config.data_dir)?;
    let outbox_path = config.data_dir.join("outbox.jsonl");
    let file = HostOutbox::File(FileSink::new(outbox_path.clone()));
    let outbox = match (&config.smtp_url, &config.provider) {
        (_, Some((url, token))) if config.smtp_url.is_none() => {
            HostOutbox::Http(HttpSender::new(url.clone(), token.clone()))
        }
        (Some(url), provider) => HostOutbox::Smtp {
            mail: Box::new(SmtpSender::new(url, &config.smtp_from)?),
            sms: Box::new(match provider {
                Some((url, token)) => HostOutbox::Http(HttpSender::new(url.clone(), token.clone())),
                None => file,
            }),
        },
        (None, _) => file,
    };
    let mut api = Api::new(config.core.clone(), keys)?;
    if let Some(secret) = &config.turn_secret {
        api = api.with_turn_secret(secret.0.clone());
    }
    let outbox = HostOutbox::Queued(Queue::spawn(outbox, 1024));
    let state = server::AppState {
        api: Arc::new(api),
        db,
        outbox,
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
        rooms: Rooms::new(bedside_signaling::Config::default()),
    };
    let app = server::app(state, config.web_dir.clone());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("bind {}", config.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(%addr, scheme, "listening");
    println!("Bedside is running on {scheme}://{addr}/");
    println!("  API       {scheme}://{addr}/v1   (OpenAPI: {scheme}://{addr}/openapi.json)");
    println!("  data      {}", config.data_dir.display());
    if config.smtp_url.is_none() && config.provider.is_none() {
        println!("  messages  {} (local outbox)", outbox_path.display());
    }
    let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    match &config.tls {
        Some((cert, key)) => {
            let listener = TlsListener::new(listener, tls::acceptor(cert, key)?)?;
            axum::serve(listener.tap_io(|_| {}), service)
                .with_graceful_shutdown(shutdown())
                .await?;
        }
        None => {
            // Signaling frames are small and latency matters more than packet count.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown())
                .await?;
        }
    }
    tracing::info!("shut down");
    Ok(())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
