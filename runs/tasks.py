"""Background tasks (Django's tasks framework, run by ``manage.py db_worker``).

Thin: each task hands its work to :mod:`runs.worker`.
"""

from __future__ import annotations

from django.tasks import TaskContext, task

from runs import worker


@task(takes_context=True)
def execute_run_action(context: TaskContext, action_id: int) -> str | None:
    """Carry out a queued resume or replay through NeuroCore; return the run's status."""
    action = worker.run_action_execute(action_id=action_id, task_id=context.task_result.id)
    return action.outcome_status if action is not None else None
