//! Statistics for managers, over real HTTP: after a scripted scenario (three projects, two
//! channels, two client clusters, changed outcomes, generations at two prompt versions, failures,
//! changed ratings, reviews from Argilla, one replaced by a later one), every figure equals the one counted by hand; a rebuild of the read model
//! gives the same figures; projects and dates filter; only managers and admins may read them;
//! the CSV and XLSX exports read back with the same figures.
mod common;

use std::io::Cursor;
use std::time::Duration;

use calamine::{Data, DataType, Reader, Xlsx};
use common::{catalog_id, Client, TestServer};
use domain::chat::{ChatMessage, ChatRole, SamplingParams};
use domain::client_request::{ClientRequestCommand, MessageRating};
use offerflow_http::server::cli_metadata;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

const API: &str = "/api/v1";

async fn run(server: &TestServer, request: &str, command: ClientRequestCommand) {
    let id: Uuid = request.parse().expect("uuid");
    let done = server
        .state
        .bus
        .execute(&server.state.bus.requests, id, command, &cli_metadata())
        .await
        .expect("command accepted");
    // Ratings find their offer in the read models: let them catch up.
    if let Some(token) = done.token {
        assert!(server
            .state
            .engine
            .wait_for(token, Duration::from_secs(10))
            .await
            .expect("wait"));
    }
}

fn ask(generation: Uuid, prompt_version: u32) -> ClientRequestCommand {
    ClientRequestCommand::RequestGeneration {
        generation_id: generation,
        user_message_id: Uuid::new_v4(),
        parent_message_id: None,
        instruction: None,
        messages: vec![ChatMessage::new(ChatRole::User, "Предложите карту")],
        model: "SmolLM2-135M-Instruct".into(),
        prompt_version,
        params: SamplingParams::default(),
    }
}

/// Records a reviewer's response from Argilla, as the sync does.
async fn review(
    server: &TestServer,
    request: &str,
    offer: Uuid,
    response_id: &str,
    quality: MessageRating,
    corrected_text: Option<&str>,
    rating: Option<u8>,
) {
    run(
        server,
        request,
        ClientRequestCommand::RecordReview {
            message_id: offer,
            reviewer: "reviewer".into(),
            quality,
            corrected_text: corrected_text.map(str::to_string),
            rating,
            response_id: response_id.into(),
            response_updated_at: "2026-11-24T10:00:00Z".into(),
        },
    )
    .await;
}

/// Asks for a text at `prompt_version` and records it; returns the offer's id.
async fn generate(
    server: &TestServer,
    request: &str,
    prompt_version: u32,
    completion_tokens: u32,
    duration_ms: u64,
) -> Uuid {
    let generation = Uuid::new_v4();
    run(server, request, ask(generation, prompt_version)).await;
    let offer = Uuid::new_v4();
    run(
        server,
        request,
        ClientRequestCommand::CompleteGeneration {
            generation_id: generation,
            message_id: offer,
            text: format!("Оффер версии {prompt_version} за {duration_ms} мс"),
            model: "SmolLM2-135M-Instruct".into(),
            prompt_tokens: 100,
            completion_tokens,
            duration_ms,
            flags: vec![],
        },
    )
    .await;
    offer
}

