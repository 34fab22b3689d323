"""Shared fixtures: the test NeuroCore project and run stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from runs.runtime import NeuroCoreProject, load_project
from runs.store import DjangoRunStore

TEST_PROJECT_ROOT = Path(__file__).parent / "project"


@pytest.fixture(scope="session")
def project() -> NeuroCoreProject:
    """The small NeuroCore project under tests/project (local skills only)."""
    return load_project(TEST_PROJECT_ROOT)


@pytest.fixture
def django_store(transactional_db: None) -> Iterator[DjangoRunStore]:
    """A DjangoRunStore on a committed database, as an agent process uses it.

    Transactional: NeuroCore's async path writes from the store's helper thread,
    which must see (and not wait for) the test's writes.
    """
    store = DjangoRunStore()
    yield store
    store.close()


@pytest.fixture
def flag_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file whose presence makes the ``flaky`` test skill fail."""
    flag = tmp_path / "upstream.down"
    monkeypatch.setenv("CONSOLE_TEST_FLAG_FILE", str(flag))
    return flag


def database_url() -> str:
    """A DATABASE_URL for the test database, for processes the tests start."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or ""
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"
