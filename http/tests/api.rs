//! The REST API over real HTTP against a real server and database: what a user of each endpoint
//! sees, including the error answers. Reads that follow writes pass the write's consistency
//! token (`get_after`), never a sleep.
mod common;

use common::{
    catalog_id, client_data, project_with_channels, Client, TestServer, ADMIN_EMAIL, PASSWORD,
};
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const API: &str = "/api/v1";

/// Asserts an error answer: the status, our body shape and the code.
#[track_caller]
fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message: {body}"
    );
}

/// Asserts the error names `field` among its `fields`.
#[track_caller]
fn assert_names_field(body: &Value, field: &str) {
    let fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(fields.contains(&field), "{field} among the fields: {body}");
}

#[track_caller]
fn id_of(body: &Value) -> String {
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id in {body}"))
        .to_string()
}

#[track_caller]
fn items(body: &Value) -> &Vec<Value> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items in {body}"))
}

fn ids(body: &Value) -> Vec<String> {
    items(body)
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_string())
        .collect()
}

fn keys(body: &Value) -> Vec<String> {
    items(body)
        .iter()
        .map(|i| i["key"].as_str().expect("key").to_string())
        .collect()
}

/// Percent-encodes a query value.
fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A request with full control of headers and body; answers the status, headers and body.
async fn raw(
    client: &Client,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = client
        .http
        .request(method, format!("{}{}", client.base, path));
    if let Some(token) = &client.token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body read");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, headers, value)
}

