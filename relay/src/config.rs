//! The relay's configuration: a TOML file, then `BEDSIDE_RELAY_*` environment overrides.
//!
//! ```toml
//! realm = "bedside"
//! listen = ["udp://0.0.0.0:3478", "tcp://0.0.0.0:3478", "tls://0.0.0.0:5349", "tls://0.0.0.0:443"]
//! relay_ipv4 = "203.0.113.10"
//! external_ipv4 = "198.51.100.7"   # advertised address when behind 1:1 NAT
//! port_range = "49152-65535"
//! tls_cert = "/etc/bedside/relay.crt"
//! tls_key = "/etc/bedside/relay.key"
//! metrics_addr = "127.0.0.1:9641"
//! control_addr = "0.0.0.0:9642"     # TLS, bearer service token
//! events_url = "https://functions.example/v1/relay/events"
//! ```
//!
//! Secrets (`secret`, `previous_secret`, `control_token`, `events_token`) are best given in the
//! environment; every key can be overridden by `BEDSIDE_RELAY_<KEY in upper case>`, lists as
//! comma-separated values.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::proto::auth::Secret;
use crate::proto::policy::{IpNet, PeerPolicy};
use crate::proto::server::{self, Transport};

/// Errors from reading the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file: {0}")]
    Read(#[from] std::io::Error),
    /// The file is not valid TOML for this schema. Only the message is kept: the parser's
    /// excerpt of the offending line could contain a secret.
    #[error("invalid configuration file: {0}")]
    Parse(String),
    /// A value is invalid.
    #[error("invalid configuration value for {key}: {reason}")]
    Value {
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// One listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen {
    /// Transport.
    pub transport: Transport,
    /// Address.
    pub addr: SocketAddr,
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (scheme, addr) = s
            .split_once("://")
            .ok_or("expected udp://, tcp:// or tls://")?;
        let transport = match scheme {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            other => return Err(format!("unknown transport {other}")),
        };
        let addr = addr.parse().map_err(|e| format!("{e}"))?;
        Ok(Self { transport, addr })
    }
}

/// The file's schema; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    realm: Option<String>,
    secret: Option<String>,
    previous_secret: Option<String>,
    listen: Option<Vec<String>>,
    relay_ipv4: Option<IpAddr>,
    relay_ipv6: Option<IpAddr>,
    external_ipv4: Option<IpAddr>,
    external_ipv6: Option<IpAddr>,
    port_range: Option<String>,
    allow_peers: Option<Vec<String>>,
    max_allocations: Option<usize>,
    max_allocations_per_user: Option<usize>,
    bandwidth_bytes_per_sec: Option<u64>,
    unauthorized_per_sec: Option<u64>,
    default_lifetime_secs: Option<u64>,
    max_lifetime_secs: Option<u64>,
    nonce_lifetime_secs: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    metrics_addr: Option<SocketAddr>,
    control_addr: Option<SocketAddr>,
    control_token: Option<String>,
    events_url: Option<String>,
    events_token: Option<String>,
    events_ca: Option<PathBuf>,
    drain_secs: Option<u64>,
    log_level: Option<String>,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Settings {
    /// Protocol settings for the sans-IO server.
    pub server: server::Config,
    /// Listening sockets.
    pub listen: Vec<Listen>,
    /// TLS certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Metrics and health endpoint (plain HTTP; keep it on loopback).
    pub metrics_addr: Option<SocketAddr>,
    /// Control endpoint (TLS; bearer token).
    pub control_addr: Option<SocketAddr>,
    /// Service token for the control endpoint.
    pub control_token: Option<Token>,
    /// Where audit events are posted (https URL).
    pub events_url: Option<String>,
    /// Service token for event reports.
    pub events_token: Option<Token>,
    /// CA certificates that sign the events endpoint (PEM).
    pub events_ca: Option<PathBuf>,
    /// How long SIGTERM waits for allocations to end.
    pub drain: Duration,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub log_level: String,
    /// The file these settings were read from, read again on SIGHUP.
    pub source: Option<PathBuf>,
}

/// A bearer token; never printed.
#[derive(Clone)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Settings {
    /// Reads `path` (if any), then applies overrides from `env`.
    pub fn load(
        path: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path)?,
            None => String::new(),
        };
        let mut settings = Self::parse(&text, env)?;
        settings.source = path.map(std::path::Path::to_path_buf);
        Ok(settings)
    }

    /// Parses file contents, then applies overrides from `env`.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut file: File =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.message().to_owned()))?;
        for (key, value) in env {
            if let Some(key) = key.strip_prefix("BEDSIDE_RELAY_") {
                apply_env(&mut file, &key.to_ascii_lowercase(), value)?;
            }
        }
        file.validate()
    }
}

fn bad(key: &'static str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Value {
        key,
        reason: reason.to_string(),
    }
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parsed<T: std::str::FromStr>(key: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e| bad(key, e))
}

