//! The subscriber engine: one task per read model, each the single active consumer of its
//! subscription (a PostgreSQL advisory lock elects it, so several `offerflow` processes can run
//! side by side), woken right after local commits and by polling.
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::log::{read_after, StoredEvent};

/// A read model: how one event changes its tables.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// The subscriber's name, also its checkpoint's key.
    fn name(&self) -> &'static str;
    /// The aggregate types whose events it reads; others pass by unread.
    fn aggregate_types(&self) -> &'static [&'static str];
    /// The tables a rebuild empties.
    fn tables(&self) -> &'static [&'static str];
    /// A reactor whose effects are outside the database (the Argilla export): readers never
    /// wait for it, and its lag shows in the status without making the service unready.
    fn is_reactor(&self) -> bool {
        false
    }
    /// Applies one event inside the batch's transaction. Must be idempotent per event.
    async fn apply(&self, db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()>;

    /// Applies a batch of events, in order. Read models with many events override this to
    /// write a batch in a few statements instead of one round trip per event.
    async fn apply_batch(
        &self,
        db: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> anyhow::Result<()> {
        for event in events {
            self.apply(db, event).await.with_context(|| {
                format!(
                    "{} applying event {} ({})",
                    self.name(),
                    event.global_position,
                    event.event_type
                )
            })?;
        }
        Ok(())
    }
}

/// A point in the log a reader can wait for: "the read models have seen this event". Ordered
/// as subscribers read, so the greatest of several tokens covers them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConsistencyToken {
    pub transaction_id: u64,
    pub global_position: i64,
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.transaction_id, self.global_position)
    }
}

impl FromStr for ConsistencyToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (tx, pos) = s
            .trim()
            .split_once('.')
            .ok_or_else(|| "a consistency token looks like 1234.56".to_string())?;
        Ok(ConsistencyToken {
            transaction_id: tx.parse().map_err(|_| "bad transaction part".to_string())?,
            global_position: pos.parse().map_err(|_| "bad position part".to_string())?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub batch_size: i64,
    pub poll_interval: Duration,
    /// After a wake-up, how long to let further commits land before reading, so that under
    /// load one batch carries several events.
    pub coalesce: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            batch_size: 500,
            poll_interval: Duration::from_millis(250),
            coalesce: Duration::from_millis(10),
        }
    }
}

/// Where a subscriber stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubscriberStatus {
    pub name: String,
    pub last_position: i64,
    pub events_processed: i64,
    /// Committed events it has not processed yet.
    pub events_behind: i64,
    /// Age of the oldest unprocessed event, 0 when caught up.
    pub lag_seconds: f64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy)]
pub struct RebuildProgress {
    pub processed: i64,
    pub total: i64,
}

#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub name: String,
    pub events: i64,
    pub elapsed: Duration,
}

