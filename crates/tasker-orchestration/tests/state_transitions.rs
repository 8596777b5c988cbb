//! The orchestration state machine against a real PostgreSQL (`DATABASE_URL`), each test
//! in its own database: enqueueing, dependency release, retries, final states, the
//! cancellation of what a failed task can no longer run, dead-lettered steps, and
//! duplicate results changing nothing. Together they take every transition of the state
//! diagram in docs/system-under-test.md.

use std::sync::Arc;

use serde_json::{Value, json};
use tasker_client::api::{CreateTaskRequest, StepState, TaskState};
use tasker_orchestration::engine::{CreateTaskError, Engine, ResultEffect};
use tasker_shared::config::{BackoffConfig, QueuesConfig};
use tasker_shared::messages::{StepMessage, StepOutcome, StepResultMessage};
use tasker_shared::templates::{TaskTemplate, TemplateRegistry};
use tasker_shared::testing::TestDatabase;

const QUEUE: &str = "worker_demo_queue";

const DIAMOND: &str = r#"
[[steps]]
name = "start"
handler = "h"
[[steps]]
name = "left"
handler = "h"
depends_on = ["start"]
[[steps]]
name = "right"
handler = "h"
depends_on = ["start"]
[[steps]]
name = "join"
handler = "h"
depends_on = ["left", "right"]
"#;

const FLAKY: &str = r#"
[[steps]]
name = "flaky"
handler = "h"
max_attempts = 2
[[steps]]
name = "after"
handler = "h"
depends_on = ["flaky"]
"#;

const PAIR: &str = r#"
[[steps]]
name = "one"
handler = "h"
max_attempts = 1
[[steps]]
name = "two"
handler = "h"
max_attempts = 1
"#;

const PAIR_RETRYING_TWO: &str = r#"
[[steps]]
name = "one"
handler = "h"
max_attempts = 1
[[steps]]
name = "two"
handler = "h"
max_attempts = 3
"#;

async fn engine(db: &TestDatabase) -> Engine {
    let mut templates = TemplateRegistry::default();
    templates.insert(TaskTemplate::parse("demo", "diamond", "1.0.0", DIAMOND).unwrap());
    templates.insert(TaskTemplate::parse("demo", "flaky", "1.0.0", FLAKY).unwrap());
    templates.insert(TaskTemplate::parse("demo", "pair", "1.0.0", PAIR).unwrap());
    let queues = QueuesConfig {
        namespace_queue_prefix: "worker_".into(),
        step_results_queue: "results".into(),
        visibility_timeout_seconds: 30,
        batch_size: 10,
        polling_interval_ms: 100,
        max_deliveries: 3,
    };
    let backoff = BackoffConfig { base_ms: 1, max_ms: 5 };
    let engine = Engine::new(db.pool.clone(), Arc::new(templates), queues, backoff);
    engine.create_queues().await.unwrap();
    engine
}

/// Every step message currently visible on the demo queue (deleted, as a worker would).
async fn take_steps(db: &TestDatabase) -> Vec<StepMessage> {
    let mut steps = Vec::new();
    for message in pgmq_notify::read(&db.pool, QUEUE, 30, 100).await.unwrap() {
        pgmq_notify::delete(&db.pool, QUEUE, message.msg_id).await.unwrap();
        steps.push(serde_json::from_value(message.message).unwrap());
    }
    steps.sort_by(|a: &StepMessage, b| a.step_name.cmp(&b.step_name));
    steps
}

