//! The step-worker runtime, shared by every worker (the Rust `rust-worker`, and the Ruby
//! worker through FFI).
//!
//! A worker consumes the queues of the namespaces its [`HandlerRegistry`] serves
//! (`<queues.namespace_queue_prefix><namespace>_queue`), runs each step message through the
//! handler registered under `(namespace, handler name)`, and posts the outcome to the
//! step-results queue. Posting the result and deleting the step message commit in one
//! transaction. While a handler runs, the worker keeps extending the message's visibility
//! timeout; a worker killed mid-step neither extends nor deletes it, so it reappears within
//! `queues.visibility_timeout_seconds` and another worker runs it (handlers must therefore
//! tolerate being run again for the same attempt). A message read more than
//! `queues.max_deliveries` times is not run again: it is archived (the dead-letter place)
//! and a `dead_lettered` result fails the step. An idle consumer sleeps until a NOTIFY,
//! the next delayed message's due time, or the fallback poll, whichever comes first.
//!
//! # Public API
//!
//! - [`StepHandler`]: a trait object with one async call, step payload in,
//!   `Result<serde_json::Value, String>` out (`Err` is the step's error message).
//!   Implemented for every `Fn(StepMessage) -> impl Future<Output = HandlerResult>`.
//! - [`HandlerRegistry`]: `register(namespace, handler_name, handler)` (async),
//!   `register_sync(...)` (plain closure). Its namespaces decide which queues are consumed.
//! - [`WorkerOptions`]: the `language` reported by `/health` (`"rust"`, `"ruby"`) and an
//!   optional worker id (default `<language>-worker-<instance id or random>`).
//! - [`Worker::start`]: connects, creates the queues, binds `worker.web.bind_address`
//!   (from `TASKER_WEB_BIND_ADDRESS`), starts the consumers; returns a [`RunningWorker`]
//!   once `/health` answers. Must be called inside a multi-threaded tokio runtime.
//! - [`RunningWorker`]: `local_addr()`, `worker_id()`, `request_stop()` (non-blocking),
//!   `stop().await` (stop taking steps, let in-flight steps finish within
//!   `execution.shutdown_timeout_ms`, close), `run_until(future).await` (then `stop`).
//! - [`run`]: `start` + `run_until` SIGTERM/SIGINT (also watched during startup), what a
//!   worker binary's `main` calls.
//!
//! The payload a handler receives is a [`StepMessage`]: `task_uuid`, `step_uuid`,
//! `namespace`, `task_name`, `task_version`, `step_name`, `handler`, `attempt` (from 1),
//! `max_attempts`, `context` (the task input) and `dependency_results` (results of the
//! steps it depends on, by step name). `serde_json::to_value(&step)` gives its JSON form.
//!
//! ```no_run
//! use serde_json::json;
//! use tasker_worker::{HandlerRegistry, WorkerOptions};
//! # async fn demo() -> anyhow::Result<()> {
//! let mut registry = HandlerRegistry::new();
//! registry.register_sync("rust", "linear_square", |step| {
//!     let n = step.context["even_number"].as_i64().ok_or("even_number missing")?;
//!     Ok(json!({"result": n * n}))
//! });
//! registry.register("rust", "slow", |step: tasker_worker::StepMessage| async move {
//!     Ok(json!({"attempt": step.attempt}))
//! });
//! let config = tasker_shared::TaskerConfig::load()?;
//! tasker_worker::run(config, registry, WorkerOptions::new("rust")).await
//! # }
//! ```

mod http;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use pgmq_notify::{QueueMessage, QueueWaker, Removal};
use serde_json::Value;
use sqlx::PgPool;
use tasker_shared::TaskerConfig;
use tasker_shared::messages::{StepOutcome, StepResultMessage};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

pub use tasker_shared::messages::StepMessage;

/// A handler's answer: the step result, or the error message recorded for the attempt.
pub type HandlerResult = Result<Value, String>;

/// The future a [`StepHandler`] returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'static>>;

