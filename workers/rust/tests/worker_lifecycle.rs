//! The `rust-worker` process against a real PostgreSQL (`DATABASE_URL`) and an in-process
//! orchestration loop: a worker killed in the middle of a step loses nothing (the message
//! reappears after its visibility timeout and a new worker finishes the task), a step
//! that kills every worker running it is dead-lettered after `queues.max_deliveries`,
//! two workers sharing a queue run each step once per attempt, delayed retries are
//! picked up at their due time, and SIGTERM lets the step in hand finish before a prompt
//! exit.

use std::collections::HashMap;
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
        // A 1 s visibility timeout, so a killed worker's step comes back quickly.
        Harness::start_with(&TestConfig {
            visibility_timeout_seconds: 1,
            polling_interval_ms: 50,
            step_timeout_ms: 10_000,
            max_deliveries: 3,
        })
        .await
    }

    async fn start_with(settings: &TestConfig) -> Harness {
        let db = TestDatabase::create().await;
        let config_path = db.write_config(settings);
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
        self.create_in("rust", name, context).await
    }

    async fn create_in(
        &self,
        namespace: &str,
        name: &str,
        context: serde_json::Value,
    ) -> uuid::Uuid {
        self.engine
            .create_task(&CreateTaskRequest::new(namespace, name, "1.0.0", context))
            .await
            .unwrap_or_else(|err| panic!("{err:?}"))
    }

    async fn task(&self, uuid: uuid::Uuid) -> TaskResponse {
        self.engine.get_task(uuid).await.unwrap().unwrap()
    }

    /// The task's server-side duration, `completed_at - created_at`.
    async fn server_duration(&self, uuid: uuid::Uuid) -> Duration {
        let seconds: f64 = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM completed_at - created_at)::float8 FROM tasker.tasks
             WHERE task_uuid = $1",
        )
        .bind(uuid)
        .fetch_one(&self.db.pool)
        .await
        .unwrap();
        Duration::from_secs_f64(seconds)
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

