//! Any OpenAI-compatible chat completions server: llama.cpp's `llama-server`, llama-cpp-python's
//! server, vLLM, Ollama.
//!
//! Every input is one `POST {base_url}/v1/chat/completions`. The server does the batching, so
//! the inputs of a call go out side by side, at most `concurrency` at a time for the whole
//! generator (not per call): a server has a fixed number of slots, and requests beyond them
//! only wait in its queue while their timeouts run.
//!
//! A failure the server may get over (5xx, 429, a timeout, a refused or broken connection, an
//! answer that is not a chat completion) is retried with exponential backoff and jitter, up to
//! `max_attempts`, and then reported as [`GenerationError::Transient`]. Any other 4xx means the
//! request itself is wrong (a prompt longer than the context, an unknown model, a bad key), so
//! it fails at once as [`GenerationError::Permanent`] with the server's own message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rand::Rng as _;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::backend::{GenerationError, GenerationInput, GenerationOutput, TextGenerator};

/// Where the server is and how to talk to it. `OpenAiConfig::new(base_url, model)` fills in
/// the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiConfig {
    /// The server's root, e.g. `http://127.0.0.1:8080`; a trailing `/v1` is accepted too.
    pub base_url: String,
    /// Sent as `model` and recorded with every text. Servers that serve one model (llama.cpp,
    /// llama-cpp-python) accept any name; vLLM and Ollama need the name they know it by.
    pub model: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
    /// For one request, from connecting to the last byte of the answer. A whole text is
    /// generated within one request, so this must cover the longest generation.
    pub request_timeout: Duration,
    /// Tries per input, the first included; at least 1.
    pub max_attempts: u32,
    /// Requests in flight at once from this generator, across all calls; at least 1.
    pub concurrency: usize,
    /// The wait before the first retry; it doubles with each further one (up to 30 s), and
    /// each wait is drawn between half of it and all of it so that inputs failed together do
    /// not come back together.
    pub retry_backoff: Duration,
}

/// A server's `Retry-After` is honoured up to this; a longer one would hold the input for
/// longer than the reactor should wait before trying it again itself.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How much of a body that is not what was expected goes into an error message.
const BODY_EXCERPT_CHARS: usize = 300;

impl OpenAiConfig {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            request_timeout: Duration::from_secs(120),
            max_attempts: 4,
            concurrency: 4,
            retry_backoff: Duration::from_millis(500),
        }
    }

    fn endpoint(&self) -> anyhow::Result<Url> {
        let base = self.base_url.trim().trim_end_matches('/');
        // Clients of OpenAI's own API are usually given a base URL that ends in /v1.
        let base = base.strip_suffix("/v1").unwrap_or(base);
        let url = format!("{base}/v1/chat/completions");
        let parsed = Url::parse(&url).with_context(|| format!("base_url {:?}", self.base_url))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!(
                "base_url {:?} must be an http:// or https:// URL",
                self.base_url
            );
        }
        Ok(parsed)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.model.trim().is_empty() {
            bail!("model must name the model");
        }
        if self.max_attempts == 0 {
            bail!("max_attempts must be at least 1");
        }
        if self.concurrency == 0 {
            bail!("concurrency must be at least 1");
        }
        if self.request_timeout.is_zero() {
            bail!("request_timeout must be above zero");
        }
        Ok(())
    }
}

/// A `TextGenerator` that sends each input to an OpenAI-compatible chat completions server.
pub struct OpenAiGenerator {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    url: Url,
    config: OpenAiConfig,
    slots: Semaphore,
}

impl OpenAiGenerator {
    /// Checks the configuration and builds the HTTP client; does not contact the server.
    pub fn new(config: OpenAiConfig) -> anyhow::Result<Self> {
        config
            .validate()
            .context("invalid OpenAI-compatible backend configuration")?;
        let url = config
            .endpoint()
            .context("invalid OpenAI-compatible backend configuration")?;
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .context("building the HTTP client for the OpenAI-compatible backend")?;
        Ok(OpenAiGenerator {
            inner: Arc::new(Inner {
                client,
                url,
                slots: Semaphore::new(config.concurrency),
                config,
            }),
        })
    }
}

#[async_trait::async_trait]
impl TextGenerator for OpenAiGenerator {
    fn model_name(&self) -> String {
        self.inner.config.model.clone()
    }

    fn parallelism(&self) -> usize {
        self.inner.config.concurrency
    }

