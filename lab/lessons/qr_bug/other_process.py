"""Run a learner's plain function again in a fresh Python process: is its answer the same there?

Why: a routing policy must give a ticket the same backend in every process that routes it (each
nginx worker, each balancer replica, the balancer after a restart). Python's ``hash()`` of a
``str`` is salted per process (``PYTHONHASHSEED``), so a ring built on it agrees with itself inside
one kernel and with no other process. Only a second process with another seed shows it, so
:func:`call_in_fresh_process` rebuilds the function there and calls it.

How the function is rebuilt: from the source of the notebook cell (or file) that defined it, with
an import for every name the cell uses from a module, and, first, the cells of the functions and
classes of the notebook it calls. Nothing is pickled: a cache the function filled in this process
(a ring kept in a global or on the function) must not travel with it, or the check would compare
the kernel with itself.
"""
from __future__ import annotations

import ast
import builtins
import json
import linecache
import os
import re
import subprocess
import sys
import types
from typing import Any, Callable, Iterable, Sequence

__all__ = ["function_source", "call_in_fresh_process"]

_MARK = "<<<fresh-process results>>>"


def _code_of(obj: Any) -> types.CodeType | None:
    code = getattr(obj, "__code__", None)
    if code is None and isinstance(obj, type):  # a class: the file of its first method
        for member in vars(obj).values():
            member = getattr(member, "__func__", member)
            if hasattr(member, "__code__"):
                return member.__code__
    return code


def _is_ours(obj: Any) -> bool:
    """Defined in the notebook (or script) itself, not imported from a module."""
    return isinstance(obj, (types.FunctionType, type)) and getattr(obj, "__module__", None) == "__main__"


def _without_magics(text: str) -> str:
    """The cell as plain Python: IPython's ``%magic`` and ``!shell`` lines become ``pass``."""
    return "\n".join("pass" if line.lstrip().startswith(("%", "!")) else line for line in text.splitlines())


def _names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(names the code binds anywhere, names it reads anywhere): coarse, which is enough here."""
    bound, read = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound, read


def _binding(name: str, value: Any) -> str | None:
    """A line that gives ``name`` this value in a fresh process, or None when there is no such line."""
    if isinstance(value, types.ModuleType):
        return f"{name} = importlib.import_module({value.__name__!r})"
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str) and module != "__main__" and "<" not in qualname:
        return f"{name} = _resolve({module!r}, {qualname!r})"
    if isinstance(value, re.Pattern):
        return f"{name} = re.compile({value.pattern!r}, {int(value.flags)})"
    try:
        if ast.literal_eval(repr(value)) == value:
            return f"{name} = {value!r}"
    except (ValueError, SyntaxError, TypeError, RecursionError):
        pass
    return None


def function_source(fn: Callable) -> str:
    """Python code that defines ``fn`` (under its own name) when run in a fresh interpreter."""
    namespace = getattr(fn, "__globals__", {})
    prelude: dict[str, str] = {}
    cells: list[str] = []
    seen: set[str] = set()

    def visit(obj: Any) -> None:
        code = _code_of(obj)
        if code is None or code.co_filename in seen:
            return
        seen.add(code.co_filename)
        text = _without_magics("".join(linecache.getlines(code.co_filename)))
        if not text.strip():
            raise ValueError(f"the source of {getattr(obj, '__name__', obj)!r} cannot be found "
                             f"({code.co_filename}); define it in a notebook cell or a file")
        bound, read = _names(ast.parse(text))
        for name in sorted(read - bound - set(dir(builtins))):
            if name not in namespace:
                continue
            value = namespace[name]
            if _is_ours(value):
                visit(value)  # the cell that defines it runs first
            elif name not in prelude:
                line = _binding(name, value)
                if line is not None:
                    prelude[name] = line
        cells.append(text)

    if not _is_ours(fn):
        line = _binding(fn.__name__, fn)
        if line is None:
            raise ValueError(f"{fn!r} cannot be rebuilt in another process")
        return line
    visit(fn)
    return "\n".join(prelude.values()) + "\n\n" + "\n\n".join(cells)


_PROGRAM = '''
import importlib
import json
import re
import sys


def _resolve(module, qualname):
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


{source}

_calls = json.loads(sys.stdin.read())
_results = [{name}(*_args) for _args in _calls]
print()
print({mark!r} + json.dumps(_results))
'''


def call_in_fresh_process(fn: Callable, calls: Iterable[Sequence[Any]], *, hash_seed: int | str = 1,
                          timeout: float = 30.0) -> list[Any]:
    """``[fn(*args) for args in calls]`` computed by a new Python process whose ``PYTHONHASHSEED``
    is ``hash_seed``; arguments and results go through JSON (tuples come back as lists).

    Raises ``RuntimeError`` with the last line of the other process's error when the function
    cannot be rebuilt or fails there.
    """
    calls = [list(args) for args in calls]
    program = _PROGRAM.format(source=function_source(fn), name=fn.__name__, mark=_MARK)
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = str(hash_seed)
    paths = [p for p in sys.path if p and os.path.isdir(p)]  # import what this process imports
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths + env.get("PYTHONPATH", "").split(os.pathsep)))
    env.setdefault("MPLBACKEND", "Agg")
    done = subprocess.run([sys.executable, "-c", program], input=json.dumps(calls), capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)
    found = [line for line in done.stdout.splitlines() if line.startswith(_MARK)]
    if done.returncode != 0 or not found:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise RuntimeError(f"{fn.__name__} failed when rebuilt in a fresh Python process: {lines[-1]}")
    return json.loads(found[-1][len(_MARK):])
