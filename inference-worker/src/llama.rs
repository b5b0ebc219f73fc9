//! llama.cpp in process, through `llama-cpp-2`.
//!
//! One dedicated thread owns the model and its context (a `LlamaContext` borrows the model and
//! is not `Sync`, and `decode` blocks for as long as the model computes, so neither may live on
//! a tokio worker). Callers send jobs over a channel and await a oneshot reply. The thread keeps
//! `parallel_sequences` slots, each a sequence of one context with its own part of the KV cache,
//! and decodes every busy slot in one batch per step; a freed slot takes the next queued input
//! at once, from the same job or a later one (continuous batching).
//!
//! Prompt prefixes are reused: a slot keeps the prompt of its last input in its cache, and a new
//! input starts from the longest token prefix it shares with any slot's cache (copying another
//! slot's cache when that saves enough tokens). Clients of the same project share the system,
//! product and channel text, so on CPU this removes most of the prompt's cost after the first.
//!
//! A text depends only on its input and seed: not on its batch-mates, nor on which part of its
//! prompt came from the cache. llama.cpp gives that only where it computes every row of a
//! matrix product the same way whatever the batch's shape, hence one KV stream per sequence and
//! no flash attention here, and no llamafile tinyBLAS or weight repacking in ggml (set in the
//! workspace's `.cargo/config.toml`). `tests/llama.rs` checks it. Another CPU (other SIMD
//! instructions) or a GPU may round differently and give other texts for the same seed.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, OnceLock};
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use domain::chat::SamplingParams;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{send_logs_to_tracing, LogOptions};
use tokio::sync::oneshot;

use crate::backend::{GenerationError, GenerationInput, GenerationOutput, TextGenerator};

/// How to run the model. `LlamaConfig::new(path)` fills in the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlamaConfig {
    /// A GGUF file.
    pub model_path: PathBuf,
    /// CPU threads for decoding. One inference thread uses all of them: a second model or
    /// context on the same cores would only make both slower.
    pub threads: u32,
    /// Tokens one sequence may hold: its prompt plus `max_tokens`. The KV cache holds this many
    /// tokens for each of the `parallel_sequences`.
    pub context_size: u32,
    /// The most tokens one decode step takes (prompt tokens of several sequences together).
    pub batch_size: u32,
    /// How many inputs are decoded together.
    pub parallel_sequences: u32,
}

impl LlamaConfig {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        LlamaConfig {
            model_path: model_path.into(),
            threads: std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
                .unwrap_or(1),
            context_size: 2048,
            batch_size: 512,
            parallel_sequences: 4,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.threads == 0 {
            bail!("threads must be at least 1");
        }
        if self.context_size < 16 {
            bail!(
                "context_size must be at least 16 tokens, not {}",
                self.context_size
            );
        }
        // llama.cpp's own limit on sequences in one context (LLAMA_MAX_SEQ).
        if !(1..=256).contains(&self.parallel_sequences) {
            bail!(
                "parallel_sequences must be between 1 and 256, not {}",
                self.parallel_sequences
            );
        }
        // Every generating sequence adds one token per step, so all of them must fit a batch.
        if self.batch_size < self.parallel_sequences {
            bail!(
                "batch_size ({}) must be at least parallel_sequences ({})",
                self.batch_size,
                self.parallel_sequences
            );
        }
        self.context_size
            .checked_mul(self.parallel_sequences)
            .filter(|total| i32::try_from(*total).is_ok())
            .ok_or_else(|| anyhow!("context_size × parallel_sequences is too large"))?;
        Ok(())
    }
}

/// A `TextGenerator` running a GGUF model with llama.cpp on a thread of its own.
///
/// Load one per process and share it: llama.cpp's backend is process-wide, and a second
/// generator would load the model again and compete with the first for the same cores.
pub struct LlamaGenerator {
    model_name: String,
    parallel_sequences: usize,
    jobs: mpsc::Sender<Job>,
}

struct Job {
    inputs: Vec<GenerationInput>,
    reply: oneshot::Sender<Vec<Result<GenerationOutput, GenerationError>>>,
}

