//! Reading the log for people: an aggregate's history, the audit feed, and aggregates as they
//! were at a moment (folded from the log by the domain code, never from a read model).
//!
//! Every event is upcast to the schema this build reads before anyone sees it, so history,
//! audit and time travel agree with what the aggregates and projections decide on.
use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

/// Who caused an event, as a person reads it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ActorView {
    /// `user`, `api_token`, `process` or `cli`.
    pub kind: String,
    /// The user's id (also for an API token: the user it acts for), or the process's name.
    pub id: String,
    /// The user's name, the process's name, or `command line`.
    pub name: Option<String>,
    /// The API token used, when the actor is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

/// One event of the log, upcast, with who caused it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoggedEvent {
    /// The event's place in the whole log.
    pub global_position: i64,
    /// `Product`, `SalesChannel`, `Project`, `ClientRequest` or `User`.
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The event's place in its aggregate's history, from 1.
    pub sequence: i64,
    pub event_type: String,
    /// The schema version the payload is in (after upcasting).
    pub event_version: String,
    pub recorded_at: DateTime<Utc>,
    pub actor: ActorView,
    /// The HTTP request (`X-Request-Id`) or CLI run the event belongs to.
    pub correlation_id: Option<String>,
    /// The event that made a reactor act, if any.
    pub causation_id: Option<String>,
    /// The event's fields.
    #[schema(value_type = Object)]
    pub payload: Value,
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    pub global_position: i64,
    pub transaction_text: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

pub(crate) const EVENT_COLUMNS: &str = "events.global_position, events.transaction_id::text AS transaction_text,
    events.aggregate_type, events.aggregate_id, events.sequence, events.event_type, events.event_version,
    events.payload, events.metadata, events.recorded_at";

impl EventRow {
    /// The row in the schema this build reads.
    fn upcast(mut self) -> Self {
        let (version, payload) = domain::upcast::upcast_parts(
            &self.aggregate_type,
            &self.event_type,
            &self.event_version,
            std::mem::take(&mut self.payload),
            &self.metadata,
        );
        self.event_version = version;
        self.payload = payload;
        self
    }

    fn meta(&self, key: &str) -> Option<String> {
        self.metadata
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// The user an event was caused by or on behalf of, whose name must be looked up.
    fn user_id(&self) -> Option<Uuid> {
        let id = match self.meta("actor_kind")?.as_str() {
            "user" => self.meta("actor_id")?,
            "api_token" => self.meta("on_behalf_of")?,
            _ => return None,
        };
        Uuid::parse_str(&id).ok()
    }
}

/// Turns rows into events people read, with the users' names from the users read model.
pub(crate) async fn present(
    pool: &PgPool,
    rows: Vec<EventRow>,
) -> anyhow::Result<Vec<LoggedEvent>> {
    let rows: Vec<EventRow> = rows.into_iter().map(EventRow::upcast).collect();
    let mut users: Vec<Uuid> = rows.iter().filter_map(EventRow::user_id).collect();
    users.sort_unstable();
    users.dedup();
    let names: HashMap<Uuid, String> = if users.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as::<_, (Uuid, String)>("SELECT id, name FROM users WHERE id = ANY($1)")
            .bind(&users)
            .fetch_all(pool)
            .await
            .context("reading the names of the events' users")?
            .into_iter()
            .collect()
    };
    Ok(rows
        .into_iter()
        .map(|row| {
            let kind = row.meta("actor_kind").unwrap_or_else(|| "unknown".into());
            let actor_id = row.meta("actor_id").unwrap_or_default();
            let actor = match kind.as_str() {
                "user" | "api_token" => {
                    let user = row.user_id();
                    ActorView {
                        id: user.map_or_else(|| actor_id.clone(), |u| u.to_string()),
                        name: user.and_then(|u| names.get(&u).cloned()),
                        token_id: (kind == "api_token").then(|| actor_id.clone()),
                        kind,
                    }
                }
                "cli" => ActorView {
                    kind,
                    id: actor_id,
                    name: Some("command line".into()),
                    token_id: None,
                },
                _ => ActorView {
                    kind,
                    name: Some(actor_id.clone()),
                    id: actor_id,
                    token_id: None,
                },
            };
            let correlation_id = row.meta("correlation_id");
            let causation_id = row.meta("causation_id");
            LoggedEvent {
                payload: fields_of(&row.event_type, row.payload),
                global_position: row.global_position,
                aggregate_type: row.aggregate_type,
                aggregate_id: row.aggregate_id,
                sequence: row.sequence,
                event_type: row.event_type,
                event_version: row.event_version,
                recorded_at: row.recorded_at,
                actor,
                correlation_id,
                causation_id,
            }
        })
        .collect())
}