async fn new_project(manager: &Client, product: &str, channels: &[&str]) -> String {
    let (status, body) = manager
        .post(
            &format!("{API}/projects"),
            json!({"name": format!("Кампания {}", Uuid::new_v4()), "product_id": product, "description": "Статистика"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let project = body["id"].as_str().expect("id").to_string();
    let (status, body) = manager
        .post(
            &format!("{API}/projects/{project}/channels"),
            json!({ "channel_ids": channels }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    project
}

async fn add_client(
    who: &Client,
    project: &str,
    channel: &str,
    client_id: &str,
    cluster: &str,
) -> String {
    let (status, body) = who
        .post(
            &format!("{API}/projects/{project}/channels/{channel}/requests"),
            json!({
                "client_id": client_id,
                // The client's number in its age, so that every client differs.
                "client_data": {"age": 40 + client_id[1..].parse::<u32>().expect("rN"), "super_clust": cluster},
                "client_data_decoding": {"age": "Возраст Клиента", "super_clust": "Кластер клиента"}
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().expect("id").to_string()
}

async fn outcome(who: &Client, request: &str, outcome: &str) {
    let (status, body) = who
        .put(
            &format!("{API}/requests/{request}/outcome"),
            json!({ "success_type": outcome }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn rate(who: &Client, message: Uuid, rating: &str) {
    let (status, body) = who
        .put(
            &format!("{API}/messages/{message}/rating"),
            json!({ "status": rating }),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
}

/// The 95% Wilson interval, written out again here so the server's is checked against an
/// independent computation.
fn wilson(k: f64, n: f64) -> (f64, f64) {
    let z = 1.96f64;
    let p = k / n;
    let centre = p + z * z / (2.0 * n);
    let spread = z * ((p * (1.0 - p) + z * z / (4.0 * n)) / n).sqrt();
    let denominator = 1.0 + z * z / n;
    (
        (centre - spread) / denominator,
        (centre + spread) / denominator,
    )
}

fn close(actual: &Value, expected: f64, tolerance: f64) -> bool {
    actual
        .as_f64()
        .is_some_and(|a| (a - expected).abs() <= tolerance)
}

/// Rows of a figure as (key fields → count), for comparisons that ignore order.
fn counts(figure: &Value, key: &[&str], count: &str) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = figure
        .as_array()
        .expect("a list")
        .iter()
        .map(|row| {
            let key = key
                .iter()
                .map(|k| match &row[*k] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("/");
            (key, row[count].as_i64().expect("a count"))
        })
        .collect();
    rows.sort();
    rows
}

fn sorted(mut rows: Vec<(String, i64)>) -> Vec<(String, i64)> {
    rows.sort();
    rows
}

struct Scenario {
    server: TestServer,
    admin: Client,
    manager: Client,
    other_manager: Client,
    performer: Client,
    outsider: Client,
    a: String,
    b: String,
    c: String,
    sms: String,
    email: String,
    cc: String,
    pk: String,
    /// The latest offer of r1 (rated ok, then error) and its text.
    r1: String,
}

async fn scenario() -> Scenario {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (_, manager) = server.user(&admin, "manager@bank.test").await;
    let (_, other_manager) = server.user(&admin, "other@bank.test").await;
    let (performer_id, performer) = server.user(&admin, "performer@bank.test").await;
    let (_, outsider) = server.user(&admin, "outsider@bank.test").await;
    let cc = catalog_id(&admin, "products", "CC").await;
    let pk = catalog_id(&admin, "products", "PK").await;
    let sms = catalog_id(&admin, "channels", "SMS").await;
    let email = catalog_id(&admin, "channels", "EMAIL").await;

    // A (credit cards: SMS and email, a performer), B (cash loans: SMS), both the manager's;
    // C (credit cards: SMS) another manager's.
    let a = new_project(&manager, &cc, &[&sms, &email]).await;
    let b = new_project(&manager, &pk, &[&sms]).await;
    let c = new_project(&other_manager, &cc, &[&sms]).await;
    let (status, body) = manager
        .post(
            &format!("{API}/projects/{a}/members"),
            json!({"user_id": performer_id, "role": "performer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let r1 = add_client(&performer, &a, &sms, "r1", "k1").await;
    let r2 = add_client(&performer, &a, &sms, "r2", "k1").await;
    let r3 = add_client(&performer, &a, &sms, "r3", "k1").await;
    let _r4 = add_client(&performer, &a, &sms, "r4", "k2").await;
    let r5 = add_client(&manager, &a, &email, "r5", "k1").await;
    let r6 = add_client(&manager, &a, &email, "r6", "k1").await;
    let r7 = add_client(&manager, &b, &sms, "r7", "k2").await;
    let _r8 = add_client(&manager, &b, &sms, "r8", "k2").await;
    let r9 = add_client(&other_manager, &c, &sms, "r9", "k1").await;

    // Outcomes, two of them changed afterwards.
    outcome(&performer, &r1, "sold").await;
    outcome(&performer, &r2, "interest").await;
    outcome(&performer, &r2, "sold").await;
    outcome(&performer, &r3, "negative_reaction").await;
    outcome(&manager, &r5, "sold").await;
    outcome(&manager, &r5, "negative_reaction").await;
    outcome(&manager, &r6, "reflection").await;
    outcome(&manager, &r7, "interest").await;
    outcome(&other_manager, &r9, "sold").await;

    // Generations: r1 at prompt version 1, then again at version 2; r2 at version 1; r3 fails
    // once, then for good; r9 (project C) at version 1.
    let first = generate(&server, &r1, 1, 10, 100).await;
    let second = generate(&server, &r1, 2, 30, 300).await;
    let r2_offer = generate(&server, &r2, 1, 20, 200).await;
    let failing = Uuid::new_v4();
    run(&server, &r3, ask(failing, 1)).await;
    for (attempt, permanent) in [(1, false), (2, true)] {
        run(
            &server,
            &r3,
            ClientRequestCommand::FailGeneration {
                generation_id: failing,
                error: "the context is full".into(),
                attempt,
                permanent,
            },
        )
        .await;
    }
    let r9_offer = generate(&server, &r9, 1, 50, 1000).await;

    // Ratings, one changed.
    rate(&manager, second, "ok").await;
    rate(&manager, second, "error").await;
    rate(&performer, r2_offer, "revision").await;

    // Reviews from Argilla: r1's first text ok (4); its second revision with a corrected text
    // (2), then replaced by another reviewer's error (1, no correction); r2's text revision
    // with a corrected text, no rating; C's text ok (5), not the manager's.
    review(
        &server,
        &r1,
        first,
        "resp-1",
        MessageRating::Ok,
        None,
        Some(4),
    )
    .await;
    review(
        &server,
        &r1,
        second,
        "resp-2",
        MessageRating::Revision,
        Some("Карта с кэшбэком для вас"),
        Some(2),
    )
    .await;
    review(
        &server,
        &r1,
        second,
        "resp-3",
        MessageRating::Error,
        None,
        Some(1),
    )
    .await;
    review(
        &server,
        &r2,
        r2_offer,
        "resp-4",
        MessageRating::Revision,
        Some("Кредитная карта на ваших условиях"),
        None,
    )
    .await;
    review(
        &server,
        &r9,
        r9_offer,
        "resp-5",
        MessageRating::Ok,
        None,
        Some(5),
    )
    .await;

    Scenario {
        server,
        admin,
        manager,
        other_manager,
        performer,
        outsider,
        a,
        b,
        c,
        sms,
        email,
        cc,
        pk,
        r1,
    }
}

impl Scenario {
    async fn get(&self, who: &Client, path: &str) -> (StatusCode, Value) {
        let latest = self.server.latest_write().await;
        who.get_after(path, &latest).await
    }

    async fn figures(&self, who: &Client, path: &str) -> Value {
        let (status, body) = self.get(who, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    async fn bytes(&self, who: &Client, path: &str) -> (StatusCode, String, Vec<u8>) {
        let latest = self.server.latest_write().await;
        let mut request = who.http.get(format!("{}{}", who.base, path)).header(
            "X-Consistency-Token",
            latest["consistency_token"].as_str().expect("token"),
        );
        if let Some(token) = &who.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("sent");
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (
            status,
            content_type,
            response.bytes().await.expect("body").to_vec(),
        )
    }
}

/// The manager's two projects (A and B), as counted by hand from the scenario.
fn check_manager_figures(s: &Scenario, figures: &Value) {
    let sms = s.sms.as_str();
    let email = s.email.as_str();
    assert_eq!(
        figures["totals"],
        // Members: the manager and the performer; channels: SMS and email; requests: r1–r8.
        json!({"members": 2, "channels": 2, "requests": 8}),
        "{figures}"
    );
    assert_eq!(
        counts(&figures["requests_by_product"], &["product_id"], "count"),
        sorted(vec![(s.cc.clone(), 6), (s.pk.clone(), 2)])
    );
    // r1 and r2 sold (r2 after interest), r5's sale turned negative; r7 interested.
    assert_eq!(
        counts(&figures["successes_by_product"], &["product_id"], "count"),
        sorted(vec![(s.cc.clone(), 2), (s.pk.clone(), 1)])
    );
    assert_eq!(
        counts(&figures["channel_popularity"], &["channel_id"], "projects"),
        sorted(vec![(sms.into(), 2), (email.into(), 1)])
    );
    assert_eq!(
        counts(&figures["requests_by_channel"], &["channel_id"], "count"),
        sorted(vec![(sms.into(), 6), (email.into(), 2)])
    );
    assert_eq!(
        counts(&figures["requests_by_outcome"], &["success_type"], "count"),
        sorted(vec![
            ("sold".into(), 2),
            ("negative_reaction".into(), 2),
            ("interest".into(), 1),
            ("reflection".into(), 1),
            ("undefined".into(), 2),
        ])
    );
    let channel_names = figures["requests_by_channel"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["channel"].as_str().expect("name").to_string())
        .collect::<Vec<_>>();
    assert!(
        channel_names.iter().all(|n| !n.is_empty()),
        "channels carry their names: {channel_names:?}"
    );

    // Conversion by channel × cluster × prompt version of the newest text:
    // SMS/k1/v1: r2 (sold), r3 (negative, its text failed); SMS/k1/v2: r1 (sold);
    // SMS/k2/none: r4, r7 (interest), r8; email/k1/none: r5 (negative), r6 (reflection).
    let conversion = figures["conversion"].as_array().expect("conversion");
    let expected: Vec<(&str, &str, Value, i64, i64, i64, i64)> = vec![
        (sms, "k1", json!(1), 2, 1, 0, 1),
        (sms, "k1", json!(2), 1, 1, 0, 0),
        (sms, "k2", Value::Null, 3, 0, 1, 0),
        (email, "k1", Value::Null, 2, 0, 0, 1),
    ];
    assert_eq!(conversion.len(), expected.len(), "{conversion:?}");
    for (channel, cluster, version, requests, sold, interest, negative) in expected {
        let row = conversion
            .iter()
            .find(|r| {
                r["channel_id"] == channel
                    && r["cluster"] == cluster
                    && r["prompt_version"] == version
            })
            .unwrap_or_else(|| {
                panic!("no conversion row {channel}/{cluster}/{version}: {conversion:?}")
            });
        assert_eq!(row["requests"], requests, "{row}");
        assert_eq!(row["sold"], sold, "{row}");
        assert_eq!(row["interest"], interest, "{row}");
        assert_eq!(row["negative"], negative, "{row}");
        let (n, k) = (requests as f64, sold as f64);
        assert!(close(&row["sold_rate"], k / n, 1e-9), "{row}");
        let (low, high) = wilson(k, n);
        assert!(close(&row["ci_low"], low, 1e-4), "{row}: {low}");
        assert!(close(&row["ci_high"], high, 1e-4), "{row}: {high}");
        let won = (sold + interest) as f64;
        assert!(close(&row["success_rate"], won / n, 1e-9), "{row}");
        let (low, high) = wilson(won, n);
        assert!(close(&row["success_ci_low"], low, 1e-4), "{row}");
        assert!(close(&row["success_ci_high"], high, 1e-4), "{row}");
        assert!(
            close(&row["negative_rate"], negative as f64 / n, 1e-9),
            "{row}"
        );
    }

    // Ratings per channel and prompt version: r1's first text unrated, its second ok then
    // error; r2's text revision.
    let ratings = figures["ratings"].as_array().expect("ratings");
    assert_eq!(ratings.len(), 2, "{ratings:?}");
    for row in ratings {
        assert_eq!(row["channel_id"], sms, "{row}");
        let expected = match row["prompt_version"].as_i64() {
            Some(1) => json!([0, 0, 1, 1]),
            Some(2) => json!([0, 1, 0, 0]),
            _ => panic!("unexpected prompt version: {row}"),
        };
        assert_eq!(
            json!([row["ok"], row["error"], row["revision"], row["unrated"]]),
            expected,
            "{row}"
        );
    }

    // Reviews per channel and prompt version, each offer's newest review once:
    // v1: r1's first (ok, 4) and r2's (revision, corrected, unrated); v2: r1's second, whose
    // revision (corrected, 2) was replaced by an error (1).
    let reviews = figures["reviews"].as_array().expect("reviews");
    assert_eq!(reviews.len(), 2, "{reviews:?}");
    for row in reviews {
        assert_eq!(row["channel_id"], sms, "{row}");
        assert!(
            !row["channel"].as_str().unwrap_or_default().is_empty(),
            "{row}"
        );
        let (counts, mean) = match row["prompt_version"].as_i64() {
            Some(1) => (json!([2, 1, 0, 1, 1, 1, 4]), 4.0),
            Some(2) => (json!([1, 0, 1, 0, 0, 1, 1]), 1.0),
            _ => panic!("unexpected prompt version: {row}"),
        };
        assert_eq!(
            json!([
                row["reviewed"],
                row["ok"],
                row["error"],
                row["revision"],
                row["corrected"],
                row["rated"],
                row["rating_sum"]
            ]),
            counts,
            "{row}"
        );
        assert!(close(&row["mean_rating"], mean, 1e-9), "{row}");
    }

    // Generation: three texts of 100, 200 and 300 ms (60 tokens in 0.6 s), two failed
    // attempts, one of them final. The latency histogram reads within 2.5%.
    let generation = figures["generation"].as_array().expect("generation");
    assert_eq!(generation.len(), 1, "{generation:?}");
    let today = generation[0].clone();
    assert_eq!(
        today["day"],
        chrono::Utc::now().date_naive().to_string(),
        "{today}"
    );
    assert_eq!(today["generated"], 3, "{today}");
    assert_eq!(today["failures"], 2, "{today}");
    assert_eq!(today["permanent_failures"], 1, "{today}");
    assert!(close(&today["median_latency_ms"], 200.0, 5.0), "{today}");
    assert!(close(&today["p95_latency_ms"], 300.0, 7.5), "{today}");
    assert!(close(&today["tokens_per_second"], 100.0, 1e-9), "{today}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_equal_the_hand_count_and_survive_a_rebuild() {
    let s = scenario().await;
    let mine = s.figures(&s.manager, &format!("{API}/statistics")).await;
    check_manager_figures(&s, &mine);
    let named = s
        .figures(
            &s.manager,
            &format!("{API}/statistics?project_id={}&project_id={}", s.a, s.b),
        )
        .await;
    assert_eq!(named, mine, "naming the manager's projects is the default");

    // Rebuilt from the log, every figure is the same.
    s.server
        .state
        .engine
        .rebuild("statistics", |_| {})
        .await
        .expect("rebuild");
    let rebuilt = s.figures(&s.manager, &format!("{API}/statistics")).await;
    assert_eq!(rebuilt, mine);
    for project in [&s.a, &s.b, &s.c] {
        let (status, _) = s
            .get(&s.admin, &format!("{API}/projects/{project}/statistics"))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_and_dates_filter_and_bad_parameters_are_named() {
    let s = scenario().await;
    // One project: C alone, as its manager and as an admin see it.
    let c = s
        .figures(
            &s.other_manager,
            &format!("{API}/projects/{}/statistics", s.c),
        )
        .await;
    assert_eq!(
        c["totals"],
        json!({"members": 1, "channels": 1, "requests": 1})
    );
    assert_eq!(
        counts(&c["successes_by_product"], &["product_id"], "count"),
        vec![(s.cc.clone(), 1)]
    );
    assert_eq!(c["generation"][0]["generated"], 1);
    // C's one offer, reviewed ok with a 5.
    let c_reviews = c["reviews"].as_array().expect("reviews");
    assert_eq!(c_reviews.len(), 1, "{c_reviews:?}");
    assert_eq!(
        json!([
            c_reviews[0]["prompt_version"],
            c_reviews[0]["reviewed"],
            c_reviews[0]["ok"],
            c_reviews[0]["rating_sum"],
            c_reviews[0]["mean_rating"]
        ]),
        json!([1, 1, 1, 5, 5.0])
    );
    assert_eq!(
        s.figures(&s.admin, &format!("{API}/statistics?project_id={}", s.c))
            .await["totals"],
        c["totals"]
    );
    // An admin's default is every project: A, B and C (9 requests; 3 distinct members), read
    // from the rows summed per product and over all projects.
    let all = s.figures(&s.admin, &format!("{API}/statistics")).await;
    assert_eq!(all["totals"]["requests"], 9);
    assert_eq!(all["totals"]["members"], 3);
    assert_eq!(
        counts(&all["requests_by_product"], &["product_id"], "count"),
        sorted(vec![(s.cc.clone(), 7), (s.pk.clone(), 2)])
    );
    assert_eq!(
        counts(&all["successes_by_product"], &["product_id"], "count"),
        sorted(vec![(s.cc.clone(), 3), (s.pk.clone(), 1)])
    );
    assert_eq!(all["generation"][0]["generated"], 4, "{all}");
    assert_eq!(all["generation"][0]["failures"], 2, "{all}");
    // 100, 200, 300 and 1000 ms: the nearest-rank median is 200 ms, the p95 1000 ms.
    assert!(
        close(&all["generation"][0]["median_latency_ms"], 200.0, 5.0),
        "{all}"
    );
    assert!(
        close(&all["generation"][0]["p95_latency_ms"], 1000.0, 25.0),
        "{all}"
    );
    // Every project's v1 SMS reviews: r1's first (ok, 4), r2's (revision), C's (ok, 5).
    let v1 = all["reviews"]
        .as_array()
        .expect("reviews")
        .iter()
        .find(|r| r["prompt_version"] == 1)
        .unwrap_or_else(|| panic!("no v1 reviews: {all}"));
    assert_eq!(
        json!([
            v1["reviewed"],
            v1["ok"],
            v1["revision"],
            v1["rated"],
            v1["rating_sum"]
        ]),
        json!([3, 2, 1, 2, 9])
    );
    assert!(close(&v1["mean_rating"], 4.5, 1e-9), "{v1}");
    // Naming the three projects is the same question.
    let named = s
        .figures(
            &s.admin,
            &format!(
                "{API}/statistics?project_id={}&project_id={}&project_id={}",
                s.a, s.b, s.c
            ),
        )
        .await;
    for figure in [
        "totals",
        "requests_by_outcome",
        "conversion",
        "ratings",
        "reviews",
        "generation",
    ] {
        assert_eq!(named[figure], all[figure], "{figure}");
    }
    assert_eq!(
        counts(&all["channel_popularity"], &["channel_id"], "projects"),
        sorted(vec![(s.sms.clone(), 3), (s.email.clone(), 1)])
    );
    // Only B: two requests, one interest.
    let b = s
        .figures(&s.manager, &format!("{API}/projects/{}/statistics", s.b))
        .await;
    assert_eq!(b["totals"]["requests"], 2);
    assert_eq!(
        counts(&b["requests_by_outcome"], &["success_type"], "count"),
        sorted(vec![("interest".into(), 1), ("undefined".into(), 1)])
    );

    // Dates: everything happened today.
    let today = chrono::Utc::now().date_naive();
    let yesterday = today.pred_opt().expect("a day");
    let tomorrow = today.succ_opt().expect("a day");
    let within = s
        .figures(
            &s.manager,
            &format!("{API}/statistics?from={today}&to={today}"),
        )
        .await;
    let everything = s.figures(&s.manager, &format!("{API}/statistics")).await;
    assert_eq!(within["totals"], everything["totals"]);
    assert_eq!(within["conversion"], everything["conversion"]);
    assert_eq!(within["generation"], everything["generation"]);
    for range in [format!("from={tomorrow}"), format!("to={yesterday}")] {
        let outside = s
            .figures(&s.manager, &format!("{API}/statistics?{range}"))
            .await;
        assert_eq!(outside["totals"]["requests"], 0, "{range}: {outside}");
        // Members and channels are today's, whatever the range.
        assert_eq!(outside["totals"]["members"], 2, "{range}");
        for figure in [
            "requests_by_product",
            "conversion",
            "ratings",
            "reviews",
            "generation",
        ] {
            assert_eq!(outside[figure], json!([]), "{range}: {figure}");
        }
    }

    for (query, field) in [
        ("from=2026-13-01", "from"),
        ("to=yesterday", "to"),
        (&format!("from={tomorrow}&to={today}") as &str, "from"),
        ("project_id=42", "project_id"),
        ("format=pdf", "format"),
        ("projects=all", "projects"),
    ] {
        let (status, body) = s
            .get(&s.manager, &format!("{API}/statistics?{query}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body.to_string().contains(field),
            "{query}: the error names {field}: {body}"
        );
    }
    let (status, body) = s
        .get(
            &s.manager,
            &format!("{API}/projects/{}/statistics?project_id={}", s.a, s.c),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_managers_of_every_chosen_project_and_admins_read_statistics() {
    let s = scenario().await;
    let a = &s.a;
    let c = &s.c;
    for (who, path, expected) in [
        (
            &s.performer,
            format!("{API}/projects/{a}/statistics"),
            StatusCode::FORBIDDEN,
        ),
        (
            &s.performer,
            format!("{API}/statistics?project_id={a}"),
            StatusCode::FORBIDDEN,
        ),
        (
            &s.outsider,
            format!("{API}/projects/{a}/statistics"),
            StatusCode::NOT_FOUND,
        ),
        (
            &s.other_manager,
            format!("{API}/statistics?project_id={a}"),
            StatusCode::NOT_FOUND,
        ),
        // One project the caller does not manage spoils the whole selection.
        (
            &s.manager,
            format!("{API}/statistics?project_id={a}&project_id={c}"),
            StatusCode::NOT_FOUND,
        ),
        (
            &s.manager,
            format!("{API}/projects/{a}/statistics?format=csv"),
            StatusCode::OK,
        ),
        (
            &s.admin,
            format!("{API}/statistics?project_id={a}&project_id={c}"),
            StatusCode::OK,
        ),
    ] {
        let (status, body) = s.get(who, &path).await;
        assert_eq!(status, expected, "{path}: {body}");
    }
    // With nothing named, a performer manages nothing: empty figures, no one else's.
    let none = s.figures(&s.performer, &format!("{API}/statistics")).await;
    assert_eq!(
        none["totals"],
        json!({"members": 0, "channels": 0, "requests": 0})
    );
    assert_eq!(none["projects"], json!([]));
}

/// The sections of a multi-table CSV: name → rows (the header first).
fn csv_sections(text: &str) -> std::collections::HashMap<String, Vec<Vec<String>>> {
    let text = text.trim_start_matches('\u{feff}');
    let mut sections = std::collections::HashMap::new();
    for block in text.split("\r\n\r\n") {
        let mut lines = block.split("\r\n").filter(|l| !l.is_empty());
        let Some(name) = lines.next() else { continue };
        let rows = lines
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect();
        sections.insert(name.to_string(), rows);
    }
    sections
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_xlsx_exports_read_back_with_the_same_figures() {
    let s = scenario().await;
    let figures = s.figures(&s.manager, &format!("{API}/statistics")).await;

    let (status, content_type, body) = s
        .bytes(&s.manager, &format!("{API}/statistics?format=csv"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let sections = csv_sections(&String::from_utf8(body).expect("UTF-8"));
    assert_eq!(
        sections["totals"],
        vec![
            vec!["members".to_string(), "channels".into(), "requests".into()],
            vec!["2".to_string(), "2".into(), "8".into()]
        ]
    );
    let mut outcomes: Vec<(String, i64)> = sections["requests_by_outcome"][1..]
        .iter()
        .map(|r| (r[0].clone(), r[1].parse().expect("count")))
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        counts(&figures["requests_by_outcome"], &["success_type"], "count")
    );
    assert_eq!(
        sections["conversion"].len() - 1,
        figures["conversion"].as_array().expect("list").len()
    );
    for name in [
        "requests_by_product",
        "successes_by_product",
        "channel_popularity",
        "requests_by_channel",
        "ratings",
        "reviews",
        "generation",
    ] {
        assert_eq!(
            sections[name].len() - 1,
            figures[name].as_array().expect("list").len(),
            "{name}"
        );
    }

    let (status, content_type, body) = s
        .bytes(&s.manager, &format!("{API}/statistics?format=xlsx"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.contains("spreadsheetml"), "{content_type}");
    let mut workbook = Xlsx::new(Cursor::new(body)).expect("an XLSX workbook");
    let totals = workbook.worksheet_range("totals").expect("a totals sheet");
    let row: Vec<Data> = totals.rows().nth(1).expect("a row").to_vec();
    assert_eq!(
        row,
        vec![Data::Float(2.0), Data::Float(2.0), Data::Float(8.0)]
    );
    let conversion = workbook
        .worksheet_range("conversion")
        .expect("a conversion sheet");
    let headers: Vec<String> = conversion
        .rows()
        .next()
        .expect("headers")
        .iter()
        .map(|c| c.to_string())
        .collect();
    let column = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let mut sold_by_row: Vec<(String, String, i64, i64)> = conversion
        .rows()
        .skip(1)
        .map(|r| {
            (
                r[column("channel_id")].to_string(),
                r[column("cluster")].to_string(),
                r[column("requests")].as_f64().expect("requests") as i64,
                r[column("sold")].as_f64().expect("sold") as i64,
            )
        })
        .collect();
    sold_by_row.sort();
    let mut expected: Vec<(String, String, i64, i64)> = figures["conversion"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| {
            (
                r["channel_id"].as_str().expect("id").to_string(),
                r["cluster"].as_str().unwrap_or_default().to_string(),
                r["requests"].as_i64().expect("n"),
                r["sold"].as_i64().expect("n"),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(sold_by_row, expected);
    for sheet in [
        "requests_by_product",
        "successes_by_product",
        "channel_popularity",
        "requests_by_channel",
        "requests_by_outcome",
        "ratings",
        "reviews",
        "generation",
    ] {
        assert!(workbook.worksheet_range(sheet).is_ok(), "{sheet}");
    }

    // A channel's request list: one row per client with its outcome, latest offer and rating.
    let path = format!("{API}/projects/{}/channels/{}/requests", s.a, s.sms);
    let (status, _, body) = s
        .bytes(&s.performer, &format!("{path}?format=xlsx&sort=client_id"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut workbook = Xlsx::new(Cursor::new(body)).expect("an XLSX workbook");
    let sheet = workbook
        .worksheet_range("requests")
        .expect("a requests sheet");
    let rows: Vec<Vec<String>> = sheet
        .rows()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "request_id",
            "client_id",
            "age",
            "super_clust",
            "cluster",
            "success_type",
            "status",
            "latest_offer",
            "offer_rating"
        ]
    );
    assert_eq!(rows.len(), 5, "four clients in A's SMS channel: {rows:?}");
    let r1 = &rows[1];
    assert_eq!(r1[0], s.r1);
    assert_eq!(
        (r1[1].as_str(), r1[3].as_str(), r1[5].as_str()),
        ("r1", "k1", "sold")
    );
    assert_eq!(r1[7], "Оффер версии 2 за 300 мс", "the latest offer");
    assert_eq!(r1[8], "error", "its rating, as changed");
    assert_eq!(rows[3][6], "error", "r3's generation failed for good");
    assert_eq!(rows[4][7], "", "r4 has no offer");

    let (status, content_type, body) = s
        .bytes(
            &s.performer,
            &format!("{path}?format=csv&success_type=sold"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/csv"));
    let text = String::from_utf8(body).expect("UTF-8");
    let lines: Vec<&str> = text.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "the header and r1, r2 (filters apply): {text}"
    );
    assert!(lines[1..].iter().all(|l| l.contains(",sold,")), "{text}");
    let (status, body) = s.get(&s.performer, &format!("{path}?format=doc")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("format"), "{body}");
}
