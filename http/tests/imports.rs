//! Importing clients: the bank's real spreadsheet, CSV variants, broken files, column
//! descriptions, rights, client databases and the CLI, against a real server and PostgreSQL.
mod common;

use std::io::Write;
use std::time::Duration;

use common::{project_with_channels, Client, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

const DATASET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/clients_dataset.xlsx"
);

fn dataset() -> Vec<u8> {
    std::fs::read(DATASET).unwrap_or_else(|e| {
        panic!("{DATASET}: {e} (the bank's data set lies in ../shared/data beside the clone)")
    })
}

/// One multipart part: (name, file name, bytes).
type Part<'a> = (&'a str, Option<&'a str>, Vec<u8>);

async fn upload(client: &Client, path: &str, parts: Vec<Part<'_>>) -> (StatusCode, Value) {
    let boundary = format!("offerflow-test-{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::new();
    for (name, file_name, bytes) in parts {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
        )
        .unwrap();
        if let Some(file_name) = file_name {
            write!(body, "; filename=\"{file_name}\"").unwrap();
        }
        body.extend_from_slice(b"\r\nContent-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(&bytes);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    let mut request = client
        .http
        .post(format!("{}{}", client.base, path))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body);
    if let Some(token) = &client.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("upload sent");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn imports(project: &str, channel: &str) -> String {
    format!("/api/v1/projects/{project}/channels/{channel}/imports")
}

/// Follows an import until it ends.
async fn finished(client: &Client, answer: &Value) -> Value {
    let id = answer["id"].as_str().expect("an import id");
    for _ in 0..600 {
        let (status, body) = client.get(&format!("/api/v1/imports/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] != "running" {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("import {id} never finished");
}

async fn import_file(
    client: &Client,
    project: &str,
    channel: &str,
    name: &str,
    bytes: Vec<u8>,
) -> Value {
    let (status, body) = upload(
        client,
        &imports(project, channel),
        vec![("file", Some(name), bytes)],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let done = finished(client, &body).await;
    assert_eq!(done["status"], "done", "{done}");
    done
}

async fn count(server: &TestServer, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&server.pool)
        .await
        .expect("count")
}

async fn requests_of(client: &Client, project: &str, channel: &str, after: &Value) -> Value {
    let (status, body) = client
        .get_after(
            &format!(
                "/api/v1/projects/{project}/channels/{channel}/requests?limit=500&sort=created_at"
            ),
            after,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// A workbook of inline-string cells, like the bank's export: (sheet name, rows).
fn workbook(sheets: &[(&str, Vec<Vec<&str>>)]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default();
    let mut put = |name: &str, text: String| {
        zip.start_file(name, options).expect("zip entry");
        zip.write_all(text.as_bytes()).expect("zip write");
    };
    let mut types = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>"#,
    );
    let mut book = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>"#,
    );
    let mut rels = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">"#,
    );
    let mut sheet_files = Vec::new();
    for (i, (name, rows)) in sheets.iter().enumerate() {
        let n = i + 1;
        types.push_str(&format!(r#"<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>"#));
        book.push_str(&format!(
            r#"<sheet name="{name}" sheetId="{n}" r:id="rId{n}"/>"#
        ));
        rels.push_str(&format!(r#"<Relationship Id="rId{n}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet{n}.xml"/>"#));
        let mut data = String::new();
        for (r, row) in rows.iter().enumerate() {
            data.push_str(&format!(r#"<row r="{}">"#, r + 1));
            for (c, cell) in row.iter().enumerate() {
                if cell.is_empty() {
                    continue;
                }
                let col = (b'A' + c as u8) as char;
                data.push_str(&format!(
                    r#"<c r="{col}{}" t="inlineStr"><is><t>{cell}</t></is></c>"#,
                    r + 1
                ));
            }
            data.push_str("</row>");
        }
        sheet_files.push((n, format!(r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{data}</sheetData></worksheet>"#)));
    }
    types.push_str("</Types>");
    book.push_str("</sheets></workbook>");
    rels.push_str("</Relationships>");
    put("[Content_Types].xml", types);
    put("_rels/.rels", r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.into());
    put("xl/workbook.xml", book);
    put("xl/_rels/workbook.xml.rels", rels);
    for (n, xml) in sheet_files {
        put(&format!("xl/worksheets/sheet{n}.xml"), xml);
    }
    zip.finish().expect("zip").into_inner()
}

fn column<'a>(request: &'a Value, key: &str) -> &'a Value {
    request["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .find(|c| c["key"] == key)
        .unwrap_or_else(|| panic!("no column {key} in {request}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bank_data_set_imports_whole_and_a_second_time_only_as_duplicates() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;

    let first = import_file(&admin, &project, &sms, "clients_dataset.xlsx", dataset()).await;
    assert_eq!(first["rows"], 1000, "{first}");
    assert_eq!(first["created"], 1000, "{first}");
    assert_eq!(first["duplicates"], 0);
    assert_eq!(first["rejected"], json!([]));
    assert_eq!(first["source"], "clients_dataset.xlsx");

    let list = requests_of(&admin, &project, &sms, &first).await;
    assert_eq!(list["total"], 1000);
    // The file's first client, its columns in the file's order and described by the bank's
    // dictionary; NULL and blank values kept as the file has them.
    let (status, oldest) = admin
        .get_after(
            &format!("/api/v1/projects/{project}/channels/{sms}/requests?q=1217025.56"),
            &first,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(oldest["total"], 1, "{oldest}");
    let client = &oldest["items"][0];
    let keys: Vec<&str> = client["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys.len(), 25);
    assert_eq!(keys[0], "gender");
    assert_eq!(keys[24], "super_clust");
    assert_eq!(column(client, "gender")["value"], "0");
    assert_eq!(column(client, "age")["value"], 52.68817204301075);
    assert_eq!(column(client, "max_outstanding_amount_6m")["value"], "NULL");
    assert_eq!(column(client, "qnt_months_from_last_visit")["value"], 10);
    assert_eq!(
        column(client, "super_clust")["description"],
        "Кластер клиента"
    );
    assert_eq!(client["cluster"], "a. Супер-ЗП (6,15)");

    let second = import_file(&admin, &project, &sms, "clients_dataset.xlsx", dataset()).await;
    assert_eq!(second["created"], 0, "{second}");
    assert_eq!(second["duplicates"], 1000, "{second}");
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM events WHERE event_type = 'ClientRequestCreated'"
        )
        .await,
        1000,
        "the second import recorded no client twice"
    );
    // Both imports are in the log, with who made them.
    let imported: Vec<(Value, Value)> = sqlx::query_as(
        "SELECT payload, metadata FROM events WHERE aggregate_type = 'ClientImport' ORDER BY events.transaction_id, global_position",
    )
    .fetch_all(&server.pool)
    .await
    .expect("imports");
    assert_eq!(imported.len(), 2);
    assert_eq!(imported[0].0["ClientsImported"]["created"], 1000);
    assert_eq!(imported[1].0["ClientsImported"]["duplicates"], 1000);
    assert_eq!(imported[0].1["actor_kind"], "user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_files_are_refused_and_record_nothing() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let real = dataset();
    let mut garbage = vec![0u8; 10 * 1024 * 1024];
    let mut x: u64 = 0x1234_5678;
    for byte in garbage.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = x as u8;
    }
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "not a spreadsheet",
            "clients.xlsx",
            b"%PDF-1.4 this is a letter, not a table".to_vec(),
        ),
        (
            "truncated zip",
            "clients.xlsx",
            real[..real.len() / 2].to_vec(),
        ),
        ("empty sheet", "empty.xlsx", workbook(&[("Лист1", vec![])])),
        (
            "header only",
            "header.xlsx",
            workbook(&[("Лист1", vec![vec!["gender", "age"]])]),
        ),
        ("header only csv", "header.csv", b"gender;age\r\n".to_vec()),
        ("empty csv", "empty.csv", Vec::new()),
        ("10 MB of garbage", "garbage.xlsx", garbage.clone()),
        ("10 MB of garbage as csv", "garbage.csv", garbage),
        (
            "a column without a name",
            "nameless.csv",
            b"gender;;age\n1;x;30\n".to_vec(),
        ),
        (
            "a column named twice",
            "twice.csv",
            b"age;age\n1;2\n".to_vec(),
        ),
    ];
    for (what, name, bytes) in cases {
        let (status, body) = upload(
            &admin,
            &imports(&project, &sms),
            vec![("file", Some(name), bytes)],
        )
        .await;
        assert!(status.is_client_error(), "{what}: {status} {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("file")),
            "{what}: the answer names the file: {body}"
        );
    }
    let (status, body) = upload(
        &admin,
        &imports(&project, &sms),
        vec![("decoding", None, b"{}".to_vec())],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no file part: {body}"
    );
    assert_eq!(body["error"]["fields"], json!(["file"]));
    let (status, body) = admin
        .post(&imports(&project, &sms), json!({"file": "clients.xlsx"}))
        .await;
    assert_eq!(
        status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "JSON instead of a file: {body}"
    );
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM events WHERE aggregate_type IN ('ClientRequest', 'ClientImport')"
        )
        .await,
        0
    );
    assert_eq!(
        count(&server, "SELECT count(*) FROM client_imports").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn csv_files_with_bom_semicolons_quotes_and_nulls_import_as_written() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, email) = project_with_channels(&admin).await;

    // Excel's Russian CSV: BOM, `;`, CRLF, a quoted value holding `;`, a doubled quote and a
    // line break, NULL and an empty cell.
    let semicolons = "\u{feff}gender;age;reg_region_nm;super_clust\r\n\
        1;52,5;\"Москва; ЦАО\";\"b. \"\"ЗП\"\"\"\r\n\
        0;NULL;;\"k. Без\r\nпродукта\"\r\n";
    let done = import_file(
        &admin,
        &project,
        &sms,
        "clients.csv",
        semicolons.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(
        (done["rows"].clone(), done["created"].clone()),
        (json!(2), json!(2)),
        "{done}"
    );
    let list = requests_of(&admin, &project, &sms, &done).await;
    let items = list["items"].as_array().expect("items");
    let first = items
        .iter()
        .find(|r| column(r, "gender")["value"] == "1")
        .expect("first");
    assert_eq!(column(first, "age")["value"], "52,5");
    assert_eq!(column(first, "reg_region_nm")["value"], "Москва; ЦАО");
    assert_eq!(column(first, "super_clust")["value"], "b. \"ЗП\"");
    let second = items
        .iter()
        .find(|r| column(r, "gender")["value"] == "0")
        .expect("second");
    assert_eq!(column(second, "age")["value"], "NULL");
    assert_eq!(column(second, "reg_region_nm")["value"], Value::Null);
    assert_eq!(column(second, "super_clust")["value"], "k. Без\r\nпродукта");

    // Commas, no BOM, LF; an empty row and a row with a value past the header are reported by
    // number, the others recorded; a repeated client counts as a duplicate.
    let commas = "gender,age\n1,30\n,\n0,41,extra\n1,30\n0,\"7\"\n";
    let done = import_file(
        &admin,
        &project,
        &email,
        "commas.csv",
        commas.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(done["rows"], 5, "{done}");
    assert_eq!(done["created"], 2, "{done}");
    assert_eq!(done["duplicates"], 1, "{done}");
    let rejected = done["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), 2, "{done}");
    assert_eq!(rejected[0]["row"], 3);
    assert_eq!(rejected[0]["reason"], "the row has no values");
    assert_eq!(rejected[1]["row"], 4);
    let list = requests_of(&admin, &project, &email, &done).await;
    assert_eq!(list["total"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undescribed_columns_are_listed_and_an_uploaded_decoding_describes_and_overrides() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let file = || {
        workbook(&[
            (
                "Клиенты",
                vec![vec!["age", "segment", "tenure"], vec!["30", "mass", "4"]],
            ),
            ("Ещё", vec![vec!["age", "segment"], vec!["44", "vip"]]),
        ])
    };
    let (status, body) = upload(
        &admin,
        &imports(&project, &sms),
        vec![("file", Some("two.xlsx"), file())],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "undescribed_columns");
    assert_eq!(
        body["error"]["fields"],
        json!(["decoding.segment", "decoding.tenure"])
    );

    let decoding =
        json!({"segment": "Сегмент клиента", "tenure": "Лет в банке", "age": "Полных лет"});
    let (status, body) = upload(
        &admin,
        &imports(&project, &sms),
        vec![
            ("file", Some("two.xlsx"), file()),
            (
                "decoding",
                Some("decoding.json"),
                decoding.to_string().into_bytes(),
            ),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let done = finished(&admin, &body).await;
    assert_eq!(done["created"], 2, "every sheet is read: {done}");
    let list = requests_of(&admin, &project, &sms, &done).await;
    let vip = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|r| column(r, "segment")["value"] == "vip")
        .expect("the second sheet's client");
    assert_eq!(column(vip, "age")["description"], "Полных лет");
    assert_eq!(column(vip, "segment")["description"], "Сегмент клиента");

    let (status, body) = upload(
        &admin,
        &imports(&project, &sms),
        vec![
            ("file", Some("two.xlsx"), file()),
            ("decoding", None, b"[1, 2]".to_vec()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["fields"], json!(["decoding"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_members_who_may_add_clients_import_and_follow_imports() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let (other_project, other_sms, _) = project_with_channels(&admin).await;
    let (_, performer) = server.user(&admin, "performer@bank.test").await;
    let (_, outsider) = server.user(&admin, "outsider@bank.test").await;
    let (status, body) = admin
        .post(
            &format!("/api/v1/projects/{project}/members"),
            json!({"email": "performer@bank.test", "role": "performer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = admin
        .post(
            &format!("/api/v1/projects/{other_project}/members"),
            json!({"email": "outsider@bank.test", "role": "performer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let csv = || b"gender;age\n1;30\n".to_vec();

    let done = import_file(&performer, &project, &sms, "mine.csv", csv()).await;
    assert_eq!(done["created"], 1);
    // A performer of another project neither imports here nor sees this import.
    let (status, _) = upload(
        &outsider,
        &imports(&project, &sms),
        vec![("file", Some("x.csv"), csv())],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = outsider
        .get(&format!("/api/v1/imports/{}", done["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // … but does in their own project; a channel not attached there is refused.
    let done = import_file(&outsider, &other_project, &other_sms, "theirs.csv", csv()).await;
    assert_eq!(done["created"], 1);
    let (status, body) = upload(
        &outsider,
        &imports(&other_project, &uuid::Uuid::new_v4().to_string()),
        vec![("file", Some("x.csv"), csv())],
    )
    .await;
    assert!(status.is_client_error(), "{status} {body}");
    let (status, _) = server
        .anonymous()
        .get(&format!("/api/v1/imports/{}", done["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generate_queues_an_offer_for_every_created_client() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let csv = b"gender;age;super_clust\n1;30;b. ZP\n0;41;k. Bez\n0;41;k. Bez\n".to_vec();
    let (status, body) = upload(
        &admin,
        &imports(&project, &sms),
        vec![
            ("file", Some("g.csv"), csv),
            ("generate", None, b"true".to_vec()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let mut done = finished(&admin, &body).await;
    for _ in 0..100 {
        if !done["generations_queued"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        done = finished(&admin, &body).await;
    }
    assert_eq!(done["created"], 2, "{done}");
    assert_eq!(done["generations_queued"], 2, "{done}");
    assert_eq!(
        count(&server, "SELECT count(*) FROM generation_jobs").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_database_is_read_by_name_read_only_and_never_shows_its_credentials() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let (_, performer) = server.user(&admin, "performer@bank.test").await;
    let (status, _) = admin
        .post(
            &format!("/api/v1/projects/{project}/members"),
            json!({"email": "performer@bank.test", "role": "performer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // The bank's table, in a database of the test cluster, read by a role with a password.
    let role = format!("reader_{}", uuid::Uuid::new_v4().simple());
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    for sql in [
        "CREATE SCHEMA bank".to_string(),
        "CREATE TABLE bank.clients (id int PRIMARY KEY, gender text, age numeric, super_clust text)".to_string(),
        "INSERT INTO bank.clients SELECT i, (i % 2)::text, 20 + i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'b. ZP' END FROM generate_series(1, 30) i".to_string(),
        "CREATE SEQUENCE bank.counter".to_string(),
        format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
        format!("GRANT USAGE ON SCHEMA bank TO {role}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA bank TO {role}"),
        format!("GRANT USAGE, UPDATE ON SEQUENCE bank.counter TO {role}"),
    ] {
        sqlx::query(&sql).execute(&server.pool).await.expect(&sql);
    }
    let (scheme_and_host, database) = server.url.rsplit_once('/').expect("url");
    let host = scheme_and_host
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(scheme_and_host.trim_start_matches("postgres://"));
    let dsn = format!("postgres://{role}:{password}@{host}/{database}");

    let source = json!({"name": "bank", "description": "CRM", "dsn": dsn,
        "query": "SELECT gender, age, super_clust FROM bank.clients ORDER BY id", "max_rows": 50});
    let (status, body) = performer
        .post("/api/v1/client-sources", source.clone())
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "only admins register sources: {body}"
    );
    let (status, body) = admin.post("/api/v1/client-sources", source.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(!body.to_string().contains(&password), "{body}");
    let (status, body) = admin.post("/api/v1/client-sources", source.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    for bad in [
        json!({"name": "x", "dsn": dsn, "query": "DELETE FROM bank.clients"}),
        json!({"name": "x", "dsn": dsn, "query": "SELECT 1; DROP TABLE bank.clients"}),
        json!({"name": "x y", "dsn": dsn, "query": "SELECT 1"}),
        json!({"name": "x", "dsn": "mysql://h/db", "query": "SELECT 1"}),
    ] {
        let (status, body) = admin.post("/api/v1/client-sources", bad.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let (status, body) = admin
        .post(
            "/api/v1/client-sources",
            json!({"name": "nowhere", "dsn": format!("postgres://{role}:{password}@{host}/no_such_database"), "query": "SELECT 1"}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(!body.to_string().contains(&password), "{body}");

    let (status, list) = performer.get("/api/v1/client-sources").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["name"], "bank");
    assert!(
        !list.to_string().contains(&password) && !list.to_string().contains(&role),
        "{list}"
    );

    let path = format!("/api/v1/projects/{project}/channels/{sms}/imports/from-source");
    let decoding = json!({"age": "Возраст"});
    let (status, body) = performer
        .post(&path, json!({"source": "bank", "decoding": decoding}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let done = finished(&performer, &body).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["created"], 30, "{done}");
    assert_eq!(done["source"], "source:bank");
    assert!(!done.to_string().contains(&password));
    let list = requests_of(&performer, &project, &sms, &done).await;
    assert_eq!(list["total"], 30);
    let item = &list["items"][0];
    let keys: Vec<&str> = item["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["gender", "age", "super_clust"],
        "the query's column order"
    );

    // The source's query runs read-only: a query that writes is refused, nothing recorded.
    sqlx::query(&format!(
        "INSERT INTO client_sources (name, dsn, query, max_rows, statement_timeout_ms, created_by)
         VALUES ('writer', '{dsn}', 'SELECT nextval(''bank.counter'') AS gender', 10, 1000, 'test'),
                ('small', '{dsn}', 'SELECT gender, age FROM bank.clients', 5, 1000, 'test'),
                ('slow', '{dsn}', 'SELECT gender, age FROM bank.clients CROSS JOIN pg_sleep(5)', 100, 200, 'test')"
    ))
    .execute(&server.pool)
    .await
    .expect("sources");
    let (status, body) = performer.post(&path, json!({"source": "writer"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("read-only"),
        "{body}"
    );
    let (status, body) = performer.post(&path, json!({"source": "small"})).await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "over the source's row limit: {body}"
    );
    let (status, body) = performer.post(&path, json!({"source": "slow"})).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "over the statement timeout: {body}"
    );
    assert!(!body.to_string().contains(&password), "{body}");
    let (status, body) = performer.post(&path, json!({"source": "unknown"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (counter,): (i64,) = sqlx::query_as("SELECT last_value FROM bank.counter")
        .fetch_one(&server.pool)
        .await
        .expect("counter");
    assert_eq!(counter, 1, "the sequence was never advanced");
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM events WHERE event_type = 'ClientRequestCreated'"
        )
        .await,
        30
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_imports_a_file_into_a_project_channel() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, _) = project_with_channels(&admin).await;
    let dir = std::env::temp_dir().join(format!(
        "offerflow-import-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("clients.csv");
    std::fs::write(&file, offerflow_http::demo::demo_csv(300)).expect("csv");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_offerflow"))
            .env("OFFERFLOW_LOG", "warn")
            .arg("--database-url")
            .arg(&server.url)
            .arg("import")
            .arg(&file)
            .args(["--project", &project, "--channel", &sms])
            .args(extra)
            .output()
            .expect("offerflow runs")
    };
    let output = run(&[]);
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("300 rows, 300 created, 0 duplicates, 0 rejected"),
        "{text}"
    );
    let list = requests_of(&admin, &project, &sms, &server.latest_write().await).await;
    assert_eq!(list["total"], 300);
    let output = run(&[]);
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        text.contains("300 rows, 0 created, 300 duplicates"),
        "{text}"
    );

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_offerflow"))
        .env("OFFERFLOW_LOG", "warn")
        .arg("--database-url")
        .arg(&server.url)
        .args([
            "import",
            "/nonexistent.csv",
            "--project",
            &project,
            "--channel",
            &sms,
        ])
        .output()
        .expect("offerflow runs");
    assert!(!output.status.success());
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM events WHERE event_type = 'ClientRequestCreated'"
        )
        .await,
        300
    );
}
