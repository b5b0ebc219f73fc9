//! `OpenAiGenerator` against a real OpenAI-compatible server: llama-cpp-python's, serving the
//! default model (SmolLM2-135M-Instruct, Q4_1), started by each test on a free local port.
//!
//! Needs `OFFERFLOW_MODEL` (the path `scripts/fetch-model.sh` prints) and
//! `OFFERFLOW_LLAMA_CPP_PYTHON` (the python `scripts/llama-cpp-python.sh` prints);
//! `scripts/test.sh` sets both.
//!
//! The error paths that no real server produces on demand (a 500, a 429 with `Retry-After`, an
//! answer that never comes, a body that is not JSON) are played by a small fake server at the
//! end of this file. It stands in for nothing else: every success path and every error a real
//! server gives on demand (a prompt longer than its context, a wrong API key, nothing listening)
//! runs against the real thing.

use std::fs::File;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use domain::chat::{ChatMessage, ChatRole, SamplingParams};
use inference_worker::{
    GenerationError, GenerationInput, GenerationOutput, OpenAiConfig, OpenAiGenerator,
    TextGenerator,
};

const SYSTEM: &str = "Ты — маркетолог банка. Пиши короткие персональные предложения клиентам \
    на русском языке: вежливо, по делу, без выдуманных условий. Продукт: кредитная карта \
    «Свобода» с беспроцентным периодом 120 дней и кешбэком 5% в выбранной категории. Канал: \
    push-уведомление, не длиннее 200 символов.";

const MAX_TOKENS: u32 = 32;
/// The context the server is started with; one test sends a longer prompt.
const SERVER_CONTEXT: u32 = 2048;

fn required_file(var: &str, what: &str) -> PathBuf {
    let Some(path) = std::env::var_os(var) else {
        panic!(
            "{var} is not set. These tests run a real llama-cpp-python server on the real \
             model: run scripts/test.sh, which sets it ({what})."
        );
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "{var}={} is not a file ({what}); run scripts/test.sh",
        path.display()
    );
    path
}

/// llama-cpp-python's server as a child process, killed when dropped (also when a test fails).
struct LlamaCppPythonServer {
    child: Child,
    base_url: String,
    log: PathBuf,
}

impl LlamaCppPythonServer {
    async fn start(extra_args: &[&str]) -> LlamaCppPythonServer {
        let python = required_file(
            "OFFERFLOW_LLAMA_CPP_PYTHON",
            "the python scripts/llama-cpp-python.sh prints",
        );
        let model = required_file("OFFERFLOW_MODEL", "the path scripts/fetch-model.sh prints");
        let port = free_port();
        let log = std::env::temp_dir().join(format!("offerflow-llama-cpp-python-{port}.log"));
        let log_file = File::create(&log)
            .unwrap_or_else(|e| panic!("creating the server log {}: {e}", log.display()));
        let log_err = log_file
            .try_clone()
            .unwrap_or_else(|e| panic!("opening the server log {}: {e}", log.display()));
        let child = Command::new(&python)
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(&model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--n_ctx", &SERVER_CONTEXT.to_string()])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} -m llama_cpp.server: {e}", python.display()));
        let mut server = LlamaCppPythonServer {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_until_ready().await;
        server
    }

    async fn wait_until_ready(&mut self) {
        let client = reqwest::Client::new();
        let url = format!("{}/v1/models", self.base_url);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "llama-cpp-python's server exited with {status} before answering:\n{}",
                    self.log_tail()
                );
            }
            // Any answer means the model is loaded: the server builds its app after loading.
            // (With an API key, /v1/models answers 401.)
            if client.get(&url).send().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "llama-cpp-python's server did not answer {url} within 120 s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn generator(&self) -> OpenAiGenerator {
        OpenAiGenerator::new(OpenAiConfig::new(&self.base_url, "smollm2-135m"))
            .expect("a valid configuration")
    }
}

