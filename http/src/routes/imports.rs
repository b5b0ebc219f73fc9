//! Client imports: a spreadsheet or CSV file, or a registered client database, into a project
//! channel; following an import; admins' client sources.
use std::time::Duration;

use anyhow::Context;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::client_import::RejectedRow;
use domain::client_request::{ClientRequest, RequestStatus};
use domain::metadata::EventMetadata;
use domain::project::Project;
use domain::{DomainError, Role};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::Connection;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::generation::{request_generation, ChannelFacts, GenerationAsk};
use crate::import::{
    fail_import, open_import, plan, read_decoding, read_file, record_import, settle_abandoned,
    too_many_bytes, too_many_rows, ClientRow, ClientTable, ImportPlan,
};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        // The upload enforces its own, larger limit (OFFERFLOW_IMPORT_MAX_BYTES) as it reads,
        // and names it when a file is over.
        .routes(routes!(import_file))
        .layer(DefaultBodyLimit::disable())
        .routes(routes!(import_from_source))
        .routes(routes!(get_import))
        .routes(routes!(known_columns))
        .routes(routes!(list_sources, register_source))
        .routes(routes!(delete_source))
}

/// How long an upload's answer waits for the import to finish: small files answer with their
/// result, large ones are followed at `GET /imports/{id}`.
const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// Commands of the generations an import queues, in flight at once.
const GENERATION_CONCURRENCY: usize = 64;

/// An import as it stands.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct ImportView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub channel_id: Uuid,
    /// The file's name, or `source:<name>`.
    pub source: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    /// Client rows read (the header not counted).
    pub rows: i64,
    /// Client requests recorded by this import.
    pub created: i64,
    /// Rows whose client was already in this project channel, or earlier in the file.
    pub duplicates: i64,
    /// Rows not recorded, with the row number (the header is row 1) and the reason.
    #[schema(value_type = Vec<Object>, example = json!([{"row": 7, "reason": "the row has no values"}]))]
    pub rejected: sqlx::types::Json<Vec<RejectedRow>>,
    /// Why the import failed; nothing of a failed import is recorded.
    pub error: Option<String>,
    /// Whether offers are queued for the created requests.
    pub generate: bool,
    pub generations_queued: Option<i64>,
    /// Pass it as `X-Consistency-Token` to list the imported requests.
    pub consistency_token: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

