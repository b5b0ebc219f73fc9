//! The Argilla export: a durable subscriber of the log that upserts every offer into an
//! Argilla dataset of its project (one per project, `external_id` = the message id), and a
//! periodic sync that brings reviewers' submitted responses back as `MessageReviewed` events.
pub mod client;
pub mod exporter;

pub use client::{ArgillaClient, ArgillaError};
pub use exporter::{ArgillaConfig, ArgillaExporter, Review, ReviewLedger, SUBSCRIBER};