/// Like [`take_steps`], waiting (bounded) for delayed retry messages to become visible.
async fn wait_for_steps(db: &TestDatabase) -> Vec<StepMessage> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let steps = take_steps(db).await;
        if !steps.is_empty() || std::time::Instant::now() > deadline {
            return steps;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

fn outcome(step: &StepMessage, outcome: StepOutcome) -> StepResultMessage {
    StepResultMessage {
        task_uuid: step.task_uuid,
        step_uuid: step.step_uuid,
        attempt: step.attempt,
        worker_id: "test".into(),
        outcome,
    }
}

fn complete(step: &StepMessage, result: Value) -> StepResultMessage {
    outcome(step, StepOutcome::Complete { result })
}

async fn apply(engine: &Engine, message: &StepResultMessage) -> ResultEffect {
    let mut tx = engine.pool().begin().await.unwrap();
    let effect = engine.apply_result(&mut tx, message).await.unwrap();
    tx.commit().await.unwrap();
    effect
}

#[tokio::test]
async fn diamond_releases_the_join_only_after_both_branches() {
    let db = TestDatabase::create().await;
    let engine = engine(&db).await;
    let request = CreateTaskRequest::new("demo", "diamond", "1.0.0", json!({"x": 3}));
    let task_uuid = engine.create_task(&request).await.unwrap();

    let roots = take_steps(&db).await;
    assert_eq!(roots.len(), 1);
    let start = &roots[0];
    assert_eq!((start.step_name.as_str(), start.attempt), ("start", 1));
    assert_eq!(start.context, json!({"x": 3}));
    assert!(start.dependency_results.is_empty());
    let task = engine.get_task(task_uuid).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::InProgress);
    assert_eq!(task.step("start").unwrap().state, StepState::Enqueued);
    assert_eq!(task.step("join").unwrap().state, StepState::Pending);

    let effect = apply(&engine, &complete(start, json!({"v": 9}))).await;
    assert_eq!(
        effect,
        ResultEffect::Completed {
            enqueued: vec!["left".into(), "right".into()],
            task_complete: false
        }
    );
    // At-least-once delivery: the same result again changes nothing.
    assert!(matches!(
        apply(&engine, &complete(start, json!({"v": 0}))).await,
        ResultEffect::Ignored(_)
    ));
    let branches = take_steps(&db).await;
    assert_eq!(branches.len(), 2);
    assert_eq!(branches[0].dependency_results["start"], json!({"v": 9}));

    apply(&engine, &complete(&branches[0], json!({"v": 1}))).await;
    assert!(take_steps(&db).await.is_empty(), "join must wait for the other branch");
    apply(&engine, &complete(&branches[1], json!({"v": 2}))).await;
    let joins = take_steps(&db).await;
    assert_eq!(joins.len(), 1);
    assert_eq!(joins[0].step_name, "join");
    assert_eq!(joins[0].dependency_results.len(), 2);
    assert_eq!(joins[0].dependency_results["right"], json!({"v": 2}));

    let effect = apply(&engine, &complete(&joins[0], json!({"v": 3}))).await;
    assert_eq!(effect, ResultEffect::Completed { enqueued: vec![], task_complete: true });
    let task = engine.get_task(task_uuid).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Complete);
    assert!(task.completed_at.is_some());
    assert!(task.steps.iter().all(|s| s.state == StepState::Complete && s.attempts == 1));
    assert_eq!(task.step("join").unwrap().result, Some(json!({"v": 3})));
    // A late duplicate after completion is still ignored.
    assert!(matches!(
        apply(&engine, &complete(&joins[0], json!(0))).await,
        ResultEffect::Ignored(_)
    ));
    db.drop_database().await;
}

