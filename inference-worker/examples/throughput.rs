//! Measures generation throughput of the default model on this machine.
//!
//! ```text
//! OFFERFLOW_MODEL=$(scripts/fetch-model.sh | tail -n1) \
//!   cargo run --release -p inference-worker --example throughput -- [clients] [max_tokens] [parallel]
//! ```
//! Generates one offer per client (default 8 clients, 64 tokens, 4 parallel sequences); all
//! share the system message, as clients of one project do. Prints each text and the totals.
//! With `OFFERFLOW_CHATS=chats.jsonl` (the `ceiling` example's format: `--write-chats`, or the
//! generation bench's `--chats-out`) it takes the first `clients` of those chats instead, with
//! their sampling parameters and the `max_tokens` given here.
//! `RUST_LOG=inference_worker=trace` shows how much of each prompt came from the cache.

use std::time::Instant;

use anyhow::Context as _;

use domain::chat::{ChatMessage, ChatRole, SamplingParams};
use inference_worker::{GenerationInput, LlamaConfig, LlamaGenerator, TextGenerator};

const SYSTEM: &str = "Ты — маркетолог банка. Пиши короткие персональные предложения клиентам \
    на русском языке: вежливо, по делу, без выдуманных условий. Продукт: кредитная карта \
    «Свобода» с беспроцентным периодом 120 дней, кешбэком 5% в выбранной категории и \
    бесплатным обслуживанием при тратах от 10 000 рублей в месяц. Канал: push-уведомление, \
    не длиннее 200 символов.";

const CLIENTS: &[&str] = &[
    "Анна, 34 года, часто путешествует",
    "Игорь, 52 года, пенсионер",
    "Мария, 23 года, студентка",
    "Олег, 41 год, инженер, любит рыбалку",
    "Светлана, 29 лет, дизайнер, копит на квартиру",
    "Павел, 60 лет, владелец небольшого бизнеса",
    "Ирина, 38 лет, врач, двое детей",
    "Дмитрий, 19 лет, играет в видеоигры",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let model = std::env::var("OFFERFLOW_MODEL")
        .map_err(|_| anyhow::anyhow!("set OFFERFLOW_MODEL (see scripts/fetch-model.sh)"))?;
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u32>());
    let clients = args.next().transpose()?.unwrap_or(8) as usize;
    let max_tokens = args.next().transpose()?.unwrap_or(64);
    let mut config = LlamaConfig::new(model);
    if let Some(parallel) = args.next().transpose()? {
        config.parallel_sequences = parallel;
    }

    let started = Instant::now();
    let generator = LlamaGenerator::load(config.clone())?;
    println!(
        "loaded {} in {:?}",
        generator.model_name(),
        started.elapsed()
    );

    let inputs = match std::env::var_os("OFFERFLOW_CHATS") {
        Some(path) => chats_from(&path, clients, max_tokens)?,
        None => built_in(clients, max_tokens),
    };
    let clients = inputs.len();

    let started = Instant::now();
    let results = generator.generate(inputs).await;
    let elapsed = started.elapsed();
    let (mut prompt, mut completion) = (0, 0);
    for (i, result) in results.iter().enumerate() {
        match result {
            Ok(out) => {
                prompt += out.prompt_tokens;
                completion += out.completion_tokens;
                println!(
                    "#{i}: {} prompt + {} completion tokens, {} ms{}\n    {}",
                    out.prompt_tokens,
                    out.completion_tokens,
                    out.duration_ms,
                    if out.stopped_by_length {
                        ", cut by max_tokens"
                    } else {
                        ""
                    },
                    out.text.replace('\n', "\n    ")
                );
            }
            Err(e) => println!("#{i}: {e}"),
        }
    }
    println!(
        "{clients} clients, {} parallel, {} threads: {prompt} prompt + {completion} completion tokens in {:.2} s = {:.1} completion tok/s",
        config.parallel_sequences,
        config.threads,
        elapsed.as_secs_f64(),
        f64::from(completion) / elapsed.as_secs_f64()
    );
    Ok(())
}

fn built_in(clients: usize, max_tokens: u32) -> Vec<GenerationInput> {
    (0..clients)
        .map(|i| GenerationInput {
            messages: vec![
                ChatMessage::new(ChatRole::System, SYSTEM),
                ChatMessage::new(
                    ChatRole::User,
                    format!(
                        "Клиент: {}. Напиши для него предложение.",
                        CLIENTS[i % CLIENTS.len()]
                    ),
                ),
            ],
            params: SamplingParams {
                temperature: 0.7,
                top_p: 0.9,
                max_tokens,
                seed: i as u32,
            },
        })
        .collect()
}

/// A line of a chats file: the messages and sampling of one generation.
#[derive(serde::Deserialize)]
struct Chat {
    messages: Vec<ChatMessage>,
    temperature: f32,
    top_p: f32,
    seed: u32,
}

fn chats_from(
    path: &std::ffi::OsStr,
    clients: usize,
    max_tokens: u32,
) -> anyhow::Result<Vec<GenerationInput>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the chats {}", path.to_string_lossy()))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .take(clients)
        .enumerate()
        .map(|(i, line)| {
            let chat: Chat = serde_json::from_str(line)
                .with_context(|| format!("chat {} of {}", i + 1, path.to_string_lossy()))?;
            Ok(GenerationInput {
                messages: chat.messages,
                params: SamplingParams {
                    temperature: chat.temperature,
                    top_p: chat.top_p,
                    max_tokens,
                    seed: chat.seed,
                },
            })
        })
        .collect()
}
