//! A small WebDriver client for the end-to-end tests: Debian's chromedriver driving headless
//! Chromium, over the plain W3C WebDriver protocol (a handful of JSON calls).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a step may take before the test gives up and says which step hung. Generous: the
/// real model runs on shared CPUs. This bounds a wait; it asserts nothing about speed.
/// `OFFERFLOW_E2E_PATIENCE_S` changes it (seconds).
fn patience() -> Duration {
    std::env::var("OFFERFLOW_E2E_PATIENCE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(600))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port()
}

fn find_binary(names: &[&str]) -> PathBuf {
    for name in names {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let path = PathBuf::from(dir).join(name);
            if path.is_file() {
                return path;
            }
        }
    }
    panic!(
        "none of {names:?} is installed: the end-to-end tests need Debian's `chromium` and \
         `chromium-driver` (scripts/setup-deps.sh installs them)"
    );
}

pub struct Browser {
    http: reqwest::Client,
    driver: Child,
    base: String,
    session: String,
    shots: PathBuf,
    shot: usize,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session; screenshots go to
    /// `target/e2e-screenshots/<test>/`.
    pub async fn start(test: &str) -> Browser {
        let chromium = find_binary(&["chromium", "chromium-browser"]);
        let chromedriver = find_binary(&["chromedriver"]);
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(r) = ready {
                let body: Value = r.json().await.unwrap_or(Value::Null);
                if body["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("offerflow-e2e-{}", uuid::Uuid::new_v4()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--lang=ru-RU", "--no-first-run",
                         format!("--user-data-dir={}", profile.display())],
            }
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session answer");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let shots = target.join("e2e-screenshots").join(test);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).expect("screenshot folder");
        Browser {
            http,
            driver,
            base,
            session,
            shots,
            shot: 0,
        }
    }

    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("webdriver call");
        let status = response.status();
        let value: Value = response.json().await.expect("webdriver answer");
        if status.is_success() {
            Ok(value["value"].clone())
        } else {
            Err(value["value"].clone())
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("webdriver {path}: {e}"),
        }
    }

    /// Acts on the element `css` names, finding it again if the page redrew it meanwhile.
    async fn on(&mut self, css: &str, action: &str, body: Value) {
        for _ in 0..20 {
            let e = self.find(css).await;
            match self
                .try_call(
                    reqwest::Method::POST,
                    &format!("/element/{}/{action}", e.0),
                    Some(body.clone()),
                )
                .await
            {
                Ok(_) => return,
                Err(err) if err["error"] == "stale element reference" => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("{action} on {css}: {err}"),
            }
        }
        panic!("{css} kept being redrawn");
    }

    /// Clicks the first element matching `css`.
    pub async fn press(&mut self, css: &str) {
        self.on(css, "click", json!({})).await;
    }

    /// Types into the first element matching `css` (a file input takes a path).
    pub async fn fill(&mut self, css: &str, text: &str) {
        self.on(css, "value", json!({ "text": text })).await;
    }

    /// Replaces what the first element matching `css` holds with `text`.
    pub async fn replace(&mut self, css: &str, text: &str) {
        self.on(css, "clear", json!({})).await;
        self.fill(css, text).await;
    }

    /// The text of the first element matching `css`.
    pub async fn text_of(&mut self, css: &str) -> String {
        for _ in 0..20 {
            let e = self.find(css).await;
            match self
                .try_call(
                    reqwest::Method::GET,
                    &format!("/element/{}/text", e.0),
                    None,
                )
                .await
            {
                Ok(v) => return v.as_str().unwrap_or_default().to_string(),
                Err(err) if err["error"] == "stale element reference" => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("text of {css}: {err}"),
            }
        }
        panic!("{css} kept being redrawn");
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    pub async fn all(&self, css: &str) -> Vec<Element> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `css`, waiting for the page to show it.
    pub async fn find(&mut self, css: &str) -> Element {
        let started = Instant::now();
        loop {
            if let Some(e) = self.all(css).await.into_iter().next() {
                return e;
            }
            if started.elapsed() > patience() {
                self.screenshot("missing-element").await;
                panic!("no element matches {css} on {}", self.url().await);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn click(&self, e: &Element) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/click", e.0),
            Some(json!({})),
        )
        .await;
    }

    pub async fn type_into(&self, e: &Element, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn text(&self, e: &Element) -> String {
        self.call(
            reqwest::Method::GET,
            &format!("/element/{}/text", e.0),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Runs an asynchronous script: its last argument is the callback that ends it.
    pub async fn run_async(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Waits until `script` (a function body) returns something truthy, and returns it.
    pub async fn wait_for(&mut self, what: &str, script: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.run(script, json!([])).await;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return v;
            }
            if started.elapsed() > patience() {
                self.screenshot("gave-up").await;
                panic!("gave up waiting for {what} on {}", self.url().await);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The text of the page's main area.
    pub async fn main_text(&self) -> String {
        self.run("return document.querySelector('main').innerText", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let data = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("a PNG in base64");
        self.shot += 1;
        let path = self.shots.join(format!("{:02}-{name}.png", self.shot));
        std::fs::write(&path, bytes).expect("screenshot written");
        path
    }

    pub async fn quit(self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
    }
}
