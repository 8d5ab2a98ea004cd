//! `trail login`, `health`, `me`, and managing orgs, instances, members, API keys, personal
//! access tokens and break-glass tokens.

use std::io::IsTerminal;

use anyhow::Context;
use serde_json::{Value, json};
use trail_client::{Client, ClientError, segment};

use super::config::{Config, Profile};
use super::output::{self, Format, cell};
use super::{Connection, Session};

#[derive(clap::Args)]
pub struct LoginArgs {
    /// Sign in with this email and a password (prompted for, never echoed; read from
    /// standard input when it is not a terminal) rather than save a token. Asked for on a
    /// terminal when no token is given.
    #[arg(long)]
    pub email: Option<String>,
    /// With email and password: when the token made for this profile stops working
    /// [default: never; revoke it with `trail logout`].
    #[arg(long)]
    pub expires_in: Option<String>,
}

/// `trail login`: with `--token` (checked, then saved), or with email and password (traded
/// for a personal access token for all the user's orgs, named for this machine, and saved).
pub async fn login(conn: &Connection, args: LoginArgs) -> anyhow::Result<()> {
    // --profile names the profile to save, which need not exist yet: the URL is the flag's,
    // else the default profile's.
    let url = match &conn.url {
        Some(url) => url.clone(),
        None => super::server_url(&Connection {
            profile: None,
            ..conn.clone()
        })?,
    };
    let name = conn.profile.clone().unwrap_or_else(|| "default".into());
    // Read before anything is made on the server: a token made for a profile that cannot
    // be saved would be left behind.
    let mut cfg = Config::load()?;
    let (token, made_by_login, home) = match &conn.token {
        Some(token) => {
            if args.email.is_some() || args.expires_in.is_some() {
                return Err(usage(anyhow::anyhow!(
                    "--email and --expires-in sign in with a password: not with --token"
                )));
            }
            (token.clone(), false, None)
        }
        None => {
            let email = match args.email {
                Some(e) => e,
                None if std::io::stdin().is_terminal() => {
                    eprint!("Email: ");
                    let mut e = String::new();
                    std::io::stdin().read_line(&mut e)?;
                    e.trim().to_owned()
                }
                None => {
                    return Err(usage(anyhow::anyhow!(
                        "give --token, or --email to sign in with a password"
                    )));
                }
            };
            if let Some(host) = plain_http_host(&url) {
                eprintln!(
                    "trail: note: your password goes to {host} over plain http, readable on the way; use https://"
                );
            }
            let password = super::read_password(&format!("Password for {email}: "))?;
            let host = gethostname::gethostname().to_string_lossy().into_owned();
            let body = json!({
                "email": email,
                "password": password,
                "name": format!("trail login on {host}"),
                "expiresIn": args.expires_in,
            });
            let client = super::client_trusting(conn.ca_cert.as_deref(), &url, "")?;
            let v = client.send_json("POST", "/v1/login", Some(&body)).await?;
            let token = v["token"]
                .as_str()
                .ok_or_else(|| ClientError::Decode("no token in the answer".into()))?;
            (token.to_owned(), true, v["org"].as_str().map(str::to_owned))
        }
    };
    // Only the CA given now: the profile being saved may not exist yet.
    let client = super::client_trusting(conn.ca_cert.as_deref(), &url, &token)?;
    let me = client.get_json("/v1/me").await?;
    // The org is kept in the profile (the one named, else the credential's own, from this
    // one check), so later commands need not ask the server which org they act on.
    let org = conn
        .org
        .clone()
        .or(home)
        .or_else(|| me["org"].as_str().map(str::to_owned))
        .or_else(|| me["orgs"][0]["id"].as_str().map(str::to_owned));
    cfg.profiles.insert(
        name.clone(),
        Profile {
            url: url.clone(),
            token: token.clone(),
            org: org.clone(),
            made_by_login,
            ca_cert: saved_ca_cert(conn)?,
        },
    );
    if cfg.default.is_none() || name == "default" {
        cfg.default = Some(name.clone());
    }
    let path = match cfg.save() {
        Ok(path) => path,
        Err(e) => {
            // Nothing keeps the token made for this profile: take it back.
            if made_by_login {
                revoke_own(&client, &token, &me).await.ok();
            }
            return Err(e);
        }
    };
    let org = org.unwrap_or_else(|| "-".into());
    let reach = if me["allOrgs"] == json!(true) {
        ", acting on all your orgs"
    } else {
        ""
    };
    output::line(&format!(
        "Logged in to {url} as {} ({}{reach}), org {}; saved as profile {name:?} in {}",
        output::escape(&cell(&me["actor"])),
        output::escape(&cell(&me["actorType"])),
        output::escape(&org),
        path.display()
    ))
}

