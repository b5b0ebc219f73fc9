//! Reactors with side effects: the LLM generation worker and the Argilla exporter.
//!
//! The Argilla exporter ([`argilla::ArgillaExporter`]) is a subscriber of the engine whose
//! "apply" upserts records into Argilla; see [`argilla`].
//!
//! They will consume the event log through `projections`' subscriber engine (or a job table
//! filled in the same transaction as the triggering event) and write their results back as
//! commands on the aggregates in `domain`.
//!
//! Generation goes through [`TextGenerator`]; [`LlamaGenerator`] implements it with llama.cpp
//! running in this process on a GGUF model, [`OpenAiGenerator`] with any OpenAI-compatible chat
//! completions server (llama.cpp's server, llama-cpp-python, vLLM, Ollama).
//!
//! # Configuration
//!
//! [`LlamaConfig::new`]`(model_path)` takes the defaults below; every field is public.
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `model_path` | — | a GGUF file; the default model comes from `scripts/fetch-model.sh` (SmolLM2-135M-Instruct, Q4_1) |
//! | `threads` | available cores | CPU threads of the one inference thread |
//! | `context_size` | 2048 | tokens per sequence: prompt plus `max_tokens`; longer prompts fail as [`GenerationError::Permanent`] |
//! | `batch_size` | 512 | tokens per decode step, all sequences together; at least `parallel_sequences` |
//! | `parallel_sequences` | 4 | inputs decoded together; the KV cache holds `context_size` tokens for each |
//!
//! The KV cache takes `context_size × parallel_sequences` tokens of memory (about 23 KB per
//! token for SmolLM2-135M, so 180 MB with the defaults). On a small CPU, more parallel
//! sequences raise the total tokens/s only a little and make each text slower; 4 is a good
//! start on 2 cores.
//!
//! Load one generator per process and share it: llama.cpp's backend is process-wide (it is
//! initialised once, on the first [`LlamaGenerator::load`]), and a second generator would load
//! the model again and compete with the first for the same cores.
//!
//! A given seed and input give the same text whatever else is decoded in the same batch and
//! whichever part of the prompt came from the cache. That needs llama.cpp built without
//! llamafile's tinyBLAS and weight repacking, which the workspace's `.cargo/config.toml` sets
//! (`GGML_LLAMAFILE=OFF`, `GGML_CPU_REPACK=OFF`); `load` warns when the build has tinyBLAS.
//! After changing those variables, rebuild llama.cpp with `cargo clean -p llama-cpp-sys-2`:
//! its build script does not notice a variable that was unset before.
//!
//! llama.cpp's own messages go to `tracing` with the target `llama-cpp-2`, mostly at INFO
//! while loading; filter them with e.g. `RUST_LOG=info,llama-cpp-2=warn`.
//!
//! ## The `openai` backend
//!
//! [`OpenAiConfig::new`]`(base_url, model)` takes the defaults below; every field is public.
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `base_url` | — | the server's root; requests go to `{base_url}/v1/chat/completions` (a trailing `/v1` is accepted) |
//! | `model` | — | sent as `model` and recorded with every text |
//! | `api_key` | none | sent as `Authorization: Bearer …` |
//! | `request_timeout` | 120 s | one request, connection to last byte: it must cover the longest generation |
//! | `max_attempts` | 4 | tries per input on 5xx, 429, 408, timeouts, connection errors and answers that are not a chat completion; then [`GenerationError::Transient`]. Other 4xx fail at once as [`GenerationError::Permanent`] |
//! | `concurrency` | 4 | requests in flight from the generator, all calls together; match the server's slots |
//! | `retry_backoff` | 500 ms | the first retry's wait, doubling up to 30 s, with jitter; a `Retry-After` in seconds is honoured up to 30 s instead |
//!
//! ## Cargo feature `cuda`
//!
//! `--features inference-worker/cuda` builds llama.cpp with CUDA (the CUDA toolkit and `nvcc`
//! must be installed at build time) and offloads every layer of the model to the GPU. Without
//! it, llama.cpp runs on the CPU; the default build needs a CPU with AVX2. The CUDA build is not
//! exercised by this project's tests.
//!
//! ## Tests
//!
//! `tests/llama.rs` runs the real default model: set `OFFERFLOW_MODEL` to its path
//! (`scripts/test.sh` does, through `scripts/fetch-model.sh`). `tests/openai.rs` also starts
//! llama-cpp-python's server on that model: set `OFFERFLOW_LLAMA_CPP_PYTHON` to the python that
//! `scripts/llama-cpp-python.sh` prints (`scripts/test.sh` does).

pub mod argilla;
pub mod backend;
pub mod jobs;
pub mod llama;
pub mod openai;
pub mod reactor;

pub use backend::{GenerationError, GenerationInput, GenerationOutput, TextGenerator};
pub use jobs::{Backoff, ClaimedJob, JobQueue};
pub use llama::{LlamaConfig, LlamaGenerator};
pub use openai::{OpenAiConfig, OpenAiGenerator};
pub use reactor::{GenerationLedger, GenerationReactor, Offer, ReactorConfig, Work};
