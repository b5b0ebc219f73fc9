//! The statistics query over 1,000,000 client requests: the pre-aggregated rows the `statistics`
//! subscriber keeps, against the same figures grouped from the raw `client_requests` rows (the
//! old way), on the same data.
//!
//! ```sh
//! source scripts/test-cluster.sh
//! cargo run --release -p offerflow-http --example statistics_bench
//! ```
//! It makes a database of its own on the cluster in OFFERFLOW_TEST_DATABASE_URL (else
//! DATABASE_URL), fills it with SQL (50 projects of 8 products, 2 of 4 channels each, 8 client
//! clusters, 3 prompt versions, 180 days, outcomes and generations at random with a fixed seed),
//! and times each query. STATISTICS_BENCH_REQUESTS changes the number of requests;
//! STATISTICS_BENCH_KEEP keeps the database afterwards, to look at query plans.
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::NaiveDate;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

const FILL: &[&str] = &[
    "SELECT setseed(0.42)",
    "INSERT INTO products (id, key, name, description, created_at, updated_at)
     SELECT gen_random_uuid(), 'P' || i, 'Продукт ' || i, '', now(), now() FROM generate_series(0, 7) i",
    "INSERT INTO sales_channels (id, key, name, description, created_at, updated_at)
     SELECT gen_random_uuid(), 'C' || i, 'Канал ' || i, '', now(), now() FROM generate_series(0, 3) i",
    "CREATE TABLE bench_projects AS
     SELECT n, gen_random_uuid() AS id,
            (SELECT id FROM products ORDER BY key OFFSET n % 8 LIMIT 1) AS product_id
       FROM generate_series(0, 49) n",
    "CREATE TABLE bench_channels AS SELECT array_agg(id ORDER BY key) AS c FROM sales_channels",
    "INSERT INTO projects (id, product_id, name, description, created_by, created_at, updated_at)
     SELECT id, product_id, 'Проект ' || n, '', gen_random_uuid(), now(), now() FROM bench_projects",
    "INSERT INTO statistics_projects SELECT id, product_id FROM bench_projects",
    "INSERT INTO statistics_project_channels
     SELECT p.id, c.c[1 + (p.n + k) % 4] FROM bench_projects p, bench_channels c, generate_series(0, 1) k",
    "INSERT INTO statistics_project_members
     SELECT p.id, gen_random_uuid() FROM bench_projects p, generate_series(1, 5)",
    // One row per request, with what the log would say about it.
    "CREATE TABLE bench_raw AS
     SELECT gen_random_uuid() AS id, p.id AS project_id, c.c[1 + (p.n + (random() < 0.5)::int) % 4] AS channel_id,
            'k' || floor(random() * 8)::int AS cluster, 1 + floor(random() * 3)::int AS prompt_version,
            date '2026-05-01' + floor(random() * 180)::int AS day,
            (ARRAY['sold', 'interest', 'interest', 'negative_reaction', 'negative_reaction', 'negative_reaction',
                   'positive_reaction', 'reflection', 'reflection', 'undefined', 'undefined', 'undefined',
                   'undefined', 'undefined', 'undefined', 'undefined', 'undefined', 'undefined', 'undefined',
                   'undefined'])[1 + floor(random() * 20)::int] AS outcome,
            random() < 0.6 AS generated,
            (ARRAY['ok', 'ok', 'error', 'revision', 'undefined'])[1 + floor(random() * 5)::int] AS rating,
            300 + floor(random() * 1500)::int AS duration_ms
       FROM generate_series(1, $REQUESTS) i
       JOIN bench_projects p ON p.n = i % 50, bench_channels c",
    // The old way's source: the raw request rows.
    "INSERT INTO client_requests (id, project_id, channel_id, client_id, source, client_data, client_data_decoding,
                                  cluster, status, outcome, created_at, updated_at)
     SELECT id, project_id, channel_id, id::text, 'bench', '[]', '[]', cluster, 'ok', outcome,
            day + time '12:00', day + time '12:00'
       FROM bench_raw",
    // The subscriber's rows, as it would have written them: day after day.
    "INSERT INTO statistics_requests
     SELECT project_id, period, d, channel_id, cluster, prompt_version, count(*),
            count(*) FILTER (WHERE outcome = 'sold'), count(*) FILTER (WHERE outcome = 'interest'),
            count(*) FILTER (WHERE outcome = 'negative_reaction'), count(*) FILTER (WHERE outcome = 'positive_reaction'),
            count(*) FILTER (WHERE outcome = 'reflection'), count(*) FILTER (WHERE outcome = 'undefined')
       FROM bench_raw, LATERAL (VALUES ('day', day), ('month', date_trunc('month', day)::date)) AS p(period, d)
      GROUP BY project_id, period, d, channel_id, cluster, prompt_version ORDER BY d",
    "INSERT INTO statistics_requests_by_product
     SELECT p.product_id, r.period, r.day, r.channel_id, r.cluster, r.prompt_version, sum(r.requests), sum(r.sold),
            sum(r.interest), sum(r.negative_reaction), sum(r.positive_reaction), sum(r.reflection), sum(r.undefined)
       FROM statistics_requests r JOIN statistics_projects p USING (project_id)
      GROUP BY p.product_id, r.period, r.day, r.channel_id, r.cluster, r.prompt_version ORDER BY r.day",
    "INSERT INTO statistics_ratings
     SELECT project_id, period, d, channel_id, prompt_version, count(*) FILTER (WHERE rating = 'ok'),
            count(*) FILTER (WHERE rating = 'error'), count(*) FILTER (WHERE rating = 'revision'),
            count(*) FILTER (WHERE rating = 'undefined')
       FROM bench_raw, LATERAL (VALUES ('day', day), ('month', date_trunc('month', day)::date)) AS p(period, d)
      WHERE generated
      GROUP BY project_id, period, d, channel_id, prompt_version ORDER BY d",
    // Generation figures per project and day, and (the nil project) over all projects.
    "INSERT INTO statistics_generation_daily
     SELECT coalesce(project_id, '00000000-0000-0000-0000-000000000000'), day, count(*) FILTER (WHERE generated),
            count(*) FILTER (WHERE NOT generated AND duration_ms % 20 = 0), 0, 40 * count(*) FILTER (WHERE generated),
            coalesce(sum(duration_ms) FILTER (WHERE generated), 0)
       FROM bench_raw GROUP BY GROUPING SETS ((project_id, day), (day)) ORDER BY day",
    "CREATE TABLE bench_latency AS
     SELECT coalesce(project_id, '00000000-0000-0000-0000-000000000000') AS project_id, day,
            floor(ln(duration_ms) / ln(1.05))::int + 1 AS bucket, count(*) AS messages
       FROM bench_raw WHERE generated
      GROUP BY GROUPING SETS ((project_id, day, floor(ln(duration_ms) / ln(1.05))::int + 1),
                              (day, floor(ln(duration_ms) / ln(1.05))::int + 1))",
    "INSERT INTO statistics_latency
     SELECT d.project_id, d.day,
            ('[' || d.low || ':' || d.high || ']=' || array_agg(coalesce(l.messages, 0) ORDER BY b)::text)::int8[]
       FROM (SELECT project_id, day, min(bucket) AS low, max(bucket) AS high FROM bench_latency GROUP BY 1, 2) d
      CROSS JOIN LATERAL generate_series(d.low, d.high) AS b
       LEFT JOIN bench_latency l ON l.project_id = d.project_id AND l.day = d.day AND l.bucket = b
      GROUP BY d.project_id, d.day, d.low, d.high ORDER BY d.day",
    "VACUUM ANALYZE",
];