/// Signs in and answers the whole token pair.
async fn login_pair(server: &TestServer, email: &str, password: &str) -> Value {
    let (status, body) = server
        .anonymous()
        .post(
            &format!("{API}/auth/login"),
            json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
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

async fn admin_id(client: &Client) -> String {
    let (status, me) = client.get(&format!("{API}/me")).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    me["id"].as_str().expect("id").to_string()
}

fn with_token(server: &TestServer, token: &str) -> Client {
    Client {
        token: Some(token.to_string()),
        ..server.anonymous()
    }
}

// ---------------------------------------------------------------------------------------------
// Auth
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_answers_a_token_pair_and_refuses_wrong_credentials_alike() {
    let server = TestServer::start().await;
    let pair = login_pair(&server, ADMIN_EMAIL, PASSWORD).await;
    assert_eq!(pair["token_type"], "Bearer");
    assert!(pair["expires_in"].as_i64().is_some_and(|s| s > 0), "{pair}");
    assert!(
        pair["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{pair}"
    );
    let admin = with_token(&server, pair["access_token"].as_str().expect("access"));
    let (status, me) = admin.get(&format!("{API}/me")).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], ADMIN_EMAIL);
    assert_eq!(me["is_admin"], true);

    // The email is case-insensitive.
    login_pair(&server, "  ADMIN@Bank.Test ", PASSWORD).await;

    let anonymous = server.anonymous();
    let (status, wrong_password) = anonymous
        .post(
            &format!("{API}/auth/login"),
            json!({"email": ADMIN_EMAIL, "password": "not the password"}),
        )
        .await;
    assert_error(
        status,
        &wrong_password,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let (status, unknown_email) = anonymous
        .post(
            &format!("{API}/auth/login"),
            json!({"email": "nobody@bank.test", "password": PASSWORD}),
        )
        .await;
    assert_error(
        status,
        &unknown_email,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_eq!(
        wrong_password, unknown_email,
        "an unknown email reads exactly like a wrong password"
    );

    // A 401 tells the client how to authenticate.
    let (status, headers, body) =
        raw(&anonymous, Method::GET, &format!("{API}/me"), &[], None).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    for garbage in [
        "garbage",
        "off_not-a-real-token",
        "eyJhbGciOiJIUzI1NiJ9.e30.x",
    ] {
        let (status, body) = with_token(&server, garbage).get(&format!("{API}/me")).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let (status, _, body) = raw(
        &anonymous,
        Method::GET,
        &format!("{API}/me"),
        &[("authorization", "Basic YTpi")],
        None,
    )
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_the_refresh_token_and_logout_revokes_it() {
    let server = TestServer::start().await;
    let first = login_pair(&server, ADMIN_EMAIL, PASSWORD).await;
    let anonymous = server.anonymous();

    let (status, second) = anonymous
        .post(
            &format!("{API}/auth/refresh"),
            json!({"refresh_token": first["refresh_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let admin = with_token(&server, second["access_token"].as_str().expect("access"));
    let (status, _) = admin.get(&format!("{API}/me")).await;
    assert_eq!(status, StatusCode::OK);

    // The old refresh token stopped working.
    let (status, body) = anonymous
        .post(
            &format!("{API}/auth/refresh"),
            json!({"refresh_token": first["refresh_token"]}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");

    // Logout revokes the current one.
    let (status, body) = admin
        .post(
            &format!("{API}/auth/logout"),
            json!({"refresh_token": second["refresh_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = anonymous
        .post(
            &format!("{API}/auth/refresh"),
            json!({"refresh_token": second["refresh_token"]}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");

    // Logout needs a signed-in caller; an unknown refresh token is simply not there to revoke.
    let (status, body) = anonymous
        .post(
            &format!("{API}/auth/logout"),
            json!({"refresh_token": "whatever"}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, _) = admin
        .post(
            &format!("{API}/auth/logout"),
            json!({"refresh_token": "whatever"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = anonymous
        .post(&format!("{API}/auth/refresh"), json!({"refresh_token": ""}))
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_shows_the_profile_and_each_project_with_the_callers_role() {
    let (server, admin) = start().await;
    let (ann_id, ann) = server.user(&admin, "ann@bank.test").await;
    let (status, me) = ann
        .get_after(&format!("{API}/me"), &server.latest_write().await)
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], ann_id.to_string());
    assert_eq!(me["email"], "ann@bank.test");
    assert_eq!(me["is_admin"], false);
    assert_eq!(me["can_see_statistics"], false);
    assert_eq!(me["projects"], json!([]));

    // Ann manages her own project and performs in the admin's.
    let product = catalog_id(&admin, "products", "CC").await;
    let (status, own) = ann
        .post(
            &format!("{API}/projects"),
            json!({"name": "Свой", "product_id": product}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{own}");
    let (theirs, _, _) = project_with_channels(&admin).await;
    let (status, added) = admin
        .post(
            &format!("{API}/projects/{theirs}/members"),
            json!({"email": "ann@bank.test", "role": "performer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let (status, me) = ann.get_after(&format!("{API}/me"), &added).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        me["projects"],
        json!([{"project_id": id_of(&own), "role": "manager"}, {"project_id": theirs, "role": "performer"}]),
        "{me}"
    );
    assert_eq!(me["can_see_statistics"], true);

    // PATCH /me edits the profile; absent fields keep their value.
    let (status, done) = ann
        .patch(
            &format!("{API}/me"),
            json!({"name": "Анна", "position": "Маркетолог"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (status, done) = ann
        .patch(&format!("{API}/me"), json!({"subdivision": "Розница"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (status, me) = ann.get_after(&format!("{API}/me"), &done).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            me["name"].as_str(),
            me["position"].as_str(),
            me["subdivision"].as_str()
        ),
        (Some("Анна"), Some("Маркетолог"), Some("Розница"))
    );
    let (status, user) = ann.get_after(&format!("{API}/users/{ann_id}"), &done).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["name"], "Анна");

    // What cannot be edited there is refused, naming the field.
    let (status, body) = ann
        .patch(&format!("{API}/me"), json!({"is_admin": true}))
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let (status, body) = ann
        .patch(&format!("{API}/me"), json!({"name": "x".repeat(201)}))
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_password_needs_the_current_one_and_ends_the_old_sessions() {
    let (server, admin) = start().await;
    server.user(&admin, "bob@bank.test").await;
    let pair = login_pair(&server, "bob@bank.test", PASSWORD).await;
    let bob = with_token(&server, pair["access_token"].as_str().expect("access"));
    let path = format!("{API}/me/password");

    let (status, body) = bob
        .post(
            &path,
            json!({"current_password": "wrong password", "new_password": "a new secret phrase"}),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "wrong_password",
    );
    assert_names_field(&body, "current_password");
    let (status, body) = bob
        .post(
            &path,
            json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "new_password");
    // Neither attempt changed anything.
    login_pair(&server, "bob@bank.test", PASSWORD).await;

    let (status, body) = bob
        .post(
            &path,
            json!({"current_password": PASSWORD, "new_password": "a new secret phrase"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = server
        .anonymous()
        .post(
            &format!("{API}/auth/login"),
            json!({"email": "bob@bank.test", "password": PASSWORD}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    login_pair(&server, "bob@bank.test", "a new secret phrase").await;
    // The sessions from before the change are over.
    let (status, body) = server
        .anonymous()
        .post(
            &format!("{API}/auth/refresh"),
            json!({"refresh_token": pair["refresh_token"]}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_show_their_secret_once_authenticate_and_stop_when_revoked() {
    let (server, admin) = start().await;
    let (carl_id, carl) = server.user(&admin, "carl@bank.test").await;

    let (status, issued) = carl
        .post(
            &format!("{API}/api-tokens"),
            json!({"name": "  CRM integration "}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    assert_eq!(issued["name"], "CRM integration");
    let secret = issued["token"].as_str().expect("the secret").to_string();
    assert!(secret.starts_with("off_") && secret.len() > 20, "{secret}");
    let token_id = id_of(&issued);

    // The token acts as Carl.
    let integration = with_token(&server, &secret);
    let (status, me) = integration.get(&format!("{API}/me")).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], carl_id.to_string());
    let product = catalog_id(&integration, "products", "PK").await;
    let (status, body) = integration
        .post(
            &format!("{API}/projects"),
            json!({"name": "Через API", "product_id": product}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The list never shows the secret.
    let (status, list) = carl.get(&format!("{API}/api-tokens")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 1);
    let item = &items(&list)[0];
    assert_eq!(item["id"], token_id);
    assert_eq!(item["name"], "CRM integration");
    assert!(secret.starts_with(item["prefix"].as_str().expect("prefix")));
    assert!(
        item["last_used_at"].is_string(),
        "used once already: {item}"
    );
    assert!(item["revoked_at"].is_null());
    assert!(item.get("token").is_none(), "{item}");
    assert!(
        !list.to_string().contains(&secret),
        "the secret leaked: {list}"
    );
    // Nor does anyone else's list show Carl's tokens.
    let (status, list) = admin.get(&format!("{API}/api-tokens")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 0, "{list}");

    // Another user cannot revoke it; an empty name is refused.
    let (status, body) = admin.delete(&format!("{API}/api-tokens/{token_id}")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = carl
        .post(&format!("{API}/api-tokens"), json!({"name": "  "}))
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "name");

    let (status, body) = carl.delete(&format!("{API}/api-tokens/{token_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = integration.get(&format!("{API}/me")).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, list) = carl.get(&format!("{API}/api-tokens")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(items(&list)[0]["revoked_at"].is_string(), "{list}");
    // Revoking again is harmless; an unknown id is 404.
    let (status, _) = carl.delete(&format!("{API}/api-tokens/{token_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = carl
        .delete(&format!("{API}/api-tokens/{}", uuid::Uuid::new_v4()))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_create_find_deactivate_and_reactivate_users() {
    let (server, admin) = start().await;
    let users = format!("{API}/users");

    let (status, created) = admin
        .post(&users, json!({"email": " Dana@Bank.Test", "password": PASSWORD, "name": "Дана", "position": "Аналитик"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let dana_id = id_of(&created);
    assert!(created["consistency_token"].is_string(), "{created}");

    let (status, body) = admin
        .post(
            &users,
            json!({"email": "dana@bank.test", "password": PASSWORD}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "already_exists");
    for bad in ["dana", "dana@bank", "@bank.test", "da na@bank.test"] {
        let (status, body) = admin
            .post(&users, json!({"email": bad, "password": PASSWORD}))
            .await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_names_field(&body, "email");
    }
    let (status, body) = admin
        .post(
            &users,
            json!({"email": "eve@bank.test", "password": "1234567"}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "password");
    let (status, body) = admin.post(&users, json!({"email": "eve@bank.test"})).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    // Found by the search, in full by id.
    let (status, found) = admin.get_after(&format!("{users}?q=DANA"), &created).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(ids(&found), vec![dana_id.clone()]);
    let (status, all) = admin.get_after(&users, &created).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["total"], 2, "the admin and Dana: {all}");
    let (status, dana) = admin
        .get_after(&format!("{users}/{dana_id}"), &created)
        .await;
    assert_eq!(status, StatusCode::OK, "{dana}");
    assert_eq!(dana["email"], "dana@bank.test");
    assert_eq!(dana["name"], "Дана");
    assert_eq!(dana["position"], "Аналитик");
    assert_eq!(
        (dana["active"].as_bool(), dana["is_admin"].as_bool()),
        (Some(true), Some(false))
    );
    let (status, body) = admin
        .get(&format!("{users}/{}", uuid::Uuid::new_v4()))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // Deactivation takes effect at once: her access token, API token, refresh token and
    // password stop working.
    let pair = login_pair(&server, "dana@bank.test", PASSWORD).await;
    let dana_client = with_token(&server, pair["access_token"].as_str().expect("access"));
    let (status, issued) = dana_client
        .post(&format!("{API}/api-tokens"), json!({"name": "Скрипт"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let dana_script = with_token(&server, issued["token"].as_str().expect("secret"));
    let (status, _) = dana_script.get(&format!("{API}/me")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, done) = admin
        .patch(&format!("{users}/{dana_id}"), json!({"active": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    for client in [&dana_client, &dana_script] {
        let (status, body) = client.get(&format!("{API}/me")).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let (status, body) = server
        .anonymous()
        .post(
            &format!("{API}/auth/refresh"),
            json!({"refresh_token": pair["refresh_token"]}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = server
        .anonymous()
        .post(
            &format!("{API}/auth/login"),
            json!({"email": "dana@bank.test", "password": PASSWORD}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, inactive) = admin
        .get_after(&format!("{users}?active=false"), &done)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&inactive), vec![dana_id.clone()]);

    // A deactivated user cannot be added to a project.
    let (project, _, _) = project_with_channels(&admin).await;
    let (status, body) = admin
        .post(
            &format!("{API}/projects/{project}/members"),
            json!({"user_id": dana_id, "role": "performer"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "user_deactivated");

    let (status, done) = admin
        .patch(
            &format!("{users}/{dana_id}"),
            json!({"active": true, "subdivision": "Розница"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let dana_client = server.login("dana@bank.test", PASSWORD).await;
    let (status, me) = dana_client
        .get_after(&format!("{users}/{dana_id}"), &done)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a user reads their own record: {me}"
    );
    assert_eq!(
        (me["active"].as_bool(), me["subdivision"].as_str()),
        (Some(true), Some("Розница"))
    );

    // Anyone else's record is the admins' business, whether or not it exists.
    for other in [admin_id(&admin).await, uuid::Uuid::new_v4().to_string()] {
        let (status, body) = dana_client.get(&format!("{users}/{other}")).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    }
    let (status, body) = dana_client.get(&users).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");

    // A password reset by an admin.
    let (status, body) = admin
        .patch(&format!("{users}/{dana_id}"), json!({"password": "short"}))
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "password");
    let (status, _) = admin
        .patch(
            &format!("{users}/{dana_id}"),
            json!({"password": "reset by the admin"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server.login("dana@bank.test", "reset by the admin").await;

    // An admin cannot lock themselves out; unknown users are 404.
    let admin_id = admin_id(&admin).await;
    let (status, body) = admin
        .patch(&format!("{users}/{admin_id}"), json!({"active": false}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "rejected");
    let (status, body) = admin
        .patch(
            &format!("{users}/{}", uuid::Uuid::new_v4()),
            json!({"name": "x"}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

// ---------------------------------------------------------------------------------------------
// Catalog
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_lists_searches_and_pages_the_seeded_entries() {
    let (server, admin) = start().await;
    let settled = server.latest_write().await;

    let (status, products) = admin
        .get_after(&format!("{API}/products?limit=500"), &settled)
        .await;
    assert_eq!(status, StatusCode::OK, "{products}");
    assert_eq!(products["total"], 22);
    assert_eq!(items(&products).len(), 22);
    let (status, channels) = admin
        .get_after(&format!("{API}/channels?limit=500"), &settled)
        .await;
    assert_eq!(status, StatusCode::OK, "{channels}");
    assert_eq!(channels["total"], 8);
    let mut channel_keys = keys(&channels);
    channel_keys.sort();
    assert_eq!(
        channel_keys,
        [
            "EMAIL",
            "KND",
            "MOBILE_CHAT",
            "MOB_BANNER",
            "OFFICE_BANNER",
            "PUSH",
            "SMS",
            "TMO"
        ]
    );
    for item in items(&products) {
        for field in ["id", "key", "name", "description", "created_at"] {
            assert!(item[field].is_string(), "{field} in {item}");
        }
        assert_eq!(item["archived"], false);
        assert_eq!(item["my_projects"], json!([]));
    }

    // Search in key, name, description; case-insensitive; wildcards taken literally.
    let (status, found) = admin.get(&format!("{API}/channels?q=sms")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(keys(&found).contains(&"SMS".to_string()), "{found}");
    assert_eq!(found["total"].as_u64(), Some(items(&found).len() as u64));
    let (status, found) = admin.get(&format!("{API}/products?q=MORTG_")).await;
    assert_eq!(status, StatusCode::OK);
    let mut found_keys = keys(&found);
    found_keys.sort();
    assert_eq!(found_keys, ["MORTG_REFIN", "MORTG_SCR"], "{found}");
    let (status, none) = admin
        .get(&format!("{API}/products?q=%25%25no-such-thing"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((none["total"].as_i64(), items(&none).len()), (Some(0), 0));

    // Pages are disjoint and add up to the whole.
    let mut paged = Vec::new();
    for offset in (0..22).step_by(5) {
        let (status, page) = admin
            .get(&format!("{API}/products?limit=5&offset={offset}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 22);
        assert_eq!(items(&page).len(), (22 - offset).min(5));
        paged.extend(ids(&page));
    }
    assert_eq!(paged, ids(&products), "pages follow the list's order");
    for bad in [
        "limit=0",
        "limit=501",
        "offset=-1",
        "limit=abc",
        "include_archived=maybe",
    ] {
        let (status, body) = admin.get(&format!("{API}/products?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }

    // One entry by id; unknown ids are 404.
    let sms = catalog_id(&admin, "channels", "SMS").await;
    let (status, item) = admin.get(&format!("{API}/channels/{sms}")).await;
    assert_eq!(status, StatusCode::OK, "{item}");
    assert_eq!(item["key"], "SMS");
    let (status, body) = admin.get(&format!("{API}/products/{sms}")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_create_edit_and_archive_catalog_entries() {
    let (_server, admin) = start().await;

    let (status, created) = admin
        .post(
            &format!("{API}/products"),
            json!({"key": " travel_card ", "name": "Карта путешественника", "description": "Мили за покупки", "link": "https://bank.example/travel"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = id_of(&created);
    let path = format!("{API}/products/{id}");
    let (status, item) = admin.get_after(&path, &created).await;
    assert_eq!(status, StatusCode::OK, "{item}");
    assert_eq!(item["key"], "TRAVEL_CARD", "keys are stored upper-case");
    assert_eq!(item["link"], "https://bank.example/travel");

    let (status, body) = admin
        .post(
            &format!("{API}/products"),
            json!({"key": "Travel_Card", "name": "Другая", "description": "Другая"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "already_exists");
    for (body, field) in [
        (
            json!({"key": "1CARD", "name": "n", "description": "d"}),
            "key",
        ),
        (
            json!({"key": "КАРТА", "name": "n", "description": "d"}),
            "key",
        ),
        (
            json!({"key": "CARD2", "name": " ", "description": "d"}),
            "name",
        ),
        (
            json!({"key": "CARD2", "name": "n", "description": ""}),
            "description",
        ),
        (
            json!({"key": "CARD2", "name": "n", "description": "d", "link": "ftp://x"}),
            "link",
        ),
    ] {
        let (status, answer) = admin.post(&format!("{API}/products"), body.clone()).await;
        assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_names_field(&answer, field);
    }

    // PATCH keeps absent fields; "link": null clears the link.
    let (status, done) = admin
        .patch(&path, json!({"name": "Карта для поездок"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (status, item) = admin.get_after(&path, &done).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(item["name"], "Карта для поездок");
    assert_eq!(item["description"], "Мили за покупки");
    assert_eq!(item["link"], "https://bank.example/travel");
    let (status, done) = admin.patch(&path, json!({"link": null})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (status, item) = admin.get_after(&path, &done).await;
    assert_eq!(status, StatusCode::OK);
    assert!(item["link"].is_null(), "{item}");
    assert_eq!(item["name"], "Карта для поездок");
    let (status, body) = admin.patch(&path, json!({"link": "not a url"})).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "link");
    let (status, body) = admin.patch(&path, json!({"key": "OTHER"})).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let (status, body) = admin
        .patch(
            &format!("{API}/products/{}", uuid::Uuid::new_v4()),
            json!({"name": "x"}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // A project sells it; the product lists that project as one of the caller's.
    let (status, project) = admin
        .post(
            &format!("{API}/projects"),
            json!({"name": "Путешествия", "product_id": id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let (status, item) = admin.get_after(&path, &project).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        item["my_projects"],
        json!([{"id": id_of(&project), "name": "Путешествия"}])
    );

    // DELETE archives: hidden from the list unless asked for, still readable by id, no new projects.
    let (status, archived) = admin.delete(&path).await;
    assert_eq!(status, StatusCode::OK, "{archived}");
    let (status, list) = admin
        .get_after(&format!("{API}/products?limit=500"), &archived)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!ids(&list).contains(&id), "archived entries are hidden");
    assert_eq!(list["total"], 22);
    let (status, list) = admin
        .get_after(
            &format!("{API}/products?limit=500&include_archived=true"),
            &archived,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 23);
    let entry = items(&list)
        .iter()
        .find(|i| i["id"] == id)
        .expect("listed with include_archived");
    assert_eq!(entry["archived"], true);
    let (status, item) = admin.get_after(&path, &archived).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(item["archived"], true);
    let (status, body) = admin
        .post(
            &format!("{API}/projects"),
            json!({"name": "Новый", "product_id": id}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "product_id");
    let (status, body) = admin.patch(&path, json!({"name": "x"})).await;
    assert_error(status, &body, StatusCode::CONFLICT, "archived");
    let (status, _) = admin.delete(&path).await;
    assert_eq!(status, StatusCode::OK, "archiving again is harmless");
    // The existing project keeps working.
    let (status, body) = admin
        .get_after(&format!("{API}/projects/{}", id_of(&project)), &archived)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Channels: the same life; an archived channel cannot be attached.
    let (status, channel) = admin
        .post(
            &format!("{API}/channels"),
            json!({"key": "fax", "name": "Факс", "description": "Бумажные письма"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{channel}");
    let channel_id = id_of(&channel);
    let (status, item) = admin
        .get_after(&format!("{API}/channels/{channel_id}"), &channel)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(item["key"], "FAX");
    assert!(
        item.get("my_projects").is_none(),
        "only products list projects: {item}"
    );
    let (status, body) = admin
        .post(
            &format!("{API}/channels"),
            json!({"key": "FAX", "name": "Факс", "description": "Бумажные письма"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "already_exists");
    let (status, done) = admin
        .patch(
            &format!("{API}/channels/{channel_id}"),
            json!({"description": "Письма по факсу"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (status, archived) = admin.delete(&format!("{API}/channels/{channel_id}")).await;
    assert_eq!(status, StatusCode::OK, "{archived}");
    let (status, list) = admin
        .get_after(&format!("{API}/channels?limit=500"), &archived)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 8);
    let (status, list) = admin
        .get_after(
            &format!("{API}/channels?include_archived=true&q=fax"),
            &archived,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&list), ["FAX"]);
    assert_eq!(items(&list)[0]["description"], "Письма по факсу");
    let (project, _, _) = project_with_channels(&admin).await;
    let (status, body) = admin
        .post(
            &format!("{API}/projects/{project}/channels"),
            json!({"channel_ids": [channel_id]}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "channel_ids");
}

// ---------------------------------------------------------------------------------------------
// Projects
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_are_created_listed_edited_and_archived() {
    let (server, admin) = start().await;
    let (fay_id, fay) = server.user(&admin, "fay@bank.test").await;
    let (_, gus) = server.user(&admin, "gus@bank.test").await;
    let product = catalog_id(&admin, "products", "CC").await;

    let (status, created) = fay
        .post(&format!("{API}/projects"), json!({"name": "  Кэшбэк  ", "product_id": product, "description": "Для **зарплатных** клиентов"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = id_of(&created);
    let path = format!("{API}/projects/{id}");
    let (status, project) = fay.get_after(&path, &created).await;
    assert_eq!(status, StatusCode::OK, "{project}");
    assert_eq!(project["name"], "Кэшбэк");
    assert_eq!(project["description"], "Для **зарплатных** клиентов");
    assert_eq!(project["product"]["id"], product);
    assert_eq!(project["product"]["key"], "CC");
    assert_eq!(project["my_role"], "manager", "the creator manages it");
    assert_eq!(
        (
            project["members"].as_i64(),
            project["channels"].as_i64(),
            project["requests"].as_i64()
        ),
        (Some(1), Some(0), Some(0))
    );
    assert_eq!(project["archived"], false);
    let (status, members) = fay.get_after(&format!("{path}/members"), &created).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(members["items"][0]["user_id"], fay_id.to_string());
    assert_eq!(members["items"][0]["role"], "manager");

    let (status, other) = gus
        .post(
            &format!("{API}/projects"),
            json!({"name": "Чужой", "product_id": product}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{other}");

    // Each sees only their own projects; the admin sees all.
    let (status, list) = fay.get_after(&format!("{API}/projects"), &other).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&list), vec![id.clone()]);
    assert_eq!(list["total"], 1);
    let (status, list) = gus.get_after(&format!("{API}/projects"), &other).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&list), vec![id_of(&other)]);
    let (status, list) = admin.get_after(&format!("{API}/projects"), &other).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&list), vec![id_of(&other), id.clone()], "newest first");
    assert!(items(&list).iter().all(|p| p["my_role"] == "manager"));
    let (status, list) = admin
        .get_after(&format!("{API}/projects?q={}", enc("эшбэк")), &other)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&list), vec![id.clone()]);
    let (status, list) = admin
        .get_after(
            &format!("{API}/projects?product_id={product}&limit=1&offset=1"),
            &other,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (list["total"].as_i64(), ids(&list)),
        (Some(2), vec![id.clone()])
    );

    // Invalid input names the field.
    for (body, field) in [
        (json!({"name": "", "product_id": product}), "name"),
        (
            json!({"name": "x".repeat(201), "product_id": product}),
            "name",
        ),
        (
            json!({"name": "Без продукта", "product_id": uuid::Uuid::new_v4()}),
            "product_id",
        ),
    ] {
        let (status, answer) = fay.post(&format!("{API}/projects"), body).await;
        assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_names_field(&answer, field);
    }
    let (status, answer) = fay
        .post(&format!("{API}/projects"), json!({"name": "Без продукта"}))
        .await;
    assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    // PATCH edits; absent fields keep their value.
    let (status, done) = fay.patch(&path, json!({"name": "Кэшбэк 2.0"})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (status, project) = fay.get_after(&path, &done).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(project["name"], "Кэшбэк 2.0");
    assert_eq!(project["description"], "Для **зарплатных** клиентов");
    let (status, body) = fay.patch(&path, json!({"name": "  "})).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "name");
    let (status, body) = fay.patch(&path, json!({"product_id": product})).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let (status, body) = admin
        .patch(
            &format!("{API}/projects/{}", uuid::Uuid::new_v4()),
            json!({"name": "x"}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // DELETE archives: still readable, no longer changeable, hidden from the default list.
    let sms = catalog_id(&fay, "channels", "SMS").await;
    let (status, done) = fay
        .post(&format!("{path}/channels"), json!({"channel_ids": [sms]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{done}");
    let (status, archived) = fay.delete(&path).await;
    assert_eq!(status, StatusCode::OK, "{archived}");
    let (status, project) = fay.get_after(&path, &archived).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(project["archived"], true);
    let (status, list) = fay.get_after(&format!("{API}/projects"), &archived).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 0, "{list}");
    let (status, list) = fay
        .get_after(&format!("{API}/projects?include_archived=true"), &archived)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&list), vec![id.clone()]);
    let changes = [
        (Method::PATCH, path.clone(), Some(json!({"name": "Поздно"}))),
        (
            Method::POST,
            format!("{path}/members"),
            Some(json!({"email": "gus@bank.test", "role": "performer"})),
        ),
        (
            Method::POST,
            format!("{path}/channels"),
            Some(json!({"channel_ids": [catalog_id(&fay, "channels", "PUSH").await]})),
        ),
        (
            Method::PATCH,
            format!("{path}/channels/{sms}"),
            Some(json!({"prompt": "Новый текст"})),
        ),
        (Method::DELETE, format!("{path}/channels/{sms}"), None),
        (
            Method::POST,
            format!("{path}/channels/{sms}/requests"),
            Some(client_data(1)),
        ),
    ];
    for (method, change, body) in changes {
        let (status, answer) = fay.call(method.clone(), &change, body, None).await;
        assert_error(status, &answer, StatusCode::CONFLICT, "archived");
    }
    let (status, _) = fay.delete(&path).await;
    assert_eq!(status, StatusCode::OK, "archiving again is harmless");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_added_changed_and_removed_but_the_last_manager_stays() {
    let (server, admin) = start().await;
    let (hal_id, hal) = server.user(&admin, "hal@bank.test").await;
    let (ida_id, _) = server.user(&admin, "ida@bank.test").await;
    let (joe_id, joe) = server.user(&admin, "joe@bank.test").await;
    let (project, _, _) = project_with_channels(&hal).await;
    let members = format!("{API}/projects/{project}/members");

    // By email (any case) and by user id.
    let (status, added) = hal
        .post(
            &members,
            json!({"email": "IDA@bank.test", "role": "performer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["id"], ida_id.to_string());
    let (status, again) = hal
        .post(
            &members,
            json!({"email": "ida@bank.test", "role": "performer"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same role again is fine: {again}"
    );
    let (status, body) = hal
        .post(&members, json!({"user_id": ida_id, "role": "manager"}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "already_member");
    let (status, added) = hal
        .post(&members, json!({"user_id": joe_id, "role": "performer"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");

    // Bad input names the field; unknown people are 422, not a hint about who exists.
    for (body, field) in [
        (
            json!({"email": "nobody@bank.test", "role": "performer"}),
            "email",
        ),
        (
            json!({"user_id": uuid::Uuid::new_v4(), "role": "performer"}),
            "user_id",
        ),
        (
            json!({"email": "not-an-email", "role": "performer"}),
            "email",
        ),
        (json!({"role": "performer"}), "user_id"),
        (
            json!({"user_id": joe_id, "email": "joe@bank.test", "role": "performer"}),
            "user_id",
        ),
        (json!({"user_id": joe_id, "role": "owner"}), "role"),
    ] {
        let (status, answer) = hal.post(&members, body.clone()).await;
        assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_names_field(&answer, field);
    }

    let (status, list) = hal.get_after(&members, &added).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 3);
    let roles: Vec<(String, String)> = items(&list)
        .iter()
        .map(|m| {
            (
                m["email"].as_str().expect("email").to_string(),
                m["role"].as_str().expect("role").to_string(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("hal@bank.test", "manager"),
            ("ida@bank.test", "performer"),
            ("joe@bank.test", "performer")
        ]
        .map(|(e, r)| (e.to_string(), r.to_string()))
    );
    // Joe sees the project as a performer.
    let (status, seen) = joe
        .get_after(&format!("{API}/projects/{project}"), &added)
        .await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["my_role"], "performer");
    assert_eq!(seen["members"], 3);

    // The last manager can be neither demoted nor removed.
    let (status, body) = hal
        .patch(&format!("{members}/{hal_id}"), json!({"role": "performer"}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "last_manager");
    let (status, body) = hal.delete(&format!("{members}/{hal_id}")).await;
    assert_error(status, &body, StatusCode::CONFLICT, "last_manager");
    let (status, body) = admin.delete(&format!("{members}/{hal_id}")).await;
    assert_error(status, &body, StatusCode::CONFLICT, "last_manager");

    // With a second manager, the first may step down.
    let (status, done) = hal
        .patch(&format!("{members}/{ida_id}"), json!({"role": "manager"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (status, done) = hal
        .patch(&format!("{members}/{hal_id}"), json!({"role": "performer"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (status, list) = hal.get_after(&members, &done).await;
    assert_eq!(status, StatusCode::OK);
    let role_of = |id: uuid::Uuid| {
        items(&list)
            .iter()
            .find(|m| m["user_id"] == id.to_string())
            .map(|m| m["role"].clone())
    };
    assert_eq!(role_of(hal_id), Some(json!("performer")));
    assert_eq!(role_of(ida_id), Some(json!("manager")));
    let (status, body) = hal
        .patch(&format!("{members}/{joe_id}"), json!({"role": "manager"}))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = admin
        .patch(
            &format!("{members}/{}", uuid::Uuid::new_v4()),
            json!({"role": "manager"}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // Removing: a manager removes others; anyone may leave.
    let (status, removed) = admin.delete(&format!("{members}/{joe_id}")).await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    let (status, left) = hal.delete(&format!("{members}/{hal_id}")).await;
    assert_eq!(status, StatusCode::OK, "{left}");
    let (status, list) = admin.get_after(&members, &left).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 1);
    assert_eq!(items(&list)[0]["user_id"], ida_id.to_string());
    let (status, body) = joe
        .get_after(&format!("{API}/projects/{project}"), &removed)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = admin.delete(&format!("{members}/{joe_id}")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_attached_with_versioned_prompts_and_detached() {
    let (_server, admin) = start().await;
    let product = catalog_id(&admin, "products", "DEPOSIT").await;
    let sms = catalog_id(&admin, "channels", "SMS").await;
    let email = catalog_id(&admin, "channels", "EMAIL").await;
    let push = catalog_id(&admin, "channels", "PUSH").await;
    let (status, created) = admin
        .post(
            &format!("{API}/projects"),
            json!({"name": "Вклады", "product_id": product, "description": "Ставка выше рынка"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let project = id_of(&created);
    let channels = format!("{API}/projects/{project}/channels");

    let (status, attached) = admin
        .post(&channels, json!({"channel_ids": [sms, email, sms]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{attached}");
    let (status, again) = admin.post(&channels, json!({"channel_ids": [sms]})).await;
    assert_eq!(status, StatusCode::OK, "re-attaching is no error: {again}");
    let (status, body) = admin.post(&channels, json!({"channel_ids": []})).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "channel_ids");
    let (status, body) = admin
        .post(&channels, json!({"channel_ids": [uuid::Uuid::new_v4()]}))
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "channel_ids");

    let (status, list) = admin.get_after(&channels, &attached).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 2);
    let mut listed: Vec<String> = items(&list)
        .iter()
        .map(|c| c["channel_id"].as_str().expect("id").to_string())
        .collect();
    listed.sort();
    let mut expected = vec![sms.clone(), email.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    for channel in items(&list) {
        assert_eq!(channel["prompt_version"], 1, "{channel}");
        assert_eq!(channel["attached"], true);
        let prompt = channel["prompt"].as_str().expect("prompt");
        assert!(
            prompt.contains("Ставка выше рынка"),
            "the prompt is built from the project: {prompt}"
        );
    }
    let (status, one) = admin
        .get_after(&format!("{channels}/{sms}"), &attached)
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["key"], "SMS");
    assert_eq!(one["prompt_version"], 1);
    let first_prompt = one["prompt"].clone();
    let (status, body) = admin.get(&format!("{channels}/{push}")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // A new prompt is version 2; the history lists both, newest first.
    let (status, changed) = admin
        .patch(
            &format!("{channels}/{sms}"),
            json!({"prompt": "Коротко и по делу: {client}"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let (status, one) = admin
        .get_after(&format!("{channels}/{sms}"), &changed)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["prompt_version"], 2);
    assert_eq!(one["prompt"], "Коротко и по делу: {client}");
    let (status, versions) = admin
        .get_after(&format!("{channels}/{sms}/prompts"), &changed)
        .await;
    assert_eq!(status, StatusCode::OK, "{versions}");
    let numbers: Vec<i64> = items(&versions)
        .iter()
        .map(|v| v["version"].as_i64().expect("version"))
        .collect();
    assert_eq!(numbers, [2, 1]);
    assert_eq!(
        versions["items"][0]["prompt"],
        "Коротко и по делу: {client}"
    );
    assert_eq!(versions["items"][1]["prompt"], first_prompt);
    // Who wrote a version is named, not only identified.
    assert!(
        versions["items"][0]["author"]
            .as_str()
            .is_some_and(|name| !name.is_empty()),
        "{versions}"
    );
    // Nothing was generated yet: no version produced an offer, and an unknown version is a 404.
    assert_eq!(versions["items"][1]["offers"], 0);
    let (status, offers) = admin
        .get(&format!("{channels}/{sms}/prompts/1/offers"))
        .await;
    assert_eq!(status, StatusCode::OK, "{offers}");
    assert_eq!(offers["total"], 0);
    let (status, body) = admin
        .get(&format!("{channels}/{sms}/prompts/7/offers"))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    // The same text again records nothing; an empty one is refused.
    let (status, _) = admin
        .patch(
            &format!("{channels}/{sms}"),
            json!({"prompt": "Коротко и по делу: {client}"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = admin
        .patch(&format!("{channels}/{sms}"), json!({"prompt": " "}))
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "prompt");
    let (status, body) = admin
        .patch(&format!("{channels}/{push}"), json!({"prompt": "Текст"}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "channel_not_attached");
    let (status, body) = admin.get(&format!("{channels}/{push}/prompts")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // Detaching hides it from the list; its history stays; attaching again goes on numbering.
    let (status, detached) = admin.delete(&format!("{channels}/{sms}")).await;
    assert_eq!(status, StatusCode::OK, "{detached}");
    let (status, list) = admin.get_after(&channels, &detached).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["channel_id"], email);
    let (status, list) = admin
        .get_after(&format!("{channels}?include_detached=true"), &detached)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 2);
    let (status, body) = admin.delete(&format!("{channels}/{sms}")).await;
    assert_error(status, &body, StatusCode::CONFLICT, "channel_not_attached");
    let (status, body) = admin
        .post(&format!("{channels}/{sms}/requests"), client_data(1))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "channel_not_attached");
    let (status, reattached) = admin.post(&channels, json!({"channel_ids": [sms]})).await;
    assert_eq!(status, StatusCode::CREATED, "{reattached}");
    let (status, versions) = admin
        .get_after(&format!("{channels}/{sms}/prompts"), &reattached)
        .await;
    assert_eq!(status, StatusCode::OK);
    let numbers: Vec<i64> = items(&versions)
        .iter()
        .map(|v| v["version"].as_i64().expect("version"))
        .collect();
    assert_eq!(numbers, [3, 2, 1]);
}

// ---------------------------------------------------------------------------------------------
// Client requests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_requests_are_validated_and_the_same_client_is_one_request() {
    let (_server, admin) = start().await;
    let (project, sms, email) = project_with_channels(&admin).await;
    let requests = format!("{API}/projects/{project}/channels/{sms}/requests");

    let (status, created) = admin.post(&requests, client_data(1)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = id_of(&created);

    // The same data with its columns in another order is the same client.
    let reordered = json!({
        "client_data": {"super_clust": "k. Без продукта", "reg_region_nm": "Республика Саха (Якутия)", "age": 31, "gender": "1"},
        "client_data_decoding": {
            "age": "Возраст Клиента", "super_clust": "Кластер клиента", "gender": "Пол клиента (0 муж, 1 жен)",
            "reg_region_nm": "Регион"
        }
    });
    let (status, repeat) = admin.post(&requests, reordered).await;
    assert_eq!(status, StatusCode::OK, "{repeat}");
    assert_eq!(repeat["id"], id);
    // Other data, or another channel, is another request.
    let (status, other) = admin.post(&requests, client_data(2)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(other["id"], id);
    let (status, elsewhere) = admin
        .post(
            &format!("{API}/projects/{project}/channels/{email}/requests"),
            client_data(1),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(elsewhere["id"], id);

    // Every column needs a description; the error lists the ones missing.
    let (status, body) = admin
        .post(&requests, json!({"client_data": {"age": 40, "gender": "0", "income": 1000}, "client_data_decoding": {"gender": "Пол"}}))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "missing_descriptions",
    );
    assert_eq!(
        body["error"]["fields"],
        json!(["client_data_decoding.age", "client_data_decoding.income"])
    );
    let (status, body) = admin
        .post(&requests, json!({"client_data": {"age": 40}}))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "missing_descriptions",
    );
    assert_eq!(body["error"]["fields"], json!(["client_data_decoding.age"]));

    // Values are scalars.
    for nested in [json!({"city": "Якутск"}), json!([1, 2])] {
        let (status, body) = admin
            .post(&requests, json!({"client_data": {"address": nested}, "client_data_decoding": {"address": "Адрес"}}))
            .await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_names_field(&body, "client_data.address");
    }
    for (body, field) in [
        (
            json!({"client_data": {}, "client_data_decoding": {}}),
            "client_data",
        ),
        (
            json!({"client_data": {"age": 1}, "client_data_decoding": {"age": 5}}),
            "client_data_decoding.age",
        ),
    ] {
        let (status, answer) = admin.post(&requests, body).await;
        assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_names_field(&answer, field);
    }
    let (status, body) = admin
        .post(
            &requests,
            json!({"client_data_decoding": {"age": "Возраст"}}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("client_data")),
        "{body}"
    );

    // Only attached channels take requests; unknown projects are 404.
    let push = catalog_id(&admin, "channels", "PUSH").await;
    let (status, body) = admin
        .post(
            &format!("{API}/projects/{project}/channels/{push}/requests"),
            client_data(1),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "channel_not_attached");
    let (status, body) = admin
        .post(
            &format!(
                "{API}/projects/{}/channels/{sms}/requests",
                uuid::Uuid::new_v4()
            ),
            client_data(1),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    let (status, project_view) = admin
        .get_after(&format!("{API}/projects/{project}"), &elsewhere)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(project_view["requests"], 3, "{project_view}");
}

/// Creates a client request and answers the command's answer.
async fn add_request(client: &Client, path: &str, body: Value) -> Value {
    let (status, created) = client.post(path, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

fn described(client_id: Option<&str>, source: Option<&str>, age: i64, cluster: &str) -> Value {
    let mut body = json!({
        "client_data": {"age": age, "super_clust": cluster},
        "client_data_decoding": {"age": "Возраст", "super_clust": "Кластер клиента"}
    });
    if let Some(client_id) = client_id {
        body["client_id"] = json!(client_id);
    }
    if let Some(source) = source {
        body["source"] = json!(source);
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_requests_are_filtered_sorted_and_paged() {
    let (_server, admin) = start().await;
    let (project, sms, email) = project_with_channels(&admin).await;
    let requests = format!("{API}/projects/{project}/channels/{sms}/requests");

    let r1 = id_of(
        &add_request(
            &admin,
            &requests,
            described(Some("C1"), Some("file_a.csv"), 30, "k. Без продукта"),
        )
        .await,
    );
    let r2 = id_of(
        &add_request(
            &admin,
            &requests,
            described(Some("C2"), Some("file_b.csv"), 40, "j. Зарплатный"),
        )
        .await,
    );
    let r3 = id_of(
        &add_request(
            &admin,
            &requests,
            described(None, None, 50, "k. Без продукта"),
        )
        .await,
    );
    // A request in another channel never shows here.
    add_request(
        &admin,
        &format!("{API}/projects/{project}/channels/{email}/requests"),
        described(Some("C1"), None, 30, "x"),
    )
    .await;
    let (status, sold) = admin
        .put(
            &format!("{API}/requests/{r2}/outcome"),
            json!({"success_type": "sold"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sold}");

    let list = |query: String| {
        let admin = admin.clone();
        let requests = requests.clone();
        let sold = sold.clone();
        async move {
            let (status, body) = admin.get_after(&format!("{requests}?{query}"), &sold).await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            assert_eq!(
                body["total"]
                    .as_u64()
                    .map(|t| t >= items(&body).len() as u64),
                Some(true),
                "{body}"
            );
            body
        }
    };

    let all = list(String::new()).await;
    assert_eq!(
        ids(&all),
        [r1.clone(), r2.clone(), r3.clone()],
        "oldest first by default"
    );
    assert_eq!(all["total"], 3);
    let first = &items(&all)[0];
    assert_eq!(
        (first["status"].as_str(), first["success_type"].as_str()),
        (Some("initial"), Some("undefined"))
    );
    assert_eq!(items(&all)[2]["source"], "api", "the default source");
    assert!(items(&all)[2]["client_id"].is_null());

    let cases: Vec<(String, Vec<&String>)> = vec![
        ("status=initial".into(), vec![&r1, &r2, &r3]),
        ("status=ok".into(), vec![]),
        ("success_type=sold".into(), vec![&r2]),
        ("success_type=undefined".into(), vec![&r1, &r3]),
        ("source=file_a.csv".into(), vec![&r1]),
        ("source=api".into(), vec![&r3]),
        ("client_id=C2".into(), vec![&r2]),
        (format!("cluster={}", enc("k. Без продукта")), vec![&r1, &r3]),
        (format!("q={}", enc("арплат")), vec![&r2]),
        ("q=file_".into(), vec![&r1, &r2]),
        ("q=%25".into(), vec![]),
        ("sort=-created_at".into(), vec![&r3, &r2, &r1]),
        ("sort=client_id".into(), vec![&r1, &r2, &r3]),
        ("sort=-client_id".into(), vec![&r2, &r1, &r3]),
        ("status=initial&cluster=j.%20%D0%97%D0%B0%D1%80%D0%BF%D0%BB%D0%B0%D1%82%D0%BD%D1%8B%D0%B9".into(), vec![&r2]),
        ("limit=2".into(), vec![&r1, &r2]),
        ("limit=2&offset=2".into(), vec![&r3]),
        ("sort=-created_at&limit=1&offset=1".into(), vec![&r2]),
    ];
    for (query, expected) in cases {
        let body = list(query.clone()).await;
        assert_eq!(
            ids(&body),
            expected.into_iter().cloned().collect::<Vec<_>>(),
            "{query}: {body}"
        );
    }
    let paged = list("limit=1&offset=1".into()).await;
    assert_eq!(paged["total"], 3, "total counts every match, not the page");

    for bad in [
        "sort=bogus",
        "sort=created_at;drop",
        "sort=--created_at",
        "status=done",
        "success_type=bought",
        "limit=0",
        "offset=-5",
    ] {
        let (status, body) = admin.get_after(&format!("{requests}?{bad}"), &sold).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    let (status, body) = admin.get(&format!("{requests}?sort=bogus")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert_names_field(&body, "sort");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_request_keeps_its_column_order_and_records_outcomes() {
    let (_server, admin) = start().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let columns = [
        "zeta",
        "gender",
        "age",
        "alpha",
        "super_clust",
        "reg_region_nm",
    ];
    let body = json!({
        "client_id": "4242",
        "source": "autumn.xlsx",
        "client_data": {"zeta": true, "gender": "1", "age": 52.7, "alpha": null, "super_clust": "k. Без продукта", "reg_region_nm": "Якутия"},
        "client_data_decoding": {
            "reg_region_nm": "Регион", "alpha": "Первая буква", "zeta": "Последняя буква",
            "super_clust": "Кластер клиента", "gender": "Пол клиента (0 муж, 1 жен)", "age": "Возраст Клиента"
        }
    });
    let created = add_request(
        &admin,
        &format!("{API}/projects/{project}/channels/{sms}/requests"),
        body,
    )
    .await;
    let id = id_of(&created);
    let path = format!("{API}/requests/{id}");

    let (status, request) = admin.get_after(&path, &created).await;
    assert_eq!(status, StatusCode::OK, "{request}");
    assert_eq!(request["project_id"], project);
    assert_eq!(request["channel_id"], sms);
    assert_eq!(request["client_id"], "4242");
    assert_eq!(request["source"], "autumn.xlsx");
    assert_eq!(request["cluster"], "k. Без продукта");
    assert_eq!(request["status"], "initial");
    assert_eq!(request["success_type"], "undefined");
    let order: Vec<&str> = request["client_data"]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(order, columns, "the client's column order is kept");
    assert_eq!(request["client_data"]["age"], 52.7);
    assert_eq!(request["client_data"]["zeta"], true);
    assert!(request["client_data"]["alpha"].is_null());
    let listed: Vec<(&str, &str)> = request["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["key"].as_str().expect("key"),
                c["description"].as_str().expect("description"),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("zeta", "Последняя буква"),
            ("gender", "Пол клиента (0 муж, 1 жен)"),
            ("age", "Возраст Клиента"),
            ("alpha", "Первая буква"),
            ("super_clust", "Кластер клиента"),
            ("reg_region_nm", "Регион")
        ]
    );
    assert_eq!(request["client_data_decoding"]["age"], "Возраст Клиента");

    // Outcomes.
    let outcome = format!("{path}/outcome");
    let (status, done) = admin.put(&outcome, json!({"success_type": "sold"})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["id"], id);
    let (status, request) = admin.get_after(&path, &done).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(request["success_type"], "sold");
    let (status, done) = admin
        .put(&outcome, json!({"success_type": "negative_reaction"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (status, request) = admin.get_after(&path, &done).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(request["success_type"], "negative_reaction");
    let (status, body) = admin.put(&outcome, json!({"success_type": "bought"})).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "success_type");
    let (status, body) = admin.put(&outcome, json!({})).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let (status, body) = admin
        .put(
            &format!("{API}/requests/{}/outcome", uuid::Uuid::new_v4()),
            json!({"success_type": "sold"}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = admin
        .get(&format!("{API}/requests/{}", uuid::Uuid::new_v4()))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

// ---------------------------------------------------------------------------------------------
// Errors, request ids, consistency, system endpoints
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_our_error_shape_and_never_a_5xx() {
    let (server, admin) = start().await;
    let projects = format!("{API}/projects");
    let json_type = [("content-type", "application/json")];

    let (status, _, body) = raw(
        &admin,
        Method::POST,
        &projects,
        &json_type,
        Some(b"{\"name\": ".to_vec()),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "malformed_json");
    let (status, _, body) = raw(
        &admin,
        Method::POST,
        &projects,
        &json_type,
        Some(b"not json at all".to_vec()),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "malformed_json");
    let (status, _, body) = raw(
        &server.anonymous(),
        Method::POST,
        &format!("{API}/auth/login"),
        &json_type,
        Some(b"{".to_vec()),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "malformed_json");

    let (status, body) = admin
        .post(
            &projects,
            json!({"name": 5, "product_id": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "name");
    let (status, body) = admin
        .post(&projects, json!({"name": "x", "product_id": "not-a-uuid"}))
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "product_id");
    let (status, body) = admin.post(&projects, json!(["an", "array"])).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let (status, body) = admin
        .post(
            &projects,
            json!({"name": "x", "product_id": uuid::Uuid::new_v4(), "colour": "red"}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    let (status, _, body) = raw(
        &admin,
        Method::POST,
        &projects,
        &[],
        Some(b"{\"name\": \"x\"}".to_vec()),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let (status, _, body) = raw(
        &admin,
        Method::POST,
        &projects,
        &[("content-type", "text/plain")],
        Some(b"{\"name\": \"x\"}".to_vec()),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    // Over the 2 MiB default limit.
    let big = json!({"name": "x".repeat(3 * 1024 * 1024), "product_id": uuid::Uuid::new_v4()});
    let (status, _, body) = raw(
        &admin,
        Method::POST,
        &projects,
        &json_type,
        Some(serde_json::to_vec(&big).expect("json")),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    // Just under it, the body is read and judged on its content.
    let (status, body) = admin
        .post(
            &projects,
            json!({"name": "x".repeat(1024 * 1024), "product_id": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    for path in [
        format!("{API}/projects/not-a-uuid"),
        format!("{API}/requests/%20"),
        format!("{API}/products/0191e2d4"),
        format!(
            "{API}/projects/{}/channels/sms/requests",
            uuid::Uuid::new_v4()
        ),
    ] {
        let (status, body) = admin.get(&path).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_path");
        assert!(body["error"]["fields"].is_array(), "{path}: {body}");
    }
    let (status, body) = admin
        .patch(&format!("{API}/users/xyz"), json!({"name": "x"}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_path");
    let (status, body) = admin
        .delete(&format!(
            "{API}/projects/{}/members/123",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_path");
    assert_names_field(&body, "user_id");

    // Outside /api, a path is a page of the web interface (tests/ui.rs); a file that is not
    // ours is still a 404.
    for path in [
        "/api/v1/nothing-here",
        "/api/v1/projects/a/b/c/d/e",
        "/nothing.php",
        "/api/v2/projects",
        "/api",
    ] {
        let (status, body) = admin.get(path).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    let (status, body) = server.anonymous().get("/api/v1/nothing-here").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // NUL cannot be stored: refused as bad input, never a database failure.
    let (project, sms, _) = project_with_channels(&admin).await;
    for path in [
        format!("{API}/products?q=%00"),
        format!("{API}/channels?q=a%00b"),
        format!("{API}/users?q=%00"),
        format!("{API}/projects?q=%00"),
        format!("{API}/projects/{project}/channels/{sms}/requests?q=%00"),
        format!("{API}/projects/{project}/channels/{sms}/requests?source=%00"),
        format!("{API}/projects/{project}/channels/{sms}/requests?client_id=%00"),
        format!("{API}/projects/{project}/channels/{sms}/requests?cluster=%00"),
    ] {
        let (status, body) = admin.get(&path).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_query");
    }
    let (status, body) = admin
        .post(
            &format!("{API}/projects/{project}/channels/{sms}/requests"),
            json!({"client_data": {"note": "a\u{0}b"}, "client_data_decoding": {"note": "Заметка"}}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_names_field(&body, "client_data.note");

    // A method a path does not take.
    let (status, body) = admin
        .call(Method::PUT, &projects, Some(json!({})), None)
        .await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let (status, body) = admin.delete(&format!("{API}/me")).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id_and_echoes_the_clients() {
    let (server, admin) = start().await;
    let anonymous = server.anonymous();
    let cases = [
        (&admin, Method::GET, format!("{API}/me"), None),
        (
            &admin,
            Method::GET,
            format!("{API}/projects/not-a-uuid"),
            None,
        ),
        (&admin, Method::GET, "/nothing".to_string(), None),
        (&anonymous, Method::GET, format!("{API}/me"), None),
        (&anonymous, Method::GET, "/health".to_string(), None),
        (&anonymous, Method::GET, "/metrics".to_string(), None),
        (
            &admin,
            Method::POST,
            format!("{API}/projects"),
            Some(b"{".to_vec()),
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for (client, method, path, body) in cases {
        let headers: &[(&str, &str)] = if body.is_some() {
            &[("content-type", "application/json")]
        } else {
            &[]
        };
        let (status, answer, _) = raw(client, method.clone(), &path, headers, body.clone()).await;
        let id = answer
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{method} {path} ({status}) has no X-Request-Id"));
        assert!(!id.is_empty());
        assert!(seen.insert(id.to_string()), "request ids are unique: {id}");

        let mine = format!("client-{}", uuid::Uuid::new_v4());
        let mut with_id = headers.to_vec();
        with_id.push(("x-request-id", &mine));
        let (_, answer, _) = raw(client, method.clone(), &path, &with_id, body).await;
        assert_eq!(
            answer.get("x-request-id").and_then(|v| v.to_str().ok()),
            Some(mine.as_str()),
            "{method} {path} echoes the id"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistency_token_lets_a_client_read_its_own_writes() {
    let (_server, admin) = start().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let path = format!("{API}/projects/{project}");

    // Write, then read at once with the token: the write is always there.
    for round in 0..15 {
        let name = format!("Кампания №{round}");
        let (status, done) = admin.patch(&path, json!({ "name": name })).await;
        assert_eq!(status, StatusCode::OK, "{done}");
        assert!(done["consistency_token"].is_string(), "{done}");
        let (status, seen) = admin.get_after(&path, &done).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(seen["name"], name.as_str(), "round {round}");

        let created = add_request(
            &admin,
            &format!("{path}/channels/{sms}/requests"),
            client_data(100 + round),
        )
        .await;
        let (status, request) = admin
            .get_after(&format!("{API}/requests/{}", id_of(&created)), &created)
            .await;
        assert_eq!(status, StatusCode::OK, "round {round}: {request}");
        // The token also works as a query parameter.
        let token = created["consistency_token"].as_str().expect("token");
        let (status, list) = admin
            .get(&format!(
                "{path}/channels/{sms}/requests?consistency_token={token}&limit=500"
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["total"], round + 1);
    }

    for bad in ["nonsense", "12", "a.b", "1.x", ""] {
        let (status, body) = admin.call(Method::GET, &path, None, Some(bad)).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
        assert_names_field(&body, "consistency_token");
    }
    let (status, body) = admin.get(&format!("{path}?consistency_token=oops")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_the_api_documents() {
    let server = TestServer::start().await;
    let anonymous = server.anonymous();

    let (status, health) = anonymous.get("/health").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "ok");
    let (status, ready) = anonymous.get("/ready").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["database"], true);

    let (status, body) = anonymous.get("/metrics").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let admin = server.admin().await;
    let (status, headers, metrics) = raw(&admin, Method::GET, "/metrics", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain")));
    let metrics = metrics.as_str().expect("text");
    assert!(
        metrics.contains("offerflow_projection_lag_events{subscriber="),
        "{metrics}"
    );
    assert!(metrics.contains("offerflow_up 1"), "{metrics}");

    let (status, openapi) = anonymous.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(openapi["openapi"], "3.1.0");
    let paths = openapi["paths"].as_object().expect("paths");
    for path in [
        "/projects/{id}/channels/{channel_id}/requests",
        "/auth/login",
        "/requests/{id}/outcome",
        "/users/{id}",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    assert!(
        openapi["components"]["securitySchemes"]["bearer"].is_object(),
        "the bearer scheme is documented"
    );

    let (status, headers, page) = raw(&anonymous, Method::GET, "/api/docs/", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html")));
    let page = page.as_str().expect("html");
    assert!(page.to_lowercase().contains("swagger"), "{page}");
    assert!(
        !page.contains("unpkg.com") && !page.contains("cdn."),
        "Swagger UI is served offline: {page}"
    );
    let (status, _, script) = raw(
        &anonymous,
        Method::GET,
        "/api/docs/swagger-initializer.js",
        &[],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        script
            .as_str()
            .is_some_and(|s| s.contains("/api/v1/openapi.json")),
        "{script}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_documented_endpoint_answers_odd_input_with_a_5xx() {
    let (server, admin) = start().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let created = add_request(
        &admin,
        &format!("{API}/projects/{project}/channels/{sms}/requests"),
        client_data(1),
    )
    .await;
    let (_, performer) = server.user(&admin, "odd@bank.test").await;
    let (status, _) = admin
        .post(
            &format!("{API}/projects/{project}/members"),
            json!({"email": "odd@bank.test", "role": "performer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let document = serde_json::to_value(offerflow_http::openapi()).expect("document");
    let paths = document["paths"].as_object().expect("paths");
    let bodies = [
        None,
        Some(json!({})),
        Some(json!([])),
        Some(Value::Null),
        Some(json!("text")),
        Some(
            json!({"name": "a\u{0}b", "email": "a\u{0}@b.c", "prompt": "\u{0}", "description": "\u{0}", "key": "\u{0}"}),
        ),
        Some(
            json!({"client_data": {"a": {"b": [1, {"c": null}]}}, "client_data_decoding": {"a": 1}}),
        ),
        Some(
            json!({"role": "admin", "success_type": 7, "channel_ids": ["x", 1, null], "user_id": "x", "active": "no"}),
        ),
    ];
    let mut checked = 0;
    for (template, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let method: Method = method.to_uppercase().parse().expect("method");
            for params in [
                [
                    project.as_str(),
                    sms.as_str(),
                    created["id"].as_str().expect("id"),
                ],
                ["not-a-uuid", "0", "%00"],
                ["00000000-0000-0000-0000-000000000000"; 3],
            ] {
                // `{id}` is the project or the request; the second parameter the channel or user.
                let path = template
                    .replace(
                        "{id}",
                        if template.starts_with("/requests") {
                            params[2]
                        } else {
                            params[0]
                        },
                    )
                    .replace("{channel_id}", params[1])
                    .replace("{user_id}", params[1]);
                // An event stream on a real channel answers 200 and never ends; worker.rs reads it.
                if template.ends_with("/stream") && params[0] == project.as_str() {
                    continue;
                }
                let query = "?limit=-1&offset=x&q=%25_%5C&sort=-&include_archived=1&status=&consistency_token=1.1";
                for url in [format!("{API}{path}"), format!("{API}{path}{query}")] {
                    for body in &bodies {
                        for client in [&admin, &performer] {
                            let (status, answer) =
                                client.call(method.clone(), &url, body.clone(), None).await;
                            checked += 1;
                            assert!(
                                !status.is_server_error(),
                                "{method} {url} with {body:?}: {status} {answer}"
                            );
                            if status.is_client_error() {
                                assert!(
                                    answer["error"]["code"].is_string(),
                                    "{method} {url}: {answer}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "{checked} calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_lock_that_email_for_a_while() {
    let (server, admin) = start().await;
    server.user(&admin, "guessed@bank.test").await;
    let anonymous = server.anonymous();
    let attempt = |password: &'static str| {
        let anonymous = anonymous.clone();
        async move {
            anonymous
                .post(
                    &format!("{API}/auth/login"),
                    json!({"email": "guessed@bank.test", "password": password}),
                )
                .await
        }
    };
    for _ in 0..5 {
        let (status, body) = attempt("wrong guess").await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // Now even the right password waits, and the answer says for how long.
    let response = anonymous
        .http
        .post(format!("{}{API}/auth/login", server.base))
        .json(&json!({"email": "guessed@bank.test", "password": PASSWORD}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "too_many_attempts");
    // Other accounts are not affected.
    let (status, _) = anonymous
        .post(
            &format!("{API}/auth/login"),
            json!({"email": common::ADMIN_EMAIL, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}