#[tokio::test(flavor = "multi_thread")]
async fn a_step_that_kills_its_worker_is_dead_lettered_after_max_deliveries() {
    let settings = TestConfig {
        visibility_timeout_seconds: 1,
        polling_interval_ms: 50,
        step_timeout_ms: 10_000,
        max_deliveries: 2,
    };
    let harness = Harness::start_with(&settings).await;
    let uuid = harness.create_in("rust_faults", "crash_workflow", json!({})).await;
    let mut worker = harness.spawn_worker();
    let mut crashes = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let task = loop {
        let task = harness.task(uuid).await;
        if task.state.is_final() {
            break task;
        }
        if let Some(status) = worker.0.try_wait().unwrap() {
            assert!(!status.success(), "the worker exited without crashing: {status}");
            crashes += 1;
            assert!(
                crashes <= settings.max_deliveries,
                "the crashing step was delivered {crashes} times (queues.max_deliveries = {})",
                settings.max_deliveries
            );
            worker = harness.spawn_worker(); // what a supervisor would do
        }
        assert!(Instant::now() < deadline, "the task never ended: {task:#?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(crashes, settings.max_deliveries, "one crash per allowed delivery");
    assert_eq!(task.state, TaskState::Error, "{task:#?}");
    let crash = task.step("crash").unwrap();
    assert_eq!((crash.state, crash.attempts), (StepState::Error, 1), "no retry: {crash:#?}");
    let why = crash.last_error.as_deref().unwrap();
    assert!(why.contains("dead-lettered") && why.contains("queues.max_deliveries = 2"), "{why}");
    assert_eq!(task.step("after_crash").unwrap().state, StepState::Cancelled);

    // The message waits in the dead-letter place (PGMQ's archive), not in the queue.
    let archived: i64 = sqlx::query_scalar("SELECT count(*) FROM pgmq.a_worker_rust_faults_queue")
        .fetch_one(&harness.db.pool)
        .await
        .unwrap();
    assert_eq!(archived, 1);
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM pgmq.q_worker_rust_faults_queue")
        .fetch_one(&harness.db.pool)
        .await
        .unwrap();
    assert_eq!(queued, 0);
    // The task ends one visibility timeout after each allowed delivery (measured: 2.1 s
    // for 2 x 1 s, the rest being worker restarts and hops): sooner than one more
    // delivery could have taken.
    let timeout = settings.visibility_timeout_seconds.unsigned_abs();
    let limit = Duration::from_secs((settings.max_deliveries.unsigned_abs() * timeout).into());
    let took = harness.server_duration(uuid).await;
    let bound = limit + Duration::from_secs(timeout.into());
    assert!(took < bound, "took {took:?}: more than max_deliveries + 1 visibility timeouts");

    // The worker that dead-lettered the message is alive and stops cleanly.
    assert!(worker.0.try_wait().unwrap().is_none(), "the last worker crashed too");
    send_signal(worker.0.id(), "TERM");
    let (status, _) = wait_for_exit(&mut worker.0, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    harness.finish().await;
}

/// `rust-worker` logging each step it runs (`running step step_uuid=.. attempt=..`) to
/// `log`.
fn spawn_logging_worker(config: &Path, log: &Path, instance_id: &str) -> ChildProcess {
    let file = std::fs::File::create(log).expect("creating the worker log");
    let child = Command::new(env!("CARGO_BIN_EXE_rust-worker"))
        .env("TASKER_CONFIG_PATH", config)
        .env("TASKER_WEB_BIND_ADDRESS", "127.0.0.1:0")
        .env("TASKER_INSTANCE_ID", instance_id)
        .env("RUST_LOG", "warn,tasker_worker=debug")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("starting rust-worker");
    ChildProcess(child)
}

/// `(step_uuid, attempt)` of every `running step` line of a worker log.
fn steps_run(log: &Path) -> Vec<(uuid::Uuid, i32)> {
    let text = std::fs::read_to_string(log).expect("reading the worker log");
    text.lines()
        .filter(|line| line.contains("running step"))
        .map(|line| {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|word| word.strip_prefix(name))
                    .unwrap_or_else(|| panic!("no {name} in {line}"))
            };
            (field("step_uuid=").parse().unwrap(), field("attempt=").parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_share_a_queue_and_run_each_step_once_per_attempt() {
    let harness = Harness::start().await;
    let logs: Vec<PathBuf> = (0..2)
        .map(|i| std::env::temp_dir().join(format!("{}-worker-{i}.log", harness.db.name)))
        .collect();
    let mut workers: Vec<ChildProcess> = logs
        .iter()
        .enumerate()
        .map(|(i, log)| spawn_logging_worker(&harness.config_path, log, &format!("shared-{i}")))
        .collect();
    let mut tasks = Vec::new();
    for n in 0..20 {
        let context = json!({"even_number": 2 * n, "step_delay_ms": 5});
        tasks.push(harness.create("diamond_workflow", context).await);
    }
    for _ in 0..5 {
        let context = json!({"even_number": 4, "fail_times": 1});
        tasks.push(harness.create("retry_workflow", context).await);
    }
    let mut expected = Vec::new();
    for uuid in &tasks {
        let task = harness.wait_until(*uuid, "completion", |t| t.state.is_final()).await;
        assert_eq!(task.state, TaskState::Complete, "{task:#?}");
        for step in &task.steps {
            expected.extend((1..=step.attempts).map(|attempt| (step.step_uuid, attempt)));
        }
    }
    // Stopped, so their logs are complete.
    for worker in &mut workers {
        send_signal(worker.0.id(), "TERM");
        let (status, _) = wait_for_exit(&mut worker.0, Duration::from_secs(10));
        assert!(status.success(), "{status}");
    }

    let per_worker: Vec<Vec<(uuid::Uuid, i32)>> = logs.iter().map(|log| steps_run(log)).collect();
    for (log, runs) in logs.iter().zip(&per_worker) {
        assert!(!runs.is_empty(), "{} ran no step: the queue was not shared", log.display());
    }
    let mut runs: HashMap<(uuid::Uuid, i32), usize> = HashMap::new();
    for run in per_worker.iter().flatten() {
        *runs.entry(*run).or_default() += 1;
    }
    let twice: Vec<_> = runs.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "steps run more than once per attempt: {twice:?}");
    expected.sort();
    let mut ran: Vec<(uuid::Uuid, i32)> = runs.into_keys().collect();
    ran.sort();
    assert_eq!(ran, expected, "every attempt of every step ran exactly once");
    assert_eq!(expected.len(), 20 * 4 + 5 * 3, "retry tasks: 2 attempts + 1 step");
    for log in &logs {
        let _ = std::fs::remove_file(log);
    }
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delayed_retries_run_at_their_due_time_not_at_the_next_poll() {
    // The fallback poll is far beyond the wait below: only the due-time wake-up can make
    // the retries run in time.
    let harness = Harness::start_with(&TestConfig {
        visibility_timeout_seconds: 5,
        polling_interval_ms: 60_000,
        step_timeout_ms: 10_000,
        max_deliveries: 3,
    })
    .await;
    let mut worker = harness.spawn_worker();
    let uuid = harness.create("retry_workflow", json!({"even_number": 6, "fail_times": 2})).await;
    let task = harness.wait_until(uuid, "completion", |t| t.state.is_final()).await;
    assert_eq!(task.state, TaskState::Complete, "{task:#?}");
    assert_eq!(task.step("flaky_step").unwrap().attempts, 3);
    assert_eq!(task.step("after_flaky").unwrap().result, Some(json!({"result": 36})));
    send_signal(worker.0.id(), "TERM");
    let (status, _) = wait_for_exit(&mut worker.0, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    harness.finish().await;
}
