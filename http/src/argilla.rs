//! The Argilla export's configuration and its link to the command side: reviews read back from
//! Argilla are recorded as `RecordReview` commands on the client request, with the sync as the
//! events' actor.
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::Args;
use domain::client_request::ClientRequestCommand;
use domain::metadata::{Actor, EventMetadata};
use inference_worker::argilla::{ArgillaConfig, Review, ReviewLedger};
use uuid::Uuid;

use crate::commands::CommandBus;

/// `OFFERFLOW_ARGILLA_*`: the export is off unless the URL, the key and the workspace are set.
#[derive(Args, Debug, Clone, Default)]
pub struct ArgillaArgs {
    /// Argilla's base URL, e.g. http://argilla:6900. Turns the export on.
    #[arg(long, env = "OFFERFLOW_ARGILLA_URL", global = true)]
    pub argilla_url: Option<String>,
    /// An Argilla owner's API key (it creates the workspace and datasets).
    #[arg(
        long,
        env = "OFFERFLOW_ARGILLA_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub argilla_api_key: Option<String>,
    /// The workspace the datasets go to (created if missing).
    #[arg(long, env = "OFFERFLOW_ARGILLA_WORKSPACE", global = true)]
    pub argilla_workspace: Option<String>,
    /// Datasets are named `{prefix}{project id}`.
    #[arg(
        long,
        env = "OFFERFLOW_ARGILLA_DATASET_PREFIX",
        default_value = "offerflow-",
        global = true
    )]
    pub argilla_dataset_prefix: String,
    /// How often reviewers' submitted responses are read back, in seconds.
    #[arg(
        long,
        env = "OFFERFLOW_ARGILLA_SYNC_SECONDS",
        default_value_t = 60,
        global = true
    )]
    pub argilla_sync_seconds: u64,
}

impl ArgillaArgs {
    /// The export's configuration, or none when it is not switched on. Half a configuration
    /// is an error, not a silent "off".
    pub fn config(&self) -> anyhow::Result<Option<ArgillaConfig>> {
        let given = [
            self.argilla_url.as_deref(),
            self.argilla_api_key.as_deref(),
            self.argilla_workspace.as_deref(),
        ];
        let set = given
            .iter()
            .filter(|v| v.is_some_and(|v| !v.trim().is_empty()))
            .count();
        if set == 0 {
            return Ok(None);
        }
        let (Some(url), Some(key), Some(workspace)) = (given[0], given[1], given[2]) else {
            anyhow::bail!(
                "the Argilla export needs OFFERFLOW_ARGILLA_URL, OFFERFLOW_ARGILLA_API_KEY and OFFERFLOW_ARGILLA_WORKSPACE together"
            );
        };
        if set != 3 {
            anyhow::bail!(
                "the Argilla export needs OFFERFLOW_ARGILLA_URL, OFFERFLOW_ARGILLA_API_KEY and OFFERFLOW_ARGILLA_WORKSPACE together"
            );
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("OFFERFLOW_ARGILLA_URL must start with http:// or https://");
        }
        if self.argilla_sync_seconds == 0 {
            anyhow::bail!("OFFERFLOW_ARGILLA_SYNC_SECONDS must be at least 1");
        }
        let prefix = &self.argilla_dataset_prefix;
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || prefix.starts_with(['-', '_'])
        {
            anyhow::bail!(
                "OFFERFLOW_ARGILLA_DATASET_PREFIX may hold only letters, digits, - and _, and not start with - or _"
            );
        }
        let mut config = ArgillaConfig::new(url.trim(), key.trim(), workspace.trim());
        config.dataset_prefix = prefix.clone();
        config.sync_interval = Duration::from_secs(self.argilla_sync_seconds);
        Ok(Some(config))
    }
}

/// Records reviews through the command bus.
pub struct BusReviewLedger {
    pub bus: Arc<CommandBus>,
}

#[async_trait]
impl ReviewLedger for BusReviewLedger {
    async fn record_review(&self, request_id: Uuid, review: Review) -> anyhow::Result<bool> {
        let metadata = EventMetadata::new(
            Actor::Process("argilla-sync".into()),
            format!("argilla-response-{}", review.response_id),
        );
        let command = ClientRequestCommand::RecordReview {
            message_id: review.message_id,
            reviewer: review.reviewer,
            quality: review.quality,
            corrected_text: review.corrected_text,
            rating: review.rating,
            response_id: review.response_id.to_string(),
            response_updated_at: review.updated_at,
        };
        let done = self
            .bus
            .execute(&self.bus.requests, request_id, command, &metadata)
            .await
            .map_err(|e| anyhow::anyhow!("client request {request_id}: {e}"))?;
        Ok(done.changed)
    }
}
