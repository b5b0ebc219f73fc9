//! The web interface end to end, in Debian's headless Chromium driven over WebDriver, against a
//! real server with the real model: a manager's whole flow from sign-in to the dashboard, and a
//! performer's, where the steps only managers may take fail cleanly. Each test saves a
//! screenshot of every page it visits under target/e2e-screenshots/<test>/.
mod common;
mod e2e_support;

use common::{
    client_data, llama, project_with_channels, worker, TestServer, ADMIN_EMAIL, PASSWORD,
};
use e2e_support::Browser;
use reqwest::StatusCode;
use serde_json::json;

/// A client file with the shape of the bank's clients_dataset.xlsx (its 25 columns, in its
/// order), as CSV: eight clients, and one column of the marketer's own.
const CLIENTS_CSV: &str = "\
gender,age,reg_region_nm,cnt_tr_all_3m,cnt_tr_top_up_3m,cnt_tr_cash_3m,cnt_tr_buy_3m,cnt_tr_mobile_3m,cnt_tr_oil_3m,cnt_tr_on_card_3m,cnt_tr_service_3m,cnt_zp_12m,sum_zp_12m,limit_exchange_count,max_outstanding_amount_6m,avg_outstanding_amount_3m,cnt_dep_act,sum_dep_now,avg_dep_avg_balance_1month,max_dep_avg_balance_3month,app_vehicle_ind,app_position_type_nm,visit_purposes,qnt_months_from_last_visit,super_clust,preferred_contact
0,52.7,Ханты-Мансийский автономный округ - Югра,201,18,6,97,7,46,11,2,33,1217025.56,0,NULL,NULL,0,279.88,277.87,276.03,0, ,DCARD,10,\"a. Супер-ЗП (6,15)\",SMS
0,26.9,Республика Татарстан (Татарстан),9,3,0,0,0,0,6,0,4,106140,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL, ,DCARD,15,c. Масс-ЗП закредитованные (12),SMS
1,41.2,Москва,150,12,3,120,9,0,4,2,12,980000,1,150000,120000,1,500000,480000,510000,1,Специалист,CCARD,3,b. ЗП-клиенты (7),SMS
1,33.5,Санкт-Петербург,88,6,10,60,5,3,2,2,12,720000,0,NULL,NULL,0,0,0,0,0,Специалист,DCARD,6,\"a. Супер-ЗП (6,15)\",SMS
0,61.0,Республика Саха (Якутия),20,3,12,4,1,0,0,0,0,0,NULL,NULL,NULL,2,1200000,1150000,1190000,0,Пенсионер,DEPOSIT,2,k. Без продукта,SMS
1,28.3,Новосибирская область,240,20,2,200,10,5,3,0,12,610000,2,90000,60000,0,NULL,NULL,NULL,0,Менеджер,CCARD,1,b. ЗП-клиенты (7),SMS
0,45.8,Краснодарский край,60,4,20,30,3,8,1,0,6,300000,NULL,NULL,NULL,1,80000,75000,82000,1,Водитель,DCARD,12,c. Масс-ЗП закредитованные (12),SMS
1,37.1,Свердловская область,130,10,4,100,8,2,5,1,12,850000,1,40000,30000,0,NULL,NULL,NULL,0,Бухгалтер,CCARD,4,k. Без продукта,SMS
";

/// The description of the column the bank's dictionary does not know.
const DECODING: &str = r#"{"preferred_contact": "Предпочтительный канал связи"}"#;

fn fixtures() -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("offerflow-e2e-files-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("fixture folder");
    let csv = dir.join("clients_dataset.csv");
    let decoding = dir.join("client_data_decoding.json");
    std::fs::write(&csv, CLIENTS_CSV).expect("fixture written");
    std::fs::write(&decoding, DECODING).expect("fixture written");
    (csv, decoding)
}

async fn sign_in(b: &mut Browser, base: &str, email: &str) {
    b.goto(&format!("{base}/")).await;
    b.find("input[name=email]").await;
    b.screenshot("sign-in").await;
    b.fill("input[name=email]", email).await;
    b.fill("input[name=password]", PASSWORD).await;
    b.press("form button[type=submit]").await;
    b.wait_for(
        "the projects page",
        "return location.pathname === '/projects' && document.querySelector('main h1')?.textContent === 'Проекты'",
    )
    .await;
}

