//! What every event carries besides its payload: who caused it, within which request, as a
//! consequence of which earlier event, and under which schema version. Never a secret.
use std::collections::HashMap;

use uuid::Uuid;

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(Uuid),
    ApiToken {
        token_id: Uuid,
        user_id: Uuid,
    },
    /// A background process such as a reactor, named.
    Process(String),
    /// The command line on the server itself (seeding, admin bootstrap).
    Cli,
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::ApiToken { .. } => "api_token",
            Actor::Process(_) => "process",
            Actor::Cli => "cli",
        }
    }

    pub fn id(&self) -> String {
        match self {
            Actor::User(id) => id.to_string(),
            Actor::ApiToken { token_id, .. } => token_id.to_string(),
            Actor::Process(name) => name.clone(),
            Actor::Cli => "cli".to_string(),
        }
    }

    /// The user on whose behalf the actor acts, if any.
    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Actor::User(id) | Actor::ApiToken { user_id: id, .. } => Some(*id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMetadata {
    pub actor: Actor,
    /// The HTTP request id (or the CLI invocation id) this event belongs to.
    pub correlation_id: String,
    /// The event that made a reactor issue the command, if any.
    pub causation_id: Option<String>,
    /// Unique per command execution, so the command layer can tell whether its own
    /// execution wrote the latest event or an earlier one did (idempotent repeats).
    pub command_id: Uuid,
}

impl EventMetadata {
    pub fn new(actor: Actor, correlation_id: impl Into<String>) -> Self {
        EventMetadata {
            actor,
            correlation_id: correlation_id.into(),
            causation_id: None,
            command_id: Uuid::new_v4(),
        }
    }

    pub fn caused_by(mut self, event_id: impl Into<String>) -> Self {
        self.causation_id = Some(event_id.into());
        self
    }

    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            ("actor_kind".to_string(), self.actor.kind().to_string()),
            ("actor_id".to_string(), self.actor.id()),
            ("correlation_id".to_string(), self.correlation_id.clone()),
            ("command_id".to_string(), self.command_id.to_string()),
            (
                "schema_version".to_string(),
                crate::EVENT_SCHEMA_VERSION.to_string(),
            ),
        ]);
        if let Actor::ApiToken { user_id, .. } = &self.actor {
            map.insert("on_behalf_of".to_string(), user_id.to_string());
        }
        if let Some(causation) = &self.causation_id {
            map.insert("causation_id".to_string(), causation.clone());
        }
        map
    }
}