/// Runs one step. Object-safe, so handlers of any origin (Rust closures, a bridge to
/// another language) live side by side in a [`HandlerRegistry`].
pub trait StepHandler: Send + Sync + 'static {
    fn call(&self, step: StepMessage) -> HandlerFuture;
}

impl<F, Fut> StepHandler for F
where
    F: Fn(StepMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn call(&self, step: StepMessage) -> HandlerFuture {
        Box::pin(self(step))
    }
}

/// Handlers by `(namespace, handler name)`.
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    handlers: HashMap<(String, String), Arc<dyn StepHandler>>,
}

impl HandlerRegistry {
    pub fn new() -> HandlerRegistry {
        HandlerRegistry::default()
    }

    /// Registers (or replaces) the handler for `handler` steps of `namespace`.
    pub fn register(
        &mut self,
        namespace: &str,
        handler: &str,
        step_handler: impl StepHandler,
    ) -> &mut Self {
        self.register_arc(namespace, handler, Arc::new(step_handler))
    }

    pub fn register_arc(
        &mut self,
        namespace: &str,
        handler: &str,
        step_handler: Arc<dyn StepHandler>,
    ) -> &mut Self {
        self.handlers.insert((namespace.to_string(), handler.to_string()), step_handler);
        self
    }

    /// Registers a synchronous, quick handler (it runs on the async runtime: no blocking).
    pub fn register_sync(
        &mut self,
        namespace: &str,
        handler: &str,
        f: impl Fn(&StepMessage) -> HandlerResult + Send + Sync + 'static,
    ) -> &mut Self {
        let f = Arc::new(f);
        self.register(namespace, handler, move |step: StepMessage| {
            let f = Arc::clone(&f);
            async move { f(&step) }
        })
    }

    pub fn get(&self, namespace: &str, handler: &str) -> Option<Arc<dyn StepHandler>> {
        self.handlers.get(&(namespace.to_string(), handler.to_string())).cloned()
    }

    /// The namespaces whose queues this worker consumes.
    pub fn namespaces(&self) -> BTreeSet<String> {
        self.handlers.keys().map(|(ns, _)| ns.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.handlers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}

/// How this worker presents itself.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Reported as `language` by `/health`: `"rust"`, `"ruby"`, ...
    pub language: String,
    /// Default: `<language>-worker-<TASKER_INSTANCE_ID or a random id>`.
    pub worker_id: Option<String>,
}

impl WorkerOptions {
    pub fn new(language: &str) -> WorkerOptions {
        WorkerOptions { language: language.to_string(), worker_id: None }
    }
}

/// Starts workers; see the crate docs.
pub struct Worker;

pub(crate) struct Shared {
    pub(crate) pool: PgPool,
    pub(crate) config: TaskerConfig,
    pub(crate) registry: HandlerRegistry,
    pub(crate) worker_id: String,
    pub(crate) language: String,
    pub(crate) consumers_running: AtomicUsize,
    pub(crate) queues: Vec<String>,
    slots: Arc<Semaphore>,
    max_slots: usize,
    step_timeout: Duration,
}

impl Worker {
    /// Connects, creates the namespace and results queues, binds the health server and
    /// starts one consumer per namespace queue.
    pub async fn start(
        config: TaskerConfig,
        registry: HandlerRegistry,
        options: WorkerOptions,
    ) -> anyhow::Result<RunningWorker> {
        let worker_config = config.worker()?.clone();
        if registry.is_empty() {
            anyhow::bail!("no step handlers registered: nothing to consume");
        }
        let worker_id = options.worker_id.clone().unwrap_or_else(|| {
            let suffix = config
                .execution
                .instance_id()
                .map(str::to_string)
                .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_string());
            format!("{}-worker-{suffix}", options.language)
        });
        warn_about_unhandled_steps(&config, &registry);
        let pool = tasker_shared::db::connect(&config.database).await?;
        let has_pgmq: bool = sqlx::query_scalar("SELECT to_regnamespace('pgmq') IS NOT NULL")
            .fetch_one(&pool)
            .await?;
        if !has_pgmq {
            anyhow::bail!(
                "PGMQ is not installed in the database: run `tasker-server migrate` first"
            );
        }
        let queues: Vec<String> =
            registry.namespaces().iter().map(|ns| config.queues.namespace_queue(ns)).collect();
        pgmq_notify::create_queue(&pool, &config.queues.step_results_queue).await?;
        for queue in &queues {
            pgmq_notify::create_queue(&pool, queue).await?;
        }
        let waker = Arc::new(
            QueueWaker::start(&pool, &queues).await.context("listening for queue notifications")?,
        );

