//! The bank's catalog: products and sales channels. Both have the same life (created, details
//! updated, archived) and an immutable `key` (`PK`, `SMS`, …) from which their id is derived, so a
//! key can never name two entries.
use std::marker::PhantomData;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::validate::{link, required_text};
use crate::{Caller, DomainError};

/// What differs between products and sales channels.
pub trait CatalogKind:
    std::fmt::Debug + Clone + PartialEq + Eq + Default + Send + Sync + 'static
{
    const TYPE: &'static str;
    /// The word used in messages and event types (`Product`, `SalesChannel`).
    const NOUN: &'static str;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProductKind;
impl CatalogKind for ProductKind {
    const TYPE: &'static str = "Product";
    const NOUN: &'static str = "product";
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SalesChannelKind;
impl CatalogKind for SalesChannelKind {
    const TYPE: &'static str = "SalesChannel";
    const NOUN: &'static str = "sales channel";
}

pub type Product = CatalogEntry<ProductKind>;
pub type SalesChannel = CatalogEntry<SalesChannelKind>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogDetails {
    pub name: String,
    pub description: String,
    pub link: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogCommand {
    Create {
        key: String,
        details: CatalogDetails,
        by: Caller,
    },
    /// Fields left `None` keep their value; `link: Some(None)` clears the link.
    Update {
        name: Option<String>,
        description: Option<String>,
        link: Option<Option<String>>,
        by: Caller,
    },
    Archive {
        by: Caller,
    },
}

/// What happened to a catalog entry. Generic over the kind only so that the stored event type
/// reads as the banker's fact (`ProductCreated`, `SalesChannelArchived`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum CatalogEvent<K: CatalogKind> {
    Created {
        key: String,
        details: CatalogDetails,
    },
    DetailsUpdated {
        details: CatalogDetails,
    },
    Archived,
    #[doc(hidden)]
    #[serde(skip)]
    _Kind(std::convert::Infallible, PhantomData<K>),
}

pub type ProductEvent = CatalogEvent<ProductKind>;
pub type SalesChannelEvent = CatalogEvent<SalesChannelKind>;

impl<K: CatalogKind> CatalogEvent<K> {
    fn suffix(&self) -> &'static str {
        match self {
            CatalogEvent::Created { .. } => "Created",
            CatalogEvent::DetailsUpdated { .. } => "DetailsUpdated",
            CatalogEvent::Archived => "Archived",
            CatalogEvent::_Kind(never, _) => match *never {},
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct CatalogEntry<K: CatalogKind> {
    pub key: Option<String>,
    pub details: Option<CatalogDetails>,
    pub archived: bool,
    #[serde(skip)]
    kind: PhantomData<K>,
}

impl<K: CatalogKind> Default for CatalogEntry<K> {
    fn default() -> Self {
        CatalogEntry {
            key: None,
            details: None,
            archived: false,
            kind: PhantomData,
        }
    }
}

/// Keys are short codes a banker types and reads: `PK`, `MOB_BANNER`.
pub fn normalize_key(key: &str) -> Result<String, DomainError> {
    let key = key.trim().to_uppercase();
    let valid = !key.is_empty()
        && key.len() <= 32
        && key.starts_with(|c: char| c.is_ascii_uppercase())
        && key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(key)
    } else {
        Err(DomainError::invalid(
            "key",
            "must be 1 to 32 Latin letters, digits or '_', starting with a letter",
        ))
    }
}

fn clean_details(details: CatalogDetails) -> Result<CatalogDetails, DomainError> {
    Ok(CatalogDetails {
        name: required_text("name", &details.name, 200)?,
        description: required_text("description", &details.description, 20_000)?,
        link: link("link", details.link.as_deref())?,
    })
}

impl<K: CatalogKind> CatalogEntry<K> {
    fn require_admin(by: &Caller) -> Result<(), DomainError> {
        if by.is_admin {
            Ok(())
        } else {
            Err(DomainError::AdminRequired)
        }
    }

    fn existing(&self) -> Result<&CatalogDetails, DomainError> {
        match &self.details {
            None => Err(DomainError::NotFound { what: K::NOUN }),
            Some(_) if self.archived => Err(DomainError::Archived { what: K::NOUN }),
            Some(details) => Ok(details),
        }
    }
}

impl<K: CatalogKind> Aggregate for CatalogEntry<K> {
    const TYPE: &'static str = K::TYPE;
    type Command = CatalogCommand;
    type Event = CatalogEvent<K>;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: CatalogCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            CatalogCommand::Create { key, details, by } => {
                Self::require_admin(&by)?;
                let key = normalize_key(&key)?;
                if self.key.is_some() {
                    return Err(DomainError::AlreadyExists { what: K::NOUN });
                }
                let details = clean_details(details)?;
                sink.write(CatalogEvent::Created { key, details }, self)
                    .await;
            }
            CatalogCommand::Update {
                name,
                description,
                link: new_link,
                by,
            } => {
                Self::require_admin(&by)?;
                let current = self.existing()?.clone();
                let details = clean_details(CatalogDetails {
                    name: name.unwrap_or(current.name.clone()),
                    description: description.unwrap_or(current.description.clone()),
                    link: new_link.unwrap_or(current.link.clone()),
                })?;
                if details != current {
                    sink.write(CatalogEvent::DetailsUpdated { details }, self)
                        .await;
                }
            }
            CatalogCommand::Archive { by } => {
                Self::require_admin(&by)?;
                if self.details.is_none() {
                    return Err(DomainError::NotFound { what: K::NOUN });
                }
                if !self.archived {
                    sink.write(CatalogEvent::Archived, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: CatalogEvent<K>) {
        match event {
            CatalogEvent::Created { key, details } => {
                self.key = Some(key);
                self.details = Some(details);
            }
            CatalogEvent::DetailsUpdated { details } => self.details = Some(details),
            CatalogEvent::Archived => self.archived = true,
            CatalogEvent::_Kind(never, _) => match never {},
        }
    }
}

impl<K: CatalogKind> DomainEvent for CatalogEvent<K> {
    fn event_type(&self) -> String {
        format!("{}{}", K::TYPE, self.suffix())
    }

    fn event_version(&self) -> String {
        crate::EVENT_SCHEMA_VERSION.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    type ProductTest = TestFramework<Product>;

    fn admin() -> Caller {
        Caller {
            user_id: Uuid::new_v4(),
            is_admin: true,
        }
    }

    fn someone() -> Caller {
        Caller {
            user_id: Uuid::new_v4(),
            is_admin: false,
        }
    }

    fn card() -> CatalogDetails {
        CatalogDetails {
            name: "Кредитная карта".into(),
            description: "Лимит до 1 млн рублей".into(),
            link: Some("https://bank.example/cards".into()),
        }
    }

    fn created() -> ProductEvent {
        CatalogEvent::Created {
            key: "CC".into(),
            details: card(),
        }
    }

    #[tokio::test]
    async fn admin_creates_a_product_with_a_normalized_key() {
        ProductTest::with(())
            .given_no_previous_events()
            .when_async(CatalogCommand::Create {
                key: " cc ".into(),
                details: card(),
                by: admin(),
            })
            .await
            .then_expect_events(vec![created()]);
    }

    #[tokio::test]
    async fn only_admins_write_the_catalog() {
        ProductTest::with(())
            .given_no_previous_events()
            .when_async(CatalogCommand::Create {
                key: "CC".into(),
                details: card(),
                by: someone(),
            })
            .await
            .then_expect_error(DomainError::AdminRequired);
    }

    #[tokio::test]
    async fn a_key_names_one_product_only() {
        ProductTest::with(())
            .given(vec![created()])
            .when_async(CatalogCommand::Create {
                key: "CC".into(),
                details: card(),
                by: admin(),
            })
            .await
            .then_expect_error(DomainError::AlreadyExists { what: "product" });
    }

    #[tokio::test]
    async fn bad_key_and_empty_name_and_bad_link_name_their_field() {
        for (key, details, field) in [
            ("1X", card(), "key"),
            ("КК", card(), "key"),
            (
                "CC",
                CatalogDetails {
                    name: " ".into(),
                    ..card()
                },
                "name",
            ),
            (
                "CC",
                CatalogDetails {
                    description: "".into(),
                    ..card()
                },
                "description",
            ),
            (
                "CC",
                CatalogDetails {
                    link: Some("ftp://x".into()),
                    ..card()
                },
                "link",
            ),
        ] {
            let result = ProductTest::with(())
                .given_no_previous_events()
                .when_async(CatalogCommand::Create {
                    key: key.into(),
                    details,
                    by: admin(),
                })
                .await
                .inspect_result();
            match result {
                Err(DomainError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected invalid {field}, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn update_keeps_untouched_fields_and_can_clear_the_link() {
        ProductTest::with(())
            .given(vec![created()])
            .when_async(CatalogCommand::Update {
                name: None,
                description: Some("Новый лимит".into()),
                link: Some(None),
                by: admin(),
            })
            .await
            .then_expect_events(vec![CatalogEvent::DetailsUpdated {
                details: CatalogDetails {
                    name: "Кредитная карта".into(),
                    description: "Новый лимит".into(),
                    link: None,
                },
            }]);
    }

    #[tokio::test]
    async fn an_update_that_changes_nothing_records_nothing() {
        ProductTest::with(())
            .given(vec![created()])
            .when_async(CatalogCommand::Update {
                name: Some("Кредитная карта".into()),
                description: None,
                link: None,
                by: admin(),
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn updating_a_missing_or_archived_product_is_refused() {
        ProductTest::with(())
            .given_no_previous_events()
            .when_async(CatalogCommand::Update {
                name: Some("x".into()),
                description: None,
                link: None,
                by: admin(),
            })
            .await
            .then_expect_error(DomainError::NotFound { what: "product" });
        ProductTest::with(())
            .given(vec![created(), CatalogEvent::Archived])
            .when_async(CatalogCommand::Update {
                name: Some("x".into()),
                description: None,
                link: None,
                by: admin(),
            })
            .await
            .then_expect_error(DomainError::Archived { what: "product" });
    }

    #[tokio::test]
    async fn archiving_is_idempotent_and_needs_an_existing_entry() {
        ProductTest::with(())
            .given(vec![created()])
            .when_async(CatalogCommand::Archive { by: admin() })
            .await
            .then_expect_events(vec![CatalogEvent::Archived]);
        ProductTest::with(())
            .given(vec![created(), CatalogEvent::Archived])
            .when_async(CatalogCommand::Archive { by: admin() })
            .await
            .then_expect_events(vec![]);
        TestFramework::<SalesChannel>::with(())
            .given_no_previous_events()
            .when_async(CatalogCommand::Archive { by: admin() })
            .await
            .then_expect_error(DomainError::NotFound {
                what: "sales channel",
            });
        ProductTest::with(())
            .given(vec![created()])
            .when_async(CatalogCommand::Archive { by: someone() })
            .await
            .then_expect_error(DomainError::AdminRequired);
    }
}
