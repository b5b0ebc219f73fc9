//! Identifiers that must be the same every time they are derived: a catalog key names one
//! product, an email one user, and the same client data in one project channel one request.
use uuid::Uuid;

const NAMESPACE: Uuid = Uuid::from_u128(0x6f66_6665_7266_6c6f_7700_0000_0000_0001);

pub fn product_id(key: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("product:{key}").as_bytes())
}

pub fn sales_channel_id(key: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("sales_channel:{key}").as_bytes())
}

pub fn user_id(email: &str) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!("user:{}", email.trim().to_lowercase()).as_bytes(),
    )
}

/// The request id of a client inside a project channel. Column order does not matter: two
/// uploads of the same client with columns in another order are the same client.
pub fn client_request_id(
    project_id: Uuid,
    channel_id: Uuid,
    client_data: &[(String, serde_json::Value)],
) -> Uuid {
    let mut sorted: Vec<&(String, serde_json::Value)> = client_data.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut canonical = format!("client_request:{project_id}:{channel_id}:");
    for (key, value) in sorted {
        // serde_json's Display of a Value is compact and stable for scalars.
        canonical.push_str(&serde_json::to_string(key).unwrap_or_default());
        canonical.push(':');
        canonical.push_str(&value.to_string());
        canonical.push(',');
    }
    Uuid::new_v5(&NAMESPACE, canonical.as_bytes())
}

/// The offer a generation produces: derived, so a result delivered twice names one message.
pub fn offer_message_id(generation_id: Uuid) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("offer:{generation_id}").as_bytes())
}

/// What a generation sent to the model, as a message of the thread.
pub fn prompt_message_id(generation_id: Uuid) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("prompt:{generation_id}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_client_in_another_column_order_is_the_same_request() {
        let p = Uuid::new_v4();
        let c = Uuid::new_v4();
        let a = vec![
            ("age".to_string(), json!(30)),
            ("gender".to_string(), json!("1")),
        ];
        let b = vec![
            ("gender".to_string(), json!("1")),
            ("age".to_string(), json!(30)),
        ];
        assert_eq!(client_request_id(p, c, &a), client_request_id(p, c, &b));
    }

    #[test]
    fn other_value_or_other_channel_is_another_request() {
        let p = Uuid::new_v4();
        let c = Uuid::new_v4();
        let a = vec![("age".to_string(), json!(30))];
        let b = vec![("age".to_string(), json!("30"))];
        assert_ne!(client_request_id(p, c, &a), client_request_id(p, c, &b));
        assert_ne!(
            client_request_id(p, c, &a),
            client_request_id(p, Uuid::new_v4(), &a)
        );
    }

    #[test]
    fn emails_are_case_insensitive() {
        assert_eq!(user_id("Ann@Bank.ru "), user_id("ann@bank.ru"));
    }
}
