//! The web interface's files: served from the binary at `/`, with their types and validators,
//! and a page fallback that never hides the API, its documents or the operators' endpoints.
mod common;

use common::TestServer;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;

#[tokio::test]
async fn the_interface_is_served_from_the_binary_and_never_shadows_the_api() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", server.base)).send();

    let index = get("/").await.expect("index");
    assert_eq!(index.status(), StatusCode::OK);
    assert_eq!(index.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = index.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("csp");
    assert!(
        csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = index.text().await.expect("html");
    assert!(
        html.contains(r#"<script type="module" src="/ui/app.js">"#),
        "{html}"
    );

    // A client-side route is the same document, so a reload or a shared link works.
    for page in [
        "/projects/8f0a3c55-7a3e-4b7c-9a51-0b6f4a1d2e3f",
        "/statistics",
        "/login",
    ] {
        let r = get(page).await.expect("page");
        assert_eq!(r.status(), StatusCode::OK, "{page}");
        assert_eq!(r.text().await.expect("body"), html, "{page}");
    }

    // Every file the page loads is there with its type; the modules it imports too.
    let app = get("/ui/app.js").await.expect("app.js");
    assert_eq!(app.status(), StatusCode::OK);
    assert_eq!(
        app.headers()[CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(app.headers()[CACHE_CONTROL], "no-cache");
    let etag = app.headers()[ETAG].clone();
    let source = app.text().await.expect("js");
    for module in source
        .lines()
        .filter_map(|l| l.split("from './").nth(1))
        .filter_map(|rest| rest.split('\'').next())
    {
        let r = get(&format!("/ui/{module}")).await.expect("module");
        assert_eq!(r.status(), StatusCode::OK, "{module}");
        assert_eq!(
            r.headers()[CONTENT_TYPE],
            "text/javascript; charset=utf-8",
            "{module}"
        );
    }
    let css = get("/ui/app.css").await.expect("css");
    assert_eq!(css.headers()[CONTENT_TYPE], "text/css; charset=utf-8");

    // Unchanged files revalidate without a body.
    let again = http
        .get(format!("{}/ui/app.js", server.base))
        .header(IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .expect("revalidate");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[ETAG], etag);
    assert!(again.text().await.expect("body").is_empty());

    // No other file is served, and the API's own answers are untouched.
    assert_eq!(
        get("/Cargo.toml").await.expect("r").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get("/ui/secret.js").await.expect("r").status(),
        StatusCode::NOT_FOUND
    );
    let missing = get("/api/v1/no-such-route").await.expect("api 404");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.headers()[CONTENT_TYPE]
        .to_str()
        .expect("type")
        .starts_with("application/json"));
    let missing = get("/api/no-such-thing").await.expect("api 404");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        get("/api/v1/me").await.expect("me").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/health").await.expect("health").status(),
        StatusCode::OK
    );
    let ready = get("/ready").await.expect("ready");
    assert!(ready.headers()[CONTENT_TYPE]
        .to_str()
        .expect("type")
        .starts_with("application/json"));
    assert_eq!(
        get("/metrics").await.expect("metrics").status(),
        StatusCode::UNAUTHORIZED
    );
    let docs = get("/api/docs/").await.expect("docs");
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(!docs.text().await.expect("docs").contains("/ui/app.js"));
    let post = http
        .post(format!("{}/projects", server.base))
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}
