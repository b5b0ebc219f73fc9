//! Reactors with side effects: the LLM generation worker and the Argilla exporter.
//!
//! They will consume the event log through `projections`' subscriber engine (or a job table
//! filled in the same transaction as the triggering event) and write their results back as
//! commands on the aggregates in `domain`. Nothing runs here yet: generation arrives with the
//! next issue.
