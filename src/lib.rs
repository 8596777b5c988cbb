//! `tasker-core`: the root package of the workspace. It holds the end-to-end tests in
//! `tests/` (feature `test-services`), which run against services started by
//! `cargo xtask`, and the helpers they share: where the services are and how to run a
//! task to completion.

use std::time::Duration;

use serde_json::Value;
use tasker_client::TaskerClient;
use tasker_client::api::{CreateTaskRequest, TaskResponse};

pub use tasker_client;

pub const ORCHESTRATION_URL_VAR: &str = "TASKER_TEST_ORCHESTRATION_URL";
pub const WORKER_URL_VAR: &str = "TASKER_TEST_WORKER_URL";
pub const RUBY_WORKER_URL_VAR: &str = "TASKER_TEST_RUBY_WORKER_URL";

/// The base URL in `variable`; panics naming it when unset, so a run without services
/// fails loudly instead of passing silently.
/// A test-only switch for CI metrics (`cargo xtask ci-report` counts flaky tests): with
/// `TASKER_TEST_FLAKY_ONCE=<file>`, the first call fails (and creates the file), so the
/// test passes only on nextest's retry. Without the variable it does nothing.
pub fn flaky_once() {
    if let Some(marker) = std::env::var_os("TASKER_TEST_FLAKY_ONCE").filter(|m| !m.is_empty())
        && std::fs::metadata(&marker).is_err()
    {
        std::fs::write(&marker, "").expect("writing the TASKER_TEST_FLAKY_ONCE file");
        panic!("deliberately flaky (TASKER_TEST_FLAKY_ONCE): the first attempt fails");
    }
}

pub fn service_url(variable: &str) -> String {
    match std::env::var(variable) {
        Ok(url) if !url.trim().is_empty() => url.trim().trim_end_matches('/').to_string(),
        _ => panic!(
            "{variable} is not set: run `cargo xtask ci-native` (starts the services), or \
             start them with `cargo xtask services up` and export the variables it prints"
        ),
    }
}

/// Client for the orchestration server under test.
pub fn orchestration() -> TaskerClient {
    TaskerClient::new(service_url(ORCHESTRATION_URL_VAR))
}

/// How long a task may take: 30 s, times `TASKER_TEST_TIMEOUT_MULTIPLIER` (e.g. on slow
/// CI machines). Waiting ends as soon as the task finishes.
pub fn completion_timeout() -> Duration {
    let multiplier = std::env::var("TASKER_TEST_TIMEOUT_MULTIPLIER")
        .ok()
        .and_then(|m| m.parse::<f64>().ok())
        .filter(|m| *m > 0.0)
        .unwrap_or(1.0);
    Duration::from_secs_f64(30.0 * multiplier)
}

/// Creates a task from `namespace/name/1.0.0` and waits until it is complete or in error.
pub fn run_task(
    client: &TaskerClient,
    namespace: &str,
    name: &str,
    context: Value,
) -> TaskResponse {
    let request = CreateTaskRequest::new(namespace, name, "1.0.0", context);
    let task_uuid = client
        .create_task(&request)
        .unwrap_or_else(|err| panic!("creating {namespace}/{name}: {err}"));
    client
        .wait_for_completion(task_uuid, completion_timeout())
        .unwrap_or_else(|err| panic!("waiting for {namespace}/{name}: {err}"))
}

/// The integer `result` of step `name`; panics with the task's state when absent.
pub fn step_result(task: &TaskResponse, name: &str) -> i64 {
    let step = task.step(name).unwrap_or_else(|| panic!("task {} has no step {name}", task.name));
    step.result
        .as_ref()
        .and_then(|r| r.get("result"))
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("step {name} has no integer result: {step:?}"))
}
