//! End-to-end: the orchestration server and the Rust worker, started by `cargo xtask`
//! (URLs in TASKER_TEST_ORCHESTRATION_URL / TASKER_TEST_WORKER_URL), run every workflow
//! of the `rust` namespace through PostgreSQL and PGMQ. Results are checked exactly.

use serde_json::json;
use tasker_client::TaskerClient;
use tasker_client::api::{StepState, TaskResponse, TaskState};
use tasker_core::{WORKER_URL_VAR, orchestration, run_task, service_url, step_result};

fn assert_all_steps_complete_once(task: &TaskResponse) {
    assert_eq!(task.state, TaskState::Complete, "{task:#?}");
    assert!(task.completed_at.is_some());
    for step in &task.steps {
        assert_eq!(step.state, StepState::Complete, "{step:?}");
        assert_eq!(step.attempts, 1, "{step:?}");
        assert!(step.completed_at.is_some(), "{step:?}");
        assert_eq!(step.last_error, None, "{step:?}");
    }
}

#[test]
fn services_are_healthy_and_identify_themselves() {
    tasker_core::flaky_once();
    let orchestration = orchestration();
    let health = orchestration.health().unwrap();
    assert_eq!(health.status, "healthy");
    assert_eq!(health.service, "tasker-orchestration");
    orchestration.ready().unwrap();

    let worker = TaskerClient::new(service_url(WORKER_URL_VAR));
    let health = worker.health().unwrap();
    assert_eq!(health.status, "healthy");
    assert_eq!(health.service, "tasker-worker");
    assert_eq!(health.language.as_deref(), Some("rust"));
    assert!(health.worker_id.is_some_and(|id| !id.is_empty()));
    worker.ready().unwrap();
}

#[test]
fn linear_workflow_squares_four_times() {
    let task = run_task(&orchestration(), "rust", "linear_workflow", json!({"even_number": 6}));
    assert_all_steps_complete_once(&task);
    let names: Vec<&str> = task.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["linear_step_1", "linear_step_2", "linear_step_3", "linear_step_4"]);
    assert_eq!(step_result(&task, "linear_step_1"), 36);
    assert_eq!(step_result(&task, "linear_step_2"), 1_296);
    assert_eq!(step_result(&task, "linear_step_3"), 1_679_616);
    assert_eq!(step_result(&task, "linear_step_4"), 2_821_109_907_456);
    assert_eq!(task.context, json!({"even_number": 6}));
}

#[test]
fn diamond_workflow_joins_both_branches() {
    let task = run_task(&orchestration(), "rust", "diamond_workflow", json!({"even_number": 4}));
    assert_all_steps_complete_once(&task);
    assert_eq!(step_result(&task, "diamond_start"), 16);
    assert_eq!(step_result(&task, "diamond_branch_b"), 32);
    assert_eq!(step_result(&task, "diamond_branch_c"), 26);
    assert_eq!(step_result(&task, "diamond_end"), 58);
    // The join ran after both branches.
    let end = task.step("diamond_end").unwrap();
    for branch in ["diamond_branch_b", "diamond_branch_c"] {
        let branch = task.step(branch).unwrap();
        assert!(branch.completed_at.as_deref().unwrap() <= end.enqueued_at.as_deref().unwrap());
    }
}

#[test]
fn tree_workflow_converges_four_leaves() {
    let task = run_task(&orchestration(), "rust", "tree_workflow", json!({"even_number": 2}));
    assert_all_steps_complete_once(&task);
    let expected = [
        ("tree_root", 4),
        ("tree_branch_left", 5),
        ("tree_branch_right", 6),
        ("tree_leaf_d", 10),
        ("tree_leaf_e", 15),
        ("tree_leaf_f", 12),
        ("tree_leaf_g", 18),
        ("tree_final_convergence", 55),
    ];
    for (name, value) in expected {
        assert_eq!(step_result(&task, name), value, "{name}");
    }
}

#[test]
fn retry_workflow_succeeds_after_failures() {
    let task = run_task(
        &orchestration(),
        "rust",
        "retry_workflow",
        json!({"even_number": 4, "fail_times": 2}),
    );
    assert_eq!(task.state, TaskState::Complete, "{task:#?}");
    let flaky = task.step("flaky_step").unwrap();
    assert_eq!(flaky.state, StepState::Complete);
    assert_eq!(flaky.attempts, 3);
    assert_eq!(flaky.result, Some(json!({"result": 4, "succeeded_on_attempt": 3})));
    let after = task.step("after_flaky").unwrap();
    assert_eq!((after.state, after.attempts), (StepState::Complete, 1));
    assert_eq!(step_result(&task, "after_flaky"), 16);
}

