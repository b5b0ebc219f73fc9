//! Importing clients in bulk: reading workbooks, CSV files and database sources into rows, and
//! recording a whole import in one transaction.
//!
//! A file-level problem (not a spreadsheet, no header, undescribed columns, over a limit) is
//! found before anything is written and answered at once; a row that is wrong on its own is
//! reported with its number and the others are recorded. The requests' ids derive from the
//! project, the channel and the client's data, so duplicates (in the file or already in the
//! channel) are recognised by the log's primary key, and an import that was interrupted can be
//! sent again and ends with the same requests.
use std::collections::HashSet;
use std::io::Cursor;
use std::time::Duration;

use anyhow::Context;
use calamine::{open_workbook_auto_from_rs, Data, Range, Reader};
use domain::client_import::{describe_columns, ClientImport, ClientImportCommand, RejectedRow};
use domain::client_request::{validate_client_data, ClientRequestEvent};
use domain::ids;
use domain::metadata::EventMetadata;
use domain::DomainError;
use projections::ConsistencyToken;
use serde_json::{Map, Number, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ApiError;
use crate::event_store::{insert_new_in, EventRow};
use crate::state::AppState;

/// One client as read: its row number and its values in the file's column order.
#[derive(Debug, Clone)]
pub struct ClientRow {
    pub sheet: Option<String>,
    pub row: u64,
    pub values: Vec<(String, Value)>,
    /// Why the row cannot be recorded, found while reading it.
    pub problem: Option<String>,
}

/// A file read into rows, before anything is recorded.
#[derive(Debug, Default)]
pub struct ClientTable {
    /// Every column of every sheet, in the order first seen.
    pub columns: Vec<String>,
    pub rows: Vec<ClientRow>,
}

/// Limits on one import.
#[derive(Debug, Clone, Copy)]
pub struct ImportLimits {
    pub max_bytes: usize,
    pub max_rows: usize,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits {
            max_bytes: 50 * 1024 * 1024,
            max_rows: 200_000,
        }
    }
}

fn unreadable(message: impl Into<String>) -> ApiError {
    ApiError::invalid("file", message)
}

pub fn too_many_rows(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "file: more than {limit} client rows (OFFERFLOW_IMPORT_MAX_ROWS); split the file"
    ))
}

pub fn too_many_bytes(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "file: larger than {limit} bytes (OFFERFLOW_IMPORT_MAX_BYTES)"
    ))
}

/// Reads a workbook (.xlsx, .xlsm, .xlsb, .xls, .ods) or a CSV file. The file name decides
/// which when it says; otherwise a zip or OLE signature means a workbook.
pub fn read_file(name: &str, bytes: &[u8], limits: ImportLimits) -> Result<ClientTable, ApiError> {
    if bytes.len() > limits.max_bytes {
        return Err(too_many_bytes(limits.max_bytes));
    }
    if bytes.is_empty() {
        return Err(unreadable("the file is empty"));
    }
    let lower = name.to_lowercase();
    let csv_named = lower.ends_with(".csv") || lower.ends_with(".txt");
    let workbook_named = [".xlsx", ".xlsm", ".xlsb", ".xls", ".ods"]
        .iter()
        .any(|ext| lower.ends_with(ext));
    let looks_like_workbook =
        bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]);
    if workbook_named || (!csv_named && looks_like_workbook) {
        read_workbook(bytes, limits)
    } else {
        read_csv(bytes, limits)
    }
}

fn read_workbook(bytes: &[u8], limits: ImportLimits) -> Result<ClientTable, ApiError> {
    let mut workbook = open_workbook_auto_from_rs(Cursor::new(bytes)).map_err(|e| {
        unreadable(format!(
            "not a readable spreadsheet (.xlsx, .xls, .xlsb, .ods) or it is damaged: {e}"
        ))
    })?;
    let names = workbook.sheet_names();
    let several = names.len() > 1;
    let mut table = ClientTable::default();
    for name in names {
        let range = workbook
            .worksheet_range(&name)
            .map_err(|e| unreadable(format!("sheet {name:?} cannot be read: {e}")))?;
        let sheet = several.then(|| name.clone());
        read_sheet(&mut table, sheet, &range, limits)?;
    }
    finish(table)
}

fn cell_text(cell: &Data) -> String {
    match cell {
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.trim().to_string(),
        Data::Empty => String::new(),
        other => other.to_string(),
    }
}

