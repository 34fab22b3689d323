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
import shutil
import time
import unicodedata
from pathlib import Path
from typing import Any, ClassVar

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db.models import Q
from neurocore.errors import NeuroCoreError
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape as markup_escape
from rich.panel import Panel
from rich.progress import Progress
from rich.syntax import Syntax
from rich.table import Table

from runs import runtime, selectors
from runs.errors import ConsoleError
from runs.models import Run, RunAction, Source
from runs.services.decisions import decision_record
from runs.services.imports import runs_import
from runs.services.operations import run_reopen, run_replay_request, run_resume_request
from runs.store import DjangoRunStore, parse_timestamp, run_record, step_record
from runs.transfer import DECISION_FIELDS, UnreadableFile, export_line, open_runs_file

STATUS_COLUMN = 2
STATUS_COLORS = {
    "completed": "green",
    "failed": "red",
    "suspended": "yellow",
    "running": "cyan",
    "cancelled": "dim",
}
USAGE_ERROR = 2  # what typer exits with for a bad parameter
FAILURE = 1
AMBIGUOUS_SHOWN = 5
WAIT_POLL_SECONDS = 0.5
EXPORT_CHUNK = 500


# What a terminal acts on or hides rather than shows: controls (C0, DEL, C1; ESC
# opens screen-clearing CSI and OSC 8 link sequences), format characters (bidi
# overrides and isolates, zero-width characters, tags), line and paragraph
# separators, and lone surrogates (no UTF-8 terminal takes one).
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def terminal_text(value: str, *, markup: bool = False, multiline: bool = False) -> str:
    """Stored (or typed) text made safe and readable on a terminal: the one way the
    CLI shows a value it did not write itself.

    Each character in ``HIDDEN_CATEGORIES`` is shown as its Python escape
    (``\\x1b``, ``\\r``, ``\\u202e``), so what the terminal displays is the
    value, inert. ``multiline`` keeps newlines and tabs (an error's traceback).
    ``markup`` also escapes rich markup (``[/red]``, ``[link=…]``), for text
    printed through rich.
    """
    text = str(value)
    if not text.isprintable():
        text = "".join(
            char
            if char.isprintable()
            or (multiline and char in "\n\t")
            or unicodedata.category(char) not in HIDDEN_CATEGORIES
            else _escaped(char)
            for char in text
        )
    return markup_escape(text) if markup else text


def _escaped(char: str) -> str:
    if char in NAMED_ESCAPES:
        return NAMED_ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def status_text(status: str) -> str:
    color = STATUS_COLORS.get(status, "white")
    return f"[{color}]{terminal_text(status, markup=True)}[/{color}]"


