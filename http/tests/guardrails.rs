//! Channel guardrails over real HTTP against a real server and database: each project channel's
//! length limit (the catalog channel's default, then the manager's) and the project's banned
//! phrases. Reads that follow writes pass the write's consistency token, never a sleep.
mod common;

use std::time::Duration;

use common::{catalog_id, Client, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

const API: &str = "/api/v1";

/// Asserts an error answer: the status, our body shape and the code.
#[track_caller]
fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "a message: {body}"
    );
}

/// Asserts a 422 that names `field` among its `fields`.
#[track_caller]
fn assert_invalid(status: StatusCode, body: &Value, field: &str) {
    assert_error(status, body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(fields.contains(&field), "{field} among the fields: {body}");
}

/// A fresh server and its admin, once the read models hold the seeded catalog.
async fn start() -> (TestServer, Client) {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (status, body) = admin
        .get_after(
            &format!("{API}/products?limit=1"),
            &server.latest_write().await,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (server, admin)
}

/// The seeded channels a test uses, by key.
struct Channels {
    sms: String,
    push: String,
    email: String,
    knd: String,
}

/// A project selling deposits with SMS, PUSH and EMAIL attached (KND is not); answers the
/// project's id and the attachment's answer.
async fn project(admin: &Client) -> (String, Channels, Value) {
    let channels = Channels {
        sms: catalog_id(admin, "channels", "SMS").await,
        push: catalog_id(admin, "channels", "PUSH").await,
        email: catalog_id(admin, "channels", "EMAIL").await,
        knd: catalog_id(admin, "channels", "KND").await,
    };
    let product = catalog_id(admin, "products", "DEPOSIT").await;
    let (status, created) = admin
        .post(
            &format!("{API}/projects"),
            json!({"name": "Вклады осенью", "product_id": product, "description": "Ставка выше рынка"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let (status, attached) = admin
        .post(
            &format!("{API}/projects/{id}/channels"),
            json!({"channel_ids": [channels.sms, channels.push, channels.email]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{attached}");
    (id, channels, attached)
}

/// Adds a performer to the project and signs them in.
async fn performer(server: &TestServer, admin: &Client, project: &str) -> Client {
    let (_, performer) = server.user(admin, "performer@bank.test").await;
    let (status, body) = admin
        .post(
            &format!("{API}/projects/{project}/members"),
            json!({"email": "performer@bank.test", "role": "performer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    performer
}

fn max_length(project: &str, channel: &str) -> String {
    format!("{API}/projects/{project}/channels/{channel}/max-length")
}

fn banned_phrases(project: &str) -> String {
    format!("{API}/projects/{project}/banned-phrases")
}

/// The project channel as a member sees it after `after`.
async fn channel(client: &Client, project: &str, channel: &str, after: &Value) -> Value {
    let (status, view) = client
        .get_after(
            &format!("{API}/projects/{project}/channels/{channel}"),
            after,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    view
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_channels_start_with_their_catalog_limits() {
    let (_server, admin) = start().await;
    let (project, channels, attached) = project(&admin).await;
    let (status, list) = admin
        .get_after(&format!("{API}/projects/{project}/channels"), &attached)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let limits: Vec<(String, Value, Value)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| {
            (
                c["key"].as_str().expect("key").to_string(),
                c["max_chars"].clone(),
                c["default_max_chars"].clone(),
            )
        })
        .collect();
    let expected = [
        ("EMAIL", Value::Null, Value::Null),
        ("PUSH", json!(120), json!(120)),
        ("SMS", json!(160), json!(160)),
    ];
    for (key, max, default) in expected {
        assert!(
            limits.contains(&(key.to_string(), max.clone(), default.clone())),
            "{key} has max_chars {max} (default {default}): {list}"
        );
    }
    let sms = channel(&admin, &project, &channels.sms, &attached).await;
    assert_eq!(sms["max_chars"], 160, "{sms}");
    let (status, project_view) = admin
        .get_after(&format!("{API}/projects/{project}"), &attached)
        .await;
    assert_eq!(status, StatusCode::OK, "{project_view}");
    assert_eq!(project_view["banned_phrases"], json!([]), "{project_view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_change_a_channels_limit_and_may_remove_it() {
    let (server, admin) = start().await;
    let (project, channels, _) = project(&admin).await;
    let sms = &channels.sms;

    let (status, changed) = admin
        .put(&max_length(&project, sms), json!({"max_chars": 70}))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["id"], sms.as_str(), "{changed}");
    let view = channel(&admin, &project, sms, &changed).await;
    assert_eq!(view["max_chars"], 70, "{view}");
    assert_eq!(
        view["default_max_chars"], 160,
        "the default stays known: {view}"
    );

    // The same limit again changes nothing.
    let (status, again) = admin
        .put(&max_length(&project, sms), json!({"max_chars": 70}))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    let (count,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'ChannelMaxLengthChanged'",
    )
    .bind(&project)
    .fetch_one(&server.pool)
    .await
    .expect("count");
    assert_eq!(count, 1, "a repeat records nothing");

    // Null removes the limit; a channel without a default (EMAIL) can get one.
    let (status, removed) = admin
        .put(&max_length(&project, sms), json!({"max_chars": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(
        channel(&admin, &project, sms, &removed).await["max_chars"],
        Value::Null
    );
    let (status, email) = admin
        .put(
            &max_length(&project, &channels.email),
            json!({"max_chars": 10000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{email}");
    assert_eq!(
        channel(&admin, &project, &channels.email, &email).await["max_chars"],
        10000
    );

    // A new prompt keeps the limit; detaching and attaching again starts from the default.
    let (status, prompt) = admin
        .put(&max_length(&project, sms), json!({"max_chars": 67}))
        .await;
    assert_eq!(status, StatusCode::OK, "{prompt}");
    let (status, prompt) = admin
        .patch(
            &format!("{API}/projects/{project}/channels/{sms}"),
            json!({"prompt": "Одно SMS, без ссылок"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{prompt}");
    let view = channel(&admin, &project, sms, &prompt).await;
    assert_eq!(view["prompt_version"], 2, "{view}");
    assert_eq!(view["max_chars"], 67, "{view}");
    let (status, detached) = admin
        .delete(&format!("{API}/projects/{project}/channels/{sms}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{detached}");
    let (status, body) = admin
        .put(&max_length(&project, sms), json!({"max_chars": 100}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "channel_not_attached");
    let (status, reattached) = admin
        .post(
            &format!("{API}/projects/{project}/channels"),
            json!({"channel_ids": [sms]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reattached}");
    assert_eq!(
        channel(&admin, &project, sms, &reattached).await["max_chars"],
        160
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_validated_and_errors_name_max_chars() {
    let (server, admin) = start().await;
    let (project, channels, _) = project(&admin).await;
    let url = max_length(&project, &channels.sms);
    for body in [
        json!({"max_chars": 0}),
        json!({"max_chars": 10001}),
        json!({"max_chars": -5}),
        json!({"max_chars": 99_999_999_999i64}),
        json!({"max_chars": 1.5}),
        json!({"max_chars": "160"}),
        json!({}),
    ] {
        let (status, answer) = admin.put(&url, body.clone()).await;
        assert_invalid(status, &answer, "max_chars");
        if body.as_object().is_some_and(|b| !b.is_empty()) && body["max_chars"].is_i64() {
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("between 1 and 10000")),
                "{body}: {answer}"
            );
        }
    }
    let (status, answer) = admin.put(&url, json!({"max_chars": 100, "limit": 5})).await;
    assert_invalid(status, &answer, "limit");
    let (status, answer) = admin
        .put(
            &max_length(&project, &channels.knd),
            json!({"max_chars": 100}),
        )
        .await;
    assert_error(
        status,
        &answer,
        StatusCode::CONFLICT,
        "channel_not_attached",
    );
    let (status, answer) = admin
        .put(
            &max_length(&uuid::Uuid::new_v4().to_string(), &channels.sms),
            json!({"max_chars": 100}),
        )
        .await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    let (status, answer) = admin
        .put(
            &format!("{API}/projects/{project}/channels/not-a-uuid/max-length"),
            json!({"max_chars": 100}),
        )
        .await;
    assert!(status.is_client_error(), "{status} {answer}");
    // None of these changed anything.
    let view = channel(
        &admin,
        &project,
        &channels.sms,
        &server.latest_write().await,
    )
    .await;
    assert_eq!(view["max_chars"], 160, "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banned_phrases_are_cleaned_deduplicated_and_shown() {
    let (_server, admin) = start().await;
    let (project, _, _) = project(&admin).await;
    let (status, changed) = admin
        .put(
            &banned_phrases(&project),
            json!({"phrases": ["  гарантированное   одобрение ", "Без отказа", "без ОТКАЗА", "ещё", "еще"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["id"], project.as_str(), "{changed}");
    let expected = json!(["гарантированное одобрение", "Без отказа", "ещё"]);
    let (status, view) = admin
        .get_after(&format!("{API}/projects/{project}"), &changed)
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["banned_phrases"], expected, "{view}");
    let (status, list) = admin.get_after(&format!("{API}/projects"), &changed).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let listed = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["id"] == project.as_str())
        .expect("the project is listed");
    assert_eq!(listed["banned_phrases"], expected, "{listed}");

    // The empty list clears them.
    let (status, cleared) = admin
        .put(&banned_phrases(&project), json!({"phrases": []}))
        .await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    let (_, view) = admin
        .get_after(&format!("{API}/projects/{project}"), &cleared)
        .await;
    assert_eq!(view["banned_phrases"], json!([]), "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banned_phrases_are_validated_and_errors_name_the_phrase() {
    let (_server, admin) = start().await;
    let (project, _, _) = project(&admin).await;
    let url = banned_phrases(&project);
    let long = "я".repeat(201);
    let many: Vec<String> = (0..201).map(|i| format!("фраза {i}")).collect();
    let cases = [
        (json!({"phrases": ["ok", "гарантия", "  "]}), "phrases[2]"),
        (json!({"phrases": [long]}), "phrases[0]"),
        (json!({"phrases": ["ok", "a\u{0}b"]}), "phrases[1]"),
        (json!({"phrases": many}), "phrases"),
        (json!({"phrases": "гарантия"}), "phrases"),
        (json!({}), "phrases"),
        (json!({"phrases": [], "words": []}), "words"),
    ];
    for (body, field) in cases {
        let (status, answer) = admin.put(&url, body.clone()).await;
        assert_invalid(status, &answer, field);
    }
    let (status, answer) = admin.put(&url, json!({"phrases": ["ok", 5]})).await;
    assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let (status, answer) = admin
        .put(
            &banned_phrases(&uuid::Uuid::new_v4().to_string()),
            json!({"phrases": ["ok"]}),
        )
        .await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_managers_change_guardrails_and_members_see_them() {
    let (server, admin) = start().await;
    let (project, channels, _) = project(&admin).await;
    let performer = performer(&server, &admin, &project).await;
    let (status, body) = performer
        .put(
            &max_length(&project, &channels.sms),
            json!({"max_chars": 70}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = performer
        .put(&banned_phrases(&project), json!({"phrases": ["гарантия"]}))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    // The performer still sees what is in force.
    let written = server.latest_write().await;
    assert_eq!(
        channel(&performer, &project, &channels.sms, &written).await["max_chars"],
        160
    );

    let (_, outsider) = server.user(&admin, "outsider@bank.test").await;
    let (status, body) = outsider
        .put(
            &max_length(&project, &channels.sms),
            json!({"max_chars": 70}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = outsider
        .put(&banned_phrases(&project), json!({"phrases": ["гарантия"]}))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server
        .anonymous()
        .put(&banned_phrases(&project), json!({"phrases": ["гарантия"]}))
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");

    // An archived project is read-only.
    let (status, archived) = admin.delete(&format!("{API}/projects/{project}")).await;
    assert_eq!(status, StatusCode::OK, "{archived}");
    let (status, body) = admin
        .put(
            &max_length(&project, &channels.sms),
            json!({"max_chars": 70}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "archived");
    let (status, body) = admin
        .put(&banned_phrases(&project), json!({"phrases": ["гарантия"]}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "archived");
}

/// The rows of a read-model table that belong to one project, in a stable order.
async fn rows(server: &TestServer, table: &str, key: &str, project: &str) -> Value {
    let (rows,): (Value,) = sqlx::query_as(&format!(
        "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text), '[]'::jsonb)
           FROM {table} t WHERE {key} = $1::uuid"
    ))
    .bind(project)
    .fetch_one(&server.pool)
    .await
    .expect("rows");
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projects_read_model_rebuilds_with_its_guardrails() {
    let (server, admin) = start().await;
    let (project, channels, _) = project(&admin).await;
    for (url, body) in [
        (
            max_length(&project, &channels.sms),
            json!({"max_chars": 70}),
        ),
        (
            max_length(&project, &channels.push),
            json!({"max_chars": null}),
        ),
        (
            banned_phrases(&project),
            json!({"phrases": ["гарантия", "без отказа"]}),
        ),
    ] {
        let (status, answer) = admin.put(&url, body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let caught_up = || async {
        let written = server.latest_write().await;
        let token = written["consistency_token"]
            .as_str()
            .expect("a token")
            .parse()
            .expect("token");
        assert!(server
            .state
            .engine
            .wait_for(token, Duration::from_secs(10))
            .await
            .expect("wait"));
    };
    caught_up().await;
    let live = (
        rows(&server, "projects", "id", &project).await,
        rows(&server, "project_channels", "project_id", &project).await,
    );
    assert_eq!(
        live.0[0]["banned_phrases"],
        json!(["гарантия", "без отказа"])
    );
    server
        .state
        .engine
        .rebuild("projects", |_| {})
        .await
        .expect("rebuild");
    caught_up().await;
    let rebuilt = (
        rows(&server, "projects", "id", &project).await,
        rows(&server, "project_channels", "project_id", &project).await,
    );
    assert_eq!(live, rebuilt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_document_describes_the_guardrail_endpoints() {
    let document = serde_json::to_value(offerflow_http::openapi()).expect("document");
    let paths = &document["paths"];
    for path in [
        "/projects/{id}/channels/{channel_id}/max-length",
        "/projects/{id}/banned-phrases",
    ] {
        let put = &paths[path]["put"];
        assert!(put.is_object(), "PUT {path} documented: {}", paths[path]);
        assert!(put["requestBody"].is_object(), "{put}");
        assert!(put["responses"]["422"].is_object(), "{put}");
    }
    let schemas = &document["components"]["schemas"];
    assert!(schemas["MaxLengthChange"]["required"]
        .as_array()
        .is_some_and(|r| r.contains(&json!("max_chars"))));
    assert!(schemas["ProjectChannelView"]["properties"]["max_chars"].is_object());
    assert!(schemas["ProjectView"]["properties"]["banned_phrases"].is_object());
}
