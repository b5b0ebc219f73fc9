//! Client requests: one client inside one project channel, and the outcome of the offer.
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::client_request::{
    ClientField, ClientRequest, ClientRequestCommand, ColumnDescription, Outcome,
};
use domain::ids;
use domain::project::Project;
use domain::Role;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::commands::Accepted;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{like_pattern, ApiJson, ApiPath, ApiQuery, Page, ReadAfter};
use crate::routes::projects::{created_or_ok, project_role};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_requests, create_request))
        .routes(routes!(get_request))
        .routes(routes!(record_outcome))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClientRequest {
    /// The bank's own id of the client, if any.
    pub client_id: Option<String>,
    /// Where the client came from: a file name, `api`, … (default `api`).
    pub source: Option<String>,
    /// The client's features, column → value; the order is kept.
    #[schema(value_type = Object, example = json!({"gender": "1", "age": 52.7, "super_clust": "k. Без продукта"}))]
    pub client_data: Map<String, Value>,
    /// Column → human description; every column of `client_data` needs one.
    #[schema(value_type = Object, example = json!({"gender": "Пол клиента (0 муж, 1 жен)", "age": "Возраст Клиента", "super_clust": "Кластер клиента"}))]
    #[serde(default)]
    pub client_data_decoding: Map<String, Value>,
}

