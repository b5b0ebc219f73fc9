//! Statistics for managers: counts kept per project and day, moved when something changes (an
//! outcome, a rating, the prompt version behind a request), so a statistics query sums small
//! pre-aggregated rows instead of grouping every client request.
//!
//! Each request, generation and offer has a state row saying where its one count sits; a change
//! takes the count from the old place and adds it to the new one. Reviews from Argilla have their
//! own rows beside `statistics_ratings`: an offer's newest review counts, once.
use anyhow::Context;
use async_trait::async_trait;
use chrono::NaiveDate;
use domain::client_request::{ClientField, ClientRequestEvent, MessageRating, Outcome};
use domain::project::ProjectEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::read_models::client_requests::cluster_of;
use crate::{Projection, StoredEvent};

/// Growth factor between latency buckets: a bucket's middle is within 2.5% of any duration in it.
pub const LATENCY_BUCKET_GROWTH: f64 = 1.05;

/// The histogram bucket of a duration: 0 for 0 ms, else b with 1.05^(b-1) <= ms < 1.05^b.
pub fn latency_bucket(duration_ms: u64) -> i32 {
    if duration_ms == 0 {
        return 0;
    }
    let b = ((duration_ms as f64).ln() / LATENCY_BUCKET_GROWTH.ln()).floor() as i32 + 1;
    // Floating error at exact powers: keep the defining inequality true.
    if LATENCY_BUCKET_GROWTH.powi(b - 1) > duration_ms as f64 {
        b - 1
    } else if LATENCY_BUCKET_GROWTH.powi(b) <= duration_ms as f64 {
        b + 1
    } else {
        b
    }
}

/// The duration a bucket stands for: its geometric middle.
pub fn latency_of_bucket(bucket: i32) -> f64 {
    if bucket <= 0 {
        0.0
    } else {
        LATENCY_BUCKET_GROWTH.powf(bucket as f64 - 0.5)
    }
}

/// Where a request's count sits in `statistics_requests`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct RequestPlace {
    project_id: Uuid,
    day: NaiveDate,
    channel_id: Uuid,
    cluster: String,
    prompt_version: i32,
    outcome: String,
}

/// The outcome columns of `statistics_requests`, in the order of [`Counts`] after `requests`.
pub const OUTCOME_COLUMNS: [&str; 6] = [
    "sold",
    "interest",
    "negative_reaction",
    "positive_reaction",
    "reflection",
    "undefined",
];

/// A change to the counts of one row: requests, then one per outcome column.
type Counts = [i64; 7];

/// Where a count goes: the row key of `statistics_requests` without its period.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RowKey {
    project_id: Uuid,
    day: NaiveDate,
    channel_id: Uuid,
    cluster: String,
    prompt_version: i32,
}

/// Count changes gathered in memory, written in one statement.
#[derive(Default)]
struct Deltas {
    rows: std::collections::HashMap<RowKey, Counts>,
}

impl Deltas {
    fn add(&mut self, place: &RequestPlace, sign: i64) {
        let key = RowKey {
            project_id: place.project_id,
            day: place.day,
            channel_id: place.channel_id,
            cluster: place.cluster.clone(),
            prompt_version: place.prompt_version,
        };
        let slot = OUTCOME_COLUMNS
            .iter()
            .position(|c| *c == place.outcome)
            .unwrap_or(OUTCOME_COLUMNS.len() - 1);
        let counts = self.rows.entry(key).or_default();
        counts[0] += sign;
        counts[1 + slot] += sign;
    }

