//! The exporter is a subscriber of the engine like a read model, but its "apply" is an upsert
//! into Argilla: the checkpoint moves (in the batch's transaction) only after Argilla accepted
//! every record of the batch or a record was refused for good and dead-lettered. While Argilla
//! is unreachable the batch fails and is read again, so an outage of any length ends with every
//! message exported; records are keyed by the message id, so a repeat updates instead of
//! duplicating.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use domain::chat::ChatMessage;
use domain::client_request::{ClientRequestEvent, MessageRating, Outcome};
use domain::project::ProjectEvent;
use projections::read_models::client_requests::cluster_of;
use projections::{Projection, StoredEvent};
use serde_json::{json, Map, Value};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::client::{backoff, ArgillaClient, ArgillaError, MAX_BULK};

/// The exporter's checkpoint name (`offerflow projections rebuild argilla_export` replays it).
pub const SUBSCRIBER: &str = "argilla_export";

/// Where and how to export. Built by the caller from `OFFERFLOW_ARGILLA_*`.
#[derive(Debug, Clone)]
pub struct ArgillaConfig {
    pub url: String,
    pub api_key: String,
    pub workspace: String,
    /// Datasets are named `{dataset_prefix}{project id}`.
    pub dataset_prefix: String,
    /// How often submitted responses are read back.
    pub sync_interval: Duration,
    pub request_timeout: Duration,
    /// Tries per call while Argilla is unavailable before the batch is given back to the
    /// engine (which reads it again after its own backoff).
    pub max_attempts: u32,
    pub retry_backoff: Duration,
}

impl ArgillaConfig {
    pub fn new(url: &str, api_key: &str, workspace: &str) -> Self {
        ArgillaConfig {
            url: url.to_string(),
            api_key: api_key.to_string(),
            workspace: workspace.to_string(),
            dataset_prefix: "offerflow-".to_string(),
            sync_interval: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(250),
        }
    }

    pub fn dataset_name(&self, project_id: Uuid) -> String {
        format!("{}{project_id}", self.dataset_prefix)
    }
}

/// One submitted response of a reviewer in Argilla.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub message_id: Uuid,
    pub response_id: Uuid,
    /// Argilla's `updated_at`: an edited response is a new review.
    pub updated_at: String,
    pub reviewer: String,
    pub quality: MessageRating,
    pub corrected_text: Option<String>,
    pub rating: Option<u8>,
}

/// Records reviews on the command side. Returns whether an event was written (false: the same
/// response was recorded before).
#[async_trait]
pub trait ReviewLedger: Send + Sync {
    async fn record_review(&self, request_id: Uuid, review: Review) -> anyhow::Result<bool>;
}

#[derive(Debug, Clone, Copy)]
struct DatasetHandle {
    id: Uuid,
    quality_question: Uuid,
}

pub struct ArgillaExporter {
    client: ArgillaClient,
    config: ArgillaConfig,
    pool: PgPool,
    workspace: Mutex<Option<Uuid>>,
    datasets: Mutex<HashMap<Uuid, DatasetHandle>>,
    reviewers: Mutex<HashMap<Uuid, String>>,
}

/// What the log says about one offer, as a record needs it.
#[derive(Debug, Clone)]
struct OfferFacts {
    message_id: Uuid,
    generation_id: Uuid,
    text: String,
    model: String,
    rating: Option<MessageRating>,
}

#[derive(Debug, Clone)]
struct GenerationFacts {
    messages: Vec<ChatMessage>,
    prompt_version: u32,
}

#[derive(Debug, Default)]
struct RequestFacts {
    project_id: Option<Uuid>,
    channel_id: Option<Uuid>,
    cluster: Option<String>,
    outcome: Option<Outcome>,
    generations: HashMap<Uuid, GenerationFacts>,
    offers: Vec<OfferFacts>,
}

