//! The queue layer over PGMQ, plus wake-ups: consumers react to a new message within a
//! millisecond or so instead of sleeping between polls.
//!
//! Every operation is one SQL statement through any sqlx executor, so it can run inside
//! the caller's transaction: a state change and the messages it causes commit (or roll
//! back) together. The hot ones (send, read, delete) are prepared SQL on PGMQ's tables,
//! the same statements PGMQ's functions build dynamically on every call; the rest call
//! PGMQ's functions. [`send`] also issues `pg_notify` on the queue's channel
//! ([`channel_name`]); PostgreSQL delivers it at commit, so a consumer is never woken for a
//! message it cannot see yet. [`QueueWaker`] holds one `LISTEN` connection per process and
//! turns notifications into per-queue [`tokio::sync::Notify`] permits. An idle consumer
//! sleeps at most until the next delayed message is due ([`idle_wait`]); polling stays the
//! fallback for a listener connection that dropped.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
//! use std::time::Duration;
//! pgmq_notify::create_queue(&pool, "jobs").await?;
//! let waker = pgmq_notify::QueueWaker::start(&pool, &["jobs".to_string()]).await?;
//! pgmq_notify::send(&pool, "jobs", &serde_json::json!({"n": 1})).await?;
//! loop {
//!     let batch = pgmq_notify::read(&pool, "jobs", 30, 10).await?;
//!     for message in &batch {
//!         pgmq_notify::delete(&pool, "jobs", message.msg_id).await?;
//!     }
//!     if batch.is_empty() {
//!         waker.wait("jobs", Duration::from_millis(500)).await;
//!     }
//! }
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgListener;
use sqlx::{PgExecutor, PgPool, Row};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A message read from a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueMessage {
    pub msg_id: i64,
    /// How many times it has been read (1 on the first delivery).
    pub read_ct: i32,
    pub message: Value,
}

/// The NOTIFY channel announcing new messages on `queue`.
pub fn channel_name(queue: &str) -> String {
    format!("pgmq_notify_{queue}")
}

/// Creates `queue` if it does not exist (PGMQ serialises concurrent creation with a lock).
pub async fn create_queue<'e>(executor: impl PgExecutor<'e>, queue: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pgmq.create($1)").bind(queue).execute(executor).await?;
    Ok(())
}

/// Sends `message` to `queue` and notifies its listeners (at commit when inside a
/// transaction). Returns the message id.
pub async fn send<'e>(
    executor: impl PgExecutor<'e>,
    queue: &str,
    message: &Value,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(&format!(
        "INSERT INTO {} (vt, message)
         SELECT clock_timestamp(), $1 FROM (SELECT pg_notify($2, '')) AS notified
         RETURNING msg_id",
        queue_table(queue)?
    ))
    .bind(message)
    .bind(channel_name(queue))
    .fetch_one(executor)
    .await
}

/// Sends `messages` to `queue` in one statement and notifies its listeners once (at
/// commit when inside a transaction). Returns the message ids.
pub async fn send_batch<'e>(
    executor: impl PgExecutor<'e>,
    queue: &str,
    messages: &[Value],
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(&format!(
        "INSERT INTO {} (vt, message)
         SELECT clock_timestamp(), m
         FROM unnest($1::jsonb[]) WITH ORDINALITY AS u(m, n), (SELECT pg_notify($2, '')) AS notified
         ORDER BY n
         RETURNING msg_id",
        queue_table(queue)?
    ))
    .bind(messages)
    .bind(channel_name(queue))
    .fetch_all(executor)
    .await
}

/// Deletes the messages `msg_ids` of `queue` in one statement; returns the ids deleted.
pub async fn delete_batch<'e>(
    executor: impl PgExecutor<'e>,
    queue: &str,
    msg_ids: &[i64],
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(&format!(
        "DELETE FROM {} WHERE msg_id = ANY($1) RETURNING msg_id",
        queue_table(queue)?
    ))
    .bind(msg_ids)
    .fetch_all(executor)
    .await
}

/// Sends `message` to `queue`, invisible for `delay` (used for retry backoff). It
/// notifies too: a woken consumer finds nothing visible yet, asks [`next_visible_in`] and
/// sleeps exactly until the message is due instead of a whole poll interval.
pub async fn send_delayed<'e>(
    executor: impl PgExecutor<'e>,
    queue: &str,
    message: &Value,
    delay: Duration,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(&format!(
        "INSERT INTO {} (vt, message)
         SELECT clock_timestamp() + make_interval(secs => $2), $1
         FROM (SELECT pg_notify($3, '')) AS notified
         RETURNING msg_id",
        queue_table(queue)?
    ))
    .bind(message)
    .bind(delay.as_secs_f64())
    .bind(channel_name(queue))
    .fetch_one(executor)
    .await
}

