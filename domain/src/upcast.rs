//! Events written under an older schema, brought up to the one this build decides with.
//!
//! The log is append-only, so an event's schema can only grow by reading old rows as new ones.
//! Every reader of the log (aggregate loading, the projections' reader, the history and audit
//! endpoints) passes each stored event through [`upcast`] before decoding it, keyed on the
//! row's `event_version`.
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::Value;
use uuid::Uuid;

/// `OutcomeRecorded` v2 names the employee credited with the outcome (`credited_to`).
pub const OUTCOME_RECORDED_VERSION: &str = "2";

/// `OutcomeRecorded` v1 → v2: the outcome is credited to the user who recorded it (a person,
/// or the owner of the API token), as the bank credited sales before the field existed; an
/// outcome a process recorded is credited to no one.
pub struct OutcomeCreditedToRecorder;

impl EventUpcaster for OutcomeCreditedToRecorder {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        event_type == "OutcomeRecorded" && event_version == "1"
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        let credited = recorder(&event.metadata).map(|id| Value::String(id.to_string()));
        if let Some(Value::Object(fields)) = event.payload.get_mut("OutcomeRecorded") {
            fields
                .entry("credited_to")
                .or_insert(credited.unwrap_or(Value::Null));
        }
        event.event_version = OUTCOME_RECORDED_VERSION.to_string();
        event
    }
}

/// The user behind an event, from its metadata.
fn recorder(metadata: &Value) -> Option<Uuid> {
    let field = |name: &str| metadata.get(name).and_then(Value::as_str);
    let user = match field("actor_kind")? {
        "user" => field("actor_id")?,
        "api_token" => field("on_behalf_of")?,
        _ => return None,
    };
    Uuid::parse_str(user).ok()
}

/// Every upcaster, in the order they apply.
pub static UPCASTERS: &[&dyn EventUpcaster] = &[&OutcomeCreditedToRecorder];

/// Whether an event of this type and version is already in the current schema.
pub fn is_current(event_type: &str, event_version: &str) -> bool {
    !UPCASTERS
        .iter()
        .any(|u| u.can_upcast(event_type, event_version))
}

/// Brings one stored event to the current schema (unchanged if it already is).
pub fn upcast(mut event: SerializedEvent) -> SerializedEvent {
    for upcaster in UPCASTERS {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            event = upcaster.upcast(event);
        }
    }
    event
}

/// [`upcast`] for a row read as loose parts: returns the current version and payload.
pub fn upcast_parts(
    aggregate_type: &str,
    event_type: &str,
    event_version: &str,
    payload: Value,
    metadata: &Value,
) -> (String, Value) {
    if is_current(event_type, event_version) {
        return (event_version.to_string(), payload);
    }
    let event = upcast(SerializedEvent {
        aggregate_id: String::new(),
        sequence: 0,
        aggregate_type: aggregate_type.to_string(),
        event_type: event_type.to_string(),
        event_version: event_version.to_string(),
        payload,
        metadata: metadata.clone(),
    });
    (event.event_version, event.payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_request::{ClientRequestEvent, Outcome};
    use serde_json::json;

    fn v1(metadata: Value) -> (String, Value) {
        upcast_parts(
            "ClientRequest",
            "OutcomeRecorded",
            "1",
            json!({"OutcomeRecorded": {"outcome": "sold"}}),
            &metadata,
        )
    }

    #[test]
    fn a_v1_outcome_is_credited_to_the_user_who_recorded_it() {
        let user = Uuid::from_u128(42);
        let (version, payload) = v1(json!({"actor_kind": "user", "actor_id": user.to_string()}));
        assert_eq!(version, "2");
        let event: ClientRequestEvent = serde_json::from_value(payload).unwrap();
        assert_eq!(
            event,
            ClientRequestEvent::OutcomeRecorded {
                outcome: Outcome::Sold,
                credited_to: Some(user)
            }
        );
    }

    #[test]
    fn a_v1_outcome_by_token_is_credited_to_its_owner_and_by_a_process_to_no_one() {
        let owner = Uuid::from_u128(9);
        let (_, payload) = v1(
            json!({"actor_kind": "api_token", "actor_id": Uuid::from_u128(1).to_string(),
                                     "on_behalf_of": owner.to_string()}),
        );
        assert_eq!(payload["OutcomeRecorded"]["credited_to"], json!(owner));
        let (_, payload) = v1(json!({"actor_kind": "process", "actor_id": "importer"}));
        assert_eq!(payload["OutcomeRecorded"]["credited_to"], Value::Null);
    }

    #[test]
    fn current_events_pass_unchanged() {
        let payload = json!({"OutcomeRecorded": {"outcome": "sold", "credited_to": null}});
        let (version, same) = upcast_parts(
            "ClientRequest",
            "OutcomeRecorded",
            "2",
            payload.clone(),
            &json!({"actor_kind": "user", "actor_id": Uuid::from_u128(3).to_string()}),
        );
        assert_eq!((version.as_str(), same), ("2", payload));
    }
}
