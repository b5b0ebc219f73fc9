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
            // A reactor's lag (Argilla unreachable) is shown but does not stop the API serving.
            let fresh = subscribers
                .iter()
                .all(|s| s.lag_seconds <= max || state.engine.is_reactor(&s.name));
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
            let series =
                |name: &str,
                 kind: &str,
                 help: &str,
                 value: &dyn Fn(&projections::SubscriberStatus) -> String| {
                    let mut text = format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
                    for s in &subscribers {
                        text.push_str(&format!(
                            "{name}{{subscriber=\"{}\"}} {}\n",
                            s.name,
                            value(s)
                        ));
                    }
                    text
                };
            out.push_str(&series(
                "offerflow_projection_lag_events",
                "gauge",
                "Committed events a subscriber has not processed yet.",
                &|s| s.events_behind.to_string(),
            ));
            out.push_str(&series(
                "offerflow_projection_lag_seconds",
                "gauge",
                "Age of the oldest event a subscriber has not processed.",
                &|s| s.lag_seconds.to_string(),
            ));
            out.push_str(&series(
                "offerflow_projection_events_processed_total",
                "counter",
                "Events a subscriber has processed since its last rebuild.",
                &|s| s.events_processed.to_string(),
            ));
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
