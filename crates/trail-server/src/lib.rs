//! Trail's HTTP server.
//!
//! [`app`] is the whole API as an axum `Router`; [`bind`] opens the store, bootstraps an
//! empty one and binds; [`Bound::serve`] serves until shutdown. Every route under `/v1`
//! runs inside the recording layer of `trail-record` (the same layer other services use), so
//! every authenticated call is itself an event in the log.
//!
//! Architecture invariant: the server speaks to storage only through `trail_store::Store`;
//! it never sees SQL. Whether a caller may act is decided in [`auth::authorize`] and
//! [`auth::authorize_platform`] and nowhere else.

pub mod archive;
pub mod audit;
pub mod auth;
pub mod console;
pub mod edge;
pub mod error;
pub mod log;
pub mod metrics;
pub mod openapi;
pub mod operator;
pub mod retention;
pub mod routes;
pub mod tls;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use trail_core::checkpoint::SignerKey;
use trail_core::scope::preset;
use trail_core::{Scope, Timestamp};
use trail_record::RecordLayer;
use trail_store::{Bootstrap, Org, Store, TokenKind, User};

use crate::auth::{CredentialSpec, FailureThrottle, SessionPolicy};
use crate::error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Where platform-level calls are recorded.
    pub platform_org: String,
    pub throttle: Arc<FailureThrottle>,
    pub sessions: SessionPolicy,
    /// Mark the session cookie `Secure` (Trail is served over HTTPS).
    pub secure_cookies: bool,
    /// Signs the logs' checkpoints.
    pub log_key: Arc<SignerKey>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (see [`edge::client_ip`]).
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    /// How often an idle live tail sends a keep-alive comment.
    pub stream_keep_alive: Duration,
    /// Cancelled when the server begins to stop: live tails end then, so that stopping
    /// waits for no stream.
    pub stopping: tokio_util::sync::CancellationToken,
    /// Where weekly archives are kept; none: the archive endpoints answer 503.
    pub archives: Option<Arc<archive::Archives>>,
}

impl AppState {
    /// State with the default policies, for a store that has been bootstrapped.
    pub async fn new(store: Arc<dyn Store>, log_key: Arc<SignerKey>) -> anyhow::Result<AppState> {
        let platform_org = store
            .platform_org()
            .await?
            .context("the store has no platform org: start `trail serve` on it once")?;
        Ok(AppState {
            store,
            platform_org,
            throttle: Arc::new(FailureThrottle::new(20, Duration::from_secs(3))),
            sessions: SessionPolicy::default(),
            secure_cookies: false,
            log_key,
            trusted_proxies: Arc::from(Vec::new()),
            stream_keep_alive: DEFAULT_STREAM_KEEP_ALIVE,
            stopping: tokio_util::sync::CancellationToken::new(),
            archives: None,
        })
    }
}

/// Where a data directory keeps its weekly archives.
pub const ARCHIVES_DIR: &str = "archives";

/// The wall clock, in the core's terms.
pub fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

fn panic_response(_: Box<dyn std::any::Any + Send>) -> Response {
    ApiError::Internal("a handler panicked".into()).into_response()
}

/// The whole API.
pub fn app(state: AppState) -> Router {
    metrics::handle();
    let recorder = RecordLayer::with_sink(Arc::new(audit::StoreSink {
        store: state.store.clone(),
    }))
    .action(routes::operation);
    // Every route comes from one list, checked against the OpenAPI document (built here
    // first, so a handler documented under another id than the table's stops the start);
    // who must present a credential is the operations table's to say.
    openapi::document();
    let (mut authenticated, mut public) = (Router::new(), Router::new());
    for (method, path, handler) in routes::api() {
        let op = routes::find(method, path)
            .unwrap_or_else(|| panic!("{method} {path} is routed but not in routes::OPERATIONS"));
        if op.access.callers == routes::Callers::Public {
            public = public.route(path, handler);
        } else {
            authenticated = authenticated.route(path, handler);
        }
    }
    // Innermost: a panicking handler still gets an answer, and so a record. Then: who is
    // calling.
    let authenticated = authenticated
        .route_layer(CatchPanicLayer::custom(panic_response))
        .route_layer(from_fn_with_state(state.clone(), audit::require_credential));
    // No API answer is kept by a cache along the way: some carry secrets (a new token or
    // key, a session's CSRF token), all carry what only the caller may read.
    let api = authenticated.merge(public).route_layer(recorder).layer(
        SetResponseHeaderLayer::overriding(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        ),
    );
    let mut unauthenticated = Router::new();
    for (_, path, handler) in routes::unauthenticated() {
        unauthenticated = unauthenticated.route(path, handler);
    }
    unauthenticated
        // The web console's files: no API, a client of it like the CLI.
        .route("/", axum::routing::get(console::index))
        .route("/console/{*path}", axum::routing::get(console::asset))
        .merge(api)
        .fallback(|| async { ApiError::NotFound("no such endpoint; see /v1/openapi.json".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed(
                "this endpoint does not take that method; see /v1/openapi.json".into(),
            )
        })
        .layer(from_fn(metrics::track))
        .layer(CatchPanicLayer::custom(panic_response))
        // Outermost: where the call came from, then the limits and problem+json for every
        // error answer, whoever made it.
        .layer(from_fn_with_state(state.clone(), edge::resolve_client_ip))
        .layer(from_fn(edge::guard))
        .with_state(state)
}

/// How `trail serve` runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The signing key, heads file, archives and operator socket; and the embedded store,
    /// unless `database` names another.
    pub data_dir: PathBuf,
    /// The store's URL (`sqlite:DIR`, `postgres://…`); `None`: SQLite in `data_dir`.
    pub database: Option<String>,
    pub listen: SocketAddr,
    pub bootstrap_org: String,
    pub bootstrap_owner: String,
    pub session_idle: Duration,
    pub secure_cookies: bool,
    /// The name of the logs (their origins are `<name>/<org>`) and of their signing key, on
    /// first start; `None`: a name unique to this install (see [`log::load_or_create_key`]).
    pub log_name: Option<String>,
    /// Connection cap and timeouts.
    pub connections: edge::ConnectionLimits,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Serve HTTPS with this certificate and key; `None`: plain HTTP.
    pub tls: Option<tls::TlsFiles>,
    /// How often an idle live tail sends a keep-alive comment
    /// ([`DEFAULT_STREAM_KEEP_ALIVE`] by default).
    pub stream_keep_alive: Duration,
    /// Keep weekly archives in this bucket (`s3://BUCKET[/PREFIX]`) rather than in the data
    /// directory.
    pub archive_url: Option<String>,
}