impl LlamaGenerator {
    /// Loads the model and starts the inference thread; returns once the model is loaded.
    /// Blocks for that long (well under a second for small models, longer for big ones), so
    /// call it at startup or from `spawn_blocking`.
    pub fn load(config: LlamaConfig) -> anyhow::Result<LlamaGenerator> {
        config
            .validate()
            .context("invalid llama.cpp configuration")?;
        // llama.cpp only debug-asserts that the file exists, and reports a missing one as a
        // bare null model.
        let metadata = std::fs::metadata(&config.model_path)
            .with_context(|| format!("reading the model {}", config.model_path.display()))?;
        if !metadata.is_file() {
            bail!("the model {} is not a file", config.model_path.display());
        }
        let model_name = model_name(&config.model_path);
        let backend = backend()?;
        // SAFETY: reads a constant of ggml's build; no state is involved.
        if unsafe { llama_cpp_sys_2::ggml_cpu_has_llamafile() } != 0 {
            tracing::warn!(
                "llama.cpp was built with GGML_LLAMAFILE=ON: a text may then differ with what \
                 else is decoded beside it; build from the workspace, whose .cargo/config.toml \
                 turns it off"
            );
        }

        let (jobs, jobs_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<anyhow::Result<()>>(1);
        let thread_config = config.clone();
        std::thread::Builder::new()
            .name("llama-inference".into())
            .spawn(move || inference_thread(backend, thread_config, jobs_rx, ready_tx))
            .context("starting the llama.cpp inference thread")?;
        ready_rx
            .recv()
            .map_err(|_| anyhow!("the llama.cpp inference thread stopped while loading"))?
            .with_context(|| format!("loading the model {}", config.model_path.display()))?;
        tracing::info!(
            model = %model_name,
            threads = config.threads,
            context_size = config.context_size,
            batch_size = config.batch_size,
            parallel_sequences = config.parallel_sequences,
            "llama.cpp model loaded"
        );
        Ok(LlamaGenerator {
            model_name,
            parallel_sequences: config.parallel_sequences as usize,
            jobs,
        })
    }
}

#[async_trait::async_trait]
impl TextGenerator for LlamaGenerator {
    fn model_name(&self) -> String {
        self.model_name.clone()
    }

    fn parallelism(&self) -> usize {
        self.parallel_sequences
    }

