//! The orchestration state machine, on the database. Each operation runs in one
//! transaction together with the queue messages it sends (PGMQ lives in the same
//! database), so a crash never leaves a step marked enqueued without its message or a
//! result applied without being acknowledged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use tasker_client::api::{CreateTaskRequest, StepResponse, StepState, TaskResponse, TaskState};
use tasker_shared::config::{BackoffConfig, QueuesConfig};
use tasker_shared::messages::{StepMessage, StepOutcome, StepResultMessage};
use tasker_shared::templates::TemplateRegistry;
use uuid::Uuid;

/// What applying a result message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultEffect {
    /// The step completed; `enqueued` steps became ready; `task_complete` when it was last.
    Completed { enqueued: Vec<String>, task_complete: bool },
    /// The attempt failed and another is scheduled after `delay`.
    RetryScheduled { attempt: i32, delay: Duration },
    /// The last allowed attempt failed (or its message was dead-lettered): the step is in
    /// error; the task too, and its `cancelled` steps could no longer run.
    Failed { cancelled: Vec<String> },
    /// A duplicate or stale message (at-least-once delivery): nothing changed.
    Ignored(String),
}

#[derive(Debug)]
pub enum CreateTaskError {
    /// A client mistake: answered with 4xx.
    Invalid(String),
    Internal(anyhow::Error),
}

pub struct Engine {
    pool: PgPool,
    templates: Arc<TemplateRegistry>,
    queues: QueuesConfig,
    backoff: BackoffConfig,
}

/// The task row an operation works on, locked by it (`FOR UPDATE`) or inserted by it.
struct TaskRow {
    task_uuid: Uuid,
    namespace: String,
    name: String,
    version: String,
    state: String,
    context: Value,
}

impl Engine {
    pub fn new(
        pool: PgPool,
        templates: Arc<TemplateRegistry>,
        queues: QueuesConfig,
        backoff: BackoffConfig,
    ) -> Engine {
        Engine { pool, templates, queues, backoff }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn queues(&self) -> &QueuesConfig {
        &self.queues
    }

    /// Creates the step-results queue and one queue per template namespace.
    pub async fn create_queues(&self) -> anyhow::Result<()> {
        pgmq_notify::create_queue(&self.pool, &self.queues.step_results_queue).await?;
        for namespace in self.templates.namespaces() {
            pgmq_notify::create_queue(&self.pool, &self.queues.namespace_queue(&namespace)).await?;
        }
        Ok(())
    }

    /// Creates a task from its template and enqueues its root steps.
    pub async fn create_task(&self, request: &CreateTaskRequest) -> Result<Uuid, CreateTaskError> {
        let template = self
            .templates
            .get(&request.namespace, &request.name, &request.version)
            .ok_or_else(|| {
                let known: Vec<String> = self
                    .templates
                    .iter()
                    .map(|t| format!("{}/{}/{}", t.namespace, t.name, t.version))
                    .collect();
                CreateTaskError::Invalid(format!(
                    "unknown task template {}/{}/{}; known templates: {}",
                    request.namespace,
                    request.name,
                    request.version,
                    known.join(", ")
                ))
            })?;
        if !request.context.is_object() {
            return Err(CreateTaskError::Invalid("`context` must be a JSON object".into()));
        }
        if tasker_shared::messages::contains_nul(&request.context) {
            return Err(CreateTaskError::Invalid(
                "`context` must not contain the character \\u0000 (PostgreSQL's jsonb cannot \
                 store it)"
                    .into(),
            ));
        }
        let internal = |err: sqlx::Error| CreateTaskError::Internal(err.into());
        let task_uuid = Uuid::new_v4();
        let step_uuids: Vec<Uuid> = template.steps.iter().map(|_| Uuid::new_v4()).collect();
        let steps: Vec<Value> = template
            .steps
            .iter()
            .zip(&step_uuids)
            .enumerate()
            .map(|(position, (step, step_uuid))| {
                serde_json::json!({
                    "step_uuid": step_uuid,
                    "position": position,
                    "name": step.name,
                    "handler": step.handler,
                    "depends_on": step.depends_on,
                    "max_attempts": step.max_attempts,
                })
            })
            .collect();
        // The root steps' messages: first attempt, nothing to depend on.
        let root_messages = template
            .steps
            .iter()
            .zip(&step_uuids)
            .filter(|(step, _)| step.depends_on.is_empty())
            .map(|(step, step_uuid)| {
                serde_json::to_value(StepMessage {
                    task_uuid,
                    step_uuid: *step_uuid,
                    namespace: template.namespace.clone(),
                    task_name: template.name.clone(),
                    task_version: template.version.clone(),
                    step_name: step.name.clone(),
                    handler: step.handler.clone(),
                    attempt: 1,
                    max_attempts: step.max_attempts as i32,
                    context: request.context.clone(),
                    dependency_results: BTreeMap::new(),
                })
            })
            .collect::<Result<Vec<Value>, _>>()
            .map_err(|err| CreateTaskError::Internal(err.into()))?;
        let queue = self.queues.namespace_queue(&template.namespace);
        // The task, its steps (roots already enqueued) and the roots' messages in one
        // statement: atomic without a transaction, one round trip. The foreign key is
        // checked at the statement's end, when the task row exists.
        let queue_table = pgmq_notify::queue_table(&queue).map_err(internal)?;
        sqlx::query(&format!(
            "WITH task AS (
               INSERT INTO tasker.tasks (task_uuid, namespace, name, version, context, state)
               VALUES ($1, $2, $3, $4, $5, 'in_progress')),
             steps AS (
               INSERT INTO tasker.workflow_steps
                 (step_uuid, task_uuid, position, name, handler, depends_on, max_attempts,
                  state, attempts, enqueued_at)
               SELECT s.step_uuid, $1, s.position, s.name, s.handler,
                      ARRAY(SELECT jsonb_array_elements_text(s.depends_on)), s.max_attempts,
                      CASE WHEN root THEN 'enqueued' ELSE 'pending' END,
                      CASE WHEN root THEN 1 ELSE 0 END,
                      CASE WHEN root THEN clock_timestamp() END
               FROM jsonb_to_recordset($6) AS s(step_uuid uuid, position integer, name text,
                                                handler text, depends_on jsonb,
                                                max_attempts integer),
                    LATERAL (SELECT jsonb_array_length(s.depends_on) = 0 AS root) AS r),
             sent AS (
               INSERT INTO {queue_table} (vt, message)
               SELECT clock_timestamp(), m
               FROM unnest($7::jsonb[]) AS m, (SELECT pg_notify($8, '')) AS notified
               RETURNING msg_id)
             SELECT count(*) FROM sent"
        ))
        .bind(task_uuid)
        .bind(&template.namespace)
        .bind(&template.name)
        .bind(&template.version)
        .bind(&request.context)
        .bind(Value::Array(steps))
        .bind(&root_messages)
        .bind(pgmq_notify::channel_name(&queue))
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        Ok(task_uuid)
    }

