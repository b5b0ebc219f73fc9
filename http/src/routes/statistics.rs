//! Statistics for managers and admins: what sells, through which channel, to which clients,
//! with which prompt, and how generation goes. Read from the `statistics` subscriber's
//! pre-aggregated daily rows, never by grouping the requests themselves.
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use domain::Role;
use projections::read_models::statistics::latency_of_bucket;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::export::{download, Cell, Format, Table};
use crate::extract::{ApiPath, ApiQuery, ReadAfter};
use crate::routes::projects::project_role;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(project_statistics))
        .routes(routes!(statistics))
}

/// The query of a statistics request (documentation only: the parameters are read as pairs,
/// because `project_id` may repeat).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct StatisticsQuery {
    /// Projects to count (repeatable); default: every project the caller manages (admins: all).
    project_id: Option<Vec<Uuid>>,
    /// First day counted (UTC, `YYYY-MM-DD`), inclusive.
    from: Option<NaiveDate>,
    /// Last day counted (UTC, `YYYY-MM-DD`), inclusive.
    to: Option<NaiveDate>,
    /// `json` (default), `csv` (one section per figure) or `xlsx` (one sheet per figure).
    format: Option<String>,
}

/// The parameters of a statistics request, checked.
struct Selection {
    projects: Vec<Uuid>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    format: Format,
}

fn parse_selection(pairs: Vec<(String, String)>, projects_allowed: bool) -> ApiResult<Selection> {
    let mut selection = Selection {
        projects: Vec::new(),
        from: None,
        to: None,
        format: Format::Json,
    };
    let mut format = None;
    for (key, value) in pairs {
        match key.as_str() {
            "project_id" if projects_allowed => {
                let id = Uuid::parse_str(value.trim()).map_err(|_| {
                    ApiError::bad_request("project_id", "project_id: must be a UUID")
                })?;
                if !selection.projects.contains(&id) {
                    selection.projects.push(id);
                }
            }
            "from" | "to" => {
                let day = NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d").map_err(|_| {
                    ApiError::bad_request(key.clone(), format!("{key}: a date such as 2026-11-24"))
                })?;
                if key == "from" {
                    selection.from = Some(day);
                } else {
                    selection.to = Some(day);
                }
            }
            "format" => format = Some(value),
            // Read by `ReadAfter`.
            "consistency_token" => {}
            other => {
                return Err(ApiError::bad_request(
                    other,
                    format!("{other}: unknown parameter; expected project_id, from, to, format"),
                ))
            }
        }
    }
    if let (Some(from), Some(to)) = (selection.from, selection.to) {
        if from > to {
            return Err(ApiError::bad_request("from", "from: must not be after to"));
        }
    }
    selection.format = Format::parse(format.as_deref())?;
    Ok(selection)
}

/// Requests, successes and ratings of the chosen projects over the chosen days.
#[derive(Serialize, ToSchema)]
pub struct Statistics {
    /// The projects counted.
    pub projects: Vec<Uuid>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub totals: Totals,
    pub requests_by_product: Vec<ProductCount>,
    /// Requests whose outcome is `sold` or `interest`.
    pub successes_by_product: Vec<ProductCount>,
    pub channel_popularity: Vec<ChannelPopularity>,
    pub requests_by_channel: Vec<ChannelCount>,
    pub requests_by_outcome: Vec<OutcomeCount>,
    pub conversion: Vec<Conversion>,
    pub ratings: Vec<Ratings>,
    pub reviews: Vec<Reviews>,
    pub generation: Vec<GenerationDay>,
}

