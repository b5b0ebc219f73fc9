//! The generation reactor: claims jobs from the queue, generates their offers through a
//! [`TextGenerator`], reviews them against the channel's guardrails and records the result
//! through the command side ([`GenerationLedger`]).
//!
//! Delivery is at least once: a worker that dies after generating but before recording loses
//! its lease and another worker generates again; the log keeps the first result for a
//! generation and ignores the rest, so every generation ends with exactly one
//! `MessageGenerated` or one permanent `GenerationFailed`.
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::guardrails::{review_offer, ChannelRules};
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::backend::{GenerationError, GenerationInput, GenerationOutput, TextGenerator};
use crate::jobs::{Backoff, ClaimedJob, JobQueue};

/// What one job asks for, as the log records it.
#[derive(Debug, Clone)]
pub struct Work {
    pub input: GenerationInput,
    pub rules: ChannelRules,
}

/// A generated offer after review.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub text: String,
    pub model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub duration_ms: u64,
    pub flags: Vec<String>,
}

/// Flag of a text that `max_tokens` cut off before the model ended it.
pub const CUT_AT_MAX_TOKENS: &str = "cut_at_max_tokens";

/// The command side, as the reactor needs it.
#[async_trait::async_trait]
pub trait GenerationLedger: Send + Sync {
    /// What the job's generation asks for; `None` when the log shows it already finished.
    async fn work(&self, job: &ClaimedJob) -> anyhow::Result<Option<Work>>;
    /// Records the offer (`MessageGenerated`); a repeat for the same generation records nothing.
    async fn record_offer(&self, job: &ClaimedJob, offer: Offer) -> anyhow::Result<()>;
    /// Records a failure (`GenerationFailed`); a permanent one ends the generation.
    async fn record_failure(
        &self,
        job: &ClaimedJob,
        error: &str,
        permanent: bool,
    ) -> anyhow::Result<()>;
}

#[derive(Debug, Clone)]
pub struct ReactorConfig {
    /// Names this worker in leases and in its events' metadata.
    pub worker_id: String,
    /// How long a claimed job stays this worker's without renewal.
    pub lease: Duration,
    /// Attempts before a job is dead and its generation fails for good.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Jobs held at once; 0 means twice the generator's parallelism.
    pub in_flight: usize,
    /// How often to look at the queue when nothing wakes the worker.
    pub poll_interval: Duration,
}

impl ReactorConfig {
    pub fn new(worker_id: impl Into<String>) -> Self {
        ReactorConfig {
            worker_id: worker_id.into(),
            lease: Duration::from_secs(60),
            max_attempts: 5,
            backoff: Backoff::default(),
            in_flight: 0,
            poll_interval: Duration::from_secs(1),
        }
    }
}

pub struct GenerationReactor {
    queue: JobQueue,
    generator: Arc<dyn TextGenerator>,
    ledger: Arc<dyn GenerationLedger>,
    config: ReactorConfig,
    /// The jobs this worker holds, for lease renewal and for giving them back on shutdown.
    held: Mutex<HashSet<Uuid>>,
}

impl GenerationReactor {
    pub fn new(
        queue: JobQueue,
        generator: Arc<dyn TextGenerator>,
        ledger: Arc<dyn GenerationLedger>,
        config: ReactorConfig,
    ) -> Arc<Self> {
        Arc::new(GenerationReactor {
            queue,
            generator,
            ledger,
            config,
            held: Mutex::new(HashSet::new()),
        })
    }

    fn capacity(&self) -> usize {
        match self.config.in_flight {
            0 => self.generator.parallelism().max(1) * 2,
            n => n,
        }
    }

    fn held(&self) -> Vec<Uuid> {
        self.held
            .lock()
            .map(|held| held.iter().copied().collect())
            .unwrap_or_default()
    }

    fn hold(&self, id: Uuid, holding: bool) {
        if let Ok(mut held) = self.held.lock() {
            if holding {
                held.insert(id);
            } else {
                held.remove(&id);
            }
        }
    }

    /// Works the queue until `shutdown` turns true; `wakeups` changes when events were
    /// committed (here or, through the engine's NOTIFY, elsewhere). On shutdown the jobs in
    /// progress are given back to the queue.
    pub async fn run(
        self: Arc<Self>,
        mut wakeups: watch::Receiver<u64>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let capacity = self.capacity();
        tracing::info!(
            worker = %self.config.worker_id,
            model = %self.generator.model_name(),
            capacity,
            "generation worker started"
        );
        let leases = tokio::spawn(Arc::clone(&self).keep_leases(shutdown.clone()));
        let mut running: JoinSet<()> = JoinSet::new();
        let mut failures = 0u32;
        while !*shutdown.borrow() {
            let free = capacity.saturating_sub(running.len());
            let mut claimed = 0;
            if free > 0 {
                match self
                    .queue
                    .claim(&self.config.worker_id, free, self.config.lease)
                    .await
                {
                    Ok(jobs) => {
                        failures = 0;
                        claimed = jobs.len();
                        for job in jobs {
                            self.hold(job.generation_id, true);
                            let reactor = Arc::clone(&self);
                            running.spawn(async move {
                                let id = job.generation_id;
                                reactor.process(job).await;
                                reactor.hold(id, false);
                            });
                        }
                    }
                    Err(error) => {
                        failures += 1;
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "cannot claim generation jobs"
                        );
                    }
                }
            }
            if claimed > 0 && claimed == free {
                // Full: wait for a place.
                tokio::select! {
                    _ = running.join_next() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            if claimed > 0 {
                // The queue had fewer than our free places: look again for stragglers of the
                // same batch before sleeping.
                continue;
            }
            let idle = match failures {
                0 => match self.queue.next_ready_in().await {
                    Ok(Some(ready)) => ready.min(self.config.poll_interval),
                    _ => self.config.poll_interval,
                },
                n => Duration::from_millis(100 * (1 << n.min(8))).min(Duration::from_secs(30)),
            };
            tokio::select! {
                _ = wakeups.changed() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => {}
            }
        }
        running.abort_all();
        while running.join_next().await.is_some() {}
        let held = self.held();
        match self.queue.release(&self.config.worker_id, &held).await {
            Ok(n) if n > 0 => tracing::info!(jobs = n, "gave unfinished generation jobs back"),
            Ok(_) => {}
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "could not give generation jobs back; they return when their leases expire"
            ),
        }
        let _ = leases.await;
        tracing::info!(worker = %self.config.worker_id, "generation worker stopped");
    }

