//! Throughput under a burst: N tasks of one workflow submitted at once against running
//! services, for the linear and the diamond workflow and each N.
//!
//! ```text
//! cargo xtask services run --build --release --without ruby-worker -- \
//!     cargo run --release -q -p tasker-core --example load_bench -- [--repeat R] [N ...]
//!     (default: 3 bursts each of 1, 100 and 1000 tasks)
//! ```
//! Reads TASKER_TEST_ORCHESTRATION_URL, TASKER_TEST_WORKER_URL and DATABASE_URL (what
//! `cargo xtask services run` passes it, and `services up` writes to
//! target/xtask/services.env). Per row: how long the
//! clients took to submit the burst, the burst's wall time on the server (first `created_at` to last `completed_at`), tasks/s and
//! steps/s over it, p50/p99 task latency (`completed_at - created_at`), the most database
//! connections open at once (sampled every 20 ms, this program's own excluded), and the
//! checks: every task complete with its exact result, every step run in one attempt, no
//! message left in the queues. A failed check exits 1.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tasker_client::TaskerClient;
use tasker_client::api::CreateTaskRequest;
use tasker_core::{WORKER_URL_VAR, orchestration, service_url};
use uuid::Uuid;

/// Template, steps per task, and the last step's result for `even_number = 6`.
const WORKFLOWS: &[(&str, i64, &str, i64)] = &[
    ("linear_workflow", 4, "linear_step_4", 2_821_109_907_456),
    ("diamond_workflow", 4, "diamond_end", 118),
];

/// Client threads submitting a burst (the server, not the client, should be the limit).
const SUBMITTERS: usize = 8;
const APPLICATION_NAME: &str = "tasker_load_bench";

struct Row {
    workflow: &'static str,
    tasks: usize,
    /// How long the submitting clients took to get every `201`.
    submit: Duration,
    wall: Duration,
    steps: i64,
    p50: Duration,
    p99: Duration,
    connections: i64,
    problems: Vec<String>,
}

/// `[--repeat R] [N ...]`: the task counts and how many bursts of each to run.
fn parse_args(args: &[String]) -> Result<(usize, Vec<usize>), String> {
    let count = |arg: &str| match arg.parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => {
            Err(format!("`{arg}` is not a positive count; usage: load_bench [--repeat R] [N ...]"))
        }
    };
    let mut repeat = 3;
    let mut sizes = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--repeat" {
            repeat = count(args.next().map(String::as_str).unwrap_or(""))?;
        } else {
            sizes.push(count(arg)?);
        }
    }
    if sizes.is_empty() {
        sizes = vec![1, 100, 1000];
    }
    Ok((repeat, sizes))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (repeat, sizes) = parse_args(&args).unwrap_or_else(|err| {
        eprintln!("error: {err}");
        std::process::exit(2);
    });
    let client = orchestration();
    client.ready().expect("orchestration is not ready");
    TaskerClient::new(service_url(WORKER_URL_VAR)).ready().expect("worker is not ready");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let pool = runtime.block_on(connect());

    println!("each row: the median (by wall time) of {repeat} bursts; checks over all of them\n");
    println!(
        "{:<17} {:>5} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>5}  checks",
        "workflow", "N", "submit", "wall", "tasks/s", "steps/s", "p50", "p99", "conns"
    );
    let mut failed = false;
    for &(workflow, steps_per_task, last_step, expected) in WORKFLOWS {
        // One task first, so connection pools and caches are warm.
        burst(&runtime, &pool, &client, workflow, 1);
        for &tasks in &sizes {
            let mut rows: Vec<Row> = (0..repeat)
                .map(|_| {
                    let (uuids, submit) = burst(&runtime, &pool, &client, workflow, tasks);
                    let mut row =
                        runtime.block_on(measure(&pool, workflow, &uuids, last_step, expected));
                    row.submit = submit;
                    row.connections = PEAK_CONNECTIONS.load(Ordering::SeqCst);
                    assert_eq!(row.steps, steps_per_task * tasks as i64, "steps of {workflow}");
                    row
                })
                .collect();
            let problems: Vec<String> = rows.iter().flat_map(|row| row.problems.clone()).collect();
            failed |= !problems.is_empty();
            rows.sort_by_key(|row| row.wall);
            let mut median = rows.swap_remove(rows.len() / 2);
            median.problems = problems;
            print_row(&median);
        }
    }
    if failed {
        std::process::exit(1);
    }
}

async fn connect() -> PgPool {
    let url = service_url("DATABASE_URL");
    let options = PgConnectOptions::from_str(&url)
        .expect("DATABASE_URL is not a valid URL")
        .application_name(APPLICATION_NAME);
    PgPoolOptions::new().max_connections(3).connect_with(options).await.expect("connecting")
}

/// The most connections sampled during the last burst (reset by [`burst`]).
static PEAK_CONNECTIONS: AtomicI64 = AtomicI64::new(0);

