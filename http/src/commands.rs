//! The command side: runs a command against an aggregate through cqrs-es's pure event store,
//! with the event metadata, retries on concurrent writes, and the consistency token a client
//! can hand to later queries.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cqrs_es::{Aggregate, AggregateError};
use domain::catalog::{Product, SalesChannel};
use domain::client_request::ClientRequest;
use domain::metadata::EventMetadata;
use domain::project::Project;
use domain::user::User;
use domain::DomainError;
use postgres_es::{postgres_cqrs, PostgresCqrs};
use projections::{ConsistencyToken, Engine};
use rand::Rng;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;

/// How stale a user may be when authentication reads it from this process's cache.
pub const USER_CACHE_TTL: Duration = Duration::from_secs(1);

fn poisoned<T>(_: std::sync::PoisonError<T>) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("the user cache lock is poisoned"))
}

/// Retries after the first attempt when another writer got to the aggregate first.
const CONFLICT_RETRIES: u32 = 3;

pub struct CommandBus {
    pool: PgPool,
    engine: Arc<Engine>,
    /// Users as authentication last saw them: every request needs one, and most requests are
    /// not user changes. Changes made through this process drop the entry at once; changes
    /// made by another process are seen within [`USER_CACHE_TTL`].
    users_seen: Mutex<HashMap<Uuid, (User, Instant)>>,
    pub products: PostgresCqrs<Product>,
    pub channels: PostgresCqrs<SalesChannel>,
    pub projects: PostgresCqrs<Project>,
    pub requests: PostgresCqrs<ClientRequest>,
    pub users: PostgresCqrs<User>,
}

/// What a command did.
#[derive(Debug, Clone, Copy)]
pub struct Executed {
    /// The newest event of the aggregate: wait for it to read your write.
    pub token: Option<ConsistencyToken>,
    /// Whether this command recorded anything (false for an idempotent repeat).
    pub changed: bool,
}

/// The body of a command's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub id: Uuid,
    /// Pass it as `X-Consistency-Token` (or `?consistency_token=`) to read this write.
    pub consistency_token: Option<String>,
}

impl Executed {
    pub fn accepted(&self, id: Uuid) -> Accepted {
        Accepted {
            id,
            consistency_token: self.token.map(|t| t.to_string()),
        }
    }
}

impl CommandBus {
    pub fn new(pool: PgPool, engine: Arc<Engine>) -> Self {
        // Pure event-store mode: no snapshots (cqrs-es 0.5 applies events twice when it
        // snapshots) and no in-process views (they lose updates); the read models are the
        // projections' business.
        CommandBus {
            products: postgres_cqrs(pool.clone(), vec![], ()),
            channels: postgres_cqrs(pool.clone(), vec![], ()),
            projects: postgres_cqrs(pool.clone(), vec![], ()),
            requests: postgres_cqrs(pool.clone(), vec![], ()),
            users: postgres_cqrs(pool.clone(), vec![], ()),
            pool,
            engine,
            users_seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Runs `command` on aggregate `id`, retrying with jitter when a concurrent writer wins the
    /// race, and answers 409 once the retries are spent.
    pub async fn execute<A>(
        &self,
        cqrs: &PostgresCqrs<A>,
        id: Uuid,
        command: A::Command,
        metadata: &EventMetadata,
    ) -> Result<Executed, ApiError>
    where
        A: Aggregate<Error = DomainError>,
        A::Command: Clone,
    {
        let aggregate_id = id.to_string();
        if A::TYPE == User::TYPE {
            self.forget_user(id);
        }
        let mut attempt = 0;
        loop {
            let result = cqrs
                .execute_with_metadata(&aggregate_id, command.clone(), metadata.to_map())
                .await;
            match result {
                Ok(()) => break,
                Err(AggregateError::AggregateConflict) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    let jitter = rand::rng().random_range(1..=10u64 * (1 << attempt));
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(AggregateError::AggregateConflict) => {
                    return Err(ApiError::Conflict {
                        code: "concurrent_modification",
                        message: format!(
                            "{} {id} was changed by others {} times in a row; reload and retry",
                            A::TYPE,
                            CONFLICT_RETRIES + 1
                        ),
                    })
                }
                Err(AggregateError::UserError(e)) => return Err(e.into()),
                Err(AggregateError::DatabaseConnectionError(e)) => {
                    tracing::error!(error = %e, "event store unavailable");
                    return Err(ApiError::Unavailable(
                        "the event store is unavailable; try again shortly".into(),
                    ));
                }
                Err(e) => {
                    return Err(ApiError::Internal(anyhow::anyhow!("{} {id}: {e}", A::TYPE)));
                }
            }
        }
        if A::TYPE == User::TYPE {
            // Again after the commit: a request may have cached the old state meanwhile.
            self.forget_user(id);
        }
        let found = self
            .engine
            .token_for_aggregate(A::TYPE, &aggregate_id, &metadata.command_id.to_string())
            .await?;
        if found.is_some_and(|(_, ours)| ours) {
            self.engine.events_committed();
        }
        Ok(Executed {
            token: found.map(|(token, _)| token),
            changed: found.is_some_and(|(_, ours)| ours),
        })
    }

    /// A user for authentication: from the log, at most [`USER_CACHE_TTL`] old.
    pub async fn user(&self, id: Uuid) -> Result<User, ApiError> {
        if let Some((user, seen)) = self.users_seen.lock().map_err(poisoned)?.get(&id) {
            if seen.elapsed() < USER_CACHE_TTL {
                return Ok(user.clone());
            }
        }
        let user: User = self.load(id).await?;
        let mut seen = self.users_seen.lock().map_err(poisoned)?;
        if seen.len() >= 10_000 {
            seen.clear();
        }
        seen.insert(id, (user.clone(), Instant::now()));
        Ok(user)
    }

    fn forget_user(&self, id: Uuid) {
        if let Ok(mut seen) = self.users_seen.lock() {
            seen.remove(&id);
        }
    }

    /// The current state of an aggregate, straight from the log (consistent, unlike the read
    /// models), for decisions that span aggregates.
    pub async fn load<A: Aggregate>(&self, id: Uuid) -> Result<A, ApiError> {
        let payloads: Vec<(serde_json::Value,)> = sqlx::query_as(
            "SELECT payload FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut aggregate = A::default();
        for (payload,) in payloads {
            let event: A::Event = serde_json::from_value(payload).map_err(|e| {
                anyhow::anyhow!("{} {id} has an event that does not decode: {e}", A::TYPE)
            })?;
            aggregate.apply(event);
        }
        Ok(aggregate)
    }
}