/// The host of an `http://` URL that is not this machine's loopback.
fn plain_http_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let loopback = name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then_some(host)
}

/// Revokes the credential `client` uses, a personal access token (`me` is its `GET
/// /v1/me`): through the org it acts on by default, which is always one it reaches.
async fn revoke_own(client: &Client, token: &str, me: &Value) -> Result<(), ClientError> {
    let id = super::credential_id(token).unwrap_or_default();
    let org = me["org"].as_str().unwrap_or_default();
    let path = format!("/v1/orgs/{}/tokens/{}", segment(org), segment(id));
    client.send_json("DELETE", &path, None).await.map(|_| ())
}

/// `trail logout`: forgets the profile, and revokes its token if `trail login` made it.
pub async fn logout(conn: &Connection) -> anyhow::Result<()> {
    let mut cfg = Config::load()?;
    let name = match conn.profile.clone().or_else(|| cfg.default.clone()) {
        Some(n) if cfg.profiles.contains_key(&n) => n,
        Some(n) => return Err(usage(anyhow::anyhow!("no profile {n:?} to log out of"))),
        None => return Err(usage(anyhow::anyhow!("no profile to log out of"))),
    };
    let profile = cfg.profiles[&name].clone();
    if profile.made_by_login
        && let Some(id) = super::credential_id(&profile.token)
    {
        let client =
            super::client_trusting(profile.ca_cert.as_deref(), &profile.url, &profile.token)?;
        let revoked = match client.get_json("/v1/me").await {
            Ok(me) => revoke_own(&client, &profile.token, &me).await,
            Err(e) => Err(e),
        };
        match revoked {
            Ok(()) => eprintln!("revoked {id}"),
            // A token that no longer works needs no revoking.
            Err(ClientError::Unauthenticated(_)) => {}
            Err(e) => return Err(anyhow::Error::from(e).context(format!("revoking {id}"))),
        }
    }
    cfg.profiles.remove(&name);
    if cfg.default.as_deref() == Some(name.as_str()) {
        cfg.default = cfg.profiles.keys().next().cloned();
    }
    cfg.save()?;
    output::line(&format!("Logged out: profile {name:?} removed"))
}

/// The CA file a login saves: the one given, as an absolute path (the profile is used from
/// any directory), or none.
fn saved_ca_cert(conn: &Connection) -> anyhow::Result<Option<std::path::PathBuf>> {
    conn.ca_cert
        .as_deref()
        .map(|p| {
            std::path::absolute(p).with_context(|| format!("resolving the path {}", p.display()))
        })
        .transpose()
}

fn usage(e: anyhow::Error) -> anyhow::Error {
    ClientError::Usage(e.to_string()).into()
}

/// `trail health`: liveness and readiness, without a credential.
pub async fn health(conn: &Connection) -> anyhow::Result<()> {
    let url = match &conn.url {
        Some(u) => u.clone(),
        None => Config::load()?
            .profile(conn.profile.as_deref())?
            .map_or_else(|| "http://127.0.0.1:7070".to_owned(), |p| p.url.clone()),
    };
    let client = super::client(conn, &url, "-")?;
    client.get_json("/healthz").await?;
    match client.get_json("/readyz").await {
        Ok(_) => output::line(&format!("{url}: healthy and ready")),
        Err(ClientError::Status { status, detail }) => {
            anyhow::bail!("{url}: alive but not ready ({status}: {detail})")
        }
        Err(e) => Err(e.into()),
    }
}

/// Prints one object: its fields as a two-column table, or JSON.
fn print_object(format: Format, v: &Value, fields: &[(&str, &str)]) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let rows: Vec<(Vec<String>, Option<&str>)> = fields
                .iter()
                .map(|(label, key)| (vec![label.to_string(), cell(&v[*key])], None))
                .collect();
            output::table(&["FIELD", "VALUE"], &rows)
        }
        _ => output::json(v),
    }
}

