//! Generation settings from flags and the environment: which backend, which model, how the
//! worker behaves, and the persona and sampling defaults the API records with each request.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use domain::chat::SamplingParams;
use domain::prompt::Persona;
use inference_worker::openai::{OpenAiConfig, OpenAiGenerator};
use inference_worker::{LlamaConfig, LlamaGenerator, ReactorConfig, TextGenerator};

use crate::generation::GenerationSettings;
use crate::worker::{default_worker_id, WorkerSetup};

/// The default model's file name, where `scripts/fetch-model.sh` puts it.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Args, Debug, Clone)]
pub struct LlmArgs {
    /// `llama`: llama.cpp in this process; `openai`: an OpenAI-compatible server.
    #[arg(long, env = "OFFERFLOW_LLM_BACKEND", default_value = "llama", value_parser = ["llama", "openai"])]
    pub llm_backend: String,
    /// The GGUF model of the `llama` backend. Default: SmolLM2-135M-Instruct in
    /// $OFFERFLOW_MODEL_DIR or ~/.cache/offerflow/models (scripts/fetch-model.sh puts it there).
    #[arg(long, env = "OFFERFLOW_MODEL")]
    pub model: Option<PathBuf>,
    /// Base URL of the `openai` backend's server, e.g. http://127.0.0.1:8000.
    #[arg(long, env = "OFFERFLOW_OPENAI_URL")]
    pub openai_url: Option<String>,
    /// The model name the `openai` backend asks its server for.
    #[arg(long, env = "OFFERFLOW_OPENAI_MODEL")]
    pub openai_model: Option<String>,
    #[arg(long, env = "OFFERFLOW_OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,
    /// Seconds one request to the `openai` server may take.
    #[arg(long, env = "OFFERFLOW_OPENAI_TIMEOUT_SECONDS", default_value_t = 120)]
    pub openai_timeout_seconds: u64,
    /// CPU threads of the `llama` backend (default: all cores).
    #[arg(long, env = "OFFERFLOW_LLM_THREADS")]
    pub llm_threads: Option<u32>,
    /// Tokens per sequence (prompt + answer) of the `llama` backend.
    #[arg(long, env = "OFFERFLOW_LLM_CONTEXT", default_value_t = 2048)]
    pub llm_context: u32,
    /// Tokens per decode step of the `llama` backend.
    #[arg(long, env = "OFFERFLOW_LLM_BATCH", default_value_t = 512)]
    pub llm_batch: u32,
    /// Offers decoded together (llama) or requests in flight (openai).
    #[arg(long, env = "OFFERFLOW_LLM_PARALLEL", default_value_t = 4)]
    pub llm_parallel: u32,
    /// Attempts before a generation is dead and fails for good.
    #[arg(long, env = "OFFERFLOW_WORKER_MAX_ATTEMPTS", default_value_t = 5)]
    pub worker_max_attempts: u32,
    /// Seconds a worker holds a job without renewing its lease.
    #[arg(long, env = "OFFERFLOW_WORKER_LEASE_SECONDS", default_value_t = 60)]
    pub worker_lease_seconds: u64,
    /// The bank the model writes for.
    #[arg(long, env = "OFFERFLOW_BANK_NAME", default_value = "Газпромбанк")]
    pub bank_name: String,
    /// Extra words about the marketer's voice, added to the system message.
    #[arg(long, env = "OFFERFLOW_PERSONA", default_value = "")]
    pub persona: String,
    /// Default sampling: temperature, top_p, max_tokens and seed (a request may override).
    #[arg(long, env = "OFFERFLOW_TEMPERATURE", default_value_t = 0.7)]
    pub temperature: f32,
    #[arg(long, env = "OFFERFLOW_TOP_P", default_value_t = 0.9)]
    pub top_p: f32,
    #[arg(long, env = "OFFERFLOW_MAX_TOKENS", default_value_t = 256)]
    pub max_tokens: u32,
    #[arg(long, env = "OFFERFLOW_SEED", default_value_t = 42)]
    pub seed: u32,
    /// Most clients one `raw-multiple-creation` call may send.
    #[arg(long, env = "OFFERFLOW_RAW_MAX_BATCH", default_value_t = 50)]
    pub raw_max_batch: usize,
    /// Seconds a `raw-multiple-creation` call waits for its texts.
    #[arg(long, env = "OFFERFLOW_RAW_TIMEOUT_SECONDS", default_value_t = 300)]
    pub raw_timeout_seconds: u64,
}

