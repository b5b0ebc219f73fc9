use async_trait::async_trait;
use domain::catalog::{CatalogEvent, CatalogKind, ProductKind, SalesChannelKind};
use sqlx::PgConnection;

use crate::{Projection, StoredEvent};

/// Products and sales channels, for the catalog pages and pickers.
pub struct CatalogProjection;

async fn apply_entry<K: CatalogKind>(
    db: &mut PgConnection,
    table: &str,
    event: &StoredEvent,
) -> anyhow::Result<()> {
    let id = event.aggregate_uuid()?;
    match event.decode::<CatalogEvent<K>>()? {
        CatalogEvent::Created { key, details } => {
            sqlx::query(&format!(
                "INSERT INTO {table} (id, key, name, description, link, archived, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, false, $6, $6) ON CONFLICT (id) DO NOTHING"
            ))
            .bind(id)
            .bind(key)
            .bind(details.name)
            .bind(details.description)
            .bind(details.link)
            .bind(event.recorded_at)
            .execute(db)
            .await?;
        }
        CatalogEvent::DetailsUpdated { details } => {
            sqlx::query(&format!(
                "UPDATE {table} SET name = $2, description = $3, link = $4, updated_at = $5 WHERE id = $1"
            ))
            .bind(id)
            .bind(details.name)
            .bind(details.description)
            .bind(details.link)
            .bind(event.recorded_at)
            .execute(db)
            .await?;
        }
        CatalogEvent::Archived => {
            sqlx::query(&format!(
                "UPDATE {table} SET archived = true, updated_at = $2 WHERE id = $1"
            ))
            .bind(id)
            .bind(event.recorded_at)
            .execute(db)
            .await?;
        }
        CatalogEvent::_Kind(never, _) => match never {},
    }
    Ok(())
}

#[async_trait]
impl Projection for CatalogProjection {
    fn name(&self) -> &'static str {
        "catalog"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[ProductKind::TYPE, SalesChannelKind::TYPE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["products", "sales_channels"]
    }

    async fn apply(&self, db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        match event.aggregate_type.as_str() {
            ProductKind::TYPE => apply_entry::<ProductKind>(db, "products", event).await,
            SalesChannelKind::TYPE => {
                apply_entry::<SalesChannelKind>(db, "sales_channels", event).await
            }
            _ => Ok(()),
        }
    }
}
