//! The step-results consumer: reads a batch of result messages and applies it in one
//! transaction (the results, then one delete of their messages, commit together); when
//! that fails, each result of the batch in its own transaction. Idle, it sleeps on NOTIFY
//! wake-ups, until the next delayed message is due, or the poll interval as fallback. A
//! failure leaves the message to reappear after its visibility timeout, and a message
//! delivered more than `queues.max_deliveries` times is archived.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pgmq_notify::{QueueMessage, QueueWaker};
use sqlx::PgConnection;
use tasker_shared::messages::StepResultMessage;
use tokio::sync::watch;

use crate::engine::{Engine, ResultEffect};

pub async fn run(
    engine: Arc<Engine>,
    waker: QueueWaker,
    mut shutdown: watch::Receiver<bool>,
    running: Arc<AtomicBool>,
) {
    let queues = engine.queues().clone();
    let queue = queues.step_results_queue.clone();
    let _running = RunningFlag::raise(running);
    tracing::info!(queue, "result consumer started");
    while !*shutdown.borrow() {
        let batch = pgmq_notify::read(
            engine.pool(),
            &queue,
            queues.visibility_timeout_seconds,
            queues.batch_size,
        )
        .await;
        let batch = match batch {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!("reading {queue} failed: {err}");
                Vec::new()
            }
        };
        let idle = batch.is_empty();
        // Finish the batch in hand even when shutdown is requested meanwhile.
        if let Err(err) = apply_batch(&engine, &queue, &batch).await {
            // One bad message must not hold back the others: each in its own transaction.
            tracing::warn!(
                "applying {} results together failed ({err:#}); one by one",
                batch.len()
            );
            for message in &batch {
                if let Err(err) = apply(&engine, &queue, message).await {
                    tracing::error!(
                        msg_id = message.msg_id,
                        "applying a step result failed: {err:#}"
                    );
                }
            }
        }
        if idle {
            let wait =
                pgmq_notify::idle_wait(engine.pool(), &queue, queues.polling_interval()).await;
            tokio::select! {
                _ = waker.wait(&queue, wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    tracing::info!("result consumer stopped");
}

/// Set while the consumer runs; lowered on return and on panic, so readiness never
/// reports a dead consumer as running.
struct RunningFlag(Arc<AtomicBool>);

impl RunningFlag {
    fn raise(flag: Arc<AtomicBool>) -> RunningFlag {
        flag.store(true, Ordering::SeqCst);
        RunningFlag(flag)
    }
}

impl Drop for RunningFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Applies a whole batch in one transaction, the result messages deleted with one
/// statement: one commit per batch instead of one per result. Results of one task are
/// still applied in order, each under the task's row lock.
async fn apply_batch(engine: &Engine, queue: &str, batch: &[QueueMessage]) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    // Tasks locked in one order by every server: the batches of two orchestration
    // instances cannot deadlock. The sort is stable: results of one task keep their order.
    let mut ordered: Vec<&QueueMessage> = batch.iter().collect();
    ordered.sort_by_key(|message| message.message.get("task_uuid").and_then(|v| v.as_str()));
    let mut tx = engine.pool().begin().await?;
    let mut applied = Vec::with_capacity(batch.len());
    for message in ordered {
        if handle(engine, &mut tx, queue, message).await? == Handled::Applied {
            applied.push(message.msg_id);
        }
    }
    if !applied.is_empty() {
        pgmq_notify::delete_batch(&mut *tx, queue, &applied).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Applies one result in its own transaction.
async fn apply(engine: &Engine, queue: &str, message: &QueueMessage) -> anyhow::Result<()> {
    let mut tx = engine.pool().begin().await?;
    if handle(engine, &mut tx, queue, message).await? == Handled::Applied {
        pgmq_notify::delete(&mut *tx, queue, message.msg_id).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Handled {
    /// Applied (or ignored as stale): the caller deletes the message.
    Applied,
    /// Moved to the archive already.
    Archived,
}

async fn handle(
    engine: &Engine,
    tx: &mut PgConnection,
    queue: &str,
    message: &QueueMessage,
) -> anyhow::Result<Handled> {
    let max_deliveries = engine.queues().max_deliveries;
    if message.read_ct > max_deliveries {
        // Applying it failed (or killed the server) every time: keep it for inspection.
        tracing::error!(
            msg_id = message.msg_id,
            "result message archived after {} deliveries (queues.max_deliveries = {max_deliveries})",
            message.read_ct - 1
        );
        pgmq_notify::archive(&mut *tx, queue, message.msg_id).await?;
        return Ok(Handled::Archived);
    }
    match serde_json::from_value::<StepResultMessage>(message.message.clone()) {
        Ok(result) => {
            let effect = engine.apply_result(tx, &result).await?;
            match &effect {
                ResultEffect::Ignored(why) => {
                    tracing::info!(task = %result.task_uuid, "ignored result: {why}")
                }
                effect => {
                    tracing::debug!(task = %result.task_uuid, step = %result.step_uuid, ?effect, "result applied")
                }
            }
            Ok(Handled::Applied)
        }
        Err(err) => {
            // Keep it for inspection instead of retrying it forever.
            tracing::error!(msg_id = message.msg_id, "malformed result message archived: {err}");
            pgmq_notify::archive(&mut *tx, queue, message.msg_id).await?;
            Ok(Handled::Archived)
        }
    }
}
