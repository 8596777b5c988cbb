-- A failed task cancels the steps that can no longer run; tasks start `in_progress`
-- (created with their root steps enqueued in one transaction), so `pending` is dropped.
ALTER TABLE tasker.tasks DROP CONSTRAINT tasks_state_check;
ALTER TABLE tasker.tasks
    ADD CONSTRAINT tasks_state_check CHECK (state IN ('in_progress', 'complete', 'error'));

ALTER TABLE tasker.workflow_steps DROP CONSTRAINT workflow_steps_state_check;
-- cancelled: final, never ran (or its pending retry was dropped) because another step of
-- its task failed for good.
ALTER TABLE tasker.workflow_steps
    ADD CONSTRAINT workflow_steps_state_check
    CHECK (state IN ('pending', 'enqueued', 'complete', 'error', 'cancelled'));
