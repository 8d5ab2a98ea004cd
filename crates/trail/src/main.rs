//! The `trail` command: `trail serve` runs the server; the other commands are its tools.
//!
//! This is glue: it parses the command line into typed configs, hands them to the library
//! crates, and maps failures to exit codes.

mod bench;
mod cli;
mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure (for verify: the log does not verify)
  2  usage error
  4  not authenticated: no credential, or the server answered 401
  5  forbidden (403)
  6  server unreachable, or its TLS certificate not trusted
  141  standard output closed by its reader (`trail ... | head`): stops quietly";

/// The exit code of a command whose standard output was closed by its reader: what a shell
/// reports for a process ended by SIGPIPE (128 + 13), without the signal or a message.
const EXIT_STDOUT_CLOSED: u8 = 141;

#[derive(Parser)]
#[command(
    name = "trail",
    version,
    about = "Trail: a tamper-evident, multi-tenant audit log",
    long_about = "Trail: a tamper-evident, multi-tenant audit log.\n\n\
`trail serve` runs the server; the other commands are its clients. They find the server and\n\
a credential in --url/--token/--org (or TRAIL_URL, TRAIL_TOKEN, TRAIL_ORG), else in the\n\
profile saved by `trail login` (--profile or TRAIL_PROFILE picks one). A token of the form\n\
KEYID:SECRET is an API key, sent with HTTP Basic; anything else is a bearer token. An\n\
https:// URL is checked against the system's CA roots, and against --ca-cert (or\n\
TRAIL_CA_CERT) for a Trail whose certificate a private CA issued.",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(flatten)]
    conn: cli::Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Trail server.
    ///
    /// On an empty store it creates the first org and its owner, prints the owner's token
    /// once and writes it to DATA/bootstrap-token (mode 0600).
    Serve(ServeArgs),
    /// Save a server and credential as a profile (mode 0600), after checking them.
    ///
    /// `trail login [--url URL] --token TOKEN`, or `trail login [--url URL] [--email EMAIL]`
    /// to sign in with a password: that makes a personal access token for all your orgs,
    /// named for this machine (listed by `trail tokens list`, revoked by `trail logout`).
    /// Saved under the --profile name [default: `default`], with the org named (--org) or
    /// else the credential's own. The first profile, or one named `default`, is used when
    /// no other is named.
    Login(cli::manage::LoginArgs),
    /// Forget a profile (--profile, else the default), revoking the token `trail login`
    /// made for it with a password.
    Logout,
    /// Is the server alive and ready? (No credential needed.)
    Health,
    /// Who the credential is, and what it holds.
    Me(cli::manage::OutputArg),
    /// Read the audit log.
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Per-route requests, rate, error rates and p50/p95/p99 latency, from recorded calls.
    Perf(cli::logs::PerfArgs),
    /// Check a log against its signed checkpoints; name the first bad seq if it fails.
    ///
    /// Over the API, as a witness: the checkpoints must be signed by the key pinned on first
    /// use (or --key), consistent with the one this client verified last time, and given by
    /// every event recomputed from its canonical bytes. With --data DIR, on a store's files,
    /// no server needed.
    Verify(verify::VerifyArgs),
    /// Weekly archives: list, download.
    #[command(subcommand)]
    Archive(cli::manage::ArchiveCommand),
    /// The org's retention and legal hold: show, set, hold, release.
    Retention {
        #[command(flatten)]
        out: cli::manage::OutputArg,
        #[command(subcommand)]
        cmd: cli::manage::RetentionCommand,
    },
    /// Orgs: list, create.
    Orgs {
        #[command(flatten)]
        out: cli::manage::OutputArg,
        #[command(subcommand)]
        cmd: cli::manage::OrgsCommand,
    },
    /// The org's instances: list, create.
    Instances {
        #[command(flatten)]
        out: cli::manage::OutputArg,
        #[command(subcommand)]
        cmd: cli::manage::InstancesCommand,
    },
    /// The org's members: list, add, set-role, remove.
    Members {
        #[command(flatten)]
        out: cli::manage::OutputArg,
        #[command(subcommand)]
        cmd: cli::manage::MembersCommand,
    },
    /// The org's API keys: list, create, revoke.
    Keys {
        #[command(flatten)]
        out: cli::manage::OutputArg,
        #[command(subcommand)]
        cmd: cli::manage::KeysCommand,
    },
    /// Your personal access tokens: list, create, revoke.
    Tokens {
        #[command(flatten)]
        out: cli::manage::OutputArg,
        #[command(subcommand)]
        cmd: cli::manage::TokensCommand,
    },
    /// Break-glass tokens: create, revoke (platform admins).
    BreakGlass {
        #[command(flatten)]
        out: cli::manage::OutputArg,
        #[command(subcommand)]
        cmd: cli::manage::BreakGlassCommand,
    },
    /// Run the benchmark suite against a fresh server and print a Markdown report.
    Bench(bench::BenchArgs),
    /// Operator jobs, run on the data directory.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print a shell completion script: `trail completions bash > /etc/bash_completion.d/trail`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Set a user's console password (read from standard input) and end their sessions.
    ///
    /// This is how the bootstrap owner, or a member added without a password, gets one:
    /// a password is never set through an API token. Recorded in the platform org as a
    /// `system` action.
    SetPassword {
        /// Data directory of the store.
        #[arg(long, env = "TRAIL_DATA", default_value = "./trail-data")]
        data: PathBuf,
        /// The user's email.
        #[arg(long)]
        email: String,
    },
    /// Build the weekly archive of an ended ISO week (`2026-W47`) now, for every org or
    /// one (--org), as the server's hourly job would. An archive already built is kept.
    Archive {
        /// Data directory of the store.
        #[arg(long, env = "TRAIL_DATA", default_value = "./trail-data")]
        data: PathBuf,
        /// The ISO week.
        #[arg(long)]
        week: String,
        /// Only this org.
        #[arg(long)]
        org: Option<String>,
        /// The bucket the server keeps its archives in, if it does (see `serve --archive-url`);
        /// used when no server is running.
        #[arg(long, env = "TRAIL_ARCHIVE_URL", value_name = "s3://BUCKET[/PREFIX]")]
        archive_url: Option<String>,
    },
    /// Bring a store's schema up to this version of Trail, as `trail serve` does when it
    /// starts (safe while other servers start on the same database). On PostgreSQL, run it
    /// as the schema's owner: it makes the roles the servers act as (see README).
    Migrate {
        /// Data directory of the embedded store.
        #[arg(long, env = "TRAIL_DATA", default_value = "./trail-data")]
        data: PathBuf,
        /// The store, `postgres://USER@HOST/DATABASE` or `sqlite:DIR` [default: SQLite in
        /// --data].
        #[arg(long, env = "TRAIL_DATABASE_URL", value_name = "URL")]
        database: Option<String>,
    },
    /// Copy a store into another backend (the embedded store into PostgreSQL) and prove the
    /// copy: every org, member, credential and setting, and each org's log as it was sealed
    /// (events, tiles of a pruned prefix, signed checkpoints), every checkpoint's root
    /// recomputed from the copied leaves. The source must not be in use; the target must
    /// hold no org. Console sessions are not copied: their holders sign in again.
    Copy {
        /// The store to copy, `sqlite:DIR`.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The store to copy into, `postgres://USER@HOST/DATABASE`.
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Prune now what each org's retention no longer keeps (only events already in a
    /// stored archive, never under legal hold), as the server's hourly job would.
    Prune {
        /// Data directory of the store.
        #[arg(long, env = "TRAIL_DATA", default_value = "./trail-data")]
        data: PathBuf,
        /// Only this org.
        #[arg(long)]
        org: Option<String>,
        /// The bucket the server keeps its archives in, if it does (see `serve --archive-url`);
        /// used when no server is running.
        #[arg(long, env = "TRAIL_ARCHIVE_URL", value_name = "s3://BUCKET[/PREFIX]")]
        archive_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum LogsCommand {
    /// The newest events of the org's log, oldest first; --follow keeps streaming.
    Tail(cli::logs::TailArgs),
    /// The SIEM pull: every event oldest first, by seq, exactly once, from a saved cursor;
    /// --follow keeps pulling.
    Export(cli::export::ExportArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Data directory: the log's signing key, the archives, and the embedded SQLite store
    /// unless --database names another.
    #[arg(long, env = "TRAIL_DATA", default_value = "./trail-data")]
    data: PathBuf,
    /// The store: `postgres://USER@HOST/DATABASE` (several servers may share one; give
    /// each the same signing key, DATA/log-signing-key) or `sqlite:DIR` [default: SQLite in --data].
    #[arg(long, env = "TRAIL_DATABASE_URL", value_name = "URL")]
    database: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "TRAIL_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Id of the org created on an empty store.
    #[arg(long, env = "TRAIL_BOOTSTRAP_ORG", default_value = "default")]
    bootstrap_org: String,
    /// Email of the owner created on an empty store.
    #[arg(
        long,
        env = "TRAIL_BOOTSTRAP_OWNER",
        default_value = "owner@trail.local"
    )]
    bootstrap_owner: String,
    /// A console session ends after this long without use (30m, 2h, ...).
    #[arg(long, env = "TRAIL_SESSION_IDLE", default_value = "30m", value_parser = parse_duration)]
    session_idle: std::time::Duration,
    /// Mark the session cookie Secure (serve Trail over HTTPS, directly or behind a proxy).
    #[arg(long, env = "TRAIL_SECURE_COOKIES")]
    secure_cookies: bool,
    /// Name of the logs and their signing key; an org's log is `<name>/<org>`. Set on first
    /// start and kept [default: a name unique to this install, `trail-<8 hex digits>.local`].
    #[arg(long, env = "TRAIL_LOG_NAME")]
    log_name: Option<String>,
    /// Open connections at most; more wait to be accepted. Lowered to fit the open-file
    /// limit if need be.
    #[arg(long, env = "TRAIL_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// A request's head must arrive whole within this long (also how long a keep-alive
    /// connection may wait for its next request).
    #[arg(long, env = "TRAIL_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_span)]
    header_timeout: std::time::Duration,
    /// A connection on which nothing is read or written for this long is closed (the time
    /// the server takes to answer a request without a body does not count, up to 15 min).
    #[arg(long, env = "TRAIL_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_span)]
    idle_timeout: std::time::Duration,
    /// A reverse proxy (CIDR or address) whose X-Forwarded-For names the client; repeat
    /// for several. From any other peer the header is ignored.
    #[arg(long = "trusted-proxy", env = "TRAIL_TRUSTED_PROXY", value_delimiter = ',', value_parser = parse_cidr)]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// Serve HTTPS with this certificate (PEM: the server's, then any intermediates); with
    /// --tls-key. Both files are read again on SIGHUP.
    #[arg(
        long,
        env = "TRAIL_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS #8, PKCS #1 or SEC1).
    #[arg(
        long,
        env = "TRAIL_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// How often an idle live tail (`logs tail --follow`) sends a keep-alive comment, so
    /// clients and proxies know it is alive: 100ms to 30s.
    #[arg(long, env = "TRAIL_STREAM_KEEP_ALIVE", default_value = "15s", value_parser = parse_keep_alive)]
    stream_keep_alive: std::time::Duration,
    /// Keep the weekly archives in an S3-compatible bucket, `s3://BUCKET[/PREFIX]`, rather
    /// than in DATA/archives. Reached with the standard AWS_* variables (AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION; AWS_ENDPOINT and AWS_ALLOW_HTTP for a server other
    /// than AWS).
    #[arg(long, env = "TRAIL_ARCHIVE_URL", value_name = "s3://BUCKET[/PREFIX]")]
    archive_url: Option<String>,
}

/// The keep-alive interval of live tails: from 100 ms to 30 s, well under the 60 s after
/// which Trail's client takes a silent stream for lost.
fn parse_keep_alive(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_span(s)?;
    if !(std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(30)).contains(&d) {
        return Err(format!("{s:?}: give a duration from 100ms to 30s"));
    }
    Ok(d)
}

/// `10.0.0.0/8`, `2001:db8::/32`, or one address.
fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR such as 10.0.0.0/8 or an IP address"))
}

