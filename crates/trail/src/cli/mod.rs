//! The client commands: settings and profiles, output, and one module per command group.
//! Each is a thin layer over `trail-client`.

pub mod config;
pub mod export;
pub mod logs;
pub mod manage;
pub mod output;

use std::path::{Path, PathBuf};

use trail_client::{Client, ClientOptions, segment};

/// `--url`, `--token`, `--org`, `--profile`, `--ca-cert`: given on the command line (before
/// or after the client command) or in the environment, else taken from the profile. Listed once, in
/// `trail --help`; the binary's `cli_command` lets every client command accept them too.
#[derive(clap::Args, Clone, Default)]
#[command(next_help_heading = "Connection (for every command but serve, bench, admin)")]
pub struct Connection {
    /// Trail's URL [default: the profile's, else http://127.0.0.1:7070].
    #[arg(long, env = "TRAIL_URL")]
    pub url: Option<String>,
    /// A personal access token, or KEYID:SECRET for an API key [default: the profile's].
    #[arg(long, env = "TRAIL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The org to act on [default: the profile's; `logs tail`: else the credential's own].
    #[arg(long, env = "TRAIL_ORG")]
    pub org: Option<String>,
    /// The profile saved by `trail login` to use, or for `login` the name to save it under
    /// [default: the default profile].
    #[arg(long, env = "TRAIL_PROFILE")]
    pub profile: Option<String>,
    /// A PEM file of CA certificates to trust for an https:// URL, besides the system's
    /// (for a Trail whose certificate a private CA issued) [default: the profile's].
    #[arg(long, env = "TRAIL_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

/// Reads a password: prompted for on the terminal without echo when there is one, else one
/// line of standard input (for scripts).
pub fn read_password(prompt: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let pw = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt)?
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if pw.is_empty() {
        return Err(trail_client::ClientError::Usage("no password given".into()).into());
    }
    Ok(pw)
}

/// A usage error (exit 2) saying `msg`.
pub fn usage(msg: String) -> anyhow::Error {
    trail_client::ClientError::Usage(msg).into()
}

/// Query parameters as a URL's query string.
pub fn query_string(params: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

/// One `trail: note:` line on standard error (a closed stderr is no reason to stop).
pub fn note(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "trail: note: {line}");
}

/// The ids of [`Connection`]'s flags.
pub const CONNECTION_IDS: [&str; 5] = ["url", "token", "org", "profile", "ca_cert"];

/// No credential was given or saved: a command that needs one cannot start (exit 4, as
/// a refused credential).
#[derive(Debug, thiserror::Error)]
#[error("no credential: run `trail login`, or pass --token (or TRAIL_TOKEN)")]
pub struct NoCredential;

/// A connected client, the org it acts on (when named), and its credential's id.
pub struct Session {
    pub client: Client,
    org: Option<String>,
    token: String,
}

/// The server's URL: the flag or environment, else the profile's, else the default.
pub fn server_url(c: &Connection) -> anyhow::Result<String> {
    let cfg = config::Config::load()?;
    let profile = cfg.profile(c.profile.as_deref())?;
    Ok(c.url
        .clone()
        .or_else(|| profile.map(|p| p.url.clone()))
        .unwrap_or_else(|| "http://127.0.0.1:7070".to_owned()))
}

/// The CA file to trust: the flag or environment, else the profile's.
pub fn ca_cert(c: &Connection) -> anyhow::Result<Option<PathBuf>> {
    if c.ca_cert.is_some() {
        return Ok(c.ca_cert.clone());
    }
    let cfg = config::Config::load()?;
    Ok(cfg
        .profile(c.profile.as_deref())?
        .and_then(|p| p.ca_cert.clone()))
}

/// A client of `url` with `token`, trusting the connection's CA file if it names one.
pub fn client(c: &Connection, url: &str, token: &str) -> anyhow::Result<Client> {
    client_trusting(ca_cert(c)?.as_deref(), url, token)
}

/// A client of `url` with `token`, trusting the CA file `ca` (if any) besides the system's.
pub fn client_trusting(ca: Option<&Path>, url: &str, token: &str) -> anyhow::Result<Client> {
    let mut options = ClientOptions::default();
    if let Some(path) = ca {
        options = options.ca_cert_file(path)?;
    }
    Ok(Client::with_options(url, token, &options)?)
}

/// The id of a credential, as its calls are recorded (`tokenId`): the part of an API key
/// before the `:`, of any other token before the `.`. `None` for a malformed token.
pub fn credential_id(token: &str) -> Option<&str> {
    let id = match token.split_once(':') {
        Some((id, _)) => id,
        None => token.split_once('.')?.0,
    };
    (!id.is_empty()).then_some(id)
}

impl Session {
    pub fn open(c: &Connection) -> anyhow::Result<Session> {
        let cfg = config::Config::load()?;
        let profile = cfg.profile(c.profile.as_deref())?;
        let url = server_url(c)?;
        let token = c
            .token
            .clone()
            .or_else(|| profile.map(|p| p.token.clone()))
            .ok_or(NoCredential)?;
        let org = c
            .org
            .clone()
            .or_else(|| profile.and_then(|p| p.org.clone()));
        Ok(Session {
            client: client(c, &url, &token)?,
            org,
            token,
        })
    }

    /// The org named by --org (or TRAIL_ORG) or the profile, if any. Nothing asks the
    /// server: a command that can act on the credential's own org without naming it (`logs
    /// tail`, through `/v1/audit-log`) does so, so each command makes one call.
    pub fn named_org(&self) -> Option<&str> {
        self.org.as_deref()
    }

    /// The org to act on, which this command must name.
    /// The org acted on: the one named (flag, environment or profile), else the credential's
    /// own, which costs one `GET /v1/me` (a profile saved by `trail login` names it, so the
    /// usual command makes one call).
    pub async fn org(&self) -> anyhow::Result<String> {
        if let Some(org) = &self.org {
            return Ok(org.clone());
        }
        let me = self.client.get_json("/v1/me").await?;
        let org = me["org"].as_str().or_else(|| {
            me["orgs"]
                .as_array()
                .and_then(|o| o.first())
                .and_then(|o| o["id"].as_str())
        });
        org.map(str::to_owned).ok_or_else(|| {
            trail_client::ClientError::Usage(
                "which org? pass --org (or TRAIL_ORG), or save it in a profile with `trail login`"
                    .into(),
            )
            .into()
        })
    }

    /// `/v1/orgs/<org>` for the org acted on.
    pub async fn org_path(&self) -> anyhow::Result<String> {
        Ok(format!("/v1/orgs/{}", segment(&self.org().await?)))
    }

    /// The id of this session's credential (see [`credential_id`]).
    pub fn credential_id(&self) -> Option<&str> {
        credential_id(&self.token)
    }
}

/// What kind of credential the connection uses, for messages: "PAT", "API key", ...
pub fn credential_kind(c: &Connection) -> &'static str {
    let from_profile = || {
        config::Config::load().ok().and_then(|cfg| {
            cfg.profile(c.profile.as_deref())
                .ok()
                .flatten()
                .map(|p| p.token.clone())
        })
    };
    let token = c.token.clone().or_else(from_profile).unwrap_or_default();
    if token.contains(':') {
        "API key"
    } else if token.starts_with("bg_") {
        "break-glass token"
    } else {
        "PAT"
    }
}
