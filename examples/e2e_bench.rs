//! End-to-end latency of each workflow against running services: the median time from
//! `POST /v1/tasks` until the task is observed complete, over N sequential runs.
//!
//! ```text
//! cargo run --release --example e2e_bench -- [RUNS]      (default 30)
//! ```
//! Reads TASKER_TEST_ORCHESTRATION_URL (and checks TASKER_TEST_WORKER_URL is healthy).
//! `client` is what a caller sees (polling every millisecond); `server` is the task's own
//! `completed_at - created_at`, which excludes HTTP and polling.

use std::time::{Duration, Instant};

use chrono::DateTime;
use tasker_client::TaskerClient;
use tasker_client::api::{CreateTaskRequest, TaskState};
use tasker_core::{WORKER_URL_VAR, orchestration, service_url};

const WORKFLOWS: &[(&str, &str)] = &[
    ("linear_workflow", r#"{"even_number": 6}"#),
    ("diamond_workflow", r#"{"even_number": 6}"#),
    ("tree_workflow", r#"{"even_number": 6}"#),
    ("retry_workflow", r#"{"even_number": 6, "fail_times": 1}"#),
];

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|arg| arg.parse().expect("RUNS must be a positive integer"))
        .unwrap_or(30);
    let client = orchestration();
    client.ready().expect("orchestration is not ready");
    TaskerClient::new(service_url(WORKER_URL_VAR)).ready().expect("worker is not ready");

    println!("{runs} sequential runs per workflow (after 3 warm-up runs)\n");
    println!(
        "{:<18} {:>12} {:>12} {:>12} {:>12}",
        "workflow", "client p50", "client max", "server p50", "server max"
    );
    for (name, context) in WORKFLOWS {
        let context: serde_json::Value = serde_json::from_str(context).unwrap();
        for _ in 0..3 {
            run_once(&client, name, &context);
        }
        let (mut client_times, mut server_times): (Vec<Duration>, Vec<Duration>) =
            (0..runs).map(|_| run_once(&client, name, &context)).unzip();
        println!(
            "{:<18} {:>9.1} ms {:>9.1} ms {:>9.1} ms {:>9.1} ms",
            name,
            ms(median(&mut client_times)),
            ms(*client_times.iter().max().unwrap()),
            ms(median(&mut server_times)),
            ms(*server_times.iter().max().unwrap()),
        );
    }
}

/// One task: (client-observed, server-recorded) duration.
fn run_once(
    client: &TaskerClient,
    name: &str,
    context: &serde_json::Value,
) -> (Duration, Duration) {
    let started = Instant::now();
    let uuid = client
        .create_task(&CreateTaskRequest::new("rust", name, "1.0.0", context.clone()))
        .expect("creating a task");
    loop {
        let task = client.get_task(uuid).expect("reading the task");
        if task.state.is_final() {
            let observed = started.elapsed();
            assert_eq!(task.state, TaskState::Complete, "{name} did not complete: {task:?}");
            let created = DateTime::parse_from_rfc3339(&task.created_at).unwrap();
            let completed =
                DateTime::parse_from_rfc3339(task.completed_at.as_deref().unwrap()).unwrap();
            return (observed, (completed - created).to_std().unwrap_or_default());
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{name} timed out");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
