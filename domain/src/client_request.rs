//! One client inside one project channel: the client's data as the bank gave it, how each
//! column reads to a human, and (later) the thread of generated offers and the sales outcome.
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::chat::{ChatMessage, ChatRole, SamplingParams};
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

/// How good a generated text is, as a reviewer judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageRating {
    Ok,
    Error,
    Revision,
    Undefined,
}

impl MessageRating {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageRating::Ok => "ok",
            MessageRating::Error => "error",
            MessageRating::Revision => "revision",
            MessageRating::Undefined => "undefined",
        }
    }
}

/// The `user` message of a generation's thread: the follow-up's instruction, or the first
/// prompt without the persona. The aggregate and the read model show the same text.
pub fn sent_text(instruction: Option<&str>, messages: &[ChatMessage]) -> String {
    match instruction {
        Some(instruction) => instruction.to_string(),
        None => messages
            .iter()
            .filter(|m| m.role != ChatRole::System)
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n"),
    }
}

/// Where a client request stands with its offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Initial,
    InProgress,
    Ok,
    Error,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Initial => "initial",
            RequestStatus::InProgress => "in_progress",
            RequestStatus::Ok => "ok",
            RequestStatus::Error => "error",
        }
    }
}

/// One message of a request's thread, as the old API showed it: `user` for what was sent to
/// the model, `system` for the model's offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadMessage {
    pub id: Uuid,
    pub generation_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub from_model: bool,
    pub text: String,
}

/// A generation as the request knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub params: SamplingParams,
    pub finished: bool,
    /// Ended by a permanent failure, not by a text: the only kind an admin may requeue.
    #[serde(default)]
    pub failed: bool,
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
        /// The employee credited with the outcome (the caller checks they are a project member).
        credited_to: Option<Uuid>,
    },
    /// Asks for an offer. The caller builds `messages` (prompt::offer_messages, or
    /// prompt::follow_up_messages over [`ClientRequest::thread_for`] for a follow-up) and
    /// chooses the ids.
    RequestGeneration {
        generation_id: Uuid,
        user_message_id: Uuid,
        parent_message_id: Option<Uuid>,
        instruction: Option<String>,
        messages: Vec<ChatMessage>,
        model: String,
        prompt_version: u32,
        params: SamplingParams,
    },
    /// A worker's result. Delivery is at least once: a generation already finished records
    /// nothing.
    CompleteGeneration {
        generation_id: Uuid,
        message_id: Uuid,
        text: String,
        model: String,
        prompt_tokens: u32,
        completion_tokens: u32,
        duration_ms: u64,
        flags: Vec<String>,
    },
    FailGeneration {
        generation_id: Uuid,
        error: String,
        attempt: u32,
        permanent: bool,
    },
    RateMessage {
        message_id: Uuid,
        rating: MessageRating,
        comment: Option<String>,
    },
    /// An admin sends a generation that failed for good back to the workers.
    RequeueGeneration { generation_id: Uuid },
    /// A reviewer's submitted response in Argilla. The same response (id and `updated_at`)
    /// records nothing again; an edited one is a new review.
    RecordReview {
        message_id: Uuid,
        reviewer: String,
        quality: MessageRating,
        corrected_text: Option<String>,
        rating: Option<u8>,
        response_id: String,
        response_updated_at: String,
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
    /// Schema version 2 added `credited_to`; version 1 events are upcast when read
    /// ([`crate::upcast`]).
    OutcomeRecorded {
        outcome: Outcome,
        /// The employee credited with the outcome, for the bank's sales incentives.
        credited_to: Option<Uuid>,
    },
    /// Everything needed to explain and reproduce the text: the exact messages, the model, the
    /// prompt version and the sampling parameters.
    GenerationRequested {
        generation_id: Uuid,
        user_message_id: Uuid,
        parent_message_id: Option<Uuid>,
        instruction: Option<String>,
        messages: Vec<ChatMessage>,
        model: String,
        prompt_version: u32,
        params: SamplingParams,
    },
    MessageGenerated {
        generation_id: Uuid,
        message_id: Uuid,
        text: String,
        model: String,
        prompt_tokens: u32,
        completion_tokens: u32,
        duration_ms: u64,
        flags: Vec<String>,
    },
    GenerationFailed {
        generation_id: Uuid,
        error: String,
        attempt: u32,
        permanent: bool,
    },
    MessageRated {
        message_id: Uuid,
        rating: MessageRating,
        comment: Option<String>,
    },
    GenerationRequeued {
        generation_id: Uuid,
    },
    /// A reviewer judged an offer in Argilla.
    MessageReviewed {
        message_id: Uuid,
        reviewer: String,
        quality: MessageRating,
        corrected_text: Option<String>,
        rating: Option<u8>,
        /// Argilla's response id and its `updated_at`: what makes a review recorded once.
        response_id: String,
        response_updated_at: String,
    },
}

