//! The write path under load, next to the write ceiling of the same PostgreSQL.
//!
//! Measures, on one fresh database of the cluster in OFFERFLOW_TEST_DATABASE_URL (scripts/bench.sh
//! starts a durable one):
//! 1. the ceiling: pgbench, one-row insert per transaction, the same number of clients;
//! 2. HTTP command throughput and p50/p99 latency with concurrent clients: create a client
//!    request, then record outcomes;
//! 3. projection lag under that load: time from a command's answer until every read model has
//!    processed its event (p50/p99 of samples taken every 10 ms);
//! 4. rebuild speed of every read model over the events the load wrote.
//!
//! `cargo bench -p offerflow-http --bench write_path -- [--seconds N] [--clients N]`
#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{client_data, project_with_channels, TestServer};
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use projections::ConsistencyToken;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

// The server in this process runs on the allocator `offerflow serve` uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The load generator's HTTP client: plain hyper with keep-alive, the body prepared as bytes,
/// the answer read for its token only, so that the clients take as little of the machine from
/// the server as pgbench's clients take from PostgreSQL.
#[derive(Clone)]
struct LoadClient {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    base: String,
    bearer: String,
}

#[derive(Deserialize)]
struct Answer {
    id: Option<String>,
    consistency_token: Option<String>,
}

impl LoadClient {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Option<Answer>) {
        let request = hyper::Request::builder()
            .method(method.as_str())
            .uri(format!("{}{path}", self.base))
            .header(AUTHORIZATION, &self.bearer)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let response = self.http.request(request).await.expect("request sent");
        let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, serde_json::from_slice(&body).ok())
    }
}