    /// Adds the changes to the day rows and to the month rows.
    async fn write(self, db: &mut PgConnection) -> anyhow::Result<()> {
        use chrono::Datelike;
        use std::collections::HashMap;
        let mut months: HashMap<RowKey, Counts> = HashMap::new();
        for (key, counts) in &self.rows {
            let month = RowKey {
                day: key.day.with_day(1).unwrap_or(key.day),
                ..key.clone()
            };
            let total = months.entry(month).or_default();
            for (t, c) in total.iter_mut().zip(counts) {
                *t += c;
            }
        }
        // The same changes per product, for questions about every project.
        let projects: Vec<Uuid> = self.rows.keys().map(|k| k.project_id).collect();
        let products: HashMap<Uuid, Uuid> = sqlx::query_as::<_, (Uuid, Uuid)>(
            "SELECT project_id, product_id FROM statistics_projects WHERE project_id = ANY($1)",
        )
        .bind(&projects)
        .fetch_all(&mut *db)
        .await
        .context("reading the projects' products")?
        .into_iter()
        .collect();
        let mut by_product: HashMap<(&'static str, RowKey), Counts> = HashMap::new();
        let mut by_project: Vec<(&'static str, RowKey, Counts)> = Vec::new();
        for (period, rows) in [("day", self.rows), ("month", months)] {
            for (key, counts) in rows {
                if let Some(product) = products.get(&key.project_id) {
                    let total = by_product
                        .entry((
                            period,
                            RowKey {
                                project_id: *product,
                                ..key.clone()
                            },
                        ))
                        .or_default();
                    for (t, c) in total.iter_mut().zip(&counts) {
                        *t += c;
                    }
                }
                by_project.push((period, key, counts));
            }
        }
        let by_product = by_product
            .into_iter()
            .map(|((period, key), counts)| (period, key, counts))
            .collect();
        upsert_requests(db, "statistics_requests", "project_id", by_project).await?;
        upsert_requests(
            db,
            "statistics_requests_by_product",
            "product_id",
            by_product,
        )
        .await
    }
}

/// Adds counts to rows of `statistics_requests` or its per-product twin, in one statement.
async fn upsert_requests(
    db: &mut PgConnection,
    table: &str,
    owner: &str,
    rows: Vec<(&'static str, RowKey, Counts)>,
) -> anyhow::Result<()> {
    let mut columns = RowColumns::default();
    for (period, key, counts) in rows {
        if counts.iter().all(|c| *c == 0) {
            continue;
        }
        columns.period.push(period);
        columns.project_id.push(key.project_id);
        columns.day.push(key.day);
        columns.channel_id.push(key.channel_id);
        columns.cluster.push(key.cluster);
        columns.prompt_version.push(key.prompt_version);
        for (column, count) in columns.counts.iter_mut().zip(counts) {
            column.push(count);
        }
    }
    if columns.period.is_empty() {
        return Ok(());
    }
    let [requests, sold, interest, negative, positive, reflection, undefined] = &columns.counts;
    sqlx::query(&format!(
        "INSERT INTO {table} (period, {owner}, day, channel_id, cluster, prompt_version, requests,
                              sold, interest, negative_reaction, positive_reaction, reflection, undefined)
         SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::date[], $4::uuid[], $5::text[], $6::int4[], $7::int8[],
                              $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[], $13::int8[])
         ON CONFLICT ({owner}, period, day, channel_id, cluster, prompt_version) DO UPDATE SET
             requests = {table}.requests + EXCLUDED.requests,
             sold = {table}.sold + EXCLUDED.sold,
             interest = {table}.interest + EXCLUDED.interest,
             negative_reaction = {table}.negative_reaction + EXCLUDED.negative_reaction,
             positive_reaction = {table}.positive_reaction + EXCLUDED.positive_reaction,
             reflection = {table}.reflection + EXCLUDED.reflection,
             undefined = {table}.undefined + EXCLUDED.undefined"
    ))
    .bind(&columns.period)
    .bind(&columns.project_id)
    .bind(&columns.day)
    .bind(&columns.channel_id)
    .bind(&columns.cluster)
    .bind(&columns.prompt_version)
    .bind(requests)
    .bind(sold)
    .bind(interest)
    .bind(negative)
    .bind(positive)
    .bind(reflection)
    .bind(undefined)
    .execute(db)
    .await
    .with_context(|| format!("counting requests in {table}"))?;
    Ok(())
}

#[derive(Default)]
struct RowColumns {
    period: Vec<&'static str>,
    project_id: Vec<Uuid>,
    day: Vec<NaiveDate>,
    channel_id: Vec<Uuid>,
    cluster: Vec<String>,
    prompt_version: Vec<i32>,
    counts: [Vec<i64>; 7],
}

async fn request_place(
    db: &mut PgConnection,
    request: Uuid,
) -> anyhow::Result<Option<RequestPlace>> {
    sqlx::query_as(
        "SELECT project_id, day, channel_id, cluster, prompt_version, outcome
           FROM statistics_request_state WHERE request_id = $1",
    )
    .bind(request)
    .fetch_optional(db)
    .await
    .context("reading a request's statistics state")
}

/// Moves a request's count to `new` (a new outcome or prompt version).
async fn move_request(
    db: &mut PgConnection,
    request: Uuid,
    old: &RequestPlace,
    new: &RequestPlace,
) -> anyhow::Result<()> {
    if old == new {
        return Ok(());
    }
    let mut deltas = Deltas::default();
    deltas.add(old, -1);
    deltas.add(new, 1);
    deltas.write(db).await?;
    sqlx::query(
        "UPDATE statistics_request_state SET outcome = $2, prompt_version = $3 WHERE request_id = $1",
    )
    .bind(request)
    .bind(&new.outcome)
    .bind(new.prompt_version)
    .execute(db)
    .await
    .context("moving a request's statistics state")?;
    Ok(())
}

/// Where an offer's rating is counted in `statistics_ratings`.
#[derive(Debug, Clone, sqlx::FromRow)]
struct MessagePlace {
    project_id: Uuid,
    day: NaiveDate,
    channel_id: Uuid,
    prompt_version: i32,
    rating: String,
}

/// The rating columns of `statistics_ratings`.
pub const RATING_COLUMNS: [&str; 4] = ["ok", "error", "revision", "undefined"];

fn first_of_month(day: NaiveDate) -> NaiveDate {
    use chrono::Datelike;
    day.with_day(1).unwrap_or(day)
}

async fn count_rating(
    db: &mut PgConnection,
    place: &MessagePlace,
    sign: i64,
) -> anyhow::Result<()> {
    let mut counts = [0i64; 4];
    let slot = RATING_COLUMNS
        .iter()
        .position(|c| *c == place.rating)
        .unwrap_or(RATING_COLUMNS.len() - 1);
    counts[slot] = sign;
    sqlx::query(
        "INSERT INTO statistics_ratings (project_id, period, day, channel_id, prompt_version, ok, error, revision, undefined)
         SELECT $1, p.period, p.day, $4, $5, $6, $7, $8, $9
           FROM (VALUES ('day', $2::date), ('month', $3::date)) AS p(period, day)
         ON CONFLICT (project_id, period, day, channel_id, prompt_version) DO UPDATE SET
             ok = statistics_ratings.ok + EXCLUDED.ok,
             error = statistics_ratings.error + EXCLUDED.error,
             revision = statistics_ratings.revision + EXCLUDED.revision,
             undefined = statistics_ratings.undefined + EXCLUDED.undefined",
    )
    .bind(place.project_id)
    .bind(place.day)
    .bind(first_of_month(place.day))
    .bind(place.channel_id)
    .bind(place.prompt_version)
    .bind(counts[0])
    .bind(counts[1])
    .bind(counts[2])
    .bind(counts[3])
    .execute(db)
    .await
    .context("counting a rating")?;
    Ok(())
}

/// An offer's newest review, as `statistics_review_state` keeps it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct ReviewState {
    quality: String,
    corrected: bool,
    rating: Option<i16>,
}