#[derive(Serialize, ToSchema)]
pub struct Totals {
    /// People in the projects now (each once, whatever the dates).
    pub members: i64,
    /// Channels attached to the projects now (each once, whatever the dates).
    pub channels: i64,
    /// Requests created in the date range.
    pub requests: i64,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct ProductCount {
    pub product_id: Uuid,
    pub product: String,
    pub count: i64,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct ChannelPopularity {
    pub channel_id: Uuid,
    pub channel: String,
    /// How many of the chosen projects have it attached.
    pub projects: i64,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct ChannelCount {
    pub channel_id: Uuid,
    pub channel: String,
    pub count: i64,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct OutcomeCount {
    pub success_type: String,
    pub count: i64,
}

/// What became of the requests of one channel, client cluster and prompt version (the version
/// of the request's newest text; null: no text asked for yet). Rates come with 95% Wilson
/// intervals; all are null when there are no requests.
#[derive(Serialize, ToSchema)]
pub struct Conversion {
    pub channel_id: Uuid,
    pub channel: String,
    /// The client's `super_clust`; null when the client has none.
    pub cluster: Option<String>,
    pub prompt_version: Option<i32>,
    pub requests: i64,
    pub sold: i64,
    pub interest: i64,
    /// Requests with the outcome `negative_reaction`.
    pub negative: i64,
    pub sold_rate: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// Share of `sold` + `interest`.
    pub success_rate: Option<f64>,
    pub success_ci_low: Option<f64>,
    pub success_ci_high: Option<f64>,
    pub negative_rate: Option<f64>,
    pub negative_ci_low: Option<f64>,
    pub negative_ci_high: Option<f64>,
}

/// Ratings of the offers of one channel and prompt version, generated in the date range.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Ratings {
    pub channel_id: Uuid,
    pub channel: String,
    pub prompt_version: i32,
    pub ok: i64,
    pub error: i64,
    pub revision: i64,
    /// Offers nobody has rated yet.
    pub unrated: i64,
}

/// Reviews from Argilla of the offers of one channel and prompt version, generated in the date
/// range: each offer's newest review, once.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Reviews {
    pub channel_id: Uuid,
    pub channel: String,
    pub prompt_version: i32,
    /// Offers reviewed.
    pub reviewed: i64,
    pub ok: i64,
    pub error: i64,
    pub revision: i64,
    /// Reviews that came with a corrected text.
    pub corrected: i64,
    /// Reviews that came with a 1–5 rating, and the sum of those ratings.
    pub rated: i64,
    pub rating_sum: i64,
    /// `rating_sum / rated`; null when no review was rated.
    #[sqlx(skip)]
    pub mean_rating: Option<f64>,
}

/// Generation work of one day (UTC).
#[derive(Serialize, ToSchema)]
pub struct GenerationDay {
    pub day: NaiveDate,
    /// Texts generated.
    pub generated: i64,
    /// Failed attempts, retried or not.
    pub failures: i64,
    /// Generations that failed for good.
    pub permanent_failures: i64,
    /// Median time to generate one text, in ms, read from a histogram with buckets 5% wide:
    /// within 2.5% of the exact nearest-rank median.
    pub median_latency_ms: Option<f64>,
    /// 95th percentile, with the same precision.
    pub p95_latency_ms: Option<f64>,
    /// Generated tokens over the time spent generating them (per text, summed).
    pub tokens_per_second: Option<f64>,
}

/// The 95% Wilson score interval of `k` successes in `n` trials.
pub fn wilson_interval(k: i64, n: i64) -> Option<(f64, f64)> {
    if n <= 0 {
        return None;
    }
    const Z: f64 = 1.959_963_984_540_054;
    let n = n as f64;
    let p = k as f64 / n;
    let z2 = Z * Z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    // Exactly 0 and 1 at the ends, where rounding would leave 1e-17 or 0.9999….
    let low = if k == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let high = if k as f64 == n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    Some((low, high))
}

/// The projects a caller may read statistics of: the ones asked for, each checked (outsiders
/// 404, performers 403), or by default every project they manage (admins: every project).
async fn chosen_projects(
    state: &AppState,
    caller: &Authenticated,
    asked: Vec<Uuid>,
) -> ApiResult<Vec<Uuid>> {
    if asked.is_empty() {
        let rows: Vec<(Uuid,)> = if caller.is_admin {
            sqlx::query_as("SELECT id FROM projects ORDER BY id")
                .fetch_all(&state.pool)
                .await?
        } else {
            sqlx::query_as(
                "SELECT project_id FROM project_members WHERE user_id = $1 AND role = 'manager' ORDER BY project_id",
            )
            .bind(caller.user_id)
            .fetch_all(&state.pool)
            .await?
        };
        return Ok(rows.into_iter().map(|(id,)| id).collect());
    }
    for &id in &asked {
        match project_role(state, caller, id).await? {
            Role::Manager => {}
            _ => {
                return Err(ApiError::Forbidden(format!(
                    "project {id}: only its managers and admins may read its statistics"
                )))
            }
        }
    }
    let mut asked = asked;
    asked.sort();
    Ok(asked)
}

/// Which rows of a table with day and month rows make up a date range: month rows for the whole
/// months (`day` in [$2, $3)), day rows for the days before them ([$4, $5)) and after them
/// ([$6, $7)). Plain ranges, so each part is a range scan of the primary key.
const PERIODS: &str = "((period = 'month' AND day >= $2 AND day < $3)
      OR (period = 'day' AND day >= $4 AND day < $5) OR (period = 'day' AND day >= $6 AND day < $7))";

// PostgreSQL's dates reach further both ways; these stand for "no limit".
fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or(NaiveDate::MIN)
}

