//! `bedside-relay`: the TURN relay binary.
//!
//! ```text
//! bedside-relay [--config FILE]
//! ```
//!
//! Settings come from the file, then from `BEDSIDE_RELAY_*` environment variables (see
//! `bedside_relay::config`). SIGHUP reloads the TLS certificate; SIGTERM drains and exits.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use bedside_relay::config::Settings;
use tracing_subscriber::filter::LevelFilter;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut config: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                config = Some(args.next().context("--config needs a path")?.into())
            }
            "--help" | "-h" => {
                println!("usage: bedside-relay [--config FILE]");
                return Ok(());
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let settings =
        Settings::load(config.as_deref(), std::env::vars()).context("reading the configuration")?;

    let level: LevelFilter = settings.log_level.parse().unwrap_or(LevelFilter::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .init();
    if std::env::var_os("BEDSIDE_RELAY_LOG_PII").is_some() {
        bedside_relay::set_log_pii(true);
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, bedside_relay::net::run(settings))?;
    Ok(())
}
