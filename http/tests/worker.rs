//! Generation end to end with the real default model: batches over HTTP, follow-ups, ratings,
//! progress, retries and dead jobs, and a worker process killed in the middle of a batch.
//!
//! Needs `OFFERFLOW_MODEL` (scripts/test.sh sets it) and the test cluster.
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client_data, llama, model_path, project_with_channels, worker, Client, TestServer};
use domain::client_request::{ClientField, ColumnDescription};
use domain::prompt::{client_block, Persona};
use inference_worker::openai::{OpenAiConfig, OpenAiGenerator};
use inference_worker::TextGenerator;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

/// Adds `n` clients to the channel; returns their request ids.
async fn add_clients(client: &Client, project: &str, channel: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, body) = client
            .post(
                &format!("/api/v1/projects/{project}/channels/{channel}/requests"),
                client_data(i),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["id"].as_str().expect("id").to_string());
    }
    ids
}

/// Polls the channel's progress until nothing is queued or running.
async fn wait_for_batch(client: &Client, project: &str, channel: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, progress) = client
            .get(&format!(
                "/api/v1/projects/{project}/channels/{channel}/generation-progress"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{progress}");
        if progress["queued"] == 0 && progress["running"] == 0 {
            return progress;
        }
        assert!(
            Instant::now() < deadline,
            "the batch did not finish in {within:?}: {progress}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn request_view(client: &Client, id: &str, after: &Value) -> Value {
    let (status, body) = client
        .get_after(&format!("/api/v1/requests/{id}"), after)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_gives_every_client_an_offer_and_the_log_holds_the_exact_prompts() {
    let server = TestServer::start_with_worker(Some(worker(llama(1024), 3))).await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let ids = add_clients(&admin, &project, &sms, 5).await;

    // The live view: the first event comes at once, the last says everything is done.
    let stream_url = format!(
        "{}/api/v1/projects/{project}/channels/{sms}/generation-progress/stream",
        server.base
    );
    let mut stream = admin
        .http
        .get(&stream_url)
        .bearer_auth(admin.token.as_deref().expect("token"))
        .send()
        .await
        .expect("stream opens");
    assert_eq!(stream.status(), StatusCode::OK);

    let (status, queued) = admin
        .post(
            &format!("/api/v1/projects/{project}/channels/{sms}/generations"),
            json!({"all_pending": true, "params": {"max_tokens": 24, "temperature": 0.0}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["queued"], 5, "{queued}");

    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    while !seen.contains("\"done\":5") {
        assert!(Instant::now() < deadline, "no final progress event: {seen}");
        match tokio::time::timeout(Duration::from_secs(30), stream.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("the progress stream ended: {other:?}; saw {seen}"),
        }
    }
    assert!(seen.starts_with("event: progress\n"), "{seen}");
    let progress = wait_for_batch(&admin, &project, &sms, Duration::from_secs(10)).await;
    assert_eq!(
        (progress["done"].as_i64(), progress["failed"].as_i64()),
        (Some(5), Some(0)),
        "{progress}"
    );

    let after = server.latest_write().await;
    for id in &ids {
        let view = request_view(&admin, id, &after).await;
        assert_eq!(view["status"], "ok", "{view}");
        let messages = view["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 2, "{view}");
        assert_eq!(messages[0]["message_type"], "user");
        assert_eq!(messages[1]["message_type"], "system");
        assert_eq!(messages[1]["parent_id"], messages[0]["id"]);
        assert!(
            !messages[1]["text"]
                .as_str()
                .expect("text")
                .trim()
                .is_empty(),
            "an offer: {view}"
        );
        assert!(messages[1]["flags"].is_array());
        assert!(messages[1]["completion_tokens"].as_i64().expect("tokens") > 0);

        // The log holds exactly what the model was sent.
        let (requested,): (Value,) = sqlx::query_as(
            "SELECT payload -> 'GenerationRequested' FROM events
              WHERE aggregate_id = $1 AND event_type = 'GenerationRequested'",
        )
        .bind(id)
        .fetch_one(&server.pool)
        .await
        .expect("GenerationRequested");
        let sent = requested["messages"].as_array().expect("messages");
        assert_eq!(
            sent[0],
            serde_json::to_value(Persona::default().system_message()).expect("json")
        );
        let fields: Vec<ClientField> =
            serde_json::from_value(view["columns"].clone()).expect("columns");
        let descriptions: Vec<ColumnDescription> = view["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| ColumnDescription {
                key: c["key"].as_str().expect("key").into(),
                description: c["description"].as_str().expect("description").into(),
            })
            .collect();
        assert_eq!(sent[2]["content"], client_block(&fields, &descriptions));
        assert!(sent[3]["content"]
            .as_str()
            .expect("instruction")
            .contains("не больше 160 символов"));
        assert_eq!(requested["params"]["max_tokens"], 24);
        assert_eq!(requested["params"]["temperature"], 0.0);
    }
    let (generated,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM events WHERE event_type = 'MessageGenerated'")
            .fetch_one(&server.pool)
            .await
            .expect("count");
    assert_eq!(generated, 5, "one offer per generation");

    // Nothing is pending any more: a second all_pending batch queues nothing.
    let (status, again) = admin
        .post(
            &format!("/api/v1/projects/{project}/channels/{sms}/generations"),
            json!({"all_pending": true}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["queued"], 0, "{again}");
    // Shutting down ends the open event stream instead of waiting for it.
    let stopped = tokio::time::timeout(Duration::from_secs(30), server.stop()).await;
    assert!(stopped.is_ok(), "the server waited for the event stream");
    let rest = tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await;
    assert!(
        matches!(rest, Ok(Ok(None)) | Ok(Err(_))),
        "the stream ended: {rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follow_up_sends_the_whole_thread_and_offers_are_rated() {
    let server = TestServer::start_with_worker(Some(worker(llama(1024), 3))).await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let id = add_clients(&admin, &project, &sms, 1).await.remove(0);
    let (status, first) = admin
        .post(
            &format!("/api/v1/requests/{id}/generations"),
            json!({"params": {"max_tokens": 16, "temperature": 0.0}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, busy) = admin
        .post(&format!("/api/v1/requests/{id}/generations"), json!({}))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "one generation at a time: {busy}"
    );
    wait_for_batch(&admin, &project, &sms, Duration::from_secs(120)).await;
    let view = request_view(&admin, &id, &server.latest_write().await).await;
    let offer = view["messages"][1].clone();
    assert_eq!(offer["message_type"], "system", "{view}");

    let (status, follow) = admin
        .post(
            &format!("/api/v1/requests/{id}/generations"),
            json!({"instruction": "Сделай короче", "parent_message_id": offer["id"],
                   "params": {"max_tokens": 16}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{follow}");
    wait_for_batch(&admin, &project, &sms, Duration::from_secs(120)).await;
    let view = request_view(&admin, &id, &server.latest_write().await).await;
    let messages = view["messages"].as_array().expect("messages");
    let kinds: Vec<&str> = messages
        .iter()
        .map(|m| m["message_type"].as_str().expect("type"))
        .collect();
    assert_eq!(kinds, ["user", "system", "user", "system"], "{view}");
    assert_eq!(messages[2]["text"], "Сделай короче");
    assert_eq!(messages[2]["parent_id"], offer["id"]);
    assert_eq!(messages[3]["parent_id"], messages[2]["id"]);
    let (requested,): (Value,) = sqlx::query_as(
        "SELECT payload -> 'GenerationRequested' FROM events
          WHERE aggregate_id = $1 AND event_type = 'GenerationRequested' ORDER BY sequence DESC LIMIT 1",
    )
    .bind(&id)
    .fetch_one(&server.pool)
    .await
    .expect("follow-up request");
    let sent = requested["messages"].as_array().expect("messages");
    assert_eq!(sent.len(), 6, "the first four, the offer, the instruction");
    assert_eq!(sent[4]["role"], "assistant");
    assert_eq!(sent[4]["content"], offer["text"]);
    assert_eq!(sent[5]["content"], "Сделай короче");

    // Ratings.
    let rating_url = format!(
        "/api/v1/messages/{}/rating",
        offer["id"].as_str().expect("id")
    );
    let (status, bad) = admin.put(&rating_url, json!({"status": "great"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert_eq!(bad["error"]["fields"], json!(["status"]), "{bad}");
    let (status, rated) = admin
        .put(
            &rating_url,
            json!({"status": "revision", "comment": "  слишком длинно "}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rated}");
    let view = request_view(&admin, &id, &rated).await;
    assert_eq!(view["messages"][1]["status"], "revision");
    assert_eq!(view["messages"][1]["comment"], "слишком длинно");
    let (status, _) = admin
        .put(
            &format!(
                "/api/v1/messages/{}/rating",
                messages[2]["id"].as_str().expect("id")
            ),
            json!({"status": "ok"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "only offers are rated");

    // Outsiders see nothing.
    let (_, outsider) = server.user(&admin, "outsider@bank.test").await;
    let (status, _) = outsider
        .post(&format!("/api/v1/requests/{id}/generations"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = outsider.put(&rating_url, json!({"status": "ok"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_generation_orders_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, email) = project_with_channels(&admin).await;
    let id = add_clients(&admin, &project, &sms, 1).await.remove(0);
    let batch = format!("/api/v1/projects/{project}/channels/{sms}/generations");
    for (body, field) in [
        (json!({}), "request_ids"),
        (json!({"request_ids": []}), "request_ids"),
        (
            json!({"request_ids": [id], "all_pending": true}),
            "all_pending",
        ),
        (json!({"request_ids": ["not-a-uuid"]}), "request_ids[0]"),
        (
            json!({"all_pending": true, "params": {"temperature": 3}}),
            "params.temperature",
        ),
        (
            json!({"all_pending": true, "params": {"max_tokens": 0}}),
            "params.max_tokens",
        ),
        (
            json!({"all_pending": true, "params": {"top_k": 3}}),
            "params.top_k",
        ),
        (json!({"request_ids": [Uuid::new_v4()]}), "request_ids[0]"),
    ] {
        let (status, answer) = admin.post(&batch, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(
            answer["error"]["fields"],
            json!([field]),
            "{body}: {answer}"
        );
    }
    // A request of another channel is not this channel's.
    let (status, answer) = admin
        .post(
            &format!("/api/v1/projects/{project}/channels/{email}/generations"),
            json!({"request_ids": [id]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["fields"], json!(["request_ids[0]"]));
    let single = format!("/api/v1/requests/{id}/generations");
    for (body, field) in [
        (
            json!({"parent_message_id": Uuid::new_v4(), "instruction": "x"}),
            "parent_message_id",
        ),
        (json!({"instruction": "x".repeat(6000)}), "instruction"),
        (json!({"params": {"top_p": 0}}), "params.top_p"),
    ] {
        let (status, answer) = admin.post(&single, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(
            answer["error"]["fields"],
            json!([field]),
            "{body}: {answer}"
        );
    }
    let (count,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM events WHERE event_type = 'GenerationRequested'")
            .fetch_one(&server.pool)
            .await
            .expect("count");
    assert_eq!(count, 0, "nothing half-written");
    let (status, _) = admin
        .post(
            &format!("/api/v1/requests/{}/generations", Uuid::new_v4()),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_backend_is_retried_then_the_job_dies_and_an_admin_requeues_it() {
    // The "LLM server is down" case: the openai backend pointed at a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let mut config = OpenAiConfig::new(format!("http://127.0.0.1:{port}"), "nobody");
    config.max_attempts = 1;
    config.request_timeout = Duration::from_secs(2);
    let down: Arc<dyn TextGenerator> = Arc::new(OpenAiGenerator::new(config).expect("client"));
    let server = TestServer::start_with_worker(Some(worker(down, 2))).await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let id = add_clients(&admin, &project, &sms, 1).await.remove(0);
    let (status, queued) = admin
        .post(&format!("/api/v1/requests/{id}/generations"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let generation = queued["generation_id"].as_str().expect("id").to_string();
    let progress = wait_for_batch(&admin, &project, &sms, Duration::from_secs(60)).await;
    assert_eq!(progress["failed"], 1, "{progress}");

    let failures: Vec<(Value,)> = sqlx::query_as(
        "SELECT payload -> 'GenerationFailed' FROM events
          WHERE aggregate_id = $1 AND event_type = 'GenerationFailed' ORDER BY sequence",
    )
    .bind(&id)
    .fetch_all(&server.pool)
    .await
    .expect("failures");
    let failures: Vec<(i64, bool)> = failures
        .iter()
        .map(|(f,)| {
            (
                f["attempt"].as_i64().expect("attempt"),
                f["permanent"].as_bool().expect("permanent"),
            )
        })
        .collect();
    assert_eq!(
        failures,
        [(1, false), (2, true)],
        "one retry, then failed for good"
    );
    let view = request_view(&admin, &id, &server.latest_write().await).await;
    assert_eq!(view["status"], "error");
    assert!(view["status_reason"]
        .as_str()
        .expect("reason")
        .contains("gave up after 2 attempts"));

    let (status, dead) = admin.get("/api/v1/admin/dead-jobs").await;
    assert_eq!(status, StatusCode::OK, "{dead}");
    assert_eq!(dead["total"], 1);
    assert_eq!(dead["items"][0]["generation_id"], generation.as_str());
    assert_eq!(dead["items"][0]["request_id"], id.as_str());
    let (_, performer) = server.user(&admin, "performer@bank.test").await;
    let (status, _) = performer.get("/api/v1/admin/dead-jobs").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The admin fixes the backend (a server with the real model) and requeues.
    let (url, pool) = server.stop().await;
    let server = TestServer::on_with_worker(url, pool, Some(worker(llama(2048), 3))).await;
    let admin = server.admin().await;
    let performer = server.login("performer@bank.test", common::PASSWORD).await;
    let requeue = format!("/api/v1/admin/dead-jobs/{generation}/requeue");
    let (status, _) = performer.post(&requeue, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, requeued) = admin.post(&requeue, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{requeued}");
    wait_for_batch(&admin, &project, &sms, Duration::from_secs(300)).await;
    let view = request_view(&admin, &id, &server.latest_write().await).await;
    assert_eq!(view["status"], "ok", "{view}");
    assert_eq!(view["messages"][1]["generation_id"], generation.as_str());
    let (status, again) = admin.post(&requeue, json!({})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "only dead jobs are requeued: {again}"
    );
    let (status, dead) = admin.get("/api/v1/admin/dead-jobs").await;
    assert_eq!((status, dead["total"].as_i64()), (StatusCode::OK, Some(0)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prompt_longer_than_the_context_fails_for_good_at_once() {
    let server = TestServer::start_with_worker(Some(worker(llama(64), 5))).await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let id = add_clients(&admin, &project, &sms, 1).await.remove(0);
    let (status, _) = admin
        .post(&format!("/api/v1/requests/{id}/generations"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let progress = wait_for_batch(&admin, &project, &sms, Duration::from_secs(60)).await;
    assert_eq!(progress["failed"], 1, "{progress}");
    let (attempts,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'GenerationFailed'",
    )
    .bind(&id)
    .fetch_one(&server.pool)
    .await
    .expect("failures");
    assert_eq!(attempts, 1, "retrying cannot help, so it is not retried");
    let view = request_view(&admin, &id, &server.latest_write().await).await;
    assert_eq!(view["status"], "error");
    assert!(
        view["status_reason"]
            .as_str()
            .expect("reason")
            .contains("context"),
        "{view}"
    );
    server.stop().await;
}

/// A worker process, killed when dropped so that a failing test leaves none behind.
struct WorkerProcess(std::process::Child);

impl WorkerProcess {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `offerflow worker` on the test database.
fn spawn_worker_process(database_url: &str) -> WorkerProcess {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_offerflow"))
        .arg("worker")
        .env("DATABASE_URL", database_url)
        .env("OFFERFLOW_MODEL", model_path())
        .env("OFFERFLOW_WORKER_LEASE_SECONDS", "5")
        .env("OFFERFLOW_LLM_CONTEXT", "1024")
        .env("OFFERFLOW_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("offerflow worker starts");
    WorkerProcess(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_batch_loses_and_duplicates_nothing() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let ids = add_clients(&admin, &project, &sms, 12).await;
    let mut first = spawn_worker_process(&server.url);
    let (status, queued) = admin
        .post(
            &format!("/api/v1/projects/{project}/channels/{sms}/generations"),
            json!({"all_pending": true, "params": {"max_tokens": 32}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["queued"], 12);

    // Kill it once it has finished some offers and holds others.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (done, running): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state = 'running')
               FROM generation_jobs",
        )
        .fetch_one(&server.pool)
        .await
        .expect("jobs");
        if done >= 2 && running > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first worker made no progress"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Child::kill is SIGKILL: no shutdown, no lease given back.
    first.kill();
    let (held,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM generation_jobs WHERE state = 'running'")
            .fetch_one(&server.pool)
            .await
            .expect("jobs");
    assert!(held > 0, "the killed worker held jobs");

    let mut second = spawn_worker_process(&server.url);
    let result = tokio::time::timeout(
        Duration::from_secs(300),
        wait_for_batch(&admin, &project, &sms, Duration::from_secs(300)),
    )
    .await;
    second.kill();
    let progress = result.expect("the batch finished");
    assert_eq!(
        progress["done"].as_i64().unwrap_or(0) + progress["failed"].as_i64().unwrap_or(0),
        12
    );

    // Every generation ended exactly once.
    let endings: Vec<(String, i64)> = sqlx::query_as(
        "SELECT payload -> event_type ->> 'generation_id', count(*) FROM events
          WHERE event_type = 'MessageGenerated'
             OR (event_type = 'GenerationFailed' AND (payload -> event_type ->> 'permanent')::boolean)
          GROUP BY 1",
    )
    .fetch_all(&server.pool)
    .await
    .expect("endings");
    let requested: Vec<(String,)> = sqlx::query_as(
        "SELECT payload -> event_type ->> 'generation_id' FROM events WHERE event_type = 'GenerationRequested'",
    )
    .fetch_all(&server.pool)
    .await
    .expect("requested");
    assert_eq!(requested.len(), 12);
    for (generation,) in &requested {
        let count = endings
            .iter()
            .find(|(g, _)| g == generation)
            .map(|(_, n)| *n);
        assert_eq!(
            count,
            Some(1),
            "generation {generation} ended {count:?} times"
        );
    }
    let after = server.latest_write().await;
    for id in &ids {
        let view = request_view(&admin, id, &after).await;
        assert_eq!(view["status"], "ok", "{view}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_pending_takes_every_client_added_before_the_call() {
    // Past a thousand transactions, so the log's head is found in numeric order, not text order.
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let ids = add_clients(&admin, &project, &sms, 200).await;
    let (status, queued) = admin
        .post(
            &format!("/api/v1/projects/{project}/channels/{sms}/generations"),
            json!({"all_pending": true}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(
        queued["queued"],
        ids.len(),
        "skipped: {}",
        queued["skipped"]
    );
    server.stop().await;
}