/// A duration such as 500ms, 10s or 1m.
fn parse_span(s: &str) -> Result<std::time::Duration, String> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms > 0)
            .map(std::time::Duration::from_millis)
            .ok_or_else(|| format!("{s:?} is not a duration such as 500ms or 1s"));
    }
    parse_duration(s)
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    trail_core::time::parse_duration_micros(s)
        .filter(|us| *us > 0)
        .map(|us| std::time::Duration::from_micros(us as u64))
        .ok_or_else(|| format!("{s:?} is not a duration such as 30s, 5m, 1h or 7d"))
}

/// The commands that are not clients of a server: the connection flags mean nothing there.
const NOT_CLIENTS: [&str; 4] = ["serve", "bench", "admin", "completions"];

/// The command line: the connection flags are described once, as `trail`'s own options, and
/// accepted (unlisted) after every client command as well, never after the others.
fn cli_command() -> clap::Command {
    let mut cmd = Cli::command();
    let flags: Vec<clap::Arg> = cli::CONNECTION_IDS
        .iter()
        .map(|id| {
            cmd.get_arguments()
                .find(|a| a.get_id() == id)
                .expect("a connection flag")
                .clone()
                .env(None)
                .hide(true)
        })
        .collect();
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .filter(|n| !NOT_CLIENTS.contains(&n.as_str()))
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(name, |c| with_hidden(c, &flags));
    }
    cmd
}