    async fn generate(
        &self,
        inputs: Vec<GenerationInput>,
    ) -> Vec<Result<GenerationOutput, GenerationError>> {
        let count = inputs.len();
        // Tasks rather than futures polled here, so the answers are parsed on every worker
        // thread; dropping the set (a caller that gives up) aborts the requests.
        let mut tasks = JoinSet::new();
        for (index, input) in inputs.into_iter().enumerate() {
            let inner = Arc::clone(&self.inner);
            tasks.spawn(async move { (index, inner.generate_one(input).await) });
        }
        let mut results: Vec<Option<Result<GenerationOutput, GenerationError>>> =
            (0..count).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, result)) => {
                    if let Some(place) = results.get_mut(index) {
                        *place = Some(result);
                    }
                }
                Err(e) => tracing::error!(error = %e, "an OpenAI-compatible request task failed"),
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(GenerationError::Transient(
                        "the request task for this input failed".to_owned(),
                    ))
                })
            })
            .collect()
    }
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<RequestMessage<'a>>,
    temperature: f32,
    top_p: f32,
    max_tokens: u32,
    seed: u32,
    stream: bool,
}

#[derive(Serialize)]
struct RequestMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Deserialize)]
struct ChatCompletion {
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Option<AnswerMessage>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct AnswerMessage {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
}

/// Why one attempt failed, and whether another may succeed.
enum AttemptError {
    Retry {
        message: String,
        retry_after: Option<Duration>,
    },
    Permanent(String),
}

impl Inner {
    async fn generate_one(
        &self,
        input: GenerationInput,
    ) -> Result<GenerationOutput, GenerationError> {
        // The same checks as the in-process backend, so both refuse the same inputs.
        input
            .params
            .validate()
            .map_err(|e| GenerationError::Permanent(format!("sampling parameters: {e}")))?;
        if input.messages.is_empty() {
            return Err(GenerationError::Permanent("there are no messages".into()));
        }
        let request = ChatRequest {
            model: &self.config.model,
            messages: input
                .messages
                .iter()
                .map(|m| RequestMessage {
                    role: m.role.as_str(),
                    content: &m.content,
                })
                .collect(),
            temperature: input.params.temperature,
            top_p: input.params.top_p,
            max_tokens: input.params.max_tokens,
            seed: input.params.seed,
            stream: false,
        };

        let attempts = self.config.max_attempts;
        let mut attempt = 1;
        loop {
            let outcome = {
                // Held for the request only, not while waiting to retry.
                let _slot = self.slots.acquire().await.map_err(|_| {
                    GenerationError::Transient("the generator is shutting down".into())
                })?;
                self.attempt(&request).await
            };
            let (message, retry_after) = match outcome {
                Ok(output) => return Ok(output),
                Err(AttemptError::Permanent(message)) => {
                    return Err(GenerationError::Permanent(format!(
                        "POST {}: {message}",
                        self.url
                    )))
                }
                Err(AttemptError::Retry {
                    message,
                    retry_after,
                }) => (message, retry_after),
            };
            if attempt >= attempts {
                return Err(GenerationError::Transient(format!(
                    "POST {}: {message} (attempt {attempt} of {attempts})",
                    self.url
                )));
            }
            let wait = retry_after
                .map(|after| after.min(MAX_RETRY_AFTER))
                .unwrap_or_else(|| self.backoff(attempt));
            tracing::warn!(
                url = %self.url,
                attempt,
                max_attempts = attempts,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %message,
                "chat completion failed; retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// The wait after the `attempt`-th failure: doubling from `retry_backoff`, drawn between
    /// half and all of that.
    fn backoff(&self, attempt: u32) -> Duration {
        let doubled = self
            .config
            .retry_backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(MAX_BACKOFF);
        let half = doubled / 2;
        half + half.mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    async fn attempt(&self, request: &ChatRequest<'_>) -> Result<GenerationOutput, AttemptError> {
        let started = Instant::now();
        let mut builder = self.client.post(self.url.clone()).json(request);
        if let Some(key) = &self.config.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| transport_error("sending", &e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error("reading the answer", &e))?;

        if status.is_success() {
            return parse_completion(&body, started.elapsed()).map_err(|message| {
                AttemptError::Retry {
                    message: format!("{status}, but {message}"),
                    retry_after: None,
                }
            });
        }
        let message = format!("{status}: {}", server_message(&body));
        if is_retryable(status) {
            Err(AttemptError::Retry {
                message,
                retry_after,
            })
        } else {
            Err(AttemptError::Permanent(message))
        }
    }
}

/// 429 and 5xx are the server's own state; 408 is a timeout on its side. Any other 4xx is about
/// the request, which will not change. A success status is handled before this.
fn is_retryable(status: StatusCode) -> bool {
    !status.is_client_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

fn transport_error(doing: &str, e: &reqwest::Error) -> AttemptError {
    // reqwest's Display leaves the cause (refused, reset, DNS) to the source chain.
    let mut message = if e.is_timeout() {
        format!("{doing}: timed out")
    } else if e.is_connect() {
        format!("{doing}: could not connect")
    } else {
        format!("{doing}: {e}")
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    if e.is_builder() {
        AttemptError::Permanent(message)
    } else {
        AttemptError::Retry {
            message,
            retry_after: None,
        }
    }
}

/// Only the delay-seconds form; an HTTP date is rare from these servers and falls back to the
/// backoff.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let seconds: f64 = value.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

fn parse_completion(body: &[u8], elapsed: Duration) -> Result<GenerationOutput, String> {
    let completion: ChatCompletion = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the answer is not a chat completion ({e}): {}",
            excerpt(&String::from_utf8_lossy(body))
        )
    })?;
    let Some(choice) = completion.choices.into_iter().next() else {
        return Err(format!(
            "the answer has no choices: {}",
            excerpt(&String::from_utf8_lossy(body))
        ));
    };
    let Some(text) = choice.message.and_then(|m| m.content) else {
        return Err(format!(
            "the answer's first choice has no message content: {}",
            excerpt(&String::from_utf8_lossy(body))
        ));
    };
    let usage = completion.usage;
    Ok(GenerationOutput {
        text: text.trim().to_owned(),
        prompt_tokens: usage.as_ref().and_then(|u| u.prompt_tokens).unwrap_or(0),
        completion_tokens: usage
            .as_ref()
            .and_then(|u| u.completion_tokens)
            .unwrap_or(0),
        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        stopped_by_length: choice.finish_reason.as_deref() == Some("length"),
    })
}

/// The server's explanation: OpenAI's `{"error": {"message": …}}`, the `{"error": "…"}` some
/// servers send, FastAPI's `{"detail": …}`, or else the start of the body.
fn server_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return excerpt(&text);
    };
    let found = json
        .pointer("/error/message")
        .or_else(|| json.get("error"))
        .or_else(|| json.get("detail"))
        .or_else(|| json.get("message"));
    match found {
        Some(serde_json::Value::String(message)) => message.clone(),
        Some(other) => excerpt(&other.to_string()),
        None => excerpt(&text),
    }
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_under_v1_whether_or_not_the_base_url_names_it() {
        for base in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:8080/v1",
            "http://127.0.0.1:8080/v1/",
        ] {
            let url = OpenAiConfig::new(base, "m")
                .endpoint()
                .map(|u| u.to_string());
            assert_eq!(
                url.ok().as_deref(),
                Some("http://127.0.0.1:8080/v1/chat/completions"),
                "{base}"
            );
        }
    }