#[test]
fn retry_workflow_gives_up_at_the_attempt_limit() {
    let task = run_task(
        &orchestration(),
        "rust",
        "retry_workflow",
        json!({"even_number": 4, "fail_times": 10}),
    );
    assert_eq!(task.state, TaskState::Error, "{task:#?}");
    let flaky = task.step("flaky_step").unwrap();
    assert_eq!(flaky.state, StepState::Error);
    assert_eq!(flaky.attempts, 4, "max_attempts of the template");
    assert_eq!(flaky.last_error.as_deref(), Some("intentional failure on attempt 4 of 10"));
    assert_eq!(flaky.result, None);
    let after = task.step("after_flaky").unwrap();
    assert_eq!((after.state, after.attempts), (StepState::Cancelled, 0));
}

#[test]
fn failing_workflow_ends_in_error_and_skips_dependents() {
    let task = run_task(&orchestration(), "rust", "failing_workflow", json!({"even_number": 2}));
    assert_eq!(task.state, TaskState::Error, "{task:#?}");
    assert!(task.completed_at.is_some());
    let doomed = task.step("doomed_step").unwrap();
    assert_eq!(doomed.state, StepState::Error);
    assert_eq!(doomed.attempts, 2);
    assert_eq!(doomed.last_error.as_deref(), Some("this step always fails (attempt 2)"));
    // It can never run, and says so.
    let never = task.step("never_runs").unwrap();
    assert_eq!((never.state, never.attempts), (StepState::Cancelled, 0));
    assert_eq!(never.enqueued_at, None);
    let why = never.last_error.as_deref().unwrap_or_default();
    assert!(why.contains("step `doomed_step` failed"), "{never:#?}");
}

#[test]
fn invalid_step_input_is_a_step_error() {
    let task = run_task(&orchestration(), "rust", "linear_workflow", json!({"even_number": 7}));
    assert_eq!(task.state, TaskState::Error, "{task:#?}");
    let first = task.step("linear_step_1").unwrap();
    assert_eq!(first.state, StepState::Error);
    assert_eq!(first.attempts, first.max_attempts);
    assert_eq!(first.last_error.as_deref(), Some("context.even_number must be even, got 7"));
}

#[test]
fn concurrent_tasks_each_get_their_own_results() {
    let client = orchestration();
    let inputs: Vec<i64> = (1..=8).map(|i| i * 2).collect();
    let handles: Vec<_> = inputs
        .iter()
        .map(|&n| {
            let client = client.clone();
            std::thread::spawn(move || {
                (n, run_task(&client, "rust", "diamond_workflow", json!({"even_number": n})))
            })
        })
        .collect();
    for handle in handles {
        let (n, task) = handle.join().unwrap();
        assert_all_steps_complete_once(&task);
        let square = n * n;
        assert_eq!(step_result(&task, "diamond_end"), square * 2 + square + 10, "n = {n}");
    }
}

#[test]
fn malformed_requests_get_json_4xx() {
    let client = orchestration();
    let (status, body) = client.post_raw("/v1/tasks", "application/json", "{not json").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("JSON"), "{body}");

    let (status, body) =
        client.post_raw("/v1/tasks", "application/json", r#"{"namespace": "rust"}"#).unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("missing field `name`"), "{body}");

    let (status, body) = client
        .post_raw(
            "/v1/tasks",
            "application/json",
            r#"{"namespace": "rust", "name": "no_such_workflow", "version": "1.0.0"}"#,
        )
        .unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown task template rust/no_such_workflow/1.0.0")
    );

    let (status, body) = client
        .post_raw(
            "/v1/tasks",
            "application/json",
            r#"{"namespace": "rust", "name": "linear_workflow", "version": "1.0.0", "context": [1]}"#,
        )
        .unwrap();
    assert_eq!(status, 422, "{body}");

    let (status, body) = client
        .post_raw(
            "/v1/tasks",
            "application/json",
            r#"{"namespace": "rust", "name": "linear_workflow", "version": "1.0.0", "context": {"even_number": 2, "note": "\u0000"}}"#,
        )
        .unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("u0000"), "{body}");

    let (status, _) = client.post_raw("/v1/tasks", "text/plain", "hello").unwrap();
    assert_eq!(status, 415);

    match client.get_json::<serde_json::Value>("/v1/tasks/not-a-uuid") {
        Err(tasker_client::ClientError::Api { status, message }) => {
            assert_eq!(status, 400);
            assert!(message.contains("not-a-uuid"), "{message}");
        }
        other => panic!("expected 400, got {other:?}"),
    }
    match client.get_task(uuid::Uuid::new_v4()) {
        Err(tasker_client::ClientError::Api { status, .. }) => assert_eq!(status, 404),
        other => panic!("expected 404, got {other:?}"),
    }
}
