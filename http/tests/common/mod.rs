//! A real Offerflow server for tests: its own fresh database on the test cluster (the one
//! `scripts/test.sh` starts, given as OFFERFLOW_TEST_DATABASE_URL), served over real HTTP on a
//! free loopback port.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use offerflow_http::generation::GenerationSettings;
use offerflow_http::routes::users::{register_user, NewUser};
use offerflow_http::seed::{seed_catalog, system_admin};
use offerflow_http::server::{build_state, cli_metadata, serve_until, StateOptions};
use offerflow_http::state::{AppConfig, AppState};
use offerflow_http::worker::WorkerSetup;
use projections::engine::EngineConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN_EMAIL: &str = "admin@bank.test";
pub const PASSWORD: &str = "correct horse battery";

fn cluster_url() -> String {
    std::env::var("OFFERFLOW_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty database of its own.
pub async fn fresh_database() -> (String, PgPool) {
    let admin_url = cluster_url();
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .expect("test cluster reachable");
    let name = format!("offerflow_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin_url);
    let url = format!("{base}/{name}");
    let pool = offerflow_http::server::pool_options(30)
        .connect(&url)
        .await
        .expect("connect to test database");
    (url, pool)
}

pub async fn state_for(pool: PgPool) -> AppState {
    state_with_worker(pool, None, GenerationSettings::default()).await
}

/// A state whose `serve` also runs `worker`, with these generation settings.
pub async fn state_with_worker(
    pool: PgPool,
    worker: Option<WorkerSetup>,
    generation: GenerationSettings,
) -> AppState {
    build_state(pool, test_options(worker, generation))
        .await
        .expect("state builds")
}

/// The tests' server settings: a worker if given, quick polling, a fixed signing key.
pub fn test_options(worker: Option<WorkerSetup>, generation: GenerationSettings) -> StateOptions {
    StateOptions {
        worker,
        generation,
        config: AppConfig {
            consistency_wait_ms: 10_000,
            ..AppConfig::default()
        },
        jwt_secret: Some("a test signing key that is long enough".into()),
        engine: EngineConfig {
            batch_size: 500,
            poll_interval: Duration::from_millis(100),
            ..EngineConfig::default()
        },
        ..StateOptions::default()
    }
}

pub struct TestServer {
    pub base: String,
    pub url: String,
    pub pool: PgPool,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// A server on a fresh database with the catalog seeded and one admin.
    pub async fn start() -> TestServer {
        TestServer::start_with_worker(None).await
    }

    /// The same, with a generation worker running inside the server.
    pub async fn start_with_worker(worker: Option<WorkerSetup>) -> TestServer {
        TestServer::start_with(worker, GenerationSettings::default()).await
    }

    /// The same, with the generation settings under test.
    pub async fn start_with(
        worker: Option<WorkerSetup>,
        generation: GenerationSettings,
    ) -> TestServer {
        TestServer::start_with_options(test_options(worker, generation)).await
    }

    /// A server with these settings on a fresh database, the catalog seeded and one admin.
    pub async fn start_with_options(options: StateOptions) -> TestServer {
        let (url, pool) = fresh_database().await;
        let server = TestServer::on_with_options(url, pool, options).await;
        seed_catalog(&server.state, &cli_metadata())
            .await
            .expect("seed");
        let body = NewUser {
            email: ADMIN_EMAIL.into(),
            password: PASSWORD.into(),
            name: "Admin".into(),
            position: String::new(),
            subdivision: String::new(),
            is_admin: true,
        };
        register_user(&server.state, &cli_metadata(), system_admin(), body)
            .await
            .expect("admin");
        // Hand the server over with its read models showing the setup.
        let latest = server.latest_write().await;
        let token = latest["consistency_token"]
            .as_str()
            .expect("a setup event")
            .parse()
            .expect("token");
        assert!(server
            .state
            .engine
            .wait_for(token, Duration::from_secs(10))
            .await
            .expect("wait"));
        server
    }

    /// A server on an existing database (for restarts).
    pub async fn on(url: String, pool: PgPool) -> TestServer {
        TestServer::on_with_worker(url, pool, None).await
    }

    pub async fn on_with_worker(
        url: String,
        pool: PgPool,
        worker: Option<WorkerSetup>,
    ) -> TestServer {
        TestServer::on_with(url, pool, worker, GenerationSettings::default()).await
    }

    pub async fn on_with(
        url: String,
        pool: PgPool,
        worker: Option<WorkerSetup>,
        generation: GenerationSettings,
    ) -> TestServer {
        TestServer::on_with_options(url, pool, test_options(worker, generation)).await
    }

    /// A server on an existing database with these settings.
    pub async fn on_with_options(url: String, pool: PgPool, options: StateOptions) -> TestServer {
        let state = build_state(pool.clone(), options)
            .await
            .expect("state builds");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
        let serving = state.clone();
        let task = tokio::spawn(async move {
            serve_until(
                serving,
                "127.0.0.1:0".parse().expect("addr"),
                move |addr| {
                    let _ = addr_tx.send(addr);
                },
                async move {
                    let _ = stop_rx.await;
                },
            )
            .await
        });
        let addr = addr_rx.await.expect("server listens");
        TestServer {
            base: format!("http://{addr}"),
            url,
            pool,
            state,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// Stops serving and waits for the subscribers to stop.
    pub async fn stop(mut self) -> (String, PgPool) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran");
        }
        (self.url.clone(), self.pool.clone())
    }

    pub fn anonymous(&self) -> Client {
        Client {
            base: self.base.clone(),
            http: reqwest::Client::new(),
            token: None,
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> Client {
        let mut client = self.anonymous();
        let (status, body) = client
            .post(
                "/api/v1/auth/login",
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login of {email}: {body}");
        client.token = Some(
            body["access_token"]
                .as_str()
                .expect("access token")
                .to_string(),
        );
        client
    }

    pub async fn admin(&self) -> Client {
        self.login(ADMIN_EMAIL, PASSWORD).await
    }

    /// Creates a user through the API and signs them in.
    pub async fn user(&self, admin: &Client, email: &str) -> (uuid::Uuid, Client) {
        let (status, body) = admin
            .post(
                "/api/v1/users",
                json!({"email": email, "password": PASSWORD, "name": email}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create {email}: {body}");
        let id = body["id"].as_str().expect("id").parse().expect("uuid");
        (id, self.login(email, PASSWORD).await)
    }
}

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

impl Client {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        consistency: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(token) = consistency {
            request = request.header("X-Consistency-Token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        // An event stream never ends: its status is the answer.
        let streaming = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if streaming {
            return (status, Value::Null);
        }
        let text = response.text().await.expect("body read");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None, None).await
    }

    /// GET that first waits for the read models to include `after` (a command's answer).
    pub async fn get_after(&self, path: &str, after: &Value) -> (StatusCode, Value) {
        let token = after["consistency_token"].as_str();
        self.call(Method::GET, path, None, token).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body), None).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body), None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body), None).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None, None).await
    }
}

/// The id of a seeded catalog entry by key (`products` or `channels`).
pub async fn catalog_id(client: &Client, kind: &str, key: &str) -> String {
    let (status, body) = client
        .get(&format!("/api/v1/{kind}?q={key}&limit=500"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["key"] == key)
        .unwrap_or_else(|| panic!("no {kind} {key}"))["id"]
        .as_str()
        .expect("id")
        .to_string()
}

/// A project selling `product` with the SMS and EMAIL channels attached, managed by `manager`.
pub async fn project_with_channels(manager: &Client) -> (String, String, String) {
    let product = catalog_id(manager, "products", "CC").await;
    let sms = catalog_id(manager, "channels", "SMS").await;
    let email = catalog_id(manager, "channels", "EMAIL").await;
    let (status, body) = manager
        .post("/api/v1/projects", json!({"name": "Осенняя кампания", "product_id": product, "description": "Кэшбэк осенью"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let project = body["id"].as_str().expect("id").to_string();
    let (status, body) = manager
        .post(
            &format!("/api/v1/projects/{project}/channels"),
            json!({"channel_ids": [sms, email]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (project, sms, email)
}

pub fn client_data(n: usize) -> Value {
    json!({
        "client_data": {"gender": "1", "age": 30 + n, "reg_region_nm": "Республика Саха (Якутия)", "super_clust": "k. Без продукта"},
        "client_data_decoding": {
            "gender": "Пол клиента (0 муж, 1 жен)", "age": "Возраст Клиента",
            "reg_region_nm": "Регион", "super_clust": "Кластер клиента"
        }
    })
}

impl TestServer {
    /// A command-answer-like value whose `consistency_token` names the newest event in the log:
    /// `Client::get_after` with it sees every write made so far (the seeded catalog included).
    pub async fn latest_write(&self) -> Value {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT transaction_id::text, global_position FROM events ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .expect("newest event");
        let token = row.map(|(tx, pos)| format!("{tx}.{pos}"));
        json!({ "consistency_token": token })
    }
}

/// The real default model (`OFFERFLOW_MODEL`; scripts/test.sh sets it).
pub fn model_path() -> std::path::PathBuf {
    let Some(path) = std::env::var_os("OFFERFLOW_MODEL") else {
        panic!(
            "OFFERFLOW_MODEL is not set. These tests run the real model: run \
             scripts/fetch-model.sh and set OFFERFLOW_MODEL to the path it prints \
             (scripts/test.sh does both)."
        );
    };
    std::path::PathBuf::from(path)
}

/// The model in process, with `context_size` tokens per sequence.
pub fn llama(context_size: u32) -> std::sync::Arc<dyn inference_worker::TextGenerator> {
    let mut config = inference_worker::LlamaConfig::new(model_path());
    config.context_size = context_size;
    std::sync::Arc::new(inference_worker::LlamaGenerator::load(config).expect("the model loads"))
}

/// A worker that retries quickly, so that tests of retries and dead jobs take seconds.
pub fn worker(
    generator: std::sync::Arc<dyn inference_worker::TextGenerator>,
    max_attempts: u32,
) -> WorkerSetup {
    let mut reactor =
        inference_worker::ReactorConfig::new(format!("test-worker-{}", uuid::Uuid::new_v4()));
    reactor.max_attempts = max_attempts;
    reactor.lease = Duration::from_secs(20);
    reactor.backoff = inference_worker::Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_millis(400),
    };
    reactor.poll_interval = Duration::from_millis(200);
    WorkerSetup { generator, reactor }
}
