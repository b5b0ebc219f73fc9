//! The catalog: products and sales channels. Everyone signed in reads; admins write.
//! `DELETE` archives: projects and requests that refer to an entry keep working.
use crate::event_store::AggregateStore;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::catalog::{
    CatalogCommand, CatalogDetails, CatalogEntry, CatalogKind, ProductKind, SalesChannelKind,
};
use domain::ids;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::commands::Accepted;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{like_pattern, ApiJson, ApiPath, ApiQuery, Page, ReadAfter};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_products, create_product))
        .routes(routes!(get_product, update_product, archive_product))
        .routes(routes!(list_channels, create_channel))
        .routes(routes!(get_channel, update_channel, archive_channel))
}

#[derive(Serialize, ToSchema, Clone)]
pub struct ProjectRef {
    pub id: Uuid,
    pub name: String,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct CatalogItem {
    pub id: Uuid,
    /// Immutable short code, e.g. `CC` or `SMS`.
    pub key: String,
    pub name: String,
    /// Feeds the prompts.
    pub description: String,
    pub link: Option<String>,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Products only: the caller's projects that sell this product.
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub my_projects: Option<Vec<ProjectRef>>,
}

#[derive(Serialize, ToSchema)]
pub struct CatalogList {
    pub items: Vec<CatalogItem>,
    pub total: i64,
}

#[derive(Deserialize, IntoParams)]
pub struct CatalogFilter {
    /// Search in key, name and description.
    pub q: Option<String>,
    /// Include archived entries (default false).
    pub include_archived: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCatalogItem {
    /// 1–32 Latin letters, digits or `_`; stored upper-case; never changes.
    pub key: String,
    pub name: String,
    pub description: String,
    pub link: Option<String>,
}

/// Absent fields keep their value; `"link": null` removes the link.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default, with = "serde_with_none")]
    #[schema(value_type = Option<String>)]
    pub link: Option<Option<String>>,
}

/// Distinguishes an absent field from an explicit `null`.
mod serde_with_none {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Ok(Some(Option::<String>::deserialize(d)?))
    }
}

fn table<K: CatalogKind>() -> &'static str {
    if K::TYPE == ProductKind::TYPE {
        "products"
    } else {
        "sales_channels"
    }
}

async fn list<K: CatalogKind>(
    state: &AppState,
    caller: &Authenticated,
    filter: CatalogFilter,
    page: Page,
) -> ApiResult<CatalogList> {
    let table = table::<K>();
    let pattern = like_pattern(&filter.q);
    let include_archived = filter.include_archived.unwrap_or(false);
    let condition = "($1::text IS NULL OR key ILIKE $1 OR name ILIKE $1 OR description ILIKE $1) AND ($2 OR NOT archived)";
    let mut items: Vec<CatalogItem> = sqlx::query_as(&format!(
        "SELECT id, key, name, description, link, archived, created_at, updated_at FROM {table}
          WHERE {condition} ORDER BY name, key LIMIT $3 OFFSET $4"
    ))
    .bind(&pattern)
    .bind(include_archived)
    .bind(page.limit()?)
    .bind(page.offset()?)
    .fetch_all(&state.pool)
    .await?;
    let (total,): (i64,) =
        sqlx::query_as(&format!("SELECT count(*) FROM {table} WHERE {condition}"))
            .bind(&pattern)
            .bind(include_archived)
            .fetch_one(&state.pool)
            .await?;
    if K::TYPE == ProductKind::TYPE {
        attach_my_projects(state, caller, &mut items).await?;
    }
    Ok(CatalogList { items, total })
}

async fn attach_my_projects(
    state: &AppState,
    caller: &Authenticated,
    items: &mut [CatalogItem],
) -> ApiResult<()> {
    let ids: Vec<Uuid> = items.iter().map(|i| i.id).collect();
    let rows: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
        "SELECT p.product_id, p.id, p.name FROM projects p
           JOIN project_members m ON m.project_id = p.id AND m.user_id = $1
          WHERE p.product_id = ANY($2) AND NOT p.archived ORDER BY p.name",
    )
    .bind(caller.user_id)
    .bind(&ids)
    .fetch_all(&state.pool)
    .await?;
    for item in items.iter_mut() {
        item.my_projects = Some(
            rows.iter()
                .filter(|(product, _, _)| *product == item.id)
                .map(|(_, id, name)| ProjectRef {
                    id: *id,
                    name: name.clone(),
                })
                .collect(),
        );
    }
    Ok(())
}

async fn get<K: CatalogKind>(
    state: &AppState,
    caller: &Authenticated,
    id: Uuid,
) -> ApiResult<CatalogItem> {
    let item: Option<CatalogItem> = sqlx::query_as(&format!(
        "SELECT id, key, name, description, link, archived, created_at, updated_at FROM {} WHERE id = $1",
        table::<K>()
    ))
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    let mut item = item.ok_or_else(|| ApiError::not_found(K::NOUN))?;
    if K::TYPE == ProductKind::TYPE {
        attach_my_projects(state, caller, std::slice::from_mut(&mut item)).await?;
    }
    Ok(item)
}

fn entry_id<K: CatalogKind>(key: &str) -> Uuid {
    if K::TYPE == ProductKind::TYPE {
        ids::product_id(key)
    } else {
        ids::sales_channel_id(key)
    }
}