fn last_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or(NaiveDate::MAX)
}

/// `[from, to]` as a half-open range of days.
fn day_range(from: Option<NaiveDate>, to: Option<NaiveDate>) -> (NaiveDate, NaiveDate) {
    (
        from.unwrap_or_else(first_day),
        to.and_then(|d| d.succ_opt()).unwrap_or_else(last_day),
    )
}

/// The half-open ranges [`PERIODS`] binds: whole months, days before them, days after them.
fn period_ranges(from: Option<NaiveDate>, to: Option<NaiveDate>) -> [NaiveDate; 6] {
    let (first, last) = (first_day(), last_day());
    let (start, end) = day_range(from, to);
    let (month_from, month_to, any_month) = whole_months(from, to);
    if !any_month {
        return [first, first, start, end, first, first];
    }
    let month_from = month_from.unwrap_or(first);
    let month_to = month_to.unwrap_or(last);
    [month_from, month_to, start, month_from, month_to, end]
}

/// The figures, summed from the daily rows of the chosen projects and days.
pub async fn compute(
    pool: &sqlx::PgPool,
    projects: &[Uuid],
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> anyhow::Result<Statistics> {
    use anyhow::Context;
    let days = "project_id = ANY($1) AND day >= $2 AND day < $3";
    let (start, end) = day_range(from, to);
    let (members,): (i64,) = sqlx::query_as(
        "SELECT count(DISTINCT user_id) FROM statistics_project_members WHERE project_id = ANY($1)",
    )
    .bind(projects)
    .fetch_one(pool)
    .await
    .context("counting members")?;
    let (channels,): (i64,) = sqlx::query_as(
        "SELECT count(DISTINCT channel_id) FROM statistics_project_channels WHERE project_id = ANY($1)",
    )
    .bind(projects)
    .fetch_one(pool)
    .await
    .context("counting channels")?;

    // Everything about requests comes from one pass over the pre-aggregated rows: whole months
    // of the range from month rows, the days around them from day rows.
    #[derive(sqlx::FromRow)]
    struct Group {
        project_id: Uuid,
        channel_id: Uuid,
        cluster: String,
        prompt_version: i32,
        requests: i64,
        sold: i64,
        interest: i64,
        negative_reaction: i64,
        positive_reaction: i64,
        reflection: i64,
        undefined: i64,
    }
    // A question about every project reads the rows summed per product (requests) or over all
    // projects (generation): the same figures from far fewer rows.
    let (others,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM statistics_projects WHERE project_id <> ALL($1)")
            .bind(projects)
            .fetch_one(pool)
            .await
            .context("checking for other projects")?;
    let every_project = others == 0 && !projects.is_empty();
    let products: Vec<Uuid> = if every_project {
        sqlx::query_as::<_, (Uuid,)>("SELECT DISTINCT product_id FROM statistics_projects")
            .fetch_all(pool)
            .await
            .context("reading the products")?
            .into_iter()
            .map(|(id,)| id)
            .collect()
    } else {
        Vec::new()
    };
    let (table, owner, owners) = if every_project {
        (
            "statistics_requests_by_product",
            "product_id",
            &products[..],
        )
    } else {
        ("statistics_requests", "project_id", projects)
    };
    let ranges = period_ranges(from, to);
    let groups: Vec<Group> = sqlx::query_as(&format!(
        "SELECT {owner} AS project_id, channel_id, cluster, prompt_version, sum(requests)::int8 AS requests,
                sum(sold)::int8 AS sold, sum(interest)::int8 AS interest,
                sum(negative_reaction)::int8 AS negative_reaction, sum(positive_reaction)::int8 AS positive_reaction,
                sum(reflection)::int8 AS reflection, sum(undefined)::int8 AS undefined
           FROM {table}
          WHERE {owner} = ANY($1) AND {PERIODS}
          GROUP BY {owner}, channel_id, cluster, prompt_version
         HAVING sum(requests) <> 0"
    ))
    .bind(owners)
    .bind(ranges[0])
    .bind(ranges[1])
    .bind(ranges[2])
    .bind(ranges[3])
    .bind(ranges[4])
    .bind(ranges[5])
    .fetch_all(pool)
    .await
    .context("summing requests")?;

    let names: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, name FROM sales_channels UNION ALL SELECT id, name FROM products",
    )
    .fetch_all(pool)
    .await
    .context("reading catalog names")?;
    let names: std::collections::HashMap<Uuid, String> = names.into_iter().collect();
    let name_of = |id: &Uuid| names.get(id).cloned().unwrap_or_default();
    let product_rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT project_id, product_id FROM statistics_projects WHERE project_id = ANY($1)",
    )
    .bind(projects)
    .fetch_all(pool)
    .await
    .context("reading the projects' products")?;
    let mut product_of: std::collections::HashMap<Uuid, Uuid> = product_rows.into_iter().collect();
    // Rows summed per product carry the product where the project would be.
    product_of.extend(products.iter().map(|p| (*p, *p)));

    use std::collections::BTreeMap;
    let mut total = 0i64;
    let mut by_product: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
    let mut by_channel: BTreeMap<Uuid, i64> = BTreeMap::new();
    let mut by_outcome: BTreeMap<String, i64> = BTreeMap::new();
    let mut conversion: BTreeMap<(Uuid, String, i32), [i64; 4]> = BTreeMap::new();
    for g in &groups {
        total += g.requests;
        if let Some(product) = product_of.get(&g.project_id) {
            let entry = by_product.entry(*product).or_default();
            entry.0 += g.requests;
            entry.1 += g.sold + g.interest;
        }
        *by_channel.entry(g.channel_id).or_default() += g.requests;
        for (outcome, count) in [
            ("sold", g.sold),
            ("interest", g.interest),
            ("negative_reaction", g.negative_reaction),
            ("positive_reaction", g.positive_reaction),
            ("reflection", g.reflection),
            ("undefined", g.undefined),
        ] {
            if count != 0 {
                *by_outcome.entry(outcome.to_string()).or_default() += count;
            }
        }
        let cell = conversion
            .entry((g.channel_id, g.cluster.clone(), g.prompt_version))
            .or_default();
        cell[0] += g.requests;
        cell[1] += g.sold;
        cell[2] += g.interest;
        cell[3] += g.negative_reaction;
    }
    let product_counts = |success: bool| {
        let mut counts: Vec<ProductCount> = by_product
            .iter()
            .map(|(id, (all, won))| ProductCount {
                product_id: *id,
                product: name_of(id),
                count: if success { *won } else { *all },
            })
            .collect();
        counts.sort_by(|a, b| b.count.cmp(&a.count).then(a.product.cmp(&b.product)));
        counts
    };
    let rate = |k: i64, n: i64| (n > 0).then(|| k as f64 / n as f64);

    let mut requests_by_channel: Vec<ChannelCount> = by_channel
        .iter()
        .map(|(id, count)| ChannelCount {
            channel_id: *id,
            channel: name_of(id),
            count: *count,
        })
        .collect();
    requests_by_channel.sort_by(|a, b| b.count.cmp(&a.count).then(a.channel.cmp(&b.channel)));
    let mut requests_by_outcome: Vec<OutcomeCount> = by_outcome
        .into_iter()
        .map(|(success_type, count)| OutcomeCount {
            success_type,
            count,
        })
        .collect();
    requests_by_outcome.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.success_type.cmp(&b.success_type))
    });

    let conversion = conversion
        .into_iter()
        .map(
            |((channel_id, cluster, prompt_version), [requests, sold, interest, negative])| {
                let sold_ci = wilson_interval(sold, requests);
                let success_ci = wilson_interval(sold + interest, requests);
                let negative_ci = wilson_interval(negative, requests);
                Conversion {
                    channel_id,
                    channel: name_of(&channel_id),
                    cluster: (!cluster.is_empty()).then_some(cluster),
                    prompt_version: (prompt_version != 0).then_some(prompt_version),
                    requests,
                    sold,
                    interest,
                    negative,
                    sold_rate: rate(sold, requests),
                    ci_low: sold_ci.map(|c| c.0),
                    ci_high: sold_ci.map(|c| c.1),
                    success_rate: rate(sold + interest, requests),
                    success_ci_low: success_ci.map(|c| c.0),
                    success_ci_high: success_ci.map(|c| c.1),
                    negative_rate: rate(negative, requests),
                    negative_ci_low: negative_ci.map(|c| c.0),
                    negative_ci_high: negative_ci.map(|c| c.1),
                }
            },
        )
        .collect();

    let mut channel_popularity: Vec<ChannelPopularity> = sqlx::query_as(
        "SELECT c.channel_id, coalesce(s.name, '') AS channel, count(*)::int8 AS projects
           FROM statistics_project_channels c LEFT JOIN sales_channels s ON s.id = c.channel_id
          WHERE c.project_id = ANY($1) GROUP BY c.channel_id, s.name",
    )
    .bind(projects)
    .fetch_all(pool)
    .await
    .context("counting projects per channel")?;
    channel_popularity.sort_by(|a, b| b.projects.cmp(&a.projects).then(a.channel.cmp(&b.channel)));

    let ratings: Vec<Ratings> = sqlx::query_as(&format!(
        "SELECT r.channel_id, coalesce(s.name, '') AS channel, r.prompt_version,
                sum(r.ok)::int8 AS ok, sum(r.error)::int8 AS error, sum(r.revision)::int8 AS revision,
                sum(r.undefined)::int8 AS unrated
           FROM statistics_ratings r LEFT JOIN sales_channels s ON s.id = r.channel_id
          WHERE r.project_id = ANY($1) AND {PERIODS}
          GROUP BY r.channel_id, s.name, r.prompt_version
         HAVING sum(r.ok + r.error + r.revision + r.undefined) <> 0
          ORDER BY s.name, r.channel_id, r.prompt_version"
    ))
    .bind(projects)
    .bind(ranges[0])
    .bind(ranges[1])
    .bind(ranges[2])
    .bind(ranges[3])
    .bind(ranges[4])
    .bind(ranges[5])
    .fetch_all(pool)
    .await
    .context("summing ratings")?;

    let mut reviews: Vec<Reviews> = sqlx::query_as(&format!(
        "SELECT r.channel_id, coalesce(s.name, '') AS channel, r.prompt_version,
                sum(r.reviewed)::int8 AS reviewed, sum(r.ok)::int8 AS ok, sum(r.error)::int8 AS error,
                sum(r.revision)::int8 AS revision, sum(r.corrected)::int8 AS corrected,
                sum(r.rating_count)::int8 AS rated, sum(r.rating_sum)::int8 AS rating_sum
           FROM statistics_reviews r LEFT JOIN sales_channels s ON s.id = r.channel_id
          WHERE r.project_id = ANY($1) AND {PERIODS}
          GROUP BY r.channel_id, s.name, r.prompt_version
         HAVING sum(r.reviewed) <> 0
          ORDER BY s.name, r.channel_id, r.prompt_version"
    ))
    .bind(projects)
    .bind(ranges[0])
    .bind(ranges[1])
    .bind(ranges[2])
    .bind(ranges[3])
    .bind(ranges[4])
    .bind(ranges[5])
    .fetch_all(pool)
    .await
    .context("summing reviews")?;
    for row in &mut reviews {
        row.mean_rating = (row.rated > 0).then(|| row.rating_sum as f64 / row.rated as f64);
    }

    let nil = [Uuid::nil()];
    let generation_owners: &[Uuid] = if every_project { &nil } else { projects };
    let work: Vec<(NaiveDate, i64, i64, i64, i64, i64)> = sqlx::query_as(&format!(
        "SELECT day, sum(generated)::int8, sum(failures)::int8, sum(permanent_failures)::int8,
                sum(completion_tokens)::int8, sum(duration_ms)::int8
           FROM statistics_generation_daily WHERE {days} GROUP BY day ORDER BY day"
    ))
    .bind(generation_owners)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await
    .context("summing generation work")?;
    // Each day's histograms, one row per project and day (its buckets from `low` on), summed
    // here; the nearest-rank median and p95 come from the sum.
    let histograms: Vec<(NaiveDate, i32, Vec<Option<i64>>)> = sqlx::query_as(&format!(
        "SELECT day, array_lower(messages, 1), messages[:] FROM statistics_latency WHERE {days}"
    ))
    .bind(generation_owners)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await
    .context("reading latency histograms")?;
    let mut latencies = latency_percentiles(histograms);
    let generation = work
        .into_iter()
        .map(
            |(day, generated, failures, permanent_failures, tokens, duration_ms)| {
                let (median, p95) = latencies.remove(&day).unwrap_or_default();
                GenerationDay {
                    day,
                    generated,
                    failures,
                    permanent_failures,
                    median_latency_ms: median.map(latency_of_bucket),
                    p95_latency_ms: p95.map(latency_of_bucket),
                    tokens_per_second: (duration_ms > 0)
                        .then(|| tokens as f64 * 1000.0 / duration_ms as f64),
                }
            },
        )
        .collect();

    Ok(Statistics {
        projects: projects.to_vec(),
        from,
        to,
        totals: Totals {
            members,
            channels,
            requests: total,
        },
        requests_by_product: product_counts(false),
        successes_by_product: product_counts(true),
        channel_popularity,
        requests_by_channel,
        requests_by_outcome,
        conversion,
        ratings,
        reviews,
        generation,
    })
}

