//! Generating offers: for one request (first offer or follow-up), for a batch of a project
//! channel, rating offers, following a batch's progress, and the dead-job admin.
use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use domain::client_request::{ClientRequest, ClientRequestCommand, MessageRating, RequestStatus};
use domain::project::Project;
use domain::{DomainError, Role};
use futures::stream::{self, Stream, StreamExt};
use inference_worker::jobs::{ChannelProgress, DeadJob};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::commands::Accepted;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::event_store::Recency;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Page, ReadAfter};
use crate::generation::{request_generation, ChannelFacts, GenerationAsk, ParamsOverride};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(generate_for_request))
        .routes(routes!(generate_for_channel))
        .routes(routes!(rate_message))
        .routes(routes!(generation_progress))
        .routes(routes!(generation_progress_stream))
        .routes(routes!(dead_jobs))
        .routes(routes!(requeue_dead_job))
}

/// Most requests one batch call may name.
pub const MAX_BATCH: usize = 10_000;
/// Commands of one batch in flight at once: enough for the appender to group them.
const BATCH_CONCURRENCY: usize = 64;

/// A project-level "not found" for a request the caller may not see.
fn hide(error: DomainError) -> ApiError {
    match error {
        DomainError::NotFound { .. } => ApiError::not_found("client request"),
        other => other.into(),
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerationOrder {
    /// For a follow-up: what to change in the offer (needs `parent_message_id`). For a first
    /// offer: an extra wish added after the standard instruction.
    pub instruction: Option<String>,
    /// The offer this follow-up continues from; the whole thread that made it is sent again.
    pub parent_message_id: Option<Uuid>,
    pub params: Option<ParamsOverride>,
}

#[derive(Serialize, ToSchema)]
pub struct GenerationQueued {
    pub generation_id: Uuid,
    pub request_id: Uuid,
    pub consistency_token: Option<String>,
}

/// Asks for an offer for one client request, or a follow-up on one of its offers (members).
#[utoipa::path(post, path = "/requests/{id}/generations", tag = "generation", params(("id" = Uuid, Path)),
    request_body = GenerationOrder,
    responses((status = 202, body = GenerationQueued), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "an offer for this client is being generated"),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn generate_for_request(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(order): ApiJson<GenerationOrder>,
) -> ApiResult<(StatusCode, Json<GenerationQueued>)> {
    let mut request: ClientRequest = state.bus.load(id).await?;
    let project_id = request
        .project_id
        .ok_or_else(|| ApiError::not_found("client request"))?;
    let channel_id = request
        .channel_id
        .ok_or_else(|| ApiError::not_found("client request"))?;
    let project: Project = state.bus.load(project_id).await?;
    project
        .authorize_change(&caller.caller(), Role::Performer)
        .map_err(hide)?;
    if let Some(parent) = order.parent_message_id {
        if request.thread_for(parent).is_none() {
            // The offer may be another process's write of the last second.
            request = state
                .bus
                .requests
                .current(id, Recency::AtMost(Duration::ZERO))
                .await?
                .aggregate;
        }
    }
    let params = order
        .params
        .unwrap_or_default()
        .over(state.generation.default_params);
    params.validate()?;
    let facts = ChannelFacts::load(&state.bus, &project, channel_id).await?;
    let ask = GenerationAsk {
        instruction: order.instruction,
        parent_message_id: order.parent_message_id,
        params,
    };
    let (generation_id, done) = request_generation(
        &state.bus,
        &state.generation,
        &facts,
        id,
        &request,
        ask,
        &caller.metadata(),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(GenerationQueued {
            generation_id,
            request_id: id,
            consistency_token: done.token.map(|t| t.to_string()),
        }),
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchOrder {
    /// The client requests of this channel to generate for (at most 10 000).
    pub request_ids: Option<Vec<Uuid>>,
    /// Instead of `request_ids`: every request of the channel without an offer (status
    /// `initial` or `error`).
    pub all_pending: Option<bool>,
    pub params: Option<ParamsOverride>,
}

#[derive(Serialize, ToSchema)]
pub struct QueuedGeneration {
    pub request_id: Uuid,
    pub generation_id: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct SkippedRequest {
    pub request_id: Uuid,
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct BatchQueued {
    /// How many generations were queued.
    pub queued: usize,
    pub generations: Vec<QueuedGeneration>,
    /// Requests left alone, e.g. because an offer for them is being generated.
    pub skipped: Vec<SkippedRequest>,
    pub consistency_token: Option<String>,
}

/// Generates offers for many clients of a project channel (members). Requests whose offer is
/// being generated are skipped, not failed.
#[utoipa::path(post, path = "/projects/{id}/channels/{channel_id}/generations", tag = "generation",
    params(("id" = Uuid, Path), ("channel_id" = Uuid, Path)), request_body = BatchOrder,
    responses((status = 202, body = BatchQueued), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn generate_for_channel(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath((project_id, channel_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(order): ApiJson<BatchOrder>,
) -> ApiResult<(StatusCode, Json<BatchQueued>)> {
    let project: Project = state.bus.load(project_id).await?;
    project.authorize_change(&caller.caller(), Role::Performer)?;
    let facts = ChannelFacts::load(&state.bus, &project, channel_id).await?;
    let params = order
        .params
        .unwrap_or_default()
        .over(state.generation.default_params);
    params.validate()?;
    let ids: Vec<Uuid> = match (order.request_ids, order.all_pending) {
        (Some(_), Some(true)) => {
            return Err(ApiError::invalid(
                "all_pending",
                "give either request_ids or all_pending, not both",
            ))
        }
        (Some(ids), _) => {
            if ids.is_empty() {
                return Err(ApiError::invalid(
                    "request_ids",
                    "must name at least one request",
                ));
            }
            if ids.len() > MAX_BATCH {
                return Err(ApiError::invalid(
                    "request_ids",
                    format!("at most {MAX_BATCH} requests per call"),
                ));
            }
            let mut seen = HashSet::new();
            ids.into_iter().filter(|id| seen.insert(*id)).collect()
        }
        (None, Some(true)) => {
            // "Every request without an offer" means as of now, including clients added a
            // moment ago that the read model may not show yet.
            if let Some(head) = state.engine.head().await? {
                let wait = Duration::from_millis(state.config.consistency_wait_ms);
                if !state.engine.wait_for(head, wait).await? {
                    return Err(ApiError::Unavailable(
                        "the read models are behind the log; try again shortly".into(),
                    ));
                }
            }
            sqlx::query_scalar(
                "SELECT id FROM client_requests
              WHERE project_id = $1 AND channel_id = $2 AND status IN ('initial', 'error')
              ORDER BY created_at, id",
            )
            .bind(project_id)
            .bind(channel_id)
            .fetch_all(&state.pool)
            .await?
        }
        (None, _) => {
            return Err(ApiError::invalid(
                "request_ids",
                "name the requests, or set all_pending: true",
            ))
        }
    };
    // Every named request must be this channel's before anything is queued.
    let requests: Vec<Result<ClientRequest, ApiError>> = stream::iter(ids.iter().copied())
        .map(|id| {
            let bus = &state.bus;
            async move { bus.recorded::<ClientRequest>(id).await }
        })
        .buffered(BATCH_CONCURRENCY)
        .collect()
        .await;
    let mut work = Vec::with_capacity(ids.len());
    for (index, (id, request)) in ids.iter().zip(requests).enumerate() {
        let request = request?;
        if request.project_id != Some(project_id) || request.channel_id != Some(channel_id) {
            return Err(ApiError::invalid(
                format!("request_ids[{index}]"),
                format!("{id} is not a client request of this project channel"),
            ));
        }
        work.push((*id, request));
    }
    let metadata = caller.metadata();
    let results: Vec<(Uuid, QueueResult)> = stream::iter(work)
        .map(|(id, request)| {
            let (state, facts, metadata) = (&state, &facts, &metadata);
            async move {
                if request.status() == RequestStatus::InProgress {
                    return (
                        id,
                        Err(ApiError::Conflict {
                            code: "in_progress",
                            message: "an offer for this client is being generated".into(),
                        }),
                    );
                }
                let ask = GenerationAsk {
                    instruction: None,
                    parent_message_id: None,
                    params,
                };
                let result = request_generation(
                    &state.bus,
                    &state.generation,
                    facts,
                    id,
                    &request,
                    ask,
                    metadata,
                )
                .await;
                (id, result)
            }
        })
        .buffer_unordered(BATCH_CONCURRENCY)
        .collect()
        .await;
    let mut generations = Vec::new();
    let mut skipped = Vec::new();
    let mut newest = None;
    for (request_id, result) in results {
        match result {
            Ok((generation_id, done)) => {
                newest = newest.max(done.token);
                generations.push(QueuedGeneration {
                    request_id,
                    generation_id,
                });
            }
            Err(ApiError::Conflict { message, .. }) => skipped.push(SkippedRequest {
                request_id,
                reason: message,
            }),
            Err(ApiError::Unprocessable { message, .. }) => skipped.push(SkippedRequest {
                request_id,
                reason: message,
            }),
            Err(other) => return Err(other),
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchQueued {
            queued: generations.len(),
            generations,
            skipped,
            consistency_token: newest.map(|t| t.to_string()),
        }),
    ))
}

/// One request of a batch: its generation id, or why it was not queued.
type QueueResult = Result<(Uuid, crate::commands::Executed), ApiError>;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RatingUpdate {
    /// `ok`, `error`, `revision` or `undefined`.
    #[schema(value_type = String, example = "ok")]
    pub status: MessageRating,
    pub comment: Option<String>,
}

/// Rates a generated offer (members).
#[utoipa::path(put, path = "/messages/{id}/rating", tag = "generation", params(("id" = Uuid, Path)),
    request_body = RatingUpdate,
    responses((status = 200, body = Accepted), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn rate_message(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<RatingUpdate>,
) -> ApiResult<Json<Accepted>> {
    let request_id: Uuid = sqlx::query_scalar(
        "SELECT request_id FROM client_request_messages WHERE id = $1 AND message_type = 'system'",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("message"))?;
    let request: ClientRequest = state.bus.recorded(request_id).await?;
    let project_id = request
        .project_id
        .ok_or_else(|| ApiError::not_found("message"))?;
    let project: Project = state.bus.load(project_id).await?;
    project
        .authorize_change(&caller.caller(), Role::Performer)
        .map_err(|e| match e {
            DomainError::NotFound { .. } => ApiError::not_found("message"),
            other => other.into(),
        })?;
    let command = ClientRequestCommand::RateMessage {
        message_id: id,
        rating: body.status,
        comment: body.comment,
    };
    let done = state
        .bus
        .execute(&state.bus.requests, request_id, command, &caller.metadata())
        .await?;
    Ok(Json(done.accepted(id)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct GenerationProgress {
    /// Waiting for a worker (including retries waiting for their time).
    pub queued: i64,
    /// Being generated now.
    pub running: i64,
    /// Ended with an offer.
    pub done: i64,
    /// Failed for good.
    pub failed: i64,
    pub total: i64,
}

impl From<ChannelProgress> for GenerationProgress {
    fn from(p: ChannelProgress) -> Self {
        GenerationProgress {
            queued: p.queued,
            running: p.running,
            done: p.done,
            failed: p.failed,
            total: p.queued + p.running + p.done + p.failed,
        }
    }
}

/// Members (and admins) see a project's progress; others get 404. Decided on the aggregate, so
/// a project created a moment ago is already there.
async fn may_see(state: &AppState, caller: &Authenticated, project_id: Uuid) -> ApiResult<()> {
    let project: Project = state.bus.load(project_id).await?;
    project.authorize(&caller.caller(), Role::Performer)?;
    Ok(())
}

async fn progress_of(
    state: &AppState,
    project_id: Uuid,
    channel_id: Uuid,
) -> ApiResult<GenerationProgress> {
    Ok(state
        .jobs
        .channel_progress(project_id, channel_id)
        .await?
        .into())
}

/// How a project channel's generations stand: queued, running, done, failed (members).
#[utoipa::path(get, path = "/projects/{id}/channels/{channel_id}/generation-progress", tag = "generation",
    params(("id" = Uuid, Path), ("channel_id" = Uuid, Path)),
    responses((status = 200, body = GenerationProgress), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn generation_progress(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath((project_id, channel_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<GenerationProgress>> {
    may_see(&state, &caller, project_id).await?;
    Ok(Json(progress_of(&state, project_id, channel_id).await?))
}

/// The same counts as a server-sent-events stream: an `progress` event now and whenever they
/// change (members).
#[utoipa::path(get, path = "/projects/{id}/channels/{channel_id}/generation-progress/stream", tag = "generation",
    params(("id" = Uuid, Path), ("channel_id" = Uuid, Path)),
    responses((status = 200, content_type = "text/event-stream", body = GenerationProgress), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn generation_progress_stream(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath((project_id, channel_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    may_see(&state, &caller, project_id).await?;
    let first = progress_of(&state, project_id, channel_id).await?;
    let commits = state.engine.commits();
    let stopping = state.stopping.clone();
    // Commits wake it at once (a worker's result is a commit); the timer covers leases and
    // retries, which change counts without an event.
    let updates = stream::unfold(
        (state, commits, stopping, None::<GenerationProgress>),
        move |(state, mut commits, mut stopping, last)| async move {
            loop {
                if *stopping.borrow() {
                    return None;
                }
                if last.is_some() {
                    tokio::select! {
                        _ = commits.changed() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stopping.changed() => return None,
                    }
                    // Let a burst of results land before counting.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let now = match last {
                    None => first,
                    Some(_) => match progress_of(&state, project_id, channel_id).await {
                        Ok(now) => now,
                        Err(error) => {
                            tracing::warn!(%error, "progress stream cannot count");
                            continue;
                        }
                    },
                };
                if Some(now) != last {
                    let event = Event::default()
                        .event("progress")
                        .json_data(now)
                        .unwrap_or_else(|_| Event::default().event("progress"));
                    return Some((Ok(event), (state, commits, stopping, Some(now))));
                }
            }
        },
    );
    Ok(Sse::new(updates).keep_alive(KeepAlive::default()))
}

#[derive(Serialize, ToSchema)]
pub struct DeadJobView {
    pub generation_id: Uuid,
    pub request_id: Uuid,
    pub project_id: Uuid,
    pub channel_id: Uuid,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub died_at: chrono::DateTime<chrono::Utc>,
}

impl From<DeadJob> for DeadJobView {
    fn from(j: DeadJob) -> Self {
        DeadJobView {
            generation_id: j.generation_id,
            request_id: j.request_id,
            project_id: j.project_id,
            channel_id: j.channel_id,
            attempts: j.attempts,
            last_error: j.last_error,
            created_at: j.created_at,
            died_at: j.died_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeadJobList {
    pub items: Vec<DeadJobView>,
    pub total: i64,
}

/// Generations that failed for good, newest first (admins).
#[utoipa::path(get, path = "/admin/dead-jobs", tag = "generation", params(Page),
    responses((status = 200, body = DeadJobList), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
async fn dead_jobs(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<DeadJobList>> {
    caller.require_admin()?;
    let (items, total) = state.jobs.dead_jobs(page.limit()?, page.offset()?).await?;
    Ok(Json(DeadJobList {
        items: items.into_iter().map(Into::into).collect(),
        total,
    }))
}

/// Sends a dead generation back to the workers, with its attempts counted from zero (admins).
#[utoipa::path(post, path = "/admin/dead-jobs/{id}/requeue", tag = "generation", params(("id" = Uuid, Path, description = "the generation id")),
    responses((status = 202, body = GenerationQueued), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn requeue_dead_job(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(generation_id): ApiPath<Uuid>,
) -> ApiResult<(StatusCode, Json<GenerationQueued>)> {
    caller.require_admin()?;
    let (request_id, job_state) = state
        .jobs
        .job(generation_id)
        .await?
        .ok_or_else(|| ApiError::not_found("dead job"))?;
    if job_state != "dead" {
        return Err(ApiError::Conflict {
            code: "not_dead",
            message: format!("generation {generation_id} is {job_state}, not dead"),
        });
    }
    let done = state
        .bus
        .execute(
            &state.bus.requests,
            request_id,
            ClientRequestCommand::RequeueGeneration { generation_id },
            &caller.metadata(),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(GenerationQueued {
            generation_id,
            request_id,
            consistency_token: done.token.map(|t| t.to_string()),
        }),
    ))
}