async fn load_view(state: &AppState, id: Uuid) -> ApiResult<Option<ImportView>> {
    Ok(sqlx::query_as(
        "SELECT id, project_id, channel_id, source, status, rows, created, duplicates, rejected, error,
                generate, generations_queued, consistency_token, started_at, finished_at
           FROM client_imports WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?)
}

/// The project, if the caller may add clients to this channel of it (performers, managers and
/// admins; outsiders get 404).
async fn importing_project(
    state: &AppState,
    caller: &Authenticated,
    project_id: Uuid,
    channel_id: Uuid,
) -> ApiResult<Project> {
    let project: Project = state.bus.load(project_id).await?;
    project.authorize_change(&caller.caller(), Role::Performer)?;
    if !project.channel_attached(channel_id) {
        return Err(DomainError::ChannelNotAttached.into());
    }
    Ok(project)
}

async fn read_part(field: &mut Field<'_>, name: &str, limit: usize) -> ApiResult<Vec<u8>> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::bad_request(name, format!("{name}: the upload broke off: {e}")))?
    {
        if bytes.len() + chunk.len() > limit {
            return Err(if name == "file" {
                too_many_bytes(limit)
            } else {
                ApiError::PayloadTooLarge(format!("{name}: larger than {limit} bytes"))
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn parse_flag(field: &str, text: &str) -> ApiResult<bool> {
    match text.trim() {
        "true" | "1" | "on" => Ok(true),
        "false" | "0" | "off" | "" => Ok(false),
        _ => Err(ApiError::invalid(field, "must be true or false")),
    }
}

/// The parts of an upload.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ImportUpload {
    /// The file: .xlsx, .xlsm, .xlsb, .xls, .ods or .csv.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// JSON object column → description.
    #[schema(value_type = Option<String>, format = Binary)]
    decoding: Option<Vec<u8>>,
    /// `true` queues an offer for every created request.
    generate: Option<bool>,
}

/// Imports clients from a file (performers of the project). Multipart parts: `file` (.xlsx
/// and the other workbook formats, every sheet, first row = column names; or .csv, UTF-8 with
/// or without BOM, `,` or `;`), optional `decoding` (JSON object column → description, adding
/// to or overriding the bank's dictionary), optional `generate` (`true`: queue an offer for
/// every created request). A file-level problem is answered at once and records nothing; rows
/// wrong on their own are listed in `rejected`. The answer carries the result when the import
/// finishes within a few seconds; otherwise follow `GET /imports/{id}`.
#[utoipa::path(post, path = "/projects/{id}/channels/{channel_id}/imports", tag = "imports",
    params(("id" = Uuid, Path), ("channel_id" = Uuid, Path)),
    request_body(content = ImportUpload, content_type = "multipart/form-data"),
    responses((status = 202, body = ImportView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody, description = "over OFFERFLOW_IMPORT_MAX_BYTES or OFFERFLOW_IMPORT_MAX_ROWS"),
              (status = 415, body = ErrorBody), (status = 422, body = ErrorBody, description = "not a spreadsheet or CSV, no header or rows, or undescribed columns (listed)")),
    security(("bearer" = [])))]
async fn import_file(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath((project_id, channel_id)): ApiPath<(Uuid, Uuid)>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, Json<ImportView>)> {
    let project = importing_project(&state, &caller, project_id, channel_id).await?;
    let mut multipart = multipart.map_err(|e| {
        ApiError::UnsupportedMediaType(format!(
            "send multipart/form-data with the file in a part named `file` ({e})"
        ))
    })?;
    let limits = state.config.import_limits();
    let mut file = None;
    let mut decoding = Vec::new();
    let mut generate = false;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request("", format!("the multipart body is malformed: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                let file_name = field.file_name().unwrap_or("upload").to_string();
                let bytes = read_part(&mut field, "file", limits.max_bytes).await?;
                file = Some((file_name, bytes));
            }
            "decoding" => {
                let bytes = read_part(&mut field, "decoding", 1024 * 1024).await?;
                decoding = read_decoding(&bytes)?;
            }
            "generate" => {
                let bytes = read_part(&mut field, "generate", 16).await?;
                generate = parse_flag("generate", &String::from_utf8_lossy(&bytes))?;
            }
            other => {
                return Err(ApiError::invalid(
                    other,
                    "unknown part; the parts are file, decoding and generate",
                ))
            }
        }
    }
    let (file_name, bytes) =
        file.ok_or_else(|| ApiError::invalid("file", "the upload needs a part named `file`"))?;
    let reading_name = file_name.clone();
    let table = tokio::task::spawn_blocking(move || read_file(&reading_name, &bytes, limits))
        .await
        .context("reading the uploaded file")??;
    let plan = plan(
        Uuid::new_v4(),
        project_id,
        channel_id,
        file_name,
        table,
        &decoding,
        caller.metadata(),
    )?;
    let view = start(&state, plan, generate, project).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Runs an import in the background (it outlives a client that hangs up) and answers with its
/// state once it finished or `ANSWER_WAIT` passed.
async fn start(
    state: &AppState,
    plan: ImportPlan,
    generate: bool,
    project: Project,
) -> ApiResult<ImportView> {
    open_import(&state.pool, &plan, generate).await?;
    let id = plan.import_id;
    let (finished, wait) = tokio::sync::oneshot::channel::<()>();
    let worker = state.clone();
    tokio::spawn(async move {
        match record_import(&worker, &plan, &|_, _| {}).await {
            Ok(summary) if generate => {
                let queued = queue_generations(
                    &worker,
                    &project,
                    plan.channel_id,
                    &summary.created_ids,
                    &plan.metadata,
                )
                .await;
                if let Err(e) = &queued {
                    tracing::error!(import = %id, error = %e, "queueing the import's generations failed");
                }
                let _ =
                    sqlx::query("UPDATE client_imports SET generations_queued = $2 WHERE id = $1")
                        .bind(id)
                        .bind(queued.unwrap_or(0) as i64)
                        .execute(&worker.pool)
                        .await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(import = %id, error = format!("{e:#}"), "import failed");
                let message = "recording failed (the database refused or was unreachable); nothing was recorded: import the file again";
                if let Err(e) = fail_import(&worker.pool, id, message).await {
                    tracing::error!(import = %id, error = %e, "marking the import failed");
                }
            }
        }
        let _ = finished.send(());
    });
    let _ = tokio::time::timeout(ANSWER_WAIT, wait).await;
    load_view(state, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("import {id} vanished").into())
}

/// Queues a first offer for each request, as `POST …/generations` would; returns how many.
pub async fn queue_generations(
    state: &AppState,
    project: &Project,
    channel_id: Uuid,
    request_ids: &[Uuid],
    metadata: &EventMetadata,
) -> ApiResult<usize> {
    let facts = ChannelFacts::load(&state.bus, project, channel_id).await?;
    let params = state.generation.default_params;
    let results: Vec<ApiResult<()>> = stream::iter(request_ids.iter().copied())
        .map(|id| {
            let facts = &facts;
            async move {
                let request: ClientRequest = state.bus.recorded(id).await?;
                if request.status() == RequestStatus::InProgress {
                    return Ok(());
                }
                let ask = GenerationAsk {
                    instruction: None,
                    parent_message_id: None,
                    params,
                };
                request_generation(
                    &state.bus,
                    &state.generation,
                    facts,
                    id,
                    &request,
                    ask,
                    metadata,
                )
                .await
                .map(|_| ())
            }
        })
        .buffer_unordered(GENERATION_CONCURRENCY)
        .collect()
        .await;
    let mut queued = 0;
    for result in results {
        result?;
        queued += 1;
    }
    Ok(queued)
}

/// An import (members of its project). An import interrupted before it committed is shown as
/// `failed`; nothing of it was recorded, and sending the file again gives the full result.
#[utoipa::path(get, path = "/imports/{id}", tag = "imports", params(("id" = Uuid, Path)),
    responses((status = 200, body = ImportView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn get_import(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<ImportView>> {
    settle_abandoned(&state.pool, id).await?;
    let view = load_view(&state, id)
        .await?
        .ok_or_else(|| ApiError::not_found("import"))?;
    // From the log, not the read model: the project may be a moment old.
    let project: Project = state.bus.load(view.project_id).await?;
    project
        .role_of(&caller.caller())
        .map_err(|_| ApiError::not_found("import"))?;
    Ok(Json(view))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceImportOrder {
    /// The name of a client source an admin registered.
    pub source: String,
    /// Column → description, adding to or overriding the bank's dictionary.
    #[schema(value_type = Object)]
    #[serde(default)]
    pub decoding: Map<String, Value>,
    /// Queue an offer for every created request.
    #[serde(default)]
    pub generate: bool,
}

#[derive(sqlx::FromRow)]
struct SourceRow {
    name: String,
    dsn: String,
    query: String,
    max_rows: i32,
    statement_timeout_ms: i32,
}

/// Imports clients from a registered client database (performers of the project). The source's
/// fixed query runs in a read-only transaction with its statement timeout and row limit.
#[utoipa::path(post, path = "/projects/{id}/channels/{channel_id}/imports/from-source", tag = "imports",
    params(("id" = Uuid, Path), ("channel_id" = Uuid, Path)), request_body = SourceImportOrder,
    responses((status = 202, body = ImportView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
async fn import_from_source(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath((project_id, channel_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(order): ApiJson<SourceImportOrder>,
) -> ApiResult<(StatusCode, Json<ImportView>)> {
    let project = importing_project(&state, &caller, project_id, channel_id).await?;
    let source: SourceRow = sqlx::query_as(
        "SELECT name, dsn, query, max_rows, statement_timeout_ms FROM client_sources WHERE name = $1",
    )
    .bind(&order.source)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::invalid("source", "no client source has this name"))?;
    let mut decoding = Vec::with_capacity(order.decoding.len());
    for (key, value) in order.decoding {
        match value {
            Value::String(text) => decoding.push((key, text)),
            _ => {
                return Err(ApiError::invalid(
                    format!("decoding.{key}"),
                    "must be a string",
                ))
            }
        }
    }
    let limit = (source.max_rows.max(1) as usize).min(state.config.import_limits().max_rows);
    let table = read_source(&source, limit).await?;
    let plan = plan(
        Uuid::new_v4(),
        project_id,
        channel_id,
        format!("source:{}", source.name),
        table,
        &decoding,
        caller.metadata(),
    )?;
    let view = start(&state, plan, order.generate, project).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// A database error without the source's credentials in it.
fn source_error(source: &SourceRow, error: impl std::fmt::Display) -> ApiError {
    let mut message = error.to_string();
    if let Some(password) = dsn_password(&source.dsn) {
        message = message.replace(&password, "***");
    }
    message = message.replace(&source.dsn, "***");
    ApiError::Unavailable(format!(
        "client source {:?} could not be read: {message}",
        source.name
    ))
}

fn dsn_password(dsn: &str) -> Option<String> {
    let rest = dsn.split_once("://")?.1;
    let credentials = rest.rsplit_once('@')?.0;
    let password = credentials.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_string())
}

/// Runs the source's query in a read-only transaction. Each row comes back as `row_to_json`
/// text, which keeps the query's column order (jsonb would not).
async fn read_source(source: &SourceRow, max_rows: usize) -> ApiResult<ClientTable> {
    let connect = sqlx::PgConnection::connect(&source.dsn);
    let mut conn = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| source_error(source, "connecting timed out"))?
        .map_err(|e| source_error(source, e))?;
    let mut tx = conn.begin().await.map_err(|e| source_error(source, e))?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(|e| source_error(source, e))?;
    sqlx::query(&format!(
        "SET LOCAL statement_timeout = {}",
        source.statement_timeout_ms.max(1)
    ))
    .execute(&mut *tx)
    .await
    .map_err(|e| source_error(source, e))?;
    // One row past the limit tells "exactly the limit" from "more".
    let rows: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT row_to_json(source)::text FROM ({}) AS source LIMIT {}",
        source.query,
        max_rows + 1
    ))
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| source_error(source, e))?;
    let _ = tx.rollback().await;
    let _ = conn.close().await;
    if rows.len() > max_rows {
        return Err(too_many_rows(max_rows));
    }
    let mut table = ClientTable::default();
    for (index, text) in rows.iter().enumerate() {
        let object: Map<String, Value> = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("row_to_json gave something else: {e}"))?;
        let mut values = Vec::with_capacity(object.len());
        for (key, value) in object {
            if !table.columns.contains(&key) {
                table.columns.push(key.clone());
            }
            values.push((key, value));
        }
        table.rows.push(ClientRow {
            sheet: None,
            row: index as u64 + 1,
            values,
            problem: None,
        });
    }
    if table.rows.is_empty() {
        return Err(ApiError::invalid(
            "source",
            "the source's query returned no clients",
        ));
    }
    Ok(table)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClientSource {
    /// Letters, digits, `_` and `-`, at most 64.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `postgres://user:password@host:port/database`. Stored, never shown again.
    pub dsn: String,
    /// One SELECT (or WITH … SELECT) whose columns are the client data; it runs read-only.
    pub query: String,
    /// Most rows one import reads (default 100 000).
    pub max_rows: Option<u32>,
    /// Statement timeout of the query in ms (default 30 000).
    pub statement_timeout_ms: Option<u32>,
}

/// A client source as anyone may see it: never its DSN.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct ClientSourceView {
    pub name: String,
    pub description: String,
    pub max_rows: i32,
    pub statement_timeout_ms: i32,
    pub created_at: DateTime<Utc>,
}

fn validate_source(body: &NewClientSource) -> ApiResult<()> {
    let name_ok = !body.name.is_empty()
        && body.name.len() <= 64
        && body
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(ApiError::invalid("name", "1 to 64 letters, digits, _ or -"));
    }
    if !(body.dsn.starts_with("postgres://") || body.dsn.starts_with("postgresql://")) {
        return Err(ApiError::invalid(
            "dsn",
            "must be a postgres:// or postgresql:// URL",
        ));
    }
    let query = body.query.trim();
    let lower = query.to_lowercase();
    if query.is_empty() || query.len() > 10_000 {
        return Err(ApiError::invalid("query", "must be 1 to 10 000 characters"));
    }
    if !(lower.starts_with("select") || lower.starts_with("with")) || query.contains(';') {
        return Err(ApiError::invalid(
            "query",
            "must be one SELECT (or WITH … SELECT) statement, without `;`",
        ));
    }
    if body.max_rows == Some(0) || body.statement_timeout_ms == Some(0) {
        return Err(ApiError::invalid(
            "max_rows",
            "max_rows and statement_timeout_ms must be positive",
        ));
    }
    if body.description.chars().count() > 1000 {
        return Err(ApiError::invalid(
            "description",
            "must be at most 1000 characters",
        ));
    }
    Ok(())
}

/// Registers a client database (admins). The source is checked by running its query for no
/// rows; the DSN is never returned.
#[utoipa::path(post, path = "/client-sources", tag = "imports", request_body = NewClientSource,
    responses((status = 201, body = ClientSourceView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody, description = "the source cannot be read")),
    security(("bearer" = [])))]
async fn register_source(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<NewClientSource>,
) -> ApiResult<(StatusCode, Json<ClientSourceView>)> {
    caller.require_admin()?;
    validate_source(&body)?;
    let max_rows = body.max_rows.unwrap_or(100_000).min(i32::MAX as u32) as i32;
    let timeout = body
        .statement_timeout_ms
        .unwrap_or(30_000)
        .min(i32::MAX as u32) as i32;
    let probe = SourceRow {
        name: body.name.clone(),
        dsn: body.dsn.clone(),
        query: format!("SELECT * FROM ({}) AS probe LIMIT 0", body.query.trim()),
        max_rows,
        statement_timeout_ms: timeout,
    };
    match read_source(&probe, 1).await {
        // No rows is the probe's expected answer.
        Err(ApiError::Unprocessable { .. }) | Ok(_) => {}
        Err(e) => return Err(e),
    }
    let view: Option<ClientSourceView> = sqlx::query_as(
        "INSERT INTO client_sources (name, description, dsn, query, max_rows, statement_timeout_ms, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING
         RETURNING name, description, max_rows, statement_timeout_ms, created_at",
    )
    .bind(&body.name)
    .bind(body.description.trim())
    .bind(&body.dsn)
    .bind(body.query.trim())
    .bind(max_rows)
    .bind(timeout)
    .bind(caller.user_id.to_string())
    .fetch_optional(&state.pool)
    .await?;
    let view = view.ok_or_else(|| ApiError::Conflict {
        code: "already_exists",
        message: format!("a client source named {} already exists", body.name),
    })?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The client sources one may import from (any signed-in user; no credentials).
#[utoipa::path(get, path = "/client-sources", tag = "imports",
    responses((status = 200, body = Vec<ClientSourceView>)), security(("bearer" = [])))]
async fn list_sources(
    State(state): State<AppState>,
    _caller: Authenticated,
) -> ApiResult<Json<Vec<ClientSourceView>>> {
    Ok(Json(
        sqlx::query_as(
            "SELECT name, description, max_rows, statement_timeout_ms, created_at FROM client_sources ORDER BY name",
        )
        .fetch_all(&state.pool)
        .await?,
    ))
}

/// Removes a client source (admins).
#[utoipa::path(delete, path = "/client-sources/{name}", tag = "imports", params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_source(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let removed = sqlx::query("DELETE FROM client_sources WHERE name = $1")
        .bind(&name)
        .execute(&state.pool)
        .await?;
    if removed.rows_affected() == 0 {
        return Err(ApiError::not_found("client source"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Registers (or replaces) a source without an HTTP caller: the embedded demo's.
pub async fn put_source(
    pool: &sqlx::PgPool,
    name: &str,
    description: &str,
    dsn: &str,
    query: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO client_sources (name, description, dsn, query, max_rows, statement_timeout_ms, created_by)
         VALUES ($1, $2, $3, $4, 100000, 30000, 'cli')
         ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, dsn = EXCLUDED.dsn, query = EXCLUDED.query",
    )
    .bind(name)
    .bind(description)
    .bind(dsn)
    .bind(query)
    .execute(pool)
    .await
    .context("registering a client source")?;
    Ok(())
}

/// One column every import describes without a `decoding` part.
#[derive(Serialize, ToSchema)]
pub struct KnownColumn {
    pub key: String,
    pub description: String,
}

#[derive(Serialize, ToSchema)]
pub struct KnownColumns {
    pub items: Vec<KnownColumn>,
}

/// The built-in dictionary of the bank's columns, so that a client (the web interface's import
/// preview) can tell which columns of a file still need a description before uploading it.
#[utoipa::path(get, path = "/imports/columns", tag = "imports",
    responses((status = 200, body = KnownColumns), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn known_columns(_caller: Authenticated) -> Json<KnownColumns> {
    Json(KnownColumns {
        items: domain::client_import::BANK_COLUMNS
            .iter()
            .map(|(key, description)| KnownColumn {
                key: (*key).to_string(),
                description: (*description).to_string(),
            })
            .collect(),
    })
}
