//! One client inside one project channel: the client's data as the bank gave it, how each
//! column reads to a human, and (later) the thread of generated offers and the sales outcome.
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::validate::optional_text;
use crate::DomainError;

/// One column of a client's data. Kept as a list, not a map: PostgreSQL's jsonb reorders
/// object keys, and the column order is what the prompt shows the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientField {
    pub key: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDescription {
    pub key: String,
    pub description: String,
}

/// What came of the offer, as the manager records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Sold,
    Reflection,
    Interest,
    NegativeReaction,
    PositiveReaction,
    Undefined,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Sold,
        Outcome::Reflection,
        Outcome::Interest,
        Outcome::NegativeReaction,
        Outcome::PositiveReaction,
        Outcome::Undefined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sold => "sold",
            Outcome::Reflection => "reflection",
            Outcome::Interest => "interest",
            Outcome::NegativeReaction => "negative_reaction",
            Outcome::PositiveReaction => "positive_reaction",
            Outcome::Undefined => "undefined",
        }
    }

    pub fn parse(value: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == value)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientRequestCommand {
    /// Callers must first check, on the project, that the caller may work in it and that the
    /// channel is attached; `channel_attached` carries the latter.
    Create {
        project_id: Uuid,
        channel_id: Uuid,
        channel_attached: bool,
        client_id: Option<String>,
        source: String,
        client_data: Vec<(String, Value)>,
        client_data_decoding: Vec<(String, String)>,
    },
    RecordOutcome {
        outcome: Outcome,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientRequestEvent {
    ClientRequestCreated {
        project_id: Uuid,
        channel_id: Uuid,
        client_id: Option<String>,
        source: String,
        client_data: Vec<ClientField>,
        client_data_decoding: Vec<ColumnDescription>,
    },
    OutcomeRecorded {
        outcome: Outcome,
    },
}

impl DomainEvent for ClientRequestEvent {
    fn event_type(&self) -> String {
        match self {
            ClientRequestEvent::ClientRequestCreated { .. } => "ClientRequestCreated",
            ClientRequestEvent::OutcomeRecorded { .. } => "OutcomeRecorded",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::EVENT_SCHEMA_VERSION.to_string()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientRequest {
    pub project_id: Option<Uuid>,
    pub channel_id: Option<Uuid>,
    pub outcome: Option<Outcome>,
}

pub const MAX_COLUMNS: usize = 500;
const KEY_MAX: usize = 100;
const TEXT_VALUE_MAX: usize = 10_000;
const DESCRIPTION_MAX: usize = 1_000;

/// Cleans a client's data and its decoding: every column needs a description, values are
/// scalars. Returns the columns in their original order with the descriptions they use.
pub fn validate_client_data(
    client_data: Vec<(String, Value)>,
    decoding: &[(String, String)],
) -> Result<(Vec<ClientField>, Vec<ColumnDescription>), DomainError> {
    if client_data.is_empty() {
        return Err(DomainError::invalid(
            "client_data",
            "must have at least one column",
        ));
    }
    if client_data.len() > MAX_COLUMNS {
        return Err(DomainError::invalid(
            "client_data",
            format!("must have at most {MAX_COLUMNS} columns"),
        ));
    }
    let mut fields = Vec::with_capacity(client_data.len());
    let mut descriptions = Vec::with_capacity(client_data.len());
    let mut missing = Vec::new();
    for (key, value) in client_data {
        let field = format!("client_data.{key}");
        if key.trim().is_empty()
            || key.chars().count() > KEY_MAX
            || key.chars().any(char::is_control)
        {
            return Err(DomainError::invalid(
                "client_data",
                format!("column names must be 1 to {KEY_MAX} printable characters"),
            ));
        }
        match &value {
            Value::Object(_) | Value::Array(_) => {
                return Err(DomainError::invalid(
                    field,
                    "must be a string, number, boolean or null",
                ))
            }
            // PostgreSQL's jsonb cannot store NUL, so it could never be recorded.
            Value::String(s) if s.contains('\0') => {
                return Err(DomainError::invalid(
                    field,
                    "must not contain NUL characters",
                ))
            }
            Value::String(s) if s.chars().count() > TEXT_VALUE_MAX => {
                return Err(DomainError::invalid(
                    field,
                    format!("must be at most {TEXT_VALUE_MAX} characters"),
                ))
            }
            _ => {}
        }
        match decoding.iter().rev().find(|(k, _)| *k == key) {
            Some((_, description)) if !description.trim().is_empty() => {
                let description = optional_text(
                    &format!("client_data_decoding.{key}"),
                    description,
                    DESCRIPTION_MAX,
                )?;
                descriptions.push(ColumnDescription {
                    key: key.clone(),
                    description,
                });
            }
            _ => missing.push(key.clone()),
        }
        fields.push(ClientField { key, value });
    }
    if !missing.is_empty() {
        return Err(DomainError::MissingDescriptions { columns: missing });
    }
    Ok((fields, descriptions))
}

impl Aggregate for ClientRequest {
    const TYPE: &'static str = "ClientRequest";
    type Command = ClientRequestCommand;
    type Event = ClientRequestEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ClientRequestCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            ClientRequestCommand::Create {
                project_id,
                channel_id,
                channel_attached,
                client_id,
                source,
                client_data,
                client_data_decoding,
            } => {
                if !channel_attached {
                    return Err(DomainError::ChannelNotAttached);
                }
                let client_id = client_id
                    .map(|id| optional_text("client_id", &id, 255))
                    .transpose()?
                    .filter(|id| !id.is_empty());
                let source = optional_text("source", &source, 255)?;
                let source = if source.is_empty() {
                    "api".to_string()
                } else {
                    source
                };
                let (client_data, client_data_decoding) =
                    validate_client_data(client_data, &client_data_decoding)?;
                // The id is derived from the data, so a repeat lands here: same client, same
                // channel, nothing new to record.
                if self.project_id.is_some() {
                    return Ok(());
                }
                sink.write(
                    ClientRequestEvent::ClientRequestCreated {
                        project_id,
                        channel_id,
                        client_id,
                        source,
                        client_data,
                        client_data_decoding,
                    },
                    self,
                )
                .await;
            }
            ClientRequestCommand::RecordOutcome { outcome } => {
                if self.project_id.is_none() {
                    return Err(DomainError::NotFound {
                        what: "client request",
                    });
                }
                if self.outcome.unwrap_or(Outcome::Undefined) != outcome {
                    sink.write(ClientRequestEvent::OutcomeRecorded { outcome }, self)
                        .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: ClientRequestEvent) {
        match event {
            ClientRequestEvent::ClientRequestCreated {
                project_id,
                channel_id,
                ..
            } => {
                self.project_id = Some(project_id);
                self.channel_id = Some(channel_id);
            }
            ClientRequestEvent::OutcomeRecorded { outcome } => self.outcome = Some(outcome),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use serde_json::json;

    type RequestTest = TestFramework<ClientRequest>;
    const PROJECT: Uuid = Uuid::from_u128(1);
    const SMS: Uuid = Uuid::from_u128(2);

    fn data() -> Vec<(String, Value)> {
        vec![
            ("gender".into(), json!("1")),
            ("age".into(), json!(52.688)),
            ("super_clust".into(), json!("k. Без продукта")),
        ]
    }

    fn decoding() -> Vec<(String, String)> {
        vec![
            ("super_clust".into(), "Кластер клиента".into()),
            ("age".into(), "Возраст Клиента".into()),
            ("gender".into(), "Пол клиента (0 муж, 1 жен)".into()),
            ("unused".into(), "not in the data".into()),
        ]
    }

    fn create(data: Vec<(String, Value)>, decoding: Vec<(String, String)>) -> ClientRequestCommand {
        ClientRequestCommand::Create {
            project_id: PROJECT,
            channel_id: SMS,
            channel_attached: true,
            client_id: Some(" 42 ".into()),
            source: "".into(),
            client_data: data,
            client_data_decoding: decoding,
        }
    }

    fn created() -> ClientRequestEvent {
        ClientRequestEvent::ClientRequestCreated {
            project_id: PROJECT,
            channel_id: SMS,
            client_id: Some("42".into()),
            source: "api".into(),
            client_data: vec![
                ClientField {
                    key: "gender".into(),
                    value: json!("1"),
                },
                ClientField {
                    key: "age".into(),
                    value: json!(52.688),
                },
                ClientField {
                    key: "super_clust".into(),
                    value: json!("k. Без продукта"),
                },
            ],
            client_data_decoding: vec![
                ColumnDescription {
                    key: "gender".into(),
                    description: "Пол клиента (0 муж, 1 жен)".into(),
                },
                ColumnDescription {
                    key: "age".into(),
                    description: "Возраст Клиента".into(),
                },
                ColumnDescription {
                    key: "super_clust".into(),
                    description: "Кластер клиента".into(),
                },
            ],
        }
    }

    #[tokio::test]
    async fn a_request_keeps_column_order_and_the_descriptions_it_uses() {
        RequestTest::with(())
            .given_no_previous_events()
            .when_async(create(data(), decoding()))
            .await
            .then_expect_events(vec![created()]);
    }

    #[tokio::test]
    async fn the_same_client_again_records_nothing() {
        RequestTest::with(())
            .given(vec![created()])
            .when_async(create(data(), decoding()))
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn undescribed_columns_are_named() {
        let decoding = vec![
            ("age".to_string(), "Возраст".to_string()),
            ("gender".to_string(), " ".to_string()),
        ];
        RequestTest::with(())
            .given_no_previous_events()
            .when_async(create(data(), decoding))
            .await
            .then_expect_error(DomainError::MissingDescriptions {
                columns: vec!["gender".into(), "super_clust".into()],
            });
    }

    #[tokio::test]
    async fn nested_values_empty_data_and_detached_channels_are_refused() {
        let mut nested = data();
        nested.push(("address".into(), json!({"city": "Якутск"})));
        let mut dec = decoding();
        dec.push(("address".into(), "Адрес".into()));
        RequestTest::with(())
            .given_no_previous_events()
            .when_async(create(nested, dec))
            .await
            .then_expect_error(DomainError::invalid(
                "client_data.address",
                "must be a string, number, boolean or null",
            ));
        let mut with_nul = data();
        with_nul[0].1 = json!("1\u{0}");
        RequestTest::with(())
            .given_no_previous_events()
            .when_async(create(with_nul, decoding()))
            .await
            .then_expect_error(DomainError::invalid(
                "client_data.gender",
                "must not contain NUL characters",
            ));
        RequestTest::with(())
            .given_no_previous_events()
            .when_async(create(vec![], decoding()))
            .await
            .then_expect_error(DomainError::invalid(
                "client_data",
                "must have at least one column",
            ));
        let mut detached = create(data(), decoding());
        if let ClientRequestCommand::Create {
            channel_attached, ..
        } = &mut detached
        {
            *channel_attached = false;
        }
        RequestTest::with(())
            .given_no_previous_events()
            .when_async(detached)
            .await
            .then_expect_error(DomainError::ChannelNotAttached);
    }

    #[tokio::test]
    async fn outcomes_are_recorded_when_they_change() {
        RequestTest::with(())
            .given(vec![created()])
            .when_async(ClientRequestCommand::RecordOutcome {
                outcome: Outcome::Sold,
            })
            .await
            .then_expect_events(vec![ClientRequestEvent::OutcomeRecorded {
                outcome: Outcome::Sold,
            }]);
        RequestTest::with(())
            .given(vec![
                created(),
                ClientRequestEvent::OutcomeRecorded {
                    outcome: Outcome::Sold,
                },
            ])
            .when_async(ClientRequestCommand::RecordOutcome {
                outcome: Outcome::Sold,
            })
            .await
            .then_expect_events(vec![]);
        RequestTest::with(())
            .given(vec![created()])
            .when_async(ClientRequestCommand::RecordOutcome {
                outcome: Outcome::Undefined,
            })
            .await
            .then_expect_events(vec![]);
        RequestTest::with(())
            .given_no_previous_events()
            .when_async(ClientRequestCommand::RecordOutcome {
                outcome: Outcome::Sold,
            })
            .await
            .then_expect_error(DomainError::NotFound {
                what: "client request",
            });
    }

    #[test]
    fn outcomes_round_trip_through_their_names() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(Outcome::parse("bought"), None);
    }
}
