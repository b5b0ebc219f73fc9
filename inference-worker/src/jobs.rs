//! The generation queue in PostgreSQL (`generation_jobs`, migration 0005): claims under a
//! lease, lease renewal, retries later, and the reaper. Jobs are created and ended by a trigger
//! on the event log, never here, so the queue cannot disagree with the log about what exists
//! and what is finished.
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::PgPool;
use uuid::Uuid;

/// A job this worker holds until its lease runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    pub generation_id: Uuid,
    pub request_id: Uuid,
    /// 1 for the first try; counts claims, so a worker that dies holding the job used one.
    pub attempt: u32,
    /// Why the previous attempt failed, if one did.
    pub last_error: Option<String>,
    /// The `GenerationRequested` event's place in the request's stream.
    pub requested_sequence: i64,
    /// The HTTP request (or CLI run) that asked for the generation.
    pub correlation_id: Option<String>,
}

/// A job that failed for good, for admins.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct DeadJob {
    pub generation_id: Uuid,
    pub request_id: Uuid,
    pub project_id: Uuid,
    pub channel_id: Uuid,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub died_at: DateTime<Utc>,
}

/// Jobs of one project channel by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChannelProgress {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
}

/// How retries are spaced: exponential from `base`, capped at `max`, with ±50 % jitter so
/// that jobs failing together do not come back together.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let plain = self.base.saturating_mul(1u32 << exponent).min(self.max);
        plain.mul_f64(rand::rng().random_range(0.5..1.5))
    }
}

#[derive(Clone)]
pub struct JobQueue {
    pool: PgPool,
}

impl JobQueue {
    pub fn new(pool: PgPool) -> Self {
        JobQueue { pool }
    }

