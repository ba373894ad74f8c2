//! Key material: from the environment in production, generated into the data folder otherwise.
//!
//! `BEDSIDE_SIGNING_KEY`, `BEDSIDE_KEK` and `BEDSIDE_CODE_PEPPER` each hold 32 bytes in
//! base64. Any that is missing is generated once and kept in `<data dir>/keys.json` (mode
//! 0600), so a local stack survives restarts. Production deployments inject all three from
//! their secret store and keep nothing on disk.

use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bedside_core::api::Keys;
use bedside_core::crypto::SecretKey;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Stored {
    signing_key: String,
    kek: String,
    code_pepper: String,
}

fn decode(name: &str, value: &str) -> anyhow::Result<SecretKey> {
    let raw = B64
        .decode(value.trim())
        .with_context(|| format!("{name} is not base64"))?;
    let bytes: [u8; 32] = raw
        .try_into()
        .map_err(|_| anyhow::anyhow!("{name} must be 32 bytes"))?;
    Ok(SecretKey(bytes))
}

fn random() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    Ok(B64.encode(bytes))
}

/// Loads the keys, generating and storing the missing ones under `data_dir`.
pub fn load(data_dir: &Path) -> anyhow::Result<Keys> {
    let path = data_dir.join("keys.json");
    let stored: Option<Stored> = match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).context("keys.json")?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context("keys.json"),
    };
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let all_in_env = ["BEDSIDE_SIGNING_KEY", "BEDSIDE_KEK", "BEDSIDE_CODE_PEPPER"]
        .iter()
        .all(|n| from_env(n).is_some());
    let stored = match stored {
        Some(s) => s,
        None if all_in_env => Stored {
            signing_key: String::new(),
            kek: String::new(),
            code_pepper: String::new(),
        },
        None => {
            let fresh = Stored {
                signing_key: random()?,
                kek: random()?,
                code_pepper: random()?,
            };
            write_private(&path, &serde_json::to_string_pretty(&fresh)?)?;
            tracing::info!(path = %path.display(), "generated new keys");
            fresh
        }
    };
    let pick = |name: &str, stored: &str| {
        decode(name, &from_env(name).unwrap_or_else(|| stored.to_owned()))
    };
    Ok(Keys {
        signing_seed: pick("BEDSIDE_SIGNING_KEY", &stored.signing_key)?,
        kek: pick("BEDSIDE_KEK", &stored.kek)?,
        pepper: pick("BEDSIDE_CODE_PEPPER", &stored.code_pepper)?,
    })
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
