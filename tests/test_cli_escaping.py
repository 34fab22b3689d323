"""`manage.py runs …` shows every stored value inert: no terminal control sequence,
no rich markup and no encoding failure comes from the data, only from the CLI.

Values are written through DjangoRunStore, as an agent would write them:
screen clears, OSC 8 hyperlinks, bells, backspaces, carriage returns, C1
controls, bidi overrides, line separators, lone surrogates (in JSON values),
rich markup and emoji codes.
"""

from __future__ import annotations

import json
import re
import unicodedata
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from neurocore.persistence import RunStatus

from runs.management.commands.runs import Command, terminal_text
from runs.models import Run, RunAction
from runs.store import REJECTION_ERROR, DjangoRunStore
from tests.test_store import make_run, make_step

pytestmark = pytest.mark.django_db

CLEAR = "\x1b[2J"
LINK = "\x1b]8;;http://evil\x1b\\text\x1b]8;;\x1b\\"
CONTROLS = "\x07\x08\r\x9b\x85\x7f"
BIDI = "\u202e\u2066"
MARKUP = "[/red] [link=http://x]y[/link]"

# Shown in place of the raw characters above.
CLEAR_SHOWN = "\\x1b[2J"
LINK_SHOWN = "\\x1b]8;;http://evil\\x1b\\text\\x1b]8;;\\x1b\\"
CONTROLS_SHOWN = "\\x07\\x08\\r\\x9b\\x85\\x7f"
BIDI_SHOWN = "\\u202e\\u2066"


def hidden(text: str) -> list[str]:
    """The characters of ``text`` a terminal would act on or hide (a newline aside)."""
    return [
        char
        for char in text
        if char != "\n" and unicodedata.category(char) in {"Cc", "Cf", "Cs", "Zl", "Zp"}
    ]


class TTY(StringIO):
    def isatty(self) -> bool:
        return True