def parse_data(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a dict, as ``neurocore`` parses ``--data``."""
    data: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandError(
                f"Invalid data format: '{terminal_text(item)}'. Use KEY=VALUE.",
                returncode=USAGE_ERROR,
            )
        if not key.strip():
            raise CommandError(
                f"Invalid data format: '{terminal_text(item)}'. Key cannot be empty.",
                returncode=USAGE_ERROR,
            )
        data[key.strip()] = value
    return data


ANSI = {"green": "32", "red": "31", "yellow": "33", "cyan": "36", "dim": "2"}


def box_table(
    title: str, headers: list[tuple[str, str]], rows: list[list[str]], *, colors: list[str | None]
) -> str:
    """A table drawn like rich's default (heavy head) box, in a fraction of its time.

    ``headers`` are (name, "left"|"right"); ``colors`` an ANSI color name per row's
    status cell, or None for plain text; cells are text already made safe
    (``terminal_text``), measured in terminal cells (a CJK character takes two).
    Listing runs is the CLI's hot path: rich's layout engine costs about 15 ms
    for 50 rows, this well under one.
    """
    widths = [
        max([cell_len(name), *(cell_len(row[i]) for row in rows)])
        for i, (name, _) in enumerate(headers)
    ]

    def cells(values: list[str], color: str | None = None) -> list[str]:
        out = []
        for i, (value, width) in enumerate(zip(values, widths, strict=True)):
            padding = " " * (width - cell_len(value))
            text = padding + value if headers[i][1] == "right" else value + padding
            if color and i == STATUS_COLUMN:
                text = f"\x1b[{ANSI[color]}m{text}\x1b[0m"
            out.append(f" {text} ")
        return out

    def rule(left: str, fill: str, middle: str, right: str) -> str:
        return left + middle.join(fill * (width + 2) for width in widths) + right

    top = rule("┏", "━", "┳", "┓")
    lines = [title.center(len(top)).rstrip(), top]
    lines.append("┃" + "┃".join(cells([name for name, _ in headers])) + "┃")
    lines.append(rule("┡", "━", "╇", "┩"))
    for row, color in zip(rows, colors, strict=True):
        lines.append("│" + "│".join(cells(row, color)) + "│")
    lines.append(rule("└", "─", "┴", "┘"))
    return "\n".join(lines)


class RawStream:
    """A command's output wrapper as a plain text stream (rich writes in pieces)."""

    def __init__(self, wrapper: OutputWrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> int:
        self.wrapper.write(text, ending="")
        return len(text)

    def flush(self) -> None:
        self.wrapper.flush()

    def isatty(self) -> bool:
        return self.wrapper.isatty()


class Command(BaseCommand):
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
            file=RawStream(self.stdout),
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

    def actor(self, by: str) -> tuple[Any, str | None]:
        """The active console user named by ``--by`` (username or email), and the identity
        to record; without ``--by``, no user and the operating-system user's name.

        A ``--by`` that names no active console user is refused (exit 1): recording a
        name as given would let anyone act as someone with shell-level trust.
        """
        if not by:
            return None, f"{getpass.getuser()} (OS user)"
        name = by.strip()
        user = (
            get_user_model()
            .objects.filter(Q(username=name) | Q(email__iexact=name), is_active=True)
            .order_by("pk")
            .first()
            if name
            else None
        )
        if user is None:
            raise CommandError(
                f"No active console user is {terminal_text(by)!r}. Name one with --by "
                "(username or email), or leave --by out to act as the operating-system user.",
                returncode=FAILURE,
            )
        return user, None  # recorded as the user is known (their email)

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
        if limit < 0:
            raise CommandError("--limit must be 0 or more.", returncode=USAGE_ERROR)
        runs = list(selectors.runs_listing(status=status, blueprint=blueprint, limit=limit))
        if not runs:
            self.stderr.write("No runs recorded.")
            return
        rows, colors = [], []
        for run in runs:
            duration = f"{run.duration_ms / 1000:.2f}s" if run.duration_ms else "—"
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
            colors.append(STATUS_COLORS.get(run.status) if self.stdout.isatty() else None)
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

        def shown(value: str, *, multiline: bool = False) -> str:
            return terminal_text(value, markup=True, multiline=multiline)

        lines = [
            f"[bold]{shown(run.blueprint_name)}[/bold] v{shown(run.blueprint_version)}",
            f"Run ID: {shown(run.run_id)}",
            f"Status: {status_text(run.status)}",
            f"Flow: {shown(run.flow_type)}",
        ]
        if run.duration_ms:
            lines.append(f"Duration: {run.duration_ms / 1000:.2f}s")
        if run.error:
            lines.append(f"[red]Error:[/red] {shown(run.error, multiline=True)}")
        if run.suspended_at_node:
            lines.append(
                f"[yellow]Suspended at:[/yellow] {shown(run.suspended_at_node)} "
                f"({shown(run.suspension_reason or '', multiline=True)})"
            )
        renderables: list[Any] = [Panel("\n".join(lines), title="Run", border_style="cyan")]
        if steps:
            table = Table(title="Steps")
            table.add_column("#", justify="right")
            table.add_column("Component")
            table.add_column("Status")
            table.add_column("Duration", justify="right")
            table.add_column("Outputs", style="dim")
            table.add_column("Error", style="red")
            for step in steps:
                duration = f"{step.duration_ms:.0f}ms" if step.duration_ms else "—"
                table.add_row(
                    str(step.step_index),
                    shown(step.component),
                    status_text(step.status),
                    duration,
                    shown(", ".join(step.output_keys)),
                    shown(step.error or "", multiline=True),
                )
            renderables.append(table)
        if full and run.final_context:
            data = run.final_context.get("data", {})
            syntax = Syntax(json.dumps(data, indent=2, default=str), "json", theme="monokai")
            renderables.append(Panel(syntax, title="Final context", border_style="green"))
        self.render(*renderables)

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
        self, *, run_id: str, reject: bool, note: str, by: str, wait: bool, **_: Any
    ) -> None:
        run = self.resolve(run_id)
        user, _ = self.actor(by)
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
        )
        action = "rejected" if reject else "approved"
        self.render(f"[green]Run {action}.[/green]")
        self.follow(decision.resumption, wait=wait, verb="Resume")

    def handle_reopen(self, *, run_id: str, reason: str, by: str, wait: bool, **_: Any) -> None:
        run = self.resolve(run_id)
        user, _ = self.actor(by)
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

    def handle_run(self, *, blueprint: Path, data: list[str], **_: Any) -> None:
        initial_data = parse_data(data) if data else None
        try:
            context = runtime.execute(str(blueprint), initial_data)
        except NeuroCoreError as error:
            raise CommandError(
                f"Execution error: {terminal_text(str(error), multiline=True)}",
                returncode=FAILURE,
            ) from None
        data_out = (
            context.data.to_dict() if hasattr(context.data, "to_dict") else dict(context.data)
        )
        syntax = Syntax(json.dumps(data_out, indent=2, default=str), "json", theme="monokai")
        self.render(Panel(syntax, title="[green]Result[/green]", border_style="green"))

    def handle_import(self, *, path: Path, dry_run: bool, batch_size: int, **_: Any) -> None:
        try:
            runs_file = open_runs_file(path)
        except UnreadableFile as error:
            raise CommandError(terminal_text(str(error)), returncode=FAILURE) from None
        console = Console(file=RawStream(self.stderr), emoji=False)
        try:
            # Refreshed per batch, not by a thread competing with the import.
            with Progress(console=console, transient=True, auto_refresh=False) as progress:
                bar = progress.add_task(
                    f"Importing {terminal_text(path.name, markup=True)}", total=runs_file.total
                )
                summary = runs_import(
                    runs_file=runs_file,
                    dry_run=dry_run,
                    batch_size=batch_size,
                    on_batch=lambda count: progress.update(bar, advance=count, refresh=True),
                )
        except UnreadableFile as error:
            raise CommandError(
                f"{terminal_text(str(error))} Nothing was imported.", returncode=FAILURE
            ) from None
        finally:
            runs_file.close()
        prefix = "Dry run, nothing written: would import" if dry_run else "Imported"
        self.stdout.write(
            f"{prefix} {summary.imported} runs, updated {summary.updated}, skipped "
            f"{summary.skipped} unchanged; {summary.steps} steps, {summary.checkpoints} "
            f"checkpoints, {summary.decisions} decisions."
        )

    def handle_export(self, *, fmt: str, status: str | None, since: str | None, **_: Any) -> None:
        if status is not None and status not in Run.Status.values:
            raise CommandError(
                f"Unknown status '{terminal_text(status)}'. "
                f"Use one of: {', '.join(Run.Status.values)}.",
                returncode=USAGE_ERROR,
            )
        since_at = None
        if since:
            try:
                since_at = parse_timestamp(since)
            except ValueError:
                raise CommandError(
                    "--since must be an ISO date or time, like 2026-11-01: "
                    f"got '{terminal_text(since)}'.",
                    returncode=USAGE_ERROR,
                ) from None
        for run in selectors.runs_for_export(status=status, since=since_at).iterator(
            chunk_size=EXPORT_CHUNK
        ):
            decisions = [
                {name: getattr(d, name) for name in DECISION_FIELDS} for d in run.decisions.all()
            ]
            steps = [step_record(step) for step in run.steps.all()]
            self.stdout.write(export_line(run_record(run), steps, decisions))

    # -- services and the worker ------------------------------------------------------------
    def call(self, service: Any, failure: str, **kwargs: Any) -> Any:
        """Call a service; its refusal is one line on stderr and exit code 1."""
        try:
            return service(**kwargs)
        except (ConsoleError, PermissionDenied) as error:
            raise CommandError(
                f"{failure}: {terminal_text(str(error), multiline=True)}", returncode=FAILURE
            ) from None

    def follow(self, action: RunAction, *, wait: bool, verb: str) -> None:
        """Say the action is queued, or wait for the worker and print the result."""
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
