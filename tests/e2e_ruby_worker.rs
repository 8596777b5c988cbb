//! End-to-end tests of the Ruby worker: tasks of the `ruby` namespace go through the
//! running orchestration server to the running Ruby worker (Ruby handlers on the Rust
//! runtime through FFI). Needs `TASKER_TEST_ORCHESTRATION_URL` and
//! `TASKER_TEST_RUBY_WORKER_URL` (`cargo xtask ci-native` starts the services).

use serde_json::{Value, json};
use tasker_client::TaskerClient;
use tasker_client::api::{StepState, TaskResponse, TaskState};
use tasker_core::{RUBY_WORKER_URL_VAR, orchestration, service_url};

/// The message the Ruby failing handler raises (workers/ruby/lib/tasker_ruby/handlers/failing_workflow.rb).
const FAILING_MESSAGE: &str =
    "ruby_failing_step always fails: intentional failure for the error path";

fn run_task(name: &str, context: Value) -> TaskResponse {
    tasker_core::run_task(&orchestration(), "ruby", name, context)
}

/// Each step's `value`, in template order, after checking it completed on its first attempt
/// and was computed by the Ruby handlers.
fn completed_values(task: &TaskResponse) -> Vec<(String, i64)> {
    assert_eq!(task.state, TaskState::Complete, "task {task:#?}");
    task.steps
        .iter()
        .map(|step| {
            assert_eq!(step.state, StepState::Complete, "step {step:#?}");
            assert_eq!(step.attempts, 1, "step {step:#?}");
            let result = step.result.as_ref().unwrap_or_else(|| panic!("no result: {step:#?}"));
            assert_eq!(result["computed_by"], "ruby", "step {step:#?}");
            let value =
                result["value"].as_i64().unwrap_or_else(|| panic!("no integer value: {step:#?}"));
            (step.name.clone(), value)
        })
        .collect()
}

fn named(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
    pairs.iter().map(|(name, value)| (name.to_string(), *value)).collect()
}

#[test]
fn ruby_worker_health_names_the_ruby_language() {
    let worker = TaskerClient::new(service_url(RUBY_WORKER_URL_VAR));
    let health = worker.health().expect("GET /health of the Ruby worker");
    assert_eq!(health.status, "healthy");
    assert_eq!(health.service, "tasker-worker");
    assert_eq!(health.language.as_deref(), Some("ruby"));
    assert!(health.worker_id.as_deref().is_some_and(|id| !id.is_empty()), "{health:?}");
    worker.ready().expect("GET /health/ready of the Ruby worker");
}

#[test]
fn ruby_linear_workflow_computes_3n_plus_7_squared_minus_1() {
    for n in [6_i64, 10] {
        let task = run_task("linear_workflow", json!({ "even_number": n }));
        let (step_1, step_2) = (3 * n, 3 * n + 7);
        let expected = [
            ("ruby_linear_step_1", step_1),
            ("ruby_linear_step_2", step_2),
            ("ruby_linear_step_3", step_2 * step_2),
            ("ruby_linear_step_4", step_2 * step_2 - 1),
        ];
        assert_eq!(completed_values(&task), named(&expected), "even_number {n}");
    }
    // Pinned once, so a formula change in both places still shows up.
    let task = run_task("linear_workflow", json!({ "even_number": 6 }));
    assert_eq!(completed_values(&task).last().map(|(_, value)| *value), Some(624));
}

#[test]
fn ruby_diamond_workflow_joins_both_branches() {
    let task = run_task("diamond_workflow", json!({ "even_number": 6 }));
    let expected = [
        ("ruby_diamond_start", 12),
        ("ruby_diamond_branch_b", 17),
        ("ruby_diamond_branch_c", 48),
        ("ruby_diamond_end", 816),
    ];
    assert_eq!(completed_values(&task), named(&expected));
}

#[test]
fn a_ruby_exception_fails_the_step_with_its_message() {
    let task = run_task("failing_workflow", json!({}));
    assert_eq!(task.state, TaskState::Error, "task {task:#?}");
    let failed = task.step("ruby_failing_step").expect("ruby_failing_step");
    assert_eq!(failed.state, StepState::Error, "{failed:#?}");
    assert_eq!(failed.attempts, failed.max_attempts, "{failed:#?}");
    assert_eq!(failed.max_attempts, 2, "{failed:#?}");
    assert_eq!(failed.result, None, "{failed:#?}");
    let error =
        failed.last_error.as_deref().unwrap_or_else(|| panic!("no error recorded: {failed:#?}"));
    assert_eq!(
        error,
        format!("TaskerRuby::Handlers::FailingWorkflow::IntentionalFailure: {FAILING_MESSAGE}")
    );
    let dependent = task.step("ruby_never_runs").expect("ruby_never_runs");
    assert_eq!(dependent.state, StepState::Cancelled, "{dependent:#?}");
    assert_eq!(dependent.attempts, 0, "{dependent:#?}");
}

#[test]
fn a_malformed_step_payload_is_a_step_error_naming_the_key() {
    let task = run_task("linear_workflow", json!({ "even_number": "six" }));
    assert_eq!(task.state, TaskState::Error, "task {task:#?}");
    let first = task.step("ruby_linear_step_1").expect("ruby_linear_step_1");
    assert_eq!(first.state, StepState::Error, "{first:#?}");
    assert_eq!(first.attempts, first.max_attempts, "{first:#?}");
    assert_eq!(
        first.last_error.as_deref(),
        Some("TaskerRuby::PayloadError: context.even_number must be an integer, got \"six\"")
    );
    for later in &task.steps[1..] {
        assert_eq!(later.state, StepState::Cancelled, "{later:#?}");
    }
}
