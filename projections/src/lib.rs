//! The read side: a durable catch-up reader over the event log, and the read models it keeps.
//!
//! Each read model is a named subscriber with its own checkpoint. A subscriber reads events in
//! `(transaction_id, global_position)` order, only below the oldest transaction still running in
//! the cluster, so an event that commits late is never skipped; it writes a batch of read-model
//! rows and its checkpoint in one transaction, so a crash repeats nothing and loses nothing.

pub mod engine;
pub mod log;
pub mod read_models;

pub use engine::{ConsistencyToken, Engine, Projection, SubscriberStatus};
pub use log::StoredEvent;

/// The migrations for the whole database (event log, accounts, read models).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Every read model this build maintains, in a stable order.
pub fn all_projections() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(read_models::catalog::CatalogProjection),
        std::sync::Arc::new(read_models::users::UsersProjection),
        std::sync::Arc::new(read_models::projects::ProjectsProjection),
        std::sync::Arc::new(read_models::client_requests::ClientRequestsProjection),
        std::sync::Arc::new(read_models::statistics::StatisticsProjection),
    ]
}
