//! Who did what, when: each aggregate's history and the admins' audit feed of the whole log.
//!
//! The rights follow the aggregate's own: whoever may read a thing today may read its history.
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use domain::client_request::ClientRequest;
use futures::stream;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, ApiQuery, Page, ReadAfter};
use crate::history::{
    aggregate_history, parse_as_of, present, EventRow, LoggedEvent, EVENT_COLUMNS,
};
use crate::routes::projects::project_role;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_history))
        .routes(routes!(project_history))
        .routes(routes!(product_history))
        .routes(routes!(channel_history))
        .routes(routes!(user_history))
        .routes(routes!(audit_events))
}

/// An aggregate's events, oldest first.
#[derive(Serialize, ToSchema)]
pub struct History {
    pub items: Vec<LoggedEvent>,
    pub total: i64,
}

async fn history_of(
    state: &AppState,
    aggregate_type: &str,
    id: Uuid,
    page: &Page,
    what: &str,
) -> ApiResult<Json<History>> {
    let (items, total) = aggregate_history(
        &state.pool,
        aggregate_type,
        id,
        page.limit()?,
        page.offset()?,
    )
    .await?;
    if total == 0 {
        return Err(ApiError::not_found(what));
    }
    Ok(Json(History { items, total }))
}

/// A client request's events (members of its project).
#[utoipa::path(get, path = "/requests/{id}/history", tag = "audit", params(("id" = Uuid, Path), Page),
    responses((status = 200, body = History), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn request_history(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<History>> {
    // A request's project never changes: any copy of the request will do to find it.
    let request: ClientRequest = state.bus.recorded(id).await?;
    let project_id = request
        .project_id
        .ok_or_else(|| ApiError::not_found("client request"))?;
    project_role(&state, &caller, project_id)
        .await
        .map_err(|_| ApiError::not_found("client request"))?;
    history_of(&state, "ClientRequest", id, &page, "client request").await
}

/// A project's events (its members).
#[utoipa::path(get, path = "/projects/{id}/history", tag = "audit", params(("id" = Uuid, Path), Page),
    responses((status = 200, body = History), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn project_history(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<History>> {
    project_role(&state, &caller, id).await?;
    history_of(&state, "Project", id, &page, "project").await
}

/// A product's events (everyone signed in, as for the catalog).
#[utoipa::path(get, path = "/products/{id}/history", tag = "audit", params(("id" = Uuid, Path), Page),
    responses((status = 200, body = History), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn product_history(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<History>> {
    history_of(&state, "Product", id, &page, "product").await
}

/// A sales channel's events (everyone signed in, as for the catalog).
#[utoipa::path(get, path = "/channels/{id}/history", tag = "audit", params(("id" = Uuid, Path), Page),
    responses((status = 200, body = History), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn channel_history(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<History>> {
    history_of(&state, "SalesChannel", id, &page, "channel").await
}

/// A user's events (the user themselves, or admins).
#[utoipa::path(get, path = "/users/{id}/history", tag = "audit", params(("id" = Uuid, Path), Page),
    responses((status = 200, body = History), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn user_history(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<History>> {
    if !caller.is_admin && caller.user_id != id {
        // As for reading the user: the same answer whether or not the user exists.
        return Err(ApiError::Forbidden(
            "only an admin may read other users' history".into(),
        ));
    }
    history_of(&state, "User", id, &page, "user").await
}

/// The aggregate types of the log.
const AGGREGATE_TYPES: [&str; 5] = [
    "Product",
    "SalesChannel",
    "Project",
    "ClientRequest",
    "User",
];

#[derive(Deserialize, IntoParams)]
pub struct AuditFilter {
    /// A user's id (also matches the API tokens acting for them), a process's name, or `cli`.
    pub actor: Option<String>,
    /// `Product`, `SalesChannel`, `Project`, `ClientRequest` or `User`.
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    /// An event type, such as `OutcomeRecorded`.
    pub event_type: Option<String>,
    /// Events recorded at or after this RFC 3339 time.
    pub from: Option<String>,
    /// Events recorded at or before this RFC 3339 time.
    pub to: Option<String>,
    /// `json` (default: one page) or `jsonl` (every matching event, one per line, streamed).
    pub format: Option<String>,
}

/// The filter, checked.
#[derive(Clone)]
struct Checked {
    actor: Option<String>,
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    event_type: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

fn short_text(field: &str, value: Option<String>) -> ApiResult<Option<String>> {
    match value {
        Some(v) if v.is_empty() || v.len() > 200 => Err(ApiError::bad_request(
            field,
            format!("{field}: 1 to 200 characters"),
        )),
        other => Ok(other),
    }
}

fn time(field: &str, value: Option<String>) -> ApiResult<Option<DateTime<Utc>>> {
    value
        .map(|v| {
            parse_as_of(&v).ok_or_else(|| {
                ApiError::bad_request(
                    field,
                    format!("{field}: an RFC 3339 time, e.g. 2026-11-20T17:00:00Z"),
                )
            })
        })
        .transpose()
}

impl AuditFilter {
    fn check(self) -> ApiResult<(Checked, bool)> {
        if let Some(kind) = &self.aggregate_type {
            if !AGGREGATE_TYPES.contains(&kind.as_str()) {
                return Err(ApiError::bad_request(
                    "aggregate_type",
                    "aggregate_type: one of Product, SalesChannel, Project, ClientRequest, User",
                ));
            }
        }
        if let Some(kind) = &self.event_type {
            if kind.is_empty()
                || kind.len() > 100
                || !kind.chars().all(|c| c.is_ascii_alphanumeric())
            {
                return Err(ApiError::bad_request(
                    "event_type",
                    "event_type: an event type's name, such as OutcomeRecorded",
                ));
            }
        }
        let jsonl = match self.format.as_deref() {
            None | Some("json") => false,
            Some("jsonl") => true,
            Some(_) => return Err(ApiError::bad_request("format", "format: json or jsonl")),
        };
        let from = time("from", self.from)?;
        let to = time("to", self.to)?;
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                return Err(ApiError::bad_request("from", "from: must not be after to"));
            }
        }
        Ok((
            Checked {
                actor: short_text("actor", self.actor)?,
                aggregate_type: self.aggregate_type,
                aggregate_id: short_text("aggregate_id", self.aggregate_id)?,
                event_type: self.event_type,
                from,
                to,
            },
            jsonl,
        ))
    }
}

const AUDIT_CONDITION: &str = "($1::text IS NULL OR events.metadata ->> 'actor_id' = $1 OR events.metadata ->> 'on_behalf_of' = $1)
    AND ($2::text IS NULL OR events.aggregate_type = $2)
    AND ($3::text IS NULL OR events.aggregate_id = $3)
    AND ($4::text IS NULL OR events.event_type = $4)
    AND ($5::timestamptz IS NULL OR events.recorded_at >= $5)
    AND ($6::timestamptz IS NULL OR events.recorded_at <= $6)";

/// Rows a jsonl export reads per statement.
const EXPORT_CHUNK: i64 = 1_000;

/// The whole log in commit order, filtered (admins). `?format=jsonl` streams every matching
/// event, one JSON object per line, and ignores `limit`/`offset`.
#[utoipa::path(get, path = "/audit/events", tag = "audit", params(AuditFilter, Page),
    responses((status = 200, body = History, description = "a page; with `format=jsonl`, one event per line"),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
async fn audit_events(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiQuery(filter): ApiQuery<AuditFilter>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let (filter, jsonl) = filter.check()?;
    if jsonl {
        return Ok(export(state.pool.clone(), filter));
    }
    let rows: Vec<EventRow> = sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE {AUDIT_CONDITION}
          ORDER BY events.transaction_id, events.global_position LIMIT $7 OFFSET $8"
    ))
    .bind(&filter.actor)
    .bind(&filter.aggregate_type)
    .bind(&filter.aggregate_id)
    .bind(&filter.event_type)
    .bind(filter.from)
    .bind(filter.to)
    .bind(page.limit()?)
    .bind(page.offset()?)
    .fetch_all(&state.pool)
    .await?;
    let (total,): (i64,) = sqlx::query_as(&format!(
        "SELECT count(*) FROM events WHERE {AUDIT_CONDITION}"
    ))
    .bind(&filter.actor)
    .bind(&filter.aggregate_type)
    .bind(&filter.aggregate_id)
    .bind(&filter.event_type)
    .bind(filter.from)
    .bind(filter.to)
    .fetch_one(&state.pool)
    .await?;
    let items = present(&state.pool, rows).await?;
    Ok(Json(History { items, total }).into_response())
}

/// Streams the matching events in chunks read after the last one sent, so an export of the
/// whole log never holds it in memory and every chunk is a short statement.
fn export(pool: PgPool, filter: Checked) -> Response {
    // (transaction id as text, global position) of the last event sent.
    let start: Option<(String, i64)> = None;
    let lines = stream::unfold(Some(start), move |after| {
        let pool = pool.clone();
        let filter = filter.clone();
        async move {
            let after = after?;
            match export_chunk(&pool, &filter, after.as_ref()).await {
                Ok((text, next)) if !text.is_empty() => Some((Ok(text), Some(next))),
                Ok(_) => None,
                Err(e) => {
                    // The status line has gone out: cutting the stream short tells the client.
                    tracing::error!(error = %e, "audit export failed");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

async fn export_chunk(
    pool: &PgPool,
    filter: &Checked,
    after: Option<&(String, i64)>,
) -> anyhow::Result<(String, Option<(String, i64)>)> {
    let rows: Vec<EventRow> = sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE {AUDIT_CONDITION}
            AND ($7::text IS NULL OR (events.transaction_id, events.global_position) > ($7::text::xid8, $8))
          ORDER BY events.transaction_id, events.global_position LIMIT $9"
    ))
    .bind(&filter.actor)
    .bind(&filter.aggregate_type)
    .bind(&filter.aggregate_id)
    .bind(&filter.event_type)
    .bind(filter.from)
    .bind(filter.to)
    .bind(after.map(|a| a.0.as_str()))
    .bind(after.map_or(0, |a| a.1))
    .bind(EXPORT_CHUNK)
    .fetch_all(pool)
    .await?;
    let last = rows
        .last()
        .map(|r| (r.transaction_text.clone(), r.global_position));
    let mut text = String::new();
    for event in present(pool, rows).await? {
        text.push_str(&serde_json::to_string(&event)?);
        text.push('\n');
    }
    Ok((text, last))
}
