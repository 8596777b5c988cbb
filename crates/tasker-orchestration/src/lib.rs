//! The orchestration server (`tasker-server`): the task API ([`api`]), the state machine
//! on the database ([`engine`]) and the step-results consumer ([`consumer`]).
//!
//! On `POST /v1/tasks` the task and its steps are inserted and the root steps sent to the
//! namespace's worker queue, in one transaction. Workers post results to the step-results
//! queue; the consumer applies them: a completed step enqueues the steps whose
//! dependencies are now all complete, a failed attempt is re-sent after a backoff until
//! the template's `max_attempts`, after which the step and task are in error. Results
//! carry their attempt number, so duplicates and stale results change nothing.

pub mod api;
pub mod consumer;
pub mod engine;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use tasker_shared::TaskerConfig;
use tasker_shared::templates::TemplateRegistry;
use tokio::sync::watch;

/// Runs the server until `shutdown` resolves, then stops accepting, finishes the result
/// in hand and returns within the shutdown budget (`execution.shutdown_timeout_ms`).
/// `shutdown` is watched from the start: resolving during startup (connecting, binding)
/// returns `Ok` at once.
pub async fn serve(
    config: TaskerConfig,
    templates: TemplateRegistry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    let started = tokio::select! {
        started = start(&config, templates) => started?,
        () = &mut shutdown => {
            tracing::info!("tasker-orchestration stopped during startup");
            return Ok(());
        }
    };
    let Started { engine, waker, listener } = started;
    let orchestration = config.orchestration()?;
    let pool = engine.pool().clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let consumer_running = Arc::new(AtomicBool::new(false));
    let consumer = tokio::spawn(consumer::run(
        Arc::clone(&engine),
        waker,
        stop_rx.clone(),
        Arc::clone(&consumer_running),
    ));
    let app = api::router(
        api::AppState {
            engine,
            instance_id: config.execution.instance_id().map(str::to_string),
            consumer_running,
        },
        std::time::Duration::from_millis(orchestration.web.request_timeout_ms),
    );
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_stop.wait_for(|stop| *stop).await;
            })
            .await
    });

    shutdown.await;
    let _ = stop_tx.send(true);
    let budget = config.execution.drain_timeout();
    let drained = tokio::time::timeout(budget, async {
        let _ = consumer.await;
        let _ = server.await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("shutdown budget of {budget:?} exceeded; exiting anyway");
    }
    // Bounded: a stuck connection must not hold the exit.
    let _ = tokio::time::timeout(tasker_shared::config::POOL_CLOSE_TIMEOUT, pool.close()).await;
    tracing::info!("tasker-orchestration stopped");
    Ok(())
}

struct Started {
    engine: Arc<engine::Engine>,
    waker: pgmq_notify::QueueWaker,
    listener: tokio::net::TcpListener,
}

/// Connects, checks the schema, creates the queues, listens for wake-ups and binds.
async fn start(config: &TaskerConfig, templates: TemplateRegistry) -> anyhow::Result<Started> {
    let orchestration = config.orchestration()?;
    let pool = tasker_shared::db::connect(&config.database).await?;
    let migrated: bool = sqlx::query_scalar(
        "SELECT to_regclass('tasker.tasks') IS NOT NULL AND to_regnamespace('pgmq') IS NOT NULL",
    )
    .fetch_one(&pool)
    .await?;
    if !migrated {
        anyhow::bail!("the database is not migrated: run `tasker-server migrate` first");
    }
    let engine = Arc::new(engine::Engine::new(
        pool.clone(),
        Arc::new(templates),
        config.queues.clone(),
        orchestration.backoff.clone(),
    ));
    engine.create_queues().await.context("creating queues")?;
    let waker = pgmq_notify::QueueWaker::start(
        &pool,
        std::slice::from_ref(&config.queues.step_results_queue),
    )
    .await
    .context("listening for queue notifications")?;

    let address = orchestration.web.socket_addr();
    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| {
        format!("cannot bind {address} (orchestration.web.bind_address, TASKER_WEB_BIND_ADDRESS)")
    })?;
    tracing::info!(
        address = %listener.local_addr()?,
        instance_id = config.execution.instance_id().unwrap_or("-"),
        environment = config.execution.environment,
        "tasker-orchestration listening"
    );
    Ok(Started { engine, waker, listener })
}
