//! A person who signs in. Passwords and token secrets never appear here: they live in ordinary
//! tables next to the log, and the log only records that they changed.
use std::collections::BTreeMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::validate::{optional_text, required_text};
use crate::{Caller, DomainError};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub position: String,
    pub subdivision: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    Register {
        email: String,
        profile: Profile,
        is_admin: bool,
        by: Caller,
    },
    UpdateProfile {
        name: Option<String>,
        position: Option<String>,
        subdivision: Option<String>,
        by: Caller,
    },
    SetAdmin {
        is_admin: bool,
        by: Caller,
    },
    SetActive {
        active: bool,
        by: Caller,
    },
    RecordPasswordChange {
        by: Caller,
    },
    IssueApiToken {
        token_id: Uuid,
        name: String,
        by: Caller,
    },
    RevokeApiToken {
        token_id: Uuid,
        by: Caller,
    },
    /// Several changes that stand or fall together (an admin's edit of one user).
    All(Vec<UserCommand>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserEvent {
    UserRegistered {
        email: String,
        profile: Profile,
        is_admin: bool,
    },
    UserProfileUpdated {
        profile: Profile,
    },
    AdminRightsGranted,
    AdminRightsRevoked,
    UserDeactivated,
    UserReactivated,
    PasswordChanged {
        by_admin: bool,
    },
    ApiTokenIssued {
        token_id: Uuid,
        name: String,
    },
    ApiTokenRevoked {
        token_id: Uuid,
    },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            UserEvent::UserRegistered { .. } => "UserRegistered",
            UserEvent::UserProfileUpdated { .. } => "UserProfileUpdated",
            UserEvent::AdminRightsGranted => "AdminRightsGranted",
            UserEvent::AdminRightsRevoked => "AdminRightsRevoked",
            UserEvent::UserDeactivated => "UserDeactivated",
            UserEvent::UserReactivated => "UserReactivated",
            UserEvent::PasswordChanged { .. } => "PasswordChanged",
            UserEvent::ApiTokenIssued { .. } => "ApiTokenIssued",
            UserEvent::ApiTokenRevoked { .. } => "ApiTokenRevoked",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::EVENT_SCHEMA_VERSION.to_string()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: Option<Uuid>,
    pub email: String,
    pub profile: Profile,
    pub is_admin: bool,
    pub active: bool,
    /// Token id → still valid.
    pub api_tokens: BTreeMap<Uuid, bool>,
}

pub fn normalize_email(email: &str) -> Result<String, DomainError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split('@').count() == 2
        && email.split('@').all(|part| !part.is_empty())
        && email.rsplit('@').next().is_some_and(|domain| {
            domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(DomainError::invalid(
            "email",
            "must be an email address such as name@bank.ru",
        ))
    }
}

fn clean_profile(profile: Profile) -> Result<Profile, DomainError> {
    Ok(Profile {
        name: optional_text("name", &profile.name, 200)?,
        position: optional_text("position", &profile.position, 200)?,
        subdivision: optional_text("subdivision", &profile.subdivision, 200)?,
    })
}

impl User {
    fn existing(&self) -> Result<(), DomainError> {
        if self.id.is_none() {
            return Err(DomainError::NotFound { what: "user" });
        }
        Ok(())
    }

    fn is_self(&self, by: &Caller) -> bool {
        self.id == Some(by.user_id)
    }

    fn require_self_or_admin(&self, by: &Caller) -> Result<(), DomainError> {
        self.existing()?;
        if self.is_self(by) || by.is_admin {
            Ok(())
        } else {
            Err(DomainError::NotFound { what: "user" })
        }
    }
}

fn require_admin(by: &Caller) -> Result<(), DomainError> {
    if by.is_admin {
        Ok(())
    } else {
        Err(DomainError::AdminRequired)
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "User";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: UserCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            UserCommand::All(commands) => {
                for command in commands {
                    self.handle_one(command, sink).await?;
                }
                Ok(())
            }
            command => self.handle_one(command, sink).await,
        }
    }

    fn apply(&mut self, event: UserEvent) {
        self.apply_event(event)
    }
}