impl LlmArgs {
    fn model_path(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.model {
            return Ok(path.clone());
        }
        let dir = match std::env::var_os("OFFERFLOW_MODEL_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(
                std::env::var_os("HOME")
                    .context("HOME is not set: set OFFERFLOW_MODEL to a GGUF file")?,
            )
            .join(".cache/offerflow/models"),
        };
        Ok(dir.join(DEFAULT_MODEL_FILE))
    }

    /// The name requests record as the model asked for.
    pub fn model_name(&self) -> anyhow::Result<String> {
        match self.llm_backend.as_str() {
            "openai" => self
                .openai_model
                .clone()
                .context("OFFERFLOW_OPENAI_MODEL is required with OFFERFLOW_LLM_BACKEND=openai"),
            _ => Ok(inference_worker::llama::model_name(&self.model_path()?)),
        }
    }

    pub fn settings(&self) -> anyhow::Result<GenerationSettings> {
        let defaults = SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            max_tokens: self.max_tokens,
            seed: self.seed,
        };
        defaults
            .validate()
            .map_err(|e| anyhow::anyhow!("default sampling parameters: {e}"))?;
        if self.raw_max_batch == 0 {
            bail!("OFFERFLOW_RAW_MAX_BATCH must be at least 1");
        }
        Ok(GenerationSettings {
            persona: Persona {
                bank_name: self.bank_name.clone(),
                voice: self.persona.clone(),
            },
            model: self.model_name()?,
            default_params: defaults,
            raw_max_batch: self.raw_max_batch,
            raw_timeout: Duration::from_secs(self.raw_timeout_seconds),
        })
    }

    /// Loads the backend (for `llama`, the model: this takes a moment).
    pub async fn generator(&self) -> anyhow::Result<Arc<dyn TextGenerator>> {
        match self.llm_backend.as_str() {
            "openai" => {
                let url = self.openai_url.clone().context(
                    "OFFERFLOW_OPENAI_URL is required with OFFERFLOW_LLM_BACKEND=openai",
                )?;
                let mut config = OpenAiConfig::new(url, self.model_name()?);
                config.api_key = self.openai_api_key.clone();
                config.request_timeout = Duration::from_secs(self.openai_timeout_seconds);
                config.concurrency = self.llm_parallel.max(1) as usize;
                Ok(Arc::new(OpenAiGenerator::new(config)?))
            }
            _ => {
                let path = self.model_path()?;
                if !path.is_file() {
                    bail!(
                        "the model {} does not exist: set OFFERFLOW_MODEL to a GGUF file, or run \
                         scripts/fetch-model.sh to fetch the default one (scripts/run.sh does)",
                        path.display()
                    );
                }
                let mut config = LlamaConfig::new(path);
                if let Some(threads) = self.llm_threads {
                    config.threads = threads;
                }
                config.context_size = self.llm_context;
                config.batch_size = self.llm_batch;
                config.parallel_sequences = self.llm_parallel;
                let generator = tokio::task::spawn_blocking(move || LlamaGenerator::load(config))
                    .await
                    .context("loading the model")??;
                Ok(Arc::new(generator))
            }
        }
    }

    pub async fn worker(&self) -> anyhow::Result<WorkerSetup> {
        if self.worker_max_attempts == 0 {
            bail!("OFFERFLOW_WORKER_MAX_ATTEMPTS must be at least 1");
        }
        if self.worker_lease_seconds < 5 {
            bail!("OFFERFLOW_WORKER_LEASE_SECONDS must be at least 5");
        }
        let mut reactor = ReactorConfig::new(default_worker_id());
        reactor.max_attempts = self.worker_max_attempts;
        reactor.lease = Duration::from_secs(self.worker_lease_seconds);
        Ok(WorkerSetup {
            generator: self.generator().await?,
            reactor,
        })
    }
}
