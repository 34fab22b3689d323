"""The environment variables: what settings.py reads, the list, and README's table agree."""

from __future__ import annotations

import ast
from pathlib import Path

from neurocore_console import environment

ROOT = Path(__file__).resolve().parent.parent
READERS = {"env_flag", "env_list"}  # settings' own readers, besides os.environ.get


def read_by_settings() -> set[str]:
    """Every environment variable name settings.py passes to a reader."""
    tree = ast.parse((ROOT / "neurocore_console" / "settings.py").read_text())
    found = {"DATABASE_URL"}  # dj_database_url.config() reads it by default
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            reader = ast.unparse(node.func)
            first = node.args[0] if node.args else None
            value = first.value if isinstance(first, ast.Constant) else None
            if (reader in READERS or reader == "os.environ.get") and isinstance(value, str):
                found.add(value)
    return found


def test_every_variable_settings_reads_is_listed_and_every_listed_one_is_read() -> None:
    assert read_by_settings() == environment.names()


def test_the_readme_table_is_the_list() -> None:
    assert environment.markdown_table() in (ROOT / "README.md").read_text()
