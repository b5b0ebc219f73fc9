//! Sign-in, token refresh and revocation, the caller's profile and their API tokens.
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::user::{normalize_email, User, UserCommand};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{
    hash_password, random_secret, sha256_hex, validate_new_password, verify_password,
    Authenticated, API_TOKEN_PREFIX,
};
use crate::commands::{Accepted, Executed};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ReadAfter};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me, update_me))
        .routes(routes!(change_password))
        .routes(routes!(list_api_tokens, create_api_token))
        .routes(routes!(revoke_api_token))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

async fn issue_tokens(state: &AppState, user_id: Uuid) -> ApiResult<TokenPair> {
    let ttl = state.config.access_token_ttl_seconds;
    let access_token = state.keys.issue_access_token(user_id, ttl)?;
    let refresh_token = random_secret(32);
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(sha256_hex(&refresh_token))
    .bind(user_id)
    .bind(state.config.refresh_token_ttl_seconds as f64)
    .execute(&state.pool)
    .await?;
    Ok(TokenPair {
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: ttl,
    })
}

/// Runs a command on the caller's own user.
async fn on_self(
    state: &AppState,
    caller: &Authenticated,
    command: UserCommand,
) -> ApiResult<Executed> {
    state
        .bus
        .execute(
            &state.bus.users,
            caller.user_id,
            command,
            &caller.metadata(),
        )
        .await
}

fn bad_credentials() -> ApiError {
    ApiError::unauthorized("wrong email or password")
}

