use async_trait::async_trait;
use domain::project::ProjectEvent;
use sqlx::PgConnection;

use crate::{Projection, StoredEvent};

async fn touch(
    db: &mut PgConnection,
    project_id: uuid::Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE projects SET updated_at = $2 WHERE id = $1")
        .bind(project_id)
        .bind(at)
        .execute(db)
        .await?;
    Ok(())
}

/// A channel's new prompt joins its version history.
async fn prompt_version_recorded(
    db: &mut PgConnection,
    event: &StoredEvent,
    channel_id: uuid::Uuid,
    prompt_version: u32,
    prompt: &str,
) -> anyhow::Result<()> {
    let project_id = event.aggregate_uuid()?;
    sqlx::query(
        "INSERT INTO channel_prompt_versions (project_id, channel_id, version, prompt, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(project_id)
    .bind(channel_id)
    .bind(prompt_version as i32)
    .bind(prompt)
    .bind(event.actor())
    .bind(event.recorded_at)
    .execute(&mut *db)
    .await?;
    touch(db, project_id, event.recorded_at).await?;
    Ok(())
}

/// Projects (with their banned phrases), their members, their channels (with their length
/// limits) and every prompt version.
pub struct ProjectsProjection;

#[async_trait]
impl Projection for ProjectsProjection {
    fn name(&self) -> &'static str {
        "projects"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["Project"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "projects",
            "project_members",
            "project_channels",
            "channel_prompt_versions",
        ]
    }

    async fn apply(&self, db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        let project_id = event.aggregate_uuid()?;
        let at = event.recorded_at;
        match event.decode::<ProjectEvent>()? {
            ProjectEvent::ProjectCreated {
                name,
                description,
                product_id,
                manager_id,
            } => {
                sqlx::query(
                    "INSERT INTO projects (id, product_id, name, description, archived, created_by, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, false, $5, $6, $6) ON CONFLICT (id) DO NOTHING",
                )
                .bind(project_id)
                .bind(product_id)
                .bind(name)
                .bind(description)
                .bind(manager_id)
                .bind(at)
                .execute(&mut *db)
                .await?;
                sqlx::query(
                    "INSERT INTO project_members (project_id, user_id, role, added_at) VALUES ($1, $2, 'manager', $3)
                     ON CONFLICT (project_id, user_id) DO UPDATE SET role = 'manager'",
                )
                .bind(project_id)
                .bind(manager_id)
                .bind(at)
                .execute(db)
                .await?;
            }
            ProjectEvent::ProjectRenamed { name } => {
                sqlx::query("UPDATE projects SET name = $2, updated_at = $3 WHERE id = $1")
                    .bind(project_id)
                    .bind(name)
                    .bind(at)
                    .execute(db)
                    .await?;
            }
            ProjectEvent::ProjectRedescribed { description } => {
                sqlx::query("UPDATE projects SET description = $2, updated_at = $3 WHERE id = $1")
                    .bind(project_id)
                    .bind(description)
                    .bind(at)
                    .execute(db)
                    .await?;
            }
            ProjectEvent::MemberAdded { user_id, role }
            | ProjectEvent::MemberRoleChanged { user_id, role } => {
                sqlx::query(
                    "INSERT INTO project_members (project_id, user_id, role, added_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (project_id, user_id) DO UPDATE SET role = EXCLUDED.role",
                )
                .bind(project_id)
                .bind(user_id)
                .bind(role.as_str())
                .bind(at)
                .execute(&mut *db)
                .await?;
                touch(db, project_id, at).await?;
            }
            ProjectEvent::MemberRemoved { user_id } => {
                sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
                    .bind(project_id)
                    .bind(user_id)
                    .execute(&mut *db)
                    .await?;
                touch(db, project_id, at).await?;
            }
            ProjectEvent::ChannelAttached {
                channel_id,
                prompt,
                prompt_version,
                max_chars,
            } => {
                sqlx::query(
                    "INSERT INTO project_channels (project_id, channel_id, attached, prompt, prompt_version, max_chars, attached_at, updated_at)
                     VALUES ($1, $2, true, $3, $4, $5, $6, $6)
                     ON CONFLICT (project_id, channel_id) DO UPDATE
                        SET attached = true, prompt = EXCLUDED.prompt, prompt_version = EXCLUDED.prompt_version,
                            max_chars = EXCLUDED.max_chars, updated_at = EXCLUDED.updated_at",
                )
                .bind(project_id)
                .bind(channel_id)
                .bind(&prompt)
                .bind(prompt_version as i32)
                .bind(max_chars.map(|m| m as i32))
                .bind(at)
                .execute(&mut *db)
                .await?;
                prompt_version_recorded(db, event, channel_id, prompt_version, &prompt).await?;
            }
            ProjectEvent::ChannelPromptChanged {
                channel_id,
                prompt,
                prompt_version,
            } => {
                sqlx::query(
                    "INSERT INTO project_channels (project_id, channel_id, attached, prompt, prompt_version, attached_at, updated_at)
                     VALUES ($1, $2, true, $3, $4, $5, $5)
                     ON CONFLICT (project_id, channel_id) DO UPDATE
                        SET attached = true, prompt = EXCLUDED.prompt,
                            prompt_version = EXCLUDED.prompt_version, updated_at = EXCLUDED.updated_at",
                )
                .bind(project_id)
                .bind(channel_id)
                .bind(&prompt)
                .bind(prompt_version as i32)
                .bind(at)
                .execute(&mut *db)
                .await?;
                prompt_version_recorded(db, event, channel_id, prompt_version, &prompt).await?;
            }
            ProjectEvent::ChannelDetached { channel_id } => {
                sqlx::query("UPDATE project_channels SET attached = false, updated_at = $3 WHERE project_id = $1 AND channel_id = $2")
                    .bind(project_id)
                    .bind(channel_id)
                    .bind(at)
                    .execute(&mut *db)
                    .await?;
                touch(db, project_id, at).await?;
            }
            ProjectEvent::ChannelMaxLengthChanged {
                channel_id,
                max_chars,
            } => {
                sqlx::query("UPDATE project_channels SET max_chars = $3, updated_at = $4 WHERE project_id = $1 AND channel_id = $2")
                    .bind(project_id)
                    .bind(channel_id)
                    .bind(max_chars.map(|m| m as i32))
                    .bind(at)
                    .execute(&mut *db)
                    .await?;
                touch(db, project_id, at).await?;
            }
            ProjectEvent::BannedPhrasesChanged { phrases } => {
                sqlx::query(
                    "UPDATE projects SET banned_phrases = $2, updated_at = $3 WHERE id = $1",
                )
                .bind(project_id)
                .bind(serde_json::to_value(&phrases)?)
                .bind(at)
                .execute(db)
                .await?;
            }
            ProjectEvent::ProjectArchived => {
                sqlx::query("UPDATE projects SET archived = true, updated_at = $2 WHERE id = $1")
                    .bind(project_id)
                    .bind(at)
                    .execute(db)
                    .await?;
            }
        }
        Ok(())
    }
}