/// PGMQ's table of `queue` (`pgmq.q_<queue>`). The hot operations run plain SQL on it:
/// prepared once per connection, where PGMQ's functions plan dynamic SQL on every call.
/// Queue names are checked before they get here (config validation); anything else is
/// refused rather than spliced into SQL.
pub fn queue_table(queue: &str) -> sqlx::Result<String> {
    if queue.is_empty() || !queue.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(sqlx::Error::Protocol(format!("invalid queue name `{queue}`")));
    }
    Ok(format!("pgmq.q_{}", queue.to_ascii_lowercase()))
}

/// How long until the next message of `queue` that is invisible now (delayed, or claimed
/// by a consumer that may die) becomes visible; `None` when there is none. Consumers
/// sleep at most this long, so a retry is picked up at its due time, not at the next
/// fallback poll.
pub async fn next_visible_in<'e>(
    executor: impl PgExecutor<'e>,
    queue: &str,
) -> sqlx::Result<Option<Duration>> {
    let seconds: Option<f64> = sqlx::query_scalar(&format!(
        "SELECT EXTRACT(EPOCH FROM min(vt) - clock_timestamp())::float8 FROM {}",
        queue_table(queue)?
    ))
    .fetch_one(executor)
    .await?;
    Ok(seconds.map(|seconds| Duration::from_secs_f64(seconds.max(0.0))))
}

/// How long a consumer that found `queue` empty sleeps (NOTIFY wakes it sooner): until
/// the next invisible message (a delayed retry, or a claim that may expire) is due, at
/// most `poll`.
pub async fn idle_wait(pool: &PgPool, queue: &str, poll: Duration) -> Duration {
    match next_visible_in(pool, queue).await {
        // A millisecond at least: a message already due was taken by a sibling consumer.
        Ok(Some(due)) => due.clamp(Duration::from_millis(1), poll),
        Ok(None) => poll,
        Err(err) => {
            tracing::warn!("reading the next due time of {queue} failed: {err}");
            poll
        }
    }
}

/// Deletes every message of `queue` whose top-level `key` is the string `value` (e.g. all
/// steps of a failed task); returns how many were deleted. A consumer already holding one
/// finds it gone when it tries to delete it.
pub async fn delete_matching<'e>(
    executor: impl PgExecutor<'e>,
    queue: &str,
    key: &str,
    value: &str,
) -> sqlx::Result<u64> {
    let deleted =
        sqlx::query(&format!("DELETE FROM {} WHERE message->>$1 = $2", queue_table(queue)?))
            .bind(key)
            .bind(value)
            .execute(executor)
            .await?;
    Ok(deleted.rows_affected())
}

/// What [`send_and_remove`] does with the message it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Delete,
    /// Moves it to the queue's archive table (`pgmq.a_<queue>`), kept for inspection.
    Archive,
}

/// Sends `message` to `to_queue` (notifying its listeners) and deletes or archives
/// message `msg_id` of `from_queue`, in one statement: atomic without an explicit
/// transaction, one round trip instead of four. Returns whether `msg_id` was still there.
pub async fn send_and_remove<'e>(
    executor: impl PgExecutor<'e>,
    to_queue: &str,
    message: &Value,
    from_queue: &str,
    msg_id: i64,
    removal: Removal,
) -> sqlx::Result<bool> {
    let sent = format!(
        "sent AS (INSERT INTO {} (vt, message)
                  SELECT clock_timestamp(), $1 FROM (SELECT pg_notify($2, '')) AS notified
                  RETURNING msg_id)",
        queue_table(to_queue)?
    );
    let sql = match removal {
        Removal::Delete => format!(
            "WITH removed AS (DELETE FROM {} WHERE msg_id = $3 RETURNING msg_id), {sent}
             SELECT EXISTS (SELECT 1 FROM removed) FROM sent",
            queue_table(from_queue)?
        ),
        // Rare (dead letters): PGMQ's own function.
        Removal::Archive => format!("WITH {sent} SELECT pgmq.archive($4, $3::bigint) FROM sent"),
    };
    let query = sqlx::query_scalar(&sql);
    let query = query.bind(message).bind(channel_name(to_queue)).bind(msg_id);
    match removal {
        Removal::Delete => query.fetch_one(executor).await,
        Removal::Archive => query.bind(from_queue).fetch_one(executor).await,
    }
}

