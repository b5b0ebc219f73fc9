//! The starting catalog shipped inside the binary, and the first admin.
use domain::catalog::{ProductKind, SalesChannelKind};
use domain::metadata::EventMetadata;
use domain::Caller;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::catalog::{create, NewCatalogItem};
use crate::state::AppState;

const CATALOG: &str = include_str!("../seed/catalog.yaml");

#[derive(Deserialize)]
struct Catalog {
    products: Vec<Entry>,
    sales_channels: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    key: String,
    name: String,
    description: String,
    #[serde(default)]
    link: Option<String>,
}

impl From<Entry> for NewCatalogItem {
    fn from(e: Entry) -> Self {
        NewCatalogItem {
            key: e.key,
            name: e.name,
            description: e.description,
            link: e.link.filter(|l| !l.is_empty()),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SeedReport {
    pub products_added: usize,
    pub channels_added: usize,
    pub already_there: usize,
}

/// The caller that seeding and bootstrap act as: an admin with no user behind it.
pub fn system_admin() -> Caller {
    Caller {
        user_id: Uuid::nil(),
        is_admin: true,
    }
}

/// Adds every shipped entry whose key is not in the catalog yet.
pub async fn seed_catalog(
    state: &AppState,
    metadata: &EventMetadata,
) -> anyhow::Result<SeedReport> {
    let catalog: Catalog = serde_yaml::from_str(CATALOG)
        .map_err(|e| anyhow::anyhow!("the shipped catalog does not parse: {e}"))?;
    let mut report = SeedReport::default();
    for entry in catalog.products {
        let key = entry.key.clone();
        let result = create::<ProductKind>(
            state,
            &state.bus.products,
            metadata,
            system_admin(),
            entry.into(),
        )
        .await;
        if tally(result).map_err(|e| anyhow::anyhow!("seeding product {key}: {e}"))? {
            report.products_added += 1;
        } else {
            report.already_there += 1;
        }
    }
    for entry in catalog.sales_channels {
        let key = entry.key.clone();
        let result = create::<SalesChannelKind>(
            state,
            &state.bus.channels,
            metadata,
            system_admin(),
            entry.into(),
        )
        .await;
        if tally(result).map_err(|e| anyhow::anyhow!("seeding sales channel {key}: {e}"))? {
            report.channels_added += 1;
        } else {
            report.already_there += 1;
        }
    }
    Ok(report)
}

/// Whether the entry was added now; an entry already there is no error.
fn tally(result: Result<(Uuid, crate::commands::Executed), ApiError>) -> Result<bool, ApiError> {
    match result {
        Ok((_, done)) => Ok(done.changed),
        Err(ApiError::Conflict {
            code: "already_exists",
            ..
        }) => Ok(false),
        Err(other) => Err(other),
    }
}
