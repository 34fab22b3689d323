"""`manage.py runs …`: NeuroCore's CLI on the console's database, through its services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from runs.models import Decision, Run, RunAction
from runs.store import DjangoRunStore
from tests.conftest import ROOT, TEST_PROJECT_ROOT, database_url, make_user, start_run

pytestmark = pytest.mark.django_db(transaction=True)


def runs(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("runs", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refused(*args: str) -> CommandError:
    with pytest.raises(CommandError) as caught:
        runs(*args)
    return caught.value


# -- list ------------------------------------------------------------------------------


def test_list_shows_runs_newest_first_with_step_counts() -> None:
    older = start_run("dag.yaml")
    newer = start_run()
    out, _ = runs("list")
    assert "Runs" in out
    assert out.index(newer.run_id[:12]) < out.index(older.run_id[:12])
    dag_line = next(line for line in out.splitlines() if older.run_id[:12] in line)
    assert "data-cleanup" in dag_line
    assert "completed" in dag_line
    assert " 5 " in dag_line  # five steps


def test_list_filters_and_limits() -> None:
    start_run("dag.yaml")
    gate = start_run()
    out, _ = runs("list", "--status", "suspended")
    assert gate.run_id[:12] in out
    assert "data-cleanup" not in out
    out, _ = runs("list", "--blueprint", "data-cleanup", "--limit", "1")
    assert "payment" not in out
    assert out.count("data-cleanup") == 1
    # The parser is built once and kept: nothing of one call carries into the next.
    out, _ = runs("list")
    assert gate.run_id[:12] in out
    assert "data-cleanup" in out


def test_list_costs_the_same_queries_for_any_number_of_runs(
    django_assert_max_num_queries: Any,
) -> None:
    for _ in range(5):
        start_run("dag.yaml")
    with django_assert_max_num_queries(1):
        runs("list")


def test_list_of_nothing_says_so() -> None:
    out, err = runs("list")
    assert out == ""
    assert err.strip() == "No runs recorded."


def test_list_refuses_an_unknown_status() -> None:
    error = refused("list", "--status", "done")
    assert error.returncode == 2
    assert str(error) == (
        "Unknown status 'done'. Use one of: running, completed, failed, suspended, cancelled, "
        "rejected."
    )


# -- inspect ---------------------------------------------------------------------------


def test_inspect_json_has_neurocores_shape() -> None:
    run = start_run()
    out, _ = runs("inspect", run.run_id[:6], "--json")
    payload = json.loads(out)
    store = DjangoRunStore()
    expected = {
        "run": store.load_run(run.run_id).model_dump(mode="json"),
        "steps": [s.model_dump(mode="json") for s in store.load_steps(run.run_id)],
    }
    assert payload == json.loads(json.dumps(expected, default=str))
    assert set(payload) == {"run", "steps"}


def test_inspect_shows_the_run_steps_and_full_context() -> None:
    run = start_run(amount=3)
    out, _ = runs("inspect", run.run_id, "--full")
    assert f"Run ID: {run.run_id}" in out
    assert "Suspended at: finance_review (Approve the payment?)" in out
    assert "prepare" in out
    assert "Final context" in out
    assert '"double": 6' in out


def test_prefixes_resolve_over_all_runs_and_ambiguity_is_listed() -> None:
    for run_id in ("abc111", "abc222", "abd333"):
        Run.objects.create(
            run_id=run_id,
            blueprint_name="x",
            created_at="2020-01-01T00:00Z",
            updated_at="2020-01-01T00:00Z",
        )
    out, _ = runs("inspect", "abd", "--json")
    assert json.loads(out)["run"]["run_id"] == "abd333"
    error = refused("inspect", "abc")
    assert error.returncode == 2
    assert str(error) == "Ambiguous run id 'abc'. Matches: abc111, abc222"
    error = refused("inspect", "zzz")
    assert str(error) == "No run found matching 'zzz'."


# -- approve, resume, replay -------------------------------------------------------------


def test_approve_records_a_cli_decision_by_the_named_user() -> None:
    make_user("ada", "Approvers")
    run = start_run()
    out, _ = runs("approve", run.run_id[:8], "--note", "ok", "--by", "ada@example.com")
    assert "Run approved." in out
    assert f"Follow it with: python manage.py runs inspect {run.run_id[:12]}" in out
    decision = Decision.objects.get()
    assert (decision.source, decision.decided_by.username, decision.note) == ("cli", "ada", "ok")
    assert decision.resumption.resume_data == {
        "approved": True,
        "note": "ok",
        "by": "ada@example.com",
        "decision_id": decision.pk,
        "approvals": [
            {
                "by": "ada@example.com",
                "note": "ok",
                "at": decision.decided_at.isoformat(),
                "inputs": {},
            }
        ],
        "inputs": {},
    }


@pytest.mark.parametrize(
    ("by", "message"),
    [
        ([], "Rejection failed: name the console user who decides with --by (username or email)."),
        (["--by", "cfo@example.com"], "No active console user is 'cfo@example.com': name who"),
    ],
)
def test_a_decision_needs_a_console_user_who_may_decide(by: list[str], message: str) -> None:
    run = start_run()
    error = refused("approve", run.run_id, "--reject", "--note", "no budget", *by)
    assert error.returncode == 1
    assert str(error).startswith(message)
    assert not Decision.objects.exists()
    assert not RunAction.objects.exists()


def test_approve_by_a_user_without_the_role_is_refused() -> None:
    make_user("vera", "Viewers")
    run = start_run()
    error = refused("approve", run.run_id, "--by", "vera")
    assert error.returncode == 1
    assert str(error) == "Approval failed: You may not approve or reject this run."
    assert not Decision.objects.exists()


def test_approving_a_run_that_is_not_waiting_is_refused() -> None:
    make_user("ada", "Approvers")
    run = start_run("dag.yaml")
    error = refused("approve", run.run_id, "--by", "ada")
    assert error.returncode == 1
    assert "not waiting for a decision" in str(error)


def test_resume_with_data_and_replay_are_queued_actions() -> None:
    run = start_run("sync_hold.yaml")
    out, _ = runs("resume", run.run_id, "--data", "signal=yes", "-d", "detail=a=b")
    assert "Resume queued" in out
    action = RunAction.objects.get(kind="resume")
    assert action.resume_data == {"signal": "yes", "detail": "a=b"}
    assert action.source == "cli"
    Run.objects.filter(pk=run.pk).update(status="completed")
    RunAction.objects.update(state="done")
    out, _ = runs("replay", run.run_id)
    replay = RunAction.objects.get(kind="replay")
    assert f"runs inspect {replay.result_run_id[:12]}" in out


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["approved=false"], "Only a decision passes it"),
        (["approved=true", "by=cfo@example.com"], "Only a decision passes it"),
    ],
)
def test_resume_cannot_pass_an_approval_gate(data: list[str], message: str) -> None:
    make_user("otto", "Operators")
    run = start_run()
    error = refused("resume", run.run_id, *[f"--data={d}" for d in data], "--by", "otto")
    assert error.returncode == 1
    assert message in str(error)
    assert f"manage.py runs approve {run.run_id}" in str(error)
    assert not RunAction.objects.exists()
    assert not Decision.objects.exists()


@pytest.mark.parametrize("key", ["approved", "note", "by"])
def test_resume_data_may_not_carry_a_decision_even_off_a_gate(key: str) -> None:
    make_user("otto", "Operators")
    run = start_run("sync_hold.yaml")  # paused, not at an approval gate
    error = refused("resume", run.run_id, "--data", f"{key}=false", "--by", "otto")
    assert error.returncode == 1
    assert f"Resume data may not contain '{key}'" in str(error)
    assert not RunAction.objects.exists()


@pytest.mark.parametrize(
    ("item", "message"), [("novalue", "Use KEY=VALUE"), ("=x", "Key cannot be empty")]
)
def test_malformed_data_is_refused(item: str, message: str) -> None:
    run = start_run()
    error = refused("resume", run.run_id, "--data", item)
    assert error.returncode == 2
    assert message in str(error)
    assert not RunAction.objects.exists()


def test_approve_wait_prints_the_result_like_neurocore(start_worker: Any) -> None:
    make_user("ada", "Approvers")
    run = start_run(amount=8)
    start_worker("cli-worker")
    out, err = runs("approve", run.run_id, "--wait", "--by", "ada")
    assert "waiting for the worker" in err
    assert "Run approved." in out
    assert "Result" in out
    assert '"finished": true' in out
    run.refresh_from_db()
    assert run.status == "completed"


# -- run ------------------------------------------------------------------------------------


def test_run_executes_a_blueprint_into_the_console() -> None:
    out, _ = runs("run", "gate.yaml", "--data", "amount=12")
    run = Run.objects.get()
    assert run.status == "suspended"
    assert run.initial_data == {"amount": "12"}
    assert "Result" in out


def test_run_of_a_missing_blueprint_is_one_clear_error() -> None:
    error = refused("run", "nope.yaml")
    assert error.returncode == 1
    assert str(error).startswith("Execution error: Blueprint file not found")


# -- as a process: exit codes and one line on stderr ------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "stderr"),
    [
        (["inspect", "nope"], 2, "CommandError: No run found matching 'nope'.\n"),
        (["list", "--status", "x"], 2, "CommandError: Unknown status 'x'."),
        (["resume", "whatever", "--data", "bad"], 2, "CommandError: Invalid data format: 'bad'."),
    ],
)
def test_errors_exit_non_zero_with_one_line_and_no_traceback(
    args: list[str], code: int, stderr: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "runs", *args],
        env={
            **os.environ,
            "DATABASE_URL": database_url(),
            "NEUROCORE_PROJECT_ROOT": str(TEST_PROJECT_ROOT),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == code
    assert result.stderr.startswith(stderr)
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("by", ["vera@example.com ", "nobody", "VERA"])
def test_a_by_that_names_no_console_user_is_refused_not_recorded_as_given(by: str) -> None:
    make_user("vera", "Viewers")
    run = start_run("dag.yaml")
    error = refused("replay", run.run_id, "--by", by)
    assert error.returncode == 1
    assert "No active console user is" in str(error) or "You may not replay" in str(error)
    assert not RunAction.objects.exists()


def test_run_takes_a_blueprint_path_from_the_repository_root(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: `runs run examples/demo/blueprints/payment.yaml` from the repository root."""
    from tests.conftest import ROOT

    settings.NEUROCORE_PROJECT_ROOT = ROOT / "examples" / "demo"
    from runs.runtime import current_project

    current_project.cache_clear()
    monkeypatch.chdir(ROOT)
    out, _ = runs("run", "examples/demo/blueprints/payment.yaml", "--data", "demo=1")
    assert "Result" in out
    assert Run.objects.get().blueprint_name == "vendor-payment"
    current_project.cache_clear()
