//! A typed, blocking client for the orchestration API (and the health endpoint every
//! service serves), used by the end-to-end tests and the benchmark. Plain HTTP over
//! `ureq` without TLS: the services listen on localhost.
//!
//! ```no_run
//! use std::time::Duration;
//! use tasker_client::{TaskerClient, api::{CreateTaskRequest, TaskState}};
//! let client = TaskerClient::new("http://127.0.0.1:8080");
//! let uuid = client.create_task(&CreateTaskRequest::new("rust", "linear_workflow", "1.0.0",
//!     serde_json::json!({"even_number": 6})))?;
//! let task = client.wait_for_completion(uuid, Duration::from_secs(30))?;
//! assert_eq!(task.state, TaskState::Complete);
//! # Ok::<(), tasker_client::ClientError>(())
//! ```

pub mod api;

use std::fmt;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use uuid::Uuid;

use api::{CreateTaskRequest, CreateTaskResponse, ErrorResponse, Health, TaskResponse};

#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// No HTTP response (connection refused, timeout, ...).
    Transport(String),
    /// The server answered with an error status.
    Api { status: u16, message: String },
    /// The body was not what the API promises.
    Decode(String),
    /// The task did not finish in time; carries its last observed state.
    Timeout { task: Box<TaskResponse> },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Transport(err) => write!(f, "request failed: {err}"),
            ClientError::Api { status, message } => write!(f, "HTTP {status}: {message}"),
            ClientError::Decode(err) => write!(f, "unexpected response body: {err}"),
            ClientError::Timeout { task } => write!(
                f,
                "task {} still {:?} at the deadline; steps: {}",
                task.task_uuid,
                task.state,
                task.steps
                    .iter()
                    .map(|s| format!("{}={:?}/{}", s.name, s.state, s.attempts))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl std::error::Error for ClientError {}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Client for one service base URL, e.g. `http://127.0.0.1:8080`.
#[derive(Clone)]
pub struct TaskerClient {
    base_url: String,
    agent: ureq::Agent,
}

impl TaskerClient {
    pub fn new(base_url: impl Into<String>) -> TaskerClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        TaskerClient { base_url: base_url.into().trim_end_matches('/').to_string(), agent }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET /health`.
    pub fn health(&self) -> Result<Health> {
        self.get_json("/health")
    }

    /// `GET /health/ready`: `Ok(())` on 200, else the server's reason.
    pub fn ready(&self) -> Result<()> {
        let response = self
            .agent
            .get(format!("{}/health/ready", self.base_url))
            .call()
            .map_err(|err| ClientError::Transport(err.to_string()))?;
        expect_json::<serde_json::Value>(response, 200).map(|_| ())
    }

    /// `POST /v1/tasks`: creates a task and returns its id.
    pub fn create_task(&self, request: &CreateTaskRequest) -> Result<Uuid> {
        let response = self
            .agent
            .post(format!("{}/v1/tasks", self.base_url))
            .send_json(request)
            .map_err(|err| ClientError::Transport(err.to_string()))?;
        expect_json::<CreateTaskResponse>(response, 201).map(|created| created.task_uuid)
    }

    /// `GET /v1/tasks/{uuid}`.
    pub fn get_task(&self, task_uuid: Uuid) -> Result<TaskResponse> {
        self.get_json(&format!("/v1/tasks/{task_uuid}"))
    }

    /// Polls the task until it is complete or in error (short polling, backing off from
    /// 2 ms to 50 ms), or fails with [`ClientError::Timeout`] after `timeout`.
    pub fn wait_for_completion(&self, task_uuid: Uuid, timeout: Duration) -> Result<TaskResponse> {
        let deadline = Instant::now() + timeout;
        let mut interval = Duration::from_millis(2);
        loop {
            let task = self.get_task(task_uuid)?;
            if task.state.is_final() {
                return Ok(task);
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout { task: Box::new(task) });
            }
            std::thread::sleep(interval.min(deadline.saturating_duration_since(Instant::now())));
            interval = (interval * 2).min(Duration::from_millis(50));
        }
    }

    /// `GET path` with the status checked and the JSON decoded.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self
            .agent
            .get(format!("{}{path}", self.base_url))
            .call()
            .map_err(|err| ClientError::Transport(err.to_string()))?;
        expect_json(response, 200)
    }

    /// `POST path` with a raw body (for testing how the server treats bad input).
    /// Returns the status and the body parsed as JSON (or `Decode` when it is not JSON).
    pub fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> Result<(u16, serde_json::Value)> {
        let mut response = self
            .agent
            .post(format!("{}{path}", self.base_url))
            .header("content-type", content_type)
            .send(body)
            .map_err(|err| ClientError::Transport(err.to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|err| ClientError::Decode(err.to_string()))?;
        let json = serde_json::from_str(&text)
            .map_err(|err| ClientError::Decode(format!("{err}: {text}")))?;
        Ok((status, json))
    }
}

fn expect_json<T: DeserializeOwned>(
    mut response: ureq::http::Response<ureq::Body>,
    expected: u16,
) -> Result<T> {
    let status = response.status().as_u16();
    let text =
        response.body_mut().read_to_string().map_err(|err| ClientError::Decode(err.to_string()))?;
    if status != expected {
        let message = serde_json::from_str::<ErrorResponse>(&text).map(|e| e.error).unwrap_or(text);
        return Err(ClientError::Api { status, message });
    }
    serde_json::from_str(&text).map_err(|err| ClientError::Decode(format!("{err}: {text}")))
}
