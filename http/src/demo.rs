//! Made-up clients with the bank data set's 25 columns, from a deterministic generator: the
//! embedded demo's client source, the import benchmarks and tests. Never real people.
use serde_json::{json, Value};

const REGIONS: [&str; 8] = [
    "Москва",
    "Санкт-Петербург",
    "Республика Татарстан",
    "Свердловская область",
    "Новосибирская область",
    "Краснодарский край",
    "Республика Саха (Якутия)",
    "Ханты-Мансийский автономный округ - Югра",
];
const POSITIONS: [&str; 5] = ["Специалист", "Руководитель", "Рабочий", "Служащий", "NULL"];
const PURPOSES: [&str; 5] = ["DCARD", "CCARD", "DEPOSIT", "CREDIT", "NULL"];
const CLUSTERS: [&str; 6] = [
    "a. Супер-ЗП (6,15)",
    "b. ЗП",
    "c. Депозиты",
    "d. Транзакционные",
    "e. Кредитные",
    "k. Без продукта",
];

/// splitmix64: small, fast, and the same numbers on every machine.
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// Kopecks-precise amounts, as the bank's exports show them.
    fn amount(&mut self, max_rubles: u64) -> f64 {
        self.below(max_rubles * 100) as f64 / 100.0
    }
}

/// Client `n` of the made-up data set (the same `n` gives the same client), columns in the
/// data set's order.
pub fn demo_client(n: u64) -> Vec<(String, Value)> {
    let mut r = Numbers(n.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x6f66_6665_72);
    let all = r.below(400);
    // A fifth of the debts are unknown, written `NULL` as the bank's exports write them.
    let maybe_null = |r: &mut Numbers, max_rubles: u64| {
        let value = r.amount(max_rubles);
        if r.below(5) == 0 {
            json!("NULL")
        } else {
            json!(value)
        }
    };
    let fields = vec![
        ("gender", json!(r.below(2).to_string())),
        ("age", json!(18.0 + r.below(60_000) as f64 / 1000.0)),
        ("reg_region_nm", json!(r.pick(&REGIONS))),
        ("cnt_tr_all_3m", json!(all.to_string())),
        ("cnt_tr_top_up_3m", json!(r.below(40).to_string())),
        ("cnt_tr_cash_3m", json!(r.below(20).to_string())),
        ("cnt_tr_buy_3m", json!(r.below(all + 1).to_string())),
        ("cnt_tr_mobile_3m", json!(r.below(15).to_string())),
        ("cnt_tr_oil_3m", json!(r.below(50).to_string())),
        ("cnt_tr_on_card_3m", json!(r.below(30).to_string())),
        ("cnt_tr_service_3m", json!(r.below(10).to_string())),
        ("cnt_zp_12m", json!(r.below(40).to_string())),
        ("sum_zp_12m", json!(r.amount(3_000_000))),
        ("limit_exchange_count", json!(r.below(5))),
        ("max_outstanding_amount_6m", maybe_null(&mut r, 500_000)),
        ("avg_outstanding_amount_3m", maybe_null(&mut r, 300_000)),
        ("cnt_dep_act", json!(r.below(4).to_string())),
        ("sum_dep_now", json!(r.amount(2_000_000))),
        ("avg_dep_avg_balance_1month", json!(r.amount(2_000_000))),
        ("max_dep_avg_balance_3month", json!(r.amount(2_500_000))),
        ("app_vehicle_ind", json!(r.below(2).to_string())),
        ("app_position_type_nm", json!(r.pick(&POSITIONS))),
        ("visit_purposes", json!(r.pick(&PURPOSES))),
        ("qnt_months_from_last_visit", json!(r.below(36))),
        ("super_clust", json!(r.pick(&CLUSTERS))),
    ];
    fields
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
}

/// Clients `0..n` as CSV text (`;`-separated, as Excel writes it in Russia).
pub fn demo_csv(n: u64) -> String {
    let mut out = String::new();
    let header: Vec<String> = demo_client(0).into_iter().map(|(k, _)| k).collect();
    out.push_str(&header.join(";"));
    out.push('\n');
    for i in 0..n {
        let cells: Vec<String> = demo_client(i)
            .into_iter()
            .map(|(_, v)| match v {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect();
        out.push_str(&cells.join(";"));
        out.push('\n');
    }
    out
}

/// How many clients the demo table holds.
pub const DEMO_CLIENTS: u64 = 1_000;

/// The embedded demo's client source: a `demo_clients` table in a schema of its own, filled
/// once, and a source named `demo` reading it.
pub async fn install_demo_source(pool: &sqlx::PgPool, url: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let columns: Vec<String> = demo_client(0).into_iter().map(|(k, _)| k).collect();
    let mut tx = pool.begin().await?;
    sqlx::query("CREATE SCHEMA IF NOT EXISTS demo")
        .execute(&mut *tx)
        .await?;
    // Every value is kept as JSON so numbers stay numbers and text stays text.
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS demo.demo_clients (n bigint PRIMARY KEY, client json NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM demo.demo_clients")
        .fetch_one(&mut *tx)
        .await?;
    if count == 0 {
        let ns: Vec<i64> = (0..DEMO_CLIENTS as i64).collect();
        let clients: Vec<String> = (0..DEMO_CLIENTS)
            .map(|n| {
                let object: serde_json::Map<String, Value> = demo_client(n).into_iter().collect();
                Value::Object(object).to_string()
            })
            .collect();
        sqlx::query(
            "INSERT INTO demo.demo_clients (n, client) SELECT * FROM UNNEST($1::int8[], $2::text[]::json[])",
        )
        .bind(&ns)
        .bind(&clients)
        .execute(&mut *tx)
        .await
        .context("filling the demo client table")?;
    }
    tx.commit().await?;
    let select: Vec<String> = columns
        .iter()
        .map(|c| format!("client->'{c}' AS {c}"))
        .collect();
    let query = format!(
        "SELECT {} FROM demo.demo_clients ORDER BY n",
        select.join(", ")
    );
    crate::routes::imports::put_source(
        pool,
        "demo",
        "Made-up clients with the bank data set's 25 columns",
        url,
        &query,
    )
    .await
}
