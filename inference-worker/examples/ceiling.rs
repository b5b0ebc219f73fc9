//! The ceiling: what llama.cpp itself gets out of this machine, with nothing around it.
//!
//! ```text
//! cargo run --release -p inference-worker --example ceiling -- [--reuse-prefix] <model.gguf> [n] [chats.jsonl]
//! cargo run --release -p inference-worker --example ceiling -- --write-chats [n] > chats.jsonl
//! ```
//! One sequence, one prompt at a time, through llama-cpp-2 directly: apply the model's chat
//! template, decode the whole prompt from an empty cache, then sample and decode one token at a
//! time until the end of generation or `max_tokens`. No queue, no slots, no async runtime.
//!
//! `--reuse-prefix` keeps the cache between prompts and decodes only what follows the part a
//! prompt shares with the previous prompt and its answer, as llama-cpp-python's server does
//! for consecutive requests: clients of one project share the persona, product and channel, so
//! without it a single-sequence loop pays for the same prefix again on every offer and the
//! one-request-at-a-time peer (`scripts/peer-bench.py`) beats the "ceiling". The context is built as `LlamaGenerator`'s is (same threads, context size,
//! batch size, no flash attention) and sampling is the same chain, so only the pipeline differs.
//!
//! Takes the first `n` chats (default 20) of `chats.jsonl`, or built-in ones: prompts built like
//! Offerflow's (`domain::prompt::offer_messages`: persona, product and channel, client block,
//! instruction) for varied clients of one project. Each line of a chats file is
//! `{"messages": [{"role": …, "content": …}, …], "max_tokens": N, "temperature": T, "top_p": P,
//! "seed": S}` (missing sampling fields take `SamplingParams::default()`); `--write-chats`
//! prints the built-in ones in that form, for `scripts/peer-bench.py` to send the same chats.
//!
//! Prints each offer's timing, then prompt tokens/s (prompt decoding only), completion tokens/s
//! (generation only), and offers/min over the whole run.

use std::io::BufRead as _;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use domain::chat::{ChatMessage, SamplingParams};
use domain::client_request::{ClientField, ColumnDescription};
use domain::prompt::{offer_messages, OfferContext, Persona};
use inference_worker::LlamaConfig;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{send_logs_to_tracing, LogOptions};
use serde::{Deserialize, Serialize};
use serde_json::json;

const DEFAULT_CHATS: usize = 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Chat {
    messages: Vec<ChatMessage>,
    #[serde(default = "default_max_tokens")]
    max_tokens: u32,
    #[serde(default = "default_temperature")]
    temperature: f32,
    #[serde(default = "default_top_p")]
    top_p: f32,
    #[serde(default = "default_seed")]
    seed: u32,
}

fn default_max_tokens() -> u32 {
    SamplingParams::default().max_tokens
}
fn default_temperature() -> f32 {
    SamplingParams::default().temperature
}
fn default_top_p() -> f32 {
    SamplingParams::default().top_p
}
fn default_seed() -> u32 {
    SamplingParams::default().seed
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--write-chats") {
        let n = parse_count(args.get(1))?;
        for chat in built_in_chats(n) {
            println!("{}", serde_json::to_string(&chat)?);
        }
        return Ok(());
    }
    let reuse_prefix = args.first().map(String::as_str) == Some("--reuse-prefix");
    let args = &args[usize::from(reuse_prefix)..];
    let Some(model_path) = args.first().map(PathBuf::from) else {
        bail!(
            "usage: ceiling [--reuse-prefix] <model.gguf> [n] [chats.jsonl] | \
             ceiling --write-chats [n]"
        );
    };
    let n = parse_count(args.get(1))?;
    let chats = match args.get(2) {
        Some(path) => read_chats(path, n)?,
        None => built_in_chats(n),
    };
    run(&model_path, &chats, reuse_prefix)
}

fn parse_count(arg: Option<&String>) -> anyhow::Result<usize> {
    match arg {
        None => Ok(DEFAULT_CHATS),
        Some(s) => s
            .parse()
            .with_context(|| format!("the number of chats must be a number, not {s:?}")),
    }
}

fn read_chats(path: &str, n: usize) -> anyhow::Result<Vec<Chat>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    let mut chats = Vec::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {path}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let chat: Chat = serde_json::from_str(&line)
            .with_context(|| format!("{path}:{}: not a chat", number + 1))?;
        chats.push(chat);
        if chats.len() == n {
            break;
        }
    }
    if chats.is_empty() {
        bail!("{path} has no chats");
    }
    Ok(chats)
}