/// Prints a list: a table of `columns` (header, key), or JSON / NDJSON.
fn print_list(format: Format, items: &[Value], columns: &[(&str, &str)]) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let headers: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
            let rows: Vec<(Vec<String>, Option<&str>)> = items
                .iter()
                .map(|i| {
                    (
                        columns.iter().map(|(_, k)| cell(&i[*k])).collect(),
                        i["revokedAt"].is_string().then_some("2"),
                    )
                })
                .collect();
            output::table(&headers, &rows)
        }
        f => output::json_values(f, items),
    }
}

/// The `items` of a list answer.
fn items(v: &Value) -> &[Value] {
    v["items"].as_array().map_or(&[][..], |v| v)
}

/// After a creation that returns a secret: where it is, said once.
fn say_secret(format: Format, what: &str) {
    if format == Format::Table {
        eprintln!("The {what} is shown once, above: store it now.");
    }
}

#[derive(clap::Args)]
pub struct OutputArg {
    /// Output: table (default on a terminal), json, ndjson.
    #[arg(long, short = 'o', value_enum, global = true)]
    output: Option<Format>,
}

impl OutputArg {
    fn format(&self) -> Format {
        match self.output {
            Some(f) => f,
            None if std::io::stdout().is_terminal() => Format::Table,
            None => Format::Json,
        }
    }
}

