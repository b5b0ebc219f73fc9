//! Who may call what: every endpoint × every kind of caller, over real HTTP against one server
//! and one project.
//!
//! The callers: `anonymous` (no token), `outsider` (signed in, not in the project), `performer`
//! and `manager` (members of the project), `admin`. The rules the table spells out:
//! - anonymous callers get 401 everywhere except sign-in, refresh and the public system
//!   endpoints (health, readiness, the API documents; metrics are for admins);
//! - the catalog is read by anyone signed in and written by admins only (403 for others);
//! - user administration is for admins (403), except reading one's own record;
//! - inside a project, outsiders get 404 (the project's existence is not revealed), performers
//!   read everything, add client requests, generate offers and record outcomes but get 403 for
//!   editing the project, its members, channels, prompts and guardrails; managers and admins may
//!   do everything; dead generation jobs are for admins; performers import clients, admins
//!   register client sources;
//! - an aggregate's history is read by whoever may read the aggregate; the audit feed is for
//!   admins;
//! - anyone signed in may create a project.
//!
//! An allowed call is written as the exact success status it must answer.
mod common;

use std::collections::HashMap;

use common::{catalog_id, Client, TestServer, PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Anonymous,
    Outsider,
    Performer,
    Manager,
    Admin,
}

const ROLES: [Role; 5] = [
    Role::Anonymous,
    Role::Outsider,
    Role::Performer,
    Role::Manager,
    Role::Admin,
];

/// Where a row runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    /// The project shared by the whole table.
    Shared,
    /// A project made for this one call (the call destroys state later rows need, or could
    /// only succeed once).
    Fresh,
}

struct Row {
    method: Method,
    /// With placeholders: see [`World::render`].
    path: &'static str,
    /// A JSON template, with the same placeholders.
    body: Option<&'static str>,
    on: On,
    /// The status expected for anonymous, outsider, performer, manager, admin.
    expect: [u16; 5],
}

fn row(method: Method, path: &'static str, body: Option<&'static str>, expect: [u16; 5]) -> Row {
    Row {
        method,
        path,
        body,
        on: On::Shared,
        expect,
    }
}

fn fresh(method: Method, path: &'static str, body: Option<&'static str>, expect: [u16; 5]) -> Row {
    Row {
        method,
        path,
        body,
        on: On::Fresh,
        expect,
    }
}

