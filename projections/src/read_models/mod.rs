//! One module per read model: its projection (events → rows).
pub mod catalog;
pub mod client_requests;
pub mod projects;
pub mod statistics;
pub mod users;