    /// Applies one step result inside the caller's transaction (which also deletes the
    /// result message, so the two commit together).
    pub async fn apply_result(
        &self,
        conn: &mut PgConnection,
        message: &StepResultMessage,
    ) -> anyhow::Result<ResultEffect> {
        // Lock the task first: results of one task are applied one at a time, so two
        // branches finishing together cannot both miss (or both enqueue) their join.
        let Some(row) = sqlx::query(
            "SELECT t.namespace, t.name, t.version, t.state, t.context,
                    s.name AS step_name, s.state AS step_state, s.attempts, s.max_attempts
             FROM tasker.tasks t
             LEFT JOIN tasker.workflow_steps s
               ON s.task_uuid = t.task_uuid AND s.step_uuid = $2
             WHERE t.task_uuid = $1
             FOR UPDATE OF t",
        )
        .bind(message.task_uuid)
        .bind(message.step_uuid)
        .fetch_optional(&mut *conn)
        .await?
        else {
            return Ok(ResultEffect::Ignored(format!("unknown task {}", message.task_uuid)));
        };
        let task = TaskRow {
            task_uuid: message.task_uuid,
            namespace: row.get("namespace"),
            name: row.get("name"),
            version: row.get("version"),
            state: row.get("state"),
            context: row.get("context"),
        };
        let Some(step_name) = row.get::<Option<String>, _>("step_name") else {
            return Ok(ResultEffect::Ignored(format!("unknown step {}", message.step_uuid)));
        };
        let state: String = row.get("step_state");
        let attempts: i32 = row.get("attempts");
        let max_attempts: i32 = row.get("max_attempts");
        if state != "enqueued" || attempts != message.attempt {
            return Ok(ResultEffect::Ignored(format!(
                "step {step_name} is {state} at attempt {attempts}; result for attempt {} is stale",
                message.attempt
            )));
        }

        match &message.outcome {
            StepOutcome::Complete { result } => {
                sqlx::query(
                    "UPDATE tasker.workflow_steps
                     SET state = 'complete', result = $2, last_error = NULL,
                         next_attempt_at = NULL, completed_at = clock_timestamp()
                     WHERE step_uuid = $1",
                )
                .bind(message.step_uuid)
                .bind(result)
                .execute(&mut *conn)
                .await?;
                if task.state != TaskState::InProgress.as_str() {
                    touch_task(conn, message.task_uuid, None).await?;
                    return Ok(ResultEffect::Completed {
                        enqueued: Vec::new(),
                        task_complete: false,
                    });
                }
                let enqueued = if self.has_dependents(&task, &step_name) {
                    self.enqueue_ready_steps(conn, &task).await?
                } else {
                    Vec::new()
                };
                let task_complete = complete_task_if_done(conn, message.task_uuid).await?;
                Ok(ResultEffect::Completed { enqueued, task_complete })
            }
            StepOutcome::Error { message: error }
            | StepOutcome::DeadLettered { message: error } => {
                // A dead-lettered step crashed its workers: another attempt would too.
                let retryable = matches!(message.outcome, StepOutcome::Error { .. });
                if retryable
                    && attempts < max_attempts
                    && task.state == TaskState::InProgress.as_str()
                {
                    let delay = self.backoff.delay_after(attempts as u32);
                    sqlx::query(
                        "UPDATE tasker.workflow_steps SET last_error = $2 WHERE step_uuid = $1",
                    )
                    .bind(message.step_uuid)
                    .bind(error)
                    .execute(&mut *conn)
                    .await?;
                    self.enqueue_step(conn, &task, message.step_uuid, delay).await?;
                    touch_task(conn, message.task_uuid, None).await?;
                    Ok(ResultEffect::RetryScheduled { attempt: attempts + 1, delay })
                } else {
                    sqlx::query(
                        "UPDATE tasker.workflow_steps
                         SET state = 'error', last_error = $2, next_attempt_at = NULL,
                             completed_at = clock_timestamp()
                         WHERE step_uuid = $1",
                    )
                    .bind(message.step_uuid)
                    .bind(error)
                    .execute(&mut *conn)
                    .await?;
                    // A task that already ended (another step failed first) keeps its end.
                    let in_progress = task.state == TaskState::InProgress.as_str();
                    let cancelled = if in_progress {
                        self.cancel_unfinished_steps(conn, &task, &step_name).await?
                    } else {
                        Vec::new()
                    };
                    touch_task(conn, message.task_uuid, in_progress.then_some(TaskState::Error))
                        .await?;
                    Ok(ResultEffect::Failed { cancelled })
                }
            }
        }
    }

