//! The write side's event store.
//!
//! Aggregates are read through postgres-es's repository and then kept in memory; new events are
//! appended by a group-commit appender that writes postgres-es's row format. postgres-es appends
//! each command in its own transaction after loading the aggregate again (four round trips and
//! one WAL flush per command), which held commands to under a tenth of what the database can
//! commit. Here concurrent commands share one statement and one flush, and an aggregate this
//! process has seen needs no read at all.
//!
//! Correctness does not rest on the memory copy: every append names the sequence numbers it
//! expects to take, and the log's primary key refuses a sequence another writer took first.
//! A refused append drops the copy, and the command runs again on the log's state.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope};
use postgres_es::PostgresEventRepository;
use projections::{ConsistencyToken, Engine};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Most commands one append statement carries.
const MAX_BATCH: usize = 512;
/// Append statements in flight at once: while one waits for its WAL flush the next gathers.
const APPENDERS: usize = 2;
/// Aggregates kept in memory per type before the copies are dropped and read again.
const MAX_CACHED: usize = 100_000;

/// One event as the `events` table holds it.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
}

#[derive(Debug)]
pub enum AppendError {
    /// Another writer took one of the sequence numbers first.
    Conflict,
    Database(sqlx::Error),
}

struct Append {
    rows: Vec<EventRow>,
    reply: oneshot::Sender<Result<ConsistencyToken, AppendError>>,
}

/// Appends the events of concurrent commands together: each command's events are recorded
/// atomically, and one conflicting command does not hold up the others.
#[derive(Clone)]
pub struct Appender {
    sender: mpsc::Sender<Append>,
}

impl Appender {
    pub fn start(pool: PgPool, engine: Arc<Engine>) -> Self {
        let (sender, receiver) = mpsc::channel::<Append>(MAX_BATCH * APPENDERS * 4);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..APPENDERS {
            tokio::spawn(append_batches(
                pool.clone(),
                Arc::clone(&engine),
                Arc::clone(&receiver),
            ));
        }
        Appender { sender }
    }

