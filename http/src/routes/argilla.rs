//! The Argilla export's status and dead letters: messages Argilla refused for good, and
//! sending them again once the cause is fixed (admins).
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, ApiQuery, Page};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_status))
        .routes(routes!(dead_letters))
        .routes(routes!(requeue_dead_letter))
}

/// Where the export stands: whether this server exports at all, to where, how far behind the
/// log it is, and how many messages wait in the dead letters.
#[derive(Serialize, ToSchema)]
pub struct ExportStatus {
    /// False when the server runs without `OFFERFLOW_ARGILLA_URL`.
    pub configured: bool,
    pub url: Option<String>,
    pub workspace: Option<String>,
    pub dataset_prefix: Option<String>,
    /// Events the exporter has handled since its last rebuild.
    pub events_processed: Option<i64>,
    /// Committed events it has not handled yet.
    pub events_behind: Option<i64>,
    /// Age of the oldest event it has not handled, 0 when caught up.
    pub lag_seconds: Option<f64>,
    pub updated_at: Option<DateTime<Utc>>,
    pub dead_letters: i64,
}

/// The Argilla export's status (admins).
#[utoipa::path(get, path = "/admin/argilla/status", tag = "argilla",
    responses((status = 200, body = ExportStatus), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
async fn export_status(
    State(state): State<AppState>,
    caller: Authenticated,
) -> ApiResult<Json<ExportStatus>> {
    caller.require_admin()?;
    let (dead_letters,): (i64,) = sqlx::query_as("SELECT count(*) FROM argilla_dead_letters")
        .fetch_one(&state.pool)
        .await?;
    let config = state.argilla.as_ref().map(|a| a.config());
    let subscriber = if config.is_some() {
        state
            .engine
            .status()
            .await
            .map_err(ApiError::Internal)?
            .into_iter()
            .find(|s| s.name == inference_worker::argilla::SUBSCRIBER)
    } else {
        None
    };
    Ok(Json(ExportStatus {
        configured: config.is_some(),
        url: config.map(|c| c.url.clone()),
        workspace: config.map(|c| c.workspace.clone()),
        dataset_prefix: config.map(|c| c.dataset_prefix.clone()),
        events_processed: subscriber.as_ref().map(|s| s.events_processed),
        events_behind: subscriber.as_ref().map(|s| s.events_behind),
        lag_seconds: subscriber.as_ref().map(|s| s.lag_seconds),
        updated_at: subscriber.as_ref().map(|s| s.updated_at),
        dead_letters,
    }))
}

/// A message the exporter could not put into Argilla, and why.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct DeadLetterView {
    pub message_id: Uuid,
    pub request_id: Uuid,
    pub project_id: Uuid,
    /// The Argilla dataset it was meant for.
    pub dataset: String,
    /// Argilla's HTTP status.
    pub status_code: i32,
    /// Argilla's answer.
    pub error: String,
    /// Times Argilla refused it.
    pub attempts: i32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    /// Set while a requeued message waits to be sent again.
    pub requeued_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetterList {
    pub items: Vec<DeadLetterView>,
    pub total: i64,
}

/// Messages Argilla refused for good, newest first (admins).
#[utoipa::path(get, path = "/admin/argilla/dead-letters", tag = "argilla", params(Page),
    responses((status = 200, body = DeadLetterList), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
async fn dead_letters(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<DeadLetterList>> {
    caller.require_admin()?;
    let items: Vec<DeadLetterView> = sqlx::query_as(
        "SELECT message_id, request_id, project_id, dataset, status_code, error, attempts,
                first_failed_at, last_failed_at, requeued_at
           FROM argilla_dead_letters ORDER BY last_failed_at DESC, message_id LIMIT $1 OFFSET $2",
    )
    .bind(page.limit()?)
    .bind(page.offset()?)
    .fetch_all(&state.pool)
    .await?;
    let (total,): (i64,) = sqlx::query_as("SELECT count(*) FROM argilla_dead_letters")
        .fetch_one(&state.pool)
        .await?;
    Ok(Json(DeadLetterList { items, total }))
}

/// Sends a dead-lettered message to Argilla again (admins). The exporter picks it up within a
/// second; if Argilla accepts it, it leaves the list, else it is back with the new error.
#[utoipa::path(post, path = "/admin/argilla/dead-letters/{message_id}/requeue", tag = "argilla",
    params(("message_id" = Uuid, Path, description = "the offer's message id")),
    responses((status = 202, body = DeadLetterView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn requeue_dead_letter(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(message_id): ApiPath<Uuid>,
) -> ApiResult<(StatusCode, Json<DeadLetterView>)> {
    caller.require_admin()?;
    let (known,): (bool,) =
        sqlx::query_as("SELECT EXISTS (SELECT 1 FROM argilla_dead_letters WHERE message_id = $1)")
            .bind(message_id)
            .fetch_one(&state.pool)
            .await?;
    if !known {
        return Err(ApiError::not_found("dead letter"));
    }
    if state.argilla.is_none() {
        return Err(ApiError::Conflict {
            code: "argilla_export_off",
            message: "the Argilla export is not configured in this server (OFFERFLOW_ARGILLA_URL)"
                .into(),
        });
    }
    let requeued: Option<DeadLetterView> = sqlx::query_as(
        "UPDATE argilla_dead_letters SET requeued_at = coalesce(requeued_at, now())
          WHERE message_id = $1
      RETURNING message_id, request_id, project_id, dataset, status_code, error, attempts,
                first_failed_at, last_failed_at, requeued_at",
    )
    .bind(message_id)
    .fetch_optional(&state.pool)
    .await?;
    let requeued = requeued.ok_or_else(|| ApiError::not_found("dead letter"))?;
    Ok((StatusCode::ACCEPTED, Json(requeued)))
}