#[tokio::test]
async fn failures_retry_up_to_the_limit_then_fail_the_task() {
    let db = TestDatabase::create().await;
    let engine = engine(&db).await;
    let request = CreateTaskRequest::new("demo", "flaky", "1.0.0", json!({}));
    let task_uuid = engine.create_task(&request).await.unwrap();
    let first = take_steps(&db).await.remove(0);

    let failed = outcome(&first, StepOutcome::Error { message: "boom 1".into() });
    assert!(matches!(
        apply(&engine, &failed).await,
        ResultEffect::RetryScheduled { attempt: 2, .. }
    ));
    let task = engine.get_task(task_uuid).await.unwrap().unwrap();
    let flaky = task.step("flaky").unwrap();
    assert_eq!((flaky.state, flaky.attempts), (StepState::Enqueued, 2));
    assert_eq!(flaky.last_error.as_deref(), Some("boom 1"));
    assert!(flaky.next_attempt_at.is_some());
    // The stale failure of attempt 1, delivered twice, does not consume attempt 2.
    assert!(matches!(apply(&engine, &failed).await, ResultEffect::Ignored(_)));

    let second = wait_for_steps(&db).await.remove(0);
    assert_eq!(second.attempt, 2);
    let failed = outcome(&second, StepOutcome::Error { message: "boom 2".into() });
    assert_eq!(
        apply(&engine, &failed).await,
        ResultEffect::Failed { cancelled: vec!["after".into()] }
    );

    let task = engine.get_task(task_uuid).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Error);
    let flaky = task.step("flaky").unwrap();
    assert_eq!((flaky.state, flaky.attempts), (StepState::Error, 2));
    assert_eq!(flaky.last_error.as_deref(), Some("boom 2"));
    // pending -> cancelled: it can never run, and says so.
    let after = task.step("after").unwrap();
    assert_eq!((after.state, after.attempts), (StepState::Cancelled, 0));
    assert!(after.last_error.as_deref().unwrap().contains("step `flaky` failed"), "{after:#?}");
    assert!(after.completed_at.is_some());
    assert!(take_steps(&db).await.is_empty());
    db.drop_database().await;
}

#[tokio::test]
async fn a_failed_task_cancels_its_queued_steps_and_drops_their_messages() {
    let db = TestDatabase::create().await;
    let engine = engine(&db).await;
    let request = CreateTaskRequest::new("demo", "pair", "1.0.0", json!({}));
    let task_uuid = engine.create_task(&request).await.unwrap();
    // A worker claims both messages; only `one` finishes (its message is deleted with its
    // result), `two` is still queued when `one` fails.
    let claimed = pgmq_notify::read(&db.pool, QUEUE, 30, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let steps: Vec<StepMessage> =
        claimed.iter().map(|m| serde_json::from_value(m.message.clone()).unwrap()).collect();
    let one = steps.iter().find(|s| s.step_name == "one").unwrap();
    let two = steps.iter().find(|s| s.step_name == "two").unwrap();
    let one_msg = claimed[steps.iter().position(|s| s.step_name == "one").unwrap()].msg_id;
    pgmq_notify::delete(&db.pool, QUEUE, one_msg).await.unwrap();

    let failed = outcome(one, StepOutcome::Error { message: "first".into() });
    assert_eq!(
        apply(&engine, &failed).await,
        ResultEffect::Failed { cancelled: vec!["two".into()] }
    );
    let failed_task = engine.get_task(task_uuid).await.unwrap().unwrap();
    assert_eq!(failed_task.state, TaskState::Error);
    // enqueued -> cancelled, and its message is gone from the queue.
    let cancelled = failed_task.step("two").unwrap();
    assert_eq!((cancelled.state, cancelled.attempts), (StepState::Cancelled, 1));
    assert_eq!(pgmq_notify::queue_length(&db.pool, QUEUE).await.unwrap(), 0);

    // A worker that held `two` anyway: its result (success or failure) is ignored, and the
    // task's end stays.
    for late in [
        complete(two, json!({"v": 2})),
        outcome(two, StepOutcome::Error { message: "second".into() }),
    ] {
        assert!(matches!(apply(&engine, &late).await, ResultEffect::Ignored(_)));
    }
    let task = engine.get_task(task_uuid).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Error);
    assert_eq!(task.completed_at, failed_task.completed_at);
    assert_eq!(task.step("two").unwrap(), cancelled);
    db.drop_database().await;
}

