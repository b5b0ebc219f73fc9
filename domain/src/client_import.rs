//! Importing clients in bulk: the bank's column dictionary, and the record of who imported what
//! into which project channel.
//!
//! The clients themselves are ordinary `ClientRequestCreated` events (ids derived from the data,
//! so a file imported twice names the same requests); an import adds one `ClientsImported` event
//! of its own, written in the same transaction, so history shows who brought the clients in.
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DomainError;

/// The columns of the bank's client data set and what each means. Files with these columns
/// need no decoding typed by hand.
pub const BANK_COLUMNS: [(&str, &str); 25] = [
    ("gender", "Пол клиента (0 муж, 1 жен)"),
    ("age", "Возраст Клиента"),
    ("reg_region_nm", "Регион"),
    (
        "cnt_tr_all_3m",
        "Количество транзакций за последние 3 месяца",
    ),
    (
        "cnt_tr_top_up_3m",
        "Количество приходных операций за последние 3 месяца",
    ),
    (
        "cnt_tr_cash_3m",
        "Количество операций выдачи наличных за последние 3 месяца",
    ),
    (
        "cnt_tr_buy_3m",
        "Количество операций оплаты покупок за последние 3 месяца",
    ),
    (
        "cnt_tr_mobile_3m",
        "Количество операций оплаты связи за последние 3 месяца",
    ),
    (
        "cnt_tr_oil_3m",
        "Количество операций оплаты на АЗС за последние 3 месяца",
    ),
    (
        "cnt_tr_on_card_3m",
        "Количество операций переводов по карте за последние 3 месяца",
    ),
    (
        "cnt_tr_service_3m",
        "Количество операций оплаты услуг за последние 3 месяца",
    ),
    (
        "cnt_zp_12m",
        "Количество зарплатных поступлений за 12 месяцев",
    ),
    ("sum_zp_12m", "Сумма зарплатных поступлений за 12m"),
    ("limit_exchange_count", "Общее количество изменений лимита"),
    (
        "max_outstanding_amount_6m",
        "Максимальная задолженность по основному долгу за 6 месяцев",
    ),
    (
        "avg_outstanding_amount_3m",
        "Средняя задолженность по основному долгу за 3 месяца",
    ),
    (
        "cnt_dep_act",
        "Количество активных срочных депозитов, имеющих текущий остаток более 1000 р",
    ),
    (
        "sum_dep_now",
        "Текущая общая сумма (в рублях) срочных депозитов",
    ),
    (
        "avg_dep_avg_balance_1month",
        "Средний баланс по всем депозитам за последний месяц",
    ),
    (
        "max_dep_avg_balance_3month",
        "Максимальный баланс по всем депозитам за 3 месяца",
    ),
    ("app_vehicle_ind", "Наличие авто"),
    ("app_position_type_nm", "Уровень занимаемой позиции"),
    ("visit_purposes", "Цель последнего посещения офиса"),
    (
        "qnt_months_from_last_visit",
        "Количество месяцев с прошлого посещения офиса",
    ),
    ("super_clust", "Кластер клиента"),
];

