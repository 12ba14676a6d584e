"""Where things are: the project root (solutions/, exercises/) and the directory that makes ``servers`` importable.

Why: a grading kernel runs in a scratch directory of its own (so one student's files never meet
another's), yet student code must ``import servers`` whether or not the project is installed.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

__all__ = ["project_root", "exercise_sources", "servers_path", "kernel_env", "find_source"]


def project_root() -> Path:
    """The current directory if it holds ``solutions/``, else the checkout this package lives in."""
    here = Path.cwd()
    if (here / "solutions").is_dir():
        return here
    return Path(__file__).resolve().parent.parent


def exercise_sources() -> Path:
    """Where the source of each exercise is: ``solutions/`` in the instructor's checkout, else the
    pristine exercises a student release carries in ``grading/sources/`` (see grading.release)."""
    solutions = project_root() / "solutions"
    return solutions if solutions.is_dir() else Path(__file__).resolve().parent / "sources"


def servers_path() -> str | None:
    """The directory to put on PYTHONPATH so that ``import servers`` works in a kernel."""
    spec = importlib.util.find_spec("servers")
    if spec is None or not spec.origin:
        return None
    return str(Path(spec.origin).resolve().parent.parent)


def kernel_env() -> dict[str, str]:
    """The environment for a grading kernel: ours, with ``servers`` importable and no plotting window."""
    env = dict(os.environ)
    extra = [p for p in (servers_path(), str(project_root())) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(extra + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]))
    # The interpreter's own bin/ first, as in an activated venv: tools that nbgrader and Jupyter
    # start by name (alembic, jupyter-*) are installed there, and `make` never activates .venv.
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(dict.fromkeys([scripts, *(p for p in env.get("PATH", "").split(os.pathsep) if p)]))
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONHASHSEED"] = "0"
    return env


def find_source(name: str, solutions: Path | None = None) -> Path | None:
    """The source notebook ``solutions/<name>`` (name with or without .ipynb), if it exists."""
    solutions = solutions or exercise_sources()
    stem = name[:-6] if name.endswith(".ipynb") else name
    candidate = solutions / f"{stem}.ipynb"
    return candidate if candidate.is_file() else None