/// Creates a catalog entry; shared by the API and `seed catalog`.
pub async fn create<K: CatalogKind>(
    state: &AppState,
    cqrs: &AggregateStore<CatalogEntry<K>>,
    metadata: &domain::metadata::EventMetadata,
    by: domain::Caller,
    body: NewCatalogItem,
) -> ApiResult<(Uuid, crate::commands::Executed)>
where
    CatalogEntry<K>:
        Aggregate<Command = CatalogCommand, Error = domain::DomainError, Services = ()>,
{
    if !by.is_admin {
        return Err(ApiError::Forbidden("only an admin may do that".into()));
    }
    let key = domain::catalog::normalize_key(&body.key)?;
    let id = entry_id::<K>(&key);
    let command = CatalogCommand::Create {
        key,
        details: CatalogDetails {
            name: body.name,
            description: body.description,
            link: body.link,
        },
        by,
    };
    let done = state.bus.execute(cqrs, id, command, metadata).await?;
    Ok((id, done))
}

async fn update<K: CatalogKind>(
    state: &AppState,
    cqrs: &AggregateStore<CatalogEntry<K>>,
    caller: &Authenticated,
    id: Uuid,
    body: CatalogUpdate,
) -> ApiResult<Accepted>
where
    CatalogEntry<K>:
        Aggregate<Command = CatalogCommand, Error = domain::DomainError, Services = ()>,
{
    caller.require_admin()?;
    let command = CatalogCommand::Update {
        name: body.name,
        description: body.description,
        link: body.link,
        by: caller.caller(),
    };
    let done = state
        .bus
        .execute(cqrs, id, command, &caller.metadata())
        .await?;
    Ok(done.accepted(id))
}

async fn archive<K: CatalogKind>(
    state: &AppState,
    cqrs: &AggregateStore<CatalogEntry<K>>,
    caller: &Authenticated,
    id: Uuid,
) -> ApiResult<Accepted>
where
    CatalogEntry<K>:
        Aggregate<Command = CatalogCommand, Error = domain::DomainError, Services = ()>,
{
    caller.require_admin()?;
    let done = state
        .bus
        .execute(
            cqrs,
            id,
            CatalogCommand::Archive {
                by: caller.caller(),
            },
            &caller.metadata(),
        )
        .await?;
    Ok(done.accepted(id))
}

/// Lists products.
#[utoipa::path(get, path = "/products", tag = "catalog", params(CatalogFilter, Page),
    responses((status = 200, body = CatalogList), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
async fn list_products(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiQuery(filter): ApiQuery<CatalogFilter>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<CatalogList>> {
    Ok(Json(
        list::<ProductKind>(&state, &caller, filter, page).await?,
    ))
}

/// Adds a product (admins).
#[utoipa::path(post, path = "/products", tag = "catalog", request_body = NewCatalogItem,
    responses((status = 201, body = Accepted), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn create_product(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<NewCatalogItem>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let (id, done) = create::<ProductKind>(
        &state,
        &state.bus.products,
        &caller.metadata(),
        caller.caller(),
        body,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(done.accepted(id))))
}

/// One product.
#[utoipa::path(get, path = "/products/{id}", tag = "catalog", params(("id" = Uuid, Path)),
    responses((status = 200, body = CatalogItem), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn get_product(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<CatalogItem>> {
    Ok(Json(get::<ProductKind>(&state, &caller, id).await?))
}

/// Edits a product's name, description or link (admins).
#[utoipa::path(patch, path = "/products/{id}", tag = "catalog", params(("id" = Uuid, Path)), request_body = CatalogUpdate,
    responses((status = 200, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn update_product(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<CatalogUpdate>,
) -> ApiResult<Json<Accepted>> {
    Ok(Json(
        update::<ProductKind>(&state, &state.bus.products, &caller, id, body).await?,
    ))
}

/// Archives a product (admins): it can no longer be chosen for new projects.
#[utoipa::path(delete, path = "/products/{id}", tag = "catalog", params(("id" = Uuid, Path)),
    responses((status = 200, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn archive_product(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Accepted>> {
    Ok(Json(
        archive::<ProductKind>(&state, &state.bus.products, &caller, id).await?,
    ))
}

/// Lists sales channels.
#[utoipa::path(get, path = "/channels", tag = "catalog", params(CatalogFilter, Page),
    responses((status = 200, body = CatalogList), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
async fn list_channels(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiQuery(filter): ApiQuery<CatalogFilter>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<CatalogList>> {
    Ok(Json(
        list::<SalesChannelKind>(&state, &caller, filter, page).await?,
    ))
}

/// Adds a sales channel (admins).
#[utoipa::path(post, path = "/channels", tag = "catalog", request_body = NewCatalogItem,
    responses((status = 201, body = Accepted), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn create_channel(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<NewCatalogItem>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let (id, done) = create::<SalesChannelKind>(
        &state,
        &state.bus.channels,
        &caller.metadata(),
        caller.caller(),
        body,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(done.accepted(id))))
}

/// One sales channel.
#[utoipa::path(get, path = "/channels/{id}", tag = "catalog", params(("id" = Uuid, Path)),
    responses((status = 200, body = CatalogItem), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn get_channel(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<CatalogItem>> {
    Ok(Json(get::<SalesChannelKind>(&state, &caller, id).await?))
}

/// Edits a sales channel's name, description or link (admins).
#[utoipa::path(patch, path = "/channels/{id}", tag = "catalog", params(("id" = Uuid, Path)), request_body = CatalogUpdate,
    responses((status = 200, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn update_channel(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<CatalogUpdate>,
) -> ApiResult<Json<Accepted>> {
    Ok(Json(
        update::<SalesChannelKind>(&state, &state.bus.channels, &caller, id, body).await?,
    ))
}

/// Archives a sales channel (admins): it can no longer be attached to projects.
#[utoipa::path(delete, path = "/channels/{id}", tag = "catalog", params(("id" = Uuid, Path)),
    responses((status = 200, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn archive_channel(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Accepted>> {
    Ok(Json(
        archive::<SalesChannelKind>(&state, &state.bus.channels, &caller, id).await?,
    ))
}
