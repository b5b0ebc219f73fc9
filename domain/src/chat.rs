//! What a generation sends to a model and how it samples: the shapes both the domain (which
//! records them in `GenerationRequested`) and the inference backends (which run them) speak.
use serde::{Deserialize, Serialize};

use crate::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

impl ChatRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
        }
    }
}

/// How a model samples one generation. Stored with the request, so a text can be reproduced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_p: f32,
    pub max_tokens: u32,
    pub seed: u32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.7,
            top_p: 0.9,
            max_tokens: 256,
            seed: 42,
        }
    }
}

/// The largest `max_tokens` a caller may ask for: offers are short, and a runaway generation
/// holds a worker's slot.
pub const MAX_TOKENS_LIMIT: u32 = 4096;

impl SamplingParams {
    /// Refuses parameters no backend can honour, naming the field.
    pub fn validate(&self) -> Result<(), DomainError> {
        if !(self.temperature.is_finite() && (0.0..=2.0).contains(&self.temperature)) {
            return Err(DomainError::invalid(
                "params.temperature",
                "must be between 0 and 2",
            ));
        }
        if !(self.top_p.is_finite() && self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(DomainError::invalid(
                "params.top_p",
                "must be above 0 and at most 1",
            ));
        }
        if self.max_tokens == 0 || self.max_tokens > MAX_TOKENS_LIMIT {
            return Err(DomainError::invalid(
                "params.max_tokens",
                format!("must be between 1 and {MAX_TOKENS_LIMIT}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_parameters_out_of_range_name_their_field() {
        let bad = [
            (
                SamplingParams {
                    temperature: -0.1,
                    ..Default::default()
                },
                "params.temperature",
            ),
            (
                SamplingParams {
                    temperature: f32::NAN,
                    ..Default::default()
                },
                "params.temperature",
            ),
            (
                SamplingParams {
                    top_p: 0.0,
                    ..Default::default()
                },
                "params.top_p",
            ),
            (
                SamplingParams {
                    max_tokens: 0,
                    ..Default::default()
                },
                "params.max_tokens",
            ),
            (
                SamplingParams {
                    max_tokens: MAX_TOKENS_LIMIT + 1,
                    ..Default::default()
                },
                "params.max_tokens",
            ),
        ];
        for (params, field) in bad {
            let error = params.validate().expect_err(field);
            assert!(format!("{error:?}").contains(field), "{error:?}");
        }
        assert!(SamplingParams::default().validate().is_ok());
    }
}
