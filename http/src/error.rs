//! One error type for the whole API. Each variant is one status code; the body is always
//! `{"error": {"code", "message", "fields"?}}`. Database and unexpected errors are logged with
//! their detail and answered as a bare 500: internals never reach the client.
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::{DomainError, ErrorKind};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        fields: Vec<String>,
    },
    #[error("authentication required")]
    Unauthorized { message: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        fields: Vec<String>,
    },
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_seconds: u64,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid`, `not_found`, `last_manager`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The input fields the error is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        ApiError::Unprocessable {
            code: "invalid",
            message: format!("{field}: {message}"),
            fields: vec![field],
        }
    }

    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        ApiError::BadRequest {
            code: "bad_request",
            message: message.into(),
            fields: if field.is_empty() {
                vec![]
            } else {
                vec![field]
            },
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::Unauthorized {
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::NotFound(what.into())
    }

    fn parts(&self) -> (StatusCode, String, String, Vec<String>) {
        match self {
            ApiError::BadRequest {
                code,
                message,
                fields,
            } => (
                StatusCode::BAD_REQUEST,
                code.to_string(),
                message.clone(),
                fields.clone(),
            ),
            ApiError::Unauthorized { message } => (
                StatusCode::UNAUTHORIZED,
                "unauthorized".into(),
                message.clone(),
                vec![],
            ),
            ApiError::Forbidden(message) => (
                StatusCode::FORBIDDEN,
                "forbidden".into(),
                message.clone(),
                vec![],
            ),
            ApiError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "not_found".into(),
                format!("{what} not found"),
                vec![],
            ),
            ApiError::Conflict { code, message } => (
                StatusCode::CONFLICT,
                code.to_string(),
                message.clone(),
                vec![],
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed".into(),
                "this path does not accept that method".into(),
                vec![],
            ),
            ApiError::PayloadTooLarge(message) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large".into(),
                message.clone(),
                vec![],
            ),
            ApiError::UnsupportedMediaType(message) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type".into(),
                message.clone(),
                vec![],
            ),
            ApiError::Unprocessable {
                code,
                message,
                fields,
            } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                code.to_string(),
                message.clone(),
                fields.clone(),
            ),
            ApiError::TooManyRequests { message, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts".into(),
                message.clone(),
                vec![],
            ),
            ApiError::Unavailable(message) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable".into(),
                message.clone(),
                vec![],
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal".into(),
                "internal error; it has been logged".into(),
                vec![],
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(error) = &self {
            tracing::error!(error = format!("{error:#}"), "request failed");
        }
        let retry_after = match &self {
            ApiError::TooManyRequests {
                retry_after_seconds,
                ..
            } => Some(*retry_after_seconds),
            _ => None,
        };
        let (status, code, message, fields) = self.parts();
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                fields: if fields.is_empty() {
                    None
                } else {
                    Some(fields)
                },
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
        {
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let message = error.to_string();
        match error.kind() {
            ErrorKind::Invalid => ApiError::Unprocessable {
                code: error.code(),
                message,
                fields: error.fields(),
            },
            ErrorKind::NotFound => match error {
                DomainError::NotFound { what } => ApiError::NotFound(what.to_string()),
                DomainError::NotAMember => ApiError::NotFound("project member".into()),
                _ => ApiError::NotFound("resource".into()),
            },
            ErrorKind::Forbidden => ApiError::Forbidden(message),
            ErrorKind::Conflict => ApiError::Conflict {
                code: error.code(),
                message,
            },
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::error!(%error, "database unavailable");
                ApiError::Unavailable("the database is unavailable; try again shortly".into())
            }
            _ => ApiError::Internal(anyhow::Error::new(error).context("database query failed")),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