impl RequestFacts {
    fn apply(&mut self, event: ClientRequestEvent) {
        match event {
            ClientRequestEvent::ClientRequestCreated {
                project_id,
                channel_id,
                client_data,
                ..
            } => {
                self.project_id = Some(project_id);
                self.channel_id = Some(channel_id);
                self.cluster = cluster_of(&client_data);
            }
            ClientRequestEvent::OutcomeRecorded { outcome, .. } => self.outcome = Some(outcome),
            ClientRequestEvent::GenerationRequested {
                generation_id,
                messages,
                prompt_version,
                ..
            } => {
                self.generations.insert(
                    generation_id,
                    GenerationFacts {
                        messages,
                        prompt_version,
                    },
                );
            }
            ClientRequestEvent::MessageGenerated {
                generation_id,
                message_id,
                text,
                model,
                ..
            } => self.offers.push(OfferFacts {
                message_id,
                generation_id,
                text,
                model,
                rating: None,
            }),
            ClientRequestEvent::MessageRated {
                message_id, rating, ..
            } => {
                if let Some(offer) = self.offers.iter_mut().find(|o| o.message_id == message_id) {
                    offer.rating = Some(rating);
                }
            }
            _ => {}
        }
    }
}

#[derive(Debug, Default)]
struct ProjectFacts {
    name: String,
    product_id: Option<Uuid>,
}

/// A message to (re)export, or every offer of a request (its outcome changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    Message { request: Uuid, message: Uuid },
    Request { request: Uuid },
}

impl Target {
    fn request(&self) -> Uuid {
        match self {
            Target::Message { request, .. } | Target::Request { request } => *request,
        }
    }
}

struct DeadLetter {
    message_id: Uuid,
    request_id: Uuid,
    project_id: Uuid,
    dataset: String,
    status: u16,
    error: String,
}

/// What one export did.
#[derive(Debug, Default, Clone)]
pub struct ExportReport {
    pub exported: Vec<Uuid>,
    pub dead_lettered: Vec<Uuid>,
}

impl ArgillaExporter {
    pub fn new(pool: PgPool, config: ArgillaConfig) -> anyhow::Result<Arc<Self>> {
        let client = ArgillaClient::new(&config.url, &config.api_key, config.request_timeout)?;
        Ok(Arc::new(ArgillaExporter {
            client,
            config,
            pool,
            workspace: Mutex::new(None),
            datasets: Mutex::new(HashMap::new()),
            reviewers: Mutex::new(HashMap::new()),
        }))
    }

    pub fn config(&self) -> &ArgillaConfig {
        &self.config
    }