/// On the channel page: drops the fixture into the import, checks the preview, imports, and
/// returns the report's text.
async fn import_clients(b: &mut Browser) -> String {
    let (csv, decoding) = fixtures();
    b.fill("input[name=decoding]", &decoding.display().to_string())
        .await;
    b.fill("input[data-test=import-file]", &csv.display().to_string())
        .await;
    b.wait_for(
        "the preview with the descriptions",
        "return document.querySelectorAll('.preview tbody tr').length === 5 && document.querySelector('.preview').innerText.includes('preferred_contact — ')",
    )
    .await;
    let described = b.text_of("[data-test=described]").await;
    for expected in [
        "gender — Пол клиента (0 муж, 1 жен)",
        "super_clust — ",
        "preferred_contact — Предпочтительный канал связи",
    ] {
        assert!(described.contains(expected), "{expected} in {described}");
    }
    assert_eq!(
        b.text_of("[data-test=undescribed]").await,
        "Колонки без описания: —"
    );
    b.screenshot("import-preview").await;
    b.press("button[data-test=start-import]").await;
    let report = b.text_of("[data-test=import-summary]").await;
    b.wait_for(
        "the imported clients in the table",
        "return document.querySelectorAll('table.requests tbody tr[data-request]').length === 8",
    )
    .await;
    b.screenshot("imported").await;
    report
}

/// Selects the first five rows, generates, and waits for their offers to show in the table
/// without the page being loaded again.
async fn generate_five(b: &mut Browser) {
    b.run("window.__samePage = 'still here'", json!([])).await;
    for n in 1..=5 {
        b.press(&format!(
            "table.requests tbody tr[data-request]:nth-child({n}) td:first-child input[type=checkbox]"
        ))
        .await;
    }
    assert_eq!(b.text_of("[data-test=selection]").await, "5 выбрано");
    b.press("button[data-test=generate-selected]").await;
    b.wait_for("the generation to start", "return document.querySelector('[data-test=progress]')?.innerText.includes('Ход генерации')").await;
    b.screenshot("generating").await;
    b.wait_for(
        "five offers in the table",
        "return document.querySelectorAll('table.requests td.offer .offer-text').length === 5",
    )
    .await;
    let same = b.run("return window.__samePage", json!([])).await;
    assert_eq!(
        same, "still here",
        "the offers appeared without the page being reloaded"
    );
    let offers: Vec<String> = serde_json::from_value(
        b.run(
            "return [...document.querySelectorAll('table.requests td.offer .offer-text')].map(e => e.textContent)",
            json!([]),
        )
        .await,
    )
    .expect("texts");
    assert!(offers.iter().all(|t| !t.trim().is_empty()), "{offers:?}");
    b.screenshot("offers").await;
}

/// Opens the first client with an offer, rates it and records a sale.
async fn rate_and_sell(b: &mut Browser) {
    b.press("table.requests tbody tr[data-status=ok] td:nth-child(2) a")
        .await;
    b.find("li.msg.offer button[data-rate=ok]").await;
    b.screenshot("request").await;
    b.press("li.msg.offer button[data-rate=ok]").await;
    b.find("li.msg.offer[data-rating=ok]").await;
    b.press("select[name=success_type] option[value=sold]")
        .await;
    b.wait_for(
        "the outcome saved",
        "return [...document.querySelectorAll('.toast.ok')].some(t => t.textContent === 'Сохранено')",
    )
    .await;
    // Read back from the server: the page shown again has the outcome and the rating.
    b.run("location.reload()", json!([])).await;
    b.wait_for(
        "the request page after a reload",
        "return document.querySelector('select[name=success_type]')?.value === 'sold' && !!document.querySelector('li.msg.offer[data-rating=ok]')",
    )
    .await;
    b.screenshot("rated-and-sold").await;
}