impl ReviewState {
    /// What the review adds to `statistics_reviews`: reviewed, ok, error, revision, corrected,
    /// rating sum, rating count.
    fn counts(&self, sign: i64) -> [i64; 7] {
        let is = |quality: MessageRating| sign * i64::from(self.quality == quality.as_str());
        [
            sign,
            is(MessageRating::Ok),
            is(MessageRating::Error),
            is(MessageRating::Revision),
            sign * i64::from(self.corrected),
            sign * self.rating.map_or(0, i64::from),
            sign * i64::from(self.rating.is_some()),
        ]
    }
}

async fn count_review(
    db: &mut PgConnection,
    place: &MessagePlace,
    counts: [i64; 7],
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO statistics_reviews (project_id, period, day, channel_id, prompt_version,
                                         reviewed, ok, error, revision, corrected, rating_sum, rating_count)
         SELECT $1, p.period, p.day, $4, $5, $6, $7, $8, $9, $10, $11, $12
           FROM (VALUES ('day', $2::date), ('month', $3::date)) AS p(period, day)
         ON CONFLICT (project_id, period, day, channel_id, prompt_version) DO UPDATE SET
             reviewed = statistics_reviews.reviewed + EXCLUDED.reviewed,
             ok = statistics_reviews.ok + EXCLUDED.ok,
             error = statistics_reviews.error + EXCLUDED.error,
             revision = statistics_reviews.revision + EXCLUDED.revision,
             corrected = statistics_reviews.corrected + EXCLUDED.corrected,
             rating_sum = statistics_reviews.rating_sum + EXCLUDED.rating_sum,
             rating_count = statistics_reviews.rating_count + EXCLUDED.rating_count",
    )
    .bind(place.project_id)
    .bind(place.day)
    .bind(first_of_month(place.day))
    .bind(place.channel_id)
    .bind(place.prompt_version)
    .bind(counts[0])
    .bind(counts[1])
    .bind(counts[2])
    .bind(counts[3])
    .bind(counts[4])
    .bind(counts[5])
    .bind(counts[6])
    .execute(db)
    .await
    .context("counting a review")?;
    Ok(())
}