fn apply_env(file: &mut File, key: &str, value: String) -> Result<(), ConfigError> {
    match key {
        "realm" => file.realm = Some(value),
        "secret" => file.secret = Some(value),
        "previous_secret" => file.previous_secret = Some(value),
        "listen" => file.listen = Some(list(&value)),
        "relay_ipv4" => file.relay_ipv4 = Some(parsed("relay_ipv4", &value)?),
        "relay_ipv6" => file.relay_ipv6 = Some(parsed("relay_ipv6", &value)?),
        "external_ipv4" => file.external_ipv4 = Some(parsed("external_ipv4", &value)?),
        "external_ipv6" => file.external_ipv6 = Some(parsed("external_ipv6", &value)?),
        "port_range" => file.port_range = Some(value),
        "allow_peers" => file.allow_peers = Some(list(&value)),
        "max_allocations" => file.max_allocations = Some(parsed("max_allocations", &value)?),
        "max_allocations_per_user" => {
            file.max_allocations_per_user = Some(parsed("max_allocations_per_user", &value)?);
        }
        "bandwidth_bytes_per_sec" => {
            file.bandwidth_bytes_per_sec = Some(parsed("bandwidth_bytes_per_sec", &value)?);
        }
        "unauthorized_per_sec" => {
            file.unauthorized_per_sec = Some(parsed("unauthorized_per_sec", &value)?);
        }
        "default_lifetime_secs" => {
            file.default_lifetime_secs = Some(parsed("default_lifetime_secs", &value)?);
        }
        "max_lifetime_secs" => file.max_lifetime_secs = Some(parsed("max_lifetime_secs", &value)?),
        "nonce_lifetime_secs" => {
            file.nonce_lifetime_secs = Some(parsed("nonce_lifetime_secs", &value)?);
        }
        "tls_cert" => file.tls_cert = Some(value.into()),
        "tls_key" => file.tls_key = Some(value.into()),
        "metrics_addr" => file.metrics_addr = Some(parsed("metrics_addr", &value)?),
        "control_addr" => file.control_addr = Some(parsed("control_addr", &value)?),
        "control_token" => file.control_token = Some(value),
        "events_url" => file.events_url = Some(value),
        "events_token" => file.events_token = Some(value),
        "events_ca" => file.events_ca = Some(value.into()),
        "drain_secs" => file.drain_secs = Some(parsed("drain_secs", &value)?),
        "log_level" => file.log_level = Some(value),
        // Unknown variables with the prefix are ignored so that deployment tooling may add its
        // own; the file, in contrast, refuses unknown keys.
        _ => {}
    }
    Ok(())
}