    /// When a task fails, its steps not yet finished can never complete it: they become
    /// `cancelled`, and their queued messages (delayed retries, steps not yet claimed) are
    /// deleted. A message a worker already holds is run, but its result finds the step
    /// `cancelled` and is ignored. Returns the cancelled steps' names.
    async fn cancel_unfinished_steps(
        &self,
        conn: &mut PgConnection,
        task: &TaskRow,
        failed_step: &str,
    ) -> anyhow::Result<Vec<String>> {
        let cancelled: Vec<String> = sqlx::query_scalar(
            "UPDATE tasker.workflow_steps
             SET state = 'cancelled', next_attempt_at = NULL, completed_at = clock_timestamp(),
                 last_error = $2
             WHERE task_uuid = $1 AND state IN ('pending', 'enqueued')
             RETURNING name",
        )
        .bind(task.task_uuid)
        .bind(format!("cancelled: step `{failed_step}` failed, so the task ended in error"))
        .fetch_all(&mut *conn)
        .await?;
        if !cancelled.is_empty() {
            let queue = self.queues.namespace_queue(&task.namespace);
            pgmq_notify::delete_matching(
                &mut *conn,
                &queue,
                "task_uuid",
                &task.task_uuid.to_string(),
            )
            .await?;
        }
        Ok(cancelled)
    }

    /// Whether a step of the task's template depends on `step_name` (a leaf releases
    /// nothing, so its completion skips that query).
    fn has_dependents(&self, task: &TaskRow, step_name: &str) -> bool {
        match self.templates.get(&task.namespace, &task.name, &task.version) {
            Some(template) => {
                template.steps.iter().any(|step| step.depends_on.iter().any(|d| d == step_name))
            }
            None => true, // template gone since: ask the database
        }
    }

