//! `LlamaGenerator` against the real default model (SmolLM2-135M-Instruct, Q4_1).
//!
//! Needs `OFFERFLOW_MODEL`: the path `scripts/fetch-model.sh` prints (`scripts/test.sh` sets it).

use std::path::PathBuf;
use std::sync::OnceLock;

use domain::chat::{ChatMessage, ChatRole, SamplingParams};
use inference_worker::{
    GenerationError, GenerationInput, GenerationOutput, LlamaConfig, LlamaGenerator, TextGenerator,
};
use tokio::sync::RwLock;

const MAX_TOKENS: u32 = 32;

const SYSTEM: &str = "Ты — маркетолог банка. Пиши короткие персональные предложения клиентам \
    на русском языке: вежливо, по делу, без выдуманных условий. Продукт: кредитная карта \
    «Свобода» с беспроцентным периодом 120 дней, кешбэком 5% в выбранной категории и \
    бесплатным обслуживанием при тратах от 10 000 рублей в месяц. Канал: push-уведомление, \
    не длиннее 200 символов.";

/// Only one llama.cpp backend may exist per process, so every test shares one generator.
fn generator() -> &'static LlamaGenerator {
    static GENERATOR: OnceLock<LlamaGenerator> = OnceLock::new();
    GENERATOR.get_or_init(|| {
        let path = model_path();
        LlamaGenerator::load(LlamaConfig::new(&path))
            .unwrap_or_else(|e| panic!("loading {}: {e:#}", path.display()))
    })
}

/// Tests take it shared; a test that needs the generator to itself takes it exclusively.
static EXCLUSIVE: RwLock<()> = RwLock::const_new(());

fn model_path() -> PathBuf {
    let Some(path) = std::env::var_os("OFFERFLOW_MODEL") else {
        panic!(
            "OFFERFLOW_MODEL is not set. These tests run the real model: run \
             scripts/fetch-model.sh and set OFFERFLOW_MODEL to the path it prints \
             (scripts/test.sh does both)."
        );
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "OFFERFLOW_MODEL={} is not a file; run scripts/fetch-model.sh and point \
         OFFERFLOW_MODEL at the path it prints",
        path.display()
    );
    path
}

fn offer(client: &str, seed: u32) -> GenerationInput {
    GenerationInput {
        messages: vec![
            ChatMessage::new(ChatRole::System, SYSTEM),
            ChatMessage::new(
                ChatRole::User,
                format!("Клиент: {client}. Напиши для него предложение."),
            ),
        ],
        params: SamplingParams {
            temperature: 0.7,
            top_p: 0.9,
            max_tokens: MAX_TOKENS,
            seed,
        },
    }
}

fn ok(result: &Result<GenerationOutput, GenerationError>) -> &GenerationOutput {
    match result {
        Ok(output) => output,
        Err(e) => panic!("generation failed: {e}"),
    }
}

fn assert_usable(output: &GenerationOutput, max_tokens: u32) {
    assert!(!output.text.is_empty(), "empty text: {output:?}");
    assert_eq!(
        output.text,
        output.text.trim(),
        "untrimmed text: {output:?}"
    );
    assert!(
        !output.text.contains("<|im_"),
        "chat template markers leaked into the text: {output:?}"
    );
    assert!(output.prompt_tokens > 0, "{output:?}");
    assert!(output.completion_tokens > 0, "{output:?}");
    assert!(output.completion_tokens <= max_tokens, "{output:?}");
}

#[tokio::test]
async fn a_batch_of_russian_offer_prompts_gives_a_text_for_each() {
    let _shared = EXCLUSIVE.read().await;
    let generator = generator();
    assert_eq!(generator.model_name(), "SmolLM2-135M-Instruct.Q4_1");

    let inputs = vec![
        offer(
            "Анна, 34 года, часто путешествует, тратит 60 000 ₽ в месяц",
            1,
        ),
        offer(
            "Игорь, 52 года, пенсионер, оплачивает коммунальные услуги картой",
            2,
        ),
        offer(
            "Мария, 23 года, студентка, покупает продукты и одежду онлайн",
            3,
        ),
    ];
    let results = generator.generate(inputs).await;

    assert_eq!(results.len(), 3);
    for result in &results {
        assert_usable(ok(result), MAX_TOKENS);
    }
}

/// Makes every slot of the generator forget the prompt it cached, so that the next input's
/// prompt is decoded from its start. Assumes the default 4 parallel sequences.
async fn forget_cached_prompts() {
    let fillers = (0..4)
        .map(|i| GenerationInput {
            messages: vec![ChatMessage::new(ChatRole::User, format!("{i}"))],
            params: SamplingParams {
                max_tokens: 1,
                ..SamplingParams::default()
            },
        })
        .collect();
    for result in generator().generate(fillers).await {
        ok(&result);
    }
}

