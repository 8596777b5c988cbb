//! The two message kinds on the queues: steps to run (orchestration -> worker queue of the
//! namespace) and their outcomes (worker -> step-results queue).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// One step to execute. `attempt` starts at 1; a result must echo it so a late or
/// duplicate result for an older attempt is recognised and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMessage {
    pub task_uuid: Uuid,
    pub step_uuid: Uuid,
    pub namespace: String,
    pub task_name: String,
    pub task_version: String,
    pub step_name: String,
    pub handler: String,
    pub attempt: i32,
    pub max_attempts: i32,
    /// The task's input, as given to `POST /v1/tasks`.
    pub context: Value,
    /// Results of the steps this one depends on, by step name.
    pub dependency_results: BTreeMap<String, Value>,
}

/// The outcome of one attempt of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResultMessage {
    pub task_uuid: Uuid,
    pub step_uuid: Uuid,
    pub attempt: i32,
    pub worker_id: String,
    #[serde(flatten)]
    pub outcome: StepOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepOutcome {
    Complete {
        result: Value,
    },
    Error {
        message: String,
    },
    /// The step message reached `queues.max_deliveries` without a result (its handler
    /// keeps killing the worker) and was moved to the queue's archive: the step fails
    /// without further attempts.
    DeadLettered {
        message: String,
    },
}

/// Whether a string or key anywhere in `value` holds a NUL character, which PostgreSQL's
/// `jsonb` (task contexts, queue messages) cannot store.
pub fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => {
            map.iter().any(|(key, item)| key.contains('\0') || contains_nul(item))
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_message_round_trips_with_status_tag() {
        let message = StepResultMessage {
            task_uuid: Uuid::nil(),
            step_uuid: Uuid::nil(),
            attempt: 2,
            worker_id: "w".into(),
            outcome: StepOutcome::Error { message: "boom".into() },
        };
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["status"], "error");
        assert_eq!(json["message"], "boom");
        let back: StepResultMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, message);
    }

    #[test]
    fn finds_nul_in_strings_and_keys_at_any_depth() {
        assert!(!contains_nul(&serde_json::json!({"a": [1, "x", {"b": null}]})));
        assert!(contains_nul(&serde_json::json!({"a": [1, {"b": "x\u{0}"}]})));
        assert!(contains_nul(&serde_json::json!({"a": {"\u{0}": 1}})));
    }
}
