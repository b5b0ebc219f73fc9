//! The original system's three `llm-model` endpoints (original-system.md §1.6) at their original
//! paths, with and without the trailing slash, for the integrations written against it. They
//! run on the same commands as `/api/v1`: a call ends as `ClientRequestCreated` and
//! `GenerationRequested` in the log, the worker generates, and nothing here calls a model.
//!
//! - `POST /api/llm-model/requests-data/`: one client in a named project channel → 201.
//! - `POST /api/llm-model/requests-data/multiple-creation`: clients by product and channel
//!   (ids or keys) → 202 `{detail, request_ids}`; the offers come later.
//! - `POST /api/llm-model/requests-data/raw-multiple-creation`: clients with free-text product
//!   and channel descriptions → 200 `[{client_id, request_id, text}]` once every text is there.
//!
//! Choices, and why:
//!
//! * **Homes.** The old batch calls name no project (the old code meant to make a memberless
//!   project per item). Here each caller gets one project per product, `UUIDv5(caller,
//!   product)`, named like the old one, with the caller as manager; a sales channel is attached
//!   the first time it is used. Repeats land in the same project, the caller sees and manages
//!   it in `/api/v1` like any other, and an API token's calls land in its owner's projects.
//! * **Raw descriptions.** Free text is not a catalog entry: making one per text would show
//!   every caller's texts to everyone in the catalog and grow it without bound. Instead the
//!   catalog holds one `RAW` product and one `RAW` sales channel (made on first use, by this
//!   process), each caller has one raw project selling `RAW` through `RAW`, and each
//!   generation's context is built from the call's texts: they are the prompt's product and
//!   channel descriptions, so they stand in `GenerationRequested`'s messages exactly, trimmed.
//!   The project's own description and channel prompt are not added: a raw call carries its
//!   whole context. The request id also covers both texts, so one client described against two
//!   products is two requests, and the same client with the same texts is one.
//! * **`prompt`.** The old `requests-data` stored it as the prompt of a project channel it
//!   created, and (a bug: §10.4) sent it instead of the channel's stored prompt. Here, when the
//!   call attaches the channel, `prompt` becomes that channel's prompt (a new prompt version);
//!   when the channel was attached already, its stored prompt stays in force and a different
//!   `prompt` is this generation's extra instruction, recorded in the log. In
//!   `multiple-creation` the old code gave every item its own prompt over an empty channel
//!   prompt, so there `prompt` is always the item's extra instruction.
//! * **Repeats.** The same client in the same channel is one request. A request whose offer
//!   is done (or failed) gets a new generation; one being generated is a 409 naming the item in
//!   `requests-data` and `multiple-creation`, and is waited for in `raw-multiple-creation`. The
//!   same client twice in one batch shares one generation.
//! * **Validation.** Every item is checked (catalog references, client data as the domain
//!   checks it, texts, rights, generations under way) before anything is written, and errors
//!   name the field with its item: `requests_data[3].sale_channel`,
//!   `raw_requests_data[0].client_data.age`. Only another writer slipping in between the check
//!   and the write can stop a batch half-way (a 409).
//! * **Raw waiting.** A raw call takes at most `OFFERFLOW_RAW_MAX_BATCH` clients (more: 422
//!   naming `raw_requests_data`) and waits at most `OFFERFLOW_RAW_TIMEOUT_SECONDS` for the
//!   generation jobs to end, woken by the log's commits and a short poll. Past it: 504
//!   `generation_timeout` listing the request ids still running; they go on and are read later
//!   with `GET /api/v1/requests/{id}`. A generation that failed for good answers its item with
//!   `text: null` and `error`: the other texts are not thrown away for it.
//! * **Rights.** Bearer tokens as everywhere (API tokens act as their owner). `requests-data`:
//!   performers and managers of the project and admins; attaching a channel takes a manager;
//!   outsiders get 404. The batch calls work in the caller's own projects.
//! * **Additions.** An optional `params` (sampling, as in `/api/v1`) on each call, and
//!   `consistency_token`s, so a client can read its own writes.
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use domain::catalog::{normalize_key, CatalogEntry, CatalogKind, ProductKind, SalesChannelKind};
use domain::chat::SamplingParams;
use domain::client_request::{
    validate_client_data, ClientRequest, ClientRequestCommand, RequestStatus,
};
use domain::ids;
use domain::metadata::{Actor, EventMetadata};
use domain::project::{CatalogFacts, Project, ProjectCommand};
use domain::{DomainError, Role};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::auth::{sha256_hex, Authenticated};
use crate::commands::{Executed, Stored};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::event_store::Recency;
use crate::extract::ApiJson;
use crate::generation::{request_generation, ChannelFacts, GenerationAsk, ParamsOverride};
use crate::routes::catalog::{create as create_catalog_entry, NewCatalogItem};
use crate::routes::generations::MAX_BATCH;
use crate::seed::system_admin;
use crate::state::AppState;
use crate::BearerAuth;

const REQUESTS_DATA: &str = "/api/llm-model/requests-data";
const MULTIPLE: &str = "/api/llm-model/requests-data/multiple-creation";
const RAW_MULTIPLE: &str = "/api/llm-model/requests-data/raw-multiple-creation";

/// Each route with and without the trailing slash, so that either spelling reaches it (the old
/// router's paths all ended with one).
pub fn router() -> Router<AppState> {
    let routes = [
        (REQUESTS_DATA, post(create_request_data)),
        (MULTIPLE, post(multiple_creation)),
        (RAW_MULTIPLE, post(raw_multiple_creation)),
    ];
    routes
        .into_iter()
        .fold(Router::new(), |router, (path, handler)| {
            router
                .route(path, handler.clone())
                .route(&format!("{path}/"), handler)
        })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Offerflow: the original llm-model API",
        description = "The three generation endpoints of the 2023 system at their original paths (with or without the trailing slash), kept for existing integrations. Everything they do is in the event log and visible through /api/v1.",
    ),
    paths(create_request_data, multiple_creation, raw_multiple_creation),
    modifiers(&BearerAuth),
    tags((name = "legacy", description = "The original llm-model endpoints"))
)]
struct LegacyDoc;