/// The matrix. Placeholders: `{project}` (the shared project, or a fresh one for `fresh` rows),
/// `{sms}`/`{email}` (channels attached to it), `{push}` (a channel that is not), `{request}` (a
/// client request in its SMS channel), `{spare}` (a performer in it who is none of the callers),
/// `{candidate}` (a user in no project), `{me}` (the caller), `{nowhere}` (no project at all),
/// `{product}`, `{scratch_product}`/`{scratch_channel}` (catalog entries only this table
/// edits), `{refresh_token}` (a fresh one), `{my_api_token}` (a fresh API token of the caller),
/// `{n}` (a number unique to the call), `{password}`.
#[rustfmt::skip]
fn matrix() -> Vec<Row> {
    use Method as M;
    const OPEN: [u16; 5] = [200, 200, 200, 200, 200];
    vec![
        //   method     path                                                   body                                                      anon outs perf mgr  admin
        // Public system endpoints.
        row(M::GET,    "/health",                                              None,                                                     OPEN),
        row(M::GET,    "/ready",                                               None,                                                     OPEN),
        row(M::GET,    "/metrics",                                             None,                                                     [401, 403, 403, 403, 200]),
        row(M::GET,    "/api/v1/openapi.json",                                 None,                                                     OPEN),
        row(M::GET,    "/api/docs/",                                           None,                                                     OPEN),

        // Signing in and the caller's own account.
        row(M::POST,   "/api/v1/auth/login",                                   Some(r#"{"email": "manager@bank.test", "password": "{password}"}"#), OPEN),
        row(M::POST,   "/api/v1/auth/refresh",                                 Some(r#"{"refresh_token": "{refresh_token}"}"#),          OPEN),
        row(M::POST,   "/api/v1/auth/logout",                                  Some(r#"{"refresh_token": "{refresh_token}"}"#),          [401, 204, 204, 204, 204]),
        row(M::GET,    "/api/v1/me",                                           None,                                                     [401, 200, 200, 200, 200]),
        row(M::PATCH,  "/api/v1/me",                                           Some(r#"{"position": "Должность {n}"}"#),                 [401, 200, 200, 200, 200]),
        row(M::POST,   "/api/v1/me/password",                                  Some(r#"{"current_password": "{password}", "new_password": "{password}"}"#), [401, 204, 204, 204, 204]),
        row(M::GET,    "/api/v1/api-tokens",                                   None,                                                     [401, 200, 200, 200, 200]),
        row(M::POST,   "/api/v1/api-tokens",                                   Some(r#"{"name": "Интеграция {n}"}"#),                    [401, 201, 201, 201, 201]),
        row(M::DELETE, "/api/v1/api-tokens/{my_api_token}",                    None,                                                     [401, 204, 204, 204, 204]),

        // User administration.
        row(M::GET,    "/api/v1/users",                                        None,                                                     [401, 403, 403, 403, 200]),
        row(M::POST,   "/api/v1/users",                                        Some(r#"{"email": "new{n}@bank.test", "password": "{password}"}"#), [401, 403, 403, 403, 201]),
        row(M::GET,    "/api/v1/users/{me}",                                   None,                                                     [401, 200, 200, 200, 200]),
        row(M::GET,    "/api/v1/users/{spare}",                                None,                                                     [401, 403, 403, 403, 200]),
        row(M::GET,    "/api/v1/users/{nowhere}",                              None,                                                     [401, 403, 403, 403, 404]),
        row(M::PATCH,  "/api/v1/users/{spare}",                                Some(r#"{"position": "Позиция {n}"}"#),                   [401, 403, 403, 403, 200]),
        row(M::PATCH,  "/api/v1/users/{me}",                                   Some(r#"{"name": "Имя {n}"}"#),                           [401, 403, 403, 403, 200]),

        // The catalog.
        row(M::GET,    "/api/v1/products",                                     None,                                                     [401, 200, 200, 200, 200]),
        row(M::POST,   "/api/v1/products",                                     Some(r#"{"key": "NEW_{n}", "name": "Продукт", "description": "Описание"}"#), [401, 403, 403, 403, 201]),
        row(M::GET,    "/api/v1/products/{product}",                           None,                                                     [401, 200, 200, 200, 200]),
        row(M::PATCH,  "/api/v1/products/{scratch_product}",                   Some(r#"{"description": "Описание {n}"}"#),               [401, 403, 403, 403, 200]),
        row(M::DELETE, "/api/v1/products/{scratch_product}",                   None,                                                     [401, 403, 403, 403, 200]),
        row(M::GET,    "/api/v1/channels",                                     None,                                                     [401, 200, 200, 200, 200]),
        row(M::POST,   "/api/v1/channels",                                     Some(r#"{"key": "NEW_{n}", "name": "Канал", "description": "Описание"}"#), [401, 403, 403, 403, 201]),
        row(M::GET,    "/api/v1/channels/{sms}",                               None,                                                     [401, 200, 200, 200, 200]),
        row(M::PATCH,  "/api/v1/channels/{scratch_channel}",                   Some(r#"{"description": "Описание {n}"}"#),               [401, 403, 403, 403, 200]),
        row(M::DELETE, "/api/v1/channels/{scratch_channel}",                   None,                                                     [401, 403, 403, 403, 200]),

        // Projects.
        row(M::GET,    "/api/v1/projects",                                     None,                                                     [401, 200, 200, 200, 200]),
        row(M::POST,   "/api/v1/projects",                                     Some(r#"{"name": "Проект {n}", "product_id": "{product}"}"#), [401, 201, 201, 201, 201]),
        row(M::GET,    "/api/v1/projects/{project}",                           None,                                                     [401, 404, 200, 200, 200]),
        row(M::GET,    "/api/v1/projects/{nowhere}",                           None,                                                     [401, 404, 404, 404, 404]),
        row(M::PATCH,  "/api/v1/projects/{project}",                           Some(r#"{"description": "Описание {n}"}"#),               [401, 404, 403, 200, 200]),
        row(M::PATCH,  "/api/v1/projects/{nowhere}",                           Some(r#"{"description": "Описание {n}"}"#),               [401, 404, 404, 404, 404]),
        fresh(M::DELETE, "/api/v1/projects/{project}",                         None,                                                     [401, 404, 403, 200, 200]),

        // Members.
        row(M::GET,    "/api/v1/projects/{project}/members",                   None,                                                     [401, 404, 200, 200, 200]),
        fresh(M::POST, "/api/v1/projects/{project}/members",                   Some(r#"{"user_id": "{candidate}", "role": "performer"}"#), [401, 404, 403, 201, 201]),
        fresh(M::POST, "/api/v1/projects/{project}/members",                   Some(r#"{"email": "candidate@bank.test", "role": "manager"}"#), [401, 404, 403, 201, 201]),
        fresh(M::PATCH, "/api/v1/projects/{project}/members/{spare}",          Some(r#"{"role": "manager"}"#),                           [401, 404, 403, 200, 200]),
        fresh(M::DELETE, "/api/v1/projects/{project}/members/{spare}",         None,                                                     [401, 404, 403, 200, 200]),
        // Leaving: a performer may; the only manager may not (409); an admin is no member (404).
        fresh(M::DELETE, "/api/v1/projects/{project}/members/{me}",            None,                                                     [401, 404, 200, 409, 404]),
        row(M::GET,    "/api/v1/projects/{nowhere}/members",                   None,                                                     [401, 404, 404, 404, 404]),

        // Channels and prompts.
        row(M::GET,    "/api/v1/projects/{project}/channels",                  None,                                                     [401, 404, 200, 200, 200]),
        fresh(M::POST, "/api/v1/projects/{project}/channels",                  Some(r#"{"channel_ids": ["{push}"]}"#),                   [401, 404, 403, 201, 201]),
        row(M::GET,    "/api/v1/projects/{project}/channels/{sms}",            None,                                                     [401, 404, 200, 200, 200]),
        row(M::PATCH,  "/api/v1/projects/{project}/channels/{sms}",            Some(r#"{"prompt": "Промпт {n}"}"#),                      [401, 404, 403, 200, 200]),
        fresh(M::DELETE, "/api/v1/projects/{project}/channels/{email}",        None,                                                     [401, 404, 403, 200, 200]),
        row(M::GET,    "/api/v1/projects/{project}/channels/{sms}/prompts",    None,                                                     [401, 404, 200, 200, 200]),
        row(M::GET,    "/api/v1/projects/{project}/channels/{sms}/prompts/{version}/offers", None,                                         [401, 404, 200, 200, 200]),

        // Client requests and outcomes.
        row(M::GET,    "/api/v1/projects/{project}/channels/{sms}/requests",   None,                                                     [401, 404, 200, 200, 200]),
        row(M::POST,   "/api/v1/projects/{project}/channels/{sms}/requests",   Some(r#"{"client_data": {"age": {n}}, "client_data_decoding": {"age": "Возраст"}}"#), [401, 404, 201, 201, 201]),
        row(M::POST,   "/api/v1/projects/{nowhere}/channels/{sms}/requests",   Some(r#"{"client_data": {"age": {n}}, "client_data_decoding": {"age": "Возраст"}}"#), [401, 404, 404, 404, 404]),
        row(M::GET,    "/api/v1/requests/{request}",                           None,                                                     [401, 404, 200, 200, 200]),
        row(M::PUT,    "/api/v1/requests/{request}/outcome",                   Some(r#"{"success_type": "sold"}"#),                      [401, 404, 200, 200, 200]),
        row(M::PUT,    "/api/v1/requests/{nowhere}/outcome",                   Some(r#"{"success_type": "sold"}"#),                      [401, 404, 404, 404, 404]),

        // Guardrails.
        row(M::PUT,    "/api/v1/projects/{project}/channels/{sms}/max-length", Some(r#"{"max_chars": {n}}"#),                            [401, 404, 403, 200, 200]),
        row(M::PUT,    "/api/v1/projects/{project}/banned-phrases",            Some(r#"{"phrases": ["фраза {n}"]}"#),                    [401, 404, 403, 200, 200]),

        // Generation: performers may generate; one generation at a time per request, so each
        // call gets its own project.
        fresh(M::POST, "/api/v1/requests/{request}/generations",               Some(r#"{}"#),                                            [401, 404, 202, 202, 202]),
        fresh(M::POST, "/api/v1/projects/{project}/channels/{sms}/generations", Some(r#"{"all_pending": true}"#),                       [401, 404, 202, 202, 202]),
        row(M::GET,    "/api/v1/projects/{project}/channels/{sms}/generation-progress", None,                                            [401, 404, 200, 200, 200]),
        row(M::GET,    "/api/v1/projects/{project}/channels/{sms}/generation-progress/stream", None,                                     [401, 404, 200, 200, 200]),
        row(M::PUT,    "/api/v1/messages/{nowhere}/rating",                    Some(r#"{"status": "ok"}"#),                              [401, 404, 404, 404, 404]),
        // Imports: whoever may add clients may import (a JSON body where a file belongs is 415,
        // an unknown source 422, once the rights are checked); client sources are registered and
        // removed by admins and listed, without credentials, to anyone signed in.
        row(M::POST,   "/api/v1/projects/{project}/channels/{sms}/imports",    Some(r#"{}"#),                                            [401, 404, 415, 415, 415]),
        row(M::POST,   "/api/v1/projects/{project}/channels/{sms}/imports/from-source", Some(r#"{"source": "nowhere"}"#),               [401, 404, 422, 422, 422]),
        row(M::GET,    "/api/v1/imports/{nowhere}",                            None,                                                     [401, 404, 404, 404, 404]),
        row(M::GET,    "/api/v1/imports/columns",                              None,                                                     [401, 200, 200, 200, 200]),
        row(M::GET,    "/api/v1/client-sources",                               None,                                                     [401, 200, 200, 200, 200]),
        row(M::POST,   "/api/v1/client-sources",                               Some(r#"{"name": "s{n}", "dsn": "mysql://x/y", "query": "SELECT 1"}"#), [401, 403, 403, 403, 422]),
        row(M::DELETE, "/api/v1/client-sources/{nowhere}",                     None,                                                     [401, 403, 403, 403, 404]),
        row(M::GET,    "/api/v1/admin/dead-jobs",                              None,                                                     [401, 403, 403, 403, 200]),
        row(M::POST,   "/api/v1/admin/dead-jobs/{nowhere}/requeue",            None,                                                     [401, 403, 403, 403, 404]),

        // Statistics: for the project's managers and admins; with no project named, each caller
        // gets the projects they manage (none for outsiders and performers: empty figures).
        row(M::GET,    "/api/v1/projects/{project}/statistics",                None,                                                     [401, 404, 403, 200, 200]),
        row(M::GET,    "/api/v1/projects/{project}/statistics?format=xlsx",    None,                                                     [401, 404, 403, 200, 200]),
        row(M::GET,    "/api/v1/projects/{nowhere}/statistics",                None,                                                     [401, 404, 404, 404, 404]),
        row(M::GET,    "/api/v1/statistics?project_id={project}&format=csv",   None,                                                     [401, 404, 403, 200, 200]),
        row(M::GET,    "/api/v1/statistics",                                   None,                                                     [401, 200, 200, 200, 200]),
        row(M::GET,    "/api/v1/projects/{project}/channels/{sms}/requests?format=csv", None,                                            [401, 404, 200, 200, 200]),
        // History and audit: whoever may read a thing may read its history.
        row(M::GET,    "/api/v1/requests/{request}/history",                   None,                                                     [401, 404, 200, 200, 200]),
        row(M::GET,    "/api/v1/requests/{nowhere}/history",                   None,                                                     [401, 404, 404, 404, 404]),
        row(M::GET,    "/api/v1/projects/{project}/history",                   None,                                                     [401, 404, 200, 200, 200]),
        row(M::GET,    "/api/v1/projects/{nowhere}/history",                   None,                                                     [401, 404, 404, 404, 404]),
        row(M::GET,    "/api/v1/products/{product}/history",                   None,                                                     [401, 200, 200, 200, 200]),
        row(M::GET,    "/api/v1/channels/{sms}/history",                       None,                                                     [401, 200, 200, 200, 200]),
        row(M::GET,    "/api/v1/users/{me}/history",                           None,                                                     [401, 200, 200, 200, 200]),
        row(M::GET,    "/api/v1/users/{spare}/history",                        None,                                                     [401, 403, 403, 403, 200]),
        row(M::GET,    "/api/v1/audit/events",                                 None,                                                     [401, 403, 403, 403, 200]),
        row(M::GET,    "/api/v1/admin/argilla/status",                         None,                                                     [401, 403, 403, 403, 200]),
        row(M::GET,    "/api/v1/admin/argilla/dead-letters",                   None,                                                     [401, 403, 403, 403, 200]),
        row(M::POST,   "/api/v1/admin/argilla/dead-letters/{nowhere}/requeue", None,                                                     [401, 403, 403, 403, 404]),
    ]
}

/// One project with a team, two attached channels and a client request.
#[derive(Clone)]
struct Fixture {
    project: String,
    request: String,
}

struct World {
    server: TestServer,
    clients: HashMap<&'static str, Client>,
    user_ids: HashMap<&'static str, String>,
    fixed: HashMap<&'static str, String>,
    shared: Fixture,
    /// The newest consistency token seen: every call carries it, so reads see every write.
    latest: Option<(u64, i64)>,
    counter: u64,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Anonymous => "anonymous",
        Role::Outsider => "outsider",
        Role::Performer => "performer",
        Role::Manager => "manager",
        Role::Admin => "admin",
    }
}

impl World {
    async fn new() -> World {
        let server = TestServer::start().await;
        let admin = server.admin().await;
        let mut clients = HashMap::new();
        let mut user_ids = HashMap::new();
        for name in ["outsider", "performer", "manager", "spare", "candidate"] {
            let (id, client) = server.user(&admin, &format!("{name}@bank.test")).await;
            clients.insert(name, client);
            user_ids.insert(name, id.to_string());
        }
        let (status, me) = admin.get("/api/v1/me").await;
        assert_eq!(status, StatusCode::OK, "{me}");
        user_ids.insert("admin", me["id"].as_str().expect("id").to_string());
        user_ids.insert("anonymous", user_ids["admin"].clone());
        clients.insert("anonymous", server.anonymous());
        clients.insert("admin", admin.clone());

        // The read models hold the seeded catalog before it is looked up.
        let (status, body) = admin
            .get_after("/api/v1/products?limit=1", &server.latest_write().await)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut fixed = HashMap::new();
        fixed.insert("product", catalog_id(&admin, "products", "CC").await);
        for key in ["SMS", "EMAIL", "PUSH"] {
            fixed.insert(
                match key {
                    "SMS" => "sms",
                    "EMAIL" => "email",
                    _ => "push",
                },
                catalog_id(&admin, "channels", key).await,
            );
        }
        for (kind, name) in [
            ("products", "scratch_product"),
            ("channels", "scratch_channel"),
        ] {
            let (status, body) = admin
                .post(
                    &format!("/api/v1/{kind}"),
                    json!({"key": name, "name": "Черновик", "description": "Для проверки прав"}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            fixed.insert(name, body["id"].as_str().expect("id").to_string());
        }
        // Every attached channel starts at prompt version 1.
        fixed.insert("version", "1".to_string());
        fixed.insert("nowhere", uuid::Uuid::new_v4().to_string());
        fixed.insert("spare", user_ids["spare"].clone());
        fixed.insert("candidate", user_ids["candidate"].clone());
        fixed.insert("password", PASSWORD.to_string());

        let mut world = World {
            server,
            clients,
            user_ids,
            fixed,
            shared: Fixture {
                project: String::new(),
                request: String::new(),
            },
            latest: None,
            counter: 0,
        };
        world.shared = world.fixture().await;
        world
    }

    fn client(&self, role: Role) -> &Client {
        &self.clients[role_name(role)]
    }

    fn token(&self) -> Option<String> {
        self.latest.map(|(tx, pos)| format!("{tx}.{pos}"))
    }

    /// Remembers the consistency token of a command's answer if it is the newest yet.
    fn observe(&mut self, answer: &Value) {
        let parsed = answer["consistency_token"].as_str().and_then(|t| {
            let (tx, pos) = t.split_once('.')?;
            Some((tx.parse().ok()?, pos.parse().ok()?))
        });
        if parsed > self.latest {
            self.latest = parsed;
        }
    }

    /// A command that must succeed while setting things up.
    async fn setup(
        &mut self,
        who: &str,
        method: Method,
        path: &str,
        body: Value,
        expected: StatusCode,
    ) -> Value {
        let (status, answer) = self.clients[who].call(method, path, Some(body), None).await;
        assert_eq!(status, expected, "setup {path}: {answer}");
        self.observe(&answer);
        answer
    }

    /// A project of the manager's with the performer and the spare user as performers, SMS and
    /// EMAIL attached, and one client request in SMS.
    async fn fixture(&mut self) -> Fixture {
        let body = json!({"name": "Права доступа", "product_id": self.fixed["product"], "description": "Проверка прав"});
        let created = self
            .setup(
                "manager",
                Method::POST,
                "/api/v1/projects",
                body,
                StatusCode::CREATED,
            )
            .await;
        let project = created["id"].as_str().expect("id").to_string();
        for member in ["performer", "spare"] {
            let body = json!({"user_id": self.user_ids[member], "role": "performer"});
            self.setup(
                "manager",
                Method::POST,
                &format!("/api/v1/projects/{project}/members"),
                body,
                StatusCode::CREATED,
            )
            .await;
        }
        let body = json!({"channel_ids": [self.fixed["sms"], self.fixed["email"]]});
        self.setup(
            "manager",
            Method::POST,
            &format!("/api/v1/projects/{project}/channels"),
            body,
            StatusCode::CREATED,
        )
        .await;
        let request = self
            .setup(
                "manager",
                Method::POST,
                &format!(
                    "/api/v1/projects/{project}/channels/{}/requests",
                    self.fixed["sms"]
                ),
                json!({"client_data": {"age": 30}, "client_data_decoding": {"age": "Возраст"}}),
                StatusCode::CREATED,
            )
            .await;
        Fixture {
            project,
            request: request["id"].as_str().expect("id").to_string(),
        }
    }

    /// Fills a template's placeholders for `role` in `fixture`.
    async fn render(&mut self, template: &str, role: Role, fixture: &Fixture) -> String {
        self.counter += 1;
        let mut text = template
            .replace("{project}", &fixture.project)
            .replace("{request}", &fixture.request)
            .replace("{me}", &self.user_ids[role_name(role)])
            .replace("{n}", &self.counter.to_string());
        for (name, value) in &self.fixed {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        if text.contains("{refresh_token}") {
            let (status, pair) = self
                .server
                .anonymous()
                .post(
                    "/api/v1/auth/login",
                    json!({"email": "manager@bank.test", "password": PASSWORD}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{pair}");
            text = text.replace(
                "{refresh_token}",
                pair["refresh_token"].as_str().expect("refresh token"),
            );
        }
        if text.contains("{my_api_token}") {
            let owner = if role == Role::Anonymous {
                "admin"
            } else {
                role_name(role)
            };
            let answer = self
                .setup(
                    owner,
                    Method::POST,
                    "/api/v1/api-tokens",
                    json!({"name": "Для проверки"}),
                    StatusCode::CREATED,
                )
                .await;
            text = text.replace("{my_api_token}", answer["id"].as_str().expect("id"));
        }
        assert!(
            !text.contains("{project}") && !text.contains("{my_"),
            "an unknown placeholder in {text}"
        );
        text
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_allows_and_denies_each_kind_of_caller_as_specified() {
    let mut world = World::new().await;
    let mut mismatches = Vec::new();
    let mut calls = 0;
    for row in matrix() {
        for (role, expected) in ROLES.into_iter().zip(row.expect) {
            let fixture = match row.on {
                On::Shared => world.shared.clone(),
                On::Fresh => world.fixture().await,
            };
            let path = world.render(row.path, role, &fixture).await;
            let body =
                match row.body {
                    Some(template) => {
                        let text = world.render(template, role, &fixture).await;
                        Some(serde_json::from_str::<Value>(&text).unwrap_or_else(|e| {
                            panic!("the body of {path} is no JSON ({e}): {text}")
                        }))
                    }
                    None => None,
                };
            let token = world.token();
            let (status, answer) = world
                .client(role)
                .call(row.method.clone(), &path, body, token.as_deref())
                .await;
            calls += 1;
            world.observe(&answer);

            let label = format!("{} {} as {}", row.method, row.path, role_name(role));
            // An outsider cannot tell the project (or its request) from one that does not exist.
            if role == Role::Outsider
                && (row.path.contains("{project}") || row.path.contains("{request}"))
            {
                let nowhere = world.fixed["nowhere"].clone();
                let elsewhere = Fixture {
                    project: nowhere.clone(),
                    request: nowhere,
                };
                let path = world.render(row.path, role, &elsewhere).await;
                let body = match row.body {
                    Some(template) => Some(
                        serde_json::from_str::<Value>(
                            &world.render(template, role, &elsewhere).await,
                        )
                        .expect("JSON"),
                    ),
                    None => None,
                };
                let (other_status, other_answer) = world
                    .client(role)
                    .call(row.method.clone(), &path, body, None)
                    .await;
                if (other_status, &other_answer) != (status, &answer) {
                    mismatches.push(format!("{label}: answered {status} {answer}, but {other_status} {other_answer} where nothing exists"));
                }
            }
            if status.as_u16() != expected {
                mismatches.push(format!(
                    "{label}: expected {expected}, got {status}: {answer}"
                ));
                continue;
            }
            if status.is_client_error() {
                let code = answer["error"]["code"].as_str();
                let expected_code = match expected {
                    401 => Some("unauthorized"),
                    403 => Some("forbidden"),
                    404 => Some("not_found"),
                    _ => code,
                };
                if code.is_none() || code != expected_code {
                    mismatches.push(format!(
                        "{label}: expected the error code {expected_code:?}: {answer}"
                    ));
                }
            }
        }
    }
    assert!(calls >= 5 * 50, "the whole table ran ({calls} calls)");
    assert!(
        mismatches.is_empty(),
        "{} of {calls} calls answered otherwise:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// The shape of a path with its parameters blanked: `/projects/{}/members/{}`.
fn shape(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn the_matrix_covers_every_documented_endpoint() {
    let rows: Vec<(String, String)> = matrix()
        .iter()
        .map(|r| (r.method.as_str().to_lowercase(), shape(r.path)))
        .collect();
    let document =
        serde_json::to_value(offerflow_http::openapi()).expect("the OpenAPI document serialises");
    let paths = document["paths"].as_object().expect("paths");
    let mut documented = 0;
    let mut missing = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                documented += 1;
                if !rows.contains(&(method.to_string(), shape(path))) {
                    missing.push(format!("{} {path}", method.to_uppercase()));
                }
            }
        }
    }
    assert!(
        documented >= 40,
        "the document lists the API ({documented} operations)"
    );
    assert!(
        missing.is_empty(),
        "endpoints without a row in the matrix: {missing:?}"
    );
    for public in [
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
        "/api/docs/",
    ] {
        assert!(
            rows.contains(&("get".to_string(), public.to_string())),
            "{public} has a row"
        );
    }
}
