//! Client imports end to end: the bank's real data set (1 000 rows, .xlsx) and 100 000
//! generated rows (.csv), uploaded over HTTP to a server in this process on a fresh database of
//! the cluster in OFFERFLOW_TEST_DATABASE_URL.
//!
//! For each: the time from the upload's first byte until the import is recorded (`done`: every
//! request and the import in the log, one transaction), and until the `client_requests` read
//! model shows them all.
//!
//! `cargo bench -p offerflow-http --bench import -- [--rows N]`
#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{project_with_channels, Client, TestServer};
use reqwest::StatusCode;
use serde_json::Value;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn upload(client: &Client, path: &str, name: &str, bytes: Vec<u8>) -> Value {
    let boundary = "offerflow-bench-boundary";
    let mut body = Vec::with_capacity(bytes.len() + 512);
    write!(
        body,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n"
    )
    .expect("write");
    body.extend_from_slice(&bytes);
    write!(body, "\r\n--{boundary}--\r\n").expect("write");
    let response = client
        .http
        .post(format!("{}{}", client.base, path))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .bearer_auth(client.token.as_deref().expect("signed in"))
        .body(body)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.json().await.expect("json")
}

async fn until_done(client: &Client, answer: Value) -> Value {
    let id = answer["id"].as_str().expect("id").to_string();
    let mut view = answer;
    while view["status"] == "running" {
        tokio::time::sleep(Duration::from_millis(20)).await;
        view = client.get(&format!("/api/v1/imports/{id}")).await.1;
    }
    assert_eq!(view["status"], "done", "{view}");
    view
}

async fn run(client: &Client, project: &str, channel: &str, name: &str, bytes: Vec<u8>) {
    let path = format!("/api/v1/projects/{project}/channels/{channel}/imports");
    let size = bytes.len();
    let started = Instant::now();
    let answer = upload(client, &path, name, bytes).await;
    let done = until_done(client, answer).await;
    let recorded = started.elapsed();
    let (status, list) = client
        .get_after(
            &format!("/api/v1/projects/{project}/channels/{channel}/requests?limit=1"),
            &done,
        )
        .await;
    let projected = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    let rows = done["rows"].as_u64().expect("rows");
    println!(
        "{name}: {size} bytes, {rows} rows, {} created, {} duplicates, {} rejected; recorded in {:.3} s ({:.0} rows/s), visible in the read model after {:.3} s ({:.0} rows/s); {} requests listed",
        done["created"],
        done["duplicates"],
        done["rejected"].as_array().map_or(0, Vec::len),
        recorded.as_secs_f64(),
        rows as f64 / recorded.as_secs_f64(),
        projected.as_secs_f64(),
        rows as f64 / projected.as_secs_f64(),
        list["total"],
    );
}

#[tokio::main]
async fn main() {
    let mut rows: u64 = 100_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--rows" {
            rows = args.next().and_then(|v| v.parse().ok()).expect("--rows N");
        }
    }
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, email) = project_with_channels(&admin).await;
    let dataset = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/clients_dataset.xlsx"
    );
    let bytes = std::fs::read(dataset).unwrap_or_else(|e| panic!("{dataset}: {e}"));
    run(&admin, &project, &sms, "clients_dataset.xlsx", bytes).await;
    let csv = offerflow_http::demo::demo_csv(rows).into_bytes();
    run(&admin, &project, &email, "generated.csv", csv).await;
    server.stop().await;
}