/// The OpenAPI document of these routes (served beside `/api/v1`'s).
pub fn openapi() -> utoipa::openapi::OpenApi {
    LegacyDoc::openapi()
}

/// The old project name for clients sent through the API.
const API_PROJECT_NAME: &str = "Проект для выгрузки данных через api по клиентам";
const NAME_MAX: usize = 200;
/// The catalog key of the product and channel that free-text descriptions stand in for.
const RAW_KEY: &str = "RAW";
const RAW_PRODUCT_NAME: &str = "Продукт из описания в запросе";
const RAW_PRODUCT_DESCRIPTION: &str = "Свободное описание продукта, присланное в запросе raw-multiple-creation; текст каждого запроса записан в его сообщениях модели.";
const RAW_CHANNEL_NAME: &str = "Канал из описания в запросе";
const RAW_CHANNEL_DESCRIPTION: &str = "Свободное описание канала продажи, присланное в запросе raw-multiple-creation; текст каждого запроса записан в его сообщениях модели.";
const RAW_SOURCE: &str = "api-raw";
/// Free-text descriptions are as long as a catalog description may be.
const DESCRIPTION_MAX: usize = 20_000;
/// A channel prompt and an extra instruction, as the domain bounds them.
const CHANNEL_PROMPT_MAX: usize = 20_000;
const INSTRUCTION_MAX: usize = 5_000;
const SHORT_TEXT_MAX: usize = 255;
/// Commands of one batch in flight at once: enough for the appender to group them.
const CONCURRENCY: usize = 64;
/// How often a raw call looks at its jobs when no commit wakes it.
const POLL: Duration = Duration::from_millis(250);
const QUEUED_DETAIL: &str = "Данные отправлены, ожидайте ответа";

/// Ids derived here, apart from the domain's.
const NAMESPACE: Uuid = Uuid::from_u128(0x6f66_6665_7266_6c6f_7700_0000_0000_1e6a);

/// The caller's project for clients of `product_id` sent without a project.
fn api_project_id(user_id: Uuid, product_id: Uuid) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!("api-project:{user_id}:{product_id}").as_bytes(),
    )
}

/// The caller's project for clients sent with free-text descriptions.
fn raw_project_id(user_id: Uuid) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("raw-project:{user_id}").as_bytes())
}

/// A raw client's request: the client in the raw project channel, under these two texts.
fn raw_request_id(
    project_id: Uuid,
    channel_id: Uuid,
    client_data: &[(String, Value)],
    product_info: &str,
    channel_info: &str,
) -> Uuid {
    let client = ids::client_request_id(project_id, channel_id, client_data);
    // Length-prefixed, so that moving words from one text to the other is another pair.
    let texts = sha256_hex(&format!(
        "{}:{product_info}{channel_info}",
        product_info.len()
    ));
    Uuid::new_v5(
        &NAMESPACE,
        format!("raw-request:{client}:{texts}").as_bytes(),
    )
}

// ---------------------------------------------------------------------------------------------
// Bodies and answers

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestData {
    /// The project's id.
    pub project: Uuid,
    /// The sales channel's id or key (`SMS`). Attached to the project if it is not yet
    /// (managers).
    pub sale_channel: String,
    /// When this call attaches the channel: the channel's prompt. Otherwise, if it differs
    /// from the channel's prompt: an extra instruction for this generation.
    pub prompt: Option<String>,
    /// The bank's own id of the client (text or number).
    #[schema(value_type = Option<String>)]
    pub client_id: Option<Value>,
    /// Where the client came from (default `api`).
    pub source_client_info: Option<String>,
    /// The client's features, column → value; the order is kept.
    #[schema(value_type = Object, example = json!({"gender": "1", "age": 52.7, "super_clust": "k. Без продукта"}))]
    pub client_data: Map<String, Value>,
    /// Column → human description; every column of `client_data` needs one.
    #[schema(value_type = Object, example = json!({"gender": "Пол клиента (0 муж, 1 жен)", "age": "Возраст Клиента", "super_clust": "Кластер клиента"}))]
    pub client_data_decoding: Map<String, Value>,
    /// Sampling parameters (an addition to the old API).
    pub params: Option<ParamsOverride>,
}

