use std::sync::Arc;

use projections::Engine;
use sqlx::PgPool;
use tokio::sync::watch;

use inference_worker::argilla::ArgillaExporter;
use inference_worker::JobQueue;

use crate::auth::{LoginThrottle, TokenKeys};
use crate::commands::CommandBus;
use crate::generation::GenerationSettings;
use crate::worker::WorkerSetup;

/// Settings the request handlers need at run time.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub max_body_bytes: usize,
    pub consistency_wait_ms: u64,
    pub access_token_ttl_seconds: i64,
    pub refresh_token_ttl_seconds: i64,
    pub ready_max_lag_seconds: f64,
    /// Largest file one import accepts, in bytes.
    pub import_max_bytes: usize,
    /// Most client rows one import accepts.
    pub import_max_rows: usize,
}

impl AppConfig {
    pub fn import_limits(&self) -> crate::import::ImportLimits {
        crate::import::ImportLimits {
            max_bytes: self.import_max_bytes,
            max_rows: self.import_max_rows,
        }
    }
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            max_body_bytes: 2 * 1024 * 1024,
            consistency_wait_ms: 5_000,
            access_token_ttl_seconds: 900,
            refresh_token_ttl_seconds: 30 * 24 * 3600,
            ready_max_lag_seconds: 10.0,
            import_max_bytes: crate::import::ImportLimits::default().max_bytes,
            import_max_rows: crate::import::ImportLimits::default().max_rows,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub engine: Arc<Engine>,
    pub bus: Arc<CommandBus>,
    pub keys: Arc<TokenKeys>,
    pub login_throttle: Arc<LoginThrottle>,
    pub config: Arc<AppConfig>,
    pub generation: Arc<GenerationSettings>,
    /// The generation queue, for progress and the dead-job admin.
    pub jobs: JobQueue,
    /// The worker `serve` runs beside the API, if this process generates.
    pub worker: Option<WorkerSetup>,
    /// The Argilla exporter, when the export is switched on (it is also one of the engine's
    /// subscribers).
    pub argilla: Option<Arc<ArgillaExporter>>,
    /// Turns true when the server begins to shut down, so that endless responses (event
    /// streams) end and the graceful shutdown does not wait for them forever.
    pub stopping: watch::Receiver<bool>,
    pub(crate) stop: Arc<watch::Sender<bool>>,
}
