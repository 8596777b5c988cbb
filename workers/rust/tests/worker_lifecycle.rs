//! The `rust-worker` process against a real PostgreSQL (`DATABASE_URL`) and an in-process
//! orchestration loop: a worker killed in the middle of a step loses nothing (the message
//! reappears after its visibility timeout and a new worker finishes the task), and
//! SIGTERM lets the step in hand finish before a prompt exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tasker_client::api::{CreateTaskRequest, StepState, TaskResponse, TaskState};
use tasker_orchestration::engine::Engine;
use tasker_shared::TaskerConfig;
use tasker_shared::templates::TemplateRegistry;
use tasker_shared::testing::{
    ChildProcess, TestConfig, TestDatabase, UnresponsiveDatabase, send_signal, wait_for_exit,
};
use tokio::sync::oneshot;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `rust-worker` with `config` (plus `env`), logging warnings to the test's stderr.
fn spawn_worker(config: &Path, env: &[(&str, &str)]) -> ChildProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_rust-worker"))
        .env("TASKER_CONFIG_PATH", config)
        .env("TASKER_WEB_BIND_ADDRESS", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting rust-worker");
    ChildProcess(child)
}

struct Harness {
    db: TestDatabase,
    config_path: PathBuf,
    engine: Engine,
    stop_orchestration: oneshot::Sender<()>,
    orchestration: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Harness {
    async fn start() -> Harness {
        let db = TestDatabase::create().await;
        // A 1 s visibility timeout, so a killed worker's step comes back quickly.
        let config_path = db.write_config(&TestConfig {
            visibility_timeout_seconds: 1,
            polling_interval_ms: 50,
            step_timeout_ms: 10_000,
        });
        let config = TaskerConfig::load_from(&config_path, &|_| None).unwrap();
        let templates = TemplateRegistry::load_dir(&config.template_dir()).unwrap();
        let engine = Engine::new(
            db.pool.clone(),
            std::sync::Arc::new(templates.clone()),
            config.queues.clone(),
            config.orchestration().unwrap().backoff.clone(),
        );
        // Queues exist before the first task, whatever the spawned server is doing.
        engine.create_queues().await.unwrap();
        let (stop_orchestration, stopped) = oneshot::channel::<()>();
        let orchestration = tokio::spawn(tasker_orchestration::serve(config, templates, async {
            let _ = stopped.await;
        }));
        Harness { db, config_path, engine, stop_orchestration, orchestration }
    }

    fn spawn_worker(&self) -> ChildProcess {
        spawn_worker(&self.config_path, &[])
    }

    async fn create(&self, name: &str, context: serde_json::Value) -> uuid::Uuid {
        self.engine
            .create_task(&CreateTaskRequest::new("rust", name, "1.0.0", context))
            .await
            .unwrap_or_else(|err| panic!("{err:?}"))
    }

    async fn task(&self, uuid: uuid::Uuid) -> TaskResponse {
        self.engine.get_task(uuid).await.unwrap().unwrap()
    }

    /// Polls until `done(task)` (bounded: 30 s).
    async fn wait_until(
        &self,
        uuid: uuid::Uuid,
        what: &str,
        done: impl Fn(&TaskResponse) -> bool,
    ) -> TaskResponse {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let task = self.task(uuid).await;
            if done(&task) {
                return task;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {task:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until a worker has claimed a message from the `rust` queue.
    async fn wait_for_claim(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let claimed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pgmq.q_worker_rust_queue WHERE read_ct > 0 AND vt > clock_timestamp()",
            )
            .fetch_one(&self.db.pool)
            .await
            .unwrap();
            if claimed > 0 {
                return;
            }
            assert!(Instant::now() < deadline, "no worker claimed the step");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) {
        let _ = self.stop_orchestration.send(());
        self.orchestration.await.unwrap().unwrap();
        self.db.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_worker_mid_step_and_restarted_still_completes_the_task() {
    let harness = Harness::start().await;
    let mut first = harness.spawn_worker();
    let uuid =
        harness.create("linear_workflow", json!({"even_number": 2, "step_delay_ms": 700})).await;
    harness.wait_for_claim().await;
    first.0.kill().unwrap(); // SIGKILL mid-step: no chance to post anything.
    first.0.wait().unwrap();
    let task = harness.task(uuid).await;
    assert_eq!(task.step("linear_step_1").unwrap().state, StepState::Enqueued);

    let mut second = harness.spawn_worker();
    let task = harness.wait_until(uuid, "completion after restart", |t| t.state.is_final()).await;
    send_signal(second.0.id(), "TERM");
    let (status, _) = wait_for_exit(&mut second.0, Duration::from_secs(10));
    assert!(status.success(), "{status}");

    assert_eq!(task.state, TaskState::Complete, "{task:#?}");
    let results: Vec<i64> =
        task.steps.iter().map(|s| s.result.as_ref().unwrap()["result"].as_i64().unwrap()).collect();
    assert_eq!(results, [4, 16, 256, 65_536]);
    // Redelivery is not a new attempt: the step ran to completion once.
    assert!(task.steps.iter().all(|s| s.attempts == 1));
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_step_in_hand_finish_then_exits_promptly() {
    let harness = Harness::start().await;
    let mut worker = harness.spawn_worker();
    let uuid =
        harness.create("linear_workflow", json!({"even_number": 2, "step_delay_ms": 600})).await;
    harness.wait_for_claim().await;
    send_signal(worker.0.id(), "TERM");
    let (status, exit_after) = wait_for_exit(&mut worker.0, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(exit_after < Duration::from_secs(2), "exit took {exit_after:?}");

    // The step in hand posted its result before the exit; the next one was never taken.
    let task = harness
        .wait_until(uuid, "step 1 result", |t| {
            t.step("linear_step_1").unwrap().state == StepState::Complete
        })
        .await;
    assert_eq!(task.step("linear_step_1").unwrap().result, Some(json!({"result": 4})));
    assert_eq!(task.step("linear_step_2").unwrap().state, StepState::Enqueued);
    assert_eq!(task.state, TaskState::InProgress);
    harness.finish().await;
}

#[test]
fn sigterm_during_startup_exits_0_promptly() {
    let database = UnresponsiveDatabase::bind();
    let config = root().join("config/tasker/generated/worker-test.toml");
    let mut worker = spawn_worker(&config, &[("DATABASE_URL", &database.url)]);
    // Startup now waits for the database that never answers.
    let _connection = database.accept(Duration::from_secs(30));
    send_signal(worker.0.id(), "TERM");
    let (status, waited) = wait_for_exit(&mut worker.0, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(waited < Duration::from_secs(2), "exit took {waited:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_step_longer_than_the_budget_still_exits_within_2_s() {
    let harness = Harness::start().await;
    let mut worker = harness.spawn_worker();
    let uuid =
        harness.create("linear_workflow", json!({"even_number": 2, "step_delay_ms": 5000})).await;
    harness.wait_for_claim().await;
    send_signal(worker.0.id(), "TERM");
    let (status, exit_after) = wait_for_exit(&mut worker.0, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(exit_after < Duration::from_secs(2), "exit took {exit_after:?}");
    // The step was abandoned, not failed: no result, it waits for its visibility timeout.
    let step = harness.task(uuid).await.step("linear_step_1").unwrap().clone();
    assert_eq!((step.state, step.attempts), (StepState::Enqueued, 1), "{step:#?}");
    harness.finish().await;
}
