//! What the model is told: the per-channel prompt a project channel starts with, and the chat
//! messages of one generation (persona, context, client, instruction) built from it.
use serde_json::Value;

use crate::chat::{ChatMessage, ChatRole};
use crate::client_request::{ClientField, ColumnDescription};

pub fn initial_channel_prompt(
    project_description: &str,
    product_description: &str,
    channel_description: &str,
) -> String {
    let project_description = project_description.trim();
    let mut prompt = String::new();
    if project_description.is_empty() {
        prompt.push_str(
            "При формировании маркетингового предложения необходимо учитывать следующую информацию о продукте, канале продажи и клиенте.",
        );
    } else {
        prompt.push_str(
            "При формировании маркетингового предложения необходимо учитывать информацию о поводе продажи, банковском продукте, канале продажи и клиенте.",
        );
        prompt.push_str("\n\nХарактеристики повода продажи: ");
        prompt.push_str(project_description);
    }
    prompt.push_str("\n\nХарактеристики банковского продукта: ");
    prompt.push_str(product_description.trim());
    prompt.push_str("\n\nХарактеристика канала продажи: ");
    prompt.push_str(channel_description.trim());
    prompt
}

/// Who the model speaks as: deployment settings (`OFFERFLOW_BANK_NAME`, `OFFERFLOW_PERSONA`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persona {
    pub bank_name: String,
    /// Extra words about the marketer's voice; empty for none.
    pub voice: String,
}

impl Default for Persona {
    fn default() -> Self {
        Persona {
            bank_name: "Газпромбанк".into(),
            voice: String::new(),
        }
    }
}

impl Persona {
    pub fn system_message(&self) -> ChatMessage {
        let mut text = format!(
            "Ты являешься профессиональным маркетологом банка «{}». Ты пишешь короткие, честные и персональные предложения клиентам банка. Все ответы должны быть на русском языке.",
            self.bank_name.trim()
        );
        let voice = self.voice.trim();
        if !voice.is_empty() {
            text.push(' ');
            text.push_str(voice);
        }
        ChatMessage::new(ChatRole::System, text)
    }
}

/// What one generation is about: the project channel's facts at the time it was requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferContext<'a> {
    pub project_description: &'a str,
    pub product_description: &'a str,
    pub channel_name: &'a str,
    pub channel_description: &'a str,
    /// The channel's current prompt (the marketer's brief) and its version.
    pub channel_prompt: &'a str,
    pub prompt_version: u32,
    /// The channel's length limit in characters, when it has one.
    pub max_chars: Option<u32>,
}

impl OfferContext<'_> {
    fn message(&self) -> ChatMessage {
        let mut text = String::new();
        let project = self.project_description.trim();
        if !project.is_empty() {
            text.push_str("Повод для предложения: ");
            text.push_str(project);
            text.push_str("\n\n");
        }
        text.push_str("Банковский продукт: ");
        text.push_str(self.product_description.trim());
        text.push_str("\n\nКанал продажи: ");
        text.push_str(self.channel_description.trim());
        // A channel starts with exactly these descriptions as its prompt; only a brief the
        // marketer has written adds anything.
        let brief = self.channel_prompt.trim();
        let initial = initial_channel_prompt(
            self.project_description,
            self.product_description,
            self.channel_description,
        );
        if !brief.is_empty() && brief != initial.trim() {
            text.push_str("\n\nУказания для канала:\n");
            text.push_str(brief);
        }
        ChatMessage::new(ChatRole::User, text)
    }

    fn instruction(&self) -> ChatMessage {
        let mut text = format!(
            "Напиши маркетинговое предложение этому клиенту для канала «{}». В ответе укажи только текст предложения, на русском языке, без вступлений и пояснений.",
            self.channel_name.trim()
        );
        if let Some(limit) = self.max_chars {
            text.push_str(&format!(" Длина — не больше {limit} символов."));
        }
        ChatMessage::new(ChatRole::User, text)
    }
}

