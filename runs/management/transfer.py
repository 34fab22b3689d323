"""``manage.py runs run|import|export``: executing a blueprint, and runs in bulk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, cast

from django.core.management.base import CommandError, OutputWrapper
from neurocore.errors import NeuroCoreError
from rich.console import Console
from rich.panel import Panel
from rich.progress import Progress
from rich.syntax import Syntax

from runs import runtime, selectors
from runs.management.terminal import FAILURE, USAGE_ERROR, RawStream, parse_data, terminal_text
from runs.models import Run
from runs.services.imports import runs_import
from runs.store import parse_timestamp, run_record, step_record
from runs.transfer import DECISION_FIELDS, UnreadableFile, export_line, open_runs_file

EXPORT_CHUNK = 500


class TransferCommands:
    """The ``run``, ``import`` and ``export`` subcommands (a mixin of the ``runs`` command)."""

    stdout: OutputWrapper
    stderr: OutputWrapper

    def render(self, *renderables: Any) -> None:  # provided by the command
        raise NotImplementedError

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
        console = Console(file=cast(IO[str], RawStream(self.stderr)), emoji=False)
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
        if summary.held:
            self.stdout.write(
                f"Kept {summary.held} runs waiting for a decision here: a file cannot take a "
                "run past an approval gate (approve or reject them in the console)."
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
