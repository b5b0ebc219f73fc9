//! The `offerflow` binary as a user runs it: the embedded default and the administration
//! commands.
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

fn offerflow() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_offerflow"));
    command
        .env_remove("DATABASE_URL")
        .env("OFFERFLOW_LOG", "warn");
    command
}

/// Runs a command to completion; returns (success, stdout + stderr).
fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("offerflow runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

struct Served {
    child: Child,
    base: String,
    password: Option<String>,
}

/// Starts `offerflow serve` on a free port and reads what it prints until it is listening.
fn serve(data_dir: &Path) -> Served {
    let mut child = offerflow()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut base = None;
    let mut password = None;
    // The banner is printed in one go once the server listens: after the address, whatever
    // follows within a moment belongs to it.
    let mut wait = Duration::from_secs(120);
    while let Ok(line) = lines.recv_timeout(wait) {
        if let Some(rest) = line.strip_prefix("Offerflow is running at ") {
            base = Some(rest.split('/').take(3).collect::<Vec<_>>().join("/"));
            wait = Duration::from_secs(1);
        }
        if let Some(rest) = line.trim().strip_prefix("password:") {
            password = Some(rest.trim().to_string());
        }
    }
    let base = base.expect("the server printed its address");
    Served {
        child,
        base,
        password,
    }
}

fn interrupt_and_wait(mut served: Served) {
    let status = Command::new("kill")
        .args(["-INT", &served.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = served.child.wait().expect("exit");
    assert!(
        exit.success(),
        "offerflow serve exits cleanly on Ctrl-C: {exit}"
    );
}

async fn login(base: &str, email: &str, password: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login sent")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_its_own_postgres_bootstraps_once_and_keeps_data_across_runs() {
    let data_dir =
        std::env::temp_dir().join(format!("offerflow-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data_dir).expect("data dir");

    let first = serve(&data_dir);
    let password = first
        .password
        .clone()
        .expect("the first start prints the admin's password");
    assert!(
        password.len() >= 12,
        "a generated password, not a default one"
    );
    assert_eq!(
        login(&first.base, "admin@offerflow.local", &password).await,
        StatusCode::OK
    );
    let client = reqwest::Client::new();
    let tokens: serde_json::Value = client
        .post(format!("{}/api/v1/auth/login", first.base))
        .json(&json!({"email": "admin@offerflow.local", "password": password}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = tokens["access_token"].as_str().expect("token").to_string();
    for (path, total) in [("products", 22), ("channels", 8)] {
        let list: serde_json::Value = client
            .get(format!("{}/api/v1/{path}?limit=100", first.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        assert_eq!(list["total"], total, "the seeded catalog has every {path}");
    }
    interrupt_and_wait(first);
    let pid_file = data_dir
        .join("postgres")
        .join("pgdata")
        .join("postmaster.pid");
    assert!(
        !pid_file.exists(),
        "the embedded PostgreSQL stopped with the server"
    );

    let second = serve(&data_dir);
    assert_eq!(
        second.password, None,
        "no second admin, no password printed again"
    );
    assert_eq!(
        login(&second.base, "admin@offerflow.local", &password).await,
        StatusCode::OK,
        "data kept"
    );
    interrupt_and_wait(second);
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn administration_commands_work_on_a_given_database() {
    let (url, pool) = common::fresh_database().await;
    pool.close().await;
    let with_db = |args: &[&str]| {
        let mut command = offerflow();
        command.env("DATABASE_URL", &url).args(args);
        run(&mut command)
    };

    let (ok, out) = with_db(&["migrate"]);
    assert!(ok, "{out}");
    let (ok, out) = with_db(&["seed", "catalog"]);
    assert!(
        ok && out.contains("22 products and 8 sales channels added"),
        "{out}"
    );
    let (ok, out) = with_db(&["seed", "catalog"]);
    assert!(
        ok && out.contains("0 products and 0 sales channels added, 30 already there"),
        "{out}"
    );

    let (ok, out) = with_db(&[
        "admin",
        "create-user",
        "--email",
        "Olga@Bank.test",
        "--password",
        "long enough 1",
        "--admin",
    ]);
    assert!(ok && out.contains("(admin)"), "{out}");
    let (ok, out) = with_db(&[
        "admin",
        "create-user",
        "--email",
        "olga@bank.test",
        "--password",
        "long enough 1",
    ]);
    assert!(
        !ok && out.contains("already exists"),
        "a second user with the same email: {out}"
    );
    let (ok, out) = with_db(&[
        "admin",
        "create-user",
        "--email",
        "pavel@bank.test",
        "--password",
        "short",
    ]);
    assert!(
        !ok && out.contains("password: must be at least 8 characters"),
        "{out}"
    );

    let (ok, out) = with_db(&["projections", "rebuild"]);
    assert!(ok, "{out}");
    for name in [
        "catalog",
        "users",
        "projects",
        "client_requests",
        "statistics",
    ] {
        assert!(
            out.contains(&format!("{name:<18} rebuilt: 31 events")),
            "{name} replayed every event: {out}"
        );
    }
    let (ok, out) = with_db(&["projections", "status"]);
    assert!(ok, "{out}");
    for name in [
        "catalog",
        "users",
        "projects",
        "client_requests",
        "statistics",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} listed: {out}"));
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns[2], "31", "{name} processed every event: {line}");
        assert_eq!(columns[3], "0", "{name} is not behind: {line}");
    }
    let (ok, out) = with_db(&["projections", "rebuild", "statistics"]);
    assert!(
        ok && out.contains(&format!("{:<18} rebuilt: 31 events", "statistics")),
        "one read model rebuilt by name: {out}"
    );
    let (ok, out) = with_db(&["projections", "rebuild", "forecasts"]);
    assert!(
        !ok && out.contains("no read model named forecasts"),
        "{out}"
    );

    // The user can sign in through a server on that database.
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let server = common::TestServer::on(url.clone(), pool).await;
    assert_eq!(
        login(&server.base, "olga@bank.test", "long enough 1").await,
        StatusCode::OK
    );
    server.stop().await;
}
