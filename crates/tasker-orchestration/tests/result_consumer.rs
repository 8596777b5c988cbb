//! The orchestration server's step-results consumer against a real PostgreSQL
//! (`DATABASE_URL`): results posted to the queue are applied and acknowledged, duplicates
//! change nothing, malformed messages are archived. The fallback poll is longer than any
//! wait here, so the results are only picked up in time through the NOTIFY wake-ups.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tasker_client::api::{CreateTaskRequest, StepState};
use tasker_orchestration::engine::Engine;
use tasker_shared::TaskerConfig;
use tasker_shared::messages::{StepMessage, StepOutcome, StepResultMessage};
use tasker_shared::templates::TemplateRegistry;
use tasker_shared::testing::{TestConfig, TestDatabase};

const STEPS: &str = "worker_rust_queue";
const RESULTS: &str = "orchestration_step_results";

/// Waits (bounded) until every result message is gone: applied, ignored or archived.
async fn wait_for_empty_results(db: &TestDatabase) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pgmq_notify::queue_length(&db.pool, RESULTS).await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "result messages left on the queue");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next step message of the `rust` queue (deleted, as a worker would).
async fn take_step(db: &TestDatabase) -> StepMessage {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(message) = pgmq_notify::read(&db.pool, STEPS, 30, 1).await.unwrap().pop() {
            pgmq_notify::delete(&db.pool, STEPS, message.msg_id).await.unwrap();
            return serde_json::from_value(message.message).unwrap();
        }
        assert!(Instant::now() < deadline, "no step message");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn completed(step: &StepMessage, n: i64) -> serde_json::Value {
    serde_json::to_value(StepResultMessage {
        task_uuid: step.task_uuid,
        step_uuid: step.step_uuid,
        attempt: step.attempt,
        worker_id: "test".into(),
        outcome: StepOutcome::Complete { result: json!({ "result": n }) },
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn results_are_applied_once_and_malformed_ones_archived() {
    let db = TestDatabase::create().await;
    let text = db.config_text(&TestConfig {
        visibility_timeout_seconds: 30,
        polling_interval_ms: 60_000,
        step_timeout_ms: 10_000,
        max_deliveries: 3,
    });
    let config = TaskerConfig::parse(&text, Path::new("consumer-test.toml"), &|_| None).unwrap();
    let templates = TemplateRegistry::load_dir(&config.template_dir()).unwrap();
    let engine = Engine::new(
        db.pool.clone(),
        Arc::new(templates.clone()),
        config.queues.clone(),
        config.orchestration().unwrap().backoff.clone(),
    );
    engine.create_queues().await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tasker_orchestration::serve(config, templates, async {
        let _ = stopped.await;
    }));

    let request = CreateTaskRequest::new("rust", "linear_workflow", "1.0.0", json!({}));
    let uuid = engine.create_task(&request).await.unwrap();
    let first = take_step(&db).await;
    assert_eq!(first.step_name, "linear_step_1");
    // Delivered twice (at-least-once), and a message that is no result at all.
    for message in [completed(&first, 4), completed(&first, 99), json!({"not": "a result"})] {
        pgmq_notify::send(&db.pool, RESULTS, &message).await.unwrap();
    }

    let second = take_step(&db).await;
    assert_eq!((second.step_name.as_str(), second.attempt), ("linear_step_2", 1));
    assert_eq!(second.dependency_results["linear_step_1"], json!({"result": 4}));
    wait_for_empty_results(&db).await;
    let task = engine.get_task(uuid).await.unwrap().unwrap();
    let step = task.step("linear_step_1").unwrap();
    assert_eq!((step.state, step.attempts), (StepState::Complete, 1));
    assert_eq!(step.result, Some(json!({"result": 4})), "the duplicate changed nothing");
    let archived: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pgmq.a_orchestration_step_results")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(archived, 1);
    assert!(pgmq_notify::read(&db.pool, STEPS, 30, 10).await.unwrap().is_empty(), "no step twice");

    // The consumer is idle now, on a 60 s fallback poll: only a wake-up brings this one in.
    pgmq_notify::send(&db.pool, RESULTS, &completed(&second, 16)).await.unwrap();
    let third = take_step(&db).await;
    assert_eq!(third.step_name, "linear_step_3");
    assert_eq!(third.dependency_results["linear_step_2"], json!({"result": 16}));

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    db.drop_database().await;
}
