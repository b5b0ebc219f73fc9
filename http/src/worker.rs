//! The generation worker's link to the command side: it reads what a job asks for from the
//! aggregates and records results as commands, with the worker as the events' actor and the
//! `GenerationRequested` event as their cause.
use std::sync::Arc;

use async_trait::async_trait;
use domain::client_request::{ClientRequest, ClientRequestCommand};
use domain::ids;
use domain::metadata::{Actor, EventMetadata};
use domain::project::Project;
use inference_worker::backend::GenerationInput;
use inference_worker::jobs::ClaimedJob;
use inference_worker::reactor::{GenerationLedger, Offer, Work};
use inference_worker::{GenerationReactor, JobQueue, ReactorConfig, TextGenerator};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::commands::CommandBus;
use crate::event_store::Recency;

/// A generator and how the worker around it behaves.
#[derive(Clone)]
pub struct WorkerSetup {
    pub generator: Arc<dyn TextGenerator>,
    pub reactor: ReactorConfig,
}

pub struct BusLedger {
    bus: Arc<CommandBus>,
    worker_id: String,
}

impl BusLedger {
    fn metadata(&self, job: &ClaimedJob) -> EventMetadata {
        let correlation = job
            .correlation_id
            .clone()
            .unwrap_or_else(|| format!("generation-{}", job.generation_id));
        EventMetadata::new(Actor::Process(self.worker_id.clone()), correlation).caused_by(format!(
            "ClientRequest/{}/{}",
            job.request_id, job.requested_sequence
        ))
    }

    async fn execute(&self, job: &ClaimedJob, command: ClientRequestCommand) -> anyhow::Result<()> {
        self.bus
            .execute(
                &self.bus.requests,
                job.request_id,
                command,
                &self.metadata(job),
            )
            .await
            .map_err(|e| anyhow::anyhow!("client request {}: {e}", job.request_id))?;
        Ok(())
    }
}

#[async_trait]
impl GenerationLedger for BusLedger {
    async fn work(&self, job: &ClaimedJob) -> anyhow::Result<Option<Work>> {
        // The job was committed with its event, so the log has the generation; a copy of the
        // request remembered from before it was asked for does not, and one remembered from
        // before an admin requeued it still shows it finished (the worker is woken at commit,
        // before this process's memory learns of the requeue).
        let mut request: ClientRequest = self.bus.recorded(job.request_id).await?;
        if request
            .generations
            .get(&job.generation_id)
            .is_none_or(|generation| generation.finished)
        {
            request = self
                .bus
                .requests
                .current(job.request_id, Recency::AtMost(std::time::Duration::ZERO))
                .await?
                .aggregate;
        }
        let generation = request.generations.get(&job.generation_id).ok_or_else(|| {
            anyhow::anyhow!(
                "generation {} is not in client request {}'s log",
                job.generation_id,
                job.request_id
            )
        })?;
        if generation.finished {
            return Ok(None);
        }
        let (project_id, channel_id) =
            request.project_id.zip(request.channel_id).ok_or_else(|| {
                anyhow::anyhow!("client request {} was never created", job.request_id)
            })?;
        let project: Project = self.bus.load(project_id).await?;
        let rules = project.channel_rules(channel_id).unwrap_or_default();
        Ok(Some(Work {
            input: GenerationInput {
                messages: generation.messages.clone(),
                params: generation.params,
            },
            rules,
        }))
    }

    async fn record_offer(&self, job: &ClaimedJob, offer: Offer) -> anyhow::Result<()> {
        self.execute(
            job,
            ClientRequestCommand::CompleteGeneration {
                generation_id: job.generation_id,
                message_id: ids::offer_message_id(job.generation_id),
                text: offer.text,
                model: offer.model,
                prompt_tokens: offer.prompt_tokens,
                completion_tokens: offer.completion_tokens,
                duration_ms: offer.duration_ms,
                flags: offer.flags,
            },
        )
        .await
    }

    async fn record_failure(
        &self,
        job: &ClaimedJob,
        error: &str,
        permanent: bool,
    ) -> anyhow::Result<()> {
        self.execute(
            job,
            ClientRequestCommand::FailGeneration {
                generation_id: job.generation_id,
                error: error.to_string(),
                attempt: job.attempt,
                permanent,
            },
        )
        .await
    }
}

/// Starts the generation worker on the process's command bus; it stops when `shutdown`
/// turns true, giving its unfinished jobs back.
pub fn spawn_worker(
    bus: Arc<CommandBus>,
    pool: sqlx::PgPool,
    setup: WorkerSetup,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let wakeups = bus.engine().commits();
    let ledger = Arc::new(BusLedger {
        bus,
        worker_id: setup.reactor.worker_id.clone(),
    });
    let reactor =
        GenerationReactor::new(JobQueue::new(pool), setup.generator, ledger, setup.reactor);
    tokio::spawn(reactor.run(wakeups, shutdown))
}

/// A worker id that tells machines and processes apart in leases and in the log.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("worker-{host}-{}", std::process::id())
}