impl User {
    async fn handle_one(
        &mut self,
        command: UserCommand,
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            UserCommand::All(_) => {
                return Err(DomainError::Rejected("grouped commands cannot nest".into()));
            }
            UserCommand::Register {
                email,
                profile,
                is_admin,
                by,
            } => {
                require_admin(&by)?;
                let email = normalize_email(&email)?;
                if self.id.is_some() {
                    return Err(DomainError::AlreadyExists { what: "user" });
                }
                let profile = clean_profile(profile)?;
                sink.write(
                    UserEvent::UserRegistered {
                        email,
                        profile,
                        is_admin,
                    },
                    self,
                )
                .await;
            }
            UserCommand::UpdateProfile {
                name,
                position,
                subdivision,
                by,
            } => {
                self.require_self_or_admin(&by)?;
                let current = self.profile.clone();
                let profile = clean_profile(Profile {
                    name: name.unwrap_or(current.name.clone()),
                    position: position.unwrap_or(current.position.clone()),
                    subdivision: subdivision.unwrap_or(current.subdivision.clone()),
                })?;
                if profile != current {
                    sink.write(UserEvent::UserProfileUpdated { profile }, self)
                        .await;
                }
            }
            UserCommand::SetAdmin { is_admin, by } => {
                require_admin(&by)?;
                self.existing()?;
                if self.is_self(&by) && !is_admin {
                    return Err(DomainError::Rejected(
                        "admins cannot revoke their own admin rights".into(),
                    ));
                }
                match (self.is_admin, is_admin) {
                    (false, true) => sink.write(UserEvent::AdminRightsGranted, self).await,
                    (true, false) => sink.write(UserEvent::AdminRightsRevoked, self).await,
                    _ => {}
                }
            }
            UserCommand::SetActive { active, by } => {
                require_admin(&by)?;
                self.existing()?;
                if self.is_self(&by) && !active {
                    return Err(DomainError::Rejected(
                        "admins cannot deactivate themselves".into(),
                    ));
                }
                match (self.active, active) {
                    (true, false) => sink.write(UserEvent::UserDeactivated, self).await,
                    (false, true) => sink.write(UserEvent::UserReactivated, self).await,
                    _ => {}
                }
            }
            UserCommand::RecordPasswordChange { by } => {
                self.require_self_or_admin(&by)?;
                let by_admin = !self.is_self(&by);
                sink.write(UserEvent::PasswordChanged { by_admin }, self)
                    .await;
            }
            UserCommand::IssueApiToken { token_id, name, by } => {
                self.existing()?;
                if !self.is_self(&by) {
                    return Err(DomainError::Rejected(
                        "API tokens are issued to oneself".into(),
                    ));
                }
                if !self.active {
                    return Err(DomainError::UserDeactivated);
                }
                let name = required_text("name", &name, 200)?;
                if self.api_tokens.contains_key(&token_id) {
                    return Err(DomainError::AlreadyExists { what: "API token" });
                }
                sink.write(UserEvent::ApiTokenIssued { token_id, name }, self)
                    .await;
            }
            UserCommand::RevokeApiToken { token_id, by } => {
                self.require_self_or_admin(&by)?;
                match self.api_tokens.get(&token_id) {
                    None => return Err(DomainError::NotFound { what: "API token" }),
                    Some(false) => {}
                    Some(true) => {
                        sink.write(UserEvent::ApiTokenRevoked { token_id }, self)
                            .await
                    }
                }
            }
        }
        Ok(())
    }

    fn apply_event(&mut self, event: UserEvent) {
        match event {
            UserEvent::UserRegistered {
                email,
                profile,
                is_admin,
            } => {
                self.id = Some(crate::ids::user_id(&email));
                self.email = email;
                self.profile = profile;
                self.is_admin = is_admin;
                self.active = true;
            }
            UserEvent::UserProfileUpdated { profile } => self.profile = profile,
            UserEvent::AdminRightsGranted => self.is_admin = true,
            UserEvent::AdminRightsRevoked => self.is_admin = false,
            UserEvent::UserDeactivated => self.active = false,
            UserEvent::UserReactivated => self.active = true,
            UserEvent::PasswordChanged { .. } => {}
            UserEvent::ApiTokenIssued { token_id, .. } => {
                self.api_tokens.insert(token_id, true);
            }
            UserEvent::ApiTokenRevoked { token_id } => {
                self.api_tokens.insert(token_id, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type UserTest = TestFramework<User>;

    fn admin() -> Caller {
        Caller {
            user_id: Uuid::from_u128(99),
            is_admin: true,
        }
    }

    fn ann() -> Caller {
        Caller {
            user_id: crate::ids::user_id("ann@bank.ru"),
            is_admin: false,
        }
    }

    fn registered() -> UserEvent {
        UserEvent::UserRegistered {
            email: "ann@bank.ru".into(),
            profile: Profile {
                name: "Анна".into(),
                position: "Маркетолог".into(),
                subdivision: "".into(),
            },
            is_admin: false,
        }
    }

    #[tokio::test]
    async fn admins_register_users_with_a_normalized_email() {
        UserTest::with(())
            .given_no_previous_events()
            .when_async(UserCommand::Register {
                email: " Ann@Bank.RU".into(),
                profile: Profile {
                    name: " Анна ".into(),
                    position: "Маркетолог".into(),
                    subdivision: "".into(),
                },
                is_admin: false,
                by: admin(),
            })
            .await
            .then_expect_events(vec![registered()]);
    }

    #[tokio::test]
    async fn registration_refuses_non_admins_bad_emails_and_repeats() {
        let register = |email: &str, by| UserCommand::Register {
            email: email.into(),
            profile: Profile::default(),
            is_admin: false,
            by,
        };
        UserTest::with(())
            .given_no_previous_events()
            .when_async(register("ann@bank.ru", ann()))
            .await
            .then_expect_error(DomainError::AdminRequired);
        for bad in [
            "ann",
            "ann@",
            "@bank.ru",
            "ann@bank",
            "a b@bank.ru",
            "ann@x@bank.ru",
        ] {
            UserTest::with(())
                .given_no_previous_events()
                .when_async(register(bad, admin()))
                .await
                .then_expect_error(DomainError::invalid(
                    "email",
                    "must be an email address such as name@bank.ru",
                ));
        }
        UserTest::with(())
            .given(vec![registered()])
            .when_async(register("ann@bank.ru", admin()))
            .await
            .then_expect_error(DomainError::AlreadyExists { what: "user" });
    }

    #[tokio::test]
    async fn users_edit_their_own_profile_and_admins_anyone() {
        let update = |by| UserCommand::UpdateProfile {
            name: None,
            position: Some("Руководитель".into()),
            subdivision: None,
            by,
        };
        let expected = vec![UserEvent::UserProfileUpdated {
            profile: Profile {
                name: "Анна".into(),
                position: "Руководитель".into(),
                subdivision: "".into(),
            },
        }];
        UserTest::with(())
            .given(vec![registered()])
            .when_async(update(ann()))
            .await
            .then_expect_events(expected.clone());
        UserTest::with(())
            .given(vec![registered()])
            .when_async(update(admin()))
            .await
            .then_expect_events(expected);
        let stranger = Caller {
            user_id: Uuid::from_u128(5),
            is_admin: false,
        };
        UserTest::with(())
            .given(vec![registered()])
            .when_async(update(stranger))
            .await
            .then_expect_error(DomainError::NotFound { what: "user" });
        UserTest::with(())
            .given_no_previous_events()
            .when_async(update(admin()))
            .await
            .then_expect_error(DomainError::NotFound { what: "user" });
    }

    #[tokio::test]
    async fn admin_rights_and_activity_change_only_by_admins_and_never_for_themselves() {
        UserTest::with(())
            .given(vec![registered()])
            .when_async(UserCommand::SetAdmin {
                is_admin: true,
                by: admin(),
            })
            .await
            .then_expect_events(vec![UserEvent::AdminRightsGranted]);
        UserTest::with(())
            .given(vec![registered()])
            .when_async(UserCommand::SetAdmin {
                is_admin: false,
                by: admin(),
            })
            .await
            .then_expect_events(vec![]);
        UserTest::with(())
            .given(vec![registered()])
            .when_async(UserCommand::SetAdmin {
                is_admin: true,
                by: ann(),
            })
            .await
            .then_expect_error(DomainError::AdminRequired);
        UserTest::with(())
            .given(vec![registered()])
            .when_async(UserCommand::SetActive {
                active: false,
                by: admin(),
            })
            .await
            .then_expect_events(vec![UserEvent::UserDeactivated]);
        UserTest::with(())
            .given(vec![registered(), UserEvent::UserDeactivated])
            .when_async(UserCommand::SetActive {
                active: true,
                by: admin(),
            })
            .await
            .then_expect_events(vec![UserEvent::UserReactivated]);
        let ann_admin = Caller {
            is_admin: true,
            ..ann()
        };
        UserTest::with(())
            .given(vec![registered(), UserEvent::AdminRightsGranted])
            .when_async(UserCommand::SetActive {
                active: false,
                by: ann_admin,
            })
            .await
            .then_expect_error(DomainError::Rejected(
                "admins cannot deactivate themselves".into(),
            ));
        UserTest::with(())
            .given(vec![registered(), UserEvent::AdminRightsGranted])
            .when_async(UserCommand::SetAdmin {
                is_admin: false,
                by: ann_admin,
            })
            .await
            .then_expect_error(DomainError::Rejected(
                "admins cannot revoke their own admin rights".into(),
            ));
    }

    #[tokio::test]
    async fn grouped_changes_are_all_or_nothing() {
        UserTest::with(())
            .given(vec![registered()])
            .when_async(UserCommand::All(vec![
                UserCommand::SetAdmin {
                    is_admin: true,
                    by: admin(),
                },
                UserCommand::SetActive {
                    active: false,
                    by: admin(),
                },
            ]))
            .await
            .then_expect_events(vec![
                UserEvent::AdminRightsGranted,
                UserEvent::UserDeactivated,
            ]);
        UserTest::with(())
            .given(vec![registered()])
            .when_async(UserCommand::All(vec![
                UserCommand::SetAdmin {
                    is_admin: true,
                    by: admin(),
                },
                UserCommand::UpdateProfile {
                    name: Some("x".repeat(201)),
                    position: None,
                    subdivision: None,
                    by: admin(),
                },
            ]))
            .await
            .then_expect_error(DomainError::invalid(
                "name",
                "must be at most 200 characters",
            ));
    }

    #[tokio::test]
    async fn password_changes_are_recorded_without_the_password() {
        UserTest::with(())
            .given(vec![registered()])
            .when_async(UserCommand::RecordPasswordChange { by: ann() })
            .await
            .then_expect_events(vec![UserEvent::PasswordChanged { by_admin: false }]);
        UserTest::with(())
            .given(vec![registered()])
            .when_async(UserCommand::RecordPasswordChange { by: admin() })
            .await
            .then_expect_events(vec![UserEvent::PasswordChanged { by_admin: true }]);
    }

    #[tokio::test]
    async fn api_tokens_are_issued_to_oneself_and_revoked_once() {
        let token = Uuid::from_u128(7);
        UserTest::with(())
            .given(vec![registered()])
            .when_async(UserCommand::IssueApiToken {
                token_id: token,
                name: "CRM".into(),
                by: ann(),
            })
            .await
            .then_expect_events(vec![UserEvent::ApiTokenIssued {
                token_id: token,
                name: "CRM".into(),
            }]);
        UserTest::with(())
            .given(vec![registered()])
            .when_async(UserCommand::IssueApiToken {
                token_id: token,
                name: "CRM".into(),
                by: admin(),
            })
            .await
            .then_expect_error(DomainError::Rejected(
                "API tokens are issued to oneself".into(),
            ));
        UserTest::with(())
            .given(vec![registered(), UserEvent::UserDeactivated])
            .when_async(UserCommand::IssueApiToken {
                token_id: token,
                name: "CRM".into(),
                by: ann(),
            })
            .await
            .then_expect_error(DomainError::UserDeactivated);
        let issued = UserEvent::ApiTokenIssued {
            token_id: token,
            name: "CRM".into(),
        };
        UserTest::with(())
            .given(vec![registered(), issued.clone()])
            .when_async(UserCommand::RevokeApiToken {
                token_id: token,
                by: ann(),
            })
            .await
            .then_expect_events(vec![UserEvent::ApiTokenRevoked { token_id: token }]);
        UserTest::with(())
            .given(vec![
                registered(),
                issued,
                UserEvent::ApiTokenRevoked { token_id: token },
            ])
            .when_async(UserCommand::RevokeApiToken {
                token_id: token,
                by: ann(),
            })
            .await
            .then_expect_events(vec![]);
        UserTest::with(())
            .given(vec![registered()])
            .when_async(UserCommand::RevokeApiToken {
                token_id: token,
                by: ann(),
            })
            .await
            .then_expect_error(DomainError::NotFound { what: "API token" });
    }
}