/// A cell as client data: text stays text (`NULL` included: the prompt leaves such values
/// out), whole numbers become integers as a JSON client would send them, empty cells null.
fn cell_value(cell: &Data) -> Result<Value, String> {
    Ok(match cell {
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => Value::String(s.clone()),
        Data::Int(i) => Value::from(*i),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => Value::from(*f as i64),
        Data::Float(f) => Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("{f} is not a number JSON can hold"))?,
        Data::Bool(b) => Value::Bool(*b),
        Data::DateTime(d) => Value::String(d.to_string()),
        Data::Error(e) => return Err(format!("the cell holds the spreadsheet error {e}")),
        Data::Empty => Value::Null,
    })
}

fn read_sheet(
    table: &mut ClientTable,
    sheet: Option<String>,
    range: &Range<Data>,
    limits: ImportLimits,
) -> Result<(), ApiError> {
    let Some((first_row, _)) = range.start() else {
        return Ok(()); // an empty sheet: nothing to read
    };
    let mut rows = range.rows();
    let Some(header) = rows.next() else {
        return Ok(());
    };
    let header: Vec<String> = header.iter().map(cell_text).collect();
    let data: Vec<&[Data]> = rows.collect();
    let columns = header_columns(sheet.as_deref(), &header, |index| {
        data.iter()
            .any(|row| row.get(index).is_some_and(|c| !matches!(c, Data::Empty)))
    })?;
    for (offset, cells) in data.into_iter().enumerate() {
        if table.rows.len() >= limits.max_rows {
            return Err(too_many_rows(limits.max_rows));
        }
        let mut values = Vec::with_capacity(columns.len());
        let mut problem = None;
        for (index, key) in &columns {
            let cell = cells.get(*index).unwrap_or(&Data::Empty);
            match cell_value(cell) {
                Ok(value) => values.push((key.clone(), value)),
                Err(why) => {
                    problem.get_or_insert(format!("{key}: {why}"));
                }
            }
        }
        table.rows.push(ClientRow {
            sheet: sheet.clone(),
            // 1-based, the header being the range's first row.
            row: u64::from(first_row) + offset as u64 + 2,
            values,
            problem,
        });
    }
    for (_, key) in columns {
        if !table.columns.contains(&key) {
            table.columns.push(key);
        }
    }
    Ok(())
}

/// The named columns of a header: (index, key). A column with values but no name, or a name
/// given twice, makes the file unreadable: its values could not be told apart.
fn header_columns(
    sheet: Option<&str>,
    header: &[String],
    has_values: impl Fn(usize) -> bool,
) -> Result<Vec<(usize, String)>, ApiError> {
    let place = sheet.map(|s| format!("sheet {s:?}, ")).unwrap_or_default();
    let mut columns = Vec::with_capacity(header.len());
    let mut seen = HashSet::new();
    for (index, key) in header.iter().enumerate() {
        if key.is_empty() {
            if has_values(index) {
                return Err(unreadable(format!(
                    "{place}column {} has values but no name in the header row",
                    index + 1
                )));
            }
            continue;
        }
        if !seen.insert(key.clone()) {
            return Err(unreadable(format!(
                "{place}the header names column {key:?} twice"
            )));
        }
        columns.push((index, key.clone()));
    }
    Ok(columns)
}

fn finish(table: ClientTable) -> Result<ClientTable, ApiError> {
    if table.columns.is_empty() {
        return Err(unreadable(
            "no header row: the first row must name the columns",
        ));
    }
    if table.rows.is_empty() {
        return Err(unreadable("the file has a header but no client rows"));
    }
    Ok(table)
}

/// The separator a CSV file uses: the one of `;`, `,` and tab found most often in its header
/// line (outside quotes). Excel writes `;` where the decimal mark is a comma.
fn detect_delimiter(text: &str) -> u8 {
    let mut counts = [(b';', 0usize), (b',', 0), (b'\t', 0)];
    let mut quoted = false;
    for c in text.bytes() {
        match c {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some(entry) = counts.iter_mut().find(|(d, _)| *d == c) {
                    entry.1 += 1;
                }
            }
            _ => {}
        }
    }
    counts
        .iter()
        .max_by_key(|(d, n)| (*n, *d == b','))
        .map(|(d, _)| *d)
        .unwrap_or(b',')
}