/// How often an idle live tail sends a keep-alive comment, unless told otherwise: well
/// within the idle timeouts of clients and proxies (Trail's own client gives up on a
/// connection silent for 60 s).
pub const DEFAULT_STREAM_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long a stopping server waits for the calls in flight (live tails end at once).
const DRAIN: Duration = Duration::from_secs(10);

/// The file the bootstrap token is written to, inside the data directory.
pub const BOOTSTRAP_TOKEN_FILE: &str = "bootstrap-token";

/// A server that has opened its store and bound its address, ready to serve.
pub struct Bound {
    listener: tokio::net::TcpListener,
    app: Router,
    heads: Arc<log::Heads>,
    /// The app's [`AppState::stopping`].
    stopping: tokio_util::sync::CancellationToken,
    /// The store, for jobs the process runs beside the API (the operator socket).
    pub store: Arc<dyn Store>,
    connections: edge::ConnectionLimits,
    /// The server's TLS, when it serves HTTPS: [`tls::Tls::reload`] re-reads its files.
    pub tls: Option<Arc<tls::Tls>>,
    pub addr: SocketAddr,
    /// The key that verifies this server's checkpoints.
    pub verifier_key: String,
    /// The weekly archives, built by a job beside the API (and by operator jobs).
    pub archives: Arc<archive::Archives>,
    /// The key that signs the logs (and the archives' manifests).
    pub log_key: Arc<SignerKey>,
    /// Where the store is, as shown to the operator (no password).
    pub store_location: String,
    /// The data directory's lock, when the store does not take it itself.
    _dir_lock: Option<trail_store::sqlite::DirLock>,
}

