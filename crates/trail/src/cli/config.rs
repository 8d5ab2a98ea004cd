//! Profiles saved by `trail login`: `$TRAIL_CONFIG`, else `$XDG_CONFIG_HOME/trail/config.toml`,
//! else `~/.config/trail/config.toml`; written with mode 0600 (it holds tokens).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub url: String,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// The token was made for this profile by signing in with email and password: `trail
    /// logout` revokes it. (A token given to `trail login` is the caller's to keep.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub made_by_login: bool,
    /// A PEM file of CA certificates to trust for the URL (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The profile used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

impl Config {
    pub fn path() -> anyhow::Result<PathBuf> {
        if let Some(p) = std::env::var_os("TRAIL_CONFIG").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(d).join("trail/config.toml"));
        }
        let home =
            std::env::var_os("HOME").context("no HOME to keep profiles in: set TRAIL_CONFIG")?;
        Ok(PathBuf::from(home).join(".config/trail/config.toml"))
    }

    pub fn load() -> anyhow::Result<Config> {
        let path = Self::path()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("reading {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let path = Self::path()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        #[cfg(unix)]
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(toml::to_string_pretty(self)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// The named profile, or the default one; `None` when there is none and none was named.
    pub fn profile(&self, name: Option<&str>) -> anyhow::Result<Option<&Profile>> {
        match name {
            Some(n) => match self.profiles.get(n) {
                Some(p) => Ok(Some(p)),
                None => bail!(trail_client::ClientError::Usage(format!(
                    "no profile {n:?}: `trail login --profile {n}` saves one"
                ))),
            },
            None => Ok(self.default.as_deref().and_then(|d| self.profiles.get(d))),
        }
    }
}
