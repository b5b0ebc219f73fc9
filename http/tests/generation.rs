//! A client request's generations as the log and the read models record them: requested, a
//! result delivered more than once, a permanent failure, a rating.
mod common;

use std::time::Duration;

use common::{client_data, project_with_channels, TestServer};
use domain::chat::SamplingParams;
use domain::client_request::{ClientRequest, ClientRequestCommand, MessageRating};
use domain::prompt::{offer_messages, OfferContext, Persona};
use offerflow_http::commands::Executed;
use offerflow_http::server::cli_metadata;
use reqwest::StatusCode;
use uuid::Uuid;

async fn run(server: &TestServer, request: Uuid, command: ClientRequestCommand) -> Executed {
    let done = server
        .state
        .bus
        .execute(
            &server.state.bus.requests,
            request,
            command,
            &cli_metadata(),
        )
        .await
        .expect("command accepted");
    if let Some(token) = done.token {
        assert!(server
            .state
            .engine
            .wait_for(token, Duration::from_secs(10))
            .await
            .expect("wait"));
    }
    done
}

async fn status(server: &TestServer, request: Uuid) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, status_reason FROM client_requests WHERE id = $1")
        .bind(request)
        .fetch_one(&server.pool)
        .await
        .expect("request row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_moves_the_request_to_in_progress_then_ok_and_a_repeat_result_changes_nothing()
{
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let (created_status, created) = admin
        .post(
            &format!("/api/v1/projects/{project}/channels/{sms}/requests"),
            client_data(3),
        )
        .await;
    assert_eq!(created_status, StatusCode::CREATED, "{created}");
    let request: Uuid = created["id"].as_str().expect("id").parse().expect("uuid");
    let state: ClientRequest = server.state.bus.load(request).await.expect("request");
    let messages = offer_messages(
        &Persona::default(),
        &OfferContext {
            project_description: "Осенняя акция",
            product_description: "Кредитная карта",
            channel_name: "СМС",
            channel_description: "Короткое сообщение",
            channel_prompt: "",
            prompt_version: 1,
            max_chars: Some(160),
        },
        &state.client_data,
        &state.client_data_decoding,
    );

    let (generation, asked, offer) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    run(
        &server,
        request,
        ClientRequestCommand::RequestGeneration {
            generation_id: generation,
            user_message_id: asked,
            parent_message_id: None,
            instruction: None,
            messages: messages.clone(),
            model: "SmolLM2-135M-Instruct".into(),
            prompt_version: 1,
            params: SamplingParams::default(),
        },
    )
    .await;
    assert_eq!(status(&server, request).await.0, "in_progress");
    let (logged,): (serde_json::Value,) = sqlx::query_as(
        "SELECT payload FROM events WHERE aggregate_id = $1 AND event_type = 'GenerationRequested'",
    )
    .bind(request.to_string())
    .fetch_one(&server.pool)
    .await
    .expect("event");
    assert_eq!(
        logged["GenerationRequested"]["messages"],
        serde_json::to_value(&messages).expect("json"),
        "the log holds the exact prompt"
    );

    let complete = ClientRequestCommand::CompleteGeneration {
        generation_id: generation,
        message_id: offer,
        text: "Оформите кредитную карту с кешбэком!".into(),
        model: "SmolLM2-135M-Instruct".into(),
        prompt_tokens: 120,
        completion_tokens: 9,
        duration_ms: 340,
        flags: vec![],
    };
    assert!(run(&server, request, complete.clone()).await.changed);
    assert!(
        !run(&server, request, complete).await.changed,
        "a second delivery of one result records nothing"
    );
    assert_eq!(status(&server, request).await.0, "ok");
    let thread: Vec<(Uuid, Option<Uuid>, String, i32)> = sqlx::query_as(
        "SELECT id, parent_id, message_type, prompt_version FROM client_request_messages
          WHERE request_id = $1 ORDER BY created_at, message_type DESC",
    )
    .bind(request)
    .fetch_all(&server.pool)
    .await
    .expect("thread");
    assert_eq!(
        thread,
        [
            (asked, None, "user".to_string(), 1),
            (offer, Some(asked), "system".to_string(), 1)
        ]
    );

    run(
        &server,
        request,
        ClientRequestCommand::RateMessage {
            message_id: offer,
            rating: MessageRating::Revision,
            comment: Some("длинновато".into()),
        },
    )
    .await;
    let (rating, comment): (String, Option<String>) =
        sqlx::query_as("SELECT rating, rating_comment FROM client_request_messages WHERE id = $1")
            .bind(offer)
            .fetch_one(&server.pool)
            .await
            .expect("rating");
    assert_eq!(
        (rating.as_str(), comment.as_deref()),
        ("revision", Some("длинновато"))
    );

    // A follow-up that fails for good: the request shows the error and why.
    let (thread, text) = state_thread(&server, request, offer).await;
    let follow_up = Uuid::new_v4();
    run(
        &server,
        request,
        ClientRequestCommand::RequestGeneration {
            generation_id: follow_up,
            user_message_id: Uuid::new_v4(),
            parent_message_id: Some(offer),
            instruction: Some("Короче".into()),
            messages: domain::prompt::follow_up_messages(&thread, &text, "Короче"),
            model: "SmolLM2-135M-Instruct".into(),
            prompt_version: 1,
            params: SamplingParams::default(),
        },
    )
    .await;
    for (attempt, permanent) in [(1, false), (2, true)] {
        run(
            &server,
            request,
            ClientRequestCommand::FailGeneration {
                generation_id: follow_up,
                error: "the prompt does not fit the context".into(),
                attempt,
                permanent,
            },
        )
        .await;
        let expected = if permanent { "error" } else { "in_progress" };
        assert_eq!(status(&server, request).await.0, expected);
    }
    assert_eq!(
        status(&server, request).await.1.as_deref(),
        Some("the prompt does not fit the context")
    );
}

async fn state_thread(
    server: &TestServer,
    request: Uuid,
    offer: Uuid,
) -> (Vec<domain::chat::ChatMessage>, String) {
    let state: ClientRequest = server.state.bus.load(request).await.expect("request");
    state.thread_for(offer).expect("the offer's thread")
}