/// Adds to one project's generation figures of one day.
async fn count_generation_work(
    db: &mut PgConnection,
    project_id: Uuid,
    day: NaiveDate,
    (generated, failures, permanent, tokens, duration_ms): (i64, i64, i64, i64, i64),
) -> anyhow::Result<()> {
    // The nil project's row sums every project.
    sqlx::query(
        "INSERT INTO statistics_generation_daily
                (project_id, day, generated, failures, permanent_failures, completion_tokens, duration_ms)
         SELECT owner, $2, $3, $4, $5, $6, $7 FROM UNNEST(ARRAY[$1, $8]::uuid[]) AS owner
         ON CONFLICT (project_id, day) DO UPDATE SET
             generated = statistics_generation_daily.generated + EXCLUDED.generated,
             failures = statistics_generation_daily.failures + EXCLUDED.failures,
             permanent_failures = statistics_generation_daily.permanent_failures + EXCLUDED.permanent_failures,
             completion_tokens = statistics_generation_daily.completion_tokens + EXCLUDED.completion_tokens,
             duration_ms = statistics_generation_daily.duration_ms + EXCLUDED.duration_ms",
    )
    .bind(project_id)
    .bind(day)
    .bind(generated)
    .bind(failures)
    .bind(permanent)
    .bind(tokens)
    .bind(duration_ms)
    .bind(Uuid::nil())
    .execute(db)
    .await
    .context("counting generation work")?;
    Ok(())
}

/// The figures managers read: requests by outcome, cluster and prompt version, ratings,
/// generation work and latency, members and channels, all per project and day.
pub struct StatisticsProjection;

#[async_trait]
impl Projection for StatisticsProjection {
    fn name(&self) -> &'static str {
        "statistics"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["Project", "ClientRequest"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "statistics_projects",
            "statistics_project_members",
            "statistics_project_channels",
            "statistics_request_state",
            "statistics_generation_state",
            "statistics_message_state",
            "statistics_requests",
            "statistics_requests_by_product",
            "statistics_ratings",
            "statistics_review_state",
            "statistics_reviews",
            "statistics_generation_daily",
            "statistics_latency",
        ]
    }

    async fn apply(&self, db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        match event.aggregate_type.as_str() {
            "Project" => apply_project(db, event).await,
            "ClientRequest" => apply_request(db, event).await,
            _ => Ok(()),
        }
    }

    /// Creations and outcomes, by far the most frequent events, are counted in memory and
    /// written in three statements per run; the rest go one by one, after the run before them.
    async fn apply_batch(
        &self,
        db: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> anyhow::Result<()> {
        let mut run = RequestRun::default();
        for event in events {
            if event.aggregate_type == "ClientRequest" {
                match event.event_type.as_str() {
                    "ClientRequestCreated" => {
                        let CountedEvent::ClientRequestCreated {
                            project_id,
                            channel_id,
                            client_data,
                        } = event.decode()?
                        else {
                            anyhow::bail!("event {} is not a creation", event.global_position);
                        };
                        run.events.push((
                            event.aggregate_uuid()?,
                            Change::Created(RequestPlace {
                                project_id,
                                day: event.recorded_at.date_naive(),
                                channel_id,
                                cluster: cluster_of(&client_data).unwrap_or_default(),
                                prompt_version: 0,
                                outcome: "undefined".into(),
                            }),
                        ));
                        continue;
                    }
                    "OutcomeRecorded" => {
                        let CountedEvent::OutcomeRecorded { outcome } = event.decode()? else {
                            anyhow::bail!("event {} is not an outcome", event.global_position);
                        };
                        run.events
                            .push((event.aggregate_uuid()?, Change::Outcome(outcome.as_str())));
                        continue;
                    }
                    _ => {}
                }
            }
            run.flush(db).await?;
            self.apply(db, event).await.with_context(|| {
                format!(
                    "statistics applying event {} ({})",
                    event.global_position, event.event_type
                )
            })?;
        }
        run.flush(db).await
    }
}