    /// Records one command's events; the token names the last of them.
    pub async fn append(&self, rows: Vec<EventRow>) -> Result<ConsistencyToken, AppendError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || AppendError::Database(sqlx::Error::PoolClosed);
        self.sender
            .send(Append { rows, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn append_batches(
    pool: PgPool,
    engine: Arc<Engine>,
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Append>>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = receiver.lock().await.recv_many(&mut batch, MAX_BATCH).await;
        if received == 0 {
            return; // every sender is gone: the server has stopped
        }
        let rows: Vec<&EventRow> = batch.iter().flat_map(|a| a.rows.iter()).collect();
        match insert(&pool, &rows).await {
            Ok(recorded) => {
                engine.events_committed();
                for append in batch.drain(..) {
                    let token = token_of(&append.rows, &recorded);
                    let _ = append.reply.send(token);
                }
            }
            Err(e) if is_unique_violation(&e) && batch.len() > 1 => {
                // Someone's sequence number was taken: record the others one by one, so that
                // only the late command is refused.
                let mut any = false;
                for append in batch.drain(..) {
                    let rows: Vec<&EventRow> = append.rows.iter().collect();
                    let outcome = match insert(&pool, &rows).await {
                        Ok(recorded) => {
                            any = true;
                            token_of(&append.rows, &recorded)
                        }
                        Err(e) if is_unique_violation(&e) => Err(AppendError::Conflict),
                        Err(e) => Err(AppendError::Database(e)),
                    };
                    let _ = append.reply.send(outcome);
                }
                if any {
                    engine.events_committed();
                }
            }
            Err(e) if is_unique_violation(&e) => {
                for append in batch.drain(..) {
                    let _ = append.reply.send(Err(AppendError::Conflict));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, commands = batch.len(), "appending events failed");
                let message = e.to_string();
                for append in batch.drain(..) {
                    let _ = append
                        .reply
                        .send(Err(AppendError::Database(sqlx::Error::Protocol(
                            message.clone(),
                        ))));
                }
            }
        }
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.code().as_deref() == Some("23505"))
}

/// Where each recorded event landed, by (aggregate type, aggregate id, sequence).
type Recorded = HashMap<(String, String, i64), ConsistencyToken>;

fn token_of(rows: &[EventRow], recorded: &Recorded) -> Result<ConsistencyToken, AppendError> {
    rows.iter()
        .filter_map(|r| {
            recorded.get(&(
                r.aggregate_type.to_string(),
                r.aggregate_id.clone(),
                r.sequence,
            ))
        })
        .max_by_key(|t| t.global_position)
        .copied()
        .ok_or_else(|| {
            AppendError::Database(sqlx::Error::Protocol(
                "the log did not return the appended events".into(),
            ))
        })
}

/// One statement, so one transaction and one WAL flush for the whole batch.
async fn insert(pool: &PgPool, rows: &[&EventRow]) -> Result<Recorded, sqlx::Error> {
    let mut types = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    let mut sequences = Vec::with_capacity(rows.len());
    let mut event_types = Vec::with_capacity(rows.len());
    let mut versions = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    let mut metadata = Vec::with_capacity(rows.len());
    for row in rows {
        types.push(row.aggregate_type);
        ids.push(row.aggregate_id.as_str());
        sequences.push(row.sequence);
        event_types.push(row.event_type.as_str());
        versions.push(row.event_version.as_str());
        payloads.push(&row.payload);
        metadata.push(&row.metadata);
    }
    let recorded: Vec<(String, String, i64, String, i64)> = sqlx::query_as(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
         RETURNING aggregate_type, aggregate_id, sequence, transaction_id::text, global_position",
    )
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .bind(&event_types)
    .bind(&versions)
    .bind(&payloads)
    .bind(&metadata)
    .fetch_all(pool)
    .await?;
    recorded
        .into_iter()
        .map(|(kind, id, sequence, tx, position)| {
            let transaction_id = tx.parse().map_err(|_| {
                sqlx::Error::Protocol(format!("transaction id {tx} is not a number"))
            })?;
            Ok((
                (kind, id, sequence),
                ConsistencyToken {
                    transaction_id,
                    global_position: position,
                },
            ))
        })
        .collect()
}

/// An aggregate as this process knows it.
#[derive(Debug, Clone)]
pub struct Known<A> {
    pub aggregate: A,
    /// Events applied so far: the next event takes `version + 1`.
    pub version: usize,
    /// The newest event's place in the log, when known without asking.
    pub token: Option<ConsistencyToken>,
    /// When this state was last read from the log or written to it by this process.
    pub confirmed: Instant,
    /// Never seen by this process and guessed to be new, unread: a guess may decide a change
    /// (the log refuses it if the aggregate exists) but never an answer that writes nothing.
    pub presumed: bool,
}

/// How recent a copy of an aggregate must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recency {
    /// Any copy this process has of a created aggregate: for facts that never change once
    /// recorded.
    AnyAge,
    /// A copy confirmed at most this long ago, else the log.
    AtMost(Duration),
    /// Any copy this process has, else an empty aggregate without reading: creating an
    /// aggregate then needs no read, and the log refuses the guess when it is wrong.
    OrPresumedNew,
}

/// One aggregate type's events: loads, remembers, appends.
pub struct AggregateStore<A: Aggregate> {
    repository: PostgresEventRepository,
    appender: Appender,
    known: Mutex<HashMap<Uuid, Known<A>>>,
}

impl<A> AggregateStore<A>
where
    A: Aggregate + Clone,
{
    pub fn new(pool: PgPool, appender: Appender) -> Self {
        AggregateStore {
            repository: PostgresEventRepository::new(pool),
            appender,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The aggregate as `wanted` allows: from memory, presumed, or read from the log.
    pub async fn current(&self, id: Uuid, wanted: Recency) -> anyhow::Result<Known<A>> {
        if let Some(known) = self.remembered(id) {
            let recent_enough = match wanted {
                // An aggregate not yet created may have been created since.
                Recency::AnyAge => known.version > 0,
                Recency::OrPresumedNew => true,
                Recency::AtMost(age) => known.confirmed.elapsed() <= age,
            };
            if recent_enough {
                return Ok(known);
            }
        } else if wanted == Recency::OrPresumedNew {
            return Ok(Known {
                aggregate: A::default(),
                version: 0,
                token: None,
                confirmed: Instant::now(),
                presumed: true,
            });
        }
        let confirmed = Instant::now();
        let serialized = self
            .repository
            .get_events::<A>(&id.to_string())
            .await
            .map_err(|e| anyhow::anyhow!("loading {} {id}: {e}", A::TYPE))?;
        let mut aggregate = A::default();
        let version = serialized.len();
        for event in serialized {
            let envelope = EventEnvelope::<A>::try_from(event).map_err(|e| {
                anyhow::anyhow!("{} {id} has an event that does not decode: {e}", A::TYPE)
            })?;
            aggregate.apply(envelope.payload);
        }
        let known = Known {
            aggregate,
            version,
            token: None,
            confirmed,
            presumed: false,
        };
        self.remember(id, known.clone());
        Ok(known)
    }

    /// Appends `events`, decided on `before`; `after` is the aggregate with them applied.
    pub async fn append(
        &self,
        id: Uuid,
        before: &Known<A>,
        after: A,
        events: Vec<A::Event>,
        metadata: &HashMap<String, String>,
    ) -> Result<ConsistencyToken, AppendError> {
        let aggregate_id = id.to_string();
        let metadata = serde_json::to_value(metadata)
            .map_err(|e| AppendError::Database(sqlx::Error::Encode(Box::new(e))))?;
        let mut rows = Vec::with_capacity(events.len());
        for (n, event) in events.iter().enumerate() {
            let serialized = serde_json::to_value(event)
                .map_err(|e| AppendError::Database(sqlx::Error::Encode(Box::new(e))))?;
            rows.push(EventRow {
                aggregate_type: A::TYPE,
                aggregate_id: aggregate_id.clone(),
                sequence: (before.version + n + 1) as i64,
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serialized,
                metadata: metadata.clone(),
            });
        }
        let confirmed = Instant::now();
        match self.appender.append(rows).await {
            Ok(token) => {
                self.remember(
                    id,
                    Known {
                        aggregate: after,
                        version: before.version + events.len(),
                        token: Some(token),
                        confirmed,
                        presumed: false,
                    },
                );
                Ok(token)
            }
            Err(e) => {
                self.forget(id);
                Err(e)
            }
        }
    }

    pub fn forget(&self, id: Uuid) {
        if let Ok(mut known) = self.known.lock() {
            known.remove(&id);
        }
    }

    fn remembered(&self, id: Uuid) -> Option<Known<A>> {
        self.known.lock().ok()?.get(&id).cloned()
    }

    fn remember(&self, id: Uuid, state: Known<A>) {
        if let Ok(mut known) = self.known.lock() {
            match known.get(&id) {
                // A read that started before a newer append finished must not undo it.
                Some(newer) if newer.version > state.version => {}
                Some(_) => {
                    known.insert(id, state);
                }
                None => {
                    if known.len() >= MAX_CACHED {
                        known.clear();
                    }
                    known.insert(id, state);
                }
            }
        }
    }
}

/// Bulk path for imports: records the first events of aggregates that may already exist, in the
/// caller's transaction. An aggregate the log already has keeps its history (the insert skips
/// it); the answer names the aggregates this statement created. Callers wake the subscribers
/// (`Engine::events_committed`) once they commit.
pub async fn insert_new_in(
    tx: &mut sqlx::PgConnection,
    rows: &[&EventRow],
) -> Result<Vec<String>, sqlx::Error> {
    let columns = Columns::of(rows);
    sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
         ON CONFLICT (aggregate_type, aggregate_id, sequence) DO NOTHING
         RETURNING aggregate_id",
    )
    .bind(&columns.types)
    .bind(&columns.ids)
    .bind(&columns.sequences)
    .bind(&columns.event_types)
    .bind(&columns.versions)
    .bind(&columns.payloads)
    .bind(&columns.metadata)
    .fetch_all(&mut *tx)
    .await
}

/// Records events in the caller's transaction (a taken sequence number fails it); the token
/// names the last of them.
pub async fn insert_in(
    tx: &mut sqlx::PgConnection,
    rows: &[&EventRow],
) -> Result<Option<ConsistencyToken>, sqlx::Error> {
    let columns = Columns::of(rows);
    let recorded: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
         RETURNING transaction_id::text, global_position",
    )
    .bind(&columns.types)
    .bind(&columns.ids)
    .bind(&columns.sequences)
    .bind(&columns.event_types)
    .bind(&columns.versions)
    .bind(&columns.payloads)
    .bind(&columns.metadata)
    .fetch_all(&mut *tx)
    .await?;
    let mut newest: Option<ConsistencyToken> = None;
    for (tx_id, position) in recorded {
        let transaction_id = tx_id.parse().map_err(|_| {
            sqlx::Error::Protocol(format!("transaction id {tx_id} is not a number"))
        })?;
        let token = ConsistencyToken {
            transaction_id,
            global_position: position,
        };
        if newest.is_none_or(|n| n.global_position < position) {
            newest = Some(token);
        }
    }
    Ok(newest)
}

/// Event rows as the column arrays one UNNEST insert binds.
struct Columns<'a> {
    types: Vec<&'a str>,
    ids: Vec<&'a str>,
    sequences: Vec<i64>,
    event_types: Vec<&'a str>,
    versions: Vec<&'a str>,
    payloads: Vec<&'a serde_json::Value>,
    metadata: Vec<&'a serde_json::Value>,
}

impl<'a> Columns<'a> {
    fn of(rows: &[&'a EventRow]) -> Self {
        let mut columns = Columns {
            types: Vec::with_capacity(rows.len()),
            ids: Vec::with_capacity(rows.len()),
            sequences: Vec::with_capacity(rows.len()),
            event_types: Vec::with_capacity(rows.len()),
            versions: Vec::with_capacity(rows.len()),
            payloads: Vec::with_capacity(rows.len()),
            metadata: Vec::with_capacity(rows.len()),
        };
        for row in rows {
            columns.types.push(row.aggregate_type);
            columns.ids.push(row.aggregate_id.as_str());
            columns.sequences.push(row.sequence);
            columns.event_types.push(row.event_type.as_str());
            columns.versions.push(row.event_version.as_str());
            columns.payloads.push(&row.payload);
            columns.metadata.push(&row.metadata);
        }
        columns
    }
}
