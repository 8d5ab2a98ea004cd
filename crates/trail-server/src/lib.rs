//! Trail's HTTP server.
//!
//! [`app`] is the whole API as an axum `Router`; [`serve`] opens the store, bootstraps an
//! empty one, binds and serves until shutdown. Every authenticated route runs inside the
//! [`audit::record`] layer, so every call is itself an event in the log.
//!
//! Architecture invariant: the server speaks to storage only through `trail_store::Store`;
//! it never sees SQL. Scope checks happen in [`auth::authorize`] and nowhere else.

pub mod audit;
pub mod auth;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod routes;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use trail_core::scope::preset;
use trail_core::{Scope, Timestamp};
use trail_store::{Bootstrap, Org, SqliteStore, Store, TokenKind, User};

use crate::error::ApiError;
use crate::routes::{events, ops};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
}

/// The wall clock, in the core's terms.
pub fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// The whole API.
pub fn app(state: AppState) -> Router {
    metrics::handle();
    let authenticated = Router::new()
        .route("/v1/orgs/{org}/events", post(events::ingest))
        .route("/v1/orgs/{org}/audit-logs", get(events::list))
        .route(
            "/v1/orgs/{org}/instances/{instance}/audit-logs",
            get(events::list_instance),
        )
        .route("/v1/audit-log", get(events::list_caller_org))
        .route("/v1/me", get(events::me))
        // Innermost: a panicking handler still gets an answer, and so a record. Then: who
        // is calling. Outermost: the record of the call.
        .route_layer(CatchPanicLayer::custom(panic_response))
        .route_layer(from_fn_with_state(state.clone(), audit::require_credential))
        .route_layer(from_fn_with_state(state.clone(), audit::record));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/openapi.json", get(ops::openapi))
        .merge(authenticated)
        .fallback(|| async { ApiError::NotFound("no such endpoint; see /v1/openapi.json".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed(
                "this endpoint does not take that method; see /v1/openapi.json".into(),
            )
        })
        .layer(from_fn(metrics::track))
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

fn panic_response(_: Box<dyn std::any::Any + Send>) -> Response {
    ApiError::Internal("a handler panicked".into()).into_response()
}

/// How `trail serve` runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub bootstrap_org: String,
    pub bootstrap_owner: String,
}

/// The file the bootstrap token is written to, inside the data directory.
pub const BOOTSTRAP_TOKEN_FILE: &str = "bootstrap-token";

/// A server that has opened its store and bound its address, ready to serve.
pub struct Bound {
    listener: tokio::net::TcpListener,
    app: Router,
    pub addr: SocketAddr,
}

/// Opens the store (bootstrapping an empty one) and binds the listen address.
pub async fn bind(config: &ServeConfig) -> anyhow::Result<Bound> {
    trail_core::event::check_org_slug(&config.bootstrap_org)
        .map_err(|e| anyhow::anyhow!("--bootstrap-org: {e}"))?;
    let store = SqliteStore::open(&config.data_dir)
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);
    bootstrap(&*store, config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    Ok(Bound {
        listener,
        app: app(AppState { store }),
        addr,
    })
}

impl Bound {
    /// Serves until `shutdown` completes, then finishes the calls in flight.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(
            self.listener,
            self.app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving")
    }
}

/// Seeds an empty store with its first org, an owner and the owner's token, which is
/// printed once and written (mode 0600) to the data directory.
async fn bootstrap(store: &dyn Store, config: &ServeConfig) -> anyhow::Result<()> {
    if !store.orgs().await?.is_empty() {
        return Ok(());
    }
    let now = now();
    let mut scopes = preset("admin-full")
        .expect("admin-full is a preset")
        .to_vec();
    scopes.push(Scope::OrgsAdmin);
    let minted = auth::mint(
        TokenKind::Pat,
        &config.bootstrap_org,
        &config.bootstrap_owner,
        "bootstrap",
        scopes,
        now,
        None,
    );
    // Written before the store is seeded: a token that was never written must not exist.
    let path = config.data_dir.join(BOOTSTRAP_TOKEN_FILE);
    write_secret(&path, &minted.secret).with_context(|| format!("writing {}", path.display()))?;
    let seeded = store
        .bootstrap(Bootstrap {
            org: Org {
                id: config.bootstrap_org.clone(),
                name: config.bootstrap_org.clone(),
                created_at: now,
            },
            owner: User {
                id: format!("usr_{}", &minted.token.id[4..]),
                email: config.bootstrap_owner.clone(),
                created_at: now,
            },
            token: minted.token,
        })
        .await?;
    if !seeded {
        // Another server sharing the store seeded it first.
        std::fs::remove_file(&path).ok();
        return Ok(());
    }
    println!(
        "Bootstrapped org {:?} with owner {}.",
        config.bootstrap_org, config.bootstrap_owner
    );
    println!("Owner token (shown once; also in {}):", path.display());
    println!("  {}", minted.secret);
    Ok(())
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