#[tokio::test]
async fn a_failed_task_drops_a_delayed_retry_of_another_step() {
    let db = TestDatabase::create().await;
    let engine = engine(&db).await;
    let request = CreateTaskRequest::new("demo", "pair", "1.0.0", json!({}));
    // `two` may retry (after a minute); `one` may not.
    let mut templates = TemplateRegistry::default();
    templates.insert(TaskTemplate::parse("demo", "pair", "1.0.0", PAIR_RETRYING_TWO).unwrap());
    let backoff = BackoffConfig { base_ms: 60_000, max_ms: 60_000 };
    let engine =
        Engine::new(db.pool.clone(), Arc::new(templates), engine.queues().clone(), backoff);
    let task_uuid = engine.create_task(&request).await.unwrap();
    let steps = take_steps(&db).await;
    let failed = outcome(&steps[1], StepOutcome::Error { message: "try again".into() });
    assert!(matches!(apply(&engine, &failed).await, ResultEffect::RetryScheduled { .. }));
    // The retry of `two` waits a minute in the queue, invisible.
    assert_eq!(pgmq_notify::queue_length(&db.pool, QUEUE).await.unwrap(), 1);

    let failed = outcome(&steps[0], StepOutcome::Error { message: "fatal".into() });
    assert_eq!(
        apply(&engine, &failed).await,
        ResultEffect::Failed { cancelled: vec!["two".into()] }
    );
    assert_eq!(pgmq_notify::queue_length(&db.pool, QUEUE).await.unwrap(), 0);
    let task = engine.get_task(task_uuid).await.unwrap().unwrap();
    let two = task.step("two").unwrap();
    assert_eq!((two.state, two.attempts, &two.next_attempt_at), (StepState::Cancelled, 2, &None));
    db.drop_database().await;
}

#[tokio::test]
async fn a_dead_lettered_step_fails_at_once_whatever_attempts_remain() {
    let db = TestDatabase::create().await;
    let engine = engine(&db).await;
    let request = CreateTaskRequest::new("demo", "flaky", "1.0.0", json!({}));
    let task_uuid = engine.create_task(&request).await.unwrap();
    let first = take_steps(&db).await.remove(0);
    let why = "dead-lettered: the step message was delivered 3 times without a result";
    let dead = outcome(&first, StepOutcome::DeadLettered { message: why.into() });
    assert_eq!(
        apply(&engine, &dead).await,
        ResultEffect::Failed { cancelled: vec!["after".into()] }
    );
    let task = engine.get_task(task_uuid).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Error);
    let flaky = task.step("flaky").unwrap();
    assert_eq!((flaky.state, flaky.attempts, flaky.max_attempts), (StepState::Error, 1, 2));
    assert_eq!(flaky.last_error.as_deref(), Some(why));
    assert_eq!(task.step("after").unwrap().state, StepState::Cancelled);
    assert!(take_steps(&db).await.is_empty(), "no retry is scheduled");
    db.drop_database().await;
}

#[tokio::test]
async fn invalid_requests_create_nothing() {
    let db = TestDatabase::create().await;
    let engine = engine(&db).await;
    let unknown = CreateTaskRequest::new("demo", "nope", "1.0.0", json!({}));
    match engine.create_task(&unknown).await {
        Err(CreateTaskError::Invalid(message)) => {
            assert!(message.contains("unknown task template demo/nope/1.0.0"), "{message}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let not_object = CreateTaskRequest::new("demo", "diamond", "1.0.0", json!([1]));
    assert!(matches!(engine.create_task(&not_object).await, Err(CreateTaskError::Invalid(_))));
    // jsonb cannot store NUL: a client mistake, not a database failure.
    for context in [json!({"a": ["ok", "nul\u{0}"]}), json!({"k\u{0}": 1})] {
        let with_nul = CreateTaskRequest::new("demo", "diamond", "1.0.0", context);
        match engine.create_task(&with_nul).await {
            Err(CreateTaskError::Invalid(message)) => {
                assert!(message.contains("u0000"), "{message}")
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
    let tasks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tasker.tasks").fetch_one(&db.pool).await.unwrap();
    assert_eq!(tasks, 0);
    assert!(take_steps(&db).await.is_empty());
    db.drop_database().await;
}