/// Each day's nearest-rank median and p95 latency buckets, from its histograms (a day's rows,
/// one per project: the first bucket's number and the counts from it on).
fn latency_percentiles(
    histograms: Vec<(NaiveDate, i32, Vec<Option<i64>>)>,
) -> std::collections::HashMap<NaiveDate, (Option<i32>, Option<i32>)> {
    let mut days: std::collections::BTreeMap<NaiveDate, Vec<i64>> = Default::default();
    for (day, low, counts) in histograms {
        let Ok(low) = usize::try_from(low) else {
            continue;
        };
        let sum = days.entry(day).or_default();
        if sum.len() < low + counts.len() {
            sum.resize(low + counts.len(), 0);
        }
        for (i, n) in counts.into_iter().enumerate() {
            sum[low + i] += n.unwrap_or(0);
        }
    }
    days.into_iter()
        .filter_map(|(day, counts)| {
            let total: i64 = counts.iter().sum();
            if total <= 0 {
                return None;
            }
            let rank = |q: f64| ((q * total as f64).ceil() as i64).max(1);
            let bucket_of = |rank: i64| {
                let mut seen = 0;
                counts.iter().position(|n| {
                    seen += n;
                    seen >= rank
                })
            };
            let as_bucket = |b: Option<usize>| b.and_then(|b| i32::try_from(b).ok());
            Some((
                day,
                (
                    as_bucket(bucket_of(rank(0.5))),
                    as_bucket(bucket_of(rank(0.95))),
                ),
            ))
        })
        .collect()
}

