//! Host settings: command-line flags, then `BEDSIDE_*` environment variables, then defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use bedside_core::config::{Argon2Params, Config, TurnConfig};

/// Everything the host needs to start. Its `Debug` leaves out the SMTP URL (it may carry a
/// password) and the provider token.
#[derive(Clone)]
pub struct HostConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Folder for the database, the local outbox and generated keys.
    pub data_dir: PathBuf,
    /// Folder of the web client, served at `/` when present.
    pub web_dir: Option<PathBuf>,
    /// Trust `X-Forwarded-For` from these peers (a reverse proxy in front of the host).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// SMTP server URL for emails (otherwise the local outbox).
    pub smtp_url: Option<String>,
    /// Sender address for emails.
    pub smtp_from: String,
    /// Provider endpoint for messages over HTTP, and its token.
    pub provider: Option<(String, String)>,
    /// The core's settings.
    pub core: Config,
    /// The secret shared with the TURN relays (`BEDSIDE_TURN_SECRET`).
    pub turn_secret: Option<Secret>,
    /// PEM certificate chain and private key for TLS (`BEDSIDE_TLS_CERT`, `BEDSIDE_TLS_KEY`).
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Secret bytes whose `Debug` shows only their length.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_parse<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    env(name)
        .map(|v| v.parse::<T>().map_err(|e| anyhow::anyhow!("{name}: {e}")))
        .transpose()
}

impl HostConfig {
    /// Reads the environment, with `listen` and `data_dir` from flags taking precedence.
    pub fn load(listen: Option<String>, data_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let listen: SocketAddr = listen
            .or_else(|| env("BEDSIDE_LISTEN"))
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned())
            .parse()
            .context("listen address")?;
        let data_dir = data_dir
            .or_else(|| env("BEDSIDE_DATA_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("data"));
        let web_dir = env("BEDSIDE_WEB_DIR").map(PathBuf::from).or_else(|| {
            let default = PathBuf::from("web");
            default.join("index.html").exists().then_some(default)
        });
        let public_url = env("BEDSIDE_PUBLIC_URL").unwrap_or_else(|| format!("http://{listen}"));

        let mut core = Config {
            issuer: public_url,
            ..Config::default()
        };
        let argon = Argon2Params {
            m_kib: env_parse("BEDSIDE_ARGON2_M_KIB")?.unwrap_or(core.argon2.m_kib),
            t: env_parse("BEDSIDE_ARGON2_T")?.unwrap_or(core.argon2.t),
            p: env_parse("BEDSIDE_ARGON2_P")?.unwrap_or(core.argon2.p),
        };
        core.argon2 = argon;
        if let Some(v) = env_parse("BEDSIDE_LOCKOUT_FREE_ATTEMPTS")? {
            core.account_lockout.free_attempts = v;
        }
        if let Some(v) = env_parse("BEDSIDE_LOCKOUT_BASE_DELAY_SECS")? {
            core.account_lockout.base_delay_secs = v;
        }
        if let Some(v) = env_parse("BEDSIDE_ADDRESS_FREE_ATTEMPTS")? {
            core.address_lockout.free_attempts = v;
        }
        if let Some(v) = env_parse("BEDSIDE_ADDRESS_FREE_REQUESTS")? {
            core.address_requests.free_attempts = v;
        }
        if let Some(v) = env_parse("BEDSIDE_ACCESS_TTL_SECS")? {
            core.access_ttl_secs = v;
        }
        if let Some(v) = env_parse("BEDSIDE_SESSION_IDLE_SECS")? {
            core.session_idle_secs = v;
        }
        if let Some(v) = env_parse("BEDSIDE_SESSION_ABSOLUTE_SECS")? {
            core.session_absolute_secs = v;
        }
        if let Some(v) = env_parse("BEDSIDE_RESEND_INTERVAL_SECS")? {
            core.resend_interval_secs = v;
        }
        if let Some(v) = env_parse("BEDSIDE_ROOM_RING_SECS")? {
            core.room_ring_secs = v;
        }

        let turn_secret = env("BEDSIDE_TURN_SECRET").map(|s| Secret(s.into_bytes()));
        core.turn = match (env("BEDSIDE_TURN_URLS"), &turn_secret) {
            (Some(hosts), Some(_)) => {
                let hosts = hosts.split(',').map(|h| h.trim().to_owned());
                let mut turn = TurnConfig::new(hosts.filter(|h| !h.is_empty()).collect());
                if let Some(v) = env_parse("BEDSIDE_TURN_TTL_SECS")? {
                    turn.ttl_secs = v;
                }
                if let Some(v) = env_parse("BEDSIDE_TURN_PORT")? {
                    turn.port = v;
                }
                if let Some(v) = env_parse("BEDSIDE_TURN_TLS_PORT")? {
                    turn.tls_port = v;
                }
                Some(turn)
            }
            (None, None) => None,
            _ => anyhow::bail!("BEDSIDE_TURN_URLS and BEDSIDE_TURN_SECRET go together"),
        };
        let tls = match (env("BEDSIDE_TLS_CERT"), env("BEDSIDE_TLS_KEY")) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            _ => anyhow::bail!("BEDSIDE_TLS_CERT and BEDSIDE_TLS_KEY go together"),
        };

        let trusted_proxies = env("BEDSIDE_TRUSTED_PROXIES")
            .map(|v| {
                v.split(',')
                    .map(|a| a.trim().parse().context("BEDSIDE_TRUSTED_PROXIES"))
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .transpose()?
            .unwrap_or_default();
        let provider = match (env("BEDSIDE_PROVIDER_URL"), env("BEDSIDE_PROVIDER_TOKEN")) {
            (Some(url), Some(token)) => Some((url, token)),
            (None, None) => None,
            _ => anyhow::bail!("BEDSIDE_PROVIDER_URL and BEDSIDE_PROVIDER_TOKEN go together"),
        };
        Ok(Self {
            listen,
            data_dir,
            web_dir,
            trusted_proxies,
            smtp_url: env("BEDSIDE_SMTP_URL"),
            smtp_from: env("BEDSIDE_SMTP_FROM")
                .unwrap_or_else(|| "Bedside <noreply@localhost>".into()),
            provider,
            core,
            turn_secret,
            tls,
        })
    }
}

impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("web_dir", &self.web_dir)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("smtp", &self.smtp_url.is_some())
            .field("smtp_from", &self.smtp_from)
            .field("provider", &self.provider.as_ref().map(|_| "configured"))
            .field("core", &self.core)
            .field("turn_secret", &self.turn_secret)
            .field("tls", &self.tls)
            .finish()
    }
}