fn run(model_path: &PathBuf, chats: &[Chat], reuse_prefix: bool) -> anyhow::Result<()> {
    // The pipeline's own defaults, so both run on the same threads and context.
    let config = LlamaConfig::new(model_path);
    send_logs_to_tracing(LogOptions::default());
    let backend = LlamaBackend::init().map_err(|e| anyhow!("initialising llama.cpp: {e}"))?;
    let started = Instant::now();
    let model = LlamaModel::load_from_file(&backend, model_path, &LlamaModelParams::default())
        .map_err(|e| anyhow!("loading {}: {e}", model_path.display()))?;
    let threads = i32::try_from(config.threads).unwrap_or(i32::MAX);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(config.context_size))
        .with_n_batch(config.batch_size)
        .with_n_ubatch(config.batch_size)
        .with_n_seq_max(1)
        .with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model
        .new_context(&backend, params)
        .map_err(|e| anyhow!("creating a llama.cpp context: {e}"))?;
    let template = model
        .chat_template(None)
        .or_else(|_| LlamaChatTemplate::new("chatml"))
        .map_err(|e| anyhow!("the model's chat template: {e}"))?;
    println!(
        "loaded {} in {:.2?}; {} threads, context {}, batch {}",
        model_path.display(),
        started.elapsed(),
        config.threads,
        config.context_size,
        config.batch_size
    );

    let batch_size = config.batch_size as usize;
    let mut batch = LlamaBatch::new(batch_size, 1);
    // The tokens the cache holds, at positions 0.., in order.
    let mut cached: Vec<LlamaToken> = Vec::new();
    let mut reused_tokens = 0usize;
    let (mut prompt_tokens, mut completion_tokens) = (0usize, 0usize);
    let (mut prompt_time, mut completion_time) = (Duration::ZERO, Duration::ZERO);
    let run_started = Instant::now();
    for (i, chat) in chats.iter().enumerate() {
        let messages = chat
            .messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.as_str().to_owned(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("chat {i}: a message is not valid"))?;
        let prompt = model
            .apply_chat_template(&template, &messages, true)
            .with_context(|| format!("chat {i}: applying the chat template"))?;
        let vocab = model.vocab();
        let mut tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        if tokens.len() >= 2 && tokens[0] == vocab.bos() && tokens[1] == vocab.bos() {
            tokens.remove(0);
        }
        if tokens.is_empty() || tokens.len() + chat.max_tokens as usize > ctx.n_ctx() as usize {
            bail!(
                "chat {i}: a prompt of {} tokens with max_tokens {} does not fit the context",
                tokens.len(),
                chat.max_tokens
            );
        }

        let offer_started = Instant::now();
        // At least the last prompt token is decoded: its logits give the first new token.
        let keep = if reuse_prefix {
            cached
                .iter()
                .zip(&tokens)
                .take_while(|(a, b)| a == b)
                .count()
                .min(tokens.len() - 1)
        } else {
            0
        };
        if keep == 0 {
            ctx.clear_kv_cache();
        } else {
            ctx.clear_kv_cache_seq(Some(0), Some(u32::try_from(keep)?), None)
                .map_err(|e| anyhow!("chat {i}: dropping the cache after the prefix: {e}"))?;
        }
        cached.truncate(keep);
        reused_tokens += keep;
        let rest = &tokens[keep..];
        let mut logits_at = 0;
        for (c, chunk) in rest.chunks(batch_size).enumerate() {
            batch.clear();
            let last_chunk = (c + 1) * batch_size >= rest.len();
            for (k, token) in chunk.iter().enumerate() {
                let pos = i32::try_from(keep + c * batch_size + k)?;
                let logits = last_chunk && k + 1 == chunk.len();
                batch.add(*token, pos, &[0], logits)?;
            }
            ctx.decode(&mut batch)
                .map_err(|e| anyhow!("chat {i}: decoding the prompt: {e}"))?;
            logits_at = batch.n_tokens() - 1;
        }
        cached.extend_from_slice(rest);
        let prompt_done = Instant::now();

        let mut sampler = sampler(chat);
        let mut generated = 0u32;
        let mut text = Vec::new();
        let mut pos = i32::try_from(tokens.len())?;
        let stopped_by_length = loop {
            let token = sampler.sample(&ctx, logits_at);
            if vocab.is_eog(token) {
                break false;
            }
            generated += 1;
            text.extend(vocab.token_to_piece(token, false, None));
            if generated >= chat.max_tokens {
                break true;
            }
            batch.clear();
            batch.add(token, pos, &[0], true)?;
            ctx.decode(&mut batch)
                .map_err(|e| anyhow!("chat {i}: decoding a generated token: {e}"))?;
            cached.push(token);
            logits_at = 0;
            pos += 1;
        };
        let done = Instant::now();

        prompt_tokens += tokens.len();
        completion_tokens += generated as usize;
        prompt_time += prompt_done - offer_started;
        completion_time += done - prompt_done;
        println!(
            "#{i}: {} prompt tokens ({keep} from the cache) in {} ms, {generated} completion \
             tokens in {} ms{}\n    {}",
            tokens.len(),
            (prompt_done - offer_started).as_millis(),
            (done - prompt_done).as_millis(),
            if stopped_by_length {
                ", cut by max_tokens"
            } else {
                ""
            },
            String::from_utf8_lossy(&text)
                .trim()
                .replace('\n', "\n    ")
        );
    }
    let total = run_started.elapsed();
    println!(
        "ceiling{}: {} offers, {} threads: {prompt_tokens} prompt tokens, {reused_tokens} of \
         them from the cache, the rest decoded at {:.1} tok/s, \
         {completion_tokens} completion tokens at {:.1} tok/s (generation only), \
         {:.1} completion tok/s overall; {:.2} s in all = {:.1} offers/min",
        if reuse_prefix {
            " (reusing prefixes)"
        } else {
            ""
        },
        chats.len(),
        config.threads,
        (prompt_tokens - reused_tokens) as f64 / prompt_time.as_secs_f64(),
        completion_tokens as f64 / completion_time.as_secs_f64(),
        completion_tokens as f64 / total.as_secs_f64(),
        total.as_secs_f64(),
        chats.len() as f64 * 60.0 / total.as_secs_f64()
    );
    Ok(())
}

