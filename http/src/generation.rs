//! Asking for offers: building a generation's exact messages from the project channel's facts
//! and the client, and recording `GenerationRequested`. The worker (`crate::worker`) does the
//! rest.
use std::time::Duration;

use domain::catalog::{Product, SalesChannel};
use domain::chat::{ChatMessage, ChatRole, SamplingParams};
use domain::client_request::{ClientRequest, ClientRequestCommand};
use domain::ids;
use domain::metadata::EventMetadata;
use domain::project::Project;
use domain::prompt::{follow_up_messages, offer_messages, OfferContext, Persona};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::commands::{CommandBus, Executed};
use crate::error::ApiError;

/// Deployment settings of generation.
#[derive(Debug, Clone)]
pub struct GenerationSettings {
    pub persona: Persona,
    /// The model generations are asked of, recorded in `GenerationRequested`; the worker records
    /// the model that actually answered in `MessageGenerated`.
    pub model: String,
    pub default_params: SamplingParams,
    /// Most clients one `raw-multiple-creation` call may ask for.
    pub raw_max_batch: usize,
    /// How long a `raw-multiple-creation` call waits for its texts.
    pub raw_timeout: Duration,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        GenerationSettings {
            persona: Persona::default(),
            model: "SmolLM2-135M-Instruct.Q4_1".into(),
            default_params: SamplingParams::default(),
            raw_max_batch: 50,
            raw_timeout: Duration::from_secs(300),
        }
    }
}

/// Sampling parameters a caller may set; the rest come from the deployment's defaults.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamsOverride {
    /// 0 to 2.
    pub temperature: Option<f32>,
    /// Above 0, at most 1.
    pub top_p: Option<f32>,
    /// 1 to 4096.
    pub max_tokens: Option<u32>,
    pub seed: Option<u32>,
}

impl ParamsOverride {
    pub fn over(self, defaults: SamplingParams) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            max_tokens: self.max_tokens.unwrap_or(defaults.max_tokens),
            seed: self.seed.unwrap_or(defaults.seed),
        }
    }
}

/// The facts of one project channel that every first generation in it shares.
pub struct ChannelFacts {
    pub project_description: String,
    pub product_description: String,
    pub channel_name: String,
    pub channel_description: String,
    pub channel_prompt: String,
    pub prompt_version: u32,
    pub max_chars: Option<u32>,
}

impl ChannelFacts {
    /// Reads the project's product and the channel as they are now. The channel must be
    /// attached to the project.
    pub async fn load(
        bus: &CommandBus,
        project: &Project,
        channel_id: Uuid,
    ) -> Result<ChannelFacts, ApiError> {
        let attached = project
            .channels
            .get(&channel_id)
            .filter(|c| c.attached)
            .ok_or_else(|| ApiError::not_found("sales channel of this project"))?;
        let product_id = project
            .product_id
            .ok_or_else(|| ApiError::not_found("project"))?;
        let product: Product = bus.load(product_id).await?;
        let channel: SalesChannel = bus.load(channel_id).await?;
        let product = product
            .details
            .ok_or_else(|| anyhow::anyhow!("project's product {product_id} is not in the log"))?;
        let channel = channel
            .details
            .ok_or_else(|| anyhow::anyhow!("sales channel {channel_id} is not in the log"))?;
        let max_chars = project
            .channel_rules(channel_id)
            .and_then(|rules| rules.max_chars);
        Ok(ChannelFacts {
            project_description: project.description.clone(),
            product_description: product.description,
            channel_name: channel.name,
            channel_description: channel.description,
            channel_prompt: attached.prompt.clone(),
            prompt_version: attached.prompt_version,
            max_chars,
        })
    }

    fn context(&self) -> OfferContext<'_> {
        OfferContext {
            project_description: &self.project_description,
            product_description: &self.product_description,
            channel_name: &self.channel_name,
            channel_description: &self.channel_description,
            channel_prompt: &self.channel_prompt,
            prompt_version: self.prompt_version,
            max_chars: self.max_chars,
        }
    }
}

/// What a caller asks for one request.
pub struct GenerationAsk {
    pub instruction: Option<String>,
    pub parent_message_id: Option<Uuid>,
    pub params: SamplingParams,
}

/// Records `GenerationRequested` for one client request; returns the generation's id.
pub async fn request_generation(
    bus: &CommandBus,
    settings: &GenerationSettings,
    facts: &ChannelFacts,
    request_id: Uuid,
    request: &ClientRequest,
    ask: GenerationAsk,
    metadata: &EventMetadata,
) -> Result<(Uuid, Executed), ApiError> {
    let messages = match ask.parent_message_id {
        Some(parent) => {
            let (thread, offer) = request.thread_for(parent).ok_or_else(|| {
                ApiError::invalid(
                    "parent_message_id",
                    "is not an offer of this client request",
                )
            })?;
            let instruction = ask.instruction.as_deref().unwrap_or("").trim();
            if instruction.is_empty() {
                return Err(ApiError::invalid(
                    "instruction",
                    "a follow-up needs an instruction",
                ));
            }
            follow_up_messages(&thread, &offer, instruction)
        }
        None => {
            let mut messages = offer_messages(
                &settings.persona,
                &facts.context(),
                &request.client_data,
                &request.client_data_decoding,
            );
            // A first generation may carry the marketer's extra wish; it goes last, where the
            // model weighs it most.
            if let Some(extra) = ask.instruction.as_deref().map(str::trim) {
                if !extra.is_empty() {
                    messages.push(ChatMessage::new(ChatRole::User, extra));
                }
            }
            messages
        }
    };
    let generation_id = Uuid::new_v4();
    let command = ClientRequestCommand::RequestGeneration {
        generation_id,
        user_message_id: ids::prompt_message_id(generation_id),
        parent_message_id: ask.parent_message_id,
        instruction: ask.instruction,
        messages,
        model: settings.model.clone(),
        prompt_version: facts.prompt_version,
        params: ask.params,
    };
    let done = bus
        .execute(&bus.requests, request_id, command, metadata)
        .await?;
    Ok((generation_id, done))
}
