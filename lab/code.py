"""Show the real code a lesson teaches, read from the package at run time, so it cannot drift.

Why not paste it into the notebook: a copy in a markdown cell goes stale the day the server
changes, and nothing notices. :func:`show_code` prints what the running server actually runs
(a class, a function or a method), :func:`show_script` the browser side: a region of a page's
JavaScript, marked in the page with ``// region: NAME`` and ``// endregion``. Both say where the
code lives (path relative to the project) so a learner can open the whole file.

:func:`code_text` and :func:`script_text` return the same text for tests and for cells that
want to search it (``"retry:" in code_text(...)``).

In a notebook the code is shown highlighted; elsewhere (a script, a test, ``make lessons``) it
is printed as plain text.
"""
from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path
from typing import Any

__all__ = ["code_text", "script_text", "show_code", "show_script", "PAGES"]

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "servers" / "feed" / "pages"

_REGION = re.compile(r"^\s*//\s*region:\s*(?P<name>[\w.-]+)\s*$")
_END = re.compile(r"^\s*//\s*endregion\b")


def _where(path: Path, first_line: int | None = None) -> str:
    try:
        shown = path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        shown = path.name
    return f"{shown}:{first_line}" if first_line else shown


def code_text(obj: Any) -> tuple[str, str]:
    """``(where, source)`` of a class, function or method, e.g. ``("servers/feed/sse.py:40", "class ...")``."""
    target = inspect.unwrap(obj)
    lines, first = inspect.getsourcelines(target)
    return _where(Path(inspect.getsourcefile(target) or ""), first), textwrap.dedent("".join(lines)).rstrip() + "\n"


def script_text(page: str | Path, region: str) -> tuple[str, str]:
    """``(where, source)`` of the region ``region`` of a page or script under ``servers/feed/pages``.

    Raises ``LookupError`` naming the regions the file has when ``region`` is not one of them.
    """
    path = Path(page) if Path(page).is_absolute() else PAGES / page
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[str] = []
    for index, line in enumerate(lines):
        match = _REGION.match(line)
        if not match:
            continue
        found.append(match["name"])
        if match["name"] != region:
            continue
        body: list[str] = []
        for inner in lines[index + 1:]:
            if _END.match(inner):
                return _where(path, index + 2), textwrap.dedent("\n".join(body)).rstrip() + "\n"
            body.append(inner)
        raise LookupError(f"{_where(path)}: region {region!r} has no '// endregion'")
    raise LookupError(f"{_where(path)} has no region {region!r}; its regions: {found}")


def _display(where: str, source: str, language: str) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Code, Markdown, display
    except ImportError:  # pragma: no cover - IPython is a dependency of the suite
        get_ipython = None  # type: ignore[assignment]
    if get_ipython is not None and get_ipython() is not None and "IPKernelApp" in get_ipython().config:
        display(Markdown(f"`{where}`"), Code(source, language=language))
    else:
        print(f"# {where}\n{source}")


def show_code(*objs: Any) -> None:
    """Show the source of each class, function or method, with the file and line it starts at."""
    for obj in objs:
        _display(*code_text(obj), "python")


def show_script(page: str | Path, *regions: str) -> None:
    """Show regions of a page's JavaScript (``// region: NAME`` ... ``// endregion`` in the file)."""
    for region in regions:
        _display(*script_text(page, region), "javascript")
