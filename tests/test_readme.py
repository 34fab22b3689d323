"""The README's examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from runs.models import Decision, Run
from tests.conftest import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_agent_example_writes_a_run_that_waits_for_a_decision(tmp_path: object) -> None:
    readme = (ROOT / "README.md").read_text()
    [example] = re.findall(r"```python\n(# agent\.py.*?)```", readme, re.S)
    script = tmp_path / "agent.py"  # type: ignore[operator]
    script.write_text(example)
    env = {**os.environ, "DJANGO_DEBUG": "1", "DATABASE_URL": database_url()}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    run_id, status, *_ = result.stdout.split()
    assert status == "suspended"
    assert "waits for a decision at the approval gate 'finance_review'" in result.stdout
    assert result.stdout.splitlines()[-1] == "suspended"
    run = Run.objects.get(pk=run_id)
    assert (run.status, run.suspended_at_node) == ("suspended", "finance_review")
    assert not Decision.objects.exists()
