//! Client requests: one client inside one project channel, and the outcome of the offer.
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use domain::client_request::{
    sent_text, ClientField, ClientRequest, ClientRequestCommand, ClientRequestEvent,
    ColumnDescription, MessageRating, Outcome,
};
use domain::ids;
use domain::project::Project;
use domain::Role;
use projections::read_models::client_requests::cluster_of;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::commands::Accepted;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::export::{download, Cell, Format, Table};
use crate::extract::{like_pattern, ApiJson, ApiPath, ApiQuery, Page, ReadAfter};
use crate::history::{events_until, fold, AsOf};
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
    /// The newest generated offer, with its rating (only in lists, so a table shows it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_offer: Option<LatestOffer>,
}

/// The newest offer of a request, as a list row shows it.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct LatestOffer {
    #[serde(skip)]
    pub request_id: Uuid,
    pub id: Uuid,
    pub text: String,
    /// Its rating: `ok`, `error`, `revision` or `undefined`.
    pub status: String,
    #[schema(value_type = Vec<String>)]
    pub flags: sqlx::types::Json<Vec<String>>,
    pub created_at: DateTime<Utc>,
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

impl MessageView {
    /// A message as its event first records it: unrated, unflagged, unreviewed.
    fn new(
        id: Uuid,
        message_type: &str,
        text: String,
        generation_id: Uuid,
        created_at: DateTime<Utc>,
    ) -> Self {
        MessageView {
            id,
            message_type: message_type.into(),
            text,
            status: MessageRating::Undefined.as_str().into(),
            comment: None,
            flags: sqlx::types::Json(Vec::new()),
            generation_id,
            parent_id: None,
            model: None,
            prompt_version: None,
            prompt_tokens: None,
            completion_tokens: None,
            duration_ms: None,
            created_at,
            review_quality: None,
            review_corrected_text: None,
            review_rating: None,
            reviewed_by: None,
            reviewed_at: None,
        }
    }
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
            latest_offer: None,
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
    /// `json` (default, paged); `csv` or `xlsx`: every matching request as a file, one row per
    /// client (id, its columns, cluster, outcome, status, the latest offer and its rating).
    pub format: Option<String>,
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

/// The clients of a project channel, filtered, sorted and paged (members); with `format=csv`
/// or `format=xlsx`, all of them as a file.
#[utoipa::path(get, path = "/projects/{id}/channels/{channel_id}/requests", tag = "requests",
    params(("id" = Uuid, Path), ("channel_id" = Uuid, Path), RequestFilter, Page),
    responses((status = 200, body = ClientRequestList, description = "JSON, or with format=csv|xlsx the file"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_requests(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath((project_id, channel_id)): ApiPath<(Uuid, Uuid)>,
    ApiQuery(filter): ApiQuery<RequestFilter>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Response> {
    project_role(&state, &caller, project_id).await?;
    let format = Format::parse(filter.format.as_deref())?;
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
    if format != Format::Json {
        let rows: Vec<ExportRow> = sqlx::query_as(&format!(
            // The latest offer's columns are renamed so that the filter and the order still
            // name only the request's own columns.
            "SELECT id, client_id, client_data, cluster, outcome, status, offer.offer_text, offer.offer_rating
               FROM client_requests
               LEFT JOIN LATERAL (SELECT m.text AS offer_text, m.rating AS offer_rating
                                    FROM client_request_messages m
                                   WHERE m.request_id = client_requests.id AND m.message_type = 'system'
                                   ORDER BY m.created_at DESC, m.id DESC LIMIT 1) offer ON true
              WHERE {condition} ORDER BY {order}"
        ))
        .bind(project_id)
        .bind(channel_id)
        .bind(&filter.status)
        .bind(&filter.success_type)
        .bind(&filter.source)
        .bind(&filter.client_id)
        .bind(&filter.cluster)
        .bind(&pattern)
        .fetch_all(&state.pool)
        .await?;
        return download(format, "requests", &[export_table(rows)?]);
    }
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
    let mut items: Vec<ClientRequestView> = rows
        .into_iter()
        .map(ClientRequestView::try_from)
        .collect::<Result<_, _>>()?;
    // One query for the whole page: the table shows each client's newest offer and rating.
    let ids: Vec<Uuid> = items.iter().map(|r| r.id).collect();
    let offers: Vec<LatestOffer> = sqlx::query_as(
        "SELECT DISTINCT ON (request_id) request_id, id, text, rating AS status, flags, created_at
           FROM client_request_messages
          WHERE request_id = ANY($1) AND message_type <> 'user'
          ORDER BY request_id, created_at DESC, id DESC",
    )
    .bind(&ids)
    .fetch_all(&state.pool)
    .await?;
    let mut offers: std::collections::HashMap<Uuid, LatestOffer> =
        offers.into_iter().map(|o| (o.request_id, o)).collect();
    for item in &mut items {
        item.latest_offer = offers.remove(&item.id);
    }
    Ok(Json(ClientRequestList { items, total }).into_response())
}

#[derive(sqlx::FromRow)]
struct ExportRow {
    id: Uuid,
    client_id: Option<String>,
    client_data: Value,
    cluster: Option<String>,
    outcome: String,
    status: String,
    offer_text: Option<String>,
    offer_rating: Option<String>,
}

/// The requests as one table: the client's columns in the order they first appear.
fn export_table(rows: Vec<ExportRow>) -> ApiResult<Table> {
    let mut columns: Vec<String> = Vec::new();
    let mut clients = Vec::with_capacity(rows.len());
    for row in &rows {
        let fields: Vec<ClientField> =
            serde_json::from_value(row.client_data.clone()).map_err(|e| {
                anyhow::anyhow!(
                    "request {}: stored client_data does not decode: {e}",
                    row.id
                )
            })?;
        for field in &fields {
            if !columns.contains(&field.key) {
                columns.push(field.key.clone());
            }
        }
        clients.push(fields);
    }
    let mut headers: Vec<String> = vec!["request_id".into(), "client_id".into()];
    headers.extend(columns.iter().cloned());
    headers.extend(
        [
            "cluster",
            "success_type",
            "status",
            "latest_offer",
            "offer_rating",
        ]
        .map(String::from),
    );
    let table_rows = rows
        .into_iter()
        .zip(clients)
        .map(|(row, fields)| {
            let mut cells: Vec<Cell> = vec![row.id.to_string().into(), row.client_id.into()];
            for column in &columns {
                cells.push(
                    match fields.iter().find(|f| &f.key == column).map(|f| &f.value) {
                        None | Some(Value::Null) => Cell::Empty,
                        Some(Value::String(text)) => Cell::Text(text.clone()),
                        Some(Value::Number(n)) => n
                            .as_i64()
                            .map(Cell::Int)
                            .or_else(|| n.as_f64().map(Cell::Float))
                            .unwrap_or(Cell::Empty),
                        Some(other) => Cell::Text(other.to_string()),
                    },
                );
            }
            cells.push(row.cluster.into());
            cells.push(row.outcome.into());
            cells.push(row.status.into());
            cells.push(row.offer_text.into());
            cells.push(row.offer_rating.into());
            cells
        })
        .collect();
    Ok(Table {
        name: "requests".into(),
        headers,
        rows: table_rows,
    })
}

/// One client request (members of its project). With `?as_of=` the request as it was then,
/// folded from the log: 404 if it did not exist yet.
#[utoipa::path(get, path = "/requests/{id}", tag = "requests", params(("id" = Uuid, Path), AsOf),
    responses((status = 200, body = ClientRequestView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_request(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(at): ApiQuery<AsOf>,
) -> ApiResult<Json<ClientRequestView>> {
    if let Some(as_of) = at.checked()? {
        return Ok(Json(request_as_of(&state, &caller, id, as_of).await?));
    }
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

/// The request as it was at `as_of`: the domain aggregate folded from the events recorded by
/// then, with the times and message details those events carry, in the live answer's shape.
async fn request_as_of(
    state: &AppState,
    caller: &Authenticated,
    id: Uuid,
    as_of: DateTime<Utc>,
) -> ApiResult<ClientRequestView> {
    let events = events_until::<ClientRequest>(&state.pool, id, as_of).await?;
    let request: ClientRequest = fold(&events);
    let (Some(project_id), Some(channel_id)) = (request.project_id, request.channel_id) else {
        return Err(ApiError::not_found("client request"));
    };
    project_role(state, caller, project_id)
        .await
        .map_err(|_| ApiError::not_found("client request"))?;
    let mut client_id = None;
    let mut source = String::new();
    let mut created_at = None;
    let mut updated_at = None;
    let mut status_reason = None;
    let mut messages: Vec<MessageView> = Vec::new();
    // `updated_at` and `status_reason` move on the events the requests table moves them on.
    for (at, event) in &events {
        let at = *at;
        match event {
            ClientRequestEvent::ClientRequestCreated {
                client_id: client,
                source: from,
                ..
            } => {
                client_id = client.clone();
                source = from.clone();
                created_at = Some(at);
                updated_at = Some(at);
            }
            ClientRequestEvent::OutcomeRecorded { .. } => updated_at = Some(at),
            ClientRequestEvent::GenerationRequested {
                generation_id,
                user_message_id,
                parent_message_id,
                instruction,
                messages: sent,
                model,
                prompt_version,
                ..
            } => {
                if !messages.iter().any(|m| m.id == *user_message_id) {
                    messages.push(MessageView {
                        parent_id: *parent_message_id,
                        model: Some(model.clone()),
                        prompt_version: Some(*prompt_version as i32),
                        ..MessageView::new(
                            *user_message_id,
                            "user",
                            sent_text(instruction.as_deref(), sent),
                            *generation_id,
                            at,
                        )
                    });
                }
                status_reason = None;
                updated_at = Some(at);
            }
            ClientRequestEvent::MessageGenerated {
                generation_id,
                message_id,
                text,
                model,
                prompt_tokens,
                completion_tokens,
                duration_ms,
                flags,
            } => {
                let asked = messages
                    .iter()
                    .find(|m| m.generation_id == *generation_id && m.message_type == "user")
                    .map(|m| (m.id, m.prompt_version));
                if !messages.iter().any(|m| m.id == *message_id) {
                    messages.push(MessageView {
                        flags: sqlx::types::Json(flags.clone()),
                        parent_id: asked.map(|(id, _)| id),
                        model: Some(model.clone()),
                        prompt_version: asked.and_then(|(_, version)| version),
                        prompt_tokens: Some(*prompt_tokens as i32),
                        completion_tokens: Some(*completion_tokens as i32),
                        duration_ms: Some(*duration_ms as i64),
                        ..MessageView::new(*message_id, "system", text.clone(), *generation_id, at)
                    });
                }
                status_reason = None;
                updated_at = Some(at);
            }
            ClientRequestEvent::GenerationFailed {
                error,
                permanent: true,
                ..
            } => {
                status_reason = Some(error.clone());
                updated_at = Some(at);
            }
            ClientRequestEvent::MessageRated {
                message_id,
                rating,
                comment,
            } => {
                if let Some(message) = messages.iter_mut().find(|m| m.id == *message_id) {
                    message.status = rating.as_str().into();
                    message.comment = comment.clone();
                }
            }
            ClientRequestEvent::GenerationRequeued { .. } => {
                status_reason = None;
                updated_at = Some(at);
            }
            // The newest review replaces the one before, as in the read model.
            ClientRequestEvent::MessageReviewed {
                message_id,
                reviewer,
                quality,
                corrected_text,
                rating,
                ..
            } => {
                if let Some(message) = messages.iter_mut().find(|m| m.id == *message_id) {
                    message.review_quality = Some(quality.as_str().into());
                    message.review_corrected_text = corrected_text.clone();
                    message.review_rating = rating.map(i16::from);
                    message.reviewed_by = Some(reviewer.clone());
                    message.reviewed_at = Some(at);
                }
            }
            // A failure that will be retried changes nothing shown here.
            _ => {}
        }
    }
    messages.sort_by_key(|m| (m.created_at, m.message_type != "user", m.id));
    let created_at = created_at.ok_or_else(|| ApiError::not_found("client request"))?;
    let columns = request
        .client_data
        .iter()
        .map(|f| ClientColumn {
            key: f.key.clone(),
            value: f.value.clone(),
            description: request
                .client_data_decoding
                .iter()
                .find(|d| d.key == f.key)
                .map(|d| d.description.clone()),
        })
        .collect();
    Ok(ClientRequestView {
        id,
        project_id,
        channel_id,
        client_id,
        source,
        client_data: request
            .client_data
            .iter()
            .map(|f| (f.key.clone(), f.value.clone()))
            .collect(),
        client_data_decoding: request
            .client_data_decoding
            .iter()
            .map(|d| (d.key.clone(), Value::String(d.description.clone())))
            .collect(),
        columns,
        cluster: cluster_of(&request.client_data),
        status: request.status().as_str().into(),
        status_reason,
        success_type: request
            .outcome
            .unwrap_or(Outcome::Undefined)
            .as_str()
            .into(),
        created_at,
        updated_at: updated_at.unwrap_or(created_at),
        messages: Some(messages),
        // Only the request list carries it; the live single view leaves it out too.
        latest_offer: None,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeUpdate {
    #[schema(value_type = String, example = "sold")]
    pub success_type: Outcome,
    /// The project member credited with the outcome (default: the caller).
    pub credited_to: Option<Uuid>,
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
    // The caller may record outcomes here (a member or an admin); anyone else credited must be
    // a member, so sales are never credited to strangers.
    let credited_to = body.credited_to.unwrap_or(caller.user_id);
    if credited_to != caller.user_id && !project.members.contains_key(&credited_to) {
        return Err(ApiError::invalid(
            "credited_to",
            "must be a member of the request's project",
        ));
    }
    let command = ClientRequestCommand::RecordOutcome {
        outcome: body.success_type,
        credited_to: Some(credited_to),
    };
    let done = state
        .bus
        .execute(&state.bus.requests, id, command, &caller.metadata())
        .await?;
    Ok(Json(done.accepted(id)))
}