impl RebuildReport {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct Subscriber {
    projection: Arc<dyn Projection>,
    wake: Notify,
    /// Set by a rebuild in this process, so the running consumer reloads its checkpoint.
    reset: AtomicBool,
}

/// What one batch did.
enum Batch {
    Empty,
    /// Fewer events than the batch size: caught up as of the read.
    Partial(usize),
    Full(usize),
    /// A rebuild reset the checkpoint under us; the batch was void.
    Reset,
}

impl Batch {
    fn events(&self) -> usize {
        match self {
            Batch::Partial(n) | Batch::Full(n) => *n,
            Batch::Empty | Batch::Reset => 0,
        }
    }
}

/// The PostgreSQL channel on which processes tell each other that events were committed.
const EVENTS_CHANNEL: &str = "offerflow_events";

pub struct Engine {
    pool: PgPool,
    subscribers: Vec<Arc<Subscriber>>,
    /// Signalled after local commits; a task turns bursts of them into one NOTIFY.
    announce: Notify,
    /// Signalled after every committed batch, for readers waiting on a consistency token.
    progress: Notify,
    /// Counts wake-ups, for reactors that watch the log without being subscribers.
    commits: watch::Sender<u64>,
    config: EngineConfig,
}

#[derive(Debug, Clone)]
struct Checkpoint {
    tx: String,
    pos: i64,
}

fn lock_key(name: &str) -> String {
    format!("offerflow.subscriber:{name}")
}

impl Engine {
    pub fn new(
        pool: PgPool,
        projections: Vec<Arc<dyn Projection>>,
        config: EngineConfig,
    ) -> Arc<Self> {
        let subscribers = projections
            .into_iter()
            .map(|projection| {
                Arc::new(Subscriber {
                    projection,
                    wake: Notify::new(),
                    reset: AtomicBool::new(false),
                })
            })
            .collect();
        Arc::new(Engine {
            pool,
            subscribers,
            announce: Notify::new(),
            progress: Notify::new(),
            commits: watch::channel(0).0,
            config,
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.subscribers
            .iter()
            .map(|s| s.projection.name().to_string())
            .collect()
    }

    /// The subscribers that keep read models: what a consistency token waits for.
    pub fn read_model_names(&self) -> Vec<String> {
        self.subscribers
            .iter()
            .filter(|s| !s.projection.is_reactor())
            .map(|s| s.projection.name().to_string())
            .collect()
    }

    pub fn is_reactor(&self, name: &str) -> bool {
        self.subscribers
            .iter()
            .any(|s| s.projection.name() == name && s.projection.is_reactor())
    }

    /// Creates the checkpoint rows of subscribers seen for the first time.
    pub async fn register(&self) -> anyhow::Result<()> {
        for name in self.names() {
            sqlx::query("INSERT INTO subscriber_checkpoints (subscriber) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(&name)
                .execute(&self.pool)
                .await
                .with_context(|| format!("registering subscriber {name}"))?;
        }
        Ok(())
    }

    /// Tells every local subscriber that new events were committed.
    pub fn wake(&self) {
        for subscriber in &self.subscribers {
            // notify_one keeps a permit, so a subscriber busy with a batch still looks again.
            subscriber.wake.notify_one();
        }
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever events were committed, here or (through NOTIFY) in another process.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// After a command committed events here: wakes the local subscribers at once, and the
    /// other processes' through a NOTIFY sent at most every few milliseconds.
    pub fn events_committed(&self) {
        self.wake();
        self.announce.notify_one();
    }

    /// Starts one task per subscriber, plus the tasks that exchange commit notices with other
    /// processes; all stop when `shutdown` turns true.
    pub fn spawn(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = self
            .subscribers
            .iter()
            .cloned()
            .map(|subscriber| {
                let engine = Arc::clone(self);
                let shutdown = shutdown.clone();
                tokio::spawn(async move { engine.run_subscriber(subscriber, shutdown).await })
            })
            .collect();
        tasks.extend(self.spawn_notices(shutdown));
        tasks
    }

    /// Only the tasks that exchange commit notices with other processes: for a process that
    /// writes and watches the log (a worker) but keeps no read models.
    pub fn spawn_notices(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let engine = Arc::clone(self);
        let stop = shutdown.clone();
        let announce = tokio::spawn(async move { engine.announce_commits(stop).await });
        let engine = Arc::clone(self);
        let listen = tokio::spawn(async move { engine.listen_for_commits(shutdown).await });
        vec![announce, listen]
    }

    /// Turns local commits into NOTIFYs for other processes, one per burst: a NOTIFY inside
    /// every write transaction would serialise commits on PostgreSQL's notification queue.
    async fn announce_commits(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = self.announce.notified() => {}
                _ = shutdown.changed() => return,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            if let Err(error) = sqlx::query("SELECT pg_notify($1, '')")
                .bind(EVENTS_CHANNEL)
                .execute(&self.pool)
                .await
            {
                tracing::warn!(%error, "could not tell other processes about new events; they will poll");
            }
        }
    }

    /// Wakes the local subscribers when another process announces commits. Notices sent while
    /// disconnected are lost, so a reconnection wakes them too; polling covers the rest.
    async fn listen_for_commits(&self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        while !*shutdown.borrow() {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&self.pool).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for other processes' commits; polling only");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            if let Err(error) = listener.listen(EVENTS_CHANNEL).await {
                tracing::warn!(%error, "cannot listen for other processes' commits; polling only");
                continue;
            }
            backoff = Duration::from_millis(100);
            self.wake();
            loop {
                tokio::select! {
                    notice = listener.try_recv() => match notice {
                        Ok(_) => self.wake(),
                        Err(error) => {
                            tracing::warn!(%error, "lost the commit listener; reconnecting");
                            break;
                        }
                    },
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    async fn run_subscriber(
        &self,
        subscriber: Arc<Subscriber>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let name = subscriber.projection.name();
        let mut backoff = Duration::from_millis(100);
        while !*shutdown.borrow() {
            match self.lead(&subscriber, &mut shutdown).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => {
                    tracing::error!(
                        subscriber = name,
                        error = format!("{error:#}"),
                        "subscriber failed; retrying"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Becomes the active consumer (or waits as a standby) and processes until shutdown.
    async fn lead(
        &self,
        subscriber: &Subscriber,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let name = subscriber.projection.name();
        let mut lock_conn = self.pool.acquire().await?.detach();
        loop {
            let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock(hashtext($1))")
                .bind(lock_key(name))
                .fetch_one(&mut lock_conn)
                .await?;
            if locked {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval * 4) => {}
                _ = shutdown.changed() => return Ok(()),
            }
            if *shutdown.borrow() {
                return Ok(());
            }
        }
        tracing::info!(subscriber = name, "subscriber is the active consumer");
        let result = self.consume(subscriber, &mut lock_conn, shutdown).await;
        // Closing the dedicated connection releases the lock even if unlock fails.
        let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
            .bind(lock_key(name))
            .execute(&mut lock_conn)
            .await;
        result
    }

    async fn consume(
        &self,
        subscriber: &Subscriber,
        lock_conn: &mut PgConnection,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let projection = subscriber.projection.as_ref();
        prepare_batch_connection(projection, lock_conn).await?;
        let mut checkpoint = self.load_checkpoint(projection.name()).await?;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            match self
                .process_batch(projection, lock_conn, &mut checkpoint)
                .await?
            {
                Batch::Full(_) | Batch::Reset => continue,
                Batch::Partial(_) | Batch::Empty => {}
            }
            // Caught up as of that read: wait for news.
            tokio::select! {
                _ = subscriber.wake.notified() => {
                    if subscriber.reset.swap(false, Ordering::SeqCst) {
                        checkpoint = self.load_checkpoint(projection.name()).await?;
                    }
                    // Let concurrent commits land, so one batch carries several events.
                    if !self.config.coalesce.is_zero() {
                        tokio::time::sleep(self.config.coalesce).await;
                    }
                }
                _ = tokio::time::sleep(self.config.poll_interval) => {
                    sqlx::query("SELECT 1").execute(&mut *lock_conn).await
                        .context("lost the subscriber's lock connection")?;
                    // A rebuild in another process may have reset the checkpoint while we had
                    // nothing to commit (the compare-and-set only notices on commit).
                    checkpoint = self.load_checkpoint(projection.name()).await?;
                }
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn load_checkpoint(&self, name: &str) -> anyhow::Result<Checkpoint> {
        let (tx, pos): (String, i64) = sqlx::query_as(
            "SELECT last_tx::text, last_pos FROM subscriber_checkpoints WHERE subscriber = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| anyhow::anyhow!("subscriber {name} is not registered"))?;
        Ok(Checkpoint { tx, pos })
    }

    /// Applies the next batch and moves the checkpoint in the same transaction. Returns how
    /// many events it processed.
    async fn process_batch(
        &self,
        projection: &dyn Projection,
        db: &mut PgConnection,
        checkpoint: &mut Checkpoint,
    ) -> anyhow::Result<Batch> {
        let events = read_after(
            &mut *db,
            &checkpoint.tx,
            checkpoint.pos,
            self.config.batch_size,
            projection.aggregate_types(),
        )
        .await
        .with_context(|| format!("reading the log for {}", projection.name()))?;
        let Some(last) = events.last() else {
            return Ok(Batch::Empty);
        };
        let mut tx = sqlx::Connection::begin(&mut *db).await?;
        let relevant: Vec<&StoredEvent> = events.iter().filter(|e| e.payload.is_some()).collect();
        if !relevant.is_empty() {
            projection.apply_batch(&mut tx, &relevant).await?;
        }
        // Compare-and-set: if a rebuild reset the checkpoint meanwhile, this batch is void.
        let moved = sqlx::query(
            "UPDATE subscriber_checkpoints
                SET last_tx = $2::text::xid8, last_pos = $3,
                    events_processed = events_processed + $4, updated_at = now()
              WHERE subscriber = $1 AND last_tx = $5::text::xid8 AND last_pos = $6",
        )
        .bind(projection.name())
        .bind(&last.transaction_id)
        .bind(last.global_position)
        .bind(events.len() as i64)
        .bind(&checkpoint.tx)
        .bind(checkpoint.pos)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            tx.rollback().await?;
            tracing::info!(
                subscriber = projection.name(),
                "checkpoint was reset; starting over"
            );
            *checkpoint = self.load_checkpoint(projection.name()).await?;
            return Ok(Batch::Reset);
        }
        tx.commit().await?;
        checkpoint.tx = last.transaction_id.clone();
        checkpoint.pos = last.global_position;
        self.progress.notify_waiters();
        Ok(if events.len() as i64 >= self.config.batch_size {
            Batch::Full(events.len())
        } else {
            Batch::Partial(events.len())
        })
    }

    /// The consistency token of the newest event of one aggregate, and whether the command
    /// identified by `command_id` wrote it (false: the command changed nothing).
    pub async fn token_for_aggregate(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        command_id: &str,
    ) -> anyhow::Result<Option<(ConsistencyToken, bool)>> {
        let row: Option<(String, i64, bool)> = sqlx::query_as(
            "SELECT transaction_id::text, global_position, coalesce(metadata->>'command_id' = $3, false)
               FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
              ORDER BY coalesce(metadata->>'command_id' = $3, false) DESC, sequence DESC LIMIT 1",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(command_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(tx, pos, ours)| {
            Ok((
                ConsistencyToken {
                    transaction_id: tx.parse().context("xid8 is not a number")?,
                    global_position: pos,
                },
                ours,
            ))
        })
        .transpose()
    }

    /// The newest event in the log: waiting for it shows every write committed so far.
    pub async fn head(&self) -> anyhow::Result<Option<ConsistencyToken>> {
        let row: Option<(String, i64)> = sqlx::query_as(
            // Qualified: a bare `transaction_id` would name the text column and sort "997"
            // after "1212".
            "SELECT transaction_id::text, global_position FROM events
              ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .context("reading the head of the log")?;
        row.map(|(tx, pos)| {
            Ok(ConsistencyToken {
                transaction_id: tx.parse().context("xid8 is not a number")?,
                global_position: pos,
            })
        })
        .transpose()
    }

    /// Whether every subscriber has processed the token's event.
    pub async fn caught_up(&self, token: ConsistencyToken) -> anyhow::Result<bool> {
        let names = self.read_model_names();
        let (done,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM subscriber_checkpoints
              WHERE subscriber = ANY($1) AND (last_tx, last_pos) >= ($2::text::xid8, $3)",
        )
        .bind(&names)
        .bind(token.transaction_id.to_string())
        .bind(token.global_position)
        .fetch_one(&self.pool)
        .await?;
        Ok(done as usize == names.len())
    }

    /// Waits until the read models have processed `token`, at most `timeout`. Returns whether
    /// they did.
    pub async fn wait_for(
        &self,
        token: ConsistencyToken,
        timeout: Duration,
    ) -> anyhow::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            let progressed = self.progress.notified();
            if self.caught_up(token).await? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            // Polling too, because the subscribers may run in another process.
            tokio::select! {
                _ = progressed => {}
                _ = tokio::time::sleep((deadline - now).min(Duration::from_millis(20))) => {}
            }
        }
    }

    pub async fn status(&self) -> anyhow::Result<Vec<SubscriberStatus>> {
        status(&self.pool, &self.names()).await
    }

    /// Empties a read model and replays the whole log into it. If a server holds the
    /// subscriber, it is the one that replays, and this only follows its progress.
    pub async fn rebuild(
        &self,
        name: &str,
        mut on_progress: impl FnMut(RebuildProgress),
    ) -> anyhow::Result<RebuildReport> {
        let subscriber = self
            .subscribers
            .iter()
            .find(|s| s.projection.name() == name)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no read model named {name}; known: {}",
                    self.names().join(", ")
                )
            })?;
        let projection = subscriber.projection.as_ref();
        let (total,): (i64,) = sqlx::query_as("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await?;
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        for table in projection.tables() {
            sqlx::query(&format!("TRUNCATE {table}"))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE subscriber_checkpoints SET last_tx = '0', last_pos = 0, events_processed = 0, updated_at = now()
              WHERE subscriber = $1",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        subscriber.reset.store(true, Ordering::SeqCst);
        subscriber.wake.notify_one();

        let mut lock_conn = self.pool.acquire().await?.detach();
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(lock_key(name))
            .fetch_one(&mut lock_conn)
            .await?;
        if locked {
            prepare_batch_connection(projection, &mut lock_conn).await?;
            let mut checkpoint = self.load_checkpoint(name).await?;
            let mut processed = 0i64;
            loop {
                let batch = self
                    .process_batch(projection, &mut lock_conn, &mut checkpoint)
                    .await?;
                if matches!(batch, Batch::Empty) {
                    break;
                }
                processed += batch.events() as i64;
                on_progress(RebuildProgress { processed, total });
            }
            let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
                .bind(lock_key(name))
                .execute(&mut lock_conn)
                .await;
            return Ok(RebuildReport {
                name: name.to_string(),
                events: processed,
                elapsed: started.elapsed(),
            });
        }
        // Another process is the active consumer: follow its checkpoint.
        loop {
            let current = status(&self.pool, &[name.to_string()]).await?;
            let Some(s) = current.first() else { break };
            on_progress(RebuildProgress {
                processed: s.events_processed,
                total,
            });
            if s.events_behind == 0 {
                return Ok(RebuildReport {
                    name: name.to_string(),
                    events: s.events_processed,
                    elapsed: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("subscriber {name} disappeared during the rebuild")
    }

    /// Processes everything currently in the log for every subscriber, in this task. For
    /// tools and tests that run without the background tasks.
    pub async fn catch_up(&self) -> anyhow::Result<()> {
        let mut db = self.pool.acquire().await?;
        for subscriber in &self.subscribers {
            let projection = subscriber.projection.as_ref();
            let mut checkpoint = self.load_checkpoint(projection.name()).await?;
            while !matches!(
                self.process_batch(projection, &mut db, &mut checkpoint)
                    .await?,
                Batch::Empty
            ) {}
        }
        Ok(())
    }
}

/// Sets up a subscriber's own connection for its batches.
///
/// Its statements are planned for each batch: a plan cached on this long-lived connection
/// would have been chosen while the read model was empty (a sequential scan that takes tens of
/// milliseconds once it holds a few thousand rows), and batches differ in size anyway.
///
/// Read-model batches commit without waiting for their WAL flush: a crash can only lose a
/// batch together with its checkpoint (they share the transaction), and the subscriber then
/// applies it again from the log. A reactor's batch records effects outside the database, so it
/// keeps durable commits.
async fn prepare_batch_connection(
    projection: &dyn Projection,
    db: &mut PgConnection,
) -> anyhow::Result<()> {
    sqlx::query("SET plan_cache_mode = force_custom_plan")
        .execute(&mut *db)
        .await
        .context("setting the subscriber's plans")?;
    if !projection.is_reactor() {
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut *db)
            .await
            .context("setting the subscriber's commits asynchronous")?;
    }
    Ok(())
}

pub async fn status(pool: &PgPool, names: &[String]) -> anyhow::Result<Vec<SubscriberStatus>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        name: String,
        last_position: i64,
        events_processed: i64,
        updated_at: DateTime<Utc>,
        events_behind: i64,
        lag_seconds: Option<f64>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.subscriber AS name, s.last_pos AS last_position, s.events_processed, s.updated_at,
                (SELECT count(*) FROM events e
                  WHERE (e.transaction_id, e.global_position) > (s.last_tx, s.last_pos)) AS events_behind,
                (SELECT extract(epoch FROM now() - e.recorded_at)::float8 FROM events e
                  WHERE (e.transaction_id, e.global_position) > (s.last_tx, s.last_pos)
                  ORDER BY e.transaction_id, e.global_position LIMIT 1) AS lag_seconds
           FROM subscriber_checkpoints s
          WHERE s.subscriber = ANY($1)
          ORDER BY s.subscriber",
    )
    .bind(names)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| SubscriberStatus {
            name: r.name,
            last_position: r.last_position,
            events_processed: r.events_processed,
            events_behind: r.events_behind,
            lag_seconds: r.lag_seconds.unwrap_or(0.0).max(0.0),
            updated_at: r.updated_at,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token = ConsistencyToken {
            transaction_id: 7_000_000_123,
            global_position: 42,
        };
        assert_eq!(token.to_string().parse::<ConsistencyToken>(), Ok(token));
        assert!("42".parse::<ConsistencyToken>().is_err());
        assert!("x.1".parse::<ConsistencyToken>().is_err());
    }
}