    async fn generate(
        &self,
        inputs: Vec<GenerationInput>,
    ) -> Vec<Result<GenerationOutput, GenerationError>> {
        if inputs.is_empty() {
            return Vec::new();
        }
        let count = inputs.len();
        let stopped = || {
            (0..count)
                .map(|_| {
                    Err(GenerationError::Transient(
                        "the llama.cpp inference thread has stopped".into(),
                    ))
                })
                .collect()
        };
        let (reply, answer) = oneshot::channel();
        if self.jobs.send(Job { inputs, reply }).is_err() {
            return stopped();
        }
        answer.await.unwrap_or_else(|_| stopped())
    }
}

/// The name a GGUF file's texts are recorded under: its file stem.
pub fn model_name(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// llama.cpp allows one backend per process; it lives as long as the process.
fn backend() -> anyhow::Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    let backend = BACKEND.get_or_init(|| {
        // Before init, so that the backend's own messages go to tracing (target `llama-cpp-2`)
        // instead of stderr.
        send_logs_to_tracing(LogOptions::default());
        LlamaBackend::init().map_err(|e| e.to_string())
    });
    backend
        .as_ref()
        .map_err(|e| anyhow!("initialising the llama.cpp backend: {e}"))
}

fn inference_thread(
    backend: &'static LlamaBackend,
    config: LlamaConfig,
    jobs: mpsc::Receiver<Job>,
    ready: mpsc::SyncSender<anyhow::Result<()>>,
) {
    let model = match load_model(backend, &config) {
        Ok(model) => model,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let engine = match Engine::new(backend, &model, &config) {
        Ok(engine) => engine,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(())).is_err() {
        return;
    }
    engine.serve(jobs);
    tracing::debug!("llama.cpp inference thread stopped: the generator was dropped");
}

fn load_model(backend: &LlamaBackend, config: &LlamaConfig) -> anyhow::Result<LlamaModel> {
    let params = LlamaModelParams::default();
    // With CUDA, every layer goes to the GPU; llama.cpp caps the number at the model's layers.
    #[cfg(feature = "cuda")]
    let params = params.with_n_gpu_layers(u32::MAX);
    LlamaModel::load_from_file(backend, &config.model_path, &params)
        .map_err(|e| anyhow!("llama.cpp could not load the model: {e}"))
}

/// A prefix shorter than this is decoded again rather than copied from another slot: copying
/// moves the slot's whole KV buffer, which costs about as much as decoding a few dozen tokens.
const MIN_COPIED_PREFIX: usize = 32;

/// The inference thread's state: the context, its slots, and what is queued.
struct Engine<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    template: LlamaChatTemplate,
    /// Tokens one sequence may hold.
    context_size: usize,
    batch_size: usize,
    /// Reused every step; `'static` because it owns its buffers.
    batch: LlamaBatch<'static>,
    slots: Vec<Slot>,
    queue: VecDeque<Queued>,
    jobs: HashMap<u64, PendingJob>,
    next_job: u64,
}

struct Slot {
    seq: i32,
    /// The tokens this sequence holds in the KV cache, at positions 0.., in order.
    cached: Vec<LlamaToken>,
    active: Option<Active>,
}

/// An input being generated in a slot.
struct Active {
    job: u64,
    index: usize,
    prompt: Vec<LlamaToken>,
    max_tokens: u32,
    sampler: LlamaSampler,
    /// The last sampled token, to be decoded in the next step (none while prefilling).
    next: Option<LlamaToken>,
    /// Pieces are bytes that may split a UTF-8 character; the decoder carries the rest over.
    decoder: encoding_rs::Decoder,
    text: String,
    completion_tokens: u32,
    started: Instant,
}

struct Queued {
    job: u64,
    index: usize,
    prompt: Vec<LlamaToken>,
    params: SamplingParams,
}

struct PendingJob {
    results: Vec<Option<Result<GenerationOutput, GenerationError>>>,
    remaining: usize,
    reply: oneshot::Sender<Vec<Result<GenerationOutput, GenerationError>>>,
}

impl<'m> Engine<'m> {
    fn new(
        backend: &LlamaBackend,
        model: &'m LlamaModel,
        config: &LlamaConfig,
    ) -> anyhow::Result<Engine<'m>> {
        let threads = i32::try_from(config.threads).unwrap_or(i32::MAX);
        // Validated: fits an i32, so it fits a u32.
        let total_ctx = NonZeroU32::new(config.context_size * config.parallel_sequences);
        let params = LlamaContextParams::default()
            .with_n_ctx(total_ctx)
            .with_n_batch(config.batch_size)
            .with_n_ubatch(config.batch_size)
            .with_n_seq_max(config.parallel_sequences)
            // One KV stream per sequence: a sequence's attention then never sees another
            // sequence's cells, which keeps its text independent of its batch-mates.
            .with_kv_unified(false)
            // llama.cpp's CPU flash attention picks a kernel by batch shape (one query row and
            // ≥ 512 cells: KV split across threads; ≥ 64 rows: tiled), and the kernels round
            // differently, so a sequence's text would depend on what else is in its batch.
            // Plain attention computes every row the same way whatever the batch holds.
            .with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let ctx = model
            .new_context(backend, params)
            .map_err(|e| anyhow!("llama.cpp could not create a context: {e}"))?;
        let per_sequence = ctx.n_ctx() / config.parallel_sequences;
        let context_size = config.context_size.min(per_sequence) as usize;
        let template = match model.chat_template(None) {
            Ok(template) => template,
            Err(e) => {
                tracing::warn!(error = %e, "the model has no chat template; using ChatML");
                LlamaChatTemplate::new("chatml").context("naming the ChatML template")?
            }
        };
        let slots = (0..config.parallel_sequences)
            .map(|seq| Slot {
                seq: seq as i32,
                cached: Vec::new(),
                active: None,
            })
            .collect();
        Ok(Engine {
            model,
            ctx,
            template,
            context_size,
            batch_size: config.batch_size as usize,
            batch: LlamaBatch::new(config.batch_size as usize, 1),
            slots,
            queue: VecDeque::new(),
            jobs: HashMap::new(),
            next_job: 0,
        })
    }

