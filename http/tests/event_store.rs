//! The event log under concurrency and restarts: acknowledged writes are never lost, every
//! subscriber sees every event exactly once and in per-aggregate order, and projections resume
//! from their checkpoints.
mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{client_data, project_with_channels, TestServer};
use domain::client_request::{ClientRequestCommand, Outcome};
use domain::metadata::{Actor, EventMetadata};
use projections::engine::EngineConfig;
use projections::{Engine, Projection, StoredEvent};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_writers_on_one_aggregate_lose_no_acknowledged_event() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let path = format!("/api/v1/projects/{project}/channels/{sms}");

    let writers: Vec<_> = (0..50)
        .map(|i| {
            let admin = admin.clone();
            let path = path.clone();
            tokio::spawn(async move {
                let prompt = format!("Версия от автора {i}");
                let (status, body) = admin.patch(&path, json!({ "prompt": prompt })).await;
                (prompt, status, body)
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    let mut last_token = None;
    for writer in writers {
        let (prompt, status, body) = writer.await.expect("writer");
        match status {
            StatusCode::OK => {
                // Writers finish in any order: wait for the newest write of all.
                let token: projections::ConsistencyToken = body["consistency_token"]
                    .as_str()
                    .expect("token")
                    .parse()
                    .expect("token");
                if last_token.is_none_or(|t: projections::ConsistencyToken| {
                    (t.transaction_id, t.global_position)
                        < (token.transaction_id, token.global_position)
                }) {
                    last_token = Some(token);
                }
                acknowledged.push(prompt);
            }
            StatusCode::CONFLICT => {
                assert_eq!(body["error"]["code"], "concurrent_modification", "{body}")
            }
            other => panic!("a writer got {other}: {body}"),
        }
    }
    assert!(!acknowledged.is_empty(), "some writers must win");

    // The log itself: one ChannelPromptChanged per acknowledged write, none other.
    let logged: Vec<(serde_json::Value,)> = sqlx::query_as(
        "SELECT payload FROM events WHERE aggregate_id = $1 AND event_type = 'ChannelPromptChanged' ORDER BY sequence",
    )
    .bind(&project)
    .fetch_all(&server.pool)
    .await
    .expect("events");
    let logged: Vec<String> = logged
        .iter()
        .map(|(p,)| {
            p["ChannelPromptChanged"]["prompt"]
                .as_str()
                .expect("prompt")
                .to_string()
        })
        .collect();
    let mut expected = acknowledged.clone();
    expected.sort();
    let mut got = logged.clone();
    got.sort();
    assert_eq!(
        got, expected,
        "the log holds exactly the acknowledged writes"
    );

    // And the read model shows them as consecutive versions after the attach's version 1.
    let token = last_token.expect("a token").to_string();
    let (status, versions) = admin
        .call(
            reqwest::Method::GET,
            &format!("{path}/prompts"),
            None,
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let numbers: Vec<i64> = versions["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| v["version"].as_i64().expect("n"))
        .collect();
    let expected_numbers: Vec<i64> = (1..=acknowledged.len() as i64 + 1).rev().collect();
    assert_eq!(numbers, expected_numbers);
}

async fn create_recorder_table(pool: &PgPool) {
    sqlx::query(
        "CREATE TABLE recorded_events (seen bigserial PRIMARY KEY, global_position bigint NOT NULL,
                                       aggregate_id text NOT NULL, sequence bigint NOT NULL)",
    )
    .execute(pool)
    .await
    .expect("table");
}

/// The consistency token of the newest committed event.
async fn newest_event(pool: &PgPool) -> projections::ConsistencyToken {
    let (tx, pos): (String, i64) = sqlx::query_as(
        "SELECT transaction_id::text, global_position FROM events
          ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .expect("newest event");
    projections::ConsistencyToken {
        transaction_id: tx.parse().expect("xid"),
        global_position: pos,
    }
}

/// Records every event it is given, in the order given.
struct Recorder;

#[async_trait]
impl Projection for Recorder {
    fn name(&self) -> &'static str {
        "test_recorder"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["ClientRequest", "SlowStream"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["recorded_events"]
    }

    async fn apply(&self, db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO recorded_events (global_position, aggregate_id, sequence) VALUES ($1, $2, $3)")
            .bind(event.global_position)
            .bind(&event.aggregate_id)
            .bind(event.sequence)
            .execute(db)
            .await?;
        Ok(())
    }
}

/// Appends events in transactions that stay open a few milliseconds after taking their
/// position, so that later positions commit first: the case a naive reader gets wrong.
async fn slow_writer(pool: PgPool, stream: String, events: i64) {
    for sequence in 1..=events {
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES ('SlowStream', $1, $2, 'Tick', '1', '{}', '{}')",
        )
        .bind(&stream)
        .bind(sequence)
        .execute(&mut *tx)
        .await
        .expect("insert");
        sqlx::query("SELECT pg_sleep(random() * 0.004)")
            .execute(&mut *tx)
            .await
            .expect("sleep");
        tx.commit().await.expect("commit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_sees_every_event_once_in_per_aggregate_order_under_ten_writers() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let project: Uuid = project.parse().expect("uuid");
    let sms: Uuid = sms.parse().expect("uuid");
    create_recorder_table(&server.pool).await;
    let engine = Engine::new(
        server.pool.clone(),
        vec![Arc::new(Recorder)],
        EngineConfig {
            batch_size: 37,
            poll_interval: Duration::from_millis(20),
            ..EngineConfig::default()
        },
    );
    engine.register().await.expect("register");
    let (stop, stopped) = watch::channel(false);
    let tasks = engine.spawn(stopped);

    let state = server.state.clone();
    let mut writers = Vec::new();
    for writer in 0..8 {
        let state = state.clone();
        writers.push(tokio::spawn(async move {
            let metadata = EventMetadata::new(Actor::Process(format!("writer-{writer}")), "test");
            for n in 0..25 {
                let data = vec![
                    ("writer".to_string(), json!(writer)),
                    ("n".to_string(), json!(n)),
                ];
                let id = domain::ids::client_request_id(project, sms, &data);
                let create = ClientRequestCommand::Create {
                    project_id: project,
                    channel_id: sms,
                    channel_attached: true,
                    client_id: None,
                    source: "test".into(),
                    client_data: data,
                    client_data_decoding: vec![
                        ("writer".into(), "Писатель".into()),
                        ("n".into(), "Номер".into()),
                    ],
                };
                state
                    .bus
                    .execute(&state.bus.requests, id, create, &metadata)
                    .await
                    .expect("create");
                for outcome in [Outcome::Interest, Outcome::Sold] {
                    state
                        .bus
                        .execute(
                            &state.bus.requests,
                            id,
                            ClientRequestCommand::RecordOutcome {
                                outcome,
                                credited_to: None,
                            },
                            &metadata,
                        )
                        .await
                        .expect("outcome");
                }
            }
        }));
    }
    for slow in 0..2 {
        writers.push(tokio::spawn(slow_writer(
            server.pool.clone(),
            format!("slow-{slow}"),
            60,
        )));
    }
    for writer in writers {
        writer.await.expect("writer finished");
    }

    let last = newest_event(&server.pool).await;
    assert!(
        engine
            .wait_for(last, Duration::from_secs(30))
            .await
            .expect("wait"),
        "the recorder caught up"
    );
    let _ = stop.send(true);
    for task in tasks {
        task.await.expect("subscriber stopped");
    }

    let expected: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT global_position, aggregate_id, sequence FROM events
          WHERE aggregate_type IN ('ClientRequest', 'SlowStream') ORDER BY global_position",
    )
    .fetch_all(&server.pool)
    .await
    .expect("log");
    assert_eq!(expected.len(), 8 * 25 * 3 + 2 * 60);
    let seen: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT global_position, aggregate_id, sequence FROM recorded_events ORDER BY seen",
    )
    .fetch_all(&server.pool)
    .await
    .expect("recorded");
    let missing: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT e.global_position, e.transaction_id::text, e.aggregate_id FROM events e
          WHERE e.aggregate_type IN ('ClientRequest', 'SlowStream')
            AND NOT EXISTS (SELECT 1 FROM recorded_events r WHERE r.global_position = e.global_position)
          ORDER BY e.global_position LIMIT 20",
    )
    .fetch_all(&server.pool)
    .await
    .expect("missing");
    let checkpoint: (String, i64) =
        sqlx::query_as("SELECT last_tx::text, last_pos FROM subscriber_checkpoints WHERE subscriber = 'test_recorder'")
            .fetch_one(&server.pool)
            .await
            .expect("checkpoint");
    assert_eq!(
        seen.len(),
        expected.len(),
        "every event seen, none twice; first missing: {missing:?}; checkpoint {checkpoint:?}; waited for {last}"
    );
    let distinct: HashSet<i64> = seen.iter().map(|(p, _, _)| *p).collect();
    assert_eq!(distinct.len(), seen.len(), "no event seen twice");
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    assert_eq!(sorted_seen, expected, "exactly the events of the log");
    let mut last_sequence: HashMap<String, i64> = HashMap::new();
    for (_, aggregate, sequence) in &seen {
        let previous = last_sequence
            .insert(aggregate.clone(), *sequence)
            .unwrap_or(0);
        assert_eq!(
            *sequence,
            previous + 1,
            "aggregate {aggregate} seen out of order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projections_resume_after_a_restart_mid_stream_without_loss_or_duplicates() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let requests_path = format!("/api/v1/projects/{project}/channels/{sms}/requests");

    // A stream of writes against the first server...
    let mut acknowledged = HashSet::new();
    for n in 0..40 {
        let (status, body) = admin.post(&requests_path, client_data(n)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        acknowledged.insert(body["id"].as_str().expect("id").to_string());
    }
    // ...stopped without waiting for its subscribers to catch up first...
    let (url, pool) = server.stop().await;
    // ...and events written while no server runs at all...
    let state = common::state_for(pool.clone()).await;
    let metadata = EventMetadata::new(Actor::Cli, "offline");
    let project_id: Uuid = project.parse().expect("uuid");
    let sms_id: Uuid = sms.parse().expect("uuid");
    for n in 40..60 {
        let body = client_data(n);
        let data: Vec<(String, serde_json::Value)> = body["client_data"]
            .as_object()
            .expect("object")
            .clone()
            .into_iter()
            .collect();
        let decoding: Vec<(String, String)> = body["client_data_decoding"]
            .as_object()
            .expect("object")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("text").to_string()))
            .collect();
        let id = domain::ids::client_request_id(project_id, sms_id, &data);
        let create = ClientRequestCommand::Create {
            project_id,
            channel_id: sms_id,
            channel_attached: true,
            client_id: None,
            source: "offline".into(),
            client_data: data,
            client_data_decoding: decoding,
        };
        state
            .bus
            .execute(&state.bus.requests, id, create, &metadata)
            .await
            .expect("offline write");
        acknowledged.insert(id.to_string());
    }

    // A new server on the same database picks up where the first left off.
    let server = TestServer::on(url, pool).await;
    let admin = server.login(common::ADMIN_EMAIL, common::PASSWORD).await;
    let mut last = serde_json::Value::Null;
    for n in 60..80 {
        let (status, body) = admin.post(&requests_path, client_data(n)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        acknowledged.insert(body["id"].as_str().expect("id").to_string());
        last = body;
    }
    let (status, list) = admin
        .get_after(&format!("{requests_path}?limit=500"), &last)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let listed: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(listed.len(), 80, "no request lost or doubled");
    assert_eq!(listed.iter().cloned().collect::<HashSet<_>>(), acknowledged);

    // Each subscriber processed each event exactly once across both lives.
    let (total,): (i64,) = sqlx::query_as("SELECT count(*) FROM events")
        .fetch_one(&server.pool)
        .await
        .expect("count");
    for status in server.state.engine.status().await.expect("status") {
        assert_eq!(status.events_behind, 0, "{} caught up", status.name);
        assert_eq!(
            status.events_processed, total,
            "{} processed every event once",
            status.name
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn events_say_who_did_what_within_which_request_and_never_hold_a_secret() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (_, me) = admin.get("/api/v1/me").await;
    let password = "a very secret passphrase 42";
    let response = admin
        .http
        .post(format!("{}/api/v1/users", server.base))
        .bearer_auth(admin.token.as_deref().expect("token"))
        .header("X-Request-Id", "campaign-import-7")
        .json(&json!({"email": "ivan@bank.test", "password": password, "name": "Иван"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-request-id"], "campaign-import-7");
    let user_id = domain::ids::user_id("ivan@bank.test").to_string();

    let (event_version, metadata): (String, serde_json::Value) =
        sqlx::query_as("SELECT event_version, metadata FROM events WHERE aggregate_type = 'User' AND aggregate_id = $1")
            .bind(&user_id)
            .fetch_one(&server.pool)
            .await
            .expect("event");
    assert_eq!(event_version, "1");
    assert_eq!(metadata["schema_version"], "1");
    assert_eq!(metadata["correlation_id"], "campaign-import-7");
    assert_eq!(metadata["actor_kind"], "user");
    assert_eq!(metadata["actor_id"], me["id"]);

    // An API token's secret and the password never reach the log.
    let ivan = server.login("ivan@bank.test", password).await;
    let (status, issued) = ivan
        .post("/api/v1/api-tokens", json!({"name": "CRM"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = issued["token"].as_str().expect("secret").to_string();
    let (_, changed) = ivan.get("/api/v1/me").await;
    assert_eq!(changed["email"], "ivan@bank.test");
    let (log,): (String,) =
        sqlx::query_as("SELECT string_agg(payload::text || metadata::text, ' ') FROM events")
            .fetch_one(&server.pool)
            .await
            .expect("log");
    assert!(!log.contains(password), "the password is in the log");
    assert!(!log.contains(&secret), "the API token is in the log");
    assert!(
        log.contains("ApiTokenIssued"),
        "the issue itself is recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_subscriber_takes_over_when_the_active_one_dies() {
    let server = TestServer::start().await;
    create_recorder_table(&server.pool).await;
    let config = EngineConfig {
        batch_size: 10,
        poll_interval: Duration::from_millis(20),
        ..EngineConfig::default()
    };
    let first = Engine::new(
        server.pool.clone(),
        vec![Arc::new(Recorder)],
        config.clone(),
    );
    first.register().await.expect("register");
    let second = Engine::new(server.pool.clone(), vec![Arc::new(Recorder)], config);
    let (_keep, running) = watch::channel(false);
    let first_tasks = first.spawn(running.clone());
    let second_tasks = second.spawn(running);

    slow_writer(server.pool.clone(), "before".into(), 30).await;
    let token = newest_event(&server.pool).await;
    assert!(first
        .wait_for(token, Duration::from_secs(10))
        .await
        .expect("wait"));

    // The active process dies without a goodbye: its tasks (and their connections) are gone.
    for task in &first_tasks {
        task.abort();
    }
    slow_writer(server.pool.clone(), "after".into(), 30).await;
    let token = newest_event(&server.pool).await;
    assert!(
        second
            .wait_for(token, Duration::from_secs(10))
            .await
            .expect("wait"),
        "the standby caught up"
    );
    let (seen, distinct, expected): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM recorded_events), (SELECT count(DISTINCT global_position) FROM recorded_events),
                (SELECT count(*) FROM events WHERE aggregate_type = 'SlowStream')",
    )
    .fetch_one(&server.pool)
    .await
    .expect("counts");
    assert_eq!(expected, 60);
    assert_eq!(
        (seen, distinct),
        (60, 60),
        "every event once across both processes"
    );
    for task in second_tasks {
        task.abort();
    }
}

#[tokio::test]
async fn transaction_ids_are_read_in_numeric_order_across_a_digit_boundary() {
    let server = TestServer::start().await;
    create_recorder_table(&server.pool).await;
    // Two committed events whose writing transactions are 99 and 100: as text, "100" sorts first.
    for (sequence, xid) in [(1, "100"), (2, "99")] {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata,
                                 transaction_id)
             VALUES ('SlowStream', 'digits', $1, 'Tick', '1', '{}', '{}', $2::text::xid8)",
        )
        .bind(sequence)
        .bind(xid)
        .execute(&server.pool)
        .await
        .expect("insert");
    }
    let engine = Engine::new(
        server.pool.clone(),
        vec![Arc::new(Recorder)],
        EngineConfig {
            batch_size: 1,
            ..EngineConfig::default()
        },
    );
    engine.register().await.expect("register");
    engine.catch_up().await.expect("catch up");
    let seen: Vec<(i64,)> = sqlx::query_as("SELECT sequence FROM recorded_events ORDER BY seen")
        .fetch_all(&server.pool)
        .await
        .expect("seen");
    assert_eq!(
        seen,
        vec![(2,), (1,)],
        "transaction 99 before transaction 100, neither skipped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_in_another_process_wake_the_subscribers_without_waiting_for_a_poll() {
    let server = TestServer::start().await;
    create_recorder_table(&server.pool).await;
    // The reading process polls only every minute: only a notice can wake it in time.
    let reader = Engine::new(
        server.pool.clone(),
        vec![Arc::new(Recorder)],
        EngineConfig {
            poll_interval: Duration::from_secs(60),
            ..EngineConfig::default()
        },
    );
    reader.register().await.expect("register");
    let writer = Engine::new(server.pool.clone(), vec![], EngineConfig::default());
    let (stop, stopped) = watch::channel(false);
    let mut tasks = reader.spawn(stopped.clone());
    tasks.extend(writer.spawn(stopped));
    // Let the reader go idle and its listener connect.
    tokio::time::sleep(Duration::from_millis(300)).await;

    slow_writer(server.pool.clone(), "elsewhere".into(), 3).await;
    writer.events_committed();
    let token = newest_event(&server.pool).await;
    assert!(
        reader
            .wait_for(token, Duration::from_secs(5))
            .await
            .expect("wait"),
        "the other process's notice woke the reader"
    );
    let _ = stop.send(true);
    for task in tasks {
        task.await.expect("task stopped");
    }
}

/// A client of `other` that acts as `client`'s user.
fn same_user_on(client: &common::Client, other: &TestServer) -> common::Client {
    common::Client {
        base: other.base.clone(),
        http: reqwest::Client::new(),
        token: client.token.clone(),
    }
}

async fn prompt_changes(pool: &PgPool, project: &str) -> Vec<(i64, String)> {
    let rows: Vec<(i64, serde_json::Value)> = sqlx::query_as(
        "SELECT sequence, payload FROM events
          WHERE aggregate_id = $1 AND event_type = 'ChannelPromptChanged' ORDER BY sequence",
    )
    .bind(project)
    .fetch_all(pool)
    .await
    .expect("events");
    rows.into_iter()
        .map(|(sequence, payload)| {
            let prompt = payload["ChannelPromptChanged"]["prompt"]
                .as_str()
                .expect("prompt")
                .to_string();
            (sequence, prompt)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_whose_memory_is_behind_another_servers_write_records_after_it_not_over_it() {
    let first = TestServer::start().await;
    let second = TestServer::on(first.url.clone(), first.pool.clone()).await;
    let on_first = first.admin().await;
    let on_second = same_user_on(&on_first, &second);
    let (project, sms, _) = project_with_channels(&on_first).await;
    let path = format!("/api/v1/projects/{project}/channels/{sms}");

    // The first server now remembers the project; the second changes it behind its back.
    for (client, prompt) in [
        (&on_first, "Первая версия"),
        (&on_second, "Вторая версия"),
        (&on_first, "Третья версия"),
    ] {
        let (status, body) = client.patch(&path, json!({ "prompt": prompt })).await;
        assert_eq!(status, StatusCode::OK, "{prompt}: {body}");
    }
    let changes = prompt_changes(&first.pool, &project).await;
    let prompts: Vec<&str> = changes.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        prompts,
        ["Первая версия", "Вторая версия", "Третья версия"],
        "each write lands after the one before it"
    );

    // Both servers, 20 writers each, on the one aggregate.
    let writers: Vec<_> = (0..40)
        .map(|i| {
            let client = if i % 2 == 0 { &on_first } else { &on_second }.clone();
            let path = path.clone();
            tokio::spawn(async move {
                let prompt = format!("Версия {i}");
                let (status, body) = client.patch(&path, json!({ "prompt": prompt })).await;
                (prompt, status, body)
            })
        })
        .collect();
    let mut acknowledged = vec![
        "Первая версия".to_string(),
        "Вторая версия".into(),
        "Третья версия".into(),
    ];
    for writer in writers {
        let (prompt, status, body) = writer.await.expect("writer");
        match status {
            StatusCode::OK => acknowledged.push(prompt),
            StatusCode::CONFLICT => {
                assert_eq!(body["error"]["code"], "concurrent_modification", "{body}")
            }
            other => panic!("a writer got {other}: {body}"),
        }
    }
    let mut logged: Vec<String> = prompt_changes(&first.pool, &project)
        .await
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    logged.sort();
    acknowledged.sort();
    assert_eq!(
        logged, acknowledged,
        "the log holds exactly the acknowledged writes"
    );
    let sequences: Vec<(i64,)> =
        sqlx::query_as("SELECT sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(&project)
            .fetch_all(&first.pool)
            .await
            .expect("sequences");
    let expected: Vec<(i64,)> = (1..=sequences.len() as i64).map(|s| (s,)).collect();
    assert_eq!(sequences, expected, "no gaps, no repeats");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_that_would_change_nothing_is_checked_against_the_log_before_it_is_answered() {
    let first = TestServer::start().await;
    let second = TestServer::on(first.url.clone(), first.pool.clone()).await;
    let on_first = first.admin().await;
    let on_second = same_user_on(&on_first, &second);
    let product = common::catalog_id(&on_first, "products", "PK").await;
    let path = format!("/api/v1/products/{product}");

    let (status, body) = on_first.patch(&path, json!({ "name": "Карта А" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = on_second.patch(&path, json!({ "name": "Карта Б" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The first server still remembers "Карта А"; once that memory is older than a server may
    // trust for an answer that writes nothing, "Карта А" again must be recorded, not skipped.
    tokio::time::sleep(offerflow_http::commands::FRESH + Duration::from_millis(200)).await;
    let (status, body) = on_first.patch(&path, json!({ "name": "Карта А" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let recorded: Vec<(serde_json::Value,)> = sqlx::query_as(
        "SELECT payload FROM events WHERE aggregate_id = $1 AND event_type = 'ProductDetailsUpdated'
          ORDER BY sequence",
    )
    .bind(&product)
    .fetch_all(&first.pool)
    .await
    .expect("events");
    let names: Vec<String> = recorded
        .iter()
        .map(|(p,)| {
            let text = p.to_string();
            if text.contains("Карта А") {
                "Карта А"
            } else {
                "Карта Б"
            }
            .to_string()
        })
        .collect();
    assert_eq!(names, ["Карта А", "Карта Б", "Карта А"]);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_appended_together_are_refused_one_by_one_not_all_together() {
    use offerflow_http::event_store::{AppendError, Appender, EventRow};
    let server = TestServer::start().await;
    let appender = Appender::start(server.pool.clone(), server.state.engine.clone());
    let row = |stream: &str, sequence: i64| EventRow {
        aggregate_type: "AppendProbe",
        aggregate_id: stream.to_string(),
        sequence,
        event_type: "Probed".into(),
        event_version: "1".into(),
        payload: json!({ "Probed": { "stream": stream } }),
        metadata: json!({}),
    };
    appender
        .append(vec![row("taken", 1)])
        .await
        .expect("first append");

    // Twenty commands at once, one of them late for sequence 1 of "taken"; each has two events.
    let appends: Vec<_> = (0..20)
        .map(|i| {
            let appender = appender.clone();
            let stream = if i == 7 {
                "taken".to_string()
            } else {
                format!("stream-{i}")
            };
            let rows = vec![row(&stream, 1), row(&stream, 2)];
            tokio::spawn(async move { (stream, appender.append(rows).await) })
        })
        .collect();
    let mut tokens = HashSet::new();
    for append in appends {
        let (stream, outcome) = append.await.expect("append task");
        match outcome {
            Ok(token) => {
                assert_ne!(stream, "taken", "a taken sequence was accepted");
                tokens.insert(token.global_position);
            }
            Err(AppendError::Conflict) => assert_eq!(stream, "taken"),
            Err(AppendError::Database(e)) => panic!("{stream}: {e}"),
        }
    }
    assert_eq!(tokens.len(), 19, "each accepted command has its own token");

    let logged: Vec<(String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, count(*) FROM events WHERE aggregate_type = 'AppendProbe'
          GROUP BY aggregate_id ORDER BY aggregate_id",
    )
    .fetch_all(&server.pool)
    .await
    .expect("events");
    assert_eq!(logged.len(), 20);
    for (stream, events) in logged {
        let expected = if stream == "taken" { 1 } else { 2 };
        assert_eq!(
            events, expected,
            "{stream}: every event of a command, or none"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_another_server_already_recorded_is_the_same_request_not_a_second_one() {
    let first = TestServer::start().await;
    let second = TestServer::on(first.url.clone(), first.pool.clone()).await;
    let on_first = first.admin().await;
    let on_second = same_user_on(&on_first, &second);
    let (project, sms, _) = project_with_channels(&on_first).await;
    let path = format!("/api/v1/projects/{project}/channels/{sms}/requests");

    let (status, created) = on_first.post(&path, client_data(5)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    // The second server has never seen this request: it presumes a new one and the log says no.
    let (status, repeated) = on_second.post(&path, client_data(5)).await;
    assert_eq!(status, StatusCode::OK, "{repeated}");
    assert_eq!(repeated["id"], created["id"]);
    let (count,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'ClientRequestCreated'",
    )
    .bind(created["id"].as_str().expect("id"))
    .fetch_one(&first.pool)
    .await
    .expect("count");
    assert_eq!(count, 1);
    // And it can record the outcome of a request it learnt of that way.
    let (status, body) = on_second
        .put(
            &format!(
                "/api/v1/requests/{}/outcome",
                created["id"].as_str().expect("id")
            ),
            json!({ "success_type": "interest" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    second.stop().await;
}
