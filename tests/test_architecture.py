"""The shape of the code: no import circles among the servers' modules, and no module too long to read.

An import circle is read from the source, not from a running interpreter: every ``import`` and
``from ... import`` in a module counts, at the top, under ``if TYPE_CHECKING:`` or inside a
function, because each is a dependency a reader has to hold in mind. ``from pkg import name``
counts as an import of ``pkg.name`` when that is a module (and not of ``pkg``, which Python runs
first for any of its modules).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("servers", "lab", "grading")
MAX_LINES = 450
# A module may be longer when its docstring says why, in a line that starts with this.
LONG_REASON = re.compile(r"^\s*Why (this|it) is (one|a long) (module|file)", re.M)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / package).rglob("*.py")) if "__pycache__" not in p.parts}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules among ``known`` that ``name`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            submodules = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in known]
            # ``from pkg import sub``: the dependency is on ``sub`` (its package runs first anyway)
            targets = submodules if len(submodules) == len(node.names) else [module, *submodules]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    found = modules(package)
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_type_only_and_function_level_imports_count(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert find_cycle(import_graph("pkg")) == ["pkg.a", "pkg.b", "pkg.a"]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circles(package):
    cycle = find_cycle(import_graph(package))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_servers_never_import_the_lab_or_grading():
    """The servers are the bottom wing: instruments and graders use them, never the other way."""
    offenders = []
    for name, path in modules("servers").items():
        if name == "servers._moved":
            continue  # the one-release aliases of moved modules name their new places as strings
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                offenders += [f"{name} imports {t}" for t in targets if t.split(".")[0] in ("lab", "grading")]
    assert offenders == []


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_are_short_enough_to_read(package):
    long = []
    for name, path in modules(package).items():
        source = path.read_text()
        lines = source.count("\n")
        doc = ast.get_docstring(ast.parse(source)) or ""
        if lines > MAX_LINES and not LONG_REASON.search(doc):
            long.append(f"{name}: {lines} lines")
    assert long == [], f"over {MAX_LINES} lines without a 'Why this is one module' paragraph in the docstring"


def contributing_rows() -> dict[str, str]:
    """CONTRIBUTING.md's module table: folder (first cell) → the rest of its row."""
    rows = {}
    for line in (ROOT / "CONTRIBUTING.md").read_text().splitlines():
        match = re.match(r"^\| `([\w/]+/)` \|(.*)\|\s*$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_contributing_names_every_module_in_its_folder_row():
    rows = contributing_rows()
    missing = []
    for package in PACKAGES:
        for path in modules(package).values():
            relative = path.relative_to(ROOT)
            folder = relative.parent.as_posix() + "/"
            if f"`{relative.name}`" not in rows.get(folder, ""):
                missing.append(relative.as_posix())
    assert missing == [], "CONTRIBUTING.md's layout table must name every module: add these to their folder's row"


def test_the_grading_wing_leaves_servers_and_lab_to_the_kernels_it_starts():
    offenders = [f"{name} imports {t}" for name, path in modules("grading").items()
                 for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, (ast.Import, ast.ImportFrom))
                 for t in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""])
                 if t.split(".")[0] in ("servers", "lab")]
    assert offenders == []


@pytest.mark.parametrize("old", sorted(__import__("servers._moved", fromlist=["MOVED"]).MOVED))
def test_an_old_import_path_is_the_moved_module_itself(old):
    """Submissions written against the old layout keep working, sharing one module (one state)."""
    import importlib

    from servers._moved import MOVED

    assert importlib.import_module(old) is importlib.import_module(MOVED[old])
