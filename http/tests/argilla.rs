//! The Argilla export against a real argilla-server 2.8.0 (started per test on a free port, with
//! its own home directory and Redis): the dataset's setup, records matching the log, replays
//! without duplicates, an outage, a dead-lettered record and its requeue, and reviews coming
//! back as `MessageReviewed` events.
//!
//! Needs `OFFERFLOW_ARGILLA_PYTHON` (the python `scripts/argilla-server.sh` prints;
//! scripts/test.sh sets it), `redis-server` and the test cluster. The offers are recorded the
//! way a worker records them (`CompleteGeneration` on the bus), so no model runs here.
mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{client_data, project_with_channels, test_options, Client, TestServer};
use domain::client_request::ClientRequestCommand;
use domain::metadata::{Actor, EventMetadata};
use inference_worker::argilla::{ArgillaConfig, SUBSCRIBER};
use offerflow_http::generation::GenerationSettings;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

const API_KEY: &str = "offerflow-test-owner-key";
const WORKSPACE: &str = "bank-reviews";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port()
}

/// A real argilla-server with its Redis, killed on drop.
struct Argilla {
    python: PathBuf,
    home: PathBuf,
    port: u16,
    redis_url: String,
    redis: Child,
    server: Option<Child>,
    http: reqwest::Client,
}