/// Opens the store (bootstrapping an empty one) and binds the listen address.
pub async fn bind(config: &ServeConfig) -> anyhow::Result<Bound> {
    trail_core::event::check_org_slug(&config.bootstrap_org)
        .map_err(|e| anyhow::anyhow!("--bootstrap-org: {e}"))?;
    // Before the store: a server that cannot serve its certificate changes nothing.
    let tls = match &config.tls {
        Some(files) => Some(Arc::new(tls::Tls::load(files.clone())?)),
        None => None,
    };
    let location = trail_store::Location::of(config.database.as_deref(), &config.data_dir)
        .map_err(|e| anyhow::anyhow!("--database: {e}"))?;
    // The data directory holds the signing key, the heads file, the archives and the
    // operator socket whatever the store: one server has it (the embedded store takes the
    // same lock itself).
    let dir_lock = match &location {
        trail_store::Location::Sqlite(_) => None,
        trail_store::Location::Postgres(_) => Some(
            trail_store::sqlite::DirLock::acquire(&config.data_dir)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
    };
    let store = location
        .open()
        .await
        .with_context(|| format!("opening the store {}", location.describe()))?;
    bootstrap(
        &*store,
        &config.data_dir,
        &config.bootstrap_org,
        &config.bootstrap_owner,
        now(),
    )
    .await?;
    let key = Arc::new(
        log::load_or_create_key(&*store, &config.data_dir, config.log_name.as_deref()).await?,
    );
    let verifier_key = key.verifier().to_string();
    // Servers that share a database sign its logs with one key: a server with another
    // would sign nothing (each log's newest checkpoint does not open with its key).
    let logs_key = store
        .init_setting("log_verifier_key", &verifier_key)
        .await?;
    if logs_key != verifier_key && matches!(location, trail_store::Location::Postgres(_)) {
        anyhow::bail!(
            "this database's logs are signed with {logs_key}, but {} holds another key: \
             every server on one database signs with the same key (copy it from a server \
             that has it)",
            config.data_dir.join(log::KEY_FILE).display()
        );
    }
    let heads = Arc::new(log::Heads::new(
        store.clone(),
        key.clone(),
        Some(config.data_dir.join(log::HEADS_FILE)),
    ));
    heads.start_signing().await?;
    let key_for_jobs = key.clone();
    let mut state = AppState::new(store, key).await?;
    state.sessions.idle = config.session_idle;
    state.secure_cookies = config.secure_cookies;
    state.trusted_proxies = Arc::from(config.trusted_proxies.clone());
    state.stream_keep_alive = config.stream_keep_alive;
    let archives = Arc::new(match &config.archive_url {
        Some(url) => archive::Archives::in_bucket(config.data_dir.join(ARCHIVES_DIR), url)?,
        None => archive::Archives::new(config.data_dir.join(ARCHIVES_DIR)),
    });
    state.archives = Some(archives.clone());
    let stopping = state.stopping.clone();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let store = state.store.clone();
    Ok(Bound {
        listener,
        app: app(state),
        heads,
        stopping,
        store,
        connections: edge::ConnectionLimits {
            max_connections: edge::fit_connection_cap(config.connections.max_connections),
            ..config.connections
        },
        tls,
        addr,
        verifier_key,
        archives,
        log_key: key_for_jobs,
        store_location: location.describe(),
        _dir_lock: dir_lock,
    })
}

impl Bound {
    /// Serves until `shutdown` completes, then ends the live tails, finishes the calls in
    /// flight and brings the heads file up to date.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stopping = self.stopping.clone();
        let shutdown = async move {
            shutdown.await;
            stopping.cancel();
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let heads = tokio::spawn(self.heads.clone().run(stopped));
        let archiving = tokio::spawn(
            self.archives
                .clone()
                .run(self.store.clone(), self.log_key.clone()),
        );
        let served = edge::serve(
            self.listener,
            self.app,
            self.tls,
            self.connections,
            DRAIN,
            shutdown,
        )
        .await
        .context("serving");
        let _ = stop.send(true);
        self.archives.stop();
        let _ = archiving.await;
        heads.await.context("keeping the log heads failed")?;
        served
    }
}

/// Seeds an empty store with its first org (the platform org), an owner who is a platform
/// admin, and the owner's token, printed once and written (mode 0600) to the data directory.
/// Seeds an empty store, as the first start of `trail serve` does: the org `org`, its owner
/// `owner` (a platform admin) and the owner's token, written to `BOOTSTRAP_TOKEN_FILE` in
/// `data_dir`. A store with any org is left as it is.
pub async fn bootstrap(
    store: &dyn Store,
    data_dir: &std::path::Path,
    org: &str,
    owner: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    if !store.orgs().await?.is_empty() {
        return Ok(());
    }
    let mut scopes = preset("admin-full")
        .expect("admin-full is a preset")
        .to_vec();
    scopes.push(Scope::OrgsAdmin);
    let owner_email = owner;
    let owner = User {
        id: auth::random_id("usr"),
        email: owner_email.to_owned(),
        password_hash: None,
        platform_admin: true,
        created_at: now,
    };
    let minted = auth::mint(CredentialSpec {
        kind: TokenKind::Pat,
        org: org.to_owned(),
        owner: owner.email.clone(),
        user_id: Some(owner.id.clone()),
        name: "bootstrap".into(),
        description: "made by the first start of trail serve".into(),
        scopes,
        instance: None,
        created_by: "trail serve".into(),
        created_at: now,
        expires_at: None,
        // The bootstrap owner creates orgs, and owns them: their token works in each.
        reach: trail_store::Reach::All,
    });
    // Written before the store is seeded: a token that was never written must not exist.
    let path = data_dir.join(BOOTSTRAP_TOKEN_FILE);
    write_secret(&path, &minted.secret).with_context(|| format!("writing {}", path.display()))?;
    let seeded = store
        .bootstrap(Bootstrap {
            org: Org {
                id: org.to_owned(),
                name: org.to_owned(),
                created_at: now,
            },
            owner,
            token: minted.token,
        })
        .await?;
    if !seeded {
        // Another server sharing the store seeded it first.
        std::fs::remove_file(&path).ok();
        return Ok(());
    }
    say(format_args!(
        "Bootstrapped org {:?} with owner {}.",
        org, owner_email
    ));
    say(format_args!(
        "Owner token (shown once; also in {}):",
        path.display()
    ));
    say(format_args!("  {}", minted.secret));
    Ok(())
}

/// Prints one line of the server's banner. Unlike `println!` it never panics: a server whose
/// stdout was closed (a supervisor that stopped reading) keeps serving.
pub fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line).and_then(|()| out.write_all(b"\n"));
}

fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    #[cfg(unix)]
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    writeln!(f, "{secret}")?;
    f.sync_all()
}