    /// Runs `call` until it succeeds, is refused, or has failed `max_attempts` times for
    /// unavailability, waiting a jittered, doubling delay between tries.
    async fn retrying<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, ArgillaError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ArgillaError>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(error) if error.is_rejected() || attempt >= self.config.max_attempts => {
                    return Err(error)
                }
                Err(error) => {
                    let wait = backoff(attempt, self.config.retry_backoff, Duration::from_secs(30));
                    tracing::warn!(%error, attempt, wait_ms = wait.as_millis() as u64, "{what}: retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn workspace_id(&self) -> Result<Uuid, ArgillaError> {
        if let Some(id) = *self.workspace.lock().expect("workspace cache") {
            return Ok(id);
        }
        let id = self
            .retrying("finding the Argilla workspace", || {
                self.client.workspace(&self.config.workspace)
            })
            .await?;
        *self.workspace.lock().expect("workspace cache") = Some(id);
        Ok(id)
    }

    fn forget_dataset(&self, project_id: Uuid) {
        self.datasets
            .lock()
            .expect("dataset cache")
            .remove(&project_id);
    }

    /// The project's dataset: found by name, else created with its fields, questions and
    /// metadata and published. A dataset left in draft (a crash during setup) is completed.
    async fn dataset(
        &self,
        project_id: Uuid,
        project_name: &str,
    ) -> Result<DatasetHandle, ArgillaError> {
        if let Some(handle) = self
            .datasets
            .lock()
            .expect("dataset cache")
            .get(&project_id)
        {
            return Ok(*handle);
        }
        let workspace = self.workspace_id().await?;
        let name = self.config.dataset_name(project_id);
        let found = self
            .retrying("finding a dataset", || {
                self.client.find_dataset(workspace, &name)
            })
            .await?;
        let dataset = match found {
            Some(dataset) => dataset,
            None => {
                let guidelines = format!(
                    "Offers generated by Offerflow for the project «{project_name}». Judge each \
                     offer's quality; if it needs changes, write the corrected text."
                );
                match self
                    .retrying("creating a dataset", || {
                        self.client.create_dataset(workspace, &name, &guidelines)
                    })
                    .await
                {
                    Ok(dataset) => dataset,
                    // Another process created it meanwhile: use that one, never a second.
                    Err(ArgillaError::Rejected { status: 409, .. }) => self
                        .client
                        .find_dataset(workspace, &name)
                        .await?
                        .ok_or_else(|| {
                            ArgillaError::Unavailable(format!(
                                "dataset {name} is said to exist but is not listed"
                            ))
                        })?,
                    Err(error) => return Err(error),
                }
            }
        };
        if dataset.status != "ready" {
            self.configure(dataset.id).await?;
            self.retrying("publishing a dataset", || self.client.publish(dataset.id))
                .await?;
            tracing::info!(dataset = %name, "Argilla dataset created and published");
        }
        let questions = self
            .retrying("reading a dataset's questions", || {
                self.client.names_of(dataset.id, "questions")
            })
            .await?;
        let quality_question = questions
            .iter()
            .find(|q| q.name == "quality")
            .map(|q| q.id)
            .ok_or_else(|| ArgillaError::Rejected {
                status: 422,
                detail: format!("dataset {name} has no `quality` question"),
            })?;
        let handle = DatasetHandle {
            id: dataset.id,
            quality_question,
        };
        self.datasets
            .lock()
            .expect("dataset cache")
            .insert(project_id, handle);
        Ok(handle)
    }

    /// Adds whatever of the dataset's settings is missing (all of it for a new one).
    async fn configure(&self, dataset_id: Uuid) -> Result<(), ArgillaError> {
        let fields = [
            json!({"name": "prompt", "title": "Prompt (the messages sent to the model)", "required": true,
                   "settings": {"type": "chat", "use_markdown": false}}),
            json!({"name": "offer", "title": "Offer", "required": true,
                   "settings": {"type": "text", "use_markdown": false}}),
        ];
        let ratings: Vec<Value> = (1..=5).map(|v| json!({ "value": v })).collect();
        let questions = [
            json!({"name": "quality", "title": "Is the offer right?", "required": true,
                   "settings": {"type": "label_selection", "options": [
                       {"value": "ok", "text": "ok"},
                       {"value": "error", "text": "error"},
                       {"value": "revision", "text": "revision"}]}}),
            json!({"name": "corrected_text", "title": "Corrected text", "required": false,
                   "settings": {"type": "text", "use_markdown": false}}),
            json!({"name": "rating", "title": "Rating (1–5)", "required": false,
                   "settings": {"type": "rating", "options": ratings}}),
        ];
        let metadata: Vec<Value> = METADATA
            .iter()
            .map(|(name, title)| json!({"name": name, "title": title, "settings": {"type": "terms"}}))
            .collect();
        for (kind, wanted) in [
            ("fields", &fields[..]),
            ("questions", &questions[..]),
            ("metadata-properties", &metadata[..]),
        ] {
            let existing: HashSet<String> = self
                .retrying("reading a dataset's settings", || {
                    self.client.names_of(dataset_id, kind)
                })
                .await?
                .into_iter()
                .map(|n| n.name)
                .collect();
            for setting in wanted {
                let name = setting["name"].as_str().unwrap_or_default();
                if !existing.contains(name) {
                    self.retrying("configuring a dataset", || {
                        self.client.add(dataset_id, kind, setting.clone())
                    })
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Upserts the records the targets name and dead-letters those Argilla refuses for good.
    /// Fails (and so leaves the checkpoint where it was) while Argilla is unavailable.
    async fn export(
        &self,
        db: &mut PgConnection,
        targets: &[Target],
    ) -> anyhow::Result<ExportReport> {
        let request_ids: Vec<String> = targets
            .iter()
            .map(|t| t.request().to_string())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let requests = load_requests(db, &request_ids).await?;
        // The messages to write, each once, in log order.
        let mut seen = HashSet::new();
        let mut by_project: BTreeMap<Uuid, Vec<(Uuid, Uuid)>> = BTreeMap::new();
        for target in targets {
            let request_id = target.request();
            let Some(facts) = requests.get(&request_id) else {
                continue;
            };
            let Some(project_id) = facts.project_id else {
                continue;
            };
            let messages: Vec<Uuid> = match target {
                Target::Message { message, .. } => facts
                    .offers
                    .iter()
                    .filter(|o| o.message_id == *message)
                    .map(|o| o.message_id)
                    .collect(),
                Target::Request { .. } => facts.offers.iter().map(|o| o.message_id).collect(),
            };
            for message in messages {
                if seen.insert(message) {
                    by_project
                        .entry(project_id)
                        .or_default()
                        .push((request_id, message));
                }
            }
        }
        if by_project.is_empty() {
            return Ok(ExportReport::default());
        }
        let project_ids: Vec<Uuid> = by_project.keys().copied().collect();
        let projects = load_projects(db, &project_ids).await?;
        let names = load_names(db, &requests, &projects).await?;
        let mut report = ExportReport::default();
        let mut dead = Vec::new();
        for (project_id, messages) in by_project {
            let project = projects.get(&project_id);
            let project_name = project.map(|p| p.name.as_str()).unwrap_or_default();
            let dataset = self.dataset(project_id, project_name).await.map_err(|e| {
                anyhow::anyhow!("setting up the Argilla dataset of project {project_id}: {e}")
            })?;
            let records: Vec<(Uuid, Uuid, Value)> = messages
                .iter()
                .filter_map(|(request_id, message_id)| {
                    let facts = requests.get(request_id)?;
                    let record = record(
                        facts,
                        project,
                        &names,
                        *message_id,
                        dataset.quality_question,
                    )?;
                    Some((*request_id, *message_id, record))
                })
                .collect();
            for chunk in records.chunks(MAX_BULK) {
                let items: Vec<Value> = chunk.iter().map(|(_, _, r)| r.clone()).collect();
                match self
                    .retrying("upserting Argilla records", || {
                        self.client.upsert_records(dataset.id, &items)
                    })
                    .await
                {
                    Ok(()) => report.exported.extend(chunk.iter().map(|(_, m, _)| *m)),
                    Err(ArgillaError::Rejected {
                        status: 404,
                        detail,
                    }) => {
                        // The dataset was deleted in Argilla: make it again on the next try.
                        self.forget_dataset(project_id);
                        anyhow::bail!(
                            "the Argilla dataset of project {project_id} is gone: {detail}"
                        );
                    }
                    Err(ArgillaError::Rejected { .. }) => {
                        // One bad record refuses the whole call: find which, one by one.
                        for (request_id, message_id, item) in chunk {
                            match self
                                .retrying("upserting an Argilla record", || {
                                    self.client
                                        .upsert_records(dataset.id, std::slice::from_ref(item))
                                })
                                .await
                            {
                                Ok(()) => report.exported.push(*message_id),
                                Err(ArgillaError::Rejected { status, detail }) => {
                                    tracing::warn!(message = %message_id, status, %detail, "Argilla refused a record; dead-lettered");
                                    report.dead_lettered.push(*message_id);
                                    dead.push(DeadLetter {
                                        message_id: *message_id,
                                        request_id: *request_id,
                                        project_id,
                                        dataset: self.config.dataset_name(project_id),
                                        status,
                                        error: detail,
                                    });
                                }
                                Err(error) => {
                                    return Err(anyhow::anyhow!(
                                        "exporting message {message_id}: {error}"
                                    ))
                                }
                            }
                        }
                    }
                    Err(error) => return Err(anyhow::anyhow!("exporting to Argilla: {error}")),
                }
            }
        }
        if !report.exported.is_empty() {
            sqlx::query("DELETE FROM argilla_dead_letters WHERE message_id = ANY($1)")
                .bind(&report.exported)
                .execute(&mut *db)
                .await
                .context("clearing dead letters of exported messages")?;
        }
        for letter in dead {
            sqlx::query(
                "INSERT INTO argilla_dead_letters (message_id, request_id, project_id, dataset, status_code, error)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (message_id) DO UPDATE
                    SET status_code = EXCLUDED.status_code, error = EXCLUDED.error,
                        attempts = argilla_dead_letters.attempts + 1, last_failed_at = now(), requeued_at = NULL",
            )
            .bind(letter.message_id)
            .bind(letter.request_id)
            .bind(letter.project_id)
            .bind(&letter.dataset)
            .bind(letter.status as i32)
            .bind(&letter.error)
            .execute(&mut *db)
            .await
            .context("dead-lettering a message Argilla refused")?;
        }
        Ok(report)
    }

    /// Exports the dead letters an admin requeued. A refusal puts them back on the list.
    pub async fn export_requeued(&self) -> anyhow::Result<ExportReport> {
        let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT request_id, message_id FROM argilla_dead_letters
              WHERE requeued_at IS NOT NULL ORDER BY requeued_at, message_id LIMIT $1",
        )
        .bind(MAX_BULK as i64)
        .fetch_all(&self.pool)
        .await
        .context("reading requeued Argilla dead letters")?;
        if rows.is_empty() {
            return Ok(ExportReport::default());
        }
        let targets: Vec<Target> = rows
            .into_iter()
            .map(|(request, message)| Target::Message { request, message })
            .collect();
        let mut tx = self.pool.begin().await?;
        let report = self.export(&mut tx, &targets).await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn reviewer(&self, user_id: Uuid) -> String {
        if let Some(name) = self.reviewers.lock().expect("reviewer cache").get(&user_id) {
            return name.clone();
        }
        match self.client.username(user_id).await {
            Ok(name) => {
                self.reviewers
                    .lock()
                    .expect("reviewer cache")
                    .insert(user_id, name.clone());
                name
            }
            // Without an owner's rights the name cannot be read; the id still tells who.
            Err(_) => format!("argilla:{user_id}"),
        }
    }

    /// Reads every submitted response of every Offerflow dataset of the workspace and records
    /// those not recorded yet. Returns how many events were written.
    pub async fn sync_reviews(&self, ledger: &dyn ReviewLedger) -> anyhow::Result<usize> {
        let workspace = self
            .workspace_id()
            .await
            .map_err(|e| anyhow::anyhow!("finding the Argilla workspace: {e}"))?;
        let datasets = self
            .client
            .datasets(workspace)
            .await
            .map_err(|e| anyhow::anyhow!("listing Argilla datasets: {e}"))?;
        let mut reviews = Vec::new();
        for dataset in datasets {
            let Some(rest) = dataset.name.strip_prefix(&self.config.dataset_prefix) else {
                continue;
            };
            if Uuid::parse_str(rest).is_err() {
                continue;
            }
            let mut offset = 0;
            loop {
                let page = self
                    .client
                    .records_with_responses(dataset.id, offset, MAX_BULK)
                    .await
                    .map_err(|e| anyhow::anyhow!("reading responses of {}: {e}", dataset.name))?;
                let count = page.len();
                for record in page {
                    let Some(message_id) = record
                        .external_id
                        .as_deref()
                        .and_then(|id| Uuid::parse_str(id).ok())
                    else {
                        continue;
                    };
                    for response in record.responses {
                        if response.status != "submitted" {
                            continue;
                        }
                        match parse_response(message_id, &response) {
                            Some(review) => reviews.push((review, response.user_id)),
                            None => {
                                tracing::warn!(response = %response.id, "a submitted Argilla response without a valid quality; skipped")
                            }
                        }
                    }
                }
                if count < MAX_BULK {
                    break;
                }
                offset += count;
            }
        }
        if reviews.is_empty() {
            return Ok(0);
        }
        let message_ids: Vec<Uuid> = reviews.iter().map(|(r, _)| r.message_id).collect();
        let owners: HashMap<Uuid, Uuid> = sqlx::query_as::<_, (Uuid, Uuid)>(
            "SELECT id, request_id FROM client_request_messages WHERE id = ANY($1)",
        )
        .bind(&message_ids)
        .fetch_all(&self.pool)
        .await
        .context("finding the requests of reviewed messages")?
        .into_iter()
        .collect();
        let mut recorded = 0;
        for (mut review, user_id) in reviews {
            let Some(request_id) = owners.get(&review.message_id) else {
                tracing::debug!(message = %review.message_id, "a reviewed message is not in the read model yet");
                continue;
            };
            review.reviewer = self.reviewer(user_id).await;
            let message_id = review.message_id;
            match ledger.record_review(*request_id, review).await {
                Ok(true) => recorded += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(message = %message_id, error = format!("{error:#}"), "could not record a review")
                }
            }
        }
        Ok(recorded)
    }

    /// Sends requeued dead letters again (every second) and reads reviews back (every
    /// `sync_interval`) until shutdown.
    pub fn spawn(
        self: &Arc<Self>,
        ledger: Arc<dyn ReviewLedger>,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let exporter = Arc::clone(self);
        tokio::spawn(async move {
            let mut requeue = tokio::time::interval(Duration::from_secs(1));
            let mut sync = tokio::time::interval(exporter.config.sync_interval);
            requeue.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = requeue.tick() => {
                        if let Err(error) = exporter.export_requeued().await {
                            tracing::warn!(error = format!("{error:#}"), "exporting requeued messages failed; trying again");
                        }
                    }
                    _ = sync.tick() => {
                        match exporter.sync_reviews(ledger.as_ref()).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(reviews = n, "reviews recorded from Argilla"),
                            Err(error) => tracing::warn!(error = format!("{error:#}"), "reading reviews from Argilla failed; trying again later"),
                        }
                    }
                    _ = shutdown.changed() => return,
                }
            }
        })
    }
}

/// The metadata properties of every dataset: name and title.
const METADATA: [(&str, &str); 7] = [
    ("project", "Project"),
    ("product", "Product"),
    ("channel", "Channel"),
    ("client_cluster", "Client cluster"),
    ("prompt_version", "Prompt version"),
    ("model", "Model"),
    ("outcome", "Outcome"),
];

fn parse_response(message_id: Uuid, response: &super::client::Response) -> Option<Review> {
    let values = response.values.as_ref()?;
    let value = |name: &str| values.get(name).and_then(|v| v.get("value"));
    let quality = match value("quality")?.as_str()? {
        "ok" => MessageRating::Ok,
        "error" => MessageRating::Error,
        "revision" => MessageRating::Revision,
        _ => return None,
    };
    let corrected_text = value("corrected_text")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let rating = value("rating")
        .and_then(Value::as_u64)
        .filter(|r| (1..=5).contains(r))
        .map(|r| r as u8);
    Some(Review {
        message_id,
        response_id: response.id,
        updated_at: response.updated_at.clone(),
        reviewer: String::new(),
        quality,
        corrected_text,
        rating,
    })
}

/// Names of products and channels, by id.
type Names = HashMap<Uuid, String>;

fn record(
    facts: &RequestFacts,
    project: Option<&ProjectFacts>,
    names: &Names,
    message_id: Uuid,
    quality_question: Uuid,
) -> Option<Value> {
    let offer = facts.offers.iter().find(|o| o.message_id == message_id)?;
    let generation = facts.generations.get(&offer.generation_id)?;
    let prompt: Vec<Value> = generation
        .messages
        .iter()
        .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
        .collect();
    let name_of =
        |id: Option<Uuid>| id.map(|id| names.get(&id).cloned().unwrap_or_else(|| id.to_string()));
    let mut metadata = Map::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            metadata.insert(key.to_string(), Value::String(value));
        }
    };
    put("project", project.map(|p| p.name.clone()));
    put("product", name_of(project.and_then(|p| p.product_id)));
    put("channel", name_of(facts.channel_id));
    put("client_cluster", facts.cluster.clone());
    put(
        "prompt_version",
        Some(generation.prompt_version.to_string()),
    );
    put("model", Some(offer.model.clone()));
    put(
        "outcome",
        Some(
            facts
                .outcome
                .unwrap_or(Outcome::Undefined)
                .as_str()
                .to_string(),
        ),
    );
    let mut item = json!({
        "external_id": message_id.to_string(),
        "fields": {"prompt": prompt, "offer": offer.text},
        "metadata": metadata,
    });
    // The in-app rating is a hint to reviewers, not their answer.
    if let Some(rating) = offer.rating.filter(|r| *r != MessageRating::Undefined) {
        item["suggestions"] = json!([{
            "question_id": quality_question,
            "value": rating.as_str(),
            "agent": "offerflow-in-app-rating",
        }]);
    }
    Some(item)
}

