//! Offerflow's HTTP side: the REST API (commands and queries), the command layer in front of
//! the event store, the server process and the CLI's building blocks.

pub mod argilla;
pub mod auth;
pub mod commands;
pub mod demo;
pub mod embedded_pg;
pub mod error;
pub mod event_store;
pub mod export;
pub mod extract;
pub mod generation;
pub mod history;
pub mod import;
pub mod llm;
pub mod routes;
pub mod seed;
pub mod server;
pub mod state;
pub mod ui;
pub mod worker;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::routing::get;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Offerflow API",
        description = "Personalised marketing offers for bank clients, with every request, text, rating and outcome kept as an event log.\n\nCommands answer with a `consistency_token`; pass it to a later query as the `X-Consistency-Token` header to read your own write.",
    ),
    servers((url = "/api/v1")),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Sign-in, tokens, the caller's profile"),
        (name = "users", description = "User administration"),
        (name = "catalog", description = "Products and sales channels"),
        (name = "projects", description = "Projects, members, channels and prompts"),
        (name = "requests", description = "Client requests and outcomes"),
        (name = "generation", description = "Offers: generating, follow-ups, ratings, progress, dead jobs"),
        (name = "imports", description = "Importing clients from files and client databases"),
        (name = "statistics", description = "What sells, through which channel, to which clients, with which prompt; generation figures; CSV and XLSX exports"),
        (name = "audit", description = "History of each aggregate, the audit feed, schema versions"),
        (name = "argilla", description = "The Argilla export's dead letters"),
    )
)]
struct ApiDoc;

/// The bearer security scheme, shared by `/api/v1` and the legacy routes' documents.
pub(crate) struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An access token from /auth/login, or an API token (off_…)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of `/api/v1`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::auth::router())
        .merge(routes::users::router())
        .merge(routes::catalog::router())
        .merge(routes::projects::router())
        .merge(routes::requests::router())
        .merge(routes::generations::router())
        .merge(routes::imports::router())
        .merge(routes::statistics::router())
        .merge(routes::history::router())
        .merge(routes::argilla::router())
}

async fn wrong_method() -> ApiError {
    ApiError::MethodNotAllowed
}

pub fn router(state: AppState) -> Router {
    let (api, doc) = api_routes().split_for_parts();
    let request_id = HeaderName::from_static("x-request-id");
    let max_body = state.config.max_body_bytes;
    Router::new()
        .nest("/api/v1", api)
        .merge(routes::legacy::router())
        .merge(
            SwaggerUi::new("/api/docs")
                .url("/api/v1/openapi.json", doc)
                .url("/api/llm-model/openapi.json", routes::legacy::openapi()),
        )
        .route("/health", get(routes::system::health))
        .route("/ready", get(routes::system::ready))
        .route("/metrics", get(routes::system::metrics))
        .fallback(ui::fallback)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(|_| {
            use axum::response::IntoResponse;
            ApiError::Internal(anyhow::anyhow!("a request handler panicked")).into_response()
        }))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}
