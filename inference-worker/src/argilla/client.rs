//! A small client of Argilla 2.x's REST API: only what the exporter and the review sync use.
//! Argilla is in maintenance mode upstream, so everything Argilla-specific stays behind this
//! module and [`super::exporter`].
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

/// Why a call failed, as far as retrying is concerned.
#[derive(Debug, thiserror::Error)]
pub enum ArgillaError {
    /// Connection refused or reset, a timeout, a 5xx or a 429: worth trying again later.
    #[error("Argilla is unavailable: {0}")]
    Unavailable(String),
    /// Argilla understood the call and refused it (4xx other than 429): trying again changes
    /// nothing until someone fixes the cause.
    #[error("Argilla refused the call ({status}): {detail}")]
    Rejected { status: u16, detail: String },
}

impl ArgillaError {
    pub fn is_rejected(&self) -> bool {
        matches!(self, ArgillaError::Rejected { .. })
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ArgillaError::Rejected { status, .. } => Some(*status),
            ArgillaError::Unavailable(_) => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Named {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatasetInfo {
    pub id: Uuid,
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub workspace_id: Option<Uuid>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Response {
    pub id: Uuid,
    #[serde(default)]
    pub values: Option<Value>,
    pub status: String,
    pub user_id: Uuid,
    pub updated_at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecordWithResponses {
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub responses: Vec<Response>,
}

#[derive(Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

#[derive(Clone)]
pub struct ArgillaClient {
    http: reqwest::Client,
    base: String,
    api_key: String,
}

/// Most records one bulk call may carry (Argilla refuses 501).
pub const MAX_BULK: usize = 500;

impl ArgillaClient {
    pub fn new(url: &str, api_key: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .context("building the Argilla HTTP client")?;
        let root = url.trim_end_matches('/');
        let base = if root.ends_with("/api/v1") {
            root.to_string()
        } else {
            format!("{root}/api/v1")
        };
        Ok(ArgillaClient {
            http,
            base,
            api_key: api_key.to_string(),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ArgillaError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("X-Argilla-Api-Key", &self.api_key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ArgillaError::Unavailable(format!("{method} {path}: {e}")))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| ArgillaError::Unavailable(format!("{method} {path}: reading: {e}")))?;
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            return Err(ArgillaError::Unavailable(format!(
                "{method} {path}: {status}: {}",
                truncate(&text)
            )));
        }
        if !status.is_success() {
            return Err(ArgillaError::Rejected {
                status: status.as_u16(),
                detail: format!("{method} {path}: {}", truncate(&text)),
            });
        }
        // An answer that is not what Argilla sends is a proxy or a half-started server.
        serde_json::from_str(&text).map_err(|e| {
            ArgillaError::Unavailable(format!(
                "{method} {path}: unexpected answer ({e}): {}",
                truncate(&text)
            ))
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ArgillaError> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: Value) -> Result<T, ArgillaError> {
        self.call(reqwest::Method::POST, path, Some(&body)).await
    }

    /// The workspace's id; created when missing (needs an owner's key).
    pub async fn workspace(&self, name: &str) -> Result<Uuid, ArgillaError> {
        let mine: Items<Named> = self.get("/me/workspaces").await?;
        if let Some(found) = mine.items.into_iter().find(|w| w.name == name) {
            return Ok(found.id);
        }
        let created: Named = self.post("/workspaces", json!({ "name": name })).await?;
        Ok(created.id)
    }

    pub async fn datasets(&self, workspace_id: Uuid) -> Result<Vec<DatasetInfo>, ArgillaError> {
        let all: Items<DatasetInfo> = self
            .get(&format!("/me/datasets?workspace_id={workspace_id}"))
            .await?;
        Ok(all
            .items
            .into_iter()
            .filter(|d| d.workspace_id.is_none_or(|w| w == workspace_id))
            .collect())
    }

    pub async fn find_dataset(
        &self,
        workspace_id: Uuid,
        name: &str,
    ) -> Result<Option<DatasetInfo>, ArgillaError> {
        Ok(self
            .datasets(workspace_id)
            .await?
            .into_iter()
            .find(|d| d.name == name))
    }

    pub async fn create_dataset(
        &self,
        workspace_id: Uuid,
        name: &str,
        guidelines: &str,
    ) -> Result<DatasetInfo, ArgillaError> {
        self.post(
            "/datasets",
            json!({
                "name": name,
                "workspace_id": workspace_id,
                "guidelines": guidelines,
                // A record whose metadata the dataset does not declare is refused, not kept
                // half-described.
                "allow_extra_metadata": false,
                "distribution": {"strategy": "overlap", "min_submitted": 1},
            }),
        )
        .await
    }

    pub async fn names_of(&self, dataset_id: Uuid, kind: &str) -> Result<Vec<Named>, ArgillaError> {
        // Argilla lists metadata properties under /me only (fields and questions: both).
        let path = if kind == "metadata-properties" {
            format!("/me/datasets/{dataset_id}/{kind}")
        } else {
            format!("/datasets/{dataset_id}/{kind}")
        };
        let list: Items<Named> = self.get(&path).await?;
        Ok(list.items)
    }

    pub async fn add(&self, dataset_id: Uuid, kind: &str, body: Value) -> Result<(), ArgillaError> {
        let _: Value = self
            .post(&format!("/datasets/{dataset_id}/{kind}"), body)
            .await?;
        Ok(())
    }

    pub async fn publish(&self, dataset_id: Uuid) -> Result<(), ArgillaError> {
        let _: Value = self
            .call(
                reqwest::Method::PUT,
                &format!("/datasets/{dataset_id}/publish"),
                None,
            )
            .await?;
        Ok(())
    }

    /// Creates or updates records by `external_id`; at most [`MAX_BULK`] at once.
    pub async fn upsert_records(
        &self,
        dataset_id: Uuid,
        items: &[Value],
    ) -> Result<(), ArgillaError> {
        let _: Value = self
            .call(
                reqwest::Method::PUT,
                &format!("/datasets/{dataset_id}/records/bulk"),
                Some(&json!({ "items": items })),
            )
            .await?;
        Ok(())
    }

    pub async fn records_with_responses(
        &self,
        dataset_id: Uuid,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<RecordWithResponses>, ArgillaError> {
        let page: Items<RecordWithResponses> = self
            .get(&format!(
                "/datasets/{dataset_id}/records?include=responses&offset={offset}&limit={limit}"
            ))
            .await?;
        Ok(page.items)
    }

    pub async fn username(&self, user_id: Uuid) -> Result<String, ArgillaError> {
        #[derive(Deserialize)]
        struct User {
            username: String,
        }
        let user: User = self.get(&format!("/users/{user_id}")).await?;
        Ok(user.username)
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(500).collect()
}

/// How long to wait before retry number `attempt` (1-based): doubling from `first`, at most
/// `max`, with up to half of it random so that many callers do not knock together.
pub fn backoff(attempt: u32, first: Duration, max: Duration) -> Duration {
    let base = first
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(max);
    let half = base / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}