    #[test]
    fn an_unusable_configuration_is_refused_with_the_reason() {
        let cases = [
            (OpenAiConfig::new("not a url", "m"), "base_url"),
            (OpenAiConfig::new("ftp://host", "m"), "http://"),
            (OpenAiConfig::new("http://host", " "), "model"),
            (
                OpenAiConfig {
                    max_attempts: 0,
                    ..OpenAiConfig::new("http://host", "m")
                },
                "max_attempts",
            ),
            (
                OpenAiConfig {
                    concurrency: 0,
                    ..OpenAiConfig::new("http://host", "m")
                },
                "concurrency",
            ),
            (
                OpenAiConfig {
                    request_timeout: Duration::ZERO,
                    ..OpenAiConfig::new("http://host", "m")
                },
                "request_timeout",
            ),
        ];
        for (config, field) in cases {
            match OpenAiGenerator::new(config.clone()) {
                Ok(_) => panic!("{config:?} was accepted"),
                Err(e) => assert!(format!("{e:#}").contains(field), "{config:?}: {e:#}"),
            }
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_ignores_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "2".parse().expect("a header value"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT"
                .parse()
                .expect("a header value"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn backoff_doubles_within_its_jitter_and_stops_growing() {
        let generator =
            OpenAiGenerator::new(OpenAiConfig::new("http://host", "m")).expect("a valid config");
        let inner = &generator.inner;
        for (attempt, full) in [(1, 500), (2, 1000), (3, 2000), (20, 30_000)] {
            let wait = inner.backoff(attempt).as_millis();
            assert!(
                (full / 2..=full).contains(&wait),
                "attempt {attempt}: {wait} ms"
            );
        }
    }

    #[test]
    fn the_servers_message_is_found_in_the_usual_shapes() {
        assert_eq!(
            server_message(br#"{"error":{"message":"too long","type":"invalid_request_error"}}"#),
            "too long"
        );
        assert_eq!(
            server_message(br#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(
            server_message(br#"{"detail":"Invalid API Key"}"#),
            "Invalid API Key"
        );
        assert_eq!(
            server_message(b"<html>Bad Gateway</html>"),
            "<html>Bad Gateway</html>"
        );
        assert_eq!(server_message(b""), "(empty body)");
        assert!(server_message("x".repeat(1000).as_bytes()).ends_with('…'));
    }

    #[test]
    fn a_completion_without_usage_counts_no_tokens_and_length_means_cut_off() {
        let output = parse_completion(
            br#"{"choices":[{"message":{"role":"assistant","content":"  Hi \n"},"finish_reason":"length"}]}"#,
            Duration::from_millis(7),
        )
        .expect("a completion");
        assert_eq!(
            output,
            GenerationOutput {
                text: "Hi".into(),
                prompt_tokens: 0,
                completion_tokens: 0,
                duration_ms: 7,
                stopped_by_length: true,
            }
        );
    }
}
