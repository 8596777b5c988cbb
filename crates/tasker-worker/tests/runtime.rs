//! The worker runtime as a library, against a real PostgreSQL (`DATABASE_URL`): handlers
//! registered as trait objects receive step messages from their namespace's queue, and
//! every outcome (result, error, panic, timeout, missing handler) is posted as a result.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tasker_shared::TaskerConfig;
use tasker_shared::messages::{StepMessage, StepOutcome, StepResultMessage};
use tasker_shared::testing::{TestConfig, TestDatabase};
use tasker_worker::{HandlerRegistry, Worker, WorkerOptions};
use uuid::Uuid;

const RESULTS: &str = "orchestration_step_results";

/// The fallback poll is longer than any wait below: steps are only found in time because
/// the NOTIFY wake-up path works. `step_timeout_ms` is the only clock a handler races: the
/// tests give it a value no handler reaches unless it is meant to (one that never finishes).
fn config(db: &TestDatabase, step_timeout_ms: u64) -> TaskerConfig {
    let text = db.config_text(&TestConfig {
        visibility_timeout_seconds: 30,
        polling_interval_ms: 60_000,
        step_timeout_ms,
        max_deliveries: 3,
    });
    let vars = |name: &str| (name == "TASKER_INSTANCE_ID").then(|| "lib-test".to_string());
    TaskerConfig::parse(&text, Path::new("runtime-test.toml"), &vars).unwrap()
}

fn step(namespace: &str, handler: &str, attempt: i32) -> StepMessage {
    StepMessage {
        task_uuid: Uuid::new_v4(),
        step_uuid: Uuid::new_v4(),
        namespace: namespace.into(),
        task_name: "t".into(),
        task_version: "1.0.0".into(),
        step_name: handler.into(),
        handler: handler.into(),
        attempt,
        max_attempts: 3,
        context: json!({"n": 21}),
        dependency_results: Default::default(),
    }
}