impl Argilla {
    async fn start() -> Argilla {
        let Some(python) = std::env::var_os("OFFERFLOW_ARGILLA_PYTHON") else {
            panic!(
                "OFFERFLOW_ARGILLA_PYTHON is not set. These tests run a real argilla-server: run \
                 scripts/argilla-server.sh and set OFFERFLOW_ARGILLA_PYTHON to the python it prints \
                 (scripts/test.sh does both)."
            );
        };
        let home = std::env::temp_dir().join(format!("offerflow-argilla-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&home).expect("argilla home");
        let redis_port = free_port();
        let redis = Command::new("redis-server")
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/setup-deps.sh installs it)");
        let mut argilla = Argilla {
            python: PathBuf::from(python),
            home,
            port: free_port(),
            redis_url: format!("redis://127.0.0.1:{redis_port}/0"),
            redis,
            server: None,
            http: reqwest::Client::new(),
        };
        for args in [
            vec!["-m", "argilla_server", "database", "migrate"],
            vec![
                "-m",
                "argilla_server",
                "database",
                "users",
                "create_default",
                "--api-key",
                API_KEY,
                "--password",
                "owner-password-1234",
            ],
        ] {
            let out = argilla
                .command()
                .args(&args)
                .output()
                .expect("argilla-server's CLI runs");
            assert!(
                out.status.success(),
                "argilla-server {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        argilla.run().await;
        argilla
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.python);
        command
            .env("ARGILLA_HOME_PATH", &self.home)
            .env("ARGILLA_REDIS_URL", &self.redis_url)
            .env("ARGILLA_SEARCH_ENGINE", "memory")
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
            .stdout(Stdio::null());
        command
    }

    /// Starts the server (again, on the same port and database) and waits until it answers.
    async fn run(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/argilla/serve.py");
        let child = self
            .command()
            .args([
                script,
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
            ])
            .stderr(Stdio::null())
            .spawn()
            .expect("argilla-server starts");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(response) = self.request(reqwest::Method::GET, "/me", None).await {
                if response.0.is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "argilla-server did not come up");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Kills the server process, as an outage would.
    fn kill(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn config(&self) -> ArgillaConfig {
        let mut config = ArgillaConfig::new(&self.url(), API_KEY, WORKSPACE);
        config.dataset_prefix = "offerflow-test-".into();
        config.sync_interval = Duration::from_millis(500);
        config.retry_backoff = Duration::from_millis(50);
        config.max_attempts = 3;
        config.request_timeout = Duration::from_secs(10);
        config
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Result<(StatusCode, Value)> {
        self.request_as(API_KEY, method, path, body).await
    }

    async fn request_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Result<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1{path}", self.url()))
            .header("X-Argilla-Api-Key", key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self
            .request(reqwest::Method::GET, path, None)
            .await
            .expect("argilla answers");
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// The Offerflow datasets of the test workspace.
    async fn datasets(&self) -> Vec<Value> {
        let body = self.get("/me/datasets").await;
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|d| {
                d["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("offerflow-test-"))
            })
            .cloned()
            .collect()
    }

    async fn records(&self, dataset_id: &str) -> Vec<Value> {
        let body = self
            .get(&format!(
                "/datasets/{dataset_id}/records?include=responses,suggestions&limit=1000"
            ))
            .await;
        body["items"].as_array().expect("items").clone()
    }

    /// Waits until the project's dataset holds `n` records, and returns them.
    async fn wait_for_records(&self, project: &str, n: usize) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let name = format!("offerflow-test-{project}");
        loop {
            let datasets = self.datasets().await;
            if let Some(dataset) = datasets.iter().find(|d| d["name"] == name.as_str()) {
                let records = self.records(dataset["id"].as_str().expect("id")).await;
                if records.len() >= n {
                    return (dataset.clone(), records);
                }
            }
            assert!(
                Instant::now() < deadline,
                "dataset {name} did not get {n} records"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Argilla {
    fn drop(&mut self) {
        self.kill();
        let _ = self.redis.kill();
        let _ = self.redis.wait();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

async fn server_for(argilla: &Argilla) -> TestServer {
    // The exporter's retries and refusals are logged: shown when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,sqlx=warn")
        .with_test_writer()
        .try_init();
    let mut options = test_options(None, GenerationSettings::default());
    options.argilla = Some(argilla.config());
    TestServer::start_with_options(options).await
}

/// Adds the clients numbered `clients` and asks for an offer for each; returns (request id,
/// generation id).
async fn ask_offers(
    client: &Client,
    project: &str,
    channel: &str,
    clients: std::ops::Range<usize>,
) -> Vec<(Uuid, Uuid)> {
    let mut asked = Vec::new();
    for i in clients {
        let (status, body) = client
            .post(
                &format!("/api/v1/projects/{project}/channels/{channel}/requests"),
                client_data(i),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let request: Uuid = body["id"].as_str().expect("id").parse().expect("uuid");
        let (status, body) = client
            .post(
                &format!("/api/v1/requests/{request}/generations"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let generation: Uuid = body["generation_id"]
            .as_str()
            .expect("generation id")
            .parse()
            .expect("uuid");
        asked.push((request, generation));
    }
    asked
}

/// Records an offer for the generation as a worker does; returns the message id.
async fn complete(server: &TestServer, request: Uuid, generation: Uuid, text: &str) -> Uuid {
    let message_id = domain::ids::offer_message_id(generation);
    let metadata = EventMetadata::new(Actor::Process("test-worker".into()), "argilla-test");
    server
        .state
        .bus
        .execute(
            &server.state.bus.requests,
            request,
            ClientRequestCommand::CompleteGeneration {
                generation_id: generation,
                message_id,
                text: text.into(),
                model: "SmolLM2-135M-Instruct".into(),
                prompt_tokens: 100,
                completion_tokens: 20,
                duration_ms: 500,
                flags: vec![],
            },
            &metadata,
        )
        .await
        .expect("the offer is recorded");
    message_id
}

async fn exporter_status(server: &TestServer) -> Value {
    let (_, ready) = server.anonymous().get("/ready").await;
    ready["subscribers"]
        .as_array()
        .expect("subscribers")
        .iter()
        .find(|s| s["name"] == SUBSCRIBER)
        .cloned()
        .expect("the exporter shows in /ready")
}

/// Waits until the exporter has passed every event in the log.
async fn wait_exporter_caught_up(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if exporter_status(server).await["events_behind"] == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the exporter did not catch up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn external_ids(records: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .map(|r| r["external_id"].as_str().expect("external id").to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[Uuid]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_export_sets_up_one_dataset_and_records_match_the_log_even_after_a_replay() {
    let argilla = Argilla::start().await;
    let server = server_for(&argilla).await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let asked = ask_offers(&admin, &project, &sms, 0..3).await;
    let mut messages = Vec::new();
    for (i, (request, generation)) in asked.iter().enumerate() {
        messages.push(
            complete(
                &server,
                *request,
                *generation,
                &format!("Оформите карту №{i}!"),
            )
            .await,
        );
    }
    // The in-app rating becomes a suggestion, the outcome a metadata value.
    // The rating finds the message in the read model: read after the offers were recorded.
    let after = server.latest_write().await;
    let (status, body) = admin
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/messages/{}/rating", messages[0]),
            Some(json!({"status": "revision"})),
            after["consistency_token"].as_str(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = admin
        .put(
            &format!("/api/v1/requests/{}/outcome", asked[1].0),
            json!({"success_type": "sold"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_exporter_caught_up(&server).await;

    let (dataset, records) = argilla.wait_for_records(&project, 3).await;
    assert_eq!(dataset["status"], "ready", "published: {dataset}");
    let workspaces = argilla.get("/me/workspaces").await;
    let workspace = workspaces["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|w| w["name"] == WORKSPACE)
        .expect("the configured workspace was created");
    assert_eq!(dataset["workspace_id"], workspace["id"]);
    let dataset_id = dataset["id"].as_str().expect("id");

    let fields = argilla.get(&format!("/datasets/{dataset_id}/fields")).await;
    let fields: HashMap<String, Value> = fields["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().expect("name").to_string(),
                f["settings"]["type"].clone(),
            )
        })
        .collect();
    assert_eq!(fields.len(), 2, "{fields:?}");
    assert_eq!(fields["prompt"], "chat");
    assert_eq!(fields["offer"], "text");

    let questions = argilla
        .get(&format!("/datasets/{dataset_id}/questions"))
        .await;
    let questions: HashMap<String, Value> = questions["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|q| (q["name"].as_str().expect("name").to_string(), q.clone()))
        .collect();
    assert_eq!(questions.len(), 3);
    let quality = &questions["quality"];
    assert_eq!(quality["required"], true);
    assert_eq!(quality["settings"]["type"], "label_selection");
    let labels: Vec<&str> = quality["settings"]["options"]
        .as_array()
        .expect("options")
        .iter()
        .map(|o| o["value"].as_str().expect("value"))
        .collect();
    assert_eq!(labels, ["ok", "error", "revision"]);
    assert_eq!(questions["corrected_text"]["settings"]["type"], "text");
    assert_eq!(questions["corrected_text"]["required"], false);
    assert_eq!(questions["rating"]["settings"]["type"], "rating");
    assert_eq!(questions["rating"]["required"], false);
    let ratings: Vec<i64> = questions["rating"]["settings"]["options"]
        .as_array()
        .expect("options")
        .iter()
        .map(|o| o["value"].as_i64().expect("value"))
        .collect();
    assert_eq!(ratings, [1, 2, 3, 4, 5]);

    let metadata = argilla
        .get(&format!("/me/datasets/{dataset_id}/metadata-properties"))
        .await;
    let names: BTreeSet<&str> = metadata["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "project",
            "product",
            "channel",
            "client_cluster",
            "prompt_version",
            "model",
            "outcome"
        ])
    );

    // Each record is the offer as the log has it.
    assert_eq!(external_ids(&records), sorted(&messages));
    for (i, message) in messages.iter().enumerate() {
        let record = records
            .iter()
            .find(|r| r["external_id"] == message.to_string().as_str())
            .expect("record");
        assert_eq!(record["fields"]["offer"], format!("Оформите карту №{i}!"));
        let (requested,): (Value,) = sqlx::query_as(
            "SELECT payload->'GenerationRequested' FROM events
              WHERE event_type = 'GenerationRequested' AND payload->'GenerationRequested'->>'generation_id' = $1",
        )
        .bind(asked[i].1.to_string())
        .fetch_one(&server.pool)
        .await
        .expect("the generation's messages");
        assert_eq!(
            record["fields"]["prompt"], requested["messages"],
            "the exact messages sent to the model"
        );
        let meta = &record["metadata"];
        assert_eq!(meta["project"], "Осенняя кампания");
        assert_eq!(meta["channel"].as_str().map(str::is_empty), Some(false));
        assert_ne!(
            meta["channel"],
            sms.as_str(),
            "the channel's name, not its id"
        );
        assert_eq!(meta["client_cluster"], "k. Без продукта");
        assert_eq!(
            meta["prompt_version"],
            requested["prompt_version"].to_string().as_str()
        );
        assert_eq!(meta["model"], "SmolLM2-135M-Instruct");
        assert_eq!(meta["outcome"], if i == 1 { "sold" } else { "undefined" });
        let suggestions = record["suggestions"].as_array().expect("suggestions");
        if i == 0 {
            assert_eq!(suggestions.len(), 1, "{record}");
            assert_eq!(suggestions[0]["value"], "revision");
            assert_eq!(suggestions[0]["question_id"], quality["id"]);
        } else {
            assert!(suggestions.is_empty(), "{record}");
        }
    }

    // Replaying the exporter from the start of the log updates the same records.
    server
        .state
        .engine
        .rebuild(SUBSCRIBER, |_| {})
        .await
        .expect("the exporter replays");
    wait_exporter_caught_up(&server).await;
    let datasets = argilla.datasets().await;
    assert_eq!(datasets.len(), 1, "never a second dataset: {datasets:?}");
    let records = argilla.records(dataset_id).await;
    assert_eq!(
        external_ids(&records),
        sorted(&messages),
        "no duplicates after the replay"
    );

    // A server started again (empty caches) finds the dataset instead of making another.
    let (url, pool) = server.stop().await;
    let mut options = test_options(None, GenerationSettings::default());
    options.argilla = Some(argilla.config());
    let server = TestServer::on_with_options(url, pool, options).await;
    let admin = server.admin().await;
    let more = ask_offers(&admin, &project, &sms, 10..11).await;
    let fourth = complete(&server, more[0].0, more[0].1, "Ещё одно предложение").await;
    wait_exporter_caught_up(&server).await;
    assert_eq!(argilla.datasets().await.len(), 1);
    let records = argilla.records(dataset_id).await;
    messages.push(fourth);
    assert_eq!(external_ids(&records), sorted(&messages));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offers_made_while_argilla_is_down_all_arrive_once_it_is_back() {
    let mut argilla = Argilla::start().await;
    let server = server_for(&argilla).await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let asked = ask_offers(&admin, &project, &sms, 0..5).await;
    let first = complete(&server, asked[0].0, asked[0].1, "До сбоя").await;
    wait_exporter_caught_up(&server).await;
    argilla.wait_for_records(&project, 1).await;

    argilla.kill();
    let mut messages = vec![first];
    for (request, generation) in &asked[1..] {
        messages.push(complete(&server, *request, *generation, "Во время сбоя").await);
    }
    // The exporter cannot pass the new offers: they wait in the log, not in a lost batch.
    // The API stays ready meanwhile; the exporter's lag shows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, ready) = server.anonymous().get("/ready").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an Argilla outage does not make Offerflow unready: {ready}"
    );
    let lagging = exporter_status(&server).await;
    assert!(
        lagging["events_behind"].as_i64().expect("behind") > 0,
        "{lagging}"
    );

    argilla.run().await;
    wait_exporter_caught_up(&server).await;
    let (_, records) = argilla.wait_for_records(&project, 5).await;
    assert_eq!(
        external_ids(&records),
        sorted(&messages),
        "every offer exactly once"
    );
    assert_eq!(argilla.datasets().await.len(), 1);
    let (status, dead) = admin.get("/api/v1/admin/argilla/dead-letters").await;
    assert_eq!(status, StatusCode::OK, "{dead}");
    assert_eq!(dead["total"], 0, "nothing dead-lettered: {dead}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_argilla_refuses_is_dead_lettered_and_requeued_once_the_cause_is_fixed() {
    let argilla = Argilla::start().await;
    let server = server_for(&argilla).await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let asked = ask_offers(&admin, &project, &sms, 0..3).await;
    let first = complete(&server, asked[0].0, asked[0].1, "Первое").await;
    wait_exporter_caught_up(&server).await;
    let (dataset, _) = argilla.wait_for_records(&project, 1).await;
    let dataset_id = dataset["id"].as_str().expect("id");

    // Someone removes the `outcome` metadata property in Argilla: the dataset accepts no
    // undeclared metadata, so every record carrying an outcome is refused with a 422.
    let properties = argilla
        .get(&format!("/me/datasets/{dataset_id}/metadata-properties"))
        .await;
    let outcome = properties["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["name"] == "outcome")
        .expect("outcome property")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (status, body) = argilla
        .request(
            reqwest::Method::DELETE,
            &format!("/metadata-properties/{outcome}"),
            None,
        )
        .await
        .expect("argilla answers");
    assert_eq!(status, StatusCode::OK, "{body}");

    let second = complete(&server, asked[1].0, asked[1].1, "Второе").await;
    let third = complete(&server, asked[2].0, asked[2].1, "Третье").await;
    // The exporter moves on past what Argilla refuses for good.
    wait_exporter_caught_up(&server).await;
    let (status, dead) = admin.get("/api/v1/admin/argilla/dead-letters").await;
    assert_eq!(status, StatusCode::OK, "{dead}");
    assert_eq!(dead["total"], 2, "{dead}");
    // The status an admin sees says where the export goes, that it is caught up, and that two
    // messages wait.
    let (status, export) = admin.get("/api/v1/admin/argilla/status").await;
    assert_eq!(status, StatusCode::OK, "{export}");
    assert_eq!(export["configured"], true, "{export}");
    assert_eq!(export["url"], argilla.url().as_str(), "{export}");
    assert_eq!(export["events_behind"], 0, "{export}");
    assert_eq!(export["dead_letters"], 2, "{export}");
    let mut dead_ids: Vec<Uuid> = dead["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| {
            assert_eq!(d["status_code"], 422, "{d}");
            assert_eq!(d["project_id"], project.as_str());
            assert!(
                d["error"].as_str().expect("error").contains("outcome"),
                "{d}"
            );
            d["message_id"].as_str().expect("id").parse().expect("uuid")
        })
        .collect();
    dead_ids.sort();
    let mut expected = vec![second, third];
    expected.sort();
    assert_eq!(dead_ids, expected);
    assert_eq!(
        external_ids(&argilla.records(dataset_id).await),
        sorted(&[first])
    );

    // Requeueing an unknown message is a 404; a user may not requeue.
    let (status, _) = admin
        .post(
            &format!(
                "/api/v1/admin/argilla/dead-letters/{}/requeue",
                Uuid::new_v4()
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, user) = server.user(&admin, "performer@bank.test").await;
    let (status, _) = user
        .post(
            &format!("/api/v1/admin/argilla/dead-letters/{second}/requeue"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The cause is fixed in Argilla; the admin requeues both and they arrive.
    let (status, body) = argilla
        .request(
            reqwest::Method::POST,
            &format!("/datasets/{dataset_id}/metadata-properties"),
            Some(json!({"name": "outcome", "title": "Outcome", "settings": {"type": "terms"}})),
        )
        .await
        .expect("argilla answers");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for message in [second, third] {
        let (status, body) = admin
            .post(
                &format!("/api/v1/admin/argilla/dead-letters/{message}/requeue"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert!(body["requeued_at"].is_string(), "{body}");
    }
    let (_, records) = argilla.wait_for_records(&project, 3).await;
    assert_eq!(external_ids(&records), sorted(&[first, second, third]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, dead) = admin.get("/api/v1/admin/argilla/dead-letters").await;
        if dead["total"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the requeued letters stay: {dead}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_response_submitted_in_argilla_is_recorded_once_and_shows_in_the_thread() {
    let argilla = Argilla::start().await;
    let server = server_for(&argilla).await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let asked = ask_offers(&admin, &project, &sms, 0..1).await;
    let (request, generation) = asked[0];
    let message = complete(&server, request, generation, "Кэшбэк 5% на всё").await;
    wait_exporter_caught_up(&server).await;
    let (_, records) = argilla.wait_for_records(&project, 1).await;
    let record_id = records[0]["id"].as_str().expect("record id").to_string();

    // An annotator of the workspace answers, through the API the Argilla UI uses.
    let workspaces = argilla.get("/me/workspaces").await;
    let workspace_id = workspaces["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|w| w["name"] == WORKSPACE)
        .expect("workspace")["id"]
        .clone();
    let (status, annotator) = argilla
        .request(
            reqwest::Method::POST,
            "/users",
            Some(json!({"first_name": "Анна", "username": "anna", "password": "annotator-password-1", "role": "annotator"})),
        )
        .await
        .expect("argilla answers");
    assert_eq!(status, StatusCode::CREATED, "{annotator}");
    let (status, body) = argilla
        .request(
            reqwest::Method::POST,
            &format!("/workspaces/{}/users", workspace_id.as_str().expect("id")),
            Some(json!({"user_id": annotator["id"]})),
        )
        .await
        .expect("argilla answers");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = argilla
        .request_as(
            annotator["api_key"].as_str().expect("annotator key"),
            reqwest::Method::POST,
            &format!("/records/{record_id}/responses"),
            Some(json!({
                "values": {
                    "quality": {"value": "revision"},
                    "corrected_text": {"value": "Кэшбэк 5% на все покупки"},
                    "rating": {"value": 3}
                },
                "status": "submitted"
            })),
        )
        .await
        .expect("argilla answers");
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The sync runs every half second here: wait for the review in the thread.
    let deadline = Instant::now() + Duration::from_secs(60);
    let offer = loop {
        let after = server.latest_write().await;
        let (status, view) = admin
            .get_after(&format!("/api/v1/requests/{request}"), &after)
            .await;
        assert_eq!(status, StatusCode::OK, "{view}");
        let offer = view["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .find(|m| m["id"] == message.to_string().as_str())
            .cloned()
            .expect("the offer in the thread");
        if !offer["review_quality"].is_null() {
            break offer;
        }
        assert!(
            Instant::now() < deadline,
            "the review never arrived: {view}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(offer["review_quality"], "revision");
    assert_eq!(offer["review_corrected_text"], "Кэшбэк 5% на все покупки");
    assert_eq!(offer["review_rating"], 3);
    assert_eq!(offer["reviewed_by"], "anna");

    // Several more syncs read the same response: still one event.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reviewed: Vec<(Value,)> = sqlx::query_as(
        "SELECT payload->'MessageReviewed' FROM events
          WHERE aggregate_id = $1 AND event_type = 'MessageReviewed'",
    )
    .bind(request.to_string())
    .fetch_all(&server.pool)
    .await
    .expect("events");
    assert_eq!(reviewed.len(), 1, "{reviewed:?}");
    let event = &reviewed[0].0;
    assert_eq!(event["message_id"], message.to_string().as_str());
    assert_eq!(event["reviewer"], "anna");
    assert_eq!(event["quality"], "revision");
    assert_eq!(event["corrected_text"], "Кэшбэк 5% на все покупки");
    assert_eq!(event["rating"], 3);
    server.stop().await;
}
