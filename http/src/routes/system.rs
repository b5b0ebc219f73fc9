//! Liveness, readiness and metrics, open to anyone (no data in them).
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Serialize)]
pub struct Health {
    status: &'static str,
    version: &'static str,
}

/// The process is up.
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Serialize)]
pub struct Readiness {
    status: &'static str,
    database: bool,
    subscribers: Vec<projections::SubscriberStatus>,
    max_lag_seconds: f64,
}

/// The database answers and every read model is within the lag bound.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let max = state.config.ready_max_lag_seconds;
    match state.engine.status().await {
        Ok(subscribers) => {
            let fresh = subscribers.iter().all(|s| s.lag_seconds <= max);
            let status = if fresh {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = Readiness {
                status: if fresh { "ready" } else { "lagging" },
                database: true,
                subscribers,
                max_lag_seconds: max,
            };
            (status, Json(body))
        }
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "readiness check failed");
            let body = Readiness {
                status: "database_unavailable",
                database: false,
                subscribers: vec![],
                max_lag_seconds: max,
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(body))
        }
    }
}

/// Prometheus text format: projection lag per subscriber. Admins only (scrape with an admin's
/// API token): nothing but sign-in, health and the API documents is open to anonymous callers.
pub async fn metrics(
    State(state): State<AppState>,
    caller: Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_admin()?;
    let mut out = String::new();
    match state.engine.status().await {
        Ok(subscribers) => {
            out.push_str("# HELP offerflow_projection_lag_events Committed events a subscriber has not processed yet.\n");
            out.push_str("# TYPE offerflow_projection_lag_events gauge\n");
            for s in &subscribers {
                out.push_str(&format!(
                    "offerflow_projection_lag_events{{subscriber=\"{}\"}} {}\n",
                    s.name, s.events_behind
                ));
            }
            out.push_str("# HELP offerflow_projection_lag_seconds Age of the oldest event a subscriber has not processed.\n");
            out.push_str("# TYPE offerflow_projection_lag_seconds gauge\n");
            for s in &subscribers {
                out.push_str(&format!(
                    "offerflow_projection_lag_seconds{{subscriber=\"{}\"}} {}\n",
                    s.name, s.lag_seconds
                ));
            }
            out.push_str("# HELP offerflow_projection_events_processed_total Events a subscriber has processed since its last rebuild.\n");
            out.push_str("# TYPE offerflow_projection_events_processed_total counter\n");
            for s in &subscribers {
                out.push_str(&format!(
                    "offerflow_projection_events_processed_total{{subscriber=\"{}\"}} {}\n",
                    s.name, s.events_processed
                ));
            }
            out.push_str("# TYPE offerflow_up gauge\nofferflow_up 1\n");
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                out,
            ))
        }
        Err(_) => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            "# TYPE offerflow_up gauge\nofferflow_up 0\n".to_string(),
        )),
    }
}