#[derive(Serialize, ToSchema)]
pub struct RequestDataQueued {
    /// The client request (`GET /api/v1/requests/{id}` shows its thread).
    pub id: Uuid,
    pub project: Uuid,
    pub sale_channel: Uuid,
    pub client_id: Option<String>,
    pub source_client_info: String,
    /// `in_progress`: the offer is being generated.
    pub status: String,
    pub generation_id: Uuid,
    pub consistency_token: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestDataItem {
    /// The product's id or key (`CC`).
    pub product: String,
    /// The sales channel's id or key (`SMS`).
    pub sale_channel: String,
    /// An extra instruction for this client's generation.
    pub prompt: Option<String>,
    #[schema(value_type = Option<String>)]
    pub client_id: Option<Value>,
    pub source_client_info: Option<String>,
    #[schema(value_type = Object)]
    pub client_data: Map<String, Value>,
    #[schema(value_type = Object)]
    pub client_data_decoding: Map<String, Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestDataBatch {
    /// At most 10 000 clients.
    pub requests_data: Vec<RequestDataItem>,
    pub params: Option<ParamsOverride>,
}

#[derive(Serialize, ToSchema)]
pub struct RequestsQueued {
    pub detail: String,
    /// Each item's client request, in the order sent.
    pub request_ids: Vec<Uuid>,
    pub consistency_token: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRequestData {
    /// The product, in words; it is the prompt's product description.
    pub product_info: String,
    /// The sales channel, in words; it is the prompt's channel description.
    pub sale_channel_info: String,
    #[schema(value_type = Option<String>)]
    pub client_id: Option<Value>,
    #[schema(value_type = Object)]
    pub client_data: Map<String, Value>,
    #[schema(value_type = Object)]
    pub client_data_decoding: Map<String, Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRequestDataBatch {
    /// At most `OFFERFLOW_RAW_MAX_BATCH` clients (default 50).
    pub raw_requests_data: Vec<RawRequestData>,
    pub params: Option<ParamsOverride>,
}

#[derive(Serialize, ToSchema)]
pub struct RawText {
    pub client_id: Option<String>,
    pub request_id: Uuid,
    /// The offer; `null` when its generation failed for good.
    pub text: Option<String>,
    /// Why the generation failed for good (only then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct StillRunning {
    pub error: StillRunningDetail,
}

#[derive(Serialize, ToSchema)]
pub struct StillRunningDetail {
    /// `generation_timeout`, or `unavailable` when the server is stopping.
    pub code: String,
    pub message: String,
    /// The requests whose offers are still being generated; read them later with
    /// `GET /api/v1/requests/{id}`.
    pub running_request_ids: Vec<Uuid>,
}

// ---------------------------------------------------------------------------------------------
// Checking input

/// `name.field`, or `field` for the top level.
fn field(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

/// Trimmed text within `max` characters and without control characters but line breaks and
/// tabs, as the domain wants it.
fn checked_text(field: &str, value: &str, max: usize) -> ApiResult<String> {
    let trimmed = value.trim();
    if trimmed.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ApiError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_string())
}

fn required_text(field: &str, value: &str, max: usize) -> ApiResult<String> {
    let text = checked_text(field, value, max)?;
    if text.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    Ok(text)
}

/// A domain rejection of one item's input, with the item's place in front of its fields.
fn within(at: &str, error: DomainError) -> ApiError {
    match error {
        DomainError::Invalid {
            field: name,
            message,
        } => ApiError::invalid(field(at, &name), message),
        DomainError::MissingDescriptions { columns } => ApiError::Unprocessable {
            code: "missing_descriptions",
            message: format!(
                "{}: no description for column(s) {}",
                field(at, "client_data_decoding"),
                columns.join(", ")
            ),
            fields: columns
                .iter()
                .map(|c| field(at, &format!("client_data_decoding.{c}")))
                .collect(),
        },
        other => at_item(at, other.into()),
    }
}

/// An answer about one item, naming it; the domain's "being generated" as `in_progress`.
fn at_item(at: &str, error: ApiError) -> ApiError {
    let named = |message: String| {
        if at.is_empty() {
            message
        } else {
            format!("{at}: {message}")
        }
    };
    match error {
        ApiError::Conflict {
            code: "rejected",
            message,
        } => ApiError::Conflict {
            code: "in_progress",
            message: named(message),
        },
        ApiError::Conflict { code, message } => ApiError::Conflict {
            code,
            message: named(message),
        },
        ApiError::Unprocessable {
            code,
            message,
            fields,
        } if !at.is_empty() => ApiError::Unprocessable {
            code,
            message: named(message),
            fields: fields.iter().map(|f| field(at, f)).collect(),
        },
        other => other,
    }
}

fn in_progress(at: &str, request_id: Uuid) -> ApiError {
    at_item(
        at,
        ApiError::Conflict {
            code: "in_progress",
            message: format!(
                "an offer for this client (request {request_id}) is being generated; wait for it, then send it again"
            ),
        },
    )
}

/// One client, checked as the domain will check it when the request is created.
#[derive(Clone)]
struct CleanClient {
    client_id: Option<String>,
    source: String,
    data: Vec<(String, Value)>,
    decoding: Vec<(String, String)>,
}

fn clean_client(
    at: &str,
    client_id: Option<Value>,
    source: Option<String>,
    default_source: &str,
    data: Map<String, Value>,
    decoding: Map<String, Value>,
) -> ApiResult<CleanClient> {
    let client_id = match client_id {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        // The old API's clients send numeric ids as numbers.
        Some(Value::Number(id)) => Some(id.to_string()),
        Some(_) => {
            return Err(ApiError::invalid(
                field(at, "client_id"),
                "must be a string or a number",
            ))
        }
    };
    let client_id = client_id
        .map(|id| checked_text(&field(at, "client_id"), &id, SHORT_TEXT_MAX))
        .transpose()?
        .filter(|id| !id.is_empty());
    let source = source
        .map(|s| checked_text(&field(at, "source_client_info"), &s, SHORT_TEXT_MAX))
        .transpose()?
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default_source.to_string());
    let mut descriptions = Vec::with_capacity(decoding.len());
    for (key, value) in decoding {
        match value {
            Value::String(description) => descriptions.push((key, description)),
            _ => {
                return Err(ApiError::invalid(
                    field(at, &format!("client_data_decoding.{key}")),
                    "must be a string",
                ))
            }
        }
    }
    let data: Vec<(String, Value)> = data.into_iter().collect();
    validate_client_data(data.clone(), &descriptions).map_err(|e| within(at, e))?;
    Ok(CleanClient {
        client_id,
        source,
        data,
        decoding: descriptions,
    })
}

fn sampling(state: &AppState, params: Option<ParamsOverride>) -> ApiResult<SamplingParams> {
    let params = params
        .unwrap_or_default()
        .over(state.generation.default_params);
    params.validate()?;
    Ok(params)
}

fn batch_size(field: &str, len: usize, max: usize, setting: &str) -> ApiResult<()> {
    if len == 0 {
        return Err(ApiError::invalid(field, "must name at least one client"));
    }
    if len > max {
        return Err(ApiError::invalid(
            field,
            format!("at most {max} clients per call{setting}; send the rest in further calls"),
        ));
    }
    Ok(())
}

/// A catalog entry as a command needs it, and its name.
#[derive(Clone)]
struct Found {
    facts: CatalogFacts,
    name: String,
}

/// Catalog entries named by id or key, each read once per call.
#[derive(Default)]
struct CatalogLookup {
    found: HashMap<(&'static str, String), Found>,
}

impl CatalogLookup {
    async fn find<K: CatalogKind>(
        &mut self,
        state: &AppState,
        field: &str,
        reference: &str,
        id_of_key: fn(&str) -> Uuid,
    ) -> ApiResult<Found>
    where
        CatalogEntry<K>: Stored,
    {
        let reference = reference.trim();
        let cache_key = (K::TYPE, reference.to_string());
        if let Some(found) = self.found.get(&cache_key) {
            return Ok(found.clone());
        }
        let unknown = || {
            ApiError::invalid(
                field,
                format!("no {} with id or key {reference:?}", K::NOUN),
            )
        };
        let id = match Uuid::parse_str(reference) {
            Ok(id) => id,
            Err(_) => id_of_key(&normalize_key(reference).map_err(|_| unknown())?),
        };
        let entry: CatalogEntry<K> = state.bus.load(id).await?;
        let (Some(key), Some(details)) = (entry.key, entry.details) else {
            return Err(unknown());
        };
        let found = Found {
            facts: CatalogFacts {
                id,
                key,
                description: details.description,
                archived: entry.archived,
            },
            name: details.name,
        };
        self.found.insert(cache_key, found.clone());
        Ok(found)
    }

    async fn product(
        &mut self,
        state: &AppState,
        field: &str,
        reference: &str,
    ) -> ApiResult<Found> {
        self.find::<ProductKind>(state, field, reference, ids::product_id)
            .await
    }

    async fn channel(
        &mut self,
        state: &AppState,
        field: &str,
        reference: &str,
    ) -> ApiResult<Found> {
        self.find::<SalesChannelKind>(state, field, reference, ids::sales_channel_id)
            .await
    }
}

/// A project a batch call works in: made and given channels when the batch is written.
struct Home {
    id: Uuid,
    name: String,
    product: CatalogFacts,
    project: Project,
    attach: Vec<CatalogFacts>,
}

impl Home {
    /// Reads the project; the caller must be able to add requests to it if it exists.
    async fn open(
        state: &AppState,
        caller: &Authenticated,
        at: &str,
        id: Uuid,
        name: String,
        product: CatalogFacts,
        product_field: &str,
    ) -> ApiResult<Home> {
        let project: Project = state.bus.load(id).await?;
        if project.created {
            project
                .authorize_change(&caller.caller(), Role::Performer)
                .map_err(|e| within(at, e))?;
        } else if product.archived {
            return Err(ApiError::invalid(product_field, "the product is archived"));
        }
        Ok(Home {
            id,
            name,
            product,
            project,
            attach: Vec::new(),
        })
    }

    /// Notes that `channel` must be attached, after checking that it may be.
    fn needs(
        &mut self,
        caller: &Authenticated,
        channel: &CatalogFacts,
        channel_field: &str,
    ) -> ApiResult<()> {
        if self.project.channel_attached(channel.id)
            || self.attach.iter().any(|c| c.id == channel.id)
        {
            return Ok(());
        }
        if channel.archived {
            return Err(ApiError::invalid(
                channel_field,
                "the sales channel is archived",
            ));
        }
        if self.project.created {
            self.project
                .authorize(&caller.caller(), Role::Manager)
                .map_err(|_| {
                    ApiError::Forbidden(format!(
                        "{channel_field}: the channel is not attached to the project, and only a manager may attach it"
                    ))
                })?;
        }
        self.attach.push(channel.clone());
        Ok(())
    }

    /// Creates the project (the caller becomes its manager) and attaches the channels.
    async fn establish(
        &mut self,
        state: &AppState,
        caller: &Authenticated,
        metadata: &EventMetadata,
    ) -> ApiResult<()> {
        if !self.project.created {
            let command = ProjectCommand::Create {
                name: self.name.clone(),
                description: String::new(),
                product: self.product.clone(),
                by: caller.caller(),
            };
            match state
                .bus
                .execute(&state.bus.projects, self.id, command, metadata)
                .await
            {
                // A concurrent call of the same caller made it first.
                Ok(_)
                | Err(ApiError::Conflict {
                    code: "already_exists",
                    ..
                }) => {}
                Err(other) => return Err(other),
            }
        }
        if !self.attach.is_empty() {
            let command = ProjectCommand::AttachChannels {
                channels: std::mem::take(&mut self.attach),
                product: self.product.clone(),
                by: caller.caller(),
            };
            state
                .bus
                .execute(&state.bus.projects, self.id, command, metadata)
                .await?;
        }
        self.project = state.bus.load(self.id).await?;
        Ok(())
    }
}

/// One client request a call writes (clients repeated within a call share one).
struct Planned {
    /// The first item that named it, e.g. `requests_data[3]`.
    at: String,
    request_id: Uuid,
    project_id: Uuid,
    channel_id: Uuid,
    client: CleanClient,
    instruction: Option<String>,
    /// Raw calls: the product and channel texts.
    texts: Option<(String, String)>,
    /// Raw calls: a generation already under way for this request, waited for instead.
    under_way: Option<Uuid>,
}

/// The requests as the log has them now, at most [`CONCURRENCY`] read at once.
async fn existing_requests(state: &AppState, plans: &[Planned]) -> ApiResult<Vec<ClientRequest>> {
    let ids: Vec<Uuid> = plans.iter().map(|p| p.request_id).collect();
    stream::iter(ids)
        .map(|id| async move { state.bus.load::<ClientRequest>(id).await })
        .buffered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The generation the request is waiting for, if one is under way.
fn generation_under_way(request: &ClientRequest) -> Option<Uuid> {
    if request.status() != RequestStatus::InProgress {
        return None;
    }
    request
        .generations
        .iter()
        .find(|(_, g)| !g.finished)
        .map(|(id, _)| *id)
}

/// Creates the request (or finds it) and asks for its offer.
async fn create_and_generate(
    state: &AppState,
    metadata: &EventMetadata,
    plan: &Planned,
    facts: &ChannelFacts,
    params: SamplingParams,
) -> ApiResult<(Uuid, Executed)> {
    let command = ClientRequestCommand::Create {
        project_id: plan.project_id,
        channel_id: plan.channel_id,
        // `facts` were read from the project with the channel attached.
        channel_attached: true,
        client_id: plan.client.client_id.clone(),
        source: plan.client.source.clone(),
        client_data: plan.client.data.clone(),
        client_data_decoding: plan.client.decoding.clone(),
    };
    state
        .bus
        .execute(&state.bus.requests, plan.request_id, command, metadata)
        .await
        .map_err(|e| at_item(&plan.at, e))?;
    let request: ClientRequest = state.bus.load(plan.request_id).await?;
    let ask = GenerationAsk {
        instruction: plan.instruction.clone(),
        parent_message_id: None,
        params,
    };
    request_generation(
        &state.bus,
        &state.generation,
        facts,
        plan.request_id,
        &request,
        ask,
        metadata,
    )
    .await
    .map_err(|e| at_item(&plan.at, e))
}

// ---------------------------------------------------------------------------------------------
// POST /api/llm-model/requests-data/

/// Adds one client to a project channel (attaching the channel if needed, managers) and asks
/// for an offer (project members). The same client again, once its offer is done, gets a new
/// generation; while one is under way: 409.
#[utoipa::path(post, path = "/api/llm-model/requests-data/", tag = "legacy", request_body = RequestData,
    responses((status = 201, body = RequestDataQueued, description = "a generation was asked for; the request may have existed"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "attaching the channel takes a manager"),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "an offer for this client is being generated"),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_request_data(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<RequestData>,
) -> ApiResult<(StatusCode, Json<RequestDataQueued>)> {
    let project: Project = state.bus.load(body.project).await?;
    project.authorize_change(&caller.caller(), Role::Performer)?;
    let product_id = project
        .product_id
        .ok_or_else(|| ApiError::not_found("project"))?;
    let mut catalog = CatalogLookup::default();
    let channel = catalog
        .channel(&state, "sale_channel", &body.sale_channel)
        .await?;
    let client = clean_client(
        "",
        body.client_id,
        body.source_client_info,
        "api",
        body.client_data,
        body.client_data_decoding,
    )?;
    let params = sampling(&state, body.params)?;
    let channel_id = channel.facts.id;
    let mut home = Home {
        id: body.project,
        name: project.name.clone(),
        product: catalog
            .product(&state, "project", &product_id.to_string())
            .await?
            .facts,
        project,
        attach: Vec::new(),
    };
    home.needs(&caller, &channel.facts, "sale_channel")?;
    let attaching = !home.attach.is_empty();
    let prompt = body.prompt.as_deref().map(str::trim).unwrap_or("");
    let (channel_prompt, instruction) = if prompt.is_empty() {
        (None, None)
    } else if attaching {
        (
            Some(required_text("prompt", prompt, CHANNEL_PROMPT_MAX)?),
            None,
        )
    } else {
        let stored = home
            .project
            .channels
            .get(&channel_id)
            .map(|c| c.prompt.trim())
            .unwrap_or("");
        if prompt == stored {
            (None, None)
        } else {
            (None, Some(checked_text("prompt", prompt, INSTRUCTION_MAX)?))
        }
    };
    let request_id = ids::client_request_id(home.id, channel_id, &client.data);
    let existing: ClientRequest = state.bus.load(request_id).await?;
    if existing.status() == RequestStatus::InProgress {
        return Err(in_progress("", request_id));
    }

    let metadata = caller.metadata();
    home.establish(&state, &caller, &metadata).await?;
    if let Some(prompt) = channel_prompt {
        let command = ProjectCommand::ChangeChannelPrompt {
            channel_id,
            prompt,
            by: caller.caller(),
        };
        state
            .bus
            .execute(&state.bus.projects, home.id, command, &metadata)
            .await?;
        home.project = state.bus.load(home.id).await?;
    }
    let facts = ChannelFacts::load(&state.bus, &home.project, channel_id).await?;
    let plan = Planned {
        at: String::new(),
        request_id,
        project_id: home.id,
        channel_id,
        client,
        instruction,
        texts: None,
        under_way: None,
    };
    let (generation_id, done) =
        create_and_generate(&state, &metadata, &plan, &facts, params).await?;
    Ok((
        StatusCode::CREATED,
        Json(RequestDataQueued {
            id: request_id,
            project: home.id,
            sale_channel: channel_id,
            client_id: plan.client.client_id,
            source_client_info: plan.client.source,
            status: RequestStatus::InProgress.as_str().to_string(),
            generation_id,
            consistency_token: done.token.map(|t| t.to_string()),
        }),
    ))
}

// ---------------------------------------------------------------------------------------------
// POST /api/llm-model/requests-data/multiple-creation

/// Asks for offers for many clients by product and channel (ids or keys), each product's
/// clients in the caller's own project for it. Answers at once; the offers come later.
#[utoipa::path(post, path = "/api/llm-model/requests-data/multiple-creation", tag = "legacy", request_body = RequestDataBatch,
    responses((status = 202, body = RequestsQueued), (status = 401, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "an offer for one of the clients is being generated; the message names the item"),
              (status = 422, body = ErrorBody, description = "the fields name the item, e.g. requests_data[3].sale_channel")),
    security(("bearer" = [])))]
async fn multiple_creation(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(batch): ApiJson<RequestDataBatch>,
) -> ApiResult<(StatusCode, Json<RequestsQueued>)> {
    batch_size("requests_data", batch.requests_data.len(), MAX_BATCH, "")?;
    let params = sampling(&state, batch.params)?;
    let mut catalog = CatalogLookup::default();
    let mut homes: HashMap<Uuid, Home> = HashMap::new();
    let mut plans: Vec<Planned> = Vec::new();
    let mut planned: HashSet<Uuid> = HashSet::new();
    let mut request_ids = Vec::with_capacity(batch.requests_data.len());
    for (index, item) in batch.requests_data.into_iter().enumerate() {
        let at = format!("requests_data[{index}]");
        let product_field = field(&at, "product");
        let channel_field = field(&at, "sale_channel");
        let product = catalog
            .product(&state, &product_field, &item.product)
            .await?;
        let channel = catalog
            .channel(&state, &channel_field, &item.sale_channel)
            .await?;
        let client = clean_client(
            &at,
            item.client_id,
            item.source_client_info,
            "api",
            item.client_data,
            item.client_data_decoding,
        )?;
        let instruction = item
            .prompt
            .map(|p| checked_text(&field(&at, "prompt"), &p, INSTRUCTION_MAX))
            .transpose()?
            .filter(|p| !p.is_empty());
        let project_id = api_project_id(caller.user_id, product.facts.id);
        let home = match homes.entry(project_id) {
            Entry::Occupied(home) => home.into_mut(),
            Entry::Vacant(slot) => {
                let name: String = format!("{API_PROJECT_NAME}: {}", product.name)
                    .chars()
                    .take(NAME_MAX)
                    .collect();
                let home = Home::open(
                    &state,
                    &caller,
                    &at,
                    project_id,
                    name,
                    product.facts.clone(),
                    &product_field,
                )
                .await?;
                slot.insert(home)
            }
        };
        home.needs(&caller, &channel.facts, &channel_field)?;
        let request_id = ids::client_request_id(project_id, channel.facts.id, &client.data);
        request_ids.push(request_id);
        if planned.insert(request_id) {
            plans.push(Planned {
                at,
                request_id,
                project_id,
                channel_id: channel.facts.id,
                client,
                instruction,
                texts: None,
                under_way: None,
            });
        }
    }
    for (plan, request) in plans.iter().zip(existing_requests(&state, &plans).await?) {
        if request.status() == RequestStatus::InProgress {
            return Err(in_progress(&plan.at, plan.request_id));
        }
    }

    let metadata = caller.metadata();
    let mut facts: HashMap<(Uuid, Uuid), ChannelFacts> = HashMap::new();
    for home in homes.values_mut() {
        home.establish(&state, &caller, &metadata).await?;
    }
    for plan in &plans {
        if let Entry::Vacant(slot) = facts.entry((plan.project_id, plan.channel_id)) {
            let home = homes
                .get(&plan.project_id)
                .ok_or_else(|| anyhow::anyhow!("project {} was not planned", plan.project_id))?;
            slot.insert(ChannelFacts::load(&state.bus, &home.project, plan.channel_id).await?);
        }
    }
    let facts = &facts;
    let (state, metadata) = (&state, &metadata);
    let results: Vec<ApiResult<(Uuid, Executed)>> = stream::iter(plans)
        .map(|plan| async move {
            let facts = facts
                .get(&(plan.project_id, plan.channel_id))
                .ok_or_else(|| anyhow::anyhow!("no facts for request {}", plan.request_id))?;
            create_and_generate(state, metadata, &plan, facts, params).await
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut newest = None;
    for result in results {
        let (_, done) = result?;
        newest = newest.max(done.token);
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(RequestsQueued {
            detail: QUEUED_DETAIL.to_string(),
            request_ids,
            consistency_token: newest.map(|t| t.to_string()),
        }),
    ))
}

// ---------------------------------------------------------------------------------------------
// POST /api/llm-model/requests-data/raw-multiple-creation

/// The `RAW` catalog entry of a kind as it is, or as it will be made.
async fn raw_entry<K: CatalogKind>(
    state: &AppState,
    id: Uuid,
    name: &str,
    description: &str,
) -> ApiResult<(Found, bool)>
where
    CatalogEntry<K>: Stored,
{
    let entry: CatalogEntry<K> = state.bus.load(id).await?;
    Ok(match (entry.key, entry.details) {
        (Some(key), Some(details)) => (
            Found {
                facts: CatalogFacts {
                    id,
                    key,
                    description: details.description,
                    archived: entry.archived,
                },
                name: details.name,
            },
            true,
        ),
        _ => (
            Found {
                facts: CatalogFacts {
                    id,
                    key: RAW_KEY.to_string(),
                    description: description.to_string(),
                    archived: false,
                },
                name: name.to_string(),
            },
            false,
        ),
    })
}

/// Makes the `RAW` product and channel, as this process rather than the caller: they are the
/// catalog's, and only admins may add to it.
async fn make_raw_catalog(
    state: &AppState,
    caller: &Authenticated,
    product: &Found,
    channel: &Found,
) -> ApiResult<()> {
    let metadata = EventMetadata::new(
        Actor::Process("legacy-api".into()),
        caller.request_id.clone(),
    );
    let item = |found: &Found| NewCatalogItem {
        key: RAW_KEY.to_string(),
        name: found.name.clone(),
        description: found.facts.description.clone(),
        link: None,
    };
    let made = create_catalog_entry::<ProductKind>(
        state,
        &state.bus.products,
        &metadata,
        system_admin(),
        item(product),
    )
    .await;
    tolerate_existing(made)?;
    let made = create_catalog_entry::<SalesChannelKind>(
        state,
        &state.bus.channels,
        &metadata,
        system_admin(),
        item(channel),
    )
    .await;
    tolerate_existing(made)
}

fn tolerate_existing(result: ApiResult<(Uuid, Executed)>) -> ApiResult<()> {
    match result {
        Ok(_)
        | Err(ApiError::Conflict {
            code: "already_exists",
            ..
        }) => Ok(()),
        Err(other) => Err(other),
    }
}

/// How a generation's job ended.
enum Ended {
    Done,
    Dead(Option<String>),
}

/// Why waiting stopped before every job ended; the generations still running.
enum Cut {
    TimedOut(HashSet<Uuid>),
    Stopping(HashSet<Uuid>),
}

/// Waits for the jobs of `generations` to end, until `deadline`. Woken by the log's commits
/// (a worker's result is a commit), and by a short poll for workers in other processes.
async fn wait_for_jobs(
    state: &AppState,
    generations: HashSet<Uuid>,
    deadline: Instant,
) -> ApiResult<Result<HashMap<Uuid, Ended>, Cut>> {
    let mut open = generations;
    let mut ended = HashMap::new();
    let mut commits = state.engine.commits();
    let mut commits_open = true;
    let mut stopping = state.stopping.clone();
    loop {
        let ids: Vec<Uuid> = open.iter().copied().collect();
        // The queue's own table: one read for the whole batch, with a dead job's reason.
        let rows: Vec<(Uuid, String, Option<String>)> = sqlx::query_as(
            "SELECT generation_id, state, last_error FROM generation_jobs
              WHERE generation_id = ANY($1) AND state IN ('done', 'dead')",
        )
        .bind(&ids)
        .fetch_all(&state.pool)
        .await?;
        for (generation_id, job_state, error) in rows {
            open.remove(&generation_id);
            let end = if job_state == "done" {
                Ended::Done
            } else {
                Ended::Dead(error)
            };
            ended.insert(generation_id, end);
        }
        if open.is_empty() {
            return Ok(Ok(ended));
        }
        if *stopping.borrow() {
            return Ok(Err(Cut::Stopping(open)));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(Err(Cut::TimedOut(open)));
        }
        let nap = (deadline - now).min(POLL);
        tokio::select! {
            changed = commits.changed(), if commits_open => {
                if changed.is_err() {
                    commits_open = false;
                }
                // Let the rest of a burst of results land before looking.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ = tokio::time::sleep(nap) => {}
            changed = stopping.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(nap).await;
                }
            }
        }
    }
}

fn still_running(status: StatusCode, code: &str, message: String, ids: Vec<Uuid>) -> Response {
    (
        status,
        Json(StillRunning {
            error: StillRunningDetail {
                code: code.to_string(),
                message,
                running_request_ids: ids,
            },
        }),
    )
        .into_response()
}

/// Generates offers for clients described in free text, and answers when every text is there
/// (or failed for good), at most `OFFERFLOW_RAW_TIMEOUT_SECONDS` later. Each caller's raw
/// clients live in their own project, readable through `/api/v1`.
#[utoipa::path(post, path = "/api/llm-model/requests-data/raw-multiple-creation", tag = "legacy", request_body = RawRequestDataBatch,
    responses((status = 200, body = Vec<RawText>, description = "one entry per item, in order"),
              (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "the fields name the item, e.g. raw_requests_data[0].client_data; over the batch limit: raw_requests_data"),
              (status = 503, body = StillRunning, description = "the server is stopping; the generations go on"),
              (status = 504, body = StillRunning, description = "not every text was generated in time; the generations go on")),
    security(("bearer" = [])))]
async fn raw_multiple_creation(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(batch): ApiJson<RawRequestDataBatch>,
) -> ApiResult<Response> {
    let deadline = Instant::now() + state.generation.raw_timeout;
    batch_size(
        "raw_requests_data",
        batch.raw_requests_data.len(),
        state.generation.raw_max_batch,
        " (OFFERFLOW_RAW_MAX_BATCH)",
    )?;
    let params = sampling(&state, batch.params)?;
    let (product, product_exists) = raw_entry::<ProductKind>(
        &state,
        ids::product_id(RAW_KEY),
        RAW_PRODUCT_NAME,
        RAW_PRODUCT_DESCRIPTION,
    )
    .await?;
    let (channel, channel_exists) = raw_entry::<SalesChannelKind>(
        &state,
        ids::sales_channel_id(RAW_KEY),
        RAW_CHANNEL_NAME,
        RAW_CHANNEL_DESCRIPTION,
    )
    .await?;
    let project_id = raw_project_id(caller.user_id);
    let channel_id = channel.facts.id;
    let mut home = Home::open(
        &state,
        &caller,
        "",
        project_id,
        format!("{API_PROJECT_NAME} (свободные описания)"),
        product.facts.clone(),
        "raw_requests_data",
    )
    .await
    .map_err(|e| switched_off(e, "product"))?;
    home.needs(&caller, &channel.facts, "raw_requests_data")
        .map_err(|e| switched_off(e, "sales channel"))?;

    let mut plans: Vec<Planned> = Vec::new();
    let mut planned: HashSet<Uuid> = HashSet::new();
    let mut answers: Vec<(Option<String>, Uuid)> = Vec::new();
    for (index, item) in batch.raw_requests_data.into_iter().enumerate() {
        let at = format!("raw_requests_data[{index}]");
        let product_info = required_text(
            &field(&at, "product_info"),
            &item.product_info,
            DESCRIPTION_MAX,
        )?;
        let channel_info = required_text(
            &field(&at, "sale_channel_info"),
            &item.sale_channel_info,
            DESCRIPTION_MAX,
        )?;
        let client = clean_client(
            &at,
            item.client_id,
            None,
            RAW_SOURCE,
            item.client_data,
            item.client_data_decoding,
        )?;
        let request_id = raw_request_id(
            project_id,
            channel_id,
            &client.data,
            &product_info,
            &channel_info,
        );
        answers.push((client.client_id.clone(), request_id));
        if planned.insert(request_id) {
            plans.push(Planned {
                at,
                request_id,
                project_id,
                channel_id,
                client,
                instruction: None,
                texts: Some((product_info, channel_info)),
                under_way: None,
            });
        }
    }
    let existing = existing_requests(&state, &plans).await?;
    for (plan, request) in plans.iter_mut().zip(existing) {
        plan.under_way = generation_under_way(&request);
    }

    if !(product_exists && channel_exists) {
        make_raw_catalog(&state, &caller, &product, &channel).await?;
    }
    let metadata = caller.metadata();
    home.establish(&state, &caller, &metadata).await?;
    let prompt_version = home
        .project
        .channels
        .get(&channel_id)
        .filter(|c| c.attached)
        .map(|c| c.prompt_version)
        .ok_or_else(|| anyhow::anyhow!("the raw channel is not attached to {project_id}"))?;
    let max_chars = home
        .project
        .channel_rules(channel_id)
        .and_then(|rules| rules.max_chars);
    let (state_ref, metadata_ref, channel_name) = (&state, &metadata, &channel.name);
    let order: Vec<Uuid> = plans.iter().map(|p| p.request_id).collect();
    let started: Vec<ApiResult<(Uuid, Uuid)>> = stream::iter(plans)
        .map(|plan| async move {
            if let Some(generation_id) = plan.under_way {
                return Ok((plan.request_id, generation_id));
            }
            let (product_info, channel_info) = plan
                .texts
                .clone()
                .ok_or_else(|| anyhow::anyhow!("raw request {} has no texts", plan.request_id))?;
            let facts = ChannelFacts {
                project_description: String::new(),
                product_description: product_info,
                channel_name: channel_name.clone(),
                channel_description: channel_info,
                channel_prompt: String::new(),
                prompt_version,
                max_chars,
            };
            match create_and_generate(state_ref, metadata_ref, &plan, &facts, params).await {
                Ok((generation_id, _)) => Ok((plan.request_id, generation_id)),
                // Another call started this client's offer a moment ago: wait for that one.
                Err(ApiError::Conflict {
                    code: "in_progress",
                    message,
                }) => {
                    let request = state_ref
                        .bus
                        .requests
                        .current(plan.request_id, Recency::AtMost(Duration::ZERO))
                        .await?
                        .aggregate;
                    match generation_under_way(&request) {
                        Some(generation_id) => Ok((plan.request_id, generation_id)),
                        None => Err(ApiError::Conflict {
                            code: "in_progress",
                            message,
                        }),
                    }
                }
                Err(other) => Err(other),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut generation_of: HashMap<Uuid, Uuid> = HashMap::new();
    for result in started {
        let (request_id, generation_id) = result?;
        generation_of.insert(request_id, generation_id);
    }

    let waiting: HashSet<Uuid> = generation_of.values().copied().collect();
    let ended = match wait_for_jobs(&state, waiting, deadline).await? {
        Ok(ended) => ended,
        Err(cut) => {
            let (status, code, running, why) = match cut {
                Cut::TimedOut(running) => (
                    StatusCode::GATEWAY_TIMEOUT,
                    "generation_timeout",
                    running,
                    format!(
                        "not every text was generated within {} s (OFFERFLOW_RAW_TIMEOUT_SECONDS)",
                        state.generation.raw_timeout.as_secs_f64()
                    ),
                ),
                Cut::Stopping(running) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    running,
                    "the server is stopping".to_string(),
                ),
            };
            let ids: Vec<Uuid> = order
                .iter()
                .copied()
                .filter(|id| {
                    generation_of
                        .get(id)
                        .is_some_and(|generation| running.contains(generation))
                })
                .collect();
            let list: Vec<String> = ids.iter().map(Uuid::to_string).collect();
            let message = format!(
                "{why}; still being generated: {}. They go on: read them later with GET /api/v1/requests/{{id}}",
                list.join(", ")
            );
            return Ok(still_running(status, code, message, ids));
        }
    };

    let mut texts: HashMap<Uuid, (Option<String>, Option<String>)> = HashMap::new();
    for (request_id, generation_id) in &generation_of {
        let outcome = match ended.get(generation_id) {
            Some(Ended::Done) => {
                // The job ends in the same transaction as the offer's event: the log has it.
                let request = state
                    .bus
                    .requests
                    .current(*request_id, Recency::AtMost(Duration::ZERO))
                    .await?
                    .aggregate;
                let text = request
                    .thread
                    .iter()
                    .find(|m| m.generation_id == *generation_id && m.from_model)
                    .map(|m| m.text.clone())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "generation {generation_id} is done but request {request_id} has no offer for it"
                        )
                    })?;
                (Some(text), None)
            }
            Some(Ended::Dead(error)) => (
                None,
                Some(
                    error
                        .clone()
                        .unwrap_or_else(|| "the generation failed for good".to_string()),
                ),
            ),
            None => (None, Some("the generation's job is missing".to_string())),
        };
        texts.insert(*request_id, outcome);
    }
    let body: Vec<RawText> = answers
        .into_iter()
        .map(|(client_id, request_id)| {
            let (text, error) = texts.get(&request_id).cloned().unwrap_or((None, None));
            RawText {
                client_id,
                request_id,
                text,
                error,
            }
        })
        .collect();
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// An archived `RAW` entry turns raw calls off for callers without a raw project yet.
fn switched_off(error: ApiError, what: &str) -> ApiError {
    match error {
        ApiError::Unprocessable { .. } => ApiError::Conflict {
            code: "archived",
            message: format!(
                "raw-multiple-creation is switched off: an admin archived the {RAW_KEY} {what}"
            ),
        },
        other => other,
    }
}
