//! Audit history and time travel against a real server and PostgreSQL: a scripted campaign is
//! observed live at three moments, and `?as_of=` those moments must answer the same states,
//! folded from the log; histories, the audit feed and its export name who did what; an event
//! of the old `OutcomeRecorded` schema reads as the new one on every path.
mod common;

use chrono::{DateTime, SecondsFormat, Utc};
use common::{client_data, project_with_channels, Client, TestServer};
use domain::client_request::{ClientRequest, ClientRequestCommand, Outcome};
use domain::metadata::{Actor, EventMetadata};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

#[track_caller]
fn assert_names_field(body: &Value, field: &str) {
    let fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(fields.contains(&field), "{field} among the fields: {body}");
}

fn at(t: DateTime<Utc>) -> String {
    // `Z`, not `+00:00`: a `+` in a query string is a space.
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// What a reader saw at a moment: the request and the project as the live API answered.
struct Seen {
    at: DateTime<Utc>,
    request: Value,
    project: Value,
}

async fn observe(server: &TestServer, manager: &Client, request: &str, project: &str) -> Seen {
    let fresh = server.latest_write().await;
    let (status, request) = manager
        .get_after(&format!("/api/v1/requests/{request}"), &fresh)
        .await;
    assert_eq!(status, StatusCode::OK, "{request}");
    let (status, project) = manager
        .get_after(&format!("/api/v1/projects/{project}"), &fresh)
        .await;
    assert_eq!(status, StatusCode::OK, "{project}");
    Seen {
        at: Utc::now(),
        request,
        project,
    }
}

fn types(history: &Value) -> Vec<&str> {
    history["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["event_type"].as_str().expect("event_type"))
        .collect()
}

#[tokio::test]
async fn as_of_answers_what_was_seen_then_and_history_tells_who_did_it() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (manager_id, manager) = server.user(&admin, "manager@bank.test").await;
    let (performer_id, performer) = server.user(&admin, "performer@bank.test").await;
    let (_, outsider) = server.user(&admin, "outsider@bank.test").await;
    let before_project = Utc::now();

    let (project, sms, email) = project_with_channels(&manager).await;
    let (status, body) = manager
        .post(
            &format!("/api/v1/projects/{project}/members"),
            json!({"user_id": performer_id, "role": "performer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = performer
        .post(
            &format!("/api/v1/projects/{project}/channels/{sms}/requests"),
            client_data(1),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let request = body["id"].as_str().expect("id").to_string();
    let t1 = observe(&server, &manager, &request, &project).await;

    // Between t1 and t2: a new prompt, an outcome, an offer generated and rated, a new name.
    let (status, body) = manager
        .patch(
            &format!("/api/v1/projects/{project}/channels/{sms}"),
            json!({"prompt": "Пиши коротко и по делу, обращайся на вы."}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = performer
        .put(
            &format!("/api/v1/requests/{request}/outcome"),
            json!({"success_type": "interest"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = performer
        .post(
            &format!("/api/v1/requests/{request}/generations"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let generation: Uuid = body["generation_id"]
        .as_str()
        .expect("generation_id")
        .parse()
        .expect("uuid");
    let request_id: Uuid = request.parse().expect("uuid");
    // The worker's result, recorded as a worker records it (no model needed for history).
    let offer = Uuid::new_v4();
    let done = server
        .state
        .bus
        .execute(
            &server.state.bus.requests,
            request_id,
            ClientRequestCommand::CompleteGeneration {
                generation_id: generation,
                message_id: offer,
                text: "Кэшбэк 5% на всё этой осенью.".into(),
                model: "SmolLM2-135M-Instruct".into(),
                prompt_tokens: 120,
                completion_tokens: 14,
                duration_ms: 850,
                flags: vec!["boilerplate_removed".into()],
            },
            &EventMetadata::new(Actor::Process("test-worker".into()), "test-run"),
        )
        .await
        .expect("the offer is recorded");
    let offered = done.token.map(|t| t.to_string());
    let (status, body) = performer
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/messages/{offer}/rating"),
            Some(json!({"status": "ok", "comment": "годится"})),
            offered.as_deref(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = manager
        .patch(
            &format!("/api/v1/projects/{project}"),
            json!({"name": "Осень: кэшбэк"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let t2 = observe(&server, &manager, &request, &project).await;

    // Between t2 and t3: the sale, credited to the manager; banned phrases; a detached channel;
    // another client.
    let (status, body) = performer
        .put(
            &format!("/api/v1/requests/{request}/outcome"),
            json!({"success_type": "sold", "credited_to": manager_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = manager
        .put(
            &format!("/api/v1/projects/{project}/banned-phrases"),
            json!({"phrases": ["гарантированно"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = manager
        .delete(&format!("/api/v1/projects/{project}/channels/{email}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = performer
        .post(
            &format!("/api/v1/projects/{project}/channels/{sms}/requests"),
            client_data(2),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let t3 = observe(&server, &manager, &request, &project).await;

    // The three moments differ, so matching them is not matching one state three times.
    assert_eq!(t1.request["success_type"], "undefined");
    assert_eq!(t2.request["success_type"], "interest");
    assert_eq!(t3.request["success_type"], "sold");
    assert_eq!(t2.request["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(t2.request["messages"][1]["prompt_version"], 2);
    assert_eq!(t2.request["messages"][1]["status"], "ok");
    assert_eq!(t3.project["requests"], 2);
    assert_eq!(t3.project["channels"], 1);
    for seen in [&t1, &t2, &t3] {
        let (status, then) = manager
            .get(&format!("/api/v1/requests/{request}?as_of={}", at(seen.at)))
            .await;
        assert_eq!(status, StatusCode::OK, "{then}");
        assert_eq!(then, seen.request, "the request as of {}", seen.at);
        let (status, then) = manager
            .get(&format!("/api/v1/projects/{project}?as_of={}", at(seen.at)))
            .await;
        assert_eq!(status, StatusCode::OK, "{then}");
        assert_eq!(then, seen.project, "the project as of {}", seen.at);
    }
    // A member sees the past too; an outsider learns nothing.
    let (status, then) = performer
        .get(&format!("/api/v1/requests/{request}?as_of={}", at(t2.at)))
        .await;
    assert_eq!((status, &then), (StatusCode::OK, &t2.request));
    let (status, _) = outsider
        .get(&format!("/api/v1/requests/{request}?as_of={}", at(t2.at)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = outsider
        .get(&format!("/api/v1/projects/{project}?as_of={}", at(t2.at)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Before they existed: 404; a time that is not one: 400 naming as_of.
    let (status, body) = manager
        .get(&format!(
            "/api/v1/projects/{project}?as_of={}",
            at(before_project)
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = manager
        .get(&format!(
            "/api/v1/requests/{request}?as_of={}",
            at(before_project)
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    for bad in ["yesterday", "2026-11-20", "2026-13-01T00:00:00Z"] {
        let (status, body) = manager
            .get(&format!("/api/v1/requests/{request}?as_of={bad}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_names_field(&body, "as_of");
        let (status, body) = manager
            .get(&format!("/api/v1/projects/{project}?as_of={bad}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_names_field(&body, "as_of");
    }

    // The request's history: every event in order, with who did it.
    let (status, history) = performer
        .get(&format!("/api/v1/requests/{request}/history"))
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(
        types(&history),
        [
            "ClientRequestCreated",
            "OutcomeRecorded",
            "GenerationRequested",
            "MessageGenerated",
            "MessageRated",
            "OutcomeRecorded"
        ]
    );
    assert_eq!(history["total"], 6);
    let items = history["items"].as_array().expect("items");
    for (n, item) in items.iter().enumerate() {
        assert_eq!(item["sequence"], n as i64 + 1);
    }
    let created = &items[0];
    assert_eq!(created["actor"]["kind"], "user");
    assert_eq!(created["actor"]["id"], performer_id.to_string());
    assert_eq!(created["actor"]["name"], "performer@bank.test");
    assert_eq!(created["payload"]["project_id"], project);
    assert!(created["correlation_id"]
        .as_str()
        .is_some_and(|c| !c.is_empty()));
    assert_eq!(items[1]["payload"]["outcome"], "interest");
    assert_eq!(items[1]["payload"]["credited_to"], performer_id.to_string());
    assert_eq!(items[3]["actor"]["kind"], "process");
    assert_eq!(items[3]["actor"]["name"], "test-worker");
    assert_eq!(items[3]["correlation_id"], "test-run");
    assert_eq!(items[5]["payload"]["credited_to"], manager_id.to_string());
    let (status, page) = manager
        .get(&format!(
            "/api/v1/requests/{request}/history?limit=2&offset=2"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(types(&page), ["GenerationRequested", "MessageGenerated"]);
    assert_eq!(page["total"], 6);
    let (status, body) = manager
        .get(&format!("/api/v1/requests/{request}/history?limit=0"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_names_field(&body, "limit");

    // The project's history, seen by its members only.
    let (status, history) = performer
        .get(&format!("/api/v1/projects/{project}/history"))
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(types(&history)[0], "ProjectCreated");
    assert_eq!(history["items"][0]["actor"]["name"], "manager@bank.test");
    assert!(types(&history).contains(&"ChannelPromptChanged"));
    assert_eq!(types(&history).last(), Some(&"ChannelDetached"));
    for path in [
        format!("/api/v1/projects/{project}/history"),
        format!("/api/v1/requests/{request}/history"),
    ] {
        let (status, body) = outsider.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (status, _) = manager
        .get(&format!("/api/v1/requests/{}/history", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The catalog's history is everyone's; a user's is their own and the admins'.
    let (status, history) = outsider
        .get(&format!("/api/v1/channels/{sms}/history"))
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(types(&history)[0], "SalesChannelCreated");
    assert_eq!(history["items"][0]["actor"]["kind"], "cli");
    let product = t1.project["product"]["id"].as_str().expect("product id");
    let (status, history) = outsider
        .get(&format!("/api/v1/products/{product}/history"))
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(types(&history)[0], "ProductCreated");
    let (status, history) = performer
        .get(&format!("/api/v1/users/{performer_id}/history"))
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(types(&history)[0], "UserRegistered");
    let (status, _) = performer
        .get(&format!("/api/v1/users/{manager_id}/history"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = admin
        .get(&format!("/api/v1/users/{manager_id}/history"))
        .await;
    assert_eq!(status, StatusCode::OK);

    // The audit feed: admins only, filtered, in log order, exported as JSON lines.
    let (status, _) = manager.get("/api/v1/audit/events").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, feed) = admin
        .get(&format!(
            "/api/v1/audit/events?actor={performer_id}&aggregate_type=ClientRequest&limit=500"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    // The performer created two requests, recorded two outcomes, asked for and rated an offer.
    assert_eq!(feed["total"], 6, "{feed}");
    let positions: Vec<i64> = feed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            assert_eq!(e["actor"]["id"], performer_id.to_string());
            assert_eq!(e["aggregate_type"], "ClientRequest");
            e["global_position"].as_i64().expect("position")
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let (status, feed) = admin
        .get(&format!(
            "/api/v1/audit/events?event_type=OutcomeRecorded&from={}&to={}",
            at(t1.at),
            at(t2.at)
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    assert_eq!(feed["total"], 1, "{feed}");
    assert_eq!(feed["items"][0]["payload"]["outcome"], "interest");
    let (status, feed) = admin
        .get(&format!(
            "/api/v1/audit/events?actor=test-worker&from={}",
            at(t1.at)
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    assert_eq!(types(&feed), ["MessageGenerated"]);
    for (query, field) in [
        ("aggregate_type=Request", "aggregate_type"),
        ("from=friday", "from"),
        ("to=2026-11-20", "to"),
        ("event_type=Outcome%20Recorded", "event_type"),
        ("format=csv", "format"),
        ("limit=501", "limit"),
    ] {
        let (status, body) = admin.get(&format!("/api/v1/audit/events?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_names_field(&body, field);
    }
    let (status, body) = admin
        .get(&format!(
            "/api/v1/audit/events?from={}&to={}",
            at(t2.at),
            at(t1.at)
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, all) = admin.get("/api/v1/audit/events?limit=1").await;
    assert_eq!(status, StatusCode::OK);
    let response = admin
        .http
        .get(format!("{}/api/v1/audit/events?format=jsonl", admin.base))
        .bearer_auth(admin.token.as_deref().expect("token"))
        .send()
        .await
        .expect("export");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.expect("export read");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON event"))
        .collect();
    assert_eq!(lines.len() as i64, all["total"].as_i64().expect("total"));
    assert_eq!(lines[0], all["items"][0]);
    let exported: Vec<i64> = lines
        .iter()
        .map(|e| e["global_position"].as_i64().expect("position"))
        .collect();
    assert!(exported.windows(2).all(|w| w[0] < w[1]), "log order");
    let (_, filtered) = admin
        .get(&format!(
            "/api/v1/audit/events?format=jsonl&aggregate_id={request}"
        ))
        .await;
    // One line per event: the body is not one JSON value but six.
    let filtered = filtered.as_str().expect("jsonl text");
    assert_eq!(filtered.lines().count(), 6);
}

/// An `OutcomeRecorded` written before `credited_to` existed (schema version 1) reads as
/// version 2, credited to the user who recorded it, on every path that reads the log.
#[tokio::test]
async fn a_v1_outcome_is_upcast_wherever_it_is_read() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (_, manager) = server.user(&admin, "manager@bank.test").await;
    let (performer_id, performer) = server.user(&admin, "performer@bank.test").await;
    let (project, sms, _) = project_with_channels(&manager).await;
    let (status, body) = manager
        .post(
            &format!("/api/v1/projects/{project}/members"),
            json!({"user_id": performer_id, "role": "performer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = performer
        .post(
            &format!("/api/v1/projects/{project}/channels/{sms}/requests"),
            client_data(7),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let request: Uuid = body["id"].as_str().expect("id").parse().expect("uuid");

    // As an older build wrote it: version 1, no `credited_to`.
    let (tx, position): (String, i64) = sqlx::query_as(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('ClientRequest', $1, 2, 'OutcomeRecorded', '1', $2, $3)
         RETURNING transaction_id::text, global_position",
    )
    .bind(request.to_string())
    .bind(json!({"OutcomeRecorded": {"outcome": "negative_reaction"}}))
    .bind(json!({
        "actor_kind": "user", "actor_id": performer_id.to_string(),
        "correlation_id": "legacy-build", "command_id": Uuid::new_v4().to_string(),
        "schema_version": "1"
    }))
    .fetch_one(&server.pool)
    .await
    .expect("a v1 event is recorded");
    let written = json!({"consistency_token": format!("{tx}.{position}")});

    // Aggregate loading: the domain decides on the upcast event.
    server.state.bus.requests.forget(request);
    let loaded: ClientRequest = server.state.bus.load(request).await.expect("loads");
    assert_eq!(loaded.outcome, Some(Outcome::NegativeReaction));
    assert_eq!(loaded.outcome_credited_to, Some(performer_id));
    // The same outcome for the same person is no change.
    let (status, body) = performer
        .put(
            &format!("/api/v1/requests/{request}/outcome"),
            json!({"success_type": "negative_reaction"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, history) = performer
        .get_after(
            &format!("/api/v1/requests/{request}/history"),
            &server.latest_write().await,
        )
        .await;
    assert_eq!(history["total"], 2, "{history}");

    // The projections' reader.
    let (status, live) = performer
        .get_after(&format!("/api/v1/requests/{request}"), &written)
        .await;
    assert_eq!(status, StatusCode::OK, "{live}");
    assert_eq!(live["success_type"], "negative_reaction");

    // History and the audit feed show version 2 with the credit.
    let outcome = &history["items"][1];
    assert_eq!(outcome["event_version"], "2");
    assert_eq!(outcome["payload"]["outcome"], "negative_reaction");
    assert_eq!(outcome["payload"]["credited_to"], performer_id.to_string());
    assert_eq!(outcome["actor"]["name"], "performer@bank.test");
    let (status, feed) = admin
        .get(&format!(
            "/api/v1/audit/events?aggregate_id={request}&event_type=OutcomeRecorded"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    assert_eq!(feed["items"][0]["event_version"], "2");
    assert_eq!(
        feed["items"][0]["payload"]["credited_to"],
        performer_id.to_string()
    );

    // Time travel folds the upcast event too.
    let (status, now) = performer
        .get(&format!(
            "/api/v1/requests/{request}?as_of={}",
            at(Utc::now())
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{now}");
    assert_eq!(now, live);

    // New outcomes are written as version 2.
    let (status, body) = performer
        .put(
            &format!("/api/v1/requests/{request}/outcome"),
            json!({"success_type": "sold"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (version,): (String,) =
        sqlx::query_as("SELECT event_version FROM events WHERE aggregate_id = $1 AND sequence = 3")
            .bind(request.to_string())
            .fetch_one(&server.pool)
            .await
            .expect("the new outcome");
    assert_eq!(version, "2");
    // Crediting a stranger is refused, naming the field.
    let (status, body) = performer
        .put(
            &format!("/api/v1/requests/{request}/outcome"),
            json!({"success_type": "sold", "credited_to": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_names_field(&body, "credited_to");
}

/// Records a reviewer's response from Argilla as the sync does, through the bus.
async fn review(
    server: &TestServer,
    request: Uuid,
    offer: Uuid,
    (reviewer, response_id): (&str, &str),
    quality: domain::client_request::MessageRating,
    corrected_text: Option<&str>,
    rating: Option<u8>,
) {
    server
        .state
        .bus
        .execute(
            &server.state.bus.requests,
            request,
            ClientRequestCommand::RecordReview {
                message_id: offer,
                reviewer: reviewer.into(),
                quality,
                corrected_text: corrected_text.map(str::to_string),
                rating,
                response_id: response_id.into(),
                response_updated_at: "2026-11-24T10:00:00Z".into(),
            },
            &EventMetadata::new(Actor::Process("argilla-sync".into()), "test-run"),
        )
        .await
        .expect("the review is recorded");
}

#[tokio::test]
async fn as_of_shows_the_review_an_offer_had_then() {
    use domain::client_request::MessageRating;
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (_, manager) = server.user(&admin, "manager@bank.test").await;
    let (project, sms, _) = project_with_channels(&manager).await;
    let (status, body) = manager
        .post(
            &format!("/api/v1/projects/{project}/channels/{sms}/requests"),
            client_data(1),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let request = body["id"].as_str().expect("id").to_string();
    let request_id: Uuid = request.parse().expect("uuid");
    let (status, body) = manager
        .post(
            &format!("/api/v1/requests/{request}/generations"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let generation: Uuid = body["generation_id"]
        .as_str()
        .expect("generation_id")
        .parse()
        .expect("uuid");
    let offer = Uuid::new_v4();
    server
        .state
        .bus
        .execute(
            &server.state.bus.requests,
            request_id,
            ClientRequestCommand::CompleteGeneration {
                generation_id: generation,
                message_id: offer,
                text: "Кэшбэк 5% на всё этой осенью.".into(),
                model: "SmolLM2-135M-Instruct".into(),
                prompt_tokens: 120,
                completion_tokens: 14,
                duration_ms: 850,
                flags: vec![],
            },
            &EventMetadata::new(Actor::Process("test-worker".into()), "test-run"),
        )
        .await
        .expect("the offer is recorded");
    let unreviewed = observe(&server, &manager, &request, &project).await;

    review(
        &server,
        request_id,
        offer,
        ("alice", "response-1"),
        MessageRating::Revision,
        Some("Кэшбэк 5% на все покупки до конца ноября."),
        Some(2),
    )
    .await;
    let revised = observe(&server, &manager, &request, &project).await;
    // A later review by someone else replaces the first: no corrected text, no rating now.
    review(
        &server,
        request_id,
        offer,
        ("bob", "response-2"),
        MessageRating::Ok,
        None,
        None,
    )
    .await;
    let approved = observe(&server, &manager, &request, &project).await;

    let shown = |seen: &Seen| {
        let message = &seen.request["messages"][1];
        assert_eq!(message["id"], offer.to_string(), "{}", seen.request);
        json!([
            message["review_quality"],
            message["review_corrected_text"],
            message["review_rating"],
            message["reviewed_by"],
            message["reviewed_at"].is_string(),
        ])
    };
    assert_eq!(shown(&unreviewed), json!([null, null, null, null, false]));
    assert_eq!(
        shown(&revised),
        json!([
            "revision",
            "Кэшбэк 5% на все покупки до конца ноября.",
            2,
            "alice",
            true
        ])
    );
    assert_eq!(shown(&approved), json!(["ok", null, null, "bob", true]));
    for seen in [&unreviewed, &revised, &approved] {
        let (status, then) = manager
            .get(&format!("/api/v1/requests/{request}?as_of={}", at(seen.at)))
            .await;
        assert_eq!(status, StatusCode::OK, "{then}");
        assert_eq!(then, seen.request, "the request as of {}", seen.at);
    }
}