/// The messages of a first generation: persona, context, the client, the instruction.
pub fn offer_messages(
    persona: &Persona,
    context: &OfferContext<'_>,
    client_data: &[ClientField],
    descriptions: &[ColumnDescription],
) -> Vec<ChatMessage> {
    vec![
        persona.system_message(),
        context.message(),
        ChatMessage::new(ChatRole::User, client_block(client_data, descriptions)),
        context.instruction(),
    ]
}

/// A follow-up: the whole thread so far, the model's offer, then the marketer's instruction.
pub fn follow_up_messages(
    thread: &[ChatMessage],
    offer: &str,
    instruction: &str,
) -> Vec<ChatMessage> {
    let mut messages = thread.to_vec();
    messages.push(ChatMessage::new(ChatRole::Assistant, offer));
    messages.push(ChatMessage::new(ChatRole::User, instruction.trim()));
    messages
}

/// The client as numbered lines `description: value`, in the bank's column order, with missing
/// values left out and known codes read out.
pub fn client_block(client_data: &[ClientField], descriptions: &[ColumnDescription]) -> String {
    let mut text = String::from("Характеристики клиента:");
    let mut number = 0;
    for field in client_data {
        let Some(value) = readable_value(&field.key, &field.value) else {
            continue;
        };
        number += 1;
        let description = descriptions
            .iter()
            .find(|d| d.key == field.key)
            .map(|d| d.description.trim())
            .unwrap_or(field.key.as_str());
        text.push_str(&format!("\n{number}. {description}: {value}"));
    }
    if number == 0 {
        text.push_str(" нет сведений");
    }
    text
}

/// How a column's value reads to the model; `None` when the bank does not know it.
fn readable_value(key: &str, value: &Value) -> Option<String> {
    let raw = match value {
        Value::Null => return None,
        Value::Bool(b) => return Some(if *b { "да" } else { "нет" }.to_string()),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() || s.eq_ignore_ascii_case("null") {
                return None;
            }
            s.to_string()
        }
        Value::Array(_) | Value::Object(_) => value.to_string(),
    };
    if let Some(translated) = translate_code(key, &raw) {
        return Some(translated);
    }
    let Ok(number) = raw.replace(',', ".").parse::<f64>() else {
        return Some(raw);
    };
    if !number.is_finite() {
        return Some(raw);
    }
    Some(match column_kind(key) {
        ColumnKind::Years | ColumnKind::Count => format!("{}", number.trunc() as i64),
        ColumnKind::Money => format!("{number:.2}"),
        ColumnKind::Other if number.fract() == 0.0 && number.abs() < 1e15 => {
            format!("{}", number as i64)
        }
        ColumnKind::Other => {
            let text = format!("{number:.2}");
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    })
}

enum ColumnKind {
    Years,
    Count,
    Money,
    Other,
}

/// The bank's data set: which numeric columns are ages, counts and sums of money.
fn column_kind(key: &str) -> ColumnKind {
    match key {
        "age" => ColumnKind::Years,
        "sum_zp_12m"
        | "max_outstanding_amount_6m"
        | "avg_outstanding_amount_3m"
        | "sum_dep_now"
        | "avg_dep_avg_balance_1month"
        | "max_dep_avg_balance_3month" => ColumnKind::Money,
        "limit_exchange_count" | "qnt_months_from_last_visit" => ColumnKind::Count,
        k if k.starts_with("cnt_") => ColumnKind::Count,
        _ => ColumnKind::Other,
    }
}