fn read_csv(bytes: &[u8], limits: ImportLimits) -> Result<ClientTable, ApiError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        unreadable(format!(
            "neither a spreadsheet nor UTF-8 CSV text (invalid UTF-8 at byte {})",
            e.valid_up_to()
        ))
    })?;
    if text.contains('\0') {
        return Err(unreadable(
            "neither a spreadsheet nor CSV text (it contains NUL bytes)",
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(detect_delimiter(text))
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        None => return finish(ClientTable::default()),
        Some(header) => header.map_err(|e| unreadable(format!("the header row: {e}")))?,
    };
    let header: Vec<String> = header.iter().map(|k| k.trim().to_string()).collect();
    let mut raw = Vec::new();
    for (offset, record) in records.enumerate() {
        if raw.len() >= limits.max_rows {
            return Err(too_many_rows(limits.max_rows));
        }
        let row = offset as u64 + 2;
        match record {
            Ok(record) => raw.push((row, record)),
            // A broken quote ends the readable part: what follows cannot be trusted.
            Err(e) => return Err(unreadable(format!("row {row}: {e}"))),
        }
    }
    let columns = header_columns(None, &header, |index| {
        raw.iter()
            .any(|(_, r)| r.get(index).is_some_and(|v| !v.is_empty()))
    })?;
    let mut table = ClientTable {
        columns: columns.iter().map(|(_, k)| k.clone()).collect(),
        rows: Vec::with_capacity(raw.len()),
    };
    for (row, record) in raw {
        let extra = record
            .iter()
            .skip(header.len())
            .any(|value| !value.trim().is_empty());
        let problem = extra.then(|| {
            format!(
                "the row has {} values but the header names {} columns",
                record.len(),
                header.len()
            )
        });
        let values = columns
            .iter()
            .map(|(index, key)| {
                let value = match record.get(*index) {
                    None | Some("") => Value::Null,
                    Some(text) => Value::String(text.to_string()),
                };
                (key.clone(), value)
            })
            .collect();
        table.rows.push(ClientRow {
            sheet: None,
            row,
            values,
            problem,
        });
    }
    finish(table)
}

/// The decoding part of an upload: a JSON object, column → description.
pub fn read_decoding(bytes: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let map: Map<String, Value> = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid("decoding", format!("must be a JSON object: {e}")))?;
    map.into_iter()
        .map(|(key, value)| match value {
            Value::String(text) => Ok((key, text)),
            _ => Err(ApiError::invalid(
                format!("decoding.{key}"),
                "must be a string",
            )),
        })
        .collect()
}

/// Everything needed to record an import, decided before anything is written.
pub struct ImportPlan {
    pub import_id: Uuid,
    pub project_id: Uuid,
    pub channel_id: Uuid,
    /// The file name, or `source:<name>`.
    pub source: String,
    pub table: ClientTable,
    pub descriptions: Vec<(String, String)>,
    pub metadata: EventMetadata,
}

/// Checks that every column is described (a 422 listing those that are not).
pub fn plan(
    import_id: Uuid,
    project_id: Uuid,
    channel_id: Uuid,
    source: String,
    table: ClientTable,
    uploaded: &[(String, String)],
    metadata: EventMetadata,
) -> Result<ImportPlan, ApiError> {
    let descriptions = describe_columns(&table.columns, uploaded).map_err(|e| match e {
        DomainError::MissingDescriptions { columns } => ApiError::Unprocessable {
            code: "undescribed_columns",
            message: format!(
                "decoding: no description for column(s) {}; upload a decoding JSON naming them",
                columns.join(", ")
            ),
            fields: columns.iter().map(|c| format!("decoding.{c}")).collect(),
        },
        other => other.into(),
    })?;
    let source: String = source.trim().chars().take(255).collect();
    Ok(ImportPlan {
        import_id,
        project_id,
        channel_id,
        source: if source.is_empty() {
            "import".into()
        } else {
            source
        },
        table,
        descriptions,
        metadata,
    })
}

/// What an import recorded.
#[derive(Debug, Clone, Default)]
pub struct ImportSummary {
    pub rows: u64,
    pub created: u64,
    pub duplicates: u64,
    pub rejected: Vec<RejectedRow>,
    pub created_ids: Vec<Uuid>,
    pub token: Option<ConsistencyToken>,
}

/// Events per INSERT statement; all of them share one transaction.
const CHUNK: usize = 2_000;

/// Marks the import as started; the status row then exists before any work.
pub async fn open_import(pool: &PgPool, plan: &ImportPlan, generate: bool) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO client_imports (id, project_id, channel_id, source, created_by, generate, rows)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(plan.import_id)
    .bind(plan.project_id)
    .bind(plan.channel_id)
    .bind(&plan.source)
    .bind(plan.metadata.actor.user_id().map(|u| u.to_string()).unwrap_or_else(|| plan.metadata.actor.id()))
    .bind(generate)
    .bind(plan.table.rows.len() as i64)
    .execute(pool)
    .await
    .context("recording the import's start")?;
    Ok(())
}