    /// Enqueues every pending step whose dependencies are all complete, in two statements
    /// whatever their number (the claim, which also reads the dependencies' results, and
    /// one batch send); returns their names in template order.
    async fn enqueue_ready_steps(
        &self,
        conn: &mut PgConnection,
        task: &TaskRow,
    ) -> anyhow::Result<Vec<String>> {
        let mut ready: Vec<ClaimedStep> = sqlx::query_as(
            "UPDATE tasker.workflow_steps s
             SET state = 'enqueued', attempts = s.attempts + 1, enqueued_at = clock_timestamp(),
                 next_attempt_at = NULL
             WHERE s.task_uuid = $1 AND s.state = 'pending'
               AND NOT EXISTS (
                 SELECT 1 FROM unnest(s.depends_on) AS d(name)
                 LEFT JOIN tasker.workflow_steps p ON p.task_uuid = s.task_uuid AND p.name = d.name
                 WHERE p.state IS DISTINCT FROM 'complete')
             RETURNING s.step_uuid, s.position, s.name, s.handler, s.attempts, s.max_attempts,
                       s.depends_on, (
                         SELECT jsonb_object_agg(p.name, coalesce(p.result, 'null'::jsonb))
                         FROM tasker.workflow_steps p
                         WHERE p.task_uuid = s.task_uuid AND p.name = ANY(s.depends_on)
                       ) AS dependency_results",
        )
        .bind(task.task_uuid)
        .fetch_all(&mut *conn)
        .await?;
        ready.sort_by_key(|step| step.position);
        self.send_steps(conn, task, &ready, Duration::ZERO).await?;
        Ok(ready.into_iter().map(|step| step.name).collect())
    }

    /// Marks the step enqueued for its next attempt and sends its message (delayed by
    /// `delay` for retries).
    async fn enqueue_step(
        &self,
        conn: &mut PgConnection,
        task: &TaskRow,
        step_uuid: Uuid,
        delay: Duration,
    ) -> anyhow::Result<()> {
        let step: ClaimedStep = sqlx::query_as(
            "UPDATE tasker.workflow_steps
             SET state = 'enqueued', attempts = attempts + 1, enqueued_at = clock_timestamp(),
                 next_attempt_at = CASE WHEN $2 > 0
                     THEN clock_timestamp() + make_interval(secs => $2) END
             WHERE step_uuid = $1
             RETURNING step_uuid, position, name, handler, attempts, max_attempts, depends_on,
                       (SELECT jsonb_object_agg(p.name, coalesce(p.result, 'null'::jsonb))
                        FROM tasker.workflow_steps p
                        WHERE p.task_uuid = workflow_steps.task_uuid
                          AND p.name = ANY(workflow_steps.depends_on)) AS dependency_results",
        )
        .bind(step_uuid)
        .bind(delay.as_secs_f64())
        .fetch_one(&mut *conn)
        .await?;
        self.send_steps(conn, task, &[step], delay).await
    }

    /// Sends the messages of steps just marked enqueued.
    async fn send_steps(
        &self,
        conn: &mut PgConnection,
        task: &TaskRow,
        steps: &[ClaimedStep],
        delay: Duration,
    ) -> anyhow::Result<()> {
        if steps.is_empty() {
            return Ok(());
        }
        let messages = steps
            .iter()
            .map(|step| {
                let message = StepMessage {
                    task_uuid: task.task_uuid,
                    step_uuid: step.step_uuid,
                    namespace: task.namespace.clone(),
                    task_name: task.name.clone(),
                    task_version: task.version.clone(),
                    step_name: step.name.clone(),
                    handler: step.handler.clone(),
                    attempt: step.attempts,
                    max_attempts: step.max_attempts,
                    context: task.context.clone(),
                    dependency_results: step.dependency_results.clone(),
                };
                serde_json::to_value(&message)
            })
            .collect::<Result<Vec<Value>, _>>()?;
        let queue = self.queues.namespace_queue(&task.namespace);
        if delay.is_zero() {
            pgmq_notify::send_batch(&mut *conn, &queue, &messages).await?;
        } else {
            for message in &messages {
                pgmq_notify::send_delayed(&mut *conn, &queue, message, delay).await?;
            }
        }
        Ok(())
    }