        let address = worker_config.web.socket_addr();
        let listener = tokio::net::TcpListener::bind(address).await.with_context(|| {
            format!("cannot bind {address} (worker.web.bind_address, TASKER_WEB_BIND_ADDRESS)")
        })?;
        let local_addr = listener.local_addr()?;
        let max_slots = worker_config.step_processing.max_concurrent_steps;
        let shared = Arc::new(Shared {
            pool,
            config,
            registry,
            worker_id: worker_id.clone(),
            language: options.language.clone(),
            consumers_running: AtomicUsize::new(0),
            queues: queues.clone(),
            slots: Arc::new(Semaphore::new(max_slots)),
            max_slots,
            step_timeout: Duration::from_millis(worker_config.step_processing.step_timeout_ms),
        });
        tracing::info!(
            address = %local_addr,
            worker_id,
            language = options.language,
            queues = ?queues,
            "tasker-worker listening"
        );

        let (stop_tx, stop_rx) = watch::channel(false);
        let consumers: Vec<JoinHandle<()>> = queues
            .iter()
            .map(|queue| {
                tokio::spawn(consume(
                    Arc::clone(&shared),
                    Arc::clone(&waker),
                    queue.clone(),
                    stop_rx.clone(),
                ))
            })
            .collect();
        let mut server_stop = stop_rx.clone();
        let app = http::router(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = server_stop.wait_for(|stop| *stop).await;
                })
                .await;
        });
        Ok(RunningWorker { shared, local_addr, stop_tx, consumers, server })
    }
}

/// A started worker. Dropping it stops the consumers and the HTTP server without waiting
/// for in-flight steps; prefer [`RunningWorker::stop`].
pub struct RunningWorker {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    stop_tx: watch::Sender<bool>,
    consumers: Vec<JoinHandle<()>>,
    server: JoinHandle<()>,
}

impl RunningWorker {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    /// Asks the worker to stop taking steps; returns at once.
    pub fn request_stop(&self) {
        let _ = self.stop_tx.send(true);
    }

    /// Stops taking steps, lets in-flight steps post their results (bounded by
    /// `execution.shutdown_timeout_ms`), stops the HTTP server and closes the pool.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.request_stop();
        let budget = self.shared.config.execution.drain_timeout();
        let shared = Arc::clone(&self.shared);
        let drained = tokio::time::timeout(budget, async {
            for consumer in self.consumers {
                let _ = consumer.await;
            }
            // Every slot back means no step is running.
            let _ = shared.slots.acquire_many(shared.max_slots as u32).await;
            let _ = self.server.await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "shutdown budget of {budget:?} exceeded; unfinished steps reappear after their visibility timeout"
            );
        }
        let _ = tokio::time::timeout(
            tasker_shared::config::POOL_CLOSE_TIMEOUT,
            self.shared.pool.close(),
        )
        .await;
        tracing::info!(worker_id = self.shared.worker_id, "tasker-worker stopped");
        Ok(())
    }

    /// Runs until `shutdown` resolves, then [`RunningWorker::stop`].
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        shutdown.await;
        self.stop().await
    }
}

/// Starts a worker and serves until SIGTERM/SIGINT. The signal handlers are installed
/// first, so a signal during startup (connecting, creating queues) is a clean `Ok` exit.
pub async fn run(
    config: TaskerConfig,
    registry: HandlerRegistry,
    options: WorkerOptions,
) -> anyhow::Result<()> {
    let mut shutdown = std::pin::pin!(tasker_shared::shutdown_signal());
    let worker = tokio::select! {
        worker = Worker::start(config, registry, options) => worker?,
        () = &mut shutdown => {
            tracing::info!("tasker-worker stopped during startup");
            return Ok(());
        }
    };
    worker.run_until(shutdown).await
}

