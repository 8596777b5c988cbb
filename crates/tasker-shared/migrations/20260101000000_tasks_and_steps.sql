-- Tasks created from templates and their workflow steps. PGMQ's own schema is installed
-- before these migrations by `tasker-server migrate`.
CREATE SCHEMA IF NOT EXISTS tasker;

CREATE TABLE tasker.tasks (
    task_uuid    uuid PRIMARY KEY,
    namespace    text NOT NULL,
    name         text NOT NULL,
    version      text NOT NULL,
    context      jsonb NOT NULL,
    state        text NOT NULL CHECK (state IN ('pending', 'in_progress', 'complete', 'error')),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at timestamptz
);

CREATE TABLE tasker.workflow_steps (
    step_uuid       uuid PRIMARY KEY,
    task_uuid       uuid NOT NULL REFERENCES tasker.tasks (task_uuid) ON DELETE CASCADE,
    position        integer NOT NULL,
    name            text NOT NULL,
    handler         text NOT NULL,
    depends_on      text[] NOT NULL DEFAULT '{}',
    max_attempts    integer NOT NULL CHECK (max_attempts >= 1),
    -- pending: waiting for dependencies; enqueued: a message is on the worker queue
    -- (possibly delayed for a retry); complete / error: final.
    state           text NOT NULL CHECK (state IN ('pending', 'enqueued', 'complete', 'error')),
    attempts        integer NOT NULL DEFAULT 0,
    result          jsonb,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    enqueued_at     timestamptz,
    next_attempt_at timestamptz,
    completed_at    timestamptz,
    UNIQUE (task_uuid, name)
);