/// `trail me`.
pub async fn me(conn: &Connection, out: &OutputArg) -> anyhow::Result<()> {
    let s = Session::open(conn)?;
    let me = s.client.get_json("/v1/me").await?;
    print_object(
        out.format(),
        &me,
        &[
            ("actor", "actor"),
            ("type", "actorType"),
            ("credential", "credentialId"),
            ("org", "org"),
            ("scopes", "scopes"),
            ("platform admin", "platformAdmin"),
        ],
    )?;
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum OrgsCommand {
    /// The orgs you can act on (every org, for a platform admin).
    List,
    /// Create an org (needs orgs:admin).
    Create {
        /// The org's id: lower-case letters, digits and -.
        id: String,
        /// Its display name.
        #[arg(long)]
        name: Option<String>,
        /// The first owner's email [default: you]; anyone else is invited, and the
        /// invitation printed once.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Invite an owner to an org that has none, when its first owner never accepted (needs
    /// orgs:admin); it replaces the org's open owner invitations.
    InviteOwner {
        /// The org that has no owner.
        #[arg(value_name = "ORG")]
        owner_of: String,
        /// Who is invited to own it.
        email: String,
    },
}

/// Prints an answer's `fields` and, when it carries an invitation (shown this once), the
/// invitation's secret and expiry after them.
fn print_with_invitation(
    format: Format,
    mut v: Value,
    fields: &[(&str, &str)],
) -> anyhow::Result<()> {
    let mut fields = fields.to_vec();
    if let Some(inv) = v.get("invitation").cloned() {
        v["invitationToken"] = inv["token"].clone();
        v["invitationExpiresAt"] = inv["expiresAt"].clone();
        fields.extend([
            ("invitation (shown once)", "invitationToken"),
            ("invitation expires", "invitationExpiresAt"),
        ]);
    }
    print_object(format, &v, &fields)
}

pub async fn orgs(conn: &Connection, out: &OutputArg, cmd: OrgsCommand) -> anyhow::Result<()> {
    let s = Session::open(conn)?;
    match cmd {
        OrgsCommand::List => {
            let v = s.client.get_json("/v1/orgs").await?;
            print_list(
                out.format(),
                items(&v),
                &[
                    ("ID", "id"),
                    ("NAME", "name"),
                    ("YOUR SCOPES", "scopes"),
                    ("CREATED", "createdAt"),
                ],
            )?;
        }
        OrgsCommand::Create { id, name, owner } => {
            let v = s
                .client
                .send_json(
                    "POST",
                    "/v1/orgs",
                    Some(&json!({"id": id, "name": name, "owner": owner})),
                )
                .await?;
            // An owner other than the caller is invited: the invitation is shown once.
            print_with_invitation(
                out.format(),
                v,
                &[
                    ("id", "id"),
                    ("name", "name"),
                    ("owner", "owner"),
                    ("created", "createdAt"),
                ],
            )?;
        }
        OrgsCommand::InviteOwner { owner_of, email } => {
            let v = s
                .client
                .send_json(
                    "POST",
                    &format!("/v1/orgs/{}/owner-invitation", segment(&owner_of)),
                    Some(&json!({ "email": email })),
                )
                .await?;
            print_with_invitation(out.format(), v, &[("email", "email"), ("role", "role")])?;
        }
    }
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum InstancesCommand {
    /// The org's instances.
    List,
    /// Add an instance (needs instances:manage).
    Create {
        /// The instance's id, unique in the org.
        id: String,
        /// What it is: argocd, kargo, ...
        #[arg(long)]
        kind: String,
        /// Its display name.
        #[arg(long)]
        name: Option<String>,
    },
}

pub async fn instances(
    conn: &Connection,
    out: &OutputArg,
    cmd: InstancesCommand,
) -> anyhow::Result<()> {
    let s = Session::open(conn)?;
    let base = format!("{}/instances", s.org_path().await?);
    match cmd {
        InstancesCommand::List => {
            let v = s.client.get_json(&base).await?;
            print_list(
                out.format(),
                items(&v),
                &[
                    ("ID", "id"),
                    ("KIND", "kind"),
                    ("NAME", "name"),
                    ("CREATED", "createdAt"),
                ],
            )?;
        }
        InstancesCommand::Create { id, kind, name } => {
            let v = s
                .client
                .send_json(
                    "POST",
                    &base,
                    Some(&json!({"id": id, "kind": kind, "name": name})),
                )
                .await?;
            print_object(
                out.format(),
                &v,
                &[
                    ("id", "id"),
                    ("kind", "kind"),
                    ("name", "name"),
                    ("created", "createdAt"),
                ],
            )?;
        }
    }
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum MembersCommand {
    /// The org's members and roles (needs members:manage).
    List,
    /// Invite someone with a role (owner, admin or member): pass on the invitation printed
    /// (once), which they accept in the console or with `trail members accept`. They are a
    /// member once they accept it.
    Add {
        /// The member's email.
        email: String,
        /// owner, admin or member.
        #[arg(long)]
        role: String,
    },
    /// Accept an invitation: choose your password if you are new to Trail, or give your
    /// account's password if you have one (prompted for twice on a terminal, never echoed;
    /// else read from standard input). Needs no credential.
    Accept {
        /// The invitation (`inv_….…`).
        invitation: String,
    },
    /// Change a member's role.
    SetRole {
        /// The member's email.
        email: String,
        /// owner, admin or member.
        role: String,
    },
    /// Remove a member, or withdraw an invitation not yet accepted.
    Remove {
        /// The member's email.
        email: String,
    },
}

pub async fn members(
    conn: &Connection,
    out: &OutputArg,
    cmd: MembersCommand,
) -> anyhow::Result<()> {
    if let MembersCommand::Accept { invitation } = &cmd {
        let client = super::client(conn, &super::server_url(conn)?, "")?;
        let pw = super::read_password(
            "Password (new to Trail: choose one; with an account: its password): ",
        )?;
        if std::io::stdin().is_terminal() && super::read_password("Again: ")? != pw {
            return Err(usage(anyhow::anyhow!("the passwords differ")));
        }
        let body = json!({"token": invitation, "password": pw});
        let v = client
            .send_json("POST", "/v1/invitations/accept", Some(&body))
            .await?;
        print_object(
            out.format(),
            &v,
            &[
                ("email", "email"),
                ("org", "org"),
                ("role", "role"),
                ("new account", "newAccount"),
            ],
        )?;
        return Ok(());
    }
    let s = Session::open(conn)?;
    let base = format!("{}/members", s.org_path().await?);
    let member = |email: &str| format!("{base}/{}", segment(email));
    match cmd {
        MembersCommand::List => {
            let v = s.client.get_json(&base).await?;
            print_list(
                out.format(),
                items(&v),
                &[
                    ("EMAIL", "email"),
                    ("ROLE", "role"),
                    ("USER", "userId"),
                    ("INVITED UNTIL", "invitationExpiresAt"),
                ],
            )?;
        }
        MembersCommand::Add { email, role } => {
            let body = json!({"email": email, "role": role});
            let v = s.client.send_json("POST", &base, Some(&body)).await?;
            print_with_invitation(out.format(), v, &[("email", "email"), ("role", "role")])?;
        }
        MembersCommand::Accept { .. } => unreachable!("answered above"),
        MembersCommand::SetRole { email, role } => {
            let v = s
                .client
                .send_json("PATCH", &member(&email), Some(&json!({"role": role})))
                .await?;
            print_object(out.format(), &v, &[("email", "email"), ("role", "role")])?;
        }
        MembersCommand::Remove { email } => {
            s.client.send_json("DELETE", &member(&email), None).await?;
            eprintln!("removed {email}");
        }
    }
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// The org's API keys, never their secrets (needs keys:manage).
    List,
    /// Create an API key; its secret is printed once.
    Create {
        /// A name for the key: what uses it.
        name: String,
        /// A longer description.
        #[arg(long)]
        description: Option<String>,
        /// The role whose scopes it holds: owner, admin or member.
        #[arg(long, conflicts_with = "scopes")]
        role: Option<String>,
        /// The scopes it holds, e.g. logs:read,logs:write.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// When it stops working: 30d, 12h, ... [default: never].
        #[arg(long)]
        expires_in: Option<String>,
        /// Restrict it to one instance's events.
        #[arg(long)]
        instance: Option<String>,
    },
    /// Revoke an API key, at once.
    Revoke {
        /// The key's id (the part before the `:`).
        id: String,
    },
}

pub async fn keys(conn: &Connection, out: &OutputArg, cmd: KeysCommand) -> anyhow::Result<()> {
    let s = Session::open(conn)?;
    let base = format!("{}/api-keys", s.org_path().await?);
    match cmd {
        KeysCommand::List => {
            let v = s.client.get_json(&base).await?;
            print_list(
                out.format(),
                items(&v),
                &[
                    ("ID", "id"),
                    ("NAME", "name"),
                    ("SCOPES", "scopes"),
                    ("INSTANCE", "instance"),
                    ("EXPIRES", "expiresAt"),
                    ("REVOKED", "revokedAt"),
                ],
            )?;
        }
        KeysCommand::Create {
            name,
            description,
            role,
            scopes,
            expires_in,
            instance,
        } => {
            let mut body = json!({"name": name, "description": description, "expiresIn": expires_in, "instance": instance});
            match role {
                Some(r) => body["role"] = json!(r),
                None => body["scopes"] = json!(scopes),
            }
            let v = s.client.send_json("POST", &base, Some(&body)).await?;
            let f = out.format();
            print_object(
                f,
                &v,
                &[
                    ("id", "id"),
                    ("secret", "secret"),
                    ("name", "name"),
                    ("scopes", "scopes"),
                    ("expires", "expiresAt"),
                ],
            )?;
            say_secret(f, "secret");
        }
        KeysCommand::Revoke { id } => {
            s.client
                .send_json("DELETE", &format!("{base}/{}", segment(&id)), None)
                .await?;
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum TokensCommand {
    /// Your personal access tokens in the org.
    List,
    /// Create a personal access token; it is printed once.
    Create {
        /// A name for the token: where it is used.
        name: String,
        /// Scopes, a subset of yours, e.g. logs:read.
        #[arg(long, value_delimiter = ',', conflicts_with = "preset")]
        scopes: Vec<String>,
        /// A preset: support-readonly or admin-full.
        #[arg(long)]
        preset: Option<String>,
        /// When it stops working [default: 30d].
        #[arg(long)]
        expires_in: Option<String>,
        /// More orgs it acts on besides the org it is made in (comma-separated); in each it
        /// holds its scopes as far as your role there allows.
        #[arg(long, value_delimiter = ',', conflicts_with = "all_orgs")]
        orgs: Vec<String>,
        /// It acts on all your orgs, including those you join later.
        #[arg(long)]
        all_orgs: bool,
    },
    /// Revoke a personal access token, at once.
    Revoke {
        /// The token's id (the part before the `.`).
        id: String,
    },
}

pub async fn tokens(conn: &Connection, out: &OutputArg, cmd: TokensCommand) -> anyhow::Result<()> {
    let s = Session::open(conn)?;
    let base = format!("{}/tokens", s.org_path().await?);
    match cmd {
        TokensCommand::List => {
            let v = s.client.get_json(&base).await?;
            print_list(
                out.format(),
                items(&v),
                &[
                    ("ID", "id"),
                    ("NAME", "name"),
                    ("ORGS", "orgs"),
                    ("SCOPES", "scopes"),
                    ("EXPIRES", "expiresAt"),
                    ("REVOKED", "revokedAt"),
                ],
            )?;
        }
        TokensCommand::Create {
            name,
            scopes,
            preset,
            expires_in,
            orgs,
            all_orgs,
        } => {
            let mut body = json!({"name": name, "expiresIn": expires_in});
            if all_orgs {
                body["orgs"] = json!("all");
            } else if !orgs.is_empty() {
                body["orgs"] = json!(orgs);
            }
            match preset {
                Some(p) => body["preset"] = json!(p),
                None => body["scopes"] = json!(scopes),
            }
            let v = s.client.send_json("POST", &base, Some(&body)).await?;
            let f = out.format();
            print_object(
                f,
                &v,
                &[
                    ("id", "id"),
                    ("token", "token"),
                    ("name", "name"),
                    ("orgs", "orgs"),
                    ("scopes", "scopes"),
                    ("expires", "expiresAt"),
                ],
            )?;
            say_secret(f, "token");
        }
        TokensCommand::Revoke { id } => {
            s.client
                .send_json("DELETE", &format!("{base}/{}", segment(&id)), None)
                .await?;
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum BreakGlassCommand {
    /// Mint an emergency token for an org (needs orgs:admin); every use is recorded.
    Create {
        /// The org it opens.
        #[arg(long = "for")]
        target: String,
        /// Why: recorded with the token and every use of it.
        #[arg(long)]
        reason: String,
        /// 1m to 12h [default: 1h].
        #[arg(long)]
        expires_in: Option<String>,
        /// [default: logs:read,archives:read]
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// End a break-glass token early.
    Revoke {
        /// The break-glass token's id.
        id: String,
    },
}

pub async fn break_glass(
    conn: &Connection,
    out: &OutputArg,
    cmd: BreakGlassCommand,
) -> anyhow::Result<()> {
    let s = Session::open(conn)?;
    match cmd {
        BreakGlassCommand::Create {
            target,
            reason,
            expires_in,
            scopes,
        } => {
            let mut body = json!({"org": target, "reason": reason, "expiresIn": expires_in});
            if !scopes.is_empty() {
                body["scopes"] = json!(scopes);
            }
            let v = s
                .client
                .send_json("POST", "/v1/break-glass", Some(&body))
                .await?;
            let f = out.format();
            print_object(
                f,
                &v,
                &[
                    ("id", "id"),
                    ("token", "token"),
                    ("org", "org"),
                    ("scopes", "scopes"),
                    ("reason", "reason"),
                    ("expires", "expiresAt"),
                ],
            )?;
            say_secret(f, "token");
        }
        BreakGlassCommand::Revoke { id } => {
            s.client
                .send_json("DELETE", &format!("/v1/break-glass/{}", segment(&id)), None)
                .await?;
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::plain_http_host;

    #[test]
    fn a_password_over_plain_http_is_noted_unless_it_stays_on_this_machine() {
        for url in [
            "http://127.0.0.1:7070",
            "http://localhost:7070/",
            "http://[::1]:7070",
            "https://trail.example.com",
        ] {
            assert_eq!(plain_http_host(url), None, "{url}");
        }
        assert_eq!(
            plain_http_host("http://trail.example.com:7070/x"),
            Some("trail.example.com:7070")
        );
        assert_eq!(plain_http_host("http://10.0.0.5"), Some("10.0.0.5"));
    }
}

/// `trail archive`.
#[derive(clap::Subcommand)]
pub enum ArchiveCommand {
    /// The org's weekly archives: week, events, size, when made.
    List(OutputArg),
    /// Download one week's archive (`2026-W47`; the current week gives a partial one).
    /// Check it offline with `trail verify --archive FILE`.
    Download {
        /// The ISO week, `2026-W47`.
        week: String,
        /// Where to write it [default: ORG-WEEK.zip in the current directory].
        #[arg(short = 'o', long = "out-file", value_name = "FILE")]
        file: Option<std::path::PathBuf>,
    },
}

pub async fn archive(conn: &Connection, cmd: ArchiveCommand) -> anyhow::Result<()> {
    let s = Session::open(conn)?;
    let org = s.org().await?;
    let base = s.org_path().await?;
    match cmd {
        ArchiveCommand::List(out) => {
            let v = s.client.get_json(&format!("{base}/archives")).await?;
            print_list(
                out.format(),
                items(&v),
                &[
                    ("WEEK", "week"),
                    ("EVENTS", "events"),
                    ("BYTES", "size"),
                    ("SEQS FROM", "firstSeq"),
                    ("TO", "endSeq"),
                    ("CREATED", "createdAt"),
                ],
            )?;
            if out.format() == Format::Table
                && let Some(current) = v["current"].as_str()
            {
                super::note(&format!(
                    "the current week, {current}, downloads as a partial archive"
                ));
            }
        }
        ArchiveCommand::Download { week, file } => {
            trail_core::archive::Week::parse(&week).map_err(|e| super::usage(e.to_string()))?;
            let file = file.unwrap_or_else(|| format!("{org}-{week}.zip").into());
            let part = {
                let mut p = file.clone().into_os_string();
                p.push(".part");
                std::path::PathBuf::from(p)
            };
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&part)
                    .map_err(|e| super::usage(format!("{}: {e}", part.display())))?,
            );
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = indicatif::ProgressBar::no_length();
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .expect("a progress template"),
                );
                bar
            });
            let got = s
                .client
                .download(
                    &format!("{base}/archives/{week}"),
                    &mut out,
                    |done, total| {
                        if let Some(bar) = &bar {
                            if let Some(t) = total {
                                bar.set_length(t);
                            }
                            bar.set_position(done);
                        }
                    },
                )
                .await;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let written = got.and_then(|n| {
                std::io::Write::flush(&mut out)
                    .map_err(|e| trail_client::ClientError::Decode(e.to_string()))?;
                Ok(n)
            });
            drop(out);
            match written {
                Ok(n) => {
                    std::fs::rename(&part, &file)?;
                    super::output::line(&format!("{} ({n} bytes)", file.display()))?;
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    return Err(e.into());
                }
            }
        }
    }
    Ok(())
}

/// `trail retention`.
#[derive(clap::Subcommand)]
pub enum RetentionCommand {
    /// How long the org keeps its events, whether it is under legal hold, and how far its
    /// log was pruned.
    Show,
    /// Set how many days the org keeps its events once their week is archived (`default`:
    /// the platform's default). Needs retention:manage.
    Set {
        /// Days (1 to the platform's maximum), or `default`.
        days: String,
    },
    /// Place the org under legal hold: nothing of it is pruned until released.
    Hold,
    /// Release the legal hold.
    Release,
}

pub async fn retention(
    conn: &Connection,
    out: &OutputArg,
    cmd: RetentionCommand,
) -> anyhow::Result<()> {
    let s = Session::open(conn)?;
    let path = format!("{}/retention", s.org_path().await?);
    let change = match cmd {
        RetentionCommand::Show => None,
        RetentionCommand::Set { days } if days == "default" => Some(json!({"retentionDays": null})),
        RetentionCommand::Set { days } => {
            let days: u32 = days.parse().map_err(|_| {
                super::usage(format!("{days:?} is not a number of days or `default`"))
            })?;
            Some(json!({"retentionDays": days}))
        }
        RetentionCommand::Hold => Some(json!({"legalHold": true})),
        RetentionCommand::Release => Some(json!({"legalHold": false})),
    };
    let v = match change {
        None => s.client.get_json(&path).await?,
        Some(body) => s.client.send_json("PUT", &path, Some(&body)).await?,
    };
    print_object(
        out.format(),
        &v,
        &[
            ("retention (days)", "retentionDays"),
            ("the default", "default"),
            ("longest allowed (days)", "maxRetentionDays"),
            ("legal hold", "legalHold"),
            ("pruned below seq", "prunedBelow"),
        ],
    )
}
