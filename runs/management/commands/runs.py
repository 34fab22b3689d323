"""``manage.py runs …``: NeuroCore's ``neurocore runs`` CLI, on the console's database.

Same subcommands, flags, output and exit codes as NeuroCore 0.4's ``runs_cmd``;
approve, resume and replay go through the console's services and worker, so
they are audited like the web's. Run ids may be abbreviated to any unique
prefix, found with an index range scan over all runs.
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import shutil
import time
from pathlib import Path
from typing import IO, Any, ClassVar, cast

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax

from runs import selectors
from runs.errors import ConsoleError
from runs.management.terminal import (
    FAILURE,
    TERMINAL_STATUS_COLORS,
    USAGE_ERROR,
    RawStream,
    box_table,
    console_user,
    inspection,
    parse_data,
    terminal_text,
)
from runs.management.transfer import TransferCommands
from runs.models import Run, RunAction, Source
from runs.services.decisions import decision_record
from runs.services.operations import run_reopen, run_replay_request, run_resume_request
from runs.store import DjangoRunStore

AMBIGUOUS_SHOWN = 5
MAX_LIMIT = 1_000_000  # rows `runs list` prints at most (a database integer beyond it)
WAIT_POLL_SECONDS = 0.5


class Command(TransferCommands, BaseCommand):
    help = "Inspect, replay, resume, and approve blueprint runs (NeuroCore's `runs` CLI)."

    # Built once per process, as click builds NeuroCore's command once: building
    # nine parsers and their arguments was a third of a `runs list` call.
    _parsers: ClassVar[dict[tuple[str, str, bool], CommandParser]] = {}

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        if kwargs:
            return super().create_parser(prog_name, subcommand, **kwargs)
        key = (prog_name, subcommand, bool(getattr(self, "_called_from_command_line", False)))
        if key not in self._parsers:
            self._parsers[key] = super().create_parser(prog_name, subcommand)
        return self._parsers[key]

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")

        listing = sub.add_parser("list", help="List recorded runs (newest first).")
        listing.add_argument("--status", "-s", help="Filter by status.")
        listing.add_argument("--blueprint", "-b", help="Filter by blueprint name.")
        listing.add_argument("--limit", "-n", type=int, default=50, help="Max rows.")

        inspect = sub.add_parser("inspect", help="Show a run's details and step history.")
        inspect.add_argument("run_id", help="Run id (full or unique prefix).")
        inspect.add_argument("--full", action="store_true", help="Show the final context data.")
        inspect.add_argument("--json", "-j", action="store_true", dest="as_json", help="Emit JSON.")

        replay = sub.add_parser("replay", help="Re-execute a run from its original inputs.")
        replay.add_argument("run_id", help="Run id (full or unique prefix).")
        self._add_actor_arguments(replay)

        resume = sub.add_parser("resume", help="Resume a suspended or failed run.")
        resume.add_argument("run_id", help="Run id (full or unique prefix).")
        resume.add_argument(
            "--data", "-d", action="append", default=[], help="resume_data as KEY=VALUE pairs."
        )
        self._add_actor_arguments(resume)

        approve = sub.add_parser("approve", help="Approve (or --reject) a suspended run.")
        approve.add_argument("run_id", help="Run id (full or unique prefix).")
        approve.add_argument("--reject", action="store_true", help="Reject instead of approve.")
        approve.add_argument("--note", default="", help="Optional decision note.")
        answer = "An answer to the gate's inputs, KEY=VALUE (repeatable)."
        approve.add_argument("--input", "-i", action="append", default=[], help=answer)
        deputy = "Decide for this user, whose delegation --by holds."
        approve.add_argument("--for", dest="on_behalf_of", default="", help=deputy)
        self._add_actor_arguments(approve)

        reopen = sub.add_parser(
            "reopen", help="Send a rejected run back to its gate for a new decision."
        )
        reopen.add_argument("run_id", help="Run id (full or unique prefix).")
        reopen.add_argument("--reason", required=True, help="Why it deserves a new decision.")
        self._add_actor_arguments(reopen)

        run = sub.add_parser("run", help="Execute a blueprint of the NeuroCore project.")
        run.add_argument("blueprint", type=Path, help="Blueprint YAML (path or name).")
        run.add_argument(
            "--data", "-d", action="append", default=[], help="Initial data as KEY=VALUE pairs."
        )

        importing = sub.add_parser(
            "import", help="Import a NeuroCore runs.db (or a `runs export` file), idempotently."
        )
        importing.add_argument("path", type=Path, help="runs.db or .jsonl file.")
        importing.add_argument("--dry-run", action="store_true", help="Report, write nothing.")
        importing.add_argument("--batch-size", type=int, default=1000, help=argparse.SUPPRESS)

        export = sub.add_parser("export", help="Stream runs with steps and decisions.")
        export.add_argument("--format", choices=["jsonl"], default="jsonl", dest="fmt")
        export.add_argument("--status", "-s", help="Only runs with this status.")
        export.add_argument("--since", help="Only runs created at or after (ISO date or time).")

    @staticmethod
    def _add_actor_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--by",
            default="",
            help="The console user acting (username or email), whose permissions apply; "
            "required to approve, reject or reopen.",
        )
        parser.add_argument(
            "--wait", action="store_true", help="Wait for the worker and print the result."
        )

    def handle(self, *args: Any, subcommand: str, **options: Any) -> None:
        getattr(self, f"handle_{subcommand}")(**options)

    # -- output -------------------------------------------------------------------------
    def render(self, *renderables: Any) -> None:
        """Print rich renderables to this command's stdout.

        Markup is the command's own; stored values in it are ``terminal_text(…,
        markup=True)``. No emoji codes: ``:warning:`` in a value stays text.
        """
        console = Console(
            file=cast(IO[str], RawStream(self.stdout)),
            width=max(100, shutil.get_terminal_size().columns),
            emoji=False,
        )
        for renderable in renderables:
            console.print(renderable)

    def print_result(self, run: Run) -> None:
        """The run's final data as a result panel (as ``neurocore run`` prints it)."""
        context = run.final_context if isinstance(run.final_context, dict) else {}
        data = context.get("data", {})
        syntax = Syntax(json.dumps(data, indent=2, default=str), "json", theme="monokai")
        self.render(Panel(syntax, title="[green]Result[/green]", border_style="green"))

    # -- resolving ----------------------------------------------------------------------
    def resolve(self, partial: str) -> Run:
        """A run from a full id or a unique prefix; a clear error otherwise."""
        if not partial:
            raise CommandError("Give a run id (or a unique prefix of one).", returncode=USAGE_ERROR)
        # No stored id holds NUL or a lone surrogate, and no database takes one.
        matches = (
            selectors.runs_with_id_prefix(partial, limit=AMBIGUOUS_SHOWN + 1)
            if selectors.storable(partial)
            else []
        )
        if not matches:
            raise CommandError(
                f"No run found matching '{terminal_text(partial)}'.", returncode=USAGE_ERROR
            )
        if len(matches) > 1:
            ids = ", ".join(terminal_text(run.run_id[:12]) for run in matches[:AMBIGUOUS_SHOWN])
            more = " …" if len(matches) > AMBIGUOUS_SHOWN else ""
            raise CommandError(
                f"Ambiguous run id '{terminal_text(partial)}'. Matches: {ids}{more}",
                returncode=USAGE_ERROR,
            )
        return matches[0]

    def principal(self, name: str) -> Any:
        """The active console user ``--for`` names."""
        return console_user(name, flag="--for", purpose="the person you decide for")

    def actor(self, by: str) -> tuple[Any, str | None]:
        """The active console user named by ``--by`` (username or email), and the identity
        to record; without ``--by``, no user and the operating-system user's name.

        A ``--by`` that names no active console user is refused (exit 1): recording a
        name as given would let anyone act as someone with shell-level trust.
        """
        if not by:
            return None, f"{getpass.getuser()} (OS user)"
        return console_user(by, flag="--by", purpose="who acts"), None

    # -- subcommands ----------------------------------------------------------------------
    def handle_list(
        self, *, status: str | None, blueprint: str | None, limit: int, **_: Any
    ) -> None:
        if status is not None and status not in Run.Status.values:
            raise CommandError(
                f"Unknown status '{terminal_text(status)}'. "
                f"Use one of: {', '.join(Run.Status.values)}.",
                returncode=USAGE_ERROR,
            )
        if not 0 <= limit <= MAX_LIMIT:
            raise CommandError(f"--limit must be 0 to {MAX_LIMIT:,}.", returncode=USAGE_ERROR)
        runs = list(selectors.runs_listing(status=status, blueprint=blueprint, limit=limit))
        if not runs:
            self.stderr.write("No runs recorded.")
            return
        rows, colors = [], []
        for run in runs:
            took = run.duration_ms
            duration = f"{took / 1000:.2f}s" if took and math.isfinite(took) else "—"
            rows.append(
                [
                    terminal_text(run.run_id[:12]),
                    terminal_text(run.blueprint_name),
                    terminal_text(run.status),
                    str(run.step_count),
                    duration,
                    run.created_at.isoformat()[:19],
                ]
            )
            colors.append(TERMINAL_STATUS_COLORS.get(run.status) if self.stdout.isatty() else None)
        headers = [
            ("Run ID", "left"),
            ("Blueprint", "left"),
            ("Status", "left"),
            ("Steps", "right"),
            ("Duration", "right"),
            ("Started", "left"),
        ]
        self.stdout.write(box_table("Runs", headers, rows, colors=colors))

    def handle_inspect(self, *, run_id: str, full: bool, as_json: bool, **_: Any) -> None:
        found = self.resolve(run_id)
        store = DjangoRunStore()
        run, steps = store.load_run(found.run_id), store.load_steps(found.run_id)
        assert run is not None
        if as_json:
            payload = {"run": run.model_dump(), "steps": [s.model_dump() for s in steps]}
            self.stdout.write(json.dumps(payload, indent=2, default=str))
            return

        self.render(*inspection(run, steps, full=full))

    def handle_replay(self, *, run_id: str, by: str, wait: bool, **_: Any) -> None:
        run = self.resolve(run_id)
        user, identity = self.actor(by)
        action = self.call(
            run_replay_request,
            "Replay failed",
            run_id=run.run_id,
            actor=user,
            identity=identity,
            source=Source.CLI,
        )
        self.follow(action, wait=wait, verb="Replay")

    def handle_resume(self, *, run_id: str, data: list[str], by: str, wait: bool, **_: Any) -> None:
        resume_data = parse_data(data) if data else None
        run = self.resolve(run_id)
        user, identity = self.actor(by)
        action = self.call(
            run_resume_request,
            "Resume failed",
            run_id=run.run_id,
            resume_data=resume_data,
            actor=user,
            identity=identity,
            source=Source.CLI,
        )
        self.follow(action, wait=wait, verb="Resume")

    def handle_approve(
        self,
        *,
        run_id: str,
        reject: bool,
        note: str,
        by: str,
        wait: bool,
        input: list[str],
        on_behalf_of: str,
        **_: Any,
    ) -> None:
        run = self.resolve(run_id)
        user, _identity = self.actor(by)
        verb = "Rejection" if reject else "Approval"
        if user is None:
            raise CommandError(
                f"{verb} failed: name the console user who decides with --by (username or "
                "email). A decision is a person's, made with their permissions"
                + (f"; no console user is '{terminal_text(by)}'." if by else "."),
                returncode=FAILURE,
            )
        suspension = run.suspension
        decision = self.call(
            decision_record,
            f"{verb} failed",
            run_id=run.run_id,
            approved=not reject,
            note=note,
            shown_gate=suspension.gate if suspension else "",
            shown_suspended_at=suspension.since if suspension else run.updated_at,
            actor=user,
            source=Source.CLI,
            answers=parse_data(input),
            on_behalf_of=self.principal(on_behalf_of) if on_behalf_of else None,
        )
        action = "rejected" if reject else "approved"
        self.render(f"[green]Run {action}.[/green]")
        self.follow(decision.resumption if decision.settles else None, wait=wait, verb="Resume")

    def handle_reopen(self, *, run_id: str, reason: str, by: str, wait: bool, **_: Any) -> None:
        run = self.resolve(run_id)
        user, _identity = self.actor(by)
        if user is None:
            raise CommandError(
                "Reopen failed: name the console user who reopens with --by (username or "
                "email); reopening needs the right to decide the run.",
                returncode=FAILURE,
            )
        action = self.call(
            run_reopen,
            "Reopen failed",
            run_id=run.run_id,
            reason=reason,
            actor=user,
            source=Source.CLI,
        )
        self.follow(action, wait=wait, verb="Reopen")

    # -- services and the worker ------------------------------------------------------------
    def call(self, service: Any, failure: str, **kwargs: Any) -> Any:
        """Call a service; its refusal is one line on stderr and exit code 1."""
        try:
            return service(**kwargs)
        except (ConsoleError, PermissionDenied) as error:
            raise CommandError(
                f"{failure}: {terminal_text(str(error), multiline=True)}", returncode=FAILURE
            ) from None

    def follow(self, action: RunAction | None, *, wait: bool, verb: str) -> None:
        """Say the action is queued, or wait for the worker and print the result (no
        action: a gate's quorum is not complete yet)."""
        if action is None:
            return self.stdout.write("The gate needs more approvals; the run waits for them.")
        target = action.result_run_id or action.run_id
        if not wait:
            self.stdout.write(
                f"{verb} queued (action {action.pk}) for the worker (manage.py db_worker). "
                f"Follow it with: python manage.py runs inspect {terminal_text(target[:12])}"
            )
            return
        self.stderr.write(f"{verb} queued; waiting for the worker (manage.py db_worker)…")
        while action.is_open:
            time.sleep(WAIT_POLL_SECONDS)
            action.refresh_from_db()
        run = selectors.run_by_id(target)
        if action.state == RunAction.State.INTERRUPTED:
            raise CommandError(
                f"{verb} interrupted: {terminal_text(action.outcome_error, multiline=True)}",
                returncode=FAILURE,
            )
        if action.outcome_status == Run.Status.REJECTED:
            reason = terminal_text(run.error or "", multiline=True) if run else ""
            raise CommandError(
                f"{verb}: the run was rejected. {reason}".strip(), returncode=FAILURE
            )
        if action.outcome_status == Run.Status.FAILED or run is None:
            reason = terminal_text(action.outcome_error or "the run failed", multiline=True)
            raise CommandError(f"{verb} failed: {reason}", returncode=FAILURE)
        if action.outcome_status == Run.Status.SUSPENDED:
            self.stdout.write(
                f"Run {terminal_text(target)} waits at '{terminal_text(action.outcome_gate)}'."
            )
        self.print_result(run)