/// The event's own fields, without the enum tag serde wraps them in (the variant's name, which
/// the event type ends with: catalog events are stored as `Created` for `ProductCreated`).
fn fields_of(event_type: &str, payload: Value) -> Value {
    match payload {
        Value::Object(map)
            if map.len() == 1
                && map
                    .keys()
                    .all(|variant| event_type.ends_with(variant.as_str())) =>
        {
            map.into_iter()
                .next()
                .map_or(Value::Null, |(_, fields)| fields)
        }
        // A variant without fields is stored as its bare name.
        Value::String(name) if event_type.ends_with(name.as_str()) => {
            Value::Object(Default::default())
        }
        other => other,
    }
}

/// One page of an aggregate's history, oldest first, and how many events it has in all.
pub async fn aggregate_history(
    pool: &PgPool,
    aggregate_type: &str,
    id: Uuid,
    limit: i64,
    offset: i64,
) -> anyhow::Result<(Vec<LoggedEvent>, i64)> {
    let id = id.to_string();
    let rows: Vec<EventRow> = sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
          ORDER BY events.sequence LIMIT $3 OFFSET $4"
    ))
    .bind(aggregate_type)
    .bind(&id)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await
    .with_context(|| format!("reading the history of {aggregate_type} {id}"))?;
    let (total,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(aggregate_type)
    .bind(&id)
    .fetch_one(pool)
    .await
    .with_context(|| format!("counting the history of {aggregate_type} {id}"))?;
    Ok((present(pool, rows).await?, total))
}

/// An aggregate's events recorded at or before `as_of`, upcast and decoded, with their times.
pub async fn events_until<A: Aggregate>(
    pool: &PgPool,
    id: Uuid,
    as_of: DateTime<Utc>,
) -> anyhow::Result<Vec<(DateTime<Utc>, A::Event)>> {
    // An aggregate's events are appended one command after another, so the ones recorded by a
    // moment are a prefix of its history.
    let rows: Vec<EventRow> = sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND recorded_at <= $3
          ORDER BY events.sequence"
    ))
    .bind(A::TYPE)
    .bind(id.to_string())
    .bind(as_of)
    .fetch_all(pool)
    .await
    .with_context(|| format!("reading {} {id} as of {as_of}", A::TYPE))?;
    rows.into_iter()
        .map(|row| {
            let row = row.upcast();
            let event = serde_json::from_value(row.payload).with_context(|| {
                format!(
                    "{} {id} event {} ({}) does not decode",
                    A::TYPE,
                    row.sequence,
                    row.event_type
                )
            })?;
            Ok((row.recorded_at, event))
        })
        .collect()
}

/// The aggregate the domain code folds from `events`.
pub fn fold<A: Aggregate>(events: &[(DateTime<Utc>, A::Event)]) -> A {
    let mut aggregate = A::default();
    for (_, event) in events {
        aggregate.apply(event.clone());
    }
    aggregate
}

/// `?as_of=`: the state as it was at that moment, folded from the log.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct AsOf {
    /// An RFC 3339 time (e.g. `2026-11-20T17:00:00Z`): answer with the state as it was then.
    pub as_of: Option<String>,
}

impl AsOf {
    pub fn checked(&self) -> Result<Option<DateTime<Utc>>, crate::error::ApiError> {
        self.as_of
            .as_deref()
            .map(|v| {
                parse_as_of(v).ok_or_else(|| {
                    crate::error::ApiError::bad_request(
                        "as_of",
                        "as_of: an RFC 3339 time, e.g. 2026-11-20T17:00:00Z",
                    )
                })
            })
            .transpose()
    }
}

/// `?as_of=`: an RFC 3339 time. A `+` offset typed into a URL unencoded arrives as a space.
pub fn parse_as_of(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .or_else(|_| DateTime::parse_from_rfc3339(&value.replace(' ', "+")))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_lose_their_enum_tag() {
        assert_eq!(
            fields_of(
                "OutcomeRecorded",
                json!({"OutcomeRecorded": {"outcome": "sold"}})
            ),
            json!({"outcome": "sold"})
        );
        assert_eq!(
            fields_of("ProjectArchived", json!("ProjectArchived")),
            json!({})
        );
        assert_eq!(
            fields_of("ProductCreated", json!({"Created": {"key": "CC"}})),
            json!({"key": "CC"})
        );
        assert_eq!(
            fields_of("SalesChannelArchived", json!("Archived")),
            json!({})
        );
    }

    #[test]
    fn as_of_takes_rfc3339_with_an_unencoded_plus() {
        let utc = parse_as_of("2026-11-20T17:00:00Z").unwrap();
        assert_eq!(parse_as_of("2026-11-20T20:00:00 03:00"), Some(utc));
        assert_eq!(parse_as_of("2026-11-20T20:00:00+03:00"), Some(utc));
        assert_eq!(parse_as_of("last friday"), None);
        assert_eq!(parse_as_of("2026-11-20"), None);
    }
}
