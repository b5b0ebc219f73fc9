//! Route modules mirror the API's paths; each exposes `router()`.
pub mod argilla;
pub mod auth;
pub mod catalog;
pub mod generations;
pub mod history;
pub mod imports;
pub mod legacy;
pub mod projects;
pub mod requests;
pub mod statistics;
pub mod system;
pub mod users;
