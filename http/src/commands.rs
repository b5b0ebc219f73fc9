//! The command side: runs a command against an aggregate through cqrs-es's pure event store,
//! with the event metadata, retries on concurrent writes, and the consistency token a client
//! can hand to later queries.
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use domain::catalog::{Product, SalesChannel};
use domain::client_request::ClientRequest;
use domain::metadata::EventMetadata;
use domain::project::Project;
use domain::user::User;
use domain::DomainError;
use projections::{ConsistencyToken, Engine};
use rand::Rng;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::event_store::{AggregateStore, AppendError, Appender, Recency};

/// How far behind other processes' writes a remembered aggregate may be when it alone decides
/// something: who the caller is, what they may do, or that a command changes nothing.
pub const FRESH: Duration = Duration::from_secs(1);

const TURN_STRIPES: usize = 1024;

/// Retries after the first attempt when another writer got to the aggregate first.
const CONFLICT_RETRIES: u32 = 3;

pub struct CommandBus {
    engine: Arc<Engine>,
    /// Commands on one aggregate take turns in this process, so that they do not refuse each
    /// other's sequence numbers; striped, so the locks stay few.
    turns: Vec<tokio::sync::Mutex<()>>,
    pub products: AggregateStore<Product>,
    pub channels: AggregateStore<SalesChannel>,
    pub projects: AggregateStore<Project>,
    pub requests: AggregateStore<ClientRequest>,
    pub users: AggregateStore<User>,
}

/// The aggregate types the bus stores, so that `load::<A>` finds the right store.
pub trait Stored: Aggregate<Error = DomainError, Services = ()> + Clone {
    fn store(bus: &CommandBus) -> &AggregateStore<Self>;
}

macro_rules! stored {
    ($aggregate:ty, $field:ident) => {
        impl Stored for $aggregate {
            fn store(bus: &CommandBus) -> &AggregateStore<Self> {
                &bus.$field
            }
        }
    };
}
stored!(Product, products);
stored!(SalesChannel, channels);
stored!(Project, projects);
stored!(ClientRequest, requests);
stored!(User, users);

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
        let appender = Appender::start(pool.clone(), Arc::clone(&engine));
        CommandBus {
            products: AggregateStore::new(pool.clone(), appender.clone()),
            channels: AggregateStore::new(pool.clone(), appender.clone()),
            projects: AggregateStore::new(pool.clone(), appender.clone()),
            requests: AggregateStore::new(pool.clone(), appender.clone()),
            users: AggregateStore::new(pool, appender),
            engine,
            turns: (0..TURN_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    fn turn(&self, kind: &str, id: Uuid) -> &tokio::sync::Mutex<()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (kind, id).hash(&mut hasher);
        &self.turns[(hasher.finish() % TURN_STRIPES as u64) as usize]
    }

    /// Runs `command` on aggregate `id`, retrying with jitter when a writer in another process
    /// wins the race, and answers 409 once the retries are spent.
    pub async fn execute<A>(
        &self,
        store: &AggregateStore<A>,
        id: Uuid,
        command: A::Command,
        metadata: &EventMetadata,
    ) -> Result<Executed, ApiError>
    where
        A: Aggregate<Error = DomainError, Services = ()> + Clone,
        A::Command: Clone,
    {
        let _turn = self.turn(A::TYPE, id).lock().await;
        let metadata = metadata.to_map();
        let mut attempt = 0;
        // Appends are checked against the log, so a remembered or presumed state may decide a
        // change; an answer that writes nothing must rest on a recent reading of the log.
        let mut wanted = Recency::OrPresumedNew;
        loop {
            let before = store.current(id, wanted).await?;
            let mut after = before.aggregate.clone();
            let sink = EventSink::default();
            let decided = after.handle(command.clone(), &(), &sink).await;
            let events = sink.collect().await;
            if (decided.is_err() || events.is_empty())
                && (before.presumed || before.confirmed.elapsed() > FRESH)
            {
                wanted = Recency::AtMost(Duration::ZERO);
                continue;
            }
            match decided {
                Err(e) => return Err(e.into()),
                Ok(()) if events.is_empty() => {
                    let token = match before.token {
                        Some(token) => Some(token),
                        None => self.newest_token(A::TYPE, id).await?,
                    };
                    return Ok(Executed {
                        token,
                        changed: false,
                    });
                }
                Ok(()) => {}
            }
            match store.append(id, &before, after, events, &metadata).await {
                Ok(token) => {
                    return Ok(Executed {
                        token: Some(token),
                        changed: true,
                    })
                }
                Err(AppendError::Conflict) if before.presumed => {
                    // The aggregate was not new after all: decide again on what the log holds.
                    wanted = Recency::AtMost(Duration::ZERO);
                }
                Err(AppendError::Conflict) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    wanted = Recency::AtMost(Duration::ZERO);
                    let jitter = rand::rng().random_range(1..=10u64 * (1 << attempt));
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(AppendError::Conflict) => {
                    return Err(ApiError::Conflict {
                        code: "concurrent_modification",
                        message: format!(
                            "{} {id} was changed by others {} times in a row; reload and retry",
                            A::TYPE,
                            CONFLICT_RETRIES + 1
                        ),
                    })
                }
                Err(AppendError::Database(e)) => {
                    tracing::error!(error = %e, "event store unavailable");
                    return Err(ApiError::Unavailable(
                        "the event store is unavailable; try again shortly".into(),
                    ));
                }
            }
        }
    }

    async fn newest_token(
        &self,
        kind: &str,
        id: Uuid,
    ) -> Result<Option<ConsistencyToken>, ApiError> {
        Ok(self
            .engine
            .token_for_aggregate(kind, &id.to_string(), "")
            .await?
            .map(|(token, _)| token))
    }

    /// An aggregate for facts that never change once recorded (a client request's project),
    /// from this process's memory when it has one.
    pub async fn recorded<A: Stored>(&self, id: Uuid) -> Result<A, ApiError> {
        Ok(A::store(self).current(id, Recency::AnyAge).await?.aggregate)
    }

    /// A user for authentication: at most [`FRESH`] old.
    pub async fn user(&self, id: Uuid) -> Result<User, ApiError> {
        self.load(id).await
    }

    /// The current state of an aggregate for decisions that span aggregates: consistent with
    /// this process's own writes, and at most [`FRESH`] behind other processes'.
    pub async fn load<A: Stored>(&self, id: Uuid) -> Result<A, ApiError> {
        Ok(A::store(self)
            .current(id, Recency::AtMost(FRESH))
            .await?
            .aggregate)
    }
}
