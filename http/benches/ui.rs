//! How fast the web interface is usable, in headless Chromium over loopback, with a channel of
//! 10,000 clients: the sign-in page and the projects page from a cold navigation, the channel
//! table's first page, the next page, a sort and a search. Times are the page's own
//! (`performance.mark` after the page drew), not WebDriver's round trips.
//!
//! `cargo bench -p offerflow-http --bench ui -- [--clients N] [--runs N]`, with
//! OFFERFLOW_TEST_DATABASE_URL naming a PostgreSQL (scripts/test-cluster.sh starts one).
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/e2e_support/mod.rs"]
mod e2e_support;

use std::time::Instant;

use common::{client_data, project_with_channels, TestServer, ADMIN_EMAIL, PASSWORD};
use e2e_support::Browser;
use futures::StreamExt;
use serde_json::{json, Value};

fn median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[v.len() - 1])
}

/// Navigates and returns when the app marked `mark`, in ms since navigation start.
async fn cold(b: &mut Browser, url: &str, mark: &str, ready: &str) -> f64 {
    b.goto(url).await;
    b.wait_for(mark, ready).await;
    let at = b
        .run(
            "const m = performance.getEntriesByName(arguments[0]); return m.length ? m[m.length - 1].startTime : null",
            json!([mark]),
        )
        .await;
    let at = at.as_f64().expect("the page marked itself");
    report_if_slow(b, url, at).await;
    at
}

/// A slow page says which of its requests waited, and on what.
async fn report_if_slow(b: &Browser, url: &str, at: f64) {
    if at <= 2000.0 {
        return;
    }
    let slow = b
        .run(
            "return performance.getEntriesByType('resource').filter(e => e.duration > 500)
               .map(e => `${e.name} start ${e.startTime.toFixed(0)} queued ${(e.requestStart - e.startTime).toFixed(0)} connect ${(e.connectEnd - e.connectStart).toFixed(0)} \
wait ${(e.responseStart - e.requestStart).toFixed(0)} duration ${e.duration.toFixed(0)}`).join('\\n')",
            json!([]),
        )
        .await;
    eprintln!(
        "{url} was usable after {at:.0} ms; its slow requests:\n{}",
        slow.as_str().unwrap_or("")
    );
}

/// Clicks `css` and returns the ms until the table was drawn again.
async fn action(b: &Browser, css: &str) -> f64 {
    let v: Value = b
        .run_async(
            "const [css, done] = arguments;
             performance.clearMarks('offerflow:table');
             const t0 = performance.now();
             const check = () => {
               const m = performance.getEntriesByName('offerflow:table');
               if (m.length) done(m[0].startTime - t0); else setTimeout(check, 2);
             };
             document.querySelector(css).click();
             check();",
            json!([css]),
        )
        .await;
    v.as_f64().expect("elapsed ms")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let mut clients = 10_000usize;
    let mut runs = 10usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--clients" => {
                clients = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--clients N")
            }
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let started = Instant::now();
    let path = format!("/api/v1/projects/{project}/channels/{sms}/requests");
    let made = futures::stream::iter(0..clients)
        .map(|n| {
            let admin = admin.clone();
            let path = path.clone();
            // Ages stay plausible; the client number makes each of the clients a request of
            // its own (the same client data twice is one request).
            let mut client = client_data(n % 50);
            client["client_data"]["client_no"] = serde_json::json!(n);
            client["client_data_decoding"]["client_no"] = serde_json::json!("Номер клиента");
            async move { admin.post(&path, client).await.0.is_success() }
        })
        .buffer_unordered(32)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    assert_eq!(made, clients, "every client was added");
    eprintln!(
        "{clients} clients added in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let latest = server.latest_write().await;
    let (_, list) = admin.get_after(&format!("{path}?limit=1"), &latest).await;
    assert_eq!(list["total"], clients as i64, "{list}");

    let mut b = Browser::start("bench-ui").await;
    let base = server.base.clone();
    let page_ready = "return performance.getEntriesByName('offerflow:page').length > 0";
    let mut sign_in = vec![];
    for _ in 0..runs {
        b.run("localStorage.clear()", json!([])).await;
        sign_in.push(
            cold(
                &mut b,
                &format!("{base}/login"),
                "offerflow:page",
                page_ready,
            )
            .await,
        );
    }
    // Sign in once through the form; later navigations reuse the session like a user's tab.
    b.goto(&format!("{base}/login")).await;
    let email = b.find("input[name=email]").await;
    b.type_into(&email, ADMIN_EMAIL).await;
    let password = b.find("input[name=password]").await;
    b.type_into(&password, PASSWORD).await;
    let submit = b.find("form button[type=submit]").await;
    b.click(&submit).await;
    b.find("article.project").await;
    let mut projects = vec![];
    for _ in 0..runs {
        projects.push(
            cold(
                &mut b,
                &format!("{base}/projects"),
                "offerflow:page",
                page_ready,
            )
            .await,
        );
    }
    let channel_url = format!("{base}/projects/{project}/channels/{sms}");
    let table_ready =
        "return document.querySelectorAll('table.requests tbody tr[data-request]').length === 50";
    let mut table = vec![];
    let mut next = vec![];
    let mut sort = vec![];
    for _ in 0..runs {
        table.push(cold(&mut b, &channel_url, "offerflow:table", table_ready).await);
        next.push(action(&b, ".pager button:last-child").await);
        sort.push(action(&b, "th[aria-sort] button.sort").await);
    }
    let mut search = vec![];
    for _ in 0..runs {
        b.goto(&format!("{channel_url}?q=Якутия")).await;
        b.wait_for("the table", table_ready).await;
        let at = b
            .run(
                "const m = performance.getEntriesByName('offerflow:table'); return m[m.length - 1].startTime",
                json!([]),
            )
            .await
            .as_f64()
            .expect("ms");
        report_if_slow(&b, &channel_url, at).await;
        search.push(at);
    }
    b.quit().await;
    println!("UI over loopback, {clients} clients in the channel, {runs} runs each (median / worst, ms):");
    for (name, v) in [
        ("sign-in page usable (cold navigation)", sign_in),
        (
            "projects page usable (cold navigation, signed in)",
            projects,
        ),
        ("channel table, first 50 rows (cold navigation)", table),
        ("channel table, next page", next),
        ("channel table, sorted by client", sort),
        ("channel table, search ?q= (cold navigation)", search),
    ] {
        let (m, worst) = median(v);
        println!("  {name:<52} {m:>7.0} {worst:>7.0}");
    }
    server.stop().await;
}