/// Records every valid row and the import itself in one transaction, or nothing.
pub async fn record_import(
    state: &AppState,
    plan: &ImportPlan,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<ImportSummary> {
    let total = plan.table.rows.len() as u64;
    let metadata = serde_json::to_value(plan.metadata.to_map())?;
    let mut summary = ImportSummary {
        rows: total,
        ..ImportSummary::default()
    };
    // Rows are checked and turned into events first: a row wrong on its own is reported and
    // skipped, the same client twice in the file counts once.
    let mut seen = HashSet::with_capacity(plan.table.rows.len());
    let mut events = Vec::with_capacity(plan.table.rows.len());
    for row in &plan.table.rows {
        let reject = |reason: String| RejectedRow {
            sheet: row.sheet.clone(),
            row: row.row,
            reason,
        };
        if let Some(problem) = &row.problem {
            summary.rejected.push(reject(problem.clone()));
            continue;
        }
        let empty = row.values.iter().all(|(_, v)| match v {
            Value::Null => true,
            Value::String(s) => s.trim().is_empty(),
            _ => false,
        });
        if empty {
            summary
                .rejected
                .push(reject("the row has no values".into()));
            continue;
        }
        let id = ids::client_request_id(plan.project_id, plan.channel_id, &row.values);
        if !seen.insert(id) {
            summary.duplicates += 1;
            continue;
        }
        let (client_data, client_data_decoding) =
            match validate_client_data(row.values.clone(), &plan.descriptions) {
                Ok(valid) => valid,
                Err(e) => {
                    summary.rejected.push(reject(e.to_string()));
                    continue;
                }
            };
        let event = ClientRequestEvent::ClientRequestCreated {
            project_id: plan.project_id,
            channel_id: plan.channel_id,
            client_id: None,
            source: plan.source.clone(),
            client_data,
            client_data_decoding,
        };
        events.push((
            id,
            event_row(
                "ClientRequest",
                id,
                "ClientRequestCreated",
                serde_json::to_value(&event)?,
                &metadata,
            ),
        ));
    }
    let mut tx = state.pool.begin().await?;
    // Held until commit: a `running` import whose row nobody holds has died (see `status`).
    sqlx::query("SELECT id FROM client_imports WHERE id = $1 FOR UPDATE")
        .bind(plan.import_id)
        .execute(&mut *tx)
        .await?;
    let mut done = summary.rejected.len() as u64 + summary.duplicates;
    progress(done, total);
    for chunk in events.chunks(CHUNK) {
        let rows: Vec<&EventRow> = chunk.iter().map(|(_, row)| row).collect();
        let recorded = insert_new_in(&mut *tx, &rows)
            .await
            .context("recording the imported client requests")?;
        summary.created += recorded.len() as u64;
        summary.duplicates += (chunk.len() - recorded.len()) as u64;
        summary
            .created_ids
            .extend(recorded.iter().filter_map(|id| id.parse::<Uuid>().ok()));
        done += chunk.len() as u64;
        progress(done, total);
    }
    let command = ClientImportCommand::Record {
        project_id: plan.project_id,
        channel_id: plan.channel_id,
        source: plan.source.clone(),
        rows: summary.rows,
        created: summary.created,
        duplicates: summary.duplicates,
        rejected: summary.rejected.clone(),
    };
    let import_events = ClientImport::default()
        .decide(command)
        .map_err(|e| anyhow::anyhow!("the import's counts: {e}"))?;
    let mut import_rows = Vec::new();
    for event in import_events {
        import_rows.push(event_row(
            "ClientImport",
            plan.import_id,
            "ClientsImported",
            serde_json::to_value(&event)?,
            &metadata,
        ));
    }
    let refs: Vec<&EventRow> = import_rows.iter().collect();
    let recorded = crate::event_store::insert_in(&mut *tx, &refs)
        .await
        .context("recording the import")?;
    summary.token = recorded;
    sqlx::query(
        "UPDATE client_imports SET status = 'done', created = $2, duplicates = $3, rejected = $4,
                consistency_token = $5, finished_at = now() WHERE id = $1",
    )
    .bind(plan.import_id)
    .bind(summary.created as i64)
    .bind(summary.duplicates as i64)
    .bind(serde_json::to_value(&summary.rejected)?)
    .bind(summary.token.map(|t| t.to_string()))
    .execute(&mut *tx)
    .await?;
    tx.commit().await.context("committing the import")?;
    state.engine.events_committed();
    for id in &summary.created_ids {
        // This process may remember the request as not yet created.
        state.bus.requests.forget(*id);
    }
    Ok(summary)
}

fn event_row(
    aggregate_type: &'static str,
    id: Uuid,
    event_type: &str,
    payload: Value,
    metadata: &Value,
) -> EventRow {
    EventRow {
        aggregate_type,
        aggregate_id: id.to_string(),
        sequence: 1,
        event_type: event_type.to_string(),
        event_version: domain::EVENT_SCHEMA_VERSION.to_string(),
        payload,
        metadata: metadata.clone(),
    }
}

/// Records that an import failed; nothing of it is in the log.
pub async fn fail_import(pool: &PgPool, import_id: Uuid, error: &str) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE client_imports SET status = 'failed', error = $2, finished_at = now()
          WHERE id = $1 AND status = 'running'",
    )
    .bind(import_id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Grace given to a just-opened import before its transaction holds its row.
pub const START_GRACE: Duration = Duration::from_secs(10);

/// An import still `running` whose row no transaction holds was interrupted (its process died
/// or lost the database) before it committed, so nothing of it was recorded: it is marked
/// failed, and sending the file again ends with the same result as an uninterrupted import.
pub async fn settle_abandoned(pool: &PgPool, import_id: Uuid) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let abandoned: Option<(Uuid,)> = sqlx::query_as(
        "SELECT id FROM client_imports
          WHERE id = $1 AND status = 'running' AND started_at < now() - make_interval(secs => $2)
          FOR UPDATE SKIP LOCKED",
    )
    .bind(import_id)
    .bind(START_GRACE.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    if abandoned.is_some() {
        sqlx::query(
            "UPDATE client_imports SET status = 'failed', finished_at = now(),
                    error = 'interrupted before it finished; nothing was recorded: import the file again'
              WHERE id = $1",
        )
        .bind(import_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_rows: usize) -> ImportLimits {
        ImportLimits {
            max_bytes: 1024,
            max_rows,
        }
    }

    fn message(error: ApiError) -> String {
        error.to_string()
    }

    #[test]
    fn the_separator_is_the_one_the_header_uses_outside_quotes() {
        assert_eq!(detect_delimiter("a;b;c\n1,5;2;3"), b';');
        assert_eq!(detect_delimiter("a,b,c\n1;2"), b',');
        assert_eq!(detect_delimiter("\"a;x\",b\n"), b',');
        assert_eq!(detect_delimiter("a\tb\n"), b'\t');
        assert_eq!(detect_delimiter("single\n1\n"), b',');
    }

    #[test]
    fn limits_name_themselves() {
        let error = read_file("a.csv", &[b'x'; 2048], limits(10)).expect_err("too big");
        assert!(matches!(error, ApiError::PayloadTooLarge(_)));
        assert!(message(error).contains("OFFERFLOW_IMPORT_MAX_BYTES"));
        let error = read_file("a.csv", b"age\n1\n2\n3\n", limits(2)).expect_err("too many");
        assert!(message(error).contains("OFFERFLOW_IMPORT_MAX_ROWS"));
        assert_eq!(
            read_file("a.csv", b"age\n1\n2\n", limits(2))
                .expect("at the limit")
                .rows
                .len(),
            2
        );
    }

    #[test]
    fn short_csv_rows_are_padded_with_nulls_and_values_stay_text() {
        let table = read_file("a.csv", b"a;b;c\n1;2\n", limits(10)).expect("read");
        assert_eq!(
            table.rows[0].values,
            vec![
                ("a".to_string(), Value::String("1".into())),
                ("b".to_string(), Value::String("2".into())),
                ("c".to_string(), Value::Null),
            ]
        );
        assert_eq!(table.rows[0].row, 2);
    }

    #[test]
    fn whole_numbers_from_a_workbook_become_integers() {
        assert_eq!(cell_value(&Data::Float(10.0)), Ok(Value::from(10)));
        assert_eq!(cell_value(&Data::Float(0.5)), Ok(serde_json::json!(0.5)));
        assert_eq!(
            cell_value(&Data::String("NULL".into())),
            Ok(Value::String("NULL".into()))
        );
        assert_eq!(cell_value(&Data::Empty), Ok(Value::Null));
    }
}