/// Waits (bounded) for `count` results and returns them by step uuid.
async fn results(db: &TestDatabase, count: usize) -> Vec<StepResultMessage> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut found = Vec::new();
    while found.len() < count {
        for message in pgmq_notify::read(&db.pool, RESULTS, 30, 10).await.unwrap() {
            found.push(serde_json::from_value(message.message).unwrap());
        }
        assert!(Instant::now() < deadline, "only {} of {count} results arrived", found.len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    found
}

fn outcome_of(results: &[StepResultMessage], step: &StepMessage) -> StepOutcome {
    let result = results.iter().find(|r| r.step_uuid == step.step_uuid).expect("a result per step");
    assert_eq!(result.attempt, step.attempt);
    assert_eq!(result.task_uuid, step.task_uuid);
    result.outcome.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn handlers_run_by_namespace_and_name_and_every_outcome_is_posted() {
    let db = TestDatabase::create().await;
    let mut registry = HandlerRegistry::new();
    registry
        .register("alpha", "double", |step: StepMessage| async move {
            let n = step.context["n"].as_i64().ok_or("n missing")?;
            Ok(json!({"result": n * 2, "attempt": step.attempt}))
        })
        .register_sync("alpha", "fails", |_| Err("nope".into()))
        .register_sync("alpha", "panics", |_| panic!("handler bug"))
        .register_sync("alpha", "nul_result", |_| Ok(json!({"text": "a\u{0}b"})))
        .register_sync("alpha", "nul_error", |_| Err("bad\u{0}byte".into()))
        .register_sync("beta", "echo", |step| Ok(step.context.clone()));
    assert_eq!(registry.namespaces().into_iter().collect::<Vec<_>>(), ["alpha", "beta"]);

    // No handler here may time out, however loaded the machine: the timeout has its own test.
    let worker =
        Worker::start(config(&db, 600_000), registry, WorkerOptions::new("ruby")).await.unwrap();

    // Identity and readiness on the bound address.
    let client = tasker_client::TaskerClient::new(format!("http://{}", worker.local_addr()));
    let (health, wrong_method) = tokio::task::spawn_blocking(move || {
        // Each consumer counts itself running once its task starts, after `start` returned:
        // ready is a report to poll, as a deployment's probe does, not a promise of `start`.
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(err) = client.ready() {
            assert!(Instant::now() < deadline, "not ready after 30 s: {err:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        (client.health().unwrap(), client.post_raw("/health", "application/json", "{}").unwrap())
    })
    .await
    .unwrap();
    assert_eq!(wrong_method.0, 405, "{wrong_method:?}");
    assert!(
        wrong_method.1["error"].as_str().is_some_and(|e| e.contains("POST")),
        "{wrong_method:?}"
    );
    assert_eq!(health.service, "tasker-worker");
    assert_eq!(health.language.as_deref(), Some("ruby"));
    assert_eq!(health.instance_id.as_deref(), Some("lib-test"));
    assert_eq!(health.worker_id.as_deref(), Some(worker.worker_id()));

    let steps = [
        step("alpha", "double", 2),
        step("alpha", "fails", 1),
        step("alpha", "panics", 1),
        step("alpha", "unregistered", 1),
        step("beta", "echo", 1),
        step("alpha", "nul_result", 1),
        step("alpha", "nul_error", 1),
    ];
    for step in &steps {
        let queue = format!("worker_{}_queue", step.namespace);
        pgmq_notify::send(&db.pool, &queue, &serde_json::to_value(step).unwrap()).await.unwrap();
    }
    let posted = results(&db, steps.len()).await;

    assert_eq!(
        outcome_of(&posted, &steps[0]),
        StepOutcome::Complete { result: json!({"result": 42, "attempt": 2}) }
    );
    assert_eq!(outcome_of(&posted, &steps[1]), StepOutcome::Error { message: "nope".into() });
    let StepOutcome::Error { message } = outcome_of(&posted, &steps[2]) else { panic!() };
    assert!(message.contains("panicked"), "{message}");
    let StepOutcome::Error { message } = outcome_of(&posted, &steps[3]) else { panic!() };
    assert!(message.contains("no handler `unregistered`"), "{message}");
    assert_eq!(outcome_of(&posted, &steps[4]), StepOutcome::Complete { result: json!({"n": 21}) });
    // NUL cannot be stored in jsonb: posted as an error instead of failing forever.
    let StepOutcome::Error { message } = outcome_of(&posted, &steps[5]) else { panic!() };
    assert!(message.contains("\\u0000"), "{message}");
    assert_eq!(
        outcome_of(&posted, &steps[6]),
        StepOutcome::Error { message: "bad\\u0000byte".into() }
    );

    // Posting a result also removed the step message.
    for queue in ["worker_alpha_queue", "worker_beta_queue"] {
        assert_eq!(pgmq_notify::queue_length(&db.pool, queue).await.unwrap(), 0, "{queue}");
    }

    let stopping = Instant::now();
    worker.stop().await.unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(3));
    db.drop_database().await;
}

/// A handler that never finishes: the step timeout is the only way the step can end, so
/// the outcome cannot depend on how fast the machine is.
#[tokio::test(flavor = "multi_thread")]
async fn a_handler_past_the_step_timeout_is_aborted_and_posted_as_an_error() {
    let db = TestDatabase::create().await;
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut registry = HandlerRegistry::new();
    registry.register("alpha", "hangs", move |_step: StepMessage| {
        let started_tx = started_tx.clone();
        async move {
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
            Ok(Value::Null)
        }
    });
    let worker =
        Worker::start(config(&db, 300), registry, WorkerOptions::new("rust")).await.unwrap();
    let hangs = step("alpha", "hangs", 1);
    pgmq_notify::send(&db.pool, "worker_alpha_queue", &serde_json::to_value(&hangs).unwrap())
        .await
        .unwrap();
    let posted = results(&db, 1).await;
    let StepOutcome::Error { message } = outcome_of(&posted, &hangs) else { panic!("{posted:?}") };
    assert_eq!(message, "handler timed out after 300ms");
    assert_eq!(started.try_recv(), Ok(()), "the handler ran before it timed out");
    assert_eq!(pgmq_notify::queue_length(&db.pool, "worker_alpha_queue").await.unwrap(), 0);
    worker.stop().await.unwrap();
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_step_messages_are_archived() {
    let db = TestDatabase::create().await;
    let mut registry = HandlerRegistry::new();
    registry.register_sync("alpha", "noop", |_| Ok(Value::Null));
    let worker =
        Worker::start(config(&db, 600_000), registry, WorkerOptions::new("rust")).await.unwrap();
    let id =
        pgmq_notify::send(&db.pool, "worker_alpha_queue", &json!({"not": "a step"})).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let archived: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pgmq.a_worker_alpha_queue WHERE msg_id = $1")
                .bind(id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if archived == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "malformed message was not archived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pgmq_notify::queue_length(&db.pool, RESULTS).await.unwrap(), 0);
    worker.stop().await.unwrap();
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_outlasting_the_visibility_timeout_runs_once() {
    let db = TestDatabase::create().await;
    let text = db.config_text(&TestConfig {
        visibility_timeout_seconds: 1,
        polling_interval_ms: 50,
        step_timeout_ms: 10_000,
        max_deliveries: 3,
    });
    let config = TaskerConfig::parse(&text, Path::new("visibility-test.toml"), &|_| None).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = HandlerRegistry::new();
    let counter = Arc::clone(&runs);
    registry.register("alpha", "slow", move |_step: StepMessage| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2500)).await;
            Ok(json!({"done": true}))
        }
    });
    let worker = Worker::start(config, registry, WorkerOptions::new("rust")).await.unwrap();
    let slow = step("alpha", "slow", 1);
    pgmq_notify::send(&db.pool, "worker_alpha_queue", &serde_json::to_value(&slow).unwrap())
        .await
        .unwrap();
    let posted = results(&db, 1).await;
    assert_eq!(outcome_of(&posted, &slow), StepOutcome::Complete { result: json!({"done": true}) });
    // 2.5 s against a 1 s visibility timeout: the worker kept the message hidden meanwhile.
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the step ran again while it was running");
    assert_eq!(pgmq_notify::queue_length(&db.pool, "worker_alpha_queue").await.unwrap(), 0);
    worker.stop().await.unwrap();
    db.drop_database().await;
}