/// `c` and its subcommands, each accepting `flags` without listing them.
fn with_hidden(mut c: clap::Command, flags: &[clap::Arg]) -> clap::Command {
    for f in flags {
        c = c.arg(f.clone());
    }
    let names: Vec<String> = c
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        c = c.mut_subcommand(name, |s| with_hidden(s, flags));
    }
    c
}

/// The connection settings: `trail`'s own flags (and environment), overridden by the same
/// flags given after the command.
fn connection(matches: &ArgMatches, mut conn: cli::Connection) -> cli::Connection {
    let mut level = matches.subcommand().map(|(_, m)| m);
    while let Some(m) = level {
        for id in cli::CONNECTION_IDS {
            let given = m.ids().any(|i| i == id)
                && m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
            if given {
                let value = || m.get_one::<String>(id).cloned();
                match id {
                    "url" => conn.url = value(),
                    "token" => conn.token = value(),
                    "org" => conn.org = value(),
                    "ca_cert" => conn.ca_cert = m.get_one::<PathBuf>(id).cloned(),
                    _ => conn.profile = value(),
                }
            }
        }
        level = m.subcommand().map(|(_, m)| m);
    }
    conn
}

/// The command as typed, without its options (`keys create`), for messages.
fn action_name(matches: &ArgMatches) -> String {
    let mut words = Vec::new();
    let mut level = matches.subcommand();
    while let Some((name, m)) = level {
        words.push(name.to_owned());
        level = m.subcommand();
    }
    words.join(" ")
}