#[tokio::test]
async fn the_same_seed_and_input_give_the_same_text_alone_and_in_a_batch() {
    // Alone means alone: no other test's input may share these batches.
    let _exclusive = EXCLUSIVE.write().await;

    // A client description long enough that prompt plus answer pass 256 tokens, where
    // llama.cpp's attention kernels start to differ by batch shape.
    let history = "Последние покупки: продукты в супермаркете, такси, кафе, аптека, \
                   бензин, онлайн-кинотеатр, билеты на поезд, книги, спортивный зал. "
        .repeat(3);
    let long = offer(&format!("Олег, 41 год, инженер. {history}"), 7);
    // A high temperature turns the smallest difference in the logits into another token.
    let mut hot = offer("Светлана, 29 лет, дизайнер, копит на квартиру", 99);
    hot.params.temperature = 1.2;
    // Shares no prefix with anything else here, so its whole prompt is decoded beside others.
    let mut own_system = offer(&format!("Мария, 23 года, студентка. {history}"), 21);
    own_system.messages[0].content = format!("Ты пишешь письма клиентам банка. {SYSTEM}");
    let mut greedy = offer("Кирилл, 33 года, программист", 11);
    greedy.params.temperature = 0.0;
    let probes = [long, hot, own_system, greedy];

    let mut alone = Vec::new();
    for probe in &probes {
        forget_cached_prompts().await;
        let mut result = generator().generate(vec![probe.clone()]).await;
        alone.push(ok(&result.remove(0)).clone());
    }
    assert!(
        alone[0].prompt_tokens + alone[0].completion_tokens > 256,
        "the long probe is too short to cover long sequences: {:?}",
        alone[0]
    );

    // Batch-mates of other lengths, seeds and max_tokens, one with a different system message,
    // the others sharing the first probes' system message and so their cached prefix. The
    // mates fill every slot first, so the probes start one by one while the others are
    // generating: their prompts are then decoded in the same steps as others' new tokens.
    forget_cached_prompts().await;
    let mut stranger = offer("Павел, 60 лет", 5);
    stranger.messages[0].content = "Отвечай кратко.".into();
    let mut inputs = vec![
        offer("Ирина, 38 лет, врач", 3),
        stranger,
        offer("Дмитрий, 19 лет, играет в видеоигры", 4),
        offer("Алексей, 47 лет, фермер", 6),
    ];
    for (mate, max_tokens) in inputs.iter_mut().zip([6, 10, 14, 18]) {
        mate.params.max_tokens = max_tokens;
    }
    inputs.extend(probes.iter().cloned());
    let together = generator().generate(inputs).await;
    assert_eq!(together.len(), 8);
    for result in &together {
        assert!(ok(result).completion_tokens > 0, "{result:?}");
    }

    for (alone, index) in alone.iter().zip(4..) {
        let together = ok(&together[index]);
        assert_eq!(
            together.text, alone.text,
            "input {index} changed beside others"
        );
        assert_eq!(together.completion_tokens, alone.completion_tokens);
        assert_eq!(together.prompt_tokens, alone.prompt_tokens);
        assert_eq!(together.stopped_by_length, alone.stopped_by_length);
    }
}

#[tokio::test]
async fn max_tokens_cuts_the_text_off() {
    let _shared = EXCLUSIVE.read().await;
    let mut input = offer(
        "Елена, 45 лет. Напиши очень длинное подробное письмо на три абзаца",
        9,
    );
    input.params.max_tokens = 4;
    let mut single = input.clone();
    single.params.max_tokens = 1;

    let results = generator().generate(vec![input, single]).await;

    let four = ok(&results[0]);
    assert_eq!(four.completion_tokens, 4, "{four:?}");
    assert!(four.stopped_by_length, "{four:?}");
    let one = ok(&results[1]);
    assert_eq!(one.completion_tokens, 1, "{one:?}");
    assert!(one.stopped_by_length, "{one:?}");
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_fails_permanently_and_the_others_succeed() {
    let _shared = EXCLUSIVE.read().await;
    let mut too_long = offer(
        &"очень длинная история клиента со множеством подробностей ".repeat(400),
        1,
    );
    too_long.params.max_tokens = MAX_TOKENS;

    let results = generator()
        .generate(vec![
            offer("Анна, 34 года", 1),
            too_long,
            offer("Игорь, 52 года", 2),
        ])
        .await;

    assert_eq!(results.len(), 3);
    assert_usable(ok(&results[0]), MAX_TOKENS);
    match &results[1] {
        Err(GenerationError::Permanent(message)) => assert!(
            message.contains("does not fit the context of 2048"),
            "unexpected message: {message}"
        ),
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_usable(ok(&results[2]), MAX_TOKENS);
}

#[tokio::test]
async fn invalid_sampling_parameters_fail_permanently() {
    let _shared = EXCLUSIVE.read().await;
    let mut input = offer("Анна", 1);
    input.params.max_tokens = 0;

    let results = generator().generate(vec![input]).await;

    assert!(
        matches!(&results[0], Err(GenerationError::Permanent(m)) if m.contains("max_tokens")),
        "{results:?}"
    );
}
