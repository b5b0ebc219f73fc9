//! Reading the event log as subscribers see it.
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One committed event with its place in the global order.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    pub global_position: i64,
    /// The writing transaction's id (`xid8`), as decimal text.
    #[sqlx(rename = "transaction_text")]
    pub transaction_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The payload's JSON text, only for the aggregate types the reader asked for: other
    /// subscribers' events are passed over without shipping their payloads. Kept as text so
    /// that a subscriber parses it once, straight into the fields it reads.
    pub payload: Option<String>,
    /// Like the payload, only for the aggregate types asked for (JSON null otherwise).
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    /// The event in the schema this build reads (older versions upcast).
    pub fn upcast(mut self) -> anyhow::Result<Self> {
        if !domain::upcast::is_current(&self.event_type, &self.event_version) {
            if let Some(text) = self.payload.take() {
                let payload: Value = serde_json::from_str(&text)
                    .with_context(|| format!("event {} is not JSON", self.global_position))?;
                let (version, payload) = domain::upcast::upcast_parts(
                    &self.aggregate_type,
                    &self.event_type,
                    &self.event_version,
                    payload,
                    &self.metadata,
                );
                self.event_version = version;
                self.payload = Some(payload.to_string());
            }
        }
        Ok(self)
    }

    /// The payload as `E`: the whole event, or a projection's own narrower view of it (serde
    /// skips the fields `E` does not name without building them).
    pub fn decode<E: DeserializeOwned>(&self) -> anyhow::Result<E> {
        let payload = self.payload.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "event {} was read without its payload",
                self.global_position
            )
        })?;
        serde_json::from_str(payload).map_err(|e| {
            anyhow::anyhow!(
                "event {} ({} {}) does not decode: {e}",
                self.global_position,
                self.aggregate_type,
                self.event_type
            )
        })
    }

    /// Who caused the event, as `kind:id` (e.g. `user:…`), for "created by" columns.
    pub fn actor(&self) -> Option<String> {
        let kind = self.metadata.get("actor_kind")?.as_str()?;
        let id = self.metadata.get("actor_id")?.as_str()?;
        Some(format!("{kind}:{id}"))
    }

    pub fn aggregate_uuid(&self) -> anyhow::Result<uuid::Uuid> {
        uuid::Uuid::parse_str(&self.aggregate_id).map_err(|e| {
            anyhow::anyhow!(
                "event {} has a non-UUID aggregate id: {e}",
                self.global_position
            )
        })
    }
}

/// Reads up to `limit` events after `(after_tx, after_pos)` that no running transaction can
/// still precede. One statement, hence one snapshot for both the rows and the horizon.
pub async fn read_after(
    db: &mut sqlx::PgConnection,
    after_tx: &str,
    after_pos: i64,
    limit: i64,
    aggregate_types: &[&str],
) -> anyhow::Result<Vec<StoredEvent>> {
    let types: Vec<String> = aggregate_types.iter().map(|t| t.to_string()).collect();
    let events: Vec<StoredEvent> = sqlx::query_as(
        // The text form gets its own name: ordering by a column aliased to `transaction_id` would
        // sort by the text ("1000" before "999") and skip events at every digit boundary.
        "SELECT global_position, transaction_id::text AS transaction_text, aggregate_type, aggregate_id, sequence,
                event_type, event_version,
                CASE WHEN aggregate_type = ANY($4) THEN payload::text END AS payload,
                CASE WHEN aggregate_type = ANY($4) THEN metadata ELSE 'null'::jsonb END AS metadata,
                recorded_at
           FROM events
          WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
            AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY events.transaction_id, events.global_position
          LIMIT $3",
    )
    .bind(after_tx)
    .bind(after_pos)
    .bind(limit)
    .bind(&types)
    .fetch_all(db)
    .await?;
    events.into_iter().map(StoredEvent::upcast).collect()
}