/// The allocator: the server allocates and frees small buffers at a high rate on every
/// thread (request bodies, parsed events, rows), which the system allocator's free lists
/// served at a visible cost on the writer's thread. No transparent huge pages: with them
/// each arena page in use was a whole 2 MiB of resident memory, zeroed on first touch
/// (BENCHMARKS.md, 2026-12-03). mimalloc is built not to ask for them (`no_thp`), and
/// `main` turns them off for the process, since a kernel in `always` mode gives them
/// unasked.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process's memory; no pointer is
    // passed. Where the kernel lacks it the call fails and nothing changes.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let matches = cli_command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRAIL_LOG")
                // The platform verifier logs every certificate it refuses; the command's
                // own one-line error says so already.
                .unwrap_or_else(|_| "info,rustls_platform_verifier=off".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("trail: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let name = action_name(&matches);
    let conn = connection(&matches, cli.conn);
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Login(args) => cli::manage::login(&conn, args).await,
            Command::Logout => cli::manage::logout(&conn).await,
            Command::Health => cli::manage::health(&conn).await,
            Command::Me(out) => cli::manage::me(&conn, &out).await,
            Command::Logs(LogsCommand::Tail(args)) => cli::logs::tail(&conn, args).await,
            Command::Logs(LogsCommand::Export(args)) => cli::export::export(&conn, args).await,
            Command::Perf(args) => cli::logs::perf(&conn, args).await,
            Command::Verify(args) => verify::run(&conn, args).await,
            Command::Archive(cmd) => cli::manage::archive(&conn, cmd).await,
            Command::Retention { out, cmd } => cli::manage::retention(&conn, &out, cmd).await,
            Command::Orgs { out, cmd } => cli::manage::orgs(&conn, &out, cmd).await,
            Command::Instances { out, cmd } => cli::manage::instances(&conn, &out, cmd).await,
            Command::Members { out, cmd } => cli::manage::members(&conn, &out, cmd).await,
            Command::Keys { out, cmd } => cli::manage::keys(&conn, &out, cmd).await,
            Command::Tokens { out, cmd } => cli::manage::tokens(&conn, &out, cmd).await,
            Command::BreakGlass { out, cmd } => cli::manage::break_glass(&conn, &out, cmd).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Admin(AdminCommand::SetPassword { data, email }) => {
                set_password(&data, email).await
            }
            Command::Admin(AdminCommand::Archive {
                data,
                week,
                org,
                archive_url,
            }) => {
                trail_core::archive::Week::parse(&week)
                    .map_err(|e| cli::usage(format!("--week: {e}")))?;
                let done = trail_server::operator::run_with(
                    &data,
                    trail_server::operator::Request::Archive { week, org },
                    archive_url.as_deref(),
                )
                .await?;
                cli::output::line(&done)
            }
            Command::Admin(AdminCommand::Migrate { data, database }) => {
                let location = trail_store::Location::of(database.as_deref(), &data)
                    .map_err(|e| trail_client::ClientError::Usage(format!("--database: {e}")))?;
                location
                    .open()
                    .await
                    .map_err(|e| anyhow::anyhow!("migrating {}: {e}", location.describe()))?;
                cli::output::line(&format!(
                    "{} is at schema version {}",
                    location.describe(),
                    location.schema_version()
                ))
            }
            Command::Admin(AdminCommand::Copy { from, to }) => copy_store(&from, &to).await,
            Command::Admin(AdminCommand::Prune {
                data,
                org,
                archive_url,
            }) => {
                let done = trail_server::operator::run_with(
                    &data,
                    trail_server::operator::Request::Prune { org },
                    archive_url.as_deref(),
                )
                .await?;
                cli::output::line(&done)
            }
            Command::Completions { shell } => {
                // Generated into memory: clap_complete panics on a failed write.
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut cli_command(), "trail", &mut script);
                cli::output::write(|out| std::io::Write::write_all(out, &script))
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<cli::output::StdoutClosed>().is_some() => {
            ExitCode::from(EXIT_STDOUT_CLOSED)
        }
        Err(e) => {
            eprintln!("trail: {}", message(&name, cli::credential_kind(&conn), &e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// `trail admin copy`: opens both stores, copies, and says what was moved and proved.
async fn copy_store(from: &str, to: &str) -> anyhow::Result<()> {
    let location = |flag: &str, url: &str| {
        // Both are named: no default directory stands in for either.
        trail_store::Location::of(Some(url), std::path::Path::new(""))
            .map_err(|e| trail_client::ClientError::Usage(format!("{flag}: {e}")))
    };
    let (source, target) = (location("--from", from)?, location("--to", to)?);
    if source == target {
        return Err(
            trail_client::ClientError::Usage("--from and --to name the same store".into()).into(),
        );
    }
    if let trail_store::Location::Sqlite(dir) = &source
        && !dir.join(trail_store::sqlite::DB_FILE).exists()
    {
        anyhow::bail!("--from: no Trail store in {}", dir.display());
    }
    let from_store = source
        .open()
        .await
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", source.describe()))?;
    let to_store = target
        .open()
        .await
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", target.describe()))?;
    let copied = trail_store::copy::copy(&*from_store, &*to_store, &mut |step: &str| {
        eprintln!("trail: {step}");
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "copying {} to {}: {e}",
            source.describe(),
            target.describe()
        )
    })?;
    cli::output::line(&format!(
        "copied {} to {}: {} orgs, {} users, {} credentials, {} events, {} checkpoints; \
         {} checkpoint roots recomputed from the copied leaves and matched{}",
        source.describe(),
        target.describe(),
        copied.orgs,
        copied.users,
        copied.credentials,
        copied.events,
        copied.checkpoints,
        copied.proved,
        match copied.within_pruned {
            0 => String::new(),
            n => format!(" ({n} of pruned prefixes copied as signed)"),
        }
    ))
}

/// One line: what failed and why, naming the missing scope on a 403 (seed 001).
fn message(command: &str, kind: &str, e: &anyhow::Error) -> String {
    use trail_client::ClientError;
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Forbidden {
            scope: Some(scope), ..
        }) => format!("403 on {command}: your {kind} lacks {scope}"),
        Some(ClientError::Forbidden { detail, .. }) => format!("403 on {command}: {detail}"),
        Some(ClientError::Unauthenticated(detail)) => format!("401 on {command}: {detail}"),
        Some(ClientError::UntrustedCertificate { .. }) => format!(
            "{e:#}; if a private CA issued it, pass that CA's certificate with --ca-cert FILE \
             (or TRAIL_CA_CERT)"
        ),
        _ => format!("{e:#}"),
    }
}

/// The documented exit code of a failure.
fn exit_code(e: &anyhow::Error) -> u8 {
    use trail_client::ClientError;
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Unauthenticated(_)) => 4,
        Some(ClientError::Forbidden { .. }) => 5,
        Some(ClientError::Unreachable { .. } | ClientError::UntrustedCertificate { .. }) => 6,
        Some(ClientError::Usage(_) | ClientError::CaCert { .. }) => 2,
        _ if e.downcast_ref::<cli::NoCredential>().is_some() => 4,
        _ => 1,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Everything the server creates (the store, its key, heads and token files, archives,
    // the operator socket) is its own: no file of a data directory is readable by others.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    let config = trail_server::ServeConfig {
        data_dir: args.data,
        database: args.database,
        listen: args.listen,
        bootstrap_org: args.bootstrap_org,
        bootstrap_owner: args.bootstrap_owner,
        session_idle: args.session_idle,
        secure_cookies: args.secure_cookies,
        log_name: args.log_name,
        connections: trail_server::edge::ConnectionLimits {
            max_connections: args.max_connections as usize,
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
        },
        trusted_proxies: args.trusted_proxies,
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(trail_server::tls::TlsFiles { cert, key }),
            _ => None,
        },
        stream_keep_alive: args.stream_keep_alive,
        archive_url: args.archive_url,
    };
    let bound = trail_server::bind(&config).await?;
    let shutdown = shutdown_signal();
    if let Some(tls) = &bound.tls {
        reload_on_hangup(tls.clone());
    }
    let socket = match trail_server::operator::Socket::listen(trail_server::operator::Jobs {
        store: bound.store.clone(),
        archives: bound.archives.clone(),
        data: config.data_dir.clone(),
        key: Some(bound.log_key.clone()),
    }) {
        Ok(s) => Some(s),
        Err(e) => {
            // The server still serves; operator commands say they cannot reach it.
            tracing::warn!("no operator socket: {e:#}");
            None
        }
    };
    // The banner is informational: a closed stdout must not stop (or panic) the server.
    let scheme = if bound.tls.is_some() { "https" } else { "http" };
    trail_server::say(format_args!(
        "Trail {} listening on {scheme}://{}",
        env!("CARGO_PKG_VERSION"),
        bound.addr
    ));
    trail_server::say(format_args!("console: {scheme}://{}/", bound.addr));
    trail_server::say(format_args!("data: {}", config.data_dir.display()));
    trail_server::say(format_args!("store: {}", bound.store_location));
    trail_server::say(format_args!("archives: {}", bound.archives.describe()));
    trail_server::say(format_args!(
        "checkpoints are signed by: {}",
        bound.verifier_key
    ));
    let served = bound.serve(shutdown).await;
    if let Some(socket) = socket {
        socket.close();
    }
    served
}

