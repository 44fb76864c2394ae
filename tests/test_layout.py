"""The package's shape: which side may import which, and no import cycles.

docs/architecture.md draws the data flow collect -> wire -> server -> store ->
query; these tests read every module's imports (top-level and the lazy ones inside
functions) with ``ast`` and hold the code to that picture, so a new module that
reaches the wrong way fails here instead of in a sidecar's memory limit.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "resmon"

# Modules every side may use: the kernel readers and the shared vocabulary.
SHARED = {
    "resmon",
    "resmon.procfs",
    "resmon.cgroupfs",
    "resmon.stats",
    "resmon.units",
    "resmon.schema",
    "resmon.tokens",
    "resmon.execution",
    "resmon.mint",
}

# Per side: the resmon packages and the third-party libraries it must never import.
FORBIDDEN = {
    "shared": (
        {"resmon.cli", "resmon.collect", "resmon.store", "resmon.server", "resmon.query"},
        {"click", "flask", "peewee", "playhouse", "rich", "gunicorn", "werkzeug"},
    ),
    "resmon.collect": (
        {"resmon.cli", "resmon.store", "resmon.server", "resmon.query"},
        {"click", "flask", "peewee", "playhouse", "rich", "gunicorn", "werkzeug"},
    ),
    "resmon.store": (
        {"resmon.cli", "resmon.collect", "resmon.server", "resmon.query"},
        {"click", "flask", "rich", "gunicorn", "werkzeug"},
    ),
    "resmon.server": ({"resmon.cli", "resmon.collect", "resmon.query"}, {"click", "rich"}),
    "resmon.query": ({"resmon.cli", "resmon.collect", "resmon.server"}, {"click", "flask"}),
    # The web pages: over the server's read checks and the store, never the collector.
    "resmon.web": ({"resmon.cli", "resmon.collect"}, {"click", "rich"}),
    # Pure advice (recommendations, baselines): plain values in and out, no I/O.
    "resmon.analysis": (
        {"resmon.cli", "resmon.collect", "resmon.store", "resmon.server", "resmon.query"},
        {"click", "flask", "peewee", "playhouse", "rich", "gunicorn", "werkzeug", "requests"},
    ),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """Every module ``path`` imports, anywhere in the file, as absolute names.

    ``from resmon.store import history`` imports the module ``resmon.store.history``
    (not the package's ``__init__``); ``from resmon.server import ServerConfig``
    imports the package ``resmon.server`` itself."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                out.add(submodule if submodule in modules else target)
    return out


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, name, set(paths)) for name, path in paths.items()}


GRAPH = _graph()


def _side(module: str) -> str | None:
    """The side a module is on; None for the CLI (``resmon.cli``, ``python -m resmon``),
    which sits on top of every side and may import any of them."""
    if module in SHARED:
        return "shared"
    for side in FORBIDDEN:
        if module == side or module.startswith(side + "."):
            return side
    return None


def _within(name: str, prefixes: set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_every_module_belongs_to_a_side():
    cli = {"resmon.__main__", "resmon.cli"}
    homeless = sorted(m for m in GRAPH if _side(m) is None and not _within(m, cli))
    assert homeless == [], f"modules outside the documented folders: {homeless}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _side(m) is not None))
def test_imports_run_one_way(module):
    resmon_forbidden, libraries = FORBIDDEN[_side(module)]  # type: ignore[index]
    wrong = sorted(
        name
        for name in GRAPH[module]
        if _within(name, resmon_forbidden) or name.split(".")[0] in libraries
    )
    assert wrong == [], f"{module} imports {wrong}"


def test_click_only_below_cli():
    users = sorted(
        m
        for m, names in GRAPH.items()
        if not m.startswith("resmon.cli") and "click" in {n.split(".")[0] for n in names}
    )
    assert users == []


def test_no_import_cycles():
    """Between resmon's modules, counting lazy imports inside functions too."""
    edges = {m: {n for n in names if n in GRAPH and n != m} for m, names in GRAPH.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