impl Drop for LlamaCppPythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A port nothing listens on right now (the OS picked it, then it was freed).
fn free_port() -> u16 {
    let listener = StdListener::bind("127.0.0.1:0").expect("binding a local port");
    listener.local_addr().expect("a bound address").port()
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

fn assert_usable(output: &GenerationOutput) {
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
    // Not at most MAX_TOKENS: llama-cpp-python goes on past max_tokens until a character split
    // between tokens is whole (Cyrillic often is), and counts those tokens too.
    assert!(output.completion_tokens > 0, "{output:?}");
}

#[tokio::test]
async fn two_chats_get_a_text_each_with_token_counts_from_llama_cpp_python() {
    let server = LlamaCppPythonServer::start(&[]).await;
    let generator = server.generator();
    assert_eq!(generator.model_name(), "smollm2-135m");

    let results = generator
        .generate(vec![
            offer("Анна, 34 года, часто путешествует", 1),
            offer("Игорь, 52 года, пенсионер", 2),
        ])
        .await;

    assert_eq!(results.len(), 2);
    for result in &results {
        assert_usable(ok(result));
    }
}

#[tokio::test]
async fn a_tiny_max_tokens_is_reported_as_cut_off() {
    let server = LlamaCppPythonServer::start(&[]).await;
    let mut input = offer(
        "Елена, 45 лет. Напиши очень длинное подробное письмо на три абзаца",
        9,
    );
    input.params.max_tokens = 2;

    let results = server.generator().generate(vec![input]).await;

    let output = ok(&results[0]);
    assert!(output.stopped_by_length, "{output:?}");
    // At least: the server may add a token or two to finish a split character.
    assert!(output.completion_tokens >= 2, "{output:?}");
    assert!(!output.text.is_empty(), "{output:?}");
}

#[tokio::test]
async fn the_same_seed_at_temperature_zero_gives_the_same_text() {
    let server = LlamaCppPythonServer::start(&[]).await;
    let generator = server.generator();
    let mut input = offer("Кирилл, 33 года, программист", 11);
    input.params.temperature = 0.0;
    // Another chat in between, so the second answer is not just the first one's cached state.
    let other = offer("Мария, 23 года, студентка", 3);

    let first = generator.generate(vec![input.clone()]).await;
    let between = generator.generate(vec![other]).await;
    let second = generator.generate(vec![input]).await;

    assert_usable(ok(&first[0]));
    assert_usable(ok(&between[0]));
    assert_eq!(ok(&first[0]).text, ok(&second[0]).text);
    assert_eq!(
        ok(&first[0]).completion_tokens,
        ok(&second[0]).completion_tokens
    );
}

#[tokio::test]
async fn a_prompt_longer_than_the_servers_context_fails_permanently_and_the_others_succeed() {
    let server = LlamaCppPythonServer::start(&[]).await;
    let too_long = offer(
        &"очень длинная история клиента со множеством подробностей ".repeat(400),
        1,
    );

    let results = server
        .generator()
        .generate(vec![
            offer("Анна, 34 года", 1),
            too_long,
            offer("Игорь, 52 года", 2),
        ])
        .await;

    assert_eq!(results.len(), 3);
    assert_usable(ok(&results[0]));
    match &results[1] {
        // The server's own explanation, and where it came from.
        Err(GenerationError::Permanent(message)) => {
            assert!(message.contains("400"), "{message}");
            assert!(message.contains(&server.base_url), "{message}");
            assert!(
                message.contains(&format!("context length is {SERVER_CONTEXT}")),
                "{message}"
            );
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_usable(ok(&results[2]));
}

#[tokio::test]
async fn a_wrong_api_key_fails_permanently_and_the_right_one_is_let_in() {
    let server = LlamaCppPythonServer::start(&["--api_key", "the-right-key"]).await;
    let config = |key: &str| OpenAiConfig {
        api_key: Some(key.to_owned()),
        ..OpenAiConfig::new(&server.base_url, "smollm2-135m")
    };
    let wrong = OpenAiGenerator::new(config("a-wrong-key")).expect("a valid configuration");
    let right = OpenAiGenerator::new(config("the-right-key")).expect("a valid configuration");

    let refused = wrong.generate(vec![offer("Анна", 1)]).await;
    let accepted = right.generate(vec![offer("Анна", 1)]).await;

    match &refused[0] {
        Err(GenerationError::Permanent(message)) => {
            assert!(message.contains("401"), "{message}")
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_usable(ok(&accepted[0]));
}

#[tokio::test]
async fn nothing_listening_is_transient_after_every_attempt() {
    let port = free_port();
    let base_url = format!("http://127.0.0.1:{port}");
    let generator = OpenAiGenerator::new(OpenAiConfig {
        max_attempts: 3,
        retry_backoff: Duration::from_millis(10),
        ..OpenAiConfig::new(&base_url, "m")
    })
    .expect("a valid configuration");

    let results = generator.generate(vec![offer("Анна", 1)]).await;

    match &results[0] {
        Err(GenerationError::Transient(message)) => {
            assert!(message.contains(&base_url), "{message}");
            assert!(message.contains("could not connect"), "{message}");
            assert!(message.contains("attempt 3 of 3"), "{message}");
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_sampling_parameters_fail_permanently_without_a_request() {
    // Nothing listens there: a request would come back as a connection error, not this.
    let generator = OpenAiGenerator::new(OpenAiConfig::new(
        format!("http://127.0.0.1:{}", free_port()),
        "m",
    ))
    .expect("a valid configuration");
    let mut input = offer("Анна", 1);
    input.params.max_tokens = 0;

    let results = generator.generate(vec![input]).await;

    assert!(
        matches!(&results[0], Err(GenerationError::Permanent(m)) if m.contains("max_tokens")),
        "{results:?}"
    );
}

mod fake {
    //! A chat completions server that answers what the test tells it to, for error paths only.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use axum::Router;

    pub enum Reply {
        Answer {
            status: StatusCode,
            headers: Vec<(&'static str, String)>,
            body: String,
        },
        /// Keeps the request open and never answers.
        Hang,
    }

    impl Reply {
        pub fn status(status: u16, body: impl Into<String>) -> Reply {
            Reply::Answer {
                status: StatusCode::from_u16(status).expect("a valid status"),
                headers: Vec::new(),
                body: body.into(),
            }
        }

        /// A chat completion whose text is `text`.
        pub fn completion(text: &str) -> Reply {
            Reply::status(
                200,
                serde_json::json!({
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": format!(" {text}\n")},
                        "finish_reason": "stop"
                    }],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
                })
                .to_string(),
            )
        }
    }

    type Script = dyn Fn(usize, &serde_json::Value) -> Reply + Send + Sync;

    struct Shared {
        script: Box<Script>,
        requests: AtomicUsize,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
        seen: Mutex<Vec<(HeaderMap, serde_json::Value)>>,
    }

    pub struct FakeServer {
        pub base_url: String,
        shared: Arc<Shared>,
        task: tokio::task::JoinHandle<()>,
    }

    impl FakeServer {
        /// `script(n, request)` decides the answer to the `n`-th request (from 0).
        pub async fn start(
            script: impl Fn(usize, &serde_json::Value) -> Reply + Send + Sync + 'static,
        ) -> FakeServer {
            let shared = Arc::new(Shared {
                script: Box::new(script),
                requests: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                most_in_flight: AtomicUsize::new(0),
                seen: Mutex::new(Vec::new()),
            });
            let app = Router::new()
                .route("/v1/chat/completions", post(answer))
                .with_state(Arc::clone(&shared));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("binding a local port");
            let addr = listener.local_addr().expect("a bound address");
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            FakeServer {
                base_url: format!("http://{addr}"),
                shared,
                task,
            }
        }

        pub fn requests(&self) -> usize {
            self.shared.requests.load(Ordering::SeqCst)
        }

        pub fn most_in_flight(&self) -> usize {
            self.shared.most_in_flight.load(Ordering::SeqCst)
        }

        pub fn seen(&self) -> Vec<(HeaderMap, serde_json::Value)> {
            self.shared.seen.lock().expect("not poisoned").clone()
        }
    }

    impl Drop for FakeServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    struct InFlight<'a>(&'a AtomicUsize);

    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    async fn answer(
        State(shared): State<Arc<Shared>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let n = shared.requests.fetch_add(1, Ordering::SeqCst);
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _in_flight = InFlight(&shared.in_flight);
        shared.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let request: serde_json::Value =
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        shared
            .seen
            .lock()
            .expect("not poisoned")
            .push((headers, request.clone()));
        let reply = (shared.script)(n, &request);
        // Requests at once are counted while they wait, as a slow real server keeps them.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        match reply {
            Reply::Answer {
                status,
                headers,
                body,
            } => {
                let mut response = (status, body).into_response();
                for (name, value) in headers {
                    if let Ok(value) = value.parse() {
                        response.headers_mut().insert(name, value);
                    }
                }
                response
            }
            Reply::Hang => std::future::pending().await,
        }
    }
}

use fake::{FakeServer, Reply};

fn fake_generator(server: &FakeServer, max_attempts: u32) -> OpenAiGenerator {
    OpenAiGenerator::new(OpenAiConfig {
        max_attempts,
        retry_backoff: Duration::from_millis(10),
        request_timeout: Duration::from_secs(5),
        ..OpenAiConfig::new(&server.base_url, "fake-model")
    })
    .expect("a valid configuration")
}

#[tokio::test]
async fn a_server_error_is_retried_and_the_next_answer_is_used() {
    let server = FakeServer::start(|n, _| match n {
        0 => Reply::status(500, r#"{"error":{"message":"out of memory"}}"#),
        _ => Reply::completion("Ваше предложение"),
    })
    .await;
    let generator = OpenAiGenerator::new(OpenAiConfig {
        api_key: Some("secret".into()),
        max_attempts: 4,
        retry_backoff: Duration::from_millis(10),
        ..OpenAiConfig::new(&server.base_url, "fake-model")
    })
    .expect("a valid configuration");
    let mut input = offer("Анна", 17);
    input.params.temperature = 0.25;

    let results = generator.generate(vec![input]).await;

    let output = ok(&results[0]);
    assert_eq!(output.text, "Ваше предложение");
    assert_eq!((output.prompt_tokens, output.completion_tokens), (12, 3));
    assert!(!output.stopped_by_length);
    assert_eq!(server.requests(), 2);
    // What went out, as the server saw it (the real server cannot show it).
    let (headers, body) = server.seen().pop().expect("a request was seen");
    assert_eq!(
        headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer secret")
    );
    assert_eq!(body["model"], "fake-model");
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][0]["content"], SYSTEM);
    assert_eq!(body["messages"][1]["role"], "user");
    assert_eq!(body["temperature"], 0.25);
    assert_eq!(
        body["top_p"].as_f64().map(|p| (p * 100.0).round()),
        Some(90.0)
    );
    assert_eq!(body["max_tokens"], MAX_TOKENS);
    assert_eq!(body["seed"], 17);
    assert_eq!(body["stream"], false);
}

#[tokio::test]
async fn too_many_requests_waits_as_long_as_retry_after_says() {
    let server = FakeServer::start(|n, _| match n {
        0 => Reply::Answer {
            status: axum::http::StatusCode::TOO_MANY_REQUESTS,
            headers: vec![("retry-after", "1".into())],
            body: r#"{"error":{"message":"slow down"}}"#.into(),
        },
        _ => Reply::completion("Готово"),
    })
    .await;
    // The backoff alone would wait 10 ms.
    let generator = fake_generator(&server, 4);

    let started = Instant::now();
    let results = generator.generate(vec![offer("Анна", 1)]).await;

    assert_eq!(ok(&results[0]).text, "Готово");
    assert_eq!(server.requests(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried after {:?}, before Retry-After's 1 s",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_transiently_after_every_attempt() {
    let server = FakeServer::start(|_, _| Reply::Hang).await;
    let generator = OpenAiGenerator::new(OpenAiConfig {
        max_attempts: 3,
        retry_backoff: Duration::from_millis(10),
        request_timeout: Duration::from_millis(300),
        ..OpenAiConfig::new(&server.base_url, "fake-model")
    })
    .expect("a valid configuration");

    let results = generator.generate(vec![offer("Анна", 1)]).await;

    match &results[0] {
        Err(GenerationError::Transient(message)) => {
            assert!(message.contains("timed out"), "{message}");
            assert!(message.contains(&server.base_url), "{message}");
            assert!(message.contains("attempt 3 of 3"), "{message}");
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn a_bad_request_fails_permanently_with_the_servers_message_and_is_not_retried() {
    let server = FakeServer::start(|_, _| {
        Reply::status(
            400,
            r#"{"error":{"message":"'temperature' is out of range","type":"invalid_request_error"}}"#,
        )
    })
    .await;
    let generator = fake_generator(&server, 4);

    let results = generator.generate(vec![offer("Анна", 1)]).await;

    match &results[0] {
        Err(GenerationError::Permanent(message)) => {
            assert!(
                message.contains("'temperature' is out of range"),
                "{message}"
            );
            assert!(message.contains("400 Bad Request"), "{message}");
            assert!(message.contains(&server.base_url), "{message}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn an_answer_that_is_not_a_chat_completion_is_transient_after_every_attempt() {
    for (body, expected) in [
        ("<html>proxy error", "not a chat completion"),
        (r#"{"choices":[]}"#, "no choices"),
        (
            r#"{"choices":[{"message":{"role":"assistant"}}]}"#,
            "no message content",
        ),
    ] {
        let server = FakeServer::start(move |_, _| Reply::status(200, body)).await;
        let generator = fake_generator(&server, 2);

        let results = generator.generate(vec![offer("Анна", 1)]).await;

        match &results[0] {
            Err(GenerationError::Transient(message)) => {
                assert!(message.contains(expected), "{body}: {message}");
                assert!(message.contains("attempt 2 of 2"), "{body}: {message}");
            }
            other => panic!("{body}: expected a transient error, got {other:?}"),
        }
        assert_eq!(server.requests(), 2, "{body}");
    }
}

#[tokio::test]
async fn inputs_go_out_together_up_to_the_concurrency_and_come_back_in_order() {
    // Answers with the client's line, and refuses one client, so order and isolation show.
    let server = FakeServer::start(|_, request| {
        let user = request["messages"][1]["content"].as_str().unwrap_or("");
        if user.contains("отказ") {
            Reply::status(422, r#"{"detail":"refused"}"#)
        } else {
            Reply::completion(user)
        }
    })
    .await;
    let generator = OpenAiGenerator::new(OpenAiConfig {
        concurrency: 3,
        ..OpenAiConfig::new(&server.base_url, "fake-model")
    })
    .expect("a valid configuration");
    let clients: Vec<String> = (0..9)
        .map(|i| {
            if i == 4 {
                "отказ".to_owned()
            } else {
                format!("клиент {i}")
            }
        })
        .collect();

    let results = generator
        .generate(clients.iter().map(|c| offer(c, 1)).collect())
        .await;

    assert_eq!(results.len(), clients.len());
    for (i, (result, client)) in results.iter().zip(&clients).enumerate() {
        if i == 4 {
            assert!(
                matches!(result, Err(GenerationError::Permanent(m)) if m.contains("refused")),
                "{result:?}"
            );
        } else {
            assert!(ok(result).text.contains(client.as_str()), "{i}: {result:?}");
        }
    }
    assert_eq!(server.requests(), clients.len());
    assert_eq!(server.most_in_flight(), 3);
}