/// Reads the password from standard input, then sets it on the store directly, or through
/// the running server's operator socket if a server owns the store.
async fn set_password(data: &std::path::Path, email: String) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    let done = trail_server::operator::run(
        data,
        trail_server::operator::Request::SetPassword { email, password },
    )
    .await?;
    cli::output::line(&done)
}

/// On SIGHUP, reads the TLS certificate and key again: new connections get the new pair.
/// A reload that fails keeps the pair in force and logs why. The handler is installed
/// before this returns, so a SIGHUP right after the banner reloads rather than kills.
fn reload_on_hangup(tls: std::sync::Arc<trail_server::tls::Tls>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("no SIGHUP handler, so no TLS reload: {e}");
                return;
            }
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let files = tls.files();
                match tls.reload() {
                    Ok(()) => tracing::info!(
                        cert = %files.cert.display(),
                        key = %files.key.display(),
                        "reloaded the TLS certificate and key"
                    ),
                    Err(e) => tracing::error!(
                        "reloading the TLS certificate and key failed; still serving the \
                         previous ones: {e}"
                    ),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = tls;
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called (not when the future is
/// first polled), so a SIGTERM that arrives right after the banner still stops the server
/// gracefully instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {},
                () = wait(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await.ok();
        tracing::info!("shutting down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command, with its path (`keys create`).
    fn commands(c: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        for s in c.get_subcommands() {
            let p = format!("{path} {}", s.get_name()).trim().to_owned();
            out.push((p.clone(), s.clone()));
            commands(s, p, out);
        }
    }

    #[test]
    fn every_argument_of_every_command_has_a_description() {
        let mut cmd = cli_command();
        cmd.build();
        let mut all = vec![("trail".to_owned(), cmd.clone())];
        commands(&cmd, String::new(), &mut all);
        let mut missing = Vec::new();
        for (path, c) in &all {
            for a in c.get_arguments() {
                let builtin = matches!(a.get_id().as_str(), "help" | "version");
                if !builtin && a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path}: {}", a.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "without a description: {missing:?}");
    }

    #[test]
    fn connection_flags_are_listed_once_and_not_offered_where_they_mean_nothing() {
        let mut cmd = cli_command();
        let top = cmd.render_long_help().to_string();
        for flag in [
            "--url <URL>",
            "--token <TOKEN>",
            "--org <ORG>",
            "--profile <PROFILE>",
            "--ca-cert <FILE>",
        ] {
            assert_eq!(top.matches(flag).count(), 1, "{flag} in: {top}");
        }
        for path in [
            &["keys", "create"][..],
            &["logs", "tail"],
            &["perf"],
            &["login"],
        ] {
            let mut c = cmd.clone();
            for p in path {
                c = c.find_subcommand(p).unwrap().clone();
            }
            let help = c.render_help().to_string();
            assert!(!help.contains("--token"), "{path:?}: {help}");
        }
        // Still accepted after a client command.
        let m = cli_command()
            .try_get_matches_from([
                "trail", "keys", "list", "--org", "acme", "--url", "http://x",
            ])
            .unwrap();
        let conn = connection(&m, Cli::from_arg_matches(&m).unwrap().conn);
        assert_eq!(
            (conn.org.as_deref(), conn.url.as_deref()),
            (Some("acme"), Some("http://x"))
        );
        assert_eq!(action_name(&m), "keys list");
        // Not on the commands that are no clients.
        for args in [
            &["trail", "serve", "--url", "http://x"][..],
            &[
                "trail",
                "admin",
                "set-password",
                "--email",
                "a@b",
                "--token",
                "t",
            ],
            &["trail", "login", "--as", "work"],
        ] {
            let e = cli_command().try_get_matches_from(args).err();
            assert!(e.is_some(), "{args:?} is refused");
        }
        let serve = cmd
            .find_subcommand_mut("serve")
            .unwrap()
            .render_help()
            .to_string();
        assert!(
            !serve.contains("--url") && !serve.contains("--token"),
            "{serve}"
        );
    }
}