/// Submits `tasks` tasks at once from [`SUBMITTERS`] threads and waits until all are
/// final, sampling the database's connection count meanwhile.
fn burst(
    runtime: &tokio::runtime::Runtime,
    pool: &PgPool,
    client: &TaskerClient,
    workflow: &str,
    tasks: usize,
) -> (Vec<Uuid>, Duration) {
    PEAK_CONNECTIONS.store(0, Ordering::SeqCst);
    let submitting = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = runtime.spawn(sample_connections(pool.clone(), Arc::clone(&done)));
    let uuids: Vec<Uuid> = std::thread::scope(|scope| {
        let per_thread = tasks.div_ceil(SUBMITTERS);
        let handles: Vec<_> = (0..tasks)
            .step_by(per_thread)
            .map(|start| {
                let count = per_thread.min(tasks - start);
                scope.spawn(move || {
                    (0..count)
                        .map(|_| {
                            let request = CreateTaskRequest::new(
                                "rust",
                                workflow,
                                "1.0.0",
                                json!({"even_number": 6}),
                            );
                            client.create_task(&request).expect("creating a task")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a submitter")).collect()
    });
    let submit = submitting.elapsed();
    let started = Instant::now();
    runtime.block_on(async {
        loop {
            let unfinished: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM tasker.tasks
                 WHERE task_uuid = ANY($1) AND state NOT IN ('complete', 'error')",
            )
            .bind(&uuids)
            .fetch_one(pool)
            .await
            .expect("counting unfinished tasks");
            if unfinished == 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "{unfinished} of {tasks} {workflow} tasks unfinished after 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    done.store(true, Ordering::SeqCst);
    runtime.block_on(sampler).expect("the sampler");
    (uuids, submit)
}

async fn sample_connections(pool: PgPool, done: Arc<AtomicBool>) {
    while !done.load(Ordering::SeqCst) {
        let count: Result<i64, _> = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name <> $1",
        )
        .bind(APPLICATION_NAME)
        .fetch_one(&pool)
        .await;
        if let Ok(count) = count {
            PEAK_CONNECTIONS.fetch_max(count, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Server-side timings and the checks of one burst.
async fn measure(
    pool: &PgPool,
    workflow: &'static str,
    uuids: &[Uuid],
    last_step: &str,
    expected: i64,
) -> Row {
    let latencies: Vec<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM completed_at - created_at)::float8 FROM tasker.tasks
         WHERE task_uuid = ANY($1) AND completed_at IS NOT NULL ORDER BY 1",
    )
    .bind(uuids)
    .fetch_all(pool)
    .await
    .expect("reading latencies");
    let wall: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM max(completed_at) - min(created_at))::float8
         FROM tasker.tasks WHERE task_uuid = ANY($1)",
    )
    .bind(uuids)
    .fetch_one(pool)
    .await
    .expect("reading the wall time");
    let states: BTreeMap<String, i64> = sqlx::query_as(
        "SELECT state, count(*) FROM tasker.tasks WHERE task_uuid = ANY($1) GROUP BY state",
    )
    .bind(uuids)
    .fetch_all(pool)
    .await
    .expect("counting task states")
    .into_iter()
    .collect();
    let (steps, not_once, wrong_results): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*),
                count(*) FILTER (WHERE state <> 'complete' OR attempts <> 1),
                count(*) FILTER (WHERE name = $2 AND result IS DISTINCT FROM $3)
         FROM tasker.workflow_steps WHERE task_uuid = ANY($1)",
    )
    .bind(uuids)
    .bind(last_step)
    .bind(json!({ "result": expected }))
    .fetch_one(pool)
    .await
    .expect("checking the steps");
    let left_over: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pgmq.q_worker_rust_queue)
              + (SELECT count(*) FROM pgmq.q_orchestration_step_results)",
    )
    .fetch_one(pool)
    .await
    .expect("counting queued messages");

    let mut problems = Vec::new();
    let complete = states.get("complete").copied().unwrap_or(0);
    if complete != uuids.len() as i64 {
        problems.push(format!("{complete} of {} tasks complete: {states:?}", uuids.len()));
    }
    if not_once > 0 {
        problems.push(format!("{not_once} steps not complete in exactly one attempt"));
    }
    if wrong_results > 0 {
        problems.push(format!("{wrong_results} wrong results of {last_step}"));
    }
    if left_over > 0 {
        problems.push(format!("{left_over} messages left in the queues"));
    }
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len());
        Duration::from_secs_f64(latencies[index - 1])
    };
    Row {
        workflow,
        tasks: uuids.len(),
        submit: Duration::ZERO,
        wall: Duration::from_secs_f64(wall),
        steps,
        p50: percentile(0.50),
        p99: percentile(0.99),
        connections: 0,
        problems,
    }
}

fn print_row(row: &Row) {
    let seconds = row.wall.as_secs_f64().max(1e-6);
    let checks = if row.problems.is_empty() {
        "ok: all complete, each step once, nothing left queued".to_string()
    } else {
        format!("FAILED: {}", row.problems.join("; "))
    };
    println!(
        "{:<17} {:>5} {:>6.2} s {:>6.2} s {:>8.0} {:>8.0} {:>6.0} ms {:>6.0} ms {:>5}  {checks}",
        row.workflow,
        row.tasks,
        row.submit.as_secs_f64(),
        seconds,
        row.tasks as f64 / seconds,
        row.steps as f64 / seconds,
        row.p50.as_secs_f64() * 1000.0,
        row.p99.as_secs_f64() * 1000.0,
        row.connections,
    );
}