async fn load_requests(
    db: &mut PgConnection,
    ids: &[String],
) -> anyhow::Result<HashMap<Uuid, RequestFacts>> {
    let rows: Vec<(String, Value)> = sqlx::query_as(
        "SELECT aggregate_id, payload FROM events
          WHERE aggregate_type = 'ClientRequest' AND aggregate_id = ANY($1)
          ORDER BY aggregate_id, sequence",
    )
    .bind(ids)
    .fetch_all(&mut *db)
    .await
    .context("reading client requests for the Argilla export")?;
    let mut facts: HashMap<Uuid, RequestFacts> = HashMap::new();
    for (id, payload) in rows {
        let id = Uuid::parse_str(&id).context("a client request id is not a UUID")?;
        let event: ClientRequestEvent = serde_json::from_value(payload)
            .with_context(|| format!("an event of client request {id} does not decode"))?;
        facts.entry(id).or_default().apply(event);
    }
    Ok(facts)
}

async fn load_projects(
    db: &mut PgConnection,
    ids: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, ProjectFacts>> {
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let rows: Vec<(String, Value)> = sqlx::query_as(
        "SELECT aggregate_id, payload FROM events
          WHERE aggregate_type = 'Project' AND aggregate_id = ANY($1)
            AND event_type IN ('ProjectCreated', 'ProjectRenamed')
          ORDER BY aggregate_id, sequence",
    )
    .bind(&ids)
    .fetch_all(&mut *db)
    .await
    .context("reading projects for the Argilla export")?;
    let mut facts: HashMap<Uuid, ProjectFacts> = HashMap::new();
    for (id, payload) in rows {
        let id = Uuid::parse_str(&id).context("a project id is not a UUID")?;
        let event: ProjectEvent = serde_json::from_value(payload)
            .with_context(|| format!("an event of project {id} does not decode"))?;
        let project = facts.entry(id).or_default();
        match event {
            ProjectEvent::ProjectCreated {
                name, product_id, ..
            } => {
                project.name = name;
                project.product_id = Some(product_id);
            }
            ProjectEvent::ProjectRenamed { name } => project.name = name,
            _ => {}
        }
    }
    Ok(facts)
}

/// Catalog names from the catalog read model; an id stands in for one not projected yet.
async fn load_names(
    db: &mut PgConnection,
    requests: &HashMap<Uuid, RequestFacts>,
    projects: &HashMap<Uuid, ProjectFacts>,
) -> anyhow::Result<Names> {
    let ids: Vec<Uuid> = requests
        .values()
        .filter_map(|r| r.channel_id)
        .chain(projects.values().filter_map(|p| p.product_id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, name FROM products WHERE id = ANY($1)
         UNION ALL SELECT id, name FROM sales_channels WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *db)
    .await
    .context("reading catalog names for the Argilla export")?;
    Ok(rows.into_iter().collect())
}

#[async_trait]
impl Projection for ArgillaExporter {
    fn name(&self) -> &'static str {
        SUBSCRIBER
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["ClientRequest"]
    }

    /// A replay sends everything again (upserts); the dead letters stay for admins to see.
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn is_reactor(&self) -> bool {
        true
    }

    async fn apply(&self, db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        self.apply_batch(db, &[event]).await
    }

    async fn apply_batch(
        &self,
        db: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> anyhow::Result<()> {
        let mut targets = Vec::new();
        for event in events {
            let request = event.aggregate_uuid()?;
            match event.event_type.as_str() {
                "MessageGenerated" | "MessageRated" => {
                    let message = match event.decode::<ClientRequestEvent>()? {
                        ClientRequestEvent::MessageGenerated { message_id, .. }
                        | ClientRequestEvent::MessageRated { message_id, .. } => message_id,
                        _ => continue,
                    };
                    targets.push(Target::Message { request, message });
                }
                "OutcomeRecorded" => targets.push(Target::Request { request }),
                _ => {}
            }
        }
        if targets.is_empty() {
            return Ok(());
        }
        self.export(db, &targets).await?;
        Ok(())
    }
}
