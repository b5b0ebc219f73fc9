//! Who is calling. Access tokens are short-lived signed JWTs; refresh and API tokens are
//! random secrets stored only as SHA-256 hashes; passwords are argon2id hashes. None of these
//! ever goes into the event log.
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use domain::metadata::{Actor, EventMetadata};
use domain::user::User;
use domain::Caller;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// API tokens start with this, so a reader (and a secret scanner) can tell them apart.
pub const API_TOKEN_PREFIX: &str = "off_";

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    exp: i64,
    iat: i64,
}

impl TokenKeys {
    /// Uses `configured` if given, else the key this database's servers share (made once).
    pub async fn load(pool: &PgPool, configured: Option<&str>) -> anyhow::Result<Self> {
        let secret = match configured {
            Some(secret) if secret.len() >= 32 => secret.to_string(),
            Some(_) => anyhow::bail!("OFFERFLOW_JWT_SECRET must be at least 32 characters"),
            None => {
                sqlx::query("INSERT INTO server_secrets (name, value) VALUES ('access_token_key', $1) ON CONFLICT DO NOTHING")
                    .bind(random_secret(48))
                    .execute(pool)
                    .await?;
                let (value,): (String,) = sqlx::query_as(
                    "SELECT value FROM server_secrets WHERE name = 'access_token_key'",
                )
                .fetch_one(pool)
                .await?;
                value
            }
        };
        Ok(TokenKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        })
    }

    pub fn issue_access_token(&self, user_id: Uuid, ttl_seconds: i64) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            iat: now,
            exp: now + ttl_seconds,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    fn verify_access_token(&self, token: &str) -> Option<Uuid> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims.sub)
    }
}

/// A URL-safe random secret of `bytes` bytes of entropy.
pub fn random_secret(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer)
}

pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await
    .map_err(|e| anyhow::anyhow!("password hashing task: {e}"))?
    .map_err(ApiError::Internal)
}

pub async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Verifies `password` against a throwaway hash, so that an unknown email costs as much time
/// as a known one.
pub async fn spend_a_password_check(password: String) {
    static THROWAWAY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let _ = tokio::task::spawn_blocking(move || {
        let hash = THROWAWAY.get_or_init(|| {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(random_secret(16).as_bytes(), &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        });
        if let Ok(parsed) = PasswordHash::new(hash) {
            let _ = Argon2::default().verify_password(password.as_bytes(), &parsed);
        }
    })
    .await;
}

pub fn validate_new_password(field: &str, password: &str) -> Result<(), ApiError> {
    let chars = password.chars().count();
    if chars < 8 {
        return Err(ApiError::invalid(field, "must be at least 8 characters"));
    }
    if chars > 256 {
        return Err(ApiError::invalid(field, "must be at most 256 characters"));
    }
    Ok(())
}

/// The signed-in caller of a request.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user_id: Uuid,
    pub is_admin: bool,
    pub email: String,
    pub actor: Actor,
    /// The HTTP request id, which becomes the events' correlation id.
    pub request_id: String,
}

impl Authenticated {
    pub fn caller(&self) -> Caller {
        Caller {
            user_id: self.user_id,
            is_admin: self.is_admin,
        }
    }

    pub fn metadata(&self) -> EventMetadata {
        EventMetadata::new(self.actor.clone(), self.request_id.clone())
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden("only an admin may do that".into()))
        }
    }
}

pub fn request_id(parts: &Parts) -> String {
    parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| Uuid::new_v4().to_string())
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("send Authorization: Bearer <access token or API token>")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be: Bearer <token>")
            })?;
        let (user_id, actor) = if token.starts_with(API_TOKEN_PREFIX) {
            let row: Option<(Uuid, Uuid)> = sqlx::query_as(
                "UPDATE api_tokens SET last_used_at = now()
                  WHERE token_hash = $1 AND revoked_at IS NULL RETURNING id, user_id",
            )
            .bind(sha256_hex(token))
            .fetch_optional(&state.pool)
            .await?;
            let (token_id, user_id) =
                row.ok_or_else(|| ApiError::unauthorized("the API token is unknown or revoked"))?;
            (user_id, Actor::ApiToken { token_id, user_id })
        } else {
            let user_id = state.keys.verify_access_token(token).ok_or_else(|| {
                ApiError::unauthorized("the access token is invalid or expired; refresh it")
            })?;
            (user_id, Actor::User(user_id))
        };
        // From the log (at most a second old when another process changed the user; changes
        // made through this process count at once).
        let user: User = state.bus.user(user_id).await?;
        if user.id.is_none() || !user.active {
            return Err(ApiError::unauthorized("this account is deactivated"));
        }
        Ok(Authenticated {
            user_id,
            is_admin: user.is_admin,
            email: user.email,
            actor,
            request_id: request_id(parts),
        })
    }
}

/// Failed sign-ins per email: after [`LOGIN_MAX_FAILURES`] within [`LOGIN_WINDOW`], that email
/// is refused (429) until the window has passed, so a password cannot be guessed at speed.
#[derive(Default)]
pub struct LoginThrottle {
    failures: std::sync::Mutex<std::collections::HashMap<String, (u32, std::time::Instant)>>,
}

pub const LOGIN_MAX_FAILURES: u32 = 5;
pub const LOGIN_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

impl LoginThrottle {
    pub fn check(&self, email: &str) -> Result<(), ApiError> {
        let Ok(failures) = self.failures.lock() else {
            return Ok(());
        };
        match failures.get(email) {
            Some((count, since))
                if *count >= LOGIN_MAX_FAILURES && since.elapsed() < LOGIN_WINDOW =>
            {
                let wait = LOGIN_WINDOW
                    .saturating_sub(since.elapsed())
                    .as_secs()
                    .max(1);
                Err(ApiError::TooManyRequests {
                    message: format!(
                        "too many failed sign-ins for this email; try again in {wait} s"
                    ),
                    retry_after_seconds: wait,
                })
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, email: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            if failures.len() > 100_000 {
                failures.retain(|_, (_, since)| since.elapsed() < LOGIN_WINDOW);
            }
            let entry = failures
                .entry(email.to_string())
                .or_insert((0, std::time::Instant::now()));
            if entry.1.elapsed() >= LOGIN_WINDOW {
                *entry = (0, std::time::Instant::now());
            }
            entry.0 += 1;
        }
    }

    pub fn succeeded(&self, email: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(email);
        }
    }
}
