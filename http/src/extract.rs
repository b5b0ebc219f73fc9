//! Extractors whose rejections speak the API's error shape: a malformed body, a wrong type, an
//! unknown enum value or a bad UUID is a 4xx naming the field, never axum's plain-text default.
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;
use projections::ConsistencyToken;

pub const CONSISTENCY_HEADER: &str = "x-consistency-token";

/// The field a serde message is about: `role: unknown variant` → `role`,
/// "missing field `email`" → `email`, "unknown field `nmae`" → `nmae`.
fn field_of(detail: &str) -> Option<String> {
    for marker in ["missing field `", "unknown field `"] {
        if let Some(rest) = detail.split_once(marker).map(|(_, r)| r) {
            let name = rest.split('`').next().unwrap_or_default();
            let prefix = detail
                .split_once(": ")
                .map(|(p, _)| p)
                .filter(|p| !p.contains(' ') && *p != ".");
            return Some(match prefix {
                // An unknown field's path already ends with its name.
                Some(prefix) if prefix == name || prefix.ends_with(&format!(".{name}")) => {
                    prefix.to_string()
                }
                Some(prefix) if !detail.starts_with(marker) => format!("{prefix}.{name}"),
                _ => name.to_string(),
            });
        }
    }
    let (path, _) = detail.split_once(": ")?;
    let path = path.trim();
    if path.is_empty() || path == "." || path.contains(' ') {
        None
    } else {
        Some(path.to_string())
    }
}

pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let text = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => {
            // "Failed to deserialize the JSON body into the target type: field: message at line …"
            let detail = text
                .split_once("target type: ")
                .map_or(text.as_str(), |(_, d)| d);
            let detail = detail
                .split(" at line ")
                .next()
                .unwrap_or(detail)
                .to_string();
            match field_of(&detail) {
                Some(field) => ApiError::Unprocessable {
                    code: "invalid",
                    message: detail,
                    fields: vec![field],
                },
                None => ApiError::Unprocessable {
                    code: "invalid",
                    message: detail,
                    fields: vec![],
                },
            }
        }
        JsonRejection::JsonSyntaxError(_) => ApiError::BadRequest {
            code: "malformed_json",
            message: text,
            fields: vec![],
        },
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "expected a body with Content-Type: application/json".into(),
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge("the request body is larger than the server accepts".into())
        }
        other => ApiError::BadRequest {
            code: "bad_request",
            message: other.body_text(),
            fields: vec![],
        },
    }
}

pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let text = e.body_text();
                // "Invalid URL: Cannot parse `project_id` with value `x` to a `Uuid`" and the like.
                let field = text
                    .split('`')
                    .nth(1)
                    .map(str::to_string)
                    .unwrap_or_else(|| "path".into());
                Err(ApiError::BadRequest {
                    code: "invalid_path",
                    message: format!(
                        "{field}: must be a UUID such as 0191e2d4-5c1a-7cde-8f00-0123456789ab"
                    ),
                    fields: vec![field],
                })
            }
            Err(other) => Err(ApiError::BadRequest {
                code: "invalid_path",
                message: other.body_text(),
                fields: vec![],
            }),
        }
    }
}

pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // PostgreSQL text cannot hold NUL: refuse it here rather than fail the query with a 500.
        if let Some(query) = parts.uri.query() {
            if let Some(pair) = query.split('&').find(|pair| pair.contains("%00")) {
                let field = pair.split('=').next().unwrap_or_default().to_string();
                return Err(ApiError::BadRequest {
                    code: "invalid_query",
                    message: format!("{field}: must not contain NUL characters"),
                    fields: vec![field],
                });
            }
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let text = e.body_text();
                let detail = text
                    .split_once("Failed to deserialize query string: ")
                    .map_or(text.as_str(), |(_, d)| d);
                let field = field_of(detail);
                Err(ApiError::BadRequest {
                    code: "invalid_query",
                    message: detail.to_string(),
                    fields: field.into_iter().collect(),
                })
            }
            Err(other) => Err(ApiError::BadRequest {
                code: "invalid_query",
                message: other.body_text(),
                fields: vec![],
            }),
        }
    }
}

/// Read-your-writes: a query given the consistency token of an earlier command (header
/// `X-Consistency-Token` or `?consistency_token=`) waits until the read models have processed
/// it, at most the configured bound, then answers 503 rather than stale data.
pub struct ReadAfter;

impl FromRequestParts<AppState> for ReadAfter {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let from_header = parts
            .headers
            .get(CONSISTENCY_HEADER)
            .map(|v| v.to_str().unwrap_or("").to_string());
        let from_query = parts.uri.query().and_then(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == "consistency_token")
                .map(|(_, v)| v.to_string())
        });
        let Some(raw) = from_header.or(from_query) else {
            return Ok(ReadAfter);
        };
        let token: ConsistencyToken = raw.parse().map_err(|e: String| {
            ApiError::bad_request("consistency_token", format!("consistency_token: {e}"))
        })?;
        // A token beyond the end of the log was never handed out: waiting for it would only
        // hold the request for the whole bound.
        let (end,): (Option<i64>,) = sqlx::query_as("SELECT max(global_position) FROM events")
            .fetch_one(&state.pool)
            .await?;
        if token.global_position > end.unwrap_or(0) {
            return Err(ApiError::bad_request(
                "consistency_token",
                "consistency_token: no such point in the event log",
            ));
        }
        let wait = Duration::from_millis(state.config.consistency_wait_ms);
        if state.engine.wait_for(token, wait).await? {
            Ok(ReadAfter)
        } else {
            Err(ApiError::Unavailable(format!(
                "the read models have not caught up with {token} within {} ms; retry",
                state.config.consistency_wait_ms
            )))
        }
    }
}

/// `?limit=&offset=` with sane bounds.
#[derive(Debug, Clone, Copy, serde::Deserialize, utoipa::IntoParams)]
pub struct Page {
    /// How many items to return (1–500, default 50).
    pub limit: Option<i64>,
    /// How many items to skip (default 0).
    pub offset: Option<i64>,
}

impl Page {
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(l) if (1..=500).contains(&l) => Ok(l),
            Some(_) => Err(ApiError::bad_request(
                "limit",
                "limit: must be between 1 and 500",
            )),
        }
    }

    pub fn offset(&self) -> Result<i64, ApiError> {
        match self.offset {
            None => Ok(0),
            Some(o) if o >= 0 => Ok(o),
            Some(_) => Err(ApiError::bad_request(
                "offset",
                "offset: must not be negative",
            )),
        }
    }
}

/// A `?q=` search term as an ILIKE pattern, with the wildcards a user typed taken literally.
pub fn like_pattern(q: &Option<String>) -> Option<String> {
    q.as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(|q| {
            let escaped = q
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        })
}

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn serde_messages_name_their_field() {
        assert_eq!(
            field_of("role: unknown variant `boss`, expected `manager`"),
            Some("role".into())
        );
        assert_eq!(field_of("missing field `email`"), Some("email".into()));
        assert_eq!(
            field_of("unknown field `nmae`, expected one of `name`"),
            Some("nmae".into())
        );
        assert_eq!(
            field_of("params.top_k: unknown field `top_k`, expected one of `seed`"),
            Some("params.top_k".into())
        );
        assert_eq!(
            field_of("params: missing field `seed`"),
            Some("params.seed".into())
        );
        assert_eq!(field_of("invalid type: string \"x\", expected a map"), None);
    }
}
