//! Offerflow's domain: what a bank marketing team can decide, as aggregates, commands and events.
//!
//! Nothing here does I/O. Facts that live in other aggregates (is this product archived, is this
//! channel attached, who is the caller) are looked up by the command layer and handed in with the
//! command, so every decision can be tested as given/when/then without a database.

pub mod catalog;
pub mod chat;
pub mod client_import;
pub mod client_request;
mod error;
pub mod guardrails;
pub mod ids;
pub mod metadata;
pub mod project;
pub mod prompt;
pub mod user;
mod validate;

pub use error::{DomainError, ErrorKind};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who is asking, as far as a decision needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub user_id: Uuid,
    pub is_admin: bool,
}

/// A member's role inside one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Edits the project, its members and its prompts, reads its statistics.
    Manager,
    /// Adds and reads client requests, records outcomes.
    Performer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Performer => "performer",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "manager" => Some(Role::Manager),
            "performer" => Some(Role::Performer),
            _ => None,
        }
    }
}

/// Version of every event schema written by this build; stored with each event so upcasters can
/// recognise old payloads once a schema changes.
pub const EVENT_SCHEMA_VERSION: &str = "1";