impl File {
    fn validate(self) -> Result<Settings, ConfigError> {
        let secrets: Vec<Secret> = [self.secret, self.previous_secret]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .map(|s| Secret::new(s.into_bytes()))
            .collect();
        if secrets.is_empty() {
            return Err(bad("secret", "a REST secret is required"));
        }
        let realm = self.realm.unwrap_or_else(|| "bedside".to_owned());
        let mut config = server::Config::new(realm, secrets);

        let listen = self
            .listen
            .unwrap_or_else(|| vec!["udp://127.0.0.1:3478".into(), "tcp://127.0.0.1:3478".into()]);
        let listen = listen
            .iter()
            .map(|l| l.parse::<Listen>().map_err(|e| bad("listen", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let wants_tls = listen.iter().any(|l| l.transport == Transport::Tls);
        if (wants_tls || self.control_addr.is_some())
            && (self.tls_cert.is_none() || self.tls_key.is_none())
        {
            return Err(bad(
                "tls_cert",
                "tls listeners and the control endpoint need tls_cert and tls_key",
            ));
        }
        if self.control_addr.is_some() && self.control_token.as_deref().unwrap_or("").len() < 16 {
            return Err(bad(
                "control_token",
                "the control endpoint needs a token of 16+ characters",
            ));
        }

        config.relay_v4 = self.relay_ipv4.or_else(|| {
            let first = listen.iter().map(|l| l.addr.ip()).find(IpAddr::is_ipv4);
            first.filter(|ip| !ip.is_unspecified())
        });
        config.relay_v6 = self.relay_ipv6;
        config.external_v4 = self.external_ipv4;
        config.external_v6 = self.external_ipv6;
        if config.relay_v4.is_none() && config.relay_v6.is_none() {
            return Err(bad(
                "relay_ipv4",
                "set relay_ipv4 or relay_ipv6 to a concrete address",
            ));
        }
        if let Some(range) = self.port_range {
            let (lo, hi) = range
                .split_once('-')
                .ok_or_else(|| bad("port_range", "expected LO-HI"))?;
            let lo: u16 = parsed("port_range", lo)?;
            let hi: u16 = parsed("port_range", hi)?;
            if lo == 0 || lo > hi {
                return Err(bad("port_range", "expected 1 <= LO <= HI"));
            }
            config.ports = lo..=hi;
        }
        let allow = self
            .allow_peers
            .unwrap_or_default()
            .iter()
            .map(|net| net.parse::<IpNet>().map_err(|e| bad("allow_peers", e)))
            .collect::<Result<Vec<_>, _>>()?;
        config.policy = PeerPolicy::with_allowed(allow);
        if let Some(n) = self.max_allocations {
            config.max_allocations = n;
        }
        if let Some(n) = self.max_allocations_per_user {
            config.max_allocations_per_user = n;
        }
        config.bandwidth = self.bandwidth_bytes_per_sec.filter(|b| *b > 0);
        if let Some(n) = self.unauthorized_per_sec {
            config.unauthorized_rate = n;
            config.unauthorized_burst = n.saturating_mul(2);
        }
        if let Some(s) = self.default_lifetime_secs {
            config.default_lifetime = Duration::from_secs(s);
        }
        if let Some(s) = self.max_lifetime_secs {
            config.max_lifetime = Duration::from_secs(s);
        }
        if config.max_lifetime < config.default_lifetime {
            return Err(bad(
                "max_lifetime_secs",
                "shorter than default_lifetime_secs",
            ));
        }
        if let Some(s) = self.nonce_lifetime_secs {
            config.nonce_lifetime = Duration::from_secs(s.max(1));
        }
        if self
            .events_url
            .as_deref()
            .is_some_and(|u| !u.starts_with("https://"))
        {
            return Err(bad("events_url", "events are sent over https only"));
        }

        Ok(Settings {
            server: config,
            listen,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            metrics_addr: self.metrics_addr,
            control_addr: self.control_addr,
            control_token: self.control_token.map(Token),
            events_url: self.events_url,
            events_token: self.events_token.map(Token),
            events_ca: self.events_ca,
            drain: Duration::from_secs(self.drain_secs.unwrap_or(30)),
            log_level: self.log_level.unwrap_or_else(|| "info".to_owned()),
            source: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_then_environment() {
        let text = r#"
            realm = "file-realm"
            secret = "from-file"
            listen = ["udp://127.0.0.1:3478", "tcp://127.0.0.1:3478"]
            port_range = "50000-50100"
            allow_peers = ["127.0.0.0/8"]
            max_allocations = 5
        "#;
        let settings = Settings::parse(
            text,
            env(&[
                ("BEDSIDE_RELAY_REALM", "env-realm"),
                ("BEDSIDE_RELAY_PREVIOUS_SECRET", "old"),
                ("BEDSIDE_RELAY_MAX_ALLOCATIONS", "7"),
                ("BEDSIDE_RELAY_EXTERNAL_IPV4", "198.51.100.7"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.server.realm, "env-realm");
        assert_eq!(settings.server.secrets.len(), 2);
        assert_eq!(settings.server.max_allocations, 7);
        assert_eq!(settings.server.ports, 50000..=50100);
        assert_eq!(settings.server.relay_v4, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(
            settings.server.external_v4,
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(settings.listen.len(), 2);
        assert!(
            settings
                .server
                .policy
                .check("127.0.0.1".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn refuses_what_would_be_unsafe_or_broken() {
        assert!(Settings::parse("", env(&[])).is_err(), "no secret");
        let base = [("BEDSIDE_RELAY_SECRET", "s")];
        assert!(Settings::parse("", env(&base)).is_ok());
        assert!(Settings::parse("unknown_key = 1", env(&base)).is_err());
        let leaky = Settings::parse("secret = \"hunter2\"\nrealm = [", env(&[])).unwrap_err();
        assert!(!leaky.to_string().contains("hunter2"), "{leaky}");
        let tls = [
            ("BEDSIDE_RELAY_SECRET", "s"),
            ("BEDSIDE_RELAY_LISTEN", "tls://127.0.0.1:5349"),
        ];
        assert!(
            Settings::parse("", env(&tls)).is_err(),
            "tls without a certificate"
        );
        let range = [
            ("BEDSIDE_RELAY_SECRET", "s"),
            ("BEDSIDE_RELAY_PORT_RANGE", "9-3"),
        ];
        assert!(Settings::parse("", env(&range)).is_err());
        let events = [
            ("BEDSIDE_RELAY_SECRET", "s"),
            ("BEDSIDE_RELAY_EVENTS_URL", "http://x"),
        ];
        assert!(
            Settings::parse("", env(&events)).is_err(),
            "events in clear text"
        );
        let wildcard = [
            ("BEDSIDE_RELAY_SECRET", "s"),
            ("BEDSIDE_RELAY_LISTEN", "udp://0.0.0.0:3478"),
        ];
        assert!(
            Settings::parse("", env(&wildcard)).is_err(),
            "no concrete relay address"
        );
    }
}
