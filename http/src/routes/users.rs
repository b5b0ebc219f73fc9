//! User administration (admins), and reading one's own record.
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::ids;
use domain::user::{normalize_email, Profile, User, UserCommand};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{hash_password, validate_new_password, Authenticated};
use crate::commands::Accepted;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{like_pattern, ApiJson, ApiPath, ApiQuery, Page, ReadAfter};
use crate::routes::auth::set_password;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub position: String,
    pub subdivision: String,
    pub is_admin: bool,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<UserView>,
    pub total: i64,
}

#[derive(Deserialize, IntoParams)]
pub struct UserFilter {
    /// Search in email and name.
    pub q: Option<String>,
    pub active: Option<bool>,
}

/// Lists users (admins).
#[utoipa::path(get, path = "/users", tag = "users", params(UserFilter, Page),
    responses((status = 200, body = UserList), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
async fn list_users(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiQuery(filter): ApiQuery<UserFilter>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<UserList>> {
    caller.require_admin()?;
    let pattern = like_pattern(&filter.q);
    let items: Vec<UserView> = sqlx::query_as(
        "SELECT id, email, name, position, subdivision, is_admin, active, created_at, updated_at FROM users
          WHERE ($1::text IS NULL OR email ILIKE $1 OR name ILIKE $1) AND ($2::bool IS NULL OR active = $2)
          ORDER BY email LIMIT $3 OFFSET $4",
    )
    .bind(&pattern)
    .bind(filter.active)
    .bind(page.limit()?)
    .bind(page.offset()?)
    .fetch_all(&state.pool)
    .await?;
    let (total,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM users WHERE ($1::text IS NULL OR email ILIKE $1 OR name ILIKE $1) AND ($2::bool IS NULL OR active = $2)",
    )
    .bind(&pattern)
    .bind(filter.active)
    .fetch_one(&state.pool)
    .await?;
    Ok(Json(UserList { items, total }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub email: String,
    /// At least 8 characters.
    pub password: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub position: String,
    #[serde(default)]
    pub subdivision: String,
    #[serde(default)]
    pub is_admin: bool,
}

/// Registers a user (admins). The email is the login.
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = Accepted), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_user(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    caller.require_admin()?;
    let (id, done) = register_user(&state, &caller.metadata(), caller.caller(), body).await?;
    Ok((StatusCode::CREATED, Json(done.accepted(id))))
}

/// Registers a user and stores their password: shared by the API and `admin create-user`.
pub async fn register_user(
    state: &AppState,
    metadata: &domain::metadata::EventMetadata,
    by: domain::Caller,
    body: NewUser,
) -> ApiResult<(Uuid, crate::commands::Executed)> {
    let email = normalize_email(&body.email)?;
    validate_new_password("password", &body.password)?;
    let id = ids::user_id(&email);
    let existing: User = state.bus.load(id).await?;
    if existing.id.is_some() {
        return Err(ApiError::Conflict {
            code: "already_exists",
            message: format!("a user with email {email} already exists"),
        });
    }
    // The password row first: if the registration then fails, a leftover row without a user
    // grants nothing (sign-in also needs the user) and is overwritten by the next attempt.
    let hash = hash_password(body.password).await?;
    sqlx::query(
        "INSERT INTO user_credentials (user_id, email, password_hash) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, updated_at = now()",
    )
    .bind(id)
    .bind(&email)
    .bind(hash)
    .execute(&state.pool)
    .await?;
    let command = UserCommand::Register {
        email,
        profile: Profile {
            name: body.name,
            position: body.position,
            subdivision: body.subdivision,
        },
        is_admin: body.is_admin,
        by,
    };
    let done = state
        .bus
        .execute(&state.bus.users, id, command, metadata)
        .await?;
    Ok((id, done))
}

/// One user: admins see anyone, others only themselves.
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = Uuid, Path)),
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_user(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<UserView>> {
    if !caller.is_admin && caller.user_id != id {
        // The same answer whether or not the user exists: it reveals nothing.
        return Err(ApiError::Forbidden(
            "only an admin may read other users".into(),
        ));
    }
    let user: Option<UserView> = sqlx::query_as(
        "SELECT id, email, name, position, subdivision, is_admin, active, created_at, updated_at FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    user.map(Json).ok_or_else(|| ApiError::not_found("user"))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    pub name: Option<String>,
    pub position: Option<String>,
    pub subdivision: Option<String>,
    pub is_admin: Option<bool>,
    /// `false` deactivates: the user can no longer sign in, and their tokens stop working.
    pub active: Option<bool>,
    /// Resets the password (the user's sessions end).
    pub password: Option<String>,
}

/// Edits, deactivates, reactivates a user, or resets their password (admins).
#[utoipa::path(patch, path = "/users/{id}", tag = "users", params(("id" = Uuid, Path)), request_body = UserUpdate,
    responses((status = 200, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn update_user(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UserUpdate>,
) -> ApiResult<Json<Accepted>> {
    caller.require_admin()?;
    if let Some(password) = &body.password {
        validate_new_password("password", password)?;
    }
    let user: User = state.bus.load(id).await?;
    if user.id.is_none() {
        return Err(ApiError::not_found("user"));
    }
    let by = caller.caller();
    let metadata = caller.metadata();
    let mut commands = Vec::new();
    if body.name.is_some() || body.position.is_some() || body.subdivision.is_some() {
        commands.push(UserCommand::UpdateProfile {
            name: body.name,
            position: body.position,
            subdivision: body.subdivision,
            by,
        });
    }
    if let Some(is_admin) = body.is_admin {
        commands.push(UserCommand::SetAdmin { is_admin, by });
    }
    if let Some(active) = body.active {
        commands.push(UserCommand::SetActive { active, by });
    }
    if body.password.is_some() {
        commands.push(UserCommand::RecordPasswordChange { by });
    }
    let done = state
        .bus
        .execute(&state.bus.users, id, UserCommand::All(commands), &metadata)
        .await?;
    if body.active == Some(false) {
        sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(&state.pool)
            .await?;
    }
    if let Some(password) = body.password {
        set_password(&state, id, password).await?;
    }
    Ok(Json(done.accepted(id)))
}
