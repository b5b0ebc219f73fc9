use std::collections::HashMap;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::client_request::{sent_text, ClientField, ClientRequestEvent, RequestStatus};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Projection, StoredEvent};

/// The client column whose value is the client's segment, used by filters and statistics.
pub const CLUSTER_COLUMN: &str = "super_clust";

pub fn cluster_of(client_data: &[ClientField]) -> Option<String> {
    client_data
        .iter()
        .find(|f| f.key == CLUSTER_COLUMN)
        .and_then(|f| match &f.value {
            Value::String(s) if !s.trim().is_empty() && s != "NULL" => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

/// New requests, column by column, for one multi-row insert.
#[derive(Default)]
struct NewRequests {
    id: Vec<Uuid>,
    project_id: Vec<Uuid>,
    channel_id: Vec<Uuid>,
    client_id: Vec<Option<String>>,
    source: Vec<String>,
    client_data: Vec<Value>,
    decoding: Vec<Value>,
    cluster: Vec<Option<String>>,
    created_by: Vec<Option<String>>,
    at: Vec<DateTime<Utc>>,
}

impl NewRequests {
    async fn flush(&mut self, db: &mut PgConnection) -> anyhow::Result<()> {
        if self.id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO client_requests (id, project_id, channel_id, client_id, source, client_data,
                                          client_data_decoding, cluster, created_by, created_at, updated_at)
             SELECT t.*, t.at FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::jsonb[],
                                          $7::jsonb[], $8::text[], $9::text[], $10::timestamptz[])
                  AS t(id, project_id, channel_id, client_id, source, client_data, decoding, cluster, created_by, at)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&self.id)
        .bind(&self.project_id)
        .bind(&self.channel_id)
        .bind(&self.client_id)
        .bind(&self.source)
        .bind(&self.client_data)
        .bind(&self.decoding)
        .bind(&self.cluster)
        .bind(&self.created_by)
        .bind(&self.at)
        .execute(db)
        .await
        .context("inserting new client requests")?;
        *self = NewRequests::default();
        Ok(())
    }
}

/// Outcome changes, the newest per request, for one multi-row update.
#[derive(Default)]
struct Outcomes {
    latest: HashMap<Uuid, (&'static str, DateTime<Utc>)>,
}

impl Outcomes {
    async fn flush(&mut self, db: &mut PgConnection) -> anyhow::Result<()> {
        if self.latest.is_empty() {
            return Ok(());
        }
        let (ids, rest): (Vec<Uuid>, Vec<(&str, DateTime<Utc>)>) = self.latest.drain().unzip();
        let (outcomes, ats): (Vec<&str>, Vec<DateTime<Utc>>) = rest.into_iter().unzip();
        sqlx::query(
            "UPDATE client_requests r SET outcome = t.outcome, updated_at = t.at
               FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) AS t(id, outcome, at) WHERE r.id = t.id",
        )
        .bind(&ids)
        .bind(&outcomes)
        .bind(&ats)
        .execute(db)
        .await
        .context("recording outcomes")?;
        Ok(())
    }
}

/// Client requests per project channel, for the requests table and its filters.
pub struct ClientRequestsProjection;

#[async_trait]
impl Projection for ClientRequestsProjection {
    fn name(&self) -> &'static str {
        "client_requests"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["ClientRequest"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["client_requests", "client_request_messages"]
    }

    async fn apply_batch(
        &self,
        db: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> anyhow::Result<()> {
        // Runs of creations and runs of outcomes each become one statement; a run ends where
        // the other kind starts, so every outcome lands after the creation it follows.
        let mut created = NewRequests::default();
        let mut outcomes = Outcomes::default();
        for event in events {
            let id = event.aggregate_uuid()?;
            match event.decode::<ClientRequestEvent>()? {
                ClientRequestEvent::ClientRequestCreated {
                    project_id,
                    channel_id,
                    client_id,
                    source,
                    client_data,
                    client_data_decoding,
                } => {
                    outcomes.flush(db).await?;
                    created.id.push(id);
                    created.project_id.push(project_id);
                    created.channel_id.push(channel_id);
                    created.client_id.push(client_id);
                    created.source.push(source);
                    created.cluster.push(cluster_of(&client_data));
                    created
                        .client_data
                        .push(serde_json::to_value(&client_data)?);
                    created
                        .decoding
                        .push(serde_json::to_value(&client_data_decoding)?);
                    created.created_by.push(event.actor());
                    created.at.push(event.recorded_at);
                }
                ClientRequestEvent::OutcomeRecorded { outcome, .. } => {
                    created.flush(db).await?;
                    outcomes
                        .latest
                        .insert(id, (outcome.as_str(), event.recorded_at));
                }
                // Generations are few beside creations and outcomes: one statement each, after
                // the runs before them.
                other => {
                    created.flush(db).await?;
                    outcomes.flush(db).await?;
                    apply_generation_event(db, id, event, other).await?;
                }
            }
        }
        created.flush(db).await?;
        outcomes.flush(db).await
    }

    async fn apply(&self, db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        self.apply_batch(db, &[event]).await
    }
}

async fn set_status(
    db: &mut PgConnection,
    request: Uuid,
    status: RequestStatus,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE client_requests SET status = $2, status_reason = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(request)
    .bind(status.as_str())
    .bind(reason)
    .bind(at)
    .execute(db)
    .await
    .with_context(|| format!("setting client request {request} to {}", status.as_str()))?;
    Ok(())
}

async fn apply_generation_event(
    db: &mut PgConnection,
    request: Uuid,
    stored: &StoredEvent,
    event: ClientRequestEvent,
) -> anyhow::Result<()> {
    let at = stored.recorded_at;
    match event {
        ClientRequestEvent::GenerationRequested {
            generation_id,
            user_message_id,
            parent_message_id,
            instruction,
            messages,
            model,
            prompt_version,
            ..
        } => {
            let text = sent_text(instruction.as_deref(), &messages);
            sqlx::query(
                "INSERT INTO client_request_messages (id, request_id, generation_id, parent_id, message_type, text,
                                                      model, prompt_version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'user', $5, $6, $7, $8, $8) ON CONFLICT (id) DO NOTHING",
            )
            .bind(user_message_id)
            .bind(request)
            .bind(generation_id)
            .bind(parent_message_id)
            .bind(text)
            .bind(model)
            .bind(prompt_version as i32)
            .bind(at)
            .execute(&mut *db)
            .await
            .context("recording a generation request")?;
            set_status(db, request, RequestStatus::InProgress, None, at).await
        }
        ClientRequestEvent::MessageGenerated {
            generation_id,
            message_id,
            text,
            model,
            prompt_tokens,
            completion_tokens,
            duration_ms,
            flags,
        } => {
            sqlx::query(
                "INSERT INTO client_request_messages (id, request_id, generation_id, parent_id, message_type, text,
                                                      flags, model, prompt_version, prompt_tokens, completion_tokens,
                                                      duration_ms, created_at, updated_at)
                 SELECT $1, $2, $3, asked.id, 'system', $4, $5, $6, asked.prompt_version, $7, $8, $9, $10, $10
                   FROM (SELECT NULL) AS one
                   LEFT JOIN client_request_messages asked
                          ON asked.generation_id = $3 AND asked.message_type = 'user'
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(message_id)
            .bind(request)
            .bind(generation_id)
            .bind(text)
            .bind(serde_json::to_value(&flags)?)
            .bind(model)
            .bind(prompt_tokens as i32)
            .bind(completion_tokens as i32)
            .bind(duration_ms as i64)
            .bind(at)
            .execute(&mut *db)
            .await
            .context("recording a generated offer")?;
            set_status(db, request, RequestStatus::Ok, None, at).await
        }
        ClientRequestEvent::GenerationFailed {
            error, permanent, ..
        } => {
            if permanent {
                set_status(db, request, RequestStatus::Error, Some(&error), at).await?;
            }
            Ok(())
        }
        ClientRequestEvent::MessageRated {
            message_id,
            rating,
            comment,
        } => {
            sqlx::query(
                "UPDATE client_request_messages SET rating = $2, rating_comment = $3, updated_at = $4 WHERE id = $1",
            )
            .bind(message_id)
            .bind(rating.as_str())
            .bind(comment)
            .bind(at)
            .execute(db)
            .await
            .context("recording a rating")?;
            Ok(())
        }
        ClientRequestEvent::GenerationRequeued { .. } => {
            set_status(db, request, RequestStatus::InProgress, None, at).await
        }
        ClientRequestEvent::MessageReviewed {
            message_id,
            reviewer,
            quality,
            corrected_text,
            rating,
            ..
        } => {
            sqlx::query(
                "UPDATE client_request_messages
                    SET review_quality = $2, review_corrected_text = $3, review_rating = $4,
                        reviewed_by = $5, reviewed_at = $6, updated_at = $6
                  WHERE id = $1",
            )
            .bind(message_id)
            .bind(quality.as_str())
            .bind(corrected_text)
            .bind(rating.map(i16::from))
            .bind(reviewer)
            .bind(at)
            .execute(db)
            .await
            .context("recording a review from Argilla")?;
            Ok(())
        }
        ClientRequestEvent::ClientRequestCreated { .. }
        | ClientRequestEvent::OutcomeRecorded { .. } => Ok(()),
    }
}