    /// Takes up to `limit` ready jobs, oldest first (so a batch's clients, which share a prompt
    /// prefix, are generated together), leased to `worker` for `lease`.
    pub async fn claim(
        &self,
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> anyhow::Result<Vec<ClaimedJob>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        #[allow(clippy::type_complexity)]
        let rows: Vec<(Uuid, Uuid, i32, Option<String>, i64, Option<String>)> = sqlx::query_as(
            "WITH ready AS (
                 SELECT generation_id FROM generation_jobs
                  WHERE state = 'queued' AND run_after <= now()
                  ORDER BY run_after, created_at
                  LIMIT $1
                  FOR UPDATE SKIP LOCKED)
             UPDATE generation_jobs j
                SET state = 'running', attempts = j.attempts + 1, leased_by = $2,
                    lease_until = now() + make_interval(secs => $3), updated_at = now()
               FROM ready WHERE j.generation_id = ready.generation_id
             RETURNING j.generation_id, j.request_id, j.attempts, j.last_error, j.requested_sequence,
                       j.correlation_id",
        )
        .bind(limit as i64)
        .bind(worker)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .context("claiming generation jobs")?;
        let jobs: Vec<ClaimedJob> = rows
            .into_iter()
            .map(
                |(
                    generation_id,
                    request_id,
                    attempts,
                    last_error,
                    requested_sequence,
                    correlation_id,
                )| {
                    ClaimedJob {
                        generation_id,
                        request_id,
                        attempt: attempts.max(1) as u32,
                        last_error,
                        requested_sequence,
                        correlation_id,
                    }
                },
            )
            .collect();
        Ok(jobs)
    }

    /// Extends the leases `worker` still holds; returns the jobs it no longer holds (the reaper
    /// gave them to someone else), whose results may still be recorded: the log takes one.
    pub async fn renew(
        &self,
        worker: &str,
        jobs: &[Uuid],
        lease: Duration,
    ) -> anyhow::Result<Vec<Uuid>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let renewed: Vec<(Uuid,)> = sqlx::query_as(
            "UPDATE generation_jobs SET lease_until = now() + make_interval(secs => $3), updated_at = now()
              WHERE generation_id = ANY($1) AND leased_by = $2 AND state = 'running'
             RETURNING generation_id",
        )
        .bind(jobs)
        .bind(worker)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .context("renewing generation leases")?;
        Ok(jobs
            .iter()
            .filter(|id| !renewed.iter().any(|(r,)| r == *id))
            .copied()
            .collect())
    }

    /// Puts a job that failed in a retryable way back in the queue after `delay`, if `worker`
    /// still holds it.
    pub async fn retry_later(
        &self,
        worker: &str,
        generation_id: Uuid,
        error: &str,
        delay: Duration,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE generation_jobs
                SET state = 'queued', run_after = now() + make_interval(secs => $4), leased_by = NULL,
                    lease_until = NULL, last_error = $3, updated_at = now()
              WHERE generation_id = $1 AND leased_by = $2 AND state = 'running'",
        )
        .bind(generation_id)
        .bind(worker)
        .bind(error)
        .bind(delay.as_secs_f64())
        .execute(&self.pool)
        .await
        .with_context(|| format!("putting generation {generation_id} back in the queue"))?;
        Ok(())
    }

    /// Gives back the jobs a stopping worker holds, without counting the attempt: nothing
    /// went wrong with them.
    pub async fn release(&self, worker: &str, jobs: &[Uuid]) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE generation_jobs
                SET state = 'queued', attempts = greatest(attempts - 1, 0), run_after = now(),
                    leased_by = NULL, lease_until = NULL, updated_at = now()
              WHERE generation_id = ANY($1) AND leased_by = $2 AND state = 'running'",
        )
        .bind(jobs)
        .bind(worker)
        .execute(&self.pool)
        .await
        .context("giving back generation jobs")?;
        Ok(done.rows_affected())
    }

    /// Ends a job whose generation the log already shows finished (its trigger ran before
    /// this queue existed, or the job was claimed after its result was recorded).
    pub async fn mark_done(&self, generation_id: Uuid) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE generation_jobs SET state = 'done', leased_by = NULL, lease_until = NULL, updated_at = now()
              WHERE generation_id = $1 AND state = 'running'",
        )
        .bind(generation_id)
        .execute(&self.pool)
        .await
        .with_context(|| format!("ending generation job {generation_id}"))?;
        Ok(())
    }

    /// Returns the jobs of workers that stopped renewing their leases (crashed, killed, cut
    /// off from the database) to the queue. Any worker may run it; returns how many came back.
    pub async fn reap_expired(&self) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE generation_jobs
                SET state = 'queued', run_after = now(),
                    last_error = 'the worker ' || coalesce(leased_by, '?') || ' stopped renewing its lease',
                    leased_by = NULL, lease_until = NULL, updated_at = now()
              WHERE state = 'running' AND lease_until < now()",
        )
        .execute(&self.pool)
        .await
        .context("returning expired generation leases")?;
        Ok(done.rows_affected())
    }

    /// When the next queued job becomes ready, if any is queued.
    pub async fn next_ready_in(&self) -> anyhow::Result<Option<Duration>> {
        let (seconds,): (Option<f64>,) = sqlx::query_as(
            "SELECT extract(epoch FROM min(run_after) - now())::float8 FROM generation_jobs WHERE state = 'queued'",
        )
        .fetch_one(&self.pool)
        .await
        .context("looking for the next generation job")?;
        Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0))))
    }

    pub async fn dead_jobs(&self, limit: i64, offset: i64) -> anyhow::Result<(Vec<DeadJob>, i64)> {
        let jobs: Vec<DeadJob> = sqlx::query_as(
            "SELECT generation_id, request_id, project_id, channel_id, attempts, last_error, created_at,
                    updated_at AS died_at
               FROM generation_jobs WHERE state = 'dead'
              ORDER BY updated_at DESC, generation_id LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .context("listing dead generation jobs")?;
        let (total,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM generation_jobs WHERE state = 'dead'")
                .fetch_one(&self.pool)
                .await
                .context("counting dead generation jobs")?;
        Ok((jobs, total))
    }

    /// The job of one generation: its request and whether it is dead.
    pub async fn job(&self, generation_id: Uuid) -> anyhow::Result<Option<(Uuid, String)>> {
        sqlx::query_as("SELECT request_id, state FROM generation_jobs WHERE generation_id = $1")
            .bind(generation_id)
            .fetch_optional(&self.pool)
            .await
            .with_context(|| format!("reading generation job {generation_id}"))
    }

    pub async fn channel_progress(
        &self,
        project_id: Uuid,
        channel_id: Uuid,
    ) -> anyhow::Result<ChannelProgress> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, count(*) FROM generation_jobs WHERE project_id = $1 AND channel_id = $2 GROUP BY state",
        )
        .bind(project_id)
        .bind(channel_id)
        .fetch_all(&self.pool)
        .await
        .context("counting a channel's generation jobs")?;
        let mut progress = ChannelProgress::default();
        for (state, count) in rows {
            match state.as_str() {
                "queued" => progress.queued = count,
                "running" => progress.running = count,
                "done" => progress.done = count,
                _ => progress.failed += count,
            }
        }
        Ok(progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_up_to_the_cap_with_jitter() {
        let backoff = Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        for _ in 0..100 {
            let first = backoff.delay(1);
            assert!(first >= Duration::from_secs(1) && first <= Duration::from_secs(3));
            let third = backoff.delay(3);
            assert!(third >= Duration::from_secs(4) && third <= Duration::from_secs(12));
            let late = backoff.delay(30);
            assert!(late >= Duration::from_secs(30) && late <= Duration::from_secs(90));
        }
        let spread: std::collections::BTreeSet<u128> =
            (0..20).map(|_| backoff.delay(2).as_millis()).collect();
        assert!(spread.len() > 1, "jitter spreads retries");
    }
}
