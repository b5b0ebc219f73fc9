//! Projects, their members, their banned phrases, and the sales channels they work in with their
//! prompt versions and length limits.
//!
//! Commands are decided on the project's own state from the log (its members, its channels),
//! so authorization cannot be fooled by a lagging read model; queries read the read models and
//! check membership there.
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::catalog::{Product, SalesChannel};
use domain::guardrails::default_max_chars;
use domain::ids;
use domain::project::{CatalogFacts, Project, ProjectCommand, ProjectEvent, UserFacts};
use domain::user::{normalize_email, User};
use domain::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::commands::{Accepted, Executed};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{like_pattern, ApiJson, ApiPath, ApiQuery, Page, ReadAfter};
use crate::history::{events_until, fold, AsOf};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project, update_project, archive_project))
        .routes(routes!(list_members, add_member))
        .routes(routes!(change_member, remove_member))
        .routes(routes!(list_project_channels, attach_channels))
        .routes(routes!(get_project_channel, change_prompt, detach_channel))
        .routes(routes!(list_prompt_versions))
        .routes(routes!(list_prompt_version_offers))
        .routes(routes!(change_max_length))
        .routes(routes!(change_banned_phrases))
}

/// Runs a command on project `id` as the caller.
async fn on_project(
    state: &AppState,
    caller: &Authenticated,
    id: Uuid,
    command: ProjectCommand,
) -> ApiResult<Executed> {
    state
        .bus
        .execute(&state.bus.projects, id, command, &caller.metadata())
        .await
}

/// 201 when the command recorded something, 200 for a repeat that changed nothing.
pub fn created_or_ok(done: &Executed) -> StatusCode {
    if done.changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// The caller's role in a project, from the read models; outsiders get 404.
pub async fn project_role(
    state: &AppState,
    caller: &Authenticated,
    project_id: Uuid,
) -> ApiResult<Role> {
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT m.role FROM projects p LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $2
          WHERE p.id = $1",
    )
    .bind(project_id)
    .bind(caller.user_id)
    .fetch_optional(&state.pool)
    .await?;
    match row {
        Some(_) if caller.is_admin => Ok(Role::Manager),
        Some((Some(role),)) => Role::parse(&role)
            .ok_or_else(|| anyhow::anyhow!("unknown role {role} in project_members").into()),
        _ => Err(ApiError::not_found("project")),
    }
}

async fn catalog_facts<A>(
    state: &AppState,
    id: Uuid,
    field: &str,
    noun: &str,
) -> ApiResult<CatalogFacts>
where
    A: crate::commands::Stored + CatalogState,
{
    let entry: A = state.bus.load(id).await?;
    match entry.facts() {
        Some((key, description, archived)) => Ok(CatalogFacts {
            id,
            key,
            description,
            archived,
        }),
        None => Err(ApiError::invalid(field, format!("no {noun} with id {id}"))),
    }
}

/// What a command needs to know about a catalog entry.
trait CatalogState {
    /// Key, description, archived.
    fn facts(&self) -> Option<(String, String, bool)>;
}

