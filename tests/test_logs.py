"""What the console writes to its log: each line once, refusals in one line."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django_tasks_db.models import DBTaskResult

from tests.conftest import decide, make_user, start_run

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_line_of_the_worker_is_printed_once_even_with_debug_on(
    approver: Any, start_worker: Any, tmp_path: Path
) -> None:
    run = start_run()
    task_id = decide(run, approver).resumption.task_id
    start_worker("log-worker", DJANGO_DEBUG="1")  # as `make run` starts it
    deadline = time.monotonic() + 60
    while DBTaskResult.objects.get(pk=task_id).status != "SUCCESSFUL":
        assert time.monotonic() < deadline, "the worker did not run the task"
        time.sleep(0.2)
    time.sleep(0.5)  # the last line is written just after the task is marked
    log = (tmp_path / "log-worker.log").read_text()
    assert log.count(f"Task id={task_id} path=runs.tasks.execute_run_action state=RUNNING") == 1
    assert log.count(f"Task id={task_id} path=runs.tasks.execute_run_action state=SUCCESSFUL") == 1


def test_a_refusal_is_logged_in_one_line_without_a_traceback(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    client.force_login(make_user("nobody"))  # no role yet
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get("/approvals/").status_code == 403
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.getMessage() == "Forbidden (Permission denied): /approvals/"
    assert record.exc_info is None
    assert "Traceback" not in caplog.text
