"""The NeuroCore project whose skills execute and resume the console's runs.

The project lives at ``settings.NEUROCORE_PROJECT_ROOT`` (a folder with
``neurocore.yaml``, ``skills/`` and ``blueprints/``), loaded with NeuroCore's own
``load_config`` and ``discover_skills``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from flowengine import FlowContext
from neurocore.config.loader import load_config
from neurocore.config.schema import NeuroCoreConfig
from neurocore.runtime.blueprint import Blueprint, load_blueprint
from neurocore.runtime.executor import execute_blueprint_tracked
from neurocore.skills.loader import discover_skills
from neurocore.skills.registry import SkillRegistry


@dataclass(frozen=True)
class NeuroCoreProject:
    """A loaded NeuroCore project: its configuration and skill registry."""

    root: Path
    config: NeuroCoreConfig
    registry: SkillRegistry

    def blueprint(self, name: str) -> Blueprint:
        """Load a blueprint: a path to a file (absolute, or from the current directory),
        else a name in the project's blueprints folder. Raises NeuroCore's error for
        a file that is not there."""
        path = Path(name)
        if not path.is_absolute() and not path.is_file():
            path = self.config.resolve_path(self.config.paths.blueprints) / path
        return load_blueprint(path)


def load_project(root: Path | str | None = None) -> NeuroCoreProject:
    """Load the NeuroCore project at ``root`` (default: ``NEUROCORE_PROJECT_ROOT``)."""
    project_root = Path(root or settings.NEUROCORE_PROJECT_ROOT).resolve()
    config = load_config(project_root=project_root)
    return NeuroCoreProject(root=project_root, config=config, registry=discover_skills(config))


@functools.cache
def current_project() -> NeuroCoreProject:
    """The project at ``NEUROCORE_PROJECT_ROOT``, loaded once per process.

    A worker picks up changed skills when it restarts, as any Python process does.
    """
    return load_project()


def execute(
    blueprint: str,
    initial_data: dict[str, Any] | None = None,
    *,
    project: NeuroCoreProject | None = None,
) -> FlowContext:
    """Execute a blueprint of the project through NeuroCore, recording it in the console.

    Raises what NeuroCore raises (``NeuroCoreError``); a failed run is recorded
    before it does.
    """
    from runs.store import DjangoRunStore

    project = project or current_project()
    store = DjangoRunStore()
    try:
        return execute_blueprint_tracked(
            project.blueprint(blueprint),
            project.registry,
            project.config,
            initial_data=initial_data,
            run_store=store,
        )
    finally:
        store.close()