/// The request's history and its state at the first moment; the SMS prompt changed and its
/// earlier version's texts; a catalog edit (refused, then accepted); the admin pages.
async fn look_back_and_administer(
    b: &mut Browser,
    base: &str,
    request_url: &str,
    project_id: &str,
) {
    // The timeline: added, asked, written, rated, sold, oldest first, in the marketer's words.
    b.goto(request_url).await;
    b.wait_for(
        "the request's timeline",
        "const items = [...document.querySelectorAll('section.history ol.timeline li strong')].map(e => e.textContent);
         return items.length >= 5 && items[0] === 'Клиент добавлен' && items.includes('Текст написан')
           && items.includes('Записан результат')",
    )
    .await;
    b.screenshot("history").await;
    // Its state right after it was added: no offer yet, nothing to press.
    b.press("section.history ol.timeline li:first-child a")
        .await;
    b.wait_for(
        "the state at the first moment",
        "return new URLSearchParams(location.search).has('as_of') && !!document.querySelector('p.banner')
           && document.querySelector('[data-test=request-status]')?.textContent === 'новая'
           && !document.querySelector('li.msg.offer') && !document.querySelector('[data-test=regenerate]')",
    )
    .await;
    b.screenshot("history-as-of").await;

    // A new SMS prompt: version 2; version 1 keeps the five texts it produced.
    b.goto(&format!("{base}/projects/{project_id}")).await;
    b.press("article[data-channel=SMS] [data-test=edit-prompt]")
        .await;
    b.replace(
        "dialog textarea[name=prompt]",
        "Коротко, дружелюбно, с выгодой для клиента в первой фразе.",
    )
    .await;
    b.press("dialog button.primary").await;
    b.wait_for(
        "the SMS channel at version 2",
        "return document.querySelector('article[data-channel=SMS] p.muted')?.textContent.includes('версия 2')",
    )
    .await;
    b.press("article[data-channel=SMS] [data-test=prompt-versions]")
        .await;
    b.wait_for(
        "both versions listed",
        "const items = document.querySelectorAll('dialog ol.versions > li');
         return items.length === 2 && items[0].textContent.includes('0 текстов') && items[1].textContent.includes('5 текстов')",
    )
    .await;
    b.press("dialog [data-test=version-offers-1]").await;
    b.wait_for(
        "version 1's texts",
        "return document.querySelectorAll('dialog .version-offers[data-version=\"1\"] ul.offers li').length === 5",
    )
    .await;
    b.screenshot("prompt-versions").await;
    b.press("dialog .actions button").await;

    // The catalog: a product without a name is refused with the field named, then renamed.
    b.goto(&format!("{base}/catalog")).await;
    b.press("tr[data-key=CC] button").await;
    b.replace("dialog input[name=name]", " ").await;
    b.press("dialog button.primary").await;
    // The error line is there, empty, before the server answers: wait for its words.
    let refused = b
        .wait_for(
            "the refusal",
            "return document.querySelector('dialog p.error')?.textContent",
        )
        .await;
    let refused = refused.as_str().unwrap_or_default().to_string();
    assert!(
        refused.starts_with("Проверьте поле «Название»") && refused.contains("name"),
        "{refused}"
    );
    b.screenshot("catalog-refused").await;
    b.replace("dialog input[name=name]", "Кредитная карта «Осень»")
        .await;
    b.press("dialog button.primary").await;
    b.wait_for(
        "the renamed product",
        "return !document.querySelector('dialog') && document.querySelector('tr[data-key=CC] td:nth-child(2)')?.textContent === 'Кредитная карта «Осень»'",
    )
    .await;
    b.screenshot("catalog").await;

    // Administration: users, a new API token shown once, dead jobs, the exporter.
    b.goto(&format!("{base}/admin/users")).await;
    b.wait_for(
        "the users",
        "return [...document.querySelectorAll('main table tbody td')].some(td => td.textContent === 'admin@bank.test')",
    )
    .await;
    b.screenshot("admin-users").await;
    b.goto(&format!("{base}/admin/tokens")).await;
    b.fill("main form input[name=name]", "Выгрузка в CRM").await;
    b.press("main form button[type=submit]").await;
    let secret = b
        .wait_for(
            "the new token, shown once",
            "const v = document.querySelector('dialog input.mono')?.value; return v && v.length > 20 && v",
        )
        .await;
    assert!(secret.as_str().is_some_and(|s| !s.is_empty()));
    b.screenshot("admin-token").await;
    b.press("dialog button.primary").await;
    b.wait_for(
        "the token listed",
        "return [...document.querySelectorAll('main table tbody td')].some(td => td.textContent === 'Выгрузка в CRM')",
    )
    .await;
    b.goto(&format!("{base}/admin/dead-jobs")).await;
    b.wait_for(
        "the dead jobs",
        "return document.querySelector('main table tbody td.muted')?.textContent === 'Пока пусто'",
    )
    .await;
    b.screenshot("admin-dead-jobs").await;
    b.goto(&format!("{base}/admin/exporter")).await;
    let state = b.text_of("[data-test=export-state]").await;
    assert!(state.contains("выключена"), "{state}");
    b.screenshot("admin-exporter").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manager_imports_generates_rates_sells_and_sees_it_on_the_dashboard() {
    let server = TestServer::start_with_worker(Some(worker(llama(4096), 3))).await;
    let mut b = Browser::start("manager").await;
    sign_in(&mut b, &server.base, ADMIN_EMAIL).await;
    b.screenshot("projects").await;

    // Create a project.
    b.press("main .head button.primary").await;
    b.fill("dialog input[name=name]", "Осенняя кампания").await;
    b.fill(
        "dialog textarea[name=description]",
        "Кэшбэк **осенью** для зарплатных клиентов",
    )
    .await;
    b.screenshot("new-project").await;
    b.press("dialog button[type=submit]").await;
    let project_id = b
        .wait_for(
            "the new project's page",
            "const m = location.pathname.match(/^\\/projects\\/([0-9a-f-]{36})$/); return m && document.querySelector('main h1')?.textContent.includes('Осенняя кампания') && m[1]",
        )
        .await;
    let project_id = project_id.as_str().expect("project id").to_string();

    // Attach SMS and EMAIL.
    for key in ["SMS", "EMAIL"] {
        b.press(&format!("input[data-key={key}]")).await;
    }
    b.press("form[data-test=attach-channels] button[type=submit]")
        .await;
    b.find("article[data-channel=EMAIL]").await;
    b.find("article[data-channel=SMS]").await;
    b.screenshot("project").await;

    // The SMS channel: import, generate for five, watch the offers arrive.
    b.press("article[data-channel=SMS] a.button.primary").await;
    let report = import_clients(&mut b).await;
    assert!(
        report.starts_with("8 строк · 8 создано · 0 дубликатов · 0 отклонено"),
        "{report}"
    );
    generate_five(&mut b).await;

    // What the user sees is what the server has.
    let admin = server.admin().await;
    let (status, channels) = admin
        .get(&format!("/api/v1/projects/{project_id}/channels"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let sms_id = channels["items"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["key"] == "SMS")
        .expect("SMS attached")["channel_id"]
        .as_str()
        .expect("id")
        .to_string();
    let (_, requests) = admin
        .get(&format!(
            "/api/v1/projects/{project_id}/channels/{sms_id}/requests?status=ok"
        ))
        .await;
    assert_eq!(requests["total"], 5, "{requests}");

    rate_and_sell(&mut b).await;
    let request_url = b.url().await;

    // The dashboard of this project counts the sale.
    b.goto(&format!(
        "{}/statistics?project_id={project_id}",
        server.base
    ))
    .await;
    assert_eq!(b.text_of("[data-tile=sold] .value").await, "1");
    assert_eq!(b.text_of("[data-tile=requests] .value").await, "8");
    let conversion = b.text_of("table[data-test=conversion] tbody").await;
    assert!(conversion.contains("СМС"), "{conversion}");
    b.screenshot("dashboard").await;
    look_back_and_administer(&mut b, &server.base, &request_url, &project_id).await;

    // The same pages are usable on a phone-sized screen.
    b.resize(360, 800).await;
    b.screenshot("dashboard-360").await;
    b.goto(&format!(
        "{}/projects/{project_id}/channels/{sms_id}",
        server.base
    ))
    .await;
    b.find("table.requests tbody tr[data-request]").await;
    b.screenshot("channel-360").await;
    b.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_performer_does_their_part_and_the_managers_steps_fail_cleanly() {
    let server = TestServer::start_with_worker(Some(worker(llama(4096), 3))).await;
    let admin = server.admin().await;
    let (project, sms, email) = project_with_channels(&admin).await;
    let (_, _performer) = server.user(&admin, "performer@bank.test").await;
    let (status, body) = admin
        .post(
            &format!("/api/v1/projects/{project}/members"),
            json!({"email": "performer@bank.test", "role": "performer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A client already there, so the table is not empty when the performer arrives.
    let (status, body) = admin
        .post(
            &format!("/api/v1/projects/{project}/channels/{email}/requests"),
            client_data(1),
        )
        .await;
    assert!(status.is_success(), "{body}");

    let mut b = Browser::start("performer").await;
    sign_in(&mut b, &server.base, "performer@bank.test").await;
    let nav = b
        .run(
            "return document.querySelector('header nav').innerText",
            json!([]),
        )
        .await;
    assert!(
        !nav.as_str().unwrap_or_default().contains("Статистика"),
        "a performer is not offered the dashboard: {nav}"
    );
    b.press("article.project h2 a").await;
    b.find("article[data-channel=SMS]").await;
    let page = b.main_text().await;
    assert!(!page.contains("Подключить каналы"), "{page}");
    assert!(!page.contains("Изменить промпт"), "{page}");
    assert!(!page.contains("Добавить участника"), "{page}");
    b.screenshot("project-as-performer").await;

    // What performers may do works: import, generate, rate, record an outcome.
    b.goto(&format!(
        "{}/projects/{project}/channels/{sms}",
        server.base
    ))
    .await;
    let report = import_clients(&mut b).await;
    assert!(report.contains("8 создано"), "{report}");
    generate_five(&mut b).await;
    rate_and_sell(&mut b).await;

    // The dashboard is the managers': asked for directly, it fails cleanly with the reason
    // and the rest of the interface keeps working.
    b.goto(&format!("{}/statistics?project_id={project}", server.base))
        .await;
    let refusal = b.text_of("main [role=alert], main [role=status]").await;
    b.screenshot("dashboard-refused").await;
    assert!(
        refusal.contains("У вас нет прав") || refusal.contains("manager"),
        "the refusal says why: {refusal}"
    );
    assert!(
        b.all("[data-tile]").await.is_empty(),
        "no figures are shown"
    );
    b.press("header nav a[href='/projects']").await;
    b.find("article.project").await;

    // Nothing the performer could not do happened: the members are as the admin left them.
    let (_, members) = admin
        .get(&format!("/api/v1/projects/{project}/members"))
        .await;
    assert_eq!(members["total"], 2, "{members}");
    b.quit().await;
    server.stop().await;
}

/// A page left for another keeps no connection open: the channel page's live progress stream
/// is closed when the page is hidden, even when the browser keeps the page for its back button.
/// Before, six visits held the browser's six connections to the server and the next page's
/// requests waited about a minute for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaving_the_live_channel_page_frees_its_connection() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (project, sms, email) = project_with_channels(&admin).await;
    let mut b = Browser::start("leaving").await;
    sign_in(&mut b, &server.base, ADMIN_EMAIL).await;
    for visit in 0..8 {
        let channel = if visit % 2 == 0 { &sms } else { &email };
        b.goto(&format!(
            "{}/projects/{project}/channels/{channel}",
            server.base
        ))
        .await;
        // Six connections per host: had the pages left behind kept theirs, this page's requests
        // would queue until the server dropped one (about a minute), not a few milliseconds.
        let drawn = b
            .wait_for(
                "the channel table",
                "const m = performance.getEntriesByName('offerflow:table'); return m.length && m[0].startTime",
            )
            .await;
        let drawn = drawn.as_f64().expect("ms since navigation");
        assert!(
            drawn < 10_000.0,
            "visit {visit}: the table was drawn {drawn:.0} ms after navigation"
        );
    }
    b.screenshot("channel").await;
    b.quit().await;
    server.stop().await;
}
