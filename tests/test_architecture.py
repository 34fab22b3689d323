"""The shape of the code: imports point down, modules stay small.

docs/architecture.md draws the layers; this keeps them honest.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "runs"
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Every module of the app (not migrations), by dotted name."""
    found = {}
    for path in APP.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The app's modules ``path`` imports, wherever in the file (lazy imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in known and target != name}
    return found


def test_the_imports_of_runs_have_no_cycle() -> None:
    known = modules()
    graph = {name: imports_of(path, name, set(known)) for name, path in known.items()}
    # A package's __init__ importing its own submodules is how a package is made.
    graph = {
        name: {t for t in targets if not t.startswith(name + ".")}
        for name, targets in graph.items()
    }
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycles.append([*visiting[visiting.index(name) :], name])
            return
        visiting.append(name)
        for target in sorted(graph[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_no_module_of_runs_is_over_400_lines() -> None:
    long = {
        name: lines
        for name, path in modules().items()
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long