    fn serve(mut self, jobs: mpsc::Receiver<Job>) {
        loop {
            if self.is_idle() {
                match jobs.recv() {
                    Ok(job) => self.accept(job),
                    Err(_) => return,
                }
            }
            // Jobs that arrived meanwhile join the running batch.
            while let Ok(job) = jobs.try_recv() {
                self.accept(job);
            }
            self.admit();
            if self.slots.iter().any(|s| s.active.is_some()) {
                self.step();
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.slots.iter().all(|s| s.active.is_none())
    }

    /// Prepares a job's inputs; those that cannot be generated are answered at once.
    fn accept(&mut self, job: Job) {
        let count = job.inputs.len();
        if count == 0 {
            let _ = job.reply.send(Vec::new());
            return;
        }
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(
            id,
            PendingJob {
                results: (0..count).map(|_| None).collect(),
                remaining: count,
                reply: job.reply,
            },
        );
        for (index, input) in job.inputs.into_iter().enumerate() {
            match self.prompt_tokens(&input) {
                Ok(prompt) => self.queue.push_back(Queued {
                    job: id,
                    index,
                    prompt,
                    params: input.params,
                }),
                Err(e) => self.record(id, index, Err(e)),
            }
        }
    }

    fn prompt_tokens(&self, input: &GenerationInput) -> Result<Vec<LlamaToken>, GenerationError> {
        input
            .params
            .validate()
            .map_err(|e| GenerationError::Permanent(format!("sampling parameters: {e}")))?;
        if input.messages.is_empty() {
            return Err(GenerationError::Permanent("there are no messages".into()));
        }
        let messages = input
            .messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.as_str().to_owned(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| GenerationError::Permanent(format!("a message is not valid: {e}")))?;
        let prompt = self
            .model
            .apply_chat_template(&self.template, &messages, true)
            .map_err(|e| {
                GenerationError::Permanent(format!("applying the model's chat template: {e}"))
            })?;
        let vocab = self.model.vocab();
        // add_special adds BOS for models that want one; parse_special reads the template's
        // role markers as the special tokens they are.
        let mut tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        // A template that writes BOS itself would otherwise give two.
        if tokens.len() >= 2 && tokens[0] == vocab.bos() && tokens[1] == vocab.bos() {
            tokens.remove(0);
        }
        if tokens.is_empty() {
            return Err(GenerationError::Permanent(
                "the prompt has no tokens".to_owned(),
            ));
        }
        let max_tokens = input.params.max_tokens;
        if tokens.len() + max_tokens as usize > self.context_size {
            return Err(GenerationError::Permanent(format!(
                "the prompt is {} tokens; with max_tokens {max_tokens} it does not fit the context of {}",
                tokens.len(),
                self.context_size
            )));
        }
        Ok(tokens)
    }

    /// Gives idle slots the next queued inputs, reusing cached prompt prefixes.
    fn admit(&mut self) {
        // Slots given an input or used as a copy source in this round: llama.cpp copies KV
        // buffers lazily at the next decode, so a slot must not be both source and target.
        let mut admitted: Vec<usize> = Vec::new();
        let mut sources: Vec<usize> = Vec::new();
        let mut i = 0;
        while i < self.queue.len() {
            let idle: Vec<usize> = (0..self.slots.len())
                .filter(|&s| self.slots[s].active.is_none())
                .collect();
            if idle.is_empty() {
                break;
            }
            let prompt = &self.queue[i].prompt;
            // At least the last prompt token is decoded again: its logits give the first token.
            let usable = prompt.len() - 1;
            let shared = |tokens: &[LlamaToken]| common_prefix(tokens, prompt).min(usable);

            let (own_slot, own) = idle
                .iter()
                .map(|&s| (s, shared(&self.slots[s].cached)))
                .max_by_key(|&(s, n)| (n, std::cmp::Reverse(s)))
                .unwrap_or((idle[0], 0));
            let (source, from_source) = (0..self.slots.len())
                .filter(|s| !admitted.contains(s))
                .map(|s| (s, shared(&self.slots[s].cached)))
                .max_by_key(|&(s, n)| (n, std::cmp::Reverse(s)))
                .unwrap_or((own_slot, 0));
            // A slot still decoding a prompt with the same beginning will soon hold it: wait for
            // it rather than decode the same prefix twice.
            let coming = self
                .slots
                .iter()
                .filter_map(|s| s.active.as_ref())
                .filter(|a| a.next.is_none())
                .map(|a| shared(&a.prompt))
                .max()
                .unwrap_or(0);
            if coming >= own.max(from_source) + MIN_COPIED_PREFIX {
                i += 1;
                continue;
            }

            let copy_target = idle
                .iter()
                .copied()
                .filter(|s| *s != source && !sources.contains(s))
                .min_by_key(|&s| (shared(&self.slots[s].cached), s));
            let (slot, keep) = match copy_target {
                Some(target) if from_source >= own + MIN_COPIED_PREFIX => {
                    let (src_seq, dst_seq) = (self.slots[source].seq, self.slots[target].seq);
                    match self.ctx.copy_kv_cache_seq(src_seq, dst_seq, None, None) {
                        Ok(()) => {
                            self.slots[target].cached = self.slots[source].cached.clone();
                            sources.push(source);
                            (target, from_source)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "copying a cached prompt prefix failed");
                            (own_slot, own)
                        }
                    }
                }
                _ => (own_slot, own),
            };
            let keep = self.truncate_cache(slot, keep);

            let Some(queued) = self.queue.remove(i) else {
                break;
            };
            let slot_ref = &mut self.slots[slot];
            slot_ref.active = Some(Active {
                job: queued.job,
                index: queued.index,
                prompt: queued.prompt,
                max_tokens: queued.params.max_tokens,
                sampler: sampler(&queued.params),
                next: None,
                decoder: encoding_rs::UTF_8.new_decoder(),
                text: String::new(),
                completion_tokens: 0,
                started: Instant::now(),
            });
            admitted.push(slot);
            tracing::trace!(slot, reused_prefix = keep, "input admitted");
        }
    }

    /// Drops a slot's cached tokens from position `keep` on; returns how many remain.
    fn truncate_cache(&mut self, slot: usize, keep: usize) -> usize {
        let seq = self.slots[slot].seq as u32;
        let removed = u32::try_from(keep)
            .ok()
            .and_then(|keep| {
                self.ctx
                    .clear_kv_cache_seq(Some(seq), Some(keep), None)
                    .ok()
            })
            .unwrap_or(false);
        if removed {
            self.slots[slot].cached.truncate(keep);
            keep
        } else {
            // A partial removal can fail (e.g. for recurrent models); a whole sequence cannot.
            let _ = self.ctx.clear_kv_cache_seq(Some(seq), None, None);
            self.slots[slot].cached.clear();
            0
        }
    }

    /// Decodes one batch: the next token of every generating slot, then as many prompt tokens
    /// as fit; samples every slot whose last decoded token was its prompt's end or a new token.
    fn step(&mut self) {
        let batch = &mut self.batch;
        batch.clear();
        // (slot, tokens added, index of the logits row in the batch)
        let mut plan: Vec<(usize, Vec<LlamaToken>, Option<i32>)> = Vec::new();
        let mut failure = None;
        // Generating slots first: one token each, and they always fit (batch ≥ slots).
        for (s, slot) in self.slots.iter().enumerate() {
            if let Some(token) = slot.active.as_ref().and_then(|a| a.next) {
                match add_tokens(batch, slot, &[token], true) {
                    Ok(at) => plan.push((s, vec![token], at)),
                    Err(e) => failure = Some(e),
                }
            }
        }
        for (s, slot) in self.slots.iter().enumerate() {
            let Some(active) = slot.active.as_ref().filter(|a| a.next.is_none()) else {
                continue;
            };
            let room = self.batch_size - batch.n_tokens() as usize;
            if room == 0 {
                break;
            }
            let rest = &active.prompt[slot.cached.len()..];
            let take = rest.len().min(room);
            let chunk = &rest[..take];
            match add_tokens(batch, slot, chunk, take == rest.len()) {
                Ok(at) => plan.push((s, chunk.to_vec(), at)),
                Err(e) => failure = Some(e),
            }
        }

        let decoded = match failure {
            Some(e) => Err(format!("building the batch: {e}")),
            None => self
                .ctx
                .decode(&mut self.batch)
                .map_err(|e| format!("llama.cpp could not decode the batch: {e}")),
        };
        if let Err(e) = decoded {
            self.fail_all(&e);
            return;
        }

        for (s, tokens, logits_at) in plan {
            self.slots[s].cached.extend(tokens);
            if let Some(at) = logits_at {
                self.sample(s, at);
            }
        }
    }

    fn sample(&mut self, s: usize, at: i32) {
        let vocab = self.model.vocab();
        let slot = &mut self.slots[s];
        let Some(active) = slot.active.as_mut() else {
            return;
        };
        // `sample` also accepts the token into the chain.
        let token = active.sampler.sample(&self.ctx, at);
        if vocab.is_eog(token) {
            self.finish(s, false);
            return;
        }
        let piece = vocab.token_to_piece(token, false, None);
        decode_utf8(&mut active.decoder, &piece, &mut active.text, false);
        active.completion_tokens += 1;
        if active.completion_tokens >= active.max_tokens {
            self.finish(s, true);
        } else {
            active.next = Some(token);
        }
    }

    fn finish(&mut self, s: usize, stopped_by_length: bool) {
        let Some(mut active) = self.slots[s].active.take() else {
            return;
        };
        decode_utf8(&mut active.decoder, &[], &mut active.text, true);
        let output = GenerationOutput {
            text: active.text.trim().to_owned(),
            prompt_tokens: u32::try_from(active.prompt.len()).unwrap_or(u32::MAX),
            completion_tokens: active.completion_tokens,
            duration_ms: u64::try_from(active.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            stopped_by_length,
        };
        // Generated tokens go at once; the prompt stays for the next input that shares it.
        let prompt_len = active.prompt.len().min(self.slots[s].cached.len());
        self.truncate_cache(s, prompt_len);
        self.record(active.job, active.index, Ok(output));
    }

    /// After a failed decode the KV cache is in an unknown state: every running input fails
    /// (transiently) and every slot starts empty.
    fn fail_all(&mut self, reason: &str) {
        tracing::error!(error = reason, "llama.cpp decode failed");
        self.ctx.clear_kv_cache();
        for s in 0..self.slots.len() {
            self.slots[s].cached.clear();
            if let Some(active) = self.slots[s].active.take() {
                self.record(
                    active.job,
                    active.index,
                    Err(GenerationError::Transient(reason.to_owned())),
                );
            }
        }
    }

    fn record(
        &mut self,
        job: u64,
        index: usize,
        result: Result<GenerationOutput, GenerationError>,
    ) {
        let Some(pending) = self.jobs.get_mut(&job) else {
            return;
        };
        if let Some(place) = pending.results.get_mut(index) {
            if place.is_none() {
                pending.remaining -= 1;
            }
            *place = Some(result);
        }
        if pending.remaining > 0 {
            return;
        }
        if let Some(pending) = self.jobs.remove(&job) {
            let results = pending
                .results
                .into_iter()
                .map(|r| {
                    r.unwrap_or_else(|| {
                        Err(GenerationError::Transient("the input was lost".to_owned()))
                    })
                })
                .collect();
            // The caller may have given up waiting; nothing to do then.
            let _ = pending.reply.send(results);
        }
    }
}

/// Adds a slot's next tokens at the positions after its cache; returns the batch index of the
/// last token's logits when asked for them.
fn add_tokens(
    batch: &mut LlamaBatch,
    slot: &Slot,
    tokens: &[LlamaToken],
    logits_last: bool,
) -> Result<Option<i32>, String> {
    let mut logits_at = None;
    for (k, token) in tokens.iter().enumerate() {
        let pos = i32::try_from(slot.cached.len() + k).map_err(|e| e.to_string())?;
        let logits = logits_last && k + 1 == tokens.len();
        if logits {
            logits_at = Some(batch.n_tokens());
        }
        batch
            .add(*token, pos, &[slot.seq], logits)
            .map_err(|e| e.to_string())?;
    }
    Ok(logits_at)
}

/// Appends `bytes` to `text`. A character split between tokens waits in the decoder for its
/// remaining bytes; byte sequences that are not UTF-8 at all (small models emit some) become
/// U+FFFD rather than failing the text.
fn decode_utf8(decoder: &mut encoding_rs::Decoder, bytes: &[u8], text: &mut String, last: bool) {
    let mut rest = bytes;
    loop {
        let room = decoder
            .max_utf8_buffer_length(rest.len())
            .unwrap_or(rest.len().saturating_mul(3).saturating_add(16));
        text.reserve(room);
        let (result, read, _) = decoder.decode_to_string(rest, text, last);
        rest = &rest[read..];
        if result == encoding_rs::CoderResult::InputEmpty {
            return;
        }
    }
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Temperature 0 means the most likely token every time; otherwise nucleus sampling, seeded,
/// so that a stored seed reproduces the text.
fn sampler(params: &SamplingParams) -> LlamaSampler {
    if params.temperature <= 0.0 {
        return LlamaSampler::greedy();
    }
    LlamaSampler::chain_simple([
        LlamaSampler::top_p(params.top_p, 1),
        LlamaSampler::temp(params.temperature),
        LlamaSampler::dist(params.seed),
    ])
}
