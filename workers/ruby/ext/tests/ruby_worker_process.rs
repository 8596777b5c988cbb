//! The Ruby worker as a real process (`ruby workers/ruby/bin/server.rb`) on a real
//! database: step messages go straight into its namespace queue, results are read from the
//! step-results queue (no orchestration server needed). Needs `DATABASE_URL`; each test
//! creates and migrates its own database.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::RubyWorker;
use tasker_shared::messages::StepMessage;
use tasker_shared::testing::TestDatabase;
use uuid::Uuid;

const WORKER_QUEUE: &str = "worker_ruby_queue";
const RESULTS_QUEUE: &str = "orchestration_step_results";
const STARTUP: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

fn step(handler: &str, context: Value) -> StepMessage {
    StepMessage {
        task_uuid: Uuid::new_v4(),
        step_uuid: Uuid::new_v4(),
        namespace: "ruby".into(),
        task_name: "process_test".into(),
        task_version: "1.0.0".into(),
        step_name: handler.into(),
        handler: handler.into(),
        attempt: 1,
        max_attempts: 3,
        context,
        dependency_results: BTreeMap::new(),
    }
}

fn start_worker(db: &TestDatabase) -> RubyWorker {
    let worker = RubyWorker::start(&[("DATABASE_URL", db.url.clone())]);
    worker.wait_for_line("ready: health on", STARTUP);
    worker
}

async fn send(db: &TestDatabase, message: &Value) {
    pgmq_notify::send(&db.pool, WORKER_QUEUE, message).await.expect("sending a step message");
}

/// Reads `count` result messages (deleting them), polling until `timeout`.
async fn results(
    db: &TestDatabase,
    count: usize,
    timeout: Duration,
    worker: &RubyWorker,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut found = Vec::new();
    while found.len() < count {
        for message in
            pgmq_notify::read(&db.pool, RESULTS_QUEUE, 30, 10).await.expect("reading results")
        {
            pgmq_notify::delete(&db.pool, RESULTS_QUEUE, message.msg_id)
                .await
                .expect("deleting a result");
            found.push(message.message);
        }
        if Instant::now() > deadline {
            panic!(
                "{} of {count} results within {timeout:?}: {found:#?}\nworker output:\n{}",
                found.len(),
                worker.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    found
}

fn by_step(results: Vec<Value>) -> BTreeMap<String, Value> {
    results
        .into_iter()
        .map(|result| (result["step_uuid"].as_str().unwrap().to_owned(), result))
        .collect()
}

#[test]
fn ruby_exceptions_and_malformed_payloads_become_step_errors() {
    let rt = runtime();
    let db = rt.block_on(TestDatabase::create());
    let mut worker = start_worker(&db);
    let failing = step("ruby_failing_step", json!({}));
    let malformed = step("ruby_linear_step_1", json!({ "even_number": "six" }));
    let fine = step("ruby_linear_step_1", json!({ "even_number": 6 }));
    let found = rt.block_on(async {
        send(&db, &serde_json::to_value(&failing).unwrap()).await;
        send(&db, &serde_json::to_value(&malformed).unwrap()).await;
        // Not a step message at all: the runtime archives it and goes on.
        send(&db, &json!({ "garbage": true })).await;
        send(&db, &serde_json::to_value(&fine).unwrap()).await;
        results(&db, 3, Duration::from_secs(30), &worker).await
    });
    let found = by_step(found);
    let worker_id = format!("ruby-worker-{}", worker.instance_id);

    let result = &found[&failing.step_uuid.to_string()];
    assert_eq!(result["status"], "error", "{result}");
    assert_eq!(
        result["message"],
        "TaskerRuby::Handlers::FailingWorkflow::IntentionalFailure: \
         ruby_failing_step always fails: intentional failure for the error path"
    );
    assert_eq!(result["worker_id"], worker_id);

    let result = &found[&malformed.step_uuid.to_string()];
    assert_eq!(result["status"], "error", "{result}");
    assert_eq!(
        result["message"],
        "TaskerRuby::PayloadError: context.even_number must be an integer, got \"six\""
    );

    let result = &found[&fine.step_uuid.to_string()];
    assert_eq!(result["status"], "complete", "{result}");
    assert_eq!(result["result"], json!({ "value": 18, "computed_by": "ruby" }));
    assert_eq!(result["attempt"], 1);

    let left = rt.block_on(pgmq_notify::queue_length(&db.pool, WORKER_QUEUE)).unwrap();
    assert_eq!(left, 0, "every step message was consumed or archived");
    let (status, _) = worker.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "output:\n{}", worker.log());
    rt.block_on(db.drop_database());
}

#[test]
fn sigterm_during_a_step_exits_promptly_and_leaves_the_step_to_another_worker() {
    let rt = runtime();
    let db = rt.block_on(TestDatabase::create());
    let mut first = start_worker(&db);
    // Longer than the worker's 1 s grace after the signal, so the step is still running.
    let slow = step("ruby_sleep_step", json!({ "sleep_ms": 2500 }));
    rt.block_on(send(&db, &serde_json::to_value(&slow).unwrap()));
    first.wait_for_line("started: ruby_sleep_step", Duration::from_secs(30));

    let (status, elapsed) = first.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "output:\n{}", first.log());
    assert!(
        elapsed < Duration::from_secs(2),
        "exited {elapsed:?} after SIGTERM; output:\n{}",
        first.log()
    );
    assert!(
        first.log().contains("abandoned at shutdown: ruby_sleep_step"),
        "output:\n{}",
        first.log()
    );
    let (pending, posted) = rt.block_on(async {
        (
            pgmq_notify::queue_length(&db.pool, WORKER_QUEUE).await.unwrap(),
            pgmq_notify::queue_length(&db.pool, RESULTS_QUEUE).await.unwrap(),
        )
    });
    assert_eq!(
        (pending, posted),
        (1, 0),
        "the abandoned step keeps its message and posts no result"
    );

    // After the visibility timeout another worker runs it to completion.
    let second = start_worker(&db);
    let found = rt.block_on(results(&db, 1, Duration::from_secs(30), &second));
    let result = &found[0];
    assert_eq!(result["step_uuid"], slow.step_uuid.to_string());
    assert_eq!(result["status"], "complete", "{result}");
    assert_eq!(result["result"], json!({ "slept_ms": 2500, "computed_by": "ruby" }));
    assert_eq!(result["worker_id"], format!("ruby-worker-{}", second.instance_id));
    drop(second);
    rt.block_on(db.drop_database());
}
