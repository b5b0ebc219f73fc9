//! The original system's three `llm-model` endpoints over real HTTP: their happy paths with the
//! real model worker (with and without the trailing slash), repeats, rights, validation that
//! names the item and writes nothing, the raw call's batch limit and timeout, and the log
//! holding what was asked.
//!
//! The generating tests need `OFFERFLOW_MODEL` (scripts/test.sh sets it) and the test cluster.
mod common;

use std::time::{Duration, Instant};

use common::{catalog_id, client_data, llama, project_with_channels, worker, Client, TestServer};
use offerflow_http::generation::GenerationSettings;
use offerflow_http::worker::WorkerSetup;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

const REQUESTS_DATA: &str = "/api/llm-model/requests-data";
const MULTIPLE: &str = "/api/llm-model/requests-data/multiple-creation";
const RAW: &str = "/api/llm-model/requests-data/raw-multiple-creation";

/// A real server like common's `TestServer`, with the generation settings under test.
/// common's `TestServer` with the old API's helpers.
struct Server(TestServer);

impl std::ops::Deref for Server {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.0
    }
}

impl Server {
    /// A fresh database with the catalog seeded and one admin.
    async fn start(worker: Option<WorkerSetup>, generation: GenerationSettings) -> Server {
        Server(TestServer::start_with(worker, generation).await)
    }

    /// A server on an existing database.
    async fn on(
        url: String,
        pool: PgPool,
        worker: Option<WorkerSetup>,
        generation: GenerationSettings,
    ) -> Server {
        Server(TestServer::on_with(url, pool, worker, generation).await)
    }

    async fn stop(self) -> (String, PgPool) {
        self.0.stop().await
    }

    fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_string()),
            ..self.anonymous()
        }
    }

    async fn user(&self, admin: &Client, email: &str) -> (String, Client) {
        let (status, body) = admin
            .post(
                "/api/v1/users",
                json!({"email": email, "password": common::PASSWORD, "name": email}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create {email}: {body}");
        let id = body["id"].as_str().expect("id").to_string();
        (id, self.0.login(email, common::PASSWORD).await)
    }

    /// How many events of this type the log holds.
    async fn count(&self, event_type: &str) -> i64 {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM events WHERE event_type = $1")
            .bind(event_type)
            .fetch_one(&self.pool)
            .await
            .expect("count");
        n
    }

    /// The `GenerationRequested` payloads of one request, oldest first.
    async fn generations(&self, request_id: &str) -> Vec<Value> {
        let rows: Vec<(Value,)> = sqlx::query_as(
            "SELECT payload -> 'GenerationRequested' FROM events
              WHERE aggregate_id = $1 AND event_type = 'GenerationRequested' ORDER BY sequence",
        )
        .bind(request_id)
        .fetch_all(&self.pool)
        .await
        .expect("generations");
        rows.into_iter().map(|(v,)| v).collect()
    }
}

fn settings(raw_max_batch: usize, raw_timeout: Duration) -> GenerationSettings {
    GenerationSettings {
        raw_max_batch,
        raw_timeout,
        ..GenerationSettings::default()
    }
}

/// A client as the old API sent it, with its data and decoding.
fn client(n: usize) -> Value {
    client_data(n)
}

/// `base` with `extra` fields set.
fn with(base: Value, extra: Value) -> Value {
    let mut base = base;
    if let (Some(target), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            target.insert(k.clone(), v.clone());
        }
    }
    base
}