/// Codes of the bank's data set a model cannot read, in words.
fn translate_code(key: &str, raw: &str) -> Option<String> {
    let flag = || raw.parse::<f64>().ok().map(|n| n != 0.0);
    match key {
        "gender" => match raw.parse::<f64>().ok()? as i64 {
            0 => Some("мужской".into()),
            1 => Some("женский".into()),
            _ => None,
        },
        "app_vehicle_ind" => flag().map(|has| if has { "есть" } else { "нет" }.into()),
        // "h. Бывшие зарплатники (4,9,10,11)": a letter, the segment, the model's cluster numbers.
        "super_clust" => {
            let name = raw
                .split_once(". ")
                .filter(|(letter, _)| letter.chars().count() == 1)
                .map_or(raw, |(_, name)| name);
            let name = match name.rfind(" (") {
                Some(i) if name.ends_with(')') => &name[..i],
                _ => name,
            };
            (name != raw).then(|| name.trim().to_string())
        }
        "visit_purposes" => Some(
            match raw {
                "DCARD" => "дебетовая карта",
                "CCARD" => "кредитная карта",
                "DEPOSIT" => "депозит",
                "DEPOSCLOSE" => "закрытие депозита",
                "TRANS" => "перевод",
                "POTREB" => "потребительский кредит",
                "CREDIT" => "кредит",
                "INVEST" => "инвестиции",
                "PAY" => "платёж",
                "MVNO" => "мобильная связь",
                "SDB" => "сейфовая ячейка",
                "EXTRACT" => "выписка",
                "ORDER" => "заказ документов",
                "OTHER" => "другое",
                _ => return None,
            }
            .into(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(key: &str, value: Value) -> ClientField {
        ClientField {
            key: key.into(),
            value,
        }
    }

    fn described(keys: &[(&str, &str)]) -> Vec<ColumnDescription> {
        keys.iter()
            .map(|(k, d)| ColumnDescription {
                key: k.to_string(),
                description: d.to_string(),
            })
            .collect()
    }

    #[test]
    fn prompt_names_every_part_with_separators() {
        let p = initial_channel_prompt("Осенняя акция", "Кредитная карта", "Коротко");
        assert!(p.contains("Характеристики повода продажи: Осенняя акция\n"));
        assert!(p.contains("Характеристики банковского продукта: Кредитная карта\n"));
        assert!(p.ends_with("Характеристика канала продажи: Коротко"));
    }

    #[test]
    fn prompt_without_project_description_omits_the_reason() {
        let p = initial_channel_prompt("  ", "Депозит", "SMS");
        assert!(!p.contains("повода продажи:"));
        assert!(p.contains("Депозит"));
    }

    #[test]
    fn missing_values_are_skipped_and_the_numbering_has_no_gaps() {
        let data = vec![
            field("region", json!("NULL")),
            field("age", json!(52.688)),
            field("comment", json!("   ")),
            field("note", json!("")),
            field("nothing", Value::Null),
            field("city", json!("Якутск")),
        ];
        let descriptions = described(&[
            ("region", "Регион"),
            ("age", "Возраст Клиента"),
            ("comment", "Комментарий"),
            ("note", "Заметка"),
            ("nothing", "Пусто"),
            ("city", "Город"),
        ]);
        assert_eq!(
            client_block(&data, &descriptions),
            "Характеристики клиента:\n1. Возраст Клиента: 52\n2. Город: Якутск"
        );
    }

    #[test]
    fn real_zeros_are_kept_whether_numbers_or_strings() {
        let data = vec![
            field("cnt_tr_all_3m", json!(0)),
            field("cnt_dep_act", json!("0")),
            field("sum_dep_now", json!(0.0)),
            field("limit_exchange_count", json!(false)),
        ];
        let descriptions = described(&[
            ("cnt_tr_all_3m", "Транзакций"),
            ("cnt_dep_act", "Депозитов"),
            ("sum_dep_now", "Сумма депозитов"),
            ("limit_exchange_count", "Изменений лимита"),
        ]);
        assert_eq!(
            client_block(&data, &descriptions),
            "Характеристики клиента:\n1. Транзакций: 0\n2. Депозитов: 0\n3. Сумма депозитов: 0.00\n4. Изменений лимита: нет"
        );
    }

    #[test]
    fn columns_keep_the_banks_order_and_numbers_read_sensibly() {
        let data = vec![
            field("super_clust", json!("h. Бывшие зарплатники (4,9,10,11)")),
            field("gender", json!("1")),
            field("age", json!(33.99)),
            field("max_outstanding_amount_6m", json!("420999.518000")),
            field("sum_zp_12m", json!(4174841.8)),
            field("cnt_tr_buy_3m", json!("448")),
            field("ratio", json!(0.333333)),
            field("visit_purposes", json!("DEPOSIT")),
            field("app_vehicle_ind", json!("0")),
            field("app_position_type_nm", json!("7")),
        ];
        let descriptions = described(&[
            ("gender", "Пол клиента (0 муж, 1 жен)"),
            ("age", "Возраст Клиента"),
            ("super_clust", "Кластер клиента"),
            ("max_outstanding_amount_6m", "Максимальная задолженность"),
            ("sum_zp_12m", "Сумма зарплатных поступлений"),
            ("cnt_tr_buy_3m", "Покупок"),
            ("ratio", "Доля"),
            ("visit_purposes", "Цель посещения"),
            ("app_vehicle_ind", "Наличие авто"),
            ("app_position_type_nm", "Уровень позиции"),
        ]);
        let block = client_block(&data, &descriptions);
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(
            lines,
            [
                "Характеристики клиента:",
                "1. Кластер клиента: Бывшие зарплатники",
                "2. Пол клиента (0 муж, 1 жен): женский",
                "3. Возраст Клиента: 33",
                "4. Максимальная задолженность: 420999.52",
                "5. Сумма зарплатных поступлений: 4174841.80",
                "6. Покупок: 448",
                "7. Доля: 0.33",
                "8. Цель посещения: депозит",
                "9. Наличие авто: нет",
                "10. Уровень позиции: 7",
            ]
        );
    }

    #[test]
    fn a_client_with_nothing_known_says_so() {
        let data = vec![field("age", json!("NULL"))];
        assert_eq!(
            client_block(&data, &described(&[("age", "Возраст")])),
            "Характеристики клиента: нет сведений"
        );
    }

    fn context<'a>(prompt: &'a str) -> OfferContext<'a> {
        OfferContext {
            project_description: "Осенняя акция",
            product_description: "Кредитная карта с кешбэком",
            channel_name: "СМС",
            channel_description: "Короткое сообщение",
            channel_prompt: prompt,
            prompt_version: 2,
            max_chars: Some(160),
        }
    }

    #[test]
    fn a_generation_is_persona_context_client_and_instruction() {
        let initial = initial_channel_prompt(
            "Осенняя акция",
            "Кредитная карта с кешбэком",
            "Короткое сообщение",
        );
        let persona = Persona {
            bank_name: "Банк Будущего".into(),
            voice: "Обращайся на «вы».".into(),
        };
        let data = vec![field("age", json!(40))];
        let descriptions = described(&[("age", "Возраст")]);
        let messages = offer_messages(&persona, &context(&initial), &data, &descriptions);
        let roles: Vec<ChatRole> = messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                ChatRole::System,
                ChatRole::User,
                ChatRole::User,
                ChatRole::User
            ]
        );
        assert!(messages[0].content.contains("«Банк Будущего»"));
        assert!(messages[0].content.ends_with("Обращайся на «вы»."));
        assert_eq!(
            messages[1].content,
            "Повод для предложения: Осенняя акция\n\nБанковский продукт: Кредитная карта с кешбэком\n\nКанал продажи: Короткое сообщение",
            "the untouched initial prompt is not repeated"
        );
        assert_eq!(
            messages[2].content,
            "Характеристики клиента:\n1. Возраст: 40"
        );
        assert!(messages[3].content.contains("«СМС»"));
        assert!(messages[3].content.contains("не больше 160 символов"));

        let edited = offer_messages(
            &persona,
            &context("Упомяни кешбэк 5 %"),
            &data,
            &descriptions,
        );
        assert!(edited[1]
            .content
            .ends_with("Указания для канала:\nУпомяни кешбэк 5 %"));
    }

    #[test]
    fn a_follow_up_carries_the_whole_thread() {
        let first = offer_messages(
            &Persona::default(),
            &context(""),
            &[field("age", json!(40))],
            &described(&[("age", "Возраст")]),
        );
        let follow_up = follow_up_messages(&first, "Оформите карту сегодня!", "  Короче  ");
        assert_eq!(follow_up.len(), first.len() + 2);
        assert_eq!(&follow_up[..first.len()], &first[..]);
        assert_eq!(
            follow_up[first.len()],
            ChatMessage::new(ChatRole::Assistant, "Оформите карту сегодня!")
        );
        assert_eq!(
            follow_up[first.len() + 1],
            ChatMessage::new(ChatRole::User, "Короче")
        );
    }
}