def runs(*args: str, tty: bool = False) -> tuple[str, str]:
    out, err = (TTY(), TTY()) if tty else (StringIO(), StringIO())
    call_command("runs", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refusal(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        runs(*args)
    return str(caught.value)


def inert(text: str) -> str:
    """``text``, checked to hold nothing a terminal would act on."""
    assert hidden(text) == []
    assert "\x1b" not in text
    return text


SGR = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(autouse=True)
def plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """No colour forced by the environment; wide enough that nothing wraps."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture
def hostile() -> str:
    """A run whose every shown field is hostile, with one hostile step; its id."""
    store = DjangoRunStore()
    run = make_run(
        run_id="feed" + "0" * 28,
        blueprint_name=f"pay{CLEAR}{LINK}",
        blueprint_version=f"2{CONTROLS}",
        status=RunStatus.SUSPENDED,
        error=f"boom {MARKUP} :warning:\nsecond line{BIDI}\u2028",
        suspended_at_node=f"gate{CLEAR}",
        suspension_reason=f"why {MARKUP}{CONTROLS}",
        final_context={"data": {f"k{CLEAR}": f"v\udcff{BIDI}{MARKUP}"}},
        duration_ms=1500,
    )
    store.save_run(run)
    store.save_step(
        make_step(
            run.run_id,
            0,
            component=f"c{CLEAR}[bold]",
            output_keys=[f"o{LINK}", "k\udcff", "[/red]"],
            error=f"e{CONTROLS}{MARKUP}",
        )
    )
    return run.run_id


def test_terminal_text_shows_controls_as_escapes_and_keeps_text() -> None:
    assert terminal_text("plain ü 漢字 😀") == "plain ü 漢字 😀"
    assert terminal_text(f"a{CLEAR}b") == "a\\x1b[2Jb"
    assert terminal_text("\t\n\r\x00\x9b\u200b\u202e\u2028\udcff\U000e0041") == (
        "\\t\\n\\r\\x00\\x9b\\u200b\\u202e\\u2028\\udcff\\U000e0041"
    )
    assert terminal_text("line\n\tnext\r", multiline=True) == "line\n\tnext\\r"
    assert terminal_text("[/red]", markup=True) == "\\[/red]"
    assert terminal_text("ends\\", markup=True) == "ends\\\\"
    assert hidden(terminal_text("".join(map(chr, range(0x20))))) == []


def test_list_shows_hostile_names_escaped(hostile: str) -> None:
    out, _ = runs("list")
    inert(out)
    line = next(line for line in out.splitlines() if hostile[:12] in line)
    assert f"pay{CLEAR_SHOWN}{LINK_SHOWN}" in line
    # The table stays a table: every row as wide as the rule above it.
    lines = out.splitlines()[1:]
    assert len({len(line) for line in lines}) == 1


def test_list_measures_wide_characters_in_cells() -> None:
    DjangoRunStore().save_run(make_run(blueprint_name="支払い処理"))
    DjangoRunStore().save_run(make_run(blueprint_name="payment-refunds"))
    out, _ = runs("list")
    rows = out.splitlines()[1:]
    wide = [sum(2 if unicodedata.east_asian_width(c) == "W" else 1 for c in r) for r in rows]
    assert len(set(wide)) == 1


def test_list_on_a_terminal_adds_only_its_status_colours(hostile: str) -> None:
    plain, _ = runs("list")
    coloured, _ = runs("list", tty=True)
    assert "\x1b[33m" in coloured  # suspended, in yellow
    assert SGR.sub("", coloured) == plain


def test_a_hostile_run_id_is_listed_and_inspected_escaped() -> None:
    run_id = f"{CLEAR}{BIDI}id\r"
    DjangoRunStore().save_run(make_run(run_id=run_id))
    out, _ = runs("list")
    assert f"{CLEAR_SHOWN}{BIDI_SHOWN}id\\r" in inert(out)
    out, _ = runs("inspect", run_id)
    assert f"Run ID: {CLEAR_SHOWN}{BIDI_SHOWN}id\\r" in inert(out)


@pytest.mark.parametrize("full", [False, True])
def test_inspect_shows_every_field_escaped_and_markup_literally(hostile: str, full: bool) -> None:
    out, _ = runs("inspect", hostile[:8], *(["--full"] if full else []))
    inert(out)
    assert f"pay{CLEAR_SHOWN}{LINK_SHOWN} v2{CONTROLS_SHOWN}" in out
    assert f"Error: boom {MARKUP} :warning:" in out
    assert f"second line{BIDI_SHOWN}\\u2028" in out
    assert f"Suspended at: gate{CLEAR_SHOWN} (why {MARKUP}{CONTROLS_SHOWN})" in out
    assert f"c{CLEAR_SHOWN}[bold]" in out
    assert f"o{LINK_SHOWN}, k\\udcff, [/red]" in out
    assert f"e{CONTROLS_SHOWN}{MARKUP}" in out
    assert ("Final context" in out) is full
    if full:  # JSON, escaped by json.dumps
        assert '"k\\u001b[2J": "v\\udcff\\u202e\\u2066[/red] [link=http://x]y[/link]"' in out


def test_inspect_on_a_terminal_adds_only_its_own_styles(hostile: str) -> None:
    plain, _ = runs("inspect", hostile, "--full")
    styled, _ = runs("inspect", hostile, "--full", tty=True)
    assert SGR.sub("", styled) == plain


def test_inspect_json_is_the_records_as_json(hostile: str) -> None:
    out, _ = runs("inspect", hostile, "--json")
    store = DjangoRunStore()
    run, steps = store.load_run(hostile), store.load_steps(hostile)
    assert run is not None
    expected = {"run": run.model_dump(), "steps": [step.model_dump() for step in steps]}
    assert out == json.dumps(expected, indent=2, default=str) + "\n"
    assert out.isascii()
    assert "\x1b" not in out
    loaded = json.loads(out)
    assert loaded["run"]["blueprint_name"] == f"pay{CLEAR}{LINK}"
    assert loaded["run"]["final_context"]["data"] == {f"k{CLEAR}": f"v\udcff{BIDI}{MARKUP}"}
    assert loaded["steps"][0]["output_keys"][1] == "k\udcff"


def test_ambiguous_and_unknown_ids_are_reported_escaped() -> None:
    store = DjangoRunStore()
    for suffix in ("a1", "a2"):
        store.save_run(make_run(run_id=f"{LINK}{suffix}"))
    message = inert(refusal("inspect", LINK))
    assert f"Ambiguous run id '{LINK_SHOWN}'" in message
    assert f"{LINK_SHOWN[:12]}" in message
    message = inert(refusal("inspect", f"nothing{CLEAR}"))
    assert f"No run found matching 'nothing{CLEAR_SHOWN}'." in message


@pytest.mark.parametrize("partial", ["\x00", "ab\x00", "\udcff", "\ud7ff", "\U0010ffff"])
def test_an_id_no_database_can_hold_is_not_found_not_a_traceback(partial: str) -> None:
    DjangoRunStore().save_run(make_run())
    message = inert(refusal("inspect", partial))
    assert message.startswith("No run found matching '")


def test_a_refusal_naming_a_stored_gate_is_escaped() -> None:
    DjangoRunStore().save_run(
        make_run(
            run_id="bad" + "1" * 29,
            status=RunStatus.FAILED,
            error=f"{REJECTION_ERROR}gate{CLEAR}'",
            suspended_at_node=f"gate{CLEAR}{MARKUP}",
        )
    )
    assert Run.objects.get().status == Run.Status.REJECTED
    message = inert(refusal("resume", "bad1"))
    assert f"rejected at 'gate{CLEAR_SHOWN}{MARKUP}'" in message


def follow(action: RunAction) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    Command(stdout=out, stderr=err).follow(action, wait=True, verb="Resume")
    return out.getvalue(), err.getvalue()


def test_waiting_and_result_after_wait_are_escaped(hostile: str) -> None:
    action = RunAction(
        run_id=hostile,
        kind=RunAction.Kind.RESUME,
        state=RunAction.State.DONE,
        outcome_status=Run.Status.SUSPENDED,
        outcome_gate=f"gate{CLEAR}{MARKUP}",
    )
    out, _ = follow(action)
    inert(out)
    assert f"waits at 'gate{CLEAR_SHOWN}{MARKUP}'." in out
    assert "Result" in out
    assert '"k\\u001b[2J": "v\\udcff\\u202e\\u2066[/red] [link=http://x]y[/link]"' in out


@pytest.mark.parametrize(
    ("fields", "shown"),
    [
        (
            {"state": RunAction.State.INTERRUPTED, "outcome_error": f"lost{CLEAR}"},
            f"Resume interrupted: lost{CLEAR_SHOWN}",
        ),
        (
            {"state": RunAction.State.DONE, "outcome_status": Run.Status.FAILED},
            "Resume failed: the run failed",
        ),
        (
            {
                "state": RunAction.State.DONE,
                "outcome_status": Run.Status.FAILED,
                "outcome_error": f"x{LINK}{CONTROLS}",
            },
            f"Resume failed: x{LINK_SHOWN}{CONTROLS_SHOWN}",
        ),
        (
            {"state": RunAction.State.DONE, "outcome_status": Run.Status.REJECTED},
            f"Resume: the run was rejected. boom {MARKUP} :warning:\nsecond line{BIDI_SHOWN}",
        ),
    ],
)
def test_failures_after_wait_are_escaped(hostile: str, fields: dict[str, Any], shown: str) -> None:
    action = RunAction(run_id=hostile, kind=RunAction.Kind.RESUME, **fields)
    with pytest.raises(CommandError) as caught:
        follow(action)
    message = str(caught.value)
    assert hidden(message) == []
    assert "\x1b" not in message
    assert message.startswith(shown)


def test_typed_values_echoed_in_errors_are_escaped() -> None:
    assert f"Unknown status 'x{CLEAR_SHOWN}'" in inert(refusal("list", "--status", f"x{CLEAR}"))
    assert f"'k{CLEAR_SHOWN}'" in inert(refusal("resume", "ab", "--data", f"k{CLEAR}"))
    message = inert(refusal("export", "--since", f"2026{BIDI}"))
    assert f"got '2026{BIDI_SHOWN}'" in message
