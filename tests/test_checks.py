"""The console's system checks: each invariant the code relies on, with its id and hint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

pytestmark = pytest.mark.django_db


def test_the_configuration_passes_its_checks() -> None:
    call_command("check")


@pytest.mark.parametrize(
    ("setting", "value", "error"),
    [
        (
            "TASKS",
            {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}},
            "runs.E001",
        ),
        ("NEUROCORE_PROJECT_ROOT", Path("/nonexistent"), "runs.E003"),
        ("RESUME_STALE_AFTER", 6, "runs.E004"),
    ],
)
def test_a_broken_invariant_is_a_check_error(
    settings: Any, setting: str, value: Any, error: str
) -> None:
    setattr(settings, setting, value)
    with pytest.raises(SystemCheckError, match=error):
        call_command("check")