struct Options {
    seconds: u64,
    clients: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Options {
        seconds: value("--seconds", 10),
        clients: value("--clients", 16) as usize,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The write ceiling: pgbench inserting one row per transaction.
fn pgbench(url: &str, clients: usize, seconds: u64) -> anyhow::Result<f64> {
    let script = std::env::temp_dir().join(format!("offerflow-bench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        "INSERT INTO bench_ceiling (payload) VALUES ('{\"n\": 1}');\n",
    )?;
    let bin = offerflow_http::embedded_pg::find_bin_dir(None)
        .map(|d| d.join("pgbench"))
        .unwrap_or_else(|_| "pgbench".into());
    let output = Command::new(bin)
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(url)
        .output()?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.status.success() {
        anyhow::bail!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench output: {text}"))
}

/// The newest acknowledged command, for the lag sampler.
type LastAck = Arc<Mutex<Option<(ConsistencyToken, Instant)>>>;

struct LoadResult {
    name: &'static str,
    count: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// Runs `clients` loops of `call(client_index, iteration)` for `seconds`.
async fn load<F, Fut>(
    name: &'static str,
    clients: usize,
    seconds: u64,
    last_ack: LastAck,
    call: F,
) -> LoadResult
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (StatusCode, Option<Answer>)> + Send,
{
    let call = Arc::new(call);
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let call = Arc::clone(&call);
        let errors = Arc::clone(&errors);
        let last_ack = Arc::clone(&last_ack);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                let (status, body) = call(client, n).await;
                let took = t.elapsed();
                n += 1;
                if status.is_success() {
                    latencies.push(took);
                    if let Some(token) = body
                        .and_then(|b| b.consistency_token)
                        .and_then(|t| t.parse().ok())
                    {
                        *last_ack.lock().expect("lock") = Some((token, Instant::now()));
                    }
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    LoadResult {
        name,
        count: latencies.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latencies,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let opts = options();
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let loader = LoadClient {
        http: HyperClient::builder(TokioExecutor::new()).build_http(),
        base: server.base.clone(),
        bearer: format!("Bearer {}", admin.token.clone().expect("signed in")),
    };

    sqlx::query("CREATE TABLE bench_ceiling (id bigserial PRIMARY KEY, payload jsonb NOT NULL)")
        .execute(&server.pool)
        .await?;
    let ceiling = pgbench(&server.url, opts.clients, opts.seconds)?;

    // Lag sampler: every 10 ms, the newest acknowledged command; how long until the read models have it.
    let last_ack: LastAck = Arc::new(Mutex::new(None));
    let lags = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (last_ack, lags, sampling, engine) = (
            last_ack.clone(),
            lags.clone(),
            sampling.clone(),
            server.state.engine.clone(),
        );
        tokio::spawn(async move {
            let mut previous = None;
            while sampling.load(Ordering::Relaxed) {
                let current = *last_ack.lock().expect("lock");
                if let Some((token, acked)) = current {
                    if previous != Some(token) {
                        previous = Some(token);
                        let (engine, lags) = (engine.clone(), lags.clone());
                        tokio::spawn(async move {
                            if engine
                                .wait_for(token, Duration::from_secs(30))
                                .await
                                .unwrap_or(false)
                            {
                                lags.lock().expect("lock").push(acked.elapsed());
                            }
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // Where the database's time goes, when the cluster preloads pg_stat_statements.
    let statements = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&server.pool)
        .await
        .is_ok()
        && sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(&server.pool)
            .await
            .is_ok();

    let path = format!("/api/v1/projects/{project}/channels/{sms}/requests");
    let created: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let create = {
        let (loader, created) = (loader.clone(), created.clone());
        load(
            "create client request",
            opts.clients,
            opts.seconds,
            last_ack.clone(),
            move |client, n| {
                let (loader, path, created) = (loader.clone(), path.clone(), created.clone());
                async move {
                    // Each call a new client: the bank's id is part of the client's data.
                    let mut body = client_data(n);
                    body["client_data"]["bank_client_id"] = json!(format!("{client}-{n}"));
                    body["client_data_decoding"]["bank_client_id"] =
                        json!("Идентификатор клиента в банке");
                    body["client_id"] = json!(format!("{client}-{n}"));
                    let body = serde_json::to_vec(&body).expect("json");
                    let (status, answer) = loader.send(Method::POST, &path, body).await;
                    if let Some(id) = answer.as_ref().and_then(|a| a.id.clone()) {
                        created.lock().expect("lock").push(id);
                    }
                    (status, answer)
                }
            },
        )
        .await
    };
    let ids = Arc::new(created.lock().expect("lock").clone());
    let outcome = {
        let ids = ids.clone();
        let clients = opts.clients;
        load(
            "record outcome",
            opts.clients,
            opts.seconds,
            last_ack.clone(),
            move |client, n| {
                let (loader, ids) = (loader.clone(), ids.clone());
                async move {
                    // Each call changes the outcome, so each is one new event.
                    let id = &ids[(client + n * clients) % ids.len()];
                    let outcome = ["sold", "interest", "reflection", "negative_reaction"]
                        [(n / (ids.len() / clients).max(1)) % 4];
                    let body = format!(r#"{{"success_type":"{outcome}"}}"#).into_bytes();
                    loader
                        .send(Method::PUT, &format!("/api/v1/requests/{id}/outcome"), body)
                        .await
                }
            },
        )
        .await
    };
    sampling.store(false, Ordering::Relaxed);
    sampler.await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut lags = lags.lock().expect("lock").clone();
    lags.sort();

    let top_statements: Vec<(i64, f64, f64, String)> = if statements {
        sqlx::query_as(
            "SELECT calls, total_exec_time, mean_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 90)
               FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
              ORDER BY calls DESC LIMIT 15",
        )
        .fetch_all(&server.pool)
        .await
        .unwrap_or_default()
    } else {
        Vec::new()
    };

    // Rebuild every read model from the log, with no server running.
    let (_, pool) = server.stop().await;
    let (events,): (i64,) = sqlx::query_as("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await?;
    let state = common::state_for(pool.clone()).await;
    let mut rebuilds = Vec::new();
    for name in state.engine.names() {
        rebuilds.push(state.engine.rebuild(&name, |_| {}).await?);
    }
    let rebuild_time: Duration = rebuilds.iter().map(|r| r.elapsed).sum();

    println!();
    println!(
        "write path, {} clients, {} s per scenario, {} cores",
        opts.clients,
        opts.seconds,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("pgbench ceiling (one-row insert per transaction): {ceiling:.0} tps");
    println!("| scenario | commands | errors | commands/s | share of ceiling | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    for r in [&create, &outcome] {
        let rate = r.count as f64 / r.elapsed.as_secs_f64();
        println!(
            "| {} | {} | {} | {:.0} | {:.0}% | {:.2} | {:.2} |",
            r.name,
            r.count,
            r.errors,
            rate,
            100.0 * rate / ceiling,
            ms(percentile(&r.latencies, 50.0)),
            ms(percentile(&r.latencies, 99.0))
        );
    }
    println!(
        "projection lag under load: {} samples, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lags.len(),
        ms(percentile(&lags, 50.0)),
        ms(percentile(&lags, 99.0)),
        ms(lags.last().copied().unwrap_or_default())
    );
    if !top_statements.is_empty() {
        let commands = (create.count + outcome.count).max(1) as f64;
        println!("statements during the HTTP load (pg_stat_statements, by calls):");
        println!("| calls | per command | total ms | mean ms | statement |");
        println!("|---|---|---|---|---|");
        for (calls, total, mean, query) in &top_statements {
            println!(
                "| {calls} | {:.2} | {total:.0} | {mean:.3} | `{query}` |",
                *calls as f64 / commands
            );
        }
    }
    println!("rebuild of every read model over {events} events:");
    for r in &rebuilds {
        println!(
            "  {:<16} {:>8} events in {:>7.2} s = {:>8.0} events/s",
            r.name,
            r.events,
            r.elapsed.as_secs_f64(),
            r.events_per_second()
        );
    }
    println!(
        "  all read models: {:.0} events/s ({} events x {} read models in {:.2} s)",
        (events as f64 * rebuilds.len() as f64) / rebuild_time.as_secs_f64(),
        events,
        rebuilds.len(),
        rebuild_time.as_secs_f64()
    );
    Ok(())
}