impl<K: domain::catalog::CatalogKind> CatalogState for domain::catalog::CatalogEntry<K> {
    fn facts(&self) -> Option<(String, String, bool)> {
        let key = self.key.clone()?;
        self.details
            .as_ref()
            .map(|d| (key, d.description.clone(), self.archived))
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProductRef {
    pub id: Uuid,
    pub key: String,
    pub name: String,
    pub description: String,
    pub link: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectView {
    pub id: Uuid,
    pub name: String,
    /// Markdown: the reason for the offer.
    pub description: String,
    pub product: ProductRef,
    pub archived: bool,
    /// The caller's role (`manager` for admins).
    pub my_role: String,
    pub members: i64,
    pub channels: i64,
    pub requests: i64,
    /// Phrases the project's offers must not contain; an offer that does is flagged
    /// `banned_phrase:<phrase>`.
    pub banned_phrases: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectList {
    pub items: Vec<ProjectView>,
    pub total: i64,
}

#[derive(Deserialize, IntoParams)]
pub struct ProjectFilter {
    /// Search in name and description.
    pub q: Option<String>,
    pub product_id: Option<Uuid>,
    /// Include archived projects (default false).
    pub include_archived: Option<bool>,
}

#[derive(sqlx::FromRow)]
struct ProjectRow {
    id: Uuid,
    name: String,
    description: String,
    archived: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    product_id: Uuid,
    product_key: String,
    product_name: String,
    product_description: String,
    product_link: Option<String>,
    my_role: Option<String>,
    members: i64,
    channels: i64,
    requests: i64,
    banned_phrases: sqlx::types::Json<Vec<String>>,
}

const PROJECT_SELECT: &str = "
    SELECT p.id, p.name, p.description, p.archived, p.created_at, p.updated_at, p.banned_phrases,
           pr.id AS product_id, pr.key AS product_key, pr.name AS product_name,
           pr.description AS product_description, pr.link AS product_link,
           m.role AS my_role,
           (SELECT count(*) FROM project_members x WHERE x.project_id = p.id) AS members,
           (SELECT count(*) FROM project_channels x WHERE x.project_id = p.id AND x.attached) AS channels,
           (SELECT count(*) FROM client_requests x WHERE x.project_id = p.id) AS requests
      FROM projects p
      JOIN products pr ON pr.id = p.product_id
      LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $1";

fn project_view(row: ProjectRow, is_admin: bool) -> ProjectView {
    ProjectView {
        id: row.id,
        name: row.name,
        description: row.description,
        product: ProductRef {
            id: row.product_id,
            key: row.product_key,
            name: row.product_name,
            description: row.product_description,
            link: row.product_link,
        },
        archived: row.archived,
        my_role: if is_admin {
            "manager".into()
        } else {
            row.my_role.unwrap_or_default()
        },
        members: row.members,
        channels: row.channels,
        requests: row.requests,
        banned_phrases: row.banned_phrases.0,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// The projects the caller belongs to (admins: all).
#[utoipa::path(get, path = "/projects", tag = "projects", params(ProjectFilter, Page),
    responses((status = 200, body = ProjectList), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
async fn list_projects(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiQuery(filter): ApiQuery<ProjectFilter>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<ProjectList>> {
    let pattern = like_pattern(&filter.q);
    let condition = "($2 OR m.user_id IS NOT NULL)
        AND ($3::text IS NULL OR p.name ILIKE $3 OR p.description ILIKE $3)
        AND ($4::uuid IS NULL OR p.product_id = $4)
        AND ($5 OR NOT p.archived)";
    let rows: Vec<ProjectRow> = sqlx::query_as(&format!(
        "{PROJECT_SELECT} WHERE {condition} ORDER BY p.created_at DESC, p.id LIMIT $6 OFFSET $7"
    ))
    .bind(caller.user_id)
    .bind(caller.is_admin)
    .bind(&pattern)
    .bind(filter.product_id)
    .bind(filter.include_archived.unwrap_or(false))
    .bind(page.limit()?)
    .bind(page.offset()?)
    .fetch_all(&state.pool)
    .await?;
    let (total,): (i64,) = sqlx::query_as(&format!(
        "SELECT count(*) FROM projects p LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $1
          WHERE {condition}"
    ))
    .bind(caller.user_id)
    .bind(caller.is_admin)
    .bind(&pattern)
    .bind(filter.product_id)
    .bind(filter.include_archived.unwrap_or(false))
    .fetch_one(&state.pool)
    .await?;
    Ok(Json(ProjectList {
        items: rows
            .into_iter()
            .map(|r| project_view(r, caller.is_admin))
            .collect(),
        total,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub name: String,
    /// The product the project sells; it cannot change later.
    pub product_id: Uuid,
    #[serde(default)]
    pub description: String,
}

/// Creates a project; the caller becomes its manager.
#[utoipa::path(post, path = "/projects", tag = "projects", request_body = NewProject,
    responses((status = 201, body = Accepted), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn create_project(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<NewProject>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let product =
        catalog_facts::<Product>(&state, body.product_id, "product_id", "product").await?;
    let id = Uuid::new_v4();
    let command = ProjectCommand::Create {
        name: body.name,
        description: body.description,
        product,
        by: caller.caller(),
    };
    let done = on_project(&state, &caller, id, command).await?;
    Ok((StatusCode::CREATED, Json(done.accepted(id))))
}

/// One project, with its product and counts. With `?as_of=` the project as it was then, folded
/// from the log (404 if it did not exist yet): its product's details are today's, and
/// `my_role` is the caller's role then (empty if they were not a member).
#[utoipa::path(get, path = "/projects/{id}", tag = "projects", params(("id" = Uuid, Path), AsOf),
    responses((status = 200, body = ProjectView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_project(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(at): ApiQuery<AsOf>,
) -> ApiResult<Json<ProjectView>> {
    let as_of = at.checked()?;
    project_role(&state, &caller, id).await?;
    if let Some(as_of) = as_of {
        return Ok(Json(project_as_of(&state, &caller, id, as_of).await?));
    }
    let row: ProjectRow = sqlx::query_as(&format!("{PROJECT_SELECT} WHERE p.id = $2"))
        .bind(caller.user_id)
        .bind(id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
    Ok(Json(project_view(row, caller.is_admin)))
}

/// The project folded by the domain code from the events recorded by `as_of`.
async fn project_as_of(
    state: &AppState,
    caller: &Authenticated,
    id: Uuid,
    as_of: DateTime<Utc>,
) -> ApiResult<ProjectView> {
    let events = events_until::<Project>(&state.pool, id, as_of).await?;
    let project: Project = fold(&events);
    let product_id = match (project.created, project.product_id) {
        (true, Some(product_id)) => product_id,
        _ => return Err(ApiError::not_found("project")),
    };
    let created_at = events
        .first()
        .map(|(at, _)| *at)
        .ok_or_else(|| ApiError::not_found("project"))?;
    // As the projects table does: a channel's attachment and prompt are the channel's news,
    // not the project's.
    let updated_at = events
        .iter()
        .rev()
        .find(|(_, e)| {
            !matches!(
                e,
                ProjectEvent::ChannelAttached { .. } | ProjectEvent::ChannelPromptChanged { .. }
            )
        })
        .map_or(created_at, |(at, _)| *at);
    let product: (String, String, String, Option<String>) =
        sqlx::query_as("SELECT key, name, description, link FROM products WHERE id = $1")
            .bind(product_id)
            .fetch_optional(&state.pool)
            .await?
            .ok_or_else(|| {
                anyhow::anyhow!("project {id}'s product {product_id} is not in the catalog")
            })?;
    // Requests are other aggregates and never leave their project: counted by their creation
    // time, which the requests table keeps as the creation event's.
    let (requests,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM client_requests WHERE project_id = $1 AND created_at <= $2",
    )
    .bind(id)
    .bind(as_of)
    .fetch_one(&state.pool)
    .await?;
    let my_role = if caller.is_admin {
        Role::Manager.as_str().to_string()
    } else {
        project
            .members
            .get(&caller.user_id)
            .map(|r| r.as_str().to_string())
            .unwrap_or_default()
    };
    Ok(ProjectView {
        id,
        name: project.name,
        description: project.description,
        product: ProductRef {
            id: product_id,
            key: product.0,
            name: product.1,
            description: product.2,
            link: product.3,
        },
        archived: project.archived,
        my_role,
        members: project.members.len() as i64,
        channels: project.channels.values().filter(|c| c.attached).count() as i64,
        requests,
        banned_phrases: project.banned_phrases,
        created_at,
        updated_at,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// Renames or redescribes a project (managers). The product cannot change.
#[utoipa::path(patch, path = "/projects/{id}", tag = "projects", params(("id" = Uuid, Path)), request_body = ProjectUpdate,
    responses((status = 200, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn update_project(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ProjectUpdate>,
) -> ApiResult<Json<Accepted>> {
    let command = ProjectCommand::Update {
        name: body.name,
        description: body.description,
        by: caller.caller(),
    };
    let done = on_project(&state, &caller, id, command).await?;
    Ok(Json(done.accepted(id)))
}

/// Archives a project (managers): it becomes read-only.
#[utoipa::path(delete, path = "/projects/{id}", tag = "projects", params(("id" = Uuid, Path)),
    responses((status = 200, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn archive_project(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Accepted>> {
    let command = ProjectCommand::Archive {
        by: caller.caller(),
    };
    let done = on_project(&state, &caller, id, command).await?;
    Ok(Json(done.accepted(id)))
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct MemberView {
    pub user_id: Uuid,
    pub email: Option<String>,
    pub name: Option<String>,
    /// `manager` or `performer`.
    pub role: String,
    pub added_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct MemberList {
    pub items: Vec<MemberView>,
    pub total: i64,
}

/// The project's members and their roles (members).
#[utoipa::path(get, path = "/projects/{id}/members", tag = "projects", params(("id" = Uuid, Path)),
    responses((status = 200, body = MemberList), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn list_members(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<MemberList>> {
    project_role(&state, &caller, id).await?;
    let items: Vec<MemberView> = sqlx::query_as(
        "SELECT m.user_id, u.email, u.name, m.role, m.added_at FROM project_members m
           LEFT JOIN users u ON u.id = m.user_id WHERE m.project_id = $1 ORDER BY m.role, u.email",
    )
    .bind(id)
    .fetch_all(&state.pool)
    .await?;
    let total = items.len() as i64;
    Ok(Json(MemberList { items, total }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// Either `user_id` or `email`.
    pub user_id: Option<Uuid>,
    pub email: Option<String>,
    #[schema(value_type = String, example = "performer")]
    pub role: Role,
}

/// Adds a person to the project (managers). Adding a member again with the same role is fine.
#[utoipa::path(post, path = "/projects/{id}/members", tag = "projects", params(("id" = Uuid, Path)), request_body = NewMember,
    responses((status = 201, body = Accepted), (status = 200, body = Accepted, description = "already a member with that role"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn add_member(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<NewMember>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let (user_id, field) = match (body.user_id, body.email.as_deref()) {
        (Some(user_id), None) => (user_id, "user_id"),
        (None, Some(email)) => (ids::user_id(&normalize_email(email)?), "email"),
        _ => {
            return Err(ApiError::invalid(
                "user_id",
                "give exactly one of user_id and email",
            ))
        }
    };
    // A non-member learns nothing about who exists.
    let project: Project = state.bus.load(id).await?;
    project.authorize_change(&caller.caller(), Role::Manager)?;
    let user: User = state.bus.load(user_id).await?;
    if user.id.is_none() {
        return Err(ApiError::invalid(field, "no user with that identity"));
    }
    let command = ProjectCommand::AddMember {
        user: UserFacts {
            user_id,
            active: user.active,
        },
        role: body.role,
        by: caller.caller(),
    };
    let done = on_project(&state, &caller, id, command).await?;
    let status = created_or_ok(&done);
    Ok((status, Json(done.accepted(user_id))))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberUpdate {
    #[schema(value_type = String, example = "manager")]
    pub role: Role,
}

/// Changes a member's role (managers). The last manager stays a manager.
#[utoipa::path(patch, path = "/projects/{id}/members/{user_id}", tag = "projects",
    params(("id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = MemberUpdate,
    responses((status = 200, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn change_member(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath((id, user_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<MemberUpdate>,
) -> ApiResult<Json<Accepted>> {
    let command = ProjectCommand::ChangeMemberRole {
        user_id,
        role: body.role,
        by: caller.caller(),
    };
    let done = on_project(&state, &caller, id, command).await?;
    Ok(Json(done.accepted(user_id)))
}

/// Removes a member (managers; anyone may remove themselves). The last manager stays.
#[utoipa::path(delete, path = "/projects/{id}/members/{user_id}", tag = "projects",
    params(("id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 200, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn remove_member(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath((id, user_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Accepted>> {
    let command = ProjectCommand::RemoveMember {
        user_id,
        by: caller.caller(),
    };
    let done = on_project(&state, &caller, id, command).await?;
    Ok(Json(done.accepted(user_id)))
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct ProjectChannelView {
    pub channel_id: Uuid,
    pub key: String,
    pub name: String,
    /// The channel's description from the catalog.
    pub description: String,
    pub attached: bool,
    /// The current prompt.
    pub prompt: String,
    pub prompt_version: i32,
    /// The length limit offers are checked against, in characters; `null` for none. An offer
    /// over it is flagged `too_long:<chars>/<max>`, never cut.
    pub max_chars: Option<i32>,
    /// The catalog channel's default limit: what the channel gets when it is attached.
    #[sqlx(skip)]
    pub default_max_chars: Option<u32>,
    pub requests: i64,
    pub attached_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ProjectChannelView {
    fn with_default(mut self) -> Self {
        self.default_max_chars = default_max_chars(&self.key);
        self
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProjectChannelList {
    pub items: Vec<ProjectChannelView>,
    pub total: i64,
}

const CHANNEL_SELECT: &str = "
    SELECT pc.channel_id, c.key, c.name, c.description, pc.attached, pc.prompt, pc.prompt_version, pc.max_chars,
           (SELECT count(*) FROM client_requests r WHERE r.project_id = pc.project_id AND r.channel_id = pc.channel_id) AS requests,
           pc.attached_at, pc.updated_at
      FROM project_channels pc JOIN sales_channels c ON c.id = pc.channel_id";

#[derive(Deserialize, IntoParams)]
pub struct ChannelFilter {
    /// Include detached channels (default false).
    pub include_detached: Option<bool>,
}

/// The channels attached to the project with their current prompts (members).
#[utoipa::path(get, path = "/projects/{id}/channels", tag = "projects", params(("id" = Uuid, Path), ChannelFilter),
    responses((status = 200, body = ProjectChannelList), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn list_project_channels(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(filter): ApiQuery<ChannelFilter>,
) -> ApiResult<Json<ProjectChannelList>> {
    project_role(&state, &caller, id).await?;
    let items: Vec<ProjectChannelView> = sqlx::query_as(&format!(
        "{CHANNEL_SELECT} WHERE pc.project_id = $1 AND ($2 OR pc.attached) ORDER BY c.name"
    ))
    .bind(id)
    .bind(filter.include_detached.unwrap_or(false))
    .fetch_all(&state.pool)
    .await?;
    let items: Vec<ProjectChannelView> = items
        .into_iter()
        .map(ProjectChannelView::with_default)
        .collect();
    let total = items.len() as i64;
    Ok(Json(ProjectChannelList { items, total }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelAttachment {
    /// Sales channels to attach; those already attached are left as they are.
    pub channel_ids: Vec<Uuid>,
}

/// Attaches sales channels (managers); each gets a prompt built from the project, product and
/// channel descriptions.
#[utoipa::path(post, path = "/projects/{id}/channels", tag = "projects", params(("id" = Uuid, Path)),
    request_body = ChannelAttachment,
    responses((status = 201, body = Accepted), (status = 200, body = Accepted, description = "all were attached already"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn attach_channels(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ChannelAttachment>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    if body.channel_ids.len() > 100 {
        return Err(ApiError::invalid(
            "channel_ids",
            "at most 100 channels at once",
        ));
    }
    let project: Project = state.bus.load(id).await?;
    project.authorize_change(&caller.caller(), Role::Manager)?;
    let product_id = project
        .product_id
        .ok_or_else(|| ApiError::not_found("project"))?;
    let product = catalog_facts::<Product>(&state, product_id, "product_id", "product").await?;
    let mut channels = Vec::with_capacity(body.channel_ids.len());
    let mut seen = std::collections::HashSet::new();
    for channel_id in body.channel_ids {
        if seen.insert(channel_id) {
            channels.push(
                catalog_facts::<SalesChannel>(&state, channel_id, "channel_ids", "sales channel")
                    .await?,
            );
        }
    }
    let command = ProjectCommand::AttachChannels {
        channels,
        product,
        by: caller.caller(),
    };
    let done = on_project(&state, &caller, id, command).await?;
    let status = created_or_ok(&done);
    Ok((status, Json(done.accepted(id))))
}

async fn channel_view(
    state: &AppState,
    project_id: Uuid,
    channel_id: Uuid,
) -> ApiResult<ProjectChannelView> {
    sqlx::query_as(&format!(
        "{CHANNEL_SELECT} WHERE pc.project_id = $1 AND pc.channel_id = $2"
    ))
    .bind(project_id)
    .bind(channel_id)
    .fetch_optional(&state.pool)
    .await?
    .map(ProjectChannelView::with_default)
    .ok_or_else(|| ApiError::not_found("project channel"))
}

/// One channel of the project with its current prompt (members).
#[utoipa::path(get, path = "/projects/{id}/channels/{channel_id}", tag = "projects",
    params(("id" = Uuid, Path), ("channel_id" = Uuid, Path)),
    responses((status = 200, body = ProjectChannelView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn get_project_channel(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath((id, channel_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<ProjectChannelView>> {
    project_role(&state, &caller, id).await?;
    Ok(Json(channel_view(&state, id, channel_id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptChange {
    pub prompt: String,
}

/// Replaces the channel's prompt with a new numbered version (managers); earlier versions stay.
#[utoipa::path(patch, path = "/projects/{id}/channels/{channel_id}", tag = "projects",
    params(("id" = Uuid, Path), ("channel_id" = Uuid, Path)), request_body = PromptChange,
    responses((status = 200, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn change_prompt(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath((id, channel_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<PromptChange>,
) -> ApiResult<Json<Accepted>> {
    let command = ProjectCommand::ChangeChannelPrompt {
        channel_id,
        prompt: body.prompt,
        by: caller.caller(),
    };
    let done = on_project(&state, &caller, id, command).await?;
    Ok(Json(done.accepted(channel_id)))
}

/// Detaches a channel (managers). Its requests and prompt history stay.
#[utoipa::path(delete, path = "/projects/{id}/channels/{channel_id}", tag = "projects",
    params(("id" = Uuid, Path), ("channel_id" = Uuid, Path)),
    responses((status = 200, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn detach_channel(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath((id, channel_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Accepted>> {
    let command = ProjectCommand::DetachChannel {
        channel_id,
        by: caller.caller(),
    };
    let done = on_project(&state, &caller, id, command).await?;
    Ok(Json(done.accepted(channel_id)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaxLengthChange {
    /// Characters, 1 to 10000; `null` removes the limit. Required, so that a forgotten field
    /// never removes a limit.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(value_type = Option<u32>, required = true, minimum = 1, maximum = 10000, example = 160)]
    pub max_chars: Option<i64>,
}

/// Sets the length limit the channel's offers are checked against (managers). Offers over it are
/// flagged, never cut.
#[utoipa::path(put, path = "/projects/{id}/channels/{channel_id}/max-length", tag = "projects",
    params(("id" = Uuid, Path), ("channel_id" = Uuid, Path)), request_body = MaxLengthChange,
    responses((status = 200, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn change_max_length(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath((id, channel_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<MaxLengthChange>,
) -> ApiResult<Json<Accepted>> {
    // A number no u32 can hold is out of range like 0 is: the domain's answer names the range.
    let max_chars = body.max_chars.map(|m| u32::try_from(m).unwrap_or(0));
    let command = ProjectCommand::ChangeChannelMaxLength {
        channel_id,
        max_chars,
        by: caller.caller(),
    };
    let done = on_project(&state, &caller, id, command).await?;
    Ok(Json(done.accepted(channel_id)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BannedPhrasesChange {
    /// The whole list: each 1 to 200 characters, at most 200 different ones. Trimmed, and a
    /// repeat in another case is dropped.
    #[schema(example = json!(["гарантированное одобрение", "без отказа"]))]
    pub phrases: Vec<String>,
}

/// Replaces the phrases the project's offers must not contain (managers). Offers that contain
/// one are flagged, never rewritten.
#[utoipa::path(put, path = "/projects/{id}/banned-phrases", tag = "projects", params(("id" = Uuid, Path)),
    request_body = BannedPhrasesChange,
    responses((status = 200, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn change_banned_phrases(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<BannedPhrasesChange>,
) -> ApiResult<Json<Accepted>> {
    let command = ProjectCommand::ChangeBannedPhrases {
        phrases: body.phrases,
        by: caller.caller(),
    };
    let done = on_project(&state, &caller, id, command).await?;
    Ok(Json(done.accepted(id)))
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct PromptVersion {
    pub version: i32,
    pub prompt: String,
    /// `user:<id>` or another actor.
    pub created_by: Option<String>,
    /// The name of the user who wrote it, when a user did.
    pub author: Option<String>,
    pub created_at: DateTime<Utc>,
    /// How many offers this version produced in the project channel.
    pub offers: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PromptVersionList {
    pub items: Vec<PromptVersion>,
    pub total: i64,
}

/// Every prompt version the channel has had in this project, newest first (members).
#[utoipa::path(get, path = "/projects/{id}/channels/{channel_id}/prompts", tag = "projects",
    params(("id" = Uuid, Path), ("channel_id" = Uuid, Path)),
    responses((status = 200, body = PromptVersionList), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn list_prompt_versions(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath((id, channel_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<PromptVersionList>> {
    project_role(&state, &caller, id).await?;
    channel_view(&state, id, channel_id).await?;
    let items: Vec<PromptVersion> = sqlx::query_as(
        "SELECT v.version, v.prompt, v.created_by, u.name AS author, v.created_at,
                (SELECT count(*) FROM client_request_messages m
                   JOIN client_requests r ON r.id = m.request_id
                  WHERE r.project_id = v.project_id AND r.channel_id = v.channel_id
                    AND m.message_type = 'system' AND m.prompt_version = v.version) AS offers
           FROM channel_prompt_versions v
           LEFT JOIN users u ON v.created_by = 'user:' || u.id
          WHERE v.project_id = $1 AND v.channel_id = $2 ORDER BY v.version DESC",
    )
    .bind(id)
    .bind(channel_id)
    .fetch_all(&state.pool)
    .await?;
    let total = items.len() as i64;
    Ok(Json(PromptVersionList { items, total }))
}

/// An offer a prompt version produced.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct PromptVersionOffer {
    pub message_id: Uuid,
    pub request_id: Uuid,
    pub client_id: Option<String>,
    pub text: String,
    /// `ok`, `error`, `revision` or `undefined`.
    pub rating: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct PromptVersionOfferList {
    pub items: Vec<PromptVersionOffer>,
    pub total: i64,
}

/// The offers one prompt version produced in the project channel, newest first (members): what
/// a marketer compares before keeping or changing a prompt.
#[utoipa::path(get, path = "/projects/{id}/channels/{channel_id}/prompts/{version}/offers", tag = "projects",
    params(("id" = Uuid, Path), ("channel_id" = Uuid, Path), ("version" = i32, Path), Page),
    responses((status = 200, body = PromptVersionOfferList), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn list_prompt_version_offers(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath((id, channel_id, version)): ApiPath<(Uuid, Uuid, i32)>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<PromptVersionOfferList>> {
    project_role(&state, &caller, id).await?;
    channel_view(&state, id, channel_id).await?;
    let (limit, offset) = (page.limit()?, page.offset()?);
    let (known,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM channel_prompt_versions
                         WHERE project_id = $1 AND channel_id = $2 AND version = $3)",
    )
    .bind(id)
    .bind(channel_id)
    .bind(version)
    .fetch_one(&state.pool)
    .await?;
    if !known {
        return Err(ApiError::not_found("prompt version"));
    }
    let from = "FROM client_request_messages m JOIN client_requests r ON r.id = m.request_id
                WHERE r.project_id = $1 AND r.channel_id = $2
                  AND m.message_type = 'system' AND m.prompt_version = $3";
    let (total,): (i64,) = sqlx::query_as(&format!("SELECT count(*) {from}"))
        .bind(id)
        .bind(channel_id)
        .bind(version)
        .fetch_one(&state.pool)
        .await?;
    let items: Vec<PromptVersionOffer> = sqlx::query_as(&format!(
        "SELECT m.id AS message_id, m.request_id, r.client_id, m.text, m.rating, m.created_at {from}
          ORDER BY m.created_at DESC, m.id LIMIT $4 OFFSET $5"
    ))
    .bind(id)
    .bind(channel_id)
    .bind(version)
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(PromptVersionOfferList { items, total }))
}
