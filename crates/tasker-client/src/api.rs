//! The JSON shapes of the orchestration API, shared by the server and this client.
//! Timestamps are RFC 3339 strings.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// `POST /v1/tasks` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskRequest {
    pub namespace: String,
    pub name: String,
    pub version: String,
    #[serde(default = "empty_object")]
    pub context: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl CreateTaskRequest {
    pub fn new(namespace: &str, name: &str, version: &str, context: Value) -> Self {
        CreateTaskRequest {
            namespace: namespace.into(),
            name: name.into(),
            version: version.into(),
            context,
        }
    }
}

/// `201` answer to `POST /v1/tasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateTaskResponse {
    pub task_uuid: Uuid,
}

/// `in_progress` from creation (the root steps are enqueued in the same transaction)
/// until every step is `complete` (`complete`) or one step fails for good (`error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    InProgress,
    Complete,
    Error,
}

impl TaskState {
    pub fn is_final(self) -> bool {
        matches!(self, TaskState::Complete | TaskState::Error)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::InProgress => "in_progress",
            TaskState::Complete => "complete",
            TaskState::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<TaskState> {
        [TaskState::InProgress, TaskState::Complete, TaskState::Error]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// `pending`: waiting for its dependencies; `enqueued`: handed to the workers (a retry
/// may be delayed until `next_attempt_at`); `complete` / `error` / `cancelled`: final
/// (`cancelled`: it could no longer run because another step of its task failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Enqueued,
    Complete,
    Error,
    Cancelled,
}

impl StepState {
    pub fn is_final(self) -> bool {
        matches!(self, StepState::Complete | StepState::Error | StepState::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Enqueued => "enqueued",
            StepState::Complete => "complete",
            StepState::Error => "error",
            StepState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<StepState> {
        [
            StepState::Pending,
            StepState::Enqueued,
            StepState::Complete,
            StepState::Error,
            StepState::Cancelled,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// `GET /v1/tasks/{uuid}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResponse {
    pub task_uuid: Uuid,
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub state: TaskState,
    pub context: Value,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
    /// In template order.
    pub steps: Vec<StepResponse>,
}

impl TaskResponse {
    pub fn step(&self, name: &str) -> Option<&StepResponse> {
        self.steps.iter().find(|step| step.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResponse {
    pub step_uuid: Uuid,
    pub name: String,
    pub handler: String,
    pub depends_on: Vec<String>,
    pub state: StepState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub result: Option<Value>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub enqueued_at: Option<String>,
    pub next_attempt_at: Option<String>,
    pub completed_at: Option<String>,
}

/// Every 4xx/5xx body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
}

/// `GET /health` of any service. Orchestration leaves `worker_id` and `language` out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    pub instance_id: Option<String>,
}
