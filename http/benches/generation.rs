//! Offerflow end to end on the real model: N clients of the original project's spreadsheet in
//! one project channel, timed from the batch command to the last offer visible in the read
//! model, on one fresh database of the cluster in OFFERFLOW_TEST_DATABASE_URL.
//!
//! It also writes the exact chats the worker was given (one JSON line each, with the sampling
//! parameters) so the ceiling (`inference-worker/examples/ceiling.rs`) and the peer
//! (`scripts/peer-bench.py`) run the very same prompts.
//!
//! `cargo bench -p offerflow-http --bench generation -- [--clients N] [--max-tokens N]
//!  [--chats-out FILE]` (scripts/bench-generation.sh runs all three).
#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use calamine::{open_workbook_auto, Data, Reader};
use common::{catalog_id, TestServer};
use inference_worker::{LlamaConfig, LlamaGenerator, ReactorConfig};
use offerflow_http::worker::WorkerSetup;
use reqwest::StatusCode;
use serde_json::{json, Map, Value};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Options {
    clients: usize,
    max_tokens: u32,
    chats_out: Option<PathBuf>,
    data_dir: PathBuf,
}

fn options() -> Options {
    let mut options = Options {
        clients: 200,
        max_tokens: 64,
        chats_out: None,
        data_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data")),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--clients" => options.clients = value().parse().expect("--clients N"),
            "--max-tokens" => options.max_tokens = value().parse().expect("--max-tokens N"),
            "--chats-out" => options.chats_out = Some(PathBuf::from(value())),
            "--data-dir" => options.data_dir = PathBuf::from(value()),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

/// The first `n` clients, each column in the spreadsheet's order; `NULL` cells stay `NULL`,
/// as the bank sends them.
fn clients(options: &Options) -> (Vec<Map<String, Value>>, Map<String, Value>) {
    let path = options.data_dir.join("clients_dataset.xlsx");
    let mut workbook =
        open_workbook_auto(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let sheet = workbook
        .worksheet_range_at(0)
        .expect("a sheet")
        .expect("readable sheet");
    let mut rows = sheet.rows();
    let header: Vec<String> = rows
        .next()
        .expect("a header row")
        .iter()
        .map(|c| c.to_string())
        .collect();
    let clients = rows
        .take(options.clients)
        .map(|row| {
            header
                .iter()
                .zip(row)
                .map(|(key, cell)| {
                    let value = match cell {
                        Data::Int(i) => json!(i),
                        Data::Float(f) => json!(f),
                        Data::Bool(b) => json!(b),
                        Data::Empty => Value::Null,
                        other => json!(other.to_string()),
                    };
                    (key.clone(), value)
                })
                .collect()
        })
        .collect();
    let decoding_path = options.data_dir.join("client_data_decoding.json");
    let decoding: Map<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(&decoding_path)
            .unwrap_or_else(|e| panic!("{}: {e}", decoding_path.display())),
    )
    .expect("the decoding is a JSON object");
    (clients, decoding)
}

#[tokio::main]
async fn main() {
    let options = options();
    let (clients, decoding) = clients(&options);
    let model = std::env::var_os("OFFERFLOW_MODEL")
        .map(PathBuf::from)
        .expect("OFFERFLOW_MODEL: the GGUF file (scripts/fetch-model.sh prints it)");
    let config = LlamaConfig::new(&model);
    let threads = config.threads;
    let generator = Arc::new(LlamaGenerator::load(config).expect("the model loads"));
    let reactor = ReactorConfig::new("bench-worker");
    let server = TestServer::start_with_worker(Some(WorkerSetup { generator, reactor })).await;
    let admin = server.admin().await;
    let product = catalog_id(&admin, "products", "CC").await;
    let push = catalog_id(&admin, "channels", "PUSH").await;
    let (status, created) = admin
        .post(
            "/api/v1/projects",
            json!({"name": "Кредитная карта: осень", "product_id": product,
                   "description": "Осенняя кампания кредитной карты с кешбэком"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let project = created["id"].as_str().expect("id").to_string();
    let (status, body) = admin
        .post(
            &format!("/api/v1/projects/{project}/channels"),
            json!({"channel_ids": [push]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for client in &clients {
        let (status, body) = admin
            .post(
                &format!("/api/v1/projects/{project}/channels/{push}/requests"),
                json!({"client_data": client, "client_data_decoding": decoding, "source": "clients_dataset.xlsx"}),
            )
            .await;
        assert!(status.is_success(), "{body}");
    }

    eprintln!(
        "generating offers for {} clients, max_tokens {}, {threads} threads…",
        clients.len(),
        options.max_tokens
    );
    let started = Instant::now();
    let (status, queued) = admin
        .post(
            &format!("/api/v1/projects/{project}/channels/{push}/generations"),
            json!({"all_pending": true, "params": {"max_tokens": options.max_tokens}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let queued = queued["queued"].as_u64().expect("queued") as i64;
    let mut last_report = Instant::now();
    let (finished, failed, completion_tokens, prompt_tokens) = loop {
        let (ok, error, completion, prompt): (i64, i64, Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE r.status = 'ok'), count(*) FILTER (WHERE r.status = 'error'),
                    (SELECT sum(completion_tokens) FROM client_request_messages WHERE message_type = 'system')::int8,
                    (SELECT sum(prompt_tokens) FROM client_request_messages WHERE message_type = 'system')::int8
               FROM client_requests r",
        )
        .fetch_one(&server.pool)
        .await
        .expect("progress");
        if ok + error >= queued {
            break (
                started.elapsed(),
                error,
                completion.unwrap_or(0),
                prompt.unwrap_or(0),
            );
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "  {ok} of {queued} after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let seconds = finished.as_secs_f64();
    println!(
        "Offerflow end to end ({} clients, one project channel, llama backend, {threads} threads)",
        queued
    );
    println!("  elapsed            {seconds:.1} s (batch command → last offer in the read model)");
    println!(
        "  offers/min         {:.2}",
        (queued - failed) as f64 * 60.0 / seconds
    );
    println!(
        "  completion tok/s   {:.1} ({completion_tokens} tokens)",
        completion_tokens as f64 / seconds
    );
    println!("  prompt tokens      {prompt_tokens} (before prefix reuse)");
    println!("  failed             {failed}");

    if let Some(path) = &options.chats_out {
        let chats: Vec<(Value,)> = sqlx::query_as(
            "SELECT payload -> 'GenerationRequested' FROM events WHERE event_type = 'GenerationRequested'
              ORDER BY global_position",
        )
        .fetch_all(&server.pool)
        .await
        .expect("requests");
        let mut out = std::fs::File::create(path).expect("chats file");
        for (requested,) in chats {
            let params = &requested["params"];
            let line = json!({
                "messages": requested["messages"],
                "max_tokens": params["max_tokens"],
                "temperature": params["temperature"],
                "top_p": params["top_p"],
                "seed": params["seed"],
            });
            writeln!(out, "{line}").expect("write");
        }
        eprintln!("wrote the {} chats to {}", queued, path.display());
    }
    server.stop().await;
}