/// The description of every column of an import: the uploaded decoding first, then the bank's
/// dictionary. Columns neither knows are refused together, so one answer lists them all.
pub fn describe_columns(
    columns: &[String],
    uploaded: &[(String, String)],
) -> Result<Vec<(String, String)>, DomainError> {
    let mut described = Vec::with_capacity(columns.len());
    let mut missing = Vec::new();
    for column in columns {
        let upload = uploaded
            .iter()
            .rev()
            .find(|(key, text)| key == column && !text.trim().is_empty())
            .map(|(_, text)| text.clone());
        let built_in = || {
            BANK_COLUMNS
                .iter()
                .find(|(key, _)| key == column)
                .map(|(_, text)| text.to_string())
        };
        match upload.or_else(built_in) {
            Some(text) => described.push((column.clone(), text)),
            None => missing.push(column.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(DomainError::MissingDescriptions { columns: missing });
    }
    Ok(described)
}

/// A row of an import that was not recorded, and why. Rows count from the header row (1), as a
/// spreadsheet numbers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRow {
    /// The sheet, for workbooks with several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    pub row: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientImportCommand {
    /// Records an import whose requests are written in the same transaction.
    Record {
        project_id: Uuid,
        channel_id: Uuid,
        /// The file name, or `source:<name>` for a database source.
        source: String,
        rows: u64,
        created: u64,
        duplicates: u64,
        rejected: Vec<RejectedRow>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientImportEvent {
    ClientsImported {
        project_id: Uuid,
        channel_id: Uuid,
        source: String,
        rows: u64,
        created: u64,
        duplicates: u64,
        rejected: Vec<RejectedRow>,
    },
}

impl DomainEvent for ClientImportEvent {
    fn event_type(&self) -> String {
        match self {
            ClientImportEvent::ClientsImported { .. } => "ClientsImported".to_string(),
        }
    }

    fn event_version(&self) -> String {
        crate::EVENT_SCHEMA_VERSION.to_string()
    }
}

/// One import, once recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientImport {
    pub project_id: Option<Uuid>,
    pub channel_id: Option<Uuid>,
    pub source: String,
    pub rows: u64,
    pub created: u64,
    pub duplicates: u64,
    pub rejected: Vec<RejectedRow>,
}

impl ClientImport {
    /// The event an import records; an import is recorded once.
    pub fn decide(
        &self,
        command: ClientImportCommand,
    ) -> Result<Vec<ClientImportEvent>, DomainError> {
        let ClientImportCommand::Record {
            project_id,
            channel_id,
            source,
            rows,
            created,
            duplicates,
            rejected,
        } = command;
        if self.project_id.is_some() {
            return Ok(vec![]);
        }
        if created + duplicates + rejected.len() as u64 != rows {
            return Err(DomainError::invalid(
                "rows",
                "created, duplicates and rejected rows must add up to the rows read",
            ));
        }
        Ok(vec![ClientImportEvent::ClientsImported {
            project_id,
            channel_id,
            source,
            rows,
            created,
            duplicates,
            rejected,
        }])
    }
}

impl Aggregate for ClientImport {
    const TYPE: &'static str = "ClientImport";
    type Command = ClientImportCommand;
    type Event = ClientImportEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ClientImportCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: ClientImportEvent) {
        match event {
            ClientImportEvent::ClientsImported {
                project_id,
                channel_id,
                source,
                rows,
                created,
                duplicates,
                rejected,
            } => {
                self.project_id = Some(project_id);
                self.channel_id = Some(channel_id);
                self.source = source;
                self.rows = rows;
                self.created = created;
                self.duplicates = duplicates;
                self.rejected = rejected;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn the_bank_columns_need_no_decoding() {
        let all: Vec<String> = BANK_COLUMNS.iter().map(|(k, _)| k.to_string()).collect();
        let described = describe_columns(&all, &[]).expect("all known");
        assert_eq!(described.len(), 25);
        assert_eq!(
            described[24],
            ("super_clust".into(), "Кластер клиента".into())
        );
    }

    #[test]
    fn an_upload_overrides_and_adds_descriptions() {
        let uploaded = vec![
            ("age".to_string(), "Полных лет".to_string()),
            ("segment".to_string(), "Сегмент".to_string()),
        ];
        let described = describe_columns(&columns(&["age", "segment", "gender"]), &uploaded)
            .expect("described");
        assert_eq!(described[0].1, "Полных лет");
        assert_eq!(described[1].1, "Сегмент");
        assert_eq!(described[2].1, "Пол клиента (0 муж, 1 жен)");
    }

    #[test]
    fn undescribed_columns_are_all_listed() {
        let error = describe_columns(&columns(&["age", "x1", "x2"]), &[("x3".into(), "?".into())])
            .expect_err("x1 and x2 are unknown");
        assert_eq!(
            error,
            DomainError::MissingDescriptions {
                columns: columns(&["x1", "x2"])
            }
        );
    }

    #[test]
    fn an_import_is_recorded_once_and_its_counts_add_up() {
        let record = |created| ClientImportCommand::Record {
            project_id: Uuid::nil(),
            channel_id: Uuid::nil(),
            source: "clients.xlsx".into(),
            rows: 3,
            created,
            duplicates: 1,
            rejected: vec![RejectedRow {
                sheet: None,
                row: 4,
                reason: "the row has no values".into(),
            }],
        };
        let mut import = ClientImport::default();
        assert!(import.decide(record(2)).is_err());
        let events = import.decide(record(1)).expect("recorded");
        assert_eq!(events.len(), 1);
        import.apply(events[0].clone());
        assert!(import.decide(record(1)).expect("repeat").is_empty());
    }
}