    /// The task with all its steps, or `None` for an unknown id.
    pub async fn get_task(&self, task_uuid: Uuid) -> anyhow::Result<Option<TaskResponse>> {
        let Some(task) = sqlx::query(
            "SELECT namespace, name, version, state, context, created_at, updated_at, completed_at
             FROM tasker.tasks WHERE task_uuid = $1",
        )
        .bind(task_uuid)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let steps = sqlx::query(
            "SELECT step_uuid, name, handler, depends_on, state, attempts, max_attempts, result,
                    last_error, created_at, enqueued_at, next_attempt_at, completed_at
             FROM tasker.workflow_steps WHERE task_uuid = $1 ORDER BY position",
        )
        .bind(task_uuid)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| {
            let state: String = row.get("state");
            Ok(StepResponse {
                step_uuid: row.get("step_uuid"),
                name: row.get("name"),
                handler: row.get("handler"),
                depends_on: row.get("depends_on"),
                state: StepState::parse(&state)
                    .with_context(|| format!("unknown step state {state}"))?,
                attempts: row.get("attempts"),
                max_attempts: row.get("max_attempts"),
                result: row.get("result"),
                last_error: row.get("last_error"),
                created_at: timestamp(row.get("created_at")),
                enqueued_at: row.get::<Option<DateTime<Utc>>, _>("enqueued_at").map(timestamp),
                next_attempt_at: row
                    .get::<Option<DateTime<Utc>>, _>("next_attempt_at")
                    .map(timestamp),
                completed_at: row.get::<Option<DateTime<Utc>>, _>("completed_at").map(timestamp),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
        let state: String = task.get("state");
        Ok(Some(TaskResponse {
            task_uuid,
            namespace: task.get("namespace"),
            name: task.get("name"),
            version: task.get("version"),
            state: TaskState::parse(&state)
                .with_context(|| format!("unknown task state {state}"))?,
            context: task.get("context"),
            created_at: timestamp(task.get("created_at")),
            updated_at: timestamp(task.get("updated_at")),
            completed_at: task.get::<Option<DateTime<Utc>>, _>("completed_at").map(timestamp),
            steps,
        }))
    }
}

/// A step just marked `enqueued`, as its message needs it.
struct ClaimedStep {
    step_uuid: Uuid,
    position: i32,
    name: String,
    handler: String,
    attempts: i32,
    max_attempts: i32,
    /// The results of the steps it depends on, by name (read with the claim).
    dependency_results: BTreeMap<String, Value>,
}

impl<'r> sqlx::FromRow<'r, PgRow> for ClaimedStep {
    fn from_row(row: &'r PgRow) -> sqlx::Result<ClaimedStep> {
        Ok(ClaimedStep {
            step_uuid: row.try_get("step_uuid")?,
            position: row.try_get("position")?,
            name: row.try_get("name")?,
            handler: row.try_get("handler")?,
            attempts: row.try_get("attempts")?,
            max_attempts: row.try_get("max_attempts")?,
            dependency_results: row
                .try_get::<Option<sqlx::types::Json<BTreeMap<String, Value>>>, _>(
                    "dependency_results",
                )?
                .map(|json| json.0)
                .unwrap_or_default(),
        })
    }
}

/// Touches the task, completing it when every step is complete; returns whether it did.
async fn complete_task_if_done(conn: &mut PgConnection, task_uuid: Uuid) -> anyhow::Result<bool> {
    Ok(sqlx::query_scalar(
        "UPDATE tasker.tasks t
         SET updated_at = clock_timestamp(),
             state = CASE WHEN done.all_complete THEN 'complete' ELSE t.state END,
             completed_at = CASE WHEN done.all_complete THEN clock_timestamp()
                                 ELSE t.completed_at END
         FROM (SELECT NOT EXISTS (
                 SELECT 1 FROM tasker.workflow_steps
                 WHERE task_uuid = $1 AND state <> 'complete') AS all_complete) AS done
         WHERE t.task_uuid = $1
         RETURNING done.all_complete",
    )
    .bind(task_uuid)
    .fetch_one(&mut *conn)
    .await?)
}

async fn touch_task(
    conn: &mut PgConnection,
    task_uuid: Uuid,
    final_state: Option<TaskState>,
) -> anyhow::Result<()> {
    match final_state {
        Some(state) => {
            sqlx::query(
                "UPDATE tasker.tasks SET state = $2, updated_at = clock_timestamp(),
                     completed_at = clock_timestamp()
                 WHERE task_uuid = $1",
            )
            .bind(task_uuid)
            .bind(state.as_str())
            .execute(&mut *conn)
            .await?;
        }
        None => {
            sqlx::query(
                "UPDATE tasker.tasks SET updated_at = clock_timestamp() WHERE task_uuid = $1",
            )
            .bind(task_uuid)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}