impl DomainEvent for ClientRequestEvent {
    fn event_type(&self) -> String {
        match self {
            ClientRequestEvent::ClientRequestCreated { .. } => "ClientRequestCreated",
            ClientRequestEvent::OutcomeRecorded { .. } => "OutcomeRecorded",
            ClientRequestEvent::GenerationRequested { .. } => "GenerationRequested",
            ClientRequestEvent::MessageGenerated { .. } => "MessageGenerated",
            ClientRequestEvent::GenerationFailed { .. } => "GenerationFailed",
            ClientRequestEvent::MessageRated { .. } => "MessageRated",
            ClientRequestEvent::GenerationRequeued { .. } => "GenerationRequeued",
            ClientRequestEvent::MessageReviewed { .. } => "MessageReviewed",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        match self {
            ClientRequestEvent::OutcomeRecorded { .. } => crate::upcast::OUTCOME_RECORDED_VERSION,
            _ => crate::EVENT_SCHEMA_VERSION,
        }
        .to_string()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientRequest {
    pub project_id: Option<Uuid>,
    pub channel_id: Option<Uuid>,
    pub outcome: Option<Outcome>,
    #[serde(default)]
    pub outcome_credited_to: Option<Uuid>,
    /// The client's columns and descriptions, for building prompts.
    pub client_data: Vec<ClientField>,
    pub client_data_decoding: Vec<ColumnDescription>,
    pub generations: std::collections::BTreeMap<Uuid, Generation>,
    /// The thread in the order it happened.
    pub thread: Vec<ThreadMessage>,
    pub status: Option<RequestStatus>,
    /// Argilla responses recorded: response id → its `updated_at` when recorded.
    #[serde(default)]
    pub reviews: std::collections::BTreeMap<String, String>,
}

const INSTRUCTION_MAX: usize = 5_000;
const COMMENT_MAX: usize = 5_000;
const ERROR_MAX: usize = 2_000;
const CORRECTED_TEXT_MAX: usize = 20_000;
const REVIEWER_MAX: usize = 255;

impl ClientRequest {
    pub fn status(&self) -> RequestStatus {
        self.status.unwrap_or(RequestStatus::Initial)
    }

    /// The messages that produced `message_id` (an offer of this request), for a follow-up.
    pub fn thread_for(&self, message_id: Uuid) -> Option<(Vec<ChatMessage>, String)> {
        let offer = self
            .thread
            .iter()
            .find(|m| m.id == message_id && m.from_model)?;
        let generation = self.generations.get(&offer.generation_id)?;
        Some((generation.messages.clone(), offer.text.clone()))
    }

    fn require_created(&self) -> Result<(), DomainError> {
        if self.project_id.is_none() {
            return Err(DomainError::NotFound {
                what: "client request",
            });
        }
        Ok(())
    }

    /// Ratings and reviews are of offers: a message the model wrote in this request's thread.
    fn require_offer(&self, message_id: Uuid) -> Result<(), DomainError> {
        self.require_created()?;
        if !self
            .thread
            .iter()
            .any(|m| m.id == message_id && m.from_model)
        {
            return Err(DomainError::NotFound { what: "message" });
        }
        Ok(())
    }
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
            ClientRequestCommand::RecordOutcome {
                outcome,
                credited_to,
            } => {
                if self.project_id.is_none() {
                    return Err(DomainError::NotFound {
                        what: "client request",
                    });
                }
                if self.outcome.unwrap_or(Outcome::Undefined) != outcome
                    || (self.outcome.is_some() && self.outcome_credited_to != credited_to)
                {
                    sink.write(
                        ClientRequestEvent::OutcomeRecorded {
                            outcome,
                            credited_to,
                        },
                        self,
                    )
                    .await;
                }
            }
            ClientRequestCommand::RequestGeneration {
                generation_id,
                user_message_id,
                parent_message_id,
                instruction,
                messages,
                model,
                prompt_version,
                params,
            } => {
                self.require_created()?;
                if self.generations.contains_key(&generation_id) {
                    return Ok(()); // the same request again
                }
                if self.status() == RequestStatus::InProgress {
                    return Err(DomainError::Rejected(
                        "an offer for this client is already being generated; wait for it".into(),
                    ));
                }
                params.validate()?;
                let instruction = instruction
                    .map(|text| optional_text("instruction", &text, INSTRUCTION_MAX))
                    .transpose()?
                    .filter(|text| !text.is_empty());
                if let Some(parent) = parent_message_id {
                    if !self.thread.iter().any(|m| m.id == parent && m.from_model) {
                        return Err(DomainError::invalid(
                            "parent_message_id",
                            "is not an offer of this client request",
                        ));
                    }
                    if instruction.is_none() {
                        return Err(DomainError::invalid(
                            "instruction",
                            "a follow-up needs an instruction",
                        ));
                    }
                }
                if messages.is_empty() || messages.last().map(|m| m.role) != Some(ChatRole::User) {
                    return Err(DomainError::invalid(
                        "messages",
                        "must end with the user's instruction",
                    ));
                }
                sink.write(
                    ClientRequestEvent::GenerationRequested {
                        generation_id,
                        user_message_id,
                        parent_message_id,
                        instruction,
                        messages,
                        model,
                        prompt_version,
                        params,
                    },
                    self,
                )
                .await;
            }
            ClientRequestCommand::CompleteGeneration {
                generation_id,
                message_id,
                text,
                model,
                prompt_tokens,
                completion_tokens,
                duration_ms,
                flags,
            } => {
                let generation = self
                    .generations
                    .get(&generation_id)
                    .ok_or(DomainError::NotFound { what: "generation" })?;
                if generation.finished {
                    return Ok(());
                }
                sink.write(
                    ClientRequestEvent::MessageGenerated {
                        generation_id,
                        message_id,
                        text,
                        model,
                        prompt_tokens,
                        completion_tokens,
                        duration_ms,
                        flags,
                    },
                    self,
                )
                .await;
            }
            ClientRequestCommand::FailGeneration {
                generation_id,
                error,
                attempt,
                permanent,
            } => {
                let generation = self
                    .generations
                    .get(&generation_id)
                    .ok_or(DomainError::NotFound { what: "generation" })?;
                if generation.finished {
                    return Ok(());
                }
                let error: String = error.trim().chars().take(ERROR_MAX).collect();
                sink.write(
                    ClientRequestEvent::GenerationFailed {
                        generation_id,
                        error,
                        attempt,
                        permanent,
                    },
                    self,
                )
                .await;
            }
            ClientRequestCommand::RateMessage {
                message_id,
                rating,
                comment,
            } => {
                self.require_offer(message_id)?;
                let comment = comment
                    .map(|text| optional_text("comment", &text, COMMENT_MAX))
                    .transpose()?
                    .filter(|text| !text.is_empty());
                sink.write(
                    ClientRequestEvent::MessageRated {
                        message_id,
                        rating,
                        comment,
                    },
                    self,
                )
                .await;
            }
            ClientRequestCommand::RecordReview {
                message_id,
                reviewer,
                quality,
                corrected_text,
                rating,
                response_id,
                response_updated_at,
            } => {
                self.require_offer(message_id)?;
                if self.reviews.get(&response_id) == Some(&response_updated_at) {
                    return Ok(()); // this response as it is now was recorded before
                }
                if quality == MessageRating::Undefined {
                    return Err(DomainError::invalid(
                        "quality",
                        "must be ok, error or revision",
                    ));
                }
                if rating.is_some_and(|r| !(1..=5).contains(&r)) {
                    return Err(DomainError::invalid("rating", "must be 1 to 5"));
                }
                let reviewer = optional_text("reviewer", &reviewer, REVIEWER_MAX)?;
                if reviewer.is_empty() {
                    return Err(DomainError::invalid("reviewer", "must not be empty"));
                }
                let response_id = optional_text("response_id", &response_id, REVIEWER_MAX)?;
                let response_updated_at =
                    optional_text("response_updated_at", &response_updated_at, REVIEWER_MAX)?;
                let corrected_text = corrected_text
                    .map(|text| optional_text("corrected_text", &text, CORRECTED_TEXT_MAX))
                    .transpose()?
                    .filter(|text| !text.is_empty());
                sink.write(
                    ClientRequestEvent::MessageReviewed {
                        message_id,
                        reviewer,
                        quality,
                        corrected_text,
                        rating,
                        response_id,
                        response_updated_at,
                    },
                    self,
                )
                .await;
            }
            ClientRequestCommand::RequeueGeneration { generation_id } => {
                let generation = self
                    .generations
                    .get(&generation_id)
                    .ok_or(DomainError::NotFound { what: "generation" })?;
                if !generation.failed {
                    // Requeued already, or it ended with a text: nothing to do again.
                    return Ok(());
                }
                if self.status() == RequestStatus::InProgress {
                    return Err(DomainError::Rejected(
                        "another offer for this client is being generated; wait for it".into(),
                    ));
                }
                sink.write(
                    ClientRequestEvent::GenerationRequeued { generation_id },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: ClientRequestEvent) {
        if let ClientRequestEvent::MessageReviewed {
            response_id,
            response_updated_at,
            ..
        } = &event
        {
            self.reviews
                .insert(response_id.clone(), response_updated_at.clone());
            return;
        }
        match event {
            ClientRequestEvent::ClientRequestCreated {
                project_id,
                channel_id,
                client_data,
                client_data_decoding,
                ..
            } => {
                self.project_id = Some(project_id);
                self.channel_id = Some(channel_id);
                self.client_data = client_data;
                self.client_data_decoding = client_data_decoding;
            }
            ClientRequestEvent::OutcomeRecorded {
                outcome,
                credited_to,
            } => {
                self.outcome = Some(outcome);
                self.outcome_credited_to = credited_to;
            }
            ClientRequestEvent::GenerationRequested {
                generation_id,
                user_message_id,
                parent_message_id,
                instruction,
                messages,
                params,
                ..
            } => {
                let text = sent_text(instruction.as_deref(), &messages);
                self.thread.push(ThreadMessage {
                    id: user_message_id,
                    generation_id,
                    parent_id: parent_message_id,
                    from_model: false,
                    text,
                });
                self.generations.insert(
                    generation_id,
                    Generation {
                        messages,
                        params,
                        finished: false,
                        failed: false,
                    },
                );
                self.status = Some(RequestStatus::InProgress);
            }
            ClientRequestEvent::MessageGenerated {
                generation_id,
                message_id,
                text,
                ..
            } => {
                let parent_id = self
                    .thread
                    .iter()
                    .find(|m| m.generation_id == generation_id && !m.from_model)
                    .map(|m| m.id);
                self.thread.push(ThreadMessage {
                    id: message_id,
                    generation_id,
                    parent_id,
                    from_model: true,
                    text,
                });
                if let Some(generation) = self.generations.get_mut(&generation_id) {
                    generation.finished = true;
                }
                self.status = Some(RequestStatus::Ok);
            }
            ClientRequestEvent::GenerationFailed {
                generation_id,
                permanent,
                ..
            } => {
                if permanent {
                    if let Some(generation) = self.generations.get_mut(&generation_id) {
                        generation.finished = true;
                        generation.failed = true;
                    }
                    self.status = Some(RequestStatus::Error);
                }
            }
            ClientRequestEvent::MessageRated { .. }
            | ClientRequestEvent::MessageReviewed { .. } => {}
            ClientRequestEvent::GenerationRequeued { generation_id } => {
                if let Some(generation) = self.generations.get_mut(&generation_id) {
                    generation.finished = false;
                    generation.failed = false;
                }
                self.status = Some(RequestStatus::InProgress);
            }
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
        let seller = Some(Uuid::from_u128(7));
        let record = |outcome, credited_to| ClientRequestCommand::RecordOutcome {
            outcome,
            credited_to,
        };
        let recorded = |outcome, credited_to| ClientRequestEvent::OutcomeRecorded {
            outcome,
            credited_to,
        };
        RequestTest::with(())
            .given(vec![created()])
            .when_async(record(Outcome::Sold, seller))
            .await
            .then_expect_events(vec![recorded(Outcome::Sold, seller)]);
        RequestTest::with(())
            .given(vec![created(), recorded(Outcome::Sold, seller)])
            .when_async(record(Outcome::Sold, seller))
            .await
            .then_expect_events(vec![]);
        // The same outcome credited to someone else is a change the bank pays differently.
        RequestTest::with(())
            .given(vec![created(), recorded(Outcome::Sold, seller)])
            .when_async(record(Outcome::Sold, None))
            .await
            .then_expect_events(vec![recorded(Outcome::Sold, None)]);
        RequestTest::with(())
            .given(vec![created()])
            .when_async(record(Outcome::Undefined, seller))
            .await
            .then_expect_events(vec![]);
        RequestTest::with(())
            .given_no_previous_events()
            .when_async(record(Outcome::Sold, None))
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

    const GENERATION: Uuid = Uuid::from_u128(10);
    const ASKED: Uuid = Uuid::from_u128(11);
    const OFFER: Uuid = Uuid::from_u128(12);

    fn messages() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new(ChatRole::System, "Ты маркетолог"),
            ChatMessage::new(ChatRole::User, "Характеристики клиента:\n1. Возраст: 52"),
            ChatMessage::new(ChatRole::User, "Напиши предложение"),
        ]
    }

    fn request_generation(generation_id: Uuid, parent: Option<Uuid>) -> ClientRequestCommand {
        ClientRequestCommand::RequestGeneration {
            generation_id,
            user_message_id: ASKED,
            parent_message_id: parent,
            instruction: parent.map(|_| "Короче".to_string()),
            messages: messages(),
            model: "SmolLM2-135M-Instruct".into(),
            prompt_version: 1,
            params: SamplingParams::default(),
        }
    }

    fn requested() -> ClientRequestEvent {
        ClientRequestEvent::GenerationRequested {
            generation_id: GENERATION,
            user_message_id: ASKED,
            parent_message_id: None,
            instruction: None,
            messages: messages(),
            model: "SmolLM2-135M-Instruct".into(),
            prompt_version: 1,
            params: SamplingParams::default(),
        }
    }

    fn generated() -> ClientRequestEvent {
        ClientRequestEvent::MessageGenerated {
            generation_id: GENERATION,
            message_id: OFFER,
            text: "Оформите карту!".into(),
            model: "SmolLM2-135M-Instruct".into(),
            prompt_tokens: 40,
            completion_tokens: 5,
            duration_ms: 120,
            flags: vec![],
        }
    }

    fn complete() -> ClientRequestCommand {
        ClientRequestCommand::CompleteGeneration {
            generation_id: GENERATION,
            message_id: OFFER,
            text: "Оформите карту!".into(),
            model: "SmolLM2-135M-Instruct".into(),
            prompt_tokens: 40,
            completion_tokens: 5,
            duration_ms: 120,
            flags: vec![],
        }
    }

    #[tokio::test]
    async fn a_generation_records_the_exact_messages_model_and_parameters() {
        RequestTest::with(())
            .given(vec![created()])
            .when_async(request_generation(GENERATION, None))
            .await
            .then_expect_events(vec![requested()]);
    }

    #[tokio::test]
    async fn a_second_result_for_one_generation_is_ignored() {
        RequestTest::with(())
            .given(vec![created(), requested()])
            .when_async(complete())
            .await
            .then_expect_events(vec![generated()]);
        RequestTest::with(())
            .given(vec![created(), requested(), generated()])
            .when_async(complete())
            .await
            .then_expect_events(vec![]);
        RequestTest::with(())
            .given(vec![created(), requested(), generated()])
            .when_async(ClientRequestCommand::FailGeneration {
                generation_id: GENERATION,
                error: "late".into(),
                attempt: 3,
                permanent: true,
            })
            .await
            .then_expect_events(vec![]);
    }

    fn failed_for_good() -> ClientRequestEvent {
        ClientRequestEvent::GenerationFailed {
            generation_id: GENERATION,
            error: "gave up after 5 attempts".into(),
            attempt: 5,
            permanent: true,
        }
    }

    #[tokio::test]
    async fn only_a_generation_that_failed_for_good_is_requeued_and_then_takes_a_result() {
        let requeue = ClientRequestCommand::RequeueGeneration {
            generation_id: GENERATION,
        };
        let requeued = ClientRequestEvent::GenerationRequeued {
            generation_id: GENERATION,
        };
        RequestTest::with(())
            .given(vec![created(), requested(), failed_for_good()])
            .when_async(requeue.clone())
            .await
            .then_expect_events(vec![requeued.clone()]);
        RequestTest::with(())
            .given(vec![
                created(),
                requested(),
                failed_for_good(),
                requeued.clone(),
            ])
            .when_async(complete())
            .await
            .then_expect_events(vec![generated()]);
        for done in [
            vec![created(), requested(), generated()],
            vec![created(), requested(), failed_for_good(), requeued.clone()],
        ] {
            RequestTest::with(())
                .given(done)
                .when_async(requeue.clone())
                .await
                .then_expect_events(vec![]);
        }
        RequestTest::with(())
            .given(vec![created()])
            .when_async(requeue)
            .await
            .then_expect_error(DomainError::NotFound { what: "generation" });
        let mut request = ClientRequest::default();
        for event in [created(), requested(), failed_for_good(), requeued] {
            request.apply(event);
        }
        assert_eq!(request.status(), RequestStatus::InProgress);
    }

    #[test]
    fn status_goes_from_initial_through_in_progress_to_ok_or_error() {
        let mut request = ClientRequest::default();
        request.apply(created());
        assert_eq!(request.status(), RequestStatus::Initial);
        request.apply(requested());
        assert_eq!(request.status(), RequestStatus::InProgress);
        request.apply(ClientRequestEvent::GenerationFailed {
            generation_id: GENERATION,
            error: "timeout".into(),
            attempt: 1,
            permanent: false,
        });
        assert_eq!(
            request.status(),
            RequestStatus::InProgress,
            "a retryable failure keeps it in progress"
        );
        let mut failed = request.clone();
        failed.apply(ClientRequestEvent::GenerationFailed {
            generation_id: GENERATION,
            error: "prompt too long".into(),
            attempt: 2,
            permanent: true,
        });
        assert_eq!(failed.status(), RequestStatus::Error);
        request.apply(generated());
        assert_eq!(request.status(), RequestStatus::Ok);
        let thread: Vec<(Uuid, Option<Uuid>, bool)> = request
            .thread
            .iter()
            .map(|m| (m.id, m.parent_id, m.from_model))
            .collect();
        assert_eq!(thread, [(ASKED, None, false), (OFFER, Some(ASKED), true)]);
        assert!(request.thread[0].text.starts_with("Характеристики клиента"));
    }

    #[tokio::test]
    async fn one_generation_at_a_time_and_follow_ups_need_an_offer_and_an_instruction() {
        RequestTest::with(())
            .given(vec![created(), requested()])
            .when_async(request_generation(Uuid::from_u128(20), None))
            .await
            .then_expect_error(DomainError::Rejected(
                "an offer for this client is already being generated; wait for it".into(),
            ));
        RequestTest::with(())
            .given(vec![created(), requested(), generated()])
            .when_async(request_generation(Uuid::from_u128(20), Some(ASKED)))
            .await
            .then_expect_error(DomainError::invalid(
                "parent_message_id",
                "is not an offer of this client request",
            ));
        let mut without_instruction = request_generation(Uuid::from_u128(20), Some(OFFER));
        if let ClientRequestCommand::RequestGeneration { instruction, .. } =
            &mut without_instruction
        {
            *instruction = Some("   ".into());
        }
        RequestTest::with(())
            .given(vec![created(), requested(), generated()])
            .when_async(without_instruction)
            .await
            .then_expect_error(DomainError::invalid(
                "instruction",
                "a follow-up needs an instruction",
            ));
        RequestTest::with(())
            .given_no_previous_events()
            .when_async(request_generation(GENERATION, None))
            .await
            .then_expect_error(DomainError::NotFound {
                what: "client request",
            });
    }

    #[tokio::test]
    async fn a_follow_up_sees_the_thread_that_made_its_parent() {
        let mut request = ClientRequest::default();
        for event in [created(), requested(), generated()] {
            request.apply(event);
        }
        let (thread, offer) = request.thread_for(OFFER).expect("an offer");
        assert_eq!(thread, messages());
        assert_eq!(offer, "Оформите карту!");
        assert!(request.thread_for(ASKED).is_none(), "not an offer");
    }

    #[tokio::test]
    async fn only_offers_are_rated_and_comments_are_trimmed() {
        RequestTest::with(())
            .given(vec![created(), requested(), generated()])
            .when_async(ClientRequestCommand::RateMessage {
                message_id: OFFER,
                rating: MessageRating::Revision,
                comment: Some("  слишком длинно ".into()),
            })
            .await
            .then_expect_events(vec![ClientRequestEvent::MessageRated {
                message_id: OFFER,
                rating: MessageRating::Revision,
                comment: Some("слишком длинно".into()),
            }]);
        RequestTest::with(())
            .given(vec![created(), requested(), generated()])
            .when_async(ClientRequestCommand::RateMessage {
                message_id: ASKED,
                rating: MessageRating::Ok,
                comment: None,
            })
            .await
            .then_expect_error(DomainError::NotFound { what: "message" });
    }

    #[tokio::test]
    async fn an_argilla_response_is_recorded_once_and_again_only_when_edited() {
        let message_id = OFFER;
        let review = |updated_at: &str| ClientRequestCommand::RecordReview {
            message_id,
            reviewer: " anna ".into(),
            quality: MessageRating::Revision,
            corrected_text: Some(" better text ".into()),
            rating: Some(4),
            response_id: "r-1".into(),
            response_updated_at: updated_at.into(),
        };
        let reviewed = |updated_at: &str| ClientRequestEvent::MessageReviewed {
            message_id,
            reviewer: "anna".into(),
            quality: MessageRating::Revision,
            corrected_text: Some("better text".into()),
            rating: Some(4),
            response_id: "r-1".into(),
            response_updated_at: updated_at.into(),
        };
        RequestTest::with(())
            .given(vec![created(), requested(), generated()])
            .when_async(review("t1"))
            .await
            .then_expect_events(vec![reviewed("t1")]);
        RequestTest::with(())
            .given(vec![created(), requested(), generated(), reviewed("t1")])
            .when_async(review("t1"))
            .await
            .then_expect_events(vec![]);
        RequestTest::with(())
            .given(vec![created(), requested(), generated(), reviewed("t1")])
            .when_async(review("t2"))
            .await
            .then_expect_events(vec![reviewed("t2")]);
        RequestTest::with(())
            .given(vec![created(), requested()])
            .when_async(review("t1"))
            .await
            .then_expect_error_message("message not found");
    }
}