/// The old way: the request figures grouped from the raw rows (products through the projects).
const OLD_WAY: &str = "
    SELECT r.channel_id, r.cluster, r.outcome, p.product_id, count(*)
      FROM client_requests r JOIN projects p ON p.id = r.project_id
     WHERE r.project_id = ANY($1)
       AND ($2::date IS NULL OR r.created_at >= $2::date)
       AND ($3::date IS NULL OR r.created_at < $3::date + 1)
     GROUP BY r.channel_id, r.cluster, r.outcome, p.product_id";

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} runs)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        times.len()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let admin_url = std::env::var("OFFERFLOW_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .context(
            "set OFFERFLOW_TEST_DATABASE_URL (source scripts/test-cluster.sh) or DATABASE_URL",
        )?;
    let requests: u64 = std::env::var("STATISTICS_BENCH_REQUESTS")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("STATISTICS_BENCH_REQUESTS is a number")?
        .unwrap_or(1_000_000);
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .context("connecting to the cluster")?;
    let name = format!("offerflow_statistics_bench_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await?;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin_url.clone());
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&format!("{base}/{name}"))
        .await?;
    let result = run(&pool, requests).await;
    pool.close().await;
    // Kept on request, to look at the queries' plans afterwards.
    if std::env::var_os("STATISTICS_BENCH_KEEP").is_some() {
        println!("kept the database {name}");
    } else {
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&admin)
            .await?;
    }
    result
}