/// The same chain as `LlamaGenerator`: greedy at temperature 0, else nucleus sampling, seeded.
fn sampler(chat: &Chat) -> LlamaSampler {
    if chat.temperature <= 0.0 {
        return LlamaSampler::greedy();
    }
    LlamaSampler::chain_simple([
        LlamaSampler::top_p(chat.top_p, 1),
        LlamaSampler::temp(chat.temperature),
        LlamaSampler::dist(chat.seed),
    ])
}

const PRODUCT: &str = "Газпромбанк предлагает различные кредитные карты с лимитом до 1 млн \
    рублей, включая карты с кешбэком и специальными условиями для путешествий. Клиенты могут \
    воспользоваться беспроцентным периодом до 180 дней на покупки и снятие наличных, кешбэком \
    до 10% в выбранных категориях и бесплатным обслуживанием при тратах от 10 000 рублей в месяц. \
    Оформить карту можно онлайн за 5 минут, доставка курьером бесплатно.";
const CHANNEL: &str = "Push-уведомление в мобильном приложении банка: одно-два коротких \
    предложения, обращение по имени не используется, без ссылок и эмодзи.";
const PROJECT: &str = "Осенняя акция для зарплатных клиентов: повышенный кешбэк на первые три \
    месяца по кредитной карте.";

/// Chats for `n` clients of one project channel, as `offer_messages` builds them: every chat
/// shares the persona and context, and the client blocks differ.
fn built_in_chats(n: usize) -> Vec<Chat> {
    let context = OfferContext {
        project_description: PROJECT,
        product_description: PRODUCT,
        channel_name: "Push",
        channel_description: CHANNEL,
        channel_prompt: "",
        prompt_version: 1,
        max_chars: Some(200),
    };
    let descriptions: Vec<ColumnDescription> = [
        ("age", "Возраст клиента"),
        ("gender", "Пол"),
        ("super_clust", "Сегмент клиента"),
        (
            "sum_zp_12m",
            "Сумма зарплатных поступлений за 12 месяцев, руб.",
        ),
        (
            "avg_outstanding_amount_3m",
            "Средняя задолженность по кредитам за 3 месяца, руб.",
        ),
        ("sum_dep_now", "Сумма на вкладах сейчас, руб."),
        ("cnt_cards", "Количество карт в банке"),
        ("visit_purposes", "Цели последних визитов в отделение"),
        ("app_vehicle_ind", "Автомобиль"),
        ("city", "Город"),
    ]
    .into_iter()
    .map(|(key, description)| ColumnDescription {
        key: key.into(),
        description: description.into(),
    })
    .collect();
    let segments = [
        "a. Зарплатники (1,2)",
        "b. Пенсионеры (3)",
        "c. Молодёжь (5,6)",
        "h. Бывшие зарплатники (4,9,10,11)",
    ];
    let cities = [
        "Москва",
        "Казань",
        "Екатеринбург",
        "Новосибирск",
        "Якутск",
        "Самара",
    ];
    let purposes = [
        "DCARD,TRANS",
        "DEPOSIT",
        "CCARD,PAY",
        "POTREB",
        "INVEST,DEPOSIT",
        "OTHER",
    ];
    let persona = Persona::default();
    (0..n)
        .map(|i| {
            let client = [
                ("age", json!(22 + (i * 7) % 50)),
                ("gender", json!(i % 2)),
                ("super_clust", json!(segments[i % segments.len()])),
                ("sum_zp_12m", json!(480_000.0 + 37_500.5 * (i % 11) as f64)),
                (
                    "avg_outstanding_amount_3m",
                    json!((i % 4) as f64 * 55_000.0),
                ),
                (
                    "sum_dep_now",
                    json!(if i % 3 == 0 {
                        json!(null)
                    } else {
                        json!(120_000 * (i % 5))
                    }),
                ),
                ("cnt_cards", json!(1 + i % 3)),
                ("visit_purposes", json!(purposes[i % purposes.len()])),
                ("app_vehicle_ind", json!(i % 4 == 1)),
                ("city", json!(cities[i % cities.len()])),
            ]
            .into_iter()
            .map(|(key, value)| ClientField {
                key: key.into(),
                value,
            })
            .collect::<Vec<_>>();
            let defaults = SamplingParams::default();
            Chat {
                messages: offer_messages(&persona, &context, &client, &descriptions),
                max_tokens: defaults.max_tokens,
                temperature: defaults.temperature,
                top_p: defaults.top_p,
                seed: u32::try_from(i).unwrap_or(u32::MAX),
            }
        })
        .collect()
}
