//! What the generation reactor needs from a model, whatever runs it.

use domain::chat::{ChatMessage, SamplingParams};

/// One text to generate: a chat (system, user, … messages) and how to sample the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationInput {
    pub messages: Vec<ChatMessage>,
    pub params: SamplingParams,
}

/// A generated text and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationOutput {
    /// The assistant's answer, without surrounding whitespace.
    pub text: String,
    /// The whole prompt after the chat template, including any part reused from the cache.
    pub prompt_tokens: u32,
    /// Generated tokens, not counting the end-of-generation token.
    pub completion_tokens: u32,
    /// From the moment the input got a place in the model's batch to its last token.
    pub duration_ms: u64,
    /// True when `max_tokens` cut the text off, false when the model ended it.
    pub stopped_by_length: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerationError {
    /// Retrying the same input cannot help (e.g. the prompt does not fit the context).
    #[error("generation is impossible: {0}")]
    Permanent(String),
    /// The backend failed for a reason of its own; the same input may succeed later.
    #[error("generation failed, may be retried: {0}")]
    Transient(String),
}

impl GenerationError {
    pub fn is_transient(&self) -> bool {
        matches!(self, GenerationError::Transient(_))
    }
}

/// A text-generation backend. Implementations own their model and serialise access to it;
/// callers may call `generate` concurrently.
#[async_trait::async_trait]
pub trait TextGenerator: Send + Sync {
    /// Names the model, e.g. the GGUF file's stem; recorded with every generated text.
    fn model_name(&self) -> String;

    /// How many inputs it works on at once; callers keep about twice that many in flight, so
    /// that a finished input's place is taken at once.
    fn parallelism(&self) -> usize {
        1
    }

    /// Generates every input; the results are in input order. Inputs may be decoded together.
    /// One input's failure does not fail the others.
    async fn generate(
        &self,
        inputs: Vec<GenerationInput>,
    ) -> Vec<Result<GenerationOutput, GenerationError>>;
}