fn id_of(body: &Value, key: &str) -> String {
    body[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {body}"))
        .to_string()
}

/// Polls the request, as of `after` (a command's answer) or later, until its status is `want`.
async fn wait_for_status(
    client: &Client,
    id: &str,
    after: &Value,
    want: &str,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, view) = client
            .get_after(&format!("/api/v1/requests/{id}"), after)
            .await;
        if status == StatusCode::OK && view["status"] == want {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "request {id} is not {want} after {within:?}: {status} {view}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_invalid(status: StatusCode, answer: &Value, fields: Value, what: &str) {
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{what}: {status} {answer}"
    );
    assert_eq!(answer["error"]["fields"], fields, "{what}: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_data_finds_or_creates_the_request_attaches_the_channel_and_generates() {
    let server = Server::start(Some(worker(llama(2048), 3)), GenerationSettings::default()).await;
    let admin = server.admin().await;
    let (_, manager) = server.user(&admin, "manager@bank.test").await;
    let (_, performer) = server.user(&admin, "performer@bank.test").await;
    let (project, sms, _) = project_with_channels(&manager).await;
    let (status, body) = manager
        .post(
            &format!("/api/v1/projects/{project}/members"),
            json!({"email": "performer@bank.test", "role": "performer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let small = json!({"max_tokens": 16});

    // A performer, the channel by key, a numeric client id as the old clients send it.
    let body = with(
        client(1),
        json!({"project": project, "sale_channel": "SMS", "client_id": 42, "params": small}),
    );
    let (status, first) = performer
        .post(&format!("{REQUESTS_DATA}/"), body.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["status"], "in_progress");
    assert_eq!(first["client_id"], "42");
    assert_eq!(first["source_client_info"], "api");
    assert_eq!(first["sale_channel"], sms.as_str());
    assert_eq!(first["project"], project.as_str());
    let id = id_of(&first, "id");
    // The same client through /api/v1 is the same request.
    let (status, same) = performer
        .post(
            &format!("/api/v1/projects/{project}/channels/{sms}/requests"),
            client(1),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(same["id"], id.as_str());
    wait_for_status(&performer, &id, &first, "ok", Duration::from_secs(120)).await;

    // Sent again once its offer is done: a new generation of the same request.
    let (status, again) = performer.post(REQUESTS_DATA, body).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["id"], id.as_str());
    assert_ne!(again["generation_id"], first["generation_id"]);
    let view = wait_for_status(&performer, &id, &again, "ok", Duration::from_secs(120)).await;
    assert_eq!(view["messages"].as_array().map(Vec::len), Some(4), "{view}");
    let sent = server.generations(&id).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0]["instruction"],
        Value::Null,
        "no prompt, no instruction"
    );

    // A channel not attached yet: a manager's call attaches it, and `prompt` becomes its prompt.
    let push = catalog_id(&manager, "channels", "PUSH").await;
    let brief = "Упомяни кешбэк 5 % на всё";
    let (status, attached) = manager
        .post(
            REQUESTS_DATA,
            with(
                client(2),
                json!({"project": project, "sale_channel": push, "prompt": brief, "params": small}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{attached}");
    let (status, channel) = manager
        .get_after(
            &format!("/api/v1/projects/{project}/channels/{push}"),
            &attached,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{channel}");
    assert_eq!(channel["prompt"], brief);
    assert_eq!(
        channel["prompt_version"], 2,
        "the attached prompt, then this one"
    );
    let pushed = server.generations(&id_of(&attached, "id")).await;
    assert_eq!(pushed[0]["instruction"], Value::Null);
    assert!(
        pushed[0]["messages"][1]["content"]
            .as_str()
            .expect("context")
            .ends_with(&format!("Указания для канала:\n{brief}")),
        "{pushed:?}"
    );

    // An attached channel keeps its prompt; another `prompt` is this generation's instruction.
    let (status, instructed) = manager
        .post(
            &format!("{REQUESTS_DATA}/"),
            with(
                client(3),
                json!({"project": project, "sale_channel": sms, "prompt": "Обратись на «вы»", "params": small}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{instructed}");
    let asked = server.generations(&id_of(&instructed, "id")).await;
    assert_eq!(asked[0]["instruction"], "Обратись на «вы»");
    let messages = asked[0]["messages"].as_array().expect("messages");
    assert_eq!(messages[messages.len() - 1]["content"], "Обратись на «вы»");
    let (status, channel) = manager
        .get_after(
            &format!("/api/v1/projects/{project}/channels/{sms}"),
            &instructed,
        )
        .await;
    assert_eq!(
        (status, channel["prompt_version"].as_i64()),
        (StatusCode::OK, Some(1))
    );

    // Attaching takes a manager.
    let tmo = catalog_id(&manager, "channels", "TMO").await;
    let before = server.count("ChannelAttached").await;
    let (status, refused) = performer
        .post(
            REQUESTS_DATA,
            with(client(4), json!({"project": project, "sale_channel": tmo})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .expect("message")
        .contains("sale_channel"));
    assert_eq!(server.count("ChannelAttached").await, before);

    for done in [&attached, &instructed] {
        wait_for_status(
            &manager,
            &id_of(done, "id"),
            done,
            "ok",
            Duration::from_secs(120),
        )
        .await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multiple_creation_queues_clients_in_the_callers_own_project_per_product() {
    let server = Server::start(Some(worker(llama(2048), 3)), GenerationSettings::default()).await;
    let admin = server.admin().await;
    let (owner_id, owner) = server.user(&admin, "crm@bank.test").await;
    let (status, issued) = owner
        .post("/api/v1/api-tokens", json!({"name": "CRM"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let integration = server.with_token(issued["token"].as_str().expect("secret"));
    let cc = catalog_id(&owner, "products", "CC").await;
    let email = catalog_id(&owner, "channels", "EMAIL").await;
    let items = json!([
        with(
            client(1),
            json!({"product": "CC", "sale_channel": "SMS", "prompt": "Упомяни кешбэк"})
        ),
        with(
            client(2),
            json!({"product": cc, "sale_channel": email, "client_id": "c-2", "source_client_info": "crm"})
        ),
    ]);
    let (status, queued) = integration
        .post(
            MULTIPLE,
            json!({"requests_data": items, "params": {"max_tokens": 16}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["detail"], "Данные отправлены, ожидайте ответа");
    let ids: Vec<String> = queued["request_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);

    // One project for the product, the token's owner its manager, both channels attached.
    let (status, projects) = owner.get_after("/api/v1/projects", &queued).await;
    assert_eq!(status, StatusCode::OK, "{projects}");
    assert_eq!(projects["total"], 1, "{projects}");
    let project = &projects["items"][0];
    assert_eq!(project["my_role"], "manager");
    assert_eq!(project["product"]["key"], "CC");
    assert_eq!(project["channels"], 2);
    assert!(project["name"]
        .as_str()
        .expect("name")
        .starts_with("Проект для выгрузки данных через api по клиентам"));
    let (actor, on_behalf): (String, String) = sqlx::query_as(
        "SELECT metadata ->> 'actor_kind', metadata ->> 'on_behalf_of' FROM events
          WHERE event_type = 'ProjectCreated'",
    )
    .fetch_one(&server.pool)
    .await
    .expect("the project's creation");
    assert_eq!(
        (actor.as_str(), on_behalf.as_str()),
        ("api_token", owner_id.as_str())
    );

    let first = wait_for_status(&owner, &ids[0], &queued, "ok", Duration::from_secs(120)).await;
    let second = wait_for_status(&owner, &ids[1], &queued, "ok", Duration::from_secs(120)).await;
    assert_eq!(first["project_id"], project["id"]);
    assert_eq!(second["client_id"], "c-2");
    assert_eq!(second["source"], "crm");
    assert_eq!(
        server.generations(&ids[0]).await[0]["instruction"],
        "Упомяни кешбэк"
    );

    // The same clients again, with a client of another product: the same requests get new
    // generations, and the other product gets a project of its own.
    let mut again = items.as_array().expect("items").clone();
    again.push(with(
        client(3),
        json!({"product": "DEPOSIT", "sale_channel": "SMS"}),
    ));
    let (status, repeated) = integration
        .post(
            &format!("{MULTIPLE}/"),
            json!({"requests_data": again, "params": {"max_tokens": 16}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{repeated}");
    assert_eq!(repeated["request_ids"][0], ids[0].as_str());
    assert_eq!(repeated["request_ids"][1], ids[1].as_str());
    assert_eq!(server.generations(&ids[0]).await.len(), 2);
    let (status, projects) = owner.get_after("/api/v1/projects", &repeated).await;
    assert_eq!(
        (status, projects["total"].as_i64()),
        (StatusCode::OK, Some(2))
    );

    // Nobody else sees them.
    let (_, other) = server.user(&admin, "other@bank.test").await;
    let (status, _) = other.get(&format!("/api/v1/requests/{}", ids[0])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for id in repeated["request_ids"].as_array().expect("ids") {
        wait_for_status(
            &owner,
            id.as_str().expect("id"),
            &repeated,
            "ok",
            Duration::from_secs(120),
        )
        .await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raw_multiple_creation_answers_every_text_and_records_the_descriptions() {
    let server = Server::start(Some(worker(llama(2048), 3)), GenerationSettings::default()).await;
    let admin = server.admin().await;
    let (_, caller) = server.user(&admin, "raw@bank.test").await;
    let card = "Кредитная карта «Умная»: кешбэк до 10 %, 180 дней без процентов.";
    let sms = "SMS: не длиннее 160 символов, с призывом к действию.";
    let deposit = "Вклад «Копить»: до 16 % годовых, пополнение без ограничений.";
    let push = "Пуш в мобильном банке: одна короткая фраза.";
    let item = |product: &str, channel: &str, client_id: Value| {
        with(
            client(1),
            json!({"product_info": product, "sale_channel_info": channel, "client_id": client_id}),
        )
    };
    let (status, answer) = caller
        .post(
            &format!("{RAW}/"),
            json!({
                "raw_requests_data": [item(&format!("  {card}\n"), sms, json!("a")), item(deposit, push, json!(7))],
                "params": {"max_tokens": 16}
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let texts = answer.as_array().expect("a list");
    assert_eq!(texts.len(), 2);
    assert_eq!(texts[0]["client_id"], "a");
    assert_eq!(texts[1]["client_id"], "7");
    for text in texts {
        assert!(
            text["text"].as_str().is_some_and(|t| !t.is_empty()),
            "{answer}"
        );
        assert!(text.get("error").is_none(), "{answer}");
    }
    let first = id_of(&texts[0], "request_id");
    let second = id_of(&texts[1], "request_id");
    assert_ne!(
        first, second,
        "one client under two descriptions is two requests"
    );

    // The descriptions are the prompt's product and channel, exactly (trimmed).
    for (id, product, channel) in [(&first, card, sms), (&second, deposit, push)] {
        let sent = server.generations(id).await;
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0]["messages"][1]["content"],
            format!("Банковский продукт: {product}\n\nКанал продажи: {channel}")
        );
    }
    // The caller reads them through /api/v1 like any request.
    let view = wait_for_status(&caller, &first, &Value::Null, "ok", Duration::from_secs(10)).await;
    assert_eq!(view["source"], "api-raw");
    assert_eq!(view["messages"][1]["text"], texts[0]["text"]);
    let (status, _) = admin.get(&format!("/api/v1/requests/{first}")).await;
    assert_eq!(status, StatusCode::OK, "admins see every project");
    let (_, other) = server.user(&admin, "other@bank.test").await;
    let (status, _) = other.get(&format!("/api/v1/requests/{first}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, products) = caller.get("/api/v1/products?q=RAW").await;
    assert_eq!(status, StatusCode::OK, "{products}");
    assert!(products["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|p| p["key"] == "RAW"));

    // Again, twice in one call: the same request, one new generation shared by both items.
    let (status, again) = caller
        .post(
            RAW,
            json!({
                "raw_requests_data": [item(card, sms, json!("a")), item(card, sms, json!("b"))],
                "params": {"max_tokens": 16}
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again[0]["request_id"], first.as_str());
    assert_eq!(again[1]["request_id"], first.as_str());
    assert_eq!(again[1]["client_id"], "b");
    assert_eq!(again[0]["text"], again[1]["text"]);
    assert_eq!(server.generations(&first).await.len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_raw_generation_that_fails_for_good_answers_null_and_why() {
    // A context too small for any prompt fails at once and for good.
    let server = Server::start(Some(worker(llama(64), 3)), GenerationSettings::default()).await;
    let admin = server.admin().await;
    let (status, answer) = admin
        .post(
            RAW,
            json!({"raw_requests_data": [with(client(1), json!({"product_info": "Депозит", "sale_channel_info": "SMS"}))]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer[0]["text"], Value::Null, "{answer}");
    assert!(
        answer[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("context")),
        "{answer}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raw_multiple_creation_is_bounded_by_its_batch_size_and_its_timeout() {
    // No worker: nothing is generated until the server comes back with one.
    let server = Server::start(None, settings(2, Duration::from_secs(1))).await;
    let admin = server.admin().await;
    let item = |n: usize| {
        with(
            client(n),
            json!({"product_info": "Кредитная карта", "sale_channel_info": "СМС"}),
        )
    };
    let (status, answer) = admin
        .post(
            RAW,
            json!({"raw_requests_data": [item(1), item(2), item(3)]}),
        )
        .await;
    assert_invalid(status, &answer, json!(["raw_requests_data"]), "three");
    assert!(answer["error"]["message"]
        .as_str()
        .expect("message")
        .contains("at most 2"));
    assert_eq!(server.count("ClientRequestCreated").await, 0);

    let started = Instant::now();
    let (status, answer) = admin
        .post(
            RAW,
            json!({"raw_requests_data": [item(1)], "params": {"max_tokens": 16}}),
        )
        .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{answer}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(answer["error"]["code"], "generation_timeout");
    let id = answer["error"]["running_request_ids"][0]
        .as_str()
        .expect("the running request")
        .to_string();
    assert!(answer["error"]["message"]
        .as_str()
        .expect("message")
        .contains(&id));
    wait_for_status(
        &admin,
        &id,
        &Value::Null,
        "in_progress",
        Duration::from_secs(10),
    )
    .await;

    // Sent again while it runs: waited for, not asked for twice.
    let (status, again) = admin
        .post(&format!("{RAW}/"), json!({"raw_requests_data": [item(1)]}))
        .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{again}");
    assert_eq!(again["error"]["running_request_ids"], json!([id]));
    assert_eq!(server.generations(&id).await.len(), 1);

    // It goes on in the background: a server with a worker finishes it.
    let (url, pool) = server.stop().await;
    let server = Server::on(
        url,
        pool,
        Some(worker(llama(2048), 3)),
        settings(2, Duration::from_secs(120)),
    )
    .await;
    let admin = server.admin().await;
    let view = wait_for_status(&admin, &id, &Value::Null, "ok", Duration::from_secs(120)).await;
    assert_eq!(view["messages"].as_array().map(Vec::len), Some(2), "{view}");
    server.stop().await;
}

impl Server {
    /// Every event type's count, to show a refused call wrote nothing.
    async fn census(&self) -> Vec<(String, i64)> {
        sqlx::query_as("SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 1")
            .fetch_all(&self.pool)
            .await
            .expect("census")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calls_are_refused_naming_the_item_and_write_nothing() {
    let server = Server::start(None, settings(3, Duration::from_secs(1))).await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let before = server.census().await;
    let decoded = |data: Value| json!({"client_data": data, "client_data_decoding": {"age": "Возраст", "gender": "Пол"}});
    let one = |extra: Value| {
        with(
            with(
                client(1),
                json!({"project": project, "sale_channel": "SMS"}),
            ),
            extra,
        )
    };
    let nowhere = Uuid::new_v4().to_string();
    for (body, fields) in [
        (json!({}), json!(["project"])),
        (
            one(json!({"sale_channel": "NOPE"})),
            json!(["sale_channel"]),
        ),
        (
            one(json!({"sale_channel": nowhere})),
            json!(["sale_channel"]),
        ),
        (one(json!({"sale_channel": 5})), json!(["sale_channel"])),
        (one(json!({"client_data": {}})), json!(["client_data"])),
        (
            one(decoded(json!({"age": {"years": 30}}))),
            json!(["client_data.age"]),
        ),
        (
            one(
                json!({"client_data": {"age": 30, "cnt": 1}, "client_data_decoding": {"age": "Возраст"}}),
            ),
            json!(["client_data_decoding.cnt"]),
        ),
        (
            one(json!({"client_data": {"age": 30}, "client_data_decoding": {"age": 1}})),
            json!(["client_data_decoding.age"]),
        ),
        (one(json!({"client_id": {"id": 1}})), json!(["client_id"])),
        (
            one(json!({"source_client_info": "x".repeat(300)})),
            json!(["source_client_info"]),
        ),
        (one(json!({"prompt": "x".repeat(6000)})), json!(["prompt"])),
        (
            one(json!({"params": {"max_tokens": 0}})),
            json!(["params.max_tokens"]),
        ),
        (one(json!({"shop": 1})), json!(["shop"])),
    ] {
        let (status, answer) = admin.post(REQUESTS_DATA, body.clone()).await;
        assert_invalid(status, &answer, fields, &body.to_string());
    }
    let (status, answer) = admin
        .post(REQUESTS_DATA, one(json!({"project": nowhere})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");

    let item = |n: usize, extra: Value| {
        with(
            with(client(n), json!({"product": "CC", "sale_channel": "SMS"})),
            extra,
        )
    };
    for (body, fields) in [
        (json!({}), json!(["requests_data"])),
        (json!({"requests_data": []}), json!(["requests_data"])),
        (
            json!({"requests_data": [item(0, json!({})), item(1, json!({"product": "NOPE"}))]}),
            json!(["requests_data[1].product"]),
        ),
        (
            json!({"requests_data": [item(0, json!({})), item(1, json!({"sale_channel": nowhere}))]}),
            json!(["requests_data[1].sale_channel"]),
        ),
        (
            json!({"requests_data": [{"product": "CC", "sale_channel": "SMS", "client_data_decoding": {}}]}),
            json!(["requests_data[0].client_data"]),
        ),
        (
            json!({"requests_data": [item(0, json!({})), item(1, json!({})), item(2, decoded(json!({"age": [30]})))]}),
            json!(["requests_data[2].client_data.age"]),
        ),
        (
            json!({"requests_data": [item(0, json!({})), item(1, json!({"client_data_decoding": {"gender": "Пол"}}))]}),
            json!([
                "requests_data[1].client_data_decoding.age",
                "requests_data[1].client_data_decoding.reg_region_nm",
                "requests_data[1].client_data_decoding.super_clust"
            ]),
        ),
        (
            json!({"requests_data": [item(0, json!({"prompt": "x".repeat(6000)}))]}),
            json!(["requests_data[0].prompt"]),
        ),
        (
            json!({"requests_data": [item(0, json!({"prompt": "a\u{0}b"}))]}),
            json!(["requests_data[0].prompt"]),
        ),
        (
            json!({"requests_data": [item(0, json!({}))], "params": {"temperature": 3}}),
            json!(["params.temperature"]),
        ),
    ] {
        for path in [MULTIPLE.to_string(), format!("{MULTIPLE}/")] {
            let (status, answer) = admin.post(&path, body.clone()).await;
            assert_invalid(status, &answer, fields.clone(), &body.to_string());
        }
    }

    let raw = |n: usize, extra: Value| {
        with(
            with(
                client(n),
                json!({"product_info": "Кредитная карта", "sale_channel_info": "СМС"}),
            ),
            extra,
        )
    };
    for (body, fields) in [
        (json!({}), json!(["raw_requests_data"])),
        (
            json!({"raw_requests_data": []}),
            json!(["raw_requests_data"]),
        ),
        (
            json!({"raw_requests_data": [raw(0, json!({})), raw(1, json!({})), raw(2, json!({})), raw(3, json!({}))]}),
            json!(["raw_requests_data"]),
        ),
        (
            json!({"raw_requests_data": [raw(0, json!({"product_info": "  "}))]}),
            json!(["raw_requests_data[0].product_info"]),
        ),
        (
            json!({"raw_requests_data": [raw(0, json!({})), {"product_info": "Карта", "client_data": {"age": 1}, "client_data_decoding": {"age": "Возраст"}}]}),
            json!(["raw_requests_data[1].sale_channel_info"]),
        ),
        (
            json!({"raw_requests_data": [raw(0, json!({"client_data": {}}))]}),
            json!(["raw_requests_data[0].client_data"]),
        ),
        (
            json!({"raw_requests_data": [raw(0, json!({"client_data": {"gender": "1"}, "client_data_decoding": {}}))]}),
            json!(["raw_requests_data[0].client_data_decoding.gender"]),
        ),
        (
            json!({"raw_requests_data": [raw(0, json!({"prompt": "Коротко"}))]}),
            json!(["raw_requests_data[0].prompt"]),
        ),
    ] {
        let (status, answer) = admin.post(RAW, body.clone()).await;
        assert_invalid(status, &answer, fields, &body.to_string());
    }
    assert_eq!(
        server.census().await,
        before,
        "a refused call writes nothing"
    );

    // A client whose offer is being generated (no worker here) is a 409 naming the item, and
    // the other items of that batch are not written either.
    let (status, queued) = admin
        .post(
            REQUESTS_DATA,
            with(client(1), json!({"project": project, "sale_channel": sms})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{queued}");
    let (status, busy) = admin
        .post(
            &format!("{REQUESTS_DATA}/"),
            with(
                client(1),
                json!({"project": project, "sale_channel": "SMS"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{busy}");
    assert_eq!(busy["error"]["code"], "in_progress");

    let (status, queued) = admin
        .post(MULTIPLE, json!({"requests_data": [item(1, json!({}))]}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let created = server.count("ClientRequestCreated").await;
    let (status, busy) = admin
        .post(
            MULTIPLE,
            json!({"requests_data": [item(2, json!({})), item(1, json!({}))]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{busy}");
    assert_eq!(busy["error"]["code"], "in_progress");
    assert!(busy["error"]["message"]
        .as_str()
        .expect("message")
        .starts_with("requests_data[1]:"));
    assert_eq!(server.count("ClientRequestCreated").await, created);

    // The same client twice in one call is one request and one generation.
    let asked = server.count("GenerationRequested").await;
    let (status, twice) = admin
        .post(
            MULTIPLE,
            json!({"requests_data": [item(3, json!({})), item(3, json!({"client_id": "x"}))]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{twice}");
    assert_eq!(twice["request_ids"][0], twice["request_ids"][1]);
    assert_eq!(server.count("GenerationRequested").await, asked + 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_need_a_bearer_token_and_rights_in_the_project() {
    let server = Server::start(None, settings(3, Duration::from_secs(1))).await;
    let admin = server.admin().await;
    let (_, manager) = server.user(&admin, "manager@bank.test").await;
    let (_, performer) = server.user(&admin, "performer@bank.test").await;
    let (_, outsider) = server.user(&admin, "outsider@bank.test").await;
    let (project, sms, _) = project_with_channels(&manager).await;
    let (status, _) = manager
        .post(
            &format!("/api/v1/projects/{project}/members"),
            json!({"email": "performer@bank.test", "role": "performer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let body = with(client(1), json!({"project": project, "sale_channel": sms}));

    let anonymous = server.anonymous();
    for path in [REQUESTS_DATA, MULTIPLE, RAW] {
        for path in [path.to_string(), format!("{path}/")] {
            let (status, answer) = anonymous.post(&path, body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {answer}");
            assert_eq!(answer["error"]["code"], "unauthorized");
            let (status, _) = admin.get(&path).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        }
    }
    let (status, _) = server
        .with_token("off_not-a-token")
        .post(REQUESTS_DATA, body.clone())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, answer) = outsider.post(REQUESTS_DATA, body.clone()).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "outsiders learn nothing: {answer}"
    );
    assert_eq!(server.count("ClientRequestCreated").await, 0);
    let (status, answer) = performer.post(REQUESTS_DATA, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    // An API token acts as its owner: here a manager, who may attach a channel.
    let (status, issued) = manager
        .post("/api/v1/api-tokens", json!({"name": "CRM"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let integration = server.with_token(issued["token"].as_str().expect("secret"));
    let (status, answer) = integration
        .post(
            REQUESTS_DATA,
            with(
                client(2),
                json!({"project": project, "sale_channel": "PUSH"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let actors: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT metadata ->> 'actor_kind' FROM events WHERE aggregate_id = $1",
    )
    .bind(id_of(&answer, "id"))
    .fetch_all(&server.pool)
    .await
    .expect("actors");
    assert_eq!(actors, [("api_token".to_string(),)]);

    // Everyone works in their own projects in the batch calls; an archived project is closed.
    let (status, _) = manager.delete(&format!("/api/v1/projects/{project}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = performer
        .post(
            REQUESTS_DATA,
            with(client(3), json!({"project": project, "sale_channel": sms})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (status, answer) = outsider
        .post(
            MULTIPLE,
            json!({"requests_data": [with(client(4), json!({"product": "CC", "sale_channel": "SMS"}))]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (status, own) = outsider.get_after("/api/v1/projects", &answer).await;
    assert_eq!(
        (status, own["total"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{own}"
    );
    assert_eq!(own["items"][0]["my_role"], "manager");
    let (status, theirs) = performer
        .get_after("/api/v1/projects?include_archived=true", &answer)
        .await;
    assert_eq!(status, StatusCode::OK, "{theirs}");
    assert!(theirs["items"]
        .as_array()
        .expect("items")
        .iter()
        .all(|p| p["id"] != own["items"][0]["id"]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routes_are_documented_and_never_answer_odd_input_with_a_5xx() {
    let server = Server::start(None, settings(3, Duration::from_secs(1))).await;
    let admin = server.admin().await;
    let (_, performer) = server.user(&admin, "odd@bank.test").await;
    let (project, _, _) = project_with_channels(&admin).await;
    let (status, document) = server.anonymous().get("/api/llm-model/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "{document}");
    for path in [
        "/api/llm-model/requests-data/",
        "/api/llm-model/requests-data/multiple-creation",
        "/api/llm-model/requests-data/raw-multiple-creation",
    ] {
        assert!(
            document["paths"][path]["post"].is_object(),
            "{path}: {document}"
        );
    }
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());

    let bodies = [
        None,
        Some(json!({})),
        Some(json!([])),
        Some(Value::Null),
        Some(json!("text")),
        Some(
            json!({"project": project, "sale_channel": "\u{0}", "prompt": "\u{0}", "client_id": "\u{0}",
                    "client_data": {"\u{0}": "\u{0}"}, "client_data_decoding": {"\u{0}": "\u{0}"}}),
        ),
        Some(
            json!({"project": project, "sale_channel": "SMS", "client_data": {"a": {"b": [1, {"c": null}]}},
                    "client_data_decoding": {"a": 1}}),
        ),
        Some(
            json!({"requests_data": [null, 1, "x", {"product": null}], "raw_requests_data": [{}]}),
        ),
        Some(
            json!({"requests_data": [{"product": "\u{0}", "sale_channel": "SMS", "client_data": {"a": 1},
                    "client_data_decoding": {"a": "A"}}]}),
        ),
        Some(
            json!({"raw_requests_data": [{"product_info": "\u{0}", "sale_channel_info": "x", "client_data": {"a": 1},
                    "client_data_decoding": {"a": "A"}}]}),
        ),
        Some(
            json!({"raw_requests_data": [{"product_info": "x".repeat(30_000), "sale_channel_info": "x",
                    "client_data": {"a": 1e300}, "client_data_decoding": {"a": "A"}}], "params": {"seed": -1}}),
        ),
    ];
    let mut checked = 0;
    for path in [REQUESTS_DATA, MULTIPLE, RAW] {
        for path in [
            path.to_string(),
            format!("{path}/"),
            format!("{path}?limit=-1"),
        ] {
            for body in &bodies {
                for client in [&admin, &performer] {
                    let (status, answer) =
                        client.call(Method::POST, &path, body.clone(), None).await;
                    checked += 1;
                    assert!(
                        !status.is_server_error(),
                        "{path} {body:?}: {status} {answer}"
                    );
                    if status.is_client_error() {
                        assert!(answer["error"]["code"].is_string(), "{path}: {answer}");
                    }
                }
            }
        }
    }
    assert!(checked > 100, "{checked} calls");
    server.stop().await;
}
