"""Background tasks (Django's tasks framework, run by ``manage.py db_worker``)."""

from __future__ import annotations

from django.tasks import TaskContext, task

from runs import services


@task(takes_context=True)
def resume_run(context: TaskContext, resumption_id: int) -> str | None:
    """Resume a run through NeuroCore for a queued resumption; return the run's status."""
    resumption = services.resumption_execute(
        resumption_id=resumption_id, task_id=context.task_result.id
    )
    return resumption.outcome_status if resumption is not None else None