/// The whole months inside `[from, to]`: the first month's first day, the day after the last
/// month, and whether there is any.
fn whole_months(
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> (Option<NaiveDate>, Option<NaiveDate>, bool) {
    use chrono::{Datelike, Months};
    let first_of = |d: NaiveDate| d.with_day(1).unwrap_or(d);
    let start = from.map(|d| {
        if d.day() == 1 {
            d
        } else {
            first_of(d).checked_add_months(Months::new(1)).unwrap_or(d)
        }
    });
    let end = to.map(|d| first_of(d.succ_opt().unwrap_or(d)));
    let any = match (start, end) {
        (Some(s), Some(e)) => s < e,
        _ => true,
    };
    (start, end, any)
}

fn uuid_cell(id: &Uuid) -> Cell {
    Cell::Text(id.to_string())
}

/// One table per figure, for CSV and XLSX.
pub fn tables(s: &Statistics) -> Vec<Table> {
    let headers = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let products = |name: &str, counts: &[ProductCount]| Table {
        name: name.into(),
        headers: headers(&["product_id", "product", "count"]),
        rows: counts
            .iter()
            .map(|c| {
                vec![
                    uuid_cell(&c.product_id),
                    c.product.as_str().into(),
                    c.count.into(),
                ]
            })
            .collect(),
    };
    vec![
        Table {
            name: "totals".into(),
            headers: headers(&["members", "channels", "requests"]),
            rows: vec![vec![
                s.totals.members.into(),
                s.totals.channels.into(),
                s.totals.requests.into(),
            ]],
        },
        products("requests_by_product", &s.requests_by_product),
        products("successes_by_product", &s.successes_by_product),
        Table {
            name: "channel_popularity".into(),
            headers: headers(&["channel_id", "channel", "projects"]),
            rows: s
                .channel_popularity
                .iter()
                .map(|c| {
                    vec![
                        uuid_cell(&c.channel_id),
                        c.channel.as_str().into(),
                        c.projects.into(),
                    ]
                })
                .collect(),
        },
        Table {
            name: "requests_by_channel".into(),
            headers: headers(&["channel_id", "channel", "count"]),
            rows: s
                .requests_by_channel
                .iter()
                .map(|c| {
                    vec![
                        uuid_cell(&c.channel_id),
                        c.channel.as_str().into(),
                        c.count.into(),
                    ]
                })
                .collect(),
        },
        Table {
            name: "requests_by_outcome".into(),
            headers: headers(&["success_type", "count"]),
            rows: s
                .requests_by_outcome
                .iter()
                .map(|c| vec![c.success_type.as_str().into(), c.count.into()])
                .collect(),
        },
        Table {
            name: "conversion".into(),
            headers: headers(&[
                "channel_id",
                "channel",
                "cluster",
                "prompt_version",
                "requests",
                "sold",
                "interest",
                "negative",
                "sold_rate",
                "ci_low",
                "ci_high",
                "success_rate",
                "success_ci_low",
                "success_ci_high",
                "negative_rate",
                "negative_ci_low",
                "negative_ci_high",
            ]),
            rows: s
                .conversion
                .iter()
                .map(|c| {
                    vec![
                        uuid_cell(&c.channel_id),
                        c.channel.as_str().into(),
                        c.cluster.clone().into(),
                        c.prompt_version.map(i64::from).into(),
                        c.requests.into(),
                        c.sold.into(),
                        c.interest.into(),
                        c.negative.into(),
                        c.sold_rate.into(),
                        c.ci_low.into(),
                        c.ci_high.into(),
                        c.success_rate.into(),
                        c.success_ci_low.into(),
                        c.success_ci_high.into(),
                        c.negative_rate.into(),
                        c.negative_ci_low.into(),
                        c.negative_ci_high.into(),
                    ]
                })
                .collect(),
        },
        Table {
            name: "ratings".into(),
            headers: headers(&[
                "channel_id",
                "channel",
                "prompt_version",
                "ok",
                "error",
                "revision",
                "unrated",
            ]),
            rows: s
                .ratings
                .iter()
                .map(|r| {
                    vec![
                        uuid_cell(&r.channel_id),
                        r.channel.as_str().into(),
                        i64::from(r.prompt_version).into(),
                        r.ok.into(),
                        r.error.into(),
                        r.revision.into(),
                        r.unrated.into(),
                    ]
                })
                .collect(),
        },
        Table {
            name: "reviews".into(),
            headers: headers(&[
                "channel_id",
                "channel",
                "prompt_version",
                "reviewed",
                "ok",
                "error",
                "revision",
                "corrected",
                "rated",
                "rating_sum",
                "mean_rating",
            ]),
            rows: s
                .reviews
                .iter()
                .map(|r| {
                    vec![
                        uuid_cell(&r.channel_id),
                        r.channel.as_str().into(),
                        i64::from(r.prompt_version).into(),
                        r.reviewed.into(),
                        r.ok.into(),
                        r.error.into(),
                        r.revision.into(),
                        r.corrected.into(),
                        r.rated.into(),
                        r.rating_sum.into(),
                        r.mean_rating.into(),
                    ]
                })
                .collect(),
        },
        Table {
            name: "generation".into(),
            headers: headers(&[
                "day",
                "generated",
                "failures",
                "permanent_failures",
                "median_latency_ms",
                "p95_latency_ms",
                "tokens_per_second",
            ]),
            rows: s
                .generation
                .iter()
                .map(|g| {
                    vec![
                        g.day.to_string().into(),
                        g.generated.into(),
                        g.failures.into(),
                        g.permanent_failures.into(),
                        g.median_latency_ms.into(),
                        g.p95_latency_ms.into(),
                        g.tokens_per_second.into(),
                    ]
                })
                .collect(),
        },
    ]
}

async fn answer(
    state: &AppState,
    caller: &Authenticated,
    selection: Selection,
) -> ApiResult<Response> {
    let projects = chosen_projects(state, caller, selection.projects).await?;
    let figures = compute(&state.pool, &projects, selection.from, selection.to).await?;
    match selection.format {
        Format::Json => Ok(Json(figures).into_response()),
        format => download(format, "statistics", &tables(&figures)),
    }
}

/// Statistics of one project (its managers and admins).
#[utoipa::path(get, path = "/projects/{id}/statistics", tag = "statistics",
    params(("id" = Uuid, Path),
           ("from" = Option<NaiveDate>, Query, description = "first day counted (UTC), inclusive"),
           ("to" = Option<NaiveDate>, Query, description = "last day counted (UTC), inclusive"),
           ("format" = Option<String>, Query, description = "json (default), csv or xlsx")),
    responses((status = 200, body = Statistics, description = "JSON, or with format=csv|xlsx a file with one section or sheet per figure"),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn project_statistics(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let mut selection = parse_selection(pairs, false)?;
    selection.projects = vec![id];
    answer(&state, &caller, selection).await
}

/// Statistics of several projects together (their managers and admins).
#[utoipa::path(get, path = "/statistics", tag = "statistics", params(StatisticsQuery),
    responses((status = 200, body = Statistics, description = "JSON, or with format=csv|xlsx a file with one section or sheet per figure"),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn statistics(
    State(state): State<AppState>,
    caller: Authenticated,
    _fresh: ReadAfter,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> ApiResult<Response> {
    answer(&state, &caller, parse_selection(pairs, true)?).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_a_worked_example() {
        // 8 successes of 10: the textbook interval is about [0.490, 0.943].
        let (low, high) = wilson_interval(8, 10).expect("interval");
        assert!((low - 0.4902).abs() < 1e-3, "{low}");
        assert!((high - 0.9433).abs() < 1e-3, "{high}");
        assert_eq!(wilson_interval(0, 0), None);
        let (low, high) = wilson_interval(0, 5).expect("interval");
        assert_eq!(low, 0.0);
        assert!(high > 0.4 && high < 0.45, "{high}");
    }

    #[test]
    fn whole_months_leave_the_partial_ones_to_day_rows() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        assert_eq!(
            whole_months(Some(d("2026-01-15")), Some(d("2026-04-30"))),
            (Some(d("2026-02-01")), Some(d("2026-05-01")), true)
        );
        assert_eq!(
            whole_months(Some(d("2026-03-01")), Some(d("2026-03-30"))),
            (Some(d("2026-03-01")), Some(d("2026-03-01")), false)
        );
        assert_eq!(
            whole_months(Some(d("2026-03-02")), Some(d("2026-03-31"))),
            (Some(d("2026-04-01")), Some(d("2026-04-01")), false)
        );
        assert_eq!(whole_months(None, None), (None, None, true));
        assert_eq!(
            whole_months(None, Some(d("2026-02-28"))),
            (None, Some(d("2026-03-01")), true)
        );
    }

    #[test]
    fn a_range_reads_whole_months_from_month_rows_and_the_rest_from_day_rows() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        assert_eq!(
            period_ranges(Some(d("2026-01-15")), Some(d("2026-04-30"))),
            [
                d("2026-02-01"),
                d("2026-05-01"),
                d("2026-01-15"),
                d("2026-02-01"),
                d("2026-05-01"),
                d("2026-05-01")
            ]
        );
        let (first, last) = (d("0001-01-01"), d("9999-12-31"));
        assert_eq!(
            period_ranges(None, None),
            [first, last, first, first, last, last]
        );
        assert_eq!(
            period_ranges(Some(d("2026-03-02")), Some(d("2026-03-31"))),
            [first, first, d("2026-03-02"), d("2026-04-01"), first, first]
        );
    }

    #[test]
    fn a_days_percentiles_come_from_the_sum_of_its_projects_histograms() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        let found = latency_percentiles(vec![
            // One project: 3 offers in bucket 10, a hole, 1 in bucket 12.
            (d("2026-03-01"), 10, vec![Some(3), None, Some(1)]),
            // Another: 16 offers in bucket 11, 1 in bucket 40.
            (d("2026-03-01"), 11, {
                let mut v = vec![Some(16)];
                v.extend(std::iter::repeat_n(None, 28));
                v.push(Some(1));
                v
            }),
            (d("2026-03-02"), 0, vec![Some(0)]),
        ]);
        // 21 offers: the median is the 11th (bucket 11), the p95 the 20th (bucket 12).
        assert_eq!(found.get(&d("2026-03-01")), Some(&(Some(11), Some(12))));
        // A day whose histograms hold nothing has no percentiles.
        assert_eq!(found.get(&d("2026-03-02")), None);
    }
}
