use async_trait::async_trait;
use domain::user::UserEvent;
use sqlx::PgConnection;

use crate::{Projection, StoredEvent};

async fn set_flag(
    db: &mut PgConnection,
    id: uuid::Uuid,
    column: &'static str,
    value: bool,
    at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "UPDATE users SET {column} = $2, updated_at = $3 WHERE id = $1"
    ))
    .bind(id)
    .bind(value)
    .bind(at)
    .execute(db)
    .await?;
    Ok(())
}

/// People: the user administration list and member names.
pub struct UsersProjection;

#[async_trait]
impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        "users"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["User"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["users"]
    }

    async fn apply(&self, db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        let id = event.aggregate_uuid()?;
        let at = event.recorded_at;
        match event.decode::<UserEvent>()? {
            UserEvent::UserRegistered {
                email,
                profile,
                is_admin,
            } => {
                sqlx::query(
                    "INSERT INTO users (id, email, name, position, subdivision, is_admin, active, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, true, $7, $7) ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(email)
                .bind(profile.name)
                .bind(profile.position)
                .bind(profile.subdivision)
                .bind(is_admin)
                .bind(at)
                .execute(db)
                .await?;
            }
            UserEvent::UserProfileUpdated { profile } => {
                sqlx::query("UPDATE users SET name = $2, position = $3, subdivision = $4, updated_at = $5 WHERE id = $1")
                    .bind(id)
                    .bind(profile.name)
                    .bind(profile.position)
                    .bind(profile.subdivision)
                    .bind(at)
                    .execute(db)
                    .await?;
            }
            UserEvent::AdminRightsGranted => {
                set_flag(db, id, "is_admin", true, at).await?;
            }
            UserEvent::AdminRightsRevoked => {
                set_flag(db, id, "is_admin", false, at).await?;
            }
            UserEvent::UserDeactivated => {
                set_flag(db, id, "active", false, at).await?;
            }
            UserEvent::UserReactivated => {
                set_flag(db, id, "active", true, at).await?;
            }
            UserEvent::PasswordChanged { .. }
            | UserEvent::ApiTokenIssued { .. }
            | UserEvent::ApiTokenRevoked { .. } => {}
        }
        Ok(())
    }
}