/// Reads up to `quantity` visible messages, hiding each for `visibility_timeout_seconds`.
/// A consumer that dies before deleting a message lets it reappear after that time.
/// Concurrent readers never get the same message (`FOR UPDATE SKIP LOCKED`).
pub async fn read<'e>(
    executor: impl PgExecutor<'e>,
    queue: &str,
    visibility_timeout_seconds: i32,
    quantity: i32,
) -> sqlx::Result<Vec<QueueMessage>> {
    let table = queue_table(queue)?;
    // PGMQ's own `pgmq.read`, as a prepared statement instead of dynamic SQL.
    let rows = sqlx::query(&format!(
        "WITH cte AS (
           SELECT msg_id FROM {table}
           WHERE vt <= clock_timestamp()
           ORDER BY msg_id
           LIMIT $1
           FOR UPDATE SKIP LOCKED)
         UPDATE {table} m
         SET last_read_at = clock_timestamp(),
             vt = clock_timestamp() + make_interval(secs => $2),
             read_ct = read_ct + 1
         FROM cte
         WHERE m.msg_id = cte.msg_id
         RETURNING m.msg_id, m.read_ct, m.message"
    ))
    .bind(quantity)
    .bind(visibility_timeout_seconds)
    .fetch_all(executor)
    .await?;
    let mut messages = rows
        .into_iter()
        .map(|row| {
            Ok(QueueMessage {
                msg_id: row.try_get("msg_id")?,
                read_ct: row.try_get("read_ct")?,
                message: row.try_get("message")?,
            })
        })
        .collect::<sqlx::Result<Vec<QueueMessage>>>()?;
    messages.sort_by_key(|message| message.msg_id);
    Ok(messages)
}

/// Hides a message for `visibility_timeout_seconds` from now (a consumer still working on
/// it extends its claim); `false` when it is gone.
pub async fn set_visibility_timeout<'e>(
    executor: impl PgExecutor<'e>,
    queue: &str,
    msg_id: i64,
    visibility_timeout_seconds: i32,
) -> sqlx::Result<bool> {
    let row = sqlx::query("SELECT msg_id FROM pgmq.set_vt($1, $2::bigint, $3)")
        .bind(queue)
        .bind(msg_id)
        .bind(visibility_timeout_seconds)
        .fetch_optional(executor)
        .await?;
    Ok(row.is_some())
}

/// Deletes a message; `false` when it was already gone.
pub async fn delete<'e>(
    executor: impl PgExecutor<'e>,
    queue: &str,
    msg_id: i64,
) -> sqlx::Result<bool> {
    let deleted = sqlx::query(&format!("DELETE FROM {} WHERE msg_id = $1", queue_table(queue)?))
        .bind(msg_id)
        .execute(executor)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

/// Moves a message to the queue's archive table (kept for inspection, e.g. malformed
/// messages); `false` when it was already gone.
pub async fn archive<'e>(
    executor: impl PgExecutor<'e>,
    queue: &str,
    msg_id: i64,
) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pgmq.archive($1, $2::bigint)")
        .bind(queue)
        .bind(msg_id)
        .fetch_one(executor)
        .await
}

/// Messages currently in `queue`, visible or not.
pub async fn queue_length<'e>(executor: impl PgExecutor<'e>, queue: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT queue_length FROM pgmq.metrics($1)")
        .bind(queue)
        .fetch_one(executor)
        .await
}

/// Why [`QueueWaker::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Notified,
    TimedOut,
}

/// One `LISTEN` connection for a set of queues, fanned out to per-queue permits. A
/// notification arriving while nobody waits is kept (one permit), so none is lost
/// between an empty read and the next wait.
pub struct QueueWaker {
    notifies: Arc<HashMap<String, Arc<Notify>>>,
    listener_task: JoinHandle<()>,
}

impl QueueWaker {
    /// Listens for new messages on `queues`. The listener holds one pool connection.
    pub async fn start(pool: &PgPool, queues: &[String]) -> sqlx::Result<QueueWaker> {
        let mut listener = PgListener::connect_with(pool).await?;
        let channels: Vec<String> = queues.iter().map(|q| channel_name(q)).collect();
        listener.listen_all(channels.iter().map(String::as_str)).await?;
        let notifies: Arc<HashMap<String, Arc<Notify>>> = Arc::new(
            channels.into_iter().map(|channel| (channel, Arc::new(Notify::new()))).collect(),
        );
        let by_channel = Arc::clone(&notifies);
        let listener_task = tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        if let Some(notify) = by_channel.get(notification.channel()) {
                            notify.notify_one();
                        }
                    }
                    // The connection dropped and was re-established: messages may have
                    // arrived meanwhile, so wake everyone to read.
                    Ok(None) => by_channel.values().for_each(|n| n.notify_one()),
                    Err(err) => {
                        tracing::warn!("queue listener error (polling continues): {err}");
                        by_channel.values().for_each(|n| n.notify_one());
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        Ok(QueueWaker { notifies, listener_task })
    }

    /// Waits until a message is announced on `queue` or `max_wait` passes.
    pub async fn wait(&self, queue: &str, max_wait: Duration) -> Wake {
        let Some(notify) = self.notifies.get(&channel_name(queue)) else {
            tokio::time::sleep(max_wait).await;
            return Wake::TimedOut;
        };
        match tokio::time::timeout(max_wait, notify.notified()).await {
            Ok(()) => Wake::Notified,
            Err(_) => Wake::TimedOut,
        }
    }
}

impl Drop for QueueWaker {
    fn drop(&mut self) {
        self.listener_task.abort();
    }
}