    /// Renews this worker's leases and returns other workers' expired ones, a few times per
    /// lease period.
    async fn keep_leases(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let every = (self.config.lease / 3).max(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            let held = self.held();
            match self
                .queue
                .renew(&self.config.worker_id, &held, self.config.lease)
                .await
            {
                Ok(lost) if !lost.is_empty() => tracing::warn!(
                    jobs = lost.len(),
                    "generation leases were lost (the database thought this worker gone); \
                     another worker may generate them again, and the log keeps one result"
                ),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot renew generation leases"
                    )
                }
            }
            match self.queue.reap_expired().await {
                Ok(n) if n > 0 => {
                    tracing::warn!(jobs = n, "returned generation jobs of a lost worker")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot return expired generation leases"
                ),
            }
        }
    }

    async fn process(&self, job: ClaimedJob) {
        let id = job.generation_id;
        if job.attempt > self.config.max_attempts {
            // Its worker died every time (a lease expired on the last attempt).
            let error = format!(
                "gave up after {} attempts; the last: {}",
                self.config.max_attempts,
                job.last_error.as_deref().unwrap_or("unknown")
            );
            self.record_failure(&job, &error, true).await;
            return;
        }
        let work = match self.ledger.work(&job).await {
            Ok(Some(work)) => work,
            Ok(None) => {
                if let Err(error) = self.queue.mark_done(id).await {
                    tracing::warn!(generation = %id, error = format!("{error:#}"), "cannot end a finished job");
                }
                return;
            }
            Err(error) => {
                self.retry_or_give_up(&job, &format!("reading the generation: {error:#}"))
                    .await;
                return;
            }
        };
        let result = self
            .generator
            .generate(vec![work.input])
            .await
            .pop()
            .unwrap_or_else(|| {
                Err(GenerationError::Transient(
                    "the backend returned no result".into(),
                ))
            });
        match result {
            Ok(output) => {
                let offer = self.review(output, &work.rules);
                tracing::debug!(generation = %id, flags = ?offer.flags, "offer generated");
                if let Err(error) = self.ledger.record_offer(&job, offer).await {
                    self.retry_or_give_up(&job, &format!("recording the offer: {error:#}"))
                        .await;
                }
            }
            Err(GenerationError::Permanent(error)) => {
                self.record_failure(&job, &error, true).await;
            }
            Err(GenerationError::Transient(error)) => {
                self.retry_or_give_up(&job, &error).await;
            }
        }
    }

    fn review(&self, output: GenerationOutput, rules: &ChannelRules) -> Offer {
        let reviewed = review_offer(&output.text, rules);
        let mut flags = reviewed.flags;
        if output.stopped_by_length {
            flags.push(CUT_AT_MAX_TOKENS.to_string());
        }
        Offer {
            text: reviewed.text,
            model: self.generator.model_name(),
            prompt_tokens: output.prompt_tokens,
            completion_tokens: output.completion_tokens,
            duration_ms: output.duration_ms,
            flags,
        }
    }

    async fn retry_or_give_up(&self, job: &ClaimedJob, error: &str) {
        if job.attempt >= self.config.max_attempts {
            let error = format!("gave up after {} attempts; the last: {error}", job.attempt);
            self.record_failure(job, &error, true).await;
            return;
        }
        tracing::warn!(generation = %job.generation_id, attempt = job.attempt, %error, "generation failed; will retry");
        self.record_failure(job, error, false).await;
        let delay = self.config.backoff.delay(job.attempt);
        if let Err(retry) = self
            .queue
            .retry_later(&self.config.worker_id, job.generation_id, error, delay)
            .await
        {
            tracing::warn!(generation = %job.generation_id, error = format!("{retry:#}"),
                "cannot put the job back; it returns when its lease expires");
        }
    }

    async fn record_failure(&self, job: &ClaimedJob, error: &str, permanent: bool) {
        if permanent {
            tracing::warn!(generation = %job.generation_id, %error, "generation failed for good");
        }
        if let Err(failure) = self.ledger.record_failure(job, error, permanent).await {
            // The job stays leased; when the lease expires it is tried again.
            tracing::error!(generation = %job.generation_id, error = format!("{failure:#}"),
                "cannot record a generation failure");
        }
    }
}