/// Signs in with email and password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 429, body = ErrorBody, description = "too many failed sign-ins for this email")))]
async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenPair>> {
    let email = normalize_email(&body.email)?;
    state.login_throttle.check(&email)?;
    let row: Option<(Uuid, String)> =
        sqlx::query_as("SELECT user_id, password_hash FROM user_credentials WHERE email = $1")
            .bind(&email)
            .fetch_optional(&state.pool)
            .await?;
    let Some((user_id, hash)) = row else {
        // Spend the same time as a real check, so response times do not reveal which emails exist.
        crate::auth::spend_a_password_check(body.password).await;
        state.login_throttle.failed(&email);
        return Err(bad_credentials());
    };
    if !verify_password(body.password, hash).await {
        state.login_throttle.failed(&email);
        return Err(bad_credentials());
    }
    state.login_throttle.succeeded(&email);
    let user: User = state.bus.load(user_id).await?;
    if user.id.is_none() || !user.active {
        return Err(ApiError::unauthorized("this account is deactivated"));
    }
    Ok(Json(issue_tokens(&state, user_id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Trades a refresh token for a new pair; the old refresh token stops working.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> ApiResult<Json<TokenPair>> {
    let row: Option<(Uuid,)> = sqlx::query_as(
        "UPDATE refresh_tokens SET revoked_at = now()
          WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now() RETURNING user_id",
    )
    .bind(sha256_hex(&body.refresh_token))
    .fetch_optional(&state.pool)
    .await?;
    let (user_id,) = row.ok_or_else(|| {
        ApiError::unauthorized("the refresh token is unknown, used, revoked or expired")
    })?;
    let user: User = state.bus.load(user_id).await?;
    if !user.active {
        return Err(ApiError::unauthorized("this account is deactivated"));
    }
    Ok(Json(issue_tokens(&state, user_id).await?))
}

/// Revokes a refresh token (signing out of that session).
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
async fn logout(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> ApiResult<StatusCode> {
    sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE token_hash = $1 AND user_id = $2 AND revoked_at IS NULL")
        .bind(sha256_hex(&body.refresh_token))
        .bind(caller.user_id)
        .execute(&state.pool)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct ProjectRole {
    pub project_id: Uuid,
    /// `manager` or `performer`.
    pub role: String,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub position: String,
    pub subdivision: String,
    pub is_admin: bool,
    /// Whether the caller may read statistics somewhere (an admin or a manager of a project).
    pub can_see_statistics: bool,
    pub projects: Vec<ProjectRole>,
}

/// The caller's profile and their role in each project.
#[utoipa::path(get, path = "/me", tag = "auth", responses((status = 200, body = Me), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn me(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
) -> ApiResult<Json<Me>> {
    let user: User = state.bus.load(caller.user_id).await?;
    let projects: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT m.project_id, m.role FROM project_members m JOIN projects p ON p.id = m.project_id
          WHERE m.user_id = $1 ORDER BY p.created_at",
    )
    .bind(caller.user_id)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(Me {
        id: caller.user_id,
        email: user.email,
        name: user.profile.name,
        position: user.profile.position,
        subdivision: user.profile.subdivision,
        is_admin: user.is_admin,
        can_see_statistics: user.is_admin || projects.iter().any(|(_, r)| r == "manager"),
        projects: projects
            .into_iter()
            .map(|(project_id, role)| ProjectRole { project_id, role })
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    pub name: Option<String>,
    pub position: Option<String>,
    pub subdivision: Option<String>,
}

/// Edits the caller's own name, position and subdivision.
#[utoipa::path(patch, path = "/me", tag = "auth", request_body = ProfileUpdate,
    responses((status = 200, body = Accepted), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn update_me(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<ProfileUpdate>,
) -> ApiResult<Json<Accepted>> {
    let command = UserCommand::UpdateProfile {
        name: body.name,
        position: body.position,
        subdivision: body.subdivision,
        by: caller.caller(),
    };
    let done = on_self(&state, &caller, command).await?;
    Ok(Json(done.accepted(caller.user_id)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// Changes the caller's password; every refresh token of theirs is revoked.
#[utoipa::path(post, path = "/me/password", tag = "auth", request_body = PasswordChange,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn change_password(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    validate_new_password("new_password", &body.new_password)?;
    let (hash,): (String,) =
        sqlx::query_as("SELECT password_hash FROM user_credentials WHERE user_id = $1")
            .bind(caller.user_id)
            .fetch_optional(&state.pool)
            .await?
            .ok_or_else(|| ApiError::Forbidden("this account has no password".into()))?;
    if !verify_password(body.current_password, hash).await {
        return Err(ApiError::Unprocessable {
            code: "wrong_password",
            message: "current_password: is not your current password".into(),
            fields: vec!["current_password".into()],
        });
    }
    set_password(&state, caller.user_id, body.new_password).await?;
    let command = UserCommand::RecordPasswordChange {
        by: caller.caller(),
    };
    on_self(&state, &caller, command).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stores a new password hash and ends every session of the user.
pub async fn set_password(state: &AppState, user_id: Uuid, password: String) -> ApiResult<()> {
    let hash = hash_password(password).await?;
    let mut tx = state.pool.begin().await?;
    sqlx::query(
        "UPDATE user_credentials SET password_hash = $2, updated_at = now() WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiTokenList {
    pub items: Vec<ApiToken>,
    pub total: i64,
}

/// The caller's API tokens (never their secrets).
#[utoipa::path(get, path = "/api-tokens", tag = "auth", responses((status = 200, body = ApiTokenList)), security(("bearer" = [])))]
async fn list_api_tokens(
    State(state): State<AppState>,
    caller: Authenticated,
) -> ApiResult<Json<ApiTokenList>> {
    let items: Vec<ApiToken> = sqlx::query_as(
        "SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC",
    )
    .bind(caller.user_id)
    .fetch_all(&state.pool)
    .await?;
    let total = items.len() as i64;
    Ok(Json(ApiTokenList { items, total }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiToken {
    /// What the token is for, e.g. `CRM integration`.
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct IssuedApiToken {
    pub id: Uuid,
    pub name: String,
    /// The secret. Shown only in this answer: store it now.
    pub token: String,
    pub consistency_token: Option<String>,
}

/// Issues an API token that acts as the caller, for integrations.
#[utoipa::path(post, path = "/api-tokens", tag = "auth", request_body = NewApiToken,
    responses((status = 201, body = IssuedApiToken), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn create_api_token(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<NewApiToken>,
) -> ApiResult<(StatusCode, Json<IssuedApiToken>)> {
    let token_id = Uuid::new_v4();
    let command = UserCommand::IssueApiToken {
        token_id,
        name: body.name.clone(),
        by: caller.caller(),
    };
    let done = on_self(&state, &caller, command).await?;
    let token = format!("{API_TOKEN_PREFIX}{}", random_secret(32));
    sqlx::query("INSERT INTO api_tokens (id, user_id, name, token_hash, prefix) VALUES ($1, $2, $3, $4, $5)")
        .bind(token_id)
        .bind(caller.user_id)
        .bind(body.name.trim())
        .bind(sha256_hex(&token))
        .bind(&token[..API_TOKEN_PREFIX.len() + 6])
        .execute(&state.pool)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedApiToken {
            id: token_id,
            name: body.name.trim().to_string(),
            token,
            consistency_token: done.token.map(|t| t.to_string()),
        }),
    ))
}

/// Revokes one of the caller's API tokens.
#[utoipa::path(delete, path = "/api-tokens/{id}", tag = "auth", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn revoke_api_token(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let revoked = sqlx::query("UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(caller.user_id)
        .execute(&state.pool)
        .await?
        .rows_affected();
    if revoked == 0 {
        return Err(ApiError::not_found("API token"));
    }
    let command = UserCommand::RevokeApiToken {
        token_id: id,
        by: caller.caller(),
    };
    on_self(&state, &caller, command).await?;
    Ok(StatusCode::NO_CONTENT)
}