async fn run(pool: &PgPool, requests: u64) -> anyhow::Result<()> {
    projections::MIGRATOR.run(pool).await?;
    let started = Instant::now();
    for statement in FILL {
        sqlx::query(&statement.replace("$REQUESTS", &requests.to_string()))
            .execute(pool)
            .await
            .with_context(|| format!("filling: {statement}"))?;
    }
    let count = |table: &'static str| async move {
        let (n,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(pool)
            .await?;
        anyhow::Ok(n)
    };
    println!(
        "filled in {:.1} s: {} client_requests; statistics_requests {} rows ({} day, the rest month), \
         statistics_requests_by_product {}, statistics_ratings {}, statistics_generation_daily {}, statistics_latency {}",
        started.elapsed().as_secs_f64(),
        count("client_requests").await?,
        count("statistics_requests").await?,
        sqlx::query_as::<_, (i64,)>("SELECT count(*) FROM statistics_requests WHERE period = 'day'")
            .fetch_one(pool)
            .await?
            .0,
        count("statistics_requests_by_product").await?,
        count("statistics_ratings").await?,
        count("statistics_generation_daily").await?,
        count("statistics_latency").await?,
    );

    let all: Vec<Uuid> = sqlx::query_as::<_, (Uuid,)>("SELECT id FROM bench_projects ORDER BY n")
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|(id,)| id)
        .collect();
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("a date");
    // (what is asked, the projects, from, to)
    type Scenario<'a> = (&'a str, Vec<Uuid>, Option<NaiveDate>, Option<NaiveDate>);
    let scenarios: Vec<Scenario> = vec![
        (
            "a manager's 3 projects, all days",
            all[..3].to_vec(),
            None,
            None,
        ),
        (
            "all 50 projects (an admin), all days",
            all.clone(),
            None,
            None,
        ),
        (
            "all 50 projects, 2026-06-10..2026-08-20 (partial months at both ends)",
            all.clone(),
            Some(day("2026-06-10")),
            Some(day("2026-08-20")),
        ),
        (
            "one project, one week",
            all[..1].to_vec(),
            Some(day("2026-07-01")),
            Some(day("2026-07-07")),
        ),
    ];
    for (label, projects, from, to) in scenarios {
        // Warm the caches first, as a running server's would be.
        for _ in 0..5 {
            offerflow_http::routes::statistics::compute(pool, &projects, from, to).await?;
        }
        let mut new_way = Vec::new();
        let mut figures = None;
        for _ in 0..200 {
            let t = Instant::now();
            figures =
                Some(offerflow_http::routes::statistics::compute(pool, &projects, from, to).await?);
            new_way.push(t.elapsed());
        }
        let mut old_way = Vec::new();
        let mut old_total = 0i64;
        for _ in 0..20 {
            let t = Instant::now();
            let rows: Vec<(Uuid, Option<String>, String, Uuid, i64)> = sqlx::query_as(OLD_WAY)
                .bind(&projects)
                .bind(from)
                .bind(to)
                .fetch_all(pool)
                .await?;
            old_way.push(t.elapsed());
            old_total = rows.iter().map(|r| r.4).sum();
        }
        let figures = figures.context("no run")?;
        anyhow::ensure!(
            figures.totals.requests == old_total,
            "{label}: the pre-aggregated rows count {} requests, the raw rows {old_total}",
            figures.totals.requests
        );
        println!("{label} ({old_total} requests):");
        println!(
            "  statistics query (every figure, pre-aggregated rows): {}",
            summary(new_way)
        );
        println!(
            "  old way (request figures only, GROUP BY over client_requests): {}",
            summary(old_way)
        );
    }
    Ok(())
}
