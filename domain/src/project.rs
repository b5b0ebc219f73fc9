//! A marketing project: one product, a team with roles, the sales channels it works in (each
//! with a numbered history of prompt versions and a length limit), and the phrases its offers
//! must not use.
use std::collections::BTreeMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::guardrails::{default_max_chars, phrase_key, ChannelRules};
use crate::prompt::initial_channel_prompt;
use crate::validate::{optional_text, required_text};
use crate::{Caller, DomainError, Role};

/// A catalog entry as the command layer found it when the command arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogFacts {
    pub id: Uuid,
    /// The catalog key (`SMS`); a channel's default length limit depends on it.
    pub key: String,
    pub description: String,
    pub archived: bool,
}

/// A user as the command layer found them when the command arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserFacts {
    pub user_id: Uuid,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectCommand {
    Create {
        name: String,
        description: String,
        product: CatalogFacts,
        by: Caller,
    },
    Update {
        name: Option<String>,
        description: Option<String>,
        by: Caller,
    },
    AddMember {
        user: UserFacts,
        role: Role,
        by: Caller,
    },
    ChangeMemberRole {
        user_id: Uuid,
        role: Role,
        by: Caller,
    },
    RemoveMember {
        user_id: Uuid,
        by: Caller,
    },
    /// Attaching a channel that is already attached is not an error: it is left as it is.
    AttachChannels {
        channels: Vec<CatalogFacts>,
        product: CatalogFacts,
        by: Caller,
    },
    ChangeChannelPrompt {
        channel_id: Uuid,
        prompt: String,
        by: Caller,
    },
    DetachChannel {
        channel_id: Uuid,
        by: Caller,
    },
    /// `None` removes the limit.
    ChangeChannelMaxLength {
        channel_id: Uuid,
        max_chars: Option<u32>,
        by: Caller,
    },
    /// Replaces the whole list.
    ChangeBannedPhrases {
        phrases: Vec<String>,
        by: Caller,
    },
    Archive {
        by: Caller,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProjectEvent {
    ProjectCreated {
        name: String,
        description: String,
        product_id: Uuid,
        manager_id: Uuid,
    },
    ProjectRenamed {
        name: String,
    },
    ProjectRedescribed {
        description: String,
    },
    MemberAdded {
        user_id: Uuid,
        role: Role,
    },
    MemberRoleChanged {
        user_id: Uuid,
        role: Role,
    },
    MemberRemoved {
        user_id: Uuid,
    },
    /// `max_chars`: the length limit the channel starts with (the catalog channel's default);
    /// absent from events written before limits existed, which read as no limit.
    ChannelAttached {
        channel_id: Uuid,
        prompt: String,
        prompt_version: u32,
        #[serde(default)]
        max_chars: Option<u32>,
    },
    ChannelPromptChanged {
        channel_id: Uuid,
        prompt: String,
        prompt_version: u32,
    },
    ChannelDetached {
        channel_id: Uuid,
    },
    /// `None`: no limit.
    ChannelMaxLengthChanged {
        channel_id: Uuid,
        max_chars: Option<u32>,
    },
    /// The whole list, in the manager's order.
    BannedPhrasesChanged {
        phrases: Vec<String>,
    },
    ProjectArchived,
}

impl DomainEvent for ProjectEvent {
    fn event_type(&self) -> String {
        match self {
            ProjectEvent::ProjectCreated { .. } => "ProjectCreated",
            ProjectEvent::ProjectRenamed { .. } => "ProjectRenamed",
            ProjectEvent::ProjectRedescribed { .. } => "ProjectRedescribed",
            ProjectEvent::MemberAdded { .. } => "MemberAdded",
            ProjectEvent::MemberRoleChanged { .. } => "MemberRoleChanged",
            ProjectEvent::MemberRemoved { .. } => "MemberRemoved",
            ProjectEvent::ChannelAttached { .. } => "ChannelAttached",
            ProjectEvent::ChannelPromptChanged { .. } => "ChannelPromptChanged",
            ProjectEvent::ChannelDetached { .. } => "ChannelDetached",
            ProjectEvent::ChannelMaxLengthChanged { .. } => "ChannelMaxLengthChanged",
            ProjectEvent::BannedPhrasesChanged { .. } => "BannedPhrasesChanged",
            ProjectEvent::ProjectArchived => "ProjectArchived",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::EVENT_SCHEMA_VERSION.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectChannel {
    pub attached: bool,
    pub prompt: String,
    /// The newest prompt version ever given to this channel; versions are never reused.
    pub prompt_version: u32,
    /// The length limit in force, in characters; `None` for none.
    #[serde(default)]
    pub max_chars: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub created: bool,
    pub archived: bool,
    pub product_id: Option<Uuid>,
    pub name: String,
    pub description: String,
    pub members: BTreeMap<Uuid, Role>,
    pub channels: BTreeMap<Uuid, ProjectChannel>,
    /// Phrases the project's offers must not contain, in the manager's order.
    #[serde(default)]
    pub banned_phrases: Vec<String>,
}

const NAME_MAX: usize = 200;
const DESCRIPTION_MAX: usize = 20_000;
const PROMPT_MAX: usize = 20_000;
/// The largest length limit a channel may have; longer texts are not one offer.
pub const MAX_CHARS_CEILING: u32 = 10_000;
pub const BANNED_PHRASE_MAX_CHARS: usize = 200;
pub const BANNED_PHRASES_MAX: usize = 200;

impl Project {
    /// What the caller may do here: admins act as managers everywhere; anyone else who is not a
    /// member is told the project does not exist, so outsiders cannot probe for it.
    pub fn role_of(&self, by: &Caller) -> Result<Role, DomainError> {
        if !self.created {
            return Err(DomainError::NotFound { what: "project" });
        }
        if by.is_admin {
            return Ok(Role::Manager);
        }
        self.members
            .get(&by.user_id)
            .copied()
            .ok_or(DomainError::NotFound { what: "project" })
    }

    /// Checks the caller may act with `needed` rights (a performer's or a manager's).
    pub fn authorize(&self, by: &Caller, needed: Role) -> Result<(), DomainError> {
        let role = self.role_of(by)?;
        if needed == Role::Manager && role != Role::Manager {
            return Err(DomainError::ManagerRequired);
        }
        Ok(())
    }

    /// Like [`Project::authorize`], for commands that change the project or its requests.
    pub fn authorize_change(&self, by: &Caller, needed: Role) -> Result<(), DomainError> {
        self.authorize(by, needed)?;
        if self.archived {
            return Err(DomainError::Archived { what: "project" });
        }
        Ok(())
    }

    pub fn channel_attached(&self, channel_id: Uuid) -> bool {
        self.channels.get(&channel_id).is_some_and(|c| c.attached)
    }

    fn managers(&self) -> usize {
        self.members
            .values()
            .filter(|r| **r == Role::Manager)
            .count()
    }

    /// What offers for this channel are checked against. A detached channel keeps its rules, so
    /// a generation already under way when it was detached is still reviewed.
    pub fn channel_rules(&self, channel_id: Uuid) -> Option<ChannelRules> {
        self.channels.get(&channel_id).map(|channel| ChannelRules {
            max_chars: channel.max_chars,
            banned_phrases: self.banned_phrases.clone(),
        })
    }

    fn attached_channel(&self, channel_id: Uuid) -> Result<&ProjectChannel, DomainError> {
        self.channels
            .get(&channel_id)
            .filter(|c| c.attached)
            .ok_or(DomainError::ChannelNotAttached)
    }
}

impl Aggregate for Project {
    const TYPE: &'static str = "Project";
    type Command = ProjectCommand;
    type Event = ProjectEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ProjectCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            ProjectCommand::Create {
                name,
                description,
                product,
                by,
            } => {
                if self.created {
                    return Err(DomainError::AlreadyExists { what: "project" });
                }
                let name = required_text("name", &name, NAME_MAX)?;
                let description = optional_text("description", &description, DESCRIPTION_MAX)?;
                if product.archived {
                    return Err(DomainError::invalid(
                        "product_id",
                        "the product is archived",
                    ));
                }
                sink.write(
                    ProjectEvent::ProjectCreated {
                        name,
                        description,
                        product_id: product.id,
                        manager_id: by.user_id,
                    },
                    self,
                )
                .await;
            }
            ProjectCommand::Update {
                name,
                description,
                by,
            } => {
                self.authorize_change(&by, Role::Manager)?;
                let name = name
                    .map(|n| required_text("name", &n, NAME_MAX))
                    .transpose()?;
                let description = description
                    .map(|d| optional_text("description", &d, DESCRIPTION_MAX))
                    .transpose()?;
                if let Some(name) = name.filter(|n| *n != self.name) {
                    sink.write(ProjectEvent::ProjectRenamed { name }, self)
                        .await;
                }
                if let Some(description) = description.filter(|d| *d != self.description) {
                    sink.write(ProjectEvent::ProjectRedescribed { description }, self)
                        .await;
                }
            }
            ProjectCommand::AddMember { user, role, by } => {
                self.authorize_change(&by, Role::Manager)?;
                match self.members.get(&user.user_id) {
                    Some(existing) if *existing == role => {}
                    Some(existing) => {
                        return Err(DomainError::AlreadyMember {
                            role: existing.as_str().to_string(),
                        })
                    }
                    None => {
                        if !user.active {
                            return Err(DomainError::UserDeactivated);
                        }
                        sink.write(
                            ProjectEvent::MemberAdded {
                                user_id: user.user_id,
                                role,
                            },
                            self,
                        )
                        .await;
                    }
                }
            }
            ProjectCommand::ChangeMemberRole { user_id, role, by } => {
                self.authorize_change(&by, Role::Manager)?;
                let current = *self.members.get(&user_id).ok_or(DomainError::NotAMember)?;
                if current == role {
                    return Ok(());
                }
                if current == Role::Manager && self.managers() == 1 {
                    return Err(DomainError::LastManager);
                }
                sink.write(ProjectEvent::MemberRoleChanged { user_id, role }, self)
                    .await;
            }
            ProjectCommand::RemoveMember { user_id, by } => {
                // Anyone may leave a project; removing someone else takes a manager.
                let needed = if by.user_id == user_id {
                    Role::Performer
                } else {
                    Role::Manager
                };
                self.authorize_change(&by, needed)?;
                let current = *self.members.get(&user_id).ok_or(DomainError::NotAMember)?;
                if current == Role::Manager && self.managers() == 1 {
                    return Err(DomainError::LastManager);
                }
                sink.write(ProjectEvent::MemberRemoved { user_id }, self)
                    .await;
            }
            ProjectCommand::AttachChannels {
                channels,
                product,
                by,
            } => {
                self.authorize_change(&by, Role::Manager)?;
                if channels.is_empty() {
                    return Err(DomainError::invalid(
                        "channel_ids",
                        "must name at least one channel",
                    ));
                }
                for channel in &channels {
                    if channel.archived && !self.channel_attached(channel.id) {
                        return Err(DomainError::invalid(
                            "channel_ids",
                            format!("sales channel {} is archived", channel.id),
                        ));
                    }
                }
                for channel in channels {
                    if self.channel_attached(channel.id) {
                        continue;
                    }
                    let prompt_version = self
                        .channels
                        .get(&channel.id)
                        .map_or(1, |c| c.prompt_version + 1);
                    let prompt = initial_channel_prompt(
                        &self.description,
                        &product.description,
                        &channel.description,
                    );
                    // Re-attached channels start afresh, like their prompt: a limit set for an
                    // earlier attachment is in the log, not carried over.
                    sink.write(
                        ProjectEvent::ChannelAttached {
                            channel_id: channel.id,
                            prompt,
                            prompt_version,
                            max_chars: default_max_chars(&channel.key),
                        },
                        self,
                    )
                    .await;
                }
            }
            ProjectCommand::ChangeChannelPrompt {
                channel_id,
                prompt,
                by,
            } => {
                self.authorize_change(&by, Role::Manager)?;
                let channel = self.attached_channel(channel_id)?;
                let prompt = required_text("prompt", &prompt, PROMPT_MAX)?;
                if prompt == channel.prompt {
                    return Ok(());
                }
                let prompt_version = channel.prompt_version + 1;
                sink.write(
                    ProjectEvent::ChannelPromptChanged {
                        channel_id,
                        prompt,
                        prompt_version,
                    },
                    self,
                )
                .await;
            }
            ProjectCommand::DetachChannel { channel_id, by } => {
                self.authorize_change(&by, Role::Manager)?;
                self.attached_channel(channel_id)?;
                sink.write(ProjectEvent::ChannelDetached { channel_id }, self)
                    .await;
            }
            ProjectCommand::ChangeChannelMaxLength {
                channel_id,
                max_chars,
                by,
            } => {
                self.authorize_change(&by, Role::Manager)?;
                let channel = self.attached_channel(channel_id)?;
                if max_chars.is_some_and(|m| !(1..=MAX_CHARS_CEILING).contains(&m)) {
                    return Err(DomainError::invalid(
                        "max_chars",
                        format!("must be between 1 and {MAX_CHARS_CEILING}, or null for no limit"),
                    ));
                }
                if max_chars != channel.max_chars {
                    sink.write(
                        ProjectEvent::ChannelMaxLengthChanged {
                            channel_id,
                            max_chars,
                        },
                        self,
                    )
                    .await;
                }
            }
            ProjectCommand::ChangeBannedPhrases { phrases, by } => {
                self.authorize_change(&by, Role::Manager)?;
                let phrases = clean_phrases(&phrases)?;
                if phrases != self.banned_phrases {
                    sink.write(ProjectEvent::BannedPhrasesChanged { phrases }, self)
                        .await;
                }
            }
            ProjectCommand::Archive { by } => {
                self.authorize(&by, Role::Manager)?;
                if !self.archived {
                    sink.write(ProjectEvent::ProjectArchived, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: ProjectEvent) {
        match event {
            ProjectEvent::ProjectCreated {
                name,
                description,
                product_id,
                manager_id,
            } => {
                self.created = true;
                self.name = name;
                self.description = description;
                self.product_id = Some(product_id);
                self.members.insert(manager_id, Role::Manager);
            }
            ProjectEvent::ProjectRenamed { name } => self.name = name,
            ProjectEvent::ProjectRedescribed { description } => self.description = description,
            ProjectEvent::MemberAdded { user_id, role }
            | ProjectEvent::MemberRoleChanged { user_id, role } => {
                self.members.insert(user_id, role);
            }
            ProjectEvent::MemberRemoved { user_id } => {
                self.members.remove(&user_id);
            }
            ProjectEvent::ChannelAttached {
                channel_id,
                prompt,
                prompt_version,
                max_chars,
            } => {
                self.channels.insert(
                    channel_id,
                    ProjectChannel {
                        attached: true,
                        prompt,
                        prompt_version,
                        max_chars,
                    },
                );
            }
            ProjectEvent::ChannelPromptChanged {
                channel_id,
                prompt,
                prompt_version,
            } => {
                if let Some(channel) = self.channels.get_mut(&channel_id) {
                    channel.prompt = prompt;
                    channel.prompt_version = prompt_version;
                }
            }
            ProjectEvent::ChannelMaxLengthChanged {
                channel_id,
                max_chars,
            } => {
                if let Some(channel) = self.channels.get_mut(&channel_id) {
                    channel.max_chars = max_chars;
                }
            }
            ProjectEvent::BannedPhrasesChanged { phrases } => self.banned_phrases = phrases,
            ProjectEvent::ChannelDetached { channel_id } => {
                if let Some(channel) = self.channels.get_mut(&channel_id) {
                    channel.attached = false;
                }
            }
            ProjectEvent::ProjectArchived => self.archived = true,
        }
    }
}

/// Trimmed, inner white space as single spaces, and only the first of phrases that match alike
/// (case, `ё`/`е` and spacing aside), so the list says what is checked.
fn clean_phrases(phrases: &[String]) -> Result<Vec<String>, DomainError> {
    let mut seen = std::collections::HashSet::new();
    let mut cleaned = Vec::new();
    for (i, phrase) in phrases.iter().enumerate() {
        let phrase = required_text(&format!("phrases[{i}]"), phrase, BANNED_PHRASE_MAX_CHARS)?;
        let phrase = phrase.split_whitespace().collect::<Vec<_>>().join(" ");
        if seen.insert(phrase_key(&phrase)) {
            cleaned.push(phrase);
        }
    }
    if cleaned.len() > BANNED_PHRASES_MAX {
        return Err(DomainError::invalid(
            "phrases",
            format!("at most {BANNED_PHRASES_MAX} different phrases"),
        ));
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type ProjectTest = TestFramework<Project>;

    const MANAGER: Uuid = Uuid::from_u128(1);
    const PERFORMER: Uuid = Uuid::from_u128(2);
    const OUTSIDER: Uuid = Uuid::from_u128(3);
    const PRODUCT: Uuid = Uuid::from_u128(10);
    const SMS: Uuid = Uuid::from_u128(20);
    const EMAIL: Uuid = Uuid::from_u128(21);

    fn caller(id: Uuid) -> Caller {
        Caller {
            user_id: id,
            is_admin: false,
        }
    }

    fn admin() -> Caller {
        Caller {
            user_id: Uuid::from_u128(99),
            is_admin: true,
        }
    }

    fn product() -> CatalogFacts {
        CatalogFacts {
            id: PRODUCT,
            key: "CC".into(),
            description: "Кредитная карта".into(),
            archived: false,
        }
    }

    fn channel(id: Uuid) -> CatalogFacts {
        CatalogFacts {
            id,
            key: if id == SMS { "SMS" } else { "EMAIL" }.into(),
            description: format!("канал {id}"),
            archived: false,
        }
    }

    fn created() -> ProjectEvent {
        ProjectEvent::ProjectCreated {
            name: "Осень".into(),
            description: "Акция".into(),
            product_id: PRODUCT,
            manager_id: MANAGER,
        }
    }

    fn with_performer() -> Vec<ProjectEvent> {
        vec![
            created(),
            ProjectEvent::MemberAdded {
                user_id: PERFORMER,
                role: Role::Performer,
            },
        ]
    }

    fn sms_attached() -> ProjectEvent {
        ProjectEvent::ChannelAttached {
            channel_id: SMS,
            prompt: initial_channel_prompt("Акция", "Кредитная карта", &channel(SMS).description),
            prompt_version: 1,
            max_chars: Some(160),
        }
    }

    async fn expect_err(given: Vec<ProjectEvent>, command: ProjectCommand, error: DomainError) {
        ProjectTest::with(())
            .given(given)
            .when_async(command)
            .await
            .then_expect_error(error);
    }

    async fn expect(given: Vec<ProjectEvent>, command: ProjectCommand, events: Vec<ProjectEvent>) {
        ProjectTest::with(())
            .given(given)
            .when_async(command)
            .await
            .then_expect_events(events);
    }

    #[tokio::test]
    async fn the_creator_becomes_manager() {
        expect(
            vec![],
            ProjectCommand::Create {
                name: " Осень ".into(),
                description: "Акция".into(),
                product: product(),
                by: caller(MANAGER),
            },
            vec![created()],
        )
        .await;
    }

    #[tokio::test]
    async fn creation_rejects_empty_name_archived_product_and_repeats() {
        expect_err(
            vec![],
            ProjectCommand::Create {
                name: "".into(),
                description: "".into(),
                product: product(),
                by: caller(MANAGER),
            },
            DomainError::invalid("name", "must not be empty"),
        )
        .await;
        expect_err(
            vec![],
            ProjectCommand::Create {
                name: "x".into(),
                description: "".into(),
                product: CatalogFacts {
                    archived: true,
                    ..product()
                },
                by: caller(MANAGER),
            },
            DomainError::invalid("product_id", "the product is archived"),
        )
        .await;
        expect_err(
            vec![created()],
            ProjectCommand::Create {
                name: "x".into(),
                description: "".into(),
                product: product(),
                by: caller(MANAGER),
            },
            DomainError::AlreadyExists { what: "project" },
        )
        .await;
    }

    #[tokio::test]
    async fn manager_renames_and_redescribes_only_what_changed() {
        expect(
            vec![created()],
            ProjectCommand::Update {
                name: Some("Зима".into()),
                description: Some("Акция".into()),
                by: caller(MANAGER),
            },
            vec![ProjectEvent::ProjectRenamed {
                name: "Зима".into(),
            }],
        )
        .await;
        expect(
            vec![created()],
            ProjectCommand::Update {
                name: None,
                description: Some("Новая".into()),
                by: admin(),
            },
            vec![ProjectEvent::ProjectRedescribed {
                description: "Новая".into(),
            }],
        )
        .await;
    }

    #[tokio::test]
    async fn performers_cannot_edit_and_outsiders_cannot_see() {
        let update = |id| ProjectCommand::Update {
            name: Some("Зима".into()),
            description: None,
            by: caller(id),
        };
        expect_err(
            with_performer(),
            update(PERFORMER),
            DomainError::ManagerRequired,
        )
        .await;
        expect_err(
            with_performer(),
            update(OUTSIDER),
            DomainError::NotFound { what: "project" },
        )
        .await;
        expect_err(
            vec![],
            update(MANAGER),
            DomainError::NotFound { what: "project" },
        )
        .await;
    }

    #[tokio::test]
    async fn archived_projects_refuse_changes() {
        let mut given = vec![created()];
        given.push(ProjectEvent::ProjectArchived);
        expect_err(
            given.clone(),
            ProjectCommand::Update {
                name: Some("Зима".into()),
                description: None,
                by: caller(MANAGER),
            },
            DomainError::Archived { what: "project" },
        )
        .await;
        expect(
            given,
            ProjectCommand::Archive {
                by: caller(MANAGER),
            },
            vec![],
        )
        .await;
        expect(
            vec![created()],
            ProjectCommand::Archive {
                by: caller(MANAGER),
            },
            vec![ProjectEvent::ProjectArchived],
        )
        .await;
        expect_err(
            with_performer(),
            ProjectCommand::Archive {
                by: caller(PERFORMER),
            },
            DomainError::ManagerRequired,
        )
        .await;
    }

    #[tokio::test]
    async fn members_are_added_once_with_one_role() {
        let add = |role| ProjectCommand::AddMember {
            user: UserFacts {
                user_id: PERFORMER,
                active: true,
            },
            role,
            by: caller(MANAGER),
        };
        expect(
            vec![created()],
            add(Role::Performer),
            vec![ProjectEvent::MemberAdded {
                user_id: PERFORMER,
                role: Role::Performer,
            }],
        )
        .await;
        expect(with_performer(), add(Role::Performer), vec![]).await;
        expect_err(
            with_performer(),
            add(Role::Manager),
            DomainError::AlreadyMember {
                role: "performer".into(),
            },
        )
        .await;
        expect_err(
            vec![created()],
            ProjectCommand::AddMember {
                user: UserFacts {
                    user_id: PERFORMER,
                    active: false,
                },
                role: Role::Performer,
                by: caller(MANAGER),
            },
            DomainError::UserDeactivated,
        )
        .await;
        expect_err(
            with_performer(),
            ProjectCommand::AddMember {
                user: UserFacts {
                    user_id: OUTSIDER,
                    active: true,
                },
                role: Role::Performer,
                by: caller(PERFORMER),
            },
            DomainError::ManagerRequired,
        )
        .await;
    }

    #[tokio::test]
    async fn the_last_manager_cannot_be_demoted_or_removed() {
        expect_err(
            with_performer(),
            ProjectCommand::ChangeMemberRole {
                user_id: MANAGER,
                role: Role::Performer,
                by: caller(MANAGER),
            },
            DomainError::LastManager,
        )
        .await;
        expect_err(
            with_performer(),
            ProjectCommand::RemoveMember {
                user_id: MANAGER,
                by: caller(MANAGER),
            },
            DomainError::LastManager,
        )
        .await;
        let mut two_managers = with_performer();
        two_managers.push(ProjectEvent::MemberRoleChanged {
            user_id: PERFORMER,
            role: Role::Manager,
        });
        expect(
            two_managers,
            ProjectCommand::ChangeMemberRole {
                user_id: MANAGER,
                role: Role::Performer,
                by: caller(PERFORMER),
            },
            vec![ProjectEvent::MemberRoleChanged {
                user_id: MANAGER,
                role: Role::Performer,
            }],
        )
        .await;
    }

    #[tokio::test]
    async fn members_leave_or_are_removed_by_a_manager() {
        expect(
            with_performer(),
            ProjectCommand::RemoveMember {
                user_id: PERFORMER,
                by: caller(PERFORMER),
            },
            vec![ProjectEvent::MemberRemoved { user_id: PERFORMER }],
        )
        .await;
        expect(
            with_performer(),
            ProjectCommand::RemoveMember {
                user_id: PERFORMER,
                by: caller(MANAGER),
            },
            vec![ProjectEvent::MemberRemoved { user_id: PERFORMER }],
        )
        .await;
        expect_err(
            with_performer(),
            ProjectCommand::RemoveMember {
                user_id: OUTSIDER,
                by: caller(MANAGER),
            },
            DomainError::NotAMember,
        )
        .await;
        expect_err(
            with_performer(),
            ProjectCommand::ChangeMemberRole {
                user_id: OUTSIDER,
                role: Role::Manager,
                by: caller(MANAGER),
            },
            DomainError::NotAMember,
        )
        .await;
        let mut two = with_performer();
        two.push(ProjectEvent::MemberAdded {
            user_id: OUTSIDER,
            role: Role::Performer,
        });
        expect_err(
            two,
            ProjectCommand::RemoveMember {
                user_id: OUTSIDER,
                by: caller(PERFORMER),
            },
            DomainError::ManagerRequired,
        )
        .await;
    }

    #[tokio::test]
    async fn attaching_builds_the_prompt_and_skips_attached_channels() {
        expect(
            vec![created()],
            ProjectCommand::AttachChannels {
                channels: vec![channel(SMS)],
                product: product(),
                by: caller(MANAGER),
            },
            vec![sms_attached()],
        )
        .await;
        let email_prompt =
            initial_channel_prompt("Акция", "Кредитная карта", &channel(EMAIL).description);
        expect(
            vec![created(), sms_attached()],
            ProjectCommand::AttachChannels {
                channels: vec![channel(SMS), channel(EMAIL)],
                product: product(),
                by: caller(MANAGER),
            },
            vec![ProjectEvent::ChannelAttached {
                channel_id: EMAIL,
                prompt: email_prompt,
                prompt_version: 1,
                max_chars: None,
            }],
        )
        .await;
    }

    #[tokio::test]
    async fn attaching_refuses_nothing_archived_channels_and_performers() {
        expect_err(
            vec![created()],
            ProjectCommand::AttachChannels {
                channels: vec![],
                product: product(),
                by: caller(MANAGER),
            },
            DomainError::invalid("channel_ids", "must name at least one channel"),
        )
        .await;
        let archived = CatalogFacts {
            archived: true,
            ..channel(SMS)
        };
        expect_err(
            vec![created()],
            ProjectCommand::AttachChannels {
                channels: vec![archived],
                product: product(),
                by: caller(MANAGER),
            },
            DomainError::invalid("channel_ids", format!("sales channel {SMS} is archived")),
        )
        .await;
        expect_err(
            with_performer(),
            ProjectCommand::AttachChannels {
                channels: vec![channel(SMS)],
                product: product(),
                by: caller(PERFORMER),
            },
            DomainError::ManagerRequired,
        )
        .await;
    }

    #[tokio::test]
    async fn prompt_changes_are_numbered_versions() {
        expect(
            vec![created(), sms_attached()],
            ProjectCommand::ChangeChannelPrompt {
                channel_id: SMS,
                prompt: "Коротко и ясно".into(),
                by: caller(MANAGER),
            },
            vec![ProjectEvent::ChannelPromptChanged {
                channel_id: SMS,
                prompt: "Коротко и ясно".into(),
                prompt_version: 2,
            }],
        )
        .await;
        let same = match sms_attached() {
            ProjectEvent::ChannelAttached { prompt, .. } => prompt,
            _ => unreachable!(),
        };
        expect(
            vec![created(), sms_attached()],
            ProjectCommand::ChangeChannelPrompt {
                channel_id: SMS,
                prompt: same,
                by: caller(MANAGER),
            },
            vec![],
        )
        .await;
        expect_err(
            vec![created(), sms_attached()],
            ProjectCommand::ChangeChannelPrompt {
                channel_id: SMS,
                prompt: "  ".into(),
                by: caller(MANAGER),
            },
            DomainError::invalid("prompt", "must not be empty"),
        )
        .await;
        expect_err(
            vec![created()],
            ProjectCommand::ChangeChannelPrompt {
                channel_id: SMS,
                prompt: "x".into(),
                by: caller(MANAGER),
            },
            DomainError::ChannelNotAttached,
        )
        .await;
    }

    #[tokio::test]
    async fn detached_channels_come_back_with_a_new_version() {
        expect(
            vec![created(), sms_attached()],
            ProjectCommand::DetachChannel {
                channel_id: SMS,
                by: caller(MANAGER),
            },
            vec![ProjectEvent::ChannelDetached { channel_id: SMS }],
        )
        .await;
        expect_err(
            vec![
                created(),
                sms_attached(),
                ProjectEvent::ChannelDetached { channel_id: SMS },
            ],
            ProjectCommand::DetachChannel {
                channel_id: SMS,
                by: caller(MANAGER),
            },
            DomainError::ChannelNotAttached,
        )
        .await;
        let prompt = match sms_attached() {
            ProjectEvent::ChannelAttached { prompt, .. } => prompt,
            _ => unreachable!(),
        };
        expect(
            vec![
                created(),
                sms_attached(),
                ProjectEvent::ChannelDetached { channel_id: SMS },
            ],
            ProjectCommand::AttachChannels {
                channels: vec![channel(SMS)],
                product: product(),
                by: caller(MANAGER),
            },
            vec![ProjectEvent::ChannelAttached {
                channel_id: SMS,
                prompt,
                prompt_version: 2,
                max_chars: Some(160),
            }],
        )
        .await;
    }

    fn max_length(channel_id: Uuid, max_chars: Option<u32>, by: Caller) -> ProjectCommand {
        ProjectCommand::ChangeChannelMaxLength {
            channel_id,
            max_chars,
            by,
        }
    }

    fn banned(phrases: &[&str], by: Caller) -> ProjectCommand {
        ProjectCommand::ChangeBannedPhrases {
            phrases: phrases.iter().map(|p| p.to_string()).collect(),
            by,
        }
    }

    #[test]
    fn a_channel_starts_with_its_catalog_length_limit() {
        let mut given = vec![created()];
        given.push(sms_attached());
        let project = replay(&given);
        assert_eq!(project.channels[&SMS].max_chars, Some(160));
        assert_eq!(
            project.channel_rules(SMS),
            Some(ChannelRules {
                max_chars: Some(160),
                banned_phrases: vec![],
            })
        );
        assert_eq!(project.channel_rules(EMAIL), None);
    }

    #[tokio::test]
    async fn managers_change_a_channels_length_limit() {
        let given = || vec![created(), sms_attached()];
        expect(
            given(),
            max_length(SMS, Some(70), caller(MANAGER)),
            vec![ProjectEvent::ChannelMaxLengthChanged {
                channel_id: SMS,
                max_chars: Some(70),
            }],
        )
        .await;
        expect(
            given(),
            max_length(SMS, None, admin()),
            vec![ProjectEvent::ChannelMaxLengthChanged {
                channel_id: SMS,
                max_chars: None,
            }],
        )
        .await;
        expect(given(), max_length(SMS, Some(160), caller(MANAGER)), vec![]).await;
        for wrong in [0, MAX_CHARS_CEILING + 1] {
            expect_err(
                given(),
                max_length(SMS, Some(wrong), caller(MANAGER)),
                DomainError::invalid(
                    "max_chars",
                    "must be between 1 and 10000, or null for no limit",
                ),
            )
            .await;
        }
        expect(
            given(),
            max_length(SMS, Some(MAX_CHARS_CEILING), caller(MANAGER)),
            vec![ProjectEvent::ChannelMaxLengthChanged {
                channel_id: SMS,
                max_chars: Some(MAX_CHARS_CEILING),
            }],
        )
        .await;
        expect_err(
            given(),
            max_length(EMAIL, Some(500), caller(MANAGER)),
            DomainError::ChannelNotAttached,
        )
        .await;
        let mut detached = given();
        detached.push(ProjectEvent::ChannelDetached { channel_id: SMS });
        expect_err(
            detached,
            max_length(SMS, Some(70), caller(MANAGER)),
            DomainError::ChannelNotAttached,
        )
        .await;
        let mut with_performer = with_performer();
        with_performer.push(sms_attached());
        expect_err(
            with_performer.clone(),
            max_length(SMS, Some(70), caller(PERFORMER)),
            DomainError::ManagerRequired,
        )
        .await;
        expect_err(
            with_performer,
            max_length(SMS, Some(70), caller(OUTSIDER)),
            DomainError::NotFound { what: "project" },
        )
        .await;
        let mut archived = given();
        archived.push(ProjectEvent::ProjectArchived);
        expect_err(
            archived,
            max_length(SMS, Some(70), caller(MANAGER)),
            DomainError::Archived { what: "project" },
        )
        .await;
    }

    #[tokio::test]
    async fn a_changed_limit_survives_prompt_changes_but_not_a_reattachment() {
        let mut given = vec![
            created(),
            sms_attached(),
            ProjectEvent::ChannelMaxLengthChanged {
                channel_id: SMS,
                max_chars: Some(70),
            },
            ProjectEvent::ChannelPromptChanged {
                channel_id: SMS,
                prompt: "Коротко".into(),
                prompt_version: 2,
            },
        ];
        assert_eq!(replay(&given).channels[&SMS].max_chars, Some(70));
        given.push(ProjectEvent::ChannelDetached { channel_id: SMS });
        assert_eq!(
            replay(&given).channel_rules(SMS).and_then(|r| r.max_chars),
            Some(70),
            "a detached channel keeps its rules for generations under way"
        );
        let prompt = match sms_attached() {
            ProjectEvent::ChannelAttached { prompt, .. } => prompt,
            _ => unreachable!(),
        };
        expect(
            given,
            ProjectCommand::AttachChannels {
                channels: vec![channel(SMS)],
                product: product(),
                by: caller(MANAGER),
            },
            vec![ProjectEvent::ChannelAttached {
                channel_id: SMS,
                prompt,
                prompt_version: 3,
                max_chars: Some(160),
            }],
        )
        .await;
    }

    #[test]
    fn events_written_before_length_limits_still_load() {
        let old = serde_json::json!({"ChannelAttached": {
            "channel_id": SMS, "prompt": "Промпт", "prompt_version": 1
        }});
        let event: ProjectEvent = serde_json::from_value(old).expect("an old event loads");
        assert_eq!(
            event,
            ProjectEvent::ChannelAttached {
                channel_id: SMS,
                prompt: "Промпт".into(),
                prompt_version: 1,
                max_chars: None,
            }
        );
        let old_project = serde_json::json!({
            "created": true, "archived": false, "product_id": PRODUCT, "name": "Осень",
            "description": "", "members": {}, "channels": {
                SMS.to_string(): {"attached": true, "prompt": "Промпт", "prompt_version": 1}
            }
        });
        let project: Project = serde_json::from_value(old_project).expect("an old project loads");
        assert_eq!(project.channels[&SMS].max_chars, None);
        assert!(project.banned_phrases.is_empty());
    }

    #[tokio::test]
    async fn managers_set_banned_phrases_cleaned_and_deduplicated() {
        expect(
            vec![created()],
            banned(
                &[
                    "  Гарантированное   одобрение ",
                    "без справок",
                    "ГАРАНТИРОВАННОЕ ОДОБРЕНИЕ",
                    "ещё",
                    "еще",
                ],
                caller(MANAGER),
            ),
            vec![ProjectEvent::BannedPhrasesChanged {
                phrases: vec![
                    "Гарантированное одобрение".into(),
                    "без справок".into(),
                    "ещё".into(),
                ],
            }],
        )
        .await;
        let set = ProjectEvent::BannedPhrasesChanged {
            phrases: vec!["без справок".into()],
        };
        expect(
            vec![created(), set.clone()],
            banned(&[" без справок"], caller(MANAGER)),
            vec![],
        )
        .await;
        expect(
            vec![created(), set.clone()],
            banned(&[], admin()),
            vec![ProjectEvent::BannedPhrasesChanged { phrases: vec![] }],
        )
        .await;
        let project = replay(&[created(), sms_attached(), set]);
        assert_eq!(
            project.channel_rules(SMS),
            Some(ChannelRules {
                max_chars: Some(160),
                banned_phrases: vec!["без справок".into()],
            })
        );
    }

    #[tokio::test]
    async fn banned_phrases_are_validated_one_by_one() {
        expect_err(
            vec![created()],
            banned(&["ok", "гарантия", " \t", "x"], caller(MANAGER)),
            DomainError::invalid("phrases[2]", "must not be empty"),
        )
        .await;
        let long = "я".repeat(BANNED_PHRASE_MAX_CHARS + 1);
        expect_err(
            vec![created()],
            banned(&["ok", &long], caller(MANAGER)),
            DomainError::invalid("phrases[1]", "must be at most 200 characters"),
        )
        .await;
        expect_err(
            vec![created()],
            banned(&["a\u{0}b"], caller(MANAGER)),
            DomainError::invalid("phrases[0]", "must not contain control characters"),
        )
        .await;
        let many: Vec<String> = (0..=BANNED_PHRASES_MAX)
            .map(|i| format!("фраза {i}"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        expect_err(
            vec![created()],
            banned(&many, caller(MANAGER)),
            DomainError::invalid("phrases", "at most 200 different phrases"),
        )
        .await;
        // Repeats do not count against the limit.
        let mut repeated = many[..BANNED_PHRASES_MAX].to_vec();
        repeated.push("ФРАЗА 0");
        ProjectTest::with(())
            .given(vec![created()])
            .when_async(banned(&repeated, caller(MANAGER)))
            .await
            .then_expect_events(vec![ProjectEvent::BannedPhrasesChanged {
                phrases: many[..BANNED_PHRASES_MAX]
                    .iter()
                    .map(|p| p.to_string())
                    .collect(),
            }]);
        expect_err(
            with_performer(),
            banned(&["x"], caller(PERFORMER)),
            DomainError::ManagerRequired,
        )
        .await;
        expect_err(
            with_performer(),
            banned(&["x"], caller(OUTSIDER)),
            DomainError::NotFound { what: "project" },
        )
        .await;
        expect_err(
            vec![created(), ProjectEvent::ProjectArchived],
            banned(&["x"], caller(MANAGER)),
            DomainError::Archived { what: "project" },
        )
        .await;
    }

    fn replay(events: &[ProjectEvent]) -> Project {
        let mut project = Project::default();
        for event in events {
            project.apply(event.clone());
        }
        project
    }
}
