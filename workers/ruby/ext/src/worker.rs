//! The real backend: a `tasker-worker` runtime whose handlers forward to Ruby.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tasker_shared::TaskerConfig;
use tasker_worker::{HandlerRegistry, RunningWorker, StepMessage, Worker, WorkerOptions};

use crate::bridge::Bridge;

/// Handler names by namespace, as Ruby registers them: `{"ruby": ["ruby_linear_step_1", ...]}`.
pub type HandlerNames = BTreeMap<String, Vec<String>>;

/// Steps the Ruby loop runs at once (`WorkerLoop` in workers/ruby/lib/tasker_ruby).
const RUBY_CONCURRENCY: usize = 1;

pub struct Running {
    worker: RunningWorker,
}

/// Loads the config (substituting from the process environment), registers one forwarding
/// handler per Ruby handler and starts the worker: queues, consumers, `/health` with
/// `language: "ruby"`. Errors are the loader's or the worker's message.
pub fn start(
    runtime: &tokio::runtime::Runtime,
    config_path: &str,
    handlers: &HandlerNames,
    bridge: Arc<Bridge>,
) -> Result<Running, String> {
    tasker_shared::init_tracing();
    let mut config =
        TaskerConfig::load_from(Path::new(config_path), &|name| std::env::var(name).ok())
            .and_then(|config| {
                config.worker()?;
                Ok(config)
            })
            .map_err(|err| err.to_string())?;
    // Ruby runs one step at a time: claiming more would leave messages waiting in the
    // channel while their visibility timeout runs out, and another worker would run them too.
    if let Some(worker) = config.worker.as_mut() {
        worker.step_processing.max_concurrent_steps = RUBY_CONCURRENCY;
    }
    let mut registry = HandlerRegistry::new();
    for (namespace, names) in handlers {
        for name in names {
            let bridge = bridge.clone();
            registry.register(namespace, name, move |step: StepMessage| {
                let bridge = bridge.clone();
                async move { forward(&bridge, step).await }
            });
        }
    }
    let worker = runtime
        .block_on(Worker::start(config, registry, WorkerOptions::new("ruby")))
        .map_err(|err| format!("{err:#}"))?;
    tracing::info!(address = %worker.local_addr(), worker_id = worker.worker_id(), "Ruby worker runtime started");
    Ok(Running { worker })
}

/// Hands the step to Ruby as `{"namespace", "step_name", "attempt", "context",
/// "dependency_results", ...}` (the whole step message) and waits for its outcome.
async fn forward(bridge: &Bridge, step: StepMessage) -> Result<serde_json::Value, String> {
    let handler = step.handler.clone();
    let payload = serde_json::to_value(&step)
        .unwrap_or_else(|err| json!({ "encoding_error": err.to_string() }));
    bridge.dispatch(&handler, payload).await
}

impl Running {
    /// Stops within `budget`: no new steps, the HTTP server closes. Called once Ruby has
    /// stopped taking steps, so `abandoned` steps (handed out or queued for Ruby, never to be
    /// completed) are not waited for: they post no result and reappear after the queue's
    /// visibility timeout.
    pub fn stop(
        self,
        runtime: &tokio::runtime::Runtime,
        budget: Duration,
        abandoned: usize,
    ) -> Result<(), String> {
        let budget = if abandoned > 0 {
            tracing::warn!(abandoned, "steps left to their visibility timeout");
            budget.min(ABANDONED_STOP_BUDGET)
        } else {
            budget
        };
        // The timer must be created inside the runtime, hence the async block.
        let stopped =
            runtime.block_on(async move { tokio::time::timeout(budget, self.worker.stop()).await });
        match stopped {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(format!("{err:#}")),
            Err(_) if abandoned > 0 => Ok(()),
            Err(_) => Err(format!(
                "the worker did not stop within {budget:?}; unfinished steps reappear after their visibility timeout"
            )),
        }
    }
}

/// With abandoned steps the graceful drain cannot finish; this only lets the consumers and
/// the HTTP server wind down before the runtime is dropped.
const ABANDONED_STOP_BUDGET: Duration = Duration::from_millis(100);