/// The most frequent events as statistics reads them: a creation without the columns'
/// descriptions, the client id and the source, which serde then skips instead of building.
#[derive(serde::Deserialize)]
enum CountedEvent {
    ClientRequestCreated {
        project_id: Uuid,
        channel_id: Uuid,
        client_data: Vec<ClientField>,
    },
    OutcomeRecorded {
        outcome: Outcome,
    },
}

enum Change {
    Created(RequestPlace),
    Outcome(&'static str),
}

/// A run of creations and outcomes, applied together.
#[derive(Default)]
struct RequestRun {
    events: Vec<(Uuid, Change)>,
}

impl RequestRun {
    async fn flush(&mut self, db: &mut PgConnection) -> anyhow::Result<()> {
        use std::collections::HashMap;
        if self.events.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = self.events.iter().map(|(id, _)| *id).collect();
        let known: Vec<(Uuid, Uuid, NaiveDate, Uuid, String, i32, String)> = sqlx::query_as(
            "SELECT request_id, project_id, day, channel_id, cluster, prompt_version, outcome
               FROM statistics_request_state WHERE request_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut *db)
        .await
        .context("reading requests' statistics state")?;
        let mut places: HashMap<Uuid, RequestPlace> = known
            .into_iter()
            .map(
                |(id, project_id, day, channel_id, cluster, prompt_version, outcome)| {
                    (
                        id,
                        RequestPlace {
                            project_id,
                            day,
                            channel_id,
                            cluster,
                            prompt_version,
                            outcome,
                        },
                    )
                },
            )
            .collect();
        let mut touched: Vec<Uuid> = Vec::new();
        let mut seen: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
        let mut deltas = Deltas::default();
        for (id, change) in self.events.drain(..) {
            match change {
                Change::Created(place) => {
                    if places.contains_key(&id) {
                        continue;
                    }
                    deltas.add(&place, 1);
                    places.insert(id, place);
                }
                Change::Outcome(outcome) => {
                    let Some(place) = places.get_mut(&id) else {
                        continue;
                    };
                    if place.outcome == outcome {
                        continue;
                    }
                    deltas.add(place, -1);
                    place.outcome = outcome.to_string();
                    deltas.add(place, 1);
                }
            }
            if seen.insert(id) {
                touched.push(id);
            }
        }
        if !touched.is_empty() {
            let mut state = PlaceColumns::default();
            for id in &touched {
                state.push(&places[id]);
            }
            sqlx::query(
                "INSERT INTO statistics_request_state (request_id, project_id, day, channel_id, cluster, prompt_version, outcome)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::date[], $4::uuid[], $5::text[], $6::int4[], $7::text[])
                 ON CONFLICT (request_id) DO UPDATE SET outcome = EXCLUDED.outcome, prompt_version = EXCLUDED.prompt_version",
            )
            .bind(&touched)
            .bind(&state.project_id)
            .bind(&state.day)
            .bind(&state.channel_id)
            .bind(&state.cluster)
            .bind(&state.prompt_version)
            .bind(&state.outcome)
            .execute(&mut *db)
            .await
            .context("writing requests' statistics state")?;
        }
        deltas.write(db).await
    }
}

/// Request places, column by column, for multi-row statements.
#[derive(Default)]
struct PlaceColumns {
    project_id: Vec<Uuid>,
    day: Vec<NaiveDate>,
    channel_id: Vec<Uuid>,
    cluster: Vec<String>,
    prompt_version: Vec<i32>,
    outcome: Vec<String>,
}

impl PlaceColumns {
    fn push(&mut self, place: &RequestPlace) {
        self.project_id.push(place.project_id);
        self.day.push(place.day);
        self.channel_id.push(place.channel_id);
        self.cluster.push(place.cluster.clone());
        self.prompt_version.push(place.prompt_version);
        self.outcome.push(place.outcome.clone());
    }
}

async fn apply_project(db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
    let project_id = event.aggregate_uuid()?;
    match event.decode::<ProjectEvent>()? {
        ProjectEvent::ProjectCreated {
            product_id,
            manager_id,
            ..
        } => {
            sqlx::query(
                "INSERT INTO statistics_projects (project_id, product_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(project_id)
            .bind(product_id)
            .execute(&mut *db)
            .await?;
            add_member(db, project_id, manager_id).await
        }
        ProjectEvent::MemberAdded { user_id, .. }
        | ProjectEvent::MemberRoleChanged { user_id, .. } => {
            add_member(db, project_id, user_id).await
        }
        ProjectEvent::MemberRemoved { user_id } => {
            sqlx::query(
                "DELETE FROM statistics_project_members WHERE project_id = $1 AND user_id = $2",
            )
            .bind(project_id)
            .bind(user_id)
            .execute(db)
            .await?;
            Ok(())
        }
        ProjectEvent::ChannelAttached { channel_id, .. } => {
            sqlx::query(
                "INSERT INTO statistics_project_channels (project_id, channel_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(project_id)
            .bind(channel_id)
            .execute(db)
            .await?;
            Ok(())
        }
        ProjectEvent::ChannelDetached { channel_id } => {
            sqlx::query(
                "DELETE FROM statistics_project_channels WHERE project_id = $1 AND channel_id = $2",
            )
            .bind(project_id)
            .bind(channel_id)
            .execute(db)
            .await?;
            Ok(())
        }
        _ => Ok(()),
    }
}

async fn add_member(db: &mut PgConnection, project_id: Uuid, user_id: Uuid) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO statistics_project_members (project_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(project_id)
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(())
}

async fn apply_request(db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
    let request = event.aggregate_uuid()?;
    // Days are UTC days, as the date range of a statistics query is.
    let day = event.recorded_at.date_naive();
    match event.decode::<ClientRequestEvent>()? {
        ClientRequestEvent::ClientRequestCreated {
            project_id,
            channel_id,
            client_data,
            ..
        } => {
            let place = RequestPlace {
                project_id,
                day,
                channel_id,
                cluster: cluster_of(&client_data).unwrap_or_default(),
                prompt_version: 0,
                outcome: "undefined".into(),
            };
            let inserted = sqlx::query(
                "INSERT INTO statistics_request_state (request_id, project_id, channel_id, cluster, day, outcome, prompt_version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(request)
            .bind(place.project_id)
            .bind(place.channel_id)
            .bind(&place.cluster)
            .bind(place.day)
            .bind(&place.outcome)
            .bind(place.prompt_version)
            .execute(&mut *db)
            .await
            .context("recording a request's statistics state")?
            .rows_affected();
            if inserted == 1 {
                let mut deltas = Deltas::default();
                deltas.add(&place, 1);
                deltas.write(db).await?;
            }
            Ok(())
        }
        ClientRequestEvent::OutcomeRecorded { outcome, .. } => {
            let Some(old) = request_place(db, request).await? else {
                return Ok(());
            };
            let new = RequestPlace {
                outcome: outcome.as_str().into(),
                ..old.clone()
            };
            move_request(db, request, &old, &new).await
        }
        ClientRequestEvent::GenerationRequested {
            generation_id,
            prompt_version,
            ..
        } => {
            let Some(old) = request_place(db, request).await? else {
                return Ok(());
            };
            sqlx::query(
                "INSERT INTO statistics_generation_state (generation_id, project_id, channel_id, prompt_version)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(generation_id)
            .bind(old.project_id)
            .bind(old.channel_id)
            .bind(prompt_version as i32)
            .execute(&mut *db)
            .await
            .context("recording a generation's statistics state")?;
            // A request's conversion counts for the prompt version of its newest text.
            let new = RequestPlace {
                prompt_version: prompt_version as i32,
                ..old.clone()
            };
            move_request(db, request, &old, &new).await
        }
        ClientRequestEvent::MessageGenerated {
            generation_id,
            message_id,
            completion_tokens,
            duration_ms,
            ..
        } => {
            let generation: Option<(Uuid, Uuid, i32)> = sqlx::query_as(
                "SELECT project_id, channel_id, prompt_version FROM statistics_generation_state WHERE generation_id = $1",
            )
            .bind(generation_id)
            .fetch_optional(&mut *db)
            .await?;
            let Some((project_id, channel_id, prompt_version)) = generation else {
                return Ok(());
            };
            let place = MessagePlace {
                project_id,
                day,
                channel_id,
                prompt_version,
                rating: MessageRating::Undefined.as_str().into(),
            };
            let inserted = sqlx::query(
                "INSERT INTO statistics_message_state (message_id, project_id, channel_id, prompt_version, day, rating)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(message_id)
            .bind(project_id)
            .bind(channel_id)
            .bind(prompt_version)
            .bind(day)
            .bind(&place.rating)
            .execute(&mut *db)
            .await
            .context("recording an offer's statistics state")?
            .rows_affected();
            if inserted == 0 {
                return Ok(());
            }
            count_rating(db, &place, 1).await?;
            count_generation_work(
                db,
                project_id,
                day,
                (1, 0, 0, completion_tokens as i64, duration_ms as i64),
            )
            .await?;
            sqlx::query(
                "INSERT INTO statistics_latency (project_id, day, messages)
                 SELECT owner, $2, array_fill(1::int8, ARRAY[1], ARRAY[$3])
                   FROM UNNEST(ARRAY[$1, $4]::uuid[]) AS owner
                 ON CONFLICT (project_id, day) DO UPDATE
                    SET messages[$3] = coalesce(statistics_latency.messages[$3], 0) + 1",
            )
            .bind(project_id)
            .bind(day)
            .bind(latency_bucket(duration_ms))
            .bind(Uuid::nil())
            .execute(db)
            .await
            .context("counting a latency")?;
            Ok(())
        }
        ClientRequestEvent::GenerationFailed { permanent, .. } => {
            let Some(place) = request_place(db, request).await? else {
                return Ok(());
            };
            count_generation_work(db, place.project_id, day, (0, 1, permanent as i64, 0, 0)).await
        }
        ClientRequestEvent::MessageRated {
            message_id, rating, ..
        } => {
            let old: Option<MessagePlace> = sqlx::query_as(
                "SELECT project_id, day, channel_id, prompt_version, rating FROM statistics_message_state
                  WHERE message_id = $1",
            )
            .bind(message_id)
            .fetch_optional(&mut *db)
            .await?;
            let Some(old) = old else { return Ok(()) };
            if old.rating == rating.as_str() {
                return Ok(());
            }
            let new = MessagePlace {
                rating: rating.as_str().into(),
                ..old.clone()
            };
            count_rating(db, &old, -1).await?;
            count_rating(db, &new, 1).await?;
            sqlx::query("UPDATE statistics_message_state SET rating = $2 WHERE message_id = $1")
                .bind(message_id)
                .bind(&new.rating)
                .execute(db)
                .await?;
            Ok(())
        }
        ClientRequestEvent::MessageReviewed {
            message_id,
            quality,
            corrected_text,
            rating,
            ..
        } => {
            let place: Option<MessagePlace> = sqlx::query_as(
                "SELECT project_id, day, channel_id, prompt_version, rating FROM statistics_message_state
                  WHERE message_id = $1",
            )
            .bind(message_id)
            .fetch_optional(&mut *db)
            .await?;
            let Some(place) = place else { return Ok(()) };
            let old: Option<ReviewState> = sqlx::query_as(
                "SELECT quality, corrected, rating FROM statistics_review_state WHERE message_id = $1",
            )
            .bind(message_id)
            .fetch_optional(&mut *db)
            .await
            .context("reading an offer's review state")?;
            let new = ReviewState {
                quality: quality.as_str().into(),
                corrected: corrected_text.is_some(),
                rating: rating.map(i16::from),
            };
            if old.as_ref() == Some(&new) {
                return Ok(());
            }
            // The newest review replaces the earlier one: take the old one's counts back.
            let mut counts = new.counts(1);
            if let Some(old) = &old {
                for (c, o) in counts.iter_mut().zip(old.counts(-1)) {
                    *c += o;
                }
            }
            count_review(db, &place, counts).await?;
            sqlx::query(
                "INSERT INTO statistics_review_state (message_id, quality, corrected, rating)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (message_id) DO UPDATE SET
                     quality = EXCLUDED.quality, corrected = EXCLUDED.corrected, rating = EXCLUDED.rating",
            )
            .bind(message_id)
            .bind(&new.quality)
            .bind(new.corrected)
            .bind(new.rating)
            .execute(db)
            .await
            .context("recording an offer's review state")?;
            Ok(())
        }
        ClientRequestEvent::GenerationRequeued { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_its_durations_within_two_and_a_half_percent() {
        for ms in [1u64, 2, 7, 20, 21, 100, 340, 999, 1000, 12_345, 600_000] {
            let b = latency_bucket(ms);
            assert!(
                LATENCY_BUCKET_GROWTH.powi(b - 1) <= ms as f64,
                "{ms} in {b}"
            );
            assert!((ms as f64) < LATENCY_BUCKET_GROWTH.powi(b), "{ms} in {b}");
            let error = (latency_of_bucket(b) - ms as f64).abs() / ms as f64;
            assert!(error <= 0.025, "{ms} ms reads as {}", latency_of_bucket(b));
        }
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_of_bucket(0), 0.0);
    }

    /// Statistics reads a creation through its own narrow type: it must find the same cluster
    /// as the full event does, whatever the column's place, form or order of fields.
    #[test]
    fn a_creation_read_for_statistics_keeps_the_cluster_of_the_full_event() {
        use domain::client_request::ColumnDescription;
        let column = |key: &str, value: serde_json::Value| ClientField {
            key: key.into(),
            value,
        };
        let cases = [
            (
                vec![column("age", 52.into()), column("super_clust", "A3".into())],
                Some("A3"),
            ),
            (vec![column("super_clust", 7.into())], Some("7")),
            (vec![column("super_clust", "NULL".into())], None),
            (vec![column("super_clust", serde_json::Value::Null)], None),
            (vec![column("super_clust", "  ".into())], None),
            (vec![column("age", "A3".into())], None),
            (vec![], None),
        ];
        for (client_data, expected) in cases {
            let project_id = Uuid::new_v4();
            let event = ClientRequestEvent::ClientRequestCreated {
                project_id,
                channel_id: Uuid::nil(),
                client_id: Some("c-1".into()),
                source: "api".into(),
                client_data: client_data.clone(),
                client_data_decoding: client_data
                    .iter()
                    .map(|f| ColumnDescription {
                        key: f.key.clone(),
                        description: format!("описание {}", f.key),
                    })
                    .collect(),
            };
            let text = serde_json::to_string(&event).expect("serialises");
            let CountedEvent::ClientRequestCreated {
                project_id: read_project,
                client_data: read,
                ..
            } = serde_json::from_str(&text).expect("reads")
            else {
                panic!("a creation read as something else");
            };
            assert_eq!(read_project, project_id);
            assert_eq!(cluster_of(&read).as_deref(), expected, "{text}");
            assert_eq!(cluster_of(&read), cluster_of(&client_data), "{text}");
        }
        // A column whose value comes before its key (another writer's field order).
        let reordered = r#"{"ClientRequestCreated":{"project_id":"00000000-0000-0000-0000-000000000001",
            "channel_id":"00000000-0000-0000-0000-000000000002",
            "client_data":[{"value":"B1","key":"super_clust"},{"value":"x","key":"age"}]}}"#;
        let CountedEvent::ClientRequestCreated { client_data, .. } =
            serde_json::from_str(reordered).expect("reads")
        else {
            panic!("a creation read as something else");
        };
        assert_eq!(cluster_of(&client_data).as_deref(), Some("B1"));
        let outcome = serde_json::to_string(&ClientRequestEvent::OutcomeRecorded {
            outcome: Outcome::Sold,
            credited_to: None,
        })
        .expect("serialises");
        assert!(matches!(
            serde_json::from_str(&outcome).expect("reads"),
            CountedEvent::OutcomeRecorded {
                outcome: Outcome::Sold
            }
        ));
    }
}