/// A worker that consumes a namespace must handle every step of it, or those steps end
/// in error ("no handler"). Say so at startup when the templates are readable.
fn warn_about_unhandled_steps(config: &TaskerConfig, registry: &HandlerRegistry) {
    let Ok(templates) =
        tasker_shared::templates::TemplateRegistry::load_dir(&config.template_dir())
    else {
        return; // Workers need no templates; the orchestration validates them.
    };
    let namespaces = registry.namespaces();
    for template in templates.iter().filter(|t| namespaces.contains(&t.namespace)) {
        for step in &template.steps {
            if registry.get(&template.namespace, &step.handler).is_none() {
                tracing::warn!(
                    "no handler `{}` registered for step `{}` of {}/{}/{}",
                    step.handler,
                    step.name,
                    template.namespace,
                    template.name,
                    template.version
                );
            }
        }
    }
}

/// One namespace queue: take as many messages as there are free step slots, run each in
/// its own task, sleep on NOTIFY (poll interval as fallback) when the queue is empty.
async fn consume(
    shared: Arc<Shared>,
    waker: Arc<QueueWaker>,
    queue: String,
    mut stop: watch::Receiver<bool>,
) {
    let _running = RunningConsumer::count(Arc::clone(&shared));
    let queues = shared.config.queues.clone();
    while !*stop.borrow() {
        // Wait for a free slot before claiming anything, so claimed messages never sit
        // invisible while waiting for capacity.
        let first = tokio::select! {
            permit = Arc::clone(&shared.slots).acquire_owned() => permit.expect("semaphore is never closed"),
            _ = stop.changed() => break,
        };
        let mut permits = vec![first];
        while permits.len() < queues.batch_size as usize {
            match Arc::clone(&shared.slots).try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        let batch = pgmq_notify::read(
            &shared.pool,
            &queue,
            queues.visibility_timeout_seconds,
            permits.len() as i32,
        )
        .await
        .unwrap_or_else(|err| {
            tracing::warn!("reading {queue} failed: {err}");
            Vec::new()
        });
        if batch.is_empty() {
            drop(permits);
            let wait =
                pgmq_notify::idle_wait(&shared.pool, &queue, queues.polling_interval()).await;
            tokio::select! {
                _ = waker.wait(&queue, wait) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        for message in batch {
            let permit = permits.pop().expect("no more messages than permits");
            let shared = Arc::clone(&shared);
            let queue = queue.clone();
            tokio::spawn(async move {
                execute(&shared, &queue, message).await;
                drop(permit);
            });
        }
    }
}

/// Counts a running consumer for `/health/ready`; uncounted on return and on panic.
struct RunningConsumer(Arc<Shared>);

impl RunningConsumer {
    fn count(shared: Arc<Shared>) -> RunningConsumer {
        shared.consumers_running.fetch_add(1, Ordering::SeqCst);
        RunningConsumer(shared)
    }
}

impl Drop for RunningConsumer {
    fn drop(&mut self) {
        self.0.consumers_running.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn execute(shared: &Shared, queue: &str, message: QueueMessage) {
    let QueueMessage { msg_id, read_ct, message: body } = message;
    let step: StepMessage = match serde_json::from_value(body) {
        Ok(step) => step,
        Err(err) => {
            tracing::error!(msg_id, "malformed step message archived: {err}");
            if let Err(err) = pgmq_notify::archive(&shared.pool, queue, msg_id).await {
                tracing::warn!("archiving message {msg_id} failed: {err}");
            }
            return;
        }
    };
    let max_deliveries = shared.config.queues.max_deliveries;
    if read_ct > max_deliveries {
        // Each earlier delivery ended without a result: its worker died running it.
        // Running it again would only kill this worker too.
        let why = format!(
            "dead-lettered: the step message was delivered {} times without a result \
             (queues.max_deliveries = {max_deliveries}); the handler probably crashes its \
             worker; message {msg_id} archived in the archive of {queue}",
            read_ct - 1
        );
        tracing::error!(step = step.step_name, attempt = step.attempt, "{why}");
        let result = step_result(shared, &step, StepOutcome::DeadLettered { message: why });
        if let Err(err) = post_result(shared, queue, msg_id, &result, Removal::Archive).await {
            tracing::error!(
                step = step.step_name,
                "dead-lettering failed ({err:#}); retried later"
            );
        }
        return;
    }
    tracing::debug!(
        step_uuid = %step.step_uuid,
        attempt = step.attempt,
        worker_id = shared.worker_id,
        "running step"
    );
    let timeout = shared.step_timeout;
    let outcome = match shared.registry.get(&step.namespace, &step.handler) {
        None => Err(format!(
            "no handler `{}` registered for namespace `{}` in worker {}",
            step.handler, step.namespace, shared.worker_id
        )),
        Some(handler) => {
            // A separate task turns a handler panic into a step error.
            let run = tokio::spawn(handler.call(step.clone()));
            let abort = run.abort_handle();
            let finished = tokio::select! {
                finished = tokio::time::timeout(timeout, run) => finished,
                never = keep_hidden(shared, queue, msg_id) => match never {},
            };
            match finished {
                Ok(Ok(result)) => result,
                Ok(Err(join_error)) => Err(format!("handler panicked: {join_error}")),
                Err(_) => {
                    abort.abort();
                    Err(format!("handler timed out after {timeout:?}"))
                }
            }
        }
    };
    // jsonb cannot store NUL: such a result could never be posted and the step would come
    // back forever, so it becomes the step's error instead.
    let outcome = match outcome {
        Ok(result) if tasker_shared::messages::contains_nul(&result) => {
            Err("the handler's result contains the character \\u0000, which cannot be stored"
                .into())
        }
        Err(message) => Err(message.replace('\0', "\\u0000")),
        ok => ok,
    };
    if let Err(error) = &outcome {
        tracing::info!(step = step.step_name, attempt = step.attempt, "step failed: {error}");
    }
    let outcome = match outcome {
        Ok(result) => StepOutcome::Complete { result },
        Err(message) => StepOutcome::Error { message },
    };
    let result = step_result(shared, &step, outcome);
    if let Err(err) = post_result(shared, queue, msg_id, &result, Removal::Delete).await {
        tracing::error!(
            step = step.step_name,
            "posting the result failed ({err:#}); the step reappears after its visibility timeout"
        );
    }
}

/// Extends the message's visibility timeout while its handler runs (every half timeout),
/// so a step that takes longer than `queues.visibility_timeout_seconds` is not handed to a
/// second worker meanwhile. A worker that dies stops extending it: the message reappears
/// within one timeout.
async fn keep_hidden(shared: &Shared, queue: &str, msg_id: i64) -> std::convert::Infallible {
    let seconds = shared.config.queues.visibility_timeout_seconds;
    let period = Duration::from_millis(u64::from(seconds.unsigned_abs()) * 500);
    loop {
        tokio::time::sleep(period).await;
        if let Err(err) =
            pgmq_notify::set_visibility_timeout(&shared.pool, queue, msg_id, seconds).await
        {
            tracing::warn!("extending the visibility of message {msg_id} failed: {err}");
        }
    }
}

fn step_result(shared: &Shared, step: &StepMessage, outcome: StepOutcome) -> StepResultMessage {
    StepResultMessage {
        task_uuid: step.task_uuid,
        step_uuid: step.step_uuid,
        attempt: step.attempt,
        worker_id: shared.worker_id.clone(),
        outcome,
    }
}

/// Sends the result and deletes (or archives) the step message, atomically.
async fn post_result(
    shared: &Shared,
    queue: &str,
    msg_id: i64,
    result: &StepResultMessage,
    removal: Removal,
) -> anyhow::Result<()> {
    pgmq_notify::send_and_remove(
        &shared.pool,
        &shared.config.queues.step_results_queue,
        &serde_json::to_value(result)?,
        queue,
        msg_id,
        removal,
    )
    .await?;
    Ok(())
}
