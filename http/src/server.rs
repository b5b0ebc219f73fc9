//! Assembling the process: the database (given, or our own embedded cluster), migrations, the
//! subscriber engine, the first admin, and the HTTP server with a graceful shutdown.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use domain::metadata::{Actor, EventMetadata};
use projections::engine::EngineConfig;
use projections::{all_projections, Engine, MIGRATOR};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::auth::{random_secret, TokenKeys};
use crate::commands::CommandBus;
use crate::embedded_pg::EmbeddedPostgres;
use crate::generation::GenerationSettings;
use crate::routes::users::{register_user, NewUser};
use crate::seed::{seed_catalog, system_admin};
use crate::state::{AppConfig, AppState};
use crate::worker::{spawn_worker, WorkerSetup};
use inference_worker::argilla::{ArgillaConfig, ArgillaExporter};
use inference_worker::JobQueue;

/// The database the process works on, and the embedded cluster if it runs one.
pub struct Database {
    pub pool: PgPool,
    pub url: String,
    embedded: Option<EmbeddedPostgres>,
}

/// How Offerflow connects to PostgreSQL (the tests and benchmarks use the same).
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings a connection before every acquire: one more round trip for each statement
        // of a command, a batch or a query. A connection that did die fails its statement (a
        // 503 for a command) and is replaced.
        .test_before_acquire(false)
}

impl Database {
    /// Connects to `url`, or with none starts Offerflow's own cluster in `data_dir/postgres`.
    pub async fn open(
        url: Option<&str>,
        data_dir: &Path,
        pg_port: Option<u16>,
        max_connections: u32,
    ) -> anyhow::Result<Self> {
        let (url, embedded) = match url {
            Some(url) => (url.to_string(), None),
            None => {
                let dir: PathBuf = data_dir.join("postgres");
                let cluster = EmbeddedPostgres::start(&dir, pg_port, "offerflow")
                    .await
                    .with_context(|| {
                        format!("starting the embedded PostgreSQL in {}", dir.display())
                    })?;
                tracing::info!(data_dir = %dir.display(), "embedded PostgreSQL is running");
                (cluster.url().to_string(), Some(cluster))
            }
        };
        let pool = pool_options(max_connections)
            .connect(&url)
            .await
            .with_context(|| format!("connecting to {}", redact(&url)))?;
        Ok(Database {
            pool,
            url,
            embedded,
        })
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    pub async fn close(self) -> anyhow::Result<()> {
        self.pool.close().await;
        if let Some(cluster) = self.embedded {
            cluster.stop().await?;
        }
        Ok(())
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[derive(Default)]
pub struct StateOptions {
    pub config: AppConfig,
    pub jwt_secret: Option<String>,
    pub engine: EngineConfig,
    pub generation: GenerationSettings,
    /// A generation worker to run beside the API.
    pub worker: Option<WorkerSetup>,
    /// Export offers to Argilla and read reviews back.
    pub argilla: Option<ArgillaConfig>,
}

/// Applies pending migrations and builds what handlers and tools share.
pub async fn build_state(pool: PgPool, options: StateOptions) -> anyhow::Result<AppState> {
    MIGRATOR
        .run(&pool)
        .await
        .context("applying database migrations")?;
    let mut subscribers = all_projections();
    let argilla = options
        .argilla
        .map(|config| ArgillaExporter::new(pool.clone(), config))
        .transpose()?;
    if let Some(exporter) = &argilla {
        subscribers.push(exporter.clone());
    }
    let engine = Engine::new(pool.clone(), subscribers, options.engine);
    engine.register().await?;
    let keys = TokenKeys::load(&pool, options.jwt_secret.as_deref()).await?;
    let (stop, _) = watch::channel(false);
    Ok(AppState {
        bus: Arc::new(CommandBus::new(pool.clone(), engine.clone())),
        engine,
        keys: Arc::new(keys),
        login_throttle: Arc::new(Default::default()),
        config: Arc::new(options.config),
        generation: Arc::new(options.generation),
        jobs: JobQueue::new(pool.clone()),
        worker: options.worker,
        argilla,
        stopping: stop.subscribe(),
        stop: Arc::new(stop),
        pool,
    })
}

pub fn cli_metadata() -> EventMetadata {
    EventMetadata::new(Actor::Cli, format!("cli-{}", uuid::Uuid::new_v4()))
}

/// The first admin's credentials, made on a fresh database.
pub struct FirstAdmin {
    pub email: String,
    pub password: String,
}

pub const FIRST_ADMIN_EMAIL: &str = "admin@offerflow.local";

/// On a database with no users: seeds the catalog and creates an admin with a random password.
pub async fn bootstrap(state: &AppState) -> anyhow::Result<Option<FirstAdmin>> {
    let (users,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM events WHERE aggregate_type = 'User'")
            .fetch_one(&state.pool)
            .await?;
    if users > 0 {
        return Ok(None);
    }
    let metadata = cli_metadata();
    let report = seed_catalog(state, &metadata).await?;
    tracing::info!(
        products = report.products_added,
        channels = report.channels_added,
        "catalog seeded"
    );
    let password = random_secret(12);
    let body = NewUser {
        email: FIRST_ADMIN_EMAIL.into(),
        password: password.clone(),
        name: "Администратор".into(),
        position: String::new(),
        subdivision: String::new(),
        is_admin: true,
    };
    register_user(state, &metadata, system_admin(), body)
        .await
        .map_err(|e| anyhow::anyhow!("creating the first admin: {e}"))?;
    Ok(Some(FirstAdmin {
        email: FIRST_ADMIN_EMAIL.into(),
        password,
    }))
}

/// Serves HTTP on `bind` with the subscribers running, until Ctrl-C or SIGTERM.
pub async fn serve(
    state: AppState,
    bind: SocketAddr,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    serve_until(state, bind, on_listening, shutdown_signal()).await
}

/// Serves until `shutdown` completes, then stops the subscribers cleanly.
pub async fn serve_until(
    state: AppState,
    bind: SocketAddr,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut subscribers = state.engine.spawn(stop_rx.clone());
    if let Some(setup) = state.worker.clone() {
        subscribers.push(spawn_worker(
            Arc::clone(&state.bus),
            state.pool.clone(),
            setup,
            stop_rx.clone(),
        ));
    }
    if let Some(exporter) = &state.argilla {
        let ledger = Arc::new(crate::argilla::BusReviewLedger {
            bus: Arc::clone(&state.bus),
        });
        subscribers.push(exporter.spawn(ledger, stop_rx));
    }
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("listening on {bind}"))?;
    let local = listener.local_addr()?;
    on_listening(local);
    let app = crate::router(state.clone());
    let stopping = Arc::clone(&state.stop);
    let shutdown = async move {
        shutdown.await;
        let _ = stopping.send(true);
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("serving HTTP")?;
    let _ = stop_tx.send(true);
    for task in subscribers {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    Ok(())
}

/// Runs only the generation worker (`offerflow worker`) until Ctrl-C or SIGTERM, then gives
/// its unfinished jobs back.
pub async fn run_worker(state: AppState) -> anyhow::Result<()> {
    let setup = state
        .worker
        .clone()
        .context("no generation worker was configured")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = state.engine.spawn_notices(stop_rx.clone());
    tasks.push(spawn_worker(
        Arc::clone(&state.bus),
        state.pool.clone(),
        setup,
        stop_rx,
    ));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    Ok(())
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://bank:s3cret@db:5432/offerflow"),
            "postgres://bank:***@db:5432/offerflow"
        );
        assert_eq!(
            redact("postgres://bank@db/offerflow"),
            "postgres://bank@db/offerflow"
        );
    }
}
