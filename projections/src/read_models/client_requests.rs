use async_trait::async_trait;
use domain::client_request::ClientRequestEvent;
use sqlx::PgConnection;

use crate::{Projection, StoredEvent};

/// The client column whose value is the client's segment, used by filters and statistics.
pub const CLUSTER_COLUMN: &str = "super_clust";

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
        &["client_requests"]
    }

    async fn apply(&self, db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
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
                let cluster = client_data
                    .iter()
                    .find(|f| f.key == CLUSTER_COLUMN)
                    .and_then(|f| match &f.value {
                        serde_json::Value::String(s) if !s.trim().is_empty() && s != "NULL" => {
                            Some(s.clone())
                        }
                        serde_json::Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    });
                sqlx::query(
                    "INSERT INTO client_requests (id, project_id, channel_id, client_id, source, client_data,
                                                  client_data_decoding, cluster, created_by, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(project_id)
                .bind(channel_id)
                .bind(client_id)
                .bind(source)
                .bind(serde_json::to_value(&client_data)?)
                .bind(serde_json::to_value(&client_data_decoding)?)
                .bind(cluster)
                .bind(event.actor())
                .bind(event.recorded_at)
                .execute(db)
                .await?;
            }
            ClientRequestEvent::OutcomeRecorded { outcome } => {
                sqlx::query(
                    "UPDATE client_requests SET outcome = $2, updated_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(outcome.as_str())
                .bind(event.recorded_at)
                .execute(db)
                .await?;
            }
        }
        Ok(())
    }
}