/// Adds a client to a project channel (members). The same client data in the same channel is
/// the same request: a repeat answers 200 with the existing id.
#[utoipa::path(post, path = "/projects/{id}/channels/{channel_id}/requests", tag = "requests",
    params(("id" = Uuid, Path), ("channel_id" = Uuid, Path)), request_body = NewClientRequest,
    responses((status = 201, body = Accepted), (status = 200, body = Accepted, description = "the same client was already there"),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_request(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath((project_id, channel_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<NewClientRequest>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let project: Project = state.bus.load(project_id).await?;
    project.authorize_change(&caller.caller(), Role::Performer)?;
    let mut decoding = Vec::with_capacity(body.client_data_decoding.len());
    for (key, value) in body.client_data_decoding {
        match value {
            Value::String(description) => decoding.push((key, description)),
            _ => {
                return Err(ApiError::invalid(
                    format!("client_data_decoding.{key}"),
                    "must be a string",
                ))
            }
        }
    }
    let client_data: Vec<(String, Value)> = body.client_data.into_iter().collect();
    let id = ids::client_request_id(project_id, channel_id, &client_data);
    let command = ClientRequestCommand::Create {
        project_id,
        channel_id,
        channel_attached: project.channel_attached(channel_id),
        client_id: body.client_id,
        source: body.source.unwrap_or_default(),
        client_data,
        client_data_decoding: decoding,
    };
    let done = state
        .bus
        .execute(&state.bus.requests, id, command, &caller.metadata())
        .await?;
    let status = created_or_ok(&done);
    Ok((status, Json(done.accepted(id))))
}

#[derive(Serialize, ToSchema)]
pub struct ClientColumn {
    pub key: String,
    #[schema(value_type = Object)]
    pub value: Value,
    pub description: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ClientRequestView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub channel_id: Uuid,
    pub client_id: Option<String>,
    pub source: String,
    /// Column → value, in the client's column order.
    #[schema(value_type = Object)]
    pub client_data: Map<String, Value>,
    #[schema(value_type = Object)]
    pub client_data_decoding: Map<String, Value>,
    /// The same, as a list with each column's description.
    pub columns: Vec<ClientColumn>,
    /// The client's cluster (`super_clust`).
    pub cluster: Option<String>,
    /// `initial`, `in_progress`, `ok` or `error`.
    pub status: String,
    /// Why the newest generation failed for good, when `status` is `error`.
    pub status_reason: Option<String>,
    /// The outcome of the offer.
    pub success_type: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The thread in order (only on `GET /requests/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<MessageView>>,
}

/// One message of a request's thread.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct MessageView {
    pub id: Uuid,
    /// `user`: what was sent to the model; `system`: the model's offer.
    pub message_type: String,
    pub text: String,
    /// The offer's rating: `ok`, `error`, `revision` or `undefined`.
    pub status: String,
    pub comment: Option<String>,
    /// What the guardrails found: `too_long:<chars>/<max>`, `banned_phrase:<phrase>`,
    /// `boilerplate_removed`, `cut_at_max_tokens`, …
    #[schema(value_type = Vec<String>)]
    pub flags: sqlx::types::Json<Vec<String>>,
    pub generation_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub model: Option<String>,
    pub prompt_version: Option<i32>,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub duration_ms: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// The newest review from Argilla: `ok`, `error` or `revision`; none if not reviewed.
    pub review_quality: Option<String>,
    /// The reviewer's corrected text, if any.
    pub review_corrected_text: Option<String>,
    /// The reviewer's 1–5 rating, if any.
    pub review_rating: Option<i16>,
    /// Who reviewed it in Argilla (their Argilla user name).
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct RequestRow {
    id: Uuid,
    project_id: Uuid,
    channel_id: Uuid,
    client_id: Option<String>,
    source: String,
    client_data: Value,
    client_data_decoding: Value,
    cluster: Option<String>,
    status: String,
    status_reason: Option<String>,
    outcome: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<RequestRow> for ClientRequestView {
    type Error = ApiError;

    fn try_from(row: RequestRow) -> Result<Self, ApiError> {
        let fields: Vec<ClientField> = serde_json::from_value(row.client_data).map_err(|e| {
            anyhow::anyhow!(
                "request {}: stored client_data does not decode: {e}",
                row.id
            )
        })?;
        let descriptions: Vec<ColumnDescription> = serde_json::from_value(row.client_data_decoding)
            .map_err(|e| {
                anyhow::anyhow!("request {}: stored decoding does not decode: {e}", row.id)
            })?;
        let describe = |key: &str| {
            descriptions
                .iter()
                .find(|d| d.key == key)
                .map(|d| d.description.clone())
        };
        Ok(ClientRequestView {
            id: row.id,
            project_id: row.project_id,
            channel_id: row.channel_id,
            client_id: row.client_id,
            source: row.source,
            client_data: fields
                .iter()
                .map(|f| (f.key.clone(), f.value.clone()))
                .collect(),
            client_data_decoding: descriptions
                .iter()
                .map(|d| (d.key.clone(), Value::String(d.description.clone())))
                .collect(),
            columns: fields
                .iter()
                .map(|f| ClientColumn {
                    key: f.key.clone(),
                    value: f.value.clone(),
                    description: describe(&f.key),
                })
                .collect(),
            cluster: row.cluster,
            status: row.status,
            status_reason: row.status_reason,
            success_type: row.outcome,
            created_at: row.created_at,
            updated_at: row.updated_at,
            messages: None,
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct ClientRequestList {
    pub items: Vec<ClientRequestView>,
    pub total: i64,
}

#[derive(Deserialize, IntoParams)]
pub struct RequestFilter {
    /// `initial`, `in_progress`, `ok` or `error`.
    pub status: Option<String>,
    /// An outcome: `sold`, `reflection`, `interest`, `negative_reaction`, `positive_reaction`, `undefined`.
    pub success_type: Option<String>,
    pub source: Option<String>,
    pub client_id: Option<String>,
    /// The client's `super_clust` value.
    pub cluster: Option<String>,
    /// Search in client id, source, cluster and the client's data.
    pub q: Option<String>,
    /// `created_at` (default), `client_id`, `status`, `success_type`, `cluster`, `source`;
    /// prefix `-` for descending.
    pub sort: Option<String>,
}

const STATUSES: [&str; 4] = ["initial", "in_progress", "ok", "error"];

fn sort_clause(sort: Option<&str>) -> ApiResult<String> {
    let sort = sort.unwrap_or("created_at");
    let (column, direction) = match sort.strip_prefix('-') {
        Some(column) => (column, "DESC"),
        None => (sort, "ASC"),
    };
    let column = match column {
        "created_at" | "client_id" | "status" | "cluster" | "source" | "updated_at" => column,
        "success_type" => "outcome",
        _ => {
            return Err(ApiError::bad_request(
                "sort",
                "sort: one of created_at, updated_at, client_id, status, success_type, cluster, source (prefix - for descending)",
            ))
        }
    };
    Ok(format!("{column} {direction} NULLS LAST, id {direction}"))
}

/// The clients of a project channel, filtered, sorted and paged (members).
#[utoipa::path(get, path = "/projects/{id}/channels/{channel_id}/requests", tag = "requests",
    params(("id" = Uuid, Path), ("channel_id" = Uuid, Path), RequestFilter, Page),
    responses((status = 200, body = ClientRequestList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_requests(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath((project_id, channel_id)): ApiPath<(Uuid, Uuid)>,
    ApiQuery(filter): ApiQuery<RequestFilter>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<ClientRequestList>> {
    project_role(&state, &caller, project_id).await?;
    if let Some(status) = &filter.status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(ApiError::bad_request(
                "status",
                "status: one of initial, in_progress, ok, error",
            ));
        }
    }
    if let Some(outcome) = &filter.success_type {
        if Outcome::parse(outcome).is_none() {
            return Err(ApiError::bad_request(
                "success_type",
                "success_type: one of sold, reflection, interest, negative_reaction, positive_reaction, undefined",
            ));
        }
    }
    let order = sort_clause(filter.sort.as_deref())?;
    let pattern = like_pattern(&filter.q);
    let condition = "project_id = $1 AND channel_id = $2
        AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR outcome = $4)
        AND ($5::text IS NULL OR source = $5) AND ($6::text IS NULL OR client_id = $6)
        AND ($7::text IS NULL OR cluster = $7)
        AND ($8::text IS NULL OR client_id ILIKE $8 OR source ILIKE $8 OR cluster ILIKE $8 OR client_data::text ILIKE $8)";
    let rows: Vec<RequestRow> = sqlx::query_as(&format!(
        "SELECT id, project_id, channel_id, client_id, source, client_data, client_data_decoding, cluster, status,
                status_reason, outcome, created_at, updated_at
           FROM client_requests WHERE {condition} ORDER BY {order} LIMIT $9 OFFSET $10"
    ))
    .bind(project_id)
    .bind(channel_id)
    .bind(&filter.status)
    .bind(&filter.success_type)
    .bind(&filter.source)
    .bind(&filter.client_id)
    .bind(&filter.cluster)
    .bind(&pattern)
    .bind(page.limit()?)
    .bind(page.offset()?)
    .fetch_all(&state.pool)
    .await?;
    let (total,): (i64,) = sqlx::query_as(&format!(
        "SELECT count(*) FROM client_requests WHERE {condition}"
    ))
    .bind(project_id)
    .bind(channel_id)
    .bind(&filter.status)
    .bind(&filter.success_type)
    .bind(&filter.source)
    .bind(&filter.client_id)
    .bind(&filter.cluster)
    .bind(&pattern)
    .fetch_one(&state.pool)
    .await?;
    let items = rows
        .into_iter()
        .map(ClientRequestView::try_from)
        .collect::<Result<_, _>>()?;
    Ok(Json(ClientRequestList { items, total }))
}

/// One client request (members of its project).
#[utoipa::path(get, path = "/requests/{id}", tag = "requests", params(("id" = Uuid, Path)),
    responses((status = 200, body = ClientRequestView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn get_request(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<ClientRequestView>> {
    let row: RequestRow = sqlx::query_as(
        "SELECT id, project_id, channel_id, client_id, source, client_data, client_data_decoding, cluster, status,
                status_reason, outcome, created_at, updated_at FROM client_requests WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("client request"))?;
    project_role(&state, &caller, row.project_id)
        .await
        .map_err(|_| ApiError::not_found("client request"))?;
    let messages: Vec<MessageView> = sqlx::query_as(
        "SELECT id, message_type, text, rating AS status, rating_comment AS comment, flags, generation_id, parent_id,
                model, prompt_version, prompt_tokens, completion_tokens, duration_ms, created_at,
                review_quality, review_corrected_text, review_rating, reviewed_by, reviewed_at
           FROM client_request_messages WHERE request_id = $1
          ORDER BY created_at, CASE message_type WHEN 'user' THEN 0 ELSE 1 END, id",
    )
    .bind(id)
    .fetch_all(&state.pool)
    .await?;
    let mut view: ClientRequestView = row.try_into()?;
    view.messages = Some(messages);
    Ok(Json(view))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeUpdate {
    #[schema(value_type = String, example = "sold")]
    pub success_type: Outcome,
}

/// Records what came of the offer (members).
#[utoipa::path(put, path = "/requests/{id}/outcome", tag = "requests", params(("id" = Uuid, Path)), request_body = OutcomeUpdate,
    responses((status = 200, body = Accepted), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn record_outcome(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<OutcomeUpdate>,
) -> ApiResult<Json<Accepted>> {
    // A request's project never changes: any copy of the request will do to find it.
    let request: ClientRequest = state.bus.recorded(id).await?;
    let project_id = request
        .project_id
        .ok_or_else(|| ApiError::not_found("client request"))?;
    let project: Project = state.bus.load(project_id).await?;
    project
        .authorize_change(&caller.caller(), Role::Performer)
        .map_err(|e| match e {
            domain::DomainError::NotFound { .. } => ApiError::not_found("client request"),
            other => other.into(),
        })?;
    let command = ClientRequestCommand::RecordOutcome {
        outcome: body.success_type,
    };
    let done = state
        .bus
        .execute(&state.bus.requests, id, command, &caller.metadata())
        .await?;
    Ok(Json(done.accepted(id)))
}
